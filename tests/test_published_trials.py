"""Published ALS trials as calibration data (issue 13): progression/als/trials.toml.

Each published trial is run as a virtual trial built like the real one, at a small size (pool
of 1000 eligible patients -- a pool of 400 leaves a seed-to-seed SD of ~0.04 on the hazard
ratios, enough to move an outcome across its range -- 40 replicate trials, seed 1; ~45 s), and
every published outcome is asserted to fall in its range (the published pattern). Outcomes
the current model misses are strict xfails carrying the measured numbers (pool 1000, seed 1;
the medians over 5 seeds of pool 400 in benchmarks/results/als_calibration_table.md agree):
when a recalibrated model reproduces them, the xfail flips and the list below must shrink.

The machinery (unequal allocation, markers, explicit visits, subgroups, effects from potential
outcomes) is checked against direct computations on the same pool and against the null
(identical arms: HR 1, no slowing, rejection at the nominal rate).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest

import progression as pg
from progression.als import published as pub
from progression.cli import main
from progression.errors import ConfigError
from progression.stats.survival import logrank
from progression.virtual.trials import VirtualTrial

SMALL = {"pool_size": 1000, "reps": 40, "seed": 1}

#: (trial, outcome) -> what the model gave when it missed (pool 1000, seed 1). Strict xfails.
MISSES = {
    ("mirocals", "death_hr_low_nfl"):
        "HR 0.81 below the NfL 75th percentile at pool 1000, seed 1 (0.76-0.87 over seeds 1-5 "
        "at pool 400; published 0.52-0.57): IL-2 lowers death only by slowing motor-neuron "
        "loss through the inflammatory third of the hazard, and death follows the loss through "
        "the ALSFRS-R level and rate (alpha1 0.02, alpha2 0.5); the high-NfL pattern (0.99) "
        "and the overall HR (0.84-0.91, n.s.) hold (README, limitations)",
}


@pytest.fixture(scope="module")
def checks():
    """Every published trial's checks at the small size (computed once)."""
    return {name: {c.outcome: c for c in pub.check_published(name, **SMALL)}
            for name in pub.published_trials()}


def _cases():
    out = []
    for name, spec in pub.published_trials().items():
        for o in spec.outcomes:
            marks = ()
            if (name, o.name) in MISSES:
                marks = pytest.mark.xfail(strict=True, reason=MISSES[name, o.name])
            out.append(pytest.param(name, o.name, marks=marks, id=f"{name}-{o.name}"))
    return out


@pytest.mark.parametrize("trial, outcome", _cases())
def test_published_pattern(checks, trial, outcome):
    c = checks[trial][outcome]
    lo, hi = c.range
    assert lo <= c.simulated <= hi, (f"{trial} {outcome}: simulated {c.simulated:.3g}, "
                                     f"accepted {lo:g} to {hi:g} ({c.detail})")
    assert c.passed


def test_every_trial_is_described_like_the_real_one():
    trials = pub.published_trials()
    assert set(trials) == {"tocilizumab", "mirocals", "imodals", "masitinib", "riluzole"}
    toc = trials["tocilizumab"]
    assert toc.sizes == (7, 15)                                   # 2:1, n = 22
    assert toc.visits[:5] == pytest.approx([0, 28 / 30.4375, 56 / 30.4375, 84 / 30.4375,
                                            112 / 30.4375])
    assert [iv.label for iv in toc.arms["tocilizumab"][1]] == ["tocilizumab"]
    miro = trials["mirocals"]
    assert miro.sizes == (110, 110) and miro.enrolment.duration[1] == 24.0
    assert miro.follow_up == pytest.approx(640 / 30.4375)
    assert {iv.label for iv in miro.arms["placebo"][1]} == {"riluzole"}   # add-on trial
    il2 = [iv for iv in miro.arms["low-dose IL-2"][1] if iv.label.startswith("low-dose")][0]
    assert il2.stop == 18.0 and il2.every == pytest.approx(28 / 30.4375)
    assert trials["imodals"].sizes == (12, 12, 12)
    assert trials["masitinib"].enrolment.duration == (6.0, 36.0)
    for spec in trials.values():
        for o in spec.outcomes:
            assert o.source and o.published and o.basis, (spec.name, o.name)
            if o.interval is not None:
                assert o.interval[0] <= o.value <= o.interval[1], (spec.name, o.name)
    assert trials["riluzole"].outcomes[0].interval == (0.698, 0.997)
    trial = pub.published_trial("tocilizumab")
    assert isinstance(trial, VirtualTrial) and list(trial.arms) == ["placebo", "tocilizumab"]
    np.testing.assert_allclose(trial.visits, toc.visits)
    assert trial.markers == ("CRP",)


@pytest.fixture(scope="module")
def null_spec():
    """A trial with two identical arms (the null) and every outcome kind."""
    text = textwrap.dedent("""
        [null]
        title = "two placebo arms"
        follow_up = 150.0
        visits = [0.0, 3.0, 6.0, 12.0, 150.0]
        markers = ["CRP", "NfL"]
        dropout = { rate = 0.0 }
        [null.arms.a]
        n = 30
        interventions = []
        [null.arms.b]
        n = 60
        interventions = []
        [[null.outcomes]]
        name = "crp"
        statistic = "CRP"
        kind = "marker_change"
        marker = "CRP"
        at = [3.0, 6.0]
        published = "x"
        range = [-1.0, 1.0]
        [[null.outcomes]]
        name = "diff"
        statistic = "d"
        kind = "score_difference"
        at = 12.0
        published = "x"
        range = [-0.01, 0.01]
        [[null.outcomes]]
        name = "slow"
        statistic = "s"
        kind = "slowing"
        at = 12.0
        subgroup = { by = "NfL", quantile_below = 0.5 }
        published = "x"
        range = [-0.01, 0.01]
        [[null.outcomes]]
        name = "hr"
        statistic = "h"
        kind = "hazard_ratio"
        published = "x"
        range = [0.999, 1.001]
        [[null.outcomes]]
        name = "gain"
        statistic = "g"
        kind = "median_gain"
        published = "x"
        range = [-1e-9, 1e-9]
        [[null.outcomes]]
        name = "rej"
        statistic = "r"
        kind = "rejection_rate"
        test = "change"
        at = 12.0
        published = "x"
        range = [0.0, 0.12]
    """)
    return text


def test_null_trial_has_no_effect_and_nominal_rejection(tmp_path, null_spec):
    path = tmp_path / "null.toml"
    path.write_text(null_spec)
    spec = pub.load_trials(path)["null"]
    trial = pub.published_trial(spec)
    pool = trial.simulate_pool(160, seed=5)
    checks = {c.outcome: c for c in pub.check_published(spec, pool=pool, reps=200, seed=2)}
    assert all(c.passed for c in checks.values()), [c for c in checks.values()
                                                    if not c.passed]
    # unequal allocation: 30 and 60 per arm, pool rows kept
    data = trial.realise(pool, [30, 60], np.random.default_rng(0))
    assert np.bincount(data.arm).tolist() == [30, 60]
    assert data.index.shape == (90,) and data.index.max() < pool.size
    np.testing.assert_array_equal(data.death, pool.death[data.arm, data.index])


def test_effects_match_direct_computation_on_the_pool():
    spec = pub.published_spec("tocilizumab")
    trial = pub.published_trial(spec)
    pool = trial.simulate_pool(60, seed=4)
    assert pool.markers["CRP"].shape == (2, 60, len(spec.visits))
    # same patient at randomisation under both arms
    np.testing.assert_allclose(pool.markers["CRP"][0, :, 0], pool.markers["CRP"][1, :, 0])
    got = {c.outcome: c.simulated for c in pub.check_published(spec, pool=pool, reps=5)}
    crp = pool.markers["CRP"][1]
    # each patient's mean over the visits seen alive (weeks 4-16), then over patients
    seen = np.isfinite(crp[:, 1:5]).any(axis=1)
    per = [np.mean(r[np.isfinite(r)]) for r in crp[seen, 1:5] / crp[seen, :1]]
    direct = np.mean(100 * (np.array(per) - 1))
    assert got["crp_change"] == pytest.approx(direct, rel=1e-12)
    j = int(np.argmin(np.abs(pool.visits - 12.0)))
    F = pool.function[:, :, j]
    ok = np.isfinite(F).all(axis=0)
    assert got["alsfrs_12m"] == pytest.approx(np.mean(F[1, ok] - F[0, ok]), rel=1e-12)
    d = pool.death
    t = np.minimum(np.r_[d[0], d[1]], 18.0)
    lr = logrank(t, np.r_[d[0], d[1]] <= 18.0, np.r_[np.zeros(60, bool), np.ones(60, bool)])
    assert got["death_hr_18m"] == pytest.approx(lr["hr_oe"], rel=1e-12)


def test_subgroups_split_the_pool():
    spec = pub.published_spec("mirocals")
    trial = pub.published_trial(spec)
    pool = trial.simulate_pool(80, seed=6)
    low = pub._subgroup(spec.outcomes[2], pool, "low")
    high = pub._subgroup(spec.outcomes[3], pool, "high")
    assert not np.any(low & high) and np.all(low | high)
    assert low.sum() == 60                                    # NfL below its 75th percentile
    nfl = pool.markers["NfL"][0, :, 0]
    assert nfl[low].max() < nfl[high].min()


def test_visit_times_and_markers_are_validated():
    with pytest.raises(ConfigError, match="markers: model 'als_systemic' has no observable "
                                          "'CRPP'"):
        VirtualTrial({"a": [], "b": []}, markers=["CRPP"])
    with pytest.raises(ConfigError, match="visit_times: expected increasing times from 0"):
        VirtualTrial({"a": [], "b": []}, follow_up=6.0, visit_times=[0.0, 3.0, 9.0])
    with pytest.raises(ConfigError, match="visit_times"):
        VirtualTrial({"a": [], "b": []}, visit_times=[1.0, 3.0])
    trial = VirtualTrial({"a": [], "b": []}, follow_up=6.0, visit_every=1.0)
    pool = trial.simulate_pool(20, seed=1)
    with pytest.raises(ConfigError, match="patients per arm: expected a positive integer or "
                                          "one per arm"):
        trial.realise(pool, [3], np.random.default_rng(0))


BASE = textwrap.dedent("""
    [t]
    title = "x"
    follow_up = 12.0
    markers = ["NfL"]
    [t.arms.a]
    n = 5
    interventions = []
    [t.arms.b]
    n = 5
    interventions = ["ld_il2"]
    [[t.outcomes]]
    name = "o"
    statistic = "s"
    kind = "hazard_ratio"
    published = "p"
    range = [0.5, 1.0]
""")


@pytest.mark.parametrize("old, new, message", [
    ('title = "x"', 'title = "x"\ncolour = 1', r"\[t\]: unknown key 'colour'"),
    ('kind = "hazard_ratio"', 'kind = "hazard"', r"outcomes\[0\]\.kind: expected one of"),
    ("range = [0.5, 1.0]", "range = [1.0, 0.5]", r"outcomes\[0\]\.range: expected \[low, "
                                                 r"high\]"),
    ('interventions = ["ld_il2"]', 'interventions = ["ld_il3"]',
     r"arms\.b\.interventions\[0\]: unknown intervention 'ld_il3'"),
    ('interventions = ["ld_il2"]', 'interventions = [{ name = "ld_il2", dose = 2 }]',
     r"arms\.b\.interventions\[0\]: intervention 'ld_il2': unknown option 'dose'"),
    ("n = 5\ninterventions = []", "n = 0\ninterventions = []", r"arms\.a\.n: expected a "
                                                               r"positive integer"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\nhorizon = 13.0',
     r"outcomes\[0\]: time 13 months is after the trial's follow_up"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\narm = "c"', r"outcomes\[0\]\.arm: no arm 'c'"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\nsubgroup = { by = "CRP", below = 3 }',
     r"subgroup\.by: expected 'dfs' or one of the trial's markers"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\nsubgroup = { by = "NfL", quantile_below = 2 }',
     r"subgroup\.quantile_below: expected a quantile in \(0, 1\)"),
    ('kind = "hazard_ratio"', 'kind = "rejection_rate"\ntest = "slope"',
     r"outcomes\[0\]\.test: expected one of change, survival, marker_change"),
    ('kind = "hazard_ratio"', 'kind = "marker_change"\nmarker = "CRP"\nat = 3.0',
     r"outcomes\[0\]\.marker: expected one of the trial's markers \(NfL\)"),
    ("follow_up = 12.0", 'follow_up = "12 fortnights"', r"follow_up: expected a time"),
    ('kind = "hazard_ratio"', 'kind = "score_difference"\nat = 2.5',
     r"outcomes\[0\]\.at: 2\.5 months is not a visit of the trial"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\nvalue = "0.81"',
     r"outcomes\[0\]\.value: expected a number"),
    ('range = [0.5, 1.0]', 'range = [0.5, 1.0]\ninterval = [0.9, 0.7]',
     r"outcomes\[0\]\.interval: expected the published \[low, high\]"),
])
def test_bad_trial_files_name_the_file_and_key(tmp_path, old, new, message):
    assert old in BASE
    path = tmp_path / "trials.toml"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as info:
        pub.load_trials(path)
    assert str(path) in str(info.value)


def test_cli_trial(tmp_path, capsys):
    assert main(["trial", "--list"]) == 0
    assert "mirocals" in capsys.readouterr().out
    assert main(["trial", "mirocal"]) == 2
    err = capsys.readouterr().err
    assert "unknown published trial 'mirocal'" in err and "did you mean" in err.lower()
    out = tmp_path / "checks.json"
    assert main(["trial", "imodals", "--pool", "40", "--reps", "5", "--quiet",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "imodals" in text and "published outcomes reproduced" in text
    doc = json.loads(out.read_text())
    assert [c["outcome"] for c in doc["checks"]] == [o.name for o in
                                                     pub.published_spec("imodals").outcomes]
    # an existing checks file is replaced only with --overwrite
    assert main(["trial", "imodals", "--pool", "40", "--reps", "5", "--quiet",
                 "--json", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["trial", "imodals", "--pool", "1", "--quiet"]) == 2


def test_cli_trial_file_of_ones_own(tmp_path, capsys, null_spec):
    path = tmp_path / "mine.toml"
    path.write_text(null_spec)
    assert main(["trial", "--file", str(path), "--list"]) == 0
    assert capsys.readouterr().out.startswith("null ")
    assert main(["trial", "--file", str(path), "null", "--pool", "20", "--reps", "3",
                 "--quiet"]) == 0
    assert "null: two placebo arms" in capsys.readouterr().out
    assert main(["trial", "--file", str(path), "mirocals"]) == 2
    assert f"unknown published trial 'mirocals' (trials in {path}: null)" in \
        capsys.readouterr().err
    assert main(["trial", "--file", str(tmp_path / "none.toml"), "--list"]) == 2
    assert "cannot read the trials file" in capsys.readouterr().err


def test_riluzole_library_entry():
    (iv,) = pg.library("riluzole")
    # issue 13: the excitotoxic drive only (the fglu part of k0), not the whole hazard
    # since the second recalibration it fades (the benefit narrowed after the first year,
    # Bensimon 1994); since the third (als_systemic alpha1 0.02, alpha2 0.5) after 8 months
    # (at 4 the 18-month HR rose to 0.83-0.87): x0.05, after 8 months, half-life 4 months
    assert iv.scale == {"glu": 0.05}
    assert iv.fade == (8.0, 4.0)
    (half,) = pg.library("riluzole", strength=0.5)
    assert half.scale["glu"] == pytest.approx(0.05 ** 0.5)


def test_mirocals_benefit_is_larger_at_low_neurofilament(checks):
    # The published direction (43-48 % lower risk of death at low pNfH, none at high): the
    # low-NfL HR misses its published size (a strict xfail above) but the effect must stay
    # clearly larger there than in the top quarter (0.81 vs 0.99 at pool 1000, seed 1).
    low = checks["mirocals"]["death_hr_low_nfl"].simulated
    high = checks["mirocals"]["death_hr_high_nfl"].simulated
    overall = checks["mirocals"]["death_hr"].simulated
    assert low < overall < high
    assert high - low > 0.1, (low, high)


def _broken(name, arm, interventions):
    """The published trial with one arm's treatment replaced: ``interventions`` is a list of
    (library name, options) pairs."""
    spec = pub.published_spec(name)
    arms = dict(spec.arms)
    arms[arm] = (arms[arm][0], [iv for n, o in interventions for iv in pg.library(n, **o)])
    return dataclasses.replace(spec, arms=arms)


BLOCK = ("glial_block", {})
RILUZOLE = ("riluzole", {})


@pytest.mark.parametrize("name, arm, interventions, fails", [
    # no drug: no CRP drop
    ("tocilizumab", "tocilizumab", [], {"crp_change"}),
    # a lasting disease-modifying effect: seen at 12 months and in survival
    ("tocilizumab", "tocilizumab", [("tocilizumab", {}), BLOCK],
     {"alsfrs_12m", "death_hr_18m"}),
    # a benefit that is not confined to low neurofilament (the ceiling on every patient)
    ("mirocals", "low-dose IL-2", [RILUZOLE, BLOCK], {"death_hr_high_nfl"}),
    # no Treg response
    ("imodals", "2 MIU", [], {"treg_rise_2miu", "treg_rise_dose"}),
    # an effect in every progressor, not only in the slower ones
    ("masitinib", "masitinib 4.5", [RILUZOLE, BLOCK], {"slowing_fast"}),
    # riluzole's effect held for life: far more than the published 2-3 months
    ("riluzole", "riluzole", [("riluzole", {"fade_after": 1e9})], {"median_gain"}),
], ids=["tocilizumab-no-drug", "tocilizumab-lasting", "mirocals-everyone", "imodals-no-drug",
        "masitinib-everyone", "riluzole-no-fade"])
def test_the_checks_fail_when_the_published_pattern_breaks(name, arm, interventions, fails):
    # Each published outcome is a range wide enough for the model's seed-to-seed spread; these
    # mis-specified treatments show the ranges are narrow enough to refuse a wrong pattern
    # (a small pool: the broken effects are far outside their ranges).
    spec = _broken(name, arm, interventions)
    got = {c.outcome: c for c in pub.check_published(spec, pool_size=300, reps=2, seed=1)}
    failed = {k for k, c in got.items() if not c.passed}
    assert fails <= failed, {k: (got[k].simulated, got[k].range) for k in fails}
