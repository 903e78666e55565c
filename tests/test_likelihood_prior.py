"""The likelihood's prior/penalty hook: GaussianPrior against its closed form and finite
differences, and Problem.evaluate(..., prior=...) adding its residuals, -2 log L and
information exactly."""

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit import Design, Problem, parse_fit_config
from progression.fit.likelihood import GaussianPrior
from progression.fit.transforms import to_internal

RNG = np.random.default_rng(7)
OMEGA = np.array([[0.3, 0.05, -0.02], [0.05, 0.2, 0.01], [-0.02, 0.01, 0.1]])
MU = np.array([0.1, -0.3, 1.2])


def test_residuals_give_the_quadratic_form():
    prior = GaussianPrior(MU, OMEGA)
    x = MU + RNG.standard_normal((5, 3))
    res, jac = prior(x)
    expected = np.einsum("ri,ij,rj->r", x - MU, np.linalg.inv(OMEGA), x - MU)
    np.testing.assert_allclose(np.sum(res**2, axis=1), expected, rtol=1e-12)
    np.testing.assert_allclose(prior.m2ll(x), expected, rtol=1e-12)
    assert res.shape == (5, 3) and jac.shape == (5, 3, 3)
    np.testing.assert_allclose(prior.log_det, np.log(np.linalg.det(OMEGA)), rtol=1e-12)


def test_jacobian_against_central_differences():
    prior = GaussianPrior(MU, OMEGA)
    x = MU + RNG.standard_normal((4, 3))
    _, jac = prior(x)
    h = 1e-6
    for d in range(3):
        e = np.zeros(3)
        e[d] = h
        fd = (prior(x + e)[0] - prior(x - e)[0]) / (2 * h)
        np.testing.assert_allclose(jac[:, :, d], fd, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("cov, match", [
    (np.eye(2), "shape"),
    (np.array([[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]]), "positive definite"),
    (np.array([[1.0, 0.1, 0], [0.0, 1.0, 0], [0, 0, 1.0]]), "symmetric"),
])
def test_bad_covariances_are_refused(cov, match):
    with pytest.raises(FitError, match=match):
        GaussianPrior(MU, cov)


CONFIG = """
[fit]
model = "pk_iv_bolus"
[error.conc]
model = "additive"
a = { value = 0.2, estimate = "subject" }
[parameters.CL]
estimate = "subject"
value = 4.0
bounds = [0.1, 100.0]
[parameters.V]
estimate = "subject"
value = 40.0
bounds = [1.0, 500.0]
[solver]
outputs = "exact"
"""


def test_evaluate_appends_prior_terms():
    cfg = parse_fit_config(CONFIG, check_data=False)
    problem = Problem.from_config(cfg)
    t = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    designs = [Design(f"S{i}", t, np.zeros(6, int), 2.0 * np.exp(-0.1 * t) * (1 + 0.1 * i),
                      np.zeros(6, int), np.full(6, np.nan)) for i in range(3)]
    cols = problem.subject_cols
    theta = np.repeat(problem.values[None], 3, axis=0)
    theta[:, cols[0]] = [3.0, 4.0, 5.0]
    base = problem.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    x = to_internal(theta[:, cols], problem.scale[cols], problem.lower[cols],
                    problem.upper[cols])
    prior = GaussianPrior(np.mean(x, axis=0) + 0.1, OMEGA)
    ev = problem.evaluate(designs, np.arange(3), theta, cols, want_info=True, prior=prior)
    quad = np.einsum("ri,ij,rj->r", x - prior.mean, np.linalg.inv(OMEGA), x - prior.mean)
    np.testing.assert_allclose(ev.m2ll - base.m2ll, quad, rtol=1e-10)
    np.testing.assert_allclose(ev.info - base.info, np.broadcast_to(np.linalg.inv(OMEGA),
                                                                    (3, 3, 3)), rtol=1e-10)
    for r in range(3):
        n = base.residuals[r].size
        assert ev.residuals[r].size == n + 3
        np.testing.assert_array_equal(ev.residuals[r][:n], base.residuals[r])
        np.testing.assert_allclose(ev.residuals[r][n:] @ ev.residuals[r][n:], quad[r],
                                   rtol=1e-12)
        np.testing.assert_allclose(ev.jacobians[r][n:], prior.L_inv, rtol=1e-12)
        np.testing.assert_array_equal(ev.jacobians[r][:n], base.jacobians[r])
