"""A cached exact-path evaluator for the population core: FOCE-I without per-call Python.

:class:`~._adapter.ProblemModel` evaluates a batch of subjects through
:meth:`Problem.evaluate <progression.fit.problem.Problem.evaluate>`: simulation units, dose
records expanded into switches, the union grid, ``simulate()``'s checks, the compiled
per-subject DOP853, the error models, the per-row residual lists, and back. For an inner
(eta) problem that is called 600 times on the same subjects with new parameters only, all but
the integration is the same work every time (measured on R's Theoph: ~2 ms of Python per call
around ~0.4 ms in the compiled integrator).

:class:`FastExactModel` does that work once. At construction it expands every subject's dose
records into switches (:func:`progression.simulate._dosing.expand_doses`, the same function
``simulate()`` uses), works out each subject's observation times, output columns and
observables, and keeps them; a call then builds the start states (the switches at t0 applied
by :func:`progression.simulate._switches._apply_switch`, vectorised over the rows; kept from
construction when they cannot depend on the estimated parameters), runs every
row in one call of the compiled DOP853 (:func:`progression.simulate._dop853_numba.dop_batch`,
what ``simulate()`` runs for these rows) and reads predictions and derivatives on the core's
scale. Second derivatives (``predict_hessian``) are central differences of the exact
derivatives, the ``2 D`` perturbed copies of every row in the same one call, at a tighter
tolerance (:data:`HESSIAN_RTOL`) so that the integrator's error divided by the step stays far
below the differences' truncation.

Doses after t0 (repeated doses, infusion ends) are the general path's switches reduced to
their effect at construction (:meth:`FastExactModel._later_actions`: a state shifted by a
constant, a parameter that is not estimated set to a value; checked by applying each switch
with the general path's own function at three draws of states and estimated parameters): a
call integrates every row's segments between them in the same one compiled call
(:func:`_seg_row`), with the general path's segment boundaries and its outputs at a dose
time (those after the dose). Covariate effects on typical values (weight, Apgar score in
pheno) are in the individual parameters the core passes and need nothing here. Model
covariates (the model file's ``[covariates]``, inputs of the ODE, constant or time-varying)
are ``simulate()``'s hidden parameter rows from the same schedule
(:func:`progression.simulate._covariates.covariate_schedule`): their values at t0 join the
parameters, and each recorded change inside a subject's span is an action that sets them
(before the switches at that time, the general path's order).

It is used only where it gives the numbers of the general path: the compiled DOP853
available; no conditions, survival term, located events, estimated or event-anchored time
offset; no switch after t0 that scales a state, reads another, sets a steady state or
depends on an estimated parameter (an estimated bioavailability or lag time: the general
path carries their sensitivities across the switch, which these actions do not); and only
after a check at
construction that its predictions and derivatives equal the general path's for every
subject (relative 1e-9); otherwise :func:`fast_model` returns the
:class:`~._adapter.ProblemModel` unchanged. Rows the compiled integrator hands back (a stiff
subject) or that fail are evaluated by the general path, so failure handling and messages
are the general path's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["FastExactModel", "fast_model", "HESSIAN_RTOL", "HESSIAN_STEP"]

#: Tolerance of the perturbed copies behind ``predict_hessian``: central differences divide
#: the integrator's error (~rtol of the derivatives) by the step. Measured against the closed
#: form on Theoph (step 1e-4, largest error relative to the largest entry): rtol 1e-10 5e-7,
#: 1e-11 4e-8, 1e-12 5e-9, 1e-13 3e-9 (the differences' truncation); 1e-13 costs ~1.3x the
#: steps of 1e-12 (DOP853: steps ~ rtol^(-1/8)).
HESSIAN_RTOL, HESSIAN_ATOL = 1e-12, 1e-14
#: Step of those differences on the estimation scale (Problem.evaluate's HESSIAN_STEP).
HESSIAN_STEP = 1e-4
#: Largest relative difference from the general path accepted by the check at construction.
CHECK_RTOL = 1e-9


from ...simulate._dop853_numba import AVAILABLE as _NUMBA  # noqa: E402

if _NUMBA:
    from numba import njit, prange

    from ...simulate._dop853_numba import _batch_row, _segment

    @njit(cache=True, error_model="numpy", parallel=True)
    def _par_batch(KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout, Oout,
                   DOout, record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y,
                   SKL, use_sk):
        """:func:`progression.simulate._dop853_numba.dop_batch` with the rows spread over
        numba's threads (``prange``): the rows are independent subjects or perturbed copies,
        each integrated by the same per-row function into its own slices of the outputs, so
        the numbers are those of the serial call whatever the thread count."""
        for s in prange(Y0.shape[0]):
            _batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout,
                       Oout, DOout, record_obs, rtol, atol, max_step, max_steps, info_i,
                       info_f, fail_y, SKL, use_sk)

    @njit(cache=True, error_model="numpy")
    def _seg_row(KL, t0, t1, y, S, p, sidx, a, tt, lo, hi, act_time, act_kind, act_idx,
                 act_val, Yout, Sout, Oout, DOout, record_obs, rtol, atol, max_step,
                 max_steps, info_i, info_f, fail_y, SKL, use_sk):
        """One row over [t0, t1] in segments cut at its actions ``lo:hi`` (sorted by time;
        those after t1 ignored): the general path's per-subject loop
        (:func:`progression.simulate._compiled.solve_small_batch`) with its switches
        reduced to their effect (a state shifted by a constant, a parameter that is not
        estimated set to a value). Outputs at an action's time are those after it (the
        segment ending there is not closed; the next one records them at its start); the
        last segment is closed at ``t1`` unless an action falls there, then the empty
        segment ``[t1, t1]`` records them. Stops at the first segment that fails or is
        stiff (its status stays in ``info_i``)."""
        no_sign = np.zeros(0, dtype=np.int64)
        no_term = np.zeros(0, dtype=np.bool_)
        no_index = np.zeros(1, dtype=np.int64)
        no_time = np.zeros(1)
        j = 0
        start = t0
        q = lo
        while True:
            # the next action time in (start, t1]
            while q < hi and act_time[q] <= start:
                q += 1
            if q < hi and act_time[q] <= t1:
                b = act_time[q]
                _segment(KL, start, b, y, S, p, sidx, a, tt, j, Yout, Sout, Oout, DOout,
                         record_obs, no_sign, no_term, False, no_index, no_time, rtol, atol,
                         max_step, max_steps, True, info_i, info_f, fail_y, False, SKL,
                         use_sk)
                j = info_i[1]
                if info_i[0] != 0:
                    return
                while q < hi and act_time[q] == b:
                    if act_kind[q] == 0:
                        y[act_idx[q]] += act_val[q]
                    else:
                        p[act_idx[q]] = act_val[q]
                    q += 1
                start = b
            else:
                _segment(KL, start, t1, y, S, p, sidx, a, tt, j, Yout, Sout, Oout, DOout,
                         record_obs, no_sign, no_term, False, no_index, no_time, rtol, atol,
                         max_step, max_steps, True, info_i, info_f, fail_y, t1 > start, SKL,
                         use_sk)
                return

    @njit(cache=True, error_model="numpy")
    def _seg_batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, act_lo, act_hi,
                       act_time, act_kind, act_idx, act_val, Yout, Sout, Oout, DOout,
                       record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y,
                       SKL, use_sk):
        """Row ``s`` of :func:`_seg_batch` (its arguments): :func:`_seg_row` on copies of
        the row's start, into the row's slices of the outputs (shared by the serial and the
        threaded batch, so both give the same numbers)."""
        T = counts[s]
        _seg_row(KL, t0, t_end[s], Y0[s].copy(), S0[s].copy(), P0[s].copy(), sidx,
                 A0[s].copy(), times[s, :T].copy(), act_lo[s], act_hi[s], act_time, act_kind,
                 act_idx, act_val, Yout[s], Sout[s], Oout[s], DOout[s], record_obs, rtol,
                 atol, max_step, max_steps, info_i[s], info_f[s], fail_y[s], SKL, use_sk)

    @njit(cache=True, error_model="numpy")
    def _seg_batch(KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, act_lo, act_hi,
                   act_time, act_kind, act_idx, act_val, Yout, Sout, Oout, DOout, record_obs,
                   rtol, atol, max_step, max_steps, info_i, info_f, fail_y, SKL, use_sk):
        """:func:`_par_batch`'s rows with actions after t0 (:func:`_seg_row`), serially."""
        for s in range(Y0.shape[0]):
            _seg_batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, act_lo,
                           act_hi, act_time, act_kind, act_idx, act_val, Yout, Sout, Oout,
                           DOout, record_obs, rtol, atol, max_step, max_steps, info_i, info_f,
                           fail_y, SKL, use_sk)

    @njit(cache=True, error_model="numpy", parallel=True)
    def _seg_par_batch(KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, act_lo, act_hi,
                       act_time, act_kind, act_idx, act_val, Yout, Sout, Oout, DOout,
                       record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y,
                       SKL, use_sk):
        """:func:`_seg_batch` with the rows over numba's threads (same numbers)."""
        for s in prange(Y0.shape[0]):
            _seg_batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, act_lo,
                           act_hi, act_time, act_kind, act_idx, act_val, Yout, Sout, Oout,
                           DOout, record_obs, rtol, atol, max_step, max_steps, info_i, info_f,
                           fail_y, SKL, use_sk)
else:  # pragma: no cover - the numpy backend never builds a FastExactModel
    _par_batch = _seg_batch = _seg_par_batch = None


def _parallel_batch():
    """The parallel batch (None without numba)."""
    return _par_batch


#: Spread a call's rows over numba's threads (:func:`_par_batch`). Off by default: on the
#: shared 2-core test machine (load ~10) the threads' waits for each other made the Theoph
#: FOCE-I fit 2.3x slower; where the cores are free it can help (the numbers are the same).
PARALLEL = False
#: Rows from which a call spreads them over numba's threads (below, one thread: the
#: threads' start costs more than a few rows of a small model).
PARALLEL_ROWS = 8


def _why_not(pm) -> str:
    """Why the fast path cannot run for a ProblemModel ('' when it can)."""
    from ...simulate import _api
    from ...simulate._compiled import usable

    problem = pm.problem
    model = problem.model
    if not usable(model):
        return "no compiled kernels"
    method = problem.solver.get("method", "auto")
    rtol = problem.solver.get("rtol", 1e-6)
    if method != "auto" or _api._resolve_method(model, method, rtol)[1] != "DOP853":
        return "not the compiled DOP853"
    if problem.conditions or problem.survival is not None:
        return "conditions or a survival term"
    if problem.offset_index in set(pm.cols.tolist()):
        return "estimated time offset"
    if getattr(problem, "anchor", None) is not None:
        return "event-anchored time offset"
    spec = getattr(model, "spec", None)
    dp = spec.dose_parameter if spec is not None else None
    if dp is not None and model.parameter_index(dp) in set(pm.cols.tolist()):
        return "estimated record-free dose"
    if any(c >= problem.P for c in pm.cols.tolist()):
        return "non-model columns"
    for d in pm.eval_designs:
        if d.condition is not None and np.any(np.asarray(d.condition) != ""):
            return "conditions in the data"
    return ""


class FastExactModel:
    """``predict`` / ``predict_hessian`` of a :class:`~._adapter.ProblemModel`, cached.

    Parameters
    ----------
    pm : ProblemModel
        The general evaluator (kept: fallback for rows the compiled path hands back, the
        check at construction, :meth:`data`).

    Raises
    ------
    ValueError
        The case is not one this path covers (:func:`fast_model` catches it).

    Notes
    -----
    Picklable (the compiled kernels are rebuilt from the model after unpickling).
    """

    def __init__(self, pm):
        why = _why_not(pm)
        if why:
            raise ValueError(why)
        self.pm = pm
        self.n = pm.n
        self.cols = pm.cols
        self.log_scale = pm.log_scale
        #: residual degrees of freedom per observable (SAEM's chains and importance sampling)
        self.residual_df = pm.residual_df
        self.parallel = PARALLEL
        self._prepare()

    # ------------------------------------------------------------------ set-up

    def _prepare(self):
        from ...simulate._dosing import expand_doses
        from .._paths import _for_subject, solver_options

        pm, problem = self.pm, self.pm.problem
        model = problem.model
        designs = pm.eval_designs
        N = len(designs)
        self.N = N
        self.sidx = np.array([model.parameter_index(problem.names[q]) for q in pm.cols],
                             dtype=np.int64)
        sens = [problem.names[q] for q in pm.cols]
        opts = solver_options(problem, sens)
        self.rtol, self.atol = float(opts["rtol"]), float(opts["atol"])
        self.max_step, self.max_steps = float(opts["max_step"]), int(opts["max_steps"])
        theta = np.repeat(pm.theta[None], N, axis=0)
        P = problem.P
        # observation times in model time (a fixed offset; an estimated one is refused)
        cov = np.array([d.offset_covariate for d in designs], dtype=float)
        offset = theta[:, problem.offset_index] + problem.offset_factor * cov
        self.t0 = 0.0
        times, cols, kidx = [], [], []
        for i, d in enumerate(designs):
            tm = np.maximum(np.asarray(d.time, dtype=float) + offset[i], 0.0)
            own = np.unique(tm)
            times.append(own)
            cols.append(np.searchsorted(own, tm))
            kidx.append(problem.obs_model_index[np.asarray(d.obs, dtype=int)])
        self.counts = np.array([t.size for t in times], dtype=np.int64)
        Tm = int(self.counts.max())
        self.tt = np.zeros((N, Tm))
        for i, t in enumerate(times):
            self.tt[i, :t.size] = t
        self.t_end = np.array([t[-1] for t in times], dtype=float)
        self.n_i = np.array([d.n for d in designs], dtype=int)
        # per subject and observation slot (padded to n): the output column, the model
        # observable, whether it is real and on the log scale; a call reads its rows with
        # one fancy index instead of a loop over them
        n = self.n
        self.col_pad = np.zeros((N, n), dtype=np.int64)
        self.k_pad = np.zeros((N, n), dtype=np.int64)
        self.real = np.zeros((N, n), dtype=bool)
        self.log_pad = np.zeros((N, n), dtype=bool)
        for i, d in enumerate(designs):
            ni = d.n
            self.col_pad[i, :ni] = cols[i]
            self.k_pad[i, :ni] = kidx[i]
            self.real[i, :ni] = True
            self.log_pad[i, :ni] = self.log_scale[np.asarray(d.obs, dtype=int)]
        self.any_log = bool(self.log_pad.any())
        # dose records -> switches, once (the same function simulate() uses), in model time
        # like make_units gives them (shifted by the subject's fixed offset); those at t0
        # set up the start (_starts), the later ones become actions (_later_actions)
        doses = []
        for i, d in enumerate(designs):
            off = float(offset[i])
            for x in d.doses:
                if off != 0.0:
                    x = dataclasses.replace(x, time=x.time + off)
                doses.append(_for_subject(x, i))
        # model covariates (the model file's [covariates]): hidden parameter rows after the
        # P model parameters, as simulate() carries them (the same schedule, from the same
        # per-subject inputs make_units gives it); their changes become actions too
        self.schedule, self.H, cov_inputs = None, 0, None
        if getattr(model, "covariate_names", ()) or any(d.covariates for d in designs):
            from ...simulate._covariates import covariate_schedule

            cov_inputs = [{name: (np.asarray(t, float) + float(offset[i]),
                                  np.asarray(v, float)) for name, t, v in d.covariates}
                          for i, d in enumerate(designs)]
            # a model without [covariates] given some: DataError (the general path's too)
            self.schedule = covariate_schedule(model, cov_inputs, N)
            self.hidden0 = np.asarray(self.schedule.hidden(self.t0, np.arange(N)), dtype=float)
            self.H = self.hidden0.shape[0]
        table = theta[:, :P].copy()
        self.switches = []
        self.fixed_p = {}
        switches = []
        if doses:
            new, switches = expand_doses(model, doses, table, tuple(sens), self.t0,
                                         method="auto", rtol=self.rtol, atol=self.atol,
                                         max_step=self.max_step, max_steps=self.max_steps,
                                         covariates=cov_inputs)
            if new.shape[0] != N:
                raise ValueError("dose records of other subjects")
            changed = np.flatnonzero(np.any(new != table, axis=0))
            for j in changed:
                if j in set(self.sidx.tolist()):
                    raise ValueError("dose expansion changes an estimated parameter")
                self.fixed_p[int(j)] = new[:, j].copy()
            est = {problem.names[q] for q in pm.cols}
            for sw in switches:
                if float(sw.time) < self.t0 or est & set(sw.time_dp):
                    raise ValueError("a dose before t0 or at an estimated time")
            self.switches = [sw for sw in switches if float(sw.time) == self.t0]
        later = [sw for sw in switches if float(sw.time) > self.t0]
        self._later_actions(later, theta)
        from ...simulate._compiled import packed_kernels
        from ...simulate._dop853_numba import sensitivity_kernels

        self._KL = packed_kernels(model.kernels)
        self._skl = sensitivity_kernels(model, self.sidx)
        self._check()

    def _p0(self, theta, index):
        """Parameter columns (P + H, R) at t0 before the switches there: the model
        parameters of rows ``theta`` (R, Q) of subjects ``index``, those the dose expansion
        fixes, and the covariates' hidden rows."""
        P = self.pm.problem.P
        p0 = np.array(theta[:, :P].T, dtype=float)
        for j, v in self.fixed_p.items():
            p0[j] = v[index]
        if self.H:
            p0 = np.vstack([p0, self.hidden0[:, index]])
        return p0

    def _later_actions(self, later, theta):
        """The switches after t0 (doses, infusion ends) as per-subject actions for the
        compiled segments (:func:`_seg_row`): ``kind`` 0 adds ``val`` to state ``idx``, 1
        sets parameter ``idx`` to ``val``; per subject sorted by time (the switches' order
        within a time kept, as the general path applies them).

        Each switch is applied by the general path's own function
        (:func:`progression.simulate._switches._apply_switch`) to every subject at once,
        from three draws of the states, sensitivities and estimated parameters: a state it
        changes must move by the same constant in all three (the jump ``y + c`` of a bolus)
        and the sensitivities must not move (the amount does not depend on an estimated
        parameter); it may set, scale or shift parameters that are not estimated (their
        values after it are then the same in every draw). Anything else (a jump that scales
        a state or reads another, a steady-state dose, an estimated bioavailability) raises
        ValueError: :func:`fast_model` keeps the general path."""
        from ...simulate._compiled import _SwitchTarget
        from ...simulate._switches import _apply_switch, _subject_mask

        N = self.N
        model = self.pm.problem.model
        P = self.pm.problem.P
        sidx = self.sidx
        k = sidx.size
        n = model.n_states
        later = sorted(later, key=lambda sw: float(sw.time))      # stable: order kept
        est = set(sidx.tolist())
        for sw in later:
            if sw.states or any(model.parameter_index(x) in est
                                for x in (*sw.scale, *sw.add, *sw.set)):
                raise ValueError("a switch after t0 that sets a state or an estimated "
                                 "parameter")
        p_base = self._p0(theta, np.arange(N))
        rng = np.random.default_rng(2)
        index = np.arange(N)
        sys = _SwitchTarget(k, sidx.astype(int))
        runs = []
        for draw in range(3):
            p = p_base.copy()
            if draw:
                p[sidx] = p[sidx] * np.exp(0.3 * rng.standard_normal((k, N)))
            a = np.ones_like(p)
            y = np.zeros((n, N)) if draw == 0 else rng.uniform(0.5, 2.0, (n, N))
            S = rng.standard_normal((N, k, n))
            steps = []
            with np.errstate(all="ignore"):
                for sw in later:
                    if self.H:
                        p[P:] = self.schedule.hidden(float(sw.time), index)
                    yb, Sb = y.copy(), S.copy()
                    y, S = _apply_switch(model, sw, p, a, y, S, sys, index, N)
                    y, S = np.array(y, dtype=float), np.array(S, dtype=float)
                    touched = sorted({model.parameter_index(x)
                                      for x in (*sw.scale, *sw.add, *sw.set)})
                    steps.append((y - yb, np.abs(S - Sb).max() if S.size else 0.0,
                                  {j: p[j].copy() for j in touched}))
            runs.append(steps)
        rows = [[] for _ in range(N)]
        for s, sw in enumerate(later):
            (d0, _, pv), (d1, e1, pv1), (d2, e2, _) = (r[s] for r in runs)
            tol = 1e-12 * (1.0 + np.abs(d0))
            if not (np.all(np.isfinite(d0)) and np.all(np.abs(d1 - d0) <= tol)
                    and np.all(np.abs(d2 - d0) <= tol) and e1 == 0.0 and e2 == 0.0
                    and all(np.array_equal(pv[j], pv1[j]) for j in pv)):
                raise ValueError("a switch after t0 that is not a constant shift of "
                                 "states and a change of parameters that are not estimated")
            mask = _subject_mask(sw.subjects, N)
            jumped = sorted({model.state_index(x) for x in sw.jump})
            for i in np.flatnonzero(mask):
                if float(sw.time) > self.t_end[i]:
                    continue          # after the subject's last value: not simulated
                for j in pv:
                    rows[i].append((float(sw.time), 1, j, float(pv[j][i])))
                for st in jumped:
                    rows[i].append((float(sw.time), 0, st, float(d0[st, i])))
        if self.H:
            # a covariate's change: its hidden rows set to the piece that starts there,
            # before the switches at that time (the general path's order)
            breaks = self.schedule.subject_breaks(index)
            for i in range(N):
                b = breaks[i]
                b = b[np.isfinite(b) & (b > self.t0) & (b <= self.t_end[i])]
                if b.size == 0:
                    continue
                vals = np.asarray(self.schedule.hidden(b, np.full(b.size, i)), dtype=float)
                acts = [(float(t), 1, P + h, float(vals[h, c]))
                        for c, t in enumerate(b) for h in range(self.H)]
                rows[i] = acts + rows[i]
            for r in rows:
                r.sort(key=lambda x: x[0])        # stable: covariates first at a time
        self.act_ptr = np.zeros(N + 1, dtype=np.int64)
        self.act_ptr[1:] = np.cumsum([len(r) for r in rows])
        flat = [x for r in rows for x in r]
        self.act_time = np.array([x[0] for x in flat], dtype=float)
        self.act_kind = np.array([x[1] for x in flat], dtype=np.int64)
        self.act_idx = np.array([x[2] for x in flat], dtype=np.int64)
        self.act_val = np.array([x[3] for x in flat], dtype=float)
        self.segmented = bool(flat)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_KL", None)
        state.pop("_skl", None)
        return state

    def __setstate__(self, state):
        from ...simulate._compiled import packed_kernels
        from ...simulate._dop853_numba import sensitivity_kernels

        self.__dict__.update(state)
        model = self.pm.problem.model
        self._KL = packed_kernels(model.kernels)
        self._skl = sensitivity_kernels(model, self.sidx)

    def _check(self):
        """Predictions and derivatives equal the general path's at the model's values (and
        at a second point, so that a parameter dependence the cache would miss shows)."""
        D = self.cols.size
        base = np.zeros((self.N, D))
        p = self.pm.problem
        from ..transforms import to_internal

        c = self.cols
        base[:] = to_internal(self.pm.theta[c], p.scale[c], p.lower[c], p.upper[c])
        rng = np.random.default_rng(0)
        index = np.arange(self.N)
        self._cache_start(base)
        for phi in (base, base + 0.05 * rng.standard_normal(base.shape)):
            f0, G0 = self.pm.predict(phi, index)
            f1, G1, done = self._run(phi, index, self.rtol, self.atol)
            ok = done & np.isfinite(f0).all(axis=1)
            for a, b in ((f1[ok], f0[ok]), (G1[ok], G0[ok])):
                scale = np.abs(b).max() if b.size else 0.0
                if not np.allclose(a, b, rtol=CHECK_RTOL, atol=CHECK_RTOL * scale):
                    raise ValueError("the cached path disagrees with Problem.evaluate")

    # ------------------------------------------------------------------ evaluation

    def data(self, source: str = "population data"):
        return self.pm.data(source)

    def thetas(self, phi, index=None):
        return self.pm.thetas(phi, index)

    def _starts(self, p0, index):
        """States and sensitivities at t0 after the switches there (the doses), for
        parameter columns ``p0`` (P, R), changed in place by the switches; and the switch
        factors ``a0`` (P, R)."""
        from ...simulate._compiled import _SwitchTarget
        from ...simulate._switches import _apply_switch

        model = self.pm.problem.model
        sidx, t0 = self.sidx, self.t0
        a0 = np.ones_like(p0)
        with np.errstate(all="ignore"):
            y0 = np.ascontiguousarray(model.initial(t0, None, p0), dtype=float)
            S0 = np.ascontiguousarray(model.dinitial_dp(t0, None, p0)[:, sidx, :]
                                      .transpose(2, 1, 0))
            sys = _SwitchTarget(sidx.size, sidx.astype(int))
            for sw in self.switches:
                y0, S0 = _apply_switch(model, sw, p0, a0, y0, S0, sys, index, self.N)
        return y0, S0, a0

    def _cache_start(self, base):
        """Keep the start after the doses when it cannot depend on the estimated parameters:
        no switch scales, shifts or sets one of them, and the starts at two parameter sets
        are the same to the bit (a dose amount or bioavailability that is not estimated)."""
        self._start = None
        problem = self.pm.problem
        est = {problem.names[q] for q in self.cols}
        if any(sw.scale or sw.add or est & set(sw.set) for sw in self.switches):
            return
        index = np.arange(self.N)
        starts = []
        rng = np.random.default_rng(1)
        for phi in (base, base + 0.1 * rng.standard_normal(base.shape)):
            theta = self.pm.thetas(phi)
            p0 = self._p0(theta, index)
            before = p0.copy()
            y0, S0, a0 = self._starts(p0, index)
            starts.append((y0, S0, a0, p0, before))
        (y1, S1, a1, p1, b1), (y2, S2, a2, p2, b2) = starts
        if not (np.array_equal(y1, y2) and np.array_equal(S1, S2)
                and np.all(a1[self.sidx] == 1.0) and np.all(a2[self.sidx] == 1.0)):
            return
        changed = np.flatnonzero(np.any(p1 != b1, axis=1) | np.any(p2 != b2, axis=1))
        if not all(np.array_equal(p1[j], p2[j]) for j in changed):
            return
        self._start = (y1, S1, {int(j): p1[j].copy() for j in changed})

    def _run(self, phi, index, rtol, atol):
        """f (R, n), G (R, n, D) on the core's scale for rows ``phi`` of subjects ``index``
        and a flag per row: True where the compiled call finished (else the caller
        re-evaluates the row on the general path)."""
        from ...simulate._compiled import batch_buffers
        from ...simulate._dop853_numba import STIFF, dop_batch

        pm = self.pm
        problem = pm.problem
        model = problem.model
        index = np.asarray(index, dtype=np.int64)
        R = phi.shape[0]
        theta = pm.thetas(phi)
        p0 = self._p0(theta, index)                          # (P + H, R)
        sidx = self.sidx
        k = sidx.size
        t0 = self.t0
        if self._start is not None:
            # the start after the doses at t0 does not depend on the estimated parameters
            y_s, S_s, sets = self._start
            y0, S0 = y_s[:, index], S_s[index]
            for j, v in sets.items():
                p0[j] = v[index]
            a0 = np.ones_like(p0)
        else:
            y0, S0, a0 = self._starts(p0, index)
        n = model.n_states
        n_obs = len(model.observable_names)
        counts = self.counts[index]
        Tm = int(counts.max())
        tt = np.ascontiguousarray(self.tt[index, :Tm])
        Yb, Sb, Ob, DOb, info_i, info_f, fail_y = batch_buffers(R, Tm, n, k, n_obs)
        args = (self._KL, float(t0), np.ascontiguousarray(self.t_end[index]),
                np.ascontiguousarray(p0.T), np.ascontiguousarray(y0.T),
                np.ascontiguousarray(S0), sidx, np.ascontiguousarray(a0[sidx].T), tt, counts)
        tail = (Yb, Sb, Ob, DOb, True, float(rtol), float(atol), self.max_step,
                self.max_steps, info_i, info_f, fail_y, *self._skl)
        parallel = R >= PARALLEL_ROWS and self.parallel
        with np.errstate(all="ignore"):
            if self.segmented:
                # doses after t0: every row's segments in the same one call
                acts = (self.act_ptr[index], self.act_ptr[index + 1], self.act_time,
                        self.act_kind, self.act_idx, self.act_val)
                (_seg_par_batch if parallel else _seg_batch)(*args, *acts, *tail)
            else:
                batch = dop_batch
                if parallel:
                    batch = _parallel_batch() or dop_batch
                batch(*args, *tail)
        done = info_i[:, 0] == 0
        done &= info_i[:, 0] != STIFF
        with np.errstate(all="ignore"):
            scale = problem.dtheta_dx(theta, self.cols)       # (R, D)
            rr = np.arange(R)[:, None]
            col, kk, real = self.col_pad[index], self.k_pad[index], self.real[index]
            f = Ob[rr, col, kk]                                 # (R, n)
            G = DOb[rr, col, kk] * scale[:, None, :]            # (R, n, D)
            if self.any_log:
                lg = self.log_pad[index]
                G = np.where(lg[..., None], G / f[..., None], G)
                f = np.where(lg, np.log(f), f)
            f = np.where(real, f, 0.0)
            G = np.where(real[..., None], G, 0.0)
        return f, G, done

    def predict(self, phi, index):
        """Predictions (R, n) and derivatives (R, n, D) on the core's scale
        (:meth:`ProblemModel.predict <._adapter.ProblemModel.predict>`)."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        f, G, done = self._run(phi, index, self.rtol, self.atol)
        bad = ~done | ~np.isfinite(f).all(axis=1) | ~np.isfinite(G).all(axis=(1, 2))
        if bad.any():
            b = np.flatnonzero(bad)
            f[b], G[b] = self.pm.predict(phi[b], index[b])
        return f, G

    def predict_hessian(self, phi, index):
        """d2f/dphi2 (R, n, D, D) on the core's scale: central differences (step
        :data:`HESSIAN_STEP`) of the exact derivatives, every row's ``2 D`` copies in one
        compiled call at :data:`HESSIAN_RTOL`; NaN rows where a copy failed."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        R, D = phi.shape
        K = 2 * D
        h = HESSIAN_STEP
        xs = np.repeat(phi, K, axis=0)
        pos = np.arange(R * K)
        c_of = np.tile(np.repeat(np.arange(D), 2), R)
        xs[pos, c_of] += np.tile([h, -h], R * D)
        rows = np.repeat(index, K)
        _, G, done = self._run(xs, rows, HESSIAN_RTOL, HESSIAN_ATOL)
        bad = ~done | ~np.isfinite(G).all(axis=(1, 2))
        if bad.any():
            b = np.flatnonzero(bad)
            _, G[b] = self.pm.predict(xs[b], rows[b])
        G = G.reshape(R, D, 2, self.n, D)
        H = (G[:, :, 0] - G[:, :, 1]) / (2.0 * h)                # (R, D, n, D)
        H = H.transpose(0, 2, 3, 1)                              # (R, n, D_g, D_step)
        return 0.5 * (H + np.swapaxes(H, 2, 3))

    def __call__(self, phi, index):
        return self.predict(phi, index)


def fast_model(pm):
    """:class:`FastExactModel` of ``pm`` where it applies and agrees with the general path,
    else ``pm`` itself."""
    from ...errors import ProgressionError

    try:
        return FastExactModel(pm)
    except (ValueError, ArithmeticError, ProgressionError, np.linalg.LinAlgError):
        # not a case it covers (the reason is the exception's message), or the set-up
        # failed where the general path reports per subject (e.g. a dose it cannot expand)
        return pm
