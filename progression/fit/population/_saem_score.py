"""Louis' information and the robust sandwich at given population parameters: conditional
expectations of the complete-data score by MCMC with the parameters **held**.

SAEM's own information (:mod:`._saem_information`, ``saem_covariance = "sa"``) is a stochastic
approximation along the smoothing phase, at parameters that still move, from the fit's chains
(one per subject on 100 subjects or more). This pass evaluates the same Louis terms at fixed
parameters (the final estimates, or any stored ones: no refit), with as many chains and
iterations as asked, and keeps each subject's conditional mean score

    Delta_i = E[d log p(y_i, phi_i; theta) / d theta | y_i] = d log p(y_i; theta) / d theta

(Fisher's identity: the subject's observed score). Two covariance matrices follow:

- *model-based* ``R^-1``, ``R = -sum_i E[H_i + g_i g_i' | y_i] + sum_i Delta_i Delta_i'``
  (Louis 1982) — right when the model is the data's distribution;
- *sandwich* ``R^-1 S R^-1``, ``S = N/(N-1) sum_i (Delta_i - mean)(Delta_i - mean)'`` (Huber
  1967; White 1982; the per-subject score products of NONMEM's ``$COV MATRIX=S`` sandwich,
  here from the exact marginal scores rather than FOCE's approximation) — consistent when the
  residual distribution or the random-effect structure is misspecified (a Student-t residual
  fitted as Gaussian, an individual parameter held at one value for every subject), where
  ``R^-1`` is not.

Both sums over subjects carry the Monte Carlo noise of the ``Delta_i`` (an upward bias
``sum_i Var(Delta_i)``), removed by batch means as in :func:`._saem_information.information`.

Kernels (the population parameters never change, so the chains' target is fixed): (1) an
independent proposal from the population distribution ``N(0, Omega)``; (2) a component-wise
random walk (scales adapted during the burn-in to acceptance 0.4); (3) a random walk with each
subject's conditional covariance of eta as proposal shape (from the fit's chains when given,
``eta_cov``; otherwise Omega), scale adapted during the burn-in. Censored values are imputed
from the truncated normal (truncated t) at every iteration, and Student-t residuals enter as
SAEM's Gaussian scale mixture (latent precision weights drawn given the values), as in SAEM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ._core import PopulationData, Residual, eta_columns_of
from ._saem_chains import _Chains, complete_data
from ._saem_fixed import FixedEffectStep
from ._saem_information import BATCH, Louis, _noise, free_coefficients, information, inverse_pd

__all__ = ["ScorePass", "score_pass", "sandwich"]


@dataclass(frozen=True, eq=False)
class ScorePass:
    """Result of :func:`score_pass` (picklable).

    Attributes
    ----------
    fisher : ndarray (K, K)
        Louis' observed information at the given parameters (``-log L`` scale).
    meat : ndarray (K, K)
        ``S``: the covariance of the per-subject scores summed over subjects (centred,
        ``N/(N-1)``, Monte Carlo noise removed).
    scores : ndarray (N, K)
        Each subject's conditional mean score ``Delta_i``.
    noise : ndarray (K, K)
        ``sum_i Var(Delta_i)`` by batch means (the Monte Carlo part removed from both sums).
    names : tuple of str (K,)
        The parameters, as :attr:`SaemResult.parameter_names`.
    iterations, burn_in, n_chains : int
    acceptance : ndarray (3,)
        Mean acceptance of the three kernels after the burn-in.
    """

    fisher: np.ndarray
    meat: np.ndarray
    scores: np.ndarray
    noise: np.ndarray
    names: tuple
    iterations: int
    burn_in: int
    n_chains: int
    acceptance: np.ndarray

    def covariance(self, kind: str = "sandwich") -> np.ndarray:
        """``"model"``: ``R^-1``; ``"sandwich"``: ``R^-1 S R^-1`` (K, K); NaN when ``R`` is
        not positive definite."""
        if kind == "model":
            return inverse_pd(self.fisher)
        if kind != "sandwich":
            raise FitError(f"ScorePass.covariance: expected 'model' or 'sandwich', found "
                           f"{kind!r}")
        return sandwich(self.fisher, self.meat)


def sandwich(fisher, meat) -> np.ndarray:
    """``R^-1 S R^-1`` (K, K), symmetrised; NaN when ``R`` is not positive definite."""
    Ri = inverse_pd(np.asarray(fisher, dtype=float))
    cov = Ri @ np.asarray(meat, dtype=float) @ Ri
    return 0.5 * (cov + cov.T)


def score_pass(model, data: PopulationData, mu, omega, residual: Residual, *, beta=None,
               eta_columns=None, covariates=None, covariate_mask=None, omega_structure=None,
               omega_fixed=None, residual_fixed=None, estimate_columns=None, eta_mean=None,
               eta_cov=None, n_iter: int = 200, burn_in: int = 30, n_chains: int | None = None,
               seed: int = 0, mu_fixed=None, covariate_fixed=None) -> ScorePass:
    """Louis' information and the sandwich's per-subject scores at fixed parameters.

    Parameters
    ----------
    model : IndividualModel or callable
        As for :func:`~._saem.saem` (``predict(phi, index) -> (f, G)``; only ``f`` is used;
        ``extra_m2ll``/``predict_extra`` for a survival term).
    data : PopulationData
    mu : array_like (D,)
        Typical values on the estimation scale (intercepts with covariates), as
        :attr:`SaemResult.mu`.
    omega : array_like (E, E)
    residual : Residual
    beta : array_like (P, D), optional
        Covariate coefficients as :attr:`SaemResult.beta` (zero without covariates).
    eta_columns, covariates, covariate_mask, omega_structure, omega_fixed, residual_fixed, \
estimate_columns
        As for :func:`~._saem.saem` (they choose the parameters of the information and their
        order). ``omega_structure`` defaults to the non-zero pattern of ``omega``.
    eta_mean, eta_cov : array_like (N, E) and (N, E, E), optional
        Conditional means and covariances of eta (the fit's chains): the chains start at
        draws from them and the block random walk takes their shape.
    n_iter : int
        Iterations after the burn-in (the averages), default 200.
    burn_in : int
        Iterations before (kernel scales adapted), default 30 (the chains start from the
        fit's conditional distributions when ``eta_mean`` and ``eta_cov`` are given).
    n_chains : int, optional
        Chains per subject; default ``max(1, ceil(100 / N))`` (SAEM's).
    seed : int
    mu_fixed : array_like of bool (E,), optional
        Typical values held (as :func:`~._saem.saem`'s ``mu_fixed``): not in the information.
    covariate_fixed : array_like (P, E), optional
        Covariate coefficients held (as :func:`~._saem.saem`'s; their values come with
        ``beta``): not in the information.

    Returns
    -------
    ScorePass

    Raises
    ------
    FitError
        Inconsistent shapes, or a subject whose model cannot be evaluated at the start.
    """
    rng = np.random.default_rng(seed)
    residual.check_observables(data)
    mu = np.asarray(mu, dtype=float).ravel()
    D = mu.size
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    omega = np.asarray(omega, dtype=float)
    if omega.shape != (E, E):
        raise FitError(f"score_pass omega: expected ({E}, {E}), found {omega.shape}")
    N = data.n_subjects
    if n_iter < 2 * BATCH or burn_in < 0:
        raise FitError(f"score_pass: expected n_iter >= {2 * BATCH} and burn_in >= 0, found "
                       f"{n_iter}, {burn_in}")
    X = np.ones((N, 1))
    if covariates is not None:
        cv = np.asarray(covariates, dtype=float)
        cv = cv[:, None] if cv.ndim == 1 else cv
        if cv.shape[0] != N:
            raise FitError(f"score_pass covariates: expected ({N}, P), found {cv.shape}")
        X = np.hstack([X, cv])
    P1 = X.shape[1]
    B = np.zeros((P1, E))
    B[0] = mu[cols]
    if P1 > 1:
        bt = np.zeros((P1 - 1, D)) if beta is None else np.asarray(beta, dtype=float)
        if bt.shape != (P1 - 1, D):
            raise FitError(f"score_pass beta: expected ({P1 - 1}, {D}), found {bt.shape}")
        B[1:] = bt[:, cols]
    b_free = free_coefficients(P1, E, covariate_mask, mu_fixed, covariate_fixed, "score_pass")
    pattern = (omega != 0) | np.eye(E, dtype=bool) if omega_structure is None else \
        np.asarray(omega_structure, dtype=bool)
    fixed = (np.zeros(E, dtype=bool) if omega_fixed is None
             else np.asarray(omega_fixed, dtype=bool).ravel())
    a = np.array(residual.a, dtype=float)
    b = np.array(residual.b, dtype=float)
    K = a.size
    fix_a = fix_b = np.zeros(K, dtype=bool)
    if residual_fixed is not None:
        fix_a, fix_b = (np.asarray(v, dtype=bool).ravel() for v in residual_fixed)
    est_a, est_b = (a > 0) & ~fix_a, (b > 0) & ~fix_b
    fcols = np.asarray([] if estimate_columns is None else estimate_columns, dtype=int).ravel()
    fstep = FixedEffectStep(fcols)
    C = int(n_chains) if n_chains else max(1, int(np.ceil(100.0 / N)))
    sub = np.repeat(np.arange(N), C)
    R = sub.size
    chains = _Chains(model, data, sub, D, residual)
    d = chains.d
    louis = Louis(X, sub, E, pattern, ~fixed, b_free, est_a, est_b, fcols)
    mu_i = np.tile(mu, (N, 1))
    mu_i[:, cols] = X @ B
    base = mu_i[sub]

    def phi_of(eta):
        phi = base.copy()
        phi[:, cols] += eta
        return phi

    Lom = np.linalg.cholesky(omega)
    om_inv = np.linalg.inv(omega)
    # the block walk's shape: each subject's conditional covariance (the fit's chains)
    if eta_cov is not None:
        ec = np.asarray(eta_cov, dtype=float).reshape(N, E, E)
        Lc = np.empty((N, E, E))
        for i in range(N):
            try:
                Lc[i] = np.linalg.cholesky(ec[i] + 1e-10 * np.trace(ec[i]) * np.eye(E) + 1e-14)
            except np.linalg.LinAlgError:
                Lc[i] = np.diag(np.sqrt(np.maximum(np.diag(ec[i]), 1e-12)))
        Lc = Lc[sub]
    else:
        Lc = np.broadcast_to(Lom, (R, E, E))
    if eta_mean is not None:
        eta = np.asarray(eta_mean, dtype=float).reshape(N, E)[sub] + \
            0.5 * np.einsum("ref,rf->re", Lc, rng.standard_normal((R, E)))
    else:
        eta = rng.standard_normal((R, E)) @ Lom.T
    U, f = chains.evaluate(phi_of(eta))
    bad = ~np.isfinite(U)
    if bad.any():
        eta[bad] = 0.0
        U, f = chains.evaluate(phi_of(eta))
    # a joint model's survival term -2 log p(T | phi) at the chains' state: the score and
    # curvature of the hazard's parameters without a random effect come from it
    S = chains.last_extra.copy()
    if not np.all(np.isfinite(U)):
        i = int(sub[np.flatnonzero(~np.isfinite(U))[0]])
        raise FitError(f"score_pass: subject {i}: the model could not be evaluated at the "
                       f"typical values (expected finite predictions)")

    def prior_q(e):
        return np.einsum("re,ef,rf->r", e, om_inv, e)

    Up = prior_q(eta)
    scale = 0.5 * np.sqrt(np.diag(omega))
    s_blk = 2.4 / np.sqrt(E)
    acc = np.zeros(3)
    Kp = louis.K
    G = np.zeros((Kp, Kp))
    Dsum = np.zeros((N, Kp))
    batch_sum = np.zeros((N, Kp))
    batch_means = []

    def step(prop, prior_ratio):
        nonlocal U, f, Up, eta, S
        Pn = prior_q(prop)
        # the uniforms before the evaluation (the same stream): early rejection
        logu = np.log(rng.random(R))
        dP = (Pn - Up) if prior_ratio else 0.0
        Un, fn = chains.evaluate(phi_of(prop), bound=U - dP - 2.0 * logu)
        logr = -0.5 * (Un - U) - (0.5 * (Pn - Up) if prior_ratio else 0.0)
        ok = logu < logr
        eta = np.where(ok[:, None], prop, eta)
        S = np.where(ok, chains.last_extra, S)
        U = np.where(ok, Un, U)
        Up = np.where(ok, Pn, Up)
        f = np.where(ok[:, None], fn, f)
        return ok.mean()

    for it in range(burn_in + n_iter):
        adapt = it < burn_in
        rate0 = step(rng.standard_normal((R, E)) @ Lom.T, prior_ratio=False)
        rates1 = []
        for e in range(E):
            prop = eta.copy()
            prop[:, e] += scale[e] * rng.standard_normal(R)
            rates1.append(step(prop, prior_ratio=True))
            if adapt:
                scale[e] *= 1.0 + 0.4 * (rates1[-1] - 0.4)
        prop = eta + s_blk * np.einsum("ref,rf->re", Lc, rng.standard_normal((R, E)))
        rate2 = step(prop, prior_ratio=True)
        if adapt:
            s_blk *= 1.0 + 0.4 * (rate2 - 0.3)
            continue
        acc += (rate0, np.mean(rates1), rate2)
        # censored values imputed given the current predictions, Student-t residuals as
        # SAEM's Gaussian scale mixture (the complete data, as in SAEM)
        ysim, w_t = complete_data(rng, chains, f, residual, weights=True)
        fz = np.where(d.mask, f, 0.0)
        fixed_terms = None
        if fcols.size:
            _, f_info, f_per = fstep.score_information(
                chains, phi_of(eta), f, ysim, residual, C, weights=w_t,
                extra=S if chains.extra else None)
            fixed_terms = (f_per, f_info * C)
        g_r, H_sum = louis.terms(eta, omega, d, ysim, fz, a, b, fixed=fixed_terms)
        g_i = g_r.reshape(N, C, -1).mean(axis=1)
        G += (H_sum + g_r.T @ g_r) / C
        Dsum += g_i
        batch_sum += g_i
        if (it - burn_in + 1) % BATCH == 0:
            batch_means.append(batch_sum / BATCH)
            batch_sum = np.zeros_like(batch_sum)
    G /= n_iter
    Delta = Dsum / n_iter
    fisher = information(G, Delta, batch_means)
    noise = _noise(batch_means)
    noise = np.zeros((Kp, Kp)) if np.isscalar(noise) else noise
    Dc = Delta - Delta.mean(axis=0)
    raw = Dc.T @ Dc * (N / max(N - 1, 1))
    meat = raw - noise
    meat = 0.5 * (meat + meat.T)
    try:
        np.linalg.cholesky(meat)
    except np.linalg.LinAlgError:
        meat = 0.5 * (raw + raw.T)    # a flat direction: the noise estimate is of its order
    return ScorePass(fisher=fisher, meat=meat, scores=Delta, noise=noise, names=louis.names,
                     iterations=int(n_iter), burn_in=int(burn_in), n_chains=C,
                     acceptance=acc / n_iter)
