"""Safe parsing of model expressions: a whitelist over Python's :mod:`ast`, with bounds.

A model file's expressions are parsed with :mod:`ast` and walked against a whitelist: numbers,
names, ``+ - * / **``, unary minus, comparisons (inside a condition) and a fixed set of
functions. Anything else is refused with a :class:`~progression.errors.ModelError` naming the
place and the offending token. Nothing from a model file is ever executed.

Checking needs no sympy: :func:`check_expression` validates the tree, folds constant
subexpressions with bounded Python arithmetic and returns the names used; only
:func:`parse_expression` (compilation) translates an accepted tree into sympy, in
:mod:`._symbolic`. The bounds exist because sympy evaluates constant arithmetic exactly and
eagerly: ``10**10**10`` would run for hours, ``9**9**7`` exhausts memory, ``(2*x)**10**300``
distributes the power onto the 2. Every constant must fit a float (what the generated numpy
code computes with anyway; a power's size is estimated from logarithms before it is computed),
and these sizes are refused before sympy sees anything: :data:`MAX_LENGTH` characters,
:data:`MAX_DEPTH` levels of nesting, :data:`MAX_NODES` terms, :data:`MAX_FACTORS` factors in
one product, and a total constant exponent of :data:`MAX_EXPONENT` on a non-constant base.
"""

from __future__ import annotations

import ast
import math
import sys
from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ModelError, did_you_mean

__all__ = [
    "FUNCTIONS",
    "RESERVED",
    "MAX_LENGTH",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_FACTORS",
    "MAX_EXPONENT",
    "Checked",
    "check_expression",
    "check_name",
    "parse_expression",
]

#: Longest expression text, in characters.
MAX_LENGTH = 10_000
#: Deepest nesting of operations; a chain of the same operator (``a + b + c``) counts once.
MAX_DEPTH = 50
#: Most names, numbers, operations and calls in one expression (a sum of 2,500 terms).
MAX_NODES = 5_000
#: Most factors in one product (symbolic derivatives of a product grow with its square).
MAX_FACTORS = 100
#: Largest total constant exponent applied to a non-constant base (``(x**a)**b``: ``|a*b|``).
MAX_EXPONENT = 1_000
#: Largest magnitude of any constant, literal or folded: the largest float.
MAX_MAGNITUDE = sys.float_info.max
_LOG10_MAX = math.log10(MAX_MAGNITUDE)

#: name -> (minimum arguments, maximum arguments, signature for messages). The sympy builders
#: live in :mod:`._symbolic`; this table is what checking needs.
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "exp": (1, 1, "exp(x)"),
    "log": (1, 1, "log(x)"),
    "sqrt": (1, 1, "sqrt(x)"),
    "abs": (1, 1, "abs(x)"),
    "tanh": (1, 1, "tanh(x)"),
    "min": (2, 2, "min(a, b)"),
    "max": (2, 2, "max(a, b)"),
    "pos": (1, 1, "pos(x)"),
    "hill": (3, 3, "hill(x, K, n)"),
    "softplus": (1, 2, "softplus(x[, w])"),
    "sigmoid": (1, 1, "sigmoid(x)"),
    "where": (3, 3, "where(condition, a, b)"),
    "clip": (3, 3, "clip(x, lo, hi)"),
    # the complementary error function: the normal tail 0.5 * erfc(z / sqrt(2)) turns a
    # standard-normal per-patient draw into an Exp(1) hazard threshold ([hazards.NAME])
    "erfc": (1, 1, "erfc(x)"),
    # exp(x) - 1 without cancellation near 0 (a hazard that vanishes in health)
    "expm1": (1, 1, "expm1(x)"),
}

#: Names a model may not define: the time symbol and the function names.
RESERVED = frozenset({"t", *FUNCTIONS})


def _numpy_hill(x, K, n):
    xn = np.maximum(x, 0.0) ** n
    return xn / (K**n + xn)


def _numpy_softplus(x):
    return np.logaddexp(0.0, x)


def _numpy_sigmoid(x):
    # 0.5 * (1 + tanh(x/2)) is the overflow-free form of 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def _numpy_erfc(x):
    # scipy is imported on first use only: reading a model file needs neither it nor sympy
    from scipy.special import erfc

    return erfc(x)


#: Implementations of the custom sympy functions for generated numpy code.
NUMPY_IMPLEMENTATIONS = {"softplus": _numpy_softplus, "sigmoid": _numpy_sigmoid,
                         "hill": _numpy_hill, "erfc": _numpy_erfc}

#: Scalar implementations of the custom functions and of the numpy functions whose scalar
#: forms differ, for generated numba code (pasted into each generated module, so a cached
#: module depends on no other file). Each reproduces its numpy counterpart: ``softplus`` is
#: numpy's ``logaddexp(0, x)`` branch for branch, ``_maximum``/``_minimum`` return NaN when
#: either argument is NaN (``numpy.maximum``), ``_heaviside`` is ``numpy.heaviside(x, 0.5)``.
NUMBA_HELPERS = '''
_LOGE2 = 0.6931471805599453


@numba.njit(**_OPTIONS)
def _maximum(a, b):
    if a != a or a >= b:
        return a + 0.0
    return b + 0.0


@numba.njit(**_OPTIONS)
def _minimum(a, b):
    if a != a or a <= b:
        return a + 0.0
    return b + 0.0


@numba.njit(**_OPTIONS)
def _heaviside(x):
    if x < 0.0:
        return 0.0
    if x > 0.0:
        return 1.0
    if x == 0.0:
        return 0.5
    return x + 0.0


@numba.njit(**_OPTIONS)
def softplus(x):
    # numpy's logaddexp(0, x): log(2) at 0, then the overflow-free branch on either side.
    if x == 0.0:
        return _LOGE2
    if x < 0.0:
        return math.log1p(math.exp(x))
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return x + 0.0


@numba.njit(**_OPTIONS)
def sigmoid(x):
    # 0.5 * (1 + tanh(x/2)) is the overflow-free form of 1 / (1 + exp(-x)).
    return 0.5 * (1.0 + math.tanh(0.5 * x))


@numba.njit(**_OPTIONS)
def _pow(x, n):
    # x ** n with a run-time exponent (a parameter): libm's pow costs ~20 ns; the exponents
    # models use most (a Hill coefficient of 2 or 1, its derivative's n - 1, a square root)
    # cost ~1 ns as a product/sqrt, equal to pow's result to rounding (x * x and 1 / x are
    # correctly rounded, pow to < 1 ulp), NaN and infinities alike (sqrt only for x > 0, where
    # pow(-0.0, 0.5) = +0.0 and pow(-inf, 0.5) = inf would differ)
    xf = x * 1.0
    if n == 2.0:
        return xf * xf
    if n == 1.0:
        return xf
    if n == 0.5 and xf > 0.0:
        return math.sqrt(xf)
    if n == -1.0:
        return 1.0 / xf
    return xf ** n


@numba.njit(**_OPTIONS)
def hill(x, K, n):
    xn = _pow(_maximum(x, 0.0), n)
    return xn / (_pow(K, n) + xn)
'''

_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div)
_OPERATORS = (*_ADDITIVE, *_MULTIPLICATIVE, ast.Pow)
_COMPARISONS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


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


@dataclass(frozen=True)
class Checked:
    """An accepted expression: its syntax tree and the names it uses.

    Attributes
    ----------
    text : str
        The expression as written (stripped).
    tree : ast.Expression
    names : frozenset of str
        Every variable name the expression refers to.
    """

    text: str
    tree: ast.Expression
    names: frozenset


def _family(op) -> tuple | None:
    if isinstance(op, _ADDITIVE):
        return _ADDITIVE
    if isinstance(op, _MULTIPLICATIVE):
        return _MULTIPLICATIVE
    return None


def chain(node: ast.BinOp) -> list[tuple[bool, ast.AST]]:
    """The operands of a chain of one operator family, left to right, without recursion.

    Returns ``(inverted, operand)`` pairs: ``inverted`` is True where the operand is subtracted
    (``+ -``) or divided by (``* /``) once the chain is written flat, so ``a - (b - c)`` gives
    ``[(False, a), (True, b), (False, c)]``. Chains of thousands of terms parse as deeply
    nested trees; walking them with a stack keeps Python's recursion limit out of the way.
    """
    family = _family(node.op)
    out: list[tuple[bool, ast.AST]] = []
    stack: list[tuple[ast.AST, bool]] = [(node, False)]
    while stack:
        current, inverted = stack.pop()
        if isinstance(current, ast.BinOp) and _family(current.op) == family:
            flips = isinstance(current.op, ast.Sub | ast.Div)
            # Right pushed first so that the left operand comes out first.
            stack.append((current.right, inverted ^ flips))
            stack.append((current.left, inverted))
        else:
            out.append((inverted, current))
    return out


def _depth_and_size(tree: ast.AST) -> tuple[int, int]:
    """Nesting depth (a chain of one operator family counts once) and node count, iteratively."""
    deepest, count = 0, 0
    stack = [(tree, 0, None)]
    while stack:
        node, depth, parent_family = stack.pop()
        # Load contexts and operator tokens are bookkeeping, not terms.
        count += not isinstance(node, ast.expr_context | ast.operator | ast.unaryop | ast.cmpop)
        family = _family(node.op) if isinstance(node, ast.BinOp) else None
        here = depth if (family is not None and family == parent_family) else depth + 1
        deepest = max(deepest, here)
        for child in ast.iter_child_nodes(node):
            stack.append((child, here, family))
    return deepest, count


class _Refusal(Exception):
    """Raised inside the walk; turned into one ModelError naming place and token."""

    def __init__(self, node, what: str):
        super().__init__(what)
        self.node = node
        self.what = what


def _magnitude_ok(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE
    return abs(value) <= MAX_MAGNITUDE


def _log10_abs(value) -> float:
    if isinstance(value, Fraction):
        return math.log10(abs(value.numerator)) - math.log10(value.denominator)
    return math.log10(abs(value))


def _is_integer(value) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, Fraction):
        return value.denominator == 1
    return math.isfinite(value) and float(value).is_integer()


@dataclass
class _Value:
    """What the walk knows of a subexpression: its value if constant, and its exponent scale."""

    const: int | Fraction | float | None = None
    scale: float = 1.0  # product of constant exponents applied to non-constant parts


class _Checker:
    """Walk a parsed tree against the whitelist, folding constants within bounds."""

    def __init__(self, names: Collection[str], text: str):
        self.known = names
        self.text = text
        self.used: set[str] = set()

    def token(self, node) -> str:
        segment = ast.get_source_segment(self.text, node) if hasattr(node, "lineno") else None
        segment = segment or self.text
        return segment if len(segment) <= 60 else segment[:57] + "..."

    def fail(self, node, what: str):
        raise _Refusal(node, what)

    def number(self, node, value, what: str):
        """Refuse a folded constant outside the float range."""
        if isinstance(value, complex):
            self.fail(node, f"{what} '{self.token(node)}' is a complex number")
        if not _magnitude_ok(value):
            self.fail(node, f"{what} '{self.token(node)}' is not a finite number within "
                            f"±{MAX_MAGNITUDE:.3g}")
        return value

    # -- the walk ------------------------------------------------------------------------------

    def visit(self, node, *, condition: bool = False) -> _Value:
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(node, f"only numbers are allowed as constants, found {value!r}")
            return _Value(self.number(node, value, "the number"))
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _OPERATORS):
                self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
            if isinstance(node.op, ast.Pow):
                return self.power(node)
            return self.chain(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub | ast.UAdd):
                inner = self.visit(node.operand)
                if inner.const is not None and isinstance(node.op, ast.USub):
                    return _Value(-inner.const)
                return inner
            self.fail(node, f"operator '{type(node.op).__name__}' is not allowed")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Compare):
            if not condition:
                self.fail(node, "a comparison is only allowed as the condition of where()")
            if len(node.ops) != 1:
                self.fail(node, "chained comparisons are not allowed; use one comparison")
            if not isinstance(node.ops[0], _COMPARISONS):
                self.fail(node, f"comparison '{type(node.ops[0]).__name__}' is not allowed")
            left, right = self.visit(node.left), self.visit(node.comparators[0])
            return _Value(None, max(left.scale, right.scale))
        if isinstance(node, ast.Attribute):
            self.fail(node, f"attribute access '.{node.attr}' is not allowed")
        if isinstance(node, ast.Subscript):
            self.fail(node, "subscripts '[...]' are not allowed")
        if isinstance(node, ast.Lambda):
            self.fail(node, "lambda is not allowed")
        self.fail(node, f"'{type(node).__name__}' is not allowed in an expression")

    def name(self, node: ast.Name) -> _Value:
        name = node.id
        if name.startswith("__"):
            self.fail(node, f"dunder name {name!r} is not allowed")
        if name in FUNCTIONS:
            self.fail(node, f"function {name!r} used without calling it")
        if name not in self.known:
            self.fail(node, f"unknown name {name!r}{did_you_mean(name, self.known)}")
        self.used.add(name)
        return _Value(None)

    def chain(self, node: ast.BinOp) -> _Value:
        operands = chain(node)
        multiplicative = isinstance(node.op, _MULTIPLICATIVE)
        if multiplicative and len(operands) > MAX_FACTORS:
            self.fail(node, f"a product of {len(operands)} factors (at most {MAX_FACTORS}: its "
                            f"derivatives grow with the square)")
        values = [(inverted, operand, self.visit(operand)) for inverted, operand in operands]
        scale = max(v.scale for _, _, v in values)
        # sympy gathers the numbers of a sum or product into one, whatever stands between them
        # (1e308 * x * 10 is 1e309 * x): fold them the same way, in the same order.
        constant = all(v.const is not None for _, _, v in values)
        total = None
        try:
            for inverted, operand, v in values:
                if v.const is None:
                    continue
                if multiplicative and inverted and v.const == 0:
                    self.fail(operand, f"division by zero: '{self.token(operand)}' is 0 "
                                       f"(as a float)")
                if total is None:
                    total = (1 / v.const if isinstance(v.const, float) else Fraction(1, v.const)
                             ) if (multiplicative and inverted) else (
                        -v.const if inverted else v.const)
                elif not multiplicative:
                    total = total - v.const if inverted else total + v.const
                elif not inverted:
                    total = total * v.const
                elif isinstance(total, int | Fraction) and isinstance(v.const, int | Fraction):
                    total = Fraction(total) / v.const
                else:
                    total = total / v.const
                if isinstance(total, Fraction) and total.denominator == 1:
                    total = total.numerator
                self.number(node, total, "the constant")
        except (OverflowError, ZeroDivisionError, ValueError):
            self.fail(node, f"the constant '{self.token(node)}' cannot be computed as a float")
        if not constant:
            return _Value(None, scale)
        return _Value(total)

    def power(self, node: ast.BinOp) -> _Value:
        base, exponent = self.visit(node.left), self.visit(node.right)
        if exponent.const is None:
            return _Value(None, max(base.scale, exponent.scale))
        e = exponent.const
        if base.const is None:
            scale = base.scale * max(1.0, abs(float(e)))
            if scale > MAX_EXPONENT:
                self.fail(node, f"the power '{self.token(node)}' raises a non-constant base to "
                                f"{scale:.3g} in total (at most {MAX_EXPONENT})")
            return _Value(None, scale)
        b = base.const
        if b == 0:
            if e < 0:
                self.fail(node, f"division by zero: '{self.token(node)}' is 0 to a negative "
                                f"power")
            return _Value(1 if e == 0 else 0)
        if b < 0 and not _is_integer(e):
            self.fail(node, f"'{self.token(node)}' is a negative number to a fractional power "
                            f"(a complex number)")
        try:
            size = float(e) * _log10_abs(b)
        except OverflowError:
            size = math.inf
        if abs(b) != 1 and abs(size) > _LOG10_MAX:
            about = f"1e{size:.0f}" if abs(size) < 1e6 else f"10**{size:.3g}"
            self.fail(node, f"the constant power '{self.token(node)}' is out of range (about "
                            f"{about}; numbers must stay within ±{MAX_MAGNITUDE:.3g})")
        try:
            if isinstance(b, int | Fraction) and _is_integer(e) and not isinstance(e, float):
                value = Fraction(b) ** int(e)
                value = value.numerator if value.denominator == 1 else value
            elif abs(b) == 1 and _is_integer(e):
                value = 1 if (b > 0 or int(e) % 2 == 0) else -1
            else:
                value = float(b) ** float(e)
        except (OverflowError, ZeroDivisionError, ValueError):
            self.fail(node, f"the constant power '{self.token(node)}' cannot be computed as a "
                            f"float")
        return _Value(self.number(node, value, "the constant power"))

    def call(self, node: ast.Call) -> _Value:
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
                f"{did_you_mean(fname, FUNCTIONS)}",
            )
        if node.keywords:
            self.fail(node, f"keyword arguments are not allowed in {fname}()")
        lo, hi, signature = FUNCTIONS[fname]
        if not lo <= len(node.args) <= hi:
            self.fail(node, f"{fname}() takes {signature}, found {len(node.args)} argument(s)")
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"starred arguments are not allowed in {fname}()")
        if fname == "where" and not isinstance(node.args[0], ast.Compare):
            self.fail(node, "where() needs a comparison as its first argument, "
                            "e.g. where(x > 0, a, b)")
        args = [self.visit(a, condition=(fname == "where" and i == 0))
                for i, a in enumerate(node.args)]
        scale = max(a.scale for a in args)
        if fname == "softplus" and len(args) == 2 and args[1].const == 0:
            self.fail(node, f"division by zero: '{self.token(node)}' has the width 0")
        if fname == "where" or any(a.const is None for a in args):
            return _Value(None, scale)
        return _Value(self.fold(node, fname, [float(a.const) for a in args]))

    def fold(self, node, fname: str, x: list[float]) -> float:
        """Evaluate a function of constants in floats, refusing what has no finite value."""
        token = self.token(node)
        if fname == "log" and x[0] <= 0:
            self.fail(node, f"'{token}' is the logarithm of "
                            f"{'zero' if x[0] == 0 else 'a negative number'}")
        if fname == "sqrt" and x[0] < 0:
            self.fail(node, f"'{token}' is the square root of a negative number")
        if fname == "softplus" and len(x) == 2 and x[1] == 0:
            self.fail(node, f"division by zero: '{token}' has the width 0")
        try:
            with np.errstate(all="raise"):
                value = _FOLD[fname](*x)
        except (OverflowError, ZeroDivisionError, ValueError, FloatingPointError):
            value = math.nan
        if not math.isfinite(value):
            self.fail(node, f"'{token}' has no finite value (overflow or division by zero)")
        return self.number(node, value, "the constant")


def _softplus(x, w=1.0):
    z = x / w
    return w * (max(z, 0.0) + math.log1p(math.exp(-abs(z))))


def _hill(x, K, n):
    xn = max(x, 0.0) ** n
    return xn / (K**n + xn)


_FOLD = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "tanh": math.tanh,
    "min": min,
    "max": max,
    "pos": lambda x: max(x, 0.0),
    "hill": _hill,
    "softplus": _softplus,
    "sigmoid": lambda x: 0.5 * (1.0 + math.tanh(0.5 * x)),
    "clip": lambda x, lo, hi: min(max(x, lo), hi),
    "erfc": math.erfc,
    "expm1": math.expm1,
}


def check_expression(text, names: Collection[str], where: str) -> Checked:
    """Check one expression against the whitelist and the size bounds, without sympy.

    Parameters
    ----------
    text : str or float
        The expression as written in the model file (a bare number is accepted).
    names : collection of str
        Every name the expression may use.
    where : str
        The place for error messages, e.g. ``"als.toml, [equations] N"``.

    Returns
    -------
    Checked

    Raises
    ------
    ModelError
        One error naming ``where``, the offending token and its column: a syntax error, a token
        outside the whitelist, an unknown name, a bound exceeded (length, nesting, size, a
        product's factors, a power's exponent), or a constant that is not a finite float
        (overflow, division by zero, logarithm or root of a negative number).
    """
    if isinstance(text, bool):
        raise ModelError(f"{where}: expected an expression or a number, found {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or abs(text) > MAX_MAGNITUDE:
            raise ModelError(f"{where}: expected a finite number, found {text!r}")
        text = repr(float(text))
    if not isinstance(text, str):
        raise ModelError(f"{where}: expected an expression string, found {type(text).__name__}")
    if not text.strip():
        raise ModelError(f"{where}: the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ModelError(f"{where}: the expression is {len(text):,} characters long "
                         f"(at most {MAX_LENGTH:,})")
    stripped = text.strip()
    shown = stripped if len(stripped) <= 200 else stripped[:197] + "..."
    # Python's parser recurses once per operand of a long sum; the default limit (1000) would
    # refuse a sum of 1000 terms that the walk below handles without recursion.
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 4 * MAX_LENGTH))
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        raise ModelError(f"{where}: not a valid expression ({exc.msg}) in {shown!r}") from None
    except (RecursionError, MemoryError):
        raise ModelError(f"{where}: the expression is nested too deeply (at most {MAX_DEPTH} "
                         f"levels) in {shown!r}") from None
    except ValueError as exc:  # e.g. a literal beyond the integer-conversion limit
        raise ModelError(f"{where}: not a valid expression ({exc}) in {shown!r}") from None
    finally:
        sys.setrecursionlimit(limit)
    depth, size = _depth_and_size(tree)
    if depth > MAX_DEPTH:
        raise ModelError(f"{where}: the expression is nested too deeply ({depth} levels, at most "
                         f"{MAX_DEPTH}) in {shown!r}")
    if size > MAX_NODES:
        raise ModelError(f"{where}: the expression has {size:,} terms and operations (at most "
                         f"{MAX_NODES:,}) in {shown!r}")
    checker = _Checker(names, stripped)
    try:
        checker.visit(tree)
    except _Refusal as refusal:
        col = getattr(refusal.node, "col_offset", None)
        at = f" at column {col + 1}" if col is not None else ""
        raise ModelError(f"{where}: {refusal.what}{at} in {shown!r}") from None
    except (RecursionError, MemoryError):
        raise ModelError(f"{where}: the expression is nested too deeply (at most {MAX_DEPTH} "
                         f"levels) in {shown!r}") from None
    return Checked(stripped, tree, frozenset(checker.used))


def parse_expression(text, symbols: dict, where: str):
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
        Everything :func:`check_expression` refuses, and an expression sympy reduces to an
        infinite, undefined or complex value (``x/(x - x)``).
    """
    checked = check_expression(text, symbols, where)
    from ._symbolic import translate

    return translate(checked, symbols, where)
