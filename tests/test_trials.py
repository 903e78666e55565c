"""Virtual trials: enrolment, randomisation, dropout, analysis, type-I error and power.

Numbers (pool of eligible patients from the §5 cohort variability, 12-month follow-up, monthly
visits, ALSFRS-R noise SD 2, dropout 2.5%/month):

* no true effect (identical arms), 200 replicates of 40 per arm: the slope t-test rejects in
  ~5% (accepted 2-9%), the log-rank test likewise;
* complete block of glial toxicity (~30% slowing since issue 13 lowered the inflammatory share
  of the hazard to ~1/3; 63% before): power 0.07 at 5 per arm, 0.48 at 40, 0.82 at 160 per arm
  (60 replicates, pool of 480; before issue 13's recalibration 0.87-0.90 at 40 per arm).
"""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import progression.interventions as iv
from progression._survival import kaplan_meier, km_median, logrank, rmst
from progression.errors import ConfigError
from progression.trials import Dropout, Enrolment, VirtualTrial

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def null_trial():
    return VirtualTrial({"placebo": [], "placebo again": []}, follow_up=12.0)


@pytest.fixture(scope="module")
def null_pool(null_trial):
    return null_trial.simulate_pool(240, seed=11)


def test_pool_respects_enrolment_and_has_potential_outcomes(null_pool):
    trial = VirtualTrial({"placebo": [], "ceiling": [iv.glial_block()]}, follow_up=6.0,
                         enrolment=Enrolment(duration=(6.0, 18.0), dfs=(0.3, 1.2),
                                             alsfrs_min=32))
    pool = trial.simulate_pool(40, seed=3)
    assert pool.size == 40 and pool.function.shape == (2, 40, 7)
    assert np.all((pool.dfs >= 0.3) & (pool.dfs <= 1.2))
    assert np.all(pool.screening_score >= 32)
    assert np.all((pool.duration >= 6.0) & (pool.duration <= 18.0))
    assert 0 < pool.eligible_fraction < 1
    # same patient, two arms: identical at randomisation, better under the ceiling later
    np.testing.assert_allclose(pool.function[0, :, 0], pool.function[1, :, 0])
    # (deaths are random through each patient's survival score, the same draw in both arms:
    # compare where both are alive, and the ceiling arm has no more deaths)
    both = np.isfinite(pool.function[:, :, -1]).all(axis=0)
    assert np.all(pool.function[1, both, -1] >= pool.function[0, both, -1] - 1e-6)
    assert np.isfinite(pool.death[1]).sum() <= np.isfinite(pool.death[0]).sum()
    # identical arms share one simulation
    np.testing.assert_array_equal(null_pool.function[0], null_pool.function[1])


def test_true_effect_zero_rejects_at_the_nominal_rate(null_trial, null_pool):
    res = null_trial.run(40, reps=200, pool=null_pool, seed=5)
    assert 0.02 <= res.power() <= 0.09
    surv = VirtualTrial(null_trial.arms, follow_up=12.0, endpoint="survival")
    assert 0.02 <= surv.run(40, reps=200, pool=null_pool, seed=6).power() <= 0.09
    est = np.array([r["estimate"] for r in res.rows])
    assert abs(est.mean()) < 3 * est.std() / np.sqrt(est.size)


def test_power_grows_with_sample_size_for_a_large_effect():
    trial = VirtualTrial({"placebo": [], "ceiling": [iv.glial_block()]}, follow_up=12.0)
    curve = trial.power([5, 160], reps=60, seed=2, pool_size=480)
    p = curve.power()
    assert p[0] < 0.2 and p[1] > 0.7
    rows = curve.table()
    assert rows[1]["median_relative_effect"] == pytest.approx(0.30, abs=0.08)
    assert "| ceiling vs placebo | 160 |" in curve.to_markdown()


def test_results_are_seeded_and_do_not_depend_on_the_executor(null_trial, null_pool):
    a = null_trial.run(20, reps=30, pool=null_pool, seed=9)
    b = null_trial.run(20, reps=30, pool=null_pool, seed=9)
    assert [r["p"] for r in a.rows] == [r["p"] for r in b.rows]
    small = VirtualTrial({"placebo": [], "IL-2": [iv.ld_il2()]}, follow_up=3.0)
    serial = small.simulate_pool(30, seed=1, chunk=10)
    with ThreadPoolExecutor(3) as pool:
        fanned = small.simulate_pool(30, seed=1, chunk=10, executor=pool)
        c = small.run(10, reps=16, pool=serial, seed=4, executor=pool)
    np.testing.assert_array_equal(serial.function, fanned.function)
    d = small.run(10, reps=16, pool=serial, seed=4)
    assert sorted(r["p"] for r in c.rows) == pytest.approx(sorted(r["p"] for r in d.rows))


def test_dropout_and_death_end_visits(null_trial, null_pool):
    trial = VirtualTrial(null_trial.arms, follow_up=12.0, dropout=Dropout(rate=0.05))
    data = trial.realise(null_pool, 100, np.random.default_rng(0))
    dropped = np.isfinite(data.dropout)
    assert abs(dropped.mean() - (1 - np.exp(-0.05 * 11))) < 0.08   # last interval not at risk
    for i in np.nonzero(dropped)[0][:10]:
        assert np.all(np.isnan(data.score[i, data.visits > data.dropout[i]]))
    dead = np.isfinite(data.death)
    for i in np.nonzero(dead)[0][:10]:
        assert np.all(np.isnan(data.score[i, data.visits > data.death[i]]))
    assert np.nanmax(data.score) <= 48 and np.nanmin(data.score) >= 0
    assert data.rows()[0].keys() == {"patient", "arm", "month", "ALSFRS_R"}


def test_survival_helpers_agree_with_scipy():
    rng = np.random.default_rng(0)
    t = rng.exponential(10, 80)
    c = rng.uniform(0, 15, 80)
    time, obs = np.minimum(t, c), t <= c
    group = np.arange(80) % 2 == 0
    ours = logrank(time, obs, group)
    ref = stats.logrank(stats.CensoredData.right_censored(time[group], ~obs[group]),
                        stats.CensoredData.right_censored(time[~group], ~obs[~group]))
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    km = stats.ecdf(stats.CensoredData.right_censored(time, ~obs))
    tk, sk = kaplan_meier(time, obs)
    np.testing.assert_allclose(sk[1:], km.sf.evaluate(tk[1:]), rtol=1e-10)
    assert km_median(time, obs) == pytest.approx(float(np.interp(0.5, sk[::-1], tk[::-1])),
                                                 abs=2.0)
    assert 0 < rmst(time, obs, 12.0) <= 12.0


def test_trial_errors():
    with pytest.raises(ConfigError, match="at least two arms"):
        VirtualTrial({"only": []})
    with pytest.raises(ConfigError, match="endpoint"):
        VirtualTrial({"a": [], "b": []}, endpoint="mixed-ish")
    with pytest.raises(ConfigError, match="did you mean 'kA'"):
        VirtualTrial({"a": [], "b": [iv.Intervention("kAA", scale=0.5)]})
    with pytest.raises(ConfigError, match="duration"):
        Enrolment(duration=(0.0, 5.0))


def test_ld_il2_trial_example_runs_small(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, str(ROOT / "examples/ld_il2_virtual_trial.py"),
                          "--small", "--out", str(tmp_path / "trial")], capture_output=True,
                         text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "trial/slope/power.png").exists()
    assert (tmp_path / "trial/survival/power.md").exists()


def _il2_slowing(model, pool, seed):
    """12-month ALSFRS-R slowing by continued low-dose IL-2 in a trial-eligible pool
    (potential outcomes: every patient under both arms)."""
    trial = VirtualTrial({"placebo": [], "IL-2": [iv.ld_il2()]}, model=model, follow_up=12.0,
                         visit_every=12.0, enrolment=Enrolment(duration=(6.0, 24.0)))
    F = trial.simulate_pool(pool, seed=seed).function
    ok = np.isfinite(F[0, :, -1]) & np.isfinite(F[1, :, -1])
    return 1.0 - np.mean(F[1, ok, 0] - F[1, ok, -1]) / np.mean(F[0, ok, 0] - F[0, ok, -1])


# slow (~12 s): two pools of 300; run with -m slow (the CI budget, 2026-12-01)
@pytest.mark.slow
def test_ld_il2_slows_both_als_models_alike():
    # issue 13: als_reduced's IL-2 gain gIL2 (1.25, was 2.0) is set so that the fitting model
    # answers low-dose IL-2 like the recalibrated als_systemic on comparable patients (the §5
    # pool, seeds 1-5 at 400: 9.2 % (8.9-9.4) vs 9.1 % (7.7-9.8)); with gIL2 2.0 als_reduced
    # gave 14.9 % and this test fails. Tolerance: 3 points, the seed-to-seed spread of
    # als_systemic's value at this pool size plus the models' remaining difference.
    reduced = _il2_slowing("als_reduced", 300, 1)
    systemic = _il2_slowing("als_systemic", 300, 1)
    assert 0.05 < systemic < 0.14 and 0.05 < reduced < 0.14, (systemic, reduced)
    assert abs(reduced - systemic) < 0.03, (systemic, reduced)
