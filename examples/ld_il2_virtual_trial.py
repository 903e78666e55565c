"""A MIROCALS-like virtual trial of low-dose IL-2: power against sample size.

    python examples/ld_il2_virtual_trial.py               # 18 months, up to 300 per arm
    python examples/ld_il2_virtual_trial.py --small       # quick
    python examples/ld_il2_virtual_trial.py --workers 4   # fan out over processes

Enrolment: symptom duration 6-24 months, ALSFRS-R >= 30; 1:1 placebo vs IL-2 2 MIU/day x 5 days
every 28 days; visits monthly; ALSFRS-R noise SD 2; dropout 2.5%/month; primary endpoint the
ALSFRS-R slope (Welch t-test), secondary survival (log-rank).
"""

import argparse
from concurrent.futures import ProcessPoolExecutor

import progression.interventions as iv
from progression.trials import Enrolment, VirtualTrial


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: serial)")
    parser.add_argument("--out", default="out/examples/ld_il2_virtual_trial")
    parser.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    args = parser.parse_args(argv)

    sizes = [10, 30] if args.small else [25, 50, 100, 200, 300]
    reps = 20 if args.small else 200
    follow_up = 12.0 if args.small else 18.0
    pool_size = 100 if args.small else 1200
    arms = {"placebo": [], "low-dose IL-2": [iv.ld_il2()]}
    enrolment = Enrolment(duration=(6.0, 24.0), alsfrs_min=30)
    executor = ProcessPoolExecutor(args.workers) if args.workers else None
    try:
        for endpoint in ("slope", "survival"):
            trial = VirtualTrial(arms, enrolment=enrolment, follow_up=follow_up,
                                 endpoint=endpoint)
            curve = trial.power(sizes, reps=reps, seed=7, pool_size=pool_size,
                                executor=executor, progress=not args.quiet)
            curve.write(f"{args.out}/{endpoint}", overwrite=True)  # rerun refreshes it
            print(f"{endpoint}: power " + ", ".join(
                f"n={n}: {p:.2f}" for n, p in zip(curve.sample_sizes, curve.power(),
                                                  strict=True)))
    finally:
        if executor is not None:
            executor.shutdown()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
