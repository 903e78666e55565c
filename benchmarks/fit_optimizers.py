"""Benchmark: progression's two per-subject optimisers on the same fits.

``optimizer = "batched"`` (default: Levenberg-Marquardt vectorised over subjects, Fisher
scoring, grid sensitivities) against ``optimizer = "lmfit"`` (one ``lmfit.minimize(method=
"least_squares")`` per subject in lock step, forward sensitivities), in the same run, on:

* ``als_reduced_sigmas``: 40 simulated als_reduced patients (the test-suite generator), free
  kA, eD, the time offset and two error parameters per patient (ALSFRS-R ``a`` of a combined
  model, CRP ``sigma``; CRP left-censored at 2.6 mg/L), 2 starts;
* ``als_systemic``: 20 synthetic als_systemic patients (10 states), free k0, kA and the time
  offset, 2 starts.

Records seconds, batched simulations and the largest per-subject difference in -2 log L in
``benchmarks/results/fit_optimizers.{json,md}``.

Run: ``python benchmarks/fit_optimizers.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from progression.data.synthetic import synthetic_cohort
from progression.fit import fit, parse_fit_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT / "tests"))
from _fit_support import config_text, estimated_error_tables, simulate_cohort  # noqa: E402

SYSTEMIC = """[fit]
model = "als_systemic"
[error.ALSFRS_R]
model = "additive"
a = 1.0
[error.NfL]
model = "lognormal"
sigma = 0.15
[parameters.k0]
estimate = "subject"
[parameters.kA]
estimate = "subject"
[parameters.time_offset]
estimate = "subject"
value = 24.0
bounds = [0.0, 100.0]
"""


def problems():
    cohort, _ = simulate_cohort(40, seed=3, crp_limit=2.6)
    errors = estimated_error_tables('{ value = 0.3, estimate = "subject", bounds = [0.01, 2.0] }')
    yield "als_reduced_sigmas", config_text(errors=errors), cohort
    doc = {"cohort": {"model": "als_systemic", "n": 20, "seed": 2},
           "parameters": {"k0": {"sd": 0.3}, "kA": {"sd": 0.3}},
           "observables": {"ALSFRS_R": {"residual_sd": 1.0},
                           "NfL": {"subject_sd": 0.0, "residual_sd": 0.15}}}
    yield "als_systemic", SYSTEMIC, synthetic_cohort(doc)[0]


def run(text, cohort, optimizer):
    sens = "grid" if optimizer == "batched" else "forward"
    extra = f'[estimator]\nstarts = 2\noptimizer = "{optimizer}"\n'
    if "[solver]" in text:
        body = text.replace("[solver]", f'[solver]\nsensitivities = "{sens}"', 1) + extra
    else:
        body = text + f'[solver]\nsensitivities = "{sens}"\n' + extra
    cfg = parse_fit_config(body, check_data=False)
    start = time.perf_counter()
    result = fit(cfg, data=cohort)
    return time.perf_counter() - start, result


def main():
    record = {"benchmark": "fit_optimizers", "date": time.strftime("%Y-%m-%d %H:%M"),
              "problems": {}}
    lines = ["# fit_optimizers", "",
             "progression's per-subject optimisers on the same data, 2 starts per subject "
             f"(measured {record['date']}).", "",
             "| problem | subjects | batched: s / simulations | lmfit: s / simulations | "
             "ratio | max abs diff -2 log L | sum (lmfit - batched) | converged |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, text, cohort in problems():
        t_b, r_b = run(text, cohort, "batched")
        t_l, r_l = run(text, cohort, "lmfit")
        diff = float(np.max(np.abs(r_b.subject_objective - r_l.subject_objective)))
        better = float(np.sum(r_l.subject_objective - r_b.subject_objective))
        row = {"subjects": len(cohort), "batched_seconds": t_b, "lmfit_seconds": t_l,
               "ratio": t_l / t_b, "batched_simulations": r_b.counters["simulations"],
               "lmfit_simulations": r_l.counters["simulations"],
               "max_abs_difference_m2ll": diff, "sum_lmfit_minus_batched_m2ll": better,
               "converged": [int(r_b.converged.sum()), int(r_l.converged.sum())]}
        record["problems"][name] = row
        print(f"{name}: batched {t_b:.1f} s ({row['batched_simulations']} simulations), lmfit "
              f"{t_l:.1f} s ({row['lmfit_simulations']}): {t_l / t_b:.1f}x; max |diff -2 log L|"
              f" {diff:.1e}")
        lines.append(f"| {name} | {len(cohort)} | {t_b:.1f} / {row['batched_simulations']} | "
                     f"{t_l:.1f} / {row['lmfit_simulations']} | {t_l / t_b:.1f}x | {diff:.1e} | "
                     f"{better:+.1e} | {row['converged'][0]} / {row['converged'][1]} |")
    lines += ["", "A positive sum means the batched optimiser ended lower overall.", "",
              "The batched optimiser steps on the expected information (right curvature for "
              "error parameters) and its per-iteration bookkeeping is a few stacked small "
              "solves; lmfit runs one optimiser object per subject (about 3 ms of overhead per "
              "fit) and needs forward sensitivities integrated with the states.", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit_optimizers.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "fit_optimizers.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'fit_optimizers.json'} and .md")


if __name__ == "__main__":
    main()
