"""Bad-input catalogue: column-metadata files of other tools (Monolix ``.mlxtran`` projects,
pharmpy ``.datainfo`` files).

Every case runs the real command (``progression describe PROJECT``, and ``progression fit``
once) and asserts exit status 2, one message naming the project file, the line and the column,
what was expected and what was found, no traceback, and nothing written. A problem in the
project is reported alone, not with one consequence per data row. The projects live in
``files/sidecars/`` beside their data file ``pk.csv``; each ``pp_*.datainfo`` beside its own
copy ``pp_*.csv``, where the reader finds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files" / "sidecars"

# project -> strings the error must contain (besides the project's file name).
CASES = {
    "unknown_use.mlxtran": ["line 10", "column 'TIME'", "unknown use=tiem", "expected one of",
                            "did you mean 'time'"],
    "missing_column.mlxtran": ["line 13", "column 'WEIGHT'", "pk.csv has no column 'WEIGHT'",
                               "'WT'"],
    "occasion.mlxtran": ["line 13", "column 'OCC'", "use=occasion", "not supported"],
    "event_type.mlxtran": ["line 12", "column 'DV'", "only continuous observations",
                           "found type='event'"],
    "no_observationtype.mlxtran": ["[CONTENT]", "several types (Cc, E)",
                                   "use=observationtype"],
    "yname_length.mlxtran": ["line 12", "column 'DV'", "of the same length", "yname={'1'}"],
    "no_use.mlxtran": ["line 9", "column 'ID'", "expected {use=...}", "found {type='categorical'}"],
    "unclosed.mlxtran": ["line 10", "'TIME'", "a '{' is never closed", "line 11"],
    "duplicate.mlxtran": ["line 12", "'TIME'", "given twice", "first on line 10"],
    "two_times.mlxtran": ["line 11", "column 'AMT'", "use=time", "column 'TIME' too"],
    "semicolon.mlxtran": ["line 5", "[FILEINFO] delimiter", "found 'semicolon'",
                          "comma, tab or space"],
    "no_content.mlxtran": ["<DATAFILE>", "expected a [CONTENT] block", "found none"],
    "no_datafile.mlxtran": ["[FILEINFO]", "expected the data file", "found no file entry"],
    "no_file.mlxtran": ["[FILEINFO]", "expected the data file", "found no file entry"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_describe_refuses_bad_project(name, cli, refused, unchanged):
    project = FILES / name
    with unchanged(FILES):
        outcome = cli("describe", project)
    refused(outcome, name, *CASES[name])
    text = outcome.err
    # One cause, reported once: no per-row consequences from reading the data without roles.
    assert "pk.csv, row" not in text, text


# pharmpy datainfo beside a data file (found by the data file's stem): data file -> strings.
DATAINFO_CASES = {
    "pp_unknown_type.csv": ["pp_unknown_type.datainfo", "column 'TIME'", "unknown type 'time'",
                            "expected one of", "idv"],
    "pp_missing_column.csv": ["pp_missing_column.datainfo", "column 'WEIGHT'",
                              "has no column 'WEIGHT'", "'WT'"],
    "pp_two_idv.csv": ["pp_two_idv.datainfo", "column 'AMT'", "type 'idv'",
                       "column 'TIME' too"],
    "pp_time_unit.csv": ["pp_time_unit.datainfo", "column 'TIME'", "'fortnight'",
                         "second, minute, hour"],
    "pp_separator.csv": ["pp_separator.datainfo", "key 'separator'", "found ';'"],
    "pp_not_json.csv": ["pp_not_json.datainfo", "not valid JSON", "line 1 column 43"],
    "pp_no_columns.csv": ["pp_no_columns.datainfo", "a list 'columns'", "found none"],
}


@pytest.mark.parametrize("name", sorted(DATAINFO_CASES))
def test_describe_refuses_bad_datainfo(name, cli, refused, unchanged):
    with unchanged(FILES):
        outcome = cli("describe", FILES / name)
    refused(outcome, *DATAINFO_CASES[name])
    assert f"{name}, row" not in outcome.err, outcome.err


def test_project_naming_a_missing_data_file(cli, refused, unchanged):
    with unchanged(FILES):
        outcome = cli("describe", FILES / "data_missing.mlxtran")
    refused(outcome, "absent.csv", "not found")


def test_fit_refuses_bad_project(tmp_path, cli, refused, unchanged):
    """The same message through a fit config's ``[data] sidecar``; nothing is written."""
    config = tmp_path / "fit.toml"
    out = tmp_path / "out"
    config.write_text(
        '[fit]\nmodel = "pk_iv_bolus"\n'
        f'[data]\npath = "{(FILES / "pk.csv").as_posix()}"\n'
        f'sidecar = "{(FILES / "unknown_use.mlxtran").as_posix()}"\ntime_unit = "hour"\n'
        '[error.conc]\nmodel = "additive"\na = 0.5\n'
        '[parameters.CL]\nestimate = "subject"\n')
    with unchanged(FILES, tmp_path):
        outcome = cli("fit", config, "--out", out, "--quiet")
    refused(outcome, "unknown_use.mlxtran", "line 10", "column 'TIME'", "unknown use=tiem")
