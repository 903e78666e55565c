"""NONMEM-style ``.ext`` tables: parameter estimates by iteration, final estimates, SEs.

Format (NONMEM 7, as written by NONMEM and read by PsN, xpose, pharmpy and bbr; the layout
was matched against published sample files, e.g. the ``8.ext`` fixture of the bbr test suite,
metrumresearchgroup/bbr ``tests/testthat/test-param-estimates-batch.R``):

- a title line ``TABLE NO.     1: <method>: Goal Function=MINIMUM VALUE OF OBJECTIVE
  FUNCTION: Problem=1 Subproblem=0 Superproblem1=0 Iteration1=0 Superproblem2=0 Iteration2=0``;
- a header `` ITERATION    THETA1       THETA2 ... SIGMA(1,1) ... OMEGA(1,1)   OMEGA(2,1)
  OMEGA(2,2) ... OBJ``: thetas, then SIGMA then OMEGA as lower triangles row by row
  (``(1,1) (2,1) (2,2) (3,1) ...``), then the objective; names left-aligned in 13 columns;
- one row per printed iteration: the iteration number right-aligned in 13 columns, each
  value as `` %12.5E`` (13 columns), the objective with 17 significant digits in 22 columns;
- special rows: ``-1000000000`` final estimates, ``-1000000001`` standard errors (``1.00000E+10``
  for fixed or unavailable elements, objective 0), and further negative codes NONMEM uses for
  other summaries (-1000000002 eigenvalues, -1000000003 condition number, -1000000004 SDs
  and correlations, -1000000005 their SEs, -1000000006 fixed flags, ...), which the reader
  keeps as rows.

Several tables may follow each other in one file (one per ``$ESTIMATION``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import FitError

__all__ = ["ExtTable", "FINAL", "SE", "UNAVAILABLE", "ext_columns", "read_ext", "write_ext"]

#: Iteration code of the final estimates.
FINAL = -1000000000
#: Iteration code of the standard errors.
SE = -1000000001
#: What NONMEM writes for a fixed or unavailable standard error.
UNAVAILABLE = 1.0e10

_TITLE = ("TABLE NO. {number:5d}: {method}: Goal Function=MINIMUM VALUE OF OBJECTIVE FUNCTION: "
          "Problem=1 Subproblem=0 Superproblem1=0 Iteration1=0 Superproblem2=0 Iteration2=0")


def _triangle(name: str, size: int) -> list[str]:
    return [f"{name}({i},{j})" for i in range(1, size + 1) for j in range(1, i + 1)]


def ext_columns(n_theta: int, n_sigma: int, n_omega: int) -> list[str]:
    """Column names after ``ITERATION``: THETAs, SIGMA and OMEGA lower triangles, OBJ."""
    return ([f"THETA{k}" for k in range(1, n_theta + 1)] + _triangle("SIGMA", n_sigma)
            + _triangle("OMEGA", n_omega) + ["OBJ"])


def _lower(m, name: str) -> np.ndarray:
    """Lower triangle of a square matrix (or of ``diag(v)`` for a vector), row by row."""
    m = np.asarray(m, dtype=float)
    if m.ndim == 1:
        m = np.diag(m)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise FitError(f".ext table: {name}: expected a square matrix or a vector of its "
                       f"diagonal, found shape {m.shape}")
    return m[np.tril_indices(len(m))]


@dataclass
class ExtTable:
    """One table of a ``.ext`` file.

    Attributes
    ----------
    method : str
        Estimation method as NONMEM names it (``"First Order Conditional Estimation with
        Interaction"``, ``"Stochastic Approximation Expectation-Maximization"``, ...).
    columns : list of str
        Names after ``ITERATION`` (see :func:`ext_columns`).
    iterations : ndarray of int (R,)
        Iteration number of each row (negative codes for the summary rows).
    values : ndarray (R, len(columns))
    number : int
        Table number.
    """

    method: str
    columns: list[str]
    iterations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    number: int = 1

    @classmethod
    def from_estimates(cls, method: str, history, final, se=None, number: int = 1
                       ) -> ExtTable:
        """Build a table from ``(theta, sigma, omega, obj)`` tuples.

        Parameters
        ----------
        method : str
        history : sequence of (int, tuple)
            ``(iteration, (theta, sigma, omega, obj))`` for each printed iteration; ``sigma``
            and ``omega`` are matrices or vectors of their diagonal.
        final : tuple
            ``(theta, sigma, omega, obj)`` at the estimate.
        se : tuple, optional
            ``(theta_se, sigma_se, omega_se)``; NaN (fixed or unavailable) becomes
            ``1.00000E+10`` as in NONMEM. Without it no standard-error row is written.
        number : int
        """
        theta, sigma, omega, _ = final
        n_theta = len(np.atleast_1d(theta))
        n_sigma = len(np.atleast_1d(np.diag(sigma) if np.ndim(sigma) == 2 else sigma))
        n_omega = len(np.atleast_1d(np.diag(omega) if np.ndim(omega) == 2 else omega))
        columns = ext_columns(n_theta, n_sigma, n_omega)

        def row(est, obj):
            t, s, o = est
            r = np.concatenate([np.atleast_1d(np.asarray(t, dtype=float)),
                                _lower(np.atleast_1d(s), "SIGMA"),
                                _lower(np.atleast_1d(o), "OMEGA"), [float(obj)]])
            if len(r) != len(columns):
                raise FitError(f".ext table: expected {len(columns)} values per row "
                               f"({n_theta} THETA, {n_sigma}x{n_sigma} SIGMA, {n_omega}x"
                               f"{n_omega} OMEGA, OBJ), found {len(r)}")
            return r

        iters, rows = [], []
        for it, (t, s, o, obj) in history:
            iters.append(int(it))
            rows.append(row((t, s, o), obj))
        iters.append(FINAL)
        rows.append(row(final[:3], final[3]))
        if se is not None:
            r = row(se, 0.0)
            r[~np.isfinite(r)] = UNAVAILABLE
            iters.append(SE)
            rows.append(r)
        return cls(method, columns, np.asarray(iters, dtype=np.int64), np.vstack(rows), number)

    def row(self, iteration: int) -> dict[str, float]:
        """The row of ``iteration`` (for example :data:`FINAL`) as ``{column: value}``."""
        hit = np.flatnonzero(self.iterations == iteration)
        if hit.size == 0:
            raise FitError(f".ext table {self.number}: expected a row for iteration "
                           f"{iteration}, found iterations {sorted(set(self.iterations.tolist()))}")
        return dict(zip(self.columns, self.values[hit[-1]].tolist(), strict=True))

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """Iteration numbers (>= 0) and their rows: the convergence trace."""
        keep = self.iterations >= 0
        return self.iterations[keep], self.values[keep]

    def estimates(self, iteration: int = FINAL) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          float]:
        """``(theta, sigma, omega, obj)`` of a row, SIGMA and OMEGA as symmetric matrices."""
        r = self.row(iteration)
        theta = np.array([v for c, v in r.items() if c.startswith("THETA")])

        def matrix(name):
            cells = {tuple(int(x) for x in c[len(name) + 1:-1].split(",")): v
                     for c, v in r.items() if c.startswith(name + "(")}
            n = max((i for i, _ in cells), default=0)
            m = np.zeros((n, n))
            for (i, j), v in cells.items():
                m[i - 1, j - 1] = m[j - 1, i - 1] = v
            return m

        return theta, matrix("SIGMA"), matrix("OMEGA"), float(r.get("OBJ", np.nan))


def _fmt_obj(x: float) -> str:
    """The objective as NONMEM prints it: 17 significant digits in 22 columns."""
    if not math.isfinite(x) or x == 0.0:
        return f"{x:22.16f}" if math.isfinite(x) else f"{x:>22}"
    digits = int(math.floor(math.log10(abs(x)))) + 1
    if digits > 17 or digits < -3:
        return f"{x:22.16E}"
    return f"{x:22.{max(0, 17 - max(digits, 1))}f}"


def write_ext(path, tables) -> Path:
    """Write one or several :class:`ExtTable` to ``path`` in NONMEM's ``.ext`` layout."""
    if isinstance(tables, ExtTable):
        tables = [tables]
    lines = []
    for t in tables:
        lines.append(_TITLE.format(number=t.number, method=t.method))
        lines.append(" ITERATION    " + "".join(c.ljust(13) for c in t.columns).rstrip())
        for it, r in zip(t.iterations, t.values, strict=True):
            lines.append(f"{int(it):13d}" + "".join(f" {v:12.5E}" for v in r[:-1])
                         + _fmt_obj(float(r[-1])))
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_ext(path) -> list[ExtTable]:
    """Read every table of a NONMEM ``.ext`` file.

    Raises
    ------
    FitError
        No table, a header without ``ITERATION``, a row with the wrong number of values or a
        value that is not a number; the message names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FitError(f"{path}: cannot read the .ext file ({exc})") from None
    tables: list[ExtTable] = []
    current = None
    rows: list[list[float]] = []
    iters: list[int] = []

    def close():
        if current is not None:
            current.iterations = np.asarray(iters, dtype=np.int64)
            current.values = (np.asarray(rows, dtype=float) if rows
                              else np.zeros((0, len(current.columns))))
            tables.append(current)

    expect_header = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("TABLE NO."):
            close()
            head, _, rest = line.partition(":")
            try:
                number = int(head.split(".")[-1])
            except ValueError:
                raise FitError(f"{path}: line {lineno}: expected 'TABLE NO. <number>:', found "
                               f"{line[:40]!r}") from None
            current = ExtTable(rest.split(": Goal Function")[0].strip(), [], number=number)
            rows, iters = [], []
            expect_header = True
            continue
        if current is None:
            raise FitError(f"{path}: line {lineno}: expected a 'TABLE NO.' title line first, "
                           f"found {line[:40]!r}")
        fields = line.split()
        if expect_header:
            if fields[0] != "ITERATION":
                raise FitError(f"{path}: line {lineno}: expected the header starting with "
                               f"ITERATION, found {line[:40]!r}")
            current.columns = fields[1:]
            expect_header = False
            continue
        if len(fields) != len(current.columns) + 1:
            raise FitError(f"{path}: line {lineno}: expected {len(current.columns) + 1} values "
                           f"(ITERATION and {', '.join(current.columns[:3])}...), found "
                           f"{len(fields)}")
        try:
            iters.append(int(float(fields[0])))
            rows.append([float(v) for v in fields[1:]])
        except ValueError:
            raise FitError(f"{path}: line {lineno}: expected numbers, found "
                           f"{line.strip()[:60]!r}") from None
    close()
    if not tables:
        raise FitError(f"{path}: expected at least one 'TABLE NO.' in the .ext file, found none")
    return tables
