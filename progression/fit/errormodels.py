"""Error models and the likelihood written as a sum of squares.

For an observation ``y`` of a model prediction ``f`` with standard deviation ``sigma``:

===============  =====================================  ===================
error model      residual scale, sigma                   parameters
===============  =====================================  ===================
additive         y - f,  sigma = a                       ``a``
proportional     y - f,  sigma = b |f|                   ``b``
combined         y - f,  sigma = sqrt(a^2 + b^2 f^2)     ``a``, ``b``
lognormal        log y - log f,  sigma                   ``sigma``
measured         y - f,  sigma = the value's ``sd``       none (a data column)
===============  =====================================  ===================

The ``measured`` model takes each value's known standard deviation from the data (column
``sd``); it is constant, so it adds no ``e`` residual and no parameter.

**Residuals.** The optimiser minimises a sum of squares equal to ``-2 log L`` up to a
constant. Each observed value contributes ``r = (y - f) / sigma`` (on the log scale for the
log-normal model) and, when ``sigma`` can change during the fit (an estimated error parameter,
or a proportional/combined model where ``sigma`` follows ``f``), a second residual
``e = sqrt(2 log sigma + C)`` with ``C = 50`` (the Data2Dynamics construction; ``e`` is real
for ``sigma > 1.4e-11``), so that ``r^2 + e^2 = (y - f)^2 / sigma^2 + 2 log sigma + C``. A
censored value contributes ``r = sqrt(-2 log Phi(z))`` with ``z = (limit - f) / sigma`` below a
limit (``cens = 1``) and ``z = (f - limit) / sigma`` above one (``cens = -1``). Hence
``sum of squares = -2 log L - n_obs log(2 pi) - 2 sum(log y over log-normal values)
+ C n_e``; the reported objective is the exact ``-2 log L``.

**Information.** For covariances the expected (Fisher) information is used:
``I = sum over observed values of (df^T df / sigma^2 + 2 dlog sigma^T dlog sigma)`` (``f`` on
the residual scale), plus the Gauss-Newton term of the censored residuals; the Gauss-Newton
matrix of the ``e`` residuals underestimates the information about ``sigma`` by half.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

__all__ = ["ERROR_MODELS", "ADDITIVE", "PROPORTIONAL", "COMBINED", "LOGNORMAL", "MEASURED",
           "C_SIGMA",
           "Terms", "likelihood_terms"]

#: Error model name -> its parameter names.
ERROR_MODELS = {
    "additive": ("a",),
    "proportional": ("b",),
    "combined": ("a", "b"),
    "lognormal": ("sigma",),
    "measured": (),
}
ADDITIVE, PROPORTIONAL, COMBINED, LOGNORMAL, MEASURED = range(5)
CODES = {name: i for i, name in enumerate(ERROR_MODELS)}
#: The constant inside the sigma residual e = sqrt(2 log sigma + C).
C_SIGMA = 50.0
_LOG_2PI = float(np.log(2.0 * np.pi))


class Terms:
    """Residuals, their derivatives and the likelihood pieces of a set of observations.

    Attributes
    ----------
    r, dr : ndarray (N,), (N, D)
        Data residuals and their derivatives with respect to the D parameter columns.
    has_e : ndarray of bool (N,)
        Which observations also carry a sigma residual.
    e, de : ndarray (N_e,), (N_e, D)
        The sigma residuals (of the observations with ``has_e``) and their derivatives.
    m2ll : ndarray (N,)
        Each observation's contribution to -2 log L.
    fisher : ndarray (N, D), (N, D)
        Rows ``df / sigma`` and ``sqrt(2) dlog sigma`` of the expected information (observed
        values) or the censored residual's derivative.
    """

    __slots__ = ("r", "dr", "has_e", "e", "de", "m2ll", "fisher_f", "fisher_s")


def likelihood_terms(code, y, cens, limit, f, df, a, da, b, db, sigma_varies,
                     want_jac: bool = True) -> Terms:
    """Evaluate residuals for N observations at once.

    Parameters
    ----------
    code : int array (N,)
        Error model of each observation (ADDITIVE, PROPORTIONAL, COMBINED, LOGNORMAL).
    y, limit : float arrays (N,)
        Observed values and censoring limits (NaN where not censored).
    cens : int array (N,)
        0 observed, 1 left-censored (below limit), -1 right-censored (above limit).
    f : float array (N,)
        Predictions; ``df`` (N, D) their derivatives.
    a, b : float arrays (N,)
        Error parameters (``a`` is ``sigma`` for the log-normal model and the value's known
        SD for the measured one; unused entries any value); ``da``, ``db`` (N, D) their
        derivatives.
    sigma_varies : bool array (N,)
        Whether sigma may change (adds the ``e`` residual for observed values).
    """
    t = Terms()
    N = y.shape[0]
    logn = code == LOGNORMAL
    prop = code == PROPORTIONAL
    comb = code == COMBINED
    with np.errstate(all="ignore"):
        fl = np.where(logn, np.log(f), f)
        u = np.where(logn, np.log(y), y)
        lim = np.where(logn, np.log(limit), limit)
        fa = np.abs(f)
        sig = np.where(prop, b * fa, np.where(comb, np.sqrt(a * a + b * b * f * f), a))
        observed = cens == 0
        r_obs = (u - fl) / sig
        z = np.where(cens == 1, (lim - fl) / sig, (fl - lim) / sig)
        logphi = log_ndtr(np.where(observed, 0.0, z))
        r_cens = np.sqrt(np.maximum(-2.0 * logphi, 0.0))
        r = np.where(observed, r_obs, r_cens)
        t.r = r
        t.has_e = observed & sigma_varies
        arg = 2.0 * np.log(sig[t.has_e]) + C_SIGMA
        t.e = np.sqrt(np.maximum(arg, 1e-300))
        t.m2ll = np.where(observed, r * r + 2.0 * np.log(sig) + _LOG_2PI
                          + np.where(logn, 2.0 * u, 0.0), r * r)
        if not want_jac:
            return t
        dfl = np.where(logn, 1.0 / f, 1.0)[:, None] * df
        dsig = np.where(prop[:, None], db * fa[:, None] + (b * np.sign(f))[:, None] * df,
                        np.where(comb[:, None],
                                 (a[:, None] * da + (b * f * f)[:, None] * db
                                  + (b * b * f)[:, None] * df) / sig[:, None],
                                 da))
        dlogsig = dsig / sig[:, None]
        dr_obs = -dfl / sig[:, None] - r_obs[:, None] * dlogsig
        # d sqrt(-2 log Phi(z)) = -(phi(z) / Phi(z)) / r dz
        sgn = np.where(cens == 1, -1.0, 1.0)
        dz = sgn[:, None] * dfl / sig[:, None] - z[:, None] * dlogsig
        log_pdf = -0.5 * z * z - 0.5 * _LOG_2PI
        ratio = np.where(r_cens > 0, np.exp(log_pdf - logphi) / np.where(r_cens > 0, r_cens,
                                                                           1.0), 0.0)
        dr_cens = -ratio[:, None] * dz
        t.dr = np.where(observed[:, None], dr_obs, dr_cens)
        t.dr[~np.isfinite(t.dr) & np.isfinite(r)[:, None] & ~observed[:, None]] = 0.0
        ok = arg > 1e-300
        t.de = np.where(ok[:, None], dlogsig[t.has_e] / t.e[:, None], 0.0)
        t.fisher_f = np.where(observed[:, None], dfl / sig[:, None], t.dr)
        t.fisher_s = np.where(observed[:, None], np.sqrt(2.0) * dlogsig, 0.0)
    if N == 0:
        t.dr = np.zeros((0, df.shape[1]))
    return t
