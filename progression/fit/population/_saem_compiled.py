"""Compiled fixed-step RK4 predictions for SAEM's kernels: every row in one numba call.

The same scheme as the numpy lockstep path of :class:`~._saem_model.RK4Predictions` (classical
RK4 from model time 0 with step ``h``, steps at ``k h``, cubic Hermite interpolation of the
states between the ends of the step that holds an observation, the observation in step
``min(floor(t / h), nsteps - 1)``, the observable through ``observe``, its log for log-normal
observables), but each row is integrated on its own with the model's per-subject kernels
(``model.kernels.rhs``, ``initial``, ``observe``: the contract in
``progression/model/_kernels.py``) and only as far as its own last observation. Rows run in
parallel (``numba.prange`` over rows; each row's arithmetic does not depend on the others or
on the thread count, so the results do not either), or through a serial twin of the same row
function in a forked worker, where GNU OpenMP must not start (:func:`_parallel`). The kernels
arrive as the typed list of :func:`progression.simulate._compiled.packed_kernels`, so these
functions are compiled once per machine for every model (``cache=True``).

Without numba this module imports, :data:`AVAILABLE` is False and nothing here is used (the
numpy lockstep path is the fallback).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ... import _omp  # noqa: F401 - passive OpenMP waits, set before numba starts threads

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised by the numpy-backend runs
    numba = None
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "rk4_rows", "rk4_crossing"]

#: Rows a thread takes at a time (numba's dynamic scheduling of the row loops): rows differ
#: in length (follow-up, early rejection), so equal static shares leave a thread idle at the
#: end; results do not depend on it (each row is one thread's work).
CHUNK = 4


if AVAILABLE:
    @njit(cache=True, error_model="numpy")
    def _rk4_step(rhs, t0, h, y, p, f0, s2, s3, s4, tmp, y1):
        """One classical RK4 step from (t0, y) with slope f0 at y: the new states in y1."""
        n = y.size
        for i in range(n):
            tmp[i] = y[i] + 0.5 * h * f0[i]
        rhs(t0 + 0.5 * h, tmp, p, s2)
        for i in range(n):
            tmp[i] = y[i] + 0.5 * h * s2[i]
        rhs(t0 + 0.5 * h, tmp, p, s3)
        for i in range(n):
            tmp[i] = y[i] + h * s3[i]
        rhs(t0 + h, tmp, p, s4)
        for i in range(n):
            y1[i] = y[i] + (h / 6.0) * (f0[i] + 2.0 * s2[i] + 2.0 * s3[i] + s4[i])

    @njit(cache=True, error_model="numpy")
    def _sorted_slots(r, tm, mask, slots):
        """Row ``r``'s observation slots in time order into ``slots``; their number.
        Insertion sort: the slots are usually sorted already."""
        m = 0
        for j in range(tm.shape[1]):
            if mask[r, j]:
                slots[m] = j
                m += 1
        for a in range(1, m):
            v = slots[a]
            b = a - 1
            while b >= 0 and tm[r, slots[b]] > tm[r, v]:
                slots[b + 1] = slots[b]
                b -= 1
            slots[b + 1] = v
        return m

    @njit(cache=True, error_model="numpy")
    def _hermite(u, h, y, f0, y1, f1, out):
        """The step's cubic Hermite interpolant of the states at fraction u of the step."""
        h00 = (1 + 2 * u) * (1 - u) ** 2
        h10 = u * (1 - u) ** 2
        h01 = u * u * (3 - 2 * u)
        h11 = u * u * (u - 1)
        for i in range(y.size):
            out[i] = h00 * y[i] + h10 * h * f0[i] + h01 * y1[i] + h11 * h * f1[i]


if AVAILABLE:
    @njit(cache=True, error_model="numpy")
    def _rk4_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, nsteps, n_states, n_obs,
                 reuse, states, out, k0s, Y0s, F0s, thr, qs, kind, stopped):
        """Row ``r`` of :func:`_rk4_rows_par` (its arguments; the kernels unpacked)."""
        n = tm.shape[1]
        p = P[r]
        stopped[r] = False
        bounded = thr[r] < np.inf
        y = np.empty(n_states)
        f0 = np.empty(n_states)
        s2 = np.empty(n_states)
        s3 = np.empty(n_states)
        s4 = np.empty(n_states)
        y1 = np.empty(n_states)
        f1 = np.empty(n_states)
        tmp = np.empty(n_states)
        yo = np.empty(n_states)
        obs = np.empty(n_obs)
        slots = np.empty(n, dtype=np.int64)
        m = _sorted_slots(r, tm, mask, slots)
        for j in range(n):
            out[r, j] = 0.0
        if m == 0:
            return
        if reuse[r]:
            for a in range(m):
                j = slots[a]
                for i in range(n_states):
                    yo[i] = states[r, j, i]
                observe(tm[r, j], yo, p, obs)
                v = obs[oi[r, j]]
                if lg[r, j]:
                    v = math.log(v)
                if not math.isfinite(v):
                    for jj in range(n):
                        out[r, jj] = np.nan
                    break
                out[r, j] = v
            return
        for j in range(n):
            for i in range(n_states):
                states[r, j, i] = np.nan
        # the data term's lower bound: every value's least term (log V >= log a^2,
        # the t's log1p >= 0, a censored value's -2 log P >= 0) until it is computed
        acc = 0.0
        if bounded:
            for a in range(m):
                j = slots[a]
                if kind[r, j] != 0:
                    acc += math.log(qs[r, j, 1]) + (qs[r, j, 4] if kind[r, j] == 2 else 0.0)
        k = 0
        if k0s[r] >= 0:
            # resume where the anchor's crossing pass was (the same RK4 steps, so the
            # same numbers as integrating again from model time 0)
            k = k0s[r]
            for i in range(n_states):
                y[i] = Y0s[r, i]
                f0[i] = F0s[r, i]
        else:
            initial(0.0, y, p, y)
            rhs(0.0, y, p, f0)
        good = True
        nxt = 0
        while nxt < m:
            t0 = k * h
            _rk4_step(rhs, t0, h, y, p, f0, s2, s3, s4, tmp, y1)
            rhs(t0 + h, y1, p, f1)
            while nxt < m:
                j = slots[nxt]
                t = tm[r, j]
                st = min(int(t / h), nsteps - 1)
                if st != k:
                    break
                _hermite((t - t0) / h, h, y, f0, y1, f1, yo)
                for i in range(n_states):
                    states[r, j, i] = yo[i]
                observe(t, yo, p, obs)
                v = obs[oi[r, j]]
                if lg[r, j]:
                    v = math.log(v)
                if not math.isfinite(v):
                    # the row fails, but its states are still integrated to the end:
                    # stored states must not depend on the observation parameters
                    good = False
                elif bounded and kind[r, j] != 0:
                    # the value's term replaces its least term in the bound (the same
                    # formulas as _Chains.data_term)
                    rr = qs[r, j, 0] - v
                    V = qs[r, j, 1] + qs[r, j, 2] * v * v
                    if kind[r, j] == 1:
                        q = rr * rr / V + math.log(V)
                    else:
                        nu = qs[r, j, 3]
                        q = ((nu + 1.0) * math.log1p(rr * rr / (nu * V)) + math.log(V)
                             + qs[r, j, 4])
                    acc += q - math.log(qs[r, j, 1]) - (qs[r, j, 4] if kind[r, j] == 2
                                                        else 0.0)
                    if acc > thr[r]:
                        stopped[r] = True
                out[r, j] = v
                nxt += 1
                if stopped[r]:
                    break
            if stopped[r]:
                good = False
                break
            finite = True
            for i in range(n_states):
                y[i] = y1[i]
                f0[i] = f1[i]
                if not (math.isfinite(y1[i]) and math.isfinite(f1[i])):
                    finite = False
            if not finite and nxt < m:
                good = False
                break
            k += 1
        if not good:
            for j in range(n):
                out[r, j] = np.nan

    @njit(parallel=True, cache=True, error_model="numpy")
    def _rk4_rows_par(KL, P, tm, mask, oi, lg, h, nsteps, n_states, n_obs, reuse, states,
                      out, k0s, Y0s, F0s, thr, qs, kind, stopped):
        """Predictions of every row, written into ``out`` (R, n): NaN rows for non-finite
        values.

        KL: packed kernels; P (R, Q) parameters; tm (R, n) model times; mask (R, n) which
        slots hold an observation; oi (R, n) observable index of each slot; lg (R, n) whether
        the log is taken; h step; nsteps the lockstep path's step count (the last step holds
        every later observation); n_states, n_obs: the kernels' sizes; reuse (R,): rows whose
        states at the slots are given in ``states`` (R, n, n_states) (only observed); the
        other rows' interpolated states are written there.

        Early rejection (:func:`rk4_rows`): a row with a finite ``thr[r]`` stops as soon as
        a lower bound of its data term exceeds it (``stopped[r]`` set, NaN row); ``qs`` (R,
        n, 5) per slot ``y, a^2, b^2, nu, t constant``, ``kind`` (R, n) 1 a Gaussian, 2 a
        Student-t uncensored value, 0 a slot that only adds a non-negative term.
        """
        K = KL[0]
        rhs, initial, observe = K[0], K[3], K[5]
        for r in prange(tm.shape[0]):
            _rk4_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, nsteps, n_states,
                     n_obs, reuse, states, out, k0s, Y0s, F0s, thr, qs, kind, stopped)

    @njit(cache=True, error_model="numpy")
    def _rk4_rows_ser(KL, P, tm, mask, oi, lg, h, nsteps, n_states, n_obs, reuse, states,
                      out, k0s, Y0s, F0s, thr, qs, kind, stopped):
        """:func:`_rk4_rows_par` on the calling thread (a forked worker: GNU OpenMP is
        not fork-safe; or one usable core)."""
        K = KL[0]
        rhs, initial, observe = K[0], K[3], K[5]
        for r in range(tm.shape[0]):
            _rk4_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, nsteps, n_states,
                     n_obs, reuse, states, out, k0s, Y0s, F0s, thr, qs, kind, stopped)


if AVAILABLE:
    @njit(cache=True, error_model="numpy")
    def _crossed(g0, g1, sign):
        """Whether an event condition going from g0 to g1 crosses zero in direction sign
        (-1 falling, +1 rising, 0 both), the integrators' convention (g1 on zero counts)."""
        if sign < 0:
            return g0 > 0.0 and g1 <= 0.0
        if sign > 0:
            return g0 < 0.0 and g1 >= 0.0
        return (g0 > 0.0 and g1 <= 0.0) or (g0 < 0.0 and g1 >= 0.0)

    @njit(cache=True, error_model="numpy")
    def _locate(events, e, sign, t0, h, y, f0, y1, f1, p, g0, g1, tmp, ev):
        """The bracket ``(a, b)`` (fractions of the step, ``b - a < 1e-13``) of the event's
        crossing on the step's cubic Hermite interpolant: ``a`` not crossed, ``b`` crossed.

        Illinois (modified regula falsi) steps inside the bracket, which converge
        superlinearly (about 8 evaluations of the event where bisection takes 44), with two
        safeguards that keep bisection's guarantee: a point closer than half the tolerance
        to an end is moved to half the tolerance (the bracket closes from that side), and a
        bracket that did not halve over two steps is bisected.
        """
        tol = 1e-13
        a, b = 0.0, 1.0
        ga, gb = g0, g1
        last = 0
        w2 = w1 = 2.0           # (the first steps are Illinois steps)
        for _ in range(200):
            w = b - a
            if w < tol:
                break
            if w > 0.5 * w2 or gb == ga:
                u = 0.5 * (a + b)
            else:
                u = (a * gb - b * ga) / (gb - ga)
            if not (u > a and u < b):
                u = 0.5 * (a + b)
            if u - a < 0.5 * tol:
                u = a + 0.5 * tol
            elif b - u < 0.5 * tol:
                u = b - 0.5 * tol
            _hermite(u, h, y, f0, y1, f1, tmp)
            events(t0 + u * h, tmp, p, ev)
            gu = ev[e]
            if _crossed(g0, gu, sign):
                b, gb = u, gu
                if last == 1:
                    ga *= 0.5          # Illinois: the end kept twice weighs half
                last = 1
            else:
                a, ga = u, gu
                if last == -1:
                    gb *= 0.5
                last = -1
            w2, w1 = w1, w
        return a, b

    @njit(cache=True, error_model="numpy")
    def _rk4_cross_row(r, rhs, initial, events, P, e, sign, h, nmax, n_states, n_events,
                       out, ks, Ys, Fs):
        """Row ``r`` of :func:`_rk4_crossing_par` (its arguments; the kernels unpacked)."""
        p = P[r]
        y = np.empty(n_states)
        f0 = np.empty(n_states)
        s2 = np.empty(n_states)
        s3 = np.empty(n_states)
        s4 = np.empty(n_states)
        y1 = np.empty(n_states)
        f1 = np.empty(n_states)
        tmp = np.empty(n_states)
        ev = np.empty(n_events)
        out[r] = np.nan
        ks[r] = -1
        initial(0.0, y, p, y)
        rhs(0.0, y, p, f0)
        events(0.0, y, p, ev)
        g0 = ev[e]
        for k in range(nmax):
            t0 = k * h
            _rk4_step(rhs, t0, h, y, p, f0, s2, s3, s4, tmp, y1)
            finite = True
            for i in range(n_states):
                if not math.isfinite(y1[i]):
                    finite = False
            if not finite:
                break
            rhs(t0 + h, y1, p, f1)
            events(t0 + h, y1, p, ev)
            g1 = ev[e]
            if _crossed(g0, g1, sign):
                a, b = _locate(events, e, sign, t0, h, y, f0, y1, f1, p, g0, g1, tmp,
                               ev)
                out[r] = t0 + 0.5 * (a + b) * h
                ks[r] = k
                for i in range(n_states):
                    Ys[r, i] = y[i]
                    Fs[r, i] = f0[i]
                break
            for i in range(n_states):
                y[i] = y1[i]
                f0[i] = f1[i]
            g0 = g1

    @njit(parallel=True, cache=True, error_model="numpy")
    def _rk4_crossing_par(KL, P, e, sign, h, nmax, n_states, n_events, out, ks, Ys, Fs):
        """First crossing of event ``e``'s condition per row with the RK4 scheme of
        :func:`_rk4_row` (steps at ``k h`` from 0), written into ``out`` (R,): located on
        the step's cubic Hermite interpolant of the states to 1e-13 of a step (safeguarded
        Illinois, :func:`_locate`; the interpolant is the scheme's solution between steps);
        NaN if none in ``nmax`` steps or the states stop being finite."""
        K = KL[0]
        rhs, initial, events = K[0], K[3], K[8]
        for r in prange(P.shape[0]):
            _rk4_cross_row(r, rhs, initial, events, P, e, sign, h, nmax, n_states,
                           n_events, out, ks, Ys, Fs)

    @njit(cache=True, error_model="numpy")
    def _rk4_crossing_ser(KL, P, e, sign, h, nmax, n_states, n_events, out, ks, Ys, Fs):
        """:func:`_rk4_crossing_par` on the calling thread (see :func:`_rk4_rows_ser`)."""
        K = KL[0]
        rhs, initial, events = K[0], K[3], K[8]
        for r in range(P.shape[0]):
            _rk4_cross_row(r, rhs, initial, events, P, e, sign, h, nmax, n_states,
                           n_events, out, ks, Ys, Fs)

def rk4_crossing(kernels, P, event, sign, h, t_end, with_start=False):
    """Model time of the first crossing of event ``event`` per row under the RK4 scheme
    (compiled; the crossing pass of an anchored time offset).

    Parameters
    ----------
    kernels : ModelKernels
    P : ndarray (R, Q)
        Each row's parameters.
    event : int
        Index of the event (its row of ``event_values``).
    sign : int
        The event's direction (-1 falling, +1 rising, 0 both).
    h : float
        Step (model time units), the same as the predictions'.
    t_end : float
        Search up to this model time.
    with_start : bool
        Also return where each row's crossing step starts (below).

    Returns
    -------
    T : ndarray (R,)
        Crossing times, NaN where none by ``t_end``.
    start : tuple (k (R,), y (R, n_states), f (R, n_states)), with ``with_start``
        Per row the step that holds the crossing (-1 where none) and the states and slopes at
        its start: :func:`rk4_rows` resumes there instead of integrating again from 0.
    """
    from ...simulate._compiled import packed_kernels

    R = P.shape[0]
    S = int(kernels.n_states)
    out = np.empty(R)
    ks = np.empty(R, dtype=np.int64)
    Ys = np.empty((R, S))
    Fs = np.empty((R, S))
    nmax = int(max(1, np.ceil(t_end / h)))
    args = (packed_kernels(kernels), np.ascontiguousarray(P, dtype=np.float64), int(event),
            int(sign), float(h), nmax, S, int(kernels.n_events), out, ks, Ys, Fs)
    with warnings.catch_warnings(), numba.parallel_chunksize(CHUNK):
        warnings.simplefilter("ignore", numba.NumbaExperimentalFeatureWarning)
        (_rk4_crossing_par if _parallel(R) else _rk4_crossing_ser)(*args)
    return (out, (ks, Ys, Fs)) if with_start else out


def rk4_rows(kernels, P, tm, mask, oi, lg, h, nsteps, reuse=None, states=None, start=None,
             bound=None):
    """Compiled RK4 predictions (module docstring).

    Parameters
    ----------
    kernels : ModelKernels
        ``model.kernels`` (``n_params`` must equal ``P.shape[1]``).
    P : ndarray (R, Q)
        Each row's parameters.
    tm : ndarray (R, n)
        Model times of the observation slots (>= 0).
    mask : ndarray of bool (R, n)
        Slots holding an observation.
    oi : ndarray of int (R, n)
        Observable index of each slot.
    lg : ndarray of bool (R, n)
        Slots whose prediction is the log of the observable.
    h : float
        Step (model time units).
    nsteps : int
        Steps of the lockstep path (``ceil(span / h)``): an observation beyond the last step
        is interpolated in it, as there.
    reuse : ndarray of bool (R,), optional
        Rows not integrated: their states at the slots are taken from ``states`` (the same
        parameters of the right-hand side and initial states, the same model times, step and
        step count as when they were computed: then the predictions are identical).
    states : ndarray (R, n, n_states), optional
        Input for the ``reuse`` rows; the other rows' states at the slots are written into it
        (NaN where not reached). A new array when None.
    start : tuple (k (R,), y (R, n_states), f (R, n_states)), optional
        Rows with ``k >= 0`` start at step ``k`` from states ``y`` and slopes ``f`` (from
        :func:`rk4_crossing`, the same step ``h``; their slots must lie at or after ``k h``).
    bound : tuple (thr (R,), qs (R, n, 5), kind (R, n)), optional
        Early rejection of Metropolis-Hastings proposals: a row with a finite ``thr`` stops
        integrating as soon as a lower bound of its data term ``sum_j q_j`` (the Gaussian
        ``r^2/V + log V``, or the t's ``(nu+1) log1p(r^2/(nu V)) + log V + c``, of the values
        reached so far, plus each later value's least term: ``log a^2``, ``log a^2 + c``, 0 for
        a censored value) exceeds ``thr``, above which the proposal is rejected whatever the
        remaining values are. ``qs`` holds per slot ``y, a^2 (> 0), b^2, nu, c``; ``kind`` 1
        for a Gaussian, 2 for a t uncensored value, 0 for the other slots. Such a row is NaN
        and its ``stopped`` flag set; its states are incomplete (NaN from the stop on).

    Returns
    -------
    out : ndarray (R, n)
        Predictions (0 in empty slots, NaN rows where a value is not finite or the row
        stopped).
    states : ndarray (R, n, n_states)
    stopped : ndarray of bool (R,)
        Rows stopped by the bound.
    """
    from ...simulate._compiled import packed_kernels

    R, n = tm.shape
    S = int(kernels.n_states)
    out = np.empty((R, n))
    if reuse is None:
        reuse = np.zeros(R, dtype=bool)
    if states is None:
        states = np.empty((R, n, S))
    if start is None:
        start = (np.full(R, -1, dtype=np.int64), np.zeros((R, S)), np.zeros((R, S)))
    args = (packed_kernels(kernels), np.ascontiguousarray(P, dtype=np.float64),
            np.ascontiguousarray(tm, dtype=np.float64), np.ascontiguousarray(mask, dtype=bool),
            np.ascontiguousarray(oi, dtype=np.int64), np.ascontiguousarray(lg, dtype=bool),
            float(h), int(max(nsteps, 1)), S, int(kernels.n_observables),
            np.ascontiguousarray(reuse, dtype=bool), states, out,
            np.ascontiguousarray(start[0], dtype=np.int64),
            np.ascontiguousarray(start[1], dtype=np.float64),
            np.ascontiguousarray(start[2], dtype=np.float64))
    if bound is None:
        bound = (_NO_BOUND[0].repeat(R), _NO_BOUND[1], _NO_BOUND[2])
    stopped = np.zeros(R, dtype=bool)
    args += (np.ascontiguousarray(bound[0], dtype=np.float64),
             np.ascontiguousarray(bound[1], dtype=np.float64),
             np.ascontiguousarray(bound[2], dtype=np.int8), stopped)
    with warnings.catch_warnings(), numba.parallel_chunksize(CHUNK):
        # numba calls first-class function types experimental on every compilation/load
        warnings.simplefilter("ignore", numba.NumbaExperimentalFeatureWarning)
        (_rk4_rows_par if _parallel(R) else _rk4_rows_ser)(*args)
    return out, states, stopped


def _parallel(R) -> bool:
    """Whether the rows go over numba's threads: not in a forked worker (GNU OpenMP is not
    fork-safe: a child forked after its parent ran a parallel region is terminated when it
    starts one) nor with one usable thread (:func:`progression._omp.threads`), nor for a
    single row."""
    return R > 1 and _omp.threads() > 1


#: No early rejection: an infinite threshold per row (the slot arrays are not read).
_NO_BOUND = (np.array([np.inf]), np.ones((1, 1, 5)), np.zeros((1, 1), dtype=np.int8))
