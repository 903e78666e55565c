"""Matplotlib figures: trajectories of simulations (more figure kinds join as layers grow)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_simulation", "time_label", "axis_label", "legend_below"]


def _pyplot():
    """pyplot; the user's backend is kept (Agg only when none was chosen and no display)."""
    from ._mpl import pyplot

    return pyplot()


def time_label(unit: str | None, what: str = "time") -> str:
    """Axis label for time: ``time (months)`` from a model's time unit (``"month"``)."""
    unit = str(unit or "").strip()
    if not unit:
        return f"{what} (time units)"
    return f"{what} ({unit if unit.endswith('s') else unit + 's'})"


def axis_label(name: str, unit: str | None) -> str:
    """``name (unit)``; dimensionless quantities (unit ``"1"`` or none) get no unit."""
    return f"{name} ({unit})" if unit and unit != "1" else name


def wrap_label(text: str, width: int = 28) -> str:
    """``text`` with its trailing ``(unit)`` on a second line when longer than ``width``
    characters: an axis label longer than its panel is cut at the figure's edge."""
    head, sep, unit = text.rpartition(" (")
    return f"{head}\n({unit}" if sep and len(text) > width else text


def plain_log_ticks(ax, axis: str = "both") -> None:
    """Tick labels of a logarithmic axis as plain numbers (``4``, ``0.3``, ``200``) instead of
    ``4 x 10^0``, on the ticks matplotlib's own log formatter labels (so a range within one
    decade labels its minor ticks and a wide one only its decades)."""
    from matplotlib.ticker import LogFormatterSciNotation

    class _Plain(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    for which in ("x", "y") if axis == "both" else (axis,):
        a = ax.xaxis if which == "x" else ax.yaxis
        a.set_major_formatter(_Plain())
        a.set_minor_formatter(_Plain(labelOnlyBase=False))


def legend_below(fig, handles, labels, *, ncols: int | None = None, fontsize: float = 8):
    """One figure legend under the panels, outside every axes (needs constrained layout).

    Nothing is drawn when there is nothing labelled (no matplotlib warning).
    """
    if not handles:
        return None
    ncols = ncols or min(len(labels), 4)
    return fig.legend(handles, labels, loc="outside lower center", ncols=ncols,
                      fontsize=fontsize, frameon=False)


def plot_simulation(sim, names=None, *, subjects=None, max_subjects: int = 50, events=True,
                    ncols: int = 3, pyplot: bool = True):
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
    pyplot : bool
        Make the figure through pyplot (shown by ``plt.show()``, kept open until closed). With
        False a standalone :class:`matplotlib.figure.Figure` is returned (for writing to a
        file: pyplot is not imported, which the CLI's start-up time notices, and nothing is
        left open).

    Returns
    -------
    matplotlib.figure.Figure
        Axes carry the model's units; the legend (median, event times), when there is
        anything to label, sits under the panels.
    """
    names = list(names or (sim.observable_names or sim.state_names))
    subjects = list(range(min(sim.n_subjects, max_subjects))) if subjects is None else subjects
    ncols = min(ncols, len(names))
    nrows = math.ceil(len(names) / ncols)
    # fixed margins in inches instead of constrained layout, whose text measuring was ~40%
    # of `progression simulate`'s run time; the panels' labels are short and known
    # rows 2.7 in apart: the time axis is labelled under the lowest panel of each column only
    # (below), so the rows need room for a title only
    width, height = 4.2 * ncols, 2.7 * nrows + 0.9
    if pyplot:
        fig, axes = _pyplot().subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height))
        axes = fig.subplots(nrows, ncols, squeeze=False)
    bottom = 0.55 + (0.3 if events and len(subjects) == 1 and sim.events
                     or len(subjects) > 1 else 0.0)
    # every panel shares the time axis, so only the lowest panel of each column labels it:
    # the panels keep their size, the gaps between rows shrink by 0.5 in, and ~60 texts fewer
    # are laid out and drawn (with the PNG's compression level, 5-20 % of `progression
    # simulate`'s drawing, measured under load)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, top=1 - 0.6 / height,
                        bottom=bottom / height, wspace=1.0 / 3.2,
                        hspace=(0.45 if nrows > 1 else 0.95) / 2.5)
    legend = {}
    for i, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        values = sim[name]
        alpha = 0.9 if len(subjects) == 1 else max(0.15, 1.0 / np.sqrt(len(subjects)))
        for s in subjects:
            ax.plot(sim.times, values[s], color="tab:blue", lw=1.0, alpha=alpha)
        if len(subjects) > 1:
            with np.errstate(all="ignore"):
                median = np.nanmedian(values[subjects], axis=0)
            (line,) = ax.plot(sim.times, median, color="black", lw=2.0)
            legend.setdefault("median", line)
        ax.set_title(name)
        if i + ncols < len(names):          # a panel below labels the same time axis
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel(time_label(sim.time_unit))
        ax.set_ylabel(axis_label(name, sim.units.get(name, "")))
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
                    line = ax.axvline(te, color="tab:red", ls=style, lw=1.0)
                legend[f"{name} (t = {te:.1f} {sim.time_unit or ''})".replace(" )", ")")] = line
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center",
                   ncols=min(len(legend), 4), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.02 / height))
    fig.suptitle(f"{sim.model}: {sim.n_subjects} subject(s)", y=1 - 0.12 / height)
    return fig
