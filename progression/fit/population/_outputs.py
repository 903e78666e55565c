"""The diagnostics of a population fit's folder: per-observation PRED, IPRED, IWRES, CWRES and
NPDE, the ``.ext`` table, the prediction-corrected VPC and the goodness-of-fit figures.

Everything is computed from a :class:`~progression.fit.result.FitResult` with a
:class:`~progression.fit.parts.PopulationPart` (a fresh fit or one reloaded with
:func:`~progression.load_fit`), so a saved and reloaded fit writes the same numbers:

- PRED, IPRED, IWRES, CWRES: :func:`~progression.fit.population.residual_diagnostics` at the
  typical values and the EBEs (FOCE-I CWRES, V at eta-hat);
- NPDE: K simulations (``[estimator] npde_samples``, default 200, seeded by ``[estimator]
  seed``) of each subject's design, ``eta ~ N(0, Omega)`` through the same individual model
  (:class:`~progression.fit.population.ProblemModel`) plus residual noise
  ``N(0, a^2 + b^2 f^2)``, then :func:`~progression.fit.population.npde`;
- the prediction-corrected VPC (:func:`~progression.fit.population.vpc`) from the same
  simulations, one per observable.

Censored values (``cens`` 1 below ``limit``, -1 above; M3 in the estimators):

- ``data.csv``: the ``DV`` column holds the limit of a censored value and ``CENS`` its flag
  (0, 1, -1), as in a NONMEM data set with BLQ rows; PRED and IPRED are given as for any row.
- IWRES and CWRES are not defined for a censored value by their formulas (there is no
  observed value): NaN (an empty cell) with ``CENS`` saying why, as NONMEM leaves them; the
  CWRES of a subject's other values use only its observed values (C_i over those rows).
  Monolix's alternative (residuals of a value imputed from its conditional distribution) is not
  done: an imputed residual looks like data that were never seen.
- NPDE: with the censoring (Nguyen, Comets, Mentré 2012): the pd of a value below its limit is
  drawn uniformly in ``[0, P(Y < limit)]`` from the simulations, the value imputed at that
  quantile, then decorrelated with the subject's other values (see
  :mod:`~progression.fit.population._npde`); censored rows have a finite NPDE, and under the
  model NPDE stay N(0, 1).
- VPC: of an observable with values censored below a limit, the prediction-corrected VPC
  ranks censored values lowest (a percentile among them is not drawn), and a second panel
  shows the observed fraction below the limit per bin against the 90 % interval of the
  simulated fractions (simulated values below the limit of their row count as censored). Rows
  without a limit (the data give it only on censored rows) use the limit of the subject's
  censored values of that observable, else the median limit of that observable. Values
  censored above a limit are left out of the VPC (counted in ``vpc_left_out``).
- The prediction correction is additive (``Y + PRED_bin - PRED``) for a log-normal observable
  (on the log scale) and for one with a purely additive error model (a bounded score such as
  ALSFRS-R, whose PRED nears 0 in advanced patients: the ratio would throw corrected values far
  off the scale); the ratio form (Bergstrand et al. 2011, eq. 1) for proportional and combined
  error models, which leaves out observations with PRED <= 0.

Values are on the data's scale: for a log-normal observable the core works on log values, and
PRED/IPRED are given back as ``exp`` of its predictions (residuals are scale-free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import FitError
from ..transforms import to_internal
from ._adapter import ProblemModel
from ._core import PopulationData, Residual
from ._diagnostics import epsilon_shrinkage, residual_diagnostics
from ._ext_fit import (  # noqa: F401  (callers read them here)
    EXT_METHODS,
    FOCEI_METHOD,
    IMPORTANCE_METHOD,
    ext_table,
    ext_tables,
    write_fit_ext,
)
from ._npde import npde
from ._vpc import vpc, vpc_limits
from ._vpc_events import MAX_ENTRY_DRAWS, EndedDraws, EndEvents
from ._vpc_survival import SurvivalVPC, survival_vpc

__all__ = ["PopulationOutputs", "population_outputs", "ext_table", "ext_tables", "DATA_COLUMNS",
           "NPDE_SAMPLES", "FOCEI_METHOD", "BLQ_CI", "censoring_report_lines", "vpc_limits",
           "vpc_report_lines"]

#: Default number of simulated replicates of each subject's design for NPDE and the VPC.
NPDE_SAMPLES = 200
#: Extra columns of a population fit's ``data.csv``.
DATA_COLUMNS = ("DV", "CENS", "PRED", "IPRED", "IWRES", "CWRES", "NPDE")
#: Level of the simulated interval of the fraction below the limit in the VPC.
BLQ_CI = 0.90
# how often a failed simulated replicate is drawn again before giving up
_REDRAWS = 5
#: Observations per VPC bin at most, where the design has fewer occasions than that needs.
_OBS_PER_BIN = 100
_DPI = 120


@dataclass
class PopulationOutputs:
    """Per-observation diagnostics of a population fit (padded (N, n), NaN in padding).

    Attributes
    ----------
    data : PopulationData
        The observations on the core's scale (log values for log-normal observables).
    time : ndarray (N, n)
        Observation times (data time), NaN in padding.
    dv : ndarray (N, n)
        The observed values on the data's scale; for a censored value its limit.
    cens : ndarray (N, n)
        Censoring flag (0 observed, 1 below the limit, -1 above), NaN in padding.
    pred, ipred : ndarray (N, n)
        Predictions at eta = 0 and at the EBEs, on the data's scale.
    iwres, cwres, npde : ndarray (N, n)
    sims : ndarray (K, N, n)
        The simulated observations (core scale) behind NPDE and the VPC.
    vpcs : dict of str to VPCResult
        Prediction-corrected VPC per observable.
    vpc_left_out : dict of str to int
        Observations left out of each VPC because their PRED is not positive (the ratio
        correction of a proportional or combined error model divides by PRED, for example
        concentrations before absorption) or because
        they are censored above a limit.
    epsilon_shrinkage : float
        ``1 - SD(IWRES)`` (a fraction).
    n_sim, seed : int
    vpc_end_events : tuple of str
        Events that end simulated patients' observations in the VPC
        (``[estimator] vpc_end_events``; empty: none).
    survival_vpc : SurvivalVPC or None
        The Kaplan-Meier VPC of a joint fit's time-to-event data (:mod:`._vpc_survival`).
    """

    data: PopulationData
    time: np.ndarray
    dv: np.ndarray
    cens: np.ndarray
    pred: np.ndarray
    ipred: np.ndarray
    iwres: np.ndarray
    cwres: np.ndarray
    npde: np.ndarray
    sims: np.ndarray
    vpcs: dict
    vpc_left_out: dict
    epsilon_shrinkage: float
    n_sim: int
    seed: int
    vpc_end_events: tuple = ()
    survival_vpc: SurvivalVPC | None = None

    def column(self, name: str, i: int, n_i: int) -> np.ndarray:
        """Subject ``i``'s values (n_i,) of a :data:`DATA_COLUMNS` entry."""
        return getattr(self, name.lower())[i, :n_i]


def _layout(result):
    from ..estimators.focei import population_layout

    return population_layout(result.problem)


def _model(result):
    """The individual model, typical values ``mu`` (N, D), random-effect columns, residual."""
    problem = result.problem
    pop = result.population
    pop_cols, eta_pos, _ = _layout(result)
    names = problem.names
    with_eta = tuple(names[pop_cols[j]] for j in eta_pos)
    if not with_eta or with_eta != tuple(pop.omega_names):
        have = ", ".join(with_eta) or "none"
        raise FitError(f"fit '{result.name}': population part: expected random effects on "
                       f"the fit's population parameters with eta ({have}), found Omega "
                       f"over {', '.join(pop.omega_names) or 'none'}")
    missing = [names[q] for q in pop_cols if names[q] not in pop.fixed_effects]
    if missing:
        raise FitError(f"fit '{result.name}': population part: expected typical values of "
                       f"{', '.join(pop_cols.astype(str))}, found none for {', '.join(missing)}")
    typ = np.array([pop.fixed_effects[names[q]] for q in pop_cols], dtype=float)
    sc, lo, hi = problem.scale[pop_cols], problem.lower[pop_cols], problem.upper[pop_cols]
    theta_x = to_internal(typ, sc, lo, hi)
    model = ProblemModel(problem, result.designs, pop_cols)
    N = len(result.designs)
    mu = np.tile(theta_x, (N, 1))
    if getattr(pop, "covariate_names", ()):
        # typical values with the covariate effects, from the subjects' covariates as fitted
        tm, mu_c = pop._typical_internal(pop.subject_covariates, N)
        mu = mu_c[:, [tm.names.index(names[q]) for q in pop_cols]]
    th = np.asarray(result.theta, dtype=float)[0]
    # the data's observables only (a joint model's index arrays go on over the survival
    # pseudo-observables, which have no residual)
    K = len(problem.observables)
    a = tuple(float(th[i]) if i >= 0 else 0.0 for i in problem.a_index[:K])
    b = tuple(float(th[i]) if i >= 0 else 0.0 for i in problem.b_index[:K])
    return model, mu, eta_pos, Residual(a, b, tuple(float(v) for v in model.residual_df))


def _uncensored(designs) -> list:
    """The designs with every value read as observed (``cens`` 0): the residual of a censored
    value is the M3 term, not ``y - f``, so predictions are read from these. A censored
    value's ``value`` is its limit (finite, positive for a log-normal observable)."""
    out = []
    for d in designs:
        c = np.asarray(d.cens)
        if np.any(c != 0):
            v = np.where(c != 0, np.asarray(d.limit, dtype=float), np.asarray(d.value, float))
            d = d.replace(value=v, cens=np.zeros(d.n, dtype=int), limit=np.full(d.n, np.nan))
        out.append(d)
    return out


def _predict(model: ProblemModel, phi, index) -> np.ndarray:
    """Predictions (R, n) on the core's scale without derivatives (simulation needs none):
    the adapter's reading of the unit-SD residuals, ``f = y - r``, of the designs with
    censored values read as observed (:func:`_uncensored`)."""
    designs = _uncensored(model.designs)
    ev = model.problem.evaluate(designs, index, model.thetas(phi), model.cols,
                                want_jac=False)
    f = np.full((len(index), model.n), np.nan)
    for r, i in enumerate(index):
        if ev.failed[r]:
            continue
        d = designs[i]
        y = np.asarray(d.value, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(model.log_scale[d.obs], np.log(y), y)
        f[r, :d.n] = y - ev.residuals[r][:d.n]
    return f


def _values(model, phi, index) -> np.ndarray:
    """Predictions only: the cheap path of a ProblemModel, else any individual model's."""
    if isinstance(model, ProblemModel):
        return _predict(model, phi, index)
    return np.asarray(model.predict(phi, index)[0], dtype=float)


def _simulation_path(model, phi, index, residual, data):
    """What :func:`simulate_designs` predicts with: for a ProblemModel whose subjects carry
    doses or time-varying covariates (each simulated through ``simulate()`` on the exact
    path: pheno's 200 replicate data sets took 20 s), SAEM's compiled piecewise RK4 when its
    step, calibrated at ``phi`` (one row per subject), reproduces the exact path to 0.01
    residual SD, far below the residual noise the simulations add; else :func:`_values`."""
    from ._saem_model import RK4Predictions, applicable

    def exact(p, i):
        return _values(model, p, i)

    designs = getattr(model, "designs", None)
    if (not isinstance(model, ProblemModel) or model.problem.survival is not None
            or not any(d.doses or d.dose_records or d.covariates for d in designs)
            or not applicable(model.problem, designs)):
        return exact
    f0 = exact(phi, index)
    obs = data.observable[index]
    with np.errstate(all="ignore"):
        sd = np.sqrt(residual.variance(np.nan_to_num(f0), obs))
    sd = np.where(data.mask[index] & (sd > 0), sd, 1.0)
    fast = RK4Predictions(model)
    # the calibration's exact predictions are f0 (the same rows): not evaluated again
    if not fast.calibrate(lambda p, i: (f0, None), phi, index, sd):
        return exact
    return lambda p, i: fast.predict(p, i)[0]


def simulate_designs(model, data, mu, omega, residual, eta_columns, K: int, seed: int,
                     source: str = "population fit", end=None) -> np.ndarray:
    """K replicates (K, N, n) of every subject's design: ``eta ~ N(0, Omega)``, the model's
    prediction, plus ``N(0, V(f))`` residual noise; NaN in padding.

    A replicate whose simulation fails is drawn again (up to 5 times); raises FitError naming
    the subject if it keeps failing. With ``end`` (an :class:`~._vpc_events.EndEvents`) a
    simulated patient is also drawn again (up to 50 times) while its end event comes before
    its first observation, and has NaN at and after its event.
    """
    rng = np.random.default_rng(seed)
    N, n = data.y.shape
    E = len(eta_columns)
    om = np.atleast_2d(np.asarray(omega, dtype=float))
    L = np.linalg.cholesky(om)
    index = np.tile(np.arange(N), K)
    phi = np.repeat(mu[None], K, axis=0).reshape(K * N, -1).copy()
    phi[:, eta_columns] += rng.standard_normal((K * N, E)) @ L.T
    values = _simulation_path(model, phi[:N], index[:N], residual, data)
    f = values(phi, index)
    mask = np.tile(data.mask, (K, 1))

    def redraw(rows):
        # new random effects for these rows, around their own subject's typical values
        phi[rows] = mu[index[rows]]
        phi[np.ix_(rows, eta_columns)] += rng.standard_normal((rows.size, E)) @ L.T
        f[rows] = values(phi[rows], index[rows])

    for _ in range(_REDRAWS):
        bad = np.flatnonzero(~np.all(np.isfinite(f) | ~mask, axis=1))
        if bad.size == 0:
            break
        redraw(bad)
    else:
        bad = np.flatnonzero(~np.all(np.isfinite(f) | ~mask, axis=1))
        if bad.size:
            raise FitError(f"{source}: simulations for NPDE: the simulation of subject "
                           f"{index[bad[0]]} failed in {_REDRAWS + 1} draws of its random "
                           "effects; expected finite predictions")
    if end is not None:
        # entry conditional on being event-free at the first observation (the hazards' scores
        # z from a stream of their own)
        zr = np.random.default_rng([seed, 2])
        drawn = end.draw(model.thetas(phi), index, zr)
        ended = drawn.ended
        for _ in range(MAX_ENTRY_DRAWS):
            dead = np.flatnonzero(~drawn.alive_at_entry)
            if dead.size == 0:
                break
            redraw(dead)
            drawn = end.draw(model.thetas(phi[dead]), index[dead], zr)
            ended[dead] = drawn.ended
            alive = np.ones(K * N, dtype=bool)
            alive[dead] = drawn.alive_at_entry & np.all(np.isfinite(f[dead]) | ~mask[dead],
                                                        axis=1)
            drawn = EndedDraws(ended=ended, alive_at_entry=alive)
        f = np.where(ended, np.nan, f)
    f = f.reshape(K, N, n)
    obs = np.broadcast_to(data.observable, f.shape)
    with np.errstate(all="ignore"):
        sd = np.sqrt(residual.variance(f, obs))
    eps = rng.standard_normal(f.shape)
    nu = getattr(model, "residual_df", None)
    if nu is not None and np.isfinite(nu).any():
        # a Student-t observable's residual is scale * t(df) (sd is its scale, not its SD);
        # drawn after the normal ones, so normal fits keep their random stream
        nv = np.asarray(nu, dtype=float)[np.minimum(obs, len(nu) - 1)]
        t_draws = rng.standard_t(np.where(np.isfinite(nv), nv, 1.0))
        eps = np.where(np.isfinite(nv), t_draws, eps)
    sims = f + sd * eps
    return np.where(data.mask[None], sims, np.nan)


def population_outputs(result, n_sim: int | None = None, seed: int | None = None, *,
                       end_events=None) -> PopulationOutputs:
    """The per-observation diagnostics, simulations and VPCs of a population fit.

    Parameters
    ----------
    result : FitResult
        With ``result.population`` set (a focei fit) and its designs.
    n_sim : int, optional
        Replicates K (default: the fit's ``[estimator] npde_samples``, else 200).
    seed : int, optional
        Seed of the simulations (default: the fit's ``[estimator] seed``, else 0).
    end_events : sequence of str, optional
        Events of the model that end simulated patients' observations in the VPC
        (:mod:`._vpc_events`; default: the fit's ``[estimator] vpc_end_events``; ``()``:
        none).

    Returns
    -------
    PopulationOutputs

    Raises
    ------
    FitError
        Not a population fit, or simulations that keep failing.
    """
    if result.population is None:
        raise FitError(f"fit '{result.name}': expected a population fit (estimator focei), "
                       f"found estimator {result.kind!r}")
    opts = (result.provenance or {}).get("options") or {}
    K = int(n_sim if n_sim is not None else opts.get("npde_samples") or NPDE_SAMPLES)
    s = int(seed if seed is not None else (result.provenance or {}).get("seed") or 0)
    model, mu, eta_cols, residual = _model(result)
    data = model.data(f"fit '{result.name}'")
    omega = np.asarray(result.population.omega, dtype=float)
    eta = np.asarray(result.population.ebes, dtype=float)
    r = residual_diagnostics(model, data, mu, omega, residual, eta, eta_columns=eta_cols)
    sims = simulate_designs(model, data, mu, omega, residual, eta_cols, K, s,
                            f"fit '{result.name}'")
    # the uniform draws of censored values' pd: their own stream of the fit's seed
    nd = npde(data, sims, seed=np.random.default_rng([s, 1]),
              source=f"fit '{result.name}': NPDE")
    N, n = data.y.shape
    time = np.full((N, n), np.nan)
    for i, d in enumerate(result.designs):
        time[i, :d.n] = d.time
    lg = model.log_scale[data.observable] & data.mask
    with np.errstate(all="ignore"):
        pred = np.where(lg, np.exp(r.pred), r.pred)
        ipred = np.where(lg, np.exp(r.ipred), r.ipred)
        y_core = np.where(data.cens != 0, data.limit, data.y)
        dv = np.where(data.mask, np.where(lg, np.exp(y_core), y_core), np.nan)
    cens = np.where(data.mask, data.cens, np.nan).astype(float)
    limits = vpc_limits(data)
    if end_events is None:
        end_events = opts.get("vpc_end_events") or ()
    end_events = tuple(end_events)
    vpc_sims, ended = sims, None
    if end_events:
        # the VPC's own simulations: each simulated patient's observations end at its end
        # event, and it is enrolled event-free (_vpc_events); NPDE keep the plain ones
        end = EndEvents(model.problem, model.designs, end_events)
        vpc_sims = simulate_designs(model, data, mu, omega, residual, eta_cols, K, s,
                                    f"fit '{result.name}'", end=end)
        ended = np.isnan(vpc_sims) & data.mask[None]
    vpcs, left = {}, {}
    for k, name in enumerate(result.observables):
        use = data.mask & (data.observable == k)
        if not use.any():
            continue
        # the additive correction for log-scale data and for a purely additive error (a
        # bounded score: the ratio would divide by PRED near the floor, see _vpc); the ratio
        # divides by PRED, so there observations with PRED <= 0 are left out; so are values
        # censored above a limit (the VPC's censoring panel is below a limit)
        log_k = bool(model.log_scale[k]) or residual.b[k] == 0
        ok = use & (log_k | (r.pred > 0)) & (data.cens != -1)
        left[name] = int(use.sum() - ok.sum())
        if not ok.any():
            continue
        below = bool(np.any(ok & (data.cens == 1)))
        extra = dict(lloq=np.where(ok, limits, np.nan), cens=np.where(ok, data.cens, 0),
                     blq_ci=BLQ_CI) if below else {}
        if ended is not None:
            extra["ended"] = ended.reshape(K, -1)
        vpcs[name] = vpc(np.where(ok, time, np.nan), np.where(ok, y_core, np.nan),
                         np.where(ok[None], vpc_sims, np.nan).reshape(K, -1),
                         pred=np.where(ok, r.pred, np.nan), log_scale=log_k,
                         n_bins=_n_bins(ok), **extra,
                         source=f"fit '{result.name}': VPC of {name}")
    return PopulationOutputs(data=data, time=time, dv=dv, cens=cens, pred=pred, ipred=ipred,
                             iwres=r.iwres, cwres=r.cwres, npde=nd.npde, sims=sims, vpcs=vpcs,
                             vpc_left_out=left, epsilon_shrinkage=epsilon_shrinkage(r.iwres),
                             n_sim=K, seed=s, vpc_end_events=end_events,
                             survival_vpc=None if model.problem.survival is None else
                             survival_vpc(model, mu, omega, eta_cols, K, s))


def censoring_report_lines(out: PopulationOutputs) -> list[str]:
    """Markdown lines for ``report.md`` on what the diagnostics did with censored values, with
    the VPC's fraction below the limit against its interval per observable; ``[]`` when no
    value is censored."""
    c = np.nan_to_num(out.cens)
    n_below, n_above = int(np.sum(c == 1)), int(np.sum(c == -1))
    if n_below + n_above == 0:
        return []
    total = int(out.data.mask.sum())
    lines = [f"**Censored values:** {n_below + n_above} of {total} ({n_below} below a limit, "
             f"{n_above} above; M3 likelihood). In `data.csv` their `DV` is the limit and "
             "`CENS` the flag (1 below, -1 above); IWRES and CWRES are empty for them (not "
             "defined without an observed value; the CWRES of a subject's other values use "
             "its observed values only). NPDE take the censoring into account (Nguyen, "
             "Comets, Mentré 2012): the pd of a censored value is drawn uniformly in "
             "[0, P(Y < limit)] of its simulations, the value imputed at that quantile, then "
             "decorrelated with the subject's other values. In the figures censored values "
             "are open red markers at the limit.", ""]
    for name, v in out.vpcs.items():
        if v.blq_observed is None:
            continue
        ok = np.isfinite(v.blq_observed) & np.isfinite(v.blq_sim).all(axis=1)
        outside = ok & ((v.blq_observed < v.blq_sim[:, 0]) | (v.blq_observed > v.blq_sim[:, 2]))
        lines += [f"VPC of {name}: observed fraction below the limit per bin "
                  f"{', '.join(f'{x:.2f}' for x in v.blq_observed[ok])}; simulated "
                  f"{100 * (v.blq_ci or v.ci):g} % intervals "
                  f"{', '.join(f'[{a:.2f}, {b:.2f}]' for a, b in v.blq_sim[ok][:, [0, 2]])}; "
                  f"{int(outside.sum())} of {int(ok.sum())} bins outside their interval.", ""]
    return lines


def vpc_report_lines(out: PopulationOutputs) -> list[str]:
    """Markdown lines for ``report.md`` scoring each VPC: per percentile, the bins whose
    observed value lies outside its simulated band; with end events, the share of simulated
    values each bin lost to them."""
    if not out.vpcs:
        return []
    lines = []
    if out.vpc_end_events:
        lines += [f"**End events in the VPC** (`vpc_end_events`: "
                  f"{', '.join(out.vpc_end_events)}): each simulated patient is simulated to its "
                  "own event (hazard thresholds drawn per patient), drawn again until it is "
                  "event-free at its first observation, and has no simulated value at or after "
                  "the event, as the data have none after a patient's death.", ""]
    for name, v in out.vpcs.items():
        miss = (v.observed < v.sim_lo) | (v.observed > v.sim_hi)
        parts = [f"{p:g}th {int(miss[:, j].sum())} of {int(np.isfinite(v.observed[:, j]).sum())}"
                 for j, p in enumerate(v.percentiles)]
        line = (f"VPC of {name} ({len(v.x)} bins): observed percentiles outside the simulated "
                f"{100 * v.ci:g} % band: {', '.join(parts)}.")
        if v.sim_ended is not None:
            line += (" Simulated values lost to end events per bin: "
                     + ", ".join(f"{100 * x:.0f} %" for x in v.sim_ended) + ".")
        lines += [line, ""]
    return lines


def _n_bins(use: np.ndarray) -> int:
    """VPC bins: one per typical sampling occasion, the median number of observations per
    subject (so that quantile bins fall on the nominal times of a rich design), and at least
    one per 100 observations (a sparse cohort design: ~5 values per patient over years would
    otherwise put years of follow-up into one bin); 3 to 10."""
    per = use.sum(axis=1)
    return int(min(10, max(3, np.median(per[per > 0]), int(use.sum()) // _OBS_PER_BIN)))


def correlation_condition_number(cov) -> float:
    """Condition number (largest / smallest eigenvalue) of the correlation matrix of the
    estimates, as NONMEM reports it; held parameters (a row and column of zeros: a typical
    value with ``value_fixed``) are left out, as NONMEM leaves FIX out of its covariance
    matrix; NaN when the covariance step failed."""
    if cov is None:
        return float("nan")
    c = np.asarray(cov, dtype=float)
    if c.ndim == 2 and c.size:
        held = np.all(c == 0.0, axis=0) & np.all(c == 0.0, axis=1)
        c = c[np.ix_(~held, ~held)]
    if c.size == 0 or not np.all(np.isfinite(c)):
        return float("nan")
    d = np.sqrt(np.diag(c))
    if np.any(d <= 0):
        return float("nan")
    w = np.linalg.eigvalsh(c / np.outer(d, d))
    return float(w[-1] / w[0]) if w[0] > 0 else math.inf


def write_population_figures(result, out: PopulationOutputs, folder: Path) -> list[Path]:
    """The goodness-of-fit, VPC, convergence and individual-fit figures of a population fit."""
    from ..._mpl import pyplot
    from ...plots.population import (
        plot_bootstrap,
        plot_dv_vs_pred,
        plot_individual_fits,
        plot_qq,
        plot_residuals,
        plot_survival_vpc,
        plot_traces,
        plot_vpc,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = result.observables[0] if len(result.observables) == 1 else "DV"
    units = _units(result)
    unit, t_unit = units.get(name), str(getattr(result.model, "time_unit", "") or "")
    # censored values: DV is their limit, drawn as open markers (the CENS flag)
    dv, cens = out.dv, out.cens
    n_cens = int(np.sum(np.nan_to_num(cens) != 0))
    files = []
    try:
        logs = dict(zip(result.observables, _log_scale(result), strict=True))
        present = [k for k, o in enumerate(result.observables)
                   if np.any(out.data.mask & (out.data.observable == k))]
        if len(present) == 1:
            p = folder / "gof_dv_vs_pred.png"
            plot_dv_vs_pred(dv, out.pred, out.ipred, name=name, unit=unit, cens=cens, path=p)
            files.append(p)
        else:
            # one figure per observable: their scales differ (ALSFRS-R points, NfL pg/mL), and
            # a log-normal observable on log axes
            for k in present:
                obs = result.observables[k]
                sel = out.data.mask & (out.data.observable == k)
                p = folder / f"gof_dv_vs_pred_{obs}.png"
                plot_dv_vs_pred(*(np.where(sel, a, np.nan) for a in (dv, out.pred, out.ipred)),
                                name=obs, unit=units.get(obs), log=bool(logs.get(obs)),
                                cens=np.where(sel, cens, np.nan), path=p)
                files.append(p)
        p = folder / "gof_cwres.png"
        plot_residuals(out.cwres, out.time, out.pred, name="CWRES", time_unit=t_unit,
                       pred_unit=unit, n_censored=n_cens, path=p)
        files.append(p)
        p = folder / "gof_qq.png"
        # saved here with a tight box: the square panels' titles are otherwise cut at the top
        plot_qq({"CWRES": out.cwres, "NPDE": out.npde}).savefig(p, dpi=_DPI,
                                                                bbox_inches="tight")
        files.append(p)
        for obs, v in out.vpcs.items():
            p = folder / (f"vpc_{obs}.png" if len(out.vpcs) > 1 else "vpc.png")
            # a log-normal observable's VPC is on the log scale (the core's): say so
            plot_vpc(v, name=f"log {obs}" if logs.get(obs) else obs, unit=units.get(obs),
                     time_unit=t_unit, end_events=out.vpc_end_events, path=p)
            files.append(p)
        if out.survival_vpc is not None:
            p = folder / "vpc_survival.png"
            plot_survival_vpc(out.survival_vpc, time_unit=t_unit, path=p)
            files.append(p)
        h = result.population.history
        if h is not None and len(h):
            h = np.asarray(h, dtype=float)
            pop = result.population
            D, S = len(pop.fixed_effects), len(pop.sigma)
            traces = {f"{k} (typical value)": h[:, 1 + j]
                      for j, k in enumerate(pop.fixed_effects)}
            traces.update({f"{k} (residual SD)": h[:, 1 + D + j]
                           for j, k in enumerate(pop.sigma)})
            traces.update({f"omega^2 {k}": h[:, 1 + D + S + j]
                           for j, k in enumerate(pop.omega_names)})
            p = folder / "ofv_by_iteration.png"
            # the OFV and every estimate by outer iteration; a tight box keeps the title whole
            title = ("SAEM iterations: estimates; OFV (NONMEM convention) by importance "
                     "sampling at the end" if pop.method == "saem" else
                     "Outer iterations: OFV (NONMEM convention) and estimates")
            plot_traces(traces, ofv=h[:, -1], iterations=h[:, 0], ncols=4, title=title
                        ).savefig(p, dpi=_DPI, bbox_inches="tight")
            files.append(p)
        boot = result.population.bootstrap_result() if result.population.bootstrap else None
        if boot is not None:
            p = folder / "bootstrap.png"
            plot_bootstrap(boot, wald=result.population.intervals(boot.level), path=p)
            files.append(p)
        p = folder / "individual_fits_population.png"
        # the first 8 subjects; IPRED and PRED on a fine time grid (smooth curves), the
        # observations at their times (the grid's DV is NaN, so not drawn)
        show = list(range(min(out.pred.shape[0], 8)))
        t_g, ip_g, p_g = _curves(result, show)
        T, Y, IP, P, CS = [], [], [], [], []
        for r, i in enumerate(show):
            k = out.data.mask[i]
            first = out.data.observable[i] == out.data.observable[i, 0]
            keep = k & first
            T.append(np.r_[out.time[i, keep], t_g[r]])
            Y.append(np.r_[dv[i, keep], np.full(t_g[r].size, np.nan)])
            CS.append(np.r_[cens[i, keep], np.zeros(t_g[r].size)])
            IP.append(np.r_[out.ipred[i, keep], ip_g[r]])
            P.append(np.r_[out.pred[i, keep], p_g[r]])
        obs0 = result.observables[int(out.data.observable[0, 0])]
        fig = plot_individual_fits(T, Y, IP, P, ids=[f"subject {result.subject_ids[i]}"
                                                     for i in show],
                                   name=obs0, unit=unit, time_unit=t_unit, cens=CS)
        # the panels are a subset: say of how many subjects
        fig.suptitle(f"Individual fits of {obs0} ({len(show)} of {out.pred.shape[0]} "
                     "subjects): observations, IPRED (EBEs), PRED (eta = 0)")
        fig.savefig(p, dpi=_DPI)
        files.append(p)
    finally:
        pyplot().close("all")
    return files


def _curves(result, subjects, points: int = 150):
    """IPRED and PRED of ``subjects`` on a fine grid over each one's observation times (its
    first observable), on the data's scale: (times, ipred, pred), lists of (points,) arrays."""
    model, mu, eta_cols, _ = _model(result)
    ebes = np.asarray(result.population.ebes, dtype=float)
    grid_designs, times = [], []
    for i in subjects:
        d = result.designs[i]
        k = int(d.obs[0])
        t = np.linspace(float(np.nanmin(d.time)), float(np.nanmax(d.time)), points)
        times.append(t)
        grid_designs.append(d.replace(
            time=t, obs=np.full(points, k), value=np.ones(points),
            cens=np.zeros(points, dtype=int), limit=np.full(points, np.nan),
            condition=None if d.condition is None else np.full(points, d.condition[0]),
            sd=None))
    grid = ProblemModel(result.problem, grid_designs, model.cols)
    idx = np.arange(len(subjects))
    m = mu[list(subjects)]
    phi = m.copy()
    phi[:, eta_cols] += ebes[list(subjects)]
    f_i, f_p = _predict(grid, phi, idx), _predict(grid, m, idx)
    lg = bool(grid.log_scale[int(result.designs[subjects[0]].obs[0])]) if subjects else False
    if lg:
        f_i, f_p = np.exp(f_i), np.exp(f_p)
    return times, list(f_i), list(f_p)


def _log_scale(result) -> np.ndarray:
    from ._adapter import core_scale

    return np.array([core_scale(k) == "log" for k in result.error_models])


def _units(result) -> dict:
    from ..report import _units as units_of

    return dict(units_of(result))
