"""The estimator registry and interface: every estimator takes one EstimationProblem and
returns typed parts; each is checked against the closed form of a linear-Gaussian problem.

Model ``tests/models/decay.toml``: x(t) = x0 exp(-k t), observed as log x with additive error
a = 0.05, so log x = log x0 - k t is linear in (log x0, k) and least squares is closed form:

* individual (k per subject, x0 = 2 fixed): k_i = -sum t (y_i - log 2) / sum t^2,
  SE(k_i) = a / sqrt(sum t^2);
* pooled (k shared, x0 per subject): the common slope of a regression with one intercept per
  subject, k = -sum_ij (t_j - tbar)(y_ij - ybar_i) / (m sum_j (t_j - tbar)^2),
  log x0_i = ybar_i + k tbar, SE(k) = a / sqrt(m sum_j (t_j - tbar)^2).
"""

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from progression.errors import ConfigError
from progression.fit import (
    ESTIMATORS,
    Diagnostics,
    Estimates,
    EstimationProblem,
    EstimatorOptions,
    EstimatorOutput,
    Predictions,
    Uncertainty,
    fit,
    get_estimator,
    load_fit,
)
from progression.fit import config as fit_config
from progression.fit.estimators import Estimator, PointEstimate
from progression.fit.fixed import FixedEvaluation

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import A, T, config, decay_data, estimation_problem  # noqa: E402

FIT = Path(__file__).parent.parent / "progression" / "fit"


# ============================================================================ registry


def test_registry_names_the_estimators_the_config_accepts():
    assert {"individual", "pooled"} <= set(ESTIMATORS)
    # the config validates [fit] estimator against its own list: the two must agree
    assert set(fit_config.ESTIMATORS) == set(ESTIMATORS)
    for name, cls in ESTIMATORS.items():
        est = get_estimator(name)
        assert isinstance(est, cls) and est.name == name and est.description


def test_unknown_estimator_is_a_config_error_listing_the_registered_names(tmp_path):
    listed = ", ".join(repr(k) for k in ESTIMATORS)
    with pytest.raises(ConfigError) as err:
        get_estimator("nuts")
    assert str(err.value) == f"fit.estimator: unknown estimator 'nuts'; expected one of {listed}"
    # a config object naming an unregistered estimator: refused before any data is read
    cfg = dataclasses.replace(config(tmp_path), estimator="nuts")
    cfg.data["path"] = str(tmp_path / "missing.csv")
    with pytest.raises(ConfigError) as err:
        fit(cfg)
    msg = str(err.value)
    assert str(tmp_path / "decay_individual.toml") in msg and "'fit.estimator'" in msg
    assert "'nuts'" in msg and listed in msg
    # and the config file itself refuses the word, naming the choices
    with pytest.raises(ConfigError) as err:
        config(tmp_path, estimator="nuts")
    msg = str(err.value)
    assert "decay_nuts.toml, key 'fit.estimator': expected one of" in msg
    assert all(repr(k) in msg for k in ESTIMATORS) and "found 'nuts'" in msg


def test_no_estimator_branching_outside_the_estimators():
    """Which estimator ran is asked only by the estimators themselves; elsewhere only the
    config (which parameters an estimator accepts) and the reader of format-1 fit files (whose
    'kind' said whether the covariance was joint) name one."""
    pattern = re.compile(r"""(kind|estimator)\s*[!=]=\s*["'](individual|pooled)""")
    allowed = {"config.py", "_config_sections.py", "_io_result.py"}
    found = []
    for path in FIT.rglob("*.py"):
        if "estimators" in path.parts or path.name in allowed:
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.name}:{no}: {line.strip()}")
    assert not found, found


def test_estimator_options_are_one_typed_object(tmp_path):
    cfg = config(tmp_path, extra="starts = 3\nseed = 4\n")
    opts = EstimatorOptions.coerce(cfg.options)
    assert (opts.starts, opts.seed, opts.optimizer) == (3, 4, "batched")
    assert EstimatorOptions.coerce(opts) is opts
    assert opts.replace(starts=1).starts == 1 and opts.starts == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.starts = 2
    assert EstimationProblem(problem=None, designs=[], options=cfg.options,
                             executor=None).options == opts
    with pytest.raises(ConfigError, match=r"run.toml, \[estimator\]: unknown option\(s\) "
                                          r"'strats'; expected some of starts, seed"):
        EstimatorOptions.coerce({"strats": 3}, "run.toml, [estimator]")


# ============================================================================ individual


def test_individual_estimator_gives_the_closed_form_with_typed_parts(tmp_path):
    data = decay_data()
    cfg = config(tmp_path, extra='uncertainty = ["covariance", "profile"]\n'
                                  "profile_points = 12\n")
    ep = estimation_problem(cfg, data)
    out = get_estimator("individual")(ep)
    assert isinstance(out, EstimatorOutput) and out.population is None
    assert isinstance(out.estimates, Estimates) and isinstance(out.uncertainty, Uncertainty)
    assert isinstance(out.diagnostics, Diagnostics) and isinstance(out.predictions, Predictions)
    c = ep.problem.names.index("k")
    k_hat = np.array([-np.sum(T * (d.value - np.log(2.0))) / np.sum(T * T) for d in data])
    np.testing.assert_allclose(out.estimates.theta[:, c], k_hat, rtol=1e-7)
    # the estimation-scale vector: log k, one entry per subject
    np.testing.assert_allclose(out.estimates.x_hat, np.log(k_hat), rtol=1e-7)
    assert list(out.estimates.x_cols) == [c] * 3
    assert [list(r) for r in out.estimates.x_rows] == [[0], [1], [2]]
    se = A / np.sqrt(np.sum(T * T))
    np.testing.assert_allclose(out.uncertainty.se[:, c], se, rtol=1e-4)
    assert not out.uncertainty.joint and len(out.uncertainty.blocks) == 3
    assert out.uncertainty.methods["covariance"].startswith("observed information")
    assert out.uncertainty.methods["profile"] == "profile likelihood"
    # log x is linear in k: -2 log L is exactly quadratic in k, so the profile interval is the
    # natural-scale Wald interval k +- z SE (to the profile's interpolation, 1e-3 of its width)
    z = stats.norm.ppf(0.975)
    prof = out.uncertainty.intervals["profile"][:, c]
    np.testing.assert_allclose(prof, np.c_[k_hat - z * se, k_hat + z * se],
                               atol=1e-3 * 2 * z * se)
    assert out.uncertainty.profiles.values.shape == (3, 1, 12)
    # predictions and residuals at the estimates, from the closed form (k to 1e-7 relative
    # moves log x by up to 4e-7 at t = 4, a residual by 4e-7 / a)
    for i, d in enumerate(data):
        f = np.log(2.0) - k_hat[i] * T
        np.testing.assert_allclose(out.predictions.values[i], f, rtol=0, atol=5e-7)
        np.testing.assert_allclose(out.predictions.residuals[i], (d.value - f) / A,
                                   rtol=0, atol=1e-5)
    m2ll = [np.sum(((d.value - np.log(2.0) + k_hat[i] * T) / A) ** 2)
            + T.size * np.log(2 * np.pi * A * A) for i, d in enumerate(data)]
    np.testing.assert_allclose(out.diagnostics.subject_objective, m2ll, rtol=1e-9)
    assert out.diagnostics.converged.all() and not any(out.diagnostics.failures)
    assert "exact outputs" in out.diagnostics.numbers_from
    assert ep.timings.keys() >= {"estimation", "covariance", "profile"}
    assert ep.counters.simulations > 0


# ============================================================================ pooled


def test_pooled_estimator_gives_the_closed_form_common_slope(tmp_path):
    x0_true = (1.5, 2.5, 4.0)
    data = decay_data(k_true=(0.7, 0.7, 0.7), x0=x0_true, seed=3)
    cfg = config(tmp_path, estimator="pooled", k="shared", x0="subject")
    ep = estimation_problem(cfg, data)
    out = get_estimator("pooled")(ep)
    Y = np.array([d.value for d in data])
    tc = T - T.mean()
    sxx = Y.shape[0] * np.sum(tc * tc)
    k_hat = -np.sum(tc * (Y - Y.mean(axis=1, keepdims=True))) / sxx
    log_x0 = Y.mean(axis=1) + k_hat * T.mean()
    names = ep.problem.names
    ck, cx = names.index("k"), names.index("x0")
    np.testing.assert_allclose(out.estimates.theta[:, ck], k_hat, rtol=1e-7)
    np.testing.assert_allclose(out.estimates.theta[:, cx], np.exp(log_x0), rtol=1e-7)
    # one joint vector: the shared k, then each subject's x0
    assert list(out.estimates.x_cols) == [ck, cx, cx, cx]
    assert [list(r) for r in out.estimates.x_rows] == [[0, 1, 2], [0], [1], [2]]
    assert out.uncertainty.joint and len(out.uncertainty.blocks) == 1
    assert out.uncertainty.blocks[0][1].shape == (4, 4)
    np.testing.assert_allclose(out.uncertainty.se[:, ck], A / np.sqrt(sxx), rtol=1e-4)
    assert out.uncertainty.methods == {"covariance": out.uncertainty.methods["covariance"]}
    assert "lmfit" in out.diagnostics.method


# ============================================================================ fixed


def test_nothing_estimated_is_evaluated_by_the_fixed_estimator_with_the_same_parts(tmp_path):
    data = decay_data()
    cfg = config(tmp_path, k="fixed")
    ep = estimation_problem(cfg, data)
    out = FixedEvaluation()(ep)
    m2ll = [np.sum(((d.value - np.log(2.0) + 0.3 * T) / A) ** 2)
            + T.size * np.log(2 * np.pi * A * A) for d in data]
    np.testing.assert_allclose(out.diagnostics.subject_objective, m2ll, rtol=1e-8)
    assert out.estimates.n_estimated == 0 and out.uncertainty.blocks == []
    assert np.isnan(out.uncertainty.se).all()
    res = fit(cfg, data=data)
    assert res.kind == "fixed" and res.n_estimated == 0 and res.population is None
    assert res.covariance(0) == ((), pytest.approx(np.zeros((0, 0))))
    np.testing.assert_allclose(res.subject_objective, m2ll, rtol=1e-8)


# ============================================================================ a new estimator


class ClosedForm(Estimator):
    """A new estimator as the registry's docstring says to add one: the decay problem's
    least-squares estimate from the normal equations, no optimiser."""

    name = "closed_form"
    description = "least squares from the normal equations (test)"

    def estimate(self, ep):
        problem, m = ep.problem, ep.n_subjects
        c = problem.names.index("k")
        k = np.array([-np.sum(d.time * (d.value - np.log(2.0))) / np.sum(d.time ** 2)
                      for d in ep.designs])
        theta = np.repeat(problem.values[None], m, axis=0)
        theta[:, c] = k
        ev = problem.evaluate(ep.designs, np.arange(m), theta, np.array([c]), want_jac=False,
                              want_info=True, want_predictions=True)
        diag = Diagnostics(
            subject_objective=ev.m2ll, n_obs=ev.nobs, converged=~ev.failed,
            messages=("normal equations",) * m, failures=("",) * m,
            nfev=np.ones(m, dtype=int), starts_objective=ev.m2ll[:, None],
            best_start=np.zeros(m, dtype=int), before_zero=np.zeros(m, dtype=int),
            numbers_from="closed form", method="normal equations")
        est = Estimates(theta=theta, x_hat=np.log(k), x_cols=np.full(m, c),
                        x_rows=[np.array([i]) for i in range(m)])
        return PointEstimate(estimates=est, diagnostics=diag, predictions=ev.predictions,
                             information=ev.info, path_objective=ev.m2ll)

    def uncertainty(self, ep, point):
        est = point.estimates
        m, Q = est.theta.shape
        c = int(est.x_cols[0])
        se = np.full((m, Q), np.nan)
        se[:, c] = [A / np.sqrt(np.sum(d.time ** 2)) for d in ep.designs]
        ci = np.full((m, Q, 2), np.nan)
        z = stats.norm.ppf(0.5 + ep.confidence / 2)
        ci[:, c, 0], ci[:, c, 1] = est.theta[:, c] - z * se[:, c], est.theta[:, c] + z * se[:, c]
        # delta method: SE of log k is SE(k) / k
        blocks = [(np.array([i]), np.array([[(se[i, c] / est.theta[i, c]) ** 2]]))
                  for i in range(m)]
        return Uncertainty(se=se, intervals={"covariance": ci},
                           methods={"covariance": "closed form (normal equations)"},
                           blocks=blocks)


def test_a_registered_estimator_runs_through_fit_save_and_load(tmp_path, monkeypatch):
    """Registering a class is all it takes: fit() finds it by name, and the FitResult, its
    summary, report, saved folder and load_fit work without knowing it; the numbers equal the
    individual estimator's (the same optimum, 1e-7; standard errors 1e-4)."""
    monkeypatch.setitem(ESTIMATORS, "closed_form", ClosedForm)
    data = decay_data()
    ref = fit(config(tmp_path), data=data)
    cfg = dataclasses.replace(config(tmp_path), estimator="closed_form")
    res = fit(cfg, data=data)
    assert res.kind == "closed_form" and res.population is None
    np.testing.assert_allclose(res.estimates("k"), ref.estimates("k"), rtol=1e-7)
    np.testing.assert_allclose(res.standard_errors("k"), ref.standard_errors("k"), rtol=1e-4)
    np.testing.assert_allclose(res.subject_objective, ref.subject_objective, rtol=1e-10)
    np.testing.assert_allclose(res.covariance("S2")[1], ref.covariance("S2")[1], rtol=1e-4)
    assert res.interval_methods == {"covariance": "closed form (normal equations)"}
    assert "closed_form fit" in res.summary()
    res.save(tmp_path / "out", figures=False)
    assert "closed_form (normal equations)" in (tmp_path / "out" / "report.md").read_text()
    back = load_fit(tmp_path / "out")
    assert back.kind == "closed_form"
    np.testing.assert_array_equal(back.theta, res.theta)
    assert back.interval_methods == res.interval_methods
