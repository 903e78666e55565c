"""Data, residual-variance model and per-observation likelihood terms of a population problem.

Everything here is model-agnostic: the structural model enters only through its predictions
``f`` and their derivatives with respect to the individual parameters (see
:class:`IndividualModel`). Subjects are stored padded to a common number of observations so
that a batch of subjects is one rectangular array and every operation runs for all of them at
once (the "lockstep" of the inner problems).

Notation (NONMEM's): subject ``i`` has ``n_i`` observations ``y_ij``; individual parameters on
the estimation scale ``phi_i = mu_i + A eta_i`` with ``mu_i`` (D,) the typical values with
covariate effects (computed by the caller from theta and covariates), ``A`` (D, E) the 0/1
matrix selecting which parameters carry a random effect (``eta_columns``), and
``eta_i ~ N(0, Omega)``, Omega (E, E). On the log scale (log-normal parameters) this is
``p = tv * exp(eta)``.

Residual variance (NONMEM's ``Y = F + F*EPS(1) + EPS(2)`` with SIGMA diagonal):
``V = a^2 + b^2 f^2`` where ``a`` is the additive SD (``SIGMA(2,2) = a^2``) and ``b`` the
proportional SD (``SIGMA(1,1) = b^2``). Additive is ``b = 0``, proportional ``a = 0``. This is
the variance-sum "combined" convention (nlmixr2 ``combined2``), not ``(a + b f)^2``. A
log-normal error is the additive model on log-transformed data and predictions (the individual
model returns ``log f`` then).

Per observation, on the ``-2 log L`` scale without ``log(2 pi)``:

- observed: ``q = (y - f)^2 / V + log V``;
- censored (M3, Beal 2001): ``q = -2 log Phi(z)``, ``z = (limit - f) / sqrt(V)`` below a
  limit (``cens = 1``) and ``z = (f - limit) / sqrt(V)`` above one (``cens = -1``); the
  ``cens`` coding of :mod:`progression.fit.errormodels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.special import log_ndtr

from ...errors import FitError

__all__ = ["PopulationData", "Residual", "IndividualModel", "call_predict", "ObsTerms",
           "obs_terms", "eta_columns_of", "check_omega"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class PopulationData:
    """Observations of N subjects, padded to ``n`` = the largest number per subject.

    Attributes
    ----------
    y : ndarray (N, n)
        Observed values (0 in padding).
    mask : ndarray of bool (N, n)
        Which entries are real observations.
    cens : ndarray of int8 (N, n)
        0 observed, 1 censored below ``limit``, -1 censored above it.
    limit : ndarray (N, n)
        Censoring limits (NaN where not censored).
    observable : ndarray of int (N, n)
        Index of each observation's residual-error model in :class:`Residual` (0 when there is
        one observable).
    """

    y: np.ndarray
    mask: np.ndarray
    cens: np.ndarray
    limit: np.ndarray
    observable: np.ndarray

    @classmethod
    def from_subjects(cls, ys, cens=None, limits=None, observables=None,
                      source: str = "population data") -> PopulationData:
        """Pad per-subject arrays into one :class:`PopulationData`.

        Parameters
        ----------
        ys : sequence of array_like (n_i,)
            Each subject's observations.
        cens, limits, observables : sequence of array_like (n_i,), optional
            Censoring flags (0, 1, -1), limits and observable indices per subject.
        source : str
            Name used in error messages (a file name, for example).

        Raises
        ------
        FitError
            A subject without observations, a non-finite observed value, a censoring flag
            other than 0/1/-1 or a censored value without a finite limit; the message names
            the subject (0-based position) and the observation.
        """
        ys = [np.asarray(v, dtype=float).ravel() for v in ys]
        N = len(ys)
        if N == 0:
            raise FitError(f"{source}: expected at least one subject, found none")
        n = max(len(v) for v in ys)
        y = np.zeros((N, n))
        mask = np.zeros((N, n), dtype=bool)
        c = np.zeros((N, n), dtype=np.int8)
        lim = np.full((N, n), np.nan)
        obs = np.zeros((N, n), dtype=np.intp)
        for i, v in enumerate(ys):
            ni = len(v)
            if ni == 0:
                raise FitError(f"{source}: subject {i}: expected at least one observation, "
                               "found none")
            y[i, :ni] = v
            mask[i, :ni] = True
            if cens is not None:
                ci = np.asarray(cens[i]).ravel()
                if ci.shape != (ni,) or not np.all(np.isin(ci, (0, 1, -1))):
                    raise FitError(f"{source}: subject {i}: expected {ni} censoring flags in "
                                   f"(0, 1, -1), found {ci.tolist()}")
                c[i, :ni] = ci
            if limits is not None:
                li = np.asarray(limits[i], dtype=float).ravel()
                if li.shape != (ni,):
                    raise FitError(f"{source}: subject {i}: expected {ni} limits, found "
                                   f"{li.size}")
                lim[i, :ni] = li
            if observables is not None:
                oi = np.asarray(observables[i]).ravel()
                if oi.shape != (ni,) or (oi.size and oi.min() < 0):
                    raise FitError(f"{source}: subject {i}: expected {ni} observable indices "
                                   f">= 0, found {oi.tolist()}")
                obs[i, :ni] = oi
            for j in range(ni):
                if c[i, j] == 0 and not np.isfinite(y[i, j]):
                    raise FitError(f"{source}: subject {i}, observation {j}: expected a "
                                   f"finite value, found {y[i, j]}")
                if c[i, j] != 0 and not np.isfinite(lim[i, j]):
                    raise FitError(f"{source}: subject {i}, observation {j}: censored, so a "
                                   f"finite limit is expected, found {lim[i, j]}")
        y[c != 0] = 0.0
        return cls(y=y, mask=mask, cens=c, limit=lim, observable=obs)

    @property
    def n_subjects(self) -> int:
        """Number of subjects N."""
        return self.y.shape[0]

    @property
    def n_obs(self) -> int:
        """Total number of observations (censored included)."""
        return int(self.mask.sum())

    @property
    def has_censoring(self) -> bool:
        """Whether any observation is censored."""
        return bool(np.any(self.cens[self.mask] != 0))

    def rows(self, index) -> PopulationData:
        """The subjects at ``index`` (int array), in that order."""
        index = np.asarray(index, dtype=np.intp)
        return PopulationData(self.y[index], self.mask[index], self.cens[index],
                              self.limit[index], self.observable[index])


@dataclass(frozen=True)
class Residual:
    """Residual-variance model ``V = a_k^2 + b_k^2 f^2`` per observable ``k``.

    Parameters
    ----------
    a, b : tuple of float
        Additive and proportional standard deviations, one per observable (``b = 0``:
        additive; ``a = 0``: proportional). NONMEM's SIGMA for ``Y = F + F*EPS(1) + EPS(2)``
        is ``diag(b^2, a^2)``.
    df : tuple of float, optional
        Degrees of freedom of each observable's residual: ``inf`` (the default, also for an
        empty tuple) a normal residual, a finite value a Student t with scale ``sqrt(V)``
        (:mod:`._student`; the conditional estimators FOCE-I and Laplace take it, FO and FOCE
        do not).
    """

    a: tuple = (0.0,)
    b: tuple = (0.0,)
    df: tuple = ()
    _a: np.ndarray = field(init=False, repr=False, compare=False)
    _b: np.ndarray = field(init=False, repr=False, compare=False)
    _nu: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        a = np.atleast_1d(np.asarray(self.a, dtype=float))
        b = np.atleast_1d(np.asarray(self.b, dtype=float))
        if a.shape != b.shape or a.ndim != 1:
            raise FitError(f"residual model: expected as many additive as proportional SDs, "
                           f"found {a.tolist()} and {b.tolist()}")
        bad = ~np.isfinite(a) | ~np.isfinite(b) | (a < 0) | (b < 0) | ((a == 0) & (b == 0))
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise FitError(f"residual model, observable {k}: expected finite SDs a, b >= 0, "
                           f"not both 0, found a={a[k]}, b={b[k]}")
        nu = (np.full(a.shape, np.inf) if len(self.df) == 0
              else np.atleast_1d(np.asarray(self.df, dtype=float)))
        if nu.shape != a.shape or np.any(np.isnan(nu) | (nu <= 0)):
            raise FitError(f"residual model: expected one degrees of freedom > 0 (inf: normal) "
                           f"per observable ({a.size}), found {list(self.df)}")
        object.__setattr__(self, "a", tuple(a.tolist()))
        object.__setattr__(self, "b", tuple(b.tolist()))
        object.__setattr__(self, "df", tuple(nu.tolist()))
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_nu", nu)

    @classmethod
    def additive(cls, a: float) -> Residual:
        """``V = a^2``."""
        return cls((a,), (0.0,))

    @classmethod
    def proportional(cls, b: float) -> Residual:
        """``V = b^2 f^2``."""
        return cls((0.0,), (b,))

    @classmethod
    def combined(cls, a: float, b: float) -> Residual:
        """``V = a^2 + b^2 f^2`` (NONMEM's ``Y = F + F*EPS(1) + EPS(2)``)."""
        return cls((a,), (b,))

    def _ab(self, observable):
        # indices are checked against the number of observables by check_observables
        return self._a[observable], self._b[observable]

    @property
    def any_student(self) -> bool:
        """True when some observable has a Student-t residual."""
        return bool(np.isfinite(self._nu).any())

    def nu(self, observable) -> np.ndarray:
        """Degrees of freedom per value (shape of ``observable``; inf: normal)."""
        return self._nu[observable]

    def variance_factor(self, observable) -> np.ndarray:
        """The residual's variance over ``V`` per value (shape of ``observable``): 1 for a
        normal residual, ``df / (df - 2)`` for a Student t with ``df > 2`` (its variance is
        ``V df / (df - 2)``), 1 for ``df <= 2`` (no finite variance: the scale stands in)."""
        nu = self._nu[observable]
        with np.errstate(all="ignore"):
            return np.where(np.isfinite(nu) & (nu > 2.0), nu / (nu - 2.0), 1.0)

    def check_observables(self, data: PopulationData) -> None:
        """Refuse data whose observable indices have no error model here.

        Raises
        ------
        FitError
            Names the first subject and observation with an index >= the number of models.
        """
        bad = data.mask & (data.observable >= self._a.size)
        if np.any(bad):
            i, j = (int(v[0]) for v in np.nonzero(bad))
            raise FitError(f"residual model: subject {i}, observation {j}: observable "
                           f"{int(data.observable[i, j])} has no error model (expected an index "
                           f"< {self._a.size})")

    def variance(self, f, observable):
        """Residual variance V, shape of ``f``."""
        a, b = self._ab(observable)
        return a * a + b * b * f * f

    def dvariance(self, f, observable):
        """dV/df = 2 b^2 f."""
        _, b = self._ab(observable)
        return 2.0 * b * b * f

    def d2variance(self, f, observable):
        """d2V/df2 = 2 b^2."""
        _, b = self._ab(observable)
        return 2.0 * b * b * np.ones_like(f)

    def __getstate__(self):
        return {"a": self.a, "b": self.b, "df": self.df}

    def __setstate__(self, state):
        object.__setattr__(self, "a", state["a"])
        object.__setattr__(self, "b", state["b"])
        object.__setattr__(self, "df", state.get("df", ()))
        self.__post_init__()


@runtime_checkable
class IndividualModel(Protocol):
    """The interface the population core needs from a structural model (a typing Protocol).

    Any picklable object with a ``predict`` method (or a plain picklable callable with the same
    signature) will do; nothing needs to subclass this.

    ``predict(phi, index) -> (f, G)``
        ``phi`` (R, D): individual parameters on the estimation scale, one row per subject of
        the batch; ``index`` (R,) int: which subjects of the :class:`PopulationData` the rows
        are (so the model can pick their doses, times and covariates). Returns ``f`` (R, n)
        predictions at every observation slot (padding: any finite value) and ``G`` (R, n, D)
        = df/dphi. Non-finite values in a row mark that subject's evaluation as failed; a
        :class:`~progression.errors.ProgressionError` raised for a batch is retried subject by
        subject, and the subjects that still raise are marked failed.

    ``predict_hessian(phi, index) -> H`` (optional)
        (R, n, D, D) second derivatives d2f/dphi2, used by the Laplace objective and the
        FOCE-I gradient; without it they are central differences of ``G``.
    """

    def predict(self, phi: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (R, n) and their derivatives (R, n, D) for a batch of subjects."""
        ...


def _predict_fn(model):
    return model.predict if hasattr(model, "predict") else model


def call_predict(model, phi, index, n, D):
    """Evaluate the model for a batch; never raises for a failing subject.

    Parameters
    ----------
    model : IndividualModel or callable
    phi : ndarray (R, D)
    index : ndarray of int (R,)
    n, D : int
        Expected observation slots and parameters (the shapes are checked: a wrong shape is a
        programming error of the model and raises :class:`FitError`).

    Returns
    -------
    f : ndarray (R, n)
    G : ndarray (R, n, D)
    ok : ndarray of bool (R,)
        False for subjects whose prediction failed or is not finite (their f, G are NaN).
    """
    from ...errors import ProgressionError

    predict = _predict_fn(model)
    R = phi.shape[0]
    try:
        with np.errstate(all="ignore"):
            f, G = predict(phi, index)
    except (ProgressionError, FloatingPointError):
        if R == 1:
            return np.full((1, n), np.nan), np.full((1, n, D), np.nan), np.zeros(1, bool)
        parts = [call_predict(model, phi[r:r + 1], index[r:r + 1], n, D) for r in range(R)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]))
    f = np.asarray(f, dtype=float)
    G = np.asarray(G, dtype=float)
    if f.shape != (R, n) or G.shape != (R, n, D):
        raise FitError(f"individual model {type(model).__name__}: expected predictions "
                       f"{(R, n)} and derivatives {(R, n, D)}, found {f.shape} and {G.shape}")
    ok = np.isfinite(f).all(axis=1) & np.isfinite(G).all(axis=(1, 2))
    return f, G, ok


def eta_columns_of(D: int, eta_columns) -> np.ndarray:
    """Validated indices of the parameters that carry a random effect, in eta order.

    ``phi = mu + A eta`` with ``A[eta_columns[e], e] = 1``; the selection is applied by
    indexing rather than by a matrix product so that results do not depend on the batch
    composition (BLAS blocking could change the last bits).

    Parameters
    ----------
    D : int
        Number of individual parameters.
    eta_columns : sequence of int or None
        None: every parameter has a random effect (E = D).

    Returns
    -------
    ndarray of int (E,)
    """
    cols = np.arange(D) if eta_columns is None else np.asarray(eta_columns, dtype=np.intp)
    if cols.ndim != 1 or len(set(cols.tolist())) != cols.size or (
            cols.size and (cols.min() < 0 or cols.max() >= D)):
        raise FitError(f"random effects: expected distinct parameter indices in [0, {D}), "
                       f"found {np.asarray(eta_columns).tolist()}")
    return cols


def check_omega(omega, E: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate Omega (E, E); return it, its inverse and log det.

    Raises
    ------
    FitError
        Not (E, E), not symmetric or not positive definite (the message shows the matrix).
    """
    om = np.atleast_2d(np.asarray(omega, dtype=float)) if E else np.zeros((0, 0))
    if om.shape != (E, E) or not np.all(np.isfinite(om)):
        raise FitError(f"Omega: expected a finite ({E}, {E}) matrix, found shape {om.shape}")
    if not np.allclose(om, om.T, rtol=1e-12, atol=0.0):
        raise FitError(f"Omega: expected a symmetric matrix, found {om.tolist()}")
    try:
        L = np.linalg.cholesky(om)
    except np.linalg.LinAlgError:
        raise FitError(f"Omega: expected a positive definite matrix, found {om.tolist()}"
                       ) from None
    inv = np.linalg.inv(om)
    inv = 0.5 * (inv + inv.T)
    return om, inv, float(2.0 * np.log(np.diag(L)).sum())


@dataclass
class ObsTerms:
    """Per-subject sums of the observation terms at one eta (batch of R subjects, E etas).

    Attributes
    ----------
    value : ndarray (R,)
        ``sum_j q_ij`` (data part of L_i).
    grad : ndarray (R, E)
        Its gradient with respect to eta.
    info : ndarray (R, E, E)
        The expected second derivative (Fisher information on the ``-2 log L`` scale):
        ``sum_j (2/V + V'^2/V^2) g g'`` for observed values (``2 (g g'/V + 1/2 h h'/V^2)``,
        the FOCE-I interaction term), ``2 g g'/V`` when V is held fixed, and for a censored
        value the information of the censoring indicator ``2 phi(z)^2 / (Phi(z)(1 - Phi(z)))
        z' z'``.
    hess : ndarray (R, E, E) or None
        The exact second derivative (only when asked; needs ``d2f``).
    """

    value: np.ndarray
    grad: np.ndarray
    info: np.ndarray
    hess: Any = None


def obs_terms(data: PopulationData, f, g, residual: Residual, V_fixed=None, d2f=None,
              want_hess: bool = False) -> ObsTerms:
    """Observation terms of a batch (the rows of ``data`` match the rows of ``f``).

    Parameters
    ----------
    data : PopulationData
        The batch's subjects (R rows).
    f : ndarray (R, n)
        Predictions.
    g : ndarray (R, n, E)
        df/deta.
    residual : Residual
    V_fixed : ndarray (R, n), optional
        Hold the residual variance at these values (FOCE without interaction: V at eta = 0),
        so that V does not depend on eta.
    d2f : ndarray (R, n, E, E), optional
        d2f/deta2, for the exact Hessian.
    want_hess : bool
        Compute the exact Hessian (``d2f`` required).
    """
    m = data.mask
    obs = m & (data.cens == 0)
    cen = m & (data.cens != 0)
    fz = np.where(m, f, 0.0)
    gz = np.where(m[..., None], g, 0.0)
    with np.errstate(all="ignore"):
        if V_fixed is None:
            V = residual.variance(fz, data.observable)
            dV = residual.dvariance(fz, data.observable)
            d2V = residual.d2variance(fz, data.observable)
        else:
            # FOCE without interaction: V does not follow eta, so its derivatives are zero
            V = V_fixed
            dV = np.zeros_like(fz)
            d2V = np.zeros_like(fz)
        V = np.where(m, V, 1.0)  # padding: any positive value, its terms are masked out
        r = np.where(obs, data.y - fz, 0.0)
        # observed values
        q_o = r * r / V + np.log(V)
        dq_o = -2.0 * r / V + dV * (1.0 / V - r * r / (V * V))
        w_o = 2.0 / V + dV * dV / (V * V)
        d2q_o = (2.0 / V + 4.0 * r * dV / V**2 + 2.0 * r * r * dV * dV / V**3
                 - r * r * d2V / V**2 + d2V / V - dV * dV / V**2)
        nu = residual.nu(data.observable) if residual.any_student else None
        if nu is not None and (obs & np.isfinite(nu)).any():
            t = obs & np.isfinite(nu)
            q_o, dq_o, w_o, d2q_o = _student_observed(t, r, V, dV, d2V, np.where(t, nu, 1.0),
                                                      q_o, dq_o, w_o, d2q_o)
        if cen.any():
            q, dq, w, d2q_c = _censored_terms(data, obs, cen, fz, V, dV, d2V, q_o, dq_o,
                                              w_o, nu)
        else:
            # no censored value in the batch (the usual case): the M3 terms would all be
            # masked out, so they are not computed (an inner solve evaluates this per step)
            q = np.where(obs, q_o, 0.0)
            dq = np.where(obs, dq_o, 0.0)
            w = np.where(obs, w_o, 0.0)
            d2q_c = 0.0
    value = q.sum(axis=1)
    grad = np.einsum("rj,rje->re", dq, gz)
    info = np.einsum("rj,rje,rjk->rek", w, gz, gz)
    hess = None
    if want_hess:
        d2q = np.where(obs, d2q_o, np.where(cen, d2q_c, 0.0))
        hess = np.einsum("rj,rje,rjk->rek", d2q, gz, gz)
        if d2f is not None:
            hess = hess + np.einsum("rj,rjek->rek", dq, np.where(m[..., None, None], d2f, 0.0))
    return ObsTerms(value=value, grad=grad, info=info, hess=hess)


def _student_observed(t, r, V, dV, d2V, nu, q_o, dq_o, w_o, d2q_o):
    """The observed terms of :func:`obs_terms` with the Student-t ones where ``t`` (composed
    along f from :func:`._student.observed_partials`)."""
    from ._student import observed_info, observed_partials

    p = observed_partials(r, V, nu)
    dq = p["q_f"] + p["q_V"] * dV
    d2q = p["q_ff"] + 2.0 * p["q_fV"] * dV + p["q_VV"] * dV * dV + p["q_V"] * d2V
    w = observed_info(V, dV, nu)[0]
    return (np.where(t, p["q"], q_o), np.where(t, dq, dq_o), np.where(t, w, w_o),
            np.where(t, d2q, d2q_o))


def _censored_terms(data, obs, cen, fz, V, dV, d2V, q_o, dq_o, w_o, nu=None):
    """The M3 terms of :func:`obs_terms` merged with the observed ones: q, dq, w and the
    censored values' exact second derivative d2q_c (arrays (R, n)); ``nu`` (R, n): degrees of
    freedom of Student-t values (inf: normal; None: all normal)."""
    s = np.where(data.cens == 1, 1.0, -1.0)
    w_lim = np.where(cen, data.limit - fz, 0.0)
    sq = np.sqrt(V)
    z = s * w_lim / sq
    logPhi = log_ndtr(z)
    log_phi = -0.5 * z * z - 0.5 * _LOG_2PI
    lam = np.exp(log_phi - logPhi)  # inverse Mills ratio phi/Phi, stable for z << 0
    # Fisher information of the indicator 1{below}: phi^2 / (Phi (1 - Phi)) = lam * phi /
    # (1 - Phi), written with log_ndtr(-z) so that it stays finite in both tails
    kap = 2.0 * lam * np.exp(log_phi - log_ndtr(-z))
    lam2 = -lam * (z + lam)          # d lam / dz
    t = None if nu is None else cen & np.isfinite(nu)
    if t is not None and t.any():
        from ._student import censored_log_cdf

        c = censored_log_cdf(z, np.where(t, nu, 1.0))
        logPhi = np.where(t, c["logT"], logPhi)
        lam = np.where(t, c["l1"], lam)
        lam2 = np.where(t, c["l2"], lam2)
        kap = np.where(t, c["kap"], kap)
    dz = s * (-1.0 / sq - 0.5 * w_lim * dV / V**1.5)
    d2z = s * (dV / V**1.5 - 0.5 * w_lim * d2V / V**1.5 + 0.75 * w_lim * dV * dV / V**2.5)
    q_c = -2.0 * logPhi
    dq_c = -2.0 * lam * dz
    w_c = kap * dz * dz
    d2q_c = -2.0 * lam2 * dz * dz - 2.0 * lam * d2z
    q = np.where(obs, q_o, np.where(cen, q_c, 0.0))
    dq = np.where(obs, dq_o, np.where(cen, dq_c, 0.0))
    w = np.where(obs, w_o, np.where(cen, w_c, 0.0))
    return q, dq, w, d2q_c
