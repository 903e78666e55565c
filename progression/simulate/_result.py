"""The result of a simulation: :class:`Simulation`, and how batch parts are merged into one."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Simulation"]


@dataclass
class Simulation:
    """The result of :func:`simulate` for ``m`` subjects at ``T`` output times.

    Attributes
    ----------
    model : str
    times : ndarray, shape (T,)
    parameters : ndarray, shape (m, P)
        Base parameters of each subject (before any switch).
    parameter_names, state_names, observable_names : tuple of str
    states : ndarray, shape (m, n_states, T)
    observables : ndarray, shape (m, n_observables, T)
        NaN after a subject's terminal event or failure.
    events : dict of str to list of ndarray
        Event name -> per subject, every time the event happened.
    status : ndarray of int, shape (m,)
        0 success, 1 stopped by a terminal event, -1 failed.
    message : list of str
    sensitivity_parameters : tuple of str
    state_sensitivities : ndarray, shape (m, n_states, k, T), or None
        d state / d parameter for the ``k`` sensitivity parameters (base values).
    observable_sensitivities : ndarray, shape (m, n_observables, k, T), or None
    stats : dict
        Work counters: ``nfev``, ``njev``, ``nlu``, ``steps``, ``seconds``, ``method``.
    time_unit : str
    units : dict of str to str
        Unit of each state and observable, where the model declares one.
    """

    model: str
    times: np.ndarray
    parameters: np.ndarray
    parameter_names: tuple
    state_names: tuple
    observable_names: tuple
    states: np.ndarray
    observables: np.ndarray
    events: dict
    status: np.ndarray
    message: list
    sensitivity_parameters: tuple = ()
    state_sensitivities: np.ndarray | None = None
    observable_sensitivities: np.ndarray | None = None
    stats: dict = field(default_factory=dict)
    time_unit: str = ""
    units: dict = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return self.states.shape[0]

    @property
    def success(self) -> np.ndarray:
        """Per subject: the simulation did not fail (a terminal event is a success)."""
        return self.status >= 0

    def __getitem__(self, name: str) -> np.ndarray:
        """A state or observable by name, shape ``(m, T)``."""
        if name in self.observable_names:
            return self.observables[:, self.observable_names.index(name)]
        if name in self.state_names:
            return self.states[:, self.state_names.index(name)]
        raise KeyError(f"{name!r} is neither a state nor an observable of model {self.model!r}")

    def event_time(self, name: str) -> np.ndarray:
        """First time of event ``name`` per subject, NaN where it did not happen; ``(m,)``."""
        if name not in self.events:
            raise KeyError(f"model {self.model!r} has no event {name!r} "
                           f"(events: {', '.join(self.events) or 'none'})")
        return np.array([e[0] if len(e) else np.nan for e in self.events[name]])

    def sensitivity(self, output: str, parameter: str) -> np.ndarray:
        """d output / d parameter for a state or observable, shape ``(m, T)``."""
        if parameter not in self.sensitivity_parameters:
            raise KeyError(f"no sensitivities for {parameter!r}; simulate with "
                           f"sensitivities=[..., {parameter!r}]")
        q = self.sensitivity_parameters.index(parameter)
        if output in self.observable_names:
            return self.observable_sensitivities[:, self.observable_names.index(output), q]
        return self.state_sensitivities[:, self.state_names.index(output), q]

    def to_csv(self, path) -> Path:
        """Write a long table: subject, time, then one column per state and observable."""
        path = Path(path)
        names = [*self.state_names, *self.observable_names]
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["subject", "time", *names])
            for s in range(self.n_subjects):
                values = np.concatenate([self.states[s], self.observables[s]])
                for j, t in enumerate(self.times):
                    writer.writerow([s, f"{t:.10g}", *(f"{v:.10g}" for v in values[:, j])])
        return path


def _merge(parts, model, times, table, sens_names, method) -> Simulation:
    stats = {"nfev": 0, "njev": 0, "nlu": 0, "steps": 0, "method": method}
    for part in parts:
        for key in ("nfev", "njev", "nlu", "steps"):
            stats[key] += int(part["stats"][key])
    cat = np.concatenate
    k = len(sens_names)
    return Simulation(
        model=model.name, times=times, parameters=table,
        parameter_names=model.parameter_names, state_names=model.state_names,
        observable_names=model.observable_names,
        states=cat([p["states"] for p in parts]),
        observables=cat([p["observables"] for p in parts]),
        events={e.name: sum((p["events"][e.name] for p in parts), []) for e in model.events},
        status=cat([p["status"] for p in parts]),
        message=sum((p["message"] for p in parts), []),
        sensitivity_parameters=sens_names,
        state_sensitivities=cat([p["dstates"] for p in parts]) if k else None,
        observable_sensitivities=cat([p["dobs"] for p in parts]) if k else None,
        stats=stats,
        time_unit=model.time_unit,
        units=_units(model),
    )


def _units(model) -> dict:
    spec = getattr(model, "spec", None)
    if spec is None:
        return {}
    return {**{s.name: s.unit for s in spec.states}, **{o.name: o.unit for o in spec.observables}}
