"""``[parameters.NAME] value_fixed = true``: a typical value held at its config value while
its random effect (and the variance, the covariate coefficients) is estimated (NONMEM's
``THETA FIX``), in FOCE-I and SAEM.

Data: the IV-bolus design of ``tests/test_saem_se_fallback.py`` (40 subjects, samples at 1,
4, 12 h, log-normal random effects on CL and V, log-normal residual 0.3; data seed 9).
Independent computations: FOCE-I held at its own unconstrained optimum reproduces that
optimum; SAEM with V held at 50 is compared with the maximiser of the exact marginal
likelihood with V held (closed-form model, Gauss-Hermite quadrature, BFGS), within 0.3 of
that maximiser's SE (the Monte Carlo error of a short SAEM run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).parent))
from test_saem_se_fallback import (  # noqa: E402
    CONFIG,
    _data,
    _m2ll,
    _observed_covariance,
)

from progression.fit.config import parse_fit_config  # noqa: E402

V_BLOCK = '''[parameters.V]
estimate = "population"
value = 50.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.1
'''


def _config(estimator: str, v: float | None = None, extra: str = ""):
    text = CONFIG.format(extra=extra).replace('estimator = "saem"',
                                               f'estimator = "{estimator}"')
    assert V_BLOCK in text
    if v is not None:
        text = text.replace(V_BLOCK, V_BLOCK.replace("value = 50.0", f"value = {v!r}")
                            + "value_fixed = true\n")
    return parse_fit_config(text, source="held.toml", check_data=False)


@pytest.fixture(scope="module")
def designs():
    return _data(9)


def test_focei_held_at_its_optimum_reproduces_the_fit(designs):
    """V held at FOCE-I's own estimate: the same optimum (OFV to 1e-3, the other estimates
    to 1e-3 relative), V exactly the held value, its SE 0 and the others finite, one
    parameter fewer in AIC."""
    from progression.fit import fit

    full = fit(_config("focei"), data=designs).population
    v_hat = float(full.fixed_effects["V"])
    held_res = fit(_config("focei", v=v_hat), data=designs)
    held = held_res.population
    assert held.fixed_typical == ("V",) and full.fixed_typical == ()
    assert held.fixed_effects["V"] == pytest.approx(v_hat, rel=1e-12)
    assert held.ofv == pytest.approx(full.ofv, abs=1e-3)
    assert held.fixed_effects["CL"] == pytest.approx(full.fixed_effects["CL"], rel=1e-3)
    np.testing.assert_allclose(np.diag(held.omega), np.diag(full.omega), rtol=1e-3)
    assert held.sigma["conc.sigma"] == pytest.approx(full.sigma["conc.sigma"], rel=1e-3)
    assert held.fixed_effects_se["V"] == 0.0
    assert held.covariance_names == full.covariance_names
    se = np.sqrt(np.diag(held.covariance))
    assert se[1] == 0.0 and np.all(np.isfinite(se)) and np.all(se[[0, 2, 3, 4]] > 0)
    assert held.n_parameters == full.n_parameters - 1
    assert held.aic == pytest.approx(full.aic - 2.0, abs=1e-3)


def test_saem_holds_the_typical_value_and_matches_the_exact_maximiser(designs):
    """SAEM with V held at 50: V exactly 50, its SE 0, the other SEs finite; CL, the Omega
    diagonal and the residual SD within 0.3 SE of the exact maximiser with V held."""
    from progression.fit import fit

    res = fit(_config("saem", v=50.0).replace(options={
        **_config("saem").options, "saem_exploration": 150, "saem_smoothing": 150,
        "saem_chains": 2}), data=designs)
    pop = res.population
    assert pop.fixed_effects["V"] == pytest.approx(50.0, rel=1e-12)
    se = np.sqrt(np.diag(pop.covariance))
    assert se[1] == 0.0 and np.all(np.isfinite(se)) and np.all(se[[0, 2, 3, 4]] > 0)
    lv = np.log(50.0)

    def f(y):
        return _m2ll(np.r_[y[0], lv, y[1:]], designs)

    y0 = np.r_[np.log(5.0), np.log(0.09), np.log(0.01), np.log(0.3)]
    opt = minimize(f, y0, method="BFGS", options={"gtol": 1e-6})
    ref = np.r_[opt.x[0], lv, opt.x[1:]]
    cov = _observed_covariance(ref, designs)
    keep = [0, 2, 3, 4]
    ref_se = np.sqrt(np.diag(np.linalg.inv(np.linalg.inv(cov)[np.ix_(keep, keep)])))
    est = np.array([np.log(pop.fixed_effects["CL"]), np.log(pop.omega[0, 0]),
                    np.log(pop.omega[1, 1]), np.log(pop.sigma["conc.sigma"])])
    z = (est - opt.x) / ref_se
    assert np.all(np.abs(z) < 0.3), z
    # the condition numbers leave the held parameter out (as NONMEM leaves FIX out of its
    # covariance matrix): finite, and the correlation one is that of the other four
    free = np.asarray(pop.covariance)[np.ix_([0, 2, 3, 4], [0, 2, 3, 4])]
    corr = free / np.sqrt(np.outer(np.diag(free), np.diag(free)))
    w = np.linalg.eigvalsh(corr)
    assert pop.condition_number == pytest.approx(w[-1] / w[0], rel=1e-10)
    assert np.isfinite(pop.r_condition_number) and pop.r_condition_number >= 1.0


def test_held_typical_value_reported_as_fixed(designs):
    """The report's parameter table says "fixed", the .ext SE row has NONMEM's 1E+10, and
    the population part keeps the mark through fit.json's dict."""
    import dataclasses

    from progression.fit import fit
    from progression.fit._report_population import population_lines
    from progression.fit.parts import PopulationPart
    from progression.fit.population._outputs import ext_table

    res = fit(_config("focei", v=50.0), data=designs)
    pop = res.population
    lines = population_lines(res)
    row = next(x for x in lines if x.startswith("| V (typical value"))
    assert "| fixed |" in row, row
    row_cl = next(x for x in lines if x.startswith("| CL (typical value"))
    assert "| fixed |" not in row_cl
    ext = ext_table(res)
    se_row = ext.values[list(ext.iterations).index(-1000000001)]
    assert se_row[ext.columns.index("THETA2")] == pytest.approx(1e10)
    assert se_row[ext.columns.index("THETA1")] < 1.0
    back = PopulationPart.from_dict(dataclasses.asdict(pop))
    assert back.fixed_typical == ("V",)


def test_core_held_intercept_with_covariate_and_full_omega_matches_exact_ml():
    """The SAEM core's ``mu_fixed`` on a linear mixed model (the harness of
    ``test_population_saem_se.py``: 80 subjects, full Omega, a covariate on both parameters):
    intercept 0 held at 10 (the truth), the rest estimated. The held part enters the GLS
    M-step of the coupled coefficients (full Omega), so the estimates must be the exact
    maximiser with the intercept held (closed-form marginal likelihood, BFGS): within 0.25 of
    its SE (SAEM's Monte Carlo error, measured 0.11; without the held part in the M-step
    mu[1] moves by ~ Omega_10 / Omega_00 x 10 = 1.25, ~20 SE); the information leaves mu[0]
    out and its SEs are within 10 % of the exact observed information's."""
    from _population_support import LinearModel
    from test_population_saem_se import T, _exact_m2ll, _hessian, _linear

    from progression.fit.population import PopulationData, Residual, SaemOptions, saem

    N = 80
    x, ys = _linear(N, 4, np.array([[4.0, 0.5], [0.5, 0.25]]), covariate=True)
    r = saem(LinearModel([T] * N), PopulationData.from_subjects(ys), [10.0, 1.0], np.eye(2),
             Residual.additive(2.0), covariates=x, mu_fixed=[True, False],
             options=SaemOptions(omega_diagonal=False, is_samples=0), seed=3)
    assert r.mu[0] == 10.0
    assert r.parameter_names == ("mu[1]", "beta[0,0]", "beta[0,1]", "log omega2[0]",
                                 "log omega2[1]", "omega[1,0]", "log a[0]")

    def fun(p):
        om = np.array([[np.exp(p[3]), p[5]], [p[5], np.exp(p[4])]])
        return _exact_m2ll(ys, x, np.r_[10.0, p[0]], p[1:3], om, np.exp(p[6]))

    p0 = np.r_[1.0, 0.0, 0.0, np.log(4.0), np.log(0.25), 0.0, 0.0]
    opt = minimize(fun, p0, method="BFGS", options={"gtol": 1e-7})
    info = _hessian(fun, opt.x) / 2.0
    se_exact = np.sqrt(np.diag(np.linalg.inv(info)))
    est = np.r_[r.mu[1], r.beta[0], np.log(np.diag(r.omega)), r.omega[1, 0],
                np.log(r.residual.a[0])]
    z = (est - opt.x) / se_exact
    assert np.all(np.abs(z) < 0.25), z
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)), se_exact, rtol=0.10)


def test_core_bad_mu_fixed_shape():
    from _population_support import LinearModel

    from progression.errors import FitError
    from progression.fit.population import PopulationData, Residual, saem

    with pytest.raises(FitError, match=r"SAEM mu_fixed: expected a \(2,\) boolean array"):
        saem(LinearModel([np.arange(3.0)] * 3), PopulationData.from_subjects(
            [np.ones(3)] * 3), [1.0, 1.0], np.eye(2), Residual.additive(1.0),
            mu_fixed=[True])
