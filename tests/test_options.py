"""SolverOptions: one immutable, validated description of how to integrate."""

import dataclasses
import math

import pytest

from progression.errors import ConfigError
from progression.options import SOLVER_METHODS, SolverOptions
from progression.simulate import METHODS


def test_methods_match_the_simulator_registry():
    assert set(SOLVER_METHODS) == set(METHODS)


def test_defaults_and_replace():
    opts = SolverOptions()
    assert (opts.method, opts.rtol, opts.atol, opts.max_step, opts.max_steps) == \
        ("auto", 1e-6, 1e-9, math.inf, 100_000)
    tight = opts.replace(method="BDF", rtol=1e-8)
    assert tight.method == "BDF" and tight.rtol == 1e-8 and opts.rtol == 1e-6
    assert tight.simulate_kwargs() == {"method": "BDF", "rtol": 1e-8, "atol": 1e-9,
                                       "max_step": math.inf, "max_steps": 100_000}
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.rtol = 1.0


def test_keyword_only():
    with pytest.raises(TypeError):
        SolverOptions("BDF")


@pytest.mark.parametrize("kwargs, words", [
    ({"method": "Euler"}, ["method", "LSODA", "'Euler'"]),
    ({"rtol": 0.0}, ["rtol", "positive", "0.0"]),
    ({"atol": float("nan")}, ["atol", "nan"]),
    ({"max_step": -1}, ["max_step", "-1"]),
    ({"max_steps": 2.5}, ["max_steps", "2.5"]),
    ({"sensitivities": "adjoint"}, ["sensitivities", "'adjoint'"]),
])
def test_bad_options_are_named(kwargs, words):
    with pytest.raises(ConfigError) as err:
        SolverOptions(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_all_problems_at_once():
    with pytest.raises(ConfigError) as err:
        SolverOptions(method="x", rtol=-1, max_steps=1)
    text = str(err.value)
    assert "method" in text and "rtol" in text and "max_steps" in text


def test_coerce():
    assert SolverOptions.coerce(None) == SolverOptions()
    assert SolverOptions.coerce(None, rtol=1e-8).rtol == 1e-8
    assert SolverOptions.coerce({"method": "Radau"}).method == "Radau"
    opts = SolverOptions(method="BDF")
    assert SolverOptions.coerce(opts) is opts
    with pytest.raises(ConfigError, match="unknown key.*tol"):
        SolverOptions.coerce({"tol": 1e-6})
    with pytest.raises(ConfigError, match="found list"):
        SolverOptions.coerce([1])


def test_pickles():
    import pickle
    opts = SolverOptions(method="BDF", rtol=1e-7)
    assert pickle.loads(pickle.dumps(opts)) == opts
