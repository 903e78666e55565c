"""Compiled models: vectorised right-hand side, exact Jacobian and parameter derivatives.

:func:`compile_model` turns a :class:`~progression.model.spec.ModelSpec` into a
:class:`CompiledModel`. The Jacobian with respect to the states and the derivatives with respect
to the parameters are derived symbolically (sympy) once and generated as numpy code that
evaluates a whole batch of subjects per call (arrays shaped ``(..., n_subjects)``).

:class:`PythonModel` (in :mod:`._python`, importable from here) offers the same interface for
people who prefer to write the right-hand side as a Python callable; its derivatives come from
central finite differences unless given.

Both pickle: a compiled model travels as its spec and is rebuilt (once per process) on arrival,
from the disk cache of generated code when it holds the model (see :mod:`._cache`), so neither
a second command on the same model nor a worker process runs sympy again.

Backends: with numba importable (the default; ``PROGRESSION_BACKEND=numba|numpy`` or
``compile_model(..., backend=...)`` choose) the core functions are numba code generated from the
same expressions (:mod:`._codegen_numba`): batch functions with the numpy functions' signature
and per-subject kernels (:attr:`CompiledModel.kernels`, :class:`._kernels.ModelKernels`) for
compiled integrators. Without numba everything is the numpy code and ``kernels`` is None.
"""

from __future__ import annotations

import hashlib
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ModelError
from . import _cache
from ._base import _ModelBase
from ._codegen import generate_source, load_source, prepare
from ._held_states import _FrozenStates
from ._kernels import BatchFunction, LazyModule, ModelKernels, numba_available
from ._python import PythonModel
from .spec import ModelSpec

__all__ = ["BACKENDS", "CompiledModel", "PythonModel", "Jump", "compile_model",
           "resolve_backend"]

_CACHE: dict[tuple[str, str], CompiledModel] = {}

#: The backends :func:`compile_model` knows.
BACKENDS = ("numba", "numpy")

#: The functions every compiled model has, generated together (one disk-cache entry).
_CORE = ("rhs", "initial", "observe", "event_values", "jac", "dfdp", "dinitial_dp", "dobs_dy",
         "dobs_dp")


def resolve_backend(backend: str | None = None) -> str:
    """The backend to use: ``"numba"`` or ``"numpy"``.

    Parameters
    ----------
    backend : {"numba", "numpy"} or None
        None: ``$PROGRESSION_BACKEND`` if set, else numba when ``import numba`` works. A
        request for numba without numba installed gives numpy (the numpy code is the tested
        fallback; :attr:`CompiledModel.backend` says which is in use).

    Raises
    ------
    ConfigError
        An unknown backend name (argument or environment variable).
    """
    where = "compile_model(backend=...)"
    if backend is None:
        import os

        backend = os.environ.get("PROGRESSION_BACKEND", "").strip().lower() or None
        where = "the environment variable PROGRESSION_BACKEND"
    if backend is None:
        backend = "numba"
    if backend not in BACKENDS:
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, BACKENDS))}, "
                          f"found {backend!r}")
    if backend == "numba" and not numba_available():
        return "numpy"
    return backend


def compile_model(spec: ModelSpec, *, cache=None, backend: str | None = None) -> CompiledModel:
    """Compile a model spec, reusing an earlier compilation of the same content and backend.

    Parameters
    ----------
    spec : ModelSpec
    cache : None, bool or path, optional
        The disk cache of generated code: None (default) as the environment says
        (``PROGRESSION_CACHE_DIR``, ``PROGRESSION_NO_CACHE``; see :mod:`._cache`), False to
        neither read nor write it, or a folder to use.
    backend : {"numba", "numpy"} or None, optional
        See :func:`resolve_backend`; None (default) is numba when installed, unless
        ``PROGRESSION_BACKEND`` says otherwise.
    """
    backend = resolve_backend(backend)
    key = (spec.fingerprint, backend)
    model = _CACHE.get(key)
    if model is None:
        model = _CACHE[key] = CompiledModel(spec, cache=cache, backend=backend)
    return model


def _restore(spec: ModelSpec, backend: str) -> CompiledModel:
    """Unpickle a compiled model: compile (or find) it with the backend it was sent with."""
    return compile_model(spec, backend=backend)


@dataclass(frozen=True)
class Jump:
    """A compiled state jump ``y -> g(t, y, p)`` with its derivatives.

    ``apply(t, y, p)`` returns the new states ``(n_states, n_subjects)``; ``dy(t, y, p)`` and
    ``dp(t, y, p)`` return ``dg/dy`` ``(n_states, n_states, m)`` and ``dg/dp``
    ``(n_states, n_parameters, m)``, used to carry sensitivities across the jump.
    """

    apply: Callable
    dy: Callable
    dp: Callable


class CompiledModel(_ModelBase):
    """A model compiled to vectorised numpy functions with exact derivatives.

    Every function takes ``t`` (scalar), ``y`` shaped ``(n_states, m)`` and ``p`` shaped
    ``(n_parameters, m)`` for ``m`` subjects; a model with ``[covariates]`` takes
    ``(n_parameters + len(hidden_names), m)``: the parameters, then the covariates' hidden
    rows (:attr:`hidden_defaults` gives the file's defaults; derivatives with respect to ``p``
    have a column per row, of which callers use the parameters').

    Attributes
    ----------
    spec : ModelSpec
    backend : {"numba", "numpy"}
        Which code the core functions run: numba (compiled batch functions, and
        :attr:`kernels`) or numpy. Without numba installed it is "numpy"; it turns "numpy" too
        if an installed numba fails to load on first use (a warning says so).
    compile_seconds : float
        Wall time spent deriving and generating code (numba is imported, and compiles each
        function, on first use; numba's disk cache spares the compilation).
    """

    def __init__(self, spec: ModelSpec, *, cache=None, backend: str | None = None):
        start = _time.perf_counter()
        self.backend = resolve_backend(backend)
        self._kernels: ModelKernels | None = None
        self._core_module: LazyModule | None = None
        self.spec = spec
        self.name = spec.name
        self.time_unit = spec.time_unit
        self.state_names = spec.state_names
        self.parameter_names = spec.parameter_names
        self.covariate_names = spec.covariate_names
        self.hidden_names = spec.hidden_names
        self.observable_names = spec.observable_names
        self.events = spec.events
        self.defaults = np.array([p.value for p in spec.parameters], dtype=float)
        self.bounds = np.array([p.bounds for p in spec.parameters], dtype=float).reshape(-1, 2)
        self.sources: dict[str, str] = {}
        self._functions: dict = {}
        self._jumps: dict = {}
        self._disk = _cache.ModelCache.for_spec(spec, cache, self.backend)
        n = len(spec.states)

        def core():
            sources = self._core_sources()
            sparsity = self.__dict__.pop("_sparsity")
            return sources, {"jacobian_sparsity": sparsity}

        funcs, extra = self._cached("core", _CORE, core, numba=self.backend == "numba")
        for name in _CORE:
            setattr(self, name, funcs[name])
        if self.backend == "numba":
            self._attach_kernels(funcs["numba"])
        sparsity = np.asarray(extra.get("jacobian_sparsity", []), dtype=bool)
        if sparsity.shape != (n, n):
            raise ModelError(f"{spec.source}: internal error, Jacobian pattern of shape "
                             f"{sparsity.shape} for {n} states")
        self.jacobian_sparsity = sparsity
        self.compile_seconds = _time.perf_counter() - start

    @property
    def hidden_defaults(self) -> np.ndarray:
        """Default values of the hidden covariate rows: each covariate's file ``value`` (NaN
        when it has none, i.e. is required) and slope 0; shape ``(len(hidden_names),)``."""
        values = []
        for c in self.spec.covariates:
            values.append(np.nan if c.value is None else c.value)
            if c.interpolation == "linear":
                values.append(0.0)
        return np.array(values, dtype=float)

    # -- sympy, only where no cached code exists ----------------------------------------------

    @property
    def symbolic(self):
        """The model as sympy expressions (built on first use; imports sympy)."""
        if "_symbolic" not in self.__dict__:
            from ._symbolic import place

            with place(self.spec.source):
                self.__dict__["_symbolic"] = self.spec.symbolic()
        return self.__dict__["_symbolic"]

    @property
    def _dfdp_matrix(self):
        if "_dfdp" not in self.__dict__:
            self.__dict__["_dfdp"] = self._derivatives(self.symbolic.rhs, self.symbolic.p,
                                                       self._places("equations"))
        return self.__dict__["_dfdp"]

    def _derivatives(self, exprs, wrt, places):
        """Matrix of d exprs / d wrt, each row under its own place for error messages."""
        import sympy as sp

        from ._symbolic import place

        rows = []
        for expr, where in zip(exprs, places, strict=True):
            with place(where):
                rows.append([sp.diff(expr, v) for v in wrt])
        return sp.Matrix(len(rows), len(wrt), [e for row in rows for e in row])

    def _places(self, kind: str) -> list[str]:
        src = self.spec.source
        if kind == "equations":
            return [f"{src}, [equations] {n}" for n in self.state_names]
        if kind == "initial":
            return [f"{src}, [states.{n}] initial" for n in self.state_names]
        return [f"{src}, [observables.{n}] expression" for n in self.observable_names]

    def _source(self, name, exprs, shape, subjects_from="y", *, y=None, p=None, numba=None):
        """The numpy source of ``name``; with the numba backend and a dict ``numba``, also
        the numba source of the same reduced expressions, stored in ``numba[name]``."""
        from ._symbolic import place

        sym = self.symbolic
        y = sym.y if y is None else y
        p = sym.p if p is None else p
        with place(f"{self.spec.source}: generating the code of {name}"):
            prepared = prepare(exprs, sym.t, y, p)
            if numba is not None and self.backend == "numba":
                from ._codegen_numba import function_source

                numba[name] = function_source(name, exprs, shape, sym.t, y, p,
                                              prepared=prepared)
            return generate_source(name, exprs, shape, sym.t, y, p,
                                   subjects_from=subjects_from, prepared=prepared)

    @property
    def kernels(self) -> ModelKernels | None:
        """The per-subject compiled kernels (:class:`._kernels.ModelKernels`) with the numba
        backend, else None. The first use imports numba and loads the model's module."""
        if self._kernels is None and self._core_module is not None:
            module = self._core_module.get()
            if module is not None:
                n, Q = self.n_states, self.n_parameters + len(self.hidden_names)
                self._kernels = ModelKernels(
                    **{name: getattr(module, name) for name in _CORE}, n_states=n, n_params=Q,
                    n_observables=len(self.observable_names), n_events=len(self.events),
                    rhs_jac=module.rhs_jac)
        return self._kernels

    def _numba_failed(self, exc) -> None:
        """numba is installed but its module cannot be loaded: the numpy code runs."""
        self.backend = "numpy"

    def _attach_kernels(self, module: LazyModule) -> None:
        """Replace the core numpy functions by the numba module's batch functions (same
        signature and results; the numpy ones stay as their fallback) and keep the module for
        :attr:`kernels`. Nothing is loaded before first use."""
        n, Q = self.n_states, self.n_parameters + len(self.hidden_names)
        k, e = len(self.observable_names), len(self.events)
        shapes = {"rhs": (n,), "initial": (n,), "observe": (k,), "event_values": (e,),
                  "jac": (n, n), "dfdp": (n, Q), "dinitial_dp": (n, Q), "dobs_dy": (k, n),
                  "dobs_dp": (k, Q)}
        for name in _CORE:
            subjects = "p" if name in ("initial", "dinitial_dp") else "y"
            setattr(self, name, BatchFunction(name, None, shapes[name], subjects,
                                              getattr(self, name), module=module))
        self._core_module = module

    def _core_sources(self) -> dict:
        import sympy as sp

        _cache.stats["compiled"] += 1
        sym = self.symbolic
        n, P, k = len(sym.y), len(sym.p), len(sym.observables)
        jac = self._derivatives(sym.rhs, sym.y, self._places("equations"))
        dfdp = self._dfdp_matrix if P else sp.zeros(n, 0)
        dinit = self._derivatives(sym.initial, sym.p, self._places("initial"))
        if k:
            where = self._places("observables")
            dobs_dy = list(self._derivatives(sym.observables, sym.y, where))
            dobs_dp = list(self._derivatives(sym.observables, sym.p, where))
        else:
            dobs_dy = dobs_dp = []
        self.__dict__["_sparsity"] = [[bool(e != 0) for e in row] for row in jac.tolist()]
        parts = {
            "rhs": (sym.rhs, (n,), "y"),
            "initial": (sym.initial, (n,), "p"),
            "observe": (sym.observables, (k,), "y"),
            "event_values": (sym.events, (len(sym.events),), "y"),
            "jac": (list(jac), (n, n), "y"),
            "dfdp": (list(dfdp), (n, P), "y"),
            "dinitial_dp": (list(dinit), (n, P), "p"),
            "dobs_dy": (dobs_dy, (k, n), "y"),
            "dobs_dp": (dobs_dp, (k, P), "y"),
        }
        sources, numba_parts = {}, {}
        for name, (exprs, shape, subjects) in parts.items():
            sources[name] = self._source(name, exprs, shape, subjects, numba=numba_parts)
        if self.backend == "numba":
            from ._codegen_numba import fused_source, module_source
            from ._symbolic import place

            # the right-hand side and its Jacobian from one elimination (compiled Rodas4
            # evaluates both after every accepted step)
            with place(f"{self.spec.source}: generating the code of rhs_jac"):
                numba_parts["rhs_jac"] = fused_source(
                    "rhs_jac", [(sym.rhs, (n,)), (list(jac), (n, n))], sym.t, sym.y, sym.p)
            sources["numba"] = module_source(numba_parts)
        return sources

    def _cached(self, entry: str, names: tuple, make, *, numba: bool = False
                ) -> tuple[dict, dict]:
        """Functions ``names`` from the disk cache entry, else from ``make() -> (sources, extra)``.

        With ``numba``, the entry also holds the generated numba module's source (``"numba"``),
        loaded from a module file beside the entry (see :func:`._codegen_numba.load_module`)
        and returned as ``funcs["numba"]``. A cached entry that fails to load in any way is
        rebuilt: the cache never makes a model fail to load.
        """
        if self._disk is not None:
            payload = self._disk.load(entry)
            if payload is not None:
                try:
                    funcs = {n: load_source(n, payload["sources"][n]) for n in names}
                    if numba:
                        funcs["numba"] = self._lazy_module(entry, payload["sources"]["numba"])
                    self._keep_sources(entry, payload["sources"])
                    return funcs, payload.get("extra") or {}
                except (Exception, RecursionError, MemoryError):  # noqa: BLE001 - a bad entry
                    _cache.stats["hits"] -= 1
                    _cache.stats["misses"] += 1
        sources, extra = make()
        try:
            funcs = {n: load_source(n, sources[n]) for n in names}
            if numba:
                funcs["numba"] = self._lazy_module(entry, sources["numba"])
        except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
            raise ModelError(f"{self.spec.source}: the generated code cannot be compiled "
                             f"({type(exc).__name__}: {exc}); the model's expressions are "
                             f"nested too deeply") from None
        self._keep_sources(entry, sources)
        if self._disk is not None:
            self._disk.store(entry, sources, extra)
        return funcs, extra

    def _keep_sources(self, entry: str, sources: dict) -> None:
        """Record the generated sources (``sources["numba"]``: the core entry's module)."""
        self.sources.update({k: v for k, v in sources.items() if k != "numba"})
        if entry == "core" and "numba" in sources:
            self.sources["numba"] = sources["numba"]

    def _with_numba(self, sources: dict, parts: dict) -> dict:
        """``sources`` plus, with the numba backend, the module of the numba ``parts``."""
        if self.backend == "numba":
            from ._codegen_numba import module_source

            sources["numba"] = module_source(parts)
        return sources

    def _batch(self, funcs: dict, name: str, shape: tuple) -> Callable:
        """The function ``name``: the numba batch function when the entry has a module."""
        if "numba" not in funcs:
            return funcs[name]
        return BatchFunction(name, None, shape, "y", funcs[name], module=funcs["numba"])

    def _lazy_module(self, entry: str, source) -> LazyModule:
        """The numba module of ``entry``, loaded on first use (see :meth:`_numba_module`)."""
        if not isinstance(source, str):
            raise TypeError("the numba source is not text")
        return LazyModule(lambda: self._numba_module(entry, source), self._numba_failed)

    def _numba_module(self, entry: str, source: str):
        """The generated numba module of ``entry``: from its file in the cache entry's folder
        (numba caching its machine code beside it), or executed from ``source`` without disk
        cache."""
        from ._codegen_numba import load_module

        if not isinstance(source, str):
            raise TypeError("the numba source is not text")
        tag = hashlib.sha256(source.encode()).hexdigest()[:16]
        name = f"_progression_numba_{entry.replace('-', '_')}_{tag}"
        path = None if self._disk is None else self._disk.module_path(entry)
        return load_module(source, name, path)

    @staticmethod
    def _entry(kind: str, key) -> str:
        return f"{kind}-{hashlib.sha256(repr(key).encode()).hexdigest()[:24]}"

    def dfdp_columns(self, columns) -> Callable:
        """``d rhs / d p`` for the given parameter columns only, ``(n_states, k, m)``.

        Fits need the derivatives for a handful of parameters; generating only those columns
        spares computing (and discarding) all of them at every right-hand-side call.
        """
        key = ("dfdp_columns", tuple(int(c) for c in columns))
        if key not in self._functions:
            cols = list(key[1])

            def make():
                import sympy as sp

                sub = self._dfdp_matrix[:, cols] if cols else sp.zeros(self.n_states, 0)
                parts = {}
                source = self._source("dfdp_columns", list(sub), (self.n_states, len(cols)),
                                      numba=parts)
                return self._with_numba({"dfdp_columns": source}, parts), {}

            funcs, _ = self._cached(self._entry(*key), ("dfdp_columns",), make,
                                    numba=self.backend == "numba")
            self._functions[key] = self._batch(funcs, "dfdp_columns",
                                               (self.n_states, len(cols)))
        return self._functions[key]

    def for_outputs(self, observables):
        """A view of this model for computing the ``observables`` only: the states they do
        not depend on (directly or through the equations of those they do) are held at their
        initial values (their right-hand side, Jacobian rows and ``d rhs / d p`` rows zero),
        so compiled integrators skip their equations; or this model itself when there is no
        such state or numba fails to load. With the numpy backend the view integrates the
        same system (the model's functions with those rows zeroed: no saving, the numbers of
        the numba backend's view to rounding).

        A cumulative-hazard state ``Lambda_NAME`` of ``[hazards.NAME]`` is one: no other
        equation reads it, and a fit to ALSFRS-R, NfL and CRP does not need it; its rate
        (an ``expm1`` of softplus terms) is most of ``als_reduced``'s right-hand side. The
        states kept follow the same equations, from the same expressions, so their values
        agree with the full model's to the integrator's tolerance (the error control then
        covers the kept states only). For states-only integration and grid sensitivities
        (the kernels ``rhs``, ``jac``, ``rhs_jac``, the batch ``rhs``, ``jac`` and
        :meth:`dfdp_columns`); the other functions are this model's.

        Parameters
        ----------
        observables : sequence of str
            Observable names the caller evaluates.

        Returns
        -------
        CompiledModel or _FrozenStates
        """
        names = tuple(sorted(set(observables)))
        key = ("for_outputs", names)
        if key in self._functions:
            return self._functions[key]
        view = self
        numba = self.backend == "numba"
        if not numba or self.kernels is not None:     # (numba that failed to load: as is)
            for name in names:
                self._index(tuple(self.observable_names), name, "observable")

            def make():
                drop = self._unneeded_states(names)
                if not drop or not numba:
                    return ({"numba": ""} if numba else {}), {"drop": list(drop)}
                sym = self.symbolic
                import sympy as sp

                from ._codegen_numba import function_source, fused_source, module_source
                from ._symbolic import place

                n = len(sym.y)
                keep = [i not in drop for i in range(n)]
                jac = self._derivatives(sym.rhs, sym.y, self._places("equations"))
                rhs = [e if keep[i] else sp.Integer(0) for i, e in enumerate(sym.rhs)]
                jac = [jac[i, j] if keep[i] else sp.Integer(0) for i in range(n)
                       for j in range(n)]
                with place(f"{self.spec.source}: generating the code of the states "
                           f"{', '.join(self.state_names[i] for i in drop)} held"):
                    parts = {
                        "rhs": function_source("rhs", rhs, (n,), sym.t, sym.y, sym.p),
                        "jac": function_source("jac", jac, (n, n), sym.t, sym.y, sym.p),
                        "rhs_jac": fused_source("rhs_jac", [(rhs, (n,)), (jac, (n, n))],
                                                sym.t, sym.y, sym.p)}
                return {"numba": module_source(parts)}, {"drop": list(drop)}

            try:
                funcs, extra = self._cached(self._entry(*key), (), make, numba=numba)
                drop = tuple(int(i) for i in extra.get("drop", []))
                # loaded here, not through the model's LazyModule, whose failure would switch
                # the whole model to its numpy code
                module = funcs["numba"]._load() if drop and numba else None
            except (Exception, RecursionError) as exc:  # noqa: BLE001 - the full model runs
                import warnings

                warnings.warn(f"{self.spec.source}: the reduced kernels for {list(names)} "
                              f"cannot be built ({type(exc).__name__}: {exc}); the full "
                              "model is integrated", RuntimeWarning, stacklevel=2)
                drop, module = (), None
            if drop and (module is not None or not numba):
                view = _FrozenStates(self, drop, module)
        self._functions[key] = view
        return view

    def _unneeded_states(self, observables) -> tuple[int, ...]:
        """States (indices) that the named observables do not depend on, directly or
        through the equations of the states they depend on (the Jacobian's pattern)."""
        sym = self.symbolic
        ys = list(sym.y)
        need = set()
        for name in observables:
            expr = sym.observables[list(self.observable_names).index(name)]
            need |= {i for i, y in enumerate(ys) if expr.has(y)}
        pattern = np.asarray(self.jacobian_sparsity, dtype=bool)
        todo = list(need)
        while todo:
            i = todo.pop()
            for j in np.nonzero(pattern[i])[0].tolist():
                if j not in need:
                    need.add(j)
                    todo.append(j)
        return tuple(i for i in range(len(ys)) if i not in need)

    def sensitivity_rhs(self, columns) -> Callable:
        """Right-hand side of the states and their forward sensitivities in one function.

        Returns ``g(t, Y, Pa)`` with ``Y`` of shape ``((1 + k) * n_states, m)`` (the states,
        then ``dy/dp_q`` for each of the ``k`` columns, state-minor) and ``Pa`` of shape
        ``(n_parameters + k, m)`` (the parameters, then a factor multiplying each ``df/dp_q``,
        1 unless a switch rescaled the parameter). The result has the shape of ``Y``:
        ``f`` and ``J S_q + a_q df/dp_q``. Generated as one function so that the Jacobian
        entries share subexpressions with ``f`` and only structural non-zeros are multiplied.
        """
        return self._sensitivity(columns)[0]

    def sensitivity_kernel(self, columns):
        """The per-subject compiled form of :meth:`sensitivity_rhs`, or None (numpy backend).

        A numba dispatcher ``g(t, Y, Pa, out)`` with ``Y`` ``((1 + k) * n_states,)`` (states,
        then ``dy/dp_q`` per column), ``Pa`` ``(Q + k,)`` (the parameters with the hidden rows,
        then the factors ``a_q``) and ``out`` like ``Y``, overwritten entirely: ``f`` and
        ``J S_q + a_q df/dp_q`` for one subject, as :attr:`kernels` functions are called.
        """
        return self._sensitivity(columns)[1]

    def _sensitivity(self, columns):
        """(batch function, kernel or None) of the sensitivity right-hand side for columns."""
        key = ("sensitivity_rhs", tuple(int(c) for c in columns))
        if key not in self._functions:
            cols = key[1]

            def make():
                import sympy as sp

                sym = self.symbolic
                n, k = self.n_states, len(cols)
                S = [[sp.Symbol(f"_S{q}_{i}") for i in range(n)] for q in range(k)]
                a = [sp.Symbol(f"_a{q}") for q in range(k)]
                f = sp.Matrix(sym.rhs)
                J = self._derivatives(sym.rhs, sym.y, self._places("equations"))
                exprs = list(f)
                for q, c in enumerate(cols):
                    exprs += list(J * sp.Matrix(S[q]) + a[q] * self._dfdp_matrix[:, c])
                parts = {}
                source = self._source("sensitivity_rhs", exprs, ((1 + k) * n,),
                                      y=[*sym.y, *(s for row in S for s in row)],
                                      p=[*sym.p, *a], numba=parts)
                return self._with_numba({"sensitivity_rhs": source}, parts), {}

            funcs, _ = self._cached(self._entry(*key), ("sensitivity_rhs",), make,
                                    numba=self.backend == "numba")
            batch = self._batch(funcs, "sensitivity_rhs", ((1 + len(cols)) * self.n_states,))
            self._functions[key] = (batch, funcs.get("numba"))
        batch, module = self._functions[key]
        module = module.get() if module is not None else None
        return batch, (module.sensitivity_rhs if module is not None else None)

    def jump(self, mapping: Mapping[str, str | float], where: str = "jump") -> Jump:
        """Compile a state jump given as state -> expression of states, parameters and ``t``.

        All right-hand sides are evaluated with the states before the jump (simultaneous
        update), e.g. ``{"R": "R + 0.5", "phi": "(R*phi + 0.5)/(R + 0.5)"}``.
        """
        key = tuple(sorted((k, str(v)) for k, v in mapping.items()))
        if key not in self._jumps:
            indices = {state: self.state_index(state) for state in mapping}
            # Checked without sympy first, so a bad jump is refused even on a cache hit.
            from ._expressions import check_expression

            names = {"t", *self.state_names, *self.parameter_names, *self.covariate_names,
                     *(n for n, _ in self.spec.expressions)}
            for state, text in mapping.items():
                check_expression(text, names, f"{where} {state}")

            def make():
                sym = self.symbolic
                new = list(sym.y)
                for state, text in mapping.items():
                    new[indices[state]] = sym.parse(text, f"{where} {state}")
                places = [f"{where} {state}" for state in self.state_names]
                dy = self._derivatives(new, sym.y, places)
                dp = self._derivatives(new, sym.p, places)
                n, P = self.n_states, len(sym.p)
                parts = {}
                return self._with_numba({
                    "jump": self._source("jump", new, (n,), numba=parts),
                    "jump_dy": self._source("jump_dy", list(dy), (n, n), numba=parts),
                    "jump_dp": self._source("jump_dp", list(dp) if P else [], (n, P),
                                            numba=parts)}, parts), {}

            funcs, _ = self._cached(self._entry("jump", key), ("jump", "jump_dy", "jump_dp"),
                                    make, numba=self.backend == "numba")
            n, Q = self.n_states, self.n_parameters + len(self.hidden_names)
            self._jumps[key] = Jump(apply=self._batch(funcs, "jump", (n,)),
                                    dy=self._batch(funcs, "jump_dy", (n, n)),
                                    dp=self._batch(funcs, "jump_dp", (n, Q)))
        return self._jumps[key]

    def describe(self) -> str:
        """A readable description: parameters with unit, default, range and source; states;
        equations; observables; events (what ``progression show`` prints)."""
        import textwrap

        spec = self.spec
        lines = [textwrap.fill(f"{spec.name}: {spec.description}".strip(), 100),
                 f"time unit: {spec.time_unit}", ""]
        lines.append(f"States ({len(spec.states)}):")
        for s in spec.states:
            lines.append(f"  {s.name:<12} [{s.unit}] initial {s.initial}  {s.description}")
        lines.append("")
        lines.append(f"Parameters ({len(spec.parameters)}):")
        lines.append(f"  {'name':<12} {'default':>10} {'range':>21}  {'unit':<22} meaning; source")
        for p in spec.parameters:
            rng = f"{p.bounds[0]:g} - {p.bounds[1]:g}"
            lines.append(f"  {p.name:<12} {p.value:>10g} {rng:>21}  {p.unit:<22} "
                         f"{p.description}; {p.source}")
        if spec.covariates:
            lines.append("")
            lines.append(f"Covariates ({len(spec.covariates)}, given per subject):")
            for c in spec.covariates:
                default = "required" if c.value is None else f"default {c.value:g}"
                lines.append(f"  {c.name:<12} [{c.unit}] {c.interpolation}, {default}  "
                             f"{c.description}")
        if spec.expressions:
            lines.append("")
            lines.append("Expressions:")
            lines += [f"  {n} = {text}" for n, text in spec.expressions]
        lines.append("")
        lines.append("Equations:")
        lines += [f"  d{n}/dt = {text}" for n, text in spec.equations]
        if spec.observables:
            lines.append("")
            lines.append("Observables:")
            for o in spec.observables:
                lines.append(f"  {o.name} [{o.unit}] = {o.expression}  {o.description}")
        if spec.events:
            lines.append("")
            lines.append("Events:")
            for e in spec.events:
                kind = "terminal" if e.terminal else "recorded"
                lines.append(f"  {e.name}: {e.condition} crosses 0 ({e.direction}, {kind})  "
                             f"{e.description}")
        return "\n".join(lines)

    def __reduce__(self):
        return _restore, (self.spec, self.backend)

    def __repr__(self) -> str:
        return (f"CompiledModel({self.name!r}, states={len(self.state_names)}, "
                f"parameters={len(self.parameter_names)}, backend={self.backend!r})")

