"""The faster paths behind population estimation give the numbers of the paths they replace.

* ``simulate``: LSODA segments through ``odeint`` (one ODEPACK call per segment) against
  scipy's LSODA stepper class (``_stacked._ODEINT_SEGMENTS = False``), with doses and forward
  sensitivities; failures still reported by the stepper; outputs recorded for all times at
  once equal the observation functions applied time by time; ``events=False`` changes no state
  or observable.
* ``Problem.evaluate(..., want_hessian=True)``: second derivatives of the predictions (central
  differences of the exact Jacobians, perturbed copies in one stacked solve) against the
  closed-form one-compartment model's (complex step, exact to rounding), and the FOCE-I
  gradient with them equal to the one from the core's own differences of G.

No timing is asserted here (benchmarks/population.py measures the speed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from progression.dosing import Dose
from progression.fit.config import read_fit_config
from progression.fit.design import designs_from_cohort
from progression.fit.estimate import read_data
from progression.fit.problem import Problem
from progression.model import load_model
from progression.simulate import _stacked, simulate

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import OneCmtOralHess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"


@pytest.fixture
def stepper(monkeypatch):
    """Run the stacked solves through scipy's LSODA stepper class (the old path)."""
    def use(flag):
        monkeypatch.setattr(_stacked, "_ODEINT_SEGMENTS", not flag)
    return use


def _dosed(**kw):
    model = load_model("pk_oral")
    table = model.parameter_table({"ka": np.array([0.8, 1.6, 3.0]),
                                   "CL": np.array([2.0, 2.7, 4.0]),
                                   "V": np.array([25.0, 32.0, 40.0]), "F_bio": 1.0})
    doses = [Dose(time=0.0, amount=320.0, subject=0), Dose(time=0.0, amount=280.0, subject=1),
             Dose(time=0.0, amount=300.0, subject=2), Dose(time=6.0, amount=150.0, subject=1),
             Dose(time=3.5, amount=100.0, subject=2, duration=1.5)]
    times = np.unique(np.r_[np.linspace(0.0, 24.0, 37), 3.5, 5.0, 6.0])
    return simulate(model, table, times, doses=doses, sensitivities=["ka", "CL", "V"],
                    rtol=1e-10, atol=1e-12, **kw)


def test_odeint_segments_match_the_stepper(stepper):
    """Doses at 0, a later bolus and an infusion (segments), forward sensitivities: the two
    LSODA drivers agree to ~1e-9 relative at rtol 1e-10."""
    stepper(False)
    fast = _dosed()
    stepper(True)
    slow = _dosed()
    assert np.all(fast.status == 0) and np.all(slow.status == 0)
    for a, b in ((fast.states, slow.states), (fast.observables, slow.observables),
                 (fast.state_sensitivities, slow.state_sensitivities),
                 (fast.observable_sensitivities, slow.observable_sensitivities)):
        assert np.allclose(a, b, rtol=1e-8, atol=1e-9 * np.abs(b).max())


def test_odeint_segments_are_exact_to_the_closed_form():
    """Single dose at 0: the odeint path against the Bateman function, to 1e-8 relative."""
    model = load_model("pk_oral")
    ka, cl, v, dose = 1.4, 2.7, 31.0, 320.0
    table = model.parameter_table({"ka": ka, "CL": cl, "V": v, "F_bio": 1.0})
    t = np.linspace(0.0, 24.0, 25)
    sim = simulate(model, table, t, doses=[Dose(time=0.0, amount=dose)], rtol=1e-10,
                   atol=1e-12, events=False)
    k = cl / v
    exact = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    conc = sim.observables[0, model.observable_names.index("conc")]
    assert np.allclose(conc, exact, rtol=1e-8, atol=1e-12)


def test_failure_is_reported_as_by_the_stepper(stepper):
    """A solve that needs more than max_steps steps fails on both drivers with one message."""
    stepper(False)
    fast = _dosed(max_steps=5)
    stepper(True)
    slow = _dosed(max_steps=5)
    assert np.all(fast.status == -1) and np.all(slow.status == -1)
    assert fast.message == slow.message
    assert "more than 5 steps" in fast.message[0]


def test_outputs_recorded_at_once_equal_the_observation_functions():
    """Observables and their sensitivities recorded for all output times at once equal the
    model's observe / dobs_dy / dobs_dp applied time by time to the recorded states."""
    sim = _dosed()
    model = load_model("pk_oral")
    p = sim.parameters.T
    sens = [model.parameter_index(x) for x in ("ka", "CL", "V")]
    for j, t in enumerate(sim.times):
        y = sim.states[:, :, j].T
        assert np.allclose(sim.observables[:, :, j], model.observe(t, y, p).T, rtol=1e-14)
        dh = (np.einsum("kim,mqi->mkq", model.dobs_dy(t, y, p),
                        sim.state_sensitivities[:, :, :, j].transpose(0, 2, 1))
              + model.dobs_dp(t, y, p)[:, sens, :].transpose(2, 0, 1))
        assert np.allclose(sim.observable_sensitivities[:, :, :, j], dh, rtol=1e-12,
                           atol=1e-300)


def test_events_off_changes_no_state():
    """als_reduced has events: with events=False the states and observables are those of the
    event-tracking solve (terminal events off), and the event lists are empty."""
    model = load_model("als_reduced")
    table = np.repeat(model.parameter_table(None), 3, axis=0)
    table[:, model.parameter_index("kA")] *= np.array([0.7, 1.0, 1.4])
    t = np.linspace(0.0, 60.0, 31)
    on = simulate(model, table, t, terminal_events=False, rtol=1e-9, atol=1e-11)
    off = simulate(model, table, t, terminal_events=False, events=False, rtol=1e-9,
                   atol=1e-11)
    assert np.allclose(off.states, on.states, rtol=1e-6, atol=1e-8)
    assert np.allclose(off.observables, on.observables, rtol=1e-6, atol=1e-8)
    assert set(off.events) == {e.name for e in model.events}
    assert all(len(x) == 0 for lists in off.events.values() for x in lists)


# ------------------------------------------------------------------ second derivatives


def _theoph():
    from progression.fit.population._adapter import unit_error_problem

    cfg = read_fit_config(THEOPH)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    cols = np.array([problem.names.index(x) for x in ("ka", "CL", "V")])
    return designs, unit_error_problem(problem), cols


def _closed_form(designs):
    times = [np.asarray(d.time, dtype=float) for d in designs]
    doses = [sum(x.amount for x in d.doses) for d in designs]
    return OneCmtOralHess(times, doses)


def test_hessian_matches_the_closed_form():
    """d2f/dphi2 of Theoph's 12 subjects through the ODE pipeline (doses, forward
    sensitivities at rtol 1e-10) against the closed form's complex-step second derivatives:
    within 1e-7 of the largest entry (the differences' truncation is ~1e-9)."""
    designs, problem, cols = _theoph()
    ref_model = _closed_form(designs)
    N = len(designs)
    rng = np.random.default_rng(3)
    phi = np.log([1.57, 2.72, 31.5]) + 0.3 * rng.standard_normal((N, 3))
    theta = np.repeat(problem.values[None], N, axis=0)
    theta[:, cols] = np.exp(phi)
    ev = problem.evaluate(designs, np.arange(N), theta, cols, want_jac=True,
                          want_hessian=True)
    ref = ref_model.predict_hessian(phi, np.arange(N))
    scale = max(np.abs(ref[i, :d.n]).max() for i, d in enumerate(designs))
    for i, d in enumerate(designs):
        got = -ev.hessians[i]                   # unit additive error: r = y - f
        assert got.shape == (d.n, 3, 3)
        assert np.allclose(got, np.swapaxes(got, 1, 2))
        assert np.abs(got - ref[i, :d.n]).max() <= 1e-7 * scale
    # the first derivatives of the same call are the closed form's too
    _, G = ref_model.predict(phi, np.arange(N))
    for i, d in enumerate(designs):
        assert np.allclose(-ev.jacobians[i][:d.n], G[i, :d.n], rtol=1e-8,
                           atol=1e-9 * np.abs(G).max())


def test_hessian_of_a_failed_row_is_nan():
    """A row whose simulation fails has NaN second derivatives, the others are finite."""
    designs, problem, cols = _theoph()
    theta = np.repeat(problem.values[None], 2, axis=0)
    theta[1, cols[0]] = np.nan
    ev = problem.evaluate(designs, np.array([0, 1]), theta, cols, want_jac=True,
                          want_hessian=True)
    assert ev.failed.tolist() == [False, True]
    assert np.all(np.isfinite(ev.hessians[0])) and np.all(np.isnan(ev.hessians[1]))


def test_focei_gradient_with_batched_hessian_equals_the_core_differences():
    """The FOCE-I objective and gradient on Theoph from the config's ODE model are the same
    (to 1e-6 relative) whether d2f comes from Problem.evaluate(want_hessian=True) (the
    adapter's proposed predict_hessian) or from the core's 2 D separate differences of G."""
    from progression.fit.population import Residual, focei_gradient
    from progression.fit.population._adapter import ProblemModel

    cfg = read_fit_config(THEOPH)
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    base = Problem.from_config(cfg)
    base.fix_grid_step(designs)
    cols = np.array([base.names.index(x) for x in ("ka", "CL", "V")])

    class WithHessian(ProblemModel):
        def predict_hessian(self, phi, index):
            phi = np.atleast_2d(np.asarray(phi, dtype=float))
            index = np.asarray(index, dtype=int)
            ds = getattr(self, "eval_designs", self.designs)
            ev = self.problem.evaluate(ds, index, self.thetas(phi), self.cols,
                                       want_jac=False, want_hessian=True)
            H = np.zeros((phi.shape[0], self.n, self.cols.size, self.cols.size))
            for r, i in enumerate(index):
                H[r, :ds[i].n] = np.nan if ev.failed[r] else -ev.hessians[r][:ds[i].n]
            return H

    class PredictOnly:
        """The model without predict_hessian: the core differences G itself."""

        def __init__(self, model):
            self.model = model

        def predict(self, phi, index):
            return self.model.predict(phi, index)

    plain = PredictOnly(ProblemModel(base, designs, cols))
    fast = WithHessian(base, designs, cols)
    data = fast.data()
    mu = np.tile([0.47, 1.01, 3.46], (len(designs), 1))
    om = np.diag([0.4, 0.069, 0.019])
    res = Residual((0.695,), (0.0,))
    a = focei_gradient(plain, data, mu, om, res)
    b = focei_gradient(fast, data, mu, om, res, eta0=a.inner.eta)
    assert b.hessian == "analytic" and a.hessian == "finite differences"
    assert abs(a.ofv - b.ofv) < 1e-6
    for x, y in ((a.d_mu, b.d_mu), (a.d_omega, b.d_omega), (a.d_a, b.d_a)):
        assert np.allclose(x, y, rtol=1e-5, atol=1e-6 * np.abs(x).max())


def test_predictions_alone_equal_those_with_sensitivities():
    """ALS cohort (no doses), exact path at rtol 1e-10: predictions evaluated without
    sensitivities (groups of EXACT_GROUP_VALUES rows) equal those of the evaluation with
    sensitivities (groups of EXACT_GROUP) to the integrator's tolerance."""
    from progression.fit import _paths
    from progression.fit.population._adapter import unit_error_problem

    cfg = read_fit_config(ROOT / "configs" / "als_synthetic_individual.toml")
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    designs = designs[:120]
    base = Problem.from_config(cfg)
    base.fix_grid_step(designs)
    problem = unit_error_problem(base)
    assert problem.exact and _paths.EXACT_GROUP_VALUES > _paths.EXACT_GROUP
    R = len(designs)
    theta = np.repeat(problem.values[None], R, axis=0)
    cols = np.array([problem.names.index("kA")])
    theta[:, cols[0]] *= np.exp(0.2 * np.random.default_rng(5).standard_normal(R))
    alone = problem.evaluate(designs, np.arange(R), theta, np.zeros(0, dtype=int),
                             want_jac=False, want_predictions=True)
    with_s = problem.evaluate(designs, np.arange(R), theta, cols, want_jac=True,
                              want_predictions=True)
    assert not alone.failed.any() and not with_s.failed.any()
    for a, b in zip(alone.predictions, with_s.predictions, strict=True):
        assert np.allclose(a, b, rtol=1e-8, atol=1e-9)
