"""The individual model of a fit config: a likelihood :class:`~progression.fit.problem.Problem`
and its designs seen through the population core's ``predict`` interface.

:class:`ProblemModel` evaluates the model for a batch of subjects with
:meth:`Problem.evaluate <progression.fit.problem.Problem.evaluate>` (doses, covariates and
conditions of the designs honoured, exact outputs and forward sensitivities) on a copy of the
problem whose error models are replaced by a unit-SD additive model (a unit-SD log-normal one
for log-normal observables). The residual of a row is then ``y - f`` (``log y - log f``) and
its Jacobian ``-df/dx`` on the estimation scale, so the core's prediction and ``G = df/dphi``
are read off without touching the solver internals; the residual variance is the core's
(:class:`~progression.fit.population.Residual`).
"""

from __future__ import annotations

import numpy as np

from ...errors import FitError
from .. import _survival_likelihood as _survival
from ..config import FitParameter
from ..errormodels import C_SIGMA, split_kind
from ..problem import EXACT_ATOL, EXACT_RTOL, Problem
from ..transforms import from_internal
from ._core import PopulationData

__all__ = ["ProblemModel", "unit_error_problem", "core_scale", "residual_df"]

#: Error models the adapter maps onto the core's ``V = a^2 + b^2 f^2`` (lognormal: additive
#: on the log scale of data and predictions). Their Student-t kinds (``"lognormal:t(3)"``)
#: map the same way; the degrees of freedom reach SAEM through :attr:`ProblemModel.residual_df`.
SUPPORTED = ("additive", "proportional", "combined", "lognormal")
#: Survival residuals per record kind (:func:`progression.fit._survival_likelihood.
#: survival_terms`): the cumulative-hazard one, and for an exact event or an interval a second.
_SURVIVAL_ROWS = {_survival.EXACT: 2, _survival.RIGHT: 1, _survival.INTERVAL: 2}


def core_scale(kind: str) -> str:
    """``"log"`` when the core works on log data and predictions (log-normal error, normal or
    Student t)."""
    return "log" if split_kind(kind)[0] == "lognormal" else "linear"


def residual_df(problem: Problem) -> np.ndarray:
    """Degrees of freedom of each data observable's residual (K,): ``inf`` for a normal one,
    ``df`` for a Student-t one (``[error.OBS] distribution = "t"``)."""
    return np.array([split_kind(k)[1] for k in problem.error_models], dtype=float)


def unit_error_problem(problem: Problem, rtol: float = EXACT_RTOL,
                       atol: float = EXACT_ATOL) -> Problem:
    """``problem`` on the exact path with every error model replaced by a unit-SD one.

    Tight tolerances by default: the FOCE-I gradient differentiates ``G`` once more (central
    differences), which amplifies the solver's error by ``1 / step``.
    """
    kinds, params = [], []
    for obs, kind in zip(problem.observables, problem.error_models, strict=True):
        base = split_kind(kind)[0]
        if base not in SUPPORTED:
            raise FitError(f"observable '{obs}': error model {kind!r} is not supported by "
                           f"population estimators (expected one of {', '.join(SUPPORTED)})")
        k, key = ("lognormal", "sigma") if base == "lognormal" else ("additive", "a")
        kinds.append(k)
        params.append(FitParameter(f"{obs}.{key}", "error", "fixed", 1.0, 0.0, np.inf, "log",
                                   observable=obs, key=key))
    base = tuple(p for p in problem.parameters if p.kind != "error")
    solver = dict(problem.solver, outputs="exact", sensitivities="forward",
                  rtol=min(problem.solver.get("rtol", 1e-6), rtol),
                  atol=min(problem.solver.get("atol", 1e-9), atol))
    # the time-to-event part ([survival]) is kept: its -2 log L does not depend on the
    # error models
    return Problem(problem.model, problem.observables, tuple(kinds), base + tuple(params),
                   solver, problem.conditions, problem.has_inputs, problem.all_inputs,
                   survival=problem.survival)


class ProblemModel:
    """``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))`` for a fit's designs.

    Parameters
    ----------
    problem : Problem
        The fit's likelihood (its error models only choose the scale: linear, or log for a
        log-normal observable).
    designs : sequence of Design
        One per subject; the core's subject ``i`` is ``designs[i]``. Censored values (``cens``
        1 or -1) reach the core through :meth:`data` (flags and limits, M3 terms); the
        predictions are evaluated on ``eval_designs``, the designs with those values replaced
        by their limits and marked observed (any simulator reading residuals off
        ``Problem.evaluate`` should use ``eval_designs``).
    cols : int array (D,)
        The fit quantities (columns of ``theta``) that ``phi`` sets, on their estimation
        scale (log, log10, logit, linear).
    theta : ndarray (Q,), optional
        Values of every other model quantity (default: the problem's values); error
        parameters are ignored (the core's residual model carries them).

    survival_residuals : bool
        With ``[survival]``: append each subject's time-to-event residuals
        (:mod:`progression.fit._survival_likelihood`: ``sqrt(2 (Lambda(T) - Lambda(T0)))``,
        and for an event ``sqrt(C - 2 log h(T))`` or for an interval ``sqrt(-2 log(1 -
        exp(-(Lambda(R) - Lambda(L)))))``) to its predictions as pseudo-observations of one
        more observable (index ``len(problem.observables)``, value 0, unit additive SD), so
        that the core's Gaussian objective ``sum (y - f)^2`` carries ``-2 log p(T | phi)``
        plus :data:`~progression.fit.errormodels.C_SIGMA` per exact event
        (:meth:`survival_constant`). The Laplace estimator fits joint models this way.

    Notes
    -----
    Picklable (a Problem and arrays), so it can run in worker processes.
    """

    def __init__(self, problem: Problem, designs, cols, theta=None, *,
                 survival_residuals: bool = False):
        self.problem = unit_error_problem(problem)
        self.designs = list(designs)
        #: per subject, the number of survival residuals appended to its predictions
        self.n_survival = np.array(
            [_SURVIVAL_ROWS[d.survival.kind] if survival_residuals and problem.survival
             is not None and getattr(d, "survival", None) is not None else 0
             for d in self.designs], dtype=int)
        # censored values are evaluated as if observed at their limit: Problem.evaluate's
        # residual is then y - f on every row (the M3 terms are the core's), and f is read off
        # it like for any other value
        self.eval_designs = [d if not np.any(np.asarray(d.cens) != 0) else d.replace(
            value=np.where(np.asarray(d.cens) != 0, np.asarray(d.limit, dtype=float),
                           np.asarray(d.value, dtype=float)),
            cens=np.zeros_like(np.asarray(d.cens))) for d in self.designs]
        self.cols = np.asarray(cols, dtype=int)
        # every quantity but the error parameters (which are the unit SDs here)
        self.theta = self.problem.values.copy()
        given = np.asarray(problem.values if theta is None else theta, dtype=float)
        keep = [q for q, p in enumerate(problem.parameters) if p.kind != "error"]
        self.theta[keep] = given[keep]
        self.n = max(d.n + k for d, k in zip(self.designs, self.n_survival, strict=True))
        # the survival pseudo-observable (when there is one) is on the linear scale
        self.log_scale = np.array([core_scale(k) == "log" for k in problem.error_models]
                                  + [False])
        #: residual degrees of freedom per observable (inf: normal); SAEM reads them
        self.residual_df = residual_df(problem)

    def data(self, source: str = "population data") -> PopulationData:
        """The designs' values as the core's padded :class:`PopulationData` (log values for
        log-normal observables), with each value's censoring flag (0 observed, 1 below its
        limit, -1 above) and limit (the log of the limit for log-normal observables; NaN
        where not censored).

        Raises
        ------
        FitError
            A censored value without a finite limit, or a non-positive limit of a log-normal
            observable (the message names the file, the subject and the value's time).
        """
        ys, cens, limits, obs = [], [], [], []
        K = len(self.problem.observables)
        for d, k in zip(self.designs, self.n_survival, strict=True):
            obs.append(np.r_[d.obs, np.full(k, K)].astype(int))
            y = np.asarray(d.value, dtype=float)
            c = np.asarray(d.cens).astype(np.int8)
            lim = np.where(c != 0, np.asarray(d.limit, dtype=float), np.nan)
            lg = self.log_scale[d.obs]
            bad = (c != 0) & (~np.isfinite(lim) | (lg & ~(lim > 0)))
            if np.any(bad):
                j = int(np.flatnonzero(bad)[0])
                raise FitError(f"{source}: subject '{d.id}', time {d.time[j]:g}: censored, so "
                               f"a finite limit (positive for a log-normal error model) is "
                               f"expected, found {lim[j]}")
            with np.errstate(divide="ignore", invalid="ignore"):
                ys.append(np.r_[np.where(c != 0, 0.0, np.where(lg, np.log(y), y)), np.zeros(k)])
                limits.append(np.r_[np.where(lg, np.log(lim), lim), np.full(k, np.nan)])
            cens.append(np.r_[c, np.zeros(k, dtype=np.int8)])
        return PopulationData.from_subjects(ys, cens=cens, limits=limits, observables=obs,
                                            source=source)

    def survival_constant(self) -> np.ndarray:
        """(N,) what the survival residuals add to each subject's ``sum (y - f)^2`` beyond
        ``-2 log p(T | phi)``: :data:`~progression.fit.errormodels.C_SIGMA` per exact event
        (its residual ``sqrt(C - 2 log h)``), 0 otherwise."""
        kinds = np.array([getattr(d, "survival", None).kind if k else -1
                          for d, k in zip(self.designs, self.n_survival, strict=True)])
        return np.where(kinds == _survival.EXACT, C_SIGMA, 0.0)

    def thetas(self, phi, index=None) -> np.ndarray:
        """Full natural-scale parameter rows (R, Q) for estimation-scale ``phi`` (R, D)."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        p = self.problem
        c = self.cols
        th = np.repeat(self.theta[None], phi.shape[0], axis=0)
        th[:, c] = from_internal(phi, p.scale[c], p.lower[c], p.upper[c])
        return th

    @property
    def extra_m2ll(self) -> bool:
        """True with ``[survival]``: the individual likelihood has a term beyond the Gaussian
        predictions, ``-2 log p(T_i | phi_i)`` (:meth:`predict_extra`), which SAEM adds to its
        chains' data term."""
        return self.problem.survival is not None

    def predict_extra(self, phi, index):
        """:meth:`predict` and the survival term: ``(f (R, n), G (R, n, D), s (R,))`` with
        ``s = -2 log p(T_i | phi)`` of the subject's time-to-event record (0 without one; NaN
        where the simulation failed; zeros without ``[survival]``)."""
        return self.predict(phi, index, _extra=True)

    def predict(self, phi, index, _extra=False):
        """Predictions (R, n) and their derivatives (R, n, D) on the core's scale; a subject
        whose simulation failed gets NaN rows."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        R, D = phi.shape[0], self.cols.size
        ev = self.problem.evaluate(self.eval_designs, index, self.thetas(phi), self.cols,
                                   want_jac=True)
        if _extra:
            f, G = self._read(ev, index, R, D)
            s = (np.zeros(R) if ev.survival_m2ll is None
                 else np.asarray(ev.survival_m2ll, dtype=float))
            return f, G, s
        return self._read(ev, index, R, D)

    def _read(self, ev, index, R, D):
        """Predictions and derivatives of an evaluation (see :meth:`predict`)."""
        f = np.zeros((R, self.n))
        G = np.zeros((R, self.n, D))
        for r, i in enumerate(index):
            d = self.eval_designs[i]
            if ev.failed[r]:
                f[r] = np.nan
                G[r] = np.nan
                continue
            y = np.asarray(d.value, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(self.log_scale[d.obs], np.log(y), y)
            # unit SD: residual = y - f on the core's scale, its Jacobian = -df/dx
            f[r, :d.n] = y - ev.residuals[r][:d.n]
            G[r, :d.n] = -ev.jacobians[r][:d.n]
            k = self.n_survival[i]
            if k:
                # the survival residuals close each row's residual vector; value 0
                f[r, d.n:d.n + k] = -ev.residuals[r][-k:]
                G[r, d.n:d.n + k] = -ev.jacobians[r][-k:]
        return f, G

    def predict_hessian(self, phi, index):
        """Second derivatives d2f/dphi2 (R, n, D, D) on the core's scale: central differences
        of the exact sensitivities, a row's 2 D perturbed copies in one stacked solve
        (:meth:`Problem.evaluate` with ``want_hessian=True``); NaN rows where a simulation
        failed."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        D = self.cols.size
        ev = self.problem.evaluate(self.eval_designs, index, self.thetas(phi), self.cols,
                                   want_jac=False, want_hessian=True)
        H = np.zeros((phi.shape[0], self.n, D, D))
        for r, i in enumerate(index):
            n, k = self.eval_designs[i].n, self.n_survival[i]
            h = ev.hessians[r]
            if ev.failed[r] or h.shape[0] < n + k:
                H[r] = np.nan
                continue
            # unit SD: residual = y - f on the core's scale, so d2f = -d2r
            H[r, :n] = -h[:n]
            if k:
                H[r, n:n + k] = -h[-k:]
        return H

    def __call__(self, phi, index):
        return self.predict(phi, index)
