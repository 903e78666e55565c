"""Bad-input catalogue of steady-state dose records (NONMEM SS / II).

Each case writes a NONMEM file (or a long-format dose file) with one bad steady-state record,
runs the real command in-process and asserts exit status 2, one message naming the file,
row, column and subject, what was expected and what was found, no traceback, and nothing
written.
"""

from __future__ import annotations

import pytest

HEADER = "ID,TIME,DV,AMT,EVID,MDV,CMT,SS,II,RATE\n"
OBS = "1,1,1.0,.,0,0,.,.,.,.\n"
SIDECAR = 'format = "nonmem"\ntime_unit = "hour"\nobservable = "conc"\n'

# bad dose row (row 2 of the file) -> what the message must name besides file, row, subject
CASES = {
    "SS without II": ("1,0,.,100,1,1,1,1,.,.", ["column 'II'", "SS = 1 needs an interdose "
                                                "interval II > 0", "found none"]),
    "SS with II 0": ("1,0,.,100,1,1,1,1,0,.", ["column 'II'", "II > 0", "found 0"]),
    "SS 2": ("1,0,.,100,1,1,1,2,12,.", ["column 'SS'", "SS = 2", "not supported",
                                         "found 2"]),
    "SS 3": ("1,0,.,100,1,1,1,3,12,.", ["column 'SS'", "expected SS 0", "found 3"]),
    "SS on a reset": ("1,0,.,0,3,1,.,1,12,.", ["column 'SS'", "EVID 3", "found SS 1"]),
    "constant infusion": ("1,0,.,0,1,1,1,1,12,5", ["column 'AMT'", "AMT 0 with RATE > 0",
                                                    "found AMT 0"]),
    "infusion longer than II": ("1,0,.,100,1,1,1,1,12,5", ["column 'II'", "duration 20",
                                                            "found II 12"]),
    "negative II": ("1,0,.,100,1,1,1,1,-12,.", ["column 'II'", ">= 0", "found -12"]),
    "SS not a number": ("1,0,.,100,1,1,1,yes,12,.", ["column 'SS'", "expected a number",
                                                     "'yes'"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_ss_record_is_refused_naming_file_row_column_and_subject(case, tmp_path, cli,
                                                                     refused, unchanged):
    row, expected = CASES[case]
    path = tmp_path / "ss.csv"
    path.write_text(HEADER + row + "\n" + OBS)
    path.with_suffix(".toml").write_text(SIDECAR)
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "ss.csv", "row 2", "subject '1'", *expected)


def test_long_format_dose_file_ss_without_ii_names_its_file(tmp_path, cli, refused,
                                                            unchanged):
    (tmp_path / "c.csv").write_text("subject,time,observable,value\na,1,conc,1.0\n")
    (tmp_path / "c_doses.csv").write_text("subject,time,amount,target,ss,ii\n"
                                          "a,0,100,A_gut,1,\n")
    (tmp_path / "c.toml").write_text('format = "long"\ntime_unit = "hour"\n'
                                     'doses = "c_doses.csv"\n')
    with unchanged(tmp_path):
        outcome = cli("describe", tmp_path / "c.csv")
    refused(outcome, "c_doses.csv", "row 2", "column 'ii'", "subject 'a'", "II > 0")


def test_fit_of_ss_with_a_rate_code_the_model_cannot_serve_names_column_rate(
        tmp_path, cli, refused, unchanged):
    """SS = 1 with RATE = -1 into pk_oral's A_gut, which names no rate parameter: the fit
    names the file, row, column 'RATE', subject and compartment."""
    path = tmp_path / "pk.csv"
    path.write_text(HEADER + "1,0,.,100,1,1,1,1,12,-1\n" + OBS)
    path.with_suffix(".toml").write_text(SIDECAR)
    (tmp_path / "fit.toml").write_text(f"""
[fit]
name = "bad"
model = "pk_oral"
[data]
path = "pk.csv"
[error.conc]
model = "additive"
a = 0.1
[parameters.CL]
estimate = "subject"
value = 4.0
bounds = [0.1, 100.0]
[output]
folder = "{tmp_path / 'out'}"
figures = false
""")
    with unchanged(tmp_path):
        outcome = cli("fit", tmp_path / "fit.toml")
    refused(outcome, "pk.csv", "row 2", "column 'RATE'", "subject '1'", "RATE = -1",
            "'A_gut'")
