"""What a model is: the parsed, validated content of a model file.

A model file is TOML with the tables ``[model]``, ``[parameters.NAME]``, ``[states.NAME]``,
``[expressions]``, ``[equations]``, ``[observables.NAME]``, ``[events.NAME]``,
``[dosing.STATE]``, ``[covariates.NAME]`` and ``[hazards.NAME]`` (see README and
:class:`Hazard`). :func:`parse_model` checks
everything (the section readers are in :mod:`._sections`), collecting every problem before it
fails, and returns a :class:`ModelSpec`: plain, immutable, picklable data. The symbolic view
(sympy expressions with intermediate expressions substituted) is built from it by
:meth:`ModelSpec.symbolic`.

Reading and validating a model needs no sympy (expressions are checked by
:func:`~progression.model._expressions.check_expression`); sympy is imported only to compile.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    from ._symbolic import SymbolicModel

__all__ = [
    "Parameter",
    "State",
    "Observable",
    "Event",
    "DosingCompartment",
    "Covariate",
    "Hazard",
    "ModelSpec",
    "SymbolicModel",
    "parse_model",
    "read_model_file",
]

_DIRECTIONS = {"falling": -1, "rising": 1, "both": 0}
#: How a time-varying covariate is read between its recorded times.
INTERPOLATIONS = ("locf", "linear")


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
    rate_parameter, duration_parameter : str or None
        Names of the parameters giving the rate (NONMEM ``RATE = -1``) or the duration
        (``RATE = -2``) of infusions whose records take them from the model; ``None``: such
        records are refused.
    rate, amount : str
        The implicit parameters ``rate_STATE`` and ``amt_STATE`` that parsing adds: the
        zero-order input rate (``bioavailability * rate_STATE`` is added to the state's
        equation) and the amount of the bolus being given; the simulator sets both.
    running, infusing : str
        With ``rate_parameter`` / ``duration_parameter``: the implicit parameters
        ``nrate_STATE`` (number of running infusions at the modelled rate ``R``; the equation
        gains ``nrate_STATE * R``) and ``damt_STATE`` (total amount of the running infusions of
        modelled duration ``D``; the equation gains ``F * damt_STATE / D``).
    """

    state: str
    cmt: int | None = None
    bioavailability: str | None = None
    lag: str | None = None
    rate_parameter: str | None = None
    duration_parameter: str | None = None

    def __repr__(self) -> str:
        # The new fields appear only when set, so that the fingerprints of models written
        # before them (which hash this repr) do not change.
        text = (f"DosingCompartment(state={self.state!r}, cmt={self.cmt!r}, "
                f"bioavailability={self.bioavailability!r}, lag={self.lag!r}")
        if self.rate_parameter is not None:
            text += f", rate_parameter={self.rate_parameter!r}"
        if self.duration_parameter is not None:
            text += f", duration_parameter={self.duration_parameter!r}"
        return text + ")"

    @property
    def rate(self) -> str:
        return f"rate_{self.state}"

    @property
    def amount(self) -> str:
        return f"amt_{self.state}"

    @property
    def running(self) -> str:
        return f"nrate_{self.state}"

    @property
    def infusing(self) -> str:
        return f"damt_{self.state}"


@dataclass(frozen=True)
class Covariate:
    """A time-varying covariate (a ``[covariates.NAME]`` table of a model file).

    Expressions use its name like a parameter's; its values come per subject at simulation
    time (``simulate(..., covariates=...)``), never from estimation, so it is not one of
    :attr:`ModelSpec.parameter_names`.

    Attributes
    ----------
    name : str
    value : float or None
        Value used for a subject given none; ``None``: every subject must be given one.
    unit, description : str
    interpolation : {"locf", "linear"}
        Between recorded times: the last value carried forward, or linear interpolation
        (before the first time the first value holds, after the last time the last one).
    """

    name: str
    value: float | None = None
    unit: str = ""
    description: str = ""
    interpolation: str = "locf"

    @property
    def required(self) -> bool:
        return self.value is None

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the hidden parameters carrying it in compiled code: its level, and for
        ``"linear"`` its slope in time (``value(t) = level + slope * t`` on each piece). The
        ``.`` keeps them apart from every name a model file can declare."""
        return (self.name, f"{self.name}.slope") if self.interpolation == "linear" \
            else (self.name,)


@dataclass(frozen=True)
class Hazard:
    """A hazard of an event (a ``[hazards.NAME]`` table of a model file): time to event as a
    random variable whose hazard follows the model's state.

    Parsing adds, for hazard ``NAME``:

    * the state ``Lambda_NAME`` (cumulative hazard, initial 0, ``d Lambda / dt = rate``), so
      that the forward sensitivities of the states give ``d Lambda / d theta``;
    * the observables ``hazard_NAME`` (the rate ``h(t)``), ``cumhaz_NAME`` (``Lambda(t)``) and
      ``survival_NAME`` (``S(t) = exp(-Lambda(t))``, the survival since model time 0);
    * the parameter ``z_NAME`` (default 0, bounds [-8, 8]): the patient's standard-normal
      survival score, and the expression ``threshold_NAME = -log(0.5 erfc(z_NAME / sqrt 2))``:
      the patient's Exp(1) threshold (``z ~ N(0, 1)`` gives ``threshold ~ Exp(1)``, so any
      normal variability on ``z_NAME`` draws event times from the hazard; ``z = 0`` gives ln 2,
      the median);
    * unless the file declares ``[events.EVENT]`` itself, the event ``EVENT`` (condition
      ``threshold_NAME - Lambda_NAME``, falling, terminal when ``terminal``): it happens when
      the cumulative hazard reaches the threshold, i.e. with probability ``1 - S(t)`` by ``t``.

    Attributes
    ----------
    name : str
    rate : str
        Expression of the hazard (1/time unit of the model); it may name states, parameters,
        covariates, expressions, observables (inlined) and ``t``; it must be >= 0.
    event : str
        The event it is the hazard of: the label of those events in the data's events table
        (``death``) and the name of the model event added (or declared).
    terminal : bool
        Whether the added event ends the trajectory.
    description : str
    """

    name: str
    rate: str
    event: str
    terminal: bool = True
    description: str = ""

    @property
    def state(self) -> str:
        return f"Lambda_{self.name}"

    @property
    def score(self) -> str:
        return f"z_{self.name}"

    @property
    def threshold(self) -> str:
        return f"threshold_{self.name}"

    @property
    def hazard_observable(self) -> str:
        return f"hazard_{self.name}"

    @property
    def cumulative_observable(self) -> str:
        return f"cumhaz_{self.name}"

    @property
    def survival_observable(self) -> str:
        return f"survival_{self.name}"

    @property
    def implicit_names(self) -> dict[str, str]:
        """Every name parsing adds for this hazard, with its kind."""
        return {self.state: "state", self.score: "parameter", self.threshold: "expression",
                self.hazard_observable: "observable",
                self.cumulative_observable: "observable",
                self.survival_observable: "observable"}


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
    covariates: tuple[Covariate, ...] = ()
    hazards: tuple[Hazard, ...] = ()
    source: str = "<string>"
    text: str = field(default="", compare=False, repr=False)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.covariates)

    @property
    def hidden_names(self) -> tuple[str, ...]:
        """The compiled code's extra parameter rows after the parameters: every covariate's
        :attr:`Covariate.slots`, in file order (empty without covariates)."""
        return tuple(s for c in self.covariates for s in c.slots)

    @property
    def observable_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)

    @property
    def hazard_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hazards)

    def hazard(self, name: str | None = None) -> Hazard:
        """The hazard ``name`` (or the model's only one when ``name`` is None)."""
        if name is None and len(self.hazards) == 1:
            return self.hazards[0]
        for h in self.hazards:
            if h.name == name:
                return h
        raise ModelError(f"model {self.name!r}: no hazard {name!r} (hazards: "
                         f"{', '.join(self.hazard_names) or 'none'})")

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
        if self.covariates:
            parts += (self.covariates,)
        if self.hazards:
            parts += (self.hazards,)
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
        duplicate or reserved names (covariates included), unknown interpolations, states
        without an equation, an unknown time unit, and
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
    from . import _sections as S

    problems = S._Problems(source)
    for key in doc:
        if key not in S._TOP_KEYS:
            problems.add(f"[{key}]",
                         f"unknown table (allowed: {', '.join(sorted(S._TOP_KEYS))})")

    header = S._table(doc, "model", problems, required=True)
    S._unknown_keys(header, S._KEYS["model"], "[model]", problems)
    name = S._text(header, "name", "[model]", problems, required=True)
    if "name" in header and isinstance(header["name"], str) and not name.strip():
        problems.add("[model] name", "expected a non-empty name, found ''")
    time_unit = S._read_time_unit(header, problems)
    description = S._text(header, "description", "[model]", problems)
    references = header.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        problems.add("[model] references", f"expected a list of strings, found {references!r}")
        references = []

    names = S._Names()
    parameters = S._read_parameters(S._table(doc, "parameters", problems), problems, names)
    states = S._read_states(S._table(doc, "states", problems, required=True), problems, names)
    covariates = S._read_covariates(S._table(doc, "covariates", problems), problems, names)
    expressions = S._read_strings(S._table(doc, "expressions", problems), "expressions",
                                  problems, names)
    equations_table = S._table(doc, "equations", problems, required=True)
    equations = S._read_strings(equations_table, "equations", problems, None)
    observables = S._read_observables(S._table(doc, "observables", problems), problems, names)
    events = S._read_events(S._table(doc, "events", problems), problems)
    hazards = S._read_hazards(S._table(doc, "hazards", problems), problems, names)
    dosing, dose_parameter = S._read_dosing(S._table(doc, "dosing", problems), problems, names,
                                            parameters)
    parameters, equations = S._inject_dosing(dosing, parameters, equations,
                                             {st.name: st.unit for st in states}, time_unit)
    S._check_equations({**equations_table, **{h.state: h.rate for h in hazards}}, names,
                       problems)
    S._check_expressions(source, names, expressions, equations, states, observables, events,
                         problems)
    (parameters, states, expressions, equations, observables,
     events) = S._inject_hazards(source, hazards, names, parameters, states, expressions,
                                 equations, observables, events, time_unit, problems)
    problems.raise_if_any()
    return ModelSpec(
        name=name, description=description, time_unit=time_unit,
        parameters=tuple(parameters), states=tuple(states), expressions=tuple(expressions),
        equations=tuple(equations), observables=tuple(observables), events=tuple(events),
        references=tuple(references), dosing=tuple(dosing), dose_parameter=dose_parameter,
        covariates=tuple(covariates), hazards=tuple(hazards), source=source, text=text,
    )


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
