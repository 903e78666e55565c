"""What a model is: the parsed, validated content of a model file.

A model file is TOML with the tables ``[model]``, ``[parameters.NAME]``, ``[states.NAME]``,
``[expressions]``, ``[equations]``, ``[observables.NAME]`` and ``[events.NAME]`` (see README).
:func:`parse_model` checks everything, collecting every problem before it fails, and returns a
:class:`ModelSpec`: plain, immutable, picklable data. The symbolic view (sympy expressions with
intermediate expressions substituted) is built from it by :meth:`ModelSpec.symbolic`.
"""

from __future__ import annotations

import graphlib
import hashlib
import keyword
import math
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import sympy as sp

from ..errors import ModelError
from ._expressions import RESERVED, parse_expression

__all__ = [
    "Parameter",
    "State",
    "Observable",
    "Event",
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
        content = repr((self.name, self.time_unit, self.parameters, self.states,
                        self.expressions, self.equations, self.observables, self.events))
        return hashlib.sha256(content.encode()).hexdigest()

    def symbolic(self) -> SymbolicModel:
        """The model as sympy expressions (built on demand; not stored, so specs stay small)."""
        return SymbolicModel.from_spec(self)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("fingerprint", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass
class SymbolicModel:
    """Sympy expressions of a model, intermediate expressions substituted.

    Attributes
    ----------
    t : sympy.Symbol
    y, p : list of sympy.Symbol
        State and parameter symbols, in model order.
    rhs : list of sympy.Expr
        One right-hand side per state.
    initial : list of sympy.Expr
        Initial values, functions of ``p``.
    observables, events : list of sympy.Expr
        Observable expressions and event conditions, functions of ``t, y, p``.
    intermediates : dict of str to sympy.Expr
        Named expressions, fully substituted.
    symbols : dict of str to sympy.Symbol
        Every name an expression may use (for parsing further expressions such as jumps).
    """

    t: sp.Symbol
    y: list
    p: list
    rhs: list
    initial: list
    observables: list
    events: list
    intermediates: dict
    symbols: dict

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> SymbolicModel:
        src = spec.source
        t = sp.Symbol("t", real=True)
        y = [sp.Symbol(s.name, real=True) for s in spec.states]
        p = [sp.Symbol(q.name, real=True) for q in spec.parameters]
        base = {"t": t, **{s.name: s for s in y}, **{s.name: s for s in p}}
        expr_names = [n for n, _ in spec.expressions]
        expr_symbols = {n: sp.Symbol(n, real=True) for n in expr_names}
        symbols = {**base, **expr_symbols}

        raw = {n: parse_expression(text, symbols, f"{src}, [expressions] {n}")
               for n, text in spec.expressions}
        order = _expression_order(raw, expr_symbols, src)
        resolved: dict[str, sp.Expr] = {}
        for name in order:
            resolved[name] = raw[name].xreplace(
                {expr_symbols[k]: v for k, v in resolved.items()})
        substitute = {expr_symbols[k]: v for k, v in resolved.items()}

        def full(text, where):
            return parse_expression(text, symbols, where).xreplace(substitute)

        equations = dict(spec.equations)
        rhs = [full(equations[s.name], f"{src}, [equations] {s.name}") for s in spec.states]
        param_only = {k: v for k, v in base.items() if k not in spec.state_names and k != "t"}
        initial = [parse_expression(s.initial, param_only, f"{src}, [states.{s.name}] initial")
                   for s in spec.states]
        observables = [full(o.expression, f"{src}, [observables.{o.name}] expression")
                       for o in spec.observables]
        # Event conditions may also name observables (e.g. "ALSFRS_R - 47").
        obs_symbols = {o.name: sp.Symbol(o.name, real=True) for o in spec.observables}
        obs_values = {obs_symbols[o.name]: v for o, v in zip(spec.observables, observables,
                                                             strict=True)}
        events = [parse_expression(e.condition, {**symbols, **obs_symbols},
                                   f"{src}, [events.{e.name}] condition")
                  .xreplace(substitute).xreplace(obs_values) for e in spec.events]
        return cls(t, y, p, rhs, initial, observables, events, resolved, symbols)

    def parse(self, text, where: str) -> sp.Expr:
        """Parse a further expression (e.g. a state jump) over this model's names."""
        substitute = {self.symbols[k]: v for k, v in self.intermediates.items()}
        return parse_expression(text, self.symbols, where).xreplace(substitute)


def _expression_order(raw: dict, expr_symbols: dict, src: str) -> list[str]:
    graph = {name: {n for n, s in expr_symbols.items() if s in expr.free_symbols}
             for name, expr in raw.items()}
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ModelError(f"{src}, [expressions]: expressions refer to each other in a cycle: "
                         f"{cycle}") from None


# ---------------------------------------------------------------------------------------------
# Reading and validating model files
# ---------------------------------------------------------------------------------------------

_TOP_KEYS = {"model", "parameters", "states", "expressions", "equations", "observables", "events"}
_KEYS = {
    "model": {"name", "description", "time_unit", "references"},
    "parameters": {"value", "bounds", "unit", "description", "source"},
    "states": {"initial", "unit", "description"},
    "observables": {"expression", "unit", "description"},
    "events": {"condition", "direction", "terminal", "description"},
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
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


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
        problems.add(f"{where} {key}", f"expected a string, found {value!r}")
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
        problems.add(f"{where} {key}", f"expected an expression string, found {value!r}")
        return None
    return value


def _read_parameters(table, problems) -> list[Parameter]:
    out = []
    for name, entry in table.items():
        where = f"[parameters.{name}]"
        if not _check_name(name, where, problems):
            continue
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with value, bounds, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["parameters"], where, problems)
        value = entry.get("value")
        if not _is_number(value):
            problems.add(f"{where} value", f"expected a finite number, found {value!r}")
            continue
        bounds = entry.get("bounds", [-math.inf, math.inf])
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)):
            problems.add(f"{where} bounds", f"expected [lower, upper], found {bounds!r}")
            continue
        lo, hi = float(bounds[0]), float(bounds[1])
        if not lo <= value <= hi or lo >= hi:
            problems.add(f"{where} bounds",
                         f"expected lower < upper with the value {value} inside, found {bounds!r}")
            continue
        out.append(Parameter(
            name, float(value), (lo, hi),
            unit=_text(entry, "unit", where, problems, default="1"),
            description=_text(entry, "description", where, problems),
            source=_text(entry, "source", where, problems),
        ))
    return out


def _read_states(table, problems) -> list[State]:
    out = []
    for name, entry in table.items():
        where = f"[states.{name}]"
        if not _check_name(name, where, problems):
            continue
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with initial, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["states"], where, problems)
        initial = entry.get("initial")
        if initial is None:
            problems.add(where, "missing key 'initial'")
            continue
        if not (_is_number(initial) or isinstance(initial, str)):
            problems.add(f"{where} initial",
                         f"expected a number or an expression, found {initial!r}")
            continue
        out.append(State(name, float(initial) if _is_number(initial) else initial,
                         unit=_text(entry, "unit", where, problems, default="1"),
                         description=_text(entry, "description", where, problems)))
    return out


def _read_observables(table, problems) -> list[Observable]:
    out = []
    for name, entry in table.items():
        where = f"[observables.{name}]"
        if not _check_name(name, where, problems):
            continue
        if isinstance(entry, str):
            entry = {"expression": entry}
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with expression, unit, ..., found {entry!r}")
            continue
        _unknown_keys(entry, _KEYS["observables"], where, problems)
        expression = _expression_text(entry, "expression", where, problems)
        if expression is None:
            continue
        out.append(Observable(name, expression, unit=_text(entry, "unit", where, problems),
                              description=_text(entry, "description", where, problems)))
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
        _unknown_keys(entry, _KEYS["events"], where, problems)
        condition = _expression_text(entry, "condition", where, problems)
        direction = entry.get("direction", "both")
        if direction not in _DIRECTIONS:
            problems.add(f"{where} direction",
                         f"expected one of {', '.join(_DIRECTIONS)}, found {direction!r}")
            continue
        terminal = entry.get("terminal", False)
        if not isinstance(terminal, bool):
            problems.add(f"{where} terminal", f"expected true or false, found {terminal!r}")
            continue
        if condition is None:
            continue
        out.append(Event(name, condition, direction, terminal,
                         description=_text(entry, "description", where, problems)))
    return out


def _read_strings(table, section, problems) -> list[tuple[str, str]]:
    out = []
    for name, text in table.items():
        where = f"[{section}] {name}"
        if not _check_name(name, where, problems):
            continue
        if _is_number(text):
            text = repr(float(text))
        if not isinstance(text, str):
            problems.add(where, f"expected an expression string, found {text!r}")
            continue
        out.append((name, text))
    return out


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

    Raises
    ------
    ModelError
        Listing every problem found: TOML syntax, unknown or missing keys, wrong types, bounds,
        duplicate or reserved names, states without an equation, and every expression refused
        by the safe parser (unknown names come with a "did you mean" suggestion).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{source}: not valid TOML ({exc})") from None
    problems = _Problems(source)
    for key in doc:
        if key not in _TOP_KEYS:
            problems.add(f"[{key}]", f"unknown table (allowed: {', '.join(sorted(_TOP_KEYS))})")

    header = _table(doc, "model", problems, required=True)
    _unknown_keys(header, _KEYS["model"], "[model]", problems)
    name = _text(header, "name", "[model]", problems, required=True)
    time_unit = _text(header, "time_unit", "[model]", problems, required=True)
    description = _text(header, "description", "[model]", problems)
    references = header.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        problems.add("[model] references", f"expected a list of strings, found {references!r}")
        references = []

    parameters = _read_parameters(_table(doc, "parameters", problems), problems)
    states = _read_states(_table(doc, "states", problems, required=True), problems)
    expressions = _read_strings(_table(doc, "expressions", problems), "expressions", problems)
    equations = _read_strings(_table(doc, "equations", problems, required=True), "equations",
                              problems)
    observables = _read_observables(_table(doc, "observables", problems), problems)
    events = _read_events(_table(doc, "events", problems), problems)

    seen: dict[str, str] = {}
    for kind, names in (("parameter", [p.name for p in parameters]),
                        ("state", [s.name for s in states]),
                        ("expression", [n for n, _ in expressions]),
                        ("observable", [o.name for o in observables])):
        for n in names:
            if n in seen:
                problems.add(f"{kind} {n!r}", f"the name is already used by a {seen[n]}")
            else:
                seen[n] = kind
    state_names = {s.name for s in states}
    for n, _ in equations:
        if n not in state_names:
            problems.add(f"[equations] {n}", f"no state {n!r} is declared in [states.{n}]")
    for s in states:
        if s.name not in dict(equations):
            problems.add("[equations]", f"missing the equation of state {s.name!r}")
    problems.raise_if_any()

    spec = ModelSpec(
        name=name, description=description, time_unit=time_unit,
        parameters=tuple(parameters), states=tuple(states), expressions=tuple(expressions),
        equations=tuple(equations), observables=tuple(observables), events=tuple(events),
        references=tuple(references), source=source, text=text,
    )
    _check_expressions(spec, problems)
    problems.raise_if_any()
    return spec


def _check_expressions(spec: ModelSpec, problems: _Problems) -> None:
    """Parse every expression once, collecting each refusal (the first error per expression)."""
    try:
        spec.symbolic()
        return
    except ModelError:
        pass
    # Something failed: re-parse each expression on its own to report every problem, not just
    # the first one.
    names = ["t", *spec.state_names, *spec.parameter_names, *(n for n, _ in spec.expressions)]
    symbols = {n: sp.Symbol(n) for n in names}
    params_only = {n: symbols[n] for n in spec.parameter_names}
    checks = [(text, symbols, f"[expressions] {n}") for n, text in spec.expressions]
    checks += [(text, symbols, f"[equations] {n}") for n, text in spec.equations]
    checks += [(s.initial, params_only, f"[states.{s.name}] initial") for s in spec.states]
    checks += [(o.expression, symbols, f"[observables.{o.name}] expression")
               for o in spec.observables]
    with_obs = {**symbols, **{o.name: sp.Symbol(o.name) for o in spec.observables}}
    checks += [(e.condition, with_obs, f"[events.{e.name}] condition") for e in spec.events]
    for text, syms, where in checks:
        try:
            parse_expression(text, syms, f"{spec.source}, {where}")
        except ModelError as exc:
            problems.items.append(str(exc))
    if not problems.items:  # the per-expression parses passed: the failure was a cycle
        try:
            spec.symbolic()
        except ModelError as exc:
            problems.items.append(str(exc))


def read_model_file(path) -> ModelSpec:
    """Read and validate a model file (TOML). See :func:`parse_model`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: expected a UTF-8 text file") from None
    return parse_model(text, source=str(path))
