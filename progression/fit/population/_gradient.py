"""Exact gradients of the NONMEM objectives (FO, FOCE, FOCE-I, Laplace), censored values
(M3) included.

Conditional methods (FOCE, FOCE-I, Laplace). With ``eta-hat`` the exact minimiser of
``L(eta; p) = sum_j q_j + eta' Omega^-1 eta`` (:mod:`._inner`) the subject's objective is
``OFV(p) = L(eta-hat(p); p) + log|Omega| + log|M(eta-hat(p); p)|`` with

- ``focei``: ``M = Omega^-1 + 1/2 sum_j W_j g_j g_j'``, ``W`` the expected information of an
  observation (``2/V + V'^2/V^2`` observed; ``2 phi(z)^2 / (Phi(z) (1 - Phi(z))) z'^2``
  censored, z' the derivative of the M3 argument along f);
- ``foce``: the same with V held at its eta = 0 value ``V0 = V(f(mu))`` (so ``V' = 0`` in q and
  W; V0 follows mu, a and b). At the exact mode this equals Wang's linearised form used by
  :func:`._objective.subject_objectives`, so both have the same derivative;
- ``laplace``: ``M = 1/2 d2L/deta2`` (the exact Hessian, second derivatives of the model).

For any outer parameter ``p`` (the typical values ``mu``, Omega, the residual SDs ``a``,
``b``):

    dOFV/dp = dL/dp|eta + d log|Omega|/dp + tr(M^-1 dM/dp|eta) + t' deta-hat/dp,
    deta-hat/dp = -H^-1 d2L/deta dp,        t_k = tr(M^-1 dM/deta_k),

where ``H`` is the exact Hessian of L at eta-hat (the envelope rule removes ``dL/deta`` since
eta-hat is stationary). Every observation term is written as a function ``q(f, V)`` of the
prediction and the residual variance, with ``V = a^2 + b^2 f^2`` following f (interaction) or
held at V0 (foce); its partial derivatives up to third order (closed forms, including those
of ``log Phi`` for the M3 terms) are composed along f by the chain rule. The model enters
through ``G = df/dphi`` and ``d2f/dphi2`` (``predict_hessian``, else central differences of G
at the fixed eta-hat: :func:`._objective.second_derivatives`); Laplace's ``dM/deta`` also
needs third derivatives, contracted with ``M^-1``: second differences of G along the
eigenvectors of ``M^-1`` (step 1e-3, ``2 E`` batched predictions), or, for a model that says
its second derivatives are exact (``exact_hessian = True``: closed forms), central
differences of those (step 1e-4), always at the fixed eta-hat.

FO: ``OFV = log|C| + r' C^-1 r`` with ``r = y - f(mu)``, ``C = g Omega g' + diag(V(f(mu)))``,
differentiated directly (``dOFV = tr((C^-1 - alpha alpha') dC) + 2 alpha' dr``, ``alpha =
C^-1 r``). FO has no M3 form: censored values are refused.

The gradient is only as exact as eta-hat: the default inner tolerance (Gauss-Newton step
below 1e-10) leaves a relative error near 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from ...errors import FitError
from ._core import (
    PopulationData,
    Residual,
    call_predict,
    check_omega,
    eta_columns_of,
    obs_terms,
)
from ._inner import FAILED, InnerOptions, InnerResult, conditional_modes, fixed_variance
from ._objective import HESSIAN_NOT_PD, METHODS, linearised_ofv, second_derivatives
from ._rmatrix import collapsed_variances, r_matrix_diagnosis  # noqa: F401 (re-exported)

__all__ = ["FoceiGradient", "EtaPredictor", "focei_gradient", "population_gradient",
           "check_student",
           "collapsed_variances",
           "r_matrix_diagnosis"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class FoceiGradient:
    """Objective of one method and its gradient.

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
        Inner status (or :data:`~._objective.HESSIAN_NOT_PD` for Laplace); subjects that
        failed have zero gradient rows and inf objective.
    inner : InnerResult
        The conditional modes (for ``fo``: eta = 0 with the predictions and the expected
        information there).
    hessian : str
        Where d2f came from ("analytic" or "finite differences").
    method : str
        ``"focei"``, ``"foce"``, ``"laplace"`` or ``"fo"``.
    eta : ndarray (N, E)
        The conditional modes (zeros for ``fo``).
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
    method: str = "focei"
    eta: np.ndarray | None = None
    predictor: EtaPredictor | None = None

    @property
    def ofv(self) -> float:
        """Total objective."""
        return float(self.ofv_i.sum())


@dataclass
class EtaPredictor:
    """First-order prediction of the conditional modes at new outer parameters (the
    implicit-function rule the gradient already uses), a warm start for the next inner solve.

    ``eta-hat(p + dp) ~ eta-hat(p) - H^-1 d2L/deta dp dp`` per subject, with ``H`` the exact
    Hessian of L at eta-hat and the mixed derivatives of L with respect to the subject's
    typical values (``C_mu``), Omega (``-2 Omega^-1 dOmega Omega^-1 eta``) and the residual
    SDs (``r_a``, ``r_b``). Only a starting point: the inner solver converges from it to its
    own tolerance, so the objective does not depend on it; it saves the iterations the step
    of the outer optimiser would otherwise cost (on Theoph most warm inner solves then stop
    after one or two evaluations near the optimum).

    Attributes
    ----------
    eta : ndarray (N, E)
        The modes at the reference parameters.
    mu : ndarray (N, D)
    omega : ndarray (E, E)
    a, b : ndarray (K,)
        The reference parameters.
    Hinv : ndarray (N, E, E)
        Inverse exact Hessians (NaN for subjects without one: their mode is not moved).
    C_mu : ndarray (N, E, D)
    r_a, r_b : ndarray (N, E, K)
        d2L/deta da_k, d2L/deta db_k.
    """

    eta: np.ndarray
    mu: np.ndarray
    omega: np.ndarray
    a: np.ndarray
    b: np.ndarray
    Hinv: np.ndarray
    C_mu: np.ndarray
    r_a: np.ndarray
    r_b: np.ndarray

    #: A subject whose predicted change exceeds this (eta units, any component) keeps its
    #: previous mode: far from the reference the linear prediction is no better a start,
    #: and could lead the inner solver to another local mode.
    max_change = 0.5

    def __call__(self, mu, omega, residual: Residual) -> np.ndarray:
        """Predicted modes (N, E) at ``mu`` (N, D), ``omega`` (E, E), ``residual``."""
        mu = np.asarray(mu, dtype=float)
        if mu.shape != self.mu.shape or np.shape(omega) != self.omega.shape or len(
                residual.a) != self.a.size:
            return self.eta.copy()
        Oinv = np.linalg.inv(self.omega)
        dOm = np.asarray(omega, dtype=float) - self.omega
        rhs = np.einsum("red,rd->re", self.C_mu, mu - self.mu)
        # d(2 Omega^-1 eta)/dOmega dOmega = -2 Omega^-1 dOmega Omega^-1 eta
        rhs -= 2.0 * (self.eta @ Oinv) @ dOm @ Oinv
        rhs += self.r_a @ (np.asarray(residual.a) - self.a)
        rhs += self.r_b @ (np.asarray(residual.b) - self.b)
        with np.errstate(all="ignore"):
            d = -np.einsum("ref,rf->re", self.Hinv, rhs)
            use = np.isfinite(d).all(axis=1) & (np.abs(d).max(axis=1) <= self.max_change)
        out = self.eta.copy()
        out[use] += d[use]
        return out


# ---------------------------------------------------------------- per-observation partials


@dataclass
class _Terms:
    """Partial derivatives of one observation's q(f, V) and W(f, V, V') (arrays (R, n))."""

    q_V: np.ndarray
    Q1: np.ndarray      # dq/df along f (V following f through v1, v2)
    Q2: np.ndarray
    Q3: np.ndarray
    Q1_V: np.ndarray    # d Q1 / dV, d Q1 / dv1 (for parameter directions)
    Q1_v1: np.ndarray
    Q2_V: np.ndarray
    Q2_v1: np.ndarray
    Q2_v2: np.ndarray
    W: np.ndarray       # expected information weight
    W_f: np.ndarray     # dW/df along f
    W_V: np.ndarray
    W_v1: np.ndarray


def _terms(data: PopulationData, f, V, v1, v2, nu=None) -> _Terms:
    """q(f, V) = (y - f)^2/V + log V observed, -2 log Phi(z) censored, composed along f with
    ``dV/df = v1``, ``d2V/df2 = v2`` (``d3V/df3 = 0``); padding gives zeros. ``nu`` (R, n):
    degrees of freedom of Student-t values (inf: normal; :mod:`._student`)."""
    m = data.mask
    obs = m & (data.cens == 0)
    cen = m & (data.cens != 0)
    student = None if nu is None else m & np.isfinite(nu)
    if student is not None and not student.any():
        student = None
    with np.errstate(all="ignore"):
        # observed
        r = np.where(obs, data.y - f, 0.0)
        o = dict(q_f=-2.0 * r / V, q_V=1.0 / V - r * r / V ** 2, q_ff=2.0 / V,
                 q_fV=2.0 * r / V ** 2, q_VV=2.0 * r * r / V ** 3 - 1.0 / V ** 2,
                 q_fff=np.zeros_like(f), q_ffV=-2.0 / V ** 2, q_fVV=-4.0 * r / V ** 3,
                 q_VVV=-6.0 * r * r / V ** 4 + 2.0 / V ** 3)
        Wo = 2.0 / V + v1 * v1 / V ** 2
        Wo_fp = np.zeros_like(f)
        Wo_V = -2.0 / V ** 2 - 2.0 * v1 * v1 / V ** 3
        Wo_v1 = 2.0 * v1 / V ** 2
        if student is not None:
            from ._student import observed_info, observed_partials

            nut = np.where(student, nu, 1.0)
            tp = observed_partials(r, V, nut)
            o = {k: np.where(student, tp[k], o[k]) for k in o}
            tW, tW_V, tW_v1 = observed_info(V, v1, nut)
            Wo, Wo_V, Wo_v1 = (np.where(student, tW, Wo), np.where(student, tW_V, Wo_V),
                               np.where(student, tW_v1, Wo_v1))
        # censored: z = s (limit - f) / sqrt(V), l(z) = log Phi(z)
        s = np.where(data.cens == 1, 1.0, -1.0)
        c = np.where(cen, data.limit - f, 0.0)
        z = s * c / np.sqrt(V)
        logPhi = log_ndtr(z)
        log_phi = -0.5 * z * z - 0.5 * _LOG_2PI
        lam = np.exp(log_phi - logPhi)             # phi / Phi, stable for z << 0
        mu_ = np.exp(log_phi - log_ndtr(-z))       # phi / (1 - Phi), stable for z >> 0
        l1 = lam
        l2 = -lam * (z + lam)
        l3 = lam * (z + lam) * (z + 2.0 * lam) - lam
        kap = 2.0 * lam * mu_
        kap1 = kap * (-2.0 * z - lam + mu_)
        if student is not None and (student & cen).any():
            from ._student import censored_log_cdf

            tc = censored_log_cdf(z, np.where(student, nu, 1.0))
            l1, l2, l3, kap, kap1 = (np.where(student, tc[k], v) for k, v in (
                ("l1", l1), ("l2", l2), ("l3", l3), ("kap", kap), ("kap1", kap1)))
        z_f = -s / np.sqrt(V)
        z_V = -0.5 * z / V
        z_fV = 0.5 * s / V ** 1.5
        z_VV = 0.75 * z / V ** 2
        z_fVV = -0.75 * s / V ** 2.5
        z_VVV = -1.875 * z / V ** 3
        # (z_ff = z_fff = z_ffV = 0)
        cq = dict(q_f=-2.0 * l1 * z_f, q_V=-2.0 * l1 * z_V,
                  q_ff=-2.0 * l2 * z_f ** 2,
                  q_fV=-2.0 * (l2 * z_f * z_V + l1 * z_fV),
                  q_VV=-2.0 * (l2 * z_V ** 2 + l1 * z_VV),
                  q_fff=-2.0 * l3 * z_f ** 3,
                  q_ffV=-2.0 * (l3 * z_f ** 2 * z_V + 2.0 * l2 * z_fV * z_f),
                  q_fVV=-2.0 * (l3 * z_f * z_V ** 2 + l2 * (2.0 * z_fV * z_V + z_VV * z_f)
                                + l1 * z_fVV),
                  q_VVV=-2.0 * (l3 * z_V ** 3 + 3.0 * l2 * z_VV * z_V + l1 * z_VVV))
        # W = kappa(z) Z1^2, kappa = 2 phi^2 / (Phi (1 - Phi)), Z1 = dz/df along f
        Z1 = z_f + z_V * v1
        Wc = kap * Z1 * Z1
        Wc_fp = kap1 * z_f * Z1 * Z1 + 2.0 * kap * Z1 * (z_fV * v1)
        Wc_V = kap1 * z_V * Z1 * Z1 + 2.0 * kap * Z1 * (z_fV + z_VV * v1)
        Wc_v1 = 2.0 * kap * Z1 * z_V

    def pick(a, b):
        return np.where(obs, a, np.where(cen, b, 0.0))

    p = {k: pick(o[k], cq[k]) for k in o}
    W = pick(Wo, Wc)
    W_V = pick(Wo_V, Wc_V)
    W_v1 = pick(Wo_v1, Wc_v1)
    W_f = pick(Wo_fp, Wc_fp) + W_V * v1 + W_v1 * v2
    Q1 = p["q_f"] + p["q_V"] * v1
    Q2 = p["q_ff"] + 2.0 * p["q_fV"] * v1 + p["q_VV"] * v1 ** 2 + p["q_V"] * v2
    Q3 = (p["q_fff"] + 3.0 * p["q_ffV"] * v1 + 3.0 * p["q_fVV"] * v1 ** 2
          + p["q_VVV"] * v1 ** 3 + 3.0 * p["q_fV"] * v2 + 3.0 * p["q_VV"] * v1 * v2)
    return _Terms(
        q_V=p["q_V"], Q1=Q1, Q2=Q2, Q3=Q3,
        Q1_V=p["q_fV"] + p["q_VV"] * v1, Q1_v1=p["q_V"],
        Q2_V=p["q_ffV"] + 2.0 * p["q_fVV"] * v1 + p["q_VVV"] * v1 ** 2 + p["q_VV"] * v2,
        Q2_v1=2.0 * p["q_fV"] + 2.0 * p["q_VV"] * v1, Q2_v2=p["q_V"],
        W=W, W_f=W_f, W_V=W_V, W_v1=W_v1)


def _third_derivatives(model, phi, index, cols, n, fd_step, D2_how):
    """d3f/deta deta dphi (R, n, E, E, D): central differences of the second derivatives at
    the fixed phi (step 1e-4 on an analytic Hessian, 1e-3 on a finite-difference one)."""
    R, D = phi.shape
    E = cols.size
    h = 1e-4 if D2_how == "analytic" else 1e-3
    out = np.zeros((R, n, E, E, D))
    for d in range(D):
        up, dn = phi.copy(), phi.copy()
        up[:, d] += h
        dn[:, d] -= h
        Du, _ = second_derivatives(model, up, index, cols, n, fd_step)
        Dd, _ = second_derivatives(model, dn, index, cols, n, fd_step)
        out[..., d] = (Du - Dd) / (2.0 * h)
    return out


def _trace_third(model, phi, index, cols, n, Minv, G, h=1e-3):
    """``sum_ek Minv_ek d3f/deta_e deta_k dphi_d`` (R, n, D) without third derivatives: with
    ``Minv = sum_m l_m v_m v_m'`` (per subject) it is ``sum_m l_m d2G_d/ds2`` along
    ``eta + s v_m``, second central differences of G at the fixed phi (``2 E`` batched
    predictions instead of the ``4 D E`` of differencing second derivatives; error O(h^2))."""
    R, D = phi.shape
    lam, U = np.linalg.eigh(Minv)
    out = np.zeros((R, n, D))
    for k in range(cols.size):
        up, dn = phi.copy(), phi.copy()
        up[:, cols] += h * U[:, :, k]
        dn[:, cols] -= h * U[:, :, k]
        _, Gu, _ = call_predict(model, up, index, n, D)
        _, Gd, _ = call_predict(model, dn, index, n, D)
        out += lam[:, k, None, None] * (Gu - 2.0 * G + Gd) / (h * h)
    return out


# ---------------------------------------------------------------- gradients


def focei_gradient(model, data: PopulationData, mu, omega, residual: Residual, *,
                   eta_columns=None, eta0=None, inner: InnerResult | None = None,
                   inner_options: InnerOptions | None = None, fd_step: float = 1e-4
                   ) -> FoceiGradient:
    """FOCE-I objective and its exact gradient with respect to mu, Omega, a and b
    (:func:`population_gradient` with ``method="focei"``; censored values included)."""
    return population_gradient("focei", model, data, mu, omega, residual,
                               eta_columns=eta_columns, eta0=eta0, inner=inner,
                               inner_options=inner_options, fd_step=fd_step)


def population_gradient(method: str, model, data: PopulationData, mu, omega,
                        residual: Residual, *, eta_columns=None, eta0=None,
                        inner: InnerResult | None = None,
                        inner_options: InnerOptions | None = None, fd_step: float = 1e-4
                        ) -> FoceiGradient:
    """Objective of ``method`` and its exact gradient with respect to mu, Omega, a and b.

    Parameters
    ----------
    method : {"fo", "foce", "focei", "laplace"}
    model : IndividualModel or callable
        ``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))``; ``predict_hessian``
        (R, n, D, D) is used when present.
    data : PopulationData
        N subjects (censored values allowed except with ``fo``).
    mu : array_like (N, D)
    omega : array_like (E, E)
    residual : Residual
    eta_columns : sequence of int, optional
    eta0 : array_like (N, E), optional
        Warm start of the inner problems.
    inner : InnerResult, optional
        Conditional modes already solved at these parameters for this method (with
        interaction for focei/laplace, with ``V_fixed`` for foce); skips the inner solve.
    inner_options : InnerOptions, optional
    fd_step : float
        Step of the differences of G when the model has no ``predict_hessian``.

    Returns
    -------
    FoceiGradient
        The objective equals :func:`._objective.subject_objectives` of the same method.

    Raises
    ------
    FitError
        Unknown method, ``fo`` with censored values, or bad shapes.
    """
    if method not in METHODS:
        raise FitError(f"population gradient: expected a method in {list(METHODS)}, found "
                       f"{method!r}")
    residual.check_observables(data)
    mu = np.asarray(mu, dtype=float)
    N, D = mu.shape
    if data.n_subjects != N:
        raise FitError(f"{method} gradient: expected typical parameters for {data.n_subjects} "
                       f"subjects, found {N} rows")
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    om, Oinv, logdet_om = check_omega(omega, E)
    K = len(residual.a)
    check_student(method, residual, data)
    if method == "fo":
        return _fo_gradient(model, data, mu, om, residual, cols, fd_step)
    V0 = f0 = G0 = None
    ok0 = np.ones(N, dtype=bool)
    if method == "foce":
        V0, f0, G0, ok0 = fixed_variance(model, data, mu, residual)
        if inner is None:
            inner = conditional_modes(model, data, mu, om, residual, eta_columns=cols,
                                      eta0=eta0, interaction=False, V_fixed=V0,
                                      options=inner_options)
    elif inner is None:
        inner = conditional_modes(model, data, mu, om, residual, eta_columns=cols, eta0=eta0,
                                  interaction=True, options=inner_options)
    status = np.where(ok0, inner.status, FAILED).astype(np.int8)
    n = data.y.shape[1]
    out = FoceiGradient(ofv_i=np.full(N, np.inf), d_mu=np.zeros((N, D)),
                        d_omega=np.zeros((E, E)), d_a=np.zeros(K), d_b=np.zeros(K),
                        d_omega_i=np.zeros((N, E, E)), d_a_i=np.zeros((N, K)),
                        d_b_i=np.zeros((N, K)), status=status, inner=inner, hessian="",
                        method=method, eta=inner.eta.copy())
    good = np.flatnonzero(status != FAILED)
    if good.size == 0:
        return out
    eta = inner.eta[good]
    phi = mu[good].copy()
    phi[:, cols] += eta
    sub = data.rows(good)
    m = sub.mask
    k_obs = sub.observable
    a_k, b_k = residual._ab(k_obs)
    f = np.where(m, inner.f[good], 0.0)
    G = np.where(m[..., None], inner.G[good], 0.0)
    D2, out.hessian = second_derivatives(model, phi, good, np.arange(D), n, fd_step)
    D2 = np.where(m[..., None, None], D2, 0.0)
    if method == "foce":
        f0g = np.where(m, f0[good], 0.0)
        G0g = np.where(m[..., None], G0[good], 0.0)
        V = np.where(m, V0[good], 1.0)
        v1 = np.zeros_like(f)
        v2 = np.zeros_like(f)
    else:
        V = np.where(m, a_k ** 2 + b_k ** 2 * f ** 2, 1.0)
        v1 = np.where(m, 2.0 * b_k ** 2 * f, 0.0)
        v2 = np.where(m, 2.0 * b_k ** 2, 0.0)
    tm = _terms(sub, f, V, v1, v2,
                nu=residual.nu(k_obs) if residual.any_student else None)
    g = G[..., cols]                                    # (R, n, E)
    D2c = D2[:, :, cols, :]                             # (R, n, E, D): d2f/deta dphi
    D2cc = D2c[..., cols]                               # (R, n, E, E)
    H = (np.einsum("rj,rje,rjk->rek", tm.Q2, g, g) + np.einsum("rj,rjek->rek", tm.Q1, D2cc)
         + 2.0 * Oinv)
    if method == "laplace":
        Mmat = 0.5 * H
    else:
        Mmat = Oinv + 0.5 * np.einsum("rj,rje,rjk->rek", tm.W, g, g)
    Mmat = 0.5 * (Mmat + np.swapaxes(Mmat, 1, 2))
    # subjects whose M (Laplace: the Hessian) is not positive definite have no objective
    pd = np.array([_is_pd(Mk) for Mk in Mmat])
    if not pd.all():
        bad = good[~pd]
        out.status[bad] = HESSIAN_NOT_PD if method == "laplace" else FAILED
        keep = np.flatnonzero(pd)
        good, eta, phi = good[keep], eta[keep], phi[keep]
        sub = data.rows(good)
        m, k_obs = sub.mask, sub.observable
        f, G, D2, V, v1, v2 = f[keep], G[keep], D2[keep], V[keep], v1[keep], v2[keep]
        a_k, b_k = a_k[keep], b_k[keep]
        tm = _Terms(**{k: getattr(tm, k)[keep] for k in tm.__dataclass_fields__})
        g, D2c, D2cc, H, Mmat = g[keep], D2c[keep], D2cc[keep], H[keep], Mmat[keep]
        if method == "foce":
            f0g, G0g = f0g[keep], G0g[keep]
        if good.size == 0:
            return out
    Minv = np.linalg.inv(Mmat)
    Hinv = np.linalg.inv(H)
    logdet_M = np.linalg.slogdet(Mmat)[1]
    ofv = inner.objective[good] + logdet_om + logdet_M
    if method == "foce":
        # NONMEM's FOCE value (Wang's linearised form) where no value is censored; equal to
        # the form above at the exact mode
        lin = linearised_ofv(sub, inner.f[good], inner.G[good][..., cols], eta, om,
                             V0[good])
        cens_rows = np.any(m & (sub.cens != 0), axis=1)
        ofv = np.where(cens_rows, ofv, lin)
    out.ofv_i[good] = ofv
    # T_d = tr(M^-1 dM/dphi_d) at fixed eta (and fixed V0 for foce), every phi direction d
    gMg = np.einsum("rje,ref,rjf->rj", g, Minv, g)
    gMD = np.einsum("rje,ref,rjfd->rjd", g, Minv, D2c)  # g' M^-1 d2f/deta dphi_d
    if method == "laplace":
        if out.hessian == "analytic" and getattr(model, "exact_hessian", False):
            # a model whose second derivatives are exact and cheap (closed forms): their
            # differences, 4 D E model calls' worth
            D3 = _third_derivatives(model, phi, good, cols, n, fd_step, out.hessian)
            trD3 = np.einsum("ref,rjfed->rjd", Minv, D3)
        else:
            # 2 E predictions; a ProblemModel's second derivatives are themselves differences
            # of sensitivities (2 D solves of every row), so differencing them again cost 5.9x
            # more per gradient on the joint ALS fit (benchmarks/laplace_gradient.py)
            trD3 = _trace_third(model, phi, good, cols, n, Minv, inner.G[good])
        trD3 = np.where(m[..., None], trD3, 0.0)        # tr(M^-1 d3f/deta2 dphi_d)
        trD2 = np.einsum("ref,rjfe->rj", Minv, D2cc)    # tr(M^-1 d2f/deta2) per obs
        T = (0.5 * np.einsum("rj,rjd,rj->rd", tm.Q3, G, gMg)
             + np.einsum("rj,rjd->rd", tm.Q2, gMD)
             + 0.5 * np.einsum("rj,rjd,rj->rd", tm.Q2, G, trD2)
             + 0.5 * np.einsum("rj,rjd->rd", tm.Q1, trD3))
    else:
        trD2 = None
        T = (0.5 * np.einsum("rj,rjd,rj->rd", tm.W_f, G, gMg)
             + np.einsum("rj,rjd->rd", tm.W, gMD))
    t = T[:, cols]                                      # tr(M^-1 dM/deta_k)
    u = np.einsum("ref,rf->re", Hinv, t)                # H^-1 t

    def direction(V_p, v1_p, v2_p):
        """Per-observation dOFV of a parameter acting through V, V', V'' (R, n)."""
        dL = tm.q_V * V_p
        Q1_p = tm.Q1_V * V_p + tm.Q1_v1 * v1_p
        if method == "laplace":
            Q2_p = tm.Q2_V * V_p + tm.Q2_v1 * v1_p + tm.Q2_v2 * v2_p
            tr = 0.5 * (Q2_p * gMg + Q1_p * trD2)
        else:
            tr = 0.5 * (tm.W_V * V_p + tm.W_v1 * v1_p) * gMg
        return np.where(m, dL + tr - Q1_p * np.einsum("re,rje->rj", u, g), 0.0)

    # typical values mu (phi = mu + A eta, so d/dmu at fixed eta is d/dphi)
    dL_dmu = np.einsum("rj,rjd->rd", tm.Q1, G)
    C_mu = (np.einsum("rj,rje,rjd->red", tm.Q2, g, G)
            + np.einsum("rj,rjed->red", tm.Q1, D2c))    # d2L/deta dmu
    d_mu = dL_dmu + T - np.einsum("re,red->rd", u, C_mu)
    if method == "foce":
        # V0 = V(f(mu)) follows mu: dV0/dmu_d = V'(f0) G0_d
        dV0 = 2.0 * b_k ** 2 * f0g
        zero = np.zeros_like(f)
        for d in range(D):
            d_mu[:, d] += direction(dV0 * G0g[..., d], zero, zero).sum(axis=1)
    out.d_mu[good] = d_mu
    # Omega
    Oe = eta @ Oinv                                     # (R, E): Omega^-1 eta
    Gam = (-np.einsum("re,rf->ref", Oe, Oe) + Oinv
           - np.einsum("ek,rkl,lf->ref", Oinv, Minv, Oinv)
           + 2.0 * np.einsum("re,rf->ref", Oe, u @ Oinv))
    out.d_omega_i[good] = 0.5 * (Gam + np.swapaxes(Gam, 1, 2))
    out.d_omega = out.d_omega_i.sum(axis=0)
    # residual SDs: V = a^2 + b^2 f^2 (at f0 for foce), V' = 2 b^2 f, V'' = 2 b^2
    onehot = k_obs[..., None] == np.arange(K)
    zero = np.zeros_like(f)
    if method == "foce":
        dirs = (("a", 2.0 * a_k * np.ones_like(f), zero, zero),
                ("b", 2.0 * b_k * f0g ** 2, zero, zero))
    else:
        dirs = (("a", 2.0 * a_k * np.ones_like(f), zero, zero),
                ("b", 2.0 * b_k * f ** 2, 4.0 * b_k * f, 4.0 * b_k * np.ones_like(f)))
    for which, V_p, v1_p, v2_p in dirs:
        per_subj = np.einsum("rj,rjk->rk", direction(V_p, v1_p, v2_p), onehot)
        (out.d_a_i if which == "a" else out.d_b_i)[good] = per_subj
    out.d_a = out.d_a_i.sum(axis=0)
    out.d_b = out.d_b_i.sum(axis=0)
    # the warm start of the next inner solve: d2L/deta dp for every outer direction
    E_ = cols.size
    Hi = np.full((N, E_, E_), np.nan)
    Hi[good] = Hinv
    Cm = np.zeros((N, E_, D))
    Cm[good] = C_mu
    ra = np.zeros((N, E_, K))
    rb = np.zeros((N, E_, K))
    for which, V_p, v1_p, _ in dirs:
        w = np.where(m, tm.Q1_V * V_p + tm.Q1_v1 * v1_p, 0.0)
        (ra if which == "a" else rb)[good] = np.einsum("rj,rjk,rje->rek", w, onehot, g)
    out.predictor = EtaPredictor(eta=inner.eta.copy(), mu=mu.copy(), omega=om.copy(),
                                 a=np.asarray(residual.a, dtype=float),
                                 b=np.asarray(residual.b, dtype=float), Hinv=Hi, C_mu=Cm,
                                 r_a=ra, r_b=rb)
    return out


def check_student(method: str, residual: Residual, data: PopulationData) -> None:
    """Refuse Student-t residuals with FO and FOCE (their objectives are the normal's
    linearisation: Wang's forms have no t counterpart)."""
    if method in ("fo", "foce") and residual.any_student:
        used = np.unique(data.observable[data.mask])
        t = [int(k) for k in used if np.isfinite(residual.df[int(k)])]
        if t:
            raise FitError(f"population {method}: observable {t[0]} has a Student-t residual "
                           f"(df {residual.df[t[0]]:g}); expected 'focei' or 'laplace' (FO "
                           f"and FOCE linearise a normal residual)")


def _is_pd(A) -> bool:
    if not np.all(np.isfinite(A)):
        return False
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return False
    return True


def _fo_gradient(model, data, mu, om, residual, cols, fd_step) -> FoceiGradient:
    """FO objective (Wang's linearisation at eta = 0) and its direct gradient."""
    N, D = mu.shape
    E = cols.size
    K = len(residual.a)
    cens_rows = np.any(data.mask & (data.cens != 0), axis=1)
    if cens_rows.any():
        i = int(np.flatnonzero(cens_rows)[0])
        raise FitError(f"population objective: method 'fo' cannot use censored values "
                       f"(subject {i} has some); use focei or laplace")
    V0, f0, G0, ok = fixed_variance(model, data, mu, residual)
    status = np.where(ok, 0, FAILED).astype(np.int8)
    # the "conditional modes" of FO are eta = 0: an InnerResult there (predictions, the
    # expected information, L_i(0)) so that callers treat every method alike
    with np.errstate(all="ignore"):
        t0 = obs_terms(data, np.where(data.mask, f0, 0.0), G0[..., cols], residual)
    info0 = np.where(ok[:, None, None], t0.info, np.nan)
    inner = InnerResult(eta=np.zeros((N, E)), status=status.copy(),
                        n_iter=np.zeros(N, dtype=np.intp),
                        objective=np.where(ok, t0.value, np.nan), f=f0, G=G0, info=info0,
                        V_fixed=None, n_predict=1)
    out = FoceiGradient(ofv_i=np.full(N, np.inf), d_mu=np.zeros((N, D)),
                        d_omega=np.zeros((E, E)), d_a=np.zeros(K), d_b=np.zeros(K),
                        d_omega_i=np.zeros((N, E, E)), d_a_i=np.zeros((N, K)),
                        d_b_i=np.zeros((N, K)), status=status, inner=inner, hessian="",
                        method="fo", eta=np.zeros((N, E)))
    good = np.flatnonzero(ok)
    if good.size == 0:
        return out
    n = data.y.shape[1]
    sub = data.rows(good)
    m = sub.mask
    k_obs = sub.observable
    a_k, b_k = residual._ab(k_obs)
    f = np.where(m, f0[good], 0.0)
    G = np.where(m[..., None], G0[good], 0.0)
    V = np.where(m, V0[good], 1.0)
    g = G[..., cols]
    r = np.where(m, sub.y - f, 0.0)
    C = np.einsum("rje,ek,rlk->rjl", g, om, g) + np.einsum("rj,jl->rjl", V, np.eye(n))
    pd = np.array([_is_pd(Ck) for Ck in C])
    out.status[good[~pd]] = FAILED
    keep = np.flatnonzero(pd)
    if keep.size == 0:
        return out
    good, sub, m, k_obs = good[keep], sub.rows(keep), m[keep], k_obs[keep]
    a_k, b_k, f, G, g, r, C = a_k[keep], b_k[keep], f[keep], G[keep], g[keep], r[keep], C[keep]
    D2, out.hessian = second_derivatives(model, mu[good], good, np.arange(D), n, fd_step)
    D2c = np.where(m[..., None, None], D2, 0.0)[:, :, cols, :]   # (R, n, E, D)
    Cinv = np.linalg.inv(C)
    Cinv = 0.5 * (Cinv + np.swapaxes(Cinv, 1, 2))
    alpha = np.einsum("rjl,rl->rj", Cinv, r)
    out.ofv_i[good] = np.linalg.slogdet(C)[1] + np.einsum("rj,rj->r", r, alpha)
    # dOFV = tr(P dC) + 2 alpha' dr (dr = -G dmu) with P = C^-1 - alpha alpha'
    P = Cinv - np.einsum("rj,rl->rjl", alpha, alpha)
    Pd = np.where(m, np.einsum("rjj->rj", P), 0.0)
    PB = np.einsum("rjl,rle,ek->rjk", P, g, om)        # P g Omega
    v1 = np.where(m, 2.0 * b_k ** 2 * f, 0.0)
    out.d_mu[good] = (2.0 * np.einsum("rjed,rje->rd", D2c, PB)
                      + np.einsum("rj,rj,rjd->rd", Pd, v1, G)
                      - 2.0 * np.einsum("rj,rjd->rd", alpha, G))
    Gam = np.einsum("rje,rjl,rlk->rek", g, P, g)
    out.d_omega_i[good] = 0.5 * (Gam + np.swapaxes(Gam, 1, 2))
    out.d_omega = out.d_omega_i.sum(axis=0)
    onehot = k_obs[..., None] == np.arange(K)
    out.d_a_i[good] = np.einsum("rj,rjk->rk", Pd * 2.0 * a_k, onehot)
    out.d_b_i[good] = np.einsum("rj,rjk->rk", Pd * 2.0 * b_k * f ** 2, onehot)
    out.d_a = out.d_a_i.sum(axis=0)
    out.d_b = out.d_b_i.sum(axis=0)
    return out


# ---------------------------------------------------------------- covariance step diagnostics
