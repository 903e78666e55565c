"""Calibration targets and the calibration config reader (moved unchanged from
:mod:`progression.als.calibration`, which re-exports them; see there for the config format)."""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..virtual.cohort_config import read_toml
from .cohort_config import SETTINGS, PopulationConfig

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
    starts: int = 1
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
    unknown(opt, "optimiser", ("method", "max_evaluations", "diff_step", "tolerance", "starts"))
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
    starts = opt.get("starts", 1)
    if not isinstance(starts, int) or isinstance(starts, bool) or not 1 <= starts <= 50:
        problem("optimiser.starts", f"expected an integer from 1 to 50, found {starts!r}")
        starts = 1
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
        tolerance=float(tol), starts=int(starts),
        uncertainty_seeds=tuple(int(s) for s in useeds), source=src, text=text)


# ============================================================================ evaluation
