"""Bad inputs of the likelihood's new paths (doses in fits, measured SDs, conditions), through
``progression fit CONFIG``: exit 2, one message naming the file and the key/row/subject, no
traceback, nothing written."""

from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files" / "fit_inputs"

PK = """
[fit]
name = "bad"
model = "{model}"
[data]
path = "{data}"
[error.conc]
model = "{error}"
{error_keys}
[parameters.CL]
estimate = "subject"
value = 3.0
bounds = [0.1, 100.0]
{extra}
[output]
folder = "{out}"
figures = false
"""

TURNOVER = """
[fit]
name = "bad"
model = "{model}"
[data]
path = "{data}"
[error.y]
model = "additive"
a = 0.1
[parameters.k]
estimate = "subject"
value = 0.4
bounds = [0.01, 10.0]
{conditions}
[output]
folder = "{out}"
figures = false
"""

GOOD_CONDITIONS = """
[conditions.low]
parameters = { stim = 1.0 }
[conditions.high]
parameters = { stim = 10.0 }
"""


def _pk(tmp_path, *, model="pk_oral", data="pk.csv", error="additive", error_keys="a = 0.1",
        extra=""):
    cfg = tmp_path / "fit.toml"
    cfg.write_text(PK.format(model=model, data=FILES / data, error=error,
                             error_keys=error_keys, extra=extra, out=tmp_path / "out"))
    return cfg


def _turnover(tmp_path, conditions, data="conditions.csv"):
    cfg = tmp_path / "fit.toml"
    cfg.write_text(TURNOVER.format(model=FILES / "turnover.toml", data=FILES / data,
                                   conditions=conditions, out=tmp_path / "out"))
    return cfg


def test_the_dosed_control_fit_runs(cli, tmp_path):
    """Control: the cases below differ from this working fit in one thing each."""
    out = cli("fit", _pk(tmp_path))
    assert out.code == 0, out.err
    assert (tmp_path / "out" / "fit.json").exists()


def test_a_dose_into_an_undeclared_compartment(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, data="pk_cmt3.csv")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "pk_cmt3.csv", "row 9", "column 'CMT'", "subject '2'", "compartment '3'",
            "1 = A_gut")


def test_doses_for_a_model_without_dosing_compartments(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, model=FILES / "no_dosing.toml")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "pk.csv", "subject '1'", "no_dosing", "declares no dosing compartments")


def test_an_estimated_time_offset_with_doses(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, extra="[parameters.time_offset]\nestimate = \"subject\"\n"
                              "value = 0.0\nbounds = [-1.0, 1.0]")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "fit.toml", "parameters.time_offset", "dose records")


def test_an_estimated_record_free_dose(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, extra="[parameters.dose]\nestimate = \"subject\"\nvalue = 100.0")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "fit.toml", "parameters.dose", "expected it fixed")


def test_a_fixed_offset_that_moves_a_dose_before_time_zero(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, extra="[parameters.time_offset]\nvalue = -1.0")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "pk.csv", "subject '1'", "model time -1", "before the model's t = 0")


def test_measured_error_model_and_a_value_without_sd(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, model="pk_iv_bolus", data="sd_missing.csv", error="measured",
              error_keys="")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "sd_missing.csv", "row 9", "'sd'", "subject 'P2'", "measured")


def test_measured_error_model_with_a_parameter(cli, refused, unchanged, tmp_path):
    cfg = _pk(tmp_path, model="pk_iv_bolus", data="sd_missing.csv", error="measured",
              error_keys="a = 0.1")
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "fit.toml", "error.conc.a", "unknown key")


def test_the_conditions_control_fit_runs(cli, tmp_path):
    data = tmp_path / "ok.csv"
    data.write_text((FILES / "conditions.csv").read_text().replace("hgih", "high"))
    (tmp_path / "ok.toml").write_text((FILES / "conditions.toml").read_text())
    cfg = tmp_path / "fit.toml"
    cfg.write_text(TURNOVER.format(model=FILES / "turnover.toml", data=data,
                                   conditions=GOOD_CONDITIONS, out=tmp_path / "out"))
    out = cli("fit", cfg)
    assert out.code == 0, out.err


def test_a_condition_the_config_does_not_define(cli, refused, unchanged, tmp_path):
    cfg = _turnover(tmp_path, GOOD_CONDITIONS)
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "conditions.csv", "row 6", "'condition'", "condition 'hgih'",
            "[conditions.hgih]", "did you mean 'high'")


@pytest.mark.parametrize("conditions, names", [
    ("[conditions.high]\nparameters = { stimm = 10.0 }",
     ["conditions.high.parameters.stimm", "did you mean 'stim'"]),
    ("[conditions.high]\nparameters = { time_offset = 1.0 }",
     ["conditions.high.parameters.time_offset", "cannot be overridden"]),
    ("[conditions.high]\nparameters = { stim = \"ten\" }",
     ["conditions.high.parameters.stim", "expected a number"]),
    ("[conditions.high]\nparamters = { stim = 10.0 }",
     ["conditions.high.paramters", "did you mean 'parameters'"]),
    ("[conditions]\nhigh = 3", ["conditions.high", "expected a table"]),
    ("[conditions.high]\ndoses = [{ time = 1.0, amount = 2.0, target = \"z\" }]",
     ["conditions.high.doses[0]", "'z'", "x"]),
    ("[conditions.high]\ndoses = [{ tme = 1.0, amount = 2.0 }]",
     ["conditions.high.doses[0].tme", "conditions.high.doses[0].time", "is required"]),
    ("[conditions.high]\ndoses = [{ time = 1.0, amount = -2.0 }]",
     ["conditions.high.doses[0]", "'amount'", "-2"]),
    ("[conditions.high]\ndoses = 5", ["conditions.high.doses", "expected an array"]),
])
def test_bad_condition_tables(cli, refused, unchanged, tmp_path, conditions, names):
    cfg = _turnover(tmp_path, conditions)
    with unchanged(FILES, tmp_path):
        out = cli("fit", cfg)
    refused(out, "fit.toml", *names)


def test_an_unused_condition_is_a_warning_in_the_fit(cli, tmp_path):
    data = tmp_path / "ok.csv"
    data.write_text((FILES / "conditions.csv").read_text().replace("hgih", "high"))
    (tmp_path / "ok.toml").write_text((FILES / "conditions.toml").read_text())
    cfg = tmp_path / "fit.toml"
    cfg.write_text(TURNOVER.format(model=FILES / "turnover.toml", data=data,
                                   conditions=GOOD_CONDITIONS + "[conditions.pulse]\n"
                                   "doses = [{ time = 2.0, amount = 1.0 }]\n",
                                   out=tmp_path / "out"))
    out = cli("fit", cfg)
    assert out.code == 0, out.err
    assert "warning:" in out.err and "conditions.pulse" in out.err and "not used" in out.err
    assert "'pulse'" in (tmp_path / "out" / "fit.json").read_text()
