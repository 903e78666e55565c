"""Synthetic ALS cohorts: draw patients, simulate them in one batch, observe them.

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
key) read into an immutable :class:`PopulationConfig` by
:mod:`progression.als.cohort_config`; every problem in it is reported at once in one
:class:`~progression.errors.ConfigError` naming the file and the key. A model that is not an
ALS model (no ``clinical_onset`` and ``death`` events, no ``ALSFRS_R`` observable) is refused
there by name.

Why this lives in :mod:`progression.als`: the onset anchor, the diagnosis model (delay
shortened by the early ALSFRS-R decline), enrolment on ALSFRS-R and ΔFS and dropout driven by
the ALSFRS-R loss are ALS by nature. The generic steps -- drawing parameters with
between-subject variability, evaluating the simulation at each patient's times, measurement
error, visit schedules, dropout from a hazard, the truth table -- are
:mod:`progression.virtual.synthesis`, usable for any model
(:func:`~progression.virtual.synthesis.simulate_cohort` draws a cohort of a model without ALS
content from its observation model).

>>> cohort, truth = synthetic_cohort("configs/cohorts/als_clinic.toml", n=50)  # doctest: +SKIP
>>> write_synthetic(cohort, truth, "out/clinic_50.csv")                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.cohort import DEFAULT_UNITS, Cohort
from ..errors import ConfigError, ProgressionError
from ..virtual.synthesis import (
    Truth,
    draw_parameters,
    dropout_times,
    interpolate,
    measure,
    nominal_visits,
    planned_visits,
    read_truth,
    truth_path,
    visit_times,
    write_synthetic,
)
from .cohort_config import (
    _EVENTS,
    _MONTHS_PER_YEAR,
    _SCORE,
    _SITES,
    ALSFRS_MAX,
    COVARIATE_TERMS,
    FactorSpec,
    ObservableSpec,
    ParameterSpec,
    PopulationConfig,
    _as_config,
    load_population_config,
)

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
    return nominal_visits(cfg.interval, cfg.schedule, cfg.follow_up[1])


def draw_covariates(cfg: PopulationConfig, rng: np.random.Generator, m: int):
    """The patients' covariates, drawn first (the order of random numbers is part of the
    cohort's reproducibility): onset age (truncated normal), sex, site of onset, C9orf72.

    Returns
    -------
    age, male, site, c9 : ndarray (m,)
    terms : dict of str to ndarray (m,)
        The effect terms of the parameter draws: age above the reference, male, bulbar,
        trunk, c9orf72 (0/1).
    """
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
    return age, male, site, c9, terms


def _draw(cfg: PopulationConfig, model, rng: np.random.Generator, m: int) -> _Draws:
    age, male, site, c9, terms = draw_covariates(cfg, rng, m)
    params, varied = draw_parameters(cfg.parameters, cfg.factors, cfg.fixed, terms, rng, m)

    V = len(_nominal_visits(cfg))
    eta, eps, u_meas = {}, {}, {}
    for ob in cfg.observables:
        eta[ob.name] = rng.standard_normal(m)
        if ob.residual == "t":
            eps[ob.name] = rng.standard_t(ob.df, (m, V))
        else:
            eps[ob.name] = rng.standard_normal((m, V))
        u_meas[ob.name] = rng.random((m, V))
    draws = _Draws(
        params=params, varied=varied, age_onset=age, male=male, site=site, c9=c9,
        z_delay=rng.standard_normal(m), u_enrol=rng.random(m), u_end=rng.random(m),
        jitter=rng.standard_normal((m, V)), u_missed=rng.random((m, V)),
        e_dropout=rng.exponential(1.0, m), eta=eta, eps=eps, u_measured=u_meas,
    )
    # Truncated residuals (an assay's residual_bound): out-of-bound draws are redrawn after
    # every other draw, so configs without a bound keep their random numbers and cohorts.
    specs = {ob.name: ob for ob in cfg.observables}
    for name, _upper, bound in cfg.assay_limits:
        ob = specs.get(name)
        if bound is None or ob is None:
            continue
        e = eps[name]
        for _ in range(50):
            bad = np.abs(e) > bound
            if not bad.any():
                break
            k = int(bad.sum())
            e[bad] = rng.standard_t(ob.df, k) if ob.residual == "t" else rng.standard_normal(k)
        np.clip(e, -bound, bound, out=e)
    return draws


@dataclass
class _Batch:
    """The processed candidates of one simulated batch (arrays over candidates)."""

    ok: np.ndarray
    reason: np.ndarray
    data: dict[str, Any]


def _process(cfg: PopulationConfig, draws: _Draws, sim, grid: np.ndarray) -> _Batch:
    step = cfg.grid_step
    m = len(draws.age_onset)
    F = sim[_SCORE]
    onset = sim.event_time(_EVENTS[0])
    death = sim.event_time(_EVENTS[1])
    death_inf = np.where(np.isnan(death), np.inf, death)
    failed = ~sim.success | np.isnan(F).any(axis=1)
    reason = np.full(m, "", dtype=object)
    reason[failed] = "simulation failed"
    no_onset = np.isnan(onset) & ~failed
    reason[no_onset] = "no clinical onset within the horizon"
    on = np.where(np.isnan(onset), 0.0, onset)

    # Diagnosis: faster early decline -> shorter delay.
    f6 = interpolate(F, step, (on + 6.0)[:, None])[:, 0]
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
    w = visit_times(nominal, cfg.jitter, draws.jitter)
    scheduled, missed, study_end = planned_visits(nominal, w, planned_end, draws.u_missed,
                                                  cfg.missed)

    # Registry vital status ([vital_status]): death is ascertained until vital_end whether or
    # not the patient is still seen; the same uniform draw as the visits' end (a patient who
    # entered the registry early has both the longer clinic and the longer registry follow-up).
    if cfg.vital_follow_up is not None:
        v_lo, v_hi = cfg.vital_follow_up
        vital_end = np.maximum(np.round(v_lo + (v_hi - v_lo) * draws.u_end, 2), study_end)
    else:
        vital_end = None
    last_needed = study_end if vital_end is None else vital_end
    too_slow = (t_enrol + last_needed > grid[-1]) & (reason == "")
    reason[too_slow] = "follow-up beyond the simulated horizon"
    usable = reason == ""
    t_enrol_safe = np.where(usable, t_enrol, 0.0)

    died_first = death_inf <= t_enrol
    reason[usable & died_first & (death_inf <= t_diag)] = "died before diagnosis"
    reason[usable & died_first & (death_inf > t_diag)] = "died before enrolment"

    # True values at visits, observed values.
    upper_limits = {name: up for name, up, _ in cfg.assay_limits}
    tv = t_enrol_safe[:, None] + w
    values, cens, limits, measured = {}, {}, {}, {}
    for ob in cfg.observables:
        f = interpolate(sim[ob.model], step, tv)
        values[ob.name], cens[ob.name], limits[ob.name] = measure(
            ob, f, draws.eta[ob.name], draws.eps[ob.name])
        upper = upper_limits.get(ob.name)
        if upper is not None:   # above the assay's range: reported at the limit, cens = -1
            above = values[ob.name] > upper
            values[ob.name] = np.where(above, upper, values[ob.name])
            cens[ob.name][above] = -1
            limits[ob.name][above] = upper
        p = np.full(V, ob.probability)
        p[0] = ob.baseline
        measured[ob.name] = draws.u_measured[ob.name] < p[None, :]

    # Enrolment criteria on the observed baseline ALSFRS-R.
    frs0 = values[_SCORE][:, 0]
    duration = t_enrol - on
    dfs0 = (ALSFRS_MAX - frs0) / np.maximum(duration, 1e-9)
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
        Fu = interpolate(F, step, tu)
        dF = (interpolate(F, step, tu + 0.5 * h) - interpolate(F, step, tu - 0.5 * h)) / h
        logh = (cfg.dropout_per_point * (ALSFRS_MAX - Fu)
                + cfg.dropout_per_slope * np.maximum(-dF, 0.0))
        haz = cfg.dropout_rate * np.exp(np.clip(logh, -50, 5))
        haz = haz + cfg.dropout_early_rate * (u < cfg.dropout_early_months)[None, :]
        dropout = dropout_times(u, haz, draws.e_dropout)

    death_rel = death_inf - t_enrol
    exit_time = np.minimum(np.minimum(death_rel, dropout), study_end)
    keep = scheduled & ~missed & (w < exit_time[:, None])
    keep |= scheduled & ~missed & (w <= study_end[:, None]) & (exit_time == study_end)[:, None]
    keep[:, 0] = True
    if vital_end is None:
        surv_end = np.minimum(dropout, study_end)
    else:   # a dropout ends the visits, not the registry's follow-up of vital status
        surv_end = vital_end
    is_death = death_rel <= surv_end
    event_time = np.where(is_death, np.ceil(np.where(is_death, death_rel, 0) * 100) / 100,
                          np.round(surv_end, 2))
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
    n_death = n_dropout = n_lost = 0
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
                sel[0] = sel[0] or ob.name == _SCORE
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
            # registry: visits ended by a dropout before death and the end of the visits
            n_lost += bool(d["dropout"][i] < np.fmin(d["death"][i] - d["t_enrol"][i],
                                                     d["study_end"][i]))
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
    if cfg.vital_follow_up is not None:
        notes[-1] = (f"vital status followed {cfg.vital_follow_up[0]:g}-"
                     f"{cfg.vital_follow_up[1]:g} months after enrolment (registry): death or "
                     f"ventilation in {n_death}, alive at the end in {n - n_death}; visits "
                     f"ended by dropout in {n_lost}")
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


