"""Between-patient spread of ALSFRS-R slopes in the als_systemic §5 population (issue 13).

The published SD (~0.62 points/month, van Eijk 2019 [S]; 0.65 trial-eligible) comes from a
mixed model over every registry patient, including those who die during follow-up. The
§5 population (progression/als/defaults.toml [variability], pace log-SD 0.9, N0 SD 0.04)
with als_systemic's death hazard (alpha1 0.02, alpha2 0.5) is checked on that estimand: each
trial-eligible patient's noiseless least-squares slope over the monthly visits of the first
12 months while alive (at least 3 visits). Conditioning on 12-month survival drops the fast
decliners (the hazard follows the decline), which is why the survivors-only SD is lower.
Pool of 400 eligible patients, seed 1 (benchmarks/als_calibration_table.py runs seeds 1-5).
"""

from __future__ import annotations

import numpy as np
import pytest

from progression.virtual.trials import Enrolment, VirtualTrial


@pytest.fixture(scope="module")
def pool():
    trial = VirtualTrial({"a": [], "b": []}, follow_up=12.0, visit_every=1.0,
                         enrolment=Enrolment(duration=(6.0, 24.0)))
    return trial.simulate_pool(400, seed=1)


def _slopes(pool):
    F, x = pool.function[0], pool.visits
    every = np.array([np.polyfit(x[m], f[m], 1)[0] for f in F
                      if (m := np.isfinite(f)).sum() >= 3])
    alive = np.isfinite(F).all(axis=1)
    survivors = np.polyfit(x, F[alive].T, 1)[0]
    return every, survivors, alive


def test_slope_sd_over_all_patients_is_in_the_published_range(pool):
    every, survivors, alive = _slopes(pool)
    sd_all, sd_surv = float(np.std(every, ddof=1)), float(np.std(survivors, ddof=1))
    print(f"SD of slopes: all {sd_all:.3f}, 12-month survivors {sd_surv:.3f}, "
          f"alive at 12 months {alive.mean():.2f}")
    # accepted 0.5-0.8 (targets: ~0.62-0.65); seed 1 gave 0.576 when the defaults were set
    assert 0.5 <= sd_all <= 0.8
    # selection by death compresses the survivors' spread (0.47 at seed 1)
    assert sd_surv < sd_all
    # the trial-eligible population declines ~0.8-1.0 points/month on average (PRO-ACT 1.02)
    assert -1.1 <= float(np.mean(every)) <= -0.75


def test_the_functional_mapping_varies_between_patients(pool):
    from progression.model import load_model

    model = load_model("als_systemic")
    n0 = pool.parameters[:, model.parameter_index("N0")]
    # N0 ~ N(0.10, 0.04^2) clipped to [0, 0.2]: the residual pool at total loss of function
    assert 0.03 <= float(np.std(n0)) <= 0.05
    assert float(n0.min()) >= 0.0 and float(n0.max()) <= 0.2
