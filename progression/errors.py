"""One exception family for everything the toolkit refuses.

Every error names where the problem is (file, key, row, subject), what was expected and what
was found, so that the CLI can print it as one line and exit 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "did_you_mean",
    "ProgressionError",
    "ConfigError",
    "DataError",
    "ModelError",
    "SolverError",
    "FitError",
    "EstimationFailed",
    "OutputError",
    "SimulationFailed",
]


class ProgressionError(Exception):
    """Base class of every error the toolkit raises on purpose.

    Parameters
    ----------
    message : str
        The first problem, or a summary line.
    problems : list of str, optional
        Every problem found, when a check collected several before failing.

    Attributes
    ----------
    exit_status : int
        The CLI's exit status for this error: 2 for bad input (the default), 1 where the input
        was acceptable but the computation failed (for example no subject of a fit converged).
    """

    exit_status = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message]
        if problems and len(problems) > 1:
            message = f"{message}\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message)


class ConfigError(ProgressionError):
    """A run config (TOML) is malformed or asks for something that does not exist."""


class DataError(ProgressionError):
    """A data file is malformed: missing columns, bad values, unsorted times, ..."""


class ModelError(ProgressionError):
    """A model file or model definition is malformed or unsafe."""


class SolverError(ProgressionError):
    """An integration failed where a status could not be returned instead."""


class FitError(ProgressionError):
    """An estimation could not be carried out."""


class EstimationFailed(FitError):
    """The input was valid but the estimation failed (no subject converged, too many failed)."""

    exit_status = 1


class OutputError(ProgressionError):
    """An output path cannot be written without losing something (or cannot be written)."""


class SimulationFailed(SolverError):
    """The input was valid but the solver failed; nothing was written."""

    exit_status = 1


def did_you_mean(name, choices: Iterable, *, parenthesised: bool = False) -> str:
    """A hint naming the entry of ``choices`` closest to ``name``, or ``""`` if none is close.

    ``"; did you mean 'x'?"``, or ``" (did you mean 'x'?)"`` when ``parenthesised``.
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    if not close:
        return ""
    return f" (did you mean '{close[0]}'?)" if parenthesised else f"; did you mean '{close[0]}'?"
