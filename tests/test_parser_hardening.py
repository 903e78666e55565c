"""The model parser never hangs or crashes: bounded constant folding, one ModelError, fast import.

Hostile expressions (huge powers, deep nesting, long sums, division by zero, unknown names,
bad syntax) end in a compiled model or exactly one ModelError, within a time bound; a
property-based test (hypothesis) generates random expression trees of that kind.
"""

from __future__ import annotations

import faulthandler
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import progression as pg
from progression.data._units import DAYS_PER
from progression.errors import ModelError
from progression.model._expressions import FUNCTIONS, MAX_DEPTH, check_expression


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Compiled models of these tests go to a temporary cache, not the user's."""
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(tmp_path / "cache"))


MODEL = """
[model]
name = "m"
time_unit = "month"
[parameters.k]
value = 0.5
bounds = [0.0, 2.0]
[states.F]
initial = 1.0
[states.G]
initial = 2.0
[equations]
F = {F}
G = "-k * G"
[observables.o]
expression = {O}
"""


def model_text(f: str, o: str = "F + G") -> str:
    # JSON string literals are valid TOML basic strings.
    return MODEL.format(F=json.dumps(f), O=json.dumps(o))


def compile_text(text: str):
    return pg.compile_model(pg.parse_model(text, "hostile.toml"), cache=False)


# ----------------------------------------------------------------------------- named hostiles

@pytest.mark.parametrize(
    ("expression", "token", "what"),
    [
        ("-k * F * 10**10**10", "10**10**10", "out of range"),
        ("9**9**7", "9**9**7", "out of range"),
        ("F * 10**309", "10**309", "out of range"),
        ("F * 2**-2000", "2**-2000", "out of range"),
        ("F * 1e999", "1e999", "not a finite number"),
        ("F * " + "7" * 400, "777", "not a finite number"),
        ("1e308 * F * 10", "1e308 * F * 10", "not a finite number"),
        ("1/0", "'0'", "division by zero"),
        ("F / (1 - 1)", "(1 - 1)", "division by zero"),
        ("0**-1 * F", "0**-1", "division by zero"),
        ("softplus(F, 0)", "softplus(F, 0)", "division by zero"),
        ("log(0) * F", "log(0)", "logarithm of zero"),
        ("log(-2) * F", "log(-2)", "logarithm of a negative"),
        ("sqrt(-1) * F", "sqrt(-1)", "square root of a negative"),
        ("(-8)**(1/3) * F", "(-8)**(1/3)", "complex"),
        ("exp(710) * F", "exp(710)", "no finite value"),
        ("exp(exp(1000))", "exp(1000)", "no finite value"),
        ("(2*F)**10**300", "(2*F)**10**300", "non-constant base"),
        ("(2*F)**(10**300/3)", "(2*F)**(10**300/3)", "non-constant base"),
        ("((10*F)**100)**100", "((10*F)**100)**100", "non-constant base"),
        ("*".join(f"(F + {i})" for i in range(150)), "150 factors", "product"),
        ("-" * 5000 + "F", "levels, at most 50", "nested too deeply"),
        ("exp(" * 60 + "F" + ")" * 60, "levels", "nested too deeply"),
        ("(" * 300 + "F" + ")" * 300, "parentheses", "not a valid expression"),
        ("+".join(["F"] * 3000), "terms and operations", "at most 5,000"),
        ("F + " * 2600 + "F", "characters long", "at most 10,000"),
        ("F / (F - F)", "zoo", "infinite, undefined or complex"),
        ("k / (k - k) * F", "zoo", "infinite, undefined or complex"),
        ("sin(F)", "function 'sin'", "not allowed"),
        ("z * F", "unknown name 'z'", "unknown name"),
        ("F +", "F +", "not a valid expression"),
    ],
    ids=lambda v: v[:24],
)
def test_hostile_expressions_end_in_one_model_error_naming_place_and_token(expression, token,
                                                                           what):
    start = time.perf_counter()
    with pytest.raises(ModelError) as err:
        compile_text(model_text(expression))
    elapsed = time.perf_counter() - start
    message = str(err.value)
    assert "hostile.toml, [equations] F" in message
    assert token in message and what in message, message
    assert len(err.value.problems) == 1
    assert elapsed < 5.0, f"{elapsed:.1f} s"


def test_the_issue_examples_are_refused_in_model_files(tmp_path):
    for name, expr, token in (("hang.toml", "-k * F * 10**10**10", "10**10**10"),
                              ("crash.toml", "9**9**7", "9**9**7")):
        path = tmp_path / name
        path.write_text(model_text(expr))
        start = time.perf_counter()
        with pytest.raises(ModelError) as err:
            pg.read_model_file(path)
        assert time.perf_counter() - start < 1.0
        assert str(path) in str(err.value) and "[equations] F" in str(err.value)
        assert token in str(err.value)


def test_bounded_expressions_still_compile_to_the_right_values():
    """Constant folding within the bounds gives what the arithmetic says."""
    long_sum = "+".join(["F"] * 2000)  # parses although Python's parser recurses per term
    cases = {
        "2**10 * F": 1024.0,
        "10**308 / 10**300 * F": 1e8,
        "F * 2**-1000 * 2**1000": 1.0,
        "(-1)**(10**300) * F": 1.0,
        "1**(10**300) * F": 1.0,
        long_sum: 2000.0,
        "F * 0**0": 1.0,
        "(2*F)**3 / (8 * F**2)": 1.0,
    }
    y = np.array([[1.5], [2.0]])
    p = np.array([[0.5]])
    for expr, factor in cases.items():
        model = compile_text(model_text(expr))
        got = model.rhs(0.0, y, p)[0, 0]
        # (2F)^3 / (8F^2) = F; every other case is factor * F.
        assert got == pytest.approx(factor * 1.5, rel=1e-12), expr


def test_check_expression_needs_no_sympy_and_reports_names():
    checked = check_expression("k * F + where(t > 1, G, 0)", {"k", "F", "G", "t"}, "here")
    assert checked.names == {"k", "F", "G", "t"}
    with pytest.raises(ModelError, match=f"at most {MAX_DEPTH}"):
        check_expression("sqrt(" * 51 + "F" + ")" * 51, {"F"}, "here")


# ----------------------------------------------------------------------------- validation gaps

def test_nan_or_inf_initial_value_is_one_error_not_two():
    for bad in ("nan", "inf", "-inf"):
        text = model_text("-k * F").replace("initial = 1.0", f"initial = {bad}")
        with pytest.raises(ModelError) as err:
            pg.parse_model(text, "m.toml")
        assert err.value.problems == [
            f"m.toml, [states.F] initial: expected a finite number or an expression, "
            f"found {bad}"]


def test_every_bad_event_field_is_reported_at_once():
    text = model_text("-k * F") + (
        '[events.e]\ncondition = "F - 1"\ndirection = "down"\nterminal = "yes"\n')
    with pytest.raises(ModelError) as err:
        pg.parse_model(text, "m.toml")
    problems = err.value.problems
    assert len(problems) == 2
    assert "[events.e] direction" in problems[0] and "'down'" in problems[0]
    assert "[events.e] terminal" in problems[1] and "'yes'" in problems[1]


def test_structural_and_expression_problems_are_reported_together():
    text = (model_text("-kk * F").replace("value = 0.5", "value = nan")
            .replace("[observables.o]", "[observables.o]\ncolour = 1"))
    with pytest.raises(ModelError) as err:
        pg.parse_model(text, "m.toml")
    joined = "\n".join(err.value.problems)
    assert len(err.value.problems) == 3, joined
    assert "[parameters.k] value" in joined and "unknown key 'colour'" in joined
    assert "unknown name 'kk'" in joined


def test_a_malformed_declaration_does_not_cause_false_unknown_name_errors():
    text = model_text("-k * F").replace("value = 0.5", 'value = "half"')
    with pytest.raises(ModelError) as err:
        pg.parse_model(text, "m.toml")
    assert len(err.value.problems) == 1 and "[parameters.k] value" in str(err.value)


def test_time_units_are_the_data_readers_list():
    for unit in DAYS_PER:
        spec = pg.parse_model(model_text("-k*F").replace('"month"', f'"{unit}s"'), "m.toml")
        assert spec.time_unit == unit  # canonical name, as data readers use
    with pytest.raises(ModelError, match=r"\[model\] time_unit: expected one of second, "
                                         r"minute, hour, day, week, month, year.*found "
                                         r"'fortnight'"):
        pg.parse_model(model_text("-k*F").replace('"month"', '"fortnight"'), "m.toml")
    # The data side refuses the same unit.
    with pytest.raises(pg.DataError):
        pg.Cohort({"subject": ["a"], "time": [0.0], "observable": ["x"], "value": [1.0]},
                  time_unit="fortnight")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (('name = "m"', 'name = ""'), "[model] name: expected a non-empty name"),
        (("[observables.o]", '[events.e]\ncondition = "F"\ndirection = ["up"]\n'
                             "[observables.o]"), "found ['up']"),
        (('G = "-k * G"', 'G = "-k * G"\nk = "1"'), "'k' is a parameter, not a state"),
        (("bounds = [0.0, 2.0]", "bounds = [nan, 2.0]"), "[parameters.k] bounds"),
        (('initial = 1.0', 'initial = "sqrt(-1)"'), "[states.F] initial"),
    ],
)
def test_other_validation_gaps(patch, message):
    with pytest.raises(ModelError) as err:
        pg.parse_model(model_text("-k * F").replace(*patch), "m.toml")
    assert message in str(err.value)


# ----------------------------------------------------------------------------- property test

_NAMES = st.sampled_from(["F", "G", "k", "t"])
_LEAVES = st.one_of(
    _NAMES, _NAMES, _NAMES,
    st.integers(0, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["0", "0.0", "1e308", "1e-308", "1e999", "10**400", "9**9**7",
                     "10**10**10", "7" * 400, "z", "kk", "__import__", "exp", "F.real", "x[0]"]),
)
_FUNCTION_NAMES = sorted(set(FUNCTIONS) - {"where"})


def _grow(children):
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**"]),
                       children).map(lambda x: f"({x[0]}){x[1]}({x[2]})")
    bad_binary = st.tuples(children, st.sampled_from(["//", "%", "@", "<<"]),
                           children).map(lambda x: f"({x[0]}){x[1]}({x[2]})")
    unary = children.map(lambda c: f"-({c})")
    call = st.sampled_from(_FUNCTION_NAMES).flatmap(
        lambda f: st.lists(children, min_size=FUNCTIONS[f][0], max_size=FUNCTIONS[f][1]).map(
            lambda args: f"{f}({', '.join(args)})"))
    bad_call = st.tuples(st.sampled_from([*_FUNCTION_NAMES, "sin", "eval", "open"]),
                         st.lists(children, max_size=4)).map(
        lambda x: f"{x[0]}({', '.join(x[1])})")
    where = st.tuples(children, st.sampled_from(["<", ">", "<=", ">="]), children,
                      children, children).map(
        lambda x: f"where(({x[0]}) {x[1]} ({x[2]}), {x[3]}, {x[4]})")
    long_sum = st.tuples(children, st.integers(1, 400)).map(
        lambda x: "+".join([f"({x[0]})"] * x[1]))
    long_product = st.tuples(children, st.integers(1, 120)).map(
        lambda x: "*".join([f"({x[0]} + {i})" for i in range(x[1])]))
    nesting = st.tuples(st.sampled_from(["exp(", "-(", "sqrt(", "log(", "tanh(", "pos("]),
                        children, st.integers(1, 60)).map(
        lambda x: x[0] * x[2] + x[1] + ")" * x[2])
    tower = st.tuples(children, st.lists(st.sampled_from(["2", "9", "10", "0.5", "-1", "F"]),
                                         min_size=1, max_size=6)).map(
        lambda x: "**".join([f"({x[0]})", *x[1]]))
    return st.one_of(binary, binary, unary, call, call, where, long_sum, long_product, nesting,
                     tower, bad_binary, bad_call)


EXPRESSIONS = st.recursive(_LEAVES, _grow, max_leaves=12)
BAD_SYNTAX = st.one_of(
    st.sampled_from(["F +", "(F", "F))", "F $ 2", "", "   ", "1 +* 2", "lambda: 1", "f'{F}'",
                     "F if F else G", "[F, G]", "F; G", "F\nG", "F = 1", "\\", "'F'",
                     "not F", "F and G", "1 < F < 2", "exp(*F)", "exp(x=F)"]),
    st.text(alphabet="FGk()+-*/.,0123456789e<>=", max_size=40),
)


@settings(max_examples=200, deadline=5000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(equation=st.one_of(EXPRESSIONS, EXPRESSIONS, EXPRESSIONS, BAD_SYNTAX),
       observable=EXPRESSIONS)
def test_random_expression_trees_compile_or_raise_one_model_error(equation, observable):
    """Within 5 s (hypothesis deadline), a compiled model or one ModelError; nothing else.

    A watchdog ends the process with a traceback of every thread if one example hangs (the
    deadline alone would only report after the example finished, i.e. never).
    """
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        try:
            model = compile_text(model_text(equation, observable))
        except ModelError as exc:
            assert str(exc).startswith("hostile.toml")
            assert "Traceback" not in str(exc)
            return
        # A compiled model evaluates (possibly to inf/nan) without raising.
        y = np.array([[1.5, -0.5], [2.0, 0.0]])
        p = np.array([[0.5, 1.5]])
        with np.errstate(all="ignore"):
            assert model.rhs(0.0, y, p).shape == (2, 2)
            assert model.jac(0.0, y, p).shape == (2, 2, 2)
            assert model.observe(0.0, y, p).shape == (1, 2)
    finally:
        faulthandler.cancel_dump_traceback_later()


# ----------------------------------------------------------------------------- import time

def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_import_progression_loads_no_heavy_library():
    heavy = ["sympy", "matplotlib", "lmfit", "scipy.stats", "scipy.integrate", "scipy.optimize"]
    loaded = _run(f"import sys, progression; print([m for m in {heavy!r} if m in sys.modules])")
    assert loaded == "[]"


def test_lazy_names_resolve_and_fit_stays_the_function():
    out = _run(
        "import progression as pg\n"
        "import progression.fit.config, progression.simulate\n"  # import the submodules first
        "from progression import fit\n"
        "print(callable(pg.fit), callable(pg.simulate), fit is pg.fit, pg.Cohort.__name__,"
        " pg.load_model.__name__, pg.plots.__name__, 'FitConfig' in dir(pg))")
    assert out == "True True True Cohort load_model progression.plots True"
    with pytest.raises(AttributeError):
        pg.no_such_name  # noqa: B018


def test_listing_models_compiles_nothing(tmp_path):
    code = ("import sys\nfrom progression.cli import main\nrc = main(['models'])\n"
            "print('sympy' in sys.modules, rc)")
    out = _run(code).splitlines()
    assert out[-1] == "False 0"
    listing = "\n".join(out[:-1])
    assert "als_systemic   12 states  65 parameters  [month]" in listing
    assert len(out) - 1 == len(pg.available_models())
