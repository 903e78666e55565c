"""Normalised prediction distribution errors (NPDE) and prediction discrepancies (pd).

Brendel, Comets, Laffont, Laveille, Mentré, Pharm Res 2006;23:2036; Comets, Brendel, Mentré,
Comput Methods Programs Biomed 2008;90:154 (the ``npde`` R package).

For subject ``i`` with observations ``y_i`` (n_i,) and K simulations ``Y_i`` (K, n_i) of its
design under the model:

1. ``E_i`` = mean of the K simulations, ``V_i`` = their empirical covariance (``ddof = 1``, as
   R's ``cov``).
2. Decorrelation: ``y*_i = V_i^-1/2 (y_i - E_i)`` and the same for every simulation. ``V^-1/2``
   is the inverse lower Cholesky factor ``L^-1`` (``V = L L'``) by default, as in the npde
   package (``npdeControl(decorr.method = "cholesky", ties = TRUE)``); ``"symmetric"`` uses
   the symmetric square root ``U diag(w^-1/2) U'`` (npde's ``"inverse"``). The Cholesky
   choice depends on the order of the observations (the first one is only centred and
   scaled); sort them by time.
3. ``pde_ij`` = fraction of the K decorrelated simulations strictly below ``y*_ij``; an
   observation above (below) every simulation gets ``1 - 1/(2K)`` (``1/(2K)``), the centre of
   the outermost of K bins, so that ``npde = Phi^-1(pde)`` is always finite. This is the npde
   package's default (``ties = TRUE``; its alternative jitters pde uniformly within
   ``1/K``, which is not done here).
4. ``pd`` is the same quantile without decorrelation (each observation among its own K
   simulated values); ``npd = Phi^-1(pd)``.

Under the model, npde are N(0, 1) and independent within a subject (up to the Monte Carlo error
of K simulations); pd are uniform but correlated within a subject.

Censored observations (``cens != 0`` of :class:`PopulationData`, with their limits) follow
Nguyen, Comets, Mentré, Stat Med 2012 (npde 2.0, its ``"cdf"`` method): for a value censored
below its limit ``L``, ``p_L`` = the fraction of its K simulations below ``L`` and its pd is
drawn uniformly in ``[0, p_L]`` (above a limit: in ``[p_L, 1]``); the value is then imputed as
the pd-quantile of its simulations (linear interpolation) and enters the decorrelation like an
observed one. Every simulated value on the censored side of the limit of a censored entry is
imputed the same way (a fresh uniform in ``[0, p_L]``), so that observations and simulations
are treated alike and stay exchangeable under the model: the npde of a correct model, censored
rows included, are N(0, 1) (tested: mean and SD within 0.1 over 2,000 observations, 30 %
censored). The uniform draws come from ``seed``; without censored values nothing is drawn.
Padding gets NaN; a subject's missing entries are left out of its mean and covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from ...errors import FitError
from ._core import PopulationData

__all__ = ["NPDEResult", "npde", "DECORRELATIONS"]

#: Ways to compute ``V^-1/2``: inverse Cholesky factor (npde's default) or symmetric root
#: (npde's "inverse").
DECORRELATIONS = ("cholesky", "symmetric")


@dataclass
class NPDEResult:
    """NPDE and prediction discrepancies, each (N, n) with NaN in padding (censored entries: pd
    drawn within the censored part, see the module docstring).

    Attributes
    ----------
    pde : ndarray
        Prediction distribution errors (quantiles after decorrelation), in ``(0, 1)``.
    npde : ndarray
        ``Phi^-1(pde)``.
    pd : ndarray
        Prediction discrepancies (quantiles without decorrelation).
    npd : ndarray
        ``Phi^-1(pd)``.
    n_sim : int
        Number K of simulated replicates.
    decorrelation : str
        ``"cholesky"`` or ``"symmetric"``.
    """

    pde: np.ndarray
    npde: np.ndarray
    pd: np.ndarray
    npd: np.ndarray
    n_sim: int
    decorrelation: str

    def values(self, which: str = "npde") -> np.ndarray:
        """The finite values of ``which`` (``"npde"``, ``"pde"``, ``"pd"``, ``"npd"``), flat."""
        a = getattr(self, which)
        return a[np.isfinite(a)]


def _pad(y, sims, mask, source):
    """Observed (N, n), simulations (K, N, n), the mask of usable entries (N, n), censoring
    flags (N, n) and limits (N, n) (zeros and NaN without censoring)."""
    cens = limit = None
    if isinstance(y, PopulationData):
        mask = y.mask if mask is None else np.asarray(mask, dtype=bool) & y.mask
        cens, limit = y.cens, y.limit
        y = np.where(y.cens != 0, y.limit, y.y)  # a censored entry's value: its limit
    if not isinstance(y, (list, tuple)):
        Y = np.asarray(y, dtype=float)
        if Y.ndim != 2:
            raise FitError(f"{source}: expected observations of shape (N, n) or a list of "
                           f"per-subject arrays, found shape {Y.shape}")
        S = np.asarray(sims, dtype=float)
        if S.ndim != 3 or S.shape[1:] != Y.shape:
            raise FitError(f"{source}: expected simulations of shape (K, {Y.shape[0]}, "
                           f"{Y.shape[1]}) for observations of shape {Y.shape}, found "
                           f"{S.shape}")
        M = np.ones(Y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if M.shape != Y.shape:
            raise FitError(f"{source}: expected a mask of shape {Y.shape}, found {M.shape}")
    else:
        ys = [np.asarray(v, dtype=float).ravel() for v in y]
        if isinstance(sims, np.ndarray) and sims.ndim == 3:
            sims = [sims[:, i, :len(v)] for i, v in enumerate(ys)]
        ss = [np.asarray(s, dtype=float) for s in sims]
        if len(ss) != len(ys):
            raise FitError(f"{source}: expected simulations for {len(ys)} subjects, found "
                           f"{len(ss)}")
        N, n = len(ys), max((len(v) for v in ys), default=0)
        K = {s.shape[0] if s.ndim == 2 else -1 for s in ss}
        for i, (v, s) in enumerate(zip(ys, ss, strict=True)):
            if s.ndim != 2 or s.shape[1] != len(v):
                raise FitError(f"{source}: subject {i}: expected simulations of shape "
                               f"(K, {len(v)}), found {s.shape}")
        if len(K) != 1:
            raise FitError(f"{source}: expected the same number K of simulations for every "
                           f"subject, found {sorted(K)}")
        K = K.pop()
        Y = np.zeros((N, n))
        S = np.zeros((K, N, n))
        M = np.zeros((N, n), dtype=bool)
        for i, (v, s) in enumerate(zip(ys, ss, strict=True)):
            Y[i, :len(v)], S[:, i, :len(v)], M[i, :len(v)] = v, s, True
        if mask is not None:
            raise FitError(f"{source}: a mask is only accepted with padded (N, n) arrays")
    M = M & np.isfinite(Y)
    if cens is None:
        cens, limit = np.zeros(Y.shape, dtype=np.int8), np.full(Y.shape, np.nan)
    cens = np.where(M, cens, 0)
    return Y, S, M, cens, limit


def _impute_censored(yi, si, ci, li, K, rng):
    """pd of the censored entries drawn in ``[0, p_L]`` (``[p_L, 1]`` above a limit), the
    values imputed at those quantiles of their simulations, and the simulations on the
    censored side of each limit imputed alike; returns (yi, si, pd) with copies changed."""
    yi, si = yi.copy(), si.copy()
    pd = np.full(yi.shape, np.nan)
    lo = 0.5 / K
    for j in np.flatnonzero(ci != 0):
        col = si[:, j]
        p_l = float(np.mean(col < li[j]))
        side = col < li[j] if ci[j] == 1 else col >= li[j]
        a, b = (0.0, p_l) if ci[j] == 1 else (p_l, 1.0)
        u = np.clip(rng.uniform(a, b, size=1 + int(side.sum())), lo, 1.0 - lo)
        pd[j] = u[0]
        # sims sorted once: the empirical quantile function of this entry's K values
        q = np.quantile(col, u)
        yi[j] = q[0]
        si[side, j] = q[1:]
    return yi, si, pd


def _inv_sqrt(V: np.ndarray, how: str) -> np.ndarray:
    """``V^-1/2`` (a matrix W with ``W V W' = I``); raises LinAlgError if V is not PD."""
    if how == "cholesky":
        L = np.linalg.cholesky(V)
        return np.linalg.solve(L, np.eye(len(V)))
    w, U = np.linalg.eigh(V)
    if w[0] <= 0:
        raise np.linalg.LinAlgError("not positive definite")
    return (U / np.sqrt(w)) @ U.T


def _quantiles(obs: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Fraction of ``sims`` (K, m) strictly below ``obs`` (m,); 0 -> 1/(2K), 1 -> 1 - 1/(2K)."""
    K = sims.shape[0]
    q = np.sum(sims < obs, axis=0) / K
    # only the exact 0 and 1 move: every other value already lies in [1/K, 1 - 1/K]
    return np.clip(q, 0.5 / K, 1.0 - 0.5 / K)


def npde(y, sims, *, mask=None, decorrelation: str = "cholesky", seed=0,
         source: str = "npde") -> NPDEResult:
    """NPDE and pd of every observation from K simulations of each subject's design.

    Parameters
    ----------
    y : PopulationData, ndarray (N, n) or sequence of array_like (n_i,)
        Observations. With :class:`PopulationData` its mask applies and censored values are
        handled as in the module docstring (pd drawn within the censored part, then imputed).
    sims : ndarray (K, N, n) or sequence of ndarray (K, n_i)
        Simulated observations (with residual error) of the same design under the model, one
        replicate per row; padded like ``y``.
    mask : ndarray of bool (N, n), optional
        Usable entries of padded arrays (NaN observations are left out too).
    decorrelation : {"cholesky", "symmetric"}
        How ``V^-1/2`` is computed (see the module docstring); Cholesky is the npde default.
    seed : int or numpy.random.Generator
        Source of the uniform draws of censored entries (unused without censoring).
    source : str
        Name used in error messages.

    Returns
    -------
    NPDEResult
        Arrays (N, n), NaN where an entry is not usable.

    Raises
    ------
    FitError
        Mismatched shapes, fewer than 2 replicates, an unknown decorrelation, non-finite
        simulations of a usable entry, or a subject whose simulated covariance is not positive
        definite (for example K <= n_i, or a component that does not vary); the message names
        the subject.
    """
    if decorrelation not in DECORRELATIONS:
        raise FitError(f"{source}: decorrelation: expected one of {', '.join(DECORRELATIONS)}, "
                       f"found {decorrelation!r}")
    Y, S, M, C, LIM = _pad(y, sims, mask, source)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    K = S.shape[0]
    if K < 2:
        raise FitError(f"{source}: expected at least 2 simulated replicates, found {K}")
    N = Y.shape[0]
    out = {k: np.full(Y.shape, np.nan) for k in ("pde", "pd")}
    for i in range(N):
        cols = np.flatnonzero(M[i])
        if cols.size == 0:
            continue
        yi, si = Y[i, cols], S[:, i, cols]
        if not np.all(np.isfinite(si)):
            k, j = np.argwhere(~np.isfinite(si))[0]
            raise FitError(f"{source}: subject {i}, observation {cols[j]}: expected finite "
                           f"simulated values, found {si[k, j]} in replicate {k}")
        pd = _quantiles(yi, si)
        ci = C[i, cols]
        if np.any(ci != 0):
            yi, si, pd_c = _impute_censored(yi, si, ci, LIM[i, cols], K, rng)
            pd = np.where(ci != 0, pd_c, pd)
        out["pd"][i, cols] = pd
        mean = si.mean(axis=0)
        V = np.atleast_2d(np.cov(si, rowvar=False, ddof=1))
        try:
            W = _inv_sqrt(V, decorrelation)
        except np.linalg.LinAlgError:
            raise FitError(f"{source}: subject {i}: expected a positive definite covariance "
                           f"of its {K} simulated replicates over {cols.size} observations, "
                           "found a singular one (more replicates than observations are "
                           "needed, and every observation must vary)") from None
        out["pde"][i, cols] = _quantiles(W @ (yi - mean), (si - mean) @ W.T)
    return NPDEResult(pde=out["pde"], npde=ndtri(out["pde"]), pd=out["pd"],
                      npd=ndtri(out["pd"]), n_sim=K, decorrelation=decorrelation)
