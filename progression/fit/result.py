"""FitResult: one result type for every estimator, built from typed parts.

A FitResult holds what every fit shares once (the model, the fitted data, predictions and
residuals, provenance, timings) and the estimator's parts:

* :attr:`FitResult.individual`, an :class:`~progression.fit.parts.IndividualPart`: per-subject
  estimates (:class:`~progression.fit.parts.Estimates`), their uncertainty
  (:class:`~progression.fit.parts.Uncertainty`, every interval method named) and the
  diagnostics of the estimation (:class:`~progression.fit.parts.Diagnostics`);
* :attr:`FitResult.population`, a :class:`~progression.fit.parts.PopulationPart` (fixed
  effects, Omega, sigma, EBEs, shrinkage) for population estimators (``focei``, ``foce``,
  ``fo``, ``laplace``, ``saem``); None otherwise. :meth:`FitResult.population_sampler`
  draws new virtual patients from it.

The attributes are the same whatever the estimator (like lmfit's ``MinimizerResult``):
``theta``, ``se``, ``intervals``, ``subject_objective``, ``converged``, ``warnings``, ... are
read-only views of the parts. Saving and loading (``fit.json`` with a format version, the
CSV files, figures): :mod:`progression.fit._io_result`; :func:`load_fit` restores a FitResult
that can simulate.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._repr import brief
from ..errors import FitError
from ._draws import ParameterDraws  # re-exported: defined beside its maker
from .config import OFFSET
from .parts import IndividualPart, PopulationPart, Predictions
from .problem import Problem

__all__ = ["FitResult", "ParameterDraws", "Residuals", "load_fit", "FORMAT", "READABLE"]

#: The ``format`` of the ``fit.json`` this version writes.
FORMAT = "progression-fit/2"
#: Every ``format`` this version reads: 1 (before the estimator registry: the same keys,
#: without ``estimator``, ``interval_methods``, ``joint_covariance``, ``population``) and 2.
READABLE = ("progression-fit/1", FORMAT)


class Residuals(NamedTuple):
    """What `FitResult.residuals` returns; unpacks as ``residuals, predictions = ...``.

    Attributes
    ----------
    residuals : list of ndarray
        Per subject, one value per data row: the normalised residual of the error model
        (``(y - f) / sigma`` on the scale the error model works on, ``(log y - log f) / sigma``
        for log-normal); NaN for a censored row (its likelihood is a probability, not a
        residual).
    predictions : list of ndarray
        Per subject, one value per data row: the model prediction ``f`` at the estimates.
    """

    residuals: list
    predictions: list


@dataclass
class FitResult:
    """Estimates, uncertainty, diagnostics and provenance of a fit.

    Attributes
    ----------
    name : str
    kind : str
        The estimator that produced it (``"individual"``, ``"pooled"``, ``"fixed"`` when
        nothing was estimated).
    model : CompiledModel
        The compiled model (pickles as its spec).
    subject_ids : tuple of str
    parameters : tuple of FitParameter
        Every quantity of the fit: model parameters (model order), ``time_offset``, error
        parameters (``OBS.a``, ``OBS.b``, ``OBS.sigma``), with role, bounds and scale.
    observables, error_models : tuple of str
        The fitted observables and their error models.
    solver : dict
        The ``[solver]`` settings of the fit.
    confidence : float
        Level of every interval.
    designs : list of Design
        The fitted data, one per subject.
    model_predictions : Predictions
        Per subject, predictions and normalised residuals at the data.
    individual : IndividualPart
        Per-subject estimates, uncertainty and diagnostics.
    population : PopulationPart or None
        Population estimates (fixed effects, Omega, sigma, EBEs, shrinkage) of a population
        estimator; None otherwise.
    timings : dict of str to float
        Seconds per phase.
    provenance : dict
        Config text, model text, data path and SHA-256, versions, seed, options, notes, which
        path produced the numbers (``numbers_from``).
    conditions : tuple of Condition
        The config's experimental conditions (``[conditions.NAME]``), which the designs'
        ``condition`` values name; part of :attr:`problem`.

    Every other attribute is a read-only view of the parts: ``theta`` (m, Q) estimates per
    subject; ``se`` (m, Q) standard errors; ``intervals`` (method -> (m, Q, 2));
    ``interval_methods`` (method -> words); ``open_intervals``; ``x_hat``, ``x_cols``,
    ``x_rows``, ``blocks`` (estimation scale and covariance); ``subject_objective``,
    ``n_obs``, ``converged``, ``messages``, ``failures``, ``nfev``, ``starts_objective``,
    ``best_start``, ``before_zero``; ``warnings``; ``counters``; ``predictions``;
    ``profiles``, ``bootstrap`` (as saved in ``fit.json``).
    """

    name: str
    kind: str
    model: object
    subject_ids: tuple
    parameters: tuple
    observables: tuple
    error_models: tuple
    solver: dict
    confidence: float
    designs: list = field(repr=False)
    model_predictions: Predictions = field(repr=False)
    individual: IndividualPart = field(repr=False)
    population: PopulationPart | None = None
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict, repr=False)
    conditions: tuple = ()
    #: The time-to-event part of the likelihood (``[survival]``), or None.
    survival: Any = None

    # ------------------------------------------------------------------ views of the parts

    @property
    def theta(self) -> np.ndarray:
        """(m, Q) every fit quantity per subject (estimates; fixed ones at their values)."""
        return self.individual.estimates.theta

    @property
    def x_hat(self) -> np.ndarray:
        """(K,) the estimated entries on the estimation scale."""
        return self.individual.estimates.x_hat

    @property
    def x_cols(self) -> np.ndarray:
        """(K,) fit quantity of each estimated entry."""
        return self.individual.estimates.x_cols

    @property
    def x_rows(self) -> list:
        """(K,) subject rows each estimated entry sets."""
        return self.individual.estimates.x_rows

    @property
    def se(self) -> np.ndarray:
        """(m, Q) delta-method standard errors on the natural scale (NaN when unknown)."""
        return self.individual.uncertainty.se

    @property
    def intervals(self) -> dict:
        """Interval method -> (m, Q, 2) lower/upper."""
        return self.individual.uncertainty.intervals

    @property
    def interval_methods(self) -> dict:
        """Interval key -> the method in words (e.g. ``"profile likelihood"``)."""
        return self.individual.uncertainty.methods

    @property
    def open_intervals(self) -> dict:
        return self.individual.uncertainty.open_intervals

    @property
    def blocks(self) -> list:
        """Covariance blocks on the estimation scale: (entries of ``x_hat``, matrix)."""
        return self.individual.uncertainty.blocks

    @property
    def profiles(self) -> dict | None:
        """Profile likelihoods as saved (``cols``, ``values``, ``m2ll``, ``pooled``), or None."""
        p = self.individual.uncertainty.profiles
        return None if p is None else p.as_dict()

    @property
    def bootstrap(self) -> dict | None:
        """Bootstrap refits as saved (``cols``, ``estimates`` (m, B, D)), or None."""
        b = self.individual.uncertainty.bootstrap
        return None if b is None else b.as_dict()

    @property
    def subject_objective(self) -> np.ndarray:
        """(m,) -2 log L per subject (NaN where its simulation failed at every point tried)."""
        return self.individual.diagnostics.subject_objective

    @property
    def n_obs(self) -> np.ndarray:
        return self.individual.diagnostics.n_obs

    @property
    def converged(self) -> np.ndarray:
        return self.individual.diagnostics.converged

    @property
    def messages(self) -> list:
        return list(self.individual.diagnostics.messages)

    @property
    def failures(self) -> list:
        """Per subject: why it failed (``""`` for a converged subject)."""
        return list(self.individual.diagnostics.failures)

    @property
    def nfev(self) -> np.ndarray:
        return self.individual.diagnostics.nfev

    @property
    def starts_objective(self) -> np.ndarray:
        """(m, S) -2 log L of every start."""
        return self.individual.diagnostics.starts_objective

    @property
    def best_start(self) -> np.ndarray:
        return self.individual.diagnostics.best_start

    @property
    def before_zero(self) -> np.ndarray:
        """(m,) data values whose model time is before the model's t = 0 at the estimates."""
        return self.individual.diagnostics.before_zero

    @property
    def counters(self) -> dict:
        """``simulations``, ``subject_solves``, ``failed_solves``, ``solves_before_zero``,
        ``seconds_simulating``, ``failure_messages`` (``individual.diagnostics.work`` by
        name)."""
        return self.individual.diagnostics.work.as_dict()

    @property
    def warnings(self) -> list:
        """Stated problems: convergence, data before t = 0, failed covariance steps,
        practically non-identifiable quantities."""
        return (list(self.individual.diagnostics.warnings)
                + list(self.individual.uncertainty.warnings))

    @property
    def predictions(self) -> list:
        """Per subject, the model prediction at each data row."""
        return self.model_predictions.values

    # ------------------------------------------------------------------ basic views

    @property
    def problem(self) -> Problem:
        """The estimation problem (to evaluate residuals again), with the fit's conditions;
        which designs carry inputs is known, as in the fit."""
        problem = Problem(self.model, self.observables, self.error_models, self.parameters,
                          dict(self.solver), tuple(self.conditions),
                          survival=getattr(self, "survival", None))
        if self.designs:
            problem.fix_grid_step(self.designs)
        return problem

    @property
    def reported_problem(self) -> Problem:
        """:attr:`problem` on the path behind the reported objective and predictions: the
        exact path (:meth:`Problem.exact_path`) when the fit polished its estimates there
        (``[solver] refine = "exact"``, the default), else the configured path."""
        from ._multistart import refines

        problem = self.problem
        return problem.exact_path() if refines(problem) else problem

    @property
    def parameter_names(self) -> tuple:
        """Names of every fit quantity (model parameters, time_offset, error parameters)."""
        return tuple(p.name for p in self.parameters)

    @property
    def estimated_names(self) -> tuple:
        return tuple(p.name for p in self.parameters if p.estimated)

    @property
    def n_subjects(self) -> int:
        return len(self.subject_ids)

    @property
    def objective(self) -> float:
        """-2 log L at the estimates, summed over the subjects with a finite objective
        (subjects whose simulation failed are left out and counted in :attr:`n_failed`)."""
        obj = np.asarray(self.subject_objective, dtype=float)
        ok = np.isfinite(obj)
        return float(np.sum(obj[ok])) if ok.any() else float("nan")

    @property
    def failed_subjects(self) -> list[str]:
        """Subjects that failed (did not converge, or whose simulation failed)."""
        reasons = self.failures or [""] * self.n_subjects
        return [s for s, r in zip(self.subject_ids, reasons, strict=True) if r]

    @property
    def n_failed(self) -> int:
        return len(self.failed_subjects)

    @property
    def n_estimated(self) -> int:
        """Number of estimated quantities (subjects x per-subject ones + shared ones; for a
        population fit, its population parameters: theta, Omega, sigma)."""
        if self.population is not None and self.population.n_parameters:
            return int(self.population.n_parameters)
        return self.individual.estimates.n_estimated

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.n_estimated

    @property
    def bic(self) -> float:
        return self.objective + self.n_estimated * math.log(max(int(self.n_obs.sum()), 1))

    @property
    def subject_parameters(self) -> np.ndarray:
        """(m, P) full model parameter rows (model order), fixed ones at their values."""
        return self.theta[:, :self.model.n_parameters].copy()

    @property
    def time_offsets(self) -> np.ndarray:
        """(m,) model time of each subject's data time 0."""
        q = self.parameter_names.index(OFFSET)
        p = self.parameters[q]
        cov = np.array([d.offset_covariate for d in self.designs]) if self.designs else 0.0
        return self.theta[:, q] + p.factor * cov

    def estimates(self, name: str) -> np.ndarray:
        """(m,) values of one fit quantity per subject."""
        return self.theta[:, self._index(name)].copy()

    def standard_errors(self, name: str) -> np.ndarray:
        return self.se[:, self._index(name)].copy()

    def interval(self, name: str, method: str = "covariance") -> np.ndarray:
        """(m, 2) interval of one quantity by ``method``."""
        if method not in self.intervals:
            raise FitError(f"no {method} intervals in this fit (have: "
                           f"{', '.join(self.intervals)})")
        return self.intervals[method][:, self._index(name)].copy()

    def _index(self, name: str) -> int:
        try:
            return self.parameter_names.index(name)
        except ValueError:
            raise FitError(f"fit {self.name!r} has no parameter {name!r} (parameters: "
                           f"{', '.join(self.estimated_names)} estimated)") from None

    def covariance(self, subject: int | str = 0) -> tuple[tuple, np.ndarray]:
        """(names, covariance on the estimation scale) of one subject's estimated quantities
        (one block per subject) or of every estimated quantity (a joint covariance, when shared
        quantities couple the subjects; ``subject`` is then ignored)."""
        if not self.blocks:                       # nothing estimated
            return (), np.zeros((0, 0))
        if self.individual.uncertainty.joint:
            idx, cov = self.blocks[0]
            names = tuple(self.entry_name(k) for k in idx)
            return names, cov.copy()
        i = self.subject_ids.index(subject) if isinstance(subject, str) else int(subject)
        idx, cov = self.blocks[i]
        return tuple(self.parameter_names[self.x_cols[k]] for k in idx), cov.copy()

    def correlation(self, subject: int | str = 0) -> tuple[tuple, np.ndarray]:
        """(names, correlation matrix) of the estimates, from :meth:`covariance` (NaN where a
        standard error is unknown)."""
        names, cov = self.covariance(subject)
        sd = np.sqrt(np.abs(np.diag(cov)))
        with np.errstate(invalid="ignore", divide="ignore"):
            return names, cov / np.outer(sd, sd)

    def entry_name(self, k: int) -> str:
        """Name of entry ``k`` of ``x_hat``: the quantity, with ``[subject]`` for a
        per-subject entry."""
        name = self.parameter_names[self.x_cols[k]]
        rows = self.x_rows[k]
        return name if len(rows) > 1 else f"{name}[{self.subject_ids[int(rows[0])]}]"

    # ------------------------------------------------------------------ sampling, simulating

    def parameter_draws(self, n: int, rng=None) -> ParameterDraws:
        """Draw parameter sets and time offsets from the estimates' uncertainty, honestly.

        Draws ``x ~ N(x_hat, Cov)`` on the estimation scale (log, logit or linear; per subject
        for individual fits, jointly for pooled fits) with
        :func:`~progression.fit.uncertainty.gaussian_draws`: quantities the data do not
        determine (singular information) and directions wider than their bounds are held at
        the estimate, a covariance that is not positive semi-definite is regularised (negative
        eigenvalues set to 0), and draws outside the bounds of a log or linear scale are drawn
        again (a truncated normal); nothing is clipped. Time offsets are drawn jointly with the
        parameters they are correlated with. Estimates at a bound (one-sided uncertainty) are
        held there and the others drawn given them. What was done, per subject, is in the
        result.

        Returns
        -------
        ParameterDraws
        """
        from ._draws import parameter_draws

        return parameter_draws(self, n, rng)

    def population_sampler(self, covariates=None):
        """Draws new virtual patients from this population fit (Omega, covariate effects, the
        covariate distribution of the fitted subjects), with the population parameters'
        uncertainty from the covariance step kept apart.

        Parameters
        ----------
        covariates : mapping of str to array (k,), optional
            A covariate table (one row per subject) to resample patients' covariates from,
            instead of the fitted subjects'.

        Returns
        -------
        PopulationSampler
            ``draw_patients(n, rng)``, ``values(patients)`` (between-subject variability at
            the estimates) and ``parameter_draws(patients, n, rng)`` (the same patients under
            ``n`` draws of the population parameters); see
            :class:`~progression.fit._draws.PopulationSampler` and
            :meth:`progression.virtual.VirtualPopulation.from_fit`.

        Raises
        ------
        FitError
            The fit has no population part, or the fitted data lack a covariate of the
            population model (and ``covariates`` does not give it).
        """
        from ._draws import PopulationSampler

        return PopulationSampler.from_fit(self, covariates)

    def sample_parameters(self, n: int, rng=None, *, with_offsets: bool = False):
        """Draw parameter sets from the estimates' uncertainty (see :meth:`parameter_draws`).

        Returns
        -------
        ndarray (n, m, P)
            And, with ``with_offsets``, also the time offsets ``(n, m)``.
        """
        d = self.parameter_draws(n, rng)
        if d.undetermined:
            unknown = d.undetermined
            warnings.warn(f"no covariance for {', '.join(unknown[:5])}"
                          f"{' ...' if len(unknown) > 5 else ''}: sampled at the estimate",
                          stacklevel=2)
        if not with_offsets:
            return d.parameters
        return d.parameters, d.offsets

    def simulate(self, times, **kwargs):
        """Simulate every subject at its estimates at model ``times`` (``pg.simulate``).

        Each subject's dose records and covariates from the data are applied (shifted to model
        time by its time offset), as in the fit, unless ``doses=`` / ``covariates=`` are
        given. Experimental conditions are not: their curves are drawn per condition by
        :func:`progression.fit.report.subject_curves`.
        """
        import dataclasses

        from ..simulate import simulate

        offsets = self.time_offsets
        if "doses" not in kwargs and any(d.doses or d.dose_records for d in self.designs):
            kwargs["doses"] = [dataclasses.replace(x, time=x.time + offsets[i], subject=i)
                               for i, d in enumerate(self.designs) for x in d.doses]
        if "covariates" not in kwargs and any(d.covariates for d in self.designs):
            kwargs["covariates"] = [{name: (np.asarray(t, float) + offsets[i], v)
                                     for name, t, v in d.covariates}
                                    for i, d in enumerate(self.designs)]
        return simulate(self.model, self.subject_parameters, times, **kwargs)

    def residuals(self) -> Residuals:
        """Per subject: normalised residuals and predictions at the data.

        Returns
        -------
        Residuals
            ``(residuals, predictions)``, each a list with one array per subject (rows as in
            the data); residuals are NaN where the row is censored.
        """
        return Residuals([np.array(r, dtype=float) for r in self.model_predictions.residuals],
                         [np.array(f, dtype=float) for f in self.model_predictions.values])

    # ------------------------------------------------------------------ tables

    def __repr__(self) -> str:
        method = self.population.method if self.population is not None else self.kind
        return brief(self, repr(self.name), f"{method} fit of {self.model.name!r}",
                     f"{self.n_subjects} subjects", f"{int(np.sum(self.n_obs))} observations",
                     f"-2 log L {self.objective:.4f}", f"{self.n_estimated} estimated")

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """A short text summary (what the CLI prints): for a population fit the typical
        values, Omega and residual error with RSE % and 95 % Wald intervals."""
        if self.population is not None:
            from ._population_summary import population_summary

            return population_summary(self)
        m = self.n_subjects
        n_finite = int(np.isfinite(np.asarray(self.subject_objective, float)).sum())
        over = f" (over the {n_finite} subjects with a finite objective)" if n_finite < m \
            else ""
        what = (f"{self.kind} fit" if self.n_estimated else
                "objective at fixed parameters (nothing estimated: -2 log L, predictions and "
                "residuals at the given values)")
        work = self.individual.diagnostics.work
        lines = [f"{self.name}: {what} of model '{self.model.name}' to {m} subjects, "
                 f"{int(self.n_obs.sum())} observations",
                 f"  -2 log L = {self.objective:.3f}{over}, AIC = {self.aic:.3f}, BIC = "
                 f"{self.bic:.3f}, {self.n_estimated} estimated quantities",
                 f"  converged: {int(self.converged.sum())}/{m} subjects; "
                 f"{work.simulations} batched simulations, "
                 f"{work.subject_solves} subject solves ({work.failed_solves} failed); "
                 f"{self.timings.get('total', float('nan')):.1f} s"]
        if self.provenance.get("numbers_from"):      # which path gave the numbers (refine)
            lines.append(f"  {self.provenance['numbers_from']}")
        for line in self.failure_lines():
            lines.append("  " + line)
        for row in self.parameter_table():
            lines.append("  " + row["text"])
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)

    def failure_lines(self, limit: int = 10) -> list[str]:
        """Lines stating failed subjects (who and why) and data before the model's t = 0."""
        lines = []
        failed = self.failed_subjects
        if failed:
            reasons = dict(zip(self.subject_ids, self.failures, strict=True))
            lines.append(f"FAILED: {len(failed)}/{self.n_subjects} subjects (written, but "
                         f"their estimates are not usable): " + ", ".join(failed[:limit])
                         + (f", ... ({len(failed) - limit} more)" if len(failed) > limit
                            else ""))
            for sid in failed[:min(limit, 5)]:
                lines.append(f"  {sid}: {reasons[sid]}")
        bz = self.before_zero
        if bz is not None and np.any(bz > 0):
            who = [s for s, n in zip(self.subject_ids, bz, strict=True) if n > 0]
            lines.append(f"model times before 0: at the estimates {int(np.sum(bz))} data "
                         f"value(s) of {len(who)}/{self.n_subjects} subjects lie before the "
                         f"model's t = 0 and are evaluated at t = 0 (flat in the offset): "
                         + ", ".join(who[:limit]) + (" ..." if len(who) > limit else ""))
        work = self.individual.diagnostics.work
        if work.solves_before_zero:
            lines.append(f"model times before 0 during the fit: in {work.solves_before_zero} "
                         f"of {work.subject_solves} subject solves")
        return lines

    def parameter_table(self) -> list[dict]:
        """Per estimated quantity: summary statistics across subjects (or the shared value)."""
        rows = []
        for q, p in enumerate(self.parameters):
            if not p.estimated:
                continue
            v = self.theta[:, q]
            se = self.se[:, q]
            with np.errstate(invalid="ignore", divide="ignore"):
                rse = 100 * se / np.abs(v)
            if p.estimate == "shared":
                ci = self.intervals["covariance"][0, q]
                text = (f"{p.name:<14} {v[0]:.5g} (SE {se[0]:.3g}, RSE {rse[0]:.3g}%, "
                        f"{100 * self.confidence:g}% CI {ci[0]:.4g} - {ci[1]:.4g}) [shared]")
                rows.append({"name": p.name, "role": "shared", "estimate": float(v[0]),
                             "se": float(se[0]), "text": text})
            else:
                # failed subjects are left out of the summary statistics
                use = np.ones(v.size, bool) if not self.failures else \
                    np.array([not r for r in self.failures], dtype=bool)
                q1, med, q3 = _percentiles(v[use], [25, 50, 75])
                (mrse,) = _percentiles(rse[use], [50])
                of = "" if use.all() else f" over {int(use.sum())} converged subjects"
                text = (f"{p.name:<14} median {med:.5g} (IQR {q1:.4g} - {q3:.4g}), median RSE "
                        f"{mrse:.3g}% [per subject{of}]")
                rows.append({"name": p.name, "role": "subject", "median": float(med),
                             "q1": float(q1), "q3": float(q3),
                             "median_rse_percent": float(mrse), "text": text})
        return rows

    # ------------------------------------------------------------------ saving

    def save(self, folder, *, figures: bool = True, overwrite: bool = False,
             inputs=None) -> Path:
        """Write the fit folder atomically; returns its path.

        The folder holds ``fit.json`` (everything, with a format version), ``subjects.csv``,
        ``data.csv``, ``report.md`` and ``figures/``; see :mod:`progression.fit._io_result`.

        Parameters
        ----------
        folder : path
            The fit folder; it must not exist yet, be empty, or (with ``overwrite``) be a
            folder progression wrote (it carries a ``.progression`` marker).
        figures : bool
            Write the PNG figures.
        overwrite : bool
            Replace an existing fit folder written by progression. A folder progression did
            not write, or a file, is never replaced.
        inputs : iterable of path, optional
            Files the fit read; the folder may not be or contain one. Default: the config,
            data and model files named in the provenance.

        Raises
        ------
        OutputError
            The folder cannot be written without losing something, or cannot be written.
        """
        from ._io_result import save_fit

        return save_fit(self, folder, figures=figures, overwrite=overwrite, inputs=inputs)


def _percentiles(values, q) -> list[float]:
    """Percentiles of the finite values (NaN, and no RuntimeWarning, when there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan")] * len(q)
    return [float(x) for x in np.percentile(v, q)]


def load_fit(folder) -> FitResult:
    """Restore a saved fit (``fit.json`` and ``data.csv``) as a FitResult that can simulate.

    Reads every format version progression has written (``progression-fit/1`` and ``/2``).

    Raises
    ------
    FitError
        The folder is not a saved fit, its format version is unknown (a newer progression
        wrote it), or its model cannot be restored.
    """
    from ._io_result import load_fit as _load

    return _load(folder)
