"""Checks on cohort data: small named functions that collect problems, then one error.

The pattern is libpetab's linter: each ``check_*`` function looks at one thing and *appends*
a message to a ``problems`` list instead of raising, so that a reader can run all of them and
raise a single :class:`~progression.errors.DataError` listing every problem (see
:func:`raise_if_problems`). Functions named ``note_*`` append to a ``notes`` list instead:
they report something worth knowing that does not make the data unusable.

Every message names the place and says what was expected and what was found::

    data/x.csv, row 14, column 'time', subject 'P007': expected a number, found 'abc'

Places are *origins*: ``(label, line, columns)`` tuples, where ``label`` is the file as the user
named it (or a table name such as ``"observations[3]"`` for data built in Python), ``line`` the
1-based line in the file (header = line 1, ``None`` for in-memory data) and ``columns`` maps
the canonical column names (``"subject"``, ``"time"``, ``"value"``, ...) to the names used in
that file (``"ID"``, ``"ALSFRS_Delta"``, ...), so that messages talk in the user's columns.

Decisions worth knowing
-----------------------
* Negative times are errors, except in PRO-ACT exports, where visits before enrolment
  (screening) are real; readers take ``allow_negative_time``.
* Unsorted times are errors in NONMEM tables (row order carries meaning there: resets, doses
  and the ``ID`` blocks). Long and wide tables are sorted on reading; nothing is lost.
* An observation after a death is reported in the cohort's notes, not raised: the event date
  is the likelier error (day offsets are often approximate) and the observations remain
  usable. An observation after the *censoring* time is normal and not reported.
* A censored observation needs a ``limit``; its ``value`` carries nothing beyond the limit and
  is set to it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from progression.errors import DataError

from ._csvio import RawTable, describe_cell, normalise_name, parse_number, parse_value

__all__ = [
    "EVENT_TYPES",
    "Origin",
    "where",
    "is_alsfrs",
    "raise_if_problems",
    "check_columns",
    "parse_numbers",
    "parse_values",
    "check_subject_ids",
    "check_times",
    "check_times_sorted",
    "check_duplicates",
    "check_alsfrs_range",
    "check_censoring",
    "check_subjects_observed",
    "check_doses",
    "check_evid_mdv",
    "check_events",
    "check_unknown_keys",
    "check_observables",
    "note_observations_after_death",
]

Origin = tuple[str, "int | None", Mapping[str, str]]

#: Canonical event types of the composite ALS endpoint, plus censoring.
EVENT_TYPES = ("death", "tracheostomy", "ventilation", "censored")

_EVENT_ALIASES = {
    "death": "death", "died": "death", "dead": "death", "deceased": "death",
    "tracheostomy": "tracheostomy", "trach": "tracheostomy", "tracheotomy": "tracheostomy",
    "ventilation": "ventilation", "permanentventilation": "ventilation", "piv": "ventilation",
    "niv23h": "ventilation", "permanentassistedventilation": "ventilation",
    "censored": "censored", "censor": "censored", "alive": "censored", "lost": "censored",
    "losttofollowup": "censored",
}

_ALSFRS_NAMES = {"alsfrsr", "alsfrsrtotal", "alsfrsrevised", "alsfrsrscore"}


def where(origin: Origin, column: str | None = None, subject: str | None = None) -> str:
    """Name a place: ``"file, row N, column 'c', subject 's'"``.

    Parameters
    ----------
    origin : (str, int or None, mapping)
        File label, 1-based line (None for in-memory data) and canonical -> file column names.
    column : str, optional
        Canonical column name; shown under the file's own name for it.
    subject : str, optional
        Subject identifier.
    """
    label, line, columns = origin
    parts = [label]
    if line is not None:
        parts.append(f"row {line}")
    if column is not None:
        parts.append(f"column '{columns.get(column, column)}'")
    if subject is not None and subject != "":
        parts.append(f"subject '{subject}'")
    return ", ".join(parts)


def is_alsfrs(name: str) -> bool:
    """Whether an observable name denotes the ALSFRS-R total score (0-48)."""
    return normalise_name(name) in _ALSFRS_NAMES


def canonical_event(text: str) -> str | None:
    """The canonical event type for ``text`` (``"Died"`` -> ``"death"``), or None."""
    return _EVENT_ALIASES.get(normalise_name(text))


def raise_if_problems(problems: Sequence[str], summary: str) -> None:
    """Raise one :class:`DataError` listing every problem, if there are any.

    Parameters
    ----------
    problems : sequence of str
        Messages collected by the ``check_*`` functions (duplicates are dropped; sorted by
        file and row, stably).
    summary : str
        First line of the error, e.g. ``"data/x.csv: 3 problems"``; the count is appended.
    """
    # Sorted by file and row, so that a long list reads top to bottom like the file.
    unique = sorted(dict.fromkeys(problems), key=_place_key)
    if not unique:
        return
    if len(unique) == 1:
        raise DataError(unique[0], unique)
    raise DataError(f"{summary}: {len(unique)} problems", unique)


def _other(o0: Origin, o: Origin) -> str:
    """Name an earlier place briefly: ``row 3`` when in the same file as ``o``."""
    return f"row {o0[1]}" if o0[0] == o[0] and o0[1] is not None else where(o0)


_PLACE = re.compile(r"^(.*?), row (\d+)")


def _place_key(message: str) -> tuple:
    m = _PLACE.match(message)
    return (m.group(1), int(m.group(2))) if m else (message.split(",")[0], 0)


def _suggest(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def _listing(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# ----------------------------------------------------------------------------- raw tables


def check_columns(
    table: RawTable,
    required: Mapping[str, Sequence[str]],
    problems: list[str],
    *,
    optional: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Find the columns a reader needs; report each missing one.

    Parameters
    ----------
    table : RawTable
        The file as read.
    required, optional : mapping of str to sequence of str
        Canonical column name -> accepted names in the file (first = the documented name).
        Matching is exact first, then case-insensitive.

    Returns
    -------
    dict of str to str
        Canonical name -> the file's column name, for every column found.
    """
    found: dict[str, str] = {}
    for canonical, names in {**required, **(optional or {})}.items():
        name = table.find(*names)
        if name is not None:
            found[canonical] = name
        elif canonical in required:
            problems.append(
                f"{table.label}, row {table.header_line}, column '{names[0]}': expected a "
                f"required column '{names[0]}', found columns {_listing(table.header)}"
                + _suggest(names[0], table.header)
            )
    return found


def parse_numbers(
    table: RawTable,
    column: str,
    problems: list[str],
    *,
    canonical: str | None = None,
    subjects: Sequence[str] | None = None,
    required: bool = True,
    integer: bool = False,
    allowed: Sequence[float] | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[float | None]:
    """Parse one column as numbers, reporting non-numeric and missing cells.

    Parameters
    ----------
    table : RawTable
    column : str
        The file's column name.
    canonical : str, optional
        Canonical name, for messages (defaults to ``column``).
    subjects : sequence of str, optional
        Subject of each row, named in messages.
    required : bool
        Whether an empty cell (or ``.``, ``NA``) is a problem.
    integer : bool
        Whether values must be whole numbers.
    allowed : sequence of float, optional
        The only values accepted (e.g. EVID codes).

    Returns
    -------
    list of float or None, length ``len(table)``
        ``None`` where the cell is missing or bad.
    """
    cols = columns or {}
    canonical = canonical or column
    out: list[float | None] = []
    j = table.header.index(column)
    fast = _clean_numbers(table, j, required=required, integer=integer, allowed=allowed)
    if fast is not None:
        return fast
    ragged = table.ragged
    for i, row in enumerate(table.rows):
        text = row[j]
        value, status = parse_number(text)
        problem = None
        if ragged and table.lines[i] in ragged:
            value = None  # the row's field count was reported; its cells mean nothing
        elif status == "missing":
            if required:
                problem = f"expected a number, found {describe_cell(text)}" + (
                    " (a missing-value marker)" if text.strip() else "")
        elif status == "bad":
            problem = f"expected a {_finite(text)}number, found '{text}'" + (
                " (a date? times are numbers: time since the origin, in the file's time "
                "unit)" if _DATE.match(text.strip()) else "")
        elif integer and not value.is_integer():
            problem = f"expected a whole number, found '{text}'"
            value = None
        elif allowed is not None and value not in allowed:
            shown = ", ".join(f"{a:g}" for a in allowed)
            problem = f"expected one of {shown}, found '{text}'"
            value = None
        if problem is not None:
            # The place is named only for a problem: building it for every cell cost more
            # than parsing the cell.
            subject = subjects[i] if subjects is not None else None
            problems.append(f"{where((table.label, table.lines[i], cols), canonical, subject)}"
                            f": {problem}")
        out.append(value)
    return out


def _clean_numbers(table: RawTable, j: int, *, required: bool, integer: bool,
                   allowed: Sequence[float] | None) -> list[float | None] | None:
    """Column ``j`` parsed in one pass when no cell has a problem, else None.

    The fast path for large files: plain numbers and (when not ``required``) empty cells.
    Anything else (missing-value markers, text, NaN, inf, values outside ``allowed``, ragged
    rows) returns None, and the cell-by-cell parse words the problems.
    """
    if table.ragged:
        return None
    try:
        out = [float(row[j]) if row[j] else None for row in table.rows]
    except ValueError:
        return None
    given = [x for x in out if x is not None]
    if (required and len(given) < len(out)) or not all(map(math.isfinite, given)):
        return None
    if integer and not all(x.is_integer() for x in given):
        return None
    if allowed is not None and not set(given) <= set(allowed):
        return None
    return out


def parse_values(
    table: RawTable,
    column: str,
    problems: list[str],
    *,
    canonical: str = "value",
    subjects: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
) -> list[tuple[float | None, int]]:
    """Parse a measurement column that may hold ``<LLOQ`` / ``>ULOQ`` cells.

    Returns
    -------
    list of (float or None, int), length ``len(table)``
        Value (the limit for a censored cell, None when missing or bad) and censoring flag.
        Missing cells are *not* reported here: whether a value is required depends on the
        format (a wide table leaves unmeasured observables empty).
    """
    cols = columns or {}
    j = table.header.index(column)
    try:
        # Fast path for a column of plain finite numbers (no '<', '>', blanks, NaN, inf).
        fast = [(float(row[j]), 0) for row in table.rows]
        if all(math.isfinite(x) for x, _ in fast):
            return fast
    except ValueError:
        pass
    out = []
    ragged = table.ragged
    for i, row in enumerate(table.rows):
        value, cens, status = parse_value(row[j])
        if ragged and table.lines[i] in ragged:
            value = None  # the row's field count was reported; its cells mean nothing
        elif status == "bad":
            subject = subjects[i] if subjects is not None else None
            place = where((table.label, table.lines[i], cols), canonical, subject)
            problems.append(
                f"{place}: expected a {_finite(row[j])}number (or '<limit', '>limit' for a "
                f"censored value), found '{row[j]}'"
            )
        out.append((value, cens))
    return out


_DATE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})([ T].*)?$")


def _finite(text: str) -> str:
    """``"finite "`` when ``text`` reads as an infinite number (``inf``, ``1e400``)."""
    try:
        return "finite " if math.isinf(float(text.strip().lstrip("<>="))) else ""
    except ValueError:
        return ""


def check_subject_ids(
    subjects: Sequence[str], origins: Sequence[Origin], problems: list[str]
) -> None:
    """Every row needs a subject identifier."""
    for s, o in zip(subjects, origins, strict=True):
        if not str(s).strip():
            problems.append(f"{where(o, 'subject')}: expected a subject identifier, found "
                            "an empty cell")


# ----------------------------------------------------------------------- semantic checks


def check_times(
    subjects: Sequence[str],
    times: Sequence[float],
    origins: Sequence[Origin],
    problems: list[str],
    *,
    allow_negative: bool = False,
    what: str = "time",
) -> None:
    """Times must be finite numbers and, unless ``allow_negative``, not negative."""
    for s, t, o in zip(subjects, times, origins, strict=True):
        if t is None or not np.isfinite(t):
            problems.append(f"{where(o, 'time', s)}: expected a finite {what}, found {t}")
        elif t < 0 and not allow_negative:
            problems.append(
                f"{where(o, 'time', s)}: expected a {what} >= 0 (measured from the time "
                f"origin), found {t:g}; pass allow_negative_time=True if times before the "
                "origin are intended"
            )


def check_times_sorted(
    subjects: Sequence[str],
    times: Sequence[float],
    origins: Sequence[Origin],
    problems: list[str],
) -> None:
    """Rows of a subject must be contiguous and in non-decreasing time (NONMEM order)."""
    finished: set[str] = set()
    previous_subject = None
    previous_time = None
    previous_origin = None
    for s, t, o in zip(subjects, times, origins, strict=True):
        if s != previous_subject:
            if s in finished:
                problems.append(
                    f"{where(o, 'subject', s)}: expected the rows of subject '{s}' to be "
                    f"contiguous, found them again after subject '{previous_subject}' "
                    "(NONMEM would read this as a new individual)"
                )
            if previous_subject is not None:
                finished.add(previous_subject)
            previous_subject, previous_time, previous_origin = s, None, None
        if t is None:
            continue
        if previous_time is not None and t < previous_time:
            line = previous_origin[1]
            problems.append(
                f"{where(o, 'time', s)}: expected times in non-decreasing order within a "
                f"subject, found {t:g} after {previous_time:g}"
                + (f" (row {line})" if line is not None else "")
            )
        previous_time, previous_origin = t, o


def check_duplicates(
    subjects: Sequence[str],
    times: Sequence[float],
    names: Sequence[str],
    origins: Sequence[Origin],
    problems: list[str],
    *,
    what: str = "observable",
    column: str = "observable",
) -> None:
    """At most one row per (subject, time, observable) (or per covariate name)."""
    first: dict[tuple, Origin] = {}
    for s, t, n, o in zip(subjects, times, names, origins, strict=True):
        if t is None or not np.isfinite(t):
            continue
        key = (s, float(t), n)
        if key in first:
            problems.append(
                f"{where(o, column, s)}: expected one row per subject, time and {what}, "
                f"found a second row for {what} '{n}' at time {t:g} (first at "
                f"{_other(first[key], o)})"
            )
        else:
            first[key] = o


def check_sd(
    subjects: Sequence[str],
    sds: Sequence[float | None],
    origins: Sequence[Origin],
    problems: list[str],
) -> None:
    """A known measurement SD is a finite number > 0 where given (empty: not given)."""
    for s, x, o in zip(subjects, sds, origins, strict=True):
        if x is not None and not (np.isfinite(x) and x > 0):
            problems.append(f"{where(o, 'sd', s)}: expected a standard deviation > 0 (or an "
                            f"empty cell), found {x:g}")


def check_alsfrs_range(
    subjects: Sequence[str],
    names: Sequence[str],
    values: Sequence[float],
    origins: Sequence[Origin],
    problems: list[str],
) -> None:
    """ALSFRS-R totals (and their censoring limits) must lie in 0-48."""
    alsfrs = {n: is_alsfrs(n) for n in set(names)}
    for s, n, v, o in zip(subjects, names, values, origins, strict=True):
        if alsfrs[n] and v is not None and np.isfinite(v) and not 0 <= v <= 48:
            problems.append(
                f"{where(o, 'value', s)}: expected an ALSFRS-R total in 0-48, found {v:g}"
            )


def check_censoring(
    subjects: Sequence[str],
    cens: Sequence[float],
    limits: Sequence[float],
    values: Sequence[float],
    origins: Sequence[Origin],
    problems: list[str],
) -> None:
    """Censoring flags are 0, 1 or -1; a censored row needs a limit; others need a value."""
    for s, c, lim, v, o in zip(subjects, cens, limits, values, origins, strict=True):
        if c not in (0, 1, -1):
            problems.append(f"{where(o, 'cens', s)}: expected a censoring flag 0, 1 (below "
                            f"limit) or -1 (above limit), found {c}")
        elif c != 0 and (lim is None or not np.isfinite(lim)):
            problems.append(
                f"{where(o, 'limit', s)}: expected a limit for a censored value (cens = {c:g}), "
                "found none"
            )
        elif c == 0 and (v is None or not np.isfinite(v)):
            problems.append(f"{where(o, 'value', s)}: expected a finite value, found {v}")


def check_subjects_observed(
    observed: Iterable[str],
    tables: Mapping[str, tuple[Sequence[str], Sequence[Origin]]],
    problems: list[str],
    *,
    excuse: Iterable[str] = (),
) -> None:
    """Every subject named in a side table (covariates, events, doses) has observations.

    Parameters
    ----------
    observed : iterable of str
        Subjects with at least one observation.
    tables : mapping of str to (subjects, origins)
        Side table name -> subject and origin of each of its rows.
    excuse : iterable of str
        Subjects whose observations were all rejected already (no second message for them).
    """
    seen = set(observed) | set(excuse)
    reported: set[str] = set()
    for name, (subjects, origins) in tables.items():
        for s, o in zip(subjects, origins, strict=True):
            if s not in seen and s not in reported:
                reported.add(s)
                problems.append(
                    f"{where(o, 'subject', s)}: subject '{s}' has {name} but no "
                    "observations; expected every subject to have at least one observation"
                )


def check_events(
    subjects: Sequence[str],
    times: Sequence[float | None],
    events: Sequence[str],
    origins: Sequence[Origin],
    problems: list[str],
    *,
    allow_negative: bool = False,
) -> list[str | None]:
    """Event types must be known; times finite; one event row per subject.

    Returns
    -------
    list of str or None
        The canonical event type of each row (None where unknown).
    """
    out: list[str | None] = []
    first: dict[str, Origin] = {}
    for s, t, e, o in zip(subjects, times, events, origins, strict=True):
        kind = canonical_event(str(e))
        if kind is None:
            problems.append(
                f"{where(o, 'event', s)}: expected an event type ({', '.join(EVENT_TYPES)}), "
                f"found {describe_cell(str(e))}" + _suggest(str(e), EVENT_TYPES)
            )
        out.append(kind)
        if t is not None and np.isfinite(t) and t < 0 and not allow_negative:
            problems.append(f"{where(o, 'time', s)}: expected an event time >= 0, "
                            f"found {t:g}")
        if s in first:
            problems.append(
                f"{where(o, 'subject', s)}: expected one event row per subject (the first "
                f"of death, tracheostomy or permanent ventilation, or the censoring time), "
                f"found a second (first at {_other(first[s], o)})"
            )
        else:
            first[s] = o
    return out


def check_unknown_keys(
    label: str,
    found: Iterable[str],
    allowed: Iterable[str],
    problems: list[str],
    *,
    what: str = "key",
) -> None:
    """Report keys (sidecar keys, roles, mapping entries) that are not in ``allowed``."""
    allowed = list(allowed)
    for key in found:
        if key not in allowed:
            problems.append(
                f"{label}: unknown {what} '{key}'; expected one of {_listing(allowed)}"
                + _suggest(key, allowed)
            )


def check_observables(
    observables: Sequence[str],
    origins: Sequence[Origin],
    subjects: Sequence[str],
    names: Iterable[str],
    problems: list[str],
    *,
    source: str = "the model",
) -> None:
    """Every observable in the data must be one the model predicts.

    One problem per unknown observable, naming its first row and how many rows carry it.
    """
    names = list(names)
    rows: dict[str, list[int]] = {}
    for i, n in enumerate(observables):
        if n not in names:
            rows.setdefault(n, []).append(i)
    for n, idx in rows.items():
        o = origins[idx[0]]
        more = f" (and {len(idx) - 1} more rows)" if len(idx) > 1 else ""
        problems.append(
            f"{where(o, 'observable', subjects[idx[0]])}{more}: observable '{n}' is not an "
            f"observable of {source}; expected one of {_listing(names)}" + _suggest(n, names)
        )


def note_observations_after_death(
    event_subjects: Sequence[str],
    event_times: Sequence[float],
    event_types: Sequence[str],
    event_origins: Sequence[Origin],
    last_observation: Mapping[str, float],
    notes: list[str],
    *,
    time_unit: str = "month",
) -> None:
    """Note deaths dated before the subject's last observation (kept: see module notes)."""
    for s, t, e, o in zip(event_subjects, event_times, event_types, event_origins,
                          strict=True):
        last = last_observation.get(s)
        if e == "death" and last is not None and t < last:
            notes.append(
                f"{where(o, 'time', s)}: death at {t:g} {time_unit}s precedes the last "
                f"observation at {last:g} {time_unit}s; both kept, check the dates"
            )


# dose-record checks live in their own module (re-exported: readers call v.check_doses)
from ._validation_doses import check_doses, check_evid_mdv  # noqa: E402
