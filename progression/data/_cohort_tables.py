"""Building a cohort's tables from user input: coerce, validate, sort.

:func:`build_tables` turns the mappings given to :class:`~progression.data.cohort.Cohort`
(observations, doses with ``ss``/``ii`` and NONMEM RATE codes, time-varying covariates,
events, baseline covariates) and the provenance of each row (``_origins``: the file, row and
columns a reader took it from) into validated, sorted, read-only column arrays. Every problem
found is collected and raised at once as one :class:`~progression.errors.DataError` naming
the row (:mod:`progression.data.validation` does the checks). The cohort object itself
(accessors, per-subject views, selection, unit conversion, summaries) is in
:mod:`progression.data.cohort`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import validation as v
from ._units import DAYS_PER, canonical_time_unit

_OBS_COLUMNS = ("subject", "time", "observable", "value", "cens", "limit")
_DOSE_COLUMNS = ("subject", "time", "amount", "target", "rate", "duration", "reset", "ss",
                 "ii")
_TV_COLUMNS = ("subject", "time", "name", "value")
_EVENT_COLUMNS = ("subject", "time", "event")

# Units readers assume when a file is silent, so plots can label the axes.
DEFAULT_UNITS = {"ALSFRS_R": "points", "NfL": "pg/mL", "CRP": "mg/L", "Treg_pct": "%"}


def natural_key(text: str) -> tuple:
    """Sort key ordering ``P2`` before ``P10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", str(text)) if p)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _floats(xs: Iterable) -> list[float | None]:
    xs = list(xs)
    try:
        # Fast path: every entry converts (readers pass floats and None is rare).
        return [float(x) for x in xs]
    except (TypeError, ValueError):
        pass
    out: list[float | None] = []
    for x in xs:
        if x is None:
            out.append(None)
            continue
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _optional_numbers(col, n: int, name: str, origins, subjects, problems) -> list:
    """An optional numeric column as floats, None where missing (None, NaN, empty text); a
    cell that is not a number is a problem (never read as missing)."""
    if col is None:
        return [None] * n
    out: list[float | None] = []
    for x, o, s in zip(col, origins, subjects, strict=True):
        if x is None or (isinstance(x, str) and not x.strip()):
            out.append(None)
            continue
        try:
            f = float(x)
        except (TypeError, ValueError):
            problems.append(f"{v.where(o, name, s)}: expected a number, found {x!r}")
            out.append(None)
            continue
        out.append(None if f != f else f)
    return out


def _object_array(items: Sequence) -> np.ndarray:
    # Element-wise, so that numpy does not turn a list of tuples into a 2-D array.
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def _str_array(xs: Sequence[str]) -> np.ndarray:
    return np.array([str(x) for x in xs], dtype=str) if len(xs) else np.array([], dtype=str)


def _columns(
    name: str,
    table: Mapping[str, Any],
    required: Sequence[str],
    optional: Sequence[str],
    problems: list[str],
) -> dict[str, list | None]:
    if not isinstance(table, Mapping):
        problems.append(f"{name}: expected a mapping of column name to values, found "
                        f"{type(table).__name__}")
        return {c: [] for c in required}
    v.check_unknown_keys(name, table, (*required, *optional), problems, what="column")
    out: dict[str, list | None] = {}
    for c in required:
        if c not in table:
            problems.append(f"{name}: expected a column '{c}', found "
                            + ", ".join(f"'{k}'" for k in table))
    length = None
    for c in (*required, *optional):
        if c not in table or table[c] is None:
            out[c] = [] if c in required else None
            continue
        col = list(np.ravel(np.asarray(table[c], dtype=object)))
        if length is not None and len(col) != length:
            problems.append(f"{name}: expected columns of equal length, found "
                            f"'{c}' with {len(col)} rows, not {length}")
            return {c: [] for c in required}
        length = len(col)
        out[c] = col
    if any(len(out[c]) != length for c in required if length is not None):
        return {c: [] for c in required}
    return out


def _order(table: dict, rank: Mapping[str, int], tie: str | None = None) -> np.ndarray:
    s = table["subject"]
    if not len(s):
        return np.zeros(0, dtype=np.int64)
    key = np.array([rank.get(x, len(rank)) for x in s], dtype=np.int64)
    keys = (table[tie], table["time"], key) if tie else (table["time"], key)
    return np.lexsort(keys)

def _sorted(table: dict, rank: Mapping[str, int], tie: str | None = None) -> dict:
    if not len(table["subject"]):
        return {k: _readonly(a) for k, a in table.items()}
    order = _order(table, rank, tie)
    return {k: _readonly(a[order]) for k, a in table.items()}


def sort_observations(obs: dict, origin: np.ndarray, rank: Mapping[str, int]
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The observation columns (read-only) and their origins in cohort order: subject (by
    ``rank``), time, observable, condition."""
    key = np.array([rank[s] for s in obs["subject"]], dtype=np.int64)
    # Tie-break on observable (and condition) so that the order never depends on the
    # file's row order.
    ties = (obs["condition"],) if "condition" in obs else ()
    order = np.lexsort((*ties, obs["observable"], obs["time"], key)) if len(key) else \
        np.array([], dtype=np.int64)
    return ({k: _readonly(a[order]) for k, a in obs.items()},
            origin[order] if len(origin) == len(order) else origin)


@dataclass(frozen=True)
class Tables:
    """A cohort's validated tables, as :func:`build_tables` returns them.

    ``obs``, ``doses``, ``tv`` (time-varying covariates) and ``events`` are dicts of read-only
    column arrays sorted by subject (in ``rank`` order) then time; ``obs_origin`` and
    ``dose_origin`` name where each row came from (``dose_origin`` is None when the origins
    given do not match the rows); ``notes`` are the caller's notes plus validation warnings.
    """

    time_unit: str
    units: dict[str, str]
    covariates: dict[str, dict[str, Any]]
    rank: dict[str, int]
    obs: dict[str, np.ndarray]
    obs_origin: np.ndarray
    doses: dict[str, np.ndarray]
    dose_origin: np.ndarray | None
    tv: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    notes: tuple[str, ...]


def build_tables(
    observations: Mapping[str, Any],
    *,
    doses: Mapping[str, Any] | None = None,
    covariates: Mapping[str, Mapping[str, Any]] | None = None,
    time_varying: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
    time_unit: str = "month",
    source: str | None = None,
    notes: Iterable[str] = (),
    allow_negative_time: bool = False,
    _origins: Mapping[str, Any] | None = None,
    _problems: list[str] | None = None,
    _excuse: Iterable[str] = (),
) -> Tables:
    """Coerce, validate and sort the tables given to :class:`~progression.data.cohort.Cohort`
    (whose docstring describes the arguments).

    ``_origins`` maps a table name to the origin of each row (``(file, row, columns)``, as
    :func:`progression.data.validation.where` takes it; ``covariates``: subject -> origin),
    defaulting to ``observations[i]`` and the like; ``_problems`` are problems a reader
    already found, reported with these; ``_excuse`` names subjects allowed to lack
    observations.

    Raises
    ------
    DataError
        Listing every problem found.
    """
    problems: list[str] = list(_problems or [])
    notes = list(notes)
    origins = dict(_origins or {})
    label = source or "cohort"

    unit = canonical_time_unit(time_unit)
    if unit is None:
        problems.append(f"{label}: expected a time unit ({', '.join(DAYS_PER)}), "
                        f"found '{time_unit}'")
        unit = "month"

    obs = _columns("observations", observations, ("subject", "time", "observable",
                        "value"), ("cens", "limit", "sd", "condition"), problems)
    n = len(obs["subject"])
    o_obs = origins.get("observations") or [(f"observations[{i}]", None, {})
                                            for i in range(n)]
    subj = [str(s) for s in obs["subject"]]
    times = _floats(obs["time"])
    names = [str(x) for x in obs["observable"]]
    values = _floats(obs["value"])
    cens_in = obs.get("cens")
    # A missing flag (None, NaN) means "observed", as an empty CENS cell does in NONMEM.
    # (c != c is NaN: a scalar np.isnan per row cost more than the rest of the line.)
    cens = [0] * n if cens_in is None else [
        0 if c is None or c != c else int(c) if c.is_integer() else c
        for c in _floats(cens_in)]
    limits = [None] * n if obs.get("limit") is None else _floats(obs["limit"])
    if n == 0 and not problems:
        problems.append(f"{label}: expected at least one observation, found none")

    v.check_subject_ids(subj, o_obs, problems)
    neg = bool(allow_negative_time)
    v.check_times(subj, times, o_obs, problems, allow_negative=neg)
    v.check_censoring(subj, cens, limits, values, o_obs, problems)
    v.check_alsfrs_range(subj, names, [lim if c in (1, -1) else x for x, c, lim
                                       in zip(values, cens, limits, strict=True)],
                         o_obs, problems)
    # NaN or an empty cell: no known SD for that value
    sds = None if obs.get("sd") is None else [None if x is None or x != x else x
                                               for x in _floats(obs["sd"])]
    conds = None if obs.get("condition") is None else [
        "" if c is None or (isinstance(c, float) and c != c) else str(c).strip()
        for c in obs["condition"]]
    if sds is not None:
        v.check_sd(subj, sds, o_obs, problems)
    # the same subject, time and observable under two conditions are two measurements
    v.check_duplicates(subj, times, names if conds is None else
                       [f"{n}' in condition '{c}" if c else n
                        for n, c in zip(names, conds, strict=True)], o_obs, problems)

    # Doses.
    d = _columns("doses", doses or {}, ("subject", "time", "amount", "target"),
                      ("rate", "duration", "reset", "ss", "ii"), problems) if doses else {}
    nd = len(d.get("subject", ()))
    o_dose = origins.get("doses") or [(f"doses[{i}]", None, {}) for i in range(nd)]
    d_subj = [str(s) for s in d.get("subject", ())]
    d_time = _floats(d.get("time", ()))
    d_amt = _floats(d.get("amount", ()))
    d_tgt = ["" if t is None else str(t) for t in d.get("target", ())]
    d_rate = _floats(d["rate"]) if d.get("rate") is not None else [None] * nd
    d_dur = _floats(d["duration"]) if d.get("duration") is not None else [None] * nd
    d_reset = [bool(x) for x in d["reset"]] if d.get("reset") is not None else [False] * nd
    # A missing SS cell means no steady state, as an empty SS cell does in NONMEM.
    d_ss = _optional_numbers(d.get("ss"), nd, "ss", o_dose, d_subj, problems)
    d_ii = _optional_numbers(d.get("ii"), nd, "ii", o_dose, d_subj, problems)
    if nd:
        v.check_subject_ids(d_subj, o_dose, problems)
        v.check_times(d_subj, d_time, o_dose, problems, what="dose time",
                      allow_negative=neg)
        v.check_doses(d_subj, d_amt, d_tgt, d_rate, d_dur, d_reset, o_dose, problems,
                      ss=d_ss, ii=d_ii)

    # Time-varying covariates.
    tv = _columns("time_varying", time_varying or {}, _TV_COLUMNS, (),
                       problems) if time_varying else {}
    ntv = len(tv.get("subject", ()))
    o_tv = origins.get("time_varying") or [(f"time_varying[{i}]", None, {})
                                           for i in range(ntv)]
    tv_subj = [str(s) for s in tv.get("subject", ())]
    tv_time = _floats(tv.get("time", ()))
    tv_name = [str(x) for x in tv.get("name", ())]
    tv_val = _floats(tv.get("value", ()))
    if ntv:
        v.check_subject_ids(tv_subj, o_tv, problems)
        v.check_times(tv_subj, tv_time, o_tv, problems, allow_negative=neg)
        v.check_duplicates(tv_subj, tv_time, tv_name, o_tv, problems, what="covariate",
                           column="name")
        for s, x, o in zip(tv_subj, tv_val, o_tv, strict=True):
            if x is None or not np.isfinite(x):
                problems.append(f"{v.where(o, 'value', s)}: expected a number, found {x}")

    # Events.
    ev = _columns("events", events or {}, _EVENT_COLUMNS, (), problems) if events \
        else {}
    ne = len(ev.get("subject", ()))
    o_ev = origins.get("events") or [(f"events[{i}]", None, {}) for i in range(ne)]
    ev_subj = [str(s) for s in ev.get("subject", ())]
    ev_time = _floats(ev.get("time", ()))
    ev_type = v.check_events(ev_subj, ev_time, [str(e) for e in ev.get("event", ())],
                             o_ev, problems, allow_negative=neg)
    for s, t, o in zip(ev_subj, ev_time, o_ev, strict=True):
        if t is None or not np.isfinite(t):
            problems.append(f"{v.where(o, 'time', s)}: expected a finite event time, "
                            f"found {t}")

    # Baseline covariates.
    cov: dict[str, dict[str, Any]] = {}
    o_cov = origins.get("covariates") or {}
    for s, row in (covariates or {}).items():
        o = o_cov.get(s, (f"covariates['{s}']", None, {}))
        clean: dict[str, Any] = {}
        for name, x in dict(row).items():
            if isinstance(x, str):
                clean[str(name)] = x
            elif isinstance(x, (bool, int, float, np.integer, np.floating)):
                if np.isfinite(float(x)):
                    clean[str(name)] = float(x)
            elif x is None:
                continue
            else:
                problems.append(f"{v.where(o, str(name), s)}: expected a number or text, "
                                f"found {type(x).__name__}")
        if not str(s).strip():
            problems.append(f"{v.where(o, 'subject')}: expected a subject identifier, "
                            "found an empty cell")
        cov[str(s)] = clean
    clash = {n for row in cov.values() for n in row} & set(tv_name)
    for name in sorted(clash):
        problems.append(f"{label}: covariate '{name}' is both a baseline and a "
                        "time-varying covariate; expected one or the other")

    v.check_subjects_observed(
        set(subj),
        {
            "covariates": (list(cov), [o_cov.get(s, (f"covariates['{s}']", None, {}))
                                       for s in cov]),
            "events": (ev_subj, o_ev),
            "doses": (d_subj, o_dose),
            "time-varying covariates": (tv_subj, o_tv),
        },
        problems,
        excuse=_excuse,
    )
    v.raise_if_problems(problems, label)

    # Censored values carry nothing beyond their limit: store the limit, so that equal
    # data compare equal whatever the file wrote in the value cell.
    values = [lim if c else x for x, c, lim in zip(values, cens, limits, strict=True)]
    limits = [lim if c else np.nan for c, lim in zip(cens, limits, strict=True)]

    # Units of the standard observables are assumed when unstated, so that plots are
    # labelled and a written-and-read cohort compares equal whatever the format kept.
    unit_of = {n: DEFAULT_UNITS[n] for n in sorted(set(names)) if n in DEFAULT_UNITS}
    # Only units of observables present: a unit of an absent observable says nothing,
    # and written into a sidecar it would be refused on reading (a [units] key must
    # name an observable of the file, which is how misplaced keys are caught).
    present = set(names)
    unit_of.update({str(k): str(u) for k, u in (units or {}).items()
                        if str(k) in present})

    order = sorted(set(subj), key=natural_key)
    rank = {s: i for i, s in enumerate(order)}
    obs_table, obs_origin = sort_observations(
        {
            "subject": _str_array(subj),
            "time": np.array(times, dtype=float),
            "observable": _str_array(names),
            "value": np.array(values, dtype=float),
            "cens": np.array(cens, dtype=np.int8),
            "limit": np.array(limits, dtype=float),
            **({} if sds is None or all(x is None for x in sds) else
               {"sd": np.array([np.nan if x is None else x for x in sds], dtype=float)}),
            **({} if conds is None or not any(conds) else
               {"condition": _str_array(conds)}),
        },
        _object_array(o_obs),
        rank,
    )
    doses_table = {
            "subject": _str_array(d_subj),
            "time": np.array(d_time, dtype=float),
            "amount": np.array([np.nan if a is None else a for a in d_amt], dtype=float),
            "target": _str_array(d_tgt),
            "rate": np.array([np.nan if r is None else r for r in d_rate], dtype=float),
            "duration": np.array([np.nan if r is None else r for r in d_dur], dtype=float),
            "reset": np.array(d_reset, dtype=bool),
            "ss": np.array([0 if q is None else int(q) for q in d_ss], dtype=np.int8),
            "ii": np.array([np.nan if x is None else x for x in d_ii], dtype=float),
    }
    dose_table = _sorted(doses_table, rank, tie="target")
    # Where each dose record came from (file, row), for messages about a record found in
    # checks made after reading (a fit's dosing compartments).
    origin = _object_array(o_dose)
    dose_origin = (origin[_order(doses_table, rank, "target")]
                   if len(origin) == nd else None)
    tv_table = _sorted(
        {
            "subject": _str_array(tv_subj),
            "time": np.array(tv_time, dtype=float),
            "name": _str_array(tv_name),
            "value": np.array(tv_val, dtype=float),
        },
        rank,
        tie="name",
    )
    ev_table = _sorted(
        {
            "subject": _str_array(ev_subj),
            "time": np.array(ev_time, dtype=float),
            "event": _str_array([e or "" for e in ev_type]),
        },
        rank,
    )
    last = {}
    for s, t in zip(obs_table["subject"], obs_table["time"], strict=True):
        last[str(s)] = float(t)
    v.note_observations_after_death(
        list(ev_subj), ev_time, ev_type, o_ev, last, notes, time_unit=unit
    )
    return Tables(
        time_unit=unit, units=unit_of, covariates=cov, rank=rank, obs=obs_table,
        obs_origin=obs_origin, doses=dose_table, dose_origin=dose_origin, tv=tv_table,
        events=ev_table, notes=tuple(dict.fromkeys(notes)),
    )
