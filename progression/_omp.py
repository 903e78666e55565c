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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["threads"]

#: The process that imported this module. GNU OpenMP (numba's ``omp`` threading layer) is
#: not fork-safe: numba terminates a forked child that starts a parallel region after its
#: parent did ("fork() called from a process already using GNU OpenMP"), so a forked child
#: (a multiprocessing worker, a Dask worker) runs the serial kernels.
_PID = os.getpid()


def threads() -> int:
    """Threads a parallel kernel may use: numba's thread count, limited to the CPUs this
    process may run on; 1 without numba, in a worker process of :mod:`progression.parallel`
    (it sets ``OMP_NUM_THREADS=1``: the other cores are the other workers') and in any process
    forked after this module was imported (:data:`_PID`)."""
    if os.environ.get("OMP_NUM_THREADS") == "1" or os.getpid() != _PID:
        return 1
    try:
        import numba
    except ImportError:     # the numpy backend: nothing runs in parallel
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(numba.get_num_threads(), cpus))
