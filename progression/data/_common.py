"""Shared reader machinery (private): drafts, sidecars and side tables.

A reader fills a :class:`Draft` (columns plus the origin of every row, problems and notes)
and calls :meth:`Draft.build`, which hands everything to :class:`~progression.data.Cohort`;
the cohort runs the semantic checks and raises one DataError listing the reader's problems
and its own together.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from progression.errors import did_you_mean

from . import validation as v
from ._csvio import MISSING, RawTable, parse_number, read_table
from ._units import DAYS_PER, canonical_time_unit
from .cohort import Cohort

SUBJECT_NAMES = ("subject", "subject_id", "id", "patient_id", "patient", "SubjectID", "USUBJID")
TIME_NAMES = ("time", "t")

SIDE_TABLES = ("covariates", "events", "doses", "time_varying")


class Draft:
    """Columns and row origins collected by a reader before the cohort is built."""

    def __init__(self, source: str):
        self.source = source
        self.obs: dict[str, list] = {c: [] for c in ("subject", "time", "observable", "value",
                                                     "cens", "limit", "sd", "condition")}
        self.obs_origin: list = []
        self.doses: dict[str, list] = {c: [] for c in ("subject", "time", "amount", "target",
                                                       "rate", "duration", "reset", "ss",
                                                       "ii")}
        self.dose_origin: list = []
        self.tv: dict[str, list] = {c: [] for c in ("subject", "time", "name", "value")}
        self.tv_origin: list = []
        self.events: dict[str, list] = {c: [] for c in ("subject", "time", "event")}
        self.event_origin: list = []
        self.covariates: dict[str, dict[str, Any]] = {}
        self.cov_origin: dict[str, v.Origin] = {}
        self.units: dict[str, str] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.excuse: set[str] = set()
        # Set when the main table is structurally broken (a required column missing, no
        # data rows): every per-row check downstream would only repeat the cause, so the
        # cohort is not built and the problems found so far are reported as they are.
        self.stop = False
        # Observable names the file mentions (also in rows rejected for other reasons), and
        # the sidecar's [units] keys with the sidecar's label, checked against each other.
        self.seen_observables: set[str] = set()
        self.unit_keys: tuple[str, list[str]] | None = None
        self.sidecar_keys: tuple[str, ...] = _TOP_LEVEL_KEYS

    def add_obs(self, subject, time, observable, value, cens, limit, origin, sd=None,
                condition="") -> None:
        # Called once per row of large files: direct appends, no loop over the columns.
        o = self.obs
        o["subject"].append(subject)
        o["time"].append(time)
        o["observable"].append(observable)
        o["value"].append(value)
        o["cens"].append(cens)
        o["limit"].append(limit)
        o["sd"].append(sd)
        o["condition"].append(condition)
        self.obs_origin.append(origin)

    def _obs_columns(self) -> dict[str, list]:
        """The observation columns, without ``sd``/``condition`` when no row gives them."""
        out = dict(self.obs)
        if all(x is None for x in out["sd"]):
            del out["sd"]
        if not any(out["condition"]):
            del out["condition"]
        return out

    def add_dose(self, subject, time, amount, target, rate, duration, reset, origin, *,
                 ss=None, ii=None) -> None:
        for k, x in zip(self.doses, (subject, time, amount, target, rate, duration, reset, ss,
                                     ii), strict=True):
            self.doses[k].append(x)
        self.dose_origin.append(origin)

    def add_tv(self, subject, time, name, value, origin) -> None:
        for k, x in zip(self.tv, (subject, time, name, value), strict=True):
            self.tv[k].append(x)
        self.tv_origin.append(origin)

    def add_event(self, subject, time, event, origin) -> None:
        for k, x in zip(self.events, (subject, time, event), strict=True):
            self.events[k].append(x)
        self.event_origin.append(origin)

    def set_covariate(self, subject: str, name: str, value, origin, *, hint: str = "") -> None:
        """Record a baseline covariate; a second, different value is a problem."""
        row = self.covariates.setdefault(subject, {})
        self.cov_origin.setdefault(subject, origin)
        if name in row and row[name] != value:
            self.problems.append(
                f"{v.where(origin, name, subject)}: expected one value of covariate '{name}' "
                f"per subject, found {_show(value)} after {_show(row[name])}{hint}"
            )
        else:
            row[name] = value

    def build(self, *, time_unit: str, to_unit: str | None, time_origin: str,
              allow_negative_time: bool = False) -> Cohort:
        """Make the cohort (raising one DataError with every problem) in ``to_unit``."""
        if self.stop:
            v.raise_if_problems(self.problems, self.source)
        self._check_unit_keys()
        cohort = Cohort(
            self._obs_columns(),
            doses=self.doses if self.doses["subject"] else None,
            covariates=self.covariates,
            time_varying=self.tv if self.tv["subject"] else None,
            events=self.events if self.events["subject"] else None,
            units=self.units,
            time_unit=time_unit,
            time_origin=time_origin,
            source=self.source,
            notes=self.notes,
            allow_negative_time=allow_negative_time,
            _origins={"observations": self.obs_origin, "doses": self.dose_origin,
                      "time_varying": self.tv_origin, "events": self.event_origin,
                      "covariates": self.cov_origin},
            _problems=self.problems,
            _excuse=self.excuse,
        )
        if to_unit is not None:
            cohort = cohort.to_time_unit(to_unit)
        return cohort


    def _check_unit_keys(self) -> None:
        """Every key of the sidecar's [units] must name an observable of the file.

        A key written below the ``[units]`` header belongs to that table in TOML, so a
        misplaced or misspelt top-level key (``colums = ...``) lands here and would
        otherwise be taken silently as the unit of an observable that does not exist.
        """
        if self.unit_keys is None:
            return
        label, keys = self.unit_keys
        known = self.seen_observables | set(self.obs["observable"])
        if not known:
            return
        for key in keys:
            if key in known:
                continue
            hint = did_you_mean(key, sorted(known) + list(self.sidecar_keys))
            self.problems.append(
                f"{label}, [units], key '{key}': expected the unit of an observable in the "
                f"data ({', '.join(repr(o) for o in sorted(known))}), found '{key}'{hint}"
                " (a key written after the [units] header belongs to that table)")


_TOP_LEVEL_KEYS = ("format", "time_unit", "time_origin", "units", "allow_negative_time",
                   "mapping", "covariates", "events", "doses", "time_varying", "columns",
                   "dvid", "cmt", "subjects", "delimiter", "default_cmt")


def _show(x) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


# ----------------------------------------------------------------------------- sidecars


def find_sidecar(path: Path, sidecar) -> Path | None:
    """``sidecar`` if given, else ``<file>.toml`` or ``<stem>.toml`` next to the file."""
    if sidecar is False:
        return None
    if sidecar not in (None, True):
        return Path(sidecar)
    for candidate in (path.with_name(path.name + ".toml"), path.with_suffix(".toml")):
        if candidate.is_file() and candidate != path:
            return candidate
    return None


def load_sidecar(path: Path | None, problems: list[str]) -> dict[str, Any]:
    """Parse a TOML sidecar; a syntax error becomes a problem naming line and column."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"{path}: sidecar file not found")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: expected valid TOML, found a syntax error ({exc})")
    return {}


def resolve_time_unit(
    given: str | None, sidecar: Mapping, label: str, default: str | None, draft: Draft
) -> str:
    """The unit of the file's times: argument, sidecar, format default, or assumed month."""
    text = given if given is not None else sidecar.get("time_unit", default)
    if text is None:
        draft.notes.append(f"{draft.source}: time unit not stated; assumed months "
                           "(pass time_unit= or set time_unit in a sidecar)")
        return "month"
    unit = canonical_time_unit(str(text))
    if unit is None:
        draft.problems.append(f"{label}, key 'time_unit': expected one of "
                              f"{', '.join(DAYS_PER)}, found '{text}'")
        return "month"
    return unit


def resolve_origin(given: str | None, sidecar: Mapping, default: str | None,
                   draft: Draft) -> str:
    """The time origin: argument, sidecar, format default, or assumed enrolment (noted)."""
    origin = given if given is not None else sidecar.get("time_origin", default)
    if origin is None:
        draft.notes.append(f"{draft.source}: time origin not stated; assumed 'enrolment' "
                           "(pass time_origin= or set time_origin in a sidecar)")
        return "enrolment"
    return str(origin)


def sidecar_units(sidecar: Mapping, label: str, draft: Draft) -> None:
    units = sidecar.get("units", {})
    if not isinstance(units, Mapping):
        draft.problems.append(f"{label}, key 'units': expected a table of observable = unit, "
                              f"found {units!r}")
        return
    draft.units.update({str(k): str(u) for k, u in units.items()})
    draft.unit_keys = (label, [str(k) for k in units])


def side_table_paths(sidecar: Mapping, sidecar_path: Path | None,
                     given: Mapping[str, Any]) -> dict[str, Path]:
    """Side tables named by arguments (win) or by the sidecar (relative to it)."""
    out: dict[str, Path] = {}
    for name in SIDE_TABLES:
        if given.get(name) is not None:
            out[name] = Path(given[name])
        elif name in sidecar and sidecar_path is not None:
            out[name] = sidecar_path.parent / str(sidecar[name])
    return out


# -------------------------------------------------------------------------- side tables


def _subjects(table: RawTable, col: str) -> list[str]:
    return [s.strip() for s in table.column(col)]


def read_side_tables(paths: Mapping[str, Path], draft: Draft,
                     subject_names: Sequence[str] = ()) -> None:
    """Read the covariates, events, doses and time-varying side tables into ``draft``."""
    readers = {"covariates": read_covariates, "events": read_events, "doses": read_doses,
               "time_varying": read_time_varying}
    for name, path in paths.items():
        readers[name](path, draft, subject_names)


def _open(path: Path, draft: Draft) -> RawTable | None:
    table = read_table(path, draft.problems)
    if table is not None:
        draft.notes.extend(table.notes)
    return table


def read_covariates(path: Path, draft: Draft, subject_names: Sequence[str] = ()) -> None:
    """Covariates CSV: a subject column and one column per covariate, one row per subject.

    Cells that read as numbers become floats, others stay text; empty cells are missing.
    """
    table = _open(path, draft)
    if table is None:
        return
    cols = v.check_columns(table, {"subject": (*subject_names, *SUBJECT_NAMES)},
                           draft.problems)
    if "subject" not in cols:
        return
    sc = cols["subject"]
    first: dict[str, int] = {}
    names = [h for h in table.header if h != sc]
    for row, line in zip(table.rows, table.lines, strict=True):
        s = row[table.header.index(sc)]
        origin = (table.label, line, {"subject": sc})
        if not s:
            draft.problems.append(f"{v.where(origin, 'subject')}: expected a subject "
                                  "identifier, found an empty cell")
            continue
        if s in first:
            draft.problems.append(
                f"{v.where(origin, 'subject', s)}: expected one covariate row per subject, "
                f"found a second (first at row {first[s]})")
            continue
        first[s] = line
        draft.cov_origin.setdefault(s, origin)
        draft.covariates.setdefault(s, {})
        for name in names:
            text = row[table.header.index(name)]
            value, status = parse_number(text)
            if status == "ok":
                draft.set_covariate(s, name, value, origin)
            elif status == "bad":
                draft.set_covariate(s, name, text, origin)


def read_events(path: Path, draft: Draft, subject_names: Sequence[str] = ()) -> None:
    """Events CSV: ``subject, time, event`` (death, tracheostomy, ventilation, censored)."""
    table = _open(path, draft)
    if table is None:
        return
    cols = v.check_columns(table, {"subject": (*subject_names, *SUBJECT_NAMES),
                                   "time": TIME_NAMES,
                                   "event": ("event", "status", "type", "event_type")},
                           draft.problems)
    if len(cols) < 3:
        return
    subj = _subjects(table, cols["subject"])
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    for s, t, e, line in zip(subj, times, table.column(cols["event"]), table.lines,
                             strict=True):
        origin = (table.label, line, cols)
        if t is None:
            draft.excuse.add(s)
            continue
        draft.add_event(s, t, e, origin)


def read_doses(path: Path, draft: Draft, subject_names: Sequence[str] = ()) -> None:
    """Doses CSV: ``subject, time, amount, target`` and optional ``rate``, ``duration``,
    ``reset`` (0/1), ``ss`` (1: a steady-state dose) and ``ii`` (its interdose interval)."""
    table = _open(path, draft)
    if table is None:
        return
    cols = v.check_columns(
        table,
        {"subject": (*subject_names, *SUBJECT_NAMES), "time": TIME_NAMES,
         "amount": ("amount", "amt", "dose"), "target": ("target", "compartment", "cmt")},
        draft.problems,
        optional={"rate": ("rate",), "duration": ("duration", "dur"),
                  "reset": ("reset",), "ss": ("ss", "steady_state"),
                  "ii": ("ii", "interdose_interval")},
    )
    if len({"subject", "time", "amount", "target"} & set(cols)) < 4:
        return
    subj = _subjects(table, cols["subject"])
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    # A missing amount is left to Cohort's dose check, which words it as a dose problem.
    amounts = v.parse_numbers(table, cols["amount"], draft.problems, canonical="amount",
                              subjects=subj, columns=cols, required=False)
    opt = {k: (v.parse_numbers(table, cols[k], draft.problems, canonical=k, subjects=subj,
                               required=False, columns=cols) if k in cols
               else [None] * len(table)) for k in ("rate", "duration", "reset", "ss", "ii")}
    targets = table.column(cols["target"])
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        bad_amount = amounts[i] is None and _amount_text(table, cols, i) not in MISSING
        if times[i] is None or bad_amount:
            draft.excuse.add(s)
            continue
        draft.add_dose(s, times[i], amounts[i], targets[i], opt["rate"][i],
                       opt["duration"][i], bool(opt["reset"][i]), (table.label, line, cols),
                       ss=opt["ss"][i], ii=opt["ii"][i])


def _amount_text(table: RawTable, cols: Mapping[str, str], i: int) -> str:
    return table.rows[i][table.header.index(cols["amount"])].strip().lower()


def read_time_varying(path: Path, draft: Draft, subject_names: Sequence[str] = ()) -> None:
    """Time-varying covariates CSV: ``subject, time, name, value`` (numeric values)."""
    table = _open(path, draft)
    if table is None:
        return
    cols = v.check_columns(table, {"subject": (*subject_names, *SUBJECT_NAMES),
                                   "time": TIME_NAMES, "name": ("name", "covariate"),
                                   "value": ("value",)}, draft.problems)
    if len(cols) < 4:
        return
    subj = _subjects(table, cols["subject"])
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    values = v.parse_numbers(table, cols["value"], draft.problems, canonical="value",
                             subjects=subj, columns=cols)
    for s, t, n, x, line in zip(subj, times, table.column(cols["name"]), values, table.lines,
                                strict=True):
        if t is None or x is None:
            draft.excuse.add(s)
            continue
        draft.add_tv(s, t, n, x, (table.label, line, cols))


# ------------------------------------------------------------------------------ writing


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _toml_value(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return repr(x)
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    if isinstance(x, Mapping):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml_value(val)}"
                                for k, val in x.items()) + " }"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_toml_value(e) for e in x) + "]"
    raise TypeError(f"cannot write {type(x).__name__} to TOML")


def write_toml(path: Path, doc: Mapping[str, Any], header: str = "") -> None:
    """Write a small TOML document: scalars first, then one [table] per mapping value."""
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    for k, x in doc.items():
        if not isinstance(x, Mapping):
            lines.append(f"{_toml_key(k)} = {_toml_value(x)}")
    for k, x in doc.items():
        if isinstance(x, Mapping):
            lines += ["", f"[{_toml_key(k)}]"]
            lines += [f"{_toml_key(str(kk))} = {_toml_value(xx)}" for kk, xx in x.items()]
    try:
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        from progression.errors import DataError

        raise DataError(f"{path}: cannot write ({exc.strerror})") from exc


def write_side_tables(cohort: Cohort, stem: Path, *, covariates: bool = True,
                      events: bool = True, doses: bool = True,
                      time_varying: bool = True) -> dict[str, str]:
    """Write the cohort's non-empty side tables next to ``stem``; return name -> file name."""
    from ._csvio import write_table

    written: dict[str, str] = {}
    cov = cohort.covariates
    names = cohort.covariate_names
    if covariates and names:
        p = stem.with_name(stem.name + "_covariates.csv")
        write_table(p, ["subject", *names],
                    ([s, *(cov.get(s, {}).get(n) for n in names)] for s in cohort.subjects))
        written["covariates"] = p.name
    ev = cohort.events
    if events and len(ev["subject"]):
        p = stem.with_name(stem.name + "_events.csv")
        write_table(p, ["subject", "time", "event"],
                    zip(ev["subject"], ev["time"], ev["event"], strict=True))
        written["events"] = p.name
    d = cohort.doses
    if doses and len(d["subject"]):
        p = stem.with_name(stem.name + "_doses.csv")
        columns = [d["subject"], d["time"], d["amount"], d["target"], d["rate"],
                   d["duration"], d["reset"].astype(int)]
        header = ["subject", "time", "amount", "target", "rate", "duration", "reset"]
        # Steady-state columns only when some record uses them: files without steady state
        # stay as they were.
        ss, ii = d.get("ss"), d.get("ii")
        if ss is not None and (bool((ss != 0).any()) or bool(np.isfinite(ii).any())):
            header += ["ss", "ii"]
            columns += [ss.astype(int), ii]
        write_table(p, header, zip(*columns, strict=True))
        written["doses"] = p.name
    tv = cohort.time_varying
    if time_varying and len(tv["subject"]):
        p = stem.with_name(stem.name + "_time_varying.csv")
        write_table(p, ["subject", "time", "name", "value"],
                    zip(tv["subject"], tv["time"], tv["name"], tv["value"], strict=True))
        written["time_varying"] = p.name
    return written
