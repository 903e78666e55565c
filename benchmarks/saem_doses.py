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
lag-free, ``saem_chains = 2``), ``pheno`` (configs/pheno_population.toml with
``estimator = "saem"``: 59 neonates, 589 intravenous doses, weight and Apgar covariates on
the typical values) and ``weights`` (60 simulated subjects of a one-compartment model whose
clearance and volume follow a body weight recorded at 0, 6 and 12 h (LOCF, a model
covariate), two intravenous doses each: time-varying covariates on the same path) and
``steady`` (the shipped example, configs/steady_state_population_saem.toml: 40 simulated
patients at steady state, an SS = 1 oral dose every 12 h and two more doses; a short run,
60 + 40 iterations, one chain per subject, as the exact path's Newton on
``simulate()`` intervals costs ~1 ms per interval) and ``zero_order`` (40 simulated subjects
of ``tests/models/pk_infusion_modelled.toml`` given one dose by zero-order absorption of
modelled duration, NONMEM's ``RATE = -2``, the duration D1 estimated with a random effect).

Run: ``python benchmarks/saem_doses.py [--case theoph|pheno|weights|steady|zero_order|all]``.
Results:
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
    "weights": (None, {}),
    # the shipped example (40 patients at steady state) in a short run: the baseline's Newton
    # on simulate() intervals costs ~1 ms per interval
    "steady": ("configs/steady_state_population_saem.toml",
               {"[estimator]\nseed = 1\n": "[estimator]\nseed = 1\nsaem_exploration = 60\n"
                "saem_smoothing = 40\nsaem_chains = 1\nis_samples = 200\n"}),
    "zero_order": (None, {}),
}


#: One compartment, CL = CL_pop (WT/70)^0.75 and V = V_pop WT/70, WT a LOCF model covariate.
WEIGHT_MODEL = ROOT / "tests" / "models" / "pk_iv_bolus_wt.toml"

WEIGHT_CONFIG = """
[fit]
name = "weights"
model = "{model}"
estimator = "saem"
[error.conc]
model = "additive"
a = {{ value = 0.1, estimate = "population", bounds = [0.001, 10.0] }}
[parameters.CL_pop]
estimate = "population"
value = 3.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.09
[parameters.V_pop]
estimate = "population"
value = 70.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.04
[estimator]
seed = 2
"""


def weight_case():
    """The ``weights`` case's config and simulated cohort (closed form between records:
    the amount decays at the current CL/V, the concentration jumps with the volume)."""
    rng = np.random.default_rng(7)
    times = np.array([0.5, 2.0, 5.0, 6.0, 8.0, 9.0, 12.0, 14.0, 18.0])
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    doses = {"subject": [], "time": [], "amount": [], "target": []}
    tv = {"subject": [], "time": [], "name": [], "value": []}
    for i in range(60):
        sid = f"P{i:02d}"
        w = 70.0 * np.exp(0.15 * rng.standard_normal()) * np.array([1.0, 1.15, 0.9])
        CL, V = np.array([5.0, 50.0]) * np.exp(np.sqrt([0.09, 0.04]) * rng.standard_normal(2))
        cuts, given = [0.0, 6.0, 8.0, 12.0], {0.0: 100.0, 8.0: 100.0}

        def weight(t, w=w):
            return w[int(t >= 6.0) + int(t >= 12.0)]

        def decay(A, t0, t1, CL=CL, V=V, weight=weight):
            wt = weight(t0)
            return A * np.exp(-CL * (wt / 70) ** 0.75 / (V * wt / 70) * (t1 - t0))

        y = []
        for t in times:
            A, now = 0.0, 0.0
            for c in [c for c in cuts if c <= t]:
                A, now = decay(A, now, c), c
                A += given.get(c, 0.0)
            y.append(decay(A, now, t) / (V * weight(t) / 70) + 0.1 * rng.standard_normal())
        obs["subject"] += [sid] * times.size
        obs["time"] += list(times)
        obs["observable"] += ["conc"] * times.size
        obs["value"] += y
        for t in given:
            for key, v in zip(doses, (sid, t, given[t], "A_c"), strict=True):
                doses[key].append(v)
        for t, v in zip((0.0, 6.0, 12.0), w, strict=True):
            for key, x in zip(tv, (sid, t, "WT", v), strict=True):
                tv[key].append(x)
    cohort = pg.Cohort(obs, doses=doses, time_varying=tv, time_unit="hour",
                       time_origin="first dose", source="weights (simulated)")
    cfg = parse_fit_config(WEIGHT_CONFIG.format(model=WEIGHT_MODEL),
                           source="benchmarks/saem_doses.py (weights)", check_data=False)
    return cfg, cohort


ZERO_ORDER_MODEL = ROOT / "tests" / "models" / "pk_infusion_modelled.toml"

ZERO_ORDER_CONFIG = """
[fit]
name = "zero_order"
model = "{model}"
estimator = "saem"
[error.conc]
model = "proportional"
b = {{ value = 0.2, estimate = "population", bounds = [0.001, 10.0] }}
[parameters.CL]
estimate = "population"
value = 3.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.09
[parameters.V]
estimate = "population"
value = 70.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.04
[parameters.D1]
estimate = "population"
value = 2.0
bounds = [0.05, 48.0]
scale = "log"
eta = 0.09
[estimator]
seed = 5
"""


def zero_order_case():
    """The ``zero_order`` case's config and cohort: one 100 mg dose absorbed at zero order
    over the modelled duration D1 (``RATE = -2``), values from ``simulate()`` at log-normal
    CL, V, D1 (typical 5 L/h, 50 L, 4 h; Omega 0.09, 0.04, 0.09) with a 10 % proportional
    error."""
    rng = np.random.default_rng(13)
    model = pg.load_model(str(ZERO_ORDER_MODEL))
    times = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0])
    obs = {"subject": [], "time": [], "observable": [], "value": []}
    doses = {"subject": [], "time": [], "amount": [], "target": [], "rate": []}
    for i in range(40):
        p = dict(zip(model.parameter_names, model.defaults, strict=True))
        for name, typical, var in (("CL", 5.0, 0.09), ("V", 50.0, 0.04), ("D1", 4.0, 0.09)):
            p[name] = typical * np.exp(np.sqrt(var) * rng.standard_normal())
        recs = {"subject": [0], "time": [0.0], "amount": [100.0], "target": ["A_c"],
                "rate": [-2.0]}
        sim = pg.simulate(model, [p[k] for k in model.parameter_names], times, doses=recs)
        y = sim["conc"][0] * (1 + 0.1 * rng.standard_normal(times.size))
        sid = f"Z{i:02d}"
        obs["subject"] += [sid] * times.size
        obs["time"] += list(times)
        obs["observable"] += ["conc"] * times.size
        obs["value"] += list(y)
        for key in doses:
            doses[key] += [sid] if key == "subject" else recs[key]
    cohort = pg.Cohort(obs, doses=doses, time_unit="hour", time_origin="dose",
                       source="zero_order (simulated)")
    cfg = parse_fit_config(ZERO_ORDER_CONFIG.format(model=ZERO_ORDER_MODEL),
                           source="benchmarks/saem_doses.py (zero_order)", check_data=False)
    return cfg, cohort


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
    simulated = {"weights": weight_case, "zero_order": zero_order_case}
    cfg, data = simulated[case]() if case in simulated else (config(case), None)
    orig = saem.applicable
    if exact:
        saem.applicable = lambda *a, **k: False
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        res = pg.fit(cfg, data=data)
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
    """Record the run; cases not run this time keep their earlier results (with their
    date and load)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "saem_doses.json"
    for case in out["cases"].values():
        case["date"], case["load"] = out["date"], out["load"]
    if path.exists():
        old = json.loads(path.read_text())
        for name, case in old.get("cases", {}).items():
            case.setdefault("date", old.get("date"))
            case.setdefault("load", old.get("load"))
            out["cases"].setdefault(name, case)
        out["cases"] = {k: out["cases"][k] for k in CASES if k in out["cases"]}
    path.write_text(json.dumps(out, indent=1))
    lines = ["# SAEM on dosed data: compiled piecewise RK4 against the exact path", "",
             "`python benchmarks/saem_doses.py [--case NAME]` on 2 cores. Each case fitted "
             "twice with the same config and seed, after one untimed run that loads the "
             "compiled kernels; the baseline switches the dosed RK4 path off. Each case's "
             "run time and load (start, end) in its row.", "",
             "| case | path | wall (s) | CPU (s) | iterations | OFV | speed-up | run (UTC), "
             "load |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for case, r in out["cases"].items():
        for key, label in (("rk4", "dosed RK4"), ("exact", "exact (baseline)")):
            x = r[key]
            ratio = f"{r['speedup']:.1f}x" if key == "rk4" else "1x"
            when = (f"{r['date']}, {r['load'][0]:.2f}–{r['load'][1]:.2f}" if key == "rk4"
                    else "")
            lines.append(f"| {case} | {label} | {x['wall']:.1f} | {x['cpu']:.1f} | "
                         f"{x['iterations']} | {x['ofv']:.3f} | {ratio} | {when} |")
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
