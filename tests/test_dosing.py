"""Dose records in the simulator, against closed-form pharmacokinetics to a relative 1e-6.

Every expected value is a closed form (superposition of one-dose responses of linear models);
the simulator runs at rtol 1e-10 so that the stated tolerance measures the dosing logic, not
the integrator.
"""

import numpy as np
import pytest

import progression as pg
from progression import Dose

RTOL = 1e-6
ZERO = 1e-12   # absolute slack for values that are exactly 0 (before a dose): concs are O(1)
TIGHT = {"rtol": 1e-10, "atol": 1e-14}
TIMES = np.linspace(0.0, 60.0, 121)


def _after(t, td):
    """Time since a dose (0 before it) and the indicator that it has been given."""
    tau = t - td
    return np.where(tau >= 0, tau, 0.0), tau >= 0


def _two_cmt(CL, V1, Q, V2):
    """Eigenvalues and amount-in-central coefficients of the 2-compartment unit response."""
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    s, p = k10 + k12 + k21, k10 * k21
    alpha = (s + np.sqrt(s * s - 4 * p)) / 2
    beta = (s - np.sqrt(s * s - 4 * p)) / 2
    return np.array([alpha, beta]), np.array([(alpha - k21) / (alpha - beta),
                                              (k21 - beta) / (alpha - beta)])


def _bolus_2cmt(t, doses, CL, V1, Q, V2):
    lam, c = _two_cmt(CL, V1, Q, V2)
    out = np.zeros_like(t)
    for td, amt in doses:
        tau, on = _after(t, td)
        out += on * amt * (c[0] * np.exp(-lam[0] * tau) + c[1] * np.exp(-lam[1] * tau))
    return out / V1


def _infusion(t, start, duration, rate, lam, coef, volume):
    """Concentration from a zero-order infusion into a sum-of-exponentials unit response."""
    out = np.zeros_like(t)
    tau, on = _after(t, start)
    for lk, ck in zip(lam, coef, strict=True):
        out += on * ck * (np.exp(-lk * np.maximum(tau - duration, 0)) - np.exp(-lk * tau)) / lk
    return rate * out / volume


def _oral(t, td, amt, F, ka, lam, coef, volume, lag=0.0):
    tau, on = _after(t, td + lag)
    out = np.zeros_like(t)
    for lk, ck in zip(lam, coef, strict=True):
        out += ck * (np.exp(-lk * tau) - np.exp(-ka * tau)) / (ka - lk)
    return on * F * amt * ka * out / volume


def test_one_compartment_bolus_multiple_doses_with_addl():
    CL, V = 4.0, 40.0
    doses = [Dose(0.0, 100.0), Dose(8.0, 50.0, addl=4, ii=8.0), Dose(50.0, 20.0, target=1)]
    sim = pg.simulate("pk_iv_bolus", {"CL": CL, "V": V}, TIMES, doses=doses, **TIGHT)
    given = [(0.0, 100.0)] + [(8.0 * (k + 1), 50.0) for k in range(5)] + [(50.0, 20.0)]
    expected = sum(_after(TIMES, td)[1] * amt * np.exp(-CL / V * _after(TIMES, td)[0])
                   for td, amt in given) / V
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


def test_single_dose_parameter_is_replaced_by_records():
    # pk_iv_bolus's record-free `dose` (A_c(0) = dose) is set to 0 when records are given.
    sim = pg.simulate("pk_iv_bolus", {"dose": 100.0}, TIMES, doses=[Dose(0.0, 30.0)], **TIGHT)
    np.testing.assert_allclose(sim["conc"][0], 30.0 / 50.0 * np.exp(-0.1 * TIMES), rtol=RTOL)
    legacy = pg.simulate("pk_iv_bolus", {"dose": 100.0}, TIMES, **TIGHT)
    np.testing.assert_allclose(legacy["conc"][0], 2.0 * np.exp(-0.1 * TIMES), rtol=RTOL)


def test_two_compartment_bolus_with_addl():
    par = {"CL": 3.0, "V1": 15.0, "Q": 8.0, "V2": 35.0}
    sim = pg.simulate("pk_2cmt_iv", par, TIMES, doses=[Dose(2.0, 80.0, target="A_c", addl=5,
                                                           ii=9.5)], **TIGHT)
    expected = _bolus_2cmt(TIMES, [(2.0 + 9.5 * k, 80.0) for k in range(6)], **par)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


@pytest.mark.parametrize("how", ["rate", "duration"])
def test_zero_order_infusion_one_and_two_compartments(how):
    amount, duration = 120.0, 6.0
    spec = {"rate": amount / duration} if how == "rate" else {"duration": duration}
    doses = [Dose(1.0, amount, **spec), Dose(20.0, amount, **spec, addl=1, ii=4.0)]
    CL, V = 5.0, 50.0
    sim = pg.simulate("pk_infusion", {"CL": CL, "V": V}, TIMES, doses=doses, **TIGHT)
    starts = (1.0, 20.0, 24.0)       # the second and third overlap (4 h apart, 6 h long)
    expected = sum(_infusion(TIMES, s, duration, amount / duration, [CL / V], [1.0], V)
                   for s in starts)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL, atol=ZERO)
    par = {"CL": 3.0, "V1": 15.0, "Q": 8.0, "V2": 35.0}
    sim = pg.simulate("pk_2cmt_iv", par, TIMES, doses=doses, **TIGHT)
    lam, coef = _two_cmt(**par)
    expected = sum(_infusion(TIMES, s, duration, amount / duration, lam, coef, par["V1"])
                   for s in starts)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL, atol=ZERO)


def test_oral_with_lag_and_bioavailability_one_and_two_compartments():
    F, ka, lag, CL, V = 0.6, 1.3, 0.75, 5.0, 50.0
    doses = [Dose(0.0, 100.0, target=1, addl=3, ii=12.0), Dose(30.0, 40.0, target="A_c")]
    sim = pg.simulate("pk_oral", {"F_bio": F, "ka": ka, "tlag": lag, "CL": CL, "V": V}, TIMES,
                      doses=doses, **TIGHT)
    ke = CL / V
    expected = sum(_oral(TIMES, 12.0 * k, 100.0, F, ka, [ke], [1.0], V, lag) for k in range(4))
    tau, on = _after(TIMES, 30.0)
    expected += on * 40.0 / V * np.exp(-ke * tau)      # IV into A_c: no F, no lag
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)

    par = {"CL": 3.0, "V1": 15.0, "Q": 8.0, "V2": 35.0}
    sim = pg.simulate("pk_2cmt_oral", {"F_bio": F, "ka": ka, "tlag": lag, **par}, TIMES,
                      doses=[Dose(0.0, 100.0, addl=3, ii=12.0)], **TIGHT)
    lam, coef = _two_cmt(**par)
    expected = sum(_oral(TIMES, 12.0 * k, 100.0, F, ka, lam, coef, par["V1"], lag)
                   for k in range(4))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


def test_steady_state_bolus_matches_closed_form_superposition():
    CL, V, tau, amt = 4.0, 40.0, 12.0, 100.0
    ke = CL / V
    sim = pg.simulate("pk_iv_bolus", {"CL": CL, "V": V}, TIMES,
                      doses=[Dose(0.0, amt, ss=1, ii=tau, addl=2)], **TIGHT)
    # Doses at 0, 12, 24 after an infinite history every 12 h: the geometric series of the
    # history in closed form, plus the additional doses.
    history = amt / V * np.exp(-ke * TIMES) * np.exp(-ke * tau) / (1 - np.exp(-ke * tau))
    expected = history + sum(_after(TIMES, td)[1] * amt / V * np.exp(-ke * _after(TIMES, td)[0])
                             for td in (0.0, 12.0, 24.0))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


def test_steady_state_two_compartment_bolus_and_oral_with_lag():
    par = {"CL": 3.0, "V1": 15.0, "Q": 8.0, "V2": 35.0}
    lam, coef = _two_cmt(**par)
    tau = 12.0
    times = np.linspace(10.0, 40.0, 31)
    sim = pg.simulate("pk_2cmt_iv", par, times, doses=[Dose(10.0, 50.0, ss=1, ii=tau)],
                      **TIGHT)
    # Closed-form geometric sum over the infinite history, per exponential.
    t = times - 10.0
    expected = 50.0 / par["V1"] * sum(c * np.exp(-lk * t) / (1 - np.exp(-lk * tau))
                                      for lk, c in zip(lam, coef, strict=True))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)

    F, ka, lag = 0.7, 1.1, 1.5
    sim = pg.simulate("pk_2cmt_oral", {"F_bio": F, "ka": ka, "tlag": lag, **par}, times,
                      doses=[Dose(10.0, 50.0, ss=1, ii=tau)], **TIGHT)
    # Truncated superposition: 80 past doses leave < exp(-80 * 12 * beta) ~ 1e-30 behind.
    expected = sum(_oral(times, 10.0 - tau * k, 50.0, F, ka, lam, coef, par["V1"], lag)
                   for k in range(80))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


def test_steady_state_infusion():
    CL, V, tau, amt, dur = 5.0, 50.0, 8.0, 80.0, 2.0
    sim = pg.simulate("pk_infusion", {"CL": CL, "V": V}, TIMES,
                      doses=[Dose(0.0, amt, duration=dur, ss=1, ii=tau)], **TIGHT)
    expected = sum(_infusion(TIMES, -tau * k, dur, amt / dur, [CL / V], [1.0], V)
                   for k in range(100))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL)


def test_evid_3_and_4_reset_states_and_stop_infusions():
    CL, V = 5.0, 50.0
    ke = CL / V
    doses = [Dose(0.0, 100.0), Dose(10.0, evid=3), Dose(20.0, 50.0),
             Dose(30.0, 70.0, evid=4), Dose(40.0, 60.0, duration=10.0), Dose(45.0, evid=3)]
    sim = pg.simulate("pk_infusion", {"CL": CL, "V": V}, TIMES, doses=doses, **TIGHT)
    t = TIMES
    expected = np.where(t < 10, 100 / V * np.exp(-ke * t), 0.0)
    expected += np.where((t >= 20) & (t < 30), 50 / V * np.exp(-ke * (t - 20)), 0.0)
    expected += np.where((t >= 30) & (t < 40), 70 / V * np.exp(-ke * (t - 30)), 0.0)
    infusion = _infusion(t, 40.0, 10.0, 6.0, [ke], [1.0], V)
    expected += np.where((t >= 40) & (t < 45), infusion, 0.0)
    # At t = 40 the EVID 4 dose has decayed 10 h and continues under the infusion until 45.
    expected += np.where((t >= 40) & (t < 45), 70 / V * np.exp(-ke * (t - 30)), 0.0)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=RTOL, atol=ZERO)
    assert np.all(sim["conc"][0][t >= 45] == 0.0), "the reset stopped the infusion"


def test_per_subject_amounts_in_one_batch_equal_single_runs():
    model = pg.load_model("pk_oral")
    before = set(model._jumps)          # the model object is shared with earlier tests
    CL = np.array([3.0, 5.0, 8.0])
    lag = np.array([0.0, 0.5, 1.25])
    table = {"subject": [0, 1, 2, 0, 2], "time": [0.0, 0.0, 6.0, 24.0, 30.0],
             "amount": [100.0, 250.0, 37.5, 80.0, 10.0], "cmt": [1, 1, 1, 2, 1],
             "addl": [1, 0, 2, 0, 0], "ii": [12.0, 0.0, 8.0, 0.0, 0.0]}
    batch = pg.simulate(model, {"CL": CL, "tlag": lag}, TIMES, doses=table, **TIGHT)
    for i in range(3):
        rows = [j for j, s in enumerate(table["subject"]) if s == i]
        mine = {k: [v[j] for j in rows] for k, v in table.items()}
        mine["subject"] = [0] * len(rows)
        alone = pg.simulate(model, {"CL": CL[i], "tlag": lag[i]}, TIMES, doses=mine, **TIGHT)
        np.testing.assert_allclose(batch["conc"][i], alone["conc"][0], rtol=RTOL, atol=ZERO)
    # One compiled jump per dosing compartment serves every amount: no recompilation.
    per_compartment = {(("A_gut", "A_gut + F_bio * amt_A_gut"),), (("A_c", "A_c + amt_A_c"),)}
    assert per_compartment <= set(model._jumps)
    assert set(model._jumps) - before <= per_compartment


def test_one_parameter_set_is_shared_by_every_dosed_subject():
    sim = pg.simulate("pk_iv_bolus", None, TIMES,
                      doses={"subject": [0, 1], "time": [0.0, 5.0], "amount": [10.0, 20.0]},
                      **TIGHT)
    assert sim.n_subjects == 2
    tau, on = _after(TIMES, 5.0)
    np.testing.assert_allclose(sim["conc"][1], on * 20.0 / 50.0 * np.exp(-0.1 * tau),
                               rtol=RTOL)


def test_cohort_dose_table():
    obs = {"subject": ["a", "b"], "time": [1.0, 1.0], "observable": ["conc", "conc"],
           "value": [1.0, 1.0]}
    doses = {"subject": ["b", "a", "b"], "time": [0.0, 2.0, 6.0], "amount": [40.0, 10.0, 60.0],
             "target": ["1", "A_c", "1"], "duration": [np.nan, np.nan, 3.0],
             "reset": [False, False, False]}
    cohort = pg.Cohort(obs, doses=doses, time_unit="hour")
    sim = pg.simulate("pk_infusion", None, TIMES, doses=cohort, **TIGHT)
    order = list(cohort.subjects)
    a, b = order.index("a"), order.index("b")
    tau, on = _after(TIMES, 2.0)
    np.testing.assert_allclose(sim["conc"][a], on * 10.0 / 50.0 * np.exp(-0.1 * tau),
                               rtol=RTOL)
    tau, on = _after(TIMES, 0.0)
    expected = on * 40.0 / 50.0 * np.exp(-0.1 * tau)
    expected += _infusion(TIMES, 6.0, 3.0, 20.0, [0.1], [1.0], 50.0)
    np.testing.assert_allclose(sim["conc"][b], expected, rtol=RTOL)


def test_sensitivities_across_doses_match_finite_differences():
    # d conc / d F_bio (bioavailability enters the dose jump and the infusion term),
    # d conc / d CL and d conc / d tlag, across bolus and infusion records, against central
    # differences.
    # d conc / d tlag moves every lagged switch (bolus, infusion start and end); no output
    # time lies within the difference step of a dose time (0.75, 5.75, 9.75, 10.75, 20.75).
    doses = [Dose(0.0, 100.0, addl=2, ii=10.0), Dose(5.0, 60.0, duration=4.0),
             Dose(12.0, 30.0, target="A_c")]
    base = {"F_bio": 0.6, "ka": 1.3, "CL": 5.0, "V": 50.0, "tlag": 0.75}
    sim = pg.simulate("pk_oral", base, TIMES, doses=doses,
                      sensitivities=["F_bio", "CL", "tlag"], **TIGHT)
    for name in ("F_bio", "CL", "tlag"):
        h = 1e-4 * base[name]       # central differences: error ~1e-8 of the largest
        up = pg.simulate("pk_oral", {**base, name: base[name] + h}, TIMES, doses=doses,
                         **TIGHT)["conc"][0]
        down = pg.simulate("pk_oral", {**base, name: base[name] - h}, TIMES, doses=doses,
                           **TIGHT)["conc"][0]
        fd = (up - down) / (2 * h)
        np.testing.assert_allclose(sim.sensitivity("conc", name)[0], fd, rtol=1e-5,
                                   atol=1e-6 * np.abs(fd).max(), err_msg=name)


def test_steady_state_sensitivities_match_finite_differences():
    # dy*/dp = (I - Phi_y)^-1 Phi_p at the periodic fixed point, then carried on.
    doses = [Dose(0.0, 100.0, ss=1, ii=12.0, addl=1)]
    base = {"F_bio": 0.6, "ka": 1.3, "CL": 5.0, "V": 50.0, "tlag": 1.25}
    names = ["F_bio", "CL", "ka", "tlag"]
    sim = pg.simulate("pk_oral", base, TIMES, doses=doses, sensitivities=names, **TIGHT)
    for name in names:
        h = 1e-4 * base[name]       # central differences: error ~1e-8 of the largest
        up = pg.simulate("pk_oral", {**base, name: base[name] + h}, TIMES, doses=doses,
                         **TIGHT)["conc"][0]
        down = pg.simulate("pk_oral", {**base, name: base[name] - h}, TIMES, doses=doses,
                           **TIGHT)["conc"][0]
        fd = (up - down) / (2 * h)
        np.testing.assert_allclose(sim.sensitivity("conc", name)[0], fd, rtol=1e-5,
                                   atol=1e-6 * np.abs(fd).max(), err_msg=name)
