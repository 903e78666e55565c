"""Recovery of hazard parameters by the joint longitudinal + survival fit (issue 13).

Replicates of a 200-patient cohort of the joint toy model of ``tests/test_hazard_recovery.py``
(marker ``x = exp(-k_i t)``, ``k_i`` log-normal with log-SD 0.8; hazard
``h0 exp(a (1 - x))`` with ``h0 = 0.01/month``, ``a = 3``; death when the cumulative hazard
reaches each patient's Exp(1) threshold; enrolment 6 months after model time 0, so patients
dead by then are never seen (left truncation); 36 months of follow-up, visits every 3
months, marker SD 0.05), each fitted by the pooled estimator (``k_i`` per patient, ``h0`` and
``a`` shared) with delayed entry at enrolment. Reports per parameter the mean estimate, the
relative bias, the empirical SD against the mean reported SE, and the coverage of the 95%
covariance intervals.

    python benchmarks/hazard_recovery.py [--replicates 10] [--n 200] [--interval]

Writes ``benchmarks/results/hazard_recovery.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from test_hazard_recovery import TRUE, cohort, config  # noqa: E402

from progression.fit import fit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--interval", action="store_true",
                    help="interval-censored events (between the last visit and the death)")
    args = ap.parse_args(argv)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.replicates):
            t0 = time.perf_counter()
            _, data, _ = cohort(tmp, args.n, seed=1000 + r)
            events = int(np.sum(np.asarray(data.events["event"]) == "death"))
            res = fit(config(tmp, interval=args.interval), data=data)
            row = {"replicate": r, "deaths": events, "seconds": time.perf_counter() - t0}
            for name in TRUE:
                row[name] = float(res.estimates(name)[0])
                row[f"{name}_se"] = float(res.standard_errors(name)[0])
            rows.append(row)
            print(f"replicate {r}: deaths {events}/{args.n}, "
                  + ", ".join(f"{n} {row[n]:.4g} (SE {row[n + '_se']:.3g})" for n in TRUE)
                  + f", {row['seconds']:.1f} s", flush=True)
    summary = {}
    for name, true in TRUE.items():
        est = np.array([r[name] for r in rows])
        se = np.array([r[f"{name}_se"] for r in rows])
        cover = np.mean(np.abs(est - true) <= 1.96 * se)
        summary[name] = {"true": true, "mean": float(est.mean()),
                         "relative_bias": float(est.mean() / true - 1.0),
                         "empirical_sd": float(est.std(ddof=1)) if est.size > 1 else None,
                         "mean_se": float(se.mean()), "coverage_95": float(cover)}
    out = {"benchmark": "hazard_recovery", "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": "python benchmarks/hazard_recovery.py " + " ".join(argv or sys.argv[1:]),
           "n": args.n, "replicates": args.replicates, "interval": args.interval,
           "seconds": time.perf_counter() - start, "summary": summary, "rows": rows}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stem = "hazard_recovery" + ("_interval" if args.interval else "")
    (results / f"{stem}.json").write_text(json.dumps(out, indent=1))
    lines = [f"# Hazard recovery ({out['date']})", "", f"`{out['command']}`: {args.replicates} "
             f"replicates of {args.n} patients, {out['seconds']:.0f} s", "",
             "| parameter | true | mean | rel. bias | empirical SD | mean SE | 95% coverage |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        sd = "" if s["empirical_sd"] is None else f"{s['empirical_sd']:.4g}"
        lines.append(f"| {name} | {s['true']:g} | {s['mean']:.4g} | {s['relative_bias']:+.1%} | "
                     f"{sd} | {s['mean_se']:.4g} | {s['coverage_95']:.0%} |")
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
