"""The safe expression parser and model-file validation: what is refused, and how."""

import pickle

import pytest
import sympy as sp

import progression as pg
from progression.errors import ModelError
from progression.model._expressions import parse_expression

SYMBOLS = {n: sp.Symbol(n) for n in ("x", "y", "k", "t")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('rm -rf /')", "attribute access '.system'"),
        ("__import__('os')", "dunder name '__import__'"),
        ("__builtins__", "dunder name '__builtins__'"),
        ("x.__class__", "attribute access"),
        ("os.system", "attribute access"),
        ("x[0]", "subscripts"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("exp(x)(y)", "only calls of the whitelisted functions"),
        ("lambda x: x", "lambda is not allowed"),
        ("'abc'", "only numbers"),
        ("eval('1+1')", "function 'eval' is not allowed"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("exp(x, y)", "exp() takes exp(x), found 2"),
        ("exp(x=1)", "keyword arguments"),
        ("x if y else k", "'IfExp' is not allowed"),
        ("[x, y]", "'List' is not allowed"),
        ("x < y", "only allowed as the condition of where()"),
        ("where(x, 1, 2)", "needs a comparison"),
        ("x @ y", "operator 'MatMult'"),
        ("x // y", "operator 'FloorDiv'"),
        ("x % y", "operator 'Mod'"),
        ("not x", "operator 'Not'"),
        ("x and y", "'BoolOp' is not allowed"),
        ("True", "only numbers"),
        ("z + 1", "unknown name 'z'"),
        ("xx + 1", "did you mean 'x'"),
        ("exp", "used without calling it"),
        ("x +", "not a valid expression"),
        ("", "empty"),
        ("f'{x}'", "'JoinedStr' is not allowed"),
        ("(x := 2)", "'NamedExpr' is not allowed"),
        ("where(1 < x < 2, 1, 0)", "chained comparisons"),
        ("exp(*x)", "starred"),
        ("(" * 300 + "x" + ")" * 300, "too many nested parentheses"),
        ("-" * 5000 + "x", "nested too deeply"),
    ],
)
def test_refused_expressions_name_the_place_and_token(text, message):
    with pytest.raises(ModelError) as err:
        parse_expression(text, SYMBOLS, "model.toml, [equations] x")
    assert "model.toml, [equations] x" in str(err.value)
    assert message in str(err.value)


def test_accepted_functions_build_the_expected_sympy():
    expr = parse_expression("hill(x, k, 2) + softplus(y, 0.1) + clip(x, 0, 1) + where(x > 1, y, 0)",
                            SYMBOLS, "here")
    value = expr.subs({SYMBOLS["x"]: 0.5, SYMBOLS["y"]: 2.0, SYMBOLS["k"]: 0.5})
    expected = 0.5 + 0.1 * __import__("math").log1p(__import__("math").exp(20.0)) + 0.5 + 0
    assert float(value) == pytest.approx(expected, rel=1e-12)


GOOD = """
[model]
name = "m"
time_unit = "month"
[parameters.k]
value = 1.0
bounds = [0.0, 2.0]
[states.x]
initial = 1.0
[equations]
x = "-k*x"
"""


def _model_with(extra: str = "", replace: tuple[str, str] | None = None) -> str:
    text = GOOD + extra
    if replace:
        text = text.replace(*replace)
    return text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model\nname=", "not valid TOML"),
        (_model_with(replace=('x = "-k*x"', 'x = "-k*y"')), "unknown name 'y'"),
        (_model_with(replace=('x = "-k*x"', 'x = "__import__(\'os\')"')), "dunder"),
        (_model_with(replace=("value = 1.0", "value = 3.0")), "with the value 3.0 inside"),
        (_model_with(replace=("bounds = [0.0, 2.0]", "bounds = [2.0, 0.0]")), "lower < upper"),
        (_model_with(replace=("value = 1.0", 'value = "one"')), "expected a finite number"),
        (_model_with(replace=("[parameters.k]", "[parameters.exp]")), "reserved"),
        (_model_with(replace=("[parameters.k]", "[parameters.lambda]")), "Python keyword"),
        (_model_with("[states.y]\ninitial = 0.0\n"), "missing the equation of state 'y'"),
        (_model_with("[expressions]\na = \"b\"\nb = \"a\"\n"), "cycle"),
        (_model_with("[observables.k]\nexpression = \"x\"\n"), "already used by a parameter"),
        (_model_with("[events.e]\ncondition = \"x - 1\"\ndirection = \"down\"\n"),
         "expected one of falling, rising, both"),
        (_model_with("[extras]\na = 1\n"), "unknown table"),
        (_model_with(replace=("time_unit", "timeunit")), "unknown key 'timeunit'"),
        (_model_with(replace=("initial = 1.0", "initial = \"x\"")), "unknown name 'x'"),
        (_model_with("[observables.o]\nunit = \"1\"\n"), "missing key 'expression'"),
        (_model_with("[events.e]\ncondition = \"x.real\"\n"), "attribute access"),
    ],
)
def test_malformed_model_files_are_refused_with_a_clear_error(text, message, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ModelError) as err:
        pg.read_model_file(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_every_problem_of_a_file_is_reported_at_once():
    text = _model_with(
        "[observables.o]\nexpression = \"x.imag\"\n[events.e]\ncondition = \"q\"\n",
        replace=('x = "-k*x"', 'x = "-kk*x"'))
    with pytest.raises(ModelError) as err:
        pg.parse_model(text, "three.toml")
    assert len(err.value.problems) == 3
    assert "did you mean 'k'" in str(err.value)


def test_spec_pickles_and_has_a_content_fingerprint():
    a = pg.parse_model(GOOD, "a.toml")
    b = pg.parse_model(GOOD.replace("[model]", "# comment\n[model]"), "b.toml")
    assert a.fingerprint == b.fingerprint
    assert pickle.loads(pickle.dumps(a)) == a
