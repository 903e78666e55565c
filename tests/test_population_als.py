"""The shipped population fit of the synthetic ALS clinic cohort against its generating truth.

- ``progression/als/population_truth.py`` derives the generating typical values and Omega from
  ``configs/cohorts/als_clinic.toml``; checked here against the 200 patients' true values in
  ``data/synthetic/als_clinic_200_truth.csv`` (within 3 sampling SEs).
- ``fits/als_synthetic_population/fit.json`` (written by ``progression fit
  configs/als_synthetic_population.toml``) against that truth with the issue's figures:
  typical values within 10 % and RSE < 25 %, Omega diagonal within 30 % (on the config's
  scales; k0 and kA at the reference covariates with the conditional Omega, since the config
  has the generator's covariate model); the targets the shipped fit misses are strict xfails that
  name the miss, so a better fit turns them into failures to update. The onset shift's truth
  is the patients' own ``onset_model_time`` (it has no generating parameter).
- A smoke test of the config: parsed as documented and run for a few SAEM iterations on 10
  subjects.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from progression.als.population_truth import (
    FITTED,
    generating_population,
    sample_population,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "als_synthetic_population.toml"
COHORT_CONFIG = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"  # drew the shipped data
DATA = ROOT / "data" / "synthetic" / "als_clinic_200.csv"
#: The same cohort with the reported onset as one ``onset_gap = 0`` row per patient (the data
#: of the shipped fit; made by ``python -m progression.als.onset_rows``)
ONSET_DATA = ROOT / "data" / "synthetic" / "als_clinic_200_onset.csv"
TRUTH = ROOT / "data" / "synthetic" / "als_clinic_200_truth.csv"
FIT = ROOT / "fits" / "als_synthetic_population" / "fit.json"

#: The issue's acceptance figures for the shipped fit.
TYPICAL_TOL, RSE_MAX, OMEGA_TOL = 0.10, 25.0, 0.30


@pytest.fixture(scope="module")
def generating():
    return generating_population(COHORT_CONFIG, n_draws=200_000, seed=1)


@pytest.fixture(scope="module")
def sample():
    return sample_population(TRUTH)


def _generating_on_fit_scale(n_draws=200_000, seed=1):
    """Typical value and Omega diagonal of each of FITTED on the scale the fit config gives
    it (log k0, kA, eD; logit Tmax within its bounds), by Monte Carlo with the generator's
    own drawing code; for a parameter with covariate effects in the fit config, the value at
    the reference covariates (the regression intercept: onset age 60, limb onset, no C9orf72)
    and the variance left after the covariates (conditional Omega), else marginal ones."""
    from progression.als.cohort_config import _as_config
    from progression.als.population_truth import _covariate_terms
    from progression.fit.config import read_fit_config
    from progression.fit.transforms import from_internal, to_internal
    from progression.virtual.synthesis import draw_parameters

    cfg = _as_config(COHORT_CONFIG)
    rng = np.random.default_rng(seed)
    terms = _covariate_terms(cfg, rng, n_draws)
    _, varied = draw_parameters(cfg.parameters, cfg.factors, cfg.fixed, terms, rng, n_draws)
    fit_params = {q.name: q for q in read_fit_config(CONFIG).parameters}
    X = np.column_stack([np.ones(n_draws)] + [terms[k] for k in sorted(terms)])
    typ, om = {}, {}
    for p in FITTED:
        q = fit_params[p]
        x = to_internal(varied[p], q.scale, q.lower, q.upper)
        if q.covariates:
            beta, *_ = np.linalg.lstsq(X, x, rcond=None)
            centre, var = beta[0], float(np.var(x - X @ beta))
        else:
            centre, var = float(np.mean(x)), float(np.var(x))
        typ[p] = float(from_internal(np.array([centre]), q.scale, q.lower, q.upper)[0])
        om[p] = var
    return typ, om


@pytest.fixture(scope="module")
def truth(sample):
    """Typical value and Omega diagonal per fitted parameter on the fit's scales:
    generating (k0, kA, Tmax, eD; conditional on the config's covariate model) and the
    patients' own (onset shift, log scale)."""
    typ, om = _generating_on_fit_scale()
    typ["time_offset"] = sample.typical["time_offset"]
    om["time_offset"] = sample.variance("time_offset")
    return typ, om


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


def test_onset_shift_is_a_function_of_k0(sample):
    # why the onset shift has no generating parameter: log onset ~ -log k0 + const
    assert sample.correlation("k0", "time_offset") < -0.99


# ------------------------------------------------------------------ the onset observation

def test_reported_onset_is_where_the_model_reaches_47():
    """Why the fit takes the reported onset as data: in the generator the covariate
    ``onset_time`` is the model's ``clinical_onset`` event (predicted ALSFRS-R = 47) of each
    patient's own parameters, so ``onset_gap = frs - 47`` is 0 there (up to the rounding of
    ``onset_time`` to 0.01 month times a slope < 0.5 point/month)."""
    import csv

    import progression as pg

    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))[:40]
    params = {k: np.array([float(r[k]) for r in rows])
              for k in ("wsp", "k0", "kA", "Tmax", "eD", "Ndeath")}
    t_onset = np.array([float(r["time_offset"]) + float(r["onset_time"]) for r in rows])
    t = np.linspace(0.0, 120.0, 1201)
    sim = pg.simulate("als_reduced", params, t)
    gap = np.array([np.interp(t_onset[i], t, sim["onset_gap"][i]) for i in range(len(rows))])
    assert np.abs(gap).max() < 0.01
    np.testing.assert_allclose(sim["onset_gap"], sim["ALSFRS_R"] - 47.0, atol=1e-12)


def test_onset_data_file_is_made_by_the_script(tmp_path):
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

#: The issue's targets that the shipped fit misses (measured 2026-11-30, see
#: fits/als_synthetic_population/report.md; truth on the fit's scales, k0 and kA at the reference
#: covariates): typical values k0 +41 %, kA -41 %, eD +22 %, onset shift -20 % (Tmax -8 %
#: passes); Omega diagonal k0 -39 %, kA +110 %, eD -54 %, onset shift -39 % (Tmax's is fixed at
#: 0.01 in the config, truth 0.0065); no standard errors: the FOCE-I R matrix at the SAEM
#: estimates is not positive definite, its flattest direction made of theta kA, k0 and Tmax.
#: Why: k0 and kA are not separately identified by a patient's data
#: (test_k0_ka_ridge_is_flat_for_one_patient), so the typical values slide
#: along that ridge; the correlations of the Omega block are recovered
#: (test_shipped_fit_correlations).
MISSED_TYPICAL = {"k0", "kA", "eD", "time_offset"}
MISSED_OMEGA = {"k0", "kA", "Tmax", "eD", "time_offset"}


def _typical(shipped, truth, p):
    return shipped["fixed_effects"][p] / truth[0][p] - 1


def _omega(shipped, truth, p):
    names = shipped["omega_names"]
    omega = np.asarray(shipped["omega"], dtype=float)
    return omega[names.index(p), names.index(p)] / truth[1][p] - 1


def _mark(p, missed, what):
    return pytest.param(p, marks=pytest.mark.xfail(
        strict=True, reason=f"shipped fit misses the issue's {what} target for {p}")) \
        if p in missed else p


@pytest.mark.parametrize("p", [_mark(p, MISSED_TYPICAL, "typical-value")
                               for p in ("k0", "kA", "Tmax", "eD", "time_offset")])
def test_shipped_fit_typical_value_within_10_percent(shipped, truth, p):
    assert abs(_typical(shipped, truth, p)) < TYPICAL_TOL


@pytest.mark.parametrize("p", [_mark(p, MISSED_OMEGA, "Omega")
                               for p in ("k0", "kA", "Tmax", "eD", "time_offset")])
def test_shipped_fit_omega_within_30_percent(shipped, truth, p):
    assert abs(_omega(shipped, truth, p)) < OMEGA_TOL


@pytest.mark.xfail(strict=True, reason="FOCE-I R matrix at the SAEM estimates not positive "
                   "definite (k0/kA/Tmax direction): no SEs")
def test_shipped_fit_rse_below_25_percent(shipped):
    for p, se in shipped["fixed_effects_se"].items():
        assert se is not None and 100 * se / shipped["fixed_effects"][p] < RSE_MAX, p


def test_shipped_fit_error_model_and_offsets(shipped):
    # what the fit gets right: the residual errors of the cohort (ALSFRS-R SD 2 plus integer
    # rounding, sqrt(4 + 1/12) = 2.02; NfL residual 0.15 once kappa_nfl carries the
    # per-patient offset) and the CRP offset's variance 0.8^2 through Q0's random effect
    sig = shipped["sigma"]
    assert sig["ALSFRS_R.a"] == pytest.approx(2.02, rel=0.10)
    assert sig["NfL.sigma"] == pytest.approx(0.15, rel=0.10)
    names = shipped["omega_names"]
    q0 = np.asarray(shipped["omega"], dtype=float)[names.index("Q0"), names.index("Q0")]
    assert q0 == pytest.approx(0.64, rel=OMEGA_TOL)


def test_shipped_fit_correlations(shipped, sample):
    # the Omega block (k0, kA, onset shift) recovers the cohort's correlations of the logs
    # (truth: k0-kA 0.79, k0-onset -1.00, kA-onset -0.84) within 0.15
    names = shipped["omega_names"]
    om = np.asarray(shipped["omega"], dtype=float)

    def corr(a, b):
        i, j = names.index(a), names.index(b)
        return om[i, j] / math.sqrt(om[i, i] * om[j, j])

    for a, b in (("k0", "kA"), ("k0", "time_offset"), ("kA", "time_offset")):
        assert corr(a, b) == pytest.approx(sample.correlation(a, b), abs=0.15), (a, b)


def test_shipped_fit_names_the_unidentified_direction():
    """The covariance step fails and says why: its flattest directions load on the typical
    k0, kA (and Tmax), the ridge of test_k0_ka_ridge_is_flat_for_one_patient."""
    doc = json.loads(FIT.read_text())
    warn = " ".join(doc["warnings"])
    assert "R matrix not positive definite" in warn
    first = warn.split("direction 1")[1].split("direction 2")[0]
    assert "theta k0" in first and "theta kA" in first
    assert all(v is None for v in doc["population"]["fixed_effects_se"].values())


def test_k0_ka_ridge_is_flat_for_one_patient():
    """Why the typical k0 and kA are not identified: patient C063's true (k0, kA) and the
    shipped fit's conditional mean for it, 1.47 x k0 and 0.26 x kA, aligned at their clinical
    onset (model times 25.1 and 19.3 months), give ALSFRS-R within 0.2 point (residual SD 2)
    and NfL and CRP within 0.1 on the log scale (residual SDs 0.15 and ~0.56) over the 106
    months from onset to the end of its follow-up: one patient's data cannot tell them apart,
    only the population distribution can."""
    import csv

    import progression as pg

    with open(TRUTH, newline="") as fh:
        true = next(r for r in csv.DictReader(fh) if r["subject"] == "C063")
    with open(FIT.parent / "subjects.csv", newline="") as fh:
        fitted = next(r for r in csv.DictReader(fh) if r["subject"] == "C063")
    names = ("k0", "kA", "Tmax", "eD")
    params = [{"wsp": 0.095, **{k: float(true[k]) for k in names}},
              {"wsp": 0.095, **{k: float(fitted[k]) for k in names}}]
    t = np.linspace(0.0, 150.0, 3001)
    sim = pg.simulate("als_reduced", params, t, terminal_events=False)
    onset = sim.event_time("clinical_onset")
    since = np.linspace(0.0, -float(true["onset_time"]) + float(true["study_end_time"]), 60)
    cur = {k: [np.interp(onset[i] + since, t, sim[k][i]) for i in (0, 1)]
           for k in ("ALSFRS_R", "NfL", "CRP")}
    assert float(fitted["kA"]) / float(true["kA"]) < 0.5        # far apart on kA ...
    assert float(fitted["k0"]) / float(true["k0"]) > 1.3        # ... and on k0
    assert onset[0] - onset[1] > 3.0                             # and on the model clock
    assert np.abs(cur["ALSFRS_R"][0] - cur["ALSFRS_R"][1]).max() < 0.5
    for k in ("NfL", "CRP"):
        assert np.abs(np.log(cur[k][1] / cur[k][0])).max() < 0.15, k


def test_shipped_fit_provenance(shipped):
    doc = json.loads(FIT.read_text())
    assert doc["estimator"] == "saem"
    assert doc["provenance"]["config_path"].endswith("als_synthetic_population.toml")
    assert len(doc["subjects"]) == 200
    assert shipped["converged"] is True
    assert set(shipped["omega_names"]) == {"k0", "kA", "Tmax", "eD", "time_offset", "Q0",
                                           "kappa_nfl"}


# ------------------------------------------------------------------ the config

def test_config_parses_as_documented():
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(CONFIG)
    assert cfg.estimator == "saem"
    by = {p.name: p for p in cfg.parameters}
    for p in ("k0", "kA", "Tmax", "eD", "time_offset", "Q0", "kappa_nfl"):
        assert by[p].estimate == "population" and by[p].eta > 0, p
        assert by[p].scale == "log", p
    # Tmax's random-effect variance is fixed (not identified), the others estimated
    assert by["Tmax"].eta_fixed and by["Tmax"].eta == 0.01
    assert not any(by[p].eta_fixed for p in by if p != "Tmax" and by[p].eta is not None)
    # the generator's covariate model on k0 and kA: age (exponential), site, C9orf72
    for p in ("k0", "kA"):
        effects = {e.covariate: e.effect for e in by[p].covariates}
        assert effects == {"age": "exponential", "site_of_onset": "categorical",
                           "c9orf72": "categorical"}, p
    assert by["wsp"].estimate == "fixed" and by["wsp"].value == 0.095
    assert by["time_offset"].covariate == "onset_time" and by["time_offset"].factor == -1.0
    errors = {p.name: p for p in cfg.parameters if p.kind == "error"}
    assert set(errors) == {"ALSFRS_R.a", "NfL.sigma", "CRP.sigma", "onset_gap.a"}
    # the reported onset's "recall" SD is fixed (0.05 point, ~0.35 month), the others
    # estimated
    assert errors["onset_gap.a"].estimate == "fixed" and errors["onset_gap.a"].value == 0.05
    assert all(p.estimate == "population" for n, p in errors.items() if n != "onset_gap.a")
    assert cfg.options["saem_covariance"] == "focei"
    assert Path(cfg.data["path"]).name == ONSET_DATA.name


def test_config_runs_a_few_iterations_on_ten_subjects():
    import progression as pg
    from progression.fit.config import read_fit_config

    cohort = pg.read_cohort(ONSET_DATA)
    cohort = cohort.select(cohort.subjects[:10])
    cfg = read_fit_config(CONFIG)
    # SAEM's own covariance here (the config's FOCE-I covariance step is minutes)
    cfg = cfg.replace(options={**cfg.options, "saem_exploration": 4, "saem_smoothing": 3,
                               "is_samples": 100, "saem_covariance": "sa"})
    fit = pg.fit(cfg, data=cohort)
    pop = fit.population
    assert pop.method == "saem"
    assert np.isfinite(pop.ofv)
    assert set(pop.fixed_effects) == {"k0", "kA", "Tmax", "eD", "time_offset", "Q0",
                                      "kappa_nfl"}
    # a few iterations from the config's starting values stay near them (factor 3)
    start = {p.name: p.value for p in cfg.parameters if p.kind != "error"}
    for p, v in pop.fixed_effects.items():
        assert 1 / 3 < v / start[p] < 3, (p, v, start[p])
    # censored CRP values of these subjects are part of the data (M3 / imputation)
    assert any(np.any(np.asarray(d.cens) != 0) for d in fit.designs)
    # the fixed onset SD stays fixed (SAEM's residual_fixed) and is not reported as estimated
    assert "onset_gap.a" not in pop.sigma
