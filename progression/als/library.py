"""The ALS intervention library, read from ``interventions.toml`` (data, not code).

Each table of :file:`interventions.toml` becomes a factory: a callable taking the entry's
keyword options (and ``start``, ``stop``, ``strength``) and returning an
:class:`~progression.virtual.interventions.Intervention` (or a list, for a combination). The
numbers -- calibrated constants, PK shapes, schedules -- live in the TOML file with their
sources; this module only evaluates the entry's expressions with the options given.
Effects act on the model's own parameters when the interventions are compiled (e.g.
fingolimod's Treg-production factor is divided by each subject's own ``gIL2``, ``add_per``).

>>> from progression.als.library import library
>>> library("masitinib", strength=2.0)[0].scale["aD"]          # 0.7 ** 2
0.48999999999999994
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import re
import tomllib
from functools import cache
from importlib import resources

import numpy as np

from ..errors import ConfigError, did_you_mean
from ..virtual.interventions import DAY, HOUR, PK, WEEK, Intervention, flatten

__all__ = ["LIBRARY", "library", "library_table", "Factory", "FILE"]

#: The library file (package data).
FILE = "interventions.toml"

#: Options every entry takes (an entry may change their defaults).
COMMON_OPTIONS = {"start": 0.0, "stop": None, "strength": 1.0}

_UNITS = {"h": HOUR, "hour": HOUR, "hours": HOUR, "d": DAY, "day": DAY, "days": DAY,
          "w": WEEK, "week": WEEK, "weeks": WEEK, "month": 1.0, "months": 1.0}
_TIME = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]+)\s*$")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_FUNCTIONS = {"min": min, "max": max}
_ENTRY_KEYS = {"summary", "doc", "label", "mechanism", "source", "options", "values", "scale",
               "add", "set", "add_per", "add_unless_zero", "jump", "level", "every",
               "duration", "cycles", "doses", "fade", "schedule", "pk", "pk_builder",
               "pk_shape", "parts", "use", "with"}


# ------------------------------------------------------------------------- expressions


def _constant(value, where: str):
    """A TOML option default: ``"none"`` -> None, ``"13 days"`` -> months, else as is."""
    if isinstance(value, str):
        if value == "none":
            return None
        m = _TIME.match(value)
        if m and m.group(2) in _UNITS:
            # int * unit where the number is whole, as the factories wrote 13 * DAY
            number = float(m.group(1))
            number = int(number) if number.is_integer() else number
            return number * _UNITS[m.group(2)]
        raise ConfigError(f"{where}: expected a number, a time like '13 days' or 'none', "
                          f"found {value!r}")
    if isinstance(value, list):
        return tuple(value)
    return value


def evaluate(expr, names: dict, where: str):
    """Value of ``expr``: a number, a time string, or an arithmetic expression of ``names``.

    Only numbers, names, ``+ - * / **``, unary minus and ``min``/``max`` are allowed (parsed
    with :mod:`ast`, never executed as code).
    """
    if not isinstance(expr, str):
        return _constant(expr, where)
    m = _TIME.match(expr)
    if m and m.group(2) in _UNITS:
        return _constant(expr, where)
    if expr == "none":
        return None
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ConfigError(f"{where}: not an expression: {expr!r}") from None

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ConfigError(f"{where}: unknown name {node.id!r} in {expr!r}"
                                  f"{did_you_mean(node.id, names)}")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCTIONS and not node.keywords:
            return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise ConfigError(f"{where}: {ast.unparse(node)!r} is not allowed in {expr!r} "
                          f"(numbers, names, + - * / **, min, max)")

    return ev(tree.body)


# ----------------------------------------------------------------------------- builders


def _il2_subcutaneous(dose_miu: float, duration: float, shape: dict) -> PK:
    """Daily s.c. IL-2: EC50 at the peak concentration of ``ec50_dose``, ``emax`` making the
    mean exposure of a block at ``reference_dose`` per day equal to 1."""
    shape = dict(shape)
    ec50_dose, reference = shape.pop("ec50_dose"), shape.pop("reference_dose")
    ref = PK(dose=ec50_dose, ec50=1.0, **shape)
    grid = np.linspace(0, DAY, 400)
    ec50 = float(ref.concentration(grid, [0.0]).max())
    unit = PK(dose=reference, ec50=ec50, **shape)
    days = np.arange(int(math.ceil(duration / DAY))) * DAY
    t = np.linspace(0, duration, 4000)
    mean_ref = float(np.mean(unit.response(unit.concentration(t, days))))
    return PK(dose=dose_miu, ec50=ec50, emax=1.0 / mean_ref, **shape)


#: PK models computed from a shape (``pk_builder`` of an entry), used when ``pk=True``.
PK_BUILDERS = {"il2_subcutaneous": _il2_subcutaneous}


# ------------------------------------------------------------------------------ factory


class Factory:
    """A library entry as a callable: ``factory(**options)`` -> Intervention or list.

    Its signature (keyword-only options with their defaults) and docstring come from the
    entry, so ``inspect.signature`` and ``help`` show them.
    """

    def __init__(self, name: str, entry: dict, source: str):
        self.name = name
        self.entry = entry
        self.where = f"{source} [{name}]"
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {unknown[0]!r}"
                              f"{did_you_mean(unknown[0], _ENTRY_KEYS)}")
        defaults = {k: _constant(v, f"{self.where} options.{k}")
                    for k, v in entry.get("options", {}).items()}
        self.defaults = {**{k: v for k, v in defaults.items() if k not in COMMON_OPTIONS},
                         **{k: defaults.get(k, v) for k, v in COMMON_OPTIONS.items()}}
        self.__name__ = self.__qualname__ = name
        self.__doc__ = (entry.get("summary", name) + "\n\n"
                        + inspect.cleandoc(entry.get("doc", "")) + "\n")
        self.__signature__ = inspect.Signature([
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in self.defaults.items()])

    def __repr__(self) -> str:
        return f"<library intervention {self.name}{self.__signature__}>"

    def __call__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.name}() got an unexpected keyword argument {unknown[0]!r}")
        values = {**self.defaults, **options}
        if isinstance(values.get("doses"), list):
            values["doses"] = tuple(values["doses"])
        parts = self.entry.get("parts")
        if parts is None:
            return self._build(self.entry, values, self.where)
        out = []
        for i, part in enumerate(parts):
            out += flatten(self._build(part, values, f"{self.where} parts[{i}]"))
        return out

    def _build(self, entry: dict, values: dict, where: str):
        names = dict(values)
        for k, expr in entry.get("values", {}).items():
            names[k] = evaluate(expr, names, f"{where} values.{k}")
        if "use" in entry:
            other = _factories()[entry["use"]]
            given = {k: evaluate(v, names, f"{where} with.{k}")
                     for k, v in entry.get("with", {}).items()}
            made = flatten(other(**given))
            relabel = {k: entry[k] for k in ("label", "mechanism", "source") if k in entry}
            return [iv.with_options(**relabel) for iv in made] if relabel else made

        def table(key):
            return {k: evaluate(v, names, f"{where} {key}.{k}")
                    for k, v in entry.get(key, {}).items()}

        kw = {k: table(k) for k in ("scale", "add", "set") if entry.get(k)}
        for k, expr in entry.get("add_unless_zero", {}).items():
            if not evaluate(expr, names, f"{where} add_unless_zero.{k}"):
                kw.get("add", {}).pop(k, None)
        if "add" in kw and not kw["add"]:
            del kw["add"]
        if entry.get("add_per"):
            kw["add_per"] = dict(entry["add_per"])
        if entry.get("jump"):
            kw["jump"] = {k: template.format(**names) for k, template in entry["jump"].items()}
        for k in ("every", "duration", "cycles", "doses", "level"):
            if k in entry:
                kw[k] = evaluate(entry[k], names, f"{where} {k}")
        if "fade" in entry:
            kw["fade"] = tuple(evaluate(x, names, f"{where} fade") for x in entry["fade"])
        if entry.get("schedule") == "infusions":
            n, every = names["infusions"], names["every"]
            doses = None if n is None or names["continued"] else tuple(k * every
                                                                        for k in range(n))
            kw["doses"], kw["every"] = doses, every if doses is None else None
        elif "schedule" in entry:
            raise ConfigError(f"{where} schedule: expected 'infusions', found "
                              f"{entry['schedule']!r}")
        if "pk" in entry:
            kw["pk"] = PK(**table("pk"))
        if entry.get("pk_builder") and names.get("pk"):
            shape = {k: evaluate(v, names, f"{where} pk_shape.{k}")
                     for k, v in entry.get("pk_shape", {}).items()}
            kw["pk"] = PK_BUILDERS[entry["pk_builder"]](names["dose_miu"], names["duration"],
                                                        shape)
            kw.pop("level", None)
        elif entry.get("pk_builder"):
            pass                       # on/off exposure: `level`
        for k in ("label", "mechanism", "source"):
            if k in entry:
                kw[k] = entry[k].format(**names) if k == "label" else entry[k]
        return Intervention(start=names["start"], stop=names["stop"], **kw)


@cache
def _factories() -> dict:
    text = resources.files(__package__).joinpath(FILE).read_text(encoding="utf-8")
    source = f"progression/als/{FILE}"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return {name: Factory(name, entry, source) for name, entry in doc.items()}


#: Named interventions for ``als_systemic``: name -> factory (keyword options only).
LIBRARY = dict(_factories())
globals().update(LIBRARY)
__all__ += list(LIBRARY)


def library(name: str, **options) -> list[Intervention]:
    """A named library intervention with options changed, always as a list (a combination).

    ``options`` are the factory's keyword arguments (e.g. ``strength``, ``start``, ``dose_miu``)
    or, failing that, :class:`Intervention` fields applied to each returned intervention.
    """
    if name not in LIBRARY:
        hint = did_you_mean(name, LIBRARY)
        raise ConfigError(f"unknown intervention {name!r}{hint} (library: "
                          f"{', '.join(LIBRARY)})")
    factory = LIBRARY[name]
    accepted = set(inspect.signature(factory).parameters)
    own = {k: v for k, v in options.items() if k in accepted}
    rest = {k: v for k, v in options.items() if k not in accepted}
    fields = {f for f in Intervention.__dataclass_fields__ if not f.startswith("_")}
    unknown = sorted(set(rest) - fields)
    if unknown:
        raise ConfigError(f"intervention {name!r}: unknown option {unknown[0]!r} (options: "
                          f"{', '.join(sorted(accepted))})")
    try:
        made = factory(**own)
    except TypeError as exc:
        raise ConfigError(f"intervention {name!r}: {exc}") from None
    out = flatten(made)
    return [iv.with_options(**rest) for iv in out] if rest else out


def library_table() -> list[dict]:
    """One row per library intervention: name, label, parameters, states, mechanism, source."""
    rows = []
    for name in LIBRARY:
        for iv in library(name):
            rows.append({"name": name, "label": iv.label,
                         "parameters": ", ".join(iv.parameters),
                         "states": ", ".join(iv.jump), "mechanism": iv.mechanism,
                         "source": iv.source})
    return rows
