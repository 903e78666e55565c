"""Prior and penalty terms for :meth:`progression.fit.problem.Problem.evaluate`.

The likelihood's single entry, :meth:`~progression.fit.problem.Problem.evaluate`, takes a
``prior`` callable ``prior(x) -> (res, jac)``: ``x`` (R, D) holds each row's estimation-scale
values of the differentiated columns, ``res`` (R, k) extra residuals appended to the row's
residual vector (their squares add to ``-2 log L``) and ``jac`` (R, k, D) their derivatives
with respect to ``x`` (``jac^T jac`` adds to the information). A population model's
random-effect term ``eta' Omega^-1 eta`` enters this way.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky, solve_triangular

from ..errors import FitError

__all__ = ["GaussianPrior"]


class GaussianPrior:
    """A multivariate normal prior on the estimation scale, as residuals.

    With ``cov = L L^T`` (Cholesky), the residuals are ``L^-1 (x - mean)``, so that their sum
    of squares is ``(x - mean)' cov^-1 (x - mean)`` and their Jacobian is ``L^-1`` (the same
    for every row). The normalising constant ``log det(2 pi cov)`` is not included (it does
    not depend on ``x``); :attr:`log_det` gives ``log det cov`` for callers that need it.

    Parameters
    ----------
    mean : array_like (D,) or (R, D)
        Prior mean of each differentiated column (one per row if 2-D).
    cov : array_like (D, D)
        Prior covariance, symmetric positive definite.

    Raises
    ------
    FitError
        Shapes that disagree, or a covariance that is not symmetric positive definite.
    """

    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, dtype=float)
        cov = np.atleast_2d(np.asarray(cov, dtype=float))
        D = self.mean.shape[-1] if self.mean.ndim else 1
        if cov.shape != (D, D):
            raise FitError(f"GaussianPrior: expected a covariance of shape ({D}, {D}) for a "
                           f"mean of {D} values, found shape {cov.shape}")
        if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, rtol=1e-12, atol=0):
            raise FitError("GaussianPrior: expected a finite, symmetric covariance")
        try:
            self.L = cholesky(cov, lower=True)
        except np.linalg.LinAlgError:
            raise FitError("GaussianPrior: the covariance is not positive definite") from None
        self.cov = cov
        self.L_inv = solve_triangular(self.L, np.eye(D), lower=True)
        self.log_det = float(2.0 * np.sum(np.log(np.diag(self.L))))

    def __call__(self, x):
        """Residuals (R, D) and their Jacobian (R, D, D) at ``x`` (R, D)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[-1] != self.L.shape[0]:
            raise FitError(f"GaussianPrior: expected x with {self.L.shape[0]} columns, found "
                           f"shape {x.shape}")
        res = (x - self.mean) @ self.L_inv.T
        jac = np.broadcast_to(self.L_inv, (x.shape[0], *self.L_inv.shape)).copy()
        return res, jac

    def m2ll(self, x) -> np.ndarray:
        """``(x - mean)' cov^-1 (x - mean)`` per row (the residuals' sum of squares)."""
        res, _ = self(x)
        return np.sum(res * res, axis=1)
