"""The load term of als_systemic (``mload``, ``Nload``; issue 13): the per-neuron hazard
multiplied by ((1 + Nload)/(N + Nload))^mload.

Checked against the closed form of the pool with only the cell-autonomous hazard, against
the default model (the term is exactly 1 at mload = 0), and the numbers its documentation
quotes for the recalibrated mload = 1 patient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

import progression as pg

T = np.linspace(0.0, 60.0, 61)


def _states(values, t=T):
    model = pg.load_model("als_systemic")
    sim = pg.simulate(model, model.parameter_table(values), t, rtol=1e-10, atol=1e-12,
                      terminal_events=False)
    return model, sim


def test_load_term_matches_the_closed_form_of_the_cell_autonomous_pool():
    # kA = kE = 0 and pB = 0: dN/dt = -k0 (1 + Nl) N / (N + Nl), hence
    # N - 1 + Nl ln N = -k0 (1 + Nl) t (separation of variables)
    k0, nl = 0.02, 0.1
    model, sim = _states({"k0": k0, "kA": 0.0, "kE": 0.0, "pB": 0.0, "mload": 1.0,
                          "Nload": nl})
    n_sim = sim.states[0, model.state_names.index("N")]
    for t, n in zip(T, n_sim, strict=True):
        exact = brentq(lambda x, t=t: x - 1.0 + nl * math.log(x) + k0 * (1 + nl) * t,
                       1e-12, 1.0 + 1e-12, xtol=1e-14)
        assert n == pytest.approx(exact, abs=1e-6)
    # nearly constant absolute loss: N falls by k0 (1 + Nl) N/(N + Nl) per month
    assert n_sim[0] - n_sim[20] == pytest.approx(20 * k0, rel=0.06)


def test_mload_zero_is_the_one_hit_model():
    model, a = _states({})
    _, b = _states({"Nload": 0.7})            # Nload plays no role at mload = 0
    assert np.array_equal(a.states, b.states)
    # one-hit: with only k0, N = exp(-k0 t)
    _, c = _states({"k0": 0.02, "kA": 0.0, "kE": 0.0, "pB": 0.0})
    n = c.states[0, model.state_names.index("N")]
    np.testing.assert_allclose(n, np.exp(-0.02 * T), rtol=1e-7)


def test_documented_mload_one_patient():
    # the numbers in the mload source: linear decline and stable NfL
    t = np.linspace(0.0, 60.0, 6001)
    model, sim = _states({"mload": 1.0, "k0": 0.0140, "kA": 0.0055, "kE": 0.0028,
                          "Nth": 0.746, "alpha1": 0.03, "h0": 0.00473, "z_death": 8.0}, t)
    onset = float(sim.event_time("clinical_onset")[0])
    names = sim.observable_names
    frs = sim.observables[0, names.index("ALSFRS_R")]
    nfl = sim.observables[0, names.index("NfL")]

    def at(x, dt):
        return float(np.interp(onset + dt, t, x))

    assert onset == pytest.approx(15.7, abs=0.2)
    assert at(frs, 12.0) == pytest.approx(34.3, abs=0.3)
    assert at(frs, 24.0) == pytest.approx(19.3, abs=0.3)
    # NfL stable within a patient (als-biology.md §6.6): 114 / 117 / 114 pg/mL
    for dt, v in ((0.0, 114.0), (12.0, 117.0), (24.0, 114.0)):
        assert at(nfl, dt) == pytest.approx(v, abs=2.0)
