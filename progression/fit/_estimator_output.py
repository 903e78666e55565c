"""What an estimator returns: :class:`EstimatorOutput` (re-exported by :mod:`.parts`, whose
part types it holds; split out so that ``parts.py`` stays one job: the parts themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:                      # parts imports this module: names for the annotations
    from .parts import Diagnostics, Estimates, PopulationPart, Predictions, Uncertainty

__all__ = ["EstimatorOutput"]


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns (see :mod:`progression.fit.estimators`).

    Attributes
    ----------
    estimates : Estimates
    uncertainty : Uncertainty
    diagnostics : Diagnostics
    predictions : Predictions
    population : PopulationPart or None
        Only population estimators fill it.
    """

    estimates: Estimates
    uncertainty: Uncertainty
    diagnostics: Diagnostics
    predictions: Predictions
    population: PopulationPart | None = None
