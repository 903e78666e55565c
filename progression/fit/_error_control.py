"""The grid path's error control: rows whose interpolation error bound exceeds the tolerance
are re-evaluated on the exact path within the same call (see :mod:`progression.fit.problem`),
and what was routed is reported (:func:`routing_note`).
"""

from __future__ import annotations

import numpy as np

from ._paths import EXACT_GROUP, EXACT_RTOL, GRID_ERROR_DIVISOR, simulate_units
from .errormodels import likelihood_terms

__all__ = ["GRID_ERROR", "GRID_ERROR_DIVISOR", "route_exact", "routing_note"]

#: Grid-path error control: a row whose estimated interpolation error moves its ``-2 log L`` by
#: more than this (``[solver] grid_error`` in a run config, ``Problem.solver["grid_error"]``;
#: ``inf`` routes none) is evaluated on the exact path within the same call.
#: 2e-5 in -2 log L is 1e-5 in -log L, ten times below the 1e-4 per subject that the reported
#: objective must meet.
GRID_ERROR = 2e-5


def route_exact(problem, units, rr, tm, oi, sens, out, err, data, R, row_design, designs):
    """Re-evaluate on the exact path the rows whose grid interpolation error bound exceeds
    :meth:`Problem.grid_error_tolerance
    <progression.fit.problem.Problem.grid_error_tolerance>`; returns which rows went (bool (R,)).

    The bound of a row is ``sum_j max_{+-} |m2ll_j(f_j +- e_j) - m2ll_j(f_j)|`` with
    ``e_j`` the interpolation error estimate of value ``j`` (``|f_h - f_2h| /``
    :data:`GRID_ERROR_DIVISOR`); for a normal error model it is
    ``sum_j 2 |r_j| e_j / sigma_j + (e_j / sigma_j)^2``. It is computed from the row's own
    trajectory, so the decision does not depend on the batch. The routed rows' units are
    simulated by :func:`progression.simulate` with forward sensitivities at the exact
    path's tolerances (their time-offset derivative stays the grid's).
    """
    routed = np.zeros(R, dtype=bool)
    tol = problem.grid_error_tolerance()
    if problem.exact:
        return routed
    stats = problem.routing
    stats["evaluations"] += 1
    if not np.any(err > 0) or not np.isfinite(tol):
        return routed
    f, dfdp, ustatus, umessages = out
    code, y, cens, limit, a, b = data
    varies = problem.sigma_varies[oi]
    N = f.shape[0]
    with np.errstate(all="ignore"):
        # the terms at f, f + err and f - err in one call (they are elementwise: the same
        # numbers as three calls, at a third of the fixed cost)
        three = [np.concatenate([x, x, x]) for x in (code, y, cens, limit, a, b, varies)]
        zero = np.zeros((3 * N, 0))
        terms = likelihood_terms(three[0], three[1], three[2], three[3],
                                 np.concatenate([f, f + err, f - err]), zero, three[4], zero,
                                 three[5], zero, three[6], want_jac=False)
        base = terms.m2ll[:N]
        r_base = terms.r[:N]
        dev = np.zeros(N)
        for part in (1, 2):
            dev = np.maximum(dev, np.abs(terms.m2ll[part * N:(part + 1) * N] - base))
    bound = np.bincount(rr, weights=np.where(np.isfinite(dev), dev, 0.0), minlength=R)
    # Far from the optimum the residuals, and with them the bound's linear term, are
    # large, while an optimiser compares objectives that differ by far more: the tolerance
    # grows with the root-mean-square residual where it exceeds 1 (at an optimum it is ~1,
    # so the reported objective keeps the absolute tolerance).
    n_row = np.bincount(rr, minlength=R)
    r2 = r_base * r_base
    chi2 = np.bincount(rr, weights=np.where(np.isfinite(r2), r2, 0.0), minlength=R)
    with np.errstate(all="ignore"):
        rms = np.sqrt(np.maximum(chi2, 0.0) / np.maximum(n_row, 1))
    limit_row = tol * np.maximum(1.0, np.where(np.isfinite(rms), rms, 1.0))
    plain_row = np.zeros(R, dtype=bool)
    plain_row[units.row[[u for u, x in enumerate(units.inputs) if x is None]]] = True
    ok = np.ones(R, dtype=bool)
    np.minimum.at(ok, units.row, np.asarray(ustatus) >= 0)
    routed = (bound > limit_row) & plain_row & ok
    if not routed.any():
        return routed
    group = np.array([u for u, x in enumerate(units.inputs)
                      if x is None and routed[units.row[u]]], dtype=int)
    none = [{"doses": (), "covariates": {}} if x is None else x for x in units.inputs]
    for lo in range(0, group.size, EXACT_GROUP):
        simulate_units(problem, group[lo:lo + EXACT_GROUP], units.table, units.of_obs, tm, oi,
                             sens, none, (f, dfdp, ustatus, umessages), tight=True)
    stats["rows"] += int(routed.sum())
    stats["largest"] = max(stats["largest"], float(bound[routed].max()))
    stats["subjects"].update(designs[d].id for d in row_design[routed])
    return routed


def routing_note(problem) -> str:
    """What the grid path's error control did so far (evaluations in this process)."""
    tol = problem.grid_error_tolerance()
    stats = problem.routing
    why = f"grid interpolation error above {tol:g} in -2 log L"
    if not np.isfinite(tol):
        return "error control off (grid_error infinite)"
    if not stats["evaluations"]:
        return (f"error control: rows with {why} go to the exact path (no grid "
                "evaluation in this process to report)")
    if not stats["rows"]:
        return (f"error control: no row routed to the exact path ({why}: none, "
                f"{stats['evaluations']} evaluations)")
    n = len(stats["subjects"])
    return (f"error control: {stats['rows']} row evaluations of {n} subject"
            f"{'s' if n != 1 else ''} routed to the exact path (exact outputs, forward "
            f"sensitivities, rtol {EXACT_RTOL:g}) because of {why} (largest bound "
            f"{stats['largest']:.3g})")
