"""Matplotlib figures: trajectories of simulations (more figure kinds join as layers grow)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_simulation"]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in {"agg", "pdf", "svg"} and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def plot_simulation(sim, names=None, *, subjects=None, max_subjects: int = 50, events=True,
                    ncols: int = 3):
    """Plot trajectories of a :class:`~progression.simulate.Simulation`, one panel per output.

    Parameters
    ----------
    sim : Simulation
    names : sequence of str, optional
        States and/or observables to show; all observables (or all states when the model has
        none) by default.
    subjects : sequence of int, optional
        Which subjects to draw; the first ``max_subjects`` by default. With more than one
        subject the median is drawn bold.
    events : bool
        For a single subject, mark the time of each event with a vertical line.
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    names = list(names or (sim.observable_names or sim.state_names))
    subjects = list(range(min(sim.n_subjects, max_subjects))) if subjects is None else subjects
    ncols = min(ncols, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    unit_t = sim.time_unit or "time units"
    for ax, name in zip(axes.flat, names, strict=False):
        values = sim[name]
        alpha = 0.9 if len(subjects) == 1 else max(0.15, 1.0 / np.sqrt(len(subjects)))
        for s in subjects:
            ax.plot(sim.times, values[s], color="tab:blue", lw=1.0, alpha=alpha)
        if len(subjects) > 1:
            with np.errstate(all="ignore"):
                median = np.nanmedian(values[subjects], axis=0)
            ax.plot(sim.times, median, color="black", lw=2.0, label="median")
            ax.legend(loc="best", fontsize=8)
        unit = sim.units.get(name, "")
        ax.set_title(name)
        ax.set_xlabel(f"time ({unit_t})")
        ax.set_ylabel(f"{name} ({unit})" if unit and unit != "1" else name)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if events and len(subjects) == 1:
        styles = iter(["--", ":", "-."])
        for name in sim.events:
            te = sim.event_time(name)[subjects[0]]
            if np.isfinite(te):
                style = next(styles, ":")
                for ax in list(axes.flat)[:len(names)]:
                    ax.axvline(te, color="tab:red", ls=style, lw=1.0, label=f"{name} ({te:.1f})")
        axes.flat[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{sim.model}: {sim.n_subjects} subject(s)")
    fig.tight_layout()
    return fig
