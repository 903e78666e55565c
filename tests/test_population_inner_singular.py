"""Conditional modes with a singular curvature: a step, not an exception (population._inner)."""

import numpy as np

from progression.fit.population._inner import _newton_steps


def test_regular_batches_are_solved_as_before():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 3, 3))
    H = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(3)
    g = rng.standard_normal((5, 3))
    assert np.array_equal(_newton_steps(H, g), np.linalg.solve(H, g[..., None])[..., 0])


def test_a_singular_subject_gets_the_minimum_norm_step():
    H = np.array([[[2.0, 0.0], [0.0, 4.0]],
                  [[1.0, 1.0], [1.0, 1.0]]])      # the second: rank 1, no inverse
    g = np.array([[2.0, 4.0], [2.0, 2.0]])
    step = _newton_steps(H, g)
    assert np.allclose(step[0], [1.0, 1.0], rtol=1e-14)
    # minimum-norm solution of [[1, 1], [1, 1]] x = [2, 2]: x = (1, 1)
    assert np.allclose(step[1], [1.0, 1.0], rtol=1e-12)
    assert np.allclose(H[1] @ step[1], g[1], rtol=1e-12)
