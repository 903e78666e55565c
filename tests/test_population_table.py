"""The population parameter table as data: ``fit.population.table(level)``.

``report.md`` printed the table (estimate, SE, RSE %, Wald CI, CV %, shrinkage) but Python
users had only ``fit.parameter_table()``, which summarises the per-subject values. A FOCE-I
fit of R's Theoph with a weight effect on CL (estimated) and on V (held) and a (ka, CL) Omega
block has every kind of row; each is checked against the population part's own numbers and
an interval computed here from the covariance step (estimation scale, mapped back).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from progression.fit import fit, parse_fit_config
from progression.fit._report_population import population_lines

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import theoph_weight_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"
EXTRA = theoph_weight_block(("ka", "CL"))


@pytest.fixture(scope="module")
def theoph():
    text = THEOPH.read_text().replace('"../data/examples/theoph.csv"',
                                      repr(str(ROOT / "data/examples/theoph.csv")))
    return fit(parse_fit_config(text + EXTRA, source="theoph_block.toml",
                                base_dir=THEOPH.parent))


def _wald(pop, name: str, level: float, transform) -> tuple[float, float]:
    """The interval on the estimation scale from the covariance step, mapped back."""
    i = list(pop.covariance_names).index(name)
    centre = np.asarray(pop.parameter_vector(), float)[i]
    half = stats.norm.ppf(0.5 + level / 2) * math.sqrt(pop.covariance[i, i])
    return transform(centre - half), transform(centre + half)


def test_every_row_matches_the_population_estimates(theoph):
    pop = theoph.population
    level = 0.9
    rows = {r["parameter"]: r for r in pop.table(level)}
    assert [r["kind"] for r in pop.table(level)] == (
        ["typical value"] * 3 + ["variance"] * 3 + ["covariance"] + ["residual"]
        + ["coefficient"] * 2)
    for k in ("ka", "CL", "V"):
        r = rows[k]
        assert r["estimate"] == pop.fixed_effects[k] and r["se"] == pop.fixed_effects_se[k]
        assert r["rse_percent"] == pytest.approx(100 * r["se"] / r["estimate"], rel=1e-12)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(
            _wald(pop, f"theta {k}", level, math.exp), rel=1e-9)
        assert math.isnan(r["cv_percent"]) and not r["fixed"]
    assert "at the reference covariates" in rows["CL"]["label"]
    for e, k in enumerate(pop.omega_names):
        r = rows[f"omega^2 {k}"]
        assert r["estimate"] == pop.omega[e, e] and r["se"] == pop.omega_se[k]
        if k == "V":                      # a 1 x 1 block: its log variance is estimated
            assert (r["ci_low"], r["ci_high"]) == pytest.approx(
                _wald(pop, f"log omega^2 {k}", level, math.exp), rel=1e-9)
        else:                             # inside the block: Cholesky factors are
            assert math.isnan(r["ci_low"]) and math.isnan(r["ci_high"])
        assert r["cv_percent"] == pytest.approx(100 * math.sqrt(math.expm1(pop.omega[e, e])),
                                                rel=1e-12)
        assert r["shrinkage_percent"] == pytest.approx(100 * pop.shrinkage[k], rel=1e-12)
    cov = rows["omega CL,ka"]
    i, j = pop.omega_names.index("CL"), pop.omega_names.index("ka")
    assert cov["estimate"] == pop.omega[i, j] != 0.0
    corr = pop.omega[i, j] / math.sqrt(pop.omega[i, i] * pop.omega[j, j])
    assert f"correlation {corr:.3f}" in cov["label"]
    assert math.isnan(cov["ci_low"])                    # none inside an Omega block
    (sigma,) = pop.sigma
    assert rows[sigma]["estimate"] == pop.sigma[sigma] and rows[sigma]["kind"] == "residual"
    held = rows["V~weight"]
    assert held["fixed"] and held["estimate"] == 1.0 and math.isnan(held["se"])
    free = rows["CL~weight"]
    assert not free["fixed"] and free["se"] == pop.coefficients_se["CL~weight"] > 0
    assert (free["ci_low"], free["ci_high"]) == pytest.approx(
        _wald(pop, "coef CL~weight", level, float), rel=1e-9)
    assert "power effect on CL, reference 70" in free["label"]


def test_the_report_prints_the_same_rows(theoph):
    lines = population_lines(theoph)
    for r in theoph.population.table(theoph.confidence):
        line = next(li for li in lines if li.startswith(f"| {r['label']} |"))
        if r["fixed"]:
            assert f"| {r['estimate']:.5g} | fixed |" in line
        else:
            assert f"| {r['estimate']:.5g} | {r['se']:.3g} | {r['rse_percent']:.3g} |" in line
