"""Uncertainty of estimates: covariance (Fisher information), profile likelihood, bootstrap.

All work happens on the estimation scale ``x`` (log, logit or linear) and is carried back to
the natural scale: standard errors with the delta method (``se_theta = |dtheta/dx| se_x``),
intervals end point by end point (so they stay inside the bounds and are asymmetric where the
scale is).

* **Covariance**: ``Cov(x) = I(x)^-1``, the inverse of the expected information at the
  estimate. A singular or non-finite information matrix does not raise: the standard errors of
  the parameters loading on its null directions are NaN and a warning names them.
* **Profile likelihood**: for each parameter, ``-2 log L`` re-optimised over the others at fixed
  values of it; the interval is where the profile stays within ``chi2_1(confidence)`` of the
  minimum (linear interpolation between points). A profile that stays below the threshold up to
  a bound leaves that side open (the bound is reported) and flags the parameter.
* **Parametric bootstrap**: data simulated from the fitted model and error model at the same
  times (censoring at the same limits), refitted from the estimate; percentile intervals.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats

from .transforms import dtheta_dx, from_internal, internal_bounds, near_bound

__all__ = ["covariance_from_info", "wald", "profile_grid", "profile_interval", "conditional_start",
           "percentile_interval", "identifiability_flags", "z_value"]


def covariance_from_info(info: np.ndarray, names) -> tuple[np.ndarray, str]:
    """Invert an information matrix; return (covariance, problem) with problem "" when fine.

    Parameters whose directions the information does not determine get NaN rows/columns.
    """
    D = info.shape[0]
    if D == 0:
        return np.zeros((0, 0)), ""
    if not np.all(np.isfinite(info)):
        return np.full((D, D), np.nan), "information matrix not finite (a simulation failed)"
    info = 0.5 * (info + info.T)
    scale = np.sqrt(np.maximum(np.diag(info), 0.0))
    zero = scale <= 0
    s = np.where(zero, 1.0, scale)
    R = info / s[:, None] / s[None, :]           # correlation-like, well scaled
    w, V = np.linalg.eigh(R)
    tol = 1e-10 * max(float(w.max()), 1e-300)
    null = w <= tol
    if not null.any() and not zero.any():
        cov = (V / w) @ V.T / s[:, None] / s[None, :]
        return 0.5 * (cov + cov.T), ""
    loading = np.abs(V[:, null]).max(axis=1) > 0.1 if null.any() else np.zeros(D, bool)
    bad = loading | zero
    good = ~bad
    cov = np.full((D, D), np.nan)
    if good.any():
        sub = R[np.ix_(good, good)]
        try:
            cov_g = np.linalg.inv(sub) / s[good][:, None] / s[good][None, :]
            cov[np.ix_(good, good)] = cov_g
        except np.linalg.LinAlgError:
            pass
    which = ", ".join(str(names[i]) for i in np.nonzero(bad)[0])
    return cov, f"information matrix singular: the data do not determine {which}"


@functools.lru_cache(maxsize=16)
def _z_value(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def z_value(confidence) -> float:
    """The two-sided standard-normal quantile ``Phi^-1(1/2 + confidence/2)`` (1.96 at 0.95).

    Cached per confidence level: scipy's ``norm.ppf`` costs ~0.2 ms a call (argument checks,
    array wrapping), and the covariance step asks for it once or twice per subject.
    """
    return _z_value(float(confidence))


@functools.lru_cache(maxsize=16)
def _chi2_1(confidence: float) -> float:
    return float(stats.chi2.ppf(confidence, 1))


def wald(x, se_x, scale, lo, hi, confidence):
    """Delta-method SE on the natural scale and the Wald interval mapped back."""
    z = z_value(confidence)
    lo_x, hi_x = internal_bounds(scale, lo, hi)
    se_theta = np.abs(dtheta_dx(x, scale, lo, hi)) * se_x
    a = np.clip(x - z * se_x, lo_x, hi_x)
    b = np.clip(x + z * se_x, lo_x, hi_x)
    return se_theta, from_internal(a, scale, lo, hi), from_internal(b, scale, lo, hi)


def profile_grid(x, se_x, scale, lo, hi, points: int, width: float = 4.0) -> np.ndarray:
    """Profile points (estimation scale) on both sides of x; (points,) sorted, x excluded.

    They span x +- ``width`` SE (the bounds if the SE is unknown or reaches them).
    """
    lo_x, hi_x = (float(np.ravel(v)[0]) for v in internal_bounds(scale, lo, hi))
    x, se_x = float(x), float(se_x)
    if not np.isfinite(lo_x):
        lo_x = x - 6.0 if not np.isfinite(se_x) else x - 2 * width * se_x
    if not np.isfinite(hi_x):
        hi_x = x + 6.0 if not np.isfinite(se_x) else x + 2 * width * se_x
    if np.isfinite(se_x) and se_x > 0:
        a, b = max(lo_x, x - width * se_x), min(hi_x, x + width * se_x)
    else:
        a, b = lo_x, hi_x
    n_left = points // 2
    n_right = points - n_left
    left = x - (x - a) * np.arange(n_left, 0, -1) / n_left if x > a else np.full(n_left, a)
    right = x + (b - x) * np.arange(1, n_right + 1) / n_right if b > x else np.full(n_right, b)
    return np.concatenate([left, right])


def profile_interval(x_hat, m2ll_hat, xs, m2ll, confidence, lo_x, hi_x):
    """Interval (estimation scale) from a profile; also whether each side stayed open.

    The crossing of the threshold is interpolated linearly in the signed root
    ``sqrt(m2ll - m2ll_hat)``, which is exact for a quadratic profile.
    """
    root_thr = float(np.sqrt(_chi2_1(float(confidence))))
    xs = np.asarray(xs, float)
    m2ll = np.asarray(m2ll, float)
    ok = np.isfinite(m2ll)
    xs, m2ll = xs[ok], m2ll[ok]
    root = np.sqrt(np.maximum(m2ll - m2ll_hat, 0.0))
    left = xs < x_hat
    order_l = np.argsort(-xs[left])
    order_r = np.argsort(xs[~left])

    def side(px, pr, bound):
        prev_x, prev_r = x_hat, 0.0
        for cx, cr in zip(px, pr, strict=True):
            if cr >= root_thr:
                if cr == prev_r:
                    return cx, False
                return prev_x + (root_thr - prev_r) * (cx - prev_x) / (cr - prev_r), False
            prev_x, prev_r = cx, max(cr, prev_r)
        return (bound if np.isfinite(bound) else (px[-1] if len(px) else x_hat)), True

    a, open_a = side(xs[left][order_l], root[left][order_l], lo_x)
    b, open_b = side(xs[~left][order_r], root[~left][order_r], hi_x)
    return a, b, open_a, open_b


def conditional_start(x_hat, cov, j, value, lo_x, hi_x):
    """Start for a profile point: the other parameters at their conditional mean given x_j.

    ``x_other + Cov[other, j] / Cov[j, j] (value - x_j)`` (exact for a quadratic objective),
    clipped to the bounds; the estimate itself where the covariance is unknown.
    """
    keep = np.arange(x_hat.size) != j
    out = x_hat[keep].copy()
    if cov is not None and np.all(np.isfinite(cov[:, j])) and cov[j, j] > 0:
        out = out + cov[keep, j] / cov[j, j] * (value - x_hat[j])
    return np.clip(out, lo_x[keep], hi_x[keep])


def percentile_interval(samples, confidence):
    """Percentile interval of bootstrap samples along the last axis (NaN-aware)."""
    q = 100 * np.array([0.5 - confidence / 2, 0.5 + confidence / 2])
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(samples, q, axis=-1) if samples.shape[-1] else (np.nan,) * 2
    return lo, hi


def identifiability_flags(x, se_x, corr, scale, lo, hi, confidence):
    """Per parameter: (huge SE, |corr| > 0.99 partner indices) for one subject or problem.

    "Huge" means the Wald interval on the estimation scale is wider than the parameter's whole
    range there (for an unbounded scale: a standard error above 2).
    """
    z = z_value(confidence)
    lo_x, hi_x = internal_bounds(scale, lo, hi)
    width = hi_x - lo_x
    with np.errstate(invalid="ignore"):
        huge = np.where(np.isfinite(width), 2 * z * se_x > width, se_x > 2.0)
    huge |= ~np.isfinite(se_x)
    partners = []
    for j in range(len(x)):
        row = corr[j] if corr is not None and corr.size else np.array([])
        partners.append([k for k in range(len(x)) if k != j and row.size
                         and np.isfinite(row[k]) and abs(row[k]) > 0.99])
    return huge, partners


#: Width given to a logit-scale parameter's range on the estimation scale when deciding
#: whether a direction is determined: from 1% to 99% of its bounds.
LOGIT_WIDTH = 2.0 * float(np.log(99.0))


def gaussian_draws(x_hat, cov, scale, lo, hi, n: int, rng, *, confidence: float = 0.95,
                   max_tries: int = 100):
    """Draws ``x ~ N(x_hat, Cov)`` on the estimation scale, regularised and inside the bounds.

    Nothing is clipped. What is done instead, and reported in the returned ``info``:

    * entries whose variance is not finite (the data do not determine them: a singular
      information matrix) are held at the estimate (``info["undetermined"]``, indices);
    * entries estimated at a bound (within 1e-6 of the range on the estimation scale,
      ``transforms.near_bound``) have a one-sided uncertainty that a normal distribution
      does not describe: they are held at the bound and the others
      are drawn from their conditional distribution given them (covariance
      ``C_oo - C_ob C_bb^-1 C_bo``) (``info["at_bound"]``, indices);
    * the covariance of the others is symmetrised and its negative eigenvalues (a matrix that
      is not positive semi-definite) are set to 0, the nearest positive semi-definite matrix in
      the Frobenius norm (``info["negative"]``, a count);
    * directions (eigenvectors of the covariance in units of each parameter's range on the
      estimation scale) along which the ``confidence`` interval is wider than the whole range
      are practically undetermined; they are held at the estimate (``info["held"]``);
    * a draw outside the bounds of a log or linear scale (logit draws are always inside) is
      drawn again: the draws follow the normal distribution truncated to the bounds
      (``info["redrawn"]``, draws); after ``max_tries`` rounds the few still outside are set to
      the estimate (``info["unresolved"]``).

    Parameters
    ----------
    x_hat : ndarray (K,)
    cov : ndarray (K, K)
        Covariance on the estimation scale (NaN rows/columns where undetermined).
    scale, lo, hi : array_like (K,)
        Estimation scales (codes or names) and natural-scale bounds.
    n : int
    rng : numpy Generator

    Returns
    -------
    xs : ndarray (n, K)
        Draws on the estimation scale.
    info : dict
    """
    from .transforms import LOGIT, _codes

    x_hat = np.asarray(x_hat, dtype=float)
    K = x_hat.size
    cov = np.asarray(cov, dtype=float).reshape(K, K)
    code = _codes(scale) if K else np.zeros(0, int)
    code = np.broadcast_to(code, (K,))
    lo = np.broadcast_to(np.asarray(lo, dtype=float), (K,))
    hi = np.broadcast_to(np.asarray(hi, dtype=float), (K,))
    info = {"undetermined": [], "at_bound": [], "negative": 0, "held": 0, "redrawn": 0,
            "unresolved": 0}
    xs = np.repeat(x_hat[None, :], n, axis=0)
    det = np.isfinite(np.diag(cov)) & np.isfinite(x_hat) if K else np.zeros(0, bool)
    # an entry whose covariance with a determined one is not finite is undetermined too
    while det.any():
        sub_bad = ~np.all(np.isfinite(cov[np.ix_(det, det)]), axis=1)
        if not sub_bad.any():
            break
        det[np.nonzero(det)[0][sub_bad]] = False
    info["undetermined"] = [int(k) for k in np.nonzero(~det)[0]]
    if not det.any() or n == 0:
        return xs, info
    # at a bound measured on the estimation scale (see transforms.near_bound)
    at_bound = det & near_bound(from_internal(x_hat, code, lo, hi), code, lo, hi)
    info["at_bound"] = [int(k) for k in np.nonzero(at_bound)[0]]
    C = cov.copy()
    if at_bound.any():
        free = det & ~at_bound
        C_ob = cov[np.ix_(free, at_bound)]
        C[np.ix_(free, free)] = cov[np.ix_(free, free)] - C_ob @ np.linalg.pinv(
            cov[np.ix_(at_bound, at_bound)]) @ C_ob.T
        det = free
        if not det.any():
            return xs, info
    C = C[np.ix_(det, det)]
    C = 0.5 * (C + C.T)
    lo_x, hi_x = internal_bounds(code[det], lo[det], hi[det])
    width = np.where(code[det] == LOGIT, LOGIT_WIDTH, hi_x - lo_x)
    bounded = np.isfinite(width) & (width > 0)
    s = np.where(bounded, width, 1.0)
    w, V = np.linalg.eigh(C / s[:, None] / s[None, :])
    tol = 1e-12 * max(float(np.abs(w).max()), 1e-300)
    info["negative"] = int(np.sum(w < -tol))
    w = np.maximum(w, 0.0)
    z = z_value(confidence)
    on_bounded = np.sum(V[bounded] ** 2, axis=0) > 0.5
    held = on_bounded & (2.0 * z * np.sqrt(w) > 1.0)
    info["held"] = int(held.sum())
    L = s[:, None] * V[:, ~held] * np.sqrt(w[~held])[None, :]
    centre = x_hat[det]
    box = np.isfinite(lo_x) | np.isfinite(hi_x)
    slack = 1e-12 * np.maximum(1.0, np.abs(centre))

    def draw(k):
        return centre[None, :] + rng.standard_normal((k, L.shape[1])) @ L.T

    def outside(d):
        return np.any(box & ((d < lo_x - slack) | (d > hi_x + slack)), axis=1)

    out = draw(n)
    bad = outside(out)
    info["redrawn"] = int(bad.sum())
    tries = 0
    while bad.any() and tries < max_tries:
        fresh = draw(int(bad.sum()))
        out[bad] = fresh
        bad[bad] = outside(fresh)
        tries += 1
    if bad.any():
        info["unresolved"] = int(bad.sum())
        out[bad] = centre
    xs[:, det] = out
    return xs, info
