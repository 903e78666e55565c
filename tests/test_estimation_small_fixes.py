"""Issue 10's small estimation fixes: the log10 scale, the at-a-bound warning on the
estimation scale, FitResult.residuals(), objective evaluation at fixed parameters."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from progression.errors import ConfigError
from progression.fit import Design, fit, parse_fit_config
from progression.fit.transforms import (
    SCALES,
    dtheta_dx,
    from_internal,
    internal_bounds,
    to_internal,
)

MODELS = Path(__file__).parent / "models"


# ============================================================================ log10 scale


def test_log10_round_trip_bounds_and_jacobian_against_finite_differences():
    """theta = 10**x: to_internal is its inverse to 1e-14 relative, the optimiser's bounds
    are log10 of the natural ones, and dtheta/dx matches a central difference (step 1e-6,
    error O(h^2) ~ 1e-12 relative) to 1e-8 relative."""
    theta = np.array([1e-5, 3e-3, 0.7, 1.0, 42.0, 9.9e4])
    lo, hi = 1e-6, 1e5
    x = to_internal(theta, "log10", lo, hi)
    np.testing.assert_allclose(x, np.log10(theta), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(from_internal(x, "log10", lo, hi), theta, rtol=1e-14)
    blo, bhi = internal_bounds(["log10"], lo, hi)
    assert blo[0] == pytest.approx(-6.0) and bhi[0] == pytest.approx(5.0)
    h = 1e-6
    fd = (from_internal(x + h, "log10", lo, hi) - from_internal(x - h, "log10", lo, hi)) / (2 * h)
    np.testing.assert_allclose(dtheta_dx(x, "log10", lo, hi), fd, rtol=1e-8)
    # codes and names mix with the other scales element-wise
    code = np.array([SCALES.index(s) for s in ("linear", "log", "logit", "log10")])
    th = np.array([0.5, 0.5, 0.5, 0.5])
    xs = to_internal(th, code, 0.0, 1.0)
    np.testing.assert_allclose(xs, [0.5, np.log(0.5), 0.0, np.log10(0.5)], atol=1e-15)
    np.testing.assert_allclose(from_internal(xs, code, 0.0, 1.0), th, rtol=1e-14)


def test_problem_jacobian_factor_for_log10_matches_the_transform():
    """Problem.dtheta_dx (the factor applied to model sensitivities) equals the transform's
    derivative for every scale."""
    from progression.fit.problem import Problem

    problem = Problem.from_config(decay_config(None, "log10"))
    c = problem.names.index("k")
    theta = problem.values[None, :].repeat(3, axis=0)
    theta[:, c] = [0.02, 0.5, 4.0]
    got = problem.dtheta_dx(theta, np.array([c]))[:, 0]
    x = to_internal(theta[:, c], "log10", problem.lower[c], problem.upper[c])
    np.testing.assert_allclose(got, dtheta_dx(x, "log10", problem.lower[c], problem.upper[c]),
                               rtol=1e-13)


def decay_config(tmp_path, scale, *, bounds=None, estimate="subject", value=0.3, extra=""):
    base = tmp_path if tmp_path is not None else MODELS
    if tmp_path is not None:
        shutil.copy(MODELS / "decay.toml", tmp_path / "decay.toml")
    bounds_line = "" if bounds is None else f"bounds = [{bounds[0]:g}, {bounds[1]:g}]\n"
    text = f"""
[fit]
model = "decay.toml"
[data]
path = "decay.toml"
[error.log_x]
model = "additive"
a = 0.05
[parameters.k]
estimate = "{estimate}"
value = {value}
scale = "{scale}"
{bounds_line}[parameters.x0]
value = 2.0
[solver]
rtol = 1e-10
atol = 1e-12
outputs = "exact"
sensitivities = "forward"
[estimator]
ftol = 1e-12
xtol = 1e-12
{extra}"""
    return parse_fit_config(text, base_dir=base, name=f"decay_{scale}")


def decay_data(k_true=(0.5, 1.3), seed=0):
    t = np.linspace(0.0, 4.0, 12)
    rng = np.random.default_rng(seed)
    out = []
    for i, k in enumerate(k_true):
        y = np.log(2.0) - k * t + 0.05 * rng.standard_normal(t.size)
        out.append(Design(f"S{i + 1}", t, np.zeros(t.size, int), y, np.zeros(t.size, int),
                          np.full(t.size, np.nan)))
    return out


def test_fit_on_log10_scale_reaches_the_log_scale_optimum(tmp_path):
    """log_x = log 2 - k t is linear in k: the least-squares optimum is closed form,
    k_hat = -sum(t (y - log 2)) / sum(t^2). Both scales reach it to 1e-6 relative, and the
    delta-method standard errors agree (the natural-scale SE does not depend on the scale:
    analytic 0.05 / sqrt(sum t^2)) to 1e-4 relative."""
    data = decay_data()
    res = {s: fit(decay_config(tmp_path, s), data=data) for s in ("log", "log10")}
    t = data[0].time
    k_hat = np.array([-np.sum(t * (d.value - np.log(2.0))) / np.sum(t * t) for d in data])
    se = 0.05 / np.sqrt(np.sum(t * t))
    for s, r in res.items():
        np.testing.assert_allclose(r.estimates("k"), k_hat, rtol=1e-6, err_msg=s)
        np.testing.assert_allclose(r.standard_errors("k"), se, rtol=1e-4, err_msg=s)
    assert res["log10"].objective == pytest.approx(res["log"].objective, rel=1e-9)
    # the saved fit draws a log10-scale parameter on log axes like a log-scale one
    res["log10"].save(tmp_path / "out")
    assert list((tmp_path / "out" / "figures").glob("*.png"))


def test_log10_scale_needs_a_positive_start_and_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"parameters\.k\.value.*log10 scale needs a "
                                          r"positive starting value, found 0"):
        decay_config(tmp_path, "log10", bounds=(0.0, 5.0), value=0.0)
    with pytest.raises(ConfigError, match=r"scale.*expected one of.*log10|log10.*scale"):
        decay_config(tmp_path, "log2")


# ============================================================================ at a bound


def test_near_bound_is_measured_on_the_estimation_scale():
    """Bounds [1e-5, 1e5]: on the log scale 1e-6 of the range is 2.3e-5 in log, so only values
    within a factor 1.000023 of a bound are at it (the natural-scale rule, 1e-6 x 1e5 = 0.1,
    flagged everything below 0.1). A bound a scale cannot reach (0 on log) never flags; logit
    keeps the natural-scale rule (its x range is infinite)."""
    from progression.fit.transforms import near_bound

    lo, hi = 1e-5, 1e5
    theta = np.array([1e-5, 1.00002e-5, 1.0001e-5, 1e-3, 0.05, 0.09, 1e5 / 1.00002, 1e5 / 1.0001])
    for s in ("log", "log10"):
        np.testing.assert_array_equal(near_bound(theta, s, lo, hi),
                                      [True, True, False, False, False, False, True, False])
    np.testing.assert_array_equal(near_bound([1e-300, 2.0, 5.0], "log", 0.0, 5.0),
                                  [False, False, True])
    np.testing.assert_array_equal(near_bound([0.0, 5e-7, 2e-6, 0.5], "logit", 0.0, 1.0),
                                  [True, True, False, False])
    np.testing.assert_array_equal(near_bound([0.0, 5e-7, 2e-6, 1.0], "linear", 0.0, 1.0),
                                  [True, True, False, True])


def test_fit_with_wide_log_bounds_flags_only_the_estimate_at_its_bound(tmp_path):
    """k in [1e-5, 1e5] on a log scale. Subject S1 (k = 0.05) is inside and not flagged (the
    natural-scale rule flagged every k below 0.1); S2's data rise (true k = -0.2, outside the
    bounds) so its estimate sits at the lower bound 1e-5 and is flagged, 1 of 2."""
    data = decay_data(k_true=(0.05, -0.2))
    r = fit(decay_config(tmp_path, "log", bounds=(1e-5, 1e5), value=0.3), data=data)
    k = r.estimates("k")
    assert 0.03 < k[0] < 0.07
    assert k[1] == pytest.approx(1e-5, rel=1e-3)
    bound = [w for w in r.warnings if "at a bound" in w]
    assert len(bound) == 1 and "k: estimate at a bound in 1/2 subjects" in bound[0], r.warnings


# ============================================================================ residuals


def test_residuals_returns_residuals_and_predictions(tmp_path):
    """decay: log_x = log x0 - k t with additive error a = 0.05. The predictions equal the
    closed form at each subject's estimate to 1e-8 and the residuals are (y - f) / a; the
    record unpacks as documented, (residuals, predictions)."""
    from progression.fit.result import Residuals

    data = decay_data()
    r = fit(decay_config(tmp_path, "log"), data=data)
    out = r.residuals()
    assert isinstance(out, Residuals)
    res, pred = out
    assert len(res) == len(pred) == 2
    for i, d in enumerate(data):
        f = np.log(2.0) - r.estimates("k")[i] * d.time
        np.testing.assert_allclose(pred[i], f, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res[i], (d.value - f) / 0.05, rtol=1e-6, atol=1e-7)
    assert out.residuals is res and out.predictions is pred


# ============================================================================ fixed parameters


def test_cli_fit_with_nothing_estimated_evaluates_the_objective(tmp_path):
    """Every parameter fixed (k = 0.45, x0 = 2, a = 0.05): `progression fit` evaluates
    -2 log L at those values and writes the fit folder. Independent computation from the closed
    form log x = log 2 - k t: -2 log L = sum(r^2 + 2 log a + log 2 pi), r = (y - f) / a; the
    fit's value agrees to 1e-7 relative (solver tolerance 1e-10)."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _fit_support import run_cli

    shutil.copy(MODELS / "decay.toml", tmp_path / "decay.toml")
    data = decay_data(k_true=(0.5, 0.4))
    lines = ["subject,time,observable,value"]
    for d in data:
        lines += [f"{d.id},{float(t)!r},log_x,{float(y)!r}" for t, y in zip(d.time, d.value,
                                                                      strict=True)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    k, a = 0.45, 0.05
    (tmp_path / "fixed.toml").write_text(f"""
[fit]
model = "decay.toml"
[data]
path = "data.csv"
time_unit = "month"
[error.log_x]
model = "additive"
a = {a}
[parameters.k]
estimate = "fixed"
value = {k}
[parameters.time_offset]
estimate = "fixed"
value = 0.0
[solver]
rtol = 1e-10
atol = 1e-12
[output]
folder = "out"
""")
    status, message = run_cli(str(tmp_path / "fixed.toml"))
    assert status == 0, message
    expected = 0.0
    for d in data:
        r = (d.value - (np.log(2.0) - k * d.time)) / a
        expected += float(np.sum(r * r + 2 * np.log(a) + np.log(2 * np.pi)))
    doc = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert doc["objective"] == pytest.approx(expected, rel=1e-7)
    text = json.dumps(doc)
    assert "nothing estimated" in text
    report = (tmp_path / "out" / "report.md").read_text()
    assert "nothing estimated" in report
    # the saved residuals are the closed-form ones
    rows = (tmp_path / "out" / "data.csv").read_text().splitlines()
    column = rows[0].split(",").index("residual")
    res = np.array([float(r.split(",")[column]) for r in rows[1:]])
    closed = np.concatenate([(d.value - (np.log(2.0) - k * d.time)) / a for d in data])
    np.testing.assert_allclose(res, closed, rtol=1e-6, atol=1e-6)



# ============================================================================ NONMEM reader, units

DTA = """#ID TIME AMT DV EVID MDV WT
1   0.0  100  .    1  1  70
1   0.5  .    4.1  0  0  70
1   1.0  .    3.2  0  0  70
2\t0.0\t50\t.\t1\t1\t80
2   2.0  .    1.5  0  0  80
"""


def _nonmem_csv():
    return "\n".join(",".join(line.split()) for line in DTA.splitlines()) + "\n"


def test_whitespace_nonmem_file_reads_like_its_csv_twin(tmp_path):
    """NONMEM's own format (blanks and tabs, commented header, no CMT column): detected from
    the .dta name and comma-free first line, and the cohort equals the comma-separated twin's;
    the choice and the default dose compartment are noted, no unit is said to be assumed."""
    import progression as pg

    (tmp_path / "pk.dta").write_text(DTA)
    (tmp_path / "pk.csv").write_text(_nonmem_csv())
    a = pg.read_cohort(tmp_path / "pk.dta", time_unit="hour", to_unit=None)
    b = pg.read_cohort(tmp_path / "pk.csv", time_unit="hour", to_unit=None)
    assert a == b
    obs = a.observations()
    np.testing.assert_array_equal(obs["time"], [0.5, 1.0, 2.0])
    np.testing.assert_array_equal(obs["value"], [4.1, 3.2, 1.5])
    np.testing.assert_array_equal(a.doses["amount"], [100.0, 50.0])
    assert list(a.doses["target"]) == ["1", "1"]
    assert a.covariates == {"1": {"WT": 70.0}, "2": {"WT": 80.0}}
    notes = "\n".join(a.notes)
    assert "read as whitespace-delimited" in notes
    assert "2 dose record(s) with no CMT column: dosed into '1' (NONMEM's default" in notes
    assert "assumed months" not in notes and "time unit not stated" not in notes
    c = pg.read_cohort(tmp_path / "pk.csv", to_unit=None)
    assert "time unit not stated; assumed months" in "\n".join(c.notes)


def test_default_dose_compartment_through_cmt_and_the_sidecar(tmp_path):
    """No CMT column: NONMEM's CMT 1 through [cmt] ('depot'); default_cmt = 2 -> 'central'
    (noted as the sidecar's); a '.' CMT cell on a dose takes the default too; a named
    default_cmt is used as it is."""
    import progression as pg

    (tmp_path / "pk.dta").write_text(DTA)
    side = tmp_path / "pk.toml"
    side.write_text('format = "nonmem"\ntime_unit = "hour"\n[cmt]\n1 = "depot"\n'
                    '2 = "central"\n')
    c = pg.read_cohort(tmp_path / "pk.dta", to_unit=None)
    assert list(c.doses["target"]) == ["depot", "depot"]
    side.write_text('format = "nonmem"\ntime_unit = "hour"\ndefault_cmt = 2\n[cmt]\n'
                    '1 = "depot"\n2 = "central"\n')
    c = pg.read_cohort(tmp_path / "pk.dta", to_unit=None)
    assert list(c.doses["target"]) == ["central", "central"]
    assert "dosed into 'central' (the sidecar's default_cmt)" in "\n".join(c.notes)
    with_cmt = DTA.replace("#ID TIME AMT DV EVID MDV WT", "#ID TIME AMT DV EVID MDV WT CMT")
    lines = with_cmt.splitlines()
    lines[1] += " ."          # subject 1's dose: CMT missing
    lines[2:4] = [x + " ." for x in lines[2:4]]
    lines[4] += "\t1"         # subject 2's dose: CMT 1
    lines[5] += " ."
    (tmp_path / "pk.dta").write_text("\n".join(lines) + "\n")
    side.write_text('format = "nonmem"\ntime_unit = "hour"\ndefault_cmt = "central"\n'
                    '[cmt]\n1 = "depot"\n')
    c = pg.read_cohort(tmp_path / "pk.dta", to_unit=None)
    assert list(c.doses["target"]) == ["central", "depot"]
    assert "1 dose record(s) with no CMT (row 2)" in "\n".join(c.notes)


def test_declared_whitespace_delimiter_reads_a_csv_named_file(tmp_path):
    import progression as pg

    (tmp_path / "pk.csv").write_text(DTA)
    (tmp_path / "pk.toml").write_text('format = "nonmem"\ntime_unit = "minute"\n'
                                      'delimiter = "whitespace"\n')
    c = pg.read_cohort(tmp_path / "pk.csv", to_unit="hour")
    # minutes -> hours: 0.5, 1 and 2 minutes are 1/120, 1/60 and 1/30 hour (to 1 ulp)
    np.testing.assert_allclose(c.observations()["time"], [0.5 / 60, 1 / 60, 2 / 60],
                               rtol=2e-16)
    assert "read as whitespace-delimited" not in "\n".join(c.notes)   # declared, not detected


def test_second_and_minute_time_units_convert_exactly():
    """second and minute join the one unit list (model files, data, fit configs); ratios are
    whole numbers computed from seconds, so 60, 3600 and 86400 are exact."""
    import progression as pg
    from progression.data._units import canonical_time_unit, time_factor

    assert canonical_time_unit("s") == "second" and canonical_time_unit("mins") == "minute"
    assert time_factor("minute", "second") == 60.0
    assert time_factor("hour", "second") == 3600.0
    assert time_factor("day", "minute") == 1440.0
    assert time_factor("second", "hour") * 3600.0 == 1.0
    assert time_factor("month", "day") == 30.4375 and time_factor("year", "month") == 12.0
    c = pg.Cohort({"subject": ["A", "A"], "time": [0.0, 90.0], "observable": ["y", "y"],
                   "value": [1.0, 2.0]}, time_unit="seconds")
    np.testing.assert_array_equal(c.to_time_unit("minute").observations()["time"], [0.0, 1.5])
    np.testing.assert_array_equal(c.to_time_unit("minute").to_time_unit("second")
                                  .observations()["time"], [0.0, 90.0])


def test_model_file_in_minutes_loads_and_fits_minute_data(tmp_path):
    """A model in minutes reads data given in seconds converted to minutes: k fitted on
    second-stamped data equals k fitted on the same data stamped in minutes to 1e-8."""
    import progression as pg

    text = (MODELS / "decay.toml").read_text().replace('time_unit = "month"',
                                                       'time_unit = "minutes"')
    (tmp_path / "decay.toml").write_text(text)
    assert pg.load_model(tmp_path / "decay.toml").time_unit == "minute"
    data = decay_data(k_true=(0.5,))
    d = data[0]
    for unit, factor in (("minute", 1.0), ("second", 60.0)):
        rows = ["subject,time,observable,value"] + [
            f"S1,{float(t) * factor!r},log_x,{float(y)!r}" for t, y in zip(d.time, d.value,
                                                                           strict=True)]
        (tmp_path / f"{unit}.csv").write_text("\n".join(rows) + "\n")
    ks = []
    for unit in ("minute", "second"):
        cfg = parse_fit_config(f"""
[fit]
model = "decay.toml"
[data]
path = "{unit}.csv"
time_unit = "{unit}"
[error.log_x]
model = "additive"
a = 0.05
[parameters.k]
estimate = "subject"
[solver]
outputs = "exact"
sensitivities = "forward"
[estimator]
ftol = 1e-12
xtol = 1e-12
""", base_dir=tmp_path, name=unit)
        ks.append(fit(cfg).estimates("k")[0])
    assert ks[1] == pytest.approx(ks[0], rel=1e-8)
    t = d.time
    assert ks[0] == pytest.approx(-np.sum(t * (d.value - np.log(2.0))) / np.sum(t * t),
                                  rel=1e-6)


# ============================================================================ fingolimod


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_fingolimod_treg_production_factor_holds_for_any_gil2(strength):
    """Treg production is x(1 + gIL2 uIL2) in als_systemic. Fingolimod's documented factor 0.6
    (at strength s: 1 + s (0.6 - 1)) must hold with each subject's own gIL2, not only at the
    default 2: the uIL2 increment compiled for gIL2 = 1, 2, 3.5 gives the factor to 1e-12, and
    a simulation with the intervention equals one with the parameters changed by hand
    (uIL2 = -0.4 s / gIL2, kE, wE, wE_c x0.4**s) to 1e-8."""
    import progression as pg
    from progression import interventions as iv

    model = pg.load_model("als_systemic")
    g = np.array([1.0, 2.0, 3.5])
    table = model.parameter_table({"gIL2": g})
    fingo = iv.fingolimod(strength=strength)
    switches = iv.to_switches(model, fingo, until=24.0, base=table)
    add = np.broadcast_to(switches[0].add["uIL2"], g.shape)
    u0 = table[:, model.parameter_index("uIL2")]
    expected = 1.0 + strength * (0.6 - 1.0)
    np.testing.assert_allclose(1.0 + g * (u0 + add), expected, rtol=1e-12)
    # by hand: the same parameters from t = 0
    hand = table.copy()
    hand[:, model.parameter_index("uIL2")] = u0 + strength * (0.6 - 1.0) / g
    for name in ("kE", "wE", "wE_c"):
        hand[:, model.parameter_index(name)] *= 0.4 ** strength
    t = np.linspace(0.0, 24.0, 13)
    a = pg.simulate(model, table, t, switches=switches, rtol=1e-11, atol=1e-13,
                    terminal_events=False)
    b = pg.simulate(model, hand, t, rtol=1e-11, atol=1e-13, terminal_events=False)
    np.testing.assert_allclose(a.observables, b.observables, rtol=1e-8, atol=1e-10)
    # the previous constant (-0.4 / 2) missed the factor at gIL2 = 3.5: 1 - 0.7 = 0.3
    assert abs((1.0 + 3.5 * (-0.2)) - 0.6) > 0.2


def test_add_per_names_a_model_parameter():
    import progression as pg
    from progression import interventions as iv

    model = pg.load_model("als_reduced")
    bad = iv.Intervention(add={"uIL2": -0.4}, add_per={"uIL2": "gIL3"}, label="x")
    with pytest.raises(ConfigError, match=r"add_per: model 'als_reduced' has no parameter "
                                          r"'gIL3'.*did you mean 'gIL2'"):
        iv.to_switches(model, bad, until=1.0)
    with pytest.raises(ConfigError, match=r"add_per\.kE: expected a key of 'add'"):
        iv.Intervention(add={"uIL2": -0.4}, add_per={"kE": "gIL2"}, label="x")


# ============================================================================ matplotlib backend

_BACKEND_SCRIPT = """
import sys
import matplotlib
if sys.argv[1] != "none":
    matplotlib.use(sys.argv[1])
import numpy as np
import progression as pg
from progression.fit import report
sim = pg.simulate(sys.argv[2], {"k": 0.5, "x0": 2.0}, np.linspace(0, 2, 5))
from progression.plots import plot_simulation
fig = plot_simulation(sim)
report._plt()
print(matplotlib.get_backend().lower())
"""


@pytest.mark.parametrize("chosen,env,expected", [
    ("ps", {}, "ps"),                       # the user's choice is kept (was switched to agg)
    ("none", {"MPLBACKEND": "svg"}, "svg"),  # chosen through the environment: kept
    ("none", {}, "agg"),                    # nothing chosen, no display: Agg
])
def test_matplotlib_backend_is_not_forced(chosen, env, expected, tmp_path):
    """In a fresh interpreter without a display: after plot_simulation and the fit report's
    pyplot, the backend is the user's when one was chosen, Agg only when none was."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items()
             if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    clean["MPLCONFIGDIR"] = str(tmp_path)        # no user matplotlibrc choosing one
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT, chosen,
                          str(MODELS / "decay.toml")], capture_output=True, text=True,
                         env=clean, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected, out.stdout
