"""Levenberg-Marquardt for many small least-squares problems at once, vectorised over tasks.

Per-subject fits (and their profile points and bootstrap replicates) are hundreds of
independent problems with a handful of unknowns each. Running each through its own optimiser
object costs more in Python bookkeeping than the model costs to simulate; here every task's
step is computed together: one batched :meth:`Problem.evaluate` (one simulation of every live
task) per iteration, then ``(J^T J + lambda diag(J^T J)) delta = -J^T r`` solved for all tasks
with one stacked ``numpy.linalg.solve``.

The method per task is Levenberg-Marquardt on the expected (Fisher) information rather than
J^T J (the same for the mean parameters, twice as curved, and right, for error parameters),
with Marquardt's diagonal scaling and Nielsen's damping update, bounds handled by projection
(a component at a bound whose gradient points outwards is held for that step), and
MINPACK-style stopping rules:

* ``ftol``: an accepted step reduced the sum of squares by less than ``ftol`` times its value;
* ``xtol``: the step is shorter than ``xtol * (xtol + |x|)``;
* ``gtol``: the largest cosine between the residual vector and a free Jacobian column is below
  ``gtol``;
* ``max_nfev`` evaluations.

A failed simulation at a trial point counts as an infinite sum of squares (the step is
rejected and the damping raised), never as an error.
"""

from __future__ import annotations

import time

import numpy as np

# the polish (moved unchanged to _batched_polish.py), re-exported: callers and tests use
# progression.fit._batched.polish and its constants
from ._batched_polish import (  # noqa: F401
    _HINT_CONDITION,
    _HINT_DAMPING,
    _LAMBDA_MAX,
    CHORD_AGREE,
    CHORD_STEPS,
    polish,
)
from .transforms import from_internal, internal_bounds, to_internal

__all__ = ["run_batched", "supports", "polish", "CHORD_STEPS", "CHORD_AGREE"]

def supports(tasks, cols) -> bool:
    """True when every task fits one design and estimates only columns in ``cols``."""
    colset = {int(c) for c in cols}
    return all(len(t.designs) == 1 and {int(c) for c in t.x_cols} <= colset for t in tasks)


def run_batched(problem, designs, tasks, cols, options, *, counters, on_done=None):
    """Run single-design tasks together; returns one TaskResult per task, in order."""
    from .optimize import TaskResult

    cols = np.asarray(cols, dtype=int)
    T, D = len(tasks), cols.size
    pos = {int(c): i for i, c in enumerate(cols)}
    design_of = np.array([int(t.designs[0]) for t in tasks], dtype=int)
    theta0 = np.vstack([t.theta[0] for t in tasks])                       # (T, Q)
    sc, lo_n, hi_n = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    lo_x, hi_x = internal_bounds(sc, lo_n, hi_n)
    free = np.zeros((T, D), dtype=bool)
    with np.errstate(all="ignore"):
        X = to_internal(theta0[:, cols], sc, lo_n, hi_n)
    for i, t in enumerate(tasks):
        for k, c in enumerate(t.x_cols):
            free[i, pos[int(c)]] = True
            X[i, pos[int(c)]] = t.x0[k]
    X = np.where(free, np.clip(X, lo_x, hi_x), X)

    ftol, xtol = float(options.ftol), float(options.xtol)
    gtol, max_nfev = float(options.gtol), int(options.max_nfev)

    def evaluate(idx, Xs, width=0):
        """Residuals and Jacobians of tasks ``idx`` at ``Xs``, zero-padded to at least
        ``width`` entries (a task's residual count never changes, so one width serves all)."""
        theta = theta0[idx].copy()
        with np.errstate(all="ignore"):
            values = from_internal(Xs, sc, lo_n, hi_n)
        theta[:, cols] = np.where(free[idx], values, theta[:, cols])
        start = time.perf_counter()
        ev = problem.evaluate(designs, design_of[idx], theta, cols, want_info=True,
                              accurate=False)
        counters.record(ev, time.perf_counter() - start)
        sizes = np.array([len(r) for r in ev.residuals], dtype=int)
        N = max(width, int(sizes.max()))
        R = np.zeros((len(idx), N))
        J = np.zeros((len(idx), N, D))
        # every row's residuals and Jacobian into its zero-padded slots at once (a copy per
        # row costs ~5 us; the values are the same)
        at_row = np.repeat(np.arange(len(idx)), sizes)
        at_col = np.arange(at_row.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        R[at_row, at_col] = np.concatenate(ev.residuals)
        J[at_row, at_col] = np.concatenate(ev.jacobians).reshape(-1, D)
        J *= free[idx][:, None, :]
        sse = np.where(ev.failed, np.inf, np.einsum("bn,bn->b", R, R))
        # The relative tolerances refer to the data part of the sum of squares (about the
        # number of observations at the optimum), not to the sigma residuals' constant C.
        chi2 = np.array([float(r[:n] @ r[:n]) for r, n in zip(ev.residuals, ev.nobs,
                                                                  strict=True)])
        info = np.where(np.isfinite(ev.info), ev.info, 0.0) * (free[idx][:, :, None]
                                                                  & free[idx][:, None, :])
        # the first reason each task's simulation failed, to name it if the task never
        # reaches a finite objective
        for b in np.nonzero(ev.failed)[0]:
            if not reason[idx[b]]:
                reason[idx[b]] = ev.messages[b] or "non-finite residuals"
        return theta, R, J, sse, ev.m2ll, np.maximum(chi2, 1.0), info, sizes

    reason = [""] * T

    idx = np.arange(T)
    theta, R, J, sse, m2ll, scale, info, n_res = evaluate(idx, X)
    nfev = np.ones(T, dtype=int)
    failed_evals = (~np.isfinite(sse)).astype(int)
    lam = np.full(T, 1e-3)
    nu = np.full(T, 2.0)
    done = ~np.isfinite(sse)
    success = np.zeros(T, dtype=bool)
    message = [f"the simulation failed at the starting point: {reason[i]}" for i in range(T)]
    finished = int(done.sum())
    if on_done is not None and finished:
        on_done(finished)

    # Every task's current point (rows updated in place when a step is accepted).
    cur_R, cur_J, cur_info, cur_theta, cur_m2ll = R, J, info, theta, m2ll.copy()
    width = R.shape[1]

    def finish(i, ok, text):
        nonlocal finished
        done[i] = True
        success[i] = ok
        message[i] = text
        finished += 1
        if on_done is not None:
            on_done(finished)

    while True:
        live = np.nonzero(~done)[0]
        if live.size == 0:
            break
        Jl, Rl = cur_J[live], cur_R[live]
        x = X[live]
        JtJ = np.einsum("bnk,bnl->bkl", Jl, Jl)
        # Fisher scoring: the expected information instead of J^T J. The two agree for the
        # mean parameters; for error parameters J^T J holds about half the curvature of
        # -2 log L (errormodels), and Gauss-Newton steps in them overshoot and oscillate.
        H = cur_info[live]
        g = np.einsum("bnk,bn->bk", Jl, Rl)
        # gtol: largest |cos| between the residuals and a free, unblocked Jacobian column
        at_lo = free[live] & (x <= lo_x) & (g > 0)
        at_hi = free[live] & (x >= hi_x) & (g < 0)
        held = ~free[live] | at_lo | at_hi
        col_norm = np.sqrt(np.einsum("bkk->bk", JtJ))
        r_norm = np.sqrt(sse[live])
        with np.errstate(all="ignore"):
            cosine = np.where(held | (col_norm == 0), 0.0,
                              np.abs(g) / (col_norm * r_norm[:, None]))
        small_g = np.nanmax(cosine, axis=1) <= gtol
        for b in np.nonzero(small_g | (r_norm == 0))[0]:
            finish(live[b], True, "the gradient is below gtol")
        keep = ~(small_g | (r_norm == 0))
        if not keep.any():
            continue
        live, x, H, g, held = live[keep], x[keep], H[keep], g[keep], held[keep]
        delta, gn_pred = _steps(H, g, held, lam[live])
        # ftol on the Gauss-Newton model: the undamped step could not reduce the sum of
        # squares by more than ftol of its value (MINPACK's predicted-reduction test; it stops
        # a task at its optimum without chasing integration noise with ever shorter steps)
        flat = np.isfinite(gn_pred) & (gn_pred <= ftol * scale[live])
        for b in np.nonzero(flat)[0]:
            finish(live[b], True, "the predicted reduction of the sum of squares is below "
                                  "ftol")
        if flat.all():
            continue
        keep = ~flat
        live, x, H, g, delta = live[keep], x[keep], H[keep], g[keep], delta[keep]
        x_new = np.where(free[live], np.clip(x + delta, lo_x, hi_x), x)
        step = x_new - x
        predicted = -(2.0 * np.einsum("bk,bk->b", g, step)
                      + np.einsum("bk,bkl,bl->b", step, H, step))
        theta_n, R_n, J_n, sse_n, m2ll_n, scale_n, info_n, n_res_n = evaluate(live, x_new,
                                                                               width)
        nfev[live] += 1
        failed_evals[live] += (~np.isfinite(sse_n)).astype(int)
        with np.errstate(all="ignore"):
            rho = (sse[live] - sse_n) / predicted
        accept = np.isfinite(sse_n) & (sse_n < sse[live]) & (predicted > 0) & (rho > 1e-4)
        step_norm = np.linalg.norm(step, axis=1)
        x_norm = np.linalg.norm(x, axis=1)
        # accepted steps: the rows' new points, at once (row by row cost ~10 us a row)
        ab = np.nonzero(accept)[0]
        a = live[ab]
        reduction = sse[a] - sse_n[ab]
        X[a] = x_new[ab]
        sse[a], scale[a] = sse_n[ab], scale_n[ab]
        cur_R[a], cur_J[a], cur_info[a] = R_n[ab], J_n[ab], info_n[ab]
        cur_theta[a], cur_m2ll[a] = theta_n[ab], m2ll_n[ab]
        n_res[a] = n_res_n[ab]
        # (Python floats: the same pow() as a loop over rows)
        lam[a] *= [max(1.0 / 3.0, 1.0 - (2.0 * r - 1.0) ** 3) for r in rho[ab].tolist()]
        nu[a] = 2.0
        rb = live[~accept]
        lam[rb] *= nu[rb]
        nu[rb] *= 2.0
        small_reduction = np.zeros(live.size, dtype=bool)
        small_reduction[ab] = reduction <= ftol * scale[a]
        short = step_norm <= xtol * (xtol + x_norm)
        stop = (small_reduction | short | (nfev[live] >= max_nfev)
                | (lam[live] > _LAMBDA_MAX))
        for b in np.nonzero(stop)[0]:
            i = live[b]
            if small_reduction[b]:
                finish(i, True, "the relative reduction of the sum of squares is below "
                                "ftol")
            elif short[b]:
                finish(i, True, "the step is below xtol")
            elif nfev[i] >= max_nfev:
                finish(i, False, f"max_nfev ({max_nfev}) evaluations reached")
            else:
                finish(i, False, "no decrease found along the gradient (damping exhausted)")

    out = []
    ks = {}
    for i, t in enumerate(tasks):
        key = tuple(int(c) for c in t.x_cols)
        if key not in ks:
            ks[key] = np.array([pos[c] for c in key], dtype=int)
        k = ks[key]
        x_task = X[i, k].astype(float)
        ok = bool(success[i]) and np.isfinite(cur_m2ll[i])
        text = message[i]
        if not np.isfinite(cur_m2ll[i]) and "failed" not in text:
            ok, text = False, (f"the simulation failed at every point tried: {reason[i]} "
                               f"(optimiser: {text})")
        # the path's derivatives at the final point, for a polish on another path
        out.append(TaskResult(x_task, cur_theta[i][None].copy(), float(cur_m2ll[i]), ok, text,
                              int(nfev[i]), int(failed_evals[i]), t.tag,
                              jacobian=cur_J[i, :n_res[i]][:, k].copy(),
                              information=cur_info[i][k][:, k],
                              residuals=cur_R[i, :n_res[i]].copy()))
    return out


def _steps(H, g, held, lam):
    """Damped and undamped steps for a stack of tasks.

    Solves ``(H + lam diag(H)) delta = -g`` with held components fixed (identity rows, zero
    gradient) and returns ``delta`` (B, D) and the reduction of the sum of squares that the
    undamped (Gauss-Newton / Fisher-scoring) step predicts, ``g^T H^-1 g`` (B,).
    """
    D = H.shape[1]
    eye = np.eye(D)[None]
    diag = np.einsum("bkk->bk", H).copy()
    diag = np.maximum(diag, 1e-12 * np.maximum(diag.max(axis=1, keepdims=True), 1e-300))
    hold2 = held[:, :, None] | held[:, None, :]
    gg = np.where(held, 0.0, g)

    def solve(damping):
        A = H + damping[:, None, None] * diag[:, :, None] * eye
        A = np.where(hold2, 0.0, A) + held[:, :, None] * eye
        with np.errstate(all="ignore"):
            try:
                return np.linalg.solve(A, -gg[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                return np.stack([np.linalg.lstsq(a, -b, rcond=None)[0]
                                 for a, b in zip(A, gg, strict=True)])

    delta = solve(lam)
    gn = solve(np.full(lam.shape, 1e-10))
    with np.errstate(all="ignore"):
        gn_pred = -np.einsum("bk,bk->b", gg, gn)
    return delta, np.where(np.isfinite(gn_pred), gn_pred, np.inf)
