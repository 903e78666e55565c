"""Recovery of the shipped ALS population design from simulated cohorts
(``benchmarks/population_recovery.py``).

Fast tests check the study's machinery: the truths on the fit's scales against the
generator's documented numbers, the relative errors and Wald coverage of :func:`score`
against hand computation, the summary, and that an interrupted study resumes without
re-fitting the replicates it has. The slow test (``-m slow``; about 15-30 minutes per
replicate of 200 patients on 2 shared cores) runs 3 replicates of the full study with the
shipped config and checks the issue's figures where the 50-replicate study met them; the
misses are strict xfails with the measured numbers (benchmarks/results/
population_recovery_pace.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import population_recovery as pr  # noqa: E402


@pytest.fixture(scope="module")
def shipped():
    cfg = pr.read_config()
    return cfg, pr.truth_for_config(cfg, n_draws=100_000)


def test_truths_on_the_fit_scale(shipped):
    # the generator's numbers documented in progression/als/population_truth.py (400,000
    # draws): pace k0 at the reference covariates 0.00898, conditional Var(log) 0.372; eD
    # 0.341 and 0.0901; Q0 carries the CRP offset (model default 1.0, offset SD 0.8) and
    # nfl_scale the NfL offset (model default 1, SD 0.3; exact: it scales the whole NfL)
    cfg, truth = shipped
    assert truth["typical"]["k0"] == pytest.approx(0.00898, rel=0.01)
    assert truth["omega"]["k0"] == pytest.approx(0.372, rel=0.02)
    assert truth["typical"]["eD"] == pytest.approx(0.341, rel=0.01)
    assert truth["omega"]["eD"] == pytest.approx(0.0901, rel=0.02)
    assert truth["typical"]["Q0"] == 1.0 and truth["omega"]["Q0"] == pytest.approx(0.64)
    assert truth["typical"]["nfl_scale"] == 1.0
    assert truth["omega"]["nfl_scale"] == pytest.approx(0.09)
    assert "nfl_scale" not in truth["approximate"] and "kappa_nfl" not in truth["typical"]
    coef = truth["coefficients"]
    assert coef["k0~site_of_onset=bulbar"] == pytest.approx(math.expm1(0.15))
    assert coef["k0~c9orf72=1"] == pytest.approx(math.expm1(0.2))
    # every population parameter of the config (not error parameters) has a truth
    pars = {p.name for p in cfg.parameters if p.estimate == "population" and p.kind != "error"}
    assert pars <= set(truth["typical"]) | set(truth["per_replicate"])


def test_onset_shift_truth_is_the_replicates_own(shipped):
    cfg, _ = shipped
    from progression.als.synthetic import synthetic_cohort

    cohort, per, notes, onset = pr.simulate_replicate(20, 5, cfg)
    offsets = [p.name for p in cfg.parameters
               if p.kind == "offset" and p.estimate == "population" and p.eta is not None]
    _, truth = synthetic_cohort(pr.COHORT_CONFIG, n=20, seed=5)
    x = np.log(np.asarray(truth["onset_model_time"], dtype=float))
    for name in offsets:
        assert per[name]["typical"] == pytest.approx(math.exp(x.mean()), rel=1e-12)
        assert per[name]["omega"] == pytest.approx(x.var(), rel=1e-12)
    if "onset_gap" in cfg.errors:      # one onset row per patient at its reported onset
        obs = cohort.observations()
        rows = np.asarray(obs["observable"]) == "onset_gap"
        assert rows.sum() == 20
        assert np.all(np.asarray(obs["value"])[rows] == 0.0)
    assert any("seed 5" in n for n in notes)
    assert list(onset) == list(truth.subjects)
    assert np.allclose(list(onset.values()), truth["onset_model_time"])


def _pop(k0=0.010, se_log_k0=0.05, omega_k0=0.30, omega_se=0.03):
    return SimpleNamespace(
        fixed_effects={"k0": k0}, bounds={"k0": (0.0005, 0.2)}, scales={"k0": "log"},
        covariance_names=("theta k0", "coef k0~c9orf72=1"),
        covariance=np.diag([se_log_k0 ** 2, 0.1 ** 2]), omega_names=("k0",),
        omega=np.array([[omega_k0]]), omega_se={"k0": omega_se},
        coefficients={"k0~c9orf72=1": 0.05})


def test_score_relative_errors_and_wald_coverage():
    truth = {"typical": {"k0": 0.009}, "omega": {"k0": 0.36},
             "coefficients": {"k0~c9orf72=1": math.expm1(0.2)}}
    s = pr.score(_pop(), truth)
    t = s["typical"]["k0"]
    assert t["rel_error"] == pytest.approx(0.010 / 0.009 - 1)
    # |log(0.010 / 0.009)| = 0.1054 > 1.96 * 0.05 = 0.098: not covered; with SE 0.06 it is
    assert t["covered"] is False
    assert pr.score(_pop(se_log_k0=0.06), truth)["typical"]["k0"]["covered"] is True
    # Omega: SE of log omega^2 = 0.03 / 0.30 = 0.1; |log(0.30 / 0.36)| = 0.182 < 0.196
    o = s["omega"]["k0"]
    assert o["rel_error"] == pytest.approx(0.30 / 0.36 - 1)
    assert o["covered"] is True
    assert pr.score(_pop(omega_se=0.025), truth)["omega"]["k0"]["covered"] is False
    # coefficient on its own scale: |0.05 - 0.2214| = 0.171 < 1.96 * 0.1
    c = s["coefficients"]["k0~c9orf72=1"]
    assert c["abs_error"] == pytest.approx(0.05 - math.expm1(0.2))
    assert c["covered"] is True
    # no SEs (failed covariance step): coverage unknown, not counted as a miss
    nose = pr.score(_pop(se_log_k0=float("nan"), omega_se=float("nan")), truth)
    assert nose["typical"]["k0"]["covered"] is None and nose["omega"]["k0"]["covered"] is None


def _line(seed, rel, covered, error=None):
    if error:
        return {"seed": seed, "key": "k", "error": error, "started": "a", "finished": "b"}
    part = {"k0": {"rel_error": rel, "covered": covered, "truth": 1.0}}
    return {"seed": seed, "key": "k", "seconds": 10.0 + seed, "covariance_ok": True,
            "started": f"t{seed}", "finished": f"t{seed}",
            "score": {"typical": part, "omega": part, "coefficients": {}}}


def test_summary_medians_coverage_and_failures():
    lines = [_line(1, 0.10, True), _line(2, -0.02, False), _line(3, 0.04, True),
             _line(4, 0.0, None, error="FitError: boom")]
    s = pr.summarise(lines)
    assert s["replicates"] == 4 and s["succeeded"] == 3
    assert s["failed"] == [{"seed": 4, "error": "FitError: boom"}]
    d = s["typical"]["k0"]
    assert d["median_rel_error"] == pytest.approx(0.04)
    assert d["median_abs_rel_error"] == pytest.approx(0.04)
    assert (d["covered"], d["with_se"]) == (2, 3)
    assert s["seconds_per_fit"]["median"] == pytest.approx(12.0)


def test_profile_coverage_counts_statistics_within_the_chi2_quantile():
    """A replicate's ``lr`` record (refit with the parameter held at its truth) covers the
    truth exactly when OFV(truth) - OFV_hat <= chi2_1(0.95) = 3.841; a failed refit is not
    scored; the summary page gets the table."""
    deltas = [-0.4, 0.5, 3.84, 3.85, 7.2]
    lines = [dict(_line(i, 0.0, True), lr={"omega^2 eD": {"held": 0.09, "delta_ofv": d}})
             for i, d in enumerate(deltas)]
    lines.append(dict(_line(9, 0.0, True), lr={"omega^2 eD": {"held": 0.09,
                                                               "error": "FitError: x"}}))
    lines.append(_line(10, 0.0, True))                       # recorded without the refit
    s = pr.summarise(lines)
    d = s["profile"]["omega^2 eD"]
    assert d["threshold"] == pytest.approx(3.8415, abs=1e-4)
    assert (d["scored"], d["covered"], d["failed"], d["negative"]) == (5, 3, 1, 1)
    assert d["median"] == pytest.approx(3.84)
    table = "\n".join(pr.profile_lines(s))
    assert "| omega^2 eD | 3/5 = 60% | 3.84 | 1 | 3.85, 7.20 | 1 |" in table
    assert pr.profile_lines(pr.summarise(lines[-1:])) == []


def test_interrupted_study_resumes(tmp_path, monkeypatch):
    calls = []

    def fake(seed, n, config_path, options, static, text=None):
        calls.append(seed)
        return dict(_line(seed, 0.01 * seed, True), key=static["key"], n=n)

    monkeypatch.setattr(pr, "run_replicate", fake)
    out = tmp_path / "study.pace"
    pr.run(3, n=20, seed0=100, out=out, verbose=False)
    assert calls == [100, 101, 102]
    # a torn last line (the run was killed while writing) is skipped
    jsonl = Path(str(out) + ".jsonl")
    jsonl.write_text(jsonl.read_text() + '{"seed": 10')
    _, s = pr.run(5, n=20, seed0=100, out=out, verbose=False)
    assert calls == [100, 101, 102, 103, 104]
    assert s["succeeded"] == 5
    # another design (options) is another study: nothing reused
    pr.run(1, n=20, seed0=100, out=out, options={"saem_smoothing": 7}, verbose=False)
    assert calls[-1] == 100
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["options"] == {"saem_smoothing": 7}


# --------------------------------------------------------------------------- the slow study
# 3 replicates (seeds 1000-1002, the first three of the benchmark's study: same config, same
# seeds, same numbers) against the figures. The figures the study misses are strict
# xfails naming the measured miss, so that a fit that meets them turns them into failures.
SLOW_SEEDS = 3

#: Measured misses (seeds 1000-1002, 2026-12-02 00:01-00:12 UTC, the first three replicates of
#: benchmarks/results/population_recovery_20261202.md; the shipped config with the Treg % and
#: NfL offsets as fT0's and nfl_scale's random effects). Typical values (median of 3): k0
#: -1.8 %, eD -0.8 % (+14.9, -0.8, -10.5), Q0 -4.2 %, nfl_scale +1.6 %; Omega: k0 -13.6 %, Q0
#: -3.8 %, nfl_scale +5.7 %; every interval covers in at least 2 of 3. eD's variance still
#: misses: its random effect takes up the between-patient variation the fit model lacks (Tmax
#: held at 0.9 and kA = glial_ratio k0 for everyone, informative dropout). (Until 2026-12-02,
#: without fT0's and with kappa_nfl's random effect: typical eD -14.0 % and kappa_nfl's
#: omega^2 +55 % of an approximate truth.)
TYPICAL_MISSES: dict = {}
OMEGA_MISSES = {
    "eD": "omega^2 eD: -60 %, +61 %, +85 % of the truth 0.090 (median +61 %, target 20 %): "
          "eD's random effect absorbs the variation of Tmax and kA/k0 that the fit holds",
}
COVERAGE_MISSES: dict = {}


def _cases(names, misses):
    return [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=misses[p]))
            if p in misses else p for p in names]


@pytest.fixture(scope="module")
def replicates():
    cfg = pr.read_config()
    static = dict(pr.truth_for_config(cfg), key="slow test")
    return cfg, [pr.run_replicate(1000 + r, 200, str(pr.FIT_CONFIG), {}, static)
                 for r in range(SLOW_SEEDS)]


@pytest.fixture(scope="module")
def study(replicates):
    return pr.summarise(replicates[1])


@pytest.mark.slow
def test_pace_recovered_against_the_enrolled_patients(replicates):
    # the fit's pace (kA = glial_ratio k0 for everyone) against the enrolled patients' own
    # pace, mean of log k0 and log(kA / glial_ratio) given the fit's covariates (measured on
    # seeds 1000-1002: omega^2 +1.9 %, -0.6 %, -2.5 %; typical value +3.3 %, -1.3 %, +2.3 %;
    # every 95 % interval covering)
    from scipy.stats import norm

    cfg, lines = replicates
    z = float(norm.ppf(0.975))
    rel_om, rel_tv = [], []
    for x in lines:
        t = pr.sample_truths(x["seed"], 200, cfg)["pace"]
        om, tv = x["score"]["omega"]["k0"], x["score"]["typical"]["k0"]
        rel_om.append(om["estimate"] / t["omega"] - 1)
        rel_tv.append(tv["estimate"] / t["typical"] - 1)
        assert abs(math.log(om["estimate"] / t["omega"])) <= z * om["se"] / om["estimate"]
        assert abs(math.log(tv["estimate"] / t["typical"])) <= z * tv["se_scale"]
    assert abs(np.median(rel_om)) <= pr.TARGETS["omega_median_rel_error"]
    assert abs(np.median(rel_tv)) <= pr.TARGETS["typical_median_rel_error"]


@pytest.mark.slow
def test_every_replicate_fits_with_standard_errors(study):
    assert study["succeeded"] == SLOW_SEEDS, study["failed"]
    assert study["with_covariance"] == SLOW_SEEDS


@pytest.mark.slow
@pytest.mark.parametrize("p", _cases(("k0", "eD", "Q0", "nfl_scale"), TYPICAL_MISSES))
def test_typical_value_recovered(study, p):
    d = study["typical"][p]
    assert abs(d["median_rel_error"]) <= pr.TARGETS["typical_median_rel_error"], d


@pytest.mark.slow
@pytest.mark.parametrize("p", _cases(("k0", "eD", "Q0", "nfl_scale"), OMEGA_MISSES))
def test_omega_recovered(study, p):
    d = study["omega"][p]
    assert abs(d["median_rel_error"]) <= pr.TARGETS["omega_median_rel_error"], d


@pytest.mark.slow
@pytest.mark.parametrize("label", _cases(
    [f"typical {p}" for p in ("k0", "eD", "Q0", "nfl_scale")]
    + [f"omega {p}" for p in ("k0", "eD", "Q0", "nfl_scale")], COVERAGE_MISSES))
def test_intervals_cover_the_truth(study, label):
    # the 90-98 % band needs >= 50 replicates; with 3: the 95 % interval covers the
    # truth in at least 2 of 3 (probability of failing by chance at exact 95 % coverage: 0.7 %)
    part, p = label.split()
    d = study[part][p]
    assert d["with_se"] == SLOW_SEEDS and d["covered"] >= 2, d


@pytest.mark.slow
def test_profile_interval_of_omega2_ed_covers_the_truth(replicates):
    """The likelihood-ratio statistic at the truth of omega^2 eD on seed 1000 (the refit with
    it held, ``benchmarks/population_recovery_lr.py``): within chi2_1(0.95) = 3.84, so the
    95 % profile-likelihood interval covers the truth (measured 1.15 against the study's
    recorded free fit; 47 of 50 replicates covered, Wald 42 of 50)."""
    import population_recovery_lr as lr

    cfg, lines = replicates
    line = next(x for x in lines if x["seed"] == 1000)
    truth = line["score"]["omega"]["eD"]["truth"]
    held = lr.refit(line, 200, str(pr.FIT_CONFIG), pr.FIT_CONFIG.read_text(), {},
                    "omega^2 eD", truth)
    assert "error" not in held, held.get("traceback")
    delta = held["ofv"] - line["ofv"]
    assert -2.0 < delta <= 3.84, delta          # below 0 only by Monte Carlo noise (SE ~0.85)


def test_population_pace_truth_without_truncation(shipped):
    # with bounds too wide to truncate, the reference pace 0.5 (log k0 + log(kA / r)) has the
    # generator's closed form: typical sqrt(0.0091 * 0.033 / r), variance given the covariates
    # 0.6^2 (shared factor) + 0.3^2 / 2 (the two individual terms averaged) = 0.405
    from progression.virtual.cohort_config import read_toml

    cfg, _ = shipped
    r = pr._glial_ratio(cfg)
    doc = read_toml(pr.COHORT_CONFIG)
    for p in ("k0", "kA"):
        doc["parameters"][p] = dict(doc["parameters"][p], bounds=[1e-7, 50.0])
    typ, var = pr.population_pace_truth(cfg, doc, n_draws=200_000)
    assert typ == pytest.approx(math.sqrt(0.0091 * 0.033 / r), rel=0.005)
    assert var == pytest.approx(0.36 + 0.09 / 2, rel=0.01)


def test_sample_truths_regress_on_the_fit_covariates(shipped):
    cfg, _ = shipped
    from progression.als.synthetic import synthetic_cohort

    cohort, truth = synthetic_cohort(pr.COHORT_CONFIG, n=40, seed=7)
    k0 = next(p for p in cfg.parameters if p.name == "k0")
    X = pr._design(cohort, k0.covariates)
    age = np.asarray(cohort.covariate("age"), dtype=float)
    bulbar = np.asarray(cohort.covariate("site_of_onset")) == "bulbar"
    c9 = np.asarray(cohort.covariate("c9orf72"), dtype=float) == 1
    assert np.array_equal(X, np.column_stack([np.ones(40), age - 60.0, bulbar, c9]))
    s = pr.sample_truths(7, 40, cfg)
    y = np.log(np.asarray(truth["k0"], dtype=float))
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    assert s["k0"]["typical"] == pytest.approx(math.exp(beta[0]), rel=1e-10)
    assert s["k0"]["omega"] == pytest.approx(np.var(y - X @ beta), rel=1e-10)
    assert s["eD"]["omega"] == pytest.approx(np.var(np.log(truth["eD"])), rel=1e-10)
    assert s["pace"]["omega"] < s["k0"]["omega"]     # the individual terms average out
