"""Event-anchored time offsets (``[parameters.time_offset] anchor``) against closed forms.

The decay model (tests/models/decay.toml: x = x0 exp(-k t), event ``half`` where x = x0 / 2)
has its event at ``T = ln 2 / k`` (dT/dk = -ln 2 / k^2, dT/dx0 = 0). With the offset
anchored there and ``model time = t + T - c`` (covariate c, factor -1), the observable is
``log x = log x0 - k (t - c) - ln 2``: its derivative with respect to k is ``-(t - c)``,
whereas a fixed offset of the same value would give ``-(t - c + T)``; the fit's Jacobian must
carry the anchor's ``df/dtau * dT/dk``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit import Design, Problem
from progression.fit._anchor import anchor_times
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._saem_model import RK4Predictions, _crossing_numpy

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import A, config  # noqa: E402

TIMES = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
#: each subject's covariate: the data time of its event (the event is observed at t = c)
C = np.array([0.0, -0.4, -1.5])


#: The anchored offset of the decay configs: the event ``half``, covariate ``c``, factor -1.
def _anchor(window="[0.0, 50.0]") -> str:
    return f"""[parameters.time_offset]
anchor = "half"
bounds = {window}
covariate = "c"
factor = -1.0
"""


def _config(tmp_path, window="[0.0, 50.0]"):
    return config(tmp_path, k_value=0.5, x0="subject", sections=_anchor(window),
                  name="anchored")


def _designs(ks=(0.5, 1.3, 0.8), x0=2.0):
    out = []
    for i, (k, c) in enumerate(zip(ks, C, strict=True)):
        y = np.log(x0) - k * (TIMES - c) - math.log(2.0)
        out.append(Design(f"S{i + 1}", TIMES, np.zeros(TIMES.size, int), y,
                          np.zeros(TIMES.size, int), np.full(TIMES.size, np.nan),
                          offset_covariate=float(c)))
    return out


@pytest.fixture()
def problem(tmp_path):
    p = Problem.from_config(_config(tmp_path))
    p.fix_grid_step(_designs())
    return p


def _theta(problem, ks, x0=2.0):
    th = np.repeat(problem.values[None], len(ks), axis=0)
    th[:, problem.names.index("k")] = ks
    th[:, problem.names.index("x0")] = x0
    return th


def test_anchor_time_and_its_derivatives_are_the_closed_form(problem):
    ks = np.array([0.5, 1.3, 0.8])
    res = anchor_times(problem, _theta(problem, ks)[:, :problem.P], ["k", "x0"])
    np.testing.assert_allclose(res.T, math.log(2.0) / ks, rtol=1e-9)
    np.testing.assert_allclose(res.dT[:, 0], -math.log(2.0) / ks**2, rtol=1e-6)
    np.testing.assert_allclose(res.dT[:, 1], 0.0, atol=1e-7)
    assert res.messages == ["", "", ""]


def test_evaluate_predicts_at_the_anchored_clock_with_its_derivative(problem):
    ks = np.array([0.5, 1.3, 0.8])
    designs = _designs(ks)
    theta = _theta(problem, ks)
    theta[:, problem.offset_index] = 123.0          # ignored: the anchor sets the clock
    cols = np.array([problem.names.index("k"), problem.names.index("x0")])
    ev = problem.evaluate(designs, np.arange(3), theta, cols, want_jac=True,
                          want_predictions=True)
    assert not ev.failed.any()
    dx = problem.dtheta_dx(theta, cols)               # (R, 2)
    for r, k in enumerate(ks):
        t = TIMES - C[r]
        np.testing.assert_allclose(ev.predictions[r], math.log(2.0) - k * t - math.log(2.0),
                                   atol=1e-8)
        # residual (y - f) / A: d r / d k = (t) / A, d r / d x0 = -(1 / x0) / A
        np.testing.assert_allclose(ev.jacobians[r][:TIMES.size, 0], t / A * dx[r, 0],
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ev.jacobians[r][:TIMES.size, 1], -1 / 2.0 / A * dx[r, 1],
                                   rtol=1e-6, atol=1e-6)
    # the table a fit reports carries each subject's anchored value
    filled = problem.with_anchor_values(designs, theta)
    np.testing.assert_allclose(filled[:, problem.offset_index], math.log(2.0) / ks, rtol=1e-9)


def test_an_event_outside_the_window_fails_the_row_not_the_call(tmp_path):
    problem = Problem.from_config(_config(tmp_path, window="[0.0, 1.0]"))
    ks = np.array([0.5, 1.3])                        # T = 1.39 (outside), 0.53 (inside)
    designs = _designs([*ks, 0.8])[:2]
    ev = problem.evaluate(designs, np.arange(2), _theta(problem, ks),
                          np.array([problem.names.index("k")]), want_jac=True)
    assert ev.failed.tolist() == [True, False]
    assert "no event 'half' by model time 1" in ev.messages[0]


def test_rk4_crossing_compiled_numpy_and_exact_agree(problem):
    from progression.fit.population._saem_compiled import AVAILABLE, rk4_crossing

    ks = np.array([0.5, 1.3, 0.8, 3.0])
    p = _theta(problem, ks)[:, :problem.P]
    cm = problem.model
    e = [ev.name for ev in cm.events].index("half")
    h = 0.01
    T_np = _crossing_numpy(cm, p, e, -1, h, 50.0)
    # RK4 at h = 0.01 and k h <= 0.03: error ~ (k h)^4 / 120 relative
    np.testing.assert_allclose(T_np, math.log(2.0) / ks, rtol=1e-8)
    if AVAILABLE and cm.kernels is not None:
        T_c = rk4_crossing(cm.kernels, p, e, -1, h, 50.0)
        np.testing.assert_allclose(T_c, T_np, rtol=1e-12, atol=1e-12)
    # not by the end of the search: NaN
    assert np.isnan(_crossing_numpy(cm, p[:1], e, -1, h, 1.0)[0])


def test_saem_rk4_predictions_follow_the_anchor(problem):
    ks = np.array([0.5, 1.3, 0.8])
    designs = _designs(ks)
    cols = np.array([problem.names.index("k"), problem.names.index("x0")])
    model = ProblemModel(problem, designs, cols)
    phi = np.log(np.column_stack([ks, np.full(3, 2.0)]))   # both on the log scale
    assert list(problem.scale[cols]) == [1, 1]
    exact, _ = model.predict(phi, np.arange(3))
    rk4 = RK4Predictions(model, h=0.01)
    f, _ = rk4.predict(phi, np.arange(3))
    np.testing.assert_allclose(f, exact, atol=1e-7)
    if rk4.compiled:
        f_np, _ = RK4Predictions(model, h=0.01, compiled=False).predict(phi, np.arange(3))
        np.testing.assert_allclose(f_np, f, atol=1e-10)
        # the prediction pass resumes at each row's crossing step (rows start after step 0)
        # and gives the numbers of integrating again from model time 0, to the last bit
        theta = model.thetas(phi)
        tm, start = rk4._model_times(theta, np.arange(3), with_start=True)
        assert start is not None and np.all(start[0] > 0)
        rk4._cache.clear()                  # integrate again, not observe stored states
        again = rk4._solve(theta, np.arange(3), tm, None)
        np.testing.assert_array_equal(again, f)


# ------------------------------------------------------------------ population fits

def _population_data(m=30, seed=0):
    """m subjects of the decay model, log k ~ N(log 0.6, 0.09), event observed at data time
    c ~ U(-1, 0), log x observed with SD 0.05 at 0, 0.5, 1, 2, 3."""
    rng = np.random.default_rng(seed)
    out, ks, cs = [], [], []
    for i in range(m):
        k = 0.6 * math.exp(0.3 * rng.standard_normal())
        c = -rng.uniform(0.0, 1.0)
        y = math.log(2.0) - k * (TIMES - c) - math.log(2.0) + 0.05 * rng.standard_normal(
            TIMES.size)
        out.append(Design(f"S{i}", TIMES, np.zeros(TIMES.size, int), y,
                          np.zeros(TIMES.size, int), np.full(TIMES.size, np.nan),
                          offset_covariate=float(c)))
        ks.append(k)
        cs.append(c)
    return out, np.array(ks), np.array(cs)


def _population_config(tmp_path, estimator):
    return config(tmp_path, estimator=estimator, k="population", k_value=0.5,
                  k_lines='scale = "log"\neta = 0.1\n', x0=None,
                  a='{ value = 0.1, estimate = "population", bounds = [0.001, 1.0] }',
                  sections=_anchor(), solver="", options="seed = 1\n",
                  name=f"anchored_{estimator}")


def test_focei_fit_with_an_anchored_offset_and_its_virtual_patients(tmp_path):
    """FOCE-I through the anchor (exact gradient, covariance step): the data are
    log x = -k (t - c) (x0 = 2), so the anchored fit sees the pace alone; typical k within 2
    SE of the sample's geometric mean, standard errors present; the fit's table carries each
    subject's T = ln 2 / k_i; new patients drawn from the fit run on their own clock."""
    import progression as pg
    from progression.fit.estimate import fit

    data, ks, cs = _population_data()
    r = fit(_population_config(tmp_path, "focei"), data=data)
    pop = r.population
    k, se = pop.fixed_effects["k"], pop.fixed_effects_se["k"]
    assert np.isfinite(se) and 0 < se / k < 0.1
    assert abs(k - math.exp(np.mean(np.log(ks)))) < 2 * se
    # the subjects' offsets: T_i + factor * c_i at their EBEs
    k_i = r.subject_parameters[:, r.model.parameter_index("k")]
    np.testing.assert_allclose(r.time_offsets, math.log(2.0) / k_i - cs, rtol=1e-8)
    vp = pg.VirtualPopulation.from_fit(r, 8, seed=0)
    k_new = vp.subject_parameters[:, r.model.parameter_index("k")]
    c_new = cs[vp.patients.subjects]
    np.testing.assert_allclose(vp.time_offsets, math.log(2.0) / k_new - c_new, rtol=1e-6)
    assert "the fit's clock: each patient's own half" in vp.description


@pytest.mark.slow
def test_saem_and_focei_agree_with_an_anchored_offset(tmp_path):
    """SAEM (RK4 chains with the crossing pass, importance sampling, SA information) against
    FOCE-I on the same anchored decay data: typical k within one FOCE-I SE (measured:
    0.62733 vs 0.62727, SEs 0.0326 both)."""
    from progression.fit.estimate import fit

    data, _, _ = _population_data()
    a = fit(_population_config(tmp_path, "focei"), data=data).population
    b = fit(_population_config(tmp_path, "saem"), data=data).population
    assert abs(a.fixed_effects["k"] - b.fixed_effects["k"]) < a.fixed_effects_se["k"]
    assert b.fixed_effects_se["k"] == pytest.approx(a.fixed_effects_se["k"], rel=0.2)
