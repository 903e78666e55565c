"""Calibrate a synthetic-cohort preset against published summary statistics.

``progression calibrate CONFIG`` and :func:`calibrate` fit chosen numbers of a cohort preset
(``configs/cohorts/*.toml``: typical values, between-patient SDs, factor SDs and loadings,
fixed model parameters, observation and dropout settings) to a table of published cohort
statistics by the **simulated method of moments**:

* each target (``progression/als/targets.toml``: ``value``, ``uncertainty``, accepted
  ``range``, ``source``) is a statistic of a simulated cohort, computed exactly as
  ``progression describe`` computes it from a real one
  (:func:`progression.als.describe.cohort_statistics`), or, for tables marked
  ``computed = "truth"``, from the virtual patients' true event times;
* the objective is the vector of standardised residuals ``(mean over seeds of the simulated
  statistic - value) / uncertainty``, minimised by ``scipy.optimize.least_squares`` (trust
  region, bounds, finite differences) or Nelder-Mead on the parameters scaled to [0, 1];
* **common random numbers**: every evaluation draws its virtual cohorts with the same seeds
  (``seeds`` of the config), so the objective is a deterministic function of the parameters
  and its finite differences measure the parameters' effect, not sampling noise;
* **uncertainty** of the parameters: the sandwich ``(J'J)^-1 J' Omega J (J'J)^-1`` with the
  Jacobian ``J`` of the standardised statistics at the optimum and ``Omega`` = identity (the
  targets' own uncertainty) plus the simulation variance of the seed-averaged statistics,
  estimated by re-simulating the optimum on the ``[uncertainty] seeds`` (which also gives each
  target's seed-to-seed spread).

The output is a folder (written to a temporary folder and moved into place; an existing one is
replaced only with ``overwrite``): ``targets.csv`` (published value, uncertainty, range,
achieved value, pass/fail, the per-seed minimum and maximum), ``parameters.csv`` (start,
estimate, standard error, bounds), ``report.md``, ``result.json``, the calibration config and
the recalibrated preset as a new TOML file (``<preset>_calibrated.toml``; the user's preset
is never changed).

Calibration config (TOML; paths relative to the config file)::

    [calibration]
    preset = "../cohorts/als_clinic.toml"   # cohort preset to calibrate (required)
    setting = "clinic"                       # targets of this setting [the preset's]
    n = 1000                                 # patients per simulated cohort [preset's n]
    seeds = [1, 2]                           # common random numbers [[preset's seed]]
    targets = ["decline_sd", "mortality_12m"]  # keys of the targets file (required)
    targets_file = "my_targets.toml"          # [progression/als/targets.toml]

    [parameters."factors.pace.sd"]           # a number of the preset, by its TOML path
    bounds = [0.3, 1.3]                      # required, low < high
    start = 0.8                              # [the preset's value; required if absent]

    [targets.mortality_12m]                  # optional override of a target's numbers
    value = 0.34
    uncertainty = 0.03

    [optimiser]
    method = "least_squares"                 # or "nelder-mead"
    max_evaluations = 60                     # objective evaluations [60]
    diff_step = 0.05                         # finite-difference step on the [0, 1] scale
    tolerance = 1e-3                         # xtol / ftol [1e-3]

    [uncertainty]
    seeds = [101, 102, 103]                  # re-simulate the optimum on these [[]]
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ProgressionError
from ..virtual.cohort_config import read_toml
from .cohort_config import SETTINGS, PopulationConfig

__all__ = ["CalibrationConfig", "CalibrationResult", "FreeParameter", "Target",
           "TargetResult", "ParameterResult", "calibrate", "check", "format_check",
           "load_calibration_config",
           "load_targets", "simulated_statistics", "apply_parameters", "OPTIMISERS"]

OPTIMISERS = ("least_squares", "nelder-mead")
#: Standardised residual used for a statistic that cannot be computed from a simulated cohort
#: (e.g. a median survival not reached): large enough to steer away, finite for the optimiser.
NAN_RESIDUAL = 30.0
_TARGETS_FILE = "targets.toml"
_PRESET_SECTIONS = ("cohort", "fixed", "parameters", "factors", "covariates", "diagnosis",
                    "enrolment", "visits", "dropout", "observables")


# ================================================================================= targets


@dataclass(frozen=True)
class Target:
    """One published statistic: its key, published value, standard uncertainty, accepted range
    (pass/fail; ``None``: pass when within 2 uncertainties), source and how it is computed
    (``"cohort"``: :func:`~progression.als.describe.cohort_statistics`; ``"truth"``: from the
    simulated patients' true event times)."""

    name: str
    value: float
    uncertainty: float
    range: tuple[float, float] | None
    label: str
    source: str
    computed: str = "cohort"

    def passes(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.range is not None:
            return bool(self.range[0] - 1e-9 <= x <= self.range[1] + 1e-9)
        return abs(x - self.value) <= 2.0 * self.uncertainty


def _targets_doc(path: str | os.PathLike | None) -> tuple[dict, str]:
    if path is None:
        text = resources.files(__package__).joinpath(_TARGETS_FILE).read_text(encoding="utf-8")
        where = f"progression/als/{_TARGETS_FILE}"
        try:
            return tomllib.loads(text), where
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return read_toml(path), str(path)


def load_targets(setting: str, path: str | os.PathLike | None = None) -> dict[str, Target]:
    """Every target of the targets file that has a ``value`` in ``setting``.

    Parameters
    ----------
    setting : {"clinic", "trial"}
    path : path, optional
        A targets file in the format of ``progression/als/targets.toml`` (default: that file).

    Returns
    -------
    dict of str to Target
        By key; the attrition table gives ``attrition_6``, ``attrition_12``, ... .
    """
    doc, where = _targets_doc(path)
    out: dict[str, Target] = {}
    for key, table in doc.items():
        if not isinstance(table, Mapping):
            continue
        if key == "attrition":
            unc = table.get("uncertainty")
            if unc is None:
                continue
            half = float(table["halfwidth"])
            for month, share in zip(table["months"], table["shares"], strict=True):
                name = f"attrition_{float(month):g}"
                out[name] = Target(name, float(share), float(unc),
                                   (share - half, share + half),
                                   table["statistic"].format(month=month), table["source"])
            continue
        spec = {k: v for k, v in table.items() if k not in SETTINGS}
        sub = table.get(setting, {})
        if isinstance(sub, Mapping):
            spec.update(sub)
        if "value" not in spec:
            continue
        for k in ("value", "uncertainty"):
            if not isinstance(spec.get(k), (int, float)) or isinstance(spec.get(k), bool):
                raise ConfigError(f"{where}, [{key}]: expected a number for '{k}', found "
                                  f"{spec.get(k)!r}")
        if spec["uncertainty"] <= 0:
            raise ConfigError(f"{where}, [{key}].uncertainty: expected a positive number, "
                              f"found {spec['uncertainty']}")
        rng = spec.get("range", "none")
        rng = None if rng == "none" else (float(rng[0]), float(rng[1]))
        computed = spec.get("computed", "cohort")
        if computed not in ("cohort", "truth"):
            raise ConfigError(f"{where}, [{key}].computed: expected 'cohort' or 'truth', "
                              f"found {computed!r}")
        label = str(spec.get("statistic", key)).replace("{where}", "").replace(
            "{nfl_control:g}", "20")
        out[key] = Target(key, float(spec["value"]), float(spec["uncertainty"]), rng, label,
                          str(spec.get("source", "")), computed)
    return out


# ================================================================================== config


@dataclass(frozen=True)
class FreeParameter:
    """A number of the preset that the calibration moves: its TOML path in the preset
    (``"factors.pace.sd"``, ``"parameters.k0.typical"``, ``"fixed.wsp"``), start and bounds."""

    path: str
    start: float
    bounds: tuple[float, float]

    def to_unit(self, x: float) -> float:
        lo, hi = self.bounds
        return (x - lo) / (hi - lo)

    def from_unit(self, u: float) -> float:
        lo, hi = self.bounds
        return lo + (hi - lo) * float(u)


@dataclass(frozen=True)
class CalibrationConfig:
    """A parsed calibration config (see the module docstring for the format)."""

    preset: Path
    preset_doc: Mapping[str, Any]
    setting: str
    n: int
    seeds: tuple[int, ...]
    targets: tuple[Target, ...]
    parameters: tuple[FreeParameter, ...]
    method: str = "least_squares"
    max_evaluations: int = 60
    diff_step: float = 0.05
    tolerance: float = 1e-3
    uncertainty_seeds: tuple[int, ...] = ()
    source: str = "<config>"
    text: str = ""


_TOP = ("calibration", "parameters", "targets", "optimiser", "uncertainty")


def _get_path(doc: Mapping, path: str):
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set_path(doc: dict, path: str, value: float) -> None:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load_calibration_config(path: str | os.PathLike) -> CalibrationConfig:
    """Read a calibration config; every problem is one :class:`ConfigError` naming the file
    and the key (unknown keys, unknown parameters or targets, bad bounds, a bad preset)."""
    path = Path(path)
    doc = read_toml(path)
    text = path.read_text(encoding="utf-8")
    src = str(path)
    problems: list[str] = []

    def problem(key, msg):
        problems.append(f"{src}, {key}: {msg}")

    def unknown(table, where, allowed):
        for k in table:
            if k not in allowed:
                problem(f"{where}.{k}" if where else k,
                        f"unknown key (expected one of: {', '.join(allowed)})")

    unknown(doc, "", _TOP)
    cal = doc.get("calibration")
    if not isinstance(cal, Mapping):
        raise ConfigError(f"{src}, calibration: expected a [calibration] table with at least "
                          "'preset' and 'targets'")
    unknown(cal, "calibration", ("preset", "setting", "n", "seeds", "targets", "targets_file"))
    if not isinstance(cal.get("preset"), str):
        raise ConfigError(f"{src}, calibration.preset: expected the path of a cohort preset "
                          f"(TOML), found {cal.get('preset')!r}")
    preset = (path.parent / cal["preset"]).resolve() if not os.path.isabs(cal["preset"]) \
        else Path(cal["preset"])
    try:
        preset_doc = read_toml(preset)
        base = PopulationConfig.from_dict(preset_doc, str(preset))
    except ConfigError as exc:
        raise ConfigError(f"{src}, calibration.preset: the preset is not valid: {exc}") \
            from None
    setting = cal.get("setting", base.setting)
    if setting not in SETTINGS:
        problem("calibration.setting", f"expected one of {', '.join(SETTINGS)}, found "
                f"{setting!r}")
        setting = base.setting
    n = cal.get("n", base.n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 10:
        problem("calibration.n", f"expected an integer >= 10, found {n!r}")
        n = base.n
    seeds = cal.get("seeds", [base.seed])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds)):
        problem("calibration.seeds", f"expected a non-empty list of non-negative integers, "
                f"found {seeds!r}")
        seeds = [base.seed]

    targets_file = cal.get("targets_file")
    if targets_file is not None:
        if not isinstance(targets_file, str):
            problem("calibration.targets_file", f"expected a path, found {targets_file!r}")
            targets_file = None
        elif not os.path.isabs(targets_file):
            targets_file = path.parent / targets_file
    available = load_targets(setting, targets_file)
    names = cal.get("targets")
    chosen: list[Target] = []
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        problem("calibration.targets", f"expected a non-empty list of target names, found "
                f"{names!r}")
        names = []
    overrides = doc.get("targets", {})
    if not isinstance(overrides, Mapping):
        problem("targets", "expected tables [targets.NAME] (value, uncertainty, range)")
        overrides = {}
    for name in names:
        if name not in available:
            problem("calibration.targets", f"unknown target {name!r} for the {setting} "
                    f"setting (known: {', '.join(sorted(available))})")
            continue
        t = available[name]
        over = overrides.get(name, {})
        if isinstance(over, Mapping) and over:
            unknown(over, f"targets.{name}", ("value", "uncertainty", "range"))
            value = over.get("value", t.value)
            unc = over.get("uncertainty", t.uncertainty)
            rng = over.get("range", t.range)
            if not _is_number(value):
                problem(f"targets.{name}.value", f"expected a number, found {value!r}")
                value = t.value
            if not _is_number(unc) or unc <= 0:
                problem(f"targets.{name}.uncertainty", f"expected a positive number, found "
                        f"{unc!r}")
                unc = t.uncertainty
            if rng is not None and not (isinstance(rng, (list, tuple)) and len(rng) == 2
                                        and all(_is_number(v) for v in rng)
                                        and rng[0] < rng[1]):
                problem(f"targets.{name}.range", f"expected [low, high] with low < high, "
                        f"found {rng!r}")
                rng = t.range
            t = Target(t.name, float(value), float(unc),
                       None if rng is None else (float(rng[0]), float(rng[1])), t.label,
                       t.source, t.computed)
        chosen.append(t)
    for name in overrides:
        if name not in names:
            problem(f"targets.{name}", "overrides a target that is not in calibration.targets")

    pdoc = doc.get("parameters")
    free: list[FreeParameter] = []
    if not isinstance(pdoc, Mapping) or not pdoc:
        problem("parameters", "expected at least one [parameters.\"PATH\"] table (bounds)")
        pdoc = {}
    trial_doc = copy.deepcopy(preset_doc)
    for pname, spec in pdoc.items():
        key = f'parameters."{pname}"'
        if not isinstance(spec, Mapping):
            problem(key, f"expected a table (bounds, start), found {spec!r}")
            continue
        unknown(spec, key, ("bounds", "start"))
        section = pname.split(".")[0]
        current = _get_path(preset_doc, pname)
        parent = _get_path(preset_doc, pname.rpartition(".")[0]) if "." in pname else None
        if section not in _PRESET_SECTIONS or section == "cohort" or "." not in pname:
            problem(key, f"unknown parameter {pname!r}: expected the TOML path of a number in "
                    f"the preset's sections ({', '.join(_PRESET_SECTIONS[1:])})")
            continue
        if current is None and not isinstance(parent, Mapping):
            problem(key, f"unknown parameter {pname!r}: no table "
                    f"'{pname.rpartition('.')[0]}' in the preset {preset}")
            continue
        if current is not None and not _is_number(current):
            problem(key, f"parameter {pname!r}: the preset's value {current!r} is not a number")
            continue
        bounds = spec.get("bounds")
        if not (isinstance(bounds, list) and len(bounds) == 2
                and all(_is_number(b) and math.isfinite(b) for b in bounds)):
            problem(f"{key}.bounds", f"expected [low, high] (finite numbers), found {bounds!r}")
            continue
        if not bounds[0] < bounds[1]:
            problem(f"{key}.bounds", f"expected low < high, found {bounds!r}")
            continue
        start = spec.get("start", current)
        if start is None:
            problem(f"{key}.start", f"the preset has no value at {pname!r}; give a start")
            continue
        if not _is_number(start) or not bounds[0] <= start <= bounds[1]:
            problem(f"{key}.start", f"expected a number within bounds {bounds}, found "
                    f"{start!r}")
            continue
        free.append(FreeParameter(pname, float(start), (float(bounds[0]), float(bounds[1]))))
        _set_path(trial_doc, pname, float(start))

    opt = doc.get("optimiser", {})
    if not isinstance(opt, Mapping):
        problem("optimiser", "expected a table")
        opt = {}
    unknown(opt, "optimiser", ("method", "max_evaluations", "diff_step", "tolerance"))
    method = opt.get("method", "least_squares")
    if method not in OPTIMISERS:
        problem("optimiser.method", f"expected one of {', '.join(OPTIMISERS)}, found "
                f"{method!r}")
    max_eval = opt.get("max_evaluations", 60)
    if not isinstance(max_eval, int) or isinstance(max_eval, bool) or max_eval < 1:
        problem("optimiser.max_evaluations", f"expected a positive integer, found {max_eval!r}")
    diff_step = opt.get("diff_step", 0.05)
    if not _is_number(diff_step) or not 0 < diff_step < 0.5:
        problem("optimiser.diff_step", f"expected a number in (0, 0.5), found {diff_step!r}")
    tol = opt.get("tolerance", 1e-3)
    if not _is_number(tol) or tol <= 0:
        problem("optimiser.tolerance", f"expected a positive number, found {tol!r}")
    unc = doc.get("uncertainty", {})
    if not isinstance(unc, Mapping):
        problem("uncertainty", "expected a table")
        unc = {}
    unknown(unc, "uncertainty", ("seeds",))
    useeds = unc.get("seeds", [])
    if not isinstance(useeds, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in useeds):
        problem("uncertainty.seeds", f"expected a list of non-negative integers, found "
                f"{useeds!r}")
        useeds = []
    if problems:
        raise ConfigError("; ".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    try:   # the start values must give a valid preset
        PopulationConfig.from_dict(trial_doc, str(preset))
    except ConfigError as exc:
        raise ConfigError(f"{src}, parameters: the preset with the start values is not valid: "
                          f"{exc}") from None
    return CalibrationConfig(
        preset=preset, preset_doc=preset_doc, setting=setting, n=int(n),
        seeds=tuple(int(s) for s in seeds), targets=tuple(chosen), parameters=tuple(free),
        method=method, max_evaluations=int(max_eval), diff_step=float(diff_step),
        tolerance=float(tol), uncertainty_seeds=tuple(int(s) for s in useeds), source=src,
        text=text)


# ============================================================================ evaluation


def apply_parameters(config: CalibrationConfig, values: Sequence[float]) -> PopulationConfig:
    """The preset with the free parameters set to ``values`` (in ``config.parameters`` order).

    Raises
    ------
    ConfigError
        The values make the preset invalid (e.g. a typical value outside the model's bounds).
    """
    doc = copy.deepcopy(dict(config.preset_doc))
    for p, x in zip(config.parameters, values, strict=True):
        _set_path(doc, p.path, float(x))
    return PopulationConfig.from_dict(doc, str(config.preset))


#: Statistics of the simulated patients' true times (truth table), months from clinical onset
#: to death (no censoring; no death within the simulated horizon counts as after it).
TRUTH_STATISTICS = ("latent_survival_10y", "latent_survival_median")


def _truth_statistic(name: str, truth) -> float:
    death = truth["death_model_time"]
    since_onset = np.where(np.isfinite(death), death - truth["onset_model_time"], np.inf)
    if name == "latent_survival_10y":
        return float(np.mean(since_onset > 120.0))
    if name == "latent_survival_median":
        # Unlike the Kaplan-Meier median with delayed entry, which is unstable when few
        # patients are at risk in the first months after onset (entry is at diagnosis), this
        # is a smooth function of the parameters under common random numbers.
        return float(np.median(since_onset))
    raise ConfigError(f"target {name!r}: computed = 'truth' but no such truth statistic "
                      f"(known: {', '.join(TRUTH_STATISTICS)})")


def simulated_statistics(pop: PopulationConfig, targets: Sequence[Target], n: int, seed: int,
                         setting: str) -> np.ndarray:
    """The targets' statistics of one simulated cohort (n patients, one seed).

    Returns
    -------
    ndarray (len(targets),)
        NaN where a statistic cannot be computed.
    """
    from .describe import cohort_statistics
    from .synthetic import synthetic_cohort

    cohort, truth = synthetic_cohort(pop, n=n, seed=seed)
    stats = cohort_statistics(cohort, setting=setting)
    out = np.empty(len(targets))
    for k, t in enumerate(targets):
        out[k] = (_truth_statistic(t.name, truth) if t.computed == "truth"
                  else stats.get(t.name, math.nan))
    return out


class _Objective:
    """Standardised residuals of the seed-averaged statistics; evaluations are memoised (the
    same parameters always give the same numbers: common random numbers)."""

    def __init__(self, config: CalibrationConfig):
        self.config = config
        self.values = np.array([t.value for t in config.targets])
        self.scale = np.array([t.uncertainty for t in config.targets])
        self.cache: dict[tuple, np.ndarray] = {}
        self.evaluations = 0
        self.history: list[tuple[list[float], float]] = []

    def statistics(self, x: Sequence[float], seeds: Sequence[int] | None = None) -> np.ndarray:
        """(len(seeds), len(targets)) statistics at parameters ``x``."""
        cfg = self.config
        seeds = cfg.seeds if seeds is None else tuple(seeds)
        key = (tuple(round(float(v), 12) for v in x), seeds)
        if key not in self.cache:
            pop = apply_parameters(cfg, x)
            self.cache[key] = np.array([simulated_statistics(pop, cfg.targets, cfg.n, s,
                                                             cfg.setting) for s in seeds])
            self.evaluations += 1
        return self.cache[key]

    def residuals_x(self, x: Sequence[float]) -> np.ndarray:
        sims = self.statistics(x)
        with np.errstate(all="ignore"):
            mean = np.nanmean(sims, axis=0) if np.isfinite(sims).any() else sims[0]
        r = (mean - self.values) / self.scale
        r = np.where(np.isfinite(r), r, NAN_RESIDUAL)
        self.history.append(([float(v) for v in x], float(r @ r)))
        return r

    def residuals_u(self, u: Sequence[float]) -> np.ndarray:
        x = [p.from_unit(min(max(v, 0.0), 1.0)) for p, v in zip(self.config.parameters, u,
                                                                strict=True)]
        return self.residuals_x(x)


# ================================================================================ results


@dataclass(frozen=True)
class TargetResult:
    """One target after calibration: published value, uncertainty, range, the achieved
    (seed-averaged) value, its standardised residual, pass/fail, and the per-seed range over
    the calibration and uncertainty seeds."""

    name: str
    label: str
    value: float
    uncertainty: float
    range: tuple[float, float] | None
    source: str
    start: float
    achieved: float
    z: float
    passed: bool
    seed_min: float
    seed_max: float
    passed_every_seed: bool


@dataclass(frozen=True)
class ParameterResult:
    """One free parameter: start, estimate, standard error (sandwich; NaN when not identified
    by the targets), bounds."""

    path: str
    start: float
    estimate: float
    se: float
    bounds: tuple[float, float]


@dataclass
class CalibrationResult:
    """What :func:`calibrate` returns; :meth:`save` writes the calibration folder."""

    config: CalibrationConfig
    targets: list[TargetResult]
    parameters: list[ParameterResult]
    objective_start: float
    objective: float
    evaluations: int
    seconds: float
    message: str
    preset_text: str
    history: list = field(default_factory=list)

    @property
    def estimates(self) -> dict[str, float]:
        return {p.path: p.estimate for p in self.parameters}

    @property
    def preset_name(self) -> str:
        return f"{self.config.preset.stem}_calibrated.toml"

    def summary(self) -> str:
        """A Markdown report: targets (published, achieved, pass) and parameters."""
        cfg = self.config
        lines = [f"# Calibration of {cfg.preset.name} ({cfg.setting} targets)", "",
                 f"Config {cfg.source}; {cfg.n} patients per cohort, common random numbers "
                 f"with seeds {list(cfg.seeds)}; optimiser {cfg.method}, {self.evaluations} "
                 f"evaluations, {self.seconds:.0f} s; objective (sum of squared "
                 f"standardised residuals) {self.objective_start:.3g} -> {self.objective:.3g}"
                 f" ({self.message}).", "",
                 "| target | published | uncertainty | range | start | achieved | z | pass |"
                 " every seed (min-max) |",
                 "|---|---:|---:|---:|---:|---:|---:|:---:|---|"]
        for t in self.targets:
            rng = "-" if t.range is None else f"{t.range[0]:.3g}-{t.range[1]:.3g}"
            lines.append(f"| {t.name} | {t.value:.3g} | {t.uncertainty:.3g} | {rng} | "
                         f"{t.start:.3g} | {t.achieved:.3g} | {t.z:+.2f} | "
                         f"{'yes' if t.passed else 'NO'} | "
                         f"{'yes' if t.passed_every_seed else 'no'} "
                         f"({t.seed_min:.3g}-{t.seed_max:.3g}) |")
        passed = sum(t.passed for t in self.targets)
        lines += ["", f"{passed} of {len(self.targets)} targets pass.", "",
                  "| parameter | start | estimate | SE | bounds |", "|---|---:|---:|---:|---|"]
        for p in self.parameters:
            lines.append(f"| {p.path} | {p.start:.4g} | {p.estimate:.4g} | {p.se:.2g} | "
                         f"{p.bounds[0]:g}-{p.bounds[1]:g} |")
        lines += ["", "SE: sandwich from the Jacobian of the standardised statistics at the "
                  "estimate (finite differences under common random numbers), with the "
                  "targets' uncertainty and the simulation variance of the seed-averaged "
                  "statistics; NaN = not identified by these targets.", ""]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        cfg = self.config
        return {
            "format": "progression-calibration/1",
            "config": cfg.source, "preset": str(cfg.preset), "setting": cfg.setting,
            "n": cfg.n, "seeds": list(cfg.seeds),
            "uncertainty_seeds": list(cfg.uncertainty_seeds), "method": cfg.method,
            "objective_start": self.objective_start, "objective": self.objective,
            "evaluations": self.evaluations, "seconds": self.seconds, "message": self.message,
            "targets": [{**t.__dict__, "range": list(t.range) if t.range else None}
                        for t in self.targets],
            "parameters": [{**p.__dict__, "bounds": list(p.bounds)} for p in self.parameters],
            "preset_file": self.preset_name,
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the calibration folder (atomically; an existing folder written by
        progression is replaced only with ``overwrite``)."""
        from .._io import atomic_directory

        path = Path(path)
        inputs = [Path(self.config.source), self.config.preset]
        with atomic_directory(path, overwrite=overwrite, inputs=inputs,
                              what="calibration folder") as tmp:
            (tmp / "report.md").write_text(self.summary(), encoding="utf-8")
            (tmp / "result.json").write_text(json.dumps(_jsonable(self.to_dict()), indent=1)
                                             + "\n", encoding="utf-8")
            (tmp / "calibration.toml").write_text(self.config.text, encoding="utf-8")
            (tmp / self.preset_name).write_text(self.preset_text, encoding="utf-8")
            with open(tmp / "targets.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["target", "published", "uncertainty", "range_low", "range_high",
                            "start", "achieved", "z", "pass", "seed_min", "seed_max",
                            "pass_every_seed", "source"])
                for t in self.targets:
                    lo, hi = t.range if t.range else ("", "")
                    w.writerow([t.name, t.value, t.uncertainty, lo, hi, t.start, t.achieved,
                                t.z, int(t.passed), t.seed_min, t.seed_max,
                                int(t.passed_every_seed), t.source])
            with open(tmp / "parameters.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["parameter", "start", "estimate", "se", "low", "high"])
                for p in self.parameters:
                    w.writerow([p.path, p.start, p.estimate, p.se, *p.bounds])
        return path


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# ================================================================================ preset out


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _fmt(x: float) -> str:
    """Six significant digits (the calibration's precision is far coarser)."""
    return repr(float(f"{float(x):.6g}"))


def _substitute(text: str, path: str, value: float) -> str | None:
    """``text`` with the number at TOML ``path`` replaced by ``value`` (comments kept), or
    None when the line-based edit cannot find it (the caller then serialises the table)."""
    parts = path.split(".")
    lines = text.splitlines(keepends=True)
    header_re = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
    # the longest table header that is a prefix of the path
    for cut in range(len(parts) - 1, 0, -1):
        header = ".".join(parts[:cut])
        rest = parts[cut:]
        start = None
        for i, line in enumerate(lines):
            m = header_re.match(line)
            if m and m.group(1).strip() == header:
                start = i
                break
        if start is None:
            continue
        end = next((j for j in range(start + 1, len(lines)) if header_re.match(lines[j])
                    or lines[j].lstrip().startswith("[[")), len(lines))
        key_re = re.compile(rf"^(\s*{re.escape(rest[0])}\s*=\s*)(.*)$")
        for j in range(start + 1, end):
            m = key_re.match(lines[j].rstrip("\n"))
            if not m:
                continue
            body = m.group(2)
            if len(rest) == 1:
                nm = re.match(rf"({_NUMBER})(.*)$", body)
                if not nm:
                    return None
                lines[j] = m.group(1) + _fmt(value) + nm.group(2) + "\n"
                return "".join(lines)
            if len(rest) == 2:   # a key of an inline table on this line
                sub = re.compile(rf"(\b{re.escape(rest[1])}\s*=\s*)({_NUMBER})")
                if sub.search(body):
                    lines[j] = m.group(1) + sub.sub(lambda mm: mm.group(1) + _fmt(value),
                                                    body, count=1) + "\n"
                    return "".join(lines)
                ins = re.match(r"(\{\s*)(.*)$", body)
                if ins:
                    lines[j] = (m.group(1) + ins.group(1) + f"{rest[1]} = {_fmt(value)}, "
                                + ins.group(2) + "\n")
                    return "".join(lines)
            return None
        if len(rest) == 1:   # a new key in the table
            lines.insert(start + 1, f"{rest[0]} = {_fmt(value)}   # added by calibration\n")
            return "".join(lines)
        return None
    return None


def _preset_text(result_config: CalibrationConfig, values: Sequence[float], header: str) -> str:
    text = result_config.preset.read_text(encoding="utf-8")
    for p, x in zip(result_config.parameters, values, strict=True):
        new = _substitute(text, p.path, x)
        if new is None:
            raise ProgressionError(f"{result_config.preset}: cannot write the calibrated value "
                                   f"of {p.path!r} into the preset text")
        text = new
    doc = tomllib.loads(text)
    for p, x in zip(result_config.parameters, values, strict=True):   # verify the edit
        got = _get_path(doc, p.path)
        if got is None or abs(float(got) - float(x)) > 1e-6 * max(1.0, abs(float(x))):
            raise ProgressionError(f"{result_config.preset}: writing {p.path!r} into the "
                                   f"preset gave {got!r}, expected {x!r}")
    return header + text


# ============================================================================== calibrate


def _sandwich(J: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Covariance of the estimates, NaN rows/columns for directions the targets do not
    identify (singular J'J)."""
    A = J.T @ J
    try:
        w, V = np.linalg.eigh(A)
    except np.linalg.LinAlgError:
        return np.full_like(A, np.nan)
    tol = max(w.max(), 0.0) * 1e-8
    winv = np.where(w > tol, 1.0 / np.where(w > tol, w, 1.0), 0.0)
    Ainv = (V * winv) @ V.T
    cov = Ainv @ J.T @ omega @ J @ Ainv
    bad = np.abs(V[:, w <= tol]).max(axis=1) > 1e-3 if (w <= tol).any() else \
        np.zeros(len(A), bool)
    cov[bad, :] = np.nan
    cov[:, bad] = np.nan
    return cov


def calibrate(config, *, max_evaluations: int | None = None, n: int | None = None,
              progress=None) -> CalibrationResult:
    """Fit the free parameters of a cohort preset to published statistics (simulated method
    of moments with common random numbers).

    Parameters
    ----------
    config : CalibrationConfig or path
        A calibration config (see the module docstring).
    max_evaluations, n : int, optional
        Override the config's ``optimiser.max_evaluations`` and ``calibration.n``.
    progress : callable, optional
        Called as ``progress(evaluation, objective, values)`` after each evaluation.

    Returns
    -------
    CalibrationResult
    """
    import dataclasses

    from scipy import optimize

    cfg = config if isinstance(config, CalibrationConfig) else load_calibration_config(config)
    if max_evaluations is not None:
        cfg = dataclasses.replace(cfg, max_evaluations=int(max_evaluations))
    if n is not None:
        cfg = dataclasses.replace(cfg, n=int(n))
    t0 = time.perf_counter()
    obj = _Objective(cfg)
    params = cfg.parameters
    u0 = np.array([p.to_unit(p.start) for p in params])
    r0 = obj.residuals_u(u0)

    def fun(u):
        r = obj.residuals_u(u)
        if progress is not None:
            progress(obj.evaluations, float(r @ r), [p.from_unit(v) for p, v in zip(params, u,
                                                                                     strict=True)])
        return r

    if cfg.method == "least_squares":
        sol = optimize.least_squares(
            fun, u0, bounds=(0.0, 1.0), method="trf", diff_step=cfg.diff_step,
            x_scale=1.0, xtol=cfg.tolerance, ftol=cfg.tolerance, gtol=1e-8,
            max_nfev=cfg.max_evaluations)
        u_hat, message = np.clip(sol.x, 0.0, 1.0), str(sol.message)
    else:
        sol = optimize.minimize(
            lambda u: float(np.sum(fun(np.clip(u, 0, 1)) ** 2)), u0, method="Nelder-Mead",
            bounds=[(0.0, 1.0)] * len(u0),
            options={"maxfev": cfg.max_evaluations, "xatol": cfg.tolerance,
                     "fatol": cfg.tolerance, "initial_simplex": _simplex(u0, 0.1)})
        u_hat, message = np.clip(sol.x, 0.0, 1.0), str(sol.message)
    x_hat = np.array([p.from_unit(v) for p, v in zip(params, u_hat, strict=True)])
    r_hat = obj.residuals_x(x_hat)

    # Jacobian of the standardised statistics in the parameters' own units (central
    # differences, common random numbers; a step that would cross a bound is one-sided)
    scale = obj.scale
    J = np.empty((len(cfg.targets), len(params)))
    for k, p in enumerate(params):
        h = cfg.diff_step * (p.bounds[1] - p.bounds[0])
        lo_x, hi_x = max(p.bounds[0], x_hat[k] - h), min(p.bounds[1], x_hat[k] + h)
        xa, xb = x_hat.copy(), x_hat.copy()
        xa[k], xb[k] = lo_x, hi_x
        with np.errstate(all="ignore"):
            ma = np.nanmean(obj.statistics(xa), axis=0)
            mb = np.nanmean(obj.statistics(xb), axis=0)
        J[:, k] = (mb - ma) / (hi_x - lo_x) / scale
    J = np.where(np.isfinite(J), J, 0.0)

    sims = obj.statistics(x_hat)
    every = sims
    var_sim = np.zeros(len(cfg.targets))
    if cfg.uncertainty_seeds:
        extra = obj.statistics(x_hat, cfg.uncertainty_seeds)
        every = np.vstack([sims, extra])
        with np.errstate(all="ignore"):
            # variance of a seed-averaged statistic: between-seed variance / number of seeds
            var_sim = np.nan_to_num(np.nanvar(every, axis=0, ddof=1)) / len(cfg.seeds)
    omega = np.eye(len(cfg.targets)) + np.diag(var_sim / scale ** 2)
    cov = _sandwich(J, omega)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    se = np.where(np.isnan(np.diag(cov)), np.nan, se)

    start_stats = obj.statistics([p.start for p in params])
    with np.errstate(all="ignore"):
        start_mean = np.nanmean(start_stats, axis=0)
        achieved = np.nanmean(sims, axis=0)
    targets = []
    for k, t in enumerate(cfg.targets):
        col = every[:, k]
        fin = col[np.isfinite(col)]
        targets.append(TargetResult(
            name=t.name, label=t.label, value=t.value, uncertainty=t.uncertainty,
            range=t.range, source=t.source, start=float(start_mean[k]),
            achieved=float(achieved[k]), z=float((achieved[k] - t.value) / t.uncertainty),
            passed=t.passes(float(achieved[k])),
            seed_min=float(fin.min()) if len(fin) else math.nan,
            seed_max=float(fin.max()) if len(fin) else math.nan,
            passed_every_seed=bool(len(fin) == len(col) and all(t.passes(v) for v in col))))
    presults = [ParameterResult(p.path, p.start, float(x), float(s), p.bounds)
                for p, x, s in zip(params, x_hat, se, strict=True)]
    seconds = time.perf_counter() - t0
    header = _preset_header(cfg, presults, targets)
    text = _preset_text(cfg, x_hat, header)
    return CalibrationResult(
        config=cfg, targets=targets, parameters=presults, objective_start=float(r0 @ r0),
        objective=float(r_hat @ r_hat), evaluations=obj.evaluations, seconds=seconds,
        message=message, preset_text=text, history=obj.history)


def check(config, *, seeds: Sequence[int] = (1, 2, 3, 4, 5), n: int | None = None
          ) -> list[TargetResult]:
    """The config's targets for its preset as it is (the start values), over several seeds.

    Parameters
    ----------
    config : CalibrationConfig or path
    seeds : sequence of int
        One simulated cohort per seed.
    n : int, optional
        Patients per cohort (default: the config's).

    Returns
    -------
    list of TargetResult
        ``achieved`` = mean over seeds, ``passed`` = the mean in range, ``seed_min``/
        ``seed_max`` and ``passed_every_seed`` over the seeds; ``start`` = the first seed's.
    """
    cfg = config if isinstance(config, CalibrationConfig) else load_calibration_config(config)
    n = cfg.n if n is None else int(n)
    pop = apply_parameters(cfg, [p.start for p in cfg.parameters])
    sims = np.array([simulated_statistics(pop, cfg.targets, n, int(s), cfg.setting)
                     for s in seeds])
    out = []
    for k, t in enumerate(cfg.targets):
        col = sims[:, k]
        fin = col[np.isfinite(col)]
        mean = float(fin.mean()) if len(fin) else math.nan
        out.append(TargetResult(
            name=t.name, label=t.label, value=t.value, uncertainty=t.uncertainty,
            range=t.range, source=t.source, start=float(col[0]), achieved=mean,
            z=(mean - t.value) / t.uncertainty, passed=t.passes(mean),
            seed_min=float(fin.min()) if len(fin) else math.nan,
            seed_max=float(fin.max()) if len(fin) else math.nan,
            passed_every_seed=bool(len(fin) == len(col) and all(t.passes(v) for v in col))))
    return out


def format_check(results: Sequence[TargetResult], seeds: Sequence[int]) -> str:
    """A Markdown table of :func:`check`: published value and range, mean and range over the
    seeds, in range in every seed."""
    lines = [f"| target | published | range | mean over {len(seeds)} seeds | min-max | "
             "in range (mean) | every seed |", "|---|---:|---:|---:|---:|:---:|:---:|"]
    for t in results:
        rng = "-" if t.range is None else f"{t.range[0]:.3g}-{t.range[1]:.3g}"
        lines.append(f"| {t.name} | {t.value:.3g} | {rng} | {t.achieved:.3g} | "
                     f"{t.seed_min:.3g}-{t.seed_max:.3g} | {'yes' if t.passed else 'NO'} | "
                     f"{'yes' if t.passed_every_seed else 'no'} |")
    lines.append(f"\n{sum(t.passed_every_seed for t in results)} of {len(results)} targets in "
                 f"range in every seed (seeds {list(seeds)}).")
    return "\n".join(lines)


def _simplex(u0: np.ndarray, step: float) -> np.ndarray:
    pts = [u0.copy()]
    for k in range(len(u0)):
        v = u0.copy()
        v[k] = v[k] + step if v[k] + step <= 1.0 else v[k] - step
        pts.append(v)
    return np.array(pts)


def _preset_header(cfg: CalibrationConfig, params, targets) -> str:
    out = io.StringIO()
    out.write(f"# Recalibrated by `progression calibrate {cfg.source}` on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    where = cfg.preset
    with contextlib.suppress(ValueError):
        where = cfg.preset.relative_to(Path.cwd())
    out.write(f"# from {where} ({cfg.setting} targets, {cfg.n} patients, seeds "
              f"{list(cfg.seeds)}). Calibrated values (SE):\n")
    for p in params:
        out.write(f"#   {p.path} = {p.estimate:.4g} ({p.se:.2g}); start {p.start:.4g}\n")
    out.write(f"# Targets passing: {sum(t.passed for t in targets)} of {len(targets)}.\n#\n")
    return out.getvalue()
