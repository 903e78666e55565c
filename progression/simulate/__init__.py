"""Simulate models for a batch of subjects: compiled per-subject Rodas4 or scipy integrators,
switches, events, sensitivities.

With the default ``method="auto"`` and a model compiled with the numba backend (the default
when numba is installed), each subject is integrated on its own by a compiled Rodas4 with the
model's exact Jacobian (at ``rtol >= 1e-7``; tighter tolerances go to the stacked LSODA, which
takes far fewer steps there): one patient costs about what a compiled reference costs, and a
subject's result does not depend on its batch. A scipy name (``"LSODA"``, ``"BDF"``, ...)
solves all subjects of a batch together as one stacked system (subject after subject), with
the model's exact Jacobian in the structure the integrator can use: banded for LSODA,
block-sparse for BDF and Radau. Large batches are cut into chunks automatically.

Integration is piecewise across :class:`Switch` times, where parameters are scaled, shifted or
set and states may jump; this is what interventions and doses use. Events (threshold crossings)
are located per subject on the integrator's dense output. Forward sensitivities of states and
observables with respect to chosen parameters are integrated alongside when asked for.

A numerical failure is a per-subject status with a message, never an exception thrown through
an optimiser: a failing batch is re-solved subject by subject to isolate who failed.

The package's modules: :mod:`._api` (:func:`simulate`, :func:`solve_states`, the method
"auto" and chunking), :mod:`._stacked` (the stacked system and its integration),
:mod:`._compiled` (the per-subject driver of the compiled Rodas4), :mod:`._rodas4_numba` (one
Rodas4 step in numba), :mod:`._rodas4_loops` (segment and grid loops, event root finding),
:mod:`._switches` (:class:`Switch`),
:mod:`._events` (event location), :mod:`._registry` (:data:`METHODS`, per-subject norms),
:mod:`._result` (:class:`Simulation`), :mod:`._covariates` (time-varying covariates),
:mod:`._diagnose` (failure messages) and
:mod:`._dosing` (dose records; public as :mod:`progression.dosing`).
"""

from __future__ import annotations

from ._api import simulate, solve_states
from ._covariates import CovariateSchedule, covariate_schedule
from ._registry import METHODS
from ._result import Simulation
from ._switches import Switch

__all__ = ["solve_states", "METHODS", "Switch", "Simulation", "simulate", "CovariateSchedule",
           "covariate_schedule"]
