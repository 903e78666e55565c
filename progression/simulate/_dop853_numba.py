"""Compiled DOP853 with forward sensitivities: a segment of one subject (numba).

The tight-tolerance per-subject integrator of :func:`~progression.simulate.simulate`
(``method="auto"`` below :data:`~._api.AUTO_COMPILED_MIN_RTOL`, e.g. a fit's exact path at
rtol 1e-10), driven from Python by :mod:`._compiled` like the compiled Rodas4: the same
segment signature (plus ``closed`` and the sensitivity kernel), outputs, events, failure
codes and work counters; and :func:`_batch`, every subject of a batch in one compiled call
when nothing happens after t0 (a fit's rows with a dose at the start).

Why an explicit method of order 8. At rtol 1e-10 the order-4 Rodas4 takes ~10x the steps of
scipy's LSODA (its step grows as rtol^(-1/4)); the models the exact path integrates there
(pharmacokinetics, ``als_reduced``) are not stiff, and DOP853's steps grow as rtol^(-1/8).
Measured on one ``als_reduced`` subject over 60 months at rtol 1e-10 (states only): DOP853
216 steps / 2,618 right-hand sides, LSODA 515 / 1,055, Radau IIA(5) 558 steps with 4,204
right-hand sides and 12 LU factorisations. An explicit stage costs one call of the model's
generated sensitivity kernel (``f`` and ``J S + F_p a`` with shared subexpressions) and no
linear algebra, so a compiled Radau or a higher-order Rosenbrock (a Newton iteration or an LU
per step on the augmented system) would cost more per step for the same step count; a stiff
subject is detected (Hairer's test, below) and handed back to the stiff path instead. Against
the stacked LSODA (Adams: ~2.5x fewer right-hand sides, ~20-60 us of Python per step for the
whole batch) it wins for small batches; :data:`~._api.DOP853_MAX_WORK` says where.

The method (Hairer, Norsett & Wanner, Solving ODEs I, sec. II.10; Hairer's dop853.f, via
scipy's ``dop853_coefficients``): 12 stages, order 8, the error estimate combining the
embedded 5th- and 3rd-order solutions (``err5^2 / sqrt(err5^2 + 0.01 err3^2)``), FSAL, and
the 7th-order continuous extension from 3 extra stages, computed only for steps that hold an
output time or an event.

Forward sensitivities ``S = dy/dp`` are integrated with the states as one vector
``z = (y, S_1, ..., S_k)`` with slope ``(f, J S_q + F_p[:, q] a_q)`` at each stage's own
point (the model's ``sensitivity_kernel`` for the columns, else its Jacobian and full
``F_p``): the method keeps its order on the augmented system, and the error norm (RMS over
all n (1 + k) components, as the compiled Rodas4's) covers the sensitivities.

Stiffness: Hairer's test after every accepted step once a segment has taken
:data:`STIFF_TEST_AFTER` steps, ``h |f(y1) - f(y_12)| / |y1 - y_12|`` (an estimate of
``h |lambda|`` from the last two stage points); more than 6.1 on 15 tests without 6 quiet
ones in a row between them stops the segment with status :data:`_STIFF`, and the driver
re-solves that subject on the stiff path. The test waits 1000 steps (Hairer's code tests
every 1000 steps by default) because a mildly stiff subject is cheap here: a fast absorption
(pk_oral, ka = 10-50 / h, as an inner FOCE-I problem tries) keeps DOP853 at its stability
bound for 40-200 steps over a day, ~0.1-0.5 ms, against 2-8 ms for a stacked re-solve of one
subject; tested from the first step, 38 Theoph subjects were handed back in one FOCE-I fit,
and 12 still after 200 steps. A subject that takes more than :data:`STIFF_STEPS` steps in
one segment is treated the same way (a mildly stiff problem stepping at its stability bound
may never trip the test but costs more than the stiff path).

Without numba this module imports, :data:`AVAILABLE` is False and nothing here is used.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate._ivp import dop853_coefficients as _coef

from ._rodas4_numba import _FAILED, _OK, _TERMINATED, AVAILABLE

__all__ = ["AVAILABLE", "STIFF", "STIFF_STEPS", "dop_segment", "dop_batch"]

#: Status of a segment stopped because the subject is stiff (re-solve it on the stiff path).
STIFF = 2
_STIFF = STIFF
#: Steps in one segment after which a subject counts as stiff (see the module docstring):
#: a non-stiff ``als_reduced`` or pharmacokinetic subject takes 50-300 at rtol 1e-10.
STIFF_STEPS = 4000
#: Steps of a segment before the stiffness test counts (see the module docstring).
STIFF_TEST_AFTER = 1000
#: Hairer's dop853.f: the stiffness threshold on h |lambda| and the counts.
_HLAMB, _N_STIFF, _N_QUIET = 6.1, 15, 6
# step-size control (dop853.f: safety 0.9, factor in [1/6, 3]; scipy: [0.2, 10])
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 10.0

_A = np.ascontiguousarray(_coef.A, dtype=float)          # (16, 16), rows 13-15: dense stages
_B = np.ascontiguousarray(_coef.B, dtype=float)          # (12,)
_C = np.ascontiguousarray(_coef.C, dtype=float)          # (16,)
_E3 = np.ascontiguousarray(_coef.E3, dtype=float)        # (13,)
_E5 = np.ascontiguousarray(_coef.E5, dtype=float)        # (13,)
_DD = np.ascontiguousarray(_coef.D, dtype=float)         # (4, 16)

if AVAILABLE:
    from numba import njit, types
    from numba.typed import List as _TypedList

    from ._rodas4_numba import (
        _VEC,
        _all_finite,
        _illinois_guess,
        _illinois_update,
        _record,
        _take_events,
    )

    _VEC_LIST = types.ListType(_VEC)

    def _pack_one_py(f):
        out = _TypedList.empty_list(_VEC)
        out.append(f)
        return out

    _pack_one = njit(_VEC_LIST(_VEC), cache=True, error_model="numpy")(_pack_one_py)

    # The helpers that receive the kernels are inlined: a tuple of first-class functions
    # passed to a compiled call costs ~40 ns (reference counts), more than a right-hand side
    # of a small model (measured: 13 ns per stage inlined, 62 ns not, pk_oral).

    @njit(cache=True, error_model="numpy", inline="always")
    def _slope(K, SK, use_sk, t, z, p, pa, sidx, a, n, k, out, J, Fp):
        """out = (f, J S_q + F_p[:, sidx_q] a_q) at (t, z); z = (y, S) flattened. ``use_sk``:
        in one call of the model's generated sensitivity kernel ``SK(t, z, pa, out)`` (``pa``
        = parameters then ``a``: shared subexpressions, structural non-zeros only), else
        from the right-hand side, the Jacobian and the full ``F_p``."""
        if use_sk:
            SK(t, z, pa, out)
            return
        y = z[:n]
        K[0](t, y, p, out[:n])
        if k == 0:
            return
        K[1](t, y, p, J)
        K[2](t, y, p, Fp)
        for q in range(k):
            base = n * (q + 1)
            c = sidx[q]
            for i in range(n):
                s = Fp[i, c] * a[q]
                for j in range(n):
                    s += J[i, j] * z[base + j]
                out[base + i] = s

    @njit(cache=True, error_model="numpy", inline="always")
    def _stages(s0, s1, K, SK, use_sk, t, h, z, p, pa, sidx, a, n, k, Kz, zi, J, Fp):
        """Stages s0..s1-1 of the Runge-Kutta tableau: Kz[s] = slope at
        z + h sum_j A[s, j] Kz[j] (the step's stages 1-11, the dense output's 13-15)."""
        N = z.size
        for s in range(s0, s1):
            for i in range(N):
                v = 0.0
                for j in range(s):
                    v += _A[s, j] * Kz[j, i]
                zi[i] = z[i] + h * v
            _slope(K, SK, use_sk, t + _C[s] * h, zi, p, pa, sidx, a, n, k, Kz[s], J, Fp)

    @njit(cache=True, error_model="numpy", inline="always")
    def _attempt(K, SK, use_sk, t, h, z, p, pa, sidx, a, n, k, Kz, zi, z_new, J, Fp, rtol,
                 atol):
        """One DOP853 step of size h from (t, z) with Kz[0] = slope at (t, z): fills Kz[1:13]
        (Kz[12] = slope at the new point, FSAL), z_new, zi = the 12th stage's point; returns
        the error norm (inf when values are not finite)."""
        N = z.size
        _stages(1, 12, K, SK, use_sk, t, h, z, p, pa, sidx, a, n, k, Kz, zi, J, Fp)
        for i in range(N):
            v = 0.0
            for j in range(12):
                v += _B[j] * Kz[j, i]
            z_new[i] = z[i] + h * v
        _slope(K, SK, use_sk, t + h, z_new, p, pa, sidx, a, n, k, Kz[12], J, Fp)
        e5 = 0.0
        e3 = 0.0
        for i in range(N):
            sc = atol + rtol * max(abs(z[i]), abs(z_new[i]))
            v5 = 0.0
            v3 = 0.0
            for j in range(13):
                v5 += _E5[j] * Kz[j, i]
                v3 += _E3[j] * Kz[j, i]
            e5 += (v5 / sc) ** 2
            e3 += (v3 / sc) ** 2
        if not (math.isfinite(e5) and math.isfinite(e3)):
            return np.inf
        if e5 == 0.0 and e3 == 0.0:
            return 0.0
        return abs(h) * e5 / math.sqrt((e5 + 0.01 * e3) * N)

    @njit(cache=True, error_model="numpy", inline="always")
    def _dense_prepare(K, SK, use_sk, t, h, z, z_new, p, pa, sidx, a, n, k, Kz, zi, F, J,
                       Fp):
        """The continuous extension's coefficients F (7, N) of the accepted step (three more
        stages, Kz[13:16])."""
        N = z.size
        _stages(13, 16, K, SK, use_sk, t, h, z, p, pa, sidx, a, n, k, Kz, zi, J, Fp)
        for i in range(N):
            dz = z_new[i] - z[i]
            F[0, i] = dz
            F[1, i] = h * Kz[0, i] - dz
            F[2, i] = 2 * dz - h * (Kz[12, i] + Kz[0, i])
            for r in range(4):
                v = 0.0
                for j in range(16):
                    v += _DD[r, j] * Kz[j, i]
                F[3 + r, i] = h * v

    @njit(cache=True, error_model="numpy")
    def _dense(x, z, F, count, out):
        """The first ``count`` components at t + x h (0 <= x <= 1) of the accepted step."""
        y1 = 1.0 - x
        for i in range(count):
            v = 0.0
            for r in range(6, -1, -1):
                v += F[r, i]
                v *= x if (6 - r) % 2 == 0 else y1
            out[i] = z[i] + v

    @njit(cache=True, error_model="numpy", inline="always")
    def _first_step(K, t, z, f0, p, n, rtol, atol, max_step, span, zi, f1):
        """Hairer's starting step for order 8 from the states (scipy's select_initial_step)."""
        d0 = 0.0
        d1 = 0.0
        for i in range(n):
            sc = atol + rtol * abs(z[i])
            d0 += (z[i] / sc) ** 2
            d1 += (f0[i] / sc) ** 2
        d0 = math.sqrt(d0 / n)
        d1 = math.sqrt(d1 / n)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, abs(span))
        for i in range(n):
            zi[i] = z[i] + h0 * f0[i]
        K[0](t + h0, zi[:n], p, f1[:n])
        d2 = 0.0
        for i in range(n):
            sc = atol + rtol * abs(z[i])
            d2 += ((f1[i] - f0[i]) / sc) ** 2
        d2 = math.sqrt(d2 / n) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
        h = min(100 * h0, h1, max_step)
        if not (math.isfinite(h) and h > 0):
            h = 1e-6 * max(1.0, abs(span))
        return h

    @njit(cache=True, error_model="numpy")
    def _segment(KL, t0, t1, y, S, p, sidx, a, times, j0, Yout, Sout, Oout, DOout,
                 record_obs, ev_sign, ev_term, use_events, ev_index, ev_time, rtol, atol,
                 max_step, max_steps, autonomous, info_i, info_f, fail_y, closed, SKL,
                 use_sk):
        """Integrate one subject over [t0, t1] (no switch inside), in place on y and S: the
        contract of the compiled Rodas4's segment (:mod:`._rodas4_loops`), plus status
        :data:`STIFF` (y and S then hold the segment's start values) and ``closed``: the
        outputs at ``t1`` are recorded too (the last segment when nothing switches at its
        end, instead of a call for the empty segment ``[t1, t1]``). ``autonomous`` is not
        used (an explicit method needs no time derivative). ``SKL``: a typed list of one
        function, the model's sensitivity kernel for these columns, used when ``use_sk``
        (see :func:`_slope`)."""
        K = KL[0]
        SK = SKL[0]
        event_values = K[8]
        n = y.size
        k = S.shape[0]
        N = n * (1 + k)
        Q = p.size
        T = times.size
        nk = Oout.shape[1]
        n_ev = ev_sign.size
        obuf = np.empty(nk)
        Dy = np.empty((nk, n))
        Dp = np.empty((nk, Q))
        for c in range(info_i.size):
            info_i[c] = 0
        info_f[0] = t0
        j = j0
        if t1 == t0:
            while j < T and times[j] == t0:
                _record(K, t0, y, S, p, sidx, a, record_obs, j, Yout, Sout, Oout, DOout,
                        obuf, Dy, Dp)
                j += 1
            info_i[1] = j
            return
        z = np.empty(N)
        for i in range(n):
            z[i] = y[i]
        for q in range(k):
            for i in range(n):
                z[n * (q + 1) + i] = S[q, i]
        pa = np.empty(Q + k)
        for c in range(Q):
            pa[c] = p[c]
        for q in range(k):
            pa[Q + q] = a[q]
        Kz = np.empty((16, N))
        zi = np.empty(N)
        z_new = np.empty(N)
        F = np.empty((7, N))
        zj = np.empty(N)
        J = np.empty((n, n))
        Fp = np.empty((n, Q))
        ev_prev = np.empty(n_ev)
        ev_new = np.empty(n_ev)
        ev_buf = np.empty(n_ev)
        found_e = np.empty(n_ev, dtype=np.int64)
        found_t = np.empty(n_ev)

        _slope(K, SK, use_sk, t0, z, p, pa, sidx, a, n, k, Kz[0], J, Fp)
        nfev = 1
        if not (_all_finite(z) and _all_finite(Kz[0])):
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
        h = _first_step(K, t0, z, Kz[0], p, n, rtol, atol, max_step, t1 - t0, zi, z_new)
        nfev += 1
        t = t0
        rejected = False
        steps = 0
        n_found = 0
        n_stiff = 0
        n_quiet = 0
        status = _OK
        while True:
            hh = min(h, t1 - t)
            cut = hh >= t1 - t
            if cut:
                hh = t1 - t
            err = _attempt(K, SK, use_sk, t, hh, z, p, pa, sidx, a, n, k, Kz, zi, z_new, J, Fp,
                           rtol, atol)
            nfev += 12
            steps += 1
            ok = err <= 1.0
            if err > 0:
                fac = _SAFETY * err ** -0.125
            else:
                fac = _FAC_MAX
            if not math.isfinite(fac):
                fac = _FAC_MIN
            fac = min(max(fac, _FAC_MIN), _FAC_MAX)
            if rejected:
                fac = min(fac, 1.0)
            if ok:
                t_new = t1 if cut else t + hh
                if not _all_finite(Kz[12]):
                    status = _FAILED
                    info_i[7] = 2
                    info_i[8] = 0 if _all_finite(z_new[n:]) else 1
                    info_f[1] = t
                    info_f[2] = t_new
                    for i in range(n):
                        fail_y[0, i] = z[i]
                        fail_y[1, i] = z_new[i]
                    break
                # Hairer's stiffness test: h |lambda| from the last two stage points
                if steps > STIFF_TEST_AFTER:
                    num = 0.0
                    den = 0.0
                    for i in range(N):
                        num += (Kz[12, i] - Kz[11, i]) ** 2
                        den += (z_new[i] - zi[i]) ** 2
                    if den > 0.0 and hh * math.sqrt(num / den) > _HLAMB:
                        n_quiet = 0
                        n_stiff += 1
                        if n_stiff >= _N_STIFF:
                            status = _STIFF
                            break
                    else:
                        n_quiet += 1
                        if n_quiet >= _N_QUIET:
                            n_stiff = 0
                ready = False
                t_stop = t_new
                terminated = False
                if use_events:
                    event_values(t_new, z_new[:n], p, ev_new)
                    nc = 0
                    for e in range(n_ev):
                        lo_v, hi_v = ev_prev[e], ev_new[e]
                        cross = ((ev_sign[e] <= 0 and lo_v > 0 and hi_v <= 0)
                                 or (ev_sign[e] >= 0 and lo_v < 0 and hi_v >= 0))
                        if not cross:
                            continue
                        if not ready:
                            _dense_prepare(K, SK, use_sk, t, hh, z, z_new, p, pa, sidx, a, n,
                                           k, Kz, zi, F, J, Fp)
                            nfev += 3
                            ready = True
                        # Illinois (regula falsi) on the continuous extension
                        a_t, b_t = t, t_new
                        ga, gb = lo_v, hi_v
                        tol = 1e-10 * max(1.0, abs(t_new))
                        side = 0
                        for _ in range(100):
                            guess = _illinois_guess(a_t, b_t, ga, gb)
                            _dense((guess - t) / hh, z, F, n, zj)
                            event_values(guess, zj[:n], p, ev_buf)
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
                # outputs inside the step: t <= times[j] < t_new (and <= a terminal event);
                # closed: the last step's end too
                end_in = closed and t_new == t1
                while j < T and (times[j] < t_new or (end_in and times[j] == t_new)) and (
                        not terminated or times[j] <= t_stop):
                    if times[j] == t:
                        for i in range(N):
                            zj[i] = z[i]
                    elif times[j] == t_new:
                        for i in range(N):
                            zj[i] = z_new[i]
                    else:
                        if not ready:
                            _dense_prepare(K, SK, use_sk, t, hh, z, z_new, p, pa, sidx, a, n,
                                           k, Kz, zi, F, J, Fp)
                            nfev += 3
                            ready = True
                        _dense((times[j] - t) / hh, z, F, N, zj)
                    _record(K, times[j], zj[:n], zj[n:].reshape((k, n)), p, sidx, a,
                            record_obs, j, Yout, Sout, Oout, DOout, obuf, Dy, Dp)
                    j += 1
                if terminated:
                    status = _TERMINATED
                    info_f[0] = t_stop
                    break
                t = t_new
                for i in range(N):
                    z[i] = z_new[i]
                    Kz[0, i] = Kz[12, i]
                if cut:
                    info_f[0] = t1
                    break
            rejected = not ok
            h = min(max(hh * fac, h) if (cut and ok) else hh * fac, max_step)
            over = steps > max_steps
            tiny = h < 1e-12 * max(1.0, abs(t))
            if steps > STIFF_STEPS and not over:
                status = _STIFF
                break
            if over or tiny:
                status = _FAILED
                info_i[7] = 1 if over else 3
                info_f[1] = t
                info_f[2] = t + hh
                for i in range(n):
                    fail_y[0, i] = z[i]
                    fail_y[1, i] = z_new[i] if ok else z[i]
                info_i[8] = 0 if _all_finite(z[n:]) else 1
                break
        if status != _STIFF:
            for i in range(n):
                y[i] = z[i]
            for q in range(k):
                for i in range(n):
                    S[q, i] = z[n * (q + 1) + i]
        info_i[0] = status
        info_i[1] = j
        info_i[2] = steps
        info_i[3] = nfev
        info_i[4] = nfev if k else 0
        info_i[5] = 0
        info_i[6] = n_found

    @njit(cache=True, error_model="numpy")
    def _batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout, Oout,
                   DOout, record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y,
                   SKL, use_sk):
        """Row ``s`` of :func:`_batch` (its arguments): one closed segment over
        [t0, t_end[s]] from copies of the row's start, into the row's slices of the outputs.
        Shared by the serial batch and the FOCE family's threaded one
        (:func:`progression.fit.population._fastexact._par_batch`), so both give the same
        numbers."""
        no_sign = np.zeros(0, dtype=np.int64)
        no_term = np.zeros(0, dtype=np.bool_)
        no_index = np.zeros(1, dtype=np.int64)
        no_time = np.zeros(1)
        y = Y0[s].copy()
        S = S0[s].copy()
        p = P0[s].copy()
        a = A0[s].copy()
        T = counts[s]
        tt = times[s, :T].copy()
        t1 = t_end[s]
        _segment(KL, t0, t1, y, S, p, sidx, a, tt, 0, Yout[s], Sout[s], Oout[s], DOout[s],
                 record_obs, no_sign, no_term, False, no_index, no_time, rtol, atol, max_step,
                 max_steps, True, info_i[s], info_f[s], fail_y[s], t1 > t0, SKL, use_sk)

    @njit(cache=True, error_model="numpy")
    def _batch(KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout, Oout, DOout,
               record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y, SKL,
               use_sk):
        """Every subject of a batch over [t0, t_end[s]] in one call, for the common case
        with nothing happening after t0 (no switch, covariate change or located event):
        one closed segment each, from its start Y0[s], S0[s] (switches at t0 applied),
        parameters P0[s] and switch factors A0[s] (m, k), at its own ``times[s, :counts[s]]``
        (padded). Outputs Yout (m, T, n), Sout (m, T, k, n), Oout (m, T, K), DOout
        (m, T, K, k); per subject the segment's info_i (m, 9), info_f (m, 3), fail_y
        (m, 2, n)."""
        for s in range(Y0.shape[0]):
            _batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout,
                       Oout, DOout, record_obs, rtol, atol, max_step, max_steps, info_i,
                       info_f, fail_y, SKL, use_sk)


_SENS: dict = {}


def sensitivity_kernels(model, sidx):
    """(typed list of one function, use it) for :func:`_segment`: the model's generated
    sensitivity kernel for the columns ``sidx`` (``CompiledModel.sensitivity_kernel``), or
    the right-hand side as a placeholder (and False) without sensitivities or without one.
    Built once per kernels object and columns."""
    kern = model.kernels
    key = (id(kern), tuple(int(c) for c in sidx))
    hit = _SENS.get(key)
    if hit is not None and hit[0] is kern:
        return hit[1], hit[2]
    fn = None
    if len(sidx):
        get = getattr(model, "sensitivity_kernel", None)
        fn = get(list(key[1])) if get is not None else None
    packed = _pack_one(fn if fn is not None else kern.rhs)
    _SENS[key] = (kern, packed, fn is not None)
    return packed, fn is not None


def _build():
    if not AVAILABLE:  # pragma: no cover - without numba nothing here runs
        return None, None
    from ._rodas4_loops import _quiet

    return _quiet(_segment), _quiet(_batch)


#: The compiled segment (None without numba), the signature of ``_rodas4_loops.segment``
#: plus ``closed``; and the one-call batch of the simple case (:func:`_batch`).
dop_segment, dop_batch = _build()
