"""Time-varying covariates: the ``[covariates]`` section of a model file, and ``simulate``.

Numerical checks are against closed forms: a one-compartment IV bolus with clearance scaled by
a weight that steps (LOCF: piecewise exponential) and a linear ODE driven by a linearly
interpolated covariate (``x0 * exp(-k * integral c)``), both to a relative 1e-8; forward
sensitivities across covariate changes against central finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
from progression.model import parse_model

WEIGHT_MODEL = """
[model]
name = "cov_pk_iv"
time_unit = "hour"

[parameters.CL_ref]
value = 5.0
bounds = [0.1, 100.0]
unit = "L/h"

[parameters.V]
value = 50.0
bounds = [1.0, 500.0]
unit = "L"

[parameters.dose]
value = 100.0
bounds = [0.0, 1000.0]
unit = "mg"

[covariates.WT]
value = 70.0
unit = "kg"
description = "Body weight"
interpolation = "locf"

[states.A]
initial = "dose"
unit = "mg"

[expressions]
CL = "CL_ref * (WT / 70) ** 0.75"

[equations]
A = "-(CL / V) * A"

[observables.conc]
expression = "A / V"
unit = "mg/L"
"""

LINEAR_MODEL = """
[model]
name = "cov_linear"
time_unit = "day"

[parameters.k]
value = 0.2
bounds = [0.0, 10.0]

[parameters.x0]
value = 2.0
bounds = [0.0, 10.0]

[covariates.c]
interpolation = "linear"

[states.x]
initial = "x0"

[equations]
x = "-k * c * x"

[observables.y]
expression = "x * c"
"""


def test_section_is_parsed_and_kept_out_of_the_parameters():
    spec = parse_model(WEIGHT_MODEL, "w.toml")
    (wt,) = spec.covariates
    assert (wt.name, wt.value, wt.unit, wt.interpolation) == ("WT", 70.0, "kg", "locf")
    assert not wt.required
    assert "WT" not in spec.parameter_names
    assert spec.hidden_names == ("WT",)
    lin = parse_model(LINEAR_MODEL, "l.toml")
    assert lin.covariates[0].required
    assert lin.hidden_names == ("c", "c.slope")


def test_models_without_covariates_keep_their_fingerprint():
    spec = parse_model(WEIGHT_MODEL, "w.toml")
    text = WEIGHT_MODEL.split("[covariates.WT]")[0] + WEIGHT_MODEL.split(
        'interpolation = "locf"\n')[1]
    plain = parse_model(text.replace("(WT / 70)", "(70.0 / 70)"), "p.toml")
    assert plain.covariates == ()
    assert spec.fingerprint != plain.fingerprint
    # The fingerprint of a covariate-free model is computed as before the section existed.
    import hashlib

    parts = (plain.name, plain.time_unit, plain.parameters, plain.states, plain.expressions,
             plain.equations, plain.observables, plain.events)
    assert plain.fingerprint == hashlib.sha256(repr(parts).encode()).hexdigest()


def test_compiled_code_reads_covariates_from_hidden_rows():
    model = pg.compile_model(parse_model(WEIGHT_MODEL, "w.toml"), cache=False)
    assert model.parameter_names == ("CL_ref", "V", "dose")
    assert model.covariate_names == ("WT",) and model.hidden_names == ("WT",)
    np.testing.assert_array_equal(model.hidden_defaults, [70.0])
    p = np.array([[5.0, 5.0], [50.0, 50.0], [100.0, 100.0], [70.0, 90.0]])
    y = np.array([[10.0, 10.0]])
    f = model.rhs(0.0, y, p)[0]
    expected = -5.0 * (np.array([70.0, 90.0]) / 70) ** 0.75 / 50.0 * 10.0
    np.testing.assert_allclose(f, expected, rtol=1e-14)
    # Derivatives have a column per row of p; the covariate's column is d f / d WT.
    dfdp = model.dfdp(0.0, y, p)
    assert dfdp.shape == (1, 4, 2)
    np.testing.assert_allclose(dfdp[0, 3], 0.75 * expected / np.array([70.0, 90.0]), rtol=1e-12)
    assert "Covariates (1, given per subject)" in model.describe()


def test_linear_covariate_is_level_plus_slope_times_t():
    model = pg.compile_model(parse_model(LINEAR_MODEL, "l.toml"), cache=False)
    assert np.isnan(model.hidden_defaults[0]) and model.hidden_defaults[1] == 0.0
    p = np.array([[0.2], [2.0], [1.5], [0.5]])          # k, x0, level, slope
    f = model.rhs(3.0, np.array([[4.0]]), p)[0, 0]
    assert f == pytest.approx(-0.2 * (1.5 + 0.5 * 3.0) * 4.0, rel=1e-14)


def test_covariates_may_enter_initial_values_observables_and_jumps():
    text = WEIGHT_MODEL.replace('initial = "dose"', 'initial = "dose * WT / 70"')
    model = pg.compile_model(parse_model(text, "w.toml"), cache=False)
    p = np.array([[5.0], [50.0], [100.0], [35.0]])
    assert model.initial(0.0, None, p)[0, 0] == pytest.approx(50.0)
    jump = model.jump({"A": "A + WT"})
    assert jump.apply(0.0, np.array([[1.0]]), p)[0, 0] == pytest.approx(36.0)
    assert jump.dp(0.0, np.array([[1.0]]), p).shape == (1, 4, 1)


# ------------------------------------------------------------------------- simulate, closed forms

RTOL = {"rtol": 1e-12, "atol": 1e-14}


@pytest.fixture(scope="module")
def weight_model():
    return pg.compile_model(parse_model(WEIGHT_MODEL, "w.toml"))


@pytest.fixture(scope="module")
def linear_model():
    return pg.compile_model(parse_model(LINEAR_MODEL, "l.toml"))


def _piecewise_conc(times, dose, cl_ref, v, knots, weights):
    """IV bolus at 0, CL = CL_ref (WT/70)^0.75 with WT stepping (LOCF) at ``knots``."""
    def rate(w):
        return cl_ref * (w / 70.0) ** 0.75 / v

    out = np.empty_like(times)
    for j, t in enumerate(times):
        edges = [0.0, *[k for k in knots[1:] if k < t], t]
        exponent = 0.0
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            w = weights[max(int(np.searchsorted(knots, a, side="right")) - 1, 0)]
            exponent += rate(w) * (b - a)
        out[j] = dose / v * np.exp(-exponent)
    return out


@pytest.mark.parametrize("method", ["LSODA", "BDF", "Radau", "RK45", "DOP853"])
def test_locf_weight_step_gives_the_piecewise_exponential(weight_model, method):
    times = np.linspace(0.0, 12.0, 25)
    sim = pg.simulate(weight_model, None, times, covariates={"WT": ([0.0, 5.0], [70.0, 90.0])},
                      method=method, **RTOL)
    exact = _piecewise_conc(times, 100.0, 5.0, 50.0, [0.0, 5.0], [70.0, 90.0])
    np.testing.assert_allclose(sim["conc"][0], exact, rtol=1e-8)
    assert sim.status[0] == 0


def test_per_subject_covariates_and_values_before_the_first_time(weight_model):
    times = np.linspace(0.0, 12.0, 25)
    covariates = [{"WT": ([0.0, 5.0], [70.0, 90.0])},
                  {"WT": ([2.0, 4.0, 9.0], [60.0, 80.0, 55.0])},   # 60 holds before t = 2
                  {"WT": 45.0},                                    # constant
                  {}]                                              # the file's default, 70
    sim = pg.simulate(weight_model, {"CL_ref": [5.0, 4.0, 6.0, 5.0]}, times,
                      covariates=covariates, **RTOL)
    expected = [_piecewise_conc(times, 100.0, 5.0, 50.0, [0.0, 5.0], [70.0, 90.0]),
                _piecewise_conc(times, 100.0, 4.0, 50.0, [0.0, 4.0, 9.0], [60.0, 80.0, 55.0]),
                _piecewise_conc(times, 100.0, 6.0, 50.0, [0.0], [45.0]),
                _piecewise_conc(times, 100.0, 5.0, 50.0, [0.0], [70.0])]
    for s in range(4):
        np.testing.assert_allclose(sim["conc"][s], expected[s], rtol=1e-8)
    # One parameter set with per-subject covariates: that many subjects.
    shared = pg.simulate(weight_model, None, times, covariates=covariates[:2], **RTOL)
    assert shared.n_subjects == 2
    np.testing.assert_allclose(shared["conc"][0], expected[0], rtol=1e-8)


def _linear_integral(t, knots, values):
    """Integral from 0 to t of the linear interpolant (constant outside the knots)."""
    edges = np.concatenate([[0.0], knots[(knots > 0) & (knots < t)], [t]])
    c = np.interp(edges, knots, values)
    return float(np.sum(0.5 * (c[1:] + c[:-1]) * np.diff(edges)))


@pytest.mark.parametrize("method", ["LSODA", "BDF", "RK45"])
def test_linear_covariate_in_a_linear_ode(linear_model, method):
    knots, values = np.array([1.0, 2.0, 6.0]), np.array([1.0, 3.0, 2.0])
    times = np.linspace(0.0, 9.0, 37)
    sim = pg.simulate(linear_model, None, times, covariates={"c": (knots, values)},
                      method=method, **RTOL)
    exact = 2.0 * np.exp(-0.2 * np.array([_linear_integral(t, knots, values) for t in times]))
    np.testing.assert_allclose(sim["x"][0], exact, rtol=1e-8)
    # The observable reads the covariate at the output time: x(t) * c(t).
    np.testing.assert_allclose(sim["y"][0], exact * np.interp(times, knots, values), rtol=1e-8)


@pytest.mark.parametrize("per_subject", [True, False])
@pytest.mark.parametrize("method", ["LSODA", "BDF"])
def test_solve_states_takes_the_same_covariates(weight_model, linear_model, per_subject,
                                                method):
    from progression.simulate import solve_states

    times = np.linspace(0.0, 12.0, 25)
    table = weight_model.parameter_table(None, 2)
    cov = [{"WT": ([0.0, 5.0], [70.0, 90.0])}, {"WT": 45.0}]
    X, status, message, _ = solve_states(weight_model, table, times, covariates=cov,
                                         method=method, per_subject=per_subject, **RTOL)
    assert list(status) == [0, 0], message
    np.testing.assert_allclose(X[0, 0] / 50.0, _piecewise_conc(times, 100.0, 5.0, 50.0,
                                                                [0.0, 5.0], [70.0, 90.0]),
                               rtol=1e-8)
    np.testing.assert_allclose(X[1, 0] / 50.0, _piecewise_conc(times, 100.0, 5.0, 50.0,
                                                                [0.0], [45.0]), rtol=1e-8)
    knots, values = np.array([1.0, 2.0, 6.0]), np.array([1.0, 3.0, 2.0])
    X, status, _, _ = solve_states(linear_model, linear_model.parameter_table(None), times,
                                   covariates={"c": (knots, values)}, method=method,
                                   per_subject=per_subject, **RTOL)
    exact = 2.0 * np.exp(-0.2 * np.array([_linear_integral(t, knots, values) for t in times]))
    np.testing.assert_allclose(X[0, 0], exact, rtol=1e-8)


def test_per_subject_steps_do_not_depend_on_other_subjects_covariates(weight_model):
    from progression.simulate import solve_states

    times = np.linspace(0.0, 12.0, 13)
    table = weight_model.parameter_table(None, 2)
    cov = [{"WT": ([0.0, 5.0], [70.0, 90.0])}, {"WT": ([1.0, 2.5, 3.3], [50.0, 60.0, 65.0])}]
    both, *_ = solve_states(weight_model, table, times, covariates=cov, per_subject=True)
    alone, *_ = solve_states(weight_model, table[:1], times, covariates=cov[:1],
                             per_subject=True)
    np.testing.assert_array_equal(both[0], alone[0])


@pytest.mark.parametrize("method", ["LSODA", "BDF"])
def test_forward_sensitivities_across_covariate_changes(weight_model, linear_model, method):
    times = np.linspace(0.0, 12.0, 25)
    cases = [(weight_model, "conc", {"CL_ref": np.array([5.0, 4.0]), "V": np.array([50.0, 40.0])},
              [{"WT": ([0.0, 5.0], [70.0, 90.0])}, {"WT": ([3.0, 7.5], [60.0, 50.0])}]),
             (linear_model, "y", {"k": np.array([0.2, 0.3]), "x0": np.array([2.0, 1.0])},
              [{"c": ([1.0, 2.0, 6.0], [1.0, 3.0, 2.0])}, {"c": ([0.5, 4.0], [2.0, 0.5])}])]
    for model, output, base, cov in cases:
        kw = {"covariates": cov, "method": method, "rtol": 1e-10, "atol": 1e-12}
        sim = pg.simulate(model, base, times, sensitivities=list(base), **kw)
        for name in base:
            h = 1e-5 * base[name]
            up, down = dict(base), dict(base)
            up[name], down[name] = base[name] + h, base[name] - h
            fd = (pg.simulate(model, up, times, **kw)[output]
                  - pg.simulate(model, down, times, **kw)[output]) / (2 * h[:, None])
            scale = np.max(np.abs(fd))
            np.testing.assert_allclose(sim.sensitivity(output, name), fd, rtol=0,
                                       atol=1e-7 * scale)


DOSED_MODEL = WEIGHT_MODEL.replace('initial = "dose"', "initial = 0.0") + """
[dosing]
dose_parameter = "dose"

[dosing.A]
cmt = 1
"""


def test_doses_and_covariates_together():
    model = pg.compile_model(parse_model(DOSED_MODEL, "d.toml"))
    times = np.linspace(0.0, 16.0, 33)
    doses = {"time": [0.0, 8.0], "amount": [100.0, 50.0]}
    sim = pg.simulate(model, None, times, doses=doses,
                      covariates={"WT": ([0.0, 5.0], [70.0, 90.0])}, **RTOL)
    first = _piecewise_conc(times, 100.0, 5.0, 50.0, [0.0, 5.0], [70.0, 90.0])
    k2 = 5.0 * (90.0 / 70.0) ** 0.75 / 50.0
    second = np.where(times >= 8.0, 50.0 / 50.0 * np.exp(-k2 * (times - 8.0)), 0.0)
    np.testing.assert_allclose(sim["conc"][0], first + second, rtol=1e-8)


def test_steady_state_dose_uses_the_covariate_at_the_dose_time():
    model = pg.compile_model(parse_model(DOSED_MODEL, "d.toml"))
    times = np.array([10.0, 12.0, 15.0])
    doses = {"time": [10.0], "amount": [100.0], "ss": [1], "ii": [12.0]}
    sim = pg.simulate(model, None, times, doses=doses,
                      covariates={"WT": ([0.0, 5.0], [70.0, 90.0])}, **RTOL)
    k = 5.0 * (90.0 / 70.0) ** 0.75 / 50.0
    trough = 100.0 * np.exp(-12.0 * k) / (1 - np.exp(-12.0 * k))
    exact = (trough + 100.0) * np.exp(-k * (times - 10.0)) / 50.0
    np.testing.assert_allclose(sim["conc"][0], exact, rtol=1e-7)


def test_a_parameter_name_that_is_a_covariate_is_pointed_to_covariates(weight_model):
    with pytest.raises(pg.ModelError, match="'WT' is a covariate.*covariates="):
        pg.simulate(weight_model, {"WT": 80.0}, [0.0, 1.0])


def test_a_cohort_gives_each_subject_its_covariates(weight_model):
    cohort = pg.Cohort({"subject": ["A", "B", "C"], "time": [1.0, 1.0, 1.0],
                        "observable": ["conc"] * 3, "value": [1.0, 1.0, 1.0]},
                       time_varying={"subject": ["A", "A", "B"], "time": [5.0, 0.0, 3.0],
                                     "name": ["WT", "WT", "WT"], "value": [90.0, 70.0, 45.0]},
                       time_unit="hour")
    times = np.linspace(0.0, 12.0, 25)
    sim = pg.simulate(weight_model, None, times, covariates=cohort, **RTOL)
    assert sim.n_subjects == 3
    np.testing.assert_allclose(sim["conc"][0], _piecewise_conc(
        times, 100.0, 5.0, 50.0, [0.0, 5.0], [70.0, 90.0]), rtol=1e-8)
    np.testing.assert_allclose(sim["conc"][1], _piecewise_conc(
        times, 100.0, 5.0, 50.0, [0.0], [45.0]), rtol=1e-8)
    np.testing.assert_allclose(sim["conc"][2], _piecewise_conc(      # the file's default
        times, 100.0, 5.0, 50.0, [0.0], [70.0]), rtol=1e-8)
    baseline = pg.Cohort({"subject": ["A"], "time": [1.0], "observable": ["conc"],
                          "value": [1.0]}, covariates={"A": {"WT": 45.0, "sex": "f"}},
                         time_unit="hour")
    sim = pg.simulate(weight_model, None, times, covariates=baseline, **RTOL)
    np.testing.assert_allclose(sim["conc"][0], _piecewise_conc(
        times, 100.0, 5.0, 50.0, [0.0], [45.0]), rtol=1e-8)
    months = pg.Cohort({"subject": ["A"], "time": [1.0], "observable": ["conc"],
                        "value": [1.0]},
                       time_varying={"subject": ["A"], "time": [0.0], "name": ["WT"],
                                     "value": [70.0]})
    with pytest.raises(pg.DataError, match="in months but model 'cov_pk_iv' runs in hours"):
        pg.simulate(weight_model, None, times, covariates=months)


def test_batches_switches_and_events_with_covariates(weight_model):
    """Batches see the same covariates; a switch at a covariate time sees its new value; an
    event is located on the piece where it happens."""
    text = WEIGHT_MODEL + """
[events.low]
condition = "A / V - 0.8"
direction = "falling"
"""
    model = pg.compile_model(parse_model(text, "e.toml"))
    times = np.linspace(0.0, 12.0, 25)
    cov = [{"WT": ([0.0, 5.0], [70.0, 90.0])}, {"WT": 45.0}, {"WT": ([2.0, 6.0], [50.0, 80.0])}]
    whole = pg.simulate(model, None, times, covariates=cov, **RTOL)
    batched = pg.simulate(model, None, times, covariates=cov, batch_size=1, **RTOL)
    np.testing.assert_allclose(batched.states, whole.states, rtol=1e-9)
    # Event of subject 0: conc = 2 exp(-k1*5 - k2*(t-5)) = 0.8 after t = 5.
    k1, k2 = 0.1, 5.0 * (90.0 / 70.0) ** 0.75 / 50.0
    t_low = 5.0 + (np.log(2.5) - 5.0 * k1) / k2
    assert whole.event_time("low")[0] == pytest.approx(t_low, rel=1e-8)
    # Clearance halved at t = 5 by a switch, at the time the weight steps.
    halved = pg.simulate(model, None, times, covariates=cov[:1], **RTOL,
                         switches=[pg.Switch(5.0, scale={"CL_ref": 0.5})])
    exact = 2.0 * np.where(times < 5.0, np.exp(-k1 * times),
                           np.exp(-5.0 * k1 - 0.5 * k2 * (times - 5.0)))
    np.testing.assert_allclose(halved["conc"][0], exact, rtol=1e-8)
