"""Infusions whose rate or duration is a model parameter (NONMEM RATE = -1 / -2).

Expected values are the closed-form one-compartment infusion (superposed over doses) and
central finite differences of ``simulate`` outputs; the simulator runs at rtol 1e-10 so that
the tolerances measure the dosing logic, not the integrator. The model is
``tests/models/pk_infusion_modelled.toml``: ``pk_infusion`` plus a bioavailability ``F``, a lag
``tlag``, a modelled rate ``R1`` and a modelled duration ``D1``.
"""

from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression import Dose
from progression.errors import DataError, ModelError, ProgressionError

MODEL = str(Path(__file__).parent / "models" / "pk_infusion_modelled.toml")
TIGHT = {"rtol": 1e-10, "atol": 1e-14}
# Output times off every switch time of the cases below (difference steps never cross one).
TIMES = np.linspace(0.0, 40.0, 81) + 0.125
BASE = {"CL": 5.0, "V": 50.0, "F": 0.6, "tlag": 0.7, "R1": 20.0, "D1": 3.0}


def _infusion(t, start, duration, rate, CL, V):
    """Concentration of a zero-order infusion at ``rate`` from ``start`` for ``duration``."""
    ke = CL / V
    tau = np.maximum(t - start, 0.0)
    return rate / CL * (np.exp(-ke * np.maximum(tau - duration, 0.0)) - np.exp(-ke * tau))


def _expected(t, doses, p):
    """Closed form of a list of (time, amount, mode) infusions under NONMEM's rules: RATE -1
    delivers F*AMT at R1 (lasting F*AMT/R1), RATE -2 F*AMT over D1; a data rate r keeps its
    duration AMT/r and F scales it."""
    out = np.zeros_like(t)
    F, lag = p["F"], p["tlag"]
    for td, amt, mode in doses:
        if mode == -1:
            duration, rate = F * amt / p["R1"], p["R1"]
        elif mode == -2:
            duration, rate = p["D1"], F * amt / p["D1"]
        else:
            duration, rate = amt / mode, F * mode
        out += _infusion(t, td + lag, duration, rate, p["CL"], p["V"])
    return out


DOSES = [Dose(0.0, 100.0, rate=-1), Dose(10.0, 80.0, rate=-2, addl=2, ii=6.0),
         Dose(30.0, 50.0, rate=10.0)]
GIVEN = [(0.0, 100.0, -1)] + [(10.0 + 6.0 * k, 80.0, -2) for k in range(3)] + [(30.0, 50.0, 10.0)]


def test_pk_infusion_closed_form_when_F_is_one_and_no_lag():
    # With F = 1 and no lag the model is pk_infusion: RATE -1 at R1, RATE -2 over D1, and the
    # same infusions given by their data rate agree with both.
    p = dict(BASE, F=1.0, tlag=0.0)
    doses = [Dose(0.0, 100.0, rate=-1), Dose(12.0, 60.0, rate=-2)]
    sim = pg.simulate(MODEL, p, TIMES, doses=doses, **TIGHT)
    expected = (_infusion(TIMES, 0.0, 100.0 / 20.0, 20.0, 5.0, 50.0)
                + _infusion(TIMES, 12.0, 3.0, 20.0, 5.0, 50.0))
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=1e-6, atol=1e-12)
    same = pg.simulate("pk_infusion", {"CL": 5.0, "V": 50.0}, TIMES,
                       doses=[Dose(0.0, 100.0, rate=20.0), Dose(12.0, 60.0, duration=3.0)],
                       **TIGHT)
    np.testing.assert_allclose(sim["conc"][0], same["conc"][0], rtol=1e-6, atol=1e-12)


def test_multiple_doses_with_addl_lag_and_bioavailability_closed_form():
    sim = pg.simulate(MODEL, BASE, TIMES, doses=DOSES, **TIGHT)
    np.testing.assert_allclose(sim["conc"][0], _expected(TIMES, GIVEN, BASE), rtol=1e-6,
                               atol=1e-12)


def test_batch_of_subjects_with_their_own_rates_and_durations_equals_single_runs():
    p = {"R1": np.array([20.0, 35.0, 12.0]), "D1": np.array([3.0, 1.5, 4.5]),
         "F": np.array([0.6, 1.0, 0.8])}
    table = {"subject": [0, 1, 2, 0, 1, 2], "time": [0.0, 0.0, 2.0, 12.0, 12.0, 12.0],
             "amount": [100.0, 50.0, 80.0, 60.0, 60.0, 60.0], "rate": [-1, -1, -2, -2, -2, -1]}
    batch = pg.simulate(MODEL, p, TIMES, doses=table, **TIGHT)
    for i in range(3):
        mine = {k: v[i] for k, v in p.items()}
        given = [(t, a, r) for s, t, a, r in zip(table["subject"], table["time"],
                                                 table["amount"], table["rate"], strict=True)
                 if s == i]
        expected = _expected(TIMES, given, {**BASE, "tlag": 0.0, **mine})
        np.testing.assert_allclose(batch["conc"][i], expected, rtol=1e-6, atol=1e-12)


def _central(doses, names, base=BASE, times=TIMES):
    sim = pg.simulate(MODEL, base, times, doses=doses, sensitivities=names, **TIGHT)
    for name in names:
        h = 1e-4 * base[name]         # central differences: error ~1e-8 of the largest
        up = pg.simulate(MODEL, {**base, name: base[name] + h}, times, doses=doses,
                         **TIGHT)["conc"][0]
        down = pg.simulate(MODEL, {**base, name: base[name] - h}, times, doses=doses,
                           **TIGHT)["conc"][0]
        fd = (up - down) / (2 * h)
        assert np.abs(fd).max() > 1e-3, f"{name}: the output does not depend on it"
        np.testing.assert_allclose(sim.sensitivity("conc", name)[0], fd, rtol=1e-5,
                                   atol=1e-6 * np.abs(fd).max(), err_msg=name)
    return sim


@pytest.mark.parametrize("lag", [0.0, 0.7])
def test_sensitivities_wrt_rate_duration_F_and_lag_match_central_differences(lag):
    # The end of a RATE -1 infusion (F*AMT/R1 after its start) moves with R1 and F, the end of
    # a RATE -2 one with D1, every switch with the lag: the jumps (f(t_e-) - f(t_e+)) dt_e/dp
    # must be carried, else these differ by O(1).
    names = ["R1", "D1", "F", "CL"] + (["tlag"] if lag else [])
    _central(DOSES, names, dict(BASE, tlag=lag))


def test_two_infusions_of_one_subject_ending_together_move_apart():
    # 100 at R1 = 20 from 0 (5 h at F = 1) and 40 from 3 (2 h): both end at 5, with different
    # d t_end / d R1 (-AMT/R1^2 each); one switch per infusion carries each its own move.
    doses = [Dose(0.0, 100.0, rate=-1), Dose(3.0, 40.0, rate=-1)]
    _central(doses, ["R1", "F"], dict(BASE, F=1.0, tlag=0.0), TIMES + 0.2)


@pytest.mark.parametrize("mode", [-1, -2])
def test_steady_state_with_a_modelled_rate_or_duration(mode):
    doses = [Dose(0.0, 100.0, rate=mode, ss=1, ii=8.0, addl=1)]
    names = ["R1" if mode == -1 else "D1", "F", "CL", "tlag"]
    sim = _central(doses, names)
    # The periodic steady state: the dose at 0 and 8 after an infinite history every 8 h
    # (100 past doses leave < exp(-0.1 * 800) behind).
    given = [(8.0 * k, 100.0, mode) for k in range(-100, 2)]
    np.testing.assert_allclose(sim["conc"][0], _expected(TIMES, given, BASE), rtol=1e-6)


def test_reset_stops_a_modelled_infusion():
    p = dict(BASE, F=1.0, tlag=0.0)
    doses = [Dose(0.0, 100.0, rate=-2), Dose(2.0, evid=3), Dose(10.0, 100.0, rate=-1)]
    sim = pg.simulate(MODEL, p, TIMES, doses=doses, **TIGHT)
    expected = np.where(TIMES < 2.0, _infusion(TIMES, 0.0, 3.0, 100.0 / 3.0, 5.0, 50.0), 0.0)
    expected += _infusion(TIMES, 10.0, 5.0, 20.0, 5.0, 50.0)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("mode", [-2, 3.0])
def test_reset_at_the_end_of_an_infusion_leaves_no_input(mode):
    # The reset comes first at its time and zeroes the input; the end at the same time must
    # then not subtract the rate again (the states would go negative).
    p = dict(BASE, F=1.0, tlag=0.0)
    dose = Dose(0.0, 60.0, rate=mode) if mode < 0 else Dose(0.0, 60.0, duration=mode)
    sim = pg.simulate(MODEL, p, TIMES, doses=[dose, Dose(3.0, evid=3)], **TIGHT)
    expected = np.where(TIMES < 3.0, _infusion(TIMES, 0.0, 3.0, 20.0, 5.0, 50.0), 0.0)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=1e-6, atol=1e-12)


def test_a_reset_stops_the_infusion_it_interrupts_not_a_later_one():
    # Two infusions at one rate: the first (0 to 10) is cut by the reset at 2.5, the second
    # (2.6 to 3.6) starts after it and ends on its own; pairing starts and ends by order
    # instead of by infusion dropped the wrong end (the input went negative after 10).
    doses = [Dose(0.0, 100.0, rate=10.0), Dose(2.5, evid=3), Dose(2.6, 10.0, rate=10.0)]
    sim = pg.simulate("pk_infusion", {"CL": 5.0, "V": 50.0}, TIMES, doses=doses, **TIGHT)
    expected = np.where(TIMES < 2.5, _infusion(TIMES, 0.0, 10.0, 10.0, 5.0, 50.0), 0.0)
    expected += _infusion(TIMES, 2.6, 1.0, 10.0, 5.0, 50.0)
    np.testing.assert_allclose(sim["conc"][0], expected, rtol=1e-6, atol=1e-12)


def test_fit_recovers_the_modelled_duration(tmp_path):
    """Three subjects given RATE = -2 infusions (NONMEM file); CL and D1 estimated per subject
    from the simulated truth (no noise) come back to 1e-6."""
    from progression.fit import fit, parse_fit_config

    truth = dict(BASE, F=1.0, tlag=0.0, D1=2.5)
    t_obs = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.5, 13.0, 14.0, 16.0, 20.0])
    rows = []
    for i in range(3):
        amt = 100.0 + 50.0 * i
        sim = pg.simulate(MODEL, truth, t_obs, doses=[Dose(0.0, amt, rate=-2),
                                                      Dose(12.0, amt, rate=-2)], **TIGHT)
        rows += [(i + 1, t, ".", amt, -2, 1, 1, 1) for t in (0.0, 12.0)]
        rows += [(i + 1, t, repr(float(c)), ".", ".", 0, 0, ".")
                 for t, c in zip(t_obs, sim["conc"][0], strict=True)]
    rows.sort(key=lambda r: (r[0], r[1]))
    (tmp_path / "pk.csv").write_text("ID,TIME,DV,AMT,RATE,EVID,MDV,CMT\n" + "".join(
        ",".join(map(str, r)) + "\n" for r in rows))
    (tmp_path / "pk.toml").write_text('format = "nonmem"\ntime_unit = "hour"\n'
                                      'observable = "conc"\n')
    cohort = pg.read_cohort(tmp_path / "pk.csv", to_unit="hour")
    assert set(cohort.doses["rate"]) == {-2.0}, "the RATE code is kept as it is"
    cfg = parse_fit_config(f"""
[fit]
name = "modelled_duration"
model = "{MODEL}"
[data]
path = "{tmp_path / 'pk.csv'}"
[error.conc]
model = "additive"
a = 0.01
[parameters.D1]
estimate = "subject"
value = 1.0
bounds = [0.05, 48.0]
[parameters.CL]
estimate = "subject"
value = 3.0
bounds = [0.1, 100.0]
""", source="fit.toml")
    result = fit(cfg)
    for name in ("D1", "CL"):
        np.testing.assert_allclose(result.estimates(name), truth[name], rtol=1e-6,
                                   err_msg=name)


# ------------------------------------------------------------------------------ refusals

def test_a_record_into_a_compartment_without_the_parameter_is_refused():
    with pytest.raises(ProgressionError) as info:
        pg.simulate("pk_infusion", None, TIMES, doses=[Dose(0.0, 10.0, rate=-1, subject=0)])
    text = str(info.value)
    for name in ("doses[0]", "subject 0", "'rate'", "'A_c'", "rate = ", "RATE = -1"):
        assert name in text, f"{name!r} not in {text}"


def test_fit_data_with_a_code_the_model_cannot_serve_is_a_data_error():
    from progression.fit import parse_fit_config
    from progression.fit.problem import designs_from_cohort

    obs = {"subject": ["a"], "time": [1.0], "observable": ["conc"], "value": [1.0]}
    doses = {"subject": ["a"], "time": [0.0], "amount": [10.0], "target": ["1"],
             "rate": [-2.0]}
    # Built in Python, so its rows are named doses[i] (a file's rows: see bad_inputs).
    cohort = pg.Cohort(obs, doses=doses, time_unit="hour", source="d.csv")
    cfg = parse_fit_config('[fit]\nmodel = "pk_infusion"\n[error.conc]\nmodel = "additive"\n'
                           'a = 0.1\n[parameters.CL]\nestimate = "subject"\nvalue = 4.0\n'
                           'bounds = [0.1, 100.0]\n', check_data=False, source="fit.toml")
    with pytest.raises(DataError) as info:
        designs_from_cohort(cohort, cfg)
    for name in ("doses[0]", "subject 'a'", "RATE = -2", "'A_c'"):
        assert name in str(info.value), f"{name!r} not in {info.value}"


@pytest.mark.parametrize(("dose", "params", "names"), [
    (Dose(0.0, 10.0, rate=-2, duration=3.0), None, ["'duration'", "'D1'", "found 3"]),
    (Dose(0.0, 0.0, rate=-1), None, ["'amount'", "RATE = -1", "found 0"]),
    (Dose(0.0, 10.0, rate=-3), None, ["'rate'", "-1 or -2", "found -3"]),
    (Dose(0.0, 10.0, rate=-2), {"D1": 0.0}, ["doses[0]", "'D1'", "> 0", "found 0"]),
    (Dose(0.0, 10.0, rate=-1), {"R1": -1.0}, ["doses[0]", "'R1'", "> 0", "found -1"]),
    (Dose(0.0, 100.0, rate=-1, ss=1, ii=4.0), None, ["'ss'", "II = 4", "RATE = -1"]),
])
def test_bad_modelled_records_are_refused(dose, params, names):
    with pytest.raises(ProgressionError) as info:
        pg.simulate(MODEL, params, TIMES, doses=[dose])
    for name in names:
        assert name in str(info.value), f"{name!r} not in {info.value}"


@pytest.mark.parametrize(("keys", "names"), [
    ('rate = "R9"', ["[dosing.A_c] rate", "expected the name of a parameter", "'R9'"]),
    ("duration = 3", ["[dosing.A_c] duration", "found 3"]),
    ('rate = "R1"\nduration = "R1"', ["[dosing.A_c] duration", "other than the rate's"]),
    ('duration = "D0"', ["[dosing.A_c] duration", "positive value", "'D0' = 0"]),
])
def test_bad_dosing_keys_are_model_errors(keys, names, tmp_path):
    text = Path(MODEL).read_text().split("[dosing.A_c]")[0]
    text += '[parameters.D0]\nvalue = 0.0\n\n[dosing.A_c]\ncmt = 1\n' + keys + "\n"
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ModelError) as info:
        pg.load_model(path)
    for name in [str(path), *names]:
        assert name in str(info.value), f"{name!r} not in {info.value}"


def test_fingerprints_of_models_without_the_new_keys_are_unchanged():
    # DosingCompartment's repr (hashed into the fingerprint) shows rate/duration only when set.
    comp = pg.load_model("pk_oral").spec.dosing[0]
    assert repr(comp) == ("DosingCompartment(state='A_gut', cmt=1, bioavailability='F_bio', "
                          "lag='tlag')")
    assert "nrate_A_c" not in pg.load_model("pk_infusion").parameter_names


def test_long_reader_keeps_the_codes_through_unit_conversion_and_writing(tmp_path):
    """A long file's dose table with RATE codes: converting times to months leaves the codes
    (they are not rates), writing as NONMEM and reading back keeps them, and the cohort
    simulates to the closed form."""
    (tmp_path / "obs.csv").write_text("subject,time,observable,value\nA,1.0,conc,1.0\n"
                                      "B,2.0,conc,1.0\n")
    (tmp_path / "doses.csv").write_text("subject,time,amount,target,rate\nA,0,100,1,-1\n"
                                        "B,0,60,A_c,-2\nB,12,30,1,15\n")
    (tmp_path / "obs.toml").write_text('format = "long"\ntime_unit = "hour"\n'
                                       'doses = "doses.csv"\n')
    months = pg.read_cohort(tmp_path / "obs.csv")
    assert months.time_unit == "month"
    np.testing.assert_array_equal(months.doses["rate"][:2], [-1.0, -2.0])
    assert months.doses["rate"][2] == pytest.approx(15.0 * 730.5)    # a rate is per time
    hours = pg.read_cohort(tmp_path / "obs.csv", to_unit="hour")
    pg.write_cohort(hours, tmp_path / "pk.csv", format="nonmem")
    again = pg.read_cohort(tmp_path / "pk.csv", to_unit="hour")
    np.testing.assert_array_equal(again.doses["rate"], hours.doses["rate"])
    p = dict(BASE, F=1.0, tlag=0.0)
    sim = pg.simulate(MODEL, p, TIMES, doses=again, **TIGHT)
    order = list(again.subjects)
    a, b = order.index("A"), order.index("B")
    np.testing.assert_allclose(sim["conc"][a], _expected(TIMES, [(0.0, 100.0, -1)], p),
                               rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(sim["conc"][b], _expected(TIMES, [(0.0, 60.0, -2),
                                                                 (12.0, 30.0, 15.0)], p),
                               rtol=1e-6, atol=1e-12)


def test_fit_jacobian_wrt_rate_duration_F_and_lag_matches_differences():
    """The likelihood's Jacobian (Problem.evaluate, exact path for dosed rows) with respect to
    R1, D1, F and tlag on their estimation scales, against central differences of the
    residuals (relative 1e-5)."""
    from progression.fit import Problem, parse_fit_config
    from progression.fit.problem import designs_from_cohort
    from progression.fit.transforms import from_internal, to_internal

    t_obs = [0.5, 1.5, 2.5, 4.0, 6.0, 9.0, 12.5, 13.5, 15.0, 20.0]
    obs = {"subject": ["a"] * 10 + ["b"] * 10, "time": t_obs * 2,
           "observable": ["conc"] * 20, "value": [1.0 + 0.1 * k for k in range(20)]}
    doses = {"subject": ["a", "a", "b", "b"], "time": [0.0, 12.0, 0.0, 12.0],
             "amount": [100.0, 60.0, 80.0, 80.0], "target": ["1"] * 4,
             "rate": [-1.0, -2.0, -2.0, -1.0]}
    cohort = pg.Cohort(obs, doses=doses, time_unit="hour", source="d.csv")
    entries = {"CL": ("5.0", "[0.1, 100.0]", "log"), "R1": ("20.0", "[0.1, 1000.0]", "log"),
               "D1": ("3.0", "[0.05, 48.0]", "log"), "F": ("0.6", "[0.01, 1.0]", "logit"),
               "tlag": ("0.3", "[0.0, 5.0]", "linear")}
    text = f'[fit]\nmodel = "{MODEL}"\n[error.conc]\nmodel = "additive"\na = 0.1\n'
    for name, (value, bounds, scale) in entries.items():
        text += (f'[parameters.{name}]\nestimate = "subject"\nvalue = {value}\n'
                 f'bounds = {bounds}\nscale = "{scale}"\n')
    text += "[solver]\nrtol = 1e-11\natol = 1e-13\n"
    cfg = parse_fit_config(text, check_data=False, source="fit.toml")
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index(n) for n in entries])
    theta = np.repeat(problem.values[None, :], 2, axis=0)
    theta[1, cols] = [3.0, 30.0, 2.0, 0.8, 0.9]
    rows = np.arange(2)
    ev = problem.evaluate(designs, rows, theta, cols, want_jac=True)
    assert not ev.failed.any(), ev.messages
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x = to_internal(theta[:, cols], sc, lo, hi)
    for c, name in enumerate(entries):
        res = []
        for sign in (1, -1):
            xs = x.copy()
            xs[:, c] += sign * 1e-4
            th = theta.copy()
            th[:, cols] = from_internal(xs, sc, lo, hi)
            res.append(problem.evaluate(designs, rows, th, cols, want_jac=False).residuals)
        for r in rows:
            fd = (res[0][r] - res[1][r]) / 2e-4
            assert np.max(np.abs(fd)) > 1e-3, f"{name}: residuals do not depend on it"
            np.testing.assert_allclose(ev.jacobians[r][:, c], fd, rtol=1e-5,
                                       atol=1e-5 * np.max(np.abs(fd)),
                                       err_msg=f"{name}, row {r}")


@pytest.mark.parametrize("method", ["LSODA", "BDF", "auto"])
def test_switches_one_ulp_apart_make_no_illegal_lsoda_input(method):
    """Two switch times a rounding error apart (a modelled infusion's end computed twice) gave
    a segment of one ulp, which LSODA refused as "Illegal input" (the subject failed and the
    modelled-duration fit stopped at D1 = 2.02 instead of 2.5). Closed form: CL doubled and
    halved back, i.e. unchanged: conc = dose / V exp(-CL / V t)."""
    from progression import Switch

    t1 = 5.0
    t2 = float(np.nextafter(t1, 6.0))
    times = np.linspace(0.0, 10.0, 11)
    sim = pg.simulate("pk_iv_bolus", {"CL": 5.0, "V": 50.0}, times, method=method, rtol=1e-8,
                      atol=1e-12, switches=[Switch(t1, scale={"CL": 2.0}),
                                            Switch(t2, scale={"CL": 0.5})])
    assert sim.status[0] == 0, sim.message[0]
    dose = pg.load_model("pk_iv_bolus").parameter_table(None)[0, 0]
    np.testing.assert_allclose(sim["conc"][0], dose / 50.0 * np.exp(-0.1 * times), rtol=1e-6)
