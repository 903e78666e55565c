"""Compiled per-subject Rodas4: one subject at a time, with the model's numba kernels.

The small-batch path of :func:`~progression.simulate.simulate` and the per-subject grid path
of :func:`~progression._rodas.rodas_states` when the model has compiled kernels
(:attr:`CompiledModel.kernels`, the contract in ``progression/model/_kernels.py``).

The method is the one of :mod:`progression._rodas`: Rodas4 (Hairer & Wanner, Solving ODEs
II, sec. IV.7), a 6-stage L-stable Rosenbrock method of order 4 with an embedded order-3
solution and the exact Jacobian, the same coefficients, error norm (RMS per subject) and
step-size controller; outputs and event functions between steps come from cubic Hermite
interpolants (values and slopes at both ends of the step) in the grid path, as there, and
from Rodas4's own continuous extension (order 3, from the stages) in simulate's segments.

Forward sensitivities ``S = dy/dp`` (``S' = J S + F_p a``, ``a`` the factor a switch's scale
put on the parameter) are integrated with the states as one augmented system ``z = (y, S)``
with its exact Jacobian ``[[J, 0], [H, J]]``, ``H_q = d(J S_q + F_p,q a_q)/dy``: the stage
systems are block lower triangular, so one LU of ``I/(gamma h) - J`` solves all of them, and
the products ``H_q u`` are directional differences of the Jacobian and ``F_p`` (one extra
evaluation of each per stage). Rodas4 keeps its order on the augmented system and the
embedded error estimate covers the sensitivities.

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

try:
    import numba
    from numba import njit, types
    from numba.typed import List as _TypedList
except ImportError:  # pragma: no cover - exercised by the numpy-backend runs
    numba = None
    AVAILABLE = False
else:
    AVAILABLE = True
    # numba calls first-class functions experimental and says so on every type built from
    # them; they are what lets one compiled integrator serve every model (see above)
    warnings.filterwarnings("ignore", category=numba.NumbaExperimentalFeatureWarning,
                            message=".*First-class function type")

__all__ = ["AVAILABLE", "packed_kernels", "segment", "grid_states", "FAIL_REASONS"]

# Rodas4 coefficients: progression._rodas (Hairer & Wanner's RODAS, W-transformed form).
_GAMMA = 0.25
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 6.0

#: Failure codes of the compiled integrators -> the reason in the message.
FAIL_REASONS = {
    1: "more than {max_steps} steps",
    2: "non-finite values in the solution",
    3: "the step size fell below 1e-12 of the time",
    4: "non-finite values at the start of the integration",
}

# status codes (progression.simulate._registry)
_OK, _TERMINATED, _FAILED = 0, 1, -1


def _coefficients():
    """(A, C, CT, D) as dense arrays indexed by stage (0-based)."""
    A = np.zeros((6, 6))
    C = np.zeros((6, 6))
    A[1, 0] = 1.544
    A[2, 0], A[2, 1] = 0.9466785280815826, 0.2557011698983284
    A[3, 0], A[3, 1], A[3, 2] = 3.314825187068521, 2.896124015972201, 0.9986419139977817
    A[4, 0], A[4, 1], A[4, 2], A[4, 3] = (1.221224509226641, 6.019134481288629,
                                          12.53708332932087, -0.6878860361058950)
    C[1, 0] = -5.6688
    C[2, 0], C[2, 1] = -2.430093356833875, -0.2063599157091915
    C[3, 0], C[3, 1], C[3, 2] = -0.1073529058151375, -9.594562251023355, -20.47028614809616
    C[4, 0], C[4, 1], C[4, 2], C[4, 3] = (7.496443313967647, -10.24680431464352,
                                          -33.99990352819905, 11.70890893206160)
    C[5, 0], C[5, 1], C[5, 2], C[5, 3], C[5, 4] = (8.083246795921522, -7.981132988064893,
                                                   -31.52159432874371, 16.31930543123136,
                                                   -6.058818238834054)
    CT = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
    D = np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])
    # RODAS's continuous extension (Hairer's rodas.f, RODCOE method 1): with
    # c1 = sum_j H[0, j] K_j and c2 = sum_j H[1, j] K_j over the first five stages,
    # y(t + theta h) = (1 - theta) y0 + theta (y1 + (1 - theta) (c1 + theta c2)), order 3
    H = np.array([[10.12623508344586, -7.487995877610167, -34.80091861555747,
                   -7.992771707568823, 1.025137723295662],
                  [-0.6762803392801253, 6.087714651680015, 16.43084320892478,
                   24.76722511418386, -6.594389125716872]])
    return A, C, CT, D, H


_A, _C, _CT, _D, _H = _coefficients()


if AVAILABLE:
    _A1 = types.Array(types.float64, 1, "C")
    _A2 = types.Array(types.float64, 2, "C")
    _VEC = types.FunctionType(types.void(types.float64, _A1, _A1, _A1))
    _MAT = types.FunctionType(types.void(types.float64, _A1, _A1, _A2))
    #: rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp, event_values
    _KERNEL_TUPLE = types.Tuple((_VEC, _MAT, _MAT, _VEC, _MAT, _VEC, _MAT, _MAT, _VEC))
    _KERNEL_LIST = types.ListType(_KERNEL_TUPLE)

    def _pack_py(rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp, event_values):
        out = _TypedList.empty_list(_KERNEL_TUPLE)
        out.append((rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp,
                    event_values))
        return out

    _pack = njit(_KERNEL_LIST(_VEC, _MAT, _MAT, _VEC, _MAT, _VEC, _MAT, _MAT, _VEC),
                 cache=True, error_model="numpy")(_pack_py)

    # ------------------------------------------------------------------ linear algebra

    @njit(cache=True, error_model="numpy")
    def _lu(E, piv):
        """In-place LU with partial pivoting (LAPACK's row-swap order); False if singular."""
        n = E.shape[0]
        for c in range(n):
            r = c
            big = abs(E[c, c])
            for i in range(c + 1, n):
                if abs(E[i, c]) > big:
                    big = abs(E[i, c])
                    r = i
            piv[c] = r
            if not (big > 0.0) or not math.isfinite(big):
                return False
            if r != c:
                for j in range(n):
                    tmp = E[c, j]
                    E[c, j] = E[r, j]
                    E[r, j] = tmp
            d = E[c, c]
            for i in range(c + 1, n):
                E[i, c] /= d
                li = E[i, c]
                if li != 0.0:
                    for j in range(c + 1, n):
                        E[i, j] -= li * E[c, j]
        return True

    @njit(cache=True, error_model="numpy")
    def _lu_solve(E, piv, b):
        n = E.shape[0]
        for c in range(n):
            r = piv[c]
            if r != c:
                tmp = b[c]
                b[c] = b[r]
                b[r] = tmp
        for i in range(n):
            s = b[i]
            for j in range(i):
                s -= E[i, j] * b[j]
            b[i] = s
        for i in range(n - 1, -1, -1):
            s = b[i]
            for j in range(i + 1, n):
                s -= E[i, j] * b[j]
            b[i] = s / E[i, i]

    # ------------------------------------------------------------------ model pieces

    @njit(cache=True, error_model="numpy")
    def _sens_slope(J, Fp, S, sidx, a, out):
        """out (k, n) = J S_q + F_p[:, sidx_q] a_q for every sensitivity column q."""
        k, n = S.shape
        for q in range(k):
            c = sidx[q]
            for i in range(n):
                s = Fp[i, c] * a[q]
                for j in range(n):
                    s += J[i, j] * S[q, j]
                out[q, i] = s

    @njit(cache=True, error_model="numpy")
    def _hermite(theta, h, y0, f0, y1, f1, out):
        s = theta
        h00 = 2 * s**3 - 3 * s**2 + 1
        h10 = s**3 - 2 * s**2 + s
        h01 = -2 * s**3 + 3 * s**2
        h11 = s**3 - s**2
        for i in range(y0.size):
            out[i] = h00 * y0[i] + h10 * h * f0[i] + h01 * y1[i] + h11 * h * f1[i]

    @njit(cache=True, error_model="numpy")
    def _dense(theta, y0, y1, K, out):
        """Rodas4's continuous extension at t0 + theta h from the accepted step's stages K
        (6, len(y0)): order 3, accurate where a cubic Hermite through the ends is not (a fast
        component in quasi-steady state over a long step)."""
        for i in range(y0.size):
            c1 = 0.0
            c2 = 0.0
            for j in range(5):
                c1 += _H[0, j] * K[j, i]
                c2 += _H[1, j] * K[j, i]
            out[i] = (1 - theta) * y0[i] + theta * (y1[i] + (1 - theta) * (c1 + theta * c2))

    @njit(cache=True, error_model="numpy")
    def _all_finite(x):
        for v in x.ravel():
            if not math.isfinite(v):
                return False
        return True

    # ------------------------------------------------------------------ one Rodas4 attempt

    @njit(cache=True, error_model="numpy")
    def _attempt(K, t, h, y, S, p, sidx, a, f0, J0, Fp0, g0, ft, gt, autonomous, rtol, atol,
                 coef_A, coef_C, coef_CT, coef_D, W, Ky, KS, yi, Si, fi, Ji, Fpi, gi, ry, rS,
                 y_new, S_new, piv):
        """One Rodas4 step of size h from (t, y, S); y_new/S_new and the error norm (inf when
        the step cannot be taken: singular matrix or non-finite values).

        ``J0``, ``Fp0`` are the Jacobian and ``F_p`` at (t, y); ``g0`` the sensitivities'
        slope there; ``ft``/``gt`` the time derivatives (unused when autonomous).
        """
        rhs, jac, dfdp = K[0], K[1], K[2]
        n = y.size
        k = S.shape[0]
        inv = 1.0 / (_GAMMA * h)
        for i in range(n):
            for j in range(n):
                W[i, j] = -J0[i, j]
            W[i, i] += inv
        if not _all_finite(W):
            return np.inf
        if not _lu(W, piv):
            return np.inf
        eps_root = math.sqrt(2.220446049250313e-16)
        ynorm = 1.0
        for i in range(n):
            ynorm = max(ynorm, abs(y[i]))
        for st in range(6):
            if st == 0:
                for i in range(n):
                    ry[i] = f0[i]
                for q in range(k):
                    for i in range(n):
                        rS[q, i] = g0[q, i]
            else:
                if st <= 4:
                    for i in range(n):
                        v = y[i]
                        for j in range(st):
                            v += coef_A[st, j] * Ky[j, i]
                        yi[i] = v
                    for q in range(k):
                        for i in range(n):
                            v = S[q, i]
                            for j in range(st):
                                v += coef_A[st, j] * KS[j, q, i]
                            Si[q, i] = v
                else:
                    # stage 6 starts from the embedded solution: stage-5 point + K5
                    for i in range(n):
                        yi[i] += Ky[4, i]
                    for q in range(k):
                        for i in range(n):
                            Si[q, i] += KS[4, q, i]
                ts = t + coef_CT[st] * h
                rhs(ts, yi, p, fi)
                if k:
                    jac(ts, yi, p, Ji)
                    dfdp(ts, yi, p, Fpi)
                    _sens_slope(Ji, Fpi, Si, sidx, a, gi)
                for i in range(n):
                    v = fi[i]
                    for j in range(st):
                        v += (coef_C[st, j] / h) * Ky[j, i]
                    ry[i] = v
                for q in range(k):
                    for i in range(n):
                        v = gi[q, i]
                        for j in range(st):
                            v += (coef_C[st, j] / h) * KS[j, q, i]
                        rS[q, i] = v
            if not autonomous and coef_D[st] != 0.0:
                dh = h * coef_D[st]
                for i in range(n):
                    ry[i] += dh * ft[i]
                for q in range(k):
                    for i in range(n):
                        rS[q, i] += dh * gt[q, i]
            _lu_solve(W, piv, ry)
            for i in range(n):
                Ky[st, i] = ry[i]
            if k:
                # H u: directional difference of J S_q + F_p a at (t, y) along u = Ky[st]
                unorm = 0.0
                for i in range(n):
                    unorm = max(unorm, abs(ry[i]))
                if unorm > 0.0 and math.isfinite(unorm):
                    delta = eps_root * ynorm / unorm
                    for i in range(n):
                        fi[i] = y[i] + delta * ry[i]   # fi: scratch for the perturbed point
                    jac(t, fi, p, Ji)
                    dfdp(t, fi, p, Fpi)
                    for q in range(k):
                        c = sidx[q]
                        for i in range(n):
                            v = (Fpi[i, c] - Fp0[i, c]) * a[q]
                            for j in range(n):
                                v += (Ji[i, j] - J0[i, j]) * S[q, j]
                            rS[q, i] += v / delta
                for q in range(k):
                    row = rS[q]
                    _lu_solve(W, piv, row)
                    for i in range(n):
                        KS[st, q, i] = row[i]
            if st == 0:
                for i in range(n):
                    yi[i] = y[i]
                for q in range(k):
                    for i in range(n):
                        Si[q, i] = S[q, i]
        # order-4 solution; K6 is its difference from the order-3 one
        total = 0.0
        for i in range(n):
            y_new[i] = yi[i] + Ky[5, i]
            sc = atol + rtol * max(abs(y[i]), abs(y_new[i]))
            total += (Ky[5, i] / sc) ** 2
        for q in range(k):
            for i in range(n):
                S_new[q, i] = Si[q, i] + KS[5, q, i]
                sc = atol + rtol * max(abs(S[q, i]), abs(S_new[q, i]))
                total += (KS[5, q, i] / sc) ** 2
        err = math.sqrt(total / (n * (1 + k)))
        if not math.isfinite(err) or not _all_finite(y_new) or not _all_finite(S_new):
            return np.inf
        return err

    @njit(cache=True, error_model="numpy")
    def _point(K, t, y, S, p, sidx, a, f, J, Fp, g, ft, gt, autonomous, tmp_f, tmp_J,
               tmp_Fp, tmp_g):
        """Slopes at (t, y, S): f, and with sensitivities J, F_p and g = J S + F_p a; the
        time derivatives ft, gt by a forward difference unless autonomous. Returns the
        number of rhs evaluations."""
        rhs, jac, dfdp = K[0], K[1], K[2]
        k = S.shape[0]
        rhs(t, y, p, f)
        jac(t, y, p, J)
        if k:
            dfdp(t, y, p, Fp)
            _sens_slope(J, Fp, S, sidx, a, g)
        if autonomous:
            return 1
        dt = math.sqrt(2.220446049250313e-16) * max(1.0, abs(t))
        rhs(t + dt, y, p, tmp_f)
        for i in range(y.size):
            ft[i] = (tmp_f[i] - f[i]) / dt
        if k:
            jac(t + dt, y, p, tmp_J)
            dfdp(t + dt, y, p, tmp_Fp)
            _sens_slope(tmp_J, tmp_Fp, S, sidx, a, tmp_g)
            for q in range(k):
                for i in range(y.size):
                    gt[q, i] = (tmp_g[q, i] - g[q, i]) / dt
        return 2

    @njit(cache=True, error_model="numpy")
    def _first_step(y, f, rtol, atol, max_step, span):
        """Hairer's rule from the sizes of y and f (as progression._rodas)."""
        n = y.size
        d0 = 0.0
        d1 = 0.0
        for i in range(n):
            sc = atol + rtol * abs(y[i])
            d0 += (y[i] / sc) ** 2
            d1 += (f[i] / sc) ** 2
        d0 = math.sqrt(d0 / n)
        d1 = math.sqrt(d1 / n)
        if d0 > 1e-5 and d1 > 1e-5:
            h = 0.01 * d0 / d1
        else:
            h = 1e-6
        h = min(h, max_step)
        if not (math.isfinite(h) and h > 0):
            h = 1e-6 * max(1.0, abs(span))
        return h

    @njit(cache=True, error_model="numpy")
    def _record(K, tj, yj, Sj, p, sidx, a, record_obs, j, Yout, Sout, Oout, DOout, obuf,
                Dy, Dp):
        """Store the outputs at output index j from the state yj and sensitivities Sj."""
        n = yj.size
        k = Sj.shape[0]
        for i in range(n):
            Yout[j, i] = yj[i]
        for q in range(k):
            for i in range(n):
                Sout[j, q, i] = Sj[q, i]
        if not record_obs:
            return
        K[5](tj, yj, p, obuf)
        nk = obuf.size
        for r in range(nk):
            Oout[j, r] = obuf[r]
        if k:
            K[6](tj, yj, p, Dy)
            K[7](tj, yj, p, Dp)
            for r in range(nk):
                for q in range(k):
                    v = Dp[r, sidx[q]] * a[q]
                    for i in range(n):
                        v += Dy[r, i] * Sj[q, i]
                    DOout[j, r, q] = v

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
            if err > 0:
                fac = _SAFETY * err ** -0.25
            else:
                fac = _FAC_MAX
            if not math.isfinite(fac):
                fac = _FAC_MIN
            fac = min(max(fac, _FAC_MIN), _FAC_MAX)
            if rejected:
                fac = min(fac, 1.0)
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
                            if gb == ga:
                                guess = 0.5 * (a_t + b_t)
                            else:
                                guess = b_t - gb * (b_t - a_t) / (gb - ga)
                            guess = min(max(guess, a_t), b_t)
                            _dense((guess - t) / hh, y, y_new, Ky, ycross)
                            event_values(guess, ycross, p, ev_buf)
                            gm = ev_buf[e]
                            if gm == 0.0:
                                a_t = guess
                                b_t = guess
                                break
                            if (gm > 0) == (ga > 0):
                                a_t = guess
                                ga = gm
                                if side == 1:
                                    gb *= 0.5
                                side = 1
                            else:
                                b_t = guess
                                gb = gm
                                if side == -1:
                                    ga *= 0.5
                                side = -1
                            if b_t - a_t <= tol:
                                break
                        found_e[nc] = e
                        found_t[nc] = 0.5 * (a_t + b_t)
                        nc += 1
                    if nc:
                        for c in range(nc):
                            if ev_term[found_e[c]] and found_t[c] <= t_stop:
                                t_stop = found_t[c]
                                terminated = True
                        # this step's events in time order, up to a terminal one
                        order = np.argsort(found_t[:nc], kind="mergesort")
                        for c in order:
                            if terminated and found_t[c] > t_stop:
                                continue
                            if n_found < ev_index.size:
                                ev_index[n_found] = found_e[c]
                                ev_time[n_found] = found_t[c]
                            n_found += 1
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
                    f[i] = f1[i]
                    ft[i] = ft1[i]
                    for c in range(n):
                        J[i, c] = J1[i, c]
                for q in range(k):
                    for i in range(n):
                        S[q, i] = S_new[q, i]
                        g[q, i] = g1[q, i]
                        gt[q, i] = gt1[q, i]
                if k:
                    for i in range(n):
                        for c in range(Q):
                            Fp[i, c] = Fp1[i, c]
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

    # ------------------------------------------------------------------ rodas_states

    @njit(cache=True, error_model="numpy")
    def _grid(KL, P_all, times, breaks, hidden, n_hidden, rtol, atol, max_step, max_steps,
              autonomous, states, status, fail_t, fail_y, fail_code, counts):
        """progression._rodas.rodas_states, one subject after another (same algorithm).

        P_all (m, Q) parameters with the hidden rows at t0; breaks (m, B) each subject's
        covariate changes (+inf padded); hidden (m, B, H) the hidden rows from each break on.
        Writes states (m, n, T), status, failures (time, y before/after, code) and counts
        [steps (largest), nfev, njev, nlu].
        """
        K = KL[0]
        rhs, jac, initial = K[0], K[1], K[3]
        m, Q = P_all.shape
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
        max_steps_seen = 0
        for s in range(m):
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
                continue
            if status[s] == _FAILED:
                continue
            t = t0
            nxt = 1
            up = 0
            while breaks[s, up] <= t0:
                up += 1
            h = _first_step(y, f, rtol, atol, max_step, t_end - t0)
            rejected = False
            steps = 0
            need_jac = True
            while True:
                next_break = breaks[s, up]
                hh = min(h, next_break - t)
                cut = hh >= next_break - t
                if need_jac:
                    jac(t, y, p, J)
                    counts[2] += 1
                    if not autonomous:
                        dt = dt_eps * max(1.0, abs(t))
                        rhs(t + dt, y, p, tmp)
                        counts[1] += 1
                        for i in range(n):
                            ft[i] = (tmp[i] - f[i]) / dt
                    need_jac = False
                err = _attempt(K, t, hh, y, S, p, sidx, a, f, J, Fp, g, ft, gt, autonomous,
                               rtol, atol, coef_A, coef_C, coef_CT, coef_D, W, Ky, KS, yi,
                               Si, fi, Ji, Fpi, gi, ry, rS, y_new, S_new, piv)
                counts[1] += 5
                counts[3] += 1
                steps += 1
                ok = err <= 1.0
                if err > 0:
                    fac = _SAFETY * err ** -0.25
                else:
                    fac = _FAC_MAX
                if not math.isfinite(fac):
                    fac = _FAC_MIN
                fac = min(max(fac, _FAC_MIN), _FAC_MAX)
                if rejected:
                    fac = min(fac, 1.0)
                y_start_saved = False
                last = False
                if ok:
                    t_new = next_break if cut else t + hh
                    last = t_new >= t_end
                    rhs(t_new, y_new, p, f1)
                    counts[1] += 1
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
                    need_jac = True
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
            max_steps_seen = max(max_steps_seen, steps)
        counts[0] = max_steps_seen


_PACKED: dict = {}


def packed_kernels(kernels):
    """The kernels of a model as the typed list the compiled integrators take (built once per
    kernels object and kept: the conversion of nine dispatchers costs ~0.3 ms)."""
    key = id(kernels)
    hit = _PACKED.get(key)
    if hit is not None and hit[0] is kernels:
        return hit[1]
    packed = _pack(kernels.rhs, kernels.jac, kernels.dfdp, kernels.initial,
                   kernels.dinitial_dp, kernels.observe, kernels.dobs_dy, kernels.dobs_dp,
                   kernels.event_values)
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


if AVAILABLE:
    segment, grid_states = _quiet(_segment), _quiet(_grid)


# ---------------------------------------------------------------------- the Python driver

def usable(model) -> bool:
    """Whether the compiled per-subject path can run this model (numba and kernels)."""
    return AVAILABLE and getattr(model, "kernels", None) is not None


def _autonomous(model) -> bool:
    from .._rodas import _autonomous as autonomous

    return autonomous(model)


def solve_small_batch(model, table, index, m_total, times, t0, initial, switches, rtol, atol,
                      max_step, sens_index, max_steps, terminal_events, lean=False,
                      label=True, covariates=None, events=True) -> dict:
    """:func:`~._stacked._solve_batch`'s work, one subject at a time with compiled Rodas4.

    Same arguments (less ``method``) and the same result dict, so ``_merge`` and every caller
    work unchanged: switches (parameter scale/add/set, state jumps, doses expanded into
    switches, parameter-dependent switch times) are applied between segments by the same
    :func:`~._switches._apply_switch`, with the sensitivities carried across them; covariate
    changes end segments too; events are located per step; a failure is the subject's status
    and message. ``max_steps`` counts the steps of one segment, as in the stacked path.
    """
    from ._diagnose import _diagnose
    from ._switches import _apply_switch, _as_subject_values, _subject_mask

    kern = model.kernels
    KL = packed_kernels(kern)
    m, n, T = table.shape[0], model.n_states, times.size
    P = table.shape[1]
    sidx = np.ascontiguousarray(sens_index, dtype=np.int64)
    k = sidx.size
    n_obs = 0 if lean else len(model.observable_names)
    model_events = () if lean or not events else tuple(model.events)
    ev_sign = np.array([e.sign for e in model_events], dtype=np.int64)
    ev_term = np.array([bool(e.terminal and terminal_events) for e in model_events],
                       dtype=np.bool_)
    use_events = bool(model_events)
    autonomous = _autonomous(model)
    t_end = float(times[-1])
    times = np.ascontiguousarray(times, dtype=float)

    states = np.full((m, n, T), np.nan)
    obs = np.full((m, n_obs, T), np.nan)
    dstates = np.full((m, n, k, T), np.nan) if k else np.zeros((m, n, 0, T))
    dobs = np.full((m, n_obs, k, T), np.nan) if k else np.zeros((m, n_obs, 0, T))
    status = np.zeros(m, dtype=int)
    message = ["ok"] * m
    found = {e.name: [[] for _ in range(m)] for e in model_events}
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}
    sys = _SwitchTarget(k, np.asarray(sens_index, dtype=int))
    masks = [_subject_mask(sw.subjects, m_total) for sw in switches]
    info_i = np.zeros(9, dtype=np.int64)
    info_f = np.zeros(3)
    fail_y = np.zeros((2, n))
    own_breaks = covariates.subject_breaks(index) if covariates is not None else None

    for s, i in enumerate(np.asarray(index)):
        p = np.array(table[s], dtype=float)     # a copy: switches change it in place
        if covariates is not None:
            p = covariates.extend(p[:, None], t0, [i])[:, 0]
        p = np.ascontiguousarray(p, dtype=float)
        Q = p.size
        a_all = np.ones(Q)
        y = np.zeros(n)
        kern.initial(float(t0), y, p, y)
        if k:
            D = np.zeros((n, Q))
            kern.dinitial_dp(float(t0), y, p, D)
            S = np.ascontiguousarray(D[:, sidx].T)
        else:
            S = np.zeros((0, n))
        for name, value in initial.items():
            j = model.state_index(name)
            y[j] = _as_subject_values(value, m_total, f"initial[{name!r}]")[i]
            if k:
                S[:, j] = 0.0
        mine = [(sw, mask) for sw, mask in zip(switches, masks, strict=True) if mask[i]]
        bounds = {float(sw.time) for sw, _ in mine if t0 <= sw.time <= t_end}
        if own_breaks is not None:
            b = own_breaks[s]
            bounds |= {float(v) for v in b[(b > t0) & (b <= t_end)]}
        edges = sorted({float(t0), *(b for b in bounds if b > t0),
                        *([t_end] if t_end > t0 else [])})
        Yout = np.full((T, n), np.nan)
        Sout = np.full((T, k, n), np.nan)
        Oout = np.full((T, n_obs), np.nan)
        DOout = np.full((T, n_obs, k), np.nan)
        cap = 16
        ev_index = np.zeros(cap, dtype=np.int64)
        ev_time = np.zeros(cap)
        j_next = 0
        for seg, seg_start in enumerate(edges):
            if covariates is not None and seg:
                p[P:] = covariates.hidden(seg_start, [i])[:, 0]
            for sw, _ in mine:
                if float(sw.time) == seg_start:
                    y2, S3 = _apply_switch(model, sw, p[:, None], a_all[:, None], y[:, None],
                                           S[None] if k else None, sys, np.array([i]),
                                           m_total)
                    y = np.ascontiguousarray(y2[:, 0], dtype=float)
                    if k:
                        S = np.ascontiguousarray(S3[0], dtype=float)
            last = seg == len(edges) - 1
            seg_end = seg_start if last else edges[seg + 1]
            a = np.ascontiguousarray(a_all[sidx])
            y_start, S_start = y.copy(), S.copy()
            crashed = None
            while True:
                try:
                    segment(KL, seg_start, seg_end, y, S, p, sidx, a, times, j_next, Yout,
                            Sout, Oout, DOout, not lean, ev_sign, ev_term, use_events,
                            ev_index, ev_time, float(rtol), float(atol), float(max_step),
                            int(max_steps), autonomous, info_i, info_f, fail_y)
                except (ArithmeticError, ValueError) as exc:
                    # not expected (the kernels and this code use numpy's error model); a
                    # failure of this subject all the same, never an exception for callers
                    crashed = f"{type(exc).__name__}: {exc}"
                    break
                if info_i[6] <= cap:
                    break
                # more events in this segment than the buffer holds: again, with room
                cap = int(info_i[6])
                ev_index, ev_time = np.zeros(cap, dtype=np.int64), np.zeros(cap)
                y[:], S[:] = y_start, S_start
            if crashed is not None:
                status[s] = -1
                who = f" for subject {int(i)}" if label else ""
                message[s] = (f"integration failed{who} at t={seg_start:.10g} ({crashed}): "
                              + _diagnose(model, seg_start, seg_start, y_start, y_start, p))
                break
            j_next = int(info_i[1])
            stats["steps"] += int(info_i[2])
            stats["nfev"] += int(info_i[3])
            stats["njev"] += int(info_i[4])
            stats["nlu"] += int(info_i[5])
            for c in range(int(info_i[6])):
                found[model_events[ev_index[c]].name][s].append(float(ev_time[c]))
            code = int(info_i[0])
            if code == 1:
                e = model_events[ev_index[int(info_i[6]) - 1]].name
                status[s] = 1
                message[s] = f"terminal event {e!r} at t={info_f[0]:.6g}"
                break
            if code == -1:
                status[s] = -1
                reason = FAIL_REASONS[int(info_i[7])].format(max_steps=max_steps)
                who = f" for subject {int(i)}" if label else ""
                message[s] = (f"integration failed{who} at t={info_f[1]:.10g} ({reason}): "
                              + _diagnose(model, float(info_f[1]), float(info_f[2]),
                                          fail_y[0].copy(), fail_y[1].copy(), p,
                                          bool(info_i[8])))
                break
        states[s] = Yout.T
        if n_obs:
            obs[s] = Oout.T
        if k:
            dstates[s] = Sout.transpose(2, 1, 0)
            if n_obs:
                dobs[s] = DOout.transpose(1, 2, 0)
    if lean:
        ev_out = {}
    elif not model_events:
        ev_out = {e.name: [np.array([]) for _ in range(m)] for e in model.events}
    else:
        ev_out = {name: [np.array(v) for v in lists] for name, lists in found.items()}
    return {"states": states, "observables": obs, "status": status, "message": message,
            "events": ev_out, "dstates": dstates, "dobs": dobs, "stats": stats,
            "failed": None, "failure": None, "method": METHOD_NAME}


#: What :attr:`Simulation.stats` ``["method"]`` says when this path ran.
METHOD_NAME = "Rodas4 (compiled)"


class _SwitchTarget:
    """The two attributes :func:`~._switches._apply_switch` reads of a stacked system."""

    __slots__ = ("k", "sens_index")

    def __init__(self, k, sens_index):
        self.k, self.sens_index = k, sens_index
