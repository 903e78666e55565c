"""The ``individual`` estimator: each subject's free quantities estimated separately.

Subjects are cut into chunks of ``batch_size``; a chunk (all its subjects and starts) is
optimised in lock step, one simulation per iteration for the whole chunk
(:mod:`progression.fit.optimize`). Chunks go to the executor (in-process, processes, Dask);
the cut does not depend on the executor, so neither do the numbers. Grid-path estimates are
polished on the exact path (``[solver] refine = "exact"``) and the winners evaluated again
without their other starts, so each reported objective is the subject's own.

Uncertainty: per-subject covariance from the information ("observed information"), profile
likelihoods of every estimated quantity of every subject, parametric bootstrap per subject.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ...parallel import report
from .._batched import polish as polish_rows
from .._multistart import (
    POLISH_FTOL,
    POLISH_STEPS,
    failure_reasons,
    jacobian_method,
    map_subject_chunks,
    numbers_from,
    refines,
    run_grouped,
    simulate_replicates,
    starting_points,
)
from .._uncertainty_steps import per_subject_covariance
from ..optimize import Counters, Task
from ..parts import (
    INTERVAL_METHODS,
    BootstrapDraws,
    Diagnostics,
    Estimates,
    Profiles,
    Uncertainty,
)
from ..problem import Problem
from ..transforms import from_internal, internal_bounds
from ..uncertainty import (
    conditional_start,
    percentile_interval,
    profile_grid,
    profile_interval,
)
from .base import EstimationProblem, Estimator, PointEstimate

__all__ = ["Individual", "ChunkFit", "fit_chunk"]


@dataclass(frozen=True)
class ChunkFit:
    """The fit of one chunk of subjects (all starts), as a worker returns it.

    Attributes
    ----------
    theta, x : ndarray (m_c, Q), (m_c, D)
        Winning estimates (natural scale; estimation scale of the free columns).
    m2ll : ndarray (m_c,)
        -2 log L at the estimates, each subject evaluated without its other starts.
    m2ll_path : ndarray (m_c,)
        -2 log L of the optimiser's path at its estimate (before any polish).
    info : ndarray (m_c, D, D)
    predictions : list of ndarray
    nobs, before_zero : int ndarray (m_c,)
    success : bool ndarray (m_c,)
    messages, failures : list of str
    nfev, failed_evaluations, polish_evaluations : int ndarray (m_c,)
    starts_m2ll : ndarray (m_c, S)
    best_start : int ndarray (m_c,)
    counters : Counters
    seconds : float
    seconds_optimiser, seconds_polish : float
        Of ``seconds``: the optimiser on the configured path (all starts), and the polish
        on the exact path (or the evaluation of the winners without it).
    """

    theta: np.ndarray
    x: np.ndarray
    m2ll: np.ndarray
    m2ll_path: np.ndarray
    info: np.ndarray
    predictions: list
    nobs: np.ndarray
    before_zero: np.ndarray
    success: np.ndarray
    messages: list
    failures: list
    nfev: np.ndarray
    failed_evaluations: np.ndarray
    polish_evaluations: np.ndarray
    starts_m2ll: np.ndarray
    best_start: np.ndarray
    counters: Counters
    seconds: float
    seconds_optimiser: float = 0.0
    seconds_polish: float = 0.0


def fit_chunk(problem: Problem, designs, X0, options) -> ChunkFit:
    """Fit the subjects of one chunk from starting points ``X0`` (m_c, S, D)."""
    start = time.perf_counter()
    cols = problem.subject_cols
    m_c, S, D = X0.shape
    one = [np.zeros(1, dtype=int)] * D
    tasks = [Task(np.array([i]), problem.values[None].copy(), X0[i, s], cols, one, tag=(i, s))
             for i in range(m_c) for s in range(S)]
    counters = Counters()
    res = run_grouped(problem, designs, tasks, cols, options, counters,
                      on_done=lambda n: report(n / S))      # subjects, for the progress bar
    t_opt = time.perf_counter() - start
    m2ll = np.array([r.m2ll for r in res]).reshape(m_c, S)
    best = np.argmin(np.where(np.isfinite(m2ll), m2ll, np.inf), axis=1)
    pick = [res[i * S + best[i]] for i in range(m_c)]
    theta = np.vstack([r.theta for r in pick])
    x = np.vstack([r.x for r in pick])
    m2ll_path = np.array([r.m2ll for r in pick])
    polish = np.zeros(m_c, dtype=int)
    t_pol = time.perf_counter()
    # Evaluated again in one batch of the winners only: the starts of a subject never share
    # this evaluation, so the reported objective is the winner's own.
    if refines(problem):
        # the final iterations on the exact path; its last evaluation is the report
        # the grid path's derivatives at the winners give the first step (the first exact
        # evaluation then needs no sensitivities)
        hints = [r.jacobian for r in pick]
        # and the grid path's residuals there: the polish first takes that path's last
        # Gauss-Newton step, then chord steps (progression.fit._batched.polish)
        info0 = (np.stack([r.information for r in pick])
                 if all(r.information is not None for r in pick) and pick else None)
        theta, x, ev, polish = polish_rows(problem.exact_path(), designs, theta, x, cols,
                                           steps=POLISH_STEPS, ftol=POLISH_FTOL,
                                           counters=counters,
                                           start_jacobians=hints if info0 is not None
                                           else None, start_info=info0,
                                           start_residuals=[r.residuals for r in pick])
    else:
        ev = problem.evaluate(designs, np.arange(m_c), theta, cols, want_jac=False,
                              want_info=True, want_predictions=True)
    return ChunkFit(
        theta=theta, x=x, m2ll=ev.m2ll, m2ll_path=m2ll_path, info=ev.info,
        predictions=list(ev.predictions), nobs=np.asarray(ev.nobs),
        before_zero=np.asarray(ev.before_zero if ev.before_zero is not None
                               else np.zeros(m_c), dtype=int),
        success=np.array([r.success for r in pick]) & ~ev.failed,
        messages=[r.message for r in pick], failures=failure_reasons(pick, ev),
        nfev=np.array([r.nfev for r in pick]),
        failed_evaluations=np.array([r.failed_evaluations for r in pick]),
        polish_evaluations=polish, starts_m2ll=m2ll, best_start=best, counters=counters,
        seconds=time.perf_counter() - start, seconds_optimiser=t_opt,
        seconds_polish=time.perf_counter() - t_pol)


def _profile_chunk(problem: Problem, designs, theta_hat, x_hat, grids, covs, options):
    """Profiles of every estimated quantity of each subject of a chunk: (m2ll, counters)."""
    cols = problem.subject_cols
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    lo_x, hi_x = internal_bounds(sc, lo, hi)
    tasks = []
    for i in range(theta_hat.shape[0]):
        for j in range(len(cols)):
            keep = np.array([k for k in range(len(cols)) if k != j], dtype=int)
            for g, xv in enumerate(grids[i, j]):
                th = theta_hat[i:i + 1].copy()
                th[0, cols[j]] = from_internal(np.array([xv]), sc[j:j + 1], lo[j:j + 1],
                                               hi[j:j + 1])[0]
                x0 = conditional_start(x_hat[i], covs[i], j, xv, lo_x, hi_x)
                tasks.append(Task(np.array([i]), th, x0, cols[keep],
                                  [np.zeros(1, dtype=int)] * keep.size, tag=(i, j, g)))
    counters = Counters()
    per = len(tasks) / max(1, theta_hat.shape[0])
    res = run_grouped(problem, designs, tasks, cols, options, counters,
                      on_done=lambda n: report(n / per))    # subjects, for the progress bar
    out = np.full(grids.shape, np.nan)
    for r in res:
        i, j, g = r.tag
        out[i, j, g] = r.m2ll
    return out, counters


def _bootstrap_chunk(problem: Problem, designs, theta_hat, x_hat, preds, seeds, B, options):
    """Parametric bootstrap of each subject of a chunk: B refits from the estimate."""
    cols = problem.subject_cols
    reps, tasks = [], []
    for i, d in enumerate(designs):
        rng = np.random.default_rng(seeds[i])
        for k, rd in enumerate(simulate_replicates(problem, d, preds[i], theta_hat[i], rng, B)):
            tasks.append(Task(np.array([len(reps)]), theta_hat[i:i + 1].copy(), x_hat[i], cols,
                              [np.zeros(1, dtype=int)] * cols.size, tag=(i, k)))
            reps.append(rd)
    counters = Counters()
    res = run_grouped(problem, reps, tasks, cols, options, counters,
                      on_done=lambda n: report(n / max(1, B)))   # subjects, for the progress bar
    est = np.full((len(designs), B, cols.size), np.nan)
    for r in res:
        i, k = r.tag
        if np.isfinite(r.m2ll):
            est[i, k] = r.theta[0, cols]
    return est, counters


class Individual(Estimator):
    """Per-subject maximum likelihood (``[fit] estimator = "individual"``)."""

    name = "individual"
    description = "per-subject maximum likelihood"

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem, designs, opts = ep.problem, ep.designs, ep.options
        cols = problem.subject_cols
        if cols.size == 0:
            raise FitError(f"{ep.source}: an individual fit needs at least one parameter with "
                           "estimate = \"subject\"")
        m = len(designs)
        X0 = starting_points(problem, cols, m, opts.starts, opts.spread, opts.seed)
        size = opts.batch_size
        chunks = [(problem, designs[lo:lo + size], X0[lo:lo + size], opts)
                  for lo in range(0, m, size)]
        parts = map_subject_chunks(ep.executor, fit_chunk, chunks, f"fit {ep.name}", m,
                                   lambda c: c.theta.shape[0], ep.progress)
        for p in parts:
            ep.counters.merge(p.counters)
        # where the estimation's time went (summed over chunks: worker seconds when the
        # chunks ran in parallel)
        ep.timings["optimiser"] = float(sum(p.seconds_optimiser for p in parts))
        ep.timings["polish"] = float(sum(p.seconds_polish for p in parts))

        def cat(key):
            return np.concatenate([getattr(p, key) for p in parts])

        def join(key):
            return [v for p in parts for v in getattr(p, key)]

        x = cat("x")
        D = cols.size
        estimates = Estimates(theta=cat("theta"), x_hat=x.ravel(),
                              x_cols=np.tile(cols, m).astype(int),
                              x_rows=[np.array([i]) for i in range(m) for _ in range(D)])
        optimizer = opts.optimizer
        diag = Diagnostics(
            subject_objective=cat("m2ll"), n_obs=cat("nobs"), converged=cat("success"),
            messages=tuple(join("messages")), failures=tuple(join("failures")),
            nfev=cat("nfev"), starts_objective=cat("starts_m2ll"), best_start=cat("best_start"),
            before_zero=cat("before_zero"), numbers_from=numbers_from(problem),
            method=("Levenberg-Marquardt vectorised over subjects" if optimizer == "batched"
                    else "lmfit least_squares") + f", {jacobian_method(problem)}")
        return PointEstimate(estimates=estimates, diagnostics=diag,
                             predictions=join("predictions"), information=cat("info"),
                             path_objective=cat("m2ll_path"))

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        problem, designs = ep.problem, ep.designs
        cols = problem.subject_cols
        est = point.estimates
        m = est.theta.shape[0]
        x = est.x_hat.reshape(m, cols.size)
        t = time.perf_counter()
        step = per_subject_covariance(problem, designs, est.theta, x, point.information, cols,
                                      ep.confidence)
        ep.timings["covariance"] = time.perf_counter() - t
        intervals = {"covariance": step.interval}
        open_, warnings = {}, list(step.warnings)
        profiles = boot = None
        if "profile" in ep.uncertainty_methods:
            t = time.perf_counter()
            profiles, ci, op = self._profiles(ep, point, step.blocks, warnings)
            intervals["profile"], open_["profile"] = ci, op
            ep.timings["profile"] = time.perf_counter() - t
        if "bootstrap" in ep.uncertainty_methods:
            t = time.perf_counter()
            boot, ci = self._bootstrap(ep, point, warnings)
            intervals["bootstrap"] = ci
            ep.timings["bootstrap"] = time.perf_counter() - t
        return Uncertainty(se=step.se, intervals=intervals,
                           methods={k: INTERVAL_METHODS[k] for k in intervals},
                           open_intervals=open_, blocks=step.blocks, joint=False,
                           profiles=profiles, bootstrap=boot, warnings=tuple(warnings))

    def _profiles(self, ep, point, blocks, warnings):
        problem, designs, opts = ep.problem, ep.designs, ep.options
        conf, n = ep.confidence, opts.profile_points
        est = point.estimates
        m, Q = est.theta.shape
        cols = problem.subject_cols
        D = cols.size
        x = est.x_hat.reshape(m, D)
        sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
        grids = np.zeros((m, D, n))
        for i in range(m):
            se_x = np.sqrt(np.abs(np.diag(blocks[i][1])))
            for j in range(D):
                grids[i, j] = profile_grid(x[i, j], se_x[j], sc[j:j + 1], lo[j:j + 1],
                                           hi[j:j + 1], n)
        size = opts.batch_size
        covs = [b[1] for b in blocks]
        chunks = [(problem, designs[a:a + size], est.theta[a:a + size], x[a:a + size],
                   grids[a:a + size], covs[a:a + size], opts) for a in range(0, m, size)]
        parts = map_subject_chunks(ep.executor, _profile_chunk, chunks, f"profiles {ep.name}",
                                   m, lambda out: out[0].shape[0], ep.progress)
        prof = np.concatenate([p[0] for p in parts])
        for p in parts:
            ep.counters.merge(p[1])
        ci = np.full((m, Q, 2), np.nan)
        open_ = np.zeros((m, Q, 2), dtype=bool)
        lo_x, hi_x = internal_bounds(sc, lo, hi)
        for i in range(m):
            for j in range(D):
                a, b, oa, ob = profile_interval(x[i, j], point.path_objective[i], grids[i, j],
                                                prof[i, j], conf, lo_x[j], hi_x[j])
                ci[i, cols[j]] = from_internal(np.array([a, b]), sc[j], lo[j], hi[j])
                open_[i, cols[j]] = (oa, ob)
        values = from_internal(grids, sc[None, :, None], lo[None, :, None], hi[None, :, None])
        flat = open_[:, cols].any(axis=2)
        for j in range(D):
            nflat = int(flat[:, j].sum())
            if nflat:
                warnings.append(
                    f"{problem.names[cols[j]]}: flat profile likelihood (the {100 * conf:g}% "
                    f"interval reaches a bound or the edge of the profile) in {nflat}/{m} "
                    "subjects: practically non-identifiable there")
        return Profiles(cols=cols, values=values, m2ll=prof, joint=False), ci, open_

    def _bootstrap(self, ep, point, warnings):
        problem, designs, opts = ep.problem, ep.designs, ep.options
        B, seed = opts.bootstrap_samples, opts.seed
        est = point.estimates
        m, Q = est.theta.shape
        cols = problem.subject_cols
        x = est.x_hat.reshape(m, cols.size)
        size = opts.batch_size
        seeds = [[seed, 7, i] for i in range(m)]
        chunks = [(problem, designs[a:a + size], est.theta[a:a + size], x[a:a + size],
                   point.predictions[a:a + size], seeds[a:a + size], B, opts)
                  for a in range(0, m, size)]
        parts = map_subject_chunks(ep.executor, _bootstrap_chunk, chunks,
                                   f"bootstrap {ep.name}", m, lambda out: out[0].shape[0],
                                   ep.progress)
        draws = np.concatenate([p[0] for p in parts])               # (m, B, D)
        for p in parts:
            ep.counters.merge(p[1])
        ci = np.full((m, Q, 2), np.nan)
        a, b = percentile_interval(np.moveaxis(draws, 1, 2), ep.confidence)   # (m, D)
        ci[:, cols, 0], ci[:, cols, 1] = a, b
        failed = int(np.isnan(draws[:, :, 0]).sum())
        if failed:
            warnings.append(f"bootstrap: {failed} refits failed and were left out")
        return BootstrapDraws(cols=cols, estimates=draws), ci

