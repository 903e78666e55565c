"""Benchmark: ``progression describe`` on cohorts of 1k, 2k, 4k and 10k subjects.

Issue 9 measured describe as quadratic in the number of subjects (1k/2k/4k subjects:
10.6/28.6/83 s; 10k did not finish in 300 s). This script checks that it is now linear:

* one synthetic clinic cohort of 1,000 patients is drawn with ``pg.synthetic_cohort``
  (``configs/cohorts/als_clinic.toml``) and written as a long CSV with its covariates and
  events side tables and sidecar, as ``progression cohort`` writes it;
* larger cohorts replicate it with renamed subjects (``R1_C0001``, ...), so every size has the
  same per-subject content and the per-subject cost can be compared across sizes;
* for each size, in the same run: the baseline (reading the three CSV files with the standard
  library's ``csv`` module into lists, nothing else), ``pg.read_cohort`` (parse, validate,
  build the Cohort), ``describe_cohort`` (the statistics) and the whole command
  ``progression describe FILE`` run in-process (read, describe, format, print).

Linear means a constant cost per subject and a constant ratio to the baseline. Results go to
``benchmarks/results/describe_scaling.md`` and ``.json``.

Run: ``python benchmarks/describe_scaling.py [--sizes 1000 2000 4000 10000] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import progression as pg
from progression.cli import main as cli_main
from progression.data.describe import describe_cohort

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).parent.parent / "configs" / "cohorts" / "als_clinic.toml"
TARGET_SECONDS = 5.0  # issue 9: describe on 10k subjects under 5 s


def base_cohort(folder: Path, n: int, seed: int) -> Path:
    """Draw the ``n``-patient clinic cohort once and write it (long CSV + side tables)."""
    cohort, _ = pg.synthetic_cohort(CONFIG, n=n, seed=seed)
    path = folder / "base.csv"
    pg.write_cohort(cohort, path, format="long")
    return path


def replicate(base: Path, copies: int, out: Path) -> Path:
    """Write ``copies`` renamed copies of the cohort at ``base`` as one cohort at ``out``."""
    stem_in, stem_out = base.with_suffix(""), out.with_suffix("")
    for suffix in ("", "_covariates", "_events"):
        src = Path(f"{stem_in}{suffix}.csv")
        if not src.exists():
            continue
        with open(src, newline="") as fh:
            header, *rows = list(csv.reader(fh))
        with open(f"{stem_out}{suffix}.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            for k in range(copies):
                # Subject ids must stay unique across copies; the first copy keeps its names.
                prefix = f"R{k}_" if k else ""
                w.writerows([prefix + row[0], *row[1:]] for row in rows)
    sidecar = base.with_suffix(".toml").read_text()
    out.with_suffix(".toml").write_text(sidecar.replace(f"{stem_in.name}_", f"{stem_out.name}_"))
    return out


def stdlib_read(path: Path) -> int:
    """The baseline: every CSV of the cohort read into lists by the csv module."""
    n = 0
    for p in sorted(path.parent.glob(path.stem + "*.csv")):
        with open(p, newline="") as fh:
            n += len(list(csv.reader(fh)))
    return n


def best_of(repeat: int, fn):
    """Smallest wall time and smallest CPU time of ``repeat`` calls, and the last result.

    CPU time (this process only) is reported beside wall time because the machine may be
    shared: under load, wall time grows while CPU time stays what the work costs.
    """
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def run_cli(path: Path) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli_main(["describe", str(path)])
    if code != 0:
        raise SystemExit(f"progression describe {path} exited {code}")


def measure(sizes, repeat: int, seed: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        unit = min(sizes)
        t0 = time.perf_counter()
        base = base_cohort(folder, unit, seed)
        print(f"drew and wrote the {unit}-patient base cohort in "
              f"{time.perf_counter() - t0:.1f} s")
        for n in sizes:
            if n % unit:
                raise SystemExit(f"--sizes: {n} is not a multiple of {unit}")
            path = replicate(base, n // unit, folder / f"cohort_{n}.csv")
            t_base, c_base, lines = best_of(repeat, lambda p=path: stdlib_read(p))
            t_read, c_read, cohort = best_of(repeat, lambda p=path: pg.read_cohort(p))
            t_desc, c_desc, _ = best_of(repeat, lambda c=cohort: describe_cohort(c))
            del cohort
            t_cli, c_cli, _ = best_of(repeat, lambda p=path: run_cli(p))
            rows.append({
                "subjects": n, "csv_lines": lines,
                "baseline_s": t_base, "read_s": t_read, "describe_s": t_desc, "cli_s": t_cli,
                "baseline_cpu_s": c_base, "read_cpu_s": c_read, "describe_cpu_s": c_desc,
                "cli_cpu_s": c_cli,
                "us_per_subject_cli_cpu": 1e6 * c_cli / n,
                "ratio_to_baseline_cpu": c_cli / c_base,
                "load_average": os.getloadavg()[0],
            })
            r = rows[-1]
            print(f"{n:>6} subjects: baseline {t_base:.3f} s, read {t_read:.2f} s, describe "
                  f"{t_desc:.2f} s, CLI {t_cli:.2f} s (CPU {c_cli:.2f} s, "
                  f"{r['us_per_subject_cli_cpu']:.0f} us/subject, "
                  f"{r['ratio_to_baseline_cpu']:.0f}x baseline); load {r['load_average']:.1f}")
    return rows


def markdown(rows: list[dict], repeat: int) -> str:
    largest = rows[-1]
    per = [r["us_per_subject_cli_cpu"] for r in rows]
    scale = rows[-1]["subjects"] // rows[0]["subjects"]
    lines = [
        "# describe_scaling",
        "",
        f"`progression describe` on synthetic clinic cohorts (one {rows[0]['subjects']}-patient "
        "cohort from `configs/cohorts/als_clinic.toml`, replicated with renamed subjects; "
        "long CSV with covariates and events side tables). Best of "
        f"{repeat} run(s) each; wall and CPU seconds (CPU: this process only). Measured on "
        f"{time.strftime('%Y-%m-%d %H:%M')} (Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {max(r['load_average'] for r in rows):.1f} "
        "at most during the run).",
        "",
        "| subjects | CSV lines | baseline: stdlib csv | read_cohort | describe_cohort | "
        "`progression describe` (in-process) | same, CPU | CPU per subject (us) | "
        "CPU / baseline CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['subjects']} | {r['csv_lines']} | {r['baseline_s']:.3f} s | "
            f"{r['read_s']:.2f} s | {r['describe_s']:.2f} s | {r['cli_s']:.2f} s | "
            f"{r['cli_cpu_s']:.2f} s | {r['us_per_subject_cli_cpu']:.0f} | "
            f"{r['ratio_to_baseline_cpu']:.0f} |")
    # Judged on CPU time, the work the command does: wall time on a shared machine also
    # counts other people's processes (both are in the table).
    verdict = "meets" if largest["cli_cpu_s"] < TARGET_SECONDS else "misses"
    lines += [
        "",
        f"CPU per subject from the smallest to the largest cohort: {per[0]:.0f} -> "
        f"{per[-1]:.0f} us (x{per[-1] / per[0]:.2f} for x{scale} subjects: a linear cost "
        f"keeps it constant, a quadratic one multiplies it by {scale}; the sorts are "
        "n log n and memory traffic grows with the table). Before the fix (issue 9): "
        "1k/2k/4k subjects 10.6/28.6/83 s, 10k not finished in 300 s.",
        f"Target, 10k subjects under {TARGET_SECONDS:g} s for the whole command: "
        f"{largest['cli_cpu_s']:.2f} s CPU at {largest['subjects']} subjects"
        + (f", {verdict} it" if largest["subjects"] >= 10000 else "")
        + f" ({largest['cli_s']:.2f} s wall with load average {largest['load_average']:.1f} "
        f"on {os.cpu_count()} cores; on an idle machine wall time is close to CPU time, "
        "the work being single-threaded).",
        "",
        "Reading dominates: every cell is parsed and validated so that any error can name its "
        "row, column and subject, a constant factor over the bare stdlib read; describe itself "
        "is a few vectorised passes over the sorted observations. Not included: the start-up "
        "of the `progression` command (Python and package imports).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 10000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rows = measure(sorted(args.sizes), args.repeat, args.seed)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "describe_scaling.json").write_text(json.dumps(
        {"rows": rows, "python": platform.python_version(), "repeat": args.repeat,
         "target_seconds": TARGET_SECONDS}, indent=2) + "\n")
    text = markdown(rows, args.repeat)
    (RESULTS / "describe_scaling.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
