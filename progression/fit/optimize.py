"""Many least-squares fits advanced in lock step, sharing one simulation per iteration.

Tasks that each fit one design (per-subject fits, their starts, profile points and bootstrap
replicates) go, with ``optimizer = "batched"`` (the default), to the vectorised
Levenberg-Marquardt of :mod:`progression.fit._batched`. Otherwise every *task* (a subject
and a starting point, a profile point, a bootstrap replicate, or a whole pooled problem) is
an ordinary :func:`lmfit.minimize` call with ``method="least_squares"`` (scipy's trust-region
reflective algorithm) and a ``Dfun`` built from the model's sensitivities. The tasks run in
threads; whenever they ask for residuals, a :class:`_Lockstep` broker waits until every live
task has asked, evaluates them all with one batched :meth:`Problem.evaluate` (one stacked
solve for the batch) and hands each its residuals and Jacobian (computed together and
cached, since the Jacobian is always requested at the last evaluated point).

The batch is always "every live task", ordered by task number, so the numbers do not depend
on thread scheduling; they depend only on which tasks form a batch, which callers fix (see
``batch_size`` in :func:`progression.fit.fit`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ._batched import run_batched, supports
from ._estimator_options import EstimatorOptions
from .transforms import from_internal, internal_bounds

__all__ = ["Task", "TaskResult", "Counters", "run_tasks"]

_STACK = 4 * 1024 * 1024


@dataclass
class Task:
    """One least-squares problem.

    Attributes
    ----------
    designs : int array (L,)
        The designs (subjects) whose rows this task evaluates (one for per-subject tasks).
    theta : ndarray (L, Q)
        Base parameter rows; estimated entries are overwritten from ``x``.
    x0 : ndarray (K,)
        Starting point on the estimation scale.
    index : list of (row, column) pairs per x entry
        Where each x entry goes: ``theta[rows, col] = value``, as two int arrays
        ``x_rows`` (object array of row-index arrays) and ``x_cols``.
    """

    designs: np.ndarray
    theta: np.ndarray
    x0: np.ndarray
    x_cols: np.ndarray              # (K,) parameter column of each x entry
    x_rows: list                    # (K,) rows (array of ints) each x entry sets
    tag: tuple = ()


@dataclass
class TaskResult:
    """Outcome of one task.

    ``jacobian`` (len, K), ``information`` (K, K) and ``residuals`` (len,): the residual
    Jacobian, the expected information with respect to the task's ``x`` entries and the
    residuals at its final point, on the path the optimiser ran on (the batched optimiser
    fills them; None otherwise): a later polish on another path takes its first steps with
    them (:func:`progression.fit._batched.polish`).
    """

    x: np.ndarray
    theta: np.ndarray
    m2ll: float
    success: bool
    message: str
    nfev: int
    failed_evaluations: int
    tag: tuple = ()
    jacobian: np.ndarray | None = None
    information: np.ndarray | None = None
    residuals: np.ndarray | None = None


@dataclass
class Counters:
    """Work done: batched simulations, rows simulated, failed rows, seconds.

    ``rows_before_zero`` counts rows evaluated with at least one data time before the model's
    t = 0 (evaluated at 0, flat in the time offset).
    """

    simulations: int = 0
    rows: int = 0
    failed_rows: int = 0
    seconds_evaluating: float = 0.0
    events: list = field(default_factory=list)
    rows_before_zero: int = 0

    def record(self, evaluation, seconds: float) -> None:
        """Count one batched evaluation (an :class:`~progression.fit.problem.Evaluation`)."""
        self.simulations += 1
        self.rows += len(evaluation.failed)
        self.failed_rows += int(evaluation.failed.sum())
        if evaluation.before_zero is not None:
            self.rows_before_zero += int(np.count_nonzero(evaluation.before_zero))
        for msg, bad in zip(evaluation.messages, evaluation.failed, strict=True):
            if bad and len(self.events) < 50:
                self.events.append(msg)
        self.seconds_evaluating += seconds

    def merge(self, other: Counters) -> None:
        self.simulations += other.simulations
        self.rows += other.rows
        self.failed_rows += other.failed_rows
        self.rows_before_zero += other.rows_before_zero
        self.seconds_evaluating += other.seconds_evaluating
        self.events.extend(other.events)


class _Lockstep:
    """Collect requests from all live tasks, evaluate them as one batch."""

    def __init__(self, problem, designs, cols, n_tasks, counters: Counters):
        self.problem, self.designs, self.cols = problem, designs, cols
        self.cond = threading.Condition()
        self.live = n_tasks
        self.pending: dict[int, tuple] = {}
        self.results: dict[int, object] = {}
        self.counters = counters

    def request(self, tid: int, rows_design, theta):
        with self.cond:
            self.pending[tid] = (rows_design, theta)
            if len(self.pending) >= self.live:
                self._run()
            while tid not in self.results:
                self.cond.wait()
            out = self.results.pop(tid)
        if isinstance(out, BaseException):
            raise out
        return out

    def finished(self) -> None:
        with self.cond:
            self.live -= 1
            if self.pending and len(self.pending) >= self.live:
                self._run()

    def _run(self) -> None:
        tids = sorted(self.pending)
        parts = [self.pending[t] for t in tids]
        self.pending = {}
        rows_design = np.concatenate([p[0] for p in parts])
        theta = np.vstack([p[1] for p in parts])
        start = time.perf_counter()
        try:
            ev = self.problem.evaluate(self.designs, rows_design, theta, self.cols)
        except BaseException as exc:       # a bug must reach every waiting task
            for t in tids:
                self.results[t] = exc
            self.cond.notify_all()
            return
        self.counters.record(ev, time.perf_counter() - start)
        lo = 0
        for t, p in zip(tids, parts, strict=True):
            n = len(p[0])
            self.results[t] = (ev.residuals[lo:lo + n], ev.jacobians[lo:lo + n],
                               ev.failed[lo:lo + n], ev.m2ll[lo:lo + n],
                               ev.messages[lo:lo + n])
            lo += n
        self.cond.notify_all()


def _run_one(problem, broker: _Lockstep, tid: int, task: Task, options: EstimatorOptions,
             out: list):
    cols = broker.cols
    K = task.x0.size
    sc = problem.scale[task.x_cols]
    lo_n, hi_n = problem.lower[task.x_cols], problem.upper[task.x_cols]
    lo_x, hi_x = internal_bounds(sc, lo_n, hi_n)
    # Jacobian column of each x entry, for each of the task's rows
    colpos = np.array([int(np.nonzero(cols == c)[0][0]) for c in task.x_cols], dtype=int)
    L = len(task.designs)
    cache: dict[bytes, tuple] = {}
    failed_evals = [0]
    reason = [""]

    def evaluate(x):
        key = x.tobytes()
        hit = cache.get(key)
        if hit is not None:
            return hit
        theta = task.theta.copy()
        values = from_internal(x, sc, lo_n, hi_n)
        for k in range(K):
            theta[task.x_rows[k], task.x_cols[k]] = values[k]
        res, jacs, failed, m2ll, msgs = broker.request(tid, task.designs, theta)
        if failed.any():
            failed_evals[0] += 1
            if not reason[0]:
                reason[0] = next(m for m, f in zip(msgs, failed, strict=True) if f) \
                    or "non-finite residuals"
        if L == 1:
            r, J = res[0], jacs[0][:, colpos]
        else:
            r = np.concatenate(res)
            starts = np.concatenate([[0], np.cumsum([q.shape[0] for q in res])])
            J = np.zeros((r.size, K))
            for k in range(K):
                for i in task.x_rows[k]:
                    J[starts[i]:starts[i + 1], k] = jacs[i][:, colpos[k]]
        value = (r, J, theta, float(np.sum(m2ll)) if not failed.any() else np.nan)
        if len(cache) > 4:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    import lmfit  # imported here: only this path needs it, and it pulls in matplotlib

    names = [f"x{k}" for k in range(K)]

    def vector(params):
        return np.array([params[n].value for n in names], dtype=float)

    try:
        params = lmfit.Parameters()
        for k in range(K):
            params.add(names[k], value=float(np.clip(task.x0[k], lo_x[k], hi_x[k])),
                       min=float(lo_x[k]), max=float(hi_x[k]))
        kws = {"ftol": options.ftol, "xtol": options.xtol, "gtol": options.gtol,
               "x_scale": options.x_scale}
        if K > 200:
            kws["tr_solver"] = "lsmr"
        # errstate is thread-local: silences lmfit's own standard-error arithmetic on singular
        # J^T J (progression computes its covariance itself, from the expected information)
        with np.errstate(all="ignore"):
            result = lmfit.minimize(lambda p: evaluate(vector(p))[0], params,
                                    method="least_squares",
                                    Dfun=lambda p: evaluate(vector(p))[1],
                                    max_nfev=options.max_nfev, **kws)
        x = vector(result.params)
        r, J, theta, m2ll = evaluate(x)
        success = bool(result.success) and not getattr(result, "aborted", False)
        message = str(result.message)
        if not np.isfinite(m2ll):
            success = False
            message = (f"the simulation failed at every point tried: {reason[0]} "
                       f"(optimiser: {message})")
        out[tid] = TaskResult(x, theta, m2ll, success, message, int(result.nfev),
                              failed_evals[0], task.tag)
    except Exception as exc:   # noqa: BLE001 - recorded and re-raised by run_tasks
        out[tid] = exc
    finally:
        broker.finished()


def run_tasks(problem, designs, tasks, cols, options, *, counters: Counters | None = None,
              on_done=None) -> list[TaskResult]:
    """Run ``tasks`` (all sharing derivative columns ``cols``) in lock step.

    Parameters
    ----------
    problem : Problem
    designs : list of Design
    tasks : list of Task
    cols : int array
        Parameter columns the batched evaluation differentiates (the union of every task's
        ``x_cols``).
    options : EstimatorOptions or mapping
        ``optimizer``, ``ftol``, ``xtol``, ``gtol``, ``max_nfev``, ``x_scale``.
    on_done : callable, optional
        Called with the number of finished tasks each time one finishes.
    """
    counters = counters if counters is not None else Counters()
    options = EstimatorOptions.coerce(options)
    if not tasks:
        return []
    if options.optimizer == "batched" and supports(tasks, cols):
        return run_batched(problem, designs, tasks, cols, options, counters=counters,
                           on_done=on_done)
    broker = _Lockstep(problem, designs, np.asarray(cols, dtype=int), len(tasks), counters)
    out: list = [None] * len(tasks)
    done = [0]
    lock = threading.Lock()

    def target(tid, task):
        _run_one(problem, broker, tid, task, options, out)
        if on_done is not None:
            with lock:
                done[0] += 1
                on_done(done[0])

    old = threading.stack_size()
    try:
        threading.stack_size(_STACK)     # many small threads; they only run lmfit/scipy
    except (ValueError, RuntimeError):   # pragma: no cover - platform without the setting
        pass
    try:
        threads = [threading.Thread(target=target, args=(i, t), daemon=True)
                   for i, t in enumerate(tasks)]
        for th in threads:
            th.start()
    finally:
        threading.stack_size(old)
    for th in threads:
        th.join()
    for item in out:
        if isinstance(item, BaseException):
            raise item
    return out
