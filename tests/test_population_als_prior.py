"""The shipped MAP fits of the synthetic ALS cohort (``configs/als_synthetic_population_prior.toml``
and ``configs/als_synthetic_joint_prior.toml``: the shipped longitudinal and joint configs with
the literature's inverse-Wishart prior on omega^2 eD, ``eta_prior = { value = 0.14, df = 30 }``)
against the generating truth, beside the shipped maximum-likelihood fits: the numbers README
quotes, the targets they meet (the joint one every target but omega^2 eD), and omega^2 eD's
miss (strict xfails), smaller with the prior."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "als_synthetic_population_prior.toml"
FIT = ROOT / "fits" / "als_synthetic_population_prior"
ML_FIT = ROOT / "fits" / "als_synthetic_population"
JOINT_FIT = ROOT / "fits" / "als_synthetic_joint_prior"
JOINT_ML_FIT = ROOT / "fits" / "als_synthetic_joint"

#: The issue's acceptance figures (as tests/test_population_als.py).
TYPICAL_TOL, RSE_MAX, OMEGA_TOL = 0.10, 25.0, 0.30
TARGETS = ("k0", "eD", "Q0", "nfl_scale", "onset shift")
#: Measured 2026-12-03 (`progression fit configs/als_synthetic_population_prior.toml`, then
#: `python -m progression.als.population_truth fits/als_synthetic_population_prior
#: fits/als_synthetic_individual`; README "With the literature's prior on omega^2 eD").
MEASURED = {("k0", "rel"): 0.041, ("k0", "omega_rel"): -0.175, ("eD", "rel"): -0.154,
            ("eD", "omega_rel"): 0.621, ("eD", "rse"): 13.3, ("Q0", "omega_rel"): 0.236,
            ("nfl_scale", "omega_rel"): -0.024, ("onset shift", "rel"): -0.028}


@pytest.fixture(scope="module")
def targets():
    if not (FIT / "fit.json").exists():
        pytest.fail(f"{FIT} is missing: run `progression fit {CONFIG.relative_to(ROOT)}`")
    from progression.als.population_truth import target_table

    return {name: target_table(folder, n_onset=2000, seed=0)[1]
            for name, folder in (("map", FIT), ("ml", ML_FIT), ("joint map", JOINT_FIT),
                                 ("joint ml", JOINT_ML_FIT))}


def test_shipped_map_fit_carries_its_prior():
    """The fit folder is the config's MAP fit: the prior is in the population part, and its
    -2 log p is the inverse-Wishart's at the estimated variance."""
    import math

    import progression as pg

    pop = pg.load_fit(FIT).population
    assert pop.method == "saem" and pop.priors == {"omega^2 eD": {"value": 0.14, "df": 30.0}}
    e = list(pop.omega_names).index("eD")
    w = float(pop.omega[e, e])
    assert pop.prior_objective == pytest.approx(32.0 * math.log(w) + 30.0 * 0.14 / w,
                                                rel=1e-9)


def test_shipped_map_fit_measured_numbers(targets):
    """The numbers README quotes (a change of the fit shows here first)."""
    for (p, key), value in MEASURED.items():
        assert targets["map"][p][key] == pytest.approx(value, abs=0.006 if key != "rse"
                                                        else 0.1), (p, key)


@pytest.mark.parametrize("kind", ["", "joint "])
def test_prior_moves_ed_towards_the_truth(targets, kind):
    """The prior brings both eD errors down against maximum likelihood (longitudinal: typical
    -24.5 % -> -15.4 %, omega^2 +363 % -> +62 %; joint: -18.6 % -> -8.3 %, +272 % -> +62 %)
    and leaves every other target as it was (met)."""
    ml, mp = targets[kind + "ml"], targets[kind + "map"]
    assert abs(mp["eD"]["rel"]) < abs(ml["eD"]["rel"])
    assert abs(mp["eD"]["omega_rel"]) < abs(ml["eD"]["omega_rel"]) / 4
    for p in TARGETS:
        if p == "eD":
            continue
        assert abs(mp[p]["rel"]) < TYPICAL_TOL and mp[p]["rse"] < RSE_MAX, p
        assert abs(mp[p]["omega_rel"]) < OMEGA_TOL, p


def test_joint_map_fit_meets_the_typical_ed_target(targets):
    """With the deaths and the prior, eD's typical value is within 10 % (-8.3 %) with RSE
    under 25 % (13.1): every issue-11 target but omega^2 eD is met."""
    jm = targets["joint map"]
    assert abs(jm["eD"]["rel"]) < TYPICAL_TOL and jm["eD"]["rse"] < RSE_MAX
    assert jm["eD"]["rel"] == pytest.approx(-0.083, abs=0.006)
    assert jm["eD"]["omega_rel"] == pytest.approx(0.616, abs=0.006)


@pytest.mark.xfail(strict=True, reason="eD's typical value misses 10 % with the prior too "
                                       "(-15.4 %)")
def test_map_fit_ed_typical_within_10_percent(targets):
    assert abs(targets["map"]["eD"]["rel"]) < TYPICAL_TOL


@pytest.mark.xfail(strict=True, reason="omega^2 eD misses 30 % with the prior too (+62 %)")
@pytest.mark.parametrize("kind", ["map", "joint map"])
def test_map_fit_ed_omega_within_30_percent(targets, kind):
    assert abs(targets[kind]["eD"]["omega_rel"]) < OMEGA_TOL
