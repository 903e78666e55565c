"""Fits that see dose records: the likelihood of dosed subjects, its Jacobian and a CLI fit.

Expected values are closed forms (the Bateman function and its superposition over doses),
central finite differences of the residuals, or a simulated truth the fit must recover.
"""


import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError, DataError
from progression.fit import Problem, parse_fit_config
from progression.fit.problem import designs_from_cohort
from progression.fit.transforms import from_internal, to_internal

DOSE_TIMES = (0.0, 12.0, 24.0)
OBS_TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 11.5, 13.0, 16.0, 24.5, 26.0, 30.0, 36.0])
TRUTH = {"ka": 1.2, "CL": 4.0, "V": 40.0}


def _bateman(t, doses, F, ka, CL, V, lag=0.0):
    ke = CL / V
    out = np.zeros_like(t)
    for td, amt in doses:
        tau = t - td - lag
        on = tau >= 0
        tau = np.where(on, tau, 0.0)
        out += on * F * amt * ka / (V * (ka - ke)) * (np.exp(-ke * tau) - np.exp(-ka * tau))
    return out


def _cohort(n=6, *, seed=3, noise=0.0, amounts=None, extra_obs=None, target="A_gut",
            source="doses.csv"):
    """n subjects, oral doses of amounts[i] at DOSE_TIMES, concentrations from the closed form
    with F_bio = 0.8 (the model default), per-subject ka/CL/V around TRUTH."""
    rng = np.random.default_rng(seed)
    amounts = amounts or [100.0 + 20.0 * i for i in range(n)]
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    doses = {"subject": [], "time": [], "amount": [], "target": []}
    truth = []
    for i in range(n):
        sid = f"S{i + 1}"
        p = {k: v * float(np.exp(0.2 * rng.standard_normal())) for k, v in TRUTH.items()}
        truth.append(p)
        conc = _bateman(OBS_TIMES, [(t, amounts[i]) for t in DOSE_TIMES], 0.8, **p)
        conc = conc + noise * rng.standard_normal(conc.size)
        obs["subject"] += [sid] * OBS_TIMES.size
        obs["time"] += list(OBS_TIMES)
        obs["observable"] += ["conc"] * OBS_TIMES.size
        obs["value"] += list(conc)
        for t in DOSE_TIMES:
            doses["subject"].append(sid)
            doses["time"].append(t)
            doses["amount"].append(amounts[i])
            doses["target"].append(target)
    cohort = pg.Cohort(obs, doses=doses, time_unit="hour", time_origin="first dose",
                       source=source)
    return cohort, truth


CONFIG = """
[fit]
name = "doses"
model = "{model}"
[error.conc]
model = "additive"
a = 0.1
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
{extra}
[solver]
{solver}
"""


def _config(model="pk_oral", extra="", solver=""):
    return parse_fit_config(CONFIG.format(model=model, extra=extra, solver=solver),
                            check_data=False, source="fit.toml")


def _theta(problem, values):
    theta = np.repeat(problem.values[None, :], len(values), axis=0)
    for r, p in enumerate(values):
        for k, v in p.items():
            theta[r, problem.names.index(k)] = v
    return theta


def test_designs_carry_the_dose_records():
    cohort, _ = _cohort(2)
    designs, notes = designs_from_cohort(cohort, _config())
    assert not any("dose" in n for n in notes), "no note saying doses are ignored"
    d = designs[0]
    assert d.dose_records
    assert [(x.time, x.amount, x.target) for x in d.doses] == [(t, 100.0, "A_gut")
                                                               for t in DOSE_TIMES]
    import pickle

    again = pickle.loads(pickle.dumps(d))
    assert again.doses == d.doses and again.dose_records


@pytest.mark.parametrize("outputs", ["grid", "exact"])
def test_predictions_are_the_closed_form_superposition(outputs):
    cohort, truth = _cohort(3)
    cfg = _config(solver=f'outputs = "{outputs}"\nrtol = 1e-10\natol = 1e-13')
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    ev = problem.evaluate(designs, np.arange(3), _theta(problem, truth), problem.subject_cols,
                          want_jac=False, want_predictions=True)
    assert not ev.failed.any()
    for i, p in enumerate(truth):
        amt = 100.0 + 20.0 * i
        expected = _bateman(OBS_TIMES, [(t, amt) for t in DOSE_TIMES], 0.8, **p)
        np.testing.assert_allclose(ev.predictions[i], expected, rtol=1e-6)
        # the data are the closed form: every residual is ~0
        assert np.max(np.abs(ev.residuals[i])) < 1e-6
    if outputs == "grid":
        # every subject is dosed: no row uses the grid path, and the path says so
        assert "every subject has doses" in problem.path_name()
        assert problem.path_name().startswith("exact outputs, forward sensitivities")


def test_subjects_without_records_in_dosed_data_use_the_grid_path_with_no_dose():
    """In data with dose records, a subject without any gets no dose (pk_oral's record-free
    `dose` is 0, as in simulate(doses=cohort)); its rows take the grid path."""
    cohort, truth = _cohort(2)
    obs = cohort.observations()
    d = cohort.doses
    keep = d["subject"] == "S1"
    mixed = pg.Cohort({k: obs[k] for k in ("subject", "time", "observable", "value")},
                      doses={k: d[k][keep] for k in ("subject", "time", "amount", "target")},
                      time_unit="hour")
    cfg = _config()
    designs, _ = designs_from_cohort(mixed, cfg)
    assert designs[1].dose_records and not designs[1].doses
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    assert "grid outputs" in problem.path_name()
    assert "rows with doses, covariates or condition inputs: exact outputs" in \
        problem.path_name()
    ev = problem.evaluate(designs, np.arange(2), _theta(problem, truth), problem.subject_cols,
                          want_jac=False, want_predictions=True)
    np.testing.assert_array_equal(ev.predictions[1], 0.0)
    expected = _bateman(OBS_TIMES, [(t, 100.0) for t in DOSE_TIMES], 0.8, **truth[0])
    np.testing.assert_allclose(ev.predictions[0], expected, rtol=1e-5)


def test_grid_and_exact_objectives_agree():
    cohort, truth = _cohort(6, noise=0.05)
    values = [{k: v * 1.1 for k, v in p.items()} for p in truth]
    out = {}
    for outputs in ("grid", "exact"):
        cfg = _config(solver=f'outputs = "{outputs}"')
        designs, _ = designs_from_cohort(cohort, cfg)
        problem = Problem.from_config(cfg)
        problem.fix_grid_step(designs)
        ev = problem.evaluate(designs, np.arange(6), _theta(problem, values),
                              problem.subject_cols, want_jac=False)
        out[outputs] = ev.m2ll
    np.testing.assert_allclose(out["grid"], out["exact"], rtol=1e-6)


def _jacobian_check(cfg, cohort, values, cols_names, rtol=1e-5):
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index(n) for n in cols_names])
    R = len(designs)
    theta = _theta(problem, values)
    ev = problem.evaluate(designs, np.arange(R), theta, cols, want_jac=True)
    assert not ev.failed.any(), ev.messages
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x = to_internal(theta[:, cols], sc, lo, hi)
    for c in range(cols.size):
        h = 1e-4
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
            an = ev.jacobians[r][:, c]
            scale = np.max(np.abs(fd))
            assert scale > 1e-3, f"{cols_names[c]}: residuals do not depend on it"
            np.testing.assert_allclose(an, fd, rtol=rtol, atol=rtol * scale,
                                       err_msg=f"column {cols_names[c]}, row {r}")


def test_jacobian_oral_with_bioavailability_and_lag_against_differences():
    cohort, truth = _cohort(2, noise=0.05)
    extra = """
[parameters.F_bio]
estimate = "subject"
value = 0.7
bounds = [0.01, 1.0]
scale = "logit"
[parameters.tlag]
estimate = "subject"
value = 0.3
bounds = [0.0, 2.0]
scale = "linear"
"""
    cfg = _config(extra=extra, solver="rtol = 1e-11\natol = 1e-13")
    values = [dict(p, F_bio=0.7, tlag=0.3 + 0.1 * i) for i, p in enumerate(truth)]
    _jacobian_check(cfg, cohort, values, ["ka", "CL", "V", "F_bio", "tlag"])


INFUSION_MODEL = """
[model]
name = "infusion_F_lag"
description = "One compartment, zero-order infusions with a bioavailability and a lag"
time_unit = "hour"

[parameters.CL]
value = 5.0
bounds = [0.1, 100.0]

[parameters.V]
value = 50.0
bounds = [1.0, 500.0]

[parameters.F]
value = 0.9
bounds = [0.01, 1.0]

[parameters.tlag]
value = 0.5
bounds = [0.0, 5.0]

[states.A_c]
initial = 0.0

[equations]
A_c = "-(CL / V) * A_c"

[observables.conc]
expression = "A_c / V"

[dosing.A_c]
cmt = 1
bioavailability = "F"
lag = "tlag"
"""


def _infusion_cohort():
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    doses = {"subject": [], "time": [], "amount": [], "target": [], "duration": [],
             "rate": []}
    t_obs = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 13.0, 15.0, 20.0])
    for i, (dur, rate) in enumerate([(2.0, np.nan), (np.nan, 40.0)]):
        sid = f"I{i + 1}"
        obs["subject"] += [sid] * t_obs.size
        obs["time"] += list(t_obs)
        obs["observable"] += ["conc"] * t_obs.size
        obs["value"] += list(1.0 + 0.1 * np.cos(t_obs))
        for t in (0.0, 12.0):
            doses["subject"].append(sid)
            doses["time"].append(t)
            doses["amount"].append(100.0)
            doses["target"].append("1")
            doses["duration"].append(dur)
            doses["rate"].append(rate)
    return pg.Cohort(obs, doses=doses, time_unit="hour", source="infusions.csv")


def test_jacobian_infusion_with_bioavailability_and_lag_against_differences(tmp_path):
    model = tmp_path / "infusion.toml"
    model.write_text(INFUSION_MODEL)
    text = f"""
[fit]
model = "{model}"
[error.conc]
model = "additive"
a = 0.1
[parameters.CL]
estimate = "subject"
value = 5.0
bounds = [0.1, 100.0]
[parameters.V]
estimate = "subject"
value = 50.0
bounds = [1.0, 500.0]
[parameters.F]
estimate = "subject"
value = 0.9
bounds = [0.01, 1.0]
scale = "logit"
[parameters.tlag]
estimate = "subject"
value = 0.5
bounds = [0.0, 5.0]
scale = "linear"
[solver]
rtol = 1e-11
atol = 1e-13
"""
    cfg = parse_fit_config(text, check_data=False, source="fit.toml")
    # no observation at a switch time (start or end of an infusion), where r is kinked
    values = [{"CL": 5.0, "V": 50.0, "F": 0.9, "tlag": 0.35},
              {"CL": 3.0, "V": 40.0, "F": 0.6, "tlag": 1.3}]
    _jacobian_check(cfg, _infusion_cohort(), values, ["CL", "V", "F", "tlag"])


def test_infusion_predictions_closed_form():
    # pk_infusion: rate R for D hours from 0 and from 12, conc = sum of R/CL (1 - e^-ke t) ...
    cohort = _infusion_cohort()
    text = CONFIG.replace('model = "{model}"', 'model = "pk_infusion"')
    text = text.split("[parameters.ka]")[0] + """
[parameters.CL]
estimate = "subject"
value = 4.0
bounds = [0.1, 100.0]
[solver]
rtol = 1e-10
atol = 1e-13
"""
    cfg = parse_fit_config(text.format(model="pk_infusion"), check_data=False)
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    ev = problem.evaluate(designs, np.arange(2), _theta(problem, [{"CL": 4.0}, {"CL": 2.5}]),
                          problem.subject_cols, want_jac=False, want_predictions=True)
    t = designs[0].time
    for r, (CL, D) in enumerate([(4.0, 2.0), (2.5, 100.0 / 40.0)]):
        ke, rate = CL / 50.0, 100.0 / D
        expected = np.zeros_like(t)
        for start in (0.0, 12.0):
            tau = np.maximum(t - start, 0.0)
            expected += rate / CL * (np.exp(-ke * np.maximum(tau - D, 0)) - np.exp(-ke * tau))
        np.testing.assert_allclose(ev.predictions[r], expected, rtol=1e-6)


# ------------------------------------------------------------------------------ refusals

def test_undeclared_compartment_is_a_data_error_naming_file_subject_and_compartment():
    cohort, _ = _cohort(2, target="A_periph")
    with pytest.raises(DataError) as info:
        designs_from_cohort(cohort, _config())
    text = str(info.value)
    for name in ("doses.csv", "subject 'S1'", "A_periph", "A_gut"):
        assert name in text, f"{name!r} not in {text}"


def test_model_without_dosing_compartments_is_refused():
    cohort, _ = _cohort(1)
    cfg = parse_fit_config("""
[fit]
model = "d50"
[error.ALSFRS_R]
model = "additive"
a = 1.0
""", check_data=False)
    obs = cohort.observations()
    alsfrs = pg.Cohort({"subject": obs["subject"], "time": obs["time"],
                        "observable": ["ALSFRS_R"] * len(obs["time"]), "value": [40.0] *
                        len(obs["time"])}, doses=cohort.doses, source="doses.csv")
    with pytest.raises(DataError, match="declares no dosing compartments"):
        designs_from_cohort(alsfrs, cfg)


def test_estimated_offset_with_doses_is_refused_naming_the_key():
    cohort, _ = _cohort(1)
    extra = """
[parameters.time_offset]
estimate = "subject"
value = 0.0
bounds = [-1.0, 1.0]
"""
    with pytest.raises(ConfigError, match=r"parameters\.time_offset"):
        designs_from_cohort(cohort, _config(extra=extra))


def test_estimated_record_free_dose_parameter_is_refused():
    cohort, _ = _cohort(1)
    extra = """
[parameters.dose]
estimate = "subject"
value = 100.0
"""
    with pytest.raises(ConfigError, match=r"parameters\.dose'"):
        designs_from_cohort(cohort, _config(extra=extra))


def test_dose_shifted_before_model_time_zero_is_refused():
    cohort, _ = _cohort(1)
    extra = """
[parameters.time_offset]
value = -5.0
"""
    with pytest.raises(DataError, match="before the model's t = 0"):
        designs_from_cohort(cohort, _config(extra=extra))


def test_fixed_offset_shifts_doses_with_the_data():
    # Data time = model time - 3: observations and doses move together, so the predictions
    # are those of the unshifted problem.
    cohort, truth = _cohort(1)
    shifted = pg.Cohort({k: (np.asarray(v) + 3.0 if k == "time" else v)
                         for k, v in cohort.observations().items() if k != "limit"},
                        doses={k: (np.asarray(v) + 3.0 if k == "time" else v)
                               for k, v in cohort.doses.items()}, time_unit="hour")
    base = _config(solver='outputs = "exact"')
    moved = _config(extra="[parameters.time_offset]\nvalue = -3.0\n",
                    solver='outputs = "exact"')
    preds = []
    for cfg, data in ((base, cohort), (moved, shifted)):
        designs, _ = designs_from_cohort(data, cfg)
        problem = Problem.from_config(cfg)
        ev = problem.evaluate(designs, [0], _theta(problem, truth), problem.subject_cols,
                              want_jac=False, want_predictions=True)
        preds.append(ev.predictions[0])
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-12)


# ------------------------------------------------------------------------------ end to end

def test_cli_fit_recovers_multiple_dose_pk(tmp_path):
    """6 subjects, three oral doses each, concentrations with 2% noise, written as a NONMEM
    file and fitted through the CLI: each subject's ka, CL and V equal an independent
    least-squares fit of the closed form (scipy) to 1e-4 relative, and the simulated truth
    within 10% (the noise allows ~3 SE of ka, which has an RSE of ~2.5%)."""
    import csv

    from scipy.optimize import least_squares

    from progression.cli import main
    from progression.data import write_cohort

    cohort, truth = _cohort(6, seed=11)
    rng = np.random.default_rng(5)
    obs = cohort.observations()
    noisy = obs["value"] * (1 + 0.02 * rng.standard_normal(obs["value"].size))
    data = pg.Cohort({"subject": obs["subject"], "time": obs["time"],
                      "observable": obs["observable"], "value": noisy},
                     doses=cohort.doses, time_unit="hour", time_origin="first dose")
    write_cohort(data, tmp_path / "pk.csv", format="nonmem")
    (tmp_path / "fit.toml").write_text(f"""
[fit]
name = "pk6"
model = "pk_oral"
[data]
path = "pk.csv"
[error.conc]
model = "additive"
a = 0.05
[parameters.ka]
estimate = "subject"
value = 0.8
bounds = [0.05, 10.0]
[parameters.CL]
estimate = "subject"
value = 3.0
bounds = [0.1, 100.0]
[parameters.V]
estimate = "subject"
value = 30.0
bounds = [1.0, 500.0]
[output]
folder = "{tmp_path / 'out'}"
figures = false
""")
    assert main(["fit", str(tmp_path / "fit.toml")]) == 0
    text = (tmp_path / "out" / "fit.json").read_text()
    assert "fits do not use doses" not in text
    assert "every subject has doses" in text
    rows = list(csv.DictReader((tmp_path / "out" / "subjects.csv").open()))
    assert len(rows) == 6
    for row in rows:
        i = int(row["subject"][1:]) - 1
        m = obs["subject"] == row["subject"]
        doses = [(t, 100.0 + 20.0 * i) for t in DOSE_TIMES]

        def resid(lx, m=m, doses=doses):
            ka, CL, V = np.exp(lx)
            return _bateman(obs["time"][m], doses, 0.8, ka, CL, V) - noisy[m]

        ref = np.exp(least_squares(resid, np.log([1.0, 3.0, 30.0]), xtol=1e-14, ftol=1e-14,
                                   gtol=1e-14).x)
        for j, k in enumerate(("ka", "CL", "V")):
            est = float(row[k])
            assert abs(est / ref[j] - 1) < 1e-4, (row["subject"], k, est, ref[j])
            assert abs(est / truth[i][k] - 1) < 0.10, (row["subject"], k, est, truth[i][k])


# ------------------------------------------------------------------ time-varying covariates

WEIGHT_MODEL = """
[model]
name = "weight_pk"
description = "IV bolus at t = 0 (dose parameter), clearance scaled by a time-varying weight"
time_unit = "hour"

[parameters.CL_ref]
value = 5.0
bounds = [0.1, 100.0]

[parameters.V]
value = 50.0
bounds = [1.0, 500.0]

[parameters.dose]
value = 100.0
bounds = [0.0, 1000.0]

[covariates.WT]
interpolation = "locf"

[states.A]
initial = "dose"

[expressions]
CL = "CL_ref * WT / 70"

[equations]
A = "-(CL / V) * A"

[observables.conc]
expression = "A / V"
"""

WT_TIMES = np.array([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0])


def _weight_cohort(tv=True, source="weights.csv"):
    """Two subjects; weight 70 then 100 from t = 3 (S1), 50 then 60 from t = 5 (S2)."""
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    rows = {"subject": [], "time": [], "name": [], "value": []}
    for sid, (w0, w1, tc) in (("S1", (70.0, 100.0, 3.0)), ("S2", (50.0, 60.0, 5.0))):
        obs["subject"] += [sid] * WT_TIMES.size
        obs["time"] += list(WT_TIMES)
        obs["observable"] += ["conc"] * WT_TIMES.size
        obs["value"] += list(1.5 * np.exp(-0.1 * WT_TIMES))
        for t, w in ((0.0, w0), (tc, w1)):
            rows["subject"].append(sid)
            rows["time"].append(t)
            rows["name"].append("WT")
            rows["value"].append(w)
    return pg.Cohort(obs, time_varying=rows if tv else None, time_unit="hour", source=source)


def _weight_config(tmp_path, solver=""):
    path = tmp_path / "weight.toml"
    path.write_text(WEIGHT_MODEL)
    return parse_fit_config(f"""
[fit]
model = "{path}"
[error.conc]
model = "additive"
a = 0.05
[parameters.CL_ref]
estimate = "subject"
value = 5.0
bounds = [0.1, 100.0]
[parameters.V]
estimate = "subject"
value = 50.0
bounds = [1.0, 500.0]
[solver]
{solver}
""", check_data=False, source="fit.toml")


def test_time_varying_covariate_predictions_are_the_piecewise_closed_form(tmp_path):
    cfg = _weight_config(tmp_path, "rtol = 1e-11\natol = 1e-13")
    designs, _ = designs_from_cohort(_weight_cohort(), cfg)
    assert [c[0] for c in designs[0].covariates] == ["WT"]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    assert "covariates" in problem.path_name()
    values = [{"CL_ref": 4.0, "V": 40.0}, {"CL_ref": 6.0, "V": 30.0}]
    ev = problem.evaluate(designs, np.arange(2), _theta(problem, values), problem.subject_cols,
                          want_jac=False, want_predictions=True)
    for r, (w0, w1, tc) in enumerate(((70.0, 100.0, 3.0), (50.0, 60.0, 5.0))):
        CL, V = values[r]["CL_ref"], values[r]["V"]
        k0, k1 = CL * w0 / 70 / V, CL * w1 / 70 / V
        t = WT_TIMES
        amount = np.where(t < tc, 100 * np.exp(-k0 * t),
                          100 * np.exp(-k0 * tc) * np.exp(-k1 * (t - tc)))
        np.testing.assert_allclose(ev.predictions[r], amount / V, rtol=1e-8)


def test_time_varying_covariate_jacobian_and_paths(tmp_path):
    cfg = _weight_config(tmp_path, "rtol = 1e-11\natol = 1e-13")
    values = [{"CL_ref": 4.0, "V": 40.0}, {"CL_ref": 6.0, "V": 30.0}]
    _jacobian_check(cfg, _weight_cohort(), values, ["CL_ref", "V"])
    m2ll = []
    for outputs in ("grid", "exact"):
        cfg = _weight_config(tmp_path, f'outputs = "{outputs}"')
        designs, _ = designs_from_cohort(_weight_cohort(), cfg)
        problem = Problem.from_config(cfg)
        problem.fix_grid_step(designs)
        m2ll.append(problem.evaluate(designs, np.arange(2), _theta(problem, values),
                                     problem.subject_cols, want_jac=False).m2ll)
    np.testing.assert_allclose(m2ll[0], m2ll[1], rtol=1e-6)


def test_a_baseline_covariate_is_a_constant(tmp_path):
    cfg = _weight_config(tmp_path, "rtol = 1e-11\natol = 1e-13")
    base = _weight_cohort(tv=False)
    obs = base.observations()
    cohort = pg.Cohort({k: obs[k] for k in ("subject", "time", "observable", "value")},
                       covariates={"S1": {"WT": 140.0}, "S2": {"WT": 35.0}}, time_unit="hour")
    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    ev = problem.evaluate(designs, np.arange(2), _theta(problem, [{}, {}]),
                          problem.subject_cols, want_jac=False, want_predictions=True)
    for r, w in enumerate((140.0, 35.0)):
        np.testing.assert_allclose(ev.predictions[r],
                                   2.0 * np.exp(-5.0 * w / 70 / 50.0 * WT_TIMES), rtol=1e-8)


def test_a_required_covariate_the_data_lack_names_subject_and_covariate(tmp_path):
    cfg = _weight_config(tmp_path)
    with pytest.raises(DataError) as info:
        designs_from_cohort(_weight_cohort(tv=False), cfg)
    text = str(info.value)
    for name in ("weights.csv", "subject 'S1'", "covariate 'WT'", "no default value"):
        assert name in text, f"{name!r} not in {text}"


def test_time_varying_covariates_the_model_lacks_are_noted(tmp_path):
    cohort, _ = _cohort(1)
    obs = cohort.observations()
    with_tv = pg.Cohort({k: obs[k] for k in ("subject", "time", "observable", "value")},
                        doses=cohort.doses, time_varying={"subject": ["S1"], "time": [0.0],
                                                          "name": ["HT"], "value": [170.0]},
                        time_unit="hour")
    _, notes = designs_from_cohort(with_tv, _config())
    assert any("HT" in n and "not used" in n for n in notes), notes
