"""Profile of the population likelihood along eD's omega^2 on replicates of the well-specified
ALS recovery study.

``population_recovery_model.py`` draws a replicate's values from the shipped fit's own
population model (eD log-normal, omega^2 0.09) on the clinic generator's design; its SAEM fits
put omega^2 eD at +98.5 % (median of 50 replicates). Is that the likelihood (its maximum is
there, or it is flat) or the estimator (SAEM not reaching the maximum)? Each profile point
refits the replicate with ``[parameters.eD] eta`` fixed (``eta_fixed = true``) at one value,
every other parameter estimated; the free fit is refitted alongside with the same estimator
options, and all OFVs (importance sampling, ``-2 log L`` without ``n log 2 pi``) are
compared. A profile that rises by less than 3.84 between the free estimate and the truth 0.09
means the data do not distinguish them (95 % profile-likelihood interval).

    nice -n 10 python benchmarks/als_ed_profile.py --seeds 1000 1008 --omegas 0.03 0.09 0.18 \\
        0.36 --workers 2 --option is_samples=1000

One JSON line per fit in ``--out`` (default
``benchmarks/results/als_ed_profile.jsonl``; resumable: a (seed, omega, options) already there
is skipped); ``--summary`` prints the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population_recovery as pr  # noqa: E402
import population_recovery_model as prm  # noqa: E402

ROOT = pr.ROOT
OUT = ROOT / "benchmarks" / "results" / "als_ed_profile.jsonl"
ED_BLOCK = re.compile(r'(\[parameters\.eD\]\n(?:[^\[\n][^\n]*\n)*?)eta = [0-9.eE+-]+\n'
                      r'(?:eta_fixed = (?:true|false)[^\n]*\n)?')


def config_text(omega: float | None, base: str | None = None) -> str:
    """The shipped config's text with eD's omega^2 fixed at ``omega`` (None: estimated, from
    the config's value)."""
    text = base if base is not None else pr.FIT_CONFIG.read_text()
    if not ED_BLOCK.search(text):
        raise SystemExit(f"{pr.FIT_CONFIG}: no [parameters.eD] eta = ... to edit")
    if omega is None:
        return ED_BLOCK.sub(lambda m: m.group(0).split("eta = ")[0] + "eta = "
                            + m.group(0).split("eta = ")[1].split("\n")[0] + "\n", text,
                            count=1)
    return ED_BLOCK.sub(lambda m: m.group(1) + f"eta = {omega!r}\neta_fixed = true\n", text,
                        count=1)


def profile_point(seed: int, omega: float | None, options: dict, n: int = 200) -> dict:
    """Simulate replicate ``seed`` of the well-specified study and fit it with eD's omega^2
    fixed at ``omega`` (None: estimated); one JSON-able line."""
    from progression.fit.estimate import fit

    line = {"seed": int(seed), "omega_eD": omega, "options": options, "n": int(n),
            "started": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "load": os.getloadavg()[0]}
    try:
        text = config_text(omega)
        cfg = pr.read_config(pr.FIT_CONFIG, options, text)
        designs, _, _ = prm.simulate_replicate(n, seed, cfg)
        t = time.perf_counter()
        res = fit(cfg, data=designs)
        line["seconds"] = time.perf_counter() - t
        pop = res.population
        line["ofv"] = float(pop.ofv)
        line["typical"] = {k: float(v) for k, v in pop.fixed_effects.items()}
        line["omega"] = {k: float(pop.omega[i, i]) for i, k in enumerate(pop.omega_names)}
        line["sigma"] = {k: float(v) for k, v in pop.sigma.items()}
        line["shrinkage"] = {k: float(v) for k, v in (pop.shrinkage or {}).items()}
    except Exception as exc:  # a failed fit is a result: recorded, not raised
        line["error"] = f"{type(exc).__name__}: {exc}"
        line["traceback"] = traceback.format_exc()[-2000:]
    line["finished"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return line


def _same(a: dict, seed: int, omega, options: dict) -> bool:
    return (a.get("seed") == seed and a.get("omega_eD") == omega
            and a.get("options") == options and "error" not in a)


def _order(x: dict) -> tuple:
    """Free fit first, then the fixed values in increasing order."""
    return (x["omega_eD"] is not None, x["omega_eD"] or 0.0)


def summary(lines: list[dict]) -> str:
    """One table per (seed, options): OFV relative to the lowest, eD's estimates."""
    out = []
    groups: dict = {}
    for x in lines:
        if "error" in x:
            continue
        groups.setdefault((x["seed"], json.dumps(x["options"], sort_keys=True)), []).append(x)
    for (seed, opts), xs in sorted(groups.items()):
        best = min(x["ofv"] for x in xs)
        out.append(f"\nreplicate seed {seed}, options {opts}\n")
        out.append("| omega^2 eD | OFV - min | typical eD | typical Q0 | omega^2 Q0 | "
                   "shrinkage eD | seconds |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for x in sorted(xs, key=_order):
            om = x["omega"]["eD"]
            lab = (f"{om:.3f} (free)" if x["omega_eD"] is None else f"{om:.3f} (fixed)")
            out.append(f"| {lab} | {x['ofv'] - best:.2f} | {x['typical']['eD']:.4f} | "
                       f"{x['typical']['Q0']:.3f} | {x['omega']['Q0']:.3f} | "
                       f"{x['shrinkage'].get('eD', np.nan):.2f} | {x['seconds']:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000])
    ap.add_argument("--omegas", type=float, nargs="*", default=[0.045, 0.09, 0.18, 0.36],
                    help="omega^2 eD values to fix (the free fit is added)")
    ap.add_argument("--no-free", action="store_true", help="skip the free fit")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="[estimator] option override, e.g. is_samples=1000")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.summary:
        print(summary(pr.load_lines(out)))
        return 0
    options = {}
    for kv in a.option:
        k, _, v = kv.partition("=")
        options[k] = int(v) if v.lstrip("-").isdigit() else v
    done = pr.load_lines(out)
    points = [(s, w) for s in a.seeds
              for w in ([] if a.no_free else [None]) + list(a.omegas)
              if not any(_same(x, s, w, options) for x in done)]

    def record(line):
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        msg = line.get("error", "")[:200] or (
            f"OFV {line['ofv']:.2f}, eD {line['typical']['eD']:.4f}, omega^2 eD "
            f"{line['omega']['eD']:.4f}, {line['seconds']:.0f} s")
        print(f"seed {line['seed']} omega {line['omega_eD']}: {msg}", flush=True)

    if a.workers <= 1:
        for s, w in points:
            record(profile_point(s, w, options))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        os.environ["NUMBA_NUM_THREADS"] = "1"
        with cf.ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(profile_point, s, w, options) for s, w in points]
            for f in cf.as_completed(futs):
                record(f.result())
    print(summary(pr.load_lines(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
