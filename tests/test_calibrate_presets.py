"""The recalibrated cohort presets: bounded CRP measurement model, the assay keys' bad inputs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from progression.als.cohort_config import PopulationConfig
from progression.als.synthetic import synthetic_cohort
from progression.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"


def _doc(**crp):
    doc = tomllib.loads(CLINIC.read_text())
    spec = {k: v for k, v in doc["observables"]["CRP"].items()
            if k not in ("upper", "residual_bound")}
    spec.update(crp)
    doc["observables"]["CRP"] = spec
    return doc


def _crp(cohort):
    obs = cohort.observations("CRP")
    return obs["value"], obs["cens"], obs["limit"]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_crp_is_bounded_by_the_assay_and_the_truncated_residual():
    # a deliberately wild residual (Student-t with 1 degree of freedom, scale 2) shows the
    # two bounds: without them values reach far beyond any assay
    wild = dict(residual="t", df=1, residual_sd=2.0)
    free = PopulationConfig.from_dict(_doc(**wild), "wild")
    values, _, _ = _crp(synthetic_cohort(free, n=80, seed=4)[0])
    assert values.max() > 1e4
    capped = PopulationConfig.from_dict(_doc(**wild, upper=300.0), "capped")
    values, cens, limit = _crp(synthetic_cohort(capped, n=80, seed=4)[0])
    assert values.max() == 300.0
    top = values == 300.0
    assert (cens[top] == -1).all() and (limit[top] == 300.0).all() and (cens[~top] >= 0).all()
    bounded = PopulationConfig.from_dict(_doc(**wild, residual_bound=1.0), "bounded")
    cohort, _ = synthetic_cohort(bounded, n=80, seed=4)
    values, _, _ = _crp(cohort)
    # |residual| <= 1 scale unit = factor e^2; subject offset SD 0.8 (< 4 SD for 80 patients),
    # model CRP below 10 mg/L: at most 10 * e^(3.2 + 2) ~ 1,800
    assert values.max() < 1800.0


def test_configs_without_assay_keys_keep_their_random_numbers():
    # the truncation redraws come after every other draw: another observable's values and the
    # ALSFRS-R scores do not change when CRP gets a residual bound
    # (one round of candidates: later rounds start from the generator's state after the
    # redraws; oversample 3 makes one round enough)
    one = _doc()
    one["enrolment"]["oversample"] = 3.0
    plain = PopulationConfig.from_dict(one, "plain")
    one = _doc(residual_bound=0.5)
    one["enrolment"]["oversample"] = 3.0
    bounded = PopulationConfig.from_dict(one, "bounded")
    a, _ = synthetic_cohort(plain, n=30, seed=2)
    b, _ = synthetic_cohort(bounded, n=30, seed=2)
    for name in ("ALSFRS_R", "NfL"):
        np.testing.assert_array_equal(a.observations(name)["value"],
                                      b.observations(name)["value"])
    assert not np.array_equal(a.observations("CRP")["value"], b.observations("CRP")["value"])


def test_shipped_presets_bound_crp():
    for name in ("als_clinic", "als_trial"):
        cfg = PopulationConfig.from_dict(tomllib.loads(
            (ROOT / "configs" / "cohorts" / f"{name}.toml").read_text()), name)
        assert dict((n, (u, b)) for n, u, b in cfg.assay_limits)["CRP"] == (300.0, 4.0)


@pytest.mark.parametrize(("crp", "names"), [
    ({"upper": -1.0}, ["observables.CRP.upper"]),
    ({"upper": "high"}, ["observables.CRP.upper"]),
    ({"residual_bound": 0.0}, ["observables.CRP.residual_bound"]),
    ({"residual_bound": [1, 2]}, ["observables.CRP.residual_bound"]),
    ({"uper": 300.0}, ["observables.CRP", "uper"]),
])
def test_bad_assay_keys_name_the_file_and_key(crp, names):
    with pytest.raises(ConfigError) as info:
        PopulationConfig.from_dict(_doc(**crp), "preset.toml")
    text = str(info.value)
    assert "preset.toml" in text
    for name in names:
        assert name in text, text


CAL = ROOT / "configs" / "calibration"


def test_check_cli_prints_the_targets_over_seeds(capsys):
    from progression.cli import main

    code = main(["calibrate", str(CAL / "als_clinic.toml"), "--check", "2", "--n", "120"])
    out = capsys.readouterr().out
    assert code == 0 and "| latent_survival_10y |" in out and "mean over 2 seeds" in out
    assert "targets in range in every seed (seeds [1, 2])" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["als_clinic", "als_trial"])
def test_recalibrated_presets_meet_their_targets_over_5_seeds(name):
    """The issue-13 table: every calibration target of the shipped preset within its published
    range in the mean over seeds 1-5 (1,000 patients each); misses in single seeds are
    listed in the README."""
    from progression.als.calibration import check, format_check

    results = check(CAL / f"{name}.toml", seeds=(1, 2, 3, 4, 5))
    print(format_check(results, (1, 2, 3, 4, 5)))
    assert all(t.passed for t in results), [t.name for t in results if not t.passed]
