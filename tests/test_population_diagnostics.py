"""PRED, IPRED, IWRES, CWRES, shrinkage and CV % of the population core."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import sqrtm

from progression.errors import FitError
from progression.fit.population import (
    PopulationData,
    Residual,
    conditional_modes,
    cv_percent,
    epsilon_shrinkage,
    eta_shrinkage,
    residual_diagnostics,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import (  # noqa: E402
    LinearModel,
    OneCmtOral,
    RefSubject,
    _onecmt,
    simulate_onecmt,
    theoph_nonmem,
)

THETA = np.array([0.4, 1.0, 3.45])
OMEGA = np.diag([0.3, 0.1, 0.05])


def test_cwres_linear_mixed_model_is_decorrelated_marginal_residual():
    rng = np.random.default_rng(2)
    om = np.array([[1.0, 0.3], [0.3, 0.25]])
    sigma = 0.6
    times = [np.sort(rng.uniform(0, 8, 3 + i % 4)) for i in range(7)]
    mu = np.column_stack([np.full(7, 1.5), np.full(7, -0.2)])
    ys = []
    for i, t in enumerate(times):
        e = np.linalg.cholesky(om) @ rng.standard_normal(2)
        ys.append(mu[i, 0] + e[0] + (mu[i, 1] + e[1]) * t + sigma * rng.standard_normal(t.size))
    model = LinearModel(times)
    data = PopulationData.from_subjects(ys)
    res = Residual.additive(sigma)
    inner = conditional_modes(model, data, mu, om, res)
    d = residual_diagnostics(model, data, mu, om, res, inner.eta, decorrelation="cholesky")
    ds = residual_diagnostics(model, data, mu, om, res, inner.eta)
    for i, t in enumerate(times):
        Z = np.stack([np.ones_like(t), t], axis=1)
        C = Z @ om @ Z.T + sigma ** 2 * np.eye(t.size)
        marginal = ys[i] - (mu[i, 0] + mu[i, 1] * t)
        expected = np.linalg.solve(np.linalg.cholesky(C), marginal)
        np.testing.assert_allclose(d.cwres[i, :t.size], expected, rtol=1e-8, atol=1e-10)
        assert np.all(np.isnan(d.cwres[i, t.size:]))
        # default: symmetric square root (NONMEM's), same sum of squares
        sym = np.linalg.solve(np.real(sqrtm(C)), marginal)
        np.testing.assert_allclose(ds.cwres[i, :t.size], sym, rtol=1e-8, atol=1e-10)
        assert np.sum(ds.cwres[i, :t.size] ** 2) == pytest.approx(np.sum(expected ** 2))
        np.testing.assert_allclose(d.pred[i, :t.size], mu[i, 0] + mu[i, 1] * t, rtol=1e-12)


def test_nonlinear_pred_ipred_iwres_cwres():
    times, doses, ys = simulate_onecmt(5, 4, OMEGA, a=0.3, b=0.1)
    mu = np.tile(THETA, (5, 1))
    data = PopulationData.from_subjects(ys)
    model = OneCmtOral(times, doses)
    res = Residual.combined(0.3, 0.1)
    inner = conditional_modes(model, data, mu, OMEGA, res)
    d = residual_diagnostics(model, data, mu, OMEGA, res, inner.eta)
    d_noint = residual_diagnostics(model, data, mu, OMEGA, res, inner.eta, interaction=False)
    for i, t in enumerate(times):
        ref = RefSubject(lambda e, i=i: _onecmt(times[i], doses[i], *(mu[i] + e)), ys[i],
                         0.3, 0.1, OMEGA)
        eh = inner.eta[i]
        f = ref.fun(eh)
        n = t.size
        np.testing.assert_allclose(d.pred[i, :n], ref.fun(np.zeros(3)), rtol=1e-12)
        np.testing.assert_allclose(d.ipred[i, :n], f, rtol=1e-12)
        np.testing.assert_allclose(d.iwres[i, :n], (ys[i] - f) / np.sqrt(ref.var(f)),
                                   rtol=1e-10)
        g = ref.jac(eh)
        for V, got in ((ref.var(f), d.cwres), (ref.var(ref.fun(np.zeros(3))), d_noint.cwres)):
            C = g @ OMEGA @ g.T + np.diag(V)
            expected = np.linalg.solve(np.real(sqrtm(C)), ys[i] - f + g @ eh)
            np.testing.assert_allclose(got[i, :n], expected, rtol=1e-6, atol=1e-8)


def test_censored_values_get_no_residuals():
    times, doses, ys = simulate_onecmt(3, 4, OMEGA, a=0.3, b=0.1)
    # the two lowest values of each subject are below its limit
    limits = [np.full(y.size, np.sort(y)[1] + 1e-9) for y in ys]
    cens = [np.where(y < lim, 1, 0) for y, lim in zip(ys, limits, strict=True)]
    data = PopulationData.from_subjects(ys, cens=cens, limits=limits)
    mu = np.tile(THETA, (3, 1))
    res = Residual.combined(0.3, 0.1)
    model = OneCmtOral(times, doses)
    inner = conditional_modes(model, data, mu, OMEGA, res)
    d = residual_diagnostics(model, data, mu, OMEGA, res, inner.eta)
    for i in range(3):
        c = cens[i] == 1
        assert c.sum() == 2
        assert np.all(np.isnan(d.iwres[i, :c.size][c])) and np.all(np.isnan(d.cwres[i, :c.size][c]))
        assert np.all(np.isfinite(d.cwres[i, :c.size][~c]))
        assert np.all(np.isfinite(d.ipred[i, :c.size]))


def test_shrinkage_and_cv():
    eta = np.array([[0.1, -0.2], [0.3, 0.0], [-0.2, 0.1], [0.0, 0.3]])
    om = np.array([[0.09, 0.01], [0.01, 0.04]])
    expected = 1.0 - np.std(eta, axis=0, ddof=1) / np.sqrt([0.09, 0.04])
    np.testing.assert_allclose(eta_shrinkage(eta, om), expected, rtol=1e-14)
    np.testing.assert_allclose(eta_shrinkage(eta, om, ddof=0),
                               1.0 - np.std(eta, axis=0) / np.sqrt([0.09, 0.04]), rtol=1e-14)
    iw = np.array([[1.0, -1.0, np.nan], [0.5, -0.5, 0.2]])
    assert epsilon_shrinkage(iw) == pytest.approx(1.0 - np.std([1, -1, 0.5, -0.5, 0.2], ddof=1))
    # omega^2 = 0.09 (omega 0.3): CV = 100 sqrt(exp(0.09) - 1) = 30.69 %, 0.04: 20.20 %
    np.testing.assert_allclose(cv_percent(om), [30.6878, 20.2017], rtol=1e-5)


def test_shrinkage_grows_when_data_are_sparse():
    """Rich sampling: shrinkage below 25 % (measured -9, 9, 9 %); one sample each: at least
    15 points more (measured 64, 28, 50 %)."""
    rng = np.random.default_rng(9)
    N = 60
    om = np.diag([0.2, 0.1, 0.05])
    times, doses, ys = simulate_onecmt(N, 9, om, a=0.05, b=0.05, drop=False)
    mu = np.tile(THETA, (N, 1))
    res = Residual.combined(0.05, 0.05)
    rich = conditional_modes(OneCmtOral(times, doses), PopulationData.from_subjects(ys), mu,
                             om, res)
    pick = [rng.integers(0, 10, 1) for _ in range(N)]
    sparse_t = [t[p] for t, p in zip(times, pick, strict=True)]
    sparse_y = [y[p] for y, p in zip(ys, pick, strict=True)]
    sparse = conditional_modes(OneCmtOral(sparse_t, doses), PopulationData.from_subjects(sparse_y),
                               mu, om, res)
    s_rich = eta_shrinkage(rich.eta, om)
    s_sparse = eta_shrinkage(sparse.eta, om)
    assert np.all(s_rich < 0.25), s_rich
    assert np.all(s_sparse > s_rich + 0.15), (s_rich, s_sparse)


# NONMEM 7.4.1, FOCE-I on R's Theoph (nmw package: THEO-FOCEI.CTL, THEO-FOCEI.OUT.txt and
# THEO-FOCEI_sdtab.txt, https://github.com/cran/nmw inst/doc). Final estimates from the last
# iteration's NPARAMETR line (5 significant digits); CWRES of subjects 1 and 12 from the table;
# ETASHRINKSD(%) from the output.
NM_THETA = np.log([1.4907, 32.447, 0.087290])
NM_OMEGA = np.array([[0.43472, 0.056920, -0.0064855], [0.056920, 0.019399, 0.012083],
                     [-0.0064855, 0.012083, 0.020233]])
NM_SIGMA = (0.017039, 0.082844)  # EPS(1) proportional, EPS(2) additive (variances)
NM_CWRES = {
    0: [2.5710, -1.0866, 0.39660, 1.5852, 0.062590, -0.25342, 0.15133, 0.28975, 0.69185,
        1.1080, 2.3872],
    11: [0.0, -2.7892, -0.58715, 1.1029, 0.86087, 0.94955, 0.73561, -0.064678, 0.52286,
         0.16680, -1.3582],
}
NM_ETASHRINKSD = [1.3337, 1.6180, 5.0232]


def test_theoph_cwres_and_shrinkage_match_nonmem():
    """Measured: CWRES within 7e-5 of NONMEM's table, ETASHRINKSD within 0.001 %-points (the
    parameters are rounded to 5 digits); the Cholesky variant differs by up to 2."""
    model, data = theoph_nonmem()
    mu = np.tile(NM_THETA, (12, 1))
    res = Residual.combined(np.sqrt(NM_SIGMA[1]), np.sqrt(NM_SIGMA[0]))
    inner = conditional_modes(model, data, mu, NM_OMEGA, res)
    assert np.all(inner.converged)
    d = residual_diagnostics(model, data, mu, NM_OMEGA, res, inner.eta)
    for i, expected in NM_CWRES.items():
        np.testing.assert_allclose(d.cwres[i, :11], expected, atol=5e-4)
    chol = residual_diagnostics(model, data, mu, NM_OMEGA, res, inner.eta,
                                decorrelation="cholesky")
    assert np.max(np.abs(chol.cwres[0, :11] - NM_CWRES[0])) > 0.5
    np.testing.assert_allclose(100 * eta_shrinkage(inner.eta, NM_OMEGA), NM_ETASHRINKSD,
                               atol=0.01)


def test_cwres_refuses_unknown_decorrelation():
    model, data = theoph_nonmem()
    mu = np.tile(NM_THETA, (12, 1))
    res = Residual.combined(0.3, 0.1)
    with pytest.raises(FitError, match="expected decorrelation 'symmetric' or 'cholesky'"):
        residual_diagnostics(model, data, mu, NM_OMEGA, res, np.zeros((12, 3)),
                             decorrelation="eigen")
