"""Forward sensitivities on a fixed output grid, from an already computed state trajectory.

Once the states are known, the sensitivity equations ``dS/dt = J(t) S + F(t)`` (``J = df/dy``,
``F = df/dp``) are linear. Integrating them with the integrator, alongside the states, costs a
full right-hand side with Jacobian products at every one of its internal evaluations; here
instead ``J`` and ``F`` are evaluated once at every grid node of every subject (one vectorised
call) and the trapezoidal rule

    (I - h/2 J[j+1]) S[j+1] = (I + h/2 J[j]) S[j] + h/2 (F[j] + F[j+1])

is applied node to node. The rule is A-stable and second order; one Richardson step against
the same rule on every other node (``(4 S_h - S_2h) / 3``) removes the leading error term
(fourth order for smooth models). The rule is not L-stable (fast modes would ring from step to
step), so a step where ``h`` times the spectral radius of ``J`` exceeds :data:`STIFF_STEP` is
taken by implicit Euler instead, which damps them as the solution does; such subjects skip
the extrapolation. The spectral radius is bounded without an eigenvalue call per node:
Gershgorin's row sums, tightened where they exceed the threshold by ``||J^(2^s)||^(1/2^s)``
(a fast mode spread over the off-diagonal, invisible on the diagonal, is seen).
The small ``n x n`` systems of all nodes and subjects are solved at once by elimination
vectorised over the stack, with LAPACK for any system whose pivots are poor.

The rule on every other node is always computed: ``S_h - S_2h`` (divided by 3 for the
trapezoidal rule) estimates each subject's error, relative to each sensitivity's largest
value; a subject above :data:`GRID_TOL` (ringing, a missed fast mode, too coarse a grid) is
recomputed by exact forward sensitivities (:func:`progression.simulate.simulate`), so the
result is never silently wrong. The ALS models on the 0.5-month grid estimate ~1e-3;
``als_systemic`` (stiff, implicit-Euler steps) ~5e-2, so its fits use the fallback.

The outputs themselves have an error control of the same kind (interpolant on step h against
step 2h, :mod:`progression.fit.problem`): a row whose interpolated outputs would move its
-2 log L by more than 2e-5 is evaluated on the exact path, forward sensitivities included, so
this module's fallback only matters for rows whose outputs pass but whose sensitivities do not.

Used by estimators (``[solver] sensitivities = "grid"``, the default): a Gauss-Newton step
needs the derivative of the predictions to about 1e-3, not 1e-9, so optimiser steps use the
plain rule and only the information matrix (standard errors) the extrapolated one.
"""

from __future__ import annotations

import os

import numpy as np

try:
    import numba
except ImportError:     # numba is optional: the numpy code below is the tested fallback
    numba = None

from . import _omp  # before numba starts its threads: they wait passively (see there)
from ._gridsens_numba import (  # compiled kernels (numba); split for size, moved unchanged
    _estimate_kernel,
    _estimate_par,
    _gershgorin_kernel,
    _gershgorin_par,
    _gj_stack,
    _jac_points_par,
    _power_bound_kernel,
    _power_bound_par,
    _propagate_kernel,
    _propagate_par,
    _recurrence_kernel,
    _step_maps_kernel,
)

__all__ = ["grid_sensitivities", "solve_small"]

#: Use the compiled (numba) kernels for elimination, the step rule and the stiffness bound:
#: True when numba imports, unless ``PROGRESSION_BACKEND=numpy`` (the same switch as the
#: model functions'). Read at every call, so tests (and users) may set it at run time; the
#: numpy code gives the same numbers to rounding (1e-12 relative, tests/test_gridsens_compiled.py).
COMPILED = numba is not None and os.environ.get("PROGRESSION_BACKEND", "").strip().lower() \
    != "numpy"

#: Working memory grid_sensitivities aims at; larger batches are done in subject chunks.
_WORK_BYTES = 200e6

#: Spread the compiled step rule's, error estimate's and Gershgorin bound's subjects and the
#: stiffness bound's nodes over numba's threads (``*_par`` twins of the kernels, the same
#: per-subject / per-node functions: the same numbers) from :data:`PARALLEL_ROWS` subjects,
#: when :func:`progression._omp.threads` allows more than one. Measured on
#: benchmarks/fit_individual.py: see its results.
PARALLEL = True
PARALLEL_ROWS = 16


def _threads(m: int) -> int:
    """Threads a compiled kernel over ``m`` subjects runs on (1: the serial kernel)."""
    return _omp.threads() if PARALLEL and m >= PARALLEL_ROWS else 1


def _run(serial, parallel, m, chunk, *args):
    """``parallel(*args)`` on :func:`_threads` threads, the subjects (or nodes) handed out
    in chunks of ``chunk`` as threads free up, or ``serial(*args)`` (the same numbers)."""
    n = _threads(m) if COMPILED else 1
    if n > 1:
        with _omp.using(n), numba.parallel_chunksize(chunk):
            return parallel(*args)
    return serial(*args)


def _jacobians(model, grid, states, table, t, Y, P):
    """J (n, n, m, G) at every node of every subject: the model's batch Jacobian at the
    points ``t``, ``Y``, ``P`` (m G of them), or, where the subjects go over numba's threads
    (:func:`_threads`) and the model has compiled kernels, its per-point kernel in
    :func:`_jac_points_par` (the same numbers)."""
    m, n, G = states.shape
    threads = _threads(m) if COMPILED else 1
    if threads > 1 and getattr(model, "kernels", None) is not None:
        from .simulate._rodas4_loops import AVAILABLE, packed_kernels

        if AVAILABLE:
            J = np.empty((n, n, m, G))
            with _omp.using(threads), numba.parallel_chunksize(4):
                _jac_points_par(packed_kernels(model.kernels), np.ascontiguousarray(grid,
                                dtype=float), np.ascontiguousarray(states, dtype=float),
                                np.ascontiguousarray(table, dtype=float), J)
            return J
    return model.jac(t, Y, P).reshape(n, n, m, G)


def solve_small(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve a stack of small dense systems ``A[..., i] X[..., i] = B[..., i]``.

    Parameters
    ----------
    A : ndarray (n, n, N)
        The matrices, stack axis last (so every elimination step is one contiguous numpy
        operation over the whole stack).
    B : ndarray (n, r, N)

    Returns
    -------
    ndarray (n, r, N)
        NaN for a singular system.
    """
    n = A.shape[0]
    X, poor = _gauss_jordan(np.concatenate([A, B], axis=1), n)
    if poor.any():
        X[:, :, poor] = _lapack(A[:, :, poor], B[:, :, poor])
    return X


def _gauss_jordan(W: np.ndarray, n: int):
    """Gauss-Jordan in place on an augmented stack ``W = [A | B]`` of shape (n, n + r, N).

    No pivoting: right for the near-identity matrices ``I - h/2 J`` of a reasonable step.
    Returns the solution (a view into ``W``) and a mask of the systems that met a poor pivot
    or gave non-finite values, for the caller to redo with pivoting. Compiled when
    :data:`COMPILED` (one system at a time in a small contiguous buffer, instead of ~n^2
    whole-stack numpy passes with their temporaries); the same operations in the same order.
    """
    if COMPILED and W.shape[-1]:
        poor = np.zeros(W.shape[-1], dtype=bool)
        _gj_stack(W, n, poor)
        return W[:, n:], poor
    return _gauss_jordan_numpy(W, n)


def _gauss_jordan_numpy(W: np.ndarray, n: int):
    """:func:`_gauss_jordan` in numpy, vectorised over the stack (the fallback)."""
    scale = np.abs(W[:, :n]).max(axis=(0, 1))
    poor = np.zeros(W.shape[-1], dtype=bool)
    for i in range(n):
        poor |= ~(np.abs(W[i, i]) > 1e-6 * scale)
        W[i, i] = np.where(poor, 1.0, W[i, i])
        W[i, i + 1:] /= W[i, i]
        if i + 1 < n:
            W[i + 1:, i + 1:] -= W[i + 1:, i, None] * W[i, None, i + 1:]
    for i in range(n - 1, 0, -1):
        W[:i, n:] -= W[:i, i, None] * W[i, None, n:]
    X = W[:, n:]
    poor |= ~np.all(np.isfinite(X), axis=(0, 1))
    return X, poor


def _lapack(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``solve_small`` by LAPACK with partial pivoting (NaN for singular systems)."""
    with np.errstate(all="ignore"):
        try:
            return np.moveaxis(np.linalg.solve(np.moveaxis(A, -1, 0), np.moveaxis(B, -1, 0)),
                               0, -1)
        except np.linalg.LinAlgError:
            # one singular system fails the whole stacked call: solve them one by one, so
            # that only the singular ones are NaN
            X = np.full(B.shape, np.nan)
            for s in range(A.shape[-1]):
                try:
                    X[:, :, s] = np.linalg.solve(A[:, :, s], B[:, :, s])
                except np.linalg.LinAlgError:
                    pass
            return X


#: h * (spectral radius of J) above which a step counts as stiff: the trapezoidal rule's
#: amplification of a mode of rate z = h*lambda, (1 + z/2) / (1 - z/2), is below -0.5 for
#: z < -6 and tends to -1 (the mode rings from step to step), so the step is implicit Euler.
STIFF_STEP = 6.0

#: Largest estimated error of the plain rule, relative to each sensitivity's largest value over
#: the grid, accepted before a subject's sensitivities are recomputed as exact forward
#: sensitivities (the plain rule's error on the ALS models at h = 0.5 is ~2e-3; ringing or a
#: missed fast mode gives errors of order 1).
GRID_TOL = 0.02

#: Squarings behind the spectral-radius bound: ||J^(2^s)||_F^(1/2^s) >= rho(J), within a
#: factor (sqrt(n) cond(V))^(1/2^s) of it (1.1 for n = 10 and a well-conditioned V).
_SQUARINGS = 5


def _power_bound(A: np.ndarray) -> np.ndarray:
    """``||A^(2^s)||_F^(1/2^s)`` for a stack A (N, n, n), rescaled at every squaring."""
    log_scale = np.zeros(A.shape[0])
    for _ in range(_SQUARINGS):
        norm = np.sqrt(np.einsum("kij,kij->k", A, A))
        norm = np.where(norm > 0, norm, 1.0)
        A = A / norm[:, None, None]
        log_scale = 2.0 * (log_scale + np.log(norm))
        A = A @ A
    last = np.sqrt(np.einsum("kij,kij->k", A, A))
    with np.errstate(divide="ignore"):
        return np.exp((log_scale + np.log(last)) / 2.0 ** _SQUARINGS)


def _stiff_steps(grid, J):
    """(m, G-1) bool: steps where h times the spectral radius of J (at either end) exceeds
    STIFF_STEP."""
    n, _, m, G = J.shape
    h = np.diff(grid)
    hmax = np.concatenate([h[:1], np.maximum(h[1:], h[:-1]), h[-1:]])   # steps at each node
    if COMPILED:
        rho = np.empty((m, G))
        _run(_gershgorin_kernel, _gershgorin_par, m, 4, J, rho)
    else:
        rho = np.abs(J).sum(axis=1).max(axis=0)                        # Gershgorin, (m, G)
    check = hmax[None, :] * rho > STIFF_STEP
    if n > 1 and check.any():
        mi, gi = np.nonzero(check)
        rho = rho.copy()
        if COMPILED:
            # each node stops squaring once its bound shows both of its steps non-stiff (the
            # bounds only decrease with squaring, so the decisions are the numpy code's)
            bound = np.empty(mi.size)
            # blocks of nodes (_gridsens_numba._POWER_BLOCK) handed out two at a time (their
            # costs differ)
            _run(_power_bound_kernel, _power_bound_par, m, 2, J, mi, gi, _SQUARINGS,
                 STIFF_STEP / hmax[gi], bound)
        else:
            bound = _power_bound(J[:, :, mi, gi].transpose(2, 0, 1))
        rho[mi, gi] = np.minimum(rho[mi, gi], bound)
    return h * np.maximum(rho[:, 1:], rho[:, :-1]) > STIFF_STEP


def _trapezoid(grid, J, F, S0, maps: bool = True):
    """Trapezoidal recurrence, implicit Euler on stiff steps.

    J (n, n, m, G), F (n, k, m, G), S0 (n, k, m) -> S (G, m, n, k), the step maps
    ``S[j+1] = M[j] @ S[j] + d[j]``: M (G-1, m, n, n), d (G-1, m, n, k), and the stiff-step
    mask (m, G-1). With ``maps=False`` (compiled path) M and d are None: each step solves
    ``(I - th h J[j+1]) S[j+1] = (I + (1-th) h J[j]) S[j] + h (th F[j+1] + (1-th) F[j])``
    for S[j+1] directly, k right-hand sides instead of n + k (the same S to rounding).
    """
    n, k, m = S0.shape
    G = grid.size
    h = np.diff(grid)                                       # (G-1,)
    stiff = _stiff_steps(grid, J)
    theta = np.where(stiff, 1.0, 0.5)                       # (m, G-1)
    new_w, old_w = theta * h, (1.0 - theta) * h             # weights of node j+1 and node j
    if COMPILED:
        if not maps:
            return _propagate_compiled(J, F, S0, new_w, old_w), None, None, stiff
        return (*_trapezoid_compiled(J, F, S0, new_w, old_w), stiff)
    # One augmented stack [I - th h J[j+1] | I + (1-th) h J[j] | h (th F[j+1] + (1-th) F[j])],
    # solved in place
    W = np.empty((n, 2 * n + k, m, G - 1))
    np.multiply(-new_w, J[:, :, :, 1:], out=W[:, :n])
    np.multiply(old_w, J[:, :, :, :-1], out=W[:, n:2 * n])
    np.multiply(new_w, F[:, :, :, 1:], out=W[:, 2 * n:])
    W[:, 2 * n:] += old_w * F[:, :, :, :-1]
    diag = np.arange(n)
    W[diag, diag] += 1.0
    W[diag, n + diag] += 1.0
    W = W.reshape(n, 2 * n + k, -1)
    sol, poor = _gauss_jordan(W, n)
    if poor.any():
        nw, ow = new_w.ravel()[poor], old_w.ravel()[poor]
        Jl = J[:, :, :, 1:].reshape(n, n, -1)[:, :, poor]
        Jr = J[:, :, :, :-1].reshape(n, n, -1)[:, :, poor]
        Fs = (nw * F[:, :, :, 1:].reshape(n, k, -1)[:, :, poor]
              + ow * F[:, :, :, :-1].reshape(n, k, -1)[:, :, poor])
        eye = np.eye(n)[:, :, None]
        sol[:, :, poor] = _lapack(eye - nw * Jl, np.concatenate([eye + ow * Jr, Fs], 1))
    sol = sol.reshape(n, n + k, m, G - 1)
    # S[j+1] = M[j] S[j] + d[j], in (m, n, .) layout for batched matmul over subjects
    M = np.ascontiguousarray(sol[:, :n].transpose(3, 2, 0, 1))     # (G-1, m, n, n)
    d = np.ascontiguousarray(sol[:, n:].transpose(3, 2, 0, 1))     # (G-1, m, n, k)
    S = np.empty((G, m, n, k))
    S[0] = S0.transpose(2, 0, 1)
    for j in range(G - 1):
        np.add(M[j] @ S[j], d[j], out=S[j + 1])
    return S, M, d, stiff


def _trapezoid_compiled(J, F, S0, new_w, old_w):
    """The step maps and the recurrence of :func:`_trapezoid`, compiled: each step's system
    is built and eliminated in a small buffer, and the recurrence advanced at once, subject
    after subject (no whole-stack work array, no transposed copies). M, d and S are held
    subject-major and returned as transposed views with :func:`_trapezoid`'s shapes.
    Returns S (G, m, n, k), M (G-1, m, n, n), d (G-1, m, n, k)."""
    n, k, m = S0.shape
    G = new_w.shape[1] + 1
    M = np.empty((m, G - 1, n, n))
    d = np.empty((m, G - 1, n, k))
    S = np.empty((m, G, n, k))
    S[:, 0] = S0.transpose(2, 0, 1)
    poor = np.zeros((m, G - 1), dtype=bool)
    _step_maps_kernel(J, F, new_w, old_w, M, d, S, poor)
    if poor.any():
        # poor pivots (or non-finite values): LAPACK with partial pivoting, as in numpy, and
        # those subjects' recurrence again
        mi, gi = np.nonzero(poor)
        nw, ow = new_w[mi, gi], old_w[mi, gi]
        Fs = nw * F[:, :, mi, gi + 1] + ow * F[:, :, mi, gi]
        eye = np.eye(n)[:, :, None]
        sol = _lapack(eye - nw * J[:, :, mi, gi + 1],
                      np.concatenate([eye + ow * J[:, :, mi, gi], Fs], 1))
        M[mi, gi] = sol[:, :n].transpose(2, 0, 1)
        d[mi, gi] = sol[:, n:].transpose(2, 0, 1)
        _recurrence_kernel(M, d, S, np.unique(mi))
    return S.transpose(1, 0, 2, 3), M.transpose(1, 0, 2, 3), d.transpose(1, 0, 2, 3)


def _propagate_compiled(J, F, S0, new_w, old_w):
    """S (G, m, n, k) of :func:`_trapezoid` without the step maps, compiled: one solve per
    step with the k sensitivity columns as right-hand sides. A step with a poor pivot stops
    its subject in the kernel; it is taken here by LAPACK and the kernel resumes after it."""
    n, k, m = S0.shape
    G = new_w.shape[1] + 1
    S = np.empty((m, G, n, k))
    S[:, 0] = S0.transpose(2, 0, 1)
    start = np.zeros(m, dtype=np.int64)
    stop = np.empty(m, dtype=np.int64)
    eye = np.eye(n)
    while True:
        _run(_propagate_kernel, _propagate_par, m, 4, J, F, new_w, old_w, S, start, stop)
        mi = np.nonzero(stop >= 0)[0]
        if mi.size == 0:
            return S.transpose(1, 0, 2, 3)
        gi = stop[mi]
        nw, ow = new_w[mi, gi], old_w[mi, gi]
        A = eye[:, :, None] - nw * J[:, :, mi, gi + 1]
        B = eye[:, :, None] + ow * J[:, :, mi, gi]
        rhs = (np.einsum("ijs,sjq->iqs", B, S[mi, gi])
               + nw * F[:, :, mi, gi + 1] + ow * F[:, :, mi, gi])
        S[mi, gi + 1] = _lapack(A, rhs).transpose(2, 0, 1)
        start[:] = -1
        start[mi] = gi + 1


def grid_sensitivities(model, grid, states, table, columns, *, richardson: bool = True,
                       tol: float = GRID_TOL, solver: dict | None = None,
                       report: dict | None = None, last_node=None):
    """``dy/dp`` for the given parameter columns at every grid node.

    The difference between the rule on the grid and on every other node estimates the error
    of each subject's result; a subject whose estimate exceeds ``tol`` (relative to each
    sensitivity's largest value) gets exact forward sensitivities from
    :func:`progression.simulate.simulate` instead.

    Parameters
    ----------
    model : CompiledModel or PythonModel
    grid : ndarray (G,)
        Increasing times; ``grid[0]`` is the start (initial values apply there).
    states : ndarray (m, n, G)
        The state trajectory on ``grid`` (from :func:`progression.simulate.solve_states`).
    table : ndarray (m, P)
        Parameters of each subject.
    columns : sequence of int
        Parameter indices to differentiate with respect to.
    richardson : bool
        Combine the rule on the grid with the rule on every other node, ``S_h + (S_h - S_2h)/3``
        (fourth order at the even nodes); each odd node is then the mean of one step forward
        and one step backward from its corrected neighbours.
    tol : float
        Largest accepted error estimate (``inf``: never fall back).
    solver : dict, optional
        ``method``, ``rtol``, ``atol``, ``max_step``, ``max_steps`` for the fallback.
    report : dict, optional
        Filled with ``"fallback"``: indices of the subjects recomputed, and ``"estimate"``:
        each subject's error estimate (m,).
    last_node : int array (m,), optional
        The last node each subject needs: its error estimate looks no further, so that it
        does not depend on how far the grid of its batch extends (all nodes by default).

    Returns
    -------
    ndarray (m, n, k, G)
        NaN where the trajectory is NaN.
    """
    columns = [int(c) for c in columns]
    m, n, G = states.shape
    k = len(columns)
    # Work arrays hold ~6 (n, n + k) blocks per node and subject: keep them near 200 MB
    per_subject = 6 * G * n * (n + k) * 8
    step = max(1, int(_WORK_BYTES // max(per_subject, 1)))
    if m > step:
        parts, estimates, fallback = [], [], []
        for lo in range(0, m, step):
            sub = {}
            parts.append(grid_sensitivities(model, grid, states[lo:lo + step],
                                            table[lo:lo + step], columns,
                                            richardson=richardson, tol=tol, solver=solver,
                                            report=sub,
                                            last_node=None if last_node is None
                                            else last_node[lo:lo + step]))
            estimates.append(sub["estimate"])
            fallback.append(sub["fallback"] + lo)
        if report is not None:
            report["estimate"] = np.concatenate(estimates)
            report["fallback"] = np.concatenate(fallback)
        return np.concatenate(parts)
    p = table.T
    t = np.broadcast_to(grid, (m, G)).ravel()
    Y = states.transpose(1, 0, 2).reshape(n, m * G)
    P = np.repeat(p, G, axis=1)
    estimate = np.zeros(m)
    with np.errstate(all="ignore"):
        J = _jacobians(model, grid, states, table, t, Y, P)
        F = model.dfdp_columns(columns)(t, Y, P).reshape(n, k, m, G)
        S0 = model.dinitial_dp(grid[0], None, p)[:, columns, :]
        # States a model view holds (progression.model.compiled.CompiledModel.for_outputs:
        # zero equations, read by no kept state) keep their initial sensitivities, and the
        # rule runs on the kept states only: J is block diagonal with a zero block there, so
        # the kept states' results, the stiffness bounds and the error estimate are those of
        # the whole system, at (n_kept / n)^3 of the elimination's cost.
        held = tuple(int(i) for i in getattr(model, "frozen_states", ()))
        if held:
            keep = np.array([i for i in range(n) if i not in held], dtype=int)
            hold = np.array(held, dtype=int)
            J = np.ascontiguousarray(J[np.ix_(keep, keep)])
            F = np.ascontiguousarray(F[keep])
            # the held states' sensitivities: their initial ones at every node, NaN where
            # the trajectory is NaN (as the rule gives for the kept states)
            held_S = np.broadcast_to(S0[hold].transpose(2, 0, 1)[..., None],
                                     (m, hold.size, k, G))
            held_S = np.where(np.isnan(states[:, hold])[:, :, None, :], np.nan, held_S)
            S0 = S0[keep]
        S, M, d, stiff = _trapezoid(grid, J, F, S0, maps=richardson and G >= 3)
        if G >= 3:
            even = slice(0, None, 2)
            coarse, _, _, stiff2 = _trapezoid(grid[even], J[..., even], F[..., even], S0,
                                              maps=False)
            # The error expansion behind the extrapolation holds for the trapezoidal rule
            # only: subjects with implicit-Euler (stiff) steps keep the plain result.
            smooth = ~(stiff.any(axis=1) | stiff2.any(axis=1))
            # Error of the plain rule: (S_h - S_2h) / 3 for the trapezoidal rule (second
            # order), S_h - S_2h where implicit Euler (first order) took part.
            if COMPILED:
                rel = np.empty(m)
                last = (np.full(m, G - 1, dtype=np.int64) if last_node is None
                        else np.asarray(last_node, dtype=np.int64))
                _run(_estimate_kernel, _estimate_par, m, 4,
                     np.ascontiguousarray(S.transpose(1, 0, 2, 3)),
                     np.ascontiguousarray(coarse.transpose(1, 0, 2, 3)), last, rel)
            else:
                diff = np.abs(S[even] - coarse)                            # (Ge, m, n, k)
                absS = np.abs(S)
                if last_node is not None:
                    nodes = np.arange(G)[:, None] <= np.asarray(last_node)[None, :]  # (G, m)
                    absS = np.where(nodes[:, :, None, None], absS, 0.0)
                    diff = np.where(nodes[even][:, :, None, None], diff, 0.0)
                size = absS.max(axis=0)                                    # (m, n, k)
                floor = 1e-6 * size.max(axis=1, keepdims=True) + 1e-300
                rel = (diff / (size + floor)[None]).max(axis=(0, 2, 3))
            estimate = np.where(smooth, rel / 3.0, rel)
            if richardson:
                _extrapolate(grid, J, F, S, M, d, coarse, smooth[None, :, None, None])
    out = np.ascontiguousarray(S.transpose(1, 2, 3, 0))
    if held:
        kept, out = out, np.empty((m, n, k, G))
        out[:, keep] = kept
        out[:, hold] = held_S
    # NaN estimates belong to failed trajectories (their sensitivities are NaN anyway)
    redo = np.nonzero(np.isfinite(estimate) & (estimate > tol)
                      & np.all(np.isfinite(states), axis=(1, 2)))[0]
    if redo.size and k:
        out[redo] = _forward(model, grid, table[redo], columns, solver)
        if held:
            out[np.ix_(redo, hold)] = held_S[redo]
    if report is not None:
        report["estimate"] = estimate
        report["fallback"] = redo
    return out


def _extrapolate(grid, J, F, S, M, d, coarse, smooth):
    """Richardson extrapolation of S (G, m, n, k) in place against the rule on even nodes."""
    n, k, G = J.shape[0], F.shape[1], grid.size
    even = slice(0, None, 2)
    S[even] += np.where(smooth, (S[even] - coarse) / 3.0, 0.0)
    # Odd nodes: one step of the rule forward from the corrected even node before and
    # one step backward from the corrected even node after; the two local errors are
    # equal and opposite (the rule is symmetric), so their mean is fourth order too.
    odd = np.arange(1, G, 2)
    S[odd] = M[odd - 1] @ S[odd - 1] + d[odd - 1]
    both = odd[odd + 1 < G]
    if both.size:
        m = S.shape[1]
        h = (grid[both + 1] - grid[both])
        eye = np.eye(n)[:, :, None, None]
        A = eye + 0.5 * h * J[..., both]                       # (n, n, m, B)
        B = eye - 0.5 * h * J[..., both + 1]
        Snext = S[both + 1].transpose(2, 3, 1, 0)              # (n, k, m, B)
        rhs = (np.einsum("ijmb,jkmb->ikmb", B, Snext)
               - 0.5 * h * (F[..., both] + F[..., both + 1]))
        back = solve_small(A.reshape(n, n, -1), rhs.reshape(n, k, -1))
        back = back.reshape(n, k, m, both.size).transpose(3, 2, 0, 1)
        S[both] = np.where(smooth, 0.5 * (S[both] + back), S[both])


def _forward(model, grid, table, columns, solver):
    """Exact forward sensitivities (m, n, k, G) on the grid, for the fallback."""
    from .simulate import simulate

    options = {key: value for key, value in (solver or {}).items()
               if key in ("method", "rtol", "atol", "max_step", "max_steps")}
    names = [model.parameter_names[c] for c in columns]
    # a model view that holds states (CompiledModel.for_outputs) is not a model simulate()
    # takes: the full model's forward sensitivities are those of the kept states (the held
    # ones, which no kept state reads, the caller sets)
    sim = simulate(getattr(model, "full_model", model), table, grid, t0=float(grid[0]),
                   sensitivities=names, terminal_events=False, events=False, **options)
    return sim.state_sensitivities
