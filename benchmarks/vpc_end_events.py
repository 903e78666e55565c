"""The ALS population fit's VPCs with and without death as an end event of the simulations.

Reloads a population fit folder (default ``fits/als_synthetic_population``) and scores its
prediction-corrected VPCs (per percentile, the bins whose observed value lies outside the
simulated 95 % band; the share of simulated values lost to death per bin) under four ways of
simulating the design:

- ``none``: every observation of the design is simulated (the VPC before ``vpc_end_events``);
- ``hazard``: death as the model defines it by default, its calibrated hazard with an Exp(1)
  threshold drawn per simulated patient (``vpc_end_events = ["death"]``, the shipped config);
- ``threshold``: death where N falls to Ndeath = 0.42 (``death_threshold = 1``: the shipped
  data's generator, ``configs/cohorts/als_clinic_v1.toml``, without its spread);
- ``threshold_spread``: the same with Ndeath ~ N(0.42, 0.06) per simulated patient, truncated
  to the model's bounds [0.15, 0.45] as the generator draws it.

The fit's estimates are not touched: only the simulations behind the VPC change.

    python benchmarks/vpc_end_events.py [--fit fits/als_synthetic_population] [--sims 100]

Results (2026-12-02): benchmarks/results/als_population_controls.md, last section.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("none", "hazard", "threshold", "threshold_spread")
NDEATH, NDEATH_SD, NDEATH_BOUNDS = 0.42, 0.06, (0.15, 0.45)


def score(fit_dir: Path, variant: str, n_sim: int) -> str:
    import progression as pg
    from progression.fit.population import _outputs as outputs
    from progression.fit.population import _vpc_events as events

    res = pg.load_fit(fit_dir)
    res.provenance["options"]["vpc_end_events"] = [] if variant == "none" else ["death"]
    model_of, draw = outputs._model, events.EndEvents.draw

    def held(result):
        model, mu, eta_cols, residual = model_of(result)
        names = model.problem.model.parameter_names
        if variant.startswith("threshold"):
            model.theta[names.index("death_threshold")] = 1.0
            model.theta[names.index("Ndeath")] = NDEATH
        return model, mu, eta_cols, residual

    def spread(self, theta, index, rng):
        theta = np.array(theta, dtype=float, copy=True)
        x = rng.normal(NDEATH, NDEATH_SD, theta.shape[0])
        lo, hi = NDEATH_BOUNDS
        while np.any(bad := (x < lo) | (x > hi)):   # redrawn, as the generator truncates
            x[bad] = rng.normal(NDEATH, NDEATH_SD, int(bad.sum()))
        theta[:, self.problem.model.parameter_names.index("Ndeath")] = x
        return draw(self, theta, index, rng)

    outputs._model = held
    if variant == "threshold_spread":
        events.EndEvents.draw = spread
    try:
        t0 = time.perf_counter()
        out = outputs.population_outputs(res, n_sim=n_sim)
    finally:
        outputs._model, events.EndEvents.draw = model_of, draw
    lines = [f"{variant} ({n_sim} simulations, {time.perf_counter() - t0:.0f} s)"]
    for name, v in out.vpcs.items():
        miss = (v.observed < v.sim_lo) | (v.observed > v.sim_hi)
        parts = ", ".join(f"{p:g}th {int(miss[:, j].sum())}" for j, p in enumerate(v.percentiles))
        lost = ("" if v.sim_ended is None else "; lost to death per bin "
                + " ".join(f"{100 * x:.0f}%" for x in v.sim_ended))
        lines.append(f"  {name:9s} {len(v.x)} bins, outside the band: {parts}{lost}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default=str(ROOT / "fits" / "als_synthetic_population"))
    ap.add_argument("--sims", type=int, default=100)
    ap.add_argument("variants", nargs="*", metavar="VARIANT",
                    help=f"some of {', '.join(VARIANTS)} (default: all)")
    a = ap.parse_args(argv)
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; expected some of "
                 f"{', '.join(VARIANTS)}")
    for variant in a.variants or VARIANTS:
        print(score(Path(a.fit), variant, a.sims), flush=True)


if __name__ == "__main__":
    main()
