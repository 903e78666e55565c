"""SAEM typical values without a random effect (Monolix's "parameters without variability")
and the correlated random-walk kernel (``omega_walk``):
the Fisher-scoring M-step of ``progression.fit.population._saem_fixed`` against the exact
maximum-likelihood estimate of a linear mixed model (closed-form marginal likelihood, BFGS,
no code shared with the SAEM core), and bad inputs.

Model: y_ij = (b0 + eta_i) + b1 t_j + eps_ij with the slope b1 the same for every subject (no
random effect); its ML estimate is generalised least squares under the marginal covariance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from progression.errors import FitError
from progression.fit.population import PopulationData, Residual, SaemOptions, saem
from progression.fit.population._saem_fixed import FixedEffectStep

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import LinearModel  # noqa: E402


def _data(N=50, seed=11):
    rng = np.random.default_rng(seed)
    t = np.arange(6.0)
    times, ys = [], []
    for i in range(N):
        tt = t if i % 4 else t[:4]          # unequal designs exercise the padding
        times.append(tt)
        ys.append(10.0 + 1.5 * rng.standard_normal() + 0.8 * tt
                  + 0.7 * rng.standard_normal(tt.size))
    return times, ys


def _exact_ml(times, ys):
    """ML of (b0, b1, log omega^2, log a) from the exact marginal likelihood."""
    def m2ll(p):
        om, a2 = np.exp(p[2]), np.exp(2 * p[3])
        tot = 0.0
        for t, y in zip(times, ys, strict=True):
            C = om * np.ones((t.size, t.size)) + a2 * np.eye(t.size)
            r = y - p[0] - p[1] * t
            tot += np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r)
        return tot

    return minimize(m2ll, np.r_[8.0, 0.3, 0.0, 0.0], method="BFGS",
                    options={"gtol": 1e-8}).x


def test_slope_without_random_effect_matches_exact_ml():
    times, ys = _data()
    ref = _exact_ml(times, ys)
    data = PopulationData.from_subjects(ys)
    # started far from the estimate (slope 0.2 vs 0.8): the M-step must move it
    r = saem(LinearModel(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
             eta_columns=[0], estimate_columns=[1],
             options=SaemOptions(is_samples=0, fisher=False), seed=2)
    # Monte Carlo tolerance: SE of the slope ~0.02 (0.7 / sqrt(sum (t - tbar)^2) over 50
    # subjects); the SAEM error is a small fraction of it
    assert r.mu[1] == pytest.approx(ref[1], abs=0.005)
    assert r.mu[0] == pytest.approx(ref[0], abs=0.05)
    assert r.omega[0, 0] == pytest.approx(np.exp(ref[2]), rel=0.08)
    assert r.residual.a[0] == pytest.approx(np.exp(ref[3]), rel=0.03)
    # the trace shows it moving from the start
    assert r.trace_mu[0, 1] != 0.2 and abs(r.trace_mu[-1, 1] - r.mu[1]) < 1e-12
    # without estimate_columns the slope stays at its start (the previous behaviour)
    held = saem(LinearModel(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
                eta_columns=[0], options=SaemOptions(is_samples=0, fisher=False, k1=120,
                                                      k2=20), seed=2)
    assert held.mu[1] == 0.2


def test_bounds_hold_and_score_is_the_derivative():
    times, ys = _data(N=20)
    data = PopulationData.from_subjects(ys)
    r = saem(LinearModel(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
             eta_columns=[0], estimate_columns=[1], estimate_bounds=([0.0], [0.5]),
             options=SaemOptions(is_samples=0, fisher=False, k1=120, k2=20), seed=2)
    assert r.mu[1] == 0.5                     # the ML slope 0.8 is outside: at the bound
    assert np.all(r.trace_mu[:, 1] <= 0.5)
    # the score of the complete-data log-likelihood against a central difference of it
    from progression.fit.population._saem import _Chains

    index = np.arange(data.n_subjects)
    chains = _Chains(LinearModel(times), data, index, 2, Residual.proportional(0.3))
    rng = np.random.default_rng(0)
    phi = np.c_[10.0 + rng.standard_normal(index.size), np.full(index.size, 0.7)]
    res = Residual.combined(0.5, 0.1)
    step = FixedEffectStep([1])
    U, f = chains.evaluate(phi, res)
    score, info, per = step.score_information(chains, phi, f, np.where(chains.d.mask,
                                              chains.d.y, 0.0), res, 1)

    def loglik(b1):
        ph = phi.copy()
        ph[:, 1] = b1
        return -0.5 * chains.evaluate(ph, res)[0].sum()

    h = 1e-5
    fd = (loglik(0.7 + h) - loglik(0.7 - h)) / (2 * h)
    assert score[0] == pytest.approx(fd, rel=1e-4)
    assert per.sum() == pytest.approx(score[0])
    assert info[0, 0] > 0


@pytest.mark.parametrize("kwargs, words", [
    (dict(estimate_columns=[0]), "estimate_columns: expected distinct parameters without"),
    (dict(estimate_columns=[2]), "estimate_columns: expected distinct parameters without"),
    (dict(estimate_columns=[1, 1]), "estimate_columns: expected distinct parameters without"),
    (dict(estimate_columns=[1], estimate_bounds=([0.0, 1.0], [2.0])),
     "estimate_bounds: expected two arrays of 1 bounds"),
])
def test_bad_inputs_refused(kwargs, words):
    times, ys = _data(N=5)
    data = PopulationData.from_subjects(ys)
    with pytest.raises(FitError, match=words):
        saem(LinearModel(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
             eta_columns=[0], options=SaemOptions(is_samples=0), **kwargs)


def test_standard_error_of_the_slope_matches_the_exact_information():
    """Louis' information with the slope's Fisher-scoring terms: its SE against the inverse
    Hessian of the exact marginal -log L at the ML estimate (central differences)."""
    times, ys = _data()
    ref = _exact_ml(times, ys)

    def m2ll(p):
        om, a2 = np.exp(p[2]), np.exp(2 * p[3])
        tot = 0.0
        for t, y in zip(times, ys, strict=True):
            C = om * np.ones((t.size, t.size)) + a2 * np.eye(t.size)
            r = y - p[0] - p[1] * t
            tot += np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r)
        return tot

    h = 1e-4
    Hm = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            e_i, e_j = np.eye(4)[i] * h, np.eye(4)[j] * h
            Hm[i, j] = (m2ll(ref + e_i + e_j) - m2ll(ref + e_i - e_j) - m2ll(ref - e_i + e_j)
                        + m2ll(ref - e_i - e_j)) / (4 * h * h)
    se_exact = np.sqrt(np.diag(np.linalg.inv(0.5 * Hm)))
    data = PopulationData.from_subjects(ys)
    r = saem(LinearModel(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
             eta_columns=[0], estimate_columns=[1],
             options=SaemOptions(is_samples=0, k2=300), seed=2)
    names = list(r.parameter_names)
    assert names == ["mu[0]", "log omega2[0]", "log a[0]", "theta[1]"]
    se = np.sqrt(np.diag(r.covariance))
    # Monte Carlo tolerance of the SA information: 10 % (the intercept's and the slope's
    # SEs are ~0.2 and ~0.014)
    assert se[3] == pytest.approx(se_exact[1], rel=0.10)
    assert se[0] == pytest.approx(se_exact[0], rel=0.10)


def test_correlated_walk_kernel_keeps_the_exact_ml():
    """``omega_walk``: the random walk with proposal covariance s^2 Omega (a valid symmetric
    Metropolis-Hastings kernel) leaves SAEM's estimates at the exact ML of a linear mixed
    model whose two random effects correlate at -0.97 (closed-form marginal likelihood,
    BFGS)."""
    rng = np.random.default_rng(4)
    t = np.arange(5.0)
    om = np.array([[1.0, -0.97 * 0.5], [-0.97 * 0.5, 0.25]])
    L = np.linalg.cholesky(om)
    times, ys = [], []
    for _ in range(60):
        e = L @ rng.standard_normal(2)
        times.append(t)
        ys.append(10.0 + e[0] + (2.0 + e[1]) * t + 0.5 * rng.standard_normal(t.size))
    Z = np.c_[np.ones_like(t), t]

    def m2ll(p):
        Lc = np.array([[np.exp(p[2]), 0.0], [p[3], np.exp(p[4])]])
        C = Z @ (Lc @ Lc.T) @ Z.T + np.exp(2 * p[5]) * np.eye(t.size)
        Ci = np.linalg.inv(C)
        ld = np.linalg.slogdet(C)[1]
        return sum(ld + (y - Z @ p[:2]) @ Ci @ (y - Z @ p[:2]) for y in ys)

    ref = minimize(m2ll, np.r_[9.0, 1.5, 0.0, -0.4, -1.0, 0.0], method="BFGS",
                   options={"gtol": 1e-8}).x
    Lr = np.array([[np.exp(ref[2]), 0.0], [ref[3], np.exp(ref[4])]])
    om_ref = Lr @ Lr.T
    data = PopulationData.from_subjects(ys)
    r = saem(LinearModel(times), data, [8.0, 1.0], np.eye(2), Residual.additive(1.0),
             options=SaemOptions(omega_diagonal=False, omega_walk=True, is_samples=0,
                                 fisher=False), seed=3)
    # Monte Carlo tolerances as in test_population_saem.py (SEs: intercept ~0.13, slope
    # ~0.07, variances ~20 %)
    np.testing.assert_allclose(r.mu, ref[:2], atol=0.05)
    np.testing.assert_allclose(np.diag(r.omega), np.diag(om_ref), rtol=0.08)
    corr = r.omega[0, 1] / np.sqrt(r.omega[0, 0] * r.omega[1, 1])
    assert corr == pytest.approx(om_ref[0, 1] / np.sqrt(om_ref[0, 0] * om_ref[1, 1]),
                                 abs=0.03)
    assert r.residual.a[0] == pytest.approx(np.exp(ref[5]), rel=0.03)


class _TLinear(LinearModel):
    """The linear model with a Student-t(3) residual (SAEM reads ``residual_df``)."""

    residual_df = np.array([3.0])


def _exact_ml_t(times, ys, points=2001):
    """ML of (b0, b1, log omega^2, log a) with t(3) residuals of scale a: each subject's
    marginal likelihood by the trapezoid rule on a dense grid of its random intercept (+-7
    prior SDs; the posterior, SD ~0.45, spans ~100 grid steps), scipy's t density; no code
    shared with the SAEM core."""
    from scipy.special import logsumexp
    from scipy.stats import norm
    from scipy.stats import t as student

    z = np.linspace(-7.0, 7.0, points)

    def m2ll(p):
        om, a = np.exp(p[2]), np.exp(p[3])
        eta = np.sqrt(om) * z
        log_prior = norm.logpdf(z) + np.log(z[1] - z[0])   # N(0, 1) density times dz
        tot = 0.0
        for t, y in zip(times, ys, strict=True):
            r = y[None] - p[0] - eta[:, None] - p[1] * t[None]
            ll = student.logpdf(r / a, 3).sum(axis=1) - t.size * np.log(a)
            tot -= 2.0 * logsumexp(ll + log_prior)
        return tot

    return minimize(m2ll, np.r_[9.0, 0.5, 0.5, -0.3], method="BFGS",
                    options={"gtol": 1e-7}).x


def test_slope_without_random_effect_with_t_residual_matches_exact_ml():
    """With a Student-t residual the M-step of a parameter without a random effect works on
    SAEM's complete data (the latent precision weights): its estimate is the exact ML of the
    t likelihood (quadrature), where it used to be refused."""
    rng = np.random.default_rng(21)
    t = np.arange(6.0)
    times = [t] * 60
    ys = [10.0 + 1.5 * rng.standard_normal() + 0.8 * t + 0.7 * rng.standard_t(3, t.size)
          for _ in times]
    ref = _exact_ml_t(times, ys)
    data = PopulationData.from_subjects(ys)
    r = saem(_TLinear(times), data, [5.0, 0.2], np.eye(1), Residual.additive(2.0),
             eta_columns=[0], estimate_columns=[1],
             options=SaemOptions(is_samples=0, fisher=False), seed=4)
    # SE of the slope ~0.03 (t(3) SD 1.2 over 60 x 6 values); SAEM's Monte Carlo error a
    # fraction of it
    assert r.mu[1] == pytest.approx(ref[1], abs=0.008)
    assert r.mu[0] == pytest.approx(ref[0], abs=0.08)
    assert r.residual.a[0] == pytest.approx(np.exp(ref[3]), rel=0.05)


def test_t_score_is_the_derivative_of_the_scale_mixture_likelihood():
    """Given the latent weights w, the complete data are normal with variance V / w: the
    step's score (with the rescaled values complete_data returns) is the derivative of that
    log-likelihood."""
    from progression.fit.population._saem import _Chains
    from progression.fit.population._saem_chains import complete_data

    times, ys = _data(N=20)
    data = PopulationData.from_subjects(ys)
    index = np.arange(data.n_subjects)
    res = Residual.combined(0.5, 0.1)
    chains = _Chains(_TLinear(times), data, index, 2, res)
    rng = np.random.default_rng(0)
    phi = np.c_[10.0 + rng.standard_normal(index.size), np.full(index.size, 0.7)]
    U, f = chains.evaluate(phi, res)
    ysim, w = complete_data(np.random.default_rng(3), chains, f, res, weights=True)
    m = chains.d.mask
    assert np.all(w[m] > 0) and not np.allclose(w[m], 1.0)
    y = np.where(m, chains.d.y, 0.0)
    step = FixedEffectStep([1])
    score, info, _ = step.score_information(chains, phi, f, ysim, res, 1, weights=w)

    def loglik(b1):
        ph = phi.copy()
        ph[:, 1] = b1
        fb = chains.evaluate(ph, res)[1]
        V = res.variance(np.where(m, fb, 0.0), chains.d.observable) / w
        return np.sum(np.where(m, -0.5 * np.log(V) - 0.5 * (y - fb) ** 2 / V, 0.0))

    h = 1e-5
    fd = (loglik(0.7 + h) - loglik(0.7 - h)) / (2 * h)
    assert score[0] == pytest.approx(fd, rel=1e-4)
    assert info[0, 0] > 0
