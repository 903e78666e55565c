"""Compiled Rodas4, the numerics of one step: coefficients, LU, a step attempt with its error
estimate, the continuous extension and the first step size (numba).

Used by :mod:`._rodas4_loops` (a segment of :func:`~progression.simulate.simulate`, the grid of
:func:`~progression._rodas.rodas_states`), driven from Python by :mod:`._compiled`.

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

__all__ = ["AVAILABLE", "FAIL_REASONS"]

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
    _FUSED = types.FunctionType(types.void(types.float64, _A1, _A1, _A1, _A2))
    #: rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp, event_values, rhs_jac
    _KERNEL_TUPLE = types.Tuple((_VEC, _MAT, _MAT, _VEC, _MAT, _VEC, _MAT, _MAT, _VEC, _FUSED))
    _KERNEL_LIST = types.ListType(_KERNEL_TUPLE)

    def _pack_py(rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp, event_values,
                 rhs_jac):
        out = _TypedList.empty_list(_KERNEL_TUPLE)
        out.append((rhs, jac, dfdp, initial, dinitial_dp, observe, dobs_dy, dobs_dp,
                    event_values, rhs_jac))
        return out

    _pack = njit(_KERNEL_LIST(_VEC, _MAT, _MAT, _VEC, _MAT, _VEC, _MAT, _MAT, _VEC, _FUSED),
                 cache=True, error_model="numpy")(_pack_py)

    # ------------------------------------------------------------------ linear algebra

    @njit(cache=True, error_model="numpy")
    def _step_factor(err, rejected):
        """Step-size factor after an attempt with error norm ``err`` (clipped to
        [_FAC_MIN, _FAC_MAX]; no growth right after a rejection)."""
        fac = _SAFETY * err ** -0.25 if err > 0 else _FAC_MAX
        if not math.isfinite(fac):
            fac = _FAC_MIN
        fac = min(max(fac, _FAC_MIN), _FAC_MAX)
        if rejected:
            fac = min(fac, 1.0)
        return fac

    @njit(cache=True, error_model="numpy", inline="always")
    def _illinois_guess(a_t, b_t, ga, gb):
        """Next point of the Illinois (modified regula falsi) search for an event's root
        between ``a_t`` (value ``ga``) and ``b_t`` (value ``gb``), kept inside the bracket."""
        if gb == ga:
            guess = 0.5 * (a_t + b_t)
        else:
            guess = b_t - gb * (b_t - a_t) / (gb - ga)
        return min(max(guess, a_t), b_t)

    @njit(cache=True, error_model="numpy", inline="always")
    def _illinois_update(guess, gm, a_t, b_t, ga, gb, side, tol):
        """The bracket after the event function is ``gm`` at ``guess``: the retained end's
        value halved when the same end is kept twice (Illinois). Returns ``(a_t, b_t, ga, gb,
        side, done)``; shared by the Rodas4 and DOP853 loops, which differ only in their
        continuous extensions."""
        if gm == 0.0:
            return guess, guess, ga, gb, side, True
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
        return a_t, b_t, ga, gb, side, b_t - a_t <= tol

    @njit(cache=True, error_model="numpy")
    def _take_events(found_e, found_t, nc, ev_term, t_stop, terminated, ev_index, ev_time,
                     n_found):
        """Record the ``nc`` events located in one step (``found_e``, ``found_t``) in time
        order up to the first terminal one (which moves ``t_stop``); shared by the Rodas4
        and DOP853 loops. Returns ``(t_stop, terminated, n_found)``; ``n_found`` counts
        events beyond the buffers too (the caller reports the overflow)."""
        for c in range(nc):
            if ev_term[found_e[c]] and found_t[c] <= t_stop:
                t_stop = found_t[c]
                terminated = True
        order = np.argsort(found_t[:nc], kind="mergesort")
        for c in order:
            if terminated and found_t[c] > t_stop:
                continue
            if n_found < ev_index.size:
                ev_index[n_found] = found_e[c]
                ev_time[n_found] = found_t[c]
            n_found += 1
        return t_stop, terminated, n_found

    @njit(cache=True, error_model="numpy")
    def _lu(E, piv, nd):
        """In-place LU with partial pivoting (LAPACK's row-swap order) of ``E = I/(gamma h)
        - J`` whose last ``n - nd`` columns are zero but for the diagonal (states nothing
        depends on, e.g. a cumulative hazard: their Jacobian columns are zero). Only the
        leading ``nd x nd`` block is factorised (pivots from its rows), the trailing rows are
        left as they are for :func:`_lu_solve`'s block substitution; with ``nd == n`` this is
        the plain LU. The diagonal of U is stored as its reciprocal (the solves multiply).
        False if singular."""
        n = E.shape[0]
        for c in range(nd):
            r = c
            big = abs(E[c, c])
            for i in range(c + 1, nd):
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
            d = 1.0 / E[c, c]
            E[c, c] = d
            for i in range(c + 1, nd):
                E[i, c] *= d
                li = E[i, c]
                if li != 0.0:
                    for j in range(c + 1, nd):
                        E[i, j] -= li * E[c, j]
        for c in range(nd, n):
            piv[c] = c
            d = E[c, c]
            if not (abs(d) > 0.0) or not math.isfinite(d):
                return False
            E[c, c] = 1.0 / d
        return True

    @njit(cache=True, error_model="numpy")
    def _lu_solve(E, piv, b, nd):
        """Solve with :func:`_lu`'s factors: the leading block by forward and back
        substitution, then each trailing row ``b_q = (b_q - E[q, :nd] x) / E[q, q]``."""
        n = E.shape[0]
        for c in range(nd):
            r = piv[c]
            if r != c:
                tmp = b[c]
                b[c] = b[r]
                b[r] = tmp
        for i in range(nd):
            s = b[i]
            for j in range(i):
                s -= E[i, j] * b[j]
            b[i] = s
        for i in range(nd - 1, -1, -1):
            s = b[i]
            for j in range(i + 1, nd):
                s -= E[i, j] * b[j]
            b[i] = s * E[i, i]
        for q in range(nd, n):
            s = b[q]
            for j in range(nd):
                s -= E[q, j] * b[j]
            b[q] = s * E[q, q]

    @njit(cache=True, error_model="numpy")
    def _dense_columns(J):
        """``J``'s size without its trailing all-zero columns: the states from there on
        appear in no right-hand side at this point (see :func:`_lu`)."""
        n = J.shape[0]
        nd = n
        while nd > 0:
            for i in range(n):
                if J[i, nd - 1] != 0.0:
                    return nd
            nd -= 1
        return nd

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

    @njit(cache=True, error_model="numpy", inline="always")
    def _stage_sum(v, st, w0, w1, w2, w3, w4, k0, k1, k2, k3, k4):
        """``v + sum_{j < st} w_j k_j`` summed in the order of j (as a loop over j): the
        stage sums of :func:`_attempt` with the weights hoisted out of the loop over states.
        Terms j >= st are not added (their stages may hold anything, NaN included)."""
        v += w0 * k0
        if st > 1:
            v += w1 * k1
            if st > 2:
                v += w2 * k2
                if st > 3:
                    v += w3 * k3
                    if st > 4:
                        v += w4 * k4
        return v

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
        # a non-finite entry of W either stops the LU (a non-finite pivot) or reaches the
        # stages and the error norm, which is then not finite: the attempt returns inf
        nd = _dense_columns(J0)
        if not _lu(W, piv, nd):
            return np.inf
        eps_root = math.sqrt(2.220446049250313e-16)
        ynorm = 1.0
        if k:
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
                    # the stage weights as scalars (loaded once per stage, not per state);
                    # the sums in the same order as a loop over j < st
                    a0, a1, a2, a3 = (coef_A[st, 0], coef_A[st, 1], coef_A[st, 2],
                                      coef_A[st, 3])
                    for i in range(n):
                        yi[i] = _stage_sum(y[i], st, a0, a1, a2, a3, 0.0, Ky[0, i],
                                           Ky[1, i], Ky[2, i], Ky[3, i], 0.0)
                    for q in range(k):
                        for i in range(n):
                            Si[q, i] = _stage_sum(S[q, i], st, a0, a1, a2, a3, 0.0,
                                                  KS[0, q, i], KS[1, q, i], KS[2, q, i],
                                                  KS[3, q, i], 0.0)
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
                # the couplings C[st, j] / h divided once per stage, not once per state
                c0, c1, c2, c3, c4 = (coef_C[st, 0] / h, coef_C[st, 1] / h,
                                      coef_C[st, 2] / h, coef_C[st, 3] / h,
                                      coef_C[st, 4] / h)
                for i in range(n):
                    ry[i] = _stage_sum(fi[i], st, c0, c1, c2, c3, c4, Ky[0, i], Ky[1, i],
                                       Ky[2, i], Ky[3, i], Ky[4, i])
                for q in range(k):
                    for i in range(n):
                        rS[q, i] = _stage_sum(gi[q, i], st, c0, c1, c2, c3, c4, KS[0, q, i],
                                              KS[1, q, i], KS[2, q, i], KS[3, q, i],
                                              KS[4, q, i])
            if not autonomous and coef_D[st] != 0.0:
                dh = h * coef_D[st]
                for i in range(n):
                    ry[i] += dh * ft[i]
                for q in range(k):
                    for i in range(n):
                        rS[q, i] += dh * gt[q, i]
            _lu_solve(W, piv, ry, nd)
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
                    _lu_solve(W, piv, row, nd)
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
        K[9](t, y, p, f, J)     # rhs and jac from one elimination
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
