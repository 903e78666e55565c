"""The screen a population fit prints (``progression fit``, ``print(fit)``,
``fit.summary()``): typical values, covariate coefficients, Omega, residual error with RSE %
and Wald intervals, OFV, AIC, BIC, condition number, profiles, bootstrap, warnings.
``report.md`` has the full tables (:mod:`._report_population`)."""

from __future__ import annotations

import math
import textwrap

import numpy as np

__all__ = ["population_summary"]


def _g(x, digits: int = 4) -> str:
    """A number for the table: ``digits`` significant digits, ``-`` when not finite."""
    x = float(x)
    return f"{x:.{digits}g}" if math.isfinite(x) else "-"


def _rse(est, se) -> str:
    """RSE % = 100 SE / |estimate|, ``-`` when there is no SE (fixed, failed step)."""
    est, se = float(est), float(se)
    if not (math.isfinite(se) and math.isfinite(est)) or est == 0:
        return "-"
    return f"{100.0 * se / abs(est):.3g}"


def _ci(intervals: dict, key: str) -> str:
    """A Wald interval ``lo - hi`` for the table, ``-`` when there is none."""
    lo, hi = intervals.get(key, (math.nan, math.nan))
    return f"{_g(lo)} - {_g(hi)}" if math.isfinite(lo) and math.isfinite(hi) else "-"


def _linearised_line(pop) -> list[str]:
    """SAEM's OFV by linearisation (when its covariance step computed it), the FOCE family's
    by importance sampling, and the priors' -2 log p, a line each."""
    v = float(getattr(pop, "ofv_linearised", math.nan))
    out = [f"  OFV by linearisation (FOCE-I at the estimates) {v:.4f}"] if math.isfinite(v) \
        else []
    v = float(getattr(pop, "ofv_importance", math.nan))
    if math.isfinite(v):
        out.append(f"  OFV by importance sampling (exact -2 log L at the estimates) {v:.4f} "
                   f"(MC SE {pop.ofv_importance_se:.3f})")
    priors = getattr(pop, "priors", None) or {}
    if priors:
        out.append(f"  maximum a posteriori: priors on {', '.join(priors)} add -2 log p "
                   f"{pop.prior_objective:.4f} (posterior objective "
                   f"{pop.ofv + pop.prior_objective:.4f})")
    return out


def _numbers_lines(result) -> list[str]:
    """Which path gave the numbers (exact outputs, SAEM's compiled RK4 and its step),
    wrapped to the screen's width; none when the fit does not say."""
    text = (getattr(result, "provenance", None) or {}).get("numbers_from")
    return textwrap.wrap(f"numbers: {text}", width=96, initial_indent="  ",
                         subsequent_indent="    ") if text else []


def population_summary(result) -> str:
    """The screen a population fit prints: typical values with RSE, covariate coefficients,
    Omega (variance, CV % or SD, shrinkage; correlations of its blocks), residual error, OFV,
    AIC, BIC, condition number, censored values, warnings. ``report.md`` has the full tables.

    Parameters
    ----------
    result : FitResult
        With ``result.population`` set.

    Returns
    -------
    str
        About 15 + (parameters) lines.
    """
    pop = result.population
    n_obs = int(sum(d.n for d in result.designs)) if result.designs \
        else int(sum(result.n_obs))
    n_cens = int(sum(int((d.cens != 0).sum()) for d in result.designs)) if result.designs \
        else 0
    cens = f" ({n_cens} censored, M3)" if n_cens else ""
    total = result.timings.get("total", float("nan"))
    lines = [f"{result.name}: {pop.method} fit of model '{result.model.name}' to "
             f"{result.n_subjects} subjects, {n_obs} observations{cens}",
             f"  OFV {pop.ofv:.4f} (NONMEM convention, without N log 2 pi); AIC "
             f"{pop.aic:.3f}, BIC {pop.bic:.3f}; {pop.n_parameters} parameters",
             *_linearised_line(pop),
             f"  {'converged' if pop.converged else 'NOT converged'} after "
             f"{pop.iterations} iterations, {total:.1f} s; condition number "
             f"{_g(getattr(pop, 'condition_number', float('nan')))}",
             # the method's first words (report.md has the whole sentence)
             f"  covariance step: {str(pop.covariance_method).split(' (')[0].split(',')[0]}",
             *_numbers_lines(result),
             f"  {'typical value':<24}{'estimate':>12}{'RSE %':>9}{'95 % CI':>22}"]
    ci = pop.intervals(0.95)
    held = set(getattr(pop, "fixed_typical", ()) or ())
    for k, v in pop.fixed_effects.items():
        rse = "fixed" if k in held else _rse(v, pop.fixed_effects_se.get(k, math.nan))
        lines.append(f"  {k:<24}{_g(v, 5):>12}{rse:>9}{_ci(ci, k):>22}")
    coefs = dict(getattr(pop, "coefficients", {}) or {})
    if coefs:
        lines.append(f"  {'covariate coefficient':<24}{'estimate':>12}{'RSE %':>9}"
                     f"{'95 % CI':>22}")
        se = getattr(pop, "coefficients_se", {}) or {}
        lines += [f"  {k:<24}{_g(v, 5):>12}{_rse(v, se.get(k, math.nan)):>9}{_ci(ci, k):>22}"
                  for k, v in coefs.items()]
    om = np.atleast_2d(np.asarray(pop.omega, dtype=float))
    names = list(pop.omega_names)
    if names:
        lines.append(f"  {'Omega (random effect)':<24}{'variance':>12}{'RSE %':>9}"
                     f"{'95 % CI':>22}{'CV % / SD':>11}{'shrinkage %':>13}")
    for e, k in enumerate(names):
        var = om[e, e]
        cv = float((pop.cv_percent or {}).get(k, math.nan))
        # CV % for a log-normal parameter; otherwise the SD on its estimation scale
        spread = f"{cv:.3g}" if math.isfinite(cv) else f"SD {_g(math.sqrt(max(var, 0)), 3)}"
        shr = 100 * float(pop.shrinkage.get(k, math.nan))
        lines.append(f"  {k:<24}{_g(var):>12}{_rse(var, pop.omega_se.get(k, math.nan)):>9}"
                     f"{_ci(ci, 'omega^2 ' + k):>22}{spread:>11}{_g(shr, 3):>13}")
    corr = []
    for e in range(len(names)):
        for c in range(e):
            if om[e, c] != 0 and om[e, e] > 0 and om[c, c] > 0:
                corr.append(f"{names[c]}-{names[e]} "
                            f"{om[e, c] / math.sqrt(om[e, e] * om[c, c]):.3f}")
    if corr:
        lines.append("  correlations of the random effects (Omega blocks): " + ", ".join(corr))
    if pop.sigma:
        lines.append(f"  {'residual error':<24}{'estimate':>12}{'RSE %':>9}{'95 % CI':>22}")
        lines += [f"  {k:<24}{_g(v, 5):>12}{_rse(v, pop.sigma_se.get(k, math.nan)):>9}"
                  f"{_ci(ci, k):>22}" for k, v in pop.sigma.items()]
    for name in getattr(pop, "profiles", None) or {}:
        p = pop.profile(name)
        lo = ("<" if p.open_ends[0] else "") + _g(p.interval[0])
        hi = (">" if p.open_ends[1] else "") + _g(p.interval[1])
        kind = "posterior" if p.posterior else "likelihood"
        lines.append(f"  profile {kind} {100 * p.level:g} %: {name} {lo} - {hi} "
                     f"({p.refits} refits)")
    boot = pop.bootstrap_result() if getattr(pop, "bootstrap", None) else None
    if boot is not None:
        n = boot.samples.shape[0]
        lines.append(f"  bootstrap: {n - boot.n_failed} of {n} replicates estimated "
                     f"({boot.seconds:.0f} s); {100 * boot.level:g} % percentile intervals:")
        bci = boot.intervals()
        lines += [f"    {k:<22}{_g(bci[k][0]):>12} - {_g(bci[k][1])}" for k in boot.names]
    for line in result.failure_lines():
        lines.append("  " + line)
    for w in result.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
