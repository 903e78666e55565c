"""The population core carries a FOCE-I fit to the published optimum on R's Theoph.

Not an estimator (that is built on this core next): a plain ``scipy.optimize.minimize`` (BFGS)
over (log theta, Cholesky factor of Omega with log diagonal, log residual SDs), with the
objective and exact gradient of :func:`focei_gradient` and the conditional modes warm-started
from the previous evaluation. Published numbers and their sources: data/examples/
theoph.md (NONMEM 7.4.1 via the nmw package; nlmixr2 vignettes).

Measured: NONMEM model OFV 92.830869 (NONMEM 92.830869), 47 evaluations; nlmixr2 model OFV
116.80341 (nlmixr2 prints 116.8036-116.8346 across versions), 37 evaluations, about 0.3 s.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from progression.fit.population import PopulationData, Residual, focei_gradient

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOral, theoph_nonmem  # noqa: E402

TRIL = np.tril_indices(3)


def _bfgs(fg, x0):
    res = minimize(fg, x0, jac=True, method="BFGS", options={"gtol": 1e-6, "maxiter": 500})
    return res.x, res.fun


def test_focei_fit_reaches_nonmem_optimum():
    """nmw THEO-FOCEI: log(KA, V, K), full Omega, Y = F + F*EPS1 + EPS2, DOSE = 320."""
    model, data = theoph_nonmem()
    state = {"eta": None}

    def unpack(x):
        L = np.zeros((3, 3))
        L[TRIL] = x[3:9]
        L[np.diag_indices(3)] = np.exp(np.diag(L))
        return x[:3], L, np.exp(x[9]), np.exp(x[10])

    def fg(x):
        th, L, a, b = unpack(x)
        gr = focei_gradient(model, data, np.tile(th, (12, 1)), L @ L.T,
                            Residual.combined(a, b), eta0=state["eta"])
        if not np.isfinite(gr.ofv):
            return np.inf, np.zeros_like(x)
        state["eta"] = gr.inner.eta
        dL = 2.0 * gr.d_omega @ L                     # dOFV/dL for Omega = L L'
        dL[np.diag_indices(3)] *= np.diag(L)          # log-diagonal
        return gr.ofv, np.r_[gr.d_mu.sum(axis=0), dL[TRIL], gr.d_a[0] * a, gr.d_b[0] * b]

    L0 = np.linalg.cholesky(np.array([[0.2, 0.1, 0.1], [0.1, 0.2, 0.1], [0.1, 0.1, 0.2]]))
    l0 = L0.copy()
    l0[np.diag_indices(3)] = np.log(np.diag(L0))
    x0 = np.r_[np.log([2.0, 50.0, 0.1]), l0[TRIL], 0.5 * np.log(0.1), 0.5 * np.log(0.1)]
    x, ofv = _bfgs(fg, x0)
    th, L, a, b = unpack(x)
    omega = L @ L.T
    assert ofv == pytest.approx(92.8308690455160, abs=1e-3)
    np.testing.assert_allclose(np.exp(th), [1.4907, 32.447, 0.087290], rtol=1e-3)
    np.testing.assert_allclose(np.diag(omega), [0.43472, 0.019399, 0.020233], rtol=1e-2)
    np.testing.assert_allclose([b * b, a * a], [0.017039, 0.082844], rtol=1e-2)


def test_focei_fit_reaches_nlmixr2_optimum():
    """nlmixr2 one.cmt on theo_sd: log(ka, CL, V), diagonal Omega, additive error, real doses."""
    path = Path(__file__).parents[1] / "data" / "examples" / "theoph.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = list(dict.fromkeys(r["ID"] for r in rows))
    obs = [r for r in rows if r["EVID"] == "0"]
    times = [np.array([float(r["TIME"]) for r in obs if r["ID"] == i]) for i in ids]
    ys = [np.array([float(r["DV"]) for r in obs if r["ID"] == i]) for i in ids]
    doses = [float(next(r["AMT"] for r in rows if r["ID"] == i and r["EVID"] == "1"))
             for i in ids]
    model, data = OneCmtOral(times, doses), PopulationData.from_subjects(ys)
    state = {"eta": None}

    def fg(x):
        w2, a = np.exp(x[3:6]), np.exp(x[6])
        gr = focei_gradient(model, data, np.tile(x[:3], (12, 1)), np.diag(w2),
                            Residual.additive(a), eta0=state["eta"])
        if not np.isfinite(gr.ofv):
            return np.inf, np.zeros_like(x)
        state["eta"] = gr.inner.eta
        return gr.ofv, np.r_[gr.d_mu.sum(axis=0), np.diag(gr.d_omega) * w2, gr.d_a[0] * a]

    x, ofv = _bfgs(fg, np.r_[0.45, 1.0, 3.45, np.log([0.6, 0.3, 0.1]), np.log(0.7)])
    # the lowest published OBJF is 116.8036; ours may be lower, never higher
    assert 116.79 < ofv < 116.8036 + 1e-3
    np.testing.assert_allclose(x[:3], [0.4663, 1.012, 3.460], atol=0.005)
    cv = 100 * np.sqrt(np.expm1(np.exp(x[3:6])))
    np.testing.assert_allclose(cv, [70.00, 26.80, 13.88], rtol=0.02)
    assert np.exp(x[6]) == pytest.approx(0.6947, rel=1e-2)
