"""Bad-input catalogue: malformed cohort data files (issue 9, "One clear error").

Every case runs the real command (``progression describe FILE``, or ``progression fit CONFIG``
for problems only a fit can see) and asserts exit status 2, one message naming the file and the
row/column/subject, what was expected and what was found, no traceback, and nothing written.
The files live in ``files/data/``; cases that need a large or derived file write it to
``tmp_path``.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.data import cohort as cohort_module
from progression.data.describe import describe_cohort

sys.path.insert(0, str(Path(__file__).parents[1]))
from _fit_support import config_text, simulate_cohort  # noqa: E402

DATA = Path(__file__).parent / "files" / "data"
REPO = Path(__file__).parents[2]
CLINIC = REPO / "data" / "synthetic" / "als_clinic_200"

# file -> strings the error must contain (besides the file name). Each names the row,
# column or subject where the problem is, and what was expected or found.
DESCRIBE_CASES = {
    "semicolon.csv": ["row 1", "looks ';'-separated", "comma-separated"],
    "tabs_in_csv.csv": ["row 1", "looks tab-separated", ".tsv"],
    "header_only.csv": ["expected data rows after the header (row 1), found none"],
    "empty.csv": ["expected a header row, found an empty file"],
    "blank_lines_only.csv": ["expected a header row, found an empty file"],
    "nan_time.csv": ["row 3", "column 'time'", "subject 'P1'", "found 'nan'"],
    "inf_time.csv": ["row 3", "column 'time'", "expected a finite number, found 'inf'"],
    "inf_value.csv": ["row 3", "column 'value'", "finite number", "'1e400'"],
    "negative_time.csv": ["row 2", "column 'time'", "subject 'P1'", "time >= 0", "found -2"],
    "duplicate_row.csv": ["row 3", "subject 'P1'", "one row per subject, time and observable",
                          "first at row 2"],
    "non_numeric_value.csv": ["row 3", "column 'value'", "expected a number", "'forty'"],
    "non_numeric_time.csv": ["row 2", "column 'time'", "expected a number", "'zero'"],
    "decimal_comma.csv": ["row 2", "expected 4 fields", "found 5", "decimal comma"],
    "ragged_row.csv": ["row 3", "expected 4 fields as in the header, found 3"],
    "alsfrs_out_of_range.csv": ["row 2", "column 'value'", "0-48", "found 52"],
    "empty_subject.csv": ["row 3", "column 'subject'", "expected a subject identifier"],
    "empty_observable.csv": ["row 3", "column 'observable'", "expected an observable name"],
    "duplicate_header.csv": ["row 1", "column 'value'", "unique column names"],
    "bad_cens.csv": ["row 2", "column 'cens'", "expected one of 0, 1, -1", "'2'"],
    "censored_without_limit.csv": ["row 2", "column 'limit'", "expected a limit"],
    "mixed_units.csv": ["row 3", "column 'unit'", "one unit per observable", "'ng/mL'",
                        "(row 2)"],
    "unit_vs_sidecar.csv": ["row 2", "column 'unit'", "unit_vs_sidecar.toml", "'pg/mL'",
                            "found 'ng/mL'"],
    "key_after_units.csv": ["key_after_units.toml", "[units], key 'colums'",
                            "after the [units] header"],
    "nonmem_typo.csv": ["nonmem_typo.toml", "unknown key 'colums'", "did you mean 'columns'"],
    "fortnight.csv": ["fortnight.toml", "key 'time_unit'", "found 'fortnight'"],
    "bad_toml.csv": ["bad_toml.toml", "expected valid TOML", "line 2"],
    "bad_event.csv": ["bad_event_events.csv", "row 2", "column 'event'", "subject 'P1'",
                      "did you mean 'death'"],
    "nonmem_unsorted.csv": ["row 3", "column 'TIME'", "subject '1'", "non-decreasing"],
    "unknown_format.csv": ["row 1", "cannot tell the format from the header"],
    "latin1.csv": ["expected UTF-8 text", "save it as UTF-8"],
    "utf16.csv": ["expected UTF-8 text", "UTF-16"],
    "nul_byte.csv": ["row 2", "NUL byte"],
    "workbook.csv": ["zip archive", "export it as CSV"],
    "alsfrs_spelling.csv": ["row 2", "column 'observable'", "expected observable 'ALSFRS_R'",
                            "found 'ALSFRS-R'"],
    "dates_as_times.csv": ["row 2", "column 'time'", "found '2021-03-04'", "a date?"],
    "nonmem_bad_evid.csv": ["row 3", "column 'EVID'", "subject '1'", "found '5'"],
    "nonmem_dose_without_amt.csv": ["row 3", "column 'AMT'", "dose amount", "EVID 1"],
    "nonmem_amt_on_observation.csv": ["row 2", "column 'AMT'", "found AMT 2"],
    "nonmem_unmapped_dvid.csv": ["row 3", "column 'DVID'", "DVID 7", "[dvid]"],
    "nonmem_id_blocks.csv": ["row 4", "column 'ID'", "subject '1'", "contiguous"],
    "wide_unit_conflict.csv": ["wide_unit_conflict.toml", "observables.NfL", "'ng/mL'",
                               "'pg/mL'", "one unit per observable"],
    "nonmem_unit_conflict.csv": ["nonmem_unit_conflict.toml", "dvid.2", "'ng/mL'",
                                 "'pg/mL'", "one unit per observable"],
    "wide_missing_column.csv": ["row 1", "column 'nfl_pg_ml'", "observable NfL"],
    "duplicate_covariates.csv": ["duplicate_covariates_covariates.csv", "row 4",
                                 "subject 'P1'", "one covariate row per subject",
                                 "first at row 2"],
}


def _one_problem(outcome) -> None:
    """The error is one problem, not a list of consequences."""
    text = outcome.err
    assert " problems" not in text, text
    assert "\n  - " not in text, text


@pytest.mark.parametrize("name", sorted(DESCRIBE_CASES))
def test_describe_refuses_bad_data_file(name, cli, refused, unchanged):
    path = DATA / name
    with unchanged(DATA):
        outcome = cli("describe", path)
    refused(outcome, str(path.with_suffix("").name), *DESCRIBE_CASES[name])
    _one_problem(outcome)


def test_file_with_bom_is_read(cli, unchanged):
    """A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name."""
    with unchanged(DATA):
        outcome = cli("describe", DATA / "bom.csv")
    assert outcome.code == 0, outcome.err


def _copy_clinic(tmp_path: Path, drop: str | None = None) -> Path:
    """The shipped 200-patient cohort (long CSV, covariates, events, sidecar) in tmp_path,
    optionally without one column of the main file."""
    for src in CLINIC.parent.glob(CLINIC.name + "*"):
        shutil.copy(src, tmp_path / src.name)
    main = tmp_path / (CLINIC.name + ".csv")
    if drop is not None:
        with open(main, newline="") as fh:
            rows = list(csv.reader(fh))
        j = rows[0].index(drop)
        with open(main, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(
                [c for k, c in enumerate(r) if k != j] for r in rows)
    return main


@pytest.mark.parametrize("column", ["time", "observable", "value", "subject"])
def test_missing_column_is_reported_once(column, tmp_path, cli, refused, unchanged):
    """One missing column of a 200-subject file (with covariates and events side tables) is
    one problem, not one per subject ("subject ... has covariates but no observations")."""
    main = _copy_clinic(tmp_path, drop=column)
    with unchanged(tmp_path):
        outcome = cli("describe", main)
    refused(outcome, main.name, "row 1", f"column '{column}'",
            f"expected a required column '{column}'")
    _one_problem(outcome)
    assert "no observations" not in outcome.err


def test_header_only_file_with_side_tables_is_one_problem(tmp_path, cli, refused, unchanged):
    main = _copy_clinic(tmp_path)
    main.write_text("subject,time,observable,value,cens,limit\n")
    with unchanged(tmp_path):
        outcome = cli("describe", main)
    refused(outcome, main.name, "expected data rows after the header")
    _one_problem(outcome)


def test_unknown_sidecar_key_is_named_with_did_you_mean(tmp_path, cli, refused, unchanged):
    main = _copy_clinic(tmp_path)
    sidecar = main.with_suffix(".toml")
    sidecar.write_text('colums = "subject,time"\n' + sidecar.read_text())
    with unchanged(tmp_path):
        outcome = cli("describe", main)
    refused(outcome, sidecar.name, "unknown key 'colums'")


# ------------------------------------------------------------------------- fit-time checks


@pytest.fixture
def fit_folder(tmp_path, monkeypatch):
    """A small fit set-up in tmp_path (3 simulated subjects, config), as the cwd."""
    cohort, _ = simulate_cohort(3, visits=[0.0, 3.0, 6.0], jitter=0.0)
    pg.write_cohort(cohort, tmp_path / "data.csv")
    (tmp_path / "fit.toml").write_text(config_text("data.csv"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _set_values(path: Path, changes: dict[tuple[str, str, str], str]) -> dict:
    """Replace value cells of (subject, time, observable) rows; return their file rows."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    where = {}
    for i, r in enumerate(rows):
        key = (r[0], r[1], r[2])
        if key in changes:
            r[3] = changes[key]
            where[key] = i + 1
    assert len(where) == len(changes), (where, changes)
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return where


def test_lognormal_value_zero_names_row_subject_and_value(fit_folder, cli, refused, unchanged):
    """The single problem is the error line itself, not "1 problem(s) for the fit"."""
    rows = _set_values(fit_folder / "data.csv", {("P002", "3", "NfL"): "0"})
    with unchanged(fit_folder):
        outcome = cli("fit", "fit.toml")
    refused(outcome, "data.csv", f"row {rows['P002', '3', 'NfL']}", "subject 'P002'",
            "observable 'NfL'", "log-normal", "values > 0", "found 0")
    first = outcome.err.strip().splitlines()[0]
    assert "row" in first and "found 0" in first, first
    assert "problem(s)" not in outcome.err


def test_lognormal_several_values_summary_is_informative(fit_folder, cli, refused, unchanged):
    rows = _set_values(fit_folder / "data.csv", {("P001", "6", "CRP"): "-0.5",
                                                 ("P003", "0", "NfL"): "0"})
    with unchanged(fit_folder):
        outcome = cli("fit", "fit.toml")
    refused(outcome, "data.csv", f"row {rows['P001', '6', 'CRP']}",
            f"row {rows['P003', '0', 'NfL']}", "found -0.5", "found 0")
    first = outcome.err.strip().splitlines()[0]
    assert "2 problems for the fit" in first and "log-normal" in first, first


def test_fit_on_semicolon_file_names_the_separator(fit_folder, cli, refused, unchanged):
    data = fit_folder / "data.csv"
    data.write_text(data.read_text().replace(",", ";"))
    with unchanged(fit_folder):
        outcome = cli("fit", "fit.toml")
    refused(outcome, "data.csv", "row 1", "looks ';'-separated")


def test_fit_on_file_missing_a_column_is_one_problem(fit_folder, cli, refused, unchanged):
    data = fit_folder / "data.csv"
    with open(data, newline="") as fh:
        rows = list(csv.reader(fh))
    with open(data, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(r[:1] + r[2:] for r in rows)
    with unchanged(fit_folder):
        outcome = cli("fit", "fit.toml")
    refused(outcome, "data.csv", "column 'time'", "expected a required column 'time'")
    _one_problem(outcome)


# ------------------------------------------------------------------- describe in linear work


def _replicated(n_copies: int) -> pg.Cohort:
    base = pg.read_cohort(CLINIC.with_suffix(".csv"))
    obs = base.observations()
    cols = {k: np.concatenate([obs[k]] * n_copies) for k in obs}
    cols["subject"] = np.concatenate([np.char.add(f"R{k}_", obs["subject"])
                                      for k in range(n_copies)])
    ev = base.events
    events = {k: np.concatenate([ev[k]] * n_copies) for k in ev}
    events["subject"] = np.concatenate([np.char.add(f"R{k}_", ev["subject"])
                                        for k in range(n_copies)])
    cov = {f"R{k}_{s}": row for k in range(n_copies) for s, row in base.covariates.items()}
    return pg.Cohort(cols, events=events, covariates=cov, units=base.units)


def test_describe_does_constant_whole_table_work_per_cohort(monkeypatch):
    """describe must not rescan the whole cohort once per subject (it was quadratic).

    Counts the whole-table operations (observations() without a subject, the grouping of a
    side table by subject) and checks that their number does not grow with the number of
    subjects; and that the observable names are computed once, not on every access.
    """
    calls = {"whole_table": 0, "grouping": 0}
    observations = cohort_module.Cohort.observations
    group = cohort_module._group_rows

    def counted_observations(self, observable=None, subject=None):
        if subject is None:
            calls["whole_table"] += 1
        return observations(self, observable, subject)

    def counted_group(subjects):
        calls["grouping"] += 1
        return group(subjects)

    monkeypatch.setattr(cohort_module.Cohort, "observations", counted_observations)
    monkeypatch.setattr(cohort_module, "_group_rows", counted_group)
    counts = []
    for copies in (1, 4):
        cohort = _replicated(copies)
        assert len(cohort) == 200 * copies
        assert cohort.observables is cohort.observables  # computed once, not per access
        calls.update(whole_table=0, grouping=0)
        describe_cohort(cohort)
        counts.append(dict(calls))
    assert counts[0] == counts[1], counts
    assert counts[0]["grouping"] <= 3 and counts[0]["whole_table"] <= 10, counts


def test_missing_file_is_named(tmp_path, cli, refused, unchanged):
    with unchanged(tmp_path):
        outcome = cli("describe", tmp_path / "nope.csv")
    refused(outcome, "nope.csv", "file not found")


def test_folder_without_proact_files_is_named(tmp_path, cli, refused, unchanged):
    (tmp_path / "visits").mkdir()
    (tmp_path / "visits" / "notes.txt").write_text("not data\n")
    with unchanged(tmp_path):
        outcome = cli("describe", tmp_path / "visits")
    refused(outcome, "visits", "PRO-ACT export", "ALSFRS")


def test_units_check_accepts_what_progression_writes(tmp_path):
    """The [units] check refuses keys that name no observable of the file; a cohort whose
    selection lacks an observable (or built with extra units) still writes a sidecar that
    reads back equal."""
    cohort = pg.Cohort({"subject": ["A", "A", "B"], "time": [0.0, 1.0, 0.0],
                        "observable": ["ALSFRS_R", "ALSFRS_R", "NfL"],
                        "value": [40.0, 39.0, 80.0]},
                       units={"NfL": "pg/mL", "IL6": "pg/mL"})
    assert cohort.units == {"ALSFRS_R": "points", "NfL": "pg/mL"}
    part = cohort.select(["A"])
    for fmt in ("long", "wide", "nonmem"):
        path = tmp_path / f"part_{fmt}.csv"
        pg.write_cohort(part, path, format=fmt)
        assert pg.read_cohort(path) == part, fmt


def test_nonmem_missing_dv_column_named_once(tmp_path, cli, refused, unchanged):
    """A column the sidecar's [columns] names but the table lacks: one problem, not also
    "expected a column with role 'dv'"."""
    for src in (REPO / "data" / "examples").glob("nonmem*"):
        shutil.copy(src, tmp_path / src.name)
    main = tmp_path / "nonmem.csv"
    with open(main, newline="") as fh:
        rows = list(csv.reader(fh))
    j = rows[0].index("DV")
    with open(main, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(
            [c for k, c in enumerate(r) if k != j] for r in rows)
    with unchanged(tmp_path):
        outcome = cli("describe", main)
    refused(outcome, "nonmem.toml", "columns.DV", "nonmem.csv has no such column")
    _one_problem(outcome)
