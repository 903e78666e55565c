"""Failure messages: where, when and in which state or equation an integration failed."""

from __future__ import annotations

import numpy as np


def _failure_messages(model, sys, reason, failure, p, index=None) -> list:
    """One message per subject of a failed stacked solve: where, when and which state.

    ``failure`` is (t before, t after, stacked vector before, after) of the failing step;
    ``index`` gives the subjects' numbers for the message (none: the caller names them).
    """
    t_lo, t_hi, flat_lo, flat_hi = failure
    Y_lo = np.asarray(flat_lo).reshape(sys.m, 1 + sys.k, sys.n)
    Y_hi = np.asarray(flat_hi).reshape(sys.m, 1 + sys.k, sys.n)
    out = []
    for s in range(sys.m):
        who = f" for subject {int(index[s])}" if index is not None else ""
        sens_bad = sys.k and not np.all(np.isfinite(Y_hi[s, 1:]))
        out.append(f"integration failed{who} at t={t_lo:.10g} ({reason}): "
                   + _diagnose(model, t_lo, t_hi, Y_lo[s, 0], Y_hi[s, 0], p[:, s],
                               bool(sens_bad)))
    return out


def _diagnose(model, t_lo, t_hi, y_lo, y_hi, p, sens_bad=False) -> str:
    """Name the parameter, state or equation behind a failure at ``t_lo`` (step to ``t_hi``)."""
    names = model.state_names

    def listing(idx, values):
        return ", ".join(f"{names[i]} = {values[i]:.4g}" for i in idx)

    p_names = (*model.parameter_names, *getattr(model, "hidden_names", ()))
    bad_p = [p_names[j] for j in np.nonzero(~np.isfinite(p))[0]]
    lead = (f"parameter(s) {', '.join(repr(b) for b in bad_p)} not finite; ") if bad_p else ""
    if not np.all(np.isfinite(y_lo)):
        idx = np.nonzero(~np.isfinite(y_lo))[0]
        return (lead + f"state(s) {', '.join(repr(names[i]) for i in idx)} not finite at "
                f"t={t_lo:.10g} ({listing(idx, y_lo)})")
    with np.errstate(all="ignore"):
        try:
            f = np.asarray(model.rhs(t_lo, y_lo[:, None], p[:, None]), dtype=float)[:, 0]
        except (ArithmeticError, ValueError):
            f = np.full(len(names), np.nan)
    state_values = listing(range(len(names)), y_lo)
    if not np.all(np.isfinite(f)):
        idx = np.nonzero(~np.isfinite(f))[0]
        return (lead + "the equation(s) for " + ", ".join(repr(names[i]) for i in idx)
                + f" give {', '.join(f'{f[i]:g}' for i in idx)} at t={t_lo:.10g} "
                f"(states: {state_values})")
    if not np.all(np.isfinite(y_hi)):
        idx = np.nonzero(~np.isfinite(y_hi))[0]
        return (lead + f"state(s) {', '.join(repr(names[i]) for i in idx)} became non-finite "
                f"between t={t_lo:.10g} and t={t_hi:.10g} (last finite values: "
                f"{listing(idx, y_lo)})")
    if sens_bad:
        return lead + f"the sensitivities became non-finite (states: {state_values})"
    rate = np.abs(f) / (np.abs(y_lo) + 1.0)
    i = int(np.argmax(rate))
    growing = (" and growing without bound"
               if abs(y_lo[i]) > 1e6 and np.sign(f[i]) == np.sign(y_lo[i]) else "")
    return (lead + f"fastest-changing state {names[i]!r} = {y_lo[i]:.4g}, "
            f"d{names[i]}/dt = {f[i]:.4g}{growing}")
