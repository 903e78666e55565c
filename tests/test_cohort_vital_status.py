"""[vital_status] of the ALS cohort config: a registry that ascertains death beyond the visits.

Issue 13: with death recorded only while a patient was seen (12-60 months after diagnosis),
0-5 of 1,000 clinic patients were followed 120 months after onset and the observed 10-year
survival was noise. With ``[vital_status] follow_up`` the registry keeps the vital status
after a dropout and after the visits end; the visits themselves do not change.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from progression.als.cohort_config import PopulationConfig
from progression.als.synthetic import synthetic_cohort
from progression.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"


def _doc(vital=None):
    doc = tomllib.loads(CLINIC.read_text())
    doc.pop("vital_status", None)
    if vital is not None:
        doc["vital_status"] = vital
    # a horizon long enough for the longest registry follow-up of every candidate, so that
    # both configs enrol the same candidates (the horizon check uses the longer end)
    doc["cohort"]["horizon"] = 720.0
    doc["dropout"]["rate"] = 0.03          # many dropouts: the case the registry changes
    return doc


@pytest.fixture(scope="module")
def pair():
    plain = PopulationConfig.from_dict(_doc(), "plain.toml")
    registry = PopulationConfig.from_dict(_doc({"follow_up": [12.0, 150.0]}), "registry.toml")
    return synthetic_cohort(plain, n=150, seed=3), synthetic_cohort(registry, n=150, seed=3)


def test_shipped_clinic_preset_follows_vital_status_as_a_registry():
    cfg = PopulationConfig.from_dict(tomllib.loads(CLINIC.read_text()), "als_clinic")
    assert cfg.vital_follow_up == (12.0, 150.0)
    assert cfg.vital_follow_up[1] >= cfg.follow_up[1]


def test_vital_status_changes_the_deaths_recorded_not_the_visits(pair):
    (a, ta), (b, tb) = pair
    assert a.subjects == b.subjects and a.covariates == b.covariates
    oa, ob = a.observations(), b.observations()
    for key in ("subject", "time", "observable", "value", "cens"):
        np.testing.assert_array_equal(oa[key], ob[key])
    np.testing.assert_array_equal(ta["death_model_time"], tb["death_model_time"])
    assert "vital status followed 12-150 months" in b.notes[-1]


def test_registry_records_each_death_before_its_vital_status_end(pair):
    (a, ta), (b, tb) = pair
    u = np.array([a.covariates[s]["study_end_time"] for s in a.subjects])   # visits' end
    death_rel = tb["death_model_time"] - tb["time_offset"]     # months since enrolment
    late_deaths = 0
    for k, s in enumerate(b.subjects):
        ev_a, ev_b = a.event(s), b.event(s)
        last = max(b.observations()["time"][b.observations()["subject"] == s])
        assert ev_b.time >= last - 1e-9
        d = death_rel[k]
        if ev_b.type == "death":
            # recorded at the death (rounded up to 0.01 month), within the registry's window
            assert ev_b.time == pytest.approx(math.ceil(d * 100) / 100, abs=1e-9)
            assert d <= 150.0 + 0.01
            late_deaths += ev_a.type != "death"
        else:
            # alive at the end of the registry's follow-up (never before the visits' end)
            assert not d <= ev_b.time and u[k] - 0.01 <= ev_b.time <= 150.0 + 1e-9
        if ev_a.type == "death":
            assert ev_b.type == "death" and ev_b.time == ev_a.time
    # deaths after a dropout or after the visits' end: the point of the registry
    assert late_deaths > 10


@pytest.mark.parametrize(("vital", "message"), [
    ({"follow_up": [12.0, 40.0]}, "at least the visits' follow-up [12, 60]"),
    ({"follow_up": [6.0, 150.0]}, "at least the visits' follow-up [12, 60]"),
    ({"follow_up": [150.0, 12.0]}, "low <= high"),
    ({"follow_up": "long"}, "expected two numbers [low, high]"),
    ({"follow_up": [12.0, 150.0], "follow_upp": 3}, "unknown key"),
    ({}, "expected [low, high] months after enrolment, found no follow_up key"),
    ("registry", "expected a table"),
])
def test_bad_vital_status_names_the_file_and_key(vital, message):
    with pytest.raises(ConfigError) as info:
        PopulationConfig.from_dict(_doc(vital), "preset.toml")
    text = str(info.value)
    assert "preset.toml" in text and "vital_status" in text and message in text, text
