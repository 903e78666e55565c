"""Nonparametric (case) bootstrap of a population fit (PsN's ``bootstrap``, Monolix/Rsmlx's
``bootmlx``): ``[estimator] uncertainty = ["covariance", "bootstrap"]`` with a population
estimator.

Each replicate draws N subjects with replacement from the N fitted ones (each drawn subject a
new subject: its own random effects, its doses, covariates and survival record as they are)
and refits them with the config's estimator, starting from the fit's estimates (typical
values, Omega with its blocks, covariate coefficients, residual parameters), without a
covariance step. The spread of the replicates' estimates is the sampling distribution of the
estimator under the data's own distribution of subjects: the percentile interval needs no
normal approximation on any scale, no correct residual or random-effect distribution and no
positive definite R matrix (a variance the data barely see, a Student-t residual, a joint
[survival] part). It costs a full estimation per replicate; the replicates run on the fit's
executor (``--jobs``, a Dask scheduler) when it has workers.

Replicate ``b`` draws its subjects from ``numpy.random.default_rng([seed, b])`` and, for SAEM,
runs its chains with seed ``seed + 1 + b``: the same seed gives the same replicates on any
executor. A replicate whose estimation fails is counted and left out.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, EstimationFailed, FitError

__all__ = ["PopulationBootstrap", "bootstrap_fitted", "resample"]

#: Estimators whose fits are bootstrapped by resampling subjects.
BOOTSTRAPPED_ESTIMATORS = ("focei", "foce", "fo", "laplace", "saem")
#: Fewest successful replicates for a percentile interval.
MIN_REPLICATES = 2


@dataclass(frozen=True)
class PopulationBootstrap:
    """The replicates of a case bootstrap (picklable; ``to_dict``/``from_dict`` for fit.json).

    Attributes
    ----------
    names : tuple of str (K,)
        The population parameters, named as the parameter table and
        :meth:`PopulationPart.intervals` name them: a typical value's parameter name,
        ``"omega^2 NAME"``, ``"omega NAME,OTHER"`` (a covariance inside an Omega block), the
        residual parameter (``"OBS.a"``), the covariate coefficient (``"P~COV"``).
    estimates : ndarray (K,)
        The fit's estimates, natural scales.
    samples : ndarray (B, K)
        Each replicate's estimates, natural scales; a failed replicate's row is NaN.
    converged : ndarray of bool (B,)
        Whether each replicate's estimation reported convergence.
    seed : int
    level : float
        Coverage of :meth:`intervals` by default.
    estimator : str
    seconds : float
        Wall time of all replicates.
    stratify : str
        The covariate the subjects were drawn within ("": none).
    """

    names: tuple
    estimates: np.ndarray
    samples: np.ndarray
    converged: np.ndarray
    seed: int
    level: float
    estimator: str
    seconds: float = math.nan
    stratify: str = ""

    @property
    def n_failed(self) -> int:
        """Replicates whose estimation failed (left out)."""
        return int(np.sum(~np.all(np.isfinite(self.samples), axis=1)))

    def _ok(self) -> np.ndarray:
        return self.samples[np.all(np.isfinite(self.samples), axis=1)]

    def intervals(self, level: float | None = None) -> dict:
        """Percentile intervals ``{name: (lo, hi)}`` at ``level`` (default :attr:`level`):
        the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the successful
        replicates; NaN with fewer than :data:`MIN_REPLICATES` of them."""
        level = self.level if level is None else float(level)
        if not 0.0 < level < 1.0:
            raise ValueError(f"level: expected a coverage in (0, 1), found {level!r}")
        ok = self._ok()
        if ok.shape[0] < MIN_REPLICATES:
            return {k: (math.nan, math.nan) for k in self.names}
        q = np.quantile(ok, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
        return {k: (float(q[0, j]), float(q[1, j])) for j, k in enumerate(self.names)}

    def standard_errors(self) -> dict:
        """``{name: SD of the successful replicates}`` (natural scales)."""
        ok = self._ok()
        sd = ok.std(axis=0, ddof=1) if ok.shape[0] >= MIN_REPLICATES else \
            np.full(len(self.names), math.nan)
        return {k: float(sd[j]) for j, k in enumerate(self.names)}

    def medians(self) -> dict:
        """``{name: median of the successful replicates}``."""
        ok = self._ok()
        med = np.median(ok, axis=0) if ok.shape[0] else np.full(len(self.names), math.nan)
        return {k: float(med[j]) for j, k in enumerate(self.names)}

    def to_dict(self) -> dict:
        return {"names": list(self.names), "estimates": self.estimates.tolist(),
                "samples": self.samples.tolist(), "converged": self.converged.tolist(),
                "seed": int(self.seed), "level": float(self.level),
                "estimator": self.estimator, "seconds": float(self.seconds),
                "stratify": self.stratify}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationBootstrap:
        names = tuple(d["names"])
        samples = np.array(d["samples"], dtype=float).reshape(-1, len(names))
        return cls(names=names, estimates=np.array(d["estimates"], dtype=float),
                   samples=samples, converged=np.array(d["converged"], dtype=bool),
                   seed=int(d["seed"]), level=float(d["level"]), estimator=str(d["estimator"]),
                   seconds=float(math.nan if d.get("seconds") is None else d["seconds"]),
                   stratify=str(d.get("stratify") or ""))


def natural_parameters(pop) -> dict:
    """A population part's estimated parameters on their natural scales, by the names of
    :attr:`PopulationBootstrap.names` (held typical values, fixed variances and fixed
    covariate coefficients left out)."""
    held = set(getattr(pop, "fixed_typical", ()) or ())
    out = {k: float(v) for k, v in pop.fixed_effects.items() if k not in held}
    free_coefs = {n[len("coef "):] for n in pop.covariance_names if n.startswith("coef ")}
    out.update({k: float(v) for k, v in (pop.coefficients or {}).items() if k in free_coefs})
    omega = np.asarray(pop.omega, dtype=float)
    names = list(pop.omega_names)
    estimated = {n[len("log omega^2 "):] for n in pop.covariance_names
                 if n.startswith("log omega^2 ")}
    blocks = [tuple(b["parameters"]) for b in (pop.omega_blocks or ())
              if len(b["parameters"]) > 1 and not b.get("fixed", False)]
    in_block = {n for b in blocks for n in b}
    for i, n in enumerate(names):
        if n in estimated or n in in_block:
            out[f"omega^2 {n}"] = float(omega[i, i])
    for b in blocks:
        for a in range(len(b)):
            for c in range(a):
                i, j = names.index(b[a]), names.index(b[c])
                out[f"omega {b[a]},{b[c]}"] = float(omega[i, j])
    estimated_sigma = {n[len("log "):] for n in pop.covariance_names if n.startswith("log ")}
    out.update({k: float(v) for k, v in pop.sigma.items() if k in estimated_sigma})
    return out


def resample(designs, rng, strata=None) -> list:
    """N designs drawn with replacement from ``designs`` (N of them), each renamed
    ``ID#k`` (k its position) so that a subject drawn twice is two subjects; with ``strata``
    (one label per design) as many from each stratum as it has, drawn within it."""
    n = len(designs)
    if strata is None:
        idx = rng.integers(0, n, size=n)
    else:
        labels = np.asarray([str(v) for v in strata])
        idx = np.concatenate([
            members[rng.integers(0, members.size, size=members.size)]
            for members in (np.flatnonzero(labels == lab) for lab in sorted(set(labels)))])
    return [designs[i].replace(id=f"{designs[i].id}#{k + 1}") for k, i in enumerate(idx)]


def strata_of(cfg, designs, covariate: str) -> list | None:
    """Each subject's value of ``covariate`` (the population model's baseline covariate),
    or None without stratification.

    Raises
    ------
    ConfigError
        A subject without a value of it (the message names the key, the subject and the
        covariates it has).
    """
    if not covariate:
        return None
    out = []
    for d in designs:
        values = dict(getattr(d, "baseline", ()) or ())
        if covariate not in values:
            raise ConfigError(f"{cfg.source}, key 'estimator.bootstrap_stratify': expected a "
                              f"covariate of the population model with a value for every "
                              f"subject, found none for subject '{d.id}' (its covariates: "
                              f"{', '.join(values) or 'none'})")
        out.append(values[covariate])
    return out


def _start_config(cfg, pop):
    """``cfg`` with its estimated starting values at the fit's estimates."""
    from ._start import start_values

    params, _ = start_values(cfg.parameters, types.SimpleNamespace(population=pop),
                             where=f"{cfg.source}: bootstrap")
    return cfg.replace(parameters=params)


def _replicate(cfg, designs, seed: int, b: int, names: tuple, strata=None):
    """One replicate: (its estimates in ``names`` order, converged); NaN when it failed."""
    from ..parallel import InProcess
    from ._estimator_options import EstimatorOptions
    from .estimators import get_estimator
    from .estimators.base import EstimationProblem
    from .problem import Problem

    rng = np.random.default_rng([int(seed), int(b)])
    sample = resample(designs, rng, strata)
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(sample)
    opts = EstimatorOptions.coerce(cfg.options, f"{cfg.source}, [estimator]")
    # no covariance step, no importance-sampling OFV beyond the least the core takes, the
    # chains seeded per replicate
    opts = opts.replace(seed=int(seed) + 1 + int(b), uncertainty=("covariance",),
                        importance_ofv=False, is_samples=100)
    est = get_estimator(cfg.estimator, f"{cfg.source}, key 'fit.estimator'")
    ep = EstimationProblem(problem=problem, designs=sample, options=opts, executor=InProcess(),
                           name=f"{cfg.name} bootstrap {b + 1}", source=cfg.source,
                           covariance_passes=False, covariance_step=False)
    try:
        out = est(ep)
    except (EstimationFailed, FitError, FloatingPointError, np.linalg.LinAlgError,
            ValueError):
        return np.full(len(names), np.nan), False
    pop = out.population
    got = natural_parameters(pop)
    return (np.array([got.get(k, np.nan) for k in names], dtype=float),
            bool(pop.converged or pop.method == "saem"))


def bootstrap_fitted(cfg, pop, designs, *, samples: int, level: float = 0.95, seed: int = 0,
                     stratify: str = "", executor=None,
                     progress: bool = False) -> PopulationBootstrap:
    """The case bootstrap of a fitted population model (what :func:`progression.fit.fit`
    calls for ``uncertainty = ["covariance", "bootstrap"]``).

    Parameters
    ----------
    cfg : FitConfig
        The fit's config (its estimator and options are the replicates').
    pop : PopulationPart
        The fit's population part (the replicates start at its estimates).
    designs : list of Design
        The fitted subjects.
    samples : int
        Replicates (``[estimator] bootstrap_samples``; PsN's default is 200, 1000 for
        percentile intervals at 95 % that are stable to the second digit).
    level : float
        Coverage of the intervals reported by default.
    seed : int
    stratify : str
        A covariate of the population model: subjects are drawn within each of its values
        (as many as each has); empty: from all subjects.
    executor : concurrent.futures.Executor, optional
        Where the replicates run (in this process when omitted).
    progress : bool
        A progress line per replicate on stderr.

    Returns
    -------
    PopulationBootstrap

    Raises
    ------
    ConfigError
        An estimator that is not a population estimator, fewer than 2 replicates, or a
        ``stratify`` covariate a subject has no value of.
    """
    from ..parallel import Progress, map_items

    if cfg.estimator not in BOOTSTRAPPED_ESTIMATORS:
        raise ConfigError(f"{cfg.source}, key 'estimator.uncertainty': the case bootstrap "
                          f"is for population fits ({', '.join(BOOTSTRAPPED_ESTIMATORS)}), "
                          f"found fit.estimator = {cfg.estimator!r}")
    if int(samples) < MIN_REPLICATES:
        raise ConfigError(f"{cfg.source}, key 'estimator.bootstrap_samples': expected at "
                          f"least {MIN_REPLICATES} replicates, found {samples}")
    strata = strata_of(cfg, designs, stratify)
    t0 = time.perf_counter()
    est = natural_parameters(pop)
    names = tuple(est)
    start = _start_config(cfg, pop)
    items = [(start, list(designs), int(seed), b, names, strata)
             for b in range(int(samples))]
    bar = Progress(f"bootstrap {cfg.name}", len(items), unit="replicates", enabled=progress)
    try:
        done = map_items(executor, _replicate, items,
                         progress=lambda n, _: bar.update(n))
    finally:
        bar.close()
    return PopulationBootstrap(
        names=names, estimates=np.array([est[k] for k in names], dtype=float),
        samples=np.vstack([v for v, _ in done]), converged=np.array([c for _, c in done]),
        seed=int(seed), level=float(level), estimator=cfg.estimator,
        seconds=time.perf_counter() - t0, stratify=str(stratify or ""))


def bootstrap_lines(boot: PopulationBootstrap, pop) -> list[str]:
    """The report's bootstrap section: a table of estimate, bootstrap median, SE and
    percentile interval beside the Wald interval."""
    level = boot.level
    pct = f"{100 * level:g} %"
    ci, se, med = boot.intervals(), boot.standard_errors(), boot.medians()
    wald = pop.intervals(level) if pop.covariance is not None else {}
    n = boot.samples.shape[0]
    lines = ["## Bootstrap", "",
             "Case bootstrap (subjects drawn with replacement"
             + (f" within each value of {boot.stratify}" if boot.stratify else "")
             + ", each replicate refitted by "
             f"{boot.estimator} from the fit's estimates, no covariance step; seed "
             f"{boot.seed}): {n - boot.n_failed} of {n} replicates estimated"
             + (f", {int(np.sum(~boot.converged))} without reported convergence (kept)"
                if np.any(~boot.converged) else "")
             + f"; {boot.seconds:.0f} s. Percentile intervals need no normal approximation "
               "and no positive definite R.", "",
             f"| parameter | estimate | bootstrap median | bootstrap SE | {pct} percentile "
             f"interval | {pct} Wald interval |",
             "|---|---:|---:|---:|---|---|"]

    def g(v):
        return "-" if not math.isfinite(v) else f"{v:.5g}"

    for j, k in enumerate(boot.names):
        w = wald.get(k, (math.nan, math.nan))
        lines.append(f"| {k} | {g(boot.estimates[j])} | {g(med[k])} | {g(se[k])} | "
                     f"{g(ci[k][0])} – {g(ci[k][1])} | {g(w[0])} – {g(w[1])} |")
    return lines + [""]


def with_bootstrap(pop, boot: PopulationBootstrap):
    """``pop`` with the bootstrap stored (``PopulationPart.bootstrap``)."""
    return dataclasses.replace(pop, bootstrap=boot.to_dict())
