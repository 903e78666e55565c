"""The time-to-event part of the likelihood: a joint longitudinal and survival model.

A model with a ``[hazards.NAME]`` section carries the cumulative hazard ``Lambda(t)`` as a state
(so forward and grid sensitivities give ``d Lambda / d theta``) and the hazard ``h(t)`` and
``Lambda(t)`` as observables (:class:`progression.model.spec.Hazard`). A fit config with a
``[survival]`` table (:class:`SurvivalSpec`) gives each subject with an event row in the data
(the cohort's events table: ``subject, time, event``) one :class:`SurvivalRecord`, and
:meth:`progression.fit.problem.Problem.evaluate` adds, per subject, the log-likelihood

===================  ===============================================================
record               ``log L``
===================  ===============================================================
exact event at T     ``log h(T) - (Lambda(T) - Lambda(T0))``
right-censored at T  ``-(Lambda(T) - Lambda(T0))``
event in (L, R]      ``log(S(L) - S(R)) - log S(T0)
                     = -(Lambda(L) - Lambda(T0)) + log(1 - exp(-(Lambda(R) - Lambda(L))))``
===================  ===============================================================

with ``T0`` the subject's entry (delayed entry, left truncation: a subject enrolled alive at
``T0`` contributes ``S(T)/S(T0)``; ALS cohorts are on the enrolment clock and enter at their
first visit or at enrolment). Times are data times, shifted to model time by the subject's
time offset like every observation (``d Lambda(T) / d tau = h(T)`` comes from the same
trajectory derivative as an observation's offset derivative).

**Residuals.** The estimators minimise a sum of squares equal to ``-2 log L`` up to a
constant, so each record becomes residuals whose squares add up to its ``-2 log L``:
``r1 = sqrt(2 (Lambda(T or L) - Lambda(T0)))`` (>= 0 since the hazard is >= 0), for an exact
event ``r2 = sqrt(C - 2 log h(T))`` with ``C = 50`` (the construction of the error models'
sigma residual, :data:`~progression.fit.errormodels.C_SIGMA`; real for ``h < e^25``), for an
interval ``r2 = sqrt(-2 log(1 - exp(-(Lambda(R) - Lambda(L)))))``. Their derivatives come from
those of the pseudo-observations ``Lambda`` and ``h`` at the record's times, which
:meth:`~progression.fit.problem.Problem.evaluate` obtains with the longitudinal data, on the
same path (grid or exact) and from the same solve. The reported ``m2ll`` is the exact
``-2 log L`` (no ``C``).

**Information.** The information added per subject is ``dD dD^T / D`` for ``D = Lambda(T)
- Lambda(T0)`` (twice the Gauss-Newton matrix of ``r1``): for a log-linear hazard
``h = exp(x' theta)`` constant in time it is the observed information ``D x x^T`` exactly,
otherwise a lower bound of the cumulative-hazard part (Cauchy-Schwarz); plus the Gauss-Newton
matrix of ``r2`` for interval records. The ``log h`` term of an exact event adds no curvature
for a log-linear hazard, and none is added.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errormodels import C_SIGMA

__all__ = ["SurvivalSpec", "SurvivalRecord", "EXACT", "RIGHT", "INTERVAL", "ENTRIES",
           "augment", "survival_terms", "record_for", "RecordSlots", "record_slots",
           "survival_m2ll"]

#: Record kinds.
EXACT, RIGHT, INTERVAL = 0, 1, 2
KIND_NAMES = {EXACT: "event", RIGHT: "right-censored", INTERVAL: "interval-censored"}
#: ``[survival] entry``: the subject's first observation time (delayed entry), data time 0
#: (enrolment), or none (at risk since model time 0).
ENTRIES = ("first", "enrolment", "none")
#: Pseudo-observation slots of a record.
_T, _ENTRY, _H, _L = range(4)


@dataclass(frozen=True)
class SurvivalSpec:
    """The ``[survival]`` table of a fit config, resolved against the model.

    Attributes
    ----------
    hazard : str
        The model's ``[hazards.NAME]``.
    events : tuple of str
        Event types of the data counted as the event (others than ``"censored"`` not listed
        are right-censored at their time).
    entry : {"first", "enrolment", "none"}
        Delayed entry at the subject's first observation, at data time 0, or none.
    interval : bool
        An event is known only to lie between the subject's last observation before it and
        its recorded time (interval censoring); exact otherwise.
    cumulative, rate : str
        The model observables ``cumhaz_NAME`` and ``hazard_NAME``.
    """

    hazard: str
    events: tuple = ("death",)
    entry: str = "first"
    interval: bool = False
    cumulative: str = ""
    rate: str = ""


@dataclass(frozen=True)
class SurvivalRecord:
    """One subject's time-to-event datum, in data time.

    Attributes
    ----------
    kind : int
        :data:`EXACT`, :data:`RIGHT` or :data:`INTERVAL`.
    time : float
        Event or censoring time (the upper end ``R`` of an interval).
    lower : float
        Lower end ``L`` of an interval (NaN otherwise).
    entry : float
        Entry time (NaN: at risk since model time 0).
    """

    kind: int
    time: float
    lower: float = float("nan")
    entry: float = float("nan")


def record_for(spec: SurvivalSpec, event, first_time: float, times) -> SurvivalRecord | None:
    """A subject's record from its event row (``event.time``, ``event.type``) and its
    observation times; None without an event row.

    ``times`` are the subject's observation times (all observables): the interval of an
    interval-censored event starts at the last of them before the event (at the entry when
    none is).
    """
    if event is None:
        return None
    entry = {"first": float(first_time), "enrolment": 0.0, "none": float("nan")}[spec.entry]
    t = float(event.time)
    if str(event.type) in spec.events:
        if spec.interval:
            before = np.asarray(times, float)
            before = before[before < t]
            lower = float(before.max()) if before.size else (entry if np.isfinite(entry)
                                                             else 0.0)
            return SurvivalRecord(INTERVAL, t, lower, entry)
        return SurvivalRecord(EXACT, t, entry=entry)
    return SurvivalRecord(RIGHT, t, entry=entry)


def _points(rec: SurvivalRecord):
    """(data times, slots) of a record's pseudo-observations."""
    times, slots = [rec.time], [_T]
    if np.isfinite(rec.entry):
        times.append(rec.entry)
        slots.append(_ENTRY)
    if rec.kind == EXACT:
        times.append(rec.time)
        slots.append(_H)
    elif rec.kind == INTERVAL:
        times.append(rec.lower)
        slots.append(_L)
    return times, slots


@dataclass
class Augmented:
    """Where the pseudo-observations of a batch are (see :func:`augment`)."""

    designs: list
    n_real: np.ndarray          # per design: its data values (the first n_real of its values)
    slot: list                  # per design: slots of its pseudo-observations


def augment(problem, designs) -> Augmented:
    """Designs with each subject's survival pseudo-observations appended after its data.

    A pseudo-observation has the observable index ``len(problem.observables)`` (the
    cumulative hazard) or that plus one (the hazard), value NaN, no censoring, no condition
    (the subject's own trajectory).
    """
    k = len(problem.observables)
    out, n_real, slots = [], [], []
    for d in designs:
        n_real.append(d.n)
        rec = getattr(d, "survival", None)
        if rec is None:
            out.append(d)
            slots.append(np.zeros(0, dtype=int))
            continue
        times, slot = _points(rec)
        slot = np.asarray(slot, dtype=int)
        m = slot.size
        obs = np.where(slot == _H, k + 1, k)
        changes = {"time": np.concatenate([d.time, times]),
                   "obs": np.concatenate([d.obs, obs]).astype(int),
                   "value": np.concatenate([d.value, np.full(m, np.nan)]),
                   "cens": np.concatenate([d.cens, np.zeros(m, dtype=int)]),
                   "limit": np.concatenate([d.limit, np.full(m, np.nan)])}
        if d.condition is not None:
            changes["condition"] = np.concatenate([d.condition, np.full(m, "", dtype=object)]
                                                  ).astype(str)
        if d.sd is not None:
            changes["sd"] = np.concatenate([d.sd, np.full(m, np.nan)])
        out.append(dataclasses.replace(d, **changes))
        slots.append(slot)
    return Augmented(out, np.asarray(n_real, dtype=int), slots)


class SurvivalTerms:
    """Residuals, Jacobians, ``-2 log L`` and information of the survival records of a batch.

    Attributes
    ----------
    rows : ndarray of int (K,)
        The row of each residual.
    r, dr : ndarray (K,), (K, D)
    m2ll : ndarray (R,)
        Per row (0 without a record).
    info : ndarray (R, D, D)
    bad : ndarray of bool (R,)
        Rows whose survival term is not finite (a hazard <= 0 at an event, a decreasing
        cumulative hazard).
    """

    __slots__ = ("rows", "r", "dr", "m2ll", "info", "bad")


def survival_terms(aug: Augmented, row_design, f, df, R: int) -> SurvivalTerms:
    """Evaluate every row's survival term from its pseudo-observations.

    Parameters
    ----------
    aug : Augmented
    row_design : int array (R,)
    f : ndarray (M,)
        Values of the batch's pseudo-observations, row by row, each row's in its design's
        slot order.
    df : ndarray (M, D)
        Their derivatives with respect to the differentiated columns (estimation scale or
        natural: the caller scales).
    R : int
    """
    D = df.shape[1]
    t = SurvivalTerms()
    rows, r, dr = [], [], []
    t.m2ll = np.zeros(R)
    t.info = np.zeros((R, D, D))
    t.bad = np.zeros(R, dtype=bool)
    pos = 0
    with np.errstate(all="ignore"):
        for row, d in enumerate(row_design):
            slot = aug.slot[d]
            m = slot.size
            if not m:
                continue
            rec = aug.designs[d].survival
            v = dict(zip(slot.tolist(), f[pos:pos + m], strict=True))
            g = dict(zip(slot.tolist(), df[pos:pos + m], strict=True))
            pos += m
            zero = np.zeros(D)
            lam_e, dlam_e = v.get(_ENTRY, 0.0), g.get(_ENTRY, zero)
            if rec.kind == INTERVAL:
                top, dtop = v[_L], g[_L]
            else:
                top, dtop = v[_T], g[_T]
            delta, ddelta = top - lam_e, dtop - dlam_e
            # a cumulative hazard decreasing by round-off (an interval of zero length) is 0
            if delta < 0 and delta > -1e-12 * max(1.0, abs(top)):
                delta = 0.0
            m2 = 2.0 * delta
            r1 = np.sqrt(m2) if delta >= 0 else np.nan
            dr1 = ddelta / r1 if r1 > 0 else zero
            first = len(r)
            rows.append(row)
            r.append(r1)
            dr.append(dr1)
            if delta > 0:
                t.info[row] += np.outer(ddelta, ddelta) / delta
            if rec.kind == EXACT:
                h, dh = v[_H], g[_H]
                log_h = np.log(h) if h > 0 else np.nan
                arg = C_SIGMA - 2.0 * log_h
                r2 = np.sqrt(arg) if arg > 0 else np.nan
                dr2 = -(dh / h) / r2
                m2 += -2.0 * log_h
                rows.append(row)
                r.append(r2)
                dr.append(dr2)
            elif rec.kind == INTERVAL:
                width = v[_T] - v[_L]
                dwidth = g[_T] - g[_L]
                # -2 log(1 - exp(-w)), its derivative -2 / expm1(w) dw
                g2 = -2.0 * np.log(-np.expm1(-width)) if width > 0 else np.nan
                r2 = np.sqrt(max(g2, 0.0))
                dg = -2.0 / np.expm1(width) * dwidth
                dr2 = dg / (2.0 * r2) if r2 > 0 else zero
                m2 += g2
                rows.append(row)
                r.append(r2)
                dr.append(dr2)
                t.info[row] += np.outer(dr2, dr2)
            t.m2ll[row] = m2
            if not np.isfinite(m2) or not all(np.isfinite(x) for x in r[first:]):
                t.bad[row] = True
    t.rows = np.asarray(rows, dtype=int)
    t.r = np.asarray(r, dtype=float)
    t.dr = np.asarray(dr, dtype=float).reshape(len(r), D)
    return t


@dataclass(frozen=True)
class RecordSlots:
    """Where each design's record reads its pseudo-observations (:func:`record_slots`).

    Attributes
    ----------
    kind : ndarray of int (N,)
        The record's kind per design (:data:`EXACT`, :data:`RIGHT`, :data:`INTERVAL`), -1
        without a record.
    pos : ndarray of int (N, 4)
        Per design, the position among its augmented values of the pseudo-observation of
        each slot (event or censoring time, entry, hazard at the event, lower end of the
        interval), -1 where the record has none.
    """

    kind: np.ndarray
    pos: np.ndarray


def record_slots(aug: Augmented) -> RecordSlots:
    """The positions of every design's pseudo-observations in its augmented values."""
    N = len(aug.designs)
    kind = np.full(N, -1, dtype=int)
    pos = np.full((N, 4), -1, dtype=int)
    for i, d in enumerate(aug.designs):
        slot = aug.slot[i]
        if slot.size:
            kind[i] = d.survival.kind
            pos[i, slot] = aug.n_real[i] + np.arange(slot.size)
    return RecordSlots(kind, pos)


def survival_m2ll(slots: RecordSlots, index, values) -> np.ndarray:
    """``-2 log L`` of the rows' time-to-event records from their pseudo-observations'
    values, all rows at once (the ``m2ll`` of :func:`survival_terms` without derivatives:
    the SAEM chains evaluate it for every proposal).

    Parameters
    ----------
    slots : RecordSlots
    index : int array (R,)
        The design of each row.
    values : ndarray (R, n)
        Each row's values of its augmented design (the pseudo-observations at the positions
        of ``slots``; the cumulative hazard and the hazard on their natural scale).

    Returns
    -------
    ndarray (R,)
        0 for rows without a record; NaN where the term is not finite (a hazard <= 0 at the
        event, a cumulative hazard decreasing from the entry).
    """
    index = np.asarray(index, dtype=int)
    kind, pos = slots.kind[index], slots.pos[index]
    R = index.size

    def at(slot):
        p = pos[:, slot]
        v = values[np.arange(R), np.maximum(p, 0)]
        return np.where(p >= 0, v, 0.0)

    with np.errstate(all="ignore"):
        top = np.where(kind == INTERVAL, at(_L), at(_T))
        delta = top - at(_ENTRY)
        # a cumulative hazard decreasing by round-off (an interval of zero length) is 0
        delta = np.where((delta < 0) & (delta > -1e-12 * np.maximum(1.0, np.abs(top))), 0.0,
                         delta)
        m2 = np.where(delta >= 0, 2.0 * delta, np.nan)
        h = at(_H)
        m2 = m2 + np.where(kind == EXACT, np.where(h > 0, -2.0 * np.log(h), np.nan), 0.0)
        width = at(_T) - at(_L)
        m2 = m2 + np.where(kind == INTERVAL,
                           np.where(width > 0, -2.0 * np.log(-np.expm1(-width)), np.nan), 0.0)
    m2 = np.where(kind < 0, 0.0, m2)
    return np.where(np.isfinite(m2), m2, np.nan)
