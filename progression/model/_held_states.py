"""The held-state view of a compiled model (:meth:`CompiledModel.for_outputs`).

Split from :mod:`.compiled`: a model whose states that the fitted observables do not read (a
cumulative hazard) are held at their initial values, with kernels generated without their
equations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ._kernels import BatchFunction

if TYPE_CHECKING:
    from .compiled import CompiledModel


class _FrozenStates:
    """:meth:`CompiledModel.for_outputs`'s view: the model with the states ``drop`` held at
    their initial values (zero right-hand side, Jacobian rows and ``d rhs / d p`` rows), the
    kernels ``rhs``, ``jac``, ``rhs_jac`` generated without their equations; every other
    attribute is the model's. Not pickled (a worker process builds its own from the model)."""

    def __init__(self, base: CompiledModel, drop: tuple, module):
        import dataclasses

        self._base = base
        self.frozen_states = tuple(drop)
        self._rows = np.array(drop, dtype=int)
        self._columns: dict = {}
        if module is None:          # the numpy backend: the same system, the model's code
            self.kernels = None
            self.rhs, self.jac = self._zeroed(base.rhs), self._zeroed(base.jac)
            return
        self.kernels = dataclasses.replace(base.kernels, rhs=module.rhs, jac=module.jac,
                                           rhs_jac=module.rhs_jac)
        n = base.n_states
        self.rhs = BatchFunction("rhs", module._batch_rhs, (n,), "y", self._zeroed(base.rhs))
        self.jac = BatchFunction("jac", module._batch_jac, (n, n), "y",
                                 self._zeroed(base.jac))

    def _zeroed(self, function):
        rows = self._rows

        def call(*args):
            out = function(*args)
            out[rows] = 0.0
            return out

        return call

    @property
    def full_model(self) -> CompiledModel:
        """The model this view is of (what :func:`~progression.simulate.simulate` takes)."""
        return self._base

    def dfdp_columns(self, columns) -> Callable:
        """The model's ``d rhs / d p`` columns with the held states' rows zero."""
        key = tuple(int(c) for c in columns)
        if key not in self._columns:
            self._columns[key] = self._zeroed(self._base.dfdp_columns(key))
        return self._columns[key]

    def __getattr__(self, name):
        return getattr(self._base, name)

    def __reduce__(self):
        raise TypeError("a reduced model view does not pickle; pickle the model")

    def __repr__(self) -> str:
        held = ", ".join(self._base.state_names[i] for i in self.frozen_states)
        return f"<{self._base!r} with {held} held>"
