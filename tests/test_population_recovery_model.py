"""The well-specified recovery study's simulation (benchmarks/population_recovery_model.py).

Its replicates keep the clinic generator's design and draw the values from the fit's own
population model at a known truth. Checked here on 60 patients: the design is the
generator's; with Omega ~ 0 the values scatter around the typical patient's predictions with
the stated residual SDs; CRP below the hs-CRP floor is censored at it. The 50-replicate study
itself is a benchmark (minutes per fit), not a test.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import population_recovery_model as prm  # noqa: E402

# checks of a benchmark study's simulation (~30 s): slow, run with -m slow (the CI budget)
pytestmark = pytest.mark.slow

N = 60


@pytest.fixture(scope="module")
def replicates():
    cfg = prm.pr.read_config()
    quiet = copy.deepcopy(prm.TRUTH)
    quiet["omega"] = {k: 1e-12 for k in quiet["omega"]}
    noiseless = copy.deepcopy(quiet)
    noiseless["sigma"] = {k: 1e-9 for k in noiseless["sigma"]}
    noisy, _, _ = prm.simulate_replicate(N, 7, cfg, quiet)
    exact, onset, redraws = prm.simulate_replicate(N, 7, cfg, noiseless)
    return cfg, noisy, exact, onset, redraws


def test_design_is_the_generators(replicates):
    from progression.als.synthetic import synthetic_cohort
    from progression.fit.design import designs_from_cohort

    cfg, noisy, _, onset, redraws = replicates
    cohort, _ = synthetic_cohort(prm.pr.COHORT_CONFIG, n=N, seed=7)
    ref, _ = designs_from_cohort(cohort, cfg)
    assert [d.id for d in noisy] == [d.id for d in ref]
    for a, b in zip(noisy, ref, strict=True):
        np.testing.assert_array_equal(a.time, b.time)
        np.testing.assert_array_equal(a.obs, b.obs)
        assert a.offset_covariate == b.offset_covariate
    # every typical patient reaches clinical onset; its model time is the typical one
    assert redraws == 0
    t = np.array(list(onset.values()))
    assert np.all(np.isfinite(t)) and np.all(t > 0)


@pytest.mark.parametrize("name", ["ALSFRS_R", "NfL"])
def test_residuals_have_the_stated_sd(replicates, name):
    cfg, noisy, exact, _, _ = replicates
    from progression.fit.problem import Problem

    k = list(Problem.from_config(cfg).observables).index(name)
    log = name != "ALSFRS_R"
    r = []
    for a, b in zip(noisy, exact, strict=True):
        m = np.asarray(a.obs) == k
        ya, yb = np.asarray(a.value)[m], np.asarray(b.value)[m]
        r.append(np.log(ya) - np.log(yb) if log else ya - yb)
    r = np.concatenate(r)
    assert r.size > 100
    # SD of n >= 100 normal draws: within 20 % of the truth (about 3 standard errors)
    assert abs(r.std() / prm.TRUTH["sigma"][name] - 1.0) < 0.2
    assert abs(r.mean()) < 3 * prm.TRUTH["sigma"][name] / np.sqrt(r.size)


def test_crp_below_the_floor_is_censored(replicates):
    cfg, noisy, _, _, _ = replicates
    from progression.fit.problem import Problem

    k = list(Problem.from_config(cfg).observables).index("CRP")
    cens = np.concatenate([np.asarray(d.cens)[np.asarray(d.obs) == k] for d in noisy])
    vals = np.concatenate([np.asarray(d.value)[np.asarray(d.obs) == k] for d in noisy])
    lim = np.concatenate([np.asarray(d.limit)[np.asarray(d.obs) == k] for d in noisy])
    assert np.all(vals >= prm.CRP_FLOOR)
    assert np.all((cens == 1) == (vals == prm.CRP_FLOOR))
    assert np.all(lim[cens == 1] == prm.CRP_FLOOR) and np.all(np.isnan(lim[cens == 0]))
    other = np.concatenate([np.asarray(d.cens)[np.asarray(d.obs) != k] for d in noisy])
    assert not np.any(other)


def _fake_line(seed, key, n):
    part = {"k0": {"rel_error": 0.01 * (seed - 100), "covered": True, "truth": 1.0,
                   "estimate": 1.0 + 0.01 * (seed - 100), "se_scale": 0.05}}
    return {"seed": seed, "key": key, "n": n, "seconds": 10.0, "covariance_ok": True,
            "started": f"t{seed}", "finished": f"t{seed}",
            "score": {"typical": part, "omega": part, "coefficients": {}}}


def test_study_runs_through_the_shared_resumable_loop(tmp_path, monkeypatch):
    """prm.run is population_recovery.run_study with this study's replicate: seeds already
    in the jsonl (same key) are skipped, other options are another study, the summary is
    this study's (well specified)."""
    calls = []

    def fake(seed, n, config_path, options, text, keep=None, design="clinic", lr=()):
        calls.append(seed)
        line = _fake_line(seed, prm.key_of(text, options, n, design), n)
        line["lr"] = {name: {"held": 1.0, "delta_ofv": 0.1 * (seed - 99)} for name in lr}
        return line

    monkeypatch.setattr(prm, "run_replicate", fake)
    out = tmp_path / "model.study"
    meta, s = prm.run(3, n=20, seed0=100, out=out, verbose=False, lr=("k0",))
    assert calls == [100, 101, 102]
    assert meta["lr"] == ["k0"] and s["profile"]["k0"]["covered"] == 3
    assert "| k0 | 3/3 = 100% | 0.20 |" in Path(str(out) + ".md").read_text()
    _, s = prm.run(5, n=20, seed0=100, out=out, verbose=False)
    assert calls == [100, 101, 102, 103, 104]
    assert s["succeeded"] == 5
    assert s["typical"]["k0"]["median_rel_error"] == pytest.approx(0.02)
    assert "(well specified)" in Path(str(out) + ".md").read_text()
    prm.run(1, n=20, seed0=100, out=out, options={"saem_chains": 4}, verbose=False)
    assert calls[-1] == 100


def test_a_held_omega_is_scored_as_held_not_covered():
    """A variance fixed in the fit (eta_fixed: a fixed 1 x 1 Omega block) is reported as held:
    no coverage counted for it (its 'SE' is not an uncertainty), and the summary says so."""
    from types import SimpleNamespace

    pr = prm.pr
    pop = SimpleNamespace(
        fixed_effects={"eD": 0.33}, bounds={"eD": (0.01, 5.0)}, scales={"eD": "log"},
        covariance_names=("theta eD",), covariance=np.diag([0.1 ** 2]),
        omega_names=("eD",), omega=np.array([[0.09]]), omega_se={"eD": 0.0},
        omega_blocks=({"parameters": ["eD"], "fixed": True},), coefficients={})
    truth = {"typical": {"eD": 0.34}, "omega": {"eD": 0.09}, "coefficients": {}}
    s = pr.score(pop, truth)
    assert s["omega"]["eD"]["held"] is True and s["omega"]["eD"]["covered"] is None
    assert s["typical"]["eD"]["covered"] is True          # |log(0.33/0.34)| < 1.96 * 0.1
    free = pr.score(SimpleNamespace(**{**vars(pop), "omega_se": {"eD": 0.03},
                                       "omega_blocks": ({"parameters": ["eD"],
                                                         "fixed": False},)}), truth)
    assert free["omega"]["eD"]["held"] is False and free["omega"]["eD"]["covered"] is True
    line = {"seed": 1, "key": "k", "seconds": 1.0, "covariance_ok": True, "started": "a",
            "finished": "b", "score": s}
    summ = pr.summarise([line])
    assert summ["omega"]["eD"]["held"] == 1 and summ["omega"]["eD"]["with_se"] == 0
    meta = {"title": "t", "command": "c", "config": "c", "config_sha": "0" * 12,
            "cohort_config": "g", "n": 1, "seed0": 1, "options": {}, "jsonl": "j",
            "truth_note": ""}
    assert "eD omega^2 (held, not estimated)" in pr.markdown(meta, summ)


def test_treg_all_design_adds_treg_rows_only():
    """The `treg_all` design: Treg % at every visit; the same patients, visits and every
    other measured value as the clinic design (the generator's random stream unchanged)."""
    from progression.als.synthetic import synthetic_cohort

    clinic, _ = synthetic_cohort(prm.design_config("clinic"), n=N, seed=7)
    rich, _ = synthetic_cohort(prm.design_config("treg_all"), n=N, seed=7)
    assert clinic.subjects == rich.subjects
    for name in ("ALSFRS_R", "NfL", "CRP"):
        a, b = clinic.observations(name), rich.observations(name)
        for col in ("subject", "time", "value", "cens"):
            np.testing.assert_array_equal(a[col], b[col])
    # Treg % at every visit (the ALSFRS-R visits), the clinic's Treg % visits among them
    visits = {(s, t) for s, t in zip(*(rich.observations("ALSFRS_R")[c]
                                      for c in ("subject", "time")), strict=True)}
    treg = rich.observations("Treg_pct")
    assert {(s, t) for s, t in zip(treg["subject"], treg["time"], strict=True)} == visits
    few = clinic.observations("Treg_pct")
    assert few["time"].size < 0.4 * treg["time"].size
    assert {(s, t) for s, t in zip(few["subject"], few["time"], strict=True)} <= visits
    assert prm.key_of("x", {}, N, "treg_all") != prm.key_of("x", {}, N)


def test_likelihood_ratio_study_resimulates_a_recorded_replicate():
    """benchmarks/population_recovery_lr.py refits a well-specified study's replicate with
    one parameter held: it draws the data again from the truth the replicate recorded (here
    the treg_all study of 2026-12-01, whose config put the NfL offset on kappa_nfl) and gets
    the replicate's observations back (count and censored CRP values)."""
    import json

    import population_recovery_lr as lr

    study = ROOT / "benchmarks" / "results" / "population_recovery_model_treg_all"
    meta = json.loads(study.with_suffix(".meta.json").read_text())
    line = json.loads(study.with_suffix(".jsonl").read_text().splitlines()[0])
    truth = lr.truth_of(line)
    assert truth["typical"]["kappa_nfl"] == 6000.0 and "nfl_scale" not in truth["omega"]
    cfg = prm.pr.read_config(str(ROOT / meta["config"]), meta["options"], meta["config_text"])
    designs = lr.simulate(line, int(meta["n"]), cfg, meta["design"])
    assert sum(d.n for d in designs) == line["observations"]
    assert sum(int(np.sum(np.asarray(d.cens) != 0)) for d in designs) == line["censored"]
    assert prm.truth_in_score(line["score"], "omega^2 eD") == 0.09
    assert prm.truth_in_score(line["score"], "eD") == 0.34
