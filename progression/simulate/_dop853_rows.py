"""States of many subjects at their own times by the compiled DOP853, the subjects spread over
numba's threads: the exact path's evaluations without sensitivities (the polish of an
individual fit, :func:`progression.fit._paths.plain_outputs`).

Each subject is integrated by :func:`._dop853_numba._batch_row` (the serial batch's per-row
function) into its own slices of the outputs, so the numbers are those of the serial call
whatever the thread count; which one runs is decided per call by :func:`progression._omp.threads`
(idle CPUs only, one thread in worker processes and forked children).

Without numba this module imports, :data:`AVAILABLE` is False and nothing here is used.
"""

from __future__ import annotations

import numpy as np

from .. import _omp  # before numba starts its threads: they wait passively (see there)
from ._dop853_numba import AVAILABLE

__all__ = ["AVAILABLE", "PARALLEL", "row_states"]

if AVAILABLE:
    import numba
    from numba import njit, prange

    from ._dop853_numba import _batch_row

    @njit(cache=True, error_model="numpy", parallel=True)
    def _batch_par(KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout, Oout,
                   DOout, record_obs, rtol, atol, max_step, max_steps, info_i, info_f, fail_y,
                   SKL, use_sk):
        """:func:`._dop853_numba._batch` (its arguments) with the rows over numba's threads
        (``prange``): the same per-row function, the same numbers."""
        for s in prange(Y0.shape[0]):
            _batch_row(s, KL, t0, t_end, P0, Y0, S0, sidx, A0, times, counts, Yout, Sout,
                       Oout, DOout, record_obs, rtol, atol, max_step, max_steps, info_i,
                       info_f, fail_y, SKL, use_sk)

#: Spread the rows over numba's threads (the same numbers as one thread); False: one thread.
PARALLEL = True
#: Rows from which a call spreads them (a row at rtol 1e-10 costs ~0.25 ms, the threads' start
#: and join some 10-50 us).
PARALLEL_ROWS = 16
#: Rows a thread takes at a time (numba's ``parallel_chunksize``): a row's cost varies with
#: its parameters and span, and on a shared machine one thread may be held up.
CHUNK = 4

_PAR = None


def row_threads(m: int) -> int:
    """Threads :func:`row_states` uses for ``m`` rows."""
    if not (AVAILABLE and PARALLEL) or m < PARALLEL_ROWS:
        return 1
    return _omp.threads()


def row_states(model, table, times, counts, rtol, atol, max_step, max_steps):
    """States of ``m`` subjects at their own output times, from t = 0, no switch, event or
    covariate (compiled DOP853, one closed segment per subject).

    Parameters
    ----------
    model : CompiledModel
        With numba kernels (``model.kernels``).
    table : ndarray (m, P)
        Parameters of each subject.
    times : ndarray (m, T)
        Each subject's output times, increasing and >= 0, in its first ``counts[s]``
        entries (the rest padding); the integration of a subject ends at its last one.
    counts : ndarray of int (m,)
    rtol, atol, max_step, max_steps : float, float, float, int
        DOP853's tolerances, largest step and steps.

    Returns
    -------
    states : ndarray (m, T, n)
        NaN where not reached.
    code : ndarray of int (m,)
        0 finished, :data:`._dop853_numba.STIFF` stiff (stopped), -1 failed: the caller
        integrates those subjects otherwise.
    """
    global _PAR
    from ._compiled import batch_buffers
    from ._dop853_numba import dop_batch, sensitivity_kernels
    from ._rodas4_loops import _quiet, packed_kernels

    m, n = table.shape[0], model.n_states
    T = max(int(times.shape[1]), 1)
    KL = packed_kernels(model.kernels)
    sidx = np.zeros(0, dtype=np.int64)
    skl = sensitivity_kernels(model, sidx)
    p0 = np.ascontiguousarray(table, dtype=float)                 # (m, P)
    with np.errstate(all="ignore"):
        y0 = np.ascontiguousarray(model.initial(0.0, None, np.ascontiguousarray(p0.T)).T,
                                  dtype=float)                      # (m, n)
    tt = np.zeros((m, T))
    tt[:, :times.shape[1]] = times
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    t_end = np.array([tt[s, c - 1] if c else 0.0 for s, c in enumerate(counts.tolist())])
    Yb, Sb, Ob, DOb, info_i, info_f, fail_y = batch_buffers(m, T, n, 0, 0)
    args = (KL, 0.0, t_end, p0, y0, np.zeros((m, 0, n)), sidx, np.zeros((m, 0)), tt, counts,
            Yb, Sb, Ob, DOb, False, float(rtol), float(atol), float(max_step),
            int(max_steps), info_i, info_f, fail_y, *skl)
    threads = row_threads(m)
    if threads > 1:
        if _PAR is None:
            _PAR = _quiet(_batch_par)
        with _omp.using(threads), numba.parallel_chunksize(CHUNK):
            _PAR(*args)
    else:
        dop_batch(*args)
    return Yb, info_i[:, 0].copy()
