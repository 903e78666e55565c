"""One exception family for everything the toolkit refuses.

Every error names where the problem is (file, key, row, subject), what was expected and what
was found, so that the CLI can print it as one line and exit 2.
"""

from __future__ import annotations

__all__ = [
    "ProgressionError",
    "ConfigError",
    "DataError",
    "ModelError",
    "SolverError",
    "FitError",
]


class ProgressionError(Exception):
    """Base class of every error the toolkit raises on purpose.

    Parameters
    ----------
    message : str
        The first problem, or a summary line.
    problems : list of str, optional
        Every problem found, when a check collected several before failing.
    """

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
