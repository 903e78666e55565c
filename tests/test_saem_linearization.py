"""``[estimator] saem_covariance = "linearization"``: Monolix's "linearization" counterpart.

At the SAEM estimates the fit reports the OFV by linearisation (the FOCE-I objective, the model
linearised around each subject's conditional mode) and takes the covariance ``2 R^-1`` with R
the Hessian of that OFV. Checked on R's Theoph data (12 subjects, pk_oral) against an
independent computation: the FOCE-I objective of the closed-form one-compartment model
(``tests/_population_support.py``) through the population core, and its Hessian by central
second differences, at the same estimates.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_population_saem import _theoph  # noqa: E402
from test_population_saem_estimator import NAMES, _config  # noqa: E402
from test_saem_se_estimator import covariance_options  # noqa: E402

from progression.fit.estimators.saem import COVARIANCE_METHOD_LINEARIZATION  # noqa: E402
from progression.fit.population import Residual, objective  # noqa: E402


@pytest.fixture(scope="module")
def fits():
    from progression.fit import fit

    return {c: fit(_config("saem", options=covariance_options(c)))
            for c in ("sa", "linearization")}


def _x(pop):
    """The estimates on the covariance step's scales: log typical values, log omega^2, log a."""
    return np.r_[np.log([pop.fixed_effects[n] for n in NAMES]), np.log(np.diag(pop.omega)),
                 np.log(pop.sigma["conc.a"])]


def _ofv(model, data, x):
    return objective("focei", model, data, np.tile(x[:3], (data.n_subjects, 1)),
                     np.diag(np.exp(x[3:6])), Residual.additive(float(np.exp(x[6]))))


def test_linearization_keeps_the_estimates(fits):
    """The choice changes the covariance step only: the same SAEM run, bit for bit."""
    a, b = fits["sa"].population, fits["linearization"].population
    np.testing.assert_array_equal(_x(a), _x(b))
    assert a.ofv == b.ofv
    assert b.covariance_method == COVARIANCE_METHOD_LINEARIZATION


def test_linearised_ofv_matches_an_independent_focei_objective(fits):
    """The reported OFV by linearisation equals the closed-form model's FOCE-I objective at
    the SAEM estimates within 1e-3 (the ODE path at rtol 1e-10 against the closed form; the
    conditional modes found by two different inner optimisers)."""
    res = fits["linearization"]
    found = re.search(r"OFV by linearisation \(FOCE-I objective at the SAEM estimates\) "
                      r"([0-9.]+)", res.individual.diagnostics.method)
    assert found, res.individual.diagnostics.method
    model, data = _theoph()
    ref = _ofv(model, data, _x(res.population))
    assert float(found.group(1)) == pytest.approx(ref, abs=1e-3)
    assert res.population.ofv_linearised == pytest.approx(ref, abs=1e-3)
    # FOCE-I's optimum on Theoph is 116.80 (nlmixr2 116.8036): the SAEM estimates are near it
    assert 116.80 <= ref < 117.5
    # only computed when asked for
    assert math.isnan(fits["sa"].population.ofv_linearised)


def test_linearised_ofv_saved_and_reloaded(fits, tmp_path):
    from progression.fit import load_fit

    res = fits["linearization"]
    res.save(tmp_path / "fit")
    back = load_fit(tmp_path / "fit").population
    assert back.ofv_linearised == res.population.ofv_linearised
    np.testing.assert_array_equal(back.covariance, res.population.covariance)
    assert "OFV by linearisation" in (tmp_path / "fit" / "report.md").read_text()


def test_linearization_covariance_is_twice_the_inverse_hessian(fits):
    """Covariance = 2 R^-1, R the Hessian of the FOCE-I OFV: against central second
    differences of the closed-form objective (step 1e-3 on the estimation scales; truncation
    and inner-optimiser noise ~1e-4 relative), standard errors within 2 %, correlations
    within 0.02."""
    pop = fits["linearization"].population
    model, data = _theoph()
    x0 = _x(pop)
    K, h = x0.size, 1e-3
    f0 = _ofv(model, data, x0)
    H = np.zeros((K, K))
    for i in range(K):
        for j in range(i, K):
            ei, ej = np.eye(K)[i] * h, np.eye(K)[j] * h
            f = lambda d: _ofv(model, data, x0 + d)  # noqa: E731
            if i == j:
                H[i, i] = (f(ei) - 2 * f0 + f(-ei)) / h**2
            else:
                H[i, j] = H[j, i] = (f(ei + ej) - f(ei - ej) - f(ej - ei)
                                     + f(-ei - ej)) / (4 * h**2)
    ref = 2.0 * np.linalg.inv(H)
    cov = pop.covariance
    se_ref, se = np.sqrt(np.diag(ref)), np.sqrt(np.diag(cov))
    np.testing.assert_allclose(se, se_ref, rtol=0.02)
    np.testing.assert_allclose(cov / np.outer(se, se), ref / np.outer(se_ref, se_ref),
                               atol=0.02)
    # and it differs from SAEM's own (stochastic approximation) information: a real choice
    sa = fits["sa"].population.covariance
    assert np.max(np.abs(np.sqrt(np.diag(sa)) / se - 1)) > 0.01
