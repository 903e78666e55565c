"""Generate numba code from the same sympy expressions as the numpy code generator.

For each model function (``rhs``, ``jac``, ...) one generated module defines two compiled
functions from the very expressions, after the very common-subexpression elimination
(:func:`._codegen.prepare`), that the numpy code evaluates:

``name(t, y, p, out)``
    The per-subject kernel of the kernel contract (:mod:`progression.model._kernels`;
    :class:`._kernels.ModelKernels`): ``t`` a float, ``y`` ``(n,)``, ``p`` ``(Q,)``, ``out``
    the function's output shape for one subject, every entry overwritten, nothing allocated.
``_batch_name(t, ts, y, ys, p, ps, out)``
    A loop over subjects in compiled code: ``t`` ``(M,)``, ``y`` ``(n, M)``, ``p`` ``(Q, M)``,
    ``out`` ``(size, M)`` zero-filled by the caller (only non-zero entries are written);
    ``ts, ys, ps`` are 1 for an argument with a column per subject and 0 for one shared by all
    (broadcasting without copies). :class:`._kernels.BatchFunction` wraps it into the numpy
    function's signature.

The functions are compiled lazily by numba on their first call. A module written to a file
(:func:`load_module` with a path) is compiled with ``cache=True``, so numba keeps the machine
code beside it and later processes load it instead of compiling; a module without a file
(disk cache off) is executed from its source and compiled in every process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np

from ._cache import write_atomic
from ._codegen import _printer, prepare
from ._expressions import NUMBA_HELPERS

__all__ = ["GENERATOR", "function_source", "fused_source", "load_module", "module_source"]

#: Name of this generator; part of the disk-cache key, change it whenever the code changes.
GENERATOR = "numba-cse-5"

_NUMBA_PRINTER = None

#: Helpers of the shared exponential (see :func:`_share_exponentials`); each equals the
#: helper it replaces: ``_softplus_e(x, exp(-|x|))`` is ``softplus(x)`` to the bit, and
#: ``_sigmoid_e(x, exp(-|x|))`` is ``sigmoid(x)`` to rounding (1 / (1 + e) instead of
#: 0.5 (1 + tanh(x / 2)); the numpy code keeps the tanh form).
SHARED_HELPERS = '''
@numba.njit(**_OPTIONS)
def _softplus_e(x, e):
    # softplus(x) = max(x, 0) + log(1 + exp(-|x|)), e = exp(-|x|) computed once
    if x > 0.0:
        return x + math.log1p(e)
    if x <= 0.0:
        return math.log1p(e)
    return x + 0.0


@numba.njit(**_OPTIONS)
def _sigmoid_e(x, e):
    # 1 / (1 + exp(-x)) from e = exp(-|x|), overflow-free on both sides
    if x >= 0.0:
        return 1.0 / (1.0 + e)
    if x < 0.0:
        return e / (1.0 + e)
    return x + 0.0
'''


def _numba_printer():
    """The numpy printer with the constructs numba cannot take on scalars replaced."""
    global _NUMBA_PRINTER
    if _NUMBA_PRINTER is not None:
        return _NUMBA_PRINTER
    import sympy as sp

    base = _printer()
    operators = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

    class _Printer(base):
        """Scalar code: helper calls for Max/Min/Heaviside, conditional expressions for
        Piecewise, plain comparisons (numpy's ``where``/``greater`` work on arrays)."""

        def _nested(self, func, args):
            helper = {"maximum": "_maximum", "minimum": "_minimum"}[func]
            text = self._print(args[0])
            for a in args[1:]:
                text = f"{helper}({text}, {self._print(a)})"
            return text

        def _print_Heaviside(self, expr):
            return f"_heaviside({self._print(expr.args[0])})"

        def _print_erfc(self, expr):
            return f"math.erfc({self._print(expr.args[0])})"

        def _print_expm1(self, expr):
            return f"math.expm1({self._print(expr.args[0])})"

        def _print_Function(self, expr):
            name = type(expr).__name__
            if name == "_expnegabs":
                return f"math.exp(-abs({self._print(expr.args[0])}))"
            if name in ("_softplus_e", "_sigmoid_e"):
                return f"{name}({', '.join(self._print(a) for a in expr.args)})"
            return super()._print_Function(expr)

        def _print_Pow(self, expr, rational=False):
            # a run-time exponent (a parameter, an expression): the _pow helper's fast paths
            # (n = 2, 1, 1/2, -1); a numeric one stays ``**``, which LLVM turns into products,
            # a division or sqrt itself
            if expr.exp.is_Number:
                return super()._print_Pow(expr, rational=rational)
            return f"_pow({self._print(expr.base)}, {self._print(expr.exp)})"

        def _print_Integer(self, expr):
            # numba types integer literals as int64: larger ones as the float Python (and the
            # numpy code) would turn them into
            value = int(expr)
            if abs(value) < 2**62:
                return str(value)
            return f"({float(value)!r})"

        def _print_Rational(self, expr):
            # the value Python's int / int gives the numpy code: correctly rounded, and free
            # of numba's int64 range
            return f"({float(expr.p) if expr.q == 1 else expr.p / expr.q!r})"

        def _print_Piecewise(self, expr):
            *branches, last = expr.args
            text = f"({self._print(last.expr)} + 0.0)" if last.cond == sp.true else "numpy.nan"
            if last.cond != sp.true:
                branches = [*branches, last]
            for value, cond in reversed(branches):
                text = f"(({self._print(value)} + 0.0) if {self._print(cond)} else {text})"
            return text

        def _print_Relational(self, expr):
            op = operators[expr.rel_op]
            return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

        def _print_And(self, expr):
            return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

        def _print_Or(self, expr):
            return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

        def _print_Not(self, expr):
            return f"(not {self._print(expr.args[0])})"

        def _print_BooleanTrue(self, expr):
            return "True"

        def _print_BooleanFalse(self, expr):
            return "False"

    _NUMBA_PRINTER = _Printer
    return _NUMBA_PRINTER


def _share_exponentials(replacements, reduced):
    """Evaluate ``exp(-|u|)`` once where ``softplus(u)`` and ``sigmoid(u)`` both occur.

    A smoothed threshold (``softplus`` in an observable, its derivative ``sigmoid`` in a
    Jacobian or a hazard's slope term) costs an exponential and a ``log1p`` for the first and
    a ``tanh`` for the second; from one ``e = exp(-|u|)`` both follow (``max(u, 0) +
    log1p(e)`` and ``1 / (1 + e)`` or ``e / (1 + e)``), one transcendental call fewer per
    pair, in the right-hand side evaluated at every stage of every step.

    Parameters
    ----------
    replacements : list of (sympy.Symbol, sympy.Expr)
    reduced : list of sympy.Expr
        :func:`._codegen.prepare`'s common subexpressions and outputs.

    Returns
    -------
    (replacements, reduced)
        With ``_e<k> = exp(-|u|)`` inserted before the first line using ``u``'s pair, and the
        pair's calls rewritten to ``_softplus_e(u, _e<k>)``, ``_sigmoid_e(u, _e<k>)``.
    """
    import sympy as sp

    def calls(expr, name):
        return {f.args[0] for f in expr.atoms(sp.Function) if type(f).__name__ == name}

    exprs = [v for _, v in replacements] + list(reduced)
    soft = set().union(*(calls(e, "softplus") for e in exprs)) if exprs else set()
    sig = set().union(*(calls(e, "sigmoid") for e in exprs)) if exprs else set()
    shared = sorted(soft & sig, key=sp.default_sort_key)
    if not shared:
        return replacements, reduced
    expnegabs = sp.Function("_expnegabs")
    soft_e, sig_e = sp.Function("_softplus_e"), sp.Function("_sigmoid_e")
    symbols = {u: sp.Symbol(f"_e{k}") for k, u in enumerate(shared)}

    def rewrite(expr):
        mapping = {}
        for f in expr.atoms(sp.Function):
            name = type(f).__name__
            if name in ("softplus", "sigmoid") and f.args[0] in symbols:
                u = f.args[0]
                mapping[f] = (soft_e if name == "softplus" else sig_e)(u, symbols[u])
        return expr.xreplace(mapping) if mapping else expr

    out, placed = [], set()
    for sym, value in replacements:
        for u in sorted(calls(value, "softplus") | calls(value, "sigmoid"),
                        key=sp.default_sort_key):
            if u in symbols and u not in placed:
                out.append((symbols[u], expnegabs(u)))
                placed.add(u)
        out.append((sym, rewrite(value)))
    for u in shared:  # used in the outputs only
        if u not in placed:
            out.append((symbols[u], expnegabs(u)))
    return out, [rewrite(e) for e in reduced]


def _index(k: int, shape: tuple) -> str:
    """The kernel's ``out`` index of flat entry ``k`` (C order)."""
    if len(shape) <= 1:
        return str(k)
    return ", ".join(str(int(i)) for i in np.unravel_index(k, shape))


def function_source(name: str, exprs, shape: tuple, t, y, p, *, prepared=None) -> str:
    """The source of the kernel ``name`` and the batch loop ``_batch_name``.

    Parameters
    ----------
    name : str
    exprs : sequence of sympy.Expr
        Flattened expressions, ``prod(shape)`` of them, in C order.
    shape : tuple of int
        Output shape of one subject (the kernel's ``out``).
    t, y, p : sympy.Symbol, list of sympy.Symbol
        Time, state and parameter symbols.
    prepared : tuple, optional
        :func:`._codegen.prepare`'s result, shared with the numpy code of the same function.

    Returns
    -------
    str
        Two decorated function definitions (module-level code of :func:`module_source`).
    """
    import sympy as sp

    nonzero, replacements, reduced, used = prepared or prepare(exprs, t, y, p)
    replacements, reduced = _share_exponentials(replacements, reduced)
    printer = _numba_printer()()
    size = int(np.prod(shape)) if shape else 1
    ys = [i for i in range(len(y)) if sp.Symbol(f"_y{i}") in used]
    ps = [j for j in range(len(p)) if sp.Symbol(f"_p{j}") in used]
    body = [f"{sym} = {printer.doprint(value)}" for sym, value in replacements]
    values = [printer.doprint(e) for e in reduced]

    kernel = ["@numba.njit(**_OPTIONS)", f"def {name}(t, y, p, out):"]
    code = ["_t = t"]
    code += [f"_y{i} = y[{i}]" for i in ys]
    code += [f"_p{j} = p[{j}]" for j in ps]
    code += body
    if len(nonzero) < size:  # entries identically zero: the kernel overwrites every entry
        code.append("out[" + ", ".join(":" for _ in range(max(len(shape), 1))) + "] = 0.0")
    code += [f"out[{_index(k, shape)}] = {v}" for k, v in zip(nonzero, values, strict=True)]
    kernel += ["    " + line for line in code]

    batch = ["@numba.njit(**_OPTIONS)", f"def _batch_{name}(t, ts, y, ys, p, ps, out):"]
    loop = ["_t = t[_i * ts]"]
    loop += [f"_y{i} = y[{i}, _i * ys]" for i in ys]
    loop += [f"_p{j} = p[{j}, _i * ps]" for j in ps]
    loop += body
    loop += [f"out[{k}, _i] = {v}" for k, v in zip(nonzero, values, strict=True)]
    if nonzero:
        batch.append("    for _i in range(out.shape[1]):")
        batch += ["        " + line for line in loop]
    else:
        batch.append("    return")
    return "\n".join(kernel) + "\n\n\n" + "\n".join(batch) + "\n"


def fused_source(name: str, parts, t, y, p) -> str:
    """The source of one kernel evaluating several functions from one common-subexpression
    elimination: ``name(t, y, p, out0, out1, ...)``.

    Used for ``rhs_jac`` (the right-hand side and its Jacobian at the same point, which a
    Rosenbrock method needs after every accepted step): the Jacobian's entries share most of
    their subexpressions (and every transcendental call) with the right-hand side, so one call
    costs little more than the Jacobian alone.

    Parameters
    ----------
    name : str
    parts : sequence of (sequence of sympy.Expr, tuple of int)
        Each output's flattened expressions (C order) and its shape for one subject.
    t, y, p : sympy.Symbol, list of sympy.Symbol

    Returns
    -------
    str
        One decorated function definition (no batch loop); every entry of every output is
        overwritten.
    """
    import sympy as sp

    flat, owner = [], []
    for o, (exprs, shape) in enumerate(parts):
        exprs = list(exprs)
        size = int(np.prod(shape)) if shape else 1
        if len(exprs) != size:
            raise ValueError(f"{name}: output {o} has {len(exprs)} expressions for shape "
                             f"{shape}")
        flat += exprs
        owner += [(o, k) for k in range(size)]
    nonzero, replacements, reduced, used = prepare(flat, t, y, p)
    replacements, reduced = _share_exponentials(replacements, reduced)
    printer = _numba_printer()()
    ys = [i for i in range(len(y)) if sp.Symbol(f"_y{i}") in used]
    ps = [j for j in range(len(p)) if sp.Symbol(f"_p{j}") in used]
    outs = [f"out{o}" for o in range(len(parts))]
    code = ["_t = t"]
    code += [f"_y{i} = y[{i}]" for i in ys]
    code += [f"_p{j} = p[{j}]" for j in ps]
    code += [f"{sym} = {printer.doprint(value)}" for sym, value in replacements]
    written = {o: 0 for o in range(len(parts))}
    for k in nonzero:
        written[owner[k][0]] += 1
    for o, (_, shape) in enumerate(parts):
        size = int(np.prod(shape)) if shape else 1
        if written[o] < size:
            code.append(f"{outs[o]}[" + ", ".join(":" for _ in range(max(len(shape), 1)))
                        + "] = 0.0")
    for k, e in zip(nonzero, reduced, strict=True):
        o, j = owner[k]
        code.append(f"{outs[o]}[{_index(j, parts[o][1])}] = {printer.doprint(e)}")
    lines = ["@numba.njit(**_OPTIONS)", f"def {name}(t, y, p, {', '.join(outs)}):"]
    lines += ["    " + line for line in code]
    return "\n".join(lines) + "\n"


def module_source(functions: dict[str, str]) -> str:
    """A whole module: imports, helpers and the given :func:`function_source` texts.

    ``_CACHE`` at its top is True; :func:`load_module` turns it off for a module without a file.
    """
    head = ("# Generated by progression (numba backend) from a model's sympy expressions.\n"
            "# Do not edit: the disk cache rewrites this file when it differs from its record.\n"
            "import math\n\nimport numba\nimport numpy\n\n"
            "_CACHE = True\n"
            "_OPTIONS = {'cache': _CACHE, 'error_model': 'numpy', 'nogil': True}\n")
    parts = [head, NUMBA_HELPERS, SHARED_HELPERS, *functions.values()]
    return "\n\n".join(p.strip("\n") for p in parts) + "\n"


_SAFE_CACHE = None


def _safe_cache_class():
    """numba's function cache, made to treat an unreadable cache file as a miss.

    numba raises on a damaged index or data file (a truncated pickle) instead of compiling
    afresh; this subclass removes the function's index and reports a miss, so the function is
    compiled and its cache written anew (the cache never makes a model fail to load).
    """
    global _SAFE_CACHE
    if _SAFE_CACHE is None:
        from numba.core.caching import FunctionCache

        class _SafeFunctionCache(FunctionCache):
            def load_overload(self, sig, target_context):
                try:
                    return super().load_overload(sig, target_context)
                except Exception:  # noqa: BLE001 - any damage: compile afresh
                    try:
                        os.unlink(self._cache_file._index_path)
                    except (OSError, AttributeError):
                        pass
                    return None

        _SAFE_CACHE = _SafeFunctionCache
    return _SAFE_CACHE


def _guard_caches(module) -> None:
    """Give every cached dispatcher of ``module`` the damage-tolerant cache."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.dispatcher import Dispatcher

        safe = _safe_cache_class()
    except ImportError:  # pragma: no cover - numba's layout changed: keep its own cache
        return
    for value in vars(module).values():
        cache = getattr(value, "_cache", None)
        if isinstance(value, Dispatcher) and type(cache) is FunctionCache:
            value._cache = safe(value.py_func)


def _owned(path: Path) -> bool:
    """Whether ``path`` belongs to the user running this process (True where unknowable)."""
    if not hasattr(os, "getuid"):
        return True
    try:
        return path.stat().st_uid == os.getuid()
    except OSError:
        return False


def _own_folders(folder: Path) -> bool:
    """Whether the entry folder and numba's ``__pycache__`` in it (if any) are the user's own:
    numba executes the machine code it finds there, so nobody else's is used (like the
    entries, see :mod:`._cache`)."""
    if not folder.exists():
        return True  # created by this process when the module is written
    pycache = folder / "__pycache__"
    return _owned(folder) and (not pycache.exists() or _owned(pycache))


def load_module(source: str, name: str, path: Path | None = None) -> types.ModuleType:
    """Execute a generated module, from a file when ``path`` is given.

    Parameters
    ----------
    source : str
        :func:`module_source`'s text (the checksummed record in the disk cache).
    name : str
        Module name (unique per model and entry).
    path : path, optional
        Where the module lives in the model's cache folder. The file is (re)written atomically
        when it is missing or differs from ``source`` (a damaged or foreign file is replaced),
        and left untouched otherwise, so numba's cache of it (keyed by the file's time stamp)
        stays valid. When the file cannot be written or imported, when the folder or its
        ``__pycache__`` belongs to another user, or without ``path``, the source is executed
        without numba's cache. A damaged file of numba's cache is a miss
        (see :func:`_safe_cache_class`).

    Returns
    -------
    module
    """
    if path is not None:
        path = Path(path)
        if not _own_folders(path.parent):
            path = None
    if path is not None:
        try:
            current = path.read_text(encoding="utf-8") if _owned(path) else None
        except (OSError, ValueError):
            current = None
        if current != source and not write_atomic(path, source):
            path = None
    if path is not None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001 - e.g. numba finds no place for its cache: no cache
            sys.modules.pop(name, None)
        else:
            _guard_caches(module)
            return module
    module = types.ModuleType(name)
    text = source.replace("\n_CACHE = True\n", "\n_CACHE = False\n", 1)
    exec(compile(text, f"<progression generated {name}>", "exec"), module.__dict__)  # noqa: S102
    return module
