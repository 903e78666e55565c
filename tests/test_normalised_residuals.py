"""normalised_residuals: (y - f) / sigma on each error model's scale, NaN for censored rows,
every subject's rows in one call of the error models (the analytic values, per subject)."""

from __future__ import annotations

import numpy as np

from progression.fit import Design, Problem, parse_fit_config
from progression.fit.estimators.base import normalised_residuals

CONFIG = """
[fit]
name = "residuals"
model = "als_reduced"
[error.ALSFRS_R]
model = "additive"
a = 1.5
[error.NfL]
model = "lognormal"
sigma = 0.15
[error.CRP]
model = "proportional"
b = 0.2
[parameters.kA]
estimate = "subject"
"""


def _design(i, rng, censor=False):
    t = np.arange(0.0, 10.0, 2.0)
    obs = np.repeat([0, 1, 2], t.size)
    value = rng.uniform(5.0, 40.0, obs.size)
    cens = np.zeros(obs.size, dtype=int)
    limit = np.full(obs.size, np.nan)
    if censor:
        cens[[1, 7]] = [1, -1]
        limit[[1, 7]] = value[[1, 7]] * [1.1, 0.9]
    return Design(f"S{i}", np.tile(t, 3), obs, value, cens, limit)


def test_normalised_residuals_are_the_analytic_ones_for_every_subject():
    problem = Problem.from_config(parse_fit_config(CONFIG, check_data=False))
    rng = np.random.default_rng(7)
    designs = [_design(i, rng, censor=i % 3 == 1) for i in range(7)]
    theta = np.tile(problem.values, (len(designs), 1))
    preds = [d.value * rng.uniform(0.8, 1.2, d.value.size) for d in designs]
    preds[4] = np.zeros(3)                       # no predictions: NaN throughout
    out = normalised_residuals(problem, designs, theta, preds)
    assert len(out) == len(designs)
    for i, (d, f, r) in enumerate(zip(designs, preds, out, strict=True)):
        assert r.shape == d.value.shape
        if i == 4:
            assert np.isnan(r).all()
            continue
        want = np.where(d.obs == 0, (d.value - f) / 1.5,
                        np.where(d.obs == 1, (np.log(d.value) - np.log(f)) / 0.15,
                                 (d.value - f) / (0.2 * np.abs(f))))
        want = np.where(d.cens == 0, want, np.nan)
        np.testing.assert_allclose(r, want, rtol=1e-13, atol=0)
        assert np.array_equal(np.isnan(r), d.cens != 0)


def test_normalised_residuals_without_predictions_or_subjects():
    problem = Problem.from_config(parse_fit_config(CONFIG, check_data=False))
    design = _design(0, np.random.default_rng(1))
    theta = problem.values[None]
    assert normalised_residuals(problem, [], theta[:0], []) == []
    (r,) = normalised_residuals(problem, [design], theta, [np.zeros(0)])
    assert r.shape == design.value.shape and np.isnan(r).all()
