"""States on an output grid with one step size per subject: Rodas4, vectorised over subjects.

A stacked solve (one scipy integrator for the whole batch) shares one step-size sequence among
its subjects, so a subject's computed trajectory, and everything fitted to it, changes in the
last digits with the company it keeps. Here every subject has its own time, step size,
accept/reject decision and error norm; the batch only shares the Python loop (every pass
advances every unfinished subject by one attempted step, all in one vectorised evaluation).
A subject's result is therefore the same alone or among thousands.

The method is Rodas4 (Hairer & Wanner, Solving ODEs II, sec. IV.7): a 6-stage Rosenbrock
method of order 4 with an embedded order-3 solution, L-stable and stiffly accurate, which
needs the exact Jacobian (the model's own) and one LU factorisation per step. ``df/dt`` is a
forward difference (zero for autonomous models). Outputs between steps are cubic Hermite
interpolants from the values and slopes at both ends of the step.
"""

from __future__ import annotations

import re

import numpy as np

from ._gridsens import solve_small

__all__ = ["rodas_states"]

# Rodas4 coefficients (Hairer & Wanner's RODAS, the W-transformed form of their code)
_GAMMA = 0.25
_A = {(2, 1): 1.544, (3, 1): 0.9466785280815826, (3, 2): 0.2557011698983284,
      (4, 1): 3.314825187068521, (4, 2): 2.896124015972201, (4, 3): 0.9986419139977817,
      (5, 1): 1.221224509226641, (5, 2): 6.019134481288629, (5, 3): 12.53708332932087,
      (5, 4): -0.6878860361058950}
_C = {(2, 1): -5.6688, (3, 1): -2.430093356833875, (3, 2): -0.2063599157091915,
      (4, 1): -0.1073529058151375, (4, 2): -9.594562251023355, (4, 3): -20.47028614809616,
      (5, 1): 7.496443313967647, (5, 2): -10.24680431464352, (5, 3): -33.99990352819905,
      (5, 4): 11.70890893206160, (6, 1): 8.083246795921522, (6, 2): -7.981132988064893,
      (6, 3): -31.52159432874371, (6, 4): 16.31930543123136, (6, 5): -6.058818238834054}
_CT = {2: 0.386, 3: 0.21, 4: 0.63, 5: 1.0, 6: 1.0}
_D = {1: 0.25, 2: -0.1043, 3: 0.1035, 4: -0.0362, 5: 0.0, 6: 0.0}

_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 6.0


def _autonomous(model) -> bool:
    """True when the model's generated right-hand side never reads ``t`` (then df/dt = 0 and
    its difference quotient, one evaluation per step, is skipped)."""
    source = getattr(model, "sources", {}).get("rhs")
    return source is not None and len(re.findall(r"\b_t\b", source)) == 1


def _rms(v, scale):
    return np.sqrt(np.mean((v / scale) ** 2, axis=0))


#: With the model's compiled kernels (:attr:`CompiledModel.kernels`) and numba, the same
#: Rodas4 runs compiled, one subject after another (:func:`progression.simulate._compiled._grid`:
#: same coefficients, error norm, step-size control, Hermite outputs and covariate breaks, so
#: the results agree with this numpy version to rounding, and a subject's result still does not
#: depend on its batch). False: always this vectorised numpy version (tests compare the two).
_COMPILED = True


def _compiled_states(compiled, model, table, times, rtol, atol, max_step, max_steps,
                     covariates):
    """:func:`rodas_states` through the compiled per-subject integrator."""
    m, n, T = table.shape[0], model.n_states, times.size
    t0 = float(times[0])
    if covariates is not None:
        p_all = covariates.extend(table.T, t0).T
        breaks = covariates.subject_breaks()
        breaks = np.hstack([breaks, np.full((m, 1), np.inf)])
        H = p_all.shape[1] - table.shape[1]
        hidden = np.zeros((m, breaks.shape[1], H))
        for b in range(breaks.shape[1]):
            finite = np.isfinite(breaks[:, b])
            if finite.any():
                rows = np.nonzero(finite)[0]
                hidden[rows, b, :] = covariates.hidden(breaks[rows, b], rows).T
    else:
        p_all, H = table, 0
        breaks = np.full((m, 1), np.inf)
        hidden = np.zeros((m, 1, 0))
    states = np.full((m, n, T), np.nan)
    status = np.zeros(m, dtype=np.int64)
    fail_t = np.zeros(m)
    fail_y = np.zeros((m, 2, n))
    fail_code = np.zeros(m, dtype=np.int64)
    counts = np.zeros(4, dtype=np.int64)
    compiled.grid_states(compiled.packed_kernels(model.kernels),
                         np.ascontiguousarray(p_all, dtype=float), np.ascontiguousarray(times),
                         np.ascontiguousarray(breaks, dtype=float),
                         np.ascontiguousarray(hidden, dtype=float), int(H), float(rtol),
                         float(atol), float(max_step), int(max_steps), _autonomous(model),
                         states, status, fail_t, fail_y, fail_code, counts)
    failure = [None] * m
    for s in np.nonzero(status == -1)[0]:
        reason = compiled.FAIL_REASONS[int(fail_code[s])].format(max_steps=max_steps)
        failure[s] = (float(fail_t[s]), fail_y[s, 0].copy(), fail_y[s, 1].copy(), reason)
    stats = {"steps": int(counts[0]), "nfev": int(counts[1]), "njev": int(counts[2]),
             "nlu": int(counts[3])}
    return states, status.astype(int), failure, stats


def rodas_states(model, table, times, *, rtol=1e-6, atol=1e-9, max_step=np.inf,
                 max_steps=100_000, covariates=None):
    """States at ``times`` for every subject of ``table``, each with its own step sequence.

    Parameters
    ----------
    model : CompiledModel or PythonModel
    table : ndarray (m, P)
    times : ndarray (T,)
        Increasing output times from ``t0 = times[0]``.
    rtol, atol : float
        Per-subject tolerances (RMS norm over the subject's states).
    max_step : float
    max_steps : int
        Attempted steps allowed per subject.
    covariates : CovariateSchedule, optional
        Time-varying covariates (:mod:`progression.simulate._covariates`) filling the model's
        hidden parameter rows. Each subject's steps end exactly at its own recorded times,
        where its rows change, so no step crosses a change and a subject's steps still depend
        on nothing but its own data.

    Returns
    -------
    states : ndarray (m, n, T)
        NaN after a subject's failure.
    status : int ndarray (m,)
        0 success, -1 failed.
    failure : list of (t, y_before, y_after, reason) or None, per subject
    stats : dict
        ``steps`` (the largest number of steps of a subject), ``nfev``, ``njev``, ``nlu``
        (evaluations of the whole batch; with the compiled integrator, evaluations for one
        subject, summed over subjects).
    """
    times = np.asarray(times, dtype=float)
    if _COMPILED and getattr(model, "kernels", None) is not None:
        from .simulate import _compiled

        if _compiled.AVAILABLE:
            return _compiled_states(_compiled, model, np.asarray(table, dtype=float), times,
                                    rtol, atol, max_step, max_steps, covariates)
    m, n, T = table.shape[0], model.n_states, times.size
    p_all = np.ascontiguousarray(table.T)
    t0, t_end = float(times[0]), float(times[-1])
    P = p_all.shape[0]
    if covariates is not None:
        p_all = np.ascontiguousarray(covariates.extend(p_all, t0))
        breaks = covariates.subject_breaks()
        breaks = np.hstack([breaks, np.full((m, 1), np.inf)])
        upcoming = (breaks <= t0).sum(axis=1)          # index of each subject's next break
    else:
        breaks, upcoming = np.full((m, 1), np.inf), np.zeros(m, dtype=int)
    states = np.full((m, n, T), np.nan)
    status = np.zeros(m, dtype=int)
    failure = [None] * m
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}
    with np.errstate(all="ignore"):
        y = np.asarray(model.initial(t0, None, p_all), dtype=float).reshape(n, m).copy()
        f = np.asarray(model.rhs(np.full(m, t0), y, p_all), dtype=float)
    stats["nfev"] += 1
    states[:, :, 0] = y.T
    bad = ~(np.all(np.isfinite(y), axis=0) & np.all(np.isfinite(f), axis=0))
    for s in np.nonzero(bad)[0]:
        status[s] = -1
        failure[s] = (t0, y[:, s].copy(), y[:, s].copy(),
                      "non-finite values at the start of the integration")
    if T == 1 or t_end == t0:
        states[:, :, 1:] = states[:, :, :1]
        return states, status, failure, stats
    t = np.full(m, t0)
    nxt = np.ones(m, dtype=int)
    # Initial step per subject (Hairer's rule from the sizes of y and f)
    scale = atol + rtol * np.abs(y)
    d0, d1 = _rms(y, scale), _rms(f, scale)
    with np.errstate(all="ignore"):
        h = np.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / d1, 1e-6)
    # Neither the first step nor any later one is cut to end at t_end: the last step may
    # overshoot it (outputs are interpolated), so a subject's steps do not depend on how far
    # the batch integrates.
    h = np.minimum(h, max_step)
    h = np.where(np.isfinite(h) & (h > 0), h, 1e-6 * max(1.0, abs(t_end - t0)))
    rejected = np.zeros(m, dtype=bool)
    steps = np.zeros(m, dtype=int)
    live = ~bad
    eye = np.eye(n)
    diag = np.arange(n)
    autonomous = _autonomous(model)
    while live.any():
        idx = np.nonzero(live)[0]
        k = idx.size
        tt, yy, ff = t[idx], y[:, idx], f[:, idx]
        # A step never crosses the subject's next covariate change: it ends there exactly.
        next_break = breaks[idx, upcoming[idx]]
        hh = np.minimum(h[idx], next_break - tt)
        cut = hh >= next_break - tt
        pp = p_all if k == m else p_all[:, idx]
        with np.errstate(all="ignore"):
            J = np.asarray(model.jac(tt, yy, pp), dtype=float).reshape(n, n, k)
            if autonomous:
                ft = 0.0
            else:
                dt = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(tt))
                ft = (np.asarray(model.rhs(tt + dt, yy, pp), dtype=float) - ff) / dt
            # E = I / (gamma h) - J, inverted by elimination vectorised over subjects (stack
            # axis last; LAPACK for poor pivots): cheaper than one LAPACK call per subject
            E = -J
            E[diag, diag] += 1.0 / (_GAMMA * hh)
            finite = np.all(np.isfinite(E), axis=(0, 1))
            E[:, :, ~finite] = eye[:, :, None]
            Einv = np.ascontiguousarray(
                solve_small(E, np.broadcast_to(eye[:, :, None], (n, n, k))).transpose(2, 0, 1))

            def solve(v, Einv=Einv):
                return np.matmul(Einv, v.T[:, :, None])[:, :, 0].T

            K = {1: solve(ff + (hh * _D[1]) * ft)}
            yi = yy
            for i in range(2, 7):
                # stages 2-5 start from y; stage 6 from the embedded solution y5 + K5
                yi = (yy + sum(_A[i, j] * K[j] for j in range(1, i))) if i <= 5 else yi + K[5]
                fi = np.asarray(model.rhs(tt + _CT[i] * hh, yi, pp), dtype=float)
                rhs = fi + sum((_C[i, j] / hh) * K[j] for j in range(1, i))
                if _D[i]:
                    rhs = rhs + (hh * _D[i]) * ft
                K[i] = solve(rhs)
            y_new = yi + K[6]      # order 4; K6 is its difference from the order-3 solution
            sc = atol + rtol * np.maximum(np.abs(yy), np.abs(y_new))
            err = _rms(K[6], sc)
            err = np.where(finite & np.all(np.isfinite(y_new), axis=0), err, np.inf)
        stats["nfev"] += 6 if autonomous else 7
        stats["njev"] += 1
        stats["nlu"] += 1
        steps[idx] += 1
        ok = err <= 1.0
        # step-size factor: the usual controller; after a rejection never grow
        with np.errstate(all="ignore"):
            fac = np.where(err > 0, _SAFETY * err ** -0.25, _FAC_MAX)
        fac = np.clip(np.where(np.isfinite(fac), fac, _FAC_MIN), _FAC_MIN, _FAC_MAX)
        fac = np.where(rejected[idx], np.minimum(fac, 1.0), fac)
        acc = idx[ok]
        if acc.size:
            t_new = np.where(cut[ok], next_break[ok], tt[ok] + hh[ok])
            last = t_new >= t_end
            yn = y_new[:, ok]
            with np.errstate(all="ignore"):
                fn = np.asarray(model.rhs(t_new, yn, pp[:, ok]), dtype=float)
            stats["nfev"] += 1
            y0, f0, ta, ha = yy[:, ok], ff[:, ok], tt[ok], t_new - tt[ok]
            # outputs inside the accepted step, by cubic Hermite interpolation: every
            # (subject, output time) pair of the step at once
            j0 = nxt[acc]
            count = np.searchsorted(times, t_new, side="right") - j0
            count = np.maximum(count, 0)
            if count.any():
                w = np.repeat(np.arange(acc.size), count)
                j = np.repeat(j0, count) + (np.arange(w.size)
                                            - np.repeat(np.cumsum(count) - count, count))
                s = (times[j] - ta[w]) / ha[w]
                h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
                h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
                val = (h00 * y0[:, w] + h10 * ha[w] * f0[:, w] + h01 * yn[:, w]
                       + h11 * ha[w] * fn[:, w])
                states[acc[w], :, j] = val.T
                nxt[acc] += count
            t[acc], y[:, acc], f[:, acc] = t_new, yn, fn
            hit = acc[cut[ok]]
            if hit.size:
                # The covariates' next piece starts: new hidden rows, and the slope there.
                p_all[P:, hit] = covariates.hidden(t[hit], hit)
                upcoming[hit] += 1
                with np.errstate(all="ignore"):
                    f[:, hit] = np.asarray(model.rhs(t[hit], y[:, hit], p_all[:, hit]),
                                           dtype=float)
                stats["nfev"] += 1
            done = acc[last]
            live[done] = False
        rej = ~ok
        rejected[idx] = rej
        # A step shortened to end at a covariate change says nothing about the step size the
        # solution allows: after an accepted one the step size proposed before it is kept.
        h[idx] = np.minimum(np.where(cut & ok, np.maximum(hh * fac, h[idx]), hh * fac),
                            max_step)
        # failures: step size underflow, non-finite slopes after acceptance, too many steps
        tiny = h[idx] < 1e-12 * np.maximum(1.0, np.abs(t[idx]))
        nonfinite = ~np.all(np.isfinite(f[:, idx]), axis=0)
        over = steps[idx] > max_steps
        for r in np.nonzero(live[idx] & (tiny | nonfinite | over))[0]:
            s = idx[r]
            reason = (f"more than {max_steps} steps" if over[r] else
                      "non-finite values in the solution" if nonfinite[r] else
                      "the step size fell below 1e-12 of the time")
            failure[s] = (float(t[s]), yy[:, r].copy(), y_new[:, r].copy(), reason)
            status[s] = -1
            live[s] = False
            states[s, :, nxt[s]:] = np.nan
    stats["steps"] = int(steps.max(initial=0))
    return states, status, failure, stats
