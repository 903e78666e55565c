"""A predictions-only individual model for SAEM's Metropolis-Hastings kernels.

SAEM evaluates the model a dozen times per iteration for every chain and never uses a
derivative; what its acceptance ratios need is ``-2 log p(y | phi)`` to a small fraction of
one unit. :class:`RK4Predictions` integrates the compiled model's vectorised right-hand side
with the classical fixed-step Runge-Kutta scheme for **all rows of a batch in lockstep** (one
``rhs`` call per stage for every row, instead of an adaptive stacked LSODA whose step count
is set by the hardest row and whose Python overhead is paid per step), reads the states at the
observation times by cubic Hermite interpolation between steps (error O(h^4), like the
scheme) and the observables through the model's ``observe``. Rows are sorted by their last
observation time so that each step integrates only the rows that still need it.

With the model's compiled kernels (``model.kernels``, numba) the same scheme runs compiled
(:mod:`._saem_compiled`): each row integrated on its own with the per-subject ``rhs`` and
``observe`` kernels, only as far as its own last observation, rows in parallel on the
available cores (results do not depend on the thread count); equal to the lockstep path at
the same step to rounding (tested to 1e-10). The numpy lockstep path is the fallback when the
model has no kernels.

The step is **calibrated** against the exact path before use (:meth:`RK4Predictions.
calibrate`): starting from ``span / 50`` it is reduced by 3/4 until the largest difference
from the exact predictions, over a batch of parameter draws, is below ``tol`` residual SDs
(default 0.01; a change of ``2 * 0.01 |y - f| / sd`` in a value's -2 log L term); the step and
the error reached are recorded (``h``, ``max_error``) and stated in the fit's method; one
reduction more is taken as a margin (explicit RK4 is only conditionally stable). Rows whose
last model time lies beyond twice the calibration span (a tail draw of a time offset) are
integrated as a separate batch, so that one such row does not make every lockstep step
count; beyond 20 calibration spans a row is a failed evaluation.

It applies to designs without doses, dose records, model covariates or conditions (the
"plain" units of :mod:`progression.fit._paths`), which is the ALS progression case, and, on
the compiled path, to designs with bolus doses, infusions (of given or modelled rate or
duration), resets, steady states and time-varying covariates (:mod:`._saem_dosed`: the same
scheme piecewise between each row's dose and covariate events; no numpy twin, no state
cache); other designs keep the exact path
(:func:`applicable`). Model time
is data time plus the subject's time offset (``theta[offset] + factor * offset
covariate``), times before 0 evaluated at 0, as in :meth:`Problem.evaluate
<progression.fit.problem.Problem.evaluate>`; the model's events
are not located (a fit's exact path integrates with ``terminal_events = False`` too). An
event-anchored offset (``[parameters.time_offset] anchor``, :mod:`progression.fit._anchor`)
is the exception: a crossing pass with the same scheme and step (compiled
:func:`._saem_compiled.rk4_crossing`, numpy :func:`_crossing_numpy`) finds each row's event
time first (bisection on the step's cubic Hermite interpolant, safeguarded Illinois on the
compiled path; it stops at the crossing, which for ALS onset is early), and the row's model
times follow from it; the calibration of the step therefore covers the anchor's error too.

On the compiled path the last :attr:`RK4Predictions.CACHE` evaluations of chain-size batches
are kept: a row whose state parameters and model times match a kept row's (to relative
``KEY_RTOL``) is only observed again, and a row whose state and event parameters match takes
its anchor crossing from there (SAEM's moves of parameters acting on the observables only,
and its chains' states after the M-step, which moves them in the last bits). With a
``bound`` (:meth:`RK4Predictions.predict`) rows stop as soon as their data term provably
exceeds it (SAEM's early rejection, :mod:`._saem_chains`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["RK4Predictions", "applicable"]


def applicable(problem, designs) -> bool:
    """Whether :class:`RK4Predictions` can evaluate every design: no experimental conditions,
    and either no doses and no model covariates (the "plain" units) or inputs the compiled
    path takes (:func:`._saem_dosed.input_schedule`: boluses, infusions of given or modelled
    rate or duration, resets, steady states, time-varying covariates, on a model with compiled
    kernels, without an anchored offset or a survival term)."""
    if problem.conditions:
        return False
    if not all(hasattr(problem.model, k) for k in ("rhs", "initial", "observe")):
        return False
    has_cov = bool(getattr(problem.model, "covariate_names", ()))
    if not has_cov and not any(d.doses or d.dose_records or d.covariates for d in designs):
        return True
    if (getattr(problem, "anchor", None) is not None or problem.survival is not None
            or not _compiled_usable(problem.model, problem.P)):
        return False
    from ._saem_dosed import input_schedule

    return input_schedule(problem.model, designs) is not None


def _state_parameters(cm, P, event=None):
    """Which of the P model parameters enter the right-hand side or the initial states (the
    others act only on the observables), with ``event`` also those of that event's
    condition, from the model's symbolic form; None when unknown (no symbolic form, or a
    parameter count that differs)."""
    try:
        sym = cm.symbolic
        used = set()
        extra = [] if event is None else [sym.events[event]]
        for e in list(sym.rhs) + list(sym.initial) + extra:
            used |= {str(x) for x in e.free_symbols}
        names = [str(x) for x in sym.p]
    except Exception:  # noqa: BLE001 - a model without a symbolic form: no reuse
        return None
    if len(names) != P:
        return None
    return np.array([q in used for q in names], dtype=bool)


def _compiled_usable(cm, P) -> bool:
    """Whether the model's compiled kernels can integrate the rows (numba imports, the
    kernels exist and take exactly the problem's parameters)."""
    from ._saem_compiled import AVAILABLE

    if not AVAILABLE:
        return False
    kernels = getattr(cm, "kernels", None)
    hidden = len(getattr(cm, "hidden_names", ())) if getattr(cm, "covariate_names", ()) else 0
    return kernels is not None and int(kernels.n_params) == int(P) + hidden


class RK4Predictions:
    """``predict(phi (R, D), index (R,)) -> (f (R, n), G)`` by lockstep fixed-step RK4.

    Parameters
    ----------
    model : ProblemModel
        The fit's individual model (its problem, designs, columns, values of the other
        quantities and log-scale flags); its evaluation designs (censored values at their
        limits) are used when it has them.
    h : float, optional
        Step in model time units; None: ``span / 200`` until :meth:`calibrate` sets it.
    compiled : bool, optional
        Integrate with the compiled kernels (module docstring); None: when the model has
        them. True without them raises ValueError.

    Notes
    -----
    ``G`` is returned as zeros of the right shape (SAEM's kernels never read it). Picklable.
    """

    #: Rows whose last model time exceeds CAP calibration spans fail (NaN).
    CAP = 20.0
    #: Evaluations whose states at the observation slots (and anchor crossings) are kept
    #: (compiled path: one SAEM iteration's calls, so that a chain's current state is
    #: usually among them), and the largest such batch (bytes of states): the chains'
    #: batches, not importance sampling's.
    CACHE = 12
    CACHE_BYTES = 8e6
    #: Relative tolerance of a cached row's key (parameters, model times): the SAEM M-step
    #: moves the typical values and the random effects by opposite amounts, which changes a
    #: chain's parameters in the last bits only; reusing states computed there changes the
    #: predictions by as little (far below the scheme's error).
    KEY_RTOL = 1e-12

    def __init__(self, model, h: float | None = None, compiled: bool | None = None):
        self.model = model
        self.horizon = np.inf
        problem = model.problem
        self.designs = list(getattr(model, "eval_designs", model.designs))
        # a joint model ([survival]): each design's time-to-event pseudo-observations (the
        # cumulative hazard at its entry and its event or censoring time, the hazard at an
        # exact event) follow its data as values of the model's hazard observables, so the
        # same integration predicts them (:meth:`predict_extra` reads the survival term off)
        self.records = None
        self.n_out = model.n
        log_scale = np.asarray(model.log_scale, dtype=bool)
        if problem.survival is not None:
            from .._survival_likelihood import augment, record_slots

            aug = augment(problem, self.designs)
            self.designs = aug.designs
            self.records = record_slots(aug)
            self._n_real = aug.n_real
            log_scale = np.concatenate([log_scale, [False, False]])
        self.cm = problem.model
        self.P = problem.P
        self.offset_index = problem.offset_index
        self.offset_factor = problem.offset_factor
        N = len(self.designs)
        # the width of the integration's slots (the data's, plus the pseudo-observations)
        n = max(model.n, max(d.n for d in self.designs))
        self.n = n
        self.t = np.zeros((N, n))
        self.mask = np.zeros((N, n), dtype=bool)
        self.oi = np.zeros((N, n), dtype=int)
        self.log = np.zeros((N, n), dtype=bool)
        for i, d in enumerate(self.designs):
            self.t[i, :d.n] = d.time
            self.mask[i, :d.n] = True
            self.oi[i, :d.n] = problem.obs_model_index[d.obs]
            self.log[i, :d.n] = log_scale[d.obs]
        self.offcov = np.array([d.offset_covariate for d in self.designs], dtype=float)
        # an anchored offset: each row's clock is its own model's event time under the same
        # RK4 scheme (a crossing pass before the predictions; progression.fit._anchor)
        self.anchor = getattr(problem, "anchor", None)
        if self.anchor is not None:
            from .._anchor import event_index

            off = problem.parameters[problem.offset_index]
            self.event = event_index(self.cm, self.anchor)
            self.sign = int(self.cm.events[self.event].sign)
            self.window = (float(off.lower), float(off.upper))
        self.h = h
        self.max_error = float("nan")
        usable = _compiled_usable(self.cm, self.P)
        if compiled and not usable:
            raise ValueError("RK4Predictions(compiled=True): the model has no compiled "
                             "kernels (numba missing or backend 'numpy') or their parameter "
                             f"count differs from the problem's {self.P}")
        self.compiled = usable if compiled is None else bool(compiled)
        # subjects with doses or covariates: the compiled piecewise path (._saem_dosed), no
        # numpy twin
        self.doses = None
        if (getattr(self.cm, "covariate_names", ())
                or any(d.doses or d.dose_records or d.covariates for d in self.designs)):
            from ._saem_dosed import input_schedule

            self.doses = input_schedule(self.cm, self.designs)
            if self.doses is None or not self.compiled:
                raise ValueError("RK4Predictions: these doses need the exact path (a steady "
                                 "state with time-varying covariates) or compiled kernels "
                                 "(see applicable())")
        # the states depend only on these parameters and the model times: a row whose
        # values of both equal those of a recent evaluation is only observed again (a
        # Metropolis-Hastings move of a parameter acting on the observables alone, or of a
        # component the proposal left unchanged for that row); identical predictions
        self._state_cols = (_state_parameters(self.cm, self.P)
                            if self.compiled and self.doses is None else None)
        self._cache = []
        # the anchor's crossing depends on the state parameters and the event's: cached too
        self._cross_cols = None
        if self.anchor is not None and self._state_cols is not None:
            self._cross_cols = _state_parameters(self.cm, self.P, event=self.event)
        self._xcache = []

    @property
    def accepts_bound(self) -> bool:
        """Whether :meth:`predict` uses an early-rejection ``bound`` (the compiled path
        without a survival term: the bound covers the data term only)."""
        return self.compiled and self.records is None

    @property
    def extra_m2ll(self) -> bool:
        """True with ``[survival]``: SAEM then calls :meth:`predict_extra`."""
        return self.records is not None

    @property
    def method(self) -> str:
        """The integration in words (for the fit's method statement)."""
        if self.compiled:
            from ._saem_compiled import numba

            pieces = (", piecewise between its dose and covariate events"
                      if self.doses is not None else "")
            return (f"compiled fixed-step RK4, each row to its own last observation"
                    f"{pieces} (numba, {numba.get_num_threads()} threads)")
        return "lockstep fixed-step RK4 (numpy)"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = []
        state["_xcache"] = []
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_xcache", [])
        self.__dict__.setdefault("records", None)       # pickled before joint models
        self.__dict__.setdefault("n_out", self.n)
        self.__dict__.setdefault("doses", None)         # pickled before dosed subjects
        if "_cross_cols" not in state:      # pickled before the crossing cache
            self._cross_cols = (_state_parameters(self.cm, self.P, event=self.event)
                                if self.anchor is not None and self._state_cols is not None
                                else None)

    def _model_times(self, theta, index, with_start=False):
        """Model times (R, n) of the rows' slots (NaN rows where an anchor event is not in
        its window); with ``with_start`` also where the anchor's crossing pass left each row
        (see :meth:`anchor_times`; None when there is nothing to resume)."""
        start = None
        if self.anchor is not None:
            value, start = self.anchor_times(theta, with_start=True)
        else:
            value = theta[:, self.offset_index]
        tm = np.maximum(self.t[index] + self._offsets(value, index)[:, None], 0.0)
        return (tm, start) if with_start else tm

    def _offsets(self, value, index):
        """Model time minus data time of each row: its offset (the parameter's value, or the
        anchor event's time) plus the factor times its offset covariate."""
        return value + self.offset_factor * self.offcov[index]

    def anchor_times(self, theta, with_start=False):
        """The anchor event's model time per row under this RK4 scheme (step ``h``; before
        calibration a thousandth of the window), NaN outside the offset's window. With
        ``with_start`` also the start of each row's crossing step (compiled path with a
        calibrated step, else None): the prediction pass resumes there, the same RK4 steps
        as from model time 0, so the same numbers without integrating the way to onset twice.
        """
        h = self.h if self.h is not None else self.window[1] / 1000.0
        p = np.ascontiguousarray(theta[:, :self.P])
        start = None
        if self.compiled:
            T, start = self._crossing(p, h)
            if self.h is None:          # the predictions' step is not this one
                start = None
        else:
            T = _crossing_numpy(self.cm, p, self.event, self.sign, h, self.window[1])
        T = np.where((T >= self.window[0]) & (T <= self.window[1]), T, np.nan)
        return (T, start) if with_start else T

    def _crossing(self, p, h):
        """:func:`._saem_compiled.rk4_crossing` of the rows ``p`` (R, P) at step ``h``, rows
        whose crossing parameters match a recent call's (:attr:`KEY_RTOL`) taken from it."""
        from ._saem_compiled import rk4_crossing

        R, S = p.shape[0], int(self.cm.kernels.n_states)
        cols = self._cross_cols
        if cols is None or R * self.n * S * 8 > self.CACHE_BYTES:    # the states' rule
            return rk4_crossing(self.cm.kernels, p, self.event, self.sign, h, self.window[1],
                                with_start=True)
        key = _Key(p[:, cols])
        T = np.empty(R)
        ks = np.empty(R, dtype=np.int64)
        Ys, Fs = np.empty((R, S)), np.empty((R, S))
        done = np.zeros(R, dtype=bool)
        for e in self._xcache:
            if done.all():
                break
            if e[0] == h:
                hit = _same(e[1], key, self.KEY_RTOL, ~done)
                if hit.any():
                    done |= hit
                    T[hit], ks[hit], Ys[hit], Fs[hit] = (v[hit] for v in e[2:])
        miss = ~done
        if miss.any():
            Tm, (km, Ym, Fm) = rk4_crossing(self.cm.kernels, p[miss], self.event, self.sign,
                                            h, self.window[1], with_start=True)
            T[miss], ks[miss], Ys[miss], Fs[miss] = Tm, km, Ym, Fm
        self._xcache.insert(0, (h, key, T, ks, Ys, Fs))
        del self._xcache[self.CACHE:]
        return T, (ks, Ys, Fs)

    def predict(self, phi, index, bound=None):
        """Predictions on the core's scale (log for log-normal observables); NaN rows for
        failed evaluations.

        ``bound``: early rejection of Metropolis-Hastings proposals on the compiled path
        (:func:`._saem_compiled.rk4_rows`; ignored by the numpy path): rows whose data term
        certainly exceeds their threshold stop integrating and are NaN."""
        if self.records is not None:
            bound = None                # the bound covers the data term only
        f = self._predict_slots(phi, index, bound)
        D = np.atleast_2d(phi).shape[1]
        return self._data_part(f, index), np.zeros((f.shape[0], self.n_out, D))

    def predict_extra(self, phi, index):
        """:meth:`predict` and the survival term ``-2 log p(T_i | phi)`` (R,) of each row's
        time-to-event record (0 without one, NaN where the row failed or the term is not
        finite), from the same integration."""
        from .._survival_likelihood import survival_m2ll

        index = np.asarray(index, dtype=int)
        f = self._predict_slots(phi, index)
        s = survival_m2ll(self.records, index, f)
        D = np.atleast_2d(phi).shape[1]
        return self._data_part(f, index), np.zeros((f.shape[0], self.n_out, D)), s

    def _data_part(self, f, index):
        """The data's predictions (R, n_out) of the integration's slots ``f`` (R, n): the
        pseudo-observations of a survival record replaced by zeros (a failed row stays NaN)."""
        if self.records is None:
            return f
        out = f[:, :self.n_out]
        data = np.arange(self.n_out)[None] < self._n_real[np.asarray(index, dtype=int)][:, None]
        failed = ~np.all(np.isfinite(f), axis=1)
        return np.where(data & ~failed[:, None], out, np.where(failed[:, None], np.nan, 0.0))

    def _predict_slots(self, phi, index, bound=None):
        """Predictions of every slot (R, n) (data and pseudo-observations; see
        :meth:`predict`)."""
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        theta = self.model.thetas(phi)
        tm, start = self._model_times(theta, index, with_start=True)
        tmax = np.where(self.mask[index], tm, 0.0).max(axis=1)
        lost = ~np.isfinite(tmax)              # no anchor event in its window: failed rows
        long = tmax > self.horizon
        if not long.any() and not lost.any():
            f = self._solve(theta, index, tm, start, bound)
        else:
            # rows reaching far beyond the calibrated span (a tail draw of a time offset)
            # would make every lockstep step count: they are integrated as a batch of their
            # own; beyond CAP calibrated spans a row is a failed evaluation (NaN), which the
            # kernels reject (an adaptive solver on such draws can take seconds per row)
            f = np.full((phi.shape[0], self.n), np.nan)
            short = ~long & ~lost
            if short.any():
                f[short] = self._solve(theta[short], index[short], tm[short],
                                       _rows(start, short), _rows(bound, short))
            far = long & (tmax <= self.CAP * self.horizon / 2.0)
            if far.any():
                f[far] = self._solve(theta[far], index[far], tm[far], _rows(start, far),
                                     _rows(bound, far))
        return f

    def __call__(self, phi, index):
        return self.predict(phi, index)

    def _solve(self, theta, index, tm=None, start=None, bound=None):
        R = theta.shape[0]
        n = self.n
        mask = self.mask[index]
        if tm is None:
            tm, start = self._model_times(theta, index, with_start=True)
        tm = np.where(mask, tm, 0.0)
        if not np.all(np.isfinite(tm)):
            # rows without their anchor event: NaN, the others solved
            out = np.full((R, n), np.nan)
            ok = np.all(np.isfinite(tm), axis=1)
            if ok.any():
                out[ok] = self._solve(theta[ok], index[ok], tm[ok], _rows(start, ok),
                                      _rows(bound, ok))
            return out
        tmax = tm.max(axis=1)
        span = float(tmax.max()) if R else 0.0
        h = self.h if self.h is not None else max(span, 1e-12) / 200.0
        nsteps = max(1, int(np.ceil(span / h)))
        if self.doses is not None and R:
            from ._saem_dosed import rk4_dosed_rows

            p = np.concatenate([theta[:, :self.P], self.doses.hidden0[index]], axis=1)
            if self.doses.dose_parameter >= 0:
                p[self.doses.zero_dose[index], self.doses.dose_parameter] = 0.0
            offset = self._offsets(theta[:, self.offset_index], index)
            return rk4_dosed_rows(self.cm.kernels, self.doses, index, p, offset, tm, mask,
                                  self.oi[index], self.log[index], h)
        if self.compiled and R:
            # every row in one compiled call, each only as far as its own last observation
            from ._saem_compiled import rk4_rows

            kernels = self.cm.kernels
            p = theta[:, :self.P]
            reuse = states = key = None
            if (self._state_cols is not None
                    and R * n * kernels.n_states * 8 <= self.CACHE_BYTES):
                key = _Key(np.concatenate([p[:, self._state_cols], tm], axis=1))
                reuse = np.zeros(R, dtype=bool)
                states = np.empty((R, n, kernels.n_states))
                # nsteps (the batch's) only matters for a slot in the last step, where it
                # clamps the step index: a row whose slots all lie before both calls' last
                # step has the same states whatever the batch
                last = (tm.max(axis=1) / h).astype(np.int64)
                for e in self._cache:
                    if reuse.all():
                        break
                    if e[3] == h and np.array_equal(e[0], index):
                        hit = _same(e[1], key, self.KEY_RTOL,
                                    ~reuse & (last < min(e[4], nsteps)))
                        if hit.any():
                            reuse |= hit
                            states[hit] = e[2][hit]
            if start is not None:
                # resume only rows whose every slot lies in or after their crossing step
                # (the kernel's step of a slot: min(floor(t / h), nsteps - 1))
                first = np.where(mask, np.minimum((tm / h).astype(np.int64), nsteps - 1),
                                 nsteps).min(axis=1)
                k0 = np.where(start[0] <= first, start[0], -1)
                start = (k0, start[1], start[2])
            f, states, stopped = rk4_rows(kernels, p, tm, mask, self.oi[index],
                                          self.log[index], h, nsteps, reuse, states, start,
                                          bound)
            if key is not None:
                # a stopped row's states are incomplete: never reused
                key.drop(stopped)
                self._cache.insert(0, (index.copy(), key, states, h, nsteps))
                del self._cache[self.CACHE:]
            return f
        # rows in decreasing order of their last time: the rows a step still needs are a
        # prefix, so late steps integrate only the long-followed rows
        order = np.argsort(-tmax, kind="stable")
        p = theta[order, :self.P].T.copy()                   # (P, R)
        tms = tm[order]
        msk = mask[order]
        step = np.minimum((tms / h).astype(int), nsteps - 1)
        step = np.where(msk, step, -1)
        # the observations of each step, as flat (row, slot) positions
        flat = np.flatnonzero(msk)
        by_step = np.argsort(step.ravel()[flat], kind="stable")
        flat = flat[by_step]
        st = step.ravel()[flat]
        bounds = np.searchsorted(st, np.arange(nsteps + 1))
        active = np.searchsorted(-tmax[order], -np.arange(nsteps) * h, side="right")
        cm = self.cm
        with np.errstate(all="ignore"):
            y = np.asarray(cm.initial(0.0, None, p), dtype=float)
            S = y.shape[0]
            states = np.full((S, R * n), np.nan)
            k1 = np.asarray(cm.rhs(0.0, y, p), dtype=float)
            for k in range(nsteps):
                a = max(int(active[k]), 1)
                lo, hi = bounds[k], bounds[k + 1]
                t0 = k * h
                ya, pa, f0 = y[:, :a], p[:, :a], k1[:, :a]
                s2 = cm.rhs(t0 + 0.5 * h, ya + 0.5 * h * f0, pa)
                s3 = cm.rhs(t0 + 0.5 * h, ya + 0.5 * h * s2, pa)
                s4 = cm.rhs(t0 + h, ya + h * s3, pa)
                y1 = ya + (h / 6.0) * (f0 + 2.0 * s2 + 2.0 * s3 + s4)
                f1 = np.asarray(cm.rhs(t0 + h, y1, pa), dtype=float)
                if hi > lo:
                    pos = flat[lo:hi]
                    r = pos // n
                    u = (tms.ravel()[pos] - t0) / h
                    # cubic Hermite on [t0, t0 + h] from values and slopes at both ends
                    h00 = (1 + 2 * u) * (1 - u) ** 2
                    h10 = u * (1 - u) ** 2
                    h01 = u * u * (3 - 2 * u)
                    h11 = u * u * (u - 1)
                    states[:, pos] = (h00 * ya[:, r] + h10 * h * f0[:, r] + h01 * y1[:, r]
                                      + h11 * h * f1[:, r])
                y[:, :a], k1[:, :a] = y1, f1
            pos = np.flatnonzero(msk)
            r = pos // n
            o = np.asarray(cm.observe(tms.ravel()[pos], states[:, pos], p[:, r]), dtype=float)
            vals = o[self.oi[index][order].ravel()[pos], np.arange(pos.size)]
            lg = self.log[index][order].ravel()[pos]
            vals = np.where(lg, np.log(vals), vals)
        fs = np.zeros((R, n))
        fs.ravel()[pos] = vals
        bad = ~np.all(np.isfinite(fs), axis=1)
        fs[bad] = np.nan
        out = np.empty_like(fs)
        out[order] = fs
        return out

    def calibrate(self, exact, phi, index, sd, tol: float = 0.01, reductions: int = 16):
        """Choose the step: reduce it (by 3/4 each time, from ``span / 50``) until the
        predictions at ``phi`` differ from the exact ones by less than ``tol`` residual SDs
        everywhere, then take one reduction more as a margin (explicit RK4 is only
        conditionally stable: another draw may be a little stiffer).

        Parameters
        ----------
        exact : callable
            ``exact(phi, index) -> (f, G)``, the exact path's predictions; with a survival
            term ``(f, G, s)`` (its ``predict_extra``), and the survival term's error, in
            log-likelihood units (half its ``-2 log L``), must be below ``tol`` too.
        phi : ndarray (R, D)
        index : ndarray of int (R,)
        sd : ndarray (R, n_out)
            Residual SD of every value (at the initial residual model).
        tol : float
        reductions : int
            Most reductions of the step.

        Returns
        -------
        bool
            Whether the tolerance was reached (otherwise the caller keeps the exact path);
            ``h`` and ``max_error`` (at ``h``, in residual SDs) are set.
        """
        from .._survival_likelihood import survival_m2ll

        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        out = exact(phi, index)
        f_ex = out[0]
        ok = np.all(np.isfinite(f_ex), axis=1)
        if self.records is not None:
            s_ex = np.asarray(out[2], dtype=float)
            ok &= np.isfinite(s_ex)
        if not ok.any():
            return False
        theta = self.model.thetas(phi)
        span = float(np.nanmax(np.where(self.mask[index], self._model_times(theta, index),
                                        0)))
        m = self._data_part(np.where(self.mask[index][ok], 1.0, 0.0), index[ok]) > 0
        # rows beyond twice the calibration span are integrated as a batch of their own
        self.horizon = 2.0 * span

        def worst(h):
            self.h = h
            full = self._solve(theta[ok], index[ok])
            f = self._data_part(full, index[ok])
            with np.errstate(invalid="ignore"):
                err = np.where(m, np.abs(f - f_ex[ok]) / sd[ok], 0.0)
                if self.records is not None:
                    es = 0.5 * np.abs(survival_m2ll(self.records, index[ok], full)
                                      - s_ex[ok])
                    err = np.column_stack([err, es])
            return float(np.nanmax(np.where(np.isfinite(err), err, np.inf)))

        h = max(span, 1e-12) / 50.0
        for _ in range(reductions + 1):
            if worst(h) < tol:
                self.max_error = worst(0.75 * h)
                return self.max_error < tol
            h *= 0.75
        self.max_error = worst(h)
        return False


class _Key:
    """A cache key (R, m) with its row sums and sums of magnitudes: rows equal to relative
    ``rtol`` element-wise have sums within ``rtol`` times the magnitudes, so the sums
    screen out most rows before the element-wise comparison."""

    def __init__(self, a):
        self.a = a
        self.sum = a.sum(axis=1)
        self.mag = np.abs(a).sum(axis=1)

    def drop(self, rows):
        """Rows that must never match (NaN)."""
        self.a[rows] = np.nan
        self.sum[rows] = np.nan


def _same(cached, key, rtol, rows=None):
    """Rows of ``key`` equal to those of ``cached`` (both :class:`_Key`) to relative
    ``rtol`` element-wise (NaN never), compared among ``rows`` (bool (R,)) when given."""
    out = np.zeros(key.a.shape[0], dtype=bool)
    if cached.a.shape != key.a.shape:
        return out
    near = np.abs(cached.sum - key.sum) <= rtol * key.mag
    r = np.flatnonzero(near if rows is None else near & rows)
    k = key.a[r]
    out[r] = np.all(np.abs(cached.a[r] - k) <= rtol * np.abs(k), axis=1)
    return out


def _rows(start, which):
    """The rows ``which`` of a per-row tuple (a crossing pass's start, an early-rejection
    bound; None stays None)."""
    return None if start is None else tuple(a[which] for a in start)


def _crossing_numpy(cm, P, event, sign, h, t_end):
    """The numpy lockstep counterpart of :func:`._saem_compiled.rk4_crossing` (the same
    scheme and bisection on each step's cubic Hermite interpolant), for models without
    compiled kernels."""
    P = np.asarray(P, dtype=float)
    R = P.shape[0]
    out = np.full(R, np.nan)
    if R == 0:
        return out
    p = P.T.copy()

    def crossed(g0, g1):
        fall = (g0 > 0) & (g1 <= 0)
        rise = (g0 < 0) & (g1 >= 0)
        return fall if sign < 0 else rise if sign > 0 else fall | rise

    with np.errstate(all="ignore"):
        y = np.asarray(cm.initial(0.0, None, p), dtype=float)
        f0 = np.asarray(cm.rhs(0.0, y, p), dtype=float)
        g0 = np.asarray(cm.event_values(0.0, y, p), dtype=float)[event]
        active = np.arange(R)
        for k in range(int(max(1, np.ceil(t_end / h)))):
            if active.size == 0:
                break
            t0 = k * h
            ya, pa, fa = y[:, active], p[:, active], f0[:, active]
            s2 = cm.rhs(t0 + 0.5 * h, ya + 0.5 * h * fa, pa)
            s3 = cm.rhs(t0 + 0.5 * h, ya + 0.5 * h * s2, pa)
            s4 = cm.rhs(t0 + h, ya + h * s3, pa)
            y1 = ya + (h / 6.0) * (fa + 2.0 * s2 + 2.0 * s3 + s4)
            f1 = np.asarray(cm.rhs(t0 + h, y1, pa), dtype=float)
            g1 = np.asarray(cm.event_values(t0 + h, y1, pa), dtype=float)[event]
            ga = g0[active]
            hit = crossed(ga, g1)
            if hit.any():
                a, b = np.zeros(hit.sum()), np.ones(hit.sum())
                Y0, F0, Y1, F1 = ya[:, hit], fa[:, hit], y1[:, hit], f1[:, hit]
                for _ in range(45):
                    u = 0.5 * (a + b)
                    yu = ((1 + 2 * u) * (1 - u) ** 2 * Y0 + u * (1 - u) ** 2 * h * F0
                          + u * u * (3 - 2 * u) * Y1 + u * u * (u - 1) * h * F1)
                    gu = np.asarray(cm.event_values(t0 + u * h, yu, pa[:, hit]),
                                    dtype=float)[event]
                    c = crossed(ga[hit], gu)
                    b = np.where(c, u, b)
                    a = np.where(c, a, u)
                out[active[hit]] = t0 + 0.5 * (a + b) * h
            finite = np.all(np.isfinite(y1), axis=0)
            y[:, active], f0[:, active], g0[active] = y1, f1, g1
            active = active[~hit & finite]
    return out
