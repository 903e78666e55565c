"""Small table helpers shared by scenario comparisons and virtual trials (private)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..stats import quiet as _quiet

__all__ = ["_quiet", "_excludes", "_ci", "_fmt", "_write_csv", "_cell", "_DAGGER"]

#: Marks an interval over parameter draws that does not contain its point value (explained
#: in the "Parameter draws" section of summary.md).
_DAGGER = " †"


def _excludes(point, lo, hi) -> bool:
    """True when a finite interval [lo, hi] does not contain a finite point value."""
    vals = np.array([point, lo, hi], dtype=float)
    if not np.all(np.isfinite(vals)):
        return False
    tol = 1e-9 * max(1.0, float(np.abs(vals).max()))
    return bool(point < lo - tol or point > hi + tol)


def _ci(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, int | np.integer):
        return str(x)
    x = float(x)
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([_cell(r.get(c, "")) for c in cols])


def _cell(v):
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return v
