"""Models written as Python callables instead of a model file."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ._base import _ModelBase

__all__ = ["PythonModel"]


def _central_difference(f, x: np.ndarray, index_count: int, rel_step: float = 1e-6):
    """d f / d x[i] for i < index_count by central differences; x is (N, m)."""
    out = []
    for i in range(index_count):
        h = rel_step * np.maximum(1.0, np.abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        out.append((f(up) - f(down)) / (2 * h))
    return np.stack(out, axis=-2) if out else None


class PythonModel(_ModelBase):
    """A model written as Python callables instead of a model file.

    Parameters
    ----------
    name : str
    states : sequence of str
    parameters : mapping of str to float
        Parameter names and default values.
    rhs : callable
        ``rhs(t, y, p) -> dy/dt``, vectorised: ``y`` is ``(n_states, m)``, ``p`` is
        ``(n_parameters, m)``, return ``(n_states, m)``. Rows follow the order of ``states`` and
        ``parameters``.
    initial : callable or sequence of float
        ``initial(p) -> (n_states, m)`` or constant initial values.
    observables : mapping of str to callable, optional
        ``name -> f(t, y, p) -> (m,)``.
    jac : callable, optional
        ``jac(t, y, p) -> (n_states, n_states, m)``; central finite differences otherwise.
    events : sequence of (Event, callable), optional
        Event definitions with ``condition(t, y, p) -> (m,)``.
    bounds : mapping of str to (float, float), optional
    time_unit : str

    Notes
    -----
    The callables must be module-level functions (not lambdas) for the model to pickle.
    """

    def __init__(self, name, states, parameters, rhs, initial, *, observables=None, jac=None,
                 events=(), bounds=None, time_unit="1"):
        self.name = name
        self.time_unit = time_unit
        self.state_names = tuple(states)
        self.parameter_names = tuple(parameters)
        self.defaults = np.array([float(v) for v in parameters.values()])
        bounds = bounds or {}
        self.bounds = np.array([bounds.get(k, (-np.inf, np.inf)) for k in parameters],
                               dtype=float).reshape(-1, 2)
        self._rhs = rhs
        self._initial = initial
        self._observables = dict(observables or {})
        self.observable_names = tuple(self._observables)
        self._jac = jac
        self._events = tuple(events)
        self.events = tuple(e for e, _ in self._events)
        self.jacobian_sparsity = np.ones((len(self.state_names),) * 2, dtype=bool)

    def rhs(self, t, y, p):
        return np.asarray(self._rhs(t, y, p), dtype=float).reshape(y.shape)

    def jac(self, t, y, p):
        if self._jac is not None:
            return np.asarray(self._jac(t, y, p), dtype=float)
        return _central_difference(lambda yy: self.rhs(t, yy, p), y, self.n_states)

    def dfdp(self, t, y, p):
        d = _central_difference(lambda pp: self.rhs(t, y, pp), p, self.n_parameters)
        return d if d is not None else np.zeros((self.n_states, 0, y.shape[1]))

    def dfdp_columns(self, columns):
        columns = list(columns)
        return lambda t, y, p: self.dfdp(t, y, p)[:, columns, :]

    def sensitivity_rhs(self, columns):
        columns = list(columns)
        n, k, P = self.n_states, len(columns), self.n_parameters

        def g(t, Y, Pa):
            y, p, a = Y[:n], Pa[:P], Pa[P:]
            S = Y[n:].reshape(k, n, -1)
            dS = (np.einsum("ijm,qjm->qim", self.jac(t, y, p), S)
                  + self.dfdp(t, y, p)[:, columns, :].transpose(1, 0, 2) * a[:, None, :])
            return np.concatenate([self.rhs(t, y, p), dS.reshape(k * n, -1)])

        return g

    def initial(self, t, y, p):
        if callable(self._initial):
            return np.asarray(self._initial(p), dtype=float).reshape(self.n_states, -1)
        return np.repeat(np.asarray(self._initial, float)[:, None], p.shape[1], axis=1)

    def dinitial_dp(self, t, y, p):
        d = _central_difference(lambda pp: self.initial(t, y, pp), p, self.n_parameters)
        return d if d is not None else np.zeros((self.n_states, 0, p.shape[1]))

    def observe(self, t, y, p):
        if not self._observables:
            return np.zeros((0, y.shape[1]))
        return np.stack([np.broadcast_to(f(t, y, p), (y.shape[1],))
                         for f in self._observables.values()])

    def dobs_dy(self, t, y, p):
        d = _central_difference(lambda yy: self.observe(t, yy, p), y, self.n_states)
        return d if d is not None else np.zeros((0, self.n_states, y.shape[1]))

    def dobs_dp(self, t, y, p):
        d = _central_difference(lambda pp: self.observe(t, y, pp), p, self.n_parameters)
        return d if d is not None else np.zeros((len(self.observable_names), 0, y.shape[1]))

    def event_values(self, t, y, p):
        if not self._events:
            return np.zeros((0, y.shape[1]))
        return np.stack([np.broadcast_to(f(t, y, p), (y.shape[1],)) for _, f in self._events])

    def jump(self, mapping, where="jump"):
        raise ModelError(f"model {self.name!r} is a Python model: state jumps given as "
                         f"expressions need a model file; add to the states in rhs instead")

    def describe(self) -> str:
        return (f"{self.name} (Python model): states {', '.join(self.state_names)}; parameters "
                + ", ".join(f"{k}={v:g}" for k, v in zip(self.parameter_names, self.defaults,
                                                          strict=True)))

    def __repr__(self) -> str:
        return f"PythonModel({self.name!r}, states={len(self.state_names)})"
