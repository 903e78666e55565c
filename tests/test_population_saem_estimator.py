"""The ``saem`` estimator (``[fit] estimator = "saem"``) from the same configs as ``focei``.

Fast test: 10 subjects simulated from pk_oral on Theoph's doses and sampling times (log ka,
CL, V with a random effect each, additive error; seed 5), fitted by ``focei`` and by ``saem``
(short run: 1 chain per subject... see ``SAEM_OPTIONS``) through :func:`progression.fit.fit`.
Slow test: ``progression fit configs/theoph_population_saem.toml``; FOCE-I's optimum there is
116.80 (nlmixr2 FOCEi 116.8036) while SAEM's importance-sampling OFV estimates the exact
-2 log L (without N log 2 pi), ~118.1 on this data (adaptive quadrature 118.12,
``tests/test_population_saem.py``): FOCE-I's approximation undercuts it by ~1.3.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from progression.fit.config import parse_fit_config, read_fit_config
from progression.fit.estimate import read_data
from progression.fit.estimators import ESTIMATORS
from progression.fit.estimators.saem import COVARIANCE_METHOD, SAEM
from progression.fit.population._adapter import ProblemModel
from progression.fit.problem import Problem, designs_from_cohort

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "theoph_population_saem.toml"
LOG_2PI = math.log(2 * math.pi)
NAMES = ("ka", "CL", "V")
#: the agreement with FOCE-I (slow: ~40 s per SAEM fit on 2 shared cores)
SAEM_OPTIONS = ("saem_exploration = 100\nsaem_smoothing = 60\nsaem_chains = 2\n"
                "is_samples = 300\n")
#: the mechanics (fast): a short run, 6 subjects, 1 chain each
SHORT = "saem_exploration = 15\nsaem_smoothing = 10\nsaem_chains = 1\nis_samples = 100\n"
TRUTH = {"theta": np.log([1.5, 2.8, 32.0]), "omega": np.array([0.3, 0.08, 0.05]), "a": 0.4}


def _config(estimator: str, seed: int = 3, options: str = SAEM_OPTIONS):
    text = _estimator_free(CONFIG.read_text()).replace("[estimator]\nseed = 1\n",
                                                       f"[estimator]\nseed = {seed}\n{options}")
    text = text.replace('estimator = "saem"', f'estimator = "{estimator}"')
    return parse_fit_config(text, source="saem.toml", base_dir=CONFIG.parent)


def _estimator_free(text: str) -> str:
    """The config without its SAEM settings (the tests set their own)."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(("saem_", "is_samples"))) + "\n"


@pytest.fixture(scope="module")
def simulated():
    cfg = read_fit_config(CONFIG)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    n = 10
    many = [designs[i % 12].replace(id=f"sim{i}") for i in range(n)]
    cols = np.array([problem.names.index(k) for k in NAMES])
    rng = np.random.default_rng(5)
    eta = rng.standard_normal((n, 3)) * np.sqrt(TRUTH["omega"])
    f, _ = ProblemModel(problem, many, cols).predict(TRUTH["theta"] + eta, np.arange(n))
    return [d.with_values(f[i, :d.n] + TRUTH["a"] * rng.standard_normal(d.n))
            for i, d in enumerate(many)]


@pytest.fixture(scope="module")
def fits(simulated):
    """Short SAEM runs on 6 of the subjects (the mechanics, not the numbers)."""
    from progression.fit import fit

    few = simulated[:6]
    return {"saem": fit(_config("saem", options=SHORT), data=few),
            "saem again": fit(_config("saem", options=SHORT), data=few)}


def test_registered():
    from progression.fit import config

    assert ESTIMATORS["saem"] is SAEM
    assert "saem" in config.ESTIMATORS and "saem" in config.POPULATION_ESTIMATORS


@pytest.mark.slow
def test_saem_agrees_with_focei(simulated):
    """Typical values within 10% of FOCE-I's on the same data (SAEM and FOCE-I optimise
    different objectives: exact vs linearised likelihood), within 2 FOCE-I SE; residual SD
    within 10%, Omega diagonal within a factor 2 (10 subjects: SE of a variance ~45%)."""
    from progression.fit import fit

    fo = fit(_config("focei"), data=simulated).population
    sa = fit(_config("saem"), data=simulated).population
    est = {k: np.log([p.fixed_effects[n] for n in NAMES]) for k, p in (("fo", fo), ("sa", sa))}
    se = np.array([fo.fixed_effects_se[n] / fo.fixed_effects[n] for n in NAMES])
    np.testing.assert_allclose(np.exp(est["sa"]), np.exp(est["fo"]), rtol=0.10)
    assert np.all(np.abs(est["sa"] - est["fo"]) < 2 * se)
    assert sa.sigma["conc.a"] == pytest.approx(fo.sigma["conc.a"], rel=0.10)
    ratio = np.diag(sa.omega) / np.diag(fo.omega)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    # the IS OFV estimates the exact -2 log L; FOCE-I's linearisation is close to it here
    assert abs(sa.ofv - fo.ofv) < 3.0
    assert sa.method == "saem" and sa.converged and sa.iterations == 160
    # SAEM's own SEs (stochastic-approximation Fisher information) against FOCE-I's
    # covariance step: typical values within 30% (10 subjects), every population
    # parameter's SE finite, the same covariance_names
    assert sa.covariance_method == COVARIANCE_METHOD
    assert sa.covariance_names == fo.covariance_names
    sa_se = np.array([sa.fixed_effects_se[n] / sa.fixed_effects[n] for n in NAMES])
    np.testing.assert_allclose(sa_se, se, rtol=0.30)
    assert np.all(np.isfinite(np.diag(sa.covariance)))
    assert sa.sigma_se["conc.a"] == pytest.approx(fo.sigma_se["conc.a"], rel=0.3)


def test_saem_result_consistent(fits):
    """Per-subject estimates are the individual parameters at the conditional means; the
    objective is the IS -2 log L = OFV + n log 2 pi; AIC/BIC from it; the traces."""
    res = fits["saem"]
    pop = res.population
    cols = [res.parameter_names.index(n) for n in NAMES]
    typical = np.log([pop.fixed_effects[n] for n in NAMES])
    np.testing.assert_allclose(np.log(res.theta[:, cols]), typical + pop.ebes, rtol=1e-12)
    n_obs = 6 * 11
    assert pop.m2ll == pytest.approx(pop.ofv + n_obs * LOG_2PI, abs=1e-8)
    assert pop.aic == pytest.approx(pop.m2ll + 2 * 7, abs=1e-9)
    assert pop.bic == pytest.approx(pop.m2ll + 7 * math.log(n_obs), abs=1e-9)
    h = pop.history
    assert h.shape == (pop.iterations, 2 + 3 + 1 + 3)
    np.testing.assert_allclose(h[-1, 1:4], [pop.fixed_effects[n] for n in NAMES], rtol=1e-12)
    np.testing.assert_allclose(h[-1, 5:8], np.diag(pop.omega), rtol=1e-12)
    assert h[-1, -1] == pop.ofv and np.all(np.isnan(h[:-1, -1]))
    assert "importance sampling" in res.individual.diagnostics.method
    assert "conditional covariance of eta from the SAEM chains" in \
        res.interval_methods["covariance"]


def test_saem_own_standard_errors(fits):
    """The default covariance step is SAEM's stochastic-approximation Fisher information, in
    focei's covariance_names order, and the population SEs are read off it."""
    pop = fits["saem"].population
    assert pop.covariance_method == COVARIANCE_METHOD
    assert pop.covariance_names == ("theta ka", "theta CL", "theta V", "log omega^2 ka",
                                    "log omega^2 CL", "log omega^2 V", "log conc.a")
    sx = np.sqrt(np.diag(pop.covariance))
    assert np.all(np.isfinite(sx)) and np.all(sx > 0)
    for j, n in enumerate(NAMES):
        assert pop.fixed_effects_se[n] == pytest.approx(sx[j] * pop.fixed_effects[n],
                                                        rel=1e-12)
    assert pop.sigma_se["conc.a"] == pytest.approx(sx[6] * pop.sigma["conc.a"], rel=1e-12)
    method = fits["saem"].individual.diagnostics.method
    assert "15 exploration: k1 reached; 10 smoothing: k2 = 10 iterations" in method


def test_saem_options_mapping():
    """Numbers keep their meaning; "auto" (or 0) ends the smoothing phase automatically."""
    from progression.fit._estimator_options import EstimatorOptions
    from progression.fit.estimators.saem import AUTO_K2_MAX, saem_options

    o = saem_options(EstimatorOptions(saem_exploration=120, saem_smoothing=80))
    assert (o.k1, o.k2, o.auto_k2) == (120, 80, False)
    for auto in ("auto", 0):
        o = saem_options(EstimatorOptions(saem_exploration=auto, saem_smoothing=auto))
        assert (o.k1, o.k2, o.auto_k2) == (300, AUTO_K2_MAX, True)


@pytest.mark.slow
def test_saem_automatic_smoothing(simulated):
    """saem_smoothing = "auto": the smoothing phase ends by the SE-drift rule, stated
    (~100 s on 2 shared cores)."""
    import dataclasses

    from progression.fit import fit

    cfg = _config("saem", options="saem_exploration = 100\nsaem_chains = 2\n"
                                  "is_samples = 100\n")
    cfg = dataclasses.replace(cfg, options=dict(cfg.options, saem_smoothing="auto"))
    res = fit(cfg, data=simulated)
    pop = res.population
    k2 = pop.iterations - 100
    assert 100 <= k2 < 500
    assert "smoothing: automatic" in res.individual.diagnostics.method


def test_saem_reproducible_with_seed(fits):
    a, b = fits["saem"], fits["saem again"]
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.population.ofv == b.population.ofv
    np.testing.assert_array_equal(a.population.omega, b.population.omega)
    pickle.loads(pickle.dumps(SAEM()))


def test_saem_saved_and_reloaded(fits, tmp_path):
    from progression.fit import load_fit

    res = fits["saem"]
    res.save(tmp_path / "fit")
    back = load_fit(tmp_path / "fit")
    np.testing.assert_array_equal(back.theta, res.theta)
    for key in ("fixed_effects", "fixed_effects_se", "sigma", "shrinkage", "omega_se",
                "cv_percent"):
        assert getattr(back.population, key) == getattr(res.population, key)
    np.testing.assert_array_equal(back.population.omega, res.population.omega)
    np.testing.assert_array_equal(back.population.ebes, res.population.ebes)
    np.testing.assert_array_equal(back.population.history, res.population.history)
    assert back.population.ofv == res.population.ofv
    assert back.population.method == "saem"


def test_saem_estimates_a_parameter_without_random_effect(simulated):
    """V without a random effect (Monolix's "parameter without variability"): SAEM estimates
    it by its Fisher-scoring M-step, with an SA standard error; FOCE-I on the same data and
    config agrees within 2 of its standard errors (the data were simulated with V's eta
    variance 0.05, so both fits carry the same misspecification)."""
    from progression.fit import fit

    text = _estimator_free(CONFIG.read_text()).replace("eta = 0.1\n", "")
    text = text.replace("[estimator]\nseed = 1\n", f"[estimator]\nseed = 3\n{SAEM_OPTIONS}")
    cfg = parse_fit_config(text, source="noeta.toml", base_dir=CONFIG.parent)
    pop = fit(cfg, data=simulated).population
    assert "V" not in pop.omega_names
    ref = fit(cfg.replace(estimator="focei"), data=simulated).population
    assert pop.fixed_effects["V"] != 31.5                     # moved from its start
    se_log = ref.fixed_effects_se["V"] / ref.fixed_effects["V"]
    assert abs(math.log(pop.fixed_effects["V"] / ref.fixed_effects["V"])) < 2 * se_log
    assert 0.3 < (pop.fixed_effects_se["V"] / pop.fixed_effects["V"]) / se_log < 3


def test_saem_refuses_covariates_on_a_parameter_without_random_effect():
    from progression.errors import ConfigError
    from progression.fit import fit

    text = CONFIG.read_text().replace("eta = 0.1\n", "") + (
        "\n[parameters.V.covariates.weight]\neffect = \"power\"\nreference = 70.0\n"
        "value = 1.0\n")
    cfg = parse_fit_config(text, source="noeta.toml", base_dir=CONFIG.parent)
    with pytest.raises(ConfigError, match=r"noeta\.toml: parameters\.V\.covariates\.weight: "
                                          r"fit\.estimator = \"saem\" takes covariate effects "
                                          r"on parameters with a random effect only"):
        fit(cfg)           # Theoph itself (a weight per subject)


@pytest.mark.slow
def test_cli_theoph_saem(tmp_path):
    """``progression fit configs/theoph_population_saem.toml``: OFV within 2 of FOCE-I's
    116.80 (the IS estimate of the exact -2 log L, ~118.1), typical values within 5% of
    nlmixr2's FOCEi."""
    import json

    from progression.cli import main

    out = tmp_path / "fit"
    assert main(["fit", str(CONFIG), "--out", str(out), "--no-figures"]) == 0
    pop = json.loads((out / "fit.json").read_text())["population"]
    assert abs(pop["ofv"] - 116.80) < 2.0
    assert pop["ofv"] > 116.80 - 0.5          # the exact likelihood is not below FOCE-I's
    np.testing.assert_allclose([pop["fixed_effects"][k] for k in NAMES], [1.59, 2.75, 31.8],
                               rtol=0.05)
    assert pop["method"] == "saem"


#: als_reduced on the first subjects of the synthetic clinic cohort, random effects on the
#: four progression parameters and the onset shift (no doses: the RK4 kernel path applies)
ALS = """
[fit]
name = "als_rk4"
model = "als_reduced"
estimator = "saem"
[data]
path = "../data/synthetic/als_clinic_200.csv"
[error.ALSFRS_R]
model = "additive"
a = { value = 2.0, estimate = "population" }
[error.NfL]
model = "lognormal"
sigma = { value = 0.35, estimate = "population" }
[error.CRP]
model = "lognormal"
sigma = { value = 0.9, estimate = "population" }
[parameters.k0]
estimate = "population"
value = 0.0095
bounds = [0.0005, 0.2]
eta = 0.45
[parameters.kA]
estimate = "population"
value = 0.034
bounds = [0.001, 0.5]
eta = 0.45
[parameters.Tmax]
estimate = "population"
value = 0.88
bounds = [0.4, 1.0]
eta = 0.01
[parameters.eD]
estimate = "population"
value = 0.34
bounds = [0.01, 5.0]
eta = 0.09
[parameters.wsp]
estimate = "fixed"
value = 0.095
[parameters.time_offset]
estimate = "population"
value = 6.3
bounds = [0.5, 200.0]
scale = "log"
covariate = "onset_time"
factor = -1.0
eta = 0.36
"""


def test_rk4_kernel_predictions_match_exact_path():
    """The lockstep RK4 predictions the SAEM kernels use on dose-free designs (ALS): after
    calibration at one set of draws, predictions at other draws (two rows per subject)
    within 0.01 residual SD of the exact path (measured 2e-5); rows far beyond the
    calibrated span in a batch of their own, or failed; Theoph (doses) takes the dosed
    RK4 path only with compiled kernels."""
    from progression.fit.estimators.focei import population_layout
    from progression.fit.estimators.saem import _Predictions
    from progression.fit.population._saem_model import RK4Predictions, applicable
    from progression.fit.transforms import to_internal

    cfg = parse_fit_config(ALS, source="als.toml", base_dir=ROOT / "configs")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    designs = designs[:16]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    pop_cols, _, _ = population_layout(problem)
    model = ProblemModel(problem, designs, pop_cols)
    assert applicable(model.problem, model.eval_designs)
    x0 = to_internal(problem.values[pop_cols], problem.scale[pop_cols],
                     problem.lower[pop_cols], problem.upper[pop_cols])
    sdv = np.sqrt([0.45, 0.45, 0.09, 0.01, 0.36])
    n = len(designs)
    sd = np.ones((n, model.n))
    for i, d in enumerate(designs):
        sd[i, :d.n] = np.array([2.0, 0.35, 0.9])[d.obs]
    exact = _Predictions(model)
    fast = RK4Predictions(model)
    rng = np.random.default_rng(1)
    idx = np.arange(n)
    assert fast.calibrate(exact.predict, x0 + sdv * rng.standard_normal((n, 5)), idx, sd)
    assert 0 < fast.h and fast.max_error < 0.01
    idx2 = np.tile(idx, 2)
    phi = x0 + sdv * rng.standard_normal((2 * n, 5))
    f_fast, G = fast.predict(phi, idx2)
    f_ex, _ = exact.predict(phi, idx2)
    assert G.shape == (2 * n, model.n, 5)
    ok = np.isfinite(f_ex).all(axis=1)
    assert ok.sum() >= 2 * n - 1
    err = np.abs(f_fast - f_ex)[ok] / sd[idx2][ok]
    assert err.max() < 0.01, err.max()
    # a time offset beyond twice the calibrated span: a batch of its own, as accurate;
    # beyond 20 spans: a failed evaluation
    far = phi[:3].copy()
    far[0, 4] = np.log(fast.horizon * 1.5)
    far[1, 4] = np.log(fast.horizon * 12.0)
    f_far, _ = fast.predict(far, idx[:3])
    f_ex, _ = exact.predict(far[:1], idx[:1])
    n0 = designs[0].n
    assert np.max(np.abs(f_far[0, :n0] - f_ex[0, :n0]) / sd[0, :n0]) < 0.01
    assert np.all(np.isnan(f_far[1])) and np.all(np.isfinite(f_far[2, :designs[2].n]))
    # Theoph: doses, so the compiled dosed path (tests/test_saem_dosed.py) where the model
    # has kernels, else the exact path
    tcfg = read_fit_config(CONFIG)
    tdesigns, _ = designs_from_cohort(read_data(tcfg), tcfg)
    tproblem = Problem.from_config(tcfg)
    assert applicable(tproblem, tdesigns) == (tproblem.model.kernels is not None)


WEIGHT = """
[parameters.CL.covariates.weight]
effect = "power"
reference = 70.0
value = 0.75
"""


def _structured(options: str = SHORT, extra: str = WEIGHT + '\n[omega]\nblocks = [["ka", "CL"]]\n'):
    """Theoph with a weight effect on CL and an Omega block (ka, CL), read as a focei config
    and handed to saem (the config takes covariate effects and blocks for focei)."""
    import dataclasses

    text = _estimator_free(CONFIG.read_text()).replace(
        "[estimator]\nseed = 1\n", f"[estimator]\nseed = 3\n{options}")
    text = text.replace('estimator = "saem"', 'estimator = "focei"') + extra
    cfg = parse_fit_config(text, source="structured.toml", base_dir=CONFIG.parent)
    return dataclasses.replace(cfg, estimator="saem")


def test_saem_covariate_effect_and_omega_block():
    """A power covariate effect (linear in log CL: the core's regression M-step) and a 2 x 2
    Omega block: the population part in focei's layout (log-Cholesky names, coefficient),
    zeros outside the block, SEs from the stochastic-approximation information mapped to
    those parameters."""
    from progression.fit import fit

    res = fit(_structured())
    pop = res.population
    assert pop.covariance_names == ("theta ka", "theta CL", "theta V", "log L ka", "L CL,ka",
                                    "log L CL", "log omega^2 V", "log conc.a",
                                    "coef CL~weight")
    assert pop.omega[0, 2] == 0.0 and pop.omega[1, 2] == 0.0 and pop.omega[0, 1] != 0.0
    assert set(pop.coefficients) == {"CL~weight"}
    assert np.isfinite(pop.coefficients["CL~weight"])
    assert pop.covariance.shape == (9, 9)
    assert pop.method == "saem" and pop.omega_blocks[0]["parameters"] == ["ka", "CL"]


def test_saem_refuses_a_linear_covariate_effect():
    from progression.errors import ConfigError
    from progression.fit import fit

    cfg = _structured(extra=WEIGHT.replace('"power"', '"linear"').replace("0.75", "0.01"))
    with pytest.raises(ConfigError, match=r"structured\.toml.*parameters\.CL\.covariates\."
                                          r"weight.*saem.*linear.*focei"):
        fit(cfg)


@pytest.mark.slow
def test_saem_structured_agrees_with_focei():
    """Theoph with the weight effect and the (ka, CL) block: SAEM's typical values within
    10% of FOCE-I's, the weight coefficient and Omega within FOCE-I's uncertainty (measured:
    typical values within 1.5%; ~2 min per fit on 2 shared cores)."""
    import dataclasses

    from progression.fit import fit

    cfg = _structured(options="saem_chains = 2\nis_samples = 300\n")
    sa = fit(cfg).population
    fo = fit(dataclasses.replace(cfg, estimator="focei")).population
    for n in NAMES:
        assert sa.fixed_effects[n] == pytest.approx(fo.fixed_effects[n], rel=0.10)
    assert abs(sa.coefficients["CL~weight"] - fo.coefficients["CL~weight"]) < 1.0
    np.testing.assert_allclose(np.diag(sa.omega), np.diag(fo.omega), rtol=0.5)
    assert sa.covariance_names == fo.covariance_names
    assert np.all(np.isfinite(np.diag(sa.covariance)))


def test_saem_on_als_subjects_with_censored_values():
    """The ALS cohort's first 12 patients (CRP values below the assay limit, no doses): a
    short run through fit() takes the RK4 kernel path, imputes the censored values, and
    states both."""
    from progression.fit import fit

    text = ALS + ("[estimator]\nseed = 2\nsaem_exploration = 10\nsaem_smoothing = 6\n"
                  "saem_chains = 1\nis_samples = 100\n")
    cfg = parse_fit_config(text, source="als.toml", base_dir=ROOT / "configs")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    few = designs[:12]
    assert any(np.any(np.asarray(d.cens) != 0) for d in few)
    res = fit(cfg, data=few)
    pop = res.population
    assert pop.method == "saem" and pop.iterations == 16
    assert "fixed-step RK4" in res.individual.diagnostics.numbers_from
    assert np.isfinite(pop.ofv)
    assert set(pop.fixed_effects) == {"k0", "kA", "Tmax", "eD", "time_offset"}


def test_saem_holds_a_fixed_error_parameter(simulated):
    """A fixed residual SD (``a = { value = 0.4, estimate = "fixed" }``) is held by SAEM
    (the core's ``residual_fixed``): not in the estimated sigma, the fit runs; a combined
    error model with one SD fixed and the other estimated is refused, naming both."""
    from progression.errors import ConfigError
    from progression.fit import fit

    base = _config("saem", options=SHORT)
    text = _estimator_free(CONFIG.read_text()).replace(
        "[estimator]\nseed = 1\n", f"[estimator]\nseed = 3\n{SHORT}")
    fixed = text.replace('a = { value = 0.7, estimate = "population", bounds = [0.01, 10.0] }',
                         'a = { value = 0.4, estimate = "fixed" }')
    assert fixed != text
    cfg = parse_fit_config(fixed, source="fixed.toml", base_dir=CONFIG.parent)
    pop = fit(cfg, data=simulated).population
    assert pop.method == "saem" and "conc.a" not in pop.sigma
    assert np.isfinite(pop.ofv)
    free = fit(base, data=simulated).population
    assert free.sigma["conc.a"] != pytest.approx(0.4, abs=1e-6)
    half = fixed.replace('a = { value = 0.4, estimate = "fixed" }',
                         'model = "combined"\na = { value = 0.4, estimate = "fixed" }\n'
                         'b = { value = 0.1, estimate = "population", bounds = [0.001, 1.0] }')
    half = half.replace('model = "additive"\nmodel = "combined"', 'model = "combined"')
    cfg = parse_fit_config(half, source="half.toml", base_dir=CONFIG.parent)
    with pytest.raises(ConfigError, match=r"half\.toml.*saem.*'conc' is combined with "
                                          r"conc\.a fixed"):
        fit(cfg, data=simulated)
