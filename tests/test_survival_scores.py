"""Survival scores of a joint fit's own subjects, conditioned on their recorded survival
(:mod:`progression.fit._survival_scores`, used by :func:`progression.compare` on a fit with
``[survival]``).

The toy model's hazard is Gompertz, ``h0 exp(g t)``, so ``Lambda(t) = h0 expm1(g t) / g`` in
closed form; the hazard's event fires where ``Lambda`` reaches ``E = -log Phi(-z)``.

1. ``score_of_threshold`` inverts ``E = -log Phi(-z)`` (1e-10) and clips at the bounds.
2. A death at data time T (model time T + offset): ``E = Lambda(T + offset)`` to 1e-6, and
   the simulated event (terminal events on) fires at T + offset (1e-4).
3. Right censoring at C: ``E - Lambda(C)`` over 2,000 subjects is Exp(1) (KS p > 1e-3, mean
   within 4 SEs); an interval (L, R]: E inside (Lambda(L), Lambda(R)]; no record: beyond the
   last observation.
4. Parameter draws of the same subject share its random excess (common random numbers), and
   the caller's generator is not advanced.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from progression.fit._survival_likelihood import (
    EXACT,
    INTERVAL,
    RIGHT,
    SurvivalRecord,
    SurvivalSpec,
)
from progression.fit._survival_scores import conditioned_scores, score_of_threshold
from progression.model import load_model
from progression.simulate import simulate

sys.path.insert(0, str(Path(__file__).parent))
from test_population_survival import TOY  # noqa: E402  (the Gompertz joint toy model)

OPTIONS = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "toy.toml"
    path.write_text(TOY)
    return load_model(path)


def _fit(model, records, last=10.0):
    designs = [SimpleNamespace(time=np.array([0.0, last]), survival=r) for r in records]
    return SimpleNamespace(model=model, designs=designs,
                           survival=SurvivalSpec(hazard="death", entry="enrolment"))


def _lam(table, model, t):
    h0 = table[:, model.parameter_index("h0")]
    g = table[:, model.parameter_index("g")]
    return h0 * np.expm1(g * t) / g


def _threshold(table, model):
    z = table[:, model.parameter_index("z_death")]
    return -np.log(ndtr(-z))


def test_score_of_threshold_inverts_the_threshold():
    E = np.array([1e-6, 0.1, math.log(2), 1.0, 5.0, 30.0])
    z = score_of_threshold(E)
    np.testing.assert_allclose(-np.log(ndtr(-z)), E, rtol=1e-10)
    assert score_of_threshold(np.array([0.0, 1e4])).tolist() == [-8.0, 8.0]


def test_a_death_is_set_at_its_recorded_time(model):
    T = np.array([3.0, 12.5, 30.0])
    offsets = np.array([0.0, 4.0, 10.0])
    fit = _fit(model, [SurvivalRecord(EXACT, t, entry=0.0) for t in T])
    table = model.parameter_table(n_subjects=3)
    table[:, model.parameter_index("h0")] = [0.02, 0.05, 0.01]
    out, note = conditioned_scores(fit, table, offsets, np.arange(3),
                                   np.random.default_rng(0), **OPTIONS)
    np.testing.assert_allclose(_threshold(out, model), _lam(out, model, T + offsets),
                               rtol=1e-6)
    assert "3 died" in note
    sim = simulate(model, out, [0.0, 100.0], **OPTIONS)
    got = np.array([t[0] for t in sim.events["death"]])
    np.testing.assert_allclose(got, T + offsets, atol=1e-4)


def test_censored_interval_and_unrecorded_subjects(model):
    n = 2000
    C = np.linspace(1.0, 40.0, n)
    fit = _fit(model, [SurvivalRecord(RIGHT, c, entry=0.0) for c in C])
    table = model.parameter_table(n_subjects=n)
    out, note = conditioned_scores(fit, table, np.zeros(n), np.arange(n),
                                   np.random.default_rng(1), **OPTIONS)
    excess = _threshold(out, model) - _lam(out, model, C)
    assert stats.kstest(excess, "expon").pvalue > 1e-3
    assert abs(excess.mean() - 1.0) < 4 / math.sqrt(n)
    assert f"{n} censored" in note

    L, R = np.full(50, 5.0), np.full(50, 9.0)
    fit = _fit(model, [SurvivalRecord(INTERVAL, r, lower=lo, entry=0.0)
                       for lo, r in zip(L, R, strict=True)] + [None] * 50, last=20.0)
    table = model.parameter_table(n_subjects=100)
    out, note = conditioned_scores(fit, table, np.zeros(100), np.arange(100),
                                   np.random.default_rng(2), **OPTIONS)
    E = _threshold(out, model)
    lam = _lam(out, model, 5.0)[0], _lam(out, model, 9.0)[0], _lam(out, model, 20.0)[0]
    assert np.all((E[:50] > lam[0]) & (E[:50] <= lam[1] * (1 + 1e-9)))
    assert np.all(E[50:] > lam[2])
    assert "50 interval-censored" in note and "50 without a record" in note


def test_draws_share_the_subjects_excess_and_leave_the_generator_alone(model):
    C = np.array([6.0, 15.0])
    fit = _fit(model, [SurvivalRecord(RIGHT, c, entry=0.0) for c in C])
    table = model.parameter_table(n_subjects=6)
    # rows 0-1 the estimates, 2-5 two draws of both subjects with other hazards
    table[2:, model.parameter_index("h0")] = [0.03, 0.08, 0.07, 0.02]
    subject = np.array([0, 1, 0, 1, 0, 1])
    rng = np.random.default_rng(5)
    before = np.random.default_rng(5).random(3)
    out, _ = conditioned_scores(fit, table, np.zeros(6), subject, rng, **OPTIONS)
    excess = _threshold(out, model) - _lam(out, model, C[subject])
    for i in (0, 1):
        np.testing.assert_allclose(excess[subject == i], excess[i], rtol=1e-6)
    assert excess[0] != pytest.approx(excess[1])
    np.testing.assert_array_equal(rng.random(3), before)
