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

**Residual distribution.** The standardised residual ``r`` (on the model's scale: ``log y -
log f`` for log-normal) is standard normal by default, or Student t with ``df`` degrees of
freedom (``[error.OBS] distribution = "t", df = 3``, nlmixr2's ``dt(df)``): density
``Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) sigma) (1 + r^2/df)^(-(df+1)/2)``, the Jacobian
``1/y`` for log-normal values as before, ``sigma`` the t *scale* (not the SD, which is
``sigma sqrt(df/(df-2))`` for ``df > 2``). A t error model is written as the kind
``"MODEL:t(DF)"`` (:func:`error_kind`, :func:`split_kind`), which every table of this module
accepts; its integer code carries ``df`` (:func:`code_of`, to 1e-6), so every caller of
:func:`likelihood_terms` evaluates the t likelihood without knowing about it. For the sum of
squares a t value contributes ``r_t = sign(r) sqrt((df+1) log(1 + r^2/df))`` (so that ``r_t^2``
is its part of ``-2 log L`` up to the constant: Gauss-Newton and Levenberg-Marquardt then
minimise the exact t likelihood; ``r_t ~ r sqrt((df+1)/df)`` near 0), censored values
``sqrt(-2 log T_df(z))`` with the t CDF.

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
matrix of the ``e`` residuals underestimates the information about ``sigma`` by half. For a
t residual the two terms are multiplied by ``(nu+1)/(nu+3)`` and ``nu/(nu+3)`` (the t
location-scale family's expected information; 1 and 1 as ``nu -> inf``).
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy.special import gammaln, log_ndtr, stdtr

__all__ = ["ERROR_MODELS", "ADDITIVE", "PROPORTIONAL", "COMBINED", "LOGNORMAL", "MEASURED",
           "C_SIGMA", "DISTRIBUTIONS", "T_MODELS", "error_kind", "split_kind", "code_of",
           "decode", "describe_kind", "t_constant", "Terms", "likelihood_terms"]

#: Residual distributions of ``[error.OBS] distribution``.
DISTRIBUTIONS = ("normal", "t")
#: Error models that take a Student-t residual: those whose scale is one parameter, constant
#: given the parameters (``measured`` has none; the proportional and combined scales follow
#: the prediction, which the likelihood's bookkeeping keys on the plain model names).
T_MODELS = ("additive", "lognormal")
#: Codes of t kinds: base code + _T_STRIDE * round(df * _DF_UNIT).
_T_STRIDE = 8
_DF_UNIT = 1_000_000
_T_KIND = re.compile(r"^([a-z]+):t\((.+)\)$")


def error_kind(model: str, distribution: str = "normal", df: float | None = None) -> str:
    """The kind string of an error model: ``model`` for a normal residual, ``"model:t(df)"``
    (e.g. ``"lognormal:t(3)"``) for a Student-t one; what configs, problems and saved fits
    carry."""
    if distribution == "normal":
        return model
    d = float(df)
    return f"{model}:t({int(d) if d.is_integer() else repr(d)})"


def split_kind(kind: str) -> tuple[str, float]:
    """``(base error model, df)`` of a kind string; ``df = inf`` for a normal residual.

    Raises
    ------
    KeyError
        Not a kind of :data:`ERROR_MODELS` (the message names it).
    """
    m = _T_KIND.match(str(kind))
    if m is None:
        if kind in _BASE:
            return str(kind), math.inf
        raise KeyError(kind)
    base = m.group(1)
    try:
        df = float(m.group(2))
    except ValueError:
        raise KeyError(kind) from None
    if base not in T_MODELS or not (df > 0 and math.isfinite(df)):
        raise KeyError(kind)
    return base, df


def describe_kind(kind: str) -> str:
    """Words for reports: ``"lognormal"``, ``"lognormal, Student t (df 3)"``."""
    base, df = split_kind(kind)
    return base if math.isinf(df) else f"{base}, Student t (df {df:g})"


def code_of(kind: str) -> int:
    """Integer code of a kind: the base code (0-4), plus ``8 round(df 1e6)`` for a t residual
    (so that an array of codes carries each observation's df: :func:`decode`)."""
    base, df = split_kind(kind)
    code = _BASE[base]
    if math.isfinite(df):
        code += _T_STRIDE * max(1, int(round(df * _DF_UNIT)))
    return code


def decode(code):
    """``(base codes, df)`` of an array of codes (df ``inf`` for normal residuals)."""
    code = np.asarray(code, dtype=np.int64)
    n = code // _T_STRIDE
    return code % _T_STRIDE, np.where(n > 0, n / _DF_UNIT, np.inf)


def t_log_cdf(z, nu):
    """``log T_nu(z)`` of the unit-scale t, from the upper tail where ``z > 0`` (no
    cancellation near 1) and directly below (no underflow of the lower tail)."""
    with np.errstate(all="ignore"):
        return np.where(z > 0, np.log1p(-stdtr(nu, -np.abs(z))),
                        np.log(stdtr(nu, np.minimum(z, 0.0))))


def t_constant(nu):
    """``-2 log`` of the t density's normalising constant at r = 0 for unit scale,
    ``-2 [lgamma((nu+1)/2) - lgamma(nu/2) - log(nu pi)/2]``; ``log(2 pi)`` for ``nu = inf``."""
    nu = np.asarray(nu, dtype=float)
    with np.errstate(all="ignore"):
        fin = np.isfinite(nu)
        nf = np.where(fin, nu, 1.0)
        c = -2.0 * (gammaln(0.5 * (nf + 1.0)) - gammaln(0.5 * nf) - 0.5 * np.log(nf * np.pi))
    return np.where(fin, c, _LOG_2PI)


class _KindTable(dict):
    """A table by base error model that also answers for t kinds (``"lognormal:t(3)"``),
    with the entry of the base model (``__contains__`` and iteration: base names only)."""

    def __missing__(self, key):
        base, _ = split_kind(key)
        return dict.__getitem__(self, base)


class _CodeTable(dict):
    """Kind -> integer code, t kinds included (:func:`code_of`)."""

    def __missing__(self, key):
        return code_of(key)


#: Error model name -> its parameter names (t kinds: those of their base model).
ERROR_MODELS = _KindTable({
    "additive": ("a",),
    "proportional": ("b",),
    "combined": ("a", "b"),
    "lognormal": ("sigma",),
    "measured": (),
})
ADDITIVE, PROPORTIONAL, COMBINED, LOGNORMAL, MEASURED = range(5)
_BASE = {name: i for i, name in enumerate(ERROR_MODELS)}
CODES = _CodeTable(_BASE)
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
        Error model of each observation (ADDITIVE, PROPORTIONAL, COMBINED, LOGNORMAL, or
        their t codes from :func:`code_of`, which carry the degrees of freedom).
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
    code, nu = decode(code)
    student = np.isfinite(nu)
    any_t = bool(student.any())
    nuf = np.where(student, nu, 1.0)            # a finite stand-in where normal
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
        r_std = (u - fl) / sig
        z = np.where(cens == 1, (lim - fl) / sig, (fl - lim) / sig)
        z0 = np.where(observed, 0.0, z)
        logphi = log_ndtr(z0)
        if any_t:
            logt = t_log_cdf(z0, nuf)
            logphi = np.where(student, logt, logphi)
            # t observations: r_t^2 = (nu+1) log(1 + r^2/nu), the sign of r kept
            q = (nuf + 1.0) * np.log1p(r_std * r_std / nuf)
            r_obs = np.where(student, np.sign(r_std) * np.sqrt(q), r_std)
        else:
            r_obs = r_std
        r_cens = np.sqrt(np.maximum(-2.0 * logphi, 0.0))
        r = np.where(observed, r_obs, r_cens)
        t.r = r
        t.has_e = observed & sigma_varies
        arg = 2.0 * np.log(sig[t.has_e]) + C_SIGMA
        t.e = np.sqrt(np.maximum(arg, 1e-300))
        const = t_constant(nu) if any_t else _LOG_2PI
        t.m2ll = np.where(observed, r * r + 2.0 * np.log(sig) + const
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
        dr_obs = -dfl / sig[:, None] - r_std[:, None] * dlogsig
        if any_t:
            # d r_t / d r = (nu+1) r / ((nu + r^2) r_t), sqrt((nu+1)/nu) at r = 0
            small = np.abs(r_obs) < 1e-12
            g = np.where(small, np.sqrt((nuf + 1.0) / nuf),
                         (nuf + 1.0) * r_std / ((nuf + r_std * r_std)
                                                * np.where(small, 1.0, r_obs)))
            dr_obs = np.where(student[:, None], g[:, None] * dr_obs, dr_obs)
        # d sqrt(-2 log F(z)) = -(p(z) / F(z)) / r dz (F, p the normal or t CDF and density)
        sgn = np.where(cens == 1, -1.0, 1.0)
        dz = sgn[:, None] * dfl / sig[:, None] - z[:, None] * dlogsig
        log_pdf = -0.5 * z * z - 0.5 * _LOG_2PI
        if any_t:
            log_pdf_t = -0.5 * t_constant(nuf) - 0.5 * (nuf + 1.0) * np.log1p(z * z / nuf)
            log_pdf = np.where(student, log_pdf_t, log_pdf)
        ratio = np.where(r_cens > 0, np.exp(log_pdf - logphi) / np.where(r_cens > 0, r_cens,
                                                                           1.0), 0.0)
        dr_cens = -ratio[:, None] * dz
        t.dr = np.where(observed[:, None], dr_obs, dr_cens)
        t.dr[~np.isfinite(t.dr) & np.isfinite(r)[:, None] & ~observed[:, None]] = 0.0
        ok = arg > 1e-300
        t.de = np.where(ok[:, None], dlogsig[t.has_e] / t.e[:, None], 0.0)
        # expected information of the t location-scale family: (nu+1)/(nu+3) for the
        # location, 2 nu/(nu+3) for log sigma (1 and 2 for the normal)
        w_f = np.where(student, np.sqrt((nuf + 1.0) / (nuf + 3.0)), 1.0)
        w_s = np.where(student, np.sqrt(2.0 * nuf / (nuf + 3.0)), np.sqrt(2.0))
        t.fisher_f = np.where(observed[:, None], w_f[:, None] * dfl / sig[:, None], t.dr)
        t.fisher_s = np.where(observed[:, None], w_s[:, None] * dlogsig, 0.0)
    if N == 0:
        t.dr = np.zeros((0, df.shape[1]))
    return t
