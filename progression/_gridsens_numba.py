"""Compiled (numba) kernels of :mod:`progression._gridsens`: elimination, the step rule and
its recurrence, the error estimate and the stiffness bounds.

Split from ``_gridsens.py`` (moved unchanged); ``_gridsens`` imports them and decides, by its
``COMPILED`` flag, whether they or its numpy code run. Without numba the names are the plain
Python functions (never called: the flag is then False).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:     # numba is optional: _gridsens's numpy code is the tested fallback
    numba = None

# ------------------------------------------------------------------ compiled kernels
# Each computes what the numpy code above computes, with the same operations in the same order
# per system (sums of products may round differently: 1e-12 relative is what the tests ask).

def _njit(func):
    return numba.njit(cache=True, nogil=True)(func) if numba is not None else func


def _njit_parallel(func):
    """``_njit`` with ``prange`` loops spread over numba's threads (progression._gridsens
    decides when to call these twins of the serial kernels)."""
    return (numba.njit(cache=True, nogil=True, parallel=True)(func) if numba is not None
            else func)


prange = numba.prange if numba is not None else range


@_njit
def _gj_one(w, n):
    """Gauss-Jordan without pivoting on one contiguous augmented system w (n, c), in place;
    True when a pivot was poor (below 1e-6 of the largest entry of A) or the solution is not
    finite (from then on, pivots are replaced by 1 as the numpy code does)."""
    c = w.shape[1]
    scale = 0.0
    nan = False
    for i in range(n):
        for q in range(n):
            a = abs(w[i, q])
            if a != a:
                nan = True
            elif a > scale:
                scale = a
    if nan:
        scale = np.nan
    poor = False
    for i in range(n):
        if not (abs(w[i, i]) > 1e-6 * scale):
            poor = True
        if poor:
            w[i, i] = 1.0
        piv = w[i, i]
        for q in range(i + 1, c):
            w[i, q] /= piv
        for r in range(i + 1, n):
            f = w[r, i]
            for q in range(i + 1, c):
                w[r, q] -= f * w[i, q]
    for i in range(n - 1, 0, -1):
        for r in range(i):
            f = w[r, i]
            for q in range(n, c):
                w[r, q] -= f * w[i, q]
    for r in range(n):
        for q in range(n, c):
            if not np.isfinite(w[r, q]):
                poor = True
    return poor


@_njit
def _gj_stack(W, n, poor):
    """:func:`_gj_one` for every system of a stack W (n, c, N); writes the solution columns
    ``W[:, n:]`` (the A part is left as it was: no caller reads it) and ``poor`` (N,)."""
    c = W.shape[1]
    w = np.empty((n, c))
    for s in range(W.shape[2]):
        for r in range(n):
            for q in range(c):
                w[r, q] = W[r, q, s]
        poor[s] = _gj_one(w, n)
        for r in range(n):
            for q in range(n, c):
                W[r, q, s] = w[r, q]


@_njit
def _step_maps_kernel(J, F, new_w, old_w, M, d, S, poor):
    """For every subject s and step j: [I - nw J[j+1] | I + ow J[j] | nw F[j+1] + ow F[j]]
    eliminated; M[s, j] (n, n) and d[s, j] (n, k) the step map, poor[s, j] as _gj_one, and
    S[s, j+1] = M[s, j] @ S[s, j] + d[s, j] (S[:, 0] given; M, d, S subject-major)."""
    n = J.shape[0]
    k = F.shape[1]
    c = 2 * n + k
    w = np.empty((n, c))
    for s in range(J.shape[2]):
        for j in range(new_w.shape[1]):
            nw = new_w[s, j]
            ow = old_w[s, j]
            for r in range(n):
                for q in range(n):
                    w[r, q] = -nw * J[r, q, s, j + 1]
                    w[r, n + q] = ow * J[r, q, s, j]
                w[r, r] += 1.0
                w[r, n + r] += 1.0
                for q in range(k):
                    w[r, 2 * n + q] = nw * F[r, q, s, j + 1] + ow * F[r, q, s, j]
            poor[s, j] = _gj_one(w, n)
            for r in range(n):
                for q in range(n):
                    M[s, j, r, q] = w[r, n + q]
                for q in range(k):
                    d[s, j, r, q] = w[r, 2 * n + q]
            for r in range(n):
                for q in range(k):
                    acc = 0.0
                    for c2 in range(n):
                        acc += w[r, n + c2] * S[s, j, c2, q]
                    S[s, j + 1, r, q] = acc + w[r, 2 * n + q]


@_njit
def _recurrence_kernel(M, d, S, subjects):
    """S[s, j+1] = M[s, j] @ S[s, j] + d[s, j], node after node, for the given subjects
    (M, d, S subject-major)."""
    n = M.shape[2]
    k = d.shape[3]
    for s in subjects:
        for j in range(M.shape[1]):
            for r in range(n):
                for q in range(k):
                    acc = 0.0
                    for c in range(n):
                        acc += M[s, j, r, c] * S[s, j, c, q]
                    S[s, j + 1, r, q] = acc + d[s, j, r, q]


@_njit
def _propagate_row(J, F, new_w, old_w, S, start, stop, s, w):
    """Subject ``s`` of :func:`_propagate_kernel` (its arguments; ``w`` an (n, n + k) work
    array): shared by the serial and the threaded kernel, so both give the same numbers."""
    n = J.shape[0]
    k = F.shape[1]
    stop[s] = -1
    if start[s] < 0:
        return
    for j in range(start[s], new_w.shape[1]):
        nw = new_w[s, j]
        ow = old_w[s, j]
        finite = True
        for r in range(n):
            for q in range(n):
                w[r, q] = -nw * J[r, q, s, j + 1]
            w[r, r] += 1.0
            for q in range(k):
                acc = S[s, j, r, q]
                for c in range(n):
                    acc += ow * J[r, c, s, j] * S[s, j, c, q]
                w[r, n + q] = acc + (nw * F[r, q, s, j + 1] + ow * F[r, q, s, j])
            for q in range(n + k):
                if not np.isfinite(w[r, q]):
                    finite = False
        if _gj_one(w, n):
            if finite:
                stop[s] = j
                return
            for r in range(n):
                for q in range(k):
                    S[s, j + 1, r, q] = np.nan
            continue
        for r in range(n):
            for q in range(k):
                S[s, j + 1, r, q] = w[r, n + q]


@_njit
def _propagate_kernel(J, F, new_w, old_w, S, start, stop):
    """For every subject s with start[s] >= 0, steps j = start[s], ...: solve
    [I - nw J[j+1] | (I + ow J[j]) S[s, j] + nw F[j+1] + ow F[j]] for S[s, j+1] (S
    subject-major). A step whose pivots are poor (as _gj_one) with finite inputs stops the
    subject there (stop[s] = j) for LAPACK; non-finite inputs give NaN and go on, as LAPACK
    would; stop[s] = -1 when the subject is done."""
    w = np.empty((J.shape[0], J.shape[0] + F.shape[1]))
    for s in range(J.shape[2]):
        _propagate_row(J, F, new_w, old_w, S, start, stop, s, w)


@_njit_parallel
def _propagate_par(J, F, new_w, old_w, S, start, stop):
    """:func:`_propagate_kernel` with the subjects spread over numba's threads (same
    numbers)."""
    for s in prange(J.shape[2]):
        w = np.empty((J.shape[0], J.shape[0] + F.shape[1]))
        _propagate_row(J, F, new_w, old_w, S, start, stop, s, w)


@_njit
def _estimate_row(S, C, last, rel, s, size, floor):
    """Subject ``s`` of :func:`_estimate_kernel` (its arguments; ``size`` (n, k) and ``floor``
    (k,) work arrays): shared by the serial and the threaded kernel."""
    G, n, k = S.shape[1], S.shape[2], S.shape[3]
    stop = min(last[s], G - 1)
    size[:, :] = 0.0
    nan = False
    for g in range(stop + 1):
        for r in range(n):
            for q in range(k):
                a = abs(S[s, g, r, q])
                if a != a:
                    nan = True
                elif a > size[r, q]:
                    size[r, q] = a
    if nan:
        rel[s] = np.nan
        return
    for q in range(k):
        big = 0.0
        for r in range(n):
            big = max(big, size[r, q])
        floor[q] = 1e-6 * big + 1e-300
    worst = 0.0
    for e in range(stop // 2 + 1):
        for r in range(n):
            for q in range(k):
                v = abs(S[s, 2 * e, r, q] - C[s, e, r, q]) / (size[r, q] + floor[q])
                if v != v:
                    nan = True
                elif v > worst:
                    worst = v
    rel[s] = np.nan if nan else worst


@_njit
def _estimate_kernel(S, C, last, rel):
    """Each subject's largest |S_h - S_2h| relative to its sensitivity's size, as the numpy
    code in grid_sensitivities: S (m, G, n, k) and C (m, Ge, n, k) subject-major (C at the
    even nodes), nodes up to last[s]; NaN when a value it reads is NaN."""
    m, G, n, k = S.shape
    size = np.empty((n, k))
    floor = np.empty(k)
    for s in range(m):
        _estimate_row(S, C, last, rel, s, size, floor)


@_njit_parallel
def _estimate_par(S, C, last, rel):
    """:func:`_estimate_kernel` with the subjects spread over numba's threads (same
    numbers)."""
    m, G, n, k = S.shape
    for s in prange(m):
        _estimate_row(S, C, last, rel, s, np.empty((n, k)), np.empty(k))


@_njit
def _gershgorin_row(J, rho, s, row):
    """Subject ``s`` of :func:`_gershgorin_kernel` (``row`` a (G,) work array)."""
    n = J.shape[0]
    G = J.shape[3]
    for i in range(n):
        for g in range(G):
            row[g] = abs(J[i, 0, s, g])
        for q in range(1, n):
            for g in range(G):
                row[g] += abs(J[i, q, s, g])
        for g in range(G):
            v = row[g]
            if i == 0:
                rho[s, g] = v
            else:
                o = rho[s, g]
                if o == o and (v > o or v != v):
                    rho[s, g] = v


@_njit
def _gershgorin_kernel(J, rho):
    """rho[s, g] = max_i sum_j |J[i, j, s, g]| (NaN if any entry is NaN), J (n, n, m, G)."""
    row = np.empty(J.shape[3])
    for s in range(J.shape[2]):
        _gershgorin_row(J, rho, s, row)


@_njit_parallel
def _gershgorin_par(J, rho):
    """:func:`_gershgorin_kernel` with the subjects spread over numba's threads (same
    numbers)."""
    for s in prange(J.shape[2]):
        _gershgorin_row(J, rho, s, np.empty(J.shape[3]))


#: Nodes of the power bound computed together (:func:`_power_bound_block`): each step of the
#: squarings runs over a block's nodes in the innermost loop, which the compiler vectorises.
_POWER_BLOCK = 64


@_njit
def _power_bound_block(J, mi, gi, squarings, limit, out, lo, hi, A, B, nrm, lsc, act, loglim):
    """Nodes ``lo..hi-1`` of :func:`_power_bound_kernel` (its arguments; ``A``, ``B``
    (n, n, _POWER_BLOCK), ``nrm``, ``lsc``, ``loglim`` (_POWER_BLOCK,) float and ``act``
    (_POWER_BLOCK,) bool work arrays), node index innermost so that every loop over the nodes
    vectorises. Each node goes through the operations of the former one-node-at-a-time loop in
    the same order (the same bounds to the last digit, tests/test_gridsens_compiled.py); the
    comparison with the limit is made on the logarithm, and with the bound itself only within
    1e-9 of it (the same decisions, one exponential per node instead of one per squaring).
    Shared by the serial and the threaded kernel."""
    n = J.shape[0]
    nb = hi - lo
    for r in range(n):
        for q in range(n):
            for b in range(nb):
                A[r, q, b] = J[r, q, mi[lo + b], gi[lo + b]]
    for b in range(nb):
        lsc[b] = 0.0
        act[b] = True
        loglim[b] = np.log(limit[lo + b])
    left = nb
    for sq in range(squarings):
        for b in range(nb):
            nrm[b] = 0.0
        for r in range(n):
            for q in range(n):
                for b in range(nb):
                    nrm[b] += A[r, q, b] * A[r, q, b]
        p2 = 2.0 ** sq
        for b in range(nb):
            v = np.sqrt(nrm[b])
            lv = np.log(v)
            if act[b]:
                # the bound is exp(t): below the limit for sure when t is clearly below its
                # logarithm; near it, the bound itself is compared
                t = (lsc[b] + lv) / p2
                if t < loglim[b] - 1e-9 or (not t > loglim[b] + 1e-9
                                             and np.exp(t) <= limit[lo + b]):
                    out[lo + b] = np.exp(t)
                    act[b] = False
                    left -= 1
            if not v > 0:
                v = 1.0
                lv = 0.0
            lsc[b] = 2.0 * (lsc[b] + lv)
            nrm[b] = 1.0 / v        # (numpy divides: the bound moves by rounding only)
        if left == 0:
            return
        for r in range(n):
            for q in range(n):
                for b in range(nb):
                    A[r, q, b] *= nrm[b]
        for r in range(n):
            for q in range(n):
                for b in range(nb):
                    B[r, q, b] = 0.0
                for c in range(n):
                    for b in range(nb):
                        B[r, q, b] += A[r, c, b] * A[c, q, b]
        A, B = B, A
    for b in range(nb):
        nrm[b] = 0.0
    for r in range(n):
        for q in range(n):
            for b in range(nb):
                nrm[b] += A[r, q, b] * A[r, q, b]
    p2 = 2.0 ** squarings
    for b in range(nb):
        if act[b]:
            out[lo + b] = np.exp((lsc[b] + np.log(np.sqrt(nrm[b]))) / p2)


@_njit
def _power_bound_kernel(J, mi, gi, squarings, limit, out):
    """:func:`_power_bound` of the nodes J[:, :, mi[i], gi[i]] into out (len(mi),), except
    that a node stops at the first intermediate bound ``||A^(2^s)||^(1/2^s)`` at or below
    ``limit[i]`` and reports that one (the bounds decrease with s: the final one is below
    the limit too, and only the comparison with the limit is used). Nodes in blocks of
    :data:`_POWER_BLOCK`."""
    n = J.shape[0]
    K = _POWER_BLOCK
    A = np.empty((n, n, K))
    B = np.empty((n, n, K))
    nrm, lsc, loglim = np.empty(K), np.empty(K), np.empty(K)
    act = np.empty(K, dtype=np.bool_)
    N = mi.size
    for lo in range(0, N, K):
        _power_bound_block(J, mi, gi, squarings, limit, out, lo, min(lo + K, N), A, B, nrm,
                           lsc, act, loglim)


@_njit_parallel
def _power_bound_par(J, mi, gi, squarings, limit, out):
    """:func:`_power_bound_kernel` with the blocks of nodes spread over numba's threads (same
    numbers)."""
    n = J.shape[0]
    K = _POWER_BLOCK
    N = mi.size
    for blk in prange((N + K - 1) // K):
        lo = blk * K
        _power_bound_block(J, mi, gi, squarings, limit, out, lo, min(lo + K, N),
                           np.empty((n, n, K)), np.empty((n, n, K)), np.empty(K), np.empty(K),
                           np.empty(K, dtype=np.bool_), np.empty(K))


@_njit
def _jac_row(KL, grid, states, table, J, s, y, p, out):
    """Subject ``s`` of :func:`_jac_points_par`: the model's compiled Jacobian kernel at each
    node (``y`` (n,), ``p`` (Q,), ``out`` (n, n) work arrays)."""
    jac = KL[0][1]
    n = states.shape[1]
    for c in range(p.size):
        p[c] = table[s, c]
    for g in range(grid.size):
        for i in range(n):
            y[i] = states[s, i, g]
        jac(grid[g], y, p, out)
        for r in range(n):
            for q in range(n):
                J[r, q, s, g] = out[r, q]


@_njit_parallel
def _jac_points_par(KL, grid, states, table, J):
    """J (n, n, m, G): the Jacobian at every node ``grid[g]`` and state ``states[s, :, g]``
    (m, n, G) of every subject (parameters ``table[s]``), from the model's packed compiled
    kernels (:func:`progression.simulate._rodas4_loops.packed_kernels`), subjects over numba's
    threads: the numbers of the model's batch Jacobian (the same generated expressions per
    point)."""
    m, n, G = states.shape
    for s in prange(m):
        _jac_row(KL, grid, states, table, J, s, np.empty(n), np.empty(table.shape[1]),
                 np.empty((n, n)))
