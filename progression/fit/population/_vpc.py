"""Visual predictive checks: VPC and prediction-corrected VPC (Bergstrand et al. 2011).

Bergstrand, Hooker, Wallin, Karlsson, AAPS J 2011;13:143. Inputs are per observation (any
shape, flattened): time, observed DV, K simulated replicates of the same design under the
model, and for the pcVPC the population prediction PRED of each observation.

- **Bins** of time: ``n_bins`` bins with (about) equal numbers of observations (edges at the
  quantiles of the observation times), or user ``edges``; a bin is ``[e_k, e_k+1)``, the last
  one closed. Each bin is drawn at the median time of its observations.
- **Percentiles** (default 5, 50, 95; linear interpolation, R's type 7) of the observations in
  each bin, and the same percentiles of every simulated replicate; the band of a simulated
  percentile is the central ``ci`` interval (default 95 %) of its K replicate values, with
  their median.
- **Prediction correction** (Bergstrand eq. 1 with lower bound ``lb``):
  ``pcY = lb + (Y - lb) (PRED_bin - lb) / (PRED - lb)``, ``PRED_bin`` the median PRED of the
  bin; applied to the observations and to every simulation. With ``log_scale=True`` (data and
  PRED on the log scale, as for a log-normal error model) the correction is additive:
  ``pcY = Y + PRED_bin - PRED``; the same additive form serves observables with a purely
  additive error model (``log_scale`` then names the form, not the data): on a bounded score
  such as ALSFRS-R (0-48) the ratio would divide by PRED near 0 for advanced patients and throw
  corrected values far outside the scale, while an additive error is corrected where it adds.
- **Censoring** (``lloq``, a limit per observation or one for all): observations flagged as
  censored (``cens``) and simulated values below their limit are censored. Per bin the
  observed fraction below the limit and the band of the simulated fractions are returned
  (computed before any prediction correction: it is a statement on the original scale).
  Percentiles are computed with censored values kept in the ranking (below every observed
  value); a percentile that falls among censored values (below the bin's smallest limit, after
  the same prediction correction) is NaN and not drawn, for observations and for each
  simulated replicate alike (then the band uses the replicates where it is defined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError

__all__ = ["VPCResult", "vpc", "vpc_bins", "prediction_correct", "vpc_limits"]

_FLOOR = -1e300  # censored values: below any observation, finite (interpolation stays finite)


@dataclass
class VPCResult:
    """Per-bin summaries of a (prediction-corrected) VPC.

    Attributes
    ----------
    edges : ndarray (B + 1,)
        Bin edges in time.
    x : ndarray (B,)
        Median time of the observations of each bin.
    n_obs : ndarray of int (B,)
        Observations per bin.
    percentiles : tuple of float
        The percentiles P summarised (e.g. 5, 50, 95).
    observed : ndarray (B, P)
        Observed percentiles (NaN where censored).
    sim_median, sim_lo, sim_hi : ndarray (B, P)
        Median and central ``ci`` band over the K replicates of each simulated percentile.
    ci : float
        Level of the bands (0.95).
    pred_corrected : bool
        Whether the values were prediction corrected.
    blq_observed : ndarray (B,) or None
        Observed fraction below the limit per bin (None without censoring).
    blq_sim : ndarray (B, 3) or None
        Simulated fraction below the limit: band low, median, band high.
    blq_ci : float or None
        Level of that band.
    n_sim : int
        Number K of replicates.
    obs_time, obs_value : ndarray
        The observations as plotted (prediction corrected if requested; censored ones NaN).
    obs_censored, obs_limit : ndarray or None
        Which of them are censored below the limit, and each one's limit (prediction
        corrected like the values), with censoring; None without.
    sim_ended : ndarray (B,) or None
        Share of the simulated values of each bin that do not exist because the simulated
        patient's end event came first (None without end events).
    """

    edges: np.ndarray
    x: np.ndarray
    n_obs: np.ndarray
    percentiles: tuple
    observed: np.ndarray
    sim_median: np.ndarray
    sim_lo: np.ndarray
    sim_hi: np.ndarray
    ci: float
    pred_corrected: bool
    blq_observed: np.ndarray | None
    blq_sim: np.ndarray | None
    n_sim: int
    obs_time: np.ndarray
    obs_value: np.ndarray
    blq_ci: float | None = None
    obs_censored: np.ndarray | None = None
    obs_limit: np.ndarray | None = None
    sim_ended: np.ndarray | None = None

    def inside(self, p: float = 50) -> np.ndarray:
        """Per bin, whether the observed percentile ``p`` lies inside its simulated band."""
        k = list(self.percentiles).index(p)
        o = self.observed[:, k]
        return (o >= self.sim_lo[:, k]) & (o <= self.sim_hi[:, k])


def vpc_bins(time, n_bins: int | None = 6, edges=None, source: str = "vpc") -> np.ndarray:
    """Bin edges: user ``edges`` (checked increasing), or ``n_bins`` quantile bins of ``time``.

    Quantile edges that coincide (many observations at one nominal time, e.g. every subject at
    baseline) are merged; the earliest time then gets a bin of its own and the remaining bins
    are quantile bins of the later times, so a baseline mass does not swallow the follow-up.
    Every observation falls in a bin.
    """
    t = np.asarray(time, dtype=float).ravel()
    t = t[np.isfinite(t)]
    if t.size == 0:
        raise FitError(f"{source}: expected at least one finite observation time, found none")
    if edges is not None:
        e = np.asarray(edges, dtype=float).ravel()
        if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise FitError(f"{source}: edges: expected at least 2 finite increasing values, "
                           f"found {e.tolist()}")
        return e
    if n_bins is None or int(n_bins) < 1:
        raise FitError(f"{source}: n_bins: expected a positive integer, found {n_bins!r}")
    return _quantile_edges(t, int(n_bins))


def _quantile_edges(t: np.ndarray, n_bins: int) -> np.ndarray:
    e = np.unique(np.quantile(t, np.linspace(0.0, 1.0, n_bins + 1)))
    if e.size == 1:
        return np.array([e[0], e[0] + 1.0])  # a single time: one bin around it
    rest = t[t > t.min()]
    if e.size - 1 >= n_bins or n_bins < 2 or rest.size == 0:
        return e
    # A mass of tied times (every subject seen at baseline) swallowed quantile edges: give the
    # earliest time its own bin and spread the other bins over the later times (recursively,
    # for the next tie), rather than lumping baseline with months of follow-up.
    return np.concatenate([[t.min()], _quantile_edges(rest, n_bins - 1)])


def _assign(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each time (-1 outside the edges); the last bin is closed on the right."""
    b = np.searchsorted(edges, t, side="right") - 1
    b[t == edges[-1]] = len(edges) - 2
    b[(t < edges[0]) | (t > edges[-1]) | ~np.isfinite(t)] = -1
    return b


def prediction_correct(values, pred, bins, *, log_scale: bool = False,
                       lower_bound: float = 0.0) -> np.ndarray:
    """Prediction-corrected values (Bergstrand et al. 2011, eq. 1), observation by observation.

    Parameters
    ----------
    values : ndarray (..., M)
        Observed or simulated values (the last axis runs over the M observations).
    pred : ndarray (M,)
        Population predictions.
    bins : ndarray of int (M,)
        Bin of each observation (-1: not binned, left unchanged).
    log_scale : bool
        The additive form ``Y + PRED_bin - PRED`` instead of the ratio: data on the log scale,
        or an observable with a purely additive error model.
    lower_bound : float
        ``lb`` of the ratio form (0: ``Y PRED_bin / PRED``).
    """
    values = np.asarray(values, dtype=float)
    pred = np.asarray(pred, dtype=float)
    ref = np.full(pred.shape, np.nan)
    for b in np.unique(bins[bins >= 0]):
        ref[bins == b] = np.median(pred[bins == b])
    keep = bins < 0
    ref[keep] = pred[keep]
    if log_scale:
        return values + (ref - pred)
    return lower_bound + (values - lower_bound) * (ref - lower_bound) / (pred - lower_bound)


def _percentiles(v: np.ndarray, cens: np.ndarray, limit: float, q) -> np.ndarray:
    """Percentiles ``q`` of ``v`` with censored entries ranked lowest; NaN below ``limit``."""
    if v.size == 0:
        return np.full(len(q), np.nan)
    w = np.where(cens, _FLOOR, v)
    p = np.percentile(w, q)
    if np.isfinite(limit):
        p = np.where(p < limit, np.nan, p)
    return p


def vpc(time, dv, sims, *, pred=None, n_bins: int | None = 6, edges=None,
        percentiles=(5, 50, 95), ci: float = 0.95, lloq=None, cens=None,
        blq_ci: float | None = None, ended=None,
        log_scale: bool = False, lower_bound: float = 0.0, source: str = "vpc") -> VPCResult:
    """A VPC, or with ``pred`` a prediction-corrected VPC.

    Parameters
    ----------
    time, dv : array_like (M,) or any shape with M entries
        Observation times and observed values; NaN times or values (padding) are left out.
    sims : array_like (K, M) or (K, *shape of dv)
        K simulated replicates of the design (with residual error).
    pred : array_like, optional
        Population predictions of each observation: prediction correction when given.
    n_bins : int, optional
        Quantile bins (default 6) unless ``edges`` are given.
    edges : array_like, optional
        Bin edges in time.
    percentiles : tuple of float
    ci : float
        Level of the simulated bands.
    lloq : float or array_like, optional
        Lower limit of quantification (per observation or one for all).
    cens : array_like of bool or int, optional
        Which observations are censored below their limit (``cens == 1``, as in
        :class:`PopulationData`); without it an observation is censored when it is below
        ``lloq``.
    blq_ci : float, optional
        Level of the band of the simulated fraction below the limit (default ``ci``).
    ended : array_like of bool (K, M), optional
        Simulated values that do not exist because the simulated patient's end event (death)
        came first (:mod:`._vpc_events`); their entries of ``sims`` may be NaN. Each
        replicate's percentiles and fraction below the limit are then those of its existing
        values, and ``sim_ended`` gives the share that ended per bin.
    log_scale, lower_bound : see :func:`prediction_correct`.
    source : str
        Name used in error messages.

    Returns
    -------
    VPCResult

    Raises
    ------
    FitError
        Mismatched shapes, fewer than 2 replicates, a level outside (0, 1), percentiles
        outside [0, 100], a non-positive PRED for the ratio correction, or bad edges.
    """
    t = np.asarray(time, dtype=float).ravel()
    y = np.asarray(dv, dtype=float).ravel()
    if t.shape != y.shape:
        raise FitError(f"{source}: expected as many times as observations, found {t.size} "
                       f"and {y.size}")
    S = np.asarray(sims, dtype=float)
    S = S.reshape(S.shape[0], -1) if S.ndim >= 2 else S
    if S.ndim != 2 or S.shape[1] != y.size:
        raise FitError(f"{source}: expected simulations of shape (K, {y.size}), found "
                       f"{np.shape(sims)}")
    if S.shape[0] < 2:
        raise FitError(f"{source}: expected at least 2 simulated replicates, found "
                       f"{S.shape[0]}")
    if not 0 < ci < 1:
        raise FitError(f"{source}: ci: expected a level in (0, 1), found {ci}")
    blq_ci = ci if blq_ci is None else blq_ci
    if not 0 < blq_ci < 1:
        raise FitError(f"{source}: blq_ci: expected a level in (0, 1), found {blq_ci}")
    q = tuple(float(p) for p in percentiles)
    if not q or any(not 0 <= p <= 100 for p in q):
        raise FitError(f"{source}: percentiles: expected values in [0, 100], found {q}")
    use = np.isfinite(t) & np.isfinite(y)
    if cens is not None and lloq is None:
        raise FitError(f"{source}: cens: censoring flags need the limit; expected lloq, "
                       "found none")
    if lloq is not None:
        lim = np.broadcast_to(np.asarray(lloq, dtype=float), np.shape(dv)).ravel().copy()
        c = (np.asarray(cens).ravel() == 1) if cens is not None else (y < lim)
        if c.shape != y.shape:
            raise FitError(f"{source}: cens: expected {y.size} flags, found {c.size}")
        use |= np.isfinite(t) & c  # a censored observation may carry NaN as its value
    else:
        lim = np.full(y.shape, -np.inf)
        c = np.zeros(y.shape, dtype=bool)
    if ended is None:
        gone = np.zeros(S.shape, dtype=bool)
    else:
        gone = np.asarray(ended, dtype=bool).reshape(S.shape[0], -1)
        if gone.shape != S.shape:
            raise FitError(f"{source}: ended: expected flags of shape {S.shape}, found "
                           f"{np.shape(ended)}")
    t, y, S, lim, c, gone = t[use], y[use], S[:, use], lim[use], c[use], gone[:, use]
    if not np.all(np.isfinite(S) | gone):
        k, j = np.argwhere(~(np.isfinite(S) | gone))[0]
        raise FitError(f"{source}: expected finite simulated values, found {S[k, j]} in "
                       f"replicate {k} for observation {j}")
    e = vpc_bins(t, n_bins, edges, source)
    b = _assign(t, e)
    B = len(e) - 1
    S = np.where(gone, np.nan, S)
    sim_c = (S < lim) & ~gone  # simulated values below the limit are censored like observations
    sim_ended = None if ended is None else np.full(B, np.nan)
    blq_obs = blq_sim = None
    if lloq is not None:
        blq_obs = np.full(B, np.nan)
        blq_sim = np.full((B, 3), np.nan)
        lo_q, hi_q = 50 * (1 - blq_ci), 50 * (1 + blq_ci)
        for k in range(B):
            m = b == k
            if m.any():
                blq_obs[k] = c[m].mean()
                with np.errstate(invalid="ignore"):
                    frac = sim_c[:, m].sum(axis=1) / (~gone[:, m]).sum(axis=1)
                frac = frac[np.isfinite(frac)]
                if frac.size:
                    blq_sim[k] = np.percentile(frac, [lo_q, 50, hi_q])
    corrected = pred is not None
    if corrected:
        P = np.asarray(pred, dtype=float).ravel()
        if P.size != use.size:
            raise FitError(f"{source}: pred: expected {use.size} values, found {P.size}")
        P = P[use]
        if not log_scale and np.any(P[b >= 0] <= lower_bound):
            j = int(np.flatnonzero((P <= lower_bound) & (b >= 0))[0])
            raise FitError(f"{source}: pred: expected values above the lower bound "
                           f"{lower_bound} for the ratio correction, found {P[j]} at "
                           f"observation {j} (use log_scale=True for log-scale data)")
        y = prediction_correct(y, P, b, log_scale=log_scale, lower_bound=lower_bound)
        S = prediction_correct(S, P, b, log_scale=log_scale, lower_bound=lower_bound)
        if lloq is not None:
            lim = prediction_correct(lim, P, b, log_scale=log_scale, lower_bound=lower_bound)
    K = S.shape[0]
    nq = len(q)
    observed = np.full((B, nq), np.nan)
    sim_median = np.full((B, nq), np.nan)
    sim_lo = np.full((B, nq), np.nan)
    sim_hi = np.full((B, nq), np.nan)
    x = np.full(B, np.nan)
    n_obs = np.zeros(B, dtype=int)
    for k in range(B):
        m = b == k
        n_obs[k] = int(m.sum())
        if not m.any():
            continue
        x[k] = np.median(t[m])
        if sim_ended is not None:
            sim_ended[k] = gone[:, m].mean()
        limit = np.min(lim[m]) if lloq is not None else -np.inf
        observed[k] = _percentiles(y[m], c[m], limit, q)
        reps = np.array([_percentiles(S[r, m][~gone[r, m]], sim_c[r, m][~gone[r, m]], limit, q)
                         for r in range(K)])
        with np.errstate(all="ignore"):
            for j in range(nq):
                col = reps[:, j][np.isfinite(reps[:, j])]
                if col.size:
                    sim_lo[k, j], sim_median[k, j], sim_hi[k, j] = np.percentile(
                        col, [50 * (1 - ci), 50, 50 * (1 + ci)])
    return VPCResult(edges=e, x=x, n_obs=n_obs, percentiles=q, observed=observed,
                     sim_median=sim_median, sim_lo=sim_lo, sim_hi=sim_hi, ci=ci,
                     pred_corrected=corrected, blq_observed=blq_obs, blq_sim=blq_sim,
                     n_sim=K, obs_time=t, obs_value=np.where(c, np.nan, y),
                     blq_ci=blq_ci if lloq is not None else None,
                     obs_censored=c if lloq is not None else None,
                     obs_limit=lim if lloq is not None else None, sim_ended=sim_ended)


def vpc_limits(data) -> np.ndarray:
    """The censoring limit of every observation (N, n), core scale: its own where censored;
    else the limit of the subject's values censored below a limit for that observable (their
    median), else the median of that observable's such limits; NaN for an observable without
    values censored below a limit. The data give limits only on censored rows, but the VPC
    asks of every simulated value whether it falls below its row's limit."""
    lim = np.where(data.mask & (data.cens != 0), data.limit, np.nan)
    out = lim.copy()
    below = data.mask & (data.cens == 1)
    for k in np.unique(data.observable[data.mask]):
        bk = below & (data.observable == k)
        if not bk.any():
            continue
        overall = float(np.median(data.limit[bk]))
        for i in range(data.y.shape[0]):
            row = data.mask[i] & (data.observable[i] == k) & ~np.isfinite(out[i])
            if row.any():
                own = data.limit[i, bk[i]]
                out[i, row] = float(np.median(own)) if own.size else overall
    return out
