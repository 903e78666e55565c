"""``progression fit CONFIG [--jobs N] [--scheduler ADDRESS] [--out DIR]``.

Wired into :mod:`progression.cli` with ``register(sub)``. Reads and validates the config (a bad
config raises one ConfigError, nothing is written), fits, prints a summary and writes the fit
folder atomically: ``--out`` if given, else the config's ``[output] folder``, else
``fits/<name>``. An existing fit folder is replaced only with ``--overwrite``; a folder that
progression did not write, or one holding the config, data or model, is refused before the fit
starts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["register", "cmd_fit", "population_summary"]


def cmd_fit(args) -> int:
    """Fit a run config and write the fit folder."""
    from ._io import check_output_folder
    from .errors import ProgressionError
    from .fit import fit, read_fit_config

    if args.jobs is not None and args.jobs < 1:
        raise ProgressionError(f"--jobs: expected a positive integer, found {args.jobs}")
    cfg = read_fit_config(args.config)
    if args.bootstrap is not None:
        if args.bootstrap < 2:
            raise ProgressionError(f"--bootstrap: expected at least 2 replicates, found "
                                   f"{args.bootstrap}")
        wanted = tuple(dict.fromkeys((*cfg.options.get("uncertainty", ("covariance",)),
                                      "bootstrap")))
        cfg = cfg.replace(options={**cfg.options, "uncertainty": wanted,
                                   "bootstrap_samples": int(args.bootstrap)})
    if args.start_from:
        from .fit._start import start_from

        cfg = start_from(cfg, args.start_from)
    out = Path(args.out) if args.out else cfg.output_folder
    inputs = fit_inputs(cfg, args.config)
    # refused before the fit runs, so nobody waits minutes to learn the folder is taken
    check_output_folder(out, overwrite=args.overwrite, inputs=inputs, what="fit folder")
    result = fit(cfg, jobs=args.jobs, scheduler=args.scheduler, progress=not args.quiet)
    result.save(out, figures=cfg.output["figures"] and not args.no_figures,
                overwrite=args.overwrite, inputs=inputs)
    print(population_summary(result) if result.population is not None
          else result.summary())
    print(f"wrote {out}/ (fit.json, subjects.csv, data.csv, report.md"
          f"{', figures/' if cfg.output['figures'] and not args.no_figures else ''})")
    return 0


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


def fit_inputs(cfg, config) -> list[Path]:
    """The files a fit reads: the config, the data file and its sidecar, a model file."""
    inputs = [Path(config)]
    data = getattr(cfg, "data", None) or {}
    for key in ("path", "sidecar"):
        if isinstance(data.get(key), str | Path):
            inputs.append(Path(data[key]))
    ref = getattr(cfg, "model_ref", "")
    if ref and Path(ref).is_file():
        inputs.append(Path(ref))
    return inputs


def register(subparsers) -> None:
    """Add the ``fit`` subcommand to an argparse subparsers object."""
    from .cli import add_overwrite

    p = subparsers.add_parser("fit", help="fit a model to data from a run config (TOML)",
                              description="Fit a model to longitudinal data as a run config "
                                          "says; write estimates, uncertainty, diagnostics "
                                          "and figures to a fit folder.")
    p.add_argument("config", help="run config (.toml)")
    # checked in cmd_fit (not by argparse) so that the message is the toolkit's own
    p.add_argument("--jobs", type=int, help="local worker processes (default: in-process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786), or 'local' for a "
                        "LocalCluster with --jobs workers")
    p.add_argument("--out", metavar="DIR", help="output folder (default: from the config, "
                                                 "else fits/NAME)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--start-from", metavar="FIT", help="start at the estimates of an earlier "
                                                     "population fit (its folder); overrides "
                                                     "[fit] start_from")
    p.add_argument("--bootstrap", type=int, metavar="N",
                   help="add the bootstrap with N replicates: subjects resampled and refitted "
                        "for a population fit, the parametric bootstrap for a per-subject "
                        "fit; overrides [estimator] bootstrap_samples")
    add_overwrite(p)
    p.set_defaults(func=cmd_fit)
