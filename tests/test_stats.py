"""progression.stats: Wilson intervals and Spearman correlations from scipy, checked against
their closed forms (and against the hand-written versions they replaced)."""

import math

import numpy as np
import pytest
from scipy import stats

from progression.stats.summary import spearman, wilson_interval


def _wilson_closed_form(k, n, z):
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (57, 200), (1, 1), (199, 200)])
def test_wilson_matches_the_closed_form(k, n):
    z = stats.norm.ppf(0.975)
    lo, hi = wilson_interval(k, n)
    exp_lo, exp_hi = _wilson_closed_form(k, n, z)
    assert lo == pytest.approx(exp_lo, abs=1e-12)
    assert hi == pytest.approx(exp_hi, abs=1e-12)
    # the replaced code used z = 1.96: the bounds move by less than 2e-5
    old = _wilson_closed_form(k, n, 1.96)
    assert abs(lo - old[0]) < 2e-5 and abs(hi - old[1]) < 2e-5


def test_wilson_takes_a_float_count_and_refuses_a_fraction():
    assert wilson_interval(np.float64(7.0), 20) == wilson_interval(7, 20)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="whole number"):
        wilson_interval(2.5, 10)
    with pytest.raises(ValueError, match="whole number"):
        wilson_interval(11, 10)


def _spearman_by_hand(x, y):
    """Pearson correlation of average ranks (the definition; ties share their mean rank)."""
    def rank(a):
        order = np.argsort(a, kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a))
        _, inv = np.unique(a, return_inverse=True)
        return (np.bincount(inv, weights=r) / np.bincount(inv))[inv]
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def test_spearman_with_ties_and_missing_values():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=60), 1)           # ties
    y = np.round(x + rng.normal(size=60), 0)
    x[[3, 9]] = np.nan
    y[20] = np.inf
    ok = np.isfinite(x) & np.isfinite(y)
    assert spearman(x, y) == pytest.approx(_spearman_by_hand(x[ok], y[ok]), abs=1e-12)
    # a monotone transform does not change it; exact order gives 1
    assert spearman(x, np.exp(y)) == pytest.approx(spearman(x, y), abs=1e-12)
    assert spearman(np.arange(8.0), np.arange(8.0) ** 3) == pytest.approx(1.0)


def test_spearman_is_nan_where_undefined():
    assert math.isnan(spearman([1, 2, 3, 4], [4, 3, 2, 1]))          # fewer than 5 pairs
    assert math.isnan(spearman([1, 1, 1, 1, 1, 1], [1, 2, 3, 4, 5, 6]))   # constant
    assert math.isnan(spearman([1, 2, np.nan, 4, 5, 6], [1, 2, 3, np.nan, 5, np.nan]))
