"""NPDE and pd (Brendel et al. 2006; Comets et al. 2008) against a hand computation and a
simulated linear Gaussian truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from progression.errors import FitError, ProgressionError
from progression.fit.population import PopulationData, npde

PHI_INV_075 = 0.6744897501960817  # Phi^-1(0.75)


def test_one_observation_by_hand():
    # sims 1,2,3,4: mean 2.5, var (ddof 1) 5/3; y = 3.5 lies above 3 of the 4 decorrelated sims
    res = npde([[3.5]], [np.array([[1.0], [2.0], [3.0], [4.0]])])
    assert res.pde[0, 0] == 0.75 and res.pd[0, 0] == 0.75
    assert res.npde[0, 0] == pytest.approx(PHI_INV_075, abs=1e-15)
    # strictly below (npde's rule): y = 3 ties with a simulation -> 2 / 4
    assert npde([[3.0]], [np.array([[1.0], [2.0], [3.0], [4.0]])]).pd[0, 0] == 0.5
    # above every simulation: 1 - 1/(2K); below every one: 1/(2K)
    assert npde([[9.0]], [np.array([[1.0], [2.0], [3.0], [4.0]])]).pde[0, 0] == 1 - 1 / 8
    assert npde([[-9.0]], [np.array([[1.0], [2.0], [3.0], [4.0]])]).pde[0, 0] == 1 / 8


def test_two_correlated_observations_by_hand():
    sims = [[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 4.0], [5.0, 3.5]]
    y = [4.5, 2.0]
    K = len(sims)
    m1 = sum(s[0] for s in sims) / K
    m2 = sum(s[1] for s in sims) / K
    v11 = sum((s[0] - m1) ** 2 for s in sims) / (K - 1)
    v22 = sum((s[1] - m2) ** 2 for s in sims) / (K - 1)
    v12 = sum((s[0] - m1) * (s[1] - m2) for s in sims) / (K - 1)
    # lower Cholesky factor of [[v11, v12], [v12, v22]], solved by forward substitution
    l11 = math.sqrt(v11)
    l21 = v12 / l11
    l22 = math.sqrt(v22 - l21 ** 2)

    def decor(a, b):
        z1 = (a - m1) / l11
        return z1, (b - m2 - l21 * z1) / l22

    zy = decor(*y)
    zs = [decor(*s) for s in sims]
    pde = [sum(z[j] < zy[j] for z in zs) / K for j in (0, 1)]
    pde = [min(max(p, 0.5 / K), 1 - 0.5 / K) for p in pde]
    pd = [sum(s[j] < y[j] for s in sims) / K for j in (0, 1)]

    res = npde([y], [np.array(sims)])
    np.testing.assert_allclose(res.pde[0], pde, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.npde[0], stats.norm.ppf(pde), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.pd[0], pd, rtol=0, atol=1e-15)
    # hand values themselves: y1 = 4.5 above 4 of 5 sims; y2 = 2 strictly above one (tied
    # with another); the decorrelated y2 lies below every decorrelated simulation -> 1/(2K)
    assert pd == [0.8, 0.2] and pde == [0.8, 0.1]


def _linear_gaussian(rng, N, K, shift=0.0):
    """y_ij = (1 + eta_i) + (0.5 + 0.1 eta2_i) t_j + eps; model simulations with ``shift``."""
    t = np.array([0.0, 1.0, 2.0, 4.0, 6.0])
    n = len(t)

    def draw(size):
        e1 = rng.normal(0, 0.5, size + (1,))
        e2 = rng.normal(0, 0.2, size + (1,))
        return (1 + e1) + (0.5 + e2) * t + rng.normal(0, 0.3, size + (n,))

    y = draw((N,))
    sims = draw((K, N)) + shift
    return y, sims


def test_correct_model_gives_standard_normal_npde():
    rng = np.random.default_rng(20260101)
    y, sims = _linear_gaussian(rng, N=200, K=500)
    for how in ("cholesky", "symmetric"):
        v = npde(y, sims, decorrelation=how).values()
        assert v.size == 1000
        assert stats.kstest(v, "norm").pvalue > 0.01
        # mean SE 1/sqrt(1000) = 0.032 -> 0.1 is > 3 SE; variance SE ~ 0.045 -> 0.15
        assert abs(v.mean()) < 0.1
        assert abs(v.var() - 1.0) < 0.15
    pd = npde(y, sims).values("pd")
    assert stats.kstest(pd, "uniform").pvalue > 0.01


def test_misspecified_model_shifts_the_mean():
    rng = np.random.default_rng(7)
    # the model predicts 0.4 too high (1.3 residual SDs; npde mean -0.23 with this seed)
    y, sims = _linear_gaussian(rng, N=200, K=500, shift=0.4)
    v = npde(y, sims).values()
    assert v.mean() < -0.15  # 4.7 SE below 0; under the correct model |mean| < 0.1
    assert stats.kstest(v, "norm").pvalue < 1e-6


def test_padded_population_data_censored_pd_within_limit_and_padding_out():
    """A censored value (Nguyen et al. 2012): its pd is drawn in [0, P(Y < limit)] of its
    simulations and its NPDE is finite; padding stays NaN; a subject without censored values
    gets the numbers of the per-subject (list) form."""
    data = PopulationData.from_subjects([[1.0, 2.0, 3.0], [0.5, 1.5]],
                                        cens=[[0, 1, 0], [0, 0]],
                                        limits=[[np.nan, 2.5, np.nan], [np.nan, np.nan]])
    rng = np.random.default_rng(3)
    sims = rng.normal(size=(50, 2, 3))
    res = npde(data, sims)
    assert np.isnan(res.npde[1, 2])
    assert np.isfinite(res.npde[0]).all() and np.isfinite(res.npde[1, :2]).all()
    p_lim = np.mean(sims[:, 0, 1] < 2.5)  # 1.0 here: every simulation is below 2.5
    assert 1 / 100 <= res.pd[0, 1] <= min(p_lim, 1 - 1 / 100)
    alone = npde([[0.5, 1.5]], [sims[:, 1, :2]])
    np.testing.assert_allclose(res.npde[1, :2], alone.npde[0], rtol=0, atol=1e-14)
    # the draws come from the seed
    np.testing.assert_array_equal(npde(data, sims, seed=0).npde, res.npde)


@pytest.mark.parametrize("call,match", [
    (lambda: npde([[1.0, 2.0]], [np.zeros((5, 3))]), "subject 0: expected simulations of "
                                                     "shape \\(K, 2\\)"),
    (lambda: npde([[1.0]], [np.ones((1, 1))]), "at least 2 simulated replicates"),
    (lambda: npde([[1.0, 2.0]], [np.ones((4, 2))]), "subject 0: expected a positive definite"),
    (lambda: npde([[1.0]], [np.ones((4, 1))], decorrelation="polar"), "decorrelation"),
    (lambda: npde(np.zeros((2, 3)), np.zeros((4, 2, 2))), "expected simulations of shape"),
    (lambda: npde([[1.0]], [np.array([[1.0], [np.nan]])]), "subject 0, observation 0"),
    (lambda: npde([[1.0], [2.0]], [np.ones((3, 1))]), "simulations for 2 subjects"),
])
def test_bad_inputs_are_refused_by_name(call, match):
    with pytest.raises(FitError, match=match) as err:
        call()
    assert isinstance(err.value, ProgressionError)
