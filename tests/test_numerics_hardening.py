"""The fast numerical paths must not be silently wrong (issue 9).

* grid sensitivities see stiffness spread over the off-diagonal, estimate their own error and
  fall back to exact forward sensitivities where it is too large;
* a stacked solve keeps every subject's tolerance whatever the batch size;
* a subject's fit does not depend on which other subjects share its batch;
* a failed integration names the subject, the time reached and the state or equation.
"""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
from progression._gridsens import grid_sensitivities
from progression.simulate import solve_states

# ------------------------------------------------------------------ a batch keeps tolerances


def _osc_rhs(t, y, p):
    return np.array([p[0] * y[1], -p[0] * y[0]])


def _osc_jac(t, y, p):
    z = np.zeros_like(p[0])
    return np.array([[z, p[0]], [-p[0], z]])


OSCILLATOR = pg.PythonModel("oscillator", ["u", "v"], {"w": 0.0}, _osc_rhs, [1.0, 0.0],
                            jac=_osc_jac)


@pytest.mark.parametrize(("method", "crowd"), [("RK45", 2000), ("BDF", 2000),
                                               ("LSODA", 10_000)])
def test_one_fast_subject_keeps_its_accuracy_among_many_quiet_ones(method, crowd):
    """u' = w v, v' = -w u, u(0) = 1: u = cos(w t). Subject 0 oscillates (w = 5, 8 periods),
    the others stand still (w = 0, zero local error). scipy's RK45/BDF/Radau measure the error
    of a step by an RMS norm over the whole stacked vector, which lets one subject's error grow
    like sqrt(batch size) (measured before the fix at rtol 1e-6: RK45 5.3e-6 alone, ~2.4e-4
    among 2,000). The error among the crowd must stay within 1.2x of the error alone (and both
    within 100 rtol of the truth); LSODA uses a max norm, checked here at 10,000 subjects."""
    times = np.linspace(0.0, 10.0, 11)
    exact = np.cos(5.0 * times)
    errors = []
    for m in (1, crowd):
        w = np.zeros(m)
        w[0] = 5.0
        sim = pg.simulate(OSCILLATOR, {"w": w}, times, method=method, rtol=1e-6, atol=1e-9)
        assert sim.success.all()
        errors.append(np.abs(sim.states[0, 0] - exact).max())
        np.testing.assert_array_equal(sim.states[1:, 0], 1.0)
    alone, among = errors
    assert alone < 100 * 1e-6
    assert among <= 1.2 * alone, (alone, among)


def test_the_fit_path_keeps_its_accuracy_among_many_quiet_subjects():
    """solve_states (odeint, LSODA's max norm) used by fits: same error alone and among
    10,000."""
    times = np.linspace(0.0, 10.0, 41)
    exact = np.cos(5.0 * times)
    errors = []
    for m in (1, 10_000):
        table = OSCILLATOR.parameter_table({"w": np.r_[5.0, np.zeros(m - 1)]})
        X, status, _, _ = solve_states(OSCILLATOR, table, times, rtol=1e-6, atol=1e-9)
        assert (status == 0).all()
        errors.append(np.abs(X[0, 0] - exact).max())
    assert errors[0] < 100 * 1e-6
    assert errors[1] <= 1.2 * errors[0], errors


# ------------------------------------------------------------------ failures are named

BLOWUP = """
[model]
name = "blowup"
time_unit = "month"
[parameters.c]
value = 1.0
bounds = [-10.0, 10.0]
[parameters.x0]
value = 1.0
bounds = [0.0, 10.0]
[states.x]
initial = "x0"
[states.z]
initial = "1"
[equations]
x = "x**2"
z = "-z * log(c)"
"""


@pytest.fixture(scope="module")
def blowup(tmp_path_factory):
    """x' = x^2, x(0) = x0: x = x0 / (1 - x0 t), infinite at t = 1/x0; z' = -z log(c): NaN
    from the first evaluation for c < 0."""
    path = tmp_path_factory.mktemp("models") / "blowup.toml"
    path.write_text(BLOWUP)
    return pg.load_model(path)


def _time_in(message):
    return float(message.split(" at t=")[1].split(" ")[0])


@pytest.mark.parametrize("method", ["LSODA", "BDF", "Radau", "RK45", "DOP853"])
def test_a_failure_names_subject_time_and_state(blowup, method):
    """Subject 0 blows up at t = 1, subject 1 (x0 = 0.1, blow-up at t = 10) is fine past t = 2,
    subject 2 has log of a negative number in the equation for z from t = 0. Each failure
    names its subject, the time reached and the state or equation; the good subject is
    untouched (and nothing hangs: a NaN first slope used to loop RK45 for ever)."""
    sim = pg.simulate(blowup, {"c": np.array([2.0, 2.0, -1.0]),
                               "x0": np.array([1.0, 0.1, 0.1])},
                      np.linspace(0.0, 2.0, 5), method=method)
    assert list(sim.status) == [-1, 0, -1]
    first, _, third = sim.message
    assert "subject 0" in first and "'x'" in first and "growing without bound" in first
    assert 0.99 < _time_in(first) < 1.01
    assert np.isfinite(sim.states[1]).all() and sim.message[1] == "ok"
    np.testing.assert_allclose(sim["x"][1], 0.1 / (1 - 0.1 * np.linspace(0, 2, 5)), rtol=1e-4)
    assert "subject 2" in third and "equation(s) for 'z'" in third and "nan" in third
    assert _time_in(third) == 0.0
    # outputs after the failure are NaN, never values that look like a result
    assert np.isnan(sim["x"][0, -1]) and np.isnan(sim["z"][2, -1])


def test_the_fit_path_names_the_time_and_state_of_a_failure(blowup):
    """solve_states (odeint) reports the same diagnosis (the fit attaches the subject id)."""
    table = blowup.parameter_table({"c": np.array([2.0, 2.0, -1.0]),
                                    "x0": np.array([1.0, 0.1, 0.1])})
    X, status, message, _ = solve_states(blowup, table, np.linspace(0.0, 2.0, 5))
    assert list(status) == [-1, 0, -1]
    assert "'x'" in message[0] and 0.99 < _time_in(message[0]) < 1.01
    assert "equation(s) for 'z'" in message[2] and _time_in(message[2]) == 0.0
    assert np.isfinite(X[1]).all()


def test_too_many_steps_names_the_time_reached():
    sim = pg.simulate(OSCILLATOR, {"w": np.array([0.0, 50.0])}, [0.0, 10.0], method="RK45",
                      max_steps=20)
    assert list(sim.status) == [0, -1]
    assert "more than 20 steps" in sim.message[1] and "subject 1" in sim.message[1]
    assert 0.0 < _time_in(sim.message[1]) < 10.0
    assert "state 'u'" in sim.message[1] or "state 'v'" in sim.message[1]


# ------------------------------------------------------------------ grid sensitivities

H = 0.25


def _fast_mode_matrix():
    """A = Q diag(lambda) Q^T, 10 states: one fast mode (lambda h = -50) along (1, ..., 1)
    spread evenly over the states, so every diagonal entry has h |A_ii| ~ 5.2 (below the old
    diagonal test's 6), nine slow modes (0.1 to 1)."""
    rng = np.random.default_rng(0)
    B = rng.standard_normal((10, 10))
    B[:, 0] = 1.0
    Q, _ = np.linalg.qr(B)
    lam = -np.r_[50.0 / H, np.linspace(0.1, 1.0, 9)]
    return Q @ np.diag(lam) @ Q.T


A10 = _fast_mode_matrix()
U10 = np.full(10, 0.1)


def _lin_rhs(t, y, p):
    return A10 @ (y - p[0][None, :] * U10[:, None])


def _lin_jac(t, y, p):
    return np.broadcast_to(A10[:, :, None], (10, 10, y.shape[1])).copy()


LINEAR10 = pg.PythonModel("fast_mode", [f"y{i}" for i in range(10)], {"a": 1.0}, _lin_rhs,
                          np.zeros(10), jac=_lin_jac)


def _linear10_case():
    from scipy.linalg import expm

    grid = np.arange(0.0, 10.0 + H / 2, H)
    table = LINEAR10.parameter_table({"a": np.array([1.0, 2.0])})
    states = solve_states(LINEAR10, table, grid, rtol=1e-10, atol=1e-12)[0]
    # y' = A (y - a u), y(0) = 0: y = a (I - exp(A t)) u, dy/da = (I - exp(A t)) u
    exact = np.array([(np.eye(10) - expm(A10 * t)) @ U10 for t in grid]).T      # (n, G)
    return grid, table, states, exact


@pytest.mark.parametrize("richardson", [False, True])
def test_grid_sensitivities_see_a_fast_mode_spread_over_the_off_diagonal(richardson):
    """d(sum y)/da = 1 - exp(-50 t / h) -> 1. The diagonal test missed the fast mode and the
    trapezoidal rule rang: sum between 0.27 and 1.67 (with or without Richardson). With the
    spectral-radius bound the stiff steps are implicit Euler: the first step's error,
    1/(1 + 50) = 0.02 on the sum (2e-3 per component), decays with the fast mode; from the
    second step on d(sum y)/da is within 1e-3 of the truth; every component is within 3e-3 of
    the truth at every node; and the subject's own error estimate (h vs 2h, on the even
    nodes) has the size of its true error (within a factor 3; relative to each sensitivity's
    largest value: 0.0095 against 0.0196 at the first node), below the fallback tolerance."""
    grid, table, states, exact = _linear10_case()
    report = {}
    S = grid_sensitivities(LINEAR10, grid, states, table, [0], richardson=richardson,
                           report=report)[:, :, 0, :]                            # (m, n, G)
    total = S.sum(axis=1)[:, 2:]
    np.testing.assert_allclose(total, np.broadcast_to(exact.sum(axis=0)[2:], total.shape),
                               atol=1e-3)
    np.testing.assert_allclose(S, np.broadcast_to(exact, S.shape), atol=3e-3)
    true_rel = (np.abs(S - exact[None]).max(axis=2)
                / np.abs(exact).max(axis=1)[None]).max(axis=1)
    assert ((report["estimate"] > true_rel / 3) & (report["estimate"] < 3 * true_rel)).all(), \
        (report["estimate"], true_rel)
    assert report["fallback"].size == 0


def test_grid_sensitivities_fall_back_to_forward_sensitivities_when_their_estimate_is_large(
        monkeypatch):
    """If the fast mode were missed anyway (stiffness test switched off here), the trapezoidal
    rule rings, the h-vs-2h estimate is of order 1 and the subjects are recomputed as exact
    forward sensitivities: within 1e-5 of the matrix exponential."""
    import progression._gridsens as gridsens

    monkeypatch.setattr(gridsens, "STIFF_STEP", np.inf)
    grid, table, states, exact = _linear10_case()
    report = {}
    ringing = grid_sensitivities(LINEAR10, grid, states, table, [0], tol=np.inf,
                                 report=report)[:, :, 0, :]
    assert np.abs(ringing.sum(axis=1) - exact.sum(axis=0)).max() > 0.5     # 0.27 ... 1.67
    assert (report["estimate"] > 0.1).all()
    S = grid_sensitivities(LINEAR10, grid, states, table, [0], report=report,
                           solver={"rtol": 1e-9, "atol": 1e-12})[:, :, 0, :]
    assert list(report["fallback"]) == [0, 1]
    np.testing.assert_allclose(S, np.broadcast_to(exact, S.shape), atol=1e-5)


# ------------------------------------------------------------------ batching changes nothing


@pytest.fixture(scope="module")
def cohort200():
    """200 virtual als_reduced patients like tests/_fit_support.simulate_cohort's (kA and eD
    log-normal, enrolment 15-45 months after onset, ALSFRS-R, NfL and CRP monthly for 18
    months with noise), simulated in one batch."""
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(3)
    n = 200
    table = model.parameter_table(None, n)
    for name in ("kA", "eD"):
        table[:, model.parameter_index(name)] *= np.exp(0.3 * rng.standard_normal(n))
    table = np.clip(table, model.bounds[:, 0] * 1.02, model.bounds[:, 1] * 0.98)
    offsets = rng.uniform(15.0, 45.0, n)
    visits = np.arange(0.0, 19.0, 1.0)
    fine = np.arange(0.0, 70.0, 0.05)
    sim = pg.simulate(model, table, fine, rtol=1e-9, atol=1e-11, terminal_events=False)
    cols = {k: [] for k in ("subject", "time", "observable", "value")}
    for i in range(n):
        for obs, sd in (("ALSFRS_R", 1.0), ("NfL", 0.15), ("CRP", 0.2)):
            f = np.interp(offsets[i] + visits, fine, sim[obs][i])
            eps = sd * rng.standard_normal(visits.size)
            y = np.clip(f + eps, 0.0, 48.0) if obs == "ALSFRS_R" else f * np.exp(eps)
            cols["subject"] += [f"P{i + 1:03d}"] * visits.size
            cols["time"] += list(visits)
            cols["observable"] += [obs] * visits.size
            cols["value"] += list(y)
    return pg.Cohort(cols, time_unit="month", source="simulated in the test")


@pytest.mark.parametrize("refine", ["exact", "none"])
def test_a_subject_s_fit_does_not_depend_on_its_batch(cohort200, refine):
    """The same subject fitted alone, among 4, 20 and 200 (grid_step "auto", per-subject steps,
    grid sensitivities): estimates and objective equal to 1e-9 relative. Before, the grid step
    followed the latest time of each batch (3.6e-4 relative in kA between batches of 20 and 4)
    and a stacked solve shared its step sizes among the batch (~2e-6 relative even at a fixed
    step); now the step is fixed once from all the data and each subject has its own step
    sequence (Rodas4 vectorised over subjects)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _fit_support import config_text

    from progression.fit import fit
    from progression.fit.config import parse_fit_config

    # both refine modes: the grid path (per-subject steps) and the exact-path polish, whose
    # stacked forward-sensitivity solve runs at rtol 1e-10 (problem.EXACT_RTOL) so that shared
    # step sizes move nothing beyond ~1e-10
    base = config_text().replace("grid_step = 0.5",
                                 'grid_step = "auto"\nper_subject_steps = true\n'
                                 f'refine = "{refine}"')
    found = []
    for size in (1, 4, 20, 200):
        ids = ", ".join(f'"P{i + 1:03d}"' for i in range(size))
        text = base.replace('path = "data.csv"', f'path = "data.csv"\nsubjects = [{ids}]')
        text += f"\n[estimator]\nbatch_size = {size}\n"
        res = fit(parse_fit_config(text, check_data=False), data=cohort200)
        assert res.converged[0]
        found.append([*(res.estimates(n)[0] for n in ("kA", "eD", "time_offset")),
                      res.subject_objective[0]])
    found = np.array(found)
    np.testing.assert_allclose(found, np.broadcast_to(found[0], found.shape), rtol=1e-9)


def test_per_subject_states_match_a_tight_reference_and_do_not_depend_on_the_batch():
    """solve_states(per_subject=True) on als_reduced: within 2e-5 of an rtol-1e-11 solve
    (relative to each state's range; odeint at the same rtol 1e-6: ~4e-6), and a subject's
    states are bit-identical alone and among 50 whose grid extends further."""
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(0)
    table = model.parameter_table(None, 50)
    table[:, model.parameter_index("kA")] *= np.exp(0.3 * rng.standard_normal(50))
    grid = np.arange(0.0, 60.0, 0.5)
    ref = solve_states(model, table, grid, rtol=1e-11, atol=1e-13)[0]
    X, status, _, _ = solve_states(model, table, grid, per_subject=True)
    assert (status == 0).all()
    err = np.abs(X - ref) / (np.abs(ref).max(axis=2, keepdims=True) + 1e-9)
    assert err.max() < 2e-5, err.max()
    alone = solve_states(model, table[7:8], grid[:60], per_subject=True)[0]
    np.testing.assert_array_equal(alone[0], X[7, :, :60])


def test_per_subject_states_name_a_failure(blowup):
    table = blowup.parameter_table({"c": np.array([2.0, 2.0, -1.0]),
                                    "x0": np.array([1.0, 0.1, 0.1])})
    X, status, message, _ = solve_states(blowup, table, np.linspace(0.0, 2.0, 5),
                                         per_subject=True)
    assert list(status) == [-1, 0, -1]
    assert "'x'" in message[0] and 0.99 < _time_in(message[0]) < 1.01
    assert "equation(s) for 'z'" in message[2] and _time_in(message[2]) == 0.0
    np.testing.assert_allclose(X[1, 0], 0.1 / (1 - 0.1 * np.linspace(0, 2, 5)), rtol=1e-5)


def _forced_rhs(t, y, p):
    return np.cos(p[0] * t)[None, :] + 0.0 * y


FORCED = pg.PythonModel("forced", ["x"], {"w": 1.0}, _forced_rhs, [0.0])


def test_per_subject_states_of_a_time_dependent_model():
    """x' = cos(w t), x(0) = 0: x = sin(w t) / w (the Rosenbrock stages need df/dt here)."""
    times = np.linspace(0.0, 10.0, 41)
    w = np.array([0.5, 2.0, 3.0])
    X, status, _, _ = solve_states(FORCED, FORCED.parameter_table({"w": w}), times,
                                   rtol=1e-8, atol=1e-10, per_subject=True)
    assert (status == 0).all()
    np.testing.assert_allclose(X[:, 0], np.sin(w[:, None] * times) / w[:, None], atol=2e-7)
