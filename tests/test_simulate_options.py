"""``solver=SolverOptions(...)`` in simulate and solve_states, beside the old keywords."""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError
from progression.options import SolverOptions
from progression.simulate import simulate, solve_states

TIMES = np.linspace(0.0, 24.0, 13)


def test_solver_options_fill_method_and_tolerances():
    opts = SolverOptions(method="BDF", rtol=1e-9, atol=1e-12, max_step=2.0)
    by_options = simulate("pk_oral", None, TIMES, solver=opts)
    by_keywords = simulate("pk_oral", None, TIMES, method="BDF", rtol=1e-9, atol=1e-12,
                           max_step=2.0)
    assert by_options.stats["method"] == "BDF"
    np.testing.assert_array_equal(by_options.states, by_keywords.states)
    assert by_options.stats["steps"] == by_keywords.stats["steps"]
    # A mapping is coerced; an agreeing keyword is accepted.
    as_dict = simulate("pk_oral", None, TIMES, solver={"method": "BDF", "rtol": 1e-9,
                                                       "atol": 1e-12, "max_step": 2.0},
                       method="BDF")
    np.testing.assert_array_equal(as_dict.states, by_keywords.states)


def test_defaults_are_the_solver_options_defaults():
    plain = simulate("pk_oral", None, TIMES)
    with_options = simulate("pk_oral", None, TIMES, solver=SolverOptions())
    np.testing.assert_array_equal(plain.states, with_options.states)
    # the default "auto": compiled per subject with kernels (numba), else the stacked LSODA
    expected = ("Rodas4 (compiled)" if pg.load_model("pk_oral").kernels is not None
                else "LSODA")
    assert SolverOptions().method == "auto"
    assert plain.stats["method"] == with_options.stats["method"] == expected


def test_the_tolerance_reaches_the_integrator():
    # pk_iv_bolus: conc = dose/V exp(-CL/V t); the error follows rtol.
    exact = 100.0 / 50.0 * np.exp(-0.1 * TIMES)
    loose = simulate("pk_iv_bolus", None, TIMES, solver=SolverOptions(method="RK45",
                                                                       rtol=1e-4, atol=1e-8))
    tight = simulate("pk_iv_bolus", None, TIMES, solver=SolverOptions(method="RK45",
                                                                       rtol=1e-11, atol=1e-14))
    err_loose = np.max(np.abs(loose["conc"][0] / exact - 1))
    err_tight = np.max(np.abs(tight["conc"][0] / exact - 1))
    assert err_tight < 1e-9 < err_loose


def test_max_steps_from_the_options_is_a_step_limit():
    sim = simulate("pk_oral", None, TIMES, solver=SolverOptions(method="RK45", rtol=1e-12,
                                                                atol=1e-14, max_steps=10))
    assert sim.status[0] == -1 and "more than 10 steps" in sim.message[0]


@pytest.mark.parametrize("key, value", [("method", "RK45"), ("rtol", 1e-3), ("atol", 1e-3),
                                        ("max_step", 0.5), ("max_steps", 50)])
def test_a_conflicting_keyword_is_refused_naming_both(key, value):
    opts = SolverOptions(method="BDF", rtol=1e-8)
    model = pg.load_model("pk_oral")
    for call in (lambda: simulate(model, None, TIMES, solver=opts, **{key: value}),
                 lambda: solve_states(model, model.parameter_table(None), TIMES, solver=opts,
                                      **{key: value})):
        with pytest.raises(ConfigError) as info:
            call()
        text = str(info.value)
        assert "solver=" in text and key in text and repr(value) in text, text


def test_a_bad_solver_value_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown key"):
        simulate("pk_oral", None, TIMES, solver={"tolerance": 1e-6})
    with pytest.raises(ConfigError, match="expected SolverOptions"):
        simulate("pk_oral", None, TIMES, solver="BDF")


@pytest.mark.parametrize("per_subject", [False, True])
@pytest.mark.parametrize("method", ["LSODA", "BDF"])
def test_solve_states_takes_solver_options(method, per_subject):
    model = pg.load_model("pk_oral")
    table = model.parameter_table({"ka": [0.5, 1.5]})
    opts = SolverOptions(method=method, rtol=1e-9, atol=1e-12)
    a = solve_states(model, table, TIMES, solver=opts, per_subject=per_subject)
    b = solve_states(model, table, TIMES, method=method, rtol=1e-9, atol=1e-12,
                     per_subject=per_subject)
    np.testing.assert_array_equal(a[0], b[0])
    assert list(a[1]) == [0, 0]
