"""The integrator named "auto" (the default everywhere) and "Rodas4".

"auto" runs the compiled per-subject Rodas4 for a model with compiled kernels at rtol >=
AUTO_COMPILED_MIN_RTOL, tighter the compiled DOP853 for small batches, else the stacked
LSODA; "Rodas4" the per-subject Rodas4 by name. Every
path is checked against pk_iv_bolus's closed form, conc = dose / V exp(-CL / V t).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError, ProgressionError
from progression.fit import parse_fit_config
from progression.model.compiled import compile_model
from progression.options import SolverOptions
from progression.simulate import METHODS, simulate, solve_states
from progression.simulate._api import AUTO_COMPILED_MIN_RTOL

TIMES = np.linspace(0.0, 24.0, 13)
FIT = ('[fit]\nname = "x"\nmodel = "pk_oral"\n[error.conc]\nmodel = "additive"\na = 0.1\n'
       '[parameters.ka]\nestimate = "subject"\n')
COMPILED = "Rodas4 (compiled)"


def _models():
    numba_model = pg.load_model("pk_iv_bolus")
    numpy_model = compile_model(numba_model.spec, backend="numpy")
    assert numpy_model.kernels is None
    return numba_model, numpy_model


def _exact(model):
    p = dict(zip(model.parameter_names, model.parameter_table(None)[0], strict=True))
    return p["dose"] / p["V"] * np.exp(-p["CL"] / p["V"] * TIMES)


def test_the_names_are_registered_and_auto_is_every_default():
    assert {"auto", "Rodas4"} <= set(METHODS)
    assert SolverOptions().method == "auto"
    cfg = parse_fit_config(FIT, check_data=False, source="fit.toml")
    assert cfg.solver["method"] == "auto"          # what fit.json records without [solver]


def test_auto_is_compiled_with_kernels_and_lsoda_without():
    numba_model, numpy_model = _models()
    with_kernels = simulate(numba_model, None, TIMES)
    without = simulate(numpy_model, None, TIMES)
    if numba_model.kernels is None:                  # numba missing here: both are LSODA
        pytest.skip("numba is not installed")
    assert with_kernels.stats["method"] == COMPILED
    assert without.stats["method"] == "LSODA"
    for sim in (with_kernels, without):
        np.testing.assert_allclose(sim["conc"][0], _exact(numba_model), rtol=1e-5)


def test_auto_takes_dop853_at_tight_tolerances_and_rodas4_stays_compiled(monkeypatch):
    numba_model, _ = _models()
    if numba_model.kernels is None:
        pytest.skip("numba is not installed")
    rtol = AUTO_COMPILED_MIN_RTOL / 10
    tight = simulate(numba_model, None, TIMES, rtol=rtol, atol=1e-13)
    named = simulate(numba_model, None, TIMES, method="Rodas4", rtol=rtol, atol=1e-13)
    # tighter than AUTO_COMPILED_MIN_RTOL: the compiled DOP853 for a small batch
    # (tests/test_compiled_dop853.py), the stacked LSODA for a large one
    assert tight.stats["method"] == "DOP853 (compiled)"
    from progression.simulate import _api

    monkeypatch.setattr(_api, "DOP853_MAX_WORK", 4 * 6**2)   # m w^2: 4 subjects here
    many = simulate(numba_model, np.repeat(numba_model.parameter_table(None), 5, axis=0),
                    TIMES, rtol=rtol, atol=1e-13)
    assert many.stats["method"] == "LSODA"
    np.testing.assert_allclose(many["conc"][0], _exact(numba_model), rtol=1e-6)
    assert named.stats["method"] == COMPILED
    for sim in (tight, named):
        np.testing.assert_allclose(sim["conc"][0], _exact(numba_model), rtol=1e-6)
    # solve_states: the same choice, named in its stats
    table = numba_model.parameter_table(None)
    assert solve_states(numba_model, table, TIMES)[3]["method"] == COMPILED
    assert solve_states(numba_model, table, TIMES, rtol=rtol)[3]["method"] == "LSODA"


def test_explicit_lsoda_keeps_its_meaning():
    numba_model, _ = _models()
    sim = simulate(numba_model, None, TIMES, method="LSODA")
    assert sim.stats["method"] == "LSODA"
    assert solve_states(numba_model, numba_model.parameter_table(None), TIMES,
                        method="LSODA")[3]["method"] == "LSODA"


def test_rodas4_without_kernels_is_refused_by_simulate_and_numpy_in_solve_states():
    _, numpy_model = _models()
    with pytest.raises(ProgressionError, match="'Rodas4'.*compiled kernels.*'auto'"):
        simulate(numpy_model, None, TIMES, method="Rodas4")
    states, status, _, stats = solve_states(numpy_model, numpy_model.parameter_table(None),
                                            TIMES, method="Rodas4", rtol=1e-8, atol=1e-12)
    assert stats["method"] == "Rodas4" and status[0] == 0
    V = numpy_model.parameter_table(None)[0, numpy_model.parameter_index("V")]
    np.testing.assert_allclose(states[0, 0] / V, _exact(numpy_model), rtol=1e-6)


def test_auto_without_kernels_is_lsoda_in_solve_states():
    _, numpy_model = _models()
    stats = solve_states(numpy_model, numpy_model.parameter_table(None), TIMES)[3]
    assert stats["method"] == "LSODA"


def test_a_bad_method_is_one_error_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"method: expected one of auto, Rodas4, LSODA.*'RK99'"):
        SolverOptions(method="RK99")
    with pytest.raises(ProgressionError, match=r"method: expected one of auto, Rodas4.*'RK99'"):
        simulate("pk_iv_bolus", None, TIMES, method="RK99")
    with pytest.raises(ConfigError) as info:
        parse_fit_config(FIT + '[solver]\nmethod = "RK99"\n', check_data=False,
                         source="fit.toml")
    text = str(info.value)
    assert "solver.method" in text and "RK99" in text and "auto" in text and "fit.toml" in text


def test_the_cli_accepts_auto(tmp_path):
    out = subprocess.run([sys.executable, "-m", "progression.cli", "simulate", "pk_iv_bolus",
                          "--until", "24", "--step", "2", "--method", "auto", "--out",
                          str(tmp_path / "sim")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    bad = subprocess.run([sys.executable, "-m", "progression.cli", "simulate", "pk_iv_bolus",
                          "--method", "RK99", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "auto" in bad.stderr and "Traceback" not in bad.stderr
