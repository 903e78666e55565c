"""The exact-path polish's chord steps (:func:`progression.fit._batched.polish` with a hint and
``chord_steps > 0``, the default): Gauss-Newton steps with the hint's Jacobian held fixed and
this path's residuals, every point evaluated without sensitivities; a row ends there when the
step predicts less than ``ftol`` of the sum of squares, else it goes on with sensitivities.

Closed form: first-order decay observed as log x (tests/_decay_support.py), log x = log x0 - k t
with additive error, whose maximum-likelihood estimates are ordinary least squares."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit import Problem
from progression.fit.transforms import to_internal

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import T, config, decay_data  # noqa: E402

_batched = importlib.import_module("progression.fit._batched")


def _ols(design):
    X = np.column_stack([np.ones(T.size), -T])
    b = np.linalg.lstsq(X, design.value, rcond=None)[0]
    return np.exp(b[0]), b[1]                              # x0, k


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    prob = Problem.from_config(config(tmp_path_factory.mktemp("chord"), x0="subject"))
    designs = decay_data()
    cols = prob.subject_cols
    names = [prob.names[c] for c in cols]
    best = np.array([[dict(zip(("x0", "k"), _ols(d), strict=True))[n] for n in names]
                     for d in designs])
    at_best = np.tile(prob.values, (len(designs), 1))
    at_best[:, cols] = best
    return prob, designs, cols, best, at_best


class _Logged:
    """``problem`` whose evaluate records (rows, with Jacobians) of each call."""

    def __init__(self, problem):
        self._p, self.calls = problem, []

    def __getattr__(self, name):
        return getattr(self._p, name)

    def evaluate(self, designs, rows, theta, cols, **kw):
        self.calls.append((len(rows), kw.get("want_jac", True)))
        return self._p.evaluate(designs, rows, theta, cols, **kw)


def _start(prob, cols, best, factor):
    theta = np.tile(prob.values, (best.shape[0], 1))
    theta[:, cols] = best * factor
    x = to_internal(theta[:, cols], prob.scale[cols], prob.lower[cols], prob.upper[cols])
    return theta, x


@pytest.mark.parametrize("error", [0.0, 1e-4])
def test_chord_steps_end_at_the_optimum_without_sensitivities(setup, error):
    """From 0.1% away (a grid path's optimum is ~1e-4 from the exact one) with the Jacobian
    and information of the start point, exact or 1e-4 off (the grid path's relative error):
    the rows reach the optimum with evaluations without sensitivities only; the report is
    an evaluation at the final points, the information the hint's."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    rng = np.random.default_rng(5)
    hints = [J * (1 + error * rng.standard_normal(J.shape)) for J in ev.jacobians]
    logged = _Logged(prob)
    th, _, final, used = _batched.polish(logged, designs, theta, x, cols, ftol=1e-10,
                                         start_jacobians=hints, start_info=ev.info)
    assert all(not jac for _, jac in logged.calls), logged.calls
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)
    m2ll_best = prob.evaluate(designs, np.arange(3), at_best, cols, want_jac=False).m2ll
    assert np.all(final.m2ll <= m2ll_best + 1e-8), final.m2ll - m2ll_best
    ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True, want_predictions=True)
    np.testing.assert_allclose(final.m2ll, ref.m2ll, rtol=1e-9)
    for a, b in zip(final.predictions, ref.predictions, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(final.info, ev.info)
    assert not final.failed.any()
    assert np.all(used >= 2)        # the start and at least one step


def test_a_poor_hint_goes_on_with_sensitivities(setup):
    """A Jacobian 30% off converges too slowly for the chord steps: the rows go on with
    sensitivities after them and still end at the optimum (a wrong hint costs evaluations,
    not accuracy); the information is then this path's own at the final point."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.03, 0.97]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    rng = np.random.default_rng(3)
    hints = [J * (1 + 0.3 * rng.standard_normal(J.shape)) for J in ev.jacobians]
    logged = _Logged(prob)
    th, _, final, used = _batched.polish(logged, designs, theta, x, cols, ftol=1e-10,
                                         start_jacobians=hints, start_info=ev.info,
                                         chord_steps=2)
    assert [jac for _, jac in logged.calls[:3]] == [False, False, False]
    assert any(jac for _, jac in logged.calls[3:])
    np.testing.assert_allclose(th[:, cols], best, rtol=2e-6)
    ref = prob.evaluate(designs, np.arange(3), th, cols, want_info=True)
    np.testing.assert_allclose(final.m2ll, ref.m2ll, rtol=1e-9)
    np.testing.assert_allclose(final.info, ref.info, rtol=1e-6)


def test_chord_steps_zero_is_the_former_polish(setup):
    """``chord_steps=0``: the hinted step's point is evaluated with sensitivities (the
    polish before chord steps; tests/test_polish_hint.py)."""
    prob, designs, cols, best, at_best = setup
    theta, x = _start(prob, cols, best, np.array([1.001, 0.999]))
    ev = prob.evaluate(designs, np.arange(3), theta, cols, want_info=True)
    logged = _Logged(prob)
    _batched.polish(logged, designs, theta, x, cols, ftol=1e-10,
                    start_jacobians=list(ev.jacobians), start_info=ev.info, chord_steps=0)
    assert logged.calls[:2] == [(3, False), (3, True)]
