"""Validation: a catalogue of broken files, each answered by one DataError naming the place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from progression.data import Cohort, read_cohort, validation
from progression.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
BROKEN = Path(__file__).resolve().parent / "data" / "broken"
EXAMPLES = ROOT / "data" / "examples"

WIDE = {"subject": "patient_id", "time": "month"}

# (file or folder, read_cohort keywords, number of problems, substrings of the message)
CATALOGUE = [
    ("long_missing_column.csv", {}, 1,
     ["row 1, column 'time'", "required column 'time'", "did you mean 'tme'"]),
    ("long_non_numeric_time.csv", {}, 1,
     ["long_non_numeric_time.csv, row 14, column 'time', subject 'P007': expected a number, "
      "found 'abc'"]),
    ("long_empty_value.csv", {}, 1,
     ["row 3, column 'value', subject 'P001': expected a value, found an empty cell"]),
    ("long_nan_value.csv", {}, 1, ["row 2, column 'value', subject 'P001'", "found 'NaN'"]),
    ("long_negative_time.csv", {}, 1,
     ["row 2, column 'time', subject 'P001': expected a time >= 0", "found -2"]),
    ("long_duplicate.csv", {}, 1,
     ["row 4, column 'observable', subject 'P001'", "second row for observable 'ALSFRS_R' at "
      "time 3 (first at row 3)"]),
    ("long_alsfrs_range.csv", {}, 1,
     ["row 2, column 'value', subject 'P001': expected an ALSFRS-R total in 0-48, found 52"]),
    ("long_censoring_without_limit.csv", {}, 1,
     ["row 2, column 'limit', subject 'P001': expected a limit for a censored value"]),
    ("long_bad_censoring_flag.csv", {}, 1,
     ["row 2, column 'cens', subject 'P001': expected one of 0, 1, -1, found '2'"]),
    ("long_empty_subject.csv", {}, 1,
     ["row 3, column 'subject': expected a subject identifier, found an empty cell"]),
    # The cause only: the padded row's empty cells are not reported again.
    ("long_ragged_row.csv", {}, 1,
     ["row 3: expected 4 fields as in the header, found 3"]),
    ("long_empty_file.csv", {}, 1, ["long_empty_file.csv: expected a header row"]),
    ("long_many_problems.csv", {}, 4,
     ["row 3, column 'time', subject 'P001'", "row 4, column 'value', subject 'P002'",
      "row 5, column 'value', subject 'P002'", "row 7, column 'observable', subject 'P003'"]),
    ("side_obs.csv", {"covariates": BROKEN / "side_covariates_unobserved.csv"}, 1,
     ["side_covariates_unobserved.csv, row 3, column 'subject', subject 'P009'",
      "has covariates but no observations"]),
    ("side_obs.csv", {"covariates": BROKEN / "side_covariates_duplicate.csv"}, 1,
     ["side_covariates_duplicate.csv, row 3", "subject 'P001'", "first at row 2"]),
    ("side_obs.csv", {"events": BROKEN / "side_events_unknown_type.csv"}, 1,
     ["side_events_unknown_type.csv, row 2, column 'event', subject 'P001'",
      "found 'deth' (did you mean 'death'?)"]),
    ("side_obs.csv", {"events": BROKEN / "side_events_duplicate.csv"}, 1,
     ["side_events_duplicate.csv, row 3", "expected one event row per subject",
      "first at row 2"]),
    ("side_obs.csv", {"doses": BROKEN / "side_doses_no_amount.csv"}, 1,
     ["side_doses_no_amount.csv, row 2, column 'amount', subject 'P001': expected a dose "
      "amount, found an empty cell"]),
    ("wide_missing_mapped_column.csv",
     {"format": "wide", "mapping": {**WIDE, "observables": {"ALSFRS_R": "alsfrs_total",
                                                            "NfL": "nfl"}}}, 1,
     ["row 1, column 'nfl': expected the column of observable NfL"]),
    ("wide_covariate_varies.csv",
     {"format": "wide", "mapping": {**WIDE, "observables": {"ALSFRS_R": "alsfrs_total"},
                                    "covariates": {"age": "age"}}}, 1,
     ["row 3, column 'age', subject 'P001': expected one value of covariate 'age' per "
      "subject, found 62 after 61"]),
    ("wide_bad_cell.csv",
     {"format": "wide", "mapping": {**WIDE, "observables": {"ALSFRS_R": "alsfrs_total",
                                                            "CRP": "crp"}}}, 1,
     ["row 3, column 'alsfrs_total', subject 'P001': expected a number", "found 'abc'"]),
    ("nonmem_evid_mdv.csv", {}, 1,
     ["row 3, column 'MDV', subject '1': expected MDV 1 on a non-observation row (EVID 1)"]),
    ("nonmem_dose_without_amount.csv", {}, 1,
     ["row 3, column 'AMT', subject '1': expected a dose amount (AMT) on a dose row"]),
    ("nonmem_unsorted.csv", {}, 1,
     ["row 4, column 'TIME', subject '1': expected times in non-decreasing order",
      "found 3 after 6 (row 3)"]),
    ("nonmem_not_contiguous.csv", {}, 1,
     ["row 4, column 'ID', subject '1': expected the rows of subject '1' to be contiguous"]),
    ("nonmem_bad_evid.csv", {}, 1,
     ["row 3, column 'EVID', subject '1': expected one of 0, 1, 2, 3, 4, found '7'"]),
    ("nonmem_observation_with_amount.csv", {}, 1,
     ["row 2, column 'AMT', subject '1': expected no dose amount on an observation row"]),
    ("nonmem_unknown_dvid.csv", {}, 1,
     ["row 3, column 'DVID', subject '1' (and 1 more rows): DVID 4 is not in the sidecar"]),
    ("nonmem_unknown_role.csv", {}, 1,
     ["nonmem_unknown_role.toml, columns.AGE: unknown role 'covarite'",
      "did you mean 'covariate'"]),
    ("nonmem_sidecar_problems.csv", {}, 3,
     ["unknown key 'dvids'", "key 'time_unit'", "found 'fortnight'",
      "names column 'WT', but"]),
    ("nonmem_censoring_without_limit.csv", {}, 1,
     ["row 2, column 'limit', subject '1': expected a limit for a censored value"]),
    ("nonmem_many_problems.csv", {}, 4,
     ["row 3, column 'MDV'", "row 3, column 'AMT'", "row 4, column 'TIME'",
      "row 5, column 'DV', subject '1': expected a number, found 'abc'"]),
    ("proact_missing_delta", {}, 1,
     ["PROACT_ALSFRS.csv, row 1, column 'ALSFRS_Delta': expected a required column"]),
    ("proact_bad_death", {}, 2,
     ["PROACT_DEATHDATA.csv, row 2, column 'Subject_Died', subject '1': expected Yes or No, "
      "found 'Maybe'",
      "row 3, column 'Death_Days', subject '2': expected Death_Days for a subject who died"]),
    ("proact_bad_lab_unit", {}, 2,
     ["PROACT_LABS.csv, row 2, column 'Test_Unit', subject '1': cannot convert 'mmol/L' to "
      "mg/L for CRP",
      "row 3, column 'Test_Result', subject '1': expected a number"]),
    ("proact_item_out_of_range", {}, 1,
     ["PROACT_ALSFRS.csv, row 3, column 'Q1_Speech', subject '1': expected an ALSFRS-R item "
      "score 0-4, found '7'"]),
]


@pytest.mark.parametrize("name, kwargs, count, expected", CATALOGUE,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CATALOGUE)])
def test_broken_file_gives_one_error_naming_the_place(name, kwargs, count, expected):
    with pytest.raises(DataError) as info:
        read_cohort(BROKEN / name, **kwargs)
    err = info.value
    assert len(err.problems) == count, "\n".join(err.problems)
    message = str(err)
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    for problem in err.problems:
        assert "tests/data/broken/" in problem, problem  # every problem names its file


def test_catalogue_is_large_and_files_exist():
    assert len(CATALOGUE) >= 20
    kinds = {name.split("_")[0] for name, *_ in CATALOGUE}
    assert kinds == {"long", "side", "wide", "nonmem", "proact"}
    for name, kwargs, *_ in CATALOGUE:
        assert (BROKEN / name).exists()
        for value in kwargs.values():
            if isinstance(value, Path):
                assert value.exists()


def test_problems_from_several_files_come_in_one_error():
    with pytest.raises(DataError) as info:
        read_cohort(BROKEN / "long_many_problems.csv",
                    events=BROKEN / "side_events_unknown_type.csv")
    files = {p.split(",")[0].rsplit("/", 1)[-1] for p in info.value.problems}
    assert files == {"long_many_problems.csv", "side_events_unknown_type.csv"}
    assert len(info.value.problems) == 5


def test_check_observables_names_rows_and_model():
    cohort = read_cohort(EXAMPLES / "long.csv")
    cohort.check_observables(["ALSFRS_R", "NfL", "CRP", "Treg_pct"])
    with pytest.raises(DataError) as info:
        cohort.check_observables(["ALSFRS_R", "NfL", "crp_serum"], source="model 'als_reduced'")
    (problem,) = info.value.problems
    assert problem.startswith(f"{EXAMPLES / 'long.csv'}, row 4, column 'observable', "
                              "subject 'P01' (and 16 more rows): observable 'CRP' is not an "
                              "observable of model 'als_reduced'")
    with pytest.raises(DataError) as info:
        cohort.check_observables(["ALSFRS_R"])
    assert len(info.value.problems) == 2


def test_death_before_last_observation_is_a_note_not_an_error(tmp_path):
    (tmp_path / "ev.csv").write_text("subject,time,event\nP001,2,death\n")
    cohort = read_cohort(BROKEN / "side_obs.csv", events=tmp_path / "ev.csv")
    (note,) = [n for n in cohort.notes if "precedes" in n]
    assert "ev.csv, row 2, column 'time', subject 'P001': death at 2 months precedes the last " \
           "observation at 3 months" in note


def test_event_aliases_and_censoring_after_last_observation(tmp_path):
    (tmp_path / "ev.csv").write_text("subject,time,event\nP001,1,Alive\n")
    cohort = read_cohort(BROKEN / "side_obs.csv", events=tmp_path / "ev.csv")
    assert cohort.event("P001") == (1.0, "censored")
    assert not any("precedes" in n for n in cohort.notes)


def test_negative_times_allowed_on_request():
    cohort = read_cohort(BROKEN / "long_negative_time.csv", allow_negative_time=True)
    assert cohort.observations()["time"][0] == -2


def test_nonmem_reader_notes_what_it_skipped(tmp_path):
    (tmp_path / "d.csv").write_text("ID,TIME,DV,EVID,MDV,AMT,CMT,ADDL,II,WT\n"
                                    "1,0,40,0,0,.,.,.,.,70\n1,0,.,0,1,.,.,.,.,70\n"
                                    "1,1,.,1,1,2,1,2,1,70\n1,2,.,2,1,.,.,.,.,68\n"
                                    "1,3,38,0,0,.,.,.,.,68\n")
    c = read_cohort(tmp_path / "d.csv")
    notes = "\n".join(c.notes)
    assert "skipped 1 observation row(s) with MDV 1 (row 3)" in notes
    assert "expanded ADDL/II into 2 additional dose record(s)" in notes
    assert "'WT' varies within subjects" in notes
    assert "observations named 'DV'" in notes
    assert c.doses["time"].tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(c.time_varying["value"], [70.0, 68.0])


def test_in_memory_cohort_errors_name_table_rows():
    with pytest.raises(DataError) as info:
        Cohort({"subject": ["A", "A", "B"], "time": [0.0, np.nan, -1.0],
                "observable": ["ALSFRS_R"] * 3, "value": [40, 39, 49]},
               events={"subject": ["C"], "time": [3.0], "event": ["death"]},
               time_unit="fortnight")
    problems = info.value.problems
    assert len(problems) == 5
    text = "\n".join(problems)
    assert "observations[1], column 'time', subject 'A': expected a finite time" in text
    assert "observations[2], column 'time', subject 'B': expected a time >= 0" in text
    assert "observations[2], column 'value', subject 'B': expected an ALSFRS-R total" in text
    assert "events[0], column 'subject', subject 'C': subject 'C' has events but no " \
           "observations" in text
    assert "found 'fortnight'" in text


def test_in_memory_missing_and_unequal_columns():
    with pytest.raises(DataError, match="expected a column 'value'"):
        Cohort({"subject": ["A"], "time": [0], "observable": ["NfL"]})
    with pytest.raises(DataError, match="equal length"):
        Cohort({"subject": ["A"], "time": [0, 1], "observable": ["NfL"], "value": [1]})
    with pytest.raises(DataError, match="at least one observation"):
        Cohort({"subject": [], "time": [], "observable": [], "value": []})
    with pytest.raises(DataError, match="unknown column 'unit'"):
        Cohort({"subject": ["A"], "time": [0], "observable": ["NfL"], "value": [1],
                "unit": ["pg/mL"]})


def test_check_functions_append_instead_of_raising():
    problems: list[str] = []
    origins = [("t.csv", i + 2, {"time": "TIME"}) for i in range(3)]
    validation.check_times_sorted(["A", "A", "A"], [0.0, 2.0, 1.0], origins, problems)
    validation.check_duplicates(["A", "A", "A"], [0.0, 0.0, 1.0], ["x", "x", "x"], origins,
                                problems)
    assert len(problems) == 2
    assert problems[0].startswith("t.csv, row 4, column 'TIME', subject 'A'")
    with pytest.raises(DataError) as info:
        validation.raise_if_problems(problems, "t.csv")
    assert str(info.value).startswith("t.csv: 2 problems")
    assert info.value.problems[0].startswith("t.csv, row 3")  # sorted by row


def test_unknown_format_and_unsniffable_header(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_cohort(tmp_path / "x.csv")
    with pytest.raises(DataError, match="unknown format 'excel'"):
        read_cohort(tmp_path / "x.csv", format="excel")
    with pytest.raises(DataError, match="file not found"):
        read_cohort(tmp_path / "missing.csv", format="long")
