"""SAEM on dosed data: the compiled piecewise RK4 path against the exact path, same run.

For each case a config is fitted twice by SAEM with the same seed: once as users run it (the
chains' and the importance sampling's predictions by the compiled fixed-step RK4, piecewise
between each subject's dose events, :mod:`progression.fit.population._saem_dosed`), once with
that path switched off (the baseline: every prediction by the exact path, rtol 1e-8, as
before 2026-12-04). Printed and recorded: wall and CPU seconds, the ratio, iterations, OFV and
the estimates of both, so that the speed-up is read beside the agreement (the two runs draw
the same random numbers but their predictions differ by up to 0.01 residual SD, so their
chains part after a while: the estimates agree to Monte Carlo noise, not to the digit).

Cases: ``theoph`` (configs/theoph_population_saem.toml: 12 subjects, one oral dose each,
lag-free, ``saem_chains = 2``) and ``pheno`` (configs/pheno_population.toml with
``estimator = "saem"``: 59 neonates, 589 intravenous doses, weight and Apgar covariates on
the typical values).

Run: ``python benchmarks/saem_doses.py [--case theoph|pheno|all]``. Results:
``benchmarks/results/saem_doses.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import progression as pg  # noqa: E402
from progression.fit.config import parse_fit_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = {
    "theoph": ("configs/theoph_population_saem.toml", {}),
    "pheno": ("configs/pheno_population.toml", {'estimator = "focei"': 'estimator = "saem"'}),
}


def config(case):
    path, edits = CASES[case]
    text = (ROOT / path).read_text()
    for old, new in edits.items():
        assert old in text, (path, old)
        text = text.replace(old, new)
    return parse_fit_config(text, source=path, base_dir=ROOT / "configs")


def run(case, exact: bool) -> dict:
    """One SAEM fit of ``case``; ``exact``: the dosed RK4 path switched off."""
    saem = importlib.import_module("progression.fit.estimators.saem")
    cfg = config(case)
    orig = saem.applicable
    if exact:
        saem.applicable = lambda *a, **k: False
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        res = pg.fit(cfg)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        saem.applicable = orig
    pop = res.population
    return {"wall": wall, "cpu": cpu, "iterations": int(pop.iterations),
            "ofv": float(pop.ofv), "path": res.individual.diagnostics.numbers_from,
            "typical": {k: float(v) for k, v in pop.fixed_effects.items()},
            "omega": dict(zip(pop.omega_names, map(float, np.diag(pop.omega)), strict=True)),
            "sigma": {k: float(v) for k, v in pop.sigma.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=(*CASES, "all"), default="all")
    args = ap.parse_args()
    cases = list(CASES) if args.case == "all" else [args.case]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    out = {"date": stamp, "cases": {}}
    for case in cases:
        run(case, exact=False)          # compile and load every kernel once, untimed
        fast = run(case, exact=False)
        exact = run(case, exact=True)
        out["cases"][case] = {"rk4": fast, "exact": exact,
                              "speedup": exact["wall"] / fast["wall"]}
        print(f"{case}: dosed RK4 {fast['wall']:.1f} s ({fast['iterations']} iterations, OFV "
              f"{fast['ofv']:.3f}); exact path {exact['wall']:.1f} s ({exact['iterations']} "
              f"iterations, OFV {exact['ofv']:.3f}); {exact['wall'] / fast['wall']:.1f}x",
              flush=True)
    out["load"] = [load0, os.getloadavg()[0]]
    write(out)


def write(out):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "saem_doses.json").write_text(json.dumps(out, indent=1))
    lines = ["# SAEM on dosed data: compiled piecewise RK4 against the exact path", "",
             f"Run {out['date']}: `python benchmarks/saem_doses.py` (load {out['load'][0]:.2f}"
             f" at the start, {out['load'][1]:.2f} at the end; 2 cores). Each case fitted "
             "twice with the same config and seed, after one untimed run that loads the "
             "compiled kernels; the baseline switches the dosed RK4 path off.", "",
             "| case | path | wall (s) | CPU (s) | iterations | OFV | speed-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for case, r in out["cases"].items():
        for key, label in (("rk4", "dosed RK4"), ("exact", "exact (baseline)")):
            x = r[key]
            ratio = f"{r['speedup']:.1f}x" if key == "rk4" else "1x"
            lines.append(f"| {case} | {label} | {x['wall']:.1f} | {x['cpu']:.1f} | "
                         f"{x['iterations']} | {x['ofv']:.3f} | {ratio} |")
    lines += ["", "Estimates (dosed RK4 / exact):", ""]
    for case, r in out["cases"].items():
        a, b = r["rk4"], r["exact"]
        parts = [f"{k} {a['typical'][k]:.4g} / {b['typical'][k]:.4g}" for k in a["typical"]]
        parts += [f"omega^2 {k} {a['omega'][k]:.4g} / {b['omega'][k]:.4g}" for k in a["omega"]]
        parts += [f"{k} {a['sigma'][k]:.4g} / {b['sigma'][k]:.4g}" for k in a["sigma"]]
        lines.append(f"- {case}: " + ", ".join(parts))
        lines.append(f"  - path: {a['path']}")
    (RESULTS / "saem_doses.md").write_text("\n".join(lines) + "\n")
    print("wrote", RESULTS / "saem_doses.md")


if __name__ == "__main__":
    main()
