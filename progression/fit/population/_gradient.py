"""Exact gradient of the FOCE-I objective by the implicit-function rule.

With ``M = Omega^-1 + sum_j F_j g_j g_j'`` (``F = 1/V + V'^2 / (2 V^2)``, ``V' = dV/df``; the
FOCE-I matrix of :mod:`._objective`) and ``eta-hat`` the exact minimiser of
``L(eta; p) = sum_j q_j + eta' Omega^-1 eta``, the subject's objective is
``OFV(p) = L(eta-hat(p); p) + log|Omega| + log|M(eta-hat(p); p)|`` and, for any outer
parameter ``p`` (the typical values ``mu``, Omega, the residual SDs ``a``, ``b``):

    dOFV/dp = dL/dp|eta + d log|Omega|/dp + tr(M^-1 dM/dp|eta) + t' deta-hat/dp,
    deta-hat/dp = -H^-1 d2L/deta dp,        t_k = tr(M^-1 dM/deta_k),

where ``H`` is the exact Hessian of L at eta-hat (the envelope rule removes ``dL/deta`` since
eta-hat is stationary). Everything needs the second derivatives ``d2f/dphi2`` of the model,
analytic when it has ``predict_hessian``, else central differences of G
(:func:`._objective.second_derivatives`, ``2 D`` extra batched ``predict`` calls).

Scope: FOCE-I without censored values (the M3 terms are not differentiated here: a
:class:`~progression.errors.FitError` says so). The gradient is only as exact as eta-hat:
the default inner tolerance (Gauss-Newton step below 1e-10) leaves a relative error near 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ._core import PopulationData, Residual, check_omega, eta_columns_of
from ._inner import FAILED, InnerOptions, InnerResult, conditional_modes
from ._objective import second_derivatives

__all__ = ["FoceiGradient", "focei_gradient"]


@dataclass
class FoceiGradient:
    """FOCE-I objective and its gradient.

    Attributes
    ----------
    ofv_i : ndarray (N,)
        Per-subject objective (inf for failed subjects).
    d_mu : ndarray (N, D)
        dOFV_i/dmu_i (each subject's objective depends on its own mu_i only); the chain rule
        to theta and covariate coefficients is the caller's (``dmu/dtheta``).
    d_omega : ndarray (E, E)
        Sum over subjects of dOFV_i/dOmega as a symmetric matrix ``Gamma`` with
        ``dOFV = sum_kl Gamma_kl dOmega_kl`` for a symmetric perturbation (so an off-diagonal
        parameter ``Omega_kl = Omega_lk`` has derivative ``2 Gamma_kl``).
    d_a, d_b : ndarray (K,)
        Sums over subjects of dOFV/da_k and dOFV/db_k (residual SDs per observable).
    d_omega_i : ndarray (N, E, E)
        The per-subject terms of ``d_omega`` (for the S matrix of a sandwich covariance).
    d_a_i, d_b_i : ndarray (N, K)
        The per-subject terms of ``d_a``, ``d_b``.
    status : ndarray of int (N,)
        Inner status; subjects with FAILED have zero gradient rows and inf objective.
    inner : InnerResult
    hessian : str
        Where d2f came from ("analytic" or "finite differences").
    """

    ofv_i: np.ndarray
    d_mu: np.ndarray
    d_omega: np.ndarray
    d_a: np.ndarray
    d_b: np.ndarray
    d_omega_i: np.ndarray
    d_a_i: np.ndarray
    d_b_i: np.ndarray
    status: np.ndarray
    inner: InnerResult
    hessian: str

    @property
    def ofv(self) -> float:
        """Total objective."""
        return float(self.ofv_i.sum())


def focei_gradient(model, data: PopulationData, mu, omega, residual: Residual, *,
                   eta_columns=None, eta0=None, inner: InnerResult | None = None,
                   inner_options: InnerOptions | None = None, fd_step: float = 1e-4
                   ) -> FoceiGradient:
    """FOCE-I objective and its exact gradient with respect to mu, Omega, a and b.

    Parameters
    ----------
    model : IndividualModel or callable
        ``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))``; ``predict_hessian``
        (R, n, D, D) is used when present.
    data : PopulationData
        N subjects, none with censored values.
    mu : array_like (N, D)
    omega : array_like (E, E)
    residual : Residual
    eta_columns : sequence of int, optional
    eta0 : array_like (N, E), optional
        Warm start of the inner problems.
    inner : InnerResult, optional
        Conditional modes already solved with interaction at these parameters (skips the
        inner solve).
    inner_options : InnerOptions, optional
    fd_step : float
        Step of the differences of G when the model has no ``predict_hessian``.

    Returns
    -------
    FoceiGradient

    Raises
    ------
    FitError
        Censored values present (their terms are not differentiated), or bad shapes.
    """
    residual.check_observables(data)
    mu = np.asarray(mu, dtype=float)
    N, D = mu.shape
    if data.n_subjects != N:
        raise FitError(f"FOCE-I gradient: expected typical parameters for {data.n_subjects} "
                       f"subjects, found {N} rows")
    if data.has_censoring:
        i = int(np.flatnonzero(np.any(data.mask & (data.cens != 0), axis=1))[0])
        raise FitError(f"FOCE-I gradient: censored values are not supported (subject {i} has "
                       "some); use finite differences of the objective")
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    om, Oinv, logdet_om = check_omega(omega, E)
    if inner is None:
        inner = conditional_modes(model, data, mu, om, residual, eta_columns=cols, eta0=eta0,
                                  interaction=True, options=inner_options)
    status = inner.status.copy()
    n = data.y.shape[1]
    K = len(residual.a)
    out = FoceiGradient(ofv_i=np.full(N, np.inf), d_mu=np.zeros((N, D)),
                        d_omega=np.zeros((E, E)), d_a=np.zeros(K), d_b=np.zeros(K),
                        d_omega_i=np.zeros((N, E, E)), d_a_i=np.zeros((N, K)),
                        d_b_i=np.zeros((N, K)), status=status, inner=inner, hessian="")
    good = np.flatnonzero(status != FAILED)
    if good.size == 0:
        return out
    eta = inner.eta[good]
    phi = mu[good].copy()
    phi[:, cols] += eta
    f = inner.f[good]
    G = inner.G[good]
    D2, out.hessian = second_derivatives(model, phi, good, np.arange(D), n, fd_step)
    sub = data.rows(good)
    m = sub.mask
    k_obs = sub.observable
    a_k, b_k = residual._ab(k_obs)
    f = np.where(m, f, 0.0)
    G = np.where(m[..., None], G, 0.0)
    D2 = np.where(m[..., None, None], D2, 0.0)
    # per observation: V and its f-derivatives, q and its f-derivatives (observed values only)
    V = np.where(m, a_k ** 2 + b_k ** 2 * f ** 2, 1.0)
    V1 = 2.0 * b_k ** 2 * f
    V2 = 2.0 * b_k ** 2 * np.ones_like(f)
    r = np.where(m, sub.y - f, 0.0)
    w = m.astype(float)
    dq = w * (-2.0 * r / V + V1 * (1.0 / V - r * r / V ** 2))
    d2q = w * (2.0 / V + 4.0 * r * V1 / V ** 2 + 2.0 * r * r * V1 ** 2 / V ** 3
               - r * r * V2 / V ** 2 + V2 / V - V1 ** 2 / V ** 2)
    F = w * (1.0 / V + V1 ** 2 / (2.0 * V ** 2))
    F1 = w * (-V1 / V ** 2 - V1 ** 3 / V ** 3 + V1 * V2 / V ** 2)  # dF/df
    g = G[..., cols]                                    # (R, n, E)
    D2c = D2[:, :, cols, :]                             # (R, n, E, D): d2f/deta dphi
    # the FOCE-I matrix and the exact Hessian of L at eta-hat
    Mmat = Oinv + np.einsum("rj,rje,rjk->rek", F, g, g)
    Minv = np.linalg.inv(Mmat)
    H = (np.einsum("rj,rje,rjk->rek", d2q, g, g)
         + np.einsum("rj,rjek->rek", dq, D2c[..., cols]) + 2.0 * Oinv)
    Hinv = np.linalg.inv(H)
    logdet_M = np.linalg.slogdet(Mmat)[1]
    out.ofv_i[good] = inner.objective[good] + logdet_om + logdet_M
    # T_d = tr(M^-1 dM/dphi_d) at fixed eta, for every phi direction d
    gMg = np.einsum("rje,ref,rjf->rj", g, Minv, g)
    T = (np.einsum("rj,rjd,rj->rd", F1, G, gMg)
         + 2.0 * np.einsum("rj,rjed,ref,rjf->rd", F, D2c, Minv, g))
    t = T[:, cols]                                      # tr(M^-1 dM/deta_k)
    u = np.einsum("ref,rf->re", Hinv, t)                # H^-1 t
    # typical values mu (phi = mu + A eta, so d/dmu at fixed eta is d/dphi)
    dL_dmu = np.einsum("rj,rjd->rd", dq, G)
    C_mu = (np.einsum("rj,rje,rjd->red", d2q, g, G)
            + np.einsum("rj,rjed->red", dq, D2c))       # d2L/deta dmu
    out.d_mu[good] = dL_dmu + T - np.einsum("re,red->rd", u, C_mu)
    # Omega
    Oe = eta @ Oinv                                     # (R, E): Omega^-1 eta
    Gam = (-np.einsum("re,rf->ref", Oe, Oe) + Oinv
           - np.einsum("ek,rkl,lf->ref", Oinv, Minv, Oinv)
           + 2.0 * np.einsum("re,rf->ref", Oe, u @ Oinv))
    out.d_omega_i[good] = 0.5 * (Gam + np.swapaxes(Gam, 1, 2))
    out.d_omega = out.d_omega_i.sum(axis=0)
    # residual SDs: V = a^2 + b^2 f^2, V' = 2 b^2 f
    dq_dV = w * (1.0 / V - r * r / V ** 2)
    ddq_dV = w * (2.0 * r / V ** 2 - V1 * (1.0 / V ** 2 - 2.0 * r * r / V ** 3))
    ddq_dV1 = w * (1.0 / V - r * r / V ** 2)
    dF_dV = w * (-1.0 / V ** 2 - V1 ** 2 / V ** 3)
    dF_dV1 = w * (V1 / V ** 2)
    for which, dV_ds, dV1_ds in (("a", 2.0 * a_k, 0.0 * f), ("b", 2.0 * b_k * f ** 2,
                                                              4.0 * b_k * f)):
        dL = dq_dV * dV_ds
        C_s = np.einsum("rj,rje->rje", ddq_dV * dV_ds + ddq_dV1 * dV1_ds, g)
        dF = dF_dV * dV_ds + dF_dV1 * dV1_ds
        tr = dF * gMg
        per_obs = np.where(m, dL + tr - np.einsum("re,rje->rj", u, C_s), 0.0)
        # per subject and observable: one-hot sum over the observation slots
        per_subj = np.einsum("rj,rjk->rk", per_obs, k_obs[..., None] == np.arange(K))
        target = out.d_a_i if which == "a" else out.d_b_i
        target[good] = per_subj
    out.d_a = out.d_a_i.sum(axis=0)
    out.d_b = out.d_b_i.sum(axis=0)
    return out
