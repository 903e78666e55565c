"""PRO-ACT-shaped exports (private; see :mod:`progression.data.readers`).

The PRO-ACT database (Pooled Resource Open-Access ALS Clinical Trials) ships one CSV per form,
keyed by ``subject_id``, with times as day offsets ("deltas") from trial enrolment:

==============  ===========================================================================
ALSFRS          ``ALSFRS_Delta``, ``ALSFRS_R_Total`` and the items ``Q1_Speech`` ...
                ``Q9_Climbing_Stairs`` (``Q5a_...``/``Q5b_...`` without/with gastrostomy),
                ``R_1_Dyspnea``, ``R_2_Orthopnea``, ``R_3_Respiratory_Insufficiency``.
                The ALSFRS-R total is ``ALSFRS_R_Total`` when present, else the sum of the
                12 ALSFRS-R items (Q1-Q9 and R1-R3; ``Q10_Respiratory`` belongs to the
                original ALSFRS and is not used). Visits with neither are skipped and noted.
DEATHDATA       ``Subject_Died`` (Yes/No), ``Death_Days``: a death event, or a censoring
                event at ``Death_Days`` when given for a survivor, else at the subject's last
                observation (noted).
DEMOGRAPHICS    ``Age`` -> ``age`` (years; from ``Date_of_Birth`` when Age is empty),
                ``Sex`` -> ``sex`` (lower case); other columns kept under their own names.
ALSHISTORY      ``Site_of_Onset`` -> ``site_of_onset`` ("Onset: Limb" -> "limb"),
                ``Onset_Delta`` -> ``onset_time``, ``Diagnosis_Delta`` -> ``diagnosis_time``
                (in the cohort's time unit, negative = before enrolment) and
                ``diagnostic_delay`` = diagnosis - onset. Several rows per subject are merged.
LABS            Long form ``Test_Name, Test_Result, Test_Unit, Laboratory_Delta``. Tests in
                the lab map become observables (default: C-reactive protein -> ``CRP`` in
                mg/L, converting mg/dL; neurofilament light -> ``NfL`` in pg/mL, converting
                ng/mL); results such as ``<0.3`` are left-censored. Other tests are counted in
                the notes.
==============  ===========================================================================

Subjects with no observations (e.g. in DEMOGRAPHICS only) are dropped and noted: an export
lists every randomised subject, not only those with data. Exact duplicate visits are dropped
and noted; conflicting duplicates are errors. A ``cohort.toml`` in the folder (written by
:func:`~progression.data.write_cohort`) may give ``time_origin``, ``units`` and extra
``[lab_map]`` entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from progression.errors import DataError

from . import validation as v
from ._common import Draft, load_sidecar, resolve_origin, resolve_time_unit, write_toml
from ._csvio import (
    RawTable,
    fmt_number,
    normalise_name,
    parse_number,
    parse_value,
    read_table,
    span,
)
from ._csvio import write_table as _write_table
from ._units import concentration_factor, time_factor
from .cohort import Cohort, _is_time_covariate

TABLES = ("alsfrs", "deathdata", "demographics", "alshistory", "labs")

_FILE_HINTS = (("alsfrs", "alsfrs"), ("death", "deathdata"), ("demograph", "demographics"),
               ("alshistory", "alshistory"), ("history", "alshistory"), ("lab", "labs"))

#: Default lab map: normalised test name -> (observable, unit).
DEFAULT_LAB_MAP: dict[str, tuple[str, str]] = {
    **{k: ("CRP", "mg/L") for k in (
        "creactiveprotein", "crp", "hscrp", "highsensitivitycrp", "crphighsensitivity",
        "highsensitivitycreactiveprotein", "creactiveproteinhighsensitivity", "crpserum")},
    **{k: ("NfL", "pg/mL") for k in (
        "neurofilamentlight", "neurofilamentlightchain", "nfl", "serumnfl", "snfl", "nflserum",
        "neurofilamentlightpolypeptide", "plasmanfl")},
}

_SIDECAR = "cohort.toml"
_SIDECAR_KEYS = ("format", "time_unit", "time_origin", "units", "lab_map")
_YES = {"yes", "y", "true", "1", "died", "dead"}
_NO = {"no", "n", "false", "0", "alive"}
_ITEMS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "R1", "R2", "R3")


def _locate(path, draft: Draft) -> tuple[dict[str, Path], Path | None]:
    files: dict[str, Path] = {}
    if isinstance(path, Mapping):
        v.check_unknown_keys("PRO-ACT files", path, TABLES, draft.problems, what="table")
        files = {k: Path(p) for k, p in path.items() if k in TABLES}
        return files, None
    folder = Path(path)
    if not folder.is_dir():
        draft.problems.append(f"{folder}: expected a PRO-ACT folder, found "
                              + ("a file" if folder.exists() else "nothing"))
        return files, None
    ignored = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".csv", ".txt", ".tsv"):
            if p.name != _SIDECAR:
                ignored.append(p.name)
            continue
        key = normalise_name(p.stem)
        kind = next((t for hint, t in _FILE_HINTS if hint in key), None)
        if kind is None:
            ignored.append(p.name)
        elif kind in files:
            draft.problems.append(f"{folder}: expected one {kind.upper()} file, found "
                                  f"'{files[kind].name}' and '{p.name}'")
        else:
            files[kind] = p
    if ignored:
        draft.notes.append(f"{folder}: ignored files not part of the PRO-ACT reader: "
                           + ", ".join(ignored))
    sidecar = folder / _SIDECAR
    return files, sidecar if sidecar.is_file() else None


def _col(table: RawTable, mapping: Mapping, name: str, *alts: str) -> str | None:
    given = mapping.get(name)
    if given is not None:
        return table.find(given)
    return table.find(name, *alts)


def _required(table: RawTable, mapping: Mapping, draft: Draft, **names) -> dict[str, str]:
    """Canonical -> actual columns; a missing one is a problem (names the PRO-ACT column)."""
    req = {canon: ((mapping[proact],) if proact in mapping else (proact,))
           for canon, proact in names.items()}
    return v.check_columns(table, req, draft.problems)


def read(path, *, mapping=None, time_unit=None, to_unit="month", time_origin=None,
         lab_map=None, allow_negative_time=True) -> Cohort:
    """Read a PRO-ACT folder or file dict (see the module docstring)."""
    mapping = dict(mapping or {})
    label = str(path) if not isinstance(path, Mapping) else "PRO-ACT files"
    draft = Draft(label)
    files, sidecar_path = _locate(path, draft)
    doc = load_sidecar(sidecar_path, draft.problems)
    if doc:
        v.check_unknown_keys(str(sidecar_path), doc, _SIDECAR_KEYS, draft.problems)
    file_unit = resolve_time_unit(time_unit, doc, str(sidecar_path), "day", draft)
    origin = resolve_origin(time_origin, doc, "enrolment", draft)
    if "units" in doc and isinstance(doc["units"], Mapping):
        draft.units.update({str(k): str(u) for k, u in doc["units"].items()})
    if "alsfrs" not in files and "labs" not in files:
        draft.problems.append(f"{label}: a folder is read as a PRO-ACT export; expected an "
                              "ALSFRS (or LABS) file in it, found "
                              + (", ".join(p.name for p in files.values()) or "none"))
    tables = {}
    for kind, p in files.items():
        t = read_table(p, draft.problems)
        if t is not None:
            draft.notes.extend(t.notes)
            tables[kind] = t
    if "alsfrs" in tables:
        _alsfrs(tables["alsfrs"], mapping, draft)
    if "labs" in tables:
        lm = dict(DEFAULT_LAB_MAP)
        for k, x in {**doc.get("lab_map", {}), **(lab_map or {})}.items():
            key = normalise_name(str(k))
            if x is None:
                lm.pop(key, None)
            elif isinstance(x, str):
                lm[key] = (x, "")
            elif isinstance(x, (list, tuple)) and len(x) == 2:
                lm[key] = (str(x[0]), str(x[1]))
            else:
                draft.problems.append(f"lab_map['{k}']: expected an observable name or "
                                      f"(observable, unit), found {x!r}")
        _labs(tables["labs"], mapping, lm, draft)
    _dedupe(draft)
    observed_last: dict[str, float] = {}
    for s, t in zip(draft.obs["subject"], draft.obs["time"], strict=True):
        if t is not None:
            observed_last[s] = max(t, observed_last.get(s, t))
    if "deathdata" in tables:
        _deaths(tables["deathdata"], mapping, draft, observed_last)
    if "demographics" in tables:
        _demographics(tables["demographics"], mapping, draft)
    if "alshistory" in tables:
        _history(tables["alshistory"], mapping, draft)
    _drop_unobserved(draft, set(observed_last) | draft.excuse)
    negative = sum(1 for t in draft.obs["time"] if t is not None and t < 0)
    if negative and allow_negative_time:
        draft.notes.append(f"{label}: {negative} observation(s) before {origin} (negative "
                           "times: screening visits), kept")
    return draft.build(time_unit=file_unit, to_unit=to_unit, time_origin=origin,
                       allow_negative_time=allow_negative_time)


def _subjects(table: RawTable, mapping: Mapping, draft: Draft) -> tuple[str | None, list[str]]:
    c = _required(table, mapping, draft, subject="subject_id").get("subject")
    if c is None:
        return None, []
    return c, [x.strip() for x in table.column(c)]


def _item_columns(table: RawTable, mapping: Mapping) -> dict[str, list[str]]:
    """ALSFRS-R item -> columns (Q5 may have two: without/with gastrostomy)."""
    items: dict[str, list[str]] = {}
    for h in table.header:
        m = re.match(r"^q(\d+)([ab])?(?:_|$)", h.lower())
        r = re.match(r"^r_?([123])(?:_|$)", h.lower())
        if m and 1 <= int(m.group(1)) <= 9:
            items.setdefault(f"Q{int(m.group(1))}", []).append(h)
        elif r:
            items.setdefault(f"R{r.group(1)}", []).append(h)
    for item in _ITEMS:
        if item in mapping:
            found = table.find(mapping[item])
            items[item] = [found] if found else []
    return items


def _alsfrs(table: RawTable, mapping: Mapping, draft: Draft) -> None:
    sc, subj = _subjects(table, mapping, draft)
    cols = _required(table, mapping, draft, time="ALSFRS_Delta")
    if sc is None or "time" not in cols:
        return
    cols["subject"] = sc
    total = _col(table, mapping, "ALSFRS_R_Total")
    items = _item_columns(table, mapping)
    if total is None and any(i not in items for i in _ITEMS):
        missing = [i for i in _ITEMS if i not in items]
        draft.problems.append(
            f"{table.label}, row {table.header_line}, column 'ALSFRS_R_Total': expected the "
            f"ALSFRS-R total or the 12 items Q1-Q9, R1-R3, found neither (missing items: "
            f"{', '.join(missing)})")
        return
    times = v.parse_numbers(table, cols["time"], draft.problems, canonical="time",
                            subjects=subj, columns=cols)
    tcols = {**cols, "value": total} if total else cols
    totals = (v.parse_numbers(table, total, draft.problems, canonical="value", subjects=subj,
                              required=False, columns=tcols)
              if total else [None] * len(table))
    summed, skipped = 0, []
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        if times[i] is None:
            draft.excuse.add(s)
            continue
        value, origin = totals[i], (table.label, line, tcols)
        if value is None and items:
            value, col = _sum_items(table, i, items, s, cols, draft)
            if value is not None:
                summed += 1
                origin = (table.label, line, {**cols, "value": col})
        if value is None:
            skipped.append(line)
            continue
        draft.add_obs(s, times[i], "ALSFRS_R", value, 0, None, origin)
    draft.units.setdefault("ALSFRS_R", "points")
    if summed:
        draft.notes.append(f"{table.label}: ALSFRS-R total computed as the sum of the 12 items "
                           f"for {summed} visit(s) without ALSFRS_R_Total")
    if skipped:
        draft.notes.append(f"{table.label}: skipped {len(skipped)} visit(s) without an ALSFRS-R "
                           f"total or a complete set of ALSFRS-R items ({span(skipped)}; "
                           "e.g. original-ALSFRS-only visits)")


def _sum_items(table, i, items, s, cols, draft) -> tuple[float | None, str]:
    total = 0.0
    for item in _ITEMS:
        values = []
        for c in items.get(item, []):
            x, status = parse_number(table.rows[i][table.header.index(c)])
            if status == "bad" or (status == "ok" and not 0 <= x <= 4):
                o = (table.label, table.lines[i], {**cols, item: c})
                draft.problems.append(f"{v.where(o, item, s)}: expected an ALSFRS-R item score "
                                      f"0-4, found '{table.rows[i][table.header.index(c)]}'")
                return None, ""
            if status == "ok":
                values.append(x)
        if not values:
            return None, ""
        total += values[0]
    return total, "Q1..R3 (sum)"


def _labs(table: RawTable, mapping: Mapping, lab_map: Mapping, draft: Draft) -> None:
    sc, subj = _subjects(table, mapping, draft)
    cols = _required(table, mapping, draft, name="Test_Name", value="Test_Result",
                     time="Laboratory_Delta")
    if sc is None or len(cols) < 3:
        return
    cols["subject"] = sc
    ucol = _col(table, mapping, "Test_Unit")
    if ucol:
        cols["unit"] = ucol
    jn, jv, jt = (table.header.index(cols[k]) for k in ("name", "value", "time"))
    ju = table.header.index(ucol) if ucol else None
    unmapped: dict[str, int] = {}
    missing, no_unit = [], {}
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        row = table.rows[i]
        entry = lab_map.get(normalise_name(row[jn]))
        if entry is None:
            unmapped[row[jn]] = unmapped.get(row[jn], 0) + 1
            continue
        name, unit = entry
        o = (table.label, line, cols)
        t, status = parse_number(row[jt])
        if status != "ok":
            draft.problems.append(f"{v.where(o, 'time', s)}: expected a number, found "
                                  f"{'an empty cell' if not row[jt] else repr(row[jt])}")
            draft.excuse.add(s)
            continue
        value, cens, vstatus = parse_value(row[jv])
        if vstatus == "missing":
            missing.append(line)
            continue
        if vstatus == "bad":
            draft.problems.append(f"{v.where(o, 'value', s)}: expected a number (or '<limit'), "
                                  f"found '{row[jv]}'")
            draft.excuse.add(s)
            continue
        given = row[ju].strip() if ju is not None else ""
        factor = 1.0
        if unit and given:
            factor = concentration_factor(given, unit)
            if factor is None:
                draft.problems.append(
                    f"{v.where(o, 'unit', s)}: cannot convert '{given}' to {unit} for "
                    f"{name} ({row[jn]}); expected a known unit, or pass lab_map with the "
                    "unit of the file")
                draft.excuse.add(s)
                continue
        elif unit and not given:
            no_unit[name] = no_unit.get(name, 0) + 1
        draft.add_obs(s, t, name, value * factor, cens, value * factor if cens else None, o)
        if unit:
            draft.units.setdefault(name, unit)
        elif given:
            draft.units.setdefault(name, given)
    if unmapped:
        top = sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{k or '(empty)'} ({n})" for k, n in top[:10])
        draft.notes.append(f"{table.label}: skipped {sum(unmapped.values())} row(s) of "
                           f"{len(unmapped)} test(s) not in the lab map: {shown}"
                           + (", ..." if len(top) > 10 else ""))
    if missing:
        draft.notes.append(f"{table.label}: skipped {len(missing)} mapped row(s) with an empty "
                           f"Test_Result ({span(missing)})")
    for name, k in no_unit.items():
        draft.notes.append(f"{table.label}: {k} {name} row(s) without Test_Unit; assumed "
                           f"{draft.units.get(name, 'the default unit')}")


def _dedupe(draft: Draft) -> None:
    """Drop exact duplicate measurements (same subject, time, observable, value), noted."""
    seen: set[tuple] = set()
    keep, dropped = [], []
    for i, key in enumerate(zip(draft.obs["subject"], draft.obs["time"], draft.obs["observable"],
                                draft.obs["value"], draft.obs["cens"], strict=True)):
        if key in seen:
            dropped.append(draft.obs_origin[i])
        else:
            seen.add(key)
            keep.append(i)
    if dropped:
        for k in draft.obs:
            draft.obs[k] = [draft.obs[k][i] for i in keep]
        draft.obs_origin = [draft.obs_origin[i] for i in keep]
        draft.notes.append(f"dropped {len(dropped)} exact duplicate measurement(s): "
                           + "; ".join(v.where(o) for o in dropped[:5])
                           + ("; ..." if len(dropped) > 5 else ""))


def _deaths(table: RawTable, mapping: Mapping, draft: Draft, last: Mapping) -> None:
    sc, subj = _subjects(table, mapping, draft)
    cols = _required(table, mapping, draft, died="Subject_Died")
    if sc is None or "died" not in cols:
        return
    cols["subject"] = sc
    dcol = _col(table, mapping, "Death_Days")
    if dcol:
        cols["time"] = dcol
    days = (v.parse_numbers(table, dcol, draft.problems, canonical="time", subjects=subj,
                            required=False, columns=cols) if dcol else [None] * len(table))
    at_last = []
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        o = (table.label, line, cols)
        text = table.rows[i][table.header.index(cols["died"])].strip()
        died = text.lower()
        if died in _YES:
            if days[i] is None:
                draft.problems.append(f"{v.where(o, 'time', s)}: expected Death_Days for a "
                                      "subject who died, found an empty cell")
                continue
            draft.add_event(s, days[i], "death", o)
        elif died in _NO or (not died and days[i] is None):
            if days[i] is not None:
                draft.add_event(s, days[i], "censored", o)
            elif s in last:
                draft.add_event(s, last[s], "censored", o)
                at_last.append(s)
        else:
            draft.problems.append(f"{v.where(o, 'died', s)}: expected Yes or No, found "
                                  f"{'an empty cell' if not text else repr(text)}")
    if at_last:
        draft.notes.append(f"{table.label}: {len(at_last)} survivor(s) without Death_Days "
                           "censored at their last observation")


def _covariate_value(text: str):
    x, status = parse_number(text)
    return (x if status == "ok" else text.strip()), status


def _demographics(table: RawTable, mapping: Mapping, draft: Draft) -> None:
    sc, subj = _subjects(table, mapping, draft)
    if sc is None:
        return
    age = _col(table, mapping, "Age")
    sex = _col(table, mapping, "Sex")
    dob = _col(table, mapping, "Date_of_Birth")
    delta = _col(table, mapping, "Demographics_Delta")
    rename = {c: n for c, n in ((age, "age"), (sex, "sex")) if c}
    from_dob = 0
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        row = dict(zip(table.header, table.rows[i], strict=True))
        for c, text in row.items():
            if c in (sc, dob, delta) or not text.strip():
                continue
            name = rename.get(c, c)
            value, status = _covariate_value(text)
            o = (table.label, line, {"subject": sc, name: c})
            if name == "age" and status != "ok":
                draft.problems.append(f"{v.where(o, name, s)}: expected an age in years, "
                                      f"found '{text}'")
                continue
            if name == "sex":
                value = str(value).lower()
            draft.set_covariate(s, name, value, o)
        if dob and "age" not in draft.covariates.get(s, {}):
            x, status = parse_number(row[dob])
            if status == "ok":
                # PRO-ACT stores birth as a (negative) day offset from enrolment.
                draft.set_covariate(s, "age", -x / 365.25, (table.label, line, {"age": dob}))
                from_dob += 1
    if from_dob:
        draft.notes.append(f"{table.label}: age from Date_of_Birth (days / 365.25) for "
                           f"{from_dob} subject(s) without Age")
    if delta:
        draft.notes.append(f"{table.label}: column '{delta}' (form date) not used")


def _history(table: RawTable, mapping: Mapping, draft: Draft) -> None:
    sc, subj = _subjects(table, mapping, draft)
    if sc is None:
        return
    fields = {"site_of_onset": _col(table, mapping, "Site_of_Onset"),
              "onset_time": _col(table, mapping, "Onset_Delta"),
              "diagnosis_time": _col(table, mapping, "Diagnosis_Delta")}
    fields = {k: c for k, c in fields.items() if c}
    merged: dict[str, dict[str, tuple[Any, Any]]] = {}
    conflicts = 0
    for i, (s, line) in enumerate(zip(subj, table.lines, strict=True)):
        for name, c in fields.items():
            text = table.rows[i][table.header.index(c)]
            if not text.strip():
                continue
            o = (table.label, line, {"subject": sc, name: c})
            if name == "site_of_onset":
                value = re.sub(r"^onset\s*:\s*", "", text.strip(), flags=re.I).lower()
            else:
                value, status = parse_number(text)
                if status != "ok":
                    draft.problems.append(f"{v.where(o, name, s)}: expected a day offset, "
                                          f"found '{text}'")
                    continue
            row = merged.setdefault(s, {})
            if name in row and row[name][0] != value:
                conflicts += 1
                continue
            row.setdefault(name, (value, o))
    for s, row in merged.items():
        for name, (value, o) in row.items():
            draft.set_covariate(s, name, value, o)
        if "onset_time" in row and "diagnosis_time" in row:
            draft.set_covariate(s, "diagnostic_delay",
                                row["diagnosis_time"][0] - row["onset_time"][0],
                                row["diagnosis_time"][1])
    other = [h for h in table.header if h != sc and h not in fields.values()]
    if other:
        draft.notes.append(f"{table.label}: columns not used: " + ", ".join(other))
    if conflicts:
        draft.notes.append(f"{table.label}: {conflicts} conflicting value(s) across rows of "
                           "the same subject; kept the first")


def _drop_unobserved(draft: Draft, observed: set[str]) -> None:
    gone = sorted({s for s in draft.covariates if s not in observed}
                  | {s for s in draft.events["subject"] if s not in observed})
    if not gone:
        return
    for s in gone:
        draft.covariates.pop(s, None)
        draft.cov_origin.pop(s, None)
    keep = [i for i, s in enumerate(draft.events["subject"]) if s in observed]
    for k in draft.events:
        draft.events[k] = [draft.events[k][i] for i in keep]
    draft.event_origin = [draft.event_origin[i] for i in keep]
    draft.notes.append(f"dropped {len(gone)} subject(s) without observations (only "
                       f"demographics, history or death data): {', '.join(gone[:10])}"
                       + (", ..." if len(gone) > 10 else ""))


# ------------------------------------------------------------------------------- writing


def _days(x: float, f: float):
    d = x * f
    r = round(d)
    # Undo the float error of a day -> month -> day round trip, so whole days stay whole.
    return float(r) if abs(d - r) <= 1e-9 * max(1.0, abs(d)) else d


def write(cohort: Cohort, folder: Path) -> list[Path]:
    """Write ``cohort`` as a PRO-ACT-shaped folder (ALSFRS, LABS, DEATHDATA, DEMOGRAPHICS,
    ALSHISTORY and a ``cohort.toml``)."""
    folder = Path(folder)
    problems = []
    if len(cohort.doses["subject"]):
        problems.append(f"{folder}: PRO-ACT exports cannot hold doses; use format 'long' or "
                        "'nonmem'")
    if len(cohort.time_varying["subject"]):
        problems.append(f"{folder}: PRO-ACT exports cannot hold time-varying covariates; use "
                        "format 'long' or 'nonmem'")
    bad = sorted({str(e) for e in cohort.events["event"]} - {"death", "censored"})
    if bad:
        problems.append(f"{folder}: PRO-ACT DEATHDATA holds deaths only, found events "
                        + ", ".join(bad))
    v.raise_if_problems(problems, f"{folder}: cannot write PRO-ACT")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create folder ({exc.strerror})") from exc
    f = time_factor(cohort.time_unit, "day")
    obs = cohort.observations()
    units = cohort.units
    written = []
    fr, labs = [], []
    lab_map: dict[str, list[str]] = {}
    for s, t, o, x, c in zip(obs["subject"], obs["time"], obs["observable"], obs["value"],
                             obs["cens"], strict=True):
        if v.is_alsfrs(str(o)):
            fr.append([s, _days(t, f), x])
        else:
            cell = x if c == 0 else ("<" if c == 1 else ">") + fmt_number(x)
            labs.append([s, str(o), cell, units.get(str(o), ""), _days(t, f)])
            if DEFAULT_LAB_MAP.get(normalise_name(str(o)), (None,))[0] != str(o):
                lab_map[str(o)] = [str(o), units.get(str(o), "")]
    p = folder / "PROACT_ALSFRS.csv"
    _write_table(p, ["subject_id", "ALSFRS_Delta", "ALSFRS_R_Total"], fr)
    written.append(p)
    if labs:
        p = folder / "PROACT_LABS.csv"
        _write_table(p, ["subject_id", "Test_Name", "Test_Result", "Test_Unit",
                         "Laboratory_Delta"], labs)
        written.append(p)
    ev = cohort.events
    if len(ev["subject"]):
        p = folder / "PROACT_DEATHDATA.csv"
        _write_table(p, ["subject_id", "Subject_Died", "Death_Days"],
                     ([s, "Yes" if e == "death" else "No", _days(t, f)]
                      for s, t, e in zip(ev["subject"], ev["time"], ev["event"], strict=True)))
        written.append(p)
    cov = cohort.covariates
    history = ("site_of_onset", "onset_time", "diagnosis_time")
    demo = [n for n in cohort.covariate_names if n not in history and n not in ("age", "sex")]

    def demo_cell(r, n):
        x = r.get(n)
        if n == "diagnostic_delay" and "onset_time" in r and "diagnosis_time" in r:
            return None  # the reader derives it from ALSHISTORY
        # Time covariates are converted with the times on reading, so write them in days.
        return _days(x, f) if isinstance(x, float) and _is_time_covariate(n) else x

    if any(("age" in r or "sex" in r or any(n in r for n in demo)) for r in cov.values()):
        p = folder / "PROACT_DEMOGRAPHICS.csv"
        rows = []
        for s in cohort.subjects:
            r = cov.get(s, {})
            sex = r.get("sex")
            rows.append([s, r.get("age"), sex.capitalize() if isinstance(sex, str) else sex,
                         *(demo_cell(r, n) for n in demo)])
        _write_table(p, ["subject_id", "Age", "Sex", *demo], rows)
        written.append(p)
    if any(n in r for r in cov.values() for n in history[:3]):
        p = folder / "PROACT_ALSHISTORY.csv"
        rows = []
        for s in cohort.subjects:
            r = cov.get(s, {})
            site = r.get("site_of_onset")
            rows.append([
                s,
                f"Onset: {site[:1].upper()}{site[1:]}" if isinstance(site, str) else site,
                *(_days(r[n], f) if isinstance(r.get(n), float) else None
                  for n in ("onset_time", "diagnosis_time")),
            ])
        _write_table(p, ["subject_id", "Site_of_Onset", "Onset_Delta", "Diagnosis_Delta"],
                     rows)
        written.append(p)
    doc: dict[str, Any] = {"format": "proact", "time_unit": "day",
                           "time_origin": cohort.time_origin}
    if units:
        doc["units"] = units
    if lab_map:
        doc["lab_map"] = lab_map
    write_toml(folder / _SIDECAR, doc, "PRO-ACT-shaped export written by "
                                       "progression.write_cohort")
    written.append(folder / _SIDECAR)
    return written
