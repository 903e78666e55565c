"""Switches: parameter changes and state jumps at given times, applied to a stacked batch.

A :class:`Switch` is how interventions, doses and time-varying covariates reach the
integrator: integration is restarted at each switch time, so the stepper never crosses a
discontinuity, and forward sensitivities are carried across the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProgressionError

__all__ = ["Switch"]


@dataclass(frozen=True)
class Switch:
    """A change at one time: parameters scaled, shifted or set, and/or states jumping.

    Parameters are changed cumulatively in the order scale, add, set; then ``jump`` maps
    states to expressions (of states before the jump, parameters after the change and ``t``),
    e.g. ``{"R": "R + 0.5"}``. Values may be scalars or per-subject arrays.

    Parameters
    ----------
    time : float
        When, in model time units.
    scale, add, set : mapping of str to float or array_like, optional
        Parameter name -> factor, increment or new value.
    jump : mapping of str to str or float, optional
        State name -> expression giving its new value.
    states : mapping of str to float or array_like, optional
        State name -> new value (scalar or per subject), set after ``jump`` (used for
        steady-state doses).
    states_dp : mapping of str to array_like, optional
        State name -> derivatives ``(m, P)`` of its new value with respect to the base
        parameters (all ``P`` in model order): the sensitivities it is given; 0 when absent.
    time_dp : mapping of str to float or array_like, optional
        Parameter name -> derivative of the switch time with respect to its base value (a
        lag time: 1). Sensitivities then gain ``(G_y f(before) - f(after)) dtime/dp``, the
        effect of moving the switch.
    subjects : array_like of bool or int, optional
        The subjects it applies to (boolean mask or indices); all by default.
    """

    time: float
    scale: Mapping = field(default_factory=dict)
    add: Mapping = field(default_factory=dict)
    set: Mapping = field(default_factory=dict)
    jump: Mapping = field(default_factory=dict)
    subjects: object = None
    states: Mapping = field(default_factory=dict)
    states_dp: Mapping = field(default_factory=dict)
    time_dp: Mapping = field(default_factory=dict)


def _as_subject_values(value, m: int, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(m, float(arr))
    if arr.shape != (m,):
        raise ProgressionError(f"{where}: expected a scalar or {m} values (one per subject), "
                               f"found shape {arr.shape}")
    return arr


def _subject_mask(subjects, m: int) -> np.ndarray:
    if subjects is None:
        return np.ones(m, dtype=bool)
    arr = np.asarray(subjects)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise ProgressionError(f"Switch.subjects: expected {m} booleans, found {arr.shape}")
        return arr
    mask = np.zeros(m, dtype=bool)
    mask[arr.astype(int)] = True
    return mask


def _apply_switch(model, sw: Switch, p, a_all, y, S, sys, index, m_total):
    """Apply one switch to the current parameters and states of a batch (in place on p, a)."""
    mask = _subject_mask(sw.subjects, m_total)[index]
    if not mask.any():
        return y, S
    moving = bool(sw.time_dp) and sys.k and any(
        model.parameter_index(q) in sys.sens_index for q in sw.time_dp)
    if moving:
        y_before = y.copy()
        f_before = model.rhs(sw.time, y, p.copy())
    for name, value in sw.scale.items():
        j = model.parameter_index(name)
        v = _as_subject_values(value, m_total, f"Switch.scale[{name!r}]")[index]
        p[j, mask] *= v[mask]
        a_all[j, mask] *= v[mask]
    for name, value in sw.add.items():
        j = model.parameter_index(name)
        p[j, mask] += _as_subject_values(value, m_total, f"Switch.add[{name!r}]")[index][mask]
    for name, value in sw.set.items():
        j = model.parameter_index(name)
        p[j, mask] = _as_subject_values(value, m_total, f"Switch.set[{name!r}]")[index][mask]
        a_all[j, mask] = 0.0
    if sw.jump:
        jump = model.jump(sw.jump, where=f"Switch at t={sw.time:g}, jump")
        y_new = jump.apply(sw.time, y, p)
        if sys.k:
            Gy = jump.dy(sw.time, y, p)
            Gp = jump.dp(sw.time, y, p)[:, sys.sens_index, :] * a_all[sys.sens_index][None]
            S_new = np.einsum("ijm,mqj->mqi", Gy, S) + Gp.transpose(2, 1, 0)
            S = np.where(mask[:, None, None], S_new, S)
        y = np.where(mask[None, :], y_new, y)
    for name, value in sw.states.items():
        i = model.state_index(name)
        y[i, mask] = _as_subject_values(value, m_total, f"Switch.states[{name!r}]")[index][mask]
        if sys.k:
            d = sw.states_dp.get(name)
            S[mask, :, i] = (0.0 if d is None else
                             np.asarray(d, dtype=float)[index][mask][:, sys.sens_index])
    if moving:
        # A switch at a parameter-dependent time: y(t) after it moves by
        # (G_y f(y-, p-) - f(y+, p+)) per unit of time it is delayed.
        carried = f_before
        if sw.jump:
            Gy = model.jump(sw.jump, where=f"Switch at t={sw.time:g}, jump").dy(sw.time,
                                                                              y_before, p)
            carried = np.einsum("ijm,jm->im", Gy, f_before)
        for i in sw.states:
            carried[model.state_index(i)] = 0.0
        delta = carried - model.rhs(sw.time, y, p)
        for name, value in sw.time_dp.items():
            v = _as_subject_values(value, m_total, f"Switch.time_dp[{name!r}]")[index]
            for q in np.nonzero(sys.sens_index == model.parameter_index(name))[0]:
                S[mask, q, :] += (delta[:, mask] * v[mask]).T
    return y, S
