"""The built-in ALS models against the biology reference (als-biology.md §3-§5)."""

import numpy as np
import pytest

import progression as pg

FINE = np.linspace(0, 80, 801)
TIGHT = {"rtol": 1e-8, "atol": 1e-10}
# Appendix A's values of the parameters the issue-13 recalibration moved (als_systemic)
APPENDIX_A = {"k0": 0.010, "kA": 0.020, "kE": 0.010, "pB": 1.0, "Nth": 0.75}


@pytest.mark.parametrize("name", pg.available_models())
def test_every_parameter_is_documented(name):
    spec = pg.load_model(name).spec
    assert spec.description and spec.time_unit
    for p in spec.parameters:
        assert p.description.strip(), f"{name}.{p.name}: no description"
        assert p.unit.strip(), f"{name}.{p.name}: no unit"
        assert p.source.strip(), f"{name}.{p.name}: no source"
        assert p.bounds[0] <= p.value <= p.bounds[1]
    for s in spec.states:
        assert s.description.strip(), f"{name}.{s.name}: no description"


def _healthy(model):
    p = model.defaults
    return model.initial(0.0, None, p[:, None])


@pytest.mark.parametrize(("name", "drive_off"), [
    ("als_systemic", {"k0": 0.0}),     # the default C_glia0 = 1.1 (issue 13)
    ("als_systemic", {"k0": 0.0, "aC": 0.0}),
    ("als_systemic", {"k0": 0.0, "C_glia0": 1.1}),
    ("als_reduced", {"k0": 0.0}),
])
def test_without_disease_drive_the_healthy_state_is_steady(name, drive_off):
    model = pg.load_model(name)
    table = model.parameter_table(drive_off)
    y0 = model.initial(0.0, None, table.T)
    np.testing.assert_allclose(model.rhs(0.0, y0, table.T), 0.0, atol=1e-12)
    sim = pg.simulate(model, table, np.linspace(0, 600, 61), **TIGHT)
    np.testing.assert_allclose(sim.states[0], np.repeat(y0, 61, axis=1), atol=1e-8)
    assert np.all(sim["ALSFRS_R"] > 47.99)
    assert np.isnan(sim.event_time("death")[0])


def test_appendix_a_barrier_leak_alone_eventually_starts_disease():
    """Documented property of the reference's Appendix A (C_glia0 = 0): aC*C/(KC+C) > 0 at
    C = 1, so disease starts even with k0 = 0 (the default C_glia0 = 1.1 prevents it). With
    Appendix A's own values (the issue-13 defaults lower kA, kE, pB and Nth): onset at ~31
    months; with the recalibrated defaults, the weaker glial loop takes ~76 months."""
    sim = pg.simulate("als_systemic", {**APPENDIX_A, "k0": 0.0, "C_glia0": 0.0},
                      np.linspace(0, 120, 121), **TIGHT)
    assert 25 < sim.event_time("clinical_onset")[0] < 40
    sim = pg.simulate("als_systemic", {"k0": 0.0, "C_glia0": 0.0}, np.linspace(0, 240, 241),
                      **TIGHT)
    assert 60 < sim.event_time("clinical_onset")[0] < 90


def _typical_patient(name):
    # the §5 prototype's event is the threshold N = Ndeath (death_threshold = 1); the hazard's
    # median survival is checked in tests/test_hazard_als.py
    sim = pg.simulate(name, {"death_threshold": 1.0}, FINE, **TIGHT)
    onset = sim.event_time("clinical_onset")[0]
    death = sim.event_time("death")[0]

    def at(out, t):
        return float(np.interp(t, FINE, sim[out][0]))

    return sim, onset, death, at


@pytest.mark.parametrize("name", ["als_systemic", "als_reduced"])
def test_default_patient_reproduces_the_reference_typical_patient(name):
    """§5 table: onset 15.7 months after t=0, ALSFRS-R 34.5 at +12 and 22.5 at +24 months,
    event 34.2 months after onset; NfL ~100 pg/mL; CRP 2-3 mg/L; inflammation ~2/3 of hazard
    in §5, ~1/3 in both models since issue 13 (what the trials allow)."""
    sim, onset, death, at = _typical_patient(name)
    print(f"{name}: onset {onset:.2f}, F(+12) {at('ALSFRS_R', onset + 12):.2f}, "
          f"F(+24) {at('ALSFRS_R', onset + 24):.2f}, event after onset {death - onset:.2f}")
    assert onset == pytest.approx(15.7, abs=0.5)
    assert at("ALSFRS_R", onset) == pytest.approx(47.0, abs=0.01)  # linear interpolation
    assert at("ALSFRS_R", onset + 12) == pytest.approx(34.5, abs=1.0)
    assert at("ALSFRS_R", onset + 24) == pytest.approx(22.5, abs=1.0)
    # 31.7 (als_systemic) and 31.9 (als_reduced) since their issue-13 recalibrations
    # (inflammatory share ~1/3, deeper reserve Nth 0.75 -> 0.68 / 0.70: the threshold N = 0.30
    # comes a little sooner after onset; 34.4 for als_reduced before, §5's 34.2)
    assert death - onset == pytest.approx(31.9 if name == "als_reduced" else 31.7,
                                          abs=1.0)
    slopes = [(at("ALSFRS_R", onset + a) - at("ALSFRS_R", onset + a + 12)) / 12 for a in (0, 12)]
    assert all(0.85 <= s <= 1.15 for s in slopes), f"~1 point/month, nearly linear: {slopes}"
    assert 80 <= at("NfL", onset + 12) <= 150
    # §5 table: CRP 2.6-3.2 mg/L over the course (2.6 at +12); als_systemic 3.0 since the
    # second issue-13 recalibration (faster recovery of Treg function kphi 0.6 follows the
    # cytokine load more closely)
    assert 2.0 <= at("CRP", onset + 12) <= 3.2
    # §5's prototype: ~2/3; the trials allow at most ~1/3 (§0.1 item 10, §7, §9.3): both models
    # are recalibrated to 0.32 (issue 13; als_reduced's second calibration,
    # benchmarks/als_reduced_recalibration.py: 0.65 before)
    assert 0.25 <= at("inflammatory_share", onset + 12) <= 0.4
    assert 10 <= at("ALSFRS_R", death - 0.1) <= 20, "ALSFRS-R at the event ~12-20 (§4.6)"


def test_systemic_peripheral_markers_move_by_tens_of_percent():
    """§0.1 point 8 and §5: P up 30-70%, Treg number down ~20%, function down ~35%."""
    sim, onset, death, at = _typical_patient("als_systemic")
    t = onset + 12
    assert 1.3 <= at("P", t) <= 1.7
    assert 0.75 <= at("R", t) <= 0.9
    assert 0.55 <= at("phi", t) <= 0.75
    assert 1.5 <= at("C", t) <= 2.3


@pytest.mark.parametrize("a0", [0.01, 0.05])
def test_als_reduced_healthy_state_absorbs_a_glial_perturbation(a0):
    """Issue 13, "a stable healthy state at k0 = 0": toxic glia pushed to A = a0 with no
    disease drive decay back (linear decay wR*Tmax + dA - aAA = 0.30/month at the defaults of
    the second calibration, benchmarks/als_reduced_recalibration.py, plus the slower loop
    through D and I: measured A 8.4e-4 / 4.7e-3 at 12 months and 6.4e-6 / 3.3e-5 at 120 from
    0.01 / 0.05), and the function stays intact (ALSFRS-R > 47.99 after 10 years)."""
    model = pg.load_model("als_reduced")
    t = np.linspace(0.0, 120.0, 121)
    sim = pg.simulate(model, {"k0": 0.0}, t, initial={"A": a0}, **TIGHT)
    a = sim.states[0, model.state_names.index("A")]
    assert a[12] < 0.15 * a0 and a[-1] < 1e-3 * a0
    assert np.all(np.diff(a) <= 0.0)
    assert sim["ALSFRS_R"][0, -1] > 47.99
