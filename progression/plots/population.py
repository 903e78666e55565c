"""Goodness-of-fit, VPC and convergence figures of a population (mixed-effects) fit.

Every function takes plain arrays (or, for :func:`plot_vpc`, any object with the attributes of
``progression.fit.population.VPCResult``), returns a matplotlib Figure and, given ``path``,
saves it as a PNG. matplotlib is imported only when a figure is drawn, through the one backend
set-up of :mod:`progression.plots._mpl` (the user's backend is kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import axis_label, legend_below, plain_log_ticks, time_label, wrap_label

__all__ = ["plot_dv_vs_pred", "plot_residuals", "plot_qq", "plot_vpc", "plot_survival_vpc",
           "plot_traces", "plot_individual_fits", "plot_bootstrap"]

_DPI = 120


def _pyplot():
    from ._mpl import pyplot

    return pyplot()


def _finish(fig, path):
    """Save ``fig`` as a PNG at ``path`` when one is given; return the figure."""
    if path is not None:
        fig.savefig(path, dpi=_DPI)
    return fig


def _flat(*arrays):
    """Flattened float arrays, keeping the entries finite in all of them (padding is NaN)."""
    a = [np.asarray(x, dtype=float).ravel() for x in arrays]
    keep = np.logical_and.reduce([np.isfinite(x) for x in a])
    return [x[keep] for x in a]


def plot_dv_vs_pred(dv, pred, ipred=None, *, log: bool = False, name: str = "DV",
                    unit: str | None = None, cens=None, path=None):
    """Observations against population (and individual) predictions, with the identity line.

    Parameters
    ----------
    dv, pred : array_like
        Observations and PRED (eta = 0), same shape; NaN entries (padding, censored) are left
        out.
    ipred : array_like, optional
        IPRED (at the conditional modes): a second panel.
    log : bool
        Logarithmic axes (non-positive values are not drawn).
    name, unit : str
        What is observed, for the axis labels.
    cens : array_like, optional
        Censoring flags (same shape; 1 below the limit, -1 above, 0 observed): censored
        entries, whose ``dv`` is their limit, are drawn as open red markers at the limit.
    path : str or Path, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    c = (np.zeros(np.shape(dv)) if cens is None
         else np.nan_to_num(np.asarray(cens, dtype=float)))
    dv = np.asarray(dv, dtype=float)
    panels = [("PRED", pred)] + ([("IPRED", ipred)] if ipred is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False,
                             layout="constrained")
    for ax, (label, p) in zip(axes.flat, panels, strict=True):
        y, x, cf = _flat(dv, p, c)
        if log:
            pos = (x > 0) & (y > 0)
            x, y, cf = x[pos], y[pos], cf[pos]
        o = cf == 0
        ax.scatter(x[o], y[o], s=10, alpha=0.5, color="tab:blue", edgecolors="none",
                   label="observations")
        if np.any(~o):
            ax.scatter(x[~o], y[~o], s=16, facecolors="none", edgecolors="tab:red", lw=0.8,
                       label=f"censored ({int(np.sum(~o))}), drawn at the limit")
        both = np.concatenate([x, y])
        lo, hi = (both.min(), both.max()) if both.size else (0.0, 1.0)
        pad = 0.04 * (hi - lo or 1.0)
        lims = (lo / 1.1, hi * 1.1) if log else (lo - pad, hi + pad)
        ax.plot(lims, lims, color="black", lw=1.0, label="identity")
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            plain_log_ticks(ax)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(wrap_label(axis_label(f"{label} of {name}", unit)))
        ax.set_ylabel(wrap_label(axis_label(f"observed {name}", unit)))
        ax.set_title(f"{name} vs {label}")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    return _finish(fig, path)


def plot_residuals(res, time, pred, *, name: str = "CWRES", time_unit: str | None = None,
                   pred_name: str = "PRED", pred_unit: str | None = None,
                   n_censored: int = 0, path=None):
    """Weighted residuals against time and against PRED, with 0 and +-1.96 reference lines.

    Parameters
    ----------
    res : array_like
        CWRES (or IWRES, NPDE); NaN entries are left out.
    time, pred : array_like
        Time and PRED of each residual (same shape).
    name : str
        Which residual, for the labels.
    time_unit, pred_unit : str, optional
        Units for the axis labels (``"month"`` gives ``time (months)``).
    pred_name : str
    n_censored : int
        Censored values, which have no residual and are left out: said in the legend.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8), layout="constrained")
    if n_censored:
        name_label = f"{name} ({n_censored} censored values have none: not drawn)"
    else:
        name_label = name
    for ax, (xs, xlabel) in zip(axes, [(time, time_label(time_unit)),
                                       (pred, axis_label(pred_name, pred_unit))], strict=True):
        r, x = _flat(res, xs)
        ax.scatter(x, r, s=10, alpha=0.5, color="tab:blue", edgecolors="none",
                   label=name_label)
        ax.axhline(0.0, color="black", lw=1.0, label="0")
        for sign in (-1, 1):
            ax.axhline(sign * 1.96, color="tab:red", lw=0.8, ls="--",
                       label="\u00b11.96 (95 % of N(0, 1))" if sign < 0 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs {xlabel.split(' (')[0]}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    return _finish(fig, path)


def plot_qq(values, *, name: str = "CWRES", path=None):
    """Normal QQ plot(s): sample quantiles against N(0, 1) quantiles, with the identity line.

    Parameters
    ----------
    values : array_like or mapping of str to array_like
        One set of residuals, or several (``{"CWRES": ..., "NPDE": ...}``), one panel each.
    name : str
        Label of a single set.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        Each panel's points are ``(Phi^-1((i - 0.5) / n), sorted values)``.
    """
    from scipy.special import ndtri

    plt = _pyplot()
    sets = dict(values) if isinstance(values, Mapping) else {name: values}
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False,
                             layout="constrained")
    for ax, (label, v) in zip(axes.flat, sets.items(), strict=True):
        (v,) = _flat(v)
        v = np.sort(v)
        n = v.size
        theo = ndtri((np.arange(1, n + 1) - 0.5) / n) if n else np.zeros(0)
        ax.plot(theo, v, "o", ms=3, alpha=0.6, color="tab:blue", label=label)
        lim = max(3.0, float(np.max(np.abs(v))) if n else 3.0, float(np.max(np.abs(theo)))
                  if n else 3.0)
        ax.plot([-lim, lim], [-lim, lim], color="black", lw=1.0, label="identity")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("N(0, 1) quantiles")
        ax.set_ylabel(f"{label} quantiles")
        ax.set_title(f"QQ plot of {label} (n = {n})")
        ax.grid(alpha=0.3)
    return _finish(fig, path)


_BAND_COLORS = {"outer": "tab:blue", "median": "tab:red"}


def plot_vpc(v, *, name: str = "DV", unit: str | None = None, time_unit: str | None = None,
             observations: bool = True, end_events=(), path=None):
    """A VPC figure: observed percentiles as lines, simulated bands as shaded areas.

    Parameters
    ----------
    v : VPCResult or any object with its attributes
        ``x, percentiles, observed, sim_lo, sim_hi, sim_median, ci, n_sim, pred_corrected,
        blq_observed, blq_sim, obs_time, obs_value, edges``.
    name, unit, time_unit : str, optional
        For the labels.
    observations : bool
        Draw the observations (prediction corrected if the VPC is) as points.
    end_events : sequence of str
        The end events behind ``v.sim_ended`` (named in the legend; default "end event").
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        The main panel; below it, when the VPC has censored data, the observed fraction below
        the limit per bin against the simulated band.
    """
    plt = _pyplot()
    has_blq = getattr(v, "blq_observed", None) is not None
    if has_blq:
        fig, axes = plt.subplots(2, 1, figsize=(7.5, 6.8), sharex=True, layout="constrained",
                                 gridspec_kw={"height_ratios": [3, 1.3]})
        ax, ax_blq = axes
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
        ax_blq = None
    x = np.asarray(v.x, dtype=float)
    q = list(v.percentiles)
    ci = 100 * float(v.ci)
    mid = min(range(len(q)), key=lambda k: abs(q[k] - 50))
    if observations:
        ax.plot(v.obs_time, v.obs_value, "o", ms=2.5, color="0.55", alpha=0.5,
                label="observations")
        oc = getattr(v, "obs_censored", None)
        if oc is not None and np.any(oc):
            ax.plot(np.asarray(v.obs_time)[oc], np.asarray(v.obs_limit)[oc], "o", ms=3.5,
                    mfc="none", mec="tab:red", alpha=0.7,
                    label="censored, at the limit" + (" (prediction corrected)"
                                                       if v.pred_corrected else ""))
    for k, p in enumerate(q):
        color = _BAND_COLORS["median" if k == mid else "outer"]
        ok = np.isfinite(v.sim_lo[:, k]) & np.isfinite(v.sim_hi[:, k])
        ax.fill_between(x[ok], v.sim_lo[ok, k], v.sim_hi[ok, k], color=color, alpha=0.22,
                        lw=0, label=f"simulated {p:g}th percentile, {ci:g} % band")
        ax.plot(x, v.observed[:, k], color=color if k == mid else "black",
                lw=2.0 if k == mid else 1.2, ls="-" if k == mid else "--", marker="o", ms=3,
                label=f"observed {p:g}th percentile")
    kind = "Prediction-corrected VPC" if v.pred_corrected else "VPC"
    ax.set_title(f"{kind} of {name} ({v.n_sim} simulations)")
    # "prediction-corrected" on a line of its own: with a unit such as "% of CD4+ T cells"
    # one line is taller than the panel and is cut at the figure's edge
    ax.set_ylabel(("prediction-corrected\n" if v.pred_corrected else "")
                  + axis_label(name, unit))
    ax.grid(alpha=0.3)
    for e in np.asarray(v.edges, dtype=float):
        ax.axvline(e, color="0.8", lw=0.6, zorder=0)
    if ax_blq is not None:
        b = np.asarray(v.blq_sim, dtype=float)
        ok = np.isfinite(b).all(axis=1)
        bci = 100 * float(getattr(v, "blq_ci", None) or v.ci)
        ax_blq.fill_between(x[ok], b[ok, 0], b[ok, 2], color="tab:blue", alpha=0.22, lw=0,
                            label=f"simulated fraction below the limit, {bci:g} % interval")
        ax_blq.plot(x, v.blq_observed, color="black", marker="o", ms=3, lw=1.2,
                    label="observed fraction below the limit")
        ax_blq.set_ylim(-0.02, max(0.1, float(np.nanmax(np.r_[b[:, 2], v.blq_observed])) * 1.1))
        ax_blq.set_ylabel("fraction < limit")
        ax_blq.grid(alpha=0.3)
        ax_blq.set_xlabel(time_label(time_unit))
    else:
        ax.set_xlabel(time_label(time_unit))
    handles, labels = ax.get_legend_handles_labels()
    if ax_blq is not None:
        h2, l2 = ax_blq.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ended = getattr(v, "sim_ended", None)
    if ended is not None and np.isfinite(ended).any():
        # a text-only entry: which simulated values the end events (death) removed
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="none"))
        what = " or ".join(end_events) or "end event"
        import textwrap

        # wrapped: a long event name would run past the figure's right edge
        labels.append(textwrap.fill(
            f"simulated values after the simulated patient's {what} left out: "
            f"{100 * np.nanmin(ended):.0f}-{100 * np.nanmax(ended):.0f} % per bin", 55))
    legend_below(fig, handles, labels, ncols=2)
    return _finish(fig, path)


def plot_survival_vpc(v, *, time_unit: str | None = None, path=None):
    """A Kaplan-Meier VPC: the data's survival against the simulated cohorts' band.

    Parameters
    ----------
    v : SurvivalVPC or any object with its attributes
        ``event, times, lower, median, upper`` (arrays (G,)), ``n_sim``, and the data's
        Kaplan-Meier step function ``km_time, km_survival``.
    time_unit : str, optional
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    t = np.r_[0.0, np.asarray(v.times, dtype=float)]
    ax.fill_between(t, np.r_[1.0, v.lower], np.r_[1.0, v.upper], step="post",
                    color=_BAND_COLORS["outer"], alpha=0.22, lw=0,
                    label="simulated cohorts, 95 % band")
    ax.step(t, np.r_[1.0, v.median], where="post", color=_BAND_COLORS["median"], lw=1.5,
            label="simulated cohorts, median")
    # the data's own step function, to the end of follow-up
    kt = np.r_[np.asarray(v.km_time, dtype=float), t[-1]]
    ks = np.r_[np.asarray(v.km_survival, dtype=float), v.km_survival[-1]]
    ax.step(kt, ks, where="post", color="black", lw=2.0, label="data (Kaplan-Meier)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(time_label(time_unit))
    ax.set_ylabel(f"free of {v.event}")
    ax.set_title(f"Kaplan-Meier VPC of {v.event} ({v.n_sim} simulated cohorts)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    legend_below(fig, handles, labels, ncols=3)
    return _finish(fig, path)


def plot_traces(traces, *, ofv=None, iterations=None, smoothing_start: int | None = None,
                ncols: int = 3, title: str = "Convergence", path=None):
    """Parameter traces by iteration (SAEM, or an optimiser's path), and the OFV.

    Parameters
    ----------
    traces : mapping of str to array_like (T,)
        One trace per parameter (theta, omega, sigma, ...).
    ofv : array_like (T,), optional
        Objective function value by iteration: one more panel.
    iterations : array_like (T,), optional
        Iteration numbers (0, 1, ... by default).
    smoothing_start : int, optional
        First iteration of SAEM's smoothing phase: a vertical line in every panel.
    ncols : int
    title : str
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    series = {k: np.asarray(v, dtype=float).ravel() for k, v in dict(traces).items()}
    if ofv is not None:
        series["OFV"] = np.asarray(ofv, dtype=float).ravel()
    if not series:
        series = {"(nothing to show)": np.zeros(0)}
    ncols = max(1, min(ncols, len(series)))
    nrows = math.ceil(len(series) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows + 0.6),
                             squeeze=False, layout="constrained")
    handles = {}
    for ax, (label, y) in zip(axes.flat, series.items(), strict=False):
        it = (np.arange(y.size) if iterations is None
              else np.asarray(iterations, dtype=float).ravel()[:y.size])
        finite = np.isfinite(y)
        if 0 < finite.sum() <= 2:
            # an objective known at a few iterations only (SAEM's importance-sampling OFV at
            # the end): a line through one point draws nothing, so mark and label the values
            ax.plot(it[finite], y[finite], "o", color="black" if label == "OFV" else
                    "tab:blue")
            for xv, yv in zip(it[finite], y[finite], strict=True):
                ax.annotate(f"{yv:.6g}", (xv, yv), textcoords="offset points", xytext=(-4, 6),
                            ha="right", fontsize=8)
            if iterations is not None:
                ax.set_xlim(float(np.nanmin(it)), float(np.nanmax(it)) + 1.0)
        else:
            ax.plot(it, y, color="black" if label == "OFV" else "tab:blue", lw=1.0)
        if smoothing_start is not None:
            handles["start of smoothing"] = ax.axvline(smoothing_start, color="tab:red",
                                                       ls="--", lw=0.8)
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    legend_below(fig, list(handles.values()), list(handles))
    fig.suptitle(title)
    return _finish(fig, path)


def _rows(a) -> list[np.ndarray]:
    """Per-subject 1-D float arrays from a padded (N, n) array or a sequence of arrays."""
    if isinstance(a, np.ndarray) and a.ndim == 2:
        return [np.asarray(r, dtype=float) for r in a]
    return [np.asarray(r, dtype=float).ravel() for r in a]


def plot_individual_fits(time, dv, ipred, pred=None, *, subjects=None, ids=None,
                         max_subjects: int = 12, ncols: int = 4, name: str = "DV",
                         unit: str | None = None, time_unit: str | None = None, cens=None,
                         path=None):
    """One panel per subject: observations, IPRED (solid) and PRED (dashed) against time.

    Parameters
    ----------
    time, dv, ipred : ndarray (N, n) padded with NaN, or sequences of per-subject arrays
    pred : same layout, optional
    subjects : sequence of int, optional
        Which subjects (positions) to draw; the first ``max_subjects`` by default.
    ids : sequence of str, optional
        Subject identifiers for the panel titles (positions otherwise).
    max_subjects, ncols : int
    name, unit, time_unit : str, optional
        For the labels.
    cens : same layout as ``dv``, optional
        Censoring flags (0 observed, 1 below the limit, -1 above): censored values, whose
        ``dv`` is their limit, are drawn as open red markers at the limit.
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
        Lines are drawn through the observation times in time order.
    """
    plt = _pyplot()
    T, Y, I = _rows(time), _rows(dv), _rows(ipred)
    C = [np.zeros(len(t)) for t in T] if cens is None else [np.nan_to_num(r) for r in
                                                             _rows(cens)]
    P = _rows(pred) if pred is not None else None
    subjects = list(range(min(len(T), max_subjects))) if subjects is None else list(subjects)
    ncols = max(1, min(ncols, len(subjects)))
    nrows = max(1, math.ceil(len(subjects) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows + 0.6),
                             squeeze=False, sharex=True, layout="constrained")
    for ax, i in zip(axes.flat, subjects, strict=False):
        t = T[i]
        order = np.argsort(t[np.isfinite(t)], kind="stable")
        t_ok = np.isfinite(t)
        ts = t[t_ok][order]
        cz = C[i] != 0
        ax.plot(t[t_ok & ~cz], Y[i][t_ok & ~cz], "o", ms=3.5, color="black",
                label="observed")
        if np.any(t_ok & cz):
            ax.plot(t[t_ok & cz], Y[i][t_ok & cz], "o", ms=4.5, mfc="none", mec="tab:red",
                    label="censored, at the limit")
        ax.plot(ts, I[i][t_ok][order], color="tab:blue", lw=1.4, label="IPRED")
        if P is not None:
            ax.plot(ts, P[i][t_ok][order], color="tab:orange", lw=1.2, ls="--",
                    label="PRED")
        ax.set_title(str(ids[i]) if ids is not None else f"subject {i}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(subjects):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(time_label(time_unit))
    for ax in axes[:, 0]:
        ax.set_ylabel(axis_label(name, unit))
    # every panel's entries once (the first panel may have no censored value)
    seen = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    legend_below(fig, list(seen.values()), list(seen))
    fig.suptitle(f"Individual fits of {name} ({len(subjects)} of {len(T)} subjects)")
    return _finish(fig, path)


def plot_bootstrap(boot, *, wald=None, ncols: int = 4, path=None):
    """The bootstrap replicates of each population parameter: a histogram with the estimate
    (solid), the percentile interval (dashed) and, when given, the Wald interval (dotted).

    Parameters
    ----------
    boot : PopulationBootstrap
        ``names``, ``estimates``, ``samples`` (B, K), ``level``, ``intervals()``.
    wald : mapping of str to (float, float), optional
        The Wald intervals at the same level (``PopulationPart.intervals(level)``).
    ncols : int
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    names = list(boot.names)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.5 * nrows + 0.8),
                             squeeze=False, layout="constrained")
    ci = boot.intervals()
    ok = np.all(np.isfinite(boot.samples), axis=1)
    pct = f"{100 * boot.level:g} %"
    for j, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        ax.hist(boot.samples[ok, j], bins=min(30, max(5, int(ok.sum()) // 5)), color="C0",
                alpha=0.7, label="replicates")
        ax.axvline(boot.estimates[j], color="black", lw=1.5, label="estimate")
        for k, end in enumerate(ci[name]):
            if np.isfinite(end):
                ax.axvline(end, color="C3", ls="--", lw=1.2,
                           label=f"{pct} percentile interval" if k == 0 else None)
        for k, end in enumerate((wald or {}).get(name, ())):
            if np.isfinite(end):
                ax.axvline(end, color="0.4", ls=":", lw=1.2,
                           label=f"{pct} Wald interval" if k == 0 else None)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_ylabel("replicates", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))     # counts: no 12.5
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Bootstrap: {int(ok.sum())} of {boot.samples.shape[0]} replicates "
                 "(subjects resampled, each refitted)", fontsize=10)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    legend_below(fig, handles, labels)
    return _finish(fig, path)

