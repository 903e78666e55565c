"""Former location of scenario comparison, now :mod:`progression.virtual` (kept so that old
imports keep working): :mod:`progression.virtual.scenarios` (:func:`compare`),
:mod:`progression.virtual.population`, :mod:`progression.virtual.endpoints`,
:mod:`progression.virtual.comparison` and the figures in :mod:`progression.plots.scenarios`.
"""

from .plots.scenarios import ARMS_PER_PANEL, PLOT_BAND
from .virtual.comparison import Comparison
from .virtual.endpoints import Endpoints
from .virtual.population import (
    ALS_VARIABILITY,
    Variability,
    VirtualPopulation,
    default_variability,
    is_autonomous,
    states_at,
)
from .virtual.scenarios import REFERENCE, compare

__all__ = [
    "Variability", "ALS_VARIABILITY", "default_variability", "VirtualPopulation",
    "Endpoints", "Comparison", "compare", "states_at", "is_autonomous", "REFERENCE",
    "ARMS_PER_PANEL", "PLOT_BAND",
]
