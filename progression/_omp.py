"""numba's threads for the compiled kernels that spread subjects over them (``prange``): how
many may be used, and how they wait between parallel regions.

Imported by every module with such kernels before numba starts its threads (the first parallel
call): at import it makes the OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``)
unless the user set the variable. With the default active wait the threads spin between two
parallel regions and take the CPU that the main thread's Python work between them needs on a
loaded machine (benchmarks/fit_individual.py at load ~8 on 2 cores: threaded 0.90 s wall and
0.45 s CPU against 0.79 s and 0.39 s on one thread; passive: 0.80 s and 0.40 s). The variable is
read once, when numba starts its threads: a value set earlier, or threads already started, win.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["threads", "using"]

#: Count only the CPUs that are idle at the call (Linux: the runnable tasks of
#: ``/proc/loadavg``): a thread that the OS deschedules in favour of another process holds its
#: chunk of subjects while the others wait at the region's end (on the shared 2-core test
#: machine at load ~7, benchmarks/fit_individual.py took 0.79 s wall threaded against 0.59 s
#: on one thread; the numbers are the same either way).
BUSY_CHECK = True

#: The process that imported this module. GNU OpenMP (numba's ``omp`` threading layer) is
#: not fork-safe: numba terminates a forked child that starts a parallel region after its
#: parent did ("fork() called from a process already using GNU OpenMP"), so a forked child
#: (a multiprocessing worker, a Dask worker) runs the serial kernels.
_PID = os.getpid()

#: True in a worker process of :mod:`progression.parallel` (set by its initializer): the other
#: cores are the other workers'.
IN_WORKER = False

#: ``OMP_NUM_THREADS=1`` in the environment this process started with (a Dask worker: its
#: nanny starts it so). Read once, at import: Dask's ``LocalCluster`` writes
#: ``OMP_NUM_THREADS=1`` into its *parent's* environment (distributed's pre-spawn settings
#: for the workers it starts), which must not turn off the threads of the user's own process.
STARTED_SINGLE = os.environ.get("OMP_NUM_THREADS") == "1"


def threads() -> int:
    """Threads a parallel kernel may use: numba's thread count, limited to the CPUs this
    process may run on that are idle now (:data:`BUSY_CHECK`); 1 without numba, in a worker
    process of :mod:`progression.parallel` (:data:`IN_WORKER`), in a process started with
    ``OMP_NUM_THREADS=1`` (:data:`STARTED_SINGLE`) and in any process forked after this
    module was imported (:data:`_PID`)."""
    if IN_WORKER or STARTED_SINGLE or os.getpid() != _PID:
        return 1
    try:
        import numba
    except ImportError:     # the numpy backend: nothing runs in parallel
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    n = min(numba.get_num_threads(), cpus)
    if BUSY_CHECK and n > 1:
        busy = _busy()
        if busy is not None:
            n = min(n, cpus - busy)
    return max(1, n)


#: (monotonic time, value) of the last look at the other processes' runnable tasks: reused
#: for :data:`_BUSY_AGE` seconds (a look costs ~40-130 us; a fit asks ~30 times a second).
_LAST = [-1e9, None]
_BUSY_AGE = 0.05


def _busy():
    now = time.monotonic()
    if now - _LAST[0] > _BUSY_AGE:
        _LAST[0], _LAST[1] = now, _other_runnable()
    return _LAST[1]


def _other_runnable() -> int | None:
    """Tasks of other processes runnable on the machine now (the first number of the fourth
    field of ``/proc/loadavg`` less this process's threads in state R: the caller, and any
    BLAS thread still spinning after its work); None where it cannot be read."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    # the state follows the command name's closing parenthesis
                    own += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                continue
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - max(own, 1))


class using:
    """Context manager: numba's parallel regions started in the block use ``n`` threads
    (numba's setting of the calling thread, restored afterwards)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self):
        import numba

        self._before = numba.get_num_threads()
        numba.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self._before)
        return False
