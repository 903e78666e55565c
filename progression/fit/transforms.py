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

__all__ = ["SCALES", "to_internal", "from_internal", "dtheta_dx", "internal_bounds",
           "near_bound"]

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


def near_bound(theta, scale, lo, hi, rel: float = 1e-6) -> np.ndarray:
    """Whether each estimate lies at one of its bounds, measured on the estimation scale.

    An estimate is at a bound when it is within ``rel`` times the width of its range on the
    estimation scale (``x = g^-1(theta)``) from a bound that scale can reach. On the natural
    scale, ``1e-6 (hi - lo)`` with bounds ``[1e-5, 1e5]`` would be 0.1 and flag every value below
    it, although a log-scale optimiser sees 1e-5 and 0.1 nine units of ``log`` apart.

    * A bound the scale cannot reach (``lo = 0`` on a log scale, an infinite bound) never
      flags; where the other bound makes the range infinite, one unit of ``x`` is the width
      (``rel`` relative distance on a log scale).
    * Logit maps the bounds to +-infinity; ``theta`` within ``rel (hi - lo)`` of a bound, i.e.
      ``|x| > log(1/rel)``, is at it.

    Parameters
    ----------
    theta : array_like
        Estimates on the natural scale; broadcasts against ``scale``, ``lo`` and ``hi``.
    scale, lo, hi : array_like
        Scale codes or names, natural-scale bounds.
    rel : float

    Returns
    -------
    ndarray of bool, the shape of ``theta``
    """
    theta = np.asarray(theta, dtype=float)
    code = _codes(scale)
    shape = np.broadcast_shapes(theta.shape, code.shape, np.shape(lo), np.shape(hi))
    code, theta = np.broadcast_to(code, shape), np.broadcast_to(theta, shape)
    lo = np.broadcast_to(np.asarray(lo, dtype=float), shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=float), shape)
    lo_x, hi_x = (b.reshape(shape) for b in internal_bounds(code.ravel(), lo.ravel(),
                                                            hi.ravel()))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = to_internal(theta, code, lo, hi)
        width = hi_x - lo_x
        width = np.where(np.isfinite(width) & (width > 0), width, 1.0)
        out = (np.isfinite(lo_x) & (x - lo_x <= rel * width)) \
            | (np.isfinite(hi_x) & (hi_x - x <= rel * width))
        span = hi - lo
        logit = (code == LOGIT) & np.isfinite(span)
        out = np.where(logit, (np.abs(theta - lo) <= rel * span)
                       | (np.abs(hi - theta) <= rel * span), out)
    return out
