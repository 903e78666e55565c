"""Readers of the sections of a model file, and the checks across them.

:func:`~progression.model.spec.parse_model` reads the TOML document and hands each table to a
reader here (``[parameters]``, ``[states]``, ``[expressions]``, ``[equations]``,
``[observables]``, ``[events]``, ``[dosing]``, ``[covariates]``, ``[hazards]``). Every reader
adds what is wrong to one :class:`_Problems` collector instead of failing, so that a file's
problems are reported all at once; :func:`_check_expressions` then checks every expression
against the declared names, and :func:`_inject_hazards` adds what each hazard implies.
"""

from __future__ import annotations

import graphlib
import keyword
import math
import sys

from ..data._units import DAYS_PER, canonical_time_unit
from ..errors import ModelError
from ._expressions import RESERVED, check_expression
from .spec import (
    _DIRECTIONS,
    INTERPOLATIONS,
    Covariate,
    DosingCompartment,
    Event,
    Hazard,
    Observable,
    Parameter,
    State,
)

_TOP_KEYS = {"model", "parameters", "states", "expressions", "equations", "observables", "events",
             "dosing", "covariates", "hazards"}
_KEYS = {
    "model": {"name", "description", "time_unit", "references"},
    "parameters": {"value", "bounds", "unit", "description", "source"},
    "states": {"initial", "unit", "description"},
    "observables": {"expression", "unit", "description"},
    "events": {"condition", "direction", "terminal", "description"},
    "dosing": {"cmt", "bioavailability", "lag", "rate", "duration"},
    "covariates": {"value", "unit", "description", "interpolation"},
    "hazards": {"rate", "event", "terminal", "description"},
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


def _entries(table, section: str, problems: _Problems, expected: str, *, names=None,
             kind: str = "", show=repr, coerce=None):
    """The entries of a ``[section.NAME]`` table worth reading: yields ``(name, entry,
    where)`` for each whose name is valid and whose value is a table (after ``coerce``, e.g.
    a string shorthand), its unknown keys reported; every other one is reported ("expected a
    table with ``expected``, found ``show(entry)``") and skipped. With ``names``, each name
    is declared as a ``kind`` first (a clash is reported, the entry still read)."""
    for name, entry in table.items():
        where = f"[{section}.{name}]"
        if not _check_name(name, where, problems):
            continue
        if names is not None:
            names.declare(name, kind, problems, where)
        if coerce is not None:
            entry = coerce(entry)
        if not isinstance(entry, dict):
            problems.add(where, f"expected a table with {expected}, found {show(entry)}")
            continue
        _unknown_keys(entry, _KEYS[section], where, problems)
        yield name, entry, where


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
                                              "observable": [], "covariate": []}

    def declare(self, name: str, kind: str, problems: _Problems, where: str) -> None:
        if name in self.kind:
            problems.add(where, f"the name {name!r} is already used by a {self.kind[name]}")
            return
        self.kind[name] = kind
        self.by_kind[kind].append(name)


def _read_parameters(table, problems, names: _Names) -> list[Parameter]:
    out = []
    for name, entry, where in _entries(table, "parameters", problems,
                                       "value, bounds, unit, ...", names=names,
                                       kind="parameter"):
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
    for name, entry, where in _entries(table, "states", problems, "initial, unit, ...",
                                       names=names, kind="state"):
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


def _expression_shorthand(entry):
    """An observable given as a string is its expression alone."""
    return {"expression": entry} if isinstance(entry, str) else entry


def _read_observables(table, problems, names: _Names) -> list[Observable]:
    out = []
    for name, entry, where in _entries(table, "observables", problems,
                                       "expression, unit, ...", names=names,
                                       kind="observable", coerce=_expression_shorthand):
        expression = _expression_text(entry, "expression", where, problems)
        unit = _text(entry, "unit", where, problems)
        description = _text(entry, "description", where, problems)
        if expression is None:
            continue
        out.append(Observable(name, expression, unit=unit, description=description))
    return out


def _read_events(table, problems) -> list[Event]:
    out = []
    for name, entry, where in _entries(table, "events", problems,
                                       "condition, direction, ..."):
        # Every field is checked before giving up on the entry: all its problems at once.
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


def _read_covariates(table, problems, names: _Names) -> list[Covariate]:
    """The ``[covariates]`` table: one sub-table per time-varying covariate."""
    out = []
    for name, entry, where in _entries(table, "covariates", problems,
                                       "value, unit, description, interpolation",
                                       names=names, kind="covariate", show=_describe):
        ok = True
        value = entry.get("value")
        if "value" in entry and not _is_number(value):
            problems.add(f"{where} value", f"expected a finite number (the default for subjects "
                                           f"given none), found {_describe(value)}")
            ok = False
        interpolation = entry.get("interpolation", "locf")
        if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
            problems.add(f"{where} interpolation", f"expected one of "
                                                   f"{', '.join(map(repr, INTERPOLATIONS))}, "
                                                   f"found {_describe(interpolation)}")
            ok = False
        unit = _text(entry, "unit", where, problems)
        description = _text(entry, "description", where, problems)
        if ok:
            out.append(Covariate(name, None if value is None else float(value), unit=unit,
                                 description=description, interpolation=interpolation))
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
            problems.add(where, f"expected a table with cmt, bioavailability, lag, rate, "
                                f"duration, found "
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
        for key in ("bioavailability", "lag", "rate", "duration"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or value not in declared):
                problems.add(f"{where} {key}", f"expected the name of a parameter, found "
                                               f"{_describe(value)}"
                                               f"{_hint(str(value), sorted(declared))}")
                value = None
            roles[key] = value
        _check_modelled_infusion(roles, where, parameters, problems)
        comp = DosingCompartment(name, cmt, roles["bioavailability"], roles["lag"],
                                 roles["rate"], roles["duration"])
        implicits = [comp.rate, comp.amount]
        implicits += [comp.running] if comp.rate_parameter else []
        implicits += [comp.infusing] if comp.duration_parameter else []
        for implicit in implicits:
            if implicit in names.kind:
                problems.add(where, f"the name {implicit!r} is reserved for the dosing input "
                                    f"of {name!r} but the file already uses it")
            else:
                names.declare(implicit, "parameter", problems, where)
        out.append(comp)
    return out, dose_parameter


def _check_modelled_infusion(roles, where, parameters, problems) -> None:
    """The ``rate`` / ``duration`` keys (NONMEM's R and D, used by RATE = -1 / -2 records).

    As in NONMEM a compartment may have both (each record's RATE picks one), but they must be
    two parameters (a rate and a duration differ in unit). The duration divides the dose
    (``F * AMT / D``), so its default value must be positive; a non-positive value given at
    simulation time is refused there, naming the record.
    """
    rate, duration = roles["rate"], roles["duration"]
    if rate is not None and rate == duration:
        problems.add(f"{where} duration", f"expected a parameter other than the rate's "
                                          f"({rate!r}): a rate and a duration differ in unit")
        roles["duration"] = None
        return
    values = {p.name: p.value for p in parameters}
    for key in ("rate", "duration"):
        name = roles[key]
        if name is not None and not values[name] > 0:
            problems.add(f"{where} {key}", f"expected a parameter with a positive value (the "
                                           f"infusion's {key}), found {name!r} = "
                                           f"{values[name]:g}")
            roles[key] = None


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
        gain = f"{comp.bioavailability} * " if comp.bioavailability else ""
        terms = [f"{gain}{comp.rate}"]
        if comp.rate_parameter:
            # NONMEM's RATE = -1: the rate is R itself; F lengthens the infusion instead.
            parameters.append(Parameter(
                comp.running, 0.0, (0.0, math.inf), unit="1",
                description=f"number of running infusions into {comp.state} at the modelled "
                            f"rate {comp.rate_parameter} (set by dose records)",
                source="[dosing] implicit input, set by the simulator"))
            terms.append(f"{comp.running} * {comp.rate_parameter}")
        if comp.duration_parameter:
            # NONMEM's RATE = -2: F * AMT over the modelled duration D.
            parameters.append(Parameter(
                comp.infusing, 0.0, (0.0, math.inf), unit=unit,
                description=f"amount of the running infusions into {comp.state} over the "
                            f"modelled duration {comp.duration_parameter} (set by dose "
                            f"records)",
                source="[dosing] implicit input, set by the simulator"))
            terms.append(f"{gain}{comp.infusing} / {comp.duration_parameter}")
        if comp.state in equations:
            equations[comp.state] = f"({equations[comp.state]}) + {' + '.join(terms)}"
    return parameters, list(equations.items())


def _check_equations(equations_table, names: _Names, problems: _Problems) -> None:
    """One equation per declared state, and only for states."""
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


def _hint(name, choices) -> str:
    from ..errors import did_you_mean

    return did_you_mean(name, choices)


def _check_expressions(source, names: _Names, expressions, equations, states, observables,
                       events, problems: _Problems) -> None:
    """Check every expression (no sympy), collecting one refusal per expression, and cycles."""
    # Event conditions may also name observables; other expressions may not.
    with_obs = {"t", *names.kind}
    general = with_obs - set(names.by_kind["observable"])
    # Initial values may use covariates too (their values at the start time).
    params_only = set(names.by_kind["parameter"]) | set(names.by_kind["covariate"])
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




def _read_hazards(table, problems, names: _Names) -> list[Hazard]:
    """The ``[hazards]`` table: one sub-table per hazard (see :class:`~.spec.Hazard`).

    The names each hazard adds (``Lambda_NAME``, ``z_NAME``, ``threshold_NAME``,
    ``hazard_NAME``, ``cumhaz_NAME``, ``survival_NAME``) are declared here, so that a file
    using one of them already is told so, and the other sections may use them (an event
    condition may name ``Lambda_NAME`` and ``threshold_NAME``).
    """
    out = []
    events: dict[str, str] = {}
    for name, entry, where in _entries(table, "hazards", problems,
                                       "rate, event, terminal, description", show=_describe):
        ok = True
        rate = entry.get("rate")
        if "rate" not in entry:
            problems.add(where, "missing key 'rate' (the hazard, an expression >= 0 in 1/time "
                                "unit of the model)")
            ok = False
        elif _is_number(rate):
            if not rate > 0:
                problems.add(f"{where} rate", f"expected a positive hazard (a constant rate "
                                              f"must be > 0), found {_describe(rate)}")
                ok = False
            rate = repr(float(rate))
        elif not isinstance(rate, str) or not rate.strip():
            problems.add(f"{where} rate", f"expected an expression string or a positive "
                                          f"number, found {_describe(rate)}")
            ok = False
        event = entry.get("event", name)
        if not isinstance(event, str) or not event.isidentifier():
            problems.add(f"{where} event", f"expected the event's name (letters, digits and "
                                           f"'_', the label of these events in the data), "
                                           f"found {_describe(event)}")
            ok = False
        elif event in events:
            problems.add(f"{where} event", f"event {event!r} already has a hazard "
                                           f"([hazards.{events[event]}]); expected one hazard "
                                           "per event")
            ok = False
        else:
            events[event] = name
        terminal = entry.get("terminal", True)
        if not isinstance(terminal, bool):
            problems.add(f"{where} terminal", f"expected true or false, found "
                                              f"{_describe(terminal)}")
            ok = False
        description = _text(entry, "description", where, problems)
        hazard = Hazard(name, rate if isinstance(rate, str) else "", event if isinstance(
            event, str) else name, terminal is True, description=description)
        for implicit, kind in hazard.implicit_names.items():
            if implicit in names.kind:
                problems.add(where, f"the name {implicit!r} is reserved for the {kind} that "
                                    f"[hazards.{name}] adds, but the file already uses it "
                                    f"(a {names.kind[implicit]})")
                ok = False
            else:
                names.declare(implicit, kind, problems, where)
        if ok:
            out.append(hazard)
    return out


def _inline_observables(text: str, observables) -> str:
    """``text`` with every observable's name replaced by its (parenthesised) expression: a
    hazard's rate may name observables, the state equation it becomes may not."""
    import ast

    bodies = {o.name: ast.parse(f"({o.expression})", mode="eval").body for o in observables}

    class _Inline(ast.NodeTransformer):
        def visit_Name(self, node):
            return bodies.get(node.id, node)

    tree = _Inline().visit(ast.parse(text, mode="eval"))
    return ast.unparse(tree)


def _inject_hazards(source, hazards, names: _Names, parameters, states, expressions,
                    equations, observables, events, time_unit, problems):
    """Add each hazard's cumulative-hazard state and equation, survival score, threshold,
    observables and (unless declared) event; each rate is checked here, naming its key."""
    if not hazards:
        return parameters, states, expressions, equations, observables, events
    parameters, states = list(parameters), list(states)
    expressions, equations = list(expressions), list(equations)
    observables, events = list(observables), list(events)
    allowed = {"t", *names.kind}
    declared_events = {e.name for e in events}
    file_observables = [o for o in observables]
    for h in hazards:
        where = f"[hazards.{h.name}] rate"
        try:
            check_expression(h.rate, allowed, f"{source}, {where}")
            rate = _inline_observables(h.rate, file_observables)
        except ModelError as exc:
            problems.items.append(str(exc))
            rate = "0.0"
        except (SyntaxError, ValueError, RecursionError) as exc:
            problems.add(where, f"cannot inline the observables it names ({exc})")
            rate = "0.0"
        per_time = f"1/{time_unit}"
        states.append(State(h.state, 0.0, unit="1",
                            description=f"cumulative hazard of {h.event} ([hazards.{h.name}])"))
        equations.append((h.state, rate))
        parameters.append(Parameter(
            h.score, 0.0, (-8.0, 8.0), unit="1",
            description=f"survival score of {h.event}: a standard-normal per-patient draw; "
                        f"the patient's Exp(1) threshold of the cumulative hazard is "
                        f"-log(0.5 erfc(z / sqrt(2))) (0: ln 2, the median event time)",
            source=f"[hazards.{h.name}] implicit parameter"))
        expressions.append((h.threshold, f"-log(0.5 * erfc({h.score} / sqrt(2)))"))
        observables += [
            Observable(h.hazard_observable, rate, unit=per_time,
                       description=f"hazard of {h.event}" + (f": {h.description}"
                                                             if h.description else "")),
            Observable(h.cumulative_observable, h.state, unit="1",
                       description=f"cumulative hazard of {h.event} since model time 0"),
            Observable(h.survival_observable, f"exp(-{h.state})", unit="1",
                       description=f"probability of no {h.event} since model time 0"),
        ]
        if h.event not in declared_events:
            events.append(Event(h.event, f"{h.threshold} - {h.state}", "falling", h.terminal,
                                description=f"{h.event}: the cumulative hazard of "
                                            f"[hazards.{h.name}] reaches the patient's "
                                            f"threshold ({h.threshold})"))
    return parameters, states, expressions, equations, observables, events
