"""Which Kaplan-Meier estimates the published 10-year survival from onset (issue 13).

A simulated truth with the structure of the ALS clinic preset: patients differ in pace; time
from onset to death T shortens with pace; diagnosis comes after a delay D; a registry enrols
patients alive at diagnosis (T > D) and follows their vital status for 12-150 months.

* KM with delayed entry at diagnosis estimates P(T > t) over everyone with onset, including
  deaths before diagnosis, when D is independent of T; when fast progressors are diagnosed
  sooner (as in the preset and in ENCALS, where the delay predicts survival) it is biased low.
* KM from onset over the enrolled patients, censored at the registry's end, estimates
  P(T > t | T > D), the survival of diagnosed patients that registries publish.
"""

from __future__ import annotations

import numpy as np
import pytest

from progression.stats.survival import kaplan_meier


def _km_at(ts, S, t):
    k = np.searchsorted(ts, t, side="right")
    return 1.0 if k == 0 else float(S[k - 1])


def _population(n, dependent, seed=5):
    rng = np.random.default_rng(seed)
    pace = np.exp(0.7 * rng.standard_normal(n))
    T = 30.0 / pace * np.exp(0.6 * rng.standard_normal(n))                  # months
    D = 10.0 * np.exp(0.6 * rng.standard_normal(n))
    if dependent:
        D = D * pace ** -0.5                                                # faster: sooner
    V = rng.uniform(12.0, 150.0, n)                                         # registry
    return T, D, V


@pytest.mark.parametrize("dependent", [False, True])
def test_delayed_entry_km_needs_quasi_independent_truncation(dependent):
    T, D, V = _population(200_000, dependent)
    enrolled = T > D
    exit_ = np.minimum(T, D + V)[enrolled]
    died = (T <= D + V)[enrolled]
    ts, S = kaplan_meier(exit_, died, entry=D[enrolled])
    truth_all = float(np.mean(T > 120.0))          # everyone with onset
    est = _km_at(ts, S, 120.0)
    if not dependent:
        # independent truncation: the delayed-entry KM recovers the whole population (about
        # 2,000 of 200,000 at risk at 120 months: SE ~0.002)
        assert est == pytest.approx(truth_all, abs=0.006)
    else:
        # fast progressors diagnosed sooner: the early risk sets hold the fastest patients;
        # 0.053 against 0.067 here (a fifth low, ~5 standard errors)
        assert est < truth_all - 0.01


@pytest.mark.parametrize("dependent", [False, True])
def test_registry_km_from_onset_estimates_survival_of_diagnosed_patients(dependent):
    T, D, V = _population(200_000, dependent)
    enrolled = T > D
    exit_ = np.minimum(T, D + V)[enrolled]
    died = (T <= D + V)[enrolled]
    ts, S = kaplan_meier(exit_, died)              # from onset, no delayed entry
    truth_diagnosed = float(np.mean(T[enrolled] > 120.0))
    # censoring at D + V depends on the pace only through D (a small dependence): within
    # 0.01 of the diagnosed patients' 10-year survival (0.076-0.079 here)
    assert _km_at(ts, S, 120.0) == pytest.approx(truth_diagnosed, abs=0.01)
    # and the two estimands differ by the deaths before diagnosis
    assert truth_diagnosed > float(np.mean(T > 120.0))


@pytest.mark.parametrize("seed", [1, 3])
def test_describe_reads_the_registry_estimand_on_the_clinic_preset(seed):
    # progression.als.onset_survival (describe's survival rows) on a registry enrolled at
    # diagnosis: the KM from onset without delayed entry estimates the enrolled patients' own
    # median survival from onset (their latent death times, no censoring); vital status is
    # followed 12-150 months, so censoring before the median is rare: measured within 0.2
    # months on seeds 1-3 at 400 patients, tolerance 1 month. The delayed-entry KM estimates
    # another quantity (deaths before diagnosis count; fast progressors diagnosed sooner): its
    # median is less than half (6-14 months against 35-42 measured).
    from pathlib import Path

    from progression.als.describe import cohort_statistics, km_at, km_quantile
    from progression.als.onset_survival import onset_survival
    from progression.als.synthetic import synthetic_cohort

    clinic = Path(__file__).resolve().parents[1] / "configs" / "cohorts" / "als_clinic.toml"
    cohort, truth = synthetic_cohort(clinic, n=400, seed=seed)
    since = truth["death_model_time"] - truth["onset_model_time"]
    since = np.where(np.isfinite(since), since, np.inf)
    reg = onset_survival(cohort)
    med = km_quantile(reg.times, reg.survival, 0.5)
    assert len(reg.exit) == 400 and med == pytest.approx(float(np.median(since)), abs=1.0)
    delayed = onset_survival(cohort, delayed_entry=True)
    assert km_quantile(delayed.times, delayed.survival, 0.5) < 0.5 * med
    stats = cohort_statistics(cohort, setting="clinic")
    assert stats["survival_median"] == med
    assert stats["survival_median_delayed"] == km_quantile(delayed.times, delayed.survival, 0.5)
    assert stats["survival_10y"] == km_at(reg.times, reg.survival, 120.0)
