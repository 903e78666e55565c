"""Profile-likelihood intervals of a shipped population fit, beside its Wald intervals.

    python benchmarks/population_profile.py configs/als_synthetic_population.toml \\
        --parameter "omega^2 eD" --parameter eD --truth "omega^2 eD=0.0901" --truth eD=0.341 \\
        --out benchmarks/results/als_population_profile

Reads the fit the config writes (``[output] folder``, or ``--fit FOLDER``), profiles each
parameter by refits with it held (:func:`progression.fit.profile_population`), and writes
``OUT.json`` (one entry per parameter: the refits, both intervals, whether the truth is
covered) and ``OUT_<parameter>.png`` (the profile). ``--truth NAME=VALUE`` adds a refit at
the generating value: the likelihood-ratio test there is what a profile interval's coverage
of the truth means.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--parameter", action="append", required=True)
    ap.add_argument("--truth", action="append", default=[],
                    help="NAME=VALUE: also refit at the generating value")
    ap.add_argument("--fit", help="fit folder (default: the config's [output] folder)")
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--max-refits", type=int, default=6)
    ap.add_argument("--out", required=True, help="output prefix (OUT.json, OUT_<p>.png)")
    args = ap.parse_args(argv)

    from progression.fit import load_fit, profile_population, read_fit_config
    from progression.fit._population_profile import slug

    cfg = read_fit_config(args.config)
    folder = args.fit or cfg.output["folder"]
    fit = load_fit(folder)
    truths = dict(t.rsplit("=", 1) for t in args.truth)
    out = Path(args.out)
    path = out.with_suffix(".json")
    done = json.loads(path.read_text()) if path.exists() else {"profiles": {}}
    for name in args.parameter:
        if name in done["profiles"]:
            print(f"{name}: already in {path}, skipped", file=sys.stderr)
            continue
        t = time.perf_counter()
        p = profile_population(cfg, name, fit=fit, level=args.level,
                               max_refits=args.max_refits, progress=True)
        entry = p.to_dict()
        if name in truths:
            truth = float(truths[name])
            at = profile_population(cfg, name, fit=fit, level=args.level, values=[truth])
            entry.update(truth=truth, delta_ofv_at_truth=at.delta_ofv[0],
                         profile_covers_truth=at.delta_ofv[0] <= p.threshold,
                         wald_covers_truth=p.wald[0] <= truth <= p.wald[1])
        entry["wall_seconds"] = time.perf_counter() - t
        print(p.table(), flush=True)
        done["profiles"][name] = entry
        done.update(config=args.config, fit=str(folder),
                    date=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    command="python benchmarks/population_profile.py " + " ".join(
                        f'"{a}"' if " " in a else a for a in (argv or sys.argv[1:])))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(done, indent=1) + "\n")
        tmp.replace(path)
        fig = p.plot()
        fig.savefig(f"{out}_{slug(name)}.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
