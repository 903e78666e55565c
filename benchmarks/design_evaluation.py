"""Design evaluation against the truth it predicts: the spread of refitted estimates.

`progression design` / :func:`progression.fit.evaluate_design` predict the standard errors of a
population design from its expected (FO, block-diagonal) Fisher information. The truth those
SEs stand for is the spread of the estimates over replicate studies of that design. Here:

1. the design is Theoph's (12 subjects, one oral dose, 11 samples each; `configs/
   theoph_population.toml`) replicated ``--copies`` times (default 4: 48 subjects);
2. the truth is nlmixr2's published FOCEi optimum (ka 1.59, CL 2.75, V 31.8; omega^2 0.40,
   0.069, 0.019; additive SD 0.695);
3. ``--replicates`` data sets are drawn from the one-compartment model at that truth and each
   is fitted with FOCE-I from the config (starts at the config's values);
4. per parameter: the predicted SE (design evaluation at the truth, reduced and full FIM), the
   empirical SD of the estimates, their ratios, and the median of each fit's own SE.

The baseline of the timing is what a modeller does without a design tool: the simulation and
refit study itself, timed in the same run.

    python benchmarks/design_evaluation.py --replicates 150 --copies 4
    python benchmarks/design_evaluation.py --replicates 150 --copies 4 --rescore

Results: ``benchmarks/results/design_evaluation.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "theoph_population.toml"
OUT = ROOT / "benchmarks" / "results" / "design_evaluation"
#: nlmixr2's published FOCEi optimum of Theoph (data/examples/theoph.md; README)
TRUTH = {"ka": 1.59, "CL": 2.75, "V": 31.8, "omega^2 ka": 0.40, "omega^2 CL": 0.069,
         "omega^2 V": 0.019, "conc.a": 0.695}


def conc(ka, cl, v, t, dose):
    """One-compartment oral model, F = 1 (pk_oral's closed form)."""
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def truth_config():
    """The config with the truth as its values (the design is evaluated there)."""
    from progression.fit import read_fit_config

    cfg = read_fit_config(CONFIG)
    out = []
    for p in cfg.parameters:
        ch = {}
        if p.name in TRUTH:
            ch["value"] = TRUTH[p.name]
        if f"omega^2 {p.name}" in TRUTH:
            ch["eta"] = TRUTH[f"omega^2 {p.name}"]
        out.append(dataclasses.replace(p, **ch) if ch else p)
    return cfg.replace(parameters=tuple(out))


def base_designs(cfg, copies: int):
    from progression.fit.estimate import read_data
    from progression.fit.problem import designs_from_cohort

    designs = designs_from_cohort(read_data(cfg), cfg)[0]
    return [dataclasses.replace(d, id=f"{d.id}_{c}") for c in range(copies) for d in designs]


def simulate(designs, rng):
    """The designs with values drawn at the truth (log-normal individual parameters)."""
    out = []
    sd = np.sqrt([TRUTH["omega^2 ka"], TRUTH["omega^2 CL"], TRUTH["omega^2 V"]])
    for d in designs:
        eta = sd * rng.standard_normal(3)
        ka, cl, v = (TRUTH["ka"] * math.exp(eta[0]), TRUTH["CL"] * math.exp(eta[1]),
                     TRUTH["V"] * math.exp(eta[2]))
        dose = float(sum(x.amount for x in d.doses))
        f = conc(ka, cl, v, np.asarray(d.time, dtype=float), dose)
        y = f + TRUTH["conc.a"] * rng.standard_normal(f.size)
        out.append(dataclasses.replace(d, value=y))
    return out


def estimates(pop) -> tuple[dict, dict]:
    names = list(pop.omega_names)
    est = {k: float(pop.fixed_effects[k]) for k in ("ka", "CL", "V")}
    est.update({f"omega^2 {k}": float(pop.omega[names.index(k), names.index(k)])
                for k in ("ka", "CL", "V")})
    est["conc.a"] = float(pop.sigma["conc.a"])
    se_x = dict(zip(pop.covariance_names, np.sqrt(np.diag(pop.covariance)), strict=True))
    se = {k: est[k] * se_x.get(f"theta {k}", math.nan) for k in ("ka", "CL", "V")}
    se.update({f"omega^2 {k}": est[f"omega^2 {k}"] * se_x.get(f"log omega^2 {k}", math.nan)
               for k in ("ka", "CL", "V")})
    se["conc.a"] = est["conc.a"] * se_x.get("log conc.a", math.nan)
    return est, se


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--copies", type=int, default=4, help="copies of Theoph's 12 subjects")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--rescore", action="store_true",
                    help="recompute the predictions against the recorded study (no refits)")
    ap.add_argument("--mcmc", type=int, default=0, metavar="R",
                    help="also the exact (MCMC) information, R simulated data sets")
    args = ap.parse_args(argv)

    from progression.fit import evaluate_design, fit

    cfg = truth_config()
    designs = base_designs(cfg, args.copies)
    evaluate_design(cfg, data=designs)                 # compile and warm the model once
    t0 = time.perf_counter()
    ev = evaluate_design(cfg, data=designs)
    t_design = time.perf_counter() - t0
    predicted = dict(zip(ev.names, ev.se, strict=True))
    full = evaluate_design(cfg, data=designs, form="full")
    predicted_full = dict(zip(full.names, full.se, strict=True))
    mcmc = None
    if args.mcmc:
        t0 = time.perf_counter()
        mc = evaluate_design(cfg, data=designs, method="mcmc", replicates=args.mcmc,
                             seed=args.seed)
        mcmc = {"se": dict(zip(mc.names, mc.se, strict=True)),
                "se_mc": dict(zip(mc.names, mc.se_mc, strict=True)),
                "seconds": time.perf_counter() - t0, "seconds_fo": t_design}
    if args.rescore:
        # the recorded study's estimates, the predictions recomputed (e.g. a new form)
        old = json.loads(Path(args.out).with_suffix(".json").read_text())
        # the timings stay the recorded run's (both measured there, under the same load)
        write(args, old["table"], old["fitted"], old["failed"], len(designs), predicted,
              predicted_full, old["seconds_design"], old["seconds_study"], mcmc)
        return 0

    rng = np.random.default_rng(args.seed)
    rows, failed = [], 0
    t0 = time.perf_counter()
    for r in range(args.replicates):
        data = simulate(designs, rng)
        try:
            res = fit(CONFIG, data=data)
        except Exception as exc:        # a failed replicate is counted, not hidden
            failed += 1
            print(f"replicate {r}: failed ({exc})")
            continue
        rows.append(estimates(res.population))
        if (r + 1) % 10 == 0:
            print(f"{r + 1} replicates, {time.perf_counter() - t0:.0f} s", flush=True)
    t_sim = time.perf_counter() - t0

    table = []
    for k in TRUTH:
        vals = np.array([e[k] for e, _ in rows])
        ses = np.array([s[k] for _, s in rows])
        table.append({"parameter": k, "truth": TRUTH[k], "mean": float(vals.mean()),
                      "empirical_sd": float(np.std(vals, ddof=1)),
                      "median_fit_se": float(np.nanmedian(ses))})
    write(args, table, len(rows), failed, len(designs), predicted, predicted_full, t_design,
          t_sim, mcmc)
    return 0


def write(args, table, n_ok, failed, n_subjects, predicted, predicted_full, t_design, t_sim,
          mcmc=None):
    """Print and record the comparison (the predictions added to each row of ``table``)."""
    for t in table:
        k = t["parameter"]
        t["predicted_se"] = float(predicted[k])
        t["predicted_se_full"] = float(predicted_full[k])
        t["ratio"] = t["predicted_se"] / t["empirical_sd"]
        t["ratio_full"] = t["predicted_se_full"] / t["empirical_sd"]
        if mcmc is not None:
            t["predicted_se_mcmc"] = float(mcmc["se"][k])
            t["predicted_se_mcmc_error"] = float(mcmc["se_mc"][k])
            t["ratio_mcmc"] = t["predicted_se_mcmc"] / t["empirical_sd"]
    lines = [
        "# Design evaluation against replicate refits (Theoph design)", "",
        f"Run {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC: `python "
        f"benchmarks/design_evaluation.py --replicates {args.replicates} --copies "
        f"{args.copies} --seed {args.seed}{' --rescore' if args.rescore else ''}"
        f"{f' --mcmc {args.mcmc}' if args.mcmc else ''}`. Machine: "
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{__import__('os').cpu_count()} CPUs."
        + (" `--rescore`: the recorded replicates' estimates, the predictions recomputed."
           if args.rescore else ""), "",
        f"Design: Theoph's 12 subjects x {args.copies} = {n_subjects} subjects, truth "
        "nlmixr2's FOCEi optimum; each replicate drawn at the truth and fitted with FOCE-I "
        f"(`{CONFIG.relative_to(ROOT)}`); {n_ok} of {args.replicates} fitted"
        f"{'' if not failed else f', {failed} failed'}. The standard error of an empirical SD "
        f"from {n_ok} replicates is about {100 / math.sqrt(2 * (n_ok - 1)):.0f} %.", "",
        "| parameter | truth | mean estimate | empirical SD | predicted SE, reduced FIM | "
        "reduced / empirical | predicted SE, full FIM | full / empirical | median SE of the "
        "fits |" + (" predicted SE, MCMC (± MC error) | MCMC / empirical |" if mcmc else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if mcmc else "")]
    for t in table:
        lines.append(f"| {t['parameter']} | {t['truth']:.4g} | {t['mean']:.4g} | "
                     f"{t['empirical_sd']:.4g} | {t['predicted_se']:.4g} | {t['ratio']:.2f} | "
                     f"{t['predicted_se_full']:.4g} | {t['ratio_full']:.2f} | "
                     f"{t['median_fit_se']:.4g} |"
                     + (f" {t['predicted_se_mcmc']:.4g} ± {t['predicted_se_mcmc_error']:.2g} | "
                        f"{t['ratio_mcmc']:.2f} |" if mcmc else ""))
    lines += ["", "| what | wall time (s) | ratio |", "|---|---:|---:|",
              f"| design evaluation (`evaluate_design`, reduced, warm) | {t_design:.3f} | 1 |",
              f"| simulation and FOCE-I refit study ({args.replicates} replicates) | "
              f"{t_sim:.1f} | {t_sim / t_design:,.0f}x slower |", ""]
    if mcmc:
        lines += [f"Exact (MCMC) information, {args.mcmc} simulated data sets (this run): "
                  f"{mcmc['seconds']:.1f} s; FO (reduced, warm) in the same run "
                  f"{mcmc['seconds_fo']:.3f} s.", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "table": table, "fitted": n_ok, "failed": failed,
         "seconds_design": t_design, "seconds_study": t_sim, "mcmc": mcmc}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
