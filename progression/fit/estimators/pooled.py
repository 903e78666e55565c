"""The ``pooled`` estimator: shared quantities and every subject's free quantities in one
least-squares problem (a stacked residual vector; the Jacobian assembled from each subject's
sensitivities).

Uncertainty: one joint covariance of every estimated entry ("observed information"), profile
likelihoods of the shared quantities, parametric bootstrap of the whole data set (every subject
redrawn, the joint problem refitted).
"""

from __future__ import annotations

import time

import numpy as np

from ...parallel import Progress
from .._multistart import (
    POLISH_FTOL,
    POLISH_NFEV,
    few,
    jacobian_method,
    numbers_from,
    refines,
    simulate_replicates,
    starting_points,
)
from .._uncertainty_steps import joint_covariance
from ..optimize import Task, run_tasks
from ..parts import (
    INTERVAL_METHODS,
    BootstrapDraws,
    Diagnostics,
    Estimates,
    Profiles,
    Uncertainty,
)
from ..transforms import from_internal, internal_bounds
from ..uncertainty import (
    conditional_start,
    percentile_interval,
    profile_grid,
    profile_interval,
)
from .base import EstimationProblem, Estimator, PointEstimate

__all__ = ["Pooled", "pooled_layout"]


def pooled_layout(problem, m):
    """(x_cols, x_rows) of the joint vector: the shared entries, then each subject's."""
    x_cols, x_rows = [], []
    for c in problem.shared_cols:
        x_cols.append(c)
        x_rows.append(np.arange(m))
    for i in range(m):
        for c in problem.subject_cols:
            x_cols.append(c)
            x_rows.append(np.array([i]))
    return np.array(x_cols, dtype=int), x_rows


def _cols(problem):
    """The columns the joint problem differentiates: shared, then per-subject."""
    return np.concatenate([problem.shared_cols, problem.subject_cols]).astype(int)


class Pooled(Estimator):
    """Joint maximum likelihood of shared and per-subject quantities
    (``[fit] estimator = "pooled"``)."""

    name = "pooled"
    description = "joint maximum likelihood of shared and per-subject quantities"

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem, designs, opts = ep.problem, ep.designs, ep.options
        m = len(designs)
        cols = _cols(problem)
        x_cols, x_rows = pooled_layout(problem, m)
        S = opts.starts
        Xs = starting_points(problem, problem.shared_cols, 1, S, opts.spread, opts.seed)[0]
        Xi = starting_points(problem, problem.subject_cols, m, S, opts.spread, opts.seed + 1)
        tasks = [Task(np.arange(m), np.repeat(problem.values[None], m, axis=0),
                      np.concatenate([Xs[s], Xi[:, s, :].ravel()]), x_cols, x_rows, tag=(s,))
                 for s in range(S)]
        bar = Progress(f"fit {ep.name} (pooled)", S, unit="starts", enabled=ep.progress)
        res = run_tasks(problem, designs, tasks, cols, opts, counters=ep.counters,
                        on_done=bar.update)
        bar.close()
        m2ll = np.array([r.m2ll for r in res])
        best = int(np.argmin(np.where(np.isfinite(m2ll), m2ll, np.inf)))
        r = res[best]
        theta, x_hat = r.theta, r.x
        final = problem
        if refines(problem) and np.isfinite(r.m2ll):
            final = problem.exact_path()
            task = Task(np.arange(m), r.theta.copy(), r.x, x_cols, x_rows, tag=(best,))
            opts_p = opts.replace(max_nfev=POLISH_NFEV, ftol=POLISH_FTOL)
            polished = run_tasks(final, designs, [task], cols, opts_p, counters=ep.counters)[0]
            if np.isfinite(polished.m2ll):
                theta, x_hat = polished.theta, polished.x
        ev = final.evaluate(designs, np.arange(m), theta, cols, want_jac=False,
                            want_info=True, want_predictions=True)
        ok = bool(r.success) and not ev.failed.any()
        if ok:
            failure = [""] * m
        elif ev.failed.any():
            # the joint estimate is unusable for everyone; name the subjects whose own
            # simulation failed (they are listed first in the error)
            own = [designs[i].id for i in np.nonzero(ev.failed)[0]]
            failure = [f"the simulation failed at every point tried (pooled fit): "
                       f"{ev.messages[i]}" if ev.failed[i] else
                       f"the pooled fit failed because the simulation of {few(own)} failed"
                       for i in range(m)]
        else:
            failure = [f"the pooled fit did not converge: {r.message}"] * m
        diag = Diagnostics(
            subject_objective=ev.m2ll, n_obs=np.asarray(ev.nobs), converged=np.full(m, ok),
            messages=(r.message,) * m, failures=tuple(failure), nfev=np.full(m, r.nfev),
            starts_objective=np.repeat(m2ll[None], m, axis=0), best_start=np.full(m, best),
            before_zero=np.asarray(ev.before_zero if ev.before_zero is not None
                                   else np.zeros(m), dtype=int),
            numbers_from=numbers_from(problem),
            method=f"lmfit least_squares, {jacobian_method(problem)}")
        return PointEstimate(
            estimates=Estimates(theta=theta, x_hat=np.asarray(x_hat, dtype=float),
                                x_cols=x_cols, x_rows=x_rows),
            diagnostics=diag, predictions=list(ev.predictions), information=ev.info,
            path_objective=np.array([r.m2ll]))

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        problem, designs = ep.problem, ep.designs
        est = point.estimates
        t = time.perf_counter()
        step = joint_covariance(problem, designs, est.theta, est.x_hat, est.x_cols, est.x_rows,
                                point.information, _cols(problem), ep.confidence)
        ep.timings["covariance"] = time.perf_counter() - t
        intervals = {"covariance": step.interval}
        open_, warnings = {}, list(step.warnings)
        profiles = boot = None
        if "profile" in ep.uncertainty_methods:
            t = time.perf_counter()
            out = self._profiles(ep, point, step.blocks[0][1], warnings)
            if out is not None:
                profiles, intervals["profile"], open_["profile"] = out
            ep.timings["profile"] = time.perf_counter() - t
        if "bootstrap" in ep.uncertainty_methods:
            t = time.perf_counter()
            boot, intervals["bootstrap"] = self._bootstrap(ep, point, warnings)
            ep.timings["bootstrap"] = time.perf_counter() - t
        return Uncertainty(se=step.se, intervals=intervals,
                           methods={k: INTERVAL_METHODS[k] for k in intervals},
                           open_intervals=open_, blocks=step.blocks, joint=True,
                           profiles=profiles, bootstrap=boot, warnings=tuple(warnings))

    def _profiles(self, ep, point, cov_all, warnings):
        problem, designs, opts = ep.problem, ep.designs, ep.options
        conf, n = ep.confidence, opts.profile_points
        shared = problem.shared_cols
        if shared.size == 0:
            warnings.append("profiles of a pooled fit are computed for shared parameters "
                            "only; there are none")
            return None
        est = point.estimates
        m, Q = est.theta.shape
        x_cols, x_rows, x_hat = est.x_cols, est.x_rows, est.x_hat
        lo_all, hi_all = internal_bounds(problem.scale[x_cols], problem.lower[x_cols],
                                         problem.upper[x_cols])
        tasks, grids = [], []
        for j, c in enumerate(shared):
            g = profile_grid(x_hat[j], np.sqrt(abs(cov_all[j, j])), problem.scale[c:c + 1],
                             problem.lower[c:c + 1], problem.upper[c:c + 1], n)
            grids.append(g)
            keep = np.array([k for k in range(x_cols.size) if k != j], dtype=int)
            for gi, xv in enumerate(g):
                th = est.theta.copy()
                th[:, c] = from_internal(np.array([xv]), problem.scale[c:c + 1],
                                         problem.lower[c:c + 1], problem.upper[c:c + 1])[0]
                x0 = conditional_start(x_hat, cov_all, j, xv, lo_all, hi_all)
                tasks.append(Task(np.arange(m), th, x0, x_cols[keep],
                                  [x_rows[k] for k in keep], tag=(j, gi)))
        bar = Progress(f"profiles {ep.name}", len(tasks), unit="points", enabled=ep.progress)
        res = run_tasks(problem, designs, tasks, _cols(problem), opts, counters=ep.counters,
                        on_done=bar.update)
        bar.close()
        prof = np.full((shared.size, n), np.nan)
        for r in res:
            prof[r.tag] = r.m2ll
        # the minimum on the path the profiles run on (the grid path when polished)
        total = float(point.path_objective[0])
        grids = np.array(grids)
        ci = np.full((m, Q, 2), np.nan)
        open_ = np.zeros((m, Q, 2), dtype=bool)
        for j, c in enumerate(shared):
            sc, lo, hi = problem.scale[c:c + 1], problem.lower[c:c + 1], problem.upper[c:c + 1]
            lo_x, hi_x = internal_bounds(sc, lo, hi)
            a, b, oa, ob = profile_interval(x_hat[j], total, grids[j], prof[j], conf, lo_x[0],
                                            hi_x[0])
            ci[:, c] = from_internal(np.array([a, b]), sc[0], lo[0], hi[0])
            open_[:, c] = (oa, ob)
            if oa or ob:
                warnings.append(f"{problem.names[c]}: flat profile likelihood (interval "
                                "open on one side): practically non-identifiable")
        values = np.array([from_internal(grids[j], problem.scale[c], problem.lower[c],
                                         problem.upper[c]) for j, c in enumerate(shared)])
        return (Profiles(cols=shared, values=values[None], m2ll=prof[None], joint=True), ci,
                open_)

    def _bootstrap(self, ep, point, warnings):
        problem, designs, opts = ep.problem, ep.designs, ep.options
        B, seed = opts.bootstrap_samples, opts.seed
        est = point.estimates
        m, Q = est.theta.shape
        cols = _cols(problem)
        rng = np.random.default_rng([seed, 7])
        reps_all = list(designs)
        per_subject = [simulate_replicates(problem, d, point.predictions[i], est.theta[i], rng,
                                           B) for i, d in enumerate(designs)]
        tasks = []
        for k in range(B):
            idx = np.arange(len(reps_all), len(reps_all) + m)
            reps_all += [per_subject[i][k] for i in range(m)]
            tasks.append(Task(idx, est.theta.copy(), est.x_hat, est.x_cols, est.x_rows,
                              tag=(k,)))
        bar = Progress(f"bootstrap {ep.name}", B, unit="replicates", enabled=ep.progress)
        res = run_tasks(problem, reps_all, tasks, cols, opts, counters=ep.counters,
                        on_done=bar.update)
        bar.close()
        draws = np.full((m, B, Q), np.nan)
        for r in res:
            if np.isfinite(r.m2ll):
                draws[:, r.tag[0], :] = r.theta
        ci = np.full((m, Q, 2), np.nan)
        a, b = percentile_interval(np.moveaxis(draws, 1, 2), ep.confidence)   # (m, Q)
        ci[:, cols, 0], ci[:, cols, 1] = a[:, cols], b[:, cols]
        failed = int(np.isnan(draws[0, :, 0]).sum())
        if failed:
            warnings.append(f"bootstrap: {failed} refits failed and were left out")
        return BootstrapDraws(cols=cols, estimates=draws[:, :, cols]), ci
