"""SAEM's own standard errors: the observed Fisher information by stochastic approximation of
Louis' missing-information principle over the smoothing phase (Delyon, Lavielle & Moulines
1999; Monolix's "stochastic approximation" method).

``I = -E[d2 log p(y, phi)] - E[g g'] + E[g] E[g]'`` is approximated along the chains: ``G``
the SA of the complete-data Hessian plus score outer products, ``Delta_i`` the SA of each
subject's mean score; :class:`Louis` gives the complete-data score and Hessian in closed form
(no model derivatives), :func:`information` corrects the Monte Carlo bias of
``sum_i Delta_i Delta_i'`` by batch means.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BATCH", "Louis", "information", "inverse_pd", "standard_errors"]


class Louis:
    """Complete-data score and Hessian of ``log p(y, phi; theta)`` for every chain.

    ``theta`` = (B (P1, E) row-major: intercepts ``mu`` then covariate coefficients; Omega's
    parameters: log variances, then the covariances of a full Omega; log a_k, log b_k of the
    estimated residual SDs). The prior part uses the Gaussian identities with
    ``A = Omega^-1``, ``v = A eta``, ``Omega_k = dOmega/dpsi_k``::

        d/dB_pe   = x_p v_e                      d2/dB dB' = -x x' (x) A
        d/dpsi_k  = -tr(A Omega_k)/2 + v'Omega_k v/2
        d2/dB_pe dpsi_k = -x_p (A Omega_k v)_e
        d2/dpsi_k dpsi_l = tr(A Omega_l A Omega_k)/2 - tr(A Omega_kl)/2
                           - v'Omega_l A Omega_k v + v'Omega_kl v/2

    (``Omega_kl`` non-zero only for a log variance with itself, where it equals ``Omega_k``);
    the residual part ``-1/2 sum (r^2/V + log V)``, ``V = a^2 + b^2 f^2``, through
    ``dV/dlog a = 2 a^2``, ``dV/dlog b = 2 b^2 f^2`` (censored values imputed, so complete).

    Typical values without a random effect (``fixed_columns``, named ``theta[d]``) enter the
    data term only: their per-chain scores and expected information come from the M-step's
    :class:`~._saem_fixed.FixedEffectStep` (model derivatives by forward differences); their
    complete-data Hessian is the expected one (``-J' W J``, Fisher scoring) and their cross
    terms with the residual SDs are left out (zero in expectation given the individual
    parameters).
    """

    def __init__(self, X, sub, E, pattern, var_free, b_free, has_a, has_b, fixed_columns=()):
        self.X, self.sub, self.E = X, sub, E
        self.P1 = X.shape[1]
        self.var_free = np.flatnonzero(var_free)
        self.pairs = [(e, f) for e in range(E) for f in range(e) if pattern[e, f]
                      and var_free[e] and var_free[f]]
        self.Kw = self.var_free.size + len(self.pairs)
        self.b_keep = np.flatnonzero(np.asarray(b_free).ravel())
        self.res = [(k, w) for k in range(len(has_a)) for w, h in (("a", has_a[k]),
                                                                   ("b", has_b[k])) if h]
        self.Kb = self.b_keep.size
        self.fixed_columns = tuple(int(c) for c in fixed_columns)
        self.K = self.Kb + self.Kw + len(self.res) + len(self.fixed_columns)
        names = [(f"mu[{e}]" if p == 0 else f"beta[{p - 1},{e}]")
                 for p in range(self.P1) for e in range(E)]
        names = [names[j] for j in self.b_keep]
        names += [f"log omega2[{e}]" for e in self.var_free]
        names += [f"omega[{e},{f}]" for e, f in self.pairs]
        names += [f"log {w}[{k}]" for k, w in self.res]
        names += [f"theta[{c}]" for c in self.fixed_columns]
        self.names = tuple(names)

    def values(self, B, omega, a, b, theta_fixed=()):
        """The parameter vector in the order of ``names``."""
        return np.r_[B.ravel()[self.b_keep], np.log(np.diag(omega)[self.var_free]),
                     [omega[e, f] for e, f in self.pairs],
                     [np.log(a[k] if w == "a" else b[k]) for k, w in self.res],
                     np.asarray(theta_fixed, dtype=float)]

    def terms(self, eta_c, omega, d, ysim, fz, a, b, fixed=None):
        """Per-chain scores (R, K) and the sum over chains of the Hessians (K, K).

        ``fixed``: ``(scores (R, F), information summed over chains (F, F))`` of the typical
        values without a random effect (required when ``fixed_columns`` is not empty).
        """
        g, H = self._terms(eta_c, omega, d, ysim, fz, a, b)
        F = len(self.fixed_columns)
        if not F:
            return g, H
        per, info_sum = fixed
        K0 = g.shape[1]
        g = np.hstack([g, per])
        Hf = np.zeros((K0 + F, K0 + F))
        Hf[:K0, :K0] = H
        Hf[K0:, K0:] = -info_sum
        return g, Hf

    def _terms(self, eta_c, omega, d, ysim, fz, a, b):
        R, E, P1 = eta_c.shape[0], self.E, self.P1
        Kb = P1 * E
        A = np.linalg.inv(omega)
        A = 0.5 * (A + A.T)
        v = eta_c @ A
        Xr = self.X[self.sub]
        dOm = np.zeros((self.Kw, E, E))
        nv = self.var_free.size
        for j, e in enumerate(self.var_free):
            dOm[j, e, e] = omega[e, e]
        for j, (e, f) in enumerate(self.pairs):
            dOm[nv + j, e, f] = dOm[nv + j, f, e] = 1.0
        isdiag = np.r_[np.ones(nv), np.zeros(len(self.pairs))]
        tr_k = np.einsum("ef,kfe->k", A, dOm)
        AO = A[None] @ dOm                                     # A Omega_k
        T2 = np.einsum("lef,kfe->lk", AO, AO)                  # tr(A Omega_l A Omega_k)
        w = np.einsum("kef,rf->rke", dOm, v)                   # Omega_k v
        u = np.einsum("ef,rkf->rke", A, w)                     # A Omega_k v
        vw = np.einsum("re,rke->rk", v, w)                     # v' Omega_k v
        g = np.zeros((R, Kb + self.Kw + len(self.res)))
        H = np.zeros((g.shape[1], g.shape[1]))
        g[:, :Kb] = (Xr[:, :, None] * v[:, None, :]).reshape(R, Kb)
        g[:, Kb:Kb + self.Kw] = -0.5 * tr_k[None] + 0.5 * vw
        H[:Kb, :Kb] = -np.kron(Xr.T @ Xr, A)
        hbw = -np.einsum("rp,rke->pek", Xr, u).reshape(Kb, self.Kw)
        H[:Kb, Kb:Kb + self.Kw] = hbw
        H[Kb:Kb + self.Kw, :Kb] = hbw.T
        H[Kb:Kb + self.Kw, Kb:Kb + self.Kw] = (
            R * (0.5 * T2 - 0.5 * np.diag(isdiag * tr_k))
            - np.einsum("rle,rke->lk", w, u) + 0.5 * np.diag(isdiag * vw.sum(axis=0)))
        # only the free coefficients (intercepts always; covariate effects where modelled)
        keep = np.r_[self.b_keep, Kb + np.arange(self.Kw + len(self.res))]
        g = g[:, keep]
        H = H[np.ix_(keep, keep)]
        o = self.Kb + self.Kw
        if self.res:
            with np.errstate(all="ignore"):
                f2 = fz * fz
                V = np.where(d.mask, a[d.observable] ** 2 + b[d.observable] ** 2 * f2, 1.0)
                r2 = np.where(d.mask, (ysim - fz) ** 2, 0.0)
                c1 = -0.5 * (1.0 / V - r2 / V ** 2)
                c2 = 0.5 / V ** 2 - r2 / V ** 3
            dv = {}
            for j, (k, wh) in enumerate(self.res):
                m = d.mask & (d.observable == k)
                dV = np.where(m, 2.0 * (a[k] ** 2 if wh == "a" else b[k] ** 2 * f2), 0.0)
                dv[j] = dV
                g[:, o + j] = (c1 * dV).sum(axis=1)
            for j in dv:
                for jj in dv:
                    h = np.sum(c2 * dv[j] * dv[jj])
                    if j == jj:
                        h += np.sum(c1 * 2.0 * dv[j])          # d2V/dlog s^2 = 2 dV/dlog s
                    H[o + j, o + jj] = h
        return g, H


#: Smoothing iterations per batch of the batch-means estimate of Var(Delta_i).
BATCH = 10


def _noise(batch_means):
    """``sum_i Var(Delta_i)`` (K, K) by batch means: the bias that the Monte Carlo noise in
    the per-subject mean scores ``Delta_i`` adds to ``sum_i Delta_i Delta_i'`` (zero with
    fewer than 4 batches). The variance of a mean of ``B`` batch means is the between-batch
    covariance over ``B``; batches of ``BATCH`` iterations absorb most of the chains'
    autocorrelation."""
    B = len(batch_means)
    if B < 4:
        return 0.0
    arr = np.array(batch_means)                  # (B, N, K)
    dev = arr - arr.mean(axis=0)
    return np.einsum("bnk,bnl->kl", dev, dev) / (B - 1) / B


def information(Gsa, Delta, batch_means):
    """Louis' information ``-G + sum_i Delta_i Delta_i'`` less the batch-means estimate of
    its Monte Carlo bias; without the correction when that is not positive definite (a
    flat direction, where the noise estimate is of the order of the information)."""
    base = -Gsa + Delta.T @ Delta
    info = base - _noise(batch_means)
    info = 0.5 * (info + info.T)
    try:
        np.linalg.cholesky(info)
        return info
    except np.linalg.LinAlgError:
        return 0.5 * (base + base.T)


def inverse_pd(info):
    """The inverse of a symmetric information matrix; NaN when it is not positive
    definite (then there are no standard errors)."""
    try:
        np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        return np.full(info.shape, np.nan)
    cov = np.linalg.inv(info)
    return 0.5 * (cov + cov.T)


def standard_errors(info):
    """Standard errors (K,) from an information matrix (NaN where it has no inverse)."""
    cov = inverse_pd(info)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
