"""The population layout shared by the population estimators (FOCE family and SAEM).

Which model quantities are population parameters and which carry a random effect
(:func:`population_layout`), each subject's covariate values and the resolved covariate
effects (:func:`_covariate_model`), and the per-subject standard errors and intervals of a
population fit (:func:`subject_uncertainty`). Moved unchanged from :mod:`.focei`. For SAEM:
the covariate effects as its core's linear covariate model (:func:`_covariate_design`) and
the map from the core's parameters to focei's layout (:func:`_to_focei_layout`), moved
unchanged from :mod:`.saem`.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError, DataError
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


def _covariate_design(ep, s):
    """The covariate effects of the population model as the SAEM core's linear covariate
    model on the estimation scale: columns (N, C), which parameter each acts on (C, E), the
    held coefficients (C, E) (the core's value of a fixed coefficient, ``estimate = false``,
    NaN where estimated or not acting), and for each estimated config coefficient its
    (column + 1, eta index, kind).

    Effects linear in mu on a log scale: ``power`` (column ``log(x / r)``, coefficient c),
    ``exponential`` (``x - r``, c) and ``categorical`` (an indicator per level, coefficient
    ``log(1 + c_l)``, the core's M-step being linear in it).

    Raises
    ------
    ConfigError
        A ``linear`` effect or a parameter not on the log scale (not linear in mu: use
        focei).
    """
    typical = s["typical"]
    if not typical.effects:
        return None, None, None, {}
    free, coef0 = s["coef_free"], s["coef0"]
    held = []
    problem = ep.problem
    pop_cols, eta_pos = s["pop_cols"], list(s["eta_pos"])
    cols, owner, coef_map = [], [], {}
    for e, d, sl in zip(typical.effects, typical.param_of, typical.slices, strict=True):
        q = pop_cols[d]
        key = f"parameters.{problem.names[q]}.covariates.{e.covariate}"
        if problem.parameters[q].scale != "log" or e.effect == "linear":
            raise ConfigError(f"{ep.source}: {key}: fit.estimator = \"saem\" takes covariate "
                              f"effects that are linear on the estimation scale (power, "
                              f"exponential or categorical on a log-scale parameter), found a "
                              f"{e.effect} effect on a {problem.parameters[q].scale}-scale "
                              "parameter (use focei)")
        x = s["covariates"][e.covariate]
        if e.effect == "categorical":
            cats = np.array([e.category(v) for v in x], dtype=object)
            for j, lev in zip(range(sl.start, sl.stop), e.levels, strict=True):
                cols.append((cats == lev).astype(float))
                owner.append(eta_pos.index(d))
                held.append(np.nan if free[j] else np.log1p(coef0[j]))
                if free[j]:
                    coef_map[j] = (len(cols), owner[-1], "log1p")
        else:
            x = np.asarray(x, dtype=float)
            ref = float(e.reference)
            cols.append(np.log(x / ref) if e.effect == "power" else x - ref)
            owner.append(eta_pos.index(d))
            held.append(np.nan if free[sl.start] else coef0[sl.start])
            if free[sl.start]:
                coef_map[sl.start] = (len(cols), owner[-1], "linear")
    X = np.column_stack(cols)
    C = X.shape[1]
    mask = np.zeros((C, len(eta_pos)), dtype=bool)
    mask[np.arange(C), owner] = True
    fixed = np.full((C, len(eta_pos)), np.nan)
    fixed[np.arange(C), owner] = held
    return X, mask, (fixed if np.isfinite(fixed).any() else None), coef_map


def _to_focei_layout(s, res, D, P, S):
    """d(focei's outer parameters)/d(the core's parameters) at the estimates, (K, K'), or
    None when the core's information misses one of them.

    focei's layout: theta (D), Omega's free parameters (log variances of 1 x 1 blocks,
    log-Cholesky of larger ones), log residual SDs, free covariate coefficients. The core's:
    mu, beta, log variances and covariances, log a / log b. Omega's part is the inverse of
    d(log variances, covariances)/d(focei's parameters).
    """
    names = list(res.parameter_names)
    pos = {n: i for i, n in enumerate(names)}
    om_model = s["omega_model"]
    E = res.omega.shape[0]
    coef_free = np.flatnonzero(s["coef_free"])
    K = D + P + S + coef_free.size
    T = np.zeros((K, len(names)))
    try:
        eta_pos = [int(e) for e in s["eta_pos"]]
        held = s.get("x_fixed", np.zeros(K, dtype=bool))
        for d in range(D):
            if held[d]:
                continue            # a held typical value (value_fixed): no variance
            # the core names typical values by eta index (mu[e]); those without a random
            # effect by parameter index (theta[d])
            T[d, pos[f"mu[{eta_pos.index(d)}]" if d in eta_pos else f"theta[{d}]"]] = 1.0
        for k, (_, obs, which) in enumerate(s["err"]):
            T[D + P + k, pos[f"log {which}[{obs}]"]] = 1.0
        for k, j in enumerate(coef_free):
            col, e, kind = s["coef_map"][j]
            deriv = 1.0 if kind == "linear" else math.exp(res.beta[col - 1, e])
            T[D + P + S + k, pos[f"beta[{col - 1},{e}]"]] = deriv
        # Omega: psi (core) = log omega_ee, omega_ef; dpsi/dp from focei's parametrisation
        p_hat = om_model.pack(res.omega)
        _, J = om_model.unpack_jac(p_hat)
        rows = [(f"log omega2[{e}]", e, e) for e in range(E) if f"log omega2[{e}]" in pos]
        rows += [(n, int(n[6:-1].split(",")[0]), int(n[6:-1].split(",")[1]))
                 for n in names if n.startswith("omega[")]
        if len(rows) != P:
            return None
        A = np.array([[J[j, e, f] / (res.omega[e, e] if e == f else 1.0) for j in range(P)]
                      for _, e, f in rows])
        Ainv = np.linalg.inv(A)
        for r, (n, _, _) in enumerate(rows):
            T[D:D + P, pos[n]] = Ainv[:, r]
    except (KeyError, np.linalg.LinAlgError):
        return None
    return T
