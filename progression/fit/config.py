"""Run configs for fits: TOML files read with :mod:`tomllib` into an immutable :class:`FitConfig`.

Every problem in a config (unknown keys, wrong types, bounds that do not hold, parameters or
observables the model lacks, ...) is collected and reported at once in one
:class:`~progression.errors.ConfigError`, each line naming the file and the key. Reading a
config writes nothing.

Paths inside a config (the data file, a model file, the output folder) are relative to the
config file's folder. Without ``[output] folder`` a fit goes to ``fits/<name>`` in the current
directory. See the README section "Fitting" for every key.

This module holds the public face (the dataclasses, the constants and the two readers); each
table is read by :mod:`progression.fit._config_sections`, and problems are collected by
:class:`progression.fit._config_checks._Check`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._repr import changed_fields
from ..errors import ConfigError
from ._config_checks import _Check

__all__ = ["FitConfig", "FitParameter", "Condition", "read_fit_config", "parse_fit_config",
           "OFFSET",
           "ESTIMATORS", "POPULATION_ESTIMATORS", "UNCERTAINTY", "ROLES"]

#: Name of the per-subject time offset (model time = data time + offset).
OFFSET = "time_offset"
ESTIMATORS = ("individual", "pooled", "focei", "foce", "fo", "laplace", "saem")
#: Estimators of a population model (``estimate = "population"``, random effects ``eta``).
POPULATION_ESTIMATORS = ("focei", "foce", "fo", "laplace", "saem")
ROLES = ("subject", "shared", "fixed", "population")
UNCERTAINTY = ("covariance", "profile", "bootstrap")
OUTPUT_MODES = ("grid", "exact")
#: ``[solver] refine``: polish grid-path estimates on the exact path, and report objective and
#: covariance from it ("exact"), or report the grid path's own numbers ("none").
REFINE_MODES = ("exact", "none")
SENSITIVITY_MODES = ("grid", "forward")
OPTIMIZERS = ("batched", "lmfit")
DATA_FORMATS = ("long", "wide", "nonmem", "proact")

_TOP = ("fit", "data", "error", "parameters", "omega", "estimator", "solver", "output",
        "conditions", "survival")
#: Estimators that take covariate effects, Omega blocks and fixed Omega elements (saem
#: refuses, at fit time and by key, the effects that are not linear in its M-step).
STRUCTURED_ESTIMATORS = ("focei", "foce", "fo", "laplace", "saem")
#: Default largest share of subjects that may fail (no convergence, or a simulation that
#: failed at every point tried) before a fit is refused with EstimationFailed.
MAX_FAILED_SHARE = 0.5
_ESTIMATOR_DEFAULTS = {
    "starts": 1, "seed": 0, "spread": "bounds", "max_nfev": 200, "ftol": 1e-6, "xtol": 1e-8,
    "gtol": 1e-8, "batch_size": 100, "uncertainty": ["covariance"], "confidence": 0.95,
    "profile_points": 6, "bootstrap_samples": 100, "bootstrap_stratify": "",
    "optimizer": "batched",
    "npde_samples": 200, "saem_exploration": 300, "saem_smoothing": 200, "saem_chains": 0,
    "is_samples": 2000, "importance_ofv": False, "saem_covariance": "sa", "profile_parameters": [],
    "vpc_end_events": [],
}
_SOLVER_DEFAULTS = {"method": "auto", "rtol": 1e-6, "atol": 1e-9, "max_step": math.inf,
                    "max_steps": 100_000, "outputs": "grid", "grid_step": "auto",
                    "sensitivities": "grid", "per_subject_steps": True, "refine": "exact",
                    "grid_error": 2e-5}
_OUTPUT_DEFAULTS = {"folder": None, "figures": True}


@dataclass(frozen=True)
class FitParameter:
    """One quantity the fit knows: a model parameter, the time offset or an error parameter.

    Attributes
    ----------
    name : str
        Model parameter name, ``"time_offset"``, or ``"OBSERVABLE.a"`` (``.b``, ``.sigma``)
        for error parameters.
    kind : {"model", "offset", "error"}
    estimate : {"subject", "shared", "fixed"}
    value : float
        Starting value when estimated, the value when fixed.
    lower, upper : float
        Bounds (natural scale).
    scale : {"linear", "log", "logit", "log10"}
        Estimation scale.
    covariate : str or None
        Time offset only: offset_i = value_i + factor * covariate_i.
    factor : float
    anchor : str or None
        Time offset only: an event of the model (``[parameters.time_offset] anchor``). Then
        value_i is not a parameter but the model time of that event under subject i's own
        parameters, ``T_i(theta_i)`` (:mod:`progression.fit._anchor`), so that model time =
        data time + T_i + factor * covariate_i: with ``factor = -1`` and the data time of
        the event as the covariate, the subject's model reaches the event exactly at the
        data time it was observed. ``estimate`` is ``"fixed"`` (nothing is estimated for
        the offset; its derivatives come through the model parameters), ``lower``/``upper``
        the window of model time searched for the event.
    observable, key : str or None
        Error parameters: the observable and ``"a"``, ``"b"`` or ``"sigma"``.
    eta : float or None
        Population parameters (``estimate = "population"``): the starting variance of the
        random effect on the estimation scale (Omega's diagonal element); None for no random
        effect.
    eta_fixed : bool
        The random effect's variance is fixed at ``eta`` (a 1 x 1 block of Omega).
    value_fixed : bool
        Population parameters with a random effect: the typical value is held at ``value``
        (NONMEM's ``THETA FIX``): not estimated, out of the covariance step (SE 0); its
        random effect, variance and covariate coefficients are estimated as usual.
    covariates : tuple of CovariateEffect
        Population parameters: covariate effects on the typical value
        (``[parameters.NAME.covariates.COV]`` tables; see
        :mod:`progression.fit.population._model`).
    omega_block : OmegaBlock or None
        The block of Omega the random effect belongs to (``[omega] blocks``; None: its own
        1 x 1 block). Every member of a block carries the same block.
    prior : tuple
        Population parameters: ``(mean, sd)`` of a normal prior of the typical value (mean
        on the natural scale, SD on the estimation scale); ``()`` for none.
    eta_prior : tuple
        ``(value, df)`` of an inverse-Wishart prior of the random effect's variance
        (:mod:`progression.fit.population._prior`); ``()`` for none.
    """

    name: str
    kind: str
    estimate: str
    value: float
    lower: float
    upper: float
    scale: str
    covariate: str | None = None
    factor: float = 1.0
    observable: str | None = None
    key: str | None = None
    eta: float | None = None
    eta_fixed: bool = False
    covariates: tuple = ()
    value_fixed: bool = False
    omega_block: Any = None
    anchor: str | None = None
    prior: tuple = ()
    eta_prior: tuple = ()

    def __repr__(self) -> str:
        return changed_fields(self)

    def __post_init__(self):
        # fit.json gives the priors as lists, the covariate effects and the block as dicts
        # (dataclasses.asdict)
        object.__setattr__(self, "prior", tuple(self.prior or ()))
        object.__setattr__(self, "eta_prior", tuple(self.eta_prior or ()))
        if self.covariates or self.omega_block is not None:
            from .population._model import CovariateEffect, OmegaBlock

            object.__setattr__(self, "covariates", tuple(
                CovariateEffect.from_dict(c) for c in self.covariates))
            if self.omega_block is not None:
                object.__setattr__(self, "omega_block", OmegaBlock.from_dict(self.omega_block))

    @property
    def estimated(self) -> bool:
        return self.estimate != "fixed"


@dataclass(frozen=True)
class Condition:
    """An experimental condition (PEtab style): fixed parameter overrides and inputs.

    Data values carry a condition name (data column ``condition``); within one subject the
    values of each condition are simulated as a separate unit with the condition's overrides
    and doses (added to the subject's own), sharing the subject's estimated parameters.

    Attributes
    ----------
    name : str
    parameters : tuple of (str, float)
        Model parameter -> value in this condition (fixed: the condition's values do not
        depend on the parameter's estimate).
    doses : tuple of progression.dosing.Dose
        Doses given in this condition (times in data time, like the subject's own).
    description : str
    """

    name: str
    parameters: tuple = ()
    doses: tuple = ()
    description: str = ""


@dataclass(frozen=True)
class FitConfig:
    """A validated fit config.

    Attributes
    ----------
    name, description : str
    source : str
        The config file (or ``"<string>"``).
    text : str
        The config text as read (saved with the fit).
    base_dir : Path
        Folder relative paths are resolved against.
    model_ref : str
        Built-in model name or resolved model file path.
    estimator : {"individual", "pooled"}
    data : dict
        ``path`` (resolved), ``format``, ``mapping``, ``time_unit``, ``sidecar``, ``subjects``.
    errors : dict of str to str
        Observable -> error model name, in the order given.
    parameters : tuple of FitParameter
        Every model parameter (in model order), then the time offset, then error parameters.
    options : dict
        Estimator options (``starts``, ``seed``, ``spread``, ``max_nfev``, ``ftol``, ``xtol``,
        ``gtol``, ``batch_size``, ``uncertainty``, ``confidence``, ``profile_points``,
        ``bootstrap_samples``, ``optimizer``), and ``max_failed_share`` from ``[fit]``: the
        largest share of subjects that may fail (not converge, or have a simulation fail at
        every point tried) before the fit is refused with
        :class:`~progression.errors.EstimationFailed` (default 0.5; 1 refuses only a fit in
        which no subject has a finite objective).
    solver : dict
        ``method``, ``rtol``, ``atol``, ``max_step``, ``max_steps``, ``outputs``, ``grid_step``,
        ``sensitivities``, ``per_subject_steps`` (grid outputs: states integrated with one
        step sequence per subject, Rodas4, so that batching changes nothing; ``method`` then
        serves the forward-sensitivity and exact-output paths), ``refine`` (``"exact"``:
        grid-path estimates are polished by a few Levenberg-Marquardt iterations on the exact
        path, which then gives the reported objective and covariance; ``"none"``).
    output : dict
        ``folder`` (resolved Path or None) and ``figures``.
    conditions : tuple of Condition
        ``[conditions.NAME]`` tables: experimental conditions the data's ``condition`` column
        names.
    survival : SurvivalSpec or None
        ``[survival]``: the time-to-event part of the likelihood (a joint longitudinal and
        survival model; :mod:`progression.fit._survival_likelihood`). The events come from
        the data's events table (``subject, time, event``; a sidecar's ``events`` key)::

            [survival]
            hazard = "death"        # the model's [hazards.NAME] (default: its only one)
            events = ["death"]      # event types counted as the event (default: the
                                    # hazard's event); others and "censored": right-censored
            entry = "first"         # delayed entry at the first observation; "enrolment"
                                    # (data time 0) or "none" (at risk from model time 0)
            interval = false        # true: the event lies between the last observation
                                    # before it and its recorded time (interval censoring)

        Each subject with an event row adds ``log h(T) - Lambda(T) + Lambda(T0)`` (event),
        ``-Lambda(T) + Lambda(T0)`` (censored) or ``log(S(L) - S(R)) - log S(T0)``
        (interval); gradients from the sensitivities of the cumulative-hazard state.
        Estimators: ``individual``, ``pooled`` and ``saem`` (the survival term
        ``-2 log p(T_i | phi_i)`` joins the chains' data term and the importance sampling;
        every estimated population parameter needs a random effect; exact path, SAEM's own
        standard errors) and ``laplace`` (the term as residuals whose squares add up to it,
        with their exact Hessian over eta); ``focei``, ``foce`` and ``fo`` are refused
        (FOCE's Gauss-Newton curvature of the term is half the exact one for a frailty and
        biases its variance; NONMEM uses LAPLACE for time-to-event data).
    """

    name: str
    description: str
    source: str
    text: str
    base_dir: Path
    model_ref: str
    estimator: str
    data: dict
    errors: dict
    parameters: tuple
    options: dict
    solver: dict
    output: dict
    model: Any = field(default=None, compare=False, repr=False)
    conditions: tuple = ()
    survival: Any = None

    def parameter(self, name: str) -> FitParameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def output_folder(self) -> Path:
        return self.output["folder"] or Path("fits") / self.name

    @property
    def solver_options(self):
        """The ``[solver]`` integration settings as the one :class:`~progression.options.
        SolverOptions` that ``simulate``, ``compare`` and ``VirtualTrial`` also take."""
        from ..options import SolverOptions

        return SolverOptions(**{k: self.solver[k] for k in SolverOptions.__dataclass_fields__})

    def with_solver(self, solver) -> FitConfig:
        """A copy whose integration settings are ``solver`` (a ``SolverOptions`` or a mapping
        of its fields; unnamed fields keep the config's values); the fit-path settings
        (``outputs``, ``grid_step``, ``refine``, ...) are kept."""
        from ..options import SolverOptions

        opts = (solver if isinstance(solver, SolverOptions)
                else SolverOptions.coerce({**self.solver_options.as_dict(), **dict(solver)}))
        return self.replace(solver={**self.solver, **opts.as_dict()})

    def replace(self, **changes) -> FitConfig:
        """A copy with some fields changed (e.g. ``options={**cfg.options, "starts": 3}``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


def read_fit_config(path, *, check_data: bool = True) -> FitConfig:
    """Read and validate a fit config file.

    ``check_data=False`` accepts a missing ``[data]`` table or data file (for fits given their
    data in memory).

    Raises
    ------
    ConfigError
        One error listing every problem, each naming the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    return parse_fit_config(text, source=str(path), base_dir=path.parent, name=path.stem,
                            check_data=check_data)


def parse_fit_config(text: str, *, source: str = "<string>", base_dir=None,
                     name: str | None = None, check_data: bool = True) -> FitConfig:
    """Validate a fit config given as TOML text (see :func:`read_fit_config`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    base_dir = Path(base_dir) if base_dir is not None else Path(".")
    chk = _Check(source)
    chk.unknown("", doc, _TOP)

    # one reader per section (imported here: they import this module's dataclasses and
    # constants), called in a fixed order so that problems are always listed in that order
    from . import _config_conditions as conditions_reader
    from . import _config_sections as sections
    from ._config_population import omega_table
    from ._config_prior import check_priors

    fit_name, description, estimator, max_failed_share, model, model_ref = sections.fit_table(
        chk, doc, name, base_dir)
    data_out = sections.data_table(chk, doc, base_dir, check_data)
    errors, error_params = sections.error_tables(chk, doc, model)
    parameters = sections.parameter_tables(chk, doc, model, estimator, errors, error_params)
    parameters = omega_table(chk, doc, parameters, estimator)
    check_priors(chk, doc, parameters, estimator)
    parameters = sections.start_table(chk, doc, base_dir, parameters)
    options = sections.estimator_table(chk, doc, max_failed_share, model)
    solver = sections.solver_table(chk, doc)
    output = sections.output_table(chk, doc, base_dir)
    conditions = conditions_reader.condition_tables(chk, doc.get("conditions"), model,
                                                    parameters)
    survival = conditions_reader.survival_table(chk, doc, model, estimator)

    if chk.problems:
        raise ConfigError(f"{source}: {len(chk.problems)} problem"
                          f"{'s' if len(chk.problems) > 1 else ''} in the fit config",
                          chk.problems) if len(chk.problems) > 1 else ConfigError(
                              chk.problems[0])
    return FitConfig(name=fit_name, description=description, source=source, text=text,
                     base_dir=base_dir, model_ref=model_ref, estimator=estimator,
                     data=data_out, errors=errors, parameters=parameters, options=options,
                     solver=solver, output=output, model=model, conditions=conditions,
                     survival=survival)
