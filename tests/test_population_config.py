"""The population model in the run config (``focei``): covariate effects on typical values
(``[parameters.NAME.covariates.COV]``), Omega blocks (``[omega]``), fixed variances; the
outer gradient's chain rule against finite differences of the OFV; NONMEM's pheno objective
through the config; a full Omega recovered from simulated data and checked against an
independent optimisation of the core objective written here."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit.config import FitParameter, parse_fit_config, read_fit_config
from progression.fit.estimators.focei import FOCEI
from progression.fit.population import Residual, objective
from progression.fit.population._model import (
    CovariateEffect,
    OmegaBlock,
    OmegaModel,
    TypicalModel,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOralHess, pheno  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"
PHENO = ROOT / "configs" / "pheno_population.toml"

COVARIATES = '''
[parameters.CL.covariates.weight]
effect = "power"
reference = 70
value = 0.75
estimate = false

[parameters.V.covariates.weight]
effect = "linear"
reference = 70.0
value = 0.01
bounds = [-0.05, 0.05]

[omega]
blocks = [{ parameters = ["CL", "V"], covariances = [0.01] }]
'''


def _theoph(extra=COVARIATES, **replace):
    text = THEOPH.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return parse_fit_config(text + extra, source="x.toml", base_dir=THEOPH.parent)


def test_config_reads_covariates_and_blocks():
    cfg = _theoph()
    cl, v, ka = cfg.parameter("CL"), cfg.parameter("V"), cfg.parameter("ka")
    assert cl.covariates == (CovariateEffect("CL", "weight", "power", 70.0, (), (0.75,),
                                             (False,), (-math.inf,), (math.inf,)),)
    assert v.covariates[0].effect == "linear" and v.covariates[0].lower == (-0.05,)
    assert cl.omega_block == v.omega_block == OmegaBlock(("CL", "V"), (0.01,), False)
    assert ka.omega_block is None and not ka.eta_fixed
    # fit.json keeps the parameters as dicts (dataclasses.asdict); they load back equal
    for p in (cl, v, ka):
        assert FitParameter(**dataclasses.asdict(p)) == p
    # full = true: one block of every random effect; eta_fixed
    full = _theoph('\n[omega]\nfull = true\n')
    assert full.parameter("ka").omega_block.parameters == ("ka", "CL", "V")
    fixed = _theoph("", **{"eta = 0.6": "eta = 0.6\neta_fixed = true"})
    assert fixed.parameter("ka").eta_fixed


def test_categorical_groups_and_levels():
    eff = read_fit_config(PHENO).parameter("V").covariates[1]
    assert eff.effect == "categorical" and eff.reference == "normal"
    assert eff.levels == ("low",) and eff.values == (0.1,) and eff.estimated == (True,)
    assert eff.lower == (-0.999,)
    assert [eff.category(v) for v in (1, 4.0, 5, 10)] == ["low", "low", "normal", "normal"]
    assert eff.category(11) is None
    # levels from a value table
    cfg = _theoph('''
[parameters.V.covariates.sex]
effect = "categorical"
reference = "F"
value = { M = 0.2 }
''')
    e = cfg.parameter("V").covariates[0]
    assert e.levels == ("M",) and e.values == (0.2,)


def test_designs_carry_baseline_covariates():
    from progression.fit.estimate import read_data
    from progression.fit.problem import designs_from_cohort

    cfg = read_fit_config(PHENO)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    assert len(designs) == 59
    assert dict(designs[0].baseline) == {"WGT": 1.4, "APGR": 7.0}
    cfg = _theoph()
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    assert dict(designs[0].baseline) == {"weight": 79.6}


def _closed_form_state(n=12, seed=4):
    """A FOCEI state around a closed-form model (no ODE): one-compartment oral, phi = log(ka,
    CL, V), analytic second derivatives; weight and sex effects, a (CL, V) block."""
    rng = np.random.default_rng(seed)
    times = [np.array([0.5, 1, 2, 4, 8, 12, 24.0])[: 5 + i % 3] for i in range(n)]
    model = OneCmtOralHess(times, np.full(n, 320.0))
    wt = rng.uniform(50, 90, n)
    sex = np.array(["F", "M"] * (n // 2), dtype=object)
    mu0 = np.log([1.5, 2.8, 32.0])
    eta = rng.multivariate_normal(np.zeros(3), [[0.3, 0, 0], [0, 0.08, 0.03],
                                                [0, 0.03, 0.05]], n)
    mu = mu0 + np.column_stack([np.zeros(n), 0.75 * np.log(wt / 70), np.log(np.where(
        sex == "M", 1.2, 1.0))])
    f, _ = model.predict(mu + eta, np.arange(n))
    from progression.fit.population import PopulationData

    data = PopulationData.from_subjects([f[i, :len(t)] * (1 + 0.1 * rng.standard_normal(
        len(t))) + 0.05 * rng.standard_normal(len(t)) for i, t in enumerate(times)])
    effects = [CovariateEffect("CL", "WT", "power", 70.0, values=(0.6,)),
               CovariateEffect("V", "SEX", "categorical", "F", values=(0.1,)).with_levels(
                   ["M"]),
               CovariateEffect("V", "WT", "exponential", 70.0, values=(0.002,),
                               estimated=(False,))]
    tm = TypicalModel(("ka", "CL", "V"), ["log"] * 3, [0.01] * 3, [100.0, 100, 1000], effects)
    om = OmegaModel.from_blocks(("ka", "CL", "V"), [0.3, 0.1, 0.06],
                                [OmegaBlock(("CL", "V"), (0.02,))])
    s = dict(model=model, data=data, pop_cols=np.arange(3), eta_pos=np.arange(3),
             err=[(0, 0, "a"), (1, 0, "b")], typical=tm, covariates={"WT": wt, "SEX": sex},
             omega_model=om, coef0=tm.initial_coefficients(),
             coef_free=np.array([True, True, False]), eta=None)
    est = FOCEI()
    est._residual = lambda problem, s_, sd: Residual.combined(sd[0], sd[1])
    x0 = np.r_[mu0 + 0.05, om.pack(om.initial), np.log([0.05, 0.1]), 0.6, 0.1]
    return est, s, x0


def test_outer_gradient_chain_rule_matches_finite_differences(monkeypatch):
    """The outer gradient (typical values, covariate coefficients, a 2 x 2 Cholesky block and
    a 1 x 1 log variance, combined error) against central differences of the OFV, with the
    core's default inner tolerance (the estimator's looser one leaves ~5e-5 of noise)."""
    from progression.fit.estimators import focei as focei_module
    from progression.fit.population import InnerOptions

    monkeypatch.setattr(focei_module, "INNER", InnerOptions())
    est, s, x0 = _closed_form_state()
    ofv, g, gi, gr = est._gradient(None, s, x0, warm=False)
    assert np.isfinite(ofv) and g.shape == (11,) and gi.shape == (12, 11)
    np.testing.assert_allclose(gi.sum(axis=0), g)
    h = 1e-5
    fd = np.zeros_like(x0)
    for k in range(x0.size):
        up, dn = x0.copy(), x0.copy()
        up[k] += h
        dn[k] -= h
        fd[k] = (est._gradient(None, s, up, warm=False)[0]
                 - est._gradient(None, s, dn, warm=False)[0]) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
    # the objective is the core's at mu_i and the block Omega
    theta_x, omega, _, sd, coef = est._split(s, x0)
    mu = s["typical"].mu(theta_x, coef, s["covariates"], 12)[0]
    assert omega[1, 2] != 0 and omega[0, 1] == 0
    ref = objective("focei", s["model"], s["data"], mu, omega, Residual.combined(*sd))
    assert ofv == pytest.approx(ref, abs=1e-6)


NM_INITIAL = (np.log([4.69307e-03, 1.00916]), np.log([3.09626e-02, 3.11280e-02]),
              math.sqrt(1.30865e-02), 0.1, 587.36644134661617)
NM_FINAL = (np.log([4.69555e-03, 9.84258e-01]), np.log([2.93508e-02, 2.79060e-02]),
            math.sqrt(1.32410e-02), 1.58920e-01, 586.27605628188053)


@pytest.fixture(scope="module")
def pheno_state():
    from progression.fit.estimate import read_data
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.problem import Problem, designs_from_cohort

    cfg = read_fit_config(PHENO)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    ep = EstimationProblem(problem, designs, cfg.options, None, source=cfg.source)
    est = FOCEI()
    return est, problem, est._setup(ep)


@pytest.mark.parametrize("row", [NM_INITIAL, NM_FINAL], ids=["initial", "final"])
def test_pheno_config_objective_matches_nonmem(pheno_state, row):
    """configs/pheno_population.toml (pk_iv_bolus ODE, dose records, WGT power effects with
    the exponent fixed at 1, APGR < 5 grouped as a categorical effect on V) at NONMEM's
    initial and final estimates gives NONMEM's OFV (pheno_real.ext) to 1e-3."""
    est, problem, s = pheno_state
    assert s["typical"].coefficient_names == ("CL~WGT", "V~WGT", "V~APGR=low")
    assert s["coef_free"].tolist() == [False, False, True]
    theta, om, b, c, published = row
    x = np.r_[theta, om, math.log(b), c]
    ofv = est._gradient(problem, s, x, warm=False)[0]
    assert ofv == pytest.approx(published, abs=1e-3)
    # the same as the hand-written pheno model of the core tests
    model, data, wgt, apgr = pheno()
    mu = np.column_stack([theta[0] + np.log(wgt),
                          theta[1] + np.log(wgt) + np.log(np.where(apgr < 5, 1 + c, 1.0))])
    np.testing.assert_allclose(est._mu(s, theta, np.r_[1.0, 1.0, c])[0], mu, rtol=1e-12)


FULL = '''
[fit]
name = "full_omega"
model = "pk_iv_bolus"
estimator = "focei"

[error.conc]
model = "proportional"
b = { value = 0.15, estimate = "population", bounds = [0.001, 1.0] }

[parameters.dose]
estimate = "fixed"
value = 100.0

[parameters.CL]
estimate = "population"
value = 4.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.05

[parameters.V]
estimate = "population"
value = 60.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.05

[omega]
full = true
'''
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0])
TRUTH = {"theta": np.log([5.0, 50.0]), "omega": np.array([[0.09, 0.045], [0.045, 0.0625]]),
         "b": 0.1}


class _Bolus:
    """conc = dose / V exp(-CL/V t), phi = log(CL, V), closed form with analytic G."""

    def __init__(self, n):
        self.t = np.tile(TIMES, (n, 1))

    def predict(self, phi, index):
        t = self.t[np.asarray(index)]
        cl, v = np.exp(phi[:, :1]), np.exp(phi[:, 1:2])
        k = cl / v
        f = 100.0 / v * np.exp(-k * t)
        return f, np.stack([-f * k * t, f * (k * t - 1.0)], axis=-1)


def test_full_omega_recovered_and_matches_an_independent_optimisation():
    """40 subjects simulated from a known full Omega (correlation 0.6 between log CL and log
    V) and proportional error (seed 21). The focei fit from ``[omega] full = true`` (ODE
    model) recovers the truth within 3 standard errors (estimation scale for the typical
    values; Omega's variances and covariance on their own scale), and agrees with an
    independent optimisation of the core objective written here (closed-form model, BFGS on
    finite differences, Omega through its variances and the correlation's atanh): OFV to
    1e-3, estimates to 1e-3 relative."""
    from scipy.optimize import minimize

    from progression.fit import fit
    from progression.fit.design import Design
    from progression.fit.population import PopulationData

    n = 40
    rng = np.random.default_rng(21)
    eta = rng.multivariate_normal(np.zeros(2), TRUTH["omega"], n)
    model = _Bolus(n)
    f, _ = model.predict(TRUTH["theta"] + eta, np.arange(n))
    eps = rng.standard_normal(f.shape)
    y = f * (1.0 + TRUTH["b"] * eps)
    designs = [Design(f"s{i}", TIMES.copy(), np.zeros(7, dtype=int), y[i], np.zeros(7, int),
                      np.full(7, np.nan)) for i in range(n)]
    cfg = parse_fit_config(FULL, source="full.toml", check_data=False)
    assert cfg.parameter("CL").omega_block.parameters == ("CL", "V")
    res = fit(cfg, data=designs)
    pop = res.population
    assert pop.converged and pop.omega_blocks == ({"parameters": ["CL", "V"], "fixed": False},)
    est = np.log([pop.fixed_effects["CL"], pop.fixed_effects["V"]])
    se = np.array([pop.fixed_effects_se[k] / pop.fixed_effects[k] for k in ("CL", "V")])
    assert np.all(np.abs(est - TRUTH["theta"]) < 3 * se)
    om = pop.omega
    assert abs(om[1, 0] - TRUTH["omega"][1, 0]) < 3 * pop.omega_offdiag_se["V,CL"]
    for e, k in enumerate(("CL", "V")):
        assert abs(om[e, e] - TRUTH["omega"][e, e]) < 3 * pop.omega_se[k]
    # the residual SD against this data set's own draws (their SD is 0.0913 with seed 21,
    # not 0.1; 280 values)
    realised = TRUTH["b"] * eps.std()
    assert abs(pop.sigma["conc.b"] - realised) < 3 * pop.sigma_se["conc.b"]
    # the correlation's SE: delta method by differences of rho(log L CL, L V,CL, log L V)
    names = pop.covariance_names
    assert names[2:5] == ("log L CL", "L V,CL", "log L V")
    p = pop.parameter_vector()[2:5]

    def rho(q):
        low = np.array([[np.exp(q[0]), 0.0], [q[1], np.exp(q[2])]])
        w = low @ low.T
        return w[1, 0] / np.sqrt(w[0, 0] * w[1, 1])

    grad = np.array([(rho(p + h) - rho(p - h)) / 2e-6 for h in np.eye(3) * 1e-6])
    se_rho = np.sqrt(grad @ pop.covariance[2:5, 2:5] @ grad)
    assert pop.omega_correlation_se["V,CL"] == pytest.approx(se_rho, rel=1e-5)
    assert abs(rho(p) - 0.6) < 3 * se_rho
    from progression.fit.report import _population_lines

    table = "\n".join(_population_lines(res))
    assert f"omega V,CL (covariance; correlation {rho(p):.3f}, SE {se_rho:.3g})" in table
    # fit.ext: the block's covariance in OMEGA(2,1), every iteration and its SE
    from progression.fit.population._outputs import ext_table

    ext = ext_table(res)
    assert ext.estimates()[2][1, 0] == pytest.approx(om[1, 0], rel=1e-5)
    assert ext.row(-1000000001)["OMEGA(2,1)"] == pytest.approx(
        pop.omega_offdiag_se["V,CL"], rel=1e-5)
    _, rows = ext.history()
    assert np.all(rows[1:, ext.columns.index("OMEGA(2,1)")] != 0.0)
    # the independent optimisation of the core objective
    data = PopulationData.from_subjects(list(y))

    def ofv(p):
        w = np.exp(p[2:4])
        r = np.tanh(p[4])
        c = r * np.sqrt(w[0] * w[1])
        return objective("focei", model, data, np.tile(p[:2], (n, 1)),
                         np.array([[w[0], c], [c, w[1]]]), Residual.proportional(np.exp(p[5])))

    p0 = np.r_[TRUTH["theta"], np.log(np.diag(TRUTH["omega"])), np.arctanh(0.6),
               np.log(TRUTH["b"])]
    ref = minimize(ofv, p0, method="BFGS", options={"gtol": 1e-6})
    assert pop.ofv == pytest.approx(ref.fun, abs=1e-3)
    w = np.exp(ref.x[2:4])
    c = np.tanh(ref.x[4]) * np.sqrt(w[0] * w[1])
    np.testing.assert_allclose(est, ref.x[:2], rtol=1e-3)
    np.testing.assert_allclose([om[0, 0], om[1, 1], om[1, 0]], [w[0], w[1], c], rtol=1e-3)
    assert pop.sigma["conc.b"] == pytest.approx(np.exp(ref.x[5]), rel=1e-3)


OFFSET = '''
[fit]
name = "offset_eta"
model = "pk_iv_bolus"
estimator = "focei"

[error.conc]
model = "proportional"
b = { value = 0.15, estimate = "population", bounds = [0.001, 1.0] }

[parameters.dose]
value = 100.0

[parameters.V]
value = 50.0

[parameters.CL]
estimate = "population"
value = 4.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.05

[parameters.time_offset]
estimate = "population"
value = 1.0
bounds = [-2.0, 6.0]
eta = 0.2
'''


def test_time_offset_with_a_random_effect(monkeypatch):
    """The per-subject time shift as a population parameter with a random effect (model time
    = data time + offset_i, offset_i = theta + eta_i): the outer gradient through the fit's
    ODE model matches central differences of the OFV, and 30 subjects simulated with offsets
    N(2, 0.5) (seed 1) give back the typical offset and its variance within 3 SE."""
    from progression.fit import fit
    from progression.fit.design import Design
    from progression.fit.estimators import focei as focei_module
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.population import InnerOptions
    from progression.fit.problem import Problem

    cfg = parse_fit_config(OFFSET, source="offset.toml", check_data=False)
    off = cfg.parameter("time_offset")
    assert off.estimate == "population" and off.eta == 0.2
    n = 30
    rng = np.random.default_rng(1)
    times = np.array([1.0, 2.0, 4.0, 8.0, 12.0, 24.0])
    eta = rng.standard_normal((n, 2)) * np.sqrt([0.1, 0.5])
    cl, shift = 5.0 * np.exp(eta[:, 0]), 2.0 + eta[:, 1]
    f = 100.0 / 50.0 * np.exp(-(cl / 50.0)[:, None] * (times[None] + shift[:, None]))
    y = f * (1.0 + 0.1 * rng.standard_normal(f.shape))
    designs = [Design(f"s{i}", times.copy(), np.zeros(6, dtype=int), y[i],
                      np.zeros(6, dtype=int), np.full(6, np.nan)) for i in range(n)]
    # the gradient with respect to the offset's typical value and variance
    monkeypatch.setattr(focei_module, "INNER", InnerOptions())
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    est = FOCEI()
    s = est._setup(EstimationProblem(problem, designs[:8], cfg.options, None,
                                     source="offset.toml"))
    x0 = s["x0"] + 0.1
    g = est._gradient(problem, s, x0, warm=False)[1]
    h = 1e-3      # larger steps would meet the truncation error, smaller the ODE noise
    for k in range(x0.size):
        up, dn = x0.copy(), x0.copy()
        up[k] += h
        dn[k] -= h
        fd = (est._gradient(problem, s, up, warm=False)[0]
              - est._gradient(problem, s, dn, warm=False)[0]) / (2 * h)
        assert g[k] == pytest.approx(fd, rel=1e-4, abs=1e-5), k
    monkeypatch.undo()
    pop = fit(cfg, data=designs).population
    assert pop.converged and pop.omega_names == ("CL", "time_offset")
    assert abs(pop.fixed_effects["time_offset"] - 2.0) < 3 * pop.fixed_effects_se["time_offset"]
    assert abs(pop.omega[1, 1] - 0.5) < 3 * pop.omega_se["time_offset"]
    assert pop.scales["time_offset"] == "linear"


def _bolus_designs(n=40, seed=21):
    from progression.fit.design import Design

    rng = np.random.default_rng(seed)
    eta = rng.multivariate_normal(np.zeros(2), TRUTH["omega"], n)
    f, _ = _Bolus(n).predict(TRUTH["theta"] + eta, np.arange(n))
    y = f * (1.0 + TRUTH["b"] * rng.standard_normal(f.shape))
    return [Design(f"s{i}", TIMES.copy(), np.zeros(7, dtype=int), y[i], np.zeros(7, int),
                   np.full(7, np.nan)) for i in range(n)]


def test_fixed_variance_and_fixed_block():
    """``eta_fixed = true`` keeps a variance at its value (not estimated, no SE, not among
    the covariance step's parameters); a fixed block keeps its whole matrix."""
    from progression.fit import fit

    designs = _bolus_designs()
    text = FULL.replace("[omega]\nfull = true\n", "").replace(
        "eta = 0.05\n\n[omega]", "eta = 0.05\n[omega]")
    assert text.count("eta = 0.05") == 2
    fixed_v = text[::-1].replace("eta = 0.05"[::-1], "eta = 0.0625\neta_fixed = true"[::-1],
                                 1)[::-1]
    pop = fit(parse_fit_config(fixed_v, source="f.toml", check_data=False),
              data=designs).population
    assert pop.omega[1, 1] == 0.0625 and pop.omega[0, 1] == 0.0
    assert "log omega^2 V" not in pop.covariance_names and pop.n_parameters == 4
    assert math.isnan(pop.omega_se["V"]) and pop.omega_se["CL"] > 0
    assert pop.omega_blocks[1] == {"parameters": ["V"], "fixed": True}
    block = text + ('\n[omega]\nblocks = [{ parameters = ["CL", "V"], covariances = [0.045], '
                    'fixed = true }]\n')
    block = block.replace("eta = 0.05", "eta = 0.09", 1).replace("eta = 0.05", "eta = 0.0625")
    pop = fit(parse_fit_config(block, source="b.toml", check_data=False),
              data=designs).population
    np.testing.assert_array_equal(pop.omega, TRUTH["omega"])
    assert pop.n_parameters == 3 and pop.covariance_names == ("theta CL", "theta V",
                                                              "log conc.b")
    assert math.isnan(pop.omega_offdiag_se["V,CL"])
    # the draw API leaves fixed elements alone
    moved = pop.with_parameters(pop.parameter_vector() + 0.1)
    np.testing.assert_array_equal(moved.omega, TRUTH["omega"])


COVARIATE_FIT = FULL.replace("[omega]\nfull = true\n", '''
[parameters.CL.covariates.WT]
effect = "power"
reference = 70.0
value = 0.5

[parameters.V.covariates.AGE]
effect = "exponential"
reference = 50.0
value = 0.0
''')


def test_estimated_covariate_effects_match_an_independent_optimisation():
    """40 subjects (seed 5) with CL = 5 (WT/70)^0.75 and V = 50 exp(0.01 (AGE - 50)),
    diagonal Omega, proportional error; the covariate values reach the fit through the
    designs' baseline. The focei fit's estimates (typical values, exponents, Omega, SD) equal
    an independent BFGS optimisation of the core objective (closed form, mu written here) to
    1e-3, and the exponents lie within 3 SE of the truth."""
    from scipy.optimize import minimize

    from progression.fit import fit
    from progression.fit.design import Design
    from progression.fit.population import PopulationData

    n = 40
    rng = np.random.default_rng(5)
    wt, age = rng.uniform(45, 110, n), rng.uniform(25, 80, n)
    cov_mu = np.column_stack([0.75 * np.log(wt / 70), 0.01 * (age - 50)])
    eta = rng.standard_normal((n, 2)) * np.sqrt([0.09, 0.0625])
    model = _Bolus(n)
    f, _ = model.predict(TRUTH["theta"] + cov_mu + eta, np.arange(n))
    y = f * (1.0 + TRUTH["b"] * rng.standard_normal(f.shape))
    designs = [Design(f"s{i}", TIMES.copy(), np.zeros(7, dtype=int), y[i], np.zeros(7, int),
                      np.full(7, np.nan), baseline=(("WT", wt[i]), ("AGE", age[i])))
               for i in range(n)]
    pop = fit(parse_fit_config(COVARIATE_FIT, source="c.toml", check_data=False),
              data=designs).population
    assert pop.converged and pop.covariate_names == ("WT", "AGE")
    c = np.array([pop.coefficients["CL~WT"], pop.coefficients["V~AGE"]])
    c_se = np.array([pop.coefficients_se["CL~WT"], pop.coefficients_se["V~AGE"]])
    assert np.all(np.abs(c - [0.75, 0.01]) < 3 * c_se)
    data = PopulationData.from_subjects(list(y))

    def ofv(p):
        mu = np.column_stack([p[0] + p[5] * np.log(wt / 70), p[1] + p[6] * (age - 50)])
        v = objective("focei", model, data, mu, np.diag(np.exp(p[2:4])),
                      Residual.proportional(np.exp(p[4])))
        return v if np.isfinite(v) else 1e10     # BFGS's difference steps far out

    p0 = np.r_[TRUTH["theta"], np.log([0.09, 0.0625]), np.log(0.1), 0.75, 0.01]
    ref = minimize(ofv, p0, method="BFGS", options={"gtol": 1e-6})
    assert pop.ofv == pytest.approx(ref.fun, abs=1e-3)
    got = np.r_[np.log([pop.fixed_effects["CL"], pop.fixed_effects["V"]]),
                np.log(np.diag(pop.omega)), np.log(pop.sigma["conc.b"]), c]
    np.testing.assert_allclose(got, ref.x, rtol=2e-3, atol=2e-4)
    # the draw API reproduces the subjects' typical values
    tv = pop.typical_values(pop.subject_covariates)
    np.testing.assert_allclose(np.log(tv["CL"]), got[0] + c[0] * np.log(wt / 70), rtol=1e-10)


LONG = '''
[fit]
model = "als_reduced"
estimator = "focei"

[data]
path = "{data}"

[error.ALSFRS_R]
model = "additive"
a = {{ value = 2.0, estimate = "population" }}

[parameters.k0]
estimate = "population"
scale = "log"
eta = 0.3

[parameters.k0.covariates.sex]
effect = "categorical"
reference = "female"
value = 0.2

[parameters.k0.covariates.age]
effect = "linear"
reference = "median"
value = 0.01

[parameters.kA]
estimate = "population"
scale = "log"
'''


def test_text_categories_and_baseline_values_from_a_covariates_file(tmp_path):
    """Baseline covariates of a long-format file's covariates table reach the designs; text
    categories (sex) resolve to one level besides the reference; ``reference = "median"``
    becomes the subjects' median; a subject without the covariate is refused by name."""
    import shutil

    from progression.errors import DataError
    from progression.fit.estimate import read_data
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.estimators.focei import _covariate_model
    from progression.fit.problem import Problem, designs_from_cohort

    src = ROOT / "data" / "examples"
    cfg = parse_fit_config(LONG.format(data=src / "long.csv"), source="long.toml")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    base = dict(designs[0].baseline)
    assert base == {"sex": "male", "age": 61}
    ep = EstimationProblem(Problem.from_config(cfg), designs, cfg.options, None,
                           source="long.toml")
    covariates, effects = _covariate_model(ep, [cfg.parameter("k0")])
    assert effects[0].levels == ("male",) and effects[0].values == (0.2,)
    # reference = "median": the subjects' median age, computed when the fit starts
    assert cfg.parameter("k0").covariates[1].reference == "median"
    assert effects[1].reference == float(np.median(covariates["age"]))
    assert covariates["age"].dtype == float and covariates["sex"][1] == "female"
    # a subject without its age
    for name in ("long.csv", "long.toml", "long_events.csv"):
        shutil.copy(src / name, tmp_path / name)
    rows = (src / "long_covariates.csv").read_text().splitlines()
    rows[2] = rows[2].replace(",67,", ",,")
    (tmp_path / "long_covariates.csv").write_text("\n".join(rows) + "\n")
    cfg = parse_fit_config(LONG.format(data=tmp_path / "long.csv"), source="long.toml")
    with pytest.raises(DataError, match=r"subject 'P02': covariate 'age'.*missing"):
        designs_from_cohort(read_data(cfg), cfg)


TV_MODEL = '''
[model]
name = "pk_bolus_tv_weight"
description = "One-compartment IV bolus, CL = CL_pop (WT/70)^theta_wt with time-varying WT."
time_unit = "hour"

[parameters.CL_pop]
value = 5.0
bounds = [0.1, 100.0]

[parameters.V_pop]
value = 50.0
bounds = [1.0, 500.0]

[parameters.theta_wt]
value = 0.75
bounds = [-3.0, 3.0]

[covariates.WT]
value = 70.0
interpolation = "locf"

[states.A_c]
initial = 0.0

[expressions]
CL = "CL_pop * (WT / 70) ** theta_wt"

[equations]
A_c = "-(CL / V_pop) * A_c"

[observables.conc]
expression = "A_c / V_pop"

[dosing.A_c]
cmt = 1
'''
TV_CONFIG = '''
[fit]
model = "{model}"
estimator = "focei"

[error.conc]
model = "proportional"
b = {{ value = 0.15, estimate = "population", bounds = [0.001, 1.0] }}

[parameters.CL_pop]
estimate = "population"
value = 4.0
scale = "log"
eta = 0.05

[parameters.V_pop]
estimate = "population"
value = 60.0
scale = "log"
eta = 0.05

[parameters.theta_wt]
estimate = "population"     # a typical value without a random effect
value = 0.3
scale = "linear"
'''


def test_time_varying_covariate_effect_through_the_model(tmp_path):
    """A time-varying covariate effect is written in the model (``[covariates.WT]`` and
    ``CL = CL_pop (WT/70)^theta_wt`` in its expressions) with the exponent a population
    parameter without a random effect: 30 subjects whose weight changes at 24 h (seed 8)
    give back theta_wt = 0.75 within 3 SE (measured: 0.781, SE 0.017)."""
    from progression.fit import fit
    from progression.fit.design import Design
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.problem import Problem
    from progression.simulate._dosing import Dose

    model_path = tmp_path / "tv_model.toml"
    model_path.write_text(TV_MODEL)
    cfg = parse_fit_config(TV_CONFIG.format(model=model_path), source="tv.toml",
                           check_data=False)
    n = 30
    rng = np.random.default_rng(8)
    times = np.array([1.0, 4.0, 12.0, 23.0, 26.0, 30.0, 36.0, 48.0])
    w0 = rng.uniform(40, 100, n)
    designs = [Design(f"s{i}", times.copy(), np.zeros(8, dtype=int), np.ones(8),
                      np.zeros(8, dtype=int), np.full(8, np.nan),
                      doses=(Dose(0.0, 100.0), Dose(24.0, 100.0)), dose_records=True,
                      covariates=(("WT", np.array([0.0, 24.0]),
                                   np.array([w0[i], 0.6 * w0[i]])),))
               for i in range(n)]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index(k) for k in ("CL_pop", "V_pop", "theta_wt")])
    eta = rng.standard_normal((n, 2)) * np.sqrt([0.09, 0.0625])
    phi = np.column_stack([np.log(5.0) + eta[:, 0], np.log(50.0) + eta[:, 1],
                           np.full(n, 0.75)])
    f, _ = ProblemModel(problem, designs, cols).predict(phi, np.arange(n))
    sim = [d.with_values(f[i] * (1.0 + 0.1 * rng.standard_normal(8)))
           for i, d in enumerate(designs)]
    pop = fit(cfg, data=sim).population
    assert pop.converged and pop.omega_names == ("CL_pop", "V_pop")
    est, se = pop.fixed_effects["theta_wt"], pop.fixed_effects_se["theta_wt"]
    assert abs(est - 0.75) < 3 * se and se < 0.3, (est, se)


def test_covariance_step_names_the_unidentified_parameter(tmp_path):
    """A covariate exponent the data cannot inform (every subject weighs 70 kg, so (WT/70)^c
    is 1 for any c): R is singular and the covariance step's warning names the direction's
    parameter (NONMEM-style diagnosis), without standard errors."""
    from progression.fit import fit
    from progression.fit.design import Design
    from progression.simulate._dosing import Dose

    model_path = tmp_path / "tv_model.toml"
    model_path.write_text(TV_MODEL)
    cfg = parse_fit_config(TV_CONFIG.format(model=model_path), source="tv.toml",
                           check_data=False)
    rng = np.random.default_rng(2)
    times = np.array([1.0, 4.0, 12.0, 24.0])
    designs = []
    for i in range(12):
        cl = 5.0 * np.exp(0.3 * rng.standard_normal())
        v = 50.0 * np.exp(0.2 * rng.standard_normal())
        y = 100 / v * np.exp(-cl / v * times) * (1 + 0.1 * rng.standard_normal(4))
        designs.append(Design(f"s{i}", times.copy(), np.zeros(4, dtype=int), y,
                              np.zeros(4, dtype=int), np.full(4, np.nan),
                              doses=(Dose(0.0, 100.0),), dose_records=True,
                              covariates=(("WT", np.zeros(1), np.array([70.0])),)))
    res = fit(cfg, data=designs)
    text = " ".join(res.warnings)
    assert "covariance step failed" in text and "theta theta_wt" in text, text
    assert "not positive definite" in text or "singular" in text
    assert np.isnan(res.population.fixed_effects_se["theta_wt"])
