"""Conditional modes (eta-hat) of all subjects, solved in lockstep batches.

For each subject the inner problem is

    L_i(eta) = sum_j q_ij(eta) + eta' Omega^-1 eta

with ``q`` the observation terms of :mod:`._core` (``(y - f)^2 / V + log V`` observed, ``-2 log
Phi(z)`` censored). It is minimised by a damped Gauss-Newton (Levenberg-Marquardt) iteration
that needs only first derivatives of the model. Its curvature matrix is the exact Hessian of
L_i without the model-curvature term (``sum dq/df d2f/deta2``), or, where that is not
positive definite, the expected second derivative (the FOCE-I Hessian
``2 (Omega^-1 + sum g g'/V + 1/2 sum h h'/V^2)``, positive definite whatever the residuals);
either way every damped step is a descent direction (see :class:`InnerOptions`).

All still-active subjects of a batch advance together: each iteration makes exactly one
``predict`` call (for the active subjects' trial points), and that call returns both the
objective and the derivatives for the next step. Each subject has its own damping, its own
convergence test and its own status; a subject whose prediction fails is marked and never
stops the others (no exception leaves the solver for a failing subject).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ._core import (
    PopulationData,
    Residual,
    call_predict,
    check_omega,
    eta_columns_of,
    obs_terms,
)

__all__ = ["InnerOptions", "InnerResult", "conditional_modes", "CONVERGED", "MAX_ITER",
           "FAILED", "STALLED", "STATUS_NAMES"]

#: Subject status codes of :class:`InnerResult`.
CONVERGED, MAX_ITER, FAILED, STALLED = 0, 1, 2, 3
STATUS_NAMES = {CONVERGED: "converged", MAX_ITER: "maximum iterations",
                FAILED: "prediction failed at the start", STALLED: "stalled"}


@dataclass(frozen=True)
class InnerOptions:
    """Settings of the inner (eta-hat) solver.

    Parameters
    ----------
    max_iter : int
        Iterations per subject.
    xtol : float
        Converged when the undamped Gauss-Newton step is at most ``xtol * (1 + max|eta|)`` in
        every component (eta units: a step of 1e-10 changes a log-normal parameter by 1e-8 %).
    lambda0 : float
        Initial Levenberg damping, relative to the mean diagonal of the curvature matrix.
    lambda_max : float
        Damping at which a subject that cannot decrease L_i stops: converged if its
        Gauss-Newton step is below ``stall_xtol * (1 + max|eta|)`` (rounding limits the
        decrease near the optimum), else stalled.
    stall_xtol : float
    ftol_slack : float
        A trial point is accepted when ``L_trial <= L + ftol_slack * (1 + |L|)``.
    batch_size : int or None
        Subjects per lockstep batch (None: all at once).
    curvature : {"observed", "expected"}
        The matrix of the damped Gauss-Newton step. "expected": the Fisher information
        ``2 (Omega^-1 + sum g g'/V + 1/2 sum h h'/V^2)`` (always positive definite; converges
        linearly, slowly where residuals are large). "observed" (default): the exact Hessian of
        L_i without the term in d2f/deta2 (which needs no second derivatives of the model),
        falling back to the expected one per subject where it is not positive definite; on
        R's Theoph at NONMEM's initial estimates it halves the iterations (slowest subject 65
        -> 13). Both reach the same modes.
    exact_after : int or None
        After this many iterations a subject that has not converged switches to the exact
        Hessian of L_i (with the model-curvature term, second derivatives from
        ``predict_hessian`` or central differences of G: ``2 E`` extra predictions per
        iteration for that subject only), where it is positive definite. Without it the
        Gauss-Newton iteration converges linearly at a rate set by the neglected curvature,
        which exceeds 1 near some modes (large residuals, censored values near the limit):
        the damped iteration then crawls. None: never.
    """

    max_iter: int = 200
    xtol: float = 1e-10
    lambda0: float = 1e-3
    lambda_max: float = 1e10
    stall_xtol: float = 1e-6
    ftol_slack: float = 1e-13
    batch_size: int | None = None
    curvature: str = "observed"
    exact_after: int | None = 20

    def __post_init__(self):
        if self.curvature not in ("observed", "expected"):
            raise FitError(f"inner options: expected curvature 'observed' or 'expected', "
                           f"found {self.curvature!r}")


@dataclass
class InnerResult:
    """Conditional modes and what the solver found on the way.

    Attributes
    ----------
    eta : ndarray (N, E)
        Conditional modes (the last iterate for subjects that did not converge; the start for
        failed ones).
    status : ndarray of int (N,)
        :data:`CONVERGED`, :data:`MAX_ITER`, :data:`FAILED` or :data:`STALLED`.
    n_iter : ndarray of int (N,)
        Iterations (model evaluations after the first) per subject.
    objective : ndarray (N,)
        L_i(eta-hat) (NaN for failed subjects).
    f : ndarray (N, n)
        Predictions at eta-hat (IPRED).
    G : ndarray (N, n, D)
        df/dphi at eta-hat.
    info : ndarray (N, E, E)
        The expected second derivative of the data part at eta-hat (``-2 log L`` scale).
    V_fixed : ndarray (N, n) or None
        The residual variance held fixed (at eta = 0) without interaction.
    n_predict : int
        ``predict`` calls made (batched calls count once; the extra calls for exact Hessians,
        see :class:`InnerOptions` ``exact_after``, are not counted).
    """

    eta: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray
    objective: np.ndarray
    f: np.ndarray
    G: np.ndarray
    info: np.ndarray
    V_fixed: np.ndarray | None
    n_predict: int

    @property
    def converged(self) -> np.ndarray:
        """Bool (N,): which subjects converged."""
        return self.status == CONVERGED

    def failures(self) -> list[str]:
        """One line per subject that did not converge (subject position, status)."""
        return [f"subject {i}: {STATUS_NAMES[int(s)]} after {int(self.n_iter[i])} iterations"
                for i, s in enumerate(self.status) if s != CONVERGED]


def fixed_variance(model, data: PopulationData, mu, residual: Residual):
    """Residual variance at eta = 0 (FOCE without interaction) and the predictions there.

    Returns
    -------
    V0 : ndarray (N, n)
    f0 : ndarray (N, n)
    G0 : ndarray (N, n, D)
    ok : ndarray of bool (N,)
    """
    mu = np.asarray(mu, dtype=float)
    N, D = mu.shape
    f0, G0, ok = call_predict(model, mu, np.arange(N), data.y.shape[1], D)
    with np.errstate(all="ignore"):
        V0 = np.where(data.mask, residual.variance(np.where(data.mask, f0, 0.0),
                                                   data.observable), 1.0)
    ok = ok & np.all(np.isfinite(V0) & (V0 > 0), axis=1)
    return V0, f0, G0, ok


def conditional_modes(model, data: PopulationData, mu, omega, residual: Residual, *,
                      eta_columns=None, eta0=None, interaction: bool = True, V_fixed=None,
                      options: InnerOptions | None = None) -> InnerResult:
    """Minimise L_i(eta) for every subject.

    Parameters
    ----------
    model : IndividualModel or callable
        ``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))``.
    data : PopulationData
        N subjects, padded to n observations.
    mu : array_like (N, D)
        Typical individual parameters (estimation scale) with covariate effects.
    omega : array_like (E, E)
        Covariance of the random effects.
    residual : Residual
    eta_columns : sequence of int, optional
        Which of the D parameters carry the E random effects (default all).
    eta0 : array_like (N, E), optional
        Warm start (default zeros).
    interaction : bool
        True: V follows eta (FOCE-I, Laplace). False: V is held at its value at eta = 0
        (FOCE), given as ``V_fixed`` or computed here with one extra ``predict`` call.
    V_fixed : array_like (N, n), optional
    options : InnerOptions, optional

    Returns
    -------
    InnerResult
    """
    opt = options or InnerOptions()
    residual.check_observables(data)
    mu = np.asarray(mu, dtype=float)
    if mu.ndim != 2 or mu.shape[0] != data.n_subjects:
        raise FitError(f"conditional modes: expected typical parameters of shape "
                       f"({data.n_subjects}, D), found {mu.shape}")
    N, D = mu.shape
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    _, Oinv, _ = check_omega(omega, E)
    n = data.y.shape[1]
    if eta0 is None:
        eta = np.zeros((N, E))
    else:
        eta = np.array(eta0, dtype=float)
        if eta.shape != (N, E) or not np.all(np.isfinite(eta)):
            raise FitError(f"conditional modes: expected a finite warm start of shape {(N, E)}, "
                           f"found {eta.shape}")
    n_predict = 0
    if not interaction and V_fixed is None:
        V_fixed, _, _, _ = fixed_variance(model, data, mu, residual)
        n_predict += 1
    out = InnerResult(eta=eta.copy(), status=np.full(N, FAILED, dtype=np.int8),
                      n_iter=np.zeros(N, dtype=np.intp), objective=np.full(N, np.nan),
                      f=np.full((N, n), np.nan), G=np.full((N, n, D), np.nan),
                      info=np.full((N, E, E), np.nan),
                      V_fixed=None if V_fixed is None else np.asarray(V_fixed, dtype=float),
                      n_predict=0)
    size = N if not opt.batch_size else max(1, int(opt.batch_size))
    for start in range(0, N, size):
        idx = np.arange(start, min(N, start + size))
        n_predict += _solve_batch(model, data, idx, mu, cols, Oinv, residual, out, opt)
    out.n_predict = n_predict
    return out


def _newton_steps(H, g) -> np.ndarray:
    """``H^-1 g`` per subject, (R, E) from (R, E, E) and (R, E).

    A singular ``H`` (a direction the data do not see with a vanishing prior term, e.g. an
    Omega probed at a huge variance) gets the minimum-norm least-squares step instead of an
    exception through the outer optimiser; a batch without one is solved as one call (same
    numbers as before).
    """
    try:
        return np.linalg.solve(H, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(h, v, rcond=None)[0] for h, v in zip(H, g,
                                                                             strict=True)])


def _solve_batch(model, data, idx, mu, cols, Oinv, residual, out, opt) -> int:
    """Lockstep Levenberg-Marquardt for the subjects ``idx``; fills ``out`` in place."""
    D = mu.shape[1]
    E = cols.size
    n = data.y.shape[1]
    Vf = out.V_fixed

    def evaluate(rows, eta_r, exact=None):
        phi = mu[rows].copy()
        phi[:, cols] += eta_r
        f, G, ok = call_predict(model, phi, rows, n, D)
        t = obs_terms(data.rows(rows), f, G[..., cols], residual,
                      V_fixed=None if Vf is None else Vf[rows],
                      want_hess=opt.curvature == "observed")
        prior = eta_r @ Oinv
        val = t.value + np.einsum("re,re->r", prior, eta_r)
        grad = t.grad + 2.0 * prior
        H = t.info + 2.0 * Oinv
        Hx = None
        if exact is not None and np.any(exact & ok):
            # the exact Hessian for the subjects that asked for it (see exact_after)
            from ._objective import second_derivatives  # (_objective imports this module)

            ex = np.flatnonzero(exact & ok)
            d2f, _ = second_derivatives(model, phi[ex], rows[ex], cols, n)
            tx = obs_terms(data.rows(rows[ex]), f[ex], G[ex][..., cols], residual,
                           V_fixed=None if Vf is None else Vf[rows[ex]], d2f=d2f,
                           want_hess=True)
            Hx = (ex, tx.hess + 2.0 * Oinv)
        if opt.curvature == "observed":
            # exact Hessian without the model-curvature term sum dq/df d2f; where it is not
            # positive definite (large residuals of the wrong sign) keep the expected one
            Ho = t.hess + 2.0 * Oinv
            finite = np.isfinite(Ho).all(axis=(1, 2))
            Ho = np.where(finite[:, None, None], Ho, np.eye(cols.size))  # failed subjects
            with np.errstate(all="ignore"):
                pd = finite & np.all(np.linalg.eigvalsh(Ho) > 1e-12 * np.abs(
                    np.trace(H, axis1=1, axis2=2))[:, None], axis=1)
            H = np.where(pd[:, None, None], Ho, H)
        if Hx is not None:
            ex, He = Hx
            with np.errstate(all="ignore"):
                fin = np.isfinite(He).all(axis=(1, 2))
                He = np.where(fin[:, None, None], He, np.eye(cols.size))
                pdx = fin & np.all(np.linalg.eigvalsh(He) > 1e-12 * np.abs(
                    np.trace(H[ex], axis1=1, axis2=2))[:, None], axis=1)
            H[ex[pdx]] = He[pdx]
        ok = ok & np.isfinite(val) & np.isfinite(grad).all(axis=1) & np.isfinite(
            H).all(axis=(1, 2))
        return f, G, t.info, val, grad, H, ok

    R = idx.size
    eta = out.eta[idx].copy()
    f, G, info, val, grad, H, ok = evaluate(idx, eta)
    calls = 1
    status = np.where(ok, MAX_ITER, FAILED).astype(np.int8)
    n_iter = np.zeros(R, dtype=np.intp)
    if E == 0:
        status[ok] = CONVERGED
        active = np.zeros(R, dtype=bool)
    else:
        active = ok.copy()
    lam = np.full(R, opt.lambda0)
    eye = np.eye(E)
    for _ in range(opt.max_iter):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        gn = _newton_steps(H[a], grad[a])
        scale = 1.0 + np.abs(eta[a]).max(axis=1)
        done = np.abs(gn).max(axis=1) <= opt.xtol * scale
        status[a[done]] = CONVERGED
        active[a[done]] = False
        a = a[~done]
        if a.size == 0:
            break
        # Levenberg damping scaled by the curvature so lambda is dimensionless
        damp = lam[a] * np.trace(H[a], axis1=1, axis2=2) / E
        step = _newton_steps(H[a] + damp[:, None, None] * eye, grad[a])
        trial = eta[a] - step
        exact = None if opt.exact_after is None else n_iter[a] + 1 >= opt.exact_after
        f_t, G_t, info_t, val_t, grad_t, H_t, ok_t = evaluate(idx[a], trial, exact)
        calls += 1
        n_iter[a] += 1
        # accept ties within rounding: near the mode the decrease of a Gauss-Newton step
        # (~ step' H step) falls below the rounding of L, and refusing equal values would
        # stop the iteration short of xtol
        acc = ok_t & (val_t <= val[a] + opt.ftol_slack * (1.0 + np.abs(val[a])))
        ra = a[acc]
        eta[ra], f[ra], G[ra], info[ra] = trial[acc], f_t[acc], G_t[acc], info_t[acc]
        val[ra], grad[ra], H[ra] = val_t[acc], grad_t[acc], H_t[acc]
        lam[ra] = np.maximum(lam[ra] / 10.0, 1e-12)
        rj = a[~acc]
        lam[rj] *= 10.0
        stuck = rj[lam[rj] > opt.lambda_max]
        if stuck.size:
            gn_s = _newton_steps(H[stuck], grad[stuck])
            small = np.abs(gn_s).max(axis=1) <= opt.stall_xtol * (
                1.0 + np.abs(eta[stuck]).max(axis=1))
            status[stuck] = np.where(small, CONVERGED, STALLED)
            active[stuck] = False
    out.eta[idx] = eta
    out.status[idx] = status
    out.n_iter[idx] = n_iter
    good = status != FAILED
    out.objective[idx] = np.where(good, val, np.nan)
    out.f[idx] = f
    out.G[idx] = G
    out.info[idx] = info
    return calls
