"""Dose records (NONMEM conventions) and their translation into the simulator's switches.

The implementation lives in :mod:`progression.simulate._dosing` (doses are switches of the
simulator); this module keeps the public name ``progression.dosing``.
"""

from __future__ import annotations

from .simulate._dosing import (
    Dose,
    dose_switches,
    dose_table,
    expand_doses,
    recs_to_columns,
    steady_states,
)

__all__ = ["Dose", "dose_table", "dose_switches"]
_REEXPORTED = (expand_doses, recs_to_columns, steady_states)   # importable, as before
