"""The read-only values a :class:`~progression.data.cohort.Cohort` hands out.

:class:`Series` (one subject's measurements of one observable), :class:`Event` (a subject's
event or censoring), :class:`SubjectData` (a view of one subject) and :class:`Summary` (counts
of the whole cohort, printable as a table). They hold no validation and no look-up logic: the
cohort builds them from its validated tables. Import them from :mod:`progression.data` or
:mod:`progression.data.cohort`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from progression.errors import DataError

__all__ = ["Series", "Event", "SubjectData", "Summary"]


class Series(NamedTuple):
    """One subject's measurements of one observable, in time order.

    Attributes
    ----------
    time : ndarray, shape (n,)
        Times in the cohort's ``time_unit``.
    value : ndarray, shape (n,)
        Measured values (the limit for censored entries), in the observable's unit.
    cens : ndarray of int8, shape (n,)
        0 observed, 1 below ``limit``, -1 above ``limit``.
    limit : ndarray, shape (n,)
        Censoring limits, NaN where observed.
    sd : ndarray, shape (n,), or None
        Known standard deviation of each value (NaN where not given); None when the data have
        no ``sd`` column.
    condition : ndarray of str, shape (n,), or None
        Experimental condition of each value (``""``: none); None without a ``condition``
        column.
    """

    time: np.ndarray
    value: np.ndarray
    cens: np.ndarray
    limit: np.ndarray
    sd: np.ndarray | None = None
    condition: np.ndarray | None = None


class Event(NamedTuple):
    """A subject's event: ``type`` in death, tracheostomy, ventilation or censored."""

    time: float
    type: str


@dataclass(frozen=True)
class SubjectData:
    """A read-only view of one subject.

    Attributes
    ----------
    id : str
    series : dict of str to Series
        Observable name -> measurements in time order.
    covariates : dict of str to float or str
        Baseline covariates.
    time_varying : dict of str to (ndarray, ndarray)
        Covariate name -> (times, values), each shape (k,).
    doses : dict of str to ndarray
        Columns ``time, amount, target, rate, duration, reset, ss, ii``, each shape (d,).
    event : Event or None
    time_unit : str
    """

    id: str
    series: dict[str, Series]
    covariates: dict[str, Any]
    time_varying: dict[str, tuple[np.ndarray, np.ndarray]]
    doses: dict[str, np.ndarray]
    event: Event | None
    time_unit: str = "month"
    units: dict[str, str] = field(default_factory=dict)

    @property
    def observables(self) -> tuple[str, ...]:
        """Names of the observables measured in this subject."""
        return tuple(self.series)

    def __getitem__(self, observable: str) -> Series:
        try:
            return self.series[observable]
        except KeyError:
            raise DataError(
                f"subject '{self.id}': no observations of '{observable}'; it has "
                + ", ".join(f"'{o}'" for o in self.series)
            ) from None

    def times(self, observable: str) -> np.ndarray:
        """Measurement times of ``observable``, shape (n,), in ``time_unit``."""
        return self[observable].time

    def values(self, observable: str) -> np.ndarray:
        """Measured values of ``observable``, shape (n,)."""
        return self[observable].value


class Summary(dict):
    """A cohort summary: a plain ``dict`` whose ``str`` is a small text table."""

    def __str__(self) -> str:
        u = self["time_unit"]
        lines = [
            f"Cohort: {self['n_subjects']} subjects, times in {u}s since {self['time_origin']}"
            + (f" ({self['source']})" if self.get("source") else ""),
            "",
            f"{'observable':<16}{'unit':<14}{'observations':>13}{'subjects':>10}"
            f"{'censored':>10}",
        ]
        for name, row in self["observables"].items():
            lines.append(
                f"{name:<16}{row['unit'] or '-':<14}{row['n_observations']:>13}"
                f"{row['n_subjects']:>10}{row['n_censored']:>10}"
            )
        vis, fu = self["visits_per_subject"], self["follow_up"]
        lines += [
            "",
            f"visits per subject: median {vis['median']:g} (range {vis['min']}-{vis['max']})",
            f"follow-up: median {fu['median']:.3g} {u}s (range {fu['min']:.3g}-"
            f"{fu['max']:.3g})",
        ]
        ev = self["events"]
        lines.append("events: " + (", ".join(f"{k} {n}" for k, n in ev.items()) or "none"))
        if self["n_doses"]:
            lines.append(f"doses: {self['n_doses']}")
        if self["covariates"]:
            lines.append("covariates: " + ", ".join(self["covariates"]))
        return "\n".join(lines)
