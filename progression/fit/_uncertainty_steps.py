"""Covariance steps of the estimators: standard errors, Wald intervals and identifiability
warnings from the information at the estimates.

* :func:`per_subject_covariance`: one block per subject (individual fits);
* :func:`joint_covariance`: one block over shared and per-subject entries (pooled fits), the
  information summed over subjects entry by entry.

Both return a :class:`CovarianceStep`; the estimators put it into their
:class:`~progression.fit.parts.Uncertainty`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._multistart import few
from .transforms import internal_bounds, near_bound
from .uncertainty import covariance_from_info, identifiability_flags, wald, z_value

__all__ = ["CovarianceStep", "per_subject_covariance", "joint_covariance"]


@dataclass(frozen=True)
class CovarianceStep:
    """Outcome of a covariance step.

    Attributes
    ----------
    se : ndarray (m, Q)
        Natural-scale standard errors (NaN where unknown or not estimated).
    interval : ndarray (m, Q, 2)
        Wald intervals (natural scale).
    blocks : list of (int ndarray, ndarray)
        Entries of the estimation-scale vector and their covariance.
    warnings : list of str
    """

    se: np.ndarray
    interval: np.ndarray
    blocks: list
    warnings: list


def per_subject_covariance(problem, designs, theta, x, info, cols, conf) -> CovarianceStep:
    """Covariance of each subject's estimates from its information (individual fits).

    Parameters
    ----------
    problem : Problem
    designs : list of Design
    theta : ndarray (m, Q)
    x : ndarray (m, D)
        Estimates on the estimation scale; entry ``i * D + j`` of the fit's vector.
    info : ndarray (m, D, D)
    cols : int ndarray (D,)
    conf : float
    """
    names = problem.names
    m, Q = theta.shape
    D = cols.size
    se_all = np.full((m, Q), np.nan)
    ci = np.full((m, Q, 2), np.nan)
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    warnings = []
    failed_ids, undetermined = [], {}
    # Every subject's block at once (a stacked eigendecomposition, the same LAPACK call per
    # matrix as covariance_from_info makes); the subjects whose information is not finite or
    # singular go through covariance_from_info one by one for its NaN pattern and message.
    cov_all, regular = _stacked_covariance(np.asarray(info, dtype=float).reshape(m, D, D))
    for i in np.nonzero(~regular)[0]:
        cov, msg = covariance_from_info(info[i], [names[c] for c in cols])
        cov_all[i] = cov
        if msg:
            failed_ids.append(designs[i].id)
            for j, c in enumerate(cols):
                if not np.isfinite(cov[j, j]):
                    undetermined[names[c]] = undetermined.get(names[c], 0) + 1
    d = np.diagonal(cov_all, axis1=1, axis2=2)                     # (m, D)
    se_x = np.sqrt(np.maximum(d, 0.0))
    se_x[~np.isfinite(d)] = np.nan
    if m:
        se, a, b = wald(x, se_x, sc, lo, hi, conf)
        se_all[:, cols] = se
        ci[:, cols, 0], ci[:, cols, 1] = a, b
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov_all / (se_x[:, :, None] * se_x[:, None, :])
    blocks = [(np.arange(i * D, (i + 1) * D), cov_all[i]) for i in range(m)]
    if failed_ids:
        which = ", ".join(f"{k} in {v}" for k, v in undetermined.items())
        warnings.append(
            f"covariance step failed for {len(failed_ids)}/{m} subjects "
            f"({few(failed_ids)}): information matrix singular or not finite; "
            f"undetermined: {which or 'all'}; those standard errors are NaN")
    warnings += _flag_per_subject(problem, theta, se_x, corr, cols, conf)
    return CovarianceStep(se_all, ci, blocks, warnings)


def _stacked_covariance(info):
    """:func:`~progression.fit.uncertainty.covariance_from_info` for a stack (m, D, D) of
    regular matrices: (cov (m, D, D), regular (m,) bool); the entries of irregular ones (not
    finite, a zero diagonal entry or an eigenvalue at or below 1e-10 of the largest) are
    left NaN for the caller."""
    m, D = info.shape[:2]
    cov = np.full((m, D, D), np.nan)
    regular = np.zeros(m, dtype=bool)
    if D == 0:
        return np.zeros((m, 0, 0)), np.ones(m, dtype=bool)
    ok = np.all(np.isfinite(info), axis=(1, 2))
    if not ok.any():
        return cov, regular
    A = info[ok]
    A = 0.5 * (A + np.swapaxes(A, 1, 2))
    scale = np.sqrt(np.maximum(np.diagonal(A, axis1=1, axis2=2), 0.0))    # (r, D)
    zero = (scale <= 0).any(axis=1)
    s = np.where(scale <= 0, 1.0, scale)
    R = A / s[:, :, None] / s[:, None, :]
    w, V = np.linalg.eigh(R)
    tol = 1e-10 * np.maximum(w.max(axis=1), 1e-300)
    good = ~zero & ~(w <= tol[:, None]).any(axis=1)
    with np.errstate(all="ignore"):
        C = (V / w[:, None, :]) @ np.swapaxes(V, 1, 2) / s[:, :, None] / s[:, None, :]
    C = 0.5 * (C + np.swapaxes(C, 1, 2))
    idx = np.nonzero(ok)[0]
    cov[idx[good]] = C[good]
    regular[idx[good]] = True
    return cov, regular


def _flag_per_subject(problem, theta, se_x, corr, cols, conf) -> list[str]:
    """Warnings: estimates at a bound, practically non-identifiable entries (Wald interval
    wider than the range, or no standard error) and |correlation| > 0.99 pairs, counted over
    subjects; ``se_x`` (m, D), ``corr`` (m, D, D) on the estimation scale."""
    names = [problem.names[c] for c in cols]
    m = theta.shape[0]
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    out = []
    # measured on the estimation scale: 1e-6 of [1e-5, 1e5] on the natural scale is 0.1
    at_bound = near_bound(theta[:, cols], sc, lo, hi)
    for j in range(cols.size):
        n = int(at_bound[:, j].sum())
        if n:
            out.append(f"{names[j]}: estimate at a bound in {n}/{m} subjects "
                       f"([{lo[j]:g}, {hi[j]:g}]); its uncertainty there is one-sided")
    # identifiability_flags for every subject at once (the same tests, element-wise)
    z = z_value(conf)
    lo_x, hi_x = internal_bounds(sc, lo, hi)
    width = hi_x - lo_x
    with np.errstate(invalid="ignore"):
        huge = np.where(np.isfinite(width), 2 * z * se_x > width, se_x > 2.0)
        huge |= ~np.isfinite(se_x)
        strong = np.isfinite(corr) & (np.abs(corr) > 0.99)
    huge_count = huge.sum(axis=0)
    for j, n in enumerate(huge_count):
        if n:
            out.append(f"{names[j]}: practically non-identifiable in {n}/{m} subjects (Wald "
                       f"{100 * conf:g}% interval wider than its bounds, or no standard error)")
    D = cols.size
    for j in range(D):
        for k in range(j + 1, D):
            n = int(strong[:, j, k].sum())
            if n:
                out.append(f"{names[j]} and {names[k]}: |correlation| > 0.99 in {n}/{m} "
                           f"subjects (only a combination of them is determined)")
    return out


def joint_covariance(problem, designs, theta, x_hat, x_cols, x_rows, info, cols,
                     conf) -> CovarianceStep:
    """One covariance of every estimated entry (shared ones first, then each subject's).

    Parameters
    ----------
    info : ndarray (m, C, C)
        Per subject, the information with respect to ``cols`` (shared, then per-subject
        columns); summed into the joint information entry by entry.
    """
    m, Q = theta.shape
    K = x_cols.size
    pos = {c: k for k, c in enumerate(cols)}
    total = np.zeros((K, K))
    ns = problem.shared_cols.size
    D_s = problem.subject_cols.size
    for i in range(m):
        # entries of subject i: the shared ones and its own
        ent = list(range(ns)) + list(range(ns + i * D_s, ns + (i + 1) * D_s))
        loc = [pos[x_cols[e]] for e in ent]
        total[np.ix_(ent, ent)] += info[i][np.ix_(loc, loc)]
    names = [problem.names[c] if x_rows[k].size > 1 else
             f"{problem.names[c]}[{designs[int(x_rows[k][0])].id}]"
             for k, c in enumerate(x_cols)]
    warnings = []
    cov, msg = covariance_from_info(total, names)
    if msg:
        warnings.append(f"covariance step failed: {msg}; those standard errors are NaN")
    se_x = np.sqrt(np.maximum(np.diag(cov), 0.0))
    se_x[~np.isfinite(np.diag(cov))] = np.nan
    sc, lo, hi = problem.scale[x_cols], problem.lower[x_cols], problem.upper[x_cols]
    se, a, b = wald(x_hat, se_x, sc, lo, hi, conf)
    se_all = np.full((m, Q), np.nan)
    ci = np.full((m, Q, 2), np.nan)
    for k, c in enumerate(x_cols):
        se_all[x_rows[k], c] = se[k]
        ci[x_rows[k], c, 0], ci[x_rows[k], c, 1] = a[k], b[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(se_x, se_x)
    huge, partners = identifiability_flags(x_hat, se_x, corr, sc, lo, hi, conf)
    flagged_subject: dict[str, int] = {}
    for k in range(K):
        if x_rows[k].size > 1:
            if huge[k]:
                warnings.append(f"{names[k]}: practically non-identifiable (Wald "
                                f"interval wider than its bounds, or no standard error)")
            for j in partners[k]:
                if j > k or x_rows[j].size == 1:
                    warnings.append(f"{names[k]} and {names[j]}: |correlation| > 0.99")
        elif huge[k]:
            base = problem.names[x_cols[k]]
            flagged_subject[base] = flagged_subject.get(base, 0) + 1
    for base, n in flagged_subject.items():
        warnings.append(f"{base}: practically non-identifiable in {n}/{m} subjects")
    return CovarianceStep(se_all, ci, [(np.arange(K), cov)], warnings)
