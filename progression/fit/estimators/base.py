"""The estimator interface: :class:`EstimationProblem` in, :class:`EstimatorOutput` out.

See :mod:`progression.fit.estimators` for the registry and how to add an estimator.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import EstimationFailed
from .._estimator_options import EstimatorOptions
from ..optimize import Counters
from ..parts import Diagnostics, Estimates, EstimatorOutput, Predictions, Uncertainty
from ..problem import Problem

__all__ = ["EstimationProblem", "PointEstimate", "Estimator", "check_failures",
           "normalised_residuals"]


@dataclass
class EstimationProblem:
    """Everything an estimator is given: the same object whatever the estimator.

    Attributes
    ----------
    problem : Problem
        The likelihood (model, observables, error models, parameters, solver settings).
    designs : list of Design
        One per subject.
    options : EstimatorOptions
        The ``[estimator]`` options (a mapping, e.g. a validated config's ``options``, is
        turned into one).
    executor : concurrent.futures.Executor
        Where chunks of subjects run (progression's own, a ``ProcessPoolExecutor``, a Dask
        ``client.get_executor()``). The numbers do not depend on it.
    name : str
        The fit's name (progress bars, messages).
    source : str
        The config file (messages).
    progress : bool
        Show progress bars on stderr.
    counters : Counters
        Work done; estimators add to it.
    timings : dict of str to float
        Seconds per phase; estimators add ``estimation``, ``covariance``, ``profile``,
        ``bootstrap``.
    covariance_passes : bool
        False: :meth:`Estimator.estimate` runs no extra model passes for the covariance step
        (SAEM's score pass and its fallback), for refits that read only the estimates and the
        OFV (:func:`progression.fit.profile_population`).
    covariance_step : bool
        False: the population estimators skip their covariance step (no R, no S: NaN
        standard errors), for refits that read only the estimates (the bootstrap's
        replicates, :mod:`progression.fit._population_bootstrap`).
    """

    problem: Problem
    designs: list
    options: EstimatorOptions
    executor: concurrent.futures.Executor
    name: str = "fit"
    source: str = "fit"
    progress: bool = False
    counters: Counters = field(default_factory=Counters)
    timings: dict = field(default_factory=dict)
    covariance_passes: bool = True
    covariance_step: bool = True

    def __post_init__(self):
        self.options = EstimatorOptions.coerce(self.options)

    @property
    def n_subjects(self) -> int:
        return len(self.designs)

    @property
    def confidence(self) -> float:
        return float(self.options.confidence)

    @property
    def uncertainty_methods(self) -> tuple:
        """Interval methods asked for (``covariance`` always, ``profile``, ``bootstrap``)."""
        return self.options.uncertainty


@dataclass(frozen=True)
class PointEstimate:
    """The estimation step's outcome, handed by an estimator to its own uncertainty step.

    Attributes
    ----------
    estimates : Estimates
    diagnostics : Diagnostics
        Without counters or warnings (added when the output is assembled).
    predictions : list of ndarray
        Per subject, the predictions at the estimates.
    information : ndarray (m, D, D)
        Per subject, the information on the estimation scale at the estimates (with respect
        to the columns the estimator evaluated).
    path_objective : ndarray
        -2 log L on the path the optimiser ran on, at its estimate (per subject, or one total
        for a joint fit): the reference of the profiles, which run on that path too.
    """

    estimates: Estimates
    diagnostics: Diagnostics
    predictions: list
    information: np.ndarray
    path_objective: np.ndarray


class Estimator(abc.ABC):
    """An estimation method: :meth:`estimate` then :meth:`uncertainty`; calling it runs both.

    Subclasses set :attr:`name` (the registry key) and :attr:`description`, and implement the
    two steps. The failure check between them (:func:`check_failures`) and the assembly of
    the :class:`~progression.fit.parts.EstimatorOutput` are the same for every estimator.
    """

    #: Registry key (``[fit] estimator = "..."``).
    name: str = ""
    #: One line, for reports.
    description: str = ""

    @abc.abstractmethod
    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        """Point estimates, diagnostics and predictions."""

    @abc.abstractmethod
    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        """Standard errors and intervals (covariance always; profiles and bootstrap when
        ``ep.uncertainty_methods`` asks), with their methods named."""

    def __call__(self, ep: EstimationProblem) -> EstimatorOutput:
        t = time.perf_counter()
        point = self.estimate(ep)
        ep.timings["estimation"] = time.perf_counter() - t
        check_failures(ep, point.diagnostics)
        unc = self.uncertainty(ep, point)
        diag = dataclasses.replace(
            point.diagnostics,
            warnings=tuple(_convergence_warnings(point.diagnostics.failures, ep.designs)
                           + _before_zero_warnings(point.diagnostics.before_zero, ep.designs)))
        preds = Predictions(
            values=[np.asarray(f, dtype=float) for f in point.predictions],
            residuals=normalised_residuals(ep.problem, ep.designs, point.estimates.theta,
                                           point.predictions))
        return EstimatorOutput(estimates=point.estimates, uncertainty=unc, diagnostics=diag,
                               predictions=preds)


def normalised_residuals(problem: Problem, designs, theta, predictions) -> list:
    """Per subject, the normalised residual of each data row at the predictions (NaN for a
    censored row): ``(y - f) / sigma`` on the error model's scale.

    The residuals are elementwise in the observations: every subject's rows go through one
    call of the error models (a call per subject cost ~60 us, ~4% of a 200-subject fit), the
    same numbers.
    """
    from ..errormodels import likelihood_terms

    out = [None] * len(designs)
    take, pieces = [], []
    for i, d in enumerate(designs):
        f = np.asarray(predictions[i], dtype=float)
        if f.shape != d.value.shape:              # no predictions (e.g. a loaded fit without)
            out[i] = np.full(d.value.shape, np.nan)
            continue
        take.append(i)
        pieces.append(f)
    if not take:
        return out
    ds = [designs[i] for i in take]
    sizes = np.array([d.value.size for d in ds], dtype=int)
    oi = np.concatenate([np.asarray(d.obs, dtype=int) for d in ds])
    value = np.concatenate([d.value for d in ds])
    cens = np.concatenate([d.cens for d in ds])
    limit = np.concatenate([d.limit for d in ds])
    f = np.concatenate(pieces)
    th = np.asarray(theta, dtype=float)[np.repeat(np.asarray(take, dtype=int), sizes)]
    rows = np.arange(f.size)
    ai, bi = problem.a_index[oi], problem.b_index[oi]
    a = np.where(ai >= 0, th[rows, np.maximum(ai, 0)], 0.0)
    b = np.where(bi >= 0, th[rows, np.maximum(bi, 0)], 0.0)
    empty = np.zeros((f.size, 0))
    t = likelihood_terms(problem.codes[oi], value, cens, limit, f, empty, a, empty, b, empty,
                         problem.sigma_varies[oi], want_jac=False)
    r = np.where(cens == 0, t.r, np.nan)
    for i, part in zip(take, np.split(r, np.cumsum(sizes)[:-1]), strict=True):
        out[i] = part
    return out


def check_failures(ep: EstimationProblem, diag: Diagnostics) -> None:
    """Refuse a fit that failed: no subject with a finite objective, or more subjects that did
    not converge than ``[fit] max_failed_share`` allows (EstimationFailed, CLI exit 1)."""
    designs = ep.designs
    m = len(designs)
    failure = diag.failures
    bad = [i for i in range(m) if failure[i]]
    bad.sort(key=lambda i: failure[i].startswith("the pooled fit failed because"))
    finite = np.isfinite(np.asarray(diag.subject_objective, dtype=float))
    share = float(ep.options.max_failed_share)
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
    head = (f"{ep.source}: fit '{ep.name}' failed: {why}; {len(bad)}/{m} subjects failed; "
            "nothing written")
    if len(problems) == 1:
        raise EstimationFailed(f"{head}: {problems[0]}")
    raise EstimationFailed(f"{head}:", problems)


def _convergence_warnings(failure, designs) -> list[str]:
    m = len(designs)
    sim = [designs[i].id for i, r in enumerate(failure) if "simulation failed" in r]
    opt = [designs[i].id for i, r in enumerate(failure) if r and "simulation failed" not in r]
    out = []
    if sim:
        out.append(f"the simulation failed at every point tried for {len(sim)}/{m} subjects "
                   f"({', '.join(sim[:5])}{' ...' if len(sim) > 5 else ''}): no estimate; "
                   "they are left out of -2 log L; see subjects.csv, column 'message'")
    if opt:
        out.append(f"the optimiser did not report convergence for {len(opt)}/{m} "
                   f"subjects ({', '.join(opt[:5])}{' ...' if len(opt) > 5 else ''}); see "
                   "subjects.csv, column 'message'")
    return out


def _before_zero_warnings(before_zero, designs) -> list[str]:
    bz = np.asarray(before_zero, dtype=int)
    who = [designs[i].id for i in np.nonzero(bz > 0)[0]]
    if not who:
        return []
    return [f"model times before 0 at the estimates: {int(bz.sum())} data value(s) of "
            f"{len(who)}/{len(designs)} subjects ({', '.join(who[:5])}"
            f"{' ...' if len(who) > 5 else ''}) lie before the model's t = 0 (data time + "
            "offset < 0); they are evaluated at t = 0, where the objective is flat in the "
            "time offset, so the offset is not determined by them"]
