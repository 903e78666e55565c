"""Simulated trajectories against closed-form solutions, to a relative 1e-6."""

import numpy as np
import pytest

import progression as pg

RTOL = 1e-6  # the stated tolerance: relative error of every output value
TIGHT = {"rtol": 1e-10, "atol": 1e-13}


@pytest.mark.parametrize("method", ["LSODA", "BDF", "Radau", "RK45"])
def test_exponential_decay(models_dir, method):
    k, x0 = np.array([0.3, 0.5, 1.7]), np.array([2.0, 1.0, 5.0])
    times = np.linspace(0, 6, 25)
    sim = pg.simulate(models_dir / "decay.toml", {"k": k, "x0": x0}, times, method=method,
                      **TIGHT)
    exact = x0[:, None] * np.exp(-k[:, None] * times[None, :])
    np.testing.assert_allclose(sim["x"], exact, rtol=RTOL)
    np.testing.assert_allclose(sim["log_x"], np.log(exact), rtol=RTOL, atol=1e-9)
    # Events are located on the integrator's dense output; RK45's interpolant is one order
    # lower than its steps, so its event times are held to 1e-5 instead of 1e-6.
    event_rtol = 1e-5 if method == "RK45" else RTOL
    np.testing.assert_allclose(sim.event_time("half"), np.log(2) / k, rtol=event_rtol)


def test_logistic_growth_and_terminal_event(models_dir):
    r, K, x0 = 0.8, 10.0, 0.5
    times = np.linspace(0, 12, 49)
    sim = pg.simulate(models_dir / "logistic.toml", None, times, **TIGHT)
    exact = K / (1 + (K / x0 - 1) * np.exp(-r * times))
    t_half = np.log(K / x0 - 1) / r
    np.testing.assert_allclose(sim.event_time("half_capacity")[0], t_half, rtol=RTOL)
    before = times <= t_half
    np.testing.assert_allclose(sim["x"][0, before], exact[before], rtol=RTOL)
    assert np.all(np.isnan(sim["x"][0, ~before])), "outputs after a terminal event are NaN"
    assert sim.status[0] == 1 and "half_capacity" in sim.message[0]


def test_one_compartment_iv_bolus():
    dose, CL, V = np.array([100.0, 250.0]), np.array([5.0, 12.0]), np.array([50.0, 30.0])
    times = np.linspace(0, 48, 97)
    sim = pg.simulate("pk_iv_bolus", {"dose": dose, "CL": CL, "V": V}, times, **TIGHT)
    exact = (dose / V)[:, None] * np.exp(-(CL / V)[:, None] * times)
    np.testing.assert_allclose(sim["conc"], exact, rtol=RTOL)


def test_one_compartment_oral_absorption():
    model = pg.load_model("pk_oral")
    p = dict(zip(model.parameter_names, model.defaults, strict=True))
    times = np.linspace(0, 72, 145)
    sim = pg.simulate(model, None, times, **TIGHT)
    ke = p["CL"] / p["V"]
    exact = (p["F_bio"] * p["dose"] * p["ka"] / (p["V"] * (p["ka"] - ke))
             * (np.exp(-ke * times) - np.exp(-p["ka"] * times)))
    np.testing.assert_allclose(sim["conc"][0, 1:], exact[1:], rtol=RTOL)
    assert sim["conc"][0, 0] == 0.0


def test_d50_model_is_the_jena_sigmoid():
    D50, dx = np.array([20.0, 30.0, 45.0]), np.array([6.0, 10.0, 15.0])
    times = np.linspace(0, 90, 91)
    sim = pg.simulate("d50", {"D50": D50, "dx": dx}, times, **TIGHT)
    exact = 48.0 / (1 + np.exp((times[None, :] - D50[:, None]) / dx[:, None]))
    np.testing.assert_allclose(sim["ALSFRS_R"], exact, rtol=RTOL)


def test_repeated_iv_doses_by_state_jumps_match_superposition():
    """Doses as jumps at switch times equal the superposition of single-dose solutions."""
    model = pg.load_model("pk_iv_bolus")
    p = dict(zip(model.parameter_names, model.defaults, strict=True))
    dose_times = [0.0, 12.0, 24.0, 36.0]
    switches = [pg.Switch(t, jump={"A_c": f"A_c + {p['dose']}"}) for t in dose_times[1:]]
    times = np.linspace(0, 60, 241)
    sim = pg.simulate(model, None, times, switches=switches, **TIGHT)
    ke = p["CL"] / p["V"]
    exact = sum(np.where(times >= td, p["dose"] / p["V"] * np.exp(-ke * (times - td)), 0.0)
                for td in dose_times)
    np.testing.assert_allclose(sim["conc"][0], exact, rtol=RTOL)
