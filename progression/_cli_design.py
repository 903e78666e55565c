"""``progression design``: predicted standard errors of a population design, before the data.

    progression design configs/theoph_population.toml
    progression design configs/als_synthetic_population.toml --fit fits/als_synthetic_population \\
        --subjects 1000 --target-rse 30
    progression design configs/theoph_population.toml --data planned_visits.csv
    progression design configs/theoph_population.toml --method mcmc --replicates 4
    progression design configs/theoph_population.toml --optimize conc \
        --times 0.25,0.5,1,2,3.5,5,7,9,12,24 --window 0,24 --for ka --for CL --for V

The design is the config's data file (``--data`` another file in the same format: its
values are placeholders); the parameters are the config's values, or a fit's estimates with
``--fit``. Prints the expected (FO, block-diagonal; ``--method mcmc`` exact, by simulated data
sets and MCMC) Fisher information's standard errors and RSEs
(:func:`progression.fit.evaluate_design`), for ``--subjects`` subjects with the design's
mix replicated, and with ``--target-rse`` the subjects each parameter needs. ``--optimize OBS``
moves OBS's sampling times (``--times``, inside ``--window``) to the D-optimal (or, with
``--for``, Ds-optimal) schedule (:func:`progression.fit.optimize_sampling`). Writes nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "cmd_design"]


def cmd_design(args) -> int:
    from .errors import ConfigError, DataError
    from .fit import evaluate_design, read_fit_config

    if args.subjects is not None and args.subjects < 1:
        raise ConfigError(f"--subjects: expected a positive number of subjects, found "
                          f"{args.subjects}")
    if args.target_rse is not None and not args.target_rse > 0:
        raise ConfigError(f"--target-rse: expected a positive RSE in %, found "
                          f"{args.target_rse}")
    cfg = read_fit_config(args.config, check_data=args.data is None)
    if args.data is not None:
        path = Path(args.data)
        if not path.is_file():
            raise DataError(f"{path}: --data: no such file (expected a data file in the "
                            f"format of {args.config}'s [data])")
        cfg = cfg.replace(data={**cfg.data, "path": str(path)})
    fit = None
    if args.fit is not None:
        folder = Path(args.fit)
        if not (folder / "fit.json").is_file():
            raise DataError(f"{folder}: --fit: no fit.json (expected a folder `progression "
                            "fit` wrote)")
        fit = folder
    if args.optimize is not None:
        if args.method != "fo":
            raise ConfigError("--optimize evaluates thousands of schedules by FO's "
                              "information; --method mcmc is for evaluating one design "
                              "(evaluate the optimised schedule with it afterwards)")
        return _optimize(args, cfg, fit)
    if args.times is not None or args.window is not None or args.for_ is not None \
            or args.within_follow_up:
        raise ConfigError("--times, --window, --for and --within-follow-up go with --optimize "
                          "OBS (the observable whose sampling times are optimised); found them "
                          "without it")
    if args.method == "fo" and (args.replicates is not None or args.seed is not None):
        raise ConfigError("--replicates and --seed go with --method mcmc (the simulated data "
                          "sets); found them with --method fo")
    if args.method == "mcmc" and args.fim != "reduced":
        raise ConfigError("--fim chooses the form of FO's information; --method mcmc computes "
                          "the exact (full) information: drop --fim")
    extra = ({} if args.method == "fo" else
             dict(replicates=4 if args.replicates is None else args.replicates,
                  seed=1 if args.seed is None else args.seed))
    ev = evaluate_design(cfg, fit=fit, n_subjects=args.subjects, form=args.fim,
                         method=args.method, **extra)
    print(report(ev, args.target_rse))
    return 0


def _numbers(text, option: str) -> list:
    from .errors import ConfigError

    try:
        out = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers, found {text!r}") \
            from None
    if not out:
        raise ConfigError(f"{option}: expected comma-separated numbers, found {text!r}")
    return out


def _optimize(args, cfg, fit) -> int:
    from .errors import ConfigError
    from .fit import optimize_sampling

    if args.times is None or args.window is None:
        raise ConfigError("--optimize: expected --times T1,T2,... (the starting schedule) and "
                          "--window LOW,HIGH (where the times may go); found "
                          + ("neither" if args.times is None and args.window is None
                             else "only --times" if args.window is None else "only --window"))
    window = _numbers(args.window, "--window")
    if len(window) != 2:
        raise ConfigError(f"--window: expected LOW,HIGH, found {args.window!r}")
    opt = optimize_sampling(cfg, observable=args.optimize, times=_numbers(args.times, "--times"),
                            window=tuple(window), fit=fit, parameters=args.for_,
                            form=args.fim, within_follow_up=args.within_follow_up)
    ev = opt.after if args.subjects is None else opt.after.scaled(args.subjects)
    print(report(ev, args.target_rse))
    print()
    print(f"Optimised sampling of {opt.observable} ({opt.criterion}-optimal, window "
          f"{opt.window[0]:g} to {opt.window[1]:g}, {opt.evaluations} designs evaluated):")
    print("  start: " + ", ".join(f"{t:.4g}" for t in opt.start))
    print("  best:  " + ", ".join(f"{t:.4g}" for t in opt.times))
    print(f"  criterion {opt.value_start:.6g} -> {opt.value:.6g} (smaller is better)")
    print()
    print(opt.table())
    return 0


def report(ev, target_rse=None) -> str:
    """The evaluation as printed by ``progression design``."""
    from .fit._design_evaluation import FORMS

    obs = ", ".join(f"{k} {v:,.0f}" for k, v in ev.observations.items())
    how = (f"first-order linearisation, {FORMS[ev.form]}" if ev.method == "fo" else
           "exact (MCMC over the random effects, simulated data sets; SE +- its Monte Carlo "
           "error)")
    lines = [f"Design evaluation of {ev.source}: {ev.n_subjects:,} subjects ({obs} values)",
             f"Expected Fisher information, {how}, at {ev.at}", "",
             ev.table(target_rse), "",
             f"D-criterion det(FIM)^(1/{ev.fim.shape[0]}) = {ev.d_criterion:.6g}"]
    lines += [f"note: {n}" for n in ev.notes]
    return "\n".join(lines)


def register(subparsers) -> None:
    """Add the ``design`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "design", help="predicted standard errors of a population design (expected FIM)",
        description="Evaluate a population design (the config's data file: subjects, times, "
                    "observables, doses, covariates) by its expected Fisher information and "
                    "print the standard errors and RSEs it predicts.")
    p.add_argument("config", help="a population fit config (.toml)")
    p.add_argument("--fit", metavar="DIR",
                   help="evaluate at this fit's estimates (default: the config's values)")
    p.add_argument("--data", metavar="FILE",
                   help="the design: a data file in the config's format (values ignored)")
    p.add_argument("--subjects", type=int, metavar="N",
                   help="report for N subjects (the design's mix replicated)")
    p.add_argument("--fim", choices=("reduced", "full"), default="reduced",
                   help="the information's form: reduced (block-diagonal, default) or full")
    p.add_argument("--method", choices=("fo", "mcmc"), default="fo",
                   help="fo: linearised information (seconds, default); mcmc: exact, by "
                        "simulated data sets and MCMC (minutes)")
    p.add_argument("--replicates", type=int, metavar="R",
                   help="--method mcmc: simulated data sets (default 4)")
    p.add_argument("--seed", type=int, metavar="S", help="--method mcmc: seed (default 1)")
    p.add_argument("--target-rse", type=float, metavar="PCT",
                   help="also print the subjects each parameter needs for this RSE (%%)")
    p.add_argument("--optimize", metavar="OBS",
                   help="optimise the sampling times of observable OBS (every subject gets "
                        "the schedule; needs --times and --window)")
    p.add_argument("--times", metavar="T1,T2,...", help="the starting schedule (data time)")
    p.add_argument("--window", metavar="LOW,HIGH", help="where the times may go")
    p.add_argument("--for", dest="for_", action="append", metavar="NAME",
                   help="Ds-optimal for this parameter (repeat; default all: D-optimal)")
    p.add_argument("--within-follow-up", action="store_true",
                   help="sample each subject only up to its last recorded time")
    p.set_defaults(func=cmd_design)
