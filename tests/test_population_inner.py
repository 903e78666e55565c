"""Lockstep conditional-mode (eta-hat) solver of the population core."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.errors import FitError, SolverError
from progression.fit.population import (
    CONVERGED,
    FAILED,
    MAX_ITER,
    InnerOptions,
    PopulationData,
    Residual,
    conditional_modes,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOral, RefSubject, _onecmt, simulate_onecmt  # noqa: E402

THETA = np.array([0.4, 1.0, 3.45])
OMEGA = np.array([[0.40, 0.02, 0.0], [0.02, 0.10, 0.01], [0.0, 0.01, 0.05]])


def _problem(n, seed=11, a=0.3, b=0.1):
    times, doses, ys = simulate_onecmt(n, seed, OMEGA, a=a, b=b)
    mu = np.tile(THETA, (n, 1))
    return OneCmtOral(times, doses), PopulationData.from_subjects(ys), mu, times, doses, ys


@pytest.mark.parametrize("curvature", ["observed", "expected"])
@pytest.mark.parametrize("interaction", [True, False])
def test_modes_equal_scipy_minimize(interaction, curvature):
    model, data, mu, times, doses, ys = _problem(8)
    res = Residual.combined(0.3, 0.1)
    got = conditional_modes(model, data, mu, OMEGA, res, interaction=interaction,
                            options=InnerOptions(curvature=curvature))
    assert np.all(got.status == CONVERGED), got.failures()
    for i in range(8):
        ref = RefSubject(lambda e, i=i: _onecmt(times[i], doses[i], *(mu[i] + e)), ys[i],
                         0.3, 0.1, OMEGA)
        V = None if interaction else ref.var(ref.fun(np.zeros(3)))
        eh = ref.mode(V=V)
        np.testing.assert_allclose(got.eta[i], eh, atol=1e-6)
        assert got.objective[i] == pytest.approx(ref.L(eh, V), rel=1e-10)
        np.testing.assert_allclose(got.f[i, :len(times[i])], ref.fun(eh), rtol=1e-6)


def test_partial_random_effects_modes():
    """eta on (ka, V) only: CL stays at its typical value."""
    model, data, mu, times, doses, ys = _problem(4)
    om = OMEGA[np.ix_([0, 2], [0, 2])]
    got = conditional_modes(model, data, mu, om, Residual.additive(0.4), eta_columns=[0, 2])
    for i in range(4):
        def fun(e, i=i):
            p = mu[i].copy()
            p[[0, 2]] += e
            return _onecmt(times[i], doses[i], *p)
        ref = RefSubject(fun, ys[i], 0.4, 0.0, om)
        np.testing.assert_allclose(got.eta[i], ref.mode(), atol=1e-6)


def test_batching_does_not_change_modes():
    model, data, mu, *_ = _problem(50, seed=5)
    res = Residual.combined(0.3, 0.1)
    one = conditional_modes(model, data, mu, OMEGA, res, options=InnerOptions(batch_size=1))
    seven = conditional_modes(model, data, mu, OMEGA, res, options=InnerOptions(batch_size=7))
    alls = conditional_modes(model, data, mu, OMEGA, res)
    assert np.all(alls.status == CONVERGED)
    # equal to rounding: numpy's stacked linear algebra may take another code path for
    # another batch size (measured 2026-12-01 on an AMD EPYC host: 5e-15 relative)
    np.testing.assert_allclose(one.eta, alls.eta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seven.eta, alls.eta, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(one.n_iter, alls.n_iter)
    # lockstep: one predict call per iteration of the slowest subject, plus the start
    assert alls.n_predict == 1 + alls.n_iter.max()
    assert one.n_predict == sum(1 + k for k in alls.n_iter)


def test_warm_start_and_iteration_limit():
    model, data, mu, *_ = _problem(6)
    res = Residual.combined(0.3, 0.1)
    cold = conditional_modes(model, data, mu, OMEGA, res)
    warm = conditional_modes(model, data, mu, OMEGA, res, eta0=cold.eta)
    np.testing.assert_allclose(warm.eta, cold.eta, atol=1e-10)
    assert warm.n_iter.max() <= 2
    short = conditional_modes(model, data, mu, OMEGA, res, options=InnerOptions(max_iter=1))
    assert np.all(short.status == MAX_ITER)
    assert "maximum iterations after 1 iterations" in short.failures()[0]
    # one iteration never increases L_i (a rejected trial keeps the point and raises the
    # damping) and here decreases it for most subjects
    zero = conditional_modes(model, data, mu, OMEGA, res, options=InnerOptions(max_iter=0))
    assert np.all(short.objective <= zero.objective)
    assert np.sum(short.objective < zero.objective) >= 4
    with pytest.raises(FitError, match="expected curvature 'observed' or 'expected'"):
        InnerOptions(curvature="exact")


class _Flaky(OneCmtOral):
    """Subject 1 fails at start; subject 3 raises a SolverError; subject 4 gives NaN for
    large ka (the solver must step back rather than stop)."""

    def predict(self, phi, index):
        index = np.asarray(index)
        if 3 in index:
            raise SolverError("integration failed for subject 3")
        f, G = super().predict(phi, index)
        f[index == 1] = np.nan
        far = (index == 4) & (phi[:, 0] > THETA[0] + 0.05)
        f[far] = np.inf
        return f, G


def test_failures_are_statuses_not_exceptions():
    model, data, mu, times, doses, ys = _problem(6)
    res = Residual.combined(0.3, 0.1)
    flaky = _Flaky(times, doses)
    got = conditional_modes(flaky, data, mu, OMEGA, res)
    ref = conditional_modes(model, data, mu, OMEGA, res)
    assert got.status[1] == FAILED and got.status[3] == FAILED
    assert np.isnan(got.objective[[1, 3]]).all()
    for i in (0, 2, 5):
        assert got.status[i] == CONVERGED
        np.testing.assert_allclose(got.eta[i], ref.eta[i], atol=1e-9)
    # subject 4 is confined to ka <= typical + 0.05 and ends at (or inside) that boundary
    assert got.status[4] != FAILED and got.eta[4, 0] <= 0.05 + 1e-12
    assert len(got.failures()) >= 2


def test_everything_pickles():
    model, data, mu, *_ = _problem(3)
    res = Residual.proportional(0.12)
    opts = InnerOptions(max_iter=50, batch_size=2)
    got = conditional_modes(model, data, mu, OMEGA, res, options=opts)
    m2, d2, r2, o2, g2 = pickle.loads(pickle.dumps((model, data, res, opts, got)))
    again = conditional_modes(m2, d2, mu, OMEGA, r2, options=o2)
    np.testing.assert_array_equal(again.eta, got.eta)
    np.testing.assert_array_equal(g2.eta, got.eta)


def test_padding_and_observables():
    """Two observables with their own error models; padded slots are ignored."""
    times = [np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0])]
    ys = [np.array([5.0, 6.0, 4.0]), np.array([4.5, 5.2])]
    obs = [np.array([0, 1, 0]), np.array([1, 0])]
    data = PopulationData.from_subjects(ys, observables=obs)
    model = OneCmtOral(times, [320.0, 320.0])
    res = Residual(a=(0.4, 0.1), b=(0.0, 0.2))
    mu = np.tile(THETA, (2, 1))
    got = conditional_modes(model, data, mu, OMEGA, res)
    for i in range(2):
        a = np.where(obs[i] == 0, 0.4, 0.1)
        b = np.where(obs[i] == 0, 0.0, 0.2)
        ref = RefSubject(lambda e, i=i: _onecmt(times[i], 320.0, *(mu[i] + e)), ys[i], a, b,
                         OMEGA)
        np.testing.assert_allclose(got.eta[i], ref.mode(), atol=1e-6)


def test_population_data_refusals():
    with pytest.raises(FitError, match="subject 1: expected at least one observation"):
        PopulationData.from_subjects([[1.0], []])
    with pytest.raises(FitError, match="subject 0, observation 1: expected a finite value"):
        PopulationData.from_subjects([[1.0, np.nan]])
    with pytest.raises(FitError, match="subject 0, observation 0: censored, so a finite limit"):
        PopulationData.from_subjects([[1.0]], cens=[[1]])
    with pytest.raises(FitError, match=r"subject 0: expected 1 censoring flags in \(0, 1, -1\)"):
        PopulationData.from_subjects([[1.0]], cens=[[2]])
    with pytest.raises(FitError, match="data.csv: expected at least one subject"):
        PopulationData.from_subjects([], source="data.csv")
    with pytest.raises(FitError, match="subject 0: expected 2 observable indices"):
        PopulationData.from_subjects([[1.0, 2.0]], observables=[[0, -1]])
    with pytest.raises(FitError, match="subject 0: expected 2 limits, found 1"):
        PopulationData.from_subjects([[1.0, 2.0]], limits=[[1.0]])


def test_shape_refusals():
    model, data, mu, *_ = _problem(3)
    res = Residual.additive(0.3)
    with pytest.raises(FitError, match=r"expected typical parameters of shape \(3, D\)"):
        conditional_modes(model, data, mu[:2], OMEGA, res)
    with pytest.raises(FitError, match=r"expected a finite warm start of shape \(3, 3\)"):
        conditional_modes(model, data, mu, OMEGA, res, eta0=np.zeros((3, 2)))
    with pytest.raises(FitError, match="expected a finite warm start"):
        conditional_modes(model, data, mu, OMEGA, res, eta0=np.full((3, 3), np.nan))

    data2 = PopulationData.from_subjects([[1.0, 2.0], [3.0]], observables=[[0, 1], [2]])
    with pytest.raises(FitError, match="subject 1, observation 0: observable 2 has no error "
                                       "model"):
        conditional_modes(model, data2, mu[:2], OMEGA, Residual(a=(0.1, 0.2), b=(0.0, 0.0)))
