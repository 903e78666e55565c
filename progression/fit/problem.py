"""The estimation problem: subjects' data, the parameter layout, and batched residuals.

:class:`Problem` evaluates residuals (a sum of squares equal to ``-2 log L`` up to a constant,
see :mod:`~progression.fit.errormodels`) and their Jacobian for many *rows* at once (a row is
a subject, or one start of a subject, or a bootstrap replicate) from **one** stacked solve:
the states by :func:`progression.simulate.solve_states` with sensitivities of the estimated
model parameters on the output grid (:mod:`progression._gridsens`, ``[solver] sensitivities =
"grid"``), or one :func:`progression.simulate` call carrying forward sensitivities
(``"forward"``, and always with ``outputs = "exact"``). Derivatives with respect to the time
offset come from the time derivative of the trajectory (``df/dtau = dh/dy * dy/dt +
dh/dt``), those of error parameters analytically.

Model time is data time plus the subject's offset; model times before 0 (before the model's
t = 0) are evaluated at 0, where the offset derivative is zero (the objective is flat in the
offset there). Such times are counted per row (:attr:`Evaluation.before_zero`); the fit
reports how often it happened during the optimisation and, per subject, at the estimates.

Outputs at each subject's own times are obtained in one of two ways (``[solver] outputs``):

* ``"grid"`` (default): the batch is simulated on a common grid of model times (step
  ``grid_step``; ``"auto"``: a power of two near 1/200 of the span of all the data, fixed
  once per fit by :meth:`Problem.fix_grid_step`; states with one step sequence per subject
  when ``per_subject_steps``, so batching changes no result); states and
  sensitivities at a subject's times are cubic Hermite interpolants built from the values and
  exact time derivatives (``dy/dt = f``, ``dS/dt = J S + df/dp``) at the two neighbouring grid
  points. The interpolant is what is fitted, so objective and gradient stay consistent; its
  error is ``O(h^4)`` (ALS models: ~1e-8 at h = 0.25 month, ~1e-7 at 0.5, ~2e-6 at 1, below
  the integrator's tolerance).
* ``"exact"``: rows are simulated in groups of :data:`EXACT_GROUP`, each at the union of its
  own rows' times, with forward sensitivities. Exact to the integrator's tolerance, but a
  group's rows share one stacked solve's step control (results move within the tolerance
  with the company a row keeps), and it costs several grid-path evaluations.

By default (``[solver] refine = "exact"``) a grid-path fit ends on the exact path: the
estimator polishes each subject's estimate there with a few Gauss-Newton steps
(:func:`progression.fit._batched.polish`, via :meth:`Problem.exact_path`) and reports the
objective and information of that path; :func:`progression.fit.estimate.numbers_from` names
the path behind the reported numbers.

A simulation that fails (status -1) or yields non-finite residuals marks its row *failed*: the
row gets a large constant penalty residual and a zero Jacobian, which an optimiser treats as a
rejected step. Failures are counted, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from .config import OFFSET, FitConfig, FitParameter
from .errormodels import CODES, ERROR_MODELS, likelihood_terms
from .transforms import SCALES

__all__ = ["Design", "Problem", "Evaluation", "designs_from_cohort", "PENALTY"]

#: Residual value given to every entry of a failed row.
PENALTY = 1.0e4
#: Rows simulated together on the exact path (outputs at the union of the group's times).
EXACT_GROUP = 50

#: Tolerances of the exact path that polishes grid-path estimates and reports the objective
#: and covariance (the user's, where tighter).
EXACT_RTOL, EXACT_ATOL = 1e-10, 1e-12


@dataclass(frozen=True)
class Design:
    """One subject's data prepared for fitting.

    Attributes
    ----------
    id : str
    time : ndarray (n,)
        Data times (e.g. months since enrolment).
    obs : ndarray of int (n,)
        Index of each value's observable in :attr:`Problem.observables`.
    value, limit : ndarray (n,)
    cens : ndarray of int (n,)
        0 observed, 1 below ``limit``, -1 above ``limit``.
    offset_covariate : float
        Value of the time-offset covariate (0 without one).
    """

    id: str
    time: np.ndarray
    obs: np.ndarray
    value: np.ndarray
    cens: np.ndarray
    limit: np.ndarray
    offset_covariate: float = 0.0

    @property
    def n(self) -> int:
        return self.time.shape[0]

    def with_values(self, value: np.ndarray) -> Design:
        """The same design with other values (e.g. a bootstrap replicate)."""
        return Design(self.id, self.time, self.obs, np.asarray(value, float), self.cens,
                      self.limit, self.offset_covariate)


@dataclass
class Evaluation:
    """Residuals of a batch of rows.

    Attributes
    ----------
    residuals, jacobians : list of ndarray
        Per row: residual vector and its Jacobian (len, D) on the estimation scale.
    m2ll : ndarray (R,)
        -2 log L of each row (NaN where failed).
    failed : ndarray of bool (R,)
    messages : list of str
        Why a row failed ("" otherwise).
    info : ndarray (R, D, D) or None
        Expected information on the estimation scale (when asked for).
    predictions : list of ndarray
        Per row: the prediction at each data value (when asked for).
    nobs : ndarray of int (R,)
        Data values per row.
    before_zero : ndarray of int (R,)
        Per row: data values whose model time (data time + offset) was before 0 and was
        evaluated at 0 instead (their offset derivative is zero).
    """

    residuals: list
    jacobians: list
    m2ll: np.ndarray
    failed: np.ndarray
    messages: list
    info: np.ndarray | None = None
    predictions: list | None = None
    nobs: np.ndarray | None = None
    before_zero: np.ndarray | None = None


@dataclass
class Problem:
    """The parameter layout, error models and solver options of a fit; picklable.

    Build it with :meth:`from_config`. ``parameters`` holds every model parameter (model
    order), then the time offset, then the error parameters; a row's parameter vector
    ``theta`` has that length ``Q``.
    """

    model: object
    observables: tuple
    error_models: tuple
    parameters: tuple
    solver: dict = field(default_factory=dict)

    def __post_init__(self):
        model = self.model
        self.P = model.n_parameters
        self.Q = len(self.parameters)
        self.names = tuple(p.name for p in self.parameters)
        self.obs_model_index = np.array([model.observable_names.index(o)
                                         for o in self.observables], dtype=int)
        self.codes = np.array([CODES[e] for e in self.error_models], dtype=int)
        index = {p.name: q for q, p in enumerate(self.parameters)}
        self.offset_index = index[OFFSET]
        self.offset_factor = float(self.parameters[self.offset_index].factor)
        self.a_index = np.zeros(len(self.observables), dtype=int)
        self.b_index = np.full(len(self.observables), -1, dtype=int)
        for i, (obs, kind) in enumerate(zip(self.observables, self.error_models, strict=True)):
            names = ERROR_MODELS[kind]
            first = index[f"{obs}.{names[0]}"]
            if kind == "proportional":
                self.b_index[i], self.a_index[i] = first, -1
            else:
                self.a_index[i] = first
                if len(names) > 1:
                    self.b_index[i] = index[f"{obs}.{names[1]}"]
        self.values = np.array([p.value for p in self.parameters], dtype=float)
        self.lower = np.array([p.lower for p in self.parameters], dtype=float)
        self.upper = np.array([p.upper for p in self.parameters], dtype=float)
        self.scale = np.array([SCALES.index(p.scale) for p in self.parameters], dtype=int)
        self.subject_cols = np.array([q for q, p in enumerate(self.parameters)
                                      if p.estimate == "subject"], dtype=int)
        self.shared_cols = np.array([q for q, p in enumerate(self.parameters)
                                     if p.estimate == "shared"], dtype=int)
        # sigma changes during the fit when an error parameter is estimated or sigma follows f
        varies = []
        for i, kind in enumerate(self.error_models):
            est = any(self.parameters[q].estimated for q in (self.a_index[i], self.b_index[i])
                      if q >= 0)
            varies.append(est or kind in ("proportional", "combined"))
        self.sigma_varies = np.array(varies, dtype=bool)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: FitConfig) -> Problem:
        return cls(config.model, tuple(config.errors), tuple(config.errors.values()),
                   config.parameters, dict(config.solver))

    def __getstate__(self):
        return {"model": self.model, "observables": self.observables,
                "error_models": self.error_models, "parameters": self.parameters,
                "solver": self.solver}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    def fix_grid_step(self, designs) -> None:
        """Resolve ``grid_step = "auto"`` once, from all the data, before any evaluation.

        Resolved per evaluation it followed the latest time of each batch, so a subject's
        estimate depended on which subjects shared its batch, and the objective jumped where
        that time crossed a power of two. The span used is the latest data time plus the
        largest time offset the bounds allow (its value when unbounded or not estimated).
        """
        if self.solver.get("grid_step", "auto") != "auto" or not designs:
            return
        off = self.parameters[self.offset_index]
        top = off.upper if off.estimated and np.isfinite(off.upper) else off.value
        latest = max(float(np.max(d.time, initial=0.0)) + self.offset_factor * d.offset_covariate
                     for d in designs)
        self.solver["grid_step"] = grid_step("auto", latest + top)

    @property
    def exact(self) -> bool:
        """True when this problem evaluates on the exact path (outputs at the data times,
        forward sensitivities)."""
        return self.solver.get("outputs", "grid") == "exact"

    def exact_path(self) -> Problem:
        """The same problem on the exact path: outputs at each data time and forward
        sensitivities (``[solver] outputs = "exact"``), for polishing grid-path estimates and
        for the reported objective and information."""
        # Tight tolerances here: the stacked forward-sensitivity solve shares its step sizes
        # among the batch, so at the fit's rtol a subject's polished estimate would move with
        # its batch companions (~3e-5 relative at rtol 1e-6); at 1e-10 it is the same alone or
        # among 200 to ~1e-10, and the reported objective is exact far below 1e-4.
        solver = dict(self.solver, outputs="exact", sensitivities="forward",
                      rtol=min(self.solver.get("rtol", 1e-6), EXACT_RTOL),
                      atol=min(self.solver.get("atol", 1e-9), EXACT_ATOL))
        return Problem(self.model, self.observables, self.error_models, self.parameters,
                       solver)

    def path_name(self) -> str:
        """How this problem computes outputs and sensitivities, in words."""
        if self.exact:
            return "exact outputs, forward sensitivities"
        sens = self.solver.get("sensitivities", "grid")
        return (f"grid outputs (Hermite interpolation, step {self.solver.get('grid_step')}), "
                f"{'grid' if sens == 'grid' else 'forward'} sensitivities")

    def parameter(self, name: str) -> FitParameter:
        return self.parameters[self.names.index(name)]

    def dtheta_dx(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """d theta / d x for the given columns, from theta (R, Q) -> (R, D)."""
        th = theta[:, cols]
        lo, hi, sc = self.lower[cols], self.upper[cols], self.scale[cols]
        out = np.ones_like(th)
        m = np.broadcast_to(sc == 1, th.shape)
        out[m] = th[m]
        m = np.broadcast_to(sc == 3, th.shape)          # log10: d(10**x)/dx = ln(10) theta
        out[m] = np.log(10.0) * th[m]
        m = np.broadcast_to(sc == 2, th.shape)
        if m.any():
            lo_b, hi_b = np.broadcast_to(lo, th.shape), np.broadcast_to(hi, th.shape)
            out[m] = (th[m] - lo_b[m]) * (hi_b[m] - th[m]) / (hi_b[m] - lo_b[m])
        return out

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, designs, row_design, theta, cols, *, want_jac: bool = True,
                 want_info: bool = False, want_predictions: bool = False,
                 accurate: bool | None = None) -> Evaluation:
        """Residuals (and Jacobians on the estimation scale) for R rows at once.

        Parameters
        ----------
        designs : sequence of Design
        row_design : int array (R,)
            The design of each row.
        theta : ndarray (R, Q)
            Full parameter vectors (natural scale).
        cols : int array (D,)
            Parameter columns to differentiate with respect to.
        want_jac, want_info, want_predictions : bool
            Also return Jacobians (estimation scale), the expected information (D, D) per row,
            the predictions.
        accurate : bool, optional
            Grid sensitivities with Richardson extrapolation (default: when ``want_info``, i.e.
            for standard errors; optimiser steps do with the plain rule).
        """
        theta = np.asarray(theta, dtype=float)
        cols = np.asarray(cols, dtype=int)
        R, D = theta.shape[0], cols.size
        row_design = np.asarray(row_design, dtype=int)
        sizes = np.array([designs[d].n for d in row_design], dtype=int)
        rr = np.repeat(np.arange(R), sizes)
        cat = np.concatenate
        tdata = cat([designs[d].time for d in row_design])
        oi = cat([designs[d].obs for d in row_design])
        y = cat([designs[d].value for d in row_design])
        cens = cat([designs[d].cens for d in row_design])
        limit = cat([designs[d].limit for d in row_design])
        cov = np.array([designs[d].offset_covariate for d in row_design], dtype=float)
        P = self.P
        offset = theta[:, self.offset_index] + self.offset_factor * cov
        tm = tdata + offset[rr]
        before = tm < 0
        tm = np.where(before, 0.0, tm)
        model_cols = cols[cols < P]
        want_d = want_jac or want_info
        sens = [self.model.parameter_names[q] for q in model_cols] if want_d else []
        # Optimiser steps tolerate a Jacobian good to ~1e-3; the information matrix behind the
        # standard errors gets the Richardson-extrapolated grid sensitivities.
        out = self._outputs(theta[:, :P], rr, tm, oi, sens,
                            accurate=want_info if accurate is None else accurate)
        f, dfdp, dfdtau, status, messages = out
        N = f.shape[0]
        df = np.zeros((N, D))
        if want_d:
            for c, q in enumerate(cols):
                if q < P:
                    df[:, c] = dfdp[list(model_cols).index(q)]
                elif q == self.offset_index:
                    df[:, c] = np.where(before, 0.0, dfdtau)
        a_idx, b_idx = self.a_index[oi], self.b_index[oi]
        a = np.where(a_idx >= 0, theta[rr, np.maximum(a_idx, 0)], 0.0)
        b = np.where(b_idx >= 0, theta[rr, np.maximum(b_idx, 0)], 0.0)
        da = (cols[None, :] == a_idx[:, None]).astype(float)
        db = (cols[None, :] == b_idx[:, None]).astype(float)
        code = self.codes[oi]
        terms = likelihood_terms(code, y, cens, limit, f, df, a, da, b, db,
                                 self.sigma_varies[oi], want_jac=want_d)
        m2ll = np.bincount(rr, weights=terms.m2ll, minlength=R)
        bad = np.zeros(R, dtype=bool)
        bad[rr[~np.isfinite(terms.r)]] = True
        e_rows = rr[terms.has_e]
        bad[e_rows[~np.isfinite(terms.e)]] = True
        scale = None
        if want_d:
            scale = self.dtheta_dx(theta, cols)            # (R, D)
            dr = terms.dr * scale[rr]
            de = terms.de * scale[e_rows]
            bad[rr[~np.all(np.isfinite(dr), axis=1)]] = True
            bad[e_rows[~np.all(np.isfinite(de), axis=1)]] = True
        failed = bad | (status < 0)
        msgs = []
        for r in range(R):
            if status[r] < 0:
                msgs.append(messages[r])
            elif bad[r]:
                msgs.append("non-finite residuals (prediction outside the error model's "
                            "domain, e.g. a log-normal value predicted <= 0)")
            else:
                msgs.append("")
        m2ll[failed] = np.nan
        # per-row residual vectors: data residuals, then sigma residuals
        all_rows = cat([rr, e_rows])
        order = np.argsort(all_rows, kind="stable")
        res_all = cat([terms.r, terms.e])[order]
        counts = np.bincount(all_rows, minlength=R)
        splits = np.cumsum(counts)[:-1]
        residuals = np.split(res_all, splits)
        jacobians = [None] * R
        if want_jac:
            jac_all = np.vstack([dr, de])[order]
            jacobians = np.split(jac_all, splits)
        for r in np.nonzero(failed)[0]:
            residuals[r] = np.full(counts[r], PENALTY)
            if want_jac:
                jacobians[r] = np.zeros((counts[r], D))
        info = None
        if want_info:
            ff = terms.fisher_f * scale[rr]
            fs = terms.fisher_s * scale[rr]
            outer = ff[:, :, None] * ff[:, None, :] + fs[:, :, None] * fs[:, None, :]
            outer = np.where(np.isfinite(outer), outer, 0.0)
            info = np.zeros((R, D, D))
            np.add.at(info, rr, outer)
            info[failed] = np.nan
        predictions = np.split(f, np.cumsum(sizes)[:-1]) if want_predictions else None
        before_zero = np.bincount(rr, weights=before, minlength=R).astype(int)
        return Evaluation(residuals, jacobians, m2ll, failed, msgs, info, predictions,
                          sizes, before_zero)

    def _outputs(self, table, rr, tm, oi, sens, accurate=True):
        """Predictions f (N,), df/dp (k, N), df/dtau (N,), status (R,), messages."""
        from .._gridsens import grid_sensitivities
        from ..simulate import simulate, solve_states

        model = self.model
        N = tm.shape[0]
        k = len(sens)
        solver = self.solver
        options = {"method": solver.get("method", "LSODA"), "rtol": solver.get("rtol", 1e-6),
                   "atol": solver.get("atol", 1e-9),
                   "max_step": solver.get("max_step", np.inf),
                   "max_steps": solver.get("max_steps", 100_000), "terminal_events": False,
                   "sensitivities": sens or None}
        mode = solver.get("outputs", "grid")
        p_obs = table[rr].T                                  # (P, N)
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
            with np.errstate(all="ignore"):
                X, status, messages, _ = solve_states(
                    model, table, grid, per_subject=solver.get("per_subject_steps", True),
                    **options)
                Sx = (grid_sensitivities(model, grid, X, table, sens_idx, richardson=accurate,
                                         solver=options, last_node=last_node)
                      if k else None)
        elif mode == "exact":
            # Rows in groups of EXACT_GROUP, each simulated at the union of its own rows'
            # times: the cost of recording outputs grows with rows times output times, which
            # for the union of a whole batch's (jittered) times is quadratic in the batch.
            R = table.shape[0]
            n = model.n_states
            y = np.full((n, N), np.nan)
            S = np.full((n, k, N), np.nan) if k else None
            status = np.zeros(R, dtype=int)
            messages = [""] * R
            for lo in range(0, R, EXACT_GROUP):
                rows = np.arange(lo, min(R, lo + EXACT_GROUP))
                sel = (rr >= lo) & (rr < lo + rows.size)
                grid = np.unique(np.concatenate([[0.0], tm[sel]]))
                with np.errstate(all="ignore"):
                    sim = simulate(model, table[rows], grid, **options)
                status[rows] = np.asarray(sim.status)
                for b, r in enumerate(rows):
                    messages[r] = sim.message[b]
                col = np.searchsorted(grid, tm[sel])
                y[:, sel] = sim.states[rr[sel] - lo, :, col].T
                if k:
                    S[:, :, sel] = sim.state_sensitivities[rr[sel] - lo, :, :, col] \
                        .transpose(1, 2, 0)
        else:
            with np.errstate(all="ignore"):
                sim = simulate(model, table, grid, **options)
            status = np.asarray(sim.status)
            messages = list(sim.message)
            X = sim.states                                   # (R, n, G)
            Sx = sim.state_sensitivities                     # (R, n, k, G) or None
        if mode == "exact":
            with np.errstate(all="ignore"):
                ydot = model.rhs(tm, y, p_obs)
        else:
            h = grid[1] - grid[0]
            j = np.clip(np.floor(tm / h).astype(int), 0, grid.size - 2)
            s = (tm - grid[j]) / h
            # unique (row, node) pairs needing slopes
            key = np.concatenate([rr * grid.size + j, rr * grid.size + j + 1])
            uk, inv = np.unique(key, return_inverse=True)
            ur, un = uk // grid.size, uk % grid.size
            Yu = X[ur, :, un].T                              # (n, U)
            pu = table[ur].T
            tu = grid[un]
            with np.errstate(all="ignore"):
                Fu = model.rhs(tu, Yu, pu)                   # (n, U)
            i0, i1 = inv[:N], inv[N:]
            h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
            h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
            d00, d10 = (6 * s**2 - 6 * s) / h, 3 * s**2 - 4 * s + 1
            d01, d11 = (-6 * s**2 + 6 * s) / h, 3 * s**2 - 2 * s
            y = h00 * Yu[:, i0] + h10 * h * Fu[:, i0] + h01 * Yu[:, i1] + h11 * h * Fu[:, i1]
            ydot = d00 * Yu[:, i0] + d10 * Fu[:, i0] + d01 * Yu[:, i1] + d11 * Fu[:, i1]
            S = None
            if k:
                Su = Sx[ur, :, :, un].transpose(1, 2, 0)     # (n, k, U)
                with np.errstate(all="ignore"):
                    Ju = model.jac(tu, Yu, pu)               # (n, n, U)
                    Pu = model.dfdp_columns(sens_idx)(tu, Yu, pu)
                Sdu = np.einsum("ijU,jkU->ikU", Ju, Su) + Pu
                S = (h00 * Su[:, :, i0] + h10 * h * Sdu[:, :, i0] + h01 * Su[:, :, i1]
                     + h11 * h * Sdu[:, :, i1])
        kidx = self.obs_model_index[oi]
        cols = np.arange(N)
        with np.errstate(all="ignore"):
            f = model.observe(tm, y, p_obs)[kidx, cols]
            Hy = model.dobs_dy(tm, y, p_obs)[kidx, :, cols].T       # (n, N)
            dt = 1e-6 * np.maximum(1.0, np.abs(tm))
            ht = (model.observe(tm + dt, y, p_obs)[kidx, cols]
                  - model.observe(tm - dt, y, p_obs)[kidx, cols]) / (2 * dt)
            dfdtau = np.sum(Hy * ydot, axis=0) + ht
            dfdp = np.zeros((k, N))
            if k:
                Hp = model.dobs_dp(tm, y, p_obs)[kidx, :, cols][:, sens_idx].T   # (k, N)
                dfdp = np.einsum("iN,ikN->kN", Hy, S) + Hp
        return f, dfdp, dfdtau, status, messages


def grid_step(setting, t_end: float) -> float:
    """The Hermite grid step: a number, or ``"auto"``: a power of two near ``t_end / 200``
    (0.25 for spans of 36-72 time units), so that it changes rarely during a fit."""
    if setting != "auto":
        return float(setting)
    span = max(float(t_end), 1e-12)
    return float(2.0 ** np.floor(np.log2(span / 200.0) + 0.5))


def designs_from_cohort(cohort, config: FitConfig) -> tuple[list[Design], list[str]]:
    """Turn a Cohort into one Design per subject for the observables the config fits.

    Returns the designs and notes (observables ignored, subjects without data).

    Raises
    ------
    ConfigError
        An observable with an error model has no data at all.
    DataError
        Log-normal values <= 0, or a missing time-offset covariate.
    """
    observables = tuple(config.errors)
    notes: list[str] = []
    present = set(cohort.observables)
    missing = [o for o in observables if o not in present]
    if missing:
        raise ConfigError(f"{config.source}, key 'error.{missing[0]}': the data "
                          f"({cohort.source or 'cohort'}) have no observations of "
                          + ", ".join(f"'{o}'" for o in missing) + "; they have "
                          + ", ".join(f"'{o}'" for o in sorted(present)))
    ignored = sorted(present - set(observables))
    if ignored:
        notes.append("observables without an error model are not fitted: "
                     + ", ".join(ignored))
    if len(cohort.doses.get("time", ())):
        notes.append(f"the data hold {len(cohort.doses['time'])} dose records; fits do not "
                     "use doses yet (every subject is simulated without them)")
    if len(cohort.events.get("time", ())):
        notes.append("death/ventilation events are not part of the likelihood (longitudinal "
                     "observations only)")
    offset = config.parameter(OFFSET)
    subjects = cohort.subjects
    if config.data.get("subjects"):
        wanted = config.data["subjects"]
        unknown = [s for s in wanted if s not in cohort]
        if unknown:
            raise ConfigError(f"{config.source}, key 'data.subjects': no subject "
                              + ", ".join(f"'{s}'" for s in unknown) + " in the data")
        subjects = tuple(wanted)
    problems = []
    designs = []
    lognormal = {o for o, e in config.errors.items() if e == "lognormal"}
    for sid in subjects:
        sub = cohort.subject(sid)
        parts = []
        for i, obs in enumerate(observables):
            if obs not in sub.series:
                continue
            s = sub.series[obs]
            if obs in lognormal:
                vals = np.where(s.cens != 0, s.limit, s.value)
                bad = ~(vals > 0)
                for t, x in zip(s.time[bad], vals[bad], strict=True):
                    problems.append(f"{cohort.place(sid, obs, t)}, observable '{obs}', time "
                                    f"{t:g}: the log-normal error model needs values > 0, "
                                    f"found {x:g} (fit '{obs}' with an additive or combined "
                                    "error model, or correct the value)")
            parts.append((s.time, np.full(s.time.shape, i), s.value, s.cens, s.limit))
        if not parts:
            notes.append(f"subject '{sid}' has no observations of the fitted observables; "
                         "left out")
            continue
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        order = np.lexsort((cols[1], cols[0]))
        cov_value = 0.0
        if offset.covariate:
            value = sub.covariates.get(offset.covariate)
            if not isinstance(value, float | int) or not np.isfinite(value):
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': the time offset "
                                f"is tied to covariate '{offset.covariate}', which is "
                                f"{'missing' if value is None else repr(value)}")
            else:
                cov_value = float(value)
        designs.append(Design(str(sid), cols[0][order].astype(float),
                              cols[1][order].astype(int), cols[2][order].astype(float),
                              cols[3][order].astype(int), cols[4][order].astype(float),
                              cov_value))
    if problems:
        # The summary line carries the first problem itself, so that it informs on its own.
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{cohort.source or 'cohort'}: {len(problems)} problems for the fit, "
                        f"the first: {problems[0]}", problems)
    if not designs:
        raise DataError(f"{cohort.source or 'cohort'}: no subject has observations of "
                        + ", ".join(observables))
    return designs, notes
