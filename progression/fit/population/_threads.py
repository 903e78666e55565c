"""One BLAS thread while a population estimator works on small matrices.

The FOCE family's linear algebra is on tiny matrices (E x E per subject, L-BFGS-B's
``setulb`` on a few dozen variables), where OpenBLAS's threads cost far more in
synchronisation than they save: measured on the 2-core test machine (shared, load ~10), one
``scipy.optimize.minimize(method="L-BFGS-B")`` of 13 iterations on 7 variables took 88 ms of
CPU with OpenBLAS's default 2 threads and 0.7 ms with one, and the FOCE-I fit of Theoph 0.96 s
against 0.62 s of CPU. :func:`single_blas_thread` sets every loaded OpenBLAS (numpy's and
scipy's bundle their own) to one thread for the duration of a block and restores the previous
counts, the way ``threadpoolctl`` does (not a dependency here): the libraries are found in the
process's memory map and called through ``ctypes``. Where that is not possible (another BLAS,
another platform) it does nothing.

The thread count is a process-wide setting of each library: BLAS calls of other Python
threads during the block run on one thread too.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

__all__ = ["single_blas_thread"]

#: (getter, setter) name pairs of OpenBLAS builds: plain, 64-bit-integer, scipy's wheels.
_NAMES = (("openblas_get_num_threads", "openblas_set_num_threads"),
          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"))

_FOUND: list = []
_LOCK = threading.Lock()


def _openblas() -> list:
    """(get, set) functions of every OpenBLAS mapped into this process (found once)."""
    with _LOCK:
        if _FOUND:
            return _FOUND[0]
        found = []
        try:
            import numpy  # noqa: F401 - load the libraries before looking for them
            import scipy.linalg  # noqa: F401

            with open("/proc/self/maps") as fh:
                paths = sorted({line.split()[-1] for line in fh
                                if "openblas" in line.lower() and "/" in line})
            for path in paths:
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for get_name, set_name in _NAMES:
                    get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        put.argtypes = [ctypes.c_int]
                        found.append((get, put))
                        break
        except (OSError, ImportError, AttributeError):   # not Linux, or no OpenBLAS
            found = []
        _FOUND.append(found)
        return found


@contextlib.contextmanager
def single_blas_thread():
    """Run the block with one OpenBLAS thread (see the module docstring); no-op elsewhere."""
    libs = _openblas()
    old = []
    for get, put in libs:
        n = int(get())
        old.append(n)
        if n != 1:
            put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(libs, old, strict=True):
            if n != 1:
                put(n)
