"""``progression profile``: profile-likelihood intervals of a population fit's parameters.

    progression profile configs/theoph_population.toml --parameter "omega^2 ka" --parameter CL

Reads the fit the config wrote (``--fit``, default the config's output folder), refits with
each parameter held (:func:`progression.fit.profile_population`) and writes a profile folder
(default ``<fit folder>_profile``): ``profile.json`` (every refit, both intervals),
``profile.md`` (the table) and ``profile_<parameter>.png``; nothing is written until every
profile is done, and an existing folder is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["register", "cmd_profile"]


def cmd_profile(args) -> int:
    from ._io import atomic_directory, check_output_folder
    from .errors import ConfigError, DataError
    from .fit import load_fit, profile_population, read_fit_config
    from .fit._population_profile import slug

    cfg = read_fit_config(args.config)
    folder = Path(args.fit) if args.fit else Path(cfg.output["folder"])
    if not (folder / "fit.json").is_file():
        raise DataError(f"{folder}: no fit.json (expected the folder `progression fit "
                        f"{args.config}` writes; run it first or give --fit FOLDER)")
    out = Path(args.out) if args.out else folder.with_name(folder.name + "_profile")
    if not 0.0 < args.level < 1.0:
        raise ConfigError(f"--level: expected a coverage in (0, 1), found {args.level!r}")
    names = list(dict.fromkeys(args.parameter))
    inputs = [Path(args.config), folder]
    check_output_folder(out, overwrite=args.overwrite, inputs=inputs, what="profile folder")
    fit = load_fit(folder)
    if fit.population is None:
        raise ConfigError(f"{folder}: a {fit.kind} fit has no population parameters to "
                          f"profile (expected a focei, foce, fo, laplace or saem fit)")
    profiles = [profile_population(cfg, name, fit=fit, level=args.level,
                                   max_refits=args.max_refits, progress=not args.quiet)
                for name in names]
    text = "\n\n".join(p.table() for p in profiles)
    print(text)
    with atomic_directory(out, overwrite=args.overwrite, inputs=inputs,
                          what="profile folder") as tmp:
        doc = {"config": str(args.config), "fit": str(folder), "level": args.level,
               "profiles": {p.parameter: p.to_dict() for p in profiles}}
        (tmp / "profile.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "profile.md").write_text(_markdown(profiles, args, folder))
        if not args.no_figures:
            import matplotlib.pyplot as plt

            for p in profiles:
                fig = p.plot()
                fig.savefig(tmp / f"profile_{slug(p.parameter)}.png", dpi=110)
                plt.close(fig)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _markdown(profiles, args, folder) -> str:
    from .fit._population_profile import markdown_table

    rows = [f"# Profile likelihood: {folder}", "",
            f"`progression profile {args.config} "
            + " ".join(f'--parameter "{p.parameter}"' for p in profiles) + "`", "",
            *markdown_table(profiles),
            "", "Each refit holds the parameter and estimates everything else with the "
            "fit's estimator and options; the interval is where OFV - OFV_hat stays below "
            f"chi2_1({args.level:g}) = {profiles[0].threshold:.3f}.", "", "```",
            "\n\n".join(p.table() for p in profiles), "```", ""]
    return "\n".join(rows)


def register(subparsers) -> None:
    """Add the ``profile`` subcommand to an argparse subparsers object."""
    from .cli import add_overwrite

    p = subparsers.add_parser(
        "profile", help="profile-likelihood intervals of a population fit's parameters",
        description="Refit a population fit with each named parameter held (typical value "
                    "NAME, variance 'omega^2 NAME', residual OBS.a) and write its "
                    "profile-likelihood interval beside the Wald one.")
    p.add_argument("config", help="the fit's run config (.toml)")
    p.add_argument("--parameter", action="append", required=True, metavar="NAME",
                   help="a typical value (NAME), a variance ('omega^2 NAME') or a residual "
                        "parameter (OBS.a); repeat for several")
    p.add_argument("--fit", metavar="DIR", help="the fit folder (default: the config's)")
    p.add_argument("--out", metavar="DIR",
                   help="profile folder (default: the fit folder's name + _profile)")
    p.add_argument("--level", type=float, default=0.95, help="coverage (default 0.95)")
    p.add_argument("--max-refits", type=int, default=6, help="most refits per end")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no line per refit on stderr")
    add_overwrite(p)
    p.set_defaults(func=cmd_profile)
