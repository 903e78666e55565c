"""The ``progression`` command.

Every subcommand is a function registered by ``_build_parser``. A :class:`ProgressionError`
(bad config, data, model or arguments) is printed with every problem it lists (the first 20
and a count beyond) without a traceback, and the command exits with the error's
``exit_status`` (2 for bad input, 1 for a computation that failed). Ctrl-C and SIGTERM end the
command with one line, exit status 130 or 143, and leave no half-written output. Python
warnings are shown as one line ``warning: <message>``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import warnings

import numpy as np

from .errors import ProgressionError

__all__ = ["main", "positive_int", "nonnegative_int", "positive_float"]

#: Problems of one error printed before "... and K more".
MAX_PROBLEMS = 20


def _number_type(kind, *, zero: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"expected {what}, found {text}")
        return value

    parse.__name__ = what       # argparse names the type in its own messages
    return parse


#: argparse ``type=`` checks: the message names the option, what it expects and what it got.
positive_int = _number_type(int, zero=False, what="a positive integer")
nonnegative_int = _number_type(int, zero=True, what="a non-negative integer")
positive_float = _number_type(float, zero=False, what="a positive number")


def add_overwrite(parser) -> None:
    """Add ``--overwrite`` to a subcommand that writes output."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output written by progression (a folder "
                             "or file progression did not write is never replaced)")


def _parse_assignments(items, what: str) -> dict[str, float]:
    values = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ProgressionError(f"{what}: expected NAME=VALUE, found {item!r}")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise ProgressionError(f"{what} {name.strip()}: expected a number, found "
                                   f"{value!r}") from None
    return values


def cmd_models(args) -> int:
    """List the built-in models from their TOML alone (nothing is compiled)."""
    import tomllib

    from .model.library import available_models, library_text

    for name in available_models():
        doc = tomllib.loads(library_text(name))
        header = doc.get("model", {})
        description = str(header.get("description", ""))
        summary = description.split(": ")[0].split(". ")[0]
        # each [hazards.NAME] adds a state (its cumulative hazard) and a parameter (z_NAME)
        hazards = len(doc.get("hazards", {}))
        print(f"{name:<14} {len(doc.get('states', {})) + hazards:>2} states "
              f"{len(doc.get('parameters', {})) + hazards:>3} parameters  "
              f"[{header.get('time_unit', '?')}]  {summary[:90]}")
    return 0


def cmd_show(args) -> int:
    """Describe a model: parameters with unit, default, range and source; equations; events."""
    from .model import load_model

    print(load_model(args.model).describe())
    return 0


def _checked_assignments(model, items) -> dict[str, float]:
    """``--set`` values: names must exist, values be finite and inside what the model allows.

    A value outside the documented range gives a warning naming the range; a negative value
    for a parameter documented as non-negative is refused.
    """
    params = _parse_assignments(items, "--set")
    bounds = getattr(model, "bounds", None)
    for name, value in params.items():
        j = model.parameter_index(name)
        lo, hi = (float(b) for b in bounds[j]) if bounds is not None else (-np.inf, np.inf)
        documented = f"documented range {lo:g} - {hi:g}"
        if not np.isfinite(value):
            raise ProgressionError(f"--set {name}: expected a finite number in the {documented}"
                                   f" of model {model.name!r}, found {value:g}")
        if lo >= 0 and value < 0:
            raise ProgressionError(f"--set {name}: expected a non-negative value (the "
                                   f"{documented} of model {model.name!r}), found {value:g}")
        if not lo <= value <= hi:
            warnings.warn(f"--set {name}={value:g} is outside the {documented} of model "
                          f"{model.name!r}; the result may not be meaningful", stacklevel=2)
    return params


def _simulate_backend(args) -> str | None:
    """The backend of ``progression simulate``'s model: numpy unless a method or a backend
    was asked for (then None: the library's choice).

    Why: the command simulates one patient. The compiled per-subject Rodas4 takes ~1 ms for
    it, but reaching it costs a new process ~0.6 s (importing numba, numba's BLAS check
    importing scipy.linalg, loading the cached integrator's machine code), and minutes when
    the model's numba code is not cached yet; the numpy code and the stacked LSODA cost
    ~0.45 s (importing scipy.integrate and ~0.15 s of solving; measured 2026-12-01 on
    ``als_systemic``, 60 months). Both solve to the same tolerance (a test compares them).
    """
    import os

    if args.method is not None or os.environ.get("PROGRESSION_BACKEND", "").strip():
        return None
    return "numpy"


def _simulate_one(args):
    """The model, the simulation of ``progression simulate``'s arguments, and its duration."""
    from .errors import SimulationFailed
    from .model import load_model
    from .simulate import simulate

    model = load_model(args.model, backend=_simulate_backend(args))
    if args.months is not None:
        if model.time_unit not in {"month", "months"}:
            raise ProgressionError(f"--months: model {model.name!r} runs in {model.time_unit!r}; "
                                   f"use --until in {model.time_unit}")
        until = args.months
    else:
        until = args.until
    if until is None:
        raise ProgressionError(f"--months/--until: expected the duration to simulate (--months "
                               f"for month models, --until in {model.time_unit!r}), found "
                               "neither")
    step = args.step if args.step else until / 240
    if step > until:
        raise ProgressionError(f"--step: expected at most the duration ({until:g} "
                               f"{model.time_unit}), found {step:g}")
    times = np.arange(0.0, until + 0.5 * step, step)
    params = _checked_assignments(model, args.set)
    # no --method: simulate's own default for the model loaded (with the numpy code chosen
    # above: the stacked LSODA)
    chosen = {} if args.method is None else {"method": args.method}
    sim = simulate(model, params, times, rtol=args.rtol, atol=args.atol, **chosen)
    if not sim.success.all():
        # a CSV of NaN and an empty figure help nobody: say why and write nothing
        failed = [i for i, ok in enumerate(sim.success) if not ok]
        raise SimulationFailed(f"{model.name}: the simulation failed ({sim.message[failed[0]]}); "
                               f"nothing written to {args.out}")
    return model, sim, until


def cmd_simulate(args) -> int:
    """Simulate one parameter set and write a CSV of states and observables and a PNG."""
    from pathlib import Path

    from ._figure_process import FigureProcess
    from ._io import atomic_directory, check_output_folder

    inputs = [args.model] if Path(args.model).is_file() else []
    check_output_folder(args.out, overwrite=args.overwrite, inputs=inputs,
                        what="simulation folder")
    # the figure's helper process imports matplotlib while this one imports scipy and solves
    with FigureProcess() as figure:
        model, sim, until = _simulate_one(args)
        with atomic_directory(args.out, overwrite=args.overwrite, inputs=inputs,
                              what="simulation folder") as tmp:
            sim.to_csv(tmp / "simulation.csv")
            # zlib level 1 instead of 6: a 12 % larger file, written in ~0.02 s less
            figure.draw(sim, tmp / "trajectories.png", dpi=110,
                        pil_kwargs={"compress_level": 1})
    print(f"{model.name}: simulated 0-{until:g} {model.time_unit} ({sim.stats['steps']} steps, "
          f"{sim.stats['seconds'] * 1000:.0f} ms); status: {sim.message[0]}")
    for name in sim.events:
        print(f"  event {name}: t = {sim.event_time(name)[0]:.2f} {model.time_unit}")
    print(f"  wrote {args.out}/simulation.csv and {args.out}/trajectories.png")
    return 0


#: The integrator names of :data:`progression.simulate.METHODS`, spelt out so that building the
#: argument parser does not import scipy.integrate (a test keeps the two in step).
METHOD_NAMES = ("auto", "BDF", "DOP853", "LSODA", "RK23", "RK45", "Radau", "Rodas4")


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="progression",
        description="Mechanistic ODE disease-progression modelling (ALS as a systemic disease).")
    parser.add_argument("--version", action="version", version=f"progression {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("show", help="describe a model (built-in name or model file)")
    p.add_argument("model")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("simulate", help="simulate a model, write CSV and PNG")
    p.add_argument("model", help="built-in model name or path to a model file (.toml)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--months", type=positive_float,
                       help="simulate 0..MONTHS (month models)")
    group.add_argument("--until", type=positive_float,
                       help="simulate 0..UNTIL in the model's time unit")
    p.add_argument("--step", type=positive_float, help="output spacing (default: 240 points)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="change a parameter from its default (repeatable)")
    p.add_argument("--method", default=None, choices=METHOD_NAMES,
                   help="integrator (default auto: for one patient the numpy code and the "
                        "stacked LSODA, which start faster than numba; a method given, or "
                        "PROGRESSION_BACKEND set, uses the library's backend, numba when "
                        "installed)")
    p.add_argument("--rtol", type=positive_float, default=1e-6)
    p.add_argument("--atol", type=positive_float, default=1e-9)
    p.add_argument("--out", default="out/simulation", help="output folder")
    add_overwrite(p)
    p.set_defaults(func=cmd_simulate)

    from . import _cli_calibrate, _cli_cohort, _cli_compare, _cli_design, _cli_fit, _cli_profile

    _cli_fit.register(sub)
    _cli_profile.register(sub)
    _cli_design.register(sub)
    _cli_cohort.register(sub)
    _cli_compare.register(sub)
    _cli_calibrate.register(sub)
    return parser


def _print_error(exc: ProgressionError) -> None:
    """``error: <message>`` and every problem listed (the first MAX_PROBLEMS and a count)."""
    text = str(exc)
    problems = [str(p) for p in (getattr(exc, "problems", None) or [])]
    listed = "\n" + "\n".join(f"  - {p}" for p in problems)
    head = text[: -len(listed)] if len(problems) > 1 and text.endswith(listed) else text
    lines = [f"error: {head}"]
    if problems and problems != [head]:
        lines += [f"  - {p}" for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"  ... and {len(problems) - MAX_PROBLEMS} more")
    print("\n".join(lines), file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a CLI user as one line, without a source path."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=file or sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` and cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_like_interrupt():
    """Turn SIGTERM into :class:`_Terminated` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    # a process started with SIGTERM/SIGINT blocked (inherited from its parent: a test runner,
    # a job scheduler) would never see them, and an interrupted command would not clean up
    wanted = {signal.SIGTERM, signal.SIGINT}
    blocked = (signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted) & wanted
               if hasattr(signal, "pthread_sigmask") else set())
    try:
        yield
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    """Entry point of the ``progression`` command; returns the exit status."""
    from . import _io

    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:     # usage errors (printed by argparse), --help, --version
        return exc.code if isinstance(exc.code, int) else 2
    _io.committed.clear()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            with _terminate_like_interrupt():
                return args.func(args)
        except KeyboardInterrupt as exc:
            code = 128 + getattr(exc, "signum", signal.SIGINT)
            done = ", ".join(str(p) for p in _io.committed)
            print("interrupted, nothing written" if not done
                  else f"interrupted after writing {done}", file=sys.stderr)
            return code
        except ProgressionError as exc:
            _print_error(exc)
            return getattr(exc, "exit_status", 2)
        except OSError as exc:
            # an input or output the checks could not foresee (disk full, permissions, ...)
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
