"""Objective evaluation at fixed parameters: a fit config with nothing estimated.

A config whose parameters are all ``estimate = "fixed"`` asks for -2 log L, predictions and
residuals at the given values (to check a published parameter set against the data, or to
compare the objective of two fixed parameter sets). :class:`FixedEvaluation` does that with the
same problem, data handling and likelihood as a fit, so the numbers are the ones a fit reports;
the result is a `FitResult` with no estimated parameter, saved like any fit folder.

It is an estimator like the others (same :class:`~progression.fit.estimators.base.
EstimationProblem` in, same typed output), but not one a config names: :func:`progression.fit.
fit` uses it whenever nothing is estimated, whatever ``[fit] estimator`` says, so it is not in
the registry :data:`progression.fit.estimators.ESTIMATORS`.

The evaluation always uses exact outputs at the data times (no interpolation grid): it is a
single solve per subject, so nothing is gained by the grid path, and the objective is then
accurate to the solver's tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .estimators.base import EstimationProblem, Estimator, PointEstimate
from .parts import INTERVAL_METHODS, Diagnostics, Estimates, Uncertainty
from .problem import Problem

__all__ = ["NOTHING_ESTIMATED", "nothing_estimated", "FixedEvaluation"]

#: The note a fixed evaluation carries (provenance notes, summary, fit.json).
NOTHING_ESTIMATED = ("nothing estimated: every parameter is fixed; -2 log L, predictions and "
                     "residuals are evaluated at the given values (exact outputs at the data "
                     "times); no standard errors or intervals")


def nothing_estimated(problem: Problem) -> bool:
    """True when no parameter of ``problem`` is estimated (per subject, shared or
    population)."""
    return not any(p.estimated for p in problem.parameters)


def _exact(problem: Problem) -> Problem:
    """``problem`` with exact outputs and forward sensitivities at the user's tolerances."""
    if problem.solver.get("outputs", "grid") == "exact" and \
            problem.solver.get("sensitivities", "grid") == "forward":
        return problem
    # replace, not a new Problem: the conditions and the inputs flag are kept
    return dataclasses.replace(problem, solver=dict(problem.solver, outputs="exact",
                                                    sensitivities="forward"))


class FixedEvaluation(Estimator):
    """-2 log L, predictions and residuals of every subject at the fixed values."""

    name = "fixed"
    description = "objective at fixed parameters (nothing estimated)"

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        exact = _exact(ep.problem)
        m = ep.n_subjects
        theta = np.repeat(ep.problem.values[None, :], m, axis=0)
        ev = exact.evaluate(ep.designs, np.arange(m), theta, np.zeros(0, dtype=int),
                            want_jac=False, want_info=True, want_predictions=True)
        failure = tuple(f"the simulation failed at the fixed values: {ev.messages[i]}"
                        if ev.failed[i] else "" for i in range(m))
        diag = Diagnostics(
            subject_objective=ev.m2ll, n_obs=np.asarray(ev.nobs), converged=~ev.failed,
            messages=tuple("nothing estimated" if not f else f for f in failure),
            failures=failure, nfev=np.ones(m, dtype=int),
            starts_objective=ev.m2ll[:, None].copy(), best_start=np.zeros(m, dtype=int),
            before_zero=np.asarray(ev.before_zero if ev.before_zero is not None
                                   else np.zeros(m), dtype=int),
            numbers_from=("objective: exact outputs at the data times (nothing estimated)"),
            method="nothing optimised: the objective evaluated at the given values")
        est = Estimates(theta=theta, x_hat=np.zeros(0), x_cols=np.zeros(0, dtype=int),
                        x_rows=[])
        return PointEstimate(estimates=est, diagnostics=diag, predictions=list(ev.predictions),
                             information=np.zeros((m, 0, 0)), path_objective=ev.m2ll)

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        m, Q = point.estimates.theta.shape
        # nothing estimated, so nothing is uncertain: NaN standard errors and intervals,
        # whatever [estimator] uncertainty asked for
        return Uncertainty(se=np.full((m, Q), np.nan),
                           intervals={"covariance": np.full((m, Q, 2), np.nan)},
                           methods={"covariance": INTERVAL_METHODS["covariance"]},
                           open_intervals={}, blocks=[], joint=False)
