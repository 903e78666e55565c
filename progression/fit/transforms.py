"""Estimation scales: parameters are estimated as ``x`` with ``theta = g(x)``.

=========  ==========================================  ==================================
scale      theta = g(x)                                 bounds of x
=========  ==========================================  ==================================
linear     x                                            (lo, hi)
log        exp(x)                                       (log lo, log hi); needs lo >= 0
log10      10**x                                        (log10 lo, log10 hi); needs lo >= 0
logit      lo + (hi - lo) / (1 + exp(-x))               unbounded; needs finite lo < hi
=========  ==========================================  ==================================

Everything is vectorised: ``scale`` codes, ``lo`` and ``hi`` are arrays broadcasting against
``x``. Standard errors computed on the estimation scale are carried back with the delta method
(``dtheta/dx``); intervals are mapped back end point by end point (so they respect the bounds).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCALES", "to_internal", "from_internal", "dtheta_dx", "internal_bounds"]

SCALES = ("linear", "log", "logit", "log10")
LINEAR, LOG, LOGIT, LOG10 = 0, 1, 2, 3
#: d(10**x)/dx = ln(10) * 10**x
LN10 = float(np.log(10.0))


def _codes(scale) -> np.ndarray:
    scale = np.atleast_1d(scale)
    if scale.dtype.kind in "US":
        return np.array([SCALES.index(s) for s in scale], dtype=int)
    return scale.astype(int)


def from_internal(x, scale, lo, hi) -> np.ndarray:
    """theta = g(x), element-wise."""
    x = np.asarray(x, dtype=float)
    code = np.broadcast_to(_codes(scale), x.shape)
    lo, hi = np.broadcast_to(lo, x.shape), np.broadcast_to(hi, x.shape)
    out = x.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        m = code == LOG
        out[m] = np.exp(x[m])
        m = code == LOG10
        out[m] = 10.0 ** x[m]
        m = code == LOGIT
        if m.any():
            out[m] = lo[m] + (hi[m] - lo[m]) / (1.0 + np.exp(-x[m]))
    return out


def to_internal(theta, scale, lo, hi) -> np.ndarray:
    """x = g^-1(theta), element-wise (theta must lie inside the bounds for logit)."""
    theta = np.asarray(theta, dtype=float)
    code = np.broadcast_to(_codes(scale), theta.shape)
    lo, hi = np.broadcast_to(lo, theta.shape), np.broadcast_to(hi, theta.shape)
    out = theta.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        m = code == LOG
        out[m] = np.log(theta[m])
        m = code == LOG10
        out[m] = np.log10(theta[m])
        m = code == LOGIT
        if m.any():
            u = (theta[m] - lo[m]) / (hi[m] - lo[m])
            out[m] = np.log(u) - np.log1p(-u)
    return out


def dtheta_dx(x, scale, lo, hi) -> np.ndarray:
    """d theta / d x, element-wise."""
    x = np.asarray(x, dtype=float)
    code = np.broadcast_to(_codes(scale), x.shape)
    lo, hi = np.broadcast_to(lo, x.shape), np.broadcast_to(hi, x.shape)
    out = np.ones_like(x)
    with np.errstate(over="ignore", invalid="ignore"):
        m = code == LOG
        out[m] = np.exp(x[m])
        m = code == LOG10
        out[m] = LN10 * 10.0 ** x[m]
        m = code == LOGIT
        if m.any():
            e = np.exp(-np.abs(x[m]))
            out[m] = (hi[m] - lo[m]) * e / (1.0 + e) ** 2
    return out


def internal_bounds(scale, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of x for the optimiser (infinite for logit)."""
    code = _codes(scale)
    lo = np.broadcast_to(np.asarray(lo, dtype=float), code.shape).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=float), code.shape).copy()
    with np.errstate(divide="ignore"):
        m = code == LOG
        lo[m], hi[m] = np.log(np.maximum(lo[m], 0.0)), np.log(hi[m])
        m = code == LOG10
        lo[m], hi[m] = np.log10(np.maximum(lo[m], 0.0)), np.log10(hi[m])
    m = code == LOGIT
    lo[m], hi[m] = -np.inf, np.inf
    return lo, hi
