"""The exact-path polish's chord steps (:func:`progression.fit._batched.polish` with a hint and
``chord_steps > 0``, the default, and the other path's residuals): the other path's last
Gauss-Newton step first, then Gauss-Newton steps with the hint's Jacobian held fixed and this
path's residuals, every point evaluated without sensitivities; a row ends there when the step
predicts less than ``ftol`` of the sum of squares, else (or when the two paths' residuals
disagree) it goes on with sensitivities.

The problem and its closed-form optimum: tests/_polish_support.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _polish_support import Logged, decay_problem  # noqa: E402
from _polish_support import start as _start  # noqa: E402

from progression.fit._batched import CHORD_AGREE, polish  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    prob, designs, cols, best = decay_problem(tmp_path_factory.mktemp("chord"))
    at_best = np.tile(prob.values, (len(designs), 1))
    at_best[:, cols] = best
    return prob, designs, cols, best, at_best


@pytest.mark.parametrize("error", [0.0, 1e-4])
def test_chord_steps_end_at_the_optimum_without_sensitivities(setup, error):
    """From 0.1% away (a grid path's optimum is ~1e-4 from the exact one) with the residuals,
    Jacobian and information of the start point, the Jacobian exact or 1e-4 off (the grid
    path's relative error): the rows reach the optimum with evaluations without sensitivities
    only, two per row (the stepped point, one chord step: both parameters are on the log
    scale, so the first step does not land exactly); the report is an evaluation at the final
    points, the information the hint's."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    rng = np.random.default_rng(5)
    hints = [J * (1 + error * rng.standard_normal(J.shape)) for J in ev.jacobians]
    logged = Logged(prob)
    th, _, final, used = polish(logged, designs, theta, x, cols, ftol=1e-10,
                                start_jacobians=hints, start_info=ev.info,
                                start_residuals=list(ev.residuals))
    assert logged.calls == [(3, False), (3, False)], logged.calls
    np.testing.assert_array_equal(used, 2)
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)
    m2ll_best = prob.evaluate(designs, np.arange(3), at_best, cols, want_jac=False).m2ll
    assert np.all(final.m2ll <= m2ll_best + 1e-8), final.m2ll - m2ll_best
    ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True, want_predictions=True)
    np.testing.assert_allclose(final.m2ll, ref.m2ll, rtol=1e-9)
    for a, b in zip(final.predictions, ref.predictions, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(final.info, ev.info)
    assert not final.failed.any()


def test_a_poor_hint_costs_evaluations_or_a_bounded_bias(setup):
    """A hint Jacobian 30% off: the first step's residuals disagree with the hint's prediction,
    the rows are polished with sensitivities from their start and end at the optimum with this
    path's own information. 1e-3 off (a poor grid path): rows that pass the agreement check
    and meet the stopping rule in the chord steps end where that Jacobian is orthogonal to the
    residuals, off the optimum by about the Jacobian's error times the step from the start
    (measured 1.5e-5 relative here; 1e-4 bounds it, and 2e-6 would fail); the others go on
    with sensitivities."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    for error, rtol in ((0.3, 2e-6), (1e-3, 1e-4)):
        rng = np.random.default_rng(3)
        hints = [J * (1 + error * rng.standard_normal(J.shape)) for J in ev.jacobians]
        logged = Logged(prob)
        th, _, final, used = polish(logged, designs, theta, x, cols, ftol=1e-10,
                                    start_jacobians=hints, start_info=ev.info,
                                    start_residuals=list(ev.residuals),
                                    chord_steps=1)
        assert logged.calls[0] == (3, False)
        assert any(jac for _, jac in logged.calls[1:]), (error, logged.calls)
        if error == 0.3:
            assert logged.calls[1] == (3, True), logged.calls
        np.testing.assert_allclose(th[:, cols], best, rtol=rtol)
        ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True)
        np.testing.assert_allclose(final.m2ll, ref.m2ll, rtol=1e-9)
        own = ~np.array([np.array_equal(a, b) for a, b in zip(final.info, ev.info,
                                                              strict=True)])
        assert own.any()
        np.testing.assert_allclose(final.info[own], ref.info[own], rtol=1e-6)


@pytest.mark.parametrize("case", ["no residuals", "wrong length", "chord_steps=0"])
def test_without_usable_residuals_the_former_polish_runs(setup, case):
    """Without the other path's residuals (or with residuals of the wrong length, or
    ``chord_steps=0``) the hinted step's point is evaluated with sensitivities: the polish
    before chord steps (tests/test_polish_hint.py)."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    res = {"no residuals": None, "wrong length": [r[:-1] for r in ev.residuals],
           "chord_steps=0": list(ev.residuals)}[case]
    logged = Logged(prob)
    th, *_ = polish(logged, designs, theta, x, cols, ftol=1e-10,
                    start_jacobians=list(ev.jacobians), start_info=ev.info,
                    start_residuals=res,
                    chord_steps=0 if case == "chord_steps=0" else None)
    assert logged.calls[:2] == [(3, False), (3, True)], logged.calls
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)


def test_paths_that_disagree_go_with_sensitivities(setup):
    """Residuals of the other path that differ from this path's by more than CHORD_AGREE
    (its Jacobian then is not trusted for chord steps): the rows go back to their start
    point and are polished with sensitivities, without the hint, to the optimum."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    off = [r + 10 * CHORD_AGREE for r in ev.residuals]
    logged = Logged(prob)
    th, _, final, used = polish(logged, designs, theta, x, cols, ftol=1e-10,
                                start_jacobians=list(ev.jacobians),
                                start_info=ev.info, start_residuals=off)
    assert logged.calls[:2] == [(3, False), (3, True)], logged.calls
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)
    ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True)
    np.testing.assert_allclose(final.info, ref.info, rtol=1e-6)
