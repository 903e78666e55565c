"""Standard errors of the four-chain ALS recovery study by the score pass at the recorded
estimates, and the coverage of their 95 % Wald intervals.

``population_recovery_model.py`` (SAEM, 4 chains per patient, ``is_samples = 300``) records
per replicate the estimates and the coverage of SAEM's own stochastic-approximation (SA)
intervals; in about a third of the replicates the SA information is not positive definite
and there are no SEs. Here, for every replicate of the study's jsonl:

- the replicate's data are simulated again from its seed exactly as the study does
  (:func:`population_recovery_model.simulate_replicate`, the study's config and options);
- :func:`progression.fit.population._saem_score.score_pass` (MCMC over the random effects
  with the population parameters **held** at the replicate's recorded estimates; SAEM's
  kernels, the fit's own prediction path) gives Louis' observed information ``R`` and the
  per-subject conditional mean scores, whose centred products are ``S``;
- three covariance estimates, on the fit's covariance layout (theta on the log scale, log
  omega^2, coefficients on the config's scale): ``louis`` ``R^-1`` (model-based; what the
  estimator's fallback reports), ``sandwich`` ``R^-1 S R^-1``, and ``scores`` ``S^-1`` (the
  outer product of the per-subject scores, NONMEM's ``MATRIX=S``: another consistent
  estimate of the information of a well-specified model, which needs no cancellation of
  the large complete- and missing-information terms that Louis' formula subtracts);
- coverage of the 95 % Wald intervals as ``population_recovery.score`` counts it.

The recorded estimates of the study are used as they are (typical values, Omega diagonal,
covariate coefficients, residual SDs), so no refit is needed. The chains start from the
population distribution (``burn_in`` iterations with kernel adaptation first).

Run (resumable, one JSON line per replicate; 1 process)::

    nice -n 10 python benchmarks/population_recovery_model_se.py
    python benchmarks/population_recovery_model_se.py --summary
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population_recovery as pr  # noqa: E402
import population_recovery_model as prm  # noqa: E402

ROOT = pr.ROOT
STUDY = ROOT / "benchmarks" / "results" / "population_recovery_model_chains4"
OUT = ROOT / "benchmarks" / "results" / "population_recovery_model_chains4_se"
#: The study's [estimator] overrides (its meta.json); the replicates of its earlier key
#: (config before saem_chains = 4 moved into the config) are the same data and fit.
OPTIONS = {"is_samples": 300, "saem_chains": 4}
METHODS = ("sa", "louis", "sandwich", "scores", "sa, else louis")
Z95 = 1.959963984540054


def study_config_text() -> str:
    """The config text the study ran with (its meta.json; the file may have changed since:
    the replicates must be simulated and scored with the study's own config)."""
    return json.loads(pr._path(STUDY, ".meta.json").read_text())["config_text"]


def _replicate_setup(seed: int, n: int, line: dict | None = None):
    """The study's data of replicate ``seed`` and the SAEM estimator's set-up on them
    (the observation and censoring counts checked against the study's ``line``)."""
    from progression.fit import EstimatorOptions
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.estimators.saem import SAEM, _covariate_design
    from progression.fit.problem import Problem
    from progression.parallel import executor as make_executor

    cfg = pr.read_config(pr.FIT_CONFIG, OPTIONS, study_config_text())
    designs, _, _ = prm.simulate_replicate(n, seed, cfg)
    if line is not None:
        n_obs = int(sum(d.n for d in designs))
        n_cens = int(sum(int(np.sum(np.asarray(d.cens) != 0)) for d in designs))
        if (n_obs, n_cens) != (line.get("observations"), line.get("censored")):
            raise RuntimeError(f"seed {seed}: re-simulated {n_obs} observations ({n_cens} "
                               f"censored), the study recorded {line.get('observations')} "
                               f"({line.get('censored')}): not the study's data")
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    with make_executor(None, None) as ex:
        ep = EstimationProblem(problem=problem, designs=designs,
                               options=EstimatorOptions.coerce(cfg.options), executor=ex,
                               name=cfg.name, source=cfg.source)
        est = SAEM()
        s = est._setup_saem(ep)
    cov_x, cov_mask, coef_map = _covariate_design(ep, s)
    s["coef_map"] = coef_map
    return ep, est, s, cov_x, cov_mask


def _estimates(line: dict, problem, s, est):
    """(mu (D,), omega (E, E), beta (P, D), residual) of the study's recorded estimates."""
    from progression.fit.transforms import to_internal

    sc = line["score"]
    pop_cols = s["pop_cols"]
    names = [problem.names[q] for q in pop_cols]
    nat = np.array([sc["typical"][nm]["estimate"] for nm in names])
    mu = np.asarray(to_internal(nat, problem.scale[pop_cols], problem.lower[pop_cols],
                                problem.upper[pop_cols]), dtype=float)
    omega = np.diag([sc["omega"][names[d]]["estimate"] for d in s["eta_pos"]])
    sd = np.array([line["sigma"][problem.names[q]] for q, _, _ in s["err"]])
    residual = est._residual(problem, s, sd)
    coef_names = s["typical"].coefficient_names
    D = pop_cols.size
    beta = np.zeros((max(len(coef_names), 0), D))
    for j, (col, e, kind) in s["coef_map"].items():
        c = sc["coefficients"][coef_names[j]]["estimate"]
        beta[col - 1, s["eta_pos"][e]] = c if kind == "linear" else math.log1p(c)
    return mu, omega, beta, residual


def _smallest_eigenvalue_corr(info) -> float:
    """Smallest eigenvalue of an information matrix in correlation form (scale-free)."""
    d = np.sqrt(np.abs(np.diag(info)))
    return float(np.linalg.eigvalsh(info / np.outer(d, d)).min())


def score_replicate(line: dict, n_iter: int, burn_in: int, chains: int) -> dict:
    """One replicate: SEs by the score pass at the recorded estimates and coverage per
    method (``sa`` copied from the study's own line)."""
    from progression.fit.estimators.saem import _to_focei_layout
    from progression.fit.population._saem_information import inverse_pd
    from progression.fit.population._saem_score import score_pass
    from progression.fit.transforms import to_internal

    t0 = time.perf_counter()
    seed, n = int(line["seed"]), int(line["n"])
    ep, est, s, cov_x, cov_mask = _replicate_setup(seed, n, line)
    problem = ep.problem
    D, E = s["pop_cols"].size, s["eta_pos"].size
    om_model = s["omega_model"]
    P, S = om_model.n_parameters, len(s["err"])
    mu, omega, beta, residual = _estimates(line, problem, s, est)
    x0 = s["x0"]
    kernel, numbers = est._kernel_model(
        s, x0, D, E, om_model.initial,
        est._residual(problem, s, np.exp(x0[D + P:D + P + S])), int(ep.options.seed))
    t1 = time.perf_counter()
    sp = score_pass(kernel, s["data"], mu, omega, residual, beta=beta,
                    eta_columns=s["eta_pos"], covariates=cov_x, covariate_mask=cov_mask,
                    omega_structure=np.eye(E, dtype=bool), residual_fixed=s["residual_fixed"],
                    estimate_columns=s["no_eta"], n_iter=n_iter, burn_in=burn_in,
                    n_chains=chains, seed=seed + 7919)
    t2 = time.perf_counter()

    class _Res:      # what _to_focei_layout reads of a SAEM result
        parameter_names = sp.names

    _Res.omega, _Res.beta = omega, beta
    T = _to_focei_layout(s, _Res, D, P, S)
    cov_names = list(est._covariance_names(problem, s))
    covs = {"louis": sp.covariance("model"), "sandwich": sp.covariance("sandwich"),
            "scores": inverse_pd(sp.meat)}
    out = {"seed": seed, "n": n, "key": line["key"], "settings": _settings(n_iter, burn_in,
                                                                           chains),
           "pd": {"louis": bool(np.all(np.isfinite(covs["louis"]))),
                  "scores": bool(np.all(np.isfinite(covs["scores"])))},
           "smallest_eigenvalue_corr": {"louis": _smallest_eigenvalue_corr(sp.fisher),
                                        "scores": _smallest_eigenvalue_corr(sp.meat)},
           "acceptance": np.asarray(sp.acceptance).tolist(), "prediction_path": numbers,
           "se": {}, "covered": {}}
    sc = line["score"]
    pop_names = [problem.names[q] for q in s["pop_cols"]]
    # the estimate and the truth of each scored parameter on the covariance layout's scale
    targets = {}
    for p in sc["typical"]:
        q = problem.names.index(p)
        ex, tx = (float(to_internal(np.array([v]), problem.scale[[q]], problem.lower[[q]],
                                    problem.upper[[q]])[0])
                  for v in (sc["typical"][p]["estimate"], sc["typical"][p]["truth"]))
        targets[f"typical {p}"] = (f"theta {p}", ex, tx)
    for p in sc["omega"]:
        if p in pop_names:
            targets[f"omega {p}"] = (f"log omega^2 {p}", math.log(sc["omega"][p]["estimate"]),
                                     math.log(sc["omega"][p]["truth"]))
    for c, v in sc["coefficients"].items():
        targets[f"coef {c}"] = (f"coef {c}", v["estimate"], v["truth"])
    for m, C in covs.items():
        F = T @ C @ T.T
        se_m, cv_m = {}, {}
        for label, (cname, ex, tx) in targets.items():
            v = F[cov_names.index(cname), cov_names.index(cname)]
            se = math.sqrt(v) if np.isfinite(v) and v > 0 else math.nan
            se_m[label] = se
            cv_m[label] = None if not np.isfinite(se) else bool(abs(ex - tx) <= Z95 * se)
        out["se"][m], out["covered"][m] = se_m, cv_m
    # SAEM's own (SA) intervals, as the study scored them
    sa = {}
    for part, pre in (("typical", "typical"), ("omega", "omega"),
                      ("coefficients", "coef")):
        for p, v in sc[part].items():
            sa[f"{pre} {p}"] = v["covered"]
    out["covered"]["sa"] = sa
    out["setup_seconds"] = t1 - t0
    out["pass_seconds"] = t2 - t1
    out["load"] = __import__("os").getloadavg()[0]
    out["finished"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return out


def _settings(n_iter: int, burn_in: int, chains: int) -> str:
    return f"iter{n_iter}_burn{burn_in}_chains{chains}"


def study_lines() -> list[dict]:
    """The study's successful replicate lines (both keys of the same config and options)."""
    meta = json.loads(pr._path(STUDY, ".meta.json").read_text())
    keys = {meta["key"], prm.key_of(meta["config_text"], OPTIONS, int(meta["n"]))}
    lines = [x for x in pr.load_lines(pr._path(STUDY, ".jsonl")) if "error" not in x]
    # the replicates before saem_chains = 4 moved into the config: same fit (the key
    # differs by the config's text only), recognised by their options in the command
    return [x for x in lines if x["key"] in keys or x["key"] == "9a3a0d0fea6025d1"]


def summary(rows: list[dict]) -> str:
    """Coverage per parameter and method, PD counts, timings (markdown)."""
    if not rows:
        return "no replicates\n"
    labels = list(rows[0]["covered"]["louis"])
    for x in rows:
        # what the estimator now reports: SAEM's own SEs where its information is positive
        # definite, else the fallback (Louis at the estimates; here with this pass's size)
        sa_ok = any(v is not None for v in x["covered"]["sa"].values())
        x["covered"]["sa, else louis"] = dict(x["covered"]["sa" if sa_ok else "louis"])
    head = ("| parameter | " + " | ".join(f"{m} covered / with SE" for m in METHODS)
            + " | median SE louis | median SE scores |")
    out = [head, "|---|" + "---:|" * (len(METHODS) + 2)]
    tot = {m: [0, 0] for m in METHODS}
    for lab in labels:
        cells = []
        for m in METHODS:
            c = [x["covered"][m].get(lab) for x in rows]
            c = [v for v in c if v is not None]
            tot[m][0] += sum(c)
            tot[m][1] += len(c)
            cells.append(f"{sum(c)}/{len(c)} ({100 * sum(c) / len(c):.0f} %)" if c else "-")
        med = [np.nanmedian([x["se"][m][lab] for x in rows]) for m in ("louis", "scores")]
        out.append(f"| {lab} | " + " | ".join(cells) + f" | {med[0]:.3g} | {med[1]:.3g} |")
    out.append("| all | " + " | ".join(f"{a}/{b} ({100 * a / max(b, 1):.1f} %)"
                                      for a, b in tot.values()) + " | | |")
    sa_pd = sum(any(v is not None for v in x["covered"]["sa"].values()) for x in rows)
    lou = sum(x["pd"]["louis"] for x in rows)
    scr = sum(x["pd"]["scores"] for x in rows)
    ps = np.array([x["pass_seconds"] for x in rows])
    st = np.array([x["setup_seconds"] for x in rows])
    out.append("")
    out.append(f"Replicates: {len(rows)} (seeds {', '.join(str(x['seed']) for x in rows)}). "
               f"Positive definite: SA (the study's) {sa_pd}, Louis at the estimates {lou}, "
               f"score products S {scr}. Smallest eigenvalue of Louis' R in correlation form: "
               f"median {np.median([x['smallest_eigenvalue_corr']['louis'] for x in rows]):.3g}"
               f", min {min(x['smallest_eigenvalue_corr']['louis'] for x in rows):.3g}. "
               f"Seconds per replicate: score pass median {np.median(ps):.0f} "
               f"(min {ps.min():.0f}, max {ps.max():.0f}), set-up and re-simulation median "
               f"{np.median(st):.0f}; settings {rows[0]['settings']}.")
    return "\n".join(out) + "\n"


def markdown(rows: list[dict], command: str) -> str:
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "# Four-chain ALS recovery study: standard errors by the score pass at the recorded "
        "estimates\n\n"
        f"Command: `{command}` ({when}; one process on a shared 2-core machine). Study: "
        "`benchmarks/results/population_recovery_model_chains4.jsonl` (SAEM, 4 chains per "
        "patient, `is_samples = 300`, 200 patients per replicate; data re-simulated from each "
        "seed exactly as the study does). Methods: `sa` SAEM's own stochastic-approximation "
        "information (the study's intervals; none where it was not positive definite); at the "
        "recorded estimates with the parameters held (`score_pass`): `louis` Louis' observed "
        "information `R^-1` (what the estimator's fallback reports), `sandwich` `R^-1 S R^-1`, "
        "`scores` `S^-1` (outer product of the per-subject conditional mean scores); `sa, else "
        "louis`: what the estimator reports since its fallback (SAEM's own SEs where "
        "positive definite, else Louis at the estimates; here with this pass's size). 95 % Wald "
        "intervals on the estimation scale (typical values: log; Omega: log omega^2; "
        "coefficients: the config's scale), as `population_recovery.score` counts them; "
        "target 90-98 %.\n\n" + summary(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--burn-in", type=int, default=50)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="*", default=None,
                    help="only these replicates (default: every replicate of the study)")
    ap.add_argument("--out", default=str(OUT), help="results path without suffix")
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args(argv)
    out = Path(a.out)
    jl = pr._path(out, ".jsonl")
    settings = _settings(a.iterations, a.burn_in, a.chains)
    if not a.summary:
        done = {x["seed"] for x in pr.load_lines(jl) if x.get("settings") == settings}
        for line in study_lines():
            if line["seed"] in done or (a.seeds and line["seed"] not in a.seeds):
                continue
            row = score_replicate(line, a.iterations, a.burn_in, a.chains)
            with jl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"seed {row['seed']}: louis PD {row['pd']['louis']} "
                  f"(min eig corr {row['smallest_eigenvalue_corr']['louis']:.3g}), "
                  f"pass {row['pass_seconds']:.0f} s", flush=True)
    rows = [x for x in pr.load_lines(jl) if x.get("settings") == settings]
    rows.sort(key=lambda x: x["seed"])
    # the computing command (a --summary run rewrites the file from the recorded rows)
    text = markdown(rows, f"nice -n 10 python benchmarks/population_recovery_model_se.py "
                          f"--iterations {a.iterations} --burn-in {a.burn_in} "
                          f"--chains {a.chains}")
    if rows:
        pr._path(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
