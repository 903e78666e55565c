"""The estimation problem: subjects' data, the parameter layout, and batched residuals.

:class:`Problem` evaluates residuals (a sum of squares equal to ``-2 log L`` up to a constant,
see :mod:`~progression.fit.errormodels`) and their Jacobian for many *rows* at once (a row is
a subject, or one start of a subject, or a bootstrap replicate) from **one** stacked solve:
the states by :func:`progression.simulate.solve_states` with sensitivities of the estimated
model parameters on the output grid (:mod:`progression._gridsens`, ``[solver] sensitivities =
"grid"``), or one :func:`progression.simulate` call carrying forward sensitivities
(``"forward"``, and always with ``outputs = "exact"``). Derivatives with respect to the time
offset come from the time derivative of the trajectory (``df/dtau = dh/dy * dy/dt +
dh/dt``), those of error parameters analytically. An event-anchored offset
(``[parameters.time_offset] anchor``, :mod:`progression.fit._anchor`) is the model time of an
event under the row's own parameters; the predictions' derivatives then carry ``df/dtau *
dT/dp`` (implicit-function rule at the event).

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

**Survival.** With ``survival`` (a config's ``[survival]`` table), each design's survival
record (:mod:`progression.fit._survival_likelihood`) adds pseudo-observations of the model's
cumulative hazard and hazard at the record's times to the row's values, obtained with the data
on the same path; from them the row gets its time-to-event residuals (after the data and sigma
residuals), ``-2 log L`` and information. Predictions, ``nobs`` and Hessians are of the data
values only.

**Prior.** ``evaluate(..., prior=)`` appends penalty residuals per row (see
:mod:`progression.fit.likelihood`): the random-effect term of a population model enters there.

A simulation that fails (status -1) or yields non-finite residuals marks its row *failed*: the
row gets a large constant penalty residual and a zero Jacobian, which an optimiser treats as a
rejected step. Failures are counted, never raised.

The work is shared out by job: :mod:`progression.fit.design` turns a cohort into designs,
:mod:`progression.fit._paths` builds the simulation units and obtains outputs and
sensitivities on either path, :mod:`progression.fit._error_control` bounds the grid path's
interpolation error and routes rows to the exact path; this module holds the parameter layout
and the likelihood entry, :meth:`Problem.evaluate`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .._repr import brief, names
from ..errors import ConfigError
from ..simulate._registry import AUTO_FALLBACK
from . import _error_control, _paths
from . import _survival_likelihood as _survival
from ._error_control import GRID_ERROR, GRID_ERROR_DIVISOR
from ._paths import EXACT_ATOL, EXACT_GROUP, EXACT_RTOL, grid_step
from ._paths import has_inputs as _has_inputs
from ._rows import pieces, sum_rows
from .config import OFFSET, FitConfig, FitParameter
from .design import Design, designs_from_cohort
from .errormodels import CODES, ERROR_MODELS, MEASURED, likelihood_terms
from .transforms import SCALES, from_internal, to_internal

__all__ = ["Design", "Problem", "Evaluation", "designs_from_cohort", "PENALTY", "EXACT_RTOL",
           "EXACT_ATOL", "EXACT_GROUP", "GRID_ERROR", "GRID_ERROR_DIVISOR", "grid_step",
           "HESSIAN_STEP"]

#: Residual value given to every entry of a failed row.
PENALTY = 1.0e4
#: Step (estimation scale) of the central differences behind ``evaluate(want_hessian=True)``.
HESSIAN_STEP = 1e-4


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
    #: Per row (when asked for): second derivatives of the data residuals with respect to the
    #: columns on the estimation scale, ``(len, D, D)`` (prior terms not included; NaN where
    #: the row or one of its perturbed evaluations failed). See :meth:`Problem.evaluate`.
    hessians: list | None = None
    #: Per row: the survival part of ``m2ll`` (``-2 log L`` of the time-to-event records,
    #: 0 without one; NaN where failed), or None without ``[survival]``. A population
    #: estimator that takes Gaussian predictions adds it to its data term.
    survival_m2ll: np.ndarray | None = None


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
    #: The time-to-event part (``[survival]``), or None.
    survival: object = None

    def __repr__(self) -> str:
        estimated = sum(p.estimated for p in self.parameters)
        return brief(self, repr(self.model.name), f"observables {names(self.observables)}",
                     f"{len(self.parameters)} quantities, {estimated} estimated",
                     f"conditions {names(self.condition_names)}" if self.conditions else "",
                     "with survival" if self.survival is not None else "")

    def __post_init__(self):
        model = self.model
        self.condition_names = tuple(c.name for c in self.conditions)
        self.P = model.n_parameters
        self.Q = len(self.parameters)
        self.names = tuple(p.name for p in self.parameters)
        self.obs_model_index = np.array([model.observable_names.index(o)
                                         for o in self.observables], dtype=int)
        self.codes = np.array([CODES[e] for e in self.error_models], dtype=int)
        if self.survival is not None:
            # the survival pseudo-observations: the cumulative hazard, then the hazard
            extra = [model.observable_names.index(self.survival.cumulative),
                     model.observable_names.index(self.survival.rate)]
            self.obs_model_index = np.concatenate([self.obs_model_index, extra]).astype(int)
            self.codes = np.concatenate([self.codes, [0, 0]]).astype(int)
        index = {p.name: q for q, p in enumerate(self.parameters)}
        self.offset_index = index[OFFSET]
        self.offset_factor = float(self.parameters[self.offset_index].factor)
        # an event-anchored offset (progression.fit._anchor): its value per row is the model
        # time of this event under the row's parameters, not theta[:, offset_index]
        self.anchor = getattr(self.parameters[self.offset_index], "anchor", None)
        n_slots = len(self.obs_model_index)
        self.a_index = np.full(n_slots, -1, dtype=int)
        self.b_index = np.full(n_slots, -1, dtype=int)
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
        varies += [False] * (n_slots - len(varies))
        self.sigma_varies = np.array(varies, dtype=bool)
        # what the grid path's error control did in this process (for path_name)
        self.routing = {"evaluations": 0, "rows": 0, "largest": 0.0, "subjects": set()}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: FitConfig) -> Problem:
        return cls(config.model, tuple(config.errors), tuple(config.errors.values()),
                   config.parameters, dict(config.solver),
                   tuple(getattr(config, "conditions", ()) or ()),
                   survival=getattr(config, "survival", None))

    def __getstate__(self):
        return {"model": self.model, "observables": self.observables,
                "error_models": self.error_models, "parameters": self.parameters,
                "solver": self.solver, "conditions": self.conditions,
                "has_inputs": self.has_inputs, "all_inputs": self.all_inputs,
                "survival": self.survival}

    def __setstate__(self, state):
        # states pickled before conditions and inputs existed have none
        self.__dict__.update({"conditions": (), "has_inputs": False, "all_inputs": False,
                              "survival": None, **state})
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
        if self.survival is not None:
            # the records' times (events after the last visit) count for the span
            designs = _survival.augment(self, designs).designs
        flags = [_has_inputs(self, d) for d in designs]
        self.has_inputs = bool(self.has_inputs or any(flags))
        self.all_inputs = bool(flags) and all(flags)
        if self.solver.get("grid_step", "auto") != "auto" or not designs:
            return
        off = self.parameters[self.offset_index]
        top = (off.upper if (off.estimated or self.anchor) and np.isfinite(off.upper)
               else off.value)
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
                       solver, self.conditions, self.has_inputs, self.all_inputs,
                       self.survival)

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
        return _error_control.routing_note(self)


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

    def with_anchor_values(self, designs, theta: np.ndarray) -> np.ndarray:
        """``theta`` (m, Q) of subjects ``0..m-1`` with the time-offset column set to each
        subject's anchored value ``T_i`` (the model time of the anchor event under its own
        parameters, on the exact path), so that ``theta[:, offset] + factor * covariate``
        is the subject's time offset wherever a fit's table is read (reports, subjects.csv,
        predictions, virtual patients); ``theta`` unchanged without an anchor. NaN where the
        event was not found."""
        theta = np.array(theta, dtype=float, copy=True)
        if self.anchor is None or theta.shape[0] == 0:
            return theta
        from ._anchor import anchor_times

        exact = self.exact_path()
        theta[:, self.offset_index] = anchor_times(exact, theta[:, :self.P]).T
        return theta

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, designs, row_design, theta, cols, *, want_jac: bool = True,
                 want_info: bool = False, want_predictions: bool = False,
                 accurate: bool | None = None, prior=None, want_hessian: bool = False,
                 hessian_step: float = HESSIAN_STEP) -> Evaluation:
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
        want_hessian : bool
            Also return :attr:`Evaluation.hessians`: per row, ``d2 r / dx2`` (len, D, D) of
            its residuals (the data residuals first, then any sigma and survival residuals;
            a failed row: its data rows, NaN) on the estimation scale, by central differences (step
            ``hessian_step`` in ``x``) of the exact Jacobians. The ``2 D`` perturbed copies of
            a row are evaluated next to each other in one stacked solve (up to
            :data:`EXACT_GROUP` rows per solve), so they share one step-size sequence and
            the integrator's error, a smooth function of the parameters for fixed steps,
            cancels in the difference instead of being divided by the step: on the exact
            path the result is accurate to about the integrator's tolerance plus the
            ``O(step^2)`` truncation (tests/test_population_speed_paths.py measures it
            against a closed form), in ``ceil(R / (EXACT_GROUP // 2D))`` solves instead of
            ``2 D`` solves of all rows.
        hessian_step : float
            Step of those differences on the estimation scale.
        """
        hessians = None
        if want_hessian:
            hessians = self._residual_hessians(designs, row_design, theta, cols,
                                               float(hessian_step))
        theta = np.asarray(theta, dtype=float)
        cols = np.asarray(cols, dtype=int)
        R, D = theta.shape[0], cols.size
        row_design = np.asarray(row_design, dtype=int)
        aug = None
        if self.survival is not None:
            aug = _survival.augment(self, designs)
            designs = aug.designs
        sizes = np.array([designs[d].n for d in row_design], dtype=int)
        rr = np.repeat(np.arange(R), sizes)
        cat = np.concatenate
        tdata = cat([designs[d].time for d in row_design])
        oi = cat([designs[d].obs for d in row_design])
        y = cat([designs[d].value for d in row_design])
        cens = cat([designs[d].cens for d in row_design])
        limit = cat([designs[d].limit for d in row_design])
        sd = np.full(int(sizes.sum()), np.nan)       # measured SDs where given, else NaN
        for piece, d in zip(pieces(sd, sizes), row_design, strict=False):  # R = 0: one piece
            if designs[d].sd is not None:
                piece[:] = designs[d].sd
        cov = np.array([designs[d].offset_covariate for d in row_design], dtype=float)
        P = self.P
        model_cols = cols[cols < P]
        want_d = want_jac or want_info
        sens = [self.model.parameter_names[q] for q in model_cols] if want_d else []
        anchored = None
        if self.anchor is not None:
            # each row's clock from its own model: offset = T_event(theta) + factor * cov
            from ._anchor import anchor_times

            anchored = anchor_times(self, theta[:, :P], sens)
            value = np.where(np.isfinite(anchored.T), anchored.T, 0.0)
            offset = value + self.offset_factor * cov
        else:
            offset = theta[:, self.offset_index] + self.offset_factor * cov
        tm = tdata + offset[rr]
        before = tm < 0
        tm = np.where(before, 0.0, tm)
        units = _paths.make_units(self, designs, row_design, theta, rr, offset)
        if (self.anchor is not None or (want_d and self.offset_index in cols)) and any(
                u is not None for u in units.inputs):
            what = ("an anchored" if self.anchor is not None else "an estimated")
            raise ConfigError(f"key 'parameters.{OFFSET}': {what} time offset is not "
                              "supported for subjects with doses, time-varying covariates or "
                              "condition inputs (the derivative would be wrong); fix the "
                              "offset")
        # Optimiser steps tolerate a Jacobian good to ~1e-3; the information matrix behind the
        # standard errors gets the Richardson-extrapolated grid sensitivities.
        out = _paths.outputs(self, units.table, units.of_obs, tm, oi, sens,
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
        routed = _error_control.route_exact(self, units, rr, tm, oi, sens,
                                            (f, dfdp, ustatus, umessages), uerr,
                                            (code, y, cens, limit, a, b), R, row_design, designs)
        status = np.zeros(R, dtype=int)
        np.minimum.at(status, units.row, ustatus)
        # each row's failed units' messages, in unit order (only failed units are looked at)
        failed_units: dict = {}
        for u in np.nonzero(ustatus < 0)[0].tolist():
            failed_units.setdefault(int(units.row[u]), []).append(umessages[u])
        messages = ["; ".join(failed_units.get(r, ())) for r in range(R)]
        if anchored is not None:
            # no anchor event in the window: a failed row, like a failed simulation
            for r in np.nonzero(~np.isfinite(anchored.T))[0]:
                status[r] = -1
                messages[r] = anchored.messages[r]
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
            if anchored is not None and model_cols.size:
                # the clock moves with the parameters: df/dp += df/dtau * dT/dp
                lead = np.where(before, 0.0, dfdtau)
                for c, q in enumerate(cols):
                    if q < P:
                        j = list(model_cols).index(q)
                        df[:, c] += lead * anchored.dT[rr, j]
        s_terms = None
        if aug is not None:
            # the survival pseudo-observations leave the data arrays here
            pseudo = oi >= len(self.observables)
            s_terms = _survival.survival_terms(aug, row_design, f[pseudo], df[pseudo], R)
            keep = ~pseudo
            f, df, y, cens, limit, a, b, code, before, oi, rr, a_idx, b_idx = (
                x[keep] for x in (f, df, y, cens, limit, a, b, code, before, oi, rr, a_idx,
                                  b_idx))
            sizes = aug.n_real[row_design]
        da = (cols[None, :] == a_idx[:, None]).astype(float)
        db = (cols[None, :] == b_idx[:, None]).astype(float)
        terms = likelihood_terms(code, y, cens, limit, f, df, a, da, b, db,
                                 self.sigma_varies[oi], want_jac=want_d)
        m2ll = np.bincount(rr, weights=terms.m2ll, minlength=R)
        bad = np.zeros(R, dtype=bool)
        bad[rr[~np.isfinite(terms.r)]] = True
        e_rows = rr[terms.has_e]
        bad[e_rows[~np.isfinite(terms.e)]] = True
        # survival residuals go with the sigma residuals (after a row's data residuals)
        s_rows = np.zeros(0, dtype=int) if s_terms is None else s_terms.rows
        s_r = np.zeros(0) if s_terms is None else s_terms.r
        scale = None
        if want_d:
            scale = self.dtheta_dx(theta, cols)            # (R, D)
            dr = terms.dr * scale[rr]
            de = terms.de * scale[e_rows]
            bad[rr[~np.all(np.isfinite(dr), axis=1)]] = True
            bad[e_rows[~np.all(np.isfinite(de), axis=1)]] = True
        if s_terms is not None:
            m2ll = m2ll + s_terms.m2ll
            s_bad = s_terms.bad.copy()
            if want_d:
                s_dr = s_terms.dr * scale[s_rows]
                s_bad[s_rows[~np.all(np.isfinite(s_dr), axis=1)]] = True
                de = np.vstack([de, s_dr])
            bad |= s_bad
            e_rows = np.concatenate([e_rows, s_rows])
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
            elif s_terms is not None and s_bad[r]:
                msgs.append("non-finite survival term (the hazard <= 0 at the event time, or "
                            "a cumulative hazard that decreases: the hazard must be >= 0)")
            elif bad[r]:
                msgs.append("non-finite residuals (prediction outside the error model's "
                            "domain, e.g. a log-normal value predicted <= 0)")
            else:
                msgs.append("")
        m2ll[failed] = np.nan
        # per-row residual vectors: data residuals, then sigma residuals, then prior terms
        all_rows = cat([rr, e_rows])
        order = np.argsort(all_rows, kind="stable")
        res_all = cat([terms.r, terms.e, s_r])[order]
        counts = np.bincount(all_rows, minlength=R)
        residuals = pieces(res_all, counts)
        jacobians = [None] * R
        if want_jac:
            jac_all = np.vstack([dr, de])[order]
            jacobians = pieces(jac_all, counts)
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
            info = sum_rows(outer, rr, R)
            if s_terms is not None:
                info += s_terms.info * scale[:, :, None] * scale[:, None, :]
            if p_jac is not None:
                info += np.einsum("rkd,rke->rde", p_jac, p_jac)
            info[failed] = np.nan
        predictions = pieces(f, sizes) if want_predictions else None
        before_zero = np.bincount(rr, weights=before, minlength=R).astype(int)
        if hessians is not None:
            for r in np.nonzero(failed)[0]:
                hessians[r] = np.full((sizes[r], D, D), np.nan)
        survival_m2ll = None
        if s_terms is not None:
            survival_m2ll = np.where(failed, np.nan, s_terms.m2ll)
        return Evaluation(residuals, jacobians, m2ll, failed, msgs, info, predictions,
                          sizes, before_zero, routed, hessians, survival_m2ll)

    def _residual_hessians(self, designs, row_design, theta, cols, step):
        """Per row: ``d2 r / dx2`` (n_data, D, D) by central differences of the Jacobians,
        the ``2 D`` perturbed copies of a row next to each other in one stacked solve."""
        theta = np.asarray(theta, dtype=float)
        cols = np.asarray(cols, dtype=int)
        row_design = np.asarray(row_design, dtype=int)
        R, D = theta.shape[0], cols.size
        sizes = [designs[d].n for d in row_design]
        out = [np.full((n, D, D), np.nan) for n in sizes]
        if D == 0 or R == 0:
            return [np.zeros((n, D, D)) for n in sizes]
        sc, lo, hi = self.scale[cols], self.lower[cols], self.upper[cols]
        x = to_internal(theta[:, cols], sc, lo, hi)
        # copies: row-major, then column, then +step / -step
        K = 2 * D
        pos = np.arange(R * K)
        c_of = np.tile(np.repeat(np.arange(D), 2), R)
        sign = np.tile([1.0, -1.0], R * D)
        xs = np.repeat(x, K, axis=0)
        xs[pos, c_of] += sign * step
        th = np.repeat(theta, K, axis=0)
        # only the perturbed entry changes: the others keep their exact values
        th[pos, cols[c_of]] = from_internal(xs, sc, lo, hi)[pos, c_of]
        rd = np.repeat(row_design, K)
        per = max(1, EXACT_GROUP // K)
        # The copies must share one step sequence (one stacked solve) for the integrator's
        # error to cancel in the differences; "auto" would integrate small groups per subject
        # (compiled DOP853), each with its own steps: rtol / step = 1e-6 noise, measured 9e-7
        # of the largest entry on Theoph against 2e-9 stacked.
        problem = self
        if self.solver.get("method", "auto") == "auto":
            problem = copy.copy(self)
            problem.solver = dict(self.solver, method=AUTO_FALLBACK)
        for lo_r in range(0, R, per):
            rows = np.arange(lo_r, min(R, lo_r + per))
            sel = (rows[:, None] * K + np.arange(K)[None, :]).ravel()
            ev = problem.evaluate(designs, rd[sel], th[sel], cols, want_jac=True,
                                  accurate=True)
            for b, r in enumerate(rows):
                base = b * K
                if np.any(ev.failed[base:base + K]):
                    continue
                # every residual of the row: data, sigma and survival residuals
                n = ev.jacobians[base].shape[0]
                H = np.empty((n, D, D))
                for c in range(D):
                    up = ev.jacobians[base + 2 * c][:n]
                    dn = ev.jacobians[base + 2 * c + 1][:n]
                    H[:, :, c] = (up - dn) / (2.0 * step)
                out[r] = 0.5 * (H + np.swapaxes(H, 1, 2))
        return out

    def grid_error_tolerance(self) -> float:
        """The grid path's error tolerance in ``-2 log L`` per row (``solver["grid_error"]``,
        default :data:`GRID_ERROR`)."""
        return float(self.solver.get("grid_error", GRID_ERROR))
