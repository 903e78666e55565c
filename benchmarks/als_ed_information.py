"""How much the ALS recovery design says about eD: Louis' Fisher information at the TRUE
parameters of the well-specified study, on the shipped design and on denser ones.

``population_recovery_model.py`` draws a replicate's values from the shipped fit's own
population model at :data:`population_recovery_model.TRUTH` on the clinic generator's design
(``configs/cohorts/als_clinic_v1.toml``: CRP at half the visits, Treg % at half the baseline
visits and 10 % of the others). Here one replicate per design is drawn the same way, and
:func:`progression.fit.population._saem_score.score_pass` (MCMC over the random effects with
the parameters held at the truth; the same kernels as SAEM) gives Louis' observed information
of all population parameters at the truth. Printed per design: the standard errors of
eD's typical value and of ``log omega^2 eD`` (what a 95 % interval of omega^2 eD spans), the
correlations that tie them to each other and to Q0, and the flattest direction of the
information (its smallest eigenvalue in correlation form).

Designs (``--designs``; each changes only the generator's measurement probabilities, so the
patients differ too: the random stream moves):

- ``shipped``: the clinic generator as it is;
- ``treg_all``: Treg % at every visit; ``crp_all``: CRP at every visit; ``both``;
- ``no_treg``: no Treg % at all (where eD's information comes from).

    nice -n 10 python benchmarks/als_ed_information.py --seeds 1000 \\
        --designs shipped no_treg treg_all crp_all both

One JSON line per (design, seed) in ``benchmarks/results/als_ed_information.jsonl``
(resumable); ``--summary`` prints the table.
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
OUT = ROOT / "benchmarks" / "results" / "als_ed_information.jsonl"
#: Measurement probabilities (baseline visit, other visits) per design and observable.
DESIGNS = {
    "shipped": {},
    "treg_all": {"Treg_pct": (1.0, 1.0)},
    "crp_all": {"CRP": (1.0, 1.0)},
    "both": {"Treg_pct": (1.0, 1.0), "CRP": (1.0, 1.0)},
    "no_treg": {"Treg_pct": (0.0, 0.0)},
}


def cohort_config(design: str) -> dict:
    """The clinic generator's config (a dict) with ``design``'s measurement probabilities."""
    from progression.virtual.cohort_config import read_toml

    if design not in DESIGNS:
        raise SystemExit(f"design {design!r}: expected one of {', '.join(DESIGNS)}")
    doc = read_toml(pr.COHORT_CONFIG)
    for obs, (base, other) in DESIGNS[design].items():
        doc["observables"][obs]["baseline"] = base
        doc["observables"][obs]["probability"] = other
    return doc


def information_at_truth(design: str, seed: int, n: int = 200, n_iter: int = 200,
                         burn_in: int = 60, chains: int = 1) -> dict:
    """Louis' information of the shipped fit's parameters at the truth, one replicate of
    ``design``; standard errors on the fit's covariance layout, and eD's correlations."""
    from progression.fit import EstimatorOptions
    from progression.fit.estimators.base import EstimationProblem
    from progression.fit.estimators.saem import SAEM, _covariate_design, _to_focei_layout
    from progression.fit.population._saem_score import score_pass
    from progression.fit.transforms import to_internal
    from progression.parallel import executor as make_executor

    t0 = time.perf_counter()
    cfg = pr.read_config()
    designs, _, _ = prm.simulate_replicate(n, seed, cfg, cohort_config=cohort_config(design))
    with make_executor(None, None) as ex:
        from progression.fit.problem import Problem

        problem = Problem.from_config(cfg)
        problem.fix_grid_step(designs)
        ep = EstimationProblem(problem=problem, designs=designs,
                               options=EstimatorOptions.coerce(cfg.options), executor=ex,
                               name=cfg.name, source=cfg.source)
        est = SAEM()
        s = est._setup_saem(ep)
    D, E = s["pop_cols"].size, s["eta_pos"].size
    om_model = s["omega_model"]
    P, S = om_model.n_parameters, len(s["err"])
    cov_x, cov_mask, coef_map = _covariate_design(ep, s)
    s["coef_map"] = coef_map
    names = [problem.names[q] for q in s["pop_cols"]]
    nat = np.array([prm.TRUTH["typical"][nm] for nm in names])
    mu = np.asarray(to_internal(nat, problem.scale[s["pop_cols"]],
                                problem.lower[s["pop_cols"]], problem.upper[s["pop_cols"]]),
                    dtype=float)
    omega = np.diag([prm.TRUTH["omega"][names[d]] for d in s["eta_pos"]])
    sd = np.array([prm.TRUTH["sigma"][problem.names[q].split(".")[0]] for q, _, _ in s["err"]])
    residual = est._residual(problem, s, sd)
    coef_names = s["typical"].coefficient_names
    beta = np.zeros((0 if cov_x is None else cov_x.shape[1], D))
    for j, (col, e, kind) in coef_map.items():
        c = prm.TRUTH["coefficients"][coef_names[j]]
        beta[col - 1, s["eta_pos"][e]] = c if kind == "linear" else math.log1p(c)
    x0 = s["x0"]
    kernel, _ = est._kernel_model(s, x0, D, E, om_model.initial,
                                  est._residual(problem, s, np.exp(x0[D + P:D + P + S])),
                                  int(ep.options.seed))
    sp = score_pass(kernel, s["data"], mu, omega, residual, beta=beta,
                    eta_columns=s["eta_pos"], covariates=cov_x, covariate_mask=cov_mask,
                    omega_structure=np.eye(E, dtype=bool), residual_fixed=s["residual_fixed"],
                    estimate_columns=s["no_eta"], n_iter=n_iter, burn_in=burn_in,
                    n_chains=chains, seed=int(seed) + 17)

    class _Res:      # what _to_focei_layout reads of a SAEM result
        parameter_names = sp.names

    _Res.omega, _Res.beta = omega, beta
    T = _to_focei_layout(s, _Res, D, P, S)
    cov_names = list(est._covariance_names(problem, s))
    C = T @ sp.covariance("model") @ T.T
    se = np.sqrt(np.where(np.diag(C) > 0, np.diag(C), np.nan))
    R = C / np.outer(se, se)
    info = np.linalg.pinv(R)          # the information in correlation form
    w, V = np.linalg.eigh(info)
    flat = V[:, 0]
    top = np.argsort(-np.abs(flat))[:4]
    i = {k: cov_names.index(k) for k in ("theta eD", "log omega^2 eD", "theta Q0",
                                         "log omega^2 Q0")}
    n_obs = {}
    for d in designs:
        for k in np.asarray(d.obs, dtype=int):
            o = problem.observables[k]
            n_obs[o] = n_obs.get(o, 0) + 1
    return {"design": design, "seed": int(seed), "n": int(n), "observations": n_obs,
            "se": {k: float(v) for k, v in zip(cov_names, se, strict=True)},
            "corr": {"theta eD, log omega^2 eD": float(R[i["theta eD"], i["log omega^2 eD"]]),
                     "theta eD, theta Q0": float(R[i["theta eD"], i["theta Q0"]]),
                     "log omega^2 eD, log omega^2 Q0": float(
                         R[i["log omega^2 eD"], i["log omega^2 Q0"]])},
            "smallest_eigenvalue": float(w[0]),
            "flattest_direction": {cov_names[k]: float(flat[k]) for k in top},
            "acceptance": np.asarray(sp.acceptance).tolist(),
            "seconds": time.perf_counter() - t0,
            "finished": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}


#: Fisher information of a location under a Student-t(df) residual of scale s is
#: (df + 1) / ((df + 3) s^2): the linearised calculation uses the normal residual of the same
#: information (variance s^2 (df + 3) / (df + 1)).
def _equivalent_variance(sd: float, df: float) -> float:
    return sd ** 2 * (1.0 if not math.isfinite(df) else (df + 3.0) / (df + 1.0))


def _inverse_where_informed(info):
    """(covariance, SEs) of an information matrix whose uninformed rows (a parameter no data
    touch, e.g. Q0 without CRP) are left out: their SE is inf."""
    d = np.diag(info)
    ok = d > 1e-9 * d.max()
    cov = np.full(info.shape, np.nan)
    cov[np.ix_(ok, ok)] = np.linalg.inv(info[np.ix_(ok, ok)])
    se = np.where(ok, np.sqrt(np.abs(np.diag(cov))), np.inf)
    return cov, se


def linearised(design: str, seed: int, n: int = 200, drop: tuple = ()) -> dict:
    """First-order (linearised) expected information at the truth, one replicate's design.

    Each patient's predictions are linearised in the random effects at eta = 0 (its typical
    parameters given its covariates): ``f_i(eta) ~ f_i(0) + G_i eta``, ``G_i`` the exact
    sensitivities (the fit's own model). Then ``y_i ~ N(f_i(0), V_i)``,
    ``V_i = G_i Omega G_i' + Sigma_i`` (Student-t CRP residual: the normal of the same
    location information), and the information of ``log omega^2_j`` is
    ``sum_i 1/2 tr(V_i^-1 dV_j V_i^-1 dV_k)`` with ``dV_j = omega^2_j g_ij g_ij'``; the
    typical values' block ``sum_i G_i' V_i^-1 G_i`` (on the log scale). Censored CRP values
    count as observed (a slight overstatement). ``drop``: observables whose rows are
    removed (where the information comes from). Also the mean per-patient shrinkage of each
    eta, ``1 - Var(E[eta|y]) / omega^2`` (linear model: ``1 - mean_i (Omega G' V^-1 G
    Omega)_jj / omega^2_j``)."""
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.problem import Problem

    cfg = pr.read_config()
    designs, _, _ = prm.simulate_replicate(n, seed, cfg, cohort_config=cohort_config(design))
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    pops = [p for p in cfg.parameters if p.estimate == "population" and p.kind != "error"]
    names = list(problem.names)
    cols = np.array([names.index(p.name) for p in pops])
    mu = np.array([[math.log(prm.TRUTH["typical"][p.name])
                    + prm._log_covariate_term(p, dict(d.baseline),
                                              prm.TRUTH["coefficients"]) for p in pops]
                   for d in designs])
    om = np.array([prm.TRUTH["omega"][p.name] for p in pops])
    model = ProblemModel(problem, designs, cols)
    f, G = model.predict(mu, np.arange(len(designs)))
    G = np.asarray(G, dtype=float)
    obs_names = list(problem.observables)
    var_of = np.array([_equivalent_variance(prm.TRUTH["sigma"][o],
                                            prm._df(str(problem.error_models[j])))
                       for j, o in enumerate(obs_names)])
    E = len(pops)
    I_om = np.zeros((E, E))
    I_th = np.zeros((E, E))
    shrink = np.zeros(E)
    for i, d in enumerate(designs):
        k = np.asarray(d.obs, dtype=int)
        keep = np.array([obs_names[j] not in drop for j in k])
        g = G[i, :d.n][keep]
        if g.shape[0] == 0:
            shrink += 1.0
            continue
        V = g @ np.diag(om) @ g.T + np.diag(var_of[k[keep]])
        Vi_g = np.linalg.solve(V, g)                  # V^-1 G
        M = g.T @ Vi_g                                # G' V^-1 G (E, E)
        I_th += M
        # 1/2 tr(V^-1 dV_j V^-1 dV_k), dV_j = om_j g_j g_j': 1/2 om_j om_k (g_j' V^-1 g_k)^2
        I_om += 0.5 * np.outer(om, om) * M ** 2
        shrink += 1.0 - np.diag(np.diag(om) @ M @ np.diag(om)) / om
    cov, se_om = _inverse_where_informed(I_om)
    corr = cov / np.outer(se_om, se_om)
    se_th = _inverse_where_informed(I_th)[1]
    pn = [p.name for p in pops]
    n_obs = {}
    for d in designs:
        for j in np.asarray(d.obs, dtype=int):
            if obs_names[j] not in drop:
                n_obs[obs_names[j]] = n_obs.get(obs_names[j], 0) + 1
    return {"design": design, "seed": int(seed), "n": int(n), "drop": list(drop),
            "observations": n_obs,
            "se_log_omega2": dict(zip(pn, se_om.tolist(), strict=True)),
            "se_theta": dict(zip(pn, se_th.tolist(), strict=True)),
            "corr_log_omega2_eD": dict(zip(pn, corr[pn.index("eD")].tolist(), strict=True)),
            "shrinkage": dict(zip(pn, (shrink / len(designs)).tolist(), strict=True))}


def linearised_table(rows: list[dict]) -> str:
    out = ["| design | rows removed | CRP / Treg % values | SE log omega^2 eD (95 % interval "
           "of omega^2 eD at 0.09) | SE log omega^2 Q0 | corr(log om eD, log om Q0) | "
           "shrinkage eD / Q0 | SE theta eD |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        s = x["se_log_omega2"]["eD"]
        out.append(f"| {x['design']} | {', '.join(x['drop']) or '-'} | "
                   f"{x['observations'].get('CRP', 0)} / "
                   f"{x['observations'].get('Treg_pct', 0)} | {s:.2f} "
                   f"({0.09 * math.exp(-1.96 * s):.3f} to {0.09 * math.exp(1.96 * s):.2f}) | "
                   f"{x['se_log_omega2']['Q0']:.2f} | {x['corr_log_omega2_eD']['Q0']:+.2f} | "
                   f"{x['shrinkage']['eD']:.2f} / {x['shrinkage']['Q0']:.2f} | "
                   f"{x['se_theta']['eD']:.3f} |")
    return "\n".join(out)


def summary(lines: list[dict]) -> str:
    rows = ["| design | seed | CRP / Treg % values | SE theta eD | SE log omega^2 eD "
            "(95 % interval of omega^2 eD at 0.09) | corr(theta eD, log om eD) | "
            "corr(log om eD, log om Q0) | smallest eigenvalue (corr. form) | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in lines:
        s = x["se"]["log omega^2 eD"]
        lo, hi = 0.09 * math.exp(-1.96 * s), 0.09 * math.exp(1.96 * s)
        rows.append(f"| {x['design']} | {x['seed']} | {x['observations'].get('CRP', 0)} / "
                    f"{x['observations'].get('Treg_pct', 0)} | {x['se']['theta eD']:.3f} | "
                    f"{s:.2f} ({lo:.3f} to {hi:.2f}) | "
                    f"{x['corr']['theta eD, log omega^2 eD']:+.2f} | "
                    f"{x['corr']['log omega^2 eD, log omega^2 Q0']:+.2f} | "
                    f"{x['smallest_eigenvalue']:.3f} | {x['seconds']:.0f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--burn-in", type=int, default=60)
    ap.add_argument("--chains", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--linearised", action="store_true",
                    help="the first-order expected information instead (seconds per design): "
                         "each design as it is, without its Treg % rows and without its CRP "
                         "rows")
    ap.add_argument("--linearised-out", default=None, metavar="MD",
                    help="with --linearised: also write the table to this file")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.linearised:
        rows = [linearised(d, seed, a.n, drop) for d in a.designs for seed in a.seeds
                for drop in ((), ("Treg_pct",), ("CRP",))]
        table = linearised_table(rows)
        print(table)
        if a.linearised_out:
            Path(a.linearised_out).write_text(
                f"<!-- {' '.join(['python', *sys.argv])} "
                f"({_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}) -->\n"
                + table + "\n")
        return 0
    if not a.summary:
        for d in a.designs:
            for seed in a.seeds:
                if any(x["design"] == d and x["seed"] == seed and x["n"] == a.n
                       for x in pr.load_lines(out)):
                    continue
                line = information_at_truth(d, seed, a.n, a.iterations, a.burn_in, a.chains)
                with out.open("a") as fh:
                    fh.write(json.dumps(line) + "\n")
                print(summary([line]).splitlines()[-1], flush=True)
    print(summary(pr.load_lines(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
