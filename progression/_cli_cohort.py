"""The ``progression cohort`` and ``progression describe`` subcommands.

``cli.py`` adds them with ``_cli_cohort.register(sub)``. Both raise
:class:`~progression.errors.ProgressionError` subclasses for bad input, which ``main()`` prints
as one line before exiting with status 2. ``cohort`` never replaces a file progression did not
write; files it wrote earlier are replaced only with ``--overwrite``.

    progression cohort configs/cohorts/als_clinic.toml --out out/clinic.csv --n 200 --seed 7
    progression describe out/clinic.csv [--format long] [--setting auto] [--table markdown]
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
    """Print a cohort's statistics next to the published ALS targets (als-biology.md §6)."""
    from .als.describe import describe_cohort, format_description, infer_setting
    from .data import read_cohort

    cohort = read_cohort(args.file, format=args.format)
    rows = describe_cohort(cohort, setting=args.setting, nfl_control=args.nfl_control)
    setting = args.setting if args.setting != "auto" else infer_setting(cohort)
    title = f"{args.file}: {len(cohort)} patients, {setting} targets"
    print(format_description(rows, args.table, title=title))
    return 0


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
    p.add_argument("file", help="cohort file (or PRO-ACT folder)")
    p.add_argument("--format", choices=("long", "wide", "nonmem", "proact"),
                   help="cohort file format (default: inferred)")
    p.add_argument("--setting", default="auto", choices=("auto", "clinic", "trial"),
                   help="which targets apply (default: clinic if enrolled at diagnosis)")
    p.add_argument("--table", default="text", choices=("text", "markdown"),
                   help="output table style (default text)")
    p.add_argument("--nfl-control", type=positive_float, default=20.0, dest="nfl_control",
                   help="control serum NfL in pg/mL (default 20)")
    p.set_defaults(func=cmd_describe)

