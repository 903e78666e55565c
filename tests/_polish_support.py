"""Shared set-up of the polish tests (tests/test_polish_hint.py, tests/test_polish_chord.py):
first-order decay observed as log x (tests/_decay_support.py), log x = log x0 - k t with
additive error, whose maximum-likelihood estimates are ordinary least squares, and a problem
wrapper that logs its evaluations."""

from __future__ import annotations

import numpy as np
from _decay_support import T, config, decay_data

from progression.fit import Problem
from progression.fit.transforms import to_internal


def ols(design):
    """(x0, k): the closed-form estimates of one subject (ordinary least squares of log x)."""
    X = np.column_stack([np.ones(T.size), -T])
    b = np.linalg.lstsq(X, design.value, rcond=None)[0]
    return np.exp(b[0]), b[1]


def decay_problem(directory):
    """(problem, designs, cols, best): the decay problem with x0 and k per subject (its config
    written in ``directory``), the three subjects' designs, the subject columns and the
    closed-form estimates (3, 2) in the columns' order."""
    prob = Problem.from_config(config(directory, x0="subject"))
    designs = decay_data()
    cols = prob.subject_cols
    names = [prob.names[c] for c in cols]
    best = np.array([[dict(zip(("x0", "k"), ols(d), strict=True))[n] for n in names]
                     for d in designs])
    return prob, designs, cols, best


def start(prob, cols, best, factor):
    """(theta, x): every row at ``best * factor`` (natural scale, and on the estimation
    scale)."""
    theta = np.tile(prob.values, (best.shape[0], 1))
    theta[:, cols] = best * factor
    x = to_internal(theta[:, cols], prob.scale[cols], prob.lower[cols], prob.upper[cols])
    return theta, x


class Logged:
    """``problem`` whose evaluate records (rows, with Jacobians) of each call."""

    def __init__(self, problem):
        self._p, self.calls = problem, []

    def __getattr__(self, name):
        return getattr(self._p, name)

    def evaluate(self, designs, rows, theta, cols, **kw):
        self.calls.append((len(rows), kw.get("want_jac", True)))
        return self._p.evaluate(designs, rows, theta, cols, **kw)
