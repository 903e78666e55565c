"""Bad-input catalogue for the NONMEM reader's issue-10 additions: whitespace-delimited files,
the sidecar keys ``delimiter`` and ``default_cmt``, and the time-unit list (second, minute).

Each case runs ``progression describe FILE`` (or ``simulate MODEL``) in-process and asserts
exit status 2, one message naming the file and the key/row, what was expected and what was
found, no traceback, and nothing written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

MODELS = Path(__file__).parents[1] / "models"

DTA = """ID TIME AMT DV EVID MDV
1 0.0 100 . 1 1
1 0.5 . 4.1 0 0
1 1.0 . 3.2 0 0
"""


def _write(folder: Path, name: str, text: str, sidecar: str | None = None) -> Path:
    path = folder / name
    path.write_text(text)
    if sidecar is not None:
        path.with_suffix(".toml").write_text(sidecar)
    return path


SIDECAR_CASES = {
    "unknown delimiter": ('format = "nonmem"\ntime_unit = "hour"\ndelimiter = "semicolon"\n',
                          ["key 'delimiter'", "'comma', 'tab', 'whitespace'",
                           "found 'semicolon'"]),
    "default_cmt zero": ('format = "nonmem"\ntime_unit = "hour"\ndefault_cmt = 0\n',
                         ["key 'default_cmt'", "compartment number >= 1", "found 0"]),
    "default_cmt boolean": ('format = "nonmem"\ntime_unit = "hour"\ndefault_cmt = true\n',
                            ["key 'default_cmt'", "found True"]),
    "default_cmt blank": ('format = "nonmem"\ntime_unit = "hour"\ndefault_cmt = " "\n',
                          ["key 'default_cmt'", "a dosing state's name", "found ' '"]),
    "unknown time unit": ('format = "nonmem"\ntime_unit = "fortnight"\n',
                          ["key 'time_unit'", "second, minute, hour", "found 'fortnight'"]),
}


@pytest.mark.parametrize("case", list(SIDECAR_CASES), ids=list(SIDECAR_CASES))
def test_bad_sidecar_key_of_a_whitespace_file(case, tmp_path, cli, refused, unchanged):
    sidecar, expected = SIDECAR_CASES[case]
    path = _write(tmp_path, "pk.dta", DTA, sidecar)
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "pk.toml", *expected)


def test_blank_separated_file_named_csv_says_how_to_read_it(tmp_path, cli, refused,
                                                             unchanged):
    """A .csv name is read as comma-separated; a blank-separated header is one column: the
    message says so and names both ways out (sidecar delimiter, a .dta name)."""
    path = _write(tmp_path, "pk.csv", DTA)
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "pk.csv", "row 1", "looks blank-separated", 'delimiter = "whitespace"',
            ".dta")


def test_ragged_row_of_a_whitespace_file_names_the_row(tmp_path, cli, refused, unchanged):
    text = DTA.replace("1 1.0 . 3.2 0 0", "1 1.0 . 3.2 0")
    path = _write(tmp_path, "pk.dta", text, 'format = "nonmem"\ntime_unit = "hour"\n')
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "pk.dta", "row 4", "expected 6 fields as in the header, found 5")


def test_comma_in_a_declared_whitespace_file_is_not_split(tmp_path, cli, refused, unchanged):
    """Declared whitespace: '0.5,4.1' is one field, so the row has too few fields."""
    text = DTA.replace("1 0.5 . 4.1 0 0", "1 0.5,. 4.1 0 0")
    path = _write(tmp_path, "pk.txt", text,
                  'format = "nonmem"\ntime_unit = "hour"\ndelimiter = "whitespace"\n')
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "pk.txt", "row 3", "expected 6 fields as in the header, found 5")


def test_model_file_with_an_unknown_time_unit_lists_second_and_minute(tmp_path, cli, refused,
                                                                       unchanged):
    text = (MODELS / "decay.toml").read_text().replace('time_unit = "month"',
                                                       'time_unit = "fortnight"')
    model = tmp_path / "decay.toml"
    model.write_text(text)
    with unchanged(tmp_path):
        outcome = cli("simulate", model, "--until", "5")
    refused(outcome, "time_unit", "second, minute, hour", "'fortnight'")


def test_fit_with_a_model_whose_unit_is_not_a_time_unit_is_refused(tmp_path):
    """A model object whose time unit is not on the list (built in code) must not get the data
    passed through unconverted (they would be read as months by default): refused, naming
    the unit."""
    import dataclasses

    from progression.errors import ProgressionError
    from progression.fit import parse_fit_config
    from progression.fit.estimate import read_data

    shutil.copy(MODELS / "decay.toml", tmp_path / "decay.toml")
    (tmp_path / "data.csv").write_text("subject,time,observable,value\nS1,0,log_x,0.7\n")
    cfg = parse_fit_config('[fit]\nmodel = "decay.toml"\n[data]\npath = "data.csv"\n'
                           '[error.log_x]\nmodel = "additive"\na = 0.1\n'
                           '[parameters.k]\nestimate = "subject"\n', base_dir=tmp_path,
                           name="u")
    model = cfg.model
    original = model.time_unit
    try:
        model.time_unit = "1"
        with pytest.raises(ProgressionError, match=r"time unit '1'.*second, minute, hour"):
            read_data(dataclasses.replace(cfg, model=model))
    finally:
        model.time_unit = original
