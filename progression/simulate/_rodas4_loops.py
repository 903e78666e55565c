"""Compiled Rodas4, the loops (numba): a segment of :func:`~progression.simulate.simulate`
for one subject (steps, outputs, events located by root finding on the continuous extension,
forward sensitivities) and :func:`~progression._rodas.rodas_states`'s grid, subject after
subject; the step itself is :mod:`._rodas4_numba`, the Python driver :mod:`._compiled`.

Kernels reach the compiled code as first-class functions packed once per model into a numba
typed list (:func:`packed_kernels`): the integrators are then compiled once per machine
(``cache=True``) for every model, instead of once per model and process, and a call from
Python costs about a microsecond (a dispatcher passed as a plain argument costs ~30 us per
call to convert, and its specialisation does not cache).

Without numba this module imports, :data:`AVAILABLE` is False and nothing here is used.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _omp  # before numba starts its threads: they wait passively (see there)
from ._rodas4_numba import (
    _A,
    _C,
    _CT,
    _D,
    _FAILED,
    _OK,
    _TERMINATED,
    AVAILABLE,
)

if AVAILABLE:
    import numba
    from numba import njit, prange

    from ._rodas4_numba import (
        _all_finite,
        _attempt,
        _dense,
        _first_step,
        _hermite,
        _illinois_guess,
        _illinois_update,
        _pack,
        _point,
        _record,
        _step_factor,
        _take_events,
    )

__all__ = ["AVAILABLE", "packed_kernels", "segment", "grid_states", "batch"]


if AVAILABLE:
    # ------------------------------------------------------------------ simulate: a segment

    @njit(cache=True, error_model="numpy")
    def _segment(KL, t0, t1, y, S, p, sidx, a, times, j0, Yout, Sout, Oout, DOout,
                 record_obs, ev_sign, ev_term, use_events, ev_index, ev_time, rtol, atol,
                 max_step, max_steps, autonomous, info_i, info_f, fail_y):
        """Integrate one subject over [t0, t1] (no switch inside), in place on y and S.

        Records the outputs ``times[j]`` with ``j >= j0`` and ``times[j] < t1`` (an output at
        ``t1`` belongs to the next segment, after its switches; with ``t1 == t0`` the outputs
        at ``t0`` are recorded from the state). Events: sign changes of ``event_values``
        between steps, located on the step's interpolant to 1e-10 relative in time; a
        terminal one ends the integration there.

        info_i: status (0 ok, 1 terminated, -1 failed), next output index, steps, rhs
        evaluations, Jacobian evaluations, LU factorisations, events found (may exceed the
        buffer: then only the first ones are stored), failure code, sensitivities non-finite
        at the failure. info_f: time reached (the terminal event's time), failure step start,
        failure step end. fail_y (2, n): states before and after the failing step.
        """
        K = KL[0]
        event_values = K[8]
        n = y.size
        k = S.shape[0]
        Q = p.size
        T = times.size
        nk = Oout.shape[1]
        n_ev = ev_sign.size
        coef_A, coef_C, coef_CT, coef_D = _A, _C, _CT, _D
        obuf = np.empty(nk)
        Dy = np.empty((nk, n))
        Dp = np.empty((nk, Q))
        for z in range(info_i.size):
            info_i[z] = 0
        info_f[0] = t0
        j = j0
        if t1 == t0:
            while j < T and times[j] == t0:
                _record(K, t0, y, S, p, sidx, a, record_obs, j, Yout, Sout, Oout, DOout,
                        obuf, Dy, Dp)
                j += 1
            info_i[1] = j
            return
        # work arrays
        f = np.empty(n)
        J = np.empty((n, n))
        Fp = np.empty((n, Q))
        g = np.empty((k, n))
        ft = np.zeros(n)
        gt = np.zeros((k, n))
        f1 = np.empty(n)
        J1 = np.empty((n, n))
        Fp1 = np.empty((n, Q))
        g1 = np.empty((k, n))
        ft1 = np.zeros(n)
        gt1 = np.zeros((k, n))
        tmp_f = np.empty(n)
        tmp_J = np.empty((n, n))
        tmp_Fp = np.empty((n, Q))
        tmp_g = np.empty((k, n))
        W = np.empty((n, n))
        Ky = np.empty((6, n))
        KS = np.empty((6, k, n))
        yi = np.empty(n)
        Si = np.empty((k, n))
        fi = np.empty(n)
        Ji = np.empty((n, n))
        Fpi = np.empty((n, Q))
        gi = np.empty((k, n))
        ry = np.empty(n)
        rS = np.empty((k, n))
        y_new = np.empty(n)
        S_new = np.empty((k, n))
        piv = np.empty(n, dtype=np.int64)
        yj = np.empty(n)
        Sj = np.empty((k, n))
        ev_prev = np.empty(n_ev)
        ev_new = np.empty(n_ev)
        ev_buf = np.empty(n_ev)
        ycross = np.empty(n)
        found_e = np.empty(n_ev, dtype=np.int64)
        found_t = np.empty(n_ev)

        nfev = _point(K, t0, y, S, p, sidx, a, f, J, Fp, g, ft, gt, autonomous, tmp_f,
                      tmp_J, tmp_Fp, tmp_g)
        njev = 1
        nlu = 0
        if not (_all_finite(y) and _all_finite(f) and _all_finite(S)):
            info_i[0] = _FAILED
            info_i[7] = 4
            info_f[1] = t0
            info_f[2] = t0
            for i in range(n):
                fail_y[0, i] = y[i]
                fail_y[1, i] = y[i]
            info_i[1] = j
            return
        if use_events:
            event_values(t0, y, p, ev_prev)
        h = _first_step(y, f, rtol, atol, max_step, t1 - t0)
        t = t0
        rejected = False
        steps = 0
        n_found = 0
        status = _OK
        while True:
            hh = min(h, t1 - t)
            cut = hh >= t1 - t
            if cut:
                hh = t1 - t
            err = _attempt(K, t, hh, y, S, p, sidx, a, f, J, Fp, g, ft, gt, autonomous,
                           rtol, atol, coef_A, coef_C, coef_CT, coef_D, W, Ky, KS, yi, Si,
                           fi, Ji, Fpi, gi, ry, rS, y_new, S_new, piv)
            nfev += 5
            nlu += 1
            if k:
                njev += 12
            steps += 1
            ok = err <= 1.0
            fac = _step_factor(err, rejected)
            if ok:
                t_new = t1 if cut else t + hh
                nfev += _point(K, t_new, y_new, S_new, p, sidx, a, f1, J1, Fp1, g1, ft1, gt1,
                               autonomous, tmp_f, tmp_J, tmp_Fp, tmp_g)
                njev += 1
                if not (_all_finite(f1) and _all_finite(g1)):
                    status = _FAILED
                    info_i[7] = 2
                    info_i[8] = 0 if _all_finite(S_new) else 1
                    info_f[1] = t
                    info_f[2] = t_new
                    for i in range(n):
                        fail_y[0, i] = y[i]
                        fail_y[1, i] = y_new[i]
                    break
                t_stop = t_new
                terminated = False
                if use_events:
                    event_values(t_new, y_new, p, ev_new)
                    nc = 0
                    for e in range(n_ev):
                        lo_v, hi_v = ev_prev[e], ev_new[e]
                        cross = ((ev_sign[e] <= 0 and lo_v > 0 and hi_v <= 0)
                                 or (ev_sign[e] >= 0 and lo_v < 0 and hi_v >= 0))
                        if not cross:
                            continue
                        # Illinois (regula falsi) on the continuous extension
                        a_t, b_t = t, t_new
                        ga, gb = lo_v, hi_v
                        tol = 1e-10 * max(1.0, abs(t_new))
                        side = 0
                        for _ in range(100):
                            guess = _illinois_guess(a_t, b_t, ga, gb)
                            _dense((guess - t) / hh, y, y_new, Ky, ycross)
                            event_values(guess, ycross, p, ev_buf)
                            a_t, b_t, ga, gb, side, done = _illinois_update(
                                guess, ev_buf[e], a_t, b_t, ga, gb, side, tol)
                            if done:
                                break
                        found_e[nc] = e
                        found_t[nc] = 0.5 * (a_t + b_t)
                        nc += 1
                    if nc:
                        # this step's events in time order, up to a terminal one
                        t_stop, terminated, n_found = _take_events(
                            found_e, found_t, nc, ev_term, t_stop, terminated, ev_index, ev_time,
                            n_found)
                    for e in range(n_ev):
                        ev_prev[e] = ev_new[e]
                # outputs inside the step: t <= times[j] < t_new (and <= a terminal event)
                while j < T and times[j] < t_new and (not terminated or times[j] <= t_stop):
                    theta = (times[j] - t) / hh
                    _dense(theta, y, y_new, Ky, yj)
                    for q in range(k):
                        _dense(theta, S[q], S_new[q], KS[:, q, :], Sj[q])
                    _record(K, times[j], yj, Sj, p, sidx, a, record_obs, j, Yout, Sout, Oout,
                            DOout, obuf, Dy, Dp)
                    j += 1
                if terminated:
                    # skip the outputs after the end (they stay NaN)
                    status = _TERMINATED
                    info_f[0] = t_stop
                    break
                t = t_new
                for i in range(n):
                    y[i] = y_new[i]
                for q in range(k):
                    for i in range(n):
                        S[q, i] = S_new[q, i]
                # the slopes at the new point become the step start's: swap the buffers
                # (y and S are the caller's arrays, updated in place)
                f, f1 = f1, f
                ft, ft1 = ft1, ft
                J, J1 = J1, J
                g, g1 = g1, g
                gt, gt1 = gt1, gt
                Fp, Fp1 = Fp1, Fp
                if cut:
                    info_f[0] = t1
                    break
            rejected = not ok
            h = min(max(hh * fac, h) if (cut and ok) else hh * fac, max_step)
            over = steps > max_steps
            tiny = h < 1e-12 * max(1.0, abs(t))
            if over or tiny:
                status = _FAILED
                info_i[7] = 1 if over else 3
                info_f[1] = t
                info_f[2] = t + hh
                for i in range(n):
                    fail_y[0, i] = y[i]
                    fail_y[1, i] = y_new[i] if ok else y[i]
                info_i[8] = 0 if _all_finite(S) else 1
                break
        info_i[0] = status
        info_i[1] = j
        info_i[2] = steps
        info_i[3] = nfev
        info_i[4] = njev
        info_i[5] = nlu
        info_i[6] = n_found

    # ------------------------------------------------------------------ many subjects

    @njit(cache=True, error_model="numpy")
    def _batch(KL, t0, t1, Y0, S0, P, A, sidx, times, Yb, Sb, Ob, DOb, record_obs, ev_sign,
               ev_term, use_events, EVI, EVT, rtol, atol, max_step, max_steps, autonomous,
               INFO_I, INFO_F, FAIL):
        """:func:`_segment` for every subject in turn over [t0, t1], then (when the subject
        ran to t1) the outputs at t1 (the segment t1 -> t1): what the Python driver does per
        subject without switches after t0 or covariates, in one call instead of two per
        subject (each ~20 us of argument checking from Python).

        Y0 (m, n), S0 (m, k, n), P (m, Q), A (m, k): each subject's start, parameters and
        sensitivity factors; Yb (m, T, n), Sb (m, T, k, n), Ob (m, T, nk), DOb (m, T, nk, k)
        the outputs; EVI, EVT (m, cap) the events; INFO_I (m, 9), INFO_F (m, 3), FAIL
        (m, 2, n) as :func:`_segment`'s, counters summed over both calls. A subject whose
        events overflow its buffer (INFO_I[s, 6] > cap) stops after the first call: the
        caller runs it again with room.
        """
        m, n = Y0.shape
        cap = EVI.shape[1]
        last_i = np.zeros(INFO_I.shape[1], dtype=np.int64)
        last_f = np.zeros(INFO_F.shape[1])
        last_y = np.zeros((2, n))
        for s in range(m):
            y = Y0[s].copy()
            S = S0[s].copy()
            p = P[s].copy()
            a = A[s].copy()
            _segment(KL, t0, t1, y, S, p, sidx, a, times, 0, Yb[s], Sb[s], Ob[s], DOb[s],
                     record_obs, ev_sign, ev_term, use_events, EVI[s], EVT[s], rtol, atol,
                     max_step, max_steps, autonomous, INFO_I[s], INFO_F[s], FAIL[s])
            if INFO_I[s, 0] != _OK or INFO_I[s, 6] > cap:
                continue
            _segment(KL, t1, t1, y, S, p, sidx, a, times, INFO_I[s, 1], Yb[s], Sb[s],
                     Ob[s], DOb[s], record_obs, ev_sign, ev_term, use_events, EVI[s], EVT[s],
                     rtol, atol, max_step, max_steps, autonomous, last_i, last_f, last_y)
            INFO_I[s, 1] = last_i[1]

    # ------------------------------------------------------------------ rodas_states

    @njit(cache=True, error_model="numpy")
    def _grid_row(s, KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step,
                  max_steps, autonomous, states, status, fail_t, fail_y, fail_code, counts):
        """Subject ``s`` of :func:`_grid` (its arguments), with its own work arrays, into its
        rows of the outputs; ``counts`` (4,) this subject's [steps, nfev, njev, nlu]. Shared
        by the serial and the threaded grid, so both give the same numbers."""
        K = KL[0]
        rhs, jac, initial = K[0], K[1], K[3]
        Q = P_all.shape[1]
        n = states.shape[1]
        T = times.size
        t0 = times[0]
        t_end = times[T - 1]
        coef_A, coef_C, coef_CT, coef_D = _A, _C, _CT, _D
        P = Q - n_hidden
        S = np.empty((0, n))
        sidx = np.empty(0, dtype=np.int64)
        a = np.empty(0)
        Fp = np.empty((n, Q))
        g = np.empty((0, n))
        gt = np.empty((0, n))
        f = np.empty(n)
        J = np.empty((n, n))
        ft = np.zeros(n)
        f1 = np.empty(n)
        W = np.empty((n, n))
        Ky = np.empty((6, n))
        KS = np.empty((6, 0, n))
        yi = np.empty(n)
        Si = np.empty((0, n))
        fi = np.empty(n)
        Ji = np.empty((n, n))
        Fpi = np.empty((n, Q))
        gi = np.empty((0, n))
        ry = np.empty(n)
        rS = np.empty((0, n))
        y_new = np.empty(n)
        S_new = np.empty((0, n))
        piv = np.empty(n, dtype=np.int64)
        tmp = np.empty(n)
        yj = np.empty(n)
        y = np.empty(n)
        p = np.empty(Q)
        dt_eps = math.sqrt(2.220446049250313e-16)
        for c in range(Q):
            p[c] = P_all[s, c]
        initial(t0, y, p, y)
        rhs(t0, y, p, f)
        counts[1] += 1
        for i in range(n):
            states[s, i, 0] = y[i]
        if not (_all_finite(y) and _all_finite(f)):
            status[s] = _FAILED
            fail_code[s] = 4
            fail_t[s] = t0
            for i in range(n):
                fail_y[s, 0, i] = y[i]
                fail_y[s, 1, i] = y[i]
        if T == 1 or t_end == t0:
            for jj in range(1, T):
                for i in range(n):
                    states[s, i, jj] = states[s, i, 0]
            return
        if status[s] == _FAILED:
            return
        t = t0
        nxt = 1
        up = 0
        while breaks[s, up] <= t0:
            up += 1
        h = _first_step(y, f, rtol, atol, max_step, t_end - t0)
        rejected = False
        steps = 0
        need_jac = True
        need_ft = not autonomous
        while True:
            next_break = breaks[s, up]
            hh = min(h, next_break - t)
            cut = hh >= next_break - t
            if need_jac:
                jac(t, y, p, J)
                counts[2] += 1
                need_jac = False
            if need_ft:
                dt = dt_eps * max(1.0, abs(t))
                rhs(t + dt, y, p, tmp)
                counts[1] += 1
                for i in range(n):
                    ft[i] = (tmp[i] - f[i]) / dt
                need_ft = False
            err = _attempt(K, t, hh, y, S, p, sidx, a, f, J, Fp, g, ft, gt, autonomous,
                           rtol, atol, coef_A, coef_C, coef_CT, coef_D, W, Ky, KS, yi,
                           Si, fi, Ji, Fpi, gi, ry, rS, y_new, S_new, piv)
            counts[1] += 5
            counts[3] += 1
            steps += 1
            ok = err <= 1.0
            fac = _step_factor(err, rejected)
            y_start_saved = False
            last = False
            if ok:
                t_new = next_break if cut else t + hh
                last = t_new >= t_end
                # the next step's Jacobian with the slope, from one elimination (the step
                # start's J is not read again: the outputs need slopes only). Also on the
                # last step and at a break, where that Jacobian is not used: the slope, and
                # the outputs interpolated with it, must not depend on whether the step is
                # the last (a subject's states are the same alone and in a batch whose grid
                # extends further)
                K[9](t_new, y_new, p, f1, J)
                counts[1] += 1
                counts[2] += 1
                ha = t_new - t
                while nxt < T and times[nxt] <= t_new:
                    _hermite((times[nxt] - t) / ha, ha, y, f, y_new, f1, yj)
                    for i in range(n):
                        states[s, i, nxt] = yj[i]
                    nxt += 1
                # keep the step start for a failure message
                for i in range(n):
                    fail_y[s, 0, i] = y[i]
                    y[i] = y_new[i]
                    f[i] = f1[i]
                y_start_saved = True
                t = t_new
                need_jac = cut
                need_ft = not autonomous
                if cut:
                    for c in range(n_hidden):
                        p[P + c] = hidden[s, up, c]
                    up += 1
                    rhs(t, y, p, f)
                    counts[1] += 1
            rejected = not ok
            if cut and ok:
                h = min(max(hh * fac, h), max_step)
            else:
                h = min(hh * fac, max_step)
            if last:
                break
            tiny = h < 1e-12 * max(1.0, abs(t))
            nonfinite = not _all_finite(f)
            over = steps > max_steps
            if tiny or nonfinite or over:
                status[s] = _FAILED
                fail_code[s] = 1 if over else (2 if nonfinite else 3)
                fail_t[s] = t
                if not y_start_saved:
                    for i in range(n):
                        fail_y[s, 0, i] = y[i]
                for i in range(n):
                    fail_y[s, 1, i] = y_new[i]
                for jj in range(nxt, T):
                    for i in range(n):
                        states[s, i, jj] = np.nan
                break
        counts[0] = steps

    @njit(cache=True, error_model="numpy")
    def _grid_counts(row_counts, counts):
        """counts (4,) from the subjects' row_counts (m, 4): [largest steps, nfev, njev,
        nlu summed]."""
        for s in range(row_counts.shape[0]):
            counts[0] = max(counts[0], row_counts[s, 0])
            for c in range(1, 4):
                counts[c] += row_counts[s, c]

    @njit(cache=True, error_model="numpy")
    def _grid(KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step, max_steps,
              autonomous, states, status, fail_t, fail_y, fail_code, counts):
        """progression._rodas.rodas_states, one subject after another (same algorithm).

        P_all (m, Q) parameters with the hidden rows at t0; breaks (m, B) each subject's
        covariate changes (+inf padded); hidden (m, B, H) the hidden rows from each break on.
        Writes states (m, n, T), status, failures (time, y before/after, code) and counts
        [steps (largest), nfev, njev, nlu].
        """
        m = P_all.shape[0]
        row_counts = np.zeros((m, 4), dtype=np.int64)
        for s in range(m):
            _grid_row(s, KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step,
                      max_steps, autonomous, states, status, fail_t, fail_y, fail_code,
                      row_counts[s])
        _grid_counts(row_counts, counts)

    @njit(cache=True, error_model="numpy", parallel=True)
    def _grid_par(KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step,
                  max_steps, autonomous, states, status, fail_t, fail_y, fail_code, counts):
        """:func:`_grid` with the subjects spread over numba's threads (``prange``): each
        subject is integrated by the same per-row function into its own slices of the
        outputs, so the numbers are those of the serial call whatever the thread count."""
        m = P_all.shape[0]
        row_counts = np.zeros((m, 4), dtype=np.int64)
        for s in prange(m):
            _grid_row(s, KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step,
                      max_steps, autonomous, states, status, fail_t, fail_y, fail_code,
                      row_counts[s])
        _grid_counts(row_counts, counts)


_PACKED: dict = {}


_FUSED: dict = {}


def _fused(rhs, jac):
    """``rhs_jac`` for kernels that have none (written by hand): the two kernels in turn."""
    key = (rhs, jac)
    if key not in _FUSED:
        @njit(error_model="numpy")
        def rhs_jac(t, y, p, f, J):
            rhs(t, y, p, f)
            jac(t, y, p, J)

        _FUSED[key] = rhs_jac
    return _FUSED[key]


def packed_kernels(kernels):
    """The kernels of a model as the typed list the compiled integrators take (built once per
    kernels object and kept: the conversion of ten dispatchers costs ~0.3 ms). Kernels
    without ``rhs_jac`` (hand-written ones) get one calling ``rhs`` and ``jac``."""
    key = id(kernels)
    hit = _PACKED.get(key)
    if hit is not None and hit[0] is kernels:
        return hit[1]
    rhs_jac = getattr(kernels, "rhs_jac", None)
    if rhs_jac is None:
        rhs_jac = _fused(kernels.rhs, kernels.jac)
    packed = _pack(kernels.rhs, kernels.jac, kernels.dfdp, kernels.initial,
                   kernels.dinitial_dp, kernels.observe, kernels.dobs_dy, kernels.dobs_dp,
                   kernels.event_values, rhs_jac)
    _PACKED[key] = (kernels, packed)
    return packed


_WARM = set()


def _quiet(function):
    """``function`` whose first call (numba compiles or loads it then) runs with numba's
    first-class-function warnings silenced: numba re-emits them from compilation under its
    own filters."""
    def call(*args):
        if function in _WARM:
            return function(*args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", numba.NumbaExperimentalFeatureWarning)
            out = function(*args)
        _WARM.add(function)
        return out

    call.__doc__ = function.__doc__
    return call


#: Spread :func:`grid_states`'s subjects over numba's threads (:func:`_grid_par`; the same
#: numbers as the serial :func:`_grid`). Measured on benchmarks/fit_individual.py (2 cores,
#: 200 rows of als_reduced per call, ~0.3 ms each): see benchmarks/results/fit_individual.md.
PARALLEL = True
#: Subjects from which a call spreads them over the threads: a subject costs ~0.1-1 ms, the
#: threads' start and join some 10-50 us.
PARALLEL_ROWS = 16
#: Subjects a thread takes at a time (numba's ``parallel_chunksize``: chunks handed out as
#: threads free up, not one fixed half per thread): a subject's cost varies several-fold with
#: its parameters, and on a shared machine one thread may be held up.
CHUNK = 4


def grid_threads() -> int:
    """Threads :func:`grid_states` would use for a large batch: :func:`progression._omp.threads`
    (1 in a worker process of progression.parallel or on one CPU), 1 when :data:`PARALLEL` is
    off."""
    if not (AVAILABLE and PARALLEL):
        return 1
    return _omp.threads()


def _grid_states(KL, P_all, *args):
    """:func:`_grid` (serial) or :func:`_grid_par` (threads) by the batch size and
    :func:`grid_threads`; the same arguments and numbers."""
    n = grid_threads() if P_all.shape[0] >= PARALLEL_ROWS else 1
    if n > 1:
        with _omp.using(n), numba.parallel_chunksize(CHUNK):
            return _grid_par_q(KL, P_all, *args)
    return _grid_q(KL, P_all, *args)


if AVAILABLE:
    segment, batch = _quiet(_segment), _quiet(_batch)
    _grid_q, _grid_par_q = _quiet(_grid), _quiet(_grid_par)
    grid_states = _grid_states
else:  # pragma: no cover - without numba nothing here runs
    segment = grid_states = batch = None
