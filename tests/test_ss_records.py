"""Steady-state dose records (NONMEM SS = 1 with II) read from data files and used in fits.

Expected values are closed forms: the periodic steady state of a one-compartment oral model
is the sum of the geometric series of its one-dose responses (the Bateman function), and
additional doses add one-dose responses. Fits are checked against an independent
least-squares fit of that closed form (scipy) and a simulated truth, their Jacobian against
central finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
from progression.data import read_cohort, write_cohort
from progression.fit import Problem, parse_fit_config
from progression.fit.problem import designs_from_cohort
from progression.fit.transforms import from_internal, to_internal

F = 0.8     # pk_oral's default bioavailability (not estimated)
TIGHT = {"rtol": 1e-10, "atol": 1e-14}


def _bateman(t, amt, ka, CL, V):
    """One oral dose of ``amt`` at time 0 (0 before it)."""
    ke = CL / V
    on = t >= 0
    tau = np.where(on, t, 0.0)
    return on * F * amt * ka / (V * (ka - ke)) * (np.exp(-ke * tau) - np.exp(-ka * tau))


def _steady(t, amt, ii, ka, CL, V):
    """The periodic steady state of ``amt`` every ``ii`` with a dose at time 0: the sum over
    k >= 0 of one-dose responses at t + k ii (a geometric series per exponential)."""
    ke = CL / V
    return F * amt * ka / (V * (ka - ke)) * (np.exp(-ke * t) / (1 - np.exp(-ke * ii))
                                             - np.exp(-ka * t) / (1 - np.exp(-ka * ii)))


# Subject 1: SS = 1 of 100 every 12 h at t = 0, then ADDL = 2 more doses (at 12 and 24).
# Subject 2: a plain dose of 50 at 0, then SS = 1 of 80 every 8 h at t = 20, which resets
# the history (NONMEM's SS = 1 replaces the states by the steady state). Subject 3: the same
# as subject 2 with the steady state given as EVID 4 (reset and dose): no difference.
NONMEM = """ID,TIME,DV,AMT,EVID,MDV,CMT,SS,II,ADDL
1,0,.,100,1,1,1,1,12,2
1,1,1.0,.,0,0,.,.,.,.
2,0,.,50,1,1,1,0,.,.
2,20,.,80,1,1,1,1,8,.
2,21,1.0,.,0,0,.,.,.,.
3,0,.,50,1,1,1,0,.,.
3,20,.,80,4,1,1,1,8,.
3,21,1.0,.,0,0,.,.,.,.
"""
SIDECAR = 'format = "nonmem"\ntime_unit = "hour"\ntime_origin = "first dose"\n' \
          'observable = "conc"\n'


def _nonmem_file(tmp_path, text=NONMEM):
    path = tmp_path / "ss.csv"
    path.write_text(text)
    path.with_suffix(".toml").write_text(SIDECAR)
    return path


def test_nonmem_ss_records_are_read_into_the_dose_table(tmp_path):
    cohort = read_cohort(_nonmem_file(tmp_path), to_unit="hour")
    d = cohort.doses
    assert d["time"].tolist() == [0.0, 12.0, 24.0, 0.0, 20.0, 0.0, 20.0]
    # ADDL is expanded; only the record carrying SS is a steady state
    assert d["ss"].tolist() == [1, 0, 0, 0, 1, 0, 1]
    np.testing.assert_array_equal(d["ii"], [12.0, np.nan, np.nan, np.nan, 8.0, np.nan, 8.0])
    assert d["reset"].tolist() == [False] * 6 + [True]
    assert any("expanded ADDL/II into 2" in n for n in cohort.notes)
    # a time-unit change converts the interval with the times
    days = cohort.to_time_unit("day")
    np.testing.assert_allclose(days.doses["ii"], [0.5, np.nan, np.nan, np.nan, 8 / 24,
                                                  np.nan, 8 / 24])


def test_nonmem_ss_oral_doses_simulate_to_the_closed_form(tmp_path):
    cohort = read_cohort(_nonmem_file(tmp_path), to_unit="hour")
    p = {"ka": 1.3, "CL": 4.0, "V": 40.0}
    t = np.linspace(0.0, 48.0, 97)
    sim = pg.simulate("pk_oral", {**p, "F_bio": F, "tlag": 0.0}, t, doses=cohort, **TIGHT)
    one = _steady(t, 100.0, 12.0, **p) + _bateman(t - 12.0, 100.0, **p) \
        + _bateman(t - 24.0, 100.0, **p)
    np.testing.assert_allclose(sim["conc"][0], one, rtol=1e-6)
    two = np.where(t < 20.0, _bateman(t, 50.0, **p),
                   _steady(np.maximum(t - 20.0, 0.0), 80.0, 8.0, **p))
    np.testing.assert_allclose(sim["conc"][1], two, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(sim["conc"][2], two, rtol=1e-6, atol=1e-14)
    # the steady state is not the single dose: the check above can fail
    assert np.max(np.abs(one - _bateman(t, 100.0, **p))) > 0.1


@pytest.mark.parametrize("fmt", ["long", "nonmem"])
def test_written_cohort_reads_back_with_ss_and_ii(tmp_path, fmt):
    cohort = read_cohort(_nonmem_file(tmp_path), to_unit="hour")
    out = tmp_path / "out"
    out.mkdir()
    written = write_cohort(cohort, out / "c.csv", format=fmt)
    again = read_cohort(out / "c.csv", to_unit="hour")
    assert again == cohort
    assert again.doses["ss"].tolist() == [1, 0, 0, 0, 1, 0, 1]
    if fmt == "long":
        doses = [p for p in written if p.name.endswith("_doses.csv")][0]
        header = doses.read_text().splitlines()[0].split(",")
        assert header[-2:] == ["ss", "ii"]


def test_doses_without_steady_state_keep_their_file_layout(tmp_path):
    cohort = pg.Cohort({"subject": ["a"], "time": [1.0], "observable": ["conc"],
                        "value": [1.0]},
                       doses={"subject": ["a"], "time": [0.0], "amount": [10.0],
                              "target": ["A_gut"]}, time_unit="hour")
    assert cohort.doses["ss"].tolist() == [0] and np.isnan(cohort.doses["ii"]).all()
    written = write_cohort(cohort, tmp_path / "c.csv")
    doses = [p for p in written if p.name.endswith("_doses.csv")][0]
    assert "ss" not in doses.read_text().splitlines()[0].split(",")
    assert read_cohort(tmp_path / "c.csv", to_unit="hour") == cohort


def test_long_format_dose_file_with_ss_columns(tmp_path):
    (tmp_path / "c.csv").write_text("subject,time,observable,value\na,1,conc,1.0\n")
    (tmp_path / "c_doses.csv").write_text("subject,time,amount,target,ss,ii\n"
                                          "a,0,100,A_gut,1,12\na,12,100,A_gut,,\n")
    cohort = read_cohort(tmp_path / "c.csv", doses=tmp_path / "c_doses.csv",
                         time_unit="hour", to_unit="hour")
    assert cohort.doses["ss"].tolist() == [1, 0]
    np.testing.assert_array_equal(cohort.doses["ii"], [12.0, np.nan])


@pytest.mark.parametrize(("ss", "ii", "expected"), [
    (1, np.nan, ["doses[0]", "column 'ii'", "subject 'a'", "II > 0", "found none"]),
    (2, 12.0, ["doses[0]", "column 'ss'", "SS = 2", "not supported"]),
    (1, -1.0, ["doses[0]", "column 'ii'", ">= 0", "found -1"]),
    ("often", 12.0, ["doses[0]", "column 'ss'", "expected a number", "'often'"]),
])
def test_cohort_refuses_bad_ss_and_ii_by_name(ss, ii, expected):
    with pytest.raises(pg.DataError) as info:
        pg.Cohort({"subject": ["a"], "time": [1.0], "observable": ["conc"], "value": [1.0]},
                  doses={"subject": ["a"], "time": [0.0], "amount": [10.0],
                         "target": ["A_gut"], "ss": [ss], "ii": [ii]}, time_unit="hour")
    for name in expected:
        assert name in str(info.value), f"{name!r} not in {info.value}"


# ------------------------------------------------------------------------------- fits

TRUTH = [{"ka": 1.1, "CL": 4.0, "V": 40.0}, {"ka": 0.7, "CL": 5.5, "V": 35.0},
         {"ka": 1.6, "CL": 3.2, "V": 52.0}, {"ka": 0.9, "CL": 6.0, "V": 45.0}]
AMOUNTS = [100.0, 150.0, 80.0, 120.0]
OBS = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 11.0, 12.5, 14.0, 17.0, 20.0, 24.0])


def _truth_conc(i):
    """Subject i: SS = 1 every 12 h at t = 0, then one additional dose at 12 h."""
    return (_steady(OBS, AMOUNTS[i], 12.0, **TRUTH[i])
            + _bateman(OBS - 12.0, AMOUNTS[i], **TRUTH[i]))


def _ss_cohort(noise=0.0, seed=5):
    rng = np.random.default_rng(seed)
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    doses = {"subject": [], "time": [], "amount": [], "target": [], "ss": [], "ii": []}
    for i in range(len(TRUTH)):
        sid = f"S{i + 1}"
        conc = _truth_conc(i) * (1 + noise * rng.standard_normal(OBS.size))
        obs["subject"] += [sid] * OBS.size
        obs["time"] += list(OBS)
        obs["observable"] += ["conc"] * OBS.size
        obs["value"] += list(conc)
        for t, ss, ii in ((0.0, 1, 12.0), (12.0, 0, np.nan)):
            doses["subject"].append(sid)
            doses["time"].append(t)
            doses["amount"].append(AMOUNTS[i])
            doses["target"].append("A_gut")
            doses["ss"].append(ss)
            doses["ii"].append(ii)
    return pg.Cohort(obs, doses=doses, time_unit="hour", time_origin="first dose",
                     source="ss.csv")


CONFIG = """
[fit]
name = "ss"
model = "pk_oral"
[error.conc]
model = "additive"
a = 0.05
[parameters.ka]
estimate = "subject"
value = 1.0
bounds = [0.05, 10.0]
[parameters.CL]
estimate = "subject"
value = 3.0
bounds = [0.1, 100.0]
[parameters.V]
estimate = "subject"
value = 30.0
bounds = [1.0, 500.0]
[solver]
rtol = 1e-10
atol = 1e-13
"""


def _theta(problem, values):
    theta = np.repeat(problem.values[None, :], len(values), axis=0)
    for r, p in enumerate(values):
        for k, x in p.items():
            theta[r, problem.names.index(k)] = x
    return theta


def test_designs_carry_ss_and_ii_and_predict_the_closed_form():
    cohort = _ss_cohort()
    cfg = parse_fit_config(CONFIG, check_data=False, source="fit.toml")
    designs, _ = designs_from_cohort(cohort, cfg)
    assert [(x.time, x.ss, x.ii) for x in designs[0].doses] == [(0.0, 1, 12.0), (12.0, 0, 0.0)]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    ev = problem.evaluate(designs, np.arange(4), _theta(problem, TRUTH), problem.subject_cols,
                          want_jac=False, want_predictions=True)
    assert not ev.failed.any(), ev.messages
    for i in range(4):
        np.testing.assert_allclose(ev.predictions[i], _truth_conc(i), rtol=1e-6)


def test_jacobian_through_the_steady_state_matches_differences():
    cohort = _ss_cohort(noise=0.03)
    cfg = parse_fit_config(CONFIG, check_data=False, source="fit.toml")
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    names = ["ka", "CL", "V"]
    cols = np.array([problem.names.index(n) for n in names])
    values = [{k: x * 1.15 for k, x in p.items()} for p in TRUTH]
    theta = _theta(problem, values)
    R = len(designs)
    ev = problem.evaluate(designs, np.arange(R), theta, cols, want_jac=True)
    assert not ev.failed.any(), ev.messages
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x = to_internal(theta[:, cols], sc, lo, hi)
    h = 1e-4
    for c in range(cols.size):
        res = []
        for sign in (1, -1):
            xs = x.copy()
            xs[:, c] += sign * h
            th = theta.copy()
            th[:, cols] = from_internal(xs, sc, lo, hi)
            res.append(problem.evaluate(designs, np.arange(R), th, cols,
                                        want_jac=False).residuals)
        for r in range(R):
            fd = (res[0][r] - res[1][r]) / (2 * h)
            scale = np.max(np.abs(fd))
            assert scale > 1e-3, f"{names[c]}: residuals do not depend on it"
            np.testing.assert_allclose(ev.jacobians[r][:, c], fd, rtol=1e-5, atol=1e-5 * scale,
                                       err_msg=f"column {names[c]}, row {r}")


def test_cli_fit_of_ss_records_recovers_the_truth(tmp_path):
    """4 subjects with SS = 1 records every 12 h (2% noise), written as a NONMEM file and
    fitted through the CLI: each subject's ka, CL and V equal an independent least-squares
    fit of the closed-form steady state (scipy) to 1e-4 relative, and the truth within 10%."""
    import csv

    from scipy.optimize import least_squares

    from progression.cli import main

    data = _ss_cohort(noise=0.02)
    write_cohort(data, tmp_path / "pk.csv", format="nonmem")
    assert "SS" in (tmp_path / "pk.csv").read_text().splitlines()[0].split(",")
    (tmp_path / "fit.toml").write_text(CONFIG.split("[solver]")[0] + f"""
[data]
path = "pk.csv"
[output]
folder = "{tmp_path / 'out'}"
figures = false
""")
    assert main(["fit", str(tmp_path / "fit.toml")]) == 0
    obs = data.observations()
    rows = list(csv.DictReader((tmp_path / "out" / "subjects.csv").open()))
    assert len(rows) == 4
    for row in rows:
        i = int(row["subject"][1:]) - 1
        m = obs["subject"] == row["subject"]

        def resid(lx, m=m, i=i):
            ka, CL, V = np.exp(lx)
            t = obs["time"][m]
            return (_steady(t, AMOUNTS[i], 12.0, ka, CL, V)
                    + _bateman(t - 12.0, AMOUNTS[i], ka, CL, V) - obs["value"][m])

        ref = np.exp(least_squares(resid, np.log([1.0, 3.0, 30.0]), xtol=1e-14, ftol=1e-14,
                                   gtol=1e-14).x)
        for j, k in enumerate(("ka", "CL", "V")):
            est = float(row[k])
            assert abs(est / ref[j] - 1) < 1e-4, (row["subject"], k, est, ref[j])
            assert abs(est / TRUTH[i][k] - 1) < 0.10, (row["subject"], k, est, TRUTH[i][k])
