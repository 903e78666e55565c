"""Fitting: run configs, error models, per-subject and pooled maximum likelihood, FitResult.

    import progression as pg
    from progression.fit import fit, load_fit, read_fit_config

    result = fit("configs/als_synthetic_individual.toml", jobs=2)
    result.save("fits/als_synthetic_individual", overwrite=True)   # replaces the shipped fit
    again = load_fit("fits/als_synthetic_individual")
"""

from .config import FitConfig, FitParameter, parse_fit_config, read_fit_config
from .errormodels import ERROR_MODELS
from .estimate import fit
from .problem import Design, Problem
from .result import FitResult, load_fit

__all__ = [
    "ERROR_MODELS",
    "Design",
    "FitConfig",
    "FitParameter",
    "FitResult",
    "Problem",
    "fit",
    "load_fit",
    "parse_fit_config",
    "read_fit_config",
]
