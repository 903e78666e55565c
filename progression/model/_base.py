"""What the simulator needs from a model, shared by compiled and Python models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ModelError, did_you_mean
from .spec import Event

__all__ = ["_ModelBase"]


class _ModelBase:
    """What the simulator needs from a model, shared by compiled and Python models."""

    name: str
    time_unit: str
    state_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    #: Time-varying covariates (model files only) and the hidden parameter rows that carry
    #: them after the parameters in every generated function's ``p`` (see
    #: :attr:`~progression.model.spec.ModelSpec.hidden_names`).
    covariate_names: tuple[str, ...] = ()
    hidden_names: tuple[str, ...] = ()
    observable_names: tuple[str, ...]
    events: tuple[Event, ...]
    defaults: np.ndarray
    bounds: np.ndarray

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_parameters(self) -> int:
        return len(self.parameter_names)

    def _index(self, names: tuple, name: str, kind: str) -> int:
        try:
            return names.index(name)
        except ValueError:
            hint = did_you_mean(name, names)
            raise ModelError(f"model {self.name!r} has no {kind} {name!r}{hint}") from None

    def parameter_index(self, name: str) -> int:
        if name in self.covariate_names:
            raise ModelError(f"model {self.name!r}: {name!r} is a covariate, not a parameter "
                             f"(give its values with covariates=)")
        return self._index(self.parameter_names, name, "parameter")

    def state_index(self, name: str) -> int:
        return self._index(self.state_names, name, "state")

    def parameter_table(self, params=None, n_subjects: int | None = None) -> np.ndarray:
        """Turn the forms users pass into a ``(n_subjects, n_parameters)`` array.

        Parameters
        ----------
        params : None, dict, sequence of dict, or array_like
            ``None`` for the defaults; a dict name -> scalar or per-subject array (others keep
            their defaults); a list of such dicts, one per subject; or an array shaped
            ``(n_subjects, n_parameters)`` in model order.
        n_subjects : int, optional
            Broadcast a single parameter set to this many subjects.
        """
        P = self.n_parameters
        if params is None:
            table = self.defaults[None, :].copy()
        elif isinstance(params, Mapping):
            sizes = {np.size(v) for v in params.values() if np.ndim(v) > 0}
            if len(sizes) > 1:
                raise ModelError(f"model {self.name!r}: per-subject parameter arrays have "
                                 f"different lengths {sorted(sizes)}")
            m = sizes.pop() if sizes else 1
            table = np.repeat(self.defaults[None, :], m, axis=0)
            for key, value in params.items():
                table[:, self.parameter_index(key)] = np.asarray(value, dtype=float)
        elif isinstance(params, Sequence) and params and isinstance(params[0], Mapping):
            table = np.repeat(self.defaults[None, :], len(params), axis=0)
            for i, row in enumerate(params):
                for key, value in row.items():
                    table[i, self.parameter_index(key)] = float(value)
        else:
            table = np.array(params, dtype=float, ndmin=2)
            if table.shape[1] != P:
                raise ModelError(f"model {self.name!r}: expected parameter rows of length {P} "
                                 f"(in model order), found {table.shape[1]}")
        if n_subjects is not None and table.shape[0] == 1 and n_subjects > 1:
            table = np.repeat(table, n_subjects, axis=0)
        if not np.all(np.isfinite(table)):
            bad = sorted({self.parameter_names[j] for j in np.where(~np.isfinite(table))[1]})
            raise ModelError(f"model {self.name!r}: parameters {bad} are not finite numbers")
        return table
