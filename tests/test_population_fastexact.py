"""The cached exact-path evaluator and the warm start of the inner problems give the numbers
of the paths they replace.

* :class:`~progression.fit.population._fastexact.FastExactModel` on R's Theoph (the config's
  ODE model with the data's doses): predictions and derivatives equal
  :class:`~progression.fit.population._adapter.ProblemModel`'s (Problem.evaluate) to 1e-9;
  second derivatives equal the closed form's (complex step) to 1e-7 of the largest entry;
  the parallel and serial compiled batches give identical bits; a failing row falls back to
  the general path (NaN row, the others unchanged); pickles; cases it does not cover (an
  estimated time offset, a later switch that is not a constant shift of states) leave the
  ProblemModel in place.
* Doses after t0 (Theoph with extra doses; NONMEM's pheno with repeated doses and
  covariates on the typical values): predictions and derivatives equal the general path's to
  1e-9, second derivatives its central differences to 1e-7; pickles, falls back per row,
  serial and parallel identical; the pheno FOCE-I fit reaches the same OFV (1e-6) with and
  without the cache, and NONMEM's published optimum.
* Model covariates (tests/models/pk_iv_bolus_wt.toml: weight in the ODE, constant or
  changing at 24 h, with repeated doses): equal to the general path to 1e-9 (second
  derivatives 1e-7), pickles; the change at 24 h moves the predictions after it only.
* :class:`~progression.fit.population._gradient.EtaPredictor`: the first-order prediction
  of the modes at moved parameters is much closer to the new modes than the old modes
  (error O(step^2) against O(step)), on the closed-form model.
* The ``focei`` estimator reaches the same OFV with and without the cached path.

No timing is asserted here (benchmarks/population.py measures the speed).
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.dosing import Dose
from progression.fit.config import read_fit_config
from progression.fit.design import designs_from_cohort
from progression.fit.estimate import read_data
from progression.fit.population import PopulationData, Residual, focei_gradient
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._fastexact import FastExactModel, fast_model
from progression.fit.problem import Problem
from progression.simulate._compiled import usable

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOral, OneCmtOralHess, simulate_onecmt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"


def _theoph():
    cfg = read_fit_config(THEOPH)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    base = Problem.from_config(cfg)
    base.fix_grid_step(designs)
    cols = np.array([base.names.index(x) for x in ("ka", "CL", "V")])
    return base, designs, cols


@pytest.fixture(scope="module")
def theoph():
    base, designs, cols = _theoph()
    if not usable(base.model):
        pytest.skip("no compiled kernels (numpy backend): the cached path does not apply")
    pm = ProblemModel(base, designs, cols)
    fm = fast_model(pm)
    assert isinstance(fm, FastExactModel)
    rng = np.random.default_rng(3)
    phi = np.log([1.57, 2.72, 31.5]) + 0.3 * rng.standard_normal((len(designs), 3))
    return pm, fm, designs, phi


def _mask(designs, n):
    return np.arange(n)[None] < np.array([d.n for d in designs])[:, None]


def test_predictions_equal_the_general_path(theoph):
    """f and G at random individual parameters (and for a subset of rows in another order)
    equal ProblemModel.predict to 1e-9 relative."""
    pm, fm, designs, phi = theoph
    for index in (np.arange(len(designs)), np.array([7, 2, 2, 11])):
        f0, G0 = pm.predict(phi[index], index)
        f1, G1 = fm.predict(phi[index], index)
        assert np.allclose(f1, f0, rtol=1e-9, atol=1e-12 * np.abs(f0).max())
        assert np.allclose(G1, G0, rtol=1e-9, atol=1e-12 * np.abs(G0).max())


def test_hessian_matches_the_closed_form(theoph):
    """d2f/dphi2 against the closed form's complex-step second derivatives: within 1e-7 of
    the largest entry (the differences' truncation is ~3e-9), symmetric."""
    pm, fm, designs, phi = theoph
    N = len(designs)
    ref = OneCmtOralHess([np.asarray(d.time, dtype=float) for d in designs],
                         [sum(x.amount for x in d.doses) for d in designs])
    H = fm.predict_hessian(phi, np.arange(N))
    Hr = ref.predict_hessian(phi, np.arange(N))
    m = _mask(designs, H.shape[1])
    assert np.allclose(H, np.swapaxes(H, 2, 3))
    assert np.abs((H - Hr)[m]).max() <= 1e-7 * np.abs(Hr[m]).max()


def test_parallel_and_serial_batches_are_identical(theoph):
    pm, fm, designs, phi = theoph
    index = np.arange(len(designs))
    before = fm.parallel
    try:
        fm.parallel = False
        f0, G0 = fm.predict(phi, index)
        H0 = fm.predict_hessian(phi, index)
        fm.parallel = True
        f1, G1 = fm.predict(phi, index)
        H1 = fm.predict_hessian(phi, index)
    finally:
        fm.parallel = before
    assert np.array_equal(f0, f1) and np.array_equal(G0, G1) and np.array_equal(H0, H1)


def test_a_failing_row_falls_back_to_the_general_path(theoph):
    """A row the compiled call cannot integrate (NaN parameters) is evaluated by the general
    path: NaN there, the other rows as before."""
    pm, fm, designs, phi = theoph
    index = np.arange(4)
    bad = phi[:4].copy()
    bad[1, 0] = np.nan
    f, G = fm.predict(bad, index)
    assert np.all(np.isnan(f[1])) and np.all(np.isfinite(f[[0, 2, 3]]))
    f0, G0 = fm.predict(phi[:4], index)
    assert np.array_equal(f[[0, 2, 3]], f0[[0, 2, 3]])


def test_pickles(theoph):
    pm, fm, designs, phi = theoph
    back = pickle.loads(pickle.dumps(fm))
    index = np.arange(len(designs))
    f0, G0 = fm.predict(phi, index)
    f1, G1 = back.predict(phi, index)
    assert np.array_equal(f0, f1) and np.array_equal(G0, G1)


def _later_doses():
    """Theoph with doses after t0: subject 0 a second dose at 6 h, subject 3 doses at 2.5 h
    and at its last value's time (24.x h: the output there is the one after the dose),
    subject 5 a dose at 30 h (after its last value: not simulated), subject 7 an infusion of
    100 mg at 50 mg/h from 6 h (the rate set at 6 h and reset at 8 h)."""
    base, designs, cols = _theoph()
    designs = list(designs)
    extra = {0: [Dose(time=6.0, amount=100.0)],
             3: [Dose(time=2.5, amount=50.0), Dose(time=float(designs[3].time[-1]),
                                                   amount=80.0)],
             5: [Dose(time=30.0, amount=70.0)],
             7: [Dose(time=6.0, amount=100.0, rate=50.0)]}
    for i, more in extra.items():
        d = designs[i]
        designs[i] = dataclasses.replace(d, doses=tuple(d.doses) + tuple(more))
    return base, designs, cols


@pytest.fixture(scope="module")
def later(theoph):
    base, designs, cols = _later_doses()
    pm = ProblemModel(base, designs, cols)
    fm = fast_model(pm)
    assert isinstance(fm, FastExactModel) and fm.segmented
    return pm, fm, designs, theoph[3]


def test_doses_after_t0_equal_the_general_path(later):
    """Doses after t0 (segments cut at them, one of them at a subject's last value; an
    infusion): f and G equal ProblemModel.predict to 1e-9, second derivatives the general
    path's central differences to 1e-7 of the largest entry (both difference the exact
    derivatives)."""
    pm, fm, designs, phi = later
    # the infusion's rate set at 6 h and reset at 8 h (subject 7's only later actions)
    lo, hi = fm.act_ptr[7], fm.act_ptr[8]
    assert fm.act_time[lo:hi].tolist() == [6.0, 8.0] and fm.act_val[lo:hi].tolist() == [50.0, 0.0]
    for index in (np.arange(len(designs)), np.array([3, 0, 3, 5, 7])):
        f0, G0 = pm.predict(phi[index], index)
        f1, G1 = fm.predict(phi[index], index)
        assert np.allclose(f1, f0, rtol=1e-9, atol=1e-12 * np.abs(f0).max())
        assert np.allclose(G1, G0, rtol=1e-9, atol=1e-12 * np.abs(G0).max())
    index = np.array([0, 3, 5, 7])
    H0 = pm.predict_hessian(phi[index], index)
    H1 = fm.predict_hessian(phi[index], index)
    assert np.abs(H1 - H0).max() <= 1e-7 * np.abs(H0).max()


def test_doses_after_t0_change_the_predictions(later, theoph):
    """The later doses act (the check above is not between two copies of the t0-only case):
    subject 0's values after 6 h rise by the second dose, those before do not move."""
    pm, fm, designs, phi = later
    f_one, _ = theoph[1].predict(phi[:1], np.array([0]))
    f_two, _ = fm.predict(phi[:1], np.array([0]))
    t = np.asarray(designs[0].time, dtype=float)
    n = t.size
    assert np.array_equal(f_two[0, :n][t < 6.0], f_one[0, :n][t < 6.0])
    assert np.all(f_two[0, :n][t > 6.0] > f_one[0, :n][t > 6.0] + 1e-3)


def test_doses_after_t0_pickle_and_fall_back(later):
    pm, fm, designs, phi = later
    index = np.arange(len(designs))
    back = pickle.loads(pickle.dumps(fm))
    f0, G0 = fm.predict(phi, index)
    f1, G1 = back.predict(phi, index)
    assert np.array_equal(f0, f1) and np.array_equal(G0, G1)
    bad = phi[[0, 3]].copy()
    bad[0, 1] = np.nan
    f, G = fm.predict(bad, np.array([0, 3]))
    assert np.all(np.isnan(f[0])) and np.array_equal(f[1], f0[3])


def test_doses_after_t0_serial_and_parallel_identical(later):
    pm, fm, designs, phi = later
    index = np.arange(len(designs))
    before = fm.parallel
    try:
        fm.parallel = False
        f0, G0 = fm.predict(phi, index)
        fm.parallel = True
        f1, G1 = fm.predict(phi, index)
    finally:
        fm.parallel = before
    assert np.array_equal(f0, f1) and np.array_equal(G0, G1)


def test_a_switch_that_is_not_a_constant_shift_is_refused(later):
    """A later jump that scales a state (not ``y + c``) or sets an estimated parameter
    raises ValueError in _later_actions (fast_model then keeps the general path)."""
    from progression.simulate._switches import Switch

    pm, fm, designs, phi = later
    theta = np.repeat(pm.theta[None], fm.N, axis=0)
    state = pm.problem.model.state_names[0]
    with pytest.raises(ValueError, match="constant shift"):
        fm._later_actions([Switch(time=5.0, jump={state: f"{state} * 0.5"})], theta)
    with pytest.raises(ValueError, match="estimated"):
        fm._later_actions([Switch(time=5.0, set={"CL": 1.0})], theta)


def test_an_estimated_time_offset_keeps_the_general_path():
    """Not covered (the time offset estimated): fast_model returns the ProblemModel."""
    base, designs, cols = _theoph()
    cols = np.append(cols, base.offset_index)
    pm = ProblemModel(base, designs, cols)
    assert fast_model(pm) is pm


PHENO = ROOT / "configs" / "pheno_population.toml"


def test_pheno_equals_the_general_path():
    """NONMEM's pheno (59 neonates, 1-20 IV bolus doses each, weight and Apgar score on the
    typical values): the cached path covers it, f and G equal ProblemModel.predict to 1e-9
    at random individual parameters."""
    cfg = read_fit_config(PHENO)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    base = Problem.from_config(cfg)
    if not usable(base.model):
        pytest.skip("no compiled kernels (numpy backend)")
    cols = np.array([base.names.index(x) for x in ("CL", "V")])
    pm = ProblemModel(base, designs, cols)
    fm = fast_model(pm)
    assert isinstance(fm, FastExactModel) and fm.segmented
    assert max(len(d.doses) for d in designs) > 10
    rng = np.random.default_rng(5)
    phi = np.log([0.0047 * 1.4, 1.0 * 1.4]) + 0.3 * rng.standard_normal((len(designs), 2))
    index = np.arange(len(designs))
    f0, G0 = pm.predict(phi, index)
    f1, G1 = fm.predict(phi, index)
    assert np.allclose(f1, f0, rtol=1e-9, atol=1e-12 * np.abs(f0).max())
    assert np.allclose(G1, G0, rtol=1e-9, atol=1e-12 * np.abs(G0).max())


def test_pheno_fit_same_optimum_with_and_without_the_cached_path():
    """FOCE-I on configs/pheno_population.toml: OFV equal to 1e-6 with and without the
    cached path, and the published NONMEM optimum (pheno_real.ext, 586.27605628) to 1e-3."""
    from progression.fit.estimate import fit
    from progression.fit.estimators.focei import FOCEI

    fast = fit(PHENO)
    try:
        FOCEI.fast_path = False
        slow = fit(PHENO)
    finally:
        FOCEI.fast_path = True
    a, b = fast.population, slow.population
    assert a.ofv == pytest.approx(b.ofv, abs=1e-6)
    assert a.ofv == pytest.approx(586.27605628, abs=1e-3)
    for k, v in b.fixed_effects.items():
        assert a.fixed_effects[k] == pytest.approx(v, rel=1e-6)
    np.testing.assert_allclose(np.diag(a.omega), np.diag(b.omega), rtol=1e-5)
    # the covariance step (R by differences of the gradient, the sandwich) through the
    # cache gives the general path's standard errors
    for k, v in b.fixed_effects_se.items():
        assert a.fixed_effects_se[k] == pytest.approx(v, rel=1e-4)
    assert a.coefficients_se["V~APGR=low"] == pytest.approx(
        b.coefficients_se["V~APGR=low"], rel=1e-4)


def test_eta_predictor_is_second_order():
    """Modes at mu + s dmu (and Omega, a moved by s): the prediction from the gradient at mu
    is off by O(s^2), the old modes by O(s): at s = 0.02 at least 20 times closer."""
    omega = np.diag([0.4, 0.07, 0.02])
    times, doses, ys = simulate_onecmt(10, 11, omega, a=0.5, b=0.0)
    model, data = OneCmtOral(times, doses), PopulationData.from_subjects(ys)
    mu = np.tile([0.45, 1.0, 3.45], (10, 1))
    res = Residual.additive(0.6)
    gr = focei_gradient(model, data, mu, omega, res)
    assert gr.predictor is not None
    s = 0.02
    mu2 = mu + s * np.array([1.0, -0.5, 0.3])
    om2 = omega * (1.0 + s)
    res2 = Residual.additive(0.6 * (1.0 + s))
    new = focei_gradient(model, data, mu2, om2, res2, eta0=gr.inner.eta).inner.eta
    pred = gr.predictor(mu2, om2, res2)
    assert np.abs(pred - new).max() <= np.abs(gr.inner.eta - new).max() / 20.0


def test_focei_fit_same_optimum_with_and_without_the_cached_path():
    """The estimator on configs/theoph_population.toml: OFV equal to 1e-5 and estimates to
    1e-4 relative whether the model goes through FastExactModel or Problem.evaluate."""
    from progression.fit.estimate import fit
    from progression.fit.estimators.focei import FOCEI

    fast = fit(THEOPH)
    try:
        FOCEI.fast_path = False
        slow = fit(THEOPH)
    finally:
        FOCEI.fast_path = True
    a, b = fast.population, slow.population
    assert a.ofv == pytest.approx(b.ofv, abs=1e-5)
    assert a.ofv == pytest.approx(116.8034, abs=1e-3)
    for k, v in b.fixed_effects.items():
        assert a.fixed_effects[k] == pytest.approx(v, rel=1e-4)
    np.testing.assert_allclose(np.diag(a.omega), np.diag(b.omega), rtol=1e-3)


def test_single_blas_thread_sets_and_restores_the_count():
    """Inside the block every BLAS threadpoolctl finds runs one thread; after it, its
    previous count."""
    from threadpoolctl import threadpool_info

    from progression.fit.population._threads import single_blas_thread

    def counts():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    before = counts()
    with single_blas_thread():
        assert all(n == 1 for n in counts())
        # numerics inside are unchanged
        a = np.arange(9.0).reshape(3, 3) + np.eye(3)
        assert np.allclose(np.linalg.solve(a, a @ np.ones(3)), np.ones(3))
    assert counts() == before


def _bolus_wt(varying: bool):
    """tests/data/nonmem_bolus.csv (20 subjects, 1-15 bolus doses, weight WT) with the model
    tests/models/pk_iv_bolus_wt.toml, whose [covariates] WT enters CL and V in the ODE; with
    ``varying`` each subject's weight rises by 20% at 24 h (a time-varying covariate)."""
    from test_fit_inputs_saved import BOLUS

    from progression.fit.config import parse_fit_config

    here = Path(__file__).parent
    text = BOLUS.format(model=(here / "models" / "pk_iv_bolus_wt.toml").as_posix(),
                        data=(here / "data" / "nonmem_bolus.csv").as_posix())
    cfg = parse_fit_config(text.replace('subjects = ["1", "2", "3"]\n', ""))
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    if varying:
        designs = [d.replace(covariates=tuple(
            (name, np.array([0.0, 24.0]), np.array([v[0], 1.2 * v[0]]))
            for name, _, v in d.covariates)) for d in designs]
    base = Problem.from_config(cfg)
    if not usable(base.model):
        pytest.skip("no compiled kernels (numpy backend)")
    cols = np.array([base.names.index(x) for x in ("CL_pop", "V_pop")])
    pm = ProblemModel(base, designs, cols)
    rng = np.random.default_rng(7)
    phi = np.log([5.0, 50.0]) + 0.3 * rng.standard_normal((len(designs), 2))
    return pm, designs, phi


@pytest.mark.parametrize("varying", [False, True])
def test_model_covariates_equal_the_general_path(varying):
    """A model with [covariates] (weight in the ODE's CL and V; constant per subject, or
    changing at 24 h): the cached path covers it, f and G equal ProblemModel.predict to 1e-9,
    second derivatives the general path's to 1e-7 of the largest entry; pickles."""
    pm, designs, phi = _bolus_wt(varying)
    fm = fast_model(pm)
    assert isinstance(fm, FastExactModel) and fm.H == 1
    index = np.arange(len(designs))
    f0, G0 = pm.predict(phi, index)
    f1, G1 = fm.predict(phi, index)
    assert np.allclose(f1, f0, rtol=1e-9, atol=1e-12 * np.abs(f0).max())
    assert np.allclose(G1, G0, rtol=1e-9, atol=1e-12 * np.abs(G0).max())
    sub = np.array([1, 4])
    H0 = pm.predict_hessian(phi[sub], sub)
    H1 = fm.predict_hessian(phi[sub], sub)
    assert np.abs(H1 - H0).max() <= 1e-7 * np.abs(H0).max()
    back = pickle.loads(pickle.dumps(fm))
    f2, G2 = back.predict(phi, index)
    assert np.array_equal(f1, f2) and np.array_equal(G1, G2)


def test_a_time_varying_covariate_acts():
    """The weight change at 24 h moves the cached predictions after 24 h (by at least 0.1%:
    V rises 20%, CL/V falls 4.5%) and not before: the covariate actions are applied."""
    pm_c, designs, phi = _bolus_wt(False)
    pm_v, _, _ = _bolus_wt(True)
    fc, fv = fast_model(pm_c), fast_model(pm_v)
    index = np.arange(len(designs))
    a, _ = fc.predict(phi, index)
    b, _ = fv.predict(phi, index)
    for i, d in enumerate(designs):
        t = np.asarray(d.time, dtype=float)
        assert np.array_equal(a[i, :d.n][t < 24.0], b[i, :d.n][t < 24.0])
        late = t > 24.0
        assert np.all(np.abs(b[i, :d.n][late] / a[i, :d.n][late] - 1.0) > 1e-3)
