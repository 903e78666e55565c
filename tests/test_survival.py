"""Survival helpers against scipy and hand-countable cases."""

import numpy as np
import pytest
from scipy import stats

from progression._survival import kaplan_meier, logrank


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logrank_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    n = 120
    group = rng.random(n) < 0.5
    # ties on a coarse grid, as in visit-based follow-up
    time = np.round(rng.exponential(np.where(group, 14.0, 10.0)), 1) + 0.1
    observed = rng.random(n) < 0.7
    ours = logrank(time, observed, group)
    x = stats.CensoredData(uncensored=time[group & observed], right=time[group & ~observed])
    y = stats.CensoredData(uncensored=time[~group & observed], right=time[~group & ~observed])
    ref = stats.logrank(x, y)
    assert ours["chi2"] == pytest.approx(ref.statistic ** 2, rel=1e-10)
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-8)


def test_logrank_counts_by_hand():
    # control dies at 1 and 3, treated at 2; censored treated at 4
    time = np.array([1.0, 3.0, 2.0, 4.0])
    observed = np.array([True, True, True, False])
    group = np.array([False, False, True, True])
    res = logrank(time, observed, group)
    # at t=1: n=4, n1=2, d=1 -> E1 = 0.5; t=2: n=3, n1=2 -> 2/3; t=3: n=2, n1=1 -> 0.5
    assert res["observed"] == 1.0
    assert res["expected"] == pytest.approx(0.5 + 2 / 3 + 0.5, rel=1e-12)


def test_kaplan_meier_by_hand():
    t, s = kaplan_meier([1, 2, 2, 3, 5], [True, True, False, True, False])
    # at 1: 4/5; at 2: 3/4 of that; at 3: 1/2 of that
    np.testing.assert_allclose(t, [0, 1, 2, 3])
    np.testing.assert_allclose(s, [1, 0.8, 0.6, 0.3], rtol=1e-12)
