"""Figures and the Markdown report of a saved fit (matplotlib imported only when writing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._report_population import population_lines as _population_lines
from .errormodels import describe_kind, split_kind

__all__ = ["write_figures", "write_report", "subject_curves"]

_MAX_PANELS = 16


def _base(kind: str) -> str:
    """The base error model of a kind (``"lognormal:t(3)"`` -> ``"lognormal"``)."""
    return split_kind(kind)[0]


def _plt():
    """pyplot; the user's backend is kept (Agg only when none was chosen and there is no
    display)."""
    from .._mpl import pyplot

    return pyplot()


def _log_axis(ax, which="x"):
    """Log scale with plain number labels (no 2x10^0 clutter) and at least three of them.

    Call it after everything is drawn: the ticks are chosen for the current data range
    (decades when the range spans several, then 1-3, then 1-2-5 per decade, then evenly
    spaced values for a range narrower than a decade) and the range is then kept.
    """
    from matplotlib import ticker

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    ax.relim()
    ax.autoscale_view()
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    axis.set_major_locator(ticker.FixedLocator(_log_ticks(lo, hi)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10.0, subs="auto", numticks=12))
    axis.set_minor_formatter(ticker.NullFormatter())
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)


def _log_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """At least three (at most ``most``) round values in [lo, hi] for a log axis."""
    from matplotlib import ticker

    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return []
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0)):
        ticks = [float(f"{s * 10.0 ** k:.12g}") for k in decades for s in subs]
        ticks = [t for t in ticks if lo <= t <= hi]
        if len(ticks) >= 3:
            return ticks[::int(np.ceil(len(ticks) / most))]
    # narrower than a decade or so: evenly spaced round values
    for nbins in (4, 6, 9):
        ticks = ticker.MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        ticks = [float(t) for t in ticks if lo <= t <= hi]
        if len(ticks) >= 3:
            break
    return ticks


def _plural(unit: str) -> str:
    return unit if not unit or unit.endswith("s") else f"{unit}s"


def _units(result) -> dict:
    """Unit of every observable and fitted quantity, from the model ("" when unknown)."""
    spec = getattr(result.model, "spec", None)
    units = {}
    if spec is not None:
        units.update({p.name: p.unit for p in spec.parameters})
        units.update({x.name: x.unit for x in spec.states})
        units.update({o.name: o.unit for o in spec.observables})
    time_unit = _plural(str(getattr(result.model, "time_unit", "") or ""))
    for p in result.parameters:
        if p.kind == "offset":
            units[p.name] = time_unit
        elif p.kind == "error":
            key = getattr(p, "key", None)
            units[p.name] = units.get(getattr(p, "observable", None), "") if key == "a" else "1"
    units[""] = time_unit
    return units


def _label(name: str, unit: str | None) -> str:
    """``name (unit)``; dimensionless quantities ("1", "") get no unit."""
    return f"{name} ({unit})" if unit and unit != "1" else name


def _population_profiles(result, folder: Path, plt) -> list[Path]:
    """One figure per profile likelihood computed with a population fit."""
    from ._population_profile import slug

    pop = result.population
    files = []
    for name in (getattr(pop, "profiles", None) or {}) if pop is not None else {}:
        fig = pop.profile(name).plot()
        path = folder / f"profile_{slug(name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def write_figures(result, folder: Path, population=None) -> list[Path]:
    """Write the fit's figures into ``folder``; returns the files written.

    ``population``: a population fit's
    :class:`~progression.fit.population._outputs.PopulationOutputs`, whose goodness-of-fit,
    VPC, OFV-by-iteration and individual-fit figures come first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    files = []
    if population is not None and not isinstance(population, str):
        from .population._outputs import write_population_figures

        files += write_population_figures(result, population, folder)
    try:
        files += _individual_fits(result, folder, plt)
        files.append(_observed_vs_predicted(result, folder, plt))
        files.append(_residuals(result, folder, plt))
        files.append(_parameters(result, folder, plt))
        if result.profiles is not None:
            files.append(_profiles(result, folder, plt))
        files += _population_profiles(result, folder, plt)
    finally:
        plt.close("all")
    return [f for f in files if f is not None]


def subject_curves(result, k: int = _MAX_PANELS, points: int = 400, *,
                   subjects=None) -> list[dict]:
    """The model curves the individual-fit figures draw, through the likelihood's own path.

    Each subject's curve is evaluated by :meth:`Problem.evaluate` on a design that is the
    subject's own (doses, dose records, covariates, offset covariate) with the data times
    replaced by a dense grid, once per observable and experimental condition of its data: the
    curves are the model the fit's predictions come from, and pass through those predictions
    at the data times (which the grid includes).

    Parameters
    ----------
    result : FitResult
    k : int
        The first ``k`` subjects.
    points : int
        Grid points per curve (plus the data times).
    subjects : sequence of int, optional
        These subjects (indices into ``result.designs``) instead of the first ``k``.

    Returns
    -------
    list of dict
        Per subject: ``(observable index, condition or "") -> (data times, predictions)``.
    """
    index = list(range(min(k, len(result.designs)))) if subjects is None else \
        [int(i) for i in subjects]
    designs = [result.designs[i] for i in index]
    if not designs:
        return []
    problem = result.reported_problem
    offsets = np.asarray(result.time_offsets, dtype=float)[index]
    rows, keys, owner = [], [], []
    # a subject seen once (or over a short time) gets a tenth of the longest follow-up
    spans = [float(np.max(d.time)) - min(0.0, float(np.min(d.time))) for d in designs]
    shortest = 0.1 * max(spans) if max(spans) > 0 else 1.0
    for i, d in enumerate(designs):
        lo, hi = min(0.0, float(np.min(d.time))), float(np.max(d.time))
        hi = max(hi + 0.05 * (hi - lo), lo + shortest)
        if offsets[i] + lo < 0 and offsets[i] + hi > 0:
            # before the model's t = 0 the likelihood evaluates at 0: start the curve there
            lo = -float(offsets[i])
        grid = np.linspace(lo, hi, points)
        conds = np.full(d.n, "") if d.condition is None else np.asarray(d.condition, str)
        for o in np.unique(d.obs):
            for c in dict.fromkeys(conds[d.obs == o].tolist()):
                sel = (d.obs == o) & (conds == c)
                # a bolus is a jump: points just before and after each dose draw it upright
                doses = list(d.doses) + [x for cd in problem.conditions if cd.name == c
                                         for x in cd.doses]
                jumps = np.array([x.time + j * x.ii for x in doses
                                  for j in range(int(x.addl) + 1)], dtype=float)
                h = 1e-7 * (hi - lo)
                jumps = np.concatenate([jumps - h, jumps + h])
                jumps = jumps[(jumps > lo) & (jumps < hi)]
                t = np.union1d(np.union1d(grid, jumps), d.time[sel])
                n = t.size
                measured = result.error_models[o] == "measured"
                rows.append(d.replace(time=t, obs=np.full(n, o, dtype=int), value=np.ones(n),
                                      cens=np.zeros(n, dtype=int), limit=np.full(n, np.nan),
                                      condition=None if c == "" else np.full(n, c),
                                      sd=np.ones(n) if measured else None))
                keys.append((int(o), c))
                owner.append(i)
    theta = np.asarray(result.theta, float)[[index[i] for i in owner]]
    ev = problem.evaluate(rows, np.arange(len(rows)), theta, np.array([], dtype=int),
                          want_jac=False, want_predictions=True)
    out = [{} for _ in designs]
    for r, (i, key) in enumerate(zip(owner, keys, strict=True)):
        f = np.asarray(ev.predictions[r], float)
        if ev.failed[r]:
            f = np.full_like(f, np.nan)
        out[i][key] = (rows[r].time, f)
    return out


def _individual_fits(result, folder, plt):
    if not result.designs:
        return []
    # per observable the first subjects with values of it (a sparse observable, Treg % in
    # the ALS cohort, would otherwise fill the figure with empty panels)
    having = {o: [i for i, d in enumerate(result.designs) if np.any(d.obs == o)]
              for o in range(len(result.observables))}
    chosen = {o: idx[:_MAX_PANELS] for o, idx in having.items()}
    union = sorted(set().union(*chosen.values()))
    curves = dict(zip(union, subject_curves(result, subjects=union), strict=True))
    files = []
    units = _units(result)
    names = list(dict.fromkeys(c for sub in curves.values() for (_, c) in sub))
    colour = {c: f"C{j}" for j, c in enumerate(names)}
    shifted = bool(np.any(result.time_offsets != 0)) or any(
        p.kind == "offset" and p.estimated for p in result.parameters)
    for o, obs in enumerate(result.observables):
        if not chosen[o]:
            continue
        designs = [result.designs[i] for i in chosen[o]]
        k = len(designs)
        ncols = min(4, k)
        nrows = int(np.ceil(k / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows),
                                 squeeze=False, sharex=False)
        for panel, (i, d) in enumerate(zip(chosen[o], designs, strict=True)):
            ax = axes[panel // ncols][panel % ncols]
            conds = np.full(d.n, "") if d.condition is None else np.asarray(d.condition, str)
            for (oo, c), (t, f) in curves[i].items():
                if oo != o:
                    continue
                ax.plot(t, f, color=colour[c], lw=1.4)
                sel = (d.obs == o) & (conds == c)
                seen = sel & (d.cens == 0)
                dot = "k" if len(names) == 1 else colour[c]
                if d.sd is not None:
                    # measured SDs (the "measured" error model): +- 1 SD bars
                    ax.errorbar(d.time[seen], d.value[seen], yerr=d.sd[seen], fmt="o", ms=3.5,
                                color=dot, elinewidth=0.8, capsize=1.5)
                else:
                    ax.plot(d.time[seen], d.value[seen], "o", ms=3.5, color=dot)
                cen = sel & (d.cens != 0)
                if cen.any():
                    ax.plot(d.time[cen], d.limit[cen], "v", mfc="none", color="C3", ms=5)
            if _base(result.error_models[o]) == "lognormal":
                _log_axis(ax, "y")
            ax.set_title(d.id, fontsize=8)
            ax.tick_params(labelsize=7)
        for j in range(k, nrows * ncols):
            axes[j // ncols][j % ncols].axis("off")
        if len(names) > 1:
            # in the first panel: a figure legend overlaps the last panel and the title
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], color=colour[c], lw=1.4, marker="o", ms=3.5,
                              label=c or "(none)") for c in names]
            axes[0][0].legend(handles=handles, fontsize=7, title="condition",
                              title_fontsize=7)
        fig.supxlabel(f"data time ({units['']}; model time = data time + offset)" if shifted
                      else f"time ({units['']})" if units[""] else "time", fontsize=9)
        fig.supylabel(_label(obs, units.get(obs)), fontsize=9)
        # say what drives the curves, and explain only the markers that are drawn
        given = [w for w, has in (("doses", any(d.doses for d in designs)),
                                  ("covariates", any(d.covariates for d in designs))) if has]
        notes = [f"each subject's own {' and '.join(given)}"] if given else []
        if any(d.sd is not None for d in designs):
            notes.append("bars: measured SD")
        if any(((d.obs == o) & (d.cens != 0)).any() for d in designs):
            notes.append("open triangles: censored at the limit")
        first = f"first {k} subjects" if k < len(having[o]) else f"{k} subjects"
        if len(having[o]) < len(result.designs):
            first += f" with {obs} values ({len(having[o])} of {len(result.designs)} have some)"
        fig.suptitle(f"{result.name}: individual fits, {obs} ({'; '.join([first, *notes])})",
                     fontsize=10)
        files.append(_save(fig, folder / f"fits_{obs}.png", plt))
    return files


def _pooled_arrays(result):
    res = result.residuals().residuals
    obs = np.concatenate([d.obs for d in result.designs])
    y = np.concatenate([d.value for d in result.designs])
    cens = np.concatenate([d.cens for d in result.designs])
    t = np.concatenate([d.time for d in result.designs])
    f = np.concatenate(result.predictions)
    r = np.concatenate(res)
    return obs, y, cens, t, f, r


def _observed_vs_predicted(result, folder, plt):
    if not result.designs:
        return None
    obs, y, cens, t, f, r = _pooled_arrays(result)
    K = len(result.observables)
    units = _units(result)
    fig, axes = plt.subplots(1, K, figsize=(4.2 * K, 4), squeeze=False)
    for o, name in enumerate(result.observables):
        ax = axes[0][o]
        s = (obs == o) & (cens == 0)
        c = (obs == o) & (cens != 0)
        ax.plot(f[s], y[s], "o", ms=3, alpha=0.5)
        ax.plot(f[c], y[c], "v", ms=4, mfc="none", color="C3")
        both = np.concatenate([f[obs == o], y[obs == o]])
        both = both[np.isfinite(both)]
        if both.size:
            lo, hi = both.min(), both.max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        if _base(result.error_models[o]) == "lognormal":
            _log_axis(ax, "x")
            _log_axis(ax, "y")
        ax.set_xlabel(_label("predicted", units.get(name)))
        ax.set_ylabel(_label("observed", units.get(name)))
        ax.set_title(name)
    fig.suptitle(f"{result.name}: observed vs predicted", fontsize=10)
    return _save(fig, folder / "observed_vs_predicted.png", plt)


def _save(fig, path, plt):
    """Lay out, write (100 dpi) and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _residuals(result, folder, plt):
    if not result.designs:
        return None
    obs, y, cens, t, f, r = _pooled_arrays(result)
    K = len(result.observables)
    units = _units(result)
    fig, axes = plt.subplots(K, 2, figsize=(9, 2.8 * K), squeeze=False)
    for o, name in enumerate(result.observables):
        s = (obs == o) & np.isfinite(r)
        for c, (xv, label) in enumerate([(t, _label("data time", units[""])),
                                         (f, _label("prediction", units.get(name)))]):
            ax = axes[o][c]
            ax.plot(xv[s], r[s], "o", ms=3, alpha=0.5)
            ax.axhline(0, color="k", lw=1)
            for lev in (-2, 2):
                ax.axhline(lev, color="k", lw=0.6, ls=":")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{name} residual (SDs)")
            if c == 1 and _base(result.error_models[o]) == "lognormal":
                _log_axis(ax, "x")
    fig.suptitle(f"{result.name}: normalised residuals (observed values)", fontsize=10)
    return _save(fig, folder / "residuals.png", plt)


def _parameters(result, folder, plt):
    from matplotlib.ticker import MaxNLocator

    est = [(q, p) for q, p in enumerate(result.parameters) if p.estimated]
    pop = getattr(result, "population", None)
    if pop is not None:
        # a population fit: parameters equal in every subject (no random effect and no
        # covariate: a residual SD, a held typical value) have no spread to show
        def varies(v):
            v = v[np.isfinite(v)]
            return v.size > 1 and np.ptp(v) > 1e-12 * np.max(np.abs(v))

        est = [(q, p) for q, p in est if varies(result.theta[:, q])]
    if not est:
        return None
    n = len(est)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    units = _units(result)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    for k, (q, p) in enumerate(est):
        ax = axes[k // ncols][k % ncols]
        v = result.theta[:, q]
        label = _label(p.name, units.get(p.name))
        if p.estimate == "shared":
            ci = result.intervals["covariance"][0, q]
            ax.errorbar([0], [v[0]], yerr=[[v[0] - ci[0]], [ci[1] - v[0]]], fmt="o")
            ax.set_xticks([])
            ax.set_ylabel(label)
            ax.set_title(f"{p.name} (shared)", fontsize=9)
        else:
            vals = v[np.isfinite(v)]
            bins = np.geomspace(vals.min(), vals.max(), 15) if p.scale in ("log", "log10") and \
                vals.size and vals.min() > 0 and vals.max() > vals.min() else 15
            ax.hist(vals, bins=bins, color="C0", alpha=0.8)
            typical = None if pop is None else pop.fixed_effects.get(p.name)
            ax.axvline(p.value if typical is None else typical, color="k", ls="--", lw=1)
            if p.scale in ("log", "log10"):
                _log_axis(ax, "x")
            ax.set_xlabel(label)
            ax.set_ylabel("subjects")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))    # counts: no 0.5 subject
            ax.set_title(p.name, fontsize=9)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    fig.suptitle("Estimates across subjects " + (
        "(dashed: start value)" if pop is None else
        "(empirical Bayes estimates; dashed: typical value at the reference covariates)"),
        fontsize=10)
    return _save(fig, folder / "parameters.png", plt)


def _profiles(result, folder, plt):
    from scipy import stats

    prof = result.profiles
    cols = np.asarray(prof["cols"], dtype=int)
    values, m2ll = np.asarray(prof["values"]), np.asarray(prof["m2ll"])
    n_sub = min(values.shape[0], 4)
    D = cols.size
    fig, axes = plt.subplots(n_sub, D, figsize=(2.8 * D, 2.4 * n_sub), squeeze=False)
    thr = stats.chi2.ppf(result.confidence, 1)
    pooled = bool(prof.get("pooled", False))
    units = _units(result)
    for i in range(n_sub):
        best = result.objective if pooled else result.subject_objective[i]
        for j in range(D):
            ax = axes[i][j]
            xv, yv = values[i, j], m2ll[i, j] - best
            est = result.theta[i, cols[j]]
            xs = np.concatenate([xv, [est]])
            ys = np.concatenate([yv, [0.0]])
            o = np.argsort(xs)
            ax.plot(xs[o], ys[o], "o-", ms=3)
            ax.axhline(thr, color="C3", ls="--", lw=1)
            if result.parameters[cols[j]].scale in ("log", "log10"):
                _log_axis(ax, "x")
            name = result.parameter_names[cols[j]]
            ax.set_xlabel(_label(name, units.get(name)), fontsize=8)
            if j == 0:
                who = "pooled" if pooled else result.subject_ids[i]
                ax.set_ylabel(f"{who}: delta(-2 log L)", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"{result.name}: profile likelihood, delta(-2 log L) (dashed: "
                 f"{100 * result.confidence:g}% threshold)", fontsize=10)
    return _save(fig, folder / "profiles.png", plt)


def write_report(result, path: Path, figures, population=None) -> None:
    """Write report.md: what was fitted, results, warnings, provenance, figures.

    ``population``: a population fit's diagnostics (PopulationOutputs), or the message of why
    they could not be computed.
    """
    prov = result.provenance
    m = result.n_subjects
    lines = [f"# Fit `{result.name}`", ""]
    source = (f"`{prov['data_path']}`" if prov.get("data_path") else "given in memory")
    lines += [f"- model: `{result.model.name}` ({prov.get('model_ref', '')})",
              f"- data: {source} (SHA-256 of {prov.get('data_sha256_of', 'the data file')}: "
              f"`{prov.get('data_sha256')}`), {m} subjects, {int(result.n_obs.sum())} "
              "observations",
              f"- estimator: {result.kind} ({_method(result)})",
              f"- {prov.get('numbers_from', 'path behind the numbers: not recorded')}",
              "- error models: " + ", ".join(f"{o} {describe_kind(e)}" for o, e in
                                               zip(result.observables, result.error_models,
                                                   strict=True))
              + ("" if all(_base(e) == e for e in result.error_models) else
                 " (a Student-t residual's sigma is the t scale, not its SD)"),
              f"- starts per subject: {prov.get('options', {}).get('starts')}, seed "
              f"{prov.get('seed')}",
              f"- config: `{prov.get('config_path')}`; run on {prov.get('date')} with "
              f"{prov.get('executor')} ({prov.get('workers')} worker(s))"]
    lines += [f"- inputs: {text}" for text in [_inputs_line(result)] if text] + [""]
    lines += ["## Objective", "",
              "| -2 log L | AIC | BIC | estimated quantities | converged |",
              "|---:|---:|---:|---:|---:|",
              f"| {result.objective:.3f} | {result.aic:.3f} | {result.bic:.3f} | "
              f"{result.n_estimated} | {int(result.converged.sum())}/{m} |", ""]
    n_finite = int(np.isfinite(np.asarray(result.subject_objective, float)).sum())
    if n_finite < m:
        lines += [f"-2 log L, AIC and BIC are over the {n_finite} subjects with a finite "
                  f"objective; {m - n_finite} subject(s) whose simulation failed are left out.",
                  ""]
    failed = result.failed_subjects
    if failed:
        reasons = dict(zip(result.subject_ids, result.failures, strict=True))
        lines += ["## Failed subjects", "",
                  f"**{len(failed)} of {m} subjects failed** (the fit is written because "
                  f"no more than `[fit] max_failed_share` = "
                  f"{prov.get('options', {}).get('max_failed_share', 0.5)} of them did); "
                  "their rows in `subjects.csv` are not estimates:", ""]
        lines += [f"- `{sid}`: {reasons[sid]}" for sid in failed[:20]]
        if len(failed) > 20:
            lines.append(f"- ... and {len(failed) - 20} more (see `subjects.csv`, column "
                         "`message`)")
        lines.append("")
    methods = list(result.intervals)
    if result.population is not None:            # population estimators (focei)
        lines += _population_lines(result, population)
    else:
        lines += ["## Estimates", ""]
        if result.individual.uncertainty.joint or m == 1:
            lines += ["| parameter | role | estimate | SE | " + " | ".join(
                f"{100 * result.confidence:g}% {k}" for k in methods) + " |",
                "|---|---|---:|---:|" + "---:|" * len(methods)]
            for q, p in enumerate(result.parameters):
                if not p.estimated:
                    continue
                rows = range(m) if p.estimate == "subject" and m <= 10 else [0]
                for i in rows:
                    label = (p.name if p.estimate == "shared"
                             else f"{p.name} [{result.subject_ids[i]}]")
                    cis = " | ".join(f"{result.intervals[k][i, q, 0]:.4g} - "
                                     f"{result.intervals[k][i, q, 1]:.4g}" for k in methods)
                    lines.append(f"| {label} | {p.estimate} | {result.theta[i, q]:.5g} | "
                                 f"{result.se[i, q]:.3g} | {cis} |")
        else:
            lines += ["Per-subject estimates are in `subjects.csv`; across subjects:", "",
                      "| parameter | median | IQR | median RSE % | median CI width (" +
                      ", ".join(methods) + ") |", "|---|---:|---:|---:|---:|"]
            for row, (q, p) in zip(result.parameter_table(),
                                   [(q, p) for q, p in enumerate(result.parameters)
                                    if p.estimated], strict=True):
                widths = ", ".join(
                    f"{_median(result.intervals[k][:, q, 1] - result.intervals[k][:, q, 0]):.3g}"
                    for k in methods)
                if row["role"] == "shared":
                    lines.append(f"| {p.name} (shared) | {row['estimate']:.5g} | | | {widths} |")
                else:
                    lines.append(f"| {p.name} | {row['median']:.5g} | {row['q1']:.4g} - "
                                 f"{row['q3']:.4g} | {row['median_rse_percent']:.3g} | {widths} |")
        lines.append("")
    if result.n_estimated:
        lines += ["Intervals: " + "; ".join(f"{k}: {result.interval_methods.get(k, k)}"
                                            for k in methods) + ".", ""]
    fixed = [p for p in result.parameters if not p.estimated and p.kind != "model"]
    if fixed:
        lines += ["Fixed: " + ", ".join(f"{p.name} = {p.value:g}" for p in fixed), ""]
    off = next(p for p in result.parameters if p.kind == "offset")
    if off.covariate:
        lines += [f"Model time = data time + offset, with offset = time_offset + ({off.factor:g}) "
                  f"x {off.covariate} per subject (the table shows time_offset; the offsets are "
                  "column `time_offset_model` of subjects.csv).", ""]
    lines += ["## Warnings", ""]
    lines += [f"- {w}" for w in result.warnings] or ["- none"]
    work = result.individual.diagnostics.work
    lines += ["", "## Work and time", "",
              f"- {work.simulations} batched simulations, {work.subject_solves} subject solves, "
              f"{work.failed_solves} failed (penalised, not raised)",
              "- seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()), ""]
    bz = result.before_zero
    n_solves = work.solves_before_zero
    if (bz is not None and np.any(bz > 0)) or n_solves:
        who = [s for s, n in zip(result.subject_ids, bz if bz is not None else [], strict=True)
               if n > 0]
        lines += ["## Model times before 0", "",
                  "Model time = data time + offset; a data time whose model time is before "
                  "the model's t = 0 is evaluated at t = 0, where the objective is flat in the "
                  "time offset.", "",
                  f"- during the fit: in {n_solves} of "
                  f"{work.subject_solves} subject solves",
                  f"- at the estimates: {int(np.sum(bz)) if bz is not None else 0} data "
                  f"value(s) of {len(who)} subject(s)"
                  + (": " + ", ".join(f"`{s}`" for s in who[:20])
                     + (" ..." if len(who) > 20 else "") if who else "")
                  + " (column `n_before_model_t0` of `subjects.csv`)", ""]
    if prov.get("notes"):
        lines += ["## Notes from reading the data", ""]
        lines += [f"- {n}" for n in prov["notes"][:30]]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            rel = f"figures/{Path(f).name}"
            lines += [f"![{Path(f).stem}]({rel})", ""]
    lines += ["## Reproduce", "", f"    progression fit {prov.get('config_path')}", "",
              "Package versions: " + ", ".join(f"{k} {v}" for k, v in
                                                prov.get("versions", {}).items()), ""]
    Path(path).write_text("\n".join(lines))


def _inputs_line(result) -> str:
    """What besides the observations drove the model (saved with the fit), in words."""
    designs = result.designs
    parts = []
    n = sum(1 for d in designs if d.doses)
    if n:
        k = sum(len(d.doses) for d in designs)
        parts.append(f"{k} dose record{'s' if k != 1 else ''} of {n} subject"
                     f"{'s' if n != 1 else ''} (`doses.csv`)")
    names = sorted({c[0] for d in designs for c in d.covariates})
    if names:
        varying = sorted({c[0] for d in designs for c in d.covariates if len(c[1]) > 1})
        parts.append(f"covariates {', '.join(names)}"
                     + (f" ({', '.join(varying)} changing over time)" if varying else "")
                     + " (`covariates.csv`)")
    conds = getattr(result, "conditions", ()) or ()
    if conds:
        parts.append(f"experimental conditions {', '.join(c.name for c in conds)} (column "
                     "`condition` of `data.csv`)")
    if any(d.sd is not None for d in designs):
        parts.append("measured SDs (column `sd` of `data.csv`)")
    return "; ".join(parts)


def _median(values) -> float:
    """Median of the finite values; NaN (without a RuntimeWarning) when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _method(result) -> str:
    """How the estimates were computed (the estimator's own words; for fits saved before it
    recorded them, from the options and solver settings kept in the fit)."""
    method = result.individual.diagnostics.method
    if method:
        return method
    options = result.provenance.get("options", {})
    joint = result.individual.uncertainty.joint
    if joint or options.get("optimizer", "lmfit") == "lmfit":
        how = "lmfit least_squares"
    else:
        how = "Levenberg-Marquardt vectorised over subjects"
    sens = result.solver.get("sensitivities", "forward")
    if result.solver.get("outputs", "grid") == "exact" or sens == "forward":
        jac = "Jacobian from forward sensitivities"
    else:
        jac = "Jacobian from sensitivities on the output grid"
    return f"{how}, {jac}"
