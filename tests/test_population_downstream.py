"""A population fit downstream: new virtual patients from the fitted population (Omega, the
covariate distribution), parameter uncertainty from the covariance step kept apart (common
random numbers), ``pg.compare``, ``VirtualTrial``, compare configs, save/load and pickling.

Two kinds of fits:

* ``als_pop``: a fit of als_reduced to 4 simulated subjects with every parameter fixed (no
  estimation, < 1 s) carrying a population part written here with known typical values, a
  full Omega block, a random effect on the time offset and a known covariance step, so that
  the draws can be checked against the numbers that made them;
* ``theoph``: a real FOCE-I fit of R's Theoph (configs/theoph_population.toml, started at
  nlmixr2's optimum so it takes ~30 s, once for the module).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.fit import fit as run_fit
from progression.fit import load_fit, parse_fit_config
from progression.fit._draws import omega_factor
from progression.fit.parts import PopulationPart
from progression.virtual.population import VirtualPopulation

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import config_text, simulate_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"

#: The known population of ``als_pop``: typical values (natural scale), Omega (kA and eD
#: correlated on the log scale; the time offset on its own, months^2).
TV = {"kA": 0.0338, "eD": 0.341, "time_offset": 24.0}
SD = np.array([0.3, 0.2])
CORR = 0.5
OMEGA = np.array([[SD[0] ** 2, CORR * SD[0] * SD[1], 0.0],
                  [CORR * SD[0] * SD[1], SD[1] ** 2, 0.0],
                  [0.0, 0.0, 9.0]])
NAMES = ("theta kA", "theta eD", "theta time_offset", "log L kA", "L eD,kA", "log L eD",
         "log omega^2 time_offset", "log ALSFRS_R.a")
#: The covariance step of ``als_pop`` (estimation scales, ``NAMES`` order).
COV_SD = np.array([0.1, 0.08, 1.0, 0.1, 0.05, 0.1, 0.15, 0.05])
COV = np.diag(COV_SD ** 2)
COV[0, 1] = COV[1, 0] = 0.4 * COV_SD[0] * COV_SD[1]
COV[3, 6] = COV[6, 3] = -0.3 * COV_SD[3] * COV_SD[6]


def als_part(**changes) -> PopulationPart:
    base = dict(
        fixed_effects=dict(TV), fixed_effects_se={}, omega_names=("kA", "eD", "time_offset"),
        omega=OMEGA.copy(), sigma={"ALSFRS_R.a": 1.0}, ebes=np.zeros((4, 3)), shrinkage={},
        method="focei", covariance=COV.copy(), covariance_names=NAMES,
        covariance_method="known (the test's)",
        scales={"kA": "log", "eD": "log", "time_offset": "linear"},
        bounds={"kA": (0.005, 0.09), "eD": (0.05, 5.0), "time_offset": (0.0, 60.0)},
        omega_blocks=({"parameters": ["kA", "eD"], "fixed": False},
                      {"parameters": ["time_offset"], "fixed": False}))
    base.update(changes)
    return PopulationPart(**base)


@pytest.fixture(scope="module")
def als_fixed():
    cohort, _ = simulate_cohort(4, seed=2, visits=[0, 3, 6, 9])
    cfg = parse_fit_config(config_text(free=(), offset="fixed"), name="als_fixed",
                           check_data=False)
    return run_fit(cfg, data=cohort)


@pytest.fixture(scope="module")
def als_pop(als_fixed):
    return dataclasses.replace(als_fixed, name="als_pop", population=als_part())


@pytest.fixture(scope="module")
def theoph():
    """The FOCE-I fit of Theoph, started at nlmixr2's optimum (OFV 116.8034)."""
    text = THEOPH.read_text()
    for old, new in (("value = 1.5683", "value = 1.5902"), ("value = 2.7183", "value = 2.7515"),
                     ("value = 31.500", "value = 31.809"), ("eta = 0.6", "eta = 0.4024"),
                     ("eta = 0.3", "eta = 0.0691"), ("eta = 0.1", "eta = 0.01916"),
                     ("value = 0.7,", "value = 0.6944,")):
        assert old in text, old
        text = text.replace(old, new)
    cfg = parse_fit_config(text, source=str(THEOPH), base_dir=THEOPH.parent)
    res = run_fit(cfg)
    assert res.population is not None and res.population.ofv == pytest.approx(116.8034,
                                                                              abs=0.01)
    return res


@pytest.fixture(scope="module")
def theoph_saem():
    """A short SAEM run on Theoph (15 + 10 iterations, 1 chain per subject; ~8 s): the
    mechanics of a SAEM fit downstream, not its numbers."""
    config = ROOT / "configs" / "theoph_population_saem.toml"
    text = "\n".join(line for line in config.read_text().splitlines()
                     if not line.startswith(("saem_", "is_samples"))) + "\n"
    text = text.replace("[estimator]\n", "[estimator]\nsaem_exploration = 15\n"
                        "saem_smoothing = 10\nsaem_chains = 1\nis_samples = 100\n")
    return run_fit(parse_fit_config(text, source=str(config), base_dir=config.parent))


def conc_endpoints():
    return pg.Endpoints(function="conc", threshold=2.0)


HALF_KA = pg.Intervention(scale={"kA": 0.5}, label="half kA")
SCENARIOS = {"none": [], "half CL": [pg.Intervention(scale={"CL": 0.5}, label="half CL")]}


# ------------------------------------------------------------------ (1) new patients


def test_new_patients_reproduce_typical_values_and_omega(als_pop):
    """20,000 patients: median = typical value (log-normal), covariance of the log values =
    Omega, the offset's mean and variance; quantities outside the population model keep the
    fit's values. Tolerances: 4 Monte Carlo standard errors (median of a normal: 1.2533
    sd / sqrt(n); a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n))."""
    n = 20_000
    vp = VirtualPopulation.from_fit(als_pop, n=n, seed=11)
    model = als_pop.model
    P = vp.subject_parameters
    assert P.shape == (n, model.n_parameters) and vp.time_offsets.shape == (n,)
    logs = np.log(P[:, [model.parameter_index("kA"), model.parameter_index("eD")]])
    med = np.median(logs, axis=0)
    np.testing.assert_array_less(np.abs(med - np.log([TV["kA"], TV["eD"]])),
                                 4 * 1.2533 * SD / math.sqrt(n))
    x = np.column_stack([logs, vp.time_offsets])
    emp = np.cov(x.T)
    se = np.sqrt((np.outer(np.diag(OMEGA), np.diag(OMEGA)) + OMEGA ** 2) / n)
    np.testing.assert_array_less(np.abs(emp - OMEGA), 4 * se)
    assert abs(vp.time_offsets.mean() - TV["time_offset"]) < 4 * 3.0 / math.sqrt(n)
    # each patient's own survival score of the model's hazard (held by the fit): N(0, 1)
    zd = P[:, model.parameter_index("z_death")]
    assert abs(zd.mean()) < 4 / math.sqrt(n) and abs(zd.std() - 1) < 4 / math.sqrt(2 * n)
    assert abs(np.corrcoef(zd, logs[:, 0])[0, 1]) < 4 / math.sqrt(n)
    # every other model parameter at the fit's (fixed) value
    others = [j for j, name in enumerate(model.parameter_names)
              if name not in ("kA", "eD", "z_death")]
    np.testing.assert_array_equal(P[:, others],
                                  np.broadcast_to(als_pop.theta[0, others], (n, len(others))))
    assert "20000 new patients drawn from the population fit 'als_pop'" in vp.description


def test_patients_are_cholesky_of_omega_times_their_normals(als_pop):
    """Each patient is exactly ``mu + L z`` (L L' = Omega) on the estimation scales."""
    vp = VirtualPopulation.from_fit(als_pop, n=50, seed=2)
    L = np.linalg.cholesky(OMEGA)
    eta = vp.patients.z @ L.T
    model = als_pop.model
    np.testing.assert_allclose(np.log(vp.subject_parameters[:, model.parameter_index("kA")]),
                               math.log(TV["kA"]) + eta[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.log(vp.subject_parameters[:, model.parameter_index("eD")]),
                               math.log(TV["eD"]) + eta[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(vp.time_offsets, TV["time_offset"] + eta[:, 2], atol=1e-12)
    np.testing.assert_array_equal(omega_factor(OMEGA), L)
    # a singular Omega (a variance fixed at 0) still factors, and that effect stays 0
    sing = OMEGA.copy()
    sing[1, :] = sing[:, 1] = 0.0
    Ls = omega_factor(sing)
    np.testing.assert_allclose(Ls @ Ls.T, sing, atol=1e-10)
    assert np.all(Ls[1] == 0.0)


def _covariate_table(k=300, seed=4):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal((2, k))
    age = 60.0 + 10.0 * z1
    weight = 70.0 * np.exp(0.2 * (0.9 * z1 + math.sqrt(1 - 0.81) * z2))
    return {"weight": weight, "age": age}


COVARIATE_EFFECTS = (
    {"parameter": "kA", "covariate": "weight", "effect": "power", "reference": 70.0,
     "levels": [], "values": [0.75], "estimated": [True], "lower": [None], "upper": [None]},
    {"parameter": "eD", "covariate": "age", "effect": "exponential", "reference": 60.0,
     "levels": [], "values": [0.02], "estimated": [True], "lower": [None], "upper": [None]})


def test_covariates_resampled_jointly_keep_their_correlation(als_pop):
    """Covariate effects (power on kA, exponential on eD): each patient's values are the
    typical value times its covariates' factors plus its random effect, exactly; weight and
    age come from the same row (their correlation, 0.9 in the table, survives in the
    patients; independent resampling would give 0)."""
    part = als_part(covariate_effects=COVARIATE_EFFECTS,
                    coefficients={"kA~weight": 0.75, "eD~age": 0.02})
    fit = dataclasses.replace(als_pop, population=part)
    table = _covariate_table()
    vp = VirtualPopulation.from_fit(fit, n=4000, seed=5, covariates=table)
    w, a = table["weight"][vp.patients.rows], table["age"][vp.patients.rows]
    eta = vp.patients.z @ np.linalg.cholesky(OMEGA).T
    model = fit.model
    np.testing.assert_allclose(
        np.log(vp.subject_parameters[:, model.parameter_index("kA")]),
        math.log(TV["kA"]) + 0.75 * np.log(w / 70.0) + eta[:, 0], atol=1e-12)
    np.testing.assert_allclose(
        np.log(vp.subject_parameters[:, model.parameter_index("eD")]),
        math.log(TV["eD"]) + 0.02 * (a - 60.0) + eta[:, 1], atol=1e-12)
    r_table = np.corrcoef(np.log(table["weight"]), table["age"])[0, 1]
    r_drawn = np.corrcoef(np.log(w), a)[0, 1]
    assert r_table > 0.85
    # 4000 draws: the SE of a correlation near 0.9 is (1 - r^2)/sqrt(n) ~ 0.003
    assert abs(r_drawn - r_table) < 0.02
    assert "covariates weight, age from the given covariate table (300 rows" in vp.description


def test_fitted_subjects_covariates_are_the_default(als_pop):
    """Without a table, the fitted subjects' baseline covariates (Design.baseline) are
    resampled, one subject's set per patient."""
    part = als_part(covariate_effects=COVARIATE_EFFECTS[:1], coefficients={"kA~weight": 0.75})
    weights = [55.0, 70.0, 85.0, 100.0]
    designs = [dataclasses.replace(d, baseline=(("weight", w),))
               for d, w in zip(als_pop.designs, weights, strict=True)]
    fit = dataclasses.replace(als_pop, population=part, designs=designs)
    vp = VirtualPopulation.from_fit(fit, n=400, seed=6)
    w = np.array(weights)[vp.patients.rows]
    assert set(np.unique(w)) == set(weights)
    np.testing.assert_array_equal(vp.patients.rows, vp.patients.subjects)
    eta = vp.patients.z @ np.linalg.cholesky(OMEGA).T
    np.testing.assert_allclose(
        np.log(vp.subject_parameters[:, fit.model.parameter_index("kA")]),
        math.log(TV["kA"]) + 0.75 * np.log(w / 70.0) + eta[:, 0], atol=1e-12)
    assert "from the 4 fitted subjects (resampled jointly per subject)" in vp.description


def test_reloaded_covariate_fit_draws_the_same_patients(als_pop, tmp_path):
    """The fitted subjects' covariates travel in the population part
    (PopulationPart.subject_covariates, saved in fit.json): a saved and reloaded covariate
    fit draws exactly the same new patients with the same seed."""
    weights = [55.0, 70.0, 85.0, 100.0]
    part = als_part(covariate_effects=COVARIATE_EFFECTS[:1], coefficients={"kA~weight": 0.75},
                    subject_covariates={"weight": weights})
    fit = dataclasses.replace(als_pop, name="als_weight", population=part)
    back = load_fit(fit.save(tmp_path / "fit", figures=False))
    assert back.population.subject_covariates == {"weight": weights}
    a = VirtualPopulation.from_fit(fit, n=200, seed=8)
    b = VirtualPopulation.from_fit(back, n=200, seed=8)
    np.testing.assert_array_equal(a.subject_parameters, b.subject_parameters)
    np.testing.assert_array_equal(a.time_offsets, b.time_offsets)
    np.testing.assert_array_equal(a.parameter_draws(5, 3).parameters,
                                  b.parameter_draws(5, 3).parameters)
    w = np.array(weights)[b.patients.rows]
    eta = b.patients.z @ np.linalg.cholesky(OMEGA).T
    np.testing.assert_allclose(
        np.log(b.subject_parameters[:, fit.model.parameter_index("kA")]),
        math.log(TV["kA"]) + 0.75 * np.log(w / 70.0) + eta[:, 0], atol=1e-12)


def test_offsets_without_a_random_effect_are_the_fitted_subjects(als_pop):
    """A population model without time_offset: each patient carries its fitted subject's
    offset (here the fit's fixed 24 months plus nothing)."""
    part = als_part(fixed_effects={"kA": TV["kA"], "eD": TV["eD"]}, omega_names=("kA", "eD"),
                    omega=OMEGA[:2, :2].copy(), covariance=COV[np.ix_([0, 1, 3, 4, 5, 7],
                                                                       [0, 1, 3, 4, 5, 7])],
                    covariance_names=tuple(NAMES[i] for i in (0, 1, 3, 4, 5, 7)),
                    ebes=np.zeros((4, 2)),
                    omega_blocks=({"parameters": ["kA", "eD"], "fixed": False},))
    fit = dataclasses.replace(als_pop, population=part)
    vp = VirtualPopulation.from_fit(fit, n=30, seed=1)
    np.testing.assert_array_equal(vp.time_offsets, fit.time_offsets[vp.patients.subjects])
    d = vp.parameter_draws(5, 2)
    np.testing.assert_array_equal(d.offsets, np.broadcast_to(vp.time_offsets, (5, 30)))


def test_anchor_clock_for_new_patients(als_pop):
    """anchor = clinical_onset, delay 12: each patient's data time 0 is its own onset under
    its own parameters plus 12 months (checked by simulating it at rtol 1e-10; the draws
    integrate at the default rtol 1e-6, hence rtol 1e-5), also in every parameter draw."""
    model = als_pop.model
    vp = VirtualPopulation.from_fit(als_pop, n=20, seed=4, anchor="clinical_onset",
                                    delay=12.0)
    tight = {"rtol": 1e-10, "atol": 1e-12}
    sim = pg.simulate(model, vp.subject_parameters, [0.0, 240.0], **tight)
    np.testing.assert_allclose(vp.time_offsets, sim.event_time("clinical_onset") + 12.0,
                               rtol=1e-5)
    assert "data time 0 = clinical_onset + 12.0" in vp.description
    d = vp.parameter_draws(3, 1)
    for k in range(3):
        sim_k = pg.simulate(model, d.parameters[k], [0.0, 240.0], **tight)
        np.testing.assert_allclose(d.offsets[k], sim_k.event_time("clinical_onset") + 12.0,
                                   rtol=1e-5)
    assert not np.allclose(d.offsets[0], vp.time_offsets)
    sub = vp.subset([3, 1])
    # (a batch of 2 integrates at the solver's tolerance like the batch of 20)
    np.testing.assert_allclose(sub.parameter_draws(3, 1).offsets, d.offsets[:, [3, 1]],
                               rtol=1e-5)


# ------------------------------------------------------------------ (2) parameter uncertainty


def test_parameter_draws_have_the_covariance_and_the_same_patients(als_pop):
    """Population parameters drawn from N(estimate, covariance step) on their estimation
    scales (empirical covariance of 4000 draws within 4 SE of the given one); every draw
    evaluates the same patients: each patient's standardised random effects are its own
    normal numbers in every draw (common random numbers)."""
    vp = VirtualPopulation.from_fit(als_pop, n=40, seed=3)
    n = 4000
    d = vp.parameter_draws(n, 5)
    assert d.parameters.shape == (n, 40, als_pop.model.n_parameters)
    assert d.offsets.shape == (n, 40) and d.population.shape == (n, len(NAMES))
    emp = np.cov(d.population.T)
    se = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV ** 2) / n)
    np.testing.assert_array_less(np.abs(emp - COV), 4 * se + 1e-15)
    np.testing.assert_array_less(np.abs(d.population.mean(axis=0)
                                        - als_pop.population.parameter_vector()),
                                 4 * COV_SD / math.sqrt(n))
    model = als_pop.model
    jk = model.parameter_index("kA")
    for k in range(0, n, 97):
        part = als_pop.population.with_parameters(d.population[k])
        L = np.linalg.cholesky(part.omega)
        ka = part.fixed_effects["kA"]
        np.testing.assert_allclose((np.log(d.parameters[k, :, jk]) - math.log(ka)) / L[0, 0],
                                   vp.patients.z[:, 0], atol=1e-9)
        np.testing.assert_allclose(d.offsets[k], part.fixed_effects["time_offset"]
                                   + vp.patients.z @ L[2], atol=1e-9)
    # BSV at the estimates is the population's own table, not one of the draws
    assert not np.allclose(d.parameters[0], vp.subject_parameters)
    assert any("same 40 patients" in note for note in d.notes)


def test_no_covariance_step_holds_the_population_parameters(als_pop):
    part = als_part(covariance=np.full((len(NAMES), len(NAMES)), np.nan))
    vp = VirtualPopulation.from_fit(dataclasses.replace(als_pop, population=part), n=10,
                                    seed=1)
    d = vp.parameter_draws(3, 1)
    for k in range(3):
        np.testing.assert_array_equal(d.parameters[k], vp.subject_parameters)
    assert d.undetermined == list(NAMES)
    assert any(n.startswith("no covariance step") for n in d.notes)


@pytest.mark.parametrize("which", ["theoph", "theoph_saem"])
def test_fitted_subjects_draw_from_their_conditional_covariance(which, request):
    """On the fitted subjects (the default source) the parameter uncertainty of a population
    fit (FOCE-I: the EBE's (Omega^-1 + information)^-1; SAEM: the chains' conditional
    covariance) is each subject's conditional covariance: 4000 draws reproduce its block
    (4 SE) around the subject's estimate, and the block is below Omega (the data add
    information to the prior)."""
    theoph = request.getfixturevalue(which)
    n = 4000
    draws = theoph.parameter_draws(n, rng=1)
    omega = theoph.population.omega
    for i in (0, 5, 11):
        names, block = theoph.covariance(i)
        assert names[:3] == ("ka", "CL", "V")
        C = block[:3, :3]
        cols = [theoph.parameter_names.index(k) for k in ("ka", "CL", "V")]
        x = np.log(draws.parameters[:, i, cols])
        se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C ** 2) / n)
        np.testing.assert_array_less(np.abs(np.cov(x.T) - C), 4 * se)
        np.testing.assert_allclose(np.log(theoph.theta[i, cols]), x.mean(axis=0),
                                   atol=4 * math.sqrt(C.max() / n) * 2)
        assert np.linalg.eigvalsh(omega - C).min() > 0
    assert "conditional covariance" in theoph.interval_methods["covariance"]


# ------------------------------------------------------------------ (3) compare


def test_compare_new_patients_of_a_focei_fit(theoph):
    """pg.compare(fit, ..., population=150, draws=25): per-scenario summaries for every
    endpoint, finite, the point estimate inside its parameter-uncertainty interval and that
    interval narrower than the between-subject 5-95% band."""
    comp = pg.compare(theoph, SCENARIOS, population=150, draws=25, seed=4, horizon=24.0,
                      step=0.5, endpoints=conc_endpoints())
    assert comp.subject_ids[0] == "V0001" and len(comp.subject_ids) == 150
    rows = {(r["scenario"], r["endpoint"]): r for r in comp.summary}
    assert {s for s, _ in rows} == set(SCENARIOS)
    for scen in SCENARIOS:
        for ep in ("conc_change_24m", "conc_slope_0-24m"):
            r = rows[(scen, ep)]
            assert r["n"] == 150 and np.isfinite(r["mean"]) and np.isfinite(r["sd"])
            assert r["mean_ci_low"] <= r["mean"] <= r["mean_ci_high"]
            assert r["mean_ci_high"] - r["mean_ci_low"] < r["p95"] - r["p05"]
    r = rows[("half CL", "conc_slope_0-24m")]
    assert r["diff_ci_low"] <= r["diff_mean"] <= r["diff_ci_high"]
    assert r["diff_ci_low"] > 0                   # half the clearance: a slower decline
    assert any("new patients drawn from the population fit" in n for n in comp.notes)
    assert any("dose records" in n for n in comp.notes)
    assert any("same 150 patients" in n for n in comp.draw_notes)


def test_compare_fitted_subjects_of_a_focei_fit(theoph):
    """The fitted subjects (EBEs) with draws from their conditional covariances."""
    comp = pg.compare(theoph, SCENARIOS, draws=20, seed=2, horizon=24.0, step=0.5,
                      endpoints=conc_endpoints())
    assert list(comp.subject_ids) == list(theoph.subject_ids)
    for r in comp.summary:
        if r["endpoint"] == "conc_slope_0-24m":
            assert np.isfinite(r["mean"])
            assert r["mean_ci_low"] <= r["mean"] <= r["mean_ci_high"]


def test_compare_new_patients_of_a_saem_fit(theoph_saem):
    comp = pg.compare(theoph_saem, SCENARIOS, population=40, draws=6, seed=1, horizon=24.0,
                      step=1.0, endpoints=conc_endpoints())
    for r in comp.summary:
        if r["endpoint"] == "conc_slope_0-24m":
            assert r["n"] == 40 and np.isfinite(r["mean"])
            assert np.isfinite(r["mean_ci_low"]) and np.isfinite(r["mean_ci_high"])
    assert any("(saem: random effects on ka, CL, V)" in n for n in comp.notes)


# ------------------------------------------------------------------ (4) VirtualTrial


def test_virtual_trial_with_patients_of_a_population_fit(als_pop):
    """Candidates drawn from the fitted population (here kA's typical value 0.05 with a
    small variance, far from the model default 0.0338 that the default variability is
    centred on); the trial runs and says where its candidates come from."""
    from progression.trials import VirtualTrial

    omega = OMEGA.copy()
    omega[0, 0], omega[0, 1], omega[1, 0] = 0.05 ** 2, 0.0, 0.0
    part = als_part(fixed_effects={**TV, "kA": 0.05}, omega=omega)
    fit = dataclasses.replace(als_pop, population=part)
    trial = VirtualTrial({"placebo": [], "half kA": [HALF_KA]}, population=fit,
                         follow_up=6.0)
    pool = trial.simulate_pool(24, seed=3)
    ka = pool.parameters[:, fit.model.parameter_index("kA")]
    assert np.all(np.abs(np.log(ka / 0.05)) < 0.25)
    # the trial goes to worker processes whole (its candidates' sampler included)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(trial)).simulate_pool(24, seed=3).parameters,
        pool.parameters)
    res = trial.run(8, reps=4, pool=pool, seed=1)
    assert len(res.rows) == 4 and all(np.isfinite(r["p"]) for r in res.rows)
    # the same through a VirtualPopulation drawn from the fit
    vp = VirtualPopulation.from_fit(fit, n=10, seed=1)
    again = VirtualTrial({"placebo": [], "half kA": [HALF_KA]}, population=vp,
                         follow_up=6.0)
    np.testing.assert_array_equal(again.simulate_pool(24, seed=3).parameters,
                                  pool.parameters)
    curve = again.power([8], reps=3, pool=pool, seed=2)
    assert "Candidates: new patients drawn from the population fit 'als_pop'" in \
        curve.to_markdown()


def test_trial_power_at_the_estimates_and_under_parameter_uncertainty(als_pop):
    """Power kept apart from parameter uncertainty: without a covariance step every draw is
    the fit itself and, with the same seeds (common random numbers), reproduces the power at
    the estimates replicate by replicate; with the covariance step the draws differ."""
    from progression.errors import ConfigError
    from progression.trials import VirtualTrial

    none = dataclasses.replace(als_pop, population=als_part(
        covariance=np.full((len(NAMES), len(NAMES)), np.nan)))
    kw = dict(draws=3, reps=6, seed=4, pool_size=24)
    trial = VirtualTrial({"placebo": [], "half kA": [HALF_KA]}, population=none,
                         follow_up=6.0)
    held = trial.power_uncertainty(8, **kw)
    ref = [r["p"] for r in held.at_estimates.rows]
    for res in held.draws:
        assert [r["p"] for r in res.rows] == ref
    assert held.undetermined == list(NAMES)
    trial = VirtualTrial({"placebo": [], "half kA": [HALF_KA]}, population=als_pop,
                         follow_up=6.0)
    unc = trial.power_uncertainty(8, **kw)
    assert unc.population.shape == (3, len(NAMES))
    assert [r["p"] for r in unc.at_estimates.rows] == ref      # the same fit, same seeds
    assert any([r["p"] for r in res.rows] != ref for res in unc.draws)
    (row,) = unc.summary()
    assert row["draws"] == 3 and 0 <= row["assurance"] <= 1
    assert row["power_draws_p2.5"] <= row["power_draws_median"] <= row["power_draws_p97.5"]
    assert "assurance" in unc.to_markdown()
    plain = VirtualTrial({"placebo": [], "half kA": [HALF_KA]}, model="als_reduced",
                         follow_up=6.0)
    with pytest.raises(ConfigError, match="power_uncertainty: needs candidates drawn from a "
                                          "population fit"):
        plain.power_uncertainty(8, **kw)
    with pytest.raises(ConfigError, match="draws: expected a positive integer"):
        trial.power_uncertainty(8, draws=0)


# ------------------------------------------------------------------ (5) save/load, (6) pickle


def test_saved_and_reloaded_fit_predicts_and_compares_identically(theoph, tmp_path):
    folder = theoph.save(tmp_path / "fit", figures=False)
    back = load_fit(folder)
    assert back.population is not None and back.population.method == theoph.population.method
    np.testing.assert_array_equal(back.population.parameter_vector(),
                                  theoph.population.parameter_vector())
    np.testing.assert_array_equal(back.population.covariance, theoph.population.covariance)
    t = np.linspace(0.0, 24.0, 49)
    np.testing.assert_allclose(back.simulate(t).observables, theoph.simulate(t).observables,
                               rtol=1e-12, atol=0)
    for a, b in zip(back.predictions, theoph.predictions, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    kw = dict(population=60, draws=8, seed=7, horizon=24.0, step=1.0,
              endpoints=conc_endpoints())
    one, two = pg.compare(theoph, SCENARIOS, **kw), pg.compare(back, SCENARIOS, **kw)
    assert len(one.summary) == len(two.summary)
    for r1, r2 in zip(one.summary, two.summary, strict=True):
        assert r1.keys() == r2.keys()
        for key in r1:
            v1, v2 = r1[key], r2[key]
            if isinstance(v1, float | np.floating):
                assert (v1 == v2) or (np.isnan(v1) and np.isnan(v2)), key
            else:
                assert v1 == v2, key


def test_fit_and_population_pickle(theoph):
    back = pickle.loads(pickle.dumps(theoph))
    a = VirtualPopulation.from_fit(theoph, n=20, seed=9)
    b = VirtualPopulation.from_fit(back, n=20, seed=9)
    np.testing.assert_array_equal(a.subject_parameters, b.subject_parameters)
    vp = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(vp.parameter_draws(4, 1).parameters,
                                  a.parameter_draws(4, 1).parameters)
    sampler = pickle.loads(pickle.dumps(theoph.population_sampler()))
    assert sampler.fit_name == theoph.name


# ------------------------------------------------------------------ compare configs, CLI


def _config(tmp_path, folder, extra="") -> Path:
    cfg = tmp_path / "compare.toml"
    cfg.write_text(f'[source]\nfit = "{folder}"\npatients = "new"\nn = 12\nseed = 3\n{extra}\n'
                   '[compare]\nhorizon = 6\nstep = 1\n\n[scenarios]\n"none" = []\n'
                   '"glial block" = [{ scale = { kA = 0.5 }, label = "half kA" }]\n')
    return cfg


@pytest.fixture(scope="module")
def als_pop_folder(als_pop, tmp_path_factory):
    return als_pop.save(tmp_path_factory.mktemp("alspop") / "fit", figures=False)


def test_compare_config_new_patients(als_pop, als_pop_folder, tmp_path, capsys):
    from progression._compare_config import read_compare_config
    from progression.cli import main

    cfg = read_compare_config(_config(tmp_path, als_pop_folder))
    src = cfg.source
    assert isinstance(src, VirtualPopulation) and src.n_subjects == 12
    direct = VirtualPopulation.from_fit(load_fit(als_pop_folder), n=12, seed=3)
    np.testing.assert_array_equal(src.subject_parameters, direct.subject_parameters)
    out = tmp_path / "out"
    assert main(["compare", str(_config(tmp_path, als_pop_folder)), "--out", str(out),
                 "--no-figures", "--quiet", "--draws", "4", "--n", "10"]) == 0
    printed = capsys.readouterr().out
    # 10 new patients are drawn; under als_reduced's death hazard (random survival scores) a
    # patient may die before the comparison starts and is then excluded, never silently.
    alive = int(re.search(r"als_reduced: (\d+) subjects", printed).group(1))
    assert 7 <= alive <= 10, printed
    summary = (out / "summary.md").read_text()
    assert f"{alive} subjects (of 10) alive at the start" in summary
    assert "new patients drawn from the population fit 'als_pop'" in printed
    assert (out / "summary.md").exists()
    # a clock in the config: data time 0 = clinical onset + 6 months for the new patients
    anchored = read_compare_config(_config(tmp_path, als_pop_folder,
                                           'anchor = "clinical_onset"\ndelay = 6'))
    sim = pg.simulate(als_pop.model, anchored.source.subject_parameters, [0.0, 240.0],
                      rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(anchored.source.time_offsets,
                               sim.event_time("clinical_onset") + 6.0, rtol=1e-5)


@pytest.mark.slow
def test_pheno_covariate_fit_downstream(tmp_path):
    """NONMEM's phenobarbital example through configs/pheno_population.toml (~3 min): CL and V
    proportional to birth weight, a categorical Apgar effect on V. 20,000 new patients carry
    the fitted neonates' (weight, Apgar) pairs jointly; per patient, log CL minus the log of
    its covariate-adjusted typical value is its random effect, whose variance is omega^2 CL
    (4 SE); a compare on them runs, and the reloaded fit draws the same patients."""
    res = run_fit(ROOT / "configs" / "pheno_population.toml")
    pop = res.population
    assert pop.ofv == pytest.approx(586.27606, abs=0.05)
    n = 20_000
    vp = VirtualPopulation.from_fit(res, n=n, seed=1)
    wgt = np.asarray(pop.subject_covariates["WGT"], dtype=float)[vp.patients.rows]
    apgr = np.asarray(pop.subject_covariates["APGR"], dtype=float)[vp.patients.rows]
    fitted = set(zip(pop.subject_covariates["WGT"], pop.subject_covariates["APGR"],
                     strict=True))
    assert set(zip(wgt.tolist(), apgr.tolist(), strict=True)) <= fitted
    model = res.model
    cl = vp.subject_parameters[:, model.parameter_index("CL")]
    v = vp.subject_parameters[:, model.parameter_index("V")]
    eta_cl = np.log(cl / (pop.fixed_effects["CL"] * wgt))
    w2 = pop.omega[0, 0]
    assert abs(eta_cl.var() - w2) < 4 * w2 * math.sqrt(2 / n)
    low = apgr < 5
    factor = np.where(low, 1 + pop.coefficients["V~APGR=low"], 1.0)
    eta_v = np.log(v / (pop.fixed_effects["V"] * wgt * factor))
    assert abs(eta_v.var() - pop.omega[1, 1]) < 4 * pop.omega[1, 1] * math.sqrt(2 / n)
    comp = pg.compare(res, {"none": [], "half CL": [pg.Intervention(scale={"CL": 0.5},
                                                                     label="half CL")]},
                      population=200, draws=10, seed=2, horizon=48.0, step=2.0,
                      endpoints=pg.Endpoints(function="conc", threshold=5.0))
    assert all(np.isfinite(r["mean"]) for r in comp.summary if "mean" in r)
    back = load_fit(res.save(tmp_path / "fit", figures=False))
    again = VirtualPopulation.from_fit(back, n=50, seed=3)
    np.testing.assert_array_equal(again.subject_parameters,
                                  VirtualPopulation.from_fit(res, n=50, seed=3)
                                  .subject_parameters)
