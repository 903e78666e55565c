"""Malformed dose records: one ProgressionError each, naming the row, the subject and the field."""

import numpy as np
import pytest

import progression as pg
from progression import Dose, ProgressionError

TIMES = np.linspace(0.0, 24.0, 5)


def refused(model, doses, *must_name, params=None, **kwargs):
    with pytest.raises(ProgressionError) as info:
        pg.simulate(model, params, TIMES, doses=doses, **kwargs)
    text = str(info.value)
    for name in must_name:
        assert name in text, f"{name!r} not named in: {text}"
    return text


def test_unknown_compartment_name():
    text = refused("pk_oral", [Dose(0.0, 10.0), Dose(1.0, 10.0, target="A_gutt")],
                   "doses[1]", "subject 0", "'target'", "'A_gutt'")
    assert "A_gut" in text and "A_c" in text, "the choices are listed"


def test_unknown_compartment_number():
    refused("pk_oral", {"time": [0.0, 1.0], "amount": [1.0, 1.0], "cmt": [1, 3]},
            "doses row 1", "'target'", "3", "1 = A_gut")


def test_negative_amount():
    refused("pk_iv_bolus", [Dose(0.0, -5.0, subject=2)], "doses[0]", "subject 2", "'amount'",
            "-5", params={"CL": [1.0, 2.0, 3.0]})


def test_negative_rate_has_no_duration_semantics():
    refused("pk_infusion", [Dose(0.0, 10.0, rate=-2)], "doses[0]", "'rate'", "RATE = -1 or -2")


def test_rate_without_amount_has_no_duration():
    refused("pk_infusion", [Dose(0.0, 0.0, rate=5.0)], "doses[0]", "'rate'", "amount")


def test_rate_and_duration_that_disagree():
    refused("pk_infusion", [Dose(0.0, 10.0, rate=5.0, duration=3.0)], "'duration'", "disagree")


@pytest.mark.parametrize("ii", [0.0, -12.0])
def test_addl_without_positive_interval(ii):
    refused("pk_iv_bolus", [Dose(0.0, 10.0, addl=3, ii=ii)], "doses[0]", "'ii'", "ADDL = 3")


def test_steady_state_without_interval():
    refused("pk_iv_bolus", [Dose(0.0, 10.0, ss=1)], "doses[0]", "'ii'", "SS = 1")


def test_steady_state_infusion_longer_than_interval():
    refused("pk_infusion", [Dose(0.0, 10.0, duration=30.0, ss=1, ii=12.0)], "'duration'",
            "SS = 1")


def test_dose_into_a_model_without_dosing():
    refused("d50", [Dose(0.0, 10.0)], "'d50'", "[dosing")


@pytest.mark.parametrize(("field", "value"), [("time", np.nan), ("amount", np.inf),
                                              ("rate", np.inf), ("ii", -np.inf)])
def test_non_finite_fields(field, value):
    # NaN in rate/duration/amount means "not given" (a Cohort's bolus rows); NaN time never.
    row = {"time": [0.0, 1.0], "amount": [1.0, 1.0], "rate": [0.0, 0.0], "ii": [0.0, 0.0]}
    row[field][1] = value
    refused("pk_infusion", row, "doses row 1", "subject 0", f"'{field}'")


def test_nan_time_in_a_dose_record():
    refused("pk_iv_bolus", [Dose(float("nan"), 1.0)], "doses[0]", "'time'", "nan")


def test_subject_index_outside_the_batch():
    refused("pk_iv_bolus", [Dose(0.0, 1.0, subject=5)], "doses[0]", "'subject'", "5",
            params={"CL": [1.0, 2.0]})


def test_dose_before_t0():
    refused("pk_iv_bolus", [Dose(-1.0, 1.0)], "doses[0]", "'time'", "t0")


def test_unknown_column_and_bad_evid():
    refused("pk_iv_bolus", {"time": [0.0], "amout": [1.0]}, "'amout'")
    refused("pk_iv_bolus", [Dose(0.0, 1.0, evid=2)], "doses[0]", "'evid'")


def test_model_file_dosing_section_is_validated(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("""
[model]
name = "m"
[parameters.k]
value = 1.0
[states.x]
initial = 0.0
[equations]
x = "-k * x"
[dosing]
dose_parameter = "dos"
[dosing.y]
cmt = 1
[dosing.x]
cmt = 0
lag = "tl"
bioavail = "k"
""")
    with pytest.raises(pg.ModelError) as info:
        pg.load_model(path)
    text = "\n".join([str(info.value), *getattr(info.value, "problems", [])])
    for needle in ("dose_parameter", "[dosing.y]", "[dosing.x] cmt", "[dosing.x] lag",
                   "'bioavail'"):
        assert needle in text, f"{needle!r} not in {text}"


def test_cohort_in_another_time_unit():
    obs = {"subject": ["a"], "time": [1.0], "observable": ["conc"], "value": [1.0]}
    cohort = pg.Cohort(obs, doses={"subject": ["a"], "time": [0.0], "amount": [1.0],
                                   "target": ["1"]}, time_unit="month")
    refused("pk_iv_bolus", cohort, "months", "hours", "to_unit='hour'")


def test_cohort_subject_not_in_the_cohort():
    # A Cohort refuses such rows itself; anything shaped like one is checked again here.
    from progression.dosing import dose_table

    class CohortLike:
        subjects = ("a",)
        doses = {"subject": ["zz"], "time": [0.0], "amount": [1.0]}

    with pytest.raises(ProgressionError, match="doses row 0, field 'subject': no subject 'zz'"):
        dose_table(pg.load_model("pk_iv_bolus"), CohortLike())
