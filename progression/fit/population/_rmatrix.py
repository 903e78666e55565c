"""The covariance step's R matrix (Hessian of a population OFV): NONMEM-style words when it
is not positive definite (:func:`r_matrix_diagnosis`) and the one failure the FOCE family
settles itself, a variance gone to zero (:func:`collapsed_variances`). Moved from
:mod:`._gradient`, which re-exports both."""

from __future__ import annotations

import math

import numpy as np

from ...errors import FitError

__all__ = ["r_matrix_diagnosis", "boundary_correlations", "collapsed_variances",
           "COLLAPSED_VARIANCE"]


def r_matrix_diagnosis(R, names, *, rel_tol: float = 1e-10, max_listed: int = 3) -> str:
    """NONMEM-style explanation of an R matrix (Hessian of the OFV) that is not positive
    definite: which eigenvalues fail, and which parameters their eigenvectors load on.

    Parameters
    ----------
    R : array_like (K, K)
        The R matrix on the estimation scale (symmetric).
    names : sequence of str (K,)
        Parameter names in the order of R (e.g. ``PopulationPart.covariance_names``).
    rel_tol : float
        Eigenvalues at most ``rel_tol * max|eigenvalue|`` count as zero (NONMEM's
        "algorithmically singular").
    max_listed : int
        Parameters named per failing direction (largest loadings first).

    Returns
    -------
    str
        "" when R is positive definite beyond ``rel_tol``; else one message: the failing
        eigenvalues (with the largest for scale), per failing direction the parameters with
        the largest loadings (squared eigenvector components, which sum to 1), and what to do
        (fix one of them, remove a random effect, or simplify the model). Example::

            R matrix not positive definite (NONMEM: R MATRIX ALGORITHMICALLY
            NON-POSITIVE-SEMIDEFINITE): 1 of 7 eigenvalues <= 0 (-0.0021; largest 3.1e+03);
            direction 1 (eigenvalue -0.0021): log omega^2 V 0.71, theta V 0.25: these
            parameters are not separately identified by the data; fix one of them
            (estimate = "fixed" or no eta) and refit
    """
    R = np.asarray(R, dtype=float)
    names = [str(n) for n in names]
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] != len(names):
        raise FitError(f"R matrix diagnosis: expected a square matrix of {len(names)} "
                       f"parameters, found shape {R.shape}")
    if not np.all(np.isfinite(R)):
        bad = sorted({names[k] for k in np.flatnonzero(~np.isfinite(R).all(axis=1))})
        return (f"R matrix has non-finite entries (rows {', '.join(bad)}): the objective is not "
                "finite near the estimates; check the bounds and starting values")
    w, U = np.linalg.eigh(0.5 * (R + R.T))
    top = float(np.max(np.abs(w))) if w.size else 0.0
    bad = np.flatnonzero(w <= rel_tol * top)
    if bad.size == 0:
        return ""
    kind = ("SINGULAR" if np.all(w[bad] > -rel_tol * top)
            else "NON-POSITIVE-SEMIDEFINITE")
    parts = [f"R matrix not positive definite (NONMEM: R MATRIX ALGORITHMICALLY {kind}): "
             f"{bad.size} of {w.size} eigenvalues <= {rel_tol:g} x the largest "
             f"({', '.join(f'{w[k]:.3g}' for k in bad)}; largest {top:.3g})"]
    for j, k in enumerate(bad, start=1):
        load = U[:, k] ** 2
        order = np.argsort(load)[::-1][:max_listed]
        listed = ", ".join(f"{names[q]} {load[q]:.2f}" for q in order if load[q] >= 0.05)
        parts.append(f"direction {j} (eigenvalue {w[k]:.3g}): {listed}")
    parts.append("these parameters are not separately identified by the data (or the fit "
                 "stopped short of a minimum); fix one of them (estimate = \"fixed\", or drop "
                 "its eta for an omega^2), or start from other values, and refit")
    return "; ".join(parts)


#: An Omega correlation at least this close to +-1 is at the boundary
#: (:func:`boundary_correlations`).
BOUNDARY_CORRELATION = 0.99


def boundary_correlations(omega, eta_names, *, limit: float = BOUNDARY_CORRELATION) -> str:
    """Words for random effects whose Omega correlation has gone to +-1.

    A block whose data support one random effect, not two, drives the correlation to the
    boundary of the parameter space (Theoph with a (CL, V) block and V's weight effect held:
    r = 0.999997), where the OFV has no minimum across the block's Cholesky factor and R is
    not positive definite. The R-matrix words then name that factor; these name the cause.

    Parameters
    ----------
    omega : array_like (E, E)
        The estimated Omega (estimation scale).
    eta_names : sequence of str (E,)
        The parameters carrying the random effects, in Omega's order.
    limit : float
        Correlations with ``|r| >= limit`` are reported.

    Returns
    -------
    str
        "" when no correlation reaches ``limit``; else one sentence naming each pair and its
        correlation, and what to do.
    """
    omega = np.asarray(omega, dtype=float)
    sd = np.sqrt(np.clip(np.diag(omega), 0.0, None))
    pairs = []
    for r in range(1, omega.shape[0]):
        for c in range(r):
            if sd[r] > 0.0 and sd[c] > 0.0:
                rho = omega[r, c] / (sd[r] * sd[c])
                if abs(rho) >= limit:
                    pairs.append(f"{eta_names[c]} and {eta_names[r]} ({rho:.6f})")
    if not pairs:
        return ""
    return ("the Omega correlation of " + ", ".join(pairs) + " is at the boundary +-1: the "
            "estimate lies on the edge of the parameter space (the data support one random "
            "effect there, not two), where the information does not describe a minimum; "
            "drop the covariance (separate random effects) or remove one of the two random "
            "effects, and refit")


#: A variance below this (on its estimation scale: a CV under ~3 % on the log scale) whose
#: log is where R is flat counts as collapsed to zero (:func:`collapsed_variances`).
COLLAPSED_VARIANCE = 1e-3


def collapsed_variances(R, names, x, *, rel_tol: float = 1e-10,
                        loading: float = 0.9) -> np.ndarray:
    """Positions of Omega variances that went to zero and alone make R singular.

    A random effect the data do not support drives its variance towards 0, where the OFV is
    flat in ``log omega^2`` (R singular in that direction; NONMEM reports the R matrix
    singular and gives no standard errors, and the modeller refits without that eta). When
    every failing direction of ``R`` loads (squared eigenvector component >= ``loading``) on
    one ``log omega^2 NAME`` whose variance ``exp(x)`` is below :data:`COLLAPSED_VARIANCE`,
    those positions are returned; otherwise none.

    Parameters
    ----------
    R : ndarray (K, K)
    names : sequence of str (K,)
        The outer parameters' names (``"log omega^2 NAME"`` for a diagonal variance).
    x : ndarray (K,)
        The outer parameters' values (estimation scale).

    Returns
    -------
    int ndarray
        Positions in ``R`` (empty when R is positive definite or fails elsewhere too).
    """
    w, U = np.linalg.eigh(0.5 * (np.asarray(R, float) + np.asarray(R, float).T))
    top = float(np.max(np.abs(w))) if w.size else 0.0
    bad = np.flatnonzero(w <= rel_tol * top)
    held = []
    for k in bad:
        q = int(np.argmax(U[:, k] ** 2))
        if not (U[q, k] ** 2 >= loading and str(names[q]).startswith("log omega^2 ")
                and math.exp(float(x[q])) < COLLAPSED_VARIANCE):
            return np.zeros(0, dtype=int)
        held.append(q)
    return np.array(sorted(set(held)), dtype=int)
