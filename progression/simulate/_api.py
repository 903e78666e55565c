"""The public entries: :func:`simulate` (everything) and :func:`solve_states` (states only)."""

from __future__ import annotations

import time as _time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, ProgressionError
from ..model import load_model
from ..options import SolverOptions
from ._covariates import covariate_schedule, n_covariate_subjects
from ._diagnose import _diagnose
from ._registry import AUTO_FALLBACK, METHODS
from ._result import Simulation, _merge
from ._switches import Switch


# The stacked scipy paths, imported on first use: scipy.integrate costs ~0.35 s to import and
# the compiled default path never needs it (`progression simulate` starts faster).
def _solve_batch(*args, **kwargs):
    from ._stacked import _solve_batch as solve

    return solve(*args, **kwargs)


def _odeint_states(*args, **kwargs):
    from ._stacked import _odeint_states as solve

    return solve(*args, **kwargs)


__all__ = ["simulate", "solve_states"]


class _Default:
    """A keyword's default value, marked as not given (so ``solver=`` may set it)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_SOLVER_KEYS = ("method", "rtol", "atol", "max_step", "max_steps")

#: Subjects per stacked solve when ``batch_size`` is None and the stacked system runs: a larger
#: batch is split into ``ceil(m / CHUNK)`` chunks of equal size (one of at most
#: :data:`CHUNK_ABOVE` subjects stays whole). A stacked system shares its step sizes and its
#: banded Jacobian over all its subjects, so past some size every step is taken for the subject
#: that needs it and the work arrays leave the cache: the cost per patient rises again
#: (issue 12). Measured on ``als_systemic`` (60 months, 13 outputs, rtol 1e-6, LSODA, CPU
#: seconds per patient, 2026-11-30, numba model functions, 2 shared cores):
#:
#: ========  =========  ==========  ==========  ==========
#: patients  one batch  chunks 500  chunks 1000 chunks 2000
#: ========  =========  ==========  ==========  ==========
#: 1,000     0.37 ms    0.40 ms     (one)       -
#: 3,000     0.39 ms    0.40 ms     0.37 ms     0.38 ms
#: 10,000    0.53 ms    0.43 ms     0.43 ms     0.42 ms
#: ========  =========  ==========  ==========  ==========
#:
#: When the compiled per-subject Rodas4 runs instead (method "auto" or "Rodas4", a model with
#: kernels: 0.28 ms per patient at every size), the chunks are of its batch size,
#: :data:`progression.simulate._stacked.SMALL_BATCH`.
CHUNK = 1000

#: Largest batch solved as one stacked system when ``batch_size`` is None.
CHUNK_ABOVE = 1500


def _chunk_size(m: int, compiled: bool = False) -> int:
    """Subjects per solve for a batch of ``m`` when the caller gave no batch_size;
    ``compiled``: the batches go through the compiled per-subject path (when small enough)."""
    if compiled:
        from . import _stacked

        return max(1, min(m, _stacked.SMALL_BATCH))
    if m <= CHUNK_ABOVE:
        return max(m, 1)
    chunks = -(-m // CHUNK)             # ceil(m / CHUNK)
    return -(-m // chunks)              # ceil(m / chunks): chunks of equal size


def _compiled_path(model) -> bool:
    """Whether the compiled per-subject Rodas4 can run this model (kernels and numba)."""
    if getattr(model, "kernels", None) is None:
        return False
    from . import _compiled

    return bool(_compiled.AVAILABLE)


#: ``"auto"`` runs the compiled per-subject Rodas4 only at ``rtol`` >= this; tighter, the
#: stacked LSODA. Rodas4 is of order 4, so its steps grow as rtol^(-1/4), where LSODA's
#: variable-order methods (BDF up to 5, Adams up to 12) grow far slower. Measured 2026-11-30,
#: 100 patients, 25 outputs, atol = rtol/1000, ms per patient compiled Rodas4 / stacked LSODA
#: (both with numba kernels; 2 shared cores): als_systemic 0.56/0.53 at 1e-6, 1.62/0.47 at
#: 1e-8, 8.2/0.90 at 1e-10; pk_oral 0.46/0.07, 0.64/0.04, 2.2/0.05. The 12 Theoph subjects of
#: a population fit's exact path (1e-10, 3 sensitivities): 48 ms against 4.8 ms.
AUTO_COMPILED_MIN_RTOL = 1e-7


#: ``"auto"`` below :data:`AUTO_COMPILED_MIN_RTOL` runs the compiled per-subject DOP853
#: (:mod:`._dop853_numba`) for a batch of ``m`` subjects when ``m w^2`` is at most this, with
#: ``w = n (1 + k) (n + Q)`` (``n`` states, ``k`` sensitivity parameters, ``Q`` parameters:
#: a size for one stage's slope and sensitivity products), else the stacked LSODA. The
#: stacked LSODA pays ~20-60 us of Python per step for the whole batch but takes ~2.5x fewer
#: right-hand sides than DOP853's 12 per step (Adams, variable order), so it wins on large
#: batches, and sooner for large models (hence ``w`` squared). Measured 2026-12-01 with the
#: models' generated sensitivity kernels, rtol 1e-10, outputs and sensitivities, 2-core
#: machine under load 7-8 (ratios from the same run), ms per subject DOP853 / stacked LSODA:
#: als_reduced (6 states, 40 parameters, k = 2, w = 828) 1.96/1.34 at 4 subjects, 1.51/1.40
#: at 12, 2.08/1.26 at 50 (1 subject: 1.8/8.0 before the sensitivity kernel; a fit's exact
#: path of 50-row groups: the same fit time either way); pk_oral with a dose (k = 3, w = 96)
#: 0.18/2.31 at 4, 0.13/0.30 at 12, 0.23/0.39 at 50, 0.21/0.23 at 100. Crossovers near 2
#: and 110 subjects: ``m w^2`` 1.4e6 and 1.0e6.
DOP853_MAX_WORK = 1e6


def _dop853_batch(model, m: int, k: int, Q: int) -> bool:
    """Whether a batch of ``m`` subjects with ``k`` sensitivities and ``Q`` parameters goes
    through the compiled DOP853 (see :data:`DOP853_MAX_WORK`)."""
    n = model.n_states
    w = n * (1 + k) * (n + Q)
    return m * w * w <= DOP853_MAX_WORK


def _resolve_method(model, method: str, rtol: float = 1e-6) -> tuple[str, bool]:
    """The method that runs for ``method`` on ``model``, and whether it is the compiled
    per-subject Rodas4.

    ``"auto"``: compiled per subject when the model has kernels and ``rtol`` >=
    :data:`AUTO_COMPILED_MIN_RTOL` (True), tighter the compiled DOP853 (``"DOP853"``: the
    caller checks the batch size with :func:`_dop853_batch`), else :data:`AUTO_FALLBACK`
    (stacked LSODA). ``"Rodas4"``:
    compiled per subject, or ``("Rodas4", False)`` when the model has no kernels (callers
    that have a numpy per-subject path use it; others refuse). A scipy name: itself, stacked.
    """
    if method == "Rodas4":
        return method, _compiled_path(model)
    if method == "auto":
        if not _compiled_path(model):
            return AUTO_FALLBACK, False
        if rtol >= AUTO_COMPILED_MIN_RTOL:
            return method, True
        return method, "DOP853"
    return method, False


def _solver_settings(where: str, solver, given: dict) -> dict:
    """method, rtol, atol, max_step, max_steps from ``solver=`` and the keywords.

    A keyword given explicitly alongside ``solver=`` must agree with it (else ConfigError
    naming both); without ``solver=`` the keywords (or their defaults) are used as before.
    """
    values = {k: (v.value if isinstance(v, _Default) else v) for k, v in given.items()}
    if solver is None:
        return values
    options = SolverOptions.coerce(solver).simulate_kwargs()
    for key in _SOLVER_KEYS:
        value = given[key]
        if isinstance(value, _Default) or value == options[key]:
            continue
        raise ConfigError(f"{where}: solver={key}={options[key]!r} (from solver=) and "
                          f"{key}={value!r} (keyword) disagree; give one of them")
    return options


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
             switches: Sequence[Switch] = (), method: str = _Default("auto"),
             rtol: float = _Default(1e-6), atol: float = _Default(1e-9),
             max_step: float = _Default(np.inf), sensitivities=None,
             batch_size: int | None = None, max_steps: int = _Default(100_000),
             terminal_events: bool = True, doses=None, covariates=None,
             solver=None, events: bool = True, _own_times=None,
             _observables: bool = True) -> Simulation:
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
        A key of :data:`METHODS`. ``"LSODA"``: the stacked batch through scipy's LSODA
        (stiff-safe, with the exact banded Jacobian); ``"BDF"``/``"Radau"`` use the
        block-sparse Jacobian; RK methods none. Default ``"auto"``: the compiled
        per-subject Rodas4 when the model has compiled kernels (numba backend) and ``rtol``
        >= :data:`AUTO_COMPILED_MIN_RTOL` (batches of at most
        :data:`progression.simulate._stacked.SMALL_BATCH` subjects, every batch when
        ``batch_size`` is None), else the stacked LSODA (tighter tolerances: fewer steps).
        ``"Rodas4"``: the compiled per-subject Rodas4 whatever the batch size and tolerance
        (a ProgressionError for a model without kernels). ``stats["method"]`` says what
        ran.
    rtol, atol : float
        Integrator tolerances (per state; sensitivities share them).
    max_step : float
        Largest step the integrator may take.
    sensitivities : sequence of str or True, optional
        Parameters to compute forward sensitivities for (``True`` for all).
    batch_size : int, optional
        Solve at most this many subjects per stacked system. Default: chosen automatically
        (:func:`_chunk_size`): a batch of up to :data:`CHUNK_ABOVE` subjects together, a larger
        one in equal chunks of about :data:`CHUNK` (a stacked system shares its step sizes, so
        very large ones cost more per subject); batches of ``SMALL_BATCH`` when the compiled
        per-subject path runs. Results agree with one stacked solve within the tolerances.
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
    covariates : mapping, sequence of mappings, or Cohort, optional
        Values of the model file's ``[covariates]``: ``{name: number | (times, values)}`` for
        every subject, or one such mapping per subject (with one parameter set, it is shared by
        that many subjects), or a Cohort (its subjects in order: their time-varying covariates
        of those names, else numeric baseline ones); see
        :mod:`progression.simulate._covariates`. Times are model
        times, increasing; before the first the first value holds, after the last the last;
        between them the file's interpolation (``"locf"`` or ``"linear"``). Integration
        restarts at every recorded time; covariates not given take the file's ``value``.
    solver : SolverOptions or mapping, optional
        Fills ``method``, ``rtol``, ``atol``, ``max_step`` and ``max_steps`` (its
        ``sensitivities`` field concerns fits only); a keyword given as well must agree.
    events : bool
        False: the model's events are neither located nor recorded (every list in
        ``Simulation.events`` is empty, and terminal events end nothing), for callers that
        read only states and observables (fits). With LSODA the integration then runs in
        one ODEPACK call per segment between switch times instead of one Python round trip
        per step (see :data:`progression.simulate._stacked._ODEINT_SEGMENTS`).
    _own_times : sequence of int arrays, optional
        Private (a fit's exact path): per subject, the columns of ``times`` it will read.
        The compiled per-subject path then computes only those (the rest of that subject's
        outputs may be NaN) and integrates each subject to its own last time; the stacked
        path ignores it.
    _observables : bool
        Private: False computes states and state sensitivities only (the result's
        observable arrays then have no rows), for callers that evaluate observables
        themselves at the times they need.

    Returns
    -------
    Simulation
        States and observables ``(m, ·, T)``, events, per-subject status and message,
        sensitivities, and work counters.
    """
    settings = _solver_settings("simulate", solver, {
        "method": method, "rtol": rtol, "atol": atol, "max_step": max_step,
        "max_steps": max_steps})
    method, rtol, atol = settings["method"], settings["rtol"], settings["atol"]
    max_step, max_steps = settings["max_step"], settings["max_steps"]
    model = load_model(model)
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ProgressionError(f"batch_size: expected a positive integer or None, found "
                               f"{batch_size!r}")
    if method not in METHODS:
        raise ProgressionError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    run_method, compiled = _resolve_method(model, method, rtol)
    if run_method == "Rodas4" and not compiled:
        raise ProgressionError(
            f"method: 'Rodas4' (the compiled per-subject Rodas4) needs the model's compiled "
            f"kernels, and {getattr(model, 'name', 'this model')!r} has none (backend "
            f"{getattr(model, 'backend', 'python')!r}: numba missing, PROGRESSION_BACKEND=numpy "
            f"or a Python model); use method='auto' or one of "
            f"{', '.join(k for k in METHODS if k not in ('auto', 'Rodas4'))}")
    if times is None:
        raise ProgressionError("times: the output times are required")
    times = _check_times(times, t0)
    table = model.parameter_table(params)
    n_cov = n_covariate_subjects(covariates)
    if table.shape[0] == 1 and n_cov is not None and n_cov > 1:
        table = np.repeat(table, n_cov, axis=0)     # one parameter set, per-subject covariates
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
        from ._dosing import expand_doses

        table, extra = expand_doses(model, doses, table, sens_names, t0, method=method,
                                    rtol=rtol, atol=atol, max_step=max_step,
                                    max_steps=max_steps, covariates=covariates)
        switches = list(switches) + extra
        m = table.shape[0]
    schedule = covariate_schedule(model, covariates, m)
    if compiled == "DOP853" and not _dop853_batch(model, m, sens_index.size, table.shape[1]):
        run_method, compiled = AUTO_FALLBACK, False

    if not compiled and run_method in METHODS:
        # scipy.integrate imported before the clock starts: stats["seconds"] is the solve,
        # not a one-time import of ~0.4 s (the CLI prints it)
        METHODS[run_method]
    start = _time.perf_counter()
    size = (int(batch_size) if batch_size is not None
            else _chunk_size(m, compiled))
    parts = []
    for lo in range(0, m, size):
        idx = np.arange(lo, min(m, lo + size))
        parts.append(_solve_batch(model, table[idx], idx, m, times, t0, initial, switches,
                                  run_method, rtol, atol, max_step, sens_index, max_steps,
                                  terminal_events, covariates=schedule, events=events,
                                  prefer_compiled=compiled, observe=_observables,
                                  own_times=(None if _own_times is None
                                             else [_own_times[i] for i in idx])))
    # the compiled small-batch path names itself; several paths are listed in order
    ran = list(dict.fromkeys(part.get("method", run_method) for part in parts))
    result = _merge(parts, model, times, table, sens_names, "+".join(ran))
    result.stats["seconds"] = _time.perf_counter() - start
    return result


def solve_states(model, table, times, *, method: str = _Default("auto"),
                 rtol: float = _Default(1e-6), atol: float = _Default(1e-9),
                 max_step: float = _Default(np.inf), max_steps: int = _Default(100_000),
                 per_subject: bool = False, covariates=None, solver=None):
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
        vectorised over subjects, or compiled per subject when the model has kernels;
        ``method`` is then not used): a subject's states do not depend on which subjects
        share the batch. A stacked solve shares one step sequence, which moves every
        subject's result in the last digits the tolerance allows. With ``method="auto"``
        (the default), a model with compiled kernels and ``rtol`` >=
        :data:`AUTO_COMPILED_MIN_RTOL`, or with ``method="Rodas4"``, the
        per-subject path runs anyway (compiled, or the numpy Rodas4 without kernels). A
        stacked solve of more than :data:`CHUNK_ABOVE` subjects without covariates is done
        in chunks of about :data:`CHUNK`.
    covariates : mapping or sequence of mappings, optional
        As for :func:`simulate` (one mapping per row of ``table``). Integration restarts at
        each recorded time: per subject with ``per_subject``, else for the batch (LSODA then
        goes through scipy's stepper class instead of ``odeint`` when any value changes
        inside the span).
    solver : SolverOptions or mapping, optional
        As for :func:`simulate`.

    Returns
    -------
    states : ndarray (m, n_states, T)
    status : int ndarray (m,)
        0 success, -1 failed.
    message : list of str
    stats : dict
        Work counters, as :attr:`Simulation.stats`.
    """
    settings = _solver_settings("solve_states", solver, {
        "method": method, "rtol": rtol, "atol": atol, "max_step": max_step,
        "max_steps": max_steps})
    method, rtol, atol = settings["method"], settings["rtol"], settings["atol"]
    max_step, max_steps = settings["max_step"], settings["max_steps"]
    if method not in METHODS:
        raise ProgressionError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    method, compiled = _resolve_method(model, method, rtol)
    if compiled == "DOP853":
        # states only at a tight tolerance: the stacked LSODA through odeint (no Python
        # round trip per step) or the per-subject Rodas4 below when asked for
        method, compiled = AUTO_FALLBACK, False
    per_subject = per_subject or compiled or method == "Rodas4"
    times = np.asarray(times, dtype=float)
    table = np.asarray(table, dtype=float)
    m = table.shape[0]
    if not per_subject and covariates is None and m > CHUNK_ABOVE:
        # the stacked solve in chunks (see CHUNK; with covariates, whose schedule is indexed
        # by subject over the whole batch, in one piece)
        size = _chunk_size(m)
        parts = [solve_states(model, table[lo:lo + size], times, method=method, rtol=rtol,
                              atol=atol, max_step=max_step, max_steps=max_steps)
                 for lo in range(0, m, size)]
        stats = {key: sum(part[3][key] for part in parts) for key in parts[0][3]
                 if isinstance(parts[0][3][key], (int, float, np.integer, np.floating))}
        stats.update({key: value for key, value in parts[0][3].items() if key not in stats})
        return (np.concatenate([part[0] for part in parts]),
                np.concatenate([part[1] for part in parts]),
                sum((part[2] for part in parts), []), stats)
    schedule = covariate_schedule(model, covariates, m)
    if per_subject:
        from .._rodas import rodas_states

        states, status, failure, stats = rodas_states(model, table, times, rtol=rtol,
                                                      atol=atol, max_step=max_step,
                                                      max_steps=max_steps, covariates=schedule)
        message = ["ok" if f is None else
                   f"integration failed at t={f[0]:.10g} ({f[3]}): "
                   + _diagnose(model, f[0], f[0], f[1], f[2],
                               table[i] if schedule is None else
                               schedule.extend(table[i:i + 1].T, f[0], [i])[:, 0])
                   for i, f in enumerate(failure)]
        stats["method"] = "Rodas4 (compiled)" if compiled else "Rodas4"
        return states, status, message, stats
    inside = (schedule is not None
              and np.any((schedule.breaks > times[0]) & (schedule.breaks <= times[-1])))
    if method == "LSODA" and not inside:
        states, status, message, stats = _odeint_states(model, table, times, rtol, atol,
                                                        max_step, max_steps, schedule)
        stats["method"] = method
        return states, status, message, stats
    index = np.arange(table.shape[0])
    out = _solve_batch(model, table, index, table.shape[0], times, float(times[0]), {}, (),
                       method, rtol, atol, max_step, np.zeros(0, dtype=int), max_steps, False,
                       lean=True, label=False, covariates=schedule)
    return out["states"], out["status"], out["message"], out["stats"]
