"""The population layout shared by the population estimators (FOCE family and SAEM).

Which model quantities are population parameters and which carry a random effect
(:func:`population_layout`), each subject's covariate values and the resolved covariate
effects (:func:`_covariate_model`), and the per-subject standard errors and intervals of a
population fit (:func:`subject_uncertainty`). Moved unchanged from :mod:`.focei`.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import DataError
from ..transforms import dtheta_dx, from_internal
from .base import EstimationProblem

__all__ = ["population_layout", "subject_uncertainty"]


def population_layout(problem):
    """The population model of a problem.

    Returns
    -------
    pop_cols : int ndarray (D,)
        Model quantities with ``estimate = "population"``.
    eta_pos : int ndarray (E,)
        Positions in ``pop_cols`` of those with a random effect.
    err : list of (int, int, str)
        Estimated error parameters: (column, observable index, ``"a"`` or ``"b"``).
    """
    params = problem.parameters
    pop_cols = np.array([q for q, p in enumerate(params)
                         if p.kind != "error" and p.estimate == "population"], dtype=int)
    eta_pos = np.array([j for j, q in enumerate(pop_cols) if params[q].eta is not None],
                       dtype=int)
    err = []
    for k in range(len(problem.observables)):
        for which, idx in (("a", problem.a_index[k]), ("b", problem.b_index[k])):
            if idx >= 0 and params[idx].estimated:
                err.append((int(idx), k, which))
    return pop_cols, eta_pos, err


def subject_uncertainty(problem, est, cov, D: int, P: int, S: int, eta_pos, cond,
                        confidence: float):
    """Per-subject standard errors, intervals and covariance blocks of a population fit.

    Each subject's estimation-scale quantities (its individual parameters, then the residual
    error parameters) get the population covariance step's covariance, except the parameters
    with a random effect, which get the subject's conditional covariance of eta (uncorrelated
    with the rest).

    Parameters
    ----------
    problem : Problem
    est : Estimates
        Per-subject estimates (``x_hat``/``x_cols`` laid out subject by subject).
    cov : ndarray (K, K)
        The covariance step on the outer layout [theta (D), Omega parameters (P), log residual
        SDs (S), coefficients].
    D, P, S : int
    eta_pos : int ndarray (E,)
        Positions in theta of the parameters with a random effect.
    cond : ndarray (m, E, E)
        Conditional covariances of each subject's eta (NaN where unknown).
    confidence : float

    Returns
    -------
    se : ndarray (m, Q)
    ci : ndarray (m, Q, 2)
    blocks : list of (entries, ndarray)
    """
    m, Q = est.theta.shape
    keep = np.r_[np.arange(D), np.arange(D + P, D + P + S)].astype(int)
    cols_i = est.x_cols[:keep.size]
    J = np.ones(keep.size)
    for j in range(D, keep.size):        # d x / d log sd = sd / (d sd / d x)
        q = cols_i[j]
        J[j] = est.theta[0, q] / dtheta_dx(est.x_hat[j:j + 1], problem.scale[q:q + 1],
                                           problem.lower[q:q + 1], problem.upper[q:q + 1])[0]
    pop_block = cov[np.ix_(keep, keep)] * np.outer(J, J)
    se = np.full((m, Q), np.nan)
    ci = np.full((m, Q, 2), np.nan)
    z = _z(confidence)
    blocks = []
    K_i = keep.size
    for i in range(m):
        b = pop_block.copy()
        b[np.ix_(eta_pos, np.arange(K_i))] = 0.0
        b[np.ix_(np.arange(K_i), eta_pos)] = 0.0
        b[np.ix_(eta_pos, eta_pos)] = cond[i]
        entries = np.arange(i * K_i, (i + 1) * K_i)
        blocks.append((entries, b))
        for j, k in enumerate(entries):
            q = est.x_cols[k]
            sc, lo, hi = (problem.scale[q:q + 1], problem.lower[q:q + 1],
                          problem.upper[q:q + 1])
            xv = est.x_hat[k:k + 1]
            sx = math.sqrt(b[j, j]) if b[j, j] >= 0 else np.nan
            se[i, q] = sx * dtheta_dx(xv, sc, lo, hi)[0]
            ci[i, q] = from_internal(np.array([xv[0] - z * sx, xv[0] + z * sx]), sc[0],
                                     lo[0], hi[0])
    return se, ci, blocks


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def _covariate_model(ep: EstimationProblem, params) -> tuple[dict, list]:
    """Each subject's covariate values (mapping covariate -> array (N,)) and the covariate
    effects of the population parameters ``params``, categorical levels resolved from the
    data when the config does not list them (every category but the reference, sorted)."""
    effects = [e for p in params for e in (p.covariates or ())]
    if not effects:
        return {}, []
    designs = ep.designs
    needed = list(dict.fromkeys(e.covariate for e in effects))
    covariates = {}
    for c in needed:
        vals = []
        for d in designs:
            base = dict(getattr(d, "baseline", ()) or ())
            if c not in base:
                raise DataError(f"{ep.source}: subject '{d.id}': covariate '{c}' of the "
                                "population model is missing (expected a baseline value for "
                                "every subject)")
            vals.append(base[c])
        arr = np.array(vals, dtype=object)
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            pass
        covariates[c] = arr
    out = []
    for e in effects:
        e = e.centred(covariates[e.covariate]) if e.effect != "categorical" else e
        if e.effect == "categorical" and not e.levels:
            cats = {e.category(v) for v in covariates[e.covariate]} - {e.reference, None}
            e = e.with_levels(sorted(cats, key=_category_order))
        out.append(e)
    return covariates, out


def _category_order(key: str):
    try:
        return (0, float(key), "")
    except ValueError:
        return (1, 0.0, key)
