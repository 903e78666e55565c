"""Joint fit of the ALS death hazard: recovery of h0, alpha1, alpha2 of als_reduced (issue 13).

Each replicate draws a cohort of ``--n`` patients of ``als_reduced`` with
:func:`progression.virtual.synthesis.simulate_cohort`: pace ``kA`` log-normal (log-SD 0.35),
every other parameter at its default, the death hazard ``[hazards.death]`` at its defaults
(``h0 = 0.0208/month``, ``alpha1 = 0.015/point``, ``alpha2 = 0.5 month/point``) with each
patient's survival score ``z_death ~ N(0, 1)``; enrolment 6 months after clinical onset (patients
dead by then are never enrolled: left truncation), ALSFRS-R every 3 months for up to 36 months
with error SD 2 points (rounded, 0-48), follow-up ended by death. The pooled estimator fits
``kA`` per
patient and ``h0``, ``alpha1``, ``alpha2`` shared, jointly with the events table, delayed entry
at enrolment, each patient's time offset known (the enrolment time on the model clock, a
covariate).

    python benchmarks/hazard_recovery_als.py [--n 200] [--replicates 1]

Writes ``benchmarks/results/hazard_recovery_als.json`` and ``.md``.
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

from progression.data.cohort import Cohort
from progression.fit import fit, parse_fit_config
from progression.model import load_model
from progression.virtual.cohort_config import ObservableSpec, ParameterSpec
from progression.virtual.synthesis import simulate_cohort

HERE = Path(__file__).resolve().parent
NAMES = ("h0", "alpha1", "alpha2")

CONFIG = """
[fit]
model = "{model}"
estimator = "pooled"
[data]
path = "unused.csv"
[error.ALSFRS_R]
model = "additive"
a = 2.0
[parameters.kA]
estimate = "subject"
[parameters.h0]
estimate = "shared"
value = 0.04
[parameters.alpha1]
estimate = "shared"
value = 0.03
[parameters.alpha2]
estimate = "shared"
value = 0.2
[parameters.time_offset]
estimate = "fixed"
value = 0.0
covariate = "enrolment_time"
factor = 1.0
[survival]
entry = "enrolment"
"""


def replicate(n: int, seed: int, tmp: Path, model_ref: str = "als_reduced",
              values: dict | None = None) -> dict:
    model = load_model(model_ref)
    truth_values = {k: float(model.defaults[model.parameter_index(k)]) for k in NAMES}
    truth_values.update(values or {})
    obs = [ObservableSpec(name="ALSFRS_R", model="ALSFRS_R", error="score", residual_sd=2.0,
                          score_range=(0.0, 48.0))]
    params = [ParameterSpec(name="kA", typical=float(model.defaults[model.parameter_index("kA")]),
                            sd=0.35, bounds=(0.005, 0.09))]
    data, truth = simulate_cohort(model, n, observables=obs, parameters=params, seed=seed,
                                  fixed=tuple(truth_values.items()),
                                  interval=3.0, follow_up=(36.0, 36.0), anchor="clinical_onset",
                                  delay=6.0)
    obs_table = {k: list(v) for k, v in data.observations().items()}
    covariates = {s: {"enrolment_time": float(o)}
                  for s, o in zip(truth.subjects, truth["time_offset"], strict=True)}
    cohort = Cohort(obs_table, covariates=covariates, events=data.events,
                    time_unit="month", source=f"als_reduced cohort seed {seed}")
    cfg = parse_fit_config(CONFIG.format(model=model_ref), base_dir=tmp, name="als_joint",
                           source="hazard_als.toml", check_data=False)
    t0 = time.perf_counter()
    res = fit(cfg, data=cohort)
    row = {"seed": seed, "deaths": int(np.sum(np.asarray(data.events["event"]) == "death")),
           "seconds": time.perf_counter() - t0}
    for k in NAMES:
        row[k] = float(res.estimates(k)[0])
        row[f"{k}_se"] = float(res.standard_errors(k)[0])
        row[f"{k}_true"] = truth_values[k]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--replicates", type=int, default=1)
    ap.add_argument("--model", default="als_reduced", help="model name or file")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="true hazard parameter values (default: the model's)")
    args = ap.parse_args(argv)
    values = {k: float(v) for k, v in (x.split("=", 1) for x in args.set)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.replicates):
            row = replicate(args.n, 2000 + r, Path(tmp), args.model, values)
            rows.append(row)
            print(f"replicate {r}: deaths {row['deaths']}/{args.n}, fit {row['seconds']:.0f} s, "
                  + ", ".join(f"{k} {row[k]:.4g} (SE {row[k + '_se']:.2g}, true "
                              f"{row[k + '_true']:g})" for k in NAMES), flush=True)
    out = {"benchmark": "hazard_recovery_als",
           "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": "python benchmarks/hazard_recovery_als.py " + " ".join(
               argv if argv is not None else sys.argv[1:]), "n": args.n, "rows": rows}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out["model"] = args.model
    (results / "hazard_recovery_als.json").write_text(json.dumps(out, indent=1))
    lines = [f"# ALS hazard recovery ({out['date']})", "", f"`{out['command']}`", "",
             "| replicate | deaths | fit s | " + " | ".join(
                 f"{k} (true {rows[0][k + '_true']:g}): est (SE), z" for k in NAMES) + " |",
             "|---|---|---|" + "---|" * len(NAMES)]
    for i, row in enumerate(rows):
        cells = [f"{row[k]:.4g} ({row[k + '_se']:.2g}), "
                 f"{(row[k] - row[k + '_true']) / row[k + '_se']:+.1f}" for k in NAMES]
        lines.append(f"| {i} | {row['deaths']}/{args.n} | {row['seconds']:.0f} | "
                     + " | ".join(cells) + " |")
    (results / "hazard_recovery_als.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
