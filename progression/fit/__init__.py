"""Fitting: run configs, error models, estimators (per-subject, pooled), FitResult.

    import progression as pg
    from progression.fit import fit, load_fit, read_fit_config

    result = fit("configs/als_synthetic_individual.toml", jobs=2)
    result.save("fits/als_synthetic_individual", overwrite=True)   # replaces the shipped fit
    again = load_fit("fits/als_synthetic_individual")

``[fit] estimator`` picks an estimator of :data:`ESTIMATORS` (see
:mod:`progression.fit.estimators`, which also says how to add one); every estimator returns
the same typed parts (:mod:`progression.fit.parts`) and every fit is a :class:`FitResult`.
"""

from ._design_evaluation import DesignEvaluation, evaluate_design
from ._design_optimization import SamplingOptimum, optimize_sampling
from ._estimator_options import EstimatorOptions
from ._population_profile import PopulationProfile, profile_population, with_parameter_held
from ._start import start_from
from .config import FitConfig, FitParameter, parse_fit_config, read_fit_config
from .errormodels import ERROR_MODELS
from .estimate import fit
from .estimators import ESTIMATORS, EstimationProblem, Estimator, get_estimator
from .parts import (
    Diagnostics,
    Estimates,
    EstimatorOutput,
    IndividualPart,
    PopulationPart,
    Predictions,
    Uncertainty,
)
from .population._outputs import PopulationOutputs, population_outputs
from .problem import Design, Problem
from .result import FitResult, load_fit

__all__ = [
    "ERROR_MODELS",
    "ESTIMATORS",
    "Design",
    "DesignEvaluation",
    "Diagnostics",
    "EstimationProblem",
    "EstimatorOptions",
    "Estimates",
    "Estimator",
    "EstimatorOutput",
    "FitConfig",
    "FitParameter",
    "FitResult",
    "IndividualPart",
    "PopulationOutputs",
    "PopulationPart",
    "PopulationProfile",
    "Predictions",
    "Problem",
    "SamplingOptimum",
    "Uncertainty",
    "evaluate_design",
    "fit",
    "get_estimator",
    "load_fit",
    "optimize_sampling",
    "parse_fit_config",
    "population_outputs",
    "profile_population",
    "read_fit_config",
    "start_from",
    "with_parameter_held",
]
