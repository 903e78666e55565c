"""Batches, pickling, piecewise switches and jumps, Python-callable models, failures."""

import pickle

import numpy as np
import pytest

import progression as pg
from progression.model.compiled import PythonModel

TIMES = np.linspace(0, 60, 13)


def _virtual_patients(model, m, seed=3, spread=0.3):
    rng = np.random.default_rng(seed)
    table = model.parameter_table(None, m)
    for name in ("k0", "kA", "eD", "phimax", "Nth"):
        j = model.parameter_index(name)
        table[:, j] *= np.exp(spread * rng.standard_normal(m))
    return np.clip(table, model.bounds[:, 0], model.bounds[:, 1])


@pytest.mark.parametrize("method", ["LSODA", "BDF"])
def test_batch_equals_subjects_simulated_one_by_one(method):
    model = pg.load_model("als_systemic")
    table = _virtual_patients(model, 6)
    batch = pg.simulate(model, table, TIMES, method=method, rtol=1e-8, atol=1e-10)
    for s in range(len(table)):
        one = pg.simulate(model, table[s:s + 1], TIMES, method=method, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(batch.observables[s], one.observables[0], rtol=1e-5,
                                   atol=1e-7, equal_nan=True)
        np.testing.assert_allclose(batch.event_time("death")[s], one.event_time("death")[0],
                                   rtol=1e-6)
        assert batch.status[s] == one.status[0]


def test_batch_size_does_not_change_results():
    model = pg.load_model("als_reduced")
    table = _virtual_patients(model, 10, spread=0.2) if "phimax" in model.parameter_names else \
        model.parameter_table({"k0": np.linspace(0.006, 0.015, 10)})
    whole = pg.simulate(model, table, TIMES, rtol=1e-9, atol=1e-11)
    parts = pg.simulate(model, table, TIMES, rtol=1e-9, atol=1e-11, batch_size=3)
    np.testing.assert_allclose(whole.observables, parts.observables, rtol=1e-5, equal_nan=True)


def test_compiled_models_and_results_pickle():
    model = pg.load_model("als_systemic")
    clone = pickle.loads(pickle.dumps(model))
    p = model.parameter_table(None, 2).T
    y = model.initial(0, None, p) + 0.1
    np.testing.assert_array_equal(clone.rhs(1.0, y, p), model.rhs(1.0, y, p))
    sim = pg.simulate(model, None, TIMES)
    again = pickle.loads(pickle.dumps(sim))
    np.testing.assert_array_equal(again.observables, sim.observables)


def test_unpickling_in_a_fresh_process_recompiles():
    import subprocess
    import sys

    model = pg.load_model("d50")
    payload = pickle.dumps(model).hex()
    code = (f"import pickle, numpy as np; m = pickle.loads(bytes.fromhex({payload!r})); "
            "print(float(m.rhs(0.0, np.array([[24.0]]), np.array([[30.0], [10.0]]))[0, 0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout) == pytest.approx(-(1 / 10) * 24 * (1 - 24 / 48))


def test_scaling_a_parameter_from_t0_equals_a_piecewise_simulation_by_hand(models_dir):
    t0, factor = 2.0, 3.0
    times = np.linspace(0, 6, 25)
    tight = {"rtol": 1e-10, "atol": 1e-13}
    sim = pg.simulate(models_dir / "decay.toml", None, times,
                      switches=[pg.Switch(t0, scale={"k": factor})], **tight)
    first = pg.simulate(models_dir / "decay.toml", None, times[times <= t0], **tight)
    x_t0 = first["x"][0, -1]
    second = pg.simulate(models_dir / "decay.toml", {"k": 0.5 * factor}, times[times >= t0] - t0,
                         initial={"x": x_t0}, **tight)
    np.testing.assert_allclose(sim["x"][0, times < t0], first["x"][0, :-1], rtol=1e-9)
    np.testing.assert_allclose(sim["x"][0, times >= t0], second["x"][0], rtol=1e-8)


def test_a_jump_equals_restarting_from_the_jumped_state():
    model = pg.load_model("als_systemic")
    t_jump = 20.0
    jump = {"R": "R + 0.5", "phi": "(R*phi + 0.5*1.0)/(R + 0.5)"}
    times = np.linspace(0, 40, 41)
    tight = {"rtol": 1e-9, "atol": 1e-11}
    sim = pg.simulate(model, None, times, switches=[pg.Switch(t_jump, jump=jump)], **tight)
    before = pg.simulate(model, None, [t_jump], **tight)
    R, phi = before["R"][0, 0], before["phi"][0, 0]
    start = {name: before[name][0, 0] for name in model.state_names}
    start.update(R=R + 0.5, phi=(R * phi + 0.5) / (R + 0.5))
    after = pg.simulate(model, None, times[times >= t_jump], t0=t_jump, initial=start, **tight)
    np.testing.assert_allclose(sim.observables[0][:, times >= t_jump], after.observables[0],
                               rtol=1e-6)


def test_short_pulses_are_integrated_exactly_whatever_the_max_step():
    """Low-dose IL-2 style pulses (5 days in 28): switch times make max_step irrelevant."""
    model = pg.load_model("als_systemic")
    month = 30.4375
    switches = []
    for c in range(6):
        start = 24.0 + c * 28 / month
        switches += [pg.Switch(start, set={"uIL2": 1.0}), pg.Switch(start + 5 / month,
                                                                   set={"uIL2": 0.0})]
    times = np.linspace(20, 32, 97)
    runs = [pg.simulate(model, None, times, switches=switches, max_step=h, rtol=1e-9,
                        atol=1e-11) for h in (np.inf, 0.5, 0.02)]
    # the Treg count R + Rx: IL-2 expands it in every patient; the default patient is above
    # the reversibility gate, so most of the expansion is non-suppressive Rx (issue 13)
    for other in runs[1:]:
        np.testing.assert_allclose(other["R"], runs[0]["R"], rtol=1e-6)
        np.testing.assert_allclose(other["Rx"], runs[0]["Rx"], rtol=1e-6, atol=1e-12)
    count = runs[0]["R"] + runs[0]["Rx"]
    assert count.max() > 1.2 * count[0, 0]


def test_switch_for_some_subjects_only(models_dir):
    sim = pg.simulate(models_dir / "decay.toml", {"k": [0.5, 0.5]}, [0, 1, 2],
                      switches=[pg.Switch(1.0, jump={"x": "x + 1"}, subjects=[1])])
    assert sim["x"][0, 2] == pytest.approx(2 * np.exp(-1.0), rel=1e-5)
    assert sim["x"][1, 2] == pytest.approx((2 * np.exp(-0.5) + 1) * np.exp(-0.5), rel=1e-5)


def _decay_rhs(t, y, p):
    return -p[0] * y


def _decay_initial(p):
    return p[1][None, :]


def _twice(t, y, p):
    return 2 * y[0]


def test_python_callable_model_matches_the_model_file(models_dir):
    model = PythonModel("decay_py", ["x"], {"k": 0.5, "x0": 2.0}, _decay_rhs, _decay_initial,
                        observables={"twice": _twice}, time_unit="month")
    times = np.linspace(0, 5, 11)
    sim = pg.simulate(model, {"k": [0.5, 1.0]}, times, sensitivities=["k"], rtol=1e-10,
                      atol=1e-12)
    exact = 2.0 * np.exp(-np.outer([0.5, 1.0], times))
    np.testing.assert_allclose(sim["x"], exact, rtol=1e-7)
    np.testing.assert_allclose(sim["twice"], 2 * exact, rtol=1e-7)
    # Finite-difference derivatives of the rhs still give sensitivities close to -t x.
    np.testing.assert_allclose(sim.sensitivity("x", "k"), -times * exact, rtol=1e-5, atol=1e-8)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.parameter_names == ("k", "x0")


def test_a_failing_subject_is_a_status_not_an_exception(models_dir, tmp_path):
    blowup = tmp_path / "blowup.toml"
    blowup.write_text("""
[model]
name = "blowup"
time_unit = "month"
[parameters.a]
value = 1.0
bounds = [0.0, 10.0]
[states.x]
initial = 1.0
[equations]
x = "a * x**2"
""")
    # x' = a x^2 blows up at t = 1/a: subject 0 (a = 1) fails before t = 2, subject 1 does not.
    sim = pg.simulate(blowup, {"a": [1.0, 0.1]}, [0.0, 0.5, 2.0], method="BDF", max_steps=5000)
    assert sim.status.tolist() == [-1, 0]
    assert "failed" in sim.message[0] and sim.message[1] == "ok"
    assert sim["x"][1, 2] == pytest.approx(1 / (1 - 0.1 * 2.0), rel=1e-5)
    assert sim["x"][0, 1] == pytest.approx(1 / (1 - 0.5), rel=1e-4)  # before the failure
    assert np.isnan(sim["x"][0, 2])


def test_bad_arguments_are_refused_with_clear_messages(models_dir):
    with pytest.raises(pg.ProgressionError, match="increasing times"):
        pg.simulate(models_dir / "decay.toml", None, [0, 2, 1])
    with pytest.raises(pg.ProgressionError, match="times >= t0"):
        pg.simulate(models_dir / "decay.toml", None, [-1, 2])
    with pytest.raises(pg.ProgressionError, match="NaN"):
        pg.simulate(models_dir / "decay.toml", None, [0, np.nan])
    with pytest.raises(pg.ModelError, match="did you mean 'k'"):
        pg.simulate(models_dir / "decay.toml", {"kk": 1.0}, [0, 1])
    with pytest.raises(pg.ProgressionError, match="method"):
        pg.simulate(models_dir / "decay.toml", None, [0, 1], method="Euler")
    with pytest.raises(pg.ModelError, match="no built-in model 'als_sytemic'.*als_systemic"):
        pg.load_model("als_sytemic")
