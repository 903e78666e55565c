"""The numpy fallback, run the way a machine without numba runs it.

The default suite runs with the numba backend (numba is a regular dependency). The model
functions' numpy code is the fallback wherever numba cannot be installed, so the numerical
modules below (closed forms, finite differences, doses, covariates, switches, the exact
objective) run again here in a fresh process with ``PROGRESSION_BACKEND=numpy``: both
backends are held to the same analytic and finite-difference references.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "tests/test_simulate_analytic.py",
    "tests/test_derivatives.py",
    "tests/test_dosing.py",
    "tests/test_covariates.py",
    "tests/test_batch_and_switches.py",
    "tests/test_exact_objective.py",
)
#: The fit paths above the model functions: in the slow suite (``-m slow``), to keep the
#: default run within CI's time budget; MODULES already run every model function under numpy.
FIT_PATH_MODULES = (
    "tests/test_polish_hint.py",
    "tests/test_polish_chord.py",
    "tests/test_fit_speed_paths.py",
    "tests/test_covariance_step_stacked.py",
)


def _numpy_env() -> dict:
    return dict(os.environ, PROGRESSION_BACKEND="numpy")


def test_the_fallback_is_numpy_with_the_environment_variable():
    code = ("import progression as pg; m = pg.load_model('pk_oral'); "
            "print(m.backend, m.kernels is None)")
    out = subprocess.run([sys.executable, "-c", code], env=_numpy_env(), capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "True"]


def _run_with_numpy(modules) -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *modules], env=_numpy_env(), capture_output=True, text=True,
                         cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout


def test_numerical_modules_pass_with_the_numpy_backend():
    _run_with_numpy(MODULES)


@pytest.mark.slow
def test_fit_path_modules_pass_with_the_numpy_backend():
    _run_with_numpy(FIT_PATH_MODULES)
