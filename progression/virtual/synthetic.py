"""Synthetic (virtual) cohorts: draw patients, simulate them in one batch, observe them.

:func:`synthetic_cohort` turns a model and a population description into a
:class:`~progression.data.Cohort` that looks like real clinic or trial data, plus the *truth*
(each virtual patient's parameters and time offset) needed to check a fit against it:

1. **Patients.** Covariates are drawn (age at onset, sex, site of onset, C9orf72 carrier);
   each varied model parameter is ``typical * exp(covariate effects + shared factors + eta)``
   (log-normal between-subject variability; ``scale = "normal"`` for additive variability),
   redrawn when outside its bounds.
2. **One simulation.** All candidates are simulated by one :func:`progression.simulate` call on
   a common model-time grid (trajectories continue past the ``death`` event so that values
   between grid points can be interpolated; a cubic Catmull-Rom interpolation evaluates them at
   each patient's own visit times).
3. **Onset, diagnosis, enrolment.** Clinical onset is the model's ``clinical_onset`` event
   (ALSFRS-R falls to 47); diagnosis follows after a log-normal diagnostic delay that is
   shorter for patients who decline faster; clinic cohorts enrol at diagnosis, trials screen
   later and apply enrolment criteria (disease duration, ALSFRS-R, ΔFS). Candidates who fail
   the criteria or die first are screen failures; the first ``n`` who qualify are kept.
4. **Visits and measurement error** per observable (ALSFRS-R ``round(F + eps)`` clipped to
   0-48; NfL, CRP, Treg % log-normal with a per-patient offset, optionally Student-t residuals
   and an assay floor that left-censors).
5. **Follow-up ends** at death or ventilation (the model's ``death`` event), informative
   dropout (hazard rising with lower ALSFRS-R and faster current decline) or administrative
   censoring at the end of the study.

Times in the cohort are months since enrolment (``time_origin = "enrolment"``). Baseline
covariates: ``age`` (at enrolment, years), ``sex``, ``site_of_onset``, ``c9orf72`` (0/1),
``onset_time`` and ``diagnosis_time`` (months relative to enrolment, <= 0; PRO-ACT's
convention), ``diagnostic_delay`` (months) and ``study_end_time`` (the planned end of follow-up,
months since enrolment; a censoring before it is a dropout).

The population description is a TOML file (``configs/cohorts/als_clinic.toml`` documents every
key) read into an immutable :class:`PopulationConfig`; every problem in it is reported at once
in one :class:`~progression.errors.ConfigError` naming the file and the key.

>>> cohort, truth = synthetic_cohort("configs/cohorts/als_clinic.toml", n=50)  # doctest: +SKIP
>>> write_synthetic(cohort, truth, "out/clinic_50.csv")                       # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from progression.errors import ConfigError, DataError, ProgressionError, did_you_mean

from ..data.cohort import DEFAULT_UNITS, Cohort

__all__ = [
    "PopulationConfig",
    "ParameterSpec",
    "FactorSpec",
    "ObservableSpec",
    "Truth",
    "load_population_config",
    "synthetic_cohort",
    "write_synthetic",
    "read_truth",
    "truth_path",
    "COVARIATE_TERMS",
]

#: Covariate terms a parameter's ``effects`` may use (log-multiplier per unit of the term):
#: ``age`` = age at onset minus ``age_reference`` (years), ``male``, ``bulbar``, ``trunk``
#: (site of onset; limb is the reference) and ``c9orf72`` (0/1 indicators).
COVARIATE_TERMS = ("age", "male", "bulbar", "trunk", "c9orf72")

SETTINGS = ("clinic", "trial")
ERROR_MODELS = ("alsfrs", "lognormal", "normal")
_SITES = ("limb", "bulbar", "trunk")
_MONTHS_PER_YEAR = 12.0


# ============================================================================ configuration


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
    """How an observable is measured: which model output, error model, and how often."""

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


@dataclass(frozen=True)
class PopulationConfig:
    """An immutable description of a virtual population and how it is observed.

    Build it with :func:`load_population_config` (TOML) or :meth:`from_dict`; every field is
    documented in ``configs/cohorts/als_clinic.toml``. Change fields with
    ``dataclasses.replace``.
    """

    model: str = "als_reduced"
    setting: str = "clinic"
    n: int = 1000
    seed: int = 0
    id_prefix: str = "S"
    horizon: float = 480.0
    grid_step: float = 1.0
    fixed: tuple[tuple[str, float], ...] = ()
    parameters: tuple[ParameterSpec, ...] = ()
    factors: tuple[FactorSpec, ...] = ()
    # covariates
    age_onset_mean: float = 61.0
    age_onset_sd: float = 11.0
    age_onset_range: tuple[float, float] = (25.0, 85.0)
    age_reference: float = 60.0
    male: float = 0.60
    site_of_onset: tuple[float, float, float] = (0.72, 0.22, 0.06)
    c9orf72: float = 0.07
    # diagnosis
    delay_median: float = 10.5
    delay_sd_log: float = 0.6
    delay_rate_exponent: float = 0.5
    delay_reference_rate: float = 1.0
    delay_range: tuple[float, float] = (1.0, 120.0)
    # enrolment
    after_diagnosis: tuple[float, float] = (0.0, 0.0)
    max_disease_duration: float = math.inf
    min_alsfrs: float = 0.0
    max_alsfrs: float = 48.0
    min_delta_fs: float = 0.0
    max_delta_fs: float = math.inf
    oversample: float = 1.3
    # visits
    interval: float | None = 3.0
    schedule: tuple[float, ...] | None = None
    jitter: float = 0.5
    missed: float = 0.0
    follow_up: tuple[float, float] = (12.0, 60.0)
    # dropout
    dropout_rate: float = 0.0
    dropout_per_point: float = 0.0
    dropout_per_slope: float = 0.0
    dropout_early_rate: float = 0.0
    dropout_early_months: float = 0.0
    observables: tuple[ObservableSpec, ...] = ()
    source: str = "<config>"

    @property
    def varied(self) -> tuple[str, ...]:
        """Names of the parameters that vary between subjects."""
        return tuple(p.name for p in self.parameters)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<config>") -> PopulationConfig:
        """Parse a config from a TOML-shaped dict; one :class:`ConfigError` lists all problems."""
        return _parse(doc, source)


def load_population_config(path: str | os.PathLike) -> PopulationConfig:
    """Read a population config from a TOML file.

    Raises
    ------
    ConfigError
        Naming the file and the key of every problem: unknown keys, wrong types, values out
        of range, unknown model parameters or observables.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return _parse(doc, str(path))


_SECTIONS = ("cohort", "fixed", "parameters", "factors", "covariates", "diagnosis",
             "enrolment", "visits", "dropout", "observables")


class _Reader:
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


def _parse(doc: Mapping[str, Any], source: str) -> PopulationConfig:
    from progression.model import load_model

    r = _Reader(source)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected a table of sections, found {_kind(doc)}")
    r.unknown(doc, "", _SECTIONS)
    d = PopulationConfig()

    c = r.table(doc, "cohort", "cohort", ("model", "setting", "n", "seed", "id_prefix",
                                           "horizon", "grid_step"))
    model_name = r.string(c, "cohort", "model", d.model)
    setting = r.string(c, "cohort", "setting", d.setting, SETTINGS)
    n = r.number(c, "cohort", "n", d.n, lo=1, integer=True)
    seed = r.number(c, "cohort", "seed", d.seed, lo=0, integer=True)
    prefix = r.string(c, "cohort", "id_prefix", d.id_prefix)
    horizon = r.number(c, "cohort", "horizon", d.horizon, lo=0, lo_open=True)
    grid_step = r.number(c, "cohort", "grid_step", d.grid_step, lo=0, lo_open=True, hi=6.0)

    model = None
    try:
        model = load_model(model_name)
    except ProgressionError as exc:
        r.problem("cohort.model", f"cannot load model '{model_name}': "
                  + str(exc).splitlines()[0])
    pnames = tuple(model.parameter_names) if model is not None else ()
    defaults = dict(zip(pnames, (float(x) for x in model.defaults), strict=True)) \
        if model is not None else {}
    bounds = {p: tuple(float(b) for b in model.bounds[i]) for i, p in enumerate(pnames)} \
        if model is not None else {}

    def check_param(key: str, name: str) -> bool:
        if model is None or name in pnames:
            return True
        hint = did_you_mean(name, pnames, parenthesised=True)
        r.problem(key, f"unknown parameter '{name}' of model '{model_name}'{hint}")
        return False

    # Fixed population values that differ from the model's defaults.
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

    # Varied parameters.
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
            r.unknown(eff, f"{key}.effects", COVARIATE_TERMS)
            for term in eff:
                if term in COVARIATE_TERMS:
                    x = r.number(eff, f"{key}.effects", term, None)
                    if x is not None:
                        effects.append((term, x))
        params.append(ParameterSpec(name, typical, sd, scale, tuple(effects), b))
    varied = {p.name for p in params}
    for name, _ in fixed:
        if name in varied:
            r.problem(f"fixed.{name}", "is also a varied parameter; give its typical value in "
                      f"[parameters.{name}] instead")

    # Shared factors.
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

    cov = r.table(doc, "covariates", "covariates",
                  ("age_onset", "age_reference", "male", "site_of_onset", "c9orf72"))
    age = cov.get("age_onset", {})
    age_mean, age_sd, age_range = d.age_onset_mean, d.age_onset_sd, d.age_onset_range
    if not isinstance(age, Mapping):
        r.problem("covariates.age_onset", f"expected a table (mean, sd, min, max), found "
                  f"{_kind(age)}")
    else:
        r.unknown(age, "covariates.age_onset", ("mean", "sd", "min", "max"))
        age_mean = r.number(age, "covariates.age_onset", "mean", age_mean, lo=0, hi=120)
        age_sd = r.number(age, "covariates.age_onset", "sd", age_sd, lo=0)
        lo_age = r.number(age, "covariates.age_onset", "min", age_range[0], lo=0)
        hi_age = r.number(age, "covariates.age_onset", "max", age_range[1], lo=0, hi=120)
        if lo_age >= hi_age:
            r.problem("covariates.age_onset.min", f"expected min < max, found {lo_age:g} and "
                      f"{hi_age:g}")
        age_range = (lo_age, hi_age)
    age_ref = r.number(cov, "covariates", "age_reference", d.age_reference)
    male = r.number(cov, "covariates", "male", d.male, lo=0, hi=1)
    c9 = r.number(cov, "covariates", "c9orf72", d.c9orf72, lo=0, hi=1)
    site = d.site_of_onset
    sdoc = cov.get("site_of_onset")
    if sdoc is not None:
        if not isinstance(sdoc, Mapping):
            r.problem("covariates.site_of_onset", f"expected a table limb/bulbar/trunk = "
                      f"share, found {_kind(sdoc)}")
        else:
            r.unknown(sdoc, "covariates.site_of_onset", _SITES)
            shares = tuple(r.number(sdoc, "covariates.site_of_onset", s, 0.0, lo=0)
                           for s in _SITES)
            if abs(sum(shares) - 1.0) > 1e-6:
                r.problem("covariates.site_of_onset", f"expected shares summing to 1, found "
                          f"{sum(shares):g}")
            else:
                site = shares

    g = r.table(doc, "diagnosis", "diagnosis", ("delay_median", "delay_sd_log",
                                                 "rate_exponent", "reference_rate",
                                                 "delay_range"))
    delay_median = r.number(g, "diagnosis", "delay_median", d.delay_median, lo=0, lo_open=True)
    delay_sd = r.number(g, "diagnosis", "delay_sd_log", d.delay_sd_log, lo=0)
    rate_exp = r.number(g, "diagnosis", "rate_exponent", d.delay_rate_exponent, lo=0)
    ref_rate = r.number(g, "diagnosis", "reference_rate", d.delay_reference_rate, lo=0,
                        lo_open=True)
    delay_range = r.pair(g, "diagnosis", "delay_range", d.delay_range, lo=0)

    e = r.table(doc, "enrolment", "enrolment", ("after_diagnosis", "max_disease_duration",
                                                 "min_alsfrs", "max_alsfrs", "min_delta_fs",
                                                 "max_delta_fs", "oversample"))
    after = r.pair(e, "enrolment", "after_diagnosis", d.after_diagnosis, lo=0)
    max_dur = r.number(e, "enrolment", "max_disease_duration", d.max_disease_duration, lo=0)
    min_frs = r.number(e, "enrolment", "min_alsfrs", d.min_alsfrs, lo=0, hi=48)
    max_frs = r.number(e, "enrolment", "max_alsfrs", d.max_alsfrs, lo=0, hi=48)
    min_dfs = r.number(e, "enrolment", "min_delta_fs", d.min_delta_fs, lo=0)
    max_dfs = r.number(e, "enrolment", "max_delta_fs", d.max_delta_fs, lo=0)
    oversample = r.number(e, "enrolment", "oversample", d.oversample, lo=1)

    v = r.table(doc, "visits", "visits", ("interval", "schedule", "jitter", "missed",
                                           "follow_up"))
    interval = r.number(v, "visits", "interval", None, lo=0, lo_open=True)
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
    if interval is None and schedule is None:
        interval = d.interval
    jitter = r.number(v, "visits", "jitter", d.jitter, lo=0)
    missed = r.number(v, "visits", "missed", d.missed, lo=0, hi=0.95)
    follow = r.pair(v, "visits", "follow_up", d.follow_up, lo=0)

    o = r.table(doc, "dropout", "dropout", ("rate", "per_point", "per_slope", "early_rate",
                                             "early_months"))
    d_rate = r.number(o, "dropout", "rate", d.dropout_rate, lo=0)
    d_point = r.number(o, "dropout", "per_point", d.dropout_per_point)
    d_slope = r.number(o, "dropout", "per_slope", d.dropout_per_slope)
    d_early = r.number(o, "dropout", "early_rate", d.dropout_early_rate, lo=0)
    d_early_months = r.number(o, "dropout", "early_months", d.dropout_early_months, lo=0)

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
        r.unknown(spec, key, ("model", "error", "residual_sd", "subject_sd", "residual", "df",
                              "floor", "decimals", "baseline", "probability"))
        mname = r.string(spec, key, "model", str(name))
        if model is not None and mname not in model_obs:
            hint = did_you_mean(mname, model_obs, parenthesised=True)
            r.problem(f"{key}.model" if "model" in spec else key,
                      f"unknown observable '{mname}' of model '{model_name}'{hint}")
        err = r.string(spec, key, "error", "alsfrs" if name == "ALSFRS_R" else "lognormal",
                       ERROR_MODELS)
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
        ))
    if model is not None:
        for need in ("clinical_onset", "death"):
            if need not in {ev.name for ev in model.spec.events}:
                r.problem("cohort.model", f"model '{model_name}' has no '{need}' event; "
                          "synthetic cohorts need clinical_onset and death events")
        if "ALSFRS_R" not in model_obs:
            r.problem("cohort.model", f"model '{model_name}' has no ALSFRS_R observable")
    if not any(ob.name == "ALSFRS_R" for ob in observables) and "observables" in doc:
        r.problem("observables", "expected an [observables.ALSFRS_R] table (enrolment and "
                  "the statistics use it)")
    if "observables" not in doc:
        observables = [ObservableSpec("ALSFRS_R", "ALSFRS_R", "alsfrs", residual_sd=2.0)]

    if len(r.problems) == 1:
        raise ConfigError(r.problems[0])
    if r.problems:
        raise ConfigError(f"{source}: {len(r.problems)} problems in the population config",
                          r.problems)
    return PopulationConfig(
        model=model_name, setting=setting, n=n, seed=seed, id_prefix=prefix, horizon=horizon,
        grid_step=grid_step, fixed=tuple(fixed), parameters=tuple(params),
        factors=tuple(factors), age_onset_mean=age_mean, age_onset_sd=age_sd,
        age_onset_range=age_range, age_reference=age_ref, male=male, site_of_onset=site,
        c9orf72=c9, delay_median=delay_median, delay_sd_log=delay_sd,
        delay_rate_exponent=rate_exp, delay_reference_rate=ref_rate, delay_range=delay_range,
        after_diagnosis=after, max_disease_duration=max_dur, min_alsfrs=min_frs,
        max_alsfrs=max_frs, min_delta_fs=min_dfs, max_delta_fs=max_dfs, oversample=oversample,
        interval=interval, schedule=schedule, jitter=jitter, missed=missed, follow_up=follow,
        dropout_rate=d_rate, dropout_per_point=d_point, dropout_per_slope=d_slope,
        dropout_early_rate=d_early, dropout_early_months=d_early_months,
        observables=tuple(observables), source=source,
    )


def _as_config(config) -> PopulationConfig:
    if isinstance(config, PopulationConfig):
        return config
    if isinstance(config, Mapping):
        return _parse(config, "<config>")
    if isinstance(config, (str, os.PathLike)):
        return load_population_config(config)
    raise ConfigError(f"config: expected a PopulationConfig, a dict or a path to a TOML file, "
                      f"found {type(config).__name__}")


# ================================================================================= truth


@dataclass(frozen=True)
class Truth:
    """What generated a synthetic cohort, one row per subject.

    Attributes
    ----------
    model : str
        The model simulated.
    parameter_names : tuple of str
        Parameters whose values are in the table (the varied ones and fixed overrides).
    columns : dict of str to ndarray
        ``subject``, each parameter, ``time_offset`` (the enrolment time on the model clock:
        model time = ``time_offset`` + cohort time), the covariates (``age``, ``sex``,
        ``site_of_onset``, ``c9orf72``, ``diagnostic_delay``, ``onset_time``), and
        ``onset_model_time`` / ``death_model_time`` (model clock; NaN when no death within the
        simulated horizon).
    """

    model: str
    parameter_names: tuple[str, ...]
    columns: dict[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.columns["subject"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.columns["subject"])

    def parameters(self) -> dict[str, np.ndarray]:
        """Parameter name -> per-subject values, ready for :func:`progression.simulate`."""
        return {p: self.columns[p] for p in self.parameter_names}

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the truth table as CSV (one row per subject), atomically.

        An existing file is replaced only with ``overwrite=True`` and only if progression
        wrote it (a truth-table header, or a file of a cohort progression wrote).
        """
        from .._io import atomic_files, is_progression_truth_file
        from ..data._csvio import write_table

        path = Path(path)
        names = list(self.columns)
        with atomic_files(path, overwrite=overwrite, ours=is_progression_truth_file,
                          what="truth table") as tmp:
            write_table(tmp / path.name, names,
                        zip(*(self.columns[c].tolist() for c in names), strict=True))
        return path


def read_truth(path: str | os.PathLike) -> Truth:
    """Read a truth table written by :func:`write_synthetic`.

    The parameter columns are those between ``subject`` and ``time_offset``; the model name
    is not stored in the table (``Truth.model`` is then ``""``).
    """
    from ..data._csvio import parse_number, read_table

    problems: list[str] = []
    table = read_table(Path(path), problems)
    if table is None or problems:
        raise DataError(f"{path}: cannot read the truth table", problems or None)
    header = list(table.header)
    if "subject" not in header or "time_offset" not in header:
        raise DataError(f"{path}: expected columns 'subject' and 'time_offset', found "
                        + ", ".join(f"'{h}'" for h in header))
    cols: dict[str, np.ndarray] = {}
    for h in header:
        raw = table.column(h)
        if h == "subject":
            cols[h] = np.array(raw, dtype=str)
            continue
        parsed = [parse_number(x) for x in raw]
        if all(status != "bad" for _, status in parsed):
            cols[h] = np.array([np.nan if x is None else x for x, _ in parsed], dtype=float)
        else:
            cols[h] = np.array(raw, dtype=object)
    params = tuple(header[header.index("subject") + 1: header.index("time_offset")])
    return Truth("", params, cols)


# ============================================================================ simulation


@dataclass
class _Draws:
    """Every random number a batch of candidates needs, drawn up front in a fixed order."""

    params: dict[str, np.ndarray]
    varied: dict[str, np.ndarray]
    age_onset: np.ndarray
    male: np.ndarray
    site: np.ndarray
    c9: np.ndarray
    z_delay: np.ndarray
    u_enrol: np.ndarray
    u_end: np.ndarray
    jitter: np.ndarray
    u_missed: np.ndarray
    e_dropout: np.ndarray
    eta: dict[str, np.ndarray]
    eps: dict[str, np.ndarray]
    u_measured: dict[str, np.ndarray]


def _nominal_visits(cfg: PopulationConfig) -> np.ndarray:
    if cfg.schedule is not None:
        return np.array(cfg.schedule, dtype=float)
    k = int(np.floor(cfg.follow_up[1] / cfg.interval + 1e-9))
    return np.arange(k + 1) * cfg.interval


def _draw(cfg: PopulationConfig, model, rng: np.random.Generator, m: int) -> _Draws:
    lo_age, hi_age = cfg.age_onset_range
    age = rng.normal(cfg.age_onset_mean, cfg.age_onset_sd, m)
    for _ in range(50):
        bad = (age < lo_age) | (age > hi_age)
        if not bad.any():
            break
        age[bad] = rng.normal(cfg.age_onset_mean, cfg.age_onset_sd, int(bad.sum()))
    age = np.clip(age, lo_age, hi_age)
    male = rng.random(m) < cfg.male
    site = np.searchsorted(np.cumsum(cfg.site_of_onset)[:-1], rng.random(m), side="right")
    c9 = rng.random(m) < cfg.c9orf72
    terms = {"age": age - cfg.age_reference, "male": male.astype(float),
             "bulbar": (site == 1).astype(float), "trunk": (site == 2).astype(float),
             "c9orf72": c9.astype(float)}

    shared = {p.name: np.zeros(m) for p in cfg.parameters}
    for f in cfg.factors:
        z = f.sd * rng.standard_normal(m)
        for pname, loading in f.loadings:
            shared[pname] += loading * z
    varied: dict[str, np.ndarray] = {}
    for p in cfg.parameters:
        fixed = shared[p.name] + sum((beta * terms[t] for t, beta in p.effects), np.zeros(m))

        def value(z, p=p, fixed=fixed):
            if p.scale == "log":
                return p.typical * np.exp(fixed + p.sd * z)
            return p.typical + fixed + p.sd * z

        z = rng.standard_normal(m)
        x = value(z)
        lo, hi = p.bounds
        for _ in range(50):
            bad = (x < lo) | (x > hi)
            if not bad.any():
                break
            z[bad] = rng.standard_normal(int(bad.sum()))
            x = value(z)
        varied[p.name] = np.clip(x, lo, hi)

    params = {name: np.full(m, value) for name, value in cfg.fixed}
    params.update(varied)

    V = len(_nominal_visits(cfg))
    eta, eps, u_meas = {}, {}, {}
    for ob in cfg.observables:
        eta[ob.name] = rng.standard_normal(m)
        if ob.residual == "t":
            eps[ob.name] = rng.standard_t(ob.df, (m, V))
        else:
            eps[ob.name] = rng.standard_normal((m, V))
        u_meas[ob.name] = rng.random((m, V))
    return _Draws(
        params=params, varied=varied, age_onset=age, male=male, site=site, c9=c9,
        z_delay=rng.standard_normal(m), u_enrol=rng.random(m), u_end=rng.random(m),
        jitter=rng.standard_normal((m, V)), u_missed=rng.random((m, V)),
        e_dropout=rng.exponential(1.0, m), eta=eta, eps=eps, u_measured=u_meas,
    )


def _interp(Y: np.ndarray, step: float, X: np.ndarray) -> np.ndarray:
    """Evaluate grid values ``Y`` (m, T) at per-subject times ``X`` (m, K) (Catmull-Rom)."""
    m, T = Y.shape
    u = np.clip(X / step, 0.0, T - 1.0)
    j = np.clip(np.floor(u).astype(np.int64), 1, T - 3)
    s = u - j
    p0 = np.take_along_axis(Y, j - 1, axis=1)
    p1 = np.take_along_axis(Y, j, axis=1)
    p2 = np.take_along_axis(Y, j + 1, axis=1)
    p3 = np.take_along_axis(Y, j + 2, axis=1)
    return p1 + 0.5 * s * (p2 - p0 + s * (2 * p0 - 5 * p1 + 4 * p2 - p3
                                          + s * (3 * (p1 - p2) + p3 - p0)))


def _measure(ob: ObservableSpec, f: np.ndarray, eta: np.ndarray, eps: np.ndarray):
    """Observed values, censoring flags and limits for true values ``f`` (m, V)."""
    cens = np.zeros(f.shape, dtype=np.int8)
    limit = np.full(f.shape, np.nan)
    if ob.error == "alsfrs":
        value = np.clip(np.round(f + ob.subject_sd * eta[:, None] + ob.residual_sd * eps),
                        0, 48)
        return value, cens, limit
    if ob.error == "normal":
        value = f + ob.subject_sd * eta[:, None] + ob.residual_sd * eps
    else:
        value = np.exp(np.log(np.maximum(f, 1e-300)) + ob.subject_sd * eta[:, None]
                       + ob.residual_sd * eps)
    value = np.round(value, ob.decimals)
    if ob.floor is not None:
        below = value < ob.floor
        cens[below] = 1
        limit[below] = ob.floor
        value = np.where(below, ob.floor, value)
    return value, cens, limit


@dataclass
class _Batch:
    """The processed candidates of one simulated batch (arrays over candidates)."""

    ok: np.ndarray
    reason: np.ndarray
    data: dict[str, Any]


def _process(cfg: PopulationConfig, draws: _Draws, sim, grid: np.ndarray) -> _Batch:
    step = cfg.grid_step
    m = len(draws.age_onset)
    F = sim["ALSFRS_R"]
    onset = sim.event_time("clinical_onset")
    death = sim.event_time("death")
    death_inf = np.where(np.isnan(death), np.inf, death)
    failed = ~sim.success | np.isnan(F).any(axis=1)
    reason = np.full(m, "", dtype=object)
    reason[failed] = "simulation failed"
    no_onset = np.isnan(onset) & ~failed
    reason[no_onset] = "no clinical onset within the horizon"
    on = np.where(np.isnan(onset), 0.0, onset)

    # Diagnosis: faster early decline -> shorter delay.
    f6 = _interp(F, step, (on + 6.0)[:, None])[:, 0]
    rate = np.clip((47.0 - f6) / 6.0, 0.02, 20.0)
    delay = cfg.delay_median * (rate / cfg.delay_reference_rate) ** (-cfg.delay_rate_exponent) \
        * np.exp(cfg.delay_sd_log * draws.z_delay)
    delay = np.clip(delay, *cfg.delay_range)
    t_diag = on + delay
    a, b = cfg.after_diagnosis
    t_enrol = t_diag + a + (b - a) * draws.u_enrol

    # Visits (months since enrolment), jittered, rounded; baseline at 0.
    nominal = _nominal_visits(cfg)
    V = len(nominal)
    end_lo, end_hi = cfg.follow_up
    planned_end = end_lo + (end_hi - end_lo) * draws.u_end
    w = nominal[None, :] + cfg.jitter * draws.jitter
    w[:, 0] = 0.0
    for k in range(1, V):
        w[:, k] = np.maximum(w[:, k], w[:, k - 1] + 0.25)
    w = np.round(w, 2)
    scheduled = nominal[None, :] <= planned_end[:, None] + 1e-9
    scheduled[:, 0] = True
    missed = draws.u_missed < cfg.missed
    missed[:, 0] = False
    last_visit = np.max(np.where(scheduled, w, 0.0), axis=1)
    study_end = np.round(np.maximum(planned_end, last_visit), 2)

    too_slow = (t_enrol + study_end > grid[-1]) & (reason == "")
    reason[too_slow] = "follow-up beyond the simulated horizon"
    usable = reason == ""
    t_enrol_safe = np.where(usable, t_enrol, 0.0)

    died_first = death_inf <= t_enrol
    reason[usable & died_first & (death_inf <= t_diag)] = "died before diagnosis"
    reason[usable & died_first & (death_inf > t_diag)] = "died before enrolment"

    # True values at visits, observed values.
    tv = t_enrol_safe[:, None] + w
    values, cens, limits, measured = {}, {}, {}, {}
    for ob in cfg.observables:
        f = _interp(sim[ob.model], step, tv)
        values[ob.name], cens[ob.name], limits[ob.name] = _measure(
            ob, f, draws.eta[ob.name], draws.eps[ob.name])
        p = np.full(V, ob.probability)
        p[0] = ob.baseline
        measured[ob.name] = draws.u_measured[ob.name] < p[None, :]

    # Enrolment criteria on the observed baseline ALSFRS-R.
    frs0 = values["ALSFRS_R"][:, 0]
    duration = t_enrol - on
    dfs0 = (48.0 - frs0) / np.maximum(duration, 1e-9)
    ok = reason == ""
    for cond, why in (
        (duration <= cfg.max_disease_duration + 1e-9, "disease duration above the maximum"),
        (frs0 >= cfg.min_alsfrs, "ALSFRS-R below the minimum"),
        (frs0 <= cfg.max_alsfrs, "ALSFRS-R above the maximum"),
        (dfs0 >= cfg.min_delta_fs, "ΔFS below the minimum"),
        (dfs0 <= cfg.max_delta_fs, "ΔFS above the maximum"),
    ):
        bad = ok & ~cond
        reason[bad] = why
        ok &= cond

    # Informative dropout: hazard rises with lower ALSFRS-R and faster current decline.
    h = 0.25
    u = np.arange(0.0, end_hi + 2 * h, h)
    dropout = np.full(m, np.inf)
    if cfg.dropout_rate > 0 or cfg.dropout_early_rate > 0:
        tu = t_enrol_safe[:, None] + u[None, :]
        Fu = _interp(F, step, tu)
        dF = (_interp(F, step, tu + 0.5 * h) - _interp(F, step, tu - 0.5 * h)) / h
        logh = (cfg.dropout_per_point * (48.0 - Fu)
                + cfg.dropout_per_slope * np.maximum(-dF, 0.0))
        haz = cfg.dropout_rate * np.exp(np.clip(logh, -50, 5))
        haz = haz + cfg.dropout_early_rate * (u < cfg.dropout_early_months)[None, :]
        H = np.concatenate([np.zeros((m, 1)), np.cumsum(0.5 * (haz[:, 1:] + haz[:, :-1]) * h,
                                                         axis=1)], axis=1)
        E = draws.e_dropout[:, None]
        cross = H >= E
        has = cross.any(axis=1)
        k = np.argmax(cross, axis=1)
        k0 = np.maximum(k - 1, 0)
        H0 = np.take_along_axis(H, k0[:, None], 1)[:, 0]
        H1 = np.take_along_axis(H, k[:, None], 1)[:, 0]
        frac = np.where(H1 > H0, (draws.e_dropout - H0) / np.where(H1 > H0, H1 - H0, 1), 0.0)
        dropout = np.where(has, u[k0] + frac * h, np.inf)
        dropout = np.maximum(dropout, 0.01)

    death_rel = death_inf - t_enrol
    exit_time = np.minimum(np.minimum(death_rel, dropout), study_end)
    keep = scheduled & ~missed & (w < exit_time[:, None])
    keep |= scheduled & ~missed & (w <= study_end[:, None]) & (exit_time == study_end)[:, None]
    keep[:, 0] = True
    is_death = death_rel <= np.minimum(dropout, study_end)
    event_time = np.where(is_death, np.ceil(np.where(is_death, death_rel, 0) * 100) / 100,
                          np.round(np.minimum(dropout, study_end), 2))
    # A dropout rounded onto the last visit stays after it.
    last_kept = np.max(np.where(keep, w, 0.0), axis=1)
    event_time = np.maximum(event_time, last_kept)
    ok &= np.isfinite(t_enrol)

    data = dict(
        onset=on, death=death, t_enrol=t_enrol, t_diag=t_diag, delay=delay, w=w, keep=keep,
        values=values, cens=cens, limits=limits, measured=measured, is_death=is_death,
        event_time=event_time, study_end=study_end, dropout=dropout,
    )
    return _Batch(ok=ok, reason=reason, data=data)


def synthetic_cohort(config, *, n: int | None = None, seed: int | None = None,
                     method: str = "LSODA") -> tuple[Cohort, Truth]:
    """Draw, simulate, enrol and observe a synthetic cohort.

    Parameters
    ----------
    config : PopulationConfig, dict or path
        The population description (a TOML file such as ``configs/cohorts/als_clinic.toml``).
    n : int, optional
        Number of enrolled patients (default: the config's ``cohort.n``).
    seed : int, optional
        Random seed (default: the config's ``cohort.seed``). Same config, n and seed give
        identical cohorts.
    method : str
        Integrator passed to :func:`progression.simulate`.

    Returns
    -------
    (Cohort, Truth)
        The cohort (months since enrolment; ``cohort.notes`` says how many candidates were
        screened and why they failed) and the truth table.

    Raises
    ------
    ConfigError
        A malformed config.
    ProgressionError
        When too few candidates qualify (enrolment criteria that almost nobody meets).
    """
    from progression.model import load_model
    from progression.simulate import simulate

    cfg = _as_config(config)
    n = cfg.n if n is None else int(n)
    seed = cfg.seed if seed is None else int(seed)
    if n < 1:
        raise ConfigError(f"{cfg.source}: n: expected a positive number of patients, found {n}")
    if seed < 0:
        raise ConfigError(f"{cfg.source}: seed: expected a non-negative integer, found {seed}")
    model = load_model(cfg.model)
    rng = np.random.default_rng(seed)
    grid = np.arange(0.0, cfg.horizon + 0.5 * cfg.grid_step, cfg.grid_step)

    kept: list[tuple[_Draws, _Batch, np.ndarray]] = []
    reasons: dict[str, int] = {}
    n_found = n_screened = 0
    fraction = 1.0 / cfg.oversample
    for _round in range(8):
        need = n - n_found
        if need <= 0:
            break
        m = min(int(math.ceil(need / fraction * (1.0 if _round == 0 else 1.2))) + 5,
                20 * n + 100)
        draws = _draw(cfg, model, rng, m)
        sim = simulate(model, draws.params, grid, method=method, terminal_events=False)
        batch = _process(cfg, draws, sim, grid)
        idx = np.flatnonzero(batch.ok)
        take = idx[:need]
        # Candidates after the last one taken were never screened.
        screened = (take[-1] + 1) if len(take) == need else m
        n_screened += int(screened)
        for why in batch.reason[:screened]:
            if why:
                reasons[why] = reasons.get(why, 0) + 1
        kept.append((draws, batch, take))
        n_found += len(take)
        fraction = len(idx) / m
        if len(idx) == 0:
            break
    if n_found < n:
        raise ProgressionError(
            f"{cfg.source}: only {n_found} of {n_screened} candidate patients met the enrolment "
            f"criteria, {n} were asked for; relax [enrolment] or widen the population")
    return _assemble(cfg, model, kept, n, seed, n_screened, reasons)


def _assemble(cfg, model, kept, n, seed, n_screened, reasons) -> tuple[Cohort, Truth]:
    width = len(str(n))
    obs = {k: [] for k in ("subject", "time", "observable", "value", "cens", "limit")}
    ev = {"subject": [], "time": [], "event": []}
    covariates: dict[str, dict[str, Any]] = {}
    truth: dict[str, list] = {"subject": []}
    pnames = [name for name, _ in cfg.fixed] + list(cfg.varied)
    for p in pnames:
        truth[p] = []
    for c in ("time_offset", "age", "sex", "site_of_onset", "c9orf72", "diagnostic_delay",
              "onset_time", "diagnosis_time", "study_end_time", "onset_model_time",
              "death_model_time"):
        truth[c] = []
    counter = 0
    n_death = n_dropout = 0
    for draws, batch, take in kept:
        d = batch.data
        for i in take:
            counter += 1
            sid = f"{cfg.id_prefix}{counter:0{width}d}"
            onset_rel = round(float(d["onset"][i] - d["t_enrol"][i]), 2)
            diag_rel = round(float(d["t_diag"][i] - d["t_enrol"][i]), 2)
            age_enrol = draws.age_onset[i] + (d["t_enrol"][i] - d["onset"][i]) / _MONTHS_PER_YEAR
            row = {
                "age": round(float(age_enrol), 1),
                "sex": "male" if draws.male[i] else "female",
                "site_of_onset": _SITES[int(draws.site[i])],
                "c9orf72": float(draws.c9[i]),
                "diagnostic_delay": round(float(d["delay"][i]), 2),
                "onset_time": onset_rel,
                "diagnosis_time": diag_rel,
                "study_end_time": float(d["study_end"][i]),
            }
            covariates[sid] = row
            keep = d["keep"][i]
            for ob in cfg.observables:
                sel = keep & d["measured"][ob.name][i]
                sel[0] = sel[0] or ob.name == "ALSFRS_R"
                for k in np.flatnonzero(sel):
                    obs["subject"].append(sid)
                    obs["time"].append(float(d["w"][i, k]))
                    obs["observable"].append(ob.name)
                    obs["value"].append(float(d["values"][ob.name][i, k]))
                    obs["cens"].append(int(d["cens"][ob.name][i, k]))
                    obs["limit"].append(float(d["limits"][ob.name][i, k]))
            death = bool(d["is_death"][i])
            n_death += death
            et = float(d["event_time"][i])
            n_dropout += (not death) and et < d["study_end"][i] - 1e-9
            ev["subject"].append(sid)
            ev["time"].append(et)
            ev["event"].append("death" if death else "censored")
            truth["subject"].append(sid)
            for p in pnames:
                truth[p].append(float(draws.params[p][i]))
            truth["time_offset"].append(float(d["t_enrol"][i]))
            for c in ("age", "sex", "site_of_onset", "c9orf72", "diagnostic_delay",
                      "onset_time", "diagnosis_time", "study_end_time"):
                truth[c].append(row[c])
            truth["onset_model_time"].append(float(d["onset"][i]))
            dm = d["death"][i]
            truth["death_model_time"].append(float(dm) if np.isfinite(dm) else math.nan)

    failures = ", ".join(f"{why} {k}" for why, k in sorted(reasons.items(),
                                                           key=lambda x: -x[1]))
    notes = [
        f"synthetic cohort: model '{cfg.model}', {cfg.setting} setting, config {cfg.source}, "
        f"seed {seed}",
        f"screened {n_screened} candidate patients, enrolled {n}"
        + (f"; not enrolled: {failures}" if failures else ""),
        f"follow-up ended by death or ventilation in {n_death}, dropout in {n_dropout}, "
        f"end of study in {n - n_death - n_dropout}",
    ]
    units = {ob.name: DEFAULT_UNITS[ob.name] for ob in cfg.observables
             if ob.name in DEFAULT_UNITS}
    cohort = Cohort(obs, covariates=covariates, events=ev, units=units, time_unit="month",
                    time_origin="enrolment", notes=notes)
    cols: dict[str, np.ndarray] = {}
    for c, vals in truth.items():
        if c in ("subject", "sex", "site_of_onset"):
            cols[c] = np.array(vals, dtype=str)
        else:
            cols[c] = np.array(vals, dtype=float)
    return cohort, Truth(cfg.model, tuple(pnames), cols)


# ================================================================================ writing


def truth_path(path: str | os.PathLike) -> Path:
    """Where the truth table of a cohort file goes: ``<stem>_truth.csv`` beside it."""
    path = Path(path)
    return path.with_name(path.with_suffix("").name + "_truth.csv")


def write_synthetic(cohort: Cohort, truth: Truth, path: str | os.PathLike,
                    format: str = "long", *, overwrite: bool = False, inputs=()) -> list[Path]:
    """Write a synthetic cohort (via :func:`write_cohort`) and its truth table beside it.

    All files are written to a temporary folder beside ``path`` first and moved into place
    only when every file is complete, so a failure leaves no half-written cohort. Existing
    files are replaced only with ``overwrite=True`` and only if progression wrote them (they
    sit beside a sidecar progression wrote); ``inputs`` (the population config) are never
    replaced.

    Returns
    -------
    list of Path
        Every file written (the cohort file first, the truth table last).

    Raises
    ------
    OutputError
        When writing would replace a file that must be kept.
    """
    from .._io import atomic_files, cohort_files, is_progression_cohort_file
    from ..data.readers import write_cohort

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ProgressionError(f"{path}: expected a .csv file name for the cohort")
    with atomic_files(path, overwrite=overwrite, inputs=inputs, what="cohort file",
                      ours=is_progression_cohort_file, stale=cohort_files(path)[2:6],
                      expected=[path.with_suffix(".toml"), truth_path(path)]) as tmp:
        written = write_cohort(cohort, tmp / path.name, format=format)
        written.append(truth.write(tmp / truth_path(path).name))
    return [path.parent / f.name for f in written]
