"""``[hazards.NAME]`` compiled: the cumulative hazard, its sensitivities, both backends, and
event times drawn from the hazard.

The toy hazard ``h0 exp(g t)`` has the closed-form cumulative hazard
``h0 (exp(g t) - 1) / g``; with the survival score ``z ~ N(0, 1)`` the event time ``T`` has
``P(T > t) = exp(-Lambda(t))``, checked here against the empirical distribution of simulated
event times (Kolmogorov-Smirnov).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import progression as pg
from progression.model.spec import parse_model

MODEL = """
[model]
name = "gompertz"
time_unit = "month"
[parameters.h0]
value = 0.02
bounds = [1e-4, 1.0]
[parameters.g]
value = 0.05
bounds = [-1.0, 1.0]
[parameters.k]
value = 0.1
bounds = [0.0, 1.0]
[states.x]
initial = 1.0
[equations]
x = "-k * x"
[observables.marker]
expression = "x"
[hazards.death]
rate = "h0 * exp(g * t)"
description = "Gompertz"
"""
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def cum(t, h0=0.02, g=0.05):
    return h0 * np.expm1(g * t) / g


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_cumulative_hazard_and_its_sensitivities_are_exact(backend):
    model = pg.compile_model(parse_model(MODEL), backend=backend)
    table = model.parameter_table({"z_death": 8.0})      # threshold ~36: no event here
    t = np.linspace(0.0, 40.0, 9)
    sim = pg.simulate(model, table, t, sensitivities=["h0", "g"], **TIGHT)
    np.testing.assert_allclose(sim["cumhaz_death"][0], cum(t), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(sim["survival_death"][0], np.exp(-cum(t)), rtol=1e-8)
    np.testing.assert_allclose(sim["hazard_death"][0], 0.02 * np.exp(0.05 * t), rtol=1e-12)
    k = model.observable_names.index("cumhaz_death")
    dh0, dg = sim.observable_sensitivities[0, k, 0], sim.observable_sensitivities[0, k, 1]
    np.testing.assert_allclose(dh0, cum(t) / 0.02, rtol=1e-7, atol=1e-12)
    want_g = 0.02 * (t * np.exp(0.05 * t) / 0.05 - np.expm1(0.05 * t) / 0.05**2)
    np.testing.assert_allclose(dg, want_g, rtol=1e-6, atol=1e-10)


def test_the_event_happens_where_the_cumulative_hazard_reaches_the_threshold():
    model = pg.compile_model(parse_model(MODEL))
    z = np.array([-1.5, 0.0, 0.7, 2.0])
    table = model.parameter_table({"z_death": z})
    sim = pg.simulate(model, table, np.linspace(0, 200, 5), **TIGHT)
    threshold = np.array([-math.log(0.5 * math.erfc(v / math.sqrt(2))) for v in z])
    want = np.log1p(threshold * 0.05 / 0.02) / 0.05      # Lambda(T) = threshold
    np.testing.assert_allclose(sim.event_time("death"), want, rtol=1e-6)
    # z = 0: the median, ln 2
    assert threshold[1] == pytest.approx(math.log(2.0), rel=1e-15)


def test_event_times_drawn_from_the_hazard_follow_the_survival_function():
    """Scores z ~ N(0, 1): simulated event times are distributed as 1 - exp(-Lambda(t))."""
    from progression.virtual.synthesis import draw_hazard_scores

    model = pg.compile_model(parse_model(MODEL))
    n = 2000
    table = model.parameter_table(None).repeat(n, axis=0)
    drawn = draw_hazard_scores(model, table, np.random.default_rng(3))
    assert drawn == ["z_death"]
    sim = pg.simulate(model, table, np.array([0.0, 400.0]))
    T = sim.event_time("death")
    assert np.isfinite(T).all()
    ks = stats.kstest(T, lambda t: -np.expm1(-cum(np.asarray(t))))
    assert ks.pvalue > 0.01, ks


def test_the_hazard_may_name_observables_and_expressions_and_the_file_event_stands():
    text = MODEL.replace('rate = "h0 * exp(g * t)"', 'rate = "h0 * (1 + marker) + rel"')
    text = text.replace("[equations]", '[expressions]\nrel = "0.01 * k"\n[equations]')
    text += ('[events.death]\ncondition = "x - 0.5"\ndirection = "falling"\n'
             "terminal = true\n")
    spec = parse_model(text)
    assert [e.condition for e in spec.events if e.name == "death"] == ["x - 0.5"]
    model = pg.compile_model(spec)
    sim = pg.simulate(model, None, np.array([0.0, 5.0, 10.0]), **TIGHT)
    x5 = math.exp(-0.5)
    want = 0.02 * (5.0 + (1 - x5) / 0.1) + 0.001 * 5.0
    assert sim["cumhaz_death"][0, 1] == pytest.approx(want, rel=1e-8)
    assert sim.event_time("death")[0] == pytest.approx(math.log(2.0) / 0.1, rel=1e-6)


def test_models_with_hazards_pickle_and_keep_their_fingerprint_apart():
    import pickle

    spec = parse_model(MODEL)
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.fingerprint == spec.fingerprint
    other = parse_model(MODEL.replace("h0 * exp(g * t)", "h0 * exp(2 * g * t)"))
    assert other.fingerprint != spec.fingerprint


def test_numba_kernels_agree_with_numpy_for_a_hazard_model():
    """The kernels contract (1e-12 relative), erfc of the threshold included."""
    spec = parse_model(MODEL)
    fast = pg.compile_model(spec, backend="numba")
    slow = pg.compile_model(spec, backend="numpy")
    rng = np.random.default_rng(0)
    m = 50
    y = rng.normal(0.5, 1.0, (fast.n_states, m))
    p = fast.defaults[:, None] * rng.uniform(0.3, 2.0, (fast.n_parameters, m))
    p[fast.parameter_index("z_death")] = rng.normal(0.0, 2.0, m)
    t = rng.uniform(0.0, 50.0, m)
    for name in ("rhs", "jac", "dfdp", "observe", "dobs_dy", "dobs_dp", "event_values"):
        a, b = getattr(fast, name)(t, y, p), getattr(slow, name)(t, y, p)
        scale = np.maximum(np.abs(b), np.abs(b).max(axis=-1, keepdims=True))
        assert np.all(np.abs(a - b) <= 1e-12 * np.maximum(scale, 1e-300)), name
    out = np.zeros(len(spec.events))
    fast.kernels.event_values(float(t[0]), y[:, 0].copy(), p[:, 0].copy(), out)
    np.testing.assert_allclose(out, slow.event_values(t[:1], y[:, :1], p[:, :1])[:, 0],
                               rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_expm1_keeps_a_hazard_that_vanishes_in_health_accurate(backend):
    """``h0 * expm1(x)`` (the ALS hazard's form) near x = 0: no cancellation, both backends."""
    text = MODEL.replace('rate = "h0 * exp(g * t)"', 'rate = "h0 * expm1(g * x)"')
    model = pg.compile_model(parse_model(text), backend=backend)
    p = model.parameter_table({"g": 1e-9, "k": 0.0, "z_death": 8.0}).T
    y = np.array([[1.0], [0.0]])
    want = 0.02 * math.expm1(1e-9)
    got = model.rhs(0.0, y, p)[model.state_names.index("Lambda_death"), 0]
    assert got == pytest.approx(want, rel=1e-15)
