"""Event-anchored time offsets: each subject's clock set by an event of its own model.

With ``[parameters.time_offset] anchor = "EVENT"`` a subject's time offset is not a parameter:
its value is the model time ``T_i`` at which the subject's own model (its parameters
``theta_i``) reaches EVENT, so that

    model time = data time + T_i(theta_i) + factor * covariate_i.

With the data time of the event as the covariate and ``factor = -1`` (the ALS onset shift:
``onset_time`` months before enrolment), the model reaches the event exactly at the data time
it was observed: the offset is a function of the other parameters, not a free quantity with a
random effect of its own (which the data could not tell from the pace of the disease).

``T_i`` is found in two passes per evaluation: a fixed-step RK4 crossing pass (compiled; it
stops at the crossing) gives a first guess (rows it misses: a simulation with event location
up to the window's upper bound, the offset's ``bounds``), then the states and forward
sensitivities at that time, from which one Newton step ``T <- T - g / (dg/dt)`` on the
event's condition ``g`` removes the first guess's error, and the implicit-function rule
gives the derivatives

    dT/dp = -(dg/dy . S + dg/dp) / (dg/dy . f + dg/dt)      at t = T,

``S = dy/dp`` the forward sensitivities, ``f`` the right-hand side. ``dg/dy``, ``dg/dp`` and
``dg/dt`` are central differences of the condition, an algebraic expression of the states and
parameters at fixed ``(t, y, p)`` (step 1e-6 relative: error ~1e-10), never differences of a
solution. A prediction at model time ``tm = t + T`` then has the total derivative
``df/dp|_tm + df/dtau * dT/dp`` (:meth:`Problem.evaluate
<progression.fit.problem.Problem.evaluate>`).

A subject whose event does not happen inside the window ``[lower, upper]`` (or whose
simulation fails) gets NaN: its row is a failed evaluation, never an exception.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

__all__ = ["AnchorTimes", "anchor_times", "event_index", "condition_gradient"]

#: Relative step of the central differences of the event condition (an algebraic expression).
_STEP = 1e-6


class AnchorTimes(NamedTuple):
    """Result of :func:`anchor_times`: ``T`` (R,) the event time per row (NaN where not
    found), ``dT`` (R, k) its derivatives with respect to the sensitivity parameters (None
    when none were asked for), ``messages`` per row ("" where found)."""

    T: np.ndarray
    dT: np.ndarray | None
    messages: list


def event_index(model, name: str) -> int:
    """Position of event ``name`` among the model's events (its row of ``event_values``)."""
    names = [e.name for e in getattr(model, "events", ())]
    if name not in names:
        raise ConfigError(f"key 'parameters.time_offset.anchor': model '{model.name}' has no "
                          f"event '{name}' (events: {', '.join(names) or 'none'})")
    return names.index(name)


def condition_gradient(model, e: int, t, y, p):
    """The condition ``g`` of event ``e`` and its partial derivatives at ``(t, y, p)``.

    Parameters
    ----------
    model : CompiledModel
    e : int
        Event index.
    t : ndarray (R,)
    y : ndarray (n, R)
    p : ndarray (P, R)

    Returns
    -------
    g : ndarray (R,)
    gt : ndarray (R,)
        dg/dt (explicit).
    gy : ndarray (n, R)
    gp : ndarray (P, R)
    """
    def g_of(tt, yy, pp):
        with np.errstate(all="ignore"):
            return np.asarray(model.event_values(tt, yy, pp), dtype=float)[e]

    g = g_of(t, y, p)
    ht = _STEP * np.maximum(1.0, np.abs(t))
    gt = (g_of(t + ht, y, p) - g_of(t - ht, y, p)) / (2 * ht)
    gy = _central(lambda v: g_of(t, v, p), y)
    gp = _central(lambda v: g_of(t, y, v), p)
    return g, gt, gy, gp


def _central(fn, x):
    """Central differences of ``fn`` along each row of ``x`` (step relative, at least _STEP)."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        h = _STEP * np.maximum(1.0, np.abs(x[i]))
        up, dn = x.copy(), x.copy()
        up[i] += h
        dn[i] -= h
        out[i] = (fn(up) - fn(dn)) / (2 * h)
    return out


def _first_guess(problem, table, e, hi):
    """Event times by the compiled (else numpy) fixed-step RK4 crossing pass of SAEM's
    predictions, step ``hi / 4000``: it stops at each row's crossing, where a simulation with
    event location integrates the whole window; NaN where none is found."""
    from .population._saem_compiled import AVAILABLE
    from .population._saem_model import _crossing_numpy

    model = problem.model
    sign = int(model.events[e].sign)
    h = hi / 4000.0
    kernels = getattr(model, "kernels", None) if AVAILABLE else None
    with np.errstate(all="ignore"):
        if kernels is not None and int(kernels.n_params) == table.shape[1]:
            from .population._saem_compiled import rk4_crossing

            return rk4_crossing(kernels, table, e, sign, h, hi)
        return _crossing_numpy(model, table, e, sign, h, hi)


def _located(problem, table, hi):
    """Event times by simulations with event location over ``[0, hi]`` (groups of
    EXACT_GROUP_VALUES rows) and each row's status and message."""
    from ..simulate import simulate
    from ._paths import EXACT_GROUP_VALUES, solver_options

    R = table.shape[0]
    T0 = np.full(R, np.nan)
    ok = np.zeros(R, dtype=bool)
    msg = [""] * R
    options = solver_options(problem, [])
    options.update(events=True, sensitivities=None)
    for lo in range(0, R, EXACT_GROUP_VALUES):
        rows = np.arange(lo, min(R, lo + EXACT_GROUP_VALUES))
        with np.errstate(all="ignore"):
            sim = simulate(problem.model, table[rows], np.array([0.0, hi]), **options)
        T0[rows] = sim.event_time(problem.anchor)
        ok[rows] = np.asarray(sim.status) >= 0
        for b, r in enumerate(rows):
            msg[r] = sim.message[b]
    return T0, ok, msg


def _states_at(problem, table, t, sens):
    """States (n, R), sensitivities (R, n, k) or None, and status (R,) of each row at its own
    time ``t`` (forward sensitivities; groups of EXACT_GROUP rows)."""
    from ..simulate import simulate
    from ._paths import EXACT_GROUP, EXACT_GROUP_VALUES, own_columns, solver_options

    model = problem.model
    R, n, k = table.shape[0], model.n_states, len(sens)
    y = np.full((n, R), np.nan)
    S = np.full((R, n, k), np.nan) if k else None
    status = np.zeros(R, dtype=int)
    options = solver_options(problem, sens)
    options.update(events=False)
    size = EXACT_GROUP if k else EXACT_GROUP_VALUES
    for lo in range(0, R, size):
        rows = np.arange(lo, min(R, lo + size))
        grid = np.unique(np.concatenate([[0.0], t[rows]]))
        with np.errstate(all="ignore"):
            at = simulate(model, table[rows], grid, _observables=False,
                          _own_times=own_columns(grid, t[rows], np.arange(rows.size),
                                                 rows.size), **options)
        col = np.searchsorted(grid, t[rows])
        y[:, rows] = at.states[np.arange(rows.size), :, col].T
        if k:
            S[rows] = at.state_sensitivities[np.arange(rows.size), :, :, col]
        status[rows] = np.asarray(at.status)
    return y, S, status


def anchor_times(problem, table, sens=(), *, window=None) -> AnchorTimes:
    """Model time of the problem's anchor event per row, and its derivatives.

    The first guess of each row's event time comes from a fixed-step RK4 crossing pass
    (step ``upper / 4000``, :func:`_first_guess`; it stops at the crossing), the states and
    sensitivities there from the problem's integrator, and one Newton step on the event's
    condition makes the time exact to the integrator's tolerance. Rows whose guess is
    missing or whose Newton step is large (above ``1e-3 max(1, T)``: a model too stiff for
    the explicit pass) are located by a simulation with event location over the window
    instead, then treated alike. All solves run in groups of rows (the exact path's), so
    memory does not grow with the batch.

    Parameters
    ----------
    problem : Problem
        With ``problem.anchor`` an event name; its solver settings are used (the exact
        path's tolerances when it is on the exact path).
    table : ndarray (R, P)
        Model parameters per row.
    sens : sequence of str
        Model parameters to differentiate ``T`` with respect to.
    window : (float, float), optional
        Model time window searched (default: the offset's bounds).

    Returns
    -------
    AnchorTimes
    """
    model = problem.model
    table = np.atleast_2d(np.asarray(table, dtype=float))
    R = table.shape[0]
    sens = list(sens)
    k = len(sens)
    off = problem.parameters[problem.offset_index]
    lo, hi = window if window is not None else (float(off.lower), float(off.upper))
    e = event_index(model, problem.anchor)
    T = np.full(R, np.nan)
    dT = np.full((R, k), np.nan) if k else None
    messages = [""] * R
    if R == 0:
        return AnchorTimes(T, dT, messages)
    T0 = np.asarray(_first_guess(problem, table, e, hi), dtype=float)
    ok = np.ones(R, dtype=bool)
    sim_msg = [""] * R
    located = np.zeros(R, dtype=bool)

    def locate(rows):
        t0, good, msg = _located(problem, table[rows], hi)
        T0[rows], ok[rows] = t0, good
        located[rows] = True
        for b, r in enumerate(rows):
            sim_msg[r] = msg[b]

    missing = np.flatnonzero(~np.isfinite(T0))
    if missing.size:
        locate(missing)
    sidx = [model.parameter_index(nm) for nm in sens]
    todo = np.arange(R)
    for _attempt in range(2):
        todo = todo[ok[todo] & np.isfinite(T0[todo]) & (T0[todo] >= lo) & (T0[todo] <= hi)]
        if todo.size == 0:
            break
        t = T0[todo]
        y, S, status = _states_at(problem, table[todo], t, sens)
        p = table[todo].T
        with np.errstate(all="ignore"):
            f = np.asarray(model.rhs(t, y, p), dtype=float)
        g, gt, gy, gp = condition_gradient(model, e, t, y, p)
        gdot = np.sum(gy * f, axis=0) + gt                      # dg/dt along the path
        step = -g / gdot                                         # Newton on the condition
        Tn = t + step
        fine = (np.isfinite(Tn) & (gdot != 0) & (status >= 0) & (Tn >= lo) & (Tn <= hi))
        small = np.abs(step) <= 1e-3 * np.maximum(1.0, np.abs(t))
        # a large step: the explicit pass was off (stiff model); locate those rows by
        # simulation and try again once
        retry = todo[fine & ~small & ~located[todo]]
        take = fine & (small | located[todo])
        T[todo[take]] = Tn[take]
        if k:
            num = np.einsum("nG,Gnk->Gk", gy, S) + gp[sidx].T   # (G, k)
            d = -num / gdot[:, None]
            dT[todo[take]] = d[take]
        for j in np.flatnonzero(~fine):
            messages[todo[j]] = (f"event '{problem.anchor}' could not be located at model "
                                 f"time {t[j]:g} (the condition's rate of change there is "
                                 f"{gdot[j]:g})")
        if retry.size == 0:
            break
        locate(retry)
        todo = retry
    for r in range(R):
        if np.isfinite(T[r]) or messages[r]:
            continue
        if not ok[r]:
            messages[r] = f"the simulation for the anchor event failed: {sim_msg[r]}"
        elif not np.isfinite(T0[r]):
            messages[r] = (f"no event '{problem.anchor}' by model time {hi:g} (the anchored "
                           "time offset's window)")
        else:
            messages[r] = (f"event '{problem.anchor}' at model time {T0[r]:g}, outside the "
                           f"anchored time offset's window [{lo:g}, {hi:g}]")
    return AnchorTimes(T, dT, messages)
