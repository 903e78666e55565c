"""Bad-input catalogue of modelled infusion rates and durations (NONMEM RATE = -1 / -2).

Model files whose ``[dosing.STATE]`` keys ``rate`` / ``duration`` are wrong, data whose RATE
code is not -1 / -2, and data whose code the model cannot serve: each runs the real command
in-process and asserts exit status 2, one message naming the file and the key or row, what
was expected and what was found, no traceback, and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL = Path(__file__).parents[1] / "models" / "pk_infusion_modelled.toml"

KEY_CASES = {
    "unknown parameter": ('rate = "R9"', ["[dosing.A_c] rate",
                                           "expected the name of a parameter", "'R9'"]),
    "not a name": ("duration = 3", ["[dosing.A_c] duration", "found 3"]),
    "one parameter for both": ('rate = "R1"\nduration = "R1"',
                               ["[dosing.A_c] duration", "other than the rate's", "'R1'"]),
    "duration of zero": ('duration = "D0"', ["[dosing.A_c] duration", "positive value",
                                             "'D0' = 0"]),
}


@pytest.mark.parametrize("case", list(KEY_CASES), ids=list(KEY_CASES))
def test_bad_dosing_key_is_refused_naming_file_and_key(case, tmp_path, cli, refused,
                                                       unchanged):
    keys, expected = KEY_CASES[case]
    text = MODEL.read_text().split("[dosing.A_c]")[0]
    text += '[parameters.D0]\nvalue = 0.0\n\n[dosing.A_c]\ncmt = 1\n' + keys + "\n"
    model = tmp_path / "infusion.toml"
    model.write_text(text)
    with unchanged(tmp_path):
        outcome = cli("show", model)
    refused(outcome, str(model), *expected)


DATA = """ID,TIME,DV,AMT,RATE,EVID,MDV,CMT
1,0,.,100,{rate},1,1,1
1,1,1.5,.,.,0,0,.
1,4,2.5,.,.,0,0,.
"""
SIDECAR = 'format = "nonmem"\ntime_unit = "hour"\nobservable = "conc"\n'


def test_rate_code_other_than_minus_one_or_two_names_the_row(tmp_path, cli, refused,
                                                             unchanged):
    path = tmp_path / "pk.csv"
    path.write_text(DATA.format(rate=-3))
    path.with_suffix(".toml").write_text(SIDECAR)
    with unchanged(tmp_path):
        outcome = cli("describe", path)
    refused(outcome, "pk.csv", "row 2", "'RATE'", "-1 / -2", "found -3")


def test_fit_of_a_code_the_model_cannot_serve_names_row_subject_and_compartment(
        tmp_path, cli, refused, unchanged):
    """RATE = -2 into pk_infusion, whose A_c names no duration parameter."""
    path = tmp_path / "pk.csv"
    path.write_text(DATA.format(rate=-2))
    path.with_suffix(".toml").write_text(SIDECAR)
    (tmp_path / "fit.toml").write_text(f"""
[fit]
name = "bad"
model = "pk_infusion"
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
    refused(outcome, "pk.csv", "row 2", "subject '1'", "RATE = -2", "'A_c'",
            '[dosing.A_c] duration = "PARAMETER"')
