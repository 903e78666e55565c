"""NONMEM objective functions of the population core against independent computations.

References (tests/_population_support.py) use only the closed-form predictions of each subject,
central finite differences, scipy.optimize for eta-hat and the textbook formulas of Wang (2007);
Laplace is also checked against numerical integration over eta.
"""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit.population import (
    FAILED,
    METHODS,
    InnerOptions,
    PopulationData,
    Residual,
    objective,
    subject_objectives,
)

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import (  # noqa: E402
    LinearModel,
    OneCmtOral,
    OneCmtOralHess,
    RefSubject,
    _onecmt,
    laplace_and_quadrature,
    simulate_onecmt,
    theoph_nonmem,
)

THETA = np.array([0.4, 1.0, 3.45])
OMEGA = np.array([[0.40, 0.02, 0.0], [0.02, 0.10, 0.01], [0.0, 0.01, 0.05]])
N_SUBJ = 6

ERRORS = {
    "additive": (0.5, 0.0),
    "proportional": (0.0, 0.12),
    "combined": (0.3, 0.1),
}


def _setup(err, n=N_SUBJ, seed=1):
    a, b = ERRORS[err]
    times, doses, ys = simulate_onecmt(n, seed, OMEGA, a=max(a, 0.05), b=b)
    data = PopulationData.from_subjects(ys)
    mu = np.tile(THETA, (n, 1))
    # a covariate-like shift of the typical CL per subject: mu need not be common
    mu[:, 1] += 0.05 * np.arange(n) / n
    refs = [RefSubject(lambda e, i=i: _onecmt(times[i], doses[i], *(mu[i] + e)), ys[i], a, b,
                       OMEGA) for i in range(n)]
    return times, doses, data, mu, Residual.combined(a, b), refs


@pytest.mark.parametrize("err", list(ERRORS))
def test_fo_foce_focei_against_wang_formulas(err):
    times, doses, data, mu, res, refs = _setup(err)
    model = OneCmtOral(times, doses)
    fo = subject_objectives("fo", model, data, mu, OMEGA, res)
    foce = subject_objectives("foce", model, data, mu, OMEGA, res)
    focei = subject_objectives("focei", model, data, mu, OMEGA, res)
    ref_fo = np.array([r.fo() for r in refs])
    ref_foce = [r.foce() for r in refs]
    ref_focei = [r.focei() for r in refs]
    for got in (fo, foce, focei):
        assert np.all(got.status == 0), got.status
    np.testing.assert_allclose(fo.ofv_i, ref_fo, rtol=1e-6)
    wang = np.array([x[0] for x in ref_foce])
    hform = np.array([x[1] for x in ref_foce])
    # the two FOCE forms agree at the exact mode (matrix determinant lemma)
    np.testing.assert_allclose(wang, hform, rtol=1e-8)
    np.testing.assert_allclose(foce.ofv_i, wang, rtol=1e-6)
    np.testing.assert_allclose(foce.eta, np.array([x[2] for x in ref_foce]), atol=1e-6)
    np.testing.assert_allclose(focei.ofv_i, np.array([x[0] for x in ref_focei]), rtol=1e-6)
    np.testing.assert_allclose(focei.eta, np.array([x[1] for x in ref_focei]), atol=1e-6)
    assert fo.ofv == pytest.approx(ref_fo.sum(), rel=1e-6)
    if err == "additive":
        # no interaction possible: FOCE-I is FOCE
        np.testing.assert_allclose(focei.ofv_i, foce.ofv_i, rtol=1e-8)
    else:
        assert abs(focei.ofv - foce.ofv) > 1e-3


def test_focei_interaction_term_matters():
    """Dropping 1/2 h h'/V^2 changes the objective: the test reference would notice."""
    times, doses, data, mu, res, refs = _setup("proportional")
    got = subject_objectives("focei", OneCmtOral(times, doses), data, mu, OMEGA, res)
    r = refs[0]
    eh = got.eta[0]
    g = r.jac(eh)
    V = r.var(r.fun(eh))
    without = (r.L(eh) + np.linalg.slogdet(OMEGA)[1]
               + np.linalg.slogdet(r.oinv + g.T @ (g / V[:, None]))[1])
    assert abs(got.ofv_i[0] - without) > 0.05


def _one_eta_setup(err, cens_limit=None, n=4):
    """Random effect on CL only (E = 1), for quadrature."""
    a, b = ERRORS[err]
    om1 = np.array([[0.15]])
    times, doses, ys = simulate_onecmt(n, 7, np.diag([1e-12, 0.15, 1e-12]),
                                       a=max(a, 0.05), b=b)
    cens = limits = None
    if cens_limit is not None:
        cens = [np.where(y < cens_limit, 1, 0) for y in ys]
        limits = [np.full(y.size, cens_limit) for y in ys]
        assert sum(c.sum() for c in cens) >= 3
    data = PopulationData.from_subjects(ys, cens=cens, limits=limits)
    mu = np.tile(THETA, (n, 1))

    def fun(e, i):
        p = mu[i].copy()
        p[1] += e[0]
        return _onecmt(times[i], doses[i], *p)
    refs = [RefSubject(lambda e, i=i: fun(np.atleast_1d(e), i), ys[i], a, b, om1,
                       cens=None if cens is None else cens[i],
                       limit=None if limits is None else limits[i]) for i in range(n)]
    return times, doses, data, mu, Residual.combined(a, b), refs, om1


@pytest.mark.parametrize("err", ["additive", "combined"])
@pytest.mark.parametrize("hess_model", [OneCmtOralHess, OneCmtOral])
def test_laplace_against_quadrature(err, hess_model):
    times, doses, data, mu, res, refs, om1 = _one_eta_setup(err)
    got = subject_objectives("laplace", hess_model(times, doses), data, mu, om1, res,
                             eta_columns=[1])
    assert got.hessian == ("analytic" if hess_model is OneCmtOralHess else
                           "finite differences")
    lap, exact, eh = np.array([laplace_and_quadrature(r) for r in refs]).T
    np.testing.assert_allclose(got.eta[:, 0], eh, atol=1e-6)
    np.testing.assert_allclose(got.ofv_i, lap, rtol=1e-6)
    # the Laplace approximation itself, per subject (measured: at most 0.006 additive, 0.027
    # combined): the integrand is nearly Gaussian in eta here
    assert np.max(np.abs(got.ofv_i - exact)) < 0.05
    assert got.ofv == pytest.approx(lap.sum(), rel=1e-6)


def test_laplace_with_censoring_against_quadrature():
    times, doses, data, mu, res, refs, om1 = _one_eta_setup("combined", cens_limit=3.0)
    got = subject_objectives("laplace", OneCmtOralHess(times, doses), data, mu, om1, res,
                             eta_columns=[1])
    lap, exact, eh = np.array([laplace_and_quadrature(r) for r in refs]).T
    np.testing.assert_allclose(got.eta[:, 0], eh, atol=1e-6)
    np.testing.assert_allclose(got.ofv_i, lap, rtol=1e-6)
    assert np.max(np.abs(got.ofv_i - exact)) < 0.05
    # FOCE-I with M3: information of the censoring indicator, computed independently
    fi = subject_objectives("focei", OneCmtOral(times, doses), data, mu, om1, res,
                            eta_columns=[1])
    np.testing.assert_allclose(fi.ofv_i, [r.focei()[0] for r in refs], rtol=1e-6)


def test_censoring_above_a_limit():
    times, doses, data0, mu, res, refs, om1 = _one_eta_setup("additive")
    ys = [data0.y[i, data0.mask[i]] for i in range(data0.n_subjects)]
    cens = [np.where(y > 8.0, -1, 0) for y in ys]
    assert sum(np.abs(c).sum() for c in cens) >= 2
    limits = [np.full(y.size, 8.0) for y in ys]
    data = PopulationData.from_subjects(ys, cens=cens, limits=limits)
    got = subject_objectives("laplace", OneCmtOralHess(times, doses), data, mu, om1, res,
                             eta_columns=[1])
    refs = [RefSubject(r.fun, r.y, r.a, r.b, om1, cens=cens[i], limit=limits[i])
            for i, r in enumerate(refs)]
    lap = np.array([laplace_and_quadrature(r)[0] for r in refs])
    np.testing.assert_allclose(got.ofv_i, lap, rtol=1e-6)


def _lmm(n=8, seed=3):
    rng = np.random.default_rng(seed)
    om = np.array([[1.0, 0.3], [0.3, 0.25]])
    sigma = 0.7
    times, ys = [], []
    mu = np.zeros((n, 2))
    for i in range(n):
        t = np.sort(rng.uniform(0, 10, 4 + i % 4))
        mu[i] = [2.0 + 0.3 * (i % 2), -0.5]
        eta = np.linalg.cholesky(om) @ rng.standard_normal(2)
        times.append(t)
        ys.append(mu[i, 0] + eta[0] + (mu[i, 1] + eta[1]) * t + sigma * rng.standard_normal(t.size))
    return LinearModel(times), PopulationData.from_subjects(ys), mu, om, sigma, times, ys


def test_linear_mixed_model_all_methods_exact():
    model, data, mu, om, sigma, times, ys = _lmm()
    exact = 0.0
    for i, t in enumerate(times):
        Z = np.stack([np.ones_like(t), t], axis=1)
        C = Z @ om @ Z.T + sigma ** 2 * np.eye(t.size)
        r = ys[i] - (mu[i, 0] + mu[i, 1] * t)
        exact += np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r)
    res = Residual.additive(sigma)
    values = {m: objective(m, model, data, mu, om, res) for m in METHODS}
    for m, v in values.items():
        assert v == pytest.approx(exact, rel=1e-8), m


def test_objective_pickles_and_batches():
    times, doses, data, mu, res, _ = _setup("combined")
    model = OneCmtOral(times, doses)
    a = subject_objectives("focei", model, data, mu, OMEGA, res)
    m2, d2, r2 = pickle.loads(pickle.dumps((model, data, res)))
    b = subject_objectives("focei", m2, d2, mu, OMEGA, r2,
                           inner_options=InnerOptions(batch_size=2))
    np.testing.assert_array_equal(a.ofv_i, b.ofv_i)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.eta, a.eta)
    assert r2 == res
    # warm start from the previous modes: same objective, fewer iterations
    w = subject_objectives("focei", model, data, mu, OMEGA, res, eta0=a.eta)
    np.testing.assert_allclose(w.ofv_i, a.ofv_i, rtol=1e-10)
    assert w.inner.n_iter.sum() < a.inner.n_iter.sum()


class _FailingModel(OneCmtOral):
    """NaN predictions for subject 2 whatever its parameters."""

    def predict(self, phi, index):
        f, G = super().predict(phi, index)
        bad = np.asarray(index) == 2
        f[bad] = np.nan
        return f, G


def test_failed_subject_gives_inf_not_exception():
    times, doses, data, mu, res, _ = _setup("combined")
    for m in METHODS:
        got = subject_objectives(m, _FailingModel(times, doses), data, mu, OMEGA, res)
        assert got.status[2] == FAILED and np.isinf(got.ofv_i[2]) and np.isinf(got.ofv)
        assert np.all(np.isfinite(np.delete(got.ofv_i, 2)))


def test_bad_inputs_refused():
    times, doses, data, mu, res, _ = _setup("combined")
    model = OneCmtOral(times, doses)
    with pytest.raises(FitError, match="expected a method in"):
        subject_objectives("foce_i", model, data, mu, OMEGA, res)
    with pytest.raises(FitError, match="positive definite"):
        subject_objectives("focei", model, data, mu, -OMEGA, res)
    with pytest.raises(FitError, match="symmetric"):
        subject_objectives("focei", model, data, mu, OMEGA + np.triu(np.ones((3, 3)), 1), res)
    with pytest.raises(FitError, match=r"expected a finite \(2, 2\)"):
        subject_objectives("focei", model, data, mu, OMEGA, res, eta_columns=[0, 2])
    with pytest.raises(FitError, match="distinct parameter indices"):
        subject_objectives("focei", model, data, mu, OMEGA, res, eta_columns=[0, 0, 5])
    with pytest.raises(FitError, match="for 6 subjects, found 5 rows"):
        subject_objectives("fo", model, data, mu[:5], OMEGA, res)
    _, _, cdata, cmu, cres, _, om1 = _one_eta_setup("additive", cens_limit=3.0)
    with pytest.raises(FitError, match="'fo' cannot use censored values \\(subject"):
        subject_objectives("fo", model, cdata, cmu, om1, cres, eta_columns=[1])
    with pytest.raises(FitError, match=r"expected predictions \(6, 10\)"):
        subject_objectives("fo", lambda p, i: (p, p), data, mu, OMEGA, res)
    with pytest.raises(FitError, match="observable 0: expected finite SDs"):
        Residual.combined(0.0, 0.0)
    with pytest.raises(FitError, match="observable 0: expected finite SDs"):
        Residual.additive(-1.0)


# --- NONMEM 7.4.1 on R's Theoph (nmw package, K.-S. Bae) -----------------------------------
# THEO-FO/FOCEI/LAPLI.CTL and .OUT.txt in the CRAN package nmw 0.1.x (inst/doc, mirrored at
# https://github.com/cran/nmw): $PRED DOSE=320, KA=TH1*EXP(ETA1), V=TH2*EXP(ETA2),
# K=TH3*EXP(ETA3), F = DOSE/V*KA/(KA-K)*(EXP(-K*T)-EXP(-KA*T)), Y = F + F*EPS1 + EPS2; all 132
# rows of Theoph are observations (the pre-dose ones included). "ITERATION NO. 0" is the
# objective at the initial estimates, exact inputs; the final rows are at the 5-digit NPARAMETR
# printout of the last iteration. See data/examples/theoph.md.
NM_INIT = dict(theta=(2.0, 50.0, 0.1), omega=[[0.2, 0.1, 0.1], [0.1, 0.2, 0.1], [0.1, 0.1, 0.2]],
               sigma=(0.1, 0.1))
NM_ITER0 = {"fo": 141.307552644370, "focei": 192.650255559400, "laplace": 194.101735812272}
NM_FINAL = {
    "fo": (57.3210637066855, (3.1693, 38.252, 0.10501),
           [[1.1981, 0.13748, 0.37001], [0.13748, 0.031348, 0.043392],
            [0.37001, 0.043392, 0.25055]], (0.012078, 0.054266)),
    "focei": (92.8308690455160, (1.4907, 32.447, 0.087290),
              [[0.43472, 0.056920, -0.0064855], [0.056920, 0.019399, 0.012083],
               [-0.0064855, 0.012083, 0.020233]], (0.017039, 0.082844)),
    "laplace": (93.5587038455012, (1.5052, 32.295, 0.087304),
                [[0.43732, 0.056344, -0.0046835], [0.056344, 0.018685, 0.012644],
                 [-0.0046835, 0.012644, 0.019830]], (0.017716, 0.075581)),
}


@pytest.mark.parametrize("method", ["fo", "focei", "laplace"])
def test_theoph_reproduces_nonmem(method):
    """Measured: |ours - NONMEM| = 5e-14 (FO), 8e-9 (FOCE-I), 8e-8 (Laplace) at the initial
    estimates; 1e-7, 1.5e-8, 2.6e-7 at the rounded final estimates."""
    model, data = theoph_nonmem()

    def ofv(theta, omega, sigma):
        mu = np.tile(np.log(theta), (12, 1))
        res = Residual.combined(np.sqrt(sigma[1]), np.sqrt(sigma[0]))
        got = subject_objectives(method, model, data, mu, np.array(omega), res)
        assert np.all(got.status == 0)
        return got.ofv

    assert ofv(**NM_INIT) == pytest.approx(NM_ITER0[method], abs=1e-6)
    final, theta, omega, sigma = NM_FINAL[method]
    assert ofv(theta, omega, sigma) == pytest.approx(final, abs=1e-5)


# --- Wang (2007) Table 1 data and Table 2 NONMEM objectives ---------------------------------
# Data: nlmixr2data::Wang2007 (ID 1-10, Time 0 and 1, Y), "Table 1 from Wang, Y. Derivation of
# various NONMEM estimation methods, J Pharmacokinet Pharmacodyn 2007;34:575-593". Model
# f = 10 exp(-ke t), ke = 0.5 exp(eta), omega^2 = 0.04, sigma^2 = 0.1 (proportional or
# additive). Objectives (3 decimals) as encoded in nlmixr2est tests/testthat (the Wang2007
# tests: "Matches Table 2 Prop FOCEI for NONMEM", expected .propVals / .addVals).
WANG_Y = [10.68, 3.6837, 10.402, 6.454, 9.8814, 5.8565, 9.3408, 5.6209, 10.082, 6.7583,
          9.8938, 6.5049, 9.8908, 6.9557, 10.234, 6.4488, 9.9882, 6.7112, 9.6736, 6.6402]
WANG_TABLE2 = {
    "proportional": {"fo": 39.213, "foce": 39.207, "focei": 39.458},
    "additive": {"fo": 0.026, "foce": -2.059, "focei": -2.059},
}


class _WangModel:
    def predict(self, phi, index):
        t = np.array([0.0, 1.0])
        ke = np.exp(phi[:, :1])
        f = 10.0 * np.exp(-ke * t)
        return f, (-ke * t * f)[..., None]


@pytest.mark.parametrize("err", ["proportional", "additive"])
def test_wang2007_table2(err):
    data = PopulationData.from_subjects(np.reshape(WANG_Y, (10, 2)))
    mu = np.full((10, 1), np.log(0.5))
    res = (Residual.proportional if err == "proportional" else Residual.additive)(np.sqrt(0.1))
    for method, published in WANG_TABLE2[err].items():
        got = objective(method, _WangModel(), data, mu, [[0.04]], res)
        assert got == pytest.approx(published, abs=5e-4), method


# --- nlmixr2 FOCEi on theo_sd (= Theoph with the real doses, AMT = Dose x Wt in mg) -----------
# One compartment, first-order absorption, ka = exp(tka + eta.ka), cl = exp(tcl + eta.cl),
# v = exp(tv + eta.v), diagonal Omega, cp ~ add(add.sd); OBJF without N log(2 pi).
# Estimates as printed (4 significant digits; Omega from BSV CV % = 100 sqrt(exp(w2) - 1)):
# nlmixr2 vignette "Modifying nlmixr2 models by piping" (github nlmixr2/nlmixr2,
# articles/modelPiping.md at a0bf630): OBJF 116.804; a printed FOCEi fit of the same model in
# a stored version of nlmixr2/nlmixr2save reference/saveFit.md: OBJF 116.8036. See
# data/examples/theoph.md.
NLMIXR2_THEO = [
    (116.804, (0.4663, 1.012, 3.460), (70.00, 26.80, 13.88), 0.6947),
    (116.8036, (0.4655, 1.012, 3.460), (70.52, 26.75, 13.90), 0.6947),
]


@pytest.mark.parametrize("published, theta, cv, add_sd", NLMIXR2_THEO)
def test_theoph_reproduces_nlmixr2_focei(published, theta, cv, add_sd):
    """Measured: 116.8041 and 116.8036 (|diff| <= 1e-4)."""
    path = Path(__file__).parents[1] / "data" / "examples" / "theoph.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = list(dict.fromkeys(r["ID"] for r in rows))
    obs = [r for r in rows if r["EVID"] == "0"]
    times = [np.array([float(r["TIME"]) for r in obs if r["ID"] == i]) for i in ids]
    ys = [np.array([float(r["DV"]) for r in obs if r["ID"] == i]) for i in ids]
    doses = [float(next(r["AMT"] for r in rows if r["ID"] == i and r["EVID"] == "1"))
             for i in ids]
    omega = np.diag(np.log1p((np.array(cv) / 100.0) ** 2))
    got = objective("focei", OneCmtOral(times, doses), PopulationData.from_subjects(ys),
                    np.tile(theta, (12, 1)), omega, Residual.additive(add_sd))
    assert got == pytest.approx(published, abs=0.01)
