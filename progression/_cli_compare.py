"""``progression compare CONFIG --out DIR [--jobs N] [--scheduler ADDRESS]``: run a
scenario-comparison config (scenarios fan out over local processes or a Dask cluster with the
same numbers as in-process).

``progression trial [NAME ...] [--list] [--pool N] [--reps N] [--seed S]``: run published
ALS trials as virtual trials built like the real ones (``progression/als/trials.toml``) and
print each published outcome next to its simulated value with pass/fail.

Registered by ``progression.cli`` with ``register(sub)``. An existing output folder is replaced
only with ``--overwrite``; one progression did not write, or one holding the config or the fit
folder it reads, is refused before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "cmd_compare", "cmd_trial"]


def cmd_compare(args) -> int:
    """Compare intervention scenarios from a config; write tables and figures."""
    import numpy as np

    from ._compare_config import run_compare_config
    from ._io import check_output_folder
    from .parallel import executor

    out = Path(args.out) if args.out else Path("out") / Path(args.config).stem
    inputs = compare_inputs(args.config)
    check_output_folder(out, overwrite=args.overwrite, inputs=inputs, what="comparison folder")
    with executor(args.jobs, args.scheduler) as ex:
        comp = run_compare_config(args.config, None, n=args.n, draws=args.draws,
                                  progress=not args.quiet,
                                  executor=None if ex.name == "in-process" else ex)
    comp.write(out, figures=not args.no_figures, overwrite=args.overwrite, inputs=inputs)
    ep = comp.endpoints
    slope = f"{ep.function}_slope_{ep.slope_window[0]:g}-{ep.slope_window[1]:g}m"
    print(f"{comp.model}: {int(comp.valid.sum())} subjects, {len(comp.scenarios)} scenarios, "
          f"{comp.times[-1]:g} months from the start")
    for scen in comp.scenarios:
        r = comp.row(scen, slope)
        extra = ""
        if scen != comp.reference and np.isfinite(r.get("relative_slowing_pct", np.nan)):
            extra = f" ({r['relative_slowing_pct']:+.1f}% slowing)"
        line = f"  {scen:<32} {ep.function} slope {r['mean']:+.2f}/month{extra}"
        if ep.event:
            d = comp.row(scen, f"time_to_{ep.event}")
            line += f"; {ep.event} {d['events']}/{d['n']} by {comp.times[-1]:g} months"
        print(line)
    for note in comp.notes:
        print(f"  note: {note}")
    print(f"  wrote {out}/summary.md, endpoints_*.csv, trajectories.csv, survival.csv"
          + ("" if args.no_figures else " and PNG figures"))
    return 0


def cmd_trial(args) -> int:
    """Published trials, simulated: each outcome with the published value and pass/fail."""
    import json

    from .als.published import check_published, format_checks, published_trials
    from .errors import ProgressionError

    if args.file is not None:
        from .als.published import load_trials

        trials = load_trials(args.file)
    else:
        trials = published_trials()
    if args.list:
        for name, spec in trials.items():
            arms = ", ".join(f"{arm} {n}" for arm, (n, _) in spec.arms.items())
            print(f"{name:<12} {spec.title} ({arms}; {len(spec.outcomes)} outcomes)")
        return 0
    names = args.names or list(trials)
    unknown = [n for n in names if n not in trials]
    if unknown:                                          # before anything runs
        from .errors import did_you_mean

        raise ProgressionError(f"unknown published trial {unknown[0]!r}"
                               f"{did_you_mean(unknown[0], trials)} (trials"
                               + (f" in {args.file}" if args.file else "")
                               + f": {', '.join(trials)})")
    specs = [trials[n] for n in names]
    if args.pool is not None and args.pool < 2:
        raise ProgressionError(f"--pool: expected at least 2 patients, found {args.pool}")
    if args.json:
        from ._io import check_output_files

        out = Path(args.json)
        if out.suffix.lower() != ".json":
            raise ProgressionError(f"--json {out}: expected a .json file name")
        check_output_files([out], overwrite=args.overwrite, ours=_our_json,
                           what="trial checks file")     # before the simulations
    rows = []
    for spec in specs:
        checks = check_published(spec, pool_size=args.pool, reps=args.reps, seed=args.seed,
                                 progress=not args.quiet)
        rows += checks
        pool = spec.pool if args.pool is None else args.pool
        print(format_checks(checks, args.table,
                            title=f"{spec.name}: {spec.title} (pool {pool}, {args.reps} "
                                  f"replicates, seed {args.seed})"))
    n_pass = sum(c.passed for c in rows)
    print(f"all trials: {n_pass} of {len(rows)} published outcomes reproduced")
    if args.json:
        from ._io import atomic_files

        out = Path(args.json)
        with atomic_files(out, overwrite=args.overwrite, ours=_our_json,
                          what="trial checks file") as tmp:
            (tmp / out.name).write_text(json.dumps(
                {"written_by": "progression trial", "seed": args.seed, "reps": args.reps,
                 "pool": args.pool, "checks": [c.as_dict() for c in rows]}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


def _our_json(path: Path) -> bool:
    """A checks file written by ``progression trial`` (its first key says so)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return '"written_by": "progression trial"' in fh.read(200)
    except (OSError, UnicodeDecodeError):
        return False


def compare_inputs(config) -> list[Path]:
    """The files a comparison reads: the config and the fit folder its ``[source]`` names.

    A config that cannot be read gives just itself: ``read_compare_config`` then reports the
    problem properly.
    """
    import tomllib

    config = Path(config)
    inputs = [config]
    try:
        doc = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return inputs
    source = doc.get("source")
    fit = source.get("fit") if isinstance(source, dict) else None
    if isinstance(fit, str) and fit:
        # resolved as _compare_config does: as given if it exists, else beside the config
        p = Path(fit)
        inputs.append(p if p.is_absolute() or p.exists() else config.parent / p)
    return inputs


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an ``argparse`` subparsers object."""
    from .cli import add_overwrite, nonnegative_int, positive_int

    p = subparsers.add_parser("compare", help="compare intervention scenarios from a config",
                              description="Compare intervention scenarios (scenario TOML "
                                          "config) on clinical endpoints; write CSV and "
                                          "Markdown tables and PNG figures.")
    p.add_argument("config", help="scenario config (TOML), e.g. "
                                  "configs/scenarios/anti_inflammatory.toml")
    p.add_argument("--out", help="output folder (default: out/<config name>)")
    p.add_argument("--n", type=positive_int,
                   help="virtual population size, or new patients drawn from a population "
                        "fit with source.patients = \"new\" (overrides source.n)")
    p.add_argument("--draws", type=nonnegative_int,
                   help="parameter draws (fit sources; overrides compare.draws)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--jobs", type=int, help="scenarios over N local worker processes "
                                            "(default: in-process; same numbers)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786), or 'local' for a "
                        "LocalCluster with --jobs workers")
    add_overwrite(p)
    p.set_defaults(func=cmd_compare)

    t = subparsers.add_parser(
        "trial", help="run published ALS trials as virtual trials (pass/fail per outcome)",
        description="Simulate published ALS trials built like the real ones (eligibility, "
                    "arms, duration, analysis; progression/als/trials.toml) and print each "
                    "published outcome next to its simulated value, with pass/fail.")
    t.add_argument("names", nargs="*", help="trial names (default: all; see --list)")
    t.add_argument("--list", action="store_true", help="list the published trials")
    t.add_argument("--file", help="a trials file of your own (same keys as "
                                  "progression/als/trials.toml) instead of the package's")
    t.add_argument("--pool", type=positive_int,
                   help="eligible virtual patients per trial (default: the trial's)")
    t.add_argument("--reps", type=positive_int, default=100,
                   help="replicate trials for significance outcomes (default 100)")
    t.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    t.add_argument("--table", default="text", choices=("text", "markdown"),
                   help="output style (default text)")
    t.add_argument("--json", help="also write the checks to this .json file")
    t.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    add_overwrite(t)
    t.set_defaults(func=cmd_trial)
    return p

