"""The stacked system of a batch of subjects, and its piecewise integration.

All subjects of a batch are solved together as one stacked system (subject after subject),
with the model's exact Jacobian in the structure the integrator can use: banded for LSODA,
block-sparse for BDF and Radau. Integration is piecewise across switch times; events are
bracketed per step and located at the end (:mod:`._events`); a failing batch is re-solved
subject by subject to isolate who failed.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..model.compiled import CompiledModel
from ._diagnose import _diagnose, _failure_messages
from ._events import _Crossings, _settle_events
from ._registry import AUTO_FALLBACK, FAILED, METHODS, _per_subject_solver
from ._switches import _apply_switch, _as_subject_values

_UNSET = object()


def _compiled_batch(function):
    """The compiled batch loop ``f(t, ts, y, ys, p, ps, out)`` behind a model function of the
    numba backend (:class:`progression.model._kernels.BatchFunction`; numba compiles it on
    its first call); None for numpy and Python model functions, and for one whose compilation
    failed (the wrapper then runs the numpy code)."""
    if getattr(function, "_failed", True) or not hasattr(function, "batch"):
        return None
    if function.batch is None and not function._resolve():
        return None
    return function.batch


class _Stacked:
    """The stacked system of ``m`` subjects, optionally augmented with sensitivities.

    The flat state vector holds, subject after subject, a block of ``(1 + k) * n`` values: the
    states, then the sensitivities with respect to each of the ``k`` parameters.
    """

    def __init__(self, model, m: int, sens_index: np.ndarray, layout: str | None):
        self.model = model
        self.m, self.n, self.k = m, model.n_states, len(sens_index)
        self.sens_index = sens_index
        self.layout = layout
        self._batch = {}   # compiled loop behind rhs / sensitivity_rhs (see fun), or None
        self._t = np.zeros(1)
        self._out = None   # fun's output buffer
        self.pa = None     # p joined with a, set while p and a cannot change (odeint segment)
        self.p = None      # current parameters (P, m)
        self.a = None      # d p_current / d p_base for the sensitivity parameters (k, m)
        n, k = self.n, self.k
        self.block = (1 + k) * n
        self._sens_rhs = model.sensitivity_rhs(sens_index) if self.k else None
        self.size = m * self.block
        if layout == "sparse":
            pattern = model.jacobian_sparsity | np.eye(n, dtype=bool)
            ii, jj = np.nonzero(pattern)
            self._nz = (ii, jj)
            offset = (np.arange(m)[:, None] * self.block + np.arange(1 + k)[None, :] * n)
            rows = offset[None, :, :] + ii[:, None, None]
            cols = offset[None, :, :] + jj[:, None, None]
            self._rows, self._cols = rows.ravel(), cols.ravel()
        if layout == "banded":
            i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            self._band_rows = (n - 1 + i - j).ravel()
            self._band_cols = j.ravel()

    def split(self, flat: np.ndarray):
        Y = flat.reshape(self.m, 1 + self.k, self.n)
        return Y[:, 0, :].T, Y[:, 1:, :]

    def join(self, y: np.ndarray, S: np.ndarray | None) -> np.ndarray:
        Y = np.empty((self.m, 1 + self.k, self.n))
        Y[:, 0, :] = y.T
        if self.k:
            Y[:, 1:, :] = S
        return Y.ravel()

    def fun(self, t, flat):
        # C-contiguous float64 arguments take the compiled batch functions' copy-free call
        # (odeint calls this ~1,000 times per solve: the copies were a third of a fit's time)
        function = self._sens_rhs if self.k else self.model.rhs
        if not self.k:
            y = np.ascontiguousarray(flat.reshape(self.m, self.n).T)
            p = self._contiguous_p()
        else:
            # (m, (1+k) n) -> ((1+k) n, m): the generated function wants subjects last;
            # p changes in place at switches and covariate times: joined afresh at every call
            # unless a caller that holds p fixed (one odeint segment) joined it (self.pa)
            y = np.ascontiguousarray(flat.reshape(self.m, self.block).T)
            p = self.pa if self.pa is not None else np.concatenate(
                [self.p, self.a]).astype(np.float64, copy=False)
        batch = self._batch.get(self.k > 0, _UNSET)
        if batch is _UNSET:
            batch = self._batch[self.k > 0] = _compiled_batch(function)
        if batch is not None:
            # the compiled loop itself, without the wrapper's checks (~3 us of ~8 a call);
            # the result is copied out by flatten() below, so one buffer serves every call
            out = self._out
            if out is None or out.shape != (y.shape[0], self.m):
                out = self._out = np.zeros((y.shape[0], self.m))
            else:
                out[...] = 0.0
            self._t[0] = t
            try:
                batch(self._t, 0, y, 1, p, 1, out)
                return out.T.flatten()     # a copy always (scipy's steppers keep f)
            except Exception:  # noqa: BLE001 - the wrapper decides (numpy code, or raise)
                self._batch[self.k > 0] = None
        return function(t, y, p).T.ravel()

    def _contiguous_p(self):
        p = self.p
        if not (p.flags.c_contiguous and p.dtype == np.float64 and p.flags.writeable):
            p = np.ascontiguousarray(p, dtype=np.float64)
        return p

    def jac(self, t, flat):
        # The sensitivity blocks get the state Jacobian on their diagonal and the coupling
        # d(J S)/dy is left out: a modified-Newton Jacobian, exact where it matters (the
        # error control uses the true right-hand side).
        y, _ = self.split(flat)
        J = self.model.jac(t, y, self.p)
        n, m, k = self.n, self.m, self.k
        if self.layout == "banded":
            packed = np.zeros((2 * n - 1, m, 1 + k, n))
            packed[self._band_rows, :, :, self._band_cols] = J.reshape(n * n, m)[:, :, None]
            return packed.reshape(2 * n - 1, -1)
        ii, jj = self._nz
        data = np.broadcast_to(J[ii, jj, :][:, :, None], (len(ii), m, 1 + k))
        import scipy.sparse as sps

        return sps.csc_matrix((data.ravel(), (self._rows, self._cols)),
                              shape=(self.size, self.size))


def _odeint_states(model, table, times, rtol, atol, max_step, max_steps, covariates=None):
    """:func:`solve_states` through ``scipy.integrate.odeint`` (LSODA with the banded Jacobian).

    One call into ODEPACK integrates the whole stacked system and returns every output time:
    no Python work per step, only per right-hand-side evaluation. A failed stacked solve is
    redone subject by subject so that one bad subject does not fail the others. ``covariates``
    (a :class:`~._covariates.CovariateSchedule`) must not change inside the span: the caller
    sends schedules that do through the piecewise path.
    """
    from scipy.integrate import ODEintWarning, odeint

    m, n = table.shape[0], model.n_states
    states = np.full((m, n, times.size), np.nan)
    status = np.zeros(m, dtype=int)
    message = ["ok"] * m
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}

    def solve(rows):
        sys = _Stacked(model, rows.size, np.zeros(0, dtype=int), "banded")
        sys.p = table[rows].T.copy()
        if covariates is not None:
            sys.p = covariates.extend(sys.p, float(times[0]), rows)
        with np.errstate(all="ignore"):
            y0 = model.initial(float(times[0]), None, sys.p).T.ravel()
        if times.size == 1:
            return y0.reshape(rows.size, n)[:, :, None], "ok"
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", ODEintWarning)
            try:
                Y, info = odeint(sys.fun, y0, times, Dfun=sys.jac, ml=n - 1, mu=n - 1,
                                 tfirst=True, full_output=True, rtol=rtol, atol=atol,
                                 mxstep=int(max_steps),
                                 hmax=float(max_step) if np.isfinite(max_step) else 0.0)
            except (RuntimeError, ValueError, ZeroDivisionError) as exc:
                return None, f"{type(exc).__name__}: {exc}"
        stats["nfev"] += int(info["nfe"][-1])
        stats["njev"] += int(info["nje"][-1])
        stats["steps"] += int(info["nst"][-1])
        if info["message"] != "Integration successful." or not np.all(np.isfinite(Y)):
            text = (f"ODEPACK: {info['message'].rstrip('.')}"
                    if info["message"] != "Integration successful." else
                    "non-finite values in the solution")
            if info["message"].startswith("Excess work"):
                text = f"more than {max_steps} steps between two output times"
            return None, text
        return Y.reshape(times.size, rows.size, n).transpose(1, 2, 0), "ok"

    X, text = solve(np.arange(m))
    if X is not None:
        states[:] = X
    else:
        for i in range(m):
            Xi, text_i = X, text
            if m > 1:
                Xi, text_i = solve(np.array([i]))
            if Xi is None:
                status[i] = FAILED
                message[i] = _odeint_failure(model, table[i:i + 1], times, rtol, atol,
                                             max_step, max_steps, text_i, covariates, i)
            else:
                states[i] = Xi[0]
    return states, status, message, stats


def _odeint_failure(model, row, times, rtol, atol, max_step, max_steps, text,
                    covariates=None, subject=0) -> str:
    """The failure message of one subject whose odeint solve failed.

    odeint reports neither where nor in which state it failed (its outputs after a failure
    are undefined), so the subject is re-run step by step through scipy's LSODA class, which
    stops at the failing step (at most ``max_steps`` steps; odeint's limit is per output
    interval). ``text`` is odeint's own reason, kept in the message.
    """
    limit = int(min(max_steps, 20_000))
    index = np.array([subject])
    m_total = 1 if covariates is None else covariates.n_subjects
    again = _solve_stacked(model, row, index, m_total, times, float(times[0]), {},
                           (), "LSODA", rtol, atol, max_step, np.zeros(0, dtype=int), limit,
                           False, lean=True, label=False, covariates=covariates)
    if again["failure"] is None:
        return f"integration failed ({text})"
    t_lo, t_hi, y_lo, y_hi = again["failure"]
    p = row[0] if covariates is None else covariates.extend(row.T, t_lo, index)[:, 0]
    return (f"integration failed at t={t_lo:.10g} ({text}): "
            + _diagnose(model, t_lo, t_hi, np.asarray(y_lo), np.asarray(y_hi), p))


#: LSODA segments without model events go through ``scipy.integrate.odeint`` (one call into
#: ODEPACK per segment) instead of scipy's ``LSODA`` stepper class (one Python round trip per
#: step): the same ODEPACK integrator with the same Jacobian, tolerances and stop at the
#: segment's end (``tcrit``), so results agree within the tolerance; on the exact path of a
#: population fit (rtol 1e-10, ~500 steps per stacked solve) it removes about half the cost.
#: False restores the stepper class everywhere (used by the equivalence tests).
_ODEINT_SEGMENTS = True


def _odeint_segment(sys, flat, seg_start, seg_end, times, next_out, rtol, atol, max_step,
                    max_steps, record, stats):
    """Integrate the stacked system ``sys`` over one segment with ``odeint``.

    Records the outputs at ``times[next_out:]`` that fall in ``[seg_start, seg_end)`` (an
    output at ``seg_end`` belongs to the next segment, after its switches) through
    ``record``.

    Returns
    -------
    (flat_end, next_out) or None
        The stacked state at ``seg_end`` and the next unrecorded output; None when the
        integration did not succeed (more than ``max_steps`` steps in all, an ODEPACK
        failure or non-finite values), so that the caller redoes the segment step by step
        and reports the failure where it happens.
    """
    from scipy.integrate import ODEintWarning, odeint

    j_end = int(np.searchsorted(times, seg_end, side="left"))
    out_t = times[next_out:j_end]
    inner = np.unique(out_t[out_t > seg_start])
    tout = np.concatenate([[seg_start], inner, [seg_end]])
    n = sys.n
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", ODEintWarning)
        try:
            if sys.k:
                # p and a are fixed within a segment (switches act between segments)
                sys.pa = np.concatenate([sys.p, sys.a]).astype(np.float64, copy=False)
            Y, info = odeint(sys.fun, flat, tout, Dfun=sys.jac, ml=n - 1, mu=n - 1,
                             tfirst=True, full_output=True, rtol=rtol, atol=atol,
                             tcrit=np.array([seg_end]), mxstep=int(min(max_steps, 2**31 - 1)),
                             hmax=float(max_step) if np.isfinite(max_step) else 0.0)
        except (RuntimeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError):
            return None
        finally:
            sys.pa = None
    steps = int(info["nst"][-1])
    if (info["message"] != "Integration successful." or steps > max_steps
            or not np.all(np.isfinite(Y))):
        return None
    stats["nfev"] += int(info["nfe"][-1])
    stats["njev"] += int(info["nje"][-1])
    stats["steps"] += steps
    if out_t.size:
        rows = np.searchsorted(tout, out_t)
        record(out_t, Y[rows].T, np.arange(next_out, j_end))
    return Y[-1], j_end


def _record_all(model, tt, flat_cols, j_idx, p, sens_index, a_all, lean, out):
    """Outputs at all times ``tt`` (L,) from stacked columns ``flat_cols`` (size, L) at
    once, every subject alive: the observation functions are called once on ``L * m``
    columns (time-major) instead of once per output time."""
    states, obs, dstates, dobs = out
    m, n, L = states.shape[0], states.shape[1], len(j_idx)
    k = dstates.shape[2]
    Y = flat_cols.T.reshape(L, m, 1 + k, n)
    yy = Y[:, :, 0, :]                                    # (L, m, n)
    states[:, :, j_idx] = yy.transpose(1, 2, 0)
    if lean:
        return
    K = obs.shape[1]
    if k:
        SS = Y[:, :, 1:, :]                               # (L, m, k, n)
        dstates[:, :, :, j_idx] = SS.transpose(1, 3, 2, 0)
    if not K:
        return                                            # states (and sensitivities) only
    yv = yy.transpose(2, 0, 1).reshape(n, L * m)
    pv = np.tile(p, (1, L))
    tv = np.repeat(np.asarray(tt, dtype=float), m)
    obs[:, :, j_idx] = model.observe(tv, yv, pv).reshape(K, L, m).transpose(2, 0, 1)
    if k:
        SSv = SS.reshape(L * m, k, n)
        dh = (np.einsum("kiM,Mqi->Mkq", model.dobs_dy(tv, yv, pv), SSv)
              + (model.dobs_dp(tv, yv, pv)[:, sens_index, :]
                 * np.tile(a_all[sens_index], (1, L))[None]).transpose(2, 0, 1))
        dobs[:, :, :, j_idx] = dh.reshape(L, m, K, k).transpose(1, 2, 3, 0)


#: Largest batch that ``prefer_compiled`` sends through the compiled per-subject Rodas4
#: (:mod:`._compiled`); larger batches go through the stacked system. No crossover was found:
#: CPU ms per patient, compiled vs stacked LSODA, 60 months, 13 outputs, rtol 1e-6, 2-core
#: machine shared, 2026-11-30 (numba kernels on both paths):
#:
#: ============  ==========  ==========  ==========  ==========  ==========
#: model         1           10          100         1,000       10,000
#: ============  ==========  ==========  ==========  ==========  ==========
#: als_systemic  0.36/11.5   0.29/1.59   0.28/0.58   0.28/0.36   0.28/0.52
#: als_reduced   0.21/7.8    0.19/1.39   0.18/0.63   0.18/0.66   0.19/1.18
#: ============  ==========  ==========  ==========  ==========  ==========
#:
#: and with 5 forward sensitivities 4-8 ms per patient compiled against 1-8 s stacked. The
#: bound is the largest batch measured, not a crossover.
SMALL_BATCH = 10_000


def _solve_batch(model, table, index, m_total, times, t0, initial, switches, method, rtol,
                 atol, max_step, sens_index, max_steps, terminal_events, lean=False,
                 label=True, covariates=None, events=True, prefer_compiled=False,
                 own_times=None, observe=True) -> dict:
    """Solve one stacked batch; on failure, re-solve its subjects one by one.

    ``prefer_compiled``: method ``"auto"`` or ``"Rodas4"`` resolved to the compiled path
    (True: Rodas4; ``"DOP853"``: the compiled DOP853 of tight tolerances); a batch of at most
    :data:`SMALL_BATCH` subjects (any batch with ``method="Rodas4"``) of a model with
    compiled kernels then goes through the compiled per-subject integrator
    (:mod:`._compiled`), whose result dict says so (``"method"``); a larger ``"auto"`` batch
    goes through the stacked LSODA. ``own_times`` (compiled path only): per subject, the
    columns of ``times`` it needs (see :func:`._compiled.solve_small_batch`).
    """
    if (prefer_compiled and (len(index) <= SMALL_BATCH or method == "Rodas4")
            and getattr(model, "kernels", None) is not None):
        from . import _compiled  # numba is imported only when a model has kernels

        if _compiled.AVAILABLE:
            integrator = "DOP853" if prefer_compiled == "DOP853" else "Rodas4"
            return _compiled.solve_small_batch(model, table, index, m_total, times, t0,
                                               initial, switches, rtol, atol, max_step,
                                               sens_index, max_steps, terminal_events, lean,
                                               label, covariates, events, integrator,
                                               own_times, observe)
    if method in ("auto", "Rodas4"):
        method = AUTO_FALLBACK
    out = _solve_stacked(model, table, index, m_total, times, t0, initial, switches, method,
                         rtol, atol, max_step, sens_index, max_steps, terminal_events, lean,
                         label, covariates, events, observe)
    if out["failed"] is None or len(index) == 1:
        return out
    singles = [_solve_stacked(model, table[i:i + 1], index[i:i + 1], m_total, times, t0,
                              initial, switches, method, rtol, atol, max_step, sens_index,
                              max_steps, terminal_events, lean, label, covariates, events,
                              observe)
               for i in range(len(index))]
    merged = {key: np.concatenate([s[key] for s in singles])
              for key in ("states", "observables", "status", "dstates", "dobs")}
    merged["message"] = [s["message"][0] for s in singles]
    merged["events"] = {name: [s["events"][name][0] for s in singles] for name in out["events"]}
    merged["stats"] = {key: out["stats"][key] + sum(s["stats"][key] for s in singles)
                       for key in out["stats"]}
    merged["failed"] = None
    return merged


#: A step ending within this many ulp of its segment's end ends the segment (see the loop).
_END_ULPS = 8


def _solve_stacked(model, table, index, m_total, times, t0, initial, switches, method, rtol,
                   atol, max_step, sens_index, max_steps, terminal_events, lean=False,
                   label=True, covariates=None, events=True, observe=True) -> dict:
    """Integrate one stacked batch; ``lean`` records states only (no observables, no events);
    ``events=False`` records observables but neither locates nor records the model's events
    (every event list comes back empty; fits read only states and observables);
    ``label``: failure messages name the subject by its index; ``covariates``: a
    :class:`~._covariates.CovariateSchedule` for ``m_total`` subjects, whose values fill the
    hidden parameter rows, updated at every recorded time (an edge of the piecewise
    integration, like a switch time); ``observe=False``: states and their sensitivities
    only (no observables: the result's observable arrays have 0 rows)."""
    m, n, T = table.shape[0], model.n_states, times.size
    k = len(sens_index)
    K = 0 if lean or not observe else len(model.observable_names)
    model_events = () if lean or not events else model.events
    solver_cls, layout = METHODS[method]
    if m > 1 and method != "LSODA":
        solver_cls = _per_subject_solver(method)
    sys = _Stacked(model, m, sens_index, layout)
    P = table.shape[1]
    p = table.T.copy()
    if covariates is not None:
        p = covariates.extend(p, t0, index)
    a_all = np.ones_like(p)
    sys.p, sys.a = p, a_all[sens_index]

    y = model.initial(t0, None, p)
    S = model.dinitial_dp(t0, None, p)[:, sens_index, :].transpose(2, 1, 0).copy() if k else None
    for name, value in initial.items():
        i = model.state_index(name)
        y[i] = _as_subject_values(value, m_total, f"initial[{name!r}]")[index]
        if k:
            S[:, :, i] = 0.0

    states = np.full((m, n, T), np.nan)
    obs = np.full((m, K, T), np.nan)
    dstates = np.full((m, n, k, T), np.nan) if k else np.zeros((m, n, 0, T))
    dobs = np.full((m, K, k, T), np.nan) if k else np.zeros((m, K, 0, T))
    status = np.zeros(m, dtype=int)
    message = ["ok"] * m
    alive = np.ones(m, dtype=bool)
    end_time = np.full(m, np.inf)
    events = {e.name: [[] for _ in range(m)] for e in model_events}
    event_sign = np.array([e.sign for e in model_events])
    terminal = np.array([e.terminal and terminal_events for e in model_events], dtype=bool)
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}
    crossings = _Crossings(model, sys)
    # generated functions take a vector of times (one per column); Python models may not
    vector_time = isinstance(model, CompiledModel)

    def record(tt: np.ndarray, flat_cols: np.ndarray, j_idx: np.ndarray):
        """Store outputs at times tt (len L) from stacked columns (size, L)."""
        if vector_time and len(j_idx) > 1 and alive.all():
            _record_all(model, tt, flat_cols, j_idx, p, sens_index, a_all, lean,
                        (states, obs, dstates, dobs))
            return
        for col, j in enumerate(j_idx):
            yy, SS = sys.split(flat_cols[:, col])
            show = alive | (end_time >= tt[col])
            states[show, :, j] = yy.T[show]
            if lean:
                continue
            if k:
                dstates[show, :, :, j] = SS.transpose(0, 2, 1)[show]
            if not K:
                continue
            o = model.observe(tt[col], yy, p)
            obs[show, :, j] = o.T[show]
            if k:
                dh = (np.einsum("kim,mqi->mkq", model.dobs_dy(tt[col], yy, p), SS)
                      + (model.dobs_dp(tt[col], yy, p)[:, sens_index, :]
                         * a_all[sens_index][None]).transpose(2, 0, 1))
                dobs[show, :, :, j] = dh[show]

    t_end = float(times[-1])
    bounds = {float(sw.time) for sw in switches if t0 <= sw.time <= t_end}
    if covariates is not None:
        # The recorded times of this batch's subjects (not of other batches' subjects).
        own = covariates.subject_breaks(index)
        bounds |= {float(b) for b in own[(own > t0) & (own <= t_end)]}
    bounds = sorted(bounds)
    edges = [t0] + [b for b in bounds if b > t0] + ([t_end] if t_end > t0 else [])
    edges = sorted(set(edges))
    next_out = 0
    failed = None
    failure = None     # (t before, t after, stacked vector before, after) of the failing step
    ev_prev = model.event_values(t0, y, p) if model_events else None

    for seg, seg_start in enumerate(edges):
        if covariates is not None and seg:
            # Right-continuous: the piece that starts here (before any switch at this time).
            p[P:] = covariates.hidden(seg_start, index)
        for sw in switches:
            if float(sw.time) == seg_start:
                y, S = _apply_switch(model, sw, p, a_all, y, S, sys, index, m_total)
        sys.a = a_all[sens_index]
        if model_events:
            ev_prev = model.event_values(seg_start, y, p)
        last = seg == len(edges) - 1
        seg_end = edges[seg + 1] if not last else seg_start
        flat = sys.join(y, S)
        if last or abs(seg_end - seg_start) <= _END_ULPS * np.spacing(
                max(abs(seg_start), abs(seg_end))):
            # Outputs at the final edge (or a zero-length span) come straight from the state.
            j_idx = np.nonzero(times == seg_start)[0] if last else np.array([], int)
            j_idx = j_idx[j_idx >= next_out]
            if j_idx.size:
                record(np.full(j_idx.size, seg_start), np.repeat(flat[:, None], j_idx.size, 1),
                       j_idx)
                next_out = j_idx[-1] + 1
            continue
        if method == "LSODA" and not model_events and _ODEINT_SEGMENTS:
            done = _odeint_segment(sys, flat, seg_start, seg_end, times, next_out, rtol, atol,
                                   max_step, max_steps, record, stats)
            if done is not None:
                flat_end, next_out = done
                y, S = sys.split(flat_end)
                S = S.copy() if k else None
                y = y.copy()
                continue
            # a failed segment is redone step by step below, which locates and reports the
            # failure exactly as before
        kwargs = {"rtol": rtol, "atol": atol, "max_step": max_step}
        if layout == "banded":
            kwargs.update(jac=sys.jac, lband=n - 1, uband=n - 1)
        elif layout == "sparse":
            kwargs.update(jac=sys.jac)
        # Non-finite starting values or slopes fail here: some scipy solvers would otherwise
        # loop for ever on a NaN first step size (RK45's step-size control never ends).
        with np.errstate(all="ignore"):
            start_ok = np.all(np.isfinite(flat)) and np.all(np.isfinite(sys.fun(seg_start, flat)))
        if not start_ok:
            failed = "non-finite values at the start of the integration"
            failure = (seg_start, seg_start, flat, flat)
            break
        with np.errstate(all="ignore"):
            solver = solver_cls(sys.fun, seg_start, flat, seg_end, vectorized=False, **kwargs)
        solver._block = sys.block
        steps = 0
        while solver.status == "running":
            t_old, flat_old = solver.t, np.array(solver.y, copy=True)
            with np.errstate(all="ignore"):
                try:
                    msg = solver.step()
                except (RuntimeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
                    msg, solver.status = f"{type(exc).__name__}: {exc}", "failed"
            steps += 1
            # A step that does not advance t (LSODA goes on with t + h == t near a
            # finite-time blow-up, up to max_steps times) is a failure too.
            stalled = solver.status == "running" and solver.t == t_old
            if (solver.status == "failed" or not np.all(np.isfinite(solver.y))
                    or steps > max_steps or stalled):
                if stalled:
                    failed = "the step size fell below the spacing of floating-point numbers"
                elif steps > max_steps:
                    failed = f"more than {max_steps} steps"
                elif solver.status == "failed":
                    failed = f"the solver stopped: {msg}" if msg else "the solver stopped"
                else:
                    failed = "non-finite values in the solution"
                failure = (t_old, float(solver.t), flat_old, np.array(solver.y, copy=True))
                break
            t_new = solver.t
            if (solver.status == "running"
                    and abs(seg_end - t_new) <= _END_ULPS * np.spacing(max(abs(t_new),
                                                                           abs(seg_end)))):
                # LSODA may stop a rounding error short of the segment's end (t + h != tcrit);
                # its next call, with tout - t below 2 ulp, is "Illegal input" (a modelled
                # infusion's end, a sum of times, met it): the segment is done.
                solver.status = "finished"
            dense = None
            # Events first, so that outputs after a terminal event in this step are NaN.
            if model_events:
                y_new, _ = sys.split(solver.y)
                ev_new = model.event_values(t_new, y_new, p)
                crossing = (((event_sign[:, None] <= 0) & (ev_prev > 0) & (ev_new <= 0))
                            | ((event_sign[:, None] >= 0) & (ev_prev < 0) & (ev_new >= 0)))
                crossing &= alive[None, :]
                if crossing.any():
                    dense = solver.dense_output()
                    crossings.add(dense, t_old, t_new, crossing, ev_prev, p)
                    # A terminal crossing ends the subject within this step; its exact time
                    # (and the NaN-ing of outputs after it) is settled once all are located.
                    ends = (crossing & terminal[:, None]).any(axis=0)
                    alive[ends] = False
                    end_time[ends] = np.minimum(end_time[ends], t_new)
                ev_prev = ev_new
            # Outputs inside this step (an output at seg_end belongs to the next segment).
            j_hi = np.searchsorted(times, t_new, side="left")
            if j_hi > next_out:
                if dense is None:
                    dense = solver.dense_output()
                tt = times[next_out:j_hi]
                record(tt, np.atleast_2d(dense(tt)).reshape(sys.size, -1),
                       np.arange(next_out, j_hi))
                next_out = j_hi
            if not alive.any():
                break
        stats["nfev"] += getattr(solver, "nfev", 0)
        stats["njev"] += getattr(solver, "njev", 0)
        stats["nlu"] += getattr(solver, "nlu", 0)
        stats["steps"] += steps
        if failed is not None or not alive.any():
            break
        y, S = sys.split(solver.y)
        S = S.copy() if k else None
        y = y.copy()

    _settle_events(model, crossings, events, terminal, times, end_time, status, message, states,
                   obs, dstates, dobs)
    if failed is not None:
        status[:] = FAILED
        message = _failure_messages(model, sys, failed, failure, p,
                                    index if label else None)
    if not lean and not model_events:
        events = {e.name: [[] for _ in range(m)] for e in model.events}
    return {"states": states, "observables": obs, "status": status, "message": message,
            "events": {name: [np.array(v) for v in lists] for name, lists in events.items()},
            "dstates": dstates, "dobs": dobs, "stats": stats, "failed": failed,
            "failure": failure}
