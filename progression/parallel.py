"""Executors for work that fans out over subjects or replicates.

:func:`executor` gives a context manager yielding an object with one method,
``map(fn, items, progress=None)``, that applies a picklable module-level function to each item
and returns the results *in order*:

========================================  =================================================
``executor()``                            in-process, one item after the other
``executor(jobs=4)``                      local processes (``ProcessPoolExecutor``)
``executor(scheduler="tcp://h:8786")``    a running Dask distributed scheduler
``executor(scheduler="local", jobs=2)``   a Dask ``LocalCluster`` started for the run
========================================  =================================================

Dask is optional (``pip install "progression[distributed]"``) and imported only when asked
for. Whatever the executor, the same items give the same results: the callers fix how work is
cut into items.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from .errors import ProgressionError

__all__ = ["InProcess", "ProcessPool", "DaskExecutor", "executor", "Progress"]


class Progress:
    """A progress report on stderr: ``label: done/total unit``.

    On a terminal one line is rewritten in place (at most every 0.2 s); in a log (not a
    terminal) a line is written at most every 10 s and at the end, so logs stay readable.
    """

    def __init__(self, label: str, total: int, unit: str = "subjects", stream=None,
                 enabled: bool = True):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self.done = 0
        self._last = time.monotonic() if not self.tty else 0.0
        self._shown = -1

    def _write(self, done: int) -> None:
        text = f"{self.label}: {done}/{self.total} {self.unit}"
        self.stream.write(f"\r{text}" if self.tty else f"{text}\n")
        self.stream.flush()
        self._shown = done

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        self._write(done)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._shown != self.done:
            self._write(self.done)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class InProcess:
    """Run items one after the other in this process."""

    name = "in-process"
    workers = 1

    def map(self, fn, items, progress=None):
        out = []
        for i, item in enumerate(items):
            out.append(fn(*item))
            if progress is not None:
                progress(i + 1, out[-1])
        return out

    def close(self):
        pass


class ProcessPool:
    """Run items in local worker processes."""

    name = "processes"

    def __init__(self, jobs: int):
        from concurrent.futures import ProcessPoolExecutor

        self.workers = jobs
        self._pool = ProcessPoolExecutor(max_workers=jobs)

    def map(self, fn, items, progress=None):
        from concurrent.futures import as_completed

        futures = {self._pool.submit(fn, *item): i for i, item in enumerate(items)}
        out = [None] * len(futures)
        for n, fut in enumerate(as_completed(futures), start=1):
            out[futures[fut]] = fut.result()
            if progress is not None:
                progress(n, out[futures[fut]])
        return out

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Run items on a Dask distributed cluster (a scheduler address, or a LocalCluster)."""

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

    def map(self, fn, items, progress=None):
        from distributed import as_completed

        futures = [self._client.submit(fn, *item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        out = [None] * len(futures)
        for n, fut in enumerate(as_completed(futures), start=1):
            out[index[fut.key]] = fut.result()
            if progress is not None:
                progress(n, out[index[fut.key]])
        return out

    def close(self):
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


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
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ProgressionError(f"--jobs: expected a positive integer, found {jobs!r}")
    if scheduler:
        ex = DaskExecutor(scheduler, jobs)
    elif jobs and jobs > 1:
        ex = ProcessPool(jobs)
    else:
        ex = InProcess()
    try:
        yield ex
    finally:
        ex.close()
