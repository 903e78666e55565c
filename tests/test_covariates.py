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
