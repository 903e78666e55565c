"""VPC and prediction-corrected VPC (Bergstrand et al. 2011) against hand computations and a
simulated correct model."""

from __future__ import annotations

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit.population import prediction_correct, vpc, vpc_bins


def test_percentiles_and_bands_by_hand():
    t = [0, 0, 0, 1, 1, 1]
    dv = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    sims = np.array([np.asarray(dv) + r for r in range(3)])  # replicate r = dv + r
    res = vpc(t, dv, sims, edges=[-0.5, 0.5, 1.5])
    # type-7 percentiles of (1, 2, 3): 5 % -> 1 + 0.05 * 2 = 1.1; 50 % -> 2; 95 % -> 2.9
    np.testing.assert_allclose(res.observed[0], [1.1, 2.0, 2.9], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.observed[1], [4.1, 5.0, 5.9], rtol=0, atol=1e-12)
    # the median's replicates are 2, 3, 4: 2.5 % at position 0.05 -> 2.05, 97.5 % -> 3.95
    np.testing.assert_allclose([res.sim_lo[0, 1], res.sim_median[0, 1], res.sim_hi[0, 1]],
                               [2.05, 3.0, 3.95], rtol=0, atol=1e-12)
    assert res.x.tolist() == [0.0, 1.0] and res.n_obs.tolist() == [3, 3]
    assert res.inside(50).tolist() == [False, False]  # observed 2 is below 2.05
    assert res.blq_observed is None and not res.pred_corrected


def test_quantile_bins():
    t = np.arange(9.0)
    e = vpc_bins(t, 3)
    np.testing.assert_allclose(e, [0.0, 8 / 3, 16 / 3, 8.0])
    # many observations at one nominal time: coincident quantile edges merge, and the tied
    # earliest time gets a bin of its own
    assert vpc_bins([0, 0, 0, 0, 0, 1], 4).tolist() == [0.0, 1.0, 2.0]
    # baseline for 50 subjects, then follow-up spread over 1..12: baseline alone, then
    # 3 quantile bins of the follow-up times
    follow = np.linspace(1.0, 12.0, 30)
    e = vpc_bins(np.r_[np.zeros(50), follow], 4)
    np.testing.assert_allclose(e, np.r_[0.0, np.quantile(follow, [0, 1 / 3, 2 / 3, 1])])
    res = vpc(t, t, np.array([t, t + 1]), n_bins=3)
    assert res.n_obs.tolist() == [3, 3, 3]


def test_prediction_correction_by_hand():
    bins = np.array([0, 0, 0, 1])
    pred = np.array([1.0, 2.0, 4.0, 10.0])
    y = np.array([2.0, 2.0, 2.0, 5.0])
    # bin 0: median PRED 2 -> 2 * 2 / (1, 2, 4) = (4, 2, 1); bin 1 alone -> unchanged
    np.testing.assert_allclose(prediction_correct(y, pred, bins), [4.0, 2.0, 1.0, 5.0])
    # with a lower bound 1: 1 + (2 - 1) (2 - 1) / (PRED - 1) -> PRED = 1 is the singular case,
    # so use PRED 1.5, 2, 4 (median 2): 1 + 1/0.5, 1 + 1, 1 + 1/3
    pred_lb = np.array([1.5, 2.0, 4.0, 10.0])
    np.testing.assert_allclose(prediction_correct(y, pred_lb, bins, lower_bound=1.0),
                               [3.0, 2.0, 4 / 3, 5.0])
    # log scale: additive, y + 2 - PRED
    np.testing.assert_allclose(prediction_correct(y, pred, bins, log_scale=True),
                               [3.0, 2.0, 0.0, 5.0])
    # applied inside vpc to observations and simulations alike
    res = vpc([0, 0, 0], [2.0, 2.0, 2.0], np.array([[2.0, 2.0, 2.0], [4.0, 4.0, 4.0]]),
              pred=[1.0, 2.0, 4.0], edges=[-1, 1], percentiles=(50,))
    assert res.pred_corrected
    assert res.observed[0, 0] == 2.0  # median of (4, 2, 1)
    np.testing.assert_allclose([res.sim_lo[0, 0], res.sim_hi[0, 0]],
                               [2.0 + 0.025 * 2, 4.0 - 0.025 * 2])  # replicate medians 2, 4


def test_censored_fraction_and_hidden_percentiles_by_hand():
    t = [0, 0, 0, 0, 1, 1, 1, 1]
    dv = [np.nan, 0.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # first one below the limit 1
    cens = [1, 0, 0, 0, 0, 0, 0, 0]  # 0.5 is not flagged: observed flags take precedence
    sims = np.array([[0.1, 0.2, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                     [0.1, 2.0, 3.0, 4.0, 0.5, 6.0, 7.0, 8.0],
                     [2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    res = vpc(t, dv, sims, edges=[-0.5, 0.5, 1.5], lloq=1.0, cens=cens)
    np.testing.assert_allclose(res.blq_observed, [0.25, 0.0])
    # bin 0 fractions per replicate: 2/4, 1/4, 0 -> 2.5 %, 50 %, 97.5 % of (0.5, 0.25, 0)
    np.testing.assert_allclose(res.blq_sim[0], [0.0125, 0.25, 0.4875])
    np.testing.assert_allclose(res.blq_sim[1], [0.0, 0.0, 0.2375])  # of (0, 0.25, 0)
    # observed 5 % of bin 0 falls among the censored value -> hidden; the median is finite
    assert np.isnan(res.observed[0, 0]) and res.observed[0, 1] == pytest.approx(1.75)
    assert np.isnan(res.obs_value[0])
    # the censored observation is kept for the figure, at its limit
    np.testing.assert_array_equal(res.obs_censored, np.array(cens) == 1)
    assert res.obs_limit[0] == 1.0 and res.blq_ci == 0.95
    # a 90 % interval for the fraction: 5 %, 50 %, 95 % of (0.5, 0.25, 0)
    res90 = vpc(t, dv, sims, edges=[-0.5, 0.5, 1.5], lloq=1.0, cens=cens, blq_ci=0.90)
    np.testing.assert_allclose(res90.blq_sim[0], [0.025, 0.25, 0.475])
    np.testing.assert_array_equal(res90.sim_lo, res.sim_lo)  # the percentile bands keep ci
    assert vpc(t, dv, sims, edges=[-0.5, 0.5, 1.5]).obs_censored is None


def _cohort(rng, N=100, K=200, slope_shift=0.0):
    times = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
    t = np.tile(times, (N, 1))

    def draw(size):
        a = 40 + rng.normal(0, 4, size + (1,))
        s = -(3 + slope_shift) * np.exp(rng.normal(0, 0.3, size + (1,)))
        return a + s * times + rng.normal(0, 1.5, size + (len(times),))

    pred = np.broadcast_to(40 - 3 * times, t.shape)
    return t, draw((N,)), draw((K, N)), pred


def test_correct_model_median_inside_its_band():
    rng = np.random.default_rng(11)
    t, y, sims, pred = _cohort(rng)
    sims_wrong = _cohort(np.random.default_rng(12), slope_shift=1.0)[2]
    for kw in ({}, {"pred": pred}):
        res = vpc(t, y, sims, n_bins=6, **kw)
        assert res.observed.shape == (6, 3)
        inside = res.inside(50)
        assert inside.sum() >= 5, (kw, inside)
        wrong = vpc(t, y, sims_wrong, n_bins=6, **kw).inside(50)
        assert wrong.sum() <= 2, (kw, wrong)  # a 33 % steeper decline is seen


@pytest.mark.parametrize("kw,match", [
    ({"sims": np.zeros((3, 5))}, "expected simulations of shape \\(K, 4\\)"),
    ({"sims": np.zeros((1, 4))}, "at least 2 simulated replicates"),
    ({"ci": 1.5}, "ci: expected a level in \\(0, 1\\)"),
    ({"percentiles": (5, 150)}, "percentiles: expected values in \\[0, 100\\]"),
    ({"edges": [1, 0]}, "edges: expected at least 2 finite increasing"),
    ({"n_bins": 0}, "n_bins: expected a positive integer"),
    ({"pred": [1.0, 0.0, 1.0, 1.0]}, "pred: expected values above the lower bound 0.0"),
    ({"pred": [1.0, 1.0]}, "pred: expected 4 values, found 2"),
    ({"sims": np.array([[1.0, np.nan, 1, 1]] * 2)}, "expected finite simulated values"),
    ({"cens": [0, 1, 0, 0]}, "cens: censoring flags need the limit"),
    ({"cens": [0, 1], "lloq": 1.0}, "cens: expected 4 flags, found 2"),
    ({"lloq": 1.0, "blq_ci": 1.0}, "blq_ci: expected a level in \\(0, 1\\), found 1.0"),
])
def test_bad_inputs_are_refused(kw, match):
    args = {"time": [0.0, 1.0, 2.0, 3.0], "dv": [1.0, 2.0, 3.0, 4.0],
            "sims": np.ones((4, 4))} | kw
    with pytest.raises(FitError, match=match):
        vpc(args.pop("time"), args.pop("dv"), args.pop("sims"), **args)
