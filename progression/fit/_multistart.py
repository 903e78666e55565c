"""Pieces every estimator uses: starting points, grouped lock-step runs, the exact-path
polish settings, failure reasons, fanning subject chunks out to an executor, and parametric
replicates of a subject's data.

Multi-start: start 1 is the configured initial values, the others are drawn (seeded) uniformly
over the bounds on the estimation scale (``spread = "bounds"``) or normally around the initial
values (``spread = SD``); the best objective wins.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..parallel import Progress, map_items
from .optimize import run_tasks
from .problem import Design, Problem
from .transforms import internal_bounds, to_internal

__all__ = ["starting_points", "run_grouped", "jacobian_method", "refines", "numbers_from",
           "failure_reasons", "map_subject_chunks", "simulate_replicates", "few", "MAX_ROWS",
           "POLISH_STEPS", "POLISH_FTOL", "POLISH_NFEV"]

#: Most rows simulated together in one lock-step group (memory bound; the cost of a batched
#: simulation grows much more slowly than its number of rows).
MAX_ROWS = 1000

#: Gauss-Newton steps of the polish on the exact path: from the grid-path estimate one or two
#: bring a subject to the exact path's optimum; a third is rarely taken.
POLISH_STEPS = 3
#: The polish stops when a step predicts a reduction of the sum of squares below this share of
#: it (tight, because the exact path has no interpolation error to chase), and its pooled
#: variant (lmfit) may make this many evaluations.
POLISH_FTOL = 1e-10
POLISH_NFEV = 5


def few(items, n=5) -> str:
    """The first ``n`` items joined by commas, and how many more there are."""
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def starting_points(problem: Problem, cols, m: int, starts: int, spread, seed: int):
    """(m, starts, D) starting points on the estimation scale; start 0 is the initial values."""
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x0 = to_internal(problem.values[cols], sc, lo, hi)
    lo_x, hi_x = internal_bounds(sc, lo, hi)
    X = np.repeat(x0[None, None, :], m, axis=0).repeat(starts, axis=1)
    if starts > 1:
        rng = np.random.default_rng(seed)
        u = rng.random((m, starts - 1, len(cols)))
        if spread == "bounds":
            # uniform on the estimation scale; logit: uniform over the natural range
            nat = lo + u * (hi - lo)
            fin = np.isfinite(lo_x) & np.isfinite(hi_x)
            with np.errstate(invalid="ignore"):     # inf - inf where a bound is infinite
                draw = np.where(fin, lo_x + u * (hi_x - lo_x), to_internal(nat, sc, lo, hi))
            bad = ~np.isfinite(draw)
            draw[bad] = np.broadcast_to(x0, draw.shape)[bad]
        else:
            z = np.sqrt(2.0) * _erfinv(2 * u - 1)
            draw = np.clip(x0 + float(spread) * z, lo_x, hi_x)
        X[:, 1:, :] = draw
    return X


def _erfinv(x):
    from scipy.special import erfinv

    return erfinv(np.clip(x, -1 + 1e-12, 1 - 1e-12))


def run_grouped(problem, designs, tasks, cols, options, counters, on_done=None):
    """:func:`~progression.fit.optimize.run_tasks` over groups of at most ``MAX_ROWS`` tasks
    (or one chunk's subjects x starts, if more), so memory stays bounded."""
    size = max(MAX_ROWS, int(options.batch_size) * int(options.starts))
    out = []
    for lo in range(0, len(tasks), size):
        cb = (lambda n, base=lo: on_done(base + n)) if on_done else None
        out.extend(run_tasks(problem, designs, tasks[lo:lo + size], cols, options,
                             counters=counters, on_done=cb))
    return out


def refines(problem) -> bool:
    """True when grid-path estimates are to be polished on the exact path (``[solver] refine =
    "exact"``, the default, and the fit does not already run on it)."""
    return problem.solver.get("refine", "exact") == "exact" and not problem.exact


def numbers_from(problem) -> str:
    """Which path produced the reported estimates, objective and covariance, in words."""
    if problem.exact:
        return "estimates, objective and covariance: exact outputs, forward sensitivities"
    if refines(problem):
        return (f"estimates optimised on {problem.path_name()}, then polished on the exact "
                "path; objective and covariance: exact outputs, forward sensitivities "
                "([solver] refine = \"exact\"; a subject whose information is well "
                "conditioned ends by chord steps: exact outputs with the Jacobian and "
                "information of the configured path at its optimum)")
    return (f"estimates, objective and covariance: {problem.path_name()} ([solver] refine = "
            "\"none\": not re-evaluated on the exact path)")


def jacobian_method(problem) -> str:
    """How the optimiser's Jacobian is computed on ``problem``'s path, in words."""
    if (problem.exact or problem.solver.get("sensitivities", "grid") == "forward"
            or getattr(problem, "all_inputs", False)):
        return "Jacobian from forward sensitivities"
    if getattr(problem, "has_inputs", False):
        return ("Jacobian from sensitivities on the output grid (forward sensitivities for "
                "rows with doses, covariates or condition inputs)")
    return "Jacobian from sensitivities on the output grid"


def failure_reasons(results, ev) -> list[str]:
    """Per row: why it failed ("" for a converged row), from the optimiser's result and the
    evaluation at the chosen point."""
    out = []
    for r, failed, msg in zip(results, ev.failed, ev.messages, strict=True):
        if failed and "simulation failed" in r.message:
            out.append(r.message)
        elif failed:
            out.append(f"the simulation failed at the estimate: {msg}")
        elif not r.success:
            out.append(f"the optimiser did not converge: {r.message}")
        else:
            out.append("")
    return out


def map_subject_chunks(ex, func, chunks, label, m, rows, progress):
    """Run ``func`` over chunks of subjects through executor ``ex``; ``rows(out)`` is the
    number of subjects a chunk's output covers (for the progress bar)."""
    bar = Progress(label, m, enabled=progress)
    done = [0]

    def on_chunk(_, out):
        done[0] += rows(out)
        bar.update(done[0])

    parts = map_items(ex, func, chunks, progress=on_chunk, partial=bar.partial)
    bar.close()
    return parts


def simulate_replicates(problem: Problem, design: Design, pred, theta, rng, B):
    """B replicate designs whose values are drawn from the error model at the predictions
    (censoring re-applied at each row's limit)."""
    oi = design.obs
    code = problem.codes[oi]
    a = np.where(problem.a_index[oi] >= 0, theta[np.maximum(problem.a_index[oi], 0)], 0.0)
    b = np.where(problem.b_index[oi] >= 0, theta[np.maximum(problem.b_index[oi], 0)], 0.0)
    f = pred
    eps = rng.standard_normal((B, f.size))
    sig = np.where(code == 1, b * np.abs(f), np.where(code == 2, np.sqrt(a * a + b * b * f * f),
                                                       a))
    y = np.where(code == 3, f * np.exp(sig * eps), f + sig * eps)
    reps = []
    for k in range(B):
        vals = y[k].copy()
        lim = design.limit
        below = (design.cens == 1) & (vals < lim)
        above = (design.cens == -1) & (vals > lim)
        cens = np.where(below, 1, np.where(above, -1, 0)).astype(int)
        vals = np.where(cens != 0, lim, vals)
        limit = np.where(cens != 0, lim, np.nan)
        # replace, not a new Design: whatever else a design carries (doses) is kept
        reps.append(dataclasses.replace(design, value=vals, cens=cens, limit=limit))
    return reps
