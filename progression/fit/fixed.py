"""Objective evaluation at fixed parameters: a fit config with nothing estimated.

A config whose parameters are all ``estimate = "fixed"`` asks for -2 log L, predictions and
residuals at the given values (to check a published parameter set against the data, or to
compare the objective of two fixed parameter sets). `evaluate_fixed` does that with the same
problem, data handling and likelihood as a fit, so the numbers are the ones a fit reports;
the result is a `FitResult` with no estimated parameter, saved like any fit folder.

The evaluation always uses exact outputs at the data times (no interpolation grid): it is a
single solve per subject, so nothing is gained by the grid path, and the objective is then
accurate to the solver's tolerance.
"""

from __future__ import annotations

import numpy as np

from .problem import Problem

__all__ = ["NOTHING_ESTIMATED", "nothing_estimated", "evaluate_fixed"]

#: The note a fixed evaluation carries (provenance notes, summary, fit.json).
NOTHING_ESTIMATED = ("nothing estimated: every parameter is fixed; -2 log L, predictions and "
                     "residuals are evaluated at the given values (exact outputs at the data "
                     "times); no standard errors or intervals")


def nothing_estimated(problem: Problem) -> bool:
    """True when no parameter of ``problem`` is estimated (per subject or shared)."""
    return problem.subject_cols.size == 0 and problem.shared_cols.size == 0


def evaluate_fixed(problem: Problem, designs) -> tuple[dict, Problem]:
    """-2 log L, predictions and residual bookkeeping of every subject at the fixed values.

    Parameters
    ----------
    problem : Problem
        A problem with nothing estimated.
    designs : list of Design

    Returns
    -------
    core : dict
        What an individual fit's estimation step returns, with zero estimated columns
        (``theta`` holds the fixed values in every row), so uncertainty, failure checks and
        `FitResult.from_parts` treat it like any fit.
    evaluated_on : Problem
        The problem the numbers come from (``problem`` on the exact path).
    """
    exact = problem
    if problem.solver.get("outputs", "grid") != "exact" or \
            problem.solver.get("sensitivities", "grid") != "forward":
        exact = Problem(problem.model, problem.observables, problem.error_models,
                        problem.parameters, dict(problem.solver, outputs="exact",
                                                 sensitivities="forward"))
    m = len(designs)
    cols = np.zeros(0, dtype=int)
    theta = np.repeat(problem.values[None, :], m, axis=0)
    ev = exact.evaluate(designs, np.arange(m), theta, cols, want_jac=False, want_info=True,
                        want_predictions=True)
    failure = [f"the simulation failed at the fixed values: {ev.messages[i]}"
               if ev.failed[i] else "" for i in range(m)]
    core = {
        "kind": "individual", "cols": cols, "theta": theta, "x": np.zeros((m, 0)),
        "m2ll": ev.m2ll, "info": np.zeros((m, 0, 0)), "predictions": ev.predictions,
        "nobs": ev.nobs, "success": ~ev.failed,
        "message": ["nothing estimated" if not f else f for f in failure],
        "failure": failure, "nfev": np.ones(m, dtype=int),
        "starts_m2ll": ev.m2ll[:, None].copy(), "best_start": np.zeros(m, dtype=int),
        "failed_evaluations": ev.failed.astype(int),
        "before_zero": ev.before_zero if ev.before_zero is not None else np.zeros(m, int),
    }
    return core, exact
