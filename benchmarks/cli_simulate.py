"""Benchmark: ``progression simulate als_systemic`` end to end in a new process (issue 12).

Issue 12's target: ``progression simulate als_systemic`` end to end (a new process, cache warm)
under 2 s. The command a user runs first (README, quick start)::

    progression simulate als_systemic --months 60 --out DIR --overwrite

simulates the typical patient (the death hazard and its terminal event), writes the CSV and
the figure. By default (no ``--method``, no ``PROGRESSION_BACKEND``) the command runs one
patient on the model's numpy code and the stacked LSODA, which starts faster than numba's
compiled Rodas4. One warm-up run fills the caches (generated code, numba's machine code,
Python's bytecode: ``PYTHONDONTWRITEBYTECODE`` is dropped for the child, as a user's install
has its ``.pyc`` files); then ``--runs`` runs are timed, each a fresh ``python -m``-style
process: wall seconds (what the user waits) and CPU seconds of the child (user + system), with
the load average before and after, since wall time on a shared machine depends on it. With
``--numba`` the same runs follow with ``PROGRESSION_BACKEND=numba`` (the compiled per-subject
Rodas4, numba's start-up included), with ``--numpy`` with ``PROGRESSION_BACKEND=numpy``.

Results go to ``benchmarks/results/cli_simulate.json`` and ``.md``.

Run: ``python benchmarks/cli_simulate.py [--runs 5] [--numba] [--numpy]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
RUN = "import sys; from progression.cli import main; sys.exit(main(sys.argv[1:]))"
#: The same with the figure drawn in the command's own process (the helper never starts).
RUN_IN_PROCESS = ("import sys; import progression._figure_process as f; "
                  "f.FigureProcess.__init__ = lambda self: setattr(self, '_proc', None); "
                  "from progression.cli import main; sys.exit(main(sys.argv[1:]))")
VARIANTS = {"default": (RUN, None), "figure in-process": (RUN_IN_PROCESS, None),
            "numba": (RUN, "numba"), "numpy": (RUN, "numpy")}
ARGS = ["simulate", "als_systemic", "--months", "60"]


def one_run(out: Path, code: str, backend: str | None) -> tuple[float, float]:
    """Wall and CPU seconds of one ``progression simulate`` in a new process."""
    env = dict(os.environ)
    env.pop("PROGRESSION_BACKEND", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)     # warm caches include Python's bytecode
    if backend:
        env["PROGRESSION_BACKEND"] = backend
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *ARGS, "--out", str(out), "--overwrite"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"progression simulate failed:\n{proc.stderr[-2000:]}")
    if not (out / "simulation.csv").is_file():
        raise SystemExit(f"{out}: no simulation.csv written")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def interleaved(out: Path, runs: int, names: list[str]) -> list[dict]:
    """A warm-up run of each variant, then ``runs`` rounds, each running every variant once."""
    for name in names:
        one_run(out, *VARIANTS[name])
    rows = {name: {"backend": name, "wall_seconds": [], "cpu_seconds": []} for name in names}
    for _ in range(runs):
        for name in names:
            w, c = one_run(out, *VARIANTS[name])
            rows[name]["wall_seconds"].append(w)
            rows[name]["cpu_seconds"].append(c)
    for r in rows.values():
        r["median_wall"] = float(np.median(r["wall_seconds"]))
        r["median_cpu"] = float(np.median(r["cpu_seconds"]))
    return list(rows.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--numba", action="store_true",
                        help="also time PROGRESSION_BACKEND=numba (compiled Rodas4)")
    parser.add_argument("--numpy", action="store_true",
                        help="also time PROGRESSION_BACKEND=numpy")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "typical_patient"
        names = ["default", "figure in-process"] + ["numba"] * args.numba \
            + ["numpy"] * args.numpy
        rows = interleaved(out, args.runs, names)
    load_end = os.getloadavg()
    for r in rows:
        print(f"{r['backend']:17s}: wall median {r['median_wall']:.2f} s "
              f"({min(r['wall_seconds']):.2f}-{max(r['wall_seconds']):.2f}), CPU median "
              f"{r['median_cpu']:.2f} s")
    gain = rows[1]["median_wall"] - rows[0]["median_wall"]
    print(f"the figure's helper process saves {gain:.2f} s wall (median of the same rounds)")
    met = rows[0]["median_wall"] < 2.0
    print(f"target (issue 12): under 2 s end to end: {'met' if met else 'NOT met'} (wall); "
          f"CPU {rows[0]['median_cpu']:.2f} s")
    record = {
        "benchmark": "cli_simulate",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "timed": "progression " + " ".join(ARGS) + " --out DIR --overwrite",
        "load_average": {"start": load_start, "end": load_end},
        "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
        "rows": rows, "target_under_2s_wall": met, "helper_saves_seconds": gain,
        "timing": "interleaved: each round runs every variant once, in turn",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_simulate.json").write_text(json.dumps(record, indent=2) + "\n")
    md = ["# cli_simulate", "",
          f"`{record['timed']}` end to end in a new process with warm caches (simulation of the "
          f"typical patient, CSV and figure), {args.runs} rounds after one warm-up of each "
          "variant, each round running every variant once in turn (interleaved: the "
          "machine's speed drifts within a minute). Measured "
          f"{record['date']} on {os.cpu_count()} shared cores (load average "
          f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end).",
          f"Command: `{record['command']}`.", "",
          "default: no --method and no PROGRESSION_BACKEND (one patient: the numpy code and "
          "the stacked LSODA); numba/numpy: PROGRESSION_BACKEND set (numba: the compiled "
          "per-subject Rodas4); figure in-process: the default command with the figure drawn "
          "by the command's own process instead of the helper process that imports "
          "matplotlib while the command imports scipy and solves (the behaviour before "
          "the helper).", "",
          "| backend | wall median | wall range | CPU median (user + system) |",
          "|---|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['backend']} | {r['median_wall']:.2f} s | "
                  f"{min(r['wall_seconds']):.2f}-{max(r['wall_seconds']):.2f} s | "
                  f"{r['median_cpu']:.2f} s |")
    md += ["", f"The helper process saves {gain:.2f} s wall (medians of the same rounds).",
           "", f"Target (issue 12), under 2 s end to end: {'met' if met else 'NOT met'} "
           f"(median wall {rows[0]['median_wall']:.2f} s; wall time on a shared machine "
           "grows with the load average, the CPU column does not).", ""]
    (RESULTS / "cli_simulate.md").write_text("\n".join(md))
    print(f"wrote {RESULTS / 'cli_simulate.json'} and .md")


if __name__ == "__main__":
    main()
