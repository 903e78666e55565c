"""The Kaplan-Meier VPC of a joint population fit (``_vpc_survival``) against a closed form.

``tests/models/decay_death.toml`` with its constant hazard ``lost`` (rate h): N subjects whose
log h ~ N(log 0.1, 0.25), entering at data time 0 = model time 2 (time offset 2, so a subject
is enrolled only if event-free by model time 2), followed to data time 12. Given entry, a
subject's survival to data time t is exp(-h t) (memoryless), so the population's is

    S(t) = E[exp(-h (t + 2))] / E[exp(-2 h)]

(60-point Gauss-Hermite over log h), and with every subject followed to 12 a simulated
cohort's Kaplan-Meier at t is Binomial(N, S(t)) / N. The VPC's simulated median and 2.5 / 97.5
percentiles (400 cohorts) must match those binomial quantiles within 1.5 / N, which needs the
redraw of subjects dead before entry (else the cohorts shrink and the band widens) and the
hazard's score drawn per subject; also when the model's other terminal event (``death``)
comes first (the hazard's event is timed alone). Subjects without a record are left out.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from progression.fit import Design, Problem, parse_fit_config
from progression.fit._survival_likelihood import RIGHT, SurvivalRecord
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._vpc_survival import N_TIMES, survival_vpc, survival_vpc_lines

MODELS = Path(__file__).parent / "models"
H_TYPICAL, OMEGA, OFFSET, FOLLOW_UP, N = 0.1, 0.25, 2.0, 12.0, 40


def _problem(tmp_path, k=0.05):
    shutil.copy(MODELS / "decay_death.toml", tmp_path / "decay_death.toml")
    text = f"""
[fit]
model = "decay_death.toml"
estimator = "saem"
[data]
path = "decay_death.toml"
[error.log_x]
model = "additive"
a = 0.05
[parameters.k]
estimate = "fixed"
value = {k}
[parameters.h]
estimate = "population"
value = {H_TYPICAL}
bounds = [1e-4, 5.0]
scale = "log"
eta = {OMEGA}
[parameters.time_offset]
estimate = "fixed"
value = {OFFSET}
[survival]
hazard = "lost"
events = ["death"]
entry = "enrolment"
"""
    cfg = parse_fit_config(text, base_dir=tmp_path, name="decay_death",
                           source=str(tmp_path / "decay_death_fit.toml"), check_data=False)
    return Problem.from_config(cfg)


def _designs(record=True):
    t = np.arange(0.0, FOLLOW_UP + 0.1, 3.0)
    rec = SurvivalRecord(RIGHT, FOLLOW_UP, entry=0.0) if record else None
    return [Design(f"S{i + 1}", t, np.zeros(t.size, int), math.log(2.0) - 0.05 * (t + OFFSET),
                   np.zeros(t.size, int), np.full(t.size, np.nan), survival=rec)
            for i in range(N)]


def _population_survival(t):
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / math.sqrt(2.0 * math.pi)
    h = H_TYPICAL * np.exp(math.sqrt(OMEGA) * x)
    return float(w @ np.exp(-h * (t + OFFSET)) / (w @ np.exp(-h * OFFSET)))


@pytest.mark.parametrize("k", [0.05, 0.5])
def test_simulated_band_is_the_binomial_of_the_population_survival(tmp_path, k):
    """k = 0.5: the model's terminal event ``death`` (x falls to xd) comes at model time
    ln(4) / 0.5 = 2.8, before most ``lost`` events; the VPC times the fit's hazard's event
    alone, so the band is the same."""
    problem = _problem(tmp_path, k)
    cols = np.array([problem.names.index("h")])
    model = ProblemModel(problem, _designs(), cols)
    mu = np.full((N, 1), math.log(H_TYPICAL))
    v = survival_vpc(model, mu, np.array([[OMEGA]]), np.array([0]), 400, seed=5)
    assert v.event == "death" and v.times[-1] == pytest.approx(FOLLOW_UP)
    for j in v.scored:
        s = _population_survival(v.times[j])
        for got, q in ((v.lower[j], 0.025), (v.median[j], 0.5), (v.upper[j], 0.975)):
            want = binom.ppf(q, N, s) / N
            assert abs(got - want) <= 1.5 / N, (v.times[j], q, got, want)
    # the data: every subject followed to the end without the event, so outside the band
    # wherever the band's top is below 1
    outside = int(np.sum(v.upper[v.scored] < 1.0))
    assert np.all(v.observed == 1.0) and v.misses == outside and outside > N_TIMES // 2
    line = survival_vpc_lines(v)[0]
    assert f"at {outside} of {N_TIMES} times" in line and "vpc_survival.png" in line
    assert survival_vpc_lines(None) == []


def test_subjects_without_a_record_are_left_out(tmp_path):
    """A subject without an events-table row adds nothing to the survival likelihood; the VPC
    is over the others (the same simulations as a cohort of only those), and None when no
    subject has a record."""
    problem = _problem(tmp_path)
    cols = np.array([problem.names.index("h")])
    designs = _designs()
    designs[3] = _designs(record=False)[3]
    mu, om = np.full((N, 1), math.log(H_TYPICAL)), np.array([[OMEGA]])
    v = survival_vpc(ProblemModel(problem, designs, cols), mu, om, np.array([0]), 50, seed=1)
    kept = designs[:3] + designs[4:]
    w = survival_vpc(ProblemModel(problem, kept, cols), mu[:-1], om, np.array([0]), 50, seed=1)
    for a in ("lower", "median", "upper", "observed"):
        np.testing.assert_array_equal(getattr(v, a), getattr(w, a))
    none = [d.replace(survival=None) for d in designs]
    assert survival_vpc(ProblemModel(problem, none, cols), mu, om, np.array([0]), 5, 1) is None
