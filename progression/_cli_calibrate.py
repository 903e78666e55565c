"""The ``progression calibrate`` subcommand.

``cli.py`` adds it with ``_cli_calibrate.register(sub)``. Bad input raises a
:class:`~progression.errors.ProgressionError`, which ``main()`` prints as one line before
exiting with status 2. The calibration folder is written atomically and replaced only with
``--overwrite``; the preset named by the config is never changed (the recalibrated preset is a
new file in the folder).

    progression calibrate configs/calibration/als_clinic.toml --out calibrations/als_clinic
"""

from __future__ import annotations

__all__ = ["register", "cmd_calibrate"]


def cmd_calibrate(args) -> int:
    """Fit a cohort preset's free parameters to published statistics; write the folder."""
    from pathlib import Path

    from ._io import check_output_folder
    from .als.calibration import calibrate, load_calibration_config

    cfg = load_calibration_config(args.config)
    if args.check:
        from .als.calibration import check, format_check

        seeds = list(range(1, args.check + 1))
        print(f"{args.config}: the preset {cfg.preset.name} as it is, {args.n or cfg.n} "
              f"patients per seed (nothing is fitted or written)")
        print(format_check(check(cfg, seeds=seeds, n=args.n), seeds))
        return 0
    out = Path(args.out) if args.out else Path("calibrations") / Path(args.config).stem
    # refused before the (long) calibration when the folder cannot be written
    check_output_folder(out, overwrite=args.overwrite, inputs=[Path(args.config), cfg.preset],
                        what="calibration folder")

    def progress(k, value, x):
        if not args.quiet:
            shown = ", ".join(f"{p.path}={v:.4g}" for p, v in zip(cfg.parameters, x,
                                                                   strict=True))
            print(f"  evaluation {k}: objective {value:.4g}  [{shown}]", flush=True)

    result = calibrate(cfg, max_evaluations=args.max_evaluations, n=args.n,
                       progress=progress)
    result.save(out, overwrite=args.overwrite)
    passed = sum(t.passed for t in result.targets)
    print(result.summary())
    print(f"{out}: {passed} of {len(result.targets)} targets pass; recalibrated preset "
          f"{out / result.preset_name}")
    return 0


def register(subparsers) -> None:
    """Add the ``calibrate`` subcommand to an argparse subparsers object."""
    from .cli import add_overwrite, positive_int

    p = subparsers.add_parser(
        "calibrate", help="fit a cohort preset to published statistics (simulated moments)",
        description="Fit chosen numbers of a cohort preset (typical values, SDs, factor SDs, "
                    "fixed model parameters) to published summary statistics by the "
                    "simulated method of moments with common random numbers; write the "
                    "targets (published, achieved, pass), the parameters with standard errors "
                    "and the recalibrated preset (a new TOML file) to a folder.")
    p.add_argument("config", help="calibration config, e.g. configs/calibration/als_clinic.toml")
    p.add_argument("--out", help="calibration folder (default calibrations/<config stem>)")
    p.add_argument("--n", type=positive_int, help="patients per simulated cohort (default: "
                   "the config's)")
    p.add_argument("--max-evaluations", type=positive_int, dest="max_evaluations",
                   help="objective evaluations (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="do not print each evaluation")
    p.add_argument("--check", type=positive_int, metavar="K",
                   help="fit nothing: compare the preset as it is with the targets over K "
                        "seeds (1..K) and print the table")
    add_overwrite(p)
    p.set_defaults(func=cmd_calibrate)
