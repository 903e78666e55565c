"""The ``progression cohort`` and ``progression describe`` subcommands.

``cli.py`` adds them with ``_cli_cohort.register(sub)``. Both raise
:class:`~progression.errors.ProgressionError` subclasses for bad input, which ``main()`` prints
as one line before exiting with status 2. ``cohort`` never replaces a file progression did not
write; files it wrote earlier are replaced only with ``--overwrite``.

    progression cohort configs/cohorts/als_clinic.toml --out out/clinic.csv --n 200 --seed 7
    progression describe out/clinic.csv [--format long] [--setting auto] [--table markdown]
    progression describe configs/cohorts/als_clinic.toml --seeds 5 [--n 1000] [--json F]
"""

from __future__ import annotations

from .errors import ProgressionError

__all__ = ["register", "cmd_cohort", "cmd_describe"]


def cmd_cohort(args) -> int:
    """Draw a synthetic cohort from a population config; write it and its truth table."""
    from pathlib import Path

    from ._io import check_output_files, cohort_files, is_progression_cohort_file
    from .als.synthetic import synthetic_cohort, write_synthetic

    if args.n is not None and args.n < 1:
        raise ProgressionError(f"--n: expected a positive number of patients, found {args.n}")
    if args.seed is not None and args.seed < 0:
        raise ProgressionError(f"--seed: expected a non-negative integer, found {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ProgressionError(f"--out {out}: expected a .csv file name for the cohort")
    inputs = [Path(args.config)]
    # every file the cohort may write is checked before the (possibly long) simulation
    check_output_files([out, *cohort_files(out)[1:]], overwrite=args.overwrite, inputs=inputs,
                       ours=is_progression_cohort_file, what="cohort file")
    cohort, truth = synthetic_cohort(args.config, n=args.n, seed=args.seed)
    files = write_synthetic(cohort, truth, out, format=args.format, overwrite=args.overwrite,
                            inputs=inputs)
    summary = cohort.summary()
    events = summary["events"]
    origin = cohort.notes[0].removeprefix("synthetic cohort: ")
    print(f"{args.out}: {len(cohort)} synthetic patients ({origin}), "
          f"{cohort.n_observations} observations, {events.get('death', 0)} deaths/"
          f"ventilation, median follow-up {summary['follow_up']['median']:.1f} months; "
          f"truth in {files[-1].name}")
    return 0


def cmd_describe(args) -> int:
    """Print a cohort's statistics next to the published ALS targets (als-biology.md §6);
    with ``--seeds K``, a cohort preset's statistics over K seeds (spread, passes k of K)."""
    from .als.describe import describe_cohort, format_description, infer_setting
    from .data import read_cohort

    if args.seeds is not None:
        return _describe_seeds(args)
    for option, value in (("--n", args.n), ("--json", args.json)):
        if value is not None:
            raise ProgressionError(f"{option}: only with --seeds (a cohort config drawn over "
                                   f"several seeds)")

    cohort = read_cohort(args.file, format=args.format)
    rows = describe_cohort(cohort, setting=args.setting, nfl_control=args.nfl_control)
    setting = args.setting if args.setting != "auto" else infer_setting(cohort)
    title = f"{args.file}: {len(cohort)} patients, {setting} targets"
    print(format_description(rows, args.table, title=title))
    return 0


def _describe_seeds(args) -> int:
    """``describe CONFIG --seeds K``: the preset drawn over K seeds, each statistic's spread."""
    import json
    from pathlib import Path

    from ._io import atomic_files, check_output_files
    from .als.describe_seeds import describe_config, format_seeds

    config = Path(args.file)
    if config.suffix.lower() != ".toml" or not config.is_file():
        raise ProgressionError(f"{config}: with --seeds, expected a cohort config (.toml, e.g. "
                               f"configs/cohorts/als_clinic.toml), found "
                               + ("no such file" if not config.exists() else "another file"))
    if args.format is not None:
        raise ProgressionError("--format: not with --seeds (the cohorts are drawn from the "
                               "config, not read)")
    if args.seeds < 1:
        raise ProgressionError(f"--seeds: expected at least 1, found {args.seeds}")
    out = None
    if args.json is not None:
        out = Path(args.json)
        if out.suffix.lower() != ".json":
            raise ProgressionError(f"--json {out}: expected a .json file name")
        check_output_files([out], overwrite=args.overwrite, inputs=[config], ours=_our_json,
                           what="describe file")
    desc = describe_config(config, seeds=args.seeds, n=args.n, setting=args.setting,
                           nfl_control=args.nfl_control, progress=True)
    print(format_seeds(desc, args.table))
    if out is not None:
        with atomic_files(out, overwrite=args.overwrite, inputs=[config], ours=_our_json,
                          what="describe file") as tmp:
            doc = {"written_by": "progression describe", **desc.as_dict()}
            (tmp / out.name).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


def _our_json(path) -> bool:
    """A file written by ``progression describe --json`` (its first key says so)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return '"written_by": "progression describe"' in fh.read(200)
    except (OSError, UnicodeDecodeError):
        return False


def register(subparsers) -> None:
    """Add the ``cohort`` and ``describe`` subcommands to an argparse subparsers object."""
    from .cli import add_overwrite, nonnegative_int, positive_float, positive_int

    p = subparsers.add_parser(
        "cohort", help="draw a synthetic cohort from a population config (TOML)",
        description="Draw virtual patients, simulate them in one batch and observe them like a "
                    "clinic or trial; write the cohort (long CSV + sidecar + side tables) and "
                    "its truth table (<stem>_truth.csv).")
    p.add_argument("config", help="population config, e.g. configs/cohorts/als_clinic.toml")
    p.add_argument("--out", required=True, help="cohort file to write (.csv)")
    p.add_argument("--n", type=positive_int, help="number of patients (default: the config's)")
    p.add_argument("--seed", type=nonnegative_int, help="random seed (default: the config's)")
    p.add_argument("--format", default="long", choices=("long", "wide", "nonmem"),
                   help="cohort file format (default long)")
    add_overwrite(p)
    p.set_defaults(func=cmd_cohort)

    p = subparsers.add_parser(
        "describe", help="compare a cohort with published ALS cohort statistics",
        description="Compute decline, ΔFS, survival, attrition, NfL, CRP, Treg and demographic "
                    "statistics of a cohort and compare each with its published target.")
    p.add_argument("file", help="cohort file (or PRO-ACT folder); with --seeds a cohort config")
    p.add_argument("--format", choices=("long", "wide", "nonmem", "proact"),
                   help="cohort file format (default: inferred)")
    p.add_argument("--setting", default="auto", choices=("auto", "clinic", "trial"),
                   help="which targets apply (default: clinic if enrolled at diagnosis)")
    p.add_argument("--table", default="text", choices=("text", "markdown"),
                   help="output table style (default text)")
    p.add_argument("--nfl-control", type=positive_float, default=20.0, dest="nfl_control",
                   help="control serum NfL in pg/mL (default 20)")
    p.add_argument("--seeds", type=positive_int,
                   help="FILE is a cohort config: draw it with K seeds (the config's seed + 0, "
                        "1, ...) and report each statistic's spread and passes k of K")
    p.add_argument("--n", type=positive_int,
                   help="with --seeds: patients per cohort (default: the config's)")
    p.add_argument("--json", help="with --seeds: also write the table to this .json file")
    add_overwrite(p)
    p.set_defaults(func=cmd_describe)

