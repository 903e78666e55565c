"""SAEM joint models: typical values without a random effect next to a survival term.

The M-step of a parameter without a random effect (``_saem_fixed.FixedEffectStep``) takes
the survival term's score ``-(ds/dtheta)/2`` (``s = -2 log p(T | phi)``, forward differences
of the chains' evaluation) besides the Gaussian data's, so hazard coefficients can be
population constants, as in Monolix's and leaspy's joint models.

1. The score against the closed form of the Gompertz toy (hazard ``h0 exp(g t)``):
   ``d log p(T) / d log h0 = [event] - (Lambda(T) - Lambda(T0))``, to 1e-3 (forward
   difference with step 1e-4 on log h0); the information is the observed one,
   ``d2(-log p(T)) / d(log h0)^2 = Lambda(T) - Lambda(T0)``, to 1e-4; without the survival
   term the score of h0 (which no marker value depends on) is 0.
2. Recovery: 200 patients of the joint toy (marker ``exp(-k t)``, hazard ``h0 exp(a (1 -
   marker))``) simulated with the hazard coefficient ``a`` the same for every patient; SAEM
   with random effects on k and h0 and ``a`` a population constant recovers ``a`` (and k,
   h0) within the stated tolerances.
3. Through the config: ``[survival]`` with a SAEM parameter without ``eta`` fits (it was
   refused before), and the estimate moves from its start.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_population_survival import (
    SIGMA,
    TRUE,
    _designs,
    _joint_cohort,
    _joint_config,
    _saem_fit,
    _toy_config,
)

from progression.fit import Problem
from progression.fit._survival_likelihood import EXACT
from progression.fit.population import Residual
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._saem_chains import _Chains
from progression.fit.population._saem_fixed import FixedEffectStep


def test_survival_score_of_a_constant_matches_the_closed_form(tmp_path):
    problem = Problem.from_config(_toy_config(tmp_path))
    designs = _designs()
    cols = np.array([problem.names.index("k"), problem.names.index("h0")])
    pm = ProblemModel(problem, designs, cols)
    data = pm.data()
    index = np.repeat(np.arange(len(designs)), 2)
    rng = np.random.default_rng(11)
    k = 0.25 * np.exp(0.3 * rng.standard_normal(index.size))
    h0 = 0.05 * np.exp(0.5 * rng.standard_normal(index.size))
    phi = np.log(np.c_[k, h0])
    residual = Residual((SIGMA,), (0.0,))
    chains = _Chains(pm, data, index, 2, residual)
    _, f = chains.evaluate(phi)
    extra = chains.last_extra.copy()
    ysim = chains.d.y
    step = FixedEffectStep([1])
    score, info, per = step.score_information(chains, phi, f, ysim, residual, 2, extra=extra)
    g = 0.1

    def cum(t, h):
        return h * math.expm1(g * t) / g

    want, delta = [], []
    for r, i in enumerate(index):
        rec = designs[i].survival
        entry = cum(rec.entry, h0[r]) if math.isfinite(rec.entry) else 0.0
        delta.append(cum(rec.time, h0[r]) - entry)
        want.append(float(rec.kind == EXACT) - delta[-1])
    want = np.array(want)
    np.testing.assert_allclose(per[:, 0], want, rtol=0, atol=1e-3)
    assert score[0] == pytest.approx(want.sum() / 2, abs=1e-3)
    # the observed information of the survival term: d2(s/2)/d(log h0)^2 = Lambda(T) -
    # Lambda(T0) per row, averaged over the 2 chains (the marker adds solver round-off)
    assert info[0, 0] == pytest.approx(np.sum(delta) / 2, rel=1e-4)
    # without the survival term nothing in the data depends on h0
    _, f = chains.evaluate(phi)
    bare, _, _ = step.score_information(chains, phi, f, ysim, residual, 2)
    assert abs(bare[0]) < 1e-6


A_TRUE = 3.0


def test_saem_joint_fit_recovers_a_hazard_coefficient_without_random_effect(tmp_path):
    """200 patients, 150 + 80 iterations on the RK4 path (~15 s). Tolerances on the log
    scale: a 0.2 (its start 2.0 is 0.41 away; SAEM's SE 0.38, 13 %: one event per patient
    carries little on a), k 0.1 (SE 6 %), h0 0.5 (h0 and a trade off; SE 24 %). Seeded
    (here: a -0.03, k -0.007, h0 +0.07; with the score but the outer-product information
    alone a -0.07, h0 +0.14; without the survival score a stays at its start)."""
    from progression.fit import fit

    data, truth = _joint_cohort(tmp_path, 200, seed=4, truth=dict(TRUE, a=(A_TRUE, 0.0)))
    res = fit(_joint_config(tmp_path, 150, 80, eta_a=""), data=data)
    pop = res.population
    assert "a" in pop.fixed_effects and "a" not in pop.omega_names
    for name, tol in {"a": 0.2, "k": 0.1, "h0": 0.5}.items():
        want = float(np.exp(np.mean(np.log(truth[name]))))
        got = pop.fixed_effects[name]
        se = pop.fixed_effects_se[name]
        print(f"{name}: SAEM {got:.4g} (SE {se:.3g}), enrolled geometric mean {want:.4g}")
        assert abs(math.log(got / want)) < tol, name
        assert np.isfinite(se) and se > 0, name


def test_config_with_survival_estimates_a_constant(tmp_path):
    res = _saem_fit(tmp_path, _designs(), eta_h0="")
    pop = res.population
    assert "h0" in pop.fixed_effects and "h0" not in pop.omega_names
    assert pop.fixed_effects["h0"] != pytest.approx(0.05, rel=1e-6)
    assert np.isfinite(pop.fixed_effects["h0"])


def test_score_pass_takes_the_survival_term_of_a_constant(tmp_path):
    """The covariance fallback (``score_pass``: Louis' information by a longer MCMC pass at the
    estimates) of a joint model whose hazard scale is a population constant: h0 enters only
    the survival term, which does not depend on k's random effect, so its score is the same
    in every chain and Louis' information of log h0 is the observed one, sum_i (Lambda(T_i) -
    Lambda(T0_i)), with no cross-information to k's parameters (closed form, to 1e-4). Before
    the pass took the survival term, this information was 0 and no fit with a hazard constant
    got standard errors from it."""
    from progression.fit.population._saem_score import score_pass

    problem = Problem.from_config(_toy_config(tmp_path))
    designs = _designs()
    cols = np.array([problem.names.index("k"), problem.names.index("h0")])
    pm = ProblemModel(problem, designs, cols)
    h0, g = 0.05, 0.1
    sp = score_pass(pm, pm.data(), np.log([0.25, h0]), np.array([[0.09]]),
                    Residual((SIGMA,), (0.0,)), eta_columns=[0], estimate_columns=[1],
                    residual_fixed=([True], [True]), n_iter=40, burn_in=5, n_chains=2,
                    seed=3)
    j = sp.names.index("theta[1]")

    def cum(t):
        return h0 * math.expm1(g * t) / g

    delta = [cum(d.survival.time) - (cum(d.survival.entry) if math.isfinite(d.survival.entry)
                                     else 0.0) for d in designs]
    assert sp.fisher[j, j] == pytest.approx(np.sum(delta), rel=1e-4)
    others = [i for i in range(len(sp.names)) if i != j]
    np.testing.assert_allclose(sp.fisher[j, others], 0.0, atol=1e-6 * np.sum(delta))
    assert np.all(np.isfinite(sp.covariance("model")))
