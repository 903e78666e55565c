"""SAEM's chains: the data term of all chains at once, and the complete data of one iteration.

:class:`_Chains` evaluates ``sum_j q_ij`` (-2 log p(y_i | phi_i) without log 2 pi) for every
chain row in one ``predict`` call; :func:`complete_data` imputes the censored values and draws
the Student-t residuals' latent weights (the simulation step's complete data, shared by
:func:`._saem.saem` and :func:`._saem_score.score_pass`).

*Early rejection* (:meth:`_Chains.evaluate` with ``bound``): a Metropolis-Hastings step draws
its uniform before the proposal's evaluation, so the data term above which the proposal is
rejected is known in advance (``U_p < U + 2 log(1/u) + prior terms``). When the individual
model accepts a bound (:class:`~._saem_model.RK4Predictions` on the compiled path), each row
stops integrating as soon as a lower bound of its data term (the values reached so far plus
each remaining value's least term) exceeds that threshold (Solonen et al. 2012, "early
rejection"). The bound is conservative by a relative margin of 1e-7, above the rounding of
either sum, so every accept/reject decision, and hence the chains, the estimates and the
random number stream, are those of the full evaluation; only rejected proposals are cut
short.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri, stdtr, stdtrit

from ..errormodels import t_constant, t_log_cdf
from ._core import call_predict

__all__ = ["_Chains", "complete_data", "residual_df_of", "t_weights"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Relative margin of the early-rejection threshold (far above the rounding of the sums).
MARGIN = 1e-7


class _Chains:
    """Data term ``sum_j q_ij`` (−2 log p(y|phi) without log 2 pi) of all chains at once.

    A model with ``extra_m2ll`` true (a joint model: ``[survival]``) also gives, through
    ``predict_extra(phi, index) -> (f, G, s)``, a term ``s = -2 log p(T_i | phi)`` that does
    not depend on the residual model; :meth:`evaluate` adds it and keeps it in
    :attr:`last_extra` (R,) so that the caller can carry it with the chains' state.
    """

    def __init__(self, model, data, index, D, residual):
        self.model, self.index, self.D = model, index, D
        self.d = data.rows(index)
        self.n = data.y.shape[1]
        self.obs = self.d.mask & (self.d.cens == 0)
        self.cen = self.d.mask & (self.d.cens != 0)
        self.residual = residual
        self.extra = bool(getattr(model, "extra_m2ll", False))
        self.last_extra = np.zeros(index.size)
        # Student-t residuals (the model's residual_df; inf = normal): per value
        nu_k = residual_df_of(model)
        nu = (np.full(self.n, np.inf)[None] if nu_k is None
              else np.asarray(nu_k, dtype=float)[np.minimum(self.d.observable,
                                                            nu_k.size - 1)])
        self.student = self.d.mask & np.isfinite(nu)
        self.any_t = bool(self.student.any())
        self.nu = np.where(self.student, nu, 1.0)
        # -2 log of the t density's constant relative to the normal's (q excludes log 2 pi)
        # (at the few distinct df values: importance sampling builds this for 20000 rows)
        vals, inv = np.unique(self.nu, return_inverse=True)
        tc = t_constant(vals)[inv].reshape(self.nu.shape)
        self.t_const = np.where(self.student, tc - _LOG_2PI, 0.0)

    def _predict_extra(self, phi, index):
        # the survival term rides as one more prediction column, so call_predict's
        # per-row retry and finiteness check cover it as well
        f, G, s = self.model.predict_extra(phi, index)
        f = np.concatenate([np.asarray(f, dtype=float), np.asarray(s, float)[:, None]], axis=1)
        G = np.asarray(G, dtype=float)
        G = np.concatenate([G, np.zeros((G.shape[0], 1, G.shape[2]))], axis=1)
        return f, G

    def evaluate(self, phi, residual=None, bound=None):
        """Data terms (R,) (plus the survival term) and predictions (R, n) at ``phi`` (R, D).

        ``bound`` (R,), optional: each row's threshold above which its proposal is rejected
        (early rejection, module docstring; used when the model accepts it, without a
        survival term). A row cut short has data term inf and NaN predictions, which the
        caller's acceptance test rejects exactly as the full value would have been.
        """
        if not self.extra:
            model = self.model
            if bound is not None and getattr(model, "accepts_bound", False):
                model = _Bounded(model, self._bound(bound, residual))
            f, _, ok = call_predict(model, phi, self.index, self.n, self.D)
            self.last_extra = np.zeros(self.index.size)
            return self.data_term(f, residual, ok), f
        fs, _, ok = call_predict(self._predict_extra, phi, self.index, self.n + 1, self.D)
        f, s = fs[:, :self.n], fs[:, self.n]
        self.last_extra = np.where(ok, s, np.inf)
        return self.data_term(f, residual, ok) + self.last_extra, f

    def _bound(self, thr, residual=None):
        """The early-rejection arrays of :func:`._saem_compiled.rk4_rows` for thresholds
        ``thr`` (R,) under ``residual``: rows with an additive SD 0 somewhere (no lower bound
        of log V) get an infinite threshold."""
        residual = self.residual if residual is None else residual
        d = self.d
        key = (tuple(residual.a), tuple(residual.b))
        if getattr(self, "_bound_key", None) != key:
            a, b = (np.asarray(v, dtype=float)[d.observable] for v in (residual.a, residual.b))
            kind = np.where(self.obs, np.where(self.student, 2, 1), 0).astype(np.int8)
            qs = np.stack([np.where(self.obs, d.y, 0.0), np.where(kind > 0, a * a, 1.0), b * b,
                           self.nu, self.t_const], axis=-1)
            free = ~np.any((kind > 0) & (a <= 0.0), axis=1)
            self._bound_key, self._bound_arrays = key, (qs, kind, free)
        qs, kind, free = self._bound_arrays
        thr = np.asarray(thr, dtype=float)
        thr = np.where(free & ~np.isnan(thr), thr + MARGIN * (1.0 + np.abs(thr)), np.inf)
        return thr, qs, kind

    def data_term(self, f, residual=None, ok=True):
        """``sum_j q_ij`` of predictions ``f`` (inf where ``ok`` is false or not finite).

        Each term is computed at its own values only (uncensored and censored slots apart,
        the t's CDF at the censored t values alone); the sums are those of the full (R, n)
        array with zeros elsewhere, so the numbers do not depend on this layout.
        """
        residual = self.residual if residual is None else residual
        d = self.d
        if not hasattr(self, "_o"):
            self._o, self._c = np.nonzero(self.obs), np.nonzero(self.cen)
            self._o_k, self._c_k = d.observable[self._o], d.observable[self._c]
            self._o_t = self.student[self._o]
            self._c_t = self.student[self._c]
            self._c_s = np.where(d.cens[self._c] == 1, 1.0, -1.0)
        q = np.zeros(f.shape)
        with np.errstate(all="ignore"):
            fo = f[self._o]
            V = residual.variance(fo, self._o_k)
            r = d.y[self._o] - fo
            qo = r * r / V + np.log(V)
            if self.any_t:
                # Student t (scale sqrt(V)): (nu+1) log(1 + r^2/(nu V)) + log V + constant
                nu = self.nu[self._o]
                qt = (nu + 1.0) * np.log1p(r * r / (nu * V)) + np.log(V) + self.t_const[self._o]
                qo = np.where(self._o_t, qt, qo)
            q[self._o] = qo
            if self._c[0].size:
                fc = f[self._c]
                V = residual.variance(fc, self._c_k)
                z = self._c_s * (d.limit[self._c] - fc) / np.sqrt(V)
                lc = log_ndtr(z)
                if self.any_t and self._c_t.any():
                    t = self._c_t
                    nu, zt = self.nu[self._c][t], z[t]
                    lc[t] = t_log_cdf(zt, nu)
                q[self._c] = -2.0 * lc
            val = q.sum(axis=1)
        return np.where(ok & np.isfinite(val), val, np.inf)


def residual_df_of(model):
    """Degrees of freedom of each observable's residual (K,) from the individual model (its
    ``residual_df``, or that of the model it wraps: the RK4 and exact prediction wrappers keep
    the :class:`~._adapter.ProblemModel` as ``.model``); None: every residual normal."""
    for m in (model, getattr(model, "model", None)):
        nu = getattr(m, "residual_df", None)
        if nu is not None:
            return np.asarray(nu, dtype=float).ravel()
    return None


def t_weights(rng, chains, ysim, f, residual):
    """Latent precision weights of the Student-t residuals: y = f + sqrt(V / w) eps with
    w ~ Gamma(nu/2, rate nu/2), drawn from their conditional Gamma((nu+1)/2, rate (nu +
    r^2/V)/2) given the (imputed) values; 1 for normal residuals. With them the complete
    data are Gaussian with variance V / w (the EM of Liu & Rubin 1995 for the t), so the
    residual statistics and Louis' information keep their Gaussian forms in sqrt(w) (y - f)."""
    d = chains.d
    with np.errstate(all="ignore"):
        fz = np.where(d.mask, f, 0.0)
        V = np.where(d.mask, residual.variance(fz, d.observable), 1.0)
        r2 = np.where(d.mask, (ysim - fz) ** 2, 0.0)
        nu = chains.nu
        w = rng.gamma(0.5 * (nu + 1.0), 2.0 / (nu + r2 / V))
    return np.where(chains.student, w, 1.0)


class _Bounded:
    """The model's ``predict`` with an early-rejection bound for the full batch of rows
    (``call_predict``'s row-by-row retry after an exception gets the plain predictions)."""

    def __init__(self, model, bound):
        self.model, self.bound = model, bound

    def __call__(self, phi, index):
        if phi.shape[0] != self.bound[0].shape[0]:
            return self.model.predict(phi, index)
        return self.model.predict(phi, index, bound=self.bound)


def complete_data(rng, chains, f, residual, *, weights: bool = False):
    """The simulation step's complete data at the chains' predictions ``f`` (R, n): censored
    values imputed from the truncated normal (truncated t for Student-t residuals) given
    ``f``, and Student-t values rescaled by their latent precision weights (drawn given the
    values, :func:`t_weights`) so that ``(ysim - f)^2 = w (y - f)^2``, which is what the
    residual statistics and Louis' information read. Uses ``rng`` only for censored values
    and t residuals; returns ``ysim`` (R, n) (0 in empty slots), with ``weights`` also the
    latent precision weights ``w`` (R, n) (1 for normal residuals), which the M-step of
    parameters without a random effect needs (:class:`~._saem_fixed.FixedEffectStep`)."""
    d = chains.d
    ysim = np.where(d.mask, d.y, 0.0)
    if chains.cen.any():
        # one uniform per slot (the random stream does not depend on which are censored),
        # the inverse CDFs at the censored slots only
        u = rng.random(ysim.shape)
        c = np.nonzero(chains.cen)
        fc, uc, lim = f[c], u[c], d.limit[c]
        sd = np.sqrt(residual.variance(fc, d.observable[c]))
        with np.errstate(all="ignore"):
            below = fc + sd * ndtri(uc * ndtr((lim - fc) / sd))
            above = fc - sd * ndtri(uc * ndtr((fc - lim) / sd))
            t = chains.student[c]
            if chains.any_t and t.any():
                # Student t residuals: the truncated t by its inverse CDF
                nu, ft, st, ut, lt = chains.nu[c][t], fc[t], sd[t], uc[t], lim[t]
                below[t] = ft + st * stdtrit(nu, ut * stdtr(nu, (lt - ft) / st))
                above[t] = ft - st * stdtrit(nu, ut * stdtr(nu, (ft - lt) / st))
        ysim[c] = np.where(d.cens[c] == 1, below, above)
    if not chains.any_t:
        return (ysim, np.ones(ysim.shape)) if weights else ysim
    w_t = t_weights(rng, chains, ysim, f, residual)
    ysim = np.where(chains.student, f + np.sqrt(w_t) * (ysim - f), ysim)
    return (ysim, w_t) if weights else ysim
