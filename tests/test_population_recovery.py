"""Recovery of the ALS population model from simulated cohorts (slow: about half an hour per
replicate of 200 patients on 2 shared cores).

A reduced version of ``benchmarks/population_recovery.py`` (3 replicates of 200 virtual
patients simulated from known typical values, Omega and residual SDs, fitted with the shipped
config) against the issue's figures: median relative error of the typical values <= 5 %,
of the Omega diagonal <= 20 %. The issue's coverage band (90-98 % of 95 % intervals) needs
>= 50 replicates; with 3 it is checked as: every parameter's interval covers the truth in at
least 2 of 3 replicates (probability of failing by chance with exact 95 % coverage: 0.7 %
per parameter).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import population_recovery as pr  # noqa: E402

pytestmark = pytest.mark.slow


def test_simulated_cohort_has_the_fitted_variability():
    # the generator's config is the fitted population model (the pace parametrisation):
    # log k0 and log kA move together through one factor (kA = GLIAL_RATIO k0 for every
    # patient), eD log-normal, Tmax held, no covariate effects
    doc = pr.cohort_config(200, 1)
    pace = doc["factors"]["pace"]
    assert pace["sd"] ** 2 == pytest.approx(pr.OMEGA["k0"])
    assert pace["loadings"] == {"k0": 1.0, "kA": 1.0}
    assert "sd" not in doc["parameters"]["k0"] and "sd" not in doc["parameters"]["kA"]
    assert doc["parameters"]["kA"]["typical"] == pytest.approx(pr.GLIAL_RATIO * pr.THETA["k0"])
    assert doc["parameters"]["eD"]["sd"] ** 2 == pytest.approx(pr.OMEGA["eD"])
    assert doc["fixed"]["Tmax"] == pr.TMAX
    for p in ("k0", "kA", "eD"):
        assert "effects" not in doc["parameters"][p]
    assert doc["observables"]["NfL"]["subject_sd"] == pr.SUBJECT_SD["NfL"]
    assert doc["observables"]["CRP"]["residual"] == "normal"
    _, truth = pr.simulate_replicate(20, 1)
    assert set(truth["typical"]) == {"k0", "eD", "time_offset"}


@pytest.mark.xfail(strict=True, reason=(
    "issue 11 open: SAEM's stochastic-approximation information is not positive definite on "
    "this model (pace-onset correlation -1 through the onset rows), so no replicate has SEs; "
    "50 x 200 study (pre-pace parametrisation): typical values within 8-10 %, Omega k0 -89 %"))
def test_recovery_three_replicates():
    rec = pr.run(3, 200, seed0=1000, out=None, verbose=False)
    s = rec["summary"]
    assert s["replicates"] == 3
    for p, v in s["typical"].items():
        assert abs(v["median_rel_error"]) <= pr.TARGETS["typical_median_rel_error"], (p, v)
    for p, v in s["omega"].items():
        assert abs(v["median_rel_error"]) <= pr.TARGETS["omega_median_rel_error"], (p, v)
    for label, c in s["coverage"].items():
        assert c["with_se"] == 3, label
        assert c["covered"] >= 2, (label, c)
