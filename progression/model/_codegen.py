"""Generate vectorised numpy functions from sympy expressions.

Each generated function takes ``(t, y, p)`` with ``y`` shaped ``(n_states, n_subjects)`` and
``p`` shaped ``(n_parameters, n_subjects)`` and fills an output array whose last axis is the
subject axis. Common subexpressions are computed once (sympy's ``cse``). The source is built
from sympy trees whose symbols were renamed to ``y[i]``/``p[j]`` slots, so no text from a model
file reaches the generated code.
"""

from __future__ import annotations

import numpy as np

from ._expressions import NUMPY_IMPLEMENTATIONS

__all__ = ["generate", "generate_source", "load_source", "prepare"]

_PRINTER = None


def _printer():
    """The numpy printer (built on first use: sympy is imported only to compile)."""
    global _PRINTER
    if _PRINTER is not None:
        return _PRINTER
    import sympy as sp
    from sympy.printing.numpy import NumPyPrinter

    class _Printer(NumPyPrinter):
        """numpy printer with elementwise min/max/where that broadcast scalars against arrays."""

        def __init__(self):
            super().__init__({"allow_unknown_functions": True, "fully_qualified_modules": True})

        def _nested(self, func, args):
            text = self._print(args[0])
            for a in args[1:]:
                text = f"numpy.{func}({text}, {self._print(a)})"
            return text

        def _print_Max(self, expr):
            return self._nested("maximum", expr.args)

        def _print_Min(self, expr):
            return self._nested("minimum", expr.args)

        def _print_Heaviside(self, expr):
            return f"numpy.heaviside({self._print(expr.args[0])}, 0.5)"

        def _print_erfc(self, expr):
            # elementwise (scipy.special.erfc, in the generated module's namespace); the
            # numba printer prints math.erfc instead
            return f"erfc({self._print(expr.args[0])})"

        def _print_Piecewise(self, expr):
            *branches, last = expr.args
            text = self._print(last.expr) if last.cond == sp.true else "numpy.nan"
            if last.cond != sp.true:
                branches = [*branches, last]
            for value, cond in reversed(branches):
                text = f"numpy.where({self._print(cond)}, {self._print(value)}, {text})"
            return text

    _PRINTER = _Printer
    return _PRINTER


def prepare(exprs, t, y, p):
    """The expressions over slot symbols, reduced by common-subexpression elimination.

    Shared by the numpy and the numba code generators, so both evaluate the very same
    expressions in the same order.

    Parameters
    ----------
    exprs : sequence of sympy.Expr
        Flattened expressions.
    t, y, p : sympy.Symbol, list of sympy.Symbol
        Time, state and parameter symbols.

    Returns
    -------
    nonzero : list of int
        Flat indices of the expressions that are not identically zero.
    replacements : list of (sympy.Symbol, sympy.Expr)
        Common subexpressions ``_c0, _c1, ...`` in evaluation order.
    reduced : list of sympy.Expr
        The non-zero expressions in terms of the slots ``_t, _y<i>, _p<j>`` and ``_c<k>``.
    used : set of sympy.Symbol
        The slot symbols the code reads.
    """
    import sympy as sp

    slots = {t: sp.Symbol("_t")}
    slots.update({s: sp.Symbol(f"_y{i}") for i, s in enumerate(y)})
    slots.update({s: sp.Symbol(f"_p{j}") for j, s in enumerate(p)})
    flat = [sp.sympify(e).xreplace(slots) for e in exprs]
    nonzero = [(k, e) for k, e in enumerate(flat) if e != 0]
    replacements, reduced = sp.cse([e for _, e in nonzero], symbols=sp.numbered_symbols("_c"),
                                   optimizations=None)
    used = set().union(*(e.free_symbols for e in reduced), *(v.free_symbols for _, v in
                                                             replacements))
    return [k for k, _ in nonzero], replacements, reduced, used


def generate_source(name: str, exprs, shape: tuple, t, y, p, *, subjects_from: str = "y",
                    prepared=None) -> str:
    """The source of a vectorised function evaluating an array of expressions.

    Parameters
    ----------
    name : str
        Function name (for tracebacks and the kept source).
    exprs : sequence of sympy.Expr
        Flattened expressions, ``prod(shape)`` of them, in C order.
    shape : tuple of int
        Leading output shape; the subject axis is appended.
    t, y, p : sympy.Symbol, list of sympy.Symbol
        Time, state and parameter symbols.
    subjects_from : {"y", "p"}
        Which argument carries the subject axis (``"p"`` for initial values).
    prepared : tuple, optional
        :func:`prepare`'s result for these arguments (computed when not given).

    Returns
    -------
    str
        Python source defining ``name(t, y, p) -> ndarray`` of shape ``shape + (n_subjects,)``;
        entries whose expression is identically zero are left zero without being computed.
    """
    import sympy as sp

    nonzero, replacements, reduced, used = prepared or prepare(exprs, t, y, p)
    printer = _printer()()
    lines = [f"def {name}(t, y, p):"]
    lines.append(f"    _n = {subjects_from}.shape[-1]")
    lines.append("    _t = t")
    lines += [f"    _y{i} = y[{i}]" for i in range(len(y)) if sp.Symbol(f"_y{i}") in used]
    lines += [f"    _p{j} = p[{j}]" for j in range(len(p)) if sp.Symbol(f"_p{j}") in used]
    for sym, value in replacements:
        lines.append(f"    {sym} = {printer.doprint(value)}")
    size = int(np.prod(shape)) if shape else 1
    lines.append(f"    _out = numpy.zeros(({size}, _n))")
    for k, e in zip(nonzero, reduced, strict=True):
        lines.append(f"    _out[{k}] = {printer.doprint(e)}")
    lines.append(f"    return _out.reshape({tuple(shape)!r} + (_n,))")
    return "\n".join(lines) + "\n"


def load_source(name: str, source: str):
    """The function ``name`` defined by generated ``source`` (no sympy needed).

    Raises whatever :func:`compile` raises on broken source, and KeyError if the source does
    not define ``name``; callers reading a disk cache treat both as a miss.
    """
    namespace = {"numpy": np, **NUMPY_IMPLEMENTATIONS}
    exec(compile(source, f"<progression generated {name}>", "exec"), namespace)  # noqa: S102
    func = namespace[name]
    if not callable(func):
        raise KeyError(name)
    return func


def generate(name: str, exprs, shape: tuple, t, y, p, *, subjects_from: str = "y"):
    """Build a vectorised function evaluating an array of expressions.

    See :func:`generate_source` for the parameters. Returns the function and its source.
    """
    source = generate_source(name, exprs, shape, t, y, p, subjects_from=subjects_from)
    return load_source(name, source), source
