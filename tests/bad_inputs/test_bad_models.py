"""Bad-input catalogue: malformed and hostile model files.

Each file under ``files/models/`` goes through ``progression show FILE`` and ``progression
simulate FILE --until 1 --out DIR``: exit 2, one error naming the file, the equation or key and
the offending token, no traceback, nothing written (neither an output folder nor a cache entry),
and within a few seconds (the parser never hangs).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

MODELS = Path(__file__).parent / "files" / "models"

#: file -> strings the error must contain besides the file name (place first, then token).
CASES = {
    "power_tower.toml": ["[equations] F", "10**10**10", "out of range"],
    "power_9_9_7.toml": ["[equations] F", "9**9**7", "out of range"],
    "power_of_symbol.toml": ["[equations] F", "(2*F)**10**300", "non-constant base"],
    "nested_powers.toml": ["[equations] F", "((F**100)**100)**100", "at most 1000"],
    "division_by_zero.toml": ["[equations] F", "division by zero", "'0'"],
    "division_by_zero_symbolic.toml": ["[equations] F", "k / (F - F)", "zoo"],
    "log_of_zero.toml": ["[observables.logzero] expression", "log(0)", "logarithm of zero"],
    "sqrt_negative_initial.toml": ["[states.F] initial", "sqrt(-1)", "square root"],
    "complex_power.toml": ["[equations] F", "(-8)**(1/3)", "complex"],
    "exp_overflow.toml": ["[equations] F", "exp(1000)", "no finite value"],
    "huge_literal.toml": ["[equations] F", "1e999", "not a finite number"],
    "huge_integer.toml": ["[equations] F", "999999999", "not a finite number"],
    "deep_nesting.toml": ["[equations] F", "nested too deeply", "at most 50"],
    "too_long.toml": ["[equations] F", "characters long", "at most 10,000"],
    "long_product.toml": ["[equations] F", "150 factors", "at most 100"],
    "nan_initial.toml": ["[states.F] initial", "found nan"],
    "inf_initial.toml": ["[states.F] initial", "found inf"],
    "nan_parameter.toml": ["[parameters.k] value", "found nan"],
    "fortnight.toml": ["[model] time_unit", "'fortnight'", "hour, day, week, month, year"],
    "bad_event_fields.toml": ["[events.threshold] direction", "'down'",
                              "[events.threshold] terminal", "'yes'"],
    "event_direction_list.toml": ["[events.threshold] direction", "['falling']"],
    "unknown_function.toml": ["[equations] F", "function 'sin' is not allowed"],
    "dunder_escape.toml": ["[equations] F", "'.system'", "not allowed"],
    "attribute_access.toml": ["[equations] F", "'.__class__'", "not allowed"],
    "syntax_error.toml": ["[equations] F", "not a valid expression", "'-k * F +'"],
    "unknown_name.toml": ["[equations] F", "unknown name 'kk'", "did you mean 'k'"],
    "expression_cycle.toml": ["[expressions]", "cycle", "a -> b"],
    "softplus_zero_width.toml": ["[equations] F", "softplus(F, 0)", "width 0"],
    "where_without_comparison.toml": ["[equations] F", "where()", "comparison"],
    "equation_for_parameter.toml": ["[equations] k", "'k' is a parameter, not a state"],
    "not_toml.toml": ["not valid TOML"],
    "empty_name.toml": ["[model] name", "non-empty name"],
    "huge_toml_integer.toml": ["[parameters.k] value", "expected a finite number",
                               "(400 characters)"],
    "deep_toml.toml": ["not valid TOML", "nested too deeply"],
}

#: Errors that must come alone (the issue's "second, false error" and its relatives).
FORBIDDEN = {
    "nan_initial.toml": ["no state", "missing the equation"],
    "inf_initial.toml": ["no state", "missing the equation"],
    "nan_parameter.toml": ["unknown name 'k'"],
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Compilations go to a temporary cache (which must stay empty for refused models)."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(folder))
    yield
    assert not any(folder.rglob("*.json")), "a refused model left a cache entry"


def test_the_catalogue_is_complete():
    assert sorted(p.name for p in MODELS.glob("*.toml")) == sorted(CASES)
    assert len(CASES) >= 20


@pytest.mark.parametrize("command", ["show", "simulate"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_model_file_is_refused(name, command, cli, refused, unchanged, tmp_path):
    path = MODELS / name
    out = tmp_path / "out"
    argv = ["show", path] if command == "show" else ["simulate", path, "--until", "1",
                                                     "--out", out]
    start = time.perf_counter()
    with unchanged(MODELS, tmp_path):
        outcome = cli(*argv)
    elapsed = time.perf_counter() - start
    refused(outcome, str(path), *CASES[name])
    assert not out.exists()
    assert elapsed < 10.0, f"{elapsed:.1f} s"
    for wrong in FORBIDDEN.get(name, []):
        assert wrong not in outcome.err, outcome.err
    # One error: a single "error" line, whatever problems it lists.
    assert outcome.err.lower().count("error:") == 1, outcome.err


@pytest.mark.parametrize("kind", ["folder", "not utf-8", "missing", "empty"])
def test_unreadable_model_path_is_refused(kind, cli, refused, unchanged, tmp_path):
    path = tmp_path / "model.toml"
    expected = {"folder": "found a folder", "not utf-8": "expected a UTF-8 text file",
                "missing": "cannot read the model file", "empty": "[model]"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "not utf-8":
        path.write_bytes(b"[model]\nname = \"\xff\xfe\"\n")
    elif kind == "empty":
        path.write_text("")
    out = tmp_path / "out"
    with unchanged(tmp_path):
        for argv in (["show", path], ["simulate", path, "--until", "1", "--out", out]):
            refused(cli(*argv), str(path), expected)
    assert not out.exists()
