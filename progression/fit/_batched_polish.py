"""The polish of :mod:`progression.fit._batched`: Levenberg-Marquardt on a given path for
every row at once from nearby points (the final iterations on the exact path after the batched
optimiser on the grid path), with the grid path's derivatives as a hint and chord steps.

Split from ``_batched.py`` (moved unchanged); ``_batched`` re-exports :func:`polish` and the
constants, so ``progression.fit._batched.polish`` is still the name to use.
"""

from __future__ import annotations

import time

import numpy as np

from ._paths import exact_rows_by_dop853
from .transforms import from_internal, internal_bounds

__all__ = ["polish", "CHORD_STEPS", "CHORD_AGREE"]

#: Damping beyond which a task is declared stuck (no decrease found at any step length).
_LAMBDA_MAX = 1e16

#: Damping of the polish's first step from another path's derivatives: close to Gauss-Newton
#: (a damping of 1e-3 shortens the step along a direction whose curvature is 1e-2 of the
#: diagonal by 10%, and the row needs another evaluation), yet finite along directions the
#: data do not determine (such a step that does not lower -2 log L is undone).
_HINT_DAMPING = 1e-6

#: Smallest eigenvalue, relative to the largest, of a row's information scaled to a unit
#: diagonal for the polish to take its first step from another path's derivatives. In a
#: direction the data determine poorly (a flat, possibly curved valley) that step's error, the
#: derivatives' relative error times the step, is not small, and the row would stop elsewhere
#: along the valley than the exact path's own steps take it (measured on the shipped
#: ``als_synthetic_individual`` fit, most of whose information matrices are singular: one
#: subject 2.4e-4 higher in -2 log L); such rows take the exact path's steps from their start.
#: fit_individual's rows (kA, eD, time offset) have 0.013-0.03.
_HINT_CONDITION = 1e-3

#: Chord steps of the polish (:func:`polish` with a hint): evaluations without sensitivities
#: per row, each a Gauss-Newton step with the hint's Jacobian held fixed, before a row that has
#: not met the stopping rule goes on with sensitivities. From the grid path's optimum of
#: ``benchmarks/fit_individual.py`` one step (the exact path's residuals; the grid Jacobian's
#: relative error ~1e-4) brings a row to ``ftol`` 1e-10, as an exact Jacobian does: the
#: Gauss-Newton prediction computed with the grid Jacobian and the exact residuals agreed with
#: the exact Jacobian's to ~1e-11 of the sum of squares there.
CHORD_STEPS = 3

#: Largest difference, in residual units (the data's SD), between a row's first residuals on
#: the polish's path and the other path's residuals moved along its Jacobian, for the row to
#: take chord steps (see :func:`polish`). The chord steps' end point is off this path's
#: optimum by about the other path's Jacobian error, which the residuals' disagreement
#: indicates: on benchmarks/fit_individual.py's grid path (0.5 month) the residuals agree to
#: 4e-6 and the Jacobian to 4e-5 (relative); where the grid path is too coarse for the model
#: (tests/test_exact_objective.py, fast absorption) they disagree by far more than this.
CHORD_AGREE = 1e-4



def polish(problem, designs, theta, x, cols, *, steps: int = 3, ftol: float = 1e-10,
           counters=None, max_nfev: int = 30, xtol: float = 1e-12, start_jacobians=None,
           start_info=None, chord_steps: int = None, start_residuals=None):
    """Levenberg-Marquardt on the given path for every row at once, from nearby points.

    For the final iterations on the exact path: from estimates that an optimiser found on an
    approximate path, each row takes damped (Levenberg-Marquardt, Fisher-scoring) steps
    ``(I + lambda diag(I)) delta = -J^T r`` (the expected information ``I``; a component at a
    bound whose gradient points outwards is held), one batched evaluation per iteration for the
    rows still moving, until the undamped step predicts a reduction of the sum of squares below
    ``ftol`` times its data part, the step is below ``xtol * (xtol + |x|)``, or the row has
    taken ``max_nfev`` evaluations. A step that does not lower ``-2 log L`` is undone and the
    damping raised (Nielsen's update), so an estimate several Gauss-Newton steps away (an
    approximate path's optimum elsewhere along a poorly determined valley) still ends at this
    path's optimum; a row already there costs its first evaluation only. Each evaluation
    carries the information and predictions, so the returned evaluation at the final points is
    the one to report; no extra simulation is made for it.

    With ``start_jacobians`` and ``start_info`` (the approximate path's Jacobian and
    information at the start points, as its optimiser ended there), rows whose information is
    well conditioned (:data:`_HINT_CONDITION`) are first evaluated for their residuals only
    (no sensitivities: about half the cost on the exact path), and their first step is taken
    with those derivatives and this path's residuals; the other rows go as without them. Near
    the optimum the step's error is the derivatives' relative error (~1e-3 on the grid path)
    times the step, so
    the row is then as close to this path's optimum as after an exact Gauss-Newton step, and
    the evaluation at the new point (with sensitivities) is usually the last; where the first
    step does not lower ``-2 log L`` the row is evaluated at its start point with
    sensitivities and goes on as without the hint.

    With ``chord_steps`` > 0 (the default, :data:`CHORD_STEPS`) and the other path's residuals
    (``start_residuals``) those rows go on without sensitivities: they first take the other
    path's Gauss-Newton step (its residuals, Jacobian and information), are evaluated there
    for their residuals only, and, where these agree with the other path's moved along its
    Jacobian (:data:`CHORD_AGREE`), take chord steps (Gauss-Newton steps with the hint's
    Jacobian and information held fixed and this path's residuals, each point evaluated
    without sensitivities) until the step predicts less than ``ftol`` of the sum of squares
    or ``chord_steps`` steps are taken. The chord steps end where the hint's Jacobian is
    orthogonal to this path's residuals: off this path's optimum by about that Jacobian's
    error (grid discretisation, and the step from where it was computed). Measured: on
    ``benchmarks/fit_individual.py`` estimates within 8e-6 (relative) and -2 log L within
    3.6e-8 of the polish with sensitivities; on tests/test_exact_objective.py's fast
    absorption 2.6e-5 in the poorly determined ka (~1e-4 of its standard error). A row that
    meets the rule is reported from its last evaluation with the hint's Jacobian and
    information (the other path's, at its optimum: the covariance step uses it); a row whose
    paths disagree goes back to its start point and is polished with sensitivities without
    the hint; a row that does not meet the rule, or whose step does not lower ``-2 log L``,
    goes on with sensitivities from its best point. From a grid path's optimum a row then
    usually costs one evaluation without sensitivities instead of one without and one or
    two with them.

    Parameters
    ----------
    problem : Problem
        The path to polish on (e.g. ``Problem.exact_path()``).
    designs : list of Design
        One per row.
    theta : ndarray (R, Q)
        Start rows (natural scale); the columns ``cols`` are the free ones.
    x : ndarray (R, D)
        The same points on the estimation scale.
    cols : int array (D,)
    steps : int
        Kept for callers of the former Gauss-Newton polish; the number of evaluations is bounded
        by ``max_nfev`` (at least ``steps + 1``).
    ftol : float
        Stop when the undamped step predicts a reduction below ``ftol`` times the data part of
        the sum of squares.
    counters : Counters, optional
        Each batched evaluation is recorded there.
    max_nfev : int
        Evaluations per row, the first one included.
    xtol : float
        Stop when the step on the estimation scale is below ``xtol * (xtol + |x|)``.
    start_jacobians : list of ndarray or None, optional
        Per row, the residual Jacobian (len, D) at the start point on another path (None for
        a row without one); its length must match this path's residuals.
    start_info : ndarray (R, D, D), optional
        The information at the start points that goes with ``start_jacobians``.
    chord_steps : int, optional
        Chord steps (evaluations without sensitivities) per hinted row before it goes on
        with sensitivities; 0: none (the hinted step's point is evaluated with them).
        Default :data:`CHORD_STEPS`.
    start_residuals : list of ndarray or None, optional
        With chord steps: per row, the other path's residuals at the start point (the same
        length as its ``start_jacobians``). The rows first take that path's Gauss-Newton step
        (its optimiser stopped when the step predicted less than its ftol; quadratic
        convergence leaves them much closer to the optimum after it), and are first evaluated
        here at the stepped point; most then meet the stopping rule there. A row whose
        simulation fails at the stepped point is evaluated at its start point instead.

    Returns
    -------
    theta, x : ndarray
        The polished points.
    evaluation : Evaluation
        At those points, with information and predictions.
    used : int ndarray (R,)
        Evaluations each row took part in (the first one included).
    """
    from .problem import Evaluation

    chord_steps = CHORD_STEPS if chord_steps is None else int(chord_steps)
    cols = np.asarray(cols, dtype=int)
    R = theta.shape[0]
    D = cols.size
    max_nfev = max(int(max_nfev), int(steps) + 1)
    theta, x = theta.copy(), np.asarray(x, dtype=float).copy()
    sc, lo_n, hi_n = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    lo_x, hi_x = internal_bounds(sc, lo_n, hi_n)

    def evaluate(idx, th, full=True, predictions=False):
        start = time.perf_counter()
        if full:
            out = problem.evaluate(designs, idx, th, cols, want_info=True,
                                   want_predictions=True)
        else:
            # rows one by one by the compiled DOP853, over numba's threads (progression.fit.
            # _paths.EXACT_ROWS_DOP853): the chord steps' evaluations are outputs only
            with exact_rows_by_dop853():
                out = problem.evaluate(designs, idx, th, cols, want_jac=False,
                                       want_predictions=predictions)
        if counters is not None:
            counters.record(out, time.perf_counter() - start)
        return out

    def steps_of(idx, res, jac, info, nobs, damping):
        """Damped steps (after projection on the bounds), the undamped step's predicted
        reduction, the damped step's predicted reduction, the data part of the sum of
        squares and whether the step is below xtol, for rows ``idx`` from their residuals,
        Jacobians and information, with damping ``damping`` (B,). Rows without a held
        component are done together
        (stacked solves); the others, and any whose stacked solve fails, one by one."""
        B = idx.size
        step = np.zeros((B, D))
        gn_pred = np.zeros(B)
        chi2 = np.array([max(float(r[:n] @ r[:n]), 1.0) for r, n in zip(res, nobs,
                                                                         strict=True)])
        width = max((len(r) for r in res), default=0)
        Rp = np.zeros((B, width))
        Jp = np.zeros((B, width, D))
        for b, (r, J) in enumerate(zip(res, jac, strict=True)):
            Rp[b, :len(r)] = r
            Jp[b, :len(r)] = J
        g = np.einsum("bnk,bn->bk", Jp, Rp)
        H = np.where(np.isfinite(info), info, 0.0)
        xs = x[idx]
        held = ((xs <= lo_x) & (g > 0)) | ((xs >= hi_x) & (g < 0))
        plain = ~held.any(axis=1)
        one = list(np.nonzero(~plain)[0])
        p = np.nonzero(plain)[0]
        if p.size:
            Hp, gp = H[p], g[p]
            diag = np.einsum("bkk->bk", Hp)
            diag = np.maximum(diag, 1e-12 * np.maximum(diag.max(axis=1, keepdims=True),
                                                       1e-300))
            A = Hp + damping[p][:, None, None] * (diag[:, :, None] * np.eye(D))
            with np.errstate(all="ignore"):
                try:
                    # minimum-norm undamped step (lstsq's rcond, as the one-by-one code)
                    gn = -np.einsum("bkl,bl->bk", np.linalg.pinv(Hp, rcond=1e-12), gp)
                    d = np.linalg.solve(A, -gp[:, :, None])[:, :, 0]
                except np.linalg.LinAlgError:
                    one += list(p)
                    p = p[:0]
                else:
                    gn_pred[p] = -np.einsum("bk,bk->b", gp, gn)
                    step[p] = d
        for b in one:
            free = ~held[b]
            if not free.any():
                continue
            Hf, gf = H[b][np.ix_(free, free)], g[b][free]
            dg = np.maximum(np.diag(Hf), 1e-12 * max(float(np.max(np.diag(Hf))), 1e-300))
            with np.errstate(all="ignore"):
                gn = -np.linalg.lstsq(Hf, gf, rcond=1e-12)[0]
                d = np.zeros(D)
                try:
                    d[free] = np.linalg.solve(Hf + damping[b] * np.diag(dg), -gf)
                except np.linalg.LinAlgError:
                    d[free] = -np.linalg.lstsq(Hf + damping[b] * np.diag(dg), gf,
                                               rcond=1e-12)[0]
            gn_pred[b] = -float(gf @ gn)
            step[b] = d
        # the steps actually taken, after projection onto the bounds
        with np.errstate(all="ignore"):
            step = np.clip(xs + step, lo_x, hi_x) - xs
            predicted = -(2.0 * np.einsum("bk,bk->b", g, step)
                          + np.einsum("bk,bkl,bl->b", step, H, step))
        small = (np.linalg.norm(step, axis=1)
                 <= xtol * (xtol + np.linalg.norm(xs, axis=1)))
        return step, gn_pred, predicted, chi2, small

    def moved(idx, step):
        x_new = x[idx] + step
        th_new = theta[idx].copy()
        with np.errstate(all="ignore"):
            th_new[:, cols] = from_internal(x_new, sc, lo_n, hi_n)
        return x_new, th_new

    # Start close to Gauss-Newton (a row near its optimum converges as before) and damp only
    # where a step fails: undamped steps overshoot along a curved, poorly determined valley.
    lam = np.full(R, 1e-3)
    nu = np.full(R, 2.0)
    used = np.zeros(R, dtype=int)
    first_theta = theta
    stepped = np.zeros(R, dtype=bool)
    # rows finished by chord steps (no evaluation with sensitivities), and their report
    chorded = np.zeros(R, dtype=bool)
    report = {}
    if start_jacobians is not None and start_info is not None and R:
        # residuals only at the start points of the rows whose hint is usable; the first
        # step from the other path's derivatives (see the docstring)
        info0 = np.asarray(start_info, dtype=float)
        cand = np.nonzero(np.array([J is not None and np.ndim(J) == 2 and np.shape(J)[1] == D
                                    for J in start_jacobians], dtype=bool)
                          & _well_conditioned(info0))[0]
        # chord steps need the other path's residuals: to check that the two paths agree
        chordable = np.zeros(cand.size, dtype=bool)
        if cand.size and chord_steps > 0 and start_residuals is not None:
            chordable = np.array([start_residuals[i] is not None
                                  and np.ndim(start_residuals[i]) == 1
                                  and len(start_residuals[i]) == np.shape(start_jacobians[i])[0]
                                  for i in cand], dtype=bool)
        x_start = x[cand].copy()
        saved = {}
        if chordable.any():
            # the other path's last Gauss-Newton step, taken before the first evaluation here
            # (that path's optimiser stopped when this step predicted less than its ftol):
            # the rows then start at its optimum to second order in that step
            saved = _pre_step(steps_of, moved, cand[chordable], start_residuals,
                              start_jacobians, info0, x, theta)
        if cand.size:
            ev0 = evaluate(cand, theta[cand], full=False, predictions=bool(chordable.any()))
            used[cand] += 1
            m2ll0 = np.full(R, np.nan)
            m2ll0[cand] = ev0.m2ll
            sel = np.array([b for b, i in enumerate(cand) if not ev0.failed[b]
                            and len(ev0.residuals[b]) == np.shape(start_jacobians[i])[0]],
                           dtype=int)
            # The chord steps end where the hint's Jacobian is orthogonal to this path's
            # residuals, off this path's optimum by about the Jacobian's error: only rows
            # whose residuals here agree with the other path's (moved along its Jacobian) to
            # CHORD_AGREE take them; the others, and rows whose simulation fails at the
            # stepped point, go back to their start point and are polished with
            # sensitivities, without the hint.
            agree = np.zeros(cand.size, dtype=bool)
            for b in sel[chordable[sel]]:
                i = cand[b]
                pred = (np.asarray(start_residuals[i], dtype=float)
                        + np.asarray(start_jacobians[i]) @ (x[i] - x_start[b]))
                agree[b] = np.max(np.abs(ev0.residuals[b] - pred), initial=0.0) <= CHORD_AGREE
            for b in np.nonzero(chordable & ~agree)[0]:
                if int(cand[b]) in saved:
                    x[cand[b]], theta[cand[b]] = saved[int(cand[b])]
            if agree.any():
                pos = np.nonzero(agree)[0]
                chorded, report = _chord(evaluate, steps_of, moved, cand[pos], ev0, pos,
                                         start_jacobians, info0, x, theta, used, lam, nu,
                                         chord_steps, ftol, max_nfev)
            # rows without the other path's residuals: the hinted step (below)
            sel = sel[~chordable[sel]]
            idx = cand[sel]
            if idx.size:
                step, gn_pred, _, chi2, small = steps_of(
                    idx, [ev0.residuals[b] for b in sel], [start_jacobians[i] for i in idx],
                    info0[idx], ev0.nobs[sel], np.full(idx.size, _HINT_DAMPING))
                go = (np.isfinite(gn_pred) & (gn_pred > ftol * chi2)
                      & np.all(np.isfinite(step), axis=1) & ~small)
                idx, step = idx[go], step[go]
                if idx.size:
                    x_new, th_new = moved(idx, step)
                    first_theta = theta.copy()
                    first_theta[idx] = th_new
                    stepped[idx] = True
    full_rows = np.nonzero(~chorded)[0]
    ev = (evaluate(full_rows, first_theta[full_rows]) if full_rows.size
          else None)
    used[full_rows] += 1
    if stepped.any():
        idx = np.nonzero(stepped)[0]
        # a step that does not lower -2 log L (beyond the two evaluations' integration
        # noise, which the one without sensitivities does not share) is undone: the row is
        # evaluated at its start with sensitivities and damped, as any rejected step; an
        # accepted one leaves the damping at its start value for the steps that follow
        noise = 1e-9 * np.maximum(np.abs(m2ll0[idx]), 1.0)
        ok = ~ev.failed[idx] & (ev.m2ll[idx] <= m2ll0[idx] + noise)
        for b, i in enumerate(idx):
            if ok[b]:
                x[i], theta[i] = x_new[b], th_new[b]
            else:
                lam[i] *= nu[i]
                nu[i] *= 2.0
        back = idx[~ok]
        if back.size:
            ev_back = evaluate(back, theta[back])
            used[back] += 1
            ev = _replace_rows(ev, back, ev_back)
    # the report at each row's current point, filled from whichever evaluation was last
    # accepted for it (rows finished by chord steps: their last evaluation and the hint)
    cur = {"residuals": [None] * R, "jacobians": [None] * R, "m2ll": np.full(R, np.nan),
           "failed": np.zeros(R, dtype=bool), "messages": [""] * R,
           "info": np.full((R, D, D), np.nan), "predictions": [None] * R,
           "nobs": np.zeros(R, dtype=int), "before_zero": np.zeros(R, dtype=int)}
    for source, where in ((ev, full_rows), (report.get("evaluation"), np.nonzero(chorded)[0])):
        if source is None:
            continue
        for key in ("residuals", "jacobians", "messages", "predictions"):
            values = getattr(source, key)
            for b, i in enumerate(where):
                cur[key][i] = values[b]
        for key in ("m2ll", "failed", "info", "nobs", "before_zero"):
            values = getattr(source, key)
            if values is not None:
                cur[key][where] = values
    live = np.zeros(R, dtype=bool)
    if ev is not None:
        live[full_rows] = ~ev.failed
    while True:
        idx = np.nonzero(live)[0]
        if idx.size == 0:
            break
        step, gn_pred, predicted, chi2, small = steps_of(
            idx, [cur["residuals"][i] for i in idx], [cur["jacobians"][i] for i in idx],
            cur["info"][idx], cur["nobs"][idx], lam[idx])
        moving = (np.isfinite(gn_pred) & (gn_pred > ftol * chi2)
                  & np.all(np.isfinite(step), axis=1) & ~small & (used[idx] < max_nfev)
                  & (lam[idx] <= _LAMBDA_MAX))
        live[idx[~moving]] = False
        idx, step, predicted = idx[moving], step[moving], predicted[moving]
        if idx.size == 0:
            break
        x_new, th_new = moved(idx, step)
        ev = evaluate(idx, th_new)
        used[idx] += 1
        for b, i in enumerate(idx):
            with np.errstate(all="ignore"):
                rho = (cur["m2ll"][i] - ev.m2ll[b]) / predicted[b]
            if ev.failed[b] or not ev.m2ll[b] <= cur["m2ll"][i]:
                lam[i] *= nu[i]                 # no decrease: keep the best point, damp more
                nu[i] *= 2.0
                continue
            if np.isfinite(rho) and predicted[b] > 0:
                lam[i] *= max(1.0 / 3.0, 1.0 - (2.0 * min(rho, 1.0) - 1.0) ** 3)
            nu[i] = 2.0
            x[i], theta[i] = x_new[b], th_new[b]
            for key in ("residuals", "jacobians", "messages", "predictions"):
                cur[key][i] = getattr(ev, key)[b]
            for key in ("m2ll", "failed", "info", "nobs", "before_zero"):
                cur[key][i] = getattr(ev, key)[b]
    final = Evaluation(cur["residuals"], cur["jacobians"], cur["m2ll"], cur["failed"],
                       cur["messages"], cur["info"], cur["predictions"], cur["nobs"],
                       cur["before_zero"])
    return theta, x, final, used


def _pre_step(steps_of, moved, cand, start_residuals, start_jacobians, info0, x, theta):
    """Move rows ``cand`` (in place in ``x`` and ``theta``) by the Gauss-Newton step of the
    other path's residuals, Jacobian and information at their start points (rows with matching
    residuals and a finite step that is not below xtol); returns ``{row: (x, theta)}`` of the
    moved rows' start points."""
    rows = np.array([i for i in cand if start_residuals[i] is not None
                     and np.ndim(start_residuals[i]) == 1
                     and len(start_residuals[i]) == np.shape(start_jacobians[i])[0]], dtype=int)
    if rows.size == 0:
        return {}
    res = [np.asarray(start_residuals[i], dtype=float) for i in rows]
    step, gn_pred, _, _, small = steps_of(rows, res, [start_jacobians[i] for i in rows],
                                          info0[rows], np.array([r.size for r in res]),
                                          np.full(rows.size, _HINT_DAMPING))
    go = np.isfinite(gn_pred) & np.all(np.isfinite(step), axis=1) & ~small
    rows, step = rows[go], step[go]
    if rows.size == 0:
        return {}
    saved = {int(i): (x[i].copy(), theta[i].copy()) for i in rows}
    x_new, th_new = moved(rows, step)
    x[rows], theta[rows] = x_new, th_new
    return saved


def _chord(evaluate, steps_of, moved, idx, ev0, sel, start_jacobians, info0, x, theta, used,
           lam, nu, chord_steps, ftol, max_nfev):
    """The polish's chord steps: Gauss-Newton steps of rows ``idx`` with their hint's Jacobian
    and information held fixed and this path's residuals, each step's point evaluated without
    sensitivities, until the step predicts less than ``ftol`` of the sum of squares (tested with
    the hint's Jacobian, whose error enters the prediction squared), at most ``chord_steps``
    evaluations per row.

    ``ev0`` holds the rows' residuals at their start points (its rows ``sel`` are ``idx``).
    Accepted steps update ``x``, ``theta`` and ``used`` in place; a row whose step does not lower
    -2 log L (beyond the integration noise of two evaluations) is damped in ``lam``/``nu`` and
    left, at its best point, to the polish with sensitivities, as is a row not finished after
    ``chord_steps`` steps.

    Returns
    -------
    done : bool ndarray (R,)
        Rows finished here.
    report : dict
        ``{"evaluation": Evaluation}`` of the finished rows (in row order): their last
        accepted evaluation, with the hint's Jacobian and information.
    """
    from .problem import Evaluation

    R = x.shape[0]
    keys = ("residuals", "predictions", "messages", "m2ll", "nobs", "before_zero")

    def row_of(ev, b):
        return {key: (getattr(ev, key)[b] if getattr(ev, key) is not None else None)
                for key in keys}

    state = {int(i): row_of(ev0, b) for b, i in zip(sel, idx, strict=True)}
    done = np.zeros(R, dtype=bool)
    act = np.asarray(idx, dtype=int)
    for it in range(chord_steps + 1):
        if act.size == 0:
            break
        step, gn_pred, _, chi2, small = steps_of(
            act, [state[i]["residuals"] for i in act], [start_jacobians[i] for i in act],
            info0[act], np.array([state[i]["nobs"] for i in act]),
            np.full(act.size, _HINT_DAMPING))
        finite = np.isfinite(gn_pred) & np.all(np.isfinite(step), axis=1)
        conv = finite & ((gn_pred <= ftol * chi2) | small)
        done[act[conv]] = True
        go = finite & ~conv & (used[act] < max_nfev)
        if it == chord_steps:
            break
        act, step = act[go], step[go]
        if act.size == 0:
            break
        x_new, th_new = moved(act, step)
        ev1 = evaluate(act, th_new, full=False, predictions=True)
        used[act] += 1
        keep = np.zeros(act.size, dtype=bool)
        for b, i in enumerate(act):
            m_old = state[i]["m2ll"]
            noise = 1e-9 * max(abs(m_old), 1.0)
            if (not ev1.failed[b] and ev1.m2ll[b] <= m_old + noise
                    and len(ev1.residuals[b]) == len(state[i]["residuals"])):
                x[i], theta[i] = x_new[b], th_new[b]
                state[i] = row_of(ev1, b)
                keep[b] = True
            else:
                lam[i] *= nu[i]
                nu[i] *= 2.0
        act = act[keep]
    rows = np.nonzero(done)[0]
    D = info0.shape[1]
    evaluation = Evaluation(
        [state[i]["residuals"] for i in rows],
        [np.asarray(start_jacobians[i], dtype=float) for i in rows],
        np.array([state[i]["m2ll"] for i in rows], dtype=float),
        np.zeros(rows.size, dtype=bool), [state[i]["messages"] for i in rows],
        info0[rows].reshape(rows.size, D, D),
        [state[i]["predictions"] for i in rows],
        np.array([state[i]["nobs"] for i in rows], dtype=int),
        np.array([state[i]["before_zero"] if state[i]["before_zero"] is not None else 0
                  for i in rows], dtype=int))
    return done, {"evaluation": evaluation}


def _well_conditioned(info):
    """(R,) bool: information matrices (R, D, D) that are finite, with a positive diagonal,
    and whose smallest eigenvalue after scaling to a unit diagonal is at least
    :data:`_HINT_CONDITION` times the largest (every direction determined by the data)."""
    R, D = info.shape[:2]
    if D == 0:
        return np.zeros(R, dtype=bool)
    d = np.einsum("bkk->bk", info)
    ok = np.all(np.isfinite(info), axis=(1, 2)) & np.all(d > 0, axis=1)
    out = np.zeros(R, dtype=bool)
    if ok.any():
        s = np.sqrt(d[ok])
        w = np.linalg.eigvalsh(info[ok] / s[:, :, None] / s[:, None, :])
        out[np.nonzero(ok)[0]] = w[:, 0] >= _HINT_CONDITION * w[:, -1]
    return out


def _replace_rows(ev, rows, other):
    """``ev`` with its rows ``rows`` replaced by the rows of evaluation ``other`` (in order);
    the fields the polish reads."""
    from .problem import Evaluation

    lists = {key: list(getattr(ev, key)) for key in ("residuals", "jacobians", "messages",
                                                     "predictions")}
    arrays = {key: getattr(ev, key).copy() for key in ("m2ll", "failed", "info", "nobs",
                                                       "before_zero")}
    for b, i in enumerate(rows):
        for key in lists:
            lists[key][i] = getattr(other, key)[b]
        for key in arrays:
            arrays[key][i] = getattr(other, key)[b]
    return Evaluation(lists["residuals"], lists["jacobians"], arrays["m2ll"], arrays["failed"],
                      lists["messages"], arrays["info"], lists["predictions"], arrays["nobs"],
                      arrays["before_zero"])
