"""``progression fit CONFIG [--jobs N] [--scheduler ADDRESS] [--out DIR]``.

Wired into :mod:`progression.cli` with ``register(sub)``. Reads and validates the config (a bad
config raises one ConfigError, nothing is written), fits, prints a summary and writes the fit
folder atomically: ``--out`` if given, else the config's ``[output] folder``, else
``fits/<name>``. An existing fit folder is replaced only with ``--overwrite``; a folder that
progression did not write, or one holding the config, data or model, is refused before the fit
starts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "cmd_fit"]


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
    print(result.summary())           # a population fit's: typical values, Omega, RSE %, CIs
    print(f"wrote {out}/ (fit.json, subjects.csv, data.csv, report.md"
          f"{', figures/' if cfg.output['figures'] and not args.no_figures else ''})")
    return 0


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
