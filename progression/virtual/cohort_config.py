"""Synthetic-cohort configurations: the population description read from TOML.

A synthetic cohort (:mod:`progression.virtual.synthetic`) is described by a TOML file
(``configs/cohorts/als_clinic.toml`` documents every key): the model, parameters with their
between-subject variability and covariate effects, shared factors, covariates, diagnosis and
enrolment, visits, observables with their measurement error, dropout. :func:`load_population_config`
reads it into an immutable :class:`PopulationConfig`; every problem in it is reported at once
in one :class:`~progression.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ProgressionError, did_you_mean

__all__ = [
    "PopulationConfig",
    "ParameterSpec",
    "FactorSpec",
    "ObservableSpec",
    "load_population_config",
    "COVARIATE_TERMS",
    "SETTINGS",
    "ERROR_MODELS",
]

#: Covariate terms a parameter's ``effects`` may use (log-multiplier per unit of the term):
#: ``age`` = age at onset minus ``age_reference`` (years), ``male``, ``bulbar``, ``trunk``
#: (site of onset; limb is the reference) and ``c9orf72`` (0/1 indicators).
COVARIATE_TERMS = ("age", "male", "bulbar", "trunk", "c9orf72")

SETTINGS = ("clinic", "trial")
ERROR_MODELS = ("alsfrs", "lognormal", "normal")
_SITES = ("limb", "bulbar", "trunk")
_MONTHS_PER_YEAR = 12.0




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
