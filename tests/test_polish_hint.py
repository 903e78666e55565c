"""The exact-path polish started from another path's derivatives (``start_jacobians``): the
first evaluation carries no sensitivities, the first step uses the given Jacobian with this
path's residuals, and the polish still ends at this path's optimum; a wrong Jacobian costs
evaluations, not accuracy. Here without chord steps (``chord_steps=0``: the step's point is
evaluated with sensitivities); the chord steps are tested in tests/test_polish_chord.py.

The problem and its closed-form optimum: tests/_polish_support.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _polish_support import Logged, decay_problem, start  # noqa: E402

from progression.fit._batched import polish  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    prob, designs, cols, best = decay_problem(tmp_path_factory.mktemp("hint"))
    theta, x = start(prob, cols, best, np.array([1.03, 0.97]))        # 3% off the optimum
    ev = prob.evaluate(designs, np.arange(len(designs)), theta, cols, want_info=True)
    return prob, designs, cols, best, theta, x, ev


@pytest.mark.parametrize("error", [0.0, 1e-3, 0.3])
def test_hinted_polish_ends_at_the_optimum(setup, error):
    prob, designs, cols, best, theta, x, ev = setup
    rng = np.random.default_rng(3)
    hints = [J * (1 + error * rng.standard_normal(J.shape)) for J in ev.jacobians]
    logged = Logged(prob)
    th, _, final, used = polish(logged, designs, theta, x, cols, ftol=1e-10,
                                start_jacobians=hints, start_info=ev.info,
                                chord_steps=0)
    # the stopping rule (the Gauss-Newton step predicts less than 1e-10 of the sum of
    # squares) leaves the estimate ~4e-5 standard errors, ~4e-7 relative, from the optimum
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)
    assert not final.failed.any()
    at_best = theta.copy()
    at_best[:, cols] = best
    m2ll_best = prob.evaluate(designs, np.arange(3), at_best, cols, want_jac=False).m2ll
    assert np.all(final.m2ll <= m2ll_best + 1e-8), final.m2ll - m2ll_best
    # the first evaluation without sensitivities, then the hinted step's point with them
    assert logged.calls[0] == (3, False) and logged.calls[1] == (3, True)
    # the report is an evaluation at the final points (to the integration noise of a
    # batch with other companions: the numpy backend's stacked solve shares steps, rtol 1e-10)
    ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True)
    np.testing.assert_allclose(final.m2ll, ref.m2ll, rtol=1e-9)
    np.testing.assert_allclose(final.info, ref.info, rtol=1e-6)


def test_hinted_polish_saves_sensitivity_evaluations(setup):
    """From 3% away on a model linear in (log x0, k): an exact Jacobian reaches the optimum in
    one step, so the hinted polish makes one evaluation with sensitivities per row where the
    plain polish makes two (the start and the optimum)."""
    prob, designs, cols, best, theta, x, ev = setup
    plain, hinted = Logged(prob), Logged(prob)
    th0, *_ = polish(plain, designs, theta, x, cols, ftol=1e-10)
    th1, *_ = polish(hinted, designs, theta, x, cols, ftol=1e-10,
                     start_jacobians=list(ev.jacobians), start_info=ev.info,
                     chord_steps=0)
    sens_rows = [sum(n for n, jac in log.calls if jac) for log in (plain, hinted)]
    assert sens_rows[1] < sens_rows[0], (plain.calls, hinted.calls)
    # both within their stopping rule of the optimum
    np.testing.assert_allclose(th1[:, cols], best, rtol=2e-6)
    np.testing.assert_allclose(th0[:, cols], best, rtol=2e-6)


def test_a_hint_of_the_wrong_length_is_ignored(setup):
    prob, designs, cols, best, theta, x, ev = setup
    hints = [J[:-1] for J in ev.jacobians]
    th, _, final, used = polish(prob, designs, theta, x, cols, ftol=1e-10,
                                start_jacobians=hints, start_info=ev.info)
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)


def test_rows_with_poorly_conditioned_information_ignore_the_hint(setup):
    """A hint whose information has a direction the data hardly determine (scaled smallest
    eigenvalue below 1e-3 of the largest) is not used: the polish evaluates those rows with
    sensitivities from the start, exactly as without a hint."""
    prob, designs, cols, best, theta, x, ev = setup
    g = np.array([1.0, 1.0])
    flat = np.repeat((np.outer(g, g) + 1e-5 * np.eye(2))[None], 3, axis=0) * 100.0
    hinted, plain = Logged(prob), Logged(prob)
    th1, _, f1, u1 = polish(hinted, designs, theta, x, cols, ftol=1e-10,
                            start_jacobians=list(ev.jacobians), start_info=flat)
    th0, _, f0, u0 = polish(plain, designs, theta, x, cols, ftol=1e-10)
    assert hinted.calls == plain.calls and hinted.calls[0] == (3, True)
    np.testing.assert_array_equal(th1, th0)
    np.testing.assert_array_equal(f1.m2ll, f0.m2ll)
    np.testing.assert_array_equal(u1, u0)
