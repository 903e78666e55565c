"""Per-observation and per-parameter diagnostics of a population fit.

- PRED: prediction at eta = 0 (NONMEM's PRED); IPRED: at eta-hat.
- IWRES = (y - IPRED) / sqrt(V(IPRED)); for a Student-t residual (df > 2) V is its variance,
  the squared scale times ``df / (df - 2)``, here and in CWRES.
- CWRES (Hooker, Staatz, Karlsson, Pharm Res 2007;24:2187): the FOCE-linearised residual
  ``C_i^-1/2 (y_i - f(eta-hat_i) + G_i eta-hat_i)`` with ``C_i = G_i Omega G_i' + diag(V_i)``,
  V at eta-hat with interaction (the FOCE-I choice), at eta = 0 without. ``C^-1/2`` is the
  symmetric square root by default (``decorrelation="symmetric"``, ``U diag(w^-1/2) U'`` from
  the eigen-decomposition): that is what NONMEM 7.4 prints as CWRES after a FOCE-I run (checked
  against its table for R's Theoph to 1e-4); ``"cholesky"`` uses ``L^-1`` with ``C = L L'``
  instead, a rotation of the same vector (same sum of squares, different per-observation
  values except the first).
- eta shrinkage, SD-based: ``1 - SD(eta-hat_k) / sqrt(Omega_kk)`` (SD with ``ddof = 1`` by
  default); epsilon shrinkage ``1 - SD(IWRES)`` over observed (uncensored) values.
- BSV of a log-normal parameter as CV %: ``100 sqrt(exp(omega^2) - 1)``.

Censored values and padding get NaN residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ._core import PopulationData, Residual, call_predict, check_omega, eta_columns_of

__all__ = ["Residuals", "residual_diagnostics", "cwres", "eta_shrinkage",
           "epsilon_shrinkage", "cv_percent"]


@dataclass
class Residuals:
    """Per-observation diagnostics, each (N, n) with NaN in padding.

    Attributes
    ----------
    pred, ipred : ndarray (N, n)
        Predictions at eta = 0 and at eta-hat.
    iwres : ndarray (N, n)
        Individual weighted residuals (NaN for censored values).
    cwres : ndarray (N, n)
        Conditional weighted residuals (NaN for censored values).
    """

    pred: np.ndarray
    ipred: np.ndarray
    iwres: np.ndarray
    cwres: np.ndarray


def cwres(data: PopulationData, f, g, eta, omega, V, decorrelation: str = "symmetric"
          ) -> np.ndarray:
    """Conditional weighted residuals (Hooker et al. 2007) of every subject.

    Parameters
    ----------
    data : PopulationData
        N subjects.
    f : ndarray (N, n)
        Predictions at eta-hat.
    g : ndarray (N, n, E)
        df/deta at eta-hat.
    eta : ndarray (N, E)
        Conditional modes.
    omega : ndarray (E, E)
    V : ndarray (N, n)
        Residual variances on the diagonal of C.
    decorrelation : {"symmetric", "cholesky"}
        ``C^-1/2`` as the symmetric square root (NONMEM) or the inverse Cholesky factor.

    Returns
    -------
    ndarray (N, n)
        ``C^-1/2 (y - f + g eta)`` over each subject's observed values (censored values are
        left out of C and get NaN; so are subjects whose C is not positive definite).

    Raises
    ------
    FitError
        Unknown ``decorrelation``.
    """
    if decorrelation not in ("symmetric", "cholesky"):
        raise FitError(f"CWRES: expected decorrelation 'symmetric' or 'cholesky', found "
                       f"{decorrelation!r}")
    N, n = data.y.shape
    out = np.full((N, n), np.nan)
    use = data.mask & (data.cens == 0)
    for i in range(N):
        j = np.flatnonzero(use[i])
        if j.size == 0:
            continue
        gi = g[i, j]
        r = data.y[i, j] - f[i, j] + gi @ eta[i]
        C = gi @ omega @ gi.T + np.diag(V[i, j])
        if decorrelation == "cholesky":
            try:
                L = np.linalg.cholesky(C)
            except np.linalg.LinAlgError:
                continue
            out[i, j] = np.linalg.solve(L, r)
        else:
            w, U = np.linalg.eigh(C)
            if not np.all(w > 0):
                continue
            out[i, j] = U @ ((U.T @ r) / np.sqrt(w))
    return out


def residual_diagnostics(model, data: PopulationData, mu, omega, residual: Residual, eta, *,
                         eta_columns=None, interaction: bool = True,
                         decorrelation: str = "symmetric") -> Residuals:
    """PRED, IPRED, IWRES and CWRES at the conditional modes ``eta``.

    Parameters
    ----------
    model : IndividualModel or callable
    data : PopulationData
    mu : array_like (N, D)
        Typical individual parameters.
    omega : array_like (E, E)
    residual : Residual
    eta : array_like (N, E)
        Conditional modes (from :func:`~._inner.conditional_modes`).
    eta_columns : sequence of int, optional
    interaction : bool
        V of CWRES at eta-hat (True, FOCE-I) or at eta = 0 (False, FOCE).
    decorrelation : {"symmetric", "cholesky"}
        See :func:`cwres`.

    Returns
    -------
    Residuals
    """
    residual.check_observables(data)
    mu = np.asarray(mu, dtype=float)
    N, D = mu.shape
    cols = eta_columns_of(D, eta_columns)
    om, _, _ = check_omega(omega, cols.size)
    eta = np.asarray(eta, dtype=float).reshape(N, cols.size)
    n = data.y.shape[1]
    index = np.arange(N)
    f0, _, _ = call_predict(model, mu, index, n, D)
    phi = mu.copy()
    phi[:, cols] += eta
    f, G, _ = call_predict(model, phi, index, n, D)
    m = data.mask
    obs = m & (data.cens == 0)
    with np.errstate(all="ignore"):
        # a Student-t residual's variance is V df / (df - 2): its SD standardises IWRES and
        # enters CWRES's linearised covariance, so both have unit SD under the model
        k = residual.variance_factor(data.observable)
        V = k * residual.variance(np.where(m, f if interaction else f0, 0.0),
                                  data.observable)
        Vi = k * residual.variance(np.where(m, f, 0.0), data.observable)
        iwres = np.where(obs, (data.y - f) / np.sqrt(Vi), np.nan)
    cw = cwres(data, f, G[..., cols], eta, om, np.where(m, V, 1.0), decorrelation)
    return Residuals(pred=np.where(m, f0, np.nan), ipred=np.where(m, f, np.nan), iwres=iwres,
                     cwres=cw)


def eta_shrinkage(eta, omega, ddof: int = 1) -> np.ndarray:
    """SD-based eta shrinkage ``1 - SD(eta-hat_k) / omega_k`` per random effect.

    Parameters
    ----------
    eta : array_like (N, E)
        Conditional modes.
    omega : array_like (E, E)
        Only the diagonal is used (``omega_k = sqrt(Omega_kk)``).
    ddof : int
        Degrees of freedom of the SD (1: sample SD).

    Returns
    -------
    ndarray (E,)
        As a fraction (multiply by 100 for %).
    """
    eta = np.asarray(eta, dtype=float)
    sd = np.std(eta, axis=0, ddof=ddof)
    return 1.0 - sd / np.sqrt(np.diag(np.atleast_2d(np.asarray(omega, dtype=float))))


def epsilon_shrinkage(iwres, ddof: int = 1) -> float:
    """``1 - SD(IWRES)`` over the finite entries (observed values), as a fraction."""
    v = np.asarray(iwres, dtype=float)
    v = v[np.isfinite(v)]
    return float(1.0 - np.std(v, ddof=ddof))


def cv_percent(omega) -> np.ndarray:
    """Between-subject variability of log-normal parameters as CV %.

    ``100 sqrt(exp(omega_k^2) - 1)`` from the diagonal of Omega (variances on the log scale).
    """
    var = np.diag(np.atleast_2d(np.asarray(omega, dtype=float)))
    return 100.0 * np.sqrt(np.expm1(var))
