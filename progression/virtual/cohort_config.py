"""Generic parts of a synthetic-cohort description read from TOML.

A synthetic cohort is described by a TOML file whose disease-specific sections (covariates,
diagnosis, enrolment criteria) belong to the disease content that generates it (for ALS
:mod:`progression.als.cohort_config`, documented in ``configs/cohorts/als_clinic.toml``). The
parts that mean the same for any model are here: between-subject variability of parameters
(:class:`ParameterSpec`) and shared factors (:class:`FactorSpec`), how an observable is
measured (:class:`ObservableSpec`), and the readers of the ``[fixed]``, ``[parameters]``,
``[factors]``, ``[visits]`` and ``[observables]`` sections. :class:`ConfigReader` collects every
problem so that one :class:`~progression.errors.ConfigError` names the file and each key.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean

__all__ = [
    "ParameterSpec",
    "FactorSpec",
    "ObservableSpec",
    "ConfigReader",
    "ERROR_MODELS",
    "read_toml",
    "parse_fixed",
    "parse_parameters",
    "parse_factors",
    "parse_visits",
    "parse_observables",
    "raise_problems",
]

#: Generic measurement-error models of :class:`ObservableSpec` (``"score"``: rounded and
#: clipped to the observable's ``score_range``).
ERROR_MODELS = ("lognormal", "normal", "score")


@dataclass(frozen=True)
class ParameterSpec:
    """Between-subject variability of one model parameter.

    The value of subject *i* is ``typical * exp(sum(effects * terms_i) + sum(loading * f_i)
    + sd * z_i)`` for ``scale = "log"`` and ``typical + sum(...) + sd * z_i`` for
    ``scale = "normal"``; draws outside ``bounds`` are redrawn (the distribution is
    truncated), and after 50 tries clipped.
    """

    name: str
    typical: float
    sd: float = 0.0
    scale: str = "log"
    effects: tuple[tuple[str, float], ...] = ()
    bounds: tuple[float, float] = (-math.inf, math.inf)


@dataclass(frozen=True)
class FactorSpec:
    """A shared random effect ``f_i ~ N(0, sd^2)`` entering several parameters with loadings
    (e.g. a common pace of disease multiplying both k0 and kA)."""

    name: str
    sd: float
    loadings: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ObservableSpec:
    """How an observable is measured: which model output, error model, and how often.

    ``error`` is ``"lognormal"`` (``exp(log f + subject_sd eta + residual_sd eps)``),
    ``"normal"`` (``f + subject_sd eta + residual_sd eps``) or a rounded bounded score
    (``"score"``: ``round(f + ...)`` clipped to ``score_range``; disease content may give
    it its own name, e.g. ``"alsfrs"`` for ALSFRS-R on 0-48).
    """

    name: str
    model: str
    error: str = "lognormal"
    residual_sd: float = 0.0
    subject_sd: float = 0.0
    residual: str = "normal"
    df: float = 3.0
    floor: float | None = None
    decimals: int = 2
    baseline: float = 1.0
    probability: float = 1.0
    score_range: tuple[float, float] | None = None



def read_toml(path: str | os.PathLike) -> dict:
    """Read a TOML config file; a missing, unreadable or malformed file is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


class ConfigReader:
    """Collects problems while reading typed values out of nested tables."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def where(self, key: str) -> str:
        return f"{self.source}, key '{key}'"

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.where(key)}: {text}")

    def table(self, doc: Mapping, key: str, name: str, allowed: tuple[str, ...]) -> dict:
        value = doc.get(name, {})
        if not isinstance(value, Mapping):
            self.problem(key, f"expected a table, found {_kind(value)}")
            return {}
        self.unknown(value, key, allowed)
        return dict(value)

    def unknown(self, table: Mapping, key: str, allowed: tuple[str, ...]) -> None:
        for k in table:
            if k not in allowed:
                hint = did_you_mean(str(k), allowed, parenthesised=True)
                self.problem(f"{key}.{k}" if key else str(k),
                             f"unknown key{hint}; expected one of " + ", ".join(allowed))

    def number(self, table: Mapping, key: str, name: str, default, *, lo=None, hi=None,
               lo_open=False, integer=False):
        if name not in table:
            return default
        x = table[name]
        full = f"{key}.{name}" if key else name
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            self.problem(full, f"expected {'an integer' if integer else 'a number'}, found "
                         f"{_kind(x)}")
            return default
        if integer and not float(x).is_integer():
            self.problem(full, f"expected an integer, found {x!r}")
            return default
        if not math.isfinite(float(x)):
            self.problem(full, f"expected a finite number, found {x!r}")
            return default
        if lo is not None and (x <= lo if lo_open else x < lo):
            self.problem(full, f"expected a number {'>' if lo_open else '>='} {lo:g}, "
                         f"found {x!r}")
            return default
        if hi is not None and x > hi:
            self.problem(full, f"expected a number <= {hi:g}, found {x!r}")
            return default
        return int(x) if integer else float(x)

    def string(self, table: Mapping, key: str, name: str, default, choices=None):
        if name not in table:
            return default
        x = table[name]
        full = f"{key}.{name}" if key else name
        if not isinstance(x, str):
            self.problem(full, f"expected text, found {_kind(x)}")
            return default
        if choices is not None and x not in choices:
            self.problem(full, "expected one of " + ", ".join(f"'{c}'" for c in choices)
                         + f", found '{x}'")
            return default
        return x

    def pair(self, table: Mapping, key: str, name: str, default, *, lo=None):
        if name not in table:
            return default
        x = table[name]
        full = f"{key}.{name}" if key else name
        if (not isinstance(x, list) or len(x) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in x)):
            self.problem(full, f"expected two numbers [low, high], found {_show(x)}")
            return default
        a, b = float(x[0]), float(x[1])
        if not (math.isfinite(a) and math.isfinite(b)) or a > b or (lo is not None and a < lo):
            self.problem(full, "expected [low, high] with low <= high"
                         + (f" and low >= {lo:g}" if lo is not None else "")
                         + f", found {_show(x)}")
            return default
        return (a, b)


def _kind(x) -> str:
    if isinstance(x, bool):
        return f"a boolean ({str(x).lower()})"
    if isinstance(x, str):
        return f"text '{x}'"
    if isinstance(x, Mapping):
        return "a table"
    if isinstance(x, list):
        return f"a list {_show(x)}"
    return f"{type(x).__name__} {x!r}"


def _show(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."




# ------------------------------------------------------------------------- section readers


def raise_problems(r: ConfigReader, what: str = "the population config") -> None:
    """Raise the reader's problems as one ConfigError (nothing when there are none)."""
    if len(r.problems) == 1:
        raise ConfigError(r.problems[0])
    if r.problems:
        raise ConfigError(f"{r.source}: {len(r.problems)} problems in {what}", r.problems)


def _param_checker(r: ConfigReader, model, model_name: str):
    pnames = tuple(model.parameter_names) if model is not None else ()

    def check_param(key: str, name: str) -> bool:
        if model is None or name in pnames:
            return True
        hint = did_you_mean(name, pnames, parenthesised=True)
        r.problem(key, f"unknown parameter '{name}' of model '{model_name}'{hint}")
        return False

    return check_param


def parse_fixed(r: ConfigReader, doc: Mapping, model, model_name: str
                ) -> tuple[tuple[str, float], ...]:
    """``[fixed]``: population values of parameters that do not vary, ``NAME = value``."""
    check_param = _param_checker(r, model, model_name)
    fixed_doc = doc.get("fixed", {})
    fixed: list[tuple[str, float]] = []
    if not isinstance(fixed_doc, Mapping):
        r.problem("fixed", f"expected a table of parameter = value, found {_kind(fixed_doc)}")
    else:
        for name in fixed_doc:
            if check_param(f"fixed.{name}", name):
                x = r.number(fixed_doc, "fixed", name, None)
                if x is not None:
                    fixed.append((name, x))
    return tuple(fixed)


def parse_parameters(r: ConfigReader, doc: Mapping, model, model_name: str,
                     fixed: tuple[tuple[str, float], ...], terms: tuple[str, ...]
                     ) -> tuple[ParameterSpec, ...]:
    """``[parameters.NAME]``: varied parameters (typical, sd, scale, effects on ``terms``,
    bounds; typical and bounds default to the fixed value or the model's)."""
    check_param = _param_checker(r, model, model_name)
    pnames = tuple(model.parameter_names) if model is not None else ()
    defaults = dict(zip(pnames, (float(x) for x in model.defaults), strict=True)) \
        if model is not None else {}
    bounds = {p: tuple(float(b) for b in model.bounds[i]) for i, p in enumerate(pnames)} \
        if model is not None else {}
    params: list[ParameterSpec] = []
    pdoc = doc.get("parameters", {})
    if not isinstance(pdoc, Mapping):
        r.problem("parameters", f"expected a table of parameter tables, found {_kind(pdoc)}")
        pdoc = {}
    for name, spec in pdoc.items():
        key = f"parameters.{name}"
        if not check_param(key, name):
            continue
        if not isinstance(spec, Mapping):
            r.problem(key, f"expected a table (typical, sd, scale, effects, bounds), found "
                      f"{_kind(spec)}")
            continue
        r.unknown(spec, key, ("typical", "sd", "scale", "effects", "bounds"))
        scale = r.string(spec, key, "scale", "log", ("log", "normal"))
        default = dict(fixed).get(name, defaults.get(name, 1.0))
        typical = r.number(spec, key, "typical", default,
                           lo=0 if scale == "log" else None, lo_open=scale == "log")
        sd = r.number(spec, key, "sd", 0.0, lo=0)
        b = r.pair(spec, key, "bounds", bounds.get(name, (-math.inf, math.inf)))
        if not b[0] <= typical <= b[1]:
            r.problem(f"{key}.typical", f"expected a value inside the bounds "
                      f"[{b[0]:g}, {b[1]:g}], found {typical:g}")
        effects: list[tuple[str, float]] = []
        eff = spec.get("effects", {})
        if not isinstance(eff, Mapping):
            r.problem(f"{key}.effects", f"expected a table of term = effect, found {_kind(eff)}")
        else:
            r.unknown(eff, f"{key}.effects", terms)
            for term in eff:
                if term in terms:
                    x = r.number(eff, f"{key}.effects", term, None)
                    if x is not None:
                        effects.append((term, x))
        params.append(ParameterSpec(name, typical, sd, scale, tuple(effects), b))
    varied = {p.name for p in params}
    for name, _ in fixed:
        if name in varied:
            r.problem(f"fixed.{name}", "is also a varied parameter; give its typical value in "
                      f"[parameters.{name}] instead")
    return tuple(params)


def parse_factors(r: ConfigReader, doc: Mapping, model, model_name: str,
                  parameters: tuple[ParameterSpec, ...]) -> tuple[FactorSpec, ...]:
    """``[factors.NAME]``: shared random effects (sd, loadings on varied parameters)."""
    check_param = _param_checker(r, model, model_name)
    varied = {p.name for p in parameters}
    factors: list[FactorSpec] = []
    fdoc = doc.get("factors", {})
    if not isinstance(fdoc, Mapping):
        r.problem("factors", f"expected a table of factor tables, found {_kind(fdoc)}")
        fdoc = {}
    for name, spec in fdoc.items():
        key = f"factors.{name}"
        if not isinstance(spec, Mapping):
            r.problem(key, f"expected a table (sd, loadings), found {_kind(spec)}")
            continue
        r.unknown(spec, key, ("sd", "loadings"))
        sd = r.number(spec, key, "sd", 0.0, lo=0)
        load = spec.get("loadings", {})
        loadings: list[tuple[str, float]] = []
        if not isinstance(load, Mapping) or not load:
            r.problem(f"{key}.loadings", "expected a table of parameter = loading, found "
                      + (_kind(load) if not isinstance(load, Mapping) else "an empty table"))
        else:
            for pname in load:
                lkey = f"{key}.loadings.{pname}"
                if not check_param(lkey, pname):
                    continue
                if pname not in varied:
                    r.problem(lkey, f"parameter '{pname}' is not varied; add "
                              f"[parameters.{pname}]")
                    continue
                x = r.number(load, f"{key}.loadings", pname, None)
                if x is not None:
                    loadings.append((pname, x))
        factors.append(FactorSpec(str(name), sd, tuple(loadings)))
    return tuple(factors)


def parse_visits(r: ConfigReader, doc: Mapping, *, interval: float | None, jitter: float,
                 missed: float, follow_up: tuple[float, float]) -> dict[str, Any]:
    """``[visits]``: ``interval`` or ``schedule`` (times since entry, from 0), ``jitter``,
    ``missed``, ``follow_up``; the keyword arguments are the defaults. Returns a dict of the
    five values."""
    v = r.table(doc, "visits", "visits", ("interval", "schedule", "jitter", "missed",
                                           "follow_up"))
    every = r.number(v, "visits", "interval", None, lo=0, lo_open=True)
    schedule = None
    if "schedule" in v:
        s = v["schedule"]
        if (not isinstance(s, list) or not s
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in s)):
            r.problem("visits.schedule", f"expected a list of visit times (months), found "
                      f"{_show(s)}")
        elif s[0] != 0 or any(b <= a for a, b in zip(s, s[1:], strict=False)):
            r.problem("visits.schedule", f"expected increasing times starting at 0, found "
                      f"{_show(s)}")
        else:
            schedule = tuple(float(x) for x in s)
    if "interval" in v and "schedule" in v:
        r.problem("visits", "expected one of 'interval' (regular visits) or 'schedule' (list "
                  "of visit times), found both")
    if every is None and schedule is None:
        every = interval
    return dict(interval=every, schedule=schedule,
                jitter=r.number(v, "visits", "jitter", jitter, lo=0),
                missed=r.number(v, "visits", "missed", missed, lo=0, hi=0.95),
                follow_up=r.pair(v, "visits", "follow_up", follow_up, lo=0))


def parse_observables(r: ConfigReader, doc: Mapping, model, model_name: str, *,
                      errors: Mapping[str, tuple[float, float] | None] | None = None,
                      default_error=None) -> tuple[ObservableSpec, ...]:
    """``[observables.NAME]``: what is measured and with which error.

    Parameters
    ----------
    errors : mapping of str to (low, high) or None, optional
        Error models accepted, each with its score range (``None``: not a score). Default:
        the generic :data:`ERROR_MODELS`, ``"score"`` taking its range from the table's
        ``range = [low, high]`` key.
    default_error : callable, optional
        ``name -> error model`` when an observable does not say (default ``"lognormal"``).
    """
    errors = dict(errors) if errors is not None else {"lognormal": None, "normal": None,
                                                      "score": None}
    allowed = ("model", "error", "residual_sd", "subject_sd", "residual", "df", "floor",
               "decimals", "baseline", "probability")
    if "score" in errors:
        allowed = (*allowed, "range")
    observables: list[ObservableSpec] = []
    odoc = doc.get("observables", {})
    model_obs = tuple(model.observable_names) if model is not None else ()
    if not isinstance(odoc, Mapping):
        r.problem("observables", f"expected a table of observable tables, found {_kind(odoc)}")
        odoc = {}
    for name, spec in odoc.items():
        key = f"observables.{name}"
        if not isinstance(spec, Mapping):
            r.problem(key, f"expected a table (error, residual_sd, ...), found {_kind(spec)}")
            continue
        r.unknown(spec, key, allowed)
        mname = r.string(spec, key, "model", str(name))
        if model is not None and mname not in model_obs:
            hint = did_you_mean(mname, model_obs, parenthesised=True)
            r.problem(f"{key}.model" if "model" in spec else key,
                      f"unknown observable '{mname}' of model '{model_name}'{hint}")
        fallback = default_error(str(name)) if default_error is not None else "lognormal"
        err = r.string(spec, key, "error", fallback, tuple(errors))
        score_range = errors.get(err)
        if err == "score" and score_range is None:
            score_range = r.pair(spec, key, "range", None)
            if score_range is None:
                r.problem(f"{key}.range", "expected the score's [low, high] for error "
                          "\"score\", found none")
        elif "range" in spec:
            r.problem(f"{key}.range", f"applies to error \"score\" only, found error "
                      f"\"{err}\"")
        observables.append(ObservableSpec(
            name=str(name), model=mname, error=err,
            residual_sd=r.number(spec, key, "residual_sd", 0.0, lo=0),
            subject_sd=r.number(spec, key, "subject_sd", 0.0, lo=0),
            residual=r.string(spec, key, "residual", "normal", ("normal", "t")),
            df=r.number(spec, key, "df", 3.0, lo=0, lo_open=True),
            floor=r.number(spec, key, "floor", None, lo=0, lo_open=True),
            decimals=r.number(spec, key, "decimals", 2, lo=0, hi=6, integer=True),
            baseline=r.number(spec, key, "baseline", 1.0, lo=0, hi=1),
            probability=r.number(spec, key, "probability", 1.0, lo=0, hi=1),
            score_range=score_range,
        ))
    return tuple(observables)


def load_model_for(r: ConfigReader, model_name: str, key: str = "cohort.model"):
    """The model named in a config, or None (with a problem recorded) when it cannot load."""
    from ..errors import ProgressionError
    from ..model import load_model

    try:
        return load_model(model_name)
    except ProgressionError as exc:
        r.problem(key, f"cannot load model '{model_name}': " + str(exc).splitlines()[0])
        return None
