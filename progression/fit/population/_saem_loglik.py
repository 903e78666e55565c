"""SAEM's log-likelihood by importance sampling (see :mod:`~._saem`, "Log-likelihood")."""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp

__all__ = ["is_loglik"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def is_loglik(model, data, mu_i, omega, residual, cols, m, cov, opt, rng):
    """Importance-sampling -2 log L, OFV, MC SE and per-subject OFV (module docstring)."""
    N, E = m.shape
    D = mu_i.shape[1]
    M = opt.is_samples
    nu = opt.is_nu
    # scale matrices of the t proposals: the conditional covariance (full or its diagonal),
    # with a floor so that a chain that never moved still gives a proper proposal
    floor = 1e-6 * np.diag(np.diag(omega))
    if opt.is_covariance == "diagonal":
        cov = np.einsum("nee->ne", cov)[:, :, None] * np.eye(E)[None]
    Lc = np.empty((N, E, E))
    for i in range(N):
        try:
            Lc[i] = np.linalg.cholesky(cov[i] + floor)
        except np.linalg.LinAlgError:
            Lc[i] = np.diag(np.sqrt(np.maximum(np.diag(cov[i]), 0.0) + np.diag(floor)))
    om_inv = np.linalg.inv(omega)
    logdet = np.linalg.slogdet(omega)[1]
    n_unc = (data.mask & (data.cens == 0)).sum(axis=1)
    logq_const = (gammaln((nu + E) / 2) - gammaln(nu / 2) - 0.5 * E * np.log(nu * np.pi)
                  - np.log(np.einsum("nee->ne", Lc)).sum(axis=1))
    batch = max(1, min(M, 20000 // N))
    logw = np.empty((N, M))
    done = 0
    from ._saem_chains import _Chains

    chains = {}
    while done < M:
        mb = min(batch, M - done)
        z = rng.standard_normal((mb, N, E))
        w = rng.chisquare(nu, size=(mb, N, 1))
        t = z / np.sqrt(w / nu)
        eta = m[None] + np.einsum("nef,bnf->bne", Lc, t)    # (mb, N, E)
        idx = np.tile(np.arange(N), mb)
        if mb not in chains:
            # the batches' rows (the data of every draw, the t constants) are built once
            chains[mb] = _Chains(model, data, idx, D, residual)
        ch = chains[mb]
        phi = mu_i[idx].copy()
        phi[:, cols] += eta.reshape(-1, E)
        U, _ = ch.evaluate(phi)
        U = U.reshape(mb, N)
        lp_y = -0.5 * (U + n_unc[None] * _LOG_2PI)
        lp_eta = -0.5 * (E * _LOG_2PI + logdet
                         + np.einsum("bne,ef,bnf->bn", eta, om_inv, eta))
        lq = logq_const[None] - 0.5 * (nu + E) * np.log1p((t ** 2).sum(-1) / nu)
        logw[:, done:done + mb] = (lp_y + lp_eta - lq).T
        done += mb
    ll_i = logsumexp(logw, axis=1) - np.log(M)
    wn = np.exp(logw - ll_i[:, None])                      # weights / their mean
    se_i = wn.std(axis=1, ddof=1) / np.sqrt(M)              # SE of log L_i (delta method)
    minus2ll = float(-2.0 * ll_i.sum())
    ofv_i = -2.0 * ll_i - n_unc * _LOG_2PI
    se = float(2.0 * np.sqrt(np.sum(se_i ** 2)))
    return minus2ll, float(ofv_i.sum()), se, ofv_i
