"""Compiled per-subject integrators: one subject at a time, with the model's numba kernels.

The small-batch path of :func:`~progression.simulate.simulate` (compiled Rodas4 at rtol >=
``AUTO_COMPILED_MIN_RTOL``, compiled DOP853 of :mod:`._dop853_numba` at tighter tolerances,
e.g. a fit's exact path) and the per-subject grid path of :func:`~progression._rodas.
rodas_states` when the model has compiled kernels (:attr:`CompiledModel.kernels`, the
contract in ``progression/model/_kernels.py``).

This module is the Python driver: per subject, the parameters, initial values, switches,
doses and covariate times between segments, the failure messages and the result dict of
:func:`~._stacked._solve_batch`. The numerics are compiled in two modules: one Rodas4 step
(coefficients, LU, error estimate, continuous extension) in :mod:`._rodas4_numba`, the
segment and grid loops (outputs, event root finding, sensitivities) in :mod:`._rodas4_loops`,
whose names this module re-exports.

Without numba this module imports, :data:`AVAILABLE` is False and nothing here is used.
"""

from __future__ import annotations

import numpy as np

from ._rodas4_loops import grid_states, packed_kernels, segment  # noqa: F401 - re-exported
from ._rodas4_numba import AVAILABLE, FAIL_REASONS

__all__ = ["AVAILABLE", "packed_kernels", "segment", "grid_states", "FAIL_REASONS",
           "solve_small_batch", "usable", "METHOD_NAME"]


# ---------------------------------------------------------------------- the Python driver

def usable(model) -> bool:
    """Whether the compiled per-subject path can run this model (numba and kernels)."""
    return AVAILABLE and getattr(model, "kernels", None) is not None


def _autonomous(model) -> bool:
    from .._rodas import _autonomous as autonomous

    return autonomous(model)


def solve_small_batch(model, table, index, m_total, times, t0, initial, switches, rtol, atol,
                      max_step, sens_index, max_steps, terminal_events, lean=False,
                      label=True, covariates=None, events=True, integrator="Rodas4",
                      own_times=None, observe=True) -> dict:
    """:func:`~._stacked._solve_batch`'s work, one subject at a time with compiled Rodas4
    (``integrator="Rodas4"``) or compiled DOP853 (``"DOP853"``, :mod:`._dop853_numba`, for
    tight tolerances: a subject it finds stiff is re-solved with the stacked
    :data:`~._registry.AUTO_FALLBACK`, and ``"method"`` then names both).

    Same arguments (less ``method``) and the same result dict, so ``_merge`` and every caller
    work unchanged: switches (parameter scale/add/set, state jumps, doses expanded into
    switches, parameter-dependent switch times) are applied between segments by the same
    :func:`~._switches._apply_switch`, with the sensitivities carried across them; covariate
    changes end segments too; events are located per step; a failure is the subject's status
    and message. ``max_steps`` counts the steps of one segment, as in the stacked path.
    """
    from ._diagnose import _diagnose
    from ._switches import _apply_switch, _as_subject_values, _subject_mask

    kern = model.kernels
    KL = packed_kernels(kern)
    if integrator == "DOP853":
        from ._dop853_numba import STIFF, sensitivity_kernels
        from ._dop853_numba import dop_segment as step_segment

        skl = sensitivity_kernels(model, sens_index)
    else:
        step_segment, STIFF = segment, None
    stiff = []
    m, n, T = table.shape[0], model.n_states, times.size
    P = table.shape[1]
    sidx = np.ascontiguousarray(sens_index, dtype=np.int64)
    k = sidx.size
    n_obs = 0 if lean or not observe else len(model.observable_names)
    model_events = () if lean or not events else tuple(model.events)
    ev_sign = np.array([e.sign for e in model_events], dtype=np.int64)
    ev_term = np.array([bool(e.terminal and terminal_events) for e in model_events],
                       dtype=np.bool_)
    use_events = bool(model_events)
    autonomous = _autonomous(model)
    t_end = float(times[-1])
    times = np.ascontiguousarray(times, dtype=float)

    states = np.full((m, n, T), np.nan)
    obs = np.full((m, n_obs, T), np.nan)
    dstates = np.full((m, n, k, T), np.nan) if k else np.zeros((m, n, 0, T))
    dobs = np.full((m, n_obs, k, T), np.nan) if k else np.zeros((m, n_obs, 0, T))
    status = np.zeros(m, dtype=int)
    message = ["ok"] * m
    found = {e.name: [[] for _ in range(m)] for e in model_events}
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}
    sys = _SwitchTarget(k, np.asarray(sens_index, dtype=int))
    masks = [_subject_mask(sw.subjects, m_total) for sw in switches]
    info_i = np.zeros(9, dtype=np.int64)
    info_f = np.zeros(3)
    fail_y = np.zeros((2, n))
    own_breaks = covariates.subject_breaks(index) if covariates is not None else None

    # Every subject's start at once: initial values, then the switches at t0 (a dose at the
    # start, the usual case), the same operations per column as one subject at a time, in one
    # call per batch instead of one per subject (~60 us each).
    index = np.asarray(index)
    p0 = np.array(table, dtype=float).T.copy()
    if covariates is not None:
        p0 = covariates.extend(p0, t0, index)
    a0 = np.ones_like(p0)
    y0 = np.ascontiguousarray(model.initial(t0, None, p0), dtype=float)
    S0 = (np.ascontiguousarray(model.dinitial_dp(t0, None, p0)[:, sidx, :].transpose(2, 1, 0))
          if k else None)
    for name, value in initial.items():
        j = model.state_index(name)
        y0[j] = _as_subject_values(value, m_total, f"initial[{name!r}]")[index]
        if k:
            S0[:, :, j] = 0.0
    for sw in switches:
        if float(sw.time) == float(t0):
            y0, S0 = _apply_switch(model, sw, p0, a0, y0, S0, sys, index, m_total)
    closing = integrator == "DOP853"
    # DOP853 with nothing after t0 (no later switch, covariate change or located event,
    # e.g. a fit's rows with one dose at the start): every subject in one compiled call
    fast = (closing and covariates is None and not use_events
            and all(float(sw.time) <= float(t0) for sw in switches))
    if fast:
        _fast_batch(model, KL, skl, t0, index, times, own_times, p0, a0, y0, S0, sidx,
                    n_obs, rtol, atol, max_step, max_steps, label, states, obs, dstates, dobs,
                    status, message, stiff, stats)

    times_all, t_end_all = times, t_end
    # Rodas4 with nothing after t0 either (no later switch, no covariates, one output grid):
    # every subject in one compiled call; the loop below takes the subjects it hands back
    rodas_fast = (not closing and covariates is None and own_times is None and t_end > t0
                  and all(float(sw.time) <= float(t0) for sw in switches))
    if fast:
        pending = []
    elif rodas_fast:
        pending = _rodas_batch(model, KL, t0, t_end, index, times, p0, a0, y0, S0, sidx,
                               n_obs, ev_sign, ev_term, use_events, model_events, rtol, atol,
                               max_step, max_steps, autonomous, label, states, obs, dstates,
                               dobs, status, message, found, stats)
    else:
        pending = range(m)
    for s in pending:
        i = index[s]
        if own_times is not None:
            # only this subject's outputs (columns of times), integrated to its last one
            cols = np.asarray(own_times[s], dtype=np.int64)
            times = np.ascontiguousarray(times_all[cols])
            T = times.size
            t_end = float(times[-1]) if T else float(t0)
        p = p0[:, s].copy()         # contiguous copies: switches change them in place
        a_all = a0[:, s].copy()
        y = y0[:, s].copy()
        S = S0[s].copy() if k else np.zeros((0, n))
        # this subject's switches by time, in their order (a scan of every switch at every
        # segment was quadratic: ~100 dosing switches a subject took 30 s in a trial pool)
        at: dict[float, list] = {}
        for sw, mask in zip(switches, masks, strict=True):
            if mask[i]:
                at.setdefault(float(sw.time), []).append(sw)
        bounds = {t for t in at if t0 <= t <= t_end}
        if own_breaks is not None:
            b = own_breaks[s]
            bounds |= {float(v) for v in b[(b > t0) & (b <= t_end)]}
        edges = sorted({float(t0), *(b for b in bounds if b > t0),
                        *([t_end] if t_end > t0 else [])})
        # DOP853 records the outputs at t_end in the segment that ends there when nothing
        # switches at t_end (no call for the empty last segment)
        closed = closing and t_end > t0 and t_end not in bounds
        if closed:
            edges = edges[:-1]
        Yout = np.full((T, n), np.nan)
        Sout = np.full((T, k, n), np.nan)
        Oout = np.full((T, n_obs), np.nan)
        DOout = np.full((T, n_obs, k), np.nan)
        cap = 16
        ev_index = np.zeros(cap, dtype=np.int64)
        ev_time = np.zeros(cap)
        j_next = 0
        for seg, seg_start in enumerate(edges):
            if covariates is not None and seg:
                p[P:] = covariates.hidden(seg_start, [i])[:, 0]
            for sw in at.get(seg_start, ()) if seg else ():     # those at t0: applied above
                y2, S3 = _apply_switch(model, sw, p[:, None], a_all[:, None], y[:, None],
                                       S[None] if k else None, sys, np.array([i]),
                                       m_total)
                y = np.ascontiguousarray(y2[:, 0], dtype=float)
                if k:
                    S = np.ascontiguousarray(S3[0], dtype=float)
            last = seg == len(edges) - 1
            seg_end = (t_end if closed else seg_start) if last else edges[seg + 1]
            extra = (closed and last, *skl) if closing else ()
            a = np.ascontiguousarray(a_all[sidx])
            y_start, S_start = y.copy(), S.copy()
            crashed = None
            while True:
                try:
                    step_segment(KL, seg_start, seg_end, y, S, p, sidx, a, times, j_next,
                                 Yout, Sout, Oout, DOout, n_obs > 0, ev_sign, ev_term,
                                 use_events, ev_index, ev_time, float(rtol), float(atol),
                                 float(max_step), int(max_steps), autonomous, info_i, info_f,
                                 fail_y, *extra)
                except (ArithmeticError, ValueError) as exc:
                    # not expected (the kernels and this code use numpy's error model); a
                    # failure of this subject all the same, never an exception for callers
                    crashed = f"{type(exc).__name__}: {exc}"
                    break
                if info_i[6] <= cap:
                    break
                # more events in this segment than the buffer holds: again, with room
                cap = int(info_i[6])
                ev_index, ev_time = np.zeros(cap, dtype=np.int64), np.zeros(cap)
                y[:], S[:] = y_start, S_start
            if crashed is not None:
                status[s] = -1
                who = f" for subject {int(i)}" if label else ""
                message[s] = (f"integration failed{who} at t={seg_start:.10g} ({crashed}): "
                              + _diagnose(model, seg_start, seg_start, y_start, y_start, p))
                break
            j_next = int(info_i[1])
            stats["steps"] += int(info_i[2])
            stats["nfev"] += int(info_i[3])
            stats["njev"] += int(info_i[4])
            stats["nlu"] += int(info_i[5])
            for c in range(int(info_i[6])):
                found[model_events[ev_index[c]].name][s].append(float(ev_time[c]))
            code = int(info_i[0])
            if code == STIFF:
                stiff.append(s)
                break
            if code == 1:
                e = model_events[ev_index[int(info_i[6]) - 1]].name
                status[s] = 1
                message[s] = f"terminal event {e!r} at t={info_f[0]:.6g}"
                break
            if code == -1:
                status[s] = -1
                message[s] = _failure(model, i, label, info_i, info_f, fail_y, p, max_steps)
                break
        out = slice(None) if own_times is None else cols
        states[s][:, out] = Yout.T
        if n_obs:
            obs[s][:, out] = Oout.T
        if k:
            dstates[s][..., out] = Sout.transpose(2, 1, 0)
            if n_obs:
                dobs[s][..., out] = DOout.transpose(1, 2, 0)
    times, T, t_end = times_all, times_all.size, t_end_all
    name = METHOD_NAME if integrator != "DOP853" else DOP853_NAME
    if stiff:
        # the stiff subjects again, together, on the stacked stiff path (from t0: the
        # compiled segment stopped on them at some step)
        from ._registry import AUTO_FALLBACK
        from ._stacked import _solve_batch

        st = np.array(stiff, dtype=int)
        for e in found:
            for s in stiff:
                found[e][s] = []
        redo = _solve_batch(model, table[st], np.asarray(index)[st], m_total, times, t0,
                            initial, switches, AUTO_FALLBACK, rtol, atol, max_step, sens_index,
                            max_steps, terminal_events, lean, label, covariates, events,
                            observe=observe)
        states[st], status[st] = redo["states"], redo["status"]
        if n_obs:
            obs[st] = redo["observables"]
        if k:
            dstates[st] = redo["dstates"]
            if n_obs:
                dobs[st] = redo["dobs"]
        for b, s in enumerate(stiff):
            message[s] = redo["message"][b]
            for e in found:
                found[e][s] = list(redo["events"][e][b])
        for key in ("nfev", "njev", "nlu", "steps"):
            stats[key] += int(redo["stats"].get(key, 0))
        name = f"{name}+{redo.get('method', AUTO_FALLBACK)}"
    if lean:
        ev_out = {}
    elif not model_events:
        ev_out = {e.name: [np.array([]) for _ in range(m)] for e in model.events}
    else:
        ev_out = {name_: [np.array(v) for v in lists] for name_, lists in found.items()}
    return {"states": states, "observables": obs, "status": status, "message": message,
            "events": ev_out, "dstates": dstates, "dobs": dobs, "stats": stats,
            "failed": None, "failure": None, "method": name}


def batch_buffers(m: int, T: int, n: int, k: int, n_obs: int) -> tuple:
    """Output and status arrays of a compiled batch call for ``m`` rows of ``T`` output
    times, ``n`` states, ``k`` sensitivities and ``n_obs`` observables: states (m, T, n),
    state sensitivities (m, T, k, n), observables (m, T, n_obs) and their sensitivities
    (m, T, n_obs, k) filled with NaN (what no step reached stays NaN), and the per-row
    info_i (m, 9), info_f (m, 3), fail_y (m, 2, n) of the compiled segments."""
    return (np.full((m, T, n), np.nan), np.full((m, T, k, n), np.nan),
            np.full((m, T, n_obs), np.nan), np.full((m, T, n_obs, k), np.nan),
            np.zeros((m, 9), dtype=np.int64), np.zeros((m, 3)), np.zeros((m, 2, n)))


def _failure(model, subject: int, label: bool, info_i, info_f, fail_y, p, max_steps) -> str:
    """The message of a subject whose compiled segment failed (``info_i[0] == -1``): where,
    why (:data:`FAIL_REASONS`) and the diagnosis of the failing step; ``info_i``,
    ``info_f``, ``fail_y`` are the subject's own rows, ``p`` its parameters (Q,)."""
    from ._diagnose import _diagnose

    reason = FAIL_REASONS[int(info_i[7])].format(max_steps=max_steps)
    who = f" for subject {int(subject)}" if label else ""
    return (f"integration failed{who} at t={info_f[1]:.10g} ({reason}): "
            + _diagnose(model, float(info_f[1]), float(info_f[2]), fail_y[0].copy(),
                        fail_y[1].copy(), p, bool(info_i[8])))


def _rodas_batch(model, KL, t0, t_end, index, times, p0, a0, y0, S0, sidx, n_obs, ev_sign,
                 ev_term, use_events, model_events, rtol, atol, max_step, max_steps,
                 autonomous, label, states, obs, dstates, dobs, status, message, found,
                 stats) -> list:
    """:func:`solve_small_batch`'s subjects in one compiled Rodas4 call
    (:func:`._rodas4_loops.batch`): the case without switches after t0, covariates or
    per-subject output times (events included). Fills the result arrays, statuses, messages,
    events and counters in place, as the per-subject loop would; returns the subjects the
    loop must still run (more events than the buffer holds, or all of them if the compiled
    call raised, so that the loop reports it per subject)."""
    from ._rodas4_loops import batch

    m, n, k, T = len(index), y0.shape[0], sidx.size, times.size
    cap = 16
    Yb, Sb, Ob, DOb, info_i, info_f, fail_y = batch_buffers(m, T, n, k, n_obs)
    EVI = np.zeros((m, cap), dtype=np.int64)
    EVT = np.zeros((m, cap))
    S_start = np.ascontiguousarray(S0, dtype=float) if k else np.zeros((m, 0, n))
    try:
        batch(KL, float(t0), float(t_end), np.ascontiguousarray(y0.T, dtype=float), S_start,
              np.ascontiguousarray(p0.T, dtype=float),
              np.ascontiguousarray(a0[sidx].T, dtype=float), sidx, times, Yb, Sb, Ob, DOb,
              n_obs > 0, ev_sign, ev_term, use_events, EVI, EVT, float(rtol), float(atol),
              float(max_step), int(max_steps), autonomous, info_i, info_f, fail_y)
    except (ArithmeticError, ValueError):
        return list(range(m))
    redo = [s for s in range(m) if info_i[s, 6] > cap]
    for key, col in (("steps", 2), ("nfev", 3), ("njev", 4), ("nlu", 5)):
        stats[key] += int(np.delete(info_i[:, col], redo).sum())
    states[:] = Yb.transpose(0, 2, 1)
    if n_obs:
        obs[:] = Ob.transpose(0, 2, 1)
    if k:
        dstates[:] = Sb.transpose(0, 3, 2, 1)
        if n_obs:
            dobs[:] = DOb.transpose(0, 2, 3, 1)
    for s in range(m):
        if info_i[s, 6] > cap:
            continue
        for c in range(int(info_i[s, 6])):
            found[model_events[EVI[s, c]].name][s].append(float(EVT[s, c]))
        code = int(info_i[s, 0])
        if code == 1:
            e = model_events[EVI[s, int(info_i[s, 6]) - 1]].name
            status[s] = 1
            message[s] = f"terminal event {e!r} at t={info_f[s, 0]:.6g}"
        elif code == -1:
            status[s] = -1
            message[s] = _failure(model, index[s], label, info_i[s], info_f[s], fail_y[s],
                                  np.ascontiguousarray(p0[:, s]), max_steps)
    return redo


def _fast_batch(model, KL, skl, t0, index, times, own_times, p0, a0, y0, S0, sidx, n_obs,
                rtol, atol, max_step, max_steps, label, states, obs, dstates, dobs, status,
                message, stiff, stats):
    """:func:`solve_small_batch`'s subjects in one compiled DOP853 call
    (:func:`._dop853_numba._batch`): the case without switches after t0, covariates or
    events. Fills the result arrays, statuses, messages, the stiff subjects' list and the
    work counters in place."""
    from ._dop853_numba import STIFF, dop_batch

    m, n, k = len(index), y0.shape[0], sidx.size
    if own_times is None:
        cols = [np.arange(times.size)] * m
    else:
        cols = [np.asarray(c, dtype=np.int64) for c in own_times]
    counts = np.array([c.size for c in cols], dtype=np.int64)
    Tm = max(int(counts.max()) if m else 0, 1)
    tt = np.zeros((m, Tm))
    for s, c in enumerate(cols):
        tt[s, :c.size] = times[c]
    t_end = np.array([times[c[-1]] if c.size else t0 for c in cols], dtype=float)
    Yb, Sb, Ob, DOb, info_i, info_f, fail_y = batch_buffers(m, Tm, n, k, n_obs)
    S_start = np.ascontiguousarray(S0) if k else np.zeros((m, 0, n))
    dop_batch(KL, float(t0), t_end, np.ascontiguousarray(p0.T), np.ascontiguousarray(y0.T),
              S_start, sidx, np.ascontiguousarray(a0[sidx].T), tt, counts, Yb, Sb, Ob, DOb,
              n_obs > 0, float(rtol), float(atol), float(max_step), int(max_steps), info_i,
              info_f, fail_y, *skl)
    stats["steps"] += int(info_i[:, 2].sum())
    stats["nfev"] += int(info_i[:, 3].sum())
    stats["njev"] += int(info_i[:, 4].sum())
    rows = np.repeat(np.arange(m), counts)
    pos = np.concatenate([np.arange(c) for c in counts]) if m else np.zeros(0, int)
    flat = np.concatenate(cols) if m else np.zeros(0, int)
    states[rows, :, flat] = Yb[rows, pos]
    if n_obs:
        obs[rows, :, flat] = Ob[rows, pos]
    if k:
        dstates[rows, :, :, flat] = Sb[rows, pos].transpose(0, 2, 1)
        if n_obs:
            dobs[rows, :, :, flat] = DOb[rows, pos]
    for s in np.nonzero(info_i[:, 0])[0]:
        code = int(info_i[s, 0])
        if code == STIFF:
            stiff.append(int(s))
            continue
        # failed (no events here, so never terminated)
        status[s] = -1
        message[s] = _failure(model, index[s], label, info_i[s], info_f[s], fail_y[s],
                              np.ascontiguousarray(p0[:, s]), max_steps)


#: What :attr:`Simulation.stats` ``["method"]`` says when this path ran.
METHOD_NAME = "Rodas4 (compiled)"
#: The same for the compiled DOP853 (tight tolerances).
DOP853_NAME = "DOP853 (compiled)"


class _SwitchTarget:
    """The two attributes :func:`~._switches._apply_switch` reads of a stacked system."""

    __slots__ = ("k", "sens_index")

    def __init__(self, k, sens_index):
        self.k, self.sens_index = k, sens_index
