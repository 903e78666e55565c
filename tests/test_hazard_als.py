"""The ALS models' survival hazard ([hazards.death], als-biology.md §4.6 option 2).

Measured on the typical patient (model defaults): median survival from clinical onset, the
residual spread of log survival given the trajectory, no deaths in the healthy state, and the
switch back to the deterministic threshold event (``death_threshold = 1``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import progression as pg

T = np.linspace(0.0, 900.0, 18001)


def _typical(name, **values):
    model = pg.load_model(name)
    table = model.parameter_table({"z_death": 8.0, **values})   # no event: the whole curve
    sim = pg.simulate(model, table, T, rtol=1e-8, atol=1e-10)
    onset = float(sim.event_time("clinical_onset")[0])
    lam = sim["cumhaz_death"][0]
    return model, onset, lam


@pytest.mark.parametrize("name", ["als_reduced", "als_systemic"])
def test_typical_patient_median_survival_from_onset_is_30_months(name):
    model, onset, lam = _typical(name)
    lam_on = np.interp(onset, T, lam)
    median = np.interp(lam_on + math.log(2.0), lam, T) - onset
    # residual spread of log survival from onset given the trajectory (Exp(1) thresholds)
    e = np.random.default_rng(0).exponential(size=20000)
    times = np.interp(lam_on + e, lam, T) - onset
    sd_log = float(np.std(np.log(times)))
    alive_10y = float(np.exp(-(np.interp(onset + 120.0, T, lam) - lam_on)))
    print(f"{name}: onset {onset:.2f}, median from onset {median:.2f} months, residual "
          f"log-survival SD {sd_log:.2f}, alive at 10 years {alive_10y:.3f}")
    # within a month: helper C's recalibration of the other parameters moves it
    assert median == pytest.approx(30.0, abs=1.0)
    assert 0.9 <= sd_log <= 1.2          # §4.6: ~1.0
    assert lam_on < 0.02                 # almost no hazard before clinical onset
    # the default patient (z_death = 0, the median threshold ln 2) dies at about the median
    sim = pg.simulate(model, None, np.array([0.0, 300.0]))
    assert float(sim.event_time("death")[0]) - onset == pytest.approx(median, abs=1.0)


def test_the_healthy_state_has_no_deaths():
    model = pg.load_model("als_reduced")
    table = model.parameter_table({"k0": 0.0})
    y0 = model.initial(0.0, None, table.T)
    assert model.rhs(0.0, y0, table.T)[model.state_names.index("Lambda_death"), 0] == 0.0
    sim = pg.simulate(model, model.parameter_table({"k0": 0.0, "z_death": -3.0}),
                      np.array([0.0, 600.0]))
    assert np.isnan(sim.event_time("death")[0])


def test_death_threshold_restores_the_deterministic_event():
    model = pg.load_model("als_reduced")
    t = np.linspace(0.0, 120.0, 1201)
    outs = []
    for z in (-2.0, 2.0):
        sim = pg.simulate(model, model.parameter_table({"death_threshold": 1.0, "z_death": z}),
                          t, rtol=1e-9, atol=1e-11)
        td = float(sim.event_time("death")[0])
        at = pg.simulate(model, model.parameter_table({"death_threshold": 1.0, "z_death": z}),
                         np.array([0.0, td]), rtol=1e-9, atol=1e-11, terminal_events=False)
        n_at = at.states[0, model.state_names.index("N"), 1]
        outs.append(td)
        assert n_at == pytest.approx(0.30, abs=1e-3)       # N = Ndeath
    assert outs[0] == pytest.approx(outs[1], rel=1e-9)      # the score plays no role
    hazard = [float(pg.simulate(model, model.parameter_table({"z_death": z}),
                                np.array([0.0, 400.0])).event_time("death")[0])
              for z in (-2.0, 2.0)]
    assert hazard[1] - hazard[0] > 20.0                     # the hazard route: it does


def test_als_survival_likelihood_matches_quadrature_of_the_simulated_rate(tmp_path):
    """The joint likelihood on als_reduced (time offset 20 months after t = 0, delayed entry):
    -2 log L of an event and of a right-censored record against Simpson's rule applied to
    the simulated hazard_death observable (not the cumulative-hazard state), to 1e-6."""
    from scipy.integrate import simpson

    from progression.fit import Design, Problem, parse_fit_config
    from progression.fit._survival_likelihood import EXACT, RIGHT, SurvivalRecord

    text = """
[fit]
model = "als_reduced"
[data]
path = "x.csv"
[error.ALSFRS_R]
model = "additive"
a = 2.0
[parameters.time_offset]
estimate = "fixed"
value = 20.0
[survival]
entry = "enrolment"
[solver]
rtol = 1e-10
atol = 1e-12
outputs = "exact"
sensitivities = "forward"
"""
    cfg = parse_fit_config(text, base_dir=tmp_path, name="als", source="als.toml",
                           check_data=False)
    problem = Problem.from_config(cfg)
    t = np.array([0.0, 3.0, 6.0])
    recs = [SurvivalRecord(EXACT, 14.0, entry=0.0), SurvivalRecord(RIGHT, 25.0, entry=0.0)]
    designs = [Design(f"P{i}", t, np.zeros(3, int), np.array([44.0, 41.0, 38.0]),
                      np.zeros(3, int), np.full(3, np.nan), survival=r)
               for i, r in enumerate(recs)]
    theta = np.repeat(problem.values[None], 2, axis=0)
    ev = problem.evaluate(designs, np.arange(2), theta, np.zeros(0, dtype=int),
                          want_jac=False)
    model = problem.model
    grid = np.linspace(20.0, 45.0, 25001)                  # model time = data time + 20
    sim = pg.simulate(model, model.parameter_table({"z_death": 8.0}), grid, rtol=1e-11,
                      atol=1e-13)
    h = sim["hazard_death"][0]

    def lam(a, b):
        sel = (grid >= a - 1e-9) & (grid <= b + 1e-9)
        return simpson(h[sel], x=grid[sel])

    want = [2.0 * lam(20.0, 34.0) - 2.0 * math.log(np.interp(34.0, grid, h)),
            2.0 * lam(20.0, 45.0)]
    np.testing.assert_allclose(ev.survival_m2ll, want, rtol=1e-6)
