"""The settings and the result of :func:`~progression.fit.population.saem` (frozen
dataclasses, picklable)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import FitError
from ._core import Residual

__all__ = ["SaemOptions", "SaemResult"]


@dataclass(frozen=True)
class SaemOptions:
    """Settings of :func:`saem` (frozen, picklable).

    Parameters
    ----------
    k1 : int
        Maximum number of exploration iterations (gamma = 1), default 300.
    k2 : int
        Smoothing iterations (gamma = 1/(k-K1)^alpha), default 200.
    alpha : float
        Exponent of the smoothing step (0.5 < alpha <= 1), default 0.7: the smoothing phase
        then still moves the estimates (sum of steps ~ k2^0.3 / 0.3 = 16 EM steps for k2 = 200).
    n_chains : int or None
        Chains per subject; None: ``max(1, ceil(100 / N))``. With few chains in all, the end of
        the exploration phase is noisy and the smoothing phase removes that noise slowly where
        EM converges slowly: on Theoph (N = 12, full Omega, combined error) 5 chains ended
        0.1-1.1 OFV units above the maximum across seeds, 10 chains 0.0-0.5.
    kernel_iters : tuple of 3 int
        Iterations of the prior, component-wise and block kernels per SAEM iteration.
    omega_walk : bool
        After the block kernel, a random walk with proposal covariance ``s^2 Omega`` when
        Omega has correlated blocks (default False: Monolix's three kernels only). The
        ``saem`` estimator turns it on for configs with ``[omega]`` blocks: a correlation near
        -1 (an onset shift tied to a rate) leaves the other kernels almost never accepting.
    tau : float
        Annealing factor of Omega and residual variances in exploration, default 0.95.
    auto_stop : bool
        End exploration early by the window rule (module docstring).
    min_k1, window : int
        Minimum exploration length and window of the automatic stop.
    rtol : float
        Tolerance of the automatic stop.
    omega_diagonal : bool
        Estimate a diagonal Omega (default) or a full one.
    is_samples : int
        Importance-sampling draws per subject for the log-likelihood (0: skip).
    is_nu : float
        Degrees of freedom of the Student t proposal.
    is_covariance : {"full", "diagonal"}
        Scale matrix of the proposal: each subject's conditional covariance of eta from the
        chains, or only its diagonal (the conditional SDs).
    fisher : bool
        Stochastic approximation of the observed Fisher information (Louis' principle) during
        the smoothing phase, hence standard errors (default True).
    auto_k2 : bool
        End the smoothing phase automatically (module docstring; needs ``fisher``); ``k2`` is
        then the most smoothing iterations. Default False: exactly ``k2``.
    min_k2, k2_window : int
        Fewest smoothing iterations and the window of the automatic end of smoothing.
    k2_tol : float
        Tolerance of the automatic end of smoothing, in standard errors.
    """

    k1: int = 300
    k2: int = 200
    alpha: float = 0.7
    n_chains: int | None = None
    kernel_iters: tuple = (2, 2, 2)
    omega_walk: bool = False
    tau: float = 0.95
    auto_stop: bool = True
    min_k1: int = 100
    window: int = 50
    rtol: float = 0.05
    omega_diagonal: bool = True
    is_samples: int = 2000
    is_nu: float = 5.0
    is_covariance: str = "full"
    fisher: bool = True
    auto_k2: bool = False
    min_k2: int = 100
    k2_window: int = 50
    k2_tol: float = 0.1

    def __post_init__(self):
        bad = None
        if self.k1 < 1 or self.k2 < 1:
            bad = f"k1, k2 >= 1, found {self.k1}, {self.k2}"
        elif not 0.5 < self.alpha <= 1.0:
            bad = f"alpha in (0.5, 1], found {self.alpha}"
        elif self.n_chains is not None and self.n_chains < 1:
            bad = f"n_chains >= 1 or None, found {self.n_chains}"
        elif len(self.kernel_iters) != 3 or min(self.kernel_iters) < 0:
            bad = f"kernel_iters: 3 counts >= 0, found {self.kernel_iters}"
        elif not 0.0 < self.tau <= 1.0:
            bad = f"tau in (0, 1], found {self.tau}"
        elif self.window < 2 or self.min_k1 < self.window:
            bad = f"window >= 2 and min_k1 >= window, found {self.window}, {self.min_k1}"
        elif self.is_samples < 0 or self.is_nu <= 0:
            bad = f"is_samples >= 0 and is_nu > 0, found {self.is_samples}, {self.is_nu}"
        elif self.is_covariance not in ("full", "diagonal"):
            bad = f"is_covariance 'full' or 'diagonal', found {self.is_covariance!r}"
        elif self.k2_window < 2 or self.min_k2 < 2 * self.k2_window:
            bad = (f"k2_window >= 2 and min_k2 >= 2 k2_window, found {self.k2_window}, "
                   f"{self.min_k2}")
        elif not self.k2_tol > 0:
            bad = f"k2_tol > 0, found {self.k2_tol}"
        elif self.auto_k2 and not self.fisher:
            bad = "fisher = True with auto_k2 (the rule is in standard errors), found False"
        if bad:
            raise FitError(f"SAEM options: expected {bad}")
        object.__setattr__(self, "kernel_iters", tuple(int(v) for v in self.kernel_iters))


@dataclass(frozen=True, eq=False)
class SaemResult:
    """Result of :func:`saem`.

    Attributes
    ----------
    mu : ndarray (D,)
        Typical values on the estimation scale (intercepts when there are covariates).
    beta : ndarray (P, D)
        Covariate coefficients (zero rows for parameters without a random effect).
    omega : ndarray (E, E)
    residual : Residual
    eta_columns : ndarray of int (E,)
    eta_mean, eta_sd : ndarray (N, E)
        Conditional means and SDs of eta per subject (chains over the smoothing phase).
    eta_cov : ndarray (N, E, E)
        Conditional covariance matrices of eta per subject (same chains).
    acceptance : ndarray (3,)
        Mean acceptance rates of the prior, component-wise and block kernels.
    n_iter, k1 : int
        Iterations in all and in the exploration phase.
    stop_reason : str
        How exploration ended ("automatic: ..." or "k1 reached").
    trace_mu : ndarray (n_iter, D)
    trace_omega : ndarray (n_iter, E, E)
    trace_a, trace_b : ndarray (n_iter, K)
    minus2ll, ofv, ofv_se : float
        Importance-sampling ``-2 log L`` (all constants), OFV (NONMEM convention) and the MC
        SE of both (NaN when ``is_samples = 0``).
    ofv_i : ndarray (N,)
        Per-subject OFV contributions.
    n_chains : int
    seed : int
    options : SaemOptions
    fisher : ndarray (K, K) or None
        Observed Fisher information of the population parameters (on the ``-log L`` scale,
        so its inverse is their covariance), by stochastic approximation of Louis' formula
        over the smoothing phase; None when ``options.fisher`` is off.
    covariance : ndarray (K, K) or None
        Its inverse (NaN when the information is not positive definite).
    parameter_names : tuple of str (K,)
        The rows of ``fisher``: ``mu[e]`` (typical value of the parameter with random effect
        ``e``, estimation scale), ``beta[p,e]`` (covariate ``p`` on it), ``log omega2[e]``
        (Omega's diagonal), ``omega[e,e']`` (off-diagonal covariances), ``log a[k]``,
        ``log b[k]`` (residual SDs of observable ``k``), ``theta[d]`` (estimated typical
        value of parameter ``d`` without a random effect).
    smoothing_reason : str
        How the smoothing phase ended ("k2 reached" or "automatic: ...").
    prior_objective : float
        The prior's ``-2 log p`` at the estimates (:mod:`._prior`; 0 without a prior): the
        MAP objective is ``ofv + prior_objective``.
    """

    mu: np.ndarray
    beta: np.ndarray
    omega: np.ndarray
    residual: Residual
    eta_columns: np.ndarray
    eta_mean: np.ndarray
    eta_sd: np.ndarray
    eta_cov: np.ndarray
    acceptance: np.ndarray
    n_iter: int
    k1: int
    stop_reason: str
    trace_mu: np.ndarray
    trace_omega: np.ndarray
    trace_a: np.ndarray
    trace_b: np.ndarray
    minus2ll: float
    ofv: float
    ofv_se: float
    ofv_i: np.ndarray
    n_chains: int
    seed: int
    options: SaemOptions = field(default_factory=SaemOptions)
    fisher: np.ndarray | None = None
    covariance: np.ndarray | None = None
    parameter_names: tuple = ()
    smoothing_reason: str = ""
    prior_objective: float = 0.0
