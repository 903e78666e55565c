"""Cohort object, readers and writers: examples load, every format round-trips."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from progression.data import Cohort, read_cohort, write_cohort
from progression.errors import DataError

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"


def rich_cohort(**kw) -> Cohort:
    """Three subjects with every table filled: censoring, doses, resets, covariates, events."""
    obs = {
        "subject": ["S1", "S1", "S1", "S1", "S2", "S2", "S10", "S10", "S10"],
        "time": [0.0, 0.0, 3.1, 6.25, 0.0, 2.5, 0.0, 0.0, 1.0 / 3.0],
        "observable": ["ALSFRS_R", "CRP", "ALSFRS_R", "NfL", "ALSFRS_R", "CRP", "ALSFRS_R",
                       "NfL", "ALSFRS_R"],
        "value": [41, 0.3, 38, 101.5, 36, 7.25, 44, 20000, 43],
        "cens": [0, 1, 0, 0, 0, 0, 0, -1, 0],
        "limit": [np.nan, 0.3, np.nan, np.nan, np.nan, np.nan, np.nan, 20000, np.nan],
    }
    doses = {"subject": ["S1", "S1", "S2"], "time": [1.0, 2.0, 1.5],
             "amount": [1.0, 1.0, 0.0], "target": ["IL2", "IL2", ""],
             "rate": [np.nan, 6.0, np.nan], "duration": [0.164, np.nan, np.nan],
             "reset": [False, False, True]}
    tv = {"subject": ["S1", "S1", "S2"], "time": [0.0, 3.0, 0.0], "name": ["weight"] * 3,
          "value": [80.0, 77.5, 64.0]}
    events = {"subject": ["S1", "S2", "S10"], "time": [14.2, 9.0, 0.5],
              "event": ["death", "tracheostomy", "censored"]}
    covariates = {"S1": {"age": 61.0, "sex": "male", "c9orf72": 1.0},
                  "S2": {"age": 67.5, "sex": "female"},
                  "S10": {"age": 54.0, "sex": "male", "c9orf72": 0.0}}
    return Cohort(obs, doses=doses, time_varying=tv, events=events, covariates=covariates,
                  units={"ALSFRS_R": "points", "NfL": "pg/mL", "CRP": "mg/L"}, **kw)


# ------------------------------------------------------------------------------ examples


@pytest.mark.parametrize("name", ["long.csv", "wide.csv", "nonmem.csv", "proact"])
def test_example_loads(name):
    cohort = read_cohort(EXAMPLES / name)
    assert len(cohort) >= 5
    assert {"ALSFRS_R", "CRP", "NfL"} <= set(cohort.observables)
    assert cohort.time_unit == "month"
    assert cohort.units["ALSFRS_R"] == "points"
    obs = cohort.observations("ALSFRS_R")
    assert ((obs["value"] >= 0) & (obs["value"] <= 48)).all()


def test_long_wide_nonmem_examples_hold_the_same_measurements():
    long = read_cohort(EXAMPLES / "long.csv").observations()
    for name in ("wide.csv", "nonmem.csv"):
        other = read_cohort(EXAMPLES / name).observations()
        np.testing.assert_array_equal(other["time"], long["time"])
        np.testing.assert_array_equal(other["value"], long["value"])
        np.testing.assert_array_equal(other["cens"], long["cens"])


def test_nonmem_example_roles_and_notes():
    c = read_cohort(EXAMPLES / "nonmem.csv")
    assert c.subjects[:2] == ("1", "2")
    assert c.covariates["1"] == {"age": 61.0, "sex": "male"}
    assert set(c.doses["target"]) == {"IL2"}
    assert c.event("2") == (14.2, "death")
    w = c.subject("1").time_varying["weight"]
    np.testing.assert_array_equal(w[0], [0.0, 6.0])
    assert any("MDV 1" in n and "row 37" in n for n in c.notes)


def test_proact_example_conventions():
    c = read_cohort(EXAMPLES / "proact")
    notes = "\n".join(c.notes)
    assert "30.4375" in notes
    assert "sum of the 12 items" in notes and "original-ALSFRS-only" in notes
    assert "Albumin (14)" in notes and "1006" in notes
    # mg/dL -> mg/L (x10) and ng/mL -> pg/mL (x1000)
    crp = c.subject("1002")["CRP"]
    assert crp.value[0] == pytest.approx(3.76)
    nfl = c.subject("1001")["NfL"]
    assert nfl.value[-1] == pytest.approx(95.0)
    assert c.subject("1003")["CRP"].cens[0] == 1
    # day offsets become months of 30.4375 days; screening visits before enrolment are kept
    t = c.subject("1001")["ALSFRS_R"].time
    assert t[0] == pytest.approx(-7 / 30.4375) and t[-1] == pytest.approx(365 / 30.4375)
    assert c.event("1002") == pytest.approx((410 / 30.4375, "death")) or \
        c.event("1002").type == "death"
    assert c.event("1001").type == "censored"
    cov = c.covariates["1004"]
    assert cov["site_of_onset"] == "limb"
    assert cov["diagnostic_delay"] == pytest.approx(230 / 30.4375)
    assert c.covariates["1002"]["age"] == pytest.approx(25202 / 365.25)


def test_proact_file_dict_and_mapping(tmp_path):
    (tmp_path / "frs.csv").write_text("SubjectID,feature_delta,ALSFRS_R_Total\n7,0,40\n7,30,39\n")
    (tmp_path / "labs.csv").write_text(
        "SubjectID,Test_Name,Test_Result,Test_Unit,Laboratory_Delta\n"
        "7,Interleukin-6,3.1,pg/mL,0\n7,CRP,2,mg/L,0\n")
    c = read_cohort({"alsfrs": tmp_path / "frs.csv", "labs": tmp_path / "labs.csv"},
                    mapping={"subject_id": "SubjectID", "ALSFRS_Delta": "feature_delta"},
                    lab_map={"Interleukin-6": ("IL6", "pg/mL"), "CRP": None}, to_unit="day")
    assert c.observables == ("ALSFRS_R", "IL6")
    assert c.time_unit == "day"
    assert c.subject("7")["ALSFRS_R"].time.tolist() == [0.0, 30.0]


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["long", "wide", "nonmem"])
def test_round_trip_rich_cohort(tmp_path, fmt):
    cohort = rich_cohort()
    files = write_cohort(cohort, tmp_path / "c.csv", format=fmt)
    assert all(f.exists() for f in files)
    back = read_cohort(tmp_path / "c.csv")
    assert back == cohort


@pytest.mark.parametrize("fmt", ["long", "wide", "nonmem", "proact"])
@pytest.mark.parametrize("example", ["long.csv", "nonmem.csv", "proact"])
def test_round_trip_examples(tmp_path, fmt, example):
    cohort = read_cohort(EXAMPLES / example)
    if fmt == "proact" and example != "proact":
        # PRO-ACT holds neither doses nor ventilation events: select what it can hold.
        keep = [s for s in cohort.subjects if cohort.event(s) is None
                or cohort.event(s).type in ("death", "censored")]
        cohort = cohort.select(keep)
        if len(cohort.doses["subject"]) or len(cohort.time_varying["subject"]):
            with pytest.raises(DataError, match="cannot hold"):
                write_cohort(cohort, tmp_path / "out", format=fmt)
            return
    target = tmp_path / ("out" if fmt == "proact" else "out.csv")
    write_cohort(cohort, target, format=fmt)
    assert read_cohort(target) == cohort


def test_round_trip_keeps_day_unit_when_asked(tmp_path):
    cohort = rich_cohort(time_unit="day", time_origin="onset")
    write_cohort(cohort, tmp_path / "d.csv")
    assert read_cohort(tmp_path / "d.csv", to_unit=None) == cohort
    in_months = read_cohort(tmp_path / "d.csv")
    assert in_months.time_unit == "month"
    assert in_months == cohort.to_time_unit("month")
    assert in_months.time_origin == "onset"


def test_negative_times_round_trip_through_sidecar(tmp_path):
    cohort = rich_cohort(allow_negative_time=True).select(["S1"])
    shifted = Cohort({**{k: v for k, v in cohort.observations().items()},
                      "time": cohort.observations()["time"] - 1.0},
                     allow_negative_time=True)
    write_cohort(shifted, tmp_path / "n.csv", format="nonmem")
    assert read_cohort(tmp_path / "n.csv") == shifted


def test_long_with_mapping_and_side_tables(tmp_path):
    (tmp_path / "m.csv").write_text("ID,t,test,result\nA,0,ALSFRS_R,40\nA,2,ALSFRS_R,<30\n"
                                    "B,1,ALSFRS_R,35\nA,1,ALSFRS_R,39\n")
    (tmp_path / "ev.csv").write_text("ID,time,status\nA,20,Died\n")
    c = read_cohort(tmp_path / "m.csv", format="long", events=tmp_path / "ev.csv",
                    mapping={"subject": "ID", "time": "t", "observable": "test",
                             "value": "result"}, time_unit="week", time_origin="diagnosis")
    assert c.subjects == ("A", "B")
    a = c.subject("A")["ALSFRS_R"]
    assert a.cens.tolist() == [0, 0, 1] and a.limit[2] == 30
    assert a.time[1] == pytest.approx(7 / 30.4375)
    assert c.event("A").type == "death"
    assert any("sorted" in n for n in c.notes)
    assert any("1 month = 4.34821 weeks" in n for n in c.notes)


# ------------------------------------------------------------------------------ the API


def test_cohort_api():
    c = rich_cohort()
    assert c.subjects == ("S1", "S2", "S10") and len(c) == 3 and "S2" in c
    assert c.observables == ("ALSFRS_R", "CRP", "NfL")
    s1 = c.subject("S1")
    assert s1.times("ALSFRS_R").tolist() == [0.0, 3.1]
    assert s1.values("ALSFRS_R").tolist() == [41.0, 38.0]
    assert s1.event == (14.2, "death")
    assert s1.covariates["sex"] == "male"
    assert s1.doses["amount"].tolist() == [1.0, 1.0]
    crp = c.observations("CRP")
    assert crp["subject"].tolist() == ["S1", "S2"] and crp["cens"].tolist() == [1, 0]
    with pytest.raises(ValueError):
        crp["value"][0] = 1.0  # read-only views
    one = c.observations(subject="S10")
    assert one["observable"].tolist() == ["ALSFRS_R", "NfL", "ALSFRS_R"]
    assert np.isnan(c.covariate("c9orf72")[1])
    assert c.covariate("sex").tolist() == ["male", "female", "male"]
    with pytest.raises(DataError, match="did you mean 'S10'"):
        c.subject("S100")
    with pytest.raises(DataError, match="no subject 'X'"):
        c.select(["S1", "X"])


def test_select_and_equality():
    c = rich_cohort()
    assert c == rich_cohort()
    sub = c.select(["S10", "S1"])
    assert sub.subjects == ("S1", "S10")
    assert set(sub.doses["subject"]) == {"S1"}
    assert sub != c
    obs = dict(c.observations())
    obs["value"] = obs["value"].copy()
    obs["value"][0] += 1
    changed = Cohort(obs, units=c.units)
    assert changed != Cohort(c.observations(), units=c.units)
    assert c != rich_cohort(time_origin="onset")


def test_summary_dict_and_table():
    s = rich_cohort().summary()
    assert s["n_subjects"] == 3
    assert s["observables"]["ALSFRS_R"]["n_observations"] == 5
    assert s["observables"]["CRP"]["n_censored"] == 1
    assert s["visits_per_subject"] == {"median": 2.0, "min": 2, "max": 3}
    assert s["follow_up"]["median"] == pytest.approx(2.5)
    assert s["events"] == {"censored": 1, "death": 1, "tracheostomy": 1}
    text = str(s)
    assert "ALSFRS_R" in text and "points" in text and "death 1" in text


def test_plot_spaghetti_labels_units():
    import matplotlib.pyplot as plt

    c = read_cohort(EXAMPLES / "long.csv")
    ax = c.plot_spaghetti("NfL")
    assert ax.get_ylabel() == "NfL (pg/mL)"
    assert ax.get_xlabel() == "time since enrolment (months)"
    assert len(ax.lines) == len(c)
    fig, ax2 = plt.subplots()
    assert c.plot_spaghetti("CRP", ax=ax2, subjects=["P06"]) is ax2
    assert len(ax2.lines) == 2  # the trajectory and its censored marker
    plt.close("all")


def test_to_time_unit_converts_times_and_rates():
    c = rich_cohort()
    d = c.to_time_unit("day")
    assert d.time_unit == "day"
    assert d.observations()["time"][2] == pytest.approx(3.1 * 30.4375)
    assert d.doses["rate"][1] == pytest.approx(6.0 / 30.4375)
    assert d.to_time_unit("month") == c or np.allclose(
        d.to_time_unit("month").observations()["time"], c.observations()["time"])
