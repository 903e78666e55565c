"""The shipped population fit of the synthetic ALS clinic cohort against its generating truth.

- ``progression/als/population_truth.py`` derives the generating typical values and Omega from
  ``configs/cohorts/als_clinic_v1.toml`` (the generator of the shipped data); checked here
  against the 200 patients' true values in ``data/synthetic/als_clinic_200_truth.csv``
  (within 3 sampling SEs), including the derived ``glial_ratio = kA / k0``.
- The fit's model ``configs/models/als_reduced_pace.toml`` is als_reduced with
  ``kA = k0 * glial_ratio`` (k0 the pace of the disease): checked to simulate als_reduced.
- The onset shift is anchored at each patient's model clinical onset
  (``[parameters.time_offset] anchor = "clinical_onset"``): checked that this is how the
  generator makes the data, and that the fit's per-subject offsets are their own model's onset.
- ``fits/als_synthetic_population/fit.json`` (written by ``progression fit
  configs/als_synthetic_population.toml``) against that truth with the issue's figures
  (:func:`progression.als.population_truth.target_table`): typical values within 10 % and
  RSE < 25 %, Omega diagonal within 30 % (k0 at the reference covariates with the conditional
  Omega; the onset shift derived: T at the typical values with a delta-method SE, its spread
  over patients drawn from the fitted population against the cohort's ``onset_model_time``);
  the targets the shipped fit misses are strict xfails that name the miss, so a better fit
  turns them into failures to update.
- A smoke test of the config: parsed as documented and run for a few SAEM iterations on 10
  subjects.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from progression.als.cohort_config import load_population_config
from progression.als.population_truth import (
    FITTED,
    generating_population,
    sample_population,
    truth_on_fit_scale,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "als_synthetic_population.toml"
COHORT_CONFIG = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"  # drew the shipped data
PACE_MODEL = ROOT / "configs" / "models" / "als_reduced_pace.toml"
DATA = ROOT / "data" / "synthetic" / "als_clinic_200.csv"
#: The same cohort with the reported onset as one ``onset_gap = 0`` row per patient (the data
#: of the shipped fit; made by ``python -m progression.als.onset_rows``)
ONSET_DATA = ROOT / "data" / "synthetic" / "als_clinic_200_onset.csv"
TRUTH = ROOT / "data" / "synthetic" / "als_clinic_200_truth.csv"
FIT = ROOT / "fits" / "als_synthetic_population" / "fit.json"

#: The als_reduced values the shipped data were drawn with: the generator's [fixed] table
#: (wsp, death_threshold and the defaults that the second calibration of als_reduced, issue 13,
#: moved: inflammatory share of the hazard 0.65 -> 0.32). The pace model is the v1 fitting
#: model of the shipped data, so it is compared with als_reduced at these values.
V1_FIXED = dict(load_population_config(COHORT_CONFIG).fixed)

#: The issue's acceptance figures for the shipped fit.
TYPICAL_TOL, RSE_MAX, OMEGA_TOL = 0.10, 25.0, 0.30


@pytest.fixture(scope="module")
def generating():
    return generating_population(COHORT_CONFIG, n_draws=200_000, seed=1)


@pytest.fixture(scope="module")
def sample():
    return sample_population(TRUTH)


#: The quantities of the fit that have a generating truth: estimated (random effect or not)
#: and fixed ones (their truth shows how far the fixed value is).
ESTIMATED = ("k0", "eD", "time_offset")
HELD = ("glial_ratio", "Tmax")


def _generating_on_fit_scale(n_draws=200_000, seed=1):
    """Typical value and Omega diagonal of each fitted quantity on the scale the fit config
    gives it (population_truth.truth_on_fit_scale: k0 at the reference covariates with the
    conditional variance; glial_ratio = kA / k0 from each draw), by Monte Carlo with the
    generator's own drawing code."""
    from dataclasses import replace

    from progression.fit.config import read_fit_config

    by = {q.name: q for q in read_fit_config(CONFIG).parameters}
    # the held ones as log-scale quantities (their config entries are fixed values)
    qs = [by["k0"], by["eD"]] + [replace(by[n], scale="log") for n in HELD]
    return truth_on_fit_scale(COHORT_CONFIG, qs, n_draws=n_draws, seed=seed)


@pytest.fixture(scope="module")
def targets():
    """The issue's numbers of the shipped fit (population_truth.target_table)."""
    if not FIT.exists():
        pytest.fail(f"{FIT} is missing: run `progression fit {CONFIG.relative_to(ROOT)}`")
    from progression.als.population_truth import target_table

    return target_table(FIT.parent, n_onset=2000, seed=0)[1]


@pytest.fixture(scope="module")
def shipped():
    if not FIT.exists():
        pytest.fail(f"{FIT} is missing: run `progression fit {CONFIG.relative_to(ROOT)}`")
    return json.loads(FIT.read_text())["population"]


# ------------------------------------------------------------------ the generating truth

def test_generating_truth_matches_the_cohort(generating, sample):
    n = sample.n
    assert n == 200
    for p in FITTED:
        var = generating.variance(p)
        # log typical value: SE sqrt(var / n); variance: SE var sqrt(2 / (n - 1))
        d_mean = math.log(sample.typical[p] / generating.typical[p])
        assert abs(d_mean) < 3 * math.sqrt(var / n), (p, d_mean)
        assert abs(sample.variance(p) / var - 1) < 3 * math.sqrt(2 / (n - 1)), p
    assert generating.correlation("k0", "kA") == pytest.approx(
        sample.correlation("k0", "kA"), abs=0.1)


def test_generating_truth_from_the_config_formula(generating):
    # without truncation Var(log k0) = sd^2 + pace^2 + age 0.01^2 * 11^2 + bulbar and
    # C9orf72 Bernoulli variances = 0.469; the generator's bounds cut it to ~0.39
    untruncated = 0.3**2 + 0.6**2 + (0.01 * 11.0)**2 + 0.15**2 * 0.22 * 0.78 + \
        0.2**2 * 0.07 * 0.93
    assert untruncated == pytest.approx(0.469, abs=1e-3)
    assert 0.3 < generating.variance("k0") < untruncated
    # eD: no effects, bounds [0.05, 1] at > 3.5 SD: log-normal SD 0.3 around 0.341
    assert generating.typical["eD"] == pytest.approx(0.341, rel=0.01)
    assert generating.variance("eD") == pytest.approx(0.09, rel=0.02)
    # the conditional Omega of k0 drops the covariates' share (age, bulbar, C9orf72)
    assert generating.variance("k0", conditional=True) < generating.variance("k0")


def test_derived_glial_ratio_matches_the_cohort():
    """The derived truth of the fit's glial_ratio (typical kA/k0 of the generator, by Monte
    Carlo of its drawing code) against the 200 patients' own kA/k0 (3 sampling SEs), and the
    value the shipped config holds it at (als_reduced's calibrated 0.0338/0.0096) within 1 %."""
    import csv

    from progression.fit.config import FitParameter

    q = [FitParameter("glial_ratio", "model", "population", 3.5, 0.3, 30.0, "log", eta=0.1)]
    typ, om = truth_on_fit_scale(COHORT_CONFIG, q, n_draws=200_000, seed=1)
    with open(TRUTH, newline="") as fh:
        r = np.log([float(x["kA"]) / float(x["k0"]) for x in csv.DictReader(fh)])
    assert abs(r.mean() - math.log(typ["glial_ratio"])) < 3 * math.sqrt(om["glial_ratio"]
                                                                      / r.size)
    # without truncation Var(log kA/k0) = 0.3^2 + 0.3^2 (the pace factor cancels)
    assert om["glial_ratio"] == pytest.approx(0.18, rel=0.15)
    assert typ["glial_ratio"] == pytest.approx(0.0338 / 0.0096, rel=0.01)
    with pytest.raises(ValueError, match="'NOPE' is neither varied by the config"):
        truth_on_fit_scale(COHORT_CONFIG, [FitParameter("NOPE", "model", "population", 1.0,
                                                        0.1, 10.0, "log")], n_draws=100)


def test_pace_model_is_als_reduced():
    """configs/models/als_reduced_pace.toml simulates als_reduced exactly at
    kA = k0 * glial_ratio (the reparametrisation changes no dynamics), with als_reduced at the
    values of the shipped data's generator (V1_FIXED: the pace model keeps the v1 values, it
    is the fitting model of those data)."""
    import progression as pg

    t = np.linspace(0.0, 120.0, 241)
    k0, kA = np.array([0.006, 0.0095, 0.014]), np.array([0.04, 0.0338, 0.012])
    wsp = [0.095] * 3
    v1 = {k: v for k, v in V1_FIXED.items() if k not in ("wsp", "death_threshold")}
    v1["eD"] = next(p.typical for p in load_population_config(COHORT_CONFIG).parameters
                    if p.name == "eD")        # 0.341: varied in the generator, not in [fixed]
    # the pace model carries one more state (the cumulative hazard of [hazards.respiratory]),
    # so its step sizes differ: both solved tightly, the curves agree to 1e-6 (a wrong kA
    # would move them by ~1e-2)
    tight = {"rtol": 1e-10, "atol": 1e-13, "terminal_events": False}
    a = pg.simulate("als_reduced", {**v1, "k0": k0, "kA": kA, "wsp": wsp}, t, **tight)
    b = pg.simulate(str(PACE_MODEL), {"k0": k0, "glial_ratio": kA / k0, "wsp": wsp}, t,
                    **tight)
    for k in ("ALSFRS_R", "NfL", "CRP", "Treg_pct", "onset_gap"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-9, err_msg=k)


def test_respiratory_hazard_is_the_normal_threshold_of_n():
    """[hazards.respiratory] of the pace model: death when N falls to N_d ~ N(Ndeath,
    Ndeath_sd^2), so exp(-Lambda_respiratory(t)) = Phi((N(t) - Ndeath) / sd) / Phi((1 - Ndeath)
    / sd) (N(0) = 1) along the simulated N, to the integrator's tolerance (1e-8)."""
    from scipy.stats import norm

    import progression as pg

    t = np.linspace(0.0, 200.0, 401)
    nd, sd = np.array([0.42, 0.30]), np.array([0.06, 0.03])
    sim = pg.simulate(str(PACE_MODEL), {"k0": [0.0095, 0.02], "wsp": [0.095] * 2,
                                        "Ndeath": nd, "Ndeath_sd": sd}, t,
                      terminal_events=False, rtol=1e-10, atol=1e-13)
    n = sim.states[:, sim.state_names.index("N")]
    lam = sim.states[:, sim.state_names.index("Lambda_respiratory")]
    survival = (norm.cdf((n - nd[:, None]) / sd[:, None])
                / norm.cdf((1.0 - nd[:, None]) / sd[:, None]))
    assert survival[:, -1].max() < 1e-6 and survival[:, 0].min() == pytest.approx(1.0)
    np.testing.assert_allclose(np.exp(-lam), survival, atol=1e-8)


def test_death_respiratory_makes_the_threshold_the_terminal_death():
    """death_respiratory = 1: the model's terminal death is [hazards.respiratory]'s event, at
    N = Ndeath - z sd for a patient's score z (S = Phi((N - Ndeath) / sd) reaching Phi(-z));
    0 (the default): the calibrated death hazard, another time."""
    from scipy.stats import norm

    import progression as pg

    t = np.linspace(0.0, 300.0, 601)
    nd, sd, z = np.array([0.42, 0.30]), np.array([0.06, 0.03]), np.array([0.3, -1.0])
    base = {"k0": [0.0095, 0.02], "wsp": [0.095] * 2, "Ndeath": nd, "Ndeath_sd": sd,
            "z_respiratory": z}
    on = pg.simulate(str(PACE_MODEL), {**base, "death_respiratory": [1.0, 1.0]}, t,
                     rtol=1e-10, atol=1e-13)
    off = pg.simulate(str(PACE_MODEL), base, t, rtol=1e-10, atol=1e-13)
    for i in range(2):
        death = on.events["death"][i][0]
        assert death == pytest.approx(on.events["respiratory_failure"][i][0], abs=1e-9)
        n_at = pg.simulate(str(PACE_MODEL), {k: np.atleast_1d(v)[i] for k, v in base.items()},
                           [0.0, death], terminal_events=False, rtol=1e-10, atol=1e-13)
        n_death = n_at.states[0, n_at.state_names.index("N"), -1]
        # exact: Phi((N - nd) / sd) / Phi((1 - nd) / sd) = Phi(-z)
        target = nd[i] + sd[i] * norm.ppf(norm.cdf(-z[i]) * norm.cdf((1 - nd[i]) / sd[i]))
        assert n_death == pytest.approx(target, abs=1e-6)
        assert abs(off.events["death"][i][0] - death) > 0.5


def test_nfl_scale_multiplies_the_whole_nfl_as_the_generator_offset_does():
    """nfl_scale (the fit's per-patient NfL offset) multiplies background and neuronal NfL
    alike, as the generator's offset exp(eta) does; nothing else depends on it."""
    import progression as pg

    t = np.linspace(0.0, 120.0, 241)
    base = {"k0": [0.0095] * 2, "glial_ratio": [3.52] * 2, "wsp": [0.095] * 2}
    a = pg.simulate(str(PACE_MODEL), {**base, "nfl_scale": [1.0, 1.0]}, t,
                    terminal_events=False)
    b = pg.simulate(str(PACE_MODEL), {**base, "nfl_scale": [1.0, 1.35]}, t,
                    terminal_events=False)
    np.testing.assert_allclose(b["NfL"][1], 1.35 * a["NfL"][1], rtol=1e-12)
    for k in ("ALSFRS_R", "CRP", "Treg_pct"):
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_onset_shift_is_a_function_of_k0(sample):
    # why the onset shift has no generating parameter: log onset ~ -log k0 + const
    assert sample.correlation("k0", "time_offset") < -0.99


# ------------------------------------------------------------------ the onset anchor

def test_reported_onset_is_where_the_model_reaches_47():
    """Why the fit anchors the onset shift at the model's clinical onset: in the generator the
    covariate ``onset_time`` is the model's ``clinical_onset`` event (predicted ALSFRS-R = 47)
    of each patient's own parameters, so ``onset_gap = frs - 47`` is 0 there (up to the rounding of
    ``onset_time`` to 0.01 month times a slope < 0.5 point/month)."""
    import csv

    import progression as pg

    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))[:40]
    params = {k: np.array([float(r[k]) for r in rows])
              for k in ("wsp", "k0", "kA", "Tmax", "eD", "Ndeath")}
    params.update({k: v for k, v in V1_FIXED.items() if k != "wsp"})   # the generator's
    t_onset = np.array([float(r["time_offset"]) + float(r["onset_time"]) for r in rows])
    t = np.linspace(0.0, 120.0, 1201)
    sim = pg.simulate("als_reduced", params, t)
    gap = np.array([np.interp(t_onset[i], t, sim["onset_gap"][i]) for i in range(len(rows))])
    assert np.abs(gap).max() < 0.01
    np.testing.assert_allclose(sim["onset_gap"], sim["ALSFRS_R"] - 47.0, atol=1e-12)


def test_onset_data_file_is_made_by_the_script(tmp_path):
    """The onset rows of the previous fit (no longer used by the shipped config; the file and
    the tool are kept): one ``onset_gap = 0`` row per patient at its reported onset."""
    from progression.als.onset_rows import add_onset_rows

    out = tmp_path / "onset.csv"
    assert add_onset_rows(DATA, out) == 200
    assert out.read_text() == ONSET_DATA.read_text()
    import progression as pg

    base, onset = pg.read_cohort(DATA), pg.read_cohort(ONSET_DATA)
    assert onset.subjects == base.subjects
    # one row per patient at its reported onset (before enrolment), the rest unchanged
    gap = onset.observations("onset_gap")
    assert len(gap["subject"]) == 200 and np.all(gap["value"] == 0.0)
    np.testing.assert_allclose(gap["time"], [onset.covariates[s]["onset_time"]
                                             for s in gap["subject"]])
    assert np.all(gap["time"] < 0)
    for obs in ("ALSFRS_R", "NfL", "CRP"):
        np.testing.assert_array_equal(onset.observations(obs)["value"],
                                      base.observations(obs)["value"])


def test_onset_rows_bad_inputs(tmp_path):
    from progression.als.onset_rows import add_onset_rows
    from progression.errors import DataError

    src = tmp_path / "c.csv"
    src.write_text("subject,time,observable,value,cens,limit\nS1,0,ALSFRS_R,40,0,\n")
    with pytest.raises(DataError, match=r"c\.csv: no sidecar c\.toml"):
        add_onset_rows(src, tmp_path / "o.csv")
    (tmp_path / "c.toml").write_text('format = "long"\ncovariates = "cov.csv"\n')
    (tmp_path / "cov.csv").write_text("subject,onset_time\nS2,-3\n")
    with pytest.raises(DataError, match=r"cov\.csv: subject 'S1' has no 'onset_time' value"):
        add_onset_rows(src, tmp_path / "o.csv")


# ------------------------------------------------------------------ the shipped fit

#: The shipped fit against the issue's targets (measured 2026-12-01 23:41 UTC, seed 2026, four
#: SAEM chains per patient, CRP residual Student t(3), the Treg % offset as fT0's random effect
#: and the NfL offset as nfl_scale's (on the whole NfL), as in the generator;
#: fits/als_synthetic_population/report.md; truth on the fit's scales, the pace k0 at the
#: reference covariates; the onset shift's spread over 4000 patients drawn from the fit, seed
#: 0; the offsets' truths: typical 1, Omega the generator's subject_sd^2): typical values k0
#: +4.7 % (RSE 4.8), onset shift -2.9 % (RSE 4.5), Q0 -0.1 % (8.4), nfl_scale +1.3 % (2.2),
#: eD -24.5 % (RSE 19.2, miss); Omega diagonal k0 -18.1 %, onset shift -12.9 %, Q0 +19.0 %,
#: nfl_scale -3.9 % (pass), eD +363 % (miss, shrinkage 60 %). OFV 1849.67 (the NfL offset on
#: kappa_nfl, until 2026-12-02: 1858.06, eD -27.3 % / +425 %). Profile of the previous fit
#: (omega^2 eD held, everything else estimated, same seed): 0.25 -> OFV +1.8, the truth 0.0901
#: -> +5.5 (typical eD then -8.5 %): these data prefer a large omega^2 eD (benchmarks/results/
#: als_ed_diagnosis.md; the well-specified study never gave more than 0.34 in 50 replicates).
TARGETS = ("k0", "eD", "Q0", "nfl_scale", "onset shift")
MISSED_TYPICAL = {"eD"}
MISSED_RSE: set = set()
MISSED_OMEGA = {"eD"}
MEASURED = {("k0", "rel"): 0.0469, ("k0", "omega_rel"): -0.1811, ("k0", "rse"): 4.79,
            ("eD", "rel"): -0.2448, ("eD", "omega_rel"): 3.633, ("eD", "rse"): 19.22,
            ("Q0", "rel"): -0.0015, ("Q0", "omega_rel"): 0.190, ("Q0", "rse"): 8.40,
            ("nfl_scale", "rel"): 0.0126, ("nfl_scale", "omega_rel"): -0.0391,
            ("nfl_scale", "rse"): 2.24,
            ("onset shift", "rel"): -0.0292, ("onset shift", "omega_rel"): -0.1290,
            ("onset shift", "rse"): 4.51}


def _mark(p, missed, what):
    return pytest.param(p, marks=pytest.mark.xfail(
        strict=True, reason=f"shipped fit misses the issue's {what} target for {p}")) \
        if p in missed else p


@pytest.mark.parametrize("p", [_mark(p, MISSED_TYPICAL, "typical-value") for p in TARGETS])
def test_shipped_fit_typical_value_within_10_percent(targets, p):
    assert abs(targets[p]["rel"]) < TYPICAL_TOL


@pytest.mark.parametrize("p", [_mark(p, MISSED_RSE, "RSE") for p in TARGETS])
def test_shipped_fit_rse_below_25_percent(targets, p):
    assert targets[p]["rse"] < RSE_MAX


@pytest.mark.parametrize("p", [_mark(p, MISSED_OMEGA, "Omega") for p in TARGETS])
def test_shipped_fit_omega_within_30_percent(targets, p):
    assert abs(targets[p]["omega_rel"]) < OMEGA_TOL


def test_shipped_fit_measured_numbers(targets):
    """The numbers quoted in MEASURED (a change of the fit shows here first)."""
    for (p, key), value in MEASURED.items():
        assert targets[p][key] == pytest.approx(value, abs=0.01), (p, key)


def test_held_values_are_near_the_truth():
    """glial_ratio and Tmax are held (not identified): at als_reduced's calibrated kA/k0 and
    Tmax's literature value, 0.7 % and 2.7 % from the generator's typical values."""
    from progression.fit.config import read_fit_config

    typ, _ = _generating_on_fit_scale()
    by = {q.name: q for q in read_fit_config(CONFIG).parameters}
    assert by["glial_ratio"].value / typ["glial_ratio"] - 1 == pytest.approx(-0.007,
                                                                           abs=0.003)
    assert by["Tmax"].value / typ["Tmax"] - 1 == pytest.approx(0.027, abs=0.003)


def test_shipped_fit_has_standard_errors(shipped):
    """With the onset anchored there is no (k0, onset) Omega block to collapse: SAEM's
    stochastic-approximation information is positive definite and every typical value has a
    standard error."""
    doc = json.loads(FIT.read_text())
    assert not any("not positive definite" in w for w in doc["warnings"])
    held = set(shipped["fixed_typical"])
    assert held == {"fT0"}                       # value_fixed: held typical value, SE 0
    for p in shipped["fixed_effects"]:
        se = shipped["fixed_effects_se"][p]
        if p in held:
            assert se == 0.0, p
        else:
            assert se is not None and np.isfinite(se) and se > 0, p


def test_shipped_fit_offsets_are_each_patients_model_onset():
    """The anchored offsets of the fit's table: each subject's model (at its conditional
    mean) reaches ALSFRS-R 47 exactly at its reported onset (first 20 subjects, event
    located by the integrator: within 1e-6 month)."""
    import progression as pg

    fit = pg.load_fit(FIT.parent)
    names = list(fit.parameter_names)
    T = fit.theta[:20, names.index("time_offset")]
    sim = pg.simulate(fit.model, fit.subject_parameters[:20], [0.0, 240.0],
                      terminal_events=False, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sim.event_time("clinical_onset"), T, atol=1e-6)
    cov = np.array([d.offset_covariate for d in fit.designs[:20]])
    np.testing.assert_allclose(fit.time_offsets[:20], T - cov, rtol=1e-12)


def test_shipped_fit_error_model_and_offsets(shipped):
    # what the fit gets right: the residual errors of the cohort (ALSFRS-R SD 2 plus integer
    # rounding, sqrt(4 + 1/12) = 2.02; NfL residual 0.15 once nfl_scale carries the
    # per-patient offset) and the CRP offset's variance 0.8^2 through Q0's random effect.
    # Treg %: visit residual 0.1, the per-patient offset (0.1) carried by fT0's random effect
    # (without it the residual took sqrt(0.1^2 + 0.1^2) = 0.14 minus what eD took: 0.119)
    sig = shipped["sigma"]
    assert sig["ALSFRS_R.a"] == pytest.approx(2.02, rel=0.10)
    assert sig["NfL.sigma"] == pytest.approx(0.15, rel=0.10)
    assert sig["Treg_pct.sigma"] == pytest.approx(0.10, rel=0.15)
    names = shipped["omega_names"]
    q0 = np.asarray(shipped["omega"], dtype=float)[names.index("Q0"), names.index("Q0")]
    assert q0 == pytest.approx(0.64, rel=OMEGA_TOL)


def _treg_offsets():
    """The shipped cohort's per-patient Treg % offsets (log scale, subject_sd * eta), which
    the truth file does not keep: the cohort regenerated from its config and seed (checked
    against the truth file's k0 and eD), the offsets read from the generator's draws."""
    import csv

    import progression.als.synthetic as S

    kept = {}
    assemble = S._assemble

    def capture(cfg, model, k, n, seed, n_screened, reasons):
        kept["k"] = k
        return assemble(cfg, model, k, n, seed, n_screened, reasons)

    S._assemble = capture
    try:
        S.synthetic_cohort(COHORT_CONFIG, n=200)
    finally:
        S._assemble = assemble
    off, k0, eD = [], [], []
    for draws, _batch, take in kept["k"]:
        off += [0.1 * float(draws.eta["Treg_pct"][i]) for i in take]   # subject_sd 0.1
        k0 += [float(draws.params["k0"][i]) for i in take]
        eD += [float(draws.params["eD"][i]) for i in take]
    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    np.testing.assert_allclose(k0, [float(r["k0"]) for r in rows], rtol=1e-12)
    np.testing.assert_allclose(eD, [float(r["eD"]) for r in rows], rtol=1e-12)
    return [r["subject"] for r in rows], np.array(off), np.log(eD)


def test_treg_offset_is_carried_by_ft0_not_ed():
    """The diagnosis behind fT0's random effect (benchmarks/als_ed_diagnosis.py): without
    it the EBE of log eD fell by 1.4 per unit of a patient's Treg % offset (t -6.8), i.e. eD
    carried the offset. In the shipped fit fT0's EBE follows the true offset (correlation
    > 0.6 over the 143 patients with a Treg % value; 0.71 in the runs of 2026-12-01) and stays
    at the typical value where there is no Treg % value."""
    import csv

    subjects, off, _ = _treg_offsets()
    with open(FIT.parent / "subjects.csv", newline="") as fh:
        sub = {r["subject"]: r for r in csv.DictReader(fh)}
    ft0 = np.log([float(sub[s]["fT0"]) for s in subjects])
    n_treg = dict.fromkeys(subjects, 0)
    with open(DATA, newline="") as fh:
        for r in csv.DictReader(fh):
            n_treg[r["subject"]] += r["observable"] == "Treg_pct"
    seen = np.array([n_treg[s] > 0 for s in subjects])
    assert seen.sum() == 143
    assert np.corrcoef(ft0[seen], off[seen])[0, 1] > 0.6
    # patients without a Treg % value: their fT0 EBE is the typical value (no information)
    assert np.abs(ft0[~seen] - math.log(6.0)).max() < 0.05


def test_k0_ka_ridge_is_flat_for_one_patient():
    """Why the fit estimates the pace and not k0 and kA apart: patient C063's true (k0, kA)
    and the conditional mean of the previous population fit (random effects on k0 and kA
    apart) for it, 1.47 x k0 and 0.26 x kA, aligned at their clinical onset, give ALSFRS-R
    within 0.5 point (residual SD 2) and NfL and CRP within 0.15 on the log scale (residual
    SDs 0.15 and ~0.56) over the 106 months from onset to the end of its follow-up: one
    patient's data cannot tell them apart."""
    import csv

    import progression as pg

    with open(TRUTH, newline="") as fh:
        true = next(r for r in csv.DictReader(fh) if r["subject"] == "C063")
    names = ("k0", "kA", "Tmax", "eD")
    v1 = {k: v for k, v in V1_FIXED.items() if k != "death_threshold"}   # the generator's
    params = [{**v1, **{k: float(true[k]) for k in names}}]
    # the previous shipped fit's conditional mean for C063 (fits/ at 2e06606)
    params.append({**v1, "k0": 0.0037274, "kA": 0.0019236, "Tmax": 0.79318, "eD": 0.42404})
    assert params[1]["k0"] / params[0]["k0"] == pytest.approx(1.47, abs=0.01)
    assert params[1]["kA"] / params[0]["kA"] == pytest.approx(0.26, abs=0.01)
    t = np.linspace(0.0, 150.0, 3001)
    sim = pg.simulate("als_reduced", params, t, terminal_events=False)
    onset = sim.event_time("clinical_onset")
    since = np.linspace(0.0, -float(true["onset_time"]) + float(true["study_end_time"]), 60)
    cur = {k: [np.interp(onset[i] + since, t, sim[k][i]) for i in (0, 1)]
           for k in ("ALSFRS_R", "NfL", "CRP")}
    assert onset[0] - onset[1] > 3.0                             # apart on the model clock
    assert np.abs(cur["ALSFRS_R"][0] - cur["ALSFRS_R"][1]).max() < 0.5
    for k in ("NfL", "CRP"):
        assert np.abs(np.log(cur[k][1] / cur[k][0])).max() < 0.15, k


def test_shipped_fit_provenance(shipped):
    doc = json.loads(FIT.read_text())
    assert doc["estimator"] == "saem"
    assert doc["provenance"]["config_path"].endswith("als_synthetic_population.toml")
    assert len(doc["subjects"]) == 200
    assert shipped["converged"] is True
    assert set(shipped["omega_names"]) == {"k0", "eD", "Q0", "nfl_scale", "fT0"}
    assert doc["model"]["name"] == "als_reduced_pace"


# ------------------------------------------------------------------ the config

def test_config_parses_as_documented():
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(CONFIG)
    assert cfg.estimator == "saem"
    assert cfg.model.name == "als_reduced_pace"        # configs/models/als_reduced_pace.toml
    by = {p.name: p for p in cfg.parameters}
    for p in ("k0", "eD", "Q0", "nfl_scale"):
        assert by[p].estimate == "population" and by[p].eta > 0, p
        assert by[p].scale == "log", p
        assert not by[p].eta_fixed and not by[p].value_fixed, p
    # the cohort's Treg % offset: a random effect on fT0, variance and typical value held at
    # the generator's (0.1^2 on the log scale; the healthy Treg share 6 %)
    f = by["fT0"]
    assert (f.estimate, f.scale, f.value, f.value_fixed, f.eta, f.eta_fixed) == \
        ("population", "log", 6.0, True, 0.01, True)
    # the pace parametrisation: kA = k0 * glial_ratio, the split and Tmax held (not
    # identified), at als_reduced's calibrated kA/k0 and Tmax's literature value
    assert "kA" not in by
    assert by["glial_ratio"].estimate == "fixed" and by["glial_ratio"].value == 3.52
    # the NfL offset on the whole NfL (nfl_scale), kappa_nfl held at the model's value
    assert by["kappa_nfl"].estimate == "fixed" and by["kappa_nfl"].value == 6000.0
    assert by["Tmax"].estimate == "fixed" and by["Tmax"].value == 0.9
    # the generator's covariate model on the pace: age (exponential), site, C9orf72
    effects = {e.covariate: e.effect for e in by["k0"].covariates}
    assert effects == {"age": "exponential", "site_of_onset": "categorical",
                       "c9orf72": "categorical"}
    assert by["wsp"].estimate == "fixed" and by["wsp"].value == 0.095
    # the onset shift: anchored at the model's clinical onset, no parameter of its own
    off = by["time_offset"]
    assert (off.anchor, off.covariate, off.factor) == ("clinical_onset", "onset_time", -1.0)
    assert off.estimate == "fixed" and off.eta is None and (off.lower, off.upper) == (0, 240)
    assert all(p.omega_block is None for p in cfg.parameters)
    errors = {p.name: p for p in cfg.parameters if p.kind == "error"}
    assert set(errors) == {"ALSFRS_R.a", "NfL.sigma", "CRP.sigma", "Treg_pct.sigma"}
    assert all(p.estimate == "population" for p in errors.values())
    # CRP's residual as the generator draws it: Student t(3) on the log scale
    assert cfg.errors["CRP"] == "lognormal:t(3)"
    assert Path(cfg.data["path"]).name == DATA.name      # no onset rows any more


def test_config_runs_a_few_iterations_on_ten_subjects():
    import progression as pg
    from progression.fit.config import read_fit_config

    cohort = pg.read_cohort(DATA)
    cohort = cohort.select(cohort.subjects[:10])
    cfg = read_fit_config(CONFIG)
    cfg = cfg.replace(options={**cfg.options, "saem_exploration": 4, "saem_smoothing": 3,
                               "is_samples": 100, "saem_covariance": "sa"})
    fit = pg.fit(cfg, data=cohort)
    pop = fit.population
    assert pop.method == "saem"
    assert np.isfinite(pop.ofv)
    assert set(pop.fixed_effects) == {"k0", "eD", "Q0", "nfl_scale", "fT0"}
    assert pop.fixed_effects["fT0"] == 6.0                # held (value_fixed)
    # a few iterations from the config's starting values stay near them (factor 3)
    start = {p.name: p.value for p in cfg.parameters if p.kind != "error"}
    for p, v in pop.fixed_effects.items():
        assert 1 / 3 < v / start[p] < 3, (p, v, start[p])
    # censored CRP values of these subjects are part of the data (M3 / imputation)
    assert any(np.any(np.asarray(d.cens) != 0) for d in fit.designs)
    # per subject: the pace k0 varies, the split is the held ratio, the offset is anchored
    names = list(fit.parameter_names)
    assert np.all(fit.theta[:, names.index("glial_ratio")] == 3.52)
    assert np.ptp(fit.theta[:, names.index("k0")]) > 0
    assert np.all(np.isfinite(fit.time_offsets)) and np.ptp(fit.time_offsets) > 0
