"""``progression compare CONFIG --out DIR [--jobs N] [--scheduler ADDRESS]``: run a
scenario-comparison config (scenarios fan out over local processes or a Dask cluster with the
same numbers as in-process).

Registered by ``progression.cli`` with ``register(sub)``. An existing output folder is replaced
only with ``--overwrite``; one progression did not write, or one holding the config or the fit
folder it reads, is refused before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "cmd_compare"]


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
    return p

