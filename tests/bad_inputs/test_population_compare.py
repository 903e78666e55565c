"""New patients from a population fit (``[source] patients = "new"``, ``pg.compare(...,
population=N)``, ``VirtualPopulation.from_fit``, ``VirtualTrial(population=...)``) with bad
input: a non-positive size, a fit without a population part, a covariate of the population
model without values, a bad ``patients`` value. The command exits 2 with one message naming
the config and the key and writes nothing; the Python API raises one ConfigError/FitError
naming the argument or covariate."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError, FitError
from progression.fit import fit as run_fit
from progression.fit import parse_fit_config
from progression.fit.parts import PopulationPart
from progression.virtual.population import VirtualPopulation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _fit_support import config_text, simulate_cohort  # noqa: E402

WEIGHT_ON_KA = ({"parameter": "kA", "covariate": "weight", "effect": "power",
                 "reference": 70.0, "levels": [], "values": [0.75], "estimated": [True],
                 "lower": [None], "upper": [None]},)


def _part(**changes) -> PopulationPart:
    base = dict(fixed_effects={"kA": 0.0338}, fixed_effects_se={}, omega_names=("kA",),
                omega=np.array([[0.09]]), sigma={"ALSFRS_R.a": 1.0}, ebes=np.zeros((3, 1)),
                shrinkage={}, method="focei", covariance=np.diag([0.01, 0.01, 0.0025]),
                covariance_names=("theta kA", "log omega^2 kA", "log ALSFRS_R.a"),
                scales={"kA": "log"}, bounds={"kA": (0.005, 0.09)},
                omega_blocks=({"parameters": ["kA"], "fixed": False},))
    base.update(changes)
    return PopulationPart(**base)


@pytest.fixture(scope="module")
def fixed_fit():
    """als_reduced, 3 simulated subjects, nothing estimated (no population part)."""
    cohort, _ = simulate_cohort(3, seed=5, visits=[0, 3, 6])
    cfg = parse_fit_config(config_text(free=(), offset="fixed"), name="plain",
                           check_data=False)
    return run_fit(cfg, data=cohort)


@pytest.fixture(scope="module")
def folders(fixed_fit, tmp_path_factory):
    """Saved fits: without a population part; with one whose model uses a covariate the
    fitted data lack."""
    root = tmp_path_factory.mktemp("popcompare")
    plain = fixed_fit.save(root / "plain", figures=False)
    cov = dataclasses.replace(fixed_fit, name="needs_weight", population=_part(
        covariate_effects=WEIGHT_ON_KA, coefficients={"kA~weight": 0.75}))
    needs = cov.save(root / "needs_weight", figures=False)
    good = dataclasses.replace(fixed_fit, name="good", population=_part()).save(
        root / "good", figures=False)
    return {"plain": plain, "needs_weight": needs, "good": good}


def _config(tmp_path, source: str) -> Path:
    cfg = tmp_path / "compare.toml"
    cfg.write_text(f"[source]\n{source}\n\n[compare]\nhorizon = 6\nstep = 1\n\n"
                   '[scenarios]\n"none" = []\n')
    return cfg


@pytest.mark.parametrize("case, source, names", [
    ("no population part", 'fit = "{plain}"\npatients = "new"\nn = 10',
     ["source.patients", "has none", "plain"]),
    ("n = 0", 'fit = "{good}"\npatients = "new"\nn = 0', ["source.n", "positive integer"]),
    ("n negative", 'fit = "{good}"\npatients = "new"\nn = -5', ["source.n", "-5"]),
    ("n not an integer", 'fit = "{good}"\npatients = "new"\nn = 2.5', ["source.n", "2.5"]),
    ("bad patients", 'fit = "{good}"\npatients = "old"', ["source.patients", "'old'",
                                                          "'fitted', 'new'"]),
    ("patients without fit", 'model = "als_reduced"\npatients = "new"',
     ["source.patients", "needs source.fit"]),
    ("covariate missing", 'fit = "{needs_weight}"\npatients = "new"\nn = 10',
     ["source.patients", "covariate 'weight'", "subject"]),
])
def test_cli_refuses(case, source, names, folders, tmp_path, cli, refused, unchanged):
    cfg = _config(tmp_path, source.format(**{k: str(v) for k, v in folders.items()}))
    out = tmp_path / "out"
    with unchanged(tmp_path, *folders.values()):
        outcome = cli("compare", cfg, "--out", out, "--no-figures", "--quiet")
    refused(outcome, str(cfg), *names)


def test_cli_n_zero_is_refused(folders, tmp_path, cli, refused, unchanged):
    cfg = _config(tmp_path, f'fit = "{folders["good"]}"\npatients = "new"\nn = 5')
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out", "--n", "0")
    refused(outcome, "--n")


def test_python_api_refuses(fixed_fit):
    good = dataclasses.replace(fixed_fit, population=_part())
    for n in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match=r"^n: expected a positive integer"):
            VirtualPopulation.from_fit(good, n=n)
        with pytest.raises(ConfigError, match=r"^population: expected a positive integer"):
            pg.compare(good, {"none": []}, population=n, horizon=6.0)
    with pytest.raises(FitError, match="fit 'plain' .* has no population part"):
        VirtualPopulation.from_fit(fixed_fit, n=10)
    with pytest.raises(FitError, match="has no population part"):
        pg.compare(fixed_fit, {"none": []}, population=10, horizon=6.0)
    with pytest.raises(ConfigError, match="fit: expected a FitResult with a population part"):
        VirtualPopulation.from_fit(VirtualPopulation.typical("als_reduced"), n=10)


def test_covariates_missing(fixed_fit):
    fit = dataclasses.replace(fixed_fit, population=_part(
        covariate_effects=WEIGHT_ON_KA, coefficients={"kA~weight": 0.75}))
    with pytest.raises(FitError, match=r"covariate 'weight' .* subject 'P001' has no value"):
        VirtualPopulation.from_fit(fit, n=10)
    with pytest.raises(ConfigError, match=r"covariates: .* uses weight; expected 'weight', "
                                          r"found age"):
        VirtualPopulation.from_fit(fit, n=10, covariates={"age": [50.0, 60.0]})
    with pytest.raises(ConfigError, match="expected a mapping"):
        VirtualPopulation.from_fit(fit, n=10, covariates=[70.0, 80.0])
    with pytest.raises(ConfigError, match="one non-zero length"):
        VirtualPopulation.from_fit(fit, n=10, covariates={"weight": []})


def test_trial_population_refused(fixed_fit):
    from progression.trials import VirtualTrial

    arms = {"placebo": [], "other": []}
    with pytest.raises(FitError, match="has no population part"):
        VirtualTrial(arms, population=fixed_fit)
    good = dataclasses.replace(fixed_fit, population=_part())
    with pytest.raises(ConfigError, match="population and variability: give one"):
        VirtualTrial(arms, population=good, variability=pg.Variability(log_sd={"kA": 0.1}))
    with pytest.raises(ConfigError, match="model: the population is of model 'als_reduced'"):
        VirtualTrial(arms, population=good, model="als_systemic")
    with pytest.raises(ConfigError, match="population: expected a population fit"):
        VirtualTrial(arms, population="fits/x")
