"""The compiled per-subject DOP853 (progression/simulate/_dop853_numba.py, driven by
_compiled.solve_small_batch): what ``simulate(method="auto")`` runs below
AUTO_COMPILED_MIN_RTOL for small batches, and so a fit's exact path (rtol 1e-10).

Checked against closed forms (pk_iv_bolus, pk_oral's Bateman function, with repeated doses
and their parameter sensitivities), against stacked Radau at rtol 1e-12 (als_reduced, states
and sensitivities, event times), against finite differences of the outputs (sensitivities
across a lagged dose), and for the stiff hand-back (tests/models/stiff_signalling.toml),
switches, per-subject output columns, pickling and the numpy backend. Tolerances are stated
per test.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import progression as pg
from progression.simulate import Switch
from progression.simulate._api import AUTO_COMPILED_MIN_RTOL, DOP853_MAX_WORK, _dop853_batch
from progression.simulate._dosing import Dose

compiled = pytest.importorskip("progression.simulate._compiled")
if not compiled.AVAILABLE:
    pytest.skip("numba is not installed", allow_module_level=True)

DOP = compiled.DOP853_NAME
TIGHT = {"rtol": 1e-10, "atol": 1e-12}
STIFF_MODEL = Path(__file__).parent / "models" / "stiff_signalling.toml"


def _bateman(t, dose, F, ka, CL, V, t_dose=0.0):
    """pk_oral's concentration after one oral dose at ``t_dose`` (0 before it)."""
    k = CL / V
    s = np.clip(t - t_dose, 0.0, None)
    return F * dose * ka / (V * (ka - k)) * (np.exp(-k * s) - np.exp(-ka * s))


def test_auto_picks_dop853_below_the_rodas4_tolerance_for_small_batches():
    model = pg.load_model("pk_iv_bolus")
    t = np.linspace(0, 24, 7)
    assert pg.simulate(model, None, t, **TIGHT).stats["method"] == DOP
    assert pg.simulate(model, None, t).stats["method"] == compiled.METHOD_NAME
    loose = pg.simulate(model, None, t, rtol=AUTO_COMPILED_MIN_RTOL, atol=1e-12)
    assert loose.stats["method"] == compiled.METHOD_NAME
    # the batch rule: as many subjects as DOP853_MAX_WORK allows, then the stacked LSODA
    n, Q = model.n_states, len(model.parameter_names)
    m_max = int(DOP853_MAX_WORK // (n * (1 + 2) * (n + Q)) ** 2)
    assert _dop853_batch(model, m_max, 2, Q) and not _dop853_batch(model, m_max + 1, 2, Q)


def test_iv_bolus_closed_form_with_sensitivities():
    model = pg.load_model("pk_iv_bolus")
    t = np.linspace(0.0, 48.0, 25)
    table = model.parameter_table({"CL": [3.0, 5.0, 8.0], "V": [40.0, 50.0, 70.0]})
    sim = pg.simulate(model, table, t, sensitivities=["CL", "V"], **TIGHT)
    assert sim.stats["method"] == DOP
    CL, V = table[:, 1:2], table[:, 2:3]
    dose = table[:, 0:1]
    conc = dose / V * np.exp(-CL / V * t)
    np.testing.assert_allclose(sim["conc"], conc, rtol=1e-9, atol=1e-13)
    d_cl = -t / V * conc
    d_v = conc * (-1.0 / V + CL * t / V**2)
    got = sim.observable_sensitivities[:, 0]                       # (m, k, T)
    np.testing.assert_allclose(got[:, 0], d_cl, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(got[:, 1], d_v, rtol=1e-8, atol=1e-12)


def test_oral_repeated_doses_closed_form_and_sensitivities():
    model = pg.load_model("pk_oral")
    p = dict(zip(model.parameter_names, model.parameter_table({"ka": 1.3, "CL": 4.0,
                                                                  "V": 45.0})[0],
                 strict=True))
    t = np.linspace(0.0, 36.0, 73)
    doses = [Dose(time=0.0, amount=320.0, target="A_gut", addl=2, ii=12.0)]
    sim = pg.simulate(model, {"ka": 1.3, "CL": 4.0, "V": 45.0}, t, doses=doses,
                      sensitivities=["ka", "CL", "V"], **TIGHT)
    assert sim.stats["method"] == DOP and sim.status[0] == 0

    def conc(ka, CL, V):
        return sum(_bateman(t, 320.0, p["F_bio"], ka, CL, V, td) for td in (0.0, 12.0, 24.0))

    # the state after a dose at the dose time (outputs at a switch show the state after it)
    np.testing.assert_allclose(sim["conc"][0], conc(1.3, 4.0, 45.0), rtol=1e-9, atol=1e-12)
    for q, name in enumerate(("ka", "CL", "V")):
        base = {"ka": 1.3, "CL": 4.0, "V": 45.0}
        h = 1e-6 * base[name]
        up, down = dict(base), dict(base)
        up[name] += h
        down[name] -= h
        fd = (conc(**up) - conc(**down)) / (2 * h)
        np.testing.assert_allclose(sim.observable_sensitivities[0, 0, q], fd, rtol=1e-6,
                                   atol=1e-9)


def test_als_reduced_against_radau_at_1e_12_states_sensitivities_and_events():
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(5)
    table = model.parameter_table({"kA": 0.0338 * np.exp(0.3 * rng.standard_normal(2)),
                                   "eD": 0.341 * np.exp(0.3 * rng.standard_normal(2))})
    t = np.linspace(0.0, 60.0, 31)
    sens = ["kA", "eD"]
    # one subject per call: a batch of two is past DOP853_MAX_WORK for this model
    parts = [pg.simulate(model, table[i:i + 1], t, sensitivities=sens,
                         terminal_events=False, **TIGHT) for i in range(2)]
    assert all(part.stats["method"] == DOP for part in parts)
    sim = SimpleNamespace(
        states=np.concatenate([part.states for part in parts]),
        state_sensitivities=np.concatenate([part.state_sensitivities for part in parts]),
        events={name: sum((part.events[name] for part in parts), [])
                for name in parts[0].events})
    ref = pg.simulate(model, table, t, sensitivities=sens, terminal_events=False,
                      method="Radau", rtol=1e-12, atol=1e-14)
    # states within 1e-8 relative (measured ~1e-10); sensitivities within 1e-6 relative of
    # their scale (Radau's own sensitivity error at 1e-12 is of that order on this model)
    scale = np.abs(ref.states) + 1e-8
    assert np.max(np.abs(sim.states - ref.states) / scale) < 1e-8
    s_scale = np.abs(ref.state_sensitivities).max(axis=-1, keepdims=True) + 1e-8
    assert np.max(np.abs(sim.state_sensitivities - ref.state_sensitivities) / s_scale) < 1e-6
    for name in ref.events:
        for a, b in zip(sim.events[name], ref.events[name], strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-6)         # months
    assert any(len(v) for lists in sim.events.values() for v in lists)


def test_sensitivities_across_a_lagged_dose_against_finite_differences():
    model = pg.load_model("pk_oral")
    t = np.linspace(0.0, 24.0, 49)
    base = {"ka": 1.1, "CL": 4.0, "V": 45.0, "tlag": 0.7}
    doses = [Dose(time=1.0, amount=300.0, target="A_gut")]
    sim = pg.simulate(model, base, t, doses=doses, sensitivities=list(base), **TIGHT)
    assert sim.stats["method"] == DOP
    for q, name in enumerate(base):
        # central differences: truncation ~(1e-4)^2, integration noise 1e-10 / 1e-4
        h = 1e-4 * base[name]
        up, down = dict(base), dict(base)
        up[name] += h
        down[name] -= h
        fu = pg.simulate(model, up, t, doses=doses, **TIGHT)["conc"][0]
        fd_ = pg.simulate(model, down, t, doses=doses, **TIGHT)["conc"][0]
        fd = (fu - fd_) / (2 * h)
        # away from the kink at the (lagged) dose time, where a difference straddles it
        keep = np.abs(t - 1.7) > 0.1
        np.testing.assert_allclose(sim.observable_sensitivities[0, 0, q][keep], fd[keep],
                                   rtol=1e-5, atol=1e-7)


def test_switches_match_the_stacked_path():
    model = pg.load_model("pk_oral")
    t = np.linspace(0.0, 24.0, 25)
    sw = [Switch(6.0, scale={"CL": 2.0}), Switch(10.0, jump={"A_c": "A_c + 20"})]
    kw = dict(switches=sw, sensitivities=["ka", "CL"], **TIGHT)
    a = pg.simulate(model, {"ka": [0.8, 1.5]}, t, **kw)
    b = pg.simulate(model, {"ka": [0.8, 1.5]}, t, method="LSODA", **kw)
    assert a.stats["method"] == DOP
    np.testing.assert_allclose(a.states, b.states, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.state_sensitivities, b.state_sensitivities, rtol=1e-6,
                               atol=1e-8)


def test_own_times_give_the_same_values_at_the_columns_asked_for():
    model = pg.load_model("pk_oral")
    t = np.linspace(0.0, 24.0, 25)
    kw = dict(sensitivities=["ka"], **TIGHT)
    full = pg.simulate(model, {"ka": [0.8, 1.5]}, t, **kw)
    own = [np.array([0, 3, 7]), np.array([2, 24])]
    part = pg.simulate(model, {"ka": [0.8, 1.5]}, t, _own_times=own, _observables=False, **kw)
    assert part.stats["method"] == DOP
    for s, cols in enumerate(own):
        # the same steps except the last, cut at the subject's own last time: values
        # within the tolerance (measured 6e-12 relative)
        np.testing.assert_allclose(part.states[s][:, cols], full.states[s][:, cols],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(part.state_sensitivities[s][..., cols],
                                   full.state_sensitivities[s][..., cols], rtol=1e-9,
                                   atol=1e-12)
        rest = np.setdiff1d(np.arange(t.size), cols)
        assert np.all(np.isnan(part.states[s][:, rest]))
    assert part.observables.shape[1] == 0


def test_a_stiff_subject_goes_back_to_the_stacked_path():
    model = pg.load_model(STIFF_MODEL)
    t = np.linspace(0.0, 60.0, 13)
    sim = pg.simulate(model, None, t, sensitivities=["kon"], **TIGHT)
    assert sim.stats["method"] == f"{DOP}+LSODA"
    assert sim.status[0] == 0
    ref = pg.simulate(model, None, t, sensitivities=["kon"], method="Radau", rtol=1e-12,
                      atol=1e-14)
    np.testing.assert_allclose(sim.states, ref.states, rtol=1e-7, atol=1e-9)


def test_the_stiffness_test_stops_a_segment_with_its_status():
    from progression.simulate._dop853_numba import STIFF, dop_segment, sensitivity_kernels
    from progression.simulate._rodas4_loops import packed_kernels

    model = pg.load_model(STIFF_MODEL)
    p = np.ascontiguousarray(model.parameter_table(None)[0])
    y = np.zeros(model.n_states)
    model.kernels.initial(0.0, y, p, y)
    y0 = y.copy()
    S = np.zeros((0, model.n_states))
    times = np.array([0.0, 60.0])
    info_i, info_f = np.zeros(9, dtype=np.int64), np.zeros(3)
    dop_segment(packed_kernels(model.kernels), 0.0, 60.0, y, S, p, np.zeros(0, np.int64),
                np.zeros(0), times, 0, np.full((2, y.size), np.nan),
                np.zeros((2, 0, y.size)), np.zeros((2, 0)), np.zeros((2, 0, 0)), False,
                np.zeros(0, np.int64), np.zeros(0, np.bool_), False, np.zeros(4, np.int64),
                np.zeros(4), 1e-10, 1e-12, np.inf, 100_000, True, info_i, info_f,
                np.zeros((2, y.size)), False, *sensitivity_kernels(model, []))
    assert info_i[0] == STIFF
    np.testing.assert_array_equal(y, y0)        # the segment's start, for the re-solve


def test_failures_are_a_status_not_an_exception():
    model = pg.load_model("pk_oral")
    sim = pg.simulate(model, {"ka": [1.0, 1.0]}, np.linspace(0, 24, 5), max_steps=3, **TIGHT)
    assert list(sim.status) == [-1, -1]
    assert "more than 3 steps" in sim.message[0]


def test_a_pickled_model_and_its_simulation():
    model = pickle.loads(pickle.dumps(pg.load_model("pk_iv_bolus")))
    sim = pg.simulate(model, None, np.linspace(0, 12, 5), sensitivities=["CL"], **TIGHT)
    assert sim.stats["method"] == DOP
    back = pickle.loads(pickle.dumps(sim))
    np.testing.assert_array_equal(back.states, sim.states)


def test_the_numpy_backend_runs_the_stacked_lsoda_at_tight_tolerances():
    code = ("import numpy as np, progression as pg\n"
            "m = pg.load_model('pk_iv_bolus')\n"
            "t = np.linspace(0, 24, 7)\n"
            "s = pg.simulate(m, None, t, rtol=1e-10, atol=1e-12)\n"
            "exact = 100 / 50 * np.exp(-5 / 50 * t)\n"
            "assert np.allclose(s['conc'][0], exact, rtol=1e-8), s['conc']\n"
            "print(s.stats['method'])\n")
    env = dict(os.environ, PROGRESSION_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LSODA"


def test_the_generated_sensitivity_kernel_matches_the_jacobian_products(monkeypatch):
    from progression.simulate import _dop853_numba as dop

    model = pg.load_model("pk_oral")
    cols = [model.parameter_index(q) for q in ("ka", "CL", "V")]
    assert dop.sensitivity_kernels(model, cols)[1]          # generated for these columns
    t = np.linspace(0.0, 24.0, 25)
    # a scale switch makes the factor a_q of CL 2 after t = 6
    kw = dict(switches=[Switch(6.0, scale={"CL": 2.0})], sensitivities=["ka", "CL", "V"],
              doses=[Dose(time=0.0, amount=300.0, target="A_gut")], **TIGHT)
    fast = pg.simulate(model, {"ka": [0.8, 1.5]}, t, **kw)
    monkeypatch.setattr(dop, "sensitivity_kernels",
                        lambda model, sidx: (dop._pack_one(model.kernels.rhs), False))
    plain = pg.simulate(model, {"ka": [0.8, 1.5]}, t, **kw)
    assert fast.stats["method"] == plain.stats["method"] == DOP
    # the same method on the same system: equal to rounding and the step sequences it moves
    np.testing.assert_allclose(fast.states, plain.states, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.state_sensitivities, plain.state_sensitivities,
                               rtol=1e-8, atol=1e-10)
