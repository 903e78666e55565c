"""Column-metadata files that other tools write, read as NONMEM-reader sidecars (private).

A NONMEM-style data file needs its column roles (which column is the subject, the time, the
dose amount, ...). progression's own sidecar is a TOML file (see :mod:`._nonmem`). Peers
write the same information in their project files; where that is cheap, it is read here and
turned into the equivalent TOML sidecar document, so that one reader does the rest.

Supported: the ``<DATAFILE>`` section of a **Monolix project** (``.mlxtran``, MonolixSuite
2018R1 and later), which names the data file and the use of each column::

    <DATAFILE>
    [FILEINFO]
    file = 'theophylline_data.csv'
    delimiter = comma
    header = {ID, TIME, AMT, CONC, WT, SEX}

    [CONTENT]
    ID = {use=identifier}
    TIME = {use=time}
    AMT = {use=amount}
    CONC = {use=observation, name=conc, type=continuous}
    WT = {use=covariate, type=continuous}
    SEX = {use=covariate, type=categorical}

``use=`` values map to the NONMEM reader's roles as in :data:`MONOLIX_USES` (Monolix's
column types are NONMEM's under other names: ADMINISTRATION ID is the dose compartment,
INFUSION DURATION is DUR, REGRESSOR a time-varying covariate). Several observation types
(``name={y1, y2}, yname={'1', '2'}`` with an ``observationtype`` column) become the
``[dvid]`` table. ``occasion`` columns are refused: occasions restart a subject's record, which
the reader has no place for. Everything else in the project (``<MODEL>``, ``<FIT>``,
``<PARAMETER>``, ``<MONOLIX>``) is not read. Monolix files do not state a time unit: pass
``time_unit=`` (or ``[data] time_unit`` in a fit config).

A line and a dose on the same row: Monolix reads a row with both a non-missing AMT and a DV
as a dose and an observation; the NONMEM reader reads it as a dose (NONMEM's rule), so such
files should carry an EVID/MDV column or separate rows.

Also supported: **pharmpy's** ``.datainfo`` (JSON, written beside the data file as
``<stem>.datainfo``; found there when no TOML sidecar is, or given as ``sidecar=``)::

    {"columns": [{"name": "ID", "type": "id"}, {"name": "TIME", "type": "idv", "unit": "h"},
                 {"name": "AMT", "type": "dose", "unit": "mg"}, {"name": "DV", "type": "dv"},
                 {"name": "WGT", "type": "covariate", "unit": "kg"}],
     "path": "pheno.csv", "separator": ","}

Its ``type`` values map as in :data:`PHARMPY_TYPES`; the ``idv`` column's unit is the time
unit, the ``dv`` column's unit the observable's; ``drop: true`` and type ``unknown`` columns
are not read (pharmpy does not use them either); ``categories`` given as ``{code: label}``
become category labels.

Other tools considered: nlmixr2 and PKNCA keep column roles in R code (a data frame's names
or a formula), not in a file; PEtab's measurement and condition tables have fixed column names
and no dose records. Neither needs a reader of its own.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from progression.errors import DataError

from . import validation as v
from ._common import load_sidecar

__all__ = ["MONOLIX_USES", "PHARMPY_TYPES", "find", "load", "monolix_data_path",
           "read_monolix", "read_datainfo"]

#: Monolix ``use=`` value -> role of the NONMEM reader (progression.data._nonmem.ROLES).
MONOLIX_USES = {
    "identifier": "id",
    "time": "time",
    "observation": "dv",
    "observationtype": "dvid",
    "amount": "amount",
    "administration": "compartment",
    "eventidentifier": "evid",
    "missingdependentvariable": "mdv",
    "censored": "cens",
    "limit": "limit",
    "rate": "rate",
    "infusiontime": "duration",
    "steadystate": "ss",
    "interdoseinterval": "ii",
    "additionaldose": "addl",
    "covariate": "covariate",
    "regressor": "tv_covariate",
    "ignore": "ignore",
}

#: pharmpy ``datainfo`` column type -> role of the NONMEM reader. ``admid`` (administration:
#: 1 oral, 2 IV) is the dose compartment when no ``compartment`` column is given.
PHARMPY_TYPES = {
    "id": "id",
    "idv": "time",
    "dv": "dv",
    "dvid": "dvid",
    "dose": "amount",
    "rate": "rate",
    "additional": "addl",
    "ii": "ii",
    "ss": "ss",
    "event": "evid",
    "mdv": "mdv",
    "compartment": "compartment",
    "admid": "compartment",
    "lloq": "limit",
    "blqdv": "cens",
    "covariate": "covariate",
    "unknown": "ignore",
}
_PHARMPY_SEPARATORS = {",": "comma", "\t": "tab", r"\t": "tab", r"\s+": "whitespace",
                       " ": "whitespace"}

# Monolix column types that exist but have no counterpart here, with the reason.
_UNSUPPORTED = {
    "occasion": "occasions (inter-occasion variability, time restarting per occasion) are not "
                "supported; drop the column or mark it use=ignore",
}

_DELIMITERS = {"comma": "comma", "tab": "tab", "space": "whitespace"}
_SPLIT = {"comma": ",", "tab": "\t"}
_SECTION = re.compile(r"^<\s*([A-Za-z_]+)\s*>$")
_SUBSECTION = re.compile(r"^\[\s*([A-Za-z_]+)\s*\]$")
_KEY = re.compile(r"^([^=\s]+)\s*=\s*(.*)$")


def load(path: Path | None, problems: list[str], data_path: Path | None = None) -> dict:
    """The sidecar document of ``path``: a TOML sidecar, or a Monolix project translated.

    Parameters
    ----------
    path : Path or None
        The sidecar; a name ending in ``.mlxtran`` is read as a Monolix project, anything
        else as progression's TOML sidecar. None: no sidecar (an empty document).
    problems : list of str
        Problems are appended here, each naming the file, the line and the column.
    data_path : Path, optional
        The data file read with it, whose header the project's columns are checked against.

    Returns
    -------
    dict
        The document the NONMEM reader understands (``format``, ``columns``, ``observable``
        or ``dvid``, ``delimiter``).
    """
    suffix = Path(path).suffix.lower() if path is not None else ""
    if suffix in (".mlxtran", ".datainfo"):
        before = len(problems)
        read = read_monolix if suffix == ".mlxtran" else read_datainfo
        doc = read(Path(path), problems, data_path)
        if len(problems) > before:
            # Reading the data with wrong or missing roles would add one consequence per row.
            v.raise_if_problems(problems, str(path))
        return doc
    return load_sidecar(path, problems)


def find(data_path: Path, sidecar) -> Path | None:
    """pharmpy's ``<stem>.datainfo`` beside ``data_path``, when no sidecar was given or found.

    Called only after progression's own TOML sidecar was looked for (that one wins).
    """
    if sidecar is not None and sidecar is not True:
        return None  # an explicit sidecar, or False: none
    candidate = Path(data_path).with_suffix(".datainfo")
    return candidate if candidate.is_file() and candidate != Path(data_path) else None


def monolix_data_path(path: Path) -> Path:
    """The data file a Monolix project names (``[FILEINFO] file``, relative to the project).

    Raises
    ------
    DataError
        The project cannot be read or names no data file.
    """
    path = Path(path)
    sections = _parse(path, problems := [])
    v.raise_if_problems(problems, str(path))
    fileinfo = sections.get("DATAFILE", {}).get("FILEINFO", {})
    entry = fileinfo.get("file")
    if entry is None or not isinstance(entry[1], str) or not entry[1].strip():
        raise DataError(f"{path}, <DATAFILE> [FILEINFO]: expected the data file as "
                        f"file = 'name.csv', found "
                        + ("no file entry" if entry is None else repr(entry[1])))
    return path.parent / entry[1].strip()


def read_monolix(path: Path, problems: list[str], data_path: Path | None = None) -> dict:
    """Translate a Monolix project's ``<DATAFILE>`` section into a NONMEM-reader sidecar.

    Parameters
    ----------
    path : Path
        The ``.mlxtran`` file.
    problems : list of str
        Every problem is appended (unknown ``use=``, a column the data file lacks, an
        unsupported observation type or delimiter), each naming the file, the line and the
        column.
    data_path : Path, optional
        The data file; its header (first line) is what the ``[CONTENT]`` columns must name.
        Without it, or if it cannot be read, the ``[FILEINFO] header`` list is used.

    Returns
    -------
    dict
        ``{"format": "nonmem", "columns": {...}, ...}``; empty if the file cannot be read.
    """
    path = Path(path)
    sections = _parse(path, problems)
    if not sections:
        return {}
    datafile = sections.get("DATAFILE")
    if datafile is None:
        problems.append(f"{path}: expected a <DATAFILE> section with [CONTENT] (the column "
                        "uses of the data), found none")
        return {}
    content = datafile.get("CONTENT")
    if not content:
        problems.append(f"{path}, <DATAFILE>: expected a [CONTENT] block naming each column's "
                        "use (ID = {use=identifier}, ...), found none")
        return {}
    fileinfo = datafile.get("FILEINFO", {})
    doc: dict[str, Any] = {"format": "nonmem"}

    delimiter = "comma"
    if "delimiter" in fileinfo:
        line, value = fileinfo["delimiter"]
        if not isinstance(value, str) or value.strip().lower() not in _DELIMITERS:
            problems.append(f"{path}, line {line}, [FILEINFO] delimiter: expected comma, tab "
                            f"or space (progression does not read ';'-separated files), "
                            f"found {_show(value)}")
        else:
            delimiter = value.strip().lower()
            doc["delimiter"] = _DELIMITERS[delimiter]

    header = _data_header(data_path, delimiter)
    where_header = f"the data file {data_path}"
    if header is None:
        listed = fileinfo.get("header", (None, None))[1]
        if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
            header, where_header = listed, f"the [FILEINFO] header of {path}"

    columns: dict[str, Any] = {}
    taken: dict[str, tuple[str, int]] = {}  # role -> (column, line) of single-use roles
    for col, (line, spec) in content.items():
        here = f"{path}, line {line}, [CONTENT] column '{col}'"
        if not isinstance(spec, dict) or "use" not in spec:
            problems.append(f"{here}: expected {{use=...}} (for example {{use=identifier}}), "
                            f"found {_show(spec)}")
            continue
        use = spec["use"]
        if not isinstance(use, str):
            problems.append(f"{here}: expected one use= value, found {_show(use)}")
            continue
        use_key = use.strip().lower()
        if use_key in _UNSUPPORTED:
            problems.append(f"{here}: use={use}: {_UNSUPPORTED[use_key]}")
            continue
        if use_key not in MONOLIX_USES:
            problems.append(f"{here}: unknown use={use}; expected one of "
                            + ", ".join(MONOLIX_USES) + v._suggest(use_key, MONOLIX_USES))
            continue
        if header is not None and col not in header:
            problems.append(f"{here}: {where_header} has no column '{col}'; found "
                            + ", ".join(f"'{h}'" for h in header) + v._suggest(col, header))
            continue
        role = MONOLIX_USES[use_key]
        if role in taken and role not in ("covariate", "tv_covariate", "ignore"):
            first, first_line = taken[role]
            problems.append(f"{here}: use={use} is given to column '{first}' too (line "
                            f"{first_line}); expected one column with this use")
            continue
        taken[role] = (col, line)
        if role == "dv":
            _observation(spec, here, doc, problems)
        columns[col] = role
    # Columns of the data that [CONTENT] leaves out are not used by Monolix: ignore them here
    # too, instead of guessing covariates from their names.
    for col in header or ():
        if col not in content:
            columns[col] = "ignore"
    doc["columns"] = columns
    if "dvid" in doc and "dvid" not in columns.values():
        problems.append(f"{path}, [CONTENT]: the observation column names several types "
                        f"({', '.join(doc['dvid'].values())}) but no column has "
                        "use=observationtype; expected one")
    return doc


def read_datainfo(path: Path, problems: list[str], data_path: Path | None = None) -> dict:
    """Translate pharmpy's ``.datainfo`` (JSON) into a NONMEM-reader sidecar.

    Parameters
    ----------
    path : Path
        The ``.datainfo`` file.
    problems : list of str
        Every problem is appended (not JSON, an unknown type, a column the data file lacks, a
        separator progression does not read, a time unit it does not know), each naming the
        file and the column.
    data_path : Path, optional
        The data file whose header the columns must name.

    Returns
    -------
    dict
        ``{"format": "nonmem", "columns": {...}, ...}``; empty if the file cannot be read.
    """
    import json

    path = Path(path)
    try:
        doc_in = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        problems.append(f"{path}: pharmpy datainfo file not found")
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: expected pharmpy datainfo (JSON), found text that is not "
                        f"valid JSON ({exc})")
        return {}
    columns_in = doc_in.get("columns") if isinstance(doc_in, dict) else None
    if not isinstance(columns_in, list) or not columns_in:
        problems.append(f"{path}: expected a JSON object with a list 'columns' of "
                        "{\"name\": ..., \"type\": ...}, found "
                        + ("none" if columns_in is None else repr(columns_in)[:60]))
        return {}
    doc: dict[str, Any] = {"format": "nonmem"}
    separator = doc_in.get("separator", ",")
    delimiter = _PHARMPY_SEPARATORS.get(separator) if isinstance(separator, str) else None
    if delimiter is None:
        problems.append(f"{path}, key 'separator': expected ',', '\\t' or '\\s+' (progression "
                        f"reads comma-, tab- or blank-separated files), found {separator!r}")
        delimiter = "comma"
    if delimiter != "comma":
        doc["delimiter"] = delimiter
    header = _data_header(data_path, {"comma": "comma", "tab": "tab",
                                      "whitespace": "space"}[delimiter])
    columns: dict[str, Any] = {}
    taken: dict[str, str] = {}
    has_cmt = any(isinstance(c, dict) and c.get("type") == "compartment" for c in columns_in)
    for k, col in enumerate(columns_in):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            problems.append(f"{path}, columns[{k}]: expected {{\"name\": ..., \"type\": ...}}, "
                            f"found {col!r}"[:200])
            continue
        name = col["name"]
        here = f"{path}, column '{name}'"
        kind = col.get("type", "unknown")
        if not isinstance(kind, str) or kind not in PHARMPY_TYPES:
            problems.append(f"{here}: unknown type {kind!r}; expected one of "
                            + ", ".join(PHARMPY_TYPES)
                            + (v._suggest(kind, PHARMPY_TYPES) if isinstance(kind, str) else ""))
            continue
        if header is not None and name not in header:
            problems.append(f"{here}: the data file {data_path} has no column '{name}'; found "
                            + ", ".join(f"'{h}'" for h in header) + v._suggest(name, header))
            continue
        role = PHARMPY_TYPES[kind]
        if col.get("drop") is True or (kind == "admid" and has_cmt):
            role = "ignore"
        if role not in ("covariate", "ignore"):
            if role in taken:
                problems.append(f"{here}: type '{kind}' is given to column '{taken[role]}' "
                                "too; expected one column of this type")
                continue
            taken[role] = name
        unit = col.get("unit")
        unit = None if unit in (None, "", "1", 1) else str(unit)
        if role == "time" and unit is not None:
            from ._units import canonical_time_unit

            if canonical_time_unit(unit) is None:
                problems.append(f"{here}: the time unit {unit!r} is not one progression knows "
                                "(second, minute, hour, day, week, month, year)")
            else:
                doc["time_unit"] = canonical_time_unit(unit)
        spec: dict[str, Any] = {"role": role}
        if role == "dv":
            doc["observable"] = name
            if unit is not None:
                doc["units"] = {name: unit}
        elif role in ("amount", "covariate") and unit is not None:
            spec["unit"] = unit
        cats = col.get("categories")
        if role == "covariate" and isinstance(cats, dict) and cats:
            spec["categories"] = {str(code): str(label) for code, label in cats.items()}
        columns[name] = spec if len(spec) > 1 else role
    for name in header or ():
        if name not in columns and not any(isinstance(c, dict) and c.get("name") == name
                                           for c in columns_in):
            columns[name] = "ignore"  # pharmpy would not know the column either
    doc["columns"] = columns
    return doc


def _observation(spec: dict, here: str, doc: dict, problems: list[str]) -> None:
    """``name``/``yname``/``type`` of the observation column into ``observable`` or ``dvid``."""
    names = spec.get("name")
    types = spec.get("type", "continuous")
    types = types if isinstance(types, list) else [types]
    bad = [t for t in types if not isinstance(t, str) or t.strip().lower() != "continuous"]
    if bad:
        problems.append(f"{here}: only continuous observations can be read; found "
                        f"type={_show(bad[0])}")
    if names is None:
        return
    if isinstance(names, str):
        doc["observable"] = names.strip()
        return
    codes = spec.get("yname", spec.get("ytype"))
    if not isinstance(names, list) or not isinstance(codes, list) or \
            len(codes) != len(names) or not all(isinstance(x, str) for x in names + codes):
        problems.append(f"{here}: expected name={{...}} and yname={{...}} of the same length "
                        f"(observation type codes and their names), found name={_show(names)}"
                        f", yname={_show(codes)}")
        return
    doc["dvid"] = {code.strip(): name.strip() for code, name in zip(codes, names, strict=True)}


def _data_header(data_path: Path | None, delimiter: str) -> list[str] | None:
    """The column names in the data file's first line, or None if it cannot be read."""
    if data_path is None:
        return None
    try:
        with open(data_path, encoding="utf-8-sig", newline="") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return None  # the reader reports an unreadable file itself
    first = first.strip()
    if not first:
        return None
    if first.startswith("#"):
        first = first[1:]  # a commented header is still the header, as in NONMEM files
    if delimiter == "space":
        return first.split()
    return [c.strip() for c in next(csv.reader([first], delimiter=_SPLIT[delimiter]))]


def _show(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(x)}" for k, x in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_show(x) for x in value) + "}"
    return f"'{value}'"


# ------------------------------------------------------------------------ mlxtran syntax


def _parse(path: Path, problems: list[str]) -> dict[str, dict[str, dict[str, tuple]]]:
    """``<SECTION>`` -> ``[BLOCK]`` -> key -> (line, value) for a Monolix project file.

    Values: ``'text'`` or ``"text"``, a bare word, ``{a, b}`` (a list) or ``{k=v, ...}``
    (a dict), nested. ``;`` starts a comment; a value may continue over lines while a brace is
    open. Lines without ``=`` (``DEFINITION:``, model code) are skipped: only the
    ``<DATAFILE>`` section is interpreted.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problems.append(f"{path}: Monolix project file not found")
        return {}
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: expected UTF-8 text, found bytes that are not ({exc.reason})")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot read the Monolix project ({exc.strerror})")
        return {}
    sections: dict[str, dict[str, dict[str, tuple]]] = {}
    section = block = None
    pending = None  # (line, key, text so far) of a value with an open brace
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        line = _strip_comment(raw).strip()
        if pending is not None:
            start, key, so_far = pending
            if _KEY.match(line) and not so_far.rstrip().endswith((",", "{")):
                # A new `key = ...` line, not the continuation of a list: the brace was
                # never closed (reading on would swallow the following entries).
                problems.append(f"{path}, line {start}, [{block}] '{key}': a '{{' is never "
                                f"closed (line {number} starts a new entry)")
                pending = None
            else:
                so_far += " " + line
                if so_far.count("{") > so_far.count("}") and number < len(lines):
                    pending = (start, key, so_far)
                    continue
                pending = None
                _store(sections, section, block, key, start, so_far, path, problems)
                continue
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            section, block = m.group(1).upper(), None
            sections.setdefault(section, {})
            continue
        m = _SUBSECTION.match(line)
        if m:
            block = m.group(1).upper()
            if section is not None:
                sections[section].setdefault(block, {})
            continue
        if section != "DATAFILE":
            continue  # model code and settings are not read
        m = _KEY.match(line)
        if m is None:
            continue
        key, value = m.group(1), m.group(2)
        if value.count("{") > value.count("}"):
            pending = (number, key, value)
            continue
        _store(sections, section, block, key, number, value, path, problems)
    if pending is not None:
        start, key, _ = pending
        problems.append(f"{path}, line {start}, key '{key}': a '{{' is never closed")
    return sections


def _store(sections, section, block, key, line, text, path, problems) -> None:
    if section is None or block is None:
        return
    try:
        value = _Value(text).parse()
    except ValueError as exc:
        problems.append(f"{path}, line {line}, [{block}] '{key}': cannot read the value "
                        f"{text.strip()!r} ({exc})")
        return
    entries = sections[section][block]
    if key in entries:
        problems.append(f"{path}, line {line}, [{block}] '{key}': given twice (first on line "
                        f"{entries[key][0]}); expected once")
        return
    entries[key] = (line, value)


def _strip_comment(line: str) -> str:
    """``line`` up to a ``;`` comment that is not inside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            return line[:i]
    return line


class _Value:
    """Recursive-descent reader of one mlxtran value (see :func:`_parse`)."""

    def __init__(self, text: str):
        self.s, self.i = text.strip(), 0

    def parse(self):
        value = self._value()
        self._space()
        if self.i != len(self.s):
            raise ValueError(f"unexpected {self.s[self.i:]!r} after the value")
        return value

    def _space(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _value(self):
        self._space()
        if self.i >= len(self.s):
            raise ValueError("expected a value, found nothing")
        ch = self.s[self.i]
        if ch == "{":
            return self._braces()
        if ch in "'\"":
            end = self.s.find(ch, self.i + 1)
            if end < 0:
                raise ValueError("a quote is never closed")
            text, self.i = self.s[self.i + 1:end], end + 1
            return text
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in ",{}=":
            self.i += 1
        word = self.s[start:self.i].strip()
        if not word:
            raise ValueError(f"expected a value, found {self.s[start:start + 1]!r}")
        return word

    def _braces(self):
        self.i += 1  # "{"
        items: list = []
        while True:
            self._space()
            if self.i < len(self.s) and self.s[self.i] == "}" and not items:
                self.i += 1
                return []
            first = self._value()
            self._space()
            if self.i < len(self.s) and self.s[self.i] == "=":
                if not isinstance(first, str) or not re.fullmatch(r"\w+", first):
                    raise ValueError(f"expected a key of letters, digits or '_' before '=', "
                                     f"found {first!r}")
                self.i += 1
                items.append((first, self._value()))
            else:
                items.append(first)
            self._space()
            if self.i >= len(self.s):
                raise ValueError("a '{' is never closed")
            ch = self.s[self.i]
            self.i += 1
            if ch == "}":
                break
            if ch != ",":
                raise ValueError(f"expected ',' or '}}', found {ch!r}")
        pairs = [x for x in items if isinstance(x, tuple)]
        if not pairs:
            return items
        if len(pairs) != len(items):
            raise ValueError("mixes key=value entries and plain values")
        return {str(k).strip(): x for k, x in pairs}
