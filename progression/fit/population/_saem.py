"""SAEM in the Monolix manner: MCMC simulation, stochastic approximation, closed-form M-step.

How to call it::

    from progression.fit.population import PopulationData, Residual, SaemOptions, saem
    res = saem(model, data, mu0, omega0, Residual.additive(0.5), eta_columns=None,
               covariates=None, options=SaemOptions(k1=300, k2=200), seed=1)
    res.mu, res.omega, res.residual, res.ofv, res.ofv_se, res.eta_mean

``model`` is an :class:`~._core.IndividualModel` (``predict(phi, index) -> (f, G)``; only
``f`` is used), ``mu0`` the (D,) initial typical values on the estimation scale, ``omega0``
(E, E) and ``residual0`` the initial Omega and residual model (its zero/non-zero pattern of
``a``, ``b`` per observable chooses additive, proportional or combined error).

Algorithm (Kuhn & Lavielle 2005; Delyon, Lavielle & Moulines 1999; Monolix defaults):

- *Simulation*: ``n_chains`` Markov chains per subject, all subjects and chains advanced in
  lockstep (one ``predict`` call per kernel sweep). Each iteration runs the three Monolix
  kernels ``kernel_iters`` times each: (1) independent proposal from the population
  distribution N(mu_i, Omega); (2) component-wise random walk (one sweep per component); (3)
  block random walk over a random block of components (size >= 2), followed, with
  ``omega_walk`` and an Omega with correlated blocks, by a random walk with proposal
  covariance ``s^2 Omega`` (moves along a strong correlation, which the coordinate-wise kernels
  cross only by rare jumps; scale adapted like the others). The chains' state is
  ``phi`` (Monolix's), so the M-step's new typical values leave the predictions valid.
  Random-walk scales are per component, adapted during exploration by ``s *= 1 + 0.4 (rate -
  0.4)`` (target acceptance 0.4) and frozen in the smoothing phase. Censored observations are
  imputed from the truncated normal given the current prediction (so the residual statistics
  stay complete-data ones). Each step draws its uniforms before evaluating the proposals, so
  a model that accepts a bound (the compiled RK4 predictions) stops integrating a proposal as
  soon as its data term provably exceeds the rejection threshold (exact early rejection:
  the same decisions and random stream; :mod:`._saem_chains`).
- *Stochastic approximation* of the sufficient statistics ``s1_i = E[phi_i]`` (N, E),
  ``S2 = sum_i E[phi_i phi_i']`` and the residual sums, with step ``gamma_k = 1`` during the
  exploration phase (at most ``k1`` iterations) and ``gamma_k = 1 / (k - K1)^alpha`` during the
  ``k2`` smoothing iterations.
- *M-step*: typical values in closed form (the mean of ``s1``; with covariates ``mu_i = mu +
  beta' x_i`` on the estimation scale, least squares of ``s1`` on ``[1, x]``, generalised
  least squares with the current Omega when ``covariate_mask`` gives parameters different
  covariates); Omega from the statistics (full, diagonal when ``omega_diagonal``, or the
  blocks of ``omega_structure``; ``omega_fixed`` blocks stay at their initial values);
  additive SD ``a^2 = S_res / n_obs`` and proportional SD ``b^2 = sum (y-f)^2/f^2 / n_obs`` in
  closed form; for the combined error ``V = a^2 + b^2 f^2`` (no finite sufficient statistic)
  ``(a, b)`` minimises the complete -2 log-likelihood ``sum (y-f)^2/V + log V`` at each
  iteration's simulated predictions (Fisher scoring on ``log a^2, log b^2``) and that optimum
  is averaged by the same stochastic approximation (saemix's rule; constant cost per
  iteration). Keeping every smoothing iteration's simulations and minimising their SA-weighted
  objective (exact SAEM) gave the same estimates on Theoph to 1e-2 relative, at a cost growing
  as k2^2.
- *Simulated annealing* during exploration: every Omega variance and residual variance is
  kept ``>= tau`` times its previous value (correlations of a full Omega are kept). A full
  Omega is estimated diagonal during the first ``min_k1`` iterations.
- *Automatic end of exploration*: after ``min_k1`` iterations, exploration stops when the
  means of the parameters over the last two windows of ``window`` iterations differ by less
  than ``rtol`` (typical values in units of their random-effect SD ``sqrt(Omega_ee)``;
  variances and residual SDs on the log scale); otherwise after ``k1`` iterations.
- *Standard errors* (``fisher``, default on): the observed Fisher information by stochastic
  approximation of Louis' missing-information formula over the smoothing phase (Delyon,
  Lavielle & Moulines 1999, sec. 5; Monolix's "stochastic approximation" method): per
  subject ``I_i = -E[d2 l_c] - E[d l_c d l_c'] + E[d l_c] E[d l_c]'`` with ``l_c = log p(y_i,
  phi_i; theta)`` the complete-data log-likelihood, each conditional expectation the
  stochastic approximation (same steps as the statistics) of its value at the chains' draws
  (averaged over a subject's chains); ``E[d l_c]`` per subject is a running mean over the
  smoothing phase, and the upward bias its Monte Carlo noise puts into ``sum_i E[d l_c]
  E[d l_c]'`` is removed by a batch-means estimate of that noise (batches of 10 iterations).
  ``l_c`` is in closed form (Gaussian prior of ``phi``,
  Gaussian residuals, censored values imputed), so the model's derivatives are never needed.
  Parameters: typical values and covariate coefficients on the estimation scale, log Omega
  variances (and the covariances of a full Omega), log residual SDs (``SaemResult.
  parameter_names``). On a linear mixed model the information matches the exact observed
  one (Hessian of the exact marginal ``-log L``) to a few %.
- *Automatic end of smoothing* (``auto_k2``): from ``min_k2`` smoothing iterations on, checked
  every 10 iterations, the smoothing phase ends when the means of the parameter trajectories
  over the last two windows of ``k2_window`` iterations differ by less than ``k2_tol``
  standard errors (from the current information) for every parameter and the standard errors
  moved by less than 10% over the last window; otherwise after ``k2`` iterations. The Monte
  Carlo error left in the estimates is then a small fraction of their statistical error.
- *Log-likelihood* by importance sampling: per subject ``M = is_samples`` draws from a
  multivariate Student t (``nu = 5``) centred on the conditional mean of eta with the
  conditional covariance as scale matrix (``is_covariance="full"``, default; or only the
  conditional SDs, ``"diagonal"``), both from the chains over the smoothing phase. ``-2 log L``
  includes every constant; ``ofv`` is NONMEM's convention (without ``n log 2 pi`` for the
  ``n`` uncensored observations). ``ofv_se`` is the Monte Carlo SE (delta method on the
  per-subject weights).

*Student-t residuals*: when the individual model (or the model it wraps as ``.model``) has
``residual_df`` (K,) with finite entries (:class:`~._adapter.ProblemModel` from ``[error.OBS]
distribution = "t"``), those observables' residuals are t with that df and scale
``sqrt(V)``: the chains' data term and the importance sampling use the t density (censored
values the t CDF), censored values are imputed from the truncated t, and the t is written as
a Gaussian scale mixture (``y = f + sqrt(V / w) eps``, ``w ~ Gamma(df/2, rate df/2)``): each
iteration draws the latent ``w`` from its conditional ``Gamma((df+1)/2, rate (df + r^2/V)/2)``,
so the residual statistics become ``sum w r^2`` and the scale's M-step stays in closed form
(the EM of Liu & Rubin 1995 for the t, here stochastic), and Louis' information is the
complete-data one in ``(phi, w)``. The Fisher-scoring M-step of parameters without a random
effect takes the same complete data: given ``w`` the score and information of those
typical values are Gaussian with variance ``V / w`` (:mod:`._saem_fixed`).

Parameters without a random effect (not in ``eta_columns``) are held at their ``mu0`` values,
or, those named in ``estimate_columns``, estimated in the M-step by a Fisher-scoring step on
the complete-data log-likelihood at the chains' draws, applied with the SAEM step size (a
Robbins-Monro scheme for the likelihood equation; Monolix's "parameters without
variability" by optimisation, not the small-variance trick: see
:mod:`~._saem_fixed`). Their standard errors are not in SAEM's own information (use the
FOCE-I covariance step).
"""

from __future__ import annotations

import numpy as np

from ...errors import FitError
from ._core import PopulationData, Residual, check_omega, eta_columns_of
from ._prior import PopulationPrior
from ._saem_chains import _Chains, complete_data
from ._saem_fixed import FixedEffectStep
from ._saem_information import BATCH as _BATCH
from ._saem_information import Louis as _Louis
from ._saem_information import free_coefficients
from ._saem_information import information as _information
from ._saem_information import inverse_pd as _inverse_pd
from ._saem_information import standard_errors as _se
from ._saem_loglik import is_loglik as _is_loglik
from ._saem_types import SaemOptions, SaemResult

__all__ = ["SaemOptions", "SaemResult", "saem"]


def _anneal(new, old, tau):
    """Keep every variance of ``new`` >= tau x the one of ``old`` (correlations kept)."""
    dn, do = np.diag(new), np.diag(old)
    target = np.maximum(dn, tau * do)
    sc = np.sqrt(target / dn)
    return new * np.outer(sc, sc)


def _combined_optimum(r2, f2, w, a0, b0, iters=20):
    """(a, b) minimising ``Q = sum w (r^2/V + log V)``, ``V = a^2 + b^2 f^2``.

    Fisher scoring on ``(log a^2, log b^2)`` (expected Hessian ``sum V'V'^T / V^2``) with step
    halving, warm-started at the current values: cheaper than a general optimiser, and it is
    called once per SAEM iteration.
    """
    x = np.log([max(a0, 1e-8) ** 2, max(b0, 1e-8) ** 2])

    def q(x):
        V = np.exp(x[0]) + np.exp(x[1]) * f2
        return np.sum(w * (r2 / V + np.log(V))), V

    Q, V = q(x)
    for _ in range(iters):
        J = np.stack([np.exp(x[0]) * np.ones_like(f2), np.exp(x[1]) * f2])  # dV/dx
        g = J @ (w * (1.0 / V - r2 / V**2))
        F = (J * (w / V**2)) @ J.T + 1e-12 * np.eye(2)
        step = np.linalg.solve(F, g)
        t = 1.0
        while t > 1e-4:
            xn = np.clip(x - t * step, -60.0, 20.0)
            Qn, Vn = q(xn)
            if Qn <= Q:
                break
            t *= 0.5
        else:
            break
        done = abs(Q - Qn) < 1e-10 * (1.0 + abs(Q))
        x, Q, V = xn, Qn, Vn
        if done:
            break
    return float(np.exp(0.5 * x[0])), float(np.exp(0.5 * x[1]))


def saem(model, data: PopulationData, mu0, omega0, residual0: Residual, *,
         eta_columns=None, covariates=None, covariate_mask=None, omega_structure=None,
         omega_fixed=None, residual_fixed=None, estimate_columns=None,
         estimate_bounds=None, options: SaemOptions | None = None,
         seed: int = 0, mu_fixed=None, progress=None, prior=None,
         covariate_fixed=None) -> SaemResult:
    """Fit a nonlinear mixed-effects model by SAEM (module docstring for the algorithm).

    Parameters
    ----------
    model : IndividualModel or callable
        ``predict(phi (R, D), index (R,)) -> (f (R, n), G)``; rows may repeat subjects.
    data : PopulationData
    mu0 : array_like (D,)
        Initial typical values (estimation scale).
    omega0 : array_like (E, E)
    residual0 : Residual
        Initial residual SDs; which of ``a``, ``b`` are zero fixes the error model.
    eta_columns : sequence of int, optional
        Parameters with a random effect (default all).
    covariates : array_like (N, P), optional
        Covariates (centred by the caller); ``mu_i = mu + beta' x_i`` on the random-effect
        parameters.
    covariate_mask : array_like of bool (P, E), optional
        Which covariate acts on which random-effect parameter (default: every one on every
        one); the other coefficients are 0. The M-step is then generalised least squares of
        the statistics ``s1`` with the current Omega (ordinary least squares when every
        parameter has the same covariates).
    covariate_fixed : array_like (P, E), optional
        Coefficients held at these values (NaN: estimated), e.g. an allometric exponent
        fixed at 1: they enter every subject's typical value but stay out of the M-step and
        of the information.
    omega_structure : array_like of bool (E, E), optional
        Which elements of Omega are estimated (a symmetric block-diagonal pattern with a true
        diagonal); the others are 0. The M-step keeps the blocks of the unconstrained
        estimate (the maximum of the complete likelihood under a block-diagonal constraint).
        Default: diagonal, or full with ``options.omega_diagonal = False``.
    omega_fixed : array_like of bool (E,), optional
        Random effects whose block of Omega stays at ``omega0`` (fixed variances).
    residual_fixed : pair of array_like of bool (K,), optional
        ``(a_fixed, b_fixed)``: residual SDs held at ``residual0`` (not updated, not annealed,
        not in the Fisher information), e.g. a known measurement or recall error. Default:
        every non-zero SD is estimated.
    estimate_columns : sequence of int, optional
        Parameters without a random effect whose typical values are estimated (Fisher-scoring
        M-step, module docstring); the others without a random effect stay at ``mu0``.
    estimate_bounds : pair of array_like (F,), optional
        Lower and upper bounds of those typical values on the estimation scale.
    options : SaemOptions, optional
    seed : int
        Seed of the ``numpy.random.Generator``; the same seed gives identical results.
    mu_fixed : array_like of bool (E,), optional
        Random-effect parameters whose typical value (intercept) is held at ``mu0`` (not
        updated by the M-step, not in the Fisher information); their covariate
        coefficients, random effects and variances are estimated as usual.
    progress : callable, optional
        ``progress(k, phase)`` after each iteration ``k`` (``phase`` "exploration" or
        "smoothing") and once before the importance sampling (``phase`` "importance
        sampling"); for progress lines, it cannot change the result.
    prior : PopulationPrior, optional
        Priors of typical values and variances (:mod:`._prior`): the fit is then the
        maximum a posteriori (MAP) estimate, the information adds the prior's curvature and
        ``SaemResult.prior_objective`` is the prior's ``-2 log p`` at the estimates. A
        variance prior needs the random effect outside an Omega block, estimated.

    Returns
    -------
    SaemResult

    Raises
    ------
    FitError
        Inconsistent shapes (naming what was expected and found), bad Omega or residual.
    """
    opt = SaemOptions() if options is None else options
    rng = np.random.default_rng(seed)
    residual0.check_observables(data)
    mu0 = np.asarray(mu0, dtype=float).ravel()
    D = mu0.size
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    if E == 0:
        raise FitError("SAEM: expected at least one random effect, found none")
    omega, _, _ = check_omega(omega0, E)
    N = data.n_subjects
    fcols = np.asarray([] if estimate_columns is None else estimate_columns, dtype=int).ravel()
    if fcols.size and (np.any(np.isin(fcols, cols)) or fcols.min() < 0 or fcols.max() >= D
                       or np.unique(fcols).size != fcols.size):
        raise FitError(f"SAEM estimate_columns: expected distinct parameters without a random "
                       f"effect among 0..{D - 1}, found {fcols.tolist()} (random effects on "
                       f"{cols.tolist()})")
    if estimate_bounds is None:
        fstep = FixedEffectStep(fcols)
    else:
        flo, fhi = (np.asarray(v, dtype=float).ravel() for v in estimate_bounds)
        if flo.shape != fcols.shape or fhi.shape != fcols.shape:
            raise FitError(f"SAEM estimate_bounds: expected two arrays of {fcols.size} bounds, "
                           f"found {flo.size} and {fhi.size}")
        fstep = FixedEffectStep(fcols, flo, fhi)
    mu_fix = mu0.copy()   # the typical values without a random effect (updated if estimated)
    X = np.ones((N, 1))
    if covariates is not None:
        cv = np.asarray(covariates, dtype=float)
        cv = cv[:, None] if cv.ndim == 1 else cv
        if cv.shape[0] != N or cv.ndim != 2 or not np.all(np.isfinite(cv)):
            raise FitError(f"SAEM covariates: expected a finite ({N}, P) array, found shape "
                           f"{cv.shape}")
        X = np.hstack([X, cv])
    P1 = X.shape[1]
    XtX = X.T @ X
    XtX_inv = np.linalg.pinv(XtX)
    B = np.zeros((P1, E))  # coefficients on the random-effect parameters
    B[0] = mu0[cols]
    b_free = free_coefficients(P1, E, covariate_mask, mu_fixed, covariate_fixed, "SAEM")
    if covariate_fixed is not None:             # its shape checked by free_coefficients
        cf = np.asarray(covariate_fixed, dtype=float)
        B[1:] = np.where(np.isfinite(cf), cf, B[1:])
    B_held = np.where(b_free, 0.0, B)       # the held coefficients (0 or the held value)
    gls = not b_free.all()
    if omega_structure is None:
        pattern = np.eye(E, dtype=bool) if opt.omega_diagonal else np.ones((E, E), bool)
    else:
        pattern = np.asarray(omega_structure, dtype=bool)
        if pattern.shape != (E, E) or not np.array_equal(pattern, pattern.T) or not \
                pattern.diagonal().all():
            raise FitError(f"SAEM omega_structure: expected a symmetric ({E}, {E}) boolean "
                           f"array with a true diagonal, found {pattern.astype(int).tolist()}")
    fixed = (np.zeros(E, dtype=bool) if omega_fixed is None
             else np.asarray(omega_fixed, dtype=bool).ravel())
    if fixed.shape != (E,):
        raise FitError(f"SAEM omega_fixed: expected {E} flags, found {fixed.size}")
    if np.any(pattern & (fixed[:, None] != fixed[None, :])):
        raise FitError("SAEM omega_fixed: a block of Omega is either fixed or estimated as a "
                       "whole")
    omega_init = omega.copy()
    omega = np.where(pattern, omega, 0.0)
    check_omega(omega, E)
    diagonal = not np.any(pattern & ~np.eye(E, dtype=bool))
    prior = PopulationPrior.none(D, E) if prior is None else prior
    if prior.mean.size != D or prior.omega.size != E:
        raise FitError(f"SAEM prior: expected {D} typical values and {E} variances, found "
                       f"{prior.mean.size} and {prior.omega.size}")
    in_block = (pattern & ~np.eye(E, dtype=bool)).any(axis=1)
    if np.any(prior.on_omega & (in_block | fixed)):
        e = int(np.flatnonzero(prior.on_omega & (in_block | fixed))[0])
        raise FitError(f"SAEM prior: random effect {e} has a variance prior but its variance "
                       f"is {'fixed' if fixed[e] else 'in an Omega block'}; expected an "
                       f"estimated variance of its own")
    # the prior's precision and precision x mean on the intercepts of the random effects
    mu_prec, mu_pm = prior.mean_terms(cols)
    mu_prec, mu_pm = np.where(b_free[0], mu_prec, 0.0), np.where(b_free[0], mu_pm, 0.0)
    f_prec, f_pm = prior.mean_terms(fcols)
    gls = gls or bool(mu_prec.any())
    K = len(residual0.a)
    a = np.array(residual0.a, float)
    b = np.array(residual0.b, float)
    has_a, has_b = a > 0, b > 0
    fix_a = np.zeros(K, dtype=bool)
    fix_b = np.zeros(K, dtype=bool)
    if residual_fixed is not None:
        fa, fb = (np.asarray(v, dtype=bool).ravel() for v in residual_fixed)
        if fa.shape != (K,) or fb.shape != (K,):
            raise FitError(f"SAEM residual_fixed: expected two arrays of {K} flags, found "
                           f"{fa.size} and {fb.size}")
        fix_a, fix_b = fa & has_a, fb & has_b
        half = np.flatnonzero(has_a & has_b & (fix_a != fix_b))
        if half.size:
            raise FitError(f"SAEM residual_fixed: observable {int(half[0])} has a combined "
                           f"error model with one SD fixed; expected both or neither fixed")
    # the estimated residual SDs (the M-step, annealing and the information skip fixed ones)
    est_a, est_b = has_a & ~fix_a, has_b & ~fix_b
    C = opt.n_chains or max(1, int(np.ceil(100.0 / N)))
    sub = np.repeat(np.arange(N), C)  # chain -> subject
    R = sub.size
    chains = _Chains(model, data, sub, D, residual0)
    d = chains.d
    obs_k = [d.mask & (d.observable == k) for k in range(K)]
    n_k = np.array([m.sum() for m in obs_k], float) / C  # observations, not chain rows

    def mu_rows():
        full = np.tile(mu_fix, (N, 1))
        full[:, cols] = X @ B
        return full

    def phi_of(eta, mu_i):
        phi = mu_i[sub].copy()
        phi[:, cols] += eta
        return phi

    def resid():
        return Residual(tuple(a.tolist()), tuple(b.tolist()))

    mu_i = mu_rows()
    Lom = np.linalg.cholesky(omega)
    eta = rng.standard_normal((R, E)) @ Lom.T
    U_data, f = chains.evaluate(phi_of(eta, mu_i), resid())
    bad = ~np.isfinite(U_data)
    eta[bad] = 0.0
    if bad.any():
        U_data, f = chains.evaluate(phi_of(eta, mu_i), resid())
    # the chains' current survival term (-2 log p(T | phi); 0 without [survival]): it does
    # not depend on the residual model, so it is carried with the state like f
    S_cur = chains.last_extra.copy()
    if not np.all(np.isfinite(U_data)):
        i = int(sub[np.flatnonzero(~np.isfinite(U_data))[0]])
        raise FitError(f"SAEM: subject {i}: the model could not be evaluated at the initial "
                       "typical values (expected finite predictions)")
    scale = np.sqrt(np.diag(omega)).copy()  # random-walk SD per component
    s_block = 0.5
    s_corr = 0.3
    acc_sum = np.zeros(3)
    acc_n = np.zeros(3)
    # sufficient statistics
    s1 = np.zeros((N, E))
    S2 = np.zeros((E, E))
    Sres = np.zeros(K)     # sum (y - f)^2 per observable
    Sprop = np.zeros(K)    # sum (y - f)^2 / f^2 per observable
    ab_sa = np.c_[a, b].astype(float)
    traces_mu, traces_om, traces_a, traces_b, stop_vec = [], [], [], [], []
    eta_acc = np.zeros((N, E))
    eta2_acc = np.zeros((N, E, E))
    n_acc = 0
    k1_end = None
    stop_reason = "k1 reached"
    smoothing_reason = f"k2 = {opt.k2} iterations"
    louis = (_Louis(X, sub, E, pattern, ~fixed, b_free, est_a, est_b, fcols) if opt.fisher
             else None)
    if louis is not None:
        Delta = np.zeros((N, louis.K))
        batch_sum = np.zeros((N, louis.K))     # the current batch's per-subject score sum
        batch_means = []                        # completed batches' per-subject means
        Gsa = np.zeros((louis.K, louis.K))
        smooth_vals, se_hist = [], {}
    k = 0
    while True:
        k += 1
        exploring = k1_end is None
        om_inv = np.linalg.inv(omega)
        Lom = np.linalg.cholesky(omega)
        res_now = resid()
        # the chains' state is the individual parameters phi (Monolix's): the M-step moved
        # mu and the residual model but not phi, so the predictions are still valid and only
        # the data term is recomputed (no model evaluation)
        U_data = chains.data_term(f, res_now) + S_cur

        def prior_q(e, om_inv=om_inv):
            return np.einsum("re,ef,rf->r", e, om_inv, e)

        # --- simulation step: the three Monolix kernels --------------------------------
        for _ in range(opt.kernel_iters[0]):
            prop = rng.standard_normal((R, E)) @ Lom.T
            # the uniforms first (the same stream as after the evaluation): the data term
            # above which a proposal is rejected bounds its evaluation (early rejection)
            logu = np.log(rng.random(R))
            Up, fp = chains.evaluate(phi_of(prop, mu_i), res_now, bound=U_data - 2.0 * logu)
            acc = logu < -0.5 * (Up - U_data)
            eta[acc], U_data[acc], f[acc] = prop[acc], Up[acc], fp[acc]
            S_cur[acc] = chains.last_extra[acc]
            acc_sum[0] += acc.mean()
            acc_n[0] += 1
        U_prior = prior_q(eta)

        def random_walk(prop, eta=eta, f=f, U_data=U_data, U_prior=U_prior, S_cur=S_cur,
                        mu_i=mu_i, res_now=res_now):
            """Metropolis step of the random-walk kernels (symmetric proposals ``prop``, the
            prior in the ratio): each row accepts its proposal or keeps its state (the arrays
            of this iteration, in place); the acceptance rate."""
            Pp = prior_q(prop)
            logu = np.log(rng.random(R))
            Up, fp = chains.evaluate(phi_of(prop, mu_i), res_now,
                                     bound=U_data + U_prior - Pp - 2.0 * logu)
            acc = logu < -0.5 * (Up + Pp - U_data - U_prior)
            eta[acc], U_data[acc], f[acc], U_prior[acc] = (prop[acc], Up[acc], fp[acc],
                                                            Pp[acc])
            S_cur[acc] = chains.last_extra[acc]
            return acc.mean()

        for _ in range(opt.kernel_iters[1]):
            for e in range(E):
                prop = eta.copy()
                prop[:, e] += scale[e] * rng.standard_normal(R)
                rate = random_walk(prop)
                acc_sum[1] += rate / E
                if exploring:
                    scale[e] *= 1.0 + 0.4 * (rate - 0.4)
            acc_n[1] += 1
        for _ in range(opt.kernel_iters[2]):
            if E >= 2:
                size = int(rng.integers(2, E + 1))
                blk = np.sort(rng.choice(E, size=size, replace=False))
            else:
                blk = np.arange(E)
            prop = eta.copy()
            prop[:, blk] += s_block * scale[blk] * rng.standard_normal((R, blk.size))
            rate = random_walk(prop)
            acc_sum[2] += rate
            acc_n[2] += 1
            if exploring:
                s_block *= 1.0 + 0.4 * (rate - 0.4)
            if opt.omega_walk and not diagonal:
                # correlated random walk (proposal covariance s^2 Omega): with a strongly
                # correlated block (an onset shift tied to a rate constant, correlation
                # ~ -0.99) the coordinate-wise moves above are almost always rejected,
                # and only this one moves the chain along the correlation
                prop = eta + s_corr * (rng.standard_normal((R, E)) @ Lom.T)
                rate = random_walk(prop)
                if exploring:
                    s_corr *= 1.0 + 0.4 * (rate - 0.4)
        # --- imputation of censored values, then the stochastic approximation ----------
        ysim, w_t = complete_data(rng, chains, f, res_now, weights=True)
        phi_e = mu_i[sub][:, cols] + eta
        gamma = 1.0 if exploring else 1.0 / (k - k1_end) ** opt.alpha
        if fcols.size:
            # the complete-data score and information of the typical values without a
            # random effect at these draws (for the M-step and Louis' information)
            phi_now = phi_of(eta, mu_i)
            f_score, f_info, f_per = fstep.score_information(
                chains, phi_now, f, ysim, res_now, C, weights=w_t,
                extra=S_cur if chains.extra else None)
        m1 = phi_e.reshape(N, C, E).mean(axis=1)
        m2 = np.einsum("re,rf->ef", phi_e, phi_e) / C
        fz = np.where(d.mask, f, 0.0)
        r2 = np.where(d.mask, (ysim - fz) ** 2, 0.0)
        s1 += gamma * (m1 - s1)
        S2 += gamma * (m2 - S2)
        if louis is not None and not exploring:
            # Louis: I = -E[H] - E[g g'] + E[g] E[g]' per subject, each expectation by the
            # same stochastic approximation as the statistics (Delyon et al. 1999, sec. 5)
            g_r, H_sum = louis.terms(eta, omega, d, ysim, fz, a, b,
                                     fixed=(f_per, f_info * C) if fcols.size else None)
            # running means (step 1/k rather than the statistics' 1/k^alpha): the noise
            # left in Delta_i biases sum_i Delta_i Delta_i' upward by sum_i Var(Delta_i),
            # so it is averaged as much as the smoothing phase allows
            g1 = 1.0 / (k - k1_end)
            g_i = g_r.reshape(N, C, -1).mean(axis=1)
            Delta += g1 * (g_i - Delta)
            batch_sum += g_i
            if (k - k1_end) % _BATCH == 0:
                batch_means.append(batch_sum / _BATCH)
                batch_sum = np.zeros_like(batch_sum)
            Gsa += g1 * ((H_sum + g_r.T @ g_r) / C - Gsa)
        for kk in range(K):
            m = obs_k[kk]
            Sres[kk] += gamma * (r2[m].sum() / C - Sres[kk])
            with np.errstate(all="ignore"):
                Sprop[kk] += gamma * ((r2[m] / fz[m] ** 2).sum() / C - Sprop[kk])
            if has_a[kk] and has_b[kk]:
                # saemix's rule: the optimum at this iteration's simulated predictions,
                # averaged by the stochastic approximation
                opt_ab = _combined_optimum(r2[m], fz[m] ** 2, 1.0, a[kk], b[kk])
                ab_sa[kk] += gamma * (np.asarray(opt_ab) - ab_sa[kk])
        # --- M-step --------------------------------------------------------------------
        if fcols.size:
            # typical values without a random effect: one Fisher-scoring step on the
            # complete-data log-likelihood at these draws, with the SAEM step size
            new_f = fstep.step(mu_fix[fcols], f_score + f_pm - f_prec * mu_fix[fcols],
                               f_info + np.diag(f_prec), gamma)
            for _ in range(4):
                trial = phi_now.copy()
                trial[:, fcols] = new_f
                U_try, f_try = chains.evaluate(trial, res_now)
                S_try = chains.last_extra.copy()
                if np.all(np.isfinite(U_try)) or not np.all(np.isfinite(U_data)):
                    break
                new_f = 0.5 * (new_f + mu_fix[fcols])    # a subject failed: halve the step
            else:
                U_try = None
            if U_try is not None:
                mu_fix[fcols] = new_f
                f, S_cur = f_try, S_try
        if gls:
            # generalised least squares with the current Omega (the coefficients of
            # parameter e only where its covariates act): sum_i X_i' A X_i b = sum_i X_i' A s1_i
            A = np.linalg.inv(omega)
            fr = b_free.ravel()
            lhs = np.kron(XtX, A)
            rhs = (X.T @ (s1 - X @ B_held) @ A).ravel()
            # a normal prior on an intercept (row 0 of B: entries 0..E-1 of the ravel)
            lhs[:E, :E] += np.diag(mu_prec)
            rhs[:E] += mu_pm
            lhs, rhs = lhs[np.ix_(fr, fr)], rhs[fr]
            B = B_held.copy()
            B.ravel()[fr] = np.linalg.solve(lhs, rhs)
        else:
            B = XtX_inv @ (X.T @ s1)
        mu_old = mu_i
        mu_i = mu_rows()
        eta = eta + (mu_old - mu_i)[sub][:, cols]       # same phi, new typical values
        M = X @ B
        om_new = (S2 - M.T @ s1 - s1.T @ M + M.T @ M) / N
        om_new = 0.5 * (om_new + om_new.T)
        if diagonal or (exploring and k <= opt.min_k1):
            # a full Omega is estimated only after the first min_k1 iterations: from a poor
            # start the early statistics can drive a correlation to +-1, a boundary that EM
            # leaves very slowly (seen on a linear mixed model started 2 SD off)
            om_new = np.diag(np.diag(om_new))
        else:
            om_new = np.where(pattern, om_new, 0.0)
        if fixed.any():
            om_new[np.ix_(fixed, fixed)] = omega_init[np.ix_(fixed, fixed)]
        if prior.on_omega.any():
            om_new[np.diag_indices(E)] = prior.omega_step(np.diag(om_new), N)
        om_new = om_new + 1e-10 * np.eye(E) * max(1.0, np.abs(np.diag(om_new)).max())
        a_old, b_old = a.copy(), b.copy()
        for kk in range(K):
            if fix_a[kk] or fix_b[kk]:
                continue  # held at residual0 (a combined model has both or neither fixed)
            if has_a[kk] and has_b[kk]:
                a[kk], b[kk] = ab_sa[kk]
            elif has_a[kk]:
                a[kk] = np.sqrt(Sres[kk] / n_k[kk])
            else:
                b[kk] = np.sqrt(Sprop[kk] / n_k[kk])
        if exploring:
            om_new = _anneal(om_new, omega, opt.tau)
            st = np.sqrt(opt.tau)
            a = np.where(est_a, np.maximum(a, st * a_old), np.where(has_a, a_old, 0.0))
            b = np.where(est_b, np.maximum(b, st * b_old), np.where(has_b, b_old, 0.0))
        try:
            np.linalg.cholesky(om_new)
            omega = om_new
        except np.linalg.LinAlgError:
            pass  # keep the previous Omega (a transiently indefinite full estimate)
        traces_mu.append(_typical(mu_fix, cols, B))
        traces_om.append(omega.copy())
        traces_a.append(a.copy())
        traces_b.append(b.copy())
        stop_vec.append(np.r_[B[0] / np.sqrt(np.diag(omega)), np.log(np.diag(omega)),
                              np.log(a[est_a]), np.log(b[est_b]), mu_fix[fcols]])
        if progress is not None:
            progress(k, "exploration" if exploring else "smoothing")
        if not exploring:
            eta_acc += eta.reshape(N, C, E).sum(axis=1)
            ec = eta.reshape(N, C, E)
            eta2_acc += np.einsum("nce,ncf->nef", ec, ec)
            n_acc += C
            k2_now = k - k1_end
            if k2_now >= opt.k2:
                break
            if louis is not None and opt.auto_k2:
                smooth_vals.append(louis.values(B, omega, a, b, mu_fix[fcols]))
                w = opt.k2_window
                if k2_now >= opt.min_k2 - w and k2_now % 10 == 0:
                    # automatic end of smoothing (checked every 10 iterations): the
                    # estimates' means over the last two windows differ by less than k2_tol
                    # standard errors, and the standard errors moved by less than 10% over
                    # the last window
                    se = _se(_information(Gsa, Delta, batch_means))
                    se_hist[k2_now] = se
                    se_old = se_hist.get(k2_now - w)
                    if k2_now >= opt.min_k2 and se_old is not None:
                        vec = np.array(smooth_vals[-2 * w:])
                        drift = np.max(np.abs(vec[w:].mean(axis=0) - vec[:w].mean(axis=0))
                                       / se)
                        se_move = np.max(np.abs(se / se_old - 1.0))
                    else:
                        drift = se_move = np.inf
                    if drift < opt.k2_tol and se_move < 0.1:
                        smoothing_reason = (
                            f"automatic: at smoothing iteration {k2_now} the estimates moved "
                            f"by {drift:.3g} SE (< {opt.k2_tol}) between windows of {w} "
                            f"iterations and the SEs by {se_move:.1%} (< 10%)")
                        break
            continue
        # --- end of exploration? -------------------------------------------------------
        if opt.auto_stop and k >= opt.min_k1 and k >= 2 * opt.window:
            w = opt.window
            vec = np.array(stop_vec[-2 * w:])
            change = np.abs(vec[w:].mean(axis=0) - vec[:w].mean(axis=0)).max()
            if change < opt.rtol:
                k1_end = k
                stop_reason = (f"automatic: largest change {change:.3g} < rtol {opt.rtol} "
                               f"between windows of {w} iterations at iteration {k}")
                continue
        if k >= opt.k1:
            k1_end = k
    n_iter = k
    eta_mean = eta_acc / n_acc
    eta_cov = eta2_acc / n_acc - np.einsum("ne,nf->nef", eta_mean, eta_mean)
    eta_cov = 0.5 * (eta_cov + np.swapaxes(eta_cov, 1, 2))
    eta_sd = np.sqrt(np.maximum(np.diagonal(eta_cov, axis1=1, axis2=2), 0.0))
    fisher = cov = None
    names = ()
    if louis is not None:
        fisher = _information(Gsa, Delta, batch_means)
        fisher = 0.5 * (fisher + fisher.T)
        if not prior.empty:
            fisher = fisher + prior.information(louis.names, _typical(mu_fix, cols, B),
                                                np.diag(omega), cols)
        cov = _inverse_pd(fisher)
        names = louis.names
    residual = resid()
    minus2ll = ofv = se = np.nan
    ofv_i = np.full(N, np.nan)
    if opt.is_samples:
        if progress is not None:
            progress(n_iter, "importance sampling")
        minus2ll, ofv, se, ofv_i = _is_loglik(model, data, mu_i, omega, residual, cols,
                                              eta_mean, eta_cov, opt, rng)
    beta = np.zeros((P1 - 1, D))
    beta[:, cols] = B[1:]
    return SaemResult(mu=_typical(mu_fix, cols, B), beta=beta, omega=omega, residual=residual,
                      eta_columns=cols, eta_mean=eta_mean, eta_sd=eta_sd, eta_cov=eta_cov,
                      acceptance=acc_sum / np.maximum(acc_n, 1), n_iter=n_iter, k1=k1_end,
                      stop_reason=stop_reason, trace_mu=np.array(traces_mu),
                      trace_omega=np.array(traces_om), trace_a=np.array(traces_a),
                      trace_b=np.array(traces_b), minus2ll=minus2ll, ofv=ofv, ofv_se=se,
                      ofv_i=ofv_i, n_chains=C, seed=seed, options=opt, fisher=fisher,
                      covariance=cov, parameter_names=names,
                      smoothing_reason=smoothing_reason,
                      prior_objective=prior.m2logp(_typical(mu_fix, cols, B), np.diag(omega)))


def _typical(mu0, cols, B):
    out = np.array(mu0, dtype=float)
    out[cols] = B[0]
    return out
