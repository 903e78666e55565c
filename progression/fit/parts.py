"""Typed pieces of a fit: what an estimator returns and what a FitResult is built from.

Every estimator of :mod:`progression.fit.estimators` returns an :class:`EstimatorOutput`:

===================  =======================================================================
:class:`Estimates`   per-subject table of every fit quantity on the natural scale (shared
                     quantities repeated in every row) and the estimation-scale vector with
                     its layout (which column and which subject rows each entry sets)
:class:`Uncertainty` standard errors, intervals by method, covariance blocks, profiles and
                     bootstrap draws; each interval method is named (``"observed
                     information"``, ``"profile likelihood"``, ``"parametric bootstrap"``)
:class:`Diagnostics` objective per subject, convergence, failures, starts, evaluations, the
                     path that produced the numbers, counters and warnings
:class:`Predictions` per-subject predictions and normalised residuals at the data
===================  =======================================================================

A :class:`~progression.fit.result.FitResult` holds data, predictions and provenance once, an
:class:`IndividualPart` (estimates, uncertainty, diagnostics) and an optional
:class:`PopulationPart` (population estimators such as ``focei``; None otherwise).

Arrays are shared, not copied: the dataclasses are frozen (their fields cannot be rebound) but
an array inside one can be changed in place; nothing in progression does so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .._repr import brief, names
from ._estimator_output import EstimatorOutput  # noqa: F401  (part of this module's API)

__all__ = ["Estimates", "Uncertainty", "Profiles", "BootstrapDraws", "Diagnostics", "Work",
           "Predictions", "IndividualPart", "PopulationPart", "EstimatorOutput",
           "INTERVAL_METHODS"]

#: Interval key (``FitResult.intervals``, the ``subjects.csv`` columns) -> the method in words.
INTERVAL_METHODS = {
    "covariance": "observed information (Wald interval, delta method on the estimation scale)",
    "profile": "profile likelihood",
    "bootstrap": "parametric bootstrap (percentile interval)",
}


@dataclass(frozen=True)
class Estimates:
    """Point estimates of a fit.

    Attributes
    ----------
    theta : ndarray (m, Q)
        Per subject, every fit quantity on the natural scale (model parameters in model order,
        ``time_offset``, error parameters); fixed ones at their values, shared ones repeated.
    x_hat : ndarray (K,)
        Every estimated entry on the estimation scale (log, log10, logit or linear).
    x_cols : int ndarray (K,)
        The fit quantity (column of ``theta``) of each entry.
    x_rows : list of int ndarray (K,)
        The subject rows each entry sets: one row for a per-subject entry, every row for a
        shared one.
    """

    theta: np.ndarray
    x_hat: np.ndarray
    x_cols: np.ndarray
    x_rows: list

    @property
    def n_estimated(self) -> int:
        """Number of estimated entries (subjects x per-subject quantities + shared ones)."""
        return int(self.x_cols.size)


@dataclass(frozen=True)
class Profiles:
    """Profile likelihoods.

    Attributes
    ----------
    cols : int ndarray (D,)
        The profiled fit quantities.
    values : ndarray (R, D, n)
        Natural-scale grid of each profile; ``R`` is the number of subjects, or 1 for a
        ``joint`` profile (a quantity shared by every subject).
    m2ll : ndarray (R, D, n)
        -2 log L with the quantity held at each grid value and the others re-optimised.
    joint : bool
        One profile of the whole objective (shared quantities) instead of one per subject.
    """

    cols: np.ndarray
    values: np.ndarray
    m2ll: np.ndarray
    joint: bool = False

    def as_dict(self) -> dict:
        """The form saved in ``fit.json`` (``pooled`` names ``joint`` there)."""
        out = {"cols": self.cols, "values": self.values, "m2ll": self.m2ll}
        if self.joint:
            out["pooled"] = True
        return out


@dataclass(frozen=True)
class BootstrapDraws:
    """Parametric-bootstrap refits.

    Attributes
    ----------
    cols : int ndarray (D,)
        The re-estimated fit quantities.
    estimates : ndarray (m, B, D)
        Per subject and replicate, the refitted values (NaN where a refit failed).
    """

    cols: np.ndarray
    estimates: np.ndarray

    def as_dict(self) -> dict:
        """The form saved in ``fit.json``."""
        return {"cols": self.cols, "estimates": self.estimates}


@dataclass(frozen=True)
class Uncertainty:
    """Uncertainty of the estimates, with the method behind every interval named.

    Attributes
    ----------
    se : ndarray (m, Q)
        Delta-method standard errors on the natural scale from the observed information (NaN
        for fixed quantities or a failed covariance step).
    intervals : dict of str to ndarray (m, Q, 2)
        Interval key (``covariance``, ``profile``, ``bootstrap``) -> lower/upper.
    methods : dict of str to str
        Interval key -> the method in words (see :data:`INTERVAL_METHODS`).
    open_intervals : dict of str to bool ndarray (m, Q, 2)
        Per interval key, whether each end reached a bound or the edge of the profile.
    blocks : list of (int ndarray, ndarray)
        Covariance on the estimation scale: (entries of ``Estimates.x_hat``, matrix) per
        independent block (one per subject, or one ``joint`` block).
    joint : bool
        One covariance over every subject's entries (a shared quantity couples them).
    profiles : Profiles or None
    bootstrap : BootstrapDraws or None
    warnings : tuple of str
        Failed covariance steps, estimates at bounds, practically non-identifiable quantities.
    """

    se: np.ndarray
    intervals: dict
    methods: dict
    open_intervals: dict = field(default_factory=dict)
    blocks: list = field(default_factory=list)
    joint: bool = False
    profiles: Profiles | None = None
    bootstrap: BootstrapDraws | None = None
    warnings: tuple = ()


@dataclass(frozen=True)
class Work:
    """Work a fit did (every phase: estimation, polish, profiles, bootstrap).

    Attributes
    ----------
    simulations : int
        Batched simulate calls.
    subject_solves : int
        Rows (subjects, starts, replicates) simulated.
    failed_solves : int
        Rows whose simulation failed or gave non-finite residuals (penalised, not raised).
    solves_before_zero : int
        Rows with a data time before the model's t = 0.
    seconds_simulating : float
    failure_messages : tuple of str
        Up to ten distinct solver messages of failed rows.
    """

    simulations: int = 0
    subject_solves: int = 0
    failed_solves: int = 0
    solves_before_zero: int = 0
    seconds_simulating: float = 0.0
    failure_messages: tuple = ()

    @classmethod
    def from_counters(cls, c) -> Work:
        """From the running :class:`~progression.fit.optimize.Counters` of a fit."""
        return cls(simulations=c.simulations, subject_solves=c.rows,
                   failed_solves=c.failed_rows, solves_before_zero=c.rows_before_zero,
                   seconds_simulating=round(c.seconds_evaluating, 3),
                   failure_messages=tuple(sorted(set(c.events))[:10]))

    @classmethod
    def from_dict(cls, d: dict) -> Work:
        """From ``fit.json`` (keys another version added are left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "failure_messages" else v) for k, v in d.items()
                      if k in names})

    def as_dict(self) -> dict:
        """By name, as saved (``FitResult.counters``)."""
        out = dataclasses.asdict(self)
        out["failure_messages"] = list(self.failure_messages)
        return out


@dataclass(frozen=True)
class Diagnostics:
    """How the estimation went.

    Attributes
    ----------
    subject_objective : ndarray (m,)
        -2 log L per subject at the estimates (NaN where its simulation failed).
    n_obs : int ndarray (m,)
        Data values per subject.
    converged : bool ndarray (m,)
    messages : tuple of str
        The optimiser's message per subject.
    failures : tuple of str
        Per subject: why it failed (``""`` for a converged subject).
    nfev : int ndarray (m,)
        Objective evaluations of the winning start.
    starts_objective : ndarray (m, S)
        -2 log L of every start (the same row for every subject of a joint fit).
    best_start : int ndarray (m,)
    before_zero : int ndarray (m,)
        Data values whose model time is before the model's t = 0 at the estimates.
    numbers_from : str
        Which path (grid or exact outputs, sensitivities) produced the estimates, objective and
        covariance, in words.
    method : str
        The optimiser and Jacobian, in words.
    work : Work
        Simulations and solves (filled when the fit is assembled).
    warnings : tuple of str
        Convergence failures and data before the model's t = 0.
    """

    subject_objective: np.ndarray
    n_obs: np.ndarray
    converged: np.ndarray
    messages: tuple
    failures: tuple
    nfev: np.ndarray
    starts_objective: np.ndarray
    best_start: np.ndarray
    before_zero: np.ndarray
    numbers_from: str = ""
    method: str = ""
    work: Work = field(default_factory=Work)
    warnings: tuple = ()

    @property
    def objective(self) -> float:
        """-2 log L summed over the subjects with a finite objective (NaN if none)."""
        obj = np.asarray(self.subject_objective, dtype=float)
        ok = np.isfinite(obj)
        return float(np.sum(obj[ok])) if ok.any() else float("nan")


@dataclass(frozen=True)
class Predictions:
    """Model predictions and normalised residuals at the data.

    Attributes
    ----------
    values : list of ndarray
        Per subject, the prediction ``f`` at each data row.
    residuals : list of ndarray
        Per subject, the normalised residual of the error model at each data row (NaN for a
        censored row).
    """

    values: list
    residuals: list


@dataclass(frozen=True)
class IndividualPart:
    """Per-subject estimates, their uncertainty and the diagnostics of the estimation."""

    estimates: Estimates
    uncertainty: Uncertainty
    diagnostics: Diagnostics


@dataclass(frozen=True)
class PopulationPart:
    """Population-level results (nonlinear mixed effects), filled by population estimators
    (``focei``); None on individual and pooled fits.

    Attributes
    ----------
    fixed_effects : dict of str to float
        Typical values (natural scale).
    fixed_effects_se : dict of str to float
        Their standard errors (natural scale, delta method).
    omega_names : tuple of str
        The quantities with a random effect, in the order of ``omega``.
    omega : ndarray (n_eta, n_eta)
        Covariance of the random effects on the estimation scale.
    sigma : dict of str to float
        Estimated residual error parameters (SDs).
    ebes : ndarray (m, n_eta)
        Empirical Bayes estimates of each subject's random effects (conditional modes).
    shrinkage : dict of str to float
        SD-based eta shrinkage per random effect, ``1 - SD(EBE) / omega`` (a fraction).
    omega_se, sigma_se : dict of str to float
        Standard errors of Omega's diagonal (variances) and of the residual SDs.
    cv_percent : dict of str to float
        Between-subject variability ``100 sqrt(exp(omega^2) - 1)`` of log-scale parameters
        (NaN for other scales).
    ofv : float
        Objective in NONMEM's convention (``-2 log L`` without ``N log 2 pi``).
    m2ll : float
        ``-2 log L`` with the constant (the fit's ``objective``).
    aic, bic : float
        From ``m2ll`` and every population parameter (theta, Omega, sigma).
    n_parameters : int
        Estimated population parameters.
    iterations, evaluations : int
        Outer iterations and objective/gradient evaluations.
    converged : bool
    method : str
        The estimator (``"focei"``).
    covariance_method : str
        How the covariance step was computed, in words.
    covariance : ndarray (K, K) or None
        The covariance step's matrix of the population parameters on the scales they were
        estimated on (NaN where it failed).
    covariance_names : tuple of str
        Its rows: ``theta NAME`` (the parameter's estimation scale), ``log omega^2 NAME``,
        ``log OBS.a`` (residual SDs).
    history : ndarray (T, 2 + D + S + E) or None
        The outer iterations: iteration number, typical values (natural scale, the order of
        ``fixed_effects``), residual SDs (``sigma``), Omega's diagonal (``omega_names``), OFV.
    scales : dict of str to str
        Estimation scale of each population parameter (``log``, ``log10``, ``logit``,
        ``linear``); random effects add to the typical value on this scale.
    bounds : dict of str to (float, float)
        Bounds of each population parameter (natural scale; logit scales map into them).
    covariate_effects : tuple of dict
        The covariate model: one :class:`~progression.fit.population._model.CovariateEffect`
        as a dict per effect (parameter, covariate, effect, reference, levels, values,
        estimated, lower, upper); the typical value of a subject is ``TV * prod F`` (see
        :mod:`progression.fit.population._model`).
    coefficients, coefficients_se : dict of str to float
        Covariate coefficients (``P~COV``, ``P~COV=LEVEL``) and their standard errors.
    omega_blocks : tuple of dict
        Omega's structure: ``{"parameters": [...], "fixed": bool}`` per block (every
        random effect in one; empty: diagonal, nothing fixed).
    omega_offdiag_se : dict of str to float
        Standard errors of Omega's off-diagonal covariances, keyed ``"A,B"``.
    omega_correlation_se : dict of str to float
        Standard errors of the random effects' correlations (delta method), keyed ``"A,B"``.
    condition_number : float
        Of the correlation matrix of the estimates (NONMEM's; NaN without a covariance
        step).
    r_condition_number : float
        Of R, the Hessian of the OFV in the estimation parameters.
    subject_covariates : dict of str to list
        Each covariate of :attr:`covariate_names` per subject (the fit's subject order):
        the values the typical values were computed from, and the covariate distribution of
        the fitted population.
    history_extra : ndarray (T, C + E (E - 1) / 2) or None
        Per row of ``history``: every covariate coefficient (``coefficients`` order), then
        Omega's off-diagonal elements (lower triangle, row by row).
    ofv_linearised : float
        SAEM with ``saem_covariance = "focei"`` or ``"linearization"``: the OFV by
        linearisation (the FOCE-I objective at the SAEM estimates, NONMEM's convention;
        Monolix's "log-likelihood by linearization"); NaN otherwise.
    ofv_importance, ofv_importance_se : float
        The FOCE family with ``[estimator] importance_ofv = true``: the exact ``-2 log L`` at
        the estimates by importance sampling (NONMEM's convention, without ``N log 2 pi``) and
        its Monte Carlo SE; NaN otherwise (SAEM's ``ofv`` is this number already).
    fixed_typical : tuple of str
        Typical values held at their config value (``value_fixed = true``): not estimated,
        SE 0 in ``covariance``, "fixed" in the report and 1E+10 in the ``.ext`` table.
    profiles : dict of str to dict
        Profile likelihoods computed with the fit (``[estimator] uncertainty = ["covariance",
        "profile"]``), by parameter name, as :meth:`PopulationProfile.to_dict` gives them
        (:meth:`profile` returns the object).
    priors : dict
        SAEM's priors (``prior``, ``eta_prior`` of ``[parameters.NAME]``): ``{NAME: {"value",
        "sd"}}`` for a typical value, ``{"omega^2 NAME": {"value", "df"}}`` for a variance;
        empty without priors (the estimates are then maximum likelihood, with priors the
        posterior mode).
    prior_objective : float
        The priors' ``-2 log p`` at the estimates (constants left out; 0 without priors):
        the posterior objective is ``ofv + prior_objective``; ``ofv``, AIC and BIC are the
        data's.
    bootstrap : dict
        The case bootstrap computed with the fit (``uncertainty = ["covariance",
        "bootstrap"]``) as :meth:`PopulationBootstrap.to_dict` gives it; empty without one
        (:meth:`bootstrap_result` returns the object).
    """

    fixed_effects: dict
    fixed_effects_se: dict
    omega_names: tuple
    omega: np.ndarray
    sigma: dict
    ebes: np.ndarray
    shrinkage: dict
    omega_se: dict = field(default_factory=dict)
    sigma_se: dict = field(default_factory=dict)
    cv_percent: dict = field(default_factory=dict)
    ofv: float = float("nan")
    m2ll: float = float("nan")
    aic: float = float("nan")
    bic: float = float("nan")
    n_parameters: int = 0
    iterations: int = 0
    evaluations: int = 0
    converged: bool = False
    method: str = ""
    covariance_method: str = ""
    covariance: np.ndarray | None = None
    covariance_names: tuple = ()
    history: np.ndarray | None = None
    scales: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    covariate_effects: tuple = ()
    coefficients: dict = field(default_factory=dict)
    coefficients_se: dict = field(default_factory=dict)
    omega_blocks: tuple = ()
    omega_offdiag_se: dict = field(default_factory=dict)
    omega_correlation_se: dict = field(default_factory=dict)
    condition_number: float = float("nan")
    r_condition_number: float = float("nan")
    subject_covariates: dict = field(default_factory=dict)
    history_extra: np.ndarray | None = None
    ofv_linearised: float = float("nan")
    ofv_importance: float = float("nan")
    ofv_importance_se: float = float("nan")
    fixed_typical: tuple = ()
    profiles: dict = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)
    priors: dict = field(default_factory=dict)
    prior_objective: float = 0.0

    def __repr__(self) -> str:
        return brief(self, self.method, f"OFV {self.ofv:.4f}",
                     f"typical values {names(self.fixed_effects)}",
                     f"random effects {names(self.omega_names)}",
                     f"residual {names(self.sigma)}",
                     "converged" if self.converged else "not converged")

    # ------------------------------------------------------------ the draw API

    @property
    def covariate_names(self) -> tuple:
        """The subject covariates the population model uses (first use order)."""
        out: list = []
        for e in self.covariate_effects:
            if e["covariate"] not in out:
                out.append(e["covariate"])
        return tuple(out)

    def _typical_model(self):
        from ._population_values import typical_model

        return typical_model(self)

    def _omega_model(self):
        from ._population_values import omega_model

        return omega_model(self)

    def parameter_vector(self) -> np.ndarray:
        """The estimated population parameters on their estimation scales, in
        ``covariance_names`` order (``theta NAME``: the parameter's scale; ``log omega^2``,
        ``log L``, ``L A,B``: Omega's parametrisation; ``log OBS.a``: log residual SD;
        ``coef P~COV``: covariate coefficient).

        Returns
        -------
        ndarray (K,)
        """
        from ._population_values import parameter_vector

        return parameter_vector(self)

    def profile(self, name: str):
        """The profile likelihood of ``name`` computed with the fit (``[estimator]
        uncertainty = ["covariance", "profile"]``) as a
        :class:`~progression.fit.PopulationProfile`."""
        from ._population_profile import PopulationProfile

        if name not in self.profiles:
            raise KeyError(f"no profile of {name!r} in this fit (profiled: "
                           f"{', '.join(self.profiles) or 'none'})")
        return PopulationProfile.from_dict(self.profiles[name])

    def bootstrap_result(self):
        """The fit's case bootstrap (:class:`~progression.fit._population_bootstrap.
        PopulationBootstrap`: ``intervals()``, ``standard_errors()``, ``samples``), or None."""
        from ._population_bootstrap import PopulationBootstrap

        return PopulationBootstrap.from_dict(self.bootstrap) if self.bootstrap else None

    def profile_intervals(self) -> dict:
        """The profile-likelihood intervals computed with the fit, ``{name: (lo, hi)}``
        (an open end is the farthest value still inside; ``profile(name).open_ends``)."""
        return {k: self.profile(k).interval for k in self.profiles}

    def table(self, level: float = 0.95) -> list[dict]:
        """The population parameter table of ``report.md`` as rows (typical values,
        Omega, residual parameters, covariate coefficients; estimate, SE, RSE %, Wald
        interval at ``level``, CV %, shrinkage %):
        :func:`~progression.fit._population_table.population_table`."""
        from ._population_table import population_table

        return population_table(self, level)

    def intervals(self, level: float = 0.95) -> dict:
        """Wald intervals of the population parameters (estimation scale, mapped back):
        :func:`~progression.fit._population_intervals.wald_intervals`."""
        from ._population_intervals import wald_intervals

        return wald_intervals(self, level)

    def with_parameters(self, x) -> PopulationPart:
        """A copy with the population parameters set from ``x`` (K,), a vector in
        :meth:`parameter_vector`'s layout (e.g. a draw from ``covariance``); EBEs,
        shrinkage, standard errors and the objective are those of the fit."""
        from ._population_values import with_parameters

        return with_parameters(self, x)

    def _typical_internal(self, covariates, n):
        from ._population_values import typical_internal

        return typical_internal(self, covariates, n)

    def typical_values(self, covariates=None, n: int = 1) -> dict:
        """Natural-scale typical values with the covariate effects.

        Parameters
        ----------
        covariates : mapping of str to array (n,), optional
            Values of :attr:`covariate_names` per subject (categorical: the categories).
        n : int
            Number of rows when the model has no covariates.

        Returns
        -------
        dict of str to ndarray (n,)
        """
        from ._population_values import typical_values

        return typical_values(self, covariates, n)

    def individual_values(self, eta, covariates=None) -> dict:
        """Natural-scale individual values of every population parameter: the typical value
        on the estimation scale plus the random effect, transformed back.

        Parameters
        ----------
        eta : ndarray (n, E)
            Random effects in ``omega_names`` order.
        covariates : mapping of str to array (n,), optional

        Returns
        -------
        dict of str to ndarray (n,)
        """
        from ._population_values import individual_values

        return individual_values(self, eta, covariates)

    @classmethod
    def from_dict(cls, d: dict) -> PopulationPart:
        """From ``fit.json`` (null numbers back to NaN; keys another version added are left
        out)."""
        names = {f.name for f in dataclasses.fields(cls)}

        def num(v):
            return float("nan") if v is None else v

        out = {}
        for k, v in d.items():
            if k not in names:
                continue
            if k in ("omega", "ebes", "covariance", "history", "history_extra"):
                v = None if v is None else np.array(v, dtype=float)
            elif k in ("omega_names", "covariance_names", "fixed_typical"):
                v = tuple(v)
            elif k in ("covariate_effects", "omega_blocks"):
                v = tuple(dict(e) for e in v)
            elif k == "subject_covariates":
                v = {kk: list(vv) for kk, vv in v.items()}
            elif k == "bounds":
                v = {kk: (-math.inf if b[0] is None else b[0], math.inf if b[1] is None
                          else b[1]) for kk, b in v.items()}
            elif isinstance(v, dict):
                v = {kk: num(vv) for kk, vv in v.items()}
            elif k in ("ofv", "m2ll", "aic", "bic", "condition_number",
                       "r_condition_number", "ofv_linearised", "ofv_importance",
                       "ofv_importance_se"):
                v = num(v)
            out[k] = v
        return cls(**out)
