"""The ``progression`` command.

Every subcommand is a function registered in :data:`COMMANDS`. A :class:`ProgressionError`
(bad config, data, model or arguments) is printed as one message without a traceback and the
command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import ProgressionError

__all__ = ["main"]


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
    """List the built-in models."""
    from .model import available_models, load_model

    for name in available_models():
        model = load_model(name)
        spec = model.spec
        summary = spec.description.split(": ")[0].split(". ")[0]
        print(f"{name:<14} {len(spec.states):>2} states {len(spec.parameters):>3} parameters  "
              f"[{spec.time_unit}]  {summary[:90]}")
    return 0


def cmd_show(args) -> int:
    """Describe a model: parameters with unit, default, range and source; equations; events."""
    from .model import load_model

    print(load_model(args.model).describe())
    return 0


def cmd_simulate(args) -> int:
    """Simulate one parameter set and write a CSV of states and observables and a PNG."""
    from ._io import atomic_directory
    from .model import load_model
    from .plots import plot_simulation
    from .simulate import simulate

    model = load_model(args.model)
    if args.months is not None:
        if model.time_unit not in {"month", "months"}:
            raise ProgressionError(f"--months: model {model.name!r} runs in {model.time_unit!r}; "
                                   f"use --until in {model.time_unit}")
        until = args.months
    else:
        until = args.until
    if until is None or not np.isfinite(until) or until <= 0:
        raise ProgressionError(f"--months/--until: expected a positive duration, found {until}")
    step = args.step if args.step else until / 240
    times = np.arange(0.0, until + 0.5 * step, step)
    params = _parse_assignments(args.set, "--set")
    for name in params:
        model.parameter_index(name)
    sim = simulate(model, params, times, method=args.method, rtol=args.rtol, atol=args.atol)
    with atomic_directory(args.out) as tmp:
        sim.to_csv(tmp / "simulation.csv")
        fig = plot_simulation(sim)
        fig.savefig(tmp / "trajectories.png", dpi=110)
    print(f"{model.name}: simulated 0-{until:g} {model.time_unit} ({sim.stats['steps']} steps, "
          f"{sim.stats['seconds'] * 1000:.0f} ms); status: {sim.message[0]}")
    for name in sim.events:
        print(f"  event {name}: t = {sim.event_time(name)[0]:.2f} {model.time_unit}")
    print(f"  wrote {args.out}/simulation.csv and {args.out}/trajectories.png")
    return 0 if sim.success.all() else 1


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .simulate import METHODS

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
    group.add_argument("--months", type=float, help="simulate 0..MONTHS (month models)")
    group.add_argument("--until", type=float, help="simulate 0..UNTIL in the model's time unit")
    p.add_argument("--step", type=float, help="output spacing (default: 240 points)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="change a parameter from its default (repeatable)")
    p.add_argument("--method", default="LSODA", choices=sorted(METHODS))
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--atol", type=float, default=1e-9)
    p.add_argument("--out", default="out/simulation", help="output folder")
    p.set_defaults(func=cmd_simulate)

    from . import _cli_cohort, _cli_compare, _cli_fit

    _cli_fit.register(sub)
    _cli_cohort.register(sub)
    _cli_compare.register(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``progression`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProgressionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
