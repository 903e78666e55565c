"""The two front doors meet: a saved fit feeds intervention scenarios."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg

ROOT = Path(__file__).resolve().parents[1]
FIT = ROOT / "fits" / "als_synthetic_individual"


def test_shipped_fit_loads_and_simulates_its_subjects_again():
    result = pg.load_fit(FIT)
    assert len(result.subject_ids) == 200
    assert result.subject_parameters.shape == (200, result.model.n_parameters)
    # most of its subjects have no covariance for Tmax (non-identifiable): drawn at the estimate
    with pytest.warns(UserWarning, match="no covariance for Tmax"):
        draws = result.sample_parameters(3, np.random.default_rng(0))
    assert draws.shape == (3, 200, result.model.n_parameters)
    times = result.time_offsets[:5, None] + np.array([0.0, 6.0])
    sim = pg.simulate(result.model, result.subject_parameters[:5], np.unique(times))
    assert np.all(np.isfinite(sim["ALSFRS_R"][:, 0]))


def test_compare_scenarios_on_the_shipped_fit_from_the_config(tmp_path):
    out = subprocess.run([sys.executable, "-m", "progression.cli", "compare",
                          str(ROOT / "configs" / "scenarios" / "fitted_cohort.toml"),
                          "--out", str(tmp_path / "fc"), "--draws", "2", "--no-figures"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "half glial toxicity" in out.stdout and "slowing" in out.stdout
    assert (tmp_path / "fc" / "summary.md").exists()
