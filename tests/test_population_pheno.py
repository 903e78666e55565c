"""Published case with repeated doses and covariates: phenobarbital in 59 neonates, NONMEM 7.

Data tests/data/pheno.dta and the NONMEM run are pharmpy's test data (github pharmpy/pharmpy,
tests/testdata/nonmem/pheno.dta, pheno_real.mod, pheno_real.ext; the classic NONMEM example of
Grasela and Donn 1985): 589 IV bolus doses, 155 concentrations, ADVAN1 TRANS2 with
``CL = THETA(1)*WGT*EXP(ETA(1))``, ``V = THETA(2)*WGT*EXP(ETA(2))``, ``V = V*(1+THETA(3))``
when ``APGR < 5``, ``Y = F + F*EPS(1)``, ``$ESTIMATION METHOD=1 INTERACTION``. The .ext file
gives the objective at the initial estimates (iteration 0) and the final estimates.

Measured: |ours - NONMEM| = 1.5e-8 (initial), 1.0e-8 (final); the FOCE-I fit (test-local
BFGS on the exact gradient) ends at 586.2760560 (NONMEM 586.2760563) in 40 evaluations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from progression.fit.population import Residual, focei_gradient, objective

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import pheno  # noqa: E402

# (THETA1..3, OMEGA(1,1), OMEGA(2,2), SIGMA(1,1), OBJ) rows of pheno_real.ext
NM_ITER0 = ((4.69307e-03, 1.00916, 0.1), (3.09626e-02, 3.11280e-02), 1.30865e-02,
            587.36644134661617)
NM_FINAL = ((4.69555e-03, 9.84258e-01, 1.58920e-01), (2.93508e-02, 2.79060e-02), 1.32410e-02,
            586.27605628188053)


def _mu(theta, wgt, apgr):
    """Typical log(CL, V): weight-proportional, V scaled by (1 + THETA3) when APGR < 5."""
    low = np.where(apgr < 5, 1.0 + theta[2], 1.0)
    return np.column_stack([np.log(theta[0] * wgt), np.log(theta[1] * wgt * low)])


@pytest.mark.parametrize("row", [NM_ITER0, NM_FINAL], ids=["initial", "final"])
def test_pheno_objective_matches_nonmem(row):
    model, data, wgt, apgr = pheno()
    assert data.n_subjects == 59 and data.n_obs == 155
    theta, omega, sigma2, published = row
    got = objective("focei", model, data, _mu(theta, wgt, apgr), np.diag(omega),
                    Residual.proportional(np.sqrt(sigma2)))
    assert got == pytest.approx(published, abs=1e-6)


def test_pheno_focei_fit_reaches_nonmem_optimum():
    model, data, wgt, apgr = pheno()
    low = apgr < 5
    state = {"eta": None}

    def fg(x):
        theta = (np.exp(x[0]), np.exp(x[1]), x[2])
        w2, b = np.exp(x[3:5]), np.exp(x[5])
        gr = focei_gradient(model, data, _mu(theta, wgt, apgr), np.diag(w2),
                            Residual.proportional(b), eta0=state["eta"])
        if not np.isfinite(gr.ofv):
            return np.inf, np.zeros_like(x)
        state["eta"] = gr.inner.eta
        d = gr.d_mu  # chain rule of _mu: d mu_V / d THETA3 = 1 / (1 + THETA3) where APGR < 5
        return gr.ofv, np.r_[d[:, 0].sum(), d[:, 1].sum(), d[low, 1].sum() / (1.0 + x[2]),
                             np.diag(gr.d_omega) * w2, gr.d_b[0] * b]

    (theta0, omega0, sigma0, _) = NM_ITER0
    x0 = np.r_[np.log(theta0[:2]), theta0[2], np.log(omega0), 0.5 * np.log(sigma0)]
    res = minimize(fg, x0, jac=True, method="BFGS", options={"gtol": 1e-6})
    assert res.fun == pytest.approx(NM_FINAL[3], abs=1e-4)
    theta, omega, sigma2, _ = NM_FINAL
    np.testing.assert_allclose(np.exp(res.x[:2]), theta[:2], rtol=1e-3)
    assert res.x[2] == pytest.approx(theta[2], rel=1e-2)
    np.testing.assert_allclose(np.exp(res.x[3:5]), omega, rtol=1e-2)
    assert np.exp(2 * res.x[5]) == pytest.approx(sigma2, rel=1e-2)


# Standard errors of the final estimates, row -1000000001 of pheno_real.ext
# ($COVARIANCE UNCONDITIONAL: the sandwich R^-1 S R^-1), order THETA1-3, SIGMA(1,1),
# OMEGA(1,1), OMEGA(2,2)
NM_SE = [2.10036e-04, 2.68952e-02, 8.37623e-02, 2.27940e-03, 1.34153e-02, 7.47651e-03]


def test_pheno_sandwich_standard_errors_match_nonmem():
    """S = sum of per-subject gradient outer products (exact gradients), R = central
    differences of the exact total gradient, both in NONMEM's parameters (THETA, SIGMA and
    OMEGA variances). Measured: within 0.11 % of NONMEM's SEs (the largest for SIGMA)."""
    model, data, wgt, apgr = pheno()
    low = apgr < 5
    theta, omega, sigma2, _ = NM_FINAL
    p_hat = np.r_[theta, sigma2, omega]
    warm = {"eta": None}

    def per_subject(p):
        gr = focei_gradient(model, data, _mu(p[:3], wgt, apgr), np.diag(p[4:6]),
                            Residual.proportional(np.sqrt(p[3])), eta0=warm["eta"])
        warm["eta"] = gr.inner.eta
        d = gr.d_mu
        return np.column_stack([d[:, 0] / p[0], d[:, 1] / p[1],
                                np.where(low, d[:, 1] / (1.0 + p[2]), 0.0),
                                gr.d_b_i[:, 0] / (2.0 * np.sqrt(p[3])),
                                gr.d_omega_i[:, 0, 0], gr.d_omega_i[:, 1, 1]])

    g = per_subject(p_hat)
    S = g.T @ g
    R = np.zeros((6, 6))
    for k in range(6):
        h = 1e-4 * p_hat[k]
        up, dn = p_hat.copy(), p_hat.copy()
        up[k] += h
        dn[k] -= h
        R[:, k] = (per_subject(up).sum(axis=0) - per_subject(dn).sum(axis=0)) / (2 * h)
    Rinv = np.linalg.inv(0.5 * (R + R.T))
    se = np.sqrt(np.diag(Rinv @ S @ Rinv))
    np.testing.assert_allclose(se, NM_SE, rtol=5e-3)
