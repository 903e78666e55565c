"""Calibration of SAEM's standard errors on simulated data where the truth is known.

A one-compartment oral model in closed form (log ka, CL, V; dose 320-440; 10 samples over
24 h, some subjects 8), ``N`` subjects per replicate data set, many replicates, each fitted by
the SAEM core (:func:`progression.fit.population.saem`, SAEM's defaults: at most 300
exploration iterations ended by the drift rule, 200 smoothing, one chain per subject as the
ALS study's 200 subjects have). Per replicate three covariance estimates of the same fit:

- ``sa``: SAEM's own stochastic-approximation Louis information over the smoothing phase
  (``saem_covariance = "sa"``);
- ``louis``: Louis' information at the final estimates with the parameters held
  (:func:`progression.fit.population._saem_score.score_pass`, model-based ``R^-1``);
- ``sandwich``: the robust ``R^-1 S R^-1`` of the same pass (``saem_covariance =
  "sandwich"``).

Scenarios:

- ``gaussian``: the fitted model is the generating one (log-normal random effects on ka, CL,
  V; combined Gaussian error) - every method should be calibrated;
- ``misspecified``: as in the ALS study, the data are not the fitted model's: the residual
  is Student-t(3) (scale chosen for the same SD as the Gaussian's), ka varies between subjects
  (log-SD 0.3) but the fit holds it at its typical value (no random effect; ALS: Tmax), and a
  per-subject multiplicative offset of the observations (log-SD 0.1) is left to the residual
  (ALS: the Treg % offset). Truth for typical values and Omega: the generating ones.

Summary per parameter and method: empirical SD of the estimates over the replicates against
the root-mean-square SE (ratio > 1: the SEs are too small), the SD of the z-scores and the
coverage of the 95 % Wald interval; and the Monte Carlo SD of SAEM's estimates (two seeds on
the same data, on a quarter of the replicates), a part of the empirical SD that no information
matrix contains.

Run (slow; one process)::

    python benchmarks/saem_se_calibration.py --replicates 200 --subjects 30
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "saem_se_calibration"
TIMES = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])
THETA = np.array([0.4, 1.0, 3.45])            # log ka, log CL, log V
OMEGA = np.array([0.3, 0.1, 0.05])            # variances of the log-normal random effects
A, B = 0.3, 0.1                                # combined error: additive mg/L, proportional
NAMES = ("log ka", "log CL", "log V", "log omega2 ka", "log omega2 CL", "log omega2 V",
         "log a", "log b")
METHODS = ("sa", "louis", "sandwich")


def _conc(t, dose, lka, lcl, lv):
    ka, cl, v = np.exp(lka), np.exp(lcl), np.exp(lv)
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


class OneCmt:
    """Closed-form individual model: ``predict(phi (R, 3), index (R,)) -> (f, G)`` (G unused
    by SAEM: zeros)."""

    def __init__(self, times, doses):
        n = max(len(t) for t in times)
        self.t = np.ones((len(times), n))
        for i, t in enumerate(times):
            self.t[i, :len(t)] = t
        self.dose = np.asarray(doses, dtype=float)

    def predict(self, phi, index):
        phi = np.asarray(phi, dtype=float)
        t, dose = self.t[index], self.dose[index][:, None]
        f = _conc(t, dose, phi[:, :1], phi[:, 1:2], phi[:, 2:3])
        return f, np.zeros(f.shape + (phi.shape[1],))


def simulate(scenario: str, n: int, seed: int):
    """(times, doses, ys) of one replicate data set."""
    rng = np.random.default_rng(seed)
    times, doses, ys = [], [], []
    for i in range(n):
        t = TIMES if i % 3 != 1 else TIMES[:-2]
        dose = 320.0 * (1.0 + 0.1 * (i % 4))
        phi = THETA + np.sqrt(OMEGA) * rng.standard_normal(3)
        if scenario == "misspecified":
            phi[0] = THETA[0] + 0.3 * rng.standard_normal()     # ka varies, held in the fit
        f = _conc(t, dose, *phi)
        sd = np.sqrt(A * A + B * B * f * f)
        if scenario == "misspecified":
            # Student-t(3) with the Gaussian's SD (Var t3 = 3), a per-subject offset
            e = rng.standard_t(3, t.size) / np.sqrt(3.0)
            y = f * np.exp(0.1 * rng.standard_normal()) + sd * e
        else:
            y = f + sd * rng.standard_normal(t.size)
        times.append(t)
        doses.append(dose)
        ys.append(y)
    return times, doses, ys


def fit_one(scenario: str, n: int, rep: int, seeds=(1,)) -> dict:
    """SAEM and the three covariance estimates on replicate ``rep``; one JSON-able dict."""
    from progression.fit.population import PopulationData, Residual, SaemOptions, saem
    from progression.fit.population._saem_score import score_pass

    times, doses, ys = simulate(scenario, n, 10_000 + rep)
    model, data = OneCmt(times, doses), PopulationData.from_subjects(ys)
    mis = scenario == "misspecified"
    cols = [1, 2] if mis else [0, 1, 2]
    om0 = np.diag([0.5] * len(cols))
    out = {"rep": rep}
    for s in seeds:
        t0 = time.perf_counter()
        r = saem(model, data, [THETA[0] if mis else 0.0, 0.5, 3.0], om0,
                 Residual.combined(0.5, 0.2), eta_columns=cols,
                 options=SaemOptions(is_samples=0, n_chains=1), seed=1000 * rep + s)
        t1 = time.perf_counter()
        est = np.r_[r.mu[cols], np.log(np.diag(r.omega)), np.log(r.residual.a[0]),
                    np.log(r.residual.b[0])]
        row = {"estimate": est.tolist(), "saem_seconds": t1 - t0,
               "se": {"sa": np.sqrt(np.diag(r.covariance)).tolist()}}
        if s == seeds[0]:
            sp = score_pass(model, data, r.mu, r.omega, r.residual, eta_columns=cols,
                            eta_mean=r.eta_mean, eta_cov=r.eta_cov, seed=rep + 17)
            assert sp.names == r.parameter_names
            row["se"]["louis"] = np.sqrt(np.diag(sp.covariance("model"))).tolist()
            row["se"]["sandwich"] = np.sqrt(np.diag(sp.covariance("sandwich"))).tolist()
            row["pass_seconds"] = time.perf_counter() - t1
        out[f"seed{s}"] = row
    return out


def summarise(scenario: str, rows: list) -> dict:
    mis = scenario == "misspecified"
    names = [n for n in NAMES if not (mis and n.endswith("ka"))]
    truth = np.r_[THETA[1:] if mis else THETA, np.log(OMEGA[1:] if mis else OMEGA),
                  np.log(A), np.log(B)]
    est = np.array([r["seed1"]["estimate"] for r in rows])
    emp = est.std(axis=0, ddof=1)
    out = {"replicates": len(rows), "parameters": {}}
    two = [r for r in rows if "seed2" in r]
    mc = (np.sqrt(np.mean([(np.subtract(r["seed1"]["estimate"], r["seed2"]["estimate"])) ** 2
                           for r in two], axis=0) / 2.0) if two else np.full(len(names), np.nan))
    for j, name in enumerate(names):
        d = {"empirical_sd": float(emp[j]), "mc_sd": float(mc[j]),
             "mean_estimate": float(est[:, j].mean()), "truth": float(truth[j])}
        # residual SDs have no generating value under a Student-t residual
        scored = not (mis and name.startswith("log a") or mis and name.startswith("log b"))
        for m in METHODS:
            se = np.array([r["seed1"]["se"][m][j] for r in rows])
            ok = np.isfinite(se) & (se > 0)
            rms = float(np.sqrt(np.mean(se[ok] ** 2)))
            z = (est[ok, j] - truth[j]) / se[ok]
            d[m] = {"rms_se": rms, "ratio": float(emp[j] / rms), "with_se": int(ok.sum()),
                    "z_sd": float(z.std(ddof=1)) if scored else None,
                    "coverage": float(np.mean(np.abs(z) <= 1.959964)) if scored else None}
        out["parameters"][name] = d
    out["seconds"] = {"saem_median": float(np.median([r["seed1"]["saem_seconds"]
                                                       for r in rows])),
                      "pass_median": float(np.median([r["seed1"]["pass_seconds"]
                                                       for r in rows]))}
    out["mc_replicates"] = len(two)
    return out


def markdown(meta: dict, summ: dict) -> str:
    lines = ["# SAEM standard errors: calibration on simulated data", "",
             f"Command: `{meta['command']}` ({meta['date']}, {meta['seconds']:.0f} s on 2 "
             f"cores shared with other jobs). One-compartment oral model in closed form, "
             f"{meta['subjects']} subjects per replicate (replicates: per scenario below); "
             f"SAEM core defaults (<= 300 exploration iterations, 200 smoothing), one "
             f"chain per subject. Methods: `sa` SAEM's stochastic-approximation Louis "
             f"information over the smoothing phase (`saem_covariance = \"sa\"`); `louis` "
             f"Louis' information at the final estimates by MCMC with the parameters held; "
             f"`sandwich` R^-1 S R^-1 of the same pass (`saem_covariance = \"sandwich\"`). "
             f"Ratio = empirical SD of the estimates / RMS SE (> 1: SEs too small). MC SD: "
             f"SD of SAEM's own Monte Carlo error (two seeds on the same data)."]
    for e in meta.get("earlier_runs", []):
        lines[-1] += (f" Earlier run whose replicates are kept: `{e['command']}` ({e['date']}, "
                      f"{e['seconds']:.0f} s).")
    lines.append("")
    for sc, s in summ.items():
        lines += [f"## {sc}", "", SCENARIOS[sc] + f" {s['replicates']} replicates (sampling "
                  f"error of the ratio ~{1 / np.sqrt(2 * (s['replicates'] - 1)):.0%}).", "",
                  "| parameter | emp. SD | MC SD | " + " | ".join(
                      f"{m} RMS SE | {m} ratio | {m} z SD | {m} 95 % cover" for m in METHODS)
                  + " |", "|---|---:|---:|" + "---:|" * (4 * len(METHODS))]
        for name, d in s["parameters"].items():
            cells = []
            for m in METHODS:
                x = d[m]
                cells += [f"{x['rms_se']:.4f}", f"{x['ratio']:.2f}",
                          "-" if x["z_sd"] is None else f"{x['z_sd']:.2f}",
                          "-" if x["coverage"] is None else f"{x['coverage']:.1%}"]
            lines.append(f"| {name} | {d['empirical_sd']:.4f} | {d['mc_sd']:.4f} | "
                         + " | ".join(cells) + " |")
        lines += ["", f"Seconds per replicate (median): SAEM {s['seconds']['saem_median']:.2f}, "
                      f"score pass {s['seconds']['pass_median']:.2f}; MC SD from "
                      f"{s['mc_replicates']} replicates.", ""]
    return "\n".join(lines) + "\n"


SCENARIOS = {
    "gaussian": "Generated by the fitted model: log-normal random effects on ka, CL, V "
                "(variances 0.3, 0.1, 0.05), combined Gaussian error (a 0.3, b 0.1).",
    "misspecified": "Student-t(3) residual (same SD as the Gaussian), ka varying between "
                    "subjects (log-SD 0.3) but held at its typical value in the fit (random "
                    "effects on CL and V only), and a per-subject multiplicative offset of the "
                    "observations (log-SD 0.1) left to the residual. Residual SDs are not "
                    "scored (no generating value under the t residual).",
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--subjects", type=int, default=30)
    ap.add_argument("--scenarios", default="misspecified,gaussian")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--first", type=int, default=0,
                    help="index of the first replicate (with --keep: added to the earlier "
                         "replicates of the scenario)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the other scenarios of an earlier run in the results")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    summ, raw = {}, {}
    out = Path(a.out)
    if a.keep and out.with_suffix(".json").exists():
        # scenarios of an earlier run that this one does not redo are kept
        old = json.loads(out.with_suffix(".json").read_text())
        if old["meta"]["subjects"] == a.subjects:
            summ = {k: v for k, v in old["summary"].items() if k not in a.scenarios}
            raw = {k: v for k, v in old["replicates"].items() if k in summ}
            if a.first:
                # more replicates of a scenario: appended to the earlier ones
                raw.update({k: v for k, v in old["replicates"].items()
                            if k in a.scenarios})
            old_meta = old["meta"]
    for sc in a.scenarios.split(","):
        rows = list(raw.get(sc, [])) if a.first else []
        have = {r["rep"] for r in rows}
        for rep in range(a.first, a.first + a.replicates):
            if rep in have:
                continue
            seeds = (1, 2) if rep % 4 == 0 else (1,)
            rows.append(fit_one(sc, a.subjects, rep, seeds))
            if rep % 25 == 0:
                print(f"{sc}: {rep + 1}/{a.replicates} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
        raw[sc] = rows
        summ[sc] = summarise(sc, rows)
        # written after every scenario: a long study keeps what it has
        meta = {"command": "python benchmarks/saem_se_calibration.py " + " ".join(
                    sys.argv[1:] if argv is None else argv),
                "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "seconds": time.perf_counter() - t0, "subjects": a.subjects,
                "replicates": len(rows), "scenarios": {k: SCENARIOS[k] for k in summ},
                "earlier_runs": [] if not a.keep or "old_meta" not in locals() else
                old_meta.get("earlier_runs", []) + [
                    {k: old_meta[k] for k in ("command", "date", "seconds", "replicates")}]}
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summ,
                                                        "replicates": raw}, indent=1))
        out.with_suffix(".md").write_text(markdown(meta, summ))
    print(markdown(meta, summ))


if __name__ == "__main__":
    main()
