"""Compiled fixed-step RK4 predictions of subjects with doses or time-varying covariates, for
SAEM's kernels.

The scheme of :mod:`._saem_compiled` (classical RK4, cubic Hermite interpolation of the
states between the ends of a step, the observable through the model's ``observe`` kernel, its
log for log-normal observables), integrated piecewise between a row's dose events: from model
time 0 to its first event, from there to the next, and so on to its last observation, each
piece in ``ceil(length / h)`` equal steps of at most ``h``, so that every event falls on a
step's end. At an event a bolus adds ``F * AMT`` to its compartment's state (``F`` the row's
value of the compartment's bioavailability parameter, 1 without one) and an infusion's start
or end adds or takes its rate (``AMT / duration``) to the compartment's input parameter
``rate_STATE`` (whose term in the equation is ``F * rate_STATE``), at the record's time plus the
row's lag parameter: the actions of :mod:`progression.simulate._dosing`, so the same model.
As in ``simulate()``, a value observed at an event's time shows the state after the event.
A model's time-varying covariates (``[covariates.NAME]``, carried as hidden parameter rows after
the parameters, :mod:`progression.simulate._covariates`) are events too: at each of the
subject's recorded times the hidden rows are set to the piece that starts there (the level,
and for linear interpolation the slope, a level re-expressed in model time with the row's time
offset), the integration restarting there as ``simulate()``'s does.

What it covers: bolus doses and zero-order infusions of given rate or duration or of a rate
or duration taken from the model (NONMEM's ``RATE = -1`` / ``-2``: the input parameters
``nrate_STATE`` / ``damt_STATE`` of :mod:`progression.simulate._dosing`, the infusion's end
placed in the kernel at ``F * AMT / R`` or ``D`` from the row's parameters), with
additional doses (ADDL/II), bioavailability and lag parameters, time-varying covariates,
resets (``EVID`` 3/4: every state back to its initial value, the inputs to 0, running
infusions stopped, as ``dose_switches``) and steady-state records (``SS = 1``: a reset, then
the states set to the fixed point ``y = Phi(y)`` of one interval ``II`` with the record's
dose at its lag and the covariates held at their values at the dose, found by Newton's
method with a finite-difference Jacobian of the RK4 map ``Phi`` as ``simulate()``'s
``steady_states`` finds it with its own integrator; a map without a fixed point makes the
row NaN, a failed evaluation). Events at one time act in this order: covariate rows
(right-continuous, as ``simulate()``'s), resets and steady states, infusion ends, infusion
starts, boluses. Experimental conditions keep the exact path
(:func:`._saem_model.applicable`). Hand-written
rather than a scipy integrator for the reason of :mod:`._saem_model`: SAEM evaluates every
chain a dozen times per iteration and needs no derivative; the step is calibrated against
the exact path before use (:meth:`._saem_model.RK4Predictions.calibrate`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._saem_compiled import AVAILABLE, CHUNK, _parallel

if AVAILABLE:
    import numba
    from numba import njit, prange

    from ._saem_compiled import _hermite, _rk4_step, _sorted_slots

__all__ = ["InputSchedule", "input_schedule", "rk4_dosed_rows"]

#: Event kinds of a schedule: a bolus into a state, a change of an input parameter, a hidden
#: (covariate) row set to a value, a reset, a reset to the periodic steady state.
BOLUS, RATE, SET, RESET, STEADY = 0, 1, 2, 3, 4


#: How an infusion's duration is known: given in the record, ``F * AMT / R`` (NONMEM's
#: ``RATE = -1``, ``R`` a parameter), ``D`` (``RATE = -2``, ``D`` a parameter).
GIVEN, MODELLED_RATE, MODELLED_DURATION = 0, 1, 2


def _event(time, kind, target=-1, value=0.0, *, gain=0.0, bioavailability=-1, lag=-1,
           infusion=-1, period=0.0, length=0.0, amount=0.0, length_parameter=-1,
           modelled=GIVEN):
    """One event as the tuple of :class:`InputSchedule`'s per-event fields, in their order."""
    return (float(time), kind, int(target), float(value), float(gain), int(bioavailability),
            int(lag), int(infusion), float(period), float(length), float(amount),
            int(length_parameter), int(modelled))


#: The dtypes of :func:`_event`'s fields, in their order (the schedule's arrays).
_EVENT_DTYPES = (np.float64, np.int8, np.int64, np.float64, np.float64, np.int64, np.int64,
                 np.int64, np.float64, np.float64, np.float64, np.int64, np.int8)


@dataclass(frozen=True)
class InputSchedule:
    """Every design's dose and covariate events, padded to the longest (E events).

    Attributes
    ----------
    time : ndarray (N, E)
        Event times in data time, before the lag (the design's model time adds its offset).
    kind : ndarray of int8 (N, E)
        :data:`BOLUS`, :data:`RATE` or :data:`SET`.
    target : ndarray of int64 (N, E)
        The state a bolus enters, the input parameter (``rate_STATE``) an infusion changes,
        the hidden row (index after the parameters) a covariate event sets; for a steady
        state the state (bolus) or input parameter (infusion) of its record's dose.
    value : ndarray (N, E)
        A bolus's amount, the change of the input parameter, the hidden row's new value; a
        steady state's dose amount (bolus) or rate (infusion).
    offset_gain : ndarray (N, E)
        Added to ``value`` per unit of the row's time offset (a linear covariate's level,
        ``-slope``: the piece ``level + slope t`` in data time is ``level - slope offset +
        slope t`` in model time); 0 elsewhere.
    bioavailability, lag : ndarray of int64 (N, E)
        Parameter index of the compartment's bioavailability and lag (-1: none). A steady
        state is not delayed itself: its lag delays the dose inside the interval.
    infusion : ndarray of int64 (N, E)
        The number of the infusion (within its design) a rate change starts or ends (-1:
        none): an end after a reset that followed its start does nothing.
    period, length : ndarray (N, E)
        A steady state's interval ``II`` and its dose's infusion duration (0: a bolus).
    amount : ndarray (N, E)
        A steady state's dose amount (the scale of its Newton steps), a modelled infusion's
        amount (its end at ``F * amount / R`` after its start).
    length_parameter : ndarray of int64 (N, E)
        The rate ``R`` or duration ``D`` parameter of a modelled infusion's end or steady state
        (-1: none).
    modelled : ndarray of int8 (N, E)
        :data:`GIVEN`, :data:`MODELLED_RATE` or :data:`MODELLED_DURATION`; for a modelled
        infusion's end ``time`` is its start's, the kernel adds the duration.
    count : ndarray of int64 (N,)
        Events per design.
    hidden0 : ndarray (N, H)
        The hidden (covariate) rows before a design's first recorded time (H = 0 without
        covariates).
    slope_rows : ndarray of int64 (H,)
        For a linearly interpolated covariate's level row the index of its slope row (-1:
        none): a steady state's interval holds ``level + slope t`` at the dose's ``t``.
    zero_dose : ndarray of bool (N,)
        Designs whose record-free dose parameter is 0 (the data give dose records).
    dose_parameter : int
        Index of that parameter (-1: the model has none).
    """

    time: np.ndarray
    kind: np.ndarray
    target: np.ndarray
    value: np.ndarray
    offset_gain: np.ndarray
    bioavailability: np.ndarray
    lag: np.ndarray
    infusion: np.ndarray
    period: np.ndarray
    length: np.ndarray
    amount: np.ndarray
    length_parameter: np.ndarray
    modelled: np.ndarray
    count: np.ndarray
    hidden0: np.ndarray
    slope_rows: np.ndarray
    zero_dose: np.ndarray
    dose_parameter: int


def input_schedule(model, designs) -> InputSchedule | None:
    """The designs' dose and covariate events (:class:`InputSchedule`), or None when the
    model has neither dosing compartments nor covariates, or a design's covariates cannot be
    scheduled."""
    from ...errors import ProgressionError
    from ...simulate._dosing import dose_table

    spec = getattr(model, "spec", None)
    comps = {c.state: c for c in (getattr(spec, "dosing", ()) or ())}
    covariates = tuple(getattr(model, "covariate_names", ()))
    hidden = tuple(getattr(model, "hidden_names", ())) if covariates else ()
    if not comps and not covariates:
        return None
    P = len(model.parameter_names)

    def index(name):
        return -1 if name is None else int(model.parameter_index(name))

    # for a linearly interpolated covariate's level row, its slope row (-1: none)
    slopes = np.array([hidden.index(f"{n}.slope") if f"{n}.slope" in hidden else -1
                       for n in hidden], dtype=np.int64)
    events = []
    hidden0 = np.zeros((len(designs), len(hidden)))
    for i, d in enumerate(designs):
        rows = []
        if covariates:
            try:
                rows += _covariate_events(model, d, slopes, P, hidden0[i])
            except ProgressionError:
                return None
        if d.doses and not comps:
            return None
        if d.doses:
            records, _ = dose_table(model, list(d.doses))
            infusions = 0
            for rec in records:
                if rec["reset"] and not rec["ss"]:
                    rows.append(_event(rec["time"], RESET))
                if not rec["dose"]:
                    continue
                comp = comps[rec["state"]]
                f, lag = index(comp.bioavailability), index(comp.lag)
                state = int(model.state_index(comp.state))
                modelled = _modelled(model, comp, rec)
                if rec["ss"]:
                    infused = rec["duration"] > 0
                    target, value = ((index(comp.rate), rec["rate"]) if infused
                                     else (state, rec["amount"]))
                    if modelled:
                        target, value = modelled[0], modelled[1]
                    rows.append(_event(
                        rec["time"], STEADY, target, value, bioavailability=f, lag=lag,
                        period=rec["ii"], length=rec["duration"], amount=rec["amount"],
                        length_parameter=modelled[2] if modelled else -1,
                        modelled=modelled[3] if modelled else GIVEN))
                for k in range(rec["addl"] + 1):
                    t = rec["time"] + k * rec["ii"]
                    if modelled:
                        target, value, q, how = modelled
                        rows.append(_event(t, RATE, target, value, lag=lag,
                                           infusion=infusions))
                        rows.append(_event(t, RATE, target, -value, lag=lag,
                                           infusion=infusions, bioavailability=f,
                                           amount=rec["amount"], length_parameter=q,
                                           modelled=how))
                        infusions += 1
                    elif rec["duration"] > 0:
                        q = index(comp.rate)
                        rows.append(_event(t, RATE, q, rec["rate"], lag=lag,
                                           infusion=infusions))
                        rows.append(_event(t + rec["duration"], RATE, q, -rec["rate"],
                                           lag=lag, infusion=infusions))
                        infusions += 1
                    else:
                        rows.append(_event(t, BOLUS, state, rec["amount"],
                                           bioavailability=f, lag=lag))
        events.append(sorted(rows, key=lambda e: e[0]))
    N, E = len(designs), max([1] + [len(e) for e in events])
    # padding after a design's events is never read (``count``): the defaults of _event
    fields = [np.full((N, E), v, dtype=t)
              for v, t in zip(_event(0.0, BOLUS), _EVENT_DTYPES, strict=True)]
    for i, rows in enumerate(events):
        for e, row in enumerate(rows):
            for field, v in zip(fields, row, strict=True):
                field[i, e] = v
    dp = getattr(spec, "dose_parameter", None)
    zero = np.array([bool(d.dose_records or d.doses) for d in designs], dtype=bool)
    return InputSchedule(*fields, np.array([len(e) for e in events], dtype=np.int64), hidden0,
                         slopes, zero, index(dp) if comps else -1)


def _modelled(model, comp, rec):
    """For a record whose infusion takes its rate (``RATE = -1``) or duration (``-2``) from
    the model: (input parameter, what its start adds, the rate or duration parameter, how the
    duration follows); None for other records. The inputs are
    :mod:`progression.simulate._dosing`'s: ``nrate_STATE`` counts running infusions (the
    equation gains ``nrate_STATE * R``), ``damt_STATE`` sums their amounts (``+ F *
    damt_STATE / D``)."""
    if rec["mode"] == -1:
        return (int(model.parameter_index(comp.running)), 1.0,
                int(model.parameter_index(comp.rate_parameter)), MODELLED_RATE)
    if rec["mode"] == -2:
        return (int(model.parameter_index(comp.infusing)), float(rec["amount"]),
                int(model.parameter_index(comp.duration_parameter)), MODELLED_DURATION)
    return None


def _covariate_events(model, design, slopes, P, hidden0):
    """A design's covariate events (SET rows) and, written into ``hidden0``, its hidden rows
    before its first recorded time, from ``simulate()``'s own schedule (defaults for the
    covariates the design does not give); ``slopes`` as :attr:`InputSchedule.slope_rows`."""
    from ...simulate._covariates import covariate_schedule

    series = {name: (np.asarray(t, dtype=float), np.asarray(v, dtype=float))
              for name, t, v in design.covariates}
    cs = covariate_schedule(model, series, 1)
    breaks = cs.subject_breaks()[0]
    breaks = breaks[np.isfinite(breaks)]
    hidden0[:] = cs.hidden(breaks[0] - 1.0 if breaks.size else 0.0)[:, 0]
    rows = []
    for b in breaks:
        h = cs.hidden(b)[:, 0]
        for k, j in enumerate(slopes):
            rows.append(_event(b, SET, P + k, h[k], gain=-h[j] if j >= 0 else 0.0))
    return rows


if AVAILABLE:
    @njit(cache=True, error_model="numpy")
    def _observed(observe, t, y, p, obs, k, take_log):
        """Observable ``k`` at time ``t`` and states ``y`` (its log with ``take_log``)."""
        observe(t, y, p, obs)
        return math.log(obs[k]) if take_log else obs[k]

    @njit(cache=True, error_model="numpy")
    def _advance(rhs, t, end, h, y, p, f0, s2, s3, s4, tmp, y1):
        """``y`` from ``t`` to ``end`` in ``ceil((end - t) / h)`` equal RK4 steps (in place)."""
        if end <= t:
            return
        ns = max(1, int(math.ceil((end - t) / h)))
        hk = (end - t) / ns
        for k in range(ns):
            t0 = t + k * hk
            rhs(t0, y, p, f0)
            _rk4_step(rhs, t0, hk, y, p, f0, s2, s3, s4, tmp, y1)
            for i in range(y.size):
                y[i] = y1[i]

    @njit(cache=True, error_model="numpy")
    def _one_interval(rhs, t, ii, lag, length, target, value, gain, h, y, p, w):
        """``y`` one interval ``ii`` after ``t`` (in place): a steady-state record's dose at
        ``t + lag``, a bolus ``gain * value`` into state ``target`` or (``length`` > 0) an
        infusion at rate ``value`` on input parameter ``target``; ``w`` (6, n) work rows."""
        end = t + ii
        a = t + lag
        if a >= end:
            _advance(rhs, t, end, h, y, p, w[0], w[1], w[2], w[3], w[4], w[5])
            return
        _advance(rhs, t, a, h, y, p, w[0], w[1], w[2], w[3], w[4], w[5])
        if length > 0.0:
            b = min(a + length, end)
            p[target] += value
            _advance(rhs, a, b, h, y, p, w[0], w[1], w[2], w[3], w[4], w[5])
            p[target] -= value
            _advance(rhs, b, end, h, y, p, w[0], w[1], w[2], w[3], w[4], w[5])
        else:
            y[target] += gain * value
            _advance(rhs, a, end, h, y, p, w[0], w[1], w[2], w[3], w[4], w[5])

    @njit(cache=True, error_model="numpy")
    def _solve_in_place(A, b):
        """``b`` <- ``A^-1 b`` by Gaussian elimination with partial pivoting (``A`` is
        overwritten); False when ``A`` is singular to 1e-10 of its largest element (a
        finite-difference Jacobian's rounding). Hand-written: ``np.linalg.solve`` raises on
        a singular matrix, and an exception cannot leave a parallel compiled loop as a failed
        row."""
        n = b.size
        norm = 0.0
        for i in range(n):
            for j in range(n):
                norm = max(norm, abs(A[i, j]))
        for c in range(n):
            piv = c
            for i in range(c + 1, n):
                if abs(A[i, c]) > abs(A[piv, c]):
                    piv = i
            if not abs(A[piv, c]) > 1e-10 * norm:
                return False
            if piv != c:
                for j in range(n):
                    A[c, j], A[piv, j] = A[piv, j], A[c, j]
                b[c], b[piv] = b[piv], b[c]
            for i in range(c + 1, n):
                m = A[i, c] / A[c, c]
                for j in range(c, n):
                    A[i, j] -= m * A[c, j]
                b[i] -= m * b[c]
        for c in range(n - 1, -1, -1):
            acc = b[c]
            for j in range(c + 1, n):
                acc -= A[c, j] * b[j]
            b[c] = acc / A[c, c]
        return True

    @njit(cache=True, error_model="numpy")
    def _steady_state(rhs, t, ii, lag, length, target, value, gain, amount, h, y, p):
        """``y`` <- the periodic steady state just before a dose at ``t`` repeated every
        ``ii`` (the arguments of :func:`_one_interval`; ``amount`` the dose's, the scale of
        the finite differences): the fixed point of the one-interval
        map by Newton's method with a finite-difference Jacobian, from 0, as
        ``simulate()``'s ``steady_states``; False when one interval does not return to its
        start (relative 1e-9) within 25 steps."""
        n = y.size
        w = np.empty((6, n))
        x = np.zeros(n)
        fx = np.empty(n)
        fe = np.empty(n)
        J = np.empty((n, n))
        step = np.empty(n)
        scale = max(abs(amount), 1e-12)
        for _ in range(25):
            fx[:] = x
            _one_interval(rhs, t, ii, lag, length, target, value, gain, h, fx, p, w)
            # converged when one interval returns to the start: a residual test, as a
            # singular map (no elimination) can give a finite but meaningless Newton step
            big = 0.0
            size = scale
            for i in range(n):
                step[i] = x[i] - fx[i]          # (J - I) step = -(Phi(x) - x)
                big = max(big, abs(step[i]))
                size = max(size, abs(x[i]), abs(fx[i]))
            if not math.isfinite(big):
                return False
            if big <= 1e-9 * size:
                y[:] = fx
                return True
            for j in range(n):
                hj = 1e-3 * max(abs(x[j]), scale)
                fe[:] = x
                fe[j] += hj
                _one_interval(rhs, t, ii, lag, length, target, value, gain, h, fe, p, w)
                for i in range(n):
                    J[i, j] = (fe[i] - fx[i]) / hj
                J[j, j] -= 1.0
            if not _solve_in_place(J, step):
                return False
            for i in range(n):
                x[i] += step[i]
        return False

    @njit(cache=True, error_model="numpy")
    def _modelled_length(p, how, q, f, amount):
        """A modelled infusion's duration at the row's parameters: ``F * amount / R``
        (:data:`MODELLED_RATE`) or ``D``; NaN when ``R`` or ``D`` is not finite and > 0."""
        v = p[q]
        if not (math.isfinite(v) and v > 0.0):
            return np.nan
        if how == 2:
            return v
        return (p[f] if f >= 0 else 1.0) * amount / v

    @njit(cache=True, error_model="numpy")
    def _rank(kind, value):
        """Order of an event among those at one time (module docstring)."""
        if kind == 2:
            return 0
        if kind == 3 or kind == 4:
            return 1
        if kind == 1:
            return 2 if value < 0.0 else 3
        return 4

    @njit(cache=True, error_model="numpy")
    def _dosed_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, n_states, n_obs,
                   et, ek, eg, ev, ef, el, ei, ep, ed, ea, eq, em, ne, slope_rows, out):
        """Row ``r`` of :func:`_dosed_rows_par` (its arguments; the kernels unpacked)."""
        n = tm.shape[1]
        p = P[r].copy()
        y = np.empty(n_states)
        f0 = np.empty(n_states)
        s2 = np.empty(n_states)
        s3 = np.empty(n_states)
        s4 = np.empty(n_states)
        y1 = np.empty(n_states)
        f1 = np.empty(n_states)
        tmp = np.empty(n_states)
        yo = np.empty(n_states)
        obs = np.empty(n_obs)
        for j in range(n):
            out[r, j] = 0.0
        slots = np.empty(n, dtype=np.int64)
        m = _sorted_slots(r, tm, mask, slots)
        if m == 0:
            return
        # the events' model times with the row's lags (an event before model time 0 acts
        # at 0), in time order and at one time in simulate()'s order
        E = ne[r]
        te = np.empty(E)
        rank = np.empty(E, dtype=np.int64)
        order = np.empty(E, dtype=np.int64)
        running = np.zeros(E, dtype=np.bool_)
        good = True
        for e in range(E):
            t = et[r, e]
            if el[r, e] >= 0:
                lag = p[el[r, e]]
                if not (math.isfinite(lag) and lag >= 0.0):
                    good = False
                if ek[r, e] != 4:
                    t += lag
            if em[r, e] != 0 and ek[r, e] == 1 and ev[r, e] < 0.0:
                # a modelled infusion's end: its duration from the row's parameters
                t += _modelled_length(p, em[r, e], eq[r, e], ef[r, e], ea[r, e])
                good &= math.isfinite(t)
            te[e] = max(t, 0.0)
            rank[e] = _rank(ek[r, e], ev[r, e])
            order[e] = e
        for a in range(1, E):
            v = order[a]
            b = a - 1
            while b >= 0 and (te[order[b]] > te[v]
                              or (te[order[b]] == te[v] and rank[order[b]] > rank[v])):
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = v
        t_last = tm[r, slots[m - 1]]
        initial(0.0, y, p, y)
        t = 0.0
        q = 0
        nxt = 0
        while good:
            # the events at the current time, then the values observed there
            while q < E and te[order[q]] <= t:
                e = order[q]
                kind = ek[r, e]
                if kind == 0:
                    gain = p[ef[r, e]] if ef[r, e] >= 0 else 1.0
                    y[eg[r, e]] += gain * ev[r, e]
                elif kind == 1:
                    # an infusion's end acts only while it runs (a reset stopped it)
                    if ev[r, e] > 0.0 or running[ei[r, e]]:
                        p[eg[r, e]] += ev[r, e]
                        running[ei[r, e]] = ev[r, e] > 0.0
                elif kind == 2:
                    p[eg[r, e]] = ev[r, e]
                else:
                    for e2 in range(E):
                        if ek[r, e2] == 1:
                            p[eg[r, e2]] = 0.0
                        running[e2] = False
                    initial(t, y, p, tmp)
                    y[:] = tmp
                    if kind == 4:
                        gain = p[ef[r, e]] if ef[r, e] >= 0 else 1.0
                        lag = p[el[r, e]] if el[r, e] >= 0 else 0.0
                        length = ed[r, e]
                        if em[r, e] != 0:
                            length = _modelled_length(p, em[r, e], eq[r, e], ef[r, e],
                                                      ea[r, e])
                        # as simulate(): the infusion must end within the interval, the
                        # covariates held at their values now (a linear piece's slope 0)
                        good &= length <= ep[r, e]
                        H = slope_rows.size
                        base = p.size - H
                        held = p[base:].copy()
                        for k in range(H):
                            if slope_rows[k] >= 0:
                                p[base + k] += p[base + slope_rows[k]] * t
                        for k in range(H):
                            if slope_rows[k] >= 0:
                                p[base + slope_rows[k]] = 0.0
                        good = good and _steady_state(rhs, t, ep[r, e], lag, length,
                                                      eg[r, e], ev[r, e], gain, ea[r, e],
                                                      h, y, p)
                        p[base:] = held
                q += 1
            while nxt < m and tm[r, slots[nxt]] <= t:
                j = slots[nxt]
                out[r, j] = _observed(observe, tm[r, j], y, p, obs, oi[r, j], lg[r, j])
                good &= math.isfinite(out[r, j])
                nxt += 1
            if nxt >= m or not good:
                break
            # the next piece: to the next event or the last observation
            end = t_last
            if q < E and te[order[q]] < end:
                end = te[order[q]]
            ns = max(1, int(math.ceil((end - t) / h)))
            hk = (end - t) / ns
            rhs(t, y, p, f0)
            for k in range(ns):
                t0 = t + k * hk
                t1 = end if k == ns - 1 else t + (k + 1) * hk
                hs = t1 - t0
                _rk4_step(rhs, t0, hs, y, p, f0, s2, s3, s4, tmp, y1)
                rhs(t1, y1, p, f1)
                # values inside the step (one at its end is observed at the next step's
                # start, or after the events at the piece's end)
                while nxt < m and tm[r, slots[nxt]] < t1:
                    j = slots[nxt]
                    _hermite((tm[r, j] - t0) / hs, hs, y, f0, y1, f1, yo)
                    out[r, j] = _observed(observe, tm[r, j], yo, p, obs, oi[r, j],
                                          lg[r, j])
                    good &= math.isfinite(out[r, j])
                    nxt += 1
                for i in range(n_states):
                    y[i] = y1[i]
                    f0[i] = f1[i]
                    if not (math.isfinite(y1[i]) and math.isfinite(f1[i])):
                        good = False
                if not good:
                    break
            t = end
        if not good:
            for j in range(n):
                out[r, j] = np.nan

    @njit(parallel=True, cache=True, error_model="numpy")
    def _dosed_rows_par(KL, P, tm, mask, oi, lg, h, n_states, n_obs, et, ek, eg, ev, ef, el,
                        ei, ep, ed, ea, eq, em, ne, slope_rows, out):
        """Predictions of every row into ``out`` (R, n) (NaN rows where not finite); the
        arguments of :func:`rk4_dosed_rows` with the events per row."""
        K = KL[0]
        rhs, initial, observe = K[0], K[3], K[5]
        for r in prange(tm.shape[0]):
            _dosed_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, n_states, n_obs,
                       et, ek, eg, ev, ef, el, ei, ep, ed, ea, eq, em, ne, slope_rows, out)

    @njit(cache=True, error_model="numpy")
    def _dosed_rows_ser(KL, P, tm, mask, oi, lg, h, n_states, n_obs, et, ek, eg, ev, ef, el,
                        ei, ep, ed, ea, eq, em, ne, slope_rows, out):
        """:func:`_dosed_rows_par` on the calling thread (a forked worker, one core)."""
        K = KL[0]
        rhs, initial, observe = K[0], K[3], K[5]
        for r in range(tm.shape[0]):
            _dosed_row(r, rhs, initial, observe, P, tm, mask, oi, lg, h, n_states, n_obs,
                       et, ek, eg, ev, ef, el, ei, ep, ed, ea, eq, em, ne, slope_rows, out)


def rk4_dosed_rows(kernels, schedule, index, P, offset, tm, mask, oi, lg, h):
    """Compiled RK4 predictions of rows with doses (module docstring).

    Parameters
    ----------
    kernels : ModelKernels
        ``model.kernels`` (``n_params`` must equal ``P.shape[1]``).
    schedule : InputSchedule
    index : ndarray of int (R,)
        Each row's design.
    P : ndarray (R, Q)
        Each row's parameters (the record-free dose parameter already 0 where the schedule
        says so; with covariates the hidden rows after them, ``Q = P + H``, as
        ``hidden0``).
    offset : ndarray (R,)
        Model time minus data time of each row (its time offset).
    tm, mask, oi, lg : ndarray (R, n)
        Model times of the observation slots (>= 0), which slots hold a value, the
        observable index of each, whether its log is taken.
    h : float
        Largest step (model time units).

    Returns
    -------
    out : ndarray (R, n)
        Predictions (0 in empty slots, NaN rows where a value or state is not finite or a
        lag parameter is negative).
    """
    from ...simulate._compiled import packed_kernels

    R, n = tm.shape
    out = np.empty((R, n))
    s = schedule
    args = (packed_kernels(kernels), np.ascontiguousarray(P, dtype=np.float64),
            np.ascontiguousarray(tm, dtype=np.float64), np.ascontiguousarray(mask, dtype=bool),
            np.ascontiguousarray(oi, dtype=np.int64), np.ascontiguousarray(lg, dtype=bool),
            float(h), int(kernels.n_states), int(kernels.n_observables),
            np.ascontiguousarray(s.time[index] + np.asarray(offset, float)[:, None]),
            np.ascontiguousarray(s.kind[index]), np.ascontiguousarray(s.target[index]),
            np.ascontiguousarray(s.value[index]
                                 + s.offset_gain[index] * np.asarray(offset, float)[:, None]),
            np.ascontiguousarray(s.bioavailability[index]),
            np.ascontiguousarray(s.lag[index]), np.ascontiguousarray(s.infusion[index]),
            np.ascontiguousarray(s.period[index]), np.ascontiguousarray(s.length[index]),
            np.ascontiguousarray(s.amount[index]),
            np.ascontiguousarray(s.length_parameter[index]),
            np.ascontiguousarray(s.modelled[index]), np.ascontiguousarray(s.count[index]),
            np.ascontiguousarray(s.slope_rows), out)
    with warnings.catch_warnings(), numba.parallel_chunksize(CHUNK):
        # numba calls first-class function types experimental on every compilation/load
        warnings.simplefilter("ignore", numba.NumbaExperimentalFeatureWarning)
        (_dosed_rows_par if _parallel(R) else _dosed_rows_ser)(*args)
    return out
