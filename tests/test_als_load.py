"""The load term of als_systemic (``mload``, ``Nload``; issue 13): the per-neuron hazard
multiplied by ((1 + Nload)/(N + Nload))^mload.

Checked against the closed form of the pool with only the cell-autonomous hazard, against
one-hit kinetics (the term is exactly 1 at mload = 0), and the numbers the documentation
quotes for the recalibrated default patient (mload = 0.74).
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
    model, a = _states({"mload": 0.0})
    _, b = _states({"mload": 0.0, "Nload": 0.7})     # Nload plays no role at mload = 0
    assert np.array_equal(a.states, b.states)
    # one-hit: with only k0, N = exp(-k0 t)
    _, c = _states({"k0": 0.02, "kA": 0.0, "kE": 0.0, "pB": 0.0, "mload": 0.0})
    n = c.states[0, model.state_names.index("N")]
    np.testing.assert_allclose(n, np.exp(-0.02 * T), rtol=1e-7)


def test_documented_default_patient():
    # the numbers in the sources of mload and k0 (defaults, mload = 0.74): onset 15.7 months,
    # ALSFRS-R 35.0 / 21.7 at onset + 12 / 24, NfL 111 / 109 / 99 pg/mL (roughly stable);
    # with one-hit kinetics (mload = 0) and the same rates NfL falls by a third in two years
    t = np.linspace(0.0, 60.0, 6001)

    def patient(values):
        _, sim = _states({"z_death": 8.0, **values}, t)
        onset = float(sim.event_time("clinical_onset")[0])
        names = sim.observable_names

        def at(name, dt):
            return float(np.interp(onset + dt, t, sim.observables[0, names.index(name)]))

        return onset, at

    onset, at = patient({})
    assert onset == pytest.approx(15.7, abs=0.1)
    assert at("ALSFRS_R", 12.0) == pytest.approx(35.0, abs=0.2)
    assert at("ALSFRS_R", 24.0) == pytest.approx(21.7, abs=0.2)
    for dt, v in ((0.0, 111.0), (12.0, 109.0), (24.0, 99.0)):
        assert at("NfL", dt) == pytest.approx(v, abs=2.0)
    _, at0 = patient({"mload": 0.0})
    assert at0("NfL", 24.0) / at0("NfL", 0.0) < 0.75 < at("NfL", 24.0) / at("NfL", 0.0)
