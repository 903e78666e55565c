"""Figures of virtual trials: power curves."""

from __future__ import annotations

import numpy as np

from . import _pyplot

__all__ = ["plot_power"]


def plot_power(curve):
    """Power against patients per arm, one curve per comparison, with Wilson 95% intervals,
    the 80% line and the significance level; legend under the axes.

    ``curve``: a :class:`~progression.virtual.trials.PowerCurve` (``table()``,
    ``sample_sizes`` and ``trial`` with ``alpha``, ``endpoint``, ``follow_up``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    rows = curve.table()
    for comp in dict.fromkeys(r["comparison"] for r in rows):
        rr = [r for r in rows if r["comparison"] == comp]
        n = [r["n_per_arm"] for r in rr]
        p = np.array([r["power"] for r in rr])
        lo = np.array([r["power_ci_low"] for r in rr])
        hi = np.array([r["power_ci_high"] for r in rr])
        ax.errorbar(n, p, yerr=[p - lo, hi - p], marker="o", capsize=3, label=comp)
    ax.axhline(0.8, color="grey", ls=":", lw=1, label="80% power")
    ax.axhline(curve.trial.alpha, color="grey", ls="--", lw=1,
               label=f"alpha = {curve.trial.alpha:g}")
    ax.set_xlabel("patients per arm")
    ax.set_ylabel("power (fraction of trials rejecting H0)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{curve.trial.endpoint} endpoint, {curve.trial.follow_up:g} months",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xticks(curve.sample_sizes)     # the sizes simulated, nothing in between
    handles, labels = ax.get_legend_handles_labels()
    # under the axes: power curves run from alpha to 1 and a legend inside covers one
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8,
               frameon=False)
    return fig
