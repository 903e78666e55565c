"""Event-anchored time offsets: each subject's clock set by an event of its own model.

With ``[parameters.time_offset] anchor = "EVENT"`` a subject's time offset is not a parameter:
its value is the model time ``T_i`` at which the subject's own model (its parameters
``theta_i``) reaches EVENT, so that

    model time = data time + T_i(theta_i) + factor * covariate_i.

With the data time of the event as the covariate and ``factor = -1`` (the ALS onset shift:
``onset_time`` months before enrolment), the model reaches the event exactly at the data time
it was observed: the offset is a function of the other parameters, not a free quantity with a
random effect of its own (which the data could not tell from the pace of the disease).

``T_i`` is found in two solves per evaluation: one simulation with event location up to the
window's upper bound (the offset's ``bounds``), then the states and forward sensitivities at
that time, from which one Newton step ``T <- T - g / (dg/dt)`` on the event's condition ``g``
removes the event search's tolerance, and the implicit-function rule gives the derivatives

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
    gy = np.empty_like(y)
    for i in range(y.shape[0]):
        h = _STEP * np.maximum(1.0, np.abs(y[i]))
        up, dn = y.copy(), y.copy()
        up[i] += h
        dn[i] -= h
        gy[i] = (g_of(t, up, p) - g_of(t, dn, p)) / (2 * h)
    gp = np.empty_like(p)
    for q in range(p.shape[0]):
        h = _STEP * np.maximum(1.0, np.abs(p[q]))
        up, dn = p.copy(), p.copy()
        up[q] += h
        dn[q] -= h
        gp[q] = (g_of(t, y, up) - g_of(t, y, dn)) / (2 * h)
    return g, gt, gy, gp


def anchor_times(problem, table, sens=(), *, window=None) -> AnchorTimes:
    """Model time of the problem's anchor event per row, and its derivatives.

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
    from ..simulate import simulate
    from ._paths import own_columns, solver_options

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
    options = solver_options(problem, [])
    options.update(events=True, sensitivities=None)
    with np.errstate(all="ignore"):
        sim = simulate(model, table, np.array([0.0, hi]), **options)
    T0 = np.asarray(sim.event_time(problem.anchor), dtype=float)
    ok = np.asarray(sim.status) >= 0
    for r in range(R):
        if not ok[r]:
            messages[r] = f"the simulation for the anchor event failed: {sim.message[r]}"
        elif not np.isfinite(T0[r]):
            messages[r] = (f"no event '{problem.anchor}' by model time {hi:g} (the anchored "
                           "time offset's window)")
        elif T0[r] < lo:
            messages[r] = (f"event '{problem.anchor}' at model time {T0[r]:g}, before the "
                           f"anchored time offset's window [{lo:g}, {hi:g}]")
    good = np.nonzero(np.array([m == "" for m in messages]))[0]
    if good.size == 0:
        return AnchorTimes(T, dT, messages)
    # the states (and sensitivities) at each row's own event time
    grid = np.unique(np.concatenate([[0.0], T0[good]]))
    options = solver_options(problem, sens)
    options.update(events=False)
    with np.errstate(all="ignore"):
        at = simulate(model, table[good], grid, _observables=False,
                      _own_times=own_columns(grid, T0[good], np.arange(good.size), good.size),
                      **options)
    col = np.searchsorted(grid, T0[good])
    y = at.states[np.arange(good.size), :, col].T                  # (n, G)
    p = table[good].T
    t = T0[good]
    with np.errstate(all="ignore"):
        f = np.asarray(model.rhs(t, y, p), dtype=float)
    g, gt, gy, gp = condition_gradient(model, e, t, y, p)
    gdot = np.sum(gy * f, axis=0) + gt                              # dg/dt along the path
    # one Newton step removes the event search's tolerance
    Tn = t - g / gdot
    fine = (np.isfinite(Tn) & (gdot != 0) & (np.asarray(at.status) >= 0)
            & (Tn >= lo) & (Tn <= hi))
    T[good[fine]] = Tn[fine]
    for j in np.nonzero(~fine)[0]:
        messages[good[j]] = (f"event '{problem.anchor}' could not be located at model time "
                             f"{t[j]:g} (the condition's rate of change there is "
                             f"{gdot[j]:g})")
    if k:
        S = at.state_sensitivities[np.arange(good.size), :, :, col]   # (G, n, k)
        sidx = [model.parameter_index(nm) for nm in sens]
        num = np.einsum("nG,Gnk->Gk", gy, S) + gp[sidx].T             # (G, k)
        d = -num / gdot[:, None]
        dT[good[fine]] = d[fine]
    return AnchorTimes(T, dT, messages)
