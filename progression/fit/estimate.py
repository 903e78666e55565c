"""Fit a config end to end: data, the estimator the config names, provenance.

:func:`fit` reads the data, builds the likelihood (:class:`~progression.fit.problem.Problem`),
hands one :class:`~progression.fit.estimators.base.EstimationProblem` to the estimator that
``[fit] estimator`` names in :data:`~progression.fit.estimators.ESTIMATORS` (or to
:class:`~progression.fit.fixed.FixedEvaluation` when nothing is estimated), and builds a
:class:`~progression.fit.result.FitResult` from its typed output and the provenance; nothing is
written until ``result.save(folder)``. What each estimator does is in its own module
(:mod:`progression.fit.estimators.individual`, :mod:`progression.fit.estimators.pooled`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import platform
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FitError
from ..parallel import check_executor
from ..parallel import executor as make_executor
from ._config_prior import refuse_priors
from ._estimator_options import EstimatorOptions
from .config import FitConfig, read_fit_config
from .estimators import get_estimator
from .estimators.base import EstimationProblem
from .fixed import NOTHING_ESTIMATED, FixedEvaluation, nothing_estimated
from .parts import IndividualPart, Work
from .problem import Design, Problem, designs_from_cohort

__all__ = ["fit", "read_data", "data_sha256", "designs_sha256"]


# ============================================================================ data


def read_data(config: FitConfig):
    """Read the config's data file into a Cohort (times in the model's time unit)."""
    from ..data import read_cohort
    from ..data._units import canonical_time_unit

    d = config.data
    if d["path"] is None:
        raise ConfigError(f"{config.source}, key 'data.path': no data file given")
    unit = canonical_time_unit(config.model.time_unit)
    if unit is None:
        # to_unit=None would keep the file's unit (months when unstated): refuse instead
        from ..data._units import DAYS_PER

        raise ConfigError(f"{config.source}, key 'fit.model': model {config.model.name!r} "
                          f"runs in time unit {config.model.time_unit!r}; expected one of "
                          f"{', '.join(DAYS_PER)} to convert the data's times into")
    kwargs = {"to_unit": unit}
    for key in ("format", "mapping", "time_unit", "sidecar"):
        if d.get(key) is not None:
            kwargs[key] = d[key]
    return read_cohort(d["path"], **kwargs)


def data_sha256(path) -> str:
    """SHA-256 of a data file (of every file, in name order, for a folder)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def designs_sha256(designs) -> str:
    """SHA-256 of fitted data given in memory: ids, times, observables, values, censoring, and
    the inputs (dose records, covariates, conditions, measured SDs).

    The inputs are hashed only where a design has them, so the hash of data without inputs is
    the one earlier versions wrote.
    """
    h = hashlib.sha256()
    for d in designs:
        h.update(d.id.encode())
        for a in (d.time, d.obs, d.value, d.cens, d.limit):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        h.update(np.float64(d.offset_covariate).tobytes())
        if d.doses or d.dose_records:
            # repr of a Dose names every field with full float precision
            h.update(f"doses {d.dose_records!r} {[_dose_key(x) for x in d.doses]!r}".encode())
        for name, times, values in d.covariates:
            h.update(f"covariate {name}".encode())
            h.update(np.ascontiguousarray(times, dtype=float).tobytes())
            h.update(np.ascontiguousarray(values, dtype=float).tobytes())
        if d.condition is not None:
            h.update(("condition " + "\x1f".join(map(str, d.condition))).encode())
        if d.sd is not None:
            h.update(b"sd")
            h.update(np.ascontiguousarray(d.sd, dtype=float).tobytes())
    return h.hexdigest()


def _dose_key(dose) -> tuple:
    """A dose's fields as plain Python values (floats as repr: full precision)."""
    out = []
    for f in dataclasses.fields(dose):
        v = getattr(dose, f.name)
        if isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, float | np.floating):
            v = repr(float(v))
        out.append((f.name, v))
    return tuple(out)


# ============================================================================ fit


def fit(config, *, data=None, jobs: int | None = None, scheduler: str | None = None,
        uncertainty=None, progress: bool = False, executor=None, solver=None):
    """Fit a config: read data, estimate, compute uncertainty; return a FitResult.

    Parameters
    ----------
    config : FitConfig, str or Path
        A validated config or a config file.
    data : Cohort or list of Design, optional
        Use these data instead of reading ``[data] path``.
    jobs : int, optional
        Local worker processes for individual fits (in-process when omitted).
    scheduler : str, optional
        A Dask scheduler address, or ``"local"`` for a LocalCluster with ``jobs`` workers.
    uncertainty : sequence of str, optional
        Override the config's ``[estimator] uncertainty`` (``covariance`` is always done).
    progress : bool
        Print a progress line (subjects done / total) on stderr.
    executor : concurrent.futures.Executor, optional
        Run chunks of subjects here instead (a ``ProcessPoolExecutor``, a Dask
        ``client.get_executor()``, progression's own executors); instead of ``jobs`` and
        ``scheduler``. It is not shut down. The numbers do not depend on the executor.
    solver : SolverOptions or mapping, optional
        Integration settings (method, rtol, atol, max_step, max_steps, sensitivities) instead
        of the config's ``[solver]`` ones; the fit-path keys (outputs, grid_step, refine, ...)
        stay the config's.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        An unknown estimator, ``executor`` together with ``jobs``/``scheduler``, or something
        that is not an executor.
    EstimationFailed
        More subjects failed than ``[fit] max_failed_share`` allows.
    """
    from ..data import Cohort
    from .result import FitResult

    t0 = time.perf_counter()
    cfg = config if isinstance(config, FitConfig) else read_fit_config(config)
    if solver is not None:
        cfg = cfg.with_solver(solver)
    if executor is not None and (jobs is not None or scheduler is not None):
        raise ConfigError("fit(): executor= replaces jobs= and scheduler=; found executor= "
                          f"together with {'jobs' if jobs is not None else 'scheduler'}=")
    check_executor(executor, "fit(executor=...)")
    # before reading data: an unknown estimator is a config error, found at once
    estimator = get_estimator(cfg.estimator, f"{cfg.source}, key 'fit.estimator'")
    # a config changed in Python after reading: priors need an estimator that takes them
    refuse_priors(cfg.source, cfg.parameters, cfg.estimator)
    timings = {}
    notes: list[str] = []
    if data is None:
        cohort = read_data(cfg)
        designs, more = designs_from_cohort(cohort, cfg)
        notes += list(cohort.notes) + more
        sha = data_sha256(cfg.data["path"])
    elif isinstance(data, Cohort):
        designs, more = designs_from_cohort(data, cfg)
        notes += [f"data given in memory ({data.source or 'a Cohort'})"] + more
        sha = designs_sha256(designs)
    else:
        designs = list(data)
        if not designs or not all(isinstance(d, Design) for d in designs):
            raise FitError("data: expected a Cohort or a non-empty list of Design")
        notes.append("data given in memory (a list of Design)")
        sha = designs_sha256(designs)
    timings["data"] = time.perf_counter() - t0
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    opts = EstimatorOptions.coerce(cfg.options, f"{cfg.source}, [estimator]")
    if uncertainty is not None:
        opts = opts.replace(uncertainty=("covariance",) + tuple(
            u for u in ("profile", "bootstrap") if u in uncertainty))
    from ._population_bootstrap import (
        BOOTSTRAPPED_ESTIMATORS,
        bootstrap_fitted,
        strata_of,
        with_bootstrap,
    )

    case_bootstrap = "bootstrap" in opts.uncertainty and cfg.estimator in BOOTSTRAPPED_ESTIMATORS
    if case_bootstrap and opts.bootstrap_stratify:
        strata_of(cfg, designs, opts.bootstrap_stratify)     # refused before the fit runs
    if "bootstrap" in opts.uncertainty and not case_bootstrap and \
            any(":t(" in e for e in problem.error_models):
        # the config check refuses it too; this catches uncertainty= and --bootstrap
        raise ConfigError(f"{cfg.source}, key 'estimator.uncertainty': the parametric "
                          "bootstrap draws normal residuals, found a Student-t residual "
                          f"({', '.join(e for e in problem.error_models if ':t(' in e)}); "
                          "use 'covariance' or 'profile', or a population estimator")
    if problem.survival is not None and "bootstrap" in opts.uncertainty and not case_bootstrap:
        # a parametric bootstrap redraws the longitudinal values only: the event data would
        # stay fixed and the hazard's intervals come out too narrow
        raise ConfigError(f"{cfg.source}, key 'estimator.uncertainty': 'bootstrap' is not "
                          "available with [survival] (the replicates would redraw the "
                          "longitudinal data but not the events); use 'covariance' or "
                          "'profile'")
    # population profiles (refits after the fit): their names checked before it runs
    from ._population_profile import PROFILED_ESTIMATORS, profile_fitted, profile_names

    profiled = profile_names(cfg)
    if "profile" not in opts.uncertainty or cfg.estimator not in PROFILED_ESTIMATORS:
        profiled = ()
    if nothing_estimated(problem):       # objective evaluation at the given values
        estimator = FixedEvaluation()
        notes.append(NOTHING_ESTIMATED)
        opts = opts.replace(uncertainty=("covariance",))
    # a given executor belongs to the caller: used, not shut down
    ctx = (contextlib.nullcontext(executor) if executor is not None
           else make_executor(jobs, scheduler))
    with ctx as ex:
        ep = EstimationProblem(problem=problem, designs=designs, options=opts, executor=ex,
                               name=cfg.name, source=cfg.source, progress=progress,
                               timings=timings)
        out = estimator(ep)
        if profiled and out.population is not None:
            t = time.perf_counter()
            profiles = {name: profile_fitted(cfg, name, out.population, designs,
                                             level=float(opts.confidence), executor=ex,
                                             progress=progress).to_dict()
                        for name in profiled}
            timings["profile"] = time.perf_counter() - t
            out = dataclasses.replace(out, population=dataclasses.replace(
                out.population, profiles=profiles))
        if case_bootstrap and out.population is not None:
            # subjects drawn with replacement and refitted (after the fit: it starts there)
            t = time.perf_counter()
            boot = bootstrap_fitted(cfg, out.population, designs,
                                    samples=int(opts.bootstrap_samples),
                                    level=float(opts.confidence), seed=int(opts.seed),
                                    stratify=opts.bootstrap_stratify, executor=ex,
                                    progress=progress)
            timings["bootstrap"] = time.perf_counter() - t
            out = dataclasses.replace(out, population=with_bootstrap(out.population, boot))
        if problem.anchor is not None:
            # an anchored offset is no estimate: its value per subject (the event time at
            # the subject's parameters) goes into the table that reports and sampling read
            out = dataclasses.replace(out, estimates=dataclasses.replace(
                out.estimates, theta=problem.with_anchor_values(designs,
                                                                out.estimates.theta)))
    timings["total"] = time.perf_counter() - t0
    provenance = _provenance(cfg, sha, opts, notes, ex_name=getattr(ex, "name",
                                                                     type(ex).__name__),
                             workers=_workers(ex), in_memory=data is not None)
    provenance["numbers_from"] = out.diagnostics.numbers_from
    diag = dataclasses.replace(out.diagnostics, work=Work.from_counters(ep.counters))
    return FitResult(
        name=cfg.name, kind=estimator.name, model=problem.model,
        subject_ids=tuple(d.id for d in designs), parameters=problem.parameters,
        observables=problem.observables, error_models=problem.error_models,
        solver=dict(problem.solver), confidence=float(opts.confidence),
        designs=list(designs), model_predictions=out.predictions,
        individual=IndividualPart(out.estimates, out.uncertainty, diag),
        population=out.population, timings=timings, provenance=provenance,
        conditions=tuple(problem.conditions), survival=problem.survival)


def _workers(ex):
    """Workers of an executor, where it says (progression's, the standard pools)."""
    n = getattr(ex, "workers", None) or getattr(ex, "_max_workers", None)
    return int(n) if isinstance(n, int) else None


def _provenance(cfg, sha, opts, notes, ex_name, workers, in_memory=False):
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    import scipy

    # lmfit's version without importing it (it imports matplotlib: ~0.5 s, more than a
    # population fit of Theoph)
    try:
        lmfit_version = _version("lmfit")
    except PackageNotFoundError:  # pragma: no cover - lmfit is a dependency
        import lmfit

        lmfit_version = lmfit.__version__

    from .. import __version__

    spec = getattr(cfg.model, "spec", None)
    return {
        "config_path": cfg.source,
        "config_text": cfg.text,
        "model_ref": cfg.model_ref,
        "model_text": getattr(spec, "text", "") or "",
        "model_fingerprint": getattr(spec, "fingerprint", ""),
        "data_path": (None if in_memory or not cfg.data.get("path")
                      else str(cfg.data["path"])),
        "data_sha256": sha,
        "data_sha256_of": "the fitted values (data given in memory)" if in_memory
        else "the data file",
        "seed": int(opts.seed),
        "options": opts.as_dict(),
        "solver": {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                   for k, v in cfg.solver.items()},
        "versions": {"progression": __version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "lmfit": lmfit_version,
                     "python": platform.python_version()},
        "executor": ex_name, "workers": workers,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "notes": list(notes),
    }
