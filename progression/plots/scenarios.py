"""Figures of a scenario comparison: trajectories, endpoint box plots, Kaplan-Meier curves.

Functions take a :class:`~progression.virtual.comparison.Comparison` (any object with its
attributes); nothing from :mod:`progression.virtual` is imported, so the plotting package stays
a leaf of the import graph.
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import quiet as _quiet
from . import _pyplot, axis_label

__all__ = ["ARMS_PER_PANEL", "PLOT_BAND", "plot_trajectories", "plot_endpoints",
           "plot_survival", "comparison_series"]

#: Arms (besides the reference) drawn in one panel of the trajectory and survival figures;
#: more scenarios are split over columns of panels, each with the reference in black.
ARMS_PER_PANEL = 5

#: Between-subject band kept for the figures (percentiles).
PLOT_BAND = (5, 95)


def plot_trajectories(comp, names=None, *, band=PLOT_BAND):
    """Median trajectory per scenario with a between-subject band and, with parameter
    draws, the 95% interval of the population mean (dashed).

    One row of panels per observable. With more than ``ARMS_PER_PANEL`` scenarios besides
    the reference they are split over columns, each column with the reference (black)
    and its own legend under it; panels of a row share their y range. Curves include
    each scenario's switch times (see ``Comparison.plot_series``).
    """
    plt = _pyplot()
    first = next(iter(comp.trajectories.values()))
    names = list(names or first)
    groups = _arm_groups(list(comp.trajectories), comp.reference)
    if len(groups) == 1:
        ncols = min(3, len(names))
        nrows = math.ceil(len(names) / ncols)
        fig = plt.figure(figsize=(4.6 * ncols, 3.3 * nrows + 0.25 * len(groups[0]) + 0.8),
                         layout="constrained")
        panels = [(fig, fig.subplots(nrows, ncols, squeeze=False).ravel(), groups[0])]
    else:
        fig = plt.figure(figsize=(4.3 * len(groups), 2.5 * len(names) + 1.6),
                         layout="constrained")
        subs = fig.subfigures(1, len(groups), wspace=0.02)
        panels = [(sf, sf.subplots(len(names), 1, sharex=True, squeeze=False).ravel(), g)
                  for sf, g in zip(subs, groups, strict=True)]
    for col, (where, axes, group) in enumerate(panels):
        colors = {comp.reference: "black", **_arm_colors(group)}
        handles = {}
        for ax, name in zip(axes, names, strict=False):
            for scen in [comp.reference, *group]:
                t, lo, med, hi, dm = comparison_series(comp, scen, name, band)
                c = colors[scen]
                (line,) = ax.plot(t, med, color=c, lw=1.9 if scen == comp.reference
                                  else 1.4)
                if scen == comp.reference or len(group) <= 2:
                    # more bands than that overlap into a smear; the CSV has them all
                    ax.fill_between(t, lo, hi, color=c, alpha=0.12, lw=0)
                if dm is not None:
                    ax.plot(t, dm[0], color=c, lw=0.8, ls="--")
                    ax.plot(t, dm[1], color=c, lw=0.8, ls="--")
                handles.setdefault(scen, line)
            ax.set_title(name, fontsize=10)
            if len(groups) == 1 or name == names[-1]:
                ax.set_xlabel("months after treatment start", fontsize=9)
            if len(groups) == 1 or col == 0:
                ax.set_ylabel(axis_label(name, comp.units.get(name, "")), fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        for ax in list(axes)[len(names):]:
            ax.set_visible(False)
        _column_legend(where, handles, 1 + max(map(len, groups)),
                       1 if len(groups) > 1 else 2)
    if len(groups) > 1:
        _same_ylim([[p[1][r] for p in panels] for r in range(len(names))])
    extra = "; dashed: 95% interval of the mean over parameter draws" if comp.n_draws else ""
    whose = (f" of {comp.reference!r} (all arms: trajectories.csv)"
             if max(map(len, groups)) > 2 else "")
    fig.suptitle(f"{comp.model}: median among survivors; shaded: {band[0]}-{band[1]}% "
                 f"between-subject band{whose}{extra}", fontsize=10)
    return fig


def comparison_series(comp, scen, name, band=PLOT_BAND):
    """Times, band low, median, band high and draw interval (or None) for one curve."""
    series = comp.plot_series.get(scen, {}) if tuple(band) == tuple(PLOT_BAND) else {}
    if name in series:
        lo, med, hi = series[name]
        return series["times"], lo, med, hi, series.get(f"{name}@draws")
    Y = comp.trajectories[scen][name][comp.valid]
    with _quiet():
        lo, med, hi = np.nanpercentile(Y, [band[0], 50, band[1]], axis=0)
    dm = comp.draw_means.get(scen, {}).get(name)
    if dm is not None:
        with _quiet():
            dm = np.nanpercentile(dm, [2.5, 97.5], axis=0)
    return comp.times, lo, med, hi, dm

def plot_endpoints(comp, names=None):
    """Box plots of per-subject endpoints per scenario.

    Horizontal boxes, one row per scenario with its full name on the left (wrapped, never
    cut), panels sharing the scenario axis; the dotted line is the reference median.
    """
    plt = _pyplot()
    ep = comp.endpoints
    if names is None:
        names = [f"{ep.function}_change_{t:g}m" for t in ep.times[-1:]]
        a, b = ep.slope_window
        names.append(f"{ep.function}_slope_{a:g}-{b:g}m")
        names += [f"{mk}_change_pct_{t:g}m" for mk in ep.markers for t in ep.times[-1:]]
        if ep.share:
            names.append(f"{ep.share}_mean_{a:g}-{b:g}m")
    scen = list(comp.subject_endpoints)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    height = 0.32 * len(scen) + 1.1
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 2.6, height * nrows + 0.4),
                             squeeze=False, sharey=True, layout="constrained")
    colors = dict(zip(scen, _colors(len(scen)), strict=True))
    colors[comp.reference] = (0.35, 0.35, 0.35, 1.0)
    pos = np.arange(len(scen), 0, -1)             # first scenario at the top
    for ax, name in zip(axes.flat, names, strict=False):
        data = []
        for s in scen:
            v = comp.subject_endpoints[s][name][comp.valid]
            data.append(v[np.isfinite(v)])
        parts = ax.boxplot(data, positions=pos, patch_artist=True, showfliers=False,
                           widths=0.6, **_horizontal())
        for patch, s in zip(parts["boxes"], scen, strict=True):
            patch.set_facecolor(colors[s])
            patch.set_alpha(0.5)
        for med in parts["medians"]:
            med.set_color("black")
        ref = data[scen.index(comp.reference)]
        if ref.size:
            ax.axvline(np.median(ref), color="black", ls=":", lw=1.0)
        ax.set_yticks(pos, [_wrap(s, 36) for s in scen], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(_endpoint_unit(name, ep), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        _readable_x(ax)
        ax.grid(alpha=0.3, axis="x")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{comp.model}: per-subject endpoints (boxes: quartiles, whiskers: "
                 f"1.5 IQR, dotted: median of {comp.reference!r})", fontsize=10)
    return fig


def plot_survival(comp):
    """Kaplan-Meier curves per scenario for each time-to-event endpoint.

    Rows: endpoints; columns: groups of at most ``ARMS_PER_PANEL`` scenarios with the
    reference (black); legends under the panels.
    """
    from ..stats.survival import kaplan_meier

    plt = _pyplot()
    pairs = comp.endpoints.time_to_event_pairs()
    groups = _arm_groups(list(comp.subject_endpoints), comp.reference)
    fig = plt.figure(figsize=(4.4 * len(groups) if len(groups) > 1 else 5.2 * len(pairs),
                              (3.0 * len(pairs) if len(groups) > 1 else 3.6)
                              + 0.2 * (len(groups[0]) + 1) + 0.6),
                     layout="constrained")
    subs = fig.subfigures(1, len(groups), wspace=0.02) if len(groups) > 1 else [fig]
    for col, (where, group) in enumerate(zip(subs, groups, strict=True)):
        axes = (where.subplots(len(pairs), 1, sharex=True, squeeze=False).ravel()
                if len(groups) > 1 else where.subplots(1, len(pairs), squeeze=False).ravel())
        colors = {comp.reference: "black", **_arm_colors(group)}
        handles = {}
        for ax, (time_col, obs_col) in zip(axes, pairs, strict=True):
            for scen in [comp.reference, *group]:
                values = comp.subject_endpoints[scen]
                t, s = kaplan_meier(values[time_col][comp.valid],
                                    values[obs_col][comp.valid] > 0)
                (line,) = ax.step(np.r_[t, comp.times[-1]], np.r_[s, s[-1]], where="post",
                                  color=colors[scen],
                                  lw=1.8 if scen == comp.reference else 1.3)
                handles.setdefault(scen, line)
            ax.set_ylim(-0.02, 1.02)
            if len(groups) == 1 or time_col == pairs[-1][0]:
                ax.set_xlabel("months after treatment start", fontsize=9)
            if len(groups) == 1 or col == 0:
                ax.set_ylabel("fraction event-free", fontsize=9)
            ax.set_title(time_col.replace("time_to_", "time to ").replace("_le_", " ≤ "),
                         fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        _column_legend(where, handles, 1 + max(map(len, groups)),
                       1 if len(groups) > 1 else 2)
    fig.suptitle(f"{comp.model}: Kaplan-Meier estimates (censored at the horizon)",
                 fontsize=10)
    return fig





def _arm_groups(names, reference, per_panel: int = ARMS_PER_PANEL) -> list[list[str]]:
    """Scenarios other than the reference, split into near-equal groups of <= per_panel."""
    arms = [n for n in names if n != reference]
    if not arms:
        return [[]]
    k = math.ceil(len(arms) / per_panel)
    cuts = np.linspace(0, len(arms), k + 1).round().astype(int)
    return [arms[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


#: Smallest x span of an endpoint panel, relative to the largest |value| shown: differences
#: below ~1 % of the endpoint's size are drawn as what they are (no difference), not stretched
#: over the axis (one subject per scenario: 9 labels like -13.2975 over a 0.02 span overlapped).
MIN_RELATIVE_SPAN = 0.02


def _readable_x(ax) -> None:
    """At most ~5 plain x tick labels, over a span of at least ``MIN_RELATIVE_SPAN`` of the
    largest |value| (centred on the data), so labels neither crowd nor overlap."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    lo, hi = ax.get_xlim()
    size = max(abs(lo), abs(hi))
    need = MIN_RELATIVE_SPAN * size
    if size > 0 and hi - lo < need:
        mid = 0.5 * (lo + hi)
        ax.set_xlim(mid - 0.5 * need, mid + 0.5 * need)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)


def _horizontal() -> dict:
    """Keyword for horizontal box plots (``orientation`` since matplotlib 3.10)."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _column_legend(where, handles: dict, rows: int, ncols: int) -> None:
    """Legend under a column of panels, padded to ``rows`` entries so columns line up."""
    from matplotlib.lines import Line2D

    lines, labels = list(handles.values()), [_wrap(n, 44) for n in handles]
    while len(lines) < rows:
        lines.append(Line2D([], [], alpha=0.0))
        labels.append(" ")
    where.legend(lines, labels, loc="outside lower center", ncols=ncols, fontsize=8,
                 frameon=False)


def _arm_colors(group) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(group)}


def _wrap(name: str, width: int = 34) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(name, width)) or name


def _same_ylim(rows) -> None:
    """Give the axes of each row (a list of axes) the same y range."""
    for row in rows:
        lims = np.array([ax.get_ylim() for ax in row])
        for ax in row:
            ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _endpoint_unit(name: str, ep) -> str:
    if "_pct_" in name:
        return "% change from baseline"
    if "_slope_" in name:
        return "points/month"
    if name.startswith(f"{ep.function}_change"):
        return "points from baseline"
    if name.startswith("time_to_"):
        return "months"
    return "fraction"
