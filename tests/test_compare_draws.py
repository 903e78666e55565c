"""Parameter draws for scenario comparisons: on the estimation scale, from a regularised
covariance, inside the bounds without clipping, singular covariances reported, and intervals
over draws that contain their point value on a well-determined fitted cohort."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import progression as pg
from progression.fit import fit, parse_fit_config
from progression.fit.transforms import from_internal
from progression.fit.uncertainty import gaussian_draws

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import config_text, simulate_cohort  # noqa: E402


def test_draws_reproduce_a_known_covariance_on_the_estimation_scale():
    # log, logit and linear entries, far from their bounds (no truncation)
    x_hat = np.array([np.log(0.02), 0.3, 5.0])
    sd = np.array([0.2, 0.5, 1.5])
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    cov = corr * np.outer(sd, sd)
    lo, hi = np.array([1e-4, 0.0, -100.0]), np.array([10.0, 1.0, 100.0])
    xs, info = gaussian_draws(x_hat, cov, ["log", "logit", "linear"], lo, hi, 40_000,
                              np.random.default_rng(3))
    assert info == {"undetermined": [], "at_bound": [], "negative": 0, "held": 0,
                    "redrawn": 0, "unresolved": 0}
    emp = np.cov(xs.T)
    # sampling error of a covariance entry from 40,000 draws: ~sd_i sd_j sqrt(2/n) ~ 0.7%
    np.testing.assert_allclose(emp, cov, atol=0.03 * np.outer(sd, sd).max())
    np.testing.assert_allclose(emp / np.outer(sd, sd), corr, atol=0.02)
    np.testing.assert_allclose(xs.mean(axis=0), x_hat, atol=0.02 * sd.max())


def test_logit_draws_stay_inside_the_bounds_without_clipping():
    lo, hi = 0.4, 1.0
    x_hat = np.array([2.0])                     # theta = 0.92, near the upper bound
    cov = np.array([[2.0 ** 2]])                # wide: many draws would cross a clipped bound
    xs, info = gaussian_draws(x_hat, cov, ["logit"], [lo], [hi], 20_000,
                              np.random.default_rng(1))
    theta = from_internal(xs[:, 0], "logit", lo, hi)
    assert np.all((theta > lo) & (theta < hi))
    assert info["redrawn"] == 0                 # logit draws need no redrawing
    # the draws on the logit scale are the untouched normal: no mass piled at a bound
    assert abs(np.std(xs[:, 0]) - 2.0) < 0.05
    assert np.mean(theta > hi - 1e-6) < 1e-3


def test_log_scale_draws_are_truncated_at_a_bound_not_clipped():
    lo, hi = 0.005, 0.09
    x_hat = np.array([np.log(0.08)])
    s = 0.3
    xs, info = gaussian_draws(x_hat, np.array([[s * s]]), ["log"], [lo], [hi], 20_000,
                              np.random.default_rng(2))
    theta = np.exp(xs[:, 0])
    assert np.all(theta <= hi) and np.all(theta >= lo)
    assert info["redrawn"] > 0 and info["unresolved"] == 0
    assert np.sum(theta == hi) == 0             # clipping would pile draws on the bound
    # the draws follow the normal truncated to the bounds on the log scale
    b = (np.log(hi) - x_hat[0]) / s
    a = (np.log(lo) - x_hat[0]) / s
    mean = stats.truncnorm.mean(a, b, loc=x_hat[0], scale=s)
    sd = stats.truncnorm.std(a, b, loc=x_hat[0], scale=s)
    assert abs(xs[:, 0].mean() - mean) < 4 * sd / np.sqrt(xs.shape[0])
    assert abs(xs[:, 0].std() - sd) < 0.02 * sd


def test_singular_and_indefinite_covariances_are_regularised_and_reported():
    x_hat = np.array([0.0, 1.0, 2.0])
    cov = np.array([[1.0, np.nan, 0.2], [np.nan, np.nan, np.nan], [0.2, np.nan, 0.5]])
    xs, info = gaussian_draws(x_hat, cov, ["linear"] * 3, [-np.inf] * 3, [np.inf] * 3, 5000,
                              np.random.default_rng(0))
    assert info["undetermined"] == [1]
    assert np.all(xs[:, 1] == 1.0)              # held at the estimate
    np.testing.assert_allclose(np.cov(xs[:, [0, 2]].T), [[1.0, 0.2], [0.2, 0.5]], atol=0.06)
    # not positive semi-definite: eigenvalues 3 and -1; the negative one is set to 0
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    xs, info = gaussian_draws(np.zeros(2), bad, ["linear"] * 2, [-np.inf] * 2, [np.inf] * 2,
                              20_000, np.random.default_rng(0))
    assert info["negative"] == 1
    np.testing.assert_allclose(np.cov(xs.T), [[1.5, 1.5], [1.5, 1.5]], rtol=0.05)
    # a direction far wider than the bounds is held at the estimate
    xs, info = gaussian_draws(np.array([np.log(0.02)]), np.array([[1e30]]), ["log"], [0.002],
                              [0.2], 100, np.random.default_rng(0))
    assert info["held"] == 1 and np.all(xs == np.log(0.02))


def test_an_estimate_at_a_bound_is_held_and_the_others_drawn_given_it():
    # x0 at its lower bound (log scale), x1 correlated with it (rho = 0.8, sd 0.5)
    lo, hi = np.array([0.002, 0.005]), np.array([0.03, 0.09])
    x_hat = np.array([np.log(0.002), np.log(0.02)])
    cov = np.array([[0.3 ** 2, 0.8 * 0.3 * 0.5], [0.8 * 0.3 * 0.5, 0.5 ** 2]])
    xs, info = gaussian_draws(x_hat, cov, ["log", "log"], lo, hi, 40_000,
                              np.random.default_rng(5))
    assert info["at_bound"] == [0] and info["undetermined"] == []
    assert np.all(xs[:, 0] == x_hat[0])
    # the conditional sd given x0 = its estimate: 0.5 sqrt(1 - 0.8^2) = 0.3
    assert np.std(xs[:, 1]) == pytest.approx(0.3, rel=0.02)
    assert np.mean(xs[:, 1]) == pytest.approx(x_hat[1], abs=0.01)


@pytest.fixture(scope="module")
def fitted6():
    cohort, _ = simulate_cohort(6, seed=5)
    cfg = parse_fit_config(config_text(), name="draws6", check_data=False)
    return fit(cfg, data=cohort)


def test_fit_draws_report_singular_subjects_and_draw_offsets_jointly(fitted6):
    res = fitted6
    assert not any(res.parameter_draws(3, 0).handling)
    d = res.parameter_draws(400, np.random.default_rng(4))
    assert d.parameters.shape == (400, 6, res.model.n_parameters)
    # time offsets are drawn with the parameters: their correlation with kA is kept
    names, corr = res.correlation(0)
    j = res.model.parameter_index("kA")
    emp = np.corrcoef(np.log(d.parameters[:, 0, j]), np.log(d.offsets[:, 0]))[0, 1]
    assert emp == pytest.approx(corr[names.index("kA"), names.index("time_offset")], abs=0.15)
    # a subject whose information was singular: reported, its undetermined entry held
    idx, cov = res.blocks[2]
    broken = cov.copy()
    broken[1, :] = broken[:, 1] = np.nan           # eD undetermined
    res.blocks[2] = (idx, broken)
    try:
        d = res.parameter_draws(50, 1)
        sid = res.subject_ids[2]
        assert d.singular == [sid]
        assert "eD not determined" in d.handling[2]
        e = res.model.parameter_index("eD")
        assert np.all(d.parameters[:, 2, e] == res.estimates("eD")[2])
        comp = pg.compare(res, {"kA x0.5": [pg.Intervention("kA", scale=0.5)]}, horizon=12,
                          draws=10, seed=1)
        md = comp.to_markdown()
        assert "## Parameter draws" in md and f"| {sid} | singular covariance" in md
        assert [r["parameter_draws"] for r in comp.subject_rows()][2].startswith("singular")
    finally:
        res.blocks[2] = (idx, cov)


def test_intervals_over_draws_contain_the_point_value_on_a_small_fitted_cohort(fitted6):
    comp = pg.compare(fitted6, {"kA x0.5": [pg.Intervention("kA", scale=0.5)],
                                "eD x0.5": [pg.Intervention("eD", scale=0.5)]},
                      horizon=12, draws=40, seed=3)
    checked = 0
    for r in comp.summary:
        for key, point in (("mean", "mean"), ("diff", "diff_mean"), ("rmst", "rmst")):
            lo, hi = r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
            if lo is None or not np.isfinite(r[point]) or (lo == hi == r[point]):
                continue
            checked += 1
            assert lo <= r[point] <= hi, (r["scenario"], r["endpoint"], key, lo, r[point], hi)
            assert not r[f"{key}_ci_excludes_point"]
    assert checked >= 20
    assert "†" not in comp.to_markdown()
