"""Coverage of the profile-likelihood interval on a recorded recovery study: the
likelihood-ratio test at the truth, replicate by replicate.

A profile-likelihood interval at level L covers the truth exactly when the likelihood-ratio
statistic there, ``OFV(truth) - OFV_hat`` with ``OFV(truth)`` the fit with the parameter held
at the truth and everything else estimated, is at most ``chi2_1(L)`` (3.84 at 95 %). So one
refit per replicate scores the coverage of the interval that ``progression profile`` and
:func:`progression.fit.profile_population` compute, without searching its ends.

For each replicate line of ``STUDY.jsonl``, the data are re-simulated exactly: for a generator
study (``benchmarks/population_recovery.py``) by the clinic generator with the same seed and
size; for a well-specified study (``benchmarks/population_recovery_model.py``, its meta.json
names a ``design``) from the fit's own population model at the truth the replicate recorded
(typical values, Omega and covariate effects from its score lines, residual SDs from that
script's ``TRUTH``), on the study's design. The study's own config text (``STUDY.meta.json``)
is refitted with the parameter held at that replicate's truth
(:func:`progression.fit.with_parameter_held`; the same options, seed and starting values as
the study's free fit), and the difference to the recorded OFV of the free fit is stored.
``--check-free SEED`` first refits one replicate's free fit and compares its OFV with the
recorded one (the study is reproducible only if they agree to the digit).

    nice -n 5 python benchmarks/population_recovery_lr.py \\
        benchmarks/results/population_recovery_20261202 --parameter "omega^2 eD" --workers 2
    nice -n 5 python benchmarks/population_recovery_lr.py \\
        benchmarks/results/population_recovery_model_treg_all --parameter "omega^2 eD" \\
        --check-free 1000 --workers 2

Writes ``STUDY_lr_<parameter>.jsonl`` (one line per replicate, resumable) and ``.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import json
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population_recovery as pr  # noqa: E402  (the study's data and config)
import population_recovery_model as prm  # noqa: E402  (well-specified studies' data)

ROOT = pr.ROOT


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _kind(parameter: str) -> tuple[str, str]:
    """(score section, parameter) of a name: ``omega^2 eD`` -> ("omega", "eD")."""
    if parameter.startswith("omega^2 "):
        return "omega", parameter[len("omega^2 "):]
    return "typical", parameter


def truth_of(line: dict) -> dict:
    """The truth a well-specified study drew replicate ``line`` from: typical values, Omega and
    covariate effects as its score recorded them (the studies before 2026-12-02 had the NfL
    offset on kappa_nfl, today's TRUTH has it on nfl_scale), residual SDs from
    ``population_recovery_model.TRUTH`` (unchanged since the first study)."""
    sc = line["score"]
    return {"typical": {k: v["truth"] for k, v in sc["typical"].items()},
            "omega": {k: v["truth"] for k, v in sc["omega"].items()},
            "coefficients": {k: v["truth"] for k, v in sc.get("coefficients", {}).items()},
            "sigma": dict(prm.TRUTH["sigma"])}


def simulate(line: dict, n: int, cfg, design: str | None):
    """Replicate ``line``'s data again: the clinic generator's (``design`` None) or drawn
    from ``cfg``'s own population model on ``design`` (a well-specified study)."""
    if design is None:
        return pr.simulate_replicate(n, line["seed"], cfg)[0]
    cohort_config = None if design == "clinic" else prm.design_config(design)
    return prm.simulate_replicate(n, line["seed"], cfg, truth_of(line),
                                  cohort_config=cohort_config)[0]


def refit(line: dict, n: int, config_path: str, text: str, options: dict, parameter: str,
          value: float | None, design: str | None = None) -> dict:
    """Re-simulate replicate ``line`` and fit it, with ``parameter`` held at ``value`` (None:
    the free fit); ``{"ofv", "seconds", "iterations"}`` or ``{"error"}``."""
    from progression.fit import fit, with_parameter_held

    out = {"seed": int(line["seed"]), "held": value, "started": _now()}
    try:
        cfg = pr.read_config(config_path, options, text)
        # the data from the study's (free) config: holding a parameter must not change them
        data = simulate(line, n, cfg, design)
        if value is not None:
            cfg = with_parameter_held(cfg, parameter, value)
        t = time.perf_counter()
        res = fit(cfg, data=data)
        out.update(ofv=float(res.population.ofv), seconds=time.perf_counter() - t,
                   iterations=int(res.population.iterations))
    except Exception as exc:  # a failed refit is a result: recorded, not raised
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()[-2000:]
    out["finished"] = _now()
    return out


def summarise(lines: list[dict], level: float) -> dict:
    from scipy.stats import chi2

    crit = float(chi2.ppf(level, 1))
    ok = [d for d in lines if "delta_ofv" in d and math.isfinite(d["delta_ofv"])]
    prof = sum(d["delta_ofv"] <= crit for d in ok)
    wald = [d for d in ok if d.get("wald_covered") is not None]
    return {"replicates": len(lines), "scored": len(ok), "threshold": crit,
            "profile_covered": prof, "wald_with_se": len(wald),
            "wald_covered": sum(bool(d["wald_covered"]) for d in wald),
            "negative": sum(d["delta_ofv"] < 0 for d in ok),
            "deltas": sorted(round(d["delta_ofv"], 2) for d in ok)}


def markdown(meta: dict, s: dict, parameter: str, study: Path, command: str) -> str:
    def pct(a, b):
        return (f"{a}/{b} = {100 * a / b:.0f} %" if b else "n/a")
    return "\n".join([
        f"# Profile-likelihood coverage of {parameter}: {study.name}", "",
        f"Command: `{command}`. Study: `{_rel(study)}.jsonl` ({meta.get('title', '')}; config "
        f"`{meta.get('config')}` as recorded in its meta.json, SHA-256 "
        f"{str(meta.get('config_sha', ''))[:12]}; options {json.dumps(meta.get('options', {}))}). "
        f"Each replicate refitted with {parameter} held at its truth, everything else "
        f"estimated as in the study; statistic `OFV(truth) - OFV_hat` (the recorded free "
        f"fit's importance-sampling OFV). The {100 * s['level']:g} % profile-likelihood "
        f"interval covers the truth when it is at most {s['threshold']:.3f}.", "",
        "| interval | covers the truth | replicates |", "|---|---:|---:|",
        f"| profile likelihood (LR test at the truth) | "
        f"{pct(s['profile_covered'], s['scored'])} | {s['scored']} |",
        f"| Wald (the study's, SAEM's SEs on the log scale) | "
        f"{pct(s['wald_covered'], s['wald_with_se'])} | {s['wald_with_se']} with SEs |", "",
        f"Statistics (sorted): {', '.join(f'{d:.2f}' for d in s['deltas'])}. Below zero "
        f"(the held fit's IS OFV under the free fit's: Monte Carlo noise of the two "
        f"importance-sampling estimates, MC SE ~0.6 each, or a free fit short of its "
        f"maximum): {s['negative']}.", ""])


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="results path of a recovery study, without suffix")
    ap.add_argument("--parameter", required=True, help="e.g. 'omega^2 eD' or eD")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--replicates", type=int, default=None, help="the first N lines only")
    ap.add_argument("--check-free", type=int, default=None, metavar="SEED",
                    help="refit this replicate's free fit first and compare its OFV")
    ap.add_argument("--summary", action="store_true", help="rewrite the .md only")
    args = ap.parse_args(argv)
    command = "python benchmarks/population_recovery_lr.py " + " ".join(
        f'"{a}"' if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))

    study = Path(args.study)
    meta = json.loads(study.with_suffix(".meta.json").read_text())
    lines = [d for d in pr.load_lines(study.with_suffix(".jsonl"), meta["key"])
             if "error" not in d]
    lines = lines[:args.replicates] if args.replicates else lines
    section, name = _kind(args.parameter)
    from progression.fit._population_profile import slug

    out = Path(f"{study}_lr_{slug(args.parameter)}.jsonl")
    done = {d["seed"]: d for d in pr.load_lines(out)} if out.exists() else {}
    config_path = str(ROOT / meta["config"])
    text, options, n = meta["config_text"], meta.get("options", {}), int(meta["n"])
    design = meta.get("design")  # None: a generator study

    if args.check_free is not None and not args.summary:
        rec = next(d for d in lines if d["seed"] == args.check_free)
        r = refit(rec, n, config_path, text, options, args.parameter, None, design)
        print(f"free refit of seed {rec['seed']}: OFV {r.get('ofv')} (recorded "
              f"{rec['ofv']}), {r.get('seconds', 0):.0f} s {r.get('error', '')}", flush=True)

    todo = [d for d in lines if d["seed"] not in done]
    if todo and not args.summary:
        with cf.ProcessPoolExecutor(max(1, args.workers)) as ex:
            futs = {ex.submit(refit, d, n, config_path, text, options,
                              args.parameter, d["score"][section][name]["truth"], design): d
                    for d in todo}
            for f in cf.as_completed(futs):
                rec, r = futs[f], f.result()
                entry = {**r, "truth": rec["score"][section][name]["truth"],
                         "estimate": rec["score"][section][name]["estimate"],
                         "ofv_free": rec["ofv"],
                         "wald_covered": rec["score"][section][name]["covered"]}
                if "ofv" in r:
                    entry["delta_ofv"] = r["ofv"] - rec["ofv"]
                with out.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                done[rec["seed"]] = entry
                print(f"seed {rec['seed']}: held {entry['truth']:.4g} (estimate "
                      f"{entry['estimate']:.4g}): OFV - OFV_hat "
                      f"{entry.get('delta_ofv', float('nan')):+.2f} "
                      f"({len(done)}/{len(lines)})", flush=True)
    s = summarise([done[d["seed"]] for d in lines if d["seed"] in done], args.level)
    s["level"] = args.level
    out.with_suffix(".md").write_text(markdown(meta, s, args.parameter, study, command))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
