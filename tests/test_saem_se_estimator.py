"""``[estimator] saem_covariance = "sandwich"`` through :func:`progression.fit.fit`: the same
SAEM estimates as ``"sa"`` (the score pass runs after the fit, on its own random numbers),
the robust covariance in focei's layout, the method named in the population part."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_population_saem_estimator import CONFIG, NAMES, SHORT, TRUTH, _config, _structured  # noqa: E402


def covariance_options(choice: str) -> str:
    """The short SAEM run's ``[estimator]`` lines with ``saem_covariance = choice`` (shared
    by the covariance-choice tests)."""
    return SHORT + f'saem_covariance = "{choice}"\n'


@pytest.fixture(scope="module")
def data():
    from progression.fit.config import read_fit_config
    from progression.fit.estimate import read_data
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.problem import Problem, designs_from_cohort

    cfg = read_fit_config(CONFIG)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    n = 12
    many = [designs[i % 12].replace(id=f"sim{i}") for i in range(n)]
    cols = np.array([problem.names.index(k) for k in NAMES])
    rng = np.random.default_rng(5)
    eta = rng.standard_normal((n, 3)) * np.sqrt(TRUTH["omega"])
    f, _ = ProblemModel(problem, many, cols).predict(TRUTH["theta"] + eta, np.arange(n))
    return [d.with_values(f[i, :d.n] + TRUTH["a"] * rng.standard_normal(d.n))
            for i, d in enumerate(many)]


def test_sandwich_choice_keeps_the_estimates(data):
    from progression.fit import fit
    from progression.fit.estimators.saem import COVARIANCE_METHOD_SANDWICH

    sa = fit(_config("saem", options=SHORT), data=data)
    sw = fit(_config("saem", options=covariance_options("sandwich")), data=data)
    ps, pw = sa.population, sw.population
    np.testing.assert_array_equal([pw.fixed_effects[k] for k in NAMES],
                                  [ps.fixed_effects[k] for k in NAMES])
    np.testing.assert_array_equal(pw.omega, ps.omega)
    assert pw.covariance_method == COVARIANCE_METHOD_SANDWICH
    assert pw.covariance_names == ps.covariance_names
    se_w = np.sqrt(np.diag(pw.covariance))
    se_s = np.sqrt(np.diag(ps.covariance))
    assert np.all(np.isfinite(se_w)) and np.all(se_w > 0)
    # a different estimator of the same uncertainty: same order of magnitude, not equal
    assert not np.allclose(se_w, se_s)
    assert np.all((se_w > se_s / 5) & (se_w < se_s * 5))


def test_sandwich_with_covariate_and_omega_block():
    """The pass takes the covariate model and the Omega block; the covariance is mapped to
    focei's log-Cholesky layout like the "sa" one."""
    from progression.fit import fit

    res = fit(_structured(options=covariance_options("sandwich")))
    pop = res.population
    assert pop.covariance_names == ("theta ka", "theta CL", "theta V", "log L ka", "L CL,ka",
                                    "log L CL", "log omega^2 V", "log conc.a",
                                    "coef CL~weight")
    assert "sandwich" in pop.covariance_method
    assert np.all(np.isfinite(np.diag(pop.covariance)))
