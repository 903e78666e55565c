"""NONMEM objective functions (FO, FOCE, FOCE-I, Laplace) per subject and in total.

All values are ``-2 log L`` **without** the constant ``N_obs log(2 pi)``, NONMEM's (and
nlmixr2's OBJF) convention. With ``L_i(eta)`` the inner objective of :mod:`._inner`,
``eta-hat`` its minimiser, ``g = df/deta``, ``h = dV/deta = V'(f) g``:

- ``fo``: Wang (2007) linearised at eta = 0: ``f~ = f(0)``, ``C = g0 Omega g0' + diag(V(0))``,
  ``OFV_i = log|C| + (y - f~)' C^-1 (y - f~)``.
- ``foce`` (no interaction): V is held at its eta = 0 value V0 both in the inner problem and
  in ``C = g Omega g' + diag(V0)``, with ``f~ = f(eta-hat) - g eta-hat`` and g at eta-hat
  (Wang 2007). At the exact mode this equals ``L_i(eta-hat) + log|Omega| +
  log|Omega^-1 + g' V0^-1 g|`` (matrix determinant lemma); the latter form is used for the
  subjects with censored values, with the censoring information of :func:`._core.obs_terms`.
- ``focei``: ``OFV_i = L_i(eta-hat) + log|Omega| + log|Omega^-1 + sum g g'/V +
  1/2 sum h h'/V^2|`` with V at eta-hat (the 1/2 h h'/V^2 interaction term included); censored
  values add the information of the censoring indicator.
- ``laplace``: as ``focei`` with the exact Hessian: ``log|1/2 d2L_i/deta2|`` at eta-hat,
  using second derivatives d2f/dphi2 from ``model.predict_hessian`` when the model has one,
  otherwise central differences of G (step ``fd_step`` on the estimation scale; error
  O(fd_step^2) in d2f, about 1e-8 relative for the default).

Their exact gradients with respect to mu, Omega and the residual SDs (censored values
included, except for ``fo``) are :func:`._gradient.population_gradient`.

Reference: Wang Y., Derivation of various NONMEM estimation methods, J Pharmacokinet
Pharmacodyn 2007;34:575-593.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError
from ._core import PopulationData, Residual, call_predict, check_omega, eta_columns_of, obs_terms
from ._inner import FAILED, InnerOptions, InnerResult, conditional_modes, fixed_variance

__all__ = ["METHODS", "ObjectiveResult", "subject_objectives", "objective",
           "linearised_ofv", "second_derivatives", "HESSIAN_NOT_PD"]

#: Estimation methods of :func:`subject_objectives`.
METHODS = ("fo", "foce", "focei", "laplace")
#: Extra subject status: the Laplace Hessian at eta-hat is not positive definite.
HESSIAN_NOT_PD = 4


@dataclass
class ObjectiveResult:
    """Objective of one method at given (mu, Omega, residual).

    Attributes
    ----------
    method : str
    ofv : float
        Sum of ``ofv_i`` (inf when any subject failed).
    ofv_i : ndarray (N,)
        Per-subject contributions (inf for failed subjects).
    eta : ndarray (N, E)
        Conditional modes (zeros for ``fo``).
    status : ndarray of int (N,)
        Inner status (:mod:`._inner` codes) or :data:`HESSIAN_NOT_PD`.
    inner : InnerResult or None
        The inner solution (None for ``fo``); its ``eta`` is the warm start of the next call.
    hessian : str
        How second derivatives were obtained for ``laplace`` ("analytic", "finite
        differences"), else "".
    """

    method: str
    ofv: float
    ofv_i: np.ndarray
    eta: np.ndarray
    status: np.ndarray
    inner: InnerResult | None
    hessian: str = ""

    @property
    def ok(self) -> bool:
        """Whether every subject's contribution is finite."""
        return bool(np.isfinite(self.ofv))


def linearised_ofv(data: PopulationData, f, g, eta, omega, V):
    """Wang's linearised objective ``log|C| + r~' C^-1 r~`` for a batch.

    Parameters
    ----------
    data : PopulationData
        R subjects.
    f : ndarray (R, n)
        Predictions at ``eta``.
    g : ndarray (R, n, E)
        df/deta at ``eta``.
    eta : ndarray (R, E)
        Linearisation point (zeros for FO).
    omega : ndarray (E, E)
    V : ndarray (R, n)
        Residual variances on the diagonal of C.

    Returns
    -------
    ofv : ndarray (R,)
        NaN where C is not positive definite.
    """
    m = data.mask
    gz = np.where(m[..., None], g, 0.0)
    r = np.where(m, data.y - f + np.einsum("rje,re->rj", gz, eta), 0.0)
    C = np.einsum("rje,ek,rlk->rjl", gz, omega, gz)
    C = C + np.einsum("rj,jl->rjl", np.where(m, V, 1.0), np.eye(m.shape[1]))
    out = np.full(m.shape[0], np.nan)
    for k in range(m.shape[0]):
        try:
            L = np.linalg.cholesky(C[k])
        except np.linalg.LinAlgError:
            continue
        w = np.linalg.solve(L, r[k])
        out[k] = 2.0 * np.log(np.diag(L)).sum() + w @ w
    return out


def second_derivatives(model, phi, index, cols, n, fd_step=1e-4):
    """d2f/deta2 (R, n, E, E) at ``phi``, analytic if the model provides it.

    Returns
    -------
    d2f : ndarray (R, n, E, E)
    how : str
        "analytic" or "finite differences".
    """
    R, D = phi.shape
    if hasattr(model, "predict_hessian"):
        Hf = np.asarray(model.predict_hessian(phi, index), dtype=float)
        if Hf.shape != (R, n, D, D):
            raise FitError(f"individual model {type(model).__name__}: expected second "
                           f"derivatives {(R, n, D, D)}, found {Hf.shape}")
        return Hf[:, :, cols][:, :, :, cols], "analytic"
    E = cols.size
    d2f = np.zeros((R, n, E, E))
    for k, c in enumerate(cols):
        # central differences of the exact first derivatives: O(step^2) error, 2E calls
        up, dn = phi.copy(), phi.copy()
        up[:, c] += fd_step
        dn[:, c] -= fd_step
        _, Gu, _ = call_predict(model, up, index, n, D)
        _, Gd, _ = call_predict(model, dn, index, n, D)
        d2f[:, :, :, k] = (Gu[..., cols] - Gd[..., cols]) / (2.0 * fd_step)
    return 0.5 * (d2f + np.swapaxes(d2f, 2, 3)), "finite differences"


def _logdet_pd(M):
    """log det of each (E, E) matrix; NaN where not positive definite."""
    out = np.full(M.shape[0], np.nan)
    for k in range(M.shape[0]):
        try:
            L = np.linalg.cholesky(M[k])
        except np.linalg.LinAlgError:
            continue
        out[k] = 2.0 * np.log(np.diag(L)).sum()
    return out


def subject_objectives(method: str, model, data: PopulationData, mu, omega,
                       residual: Residual, *, eta_columns=None, eta0=None,
                       inner_options: InnerOptions | None = None, fd_step: float = 1e-4
                       ) -> ObjectiveResult:
    """Per-subject NONMEM objective of ``method`` at given parameters.

    Parameters
    ----------
    method : {"fo", "foce", "focei", "laplace"}
    model : IndividualModel or callable
        ``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))``; optional
        ``predict_hessian`` for ``laplace``.
    data : PopulationData
        N subjects.
    mu : array_like (N, D)
        Typical individual parameters (estimation scale, covariates applied).
    omega : array_like (E, E)
    residual : Residual
    eta_columns : sequence of int, optional
        Parameters carrying the E random effects (default all D).
    eta0 : array_like (N, E), optional
        Warm start of the inner problems.
    inner_options : InnerOptions, optional
    fd_step : float
        Step of the finite differences of G for ``laplace`` without ``predict_hessian``.

    Returns
    -------
    ObjectiveResult

    Raises
    ------
    FitError
        Unknown method, bad Omega, or FO with censored values (the linearisation at eta = 0
        has no M3 form).
    """
    if method not in METHODS:
        raise FitError(f"population objective: expected a method in {list(METHODS)}, found "
                       f"{method!r}")
    residual.check_observables(data)
    from ._gradient import check_student  # (_gradient imports this module)

    check_student(method, residual, data)
    mu = np.asarray(mu, dtype=float)
    N, D = mu.shape
    if data.n_subjects != N:
        raise FitError(f"population objective: expected typical parameters for {data.n_subjects}"
                       f" subjects, found {N} rows")
    cols = eta_columns_of(D, eta_columns)
    E = cols.size
    om, Oinv, logdet_om = check_omega(omega, E)
    n = data.y.shape[1]
    cens_rows = np.any(data.mask & (data.cens != 0), axis=1)
    hess_how = ""
    inner = None
    if method == "fo":
        if cens_rows.any():
            i = int(np.flatnonzero(cens_rows)[0])
            raise FitError(f"population objective: method 'fo' cannot use censored values "
                           f"(subject {i} has some); use focei or laplace")
        V0, f0, G0, ok = fixed_variance(model, data, mu, residual)
        ofv_i = linearised_ofv(data, f0, G0[..., cols], np.zeros((N, E)), om, V0)
        status = np.where(ok & np.isfinite(ofv_i), 0, FAILED).astype(np.int8)
        eta = np.zeros((N, E))
    elif method == "foce":
        V0, _, _, ok0 = fixed_variance(model, data, mu, residual)
        inner = conditional_modes(model, data, mu, om, residual, eta_columns=cols, eta0=eta0,
                                  interaction=False, V_fixed=V0, options=inner_options)
        eta = inner.eta
        status = np.where(ok0, inner.status, FAILED).astype(np.int8)
        lin = linearised_ofv(data, inner.f, inner.G[..., cols], eta, om, V0)
        hform = inner.objective + logdet_om + _logdet_pd(0.5 * inner.info + Oinv)
        ofv_i = np.where(cens_rows, hform, lin)
    else:
        inner = conditional_modes(model, data, mu, om, residual, eta_columns=cols, eta0=eta0,
                                  interaction=True, options=inner_options)
        eta = inner.eta
        status = inner.status.copy()
        if method == "focei":
            ofv_i = inner.objective + logdet_om + _logdet_pd(0.5 * inner.info + Oinv)
        else:
            good = np.flatnonzero(status != FAILED)
            ofv_i = np.full(N, np.nan)
            if good.size:
                phi = mu[good].copy()
                phi[:, cols] += eta[good]
                d2f, hess_how = second_derivatives(model, phi, good, cols, n, fd_step)
                t = obs_terms(data.rows(good), inner.f[good], inner.G[good][..., cols],
                              residual, d2f=d2f, want_hess=True)
                ld = _logdet_pd(0.5 * t.hess + Oinv)
                status[good[~np.isfinite(ld)]] = HESSIAN_NOT_PD
                ofv_i[good] = inner.objective[good] + logdet_om + ld
    ofv_i = np.where((status == FAILED) | ~np.isfinite(ofv_i), np.inf, ofv_i)
    status = np.where((status != FAILED) & ~np.isfinite(ofv_i) & (status != HESSIAN_NOT_PD),
                      FAILED, status).astype(np.int8)
    return ObjectiveResult(method=method, ofv=float(ofv_i.sum()), ofv_i=ofv_i, eta=eta,
                           status=status, inner=inner, hessian=hess_how)


def objective(method: str, model, data: PopulationData, mu, omega, residual: Residual,
              **kwargs) -> float:
    """Total objective (sum over subjects) of :func:`subject_objectives`; inf on failure."""
    return subject_objectives(method, model, data, mu, omega, residual, **kwargs).ofv
