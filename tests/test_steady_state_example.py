"""The shipped steady-state example: ``data/examples/steady_state.csv`` is what its generator
writes, and ``configs/steady_state_population_saem.toml`` reads it with its SS = 1 / ADDL
records and fits it on SAEM's compiled RK4 path (the fit itself is measured in the README;
the path's recovery of a simulated truth in ``test_saem_dosed_ss.py``)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_steady_state_data", ROOT / "examples" / "make_steady_state_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_data_is_the_generators_output(tmp_path, monkeypatch):
    gen = _generator()
    monkeypatch.setattr(gen, "OUT", tmp_path / "steady_state.csv")
    gen.main()
    assert (tmp_path / "steady_state.csv").read_text() == (
        ROOT / "data" / "examples" / "steady_state.csv").read_text()


def test_config_reads_steady_state_records_and_takes_the_rk4_path():
    pytest.importorskip("numba")
    from progression.fit.config import read_fit_config
    from progression.fit.design import designs_from_cohort
    from progression.fit.estimate import read_data
    from progression.fit.estimators.focei import population_layout
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.population._saem_model import applicable
    from progression.fit.problem import Problem

    cfg = read_fit_config(ROOT / "configs" / "steady_state_population_saem.toml")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    assert len(designs) == 40
    for d in designs:
        assert [(r.time, r.ss, r.ii) for r in d.doses] == [(0.0, 1, 12.0), (12.0, 0, 0.0),
                                                            (24.0, 0, 0.0)]
        assert np.allclose(d.time, [0.5, 1, 2, 4, 8, 11.9, 24.5, 26, 30, 35])
    problem = Problem.from_config(cfg)
    if problem.model.kernels is None:
        pytest.skip("the model has no compiled kernels (numpy backend)")
    problem.fix_grid_step(designs)
    model = ProblemModel(problem, designs, population_layout(problem)[0])
    assert applicable(model.problem, model.designs)
