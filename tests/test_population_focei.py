"""The ``focei`` estimator (population fit, NONMEM's FOCE-I) from a run config and the CLI.

Published numbers (R's Theoph = nlmixr2data theo_sd, nlmixr2 FOCEi, log ka/CL/V with a
random effect each, additive error; sources in data/examples/theoph.md): OBJF 116.8036
(a stored nlmixr2save ``saveFit`` page; 116.804 in the nlmixr2 piping article), tka 0.4655,
tcl 1.012, tv 3.460 (ka 1.59 /h, CL 2.75 L/h, V 31.8 L), BSV 70.52, 26.75, 13.90 CV %
(omega^2 = log(1 + CV^2) = 0.4025, 0.0691, 0.0191), add.sd 0.6947.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from progression.fit.config import read_fit_config
from progression.fit.estimate import read_data
from progression.fit.estimators import ESTIMATORS
from progression.fit.estimators.focei import FOCEI, INNER
from progression.fit.population import Residual, focei_gradient
from progression.fit.population._adapter import ProblemModel
from progression.fit.problem import Problem, designs_from_cohort

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "theoph_population.toml"
LOG_2PI = math.log(2 * math.pi)
CV = np.array([70.52, 26.75, 13.90]) / 100
PUBLISHED = {"ofv": 116.8036, "theta": np.array([0.4655, 1.012, 3.460]),
             "omega": np.log1p(CV ** 2), "add_sd": 0.6947}


@pytest.fixture(scope="module")
def theoph():
    cfg = read_fit_config(CONFIG)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index(n) for n in ("ka", "CL", "V")])
    return cfg, problem, designs, ProblemModel(problem, designs, cols)


def test_registered():
    from progression.fit import config

    assert ESTIMATORS["focei"] is FOCEI
    assert "focei" in config.ESTIMATORS


def test_adapter_derivatives_match_finite_differences(theoph):
    """G = df/dphi (log ka, log CL, log V) against central differences, doses honoured."""
    _, _, designs, model = theoph
    rng = np.random.default_rng(3)
    phi = np.log([1.6, 2.75, 31.8]) + 0.3 * rng.standard_normal((12, 3))
    idx = np.arange(12)
    f, G = model.predict(phi, idx)
    assert f.shape == (12, 11) and G.shape == (12, 11, 3)
    # t = 0 is before the dose: nothing absorbed yet
    np.testing.assert_allclose(f[:, 0], 0.0, atol=1e-12)
    assert np.all(f[:, 1:] > 0)
    # central differences: truncation ~h^2 = 1e-8; integration noise (rtol 1e-10, the step
    # sequence changes with phi) ~1e-10 / h = 1e-6 (at h = 1e-5 it reached 4e-5)
    h = 1e-4
    for k in range(3):
        up, dn = phi.copy(), phi.copy()
        up[:, k] += h
        dn[:, k] -= h
        fd = (model.predict(up, idx)[0] - model.predict(dn, idx)[0]) / (2 * h)
        np.testing.assert_allclose(G[..., k], fd, rtol=1e-5, atol=1e-7)
    # a subset of subjects in another order gives the same rows
    f2, G2 = model.predict(phi[[5, 2]], np.array([5, 2]))
    np.testing.assert_allclose(f2, f[[5, 2]], rtol=1e-8, atol=1e-10)


def test_adapter_lognormal_and_combined_errors(theoph):
    """A log-normal observable is additive on the log scale in the core (log data, log f and
    d log f / dphi); a combined one gives the same f and G as the additive one."""
    from progression.fit.config import parse_fit_config
    from progression.fit.estimators.focei import FOCEI, population_layout

    _, _, designs, _ = theoph
    # without the pre-dose samples (f = 0 there, outside a log-normal model's domain)
    later = [d.replace(time=d.time[1:], obs=d.obs[1:], value=d.value[1:], cens=d.cens[1:],
                       limit=d.limit[1:]) for d in designs]
    text = CONFIG.read_text()
    old = 'model = "additive"\na = { value = 0.7, estimate = "population", bounds = [0.01, 10.0] }'
    assert old in text
    phi = np.tile(np.log([1.6, 2.75, 31.8]), (3, 1)) + 0.1
    idx = np.array([0, 4, 7])
    out = {}
    for kind, new in (("additive", old),
                      ("lognormal", 'model = "lognormal"\nsigma = { value = 0.2, estimate = '
                                    '"population" }'),
                      ("combined", 'model = "combined"\na = { value = 0.5, estimate = '
                                   '"population" }\nb = { value = 0.1, estimate = '
                                   '"population" }')):
        c = parse_fit_config(text.replace(old, new), source="x.toml", base_dir=CONFIG.parent)
        pb = Problem.from_config(c)
        pb.fix_grid_step(later)
        model = ProblemModel(pb, later, np.array([pb.names.index(k) for k in ("ka", "CL", "V")]))
        out[kind] = (pb, model, *model.predict(phi, idx))
    _, _, f, G = out["additive"]
    _, m_log, f_log, G_log = out["lognormal"]
    np.testing.assert_allclose(f_log, np.log(f), rtol=1e-9)
    np.testing.assert_allclose(G_log, G / f[..., None], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(m_log.data().y[0], np.log(later[0].value), rtol=1e-12)
    pb, _, f_c, G_c = out["combined"]
    np.testing.assert_array_equal(f_c, f)
    np.testing.assert_array_equal(G_c, G)
    _, _, err = population_layout(pb)
    assert [w for _, _, w in err] == ["a", "b"]
    res = FOCEI()._residual(pb, {"err": err}, np.array([0.5, 0.1]))
    assert res.a == (0.5,) and res.b == (0.1,)


def test_adapter_and_estimator_pickle(theoph):
    _, _, _, model = theoph
    phi = np.tile(np.log([1.6, 2.75, 31.8]), (2, 1))
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict(phi, np.array([0, 1]))[0],
                                  model.predict(phi, np.array([0, 1]))[0])
    est = pickle.loads(pickle.dumps(FOCEI()))
    assert isinstance(est, FOCEI) and est.name == "focei"


def test_ofv_at_published_estimates(theoph):
    """Our FOCE-I objective through the config's model at nlmixr2's estimates: 116.8036."""
    _, _, _, model = theoph
    data = model.data()
    gr = focei_gradient(model, data, np.tile(PUBLISHED["theta"], (12, 1)),
                        np.diag(PUBLISHED["omega"]), Residual.additive(PUBLISHED["add_sd"]),
                        inner_options=INNER)
    assert gr.ofv == pytest.approx(PUBLISHED["ofv"], abs=0.01)
    # -2 log L with the constant: nlmixr2's Log-likelihood -179.7019 (x -2 = 359.404)
    assert gr.ofv + data.n_obs * LOG_2PI == pytest.approx(359.4038, abs=0.01)


def test_population_part_json_round_trip():
    """fit.json's population entry (NaN as null) loads back to the same numbers."""
    from progression.fit._io_result import _clean
    from progression.fit.parts import PopulationPart

    part = PopulationPart(
        fixed_effects={"ka": 1.5902394831916895}, fixed_effects_se={"ka": float("nan")},
        omega_names=("ka",), omega=np.array([[0.4023537444260387]]),
        sigma={"conc.a": 0.6944093987675724}, ebes=np.array([[0.1], [-0.1 / 3]]),
        shrinkage={"ka": 0.0176}, omega_se={"ka": 0.2177}, cv_percent={"ka": 70.38},
        ofv=116.80341290288972, m2ll=359.4031856689233, n_parameters=7, iterations=20,
        converged=True, method="focei", covariance_method="sandwich")
    back = PopulationPart.from_dict(json.loads(json.dumps(_clean(
        __import__("dataclasses").asdict(part)), allow_nan=False)))
    assert math.isnan(back.fixed_effects_se["ka"]) and math.isnan(back.aic)
    np.testing.assert_array_equal(back.omega, part.omega)
    np.testing.assert_array_equal(back.ebes, part.ebes)
    for key in ("fixed_effects", "sigma", "shrinkage", "omega_se", "cv_percent", "ofv",
                "m2ll", "n_parameters", "iterations", "converged", "method", "omega_names"):
        assert getattr(back, key) == getattr(part, key), key


@pytest.mark.slow
def test_cli_fit_reaches_published_focei(tmp_path, capsys):
    """``progression fit configs/theoph_population.toml --out DIR``: nlmixr2's optimum, a
    population table in the report, and the saved fit loads back with the same numbers."""
    from progression.cli import main
    from progression.fit import load_fit

    out = tmp_path / "fit"
    assert main(["fit", str(CONFIG), "--out", str(out), "--no-figures"]) == 0
    doc = json.loads((out / "fit.json").read_text())
    pop = doc["population"]
    assert pop["ofv"] == pytest.approx(PUBLISHED["ofv"], abs=0.1)
    assert pop["ofv"] <= PUBLISHED["ofv"] + 0.01
    assert doc["objective"] == pytest.approx(pop["ofv"] + 132 * LOG_2PI, abs=1e-6)
    typical = np.log([pop["fixed_effects"][k] for k in ("ka", "CL", "V")])
    np.testing.assert_allclose(np.exp(typical), np.exp(PUBLISHED["theta"]), rtol=0.05)
    np.testing.assert_allclose(np.diag(pop["omega"]), PUBLISHED["omega"], rtol=0.2)
    assert pop["sigma"]["conc.a"] == pytest.approx(PUBLISHED["add_sd"], rel=0.05)
    assert pop["converged"]
    # nlmixr2 AIC 373.4038, BIC 393.5834 (7 parameters, 132 observations)
    assert pop["aic"] == pytest.approx(373.4038, abs=0.1)
    assert pop["bic"] == pytest.approx(393.5834, abs=0.1)
    assert doc["n_estimated"] == 7 and doc["aic"] == pytest.approx(pop["aic"], abs=1e-9)
    # covariance step: the sandwich; nlmixr2 SEs of tka, tcl, tv 0.1911, 0.08366, 0.04654
    assert "sandwich" in pop["covariance_method"]
    rse = np.array([pop["fixed_effects_se"][k] / pop["fixed_effects"][k]
                    for k in ("ka", "CL", "V")])
    np.testing.assert_allclose(rse, [0.1911, 0.08366, 0.04654], rtol=0.25)
    # shrinkage (nlmixr2: 1.42, 3.97, 10.28 %)
    np.testing.assert_allclose([pop["shrinkage"][k] for k in ("ka", "CL", "V")],
                               [0.0142, 0.0397, 0.1028], atol=0.01)
    report = (out / "report.md").read_text()
    assert "## Population estimates" in report and "omega^2 ka (variance)" in report
    # EBEs are the per-subject estimates: the individual parameters at the conditional modes
    theta = np.array(doc["estimates"]["theta"])
    q = doc["subjects"], [p["name"] for p in doc["parameters"]].index("ka")
    np.testing.assert_allclose(np.log(theta[:, q[1]]),
                               typical[0] + np.array(pop["ebes"])[:, 0], rtol=1e-12)
    back = load_fit(out)
    assert back.population == back.population  # noqa: PLR0124 (dataclass with arrays)
    loaded = back.population
    for key in ("fixed_effects", "fixed_effects_se", "sigma", "shrinkage", "omega_se",
                "cv_percent"):
        assert getattr(loaded, key) == pop[key]
    np.testing.assert_array_equal(loaded.omega, np.array(pop["omega"]))
    np.testing.assert_array_equal(loaded.ebes, np.array(pop["ebes"]))
    assert loaded.ofv == pop["ofv"] and loaded.omega_names == ("ka", "CL", "V")
    np.testing.assert_array_equal(back.theta, theta)
    np.testing.assert_array_equal(back.population.covariance, np.array(pop["covariance"]))
    # downstream: per-subject uncertainty of the individual parameters (conditional
    # covariance of the EBEs) drives parameter draws and simulation
    assert "conditional covariance" in back.interval_methods["covariance"]
    draws = back.parameter_draws(200, rng=1)
    ka = draws.parameters[:, :, back.parameter_names.index("ka")]
    assert ka.shape == (200, 12) and np.all(np.isfinite(ka))
    sd_log = np.std(np.log(ka), axis=0)
    se_log = back.se[:, back.parameter_names.index("ka")] / back.theta[:, q[1]]
    np.testing.assert_allclose(sd_log, se_log, rtol=0.25)
    printed = capsys.readouterr().out
    # the population screen of progression.fit._population_summary (1a4a8c1)
    assert "(NONMEM convention, without N log 2 pi)" in printed and "; 7 parameters" in printed


@pytest.mark.slow
def test_recovery_on_simulated_population(theoph):
    """40 subjects simulated from pk_oral with known theta, Omega (diagonal) and an additive
    SD on Theoph's dosing and sampling design (seed 11); the FOCE-I estimates lie within 3
    standard errors (sandwich covariance, on the estimation scale) of the truth, and within
    10% (typical values) / 60% (variances, SE ~ 22% with 40 subjects) / 15% (residual SD)."""
    from progression.fit import fit

    cfg, problem, designs, _ = theoph
    n = 40
    many = [designs[i % 12].replace(id=f"sim{i}") for i in range(n)]
    cols = np.array([problem.names.index(k) for k in ("ka", "CL", "V")])
    truth = {"theta": np.log([1.5, 2.8, 32.0]), "omega": np.array([0.3, 0.08, 0.05]),
             "a": 0.3}
    rng = np.random.default_rng(11)
    eta = rng.standard_normal((n, 3)) * np.sqrt(truth["omega"])
    f, _ = ProblemModel(problem, many, cols).predict(truth["theta"] + eta, np.arange(n))
    sim = [d.with_values(f[i, :d.n] + truth["a"] * rng.standard_normal(d.n))
           for i, d in enumerate(many)]
    res = fit(cfg, data=sim)
    pop = res.population
    est = np.log([pop.fixed_effects[k] for k in ("ka", "CL", "V")])
    se = np.array([pop.fixed_effects_se[k] / pop.fixed_effects[k] for k in ("ka", "CL", "V")])
    assert np.all(np.abs(est - truth["theta"]) < 3 * se)
    np.testing.assert_allclose(np.exp(est), np.exp(truth["theta"]), rtol=0.10)
    om = np.diag(pop.omega)
    om_se = np.array([pop.omega_se[k] for k in ("ka", "CL", "V")])
    # the reference is this data set's own Omega, the sample variances of the simulated etas
    # (0.313, 0.091, 0.026 with seed 11: the V draws happen to vary half as much as Omega
    # says, and the estimate follows the data); on the log scale the variances were
    # estimated on (Wald there)
    realised = eta.var(axis=0, ddof=1)
    assert np.all(np.abs(np.log(om / realised)) < 3 * om_se / om)
    np.testing.assert_allclose(om, realised, rtol=0.25)
    # the EBEs follow the simulated random effects
    assert np.all([np.corrcoef(pop.ebes[:, k], eta[:, k])[0, 1] > 0.8 for k in range(3)])
    assert pop.sigma["conc.a"] == pytest.approx(truth["a"], rel=0.15)
    assert abs(pop.sigma["conc.a"] - truth["a"]) < 3 * pop.sigma_se["conc.a"]
    # per-subject estimates are the individual parameters at the EBEs
    np.testing.assert_allclose(np.log(res.theta[:, cols]), est + pop.ebes, rtol=1e-12)
