"""How :class:`~progression.fit.problem.Problem` obtains outputs and sensitivities.

A batch of rows is split into simulation *units* (:func:`make_units`: one per row and
experimental condition, with the condition's overrides and the row's inputs). Units without
inputs go through the configured path (:func:`plain_outputs`: Hermite interpolation on a
common grid with grid or forward sensitivities, or exact outputs in groups of
:data:`EXACT_GROUP`); units with doses or covariates are simulated by
:func:`progression.simulate` at their own times with forward sensitivities
(:func:`simulate_units`). The grid path also returns each value's interpolation error
estimate (from :func:`coarse_interpolant`), which :mod:`progression.fit._error_control` turns
into the decision to re-evaluate a row exactly. Each function takes the
:class:`~progression.fit.problem.Problem` whose layout and solver settings it uses.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import re
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from ._rows import span_groups, unique_keys, unique_rows

__all__ = ["EXACT_GROUP", "EXACT_GROUP_VALUES", "EXACT_RTOL", "EXACT_ATOL",
           "GRID_ERROR_DIVISOR", "grid_step",
           "has_inputs", "make_units", "outputs", "simulate_units", "solver_options",
           "plain_outputs", "coarse_interpolant"]

#: Rows simulated together on the exact path (outputs at the union of the group's times).
EXACT_GROUP = 50
#: The same for evaluations without sensitivities (predictions only, e.g. SAEM's importance
#: sampling): a stacked state-only solve is cheap per row, so larger groups pay fewer
#: integrator steps per row; measured on als_reduced, 200 subjects, rtol 1e-8 (median of 3,
#: loaded machine): 0.34 s in groups of 50, 0.24 s of 100, 0.30 s of 150. These groups go
#: through the stacked LSODA (``simulate()``'s choice at this size): at rtol 1e-10 the
#: compiled per-subject DOP853 takes ~1,970 right-hand sides per row against LSODA's ~1,170
#: (shared Adams steps) on ``benchmarks/fit_individual.py``'s 200 rows, and the right-hand
#: side (~150 ns per row, its exp/log1p/expm1) dominates both: 0.0675 against 0.0636 CPU
#: seconds for the 200 rows (median of 7 interleaved runs, 2 shared cores, load 6.5,
#: 2026-12-01), so compiled per-row integration would shorten the wall time only where idle
#: cores take its rows: the individual fit's polish now does that (EXACT_ROWS_DOP853, with the
#: held states of REDUCED_STATES its right-hand side costs ~35 ns), these groups serve the
#: other callers and the rows DOP853 hands back.
EXACT_GROUP_VALUES = 100

#: Tolerances of the exact path that polishes grid-path estimates and reports the objective
#: and covariance (the user's, where tighter).
EXACT_RTOL, EXACT_ATOL = 1e-10, 1e-12

#: The interpolation error estimate ``|f_h - f_2h| / GRID_ERROR_DIVISOR``: the Hermite
#: interpolant's error is O(h^4), so asymptotically ``f_2h`` errs 16 times ``f_h``. Measured on
#: the stiff cascade (tests/models/stiff_signalling.toml, three subjects): where the estimate
#: is near the tolerance (h <= 0.06 min) the row bound exceeds the actual objective error 12 to
#: 25 times (the bound adds absolute values); at h = 0.5 min, far too coarse for the fast
#: transient, it falls short up to 16 times but is then ~100 in -2 log L, far above any
#: tolerance. On als_reduced (h = 0.5 month) the largest bound is 9e-6, at the start points.
GRID_ERROR_DIVISOR = 15.0


class _Units(NamedTuple):
    """Simulation units of a batch: ``row`` (U,) the row of each unit, ``of_obs`` (N,) the
    unit of each value, ``table`` (U, P) model parameters, ``inputs`` per unit (None, or a
    dict with ``doses`` and ``covariates`` in model time), ``fixed`` (U, P) parameters a
    condition overrides (or None)."""

    row: np.ndarray
    of_obs: np.ndarray
    table: np.ndarray
    inputs: list
    fixed: np.ndarray | None


def has_inputs(problem, design) -> bool:
    """Whether a design's rows are simulated with inputs (doses, covariates, or conditions
    with doses) on the exact path."""
    if design.doses or design.covariates or getattr(problem.model, "covariate_names", ()):
        return True
    if design.condition is not None and problem.conditions:
        used = set(np.unique(design.condition).tolist()) - {""}
        return any(c.doses for c in problem.conditions if c.name in used)
    return False


def grid_step(setting, t_end: float) -> float:
    """The Hermite grid step: a number, or ``"auto"``: a power of two near ``t_end / 200``
    (0.25 for spans of 36-72 time units), so that it changes rarely during a fit."""
    if setting != "auto":
        return float(setting)
    span = max(float(t_end), 1e-12)
    return float(2.0 ** np.floor(np.log2(span / 200.0) + 0.5))


def make_units(problem, designs, row_design, theta, rr, offset) -> _Units:
    """Simulation units of a batch of rows: one per (row, condition) with values.

    Each unit gets its row's model parameters with its condition's overrides, the record-
    free dose parameter set to 0 where the data give dose records, and its inputs (the
    subject's doses and covariates plus the condition's doses, in model time) or None.
    """
    P = problem.P
    R = theta.shape[0]
    C = len(problem.conditions)
    # A model with covariates carries them as hidden parameter rows that only simulate()
    # fills (defaults included), so all its units take the input path.
    has_cov = bool(getattr(problem.model, "covariate_names", ()))
    plain = C == 0 and not has_cov and not any(
        designs[d].doses or designs[d].covariates or designs[d].dose_records
        for d in row_design)
    if plain:
        return _Units(np.arange(R), rr, theta[:, :P].copy(), [None] * R, None)
    index = {name: c for c, name in enumerate(problem.condition_names)}
    parts = []
    for d in row_design:
        cond = designs[d].condition
        if cond is None:
            parts.append(np.full(designs[d].n, -1))
            continue
        try:
            parts.append(np.array([index[c] if c else -1 for c in cond], dtype=int))
        except KeyError as exc:
            raise ConfigError(f"design '{designs[d].id}': condition {exc.args[0]!r} is not "
                              "defined (add a [conditions." + str(exc.args[0])
                              + "] table)") from None
    cidx = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
    key = rr * (C + 1) + (cidx + 1)
    ukeys, of_obs = np.unique(key, return_inverse=True)
    unit_row, unit_cond = ukeys // (C + 1), ukeys % (C + 1) - 1
    U = ukeys.size
    table = theta[unit_row, :P].copy()
    fixed = np.zeros((U, P), dtype=bool)
    model = problem.model
    dp = model.spec.dose_parameter if hasattr(model, "spec") else None
    dp_index = model.parameter_index(dp) if dp is not None else None
    inputs = []
    for u in range(U):
        design = designs[row_design[unit_row[u]]]
        off = float(offset[unit_row[u]])
        doses = list(design.doses)
        if unit_cond[u] >= 0:
            cond = problem.conditions[unit_cond[u]]
            for name, value in cond.parameters:
                j = model.parameter_index(name)
                table[u, j] = value
                fixed[u, j] = True
            doses += list(cond.doses)
        if dp_index is not None and (design.dose_records or doses):
            # the record-free dose is replaced by the records: the unit does not depend
            # on it (its sensitivity would be that of the initial state)
            table[u, dp_index] = 0.0
            fixed[u, dp_index] = True
        if doses or design.covariates or has_cov:
            inputs.append({
                "doses": tuple(doses) if off == 0.0 else
                tuple(dataclasses.replace(x, time=x.time + off) for x in doses),
                "covariates": {name: (np.asarray(t, float) + off, np.asarray(v, float))
                               for name, t, v in design.covariates}})
        else:
            inputs.append(None)
    return _Units(unit_row, of_obs, table, inputs, fixed if fixed.any() else None)


def outputs(problem, table, rr, tm, oi, sens, accurate=True, inputs=None):
    """Predictions f (N,), df/dp (k, N), df/dtau (N,), status (U,), messages, for units
    ``table`` (U, P) with the unit of each value ``rr``; units with ``inputs`` are
    simulated with them (doses, covariates) on the exact path, the others on the
    configured path."""
    has = np.array([x is not None for x in inputs]) if inputs is not None else None
    if has is None or not has.any():
        return plain_outputs(problem, table, rr, tm, oi, sens, accurate)
    U, N, k = table.shape[0], tm.shape[0], len(sens)
    f = np.full(N, np.nan)
    dfdp = np.zeros((k, N))
    dfdtau = np.full(N, np.nan)       # not available with inputs (refused in evaluate)
    err = np.zeros(N)                 # exact outputs: no interpolation error
    status = np.zeros(U, dtype=int)
    messages = [""] * U
    plain = np.nonzero(~has)[0]
    if plain.size:
        sel = ~has[rr]
        new = np.full(U, -1)
        new[plain] = np.arange(plain.size)
        o = plain_outputs(problem, table[plain], new[rr[sel]], tm[sel], oi[sel], sens,
                                accurate)
        f[sel], dfdp[:, sel], dfdtau[sel], err[sel] = o[0], o[1], o[2], o[5]
        status[plain] = o[3]
        for b, u in enumerate(plain):
            messages[u] = o[4][b]
    # Units with doses and units with covariates only are simulated apart: simulate()
    # sets the record-free dose parameter to 0 for every subject of a call with doses.
    with_doses = [u for u in np.nonzero(has)[0] if inputs[u]["doses"]]
    without = [u for u in np.nonzero(has)[0] if not inputs[u]["doses"]]
    for family in (with_doses, without):
        for lo in range(0, len(family), EXACT_GROUP):
            group = np.array(family[lo:lo + EXACT_GROUP], dtype=int)
            simulate_units(problem, group, table, rr, tm, oi, sens, inputs,
                                 (f, dfdp, status, messages))
    return f, dfdp, dfdtau, status, messages, err


def simulate_units(problem, group, table, rr, tm, oi, sens, inputs, out, tight=False):
    """Simulate units ``group`` with their inputs at the union of their times (forward
    sensitivities) and write their outputs into ``out = (f, dfdp, status, messages)``;
    ``tight``: at the exact path's tolerances (:data:`EXACT_RTOL`, the user's where
    tighter), so that a unit's outputs do not move with its group companions."""
    from ..errors import ProgressionError
    from ..simulate import simulate

    f, dfdp, status, messages = out
    model = problem.model
    pos = np.full(table.shape[0], -1)
    pos[group] = np.arange(group.size)
    sel = pos[rr] >= 0
    grid = np.unique(np.concatenate([[0.0], tm[sel]]))
    doses = [_for_subject(x, b) for b, u in enumerate(group) for x in inputs[u]["doses"]]
    kwargs = solver_options(problem, sens)
    if tight:
        kwargs["rtol"] = min(kwargs["rtol"], EXACT_RTOL)
        kwargs["atol"] = min(kwargs["atol"], EXACT_ATOL)
    if any(inputs[u]["covariates"] for u in group):
        kwargs["covariates"] = [inputs[u]["covariates"] for u in group]
    kwargs["_own_times"] = own_columns(grid, tm[sel], pos[rr[sel]], group.size)
    try:
        with np.errstate(all="ignore"):
            sim = simulate(model, table[group], grid, doses=doses or None, **kwargs)
    except ProgressionError as exc:
        if group.size > 1:
            # find the unit whose inputs cannot be simulated; the others go on
            for u in group:
                simulate_units(problem, np.array([u]), table, rr, tm, oi, sens, inputs, out,
                                     tight)
            return
        status[group] = -1
        messages[group[0]] = f"the simulation with its doses and covariates failed: {exc}"
        return
    status[group] = np.asarray(sim.status)
    for b, u in enumerate(group):
        messages[u] = sim.message[b] if sim.status[b] < 0 else ""
    col = np.searchsorted(grid, tm[sel])
    b = pos[rr[sel]]
    kidx = problem.obs_model_index[oi[sel]]
    # observables as simulate() reports them: with the parameters in force at each time
    # (infusion rates, covariates), and their sensitivities carried across every dose
    f[sel] = sim.observables[b, kidx, col]
    if len(sens):
        dfdp[:, sel] = sim.observable_sensitivities[b, kidx, :, col].T


@functools.lru_cache(maxsize=8192)
def _for_subject(dose, b):
    """``dose`` for subject ``b`` of a simulate() call (Dose is frozen and hashable; an inner
    optimisation simulates the same units again and again)."""
    return dataclasses.replace(dose, subject=b)


def own_columns(grid, times, unit, U):
    """Per unit ``0..U-1``, the sorted columns of ``grid`` at which it has values
    (``times`` with ``unit`` per value): what the compiled per-subject integrator computes
    for it instead of the whole union grid."""
    G = grid.size
    key = np.unique(np.asarray(unit, dtype=np.int64) * G + np.searchsorted(grid, times))
    unit, col = np.divmod(key, G)                   # sorted by unit, then column
    cuts = np.searchsorted(unit, np.arange(U + 1))
    return [col[cuts[u]:cuts[u + 1]] for u in range(U)]


def solver_options(problem, sens):
    solver = problem.solver
    return {"method": solver.get("method", "auto"), "rtol": solver.get("rtol", 1e-6),
            "atol": solver.get("atol", 1e-9), "max_step": solver.get("max_step", np.inf),
            "max_steps": solver.get("max_steps", 100_000), "terminal_events": False,
            "sensitivities": list(sens) or None, "events": False}


def plain_outputs(problem, table, rr, tm, oi, sens, accurate=True):
    """Predictions f (N,), df/dp (k, N), df/dtau (N,), status (R,), messages, for units
    without inputs on the configured path."""
    from .._gridsens import grid_sensitivities
    from ..simulate import simulate, solve_states

    model = problem.model
    mode = problem.solver.get("outputs", "grid")
    # the states the observables of these values need: the others (a hazard's cumulative
    # state) held in the exact path's compiled DOP853 rows, and on the grid path with
    # REDUCED_STATES_GRID (see _states_model; the view is built only where it is used)
    smodel = (_states_model(problem, oi) if REDUCED_STATES_GRID or mode == "exact"
              else model)
    gmodel = smodel if REDUCED_STATES_GRID else model     # the grid path's model
    N = tm.shape[0]
    k = len(sens)
    solver = problem.solver
    options = {"method": solver.get("method", "auto"), "rtol": solver.get("rtol", 1e-6),
               "atol": solver.get("atol", 1e-9),
               "max_step": solver.get("max_step", np.inf),
               "max_steps": solver.get("max_steps", 100_000), "terminal_events": False,
               "sensitivities": sens or None, "events": False}
    t_end = float(tm.max()) if N else 0.0
    if mode != "exact":
        h = grid_step(solver.get("grid_step", "auto"), t_end)
        # One node beyond the last one any row interpolates from, so that every node a row
        # uses is interior (Richardson's odd-node correction needs both neighbours), and
        # each row's own last node for its error estimate: the batch's extent then
        # changes nothing in a row's result.
        G = max(int(np.floor(t_end / h)) + 3, 3)
        grid = np.arange(G) * h
        last_node = np.zeros(table.shape[0], dtype=int)
        np.maximum.at(last_node, rr, np.floor(tm / h).astype(int) + 1)
    sens_idx = [model.parameter_index(nm) for nm in sens]
    if mode == "grid" and solver.get("sensitivities", "grid") == "grid":
        # States only from the integrator; sensitivities from the linear sensitivity
        # equations on the same grid (see progression._gridsens): a fraction of the cost.
        options.pop("sensitivities")
        options.pop("terminal_events")
        options.pop("events")
        per_subject = solver.get("per_subject_steps", True)
        # With per-subject steps a row's result depends on its parameters and last node
        # only, so equal rows are integrated once: at the first iteration of an individual
        # fit every subject starts at the same values (the time offset moves the output
        # times, not the parameters), and that evaluation then costs one row.
        uniq, inv = (unique_rows(table, last_node) if per_subject
                     else (np.arange(table.shape[0]), None))
        # the row of X (and Sx) that holds each row's states, and their parameters
        srow, stable = np.arange(table.shape[0]), table
        # With per-subject steps a row's nodes do not depend on how far the grid goes on:
        # rows of similar spans are integrated together, each group only as far as its
        # rows read (span_groups), instead of every row to the batch's last node.
        groups = (span_groups(last_node[uniq]) if per_subject
                  else [np.arange(uniq.size)])
        X = Sx = None
        status, messages = np.zeros(uniq.size, dtype=int), [""] * uniq.size
        for rows in groups:
            Gg = min(int(last_node[uniq[rows]].max()) + 2, G) if len(groups) > 1 else G
            with np.errstate(all="ignore"):
                Xg, st, msg, _ = solve_states(
                    gmodel, table[uniq[rows]], grid[:Gg], per_subject=per_subject, **options)
                Sg = (grid_sensitivities(gmodel, grid[:Gg], Xg, table[uniq[rows]], sens_idx,
                                         richardson=accurate, solver=options,
                                         last_node=last_node[uniq[rows]])
                      if k else None)
            if len(groups) == 1:
                X, Sx, status, messages = Xg, Sg, st, msg
                break
            if X is None:
                X = np.full((uniq.size, Xg.shape[1], G), np.nan)
                Sx = np.full((uniq.size, Xg.shape[1], k, G), np.nan) if k else None
            X[rows, :, :Gg] = Xg
            if k:
                Sx[rows, :, :, :Gg] = Sg
            status[rows] = st
            for b, r in enumerate(rows.tolist()):
                messages[r] = msg[b]
        if inv is not None:
            # the states and sensitivities stay those of the distinct rows: each value reads
            # its row's copy (identical numbers, and the slopes, Jacobians and coarse
            # interpolant below are computed once per distinct row and node)
            status = np.asarray(status)[inv]
            messages = [messages[u] for u in inv]
            srow, stable = inv, table[uniq]
    elif mode == "exact":
        # Rows in groups of EXACT_GROUP (EXACT_GROUP_VALUES without sensitivities), each
        # simulated at the union of its own rows' times: the cost of recording outputs grows
        # with rows times output times, which for the union of a whole batch's (jittered)
        # times is quadratic in the batch.
        R = table.shape[0]
        n = model.n_states
        y = np.full((n, N), np.nan)
        S = np.full((n, k, N), np.nan) if k else None
        status = np.zeros(R, dtype=int)
        messages = [""] * R
        size = EXACT_GROUP if k else EXACT_GROUP_VALUES
        # Without sensitivities, rows by the compiled DOP853 over numba's threads where it is
        # the method simulate() takes at this tolerance (_rows_by_dop853); those it finds
        # stiff, or fails on, go on to the groups below.
        todo = np.arange(R)
        if not k:
            done = _rows_by_dop853(smodel, table, rr, tm, options, y, status, messages)
            if done is not None:
                todo = np.nonzero(~done)[0]
        # Without sensitivities the groups are formed by each row's last output time: a
        # stacked system shares its steps and runs to its last row's end, so rows of similar
        # spans integrated together take fewer right-hand sides (see _span_order).
        if not k and todo.size > size:
            last = np.full(R, -np.inf)
            np.maximum.at(last, rr, tm)
            order = todo[np.argsort(last[todo], kind="stable")]   # _span_order on todo
        else:
            order = todo
        pos = np.full(R, R, dtype=int)
        pos[order] = np.arange(order.size)
        for lo in range(0, order.size, size):
            rows = order[lo:lo + size]
            sel = (pos[rr] >= lo) & (pos[rr] < lo + rows.size)
            b_of = pos[rr[sel]] - lo
            grid = np.unique(np.concatenate([[0.0], tm[sel]]))
            own = own_columns(grid, tm[sel], b_of, rows.size)
            with np.errstate(all="ignore"):
                sim = simulate(model, table[rows], grid, _own_times=own, _observables=False,
                               **options)
            status[rows] = np.asarray(sim.status)
            for b, r in enumerate(rows):
                messages[r] = sim.message[b]
            col = np.searchsorted(grid, tm[sel])
            y[:, sel] = sim.states[b_of, :, col].T
            if k:
                S[:, :, sel] = sim.state_sensitivities[b_of, :, :, col] \
                    .transpose(1, 2, 0)
    else:
        gmodel = model        # the full model's states: its slopes below (none held)
        with np.errstate(all="ignore"):
            sim = simulate(model, table, grid, **options)
        status = np.asarray(sim.status)
        messages = list(sim.message)
        X = sim.states                                   # (R, n, G)
        Sx = sim.state_sensitivities                     # (R, n, k, G) or None
        srow, stable = np.arange(table.shape[0]), table
    # The values of a row at one time (several observables of a visit) share its states: the
    # model functions run once per (row, time) point, with the parameters as one contiguous
    # (P, M) array (a transposed view would be copied by every compiled call). On the grid
    # paths rows integrated once (equal parameters) are one row here too: at an individual
    # fit's start every subject has the same values, and usually the same times.
    first, point = _points(rr if mode == "exact" else srow[rr], tm)
    tp, rp = tm[first], rr[first]
    pp = np.ascontiguousarray(table[rp].T)                # (P, M)
    if mode == "exact":
        y = np.ascontiguousarray(y[:, first])
        S = S[:, :, first] if k else None
        with np.errstate(all="ignore"):
            ydot = model.rhs(tp, y, pp)
    else:
        h = grid[1] - grid[0]
        j = np.clip(np.floor(tp / h).astype(int), 0, grid.size - 2)
        s = (tp - grid[j]) / h
        # unique (state row, node) pairs needing slopes
        sp = srow[rp]
        key = np.concatenate([sp * grid.size + j, sp * grid.size + j + 1])
        uk, inv = unique_keys(key, X.shape[0] * grid.size)
        ur, un = uk // grid.size, uk % grid.size
        Yu = np.ascontiguousarray(X[ur, :, un].T)        # (n, U)
        pu = np.ascontiguousarray(stable[ur].T)
        tu = grid[un]
        with np.errstate(all="ignore"):
            Fu = gmodel.rhs(tu, Yu, pu)                  # (n, U)
        M = tp.shape[0]
        i0, i1 = inv[:M], inv[M:]
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10 = (6 * s**2 - 6 * s) / h, 3 * s**2 - 4 * s + 1
        d01, d11 = (-6 * s**2 + 6 * s) / h, 3 * s**2 - 2 * s
        y = h00 * Yu[:, i0] + h10 * h * Fu[:, i0] + h01 * Yu[:, i1] + h11 * h * Fu[:, i1]
        ydot = d00 * Yu[:, i0] + d10 * Fu[:, i0] + d01 * Yu[:, i1] + d11 * Fu[:, i1]
        y2 = np.ascontiguousarray(coarse_interpolant(gmodel, X, stable, grid, tp, sp))
        S = None
        if k:
            # contiguous: einsum over strided operands is ~10x slower
            Su = np.ascontiguousarray(Sx[ur, :, :, un].transpose(1, 2, 0))     # (n, k, U)
            with np.errstate(all="ignore"):
                Ju = gmodel.jac(tu, Yu, pu)              # (n, n, U)
                Pu = gmodel.dfdp_columns(sens_idx)(tu, Yu, pu)
            Sdu = np.einsum("ijU,jkU->ikU", Ju, Su) + Pu
            S = (h00 * Su[:, :, i0] + h10 * h * Sdu[:, :, i0] + h01 * Su[:, :, i1]
                 + h11 * h * Sdu[:, :, i1])
    kidx = problem.obs_model_index[oi]
    with np.errstate(all="ignore"):
        f = model.observe(tp, y, pp)[kidx, point]
        Hy = np.ascontiguousarray(model.dobs_dy(tp, y, pp)[kidx, :, point].T)   # (n, N)
        ydot_v = ydot[:, point]
        if _observables_read_time(model):
            dt = 1e-6 * np.maximum(1.0, np.abs(tp))
            ht = ((model.observe(tp + dt, y, pp) - model.observe(tp - dt, y, pp))
                  / (2 * dt))[kidx, point]
        else:
            ht = 0.0        # the difference quotient of a function that does not read t
        dfdtau = np.sum(Hy * ydot_v, axis=0) + ht
        dfdp = np.zeros((k, N))
        if k:
            # the estimated columns first: gathering all P columns per value costs more
            # than the kernel itself
            Hp = model.dobs_dp(tp, y, pp)[:, sens_idx][kidx, :, point].T   # (k, N)
            dfdp = np.einsum("iN,ikN->kN", Hy, S[:, :, point]) + Hp
        err = np.zeros(N)
        if mode != "exact":
            f2 = model.observe(tp, y2, pp)[kidx, point]
            err = np.abs(f - f2) / GRID_ERROR_DIVISOR
    return f, dfdp, dfdtau, status, messages, err


def _points(rr, tm):
    """The distinct (row, time) pairs of values with rows ``rr`` (N,) at times ``tm`` (N,):
    ``first`` (M,) the first value of each pair (in order of appearance), ``point`` (N,) the
    pair of each value."""
    N = tm.shape[0]
    if N == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    order = np.lexsort((tm, rr))
    r_s, t_s = rr[order], tm[order]
    new = np.ones(N, dtype=bool)
    new[1:] = (r_s[1:] != r_s[:-1]) | (t_s[1:] != t_s[:-1])
    group = np.cumsum(new) - 1                      # pair of each sorted value
    point = np.empty(N, dtype=int)
    point[order] = group
    first = order[new]                              # a value of each pair (the first sorted)
    return first, point


@functools.lru_cache(maxsize=64)
def _reads_time(source: str) -> bool:
    return len(re.findall(r"\b_t\b", source)) != 1


def _observables_read_time(model) -> bool:
    """Whether the model's observables depend on time explicitly (True when unknown): the
    generated ``observe`` reads ``_t`` beyond its one assignment."""
    source = getattr(model, "sources", {}).get("observe")
    return True if source is None else _reads_time(source)


def coarse_interpolant(model, X, table, grid, tm, rr):
    """States at ``tm`` from the Hermite interpolant on every other grid node (step 2h),
    for the grid path's error estimate: nodes ``2j`` of the row's own trajectory, so the
    estimate depends on the row alone, not on the batch's extent."""
    h2 = 2.0 * (grid[1] - grid[0])
    G = grid.size
    j = np.clip(np.floor(tm / h2).astype(int), 0, max((G - 3) // 2, 0))
    a, b = 2 * j, 2 * j + 2
    s = (tm - grid[a]) / h2
    key = np.concatenate([rr * G + a, rr * G + b])
    uk, inv = unique_keys(key, X.shape[0] * G)
    ur, un = uk // G, uk % G
    Yu = X[ur, :, un].T
    with np.errstate(all="ignore"):
        Fu = model.rhs(grid[un], Yu, table[ur].T)
    N = tm.shape[0]
    i0, i1 = inv[:N], inv[N:]
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * Yu[:, i0] + h10 * h2 * Fu[:, i0] + h01 * Yu[:, i1] + h11 * h2 * Fu[:, i1]


#: Integrate, on the grid path and in the compiled DOP853 rows, only the states that the
#: observables of an evaluation need (:meth:`progression.model.compiled.CompiledModel.
#: for_outputs`: the others, e.g. a ``[hazards]`` cumulative hazard, held at their initial
#: values, their equations skipped). On ``benchmarks/fit_individual.py`` (als_reduced,
#: ALSFRS-R, NfL, CRP) the right-hand side then costs 34 ns instead of 246 and rhs_jac 138
#: instead of 352 per call. The kept states follow the same equations: outputs agree with the
#: full model's to the integrator's tolerance (its error norm no longer includes the held
#: states, so the grid path's steps differ). False: the full model everywhere.
REDUCED_STATES = True
#: The same on the grid path (Rodas4 states and grid sensitivities), off by default: there it
#: changes the steps, and so the polish's start, and on the shipped
#: ``configs/als_synthetic_individual.toml`` 61 of 200 subjects then ended more than 1e-6
#: (up to 2e-4, along their flat k0 / time-offset valleys) from where the full model's grid
#: path leads, at -2 log L within 5e-7. On ``benchmarks/fit_individual.py`` it takes ~25% of
#: the fit's CPU time off (rhs 246 -> 34 ns). With REDUCED_STATES alone, only the polish's
#: compiled DOP853 rows integrate the view (at rtol 1e-10: the same outputs to the tolerance).
REDUCED_STATES_GRID = False


def _states_model(problem, oi):
    """The model to integrate for values of observables ``oi`` (model observable indices
    through ``problem.obs_model_index``): :data:`REDUCED_STATES` and a compiled model's
    :meth:`for_outputs` view, else ``problem.model``."""
    model = problem.model
    view = getattr(model, "for_outputs", None)
    if not REDUCED_STATES or view is None or len(oi) == 0:
        return model
    used = np.unique(np.asarray(problem.obs_model_index)[np.asarray(oi, dtype=int)])
    return view([model.observable_names[int(i)] for i in used])


#: The exact path's evaluations without sensitivities inside :func:`exact_rows_by_dop853` (the
#: individual fit's polish: its chord steps) integrate their rows by the compiled per-subject
#: DOP853 (:mod:`progression.simulate._dop853_rows`),
#: the rows over numba's threads, where ``simulate(method="auto")`` takes DOP853 at the
#: tolerance (numba kernels, rtol below ``AUTO_COMPILED_MIN_RTOL``; it then prefers the
#: stacked LSODA for large batches only because that takes fewer right-hand sides). The
#: accuracy contract is that of the stacked LSODA it replaces: each row's states at the
#: tolerances asked (EXACT_RTOL 1e-10 on the polish), its error norm over its own states only
#: (the stacked LSODA's covers a group's rows together), so a row's outputs do not depend on
#: the batch or the thread count. On ``benchmarks/fit_individual.py``'s polish (200 rows)
#: DOP853 takes ~1,900 right-hand sides per row against LSODA's ~1,150 (shared Adams steps),
#: 1.12x the CPU on one thread, about half the wall time on two idle cores; the states of the
#: two agree to 3e-8 relative (their tolerances). False: the stacked LSODA for every row.
EXACT_ROWS_DOP853 = True


_ROWS_DOP853 = contextvars.ContextVar("progression_exact_rows_dop853", default=False)


@contextlib.contextmanager
def exact_rows_by_dop853():
    """Within it, the exact path's evaluations without sensitivities take the compiled DOP853
    per row (:data:`EXACT_ROWS_DOP853`). Used by the individual fit's polish only: other
    callers of the exact path (population estimators' predictions, reports) keep the stacked
    LSODA and their numbers."""
    token = _ROWS_DOP853.set(True)
    try:
        yield
    finally:
        _ROWS_DOP853.reset(token)


def _rows_by_dop853(model, table, rr, tm, options, y, status, messages):
    """The exact path's rows without sensitivities by the compiled DOP853
    (:data:`EXACT_ROWS_DOP853`, inside :func:`exact_rows_by_dop853`): fills ``y`` (n, N)
    at the values of the rows that finished, their ``status`` (0) and ``messages``; returns
    which rows finished (R,), or None when this path does not apply (outside the context, no
    numba kernels, a method other than ``"auto"``, a tolerance where ``"auto"`` takes
    Rodas4, covariate-driven hidden parameters)."""
    if not (EXACT_ROWS_DOP853 and _ROWS_DOP853.get()) or getattr(model, "kernels",
                                                                    None) is None:
        return None
    if options["method"] != "auto" or getattr(model, "hidden_names", ()):
        return None
    from ..simulate import _api
    from ..simulate._dop853_rows import AVAILABLE, row_states

    if not AVAILABLE or _api._resolve_method(model, "auto", options["rtol"])[1] != "DOP853":
        return None
    R, N = table.shape[0], tm.shape[0]
    if R == 0 or N == 0:
        return None
    # each row's distinct output times, sorted: (row, time) pairs in lexicographic order
    order = np.lexsort((tm, rr))
    r_s, t_s = rr[order], tm[order]
    new = np.ones(N, dtype=bool)
    new[1:] = (r_s[1:] != r_s[:-1]) | (t_s[1:] != t_s[:-1])
    pair = np.cumsum(new) - 1
    pr, pt = r_s[new], t_s[new]                          # the pairs (row, time), sorted
    counts = np.bincount(pr, minlength=R)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(pr.size) - starts[pr]                # each pair's place in its row
    times = np.zeros((R, max(int(counts.max()), 1)))
    times[pr, col] = pt
    states, code = row_states(model, table, times, counts, options["rtol"], options["atol"],
                              options["max_step"], options["max_steps"])
    done = code == 0
    value_pair = np.empty(N, dtype=int)
    value_pair[order] = pair
    vr, vc = pr[value_pair], col[value_pair]
    ok = done[vr]
    y[:, ok] = states[vr[ok], vc[ok]].T
    status[done] = 0
    for r in np.nonzero(done)[0]:
        messages[r] = "ok"
    return done


def _span_order(R, rr, tm):
    """Rows ``0..R-1`` sorted by their last output time (values at ``tm`` (N,) with rows
    ``rr`` (N,); ties in row order): the order in which the exact path forms its groups of
    :data:`EXACT_GROUP_VALUES` rows when a batch has more. Measured on
    ``benchmarks/fit_individual.py``'s polish evaluation (200 rows, rtol 1e-10, outputs only,
    2 groups; CPU seconds, median of 9 interleaved runs on 2 shared cores, load 6.5,
    2026-12-01): 0.0573 sorted against 0.0609 in row order (groups of 67 0.0578, of 50
    0.0606); -2 log L of a row moves by at most 3e-9 (the stacked LSODA's error norm covers
    a group's rows together)."""
    last = np.full(R, -np.inf)
    np.maximum.at(last, rr, tm)
    return np.argsort(last, kind="stable")
