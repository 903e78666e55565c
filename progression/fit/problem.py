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

  **Error control.** Fast or stiff dynamics make that error large (a stiff 8-state cascade on
  a 0.5-minute grid: -2 log L off by hundreds). Every evaluation therefore estimates it per row
  from the interpolant on every other node (step 2h): ``e_j = |f_h - f_2h| / 15`` at each data
  value, turned into a bound on the row's -2 log L (``sum_j max |m2ll_j(f_j +- e_j) -
  m2ll_j(f_j)|``, i.e. ``2 |r_j| e_j / sigma_j + (e_j / sigma_j)^2`` for a normal error), and a
  row whose bound exceeds :data:`GRID_ERROR` (2e-5, i.e. 1e-5 in -log L; scaled by the row's
  RMS residual where that exceeds 1, far from an optimum) is evaluated on the exact path
  (forward sensitivities, rtol :data:`EXACT_RTOL`) in the same call. The estimate uses the
  row's own trajectory only, so the decision does not depend on the batch;
  :meth:`path_name` says how many rows went and why.
* ``"exact"``: rows are simulated in groups of :data:`EXACT_GROUP`, each at the union of its
  own rows' times, with forward sensitivities. Exact to the integrator's tolerance, but a
  group's rows share one stacked solve's step control (results move within the tolerance
  with the company a row keeps), and it costs several grid-path evaluations.

By default (``[solver] refine = "exact"``) a grid-path fit ends on the exact path: the
estimator polishes each subject's estimate there with Levenberg-Marquardt steps
(:func:`progression.fit._batched.polish`, via :meth:`Problem.exact_path`) and reports the
objective and information of that path; :func:`progression.fit.estimate.numbers_from` names
the path behind the reported numbers.

**Inputs.** A design carries its subject's dose records, the model's covariates from the data
and each value's experimental condition (``[conditions.NAME]`` in the config: fixed parameter
overrides and doses). A row is simulated as one *unit* per condition its values belong to;
units that carry doses or covariates are simulated by :func:`progression.simulate` at their
own times with forward sensitivities (carried across every dose, with respect to
bioavailability and lag too), in groups of :data:`EXACT_GROUP`, whatever the configured path:
a Hermite interpolant across a dose jump or a covariate change would be wrong.
:meth:`Problem.path_name` says so. Dose and covariate times shift with the subject's time
offset like the data; an estimated offset is refused for such subjects (its derivative is not
available). Outputs are put back in the row's order, so residuals, Jacobians, information and
``m2ll`` stay per row.

**Prior.** ``evaluate(..., prior=)`` appends penalty residuals per row (see
:mod:`progression.fit.likelihood`): the random-effect term of a population model enters there.

A simulation that fails (status -1) or yields non-finite residuals marks its row *failed*: the
row gets a large constant penalty residual and a zero Jacobian, which an optimiser treats as a
rejected step. Failures are counted, never raised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .config import OFFSET, FitConfig, FitParameter
from .errormodels import CODES, ERROR_MODELS, MEASURED, likelihood_terms
from .transforms import SCALES, to_internal

__all__ = ["Design", "Problem", "Evaluation", "designs_from_cohort", "PENALTY"]

#: Residual value given to every entry of a failed row.
PENALTY = 1.0e4
#: Rows simulated together on the exact path (outputs at the union of the group's times).
EXACT_GROUP = 50

#: Tolerances of the exact path that polishes grid-path estimates and reports the objective
#: and covariance (the user's, where tighter).
EXACT_RTOL, EXACT_ATOL = 1e-10, 1e-12

#: Grid-path error control: a row whose estimated interpolation error moves its ``-2 log L`` by
#: more than this (``[solver] grid_error`` in a run config, ``Problem.solver["grid_error"]``;
#: ``inf`` routes none) is evaluated on the exact path within the same call.
#: 2e-5 in -2 log L is 1e-5 in -log L, ten times below the 1e-4 per subject that the reported
#: objective must meet.
GRID_ERROR = 2e-5
#: The interpolation error estimate ``|f_h - f_2h| / GRID_ERROR_DIVISOR``: the Hermite
#: interpolant's error is O(h^4), so asymptotically ``f_2h`` errs 16 times ``f_h``. Measured on
#: the stiff cascade (tests/models/stiff_signalling.toml, three subjects): where the estimate
#: is near the tolerance (h <= 0.06 min) the row bound exceeds the actual objective error 12 to
#: 25 times (the bound adds absolute values); at h = 0.5 min, far too coarse for the fast
#: transient, it falls short up to 16 times but is then ~100 in -2 log L, far above any
#: tolerance. On als_reduced (h = 0.5 month) the largest bound is 9e-6, at the start points.
GRID_ERROR_DIVISOR = 15.0


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
    doses : tuple of progression.dosing.Dose
        The subject's dose records, times in data time (shifted to model time with the
        subject's time offset, like the observations); ``subject`` is ignored.
    dose_records : bool
        The data set gives doses as records: the model's record-free dose parameter
        (``[dosing] dose_parameter``) is 0 for this subject, as in ``simulate(..., doses=...)``.
    covariates : tuple of (str, ndarray, ndarray)
        Covariates the model declares: ``(name, times, values)`` with times in data time (a
        baseline covariate is one value at time 0).
    condition : ndarray of str (n,) or None
        Experimental condition of each value (``""``: none); see :class:`Problem`.
    sd : ndarray (n,) or None
        Known standard deviation of each value (the ``"measured"`` error model; NaN where not
        given).
    """

    id: str
    time: np.ndarray
    obs: np.ndarray
    value: np.ndarray
    cens: np.ndarray
    limit: np.ndarray
    offset_covariate: float = 0.0
    doses: tuple = ()
    dose_records: bool = False
    covariates: tuple = ()
    condition: np.ndarray | None = None
    sd: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.time.shape[0]

    def with_values(self, value: np.ndarray) -> Design:
        """The same design with other values (e.g. a bootstrap replicate)."""
        return dataclasses.replace(self, value=np.asarray(value, float))

    def replace(self, **changes) -> Design:
        """A copy with some fields changed (doses, covariates, conditions are kept)."""
        return dataclasses.replace(self, **changes)


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


def _has_inputs(problem, design) -> bool:
    """Whether a design's rows are simulated with inputs (doses, covariates, or conditions
    with doses) on the exact path."""
    if design.doses or design.covariates or getattr(problem.model, "covariate_names", ()):
        return True
    if design.condition is not None and problem.conditions:
        used = set(np.unique(design.condition).tolist()) - {""}
        return any(c.doses for c in problem.conditions if c.name in used)
    return False


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
    #: Per row: evaluated on the exact path by the grid path's error control (bool (R,)).
    routed: np.ndarray | None = None


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
    conditions: tuple = ()
    #: Some rows carry doses, covariates or condition inputs (set by :meth:`fix_grid_step`).
    has_inputs: bool = False
    #: Every design carries such inputs (so no row uses the grid path).
    all_inputs: bool = False

    def __post_init__(self):
        model = self.model
        self.condition_names = tuple(c.name for c in self.conditions)
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
            if not names:                      # "measured": sigma from the data, no parameter
                self.a_index[i] = -1
                continue
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
        # what the grid path's error control did in this process (for path_name)
        self.routing = {"evaluations": 0, "rows": 0, "largest": 0.0, "subjects": set()}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: FitConfig) -> Problem:
        return cls(config.model, tuple(config.errors), tuple(config.errors.values()),
                   config.parameters, dict(config.solver),
                   tuple(getattr(config, "conditions", ()) or ()))

    def __getstate__(self):
        return {"model": self.model, "observables": self.observables,
                "error_models": self.error_models, "parameters": self.parameters,
                "solver": self.solver, "conditions": self.conditions,
                "has_inputs": self.has_inputs, "all_inputs": self.all_inputs}

    def __setstate__(self, state):
        # states pickled before conditions and inputs existed have none
        self.__dict__.update({"conditions": (), "has_inputs": False, "all_inputs": False,
                              **state})
        self.__post_init__()

    def fix_grid_step(self, designs) -> None:
        """Resolve ``grid_step = "auto"`` once, from all the data, before any evaluation.

        Resolved per evaluation it followed the latest time of each batch, so a subject's
        estimate depended on which subjects shared its batch, and the objective jumped where
        that time crossed a power of two. The span used is the latest data time plus the
        largest time offset the bounds allow (its value when unbounded or not estimated).

        Also notes whether any design carries inputs (doses, covariates, conditions with
        inputs), which :meth:`path_name` reports.
        """
        flags = [_has_inputs(self, d) for d in designs]
        self.has_inputs = bool(self.has_inputs or any(flags))
        self.all_inputs = bool(flags) and all(flags)
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
                       solver, self.conditions, self.has_inputs, self.all_inputs)

    def path_name(self) -> str:
        """How this problem computes outputs and sensitivities, in words."""
        if self.exact:
            return "exact outputs, forward sensitivities"
        if self.all_inputs:
            return ("exact outputs, forward sensitivities (every subject has doses, covariates "
                    "or condition inputs, which the grid path does not interpolate across)")
        sens = self.solver.get("sensitivities", "grid")
        text = (f"grid outputs (Hermite interpolation, step {self.solver.get('grid_step')}), "
                f"{'grid' if sens == 'grid' else 'forward'} sensitivities")
        if self.has_inputs:
            # An interpolant across a dose jump or covariate change would be wrong: such rows
            # are simulated piecewise by simulate() at their own times (see evaluate).
            text += ("; rows with doses, covariates or condition inputs: exact outputs, "
                     "forward sensitivities")
        text += "; " + self.routing_note()
        return text

    def routing_note(self) -> str:
        """What the grid path's error control did so far (evaluations in this process)."""
        tol = self.grid_error_tolerance()
        stats = self.routing
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
                 accurate: bool | None = None, prior=None) -> Evaluation:
        """Residuals (and Jacobians on the estimation scale) for R rows at once.

        A row's data are simulated as one or more *units*: one per experimental condition its
        values belong to (see :class:`Problem`), each with the condition's parameter
        overrides and inputs. Units without inputs go through the configured path (grid or
        exact); units with doses or time-varying covariates are simulated by
        :func:`progression.simulate` at their own times with forward sensitivities, so that
        no interpolant crosses a dose (:meth:`path_name` says so). Outputs are put back in
        the row's order: residuals, Jacobians, information and ``m2ll`` stay per row.

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
        prior : callable, optional
            ``prior(x) -> (res, jac)`` with ``x`` (R, D) the estimation-scale values of the
            columns ``cols``: extra residuals ``res`` (R, k) appended to each row's residual
            vector (their squares added to ``m2ll``) and their Jacobian ``jac`` (R, k, D)
            with respect to ``x`` (``jac^T jac`` added to ``info``); e.g.
            :class:`progression.fit.likelihood.GaussianPrior`.
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
        sd = cat([designs[d].sd if designs[d].sd is not None else np.full(designs[d].n, np.nan)
                  for d in row_design])
        cov = np.array([designs[d].offset_covariate for d in row_design], dtype=float)
        P = self.P
        offset = theta[:, self.offset_index] + self.offset_factor * cov
        tm = tdata + offset[rr]
        before = tm < 0
        tm = np.where(before, 0.0, tm)
        model_cols = cols[cols < P]
        want_d = want_jac or want_info
        sens = [self.model.parameter_names[q] for q in model_cols] if want_d else []
        units = self._units(designs, row_design, theta, rr, offset)
        if want_d and self.offset_index in cols and any(u is not None for u in units.inputs):
            raise ConfigError(f"key 'parameters.{OFFSET}': an estimated time offset is not "
                              "supported for subjects with doses, time-varying covariates or "
                              "condition inputs (the derivative would be wrong); fix the "
                              "offset")
        # Optimiser steps tolerate a Jacobian good to ~1e-3; the information matrix behind the
        # standard errors gets the Richardson-extrapolated grid sensitivities.
        out = self._outputs(units.table, units.of_obs, tm, oi, sens,
                            accurate=want_info if accurate is None else accurate,
                            inputs=units.inputs)
        f, dfdp, dfdtau, ustatus, umessages, uerr = out
        ustatus, umessages = np.array(ustatus, dtype=int), list(umessages)
        a_idx, b_idx = self.a_index[oi], self.b_index[oi]
        a = np.where(a_idx >= 0, theta[rr, np.maximum(a_idx, 0)], 0.0)
        b = np.where(b_idx >= 0, theta[rr, np.maximum(b_idx, 0)], 0.0)
        code = self.codes[oi]
        a = np.where(code == MEASURED, sd, a)
        # Error control of the grid path: rows whose interpolation error would move their
        # objective by more than the tolerance are evaluated exactly, here and now.
        routed = self._route_exact(units, rr, tm, oi, sens, (f, dfdp, ustatus, umessages),
                                   uerr, (code, y, cens, limit, a, b), R, row_design, designs)
        status = np.zeros(R, dtype=int)
        np.minimum.at(status, units.row, ustatus)
        messages = ["; ".join(umessages[u] for u in np.nonzero(units.row == r)[0]
                              if ustatus[u] < 0) for r in range(R)]
        if want_d and units.fixed is not None:
            # a condition's fixed override: the unit does not depend on that parameter
            for j, q in enumerate(model_cols):
                dfdp[j, units.fixed[units.of_obs, q]] = 0.0
        N = f.shape[0]
        df = np.zeros((N, D))
        if want_d:
            for c, q in enumerate(cols):
                if q < P:
                    df[:, c] = dfdp[list(model_cols).index(q)]
                elif q == self.offset_index:
                    df[:, c] = np.where(before, 0.0, dfdtau)
        da = (cols[None, :] == a_idx[:, None]).astype(float)
        db = (cols[None, :] == b_idx[:, None]).astype(float)
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
        # prior/penalty residuals (a population model's eta' Omega^-1 eta enters here)
        p_res = p_jac = None
        if prior is not None:
            x = to_internal(theta[:, cols], self.scale[cols], self.lower[cols],
                            self.upper[cols])
            p_res, p_jac = prior(x)
            p_res = np.asarray(p_res, dtype=float).reshape(R, -1)
            p_jac = np.asarray(p_jac, dtype=float).reshape(R, p_res.shape[1], D)
            m2ll = m2ll + np.sum(p_res * p_res, axis=1)
            bad |= ~np.all(np.isfinite(p_res), axis=1)
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
        # per-row residual vectors: data residuals, then sigma residuals, then prior terms
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
        if p_res is not None:
            residuals = [np.concatenate([res, p]) for res, p in zip(residuals, p_res,
                                                                    strict=True)]
            if want_jac:
                jacobians = [np.vstack([j, pj]) for j, pj in zip(jacobians, p_jac, strict=True)]
            counts = counts + p_res.shape[1]
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
            if p_jac is not None:
                info += np.einsum("rkd,rke->rde", p_jac, p_jac)
            info[failed] = np.nan
        predictions = np.split(f, np.cumsum(sizes)[:-1]) if want_predictions else None
        before_zero = np.bincount(rr, weights=before, minlength=R).astype(int)
        return Evaluation(residuals, jacobians, m2ll, failed, msgs, info, predictions,
                          sizes, before_zero, routed)

    def grid_error_tolerance(self) -> float:
        """The grid path's error tolerance in ``-2 log L`` per row (``solver["grid_error"]``,
        default :data:`GRID_ERROR`)."""
        return float(self.solver.get("grid_error", GRID_ERROR))

    def _route_exact(self, units, rr, tm, oi, sens, out, err, data, R, row_design, designs):
        """Re-evaluate on the exact path the rows whose grid interpolation error bound exceeds
        :meth:`grid_error_tolerance`; returns which rows went (bool (R,)).

        The bound of a row is ``sum_j max_{+-} |m2ll_j(f_j +- e_j) - m2ll_j(f_j)|`` with
        ``e_j`` the interpolation error estimate of value ``j`` (``|f_h - f_2h| /``
        :data:`GRID_ERROR_DIVISOR`); for a normal error model it is
        ``sum_j 2 |r_j| e_j / sigma_j + (e_j / sigma_j)^2``. It is computed from the row's own
        trajectory, so the decision does not depend on the batch. The routed rows' units are
        simulated by :func:`progression.simulate` with forward sensitivities at the exact
        path's tolerances (their time-offset derivative stays the grid's).
        """
        routed = np.zeros(R, dtype=bool)
        tol = self.grid_error_tolerance()
        if self.exact:
            return routed
        stats = self.routing
        stats["evaluations"] += 1
        if not np.any(err > 0) or not np.isfinite(tol):
            return routed
        f, dfdp, ustatus, umessages = out
        code, y, cens, limit, a, b = data
        varies = self.sigma_varies[oi]
        zero = np.zeros((f.shape[0], 0))
        with np.errstate(all="ignore"):
            base_terms = likelihood_terms(code, y, cens, limit, f, zero, a, zero, b, zero,
                                          varies, want_jac=False)
            base = base_terms.m2ll
            dev = np.zeros(f.shape[0])
            for sign in (1.0, -1.0):
                moved = likelihood_terms(code, y, cens, limit, f + sign * err, zero, a, zero,
                                         b, zero, varies, want_jac=False).m2ll
                dev = np.maximum(dev, np.abs(moved - base))
        bound = np.bincount(rr, weights=np.where(np.isfinite(dev), dev, 0.0), minlength=R)
        # Far from the optimum the residuals, and with them the bound's linear term, are
        # large, while an optimiser compares objectives that differ by far more: the tolerance
        # grows with the root-mean-square residual where it exceeds 1 (at an optimum it is ~1,
        # so the reported objective keeps the absolute tolerance).
        n_row = np.bincount(rr, minlength=R)
        r2 = base_terms.r * base_terms.r
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
            self._simulate_units(group[lo:lo + EXACT_GROUP], units.table, units.of_obs, tm, oi,
                                 sens, none, (f, dfdp, ustatus, umessages), tight=True)
        stats["rows"] += int(routed.sum())
        stats["largest"] = max(stats["largest"], float(bound[routed].max()))
        stats["subjects"].update(designs[d].id for d in row_design[routed])
        return routed

    def _units(self, designs, row_design, theta, rr, offset) -> _Units:
        """Simulation units of a batch of rows: one per (row, condition) with values.

        Each unit gets its row's model parameters with its condition's overrides, the record-
        free dose parameter set to 0 where the data give dose records, and its inputs (the
        subject's doses and covariates plus the condition's doses, in model time) or None.
        """
        P = self.P
        R = theta.shape[0]
        C = len(self.conditions)
        # A model with covariates carries them as hidden parameter rows that only simulate()
        # fills (defaults included), so all its units take the input path.
        has_cov = bool(getattr(self.model, "covariate_names", ()))
        plain = C == 0 and not has_cov and not any(
            designs[d].doses or designs[d].covariates or designs[d].dose_records
            for d in row_design)
        if plain:
            return _Units(np.arange(R), rr, theta[:, :P].copy(), [None] * R, None)
        index = {name: c for c, name in enumerate(self.condition_names)}
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
        model = self.model
        dp = model.spec.dose_parameter if hasattr(model, "spec") else None
        dp_index = model.parameter_index(dp) if dp is not None else None
        inputs = []
        for u in range(U):
            design = designs[row_design[unit_row[u]]]
            off = float(offset[unit_row[u]])
            doses = list(design.doses)
            if unit_cond[u] >= 0:
                cond = self.conditions[unit_cond[u]]
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
                    "doses": tuple(dataclasses.replace(x, time=x.time + off) for x in doses),
                    "covariates": {name: (np.asarray(t, float) + off, np.asarray(v, float))
                                   for name, t, v in design.covariates}})
            else:
                inputs.append(None)
        return _Units(unit_row, of_obs, table, inputs, fixed if fixed.any() else None)

    def _outputs(self, table, rr, tm, oi, sens, accurate=True, inputs=None):
        """Predictions f (N,), df/dp (k, N), df/dtau (N,), status (U,), messages, for units
        ``table`` (U, P) with the unit of each value ``rr``; units with ``inputs`` are
        simulated with them (doses, covariates) on the exact path, the others on the
        configured path."""
        has = np.array([x is not None for x in inputs]) if inputs is not None else None
        if has is None or not has.any():
            return self._plain_outputs(table, rr, tm, oi, sens, accurate)
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
            o = self._plain_outputs(table[plain], new[rr[sel]], tm[sel], oi[sel], sens,
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
                self._simulate_units(group, table, rr, tm, oi, sens, inputs,
                                     (f, dfdp, status, messages))
        return f, dfdp, dfdtau, status, messages, err

    def _simulate_units(self, group, table, rr, tm, oi, sens, inputs, out, tight=False):
        """Simulate units ``group`` with their inputs at the union of their times (forward
        sensitivities) and write their outputs into ``out = (f, dfdp, status, messages)``;
        ``tight``: at the exact path's tolerances (:data:`EXACT_RTOL`, the user's where
        tighter), so that a unit's outputs do not move with its group companions."""
        from ..errors import ProgressionError
        from ..simulate import simulate

        f, dfdp, status, messages = out
        model = self.model
        pos = np.full(table.shape[0], -1)
        pos[group] = np.arange(group.size)
        sel = pos[rr] >= 0
        grid = np.unique(np.concatenate([[0.0], tm[sel]]))
        doses = [dataclasses.replace(x, subject=b) for b, u in enumerate(group)
                 for x in inputs[u]["doses"]]
        kwargs = self._solver_options(sens)
        if tight:
            kwargs["rtol"] = min(kwargs["rtol"], EXACT_RTOL)
            kwargs["atol"] = min(kwargs["atol"], EXACT_ATOL)
        if any(inputs[u]["covariates"] for u in group):
            kwargs["covariates"] = [inputs[u]["covariates"] for u in group]
        try:
            with np.errstate(all="ignore"):
                sim = simulate(model, table[group], grid, doses=doses or None, **kwargs)
        except ProgressionError as exc:
            if group.size > 1:
                # find the unit whose inputs cannot be simulated; the others go on
                for u in group:
                    self._simulate_units(np.array([u]), table, rr, tm, oi, sens, inputs, out,
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
        kidx = self.obs_model_index[oi[sel]]
        # observables as simulate() reports them: with the parameters in force at each time
        # (infusion rates, covariates), and their sensitivities carried across every dose
        f[sel] = sim.observables[b, kidx, col]
        if len(sens):
            dfdp[:, sel] = sim.observable_sensitivities[b, kidx, :, col].T

    def _solver_options(self, sens):
        solver = self.solver
        return {"method": solver.get("method", "LSODA"), "rtol": solver.get("rtol", 1e-6),
                "atol": solver.get("atol", 1e-9), "max_step": solver.get("max_step", np.inf),
                "max_steps": solver.get("max_steps", 100_000), "terminal_events": False,
                "sensitivities": list(sens) or None}

    def _plain_outputs(self, table, rr, tm, oi, sens, accurate=True):
        """Predictions f (N,), df/dp (k, N), df/dtau (N,), status (R,), messages, for units
        without inputs on the configured path."""
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
            y2 = self._coarse_interpolant(X, table, grid, tm, rr)
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
            err = np.zeros(N)
            if mode != "exact":
                f2 = model.observe(tm, y2, p_obs)[kidx, cols]
                err = np.abs(f - f2) / GRID_ERROR_DIVISOR
        return f, dfdp, dfdtau, status, messages, err

    def _coarse_interpolant(self, X, table, grid, tm, rr):
        """States at ``tm`` from the Hermite interpolant on every other grid node (step 2h),
        for the grid path's error estimate: nodes ``2j`` of the row's own trajectory, so the
        estimate depends on the row alone, not on the batch's extent."""
        h2 = 2.0 * (grid[1] - grid[0])
        G = grid.size
        j = np.clip(np.floor(tm / h2).astype(int), 0, max((G - 3) // 2, 0))
        a, b = 2 * j, 2 * j + 2
        s = (tm - grid[a]) / h2
        key = np.concatenate([rr * G + a, rr * G + b])
        uk, inv = np.unique(key, return_inverse=True)
        ur, un = uk // G, uk % G
        Yu = X[ur, :, un].T
        with np.errstate(all="ignore"):
            Fu = self.model.rhs(grid[un], Yu, table[ur].T)
        N = tm.shape[0]
        i0, i1 = inv[:N], inv[N:]
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return h00 * Yu[:, i0] + h10 * h2 * Fu[:, i0] + h01 * Yu[:, i1] + h11 * h2 * Fu[:, i1]


def grid_step(setting, t_end: float) -> float:
    """The Hermite grid step: a number, or ``"auto"``: a power of two near ``t_end / 200``
    (0.25 for spans of 36-72 time units), so that it changes rarely during a fit."""
    if setting != "auto":
        return float(setting)
    span = max(float(t_end), 1e-12)
    return float(2.0 ** np.floor(np.log2(span / 200.0) + 0.5))


def designs_from_cohort(cohort, config: FitConfig) -> tuple[list[Design], list[str]]:
    """Turn a Cohort into one Design per subject for the observables the config fits.

    Each design carries the subject's dose records (times in data time, shifted to model time
    with the subject's offset at evaluation), the model's covariates from the data
    (time-varying ones as ``(times, values)``, baseline ones as one value at time 0), each
    value's experimental condition and its measured SD (data column ``sd``).

    Returns the designs and notes (observables ignored, subjects without data).

    Raises
    ------
    ConfigError
        An observable with an error model has no data at all; an estimated time offset or
        record-free dose parameter with dose records.
    DataError
        Log-normal values <= 0, a missing time-offset covariate, a dose record whose
        compartment the model does not declare (or a model without dosing compartments),
        a dose before model time 0, a value without SD under the ``measured`` error model.
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
    dose_records = bool(len(cohort.doses.get("time", ())))
    if dose_records:
        _check_dosing(cohort, config)
    model_covariates = tuple(getattr(config.model, "covariate_names", ()) or ())
    unused_tv = sorted(set(map(str, cohort.time_varying.get("name", ()))) - set(model_covariates))
    if unused_tv:
        notes.append("time-varying covariates the model does not declare are not used: "
                     + ", ".join(unused_tv) + f" (model '{config.model.name}' covariates: "
                     + (", ".join(model_covariates) or "none") + ")")
    if model_covariates and config.parameter(OFFSET).estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported for model '{config.model.name}', which has "
                          f"covariates ({', '.join(model_covariates)}): the offset's derivative "
                          "would be wrong where a covariate changes; fix the offset")
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
    measured = {o for o, e in config.errors.items() if e == "measured"}
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
            sd = getattr(s, "sd", None)
            sd = np.full(s.time.shape, np.nan) if sd is None else np.asarray(sd, float)
            if obs in measured:
                for t in s.time[~(sd > 0)]:
                    problems.append(f"{cohort.place(sid, obs, t, column='sd')}, observable "
                                    f"'{obs}', time {t:g}: the measured error model needs the "
                                    "value's SD (data column 'sd', > 0), found none")
            cond = getattr(s, "condition", None)
            cond = np.full(s.time.shape, "", dtype=object) if cond is None else \
                np.asarray(cond, dtype=object)
            parts.append((s.time, np.full(s.time.shape, i), s.value, s.cens, s.limit, sd,
                          cond))
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
        doses = _subject_doses(cohort, sid, sub, config, problems) if dose_records else ()
        if doses and not offset.estimated:
            shift = offset.value + offset.factor * cov_value
            early = [x for x in doses if x.time + shift < 0]
            if early:
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}', dose at time "
                                f"{early[0].time:g}: with the time offset {shift:g} it falls "
                                f"at model time {early[0].time + shift:g}, before the model's "
                                "t = 0 (expected a dose at model time >= 0)")
        sd = cols[5][order].astype(float)
        condition = cols[6][order].astype(str)
        covariates = _subject_covariates(cohort, sid, sub, config, problems)
        designs.append(Design(str(sid), cols[0][order].astype(float),
                              cols[1][order].astype(int), cols[2][order].astype(float),
                              cols[3][order].astype(int), cols[4][order].astype(float),
                              cov_value, doses=doses, dose_records=dose_records,
                              covariates=covariates,
                              condition=condition if (condition != "").any() else None,
                              sd=sd if np.isfinite(sd).any() else None))
    _check_conditions(cohort, config, designs, subjects, notes, problems)
    if problems:
        # The summary line carries the first problem itself, so that it informs on its own.
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{cohort.source or 'cohort'}: {len(problems)} problems for the fit, "
                        f"the first: {problems[0]}", problems)
    if not designs:
        raise DataError(f"{cohort.source or 'cohort'}: no subject has observations of "
                        + ", ".join(observables))
    return designs, notes


def _check_dosing(cohort, config: FitConfig) -> None:
    """Dose records need a model with dosing compartments, a fixed time offset and a fixed
    record-free dose parameter."""
    model = config.model
    spec = getattr(model, "spec", None)
    n = len(cohort.doses["time"])
    if not getattr(spec, "dosing", ()):
        first = str(cohort.doses["subject"][0])
        raise DataError(f"{cohort.source or 'cohort'}, subject '{first}': the data hold {n} dose "
                        f"records, but model '{model.name}' declares no dosing compartments "
                        "(add a [dosing.STATE] table to the model file, or fit a model that "
                        "has one)")
    offset = config.parameter(OFFSET)
    if offset.estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported with dose records ({n} in "
                          f"{cohort.source or 'the data'}): its derivative would be wrong "
                          "when doses move with the offset; fix the offset (estimate = "
                          "\"fixed\") or fit data without doses")
    if spec.dose_parameter is not None and config.parameter(spec.dose_parameter).estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{spec.dose_parameter}': the "
                          f"record-free dose parameter of model '{model.name}' is 0 when the "
                          f"data give dose records ({n} in {cohort.source or 'the data'}); "
                          "expected it fixed")


def _subject_doses(cohort, sid, sub, config: FitConfig, problems: list) -> tuple:
    """One subject's dose records as a tuple of Dose (data time), each checked against the
    model's dosing compartments (a bad one is added to ``problems``)."""
    from ..dosing import Dose, dose_table
    from ..errors import ProgressionError

    d = sub.doses
    out = []
    for j in range(len(d["time"])):
        amount = float(d["amount"][j])
        amount = 0.0 if not np.isfinite(amount) else amount
        reset = bool(d["reset"][j])
        target = str(d["target"][j]).strip() or None
        rate = float(d["rate"][j]) if np.isfinite(d["rate"][j]) else 0.0
        duration = float(d["duration"][j]) if np.isfinite(d["duration"][j]) else 0.0
        # A steady-state record (SS = 1) and its interval; older cohorts have no such columns.
        ss = int(d["ss"][j]) if "ss" in d else 0
        ii = float(d["ii"][j]) if "ii" in d and np.isfinite(d["ii"][j]) else 0.0
        dose = Dose(float(d["time"][j]), amount, target=target, rate=rate,
                    duration=duration, ss=ss, ii=ii,
                    evid=(4 if amount > 0 else 3) if reset else 1)
        try:
            dose_table(config.model, [dose])
        except ProgressionError as exc:
            text = str(exc).split(": ", 1)[-1]
            # the data column the simulator's message is about (the amount when none)
            field_ = next((f for f in ("target", "rate", "duration", "ss", "ii")
                           if f"field '{f}'" in str(exc)), None)
            place = (cohort.dose_place(sid, j, field_ or "amount")
                     if hasattr(cohort, "dose_place") else
                     f"{cohort.source or 'cohort'}, subject '{sid}'")
            problems.append(f"{place}, dose at time {dose.time:g}"
                            + (f", compartment {target!r}" if field_ else "") + f": {text}")
            continue
        out.append(dose)
    return tuple(out)


def _check_conditions(cohort, config: FitConfig, designs, subjects, notes, problems) -> None:
    """Every condition in the data is defined in the config; defined but unused ones are
    noted (and warned about); an estimated offset is refused with condition doses."""
    import warnings

    defined = {c.name: c for c in getattr(config, "conditions", ()) or ()}
    used: set = set()
    for d in designs:
        if d.condition is None:
            continue
        for name in np.unique(d.condition).tolist():
            if not name:
                continue
            used.add(name)
            if name not in defined:
                t = float(d.time[d.condition == name][0])
                o = tuple(config.errors)[int(d.obs[d.condition == name][0])]
                hint = did_you_mean(name, list(defined))
                problems.append(f"{cohort.place(d.id, o, t, column='condition')}: condition "
                                f"'{name}' is not defined in {config.source} (expected a "
                                f"[conditions.{name}] table; defined: "
                                f"{', '.join(defined) or 'none'}){hint}")
    unused = [n for n in defined if n not in used]
    if unused:
        text = (f"{config.source}: condition" + ("s " if len(unused) > 1 else " ")
                + ", ".join(f"'{n}' (key 'conditions.{n}')" for n in unused)
                + f" not used by any value in {cohort.source or 'the data'} (data column "
                "'condition')")
        notes.append(text)
        warnings.warn(text, UserWarning, stacklevel=3)
    offset = config.parameter(OFFSET)
    dosed = [n for n in used if n in defined and defined[n].doses]
    if dosed and offset.estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported with condition doses (conditions "
                          f"{', '.join(sorted(dosed))}): its derivative would be wrong; fix "
                          "the offset")


def _subject_covariates(cohort, sid, sub, config: FitConfig, problems: list) -> tuple:
    """The model's covariates for one subject: ``(name, times, values)`` from the data's
    time-varying covariates (data time), else its numeric baseline value (one value at time
    0); a covariate the model requires (no default ``value``) and the data lack is added to
    ``problems``."""
    spec = getattr(config.model, "spec", None)
    out = []
    for cov in getattr(spec, "covariates", ()) or ():
        name = cov.name
        if name in sub.time_varying:
            t, v = sub.time_varying[name]
            order = np.argsort(t, kind="stable")
            out.append((name, np.asarray(t, float)[order], np.asarray(v, float)[order]))
            continue
        value = sub.covariates.get(name)
        if isinstance(value, float | int) and np.isfinite(value):
            out.append((name, np.zeros(1), np.array([float(value)])))
        elif value is not None:
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': covariate '{name}' "
                            f"of model '{config.model.name}' must be a number, found {value!r}")
        elif cov.value is None:
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': model "
                            f"'{config.model.name}' needs covariate '{name}' (it has no "
                            "default value), but the data give none (a baseline covariate "
                            f"column or time-varying rows named '{name}')")
    return tuple(out)
