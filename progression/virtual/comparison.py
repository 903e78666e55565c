"""The result of a scenario comparison: endpoint tables, summaries, Markdown and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._repr import brief, names
from ..plots.scenarios import PLOT_BAND
from ..stats.survival import exponential_hazard_ratio, kaplan_meier, km_median, rmst
from ._tables import _DAGGER, _ci, _excludes, _fmt, _quiet, _write_csv
from .endpoints import Endpoints

__all__ = ["Comparison"]


@dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes
    ----------
    model : str
    scenarios : dict of str to list of Intervention
    reference : str
        The no-treatment scenario differences are taken against.
    subject_ids : list of str
    times : ndarray
        Output times, months after the start.
    endpoints : Endpoints
    subject_endpoints : dict
        scenario -> column -> ``(m,)`` per-subject values (point estimates).
    draw_endpoints : dict
        scenario -> column -> ``(n_draws, m)`` (empty without parameter uncertainty).
    trajectories : dict
        scenario -> observable -> ``(m, T)`` point-estimate trajectories (NaN after death).
    draw_means : dict
        scenario -> observable -> ``(n_draws, T)`` population mean per draw.
    baseline : dict
        observable -> ``(m,)`` untreated value at the start.
    valid : ndarray of bool
        Subjects alive at their start (others are excluded).
    draw_handling : list of str
        Per subject: how its parameter draws were made when its covariance was singular or
        regularised ("" otherwise, or without draws).
    draw_notes : list of str
        How the parameter draws were made (singular covariances, redrawn draws).
    summary : list of dict
        One row per scenario and endpoint (see :meth:`summary_rows`).
    units : dict
    notes : list of str
    plot_series : dict
        What the trajectory figure draws: scenario -> ``{"times": (T_s,), observable:
        (3, T_s) band low, median, band high among included subjects, and with parameter
        draws observable + "@draws": (2, T_s) 95% interval of the population mean}``, on
        ``times`` plus every switch time of the scenario and a time just before each (so
        pulsed treatments show their on/off corners). Empty: the figure uses ``times``.
    """

    model: str
    scenarios: dict
    reference: str
    subject_ids: list
    times: np.ndarray
    endpoints: Endpoints
    subject_endpoints: dict
    draw_endpoints: dict
    trajectories: dict
    draw_means: dict
    baseline: dict
    valid: np.ndarray
    start: float = 0.0
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    draw_handling: list = field(default_factory=list)
    draw_notes: list = field(default_factory=list)
    plot_series: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        t = np.asarray(self.times, float)
        span = f"{t.size} times to {t[-1]:g}" if t.size else "no times"
        return brief(self, repr(self.model), f"scenarios {names(self.scenarios)}",
                     f"reference {self.reference!r}", f"{len(self.subject_ids)} subjects",
                     span, f"{self.n_draws} parameter draws")

    @property
    def n_draws(self) -> int:
        for cols in self.draw_endpoints.values():
            for v in cols.values():
                return v.shape[0]
        return 0

    def endpoint(self, scenario: str, name: str) -> np.ndarray:
        """Per-subject values of one endpoint in one scenario, ``(m,)``."""
        try:
            return self.subject_endpoints[scenario][name]
        except KeyError:
            raise KeyError(f"no endpoint {name!r} in scenario {scenario!r}; endpoints: "
                           f"{', '.join(self.endpoints.columns())}") from None

    def row(self, scenario: str, name: str) -> dict:
        """The summary row of one scenario and endpoint."""
        for r in self.summary:
            if r["scenario"] == scenario and r["endpoint"] == name:
                return r
        raise KeyError(f"no summary row for {scenario!r}, {name!r}")

    # ----------------------------------------------------------------- tables and files

    def subject_rows(self) -> list[dict]:
        rows = []
        cols = self.endpoints.columns()
        for scen, values in self.subject_endpoints.items():
            for i, sid in enumerate(self.subject_ids):
                row = {"scenario": scen, "subject": sid, "included": int(self.valid[i])}
                for name in (self.endpoints.function, *self.endpoints.markers):
                    row[f"baseline_{name}"] = self.baseline[name][i]
                row.update({c: values[c][i] for c in cols})
                if self.n_draws:
                    row["parameter_draws"] = (self.draw_handling[i] if self.draw_handling
                                              else "") or "covariance as estimated"
                rows.append(row)
        return rows

    def trajectory_rows(self) -> list[dict]:
        rows = []
        for scen, obs in self.trajectories.items():
            for name, Y in obs.items():
                with np.errstate(all="ignore"), _quiet():
                    q = np.nanpercentile(Y[self.valid], [5, 25, 50, 75, 95], axis=0)
                    alive = np.isfinite(Y[self.valid]).sum(0)
                dm = self.draw_means.get(scen, {}).get(name)
                for j, t in enumerate(self.times):
                    row = {"scenario": scen, "observable": name, "time": t,
                           "n_alive": int(alive[j]), "p05": q[0, j], "p25": q[1, j],
                           "median": q[2, j], "p75": q[3, j], "p95": q[4, j]}
                    if dm is not None:
                        with _quiet():
                            lo, mid, hi = np.nanpercentile(dm[:, j], [2.5, 50, 97.5])
                        row.update(mean_draw_median=mid, mean_ci_low=lo, mean_ci_high=hi)
                    rows.append(row)
        return rows

    def survival_rows(self) -> list[dict]:
        rows = []
        for time_col, obs_col in self.endpoints.time_to_event_pairs():
            for scen, values in self.subject_endpoints.items():
                t, s = kaplan_meier(values[time_col][self.valid],
                                    values[obs_col][self.valid] > 0)
                rows += [{"endpoint": time_col, "scenario": scen, "time": a, "survival": b}
                         for a, b in zip(t, s, strict=True)]
        return rows

    def to_markdown(self) -> str:
        """Summary tables in Markdown (key endpoints, then time-to-event endpoints)."""
        ep = self.endpoints
        lines = [f"# Scenario comparison: {self.model}", ""]
        n_ok = int(self.valid.sum())
        lines.append(f"{n_ok} subjects (of {len(self.valid)}) alive at the start "
                     f"(data time {self.start:g} months); times are months after the start. "
                     f"Reference scenario: **{self.reference}**. Values: mean (5th-95th "
                     f"percentile between subjects)"
                     + (f"; [95% interval of the population mean over {self.n_draws} "
                        f"parameter draws]" if self.n_draws else "") + ".")
        lines.append("")
        key = [c for c in ep.columns() if not c.startswith("time_to_")
               and not c.endswith(("_reached", "_observed"))]
        for name in key:
            lines.append(f"### {name}")
            lines.append("")
            lines.append("| scenario | mean (5-95%) | median | difference vs reference |")
            lines.append("|---|---:|---:|---:|")
            for scen in self.subject_endpoints:
                r = self.row(scen, name)
                cell = f"{_fmt(r['mean'])} ({_fmt(r['p05'])} to {_fmt(r['p95'])})"
                if "mean_ci_low" in r:
                    cell += f" [{_fmt(r['mean_ci_low'])}, {_fmt(r['mean_ci_high'])}]"
                    cell += _DAGGER if r.get("mean_ci_excludes_point") else ""
                diff = _fmt(r["diff_mean"])
                if "diff_ci_low" in r:
                    diff += f" [{_fmt(r['diff_ci_low'])}, {_fmt(r['diff_ci_high'])}]"
                    diff += _DAGGER if r.get("diff_ci_excludes_point") else ""
                if "relative_slowing_pct" in r:
                    diff += f"; slowing {_fmt(r['relative_slowing_pct'])}%"
                lines.append(f"| {scen} | {cell} | {_fmt(r['median'])} | {diff} |")
            lines.append("")
        for time_col, _ in ep.time_to_event_pairs():
            lines.append(f"### {time_col} (Kaplan-Meier, censored at {self.times[-1]:g} "
                         f"months)")
            lines.append("")
            lines.append("| scenario | events | KM median | RMST | HR vs reference "
                         "(exponential) |")
            lines.append("|---|---:|---:|---:|---:|")
            for scen in self.subject_endpoints:
                r = self.row(scen, time_col)
                rm = _fmt(r["rmst"])
                if "rmst_ci_low" in r:
                    rm += f" [{_fmt(r['rmst_ci_low'])}, {_fmt(r['rmst_ci_high'])}]"
                    rm += _DAGGER if r.get("rmst_ci_excludes_point") else ""
                lines.append(f"| {scen} | {r['events']}/{r['n']} | {_fmt(r['km_median'])} | "
                             f"{rm} | {_fmt(r['hr_vs_reference'])} |")
            lines.append("")
        if self.n_draws:
            lines += self._draws_markdown()
        lines.append("## Scenarios")
        lines.append("")
        for scen, ivs in self.scenarios.items():
            lines.append(f"* **{scen}**: " + ("; ".join(iv.describe() for iv in ivs)
                                              if ivs else "no intervention"))
        if self.notes:
            lines += ["", "## Notes", ""] + [f"* {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _draws_markdown(self) -> list[str]:
        """The "Parameter draws" section: how draws were made, which subjects' covariances
        were singular, and why an interval may not contain its point value."""
        lines = ["## Parameter draws", "",
                 f"Intervals in brackets are the 2.5th-97.5th percentiles, over {self.n_draws} "
                 "draws of every subject's parameters (and time offset) from the fit's "
                 "uncertainty, of the population mean; the value before them is the mean over "
                 "subjects at their point estimates. Draws are made on the estimation scale "
                 "(log, logit) from the covariance of the estimates and stay inside the "
                 "bounds without clipping.", ""]
        lines += [f"* {n}" for n in self.draw_notes]
        flagged = [i for i, h in enumerate(self.draw_handling) if h]
        if flagged:
            lines += ["", f"Subjects whose covariance was singular or regularised "
                          f"({len(flagged)} of {len(self.subject_ids)}; column "
                          "`parameter_draws` of `endpoints_subjects.csv`):", "",
                      "| subject | how its draws were made |", "|---|---|"]
            lines += [f"| {self.subject_ids[i]} | {self.draw_handling[i]} |"
                      for i in flagged[:20]]
            if len(flagged) > 20:
                lines.append(f"| ... | {len(flagged) - 20} more in endpoints_subjects.csv |")
        n_out = sum(1 for r in self.summary for k in r if k.endswith("_excludes_point")
                    and r[k])
        if n_out:
            lines += ["", f"{_DAGGER.strip()} {n_out} interval(s) do not contain their point "
                          "value. The point value is the endpoint at each subject's estimate; "
                          "the interval is over the mean of the endpoint across draws. Where "
                          "an endpoint is nonlinear in the parameters and the estimates are "
                          "uncertain (wide, or near a bound, where draws are truncated to the "
                          "inside), the mean of the endpoint over draws differs from "
                          "the endpoint at the estimate (the mean of f(theta) is not f(mean "
                          "theta)), and averaging over many subjects narrows the interval "
                          "around that shifted value. Read such an interval as the spread of "
                          "the population mean under parameter uncertainty, not as an "
                          "interval around the point value."]
        return lines + [""]

    def write(self, folder, *, figures: bool = True, overwrite: bool = False,
              inputs=()) -> Path:
        """Write CSV and Markdown tables and PNG figures to ``folder`` (atomically).

        Files: ``endpoints_subjects.csv``, ``endpoints_summary.csv``, ``trajectories.csv``,
        ``survival.csv``, ``summary.md``, and ``trajectories.png``, ``endpoints.png``,
        ``survival.png``.

        An existing folder is replaced only with ``overwrite=True`` and only if progression
        wrote it (``.progression`` marker); a folder that is or contains one of ``inputs``
        (the config, a fit folder read) is refused with an
        :class:`~progression.errors.OutputError`.
        """
        from .._io import atomic_directory

        folder = Path(folder)
        with atomic_directory(folder, overwrite=overwrite, inputs=inputs,
                              what="comparison folder") as tmp:
            _write_csv(tmp / "endpoints_subjects.csv", self.subject_rows())
            _write_csv(tmp / "endpoints_summary.csv", self.summary)
            _write_csv(tmp / "trajectories.csv", self.trajectory_rows())
            _write_csv(tmp / "survival.csv", self.survival_rows())
            (tmp / "summary.md").write_text(self.to_markdown())
            if figures:
                from ..plots import _pyplot

                plt = _pyplot()
                for name, fig in (("trajectories.png", self.plot_trajectories()),
                                  ("endpoints.png", self.plot_endpoints()),
                                  ("survival.png", self.plot_survival())):
                    fig.savefig(tmp / name, dpi=110)
                    plt.close(fig)
        return folder

    # ----------------------------------------------------------------------- figures
    # Drawn by progression.plots.scenarios (one plotting package); kept as methods so that
    # ``comparison.plot_trajectories()`` works as before.

    def plot_trajectories(self, names=None, *, band=PLOT_BAND):
        """Median trajectory per scenario with a between-subject band and, with parameter
        draws, the 95% interval of the population mean (dashed); see
        :func:`progression.plots.scenarios.plot_trajectories`."""
        from ..plots.scenarios import plot_trajectories

        return plot_trajectories(self, names, band=band)

    def plot_endpoints(self, names=None):
        """Box plots of per-subject endpoints per scenario; see
        :func:`progression.plots.scenarios.plot_endpoints`."""
        from ..plots.scenarios import plot_endpoints

        return plot_endpoints(self, names)

    def plot_survival(self):
        """Kaplan-Meier curves per scenario for each time-to-event endpoint; see
        :func:`progression.plots.scenarios.plot_survival`."""
        from ..plots.scenarios import plot_survival

        return plot_survival(self)


def _summaries(comp: Comparison) -> list[dict]:
    ep = comp.endpoints
    ref = comp.reference
    valid = comp.valid
    rows = []
    tte = dict(ep.time_to_event_pairs())
    slope_col = f"{ep.function}_slope_{ep.slope_window[0]:g}-{ep.slope_window[1]:g}m"
    horizon = float(comp.times[-1])
    for scen, values in comp.subject_endpoints.items():
        draws = comp.draw_endpoints.get(scen, {})
        ref_draws = comp.draw_endpoints.get(ref, {})
        for name in ep.columns():
            if name.endswith(("_reached", "_observed")):
                continue
            v = values[name][valid]
            r = {"scenario": scen, "endpoint": name}
            if name in tte:
                obs = values[tte[name]][valid] > 0
                ok = np.isfinite(v)
                r.update(n=int(ok.sum()), events=int(obs[ok].sum()),
                         km_median=km_median(v[ok], obs[ok]), rmst=rmst(v[ok], obs[ok], horizon))
                rv = comp.subject_endpoints[ref][name][valid]
                ro = comp.subject_endpoints[ref][tte[name]][valid] > 0
                both = np.r_[v[ok], rv[np.isfinite(rv)]]
                both_obs = np.r_[obs[ok], ro[np.isfinite(rv)]]
                grp = np.r_[np.ones(ok.sum(), bool), np.zeros(np.isfinite(rv).sum(), bool)]
                r["hr_vs_reference"] = (exponential_hazard_ratio(both, both_obs, grp)
                                        if scen != ref else 1.0)
                if draws:
                    dv, do = draws[name], draws[tte[name]]
                    per = [rmst(dv[d][np.isfinite(dv[d])], do[d][np.isfinite(dv[d])] > 0,
                                horizon) for d in range(dv.shape[0])]
                    r["rmst_ci_low"], r["rmst_ci_high"] = _ci(per)
                    r["rmst_ci_excludes_point"] = _excludes(r["rmst"], r["rmst_ci_low"],
                                                            r["rmst_ci_high"])
            else:
                with _quiet():
                    r.update(n=int(np.isfinite(v).sum()), mean=np.nanmean(v), sd=np.nanstd(v),
                             median=np.nanmedian(v), p05=np.nanpercentile(v, 5),
                             p95=np.nanpercentile(v, 95))
                rv = comp.subject_endpoints[ref][name][valid]
                with _quiet():
                    r["diff_mean"] = np.nanmean(v - rv)
                if name == slope_col and scen != ref:
                    with _quiet():
                        r["relative_slowing_pct"] = 100.0 * (1.0 - np.nanmean(v) / np.nanmean(rv))
                if draws:
                    with _quiet():
                        means = np.nanmean(draws[name], axis=1)
                        diffs = np.nanmean(draws[name] - ref_draws[name], axis=1)
                    r["mean_ci_low"], r["mean_ci_high"] = _ci(means)
                    r["diff_ci_low"], r["diff_ci_high"] = _ci(diffs)
                    r["mean_ci_excludes_point"] = _excludes(r["mean"], r["mean_ci_low"],
                                                            r["mean_ci_high"])
                    r["diff_ci_excludes_point"] = _excludes(r["diff_mean"], r["diff_ci_low"],
                                                            r["diff_ci_high"])
            rows.append(r)
    return rows
