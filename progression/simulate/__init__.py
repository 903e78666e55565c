"""Simulate models for a batch of subjects: scipy integrators, switches, events, sensitivities.

:func:`simulate` solves all subjects of a batch together as one stacked system (subject after
subject), with the model's exact Jacobian in the structure the integrator can use: banded for
LSODA, block-sparse for BDF and Radau. A cohort therefore costs little more than a patient.

Integration is piecewise across :class:`Switch` times, where parameters are scaled, shifted or
set and states may jump; this is what interventions and doses use. Events (threshold crossings)
are located per subject on the integrator's dense output. Forward sensitivities of states and
observables with respect to chosen parameters are integrated alongside when asked for.

A numerical failure is a per-subject status with a message, never an exception thrown through
an optimiser: a failing batch is re-solved subject by subject to isolate who failed.

The package's modules: :mod:`._api` (:func:`simulate`, :func:`solve_states`), :mod:`._stacked`
(the stacked system and its integration), :mod:`._switches` (:class:`Switch`),
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
