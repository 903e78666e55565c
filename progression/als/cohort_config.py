"""ALS synthetic-cohort configurations: the population description read from TOML.

An ALS synthetic cohort (:mod:`progression.als.synthetic`) is described by a TOML file
(``configs/cohorts/als_clinic.toml`` documents every key): the model, parameters with their
between-subject variability and covariate effects, shared factors, covariates (onset age, sex,
site of onset, C9orf72), diagnosis and enrolment (ALSFRS-R and ΔFS criteria), visits,
observables with their measurement error, dropout. :func:`load_population_config` reads it into
an immutable :class:`PopulationConfig`; every problem in it is reported at once in one
:class:`~progression.errors.ConfigError` naming the file and the key.

The sections that mean the same for any model (``[fixed]``, ``[parameters]``, ``[factors]``,
``[visits]``, ``[observables]``) are read by :mod:`progression.virtual.cohort_config`; this
module adds what is ALS by nature and checks that the model is an ALS model (a
``clinical_onset`` and a ``death`` event and an ``ALSFRS_R`` observable).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..virtual.cohort_config import (
    ConfigReader,
    FactorSpec,
    ObservableSpec,
    ParameterSpec,
    _kind,
    load_model_for,
    parse_factors,
    parse_fixed,
    parse_observables,
    parse_parameters,
    parse_visits,
    raise_problems,
    read_toml,
)

__all__ = [
    "PopulationConfig",
    "ParameterSpec",
    "FactorSpec",
    "ObservableSpec",
    "load_population_config",
    "COVARIATE_TERMS",
    "SETTINGS",
    "ERROR_MODELS",
    "ALSFRS_MAX",
]

#: Covariate terms a parameter's ``effects`` may use (log-multiplier per unit of the term):
#: ``age`` = age at onset minus ``age_reference`` (years), ``male``, ``bulbar``, ``trunk``
#: (site of onset; limb is the reference) and ``c9orf72`` (0/1 indicators).
COVARIATE_TERMS = ("age", "male", "bulbar", "trunk", "c9orf72")

SETTINGS = ("clinic", "trial")
#: The ALSFRS-R scale: 12 items scored 0-4.
ALSFRS_MAX = 48.0
#: Error models of an observable and their score ranges (``"alsfrs"``: ALSFRS-R, rounded and
#: clipped to 0-48; the generic ones of :mod:`progression.virtual.cohort_config` after it).
_ERRORS = {"alsfrs": (0.0, ALSFRS_MAX), "lognormal": None, "normal": None, "score": None}
ERROR_MODELS = tuple(_ERRORS)
_SITES = ("limb", "bulbar", "trunk")
_MONTHS_PER_YEAR = 12.0
#: What the generator needs of the model: the onset and death events, the ALSFRS-R output.
_EVENTS = ("clinical_onset", "death")
_SCORE = "ALSFRS_R"


@dataclass(frozen=True)
class PopulationConfig:
    """An immutable description of a virtual ALS population and how it is observed.

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
    #: [vital_status] follow_up: months after enrolment up to which death is ascertained
    #: (registry linkage to death records) whether or not visits go on; None: death is
    #: recorded only while the patient is seen (until dropout or the end of the visits).
    vital_follow_up: tuple[float, float] | None = None
    # dropout
    dropout_rate: float = 0.0
    dropout_per_point: float = 0.0
    dropout_per_slope: float = 0.0
    dropout_early_rate: float = 0.0
    dropout_early_months: float = 0.0
    observables: tuple[ObservableSpec, ...] = ()
    #: Assay limits per observable: (name, upper, residual_bound). ``upper``: values above the
    #: assay's upper limit are reported at it, right-censored (cens = -1); ``residual_bound``:
    #: the visit residual (normal or Student-t draw, in units of residual_sd) is truncated to
    #: +-bound (redrawn). None: no limit. (The ``upper`` and ``residual_bound`` keys of an
    #: [observables.NAME] table.)
    assay_limits: tuple[tuple[str, float | None, float | None], ...] = ()
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
        of range, unknown model parameters or observables, a model that is not an ALS model.
    """
    return _parse(read_toml(path), str(path))


_SECTIONS = ("cohort", "fixed", "parameters", "factors", "covariates", "diagnosis",
             "enrolment", "visits", "vital_status", "dropout", "observables")


def _parse(doc: Mapping[str, Any], source: str) -> PopulationConfig:
    r = ConfigReader(source)
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

    model = load_model_for(r, model_name)
    fixed = parse_fixed(r, doc, model, model_name)
    params = parse_parameters(r, doc, model, model_name, fixed, COVARIATE_TERMS)
    factors = parse_factors(r, doc, model, model_name, params)

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
    min_frs = r.number(e, "enrolment", "min_alsfrs", d.min_alsfrs, lo=0, hi=ALSFRS_MAX)
    max_frs = r.number(e, "enrolment", "max_alsfrs", d.max_alsfrs, lo=0, hi=ALSFRS_MAX)
    min_dfs = r.number(e, "enrolment", "min_delta_fs", d.min_delta_fs, lo=0)
    max_dfs = r.number(e, "enrolment", "max_delta_fs", d.max_delta_fs, lo=0)
    oversample = r.number(e, "enrolment", "oversample", d.oversample, lo=1)

    visits = parse_visits(r, doc, interval=d.interval, jitter=d.jitter, missed=d.missed,
                          follow_up=d.follow_up)

    vital_follow_up = None
    vs = r.table(doc, "vital_status", "vital_status", ("follow_up",))
    if "follow_up" in vs:
        vital_follow_up = r.pair(vs, "vital_status", "follow_up", None, lo=0)
        lo_v, hi_v = visits["follow_up"]
        if vital_follow_up is not None and (vital_follow_up[0] < lo_v
                                            or vital_follow_up[1] < hi_v):
            r.problem("vital_status.follow_up", f"expected at least the visits' follow-up "
                      f"[{lo_v:g}, {hi_v:g}] at both ends (vital status is ascertained as "
                      f"long as the patient is seen), found [{vital_follow_up[0]:g}, "
                      f"{vital_follow_up[1]:g}]")
    elif "vital_status" in doc and isinstance(doc["vital_status"], Mapping):
        r.problem("vital_status.follow_up", "expected [low, high] months after enrolment, "
                  "found no follow_up key")

    o = r.table(doc, "dropout", "dropout", ("rate", "per_point", "per_slope", "early_rate",
                                             "early_months"))
    d_rate = r.number(o, "dropout", "rate", d.dropout_rate, lo=0)
    d_point = r.number(o, "dropout", "per_point", d.dropout_per_point)
    d_slope = r.number(o, "dropout", "per_slope", d.dropout_per_slope)
    d_early = r.number(o, "dropout", "early_rate", d.dropout_early_rate, lo=0)
    d_early_months = r.number(o, "dropout", "early_months", d.dropout_early_months, lo=0)

    # the assay-limit keys are ALS-content keys of [observables.NAME]: read here, the rest by
    # the generic reader
    limits: list[tuple[str, float | None, float | None]] = []
    odoc = doc.get("observables")
    if isinstance(odoc, Mapping):
        stripped = {}
        for name, spec in odoc.items():
            if isinstance(spec, Mapping) and ("upper" in spec or "residual_bound" in spec):
                key = f"observables.{name}"
                upper = r.number(spec, key, "upper", None, lo=0, lo_open=True)
                bound = r.number(spec, key, "residual_bound", None, lo=0, lo_open=True)
                limits.append((str(name), upper, bound))
                spec = {k: v for k, v in spec.items() if k not in ("upper", "residual_bound")}
            stripped[name] = spec
        doc = {**doc, "observables": stripped}
    observables = parse_observables(
        r, doc, model, model_name, errors=_ERRORS,
        default_error=lambda name: "alsfrs" if name == _SCORE else "lognormal")
    if model is not None:
        events = {ev.name for ev in model.spec.events}
        for need in _EVENTS:
            if need not in events:
                r.problem("cohort.model", f"model '{model_name}' has no '{need}' event; ALS "
                          "synthetic cohorts need an ALS model with clinical_onset and death "
                          "events and an ALSFRS_R observable")
        if _SCORE not in model.observable_names:
            r.problem("cohort.model", f"model '{model_name}' has no ALSFRS_R observable; ALS "
                      "synthetic cohorts need an ALS model (enrolment, diagnosis and dropout "
                      "use ALSFRS-R)")
    if not any(ob.name == _SCORE for ob in observables) and "observables" in doc:
        r.problem("observables", "expected an [observables.ALSFRS_R] table (enrolment and "
                  "the statistics use it)")
    if "observables" not in doc:
        observables = (ObservableSpec(_SCORE, _SCORE, "alsfrs", residual_sd=2.0,
                                      score_range=_ERRORS["alsfrs"]),)

    raise_problems(r)
    return PopulationConfig(
        model=model_name, setting=setting, n=n, seed=seed, id_prefix=prefix, horizon=horizon,
        grid_step=grid_step, fixed=fixed, parameters=params,
        factors=factors, age_onset_mean=age_mean, age_onset_sd=age_sd,
        age_onset_range=age_range, age_reference=age_ref, male=male, site_of_onset=site,
        c9orf72=c9, delay_median=delay_median, delay_sd_log=delay_sd,
        delay_rate_exponent=rate_exp, delay_reference_rate=ref_rate, delay_range=delay_range,
        after_diagnosis=after, max_disease_duration=max_dur, min_alsfrs=min_frs,
        max_alsfrs=max_frs, min_delta_fs=min_dfs, max_delta_fs=max_dfs, oversample=oversample,
        dropout_rate=d_rate, dropout_per_point=d_point, dropout_per_slope=d_slope,
        dropout_early_rate=d_early, dropout_early_months=d_early_months,
        vital_follow_up=vital_follow_up,
        observables=observables, assay_limits=tuple(limits), source=source, **visits,
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
