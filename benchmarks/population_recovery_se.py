"""The ALS recovery study's Wald coverage with other standard errors, without refitting.

For each replicate of ``benchmarks/results/population_recovery_pace.jsonl`` (the SAEM fits of
``benchmarks/population_recovery.py``), the replicate's cohort is drawn again from its seed
(the same generator and config, so the same data), the SAEM estimator's set-up is built for
it (the fit's individual model: the calibrated RK4 kernel path, covariate design, Omega
pattern, error models), and the stored estimates (typical values, Omega, covariate
coefficients, residual SDs) are put back into the SAEM core's layout. At those estimates,
:func:`progression.fit.population._saem_score.score_pass` (MCMC with the parameters held)
gives Louis' model-based information ``R`` and the robust sandwich ``R^-1 S R^-1``; both are
mapped to the fit's covariance layout like the fit's own SEs, and every Wald interval is
scored against the same truths as the study. The study's own SEs (SAEM's stochastic
approximation, ``sa``) are read from the jsonl.

One JSON line per replicate goes to ``<out>.jsonl`` (resumable: seeds done are skipped);
``<out>.md`` summarises coverage per method and the ratio empirical SD / RMS SE.

Run (slow: ~1-3 minutes per replicate)::

    python benchmarks/population_recovery_se.py --replicates 50 \\
        --out benchmarks/results/population_recovery_pace_se
    python benchmarks/population_recovery_se.py --summary \\
        --out benchmarks/results/population_recovery_pace_se
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import population_recovery as pr  # noqa: E402

STUDY = ROOT / "benchmarks" / "results" / "population_recovery_pace"
OUT = ROOT / "benchmarks" / "results" / "population_recovery_pace_se"
Z95 = 1.959963984540054
METHODS = ("sa", "louis", "sandwich")


def _problem(cfg, cohort, ex):
    """(EstimationProblem, SAEM estimator with its set-up state) for ``cohort``."""
    from progression.fit import EstimatorOptions
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.estimators.saem import SAEM
    from progression.fit.problem import Problem, designs_from_cohort

    designs, _ = designs_from_cohort(cohort, cfg)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    opts = EstimatorOptions.coerce(cfg.options)
    ep = EstimationProblem(problem=problem, designs=designs, options=opts, executor=ex,
                           name=cfg.name, source=cfg.source)
    est = SAEM()
    s = est._setup_saem(ep)
    return ep, est, s


def core_parameters(ep, est, s, line):
    """The stored estimates of one jsonl line in the SAEM core's layout: (mu (D,), beta
    (P, D), omega (E, E), Residual)."""
    from progression.fit.transforms import to_internal

    problem = ep.problem
    pop_cols, eta_pos = s["pop_cols"], list(s["eta_pos"])
    sc = line["score"]
    names = [problem.names[q] for q in pop_cols]
    nat = np.array([sc["typical"][n]["estimate"] for n in names])
    mu = to_internal(nat, problem.scale[pop_cols], problem.lower[pop_cols],
                     problem.upper[pop_cols])
    omega = np.diag([sc["omega"][names[d]]["estimate"] for d in eta_pos])
    sd = np.array([line["sigma"][problem.names[q]] for q, _, _ in s["err"]])
    residual = est._residual(problem, s, sd)
    return np.asarray(mu, dtype=float), omega, residual


def enrolled_coefficients(cohort, truth, cfg) -> dict:
    """The covariate coefficients of the pace ``k0`` in the replicate's enrolled patients:
    least squares of their true ``log k0`` (and of the reference pace, ``"pace"``) on the
    fit's covariate design (enrolment age, site of onset, C9orf72), on the fit's coefficient
    scale (categorical ``exp(b) - 1``). The generator's age effect acts on ONSET age; the
    fit's covariate is the age at enrolment, so this is the truth of what the fit estimates
    (no selection, no sampling error in it)."""
    p = next(q for q in pr._population_parameters(cfg) if q.name == "k0")
    X = pr._design(cohort, p.covariates)
    labels = []
    for eff in p.covariates:
        if eff.effect == "categorical":
            lab = np.asarray(cohort.covariate(eff.covariate))
            lab = np.array([f"{x:g}" if isinstance(x, (float, int, np.number)) else str(x)
                            for x in lab])
            groups = dict(eff.groups) if eff.groups else {g: (g,) for g in sorted(set(lab))}
            ref = str(eff.reference)
            labels += [(f"k0~{eff.covariate}={g}", "categorical") for g, m in groups.items()
                       if g != ref and ref not in m]
        else:
            labels.append((f"k0~{eff.covariate}", eff.effect))
    out = {}
    ys = {"k0": np.log(np.asarray(truth["k0"], dtype=float)),
          "pace": pr.pace_log(truth["k0"], truth["kA"], pr._glial_ratio(cfg))}
    for key, y in ys.items():
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        out[key] = {lab: float(math.expm1(b) if kind == "categorical" else b)
                    for (lab, kind), b in zip(labels, beta[1:], strict=True)}
    return out


def rescore_replicate(line: dict, cfg, n_iter: int, burn_in: int, chains: int) -> dict:
    """Score pass at the stored estimates of one replicate; one JSON-able dict."""
    from progression.fit.estimators.saem import _covariate_design, _to_focei_layout
    from progression.fit.population._saem_score import score_pass
    from progression.parallel import executor as make_executor

    t0 = time.perf_counter()
    from progression.als.synthetic import synthetic_cohort

    # the replicate's cohort as the study drew it (pr.simulate_replicate), with the truth
    # table: the enrolled patients' own covariate coefficients on the fit's covariates
    cohort, truth = synthetic_cohort(pr.COHORT_CONFIG, n=int(line["n"]), seed=int(line["seed"]))
    if "onset_gap" in cfg.errors:
        from population import with_onset_rows

        cohort = with_onset_rows(cohort)
    enrolled = enrolled_coefficients(cohort, truth, cfg)
    with make_executor(None, None) as ex:
        ep, est, s = _problem(cfg, cohort, ex)
    problem = ep.problem
    D, E = s["pop_cols"].size, s["eta_pos"].size
    om_model = s["omega_model"]
    P, S = om_model.n_parameters, len(s["err"])
    cov_x, cov_mask, coef_map = _covariate_design(ep, s)
    s["coef_map"] = coef_map
    mu, omega, residual = core_parameters(ep, est, s, line)
    coef_names = s["typical"].coefficient_names
    beta = np.zeros((0 if cov_x is None else cov_x.shape[1], D))
    for j, (col, e, kind) in coef_map.items():
        c = line["score"]["coefficients"].get(coef_names[j], {}).get("estimate")
        if c is None:
            raise ValueError(f"seed {line['seed']}: coefficient {coef_names[j]} not stored")
        beta[col - 1, s["eta_pos"][e]] = c if kind == "linear" else math.log1p(c)
    x0 = s["x0"]
    kernel, numbers = est._kernel_model(s, x0, D, E, om_model.initial,
                                        est._residual(problem, s,
                                                      np.exp(x0[D + P:D + P + S])),
                                        int(ep.options.seed))
    pattern = np.eye(E, dtype=bool)
    t1 = time.perf_counter()
    sp = score_pass(kernel, s["data"], mu, omega, residual, beta=beta,
                    eta_columns=s["eta_pos"], covariates=cov_x, covariate_mask=cov_mask,
                    omega_structure=pattern, residual_fixed=s["residual_fixed"],
                    estimate_columns=s["no_eta"], n_iter=n_iter, burn_in=burn_in,
                    n_chains=chains, seed=int(line["seed"]) + 17)
    t2 = time.perf_counter()

    class _Res:      # what _to_focei_layout reads of a SAEM result
        parameter_names = sp.names

    _Res.omega, _Res.beta = omega, beta
    T = _to_focei_layout(s, _Res, D, P, S)
    cov_names = list(est._covariance_names(problem, s))
    out = {"seed": line["seed"], "n": line["n"], "numbers": numbers,
           "enrolled_coefficients": enrolled,
           "setup_seconds": t1 - t0, "pass_seconds": t2 - t1,
           "acceptance": sp.acceptance.tolist(), "n_chains": sp.n_chains,
           "iterations": sp.iterations, "burn_in": sp.burn_in, "se": {}}
    for kind, m in (("model", "louis"), ("sandwich", "sandwich")):
        c = T @ sp.covariance(kind) @ T.T
        out["se"][m] = {n: float(math.sqrt(v)) if v >= 0 else math.nan
                        for n, v in zip(cov_names, np.diag(c), strict=True)}
    return out


def z_scores(line: dict, se_line: dict, method: str) -> dict:
    """(estimate - truth) / SE on the Wald scale of every scored quantity."""
    sc = line["score"]
    out = {}
    for p, d in sc["typical"].items():
        se = d["se_scale"] if method == "sa" else se_line["se"][method].get(f"theta {p}")
        out[f"{p} typical value"] = ((math.log(d["estimate"]) - math.log(d["truth"])) / se
                                     if se and se > 0 else math.nan)
    for p, d in sc["omega"].items():
        se = (d["se"] / d["estimate"] if method == "sa"
              else se_line["se"][method].get(f"log omega^2 {p}"))
        out[f"{p} omega^2"] = ((math.log(d["estimate"]) - math.log(d["truth"])) / se
                               if se and se > 0 else math.nan)
    for label, d in sc["coefficients"].items():
        se = d["se"] if method == "sa" else se_line["se"][method].get(f"coef {label}")
        out[label] = (d["estimate"] - d["truth"]) / se if se and se > 0 else math.nan
    return out


def enrolled_z(line: dict, se_line: dict, method: str) -> dict:
    """z-scores of the covariate coefficients against the enrolled patients' own
    coefficients (``log k0`` and the reference pace)."""
    out = {}
    for key, what in (("k0", "log k0"), ("pace", "pace")):
        for label, t in se_line.get("enrolled_coefficients", {}).get(key, {}).items():
            d = line["score"]["coefficients"].get(label)
            if d is None:
                continue
            se = d["se"] if method == "sa" else se_line["se"][method].get(f"coef {label}")
            out[f"{label} vs enrolled patients' {what}"] = (
                (d["estimate"] - t) / se if se and se > 0 else math.nan)
    return out


def enrolled_population(rescored: list) -> dict:
    """The enrolled population's coefficients: the mean over replicates of the enrolled
    patients' own (``{"k0": {label: value}, "pace": {...}}``)."""
    out = {}
    for key in ("k0", "pace"):
        labels = rescored[0].get("enrolled_coefficients", {}).get(key, {})
        out[key] = {lab: float(np.mean([r["enrolled_coefficients"][key][lab]
                                        for r in rescored])) for lab in labels}
    return out


def population_z(line: dict, se_line: dict, method: str, pop: dict) -> dict:
    """z-scores of the coefficients against the enrolled population's (mean over
    replicates)."""
    out = {}
    for key, what in (("k0", "log k0"), ("pace", "pace")):
        for label, t in pop.get(key, {}).items():
            d = line["score"]["coefficients"].get(label)
            if d is None:
                continue
            se = d["se"] if method == "sa" else se_line["se"][method].get(f"coef {label}")
            out[f"{label} vs enrolled population's {what} ({t:.4g})"] = (
                (d["estimate"] - t) / se if se and se > 0 else math.nan)
    return out


def summarise(study: list, rescored: list) -> dict:
    by_seed = {x["seed"]: x for x in study}
    rows = [(by_seed[r["seed"]], r) for r in rescored if r["seed"] in by_seed]
    out = {"replicates": len(rows), "quantities": {}}
    if not rows:
        return out
    pop = enrolled_population([r for _, r in rows])
    out["enrolled_population"] = pop

    def allz(line, r, m):
        return {**z_scores(line, r, m), **enrolled_z(line, r, m),
                **population_z(line, r, m, pop)}

    names = list(allz(rows[0][0], rows[0][1], "sa"))
    for q in names:
        d = {}
        for m in METHODS:
            z = np.array([allz(line, r, m)[q] for line, r in rows])
            ok = np.isfinite(z)
            d[m] = {"covered": int(np.sum(np.abs(z[ok]) <= Z95)), "with_se": int(ok.sum()),
                    "z_sd": float(np.std(z[ok], ddof=1)) if ok.sum() > 2 else math.nan}
        out["quantities"][q] = d
    # empirical SD of the estimates vs RMS SE on the Wald scale (typical values, Omega)
    ratio = {}
    for p in rows[0][0]["score"]["typical"]:
        x = np.log([line["score"]["typical"][p]["estimate"] for line, _ in rows])
        r = {}
        for m in METHODS:
            se = np.array([line["score"]["typical"][p]["se_scale"] if m == "sa"
                           else r_["se"][m][f"theta {p}"] for line, r_ in rows])
            r[m] = float(np.std(x, ddof=1) / np.sqrt(np.nanmean(se ** 2)))
            r[m + " median"] = float(np.std(x, ddof=1) / np.nanmedian(se))
        ratio[f"{p} typical value"] = r
    for p in rows[0][0]["score"]["omega"]:
        x = np.log([line["score"]["omega"][p]["estimate"] for line, _ in rows])
        r = {}
        for m in METHODS:
            se = np.array([line["score"]["omega"][p]["se"] / line["score"]["omega"][p]
                           ["estimate"] if m == "sa" else r_["se"][m][f"log omega^2 {p}"]
                           for line, r_ in rows])
            r[m] = float(np.std(x, ddof=1) / np.sqrt(np.nanmean(se ** 2)))
            r[m + " median"] = float(np.std(x, ddof=1) / np.nanmedian(se))
        ratio[f"{p} omega^2"] = r
    out["sd_ratio"] = ratio
    out["seconds"] = float(np.median([r["setup_seconds"] + r["pass_seconds"]
                                      for _, r in rows]))
    out["first_seed"] = min(r["seed"] for _, r in rows)
    out["last_seed"] = max(r["seed"] for _, r in rows)
    out["numbers"] = rows[0][1]["numbers"]
    return out


def markdown(summ: dict, command: str, date: str, approximate=()) -> str:
    n = summ["replicates"]
    lines = ["# ALS recovery study: coverage with other standard errors (no refit)", "",
             f"Command: `{command}` ({date}). The {n} replicates with seeds "
             f"{summ.get('first_seed')}-{summ.get('last_seed')} of "
             f"`benchmarks/results/population_recovery_pace.jsonl` (SAEM fits of the shipped "
             f"config, 200 patients): data drawn again from each seed, the stored estimates "
             f"put back, and at them Louis' information and the robust sandwich by MCMC with "
             f"the parameters held (`progression.fit.population._saem_score.score_pass`). "
             f"Methods: `sa` the study's own SEs (SAEM's stochastic approximation over the "
             f"smoothing phase, `saem_covariance = \"sa\"`); `louis` model-based R^-1 at the "
             f"stored estimates; `sandwich` R^-1 S R^-1 (`saem_covariance = \"sandwich\"`). "
             f"Truths as in the study (population_recovery_pace.md). Median seconds per "
             f"replicate (data, set-up, pass): {summ.get('seconds', math.nan):.0f}. "
             f"Predictions: {summ.get('numbers', '')}.", "",
             "| quantity | " + " | ".join(f"{m} 95 % coverage | {m} z SD" for m in METHODS)
             + " |", "|---|" + "---:|" * (2 * len(METHODS))]
    for q, d in summ["quantities"].items():
        # the study's approximate truths (not the enrolled patients' exact ones)
        mark = (" (approx. truth)" if any(q in (a, f"{a} typical value", f"{a} omega^2")
                                          for a in approximate) else "")
        cells = []
        for m in METHODS:
            x = d[m]
            cells += [f"{x['covered']}/{x['with_se']} = {x['covered'] / max(x['with_se'], 1):.0%}",
                      f"{x['z_sd']:.2f}"]
        lines.append(f"| {q}{mark} | " + " | ".join(cells) + " |")
    lines += ["", "Empirical SD of the estimates (log scale) over the replicates / RMS SE, "
                  "and / median SE (> 1: the SEs are too small; sampling error of the ratio ~"
                  f"{1 / math.sqrt(2 * max(n - 1, 1)):.0%}):", "",
              "| quantity | " + " | ".join(f"{m} (RMS) | {m} (median)" for m in METHODS)
              + " |", "|---|" + "---:|" * (2 * len(METHODS))]
    for q, r in summ.get("sd_ratio", {}).items():
        lines.append(f"| {q} | " + " | ".join(f"{r[m]:.2f} | {r[m + ' median']:.2f}"
                                              for m in METHODS) + " |")
    sp = summ.get("study_sa")
    if sp:
        lines += ["", f"All {sp['replicates']} study replicates with SEs (SA only): SD of the "
                      f"log estimates / RMS SE, and a robust SD (IQR / 1.349) / RMS SE:", "",
                  "| quantity | SD / RMS SE | robust SD / RMS SE |", "|---|---:|---:|"]
        for q, v in sp.items():
            if isinstance(v, dict):
                lines.append(f"| {q} | {v['sd_ratio']:.2f} | {v['iqr_ratio']:.2f} |")
    mc = summ.get("monte_carlo")
    if mc and mc["quantities"]:
        lines += ["", f"SAEM's own Monte Carlo error (replicates {mc['replicates']} fitted "
                      f"again with `--option seed=2027`, `{mc['file']}`): SD of an estimate "
                      f"between seeds (difference / sqrt 2, RMS) in units of its SE; its "
                      f"square is the share of the SE^2 that the Monte Carlo adds, which no "
                      f"information matrix contains:", "",
                  "| quantity | MC SD / SE | MC variance / SE^2 |", "|---|---:|---:|"]
        for q, v in mc["quantities"].items():
            lines.append(f"| {q} | {v:.2f} | {v * v:.1%} |")
    return "\n".join(lines) + "\n"


def study_spread(study: list) -> dict:
    """Over all the study's replicates with SEs: SD of the log estimates / RMS of SAEM's SA
    SEs, and the same with a robust SD (interquartile range / 1.349: one outlying replicate
    does not set it)."""
    out = {"replicates": len(study)}
    for part, what in (("typical", "typical value"), ("omega", "omega^2")):
        for p in study[0]["score"][part]:
            x = np.log([line["score"][part][p]["estimate"] for line in study])
            se = np.array([line["score"][part][p]["se_scale"] if part == "typical" else
                           line["score"][part][p]["se"] / line["score"][part][p]["estimate"]
                           for line in study])
            rms = float(np.sqrt(np.mean(se ** 2)))
            q75, q25 = np.percentile(x, [75, 25])
            out[f"{p} {what}"] = {"sd_ratio": float(np.std(x, ddof=1) / rms),
                                  "iqr_ratio": float((q75 - q25) / 1.349 / rms)}
    return out


def monte_carlo(study: list, other: list) -> dict:
    """SAEM's Monte Carlo error from the same replicates fitted with another estimator seed
    (``other``): per quantity, the SD of the difference of the two estimates on the Wald
    scale over sqrt(2), in units of the study's SE (RMS over the replicates)."""
    by_seed = {x["seed"]: x for x in study}
    pairs = [(by_seed[o["seed"]], o) for o in other
             if o["seed"] in by_seed and "error" not in o]
    out = {"replicates": [a["seed"] for a, _ in pairs], "quantities": {}}
    for part in ("typical", "omega"):
        for p in pairs[0][0]["score"][part] if pairs else ():
            z = []
            for a, b in pairs:
                da, db = a["score"][part][p], b["score"][part][p]
                se = da["se_scale"] if part == "typical" else da["se"] / da["estimate"]
                z.append(math.log(db["estimate"] / da["estimate"]) / se / math.sqrt(2.0))
            what = "typical value" if part == "typical" else "omega^2"
            out["quantities"][f"{p} {what}"] = float(np.sqrt(np.mean(np.square(z))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--burn-in", type=int, default=60)
    ap.add_argument("--chains", type=int, default=1)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--other-seed", default=None, metavar="JSONL",
                    help="the same replicates fitted with another [estimator] seed "
                         "(population_recovery.py --option seed=...): SAEM's Monte Carlo "
                         "error in the summary")
    a = ap.parse_args(argv)
    study_path = Path(a.study)
    meta = json.loads(study_path.with_suffix(".meta.json").read_text())
    study = [x for x in pr.load_lines(study_path.with_suffix(".jsonl"), meta["key"])
             if "error" not in x and x.get("covariance_ok")]
    out = Path(a.out)
    jl = out.with_suffix(".jsonl")
    if not a.summary:
        cfg = pr.read_config(ROOT / meta["config"], meta.get("options") or {},
                             meta["config_text"])
        done = {x["seed"] for x in pr.load_lines(jl)}
        for line in sorted(study, key=lambda x: x["seed"])[:a.replicates]:
            if line["seed"] in done:
                continue
            r = rescore_replicate(line, cfg, a.iterations, a.burn_in, a.chains)
            r["finished"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            with jl.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(f"seed {r['seed']}: {r['setup_seconds'] + r['pass_seconds']:.0f} s",
                  flush=True)
    summ = summarise(study, pr.load_lines(jl))
    summ["study_sa"] = study_spread(study)
    if a.other_seed:
        summ["monte_carlo"] = monte_carlo(study, pr.load_lines(Path(a.other_seed)))
        summ["monte_carlo"]["file"] = str(a.other_seed)
    shown = out.resolve().relative_to(ROOT) if ROOT in out.resolve().parents else out
    cmd = ("python benchmarks/population_recovery_se.py --replicates "
           f"{a.replicates} --iterations {a.iterations} --burn-in {a.burn_in} --chains "
           f"{a.chains} --out {shown}")
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.with_suffix(".json").write_text(json.dumps(summ, indent=1))
    out.with_suffix(".md").write_text(markdown(summ, cmd, date, meta.get("approximate", ())))
    print(markdown(summ, cmd, date, meta.get("approximate", ())))


if __name__ == "__main__":
    main()
