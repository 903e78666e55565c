"""The case bootstrap of a population fit: replicates in this process and on worker processes.

FOCE-I on R's Theoph (``configs/theoph_population.toml``, 12 subjects) with ``uncertainty =
["covariance", "bootstrap"]``: the replicates' wall time in this process (the baseline) and
with ``--jobs N`` worker processes, measured in the same run; the two runs must give the same
replicates to the last digit (replicate b is seeded by ``[seed, b]`` wherever it runs). Prints
the times, the speed-up and the bootstrap SEs against the covariance step's, and appends a
row to ``benchmarks/results/population_bootstrap.md``.

    python benchmarks/population_bootstrap.py [--replicates 100] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from progression.fit import fit, read_fit_config

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "theoph_population.toml"


def _run(replicates: int, jobs: int | None):
    cfg = read_fit_config(CONFIG)
    cfg = cfg.replace(options={**cfg.options, "uncertainty": ("covariance", "bootstrap"),
                               "bootstrap_samples": int(replicates), "seed": 3})
    t = time.perf_counter()
    res = fit(cfg, jobs=jobs)
    return res, res.timings["bootstrap"], time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    base, t_base, _ = _run(args.replicates, None)
    pooled, t_jobs, _ = _run(args.replicates, args.jobs)
    b0 = base.population.bootstrap_result()
    b1 = pooled.population.bootstrap_result()
    same = bool(np.array_equal(b0.samples, b1.samples))
    pop = base.population
    se = b0.standard_errors()
    cov_se = {**pop.fixed_effects_se, **{f"omega^2 {k}": v for k, v in pop.omega_se.items()},
              **pop.sigma_se}
    print(f"{args.replicates} replicates: in-process {t_base:.1f} s, --jobs {args.jobs} "
          f"{t_jobs:.1f} s ({t_base / t_jobs:.2f}x); identical replicates: {same}; "
          f"failed {b0.n_failed}")
    ratios = {k: se[k] / cov_se[k] for k in b0.names if k in cov_se and cov_se[k] > 0}
    print("bootstrap SE / covariance-step SE: "
          + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    out = HERE / "results" / "population_bootstrap.md"
    if not out.exists():
        out.write_text("# Case bootstrap of a population fit: in-process and worker processes\n\n"
                       "FOCE-I on Theoph, `python benchmarks/population_bootstrap.py`.\n\n"
                       "| date (UTC) | replicates | in-process (s) | jobs | with jobs (s) | "
                       "speed-up | identical | load | bootstrap SE / covariance SE |\n"
                       "|---|---:|---:|---:|---:|---:|---|---:|---|\n")
    with out.open("a") as fh:
        fh.write(f"| {datetime.now(UTC):%Y-%m-%d %H:%M} | {args.replicates} | {t_base:.1f} | "
                 f"{args.jobs} | {t_jobs:.1f} | {t_base / t_jobs:.2f}x | {same} | {load:.2f} | "
                 + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()) + " |\n")
    print(f"appended to {out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
