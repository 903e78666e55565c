"""SAEM joint (longitudinal + survival) fit: the compiled RK4 path against the exact path.

The joint toy cohort of ``tests/test_population_survival.py`` (marker ``exp(-k t)``, hazard
``h0 exp(a (1 - marker))``, delayed entry), fitted by ``saem`` twice in the same run: as the
estimator chooses (the survival pseudo-observations integrated with the data on the compiled
RK4 path) and with the RK4 path switched off (the exact solver at rtol 1e-8, the path every
joint fit took before 2026-12-02). Prints both wall times, their ratio and the largest
difference of the estimates; appends a row to ``benchmarks/results/saem_survival_speed.md``.

    python benchmarks/saem_survival_speed.py [--n 100] [--k1 150] [--k2 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from test_population_survival import _joint_cohort, _joint_config  # noqa: E402

from progression.fit import fit  # noqa: E402


def _timed(cfg, data, repeats):
    best, res = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fit(cfg, data=data)
        best = min(best, time.perf_counter() - t)
    return best, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k1", type=int, default=150)
    ap.add_argument("--k2", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    saem = importlib.import_module("progression.fit.estimators.saem")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, _ = _joint_cohort(tmp, args.n, seed=2)
        cfg = _joint_config(tmp, args.k1, args.k2)
        fit(cfg, data=data)                      # compile and warm the caches once
        t_fast, fast = _timed(cfg, data, args.repeats)
        applicable = saem.applicable
        saem.applicable = lambda *a: False       # the exact path, as before 2026-12-02
        try:
            t_exact, exact = _timed(cfg, data, args.repeats)
        finally:
            saem.applicable = applicable
    path = fast.provenance["numbers_from"].split(" (")[0]
    diff = max(abs(fast.population.fixed_effects[k] / exact.population.fixed_effects[k] - 1)
               for k in fast.population.fixed_effects)
    line = (f"| {datetime.now(UTC).isoformat(timespec='minutes')} | {args.n} | "
            f"{args.k1} + {args.k2} | {t_fast:.2f} | {t_exact:.2f} | {t_exact / t_fast:.1f}x | "
            f"{diff:.1e} |")
    print(f"RK4 path ({path}): {t_fast:.2f} s; exact path: {t_exact:.2f} s; "
          f"ratio {t_exact / t_fast:.1f}x; largest relative difference of the typical values "
          f"{diff:.1e}")
    out = HERE / "results" / "saem_survival_speed.md"
    if not out.exists():
        out.write_text("# SAEM joint fit: compiled RK4 path vs exact path "
                       "(`python benchmarks/saem_survival_speed.py`; best of the repeats)\n\n"
                       "| date (UTC) | patients | iterations | RK4 s | exact s | ratio | "
                       "max rel. diff of typical values |\n|---|---:|---|---:|---:|---:|---:|\n")
    with out.open("a") as fh:
        fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
