"""Design evaluation on the ALS model against a recorded recovery study's spread.

`benchmarks/population_recovery_model.py` fitted 50 replicate cohorts of 200 patients drawn
from the shipped config's own population model at a known truth (the well-specified study).
The spread of its estimates over the replicates is what `progression design` predicts from
the design alone. Here the study's design (the clinic generator's patients, visits, dropout
and measurement schedule; ``treg_all`` or ``clinic``) is re-drawn for a few of the study's
seeds, evaluated at the study's truth with the study's own config text (reduced FO FIM), and
the predicted SEs are set beside the empirical SDs of the 50 estimates, on the log scale
(log typical values, log omega^2: SE / value), where the skewed variance estimates are
closest to normal.

    python benchmarks/design_evaluation_als.py \\
        benchmarks/results/population_recovery_model_treg_all_20261202 --seeds 3

Results: ``<study>_design.md``; nothing is refitted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population_recovery as pr  # noqa: E402
import population_recovery_model as prm  # noqa: E402


def truth_population(problem_names, truth: dict):
    """The study's truth as the fields :func:`evaluate_design` reads from a fit."""
    typical = dict(truth["typical"])
    names = list(truth["omega"])
    sigma = {}
    for obs, v in truth["sigma"].items():
        key = next(n for n in problem_names if n.split(".")[0] == obs
                   and n.split(".")[-1] in ("a", "sigma"))
        sigma[key] = v
    pop = types.SimpleNamespace(fixed_effects=typical, omega_names=tuple(names),  # extra: unread
                                omega=np.diag([truth["omega"][k] for k in names]),
                                sigma=sigma, coefficients=dict(truth["coefficients"]))
    return types.SimpleNamespace(population=pop, name="study truth")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", help="a recorded study (path without .jsonl)")
    ap.add_argument("--seeds", type=int, default=3, help="replicate designs evaluated")
    ap.add_argument("--mcmc", type=int, default=0, metavar="R",
                    help="also the exact (MCMC) information, R simulated data sets per design")
    args = ap.parse_args(argv)

    from progression.fit import evaluate_design
    from progression.fit.problem import Problem

    study = Path(args.study)
    meta = json.loads(study.with_suffix(".meta.json").read_text())
    lines = [json.loads(x) for x in study.with_suffix(".jsonl").read_text().splitlines()
             if x.strip()]
    lines = [x for x in lines if "score" in x]
    cfg = pr.read_config(meta["config"], meta.get("options"), meta["config_text"])
    design = meta.get("design", "clinic")
    names = list(Problem.from_config(cfg).names)
    truth = dict(prm.TRUTH)
    if "kappa_nfl" in [p.name for p in cfg.parameters if p.estimate == "population"]:
        # the studies recorded before 2026-12-02 had the NfL offset on kappa_nfl (TRUTH's note)
        truth = {**truth, "typical": {**truth["typical"], "kappa_nfl": 6000.0},
                 "omega": {**truth["omega"], "kappa_nfl": 0.09}}
    at = truth_population(names, truth)
    ses, mc_ses, mc_err = [], [], []
    seconds = mc_seconds = 0.0
    for seed in range(int(meta["seed0"]), int(meta["seed0"]) + args.seeds):
        designs, _, _ = prm.simulate_replicate(
            int(meta["n"]), seed, cfg, truth,
            cohort_config=None if design == "clinic" else prm.design_config(design))
        t0 = time.perf_counter()
        ev = evaluate_design(cfg, fit=at, data=designs)
        seconds += (time.perf_counter() - t0) / args.seeds
        ses.append(dict(zip(ev.names, ev.se / np.abs(ev.values), strict=True)))
        if args.mcmc:
            t0 = time.perf_counter()
            ev = evaluate_design(cfg, fit=at, data=designs, method="mcmc",
                                 replicates=args.mcmc, seed=seed)
            mc_seconds += (time.perf_counter() - t0) / args.seeds
            mc_ses.append(dict(zip(ev.names, ev.se / np.abs(ev.values), strict=True)))
            mc_err.append(dict(zip(ev.names, ev.se_mc / np.abs(ev.values), strict=True)))
    rows = []
    for kind, key in (("typical", ""), ("omega", "omega^2 ")):
        for k in lines[0]["score"][kind]:
            held = lines[0]["score"][kind][k].get("held")
            if held or f"{key}{k}" not in ses[0]:
                continue
            est = np.array([x["score"][kind][k]["estimate"] for x in lines])
            emp = float(np.std(np.log(est), ddof=1))
            pred = float(np.mean([s[f"{key}{k}"] for s in ses]))
            mc = (float(np.mean([s[f"{key}{k}"] for s in mc_ses])),
                  float(np.sqrt(np.nanmean([e[f"{key}{k}"] ** 2 for e in mc_err]) / args.seeds)))\
                if mc_ses else None
            rows.append((f"{key}{k}", emp, pred, mc))
    mc_flag = f" --mcmc {args.mcmc}" if args.mcmc else ""
    out = [f"# Design evaluation against the study {study.name}", "",
           f"Run {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC: `python "
           f"benchmarks/design_evaluation_als.py {study} --seeds {args.seeds}{mc_flag}`. "
           f"The study: "
           f"{len(lines)} replicates of {meta['n']} patients, design `{design}`, fitted with "
           f"its own config text ({meta['command']}). Predicted: the reduced FO information at "
           f"the study's truth on {args.seeds} of its replicate designs (seeds from "
           f"{meta['seed0']}; mean of their SEs), {seconds:.1f} s per design. The SD of "
           f"{len(lines)} estimates is known to about "
           f"±{100 / math.sqrt(2 * (len(lines) - 1)):.0f} %."
           + (f" Exact (MCMC) information: `method=\"mcmc\"`, {args.mcmc} simulated data "
              f"sets per design, {mc_seconds:.0f} s per design (± its Monte Carlo error)."
              if args.mcmc else ""), "",
           "| parameter (log scale) | empirical SD of the estimates | predicted SE, FO | "
           "FO / empirical |" + (" predicted SE, MCMC | MCMC / empirical |" if args.mcmc
                                 else ""),
           "|---|---:|---:|---:|" + ("---:|---:|" if args.mcmc else "")]
    for name, emp, pred, mc in rows:
        line = f"| {name} | {emp:.3f} | {pred:.3f} | {pred / emp:.2f} |"
        if mc is not None:
            line += f" {mc[0]:.3f} ± {mc[1]:.3f} | {mc[0] / emp:.2f} |"
        out.append(line)
    text = "\n".join(out) + "\n"
    print(text)
    Path(f"{study}_design.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
