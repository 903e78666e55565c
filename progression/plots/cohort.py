"""Figures of cohort data: spaghetti plots of each subject's observations."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import _pyplot

__all__ = ["plot_spaghetti"]


def plot_spaghetti(cohort, observable: str, ax=None, *, subjects: Iterable[str] | None = None,
                   **kwargs):
    """Plot each subject's trajectory of ``observable`` against time.

    Censored values are drawn at their limit as open triangles (pointing down for "below",
    up for "above").

    Parameters
    ----------
    cohort : Cohort
        Any object with ``observations(observable)`` (columns ``subject``, ``time``,
        ``value``, ``cens``), ``subjects``, ``units``, ``time_unit`` and ``time_origin``.
    observable : str
    ax : matplotlib Axes, optional
        Drawn on a new figure when omitted.
    subjects : iterable of str, optional
        Only these subjects.
    **kwargs
        Passed to ``Axes.plot`` for the lines (e.g. ``alpha``, ``lw``).

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        _, ax = _pyplot().subplots()
    cols = cohort.observations(observable)
    who = list(subjects) if subjects is not None else list(cohort.subjects)
    style = {"marker": "o", "ms": 3, "lw": 1, "alpha": 0.7, **kwargs}
    rows = _rows_by_subject(np.asarray(cols["subject"]).astype(str))
    for s in who:
        m = rows.get(str(s))
        if m is None:
            continue
        t, y, c = cols["time"][m], cols["value"][m], cols["cens"][m]
        (line,) = ax.plot(t, y, **style)
        for flag, marker in ((1, "v"), (-1, "^")):
            k = c == flag
            if k.any():
                ax.plot(t[k], y[k], ls="none", marker=marker, mfc="none",
                        color=line.get_color())
    unit = cohort.units.get(observable)
    ax.set_xlabel(f"time since {cohort.time_origin} ({cohort.time_unit}s)")
    ax.set_ylabel(f"{observable} ({unit})" if unit else observable)
    ax.set_title(f"{observable}: {len(who)} subjects")
    return ax


def _rows_by_subject(subjects: np.ndarray) -> dict[str, np.ndarray]:
    """Subject -> indices of its rows in table order (one stable sort, not one scan per
    subject: cohorts have thousands of subjects)."""
    if not len(subjects):
        return {}
    order = np.argsort(subjects, kind="stable")
    keys = subjects[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    stops = np.r_[starts[1:], len(keys)]
    return {str(keys[a]): order[a:b] for a, b in zip(starts, stops, strict=True)}
