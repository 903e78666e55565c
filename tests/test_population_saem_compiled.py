"""The compiled RK4 predictions of SAEM's kernels (``_saem_compiled``): every row in one numba
call with the model's per-subject kernels, against the numpy lockstep RK4 at the same step
(1e-10: the same scheme, only the arithmetic's order differs) and against the exact path
(the calibrated tolerance, 0.01 residual SD) on ALS designs."""

import numpy as np
import pytest
from test_population_saem_estimator import ALS, ROOT

from progression.fit.config import parse_fit_config
from progression.fit.design import designs_from_cohort
from progression.fit.estimate import read_data
from progression.fit.population._adapter import ProblemModel
from progression.fit.problem import Problem

numba = pytest.importorskip("numba")


def spy_rows(monkeypatch) -> list:
    """Record, per call of the compiled RK4 rows kernel, how many rows it integrates (those
    not reused from the state cache: the kernel's reuse mask, argument 8)."""
    from progression.fit.population import _saem_compiled

    seen = []
    orig = _saem_compiled.rk4_rows

    def spy(*args):
        seen.append(int(np.sum(args[8])) if args[8] is not None else 0)
        return orig(*args)

    monkeypatch.setattr(_saem_compiled, "rk4_rows", spy)
    return seen


@pytest.fixture(scope="module")
def als():
    from progression.fit.estimators.focei import population_layout
    from progression.fit.transforms import to_internal

    cfg = parse_fit_config(ALS, source="als.toml", base_dir=ROOT / "configs")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    designs = designs[:24]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    pop_cols, _, _ = population_layout(problem)
    model = ProblemModel(problem, designs, pop_cols)
    if problem.model.kernels is None:
        pytest.skip("the model has no compiled kernels (numpy backend)")
    x0 = to_internal(problem.values[pop_cols], problem.scale[pop_cols],
                     problem.lower[pop_cols], problem.upper[pop_cols])
    sd = np.ones((len(designs), model.n))
    for i, d in enumerate(designs):
        sd[i, :d.n] = np.array([2.0, 0.35, 0.9])[d.obs]
    return model, x0, np.sqrt([0.45, 0.45, 0.09, 0.01, 0.36]), sd


def _draws(x0, sdv, n, seed):
    return x0 + sdv * np.random.default_rng(seed).standard_normal((n, x0.size))


def test_compiled_equals_numpy_lockstep(als):
    """Same step: compiled (per row, own last time) = numpy lockstep to 1e-10, rows repeated
    and in any order, failed rows alike; the step count of the lockstep path is respected
    (an observation at the span's end is interpolated in the last step)."""
    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, _ = als
    n = len(model.designs)
    fc = RK4Predictions(model, compiled=True)
    fn = RK4Predictions(model, compiled=False)
    assert fc.compiled and not fn.compiled
    idx = np.random.default_rng(3).permutation(np.tile(np.arange(n), 3))
    phi = _draws(x0, sdv, idx.size, 4)
    for h in (0.9, 0.37, 0.25):      # steps that do and do not divide the span
        fc.h = fn.h = h
        a, _ = fn.predict(phi, idx)
        b, G = fc.predict(phi, idx)
        assert G.shape == (idx.size, model.n, x0.size)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = np.isfinite(a)
        scale = np.maximum(1.0, np.abs(a[ok]))
        assert np.max(np.abs(a[ok] - b[ok]) / scale) < 1e-10
    # the compiled path differs from the numpy one in arithmetic only: the step matters
    fc.h = 0.9
    c, _ = fc.predict(phi, idx)
    assert np.nanmax(np.abs(c - b)) > 1e-6


def test_compiled_thread_count_independent(als):
    """Results do not depend on the number of threads (one row = one thread's work)."""
    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, _ = als
    n = len(model.designs)
    fc = RK4Predictions(model, h=0.3, compiled=True)
    idx = np.tile(np.arange(n), 4)
    phi = _draws(x0, sdv, idx.size, 5)
    a, _ = fc.predict(phi, idx)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b, _ = fc.predict(phi, idx)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(a, b, equal_nan=True)


def test_compiled_calibrated_matches_exact_path(als):
    """Calibrated on the compiled path: predictions at other draws within 0.01 residual SD
    of the exact path, far rows in a batch of their own, beyond 20 spans failed."""
    from progression.fit.estimators.saem import _Predictions
    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, sd = als
    n = len(model.designs)
    exact = _Predictions(model)
    fast = RK4Predictions(model)
    assert fast.compiled
    idx = np.arange(n)
    assert fast.calibrate(exact.predict, _draws(x0, sdv, n, 1), idx, sd)
    assert 0 < fast.h and fast.max_error < 0.01
    idx2 = np.tile(idx, 2)
    phi = _draws(x0, sdv, 2 * n, 2)
    f_fast, _ = fast.predict(phi, idx2)
    f_ex, _ = exact.predict(phi, idx2)
    ok = np.isfinite(f_ex).all(axis=1)
    assert ok.sum() >= 2 * n - 1
    err = np.abs(f_fast - f_ex)[ok] / sd[idx2][ok]
    assert err.max() < 0.01, err.max()
    far = phi[:3].copy()
    far[0, 4] = np.log(fast.horizon * 1.5)
    far[1, 4] = np.log(fast.horizon * 12.0)
    f_far, _ = fast.predict(far, idx[:3])
    f_ex, _ = exact.predict(far[:1], idx[:1])
    n0 = model.designs[0].n
    assert np.max(np.abs(f_far[0, :n0] - f_ex[0, :n0]) / sd[0, :n0]) < 0.01
    assert np.all(np.isnan(f_far[1])) and np.all(np.isfinite(f_far[2, :model.designs[2].n]))


def test_nonfinite_row_fails_alone(als):
    """A row whose values are not finite is NaN in both paths; the other rows are not."""
    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, _ = als
    fc = RK4Predictions(model, h=0.3, compiled=True)
    fn = RK4Predictions(model, h=0.3, compiled=False)
    phi = _draws(x0, sdv, 3, 6)
    phi[1, 0] = 800.0            # log k0: an overflowing hazard
    a, _ = fn.predict(phi, np.arange(3))
    b, _ = fc.predict(phi, np.arange(3))
    assert np.all(np.isnan(a[1])) and np.all(np.isnan(b[1]))
    assert np.all(np.isfinite(b[[0, 2]])) and np.allclose(a[[0, 2]], b[[0, 2]], rtol=1e-10,
                                                          atol=1e-10)


def test_pickle_round_trip(als):
    """Picklable (worker processes): the copy predicts the same, without the kept states."""
    import pickle

    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, _ = als
    fast = RK4Predictions(model, h=0.3)
    phi = _draws(x0, sdv, 5, 9)
    a, _ = fast.predict(phi, np.arange(5))
    assert fast._cache
    copy = pickle.loads(pickle.dumps(fast))
    assert copy._cache == [] and copy.compiled
    b, _ = copy.predict(phi, np.arange(5))
    assert np.array_equal(a, b, equal_nan=True)


def test_compiled_refused_without_kernels(als, monkeypatch):
    """compiled=True on a model without kernels (numpy backend) is refused by name; the
    default then takes the numpy lockstep path, with the same predictions."""
    from progression.fit.population._saem_model import RK4Predictions

    model, x0, sdv, _ = als
    phi = _draws(x0, sdv, 4, 7)
    ref, _ = RK4Predictions(model, h=0.3).predict(phi, np.arange(4))
    monkeypatch.setattr(type(model.problem.model), "kernels", property(lambda self: None))
    with pytest.raises(ValueError, match="no compiled kernels"):
        RK4Predictions(model, compiled=True)
    fast = RK4Predictions(model, h=0.3)
    assert not fast.compiled
    f, _ = fast.predict(phi, np.arange(4))
    assert np.allclose(f, ref, rtol=1e-10, atol=1e-10)


def test_states_reused_for_observation_parameters(monkeypatch):
    """A move of a parameter acting only on the observables (kappa_nfl) or a row whose
    parameters did not change is only observed again (its states come from a recent
    evaluation of the same rows): predictions identical to a fresh evaluation, and the other
    rows integrated."""
    from progression.fit.estimators.focei import population_layout
    from progression.fit.population._saem_model import RK4Predictions
    from progression.fit.transforms import to_internal

    text = ALS + """
[parameters.kappa_nfl]
estimate = "population"
value = 6000.0
bounds = [500.0, 50000.0]
scale = "log"
eta = 0.09
"""
    cfg = parse_fit_config(text, source="als.toml", base_dir=ROOT / "configs")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    designs = designs[:12]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    pop_cols, _, _ = population_layout(problem)
    model = ProblemModel(problem, designs, pop_cols)
    if problem.model.kernels is None:
        pytest.skip("the model has no compiled kernels (numpy backend)")
    names = [problem.names[q] for q in pop_cols]
    kap, k0 = names.index("kappa_nfl"), names.index("k0")
    x0 = to_internal(problem.values[pop_cols], problem.scale[pop_cols],
                     problem.lower[pop_cols], problem.upper[pop_cols])
    fast = RK4Predictions(model, h=0.3)
    assert fast._state_cols is not None
    used = {problem.names[q] for q in range(problem.P) if fast._state_cols[q]}
    assert {"k0", "kA", "Tmax", "eD"} <= used and not {"kappa_nfl", "Q0"} & used
    # the ALSFRS-R map's wsp acts on a state since the death hazard (its cumulative-hazard
    # state integrates a rate of the predicted ALSFRS-R)
    assert "wsp" in used
    seen = spy_rows(monkeypatch)
    n = len(designs)
    idx = np.arange(n)
    rng = np.random.default_rng(8)
    phi0 = x0 + 0.3 * rng.standard_normal((n, x0.size))
    fast.predict(phi0, idx)
    phi1 = phi0.copy()
    phi1[::2, kap] += 0.5                       # observation parameter: every row reused
    phi1[1::4, k0] += 0.2                       # a state parameter: these rows integrated
    phi2 = phi0.copy()
    phi2[:, kap] -= 0.4                         # back to the first states (two calls ago)
    for phi in (phi1, phi2):
        f, _ = fast.predict(phi, idx)
        ref, _ = RK4Predictions(model, h=0.3).predict(phi, idx)
        assert np.array_equal(f, ref, equal_nan=True)
    # fast at phi0, phi1, phi2 (each followed by the fresh reference, which reuses nothing)
    assert seen == [0, n - len(range(1, n, 4)), 0, n, 0]
    # a different step: nothing reused
    fast.h = 0.25
    fast.predict(phi2, idx)
    assert seen[-1] == 0
