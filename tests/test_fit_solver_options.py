"""Fits take the same SolverOptions as simulate, compare and VirtualTrial: the config's
[solver] table is one, and pg.fit(..., solver=) replaces its integration settings."""

import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError
from progression.options import SolverOptions

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import config, decay_data  # noqa: E402


def test_config_solver_is_a_solver_options(tmp_path):
    cfg = config(tmp_path)             # its [solver]: rtol 1e-10, atol 1e-12, forward
    assert cfg.solver_options == SolverOptions(rtol=1e-10, atol=1e-12,
                                               sensitivities="forward")


def test_with_solver_keeps_the_fit_path_settings(tmp_path):
    cfg = config(tmp_path)             # outputs = "exact"
    new = cfg.with_solver(SolverOptions(method="Radau", rtol=1e-9))
    assert new.solver["method"] == "Radau" and new.solver["rtol"] == 1e-9
    assert new.solver["outputs"] == "exact"
    assert cfg.with_solver({"atol": 1e-11}).solver_options.atol == 1e-11
    with pytest.raises(ConfigError, match="unknown key"):
        cfg.with_solver({"tolerance": 1e-3})
    with pytest.raises(ConfigError, match="method"):
        cfg.with_solver({"method": "Euler"})


def test_fit_integrates_with_the_options_given(tmp_path, monkeypatch):
    """Every integration of the fit uses the method and tolerances asked for."""
    import importlib

    # progression.simulate is also a function name at the package root: take the module
    simulate_package = importlib.import_module("progression.simulate")

    seen = []
    real = simulate_package.simulate

    def spy(*args, **kwargs):
        seen.append((kwargs.get("method"), kwargs.get("rtol")))
        return real(*args, **kwargs)

    # the fit imports simulate from the package at call time
    monkeypatch.setattr(simulate_package, "simulate", spy)
    cfg = config(tmp_path)
    data = decay_data()
    fitted = pg.fit(cfg, data=data, solver=SolverOptions(method="BDF", rtol=1e-8))
    assert fitted.provenance["solver"]["method"] == "BDF"
    assert fitted.provenance["solver"]["rtol"] == 1e-8
    # the spy sees simulate's own keywords; where the fit passes them, they are BDF's
    assert seen, "the fit made no simulate call the spy could see"
    assert {m for m, _ in seen} == {"BDF"}
    assert {r for _, r in seen} == {1e-8}
    # the estimates equal the closed form (log x linear in t) whatever the integrator
    reference = pg.fit(cfg, data=data)
    np.testing.assert_allclose(fitted.subject_parameters, reference.subject_parameters,
                               rtol=1e-5)
