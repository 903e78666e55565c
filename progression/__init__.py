"""progression: mechanistic ODE disease-progression modelling, built first for ALS."""

from .data import Cohort, read_cohort, write_cohort
from .errors import ConfigError, DataError, FitError, ModelError, ProgressionError, SolverError
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
from .simulate import METHODS, Simulation, Switch, simulate

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Cohort",
    "CompiledModel",
    "ConfigError",
    "DataError",
    "FitError",
    "ModelError",
    "ModelSpec",
    "ProgressionError",
    "PythonModel",
    "Simulation",
    "SolverError",
    "Switch",
    "available_models",
    "compile_model",
    "load_model",
    "parse_model",
    "read_cohort",
    "read_model_file",
    "simulate",
    "write_cohort",
]
