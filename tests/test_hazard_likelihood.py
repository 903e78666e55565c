"""The time-to-event likelihood ([survival]) against independent computations.

A toy model with a marker ``x = x0 exp(-k t)`` and the hazard ``h0 exp(g t + a (x0 - x))``:
with ``a = 0`` the cumulative hazard is Gompertz, ``h0 (exp(g t) - 1) / g``, in closed form;
with ``a != 0`` it is computed here by adaptive quadrature of the rate (scipy.integrate.quad,
nothing of the model's ODE). Each test compares ``Problem.evaluate``'s ``-2 log L`` with the
survival part removed (the same designs without records) against that computation, to 1e-6.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.integrate import quad

from progression.errors import ConfigError
from progression.fit import Design, Problem, parse_fit_config
from progression.fit._survival_likelihood import EXACT, INTERVAL, RIGHT, SurvivalRecord

MODEL = """
[model]
name = "tte_toy"
time_unit = "month"
[parameters.k]
value = 0.2
bounds = [0.01, 2.0]
[parameters.x0]
value = 2.0
bounds = [0.1, 10.0]
[parameters.h0]
value = 0.05
bounds = [1e-4, 1.0]
[parameters.g]
value = 0.1
bounds = [-1.0, 1.0]
[parameters.a]
value = 0.0
bounds = [-3.0, 3.0]
[states.x]
initial = "x0"
[equations]
x = "-k * x"
[observables.marker]
expression = "x"
[hazards.death]
rate = "h0 * exp(g * t + a * (x0 - marker))"
"""

SIGMA = 0.05


def _config(tmp_path, *, a="fixed", a_value=0.0, offset=0.0, survival=True, path="exact",
            estimator="individual", extra="", offset_estimate="fixed"):
    (tmp_path / "tte_toy.toml").write_text(MODEL)
    text = f"""
[fit]
model = "tte_toy.toml"
estimator = "{estimator}"
[data]
path = "tte_toy.toml"
[error.marker]
model = "additive"
a = {SIGMA}
[parameters.k]
estimate = "subject"
value = 0.25
[parameters.x0]
estimate = "fixed"
value = 2.0
[parameters.h0]
estimate = "subject"
value = 0.05
[parameters.g]
estimate = "subject"
value = 0.1
[parameters.a]
estimate = "{a}"
value = {a_value}
[parameters.time_offset]
estimate = "{offset_estimate}"
value = {offset}
bounds = [-5.0, 10.0]
[solver]
rtol = 1e-10
atol = 1e-12
outputs = "{path}"
sensitivities = "{'forward' if path == 'exact' else 'grid'}"
{"[survival]" if survival else ""}
{extra if survival else ""}
"""
    return parse_fit_config(text, base_dir=tmp_path, name="tte", source=str(tmp_path / "tte.toml"))


def _designs(records):
    rng = np.random.default_rng(1)
    out = []
    t = np.array([0.5, 1.0, 2.0, 3.0, 4.5])
    for i, rec in enumerate(records):
        y = 2.0 * np.exp(-0.25 * t) + SIGMA * rng.standard_normal(t.size)
        out.append(Design(f"S{i + 1}", t, np.zeros(t.size, int), y, np.zeros(t.size, int),
                          np.full(t.size, np.nan), survival=rec))
    return out


RECORDS = [SurvivalRecord(EXACT, 5.0, entry=0.5),
           SurvivalRecord(RIGHT, 8.0, entry=0.5),
           SurvivalRecord(INTERVAL, 6.0, lower=3.0, entry=0.5),
           SurvivalRecord(EXACT, 7.5),                      # no delayed entry
           SurvivalRecord(INTERVAL, 9.0, lower=4.5)]


def _survival_m2ll(cfg, designs, theta):
    """-2 log L of the survival part: with the records minus without them."""
    with_s = Problem.from_config(cfg)
    without = Problem.from_config(cfg.replace(survival=None))
    bare = [dataclasses.replace(d, survival=None) for d in designs]
    rows = np.arange(len(designs))
    cols = np.zeros(0, dtype=int)
    ev1 = with_s.evaluate(designs, rows, theta, cols, want_jac=False)
    ev0 = without.evaluate(bare, rows, theta, cols, want_jac=False)
    assert not ev1.failed.any(), ev1.messages
    return ev1.m2ll - ev0.m2ll, ev1


def _expected(rec, cum, rate, offset=0.0):
    """Independent -2 log L of one record from cum(t), rate(t) on the model clock."""
    def c(t):
        return cum(t + offset)
    entry = c(rec.entry) if math.isfinite(rec.entry) else 0.0
    if rec.kind == EXACT:
        return -2.0 * (math.log(rate(rec.time + offset)) - c(rec.time) + entry)
    if rec.kind == RIGHT:
        return 2.0 * (c(rec.time) - entry)
    s_l, s_r = math.exp(-c(rec.lower)), math.exp(-c(rec.time))
    return -2.0 * (math.log(s_l - s_r) + entry)


def _theta(problem, **values):
    theta = problem.values.copy()
    for name, v in values.items():
        theta[problem.names.index(name)] = v
    return np.repeat(theta[None], len(RECORDS), axis=0)


def test_gompertz_hazard_matches_the_closed_form(tmp_path):
    cfg = _config(tmp_path)
    problem = Problem.from_config(cfg)
    theta = _theta(problem, h0=0.04, g=0.15)
    got, ev = _survival_m2ll(cfg, _designs(RECORDS), theta)
    # the evaluation reports the survival part on its own (for population estimators)
    np.testing.assert_allclose(ev.survival_m2ll, got, rtol=0, atol=1e-9)
    h0, g = 0.04, 0.15
    want = [_expected(r, lambda t: h0 * math.expm1(g * t) / g,
                      lambda t: h0 * math.exp(g * t)) for r in RECORDS]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("path", ["exact", "grid"])
def test_marker_dependent_hazard_matches_quadrature(tmp_path, path):
    """The hazard follows the ODE's state; the time offset shifts the records like data."""
    offset = 1.5
    cfg = _config(tmp_path, a="subject", a_value=0.7, offset=offset, path=path)
    problem = Problem.from_config(cfg)
    k, h0, g, a, x0 = 0.3, 0.03, 0.05, 0.7, 2.0
    theta = _theta(problem, k=k, h0=h0, g=g, a=a)

    def rate(t):
        return h0 * math.exp(g * t + a * (x0 - x0 * math.exp(-k * t)))

    def cum(t):
        return quad(rate, 0.0, t, epsabs=1e-13, epsrel=1e-13)[0]

    got, _ = _survival_m2ll(cfg, _designs(RECORDS), theta)
    want = [_expected(r, cum, rate, offset) for r in RECORDS]
    # the grid path interpolates the cumulative hazard (cubic Hermite): ~1e-8 here
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_gradient_matches_finite_differences(tmp_path):
    """d(-2 log L)/dx = 2 sum r dr/dx (estimation scale) against central differences; the
    time offset too (d Lambda(T + tau) / d tau = h(T + tau), from the trajectory)."""
    cfg = _config(tmp_path, a="subject", a_value=0.7, offset=1.5, offset_estimate="subject")
    problem = Problem.from_config(cfg)
    designs = _designs(RECORDS)
    theta = _theta(problem, k=0.3, h0=0.03, g=0.05, a=0.7)
    cols = np.array([problem.names.index(n) for n in ("k", "h0", "g", "a", "time_offset")])
    rows = np.arange(len(designs))
    ev = problem.evaluate(designs, rows, theta, cols, want_jac=True, want_info=True)
    grad = np.array([2.0 * r @ j for r, j in zip(ev.residuals, ev.jacobians, strict=True)])
    from progression.fit.transforms import from_internal, to_internal

    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x = to_internal(theta[:, cols], sc, lo, hi)
    # fourth-order central differences on the estimation scale (step 1e-3): truncation
    # ~1e-12, and the adaptive integrator's noise in -2 log L (~1e-8 with the numpy backend)
    # stays below 1e-5 of the slope
    step = 1e-3

    def m2ll_at(c, s):
        xs = x.copy()
        xs[:, c] += s
        th = theta.copy()
        th[:, cols] = from_internal(xs, sc, lo, hi)
        return problem.evaluate(designs, rows, th, cols, want_jac=False).m2ll

    fd = np.zeros_like(grad)
    for c in range(cols.size):
        fd[:, c] = (8.0 * (m2ll_at(c, step) - m2ll_at(c, -step))
                    - (m2ll_at(c, 2 * step) - m2ll_at(c, -2 * step))) / (12.0 * step)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)
    # the information is symmetric positive semi-definite and has the survival part
    assert np.all(np.linalg.eigvalsh(ev.info) > -1e-9)
    assert ev.residuals[0].size == 5 + 2          # 5 data residuals, r1 and r2 of the event


def test_exponential_information_is_the_observed_information(tmp_path):
    """Constant hazard h0 (g = a = 0) on log h0: the information is h0 (T - T0) exactly."""
    cfg = _config(tmp_path)
    problem = Problem.from_config(cfg)
    recs = [SurvivalRecord(RIGHT, 8.0, entry=0.5), SurvivalRecord(EXACT, 5.0, entry=1.0)]
    designs = [dataclasses.replace(d, survival=r) for d, r in zip(_designs(recs), recs,
                                                                      strict=True)]
    theta = _theta(problem, h0=0.04, g=0.0)[:2]
    col = np.array([problem.names.index("h0")])
    ev = problem.evaluate(designs, np.arange(2), theta, col, want_jac=True, want_info=True)
    bare = Problem.from_config(cfg.replace(survival=None)).evaluate(
        [dataclasses.replace(d, survival=None) for d in designs], np.arange(2), theta, col,
        want_jac=True, want_info=True)
    assert problem.scale[col[0]] == 1  # log scale (positive bounds)
    np.testing.assert_allclose(ev.info[:, 0, 0] - bare.info[:, 0, 0], [0.04 * 7.5, 0.04 * 4.0],
                               rtol=1e-8)


def test_population_estimators_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'survival'.*individual, pooled.*LAPLACE"):
        _config(tmp_path, estimator="focei")


def test_problem_and_designs_with_survival_pickle(tmp_path):
    """Workers get the problem and the designs by pickle: the same objective after it."""
    import pickle

    cfg = _config(tmp_path)
    problem = Problem.from_config(cfg)
    designs = _designs(RECORDS)
    theta = _theta(problem, h0=0.04, g=0.15)
    rows = np.arange(len(designs))
    cols = np.zeros(0, dtype=int)
    p2, d2 = pickle.loads(pickle.dumps((problem, designs)))
    assert p2.survival == problem.survival
    np.testing.assert_array_equal(
        p2.evaluate(d2, rows, theta, cols, want_jac=False).m2ll,
        problem.evaluate(designs, rows, theta, cols, want_jac=False).m2ll)
