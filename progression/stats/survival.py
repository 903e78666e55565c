"""Small survival-analysis helpers: Kaplan-Meier, log-rank test, RMST, hazard-ratio estimates.

Plain numpy/scipy, for scenario comparisons and virtual trials (no lifelines dependency).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["kaplan_meier", "km_median", "rmst", "logrank", "exponential_hazard_ratio"]


def _clean(time, observed):
    time = np.asarray(time, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    keep = np.isfinite(time)
    return time[keep], observed[keep]


def kaplan_meier(time, observed, entry=None):
    """Kaplan-Meier estimate, with optional delayed entry (left truncation).

    Hand-written: scipy's ``ecdf`` has no delayed entry (cohorts enrolled after onset need
    it, see :mod:`progression.data.describe`).

    Parameters
    ----------
    time : array_like, shape (n,)
        Exit times: event or censoring (NaN entries, and exits not after entry, are ignored).
    observed : array_like of bool, shape (n,)
        True where the event happened at ``time``; False where censored.
    entry : array_like, shape (n,), optional
        Times the subjects came under observation (default 0); a subject is at risk at ``t``
        when ``entry < t <= time``.

    Returns
    -------
    t, S : ndarray, shape (k + 1,)
        Step function: ``S[i]`` is the survival probability from ``t[i]`` on; ``t[0] = 0``,
        ``S[0] = 1``, then the ``k`` distinct event times.
    """
    time = np.asarray(time, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    entry = np.zeros_like(time) if entry is None else np.asarray(entry, dtype=float)
    ok = np.isfinite(time) & np.isfinite(entry) & (time > entry)
    time, observed, entry = time[ok], observed[ok], entry[ok]
    ts = np.unique(time[observed])
    exits, entries = np.sort(time), np.sort(entry)
    # at risk at t: entered before t, not yet left (entry < t <= exit)
    at_risk = ((exits.size - np.searchsorted(exits, ts, side="left"))
               - (entries.size - np.searchsorted(entries, ts, side="left")))
    deaths = np.bincount(np.searchsorted(ts, time[observed]), minlength=ts.size)
    factor = np.where(at_risk > 0, 1.0 - deaths / np.maximum(at_risk, 1), 1.0)
    return np.r_[0.0, ts], np.r_[1.0, np.cumprod(factor)]


def km_median(time, observed) -> float:
    """Median survival time from the Kaplan-Meier curve; NaN when S stays above 0.5."""
    t, s = kaplan_meier(time, observed)
    below = np.nonzero(s <= 0.5)[0]
    return float(t[below[0]]) if below.size else float("nan")


def rmst(time, observed, horizon: float) -> float:
    """Restricted mean survival time up to ``horizon`` (area under the Kaplan-Meier curve)."""
    t, s = kaplan_meier(time, observed)
    t = np.minimum(t, horizon)
    edges = np.r_[t, horizon]
    return float(np.sum(s * np.diff(edges)))


def logrank(time, observed, group):
    """Two-group log-rank test.

    Hand-written rather than ``scipy.stats.logrank`` because trials need the treated group's
    observed and expected events and the O/E hazard ratio, which scipy does not return, and
    because it is about 3x faster (0.36 ms against 1.2 ms for 400 subjects, scipy 1.17; a
    power curve calls it thousands of times); the statistic and p-value agree with scipy's
    to 1e-10 (``tests/test_survival.py``).

    Parameters
    ----------
    time, observed : array_like
    group : array_like of bool
        True for the treated (second) group.

    Returns
    -------
    dict
        ``chi2``, ``p``, ``observed`` and ``expected`` events of the treated group,
        ``hr_oe``: the log-rank (O/E) hazard-ratio estimate treated vs control,
        ``(O1/E1)/(O0/E0)``.
    """
    time = np.asarray(time, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    group = np.asarray(group, dtype=bool)
    keep = np.isfinite(time)
    time, observed, group = time[keep], observed[keep], group[keep]
    event_times = np.unique(time[observed])
    if event_times.size == 0:
        return {"chi2": 0.0, "p": 1.0, "observed": 0.0, "expected": 0.0, "hr_oe": np.nan}
    # at-risk counts at each event time, vectorised
    order = np.sort(time)
    order1 = np.sort(time[group])
    n = time.size - np.searchsorted(order, event_times, side="left")
    n1 = order1.size - np.searchsorted(order1, event_times, side="left")
    # events per event time, overall and in the treated group (one pass, not one per time)
    slot = np.searchsorted(event_times, time[observed])
    d = np.bincount(slot, minlength=event_times.size)
    d1 = np.bincount(slot, weights=group[observed], minlength=event_times.size)
    e1 = d * n1 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(n > 1, d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1), 0.0)
    o1, E1 = d1.sum(), e1.sum()
    var = v.sum()
    chi2 = (o1 - E1) ** 2 / var if var > 0 else 0.0
    o0, E0 = d.sum() - o1, d.sum() - E1
    with np.errstate(invalid="ignore", divide="ignore"):
        hr = (o1 / E1) / (o0 / E0) if E1 > 0 and E0 > 0 and o0 > 0 else np.nan
    return {"chi2": float(chi2), "p": float(stats.chi2.sf(chi2, 1)), "observed": float(o1),
            "expected": float(E1), "hr_oe": float(hr)}


def exponential_hazard_ratio(time, observed, group) -> float:
    """Hazard ratio treated vs control under exponential survival: ratio of events per
    person-time, ``(d1/T1)/(d0/T0)``; NaN when a group has no events or no follow-up."""
    time = np.asarray(time, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    group = np.asarray(group, dtype=bool)
    keep = np.isfinite(time)
    time, observed, group = time[keep], observed[keep], group[keep]
    d1, d0 = observed[group].sum(), observed[~group].sum()
    t1, t0 = time[group].sum(), time[~group].sum()
    if d0 == 0 or t1 <= 0 or t0 <= 0:
        return float("nan")
    return float((d1 / t1) / (d0 / t0))
