"""The :class:`Cohort`: one validated longitudinal cohort in columnar form.

A cohort holds five tables, all keyed by a subject identifier (str):

========================  =============================================================
observations              ``subject, time, observable, value, cens, limit``; one row per
                          measurement, sorted by subject then time (then observable).
                          ``cens`` is 0 (observed), 1 (left-censored: below ``limit``) or
                          -1 (right-censored: above ``limit``); ``limit`` is NaN when
                          ``cens`` is 0, and a censored ``value`` equals its ``limit``.
                          Optional columns: ``sd`` (each value's known standard deviation,
                          NaN where not given) and ``condition`` (the experimental
                          condition, ``""`` for none); present only when the data give them.
doses                     ``subject, time, amount, target, rate, duration, reset, ss, ii``:
                          dose or intervention records (NONMEM EVID 1, 3, 4).
                          ``rate``/``duration`` are NaN for a bolus; ``reset`` marks EVID
                          3/4; ``ss`` 1 marks a steady-state dose (NONMEM SS = 1: the
                          states at its time are the periodic steady state of the dose
                          given every ``ii``), 0 otherwise; ``ii`` is NaN when not given.
covariates                subject -> {name: value}, baseline values (float or str).
time_varying              ``subject, time, name, value``: covariates that change in time.
events                    ``subject, time, event``: at most one row per subject; ``event`` is
                          ``death``, ``tracheostomy``, ``ventilation`` (permanent) or
                          ``censored`` (the time is then the censoring time).
========================  =============================================================

Times are in ``time_unit`` (``"month"`` unless stated) measured from ``time_origin``
(``"enrolment"``, ``"onset"``, ``"diagnosis"``, ...). ``notes`` records what a reader skipped
or assumed, so that nothing is dropped silently.

Subjects are ordered "naturally" (``P2`` before ``P10``) so that tables read the way people
number patients.

This module holds the :class:`Cohort` object (accessors, per-subject views, selection, unit
conversion, summaries); building and validating its tables from user input is
:mod:`._cohort_tables`, and the values it hands out (:class:`Series`, :class:`Event`,
:class:`SubjectData`, :class:`Summary`) are defined in :mod:`._views`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from progression.errors import DataError, did_you_mean

from . import validation as v
from ._cohort_tables import _DOSE_COLUMNS as _DOSE_COLUMNS
from ._cohort_tables import _EVENT_COLUMNS as _EVENT_COLUMNS
from ._cohort_tables import _OBS_COLUMNS as _OBS_COLUMNS
from ._cohort_tables import _TV_COLUMNS as _TV_COLUMNS
from ._cohort_tables import DEFAULT_UNITS as DEFAULT_UNITS
from ._cohort_tables import _readonly, build_tables, sort_observations
from ._cohort_tables import natural_key as natural_key
from ._units import DAYS_PER, canonical_time_unit, time_factor
from ._views import Event as Event
from ._views import Series as Series
from ._views import SubjectData as SubjectData
from ._views import Summary as Summary

__all__ = ["Cohort", "SubjectData", "Series", "Event", "Summary"]

_NO_ROWS = np.zeros(0, dtype=np.intp)


def _group_rows(subjects: np.ndarray) -> dict[str, np.ndarray]:
    """Subject -> indices of its rows (in table order), from one stable sort."""
    if not len(subjects):
        return {}
    order = np.argsort(subjects, kind="stable")
    keys = subjects[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    stops = np.r_[starts[1:], len(keys)]
    return {str(keys[a]): order[a:b] for a, b in zip(starts, stops, strict=True)}


class Cohort:
    """A validated longitudinal cohort: observations, doses, covariates and events.

    Parameters
    ----------
    observations : mapping of str to array-like
        Columns ``subject`` (str), ``time`` (float), ``observable`` (str), ``value`` (float),
        optionally ``cens`` (0, 1 or -1), ``limit`` (float), ``sd`` (each value's known
        standard deviation, > 0; NaN or None where not given) and ``condition`` (str, the
        experimental condition; empty for none), all of equal length n.
    doses : mapping of str to array-like, optional
        Columns ``subject, time, amount, target`` and optionally ``rate``, ``duration``
        (NaN for a bolus), ``reset`` (bool), ``ss`` (1: a steady-state dose, NONMEM's
        SS = 1; 0 or NaN: not) and ``ii`` (the interdose interval of a steady-state dose,
        > 0; NaN where not given).
    covariates : mapping of str to mapping of str to float or str, optional
        Baseline covariates per subject, e.g. ``{"P1": {"age": 61.0, "sex": "male"}}``.
    time_varying : mapping of str to array-like, optional
        Columns ``subject, time, name, value`` (value float).
    events : mapping of str to array-like, optional
        Columns ``subject, time, event``; at most one row per subject.
    units : mapping of str to str, optional
        Unit of each observable, e.g. ``{"ALSFRS_R": "points", "NfL": "pg/mL"}``. Unstated
        units of ALSFRS_R (points), NfL (pg/mL), CRP (mg/L) and Treg_pct (%) are assumed.
    time_unit : str
        Unit of every time (``"hour"``, ``"day"``, ``"week"``, ``"month"``, ``"year"``).
    time_origin : str
        What time 0 is: ``"enrolment"``, ``"onset"``, ``"diagnosis"``, ...
    source : str, optional
        Where the data came from (a path).
    notes : iterable of str
        What was skipped or assumed on the way in.
    allow_negative_time : bool
        Whether times before the origin (e.g. screening visits before enrolment) are
        accepted; otherwise they are errors.

    Raises
    ------
    DataError
        Listing every problem found (missing columns, non-finite or negative times, duplicate
        rows, ALSFRS-R outside 0-48, censoring without limit, doses without amount, unknown
        event types, subjects with covariates or events but no observations, ...).

    Examples
    --------
    >>> c = Cohort({"subject": ["P1", "P1"], "time": [0, 3], "observable": ["ALSFRS_R"] * 2,
    ...             "value": [40, 37]}, events={"subject": ["P1"], "time": [20],
    ...             "event": ["death"]})
    >>> c.subject("P1")["ALSFRS_R"].value
    array([40., 37.])
    """

    __hash__ = None  # type: ignore[assignment]  # mutable-content equality, like ndarray

    def __init__(
        self,
        observations: Mapping[str, Any],
        *,
        doses: Mapping[str, Any] | None = None,
        covariates: Mapping[str, Mapping[str, Any]] | None = None,
        time_varying: Mapping[str, Any] | None = None,
        events: Mapping[str, Any] | None = None,
        units: Mapping[str, str] | None = None,
        time_unit: str = "month",
        time_origin: str = "enrolment",
        source: str | None = None,
        notes: Iterable[str] = (),
        allow_negative_time: bool = False,
        _origins: Mapping[str, Any] | None = None,
        _problems: list[str] | None = None,
        _excuse: Iterable[str] = (),
    ):
        t = build_tables(
            observations, doses=doses, covariates=covariates, time_varying=time_varying,
            events=events, units=units, time_unit=time_unit, source=source, notes=notes,
            allow_negative_time=allow_negative_time, _origins=_origins, _problems=_problems,
            _excuse=_excuse,
        )
        self._time_unit = t.time_unit
        self._time_origin = str(time_origin)
        self._source = source
        self._units = t.units
        self._covariates = t.covariates
        self._set_observations(t.obs, t.obs_origin, t.rank)
        self._doses = t.doses
        # Where each dose record came from (file, row), for messages about a record found in
        # checks made after reading (a fit's dosing compartments).
        self._dose_origin = t.dose_origin
        self._tv = t.tv
        self._events = t.events
        self._notes = t.notes

    # ------------------------------------------------------------------ construction helpers

    def _set_observations(self, obs: dict, origin: np.ndarray, rank: dict) -> None:
        """Take the sorted observation table (:func:`._cohort_tables.sort_observations`) and
        index it by subject."""
        self._obs = obs
        self._obs_origin = origin
        self._subjects = tuple(sorted(rank, key=rank.__getitem__))
        self._rank = rank
        subj = self._obs["subject"]
        bounds = np.flatnonzero(subj[1:] != subj[:-1]) + 1 if len(subj) else np.array([], int)
        starts = np.concatenate(([0], bounds)) if len(subj) else np.array([], int)
        stops = np.concatenate((bounds, [len(subj)])) if len(subj) else np.array([], int)
        self._slices = {str(subj[a]): slice(int(a), int(b))
                        for a, b in zip(starts, stops, strict=True)}
        # Computed once: per-subject and per-observable look-ups must not rescan the table
        # (describe and fits ask once per subject; a rescan made them quadratic).
        self._observables = tuple(str(o) for o in np.unique(self._obs["observable"]))
        self._index: dict[str, dict[str, np.ndarray]] = {}

    def _rows_of(self, table: str, subject: str) -> np.ndarray:
        """Row indices of ``subject`` in the doses, time-varying or events table.

        The grouping is built once per table (one stable sort), so that asking for every
        subject in turn costs linear time overall instead of a full scan per subject.
        """
        index = self._index.get(table)
        if index is None:
            index = _group_rows({"doses": self._doses, "time_varying": self._tv,
                                 "events": self._events}[table]["subject"])
            self._index[table] = index
        return index.get(subject, _NO_ROWS)

    @classmethod
    def _from_parts(cls, base: Cohort, obs: dict, origin: np.ndarray, doses: dict, tv: dict,
                    events: dict, covariates: dict, notes: Iterable[str],
                    time_unit: str | None = None, dose_origin=None) -> Cohort:
        """A cohort from already validated tables (for select and unit conversion)."""
        new = cls.__new__(cls)
        new._time_unit = time_unit or base._time_unit
        new._time_origin = base._time_origin
        new._source = base._source
        new._units = dict(base._units)
        new._covariates = covariates
        rank = {s: i for i, s in enumerate(sorted(set(map(str, obs["subject"])),
                                                  key=natural_key))}
        new._set_observations(*sort_observations({k: np.array(a) for k, a in obs.items()},
                                                 origin, rank), rank)
        new._units = {k: u for k, u in new._units.items() if k in new._observables}
        new._doses = {k: _readonly(np.array(a)) for k, a in doses.items()}
        new._dose_origin = dose_origin
        new._tv = {k: _readonly(np.array(a)) for k, a in tv.items()}
        new._events = {k: _readonly(np.array(a)) for k, a in events.items()}
        new._notes = tuple(dict.fromkeys(notes))
        new._index = {}
        return new

    # ------------------------------------------------------------------------ basic access

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject identifiers, in natural order."""
        return self._subjects

    def __len__(self) -> int:
        return len(self._subjects)

    def __iter__(self) -> Iterator[str]:
        return iter(self._subjects)

    def __contains__(self, subject: object) -> bool:
        return subject in self._slices

    @property
    def observables(self) -> tuple[str, ...]:
        """Names of the observables present, sorted."""
        return self._observables

    @property
    def n_observations(self) -> int:
        """Number of observation rows."""
        return len(self._obs["time"])

    @property
    def time_unit(self) -> str:
        """Unit of every time in the cohort (``"month"``, ``"day"``, ...)."""
        return self._time_unit

    @property
    def time_origin(self) -> str:
        """What time 0 is (``"enrolment"``, ``"onset"``, ``"diagnosis"``, ...)."""
        return self._time_origin

    @property
    def source(self) -> str | None:
        """Where the data came from."""
        return self._source

    @property
    def notes(self) -> tuple[str, ...]:
        """What readers skipped or assumed, and warnings from validation."""
        return self._notes

    @property
    def units(self) -> dict[str, str]:
        """Observable name -> unit, where known."""
        return dict(self._units)

    @property
    def covariates(self) -> dict[str, dict[str, Any]]:
        """Subject -> {covariate name: value} (a copy)."""
        return {s: dict(row) for s, row in self._covariates.items()}

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """Names of the baseline covariates, sorted."""
        return tuple(sorted({n for row in self._covariates.values() for n in row}))

    def covariate(self, name: str) -> np.ndarray:
        """One baseline covariate for every subject, in ``subjects`` order.

        Returns
        -------
        ndarray, shape (n_subjects,)
            float (NaN where missing) when every present value is a number, else object
            (None where missing).
        """
        vals = [self._covariates.get(s, {}).get(name) for s in self._subjects]
        if all(x is None or isinstance(x, float) for x in vals):
            return np.array([np.nan if x is None else x for x in vals], dtype=float)
        return np.array(vals, dtype=object)

    @property
    def doses(self) -> dict[str, np.ndarray]:
        """Dose table: ``subject, time, amount, target, rate, duration, reset, ss, ii``, each
        shape (d,)."""
        return dict(self._doses)

    @property
    def time_varying(self) -> dict[str, np.ndarray]:
        """Time-varying covariates: ``subject, time, name, value``, each shape (k,)."""
        return dict(self._tv)

    @property
    def events(self) -> dict[str, np.ndarray]:
        """Events: ``subject, time, event``, each shape (e,), at most one per subject."""
        return dict(self._events)

    def event(self, subject: str) -> Event | None:
        """The event (or censoring) of ``subject``, or None if the data say nothing."""
        idx = self._rows_of("events", str(subject))
        if not len(idx):
            return None
        i = int(idx[0])
        return Event(float(self._events["time"][i]), str(self._events["event"][i]))

    def observations(
        self, observable: str | None = None, subject: str | None = None
    ) -> dict[str, np.ndarray]:
        """Observation columns, optionally for one observable and/or one subject.

        Returns
        -------
        dict of str to ndarray
            ``subject`` (str), ``time`` (float, ``time_unit``), ``observable`` (str),
            ``value`` (float), ``cens`` (int8), ``limit`` (float, NaN where observed), and
            ``sd`` (float, NaN where not given) and ``condition`` (str) when the data have
            them; each of shape (n,), read-only, sorted by subject then time.
        """
        if subject is not None:
            self._require_subject(subject)
            sl = self._slices[subject]
            cols = {k: a[sl] for k, a in self._obs.items()}
        else:
            cols = dict(self._obs)
        if observable is not None:
            if observable not in self.observables:
                raise DataError(
                    f"{self._source or 'cohort'}: no observable '{observable}'; the cohort "
                    "has " + ", ".join(f"'{o}'" for o in self.observables)
                )
            mask = cols["observable"] == observable
            cols = {k: _readonly(a[mask]) for k, a in cols.items()}
        return cols

    def place(self, subject: str, observable: str | None = None, time: float | None = None,
              column: str = "value") -> str:
        """Name where an observation came from: ``"file, row N, column 'c', subject 's'"``.

        For a message about a value found in checks made after reading (a fit's error model,
        for example); the first matching row of ``subject`` (and ``observable``, ``time``)
        is named. Data built in Python are named ``observations[i]``.
        """
        self._require_subject(subject)
        sl = self._slices[subject]
        m = np.ones(sl.stop - sl.start, dtype=bool)
        if observable is not None:
            m &= self._obs["observable"][sl] == observable
        if time is not None:
            m &= self._obs["time"][sl] == time
        hit = np.flatnonzero(m)
        if not len(hit) or len(self._obs_origin) != len(self._obs["time"]):
            return f"{self._source or 'cohort'}, subject '{subject}'"
        return v.where(self._obs_origin[sl.start + int(hit[0])], column, subject)

    def dose_place(self, subject: str, index: int, column: str = "target") -> str:
        """Name where a subject's ``index``-th dose record (in time order) came from:
        ``"file, row N, column 'c', subject 's'"`` (``doses[i]`` for data built in Python)."""
        self._require_subject(subject)
        rows = self._rows_of("doses", subject)
        origin = getattr(self, "_dose_origin", None)
        if origin is None or not 0 <= index < len(rows):
            return f"{self._source or 'cohort'}, subject '{subject}'"
        return v.where(origin[int(rows[index])], column, subject)

    def _require_subject(self, subject: str) -> None:
        if subject not in self._slices:
            hint = did_you_mean(str(subject), self._subjects, parenthesised=True)
            raise DataError(f"{self._source or 'cohort'}: no subject '{subject}'{hint}")

    def subject(self, subject: str) -> SubjectData:
        """A read-only view of one subject: series per observable, covariates, event."""
        self._require_subject(subject)
        sl = self._slices[subject]
        obs = {k: a[sl] for k, a in self._obs.items()}
        series = {}
        for name in sorted(set(map(str, obs["observable"]))):
            m = obs["observable"] == name
            series[name] = Series(*(_readonly(obs[c][m]) if c in obs else None
                                    for c in ("time", "value", "cens", "limit", "sd",
                                              "condition")))
        tvi = self._rows_of("time_varying", subject)
        tv_name, tv_time, tv_value = (self._tv[k][tvi] for k in ("name", "time", "value"))
        tv = {}
        for name in sorted(set(map(str, tv_name))):
            m = tv_name == name
            tv[name] = (_readonly(tv_time[m]), _readonly(tv_value[m]))
        di = self._rows_of("doses", subject)
        doses = {k: _readonly(a[di]) for k, a in self._doses.items() if k != "subject"}
        return SubjectData(subject, series, dict(self._covariates.get(subject, {})), tv,
                           doses, self.event(subject), self._time_unit, dict(self._units))

    # ------------------------------------------------------------------------- derivations

    def select(self, subjects: Iterable[str]) -> Cohort:
        """A cohort with only ``subjects`` (unknown identifiers raise a DataError)."""
        wanted = list(dict.fromkeys(str(s) for s in subjects))
        missing = [s for s in wanted if s not in self._slices]
        v.raise_if_problems([f"{self._source or 'cohort'}: no subject '{s}'" for s in missing],
                            f"{self._source or 'cohort'}: cannot select unknown subjects")
        keep = set(wanted)

        def pick(table):
            m = np.isin(table["subject"], list(keep)) if len(table["subject"]) else \
                np.zeros(0, dtype=bool)
            return {k: a[m] for k, a in table.items()}, m

        obs, m = pick(self._obs)
        doses, dm = pick(self._doses)
        dose_origin = getattr(self, "_dose_origin", None)
        return Cohort._from_parts(
            self, obs, self._obs_origin[m], doses, pick(self._tv)[0],
            pick(self._events)[0], {s: dict(r) for s, r in self._covariates.items() if s in keep},
            self._notes, dose_origin=dose_origin[dm] if dose_origin is not None else None,
        )

    def to_time_unit(self, unit: str) -> Cohort:
        """The same cohort with every time (and time covariate) expressed in ``unit``.

        Covariates whose name ends in ``_time`` or is ``diagnostic_delay`` are times too and
        are converted (the PRO-ACT reader's ``onset_time``, ``diagnosis_time``).
        """
        target = canonical_time_unit(unit)
        if target is None:
            raise DataError(f"expected a time unit ({', '.join(DAYS_PER)}), found "
                            f"'{unit}'")
        f = time_factor(self._time_unit, target)
        if f == 1.0:
            return self

        # Divide by the exact ratio when going to a longer unit (days -> months divides by
        # 30.4375): the result is then correctly rounded, and whole days round-trip.
        up = DAYS_PER[target] > DAYS_PER[self._time_unit]
        ratio = time_factor(target, self._time_unit)

        def conv(a):
            return a / ratio if up else a * f

        def inv(a):
            return a * ratio if up else a / f

        def scale(table, cols, per=()):
            return {k: (conv(a) if k in cols else _per_time(inv, a) if k in per else a)
                    for k, a in table.items()}

        cov = {s: {n: (conv(x) if isinstance(x, float) and _is_time_covariate(n) else x)
                   for n, x in row.items()} for s, row in self._covariates.items()}
        big, small = sorted((self._time_unit, target), key=DAYS_PER.__getitem__, reverse=True)
        note = (f"times converted from {self._time_unit}s to {target}s (1 {big} = "
                f"{DAYS_PER[big] / DAYS_PER[small]:g} {small}s)")
        return Cohort._from_parts(
            self, scale(self._obs, {"time"}), self._obs_origin,
            scale(self._doses, {"time", "duration", "ii"}, {"rate"}), scale(self._tv, {"time"}),
            scale(self._events, {"time"}), cov, (*self._notes, note), time_unit=target,
            dose_origin=getattr(self, "_dose_origin", None),
        )

    # ------------------------------------------------------------------------ validation

    def check_observables(self, names: Iterable[str], *, source: str = "the model") -> None:
        """Raise a DataError if the data hold observables that are not in ``names``.

        Parameters
        ----------
        names : iterable of str
            The model's observables.
        source : str
            How to name the model in messages, e.g. ``"model 'als_reduced'"``.
        """
        problems: list[str] = []
        v.check_observables(self._obs["observable"], self._obs_origin, self._obs["subject"],
                            list(names), problems, source=source)
        v.raise_if_problems(problems, f"{self._source or 'cohort'}: observables not in "
                                      f"{source}")

    # --------------------------------------------------------------------- summary, plots

    def summary(self) -> Summary:
        """Counts and medians: subjects, observations per observable, visits, follow-up, events.

        Returns
        -------
        Summary
            A dict with keys ``n_subjects``, ``time_unit``, ``time_origin``, ``source``,
            ``observables`` (name -> unit, n_observations, n_subjects, n_censored),
            ``visits_per_subject`` and ``follow_up`` (median, min, max; a visit is a distinct
            observation time; follow-up runs from the first to the last observation, in
            ``time_unit``), ``events`` (type -> count), ``n_doses``, ``covariates``.
            ``str(summary)`` is a text table.
        """
        obs = self._obs
        per_obs = {}
        for name in self.observables:
            m = obs["observable"] == name
            per_obs[name] = {
                "unit": self._units.get(name),
                "n_observations": int(m.sum()),
                "n_subjects": len(set(obs["subject"][m])),
                "n_censored": int((obs["cens"][m] != 0).sum()),
            }
        visits, follow = [], []
        for sl in self._slices.values():
            t = obs["time"][sl]
            visits.append(len(np.unique(t)))
            follow.append(float(t.max() - t.min()))
        kinds, counts = np.unique(self._events["event"], return_counts=True)
        return Summary(
            n_subjects=len(self),
            time_unit=self._time_unit,
            time_origin=self._time_origin,
            source=self._source,
            observables=per_obs,
            visits_per_subject={"median": float(np.median(visits)), "min": int(min(visits)),
                                "max": int(max(visits))},
            follow_up={"median": float(np.median(follow)), "min": min(follow),
                       "max": max(follow)},
            events={str(k): int(c) for k, c in zip(kinds, counts, strict=True)},
            n_doses=len(self._doses["time"]),
            covariates=list(self.covariate_names),
        )

    def plot_spaghetti(self, observable: str, ax=None, *, subjects: Iterable[str] | None = None,
                       **kwargs):
        """Plot each subject's trajectory of ``observable`` against time.

        Censored values are drawn at their limit as open triangles (pointing down for
        "below", up for "above").

        Parameters
        ----------
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
        # drawn by the plotting package (one backend set-up for every figure)
        from ..plots.cohort import plot_spaghetti

        return plot_spaghetti(self, observable, ax, subjects=subjects, **kwargs)

    # ------------------------------------------------------------------------- comparison

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cohort):
            return NotImplemented
        if (self._time_unit, self._time_origin, self._units, self._subjects) != (
            other._time_unit, other._time_origin, other._units, other._subjects
        ):
            return False
        if self._covariates != other._covariates:
            return False
        for a, b in ((self._obs, other._obs), (self._doses, other._doses),
                     (self._tv, other._tv), (self._events, other._events)):
            if set(a) != set(b):
                return False
            for k in a:
                x, y = a[k], b[k]
                if x.shape != y.shape:
                    return False
                if x.dtype.kind == "f":
                    if not np.array_equal(x, y, equal_nan=True):
                        return False
                elif not np.array_equal(x, y):
                    return False
        return True

    def __repr__(self) -> str:
        return (f"<Cohort {len(self)} subjects, {self.n_observations} observations of "
                f"{', '.join(self.observables)}; {self._time_unit}s since "
                f"{self._time_origin}{'; ' + self._source if self._source else ''}>")


def _per_time(inv, a):
    """A per-time column (rates) in another unit; NONMEM's RATE codes -1 and -2 (rate or
    duration from the model) are codes, not rates, and stay as they are."""
    a = np.asarray(a, dtype=float)
    return np.where((a == -1.0) | (a == -2.0), a, inv(a))


def _is_time_covariate(name: str) -> bool:
    return name.endswith("_time") or name == "diagnostic_delay"
