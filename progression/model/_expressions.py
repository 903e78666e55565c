"""Safe parsing of model expressions into sympy.

A model file's expressions are parsed with Python's :mod:`ast` and walked against a whitelist:
numbers, names, ``+ - * / **``, unary minus, comparisons (inside a condition) and a fixed set
of functions. Anything else is refused with a :class:`~progression.errors.ModelError` naming the
place and the offending token. Nothing from a model file is ever executed: the accepted tree is
translated node by node into a sympy expression.
"""

from __future__ import annotations

import ast

import numpy as np
import sympy as sp

from ..errors import ModelError, did_you_mean

__all__ = ["FUNCTIONS", "RESERVED", "parse_expression", "check_name"]


class softplus(sp.Function):
    """``softplus(x) = log(1 + exp(x))``, evaluated without overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)


class sigmoid(sp.Function):
    """``sigmoid(x) = 1 / (1 + exp(-x))``, evaluated without overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)


class hill(sp.Function):
    """``hill(x, K, n) = pos(x)**n / (K**n + pos(x)**n)`` with derivatives safe at ``x = 0``.

    Written as its own function because sympy's derivative of ``max(x, 0)**n`` comes out as
    ``n * max(x, 0)**n / max(x, 0)``, which is 0/0 where the argument is zero (e.g. no DAMPs
    at onset).
    """

    nargs = 3

    def fdiff(self, argindex=1):
        x, K, n = self.args
        xp = sp.Max(x, 0)
        denominator = (K**n + xp**n) ** 2
        if argindex == 1:
            return n * K**n * xp ** (n - 1) / denominator * sp.Heaviside(x)
        if argindex == 2:
            return -n * K ** (n - 1) * xp**n / denominator
        return sp.Piecewise((xp**n * K**n * (sp.log(sp.Max(x, 1e-300)) - sp.log(K)) / denominator,
                             x > 0),
                            (0, True))

    def _eval_evalf(self, prec):
        x, K, n = self.args
        xp = sp.Max(x, 0)
        return (xp**n / (K**n + xp**n))._eval_evalf(prec)


def _numpy_hill(x, K, n):
    xn = np.maximum(x, 0.0) ** n
    return xn / (K**n + xn)


def _numpy_softplus(x):
    return np.logaddexp(0.0, x)


def _numpy_sigmoid(x):
    # 0.5 * (1 + tanh(x/2)) is the overflow-free form of 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


#: Implementations of the custom sympy functions for generated numpy code.
NUMPY_IMPLEMENTATIONS = {"softplus": _numpy_softplus, "sigmoid": _numpy_sigmoid,
                         "hill": _numpy_hill}


def _pos(x):
    return sp.Max(x, 0)


def _softplus(x, w=None):
    if w is None:
        return softplus(x)
    return w * softplus(x / w)


def _where(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


def _clip(x, lo, hi):
    return sp.Min(sp.Max(x, lo), hi)


#: name -> (sympy builder, minimum arguments, maximum arguments, signature for messages)
FUNCTIONS: dict[str, tuple] = {
    "exp": (sp.exp, 1, 1, "exp(x)"),
    "log": (sp.log, 1, 1, "log(x)"),
    "sqrt": (sp.sqrt, 1, 1, "sqrt(x)"),
    "abs": (sp.Abs, 1, 1, "abs(x)"),
    "tanh": (sp.tanh, 1, 1, "tanh(x)"),
    "min": (sp.Min, 2, 2, "min(a, b)"),
    "max": (sp.Max, 2, 2, "max(a, b)"),
    "pos": (_pos, 1, 1, "pos(x)"),
    "hill": (hill, 3, 3, "hill(x, K, n)"),
    "softplus": (_softplus, 1, 2, "softplus(x[, w])"),
    "sigmoid": (sigmoid, 1, 1, "sigmoid(x)"),
    "where": (_where, 3, 3, "where(condition, a, b)"),
    "clip": (_clip, 3, 3, "clip(x, lo, hi)"),
}

#: Names a model may not define: the time symbol and the function names.
RESERVED = frozenset({"t", *FUNCTIONS})

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_COMPARE = {
    ast.Lt: sp.StrictLessThan,
    ast.LtE: sp.LessThan,
    ast.Gt: sp.StrictGreaterThan,
    ast.GtE: sp.GreaterThan,
}


def check_name(name: str, where: str) -> None:
    """Refuse a name a model may not define (not an identifier, reserved, or dunder)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ModelError(
            f"{where}: expected a name made of letters, digits and '_', found {name!r}")
    if name.startswith("__"):
        raise ModelError(f"{where}: names starting with '__' are not allowed, found {name!r}")
    if name in RESERVED:
        raise ModelError(
            f"{where}: {name!r} is reserved (the time 't' or a function name); choose another name"
        )


def _suggest(name: str, known) -> str:
    return did_you_mean(name, known)


class _Translator:
    """Walk an accepted AST and build the sympy expression, refusing everything else."""

    def __init__(self, symbols: dict[str, sp.Symbol], where: str, text: str):
        self.symbols = symbols
        self.where = where
        self.text = text

    def fail(self, node, what: str):
        col = getattr(node, "col_offset", None)
        at = f" at column {col + 1}" if col is not None else ""
        raise ModelError(f"{self.where}: {what}{at} in {self.text!r}")

    def visit(self, node, *, condition: bool = False):
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                self.fail(node, f"only numbers are allowed as constants, found {node.value!r}")
            return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            op = _BINARY.get(type(node.op))
            if op is None:
                self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
            return op(self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.visit(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.visit(node.operand)
            self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Compare):
            if not condition:
                self.fail(node, "a comparison is only allowed as the condition of where()")
            if len(node.ops) != 1:
                self.fail(node, "chained comparisons are not allowed; use one comparison")
            rel = _COMPARE.get(type(node.ops[0]))
            if rel is None:
                self.fail(node, f"comparison '{type(node.ops[0]).__name__}' is not allowed")
            return rel(self.visit(node.left), self.visit(node.comparators[0]))
        if isinstance(node, ast.Attribute):
            self.fail(node, f"attribute access '.{node.attr}' is not allowed")
        if isinstance(node, ast.Subscript):
            self.fail(node, "subscripts '[...]' are not allowed")
        if isinstance(node, ast.Lambda):
            self.fail(node, "lambda is not allowed")
        self.fail(node, f"'{type(node).__name__}' is not allowed in an expression")

    def name(self, node: ast.Name):
        name = node.id
        if name.startswith("__"):
            self.fail(node, f"dunder name {name!r} is not allowed")
        if name in FUNCTIONS:
            self.fail(node, f"function {name!r} used without calling it")
        if name not in self.symbols:
            self.fail(node, f"unknown name {name!r}{_suggest(name, self.symbols)}")
        return self.symbols[name]

    def call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute | ast.Lambda | ast.Subscript):
                self.visit(node.func)  # raises the specific message for that token
            self.fail(node, "only calls of the whitelisted functions by name are allowed")
        fname = node.func.id
        if fname.startswith("__"):
            self.fail(node, f"dunder name {fname!r} is not allowed")
        if fname not in FUNCTIONS:
            self.fail(
                node,
                f"function {fname!r} is not allowed (allowed: {', '.join(sorted(FUNCTIONS))})"
                f"{_suggest(fname, FUNCTIONS)}",
            )
        if node.keywords:
            self.fail(node, f"keyword arguments are not allowed in {fname}()")
        builder, lo, hi, signature = FUNCTIONS[fname]
        if not lo <= len(node.args) <= hi:
            self.fail(node, f"{fname}() takes {signature}, found {len(node.args)} argument(s)")
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"starred arguments are not allowed in {fname}()")
        args = [self.visit(a, condition=(fname == "where" and i == 0)) for i, a in
                enumerate(node.args)]
        if fname == "where" and not isinstance(args[0], sp.core.relational.Relational):
            self.fail(node, "where() needs a comparison as its first argument, "
                            "e.g. where(x > 0, a, b)")
        return builder(*args)


def parse_expression(text, symbols: dict[str, sp.Symbol], where: str) -> sp.Expr:
    """Parse one expression string into a sympy expression over known symbols.

    Parameters
    ----------
    text : str or float
        The expression as written in the model file (a bare number is accepted).
    symbols : dict of str to sympy.Symbol
        Every name the expression may use.
    where : str
        The place for error messages, e.g. ``"als.toml, [equations] N"``.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ModelError
        For a syntax error, a token outside the whitelist, or an unknown name.
    """
    if isinstance(text, bool):
        raise ModelError(f"{where}: expected an expression or a number, found {text!r}")
    if isinstance(text, int | float):
        return sp.Float(text)
    if not isinstance(text, str):
        raise ModelError(f"{where}: expected an expression string, found {type(text).__name__}")
    if not text.strip():
        raise ModelError(f"{where}: the expression is empty")
    if len(text) > 10_000:
        raise ModelError(f"{where}: the expression is longer than 10,000 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _Translator(symbols, where, text).visit(tree)
    except SyntaxError as exc:
        raise ModelError(f"{where}: not a valid expression ({exc.msg}) in {text!r}") from None
    except (RecursionError, MemoryError):
        raise ModelError(f"{where}: the expression is nested too deeply") from None
