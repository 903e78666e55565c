"""The sympy side of models: translating checked expressions, and the symbolic model.

Imported only when a model is compiled without a disk-cache hit (sympy takes about a second to
import). Every expression reaching this module has passed
:func:`~progression.model._expressions.check_expression`, so its constants are bounded; what
sympy can still produce from symbols (``x/(x - x)`` is ``zoo*x``) is refused here, and any
exception sympy raises is turned into a :class:`~progression.errors.ModelError` naming the place.
"""

from __future__ import annotations

import ast
import contextlib
import graphlib
from dataclasses import dataclass

import sympy as sp

from ..errors import ModelError
from ._expressions import MAX_FACTORS, MAX_MAGNITUDE, Checked, chain, check_expression

__all__ = ["SymbolicModel", "translate", "place", "hill", "softplus", "sigmoid"]

#: Most distinct nodes of one expression once intermediate expressions are substituted.
MAX_SUBSTITUTED_NODES = 20_000


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


def _softplus(x, w=None):
    if w is None:
        return softplus(x)
    return w * softplus(x / w)


def _expm1(x):
    # sympy's C-function expm1: derivative exp(x), printed numpy.expm1 / math.expm1
    from sympy.codegen.cfunctions import expm1

    return expm1(x)


#: name -> sympy builder, for the names of ``_expressions.FUNCTIONS``.
BUILDERS = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "tanh": sp.tanh,
    "min": sp.Min,
    "max": sp.Max,
    "pos": lambda x: sp.Max(x, 0),
    "hill": hill,
    "softplus": _softplus,
    "sigmoid": sigmoid,
    "where": lambda cond, a, b: sp.Piecewise((a, cond), (b, True)),
    "clip": lambda x, lo, hi: sp.Min(sp.Max(x, lo), hi),
    "erfc": sp.erfc,
    "expm1": _expm1,
}

_COMPARE = {
    ast.Lt: sp.StrictLessThan,
    ast.LtE: sp.LessThan,
    ast.Gt: sp.StrictGreaterThan,
    ast.GtE: sp.GreaterThan,
}


@contextlib.contextmanager
def place(where: str, text: str = ""):
    """Turn any failure inside sympy into one ModelError naming ``where``.

    sympy can raise almost anything on unusual input (ValueError, TypeError, RecursionError,
    MemoryError, its own exceptions); none of them should reach a user as a traceback.
    """
    try:
        yield
    except ModelError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - see docstring
        shown = f" in {text!r}" if text else ""
        raise ModelError(f"{where}: the expression cannot be compiled "
                         f"({type(exc).__name__}: {str(exc)[:200]}){shown}") from None


def _build(node, symbols):
    """sympy expression of an accepted tree (chains built flat, in one call)."""
    if isinstance(node, ast.Expression):
        return _build(node.body, symbols)
    if isinstance(node, ast.Constant):
        value = node.value
        return sp.Float(value) if isinstance(value, float) else sp.Integer(value)
    if isinstance(node, ast.Name):
        return symbols[node.id]
    if isinstance(node, ast.UnaryOp):
        inner = _build(node.operand, symbols)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            return sp.Pow(_build(node.left, symbols), _build(node.right, symbols))
        parts = [(inverted, _build(operand, symbols)) for inverted, operand in chain(node)]
        if isinstance(node.op, ast.Add | ast.Sub):
            return sp.Add(*[-e if inverted else e for inverted, e in parts])
        return sp.Mul(*[sp.Pow(e, -1) if inverted else e for inverted, e in parts])
    if isinstance(node, ast.Compare):
        rel = _COMPARE[type(node.ops[0])]
        return rel(_build(node.left, symbols), _build(node.comparators[0], symbols))
    if isinstance(node, ast.Call):
        return BUILDERS[node.func.id](*[_build(a, symbols) for a in node.args])
    raise ModelError(f"unexpected {type(node).__name__}")  # the checker refused it already


def check_result(expr, where: str, text: str = "") -> None:
    """Refuse an expression that sympy reduced to an infinite, undefined or complex value."""
    shown = f" in {text!r}" if text else ""
    bad = [a for a in (sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I) if expr.has(a)]
    if bad:
        raise ModelError(f"{where}: the expression reduces to an infinite, undefined or complex "
                         f"value ({bad[0]}; e.g. a division by an expression that is 0){shown}")
    for number in expr.atoms(sp.Number):
        if abs(number) > MAX_MAGNITUDE:
            raise ModelError(f"{where}: the expression produces the constant "
                             f"{sp.Float(number):.3e}, beyond the float range{shown}")


def _size_check(expr, where: str) -> None:
    """Refuse substituted expressions too large to differentiate in reasonable time."""
    seen: set[int] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_SUBSTITUTED_NODES:
            raise ModelError(f"{where}: the expression, with [expressions] substituted, has more "
                             f"than {MAX_SUBSTITUTED_NODES:,} distinct parts")
        if isinstance(node, sp.Mul) and len(node.args) > 2 * MAX_FACTORS:
            raise ModelError(f"{where}: the expression, with [expressions] substituted, is a "
                             f"product of {len(node.args)} factors (at most {2 * MAX_FACTORS})")
        stack.extend(node.args)


def translate(checked: Checked, symbols: dict, where: str):
    """The sympy expression of a checked expression; ModelError for whatever sympy refuses."""
    with place(where, checked.text):
        expr = _build(checked.tree, symbols)
        check_result(expr, where, checked.text)
    return expr


@dataclass
class SymbolicModel:
    """Sympy expressions of a model, intermediate expressions substituted.

    Attributes
    ----------
    t : sympy.Symbol
    y, p : list of sympy.Symbol
        State and parameter symbols, in model order; ``p`` ends with the covariates' hidden
        rows (:attr:`~progression.model.spec.ModelSpec.hidden_names`).
    rhs : list of sympy.Expr
        One right-hand side per state.
    initial : list of sympy.Expr
        Initial values, functions of ``p``.
    observables, events : list of sympy.Expr
        Observable expressions and event conditions, functions of ``t, y, p``.
    intermediates : dict of str to sympy.Expr
        Named expressions, fully substituted.
    symbols : dict of str to sympy.Expr
        Every name an expression may use (for parsing further expressions such as jumps); a
        linear covariate maps to ``level + slope * t``.
    """

    t: sp.Symbol
    y: list
    p: list
    rhs: list
    initial: list
    observables: list
    events: list
    intermediates: dict
    symbols: dict

    @classmethod
    def from_spec(cls, spec) -> SymbolicModel:
        """Translate a :class:`~progression.model.spec.ModelSpec` (already validated)."""
        src = spec.source
        t = sp.Symbol("t", real=True)
        y = [sp.Symbol(s.name, real=True) for s in spec.states]
        p = [sp.Symbol(q.name, real=True) for q in spec.parameters]
        # Covariates are hidden parameter rows after the parameters (spec.hidden_names): a
        # level, and for linear interpolation a slope, so that on each piece between two
        # recorded times the covariate is ``level + slope * t`` and the code sees ``t``.
        hidden = [sp.Symbol(h, real=True) for h in spec.hidden_names]
        slots = dict(zip(spec.hidden_names, hidden, strict=True))
        covariates = {c.name: (slots[c.name] + slots[f"{c.name}.slope"] * t
                               if c.interpolation == "linear" else slots[c.name])
                      for c in spec.covariates}
        base = {"t": t, **{s.name: s for s in y}, **{s.name: s for s in p}, **covariates}
        p = p + hidden
        expr_symbols = {n: sp.Symbol(n, real=True) for n, _ in spec.expressions}
        symbols = {**base, **expr_symbols}

        def parse(text, names, where):
            return translate(check_expression(text, names, where), names, where)

        raw = {n: parse(text, symbols, f"{src}, [expressions] {n}")
               for n, text in spec.expressions}
        graph = {name: {n for n, s in expr_symbols.items() if s in expr.free_symbols}
                 for name, expr in raw.items()}
        try:
            order = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            raise ModelError(f"{src}, [expressions]: expressions refer to each other in a cycle: "
                             f"{' -> '.join(exc.args[1])}") from None
        resolved: dict = {}
        for name in order:
            where = f"{src}, [expressions] {name}"
            with place(where):
                resolved[name] = raw[name].xreplace(
                    {expr_symbols[k]: v for k, v in resolved.items()})
                _size_check(resolved[name], where)
                check_result(resolved[name], where)
        substitute = {expr_symbols[k]: v for k, v in resolved.items()}

        def full(text, where):
            expr = parse(text, symbols, where)
            with place(where, str(text)):
                expr = expr.xreplace(substitute)
                _size_check(expr, where)
                check_result(expr, where, str(text))
            return expr

        equations = dict(spec.equations)
        rhs = [full(equations[s.name], f"{src}, [equations] {s.name}") for s in spec.states]
        param_only = {**{q.name: q for q in p[:len(spec.parameters)]}, **covariates}
        initial = [parse(s.initial, param_only, f"{src}, [states.{s.name}] initial")
                   for s in spec.states]
        observables = [full(o.expression, f"{src}, [observables.{o.name}] expression")
                       for o in spec.observables]
        # Event conditions may also name observables (e.g. "ALSFRS_R - 47").
        obs_symbols = {o.name: sp.Symbol(o.name, real=True) for o in spec.observables}
        obs_values = {obs_symbols[o.name]: v for o, v in zip(spec.observables, observables,
                                                             strict=True)}
        events = []
        for e in spec.events:
            where = f"{src}, [events.{e.name}] condition"
            expr = parse(e.condition, {**symbols, **obs_symbols}, where)
            with place(where, e.condition):
                expr = expr.xreplace(substitute).xreplace(obs_values)
                check_result(expr, where, e.condition)
            events.append(expr)
        return cls(t, y, p, rhs, initial, observables, events, resolved, symbols)

    def parse(self, text, where: str):
        """Parse a further expression (e.g. a state jump) over this model's names."""
        substitute = {self.symbols[k]: v for k, v in self.intermediates.items()}
        expr = parse_checked(text, self.symbols, where)
        with place(where, str(text)):
            expr = expr.xreplace(substitute)
            check_result(expr, where, str(text))
        return expr


def parse_checked(text, symbols: dict, where: str):
    """Check and translate one expression (see :func:`.parse_expression`)."""
    return translate(check_expression(text, symbols, where), symbols, where)
