"""SAEM's speed devices leave its numbers unchanged: early rejection of Metropolis-Hastings
proposals (``_saem_chains``, ``rk4_rows(bound=...)``), the crossing cache and the tolerant
state cache of :class:`~progression.fit.population._saem_model.RK4Predictions`.

Early rejection must be exact: a row is cut short only when its full data term exceeds the
threshold (so the proposal is rejected anyway), the other rows' values are those of the full
evaluation to the last bit, and a whole SAEM run with it equals one without it.
"""

import numpy as np
import pytest
from _fork_support import in_forked_child
from test_population_saem_compiled import als, spy_rows  # noqa: F401 - als: the fixture

from progression.fit.population import Residual, SaemOptions, saem
from progression.fit.population._saem_chains import _Chains
from progression.fit.population._saem_model import RK4Predictions

numba = pytest.importorskip("numba")

RESIDUAL = Residual((2.0, 0.35, 0.9), (0.0, 0.0, 0.0))


class _Unbounded:
    """The same predictions without early rejection (``accepts_bound`` false)."""

    accepts_bound = False

    def __init__(self, model):
        self.model = model

    def predict(self, phi, index):
        return self.model.predict(phi, index)


def test_early_rejection_cuts_only_rows_above_their_threshold(als):  # noqa: F811
    """Thresholds around each row's full data term: rows cut short (data term inf) are
    exactly those the bound proves above the threshold (all truly above it), every other
    row's data term and predictions equal the full evaluation's bit for bit, and rows far
    below their threshold are never cut."""
    model, x0, sdv, _ = als
    n = len(model.designs)
    fc = RK4Predictions(model, h=0.3, compiled=True)
    idx = np.tile(np.arange(n), 4)
    rng = np.random.default_rng(5)
    phi = x0 + sdv * rng.standard_normal((idx.size, x0.size))
    chains = _Chains(fc, model.data(), idx, x0.size, RESIDUAL)
    U, f = chains.evaluate(phi)
    fc._cache.clear()
    ok = np.isfinite(U)
    assert ok.sum() > 0.8 * idx.size
    thr = np.where(ok, U, 0.0) + rng.normal(0.0, 30.0, idx.size)
    Ub, fb = chains.evaluate(phi, bound=thr)
    cut = ok & ~np.isfinite(Ub)
    assert cut.sum() >= 10                      # the bound works
    assert np.all(U[cut] > thr[cut])            # ... and only where the full term is above
    kept = ok & np.isfinite(Ub)
    assert np.array_equal(Ub[kept], U[kept]) and np.array_equal(fb[kept], f[kept])
    assert not np.any(cut & (thr > U + 1e-6 * np.abs(U)))
    # a cut row's incomplete states are never reused: the same rows without a bound
    U2, f2 = chains.evaluate(phi)
    assert np.array_equal(U2[ok], U[ok]) and np.array_equal(f2[ok], f[ok])


def test_saem_with_early_rejection_equals_saem_without(als):  # noqa: F811
    """The same seed gives the same estimates, acceptance rates and conditional means with
    and without early rejection (the accept/reject decisions are the same; only the
    integration of rejected proposals stops early)."""
    model, x0, sdv, _ = als
    opt = SaemOptions(k1=6, k2=4, auto_stop=False, is_samples=0, fisher=False)
    data = model.data()
    runs = []
    for m in (RK4Predictions(model, h=0.3, compiled=True),
              _Unbounded(RK4Predictions(model, h=0.3, compiled=True))):
        runs.append(saem(m, data, x0, np.diag(sdv ** 2), RESIDUAL, options=opt, seed=3))
    a, b = runs
    for name in ("mu", "omega", "eta_mean", "acceptance", "trace_mu"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.residual == b.residual


def test_caches_give_fresh_predictions(als, monkeypatch):  # noqa: F811
    """Rows whose parameters moved in the last bits only (as after SAEM's M-step) are
    observed from stored states, and equal a fresh evaluation to 1e-12; a row whose
    last slot falls in a different batch's last step is integrated (the step count
    differs)."""

    model, x0, sdv, _ = als
    n = len(model.designs)
    idx = np.arange(n)
    fc = RK4Predictions(model, h=0.3, compiled=True)
    phi = x0 + 0.3 * sdv * np.random.default_rng(2).standard_normal((n, x0.size))
    f0, _ = fc.predict(phi, idx)
    seen = spy_rows(monkeypatch)
    mu_old = x0.copy()
    mu_new = x0 + 0.123456789
    moved = (mu_new + ((phi - mu_old) + (mu_old - mu_new)))   # phi, up to rounding
    assert not np.array_equal(moved, phi)
    f1, _ = fc.predict(moved, idx)
    assert seen[-1] == np.isfinite(f0).all(axis=1).sum()
    fresh, _ = RK4Predictions(model, h=0.3, compiled=True).predict(moved, idx)
    ok = np.isfinite(fresh)
    assert np.array_equal(ok, np.isfinite(f1))
    assert np.max(np.abs(f1[ok] - fresh[ok])) < 1e-12 * max(1.0, np.abs(fresh[ok]).max())
    fc.KEY_RTOL = 0.0                            # exact keys: nothing matches any more
    fc.predict(moved + 1e-13, idx)
    assert seen[-1] == 0


def test_crossing_cache_and_illinois_agree_with_bisection(tmp_path):
    """The anchored crossing located by safeguarded Illinois agrees with the numpy path's
    bisection to 1e-11 of a step; a move of a parameter outside the crossing (and the
    states) takes the crossing from the cache (no compiled call) with identical values."""
    from test_time_anchor import _config, _designs

    from progression.fit import Problem
    from progression.fit.population import _saem_compiled
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.population._saem_model import _crossing_numpy

    problem = Problem.from_config(_config(tmp_path))
    ks = np.array([0.5, 1.3, 0.8])
    designs = _designs(ks)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index("k"), problem.names.index("x0")])
    model = ProblemModel(problem, designs, cols)
    rk4 = RK4Predictions(model, h=0.01)
    if not rk4.compiled:
        pytest.skip("the model has no compiled kernels (numpy backend)")
    rng = np.random.default_rng(4)
    phi = np.log(np.column_stack([rng.uniform(0.2, 2.0, 40), np.full(40, 2.0)]))
    theta = model.thetas(phi)
    T = rk4.anchor_times(theta)
    ref = _crossing_numpy(problem.model, theta[:, :problem.P], rk4.event, rk4.sign, 0.01,
                          rk4.window[1])
    assert np.all(np.isfinite(T))
    assert np.max(np.abs(T - ref)) < 1e-11 * 0.01 + 1e-13
    calls = []
    orig = _saem_compiled.rk4_crossing

    def spy(kernels, P, *a, **k):
        calls.append(P.shape[0])
        return orig(kernels, P, *a, **k)

    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.setattr(_saem_compiled, "rk4_crossing", spy)
        assert np.array_equal(rk4.anchor_times(theta), T) and calls == []
        th2 = theta.copy()
        th2[:5, problem.names.index("k")] *= 1.1      # five rows move: five computed
        T2 = rk4.anchor_times(th2)
        assert calls == [5] and np.array_equal(T2[5:], T[5:])
    finally:
        monkeypatch.undo()



def test_score_pass_with_early_rejection_equals_without(als):  # noqa: F811
    """The covariance pass at held parameters uses early rejection too: the same seed gives
    the same information, scores and acceptance with and without it."""
    from progression.fit.population._saem_score import score_pass

    model, x0, sdv, _ = als
    data = model.data()
    runs = [score_pass(m, data, x0, np.diag(sdv ** 2), RESIDUAL, n_iter=20, burn_in=4,
                       n_chains=1, seed=9)
            for m in (RK4Predictions(model, h=0.3, compiled=True),
                      _Unbounded(RK4Predictions(model, h=0.3, compiled=True)))]
    a, b = runs
    for name in ("fisher", "scores", "acceptance"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_a_forked_child_predicts_with_the_serial_kernels(als, monkeypatch):  # noqa: F811
    """GNU OpenMP is not fork-safe: after the parent ran the parallel row kernels, a forked
    child (a progression.parallel worker) runs their serial twins, with the parent's
    numbers (the anchored crossing and the rows alike)."""

    from progression import _omp

    monkeypatch.setattr(_omp, "BUSY_CHECK", False)
    if _omp.threads() < 2:
        pytest.skip("one numba thread: nothing to protect")
    model, x0, sdv, _ = als
    n = len(model.designs)
    idx = np.tile(np.arange(n), 2)
    phi = x0 + sdv * np.random.default_rng(6).standard_normal((idx.size, x0.size))
    parent, _ = RK4Predictions(model, h=0.3, compiled=True).predict(phi, idx)
    got = in_forked_child(lambda: np.array_equal(
        RK4Predictions(model, h=0.3, compiled=True).predict(phi, idx)[0], parent,
        equal_nan=True))
    assert got == bytes([0]), got
