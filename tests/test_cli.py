"""The `progression` command, run as a user runs it."""

import csv
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "progression.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_models_lists_the_library():
    out = run("models")
    assert out.returncode == 0, out.stderr
    for name in ("als_systemic", "als_reduced", "d50", "pk_iv_bolus", "pk_oral"):
        assert name in out.stdout


def test_show_describes_parameters_with_units_ranges_and_sources():
    out = run("show", "als_systemic")
    assert out.returncode == 0, out.stderr
    assert "Parameters (65)" in out.stdout
    line = next(li for li in out.stdout.splitlines() if li.strip().startswith("k0 "))
    assert "0.01419" in line and "1/month" in line and "0.0005 - 0.2" in line


def test_simulate_writes_csv_and_png(tmp_path):
    out_dir = tmp_path / "sim"
    out = run("simulate", "als_systemic", "--months", "60", "--set", "k0=0.012",
              "--out", str(out_dir))
    assert out.returncode == 0, out.stderr
    assert "event death" in out.stdout
    rows = list(csv.DictReader((out_dir / "simulation.csv").open()))
    assert rows[0]["time"] == "0" and float(rows[0]["ALSFRS_R"]) == pytest.approx(48, abs=0.01)
    assert float(rows[100]["N"]) < 1.0
    assert (out_dir / "trajectories.png").stat().st_size > 10_000


def test_simulate_a_model_file(tmp_path, models_dir):
    out = run("simulate", str(models_dir / "decay.toml"), "--until", "5", "--out",
              str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "simulation.csv").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("simulate", "als_systemic", "--months", "60", "--set", "k9=1"), "no parameter 'k9'"),
    (("simulate", "als_systemic", "--months", "60", "--set", "k0"), "expected NAME=VALUE"),
    (("simulate", "als_systemic", "--months", "60", "--set", "k0=abc"), "expected a number"),
    (("simulate", "pk_oral", "--months", "6"), "runs in 'hour'"),
    (("show", "als_sytemic"), "did you mean 'als_systemic'"),
    (("show", "missing/model.toml"), "cannot read the model file"),
])
def test_bad_input_prints_one_error_without_traceback_and_exits_2(args, message, tmp_path):
    out = run(*args, "--out", str(tmp_path / "x")) if args[0] == "simulate" else run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists(), "nothing half-written"


def test_progress_rewrites_one_line_on_a_terminal_and_writes_whole_lines_to_a_log():
    import io

    from progression.parallel import Progress

    log = io.StringIO()
    bar = Progress("fit x", 3, stream=log)
    for done in (1, 2, 3):
        bar.update(done)
    bar.close()
    text = log.getvalue()                                  # no carriage returns in logs
    assert "\r" not in text and text.endswith("\n")
    assert text.splitlines()[-1].startswith("fit x: 3/3 subjects (100%)")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    bar = Progress("fit x", 2, stream=term)
    bar.update(1)
    bar.update(2)
    bar.close()
    assert term.getvalue().count("\n") == 1 and "\r" in term.getvalue()   # one line, redrawn
    assert "2/2" in term.getvalue().split("\r")[-1]


def test_cli_method_names_match_the_integrator_registry():
    from progression.cli import METHOD_NAMES
    from progression.simulate import METHODS

    assert sorted(METHOD_NAMES) == sorted(METHODS)


@pytest.mark.parametrize("method", [None, "LSODA", "Rodas4"])
def test_simulate_uses_numpy_for_one_patient_unless_a_method_is_given(tmp_path, method):
    """Without --method the CLI loads the model's numpy code and takes simulate()'s default
    for it (the stacked LSODA: no numba start-up for one patient); a method given runs on the
    library's backend. Each CSV equals the Python API's call with the same choice (the CSV's
    10 significant digits), and every path agrees with a tight solution to the tolerance."""
    import numpy as np

    import progression as pg
    from progression.model import load_model
    from progression.model.compiled import resolve_backend

    if method == "Rodas4" and resolve_backend() != "numba":
        pytest.skip("the compiled Rodas4 needs numba (PROGRESSION_BACKEND=numpy or no numba)")
    out_dir = tmp_path / "sim"
    args = ["simulate", "als_systemic", "--months", "60", "--out", str(out_dir)]
    if method:
        args += ["--method", method]
    out = run(*args)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader((out_dir / "simulation.csv").open()))
    names = list(rows[0])[2:]
    times = np.array([float(r["time"]) for r in rows])
    table = np.array([[float(r[n]) for n in names] for r in rows])
    model = load_model("als_systemic", backend="numpy" if method is None else None)
    sim = pg.simulate(model, times=times, **({} if method is None else {"method": method}))
    if method is None:
        assert sim.stats["method"] == "LSODA"
    same = np.concatenate([sim.states[0], sim.observables[0]]).T
    np.testing.assert_allclose(table, same, rtol=1e-9, atol=1e-12)
    # rtol 1e-6 (the CLI's default): within 10x of it, relative to each output's range
    tight = pg.simulate("als_systemic", times=times, rtol=1e-10, atol=1e-13)
    ref = np.concatenate([tight.states[0], tight.observables[0]]).T
    alive = np.isfinite(ref).all(axis=1)      # NaN after the terminal event (death)
    assert np.array_equal(alive, np.isfinite(table).all(axis=1))
    # an output that stays at 0 (a switched-off term) is compared in absolute terms
    scale = np.maximum(np.abs(ref[alive]).max(axis=0), 1e-6)
    err = np.abs(table[alive] - ref[alive]).max(axis=0) / scale
    assert err.max() < 1e-5, dict(zip(names, err, strict=True))
    death = float(out.stdout.split("event death: t = ")[1].split()[0])
    assert death == pytest.approx(tight.event_time("death")[0], abs=0.01)


def test_simulate_without_method_does_not_start_numba(tmp_path):
    """One patient: the CLI's default path imports neither numba nor pyplot; with
    PROGRESSION_BACKEND set the library's backend runs (numba when installed)."""
    import os

    code = ("import sys; from progression.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('numba', 'matplotlib.pyplot') if m in sys.modules)); "
            "sys.exit(rc)")
    argv = ["simulate", "als_reduced", "--months", "12", "--out", str(tmp_path / "s")]
    env = {k: v for k, v in os.environ.items() if k != "PROGRESSION_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    from progression.model._kernels import numba_available

    if numba_available():
        out = subprocess.run([sys.executable, "-c", code, *argv, "--overwrite"],
                             capture_output=True, text=True,
                             env={**env, "PROGRESSION_BACKEND": "numba"})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "['numba']"
