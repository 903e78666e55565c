"""NONMEM-style event tables with a TOML sidecar of column roles (private; see readers).

Record semantics follow NONMEM (and pharmpy's datainfo for the sidecar):

* ``EVID`` 0 observation, 1 dose, 2 other (covariate change), 3 reset, 4 reset and dose.
  Without an EVID column a row with a non-zero ``AMT`` is a dose and any other row an
  observation (``MDV`` 1 rows: "other").
* ``MDV`` 1 marks a row without a usable DV; an EVID 0 row with MDV 1 is skipped and noted.
  Without an MDV column it is derived (1 for every non-observation row).
* ``CENS`` 1: the value is below ``LIMIT`` (left-censored, e.g. under the LLOQ); -1: above.
* ``DVID`` selects the observable through the sidecar's ``[dvid]`` table; without DVID every
  DV is the observable named by the sidecar key ``observable`` (default ``"DV"``).
* ``CMT`` names the dose target, by number through ``[cmt]`` or directly as text. A dose
  without one (no CMT column, or ``.``) goes to the sidecar's ``default_cmt`` (a number,
  mapped through ``[cmt]``, or a state name); without that, NONMEM's rule: compartment 1,
  the default dose compartment (mapped through ``[cmt]``), noted.
* Fields are separated by commas, or by blanks for NONMEM's own ``.dta``/``.txt`` files
  (detected from the first line, or the sidecar's ``delimiter = "whitespace"``).
* ``ADDL``/``II`` repeat a dose (expanded into one record per dose, noted).
* ``SS`` 1 with ``II`` > 0 is a steady-state dose: the states at its time are the periodic
  steady state of the dose given every ``II`` (NONMEM resets the system first; so does the
  simulator). With ``ADDL`` the additional doses follow the steady state (the first record
  carries ``ss`` 1 and ``ii``, the expanded ones are plain doses). ``SS`` 2 (superposition onto
  the current state), ``SS`` on a reset (EVID 3), a steady state without ``II`` > 0 and
  NONMEM's constant-infusion steady state (``AMT`` 0, ``RATE`` > 0) are refused by name.
* ``.`` (and an empty cell) is a missing value. Rows must be grouped by ID, times
  non-decreasing within an ID (NONMEM reads a returning ID as a new individual).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from progression.errors import DataError

from . import validation as v
from ._common import SIDE_TABLES, Draft, write_side_tables, write_toml
from ._csvio import MISSING, RawTable, parse_number, span, write_table
from .cohort import Cohort

__all__ = ["read", "write", "ROLES", "SIDECAR_KEYS"]

SIDECAR_KEYS = ("format", "time_unit", "time_origin", "units", "allow_negative_time",
                *SIDE_TABLES, "columns",
                "dvid", "cmt", "subjects", "observable", "delimiter", "default_cmt")

ROLES = ("id", "time", "dv", "amount", "evid", "mdv", "compartment", "dvid", "cens", "limit",
         "rate", "duration", "addl", "ii", "ss", "observable", "covariate", "tv_covariate",
         "ignore", "sd", "condition")

_STANDARD = {"id": "id", "time": "time", "dv": "dv", "amt": "amount", "evid": "evid",
             "mdv": "mdv", "cmt": "compartment", "dvid": "dvid", "cens": "cens",
             "limit": "limit", "rate": "rate", "dur": "duration", "addl": "addl", "ii": "ii",
             "ss": "ss", "ytype": "dvid"}

# Canonical column names used in messages, per role.
_CANONICAL = {"id": "subject", "time": "time", "dv": "value", "amount": "amount",
              "evid": "evid", "mdv": "mdv", "compartment": "target", "dvid": "observable",
              "observable": "observable", "cens": "cens", "limit": "limit", "rate": "rate",
              "duration": "duration", "addl": "addl", "ii": "ii", "ss": "ss", "sd": "sd",
              "condition": "condition"}

_SPEC_KEYS = ("role", "unit", "categories", "name", "description")


def _id_text(text: str) -> str:
    value, status = parse_number(text)
    if status == "ok" and value.is_integer():
        return str(int(value))
    return text.strip()


def _roles(table: RawTable, doc: Mapping, label: str, draft: Draft):
    """Column -> (role, spec) for every header column; problems for bad roles."""
    declared = doc.get("columns", {})
    if not isinstance(declared, Mapping):
        draft.problems.append(f"{label}, key 'columns': expected a table of column = role, "
                              f"found {declared!r}")
        declared = {}
    roles: dict[str, tuple[str, dict]] = {}
    inferred: list[str] = []
    for col, spec in declared.items():
        if isinstance(spec, str):
            spec = {"role": spec}
        if not isinstance(spec, Mapping):
            draft.problems.append(f"{label}, columns.{col}: expected a role or a table with "
                                  f"'role', found {spec!r}")
            continue
        v.check_unknown_keys(f"{label}, columns.{col}", spec, _SPEC_KEYS, draft.problems)
        role = spec.get("role", "covariate")
        if role not in ROLES:
            v.check_unknown_keys(f"{label}, columns.{col}", [role], ROLES, draft.problems,
                                 what="role")
            continue
        if col not in table.header:
            draft.problems.append(
                f"{label}, columns.{col}: the sidecar names column '{col}', but "
                f"{table.label} has no such column; found " + ", ".join(
                    f"'{h}'" for h in table.header) + v._suggest(col, table.header))
            continue
        roles[col] = (role, dict(spec))
    for col in table.header:
        if col not in roles:
            role = _STANDARD.get(col.lower())
            if role is None:
                role = "covariate"
                inferred.append(col)
            roles[col] = (role, {"role": role, "_inferred": True})
    by_role: dict[str, list[str]] = {}
    for col, (role, _) in roles.items():
        by_role.setdefault(role, []).append(col)
    for role, cols in by_role.items():
        if role not in ("covariate", "tv_covariate", "ignore") and len(cols) > 1:
            draft.problems.append(f"{label}: expected one column with role '{role}', found "
                                  + ", ".join(f"'{c}'" for c in cols))
    if "dvid" in by_role and "observable" in by_role:
        draft.problems.append(f"{label}: expected a 'dvid' or an 'observable' column, "
                              "found both")
    return roles, by_role, inferred


def _map_table(doc: Mapping, key: str, label: str, draft: Draft) -> dict[str, Any]:
    m = doc.get(key, {})
    if not isinstance(m, Mapping):
        draft.problems.append(f"{label}, key '{key}': expected a table, found {m!r}")
        return {}
    return {_id_text(str(k)): x for k, x in m.items()}


def read(table: RawTable, draft: Draft, doc: Mapping, label: str, *,
         allow_negative_time: bool = False) -> None:
    """Fill ``draft`` from a NONMEM-style table (see the module docstring)."""
    problems = draft.problems
    roles, by_role, inferred = _roles(table, doc, label, draft)
    col = {r: cs[0] for r, cs in by_role.items() if cs}
    cols = {_CANONICAL[r]: c for r, c in col.items() if r in _CANONICAL}
    declared = doc.get("columns", {}) if isinstance(doc.get("columns"), Mapping) else {}
    # Roles whose column the sidecar names but the file lacks were reported by _roles.
    named_missing = {(spec if isinstance(spec, str) else spec.get("role"))
                     for c, spec in declared.items()
                     if c not in table.header and isinstance(spec, str | Mapping)}
    for role, name in (("id", "ID"), ("time", "TIME"), ("dv", "DV")):
        if role not in col and role not in named_missing:
            problems.append(
                f"{table.label}, row {table.header_line}, column '{name}': expected a column "
                f"with role '{role}' ('{name}', or named in the sidecar's [columns]), found "
                + ", ".join(f"'{h}'" for h in table.header) + v._suggest(name, table.header))
    if any(r not in col for r in ("id", "time", "dv")):
        draft.stop = True  # every row would fail for the same reason: report it once
        return

    dvid_map = _map_table(doc, "dvid", label, draft)
    cmt_map = _map_table(doc, "cmt", label, draft)
    default_target = _default_cmt(doc, cmt_map, label, draft)
    subject_map = _map_table(doc, "subjects", label, draft)
    ids = [_id_text(x) for x in table.column(col["id"])]
    subj = [str(subject_map.get(i, i)) for i in ids]
    n = len(table)

    def num(role, **kw):
        if role not in col:
            return [None] * n
        return v.parse_numbers(table, col[role], problems, canonical=_CANONICAL[role],
                               subjects=subj, columns=cols, required=kw.pop("required", False),
                               **kw)

    times = num("time", required=True)
    evid = num("evid", integer=True, allowed=(0, 1, 2, 3, 4), required=True)
    mdv = num("mdv", allowed=(0, 1))
    amt = num("amount")
    dv = num("dv")
    cens = num("cens", allowed=(0, 1, -1))
    limit = num("limit")
    rate, dur = num("rate"), num("duration")
    addl, ii, ss = num("addl", integer=True), num("ii"), num("ss")
    dvid = num("dvid", integer=True) if "dvid" in col else [None] * n
    # Each value's known SD and experimental condition: roles a sidecar declares (never
    # inferred from a header, where SD may be a covariate).
    sd = num("sd")
    condition = ([table.rows[i][table.header.index(col["condition"])].strip() for i in range(n)]
                 if "condition" in col else [""] * n)
    condition = ["" if c in (".", "") else _id_text(c) for c in condition]
    origins = [(table.label, line, cols) for line in table.lines]

    # Derive EVID and MDV the way NONMEM does when the columns are absent.
    if "evid" not in col:
        evid = [1 if a not in (None, 0) else (2 if m == 1 else 0) for a, m in
                zip(amt, mdv, strict=True)]
    if "mdv" not in col:
        mdv = [0 if e == 0 else 1 for e in evid]

    v.check_subject_ids(subj, origins, problems)
    v.check_times_sorted(subj, times, origins, problems)
    # Bad DV cells were reported while parsing, and a censored row may leave DV empty (its
    # LIMIT is the value): neither should be reported again as a missing DV.
    dv_col = table.header.index(col["dv"])
    dv_seen = [x if x is not None or table.rows[i][dv_col].strip().lower() in MISSING
               and cens[i] in (None, 0) else 0.0 for i, x in enumerate(dv)]
    v.check_evid_mdv(subj, evid, mdv, amt, dv_seen, origins, problems, has_mdv="mdv" in col)

    skipped_mdv, other, expanded, no_cmt = [], [], 0, []
    single = str(doc.get("observable", "DV"))
    if "dvid" not in col and "observable" not in col and "observable" not in doc:
        draft.notes.append(f"{table.label}: no DVID column and no 'observable' in a sidecar; "
                           "observations named 'DV'")
    unknown_dvid: dict[str, list[int]] = {}
    for i in range(n):
        s, t, e, o = subj[i], times[i], evid[i], origins[i]
        if t is None or e is None:
            draft.excuse.add(s)
            continue
        if e == 0:
            if mdv[i] == 1:
                skipped_mdv.append(table.lines[i])
                continue
            if "dvid" in col:
                if dvid[i] is None:
                    problems.append(f"{v.where(o, 'observable', s)}: expected a DVID on an "
                                    "observation row, found none")
                    continue
                key = str(int(dvid[i]))
                entry = dvid_map.get(key)
                if entry is None:
                    unknown_dvid.setdefault(key, []).append(i)
                    continue
                name = entry.get("observable") if isinstance(entry, Mapping) else str(entry)
            elif "observable" in col:
                name = table.rows[i][table.header.index(col["observable"])]
            else:
                name = single
            c = 0 if cens[i] is None else int(cens[i])
            if dv[i] is None and c == 0:
                draft.excuse.add(s)
                continue  # reported above
            draft.add_obs(s, t, name, dv[i], c, limit[i], o, sd[i], condition[i])
        elif e in (1, 4):
            if amt[i] is None:
                continue  # reported by check_evid_mdv
            target = _target(table, i, col, cmt_map, None)
            if target is None:
                target = default_target
                no_cmt.append(table.lines[i])
            # SS / II are checked by the cohort (a steady state needs II > 0, ...).
            draft.add_dose(s, t, amt[i], target, rate[i], dur[i], e == 4, o, ss=ss[i],
                           ii=ii[i])
            if addl[i] not in (None, 0):
                if ii[i] in (None, 0):
                    problems.append(f"{v.where(o, 'ii', s)}: expected an interval II > 0 for "
                                    f"ADDL {addl[i]:g} additional doses, found none")
                    continue
                for k in range(1, int(addl[i]) + 1):
                    draft.add_dose(s, t + k * ii[i], amt[i], target, rate[i], dur[i], False, o)
                expanded += int(addl[i])
        elif e == 2:
            other.append(table.lines[i])
        elif e == 3:
            # SS on a reset is refused by the cohort (nothing to repeat)
            draft.add_dose(s, t, 0.0, "", None, None, True, o, ss=ss[i], ii=ii[i])
    for key, idx in unknown_dvid.items():
        more = f" (and {len(idx) - 1} more rows)" if len(idx) > 1 else ""
        known = ", ".join(f"{k} = '{x}'" for k, x in dvid_map.items()) or "none"
        problems.append(f"{v.where(origins[idx[0]], 'observable', subj[idx[0]])}{more}: "
                        f"DVID {key} is not in the sidecar's [dvid] table; expected one of: "
                        f"{known}")
    if skipped_mdv:
        draft.notes.append(f"{table.label}: skipped {len(skipped_mdv)} observation row(s) with "
                           f"MDV 1 ({span(skipped_mdv)}): no usable DV")
    if other:
        draft.notes.append(f"{table.label}: {len(other)} EVID 2 row(s) ({span(other)}) "
                           "carry covariate changes only")
    if no_cmt:
        where = "no CMT column" if "compartment" not in col else f"no CMT ({span(no_cmt)})"
        if "default_cmt" in doc:
            why = "the sidecar's default_cmt"
        else:
            why = ("NONMEM's default dose compartment, CMT 1; set default_cmt in the sidecar "
                   "to choose another")
        draft.notes.append(f"{table.label}: {len(no_cmt)} dose record(s) with {where}: dosed "
                           f"into '{default_target}' ({why})")
    if expanded:
        draft.notes.append(f"{table.label}: expanded ADDL/II into {expanded} additional dose "
                           "record(s)")
    for key, entry in dvid_map.items():
        if isinstance(entry, Mapping):
            v.check_unknown_keys(f"{label}, dvid.{key}", entry, ("observable", "unit"),
                                 problems)
            if "unit" in entry and "observable" in entry:
                name, unit = str(entry["observable"]), str(entry["unit"])
                if draft.units.get(name, unit) != unit:
                    problems.append(f"{label}, dvid.{key}, key 'unit': says '{unit}' for "
                                    f"'{name}' but [units] says '{draft.units[name]}'; "
                                    "expected one unit per observable")
                draft.units[name] = unit
    _covariates(table, draft, roles, subj, evid, times, origins, inferred)


def _default_cmt(doc: Mapping, cmt_map: Mapping, label: str, draft: Draft) -> str:
    """The sidecar's ``default_cmt`` as a dose target; NONMEM's default dose compartment,
    number 1, when not given (through ``[cmt]``, so a model file's ``cmt = 1`` state)."""
    if "default_cmt" not in doc:
        return str(cmt_map.get("1", "1"))
    x = doc["default_cmt"]
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, bool) or not isinstance(x, int | str) or \
            (isinstance(x, int) and x < 1) or (isinstance(x, str) and not x.strip()):
        draft.problems.append(f"{label}, key 'default_cmt': expected a compartment number >= 1 "
                              f"or a dosing state's name, found {x!r}")
        return ""
    key = _id_text(str(x))
    return str(cmt_map.get(key, key))


def _target(table: RawTable, i: int, col: Mapping[str, str], cmt_map: Mapping,
            default: str | None = "") -> str | None:
    if "compartment" not in col:
        return default
    text = table.rows[i][table.header.index(col["compartment"])].strip()
    value, status = parse_number(text)
    if status == "missing":
        return default
    key = _id_text(text)
    return str(cmt_map.get(key, key))


def _covariates(table, draft, roles, subj, evid, times, origins, inferred) -> None:
    problems = draft.problems
    for column, (role, spec) in roles.items():
        if role not in ("covariate", "tv_covariate"):
            continue
        name = str(spec.get("name", column))
        cats = spec.get("categories")
        if cats is not None and not isinstance(cats, Mapping):
            problems.append(f"{table.label}, column '{column}': expected categories as a "
                            f"table code = label, found {cats!r}")
            cats = None
        if cats and role == "tv_covariate":
            problems.append(f"{table.label}, column '{column}': time-varying covariates must "
                            "be numbers; expected no categories, found some")
            cats = None
        cats = {_id_text(str(k)): str(x) for k, x in (cats or {}).items()}
        j = table.header.index(column)
        values: list = []
        for i, row in enumerate(table.rows):
            text = row[j]
            value, status = parse_number(text)
            ccols = {**origins[i][2], name: column}
            if status == "missing":
                values.append(None)
            elif cats:
                key = _id_text(text)
                if key not in cats:
                    problems.append(
                        f"{v.where((table.label, table.lines[i], ccols), name, subj[i])}: "
                        f"expected one of the category codes {', '.join(cats)}, found '{text}'")
                    values.append(None)
                else:
                    values.append(cats[key])
            elif status == "bad":
                if role == "tv_covariate":
                    problems.append(
                        f"{v.where((table.label, table.lines[i], ccols), name, subj[i])}: "
                        f"expected a number, found '{text}'")
                    values.append(None)
                else:
                    values.append(text.strip())
            else:
                values.append(value)
        per_subject: dict[str, set] = {}
        for s, x in zip(subj, values, strict=True):
            if x is not None:
                per_subject.setdefault(s, set()).add(x)
        varies = any(len(xs) > 1 for xs in per_subject.values())
        if role == "covariate" and varies and spec.get("_inferred"):
            role = "tv_covariate"
            draft.notes.append(f"{table.label}: column '{column}' varies within subjects; read "
                               "as a time-varying covariate")
        if role == "covariate":
            for i, (s, x) in enumerate(zip(subj, values, strict=True)):
                if x is not None:
                    draft.set_covariate(s, name, x, (table.label, table.lines[i],
                                                     {**origins[i][2], name: column}),
                                        hint="; declare it role = 'tv_covariate' in the "
                                             "sidecar if it changes in time")
        else:
            last: dict[str, Any] = {}
            for i, (s, x) in enumerate(zip(subj, values, strict=True)):
                if x is None or times[i] is None or not isinstance(x, float):
                    continue
                if evid[i] == 2 or last.get(s) != x:
                    draft.add_tv(s, times[i], name, x, (table.label, table.lines[i],
                                                        {**origins[i][2], "name": column,
                                                         "value": column}))
                    last[s] = x
    if inferred:
        draft.notes.append(f"{table.label}: column(s) " + ", ".join(f"'{c}'" for c in inferred)
                           + " not named in a sidecar; read as covariates")


# ------------------------------------------------------------------------------- writing


def write(cohort: Cohort, path: Path) -> list[Path]:
    """Write a NONMEM-style table, its sidecar and an events side table."""
    path = Path(path)
    stem = path.with_suffix("")
    subjects = cohort.subjects
    numeric = all(s.isdigit() and s == str(int(s)) and int(s) > 0 for s in subjects)
    ids = {s: (s if numeric else str(k)) for k, s in enumerate(subjects, start=1)}
    names = list(cohort.observables)
    dvid = {o: k for k, o in enumerate(names, start=1)}
    d = cohort.doses
    targets = sorted({str(t) for t in d["target"] if str(t)})
    cmt = {t: k for k, t in enumerate(targets, start=1)}
    covs = list(cohort.covariate_names)
    tv = cohort.time_varying
    tv_names = sorted(set(map(str, tv["name"])))
    standard = set(_STANDARD) | {"id", "time"}
    colname = {c: (c if c.lower() not in standard else f"COV_{c}") for c in
               (*covs, *tv_names)}
    cats: dict[str, dict[str, int]] = {}
    cov = cohort.covariates
    for c in covs:
        texts = sorted({x for row in cov.values() for k, x in row.items()
                        if k == c and isinstance(x, str)})
        if texts:
            if any(isinstance(row.get(c), float) for row in cov.values()):
                raise DataError(f"{path}: covariate '{c}' mixes numbers and text; NONMEM "
                                "columns must be numeric")
            cats[c] = {t: k for k, t in enumerate(texts)}
    obs = cohort.observations()
    censored = bool((obs["cens"] != 0).any())
    infusion = bool(np.isfinite(d["rate"]).any() or np.isfinite(d["duration"]).any())
    steady = "ss" in d and bool((d["ss"] != 0).any() or np.isfinite(d["ii"]).any())
    header = ["ID", "TIME", "EVID", "MDV", "DV", "DVID", "AMT", "CMT"]
    header += ["RATE", "DUR"] if infusion else []
    header += ["SS", "II"] if steady else []
    header += ["CENS", "LIMIT"] if censored else []
    extra = {k: name for k, name in (("sd", "SD"), ("condition", "CONDITION")) if k in obs}
    header += list(extra.values())
    header += [colname[c] for c in (*covs, *tv_names)]

    records = []  # (subject rank, time, kind order, row)
    rank = {s: k for k, s in enumerate(subjects)}
    for i in range(len(tv["subject"])):
        records.append((str(tv["subject"][i]), float(tv["time"][i]), 0,
                        {"EVID": 2, "MDV": 1, "_tv": (str(tv["name"][i]),
                                                      float(tv["value"][i]))}))
    for i in range(len(d["subject"])):
        reset, amount, target = bool(d["reset"][i]), float(d["amount"][i]), str(d["target"][i])
        e = 3 if reset and not target and amount == 0 else (4 if reset else 1)
        row = {"EVID": e, "MDV": 1, "AMT": amount, "CMT": cmt.get(target)}
        if infusion:
            row.update(RATE=float(d["rate"][i]), DUR=float(d["duration"][i]))
        if steady:
            row.update(SS=int(d["ss"][i]), II=float(d["ii"][i]))
        records.append((str(d["subject"][i]), float(d["time"][i]), 1, row))
    for i in range(len(obs["subject"])):
        row = {"EVID": 0, "MDV": 0, "DV": float(obs["value"][i]),
               "DVID": dvid[str(obs["observable"][i])]}
        if censored:
            row.update(CENS=int(obs["cens"][i]), LIMIT=float(obs["limit"][i]))
        if "sd" in extra:
            row["SD"] = float(obs["sd"][i])
        if "condition" in extra:
            row["CONDITION"] = str(obs["condition"][i]) or None
        records.append((str(obs["subject"][i]), float(obs["time"][i]), 2, row))
    records.sort(key=lambda r: (rank[r[0]], r[1], r[2]))

    rows, current, state = [], None, {}
    for s, t, _, rec in records:
        if s != current:
            current, state = s, {}
        if "_tv" in rec:
            state[rec["_tv"][0]] = rec["_tv"][1]
        out = {"ID": ids[s], "TIME": t, **{k: x for k, x in rec.items() if k != "_tv"}}
        for c in covs:
            x = cov.get(s, {}).get(c)
            out[colname[c]] = cats[c][x] if c in cats and x is not None else x
        for c in tv_names:
            out[colname[c]] = state.get(c)
        rows.append([_cell(out.get(h)) for h in header])
    write_table(path, header, rows)

    side = write_side_tables(cohort, stem, covariates=False, doses=False, time_varying=False)
    columns: dict[str, Any] = {"ID": "id", "TIME": "time", "EVID": "evid", "MDV": "mdv",
                               "DV": "dv", "DVID": "dvid", "AMT": "amount",
                               "CMT": "compartment"}
    if infusion:
        columns.update(RATE="rate", DUR="duration")
    if steady:
        columns.update(SS="ss", II="ii")
    if censored:
        columns.update(CENS="cens", LIMIT="limit")
    columns.update({name: k for k, name in extra.items()})
    for c in covs:
        spec: dict[str, Any] = {"role": "covariate"}
        if colname[c] != c:
            spec["name"] = c
        if c in cats:
            spec["categories"] = {str(k): t for t, k in cats[c].items()}
        columns[colname[c]] = spec
    for c in tv_names:
        columns[colname[c]] = ({"role": "tv_covariate", "name": c} if colname[c] != c
                               else "tv_covariate")
    units = cohort.units
    doc: dict[str, Any] = {"format": "nonmem", "time_unit": cohort.time_unit,
                           "time_origin": cohort.time_origin, **side, "columns": columns,
                           "dvid": {str(k): ({"observable": o, "unit": units[o]} if o in units
                                             else o) for o, k in dvid.items()}}
    if any(bool((t["time"] < 0).any()) for t in (obs, d, tv, cohort.events)):
        doc["allow_negative_time"] = True
    extra_units = {k: u for k, u in units.items() if k not in dvid}
    if extra_units:
        doc["units"] = extra_units
    if cmt:
        doc["cmt"] = {str(k): t for t, k in cmt.items()}
    if not numeric:
        doc["subjects"] = {ids[s]: s for s in subjects}
    sidecar = stem.with_suffix(".toml")
    write_toml(sidecar, doc, f"Sidecar of {path.name} (NONMEM-style), written by "
                             "progression.write_cohort")
    return [path, sidecar, *(path.parent / f for f in side.values())]


def _cell(x):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "."
    return x


