"""Estimation: parameter recovery, multi-start, reproducibility, executors, gradients,
censoring, failures, pooled fits, identifiability warnings."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_ndtr

import progression as pg
from progression.fit import Design, Problem, fit, parse_fit_config
from progression.fit._multistart import starting_points
from progression.fit.errormodels import likelihood_terms
from progression.fit.transforms import from_internal, to_internal

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import (  # noqa: E402
    NOISE,
    config_text,
    estimated_error_tables,
    simulate_cohort,
)

IDENTIFIABLE = ("kA", "eD", "time_offset")


def recovery_table(result, truth, names, methods):
    """Print and return median relative error and interval coverage per parameter."""
    rows = {}
    print(f"\n{'parameter':<12} {'median |rel err|':>17} "
          + " ".join(f"{'coverage ' + m:>20}" for m in methods))
    for name in names:
        est = result.estimates(name)
        true = truth[name]
        err = float(np.median(np.abs(est / true - 1)))
        cov = {}
        for m in methods:
            ci = result.interval(name, m)
            cov[m] = float(np.mean((ci[:, 0] <= true) & (true <= ci[:, 1])))
        rows[name] = (err, cov)
        print(f"{name:<12} {100 * err:>16.1f}% "
              + " ".join(f"{100 * cov[m]:>19.0f}%" for m in methods))
    return rows


@pytest.fixture(scope="module")
def cohort30():
    return simulate_cohort(30, seed=11)


@pytest.fixture(scope="module")
def fit30(cohort30):
    cohort, _ = cohort30
    cfg = parse_fit_config(config_text() + "\n[estimator]\nuncertainty = [\"profile\"]\n",
                           name="recovery30", check_data=False)
    return fit(cfg, data=cohort)


#: Median relative error allowed with 30 patients (truth log-SD 0.3 around the defaults). eD
#: since als_reduced's recalibration (issue 13: eD 0.341 -> 0.152, inflammatory share 0.65 ->
#: 0.32) moves CRP less, so a patient's CRP values inform it less: 11.9 % measured (seed 11;
#: 7-8 % before), with the intervals still covering (93 % / 97 %).
MAX_ERROR_30 = {"kA": 0.10, "eD": 0.15, "time_offset": 0.10}


def test_parameter_recovery_30_patients(cohort30, fit30):
    _, truth = cohort30
    rows = recovery_table(fit30, truth, IDENTIFIABLE, ["covariance", "profile"])
    assert fit30.converged.all()
    for name, (err, cov) in rows.items():
        assert err < MAX_ERROR_30[name], f"{name}: median relative error {err:.3f}"
        for method, c in cov.items():
            assert c >= 0.8, f"{name}: {method} coverage {c:.2f}"
    assert fit30.counters["failed_solves"] == 0
    # Monthly visits identify kA and eD in nearly every patient; since the recalibration kA
    # carries ~1/3 of the hazard (was ~2/3), and one patient in 30 (seed 11) has a kA profile
    # that reaches the lower bound. More than one would be a regression.
    flagged = [re.search(r"in (\d+)/30 subjects", w) for w in fit30.warnings
               if "non-identifiable" in w]
    assert all(m is not None and int(m.group(1)) <= 1 for m in flagged), fit30.warnings


OSCILLATOR = """
[model]
name = "oscillator"
time_unit = "month"
[parameters.w]
value = 0.5
bounds = [0.2, 5.0]
[parameters.amp]
value = 1.0
bounds = [0.1, 10.0]
[states.x]
initial = "amp"
[states.v]
initial = 0
[equations]
x = "v"
v = "-w**2 * x"
[observables.y]
expression = "x"
"""


def oscillator_problem(tmp_path, starts, seed=2):
    (tmp_path / "osc.toml").write_text(OSCILLATOR)
    text = f"""
[fit]
model = "osc.toml"
[data]
path = "osc.toml"
[error.y]
model = "additive"
a = 0.05
[parameters.w]
estimate = "subject"
value = 0.5
[estimator]
starts = {starts}
seed = {seed}
[solver]
rtol = 1e-8
atol = 1e-10
"""
    cfg = parse_fit_config(text, base_dir=tmp_path, name="osc")
    t = np.linspace(0, 12, 40)
    model = cfg.model
    truth = pg.simulate(model, {"w": 2.0}, t, rtol=1e-10, atol=1e-12)["y"][0]
    rng = np.random.default_rng(0)
    y = truth + 0.05 * rng.standard_normal(t.size)
    d = Design("S1", t, np.zeros(t.size, int), y, np.zeros(t.size, int), np.full(t.size, np.nan))
    return cfg, [d]


def test_multistart_finds_the_global_optimum(tmp_path):
    cfg1, data = oscillator_problem(tmp_path, starts=1)
    one = fit(cfg1, data=data)
    cfg8, _ = oscillator_problem(tmp_path, starts=12, seed=2)
    many = fit(cfg8, data=data)
    # from w = 0.5 a local optimiser stops in a local optimum of the periodic misfit
    assert abs(one.estimates("w")[0] - 2.0) > 0.3
    assert many.estimates("w")[0] == pytest.approx(2.0, abs=0.01)
    assert many.objective < one.objective - 100
    starts = many.starts_objective[0]
    assert np.sum(np.abs(starts - starts.min()) < 1e-6) < starts.size   # not all equal
    assert many.best_start[0] != 0


def small_config(seed=7):
    return parse_fit_config(config_text() + f"\n[estimator]\nstarts = 2\nseed = {seed}\n"
                            "batch_size = 2\n", name="small", check_data=False)


@pytest.fixture(scope="module")
def cohort4():
    return simulate_cohort(4, seed=21, visits=np.arange(0.0, 13.0, 2.0))


@pytest.fixture(scope="module")
def fit4(cohort4):
    return fit(small_config(), data=cohort4[0])


def test_same_config_and_seed_give_the_same_numbers(cohort4, fit4):
    again = fit(small_config(), data=cohort4[0])
    np.testing.assert_array_equal(fit4.theta, again.theta)
    np.testing.assert_array_equal(fit4.subject_objective, again.subject_objective)
    np.testing.assert_array_equal(fit4.starts_objective, again.starts_objective)
    np.testing.assert_array_equal(fit4.se, again.se)
    # the seed decides the starting points
    prob = Problem.from_config(small_config())
    a = starting_points(prob, prob.subject_cols, 4, 2, "bounds", 7)
    b = starting_points(prob, prob.subject_cols, 4, 2, "bounds", 8)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])          # start 1: the initial values
    assert not np.array_equal(a[:, 1], b[:, 1])


def test_in_process_and_process_pool_and_dask_give_the_same_numbers(cohort4, fit4):
    cfg = small_config()
    pool = fit(cfg, data=cohort4[0], jobs=2)
    np.testing.assert_array_equal(fit4.theta, pool.theta)
    np.testing.assert_array_equal(fit4.se, pool.se)
    assert fit4.provenance["executor"] == "in-process"
    assert pool.provenance["executor"] == "processes"
    pytest.importorskip("distributed")
    dask = fit(cfg, data=cohort4[0], scheduler="local", jobs=2)
    np.testing.assert_array_equal(fit4.theta, dask.theta)
    assert dask.provenance["executor"] == "dask"


@pytest.mark.parametrize("outputs", ["grid", "exact"])
def test_gradient_from_sensitivities_matches_finite_differences(outputs):
    """d(sum of squares)/dx = 2 J^T r against central differences of the objective, with
    censored values, an estimated error parameter (sigma residuals), a combined error model
    and the time offset."""
    cohort, _ = simulate_cohort(3, seed=4, visits=np.arange(0.0, 13.0, 3.0), crp_limit=2.6)
    errors = estimated_error_tables('{ value = 0.2, estimate = "subject", scale = "logit", '
                                    'bounds = [0.01, 1.0] }')
    text = config_text(errors=errors, free=("kA", "eD", "Tmax")) + (
        f'\noutputs = "{outputs}"\nrtol = 1e-10\natol = 1e-12\n')
    cfg = parse_fit_config(text, check_data=False)
    prob = Problem.from_config(cfg)
    from progression.fit.problem import designs_from_cohort

    designs, _ = designs_from_cohort(cohort, cfg)
    assert any((d.cens == 1).any() for d in designs)
    cols = prob.subject_cols
    theta = np.tile(prob.values, (3, 1))
    theta[:, prob.names.index("kA")] *= [0.8, 1.0, 1.3]
    theta[:, prob.offset_index] = [22.0, 25.0, 27.0]
    sc, lo, hi = prob.scale[cols], prob.lower[cols], prob.upper[cols]
    x = to_internal(theta[:, cols], sc, lo, hi)
    ev = prob.evaluate(designs, np.arange(3), theta, cols)

    def ss(r, xr):
        th = theta[r:r + 1].copy()
        th[0, cols] = from_internal(xr, sc, lo, hi)
        res = prob.evaluate(designs, [r], th, cols, want_jac=False).residuals[0]
        return float(res @ res)

    for r in range(3):
        grad = 2 * ev.jacobians[r].T @ ev.residuals[r]
        fd = np.zeros_like(grad)
        for k in range(cols.size):
            h = 1e-5
            xp, xm = x[r].copy(), x[r].copy()
            xp[k] += h
            xm[k] -= h
            fd[k] = (ss(r, xp) - ss(r, xm)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=2e-4, atol=1e-4 * np.abs(fd).max())


def test_sum_of_squares_is_minus_two_log_likelihood_and_censoring_uses_phi():
    y = np.array([10.0, 3.0, 0.3, 5.0])
    f = np.array([11.0, 2.5, 0.6, 4.0])
    cens = np.array([0, 0, 1, -1])
    limit = np.array([np.nan, np.nan, 0.3, 5.0])
    code = np.array([0, 3, 3, 2])
    a = np.array([2.0, 0.2, 0.2, 0.5])
    b = np.array([0.0, 0.0, 0.0, 0.1])
    z = np.zeros((4, 0))
    t = likelihood_terms(code, y, cens, limit, f, z, a, z, b, z, np.ones(4, bool),
                         want_jac=False)
    # direct -2 log L
    m2ll = [np.log(2 * np.pi) + 2 * np.log(2.0) + ((10 - 11) / 2.0) ** 2,
            np.log(2 * np.pi) + 2 * np.log(0.2) + ((np.log(3) - np.log(2.5)) / 0.2) ** 2
            + 2 * np.log(3.0),
            -2 * log_ndtr((np.log(0.3) - np.log(0.6)) / 0.2),
            -2 * log_ndtr((4.0 - 5.0) / np.sqrt(0.25 + 0.01 * 16))]
    np.testing.assert_allclose(t.m2ll, m2ll, rtol=1e-12)
    ss = np.sum(t.r ** 2) + np.sum(t.e ** 2)
    # -2 log L = SS - C n_e + n_observed log(2 pi) + 2 log y (log-normal observed values)
    const = 2 * np.log(2 * np.pi) + 2 * np.log(3.0) - 2 * 50.0
    assert ss + const == pytest.approx(np.sum(m2ll), rel=1e-12)


BLOWUP = """
[model]
name = "blowup"
time_unit = "month"
[parameters.k]
value = 0.5
bounds = [0.05, 5.0]
[states.x]
initial = 1
[equations]
x = "k * x**2"
[observables.y]
expression = "x"
"""


def test_a_failing_simulation_is_a_counted_penalty_not_a_crash(tmp_path):
    (tmp_path / "blowup.toml").write_text(BLOWUP)
    text = """
[fit]
model = "blowup.toml"
[data]
path = "blowup.toml"
[error.y]
model = "proportional"
b = 0.05
[parameters.k]
estimate = "subject"
value = 3.0
[estimator]
starts = 3
seed = 1
[solver]
max_steps = 3000
outputs = "exact"
"""
    cfg = parse_fit_config(text, base_dir=tmp_path, name="blowup")
    t = np.linspace(0.0, 1.2, 13)
    y = 1.0 / (1.0 - 0.5 * t) * np.exp(0.05 * np.random.default_rng(1).standard_normal(13))
    data = [Design("S1", t, np.zeros(13, int), y, np.zeros(13, int), np.full(13, np.nan))]
    result = fit(cfg, data=data)
    # the start k = 3 blows up before t = 1.2 (at t = 1/k): a failed solve, counted
    assert result.counters["failed_solves"] >= 1
    assert np.isnan(result.starts_objective[0, 0])
    assert result.estimates("k")[0] == pytest.approx(0.5, rel=0.05)
    assert any("integration failed" in m or "non-finite" in m
               for m in result.counters["failure_messages"])


def test_pooled_fit_estimates_shared_error_parameters(cohort30):
    cohort, truth = cohort30
    sub = cohort.select(cohort.subjects[:6])
    errors = """[error.ALSFRS_R]
model = "additive"
a = { value = 2.0, estimate = "shared" }
[error.NfL]
model = "lognormal"
sigma = { value = 0.3, estimate = "shared" }
[error.CRP]
model = "lognormal"
sigma = 0.2"""
    text = config_text(errors=errors).replace('estimator = "individual"',
                                              'estimator = "pooled"')
    result = fit(parse_fit_config(text, name="pooled", check_data=False), data=sub)
    assert result.kind == "pooled" and result.converged.all()
    a = result.estimates("ALSFRS_R.a")
    assert np.all(a == a[0])                     # one shared value
    assert a[0] == pytest.approx(NOISE["ALSFRS_R"], rel=0.15)
    assert result.estimates("NfL.sigma")[0] == pytest.approx(NOISE["NfL"], rel=0.25)
    ci = result.interval("ALSFRS_R.a")[0]
    assert ci[0] < a[0] < ci[1]
    names, cov = result.covariance()
    assert names[:2] == ("ALSFRS_R.a", "NfL.sigma") and cov.shape == (2 + 6 * 3,) * 2
    # per-subject parameters agree with separate individual fits at the truth's noise
    ind = fit(parse_fit_config(config_text(), name="ind", check_data=False), data=sub)
    np.testing.assert_allclose(result.estimates("kA"), ind.estimates("kA"), rtol=0.1)
    assert result.n_estimated == 2 + 6 * 3


def test_bootstrap_intervals(cohort4):
    cohort, truth = cohort4
    sub = cohort.select(cohort.subjects[:2])
    cfg = parse_fit_config(config_text() + "\n[estimator]\nuncertainty = [\"bootstrap\"]\n"
                           "bootstrap_samples = 10\nseed = 3\n", name="boot", check_data=False)
    result = fit(cfg, data=sub)
    ci = result.interval("kA", "bootstrap")
    est = result.estimates("kA")
    assert np.all(ci[:, 0] < ci[:, 1])
    assert np.all((ci[:, 0] <= est * 1.05) & (est <= ci[:, 1] * 1.05))
    assert result.bootstrap["estimates"].shape == (2, 10, 3)


def test_non_identifiable_parameters_are_named(cohort4):
    cohort, _ = cohort4
    sub = cohort.select(cohort.subjects[:2])
    # 25 evaluations do not converge for these non-identifiable fits: accept them anyway
    text = config_text(free=("k0", "kA", "eD")).replace("[fit]\n", "[fit]\nmax_failed_share = 1\n")
    cfg = parse_fit_config(text + "\n[estimator]\nmax_nfev = 25\n", name="nonid",
                           check_data=False)
    result = fit(cfg, data=sub)
    text = " ".join(result.warnings)
    assert "k0" in text and "time_offset" in text
    assert "non-identifiable" in text or "|correlation| > 0.99" in text


def test_parameter_recovery_200_patients():
    """The issue's study: 200 patients, median error < 10%, coverage 90-98% (~20 s)."""
    cohort, truth = simulate_cohort(200, seed=2026)
    cfg = parse_fit_config(config_text() + "\n[estimator]\nstarts = 2\nseed = 1\n"
                           "uncertainty = [\"profile\"]\n", name="recovery200", check_data=False)
    result = fit(cfg, data=cohort, jobs=2)
    rows = recovery_table(result, truth, IDENTIFIABLE, ["covariance", "profile"])
    assert result.converged.mean() > 0.97
    for name, (err, cov) in rows.items():
        assert err < MAX_ERROR_30[name], f"{name}: median relative error {err:.3f}"
        for method, c in cov.items():
            assert 0.88 <= c <= 0.99, f"{name}: {method} coverage {c:.2f}"
