"""Joint longitudinal + survival fits recover the hazard parameters of simulated cohorts.

A cohort of the toy joint model (marker ``x = exp(-k_i t)``, hazard ``h0 exp(a (1 - x))``) is
drawn by :func:`progression.virtual.synthesis.simulate_cohort` (the hazard route: each
patient's survival score ``z_death ~ N(0, 1)``, death when the cumulative hazard reaches
its Exp(1) threshold), entering 6 months after model time 0 (left truncation: patients dead
by then are not enrolled, so the fit needs the delayed entry), followed 36 months with visits
every 3 months. The pooled estimator fits ``k_i`` per subject and ``h0``, ``a`` shared,
jointly with the events table. Fast test: 60 patients, within 3 standard errors;
the 200-patient study with replicates is ``benchmarks/hazard_recovery.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from progression.fit import fit, parse_fit_config
from progression.virtual.cohort_config import ObservableSpec, ParameterSpec
from progression.virtual.synthesis import simulate_cohort

MODEL = """
[model]
name = "joint_toy"
time_unit = "month"
description = "Declining marker with a hazard of death that rises as the marker falls"
[parameters.k]
value = 0.08
bounds = [0.005, 1.0]
unit = "1/month"
[parameters.h0]
value = 0.01
bounds = [1e-4, 1.0]
unit = "1/month"
[parameters.a]
value = 2.0
bounds = [-5.0, 5.0]
unit = "1"
[states.x]
initial = 1.0
[equations]
x = "-k * x"
[observables.marker]
expression = "x"
[hazards.death]
rate = "h0 * exp(a * (1 - marker))"
"""
TRUE = {"h0": 0.01, "a": 3.0}
SIGMA = 0.05
ENTRY = 6.0


def cohort(tmp_path, n, seed, delay=ENTRY):
    path = tmp_path / "joint_toy.toml"
    path.write_text(MODEL)
    from progression.model import read_model_file
    from progression.model.compiled import compile_model

    model = compile_model(read_model_file(path))
    obs = [ObservableSpec(name="marker", model="marker", error="normal", residual_sd=SIGMA)]
    params = [ParameterSpec(name="k", typical=0.06, sd=0.8, bounds=(0.005, 1.0))]
    data, truth = simulate_cohort(model, n, observables=obs, parameters=params,
                                  fixed=tuple(TRUE.items()), seed=seed, interval=3.0,
                                  follow_up=(36.0, 36.0), delay=delay, anchor=None)
    return path, data, truth


def config(tmp_path, entry="enrolment", interval=False):
    text = f"""
[fit]
model = "joint_toy.toml"
estimator = "pooled"
[data]
path = "joint_toy.toml"
[error.marker]
model = "additive"
a = {SIGMA}
[parameters.k]
estimate = "subject"
value = 0.1
[parameters.h0]
estimate = "shared"
value = 0.03
[parameters.a]
estimate = "shared"
value = 0.5
[parameters.time_offset]
estimate = "fixed"
value = {ENTRY}
[survival]
entry = "{entry}"
interval = {str(interval).lower()}
[solver]
rtol = 1e-8
atol = 1e-10
"""
    return parse_fit_config(text, base_dir=tmp_path, name="joint", source=str(tmp_path / "j.toml"),
                            check_data=False)


def test_simulated_cohort_has_events_from_the_hazard(tmp_path):
    _, data, truth = cohort(tmp_path, 200, seed=1, delay=0.0)
    ev = data.events
    kinds, counts = np.unique(ev["event"], return_counts=True)
    assert set(kinds) == {"death", "censored"} and counts.min() >= 20
    # the scores were drawn N(0, 1) (no left truncation here) and recorded
    z = truth["z_death"]
    assert "z_death" in truth.parameter_names
    assert abs(z.mean()) < 4 / np.sqrt(200) and abs(z.std() - 1.0) < 0.15
    # death happens where the cumulative hazard reaches the Exp(1) threshold: a patient with
    # a larger score lives longer than one with the same k and a smaller score, so death
    # times are not a function of the marker's decline rate k alone
    died = np.asarray(ev["event"]) == "death"
    t = np.asarray(ev["time"])[died]
    k = truth["k"][died]
    fit_ = np.polyfit(np.log(k), np.log(t), 1)
    resid = np.log(t) - np.polyval(fit_, np.log(k))
    assert resid.std() > 0.3


@pytest.mark.parametrize("interval", [False, True])
def test_pooled_joint_fit_recovers_the_hazard(tmp_path, interval):
    _, data, _ = cohort(tmp_path, 60, seed=2)
    res = fit(config(tmp_path, interval=interval), data=data)
    for name, true in TRUE.items():
        est = float(res.estimates(name)[0])
        se = float(res.standard_errors(name)[0])
        print(f"interval={interval} {name}: {est:.4f} (SE {se:.4f}), true {true}")
        assert np.isfinite(se) and se > 0
        # 60 patients pin h0 to ~50% and a to ~25% (standard errors): 3 SE here; bias and
        # coverage over replicates of 200 are in benchmarks/hazard_recovery.py
        assert abs(est - true) < 3 * se and se / abs(true) < 0.8


def test_saved_joint_fit_keeps_the_survival_records(tmp_path):
    """fit.json carries each subject's record: the loaded fit re-evaluates the same joint
    objective (survival part included)."""
    from progression.fit import load_fit

    _, data, _ = cohort(tmp_path, 12, seed=5)
    res = fit(config(tmp_path), data=data)
    res.save(tmp_path / "out", figures=False)
    back = load_fit(tmp_path / "out")
    def records(designs):
        return np.array([[d.survival.kind, d.survival.time, d.survival.lower,
                          d.survival.entry] for d in designs], dtype=float)

    assert all(d.survival is not None for d in res.designs)
    np.testing.assert_array_equal(records(back.designs), records(res.designs))
    problem = back.problem
    m = len(back.designs)
    ev = problem.evaluate(back.designs, np.arange(m), back.theta, np.zeros(0, dtype=int),
                          want_jac=False)
    np.testing.assert_allclose(ev.m2ll, res.subject_objective, rtol=1e-6, atol=1e-6)


def test_bootstrap_is_refused_with_survival(tmp_path):
    from progression.errors import ConfigError

    _, data, _ = cohort(tmp_path, 6, seed=7)
    with pytest.raises(ConfigError, match=r"estimator.uncertainty.*bootstrap.*\[survival\]"):
        fit(config(tmp_path), data=data, uncertainty=["bootstrap"])
