"""Student-t observation terms of the conditional estimators (Laplace, FOCE-I's inner problem).

A Student-t residual with ``nu`` degrees of freedom and scale ``sqrt(V)`` (``V = a^2 + b^2
f^2``, as for a normal one) has, on the ``-2 log L`` scale without ``log(2 pi)``,

    q(f, V) = (nu + 1) log(1 + r^2 / (nu V)) + log V + c(nu),     r = y - f,
            = (nu + 1) log(nu V + r^2) - nu log V + const,

with ``c(nu) = t_constant(nu) - log(2 pi)``, the same value SAEM's chains give an observed
t value (:mod:`._saem_chains`), so that both estimators report the same OFV. Written with
``S = nu V + r^2`` every partial derivative of q in (f, V) is a short closed form (``dS/df =
-2 r``, ``dS/dV = nu``, higher ones zero), given here up to third order for the exact
gradient of the Laplace objective (:mod:`._gradient`). A censored t value (M3 with the t's
distribution function) is ``-2 log T_nu(z)`` with z as for the normal; its derivatives in z
follow from ``psi = log t_nu(z)``: ``l1 = exp(psi - log T)``, ``l2 = l1 (psi' - l1)``,
``l3 = l2 (psi' - l1) + l1 (psi'' - l2)`` (with psi' = -z, psi'' = -1 they are the normal's).

The expected information weight (FOCE-I's ``W``) of a t observation is that of the t's
location and scale: ``2 (nu+1) / ((nu+3) V) + nu V'^2 / ((nu+3) V^2)`` (Lange, Little &
Taylor 1989); for ``nu -> inf`` the normal's ``2/V + V'^2/V^2``.

Closed forms rather than a symbolic package at run time: these run inside every inner
(eta) iteration for all subjects at once; ``tests/test_population_student.py`` checks each
against finite differences and the objective against numerical integration over eta.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from ..errormodels import t_constant, t_log_cdf

__all__ = ["observed_partials", "observed_info", "censored_log_cdf", "log_constant"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def log_constant(nu) -> np.ndarray:
    """``c(nu)``: what a t observation adds to ``q`` beyond ``(nu+1) log(1 + r^2/(nu V)) +
    log V`` on the NONMEM scale (``-2 log`` of the normalising constant minus ``log(2 pi)``);
    0 for ``nu = inf``."""
    return np.asarray(t_constant(nu), dtype=float) - _LOG_2PI


def observed_partials(r, V, nu) -> dict:
    """q of an observed t value and its partial derivatives in (f, V) up to third order.

    Parameters
    ----------
    r, V, nu : ndarray, broadcastable
        Residual ``y - f``, variance (squared scale) and degrees of freedom (finite).

    Returns
    -------
    dict
        ``q``, ``q_f``, ``q_V``, ``q_ff``, ``q_fV``, ``q_VV``, ``q_fff``, ``q_ffV``, ``q_fVV``,
        ``q_VVV`` (arrays of the broadcast shape).
    """
    c = nu + 1.0
    S = nu * V + r * r
    return dict(
        q=c * np.log1p(r * r / (nu * V)) + np.log(V) + log_constant(nu),
        q_f=-2.0 * c * r / S,
        q_V=c * nu / S - nu / V,
        q_ff=c * (2.0 / S - 4.0 * r * r / S ** 2),
        q_fV=2.0 * c * nu * r / S ** 2,
        q_VV=-c * nu * nu / S ** 2 + nu / V ** 2,
        q_fff=c * (12.0 * r / S ** 2 - 16.0 * r ** 3 / S ** 3),
        q_ffV=c * nu * (-2.0 / S ** 2 + 8.0 * r * r / S ** 3),
        q_fVV=-4.0 * c * nu * nu * r / S ** 3,
        q_VVV=2.0 * c * nu ** 3 / S ** 3 - 2.0 * nu / V ** 3,
    )


def observed_info(V, v1, nu) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected information weight W of a t observation along f and its partials
    ``(W, dW/dV, dW/dV')`` (``V' = dV/df = v1``)."""
    k = 1.0 / (nu + 3.0)
    W = 2.0 * (nu + 1.0) * k / V + nu * k * v1 * v1 / V ** 2
    W_V = -2.0 * (nu + 1.0) * k / V ** 2 - 2.0 * nu * k * v1 * v1 / V ** 3
    W_v1 = 2.0 * nu * k * v1 / V ** 2
    return W, W_V, W_v1


def _log_pdf(z, nu):
    """``log t_nu(z)`` (unit scale)."""
    return (gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * np.log(nu * np.pi)
            - 0.5 * (nu + 1.0) * np.log1p(z * z / nu))


def censored_log_cdf(z, nu) -> dict:
    """``log T_nu(z)`` and what the M3 terms need of it (arrays of the broadcast shape).

    Returns
    -------
    dict
        ``logT``; ``l1``, ``l2``, ``l3``: its first three derivatives in z; ``mu``: ``t_nu(z)
        / (1 - T_nu(z))``; ``kap``: the indicator's information ``2 t^2 / (T (1 - T))`` and
        ``kap1`` its derivative in z.
    """
    logT = t_log_cdf(z, nu)
    psi = _log_pdf(z, nu)
    psi1 = -(nu + 1.0) * z / (nu + z * z)
    psi2 = -(nu + 1.0) * (nu - z * z) / (nu + z * z) ** 2
    l1 = np.exp(psi - logT)
    l2 = l1 * (psi1 - l1)
    l3 = l2 * (psi1 - l1) + l1 * (psi2 - l2)
    mu = np.exp(psi - t_log_cdf(-z, nu))
    kap = 2.0 * l1 * mu
    # d/dz log kap = 2 psi' - l1 + mu
    kap1 = kap * (2.0 * psi1 - l1 + mu)
    return dict(logT=logT, l1=l1, l2=l2, l3=l3, mu=mu, kap=kap, kap1=kap1)
