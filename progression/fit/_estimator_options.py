"""EstimatorOptions: the ``[estimator]`` options of a fit as one immutable, typed object.

The config validates the table (:mod:`progression.fit.config`, whose ``options`` is a plain
mapping); :func:`progression.fit.fit` turns it into an :class:`EstimatorOptions` once, and the
estimators, the optimisers (:mod:`progression.fit.optimize`, :mod:`progression.fit._batched`)
and the provenance read its attributes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["EstimatorOptions"]


@dataclass(frozen=True, kw_only=True)
class EstimatorOptions:
    """Options of the estimation (``[estimator]`` and ``[fit] max_failed_share``).

    Attributes
    ----------
    starts : int
        Starting points per subject (per fit for a joint fit); start 1 is the initial values.
    seed : int
        Seed of the starting points and the bootstrap.
    spread : "bounds" or float
        Starts drawn uniformly over the bounds on the estimation scale, or normally with this
        SD around the initial values.
    optimizer : {"batched", "lmfit"}
        Vectorised Levenberg-Marquardt over subjects, or lmfit's least_squares per task.
    ftol, xtol, gtol : float
        Convergence tolerances of the optimiser.
    max_nfev : int
        Most objective evaluations per task.
    x_scale : str or float
        Variable scaling of lmfit's least_squares (``"jac"``).
    batch_size : int
        Subjects per chunk (what an executor runs as one item).
    uncertainty : tuple of str
        ``covariance`` (always), ``profile``, ``bootstrap``.
    confidence : float
        Level of every interval.
    profile_points : int
        Grid points per profile.
    bootstrap_samples : int
        Bootstrap replicates (parametric for per-subject fits, resampled subjects for
        population fits).
    bootstrap_stratify : str
        A covariate of the population model: the population bootstrap resamples subjects
        within each of its values (PsN's ``-stratify_on``); empty: from all subjects.
    max_failed_share : float
        Largest share of failed subjects a fit may have and still be written.
    npde_samples : int
        Population fits: simulated replicates of each subject's design behind the NPDE and
        the VPC of the fit folder (seeded by ``seed``).
    saem_exploration, saem_smoothing : int or "auto"
        ``saem``: most exploration iterations (K1; exploration may end earlier by the
        automatic drift rule; ``"auto"``: at most 300) and smoothing iterations (K2; ``"auto"``:
        ended when the estimates move less than 0.1 SE between two 50-iteration windows and the
        SEs are stable, at least 100 and at most 500); defaults 300 and 200.
    saem_covariance : str
        ``saem``: ``"sa"`` (default), SAEM's own standard errors (stochastic approximation of
        the Fisher information, Louis' formula); ``"sandwich"``, the robust ``R^-1 S R^-1``
        at the SAEM estimates (Louis' information and the per-subject scores by one more MCMC
        pass with the parameters held: calibrated when the residual distribution or the
        random effects are misspecified); ``"focei"``, FOCE-I's sandwich at the SAEM
        estimates; ``"linearization"``, ``2 R^-1`` of the FOCE-I OFV (the model linearised
        around the conditional modes) at the SAEM estimates, whose value is reported too.
    saem_chains : int
        ``saem``: Markov chains per subject; 0 (default) is automatic, ``ceil(100 / N)``.
    is_samples : int
        ``saem``: importance-sampling draws per subject for the log-likelihood (default 2000);
        the FOCE family with ``importance_ofv``: the same for its importance-sampling OFV.
    importance_ofv : bool
        The FOCE family (``focei``, ``foce``, ``fo``, ``laplace``): after the estimation, the
        exact ``-2 log L`` at the estimates by importance sampling (``is_samples`` draws per
        subject from a multivariate t around each conditional mode with the inverse Hessian
        as its scale; NONMEM's ``$EST METHOD=IMP EONLY=1`` after FOCE), reported beside the
        method's own OFV as ``PopulationPart.ofv_importance``: the number to compare models
        fitted by different methods or with different residual distributions (default false).
    profile_parameters : tuple of str
        Population fits with ``"profile"`` in ``uncertainty``: the parameters profiled
        (``NAME``, ``"omega^2 NAME"``, ``"OBS.a"``); empty: every typical value, variance
        and residual parameter the fit estimates
        (:func:`progression.fit.profile_population`).
    vpc_end_events : tuple of str
        Population fits: terminal events of the model (``"death"``) that end a simulated
        patient's observations in the fit folder's VPC, each simulated patient enrolled
        event-free at its first observation (:mod:`progression.fit.population._vpc_events`);
        empty: the VPC simulates every observation of the design.
    """

    starts: int = 1
    seed: int = 0
    spread: str | float = "bounds"
    optimizer: str = "batched"
    ftol: float = 1e-6
    xtol: float = 1e-8
    gtol: float = 1e-8
    max_nfev: int = 200
    x_scale: str | float = "jac"
    batch_size: int = 100
    uncertainty: tuple = ("covariance",)
    confidence: float = 0.95
    profile_points: int = 6
    bootstrap_samples: int = 100
    bootstrap_stratify: str = ""
    max_failed_share: float = 0.5
    npde_samples: int = 200
    saem_exploration: int | str = 300
    saem_smoothing: int | str = 200
    saem_chains: int = 0
    is_samples: int = 2000
    importance_ofv: bool = False
    saem_covariance: str = "sa"
    profile_parameters: tuple = ()
    vpc_end_events: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "uncertainty", tuple(self.uncertainty))
        object.__setattr__(self, "profile_parameters", tuple(self.profile_parameters))
        object.__setattr__(self, "vpc_end_events", tuple(self.vpc_end_events))

    @classmethod
    def coerce(cls, options, where: str = "estimator options") -> EstimatorOptions:
        """``options`` as EstimatorOptions: None (the defaults), a mapping of option names (a
        validated config's ``options``) or an EstimatorOptions (returned as it is).

        Raises
        ------
        ConfigError
            A mapping with a key that is not an option (named, with the options there are).
        """
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in options if k not in names]
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; "
                              f"expected some of {', '.join(names)}")
        return cls(**dict(options))

    def replace(self, **changes) -> EstimatorOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Every option by name (for ``fit.json`` provenance and reports)."""
        out = dataclasses.asdict(self)
        out["uncertainty"] = list(self.uncertainty)
        out["profile_parameters"] = list(self.profile_parameters)
        out["vpc_end_events"] = list(self.vpc_end_events)
        return out
