"""One-line representations of the objects users hold in scripts and notebooks.

The reprs ``dataclass`` wrote printed every array of a fit, comparison or trial pool (a
population fit of the shipped ALS cohort: 50,879 characters; a comparison: 97,326), so a REPL
or notebook cell drowned in numbers. Each object now says what it is and how big in one
line; ``str(fit)`` is the fit's summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.fit import fit as run_fit
from progression.fit import parse_fit_config
from progression.virtual.trial_results import PowerUncertainty, TrialResults
from progression.virtual.trials import VirtualTrial

ROOT = Path(__file__).resolve().parents[1]
#: Long enough for every fact below, short enough to read at a glance.
LIMIT = 300


def one_line(obj) -> str:
    text = repr(obj)
    assert "\n" not in text and len(text) <= LIMIT, text
    return text


@pytest.fixture(scope="module")
def theoph():
    config = ROOT / "configs" / "theoph_population.toml"
    return run_fit(parse_fit_config(config.read_text(), source=str(config),
                                    base_dir=config.parent))


def test_a_population_fit_says_what_was_fitted_and_prints_its_summary(theoph):
    text = one_line(theoph)
    assert text.startswith("FitResult('theoph_population', focei fit of 'pk_oral'")
    assert "12 subjects" in text and f"{int(np.sum(theoph.n_obs))} observations" in text
    assert f"-2 log L {theoph.objective:.4f}" in text
    assert str(theoph) == theoph.summary()
    # print(fit) of a population fit is the CLI's screen: estimates with RSE % and CIs
    text = str(theoph)
    assert "typical value" in text and "RSE %" in text and "95 % CI" in text
    ka_se = theoph.population.fixed_effects_se["ka"]
    assert f"{100 * ka_se / theoph.population.fixed_effects['ka']:.3g}" in text
    assert "  numbers: exact outputs, forward sensitivities" in text     # which path
    pop = one_line(theoph.population)
    assert pop.startswith(f"PopulationPart(focei, OFV {theoph.population.ofv:.4f}")
    assert "random effects ['ka', 'CL', 'V']" in pop and "converged" in pop
    problem = one_line(theoph.problem)
    assert problem.startswith("Problem('pk_oral', observables ['conc']")


def test_configuration_objects_show_only_what_differs_from_their_defaults(theoph):
    iv = pg.Intervention(scale={"CL": 0.5}, label="half CL")
    assert repr(iv) == "Intervention(scale={'CL': 0.5}, label='half CL')"
    assert repr(pg.Intervention("kA", scale=0.5, start=6)) == \
        "Intervention(parameter='kA', scale={'kA': 0.5}, start=6.0, label='kA')"
    fixed = next(p for p in theoph.parameters if p.estimate == "fixed")
    text = one_line(fixed)
    assert f"name={fixed.name!r}" in text and "prior" not in text and "anchor" not in text


def test_comparison_and_populations_are_one_line(theoph):
    scen = {"none": [], "half CL": [pg.Intervention(scale={"CL": 0.5}, label="half CL")]}
    cmp_ = pg.compare(theoph, scen, horizon=24, step=0.5,
                      endpoints=pg.Endpoints(function="conc", threshold=2.0))
    assert one_line(cmp_) == ("Comparison('pk_oral', scenarios ['none', 'half CL'], "
                              "reference 'none', 12 subjects, 49 times to 24, "
                              "0 parameter draws)")
    vp = pg.VirtualPopulation.from_fit(theoph, n=40, seed=1)
    text = one_line(vp)
    assert text.startswith("VirtualPopulation('pk_oral', 40 subjects, \"40 new patients")
    assert text.endswith("with parameter uncertainty)")


def test_trials_and_their_results_name_design_and_power():
    trial = VirtualTrial({"placebo": [], "half kA": [pg.Intervention("kA", scale=0.5)]},
                         model="als_reduced", follow_up=6.0, visit_every=3.0)
    assert one_line(trial) == ("VirtualTrial(arms ['placebo', 'half kA'], model "
                               "'als_reduced', endpoint 'slope', follow-up 6, visits every 3)")
    pool = trial.simulate_pool(24, seed=1)
    assert one_line(pool).startswith("TrialPool(arms ['placebo', 'half kA'], 24 patients, "
                                     "3 visits to 6, ")
    curve = trial.power([8, 12], reps=4, pool=pool, seed=2)
    p8, p12 = curve.power()
    assert one_line(curve) == (f"PowerCurve(endpoint 'slope', 'half kA vs placebo', power "
                               f"{p8:.2f} / {p12:.2f} at 8 / 12 per arm)")
    first = curve.results[0]
    assert one_line(first) == (f"TrialResults(endpoint 'slope', 8 per arm, 4 replicates, "
                               f"power: half kA vs placebo {p8:.2f})")
    row = first.summary()[0]                  # numbers, not np.float64(...), when printed
    assert all(type(row[k]) is float for k in ("power", "power_ci_low", "power_ci_high",
                                                "mean_estimate", "sd_estimate",
                                                "median_relative_effect")), row
    # power under parameter uncertainty: at the estimates, and the mean over the draws
    unc = PowerUncertainty(at_estimates=first, draws=[first, curve.results[1]],
                           population=np.zeros((2, 1)))
    assert one_line(unc) == (f"PowerUncertainty(8 per arm, 'half kA vs placebo', power at "
                             f"the estimates {p8:.2f}, assurance {(p8 + p12) / 2:.2f} over "
                             f"2 draws)")
    empty = TrialResults(endpoint="slope", n_per_arm=8, rows=[], alpha=0.05, pool_size=0,
                         eligible_fraction=0.0)
    assert one_line(empty) == "TrialResults(endpoint 'slope', 8 per arm, 0 replicates)"
