"""Benchmark: FOCE-I on R's Theoph with the population core vs a naive nested optimisation.

Issue 11 asks for FOCE-I on theophylline (12 subjects) at least 20x faster than a naive
implementation (nested ``scipy.optimize.minimize`` with finite-difference gradients) and under
1 s on 2 cores. This measures the *numerical core* (``progression.fit.population``) with the
closed-form one-compartment model, not yet the ODE pipeline of an estimator:

* model: nlmixr2's ``one.cmt`` on ``theo_sd`` (``data/examples/theoph.csv``): log ka, log CL,
  log V with diagonal Omega, additive error, the real doses; start at nlmixr2's initial
  values (tka 0.45, tcl 1, tv 3.45, eta variances 0.6, 0.3, 0.1, add.sd 0.7);
* **core**: ``scipy.optimize.minimize(method="BFGS")`` over (theta, log omega^2, log add.sd)
  with the objective and exact gradient of ``focei_gradient`` (inner modes in lockstep,
  warm-started from the previous evaluation);
* **naive**: the same outer BFGS with finite-difference gradients, each objective evaluation
  solving every subject's inner problem with ``scipy.optimize.minimize`` (BFGS,
  finite-difference gradient, ``gtol`` 1e-9, from eta = 0) and the FOCE-I formula with
  finite-difference ``df/deta``, one subject at a time (outer difference step 1e-6: with
  scipy's default steps and inner tolerance the outer search stalls near OFV 126.8).

Both must reach the same objective (published nlmixr2 OBJF 116.8036). Results go to
``benchmarks/results/population_core.md`` and ``.json``.

Run: ``python benchmarks/population_core.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from progression.fit.population import PopulationData, Residual, focei_gradient

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).parent.parent / "data" / "examples" / "theoph.csv"
X0 = np.r_[0.45, 1.0, 3.45, np.log([0.6, 0.3, 0.1]), np.log(0.7)]


def load():
    with open(DATA, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = list(dict.fromkeys(r["ID"] for r in rows))
    obs = [r for r in rows if r["EVID"] == "0"]
    times = [np.array([float(r["TIME"]) for r in obs if r["ID"] == i]) for i in ids]
    ys = [np.array([float(r["DV"]) for r in obs if r["ID"] == i]) for i in ids]
    doses = np.array([float(next(r["AMT"] for r in rows if r["ID"] == i and r["EVID"] == "1"))
                      for i in ids])
    return times, ys, doses


def conc(t, dose, lka, lcl, lv):
    ka, cl, v = np.exp(lka), np.exp(lcl), np.exp(lv)
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


class OneCmt:
    """Closed-form one-compartment oral model, phi = log(ka, CL, V), analytic df/dphi."""

    def __init__(self, times, doses):
        n = max(len(t) for t in times)
        self.t = np.ones((len(times), n))
        for i, t in enumerate(times):
            self.t[i, :len(t)] = t
        self.dose = np.asarray(doses, dtype=float)

    def predict(self, phi, index):
        t = self.t[index]
        dose = self.dose[index][:, None]
        ka, cl, v = (np.exp(phi[:, j])[:, None] for j in range(3))
        k = cl / v
        e1, e2 = np.exp(-k * t), np.exp(-ka * t)
        A = dose * ka / (v * (ka - k))
        f = A * (e1 - e2)
        dka = f * (1.0 / ka - 1.0 / (ka - k)) + A * t * e2
        dk = f / (ka - k) - A * t * e1
        return f, np.stack([ka * dka, k * dk, -f - k * dk], axis=-1)


def fit_core(times, ys, doses):
    model, data = OneCmt(times, doses), PopulationData.from_subjects(ys)
    warm = {"eta": None}
    calls = [0]

    def fg(x):
        calls[0] += 1
        w2, a = np.exp(x[3:6]), np.exp(x[6])
        gr = focei_gradient(model, data, np.tile(x[:3], (len(ys), 1)), np.diag(w2),
                            Residual.additive(a), eta0=warm["eta"])
        if not np.isfinite(gr.ofv):
            return np.inf, np.zeros_like(x)
        warm["eta"] = gr.inner.eta
        return gr.ofv, np.r_[gr.d_mu.sum(axis=0), np.diag(gr.d_omega) * w2, gr.d_a[0] * a]

    res = minimize(fg, X0, jac=True, method="BFGS", options={"gtol": 1e-6, "maxiter": 500})
    return res.fun, res.x, calls[0]


def naive_ofv(x, times, ys, doses, counter):
    """FOCE-I by the formula, one subject at a time, every derivative by differences."""
    counter[0] += 1
    theta, w2, a = x[:3], np.exp(x[3:6]), np.exp(x[6])
    oinv = np.diag(1.0 / w2)
    total = 0.0
    for t, y, dose in zip(times, ys, doses, strict=True):
        def L(eta, t=t, y=y, dose=dose):
            f = conc(t, dose, *(theta + eta))
            return np.sum((y - f) ** 2) / a ** 2 + y.size * np.log(a ** 2) + eta @ oinv @ eta
        # tight inner tolerance: looser modes make the outer differences noise
        eh = minimize(L, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
        h = 1e-6
        g = np.stack([(conc(t, dose, *(theta + eh + h * e)) - conc(t, dose, *(theta + eh - h * e)))
                      / (2 * h) for e in np.eye(3)], axis=1)
        M = oinv + g.T @ g / a ** 2
        total += L(eh) + np.sum(np.log(w2)) + np.linalg.slogdet(M)[1]
    return total


def fit_naive(times, ys, doses):
    counter = [0]
    res = minimize(naive_ofv, X0, args=(times, ys, doses, counter), method="BFGS",
                   options={"gtol": 1e-4, "eps": 1e-6, "maxiter": 500})
    return res.fun, res.x, counter[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions of the core fit")
    args = ap.parse_args()
    times, ys, doses = load()
    core_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        core_ofv, core_x, core_calls = fit_core(times, ys, doses)
        core_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    naive_ofv_, naive_x, naive_calls = fit_naive(times, ys, doses)
    naive_time = time.perf_counter() - t0
    core_best = min(core_times)
    out = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count()},
        "published_objf": 116.8036,
        "core": {"seconds": core_times, "best_seconds": core_best, "objective": core_ofv,
                 "evaluations": core_calls, "x": core_x.tolist()},
        "naive": {"seconds": naive_time, "objective": naive_ofv_, "evaluations": naive_calls,
                  "x": naive_x.tolist()},
        "speedup": naive_time / core_best,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "population_core.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "# FOCE-I on Theoph: population core vs naive nested optimisation",
        "",
        f"Machine: {out['machine']['platform']}, Python {out['machine']['python']}, "
        f"{out['machine']['cpus']} CPUs (shared).",
        "",
        "| implementation | wall time (s) | objective evaluations | final OFV |",
        "|---|---|---|---|",
        f"| core (exact gradient, lockstep modes) | {core_best:.3f} (best of "
        f"{len(core_times)}) | {core_calls} | {core_ofv:.4f} |",
        f"| naive (nested scipy, differences) | {naive_time:.1f} | {naive_calls} | "
        f"{naive_ofv_:.4f} |",
        "",
        f"Speed-up: {out['speedup']:.0f}x. Published nlmixr2 FOCEi OBJF: 116.8036.",
        "",
    ]
    (RESULTS / "population_core.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
