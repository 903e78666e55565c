"""Events: threshold crossings bracketed during integration and located together at the end."""

from __future__ import annotations

import copy

import numpy as np

from ._registry import TERMINATED


def _settle_events(model, crossings, events, terminal, times, end_time, status, message,
                   *outputs):
    """Locate every crossing, record events in time order, end subjects at terminal events."""
    ej, subj, when = crossings.locate()
    end_time[:] = np.inf
    for c in np.lexsort((ej, when)):
        s, e = subj[c], ej[c]
        if when[c] > end_time[s]:
            continue  # the subject had already ended
        events[model.events[e].name][s].append(float(when[c]))
        if terminal[e]:
            end_time[s] = when[c]
            status[s] = TERMINATED
            message[s] = f"terminal event {model.events[e].name!r} at t={when[c]:.6g}"
    after = times[None, :] > end_time[:, None]         # (m, T)
    for array in outputs:
        array[np.broadcast_to(after.reshape(after.shape[:1] + (1,) * (array.ndim - 2)
                                            + after.shape[1:]), array.shape)] = np.nan


def _restrict_dense(dense, rows: np.ndarray):
    """A copy of a scipy dense-output object that interpolates only the given components.

    Event location needs a few subjects' states, not the whole stacked vector. Falls back to a
    wrapper that evaluates everything and slices when the interpolant's layout is not one of
    scipy's known ones.
    """
    local = copy.copy(dense)
    if hasattr(dense, "yh"):                                 # LSODA (Nordsieck history)
        local.yh = dense.yh[rows]
    elif hasattr(dense, "D") and hasattr(dense, "t_shift"):  # BDF (differences)
        local.D = dense.D[:, rows]
    elif hasattr(dense, "Q") and hasattr(dense, "y_old"):    # Radau, RK23/RK45
        local.Q, local.y_old = dense.Q[rows], dense.y_old[rows]
    elif hasattr(dense, "F") and hasattr(dense, "y_old"):    # DOP853
        local.F, local.y_old = dense.F[:, rows], dense.y_old[rows]
    else:
        return lambda t: np.atleast_2d(dense(t))[rows] if np.ndim(t) else dense(t)[rows]
    return local


class _Crossings:
    """Event crossings bracketed during integration, located together at the end.

    Each integrator step whose end changes the sign of an event condition contributes a
    bracket: the step's interpolant restricted to the subjects involved. Locating every
    crossing of the whole run in one vectorised Illinois (regula falsi) iteration costs a few
    passes instead of a root search per step.
    """

    def __init__(self, model, sys):
        self.model, self.sys = model, sys
        self.brackets = []   # (local dense, involved subjects, pair slice)
        self.t_lo, self.t_hi, self.g_lo, self.event, self.subject, self.slot = ([] for _ in
                                                                                 range(6))
        self.p = []

    def add(self, dense, t_lo, t_hi, crossing, ev_lo, p):
        ej, subj = np.nonzero(crossing)
        involved, slot = np.unique(subj, return_inverse=True)
        rows = (involved[:, None] * self.sys.block + np.arange(self.sys.n)[None, :]).ravel()
        self.brackets.append((_restrict_dense(dense, rows), involved.size, ej.size))
        self.t_lo.append(np.full(ej.size, float(t_lo)))
        self.t_hi.append(np.full(ej.size, float(t_hi)))
        self.g_lo.append(ev_lo[ej, subj])
        self.event.append(ej)
        self.subject.append(subj)
        self.slot.append(slot)
        self.p.append(p[:, subj].copy())

    def _states(self, t):
        """States of every pair at its own time t (n, pairs)."""
        out, start = [], 0
        for (local, n_involved, n_pairs), slot in zip(self.brackets, self.slot, strict=True):
            tt = t[start:start + n_pairs]
            cols = np.asarray(local(tt)).reshape(n_involved, self.sys.n, n_pairs)
            out.append(cols[slot, :, np.arange(n_pairs)])
            start += n_pairs
        return np.concatenate(out).T

    def locate(self, iterations: int = 60):
        """Return (event index, subject, time) arrays for every bracketed crossing."""
        if not self.brackets:
            return np.array([], int), np.array([], int), np.array([])
        ej, subj = np.concatenate(self.event), np.concatenate(self.subject)
        p = np.concatenate(self.p, axis=1)
        lo, hi = np.concatenate(self.t_lo), np.concatenate(self.t_hi)
        pairs = np.arange(ej.size)

        def g(t):
            return self.model.event_values(t, self._states(t), p)[ej, pairs]

        g_lo, g_hi = np.concatenate(self.g_lo).astype(float), g(hi)
        tol = 1e-10 * np.maximum(1.0, np.abs(hi))
        side = np.zeros(ej.size, dtype=int)
        for _ in range(iterations):
            denom = np.where(g_hi == g_lo, 1.0, g_hi - g_lo)
            guess = np.where(g_hi == g_lo, 0.5 * (lo + hi), hi - g_hi * (hi - lo) / denom)
            guess = np.clip(guess, lo, hi)
            g_mid = g(guess)
            keep_hi = np.sign(g_mid) == np.sign(g_lo)   # the root lies in [guess, hi]
            exact = g_mid == 0
            lo = np.where(keep_hi | exact, guess, lo)
            hi = np.where(keep_hi & ~exact, hi, guess)
            # Illinois: halve the stale end's value when the same end is kept twice running.
            g_hi = np.where(keep_hi, np.where(side == 1, 0.5 * g_hi, g_hi), g_mid)
            g_lo = np.where(keep_hi, g_mid, np.where(side == -1, 0.5 * g_lo, g_lo))
            side = np.where(keep_hi, 1, -1)
            if np.all(hi - lo <= tol):
                break
        return ej, subj, 0.5 * (lo + hi)
