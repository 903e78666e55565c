"""Maximum-likelihood estimation: per subject ("individual") and pooled.

:func:`fit` runs a config end to end (data, multi-start optimisation, covariance, optional
profiles and bootstrap) and returns a :class:`~progression.fit.result.FitResult`; nothing is
written until ``result.save(folder)``.

* **Individual**: each subject's free parameters are estimated separately. Subjects are cut
  into chunks of ``batch_size``; a chunk (all its subjects and starts) is optimised in lock
  step, one simulation per iteration for the whole chunk (:mod:`.optimize`). Chunks go to the
  executor (in-process, processes, Dask); the cut does not depend on the executor, so neither
  do the numbers.
* **Pooled**: shared parameters and every subject's free parameters in one least-squares
  problem (a stacked residual vector; ``Dfun`` assembled from each subject's sensitivities).

Multi-start: start 1 is the configured initial values, the others are drawn (seeded) uniformly
over the bounds on the estimation scale (``spread = "bounds"``) or normally around the initial
values (``spread = SD``); the best objective wins.
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EstimationFailed, FitError
from ..parallel import Progress, executor, map_items, report
from ._batched import polish as polish_rows
from .config import FitConfig, read_fit_config
from .fixed import NOTHING_ESTIMATED, evaluate_fixed, nothing_estimated
from .optimize import Counters, Task, run_tasks
from .problem import Design, Problem, designs_from_cohort
from .transforms import from_internal, internal_bounds, near_bound, to_internal
from .uncertainty import (
    conditional_start,
    covariance_from_info,
    identifiability_flags,
    percentile_interval,
    profile_grid,
    profile_interval,
    wald,
)

__all__ = ["fit", "read_data", "data_sha256", "numbers_from"]


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
    """SHA-256 of fitted data given in memory (ids, times, observables, values, censoring)."""
    h = hashlib.sha256()
    for d in designs:
        h.update(d.id.encode())
        for a in (d.time, d.obs, d.value, d.cens, d.limit):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        h.update(np.float64(d.offset_covariate).tobytes())
    return h.hexdigest()


# ============================================================================ starts


def starting_points(problem: Problem, cols, m: int, starts: int, spread, seed: int):
    """(m, starts, D) starting points on the estimation scale; start 0 is the initial values."""
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    x0 = to_internal(problem.values[cols], sc, lo, hi)
    lo_x, hi_x = internal_bounds(sc, lo, hi)
    X = np.repeat(x0[None, None, :], m, axis=0).repeat(starts, axis=1)
    if starts > 1:
        rng = np.random.default_rng(seed)
        u = rng.random((m, starts - 1, len(cols)))
        if spread == "bounds":
            # uniform on the estimation scale; logit: uniform over the natural range
            nat = lo + u * (hi - lo)
            fin = np.isfinite(lo_x) & np.isfinite(hi_x)
            with np.errstate(invalid="ignore"):     # inf - inf where a bound is infinite
                draw = np.where(fin, lo_x + u * (hi_x - lo_x), to_internal(nat, sc, lo, hi))
            bad = ~np.isfinite(draw)
            draw[bad] = np.broadcast_to(x0, draw.shape)[bad]
        else:
            z = np.sqrt(2.0) * _erfinv(2 * u - 1)
            draw = np.clip(x0 + float(spread) * z, lo_x, hi_x)
        X[:, 1:, :] = draw
    return X


def _erfinv(x):
    from scipy.special import erfinv

    return erfinv(np.clip(x, -1 + 1e-12, 1 - 1e-12))


# ============================================================================ workers


def _groups(tasks, size):
    for lo in range(0, len(tasks), size):
        yield tasks[lo:lo + size]


#: Most rows simulated together in one lock-step group (memory bound; the cost of a batched
#: simulation grows much more slowly than its number of rows).
MAX_ROWS = 1000


def _run_grouped(problem, designs, tasks, cols, options, counters, on_done=None):
    size = max(MAX_ROWS, int(options.get("batch_size", 100)) * int(options.get("starts", 1)))
    out = []
    done0 = [0]
    for group in _groups(tasks, size):
        base = done0[0]
        cb = (lambda n, base=base: on_done(base + n)) if on_done else None
        out.extend(run_tasks(problem, designs, group, cols, options, counters=counters,
                             on_done=cb))
        done0[0] += len(group)
    return out


def _individual_chunk(problem: Problem, designs, X0, options):
    """Fit the subjects of one chunk (all starts); returns arrays for the chunk."""
    start = time.perf_counter()
    cols = problem.subject_cols
    m_c, S, D = X0.shape
    one = [np.zeros(1, dtype=int)] * D
    tasks = [Task(np.array([i]), problem.values[None].copy(), X0[i, s], cols, one, tag=(i, s))
             for i in range(m_c) for s in range(S)]
    counters = Counters()
    res = _run_grouped(problem, designs, tasks, cols, options, counters,
                       on_done=lambda n: report(n / S))      # subjects, for the progress bar
    m2ll = np.array([r.m2ll for r in res]).reshape(m_c, S)
    key = np.where(np.isfinite(m2ll), m2ll, np.inf)
    best = np.argmin(key, axis=1)
    pick = [res[i * S + best[i]] for i in range(m_c)]
    theta = np.vstack([r.theta for r in pick])
    x = np.vstack([r.x for r in pick])
    # the objective of the path the optimiser ran on, at its estimate (the reference of the
    # profiles, which run on that path too)
    m2ll_path = np.array([r.m2ll for r in pick])
    polish = np.zeros(m_c, dtype=int)
    # Evaluated again in one batch of the winners only: the starts of a subject never share
    # this evaluation, so the reported objective is the winner's own.
    if _refines(problem):
        # the final iterations on the exact path; its last evaluation is the report
        theta, x, ev, polish = polish_rows(problem.exact_path(), designs, theta, x, cols,
                                           steps=POLISH_STEPS, ftol=POLISH_FTOL,
                                           counters=counters)
    else:
        ev = problem.evaluate(designs, np.arange(m_c), theta, cols, want_jac=False,
                              want_info=True, want_predictions=True)
    success = np.array([r.success for r in pick]) & ~ev.failed
    return {
        "theta": theta, "x": x, "m2ll": ev.m2ll, "info": ev.info,
        "m2ll_path": m2ll_path, "polish_evaluations": polish,
        "predictions": ev.predictions, "nobs": ev.nobs,
        "success": success,
        "message": [r.message for r in pick],
        "failure": _failure_reasons(pick, ev),
        "before_zero": ev.before_zero,
        "nfev": np.array([r.nfev for r in pick]),
        "starts_m2ll": m2ll, "best_start": best,
        "failed_evaluations": np.array([r.failed_evaluations for r in pick]),
        "counters": counters, "seconds": time.perf_counter() - start,
    }


#: Gauss-Newton steps of the polish on the exact path: from the grid-path estimate one or two
#: bring a subject to the exact path's optimum; a third is rarely taken.
POLISH_STEPS = 3
#: The polish stops when a step predicts a reduction of the sum of squares below this share of
#: it (tight, because the exact path has no interpolation error to chase), and its pooled
#: variant (lmfit) may make this many evaluations.
POLISH_FTOL = 1e-10
POLISH_NFEV = 5


def _refines(problem) -> bool:
    """True when grid-path estimates are to be polished on the exact path (``[solver] refine =
    "exact"``, the default, and the fit does not already run on it)."""
    return problem.solver.get("refine", "exact") == "exact" and not problem.exact


def numbers_from(problem) -> str:
    """Which path produced the reported estimates, objective and covariance, in words."""
    if problem.exact:
        return "estimates, objective and covariance: exact outputs, forward sensitivities"
    if _refines(problem):
        return (f"estimates optimised on {problem.path_name()}, then polished on the exact "
                "path; objective and covariance: exact outputs, forward sensitivities "
                "([solver] refine = \"exact\")")
    return (f"estimates, objective and covariance: {problem.path_name()} ([solver] refine = "
            "\"none\": not re-evaluated on the exact path)")


def _failure_reasons(results, ev) -> list[str]:
    """Per row: why it failed ("" for a converged row), from the optimiser's result and the
    evaluation at the chosen point."""
    out = []
    for r, failed, msg in zip(results, ev.failed, ev.messages, strict=True):
        if failed and "simulation failed" in r.message:
            out.append(r.message)
        elif failed:
            out.append(f"the simulation failed at the estimate: {msg}")
        elif not r.success:
            out.append(f"the optimiser did not converge: {r.message}")
        else:
            out.append("")
    return out


def _check_failures(cfg, opts, designs, core) -> None:
    """Refuse a fit that failed: no subject with a finite objective, or more subjects that did
    not converge than ``[fit] max_failed_share`` allows (EstimationFailed, CLI exit 1)."""
    m = len(designs)
    failure = core["failure"]
    bad = [i for i in range(m) if failure[i]]
    bad.sort(key=lambda i: failure[i].startswith("the pooled fit failed because"))
    finite = np.isfinite(np.asarray(core["m2ll"], dtype=float))
    share = float(opts.get("max_failed_share", 0.5))
    if not bad or (finite.any() and len(bad) / m <= share):
        return
    if not finite.any():
        why = "no subject has a finite objective (every simulation failed)"
    elif len(bad) == m:
        why = "no subject converged"
    else:
        why = (f"more than [fit] max_failed_share = {share:g} of the subjects failed "
               f"({len(bad)}/{m})")
    problems = [f"subject '{designs[i].id}': {failure[i]}" for i in bad[:5]]
    if len(bad) > 5:
        problems.append(f"... and {len(bad) - 5} more subject(s)")
    head = (f"{cfg.source}: fit '{cfg.name}' failed: {why}; {len(bad)}/{m} subjects failed; "
            "nothing written")
    if len(problems) == 1:
        raise EstimationFailed(f"{head}: {problems[0]}")
    raise EstimationFailed(f"{head}:", problems)


def _profile_tasks(problem, cols, theta_hat, x_hat, grids, covs):
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    lo_x, hi_x = internal_bounds(sc, lo, hi)
    tasks = []
    for i in range(theta_hat.shape[0]):
        for j in range(len(cols)):
            keep = np.array([k for k in range(len(cols)) if k != j], dtype=int)
            for g, xv in enumerate(grids[i, j]):
                th = theta_hat[i:i + 1].copy()
                th[0, cols[j]] = from_internal(np.array([xv]), sc[j:j + 1], lo[j:j + 1],
                                               hi[j:j + 1])[0]
                x0 = conditional_start(x_hat[i], covs[i], j, xv, lo_x, hi_x)
                tasks.append(Task(np.array([i]), th, x0, cols[keep],
                                  [np.zeros(1, dtype=int)] * keep.size, tag=(i, j, g)))
    return tasks


def _profile_chunk(problem: Problem, designs, theta_hat, x_hat, grids, covs, options):
    """Profiles of every estimated parameter of each subject of a chunk."""
    cols = problem.subject_cols
    counters = Counters()
    tasks = _profile_tasks(problem, cols, theta_hat, x_hat, grids, covs)
    per = len(tasks) / max(1, theta_hat.shape[0])
    res = _run_grouped(problem, designs, tasks, cols, options, counters,
                       on_done=lambda n: report(n / per))    # subjects, for the progress bar
    out = np.full(grids.shape, np.nan)
    for r in res:
        i, j, g = r.tag
        out[i, j, g] = r.m2ll
    return {"m2ll": out, "counters": counters}


def _simulate_replicates(problem: Problem, design: Design, pred, theta, rng, B):
    """B replicate value vectors drawn from the error model at the predictions."""
    oi = design.obs
    code = problem.codes[oi]
    a = np.where(problem.a_index[oi] >= 0, theta[np.maximum(problem.a_index[oi], 0)], 0.0)
    b = np.where(problem.b_index[oi] >= 0, theta[np.maximum(problem.b_index[oi], 0)], 0.0)
    f = pred
    eps = rng.standard_normal((B, f.size))
    sig = np.where(code == 1, b * np.abs(f), np.where(code == 2, np.sqrt(a * a + b * b * f * f),
                                                       a))
    y = np.where(code == 3, f * np.exp(sig * eps), f + sig * eps)
    reps = []
    for k in range(B):
        cens = design.cens.copy()
        vals = y[k].copy()
        lim = design.limit
        below = (design.cens == 1) & (vals < lim)
        above = (design.cens == -1) & (vals > lim)
        cens = np.where(below, 1, np.where(above, -1, 0)).astype(int)
        vals = np.where(cens != 0, lim, vals)
        limit = np.where(cens != 0, lim, np.nan)
        reps.append(Design(design.id, design.time, design.obs, vals, cens, limit,
                           design.offset_covariate))
    return reps


def _bootstrap_chunk(problem: Problem, designs, theta_hat, x_hat, preds, seeds, B, options):
    """Parametric bootstrap of each subject of a chunk: B refits from the estimate."""
    cols = problem.subject_cols
    reps, tasks = [], []
    for i, d in enumerate(designs):
        rng = np.random.default_rng(seeds[i])
        for k, rd in enumerate(_simulate_replicates(problem, d, preds[i], theta_hat[i], rng, B)):
            tasks.append(Task(np.array([len(reps)]), theta_hat[i:i + 1].copy(), x_hat[i], cols,
                              [np.zeros(1, dtype=int)] * cols.size, tag=(i, k)))
            reps.append(rd)
    counters = Counters()
    res = _run_grouped(problem, reps, tasks, cols, options, counters,
                       on_done=lambda n: report(n / max(1, B)))   # subjects, for the progress bar
    est = np.full((len(designs), B, cols.size), np.nan)
    for r in res:
        i, k = r.tag
        if np.isfinite(r.m2ll):
            est[i, k] = r.theta[0, cols]
    return {"estimates": est, "counters": counters}


# ============================================================================ fit


def fit(config, *, data=None, jobs: int | None = None, scheduler: str | None = None,
        uncertainty=None, progress: bool = False):
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

    Returns
    -------
    FitResult
    """
    from ..data import Cohort
    from .result import FitResult

    t0 = time.perf_counter()
    cfg = config if isinstance(config, FitConfig) else read_fit_config(config)
    timings = {}
    notes: list[str] = []
    sha = None
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
    opts = dict(cfg.options)
    if uncertainty is not None:
        opts["uncertainty"] = ("covariance",) + tuple(u for u in ("profile", "bootstrap")
                                                      if u in uncertainty)
    counters = Counters()
    with executor(jobs, scheduler) as ex:
        t1 = time.perf_counter()
        if nothing_estimated(problem):       # objective evaluation at the given values
            core, problem = evaluate_fixed(problem, designs)
            notes.append(NOTHING_ESTIMATED)
            opts["uncertainty"] = ("covariance",)
        elif cfg.estimator == "individual":
            core = _fit_individual(problem, designs, opts, ex, counters, progress, cfg.name)
        else:
            core = _fit_pooled(problem, designs, opts, counters, progress, cfg.name)
        timings["estimation"] = time.perf_counter() - t1
        _check_failures(cfg, opts, designs, core)
        unc = _uncertainty(problem, designs, core, opts, core["kind"], ex, counters,
                           timings, progress, cfg.name)
    timings["total"] = time.perf_counter() - t0
    provenance = _provenance(cfg, sha, opts, notes, ex_name=ex.name, workers=ex.workers,
                             in_memory=data is not None)
    provenance["numbers_from"] = numbers_from(problem)
    result = FitResult.from_parts(cfg, problem, designs, core, unc, counters, timings,
                                  provenance)
    return result


def _fit_individual(problem, designs, opts, ex, counters, progress, name):
    cols = problem.subject_cols
    if cols.size == 0:
        raise FitError("an individual fit needs at least one parameter with "
                       "estimate = \"subject\"")
    m = len(designs)
    S = int(opts["starts"])
    X0 = starting_points(problem, cols, m, S, opts["spread"], int(opts["seed"]))
    size = int(opts["batch_size"])
    chunks = [(problem, designs[lo:lo + size], X0[lo:lo + size], opts)
              for lo in range(0, m, size)]
    parts = _map_subject_chunks(ex, _individual_chunk, chunks, f"fit {name}", m, "theta",
                                progress)
    core = {"kind": "individual", "cols": cols}
    for key in ("theta", "x", "m2ll", "success", "nfev", "starts_m2ll", "best_start",
                "failed_evaluations", "nobs", "before_zero", "m2ll_path",
                "polish_evaluations"):
        core[key] = np.concatenate([p[key] for p in parts])
    core["info"] = np.concatenate([p["info"] for p in parts])
    core["message"] = sum((p["message"] for p in parts), [])
    core["failure"] = sum((p["failure"] for p in parts), [])
    core["predictions"] = sum((p["predictions"] for p in parts), [])
    core["chunk_seconds"] = [p["seconds"] for p in parts]
    for p in parts:
        counters.merge(p["counters"])
    return core


def _pooled_layout(problem, m):
    shared, subj = problem.shared_cols, problem.subject_cols
    x_cols, x_rows = [], []
    for c in shared:
        x_cols.append(c)
        x_rows.append(np.arange(m))
    for i in range(m):
        for c in subj:
            x_cols.append(c)
            x_rows.append(np.array([i]))
    return np.array(x_cols, dtype=int), x_rows


def _fit_pooled(problem, designs, opts, counters, progress, name):
    m = len(designs)
    shared, subj = problem.shared_cols, problem.subject_cols
    cols = np.concatenate([shared, subj]).astype(int)
    x_cols, x_rows = _pooled_layout(problem, m)
    S = int(opts["starts"])
    Xs = starting_points(problem, shared, 1, S, opts["spread"], int(opts["seed"]))[0]
    Xi = starting_points(problem, subj, m, S, opts["spread"], int(opts["seed"]) + 1)
    tasks = []
    for s in range(S):
        x0 = np.concatenate([Xs[s], Xi[:, s, :].ravel()])
        tasks.append(Task(np.arange(m), np.repeat(problem.values[None], m, axis=0), x0,
                          x_cols, x_rows, tag=(s,)))
    bar = Progress(f"fit {name} (pooled)", S, unit="starts", enabled=progress)
    res = run_tasks(problem, designs, tasks, cols, opts, counters=counters,
                    on_done=bar.update)
    bar.close()
    m2ll = np.array([r.m2ll for r in res])
    best = int(np.argmin(np.where(np.isfinite(m2ll), m2ll, np.inf)))
    r = res[best]
    theta, x_pooled = r.theta, r.x
    final = problem
    if _refines(problem) and np.isfinite(r.m2ll):
        final = problem.exact_path()
        task = Task(np.arange(m), r.theta.copy(), r.x, x_cols, x_rows, tag=(best,))
        opts_p = dict(opts, max_nfev=POLISH_NFEV, ftol=POLISH_FTOL)
        polished = run_tasks(final, designs, [task], cols, opts_p, counters=counters)[0]
        if np.isfinite(polished.m2ll):
            theta, x_pooled = polished.theta, polished.x
    ev = final.evaluate(designs, np.arange(m), theta, cols, want_jac=False, want_info=True,
                        want_predictions=True)
    ok = bool(r.success) and not ev.failed.any()
    if ok:
        failure = [""] * m
    elif ev.failed.any():
        # the joint estimate is unusable for everyone; name the subjects whose own simulation
        # failed (they are listed first in the error)
        own = [designs[i].id for i in np.nonzero(ev.failed)[0]]
        failure = [f"the simulation failed at every point tried (pooled fit): "
                   f"{ev.messages[i]}" if ev.failed[i] else
                   f"the pooled fit failed because the simulation of {_few(own)} failed"
                   for i in range(m)]
    else:
        failure = [f"the pooled fit did not converge: {r.message}"] * m
    return {"kind": "pooled", "failure": failure, "before_zero": ev.before_zero,
            "cols": cols, "theta": theta, "x_pooled": x_pooled, "x_cols": x_cols,
            "m2ll_path_total": r.m2ll,
            "x_rows": x_rows, "m2ll": ev.m2ll, "info": ev.info,
            "predictions": ev.predictions, "nobs": ev.nobs,
            "success": np.full(m, ok), "message": [r.message] * m,
            "nfev": np.full(m, r.nfev), "starts_m2ll": np.repeat(m2ll[None], m, axis=0),
            "best_start": np.full(m, best), "failed_evaluations": np.full(m,
                                                                          r.failed_evaluations)}


# ============================================================================ uncertainty


def _uncertainty(problem, designs, core, opts, kind, ex, counters, timings, progress, name):
    t = time.perf_counter()
    conf = float(opts["confidence"])
    m, Q = core["theta"].shape
    unc = {"se": np.full((m, Q), np.nan), "intervals": {}, "open": {}, "warnings": [],
           "blocks": [], "x_cols": None, "x_rows": None, "x_hat": None,
           "cov_failed": np.zeros(m, dtype=bool), "profiles": None, "bootstrap": None}
    names = problem.names
    if kind == "individual":
        cols = core["cols"]
        D = cols.size
        x_cols, x_rows, x_hat, blocks = [], [], [], []
        ci = np.full((m, Q, 2), np.nan)
        corr_all = np.full((m, D, D), np.nan)
        sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
        failed_ids, undetermined = [], {}
        for i in range(m):
            cov, msg = covariance_from_info(core["info"][i], [names[c] for c in cols])
            if msg:
                unc["cov_failed"][i] = True
                failed_ids.append(designs[i].id)
                for j, c in enumerate(cols):
                    if not np.isfinite(cov[j, j]):
                        undetermined[names[c]] = undetermined.get(names[c], 0) + 1
            se_x = np.sqrt(np.maximum(np.diag(cov), 0.0))
            se_x[~np.isfinite(np.diag(cov))] = np.nan
            se, a, b = wald(core["x"][i], se_x, sc, lo, hi, conf)
            unc["se"][i, cols] = se
            ci[i, cols, 0], ci[i, cols, 1] = a, b
            with np.errstate(invalid="ignore", divide="ignore"):
                corr_all[i] = cov / np.outer(se_x, se_x)
            idx = np.arange(len(x_cols), len(x_cols) + D)
            blocks.append((idx, cov))
            x_cols += list(cols)
            x_rows += [np.array([i])] * D
            x_hat += list(core["x"][i])
        unc["intervals"]["covariance"] = ci
        unc["correlation"] = corr_all
        unc.update(x_cols=np.array(x_cols, dtype=int), x_rows=x_rows,
                   x_hat=np.array(x_hat), blocks=blocks)
        if failed_ids:
            which = ", ".join(f"{k} in {v}" for k, v in undetermined.items())
            unc["warnings"].append(
                f"covariance step failed for {len(failed_ids)}/{m} subjects "
                f"({_few(failed_ids)}): information matrix singular or not finite; "
                f"undetermined: {which or 'all'}; those standard errors are NaN")
        _flag_individual(problem, core, unc, cols, conf, designs)
    else:
        _pooled_covariance(problem, core, unc, conf, designs)
    timings["covariance"] = time.perf_counter() - t
    methods = opts["uncertainty"]
    if "profile" in methods:
        t = time.perf_counter()
        _profiles(problem, designs, core, unc, opts, kind, ex, counters, progress, name)
        timings["profile"] = time.perf_counter() - t
    if "bootstrap" in methods:
        t = time.perf_counter()
        _bootstrap(problem, designs, core, unc, opts, kind, ex, counters, progress, name)
        timings["bootstrap"] = time.perf_counter() - t
    return unc


def _few(items, n=5):
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _flag_individual(problem, core, unc, cols, conf, designs):
    names = [problem.names[c] for c in cols]
    m = core["theta"].shape[0]
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    # measured on the estimation scale: 1e-6 of [1e-5, 1e5] on the natural scale is 0.1
    at_bound = near_bound(core["theta"][:, cols], sc, lo, hi)
    for j in range(cols.size):
        n = int(at_bound[:, j].sum())
        if n:
            unc["warnings"].append(f"{names[j]}: estimate at a bound in {n}/{m} subjects "
                                   f"([{lo[j]:g}, {hi[j]:g}]); its uncertainty there is "
                                   "one-sided")
    huge_count = np.zeros(cols.size, dtype=int)
    corr_pairs: dict[tuple, int] = {}
    for i in range(m):
        se_x = np.sqrt(np.maximum(np.diag(unc["blocks"][i][1]), 0.0))
        se_x[~np.isfinite(np.diag(unc["blocks"][i][1]))] = np.nan
        huge, partners = identifiability_flags(core["x"][i], se_x, unc["correlation"][i], sc,
                                               lo, hi, conf)
        huge_count += huge
        for j, ps in enumerate(partners):
            for k in ps:
                if j < k:
                    corr_pairs[(j, k)] = corr_pairs.get((j, k), 0) + 1
    unc["huge_se"] = huge_count
    unc["corr_pairs"] = {f"{names[j]}~{names[k]}": n for (j, k), n in corr_pairs.items()}
    for j, n in enumerate(huge_count):
        if n:
            unc["warnings"].append(
                f"{names[j]}: practically non-identifiable in {n}/{m} subjects (Wald "
                f"{100 * conf:g}% interval wider than its bounds, or no standard error)")
    for (j, k), n in sorted(corr_pairs.items()):
        unc["warnings"].append(f"{names[j]} and {names[k]}: |correlation| > 0.99 in {n}/{m} "
                               f"subjects (only a combination of them is determined)")


def _pooled_covariance(problem, core, unc, conf, designs):
    m, Q = core["theta"].shape
    cols = core["cols"]
    x_cols, x_rows = core["x_cols"], core["x_rows"]
    K = x_cols.size
    pos = {c: k for k, c in enumerate(cols)}
    info = np.zeros((K, K))
    # entries of each subject: shared ones and its own
    ns = problem.shared_cols.size
    D_s = problem.subject_cols.size
    for i in range(m):
        I_i = core["info"][i]
        ent = list(range(ns)) + list(range(ns + i * D_s, ns + (i + 1) * D_s))
        loc = [pos[x_cols[e]] for e in ent]
        info[np.ix_(ent, ent)] += I_i[np.ix_(loc, loc)]
    names = [problem.names[c] if x_rows[k].size > 1 else
             f"{problem.names[c]}[{designs[int(x_rows[k][0])].id}]"
             for k, c in enumerate(x_cols)]
    cov, msg = covariance_from_info(info, names)
    if msg:
        unc["cov_failed"][:] = True
        unc["warnings"].append(f"covariance step failed: {msg}; those standard errors are NaN")
    se_x = np.sqrt(np.maximum(np.diag(cov), 0.0))
    se_x[~np.isfinite(np.diag(cov))] = np.nan
    x = core["x_pooled"]
    sc, lo, hi = problem.scale[x_cols], problem.lower[x_cols], problem.upper[x_cols]
    se, a, b = wald(x, se_x, sc, lo, hi, conf)
    ci = np.full((m, Q, 2), np.nan)
    for k, c in enumerate(x_cols):
        unc["se"][x_rows[k], c] = se[k]
        ci[x_rows[k], c, 0], ci[x_rows[k], c, 1] = a[k], b[k]
    unc["intervals"]["covariance"] = ci
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(se_x, se_x)
    unc["correlation"] = corr
    unc.update(x_cols=x_cols, x_rows=x_rows, x_hat=x, blocks=[(np.arange(K), cov)])
    huge, partners = identifiability_flags(x, se_x, corr, sc, lo, hi, conf)
    flagged_subject = {}
    for k in range(K):
        if x_rows[k].size > 1:
            if huge[k]:
                unc["warnings"].append(f"{names[k]}: practically non-identifiable (Wald "
                                       f"interval wider than its bounds, or no standard error)")
            for j in partners[k]:
                if j > k or x_rows[j].size == 1:
                    unc["warnings"].append(f"{names[k]} and {names[j]}: |correlation| > 0.99")
        elif huge[k]:
            base = problem.names[x_cols[k]]
            flagged_subject[base] = flagged_subject.get(base, 0) + 1
    for base, n in flagged_subject.items():
        unc["warnings"].append(f"{base}: practically non-identifiable in {n}/{m} subjects")
    unc["huge_se"] = huge


def _profiles(problem, designs, core, unc, opts, kind, ex, counters, progress, name):
    conf = float(opts["confidence"])
    n = int(opts["profile_points"])
    m, Q = core["theta"].shape
    ci = np.full((m, Q, 2), np.nan)
    open_ = np.zeros((m, Q, 2), dtype=bool)
    if kind == "individual":
        cols = core["cols"]
        D = cols.size
        sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
        grids = np.zeros((m, D, n))
        for i in range(m):
            se_x = np.sqrt(np.abs(np.diag(unc["blocks"][i][1])))
            for j in range(D):
                grids[i, j] = profile_grid(core["x"][i, j], se_x[j], sc[j:j + 1], lo[j:j + 1],
                                           hi[j:j + 1], n)
        size = int(opts["batch_size"])
        covs = [unc["blocks"][i][1] for i in range(m)]
        chunks = [(problem, designs[a:a + size], core["theta"][a:a + size],
                   core["x"][a:a + size], grids[a:a + size], covs[a:a + size], opts)
                  for a in range(0, m, size)]
        parts = _map_subject_chunks(ex, _profile_chunk, chunks, f"profiles {name}", m, "m2ll",
                                    progress)
        prof = np.concatenate([p["m2ll"] for p in parts])
        for p in parts:
            counters.merge(p["counters"])
        lo_x, hi_x = internal_bounds(sc, lo, hi)
        for i in range(m):
            for j in range(D):
                a, b, oa, ob = profile_interval(core["x"][i, j], core["m2ll_path"][i],
                                                grids[i, j],
                                                prof[i, j], conf, lo_x[j], hi_x[j])
                ends = from_internal(np.array([a, b]), sc[j], lo[j], hi[j])
                ci[i, cols[j]] = ends
                open_[i, cols[j]] = (oa, ob)
        values = from_internal(grids, sc[None, :, None], lo[None, :, None], hi[None, :, None])
        unc["profiles"] = {"cols": cols, "values": values, "m2ll": prof}
        flat = open_[:, cols].any(axis=2)
        for j in range(D):
            nflat = int(flat[:, j].sum())
            if nflat:
                unc["warnings"].append(
                    f"{problem.names[cols[j]]}: flat profile likelihood (the {100 * conf:g}% "
                    f"interval reaches a bound or the edge of the profile) in {nflat}/{m} "
                    "subjects: practically non-identifiable there")
    else:
        shared = problem.shared_cols
        if shared.size == 0:
            unc["warnings"].append("profiles of a pooled fit are computed for shared "
                                   "parameters only; there are none")
            return
        x_cols, x_rows = core["x_cols"], core["x_rows"]
        x_hat = core["x_pooled"]
        cols = core["cols"]
        tasks, grids = [], []
        cov_all = unc["blocks"][0][1]
        lo_all, hi_all = internal_bounds(problem.scale[x_cols], problem.lower[x_cols],
                                         problem.upper[x_cols])
        for j, c in enumerate(shared):
            se_x = np.sqrt(abs(unc["blocks"][0][1][j, j]))
            g = profile_grid(x_hat[j], se_x, problem.scale[c:c + 1], problem.lower[c:c + 1],
                             problem.upper[c:c + 1], n)
            grids.append(g)
            keep = np.array([k for k in range(x_cols.size) if k != j], dtype=int)
            for gi, xv in enumerate(g):
                th = core["theta"].copy()
                th[:, c] = from_internal(np.array([xv]), problem.scale[c:c + 1],
                                         problem.lower[c:c + 1], problem.upper[c:c + 1])[0]
                x0 = conditional_start(x_hat, cov_all, j, xv, lo_all, hi_all)
                tasks.append(Task(np.arange(m), th, x0, x_cols[keep],
                                  [x_rows[k] for k in keep], tag=(j, gi)))
        bar = Progress(f"profiles {name}", len(tasks), unit="points", enabled=progress)
        res = run_tasks(problem, designs, tasks, cols, opts, counters=counters,
                        on_done=bar.update)
        bar.close()
        prof = np.full((shared.size, n), np.nan)
        for r in res:
            prof[r.tag] = r.m2ll
        # the minimum on the path the profiles run on (the grid path when polished)
        total = float(core["m2ll_path_total"])
        grids = np.array(grids)
        for j, c in enumerate(shared):
            sc, lo, hi = problem.scale[c:c + 1], problem.lower[c:c + 1], problem.upper[c:c + 1]
            lo_x, hi_x = internal_bounds(sc, lo, hi)
            a, b, oa, ob = profile_interval(x_hat[j], total, grids[j], prof[j], conf, lo_x[0],
                                            hi_x[0])
            ends = from_internal(np.array([a, b]), sc[0], lo[0], hi[0])
            ci[:, c] = ends
            open_[:, c] = (oa, ob)
            if oa or ob:
                unc["warnings"].append(f"{problem.names[c]}: flat profile likelihood (interval "
                                       "open on one side): practically non-identifiable")
        values = np.array([from_internal(grids[j], problem.scale[c], problem.lower[c],
                                         problem.upper[c]) for j, c in enumerate(shared)])
        unc["profiles"] = {"cols": shared, "values": values[None], "m2ll": prof[None],
                           "pooled": True}
    unc["intervals"]["profile"] = ci
    unc["open"]["profile"] = open_


def _bootstrap(problem, designs, core, unc, opts, kind, ex, counters, progress, name):
    conf = float(opts["confidence"])
    B = int(opts["bootstrap_samples"])
    m, Q = core["theta"].shape
    seed = int(opts["seed"])
    ci = np.full((m, Q, 2), np.nan)
    if kind == "individual":
        cols = core["cols"]
        size = int(opts["batch_size"])
        seeds = [[seed, 7, i] for i in range(m)]
        chunks = [(problem, designs[a:a + size], core["theta"][a:a + size],
                   core["x"][a:a + size], core["predictions"][a:a + size],
                   seeds[a:a + size], B, opts) for a in range(0, m, size)]
        parts = _map_subject_chunks(ex, _bootstrap_chunk, chunks, f"bootstrap {name}", m,
                                    "estimates", progress)
        est = np.concatenate([p["estimates"] for p in parts])      # (m, B, D)
        for p in parts:
            counters.merge(p["counters"])
        a, b = percentile_interval(np.moveaxis(est, 1, 2), conf)   # (m, D)
        ci[:, cols, 0], ci[:, cols, 1] = a, b
        unc["bootstrap"] = {"cols": cols, "estimates": est}
        failed = int(np.isnan(est[:, :, 0]).sum())
    else:
        cols = core["cols"]
        x_cols, x_rows = core["x_cols"], core["x_rows"]
        rng = np.random.default_rng([seed, 7])
        reps_all = list(designs)
        tasks = []
        per_subject = [_simulate_replicates(problem, d, core["predictions"][i],
                                            core["theta"][i], rng, B)
                       for i, d in enumerate(designs)]
        for k in range(B):
            idx = np.arange(len(reps_all), len(reps_all) + m)
            reps_all += [per_subject[i][k] for i in range(m)]
            tasks.append(Task(idx, core["theta"].copy(), core["x_pooled"], x_cols, x_rows,
                              tag=(k,)))
        bar = Progress(f"bootstrap {name}", B, unit="replicates", enabled=progress)
        res = run_tasks(problem, reps_all, tasks, cols, opts, counters=counters,
                        on_done=bar.update)
        bar.close()
        est = np.full((m, B, Q), np.nan)
        for r in res:
            if np.isfinite(r.m2ll):
                est[:, r.tag[0], :] = r.theta
        a, b = percentile_interval(np.moveaxis(est, 1, 2), conf)   # (m, Q)
        ci[:, cols, 0], ci[:, cols, 1] = a[:, cols], b[:, cols]
        unc["bootstrap"] = {"cols": cols, "estimates": est[:, :, cols]}
        failed = int(np.isnan(est[0, :, 0]).sum())
    if failed:
        unc["warnings"].append(f"bootstrap: {failed} refits failed and were left out")
    unc["intervals"]["bootstrap"] = ci


def _provenance(cfg, sha, opts, notes, ex_name, workers, in_memory=False):
    import lmfit
    import scipy

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
        "seed": int(opts["seed"]),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
        "solver": {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                   for k, v in cfg.solver.items()},
        "versions": {"progression": __version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "lmfit": lmfit.__version__,
                     "python": platform.python_version()},
        "executor": ex_name, "workers": workers,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "notes": list(notes),
    }


def _map_subject_chunks(ex, func, chunks, label, m, key, progress):
    """Run ``func`` over chunks of subjects, counting subjects done by ``out[key]`` rows."""
    bar = Progress(label, m, enabled=progress)
    done = [0]

    def on_chunk(_, out):
        done[0] += out[key].shape[0]
        bar.update(done[0])

    parts = map_items(ex, func, chunks, progress=on_chunk, partial=bar.partial)
    bar.close()
    return parts
