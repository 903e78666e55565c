"""progression: mechanistic ODE disease-progression modelling, built first for ALS."""

import importlib
import sys
import types

from .errors import ConfigError, DataError, FitError, ModelError, ProgressionError, SolverError

# Everything else is imported on first use (PEP 562): ``import progression`` stays fast, and a
# command that only lists models never pays for scipy.stats, sympy, lmfit or matplotlib.
_LAZY = {
    ".data": ("Cohort", "read_cohort", "write_cohort"),
    ".als.describe": ("describe_cohort", "format_description"),
    ".als.calibration": ("calibrate", "CalibrationResult", "load_calibration_config"),
    ".als.synthetic": ("PopulationConfig", "load_population_config", "synthetic_cohort"),
    ".virtual.synthesis": ("read_truth", "write_synthetic", "simulate_cohort"),
    ".virtual.cohort_config": ("ObservableSpec", "ParameterSpec"),
    ".fit": ("DesignEvaluation", "FitConfig", "FitResult", "PopulationProfile",
             "SamplingOptimum", "evaluate_design", "fit", "load_fit", "optimize_sampling",
             "profile_population", "read_fit_config"),
    ".als.library": ("LIBRARY", "library"),
    ".virtual.interventions": ("PK", "Intervention", "to_switches"),
    ".model": ("CompiledModel", "ModelSpec", "PythonModel", "available_models", "compile_model",
               "load_model", "parse_model", "read_model_file"),
    ".virtual.comparison": ("Comparison",),
    ".virtual.endpoints": ("Endpoints",),
    ".virtual.population": ("Variability", "VirtualPopulation"),
    ".virtual.scenarios": ("compare",),
    ".dosing": ("Dose",),
    ".options": ("SolverOptions",),
    ".simulate": ("METHODS", "Simulation", "Switch", "simulate"),
    ".virtual.trials": ("Dropout", "Enrolment", "PowerCurve", "VirtualTrial"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

#: Names that are both a submodule and a function; the function is what ``progression.NAME``
#: means (as when everything was imported eagerly), the submodule stays importable by its name.
_SHADOWED = frozenset({"fit", "simulate"})


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        # A submodule not imported yet (``progression.plots``): import it, as an eager package
        # would have done.
        if not name.startswith("__"):
            try:
                return importlib.import_module(f".{name}", __name__)
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """The package module: keeps ``fit`` and ``simulate`` the functions once they are loaded."""

    def __setattr__(self, name, value):
        # The import system sets ``progression.fit`` to the subpackage when it is first
        # imported; the function of that name is what users call.
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            self.__dict__.pop(name, None)
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "DesignEvaluation",
    "evaluate_design",
    "SamplingOptimum",
    "optimize_sampling",
    "FitConfig",
    "FitResult",
    "fit",
    "load_fit",
    "PopulationProfile",
    "profile_population",
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
    "Dose",
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
