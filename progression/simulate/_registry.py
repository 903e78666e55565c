"""Integrator registry and per-subject error norms for stacked batches."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Mapping

import numpy as np

__all__ = ["METHODS", "SUCCESS", "TERMINATED", "FAILED"]

#: Integrator registry: method name -> (scipy OdeSolver class, Jacobian layout it accepts).
#: ``"auto"`` (the default everywhere) and ``"Rodas4"`` have no scipy class: ``"auto"`` runs the
#: compiled per-subject Rodas4 (:mod:`._compiled`) when the model has compiled kernels (numba
#: backend) and the stacked LSODA otherwise; ``"Rodas4"`` is the per-subject Rodas4 by name
#: (compiled; without kernels :func:`~._api.simulate` refuses it and
#: :func:`~._api.solve_states` runs the numpy per-subject Rodas4 of :mod:`progression._rodas`).
#: The scipy names keep their meaning: a stacked batch through that scipy class.
class _Registry(Mapping):
    """Method name -> (scipy OdeSolver class, Jacobian layout), the class imported on access.

    ``scipy.integrate`` costs ~0.35 s to import; the compiled default path never needs it, so a
    process that only simulates with ``"auto"`` (``progression simulate``) does not pay for it.
    """

    def __init__(self, entries: dict):
        self._entries = entries

    def __getitem__(self, name):
        cls_name, layout = self._entries[name]
        if cls_name is None:
            return None, layout
        return getattr(importlib.import_module("scipy.integrate"), cls_name), layout

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)


METHODS = _Registry({
    "auto": (None, None),
    "Rodas4": (None, None),
    "LSODA": ("LSODA", "banded"),
    "BDF": ("BDF", "sparse"),
    "Radau": ("Radau", "sparse"),
    "RK45": ("RK45", None),
    "RK23": ("RK23", None),
    "DOP853": ("DOP853", None),
})

# Status codes of a subject's simulation.
SUCCESS, TERMINATED, FAILED = 0, 1, -1

#: The stacked method ``"auto"`` stands for when the model has no compiled kernels.
AUTO_FALLBACK = "LSODA"


# ------------------------------------------------------------- per-subject error norms
#
# scipy's RK45, RK23, DOP853, BDF and Radau accept a step when the RMS norm of the weighted
# error over the *whole* vector is <= 1. Over a stacked batch that is an average over subjects:
# one fast subject among m quiet ones may carry an error sqrt(m) times its tolerance (measured:
# RK45 at rtol 1e-6, 4.5e-6 alone, 5.1e-4 among 10,000). The classes below take, instead, the
# largest of the subjects' own RMS norms, so that every subject meets the tolerance it would
# meet alone, whatever the batch; a batch then takes the steps of its hardest subject (scaling
# the tolerances by 1/sqrt(m) would also do, at 1.3-1.7x the steps for 100-1,000 subjects).
# LSODA (and odeint) use a weighted max norm already, which is per component.

_NORM = threading.local()     # the subject block size of the stacked vector being stepped


def _subject_norm(x) -> float:
    """Largest per-subject RMS norm of a stacked vector (last axis: subject after subject).

    Falls back to the plain RMS norm (scipy's) outside a per-subject solver's step.
    """
    x = np.asarray(x)
    b = getattr(_NORM, "block", None)
    if b is None or x.ndim == 0 or x.shape[-1] % b or x.shape[-1] == b:
        return np.linalg.norm(x) / x.size ** 0.5
    m = x.shape[-1] // b
    sq = np.abs(x.reshape(x.shape[:-1] + (m, b))) ** 2
    sq = np.moveaxis(sq, -2, 0).reshape(m, -1)
    return float(np.sqrt(sq.mean(axis=1)).max())


class _SubjectNormStep:
    """Mixin: each step of a scipy OdeSolver runs with :func:`_subject_norm` as its norm."""

    _block = None

    def _step_impl(self):
        previous = getattr(_NORM, "block", None)
        _NORM.block = self._block
        try:
            return super()._step_impl()
        finally:
            _NORM.block = previous


def _rk_error_norm(self, K, h, scale):
    return _subject_norm(self._estimate_error(K, h) / scale)


def _dop853_error_norm(self, K, h, scale):
    # DOP853's own combination of its 5th- and 3rd-order estimates, per subject.
    b = self._block or scale.size
    e5 = ((np.dot(K.T, self.E5) / scale) ** 2).reshape(-1, b).sum(axis=1)
    e3 = ((np.dot(K.T, self.E3) / scale) ** 2).reshape(-1, b).sum(axis=1)
    denom = e5 + 0.01 * e3
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(denom > 0, np.abs(h) * e5 / np.sqrt(np.where(denom > 0, denom, 1.0)
                                                                * b), 0.0)
    return float(value.max())


_PER_SUBJECT: dict = {}


def _per_subject_solver(method: str):
    """The per-subject-norm variant of a scipy RMS-norm solver class (None for LSODA).

    BDF and Radau call the module-level ``norm`` of their scipy module (Newton convergence and
    error test); they are built from a private copy of that module whose ``norm`` is
    :func:`_subject_norm`, so scipy itself is left untouched.
    """
    if method == "LSODA":
        return None
    if method not in _PER_SUBJECT:
        base = METHODS[method][0]
        if method in ("BDF", "Radau"):
            spec = importlib.util.find_spec(f"scipy.integrate._ivp.{method.lower()}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.norm = _subject_norm
            base = getattr(module, method)
            attrs = {}
        elif method == "DOP853":
            attrs = {"_estimate_error_norm": _dop853_error_norm}
        else:
            attrs = {"_estimate_error_norm": _rk_error_norm}
        _PER_SUBJECT[method] = type(f"PerSubject{method}", (_SubjectNormStep, base), attrs)
    return _PER_SUBJECT[method]
