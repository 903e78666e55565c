"""SAEM's own standard errors: stochastic approximation of the observed Fisher information
(Louis' missing-information principle) over the smoothing phase, and the automatic end of the
smoothing phase.

References written here share no code with ``progression.fit.population._saem``: the exact
marginal -2 log L of a linear mixed model (``y_i ~ N(Z_i m_i, Z_i Omega Z_i' + a^2 I)``) whose
Hessian by central differences is the exact observed information, and FOCE-I fits made of the
core's ``focei_gradient`` and ``scipy.optimize.minimize`` (``test_population_saem.py``), whose
``2 H^-1`` is the FOCE-I covariance step.

Measured (2 shared cores): linear model, 60 subjects, diagonal Omega, 3 seeds: every SE within
4% of the exact one (the information's diagonal within 5%); full Omega with a covariate: SEs
within 5%; 3-parameter linear model with a 2 x 2 Omega block and a covariate on one
parameter: SEs within 2% (1 chain per subject; without the batch-means correction of the
noise left in the per-subject mean scores, up to 11% too small on a less favourable seed);
one-compartment oral, 80 subjects, combined error: every SE within 3% of FOCE-I's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit.population import PopulationData, Residual, SaemOptions, saem

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import LinearModel, OneCmtOral, simulate_onecmt  # noqa: E402

LOG2PI = np.log(2 * np.pi)
T = np.arange(5.0)
Z = np.c_[np.ones_like(T), T]


def _linear(N, seed, omega, covariate=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(N) if covariate else np.zeros(N)
    L = np.linalg.cholesky(omega)
    ys = [Z @ (np.array([10.0 + 1.5 * x[i], 2.0 - 0.3 * x[i]]) + L @ rng.standard_normal(2))
          + rng.standard_normal(T.size) for i in range(N)]
    return x, ys


def _exact_m2ll(ys, x, mu, beta, omega, a):
    C = Z @ omega @ Z.T + a * a * np.eye(T.size)
    Ci = np.linalg.inv(C)
    ld = np.linalg.slogdet(C)[1]
    tot = 0.0
    for y, xi in zip(ys, x, strict=True):
        r = y - Z @ (mu + beta * xi)
        tot += ld + r @ Ci @ r + T.size * LOG2PI
    return tot


def _hessian(fun, x, h=1e-4):
    K = x.size
    H = np.zeros((K, K))
    E = np.eye(K) * h
    for i in range(K):
        for j in range(i, K):
            H[i, j] = H[j, i] = (fun(x + E[i] + E[j]) - fun(x + E[i] - E[j])
                                 - fun(x - E[i] + E[j]) + fun(x - E[i] - E[j])) / (4 * h * h)
    return H


@pytest.mark.parametrize("seed", [1, 2])
def test_linear_diagonal_fisher_matches_exact(seed):
    """Diagonal Omega: the SA information against the exact observed information (the
    Hessian of the exact -log L) at SAEM's final estimates."""
    x, ys = _linear(60, 3, np.diag([4.0, 0.25]))
    r = saem(LinearModel([T] * 60), PopulationData.from_subjects(ys), [5.0, 1.0], np.eye(2),
             Residual.additive(2.0), options=SaemOptions(is_samples=0), seed=seed)
    assert r.parameter_names == ("mu[0]", "mu[1]", "log omega2[0]", "log omega2[1]",
                                 "log a[0]")

    def fun(p):
        return _exact_m2ll(ys, x, p[:2], 0.0, np.diag(np.exp(p[2:4])), np.exp(p[4]))

    p = np.r_[r.mu, np.log(np.diag(r.omega)), np.log(r.residual.a[0])]
    info = _hessian(fun, p) / 2.0
    np.testing.assert_allclose(np.diag(r.fisher), np.diag(info), rtol=0.10)
    se_exact = np.sqrt(np.diag(np.linalg.inv(info)))
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)), se_exact, rtol=0.08)
    np.testing.assert_allclose(r.covariance, np.linalg.inv(r.fisher), rtol=1e-10)


def test_linear_full_omega_with_covariate_matches_exact():
    """Full Omega (log variances and the covariance) and a covariate on both parameters."""
    N = 80
    x, ys = _linear(N, 4, np.array([[4.0, 0.5], [0.5, 0.25]]), covariate=True)
    r = saem(LinearModel([T] * N), PopulationData.from_subjects(ys), [5.0, 1.0], np.eye(2),
             Residual.additive(2.0), covariates=x,
             options=SaemOptions(omega_diagonal=False, is_samples=0), seed=3)
    assert r.parameter_names == ("mu[0]", "mu[1]", "beta[0,0]", "beta[0,1]",
                                 "log omega2[0]", "log omega2[1]", "omega[1,0]", "log a[0]")

    def fun(p):
        om = np.array([[np.exp(p[4]), p[6]], [p[6], np.exp(p[5])]])
        return _exact_m2ll(ys, x, p[:2], p[2:4], om, np.exp(p[7]))

    p = np.r_[r.mu, r.beta[0], np.log(np.diag(r.omega)), r.omega[1, 0],
              np.log(r.residual.a[0])]
    info = _hessian(fun, p) / 2.0
    se_exact = np.sqrt(np.diag(np.linalg.inv(info)))
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)), se_exact, rtol=0.10)


def _focei_se(model, data):
    from test_population_saem import _focei_fit

    return _focei_fit(model, data, np.r_[0.0, 0.5, 3.0, np.log([0.5] * 3), np.log(0.5),
                                         np.log(0.2)])


def test_onecmt_se_agree_with_focei_covariance():
    """80 subjects simulated from a one-compartment oral model (combined error): every SAEM
    SE within 15% of the FOCE-I covariance step's (measured: within 2%), estimates within one
    FOCE-I SE of FOCE-I's, and the automatic end of smoothing."""
    theta, omega = np.array([0.4, 1.0, 3.45]), np.diag([0.3, 0.1, 0.05])
    times, doses, ys = simulate_onecmt(80, 5, omega, a=0.3, b=0.1, theta=tuple(theta))
    model, data = OneCmtOral(times, doses), PopulationData.from_subjects(ys)
    r = saem(model, data, [0.0, 0.5, 3.0], np.diag([0.5] * 3), Residual.combined(0.5, 0.2),
             options=SaemOptions(is_samples=0, auto_k2=True, k2=400), seed=5)
    x, _, se = _focei_se(model, data)
    assert r.parameter_names[-2:] == ("log a[0]", "log b[0]")
    sa_se = np.sqrt(np.diag(r.covariance))
    np.testing.assert_allclose(sa_se, se, rtol=0.15)
    est = np.r_[r.mu, np.log(np.diag(r.omega)), np.log(r.residual.a[0]),
                np.log(r.residual.b[0])]
    assert np.all(np.abs(est - x) < se)
    assert r.smoothing_reason.startswith("automatic")
    assert r.options.min_k2 <= r.n_iter - r.k1 < 400


def test_fixed_k2_and_fisher_off():
    x, ys = _linear(12, 5, np.diag([4.0, 0.25]))
    model, data = LinearModel([T] * 12), PopulationData.from_subjects(ys)
    opt = SaemOptions(k1=60, k2=40, min_k1=40, window=20, is_samples=0)
    r = saem(model, data, [5.0, 1.0], np.eye(2), Residual.additive(2.0), options=opt, seed=1)
    assert r.n_iter == r.k1 + 40 and r.smoothing_reason == "k2 = 40 iterations"
    assert r.fisher.shape == (5, 5)
    off = saem(model, data, [5.0, 1.0], np.eye(2), Residual.additive(2.0),
               options=SaemOptions(k1=60, k2=40, min_k1=40, window=20, is_samples=0,
                                   fisher=False), seed=1)
    assert off.fisher is None and off.covariance is None and off.parameter_names == ()
    # the information does not feed back into the estimates
    np.testing.assert_array_equal(off.mu, r.mu)


@pytest.mark.parametrize("kwargs, words", [
    (dict(k2_window=1), "k2_window >= 2"),
    (dict(k2_window=50, min_k2=60), "min_k2 >= 2 k2_window"),
    (dict(k2_tol=0.0), "k2_tol > 0"),
    (dict(auto_k2=True, fisher=False), "fisher = True with auto_k2"),
])
def test_bad_smoothing_options_refused(kwargs, words):
    with pytest.raises(FitError, match="SAEM options") as exc:
        SaemOptions(**kwargs)
    assert words in str(exc.value)


class _Quadratic:
    """f_ij = phi_0 + phi_1 t_j + phi_2 t_j^2 (linear in phi: a linear mixed model)."""

    def __init__(self, t):
        self.Z = np.c_[np.ones_like(t), t, t * t]

    def predict(self, phi, index):
        f = np.asarray(phi) @ self.Z.T
        return f, np.broadcast_to(self.Z, (f.shape[0],) + self.Z.shape).copy()


def test_block_omega_and_covariate_on_one_parameter_match_exact_ml():
    """Omega with a 2 x 2 block (phi_0, phi_1) and a separate phi_2; a covariate on phi_0
    only (generalised least squares M-step). Estimates against the exact ML (BFGS on the
    marginal likelihood with the same constraints) and SEs against its exact information."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(11)
    N, t = 100, np.arange(6.0)
    Zq = np.c_[np.ones_like(t), t, t * t]
    om = np.array([[1.0, 0.3, 0.0], [0.3, 0.25, 0.0], [0.0, 0.0, 0.01]])
    x = rng.standard_normal(N)
    L = np.linalg.cholesky(om)
    ys = [Zq @ (np.array([5.0 + 0.8 * x[i], 1.0, -0.1]) + L @ rng.standard_normal(3))
          + 0.5 * rng.standard_normal(t.size) for i in range(N)]
    pattern = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)

    def unpack(p):
        o = np.diag(np.exp(p[4:7]))
        o[0, 1] = o[1, 0] = p[7]
        return p[:3], p[3], o, np.exp(p[8])

    def m2ll(p):
        mu, beta, o, a = unpack(p)
        C = Zq @ o @ Zq.T + a * a * np.eye(t.size)
        try:
            Ci = np.linalg.inv(C)
            ld = np.linalg.slogdet(C)[1]
        except np.linalg.LinAlgError:
            return np.inf
        tot = 0.0
        for y, xi in zip(ys, x, strict=True):
            r = y - Zq @ (mu + np.array([beta * xi, 0.0, 0.0]))
            tot += ld + r @ Ci @ r + t.size * LOG2PI
        return tot

    ref = minimize(m2ll, np.r_[4.0, 0.5, 0.0, 0.0, 0.0, np.log(0.5), np.log(0.05), 0.0, 0.0],
                   method="BFGS", options={"gtol": 1e-6})
    r = saem(_Quadratic(t), PopulationData.from_subjects(ys), [4.0, 0.5, 0.0],
             np.diag([1.0, 0.5, 0.05]), Residual.additive(1.0), covariates=x,
             covariate_mask=[[True, False, False]], omega_structure=pattern,
             options=SaemOptions(is_samples=0), seed=2)
    assert r.parameter_names == ("mu[0]", "mu[1]", "mu[2]", "beta[0,0]", "log omega2[0]",
                                 "log omega2[1]", "log omega2[2]", "omega[1,0]", "log a[0]")
    assert r.beta[0, 1] == 0.0 and r.beta[0, 2] == 0.0
    assert r.omega[0, 2] == 0.0 and r.omega[1, 2] == 0.0
    mu, beta, o, a = unpack(ref.x)
    # Monte Carlo tolerances, well inside the statistical errors (SEs ~0.1, 0.05, 0.006)
    np.testing.assert_allclose(r.mu, mu, atol=0.03)
    assert r.beta[0, 0] == pytest.approx(beta, abs=0.03)
    np.testing.assert_allclose(np.diag(r.omega), np.diag(o), rtol=0.08)
    assert r.omega[1, 0] == pytest.approx(o[1, 0], abs=0.03)
    assert r.residual.a[0] == pytest.approx(a, rel=0.03)
    p = np.r_[r.mu, r.beta[0, 0], np.log(np.diag(r.omega)), r.omega[1, 0],
              np.log(r.residual.a[0])]
    info = _hessian(m2ll, p) / 2.0
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)),
                               np.sqrt(np.diag(np.linalg.inv(info))), rtol=0.10)


def test_fixed_omega_block_stays_fixed():
    x, ys = _linear(40, 6, np.diag([4.0, 0.25]))
    om0 = np.diag([3.0, 0.3])
    r = saem(LinearModel([T] * 40), PopulationData.from_subjects(ys), [5.0, 1.0], om0,
             Residual.additive(2.0), omega_fixed=[False, True],
             options=SaemOptions(k1=60, k2=40, min_k1=40, window=20, is_samples=0), seed=1)
    assert r.omega[1, 1] == pytest.approx(0.3, rel=1e-8)
    assert r.omega[0, 0] != 3.0
    assert r.parameter_names == ("mu[0]", "mu[1]", "log omega2[0]", "log a[0]")


@pytest.mark.parametrize("kwargs, words", [
    (dict(covariate_mask=[[True]]), "covariate_mask: expected a (1, 2)"),
    (dict(omega_structure=[[True, True], [False, True]]), "omega_structure: expected a "
                                                          "symmetric"),
    (dict(omega_fixed=[True]), "omega_fixed: expected 2 flags"),
    (dict(omega_structure=np.ones((2, 2), bool), omega_fixed=[True, False]),
     "either fixed or estimated as a whole"),
])
def test_bad_structure_refused(kwargs, words):
    x, ys = _linear(12, 5, np.diag([4.0, 0.25]))
    with pytest.raises(FitError, match="SAEM") as exc:
        saem(LinearModel([T] * 12), PopulationData.from_subjects(ys), [5.0, 1.0], np.eye(2),
             Residual.additive(2.0), covariates=np.zeros(12) + x, **kwargs)
    assert words in str(exc.value)
