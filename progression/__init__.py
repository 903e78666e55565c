"""progression: mechanistic ODE disease-progression modelling, built first for ALS."""

from .data import Cohort, read_cohort, write_cohort
from .data.describe import describe_cohort, format_description
from .data.synthetic import (
    PopulationConfig,
    load_population_config,
    read_truth,
    synthetic_cohort,
    write_synthetic,
)
from .errors import ConfigError, DataError, FitError, ModelError, ProgressionError, SolverError
from .fit import FitConfig, FitResult, fit, load_fit, read_fit_config
from .interventions import LIBRARY, PK, Intervention, library, to_switches
from .model import (
    CompiledModel,
    ModelSpec,
    PythonModel,
    available_models,
    compile_model,
    load_model,
    parse_model,
    read_model_file,
)
from .scenarios import Comparison, Endpoints, Variability, VirtualPopulation, compare
from .simulate import METHODS, Simulation, Switch, simulate
from .trials import Dropout, Enrolment, PowerCurve, VirtualTrial

__version__ = "0.1.0"

__all__ = [
    "FitConfig",
    "FitResult",
    "fit",
    "load_fit",
    "read_fit_config",
    "LIBRARY",
    "PK",
    "Intervention",
    "library",
    "to_switches",
    "Comparison",
    "Endpoints",
    "Variability",
    "VirtualPopulation",
    "compare",
    "Dropout",
    "Enrolment",
    "PowerCurve",
    "VirtualTrial",
    "METHODS",
    "Cohort",
    "CompiledModel",
    "ConfigError",
    "DataError",
    "FitError",
    "ModelError",
    "ModelSpec",
    "PopulationConfig",
    "ProgressionError",
    "PythonModel",
    "Simulation",
    "SolverError",
    "Switch",
    "available_models",
    "compile_model",
    "describe_cohort",
    "format_description",
    "load_model",
    "load_population_config",
    "parse_model",
    "read_cohort",
    "read_model_file",
    "read_truth",
    "simulate",
    "synthetic_cohort",
    "write_cohort",
    "write_synthetic",
]
