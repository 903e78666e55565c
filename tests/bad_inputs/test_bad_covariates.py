"""Bad-input catalogue: ``[covariates]`` sections of model files, and ``covariates=`` values.

A broken section goes through ``progression show FILE``: exit 2, one error naming the file, the
``[covariates.NAME]`` key and what was found, no traceback, nothing written. Every problem of
the file comes in that one error.
"""

from __future__ import annotations

import numpy as np
import pytest

HEAD = """
[model]
name = "cov_bad"
time_unit = "hour"

[parameters.k]
value = 0.1
bounds = [0.0, 1.0]

[states.x]
initial = 1.0

[equations]
x = "-k * WT * x"
"""

#: section text -> strings the error must contain besides the file name.
CASES = {
    "unknown_key": ('[covariates.WT]\nvalue = 70.0\ninterp = "locf"\n',
                    ["[covariates.WT]", "unknown key 'interp'", "interpolation"]),
    "bad_interpolation": ('[covariates.WT]\nvalue = 70.0\ninterpolation = "spline"\n',
                          ["[covariates.WT] interpolation", "'locf', 'linear'", "'spline'"]),
    "value_not_number": ('[covariates.WT]\nvalue = "seventy"\n',
                         ["[covariates.WT] value", "finite number", "'seventy'"]),
    "value_nan": ("[covariates.WT]\nvalue = nan\n", ["[covariates.WT] value", "found nan"]),
    "clash_parameter": ("[covariates.WT]\nvalue = 1.0\n[covariates.k]\nvalue = 2.0\n",
                        ["[covariates.k]", "'k' is already used by a parameter"]),
    "clash_state": ("[covariates.WT]\nvalue = 1.0\n[covariates.x]\nvalue = 2.0\n",
                    ["[covariates.x]", "'x' is already used by a state"]),
    "reserved_name": ("[covariates.WT]\nvalue = 1.0\n[covariates.t]\nvalue = 2.0\n",
                      ["[covariates.t]", "'t' is reserved"]),
    "not_a_table": ("[covariates]\nWT = 70.0\n", ["[covariates.WT]", "expected a table"]),
    "unit_not_text": ("[covariates.WT]\nvalue = 70.0\nunit = 3\n",
                      ["[covariates.WT] unit", "expected a string"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_covariate_section_is_refused(name, cli, refused, unchanged, tmp_path):
    section, must = CASES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(HEAD + section)
    with unchanged(tmp_path):
        outcome = cli("show", path)
    refused(outcome, str(path), *must)
    assert outcome.err.lower().count("error:") == 1, outcome.err


def test_every_covariate_problem_is_reported_at_once(tmp_path):
    from progression.errors import ModelError
    from progression.model import parse_model

    text = HEAD + ('[covariates.WT]\nvalue = "x"\ninterpolation = "cubic"\nfoo = 1\n'
                   '[covariates.k]\nvalue = 1.0\n')
    with pytest.raises(ModelError) as info:
        parse_model(text, source="cov.toml")
    message = str(info.value) + " ".join(getattr(info.value, "problems", []) or [])
    for part in ("cov.toml", "[covariates.WT] value", "[covariates.WT] interpolation",
                 "unknown key 'foo'", "[covariates.k]"):
        assert part in message, message


def test_unknown_name_in_an_equation_still_suggests_the_covariate(tmp_path):
    from progression.errors import ModelError
    from progression.model import parse_model

    text = HEAD.replace("-k * WT * x", "-k * WTT * x") + "[covariates.WT]\nvalue = 70.0\n"
    with pytest.raises(ModelError, match=r"unknown name 'WTT'.*did you mean 'WT'"):
        parse_model(text, source="cov.toml")


# ----------------------------------------------------------------- covariates= of simulate

MODEL = HEAD.replace("-k * WT * x", "-k * WT * x * AGE / 50") + """
[covariates.WT]
value = 70.0

[covariates.AGE]
interpolation = "linear"
"""


@pytest.fixture(scope="module")
def model():
    import progression as pg
    from progression.model import parse_model

    return pg.compile_model(parse_model(MODEL, "cov_bad.toml"))


#: covariates= value, number of subjects (params), strings the DataError must contain.
VALUE_CASES = {
    "unknown_name": ({"AGE": 50.0, "WTT": 1.0}, 1, ["covariates", "no covariate 'WTT'",
                                                    "did you mean 'WT'"]),
    "missing_required": ([{"AGE": 50.0}, {"WT": 80.0}], 2,
                         ["subject 1", "covariate 'AGE'", "requires"]),
    "missing_required_everywhere": (None, 1, ["subject 0", "covariate 'AGE'"]),
    "unsorted_times": ({"AGE": ([0.0, 5.0, 3.0], [50.0, 51.0, 52.0])}, 1,
                       ["covariates['AGE']", "increasing times", "5 then 3"]),
    "repeated_times": ([{"AGE": 50.0}, {"AGE": ([1.0, 1.0], [50.0, 51.0])}], 2,
                       ["covariates[1]['AGE']", "increasing times"]),
    "nan_time": ({"AGE": ([0.0, np.nan], [50.0, 51.0])}, 1,
                 ["covariates['AGE']", "finite times", "nan"]),
    "nan_value": ([{"AGE": 50.0}, {"AGE": ([0.0, 1.0], [50.0, np.nan])}], 2,
                  ["covariates[1]['AGE']", "finite values", "position 1"]),
    "nan_constant": ({"AGE": float("nan")}, 1, ["covariates['AGE']", "finite number"]),
    "lengths_differ": ({"AGE": ([0.0, 1.0], [50.0])}, 1,
                       ["covariates['AGE']", "2 times and 1 values"]),
    "wrong_count": ([{"AGE": 50.0}, {"AGE": 51.0}], 3,
                    ["one mapping per subject", "3 subjects", "found 2"]),
    "not_a_mapping": ([{"AGE": 50.0}, 7], 2, ["covariates[1]", "expected a mapping"]),
    "text_value": ({"AGE": "old"}, 1, ["covariates['AGE']", "'old'"]),
    "wrong_type": (42, 1, ["covariates", "found int"]),
}


@pytest.mark.parametrize("name", sorted(VALUE_CASES))
def test_bad_covariate_values_are_refused(model, name):
    from progression.errors import DataError
    from progression.simulate import simulate, solve_states

    covariates, m, must = VALUE_CASES[name]
    table = model.parameter_table(None, m)
    for call in (lambda: simulate(model, table, [0.0, 1.0], covariates=covariates),
                 lambda: solve_states(model, table, np.array([0.0, 1.0]),
                                      covariates=covariates)):
        with pytest.raises(DataError) as info:
            call()
        for part in must:
            assert part in str(info.value), str(info.value)


def test_covariates_for_a_model_without_any_are_refused():
    from progression.errors import DataError
    from progression.simulate import simulate

    with pytest.raises(DataError, match="model 'pk_iv_bolus' declares no covariates"):
        simulate("pk_iv_bolus", None, [0.0, 1.0], covariates={"WT": 70.0})


def test_a_cohort_with_a_text_covariate_or_other_subjects_is_refused(model):
    import progression as pg
    from progression.errors import DataError

    obs = {"subject": ["P1", "P2"], "time": [1.0, 1.0], "observable": ["x", "x"],
           "value": [1.0, 1.0]}
    cohort = pg.Cohort(obs, covariates={"P1": {"AGE": 61.0}, "P2": {"AGE": "old"}},
                       time_unit="hour")
    with pytest.raises(DataError, match="subject 'P2', covariate 'AGE': expected a number, "
                                        "found 'old'"):
        pg.simulate(model, None, [0.0, 1.0], covariates=cohort)
    cohort = pg.Cohort(obs, covariates={"P1": {"AGE": 61.0}, "P2": {"WT": 80.0}},
                       time_unit="hour")
    with pytest.raises(DataError, match="subject 'P2' has no value for covariate 'AGE'"):
        pg.simulate(model, None, [0.0, 1.0], covariates=cohort)
    with pytest.raises(DataError, match="one mapping per subject \\(3 subjects\\), found 2"):
        pg.simulate(model, model.parameter_table(None, 3), [0.0, 1.0], covariates=cohort)
