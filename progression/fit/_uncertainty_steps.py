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
from .transforms import near_bound
from .uncertainty import covariance_from_info, identifiability_flags, wald

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
    blocks, corr, warnings = [], [], []
    failed_ids, undetermined = [], {}
    for i in range(m):
        cov, msg = covariance_from_info(info[i], [names[c] for c in cols])
        if msg:
            failed_ids.append(designs[i].id)
            for j, c in enumerate(cols):
                if not np.isfinite(cov[j, j]):
                    undetermined[names[c]] = undetermined.get(names[c], 0) + 1
        se_x = np.sqrt(np.maximum(np.diag(cov), 0.0))
        se_x[~np.isfinite(np.diag(cov))] = np.nan
        se, a, b = wald(x[i], se_x, sc, lo, hi, conf)
        se_all[i, cols] = se
        ci[i, cols, 0], ci[i, cols, 1] = a, b
        with np.errstate(invalid="ignore", divide="ignore"):
            corr.append(cov / np.outer(se_x, se_x))
        blocks.append((np.arange(i * D, (i + 1) * D), cov))
    if failed_ids:
        which = ", ".join(f"{k} in {v}" for k, v in undetermined.items())
        warnings.append(
            f"covariance step failed for {len(failed_ids)}/{m} subjects "
            f"({few(failed_ids)}): information matrix singular or not finite; "
            f"undetermined: {which or 'all'}; those standard errors are NaN")
    warnings += _flag_per_subject(problem, theta, x, blocks, corr, cols, conf)
    return CovarianceStep(se_all, ci, blocks, warnings)


def _flag_per_subject(problem, theta, x, blocks, corr, cols, conf) -> list[str]:
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
    huge_count = np.zeros(cols.size, dtype=int)
    corr_pairs: dict[tuple, int] = {}
    for i in range(m):
        d = np.diag(blocks[i][1])
        se_x = np.sqrt(np.maximum(d, 0.0))
        se_x[~np.isfinite(d)] = np.nan
        huge, partners = identifiability_flags(x[i], se_x, corr[i], sc, lo, hi, conf)
        huge_count += huge
        for j, ps in enumerate(partners):
            for k in ps:
                if j < k:
                    corr_pairs[(j, k)] = corr_pairs.get((j, k), 0) + 1
    for j, n in enumerate(huge_count):
        if n:
            out.append(f"{names[j]}: practically non-identifiable in {n}/{m} subjects (Wald "
                       f"{100 * conf:g}% interval wider than its bounds, or no standard error)")
    for (j, k), n in sorted(corr_pairs.items()):
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
