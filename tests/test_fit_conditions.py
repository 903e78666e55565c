"""Experimental conditions (PEtab style): one model, per-condition overrides and doses.

A 3-condition problem fitted with one model must give the estimates of the hand-expanded
model with 3 copies of every state (the way such problems were fitted before), to 1e-6.
"""

import warnings

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError, DataError
from progression.fit import Problem, parse_fit_config
from progression.fit.problem import designs_from_cohort

ONE = """
[model]
name = "turnover"
description = "x' = stim * kin - k * x"
time_unit = "hour"

[parameters.k]
value = 0.5
bounds = [0.01, 10.0]

[parameters.kin]
value = 1.0
bounds = [0.01, 100.0]

[parameters.stim]
value = 1.0
bounds = [0.0, 100.0]

[states.x]
initial = 0.0

[equations]
x = "stim * kin - k * x"

[observables.y]
expression = "x"

[dosing.x]
cmt = 1
"""

EXPANDED = """
[model]
name = "turnover_x3"
description = "three copies of x' = stim * kin - k * x, stim = 1, 10, 0"
time_unit = "hour"

[parameters.k]
value = 0.5
bounds = [0.01, 10.0]

[parameters.kin]
value = 1.0
bounds = [0.01, 100.0]

[states.x1]
initial = 0.0

[states.x2]
initial = 0.0

[states.x3]
initial = 0.0

[equations]
x1 = "1.0 * kin - k * x1"
x2 = "10.0 * kin - k * x2"
x3 = "0.0 * kin - k * x3"

[observables.y1]
expression = "x1"

[observables.y2]
expression = "x2"

[observables.y3]
expression = "x3"

[dosing.x3]
cmt = 1
"""

CONDITIONS = """
[conditions.low]
parameters = { stim = 1.0 }

[conditions.high]
parameters = { stim = 10.0 }

[conditions.pulse]
description = "no production; a bolus of 5 at t = 2"
parameters = { stim = 0.0 }
doses = [{ time = 2.0, amount = 5.0, target = "x" }]
"""

FIT = """
[fit]
model = "{model}"
{errors}
[parameters.k]
estimate = "subject"
value = 0.3
bounds = [0.01, 10.0]
[parameters.kin]
estimate = "subject"
value = 2.0
bounds = [0.01, 100.0]
[estimator]
ftol = 1e-12
xtol = 1e-12
gtol = 1e-12
[solver]
outputs = "exact"
rtol = 1e-10
atol = 1e-12
{extra}
"""

TIMES = np.array([0.5, 1.0, 2.5, 4.0, 6.0, 8.0])
NAMES = ("low", "high", "pulse")


def _truth(k, kin, t):
    """x(t) per condition, closed form."""
    rise = kin / k * (1 - np.exp(-k * t))
    pulse = np.where(t >= 2.0, 5.0 * np.exp(-k * np.maximum(t - 2.0, 0)), 0.0)
    return {"low": rise, "high": 10 * rise, "pulse": pulse}


def _data(n=4, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k, kin = 0.4 * (1 + 0.2 * i), 1.5 * (1 - 0.1 * i)
        x = _truth(k, kin, TIMES)
        for c in NAMES:
            for t, v in zip(TIMES, x[c] + 0.1 * rng.standard_normal(TIMES.size), strict=True):
                rows.append((f"S{i + 1}", t, c, v))
    return rows


def _condition_cohort(rows, source="conditions.csv"):
    return pg.Cohort({"subject": [r[0] for r in rows], "time": [r[1] for r in rows],
                      "observable": ["y"] * len(rows), "value": [r[3] for r in rows],
                      "condition": [r[2] for r in rows]}, time_unit="hour", source=source)


def _expanded_cohort(rows):
    subjects = sorted({r[0] for r in rows})
    return pg.Cohort({"subject": [r[0] for r in rows], "time": [r[1] for r in rows],
                      "observable": [f"y{NAMES.index(r[2]) + 1}" for r in rows],
                      "value": [r[3] for r in rows]},
                     doses={"subject": subjects, "time": [2.0] * len(subjects),
                            "amount": [5.0] * len(subjects), "target": ["x3"] * len(subjects)},
                     time_unit="hour", source="expanded.csv")


def _configs(tmp_path, extra=""):
    (tmp_path / "one.toml").write_text(ONE)
    (tmp_path / "x3.toml").write_text(EXPANDED)
    one = parse_fit_config(FIT.format(model=tmp_path / "one.toml", errors="[error.y]\n"
                                      "model = \"additive\"\na = 0.1", extra=extra)
                           + CONDITIONS, check_data=False, source="one.toml")
    x3 = parse_fit_config(FIT.format(model=tmp_path / "x3.toml", errors="\n".join(
        f"[error.y{j}]\nmodel = \"additive\"\na = 0.1" for j in (1, 2, 3)), extra=extra),
        check_data=False, source="x3.toml")
    return one, x3


def test_conditions_are_parsed():
    text = FIT.format(model="pk_oral", errors='[error.conc]\nmodel = "additive"\na = 0.1',
                      extra="").replace("[parameters.kin]", "[parameters.ka]").replace(
        "[parameters.k]", "[parameters.CL]") + """
[conditions.fed]
parameters = { F_bio = 0.5 }
doses = [{ time = 0.0, amount = 100.0, target = 1 },
         { time = 12.0, amount = 50.0, addl = 2, ii = 12.0 }]
"""
    cfg = parse_fit_config(text, check_data=False)
    (c,) = cfg.conditions
    assert c.name == "fed" and c.parameters == (("F_bio", 0.5),)
    assert [(d.time, d.amount, d.target, d.addl) for d in c.doses] == [
        (0.0, 100.0, 1, 0), (12.0, 50.0, None, 2)]


def test_three_conditions_equal_the_hand_expanded_model(tmp_path):
    rows = _data()
    one, x3 = _configs(tmp_path)
    fit_one = pg.fit(one, data=_condition_cohort(rows))
    fit_x3 = pg.fit(x3, data=_expanded_cohort(rows))
    for name in ("k", "kin"):
        a = fit_one.theta[:, fit_one.parameter_names.index(name)]
        b = fit_x3.theta[:, fit_x3.parameter_names.index(name)]
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(fit_one.objective, fit_x3.objective, rtol=1e-8)
    # and the estimates are near the truth the data were drawn from
    np.testing.assert_allclose(fit_one.theta[:, fit_one.parameter_names.index("k")],
                               0.4 * (1 + 0.2 * np.arange(4)), rtol=0.1)


def test_objective_and_jacobian_per_row_equal_the_expanded_model(tmp_path):
    """At fixed values: per-row -2 log L, residuals and Jacobian agree (units summed back)."""
    rows = _data(2)
    one, x3 = _configs(tmp_path)
    out = []
    for cfg, cohort in ((one, _condition_cohort(rows)), (x3, _expanded_cohort(rows))):
        designs, _ = designs_from_cohort(cohort, cfg)
        problem = Problem.from_config(cfg)
        theta = np.repeat(problem.values[None], 2, axis=0)
        theta[:, problem.names.index("k")] = [0.45, 0.5]
        theta[:, problem.names.index("kin")] = [1.4, 1.2]
        cols = np.array([problem.names.index("k"), problem.names.index("kin")])
        ev = problem.evaluate(designs, np.arange(2), theta, cols, want_info=True)
        # order the values by (time, condition) in both: conditions are sorted by name in
        # the one-model data, observables y1..y3 in the expanded one
        keys = [np.lexsort((designs[r].condition if designs[r].condition is not None else
                            np.array([("low", "high", "pulse")[j] for j in designs[r].obs]),
                            designs[r].time)) for r in range(2)]
        out.append((ev, keys))
    (a, ka), (b, kb) = out
    np.testing.assert_allclose(a.m2ll, b.m2ll, rtol=1e-9)
    np.testing.assert_allclose(a.info, b.info, rtol=1e-7)
    for r in range(2):
        np.testing.assert_allclose(a.residuals[r][ka[r]], b.residuals[r][kb[r]], rtol=1e-7,
                                   atol=1e-8)
        np.testing.assert_allclose(a.jacobians[r][ka[r]], b.jacobians[r][kb[r]], rtol=1e-7,
                                   atol=1e-8)


def test_an_override_of_an_estimated_parameter_holds_it_fixed_in_that_condition(tmp_path):
    rows = [r for r in _data(1) if r[2] == "high"]
    (tmp_path / "one.toml").write_text(ONE)
    text = FIT.format(model=tmp_path / "one.toml", errors="[error.y]\nmodel = \"additive\"\n"
                      "a = 0.1", extra="") + "[conditions.high]\nparameters = { kin = 3.0 }\n"
    cfg = parse_fit_config(text, check_data=False)
    designs, _ = designs_from_cohort(_condition_cohort(rows), cfg)
    problem = Problem.from_config(cfg)
    cols = np.array([problem.names.index("k"), problem.names.index("kin")])
    ev = problem.evaluate(designs, [0], problem.values[None], cols, want_jac=True,
                          want_predictions=True)
    np.testing.assert_array_equal(ev.jacobians[0][:, 1], 0.0)
    np.testing.assert_allclose(ev.predictions[0], _truth(0.3, 3.0, TIMES)["low"], rtol=1e-8)


# ------------------------------------------------------------------------------ refusals

def test_unknown_condition_in_the_data_names_file_row_and_condition(tmp_path):
    rows = _data(1)
    rows[3] = (rows[3][0], rows[3][1], "hgih", rows[3][3])
    one, _ = _configs(tmp_path)
    with pytest.raises(DataError) as info:
        designs_from_cohort(_condition_cohort(rows), one)
    text = str(info.value)
    for name in ("condition 'hgih'", "one.toml", "[conditions.hgih]", "subject 'S1'",
                 "'condition'", "did you mean 'high'"):
        assert name in text, f"{name!r} not in {text}"


def test_unknown_parameter_in_an_override_names_the_key(tmp_path):
    (tmp_path / "one.toml").write_text(ONE)
    text = FIT.format(model=tmp_path / "one.toml", errors="[error.y]\nmodel = \"additive\"\n"
                      "a = 0.1", extra="") + "[conditions.high]\nparameters = { stimm = 3.0 }\n"
    with pytest.raises(ConfigError) as info:
        parse_fit_config(text, check_data=False, source="fit.toml")
    text = str(info.value)
    for name in ("fit.toml", "conditions.high.parameters.stimm", "did you mean 'stim'"):
        assert name in text, f"{name!r} not in {text}"


def test_a_condition_dose_into_an_unknown_compartment_names_the_key(tmp_path):
    (tmp_path / "one.toml").write_text(ONE)
    text = FIT.format(model=tmp_path / "one.toml", errors="[error.y]\nmodel = \"additive\"\n"
                      "a = 0.1", extra="") + (
        "[conditions.pulse]\ndoses = [{ time = 1.0, amount = 2.0, target = \"z\" }]\n")
    with pytest.raises(ConfigError) as info:
        parse_fit_config(text, check_data=False, source="fit.toml")
    assert "conditions.pulse.doses[0]" in str(info.value) and "'z'" in str(info.value)


def test_an_unused_condition_is_a_warning(tmp_path):
    rows = [r for r in _data(1) if r[2] != "pulse"]
    one, _ = _configs(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, notes = designs_from_cohort(_condition_cohort(rows), one)
    text = " ".join(str(w.message) for w in caught)
    assert "'pulse'" in text and "conditions.pulse" in text and "not used" in text
    assert any("pulse" in n for n in notes)


def test_estimated_offset_with_condition_doses_is_refused(tmp_path):
    extra = ""
    one, _ = _configs(tmp_path, extra=extra)
    text = one.text.replace("[estimator]", "[parameters.time_offset]\nestimate = \"subject\"\n"
                            "value = 0.0\nbounds = [-1.0, 1.0]\n[estimator]")
    cfg = parse_fit_config(text, check_data=False, source="one.toml")
    with pytest.raises(ConfigError, match=r"parameters\.time_offset"):
        designs_from_cohort(_condition_cohort(_data(1)), cfg)


def test_nothing_estimated_evaluates_with_the_conditions(tmp_path):
    """A config with every parameter fixed gives -2 log L at the values, conditions applied."""
    rows = _data(2)
    one, x3 = _configs(tmp_path)
    fixed = [parse_fit_config(cfg.text.replace('estimate = "subject"', 'estimate = "fixed"'),
                              check_data=False, source=cfg.source) for cfg in (one, x3)]
    a = pg.fit(fixed[0], data=_condition_cohort(rows))
    b = pg.fit(fixed[1], data=_expanded_cohort(rows))
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-8)
    assert np.isfinite(a.objective)


def test_condition_doses_add_to_the_subjects_own_records():
    """pk_iv_bolus: every subject's own bolus of 100 at t = 0 (dose records), condition 'boost'
    adds 50 at t = 6; predictions are the superposition, in each condition."""
    t = np.array([1.0, 4.0, 7.0, 10.0])
    obs = {"subject": [], "time": [], "observable": [], "value": [], "condition": []}
    for sid in ("A", "B"):
        for c in ("none", "boost"):
            obs["subject"] += [sid] * t.size
            obs["time"] += list(t)
            obs["observable"] += ["conc"] * t.size
            obs["value"] += [1.0] * t.size
            obs["condition"] += [c] * t.size
    cohort = pg.Cohort(obs, doses={"subject": ["A", "B"], "time": [0.0, 0.0],
                                   "amount": [100.0, 100.0], "target": ["A_c", "A_c"]},
                       time_unit="hour")
    cfg = parse_fit_config("""
[fit]
model = "pk_iv_bolus"
[error.conc]
model = "additive"
a = 0.1
[parameters.CL]
estimate = "subject"
value = 4.0
bounds = [0.1, 100.0]
[solver]
rtol = 1e-11
atol = 1e-13
[conditions.none]
description = "the subject's own doses only"
[conditions.boost]
doses = [{ time = 6.0, amount = 50.0 }]
""", check_data=False)
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    theta = np.repeat(problem.values[None], 2, axis=0)
    q = problem.names.index("CL")
    theta[:, q] = [4.0, 2.0]
    ev = problem.evaluate(designs, np.arange(2), theta, problem.subject_cols, want_jac=False,
                          want_predictions=True)
    V = problem.values[problem.names.index("V")]
    for r in range(2):
        ke = theta[r, q] / V
        d = designs[r]
        own = 100.0 * np.exp(-ke * d.time) / V
        boost = np.where(d.time >= 6.0, 50.0 * np.exp(-ke * (d.time - 6.0)) / V, 0.0)
        expected = own + np.where(d.condition == "boost", boost, 0.0)
        np.testing.assert_allclose(ev.predictions[r], expected, rtol=1e-8)
