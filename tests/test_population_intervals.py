"""The population parameter table's Wald intervals (PopulationPart.intervals, report, CLI)."""

import math
from pathlib import Path

import numpy as np
import pytest

from progression.fit._population_summary import population_summary
from progression.fit.parts import PopulationPart

Z95 = 1.959963984540054
SHIPPED = Path(__file__).resolve().parents[1] / "fits" / "als_synthetic_population"


@pytest.fixture
def part():
    """Typical values on the log, logit and linear scales (one held), a covariate coefficient,
    two variances, one residual SD, and a covariance step on the estimation scales."""
    names = ("theta CL", "theta F", "theta shift", "theta V", "log omega^2 CL",
             "log omega^2 shift", "log DV.a", "coef CL~WT")
    se = np.array([0.1, 0.4, 2.0, 0.0, 0.3, 0.5, 0.05, 0.02])
    corr = np.eye(8)
    corr[0, 4] = corr[4, 0] = 0.3              # correlations do not change Wald intervals
    cov = corr * np.outer(se, se)
    return PopulationPart(
        fixed_effects={"CL": 2.0, "F": 0.6, "shift": -3.0, "V": 30.0},
        fixed_effects_se={}, omega_names=("CL", "shift"), omega=np.diag([0.09, 4.0]),
        sigma={"DV.a": 0.5}, ebes=np.zeros((3, 2)), shrinkage={"CL": 0.1, "shift": 0.2},
        covariance=cov, covariance_names=names,
        scales={"CL": "log", "F": "logit", "shift": "linear", "V": "log"},
        bounds={"CL": (0.01, 100.0), "F": (0.0, 1.0), "shift": (-50.0, 50.0),
                "V": (1.0, 1000.0)},
        covariate_effects=({"parameter": "CL", "covariate": "WT", "effect": "power",
                            "reference": 70.0, "levels": [], "values": [0.75],
                            "estimated": [True], "lower": [-5.0], "upper": [5.0]},),
        coefficients={"CL~WT": 0.75}, fixed_typical=("V",))


def test_intervals_are_wald_on_the_estimation_scale_mapped_back(part):
    ci = part.intervals()
    # log scale: exp(log 2 -+ z 0.1), written out independently of the package's transforms
    assert ci["CL"] == pytest.approx((2.0 * math.exp(-Z95 * 0.1), 2.0 * math.exp(Z95 * 0.1)),
                                     rel=1e-12)
    # logit scale in (0, 1): the logistic function of logit(0.6) -+ z 0.4
    x = math.log(0.6 / 0.4)
    expected = tuple(1.0 / (1.0 + math.exp(-(x + s * Z95 * 0.4))) for s in (-1, 1))
    assert ci["F"] == pytest.approx(expected, rel=1e-12)
    assert 0.0 < ci["F"][0] < 0.6 < ci["F"][1] < 1.0
    assert ci["shift"] == pytest.approx((-3.0 - Z95 * 2.0, -3.0 + Z95 * 2.0), rel=1e-12)
    assert ci["omega^2 CL"] == pytest.approx((0.09 * math.exp(-Z95 * 0.3),
                                              0.09 * math.exp(Z95 * 0.3)), rel=1e-12)
    assert ci["omega^2 shift"] == pytest.approx((4.0 * math.exp(-Z95 * 0.5),
                                                 4.0 * math.exp(Z95 * 0.5)), rel=1e-12)
    assert ci["DV.a"] == pytest.approx((0.5 * math.exp(-Z95 * 0.05),
                                        0.5 * math.exp(Z95 * 0.05)), rel=1e-12)
    assert ci["CL~WT"] == pytest.approx((0.75 - Z95 * 0.02, 0.75 + Z95 * 0.02), rel=1e-12)
    assert all(math.isnan(v) for v in ci["V"])            # held: no interval


def test_level_changes_the_width_and_bad_levels_are_refused(part):
    z90 = 1.6448536269514722
    assert part.intervals(0.90)["shift"] == pytest.approx((-3.0 - z90 * 2.0,
                                                           -3.0 + z90 * 2.0), rel=1e-12)
    for bad in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match="level"):
            part.intervals(bad)


def test_without_a_covariance_step_there_are_no_intervals(part):
    import dataclasses

    ci = dataclasses.replace(part, covariance=None).intervals()
    assert set(ci) >= {"CL", "omega^2 CL", "DV.a", "CL~WT"}
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in ci.values())


def test_the_shipped_population_fit_reports_its_intervals():
    import progression as pg
    from progression.fit._report_population import population_lines

    fit = pg.load_fit(SHIPPED)
    ci = fit.population.intervals()
    lo, hi = ci["omega^2 eD"]
    assert lo < float(fit.population.omega[1, 1]) < hi
    table = "\n".join(population_lines(fit))
    assert "| parameter | estimate | SE | RSE % | 95 % CI |" in table
    assert f"{lo:.4g} – {hi:.4g}" in table
    summary = population_summary(fit)
    assert f"{lo:.4g} - {hi:.4g}" in summary
    fT0 = next(line for line in summary.splitlines() if line.strip().startswith("fT0 ")
               and "fixed" in line)
    assert fT0.rstrip().endswith("-")


def test_a_huge_standard_error_gives_an_open_upper_end(part):
    import dataclasses

    cov = np.array(part.covariance)
    cov[4, 4] = 1e6                               # SE 1000 of log omega^2 CL
    lo, hi = dataclasses.replace(part, covariance=cov).intervals()["omega^2 CL"]
    assert lo == pytest.approx(0.0, abs=1e-300) and hi == math.inf
