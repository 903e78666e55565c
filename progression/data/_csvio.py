"""CSV input/output with line numbers, cell parsing and number formatting (private).

Every table a reader touches goes through :func:`read_table`, which keeps the 1-based line
number of each record (header = line 1) so that every problem can name its row.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from progression.errors import DataError

__all__ = [
    "MISSING",
    "RawTable",
    "read_table",
    "write_table",
    "parse_number",
    "parse_value",
    "fmt_number",
    "normalise_name",
    "describe_cell",
    "span",
]

# NONMEM writes "." for a missing value, R writes "NA"; both mean "no value here".
MISSING = frozenset({"", ".", "na", "nan", "n/a", "null", "none"})


def normalise_name(name: str) -> str:
    """Lower-case a column or test name and drop everything but letters and digits."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


@dataclass
class RawTable:
    """A CSV file as text cells, with the line number of each record.

    Attributes
    ----------
    label : str
        How problems name the file (the path as the user gave it).
    header : list of str
        Column names, stripped of surrounding blanks.
    rows : list of list of str
        Data records, each with ``len(header)`` cells (ragged records are reported and padded).
    lines : list of int
        1-based line number of each record in the file (header = line 1).
    notes : list of str
        What was skipped while reading (comment lines).
    header_line : int
        Line number of the header (1 unless blank lines precede it).
    ragged : set of int
        Lines whose field count differs from the header's (already reported): their cells
        cannot be trusted, so cell checks skip them instead of reporting consequences.
    """

    label: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    notes: list[str] = field(default_factory=list)
    header_line: int = 1
    ragged: set[int] = field(default_factory=set)

    def find(self, *names: str) -> str | None:
        """The header name matching one of ``names`` (exactly first, then case-insensitively)."""
        for name in names:
            if name in self.header:
                return name
        lowered = {h.lower(): h for h in self.header}
        for name in names:
            if name.lower() in lowered:
                return lowered[name.lower()]
        return None

    def column(self, name: str) -> list[str]:
        """Cells of column ``name`` (which must be in the header)."""
        j = self.header.index(name)
        return [row[j] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def read_table(
    path: str | os.PathLike,
    problems: list[str],
    *,
    label: str | None = None,
    comment: str | None = "#",
    delimiter: str | None = None,
) -> RawTable | None:
    """Read a delimited text file into a :class:`RawTable`.

    Parameters
    ----------
    path : str or path-like
        The file. ``.tsv`` and ``.tab`` files are tab-separated, anything else comma-separated.
    problems : list of str
        Problems found (missing file, not text, no header, ragged rows) are appended here.
    label : str, optional
        How to name the file in messages; defaults to ``str(path)``.
    comment : str, optional
        Records whose first cell starts with this prefix are skipped and noted (NONMEM's
        ``IGNORE=#``); ``None`` disables comments.
    delimiter : {"comma", "tab", "whitespace"}, optional
        How fields are separated. By default: tab for ``.tsv``/``.tab`` names, comma for
        ``.csv``, and for any other name (NONMEM's ``.dta``, ``.txt``, ``.dat``) whitespace
        when the first line has no comma and splits on blanks into several fields, else
        comma. Whitespace means runs of blanks and tabs (NONMEM's own data files; no
        quoting); the choice is noted when it was detected.

    Returns
    -------
    RawTable or None
        ``None`` when the file cannot be read at all (the reason is in ``problems``).
    """
    label = str(path) if label is None else label
    detected = None
    lower = str(path).lower()
    if delimiter is None:
        delimiter = "tab" if lower.endswith((".tsv", ".tab")) else "comma"
        detected = not lower.endswith((".csv", ".tsv", ".tab"))
    delimiter = {"comma": ",", "tab": "\t", "whitespace": " "}[delimiter]
    records: list[tuple[int, list[str]]] = []
    previous = 0
    notes: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
        # One search of the whole text; rows are searched only if it finds a NUL byte.
        has_nul = "\x00" in text
        if detected:
            first = next((ln for ln in text.splitlines() if ln.strip()), "")
            if "," not in first and len(first.split()) > 1:
                delimiter = " "
                notes.append(f"{label}: read as whitespace-delimited (NONMEM style: the first "
                             "line has no comma and several blank-separated fields)")
        if delimiter == " ":
            # NONMEM's own data files: fields separated by runs of blanks or tabs, no quoting
            for k, raw in enumerate(io.StringIO(text, newline=None), start=1):
                previous = k
                cells = raw.split()
                if cells:
                    records.append((k, cells))
        else:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            for cells in reader:  # inside the try: csv.Error is raised while iterating
                start = previous + 1
                previous = reader.line_num
                # Stripped once here; blank lines carry no data, skipping them drops nothing.
                cells = [c.strip() for c in cells]
                if any(cells):
                    records.append((start, cells))
    except FileNotFoundError:
        problems.append(f"{label}: file not found")
        return None
    except IsADirectoryError:
        problems.append(f"{label}: expected a file, found a directory")
        return None
    except UnicodeDecodeError as exc:
        problems.append(f"{label}: expected UTF-8 text, found undecodable bytes ({exc.reason}"
                        f" at byte {exc.start}){_encoding_hint(path)}")
        return None
    except csv.Error as exc:
        problems.append(f"{label}, row {previous + 1}: malformed CSV ({exc})")
        return None

    if not records:
        problems.append(f"{label}: expected a header row, found an empty file")
        return None
    line0, header = records[0]
    header = [h.strip() for h in header]
    if comment and header and header[0].startswith(comment):
        # A commented header ("#ID,TIME,...") is still the header, as in NONMEM files.
        header[0] = header[0][len(comment):].strip()
    if len(header) == 1:
        # One column whose name holds another separator: the file was saved with ';' (the
        # spreadsheet default where ',' is the decimal mark) or tabs. Reading on would report
        # every required column missing, which hides the cause.
        names = {";": "';'", "\t": "tab", "|": "'|'", ",": "','", " ": "blank"}
        other = [sep for sep in names if sep != delimiter and sep in header[0]]
        if other == [" "]:
            problems.append(
                f"{label}, row {line0}: the file looks blank-separated (the header is one "
                f"column, '{header[0][:60]}'); progression reads a name ending in .csv as "
                "comma-separated: set delimiter = \"whitespace\" in the sidecar, or give "
                "the file a .dta or .txt name")
            return None
        if other:
            ours = ("tab-separated files (this file's name ends in .tsv or .tab)"
                    if delimiter == "\t" else "comma-separated CSV (tab-separated when the "
                    "name ends in .tsv or .tab)")
            shown = header[0][:60].replace("\t", "\\t")
            fix = ("save it as comma-separated CSV" + (" or give it a .tsv name"
                                                       if other[0] == "\t" else ""))
            problems.append(
                f"{label}, row {line0}: the file looks {names[other[0]]}-separated (the "
                f"header is one column, '{shown}'); progression reads {ours}: {fix}")
            return None
    table = RawTable(label, header, [], [], header_line=line0, notes=notes)
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if not name:
            problems.append(f"{label}, row {line0}: column {j + 1} has an empty name in the header")
        elif name in seen:
            problems.append(
                f"{label}, row {line0}, column '{name}': expected unique column names, "
                f"found '{name}' in columns {seen[name] + 1} and {j + 1}"
            )
        else:
            seen[name] = j
    skipped: list[int] = []
    for line, cells in records[1:]:
        if comment and cells and cells[0].startswith(comment):
            skipped.append(line)
            continue
        if len(cells) != len(header):
            hint = ""
            if len(cells) > len(header) and any(c.isdigit() for c in cells[-1][:1]):
                hint = " (a decimal comma? write 40.5, not 40,5, or quote the cell)"
            problems.append(
                f"{label}, row {line}: expected {len(header)} fields as in the header, "
                f"found {len(cells)}{hint}"
            )
            cells = (cells + [""] * len(header))[: len(header)]
            table.ragged.add(line)
        if has_nul and any("\x00" in c for c in cells):
            problems.append(f"{label}, row {line}: expected text, found a NUL byte (a binary "
                            "file, or text saved as UTF-16? save it as UTF-8 CSV)")
            table.ragged.add(line)
        table.rows.append(cells)
        table.lines.append(line)
    if skipped:
        table.notes.append(
            f"{label}: skipped {len(skipped)} comment row(s) starting with '{comment}' "
            f"({span(skipped)})"
        )
    return table


def _encoding_hint(path) -> str:
    """What an undecodable file probably is, from its first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return ""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "; the file is UTF-16: save it as UTF-8 CSV"
    if head.startswith(b"PK\x03\x04"):
        return "; the file is a zip archive (an Excel workbook?): export it as CSV"
    return "; save it as UTF-8 (e.g. from a Latin-1 export)"


def span(lines: Sequence[int], limit: int = 8) -> str:
    """``"row 5"`` or ``"rows 3, 5, 9"`` (shortened with a count when long)."""
    shown = ", ".join(str(n) for n in lines[:limit])
    more = f", ... ({len(lines)} in all)" if len(lines) > limit else ""
    return ("row " if len(lines) == 1 else "rows ") + shown + more


def write_table(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a comma-separated file; cells are formatted with :func:`fmt_number`."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow([fmt_number(c) for c in row])
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror})") from exc


def fmt_number(x) -> str:
    """Format a cell: floats as the shortest text that reads back to the same float.

    Whole numbers are written without a decimal point (``3`` not ``3.0``); NaN and ``None``
    become an empty cell. Strings pass through.
    """
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "1" if x else "0"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(f):
        return ""
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return repr(f)


def parse_number(text: str) -> tuple[float | None, str]:
    """Parse one cell as a float.

    Returns
    -------
    value : float or None
        The number, or ``None`` when the cell is missing or not a number.
    status : {"ok", "missing", "bad"}
        ``"missing"`` for an empty cell or a missing-value marker (``.``, ``NA``, ``NaN``),
        ``"bad"`` for text that is not a finite number.
    """
    t = text.strip()
    if t.lower() in MISSING:
        return None, "missing"
    try:
        f = float(t)
    except ValueError:
        return None, "bad"
    if not math.isfinite(f):
        return None, "bad"
    return f, "ok"


def parse_value(text: str) -> tuple[float | None, int, str]:
    """Parse a measurement cell that may carry a censoring prefix.

    ``"<0.3"`` means left-censored below 0.3 (below the assay's limit of quantification),
    ``">5000"`` right-censored above 5000, as laboratory exports write them.

    Returns
    -------
    value : float or None
        The number, or the censoring limit for a censored cell.
    cens : int
        0 observed, 1 left-censored, -1 right-censored.
    status : {"ok", "missing", "bad"}
    """
    t = text.strip()
    cens = 0
    if t[:1] in "<>" and t:
        cens = 1 if t[0] == "<" else -1
        t = t[1:].lstrip("=").strip()
        if not t:
            return None, cens, "bad"
    value, status = parse_number(t)
    if cens and status == "missing":
        status = "bad"
    return value, cens, status


def describe_cell(text: str) -> str:
    """How a message shows what it found in a cell."""
    return "an empty cell" if not text.strip() else f"'{text}'"
