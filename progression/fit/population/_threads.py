"""One BLAS thread while a population estimator works on small matrices.

The FOCE family's linear algebra is on tiny matrices (E x E per subject, L-BFGS-B's
``setulb`` on a few dozen variables), where OpenBLAS's threads cost far more in
synchronisation than they save: measured on the 2-core test machine (shared, load ~10), one
``scipy.optimize.minimize(method="L-BFGS-B")`` of 13 iterations on 7 variables took 88 ms of
CPU with OpenBLAS's default 2 threads and 0.7 ms with one, and the FOCE-I fit of Theoph 0.96 s
against 0.62 s of CPU. :func:`single_blas_thread` limits every loaded BLAS (numpy and scipy
each bundle an OpenBLAS) to one thread for the duration of a block and restores the previous
counts, through ``threadpoolctl`` (the project's one way to limit BLAS threads, as in
:mod:`progression.parallel`).

The thread count is a process-wide setting of each library: BLAS calls of other Python
threads during the block run on one thread too.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["single_blas_thread"]


def single_blas_thread():
    """Context manager: the block runs with one BLAS thread (see the module docstring)."""
    return threadpool_limits(limits=1, user_api="blas")
