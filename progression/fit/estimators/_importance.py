"""The FOCE family's importance-sampling OFV (``[estimator] importance_ofv``).

After the estimation, each subject's ``-2 log L`` is integrated over eta at the estimates with
SAEM's importance sampler: NONMEM's ``$EST METHOD=IMP EONLY=1`` after FOCE, the number to
compare with SAEM's OFV, between estimators, or between residual models (Laplace overstates
``-2 log L`` more with a Student-t residual).
"""

from __future__ import annotations

import numpy as np

from ..population import conditional_modes
from ..population._adapter import ProblemModel
from ..population._core import Residual
from ..population._saem_loglik import is_loglik
from ..population._saem_types import SaemOptions

__all__ = ["importance_ofv"]

def importance_ofv(estimator, ep, s, x, inner_options) -> tuple[float, float]:
    """The exact ``-2 log L`` (OFV convention) at the estimates by importance sampling,
    and its Monte Carlo SE: SAEM's sampler (:func:`~..population._saem_loglik.
    is_loglik`, Student-t residuals included) with each subject's proposal a
    multivariate t(5) around its conditional mode, scaled by the FOCE-I curvature
    ``(Omega^-1 + 1/2 sum W g g')^-1`` (positive definite whatever the method; the
    sampler's weights correct the rest). With ``[survival]`` the sampler evaluates the
    model without the survival residual rows and adds ``-2 log p(T | phi)`` itself, as
    in SAEM, so that the rows' constants are not in it.

    Parameters
    ----------
    estimator : FOCEI
        The estimator (its ``_split``, ``_mu`` and ``_residual`` read the outer vector).
    ep : EstimationProblem
    s : dict
        The estimator's state after the estimation (model, data, last gradient).
    x : ndarray
        The outer estimates.
    inner_options : InnerOptions
        Of the conditional modes at the estimates.

    Returns
    -------
    (float, float)
        The OFV (NONMEM's convention) and its Monte Carlo SE.
    """
    problem, options = ep.problem, ep.options
    theta_x, omega, _, sd, coef = estimator._split(s, x)
    mu = estimator._mu(s, theta_x, coef)[0]
    residual = estimator._residual(problem, s, sd)
    inner = conditional_modes(s["model"], s["data"], mu, omega, residual,
                              eta_columns=s["eta_pos"], eta0=s["gr"].inner.eta,
                              interaction=True, options=inner_options)
    E = omega.shape[0]
    Oinv = np.linalg.inv(omega)
    eta = np.where(np.isfinite(inner.eta), inner.eta, 0.0)
    cov = np.empty((eta.shape[0], E, E))
    for i, info in enumerate(inner.info):
        try:
            cov[i] = np.linalg.inv(Oinv + 0.5 * info)
        except np.linalg.LinAlgError:
            cov[i] = omega
        if not np.all(np.isfinite(cov[i])):
            # a subject whose mode was not found: the prior as its proposal
            cov[i] = omega
    model, data = s["model"], s["data"]
    if problem.survival is not None:
        model = ProblemModel(problem, ep.designs, s["pop_cols"])
        data = model.data(ep.source)
        K = len(problem.observables)
        residual = Residual(residual.a[:K], residual.b[:K], residual.df[:K])
    opt = SaemOptions(is_samples=int(options.is_samples))
    rng = np.random.default_rng(int(options.seed))
    _, ofv, se, _ = is_loglik(model, data, mu, omega, residual, s["eta_pos"], eta, cov,
                              opt, rng)
    return float(ofv), float(se)
