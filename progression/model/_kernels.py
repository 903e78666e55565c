"""Compiled (numba) model functions: per-subject kernels and the batch functions around them.

:class:`ModelKernels` is the kernel contract (this module): for each
core function a numba dispatcher ``name(t, y, p, out)`` evaluating one subject into a
preallocated ``out``, callable from other compiled code (a compiled integrator) and from
Python. :class:`BatchFunction` gives the numpy functions' signature and results
(``name(t, y (n, m), p (Q, m)) -> ndarray shape + (m,)``) with the subject loop compiled, so
every caller of :class:`~progression.model.compiled.CompiledModel` works unchanged.

Neither pickles: a model travels as its spec and rebuilds them (from numba's on-disk cache when
the model's cache entry has one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchFunction", "LazyModule", "ModelKernels", "numba_available"]

_NUMBA: bool | None = None


def numba_available() -> bool:
    """Whether numba is installed (checked once per process, without importing it: numba
    takes ~0.25 s to import, paid only when a compiled function is first used)."""
    global _NUMBA
    if _NUMBA is None:
        import importlib.util
        import sys

        if "numba" in sys.modules:
            _NUMBA = sys.modules["numba"] is not None
        else:
            try:
                _NUMBA = importlib.util.find_spec("numba") is not None
            except (ImportError, ValueError):
                _NUMBA = False
    return _NUMBA


class LazyModule:
    """A generated numba module, loaded (numba imported, the module executed) on first use.

    Parameters
    ----------
    load : callable
        ``load() -> module``.
    on_failure : callable, optional
        Called with the exception when loading fails (numba installed but broken): the model
        then runs its numpy code, and says so.
    """

    __slots__ = ("_load", "_module", "_on_failure", "failed")

    def __init__(self, load, on_failure=None):
        self._load = load
        self._module = None
        self._on_failure = on_failure
        self.failed = False

    def get(self):
        """The module, or None when it cannot be loaded (a warning said why, once)."""
        if self._module is None and not self.failed:
            try:
                self._module = self._load()
            except Exception as exc:  # noqa: BLE001 - a broken numba: the numpy code runs
                self.failed = True
                warnings.warn(f"the compiled (numba) model functions cannot be loaded "
                              f"({type(exc).__name__}: {str(exc)[:200]}); using the numpy code",
                              RuntimeWarning, stacklevel=3)
                if self._on_failure is not None:
                    self._on_failure(exc)
        return self._module


_EMPTY = np.zeros((0, 1))


def _subject_columns(a: np.ndarray, rows: int, count: int) -> tuple[np.ndarray, int]:
    """``a`` as a C-contiguous writable ``(rows, count)`` float array, or ``(rows, 1)`` with
    stride 0 when it is shared by all subjects."""
    if a.ndim == 1 and count != 1:  # no subject axis: one column shared by every subject
        a = a.reshape(rows, 1)
    a = a.reshape(rows, -1)
    stride = 1 if a.shape[1] == count else 0
    if stride == 0 and a.shape[1] != 1:
        raise ValueError(f"{a.shape[1]} subject columns do not broadcast against {count}")
    if not (a.flags.c_contiguous and a.flags.writeable and a.dtype == np.float64):
        # one array type per compiled loop: numba compiles a variant per layout/dtype
        a = np.array(a, dtype=np.float64, order="C")
    return a, stride


class BatchFunction:
    """A compiled function with the numpy function's signature: ``f(t, y, p)``.

    Parameters
    ----------
    name : str
        The model function's name (``rhs``, ``jac``, ...).
    batch : numba dispatcher or None
        ``_batch_name(t, ts, y, ys, p, ps, out)`` from :mod:`._codegen_numba`; None: taken
        from ``module`` on the first call.
    shape : tuple of int
        Output shape of one subject.
    subjects_from : {"y", "p"}
        Which argument carries the subjects (``"p"`` for initial values, whose ``y`` is None).
    fallback : callable
        The numpy function of the same expressions, used if numba fails to compile this one
        or the module cannot be loaded (a warning says so); never otherwise.
    module : LazyModule, optional
        Where ``_batch_name`` comes from when ``batch`` is None.

    Notes
    -----
    ``t`` is a scalar or one time per subject; ``y`` is ``(n, m)`` (or None when
    ``subjects_from == "p"``), ``p`` ``(Q, m)``; a subject axis of length 1 (or a missing one)
    broadcasts against the others. Returns a new array ``shape + (m,)``.
    """

    __slots__ = ("name", "batch", "shape", "size", "subjects_from", "fallback", "_failed",
                 "_module")

    def __init__(self, name, batch, shape, subjects_from, fallback, module=None):
        self.name = name
        self.batch = batch
        self._module = module
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape)) if self.shape else 1
        self.subjects_from = subjects_from
        self.fallback = fallback
        self._failed = False

    def _resolve(self) -> bool:
        """Take the batch function from the module on first use; False: use the fallback."""
        module = self._module.get() if self._module is not None else None
        if module is None:
            self._failed = True
            return False
        self.batch = getattr(module, f"_batch_{self.name}")
        return True

    def __call__(self, t, y, p):
        if self._failed or (self.batch is None and not self._resolve()):
            return self.fallback(t, y, p)
        if (y is not None and type(y) is np.ndarray and type(p) is np.ndarray
                and y.ndim == 2 and p.ndim == 2 and y.shape[1] == p.shape[1]
                and y.dtype == np.float64 and p.dtype == np.float64
                and y.flags.c_contiguous and p.flags.c_contiguous
                and y.flags.writeable and p.flags.writeable):
            # the common call (one column per subject, one time or one per subject): no copies
            count = y.shape[1]
            tt = np.asarray(t, dtype=np.float64)
            if tt.ndim == 0:
                tt, ts = tt.reshape(1), 0
            elif tt.shape == (count,) and tt.flags.c_contiguous:
                ts = 1
            else:
                tt, ts = None, 0
            if tt is not None:
                out = np.zeros((self.size, count))
                try:
                    self.batch(tt, ts, y, 1, p, 1, out)
                except Exception as exc:  # noqa: BLE001 - only numba's compile errors switch
                    return self._compile_failed(exc, t, y, p)
                return out.reshape(self.shape + (count,))
        p = np.asarray(p, dtype=np.float64)
        tt = np.asarray(t, dtype=np.float64)
        if y is None:
            count = max(p.shape[-1] if p.ndim > 1 else 1, tt.size if tt.ndim else 1)
            yy, ys = _EMPTY, 0
        else:
            y = np.asarray(y, dtype=np.float64)
            count = max(y.shape[-1] if y.ndim > 1 else 1, p.shape[-1] if p.ndim > 1 else 1,
                        tt.size if tt.ndim else 1)
            yy, ys = _subject_columns(y, y.shape[0], count)
        pp, ps = _subject_columns(p, p.shape[0] if p.ndim else 1, count)
        tt, ts = _subject_columns(tt.reshape(1, -1), 1, count)
        out = np.zeros((self.size, count))
        try:
            self.batch(tt[0], ts, yy, ys, pp, ps, out)
        except Exception as exc:  # noqa: BLE001 - only numba's compile errors switch
            return self._compile_failed(exc, t, y, p)
        return out.reshape(self.shape + (count,))

    def _compile_failed(self, exc, t, y, p):
        """Use the numpy code from now on if numba failed to compile; re-raise anything else."""
        if not _is_compile_error(exc):
            raise exc
        self._failed = True
        warnings.warn(f"numba could not compile the model function {self.name!r} "
                      f"({type(exc).__name__}: {str(exc)[:200]}); using the numpy code for it",
                      RuntimeWarning, stacklevel=3)
        return self.fallback(t, y, p)

    def __reduce__(self):
        raise TypeError("compiled model functions do not pickle; pickle the model (it travels "
                        "as its spec and is rebuilt)")


def _is_compile_error(exc: Exception) -> bool:
    try:
        from numba.core.errors import NumbaError
    except ImportError:  # pragma: no cover - a BatchFunction exists only with numba
        return False
    return isinstance(exc, NumbaError)


@dataclass(frozen=True)
class ModelKernels:
    """Per-subject compiled model functions (the kernel contract).

    Each function attribute is a numba ``@njit`` dispatcher ``name(t, y, p, out)``: ``t`` a
    float64 scalar, ``y`` ``(n_states,)`` and ``p`` ``(n_params,)`` float64 arrays (``p`` with
    the covariates' hidden rows), ``out`` a preallocated C-contiguous float64 array that the
    kernel overwrites entirely (zeros included). Each computes what the numpy function of the
    same name computes for one subject (its output without the subject axis).

    Attributes
    ----------
    rhs : ``out (n,)`` dy/dt
    jac : ``out (n, n)`` d rhs / d y
    dfdp : ``out (n, Q)`` d rhs / d p
    initial : ``out (n,)`` initial states (``y`` ignored)
    dinitial_dp : ``out (n, Q)``
    observe : ``out (k,)``
    dobs_dy : ``out (k, n)``
    dobs_dp : ``out (k, Q)``
    event_values : ``out (n_events,)``
    n_states, n_params, n_observables, n_events : int
        ``n``, ``Q`` (parameters plus hidden rows), ``k``, number of events.
    rhs_jac : ``rhs_jac(t, y, p, f (n,), J (n, n))``
        ``rhs`` and ``jac`` at the same point from one common-subexpression elimination (the
        Jacobian shares the right-hand side's transcendental calls): what a Rosenbrock method
        needs after every accepted step. Equal to ``rhs`` and ``jac`` to rounding.
    """

    rhs: object
    jac: object
    dfdp: object
    initial: object
    dinitial_dp: object
    observe: object
    dobs_dy: object
    dobs_dp: object
    event_values: object
    n_states: int
    n_params: int
    n_observables: int
    n_events: int
    rhs_jac: object = None

    def __reduce__(self):
        raise TypeError("ModelKernels do not pickle; pickle the model (it travels as its spec "
                        "and rebuilds its kernels)")
