"""Simulate models for a batch of subjects: scipy integrators, switches, events, sensitivities.

:func:`simulate` solves all subjects of a batch together as one stacked system (subject after
subject), with the model's exact Jacobian in the structure the integrator can use: banded for
LSODA, block-sparse for BDF and Radau. A cohort therefore costs little more than a patient.

Integration is piecewise across :class:`Switch` times, where parameters are scaled, shifted or
set and states may jump; this is what interventions and doses use. Events (threshold crossings)
are located per subject on the integrator's dense output. Forward sensitivities of states and
observables with respect to chosen parameters are integrated alongside when asked for.

A numerical failure is a per-subject status with a message, never an exception thrown through
an optimiser: a failing batch is re-solved subject by subject to isolate who failed.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import threading
import time as _time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sps
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, ODEintWarning, Radau, odeint

from .errors import ProgressionError
from .model import load_model

__all__ = ["solve_states", "METHODS", "Switch", "Simulation", "simulate"]

#: Integrator registry: method name -> (scipy OdeSolver class, Jacobian layout it accepts).
METHODS = {
    "LSODA": (LSODA, "banded"),
    "BDF": (BDF, "sparse"),
    "Radau": (Radau, "sparse"),
    "RK45": (RK45, None),
    "RK23": (RK23, None),
    "DOP853": (DOP853, None),
}

# Status codes of a subject's simulation.
SUCCESS, TERMINATED, FAILED = 0, 1, -1


# ------------------------------------------------------------- per-subject error norms
#
# scipy's RK45, RK23, DOP853, BDF and Radau accept a step when the RMS norm of the weighted
# error over the *whole* vector is <= 1. Over a stacked batch that is an average over subjects:
# one fast subject among m quiet ones may carry an error sqrt(m) times its tolerance (measured:
# RK45 at rtol 1e-6, 4.5e-6 alone, 5.1e-4 among 10,000). The classes below take, instead, the
# largest of the subjects' own RMS norms, so that every subject meets the tolerance it would
# meet alone, whatever the batch; a batch then takes the steps of its hardest subject (scaling
# the tolerances by 1/sqrt(m) would also do, at 1.3-1.7x the steps for 100-1,000 subjects).
# LSODA (and odeint) use a weighted max norm already, which is per component.

_NORM = threading.local()     # the subject block size of the stacked vector being stepped


def _subject_norm(x) -> float:
    """Largest per-subject RMS norm of a stacked vector (last axis: subject after subject).

    Falls back to the plain RMS norm (scipy's) outside a per-subject solver's step.
    """
    x = np.asarray(x)
    b = getattr(_NORM, "block", None)
    if b is None or x.ndim == 0 or x.shape[-1] % b or x.shape[-1] == b:
        return np.linalg.norm(x) / x.size ** 0.5
    m = x.shape[-1] // b
    sq = np.abs(x.reshape(x.shape[:-1] + (m, b))) ** 2
    sq = np.moveaxis(sq, -2, 0).reshape(m, -1)
    return float(np.sqrt(sq.mean(axis=1)).max())


class _SubjectNormStep:
    """Mixin: each step of a scipy OdeSolver runs with :func:`_subject_norm` as its norm."""

    _block = None

    def _step_impl(self):
        previous = getattr(_NORM, "block", None)
        _NORM.block = self._block
        try:
            return super()._step_impl()
        finally:
            _NORM.block = previous


def _rk_error_norm(self, K, h, scale):
    return _subject_norm(self._estimate_error(K, h) / scale)


def _dop853_error_norm(self, K, h, scale):
    # DOP853's own combination of its 5th- and 3rd-order estimates, per subject.
    b = self._block or scale.size
    e5 = ((np.dot(K.T, self.E5) / scale) ** 2).reshape(-1, b).sum(axis=1)
    e3 = ((np.dot(K.T, self.E3) / scale) ** 2).reshape(-1, b).sum(axis=1)
    denom = e5 + 0.01 * e3
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(denom > 0, np.abs(h) * e5 / np.sqrt(np.where(denom > 0, denom, 1.0)
                                                                * b), 0.0)
    return float(value.max())


_PER_SUBJECT: dict = {}


def _per_subject_solver(method: str):
    """The per-subject-norm variant of a scipy RMS-norm solver class (None for LSODA).

    BDF and Radau call the module-level ``norm`` of their scipy module (Newton convergence and
    error test); they are built from a private copy of that module whose ``norm`` is
    :func:`_subject_norm`, so scipy itself is left untouched.
    """
    if method == "LSODA":
        return None
    if method not in _PER_SUBJECT:
        base = METHODS[method][0]
        if method in ("BDF", "Radau"):
            spec = importlib.util.find_spec(f"scipy.integrate._ivp.{method.lower()}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.norm = _subject_norm
            base = getattr(module, method)
            attrs = {}
        elif method == "DOP853":
            attrs = {"_estimate_error_norm": _dop853_error_norm}
        else:
            attrs = {"_estimate_error_norm": _rk_error_norm}
        _PER_SUBJECT[method] = type(f"PerSubject{method}", (_SubjectNormStep, base), attrs)
    return _PER_SUBJECT[method]


@dataclass(frozen=True)
class Switch:
    """A change at one time: parameters scaled, shifted or set, and/or states jumping.

    Parameters are changed cumulatively in the order scale, add, set; then ``jump`` maps
    states to expressions (of states before the jump, parameters after the change and ``t``),
    e.g. ``{"R": "R + 0.5"}``. Values may be scalars or per-subject arrays.

    Parameters
    ----------
    time : float
        When, in model time units.
    scale, add, set : mapping of str to float or array_like, optional
        Parameter name -> factor, increment or new value.
    jump : mapping of str to str or float, optional
        State name -> expression giving its new value.
    states : mapping of str to float or array_like, optional
        State name -> new value (scalar or per subject), set after ``jump`` (used for
        steady-state doses).
    states_dp : mapping of str to array_like, optional
        State name -> derivatives ``(m, P)`` of its new value with respect to the base
        parameters (all ``P`` in model order): the sensitivities it is given; 0 when absent.
    time_dp : mapping of str to float or array_like, optional
        Parameter name -> derivative of the switch time with respect to its base value (a
        lag time: 1). Sensitivities then gain ``(G_y f(before) - f(after)) dtime/dp``, the
        effect of moving the switch.
    subjects : array_like of bool or int, optional
        The subjects it applies to (boolean mask or indices); all by default.
    """

    time: float
    scale: Mapping = field(default_factory=dict)
    add: Mapping = field(default_factory=dict)
    set: Mapping = field(default_factory=dict)
    jump: Mapping = field(default_factory=dict)
    subjects: object = None
    states: Mapping = field(default_factory=dict)
    states_dp: Mapping = field(default_factory=dict)
    time_dp: Mapping = field(default_factory=dict)


@dataclass
class Simulation:
    """The result of :func:`simulate` for ``m`` subjects at ``T`` output times.

    Attributes
    ----------
    model : str
    times : ndarray, shape (T,)
    parameters : ndarray, shape (m, P)
        Base parameters of each subject (before any switch).
    parameter_names, state_names, observable_names : tuple of str
    states : ndarray, shape (m, n_states, T)
    observables : ndarray, shape (m, n_observables, T)
        NaN after a subject's terminal event or failure.
    events : dict of str to list of ndarray
        Event name -> per subject, every time the event happened.
    status : ndarray of int, shape (m,)
        0 success, 1 stopped by a terminal event, -1 failed.
    message : list of str
    sensitivity_parameters : tuple of str
    state_sensitivities : ndarray, shape (m, n_states, k, T), or None
        d state / d parameter for the ``k`` sensitivity parameters (base values).
    observable_sensitivities : ndarray, shape (m, n_observables, k, T), or None
    stats : dict
        Work counters: ``nfev``, ``njev``, ``nlu``, ``steps``, ``seconds``, ``method``.
    time_unit : str
    units : dict of str to str
        Unit of each state and observable, where the model declares one.
    """

    model: str
    times: np.ndarray
    parameters: np.ndarray
    parameter_names: tuple
    state_names: tuple
    observable_names: tuple
    states: np.ndarray
    observables: np.ndarray
    events: dict
    status: np.ndarray
    message: list
    sensitivity_parameters: tuple = ()
    state_sensitivities: np.ndarray | None = None
    observable_sensitivities: np.ndarray | None = None
    stats: dict = field(default_factory=dict)
    time_unit: str = ""
    units: dict = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return self.states.shape[0]

    @property
    def success(self) -> np.ndarray:
        """Per subject: the simulation did not fail (a terminal event is a success)."""
        return self.status >= 0

    def __getitem__(self, name: str) -> np.ndarray:
        """A state or observable by name, shape ``(m, T)``."""
        if name in self.observable_names:
            return self.observables[:, self.observable_names.index(name)]
        if name in self.state_names:
            return self.states[:, self.state_names.index(name)]
        raise KeyError(f"{name!r} is neither a state nor an observable of model {self.model!r}")

    def event_time(self, name: str) -> np.ndarray:
        """First time of event ``name`` per subject, NaN where it did not happen; ``(m,)``."""
        if name not in self.events:
            raise KeyError(f"model {self.model!r} has no event {name!r} "
                           f"(events: {', '.join(self.events) or 'none'})")
        return np.array([e[0] if len(e) else np.nan for e in self.events[name]])

    def sensitivity(self, output: str, parameter: str) -> np.ndarray:
        """d output / d parameter for a state or observable, shape ``(m, T)``."""
        if parameter not in self.sensitivity_parameters:
            raise KeyError(f"no sensitivities for {parameter!r}; simulate with "
                           f"sensitivities=[..., {parameter!r}]")
        q = self.sensitivity_parameters.index(parameter)
        if output in self.observable_names:
            return self.observable_sensitivities[:, self.observable_names.index(output), q]
        return self.state_sensitivities[:, self.state_names.index(output), q]

    def to_csv(self, path) -> Path:
        """Write a long table: subject, time, then one column per state and observable."""
        path = Path(path)
        names = [*self.state_names, *self.observable_names]
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["subject", "time", *names])
            for s in range(self.n_subjects):
                values = np.concatenate([self.states[s], self.observables[s]])
                for j, t in enumerate(self.times):
                    writer.writerow([s, f"{t:.10g}", *(f"{v:.10g}" for v in values[:, j])])
        return path


# ---------------------------------------------------------------------------------------------


def _as_subject_values(value, m: int, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(m, float(arr))
    if arr.shape != (m,):
        raise ProgressionError(f"{where}: expected a scalar or {m} values (one per subject), "
                               f"found shape {arr.shape}")
    return arr


def _subject_mask(subjects, m: int) -> np.ndarray:
    if subjects is None:
        return np.ones(m, dtype=bool)
    arr = np.asarray(subjects)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise ProgressionError(f"Switch.subjects: expected {m} booleans, found {arr.shape}")
        return arr
    mask = np.zeros(m, dtype=bool)
    mask[arr.astype(int)] = True
    return mask


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
        if not self.k:
            y = flat.reshape(self.m, self.n).T
            return self.model.rhs(t, y, self.p).T.ravel()
        # (m, (1+k) n) -> ((1+k) n, m): the generated function wants subjects last
        Y = flat.reshape(self.m, self.block).T
        out = self._sens_rhs(t, Y, np.concatenate([self.p, self.a]))
        return out.T.ravel()

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
        return sps.csc_matrix((data.ravel(), (self._rows, self._cols)),
                              shape=(self.size, self.size))


def _check_times(times, t0) -> np.ndarray:
    times = np.atleast_1d(np.asarray(times, dtype=float))
    if times.ndim != 1 or times.size == 0:
        raise ProgressionError(f"times: expected a non-empty 1-D sequence, found shape "
                               f"{times.shape}")
    if not np.all(np.isfinite(times)):
        raise ProgressionError("times: expected finite numbers, found NaN or infinity")
    if np.any(np.diff(times) < 0):
        k = int(np.argmax(np.diff(times) < 0))
        raise ProgressionError(f"times: expected increasing times, found {times[k]:g} before "
                               f"{times[k + 1]:g}")
    if times[0] < t0:
        raise ProgressionError(f"times: expected times >= t0 = {t0:g}, found {times[0]:g}")
    return times


def simulate(model, params=None, times=None, *, t0: float = 0.0, initial=None,
             switches: Sequence[Switch] = (), method: str = "LSODA", rtol: float = 1e-6,
             atol: float = 1e-9, max_step: float = np.inf, sensitivities=None,
             batch_size: int | None = None, max_steps: int = 100_000,
             terminal_events: bool = True, doses=None) -> Simulation:
    """Simulate a model for one parameter set or a batch of subjects.

    Parameters
    ----------
    model : str, path, ModelSpec, CompiledModel or PythonModel
        A built-in model name, a model file, or a model object.
    params : None, dict, list of dict, or array_like, optional
        Defaults when ``None``; a dict name -> scalar or per-subject array (others keep their
        defaults); a list of dicts (one per subject); or an array ``(m, P)`` in model order.
    times : array_like, shape (T,)
        Output times in the model's time unit, increasing, ``>= t0``.
    t0 : float
        Start time (the model's t = 0 is biological onset for the ALS models).
    initial : mapping of str to float or array_like, optional
        Override initial values of states (scalar or one per subject).
    switches : sequence of Switch
        Parameter changes and state jumps; integration restarts exactly at each switch time.
        Outputs at a switch time show the state after the switch.
    method : str
        A key of :data:`METHODS`. Default ``"LSODA"`` (stiff-safe, with the exact banded
        Jacobian); ``"BDF"``/``"Radau"`` use the block-sparse Jacobian; RK methods none.
    rtol, atol : float
        Integrator tolerances (per state; sensitivities share them).
    max_step : float
        Largest step the integrator may take.
    sensitivities : sequence of str or True, optional
        Parameters to compute forward sensitivities for (``True`` for all).
    batch_size : int, optional
        Solve at most this many subjects per stacked system (all together by default).
    max_steps : int
        Steps allowed per stacked solve before it is declared failed.
    terminal_events : bool
        When False, terminal events are recorded but do not end trajectories (e.g. to compare
        raw trajectories past death).
    doses : list of Dose, dict of columns, or Cohort, optional
        Dose records with NONMEM conventions (amount, target compartment by name or number,
        bolus or infusion by rate or duration, ADDL/II, SS = 1, EVID 3/4 resets) for a model
        whose file declares ``[dosing]``; see :mod:`progression.dosing`. With a Cohort the
        subjects are its subjects, in order; one parameter set is shared by all subjects the
        records name. The model's ``dose_parameter`` (a record-free single dose) is set to 0.

    Returns
    -------
    Simulation
        States and observables ``(m, ·, T)``, events, per-subject status and message,
        sensitivities, and work counters.
    """
    model = load_model(model)
    if method not in METHODS:
        raise ProgressionError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    if times is None:
        raise ProgressionError("times: the output times are required")
    times = _check_times(times, t0)
    table = model.parameter_table(params)
    m = table.shape[0]
    if sensitivities is True:
        sens_names = tuple(model.parameter_names)
    else:
        sens_names = tuple(sensitivities or ())
    sens_index = np.array([model.parameter_index(s) for s in sens_names], dtype=int)
    for sw in switches:
        if not isinstance(sw, Switch):
            raise ProgressionError(f"switches: expected Switch objects, found {type(sw).__name__}")
        for name in (*sw.scale, *sw.add, *sw.set):
            model.parameter_index(name)
        if not np.isfinite(sw.time):
            raise ProgressionError(f"Switch.time: expected a finite time, found {sw.time}")
    initial = dict(initial or {})
    for name in initial:
        model.state_index(name)
    if doses is not None:
        from .dosing import expand_doses

        table, extra = expand_doses(model, doses, table, sens_names, t0, method=method,
                                    rtol=rtol, atol=atol, max_step=max_step,
                                    max_steps=max_steps)
        switches = list(switches) + extra
        m = table.shape[0]

    start = _time.perf_counter()
    size = batch_size or m
    parts = []
    for lo in range(0, m, size):
        idx = np.arange(lo, min(m, lo + size))
        parts.append(_solve_batch(model, table[idx], idx, m, times, t0, initial, switches,
                                  method, rtol, atol, max_step, sens_index, max_steps,
                                  terminal_events))
    result = _merge(parts, model, times, table, sens_names, method)
    result.stats["seconds"] = _time.perf_counter() - start
    return result


def solve_states(model, table, times, *, method: str = "LSODA", rtol: float = 1e-6,
                 atol: float = 1e-9, max_step: float = np.inf, max_steps: int = 100_000,
                 per_subject: bool = False):
    """States only, at ``times``, for a parameter table: the lean path estimators use.

    No observables, events or sensitivities are computed (see
    :func:`progression._gridsens.grid_sensitivities` for sensitivities on the same grid). With
    LSODA the batch goes through ``scipy.integrate.odeint``, where ``max_steps`` limits the
    steps between two output times rather than in the whole solve.

    Parameters
    ----------
    model : CompiledModel or PythonModel
    table : ndarray (m, P)
    times : ndarray (T,)
        Increasing output times from ``t0 = times[0]``.
    per_subject : bool
        Give every subject its own step-size sequence (:mod:`progression._rodas`, Rodas4
        vectorised over subjects; ``method`` is then not used): a subject's states do not
        depend on which subjects share the batch. A stacked solve shares one step sequence,
        which moves every subject's result in the last digits the tolerance allows.

    Returns
    -------
    states : ndarray (m, n_states, T)
    status : int ndarray (m,)
        0 success, -1 failed.
    message : list of str
    stats : dict
        Work counters, as :attr:`Simulation.stats`.
    """
    times = np.asarray(times, dtype=float)
    if per_subject:
        from ._rodas import rodas_states

        states, status, failure, stats = rodas_states(model, table, times, rtol=rtol,
                                                      atol=atol, max_step=max_step,
                                                      max_steps=max_steps)
        message = ["ok" if f is None else
                   f"integration failed at t={f[0]:.10g} ({f[3]}): "
                   + _diagnose(model, f[0], f[0], f[1], f[2], table[i])
                   for i, f in enumerate(failure)]
        return states, status, message, stats
    if method == "LSODA":
        return _odeint_states(model, table, times, rtol, atol, max_step, max_steps)
    index = np.arange(table.shape[0])
    out = _solve_batch(model, table, index, table.shape[0], times, float(times[0]), {}, (),
                       method, rtol, atol, max_step, np.zeros(0, dtype=int), max_steps, False,
                       lean=True, label=False)
    return out["states"], out["status"], out["message"], out["stats"]


def _odeint_states(model, table, times, rtol, atol, max_step, max_steps):
    """:func:`solve_states` through ``scipy.integrate.odeint`` (LSODA with the banded Jacobian).

    One call into ODEPACK integrates the whole stacked system and returns every output time:
    no Python work per step, only per right-hand-side evaluation. A failed stacked solve is
    redone subject by subject so that one bad subject does not fail the others.
    """
    m, n = table.shape[0], model.n_states
    states = np.full((m, n, times.size), np.nan)
    status = np.zeros(m, dtype=int)
    message = ["ok"] * m
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0}

    def solve(rows):
        sys = _Stacked(model, rows.size, np.zeros(0, dtype=int), "banded")
        sys.p = table[rows].T.copy()
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
                                             max_step, max_steps, text_i)
            else:
                states[i] = Xi[0]
    return states, status, message, stats


def _odeint_failure(model, row, times, rtol, atol, max_step, max_steps, text) -> str:
    """The failure message of one subject whose odeint solve failed.

    odeint reports neither where nor in which state it failed (its outputs after a failure
    are undefined), so the subject is re-run step by step through scipy's LSODA class, which
    stops at the failing step (at most ``max_steps`` steps; odeint's limit is per output
    interval). ``text`` is odeint's own reason, kept in the message.
    """
    limit = int(min(max_steps, 20_000))
    again = _solve_stacked(model, row, np.zeros(1, dtype=int), 1, times, float(times[0]), {},
                           (), "LSODA", rtol, atol, max_step, np.zeros(0, dtype=int), limit,
                           False, lean=True, label=False)
    if again["failure"] is None:
        return f"integration failed ({text})"
    t_lo, t_hi, y_lo, y_hi = again["failure"]
    return (f"integration failed at t={t_lo:.10g} ({text}): "
            + _diagnose(model, t_lo, t_hi, np.asarray(y_lo), np.asarray(y_hi), row[0]))


def _merge(parts, model, times, table, sens_names, method) -> Simulation:
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0, "method": method}
    for part in parts:
        for key in ("nfev", "njev", "nlu", "steps"):
            stats[key] += int(part["stats"][key])
    cat = np.concatenate
    k = len(sens_names)
    return Simulation(
        model=model.name, times=times, parameters=table,
        parameter_names=model.parameter_names, state_names=model.state_names,
        observable_names=model.observable_names,
        states=cat([p["states"] for p in parts]),
        observables=cat([p["observables"] for p in parts]),
        events={e.name: sum((p["events"][e.name] for p in parts), []) for e in model.events},
        status=cat([p["status"] for p in parts]),
        message=sum((p["message"] for p in parts), []),
        sensitivity_parameters=sens_names,
        state_sensitivities=cat([p["dstates"] for p in parts]) if k else None,
        observable_sensitivities=cat([p["dobs"] for p in parts]) if k else None,
        stats=stats,
        time_unit=model.time_unit,
        units=_units(model),
    )


def _units(model) -> dict:
    spec = getattr(model, "spec", None)
    if spec is None:
        return {}
    return {**{s.name: s.unit for s in spec.states}, **{o.name: o.unit for o in spec.observables}}


def _apply_switch(model, sw: Switch, p, a_all, y, S, sys: _Stacked, index, m_total):
    """Apply one switch to the current parameters and states of a batch (in place on p, a)."""
    mask = _subject_mask(sw.subjects, m_total)[index]
    if not mask.any():
        return y, S
    moving = bool(sw.time_dp) and sys.k and any(
        model.parameter_index(q) in sys.sens_index for q in sw.time_dp)
    if moving:
        y_before = y.copy()
        f_before = model.rhs(sw.time, y, p.copy())
    for name, value in sw.scale.items():
        j = model.parameter_index(name)
        v = _as_subject_values(value, m_total, f"Switch.scale[{name!r}]")[index]
        p[j, mask] *= v[mask]
        a_all[j, mask] *= v[mask]
    for name, value in sw.add.items():
        j = model.parameter_index(name)
        p[j, mask] += _as_subject_values(value, m_total, f"Switch.add[{name!r}]")[index][mask]
    for name, value in sw.set.items():
        j = model.parameter_index(name)
        p[j, mask] = _as_subject_values(value, m_total, f"Switch.set[{name!r}]")[index][mask]
        a_all[j, mask] = 0.0
    if sw.jump:
        jump = model.jump(sw.jump, where=f"Switch at t={sw.time:g}, jump")
        y_new = jump.apply(sw.time, y, p)
        if sys.k:
            Gy = jump.dy(sw.time, y, p)
            Gp = jump.dp(sw.time, y, p)[:, sys.sens_index, :] * a_all[sys.sens_index][None]
            S_new = np.einsum("ijm,mqj->mqi", Gy, S) + Gp.transpose(2, 1, 0)
            S = np.where(mask[:, None, None], S_new, S)
        y = np.where(mask[None, :], y_new, y)
    for name, value in sw.states.items():
        i = model.state_index(name)
        y[i, mask] = _as_subject_values(value, m_total, f"Switch.states[{name!r}]")[index][mask]
        if sys.k:
            d = sw.states_dp.get(name)
            S[mask, :, i] = (0.0 if d is None else
                             np.asarray(d, dtype=float)[index][mask][:, sys.sens_index])
    if moving:
        # A switch at a parameter-dependent time: y(t) after it moves by
        # (G_y f(y-, p-) - f(y+, p+)) per unit of time it is delayed.
        carried = f_before
        if sw.jump:
            Gy = model.jump(sw.jump, where=f"Switch at t={sw.time:g}, jump").dy(sw.time,
                                                                              y_before, p)
            carried = np.einsum("ijm,jm->im", Gy, f_before)
        for i in sw.states:
            carried[model.state_index(i)] = 0.0
        delta = carried - model.rhs(sw.time, y, p)
        for name, value in sw.time_dp.items():
            v = _as_subject_values(value, m_total, f"Switch.time_dp[{name!r}]")[index]
            for q in np.nonzero(sys.sens_index == model.parameter_index(name))[0]:
                S[mask, q, :] += (delta[:, mask] * v[mask]).T
    return y, S


def _solve_batch(model, table, index, m_total, times, t0, initial, switches, method, rtol,
                 atol, max_step, sens_index, max_steps, terminal_events, lean=False,
                 label=True) -> dict:
    """Solve one stacked batch; on failure, re-solve its subjects one by one."""
    out = _solve_stacked(model, table, index, m_total, times, t0, initial, switches, method,
                         rtol, atol, max_step, sens_index, max_steps, terminal_events, lean,
                         label)
    if out["failed"] is None or len(index) == 1:
        return out
    singles = [_solve_stacked(model, table[i:i + 1], index[i:i + 1], m_total, times, t0,
                              initial, switches, method, rtol, atol, max_step, sens_index,
                              max_steps, terminal_events, lean, label)
               for i in range(len(index))]
    merged = {key: np.concatenate([s[key] for s in singles])
              for key in ("states", "observables", "status", "dstates", "dobs")}
    merged["message"] = [s["message"][0] for s in singles]
    merged["events"] = {name: [s["events"][name][0] for s in singles] for name in out["events"]}
    merged["stats"] = {key: out["stats"][key] + sum(s["stats"][key] for s in singles)
                       for key in out["stats"]}
    merged["failed"] = None
    return merged


def _solve_stacked(model, table, index, m_total, times, t0, initial, switches, method, rtol,
                   atol, max_step, sens_index, max_steps, terminal_events, lean=False,
                   label=True) -> dict:
    """Integrate one stacked batch; ``lean`` records states only (no observables, no events);
    ``label``: failure messages name the subject by its index."""
    m, n, T = table.shape[0], model.n_states, times.size
    k = len(sens_index)
    K = 0 if lean else len(model.observable_names)
    model_events = () if lean else model.events
    solver_cls, layout = METHODS[method]
    if m > 1 and method != "LSODA":
        solver_cls = _per_subject_solver(method)
    sys = _Stacked(model, m, sens_index, layout)
    p = table.T.copy()
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

    def record(tt: np.ndarray, flat_cols: np.ndarray, j_idx: np.ndarray):
        """Store outputs at times tt (len L) from stacked columns (size, L)."""
        for col, j in enumerate(j_idx):
            yy, SS = sys.split(flat_cols[:, col])
            show = alive | (end_time >= tt[col])
            states[show, :, j] = yy.T[show]
            if lean:
                continue
            o = model.observe(tt[col], yy, p)
            obs[show, :, j] = o.T[show]
            if k:
                dstates[show, :, :, j] = SS.transpose(0, 2, 1)[show]
                dh = (np.einsum("kim,mqi->mkq", model.dobs_dy(tt[col], yy, p), SS)
                      + (model.dobs_dp(tt[col], yy, p)[:, sens_index, :]
                         * a_all[sens_index][None]).transpose(2, 0, 1))
                dobs[show, :, :, j] = dh[show]

    t_end = float(times[-1])
    bounds = sorted({float(sw.time) for sw in switches if t0 <= sw.time <= t_end})
    edges = [t0] + [b for b in bounds if b > t0] + ([t_end] if t_end > t0 else [])
    edges = sorted(set(edges))
    next_out = 0
    failed = None
    failure = None     # (t before, t after, stacked vector before, after) of the failing step
    ev_prev = model.event_values(t0, y, p) if model_events else None

    for seg, seg_start in enumerate(edges):
        for sw in switches:
            if float(sw.time) == seg_start:
                y, S = _apply_switch(model, sw, p, a_all, y, S, sys, index, m_total)
        sys.a = a_all[sens_index]
        if model_events:
            ev_prev = model.event_values(seg_start, y, p)
        last = seg == len(edges) - 1
        seg_end = edges[seg + 1] if not last else seg_start
        flat = sys.join(y, S)
        if last or seg_end == seg_start:
            # Outputs at the final edge (or a zero-length span) come straight from the state.
            j_idx = np.nonzero(times == seg_start)[0] if last else np.array([], int)
            j_idx = j_idx[j_idx >= next_out]
            if j_idx.size:
                record(np.full(j_idx.size, seg_start), np.repeat(flat[:, None], j_idx.size, 1),
                       j_idx)
                next_out = j_idx[-1] + 1
            continue
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
    return {"states": states, "observables": obs, "status": status, "message": message,
            "events": {name: [np.array(v) for v in lists] for name, lists in events.items()},
            "dstates": dstates, "dobs": dobs, "stats": stats, "failed": failed,
            "failure": failure}


def _failure_messages(model, sys, reason, failure, p, index=None) -> list:
    """One message per subject of a failed stacked solve: where, when and which state.

    ``failure`` is (t before, t after, stacked vector before, after) of the failing step;
    ``index`` gives the subjects' numbers for the message (none: the caller names them).
    """
    t_lo, t_hi, flat_lo, flat_hi = failure
    Y_lo = np.asarray(flat_lo).reshape(sys.m, 1 + sys.k, sys.n)
    Y_hi = np.asarray(flat_hi).reshape(sys.m, 1 + sys.k, sys.n)
    out = []
    for s in range(sys.m):
        who = f" for subject {int(index[s])}" if index is not None else ""
        sens_bad = sys.k and not np.all(np.isfinite(Y_hi[s, 1:]))
        out.append(f"integration failed{who} at t={t_lo:.10g} ({reason}): "
                   + _diagnose(model, t_lo, t_hi, Y_lo[s, 0], Y_hi[s, 0], p[:, s],
                               bool(sens_bad)))
    return out


def _diagnose(model, t_lo, t_hi, y_lo, y_hi, p, sens_bad=False) -> str:
    """Name the parameter, state or equation behind a failure at ``t_lo`` (step to ``t_hi``)."""
    names = model.state_names

    def listing(idx, values):
        return ", ".join(f"{names[i]} = {values[i]:.4g}" for i in idx)

    bad_p = [model.parameter_names[j] for j in np.nonzero(~np.isfinite(p))[0]]
    lead = (f"parameter(s) {', '.join(repr(b) for b in bad_p)} not finite; ") if bad_p else ""
    if not np.all(np.isfinite(y_lo)):
        idx = np.nonzero(~np.isfinite(y_lo))[0]
        return (lead + f"state(s) {', '.join(repr(names[i]) for i in idx)} not finite at "
                f"t={t_lo:.10g} ({listing(idx, y_lo)})")
    with np.errstate(all="ignore"):
        try:
            f = np.asarray(model.rhs(t_lo, y_lo[:, None], p[:, None]), dtype=float)[:, 0]
        except (ArithmeticError, ValueError):
            f = np.full(len(names), np.nan)
    state_values = listing(range(len(names)), y_lo)
    if not np.all(np.isfinite(f)):
        idx = np.nonzero(~np.isfinite(f))[0]
        return (lead + "the equation(s) for " + ", ".join(repr(names[i]) for i in idx)
                + f" give {', '.join(f'{f[i]:g}' for i in idx)} at t={t_lo:.10g} "
                f"(states: {state_values})")
    if not np.all(np.isfinite(y_hi)):
        idx = np.nonzero(~np.isfinite(y_hi))[0]
        return (lead + f"state(s) {', '.join(repr(names[i]) for i in idx)} became non-finite "
                f"between t={t_lo:.10g} and t={t_hi:.10g} (last finite values: "
                f"{listing(idx, y_lo)})")
    if sens_bad:
        return lead + f"the sensitivities became non-finite (states: {state_values})"
    rate = np.abs(f) / (np.abs(y_lo) + 1.0)
    i = int(np.argmax(rate))
    growing = (" and growing without bound"
               if abs(y_lo[i]) > 1e6 and np.sign(f[i]) == np.sign(y_lo[i]) else "")
    return (lead + f"fastest-changing state {names[i]!r} = {y_lo[i]:.4g}, "
            f"d{names[i]}/dt = {f[i]:.4g}{growing}")


def _settle_events(model, crossings, events, terminal, times, end_time, status, message,
                   *outputs):
    """Locate every crossing, record events in time order, end subjects at terminal events."""
    ej, subj, when = crossings.locate()
    end_time[:] = np.inf
    for c in np.lexsort((ej, when)):
        s, e = subj[c], ej[c]
        if when[c] > end_time[s]:
            continue  # the subject had already ended
        events[model.events[e].name][s].append(float(when[c]))
        if terminal[e]:
            end_time[s] = when[c]
            status[s] = TERMINATED
            message[s] = f"terminal event {model.events[e].name!r} at t={when[c]:.6g}"
    after = times[None, :] > end_time[:, None]         # (m, T)
    for array in outputs:
        array[np.broadcast_to(after.reshape(after.shape[:1] + (1,) * (array.ndim - 2)
                                            + after.shape[1:]), array.shape)] = np.nan


def _restrict_dense(dense, rows: np.ndarray):
    """A copy of a scipy dense-output object that interpolates only the given components.

    Event location needs a few subjects' states, not the whole stacked vector. Falls back to a
    wrapper that evaluates everything and slices when the interpolant's layout is not one of
    scipy's known ones.
    """
    local = copy.copy(dense)
    if hasattr(dense, "yh"):                                 # LSODA (Nordsieck history)
        local.yh = dense.yh[rows]
    elif hasattr(dense, "D") and hasattr(dense, "t_shift"):  # BDF (differences)
        local.D = dense.D[:, rows]
    elif hasattr(dense, "Q") and hasattr(dense, "y_old"):    # Radau, RK23/RK45
        local.Q, local.y_old = dense.Q[rows], dense.y_old[rows]
    elif hasattr(dense, "F") and hasattr(dense, "y_old"):    # DOP853
        local.F, local.y_old = dense.F[:, rows], dense.y_old[rows]
    else:
        return lambda t: np.atleast_2d(dense(t))[rows] if np.ndim(t) else dense(t)[rows]
    return local


class _Crossings:
    """Event crossings bracketed during integration, located together at the end.

    Each integrator step whose end changes the sign of an event condition contributes a
    bracket: the step's interpolant restricted to the subjects involved. Locating every
    crossing of the whole run in one vectorised Illinois (regula falsi) iteration costs a few
    passes instead of a root search per step.
    """

    def __init__(self, model, sys):
        self.model, self.sys = model, sys
        self.brackets = []   # (local dense, involved subjects, pair slice)
        self.t_lo, self.t_hi, self.g_lo, self.event, self.subject, self.slot = ([] for _ in
                                                                                 range(6))
        self.p = []

    def add(self, dense, t_lo, t_hi, crossing, ev_lo, p):
        ej, subj = np.nonzero(crossing)
        involved, slot = np.unique(subj, return_inverse=True)
        rows = (involved[:, None] * self.sys.block + np.arange(self.sys.n)[None, :]).ravel()
        self.brackets.append((_restrict_dense(dense, rows), involved.size, ej.size))
        self.t_lo.append(np.full(ej.size, float(t_lo)))
        self.t_hi.append(np.full(ej.size, float(t_hi)))
        self.g_lo.append(ev_lo[ej, subj])
        self.event.append(ej)
        self.subject.append(subj)
        self.slot.append(slot)
        self.p.append(p[:, subj].copy())

    def _states(self, t):
        """States of every pair at its own time t (n, pairs)."""
        out, start = [], 0
        for (local, n_involved, n_pairs), slot in zip(self.brackets, self.slot, strict=True):
            tt = t[start:start + n_pairs]
            cols = np.asarray(local(tt)).reshape(n_involved, self.sys.n, n_pairs)
            out.append(cols[slot, :, np.arange(n_pairs)])
            start += n_pairs
        return np.concatenate(out).T

    def locate(self, iterations: int = 60):
        """Return (event index, subject, time) arrays for every bracketed crossing."""
        if not self.brackets:
            return np.array([], int), np.array([], int), np.array([])
        ej, subj = np.concatenate(self.event), np.concatenate(self.subject)
        p = np.concatenate(self.p, axis=1)
        lo, hi = np.concatenate(self.t_lo), np.concatenate(self.t_hi)
        pairs = np.arange(ej.size)

        def g(t):
            return self.model.event_values(t, self._states(t), p)[ej, pairs]

        g_lo, g_hi = np.concatenate(self.g_lo).astype(float), g(hi)
        tol = 1e-10 * np.maximum(1.0, np.abs(hi))
        side = np.zeros(ej.size, dtype=int)
        for _ in range(iterations):
            denom = np.where(g_hi == g_lo, 1.0, g_hi - g_lo)
            guess = np.where(g_hi == g_lo, 0.5 * (lo + hi), hi - g_hi * (hi - lo) / denom)
            guess = np.clip(guess, lo, hi)
            g_mid = g(guess)
            keep_hi = np.sign(g_mid) == np.sign(g_lo)   # the root lies in [guess, hi]
            exact = g_mid == 0
            lo = np.where(keep_hi | exact, guess, lo)
            hi = np.where(keep_hi & ~exact, hi, guess)
            # Illinois: halve the stale end's value when the same end is kept twice running.
            g_hi = np.where(keep_hi, np.where(side == 1, 0.5 * g_hi, g_hi), g_mid)
            g_lo = np.where(keep_hi, g_mid, np.where(side == -1, 0.5 * g_lo, g_lo))
            side = np.where(keep_hi, 1, -1)
            if np.all(hi - lo <= tol):
                break
        return ej, subj, 0.5 * (lo + hi)
