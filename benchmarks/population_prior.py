"""Priors on a weakly determined variance: maximum likelihood against maximum a posteriori
over replicate data sets, with the cost of the prior.

The design (as ``tests/test_saem_se_fallback.py``): 40 subjects, IV bolus (``pk_iv_bolus``,
dose 100), samples at 1, 4 and 12 h, log-normal random effects on CL (variance 0.09) and V
(0.01: weakly determined, SE of log omega^2 V ~0.9, as eD's in the ALS study), log-normal
residual 0.3. Each replicate is fitted by FOCE-I twice from the same config: without priors
(the baseline) and with ``eta_prior = { value = PRIOR, df = DF }`` on V's variance (default a
prior centred at twice the truth, 0.02, carrying 20 subjects' worth of information). Prints,
for log omega^2 V and the typical values: median error, RMSE and the coverage of the 95 %
Wald interval (the posterior's with the prior), the wall time of both fits and their ratio;
appends a row to ``benchmarks/results/population_prior.md``.

    python benchmarks/population_prior.py [--replicates 50] [--prior 0.02] [--df 20]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from progression.fit import Design, fit
from progression.fit.config import parse_fit_config

HERE = Path(__file__).resolve().parent
TIMES = np.array([1.0, 4.0, 12.0])
OMEGA = {"CL": 0.09, "V": 0.01}
TYPICAL = {"CL": 5.0, "V": 50.0}
SIGMA, N = 0.3, 40

CONFIG = """
[fit]
name = "prior_study"
model = "pk_iv_bolus"
estimator = "focei"

[error.conc]
model = "lognormal"
sigma = {{ value = 0.3, estimate = "population", bounds = [0.01, 2.0] }}

[parameters.dose]
estimate = "fixed"
value = 100.0

[parameters.CL]
estimate = "population"
value = 5.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.1

[parameters.V]
estimate = "population"
value = 50.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.1
{prior}
"""


def designs(seed: int) -> list:
    """One replicate: 40 subjects from the closed-form IV bolus."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((N, 2)) * np.sqrt([OMEGA["CL"], OMEGA["V"]])
    cl, v = TYPICAL["CL"] * np.exp(eta[:, 0]), TYPICAL["V"] * np.exp(eta[:, 1])
    f = 100.0 / v[:, None] * np.exp(-(cl / v)[:, None] * TIMES)
    y = f * np.exp(SIGMA * rng.standard_normal(f.shape))
    m = TIMES.size
    return [Design(f"s{i}", TIMES.copy(), np.zeros(m, dtype=int), y[i], np.zeros(m, int),
                   np.full(m, np.nan)) for i in range(N)]


def _fit(text: str, data):
    cfg = parse_fit_config(text, source="prior_study.toml", check_data=False)
    t = time.perf_counter()
    pop = fit(cfg, data=data).population
    return pop, time.perf_counter() - t


def _summaries(pop) -> dict:
    """Estimate and SE on the estimation scale (log) of the three quantities followed."""
    names = list(pop.covariance_names)
    se = np.sqrt(np.diag(pop.covariance))
    out = {}
    for key, est, row in (("log omega^2 V", np.log(pop.omega[1, 1]), "log omega^2 V"),
                          ("log CL", np.log(pop.fixed_effects["CL"]), "theta CL"),
                          ("log V", np.log(pop.fixed_effects["V"]), "theta V")):
        out[key] = (float(est), float(se[names.index(row)]))
    return out


TRUTH = {"log omega^2 V": np.log(OMEGA["V"]), "log CL": np.log(TYPICAL["CL"]),
         "log V": np.log(TYPICAL["V"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--prior", type=float, default=0.02, help="eta_prior value of V")
    ap.add_argument("--df", type=float, default=20.0, help="its degrees of freedom")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    prior = f"eta_prior = {{ value = {args.prior!r}, df = {args.df!r} }}\n"
    rows = {"ML": [], "MAP": []}
    times = {"ML": 0.0, "MAP": 0.0}
    for r in range(args.replicates):
        data = designs(1000 + r)
        for kind, extra in (("ML", ""), ("MAP", prior)):
            pop, dt = _fit(CONFIG.format(prior=extra), data)
            rows[kind].append(_summaries(pop))
            times[kind] += dt
    lines = []
    for key in TRUTH:
        parts = []
        for kind in ("ML", "MAP"):
            est = np.array([row[key][0] for row in rows[kind]])
            se = np.array([row[key][1] for row in rows[kind]])
            err = est - TRUTH[key]
            ok = np.isfinite(se) & (se > 0)
            cover = np.mean(np.abs(err[ok]) <= 1.96 * se[ok]) if ok.any() else np.nan
            parts.append(f"{kind}: median error {np.median(err):+.3f}, RMSE "
                         f"{np.sqrt(np.mean(err ** 2)):.3f}, 95 % Wald coverage "
                         f"{100 * cover:.0f} % of {int(ok.sum())} with an SE")
        if key == "log omega^2 V":
            gone = sum(row[key][0] < np.log(1e-6) for row in rows["ML"])
            lines.append(f"omega^2 V below 1e-6 (collapsed to the bound): ML {gone}, MAP "
                         f"{sum(row[key][0] < np.log(1e-6) for row in rows['MAP'])} of "
                         f"{args.replicates}")
        lines.append(f"{key}: " + "; ".join(parts))
    ratio = times["MAP"] / times["ML"]
    lines.append(f"wall time: ML {times['ML']:.1f} s, MAP {times['MAP']:.1f} s "
                 f"({ratio:.2f}x the ML fits), {args.replicates} replicates of each")
    print("\n".join(lines))
    out = HERE / "results" / "population_prior.md"
    if not out.exists():
        out.write_text("# Priors on a weakly determined variance (benchmarks/population_prior.py)"
                       "\n\nFOCE-I on 40 IV-bolus subjects (omega^2 V = 0.01, SE of its log "
                       "~0.9), each replicate fitted without and with `eta_prior` on V's "
                       "variance. Errors on the log scale; coverage of the 95 % Wald "
                       "interval.\n")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with out.open("a") as fh:
        fh.write(f"\n## {stamp}: {args.replicates} replicates, prior value {args.prior}, df "
                 f"{args.df} (load {load:.2f} at the start)\n\n"
                 + "\n".join(f"- {line}" for line in lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
