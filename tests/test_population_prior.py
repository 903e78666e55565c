"""Priors on population parameters (``prior`` and ``eta_prior`` of ``[parameters.NAME]``):
SAEM by maximum a posteriori, NONMEM's ``$PRIOR NWPRI``.

Independent computation: a linear mixed model (random intercept and slope, diagonal Omega,
additive residual) whose marginal likelihood is in closed form; the exact MAP is the BFGS
minimum of ``-2 log L + -2 log p`` written here, its posterior covariance the inverse
Hessian of half of it (second differences). SAEM's estimates must sit within 0.3 of those
SEs of it (the Monte Carlo error of a short run) and its SEs within 5 % (measured 1 %).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import LinearModel  # noqa: E402
from test_population_saem_se import T, _exact_m2ll, _hessian, _linear  # noqa: E402

from progression.errors import FitError  # noqa: E402
from progression.fit.population import (  # noqa: E402
    PopulationData,
    PopulationPrior,
    Residual,
    SaemOptions,
    saem,
)

# a small study: 20 subjects, so that the priors move the estimates by several SEs
N = 20
OMEGA = np.diag([4.0, 0.25])
# prior mean 2.6 of the slope (truth 2.0, SD 0.1) and a variance prior on the slope's
# random effect at 0.5 (truth 0.25, this sample's ML 0.04) carrying 30 subjects' worth of
# information
PRIOR = PopulationPrior(mean=[np.nan, 2.6], sd=[np.inf, 0.1], omega=[np.nan, 0.5],
                        df=[0.0, 30.0])


def _prior_m2logp(mu1, w1):
    nu, wp = 30.0, 0.5
    return ((mu1 - 2.6) / 0.1) ** 2 + (nu + 2.0) * np.log(w1) + nu * wp / w1


@pytest.fixture(scope="module")
def study():
    x, ys = _linear(N, 11, OMEGA)

    def posterior(p):
        return (_exact_m2ll(ys, x, p[:2], 0.0, np.diag(np.exp(p[2:4])), np.exp(p[4]))
                + _prior_m2logp(p[1], np.exp(p[3])))

    def likelihood(p):
        return _exact_m2ll(ys, x, p[:2], 0.0, np.diag(np.exp(p[2:4])), np.exp(p[4]))

    p0 = np.r_[10.0, 2.0, np.log(4.0), np.log(0.25), 0.0]
    map_ = minimize(posterior, p0, method="BFGS", options={"gtol": 1e-8}).x
    ml = minimize(likelihood, p0, method="BFGS", options={"gtol": 1e-8}).x
    se = np.sqrt(np.diag(np.linalg.inv(_hessian(posterior, map_) / 2.0)))
    se_ml = np.sqrt(np.diag(np.linalg.inv(_hessian(likelihood, ml) / 2.0)))
    return ys, map_, ml, se, se_ml


def _fit(ys, prior, seed=4):
    return saem(LinearModel([T] * N), PopulationData.from_subjects(ys), [8.0, 1.0], np.eye(2),
                Residual.additive(2.0), options=SaemOptions(is_samples=0, k2=300), seed=seed,
                prior=prior)


def test_saem_with_priors_reaches_the_exact_map(study):
    """The estimates are the exact MAP (within 0.3 posterior SE; measured below 0.15), which
    lies several SEs from the maximum likelihood along the prior's parameters; the SEs are
    the posterior's (within 5 %; measured 1 %), and ``prior_objective`` is the prior's
    -2 log p there."""
    ys, map_, ml, se, _ = study
    r = _fit(ys, PRIOR)
    est = np.r_[r.mu, np.log(np.diag(r.omega)), np.log(r.residual.a[0])]
    z = (est - map_) / se
    assert np.all(np.abs(z) < 0.3), z
    # the prior matters here: MAP and ML differ by more than 2 SE in the slope and its
    # log variance
    assert abs(map_[1] - ml[1]) / se[1] > 2.0 and abs(map_[3] - ml[3]) / se[3] > 2.0
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance)), se, rtol=0.05)
    assert r.prior_objective == pytest.approx(_prior_m2logp(r.mu[1], r.omega[1, 1]),
                                              rel=1e-12)


def test_vague_prior_gives_the_maximum_likelihood(study):
    """Normal priors of SD 1e4 on both typical values: the maximum likelihood (within 0.3
    of its SEs; the path differs from a fit without priors only by rounding, which the chains'
    accept/reject decisions amplify into Monte Carlo differences)."""
    ys, _, ml, _, se = study
    vague = PopulationPrior(mean=[10.0, 2.0], sd=[1e4, 1e4], omega=[np.nan] * 2,
                            df=[0.0, 0.0])
    for prior in (vague, None):
        r = _fit(ys, prior)
        est = np.r_[r.mu, np.log(np.diag(r.omega)), np.log(r.residual.a[0])]
        assert np.all(np.abs((est - ml) / se) < 0.3), (est - ml) / se
    assert r.prior_objective == 0.0


def test_prior_on_a_parameter_without_random_effect():
    """A typical value without a random effect (Fisher-scoring M-step) with a normal prior:
    the random intercept's slope held common; against the exact MAP within 0.3 SE."""
    x, ys = _linear(N, 12, np.diag([4.0, 1e-12]))
    prior = PopulationPrior(mean=[np.nan, 2.6], sd=[np.inf, 0.05], omega=[np.nan],
                            df=[0.0])

    def posterior(p):
        om = np.diag([np.exp(p[2]), 0.0])
        return (_exact_m2ll(ys, x, p[:2], 0.0, om, np.exp(p[3]))
                + ((p[1] - 2.6) / 0.05) ** 2)

    p0 = np.r_[10.0, 2.0, np.log(4.0), 0.0]
    map_ = minimize(posterior, p0, method="BFGS", options={"gtol": 1e-8}).x
    se = np.sqrt(np.diag(np.linalg.inv(_hessian(posterior, map_) / 2.0)))
    r = saem(LinearModel([T] * N), PopulationData.from_subjects(ys), [8.0, 1.0],
             np.eye(1), Residual.additive(2.0), eta_columns=[0], estimate_columns=[1],
             options=SaemOptions(is_samples=0, k2=300), seed=5, prior=prior)
    est = np.r_[r.mu, np.log(r.omega[0, 0]), np.log(r.residual.a[0])]
    z = (est - map_) / se
    assert np.all(np.abs(z) < 0.3), z


def test_bad_priors_are_refused():
    ys = _linear(N, 11, OMEGA)[1]
    with pytest.raises(FitError, match="expected a positive SD with every mean"):
        PopulationPrior(mean=[1.0, np.nan], sd=[0.0, np.inf], omega=[np.nan] * 2, df=[0, 0])
    with pytest.raises(FitError, match="positive variance and positive degrees of freedom"):
        PopulationPrior(mean=[np.nan] * 2, sd=[np.inf] * 2, omega=[0.1, np.nan], df=[0, 0])
    with pytest.raises(FitError, match=r"SAEM prior: expected 2 typical values and 2 "):
        _fit(ys, PopulationPrior.none(3, 2))
    with pytest.raises(FitError, match="random effect 1 has a variance prior but its "
                                       "variance is in an Omega block"):
        saem(LinearModel([T] * N), PopulationData.from_subjects(ys), [8.0, 1.0], np.eye(2),
             Residual.additive(2.0), omega_structure=np.ones((2, 2), bool),
             options=SaemOptions(is_samples=0, k1=5, k2=5), prior=PRIOR)


# --- from the config: the IV-bolus harness of test_saem_se_fallback (40 subjects, V's
# variance 0.01 weakly determined, as eD's in the ALS study) ------------------------------

def _prior_config(cl_prior="prior = { value = 5.5, sd = 0.05 }",
                  v_prior="eta_prior = { value = 0.04, df = 40 }", extra="", estimator="saem"):
    from test_saem_se_fallback import CONFIG

    from progression.fit.config import parse_fit_config

    text = CONFIG.format(extra=extra)
    text = text.replace("scale = \"log\"\neta = 0.1\n\n[parameters.V]",
                        f"scale = \"log\"\neta = 0.1\n{cl_prior}\n\n[parameters.V]")
    text = text.replace("bounds = [1.0, 500.0]\nscale = \"log\"\neta = 0.1\n",
                        f"bounds = [1.0, 500.0]\nscale = \"log\"\neta = 0.1\n{v_prior}\n")
    text = text.replace("saem_exploration = 60\nsaem_smoothing = 40\nsaem_chains = 1",
                        "saem_exploration = 150\nsaem_smoothing = 200\nsaem_chains = 2")
    text = text.replace('estimator = "saem"', f'estimator = "{estimator}"')
    assert "prior" in text or not (cl_prior or v_prior)
    return parse_fit_config(text, source="prior.toml", check_data=False)


def _iv_posterior(x, designs):
    from test_saem_se_fallback import _m2ll

    nu, wp = 40.0, 0.04
    return (_m2ll(x, designs) + ((x[0] - np.log(5.5)) / 0.05) ** 2
            + (nu + 2.0) * x[3] + nu * wp * np.exp(-x[3]))


def test_config_priors_give_the_exact_map(tmp_path):
    """``prior`` on CL's typical value and ``eta_prior`` on V's variance in the config: the
    SAEM fit is the exact MAP (closed-form model, Gauss-Hermite quadrature, BFGS) within 0.3
    posterior SE, with the posterior SEs within 15 %; the population part, the report and a
    reloaded fit carry the priors and their -2 log p."""
    from test_saem_se_fallback import _data

    from progression.fit import fit, load_fit

    designs = _data(9)
    res = fit(_prior_config(), data=designs)
    pop = res.population
    x0 = np.r_[np.log(5.0), np.log(50.0), np.log(0.09), np.log(0.01), np.log(0.3)]
    opt = minimize(_iv_posterior, x0, args=(designs,), method="BFGS",
                   options={"gtol": 1e-6})
    se = np.sqrt(np.diag(np.linalg.inv(_hessian(lambda x: _iv_posterior(x, designs),
                                                opt.x, h=1e-3) / 2.0)))
    est = np.r_[np.log(pop.fixed_effects["CL"]), np.log(pop.fixed_effects["V"]),
                np.log(np.diag(pop.omega)), np.log(pop.sigma["conc.sigma"])]
    z = (est - opt.x) / se
    assert np.all(np.abs(z) < 0.3), z
    np.testing.assert_allclose(np.sqrt(np.diag(pop.covariance)), se, rtol=0.15)
    assert pop.priors == {"CL": {"value": 5.5, "sd": 0.05},
                          "omega^2 V": {"value": 0.04, "df": 40.0}}
    want = (((np.log(pop.fixed_effects["CL"]) - np.log(5.5)) / 0.05) ** 2
            + 42.0 * np.log(pop.omega[1, 1]) + 40.0 * 0.04 / pop.omega[1, 1])
    assert pop.prior_objective == pytest.approx(want, rel=1e-9)
    res.save(tmp_path / "fit")
    text = (tmp_path / "fit" / "report.md").read_text()
    assert "### Priors" in text and "inverse-Wishart: value 0.04, df 40" in text
    back = load_fit(tmp_path / "fit").population
    assert back.priors == pop.priors and back.prior_objective == pop.prior_objective
    params = load_fit(tmp_path / "fit").parameters
    assert {p.name: p.prior for p in params if p.prior} == {"CL": (5.5, 0.05)}
    assert {p.name: p.eta_prior for p in params if p.eta_prior} == {"V": (0.04, 40.0)}


def test_api_refuses_priors_with_another_estimator():
    """A config whose estimator is changed in Python after reading: a per-subject estimator
    refuses the priors when the fit starts, naming the key."""
    from test_saem_se_fallback import _data

    from progression.errors import ConfigError
    from progression.fit import fit

    cfg = _prior_config().replace(estimator="individual")
    with pytest.raises(ConfigError, match=r"parameters\.CL\.prior: priors are taken by a "
                                          r"population estimator.*found \"individual\""):
        fit(cfg, data=_data(9)[:5])


# --- the FOCE family: a linear mixed model in a config (FOCE-I and Laplace are exact there) --

LINEAR_MODEL = """
[model]
name = "line"
description = "y(t) = a + b t as an ODE: y' = b, y(0) = a."
time_unit = "hour"

[parameters.a]
value = 10.0
bounds = [-100.0, 100.0]
description = "intercept"
source = "test"

[parameters.b]
value = 2.0
bounds = [-10.0, 10.0]
description = "slope"
source = "test"

[states.y]
initial = "a"
description = "the line"

[equations]
y = "b"

[observables.obs]
expression = "y"
"""

LINEAR_CONFIG = """
[fit]
name = "line_prior"
model = "line.toml"
estimator = "{estimator}"

[error.obs]
model = "additive"
a = {{ value = 1.0, estimate = "population", bounds = [0.01, 10.0] }}

[parameters.a]
estimate = "population"
value = 8.0
scale = "linear"
eta = 1.0

[parameters.b]
estimate = "population"
value = 1.0
scale = "linear"
eta = 1.0
{priors}
"""


@pytest.mark.parametrize("estimator", ["focei", "foce", "fo", "laplace"])
def test_foce_family_with_priors_reaches_the_exact_map(study, tmp_path, estimator):
    """FO, FOCE, FOCE-I and Laplace are exact on a linear mixed model with additive error,
    so with the priors of the first test in the config (``prior`` on the slope's typical
    value, ``eta_prior`` on its variance) their fit must be the exact MAP: estimates within
    1e-4 (absolute, estimation scale; measured 2e-6), SEs within 0.5 % of the posterior's
    (R by differences of the exact gradient, prior included; measured < 0.01 %); the OFV is
    the data's exact -2 log L there (without N log 2 pi) and ``prior_objective`` the
    prior's term."""
    from progression.fit import Design, fit
    from progression.fit.config import parse_fit_config

    ys, map_, _, se, _ = study
    (tmp_path / "line.toml").write_text(LINEAR_MODEL)
    priors = "prior = { value = 2.6, sd = 0.1 }\neta_prior = { value = 0.5, df = 30 }\n"
    cfg = parse_fit_config(LINEAR_CONFIG.format(estimator=estimator, priors=priors),
                           source="line.toml", base_dir=tmp_path, check_data=False)
    m = T.size
    designs = [Design(f"s{i}", T.copy(), np.zeros(m, dtype=int), y, np.zeros(m, dtype=int),
                      np.full(m, np.nan)) for i, y in enumerate(ys)]
    pop = fit(cfg, data=designs).population
    est = np.r_[pop.fixed_effects["a"], pop.fixed_effects["b"], np.log(np.diag(pop.omega)),
                np.log(pop.sigma["obs.a"])]
    np.testing.assert_allclose(est, map_, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(pop.covariance)), se, rtol=0.005)
    x = np.zeros(N)
    exact = _exact_m2ll(ys, x, est[:2], 0.0, np.diag(np.exp(est[2:4])), np.exp(est[4]))
    assert pop.ofv == pytest.approx(exact - N * m * np.log(2 * np.pi), abs=1e-4)
    assert pop.prior_objective == pytest.approx(_prior_m2logp(est[1], np.exp(est[3])),
                                                rel=1e-9)
    assert pop.priors == {"b": {"value": 2.6, "sd": 0.1},
                          "omega^2 b": {"value": 0.5, "df": 30.0}}
    assert "priors' -2 log p" in pop.covariance_method


def test_case_bootstrap_refits_with_the_priors(study, tmp_path):
    """The case bootstrap of a FOCE-I fit with priors: each replicate is a MAP refit (the
    slope's replicates sit by the MAP 2.475, not the maximum likelihood 2.187: the prior
    moves each of them as it moved the fit), all estimated, and they differ."""
    from progression.fit import Design, fit
    from progression.fit.config import parse_fit_config

    ys, map_, ml, _, _ = study
    (tmp_path / "line.toml").write_text(LINEAR_MODEL)
    priors = ("prior = { value = 2.6, sd = 0.1 }\neta_prior = { value = 0.5, df = 30 }\n"
              '\n[estimator]\nuncertainty = ["covariance", "bootstrap"]\n'
              "bootstrap_samples = 5\nseed = 3\n")
    cfg = parse_fit_config(LINEAR_CONFIG.format(estimator="focei", priors=priors),
                           source="line.toml", base_dir=tmp_path, check_data=False)
    m = T.size
    designs = [Design(f"s{i}", T.copy(), np.zeros(m, dtype=int), y, np.zeros(m, dtype=int),
                      np.full(m, np.nan)) for i, y in enumerate(ys)]
    boot = fit(cfg, data=designs).population.bootstrap_result()
    assert boot.n_failed == 0
    b = boot.samples[:, boot.names.index("b")]
    assert len(set(b)) == 5
    assert np.all(b > 0.5 * (map_[1] + ml[1])), b


def test_ext_obj_is_the_objective_minimised(study, tmp_path):
    """A FOCE-I fit with priors saved: ``fit.ext``'s final OBJ is OFV + the priors' -2 log p
    (NONMEM adds its prior penalty), and its last iteration's OBJ equals it (the optimiser's
    objective); the population part's OFV stays the data's."""
    from progression.fit import Design, fit
    from progression.fit.config import parse_fit_config
    from progression.fit.population import read_ext

    ys = study[0]
    (tmp_path / "line.toml").write_text(LINEAR_MODEL)
    priors = "prior = { value = 2.6, sd = 0.1 }\neta_prior = { value = 0.5, df = 30 }\n"
    cfg = parse_fit_config(LINEAR_CONFIG.format(estimator="focei", priors=priors),
                           source="line.toml", base_dir=tmp_path, check_data=False)
    m = T.size
    designs = [Design(f"s{i}", T.copy(), np.zeros(m, dtype=int), y, np.zeros(m, dtype=int),
                      np.full(m, np.nan)) for i, y in enumerate(ys)]
    res = fit(cfg, data=designs)
    res.save(tmp_path / "fit", figures=False)
    ext = read_ext(tmp_path / "fit" / "fit.ext")[0]
    pop = res.population
    final = ext.row(-1000000000)["OBJ"]
    assert final == pytest.approx(pop.ofv + pop.prior_objective, abs=1e-6)
    iterations, values = ext.history()
    assert values[-1, ext.columns.index("OBJ")] == pytest.approx(final, abs=1e-4)
