"""What a model is: the parsed, validated content of a model file.

A model file is TOML with the tables ``[model]``, ``[parameters.NAME]``, ``[states.NAME]``,
``[expressions]``, ``[equations]``, ``[observables.NAME]`` and ``[events.NAME]`` (see README).
:func:`parse_model` checks everything, collecting every problem before it fails, and returns a
:class:`ModelSpec`: plain, immutable, picklable data. The symbolic view (sympy expressions with
intermediate expressions substituted) is built from it by :meth:`ModelSpec.symbolic`.

Reading and validating a model needs no sympy (expressions are checked by
:func:`~progression.model._expressions.check_expression`); sympy is imported only to compile.
"""

from __future__ import annotations

import graphlib
import hashlib
import keyword
import math
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..data._units import DAYS_PER, canonical_time_unit
from ..errors import ModelError
from ._expressions import RESERVED, check_expression

if TYPE_CHECKING:
    from ._symbolic import SymbolicModel

__all__ = [
    "Parameter",
    "State",
    "Observable",
    "Event",
    "DosingCompartment",
    "ModelSpec",
    "SymbolicModel",
    "parse_model",
    "read_model_file",
]

_DIRECTIONS = {"falling": -1, "rising": 1, "both": 0}


@dataclass(frozen=True)
class Parameter:
    """A model parameter.

    Attributes
    ----------
    name : str
    value : float
        Default value.
    bounds : tuple of float
        Plausible range ``(lower, upper)`` for fitting and sampling; ``value`` lies inside.
    unit, description, source : str
        Physical unit (``"1"`` if dimensionless), meaning, and where the value comes from.
    """

    name: str
    value: float
    bounds: tuple[float, float]
    unit: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class State:
    """A state variable; ``initial`` is a number or an expression of the parameters."""

    name: str
    initial: float | str
    unit: str = "1"
    description: str = ""


@dataclass(frozen=True)
class Observable:
    """A quantity computed from states and parameters that data can be compared with."""

    name: str
    expression: str
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class Event:
    """A threshold crossing: the event happens where ``condition`` crosses zero.

    ``direction`` is ``"falling"``, ``"rising"`` or ``"both"``; a ``terminal`` event ends the
    subject's trajectory (outputs after it are NaN).
    """

    name: str
    condition: str
    direction: str = "both"
    terminal: bool = False
    description: str = ""

    @property
    def sign(self) -> int:
        return _DIRECTIONS[self.direction]


@dataclass(frozen=True)
class DosingCompartment:
    """A state that dose records may target (a ``[dosing.STATE]`` table of a model file).

    Attributes
    ----------
    state : str
        The target state.
    cmt : int or None
        Its NONMEM ``CMT`` number, if the file gives one.
    bioavailability, lag : str or None
        Names of the parameters giving the fraction of each dose that enters and the delay
        before it does (model time units); ``None``: 1 and 0.
    rate, amount : str
        The implicit parameters ``rate_STATE`` and ``amt_STATE`` that parsing adds: the
        zero-order input rate (``bioavailability * rate_STATE`` is added to the state's
        equation) and the amount of the bolus being given; the simulator sets both.
    """

    state: str
    cmt: int | None = None
    bioavailability: str | None = None
    lag: str | None = None

    @property
    def rate(self) -> str:
        return f"rate_{self.state}"

    @property
    def amount(self) -> str:
        return f"amt_{self.state}"


@dataclass(frozen=True)
class ModelSpec:
    """A validated model definition: plain data, picklable, hashable by content.

    Build one with :func:`parse_model` or :func:`read_model_file`.
    """

    name: str
    description: str
    time_unit: str
    parameters: tuple[Parameter, ...]
    states: tuple[State, ...]
    expressions: tuple[tuple[str, str], ...]
    equations: tuple[tuple[str, str], ...]
    observables: tuple[Observable, ...] = ()
    events: tuple[Event, ...] = ()
    references: tuple[str, ...] = ()
    dosing: tuple[DosingCompartment, ...] = ()
    dose_parameter: str | None = None
    source: str = "<string>"
    text: str = field(default="", compare=False, repr=False)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def observable_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)

    @property
    def defaults(self) -> dict[str, float]:
        """Default parameter values by name."""
        return {p.name: p.value for p in self.parameters}

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise ModelError(f"model {self.name!r}: no parameter {name!r}")

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the model's content (not of its file name or formatting)."""
        parts = (self.name, self.time_unit, self.parameters, self.states,
                 self.expressions, self.equations, self.observables, self.events)
        if self.dosing:
            # Appended only when present, so models without dosing keep their fingerprints.
            parts += (self.dosing, self.dose_parameter)
        content = repr(parts)
        return hashlib.sha256(content.encode()).hexdigest()

    def symbolic(self) -> SymbolicModel:
        """The model as sympy expressions (built on demand; not stored, so specs stay small)."""
        from ._symbolic import SymbolicModel

        return SymbolicModel.from_spec(self)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("fingerprint", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def __getattr__(name):
    # SymbolicModel moved to the sympy side (._symbolic); still reachable here.
    if name == "SymbolicModel":
        from ._symbolic import SymbolicModel

        return SymbolicModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Reading and validating model files
# ---------------------------------------------------------------------------------------------

_TOP_KEYS = {"model", "parameters", "states", "expressions", "equations", "observables", "events",
             "dosing"}
_KEYS = {
    "model": {"name", "description", "time_unit", "references"},
    "parameters": {"value", "bounds", "unit", "description", "source"},
    "states": {"initial", "unit", "description"},
    "observables": {"expression", "unit", "description"},
    "events": {"condition", "direction", "terminal", "description"},
    "dosing": {"cmt", "bioavailability", "lag"},
}


class _Problems:
    """Collects every problem of a model file, then fails once."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{self.source}, {where}: {what}")

    def raise_if_any(self) -> None:
        if self.items:
            head = (self.items[0] if len(self.items) == 1
                    else f"{self.source}: {len(self.items)} problems in the model file")
            raise ModelError(head, self.items)


def _is_number(x) -> bool:
    """A finite number that converts to a float (TOML integers are unbounded)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return abs(x) <= sys.float_info.max if isinstance(x, int) else math.isfinite(x)


def _is_bound(x) -> bool:
    """A number usable as a bound: finite, or +-inf (never nan)."""
    return _is_number(x) or (isinstance(x, float) and math.isinf(x))


def _describe(value) -> str:
    """A found value for a message: TOML's spelling of the non-finite floats, long ones cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _check_name(name, where, problems: _Problems) -> bool:
    if not isinstance(name, str) or not name.isidentifier():
        problems.add(where, f"expected a name made of letters, digits and '_', found {name!r}")
    elif name.startswith("__"):
        problems.add(where, f"names starting with '__' are not allowed, found {name!r}")
    elif keyword.iskeyword(name):
        problems.add(where, f"{name!r} is a Python keyword; choose another name")
    elif name in RESERVED:
        problems.add(where, f"{name!r} is reserved (the time 't' or a function name)")
    else:
        return True
    return False


def _table(doc, key, problems, *, required=False) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        problems.add(f"[{key}]", f"expected a table, found {type(value).__name__}")
        return {}
    if required and not value:
        problems.add(f"[{key}]", "expected at least one entry, found none")
    return value


def _unknown_keys(entry: dict, allowed: set, where: str, problems: _Problems) -> None:
    for key in entry:
        if key not in allowed:
            problems.add(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _text(entry, key, where, problems, *, default="", required=False) -> str:
    if key not in entry:
        if required:
            problems.add(where, f"missing key {key!r}")
        return default
    value = entry[key]
    if not isinstance(value, str):
        problems.add(f"{where} {key}", f"expected a string, found {_describe(value)}")
        return default
    return value


def _expression_text(entry, key, where, problems) -> str | None:
    if key not in entry:
        problems.add(where, f"missing key {key!r}")
        return None
    value = entry[key]
    if _is_number(value):
        return repr(float(value))
    if not isinstance(value, str):
        problems.add(f"{where} {key}",
                     f"expected an expression string or a finite number, found "
                     f"{_describe(value)}")
        return None
    return value


class _Names:
    """Every name a model file declares, including those whose entry is malformed.

    A malformed entry is reported once, where it is; its name still counts as declared, so that
    the expressions using it do not add a second, false "unknown name" or "no state" error.
    """

    def __init__(self):
        self.kind: dict[str, str] = {}
        self.by_kind: dict[str, list[str]] = {"parameter": [], "state": [], "expression": [],
                                              "observable": []}

    def declare(self, name: str, kind: str, problems: _Problems, where: str) -> None:
        if name in self.kind:
            problems.add(where, f"the name {name!r} is already used by a {self.kind[name]}")
            return
        self.kind[name] = kind
        self.by_kind[kind].append(name)


def _read_parameters(table, problems, names: _Names) -> list[Parameter]:
    out = []
    for name, entry in table.items():
        where = f"[parameters.{name}]"
        if not _check_name(name, where, problems):
            continue
        names.declare(name, "parameter", problems, where)
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with value, bounds, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["parameters"], where, problems)
        ok = True
        value = entry.get("value")
        if "value" not in entry:
            problems.add(where, "missing key 'value'")
            ok = False
        elif not _is_number(value):
            problems.add(f"{where} value", f"expected a finite number, found {_describe(value)}")
            ok = False
        bounds = entry.get("bounds", [-math.inf, math.inf])
        if not isinstance(bounds, list) or len(bounds) != 2 or not all(map(_is_bound, bounds)):
            problems.add(f"{where} bounds",
                         f"expected [lower, upper] (numbers, inf allowed), found "
                         f"{_describe(bounds)}")
            ok = False
        unit = _text(entry, "unit", where, problems, default="1")
        description = _text(entry, "description", where, problems)
        source = _text(entry, "source", where, problems)
        if not ok:
            continue
        lo, hi = float(bounds[0]), float(bounds[1])
        if not lo <= value <= hi or lo >= hi:
            problems.add(f"{where} bounds",
                         f"expected lower < upper with the value {value} inside, found {bounds!r}")
            continue
        out.append(Parameter(name, float(value), (lo, hi), unit=unit, description=description,
                             source=source))
    return out


def _read_states(table, problems, names: _Names) -> list[State]:
    out = []
    for name, entry in table.items():
        where = f"[states.{name}]"
        if not _check_name(name, where, problems):
            continue
        names.declare(name, "state", problems, where)
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with initial, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["states"], where, problems)
        unit = _text(entry, "unit", where, problems, default="1")
        description = _text(entry, "description", where, problems)
        if "initial" not in entry:
            problems.add(where, "missing key 'initial'")
            continue
        initial = entry["initial"]
        if not (_is_number(initial) or isinstance(initial, str)):
            problems.add(f"{where} initial",
                         f"expected a finite number or an expression, found {_describe(initial)}")
            continue
        out.append(State(name, float(initial) if _is_number(initial) else initial,
                         unit=unit, description=description))
    return out


def _read_observables(table, problems, names: _Names) -> list[Observable]:
    out = []
    for name, entry in table.items():
        where = f"[observables.{name}]"
        if not _check_name(name, where, problems):
            continue
        names.declare(name, "observable", problems, where)
        if isinstance(entry, str):
            entry = {"expression": entry}
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with expression, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["observables"], where, problems)
        expression = _expression_text(entry, "expression", where, problems)
        unit = _text(entry, "unit", where, problems)
        description = _text(entry, "description", where, problems)
        if expression is None:
            continue
        out.append(Observable(name, expression, unit=unit, description=description))
    return out


def _read_events(table, problems) -> list[Event]:
    out = []
    for name, entry in table.items():
        where = f"[events.{name}]"
        if not _check_name(name, where, problems):
            continue
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with condition, direction, ..., found {entry!r}")
            continue
        # Every field is checked before giving up on the entry: all its problems at once.
        _unknown_keys(entry, _KEYS["events"], where, problems)
        ok = True
        condition = _expression_text(entry, "condition", where, problems)
        ok &= condition is not None
        direction = entry.get("direction", "both")
        if not isinstance(direction, str) or direction not in _DIRECTIONS:
            problems.add(f"{where} direction",
                         f"expected one of {', '.join(_DIRECTIONS)}, found {_describe(direction)}")
            ok = False
        terminal = entry.get("terminal", False)
        if not isinstance(terminal, bool):
            problems.add(f"{where} terminal",
                         f"expected true or false, found {_describe(terminal)}")
            ok = False
        description = _text(entry, "description", where, problems)
        if ok:
            out.append(Event(name, condition, direction, terminal, description=description))
    return out


def _read_strings(table, section, problems, names: _Names | None) -> list[tuple[str, str]]:
    out = []
    for name, text in table.items():
        where = f"[{section}] {name}"
        if not _check_name(name, where, problems):
            continue
        if names is not None:
            names.declare(name, "expression", problems, where)
        if _is_number(text):
            text = repr(float(text))
        if not isinstance(text, str):
            problems.add(where, f"expected an expression string or a finite number, found "
                                f"{_describe(text)}")
            continue
        out.append((name, text))
    return out


def _read_time_unit(header, problems) -> str:
    """The model's time unit, by its canonical name (the list the data readers use)."""
    unit = _text(header, "time_unit", "[model]", problems, required=True)
    if "time_unit" not in header or not isinstance(header.get("time_unit"), str):
        return unit
    canonical = canonical_time_unit(unit)
    if canonical is None:
        problems.add("[model] time_unit",
                     f"expected one of {', '.join(DAYS_PER)} (or hours, days, weeks, months, "
                     f"years), found {unit!r}")
        return unit
    return canonical


def parse_model(text: str, source: str = "<string>") -> ModelSpec:
    """Parse and validate the text of a model file.

    Parameters
    ----------
    text : str
        TOML text of the model.
    source : str
        File name (or label) used in error messages.

    Returns
    -------
    ModelSpec
        With ``time_unit`` in its canonical form (``"months"`` becomes ``"month"``).

    Raises
    ------
    ModelError
        Listing every problem found: TOML syntax, unknown or missing keys, wrong types, bounds,
        duplicate or reserved names, states without an equation, an unknown time unit, and
        every expression refused by the safe parser (unknown names come with a "did you mean"
        suggestion; constants must be finite floats; see :mod:`._expressions` for the bounds).
        A malformed entry is reported once: its name still counts as declared elsewhere.
    """
    if not isinstance(text, str):
        raise ModelError(f"{source}: expected the text of a model file, found "
                         f"{type(text).__name__}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{source}: not valid TOML ({exc})") from None
    except (RecursionError, MemoryError):
        raise ModelError(f"{source}: not valid TOML (nested too deeply)") from None
    problems = _Problems(source)
    for key in doc:
        if key not in _TOP_KEYS:
            problems.add(f"[{key}]", f"unknown table (allowed: {', '.join(sorted(_TOP_KEYS))})")

    header = _table(doc, "model", problems, required=True)
    _unknown_keys(header, _KEYS["model"], "[model]", problems)
    name = _text(header, "name", "[model]", problems, required=True)
    if "name" in header and isinstance(header["name"], str) and not name.strip():
        problems.add("[model] name", "expected a non-empty name, found ''")
    time_unit = _read_time_unit(header, problems)
    description = _text(header, "description", "[model]", problems)
    references = header.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        problems.add("[model] references", f"expected a list of strings, found {references!r}")
        references = []

    names = _Names()
    parameters = _read_parameters(_table(doc, "parameters", problems), problems, names)
    states = _read_states(_table(doc, "states", problems, required=True), problems, names)
    expressions = _read_strings(_table(doc, "expressions", problems), "expressions", problems,
                                names)
    equations_table = _table(doc, "equations", problems, required=True)
    equations = _read_strings(equations_table, "equations", problems, None)
    observables = _read_observables(_table(doc, "observables", problems), problems, names)
    events = _read_events(_table(doc, "events", problems), problems)
    dosing, dose_parameter = _read_dosing(_table(doc, "dosing", problems), problems, names,
                                          parameters)
    parameters, equations = _inject_dosing(dosing, parameters, equations,
                                           {st.name: st.unit for st in states}, time_unit)

    declared_states = names.by_kind["state"]
    for n in equations_table:
        if isinstance(n, str) and n not in declared_states and n in names.kind:
            problems.add(f"[equations] {n}",
                         f"{n!r} is a {names.kind[n]}, not a state; only states have equations")
        elif n not in declared_states:
            problems.add(f"[equations] {n}", f"no state {n!r} is declared in [states.{n}]"
                                             f"{_hint(n, declared_states)}")
    for n in declared_states:
        if n not in equations_table:
            problems.add("[equations]", f"missing the equation of state {n!r}")

    _check_expressions(source, names, expressions, equations, states, observables, events,
                       problems)
    problems.raise_if_any()
    return ModelSpec(
        name=name, description=description, time_unit=time_unit,
        parameters=tuple(parameters), states=tuple(states), expressions=tuple(expressions),
        equations=tuple(equations), observables=tuple(observables), events=tuple(events),
        references=tuple(references), dosing=tuple(dosing), dose_parameter=dose_parameter,
        source=source, text=text,
    )


def _read_dosing(table, problems, names: _Names, parameters) -> tuple[list, str | None]:
    """The ``[dosing]`` table: one sub-table per dosing compartment (a state), plus an
    optional ``dose_parameter`` naming the parameter of a record-free single dose at t = 0."""
    out, numbers = [], {}
    dose_parameter = None
    declared = {p.name for p in parameters}
    for name, entry in table.items():
        where = f"[dosing.{name}]"
        if name == "dose_parameter" and not isinstance(entry, dict):
            if not isinstance(entry, str) or entry not in declared:
                problems.add("[dosing] dose_parameter",
                             f"expected the name of a parameter, found {_describe(entry)}"
                             f"{_hint(str(entry), sorted(declared))}")
            else:
                dose_parameter = entry
            continue
        if name not in names.by_kind["state"]:
            problems.add(where, f"expected a state to dose into, found {name!r}"
                                f"{_hint(str(name), names.by_kind['state'])}")
            continue
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with cmt, bioavailability, lag, found "
                                f"{_describe(entry)}")
            continue
        _unknown_keys(entry, _KEYS["dosing"], where, problems)
        cmt = entry.get("cmt")
        if cmt is not None:
            if isinstance(cmt, bool) or not isinstance(cmt, int) or cmt < 1:
                problems.add(f"{where} cmt", f"expected a positive integer, found "
                                             f"{_describe(cmt)}")
                cmt = None
            elif cmt in numbers:
                problems.add(f"{where} cmt", f"number {cmt} is already used by "
                                             f"[dosing.{numbers[cmt]}]")
                cmt = None
            else:
                numbers[cmt] = name
        roles = {}
        for key in ("bioavailability", "lag"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or value not in declared):
                problems.add(f"{where} {key}", f"expected the name of a parameter, found "
                                               f"{_describe(value)}"
                                               f"{_hint(str(value), sorted(declared))}")
                value = None
            roles[key] = value
        comp = DosingCompartment(name, cmt, roles["bioavailability"], roles["lag"])
        for implicit in (comp.rate, comp.amount):
            if implicit in names.kind:
                problems.add(where, f"the name {implicit!r} is reserved for the dosing input "
                                    f"of {name!r} but the file already uses it")
            else:
                names.declare(implicit, "parameter", problems, where)
        out.append(comp)
    return out, dose_parameter


def _inject_dosing(dosing, parameters, equations, units, time_unit):
    """Add each dosing compartment's implicit parameters and its zero-order input term.

    ``rate_STATE`` (default 0) enters the state's equation as ``+ F * rate_STATE`` (``F`` the
    bioavailability parameter, if any), so that infusions are a parameter the simulator switches
    on and off, and per-subject rates need no recompilation; ``amt_STATE`` carries the bolus
    amount into the dose's state jump ``STATE + F * amt_STATE`` for the same reason.
    """
    if not dosing:
        return parameters, equations
    parameters = list(parameters)
    equations = dict(equations)
    for comp in dosing:
        unit = units.get(comp.state, "1")
        parameters.append(Parameter(
            comp.rate, 0.0, (0.0, math.inf), unit=f"{unit}/{time_unit}",
            description=f"zero-order input rate into {comp.state} (set by dose records)",
            source="[dosing] implicit input, set by the simulator"))
        parameters.append(Parameter(
            comp.amount, 0.0, (0.0, math.inf), unit=unit,
            description=f"amount of the bolus being given into {comp.state} (set by dose "
                        f"records)",
            source="[dosing] implicit input, set by the simulator"))
        if comp.state in equations:
            term = (f"{comp.bioavailability} * {comp.rate}" if comp.bioavailability
                    else comp.rate)
            equations[comp.state] = f"({equations[comp.state]}) + {term}"
    return parameters, list(equations.items())


def _hint(name, choices) -> str:
    from ..errors import did_you_mean

    return did_you_mean(name, choices)


def _check_expressions(source, names: _Names, expressions, equations, states, observables,
                       events, problems: _Problems) -> None:
    """Check every expression (no sympy), collecting one refusal per expression, and cycles."""
    # Event conditions may also name observables; other expressions may not.
    with_obs = {"t", *names.kind}
    general = with_obs - set(names.by_kind["observable"])
    params_only = set(names.by_kind["parameter"])
    checks = [(text, general, f"[expressions] {n}") for n, text in expressions]
    checks += [(text, general, f"[equations] {n}") for n, text in equations]
    checks += [(s.initial, params_only, f"[states.{s.name}] initial") for s in states]
    checks += [(o.expression, general, f"[observables.{o.name}] expression")
               for o in observables]
    checks += [(e.condition, with_obs, f"[events.{e.name}] condition") for e in events]
    expression_names = set(names.by_kind["expression"])
    graph: dict[str, set] = {}
    for k, (text, allowed, where) in enumerate(checks):
        try:
            checked = check_expression(text, allowed, f"{source}, {where}")
        except ModelError as exc:
            problems.items.append(str(exc))
            continue
        if k < len(expressions):
            graph[expressions[k][0]] = set(checked.names) & expression_names
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        problems.add("[expressions]", f"expressions refer to each other in a cycle: "
                                      f"{' -> '.join(exc.args[1])}")


def read_model_file(path) -> ModelSpec:
    """Read and validate a model file (TOML). See :func:`parse_model`."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: expected a model file (TOML), found a folder")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: expected a UTF-8 text file") from None
    return parse_model(text, source=str(path))
