"""Cohort data: the :class:`Cohort` object, readers and writers, and validation.

Read a longitudinal cohort (long CSV, wide CSV, NONMEM-style table with a TOML sidecar, or a
PRO-ACT-shaped export) into one validated :class:`Cohort`; write it back in any format.
Every malformed file raises one :class:`~progression.errors.DataError` listing every problem,
each naming the file, row, column and subject.

>>> from progression.data import read_cohort
>>> cohort = read_cohort("data/examples/long.csv")            # doctest: +SKIP
>>> print(cohort.summary())                                   # doctest: +SKIP
"""

from . import validation as validation
from .cohort import Cohort as Cohort
from .cohort import Event as Event
from .cohort import Series as Series
from .cohort import SubjectData as SubjectData
from .cohort import Summary as Summary
from .readers import FORMATS as FORMATS
from .readers import read_cohort as read_cohort
from .readers import write_cohort as write_cohort
from .validation import EVENT_TYPES as EVENT_TYPES

__all__ = [
    "Cohort",
    "Event",
    "Series",
    "SubjectData",
    "Summary",
    "FORMATS",
    "EVENT_TYPES",
    "read_cohort",
    "write_cohort",
    "validation",
]
