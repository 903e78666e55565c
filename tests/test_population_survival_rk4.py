"""SAEM's fixed-step RK4 path with a time-to-event part (``[survival]``): the survival
pseudo-observations (cumulative hazard at entry and event, hazard at an exact event) ride
along the data in the same integration.

1. :func:`~progression.fit._survival_likelihood.survival_m2ll` (every row at once) equals the
   per-row :func:`~progression.fit._survival_likelihood.survival_terms` on the same values
   for every record kind (exact, right-censored, interval-censored; with and without delayed
   entry), and is NaN where the term is not finite.
2. ``RK4Predictions.predict_extra`` on the Gompertz toy model (``x0 exp(-k t)``, hazard
   ``h0 exp(g t)``, cumulative hazard ``h0 expm1(g t) / g``) against the closed forms, on
   the compiled and the numpy path: predictions to 1e-7, survival term to 1e-7 (step 0.05;
   RK4's error ~h^4); its data predictions equal :meth:`predict`'s.
3. The RK4 predictions of a joint model pickle (worker processes) with identical values.
4. A SAEM joint fit takes the RK4 path (its method statement says so) and reaches the exact
   path's estimates: identical typical values (the chains make the same decisions), the
   residual SD to 2e-5 (the RK4 step's error, ~1e-5 residual SD here) and the OFV to
   1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_population_survival import (
    _designs,
    _joint_cohort,
    _joint_config,
    _toy_config,
)

from progression.fit import Design, Problem
from progression.fit._survival_likelihood import (
    EXACT,
    INTERVAL,
    RIGHT,
    SurvivalRecord,
    augment,
    record_slots,
    survival_m2ll,
    survival_terms,
)
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._saem_model import RK4Predictions

TIMES = np.array([0.5, 1.0, 2.0, 3.0, 4.5])


def _all_kinds():
    """Designs with one record of every kind (and none)."""
    recs = [SurvivalRecord(EXACT, 5.0, entry=0.5), SurvivalRecord(RIGHT, 8.0, entry=0.5),
            SurvivalRecord(EXACT, 7.5), SurvivalRecord(RIGHT, 6.0),
            SurvivalRecord(INTERVAL, 6.5, lower=4.5, entry=0.5),
            SurvivalRecord(INTERVAL, 9.0, lower=4.5), None]
    out = []
    for i, rec in enumerate(recs):
        y = 2.0 * np.exp(-0.25 * TIMES[: 3 + i % 3])
        n = y.size
        out.append(Design(f"S{i + 1}", TIMES[:n], np.zeros(n, int), y, np.zeros(n, int),
                          np.full(n, np.nan), survival=rec))
    return out


def test_vectorised_survival_term_equals_the_per_row_one(tmp_path):
    problem = Problem.from_config(_toy_config(tmp_path))
    designs = _all_kinds()
    aug = augment(problem, designs)
    slots = record_slots(aug)
    rng = np.random.default_rng(5)
    index = np.repeat(np.arange(len(designs)), 3)
    width = max(d.n for d in aug.designs)
    values = np.zeros((index.size, width))
    flat = []
    for r, i in enumerate(index):
        d = aug.designs[i]
        m = aug.slot[i].size
        # cumulative hazards increasing with time, a positive hazard
        v = np.sort(rng.uniform(0.01, 2.0, m))
        if m:
            order = np.argsort(np.asarray(d.time[aug.n_real[i]:]), kind="stable")
            v = v[np.argsort(order)]
            v = np.where(np.asarray(d.obs[aug.n_real[i]:]) == len(problem.observables) + 1,
                         rng.uniform(0.05, 1.0, m), v)
        values[r, aug.n_real[i]:aug.n_real[i] + m] = v
        flat.extend(v)
    want = survival_terms(aug, index, np.asarray(flat), np.zeros((len(flat), 0)),
                          index.size).m2ll
    got = survival_m2ll(slots, index, values)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)
    assert np.all(got[index == len(designs) - 1] == 0.0)          # no record
    assert np.all(got[index != len(designs) - 1] != 0.0)
    # not finite: a hazard <= 0 at an exact event, a cumulative hazard falling since entry
    bad = values.copy()
    r_exact = int(np.flatnonzero(index == 0)[0])
    h_pos = slots.pos[0, 2]
    bad[r_exact, h_pos] = 0.0
    r_right = int(np.flatnonzero(index == 1)[0])
    bad[r_right, slots.pos[1, 1]] = bad[r_right, slots.pos[1, 0]] + 0.5
    out = survival_m2ll(slots, index, bad)
    assert np.isnan(out[r_exact]) and np.isnan(out[r_right])


def _closed_form(d, k, h0, g=0.1, x0=2.0):
    """Marker predictions and the survival -2 log L of design ``d`` in closed form."""
    f = x0 * np.exp(-k * d.time)
    rec = d.survival

    def cum(t):
        return h0 * math.expm1(g * t) / g

    entry = cum(rec.entry) if math.isfinite(rec.entry) else 0.0
    if rec.kind == EXACT:
        s = -2.0 * (math.log(h0 * math.exp(g * rec.time)) - cum(rec.time) + entry)
    elif rec.kind == RIGHT:
        s = 2.0 * (cum(rec.time) - entry)
    else:
        width = cum(rec.time) - cum(rec.lower)
        s = 2.0 * (cum(rec.lower) - entry) - 2.0 * math.log(-math.expm1(-width))
    return f, s


@pytest.mark.parametrize("compiled", [True, False])
def test_rk4_survival_term_matches_the_closed_form(tmp_path, compiled):
    problem = Problem.from_config(_toy_config(tmp_path))
    if compiled and problem.model.kernels is None:
        pytest.skip("the model has no compiled kernels (numpy backend)")
    designs = _all_kinds()[:-1] + _designs()
    cols = np.array([problem.names.index("k"), problem.names.index("h0")])
    pm = ProblemModel(problem, designs, cols)
    rk4 = RK4Predictions(pm, h=0.05, compiled=compiled)
    assert rk4.extra_m2ll and not rk4.accepts_bound
    index = np.repeat(np.arange(len(designs)), 2)
    rng = np.random.default_rng(7)
    k = 0.25 * np.exp(0.3 * rng.standard_normal(index.size))
    h0 = 0.05 * np.exp(0.5 * rng.standard_normal(index.size))
    phi = np.log(np.c_[k, h0])
    f, G, s = rk4.predict_extra(phi, index)
    assert f.shape == (index.size, pm.n) and G.shape == (index.size, pm.n, 2)
    for r, i in enumerate(index):
        f_want, s_want = _closed_form(designs[i], k[r], h0[r])
        n = designs[i].n
        np.testing.assert_allclose(f[r, :n], f_want, rtol=0, atol=1e-7)
        assert np.all(f[r, n:] == 0.0)            # padding, not the pseudo-observations
        assert abs(s[r] - s_want) < 1e-7, (r, s[r], s_want)
    f_plain, _ = rk4.predict(phi, index)
    np.testing.assert_array_equal(f_plain, f)


def test_saem_joint_fit_takes_the_rk4_path_with_the_exact_estimates(tmp_path, monkeypatch):
    import importlib

    from progression.fit import fit

    saem_estimator = importlib.import_module("progression.fit.estimators.saem")
    data, _ = _joint_cohort(tmp_path, 30, seed=3)
    cfg = _joint_config(tmp_path, 20, 10)
    fast = fit(cfg, data=data)
    assert "fixed-step RK4" in fast.provenance["numbers_from"]
    assert "[survival] term" in fast.provenance["numbers_from"]
    monkeypatch.setattr(saem_estimator, "applicable", lambda *a: False)
    exact = fit(cfg, data=data)
    assert exact.provenance["numbers_from"].startswith("exact outputs")
    assert fast.population.fixed_effects == pytest.approx(exact.population.fixed_effects,
                                                          rel=1e-9)
    assert fast.population.sigma["marker.a"] == pytest.approx(
        exact.population.sigma["marker.a"], rel=2e-5)
    assert abs(fast.population.ofv - exact.population.ofv) < 1e-3


def test_rk4_survival_predictions_pickle(tmp_path):
    """A worker process gets the joint model's RK4 predictions by pickle: the same values."""
    import pickle

    problem = Problem.from_config(_toy_config(tmp_path))
    designs = _designs()
    cols = np.array([problem.names.index("k"), problem.names.index("h0")])
    rk4 = RK4Predictions(ProblemModel(problem, designs, cols), h=0.05)
    phi = np.log(np.tile([0.25, 0.05], (len(designs), 1)))
    index = np.arange(len(designs))
    back = pickle.loads(pickle.dumps(rk4))
    for a, b in zip(rk4.predict_extra(phi, index), back.predict_extra(phi, index),
                    strict=True):
        np.testing.assert_array_equal(a, b)
