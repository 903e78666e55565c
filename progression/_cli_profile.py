"""``progression profile``: profile-likelihood intervals of a population fit's parameters.

    progression profile configs/theoph_population.toml --parameter "omega^2 ka" --parameter CL
    progression profile configs/theoph_population.toml --at "omega^2 ka=0.25"

Reads the fit the config wrote (``--fit``, default the config's output folder), refits with
each parameter held (:func:`progression.fit.profile_population`) and writes a profile folder
(default ``<fit folder>_profile``): ``profile.json`` (every refit, both intervals),
``profile.md`` (the table) and ``profile_<parameter>.png``; nothing is written until every
profile is done, and an existing folder is replaced only with ``--overwrite``. ``--at
NAME=VALUE`` is the likelihood-ratio test of the hypothesis NAME = VALUE (a literature value,
or the truth of a simulation): one refit with NAME held there, its OFV - OFV_hat and p-value.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

__all__ = ["register", "cmd_profile"]


def cmd_profile(args) -> int:
    from ._io import atomic_directory, check_output_folder
    from .errors import ConfigError, DataError
    from .fit import load_fit, profile_population, read_fit_config
    from .fit._population_profile import check_profilable, slug

    cfg = read_fit_config(args.config)
    check_profilable(cfg)        # before looking for the fit: a config it can never profile
    folder = Path(args.fit) if args.fit else Path(cfg.output["folder"])
    if not (folder / "fit.json").is_file():
        raise DataError(f"{folder}: no fit.json (expected the folder `progression fit "
                        f"{args.config}` writes; run it first or give --fit FOLDER)")
    out = Path(args.out) if args.out else folder.with_name(folder.name + "_profile")
    if not 0.0 < args.level < 1.0:
        raise ConfigError(f"--level: expected a coverage in (0, 1), found {args.level!r}")
    names = list(dict.fromkeys(args.parameter or ()))
    tests = _hypotheses(args.at or ())
    if not names and not tests:
        raise ConfigError("progression profile: expected --parameter NAME or --at "
                          "NAME=VALUE, found neither")
    _check_requests(cfg, names, tests)         # before any refit: a typo costs nothing
    inputs = [Path(args.config), folder]
    check_output_folder(out, overwrite=args.overwrite, inputs=inputs, what="profile folder")
    fit = load_fit(folder)
    if fit.population is None:
        raise ConfigError(f"{folder}: a {fit.kind} fit has no population parameters to "
                          f"profile (expected a focei, foce, fo, laplace or saem fit)")
    profiles = [profile_population(cfg, name, fit=fit, level=args.level,
                                   max_refits=args.max_refits, progress=not args.quiet)
                for name in names]
    tested = {name: profile_population(cfg, name, fit=fit, level=args.level, values=vals,
                                       progress=not args.quiet)
              for name, vals in tests.items()}
    rows = _test_rows(tested, tests, args.level)
    print("\n\n".join([*(p.table() for p in profiles), *_test_lines(rows)]))
    with atomic_directory(out, overwrite=args.overwrite, inputs=inputs,
                          what="profile folder") as tmp:
        doc = {"config": str(args.config), "fit": str(folder), "level": args.level,
               "profiles": {p.parameter: p.to_dict() for p in profiles},
               "tests": rows}
        (tmp / "profile.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "profile.md").write_text(_markdown(profiles, rows, args, folder))
        if not args.no_figures:
            import matplotlib.pyplot as plt

            for p in profiles:
                fig = p.plot()
                fig.savefig(tmp / f"profile_{slug(p.parameter)}.png", dpi=110)
                plt.close(fig)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _hypotheses(given) -> dict:
    """``--at NAME=VALUE`` options as {NAME: [VALUE, ...]} (a name may be given twice)."""
    from .errors import ConfigError

    out: dict = {}
    for item in given:
        name, eq, value = str(item).rpartition("=")
        try:
            v = float(value)
        except ValueError:
            v = None
        if not eq or not name.strip() or v is None:
            raise ConfigError(f"--at: expected NAME=VALUE (e.g. \"omega^2 eD=0.09\"), found "
                              f"{item!r}")
        out.setdefault(name.strip(), []).append(v)
    return out


def _check_requests(cfg, names, tests) -> None:
    """Every name profilable and every --at value one a refit can hold, or one ConfigError."""
    from .fit._population_profile import _check_call, _checked_values, _target

    _check_call(cfg, 0.95, 2)                  # the estimator (level, refits: checked above)
    for name in names:
        _target(cfg, name)
    for name, values in tests.items():
        _checked_values(cfg, name, _target(cfg, name), values)


def _test_rows(tested, tests, level) -> list:
    """One row per hypothesis: parameter, value, estimate, OFV - OFV_hat, p-value, verdict
    (``delta_ofv``, ``p_value`` and ``rejected`` None where the refit failed)."""
    rows = []
    for name, vals in tests.items():
        for v in vals:
            d, pv = tested[name].delta_at(v), tested[name].p_value(v)
            ok = math.isfinite(d)
            rows.append({"parameter": name, "value": v, "estimate": tested[name].estimate,
                         "delta_ofv": d if ok else None, "p_value": pv if ok else None,
                         "level": level, "rejected": bool(pv < 1.0 - level) if ok else None,
                         "posterior": tested[name].posterior})
    return rows


def _verdict(r) -> str:
    if r["rejected"] is None:
        return "refit failed"
    return "rejected" if r["rejected"] else "not rejected"


def _test_lines(rows) -> list:
    if not rows:
        return []
    out = [_test_title(rows) + " (one refit with the parameter held at the value):"]
    for r in rows:
        head = f"  {r['parameter']} = {r['value']:.6g} (estimate {r['estimate']:.6g}): "
        if r["rejected"] is None:
            out.append(head + "the refit failed (no test)")
            continue
        verdict = f" (rejected at {100 * r['level']:g} %)" if r["rejected"] else ""
        out.append(head + f"OFV - OFV_hat {r['delta_ofv']:+.3f}, p = {r['p_value']:.3g}"
                   + verdict)
    return ["\n".join(out)]


def _test_title(rows) -> str:
    # with priors the statistic is the posterior objective's rise: a posterior-ratio test
    if any(r.get("posterior") for r in rows):
        return "Posterior-ratio tests (priors included)"
    return "Likelihood-ratio tests"


def _markdown(profiles, rows, args, folder) -> str:
    from .fit._population_profile import markdown_table

    call = " ".join([*(f'--parameter "{p.parameter}"' for p in profiles),
                     *(f'--at "{r["parameter"]}={r["value"]:g}"' for r in rows)])
    out = [f"# Profile likelihood: {folder}", "", f"`progression profile {args.config} {call}`",
           ""]
    if profiles:
        objective = ("the posterior objective (OFV plus the priors' -2 log p, the held "
                     "parameter's at its held value) rises less than" if profiles[0].posterior
                     else "OFV - OFV_hat stays below")
        out += [*markdown_table(profiles),
                "", "Each refit holds the parameter and estimates everything else with the "
                f"fit's estimator and options; the interval is where {objective} "
                f"chi2_1({args.level:g}) = {profiles[0].threshold:.3f}.", "", "```",
                "\n\n".join(p.table() for p in profiles), "```", ""]
    if rows:
        out += [f"## {_test_title(rows)}", "",
                "| parameter | value | estimate | OFV − OFV_hat | p | "
                f"at {100 * args.level:g} % |", "|---|---:|---:|---:|---:|---|"]
        out += [f"| {r['parameter']} | {r['value']:.6g} | {r['estimate']:.6g} | "
                + ("– | – | " if r["rejected"] is None else
                   f"{r['delta_ofv']:+.3f} | {r['p_value']:.3g} | ")
                + f"{_verdict(r)} |" for r in rows]
        out += ["", "Each value refitted with the parameter held there and everything else "
                "estimated; p = P(chi2_1 > OFV − OFV_hat).", ""]
    return "\n".join(out)


def register(subparsers) -> None:
    """Add the ``profile`` subcommand to an argparse subparsers object."""
    from .cli import add_overwrite

    p = subparsers.add_parser(
        "profile", help="profile-likelihood intervals of a population fit's parameters",
        description="Refit a population fit with each named parameter held (typical value "
                    "NAME, variance 'omega^2 NAME', residual OBS.a) and write its "
                    "profile-likelihood interval beside the Wald one.")
    p.add_argument("config", help="the fit's run config (.toml)")
    p.add_argument("--parameter", action="append", metavar="NAME",
                   help="a typical value (NAME), a variance ('omega^2 NAME') or a residual "
                        "parameter (OBS.a); repeat for several")
    p.add_argument("--at", action="append", metavar="NAME=VALUE",
                   help="likelihood-ratio test of NAME = VALUE (one refit, its p-value); "
                        "repeat for several")
    p.add_argument("--fit", metavar="DIR", help="the fit folder (default: the config's)")
    p.add_argument("--out", metavar="DIR",
                   help="profile folder (default: the fit folder's name + _profile)")
    p.add_argument("--level", type=float, default=0.95, help="coverage (default 0.95)")
    p.add_argument("--max-refits", type=int, default=6, help="most refits per end")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no line per refit on stderr")
    add_overwrite(p)
    p.set_defaults(func=cmd_profile)
