"""Former location of scenario comparison, now :mod:`progression.virtual` (kept so that old
imports keep working): :mod:`progression.virtual.scenarios` (:func:`compare`),
:mod:`progression.virtual.population`, :mod:`progression.virtual.endpoints`,
:mod:`progression.virtual.comparison` and the figures in :mod:`progression.plots.scenarios`.
"""

from .als.defaults import ALS_VARIABILITY
from .plots.scenarios import ARMS_PER_PANEL, PLOT_BAND
from .virtual.comparison import Comparison
from .virtual.endpoints import Endpoints
from .virtual.population import (
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
