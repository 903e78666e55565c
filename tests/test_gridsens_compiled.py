"""The compiled (numba) kernels of progression._gridsens against its numpy code.

Both paths run the same arithmetic (elimination without pivoting, LAPACK for poor pivots, the
trapezoidal/implicit-Euler recurrence, the stiffness bound); sums of products may round
differently, so results must agree to 1e-12 relative to each quantity's size, and every
pivoting decision (the mask of systems sent to LAPACK, the stiff steps) must be identical.
The numpy path is selected by the module flag ``COMPILED`` (what a missing numba gives).
"""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
import progression._gridsens as gs
from progression.simulate import solve_states

pytestmark = pytest.mark.skipif(gs.numba is None, reason="numba not installed")


def _both(monkeypatch, func, *args):
    """func(*args) with the compiled kernels and with the numpy code (fresh copies of the
    array arguments each time: the elimination works in place)."""
    out = []
    for flag in (True, False):
        monkeypatch.setattr(gs, "COMPILED", flag)
        out.append(func(*[a.copy() if isinstance(a, np.ndarray) else a for a in args]))
    return out


def _close(a, b, tol=1e-12):
    """Equal to ``tol`` relative to the largest entry (NaN where the other is NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = np.nanmax(np.abs(b)) if np.isfinite(b).any() else 1.0
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=tol * scale)


def _stack(rng, n, r, N, kind):
    """A stack of augmented systems [A | B] (n, n + r, N) of a given kind."""
    A = np.eye(n)[:, :, None] + 0.2 * rng.standard_normal((n, n, N))
    if kind == "ill":
        # condition ~1e8 with every pivot above the 1e-6 threshold: one direction squeezed
        U, _, Vt = np.linalg.svd(rng.standard_normal((N, n, n)))
        s = np.logspace(0, -8, n)
        A = np.einsum("kij,j,kjl->ilk", U, s, Vt) + 1e-3 * np.eye(n)[:, :, None]
    elif kind == "pivoting":
        # permuted identity plus noise: zero (or tiny) leading pivots need LAPACK's pivoting
        for s in range(N):
            A[:, :, s] = np.eye(n)[rng.permutation(n)] + 1e-9 * rng.standard_normal((n, n))
    elif kind == "mixed":
        A[0, 0, ::3] = 0.0                   # a third of the systems meet a zero pivot
        A[:, :, 5] = 0.0                     # one singular system
        A[-1, 0, 7] = np.nan                 # one with a NaN
    B = rng.standard_normal((n, r, N))
    return A, B


@pytest.mark.parametrize("kind", ["well", "ill", "pivoting", "mixed"])
@pytest.mark.parametrize("n, r", [(1, 1), (3, 4), (5, 9), (10, 15)])
def test_gauss_jordan_and_solve_small_compiled_equal_numpy(monkeypatch, kind, n, r):
    rng = np.random.default_rng(100 * n + r + len(kind))
    A, B = _stack(rng, n, r, 40, kind)
    W = np.concatenate([A, B], axis=1)
    (Xc, poor_c), (Xn, poor_n) = _both(monkeypatch, lambda W: gs._gauss_jordan(W, n), W)
    np.testing.assert_array_equal(poor_c, poor_n)
    if kind == "pivoting" and n > 1:
        assert poor_n.sum() > 10              # the LAPACK path is exercised
    ok = ~poor_n
    _close(Xc[:, :, ok], Xn[:, :, ok])
    Sc, Sn = _both(monkeypatch, gs.solve_small, A, B)
    _close(Sc, Sn)
    # and both are the solution (LAPACK on the whole stack) where it exists
    good = np.all(np.isfinite(A), axis=(0, 1)) & (np.abs(np.linalg.det(
        np.nan_to_num(np.moveaxis(A, -1, 0)))) > 1e-30)
    ref = np.moveaxis(np.linalg.solve(np.moveaxis(A[:, :, good], -1, 0),
                                      np.moveaxis(B[:, :, good], -1, 0)), 0, -1)
    cond = np.linalg.cond(np.moveaxis(A[:, :, good], -1, 0)).max()
    np.testing.assert_allclose(Sc[:, :, good], ref, rtol=0,
                               atol=1e-13 * cond * np.abs(ref).max())


def _jacobians(rng, n, k, m, G, stiff_rate):
    """Random J (n, n, m, G) with eigenvalues near -stiff_rate on some subjects, F, S0."""
    J = 0.3 * rng.standard_normal((n, n, m, G))
    J[np.arange(n), np.arange(n)] -= 0.5
    J[0, 0, : max(1, m // 2)] -= stiff_rate    # a fast mode on the diagonal
    J[n - 2, n - 1, 1::3] += stiff_rate        # and one spread over the off-diagonal
    J[n - 1, n - 2, 1::3] -= stiff_rate
    F = rng.standard_normal((n, k, m, G))
    S0 = rng.standard_normal((n, k, m))
    return J, F, S0


@pytest.mark.parametrize("n, k, m, G, rate", [(5, 4, 7, 41, 0.0), (5, 4, 7, 41, 200.0),
                                               (10, 3, 3, 25, 50.0), (2, 1, 1, 2, 1e4),
                                               (5, 4, 30, 160, 30.0)])
def test_trapezoid_compiled_equals_numpy(monkeypatch, n, k, m, G, rate):
    rng = np.random.default_rng(n * G + m)
    grid = np.cumsum(np.r_[0.0, rng.uniform(0.2, 0.8, G - 1)])
    J, F, S0 = _jacobians(rng, n, k, m, G, rate)
    (Sc, Mc, dc, stc), (Sn, Mn, dn, stn) = _both(monkeypatch, gs._trapezoid, grid, J, F, S0)
    np.testing.assert_array_equal(stc, stn)
    if rate >= 50 and m > 1:
        assert stn.any() and not stn.all()    # implicit Euler and trapezoid steps both met
    for a, b in ((Sc, Sn), (Mc, Mn), (dc, dn)):
        for s in range(m):
            _close(a[:, s], b[:, s])
    # without the step maps: S[j+1] solved for directly (k right-hand sides), same S
    monkeypatch.setattr(gs, "COMPILED", True)
    Sp, Mp, dp, stp = gs._trapezoid(grid, J, F, S0, maps=False)
    assert Mp is None and dp is None
    np.testing.assert_array_equal(stp, stn)
    for s in range(m):
        _close(Sp[:, s], Sn[:, s])


def test_direct_recurrence_takes_poor_pivots_to_lapack_and_resumes(monkeypatch):
    """Steps whose matrix I - h/2 J is a permutation (zero leading pivot) stop the compiled
    recurrence; LAPACK takes them and it resumes: S equals the numpy path's. A subject with a
    NaN Jacobian at one node is NaN from there on, in both (the compiled path makes the whole
    step into that node NaN, where LAPACK may leave some rows finite)."""
    rng = np.random.default_rng(11)
    n, k, m = 3, 2, 4
    grid = np.arange(0.0, 10.01, 0.5)
    G = grid.size
    J, F, S0 = _jacobians(rng, n, k, m, G, 0.0)
    P = np.eye(n)[[1, 2, 0]]
    for s, j in ((0, 3), (0, 11), (2, 7), (3, G - 1)):
        J[:, :, s, j] = (np.eye(n) - P) / 0.25      # h/2 = 0.25: I - h/2 J = P
    J[1, 1, 1, 9] = np.nan
    (Sp, _, _, stp), (Sn, _, _, stn) = _both(monkeypatch, lambda *a: gs._trapezoid(
        *a, maps=False), grid, J, F, S0)
    np.testing.assert_array_equal(stp, stn)
    assert not stn.any()
    assert np.isnan(Sn[10:, 1]).all() and np.isfinite(Sn[:9, 1]).all()
    assert np.isnan(Sp[9:, 1]).all()
    _close(Sp[:9, 1], Sn[:9, 1])
    for s in (0, 2, 3):
        _close(Sp[:, s], Sn[:, s])
    calls = []
    real = gs._propagate_kernel
    monkeypatch.setattr(gs, "COMPILED", True)
    monkeypatch.setattr(gs, "_propagate_kernel", lambda *a: calls.append(1) or real(*a))
    gs._trapezoid(grid, J, F, S0, maps=False)
    assert len(calls) == 3          # subject 0 stops twice (into nodes 3 and 11): 1 + 2 calls


@pytest.mark.parametrize("rate", [3.0, 15.0, 60.0])
def test_stiffness_decisions_compiled_equal_numpy(monkeypatch, rate):
    """The compiled power bound stops squaring once a node is shown non-stiff: the bounds it
    reports then differ from numpy's, the stiff steps must not."""
    rng = np.random.default_rng(7)
    grid = np.arange(0.0, 30.0, 0.5)
    J, _, _ = _jacobians(rng, 5, 1, 40, grid.size, rate)
    stc, stn = _both(monkeypatch, gs._stiff_steps, grid, J)
    np.testing.assert_array_equal(stc, stn)
    assert stn.any() or rate < 10
    mi, gi = np.nonzero(np.ones((40, grid.size), dtype=bool))
    full = gs._power_bound(J[:, :, mi, gi].transpose(2, 0, 1))
    bound = np.empty(mi.size)
    gs._power_bound_kernel(J, mi, gi, gs._SQUARINGS, np.zeros(mi.size), bound)
    np.testing.assert_allclose(bound, full, rtol=1e-12)        # no early stop: numpy's bound
    limit = np.full(mi.size, np.median(full))
    gs._power_bound_kernel(J, mi, gi, gs._SQUARINGS, limit, bound)
    early = ~np.isclose(bound, full, rtol=1e-12, atol=0)
    assert early.any()                                          # some nodes stopped early,
    assert np.all(bound[early] <= limit[early])                 # below their limit
    assert np.all((full <= limit) == (bound <= limit))          # the same decisions


def test_grid_sensitivities_compiled_equal_numpy_on_als_reduced(monkeypatch):
    """The whole rule (Richardson step, error estimate, fallback choice) on a real model."""
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(3)
    table = model.parameter_table({"kA": 0.0338 * np.exp(0.3 * rng.standard_normal(12)),
                                   "eD": 0.341 * np.exp(0.3 * rng.standard_normal(12))})
    grid = np.arange(0.0, 60.5, 0.5)
    states = solve_states(model, table, grid)[0]
    # subject 3 fails after node 100 but needs nodes up to 90 only (its estimate ignores the
    # rest); subject 5 fails at node 50 inside its span (estimate NaN, sensitivities NaN)
    states[3, :, 101:] = np.nan
    states[5, :, 50:] = np.nan
    last = np.full(12, grid.size - 1)
    last[3], last[7] = 90, 41
    for richardson in (True, False):
        out = []
        for flag in (True, False):
            monkeypatch.setattr(gs, "COMPILED", flag)
            report = {}
            S = gs.grid_sensitivities(model, grid, states, table, [0, 1, 2, 3], report=report,
                                      richardson=richardson, last_node=last)
            out.append((S, report))
        (Sc, rc), (Sn, rn) = out
        np.testing.assert_array_equal(rc["fallback"], rn["fallback"])
        np.testing.assert_allclose(rc["estimate"], rn["estimate"], rtol=1e-9)
        assert np.isnan(rn["estimate"][5]) and np.isfinite(rn["estimate"][3])
        for s in range(Sc.shape[0]):
            for c in range(Sc.shape[2]):
                _close(Sc[s, :, c], Sn[s, :, c])


def test_flag_selects_the_path(monkeypatch):
    """COMPILED = False never touches a kernel; True never runs the numpy elimination."""
    rng = np.random.default_rng(1)
    A, B = _stack(rng, 4, 2, 10, "well")
    grid = np.arange(0.0, 5.0, 0.5)
    J, F, S0 = _jacobians(rng, 4, 2, 3, grid.size, 0.0)

    def boom(*args, **kwargs):
        raise AssertionError("wrong path")

    monkeypatch.setattr(gs, "COMPILED", False)
    for name in ("_gj_stack", "_step_maps_kernel", "_gershgorin_kernel"):
        monkeypatch.setattr(gs, name, boom)
    gs.solve_small(A, B)
    gs._trapezoid(grid, J, F, S0)
    monkeypatch.undo()
    monkeypatch.setattr(gs, "COMPILED", True)
    monkeypatch.setattr(gs, "_gauss_jordan_numpy", boom)
    gs.solve_small(A, B)
    gs._trapezoid(grid, J, F, S0)
