"""Read and write cohorts: long CSV, wide CSV, NONMEM-style tables and PRO-ACT exports.

:func:`read_cohort` reads any of the four formats into one validated
:class:`~progression.data.Cohort`; :func:`write_cohort` writes a cohort back in any of them,
so that a cohort survives a round trip. Every reader raises **one**
:class:`~progression.errors.DataError` listing every problem it found, each naming the file,
the row (1-based line, header = row 1), the column and the subject; what readers skip or
assume goes into ``cohort.notes``.

Formats
-------
``long`` (the native form; ``data/examples/long.csv``)
    One row per measurement::

        subject,time,observable,value,cens,limit
        P01,0,ALSFRS_R,41,,
        P01,0,CRP,0.3,1,0.3        <- below the assay limit 0.3 (cens 1 = left-censored)

    ``cens``/``limit`` are optional; a value cell may also read ``<0.3`` or ``>5000``.
    Side tables are read through arguments or the sidecar: ``covariates`` (``subject`` + one
    column per covariate), ``events`` (``subject, time, event`` with event ``death``,
    ``tracheostomy``, ``ventilation`` or ``censored``), ``doses`` (``subject, time, amount,
    target[, rate, duration, reset, ss, ii]``; ``ss`` 1 with ``ii`` > 0: a steady-state
    dose) and ``time_varying`` (``subject, time, name, value``).
    ``mapping`` renames columns: ``{"subject": "ID", "value": "result"}``. Rows need not be
    sorted.

``wide`` (``data/examples/wide.csv`` + ``wide.toml``)
    One row per visit, one column per observable; the mapping names the columns::

        {"subject": "patient_id", "time": "month",
         "observables": {"ALSFRS_R": "alsfrs_total", "NfL": {"column": "nfl", "unit": "pg/mL"}},
         "covariates": {"age": "age", "sex": "sex"}}

    Empty observable cells are visits where that observable was not measured (counted in
    the notes). Covariate columns must be constant within a subject. Without a mapping every
    column except ``subject`` and ``time`` is an observable.

``nonmem`` (``data/examples/nonmem.csv`` + ``nonmem.toml``)
    ``ID, TIME, DV, AMT, EVID, MDV, CMT, DVID, CENS, LIMIT, RATE, DUR, ADDL, II, SS`` and
    covariate columns, with NONMEM's meaning: EVID 0 observation, 1 dose, 2 other (a
    covariate change), 3 reset, 4 reset and dose; SS 1 a steady-state dose every II (SS 2
    is refused); MDV 1 rows are not observations (an EVID 0,
    MDV 1 row is skipped and noted); CENS 1 = below ``LIMIT``, -1 = above; DVID selects the
    observable; ``.`` is a missing value. Rows must be grouped by ID and in time order.
    The TOML sidecar (``<file>.toml`` or ``<stem>.toml``, or ``sidecar=``) names roles,
    units and maps::

        format = "nonmem"
        time_unit = "month"
        [columns]              # column = role or { role = ..., unit = ..., categories = ... }
        ID = "id"
        AGE = { role = "covariate", unit = "year" }
        SEX = { role = "covariate", categories = { 0 = "female", 1 = "male" } }
        [dvid]                 # DVID -> observable (or { observable = ..., unit = ... })
        1 = "ALSFRS_R"
        [cmt]                  # CMT -> dose target name
        1 = "IL2"

    Roles: id, time, dv, amount, evid, mdv, compartment, dvid, cens, limit, rate, duration,
    addl, ii, ss, observable, covariate, tv_covariate, ignore. Columns the sidecar does not
    name take their role from their standard name; other columns are covariates (baseline
    when constant within every subject, else time-varying, as noted).

``proact`` (``data/examples/proact/``)
    A folder (or a dict of files) shaped like the PRO-ACT database export:
    ``ALSFRS`` (``subject_id, ALSFRS_Delta, ALSFRS_R_Total`` and the questions ``Q1_...`` to
    ``Q9_...``, ``Q5a``/``Q5b``, ``R_1_...`` to ``R_3_...``; the total is used when present,
    else the sum of the 12 ALSFRS-R items), ``DEATHDATA`` (``Subject_Died, Death_Days``),
    ``DEMOGRAPHICS`` (``Age, Sex``, ...), ``ALSHISTORY`` (``Onset_Delta, Diagnosis_Delta,
    Site_of_Onset``) and ``LABS`` (``Test_Name, Test_Result, Test_Unit, Laboratory_Delta``).
    Day offsets from enrolment become months of 30.4375 days. See :mod:`._proact`.

Sidecars
--------
Long and wide files may have a TOML sidecar too, with keys ``format``, ``time_unit``,
``time_origin``, ``[units]`` (observable -> unit), ``covariates``/``events``/``doses``/
``time_varying`` (side-table files, relative to the sidecar) and, for wide files,
``[mapping]`` as above. :func:`write_cohort` writes one, so a written cohort reads back equal.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from progression.errors import DataError

from . import _nonmem, _proact, _sidecars
from . import validation as v
from ._common import (
    SIDE_TABLES,
    SUBJECT_NAMES,
    TIME_NAMES,
    Draft,
    find_sidecar,
    read_side_tables,
    resolve_origin,
    resolve_time_unit,
    side_table_paths,
    sidecar_units,
    write_side_tables,
    write_toml,
)
from ._csvio import MISSING, fmt_number, normalise_name, read_table, write_table
from .cohort import Cohort, natural_key

__all__ = ["FORMATS", "read_cohort", "write_cohort"]

#: Formats :func:`read_cohort` and :func:`write_cohort` understand.
FORMATS = ("long", "wide", "nonmem", "proact")
#: Values of the sidecar key ``delimiter`` (default: by the file name, see read_table).
DELIMITERS = ("comma", "tab", "whitespace")

_COMMON_KEYS = ("format", "time_unit", "time_origin", "units", "allow_negative_time",
                *SIDE_TABLES, "delimiter")
_SIDECAR_KEYS = {
    "long": (*_COMMON_KEYS, "mapping"),
    "wide": (*_COMMON_KEYS, "mapping"),
    "nonmem": _nonmem.SIDECAR_KEYS,
}


def _without_gc(fn):
    """Run ``fn`` with Python's cyclic garbage collector paused.

    Reading a large file allocates millions of small lists and tuples, none of them cyclic
    garbage; the collector's repeated full passes over them cost a fifth of the reading time
    at 10,000 subjects. It is re-enabled (if it was on) whatever happens.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


@_without_gc
def read_cohort(
    path: str | os.PathLike | Mapping[str, str | os.PathLike],
    format: str | None = None,
    *,
    mapping: Mapping[str, Any] | None = None,
    time_unit: str | None = None,
    to_unit: str | None = "month",
    time_origin: str | None = None,
    sidecar: str | os.PathLike | bool | None = None,
    covariates: str | os.PathLike | None = None,
    events: str | os.PathLike | None = None,
    doses: str | os.PathLike | None = None,
    time_varying: str | os.PathLike | None = None,
    lab_map: Mapping[str, Any] | None = None,
    allow_negative_time: bool | None = None,
) -> Cohort:
    """Read a cohort from a file (long, wide, NONMEM) or a PRO-ACT folder.

    Parameters
    ----------
    path : path or mapping
        A CSV file, a PRO-ACT folder, or a dict of PRO-ACT files (``{"alsfrs": ...,
        "deathdata": ..., "demographics": ..., "alshistory": ..., "labs": ...}``).
    format : {"long", "wide", "nonmem", "proact"}, optional
        Inferred when omitted: folder or dict -> proact; else the sidecar's ``format``;
        else the header (``ID, TIME, DV`` -> nonmem; ``subject, time, observable, value``
        -> long; a mapping with ``observables`` -> wide).
    mapping : mapping, optional
        Column names: for long ``{"subject": "ID", "time": "t", ...}``; for wide also
        ``observables`` and ``covariates``; for proact PRO-ACT column -> actual column
        (``{"subject_id": "SubjectID"}``).
    time_unit : str, optional
        Unit of the times *in the file*; default the sidecar's, else ``"day"`` for PRO-ACT
        and an assumed ``"month"`` (noted) otherwise.
    to_unit : str or None
        Unit of the returned cohort (default months, the models' unit); None keeps the
        file's unit.
    time_origin : str, optional
        What the file's time 0 is (``"enrolment"``, ``"onset"``, ``"diagnosis"``); default the
        sidecar's, else enrolment (noted).
    sidecar : path or bool, optional
        TOML sidecar; default ``<file>.toml`` or ``<stem>.toml`` if present; False: none.
    covariates, events, doses, time_varying : path, optional
        Side tables (long, wide, nonmem); override the sidecar's.
    lab_map : mapping, optional
        PRO-ACT only: lab test name -> observable name or ``(observable, unit)``, merged
        over the default map (None as a value removes a default entry).
    allow_negative_time : bool, optional
        Whether times before the origin are accepted; default True for PRO-ACT (screening
        visits before enrolment), else the sidecar's ``allow_negative_time``, else False.

    Returns
    -------
    Cohort

    Raises
    ------
    DataError
        One error listing every problem, each naming file, row, column and subject.
    """
    if isinstance(path, Mapping) or (format is None and Path(path).is_dir()):
        format = format or "proact"
    if format is not None and format not in FORMATS:
        raise DataError(f"{path}: unknown format '{format}'; expected one of "
                        + ", ".join(f"'{f}'" for f in FORMATS))
    if format == "proact":
        for name, x in (("covariates", covariates), ("events", events), ("doses", doses),
                        ("time_varying", time_varying), ("sidecar", sidecar)):
            if x not in (None, False):
                raise DataError(f"{path}: argument '{name}' does not apply to PRO-ACT exports")
        return _proact.read(path, mapping=mapping, time_unit=time_unit, to_unit=to_unit,
                            time_origin=time_origin, lab_map=lab_map,
                            allow_negative_time=True if allow_negative_time is None
                            else allow_negative_time)
    if lab_map is not None:
        raise DataError(f"{path}: argument 'lab_map' applies to PRO-ACT exports only")

    path = Path(path)
    if path.suffix.lower() == ".mlxtran":  # a Monolix project: its data file, its column uses
        path, sidecar = _sidecars.monolix_data_path(path), path
    draft = Draft(str(path))
    side_path = find_sidecar(path, sidecar) or _sidecars.find(path, sidecar)  # or .datainfo
    doc = _sidecars.load(side_path, draft.problems, path)  # TOML, Monolix or pharmpy
    side_label = str(side_path)
    if doc:
        draft.notes.append(f"{path}: read sidecar {side_path}")
    if format is None:
        format = doc.get("format") if isinstance(doc.get("format"), str) else None
        if format is not None and format not in FORMATS[:3]:
            v.raise_if_problems(draft.problems + [
                f"{side_label}, key 'format': expected one of 'long', 'wide', 'nonmem', "
                f"found '{format}'"], str(path))
    delimiter = doc.get("delimiter")
    if delimiter is not None and delimiter not in DELIMITERS:
        v.raise_if_problems(draft.problems + [
            f"{side_label}, key 'delimiter': expected one of "
            + ", ".join(f"'{d}'" for d in DELIMITERS) + f", found {delimiter!r}"], str(path))
    table = read_table(path, draft.problems, delimiter=delimiter)
    if table is None:
        v.raise_if_problems(draft.problems, str(path))
    draft.notes.extend(table.notes)
    if not len(table):
        # A header and nothing else: every side-table subject would be reported as having
        # no observations, 200 consequences of one cause.
        v.raise_if_problems(draft.problems + [
            f"{table.label}: expected data rows after the header (row {table.header_line}), "
            "found none"], str(path))
    if format is None:
        format = _sniff(table, mapping, doc)
    draft.sidecar_keys = _SIDECAR_KEYS[format]
    if doc:
        v.check_unknown_keys(side_label, doc, _SIDECAR_KEYS[format], draft.problems)
        if doc.get("format", format) != format:
            draft.problems.append(f"{side_label}, key 'format': says '{doc['format']}' but "
                                  f"the file is read as '{format}'")
    sidecar_units(doc, side_label, draft)
    allow_neg = bool(doc.get("allow_negative_time", False) if allow_negative_time is None
                     else allow_negative_time)
    file_unit = resolve_time_unit(time_unit, doc, side_label, None, draft)
    origin = resolve_origin(time_origin, doc, None, draft)
    sides = side_table_paths(doc, side_path,
                             {"covariates": covariates, "events": events, "doses": doses,
                              "time_varying": time_varying})
    if format == "nonmem":
        _nonmem.read(table, draft, doc, side_label, allow_negative_time=allow_neg)
    else:
        mapping = dict(mapping if mapping is not None else doc.get("mapping", {}))
        (_read_long if format == "long" else _read_wide)(table, draft, mapping,
                                                         side_label if doc else str(path))
    read_side_tables(sides, draft, _subject_aliases(mapping if format != "nonmem" else {}))
    return draft.build(time_unit=file_unit, to_unit=to_unit, time_origin=origin,
                       allow_negative_time=allow_neg)


def _subject_aliases(mapping: Mapping) -> tuple[str, ...]:
    s = mapping.get("subject") if isinstance(mapping, Mapping) else None
    return (s,) if isinstance(s, str) else ()


def _sniff(table, mapping, doc) -> str:
    names = {normalise_name(h) for h in table.header}
    if mapping and "observables" in mapping or "mapping" in doc and "observables" in \
            doc.get("mapping", {}):
        return "wide"
    if {"id", "time", "dv"} <= names:
        return "nonmem"
    if {"observable", "value"} <= names or (mapping and "observable" in mapping):
        return "long"
    raise DataError(
        f"{table.label}, row {table.header_line}: cannot tell the format from the header; "
        "expected columns subject, time, observable, value (long) or ID, TIME, DV (nonmem); "
        "pass format='wide' with a mapping, or format= explicitly"
    )


# ---------------------------------------------------------------------------------- long

_LONG_COLUMNS = {"subject": SUBJECT_NAMES, "time": TIME_NAMES,
                 "observable": ("observable", "name", "variable"),
                 "value": ("value", "measurement", "dv")}


def _mapped(mapping: Mapping, canonical: str, defaults) -> tuple[str, ...]:
    given = mapping.get(canonical)
    return (given,) if isinstance(given, str) else tuple(defaults)


def _read_long(table, draft: Draft, mapping: Mapping, label: str) -> None:
    v.check_unknown_keys(f"{label}, mapping", mapping,
                         ("subject", "time", "observable", "value", "cens", "limit", "unit",
                          "sd", "condition"),
                         draft.problems)
    required = {k: _mapped(mapping, k, names) for k, names in _LONG_COLUMNS.items()}
    optional = {"cens": _mapped(mapping, "cens", ("cens",)),
                "limit": _mapped(mapping, "limit", ("limit", "lloq")),
                "unit": _mapped(mapping, "unit", ("unit", "units")),
                "sd": _mapped(mapping, "sd", ("sd",)),
                "condition": _mapped(mapping, "condition", ("condition",))}
    cols = v.check_columns(table, required, draft.problems, optional=optional)
    if len(set(required) & set(cols)) < 4:
        draft.stop = True  # every row would fail for the same reason: report it once
        return
    ignored = [h for h in table.header if h not in cols.values()]
    if ignored:
        draft.notes.append(f"{table.label}: ignored columns " + ", ".join(
            f"'{h}'" for h in ignored) + " (a long file reads subject, time, observable, "
            "value, cens, limit, unit, sd and condition)")
    subj = [s.strip() for s in table.column(cols["subject"])]
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    values = v.parse_values(table, cols["value"], draft.problems, subjects=subj, columns=cols)
    cens = (v.parse_numbers(table, cols["cens"], draft.problems, canonical="cens",
                            subjects=subj, required=False, allowed=(0, 1, -1), columns=cols)
            if "cens" in cols else [None] * len(table))
    limits = (v.parse_numbers(table, cols["limit"], draft.problems, canonical="limit",
                              subjects=subj, required=False, columns=cols)
              if "limit" in cols else [None] * len(table))
    # each value's known SD (empty: not given) and experimental condition (empty: none)
    sds = (v.parse_numbers(table, cols["sd"], draft.problems, canonical="sd", subjects=subj,
                           required=False, columns=cols)
           if "sd" in cols else [None] * len(table))
    conds = ([c.strip() for c in table.column(cols["condition"])] if "condition" in cols
             else [""] * len(table))
    names = table.column(cols["observable"])
    draft.seen_observables.update(n for n in names if n)
    if "unit" in cols:
        _units_column(table, cols, subj, names, draft)
    vcol = table.header.index(cols["value"])
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        if line in table.ragged:
            draft.excuse.add(s)  # reported as a field-count problem already
            continue
        origin = (table.label, line, cols)
        value, flag = values[i]
        c = int(cens[i]) if cens[i] is not None else flag
        lim = limits[i] if limits[i] is not None else (value if flag else None)
        if not names[i]:
            draft.problems.append(f"{v.where(origin, 'observable', s)}: expected an "
                                  "observable name, found an empty cell")
        if times[i] is None or not names[i]:
            draft.excuse.add(s)
            continue
        if value is None and c == 0:
            if table.rows[i][vcol].strip().lower() in MISSING:
                draft.problems.append(
                    f"{v.where(origin, 'value', s)}: expected a value, found "
                    f"{_found(table.rows[i][vcol])}")
            draft.excuse.add(s)
            continue
        draft.add_obs(s, times[i], names[i], value, c, lim, origin, sds[i], conds[i])
    _note_order(draft, subj, times, table.label)


def _units_column(table, cols, subj, names, draft: Draft) -> None:
    """A ``unit`` column: one unit per observable, agreeing with the sidecar's [units].

    Values are read as they stand (nothing is converted), so a file mixing pg/mL and ng/mL
    rows of one observable would be fitted on two scales: refused, naming both rows.
    """
    first: dict[str, tuple[str, int]] = {}
    declared = dict(draft.units)
    for s, n, u, line in zip(subj, names, table.column(cols["unit"]), table.lines,
                             strict=True):
        if not n or not u:
            continue
        place = v.where((table.label, line, cols), "unit", s)
        if n not in first:
            first[n] = (u, line)
            if n in declared and declared[n] != u:
                label = draft.unit_keys[0] if draft.unit_keys else "the sidecar"
                draft.problems.append(
                    f"{place}: expected observable '{n}' in '{declared[n]}' as {label} "
                    f"[units] says, found '{u}'; convert the values or correct the unit")
            draft.units.setdefault(n, u)
        elif first[n][0] != u:
            draft.problems.append(
                f"{place}: expected one unit per observable, found '{u}' for '{n}' after "
                f"'{first[n][0]}' (row {first[n][1]}); convert the values to one unit")


def _found(text: str) -> str:
    return "an empty cell" if not text.strip() else f"'{text}'"


def _note_order(draft: Draft, subj, times, label) -> None:
    # One sort key per subject, not per row: the key is a regex split, the dearest part.
    key = {s: natural_key(s) for s in set(subj)}
    keys = [(key[s], t) for s, t in zip(subj, times, strict=True) if t is not None]
    if any(a > b for a, b in zip(keys, keys[1:], strict=False)):
        draft.notes.append(f"{label}: rows were not in subject and time order; sorted")


# ---------------------------------------------------------------------------------- wide


def _read_wide(table, draft: Draft, mapping: Mapping, label: str) -> None:
    v.check_unknown_keys(f"{label}, mapping", mapping,
                         ("subject", "time", "observables", "covariates", "units"),
                         draft.problems)
    required = {k: _mapped(mapping, k, names) for k, names in
                (("subject", SUBJECT_NAMES), ("time", TIME_NAMES))}
    cols = v.check_columns(table, required, draft.problems)
    if len(cols) < 2:
        draft.stop = True  # every row would fail for the same reason: report it once
        return
    obs_map = mapping.get("observables")
    cov_map = mapping.get("covariates", {})
    if isinstance(cov_map, (list, tuple)):
        cov_map = {c: c for c in cov_map}
    observables: dict[str, str] = {}
    if obs_map is None:
        observables = {h: h for h in table.header if h not in cols.values()
                       and h not in cov_map.values()}
        draft.notes.append(f"{table.label}: no observables mapping; read columns "
                           + ", ".join(f"'{h}'" for h in observables) + " as observables")
    elif not isinstance(obs_map, Mapping):
        draft.problems.append(f"{label}, mapping 'observables': expected a table of "
                              f"observable = column, found {obs_map!r}")
    else:
        for name, spec in obs_map.items():
            if isinstance(spec, Mapping):
                v.check_unknown_keys(f"{label}, mapping 'observables.{name}'", spec,
                                     ("column", "unit"), draft.problems)
                column = spec.get("column", name)
                if "unit" in spec:
                    unit = str(spec["unit"])
                    if draft.units.get(name, unit) != unit:
                        draft.problems.append(
                            f"{label}, mapping 'observables.{name}', key 'unit': says "
                            f"'{unit}' but [units] says '{draft.units[name]}'; expected one "
                            "unit per observable")
                    draft.units[name] = unit
            else:
                column = str(spec)
            observables[name] = column
    draft.seen_observables.update(observables)
    wanted = {**{f"observable {k}": c for k, c in observables.items()},
              **{f"covariate {k}": c for k, c in cov_map.items()}}
    for what, column in wanted.items():
        if table.find(column) is None:
            draft.problems.append(
                f"{table.label}, row {table.header_line}, column '{column}': expected the "
                f"column of {what} (from the mapping), found columns "
                + ", ".join(f"'{h}'" for h in table.header)
                + v._suggest(column, table.header))
    used = set(cols.values()) | {table.find(c) for c in wanted.values()}
    ignored = [h for h in table.header if h not in used]
    if ignored:
        draft.notes.append(f"{table.label}: ignored columns not in the mapping: "
                           + ", ".join(f"'{h}'" for h in ignored))
    subj = [s.strip() for s in table.column(cols["subject"])]
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    empty = 0
    for name, column in observables.items():
        actual = table.find(column)
        if actual is None:
            continue
        ocols = {**cols, "value": actual}
        values = v.parse_values(table, actual, draft.problems, subjects=subj, columns=ocols)
        for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
            value, flag = values[i]
            if times[i] is None:
                draft.excuse.add(s)
                continue
            if value is None:
                # Bad cells were reported by parse_values; only blanks mean "not measured".
                text = table.rows[i][table.header.index(actual)].strip().lower()
                empty += text in MISSING
                continue
            draft.add_obs(s, times[i], name, value, flag, value if flag else None,
                          (table.label, line, ocols))
    if empty:
        draft.notes.append(f"{table.label}: {empty} empty observable cell(s) read as "
                           "'not measured at that visit'")
    for name, column in cov_map.items():
        actual = table.find(column)
        if actual is None:
            continue
        ccols = {**cols, name: actual}
        for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
            text = table.rows[i][table.header.index(actual)]
            value, status = _number_or_text(text)
            if status != "missing":
                draft.set_covariate(s, name, value, (table.label, line, ccols))
    _note_order(draft, subj, times, table.label)


def _number_or_text(text: str):
    from ._csvio import parse_number

    value, status = parse_number(text)
    if status == "bad":
        return text.strip(), "ok"
    return value, status


# ------------------------------------------------------------------------------- writing


def write_cohort(cohort: Cohort, path: str | os.PathLike, format: str | None = None, *,
                 overwrite: bool = False, inputs=()) -> list[Path]:
    """Write ``cohort`` so that :func:`read_cohort` reads it back equal.

    Every file is written to a hidden temporary folder first and moved into place only when
    all are complete. Existing files are replaced only with ``overwrite=True`` and only when
    progression wrote them (they sit beside a sidecar progression wrote); a PRO-ACT folder
    follows the rules of :func:`progression._io.atomic_directory`.

    Parameters
    ----------
    cohort : Cohort
    path : path
        A ``.csv`` file (long, wide, nonmem; side tables and a ``<stem>.toml`` sidecar are
        written next to it) or a folder (proact; created if needed).
    format : {"long", "wide", "nonmem", "proact"}, optional
        Default: ``"proact"`` for a path without suffix, else ``"long"``.
    overwrite : bool
        Replace files (or a PRO-ACT folder) that progression wrote earlier.
    inputs : iterable of path
        Files the caller read; none of them is replaced.

    Returns
    -------
    list of Path
        Every file written.

    Raises
    ------
    DataError
        When the format cannot hold part of the cohort (PRO-ACT has no doses, time-varying
        covariates or tracheostomy/ventilation events), or a file cannot be written.
    OutputError
        When writing would replace a file or folder that must be kept.
    """
    from .._io import atomic_directory, atomic_files, cohort_files, is_progression_cohort_file

    path = Path(path)
    if format is None:
        format = "proact" if path.suffix == "" else "long"
    if format not in FORMATS:
        raise DataError(f"{path}: unknown format '{format}'; expected one of "
                        + ", ".join(f"'{f}'" for f in FORMATS))
    if format == "proact":
        with atomic_directory(path, overwrite=overwrite, inputs=inputs,
                              what="PRO-ACT folder") as tmp:
            written = _proact.write(cohort, tmp)
        return [path / f.name for f in written]
    with atomic_files(path, overwrite=overwrite, inputs=inputs, what="cohort file",
                      ours=is_progression_cohort_file, stale=cohort_files(path)[2:6],
                      expected=[path.with_suffix(".toml")]) as tmp:
        written = _write_cohort_files(cohort, tmp / path.name, format)
    return [path.parent / f.name for f in written]


def _write_cohort_files(cohort: Cohort, path: Path, format: str) -> list[Path]:
    """Write the cohort file, its sidecar and side tables (into a fresh folder)."""
    if format == "nonmem":
        return _nonmem.write(cohort, path)
    stem = path.with_suffix("")
    side = write_side_tables(cohort, stem, covariates=format == "long")
    doc: dict[str, Any] = {"format": format, "time_unit": cohort.time_unit,
                           "time_origin": cohort.time_origin, **side}
    if _has_negative_times(cohort):
        doc["allow_negative_time"] = True
    obs = cohort.observations()
    if format == "long":
        censored = bool((obs["cens"] != 0).any())
        extra = [k for k in ("sd", "condition") if k in obs]
        header = ["subject", "time", "observable", "value"] + (["cens", "limit"] if censored
                                                               else []) + extra
        rows = (
            [s, t, o, x, *([c, lim] if censored else []), *(obs[k][i] for k in extra)]
            for i, (s, t, o, x, c, lim) in enumerate(zip(
                obs["subject"], obs["time"], obs["observable"], obs["value"], obs["cens"],
                obs["limit"], strict=True))
        )
        write_table(path, header, rows)
    else:
        doc["mapping"] = _write_wide(cohort, path)
    if cohort.units:
        doc["units"] = cohort.units
    sidecar = stem.with_suffix(".toml")
    write_toml(sidecar, doc, f"Sidecar of {path.name}, written by progression.write_cohort")
    return [path, sidecar, *(path.parent / f for f in side.values())]


def _has_negative_times(cohort: Cohort) -> bool:
    return any(bool((t["time"] < 0).any()) for t in (cohort.observations(), cohort.doses,
                                                     cohort.time_varying, cohort.events))


def _write_wide(cohort: Cohort, path: Path) -> dict[str, Any]:
    obs = cohort.observations()
    names = list(cohort.observables)
    covs = list(cohort.covariate_names)
    reserved = {"subject", "time"}
    cov_cols = {c: (c if c not in reserved and c not in names else f"cov_{c}") for c in covs}
    visits: dict[tuple[str, float], dict[str, str]] = {}
    for s, t, o, x, c in zip(obs["subject"], obs["time"], obs["observable"], obs["value"],
                             obs["cens"], strict=True):
        cell = fmt_number(x) if c == 0 else ("<" if c == 1 else ">") + fmt_number(x)
        visits.setdefault((str(s), float(t)), {})[str(o)] = cell
    cov = cohort.covariates
    rows = []
    for (s, t), cells in visits.items():
        rows.append([s, t, *(cells.get(n, "") for n in names),
                     *(cov.get(s, {}).get(c) for c in covs)])
    write_table(path, ["subject", "time", *names, *cov_cols.values()], rows)
    mapping: dict[str, Any] = {"subject": "subject", "time": "time",
                               "observables": {n: n for n in names}}
    if covs:
        mapping["covariates"] = cov_cols
    return mapping
