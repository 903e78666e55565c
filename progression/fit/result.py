"""FitResult: one type for per-subject, pooled (and later population) fits; saving and loading.

A saved fit is a folder written atomically (all files appear together, or none):

==================  ===========================================================================
``fit.json``        estimates, standard errors, intervals (with method), covariance blocks on
                    the estimation scale, objective, AIC/BIC, per-subject convergence, counts,
                    timings, warnings, and everything to reproduce the fit: config text, model
                    file text, SHA-256 of the data, package versions, seeds
``subjects.csv``    one row per subject: status, objective, estimate/SE/interval per parameter
``data.csv``        the fitted observations with model time, prediction and normalised residual
``report.md``       a readable summary with the figures
``figures/*.png``   individual fits with data, observed vs predicted, residuals vs time and vs
                    prediction, parameter distributions, profiles (when computed)
==================  ===========================================================================

:func:`load_fit` restores a FitResult that can simulate again.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import FitError
from .config import OFFSET, FitParameter
from .errormodels import likelihood_terms
from .problem import Design, Problem
from .transforms import from_internal

__all__ = ["FitResult", "ParameterDraws", "Residuals", "load_fit", "FORMAT"]

FORMAT = "progression-fit/1"


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
class ParameterDraws:
    """Parameter sets drawn from a fit's uncertainty (:meth:`FitResult.parameter_draws`).

    Attributes
    ----------
    parameters : ndarray (n, m, P)
        Full model parameter rows per draw and subject.
    offsets : ndarray (n, m)
        Time offsets per draw and subject (drawn with the parameters).
    handling : list of str
        Per subject: how its covariance was handled ("" when it was used as it is).
    singular : list of str
        Subjects whose covariance was singular.
    notes : list of str
        What was done, in words (for reports).
    undetermined : list of str
        The quantities (``name[subject]``) held at the estimate because the data do not
        determine them.
    """

    parameters: np.ndarray
    offsets: np.ndarray
    handling: list
    singular: list
    notes: list
    undetermined: list = field(default_factory=list)


def _few(items, n=5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


@dataclass
class FitResult:
    """Estimates, uncertainty, diagnostics and provenance of a fit.

    Attributes
    ----------
    name : str
    kind : {"individual", "pooled"}
    model : CompiledModel
        The compiled model (pickles as its spec).
    subject_ids : tuple of str
    parameters : tuple of FitParameter
        Every quantity of the fit: model parameters (model order), ``time_offset``, error
        parameters (``OBS.a``, ``OBS.b``, ``OBS.sigma``), with role, bounds and scale.
    observables, error_models : tuple of str
        The fitted observables and their error models.
    theta : ndarray (m, Q)
        Per subject, every parameter's value (estimates; fixed ones at their values).
    se : ndarray (m, Q)
        Delta-method standard errors on the natural scale (NaN for fixed parameters or a failed
        covariance step).
    intervals : dict of str to ndarray (m, Q, 2)
        Interval method (``covariance``, ``profile``, ``bootstrap``) -> lower/upper.
    objective : float
        -2 log L at the estimates (sum over subjects).
    aic, bic : float
    subject_objective : ndarray (m,)
        -2 log L per subject (NaN where its simulation failed at every point tried).
    converged : ndarray of bool (m,)
    messages : list of str
    failures : list of str
        Per subject: why it failed (did not converge, or its simulation failed at every point
        tried, with the solver's message), ``""`` for a converged subject.
    before_zero : ndarray of int (m,)
        Per subject: data values whose model time (data time + offset) is before the model's
        t = 0 at the estimates; they are evaluated at t = 0, where the objective is flat in the
        offset.
    warnings : list of str
        Stated problems: failed covariance steps, practically non-identifiable parameters.
    counters : dict
        ``simulations`` (batched simulate calls), ``subject_solves`` (rows simulated),
        ``failed_solves`` (rows whose simulation failed or gave non-finite residuals).
    timings : dict of str to float
        Seconds per phase.
    provenance : dict
        Config text, model text, data path and SHA-256, versions, seed, options, notes.
    """

    name: str
    kind: str
    model: object
    subject_ids: tuple
    parameters: tuple
    observables: tuple
    error_models: tuple
    solver: dict
    theta: np.ndarray
    se: np.ndarray
    intervals: dict
    x_cols: np.ndarray
    x_rows: list
    x_hat: np.ndarray
    blocks: list
    subject_objective: np.ndarray
    n_obs: np.ndarray
    converged: np.ndarray
    messages: list
    nfev: np.ndarray
    starts_objective: np.ndarray
    best_start: np.ndarray
    failures: list = field(default_factory=list)
    before_zero: np.ndarray | None = None
    designs: list = field(repr=False, default_factory=list)
    predictions: list = field(repr=False, default_factory=list)
    open_intervals: dict = field(default_factory=dict)
    profiles: dict | None = field(default=None, repr=False)
    bootstrap: dict | None = field(default=None, repr=False)
    warnings: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict, repr=False)
    confidence: float = 0.95

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_parts(cls, cfg, problem: Problem, designs, core, unc, counters, timings,
                   provenance) -> FitResult:
        m = len(designs)
        cnt = {"simulations": counters.simulations, "subject_solves": counters.rows,
               "failed_solves": counters.failed_rows,
               "solves_before_zero": counters.rows_before_zero,
               "seconds_simulating": round(counters.seconds_evaluating, 3),
               "failure_messages": sorted(set(counters.events))[:10]}
        return cls(
            name=cfg.name, kind=core["kind"], model=problem.model,
            subject_ids=tuple(d.id for d in designs), parameters=problem.parameters,
            observables=problem.observables, error_models=problem.error_models,
            solver=dict(problem.solver), theta=core["theta"] if core["theta"].shape[0] == m
            else np.repeat(core["theta"], m, axis=0), se=unc["se"],
            intervals=unc["intervals"], x_cols=unc["x_cols"], x_rows=unc["x_rows"],
            x_hat=unc["x_hat"], blocks=unc["blocks"], subject_objective=core["m2ll"],
            n_obs=np.asarray(core["nobs"]), converged=np.asarray(core["success"], bool),
            messages=list(core["message"]), nfev=np.asarray(core["nfev"]),
            starts_objective=np.asarray(core["starts_m2ll"]),
            best_start=np.asarray(core["best_start"]),
            failures=list(core.get("failure", [""] * m)),
            before_zero=np.asarray(core.get("before_zero", np.zeros(m)), dtype=int),
            designs=list(designs),
            predictions=list(core["predictions"]), open_intervals=unc.get("open", {}),
            profiles=unc.get("profiles"),
            bootstrap=unc.get("bootstrap"), warnings=_convergence_warnings(core, designs)
            + _before_zero_warnings(core, designs, cnt) + list(unc["warnings"]),
            counters=cnt, timings=timings, provenance=provenance,
            confidence=float(cfg.options["confidence"]))

    # ------------------------------------------------------------------ basic views

    @property
    def problem(self) -> Problem:
        """The estimation problem (to evaluate residuals again)."""
        return Problem(self.model, self.observables, self.error_models, self.parameters,
                       dict(self.solver))

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
        """Number of estimated quantities (subjects x per-subject ones + shared ones)."""
        return int(self.x_cols.size)

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
        (individual fits) or of every estimated quantity (pooled fits)."""
        if self.kind == "pooled":
            idx, cov = self.blocks[0]
            names = tuple(self._entry_name(k) for k in idx)
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

    def _entry_name(self, k: int) -> str:
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
        from .uncertainty import gaussian_draws

        rng = np.random.default_rng(rng)
        m, Q = self.theta.shape
        th = np.repeat(self.theta[None], n, axis=0)
        handling: dict[int, list[str]] = {}
        undetermined, totals = [], {"redrawn": 0, "unresolved": 0, "draws": 0}
        for idx, cov in self.blocks:
            idx = np.asarray(idx, dtype=int)
            if idx.size == 0:
                continue
            cols = self.x_cols[idx]
            sc = np.array([self.parameters[c].scale for c in cols])
            lo = np.array([self.parameters[c].lower for c in cols])
            hi = np.array([self.parameters[c].upper for c in cols])
            xs, info = gaussian_draws(self.x_hat[idx], cov, sc, lo, hi, n, rng,
                                      confidence=self.confidence)
            rows = sorted({int(r) for k in idx for r in self.x_rows[k]})
            notes = []
            if info["undetermined"]:
                names = [self.parameter_names[cols[k]] for k in info["undetermined"]]
                undetermined += [self._entry_name(idx[k]) for k in info["undetermined"]]
                notes.append("singular covariance: " + ", ".join(dict.fromkeys(names))
                             + " not determined by the data, held at the estimate")
            if info["at_bound"]:
                names = [self.parameter_names[cols[k]] for k in info["at_bound"]]
                notes.append("estimate at a bound: " + ", ".join(dict.fromkeys(names))
                             + " held there (one-sided uncertainty), the others drawn given "
                               "it")
            if info["held"]:
                notes.append(f"{info['held']} direction(s) wider than the bounds held at "
                             "the estimate")
            if info["negative"]:
                notes.append(f"covariance not positive semi-definite: {info['negative']} "
                             "negative eigenvalue(s) set to 0")
            for r in rows:
                handling.setdefault(r, []).extend(notes)
            totals["redrawn"] += info["redrawn"]
            totals["unresolved"] += info["unresolved"]
            totals["draws"] += n
            for col_k, k in enumerate(idx):
                c = self.x_cols[k]
                p = self.parameters[c]
                vals = from_internal(xs[:, col_k], p.scale, p.lower, p.upper)
                th[:, self.x_rows[k], c] = vals[:, None]
        P = self.model.n_parameters
        q = self.parameter_names.index(OFFSET)
        cov_term = (np.array([d.offset_covariate for d in self.designs])
                    if self.designs else 0.0)
        offsets = th[:, :, q] + self.parameters[q].factor * cov_term
        per_subject = ["; ".join(dict.fromkeys(handling.get(i, []))) for i in range(m)]
        notes = []
        singular = [self.subject_ids[i] for i in range(m) if "singular" in per_subject[i]]
        held = [self.subject_ids[i] for i in range(m) if "direction(s)" in per_subject[i]]
        bound = [self.subject_ids[i] for i in range(m) if "at a bound" in per_subject[i]]
        negative = [self.subject_ids[i] for i in range(m) if "negative" in per_subject[i]]
        if singular:
            notes.append(f"singular covariance in {len(singular)}/{m} subjects "
                         f"({_few(singular)}): the quantities the data do not determine are "
                         "held at the estimate in every draw")
        if bound:
            notes.append(f"estimates at a bound in {len(bound)}/{m} subjects ({_few(bound)}): "
                         "their uncertainty is one-sided, which a normal distribution does not "
                         "describe; they are held at the bound and the other quantities are "
                         "drawn from their distribution given them")
        if held:
            notes.append(f"near-singular covariance in {len(held)}/{m} subjects "
                         f"({_few(held)}): directions whose {100 * self.confidence:g}% "
                         "interval is wider than the bounds are held at the estimate")
        if negative:
            notes.append(f"covariance not positive semi-definite in {len(negative)}/{m} "
                         f"subjects ({_few(negative)}): regularised to the nearest positive "
                         "semi-definite matrix")
        if totals["redrawn"]:
            notes.append(f"{totals['redrawn']} of {totals['draws']} subject draws fell outside "
                         "the bounds and were drawn again (normal truncated to the bounds on "
                         "the estimation scale; nothing clipped)"
                         + (f"; {totals['unresolved']} still outside after 100 tries were set "
                            "to the estimate" if totals["unresolved"] else ""))
        return ParameterDraws(parameters=th[:, :, :P], offsets=offsets,
                              handling=per_subject, singular=singular, notes=notes,
                              undetermined=undetermined)

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
        """Simulate every subject at its estimates at model ``times`` (``pg.simulate``)."""
        from ..simulate import simulate

        return simulate(self.model, self.subject_parameters, times, **kwargs)

    def residuals(self) -> Residuals:
        """Per subject: normalised residuals and predictions at the data.

        Returns
        -------
        Residuals
            ``(residuals, predictions)``, each a list with one array per subject (rows as in
            the data); residuals are NaN where the row is censored.
        """
        prob = self.problem
        out = []
        for i, d in enumerate(self.designs):
            f = self.predictions[i]
            th = self.theta[i]
            oi = d.obs
            a = np.where(prob.a_index[oi] >= 0, th[np.maximum(prob.a_index[oi], 0)], 0.0)
            b = np.where(prob.b_index[oi] >= 0, th[np.maximum(prob.b_index[oi], 0)], 0.0)
            t = likelihood_terms(prob.codes[oi], d.value, d.cens, d.limit, f,
                                 np.zeros((f.size, 0)), a, np.zeros((f.size, 0)), b,
                                 np.zeros((f.size, 0)), prob.sigma_varies[oi], want_jac=False)
            out.append(np.where(d.cens == 0, t.r, np.nan))
        return Residuals(out, [np.array(self.predictions[i], dtype=float)
                               for i in range(len(self.designs))])

    # ------------------------------------------------------------------ tables

    def summary(self) -> str:
        """A short text summary (what the CLI prints)."""
        m = self.n_subjects
        n_finite = int(np.isfinite(np.asarray(self.subject_objective, float)).sum())
        over = f" (over the {n_finite} subjects with a finite objective)" if n_finite < m \
            else ""
        what = (f"{self.kind} fit" if self.n_estimated else
                "objective at fixed parameters (nothing estimated: -2 log L, predictions and "
                "residuals at the given values)")
        lines = [f"{self.name}: {what} of model '{self.model.name}' to {m} subjects, "
                 f"{int(self.n_obs.sum())} observations",
                 f"  -2 log L = {self.objective:.3f}{over}, AIC = {self.aic:.3f}, BIC = "
                 f"{self.bic:.3f}, {self.n_estimated} estimated quantities",
                 f"  converged: {int(self.converged.sum())}/{m} subjects; "
                 f"{self.counters.get('simulations', 0)} batched simulations, "
                 f"{self.counters.get('subject_solves', 0)} subject solves "
                 f"({self.counters.get('failed_solves', 0)} failed); "
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
        n = self.counters.get("solves_before_zero", 0)
        if n:
            lines.append(f"model times before 0 during the fit: in {n} of "
                         f"{self.counters.get('subject_solves', 0)} subject solves")
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
        """Write the fit folder atomically (see the module docstring); returns its path.

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
        from .._io import atomic_directory
        from .report import write_figures, write_report

        folder = Path(folder)
        if inputs is None:
            prov = self.provenance or {}
            inputs = [prov.get("config_path"), prov.get("data_path"), prov.get("model_ref")]
            inputs = [p for p in inputs if isinstance(p, str) and p and Path(p).exists()]
        with atomic_directory(folder, overwrite=overwrite, inputs=inputs,
                              what="fit folder") as tmp:
            (tmp / "fit.json").write_text(json.dumps(self._json(), indent=1,
                                                     allow_nan=False) + "\n")
            self._write_subjects(tmp / "subjects.csv")
            self._write_data(tmp / "data.csv")
            figs = write_figures(self, tmp / "figures") if figures else []
            write_report(self, tmp / "report.md", figs)
        return folder

    def _json(self) -> dict:
        spec = getattr(self.model, "spec", None)
        return _clean({
            "format": FORMAT,
            "name": self.name,
            "kind": self.kind,
            "model": {"name": self.model.name, "text": getattr(spec, "text", "") or "",
                      "source": getattr(spec, "source", ""),
                      "fingerprint": getattr(spec, "fingerprint", "")},
            "subjects": list(self.subject_ids),
            "parameters": [dataclasses.asdict(p) for p in self.parameters],
            "observables": list(self.observables),
            "error_models": list(self.error_models),
            "solver": self.solver,
            "confidence": self.confidence,
            "objective": self.objective, "aic": self.aic, "bic": self.bic,
            "n_estimated": self.n_estimated, "n_observations": int(self.n_obs.sum()),
            "estimates": {"theta": self.theta, "se": self.se},
            "intervals": self.intervals,
            "open_intervals": self.open_intervals,
            "estimation_scale": {"x_cols": self.x_cols, "x_rows": [list(map(int, r))
                                                                   for r in self.x_rows],
                                 "x_hat": self.x_hat,
                                 "blocks": [{"entries": idx, "covariance": cov}
                                            for idx, cov in self.blocks]},
            "subject_objective": self.subject_objective, "n_obs": self.n_obs,
            "converged": self.converged, "messages": self.messages, "nfev": self.nfev,
            "failures": self.failures,
            "before_zero": self.before_zero,
            "starts_objective": self.starts_objective, "best_start": self.best_start,
            "profiles": self.profiles, "bootstrap": self.bootstrap,
            "warnings": self.warnings, "counters": self.counters, "timings": self.timings,
            "provenance": self.provenance,
        })

    def _write_subjects(self, path: Path) -> None:
        est = [(q, p) for q, p in enumerate(self.parameters) if p.estimated]
        header = ["subject", "converged", "objective", "n_obs", "nfev", "best_start",
                  "time_offset_model", "n_before_model_t0"]
        for _, p in est:
            header += [p.name, f"{p.name}_se"]
            for method in self.intervals:
                header += [f"{p.name}_{method}_lo", f"{p.name}_{method}_hi"]
        header.append("message")
        offsets = self.time_offsets
        bz = self.before_zero if self.before_zero is not None else np.zeros(self.n_subjects)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i, sid in enumerate(self.subject_ids):
                row = [sid, int(self.converged[i]), _fmt(self.subject_objective[i]),
                       int(self.n_obs[i]), int(self.nfev[i]), int(self.best_start[i]) + 1,
                       _fmt(offsets[i]), int(bz[i])]
                for q, _ in est:
                    row += [_fmt(self.theta[i, q]), _fmt(self.se[i, q])]
                    for ci in self.intervals.values():
                        row += [_fmt(ci[i, q, 0]), _fmt(ci[i, q, 1])]
                row.append(self.failures[i] if self.failures and self.failures[i]
                           else self.messages[i])
                w.writerow(row)

    def _write_data(self, path: Path) -> None:
        res = self.residuals().residuals if self.designs else []
        offsets = self.time_offsets
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", "time", "model_time", "observable", "value", "cens", "limit",
                        "offset_covariate", "prediction", "residual"])
            for i, d in enumerate(self.designs):
                for j in range(d.n):
                    w.writerow([d.id, _fmt(d.time[j]), _fmt(d.time[j] + offsets[i]),
                                self.observables[d.obs[j]], _fmt(d.value[j]), int(d.cens[j]),
                                _fmt(d.limit[j]), _fmt(d.offset_covariate),
                                _fmt(self.predictions[i][j]), _fmt(res[i][j])])


def _convergence_warnings(core, designs) -> list[str]:
    m = len(designs)
    failure = core.get("failure")
    if failure is None:
        failure = ["not converged" if not ok else "" for ok in core["success"]]
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


def _before_zero_warnings(core, designs, counters) -> list[str]:
    bz = np.asarray(core.get("before_zero", np.zeros(len(designs))), dtype=int)
    who = [designs[i].id for i in np.nonzero(bz > 0)[0]]
    if not who:
        return []
    return [f"model times before 0 at the estimates: {int(bz.sum())} data value(s) of "
            f"{len(who)}/{len(designs)} subjects ({', '.join(who[:5])}"
            f"{' ...' if len(who) > 5 else ''}) lie before the model's t = 0 (data time + "
            "offset < 0); they are evaluated at t = 0, where the objective is flat in the "
            "time offset, so the offset is not determined by them"]


def _percentiles(values, q) -> list[float]:
    """Percentiles of the finite values (NaN, and no RuntimeWarning, when there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan")] * len(q)
    return [float(x) for x in np.percentile(v, q)]


def _fmt(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return "" if not math.isfinite(x) else repr(x)


def _clean(obj):
    """JSON-safe: arrays to lists, NaN/inf to null, tuples to lists, numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _arr(x, dtype=float):
    return np.array(x, dtype=dtype) if x is not None else None


def load_fit(folder) -> FitResult:
    """Restore a saved fit (``fit.json`` and ``data.csv``) as a FitResult that can simulate.

    Raises
    ------
    FitError
        The folder is not a saved fit, or its model cannot be restored.
    """
    from ..model import compile_model, parse_model

    folder = Path(folder)
    path = folder / "fit.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise FitError(f"{folder}: not a saved fit (cannot read fit.json: "
                       f"{exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise FitError(f"{path}: not valid JSON ({exc})") from None
    if doc.get("format") != FORMAT:
        raise FitError(f"{path}: expected format {FORMAT!r}, found {doc.get('format')!r}")
    text = doc["model"]["text"]
    if not text:
        raise FitError(f"{path}: the model text is missing (a Python model cannot be restored "
                       "from a saved fit)")
    model = compile_model(parse_model(text, source=doc["model"]["source"] or str(path)))
    params = []
    for p in doc["parameters"]:
        p = dict(p)
        for key in ("lower", "upper"):
            if p[key] is None:
                p[key] = -math.inf if key == "lower" else math.inf
        params.append(FitParameter(**p))
    subjects = tuple(doc["subjects"])
    observables = tuple(doc["observables"])
    designs = _read_designs(folder / "data.csv", subjects, observables)
    est = doc["estimates"]
    scale = doc["estimation_scale"]
    blocks = [(np.array(b["entries"], dtype=int), _arr(b["covariance"]).reshape(
        len(b["entries"]), len(b["entries"]))) for b in scale["blocks"]]
    solver = dict(doc["solver"])
    if solver.get("max_step") is None:
        solver["max_step"] = math.inf
    profiles = doc.get("profiles")
    if profiles:
        profiles = {k: (_arr(v) if k != "pooled" else v) for k, v in profiles.items()}
        profiles["cols"] = profiles["cols"].astype(int)
    boot = doc.get("bootstrap")
    if boot:
        boot = {"cols": _arr(boot["cols"], int), "estimates": _arr(boot["estimates"])}
    m = len(subjects)
    predictions = [np.array([np.nan])] * m
    if designs:
        predictions = [d.pop("prediction") for d in designs]
        designs = [Design(**d) for d in designs]
    return FitResult(
        name=doc["name"], kind=doc["kind"], model=model, subject_ids=subjects,
        parameters=tuple(params), observables=observables,
        error_models=tuple(doc["error_models"]), solver=solver, theta=_arr(est["theta"]),
        se=_arr(est["se"]), intervals={k: _arr(v) for k, v in doc["intervals"].items()},
        x_cols=np.array(scale["x_cols"], dtype=int),
        x_rows=[np.array(r, dtype=int) for r in scale["x_rows"]], x_hat=_arr(scale["x_hat"]),
        blocks=blocks, subject_objective=_arr(doc["subject_objective"]),
        n_obs=np.array(doc["n_obs"], dtype=int), converged=np.array(doc["converged"], bool),
        messages=list(doc["messages"]), nfev=np.array(doc["nfev"], dtype=int),
        starts_objective=_arr(doc["starts_objective"]),
        best_start=np.array(doc["best_start"], dtype=int),
        failures=list(doc.get("failures") or [""] * m),
        before_zero=np.array(doc.get("before_zero") or [0] * m, dtype=int),
        designs=designs,
        predictions=predictions,
        open_intervals={k: np.array(v, dtype=bool) for k, v in doc["open_intervals"].items()},
        profiles=profiles, bootstrap=boot, warnings=list(doc["warnings"]),
        counters=doc["counters"], timings=doc["timings"], provenance=doc["provenance"],
        confidence=float(doc["confidence"]))


def _read_designs(path: Path, subjects, observables):
    if not path.is_file():
        return []
    rows: dict[str, list] = {s: [] for s in subjects}
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows[r["subject"]].append(r)

    def num(x):
        return float(x) if x != "" else np.nan

    out = []
    for s in subjects:
        rs = rows[s]
        out.append({
            "id": s,
            "time": np.array([num(r["time"]) for r in rs]),
            "obs": np.array([observables.index(r["observable"]) for r in rs], dtype=int),
            "value": np.array([num(r["value"]) for r in rs]),
            "cens": np.array([int(r["cens"]) for r in rs], dtype=int),
            "limit": np.array([num(r["limit"]) for r in rs]),
            "offset_covariate": num(rs[0]["offset_covariate"]) if rs else 0.0,
            "prediction": np.array([num(r["prediction"]) for r in rs]),
        })
    return out
