"""The population section of a fit's ``report.md``: the parameter table (typical values,
covariate coefficients, Omega with covariances and correlations, residual error; SE, RSE %,
CI, shrinkage), the correlations of the estimates and the population diagnostics. Called by
:func:`progression.fit.report.write_report`.
"""

from __future__ import annotations

import math

import numpy as np

from ._population_table import population_table

__all__ = ["population_lines"]


def population_lines(result, outputs=None) -> list[str]:
    """The population parameter table: typical values, Omega (variance and CV %), residual
    error, with SE, RSE % and eta shrinkage; then the diagnostics (condition number, epsilon
    shrinkage, NPDE, the files)."""
    from .population._outputs import correlation_condition_number

    pop = result.population
    level = float(getattr(result, "confidence", 0.95) or 0.95)
    lines = ["## Population estimates", "",
             f"{pop.method}: OFV (NONMEM convention, without N log 2 pi) = {pop.ofv:.4f}; "
             f"-2 log L = {pop.m2ll:.4f}; AIC = {pop.aic:.4f}; BIC = {pop.bic:.4f} "
             f"({pop.n_parameters} population parameters); {pop.iterations} iterations, "
             f"{pop.evaluations} evaluations, {'converged' if pop.converged else 'NOT converged'}"
             "." + (f" OFV by linearisation (FOCE-I objective at these estimates): "
                    f"{pop.ofv_linearised:.4f}."
                    if math.isfinite(getattr(pop, "ofv_linearised", math.nan)) else "")
             + (f" OFV by importance sampling (the exact -2 log L at these estimates, without "
                f"N log 2 pi): {pop.ofv_importance:.4f} (Monte Carlo SE "
                f"{pop.ofv_importance_se:.3f})."
                if math.isfinite(getattr(pop, "ofv_importance", math.nan)) else ""), "",
             f"| parameter | estimate | SE | RSE % | {100 * level:g} % CI | CV % | shrinkage % |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in population_table(pop, level):
        cv = sh = ""
        if r["kind"] == "variance":
            cv, sh = f"{r['cv_percent']:.3g}", f"{r['shrinkage_percent']:.3g}"
        if r["fixed"]:
            lines.append(f"| {r['label']} | {r['estimate']:.5g} | fixed | | | {cv} | {sh} |")
            continue
        lo, hi = r["ci_low"], r["ci_high"]
        interval = f"{lo:.4g} – {hi:.4g}" if math.isfinite(lo) and math.isfinite(hi) else ""
        lines.append(f"| {r['label']} | {r['estimate']:.5g} | {r['se']:.3g} | "
                     f"{r['rse_percent']:.3g} | {interval} | {cv} | {sh} |")
    fixed_eta = {k for b in (getattr(pop, "omega_blocks", ()) or ()) if b.get("fixed")
                 for k in b["parameters"]}
    lines += ["", "Omega on the estimation scale (variances, and covariances within blocks); "
                  "CV % = 100 sqrt(exp(omega^2) - 1) for log-scale parameters; shrinkage = 1 "
                  "- SD(EBE) / omega. "
                  f"{100 * level:g} % CI: Wald interval on the scale each quantity was "
                  "estimated on (a log-scale typical value, a variance and a residual SD on "
                  "the log scale), mapped back; none for a variance inside an Omega block. "
              + (f"Fixed random-effect variances: {', '.join(sorted(fixed_eta))}. "
                 if fixed_eta else "")
              + ("Covariate effects multiply the typical value TV (the value above, at the "
                 "reference): power TV (cov/ref)^c, exponential TV exp(c (cov - ref)), linear "
                 "TV (1 + c (cov - ref)), categorical TV (1 + c) in the named category. "
                 if getattr(pop, "coefficients", None) else "")
              + f"Covariance: {pop.covariance_method}. Per-subject parameters at the "
              "empirical Bayes estimates are in `subjects.csv`.", ""]
    lines += _prior_lines(pop)
    lines += _correlation_lines(pop)
    lines += _profile_lines(pop)
    if getattr(pop, "bootstrap", None):
        from ._population_bootstrap import bootstrap_lines

        lines += bootstrap_lines(pop.bootstrap_result(), pop)
    cond = correlation_condition_number(pop.covariance)
    r_cond = float(getattr(pop, "r_condition_number", float("nan")))
    lines += ["## Population diagnostics", "",
              "| OFV | AIC | BIC | condition number | condition number of R | "
              "epsilon shrinkage % |",
              "|---:|---:|---:|---:|---:|---:|"]
    eps = float("nan")
    if outputs is not None and not isinstance(outputs, str):
        eps = 100 * outputs.epsilon_shrinkage
    lines += [f"| {pop.ofv:.4f} | {pop.aic:.4f} | {pop.bic:.4f} | {cond:.4g} | {r_cond:.4g} "
              f"| {eps:.3g} |",
              "", "Condition number: largest / smallest eigenvalue of the correlation matrix "
              "of the estimates (covariance step; NONMEM's; above ~1000 suggests an "
              "over-parameterised model); of R: of the Hessian of the OFV in the estimation "
              "parameters. AIC and BIC from -2 log L with the constant. "
              "Epsilon shrinkage = 1 - SD(IWRES).", ""]
    if isinstance(outputs, str):
        lines += [f"**The per-observation diagnostics could not be computed:** {outputs}", ""]
    elif outputs is not None:
        nd = outputs.npde[np.isfinite(outputs.npde)]
        cw = outputs.cwres[np.isfinite(outputs.cwres)]
        lines += [f"`data.csv` has per observation PRED (eta = 0), IPRED (at the EBEs), IWRES, "
                  f"CWRES (FOCE-I, Hooker et al. 2007) and NPDE ({outputs.n_sim} simulations "
                  f"of each subject's design, seed {outputs.seed}; Brendel et al. 2006). "
                  f"Mean (SD) of CWRES {np.mean(cw):.3f} ({np.std(cw, ddof=1):.3f}), of NPDE "
                  f"{np.mean(nd):.3f} ({np.std(nd, ddof=1):.3f}); both should be near 0 (1).",
                  ""]
        left = {k: v for k, v in outputs.vpc_left_out.items() if v}
        if left:
            lines += ["The prediction-corrected VPC leaves out the observations whose PRED is "
                      "not positive (the ratio correction of a proportional or combined error "
                      "model divides by PRED) and values censored above a limit: " + ", ".join(
                          f"{v} of {k}" for k, v in left.items()) + ".", ""]
        from .population._outputs import censoring_report_lines, vpc_report_lines
        from .population._vpc_survival import survival_vpc_lines

        lines += censoring_report_lines(outputs)
        lines += vpc_report_lines(outputs)
        lines += survival_vpc_lines(getattr(outputs, "survival_vpc", None))
    lines += ["`fit.ext`: NONMEM-style table (THETA typical values then covariate "
              "coefficients, SIGMA residual variances, OMEGA, OBJ) of the outer iterations, "
              "the final estimates (-1000000000) and the standard errors (-1000000001); "
              "`progression.fit.population.read_ext` reads it.", ""]
    return lines


def _prior_lines(pop) -> list:
    """The priors (SAEM's MAP estimation), their -2 log p at the estimates, and how far
    each estimate sits from its prior."""
    priors = getattr(pop, "priors", None) or {}
    if not priors:
        return []
    lines = ["### Priors", "",
             "The estimates are the posterior mode (maximum a posteriori; NONMEM's $PRIOR "
             "NWPRI): the OFV, AIC and BIC above are the data's -2 log L; the priors add "
             f"-2 log p = {pop.prior_objective:.4f} (constants left out), so the posterior "
             f"objective is {pop.ofv + pop.prior_objective:.4f}. The SEs are the posterior's "
             "(the information plus the priors' curvature).", "",
             "| parameter | prior | estimate |", "|---|---|---:|"]
    for k, p in priors.items():
        if k.startswith("omega^2 "):
            name = k[len("omega^2 "):]
            e = list(pop.omega_names).index(name)
            est = float(pop.omega[e, e])
            nu = p["df"]
            lines.append(f"| {k} | inverse-Wishart: value {p['value']:.4g}, df {nu:.4g} "
                         f"(mode {nu * p['value'] / (nu + 2):.4g}) | {est:.4g} |")
        else:
            scale = pop.scales.get(k, "linear")
            lines.append(f"| {k} (typical value) | normal on the {scale} scale: mean "
                         f"{p['value']:.4g}, SD {p['sd']:.4g} | "
                         f"{pop.fixed_effects[k]:.4g} |")
    return lines + [""]


def _profile_lines(pop) -> list:
    """The profile-likelihood intervals computed with the fit, beside the Wald ones."""
    if not getattr(pop, "profiles", None):
        return []
    from ._population_profile import markdown_table

    profiles = [pop.profile(name) for name in pop.profiles]
    first = profiles[0]
    if first.posterior:
        return ["### Profile-posterior intervals", "", *markdown_table(profiles), "",
                f"Refits of the fit with the parameter held, everything else estimated "
                f"({first.estimator}) with the priors; the objective profiled is OFV plus "
                f"the priors' -2 log p (the held parameter's at its held value), and the "
                f"interval is where it stays at most chi2_1({first.level:g}) = "
                f"{first.threshold:.3f} above its minimum (`figures/profile_*.png`; "
                f"`<` / `>`: an end the search did not reach).", ""]
    return ["### Profile-likelihood intervals", "", *markdown_table(profiles), "",
            f"Refits of the fit with the parameter held, everything else estimated "
            f"({first.estimator}); the interval is where OFV - OFV_hat stays at most "
            f"chi2_1({first.level:g}) = {first.threshold:.3f} (`figures/profile_*.png`; "
            f"`<` / `>`: an end the search did not reach).", ""]


def _correlation_lines(pop) -> list:
    """The correlation matrix of the estimates (covariance step), as a table."""
    cov = None if pop.covariance is None else np.asarray(pop.covariance, dtype=float)
    names = list(pop.covariance_names)
    if cov is None or cov.size == 0 or not np.all(np.isfinite(cov)) or len(names) != len(cov):
        return []
    d = np.sqrt(np.diag(cov))
    if np.any(d <= 0):
        return []
    corr = cov / np.outer(d, d)
    lines = ["### Correlations of the estimates", "",
             "| | " + " | ".join(f"{j + 1}" for j in range(len(names))) + " |",
             "|---|" + "---:|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {i + 1}. {n} | " + " | ".join(
            f"{corr[i, j]:.2f}" if j <= i else "" for j in range(len(names))) + " |")
    big = [(names[i], names[j], corr[i, j]) for i in range(len(names)) for j in range(i)
           if abs(corr[i, j]) > 0.95]
    lines += ["", "On the estimation scales of the covariance step (`theta`: the parameter's "
                  "scale; `log omega^2`, `log L`, `L`: Omega's parametrisation; `coef`: a "
                  "covariate coefficient)."
              + (" Strongly correlated (|r| > 0.95): " + "; ".join(
                  f"{a} and {b} ({r:.3f})" for a, b, r in big) + "." if big else ""), ""]
    return lines
