"""Executors for work that fans out over subjects or replicates, and progress bars.

One executor contract: everything in progression that takes ``executor=`` takes a plain
:class:`concurrent.futures.Executor` (``ThreadPoolExecutor``, ``ProcessPoolExecutor``, a Dask
``client.get_executor()``) and uses only ``submit`` and the standard ``map(fn, *iterables)``.
progression's own executors are such executors; :func:`executor` gives a context manager
yielding one:

========================================  =================================================
``executor()``                            in-process, one item after the other
``executor(jobs=4)``                      local processes (``ProcessPoolExecutor``)
``executor(scheduler="tcp://h:8786")``    a running Dask distributed scheduler
``executor(scheduler="local", jobs=2)``   a Dask ``LocalCluster`` started for the run
========================================  =================================================

On top of the standard interface, :func:`map_items` (``map_items(ex, fn, items,
progress=None, partial=None)``) applies a picklable module-level function to each item (a tuple
of arguments, ``fn(*item)``) and returns the results *in order*, with progress reports as items
finish; it accepts any ``concurrent.futures.Executor`` and uses the partial reports of
progression's own executors when given one.

Dask is optional (``pip install "progression[distributed]"``) and imported only when asked
for. Whatever the executor, the same items give the same results: the callers fix how work is
cut into items.

Progress (:func:`map_items`): ``progress(n_done, result)`` is called as each item finishes;
a long item can also say how far it got with :func:`report` (units done inside the item), which
reaches ``partial(units in unfinished items)`` in the calling process (progression's
in-process and local-process executors; Dask and other executors' items report only when they
finish). :class:`Progress` draws a tqdm bar on a terminal and writes whole lines to logs.

Local worker processes run their numerical libraries single-threaded (OpenBLAS, OpenMP, MKL):
two workers with a BLAS thread pool each on two cores would fight over them. A pool is started
only when a ``map`` has at least two items (or on the first ``submit``); one item runs in the
calling process, since a worker process would only add its start-up. ``jobs`` above the CPUs
this process may use is lowered to that number, with a warning (in-process on a single CPU),
and a warning says when the machine is already busy (load average), since workers then only
compete for the same CPUs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import math
import os
import sys
import threading
import time
import warnings
import weakref

from .errors import ConfigError, ProgressionError

__all__ = ["InProcess", "ProcessPool", "DaskExecutor", "executor", "map_items", "Progress",
           "IterationLog",
           "report", "usable_cpus", "check_executor"]


# ============================================================================ progress


class Progress:
    """A progress report on stderr: ``label: done/total unit``.

    On a terminal, a tqdm bar rewritten in place (at most every 0.5 s, and at least every
    second so the elapsed time keeps moving while an item runs). In a log (a stream that is
    not a terminal), whole lines only, no carriage returns: one each time another tenth of the
    work is done, one after ``log_seconds`` without a line (a heartbeat, also while nothing
    finishes), and one at the end.

    Parameters
    ----------
    label : str
    total : int
        Units of work (subjects, starts, replicates, ...).
    unit : str
    stream : file-like, optional
        sys.stderr by default.
    enabled : bool
        False (``--quiet``): nothing is written and no thread is started.
    log_seconds : float
        Longest time without a line in a log.
    tick : float
        Seconds between refreshes of a terminal bar while nothing finishes.

    Use ``update(done)`` with the number of units finished, ``partial(units)`` with the units
    done so far inside unfinished items (shown on top of ``done``), and ``close()`` (or use
    the object as a context manager).
    """

    _LINE = "{desc}: {n_fmt}/{total_fmt}{unit} ({percentage:.0f}%), {elapsed} elapsed, " \
            "~{remaining} left"

    def __init__(self, label: str, total: int, unit: str = "subjects", stream=None,
                 enabled: bool = True, *, log_seconds: float = 30.0, tick: float = 1.0):
        self.label, self.total, self.unit = label, int(total), unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled) and self.total > 0
        isatty = getattr(self.stream, "isatty", None)
        try:
            self.tty = bool(isatty()) if callable(isatty) else False
        except ValueError:                       # a closed stream
            self.tty = False
        self.done = 0
        self._partial = 0.0
        self._log_seconds = float(log_seconds)
        self._start = time.monotonic()
        self._last_line = self._start
        self._last_tenth = 0
        self._lines_at = -1
        self._lock = threading.Lock()
        self._closed = False
        self._bar = None
        self._stop = threading.Event()
        self._thread = None
        if not self.enabled:
            return
        if self.tty:
            from tqdm import tqdm

            sized = _columns(self.stream) > 0     # a pty without a size reports 0 columns
            self._bar = tqdm(total=self.total, desc=label, unit=f" {unit}", file=self.stream,
                             mininterval=0.5, leave=True, smoothing=0.1, dynamic_ncols=sized,
                             ncols=None if sized else 100, nrows=None if sized else 24)
        period = tick if self.tty else min(5.0, self._log_seconds)
        # the thread holds the bar weakly: a bar dropped without close() (an exception in the
        # work) stops ticking instead of writing heartbeats until the interpreter exits
        self._thread = threading.Thread(target=_tick, args=(weakref.ref(self), self._stop,
                                                             period),
                                        daemon=True, name=f"progress {label}")
        self._thread.start()

    # ------------------------------------------------------------------ counting

    @property
    def shown(self) -> int:
        """Units shown: finished plus partial, never above the total."""
        return min(self.total, int(self.done + self._partial))

    def update(self, done: int) -> None:
        """Set the number of finished units (items finished so far, in units)."""
        self.done = int(done)
        self._show()

    def partial(self, units: float) -> None:
        """Set the units done so far inside items that have not finished."""
        self._partial = max(0.0, float(units))
        self._show()

    def close(self) -> None:
        """Write the final state (once); stop the refresh thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.enabled:
            return
        with self._lock:
            self._partial = 0.0
            if self._bar is not None:
                self._bar.n = self.shown
                self._bar.close()
            elif self._lines_at != self.shown:
                self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------ drawing

    def _show(self) -> None:
        if not self.enabled or self._closed:
            return
        with self._lock:
            n = self.shown
            if self._bar is not None:
                if n != self._bar.n:
                    self._bar.update(n - self._bar.n)     # tqdm throttles to mininterval
                return
            tenth = (10 * n) // self.total
            now = time.monotonic()
            if n != self._lines_at and (tenth > self._last_tenth
                                        or now - self._last_line >= self._log_seconds):
                self._line(now)

    def _line(self, now: float | None = None) -> None:
        """One whole line to the log (the caller holds the lock)."""
        from tqdm import tqdm

        now = time.monotonic() if now is None else now
        n = self.shown
        text = tqdm.format_meter(n, self.total, now - self._start, prefix=self.label,
                                 unit=f" {self.unit}", bar_format=self._LINE)
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line, self._lines_at = now, n
        self._last_tenth = (10 * n) // self.total

    def _tick(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._bar is not None:
                self._bar.refresh()               # elapsed time moves while an item runs
            elif time.monotonic() - self._last_line >= self._log_seconds:
                self._line()                      # heartbeat in a log


class IterationLog:
    """One line on stderr per iteration of an estimation whose length is not known in advance
    (the FOCE family's L-BFGS-B, SAEM's phases): ``label: iteration k, ..., t elapsed``, at
    most every ``seconds`` (the first and the last always), so that a long fit says it is
    alive and where it stands.

    Parameters
    ----------
    label : str
    enabled : bool
        False (``--quiet``): nothing is written.
    stream : file-like, optional
        sys.stderr by default.
    seconds : float
        Shortest time between two iteration lines.
    """

    def __init__(self, label: str, enabled: bool = True, stream=None, seconds: float = 10.0):
        self.label, self.enabled = label, bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.seconds = float(seconds)
        self._start = time.monotonic()
        self._last = -math.inf
        self._pending = None

    def update(self, iteration: int, ofv: float, evaluations: int) -> None:
        """Record an outer iteration of an optimisation; write its line when ``seconds`` have
        passed."""
        self.report(f"iteration {int(iteration)}, OFV {float(ofv):.4f}, {int(evaluations)} "
                    f"evaluations")

    def report(self, message: str) -> None:
        """Record where the estimation stands (``message``); write it when ``seconds`` have
        passed since the last line."""
        self._pending = str(message)
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._write(now)

    def say(self, message: str) -> None:
        """Write ``message`` now (a new stage: the importance sampling, a covariance pass)."""
        self._pending = str(message)
        self._write(time.monotonic())

    def close(self) -> None:
        """Write the last recorded line if it was not written."""
        if self._pending is not None:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._last = now
        if not self.enabled or self._pending is None:
            self._pending = None
            return
        message, self._pending = self._pending, None
        mins, secs = divmod(int(now - self._start), 60)
        with contextlib.suppress(Exception):      # a progress line must never break the fit
            self.stream.write(f"{self.label}: {message}, {mins} min {secs:02d} s elapsed\n")
            self.stream.flush()


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return 0


def _tick(ref, stop, period: float) -> None:
    """Refresh thread of a :class:`Progress` (``ref``: a weak reference to it)."""
    while not stop.wait(period):
        bar = ref()
        if bar is None:
            return
        bar._tick()
        del bar


# ============================================================================ partial reports

#: Where :func:`report` sends: ``(callback, item index)`` in the calling process, or
#: ``(queue, item index)`` in a worker process; None when nobody listens.
_REPORT = threading.local()
_QUEUE = None          # set in worker processes by _worker_init
_REPORT_EVERY = 0.5    # seconds between reports sent from a worker


def report(units: float) -> None:
    """Tell the running executor how many units the current item has done so far.

    A no-op outside an executor's ``map``. Worker processes send at most every 0.5 s.
    """
    target = getattr(_REPORT, "target", None)
    if target is None:
        return
    sink, index = target
    if callable(sink):
        sink(index, units)
        return
    now = time.monotonic()
    if now - getattr(_REPORT, "sent", 0.0) >= _REPORT_EVERY:
        _REPORT.sent = now
        with contextlib.suppress(Exception):     # a report must never break the work
            sink.put_nowait((index, float(units)))


@contextlib.contextmanager
def _reporting(sink, index):
    previous = getattr(_REPORT, "target", None)
    _REPORT.target = (sink, index)
    try:
        yield
    finally:
        _REPORT.target = previous


class _Partial:
    """Units reported by unfinished items; calls ``partial(sum)`` on change."""

    def __init__(self, partial):
        self.partial = partial
        self.units: dict[int, float] = {}
        self.finished: set[int] = set()

    def set(self, index, units):
        if self.partial is None or index in self.finished:
            return
        self.units[index] = units
        self.partial(sum(self.units.values()))

    def finish(self, index):
        self.finished.add(index)
        if self.units.pop(index, None) is not None and self.partial is not None:
            self.partial(sum(self.units.values()))


# ============================================================================ executors


class _Executor(concurrent.futures.Executor):
    """progression's executors: standard ``submit``/``map``, plus ``map_items`` with progress.

    ``close()`` is ``shutdown(wait=True)``, kept for the callers that name it so.
    """

    name = "executor"
    workers = 1

    # Every subclass defines ``map_items(fn, items, progress=None, partial=None)``: the calls
    # ``fn(*item)`` in order, reporting as items finish; callers use the module-level
    # :func:`map_items`, which accepts any executor.

    def close(self):
        self.shutdown(wait=True)


def _done_future(fn, args, kwargs) -> concurrent.futures.Future:
    """A finished future holding ``fn(*args, **kwargs)`` or the exception it raised."""
    fut = concurrent.futures.Future()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:             # the future carries it, as a pool's would
        fut.set_exception(exc)
    else:
        fut.set_result(result)
    return fut


class InProcess(_Executor):
    """Run items one after the other in this process (``submit`` runs at once)."""

    name = "in-process"
    workers = 1

    def submit(self, fn, /, *args, **kwargs):
        return _done_future(fn, args, kwargs)

    def map_items(self, fn, items, progress=None, partial=None):
        out = []
        parts = _Partial(partial)
        for i, item in enumerate(items):
            with _reporting(parts.set, i):
                out.append(fn(*item))
            parts.finish(i)
            if progress is not None:
                progress(i + 1, out[-1])
        return out

    def shutdown(self, wait=True, *, cancel_futures=False):
        pass


def _limit_threads(n: int = 1) -> None:
    """Numerical libraries in this process use ``n`` threads (BLAS, OpenMP).

    Environment variables cover libraries loaded later; those already loaded (numpy and scipy
    each ship an OpenBLAS) are told through threadpoolctl.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _other_load() -> float | None:
    """CPUs kept busy by other work: the 1-minute load average less this process."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        return None


def _worker_init(queue) -> None:
    global _QUEUE
    from . import _omp

    _QUEUE = queue
    _omp.IN_WORKER = True
    _limit_threads(1)


def _run_item(index, fn, item):
    """Run one item in a worker, with :func:`report` sending to the parent's queue."""
    if _QUEUE is None:
        return fn(*item)
    with _reporting(_QUEUE, index):
        return fn(*item)


class ProcessPool(_Executor):
    """Run items in local worker processes (started on the first map with >= 2 items)."""

    name = "processes"

    def __init__(self, jobs: int):
        self.workers = jobs
        self._pool = None
        self._queue = None
        self._said = False

    def _start(self):
        if self._pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context()
            self._queue = ctx.Queue()
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                initargs=(self._queue,))
        return self._pool

    def submit(self, fn, /, *args, **kwargs):
        return self._start().submit(fn, *args, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """The standard ``map``; fewer than two calls run in this process (no pool start)."""
        calls = list(zip(*iterables, strict=False))       # map stops at the shortest
        columns = list(zip(*calls, strict=True))
        if len(calls) < 2 or self.workers < 2:
            return InProcess().map(fn, *columns)
        return super().map(fn, *columns, timeout=timeout, chunksize=chunksize)

    def map_items(self, fn, items, progress=None, partial=None):
        items = list(items)
        if len(items) < 2 or self.workers < 2:
            if not self._said and len(items) == 1:
                self._said = True
                warnings.warn(f"--jobs {self.workers}: the work is one chunk (fewer subjects "
                              "than batch_size), so it ran in this process; worker processes "
                              "pay only with at least two chunks", stacklevel=3)
            return InProcess().map_items(fn, items, progress=progress, partial=partial)
        from concurrent.futures import FIRST_COMPLETED, wait

        pool = self._start()
        futures = {pool.submit(_run_item, i, fn, item): i for i, item in enumerate(items)}
        out = [None] * len(futures)
        parts = _Partial(partial)
        pending, n = set(futures), 0
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            self._drain(parts)
            for fut in finished:
                i = futures[fut]
                out[i] = fut.result()
                n += 1
                parts.finish(i)
                if progress is not None:
                    progress(n, out[i])
        return out

    def _drain(self, parts):
        import queue as queue_mod

        while True:
            try:
                index, units = self._queue.get_nowait()
            except (queue_mod.Empty, OSError, ValueError):
                return
            parts.set(index, units)

    def shutdown(self, wait=True, *, cancel_futures=False):
        if self._pool is not None:
            # a fit that stops on an error must not leave queued chunks running
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._queue.close()
            self._queue.join_thread()
            self._pool = self._queue = None


class DaskExecutor(_Executor):
    """Run items on a Dask distributed cluster (a scheduler address, or a LocalCluster).

    ``submit`` and ``map`` go through the client's ``get_executor()``.
    """

    name = "dask"

    def __init__(self, scheduler: str, jobs: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ProgressionError(
                "--scheduler needs Dask distributed: pip install \"progression[distributed]\" "
                "(or \"dask[distributed]\")") from None
        self._cluster = None
        try:
            if scheduler == "local":
                self._cluster = LocalCluster(n_workers=jobs or os.cpu_count() or 1,
                                             threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
            else:
                self._client = Client(scheduler, timeout="10s")
        except OSError as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise ProgressionError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        self.workers = len(self._client.scheduler_info().get("workers", {})) or 1
        # pure=False: two calls with equal arguments are two tasks (seeds live in the items)
        self._executor = self._client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def map_items(self, fn, items, progress=None, partial=None):
        from distributed import as_completed

        futures = [self._client.submit(fn, *item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        out = [None] * len(futures)
        for n, fut in enumerate(as_completed(futures), start=1):
            out[index[fut.key]] = fut.result()
            if progress is not None:
                progress(n, out[index[fut.key]])
        return out

    def shutdown(self, wait=True, *, cancel_futures=False):
        if self._client is None:
            return
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None


def map_items(ex, fn, items, progress=None, partial=None) -> list:
    """``[fn(*item) for item in items]`` through executor ``ex``, in order, with progress.

    Parameters
    ----------
    ex : concurrent.futures.Executor or None
        Any executor (None: in this process). progression's own executors also pass on the
        partial reports of running items (:func:`report`); others report items as they finish.
    fn : callable
        A picklable module-level function when ``ex`` runs in other processes.
    items : iterable of tuple
        The arguments of each call.
    progress : callable, optional
        ``progress(n_done, result)`` as each item finishes.
    partial : callable, optional
        ``partial(units)``: units reported so far by unfinished items.

    Returns
    -------
    list
        The results in the order of ``items``, whatever order they finished in.
    """
    if ex is None:
        ex = InProcess()
    if isinstance(ex, _Executor):
        return ex.map_items(fn, items, progress=progress, partial=partial)
    check_executor(ex)
    futures = {ex.submit(fn, *item): i for i, item in enumerate(items)}
    out = [None] * len(futures)
    for n, fut in enumerate(concurrent.futures.as_completed(futures), start=1):
        i = futures[fut]
        out[i] = fut.result()
        if progress is not None:
            progress(n, out[i])
    return out


def check_executor(ex, where: str = "executor"):
    """``ex`` unchanged if it is None or an executor (``submit`` and ``map``), else an error.

    Parameters
    ----------
    ex : object
    where : str
        The argument named in the message.

    Raises
    ------
    ConfigError
        ``ex`` has no callable ``submit`` or ``map``.
    """
    if ex is None or isinstance(ex, concurrent.futures.Executor):
        return ex
    if callable(getattr(ex, "submit", None)) and callable(getattr(ex, "map", None)):
        return ex                # duck-typed executors (Dask's ClientExecutor is a subclass)
    raise ConfigError(
        f"{where}: expected a concurrent.futures.Executor (ThreadPoolExecutor, "
        f"ProcessPoolExecutor, a Dask client.get_executor(), or progression.parallel."
        f"executor()), found {type(ex).__name__} {ex!r:.60}")


@contextlib.contextmanager
def executor(jobs: int | None = None, scheduler: str | None = None):
    """Yield an executor: in-process, ``jobs`` local processes, or a Dask cluster.

    Parameters
    ----------
    jobs : int, optional
        Local worker processes (or LocalCluster workers with ``scheduler="local"``).
    scheduler : str, optional
        A Dask scheduler address (``"tcp://host:8786"``) or ``"local"``.
    """
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ProgressionError(f"--jobs: expected a positive integer, found {jobs!r}")
    if scheduler:
        ex = DaskExecutor(scheduler, jobs)
    elif jobs and jobs > 1:
        usable = usable_cpus()
        if jobs > usable:
            # more workers than CPUs only adds start-up and switching: each would wait
            warnings.warn(f"--jobs {jobs}: this process may use {usable} CPU(s); running "
                          + ("in-process" if usable < 2 else f"{usable} worker processes"),
                          stacklevel=3)
        ex = ProcessPool(min(jobs, usable)) if usable >= 2 else InProcess()
        busy = _other_load()
        if usable >= 2 and busy is not None and usable - busy < min(jobs, usable) - 0.5:
            # measured: on 2 busy CPUs two workers got no more work done than one process
            warnings.warn(f"--jobs {jobs}: the machine is busy (about {busy:.1f} CPUs in use "
                          f"by other work, of {usable}); worker processes pay only on idle "
                          "CPUs and may be slower than in-process now", stacklevel=3)
    else:
        ex = InProcess()
    try:
        yield ex
    finally:
        ex.close()
