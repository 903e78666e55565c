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
    starts = 1                               # local fits: the start, then Latin-hypercube
                                             # points in the bounds; the best is kept [1]

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ProgressionError
from ._calibration_config import (  # noqa: F401  (re-exported)
    _PRESET_SECTIONS,
    _TARGETS_FILE,
    _TOP,
    NAN_RESIDUAL,
    OPTIMISERS,
    CalibrationConfig,
    FreeParameter,
    Target,
    _get_path,
    _is_number,
    _set_path,
    _targets_doc,
    load_calibration_config,
    load_targets,
)
from .cohort_config import PopulationConfig

__all__ = ["CalibrationConfig", "CalibrationResult", "FreeParameter", "Target",
           "TargetResult", "ParameterResult", "calibrate", "check", "format_check",
           "load_calibration_config",
           "load_targets", "simulated_statistics", "apply_parameters", "OPTIMISERS"]


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


def _as_typed(path) -> str:
    """``path`` relative to the working directory when it lies under it (as ``config`` is
    recorded), so that a result does not carry the absolute layout of the machine it ran
    on; absolute otherwise."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
                 f"with seeds {list(cfg.seeds)}; optimiser {cfg.method}"
                 + (f" from {cfg.starts} starts" if cfg.starts > 1 else "")
                 + f", {self.evaluations} "
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
            "config": cfg.source, "preset": _as_typed(cfg.preset), "setting": cfg.setting,
            "n": cfg.n, "seeds": list(cfg.seeds),
            "uncertainty_seeds": list(cfg.uncertainty_seeds), "method": cfg.method,
            "starts": cfg.starts,
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

    # the objective of simulated moments has shallow valleys where statistics compensate
    # (e.g. a lower pace SD against a lower kA): several local fits from spread starts, the
    # best kept; the starts after the first are a seeded Latin hypercube in the bounds, so a
    # calibration is reproducible
    starts = [u0] + list(_starts(len(u0), cfg.starts - 1))
    fits = [_local_fit(fun, u, cfg, optimize) for u in starts]
    best = int(np.argmin([f[2] for f in fits]))
    u_hat, message = fits[best][0], fits[best][1]
    if len(fits) > 1:
        message += (f"; best of {len(fits)} starts (start {best + 1}; objectives "
                    + ", ".join(f"{f[2]:.4g}" for f in fits) + ")")
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


def _starts(d: int, k: int) -> np.ndarray:
    """``k`` start points in the unit cube: a Latin hypercube (scipy.stats.qmc), seed 0."""
    if k <= 0:
        return np.empty((0, d))
    from scipy.stats import qmc

    return qmc.LatinHypercube(d=d, seed=0).random(k)


def _local_fit(fun, u0: np.ndarray, cfg: CalibrationConfig, optimize):
    """One local fit from ``u0`` on the unit scale: (u_hat, message, objective)."""
    if cfg.method == "least_squares":
        sol = optimize.least_squares(
            fun, u0, bounds=(0.0, 1.0), method="trf", diff_step=cfg.diff_step,
            x_scale=1.0, xtol=cfg.tolerance, ftol=cfg.tolerance, gtol=1e-8,
            max_nfev=cfg.max_evaluations)
        u_hat = np.clip(sol.x, 0.0, 1.0)
        return u_hat, str(sol.message), float(2.0 * sol.cost)
    sol = optimize.minimize(
        lambda u: float(np.sum(fun(np.clip(u, 0, 1)) ** 2)), u0, method="Nelder-Mead",
        bounds=[(0.0, 1.0)] * len(u0),
        options={"maxfev": cfg.max_evaluations, "xatol": cfg.tolerance,
                 "fatol": cfg.tolerance, "initial_simplex": _simplex(u0, 0.1)})
    return np.clip(sol.x, 0.0, 1.0), str(sol.message), float(sol.fun)


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
