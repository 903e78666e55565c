"""Describe a cohort against the published ALS cohort statistics of als-biology.md §6.

:func:`describe_cohort` computes the statistics a realistic ALS cohort should reproduce (decline
rate and its spread, pre-baseline slope ΔFS, survival from onset, attrition, NfL, CRP, Tregs,
demographics) from any :class:`~progression.data.Cohort` (synthetic, PRO-ACT, clinic data) and
puts each next to its published target, the range accepted, and the source.
:func:`format_description` prints the rows as a text or Markdown table.

What the statistics need from the cohort: the ``ALSFRS_R`` observable (times in months);
``onset_time`` (months relative to the time origin, <= 0) for ΔFS and survival from onset;
``diagnosis_time`` to tell a clinic cohort (enrolment at diagnosis) from a trial;
``study_end_time`` to tell dropout from administrative censoring; ``NfL``, ``CRP``,
``Treg_pct``, ``sex``, ``site_of_onset``, ``age``, ``diagnostic_delay`` for the rest. A
statistic whose inputs are missing is reported with value NaN and ``ok`` None.

Definitions
-----------
* **Decline**: per-patient least-squares slope of ALSFRS-R over the visits in the first 24
  months of follow-up, patients with >= 3 visits; reported as points lost per month.
* **ΔFS** = (48 - first ALSFRS-R) / months from onset to that visit.
* **Survival from onset**: Kaplan-Meier from onset over the patients in the cohort (diagnosed,
  enrolled), without delayed entry, the estimand registries and trial databases publish
  (:mod:`progression.als.onset_survival`); events are death, tracheostomy and permanent
  ventilation; everyone else is censored at the event table's censoring time or at the last
  observation. The Kaplan-Meier with delayed entry at enrolment (median, 10 years) is reported
  beside it, unchecked.
* **Attrition** at 6/12/18 months: Kaplan-Meier probability of having left the study (death or
  dropout) by then; reaching ``study_end_time`` is censoring.
* **NfL, CRP, Treg %**: each patient's first measurement; correlations are Spearman's.

Clinic and trial targets differ: population figures (mean decline 0.89, ΔFS at diagnosis,
near-flat share, 12-month mortality after diagnosis, visits per patient, diagnostic delay) are
checked in the clinic setting only, because trial enrolment criteria select patients (a
disease-duration limit removes slow progressors and long diagnostic delays); trials are checked
against trial figures (decline 1.0 with SD 0.65, attrition 19/36/56%, survival from onset ~40
months). Survival medians not reached within follow-up are reported as n/a.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import NamedTuple

import numpy as np

from progression.errors import ConfigError, DataError
from progression.stats.summary import spearman
from progression.stats.survival import kaplan_meier

from ..data.cohort import Cohort
from .onset_survival import onset_survival

__all__ = ["Row", "cohort_statistics", "cox_hazard_ratio", "describe_cohort",
           "format_description", "infer_setting", "kaplan_meier", "km_at", "km_quantile",
           "patient_slopes"]

_DEATHS = ("death", "tracheostomy", "ventilation")


class Row(NamedTuple):
    """One statistic: its value, the published target, the accepted range and the source.

    ``ok`` is True/False when the value was computed and a range applies, else None.
    """

    statistic: str
    value: float
    target: str
    range: tuple[float, float] | None
    source: str
    ok: bool | None


# ================================================================================ targets

#: The published statistics, their accepted ranges and sources (package data).
TARGETS_FILE = "targets.toml"


@cache
def _targets() -> dict:
    """The tables of ``targets.toml``."""
    text = resources.files(__package__).joinpath(TARGETS_FILE).read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"progression/als/{TARGETS_FILE}: not valid TOML: {exc}") from None


def _target(targets: dict, key: str, setting: str) -> dict:
    """``statistic``, ``target``, ``range`` (tuple or None) and ``source`` of one statistic
    in ``setting`` ("clinic" or "trial"): the setting's sub-table over the shared keys."""
    table = targets[key]
    spec = {k: v for k, v in table.items() if k not in ("clinic", "trial")}
    spec.update(table.get(setting, {}))
    missing = [k for k in ("statistic", "target", "source") if k not in spec]
    if missing:
        raise ConfigError(f"progression/als/{TARGETS_FILE}, [{key}]: missing key "
                          f"{missing[0]!r} for the {setting} setting")
    rng = spec.get("range", "none")
    spec["range"] = None if rng == "none" else (float(rng[0]), float(rng[1]))
    return spec


# ================================================================================ helpers


def km_quantile(times: np.ndarray, survival: np.ndarray, q: float) -> float:
    """Time by which a fraction ``q`` has had the event (median: q = 0.5); NaN if not reached."""
    hit = np.flatnonzero(survival <= 1.0 - q + 1e-12)
    return float(times[hit[0]]) if len(hit) else math.nan


def km_at(times: np.ndarray, survival: np.ndarray, t: float) -> float:
    """Survival probability at time ``t`` (a step function, 1 before the first event)."""
    k = np.searchsorted(times, t, side="right")
    return 1.0 if k == 0 else float(survival[k - 1])


def cox_hazard_ratio(time, event, group, *, max_iter: int = 50) -> float:
    """Cox proportional-hazards ratio of ``group`` (1) against the rest (0), Breslow ties.

    Parameters
    ----------
    time : array_like (n,)
        Follow-up times (any unit); NaN rows are dropped.
    event : array_like of bool (n,)
        True for an event at ``time``, False for censoring.
    group : array_like of bool (n,)
        The binary covariate.

    Returns
    -------
    float
        exp(beta) maximising the partial likelihood (Newton's method on one parameter, which
        is concave); NaN without events in both groups (the estimate would be 0 or infinite).
    """
    t = np.asarray(time, dtype=float)
    d = np.asarray(event, dtype=bool)
    x = np.asarray(group, dtype=bool)
    ok = np.isfinite(t)
    t, d, x = t[ok], d[ok], x[ok].astype(float)
    if not (d & (x > 0)).any() or not (d & (x == 0)).any():
        return math.nan
    ts = np.unique(t[d])
    # number at risk (time >= s) and in group 1 at each distinct event time s
    n_risk = len(t) - np.searchsorted(np.sort(t), ts, side="left")
    x_sorted_t = np.sort(t[x > 0])
    n1 = len(x_sorted_t) - np.searchsorted(x_sorted_t, ts, side="left")
    n0 = n_risk - n1
    idx = np.searchsorted(ts, t[d])
    deaths = np.bincount(idx, minlength=len(ts)).astype(float)
    x_events = float(x[d].sum())
    beta = 0.0
    for _ in range(max_iter):
        e = math.exp(beta)
        p = n1 * e / (n0 + n1 * e)           # expected share of group 1 among the at-risk
        score = x_events - float(np.sum(deaths * p))
        info = float(np.sum(deaths * p * (1.0 - p)))
        if info <= 0:
            return math.nan
        step = score / info
        beta += max(-2.0, min(2.0, step))
        if abs(step) < 1e-10:
            break
    return math.exp(beta)


def _spearman(x, y) -> float:
    """Spearman correlation of the finite pairs, NaN under 5 (scipy.stats.spearmanr)."""
    return spearman(x, y, min_pairs=5)


def patient_slopes(cohort: Cohort, *, window: float = 24.0, min_visits: int = 3,
                   min_span: float = 0.0) -> dict[str, float]:
    """Per-patient least-squares ALSFRS-R slope (points lost per month, positive = decline).

    Uses visits within ``window`` months of the patient's first ALSFRS-R; patients with fewer
    than ``min_visits`` visits or a shorter span than ``min_span`` months are left out.
    """
    out: dict[str, float] = {}
    if "ALSFRS_R" not in cohort.observables:
        return out
    cols = cohort.observations("ALSFRS_R")
    subj, t, y = cols["subject"], cols["time"], cols["value"]
    if not len(subj):
        return out
    # All subjects at once (rows are sorted by subject, then time): group g of each row,
    # the visits within ``window`` of the group's first visit, then per-group centred sums.
    starts = np.flatnonzero(np.r_[True, subj[1:] != subj[:-1]])
    g = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(subj)]))
    keep = t <= t[starts][g] + window + 1e-9
    g, tt, yy = g[keep], t[keep], y[keep]
    k = len(starts)
    n = np.bincount(g, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        tc = tt - (np.bincount(g, tt, minlength=k) / n)[g]
        yc = yy - (np.bincount(g, yy, minlength=k) / n)[g]
        sxx = np.bincount(g, tc * tc, minlength=k)
        sxy = np.bincount(g, tc * yc, minlength=k)
        last = np.full(k, -np.inf)
        np.maximum.at(last, g, tt)
        span = last - t[starts]
        ok = (n >= min_visits) & (span >= max(min_span, 1e-9))
        slope = -sxy / sxx
    for i in np.flatnonzero(ok):
        out[str(subj[starts[i]])] = float(slope[i])
    return out


def _first(cohort: Cohort, name: str) -> dict[str, tuple[float, float]]:
    """Each subject's first measurement of ``name``: subject -> (time, value)."""
    if name not in cohort.observables:
        return {}
    cols = cohort.observations(name)
    subj = cols["subject"]
    if not len(subj):
        return {}
    # Rows are sorted by subject then time: a subject's first row is where the name changes.
    first = np.flatnonzero(np.r_[True, subj[1:] != subj[:-1]])
    return {str(s): (float(t), float(x)) for s, t, x in
            zip(subj[first], cols["time"][first], cols["value"][first], strict=True)}


def _visit_counts(cohort: Cohort, name: str) -> list[int]:
    """Number of distinct measurement times of ``name`` per subject that has any.

    One pass over the observations (sorted by subject, then time): a visit starts where the
    subject or the time changes.
    """
    if name not in cohort.observables:
        return []
    cols = cohort.observations(name)
    subj, t = cols["subject"], cols["time"]
    if not len(subj):
        return []
    new_subject = np.r_[True, subj[1:] != subj[:-1]]
    new_visit = new_subject | np.r_[True, t[1:] != t[:-1]]
    starts = np.flatnonzero(new_subject)
    return [int(n) for n in np.add.reduceat(new_visit.astype(np.int64), starts)]


def _exit(cohort: Cohort) -> dict[str, tuple[float, bool, bool]]:
    """subject -> (exit time, died, dropped out) from events, else the last observation."""
    last: dict[str, float] = {}
    obs = cohort.observations()
    for s, t in zip(obs["subject"], obs["time"], strict=True):
        last[str(s)] = float(t)
    ends = cohort.covariates
    out = {}
    for s in cohort.subjects:
        ev = cohort.event(s)
        end = ends.get(s, {}).get("study_end_time")
        if ev is None:
            out[s] = (last[s], False, False)
            continue
        died = ev.type in _DEATHS
        dropped = (not died) and isinstance(end, float) and ev.time < end - 1e-6
        out[s] = (ev.time, died, dropped)
    return out


_NEEDED = ("ALSFRS_R", "NfL", "CRP", "Treg_pct")


def _check_names(cohort: Cohort) -> None:
    """Refuse an observable that is a spelling variant of one describe needs.

    ``ALSFRS-R`` or ``alsfrs_r`` instead of ``ALSFRS_R`` would otherwise leave every decline
    statistic silently "n/a".
    """
    from ..data._csvio import normalise_name
    from ..data.validation import is_alsfrs

    present = cohort.observables
    for name in _NEEDED:
        if name in present:
            continue
        for other in present:
            if normalise_name(other) == normalise_name(name) or (
                    name == "ALSFRS_R" and is_alsfrs(other)):
                place = cohort.place(cohort.observations(other)["subject"][0], other,
                                     column="observable")
                raise DataError(
                    f"{place}: expected observable '{name}' (describe computes its statistics "
                    f"from it), found '{other}'; rename it to '{name}' in the file")


def infer_setting(cohort: Cohort) -> str:
    """``"clinic"`` when every ``diagnosis_time`` is 0 (enrolled at diagnosis) or unknown,
    else ``"trial"``."""
    diag = cohort.covariate("diagnosis_time") if "diagnosis_time" in cohort.covariate_names \
        else None
    if diag is None or diag.dtype == object or np.isnan(diag).all():
        return "clinic"
    d = diag[np.isfinite(diag)]
    return "clinic" if np.all(np.abs(d) < 1e-6) else "trial"


# ============================================================================== describe


def describe_cohort(cohort: Cohort, *, setting: str = "auto", nfl_control: float = 20.0,
                    ) -> list[Row]:
    """Compare a cohort's statistics with the published ALS statistics of als-biology.md §6.

    Parameters
    ----------
    cohort : Cohort
        Times in months (other units are converted).
    setting : {"auto", "clinic", "trial"}
        Which targets apply where clinic (population) and trial cohorts differ. ``"auto"``:
        clinic when every ``diagnosis_time`` is 0 (enrolment at diagnosis), else trial.
    nfl_control : float
        Serum NfL of age-matched controls (pg/mL) for the fold-elevation statistic.

    Returns
    -------
    list of Row
        ``(statistic, value, target, range, source, ok)`` per statistic.
    """
    return _describe(cohort, setting, nfl_control)[0]


def cohort_statistics(cohort: Cohort, *, setting: str = "auto", nfl_control: float = 20.0,
                      ) -> dict[str, float]:
    """The statistics of :func:`describe_cohort` by their key in ``targets.toml``.

    Returns
    -------
    dict of str to float
        ``decline_mean``, ``decline_sd``, ``near_flat``, ``dfs_median``, ``dfs_p25``,
        ``dfs_p75``, ``survival_median``, ``survival_spread``, ``survival_10y``,
        ``survival_median_delayed``, ``survival_10y_delayed`` (unchecked),
        ``mortality_12m`` (clinic), ``visits`` (clinic), ``nfl_median``, ``nfl_fold``,
        ``nfl_vs_dfs``, ``nfl_hr``, ``crp_median``, ``crp_max``, ``crp_vs_alsfrs``,
        ``treg_reduction``, ``male``, ``bulbar``, ``age_at_onset``, ``diagnostic_delay``,
        ``attrition_6``/``_12``/``_18`` (with ``study_end_time``); NaN where not computable.
    """
    return _describe(cohort, setting, nfl_control)[1]


def _describe(cohort: Cohort, setting: str, nfl_control: float
              ) -> tuple[list[Row], dict[str, float]]:
    if setting not in ("auto", "clinic", "trial"):
        raise DataError(f"setting: expected 'auto', 'clinic' or 'trial', found '{setting}'")
    _check_names(cohort)
    if cohort.time_unit != "month":
        cohort = cohort.to_time_unit("month")
    if setting == "auto":
        setting = infer_setting(cohort)
    trial = setting == "trial"
    rows: list[Row] = []
    values: dict[str, float] = {}

    targets = _targets()
    where = "at enrolment (trial)" if trial else "at diagnosis"
    labels = {"where": where, "nfl_control": nfl_control}

    def row(statistic, value, target, rng, source):
        value = float(value) if value is not None else math.nan
        ok = None if rng is None or not math.isfinite(value) else bool(
            rng[0] - 1e-9 <= value <= rng[1] + 1e-9)
        rows.append(Row(statistic, value, target, rng, source, ok))

    def add(key, value):
        """A row for the statistic ``key`` of targets.toml, in this setting."""
        spec = _target(targets, key, setting)
        values[key] = float(value) if value is not None else math.nan
        row(spec["statistic"].format(**labels), value, spec["target"].format(**labels),
            spec["range"], spec["source"].format(**labels))

    cov = cohort.covariates
    subjects = cohort.subjects

    # ------------------------------------------------------------------ functional decline
    slopes = patient_slopes(cohort)
    sv = np.array(list(slopes.values()))
    add("decline_mean", sv.mean() if len(sv) else None)
    add("decline_sd", sv.std(ddof=1) if len(sv) > 1 else None)
    flat = patient_slopes(cohort, min_span=12.0)
    fv = np.array(list(flat.values()))
    add("near_flat", (fv < 0.1).mean() if len(fv) else None)

    # ------------------------------------------------------------------------------- ΔFS
    first_frs = _first(cohort, "ALSFRS_R")
    onset = {s: cov.get(s, {}).get("onset_time") for s in subjects}
    dfs = {}
    for s, (t, x) in first_frs.items():
        o = onset.get(s)
        if isinstance(o, float) and t - o > 0.5:
            dfs[s] = (48.0 - x) / (t - o)
    dv = np.array(list(dfs.values()))
    add("dfs_median", np.median(dv) if len(dv) else None)
    add("dfs_p25", np.percentile(dv, 25) if len(dv) else None)
    add("dfs_p75", np.percentile(dv, 75) if len(dv) else None)

    # -------------------------------------------------------------------------- survival
    exits = _exit(cohort)
    # the published estimand: KM from onset over the patients in the data (diagnosed,
    # enrolled), no delayed entry (progression.als.onset_survival says why)
    km = onset_survival(cohort, exits=exits)
    if km is not None:
        med = km_quantile(km.times, km.survival, 0.5)
        q25 = km_quantile(km.times, km.survival, 0.25)
        q75 = km_quantile(km.times, km.survival, 0.75)
    else:
        med = q25 = q75 = math.nan
    add("survival_median", med)
    add("survival_spread", q75 / q25 if q25 > 0 else None)
    # 10-year survival from onset: only when someone is still followed at 120 months
    followed = km is not None and km.exit.max() >= 120.0
    add("survival_10y", km_at(km.times, km.survival, 120.0) if followed else None)
    # the delayed-entry KM (entry at enrolment), reported unchecked: survival of everyone with
    # onset if the diagnostic delay were independent of survival
    kmd = onset_survival(cohort, delayed_entry=True, exits=exits)
    add("survival_median_delayed",
        km_quantile(kmd.times, kmd.survival, 0.5) if kmd is not None else None)
    add("survival_10y_delayed", km_at(kmd.times, kmd.survival, 120.0) if followed else None)
    if not trial:
        died12 = None
        if exits:
            ts0, S0 = kaplan_meier([exits[s][0] for s in subjects],
                                   [exits[s][1] for s in subjects])
            died12 = 1.0 - km_at(ts0, S0, 12.0)
        add("mortality_12m", died12)

    # -------------------------------------------------------------------------- attrition
    has_end = any(isinstance(cov.get(s, {}).get("study_end_time"), float) for s in subjects)
    if has_end:
        left = [exits[s][1] or exits[s][2] for s in subjects]
        ts1, S1 = kaplan_meier([exits[s][0] for s in subjects], left)
        spec = targets["attrition"]
        half = spec["halfwidth"]
        for t, target in zip(spec["months"], spec["shares"], strict=True):
            values[f"attrition_{t:g}"] = 1.0 - km_at(ts1, S1, t)
            row(spec["statistic"].format(month=t), 1.0 - km_at(ts1, S1, t),
                spec["target"].format(share=target),
                (target - half, target + half) if trial else None, spec["source"])
    if not trial:
        nvis = _visit_counts(cohort, "ALSFRS_R")
        add("visits", np.mean(nvis) if nvis else None)

    # ------------------------------------------------------------------------- biomarkers
    nfl = _first(cohort, "NfL")
    nv = np.array([x for _, x in nfl.values()])
    add("nfl_median", np.median(nv) if len(nv) else None)
    add("nfl_fold", np.median(nv) / nfl_control if len(nv) else None)
    common = [s for s in nfl if s in dfs]
    add("nfl_vs_dfs", _spearman([nfl[s][1] for s in common], [dfs[s] for s in common]))
    # NfL tertiles and death from the first measurement (Lu 2015: top vs bottom tertile)
    hr = None
    if len(nfl) >= 9:
        ids = list(nfl)
        level = np.array([nfl[s][1] for s in ids])
        lo, hi = np.percentile(level, [100 / 3, 200 / 3])
        pick = [(s, v >= hi) for s, v in zip(ids, level, strict=True) if v <= lo or v >= hi]
        hr = cox_hazard_ratio([exits[s][0] - nfl[s][0] for s, _ in pick],
                              [exits[s][1] for s, _ in pick], [top for _, top in pick])
    add("nfl_hr", hr)
    crp = _first(cohort, "CRP")
    cv = np.array([x for _, x in crp.values()])
    add("crp_median", np.median(cv) if len(cv) else None)
    if "CRP" in cohort.observables and len(cohort.observations("CRP")["value"]):
        add("crp_max", float(np.max(cohort.observations("CRP")["value"])))
    common = [s for s in crp if s in first_frs and abs(crp[s][0] - first_frs[s][0]) < 1e-9]
    add("crp_vs_alsfrs",
        _spearman([crp[s][1] for s in common], [first_frs[s][1] for s in common]))
    treg = _first(cohort, "Treg_pct")
    common = [s for s in treg if s in dfs]
    red = None
    if len(common) >= 9:
        rate = np.array([dfs[s] for s in common])
        tv = np.array([treg[s][1] for s in common])
        lo, hi = np.percentile(rate, [100 / 3, 200 / 3])
        slow, fast = tv[rate <= lo], tv[rate >= hi]
        red = 1.0 - fast.mean() / slow.mean()
    add("treg_reduction", red)

    # ----------------------------------------------------------------------- demographics
    def share(name, level):
        vals = [cov.get(s, {}).get(name) for s in subjects]
        vals = [v for v in vals if isinstance(v, str)]
        return (np.mean([v.lower() == level for v in vals]) if vals else None)

    add("male", share("sex", "male"))
    add("bulbar", share("site_of_onset", "bulbar"))
    ages = []
    for s in subjects:
        a, o = cov.get(s, {}).get("age"), onset.get(s)
        if isinstance(a, float):
            ages.append(a + (o / 12.0 if isinstance(o, float) else 0.0))
    add("age_at_onset", np.mean(ages) if ages else None)
    delays = [cov.get(s, {}).get("diagnostic_delay") for s in subjects]
    delays = [x for x in delays if isinstance(x, float)]
    add("diagnostic_delay", np.median(delays) if delays else None)
    return rows, values


# ============================================================================ formatting


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.2g}"


def _fmt_value(stat: str, x: float) -> str:
    if "HR" in stat or "largest" in stat:
        return _fmt(x)
    if ("share" in stat or "attrition" in stat or "mortality" in stat or "reduction" in stat
            or "at 10 years" in stat):
        return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}%"
    return _fmt(x)


def _fmt_range(stat: str, r) -> str:
    if r is None:
        return "-"
    return f"{_fmt_value(stat, r[0])} - {_fmt_value(stat, r[1])}"


def format_description(rows: Sequence[Row], format: str = "text", *,
                       title: str | None = None) -> str:
    """Format rows from :func:`describe_cohort` as a ``"text"`` or ``"markdown"`` table.

    The last line counts the statistics inside their range.
    """
    if format not in ("text", "markdown"):
        raise DataError(f"format: expected 'text' or 'markdown', found '{format}'")
    mark = {True: "yes", False: "NO", None: "-"}
    table = [(r.statistic, _fmt_value(r.statistic, r.value), r.target,
              _fmt_range(r.statistic, r.range), mark[r.ok], r.source) for r in rows]
    header = ("statistic", "value", "target", "range", "ok", "source")
    checked = [r for r in rows if r.ok is not None]
    footer = (f"{sum(r.ok for r in checked)} of {len(checked)} statistics within range"
              + (f" ({len(rows) - len(checked)} without a target or not computable)"
                 if len(rows) > len(checked) else ""))
    lines = []
    if format == "markdown":
        if title:
            lines += [f"**{title}**", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---", "---:", "---:", "---:", ":---:", "---"]) + "|")
        for row in table:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
        lines += ["", footer]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(header[:5])]
    if title:
        lines.append(title)
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*header[:5]) + "  source")
    lines.append("  ".join("-" * w for w in widths) + "  ------")
    for row in table:
        lines.append(fmt.format(*row[:5]) + "  " + row[5])
    lines.append(footer)
    return "\n".join(lines)
