"""Everything that simulates people who do not exist.

Virtual populations (:mod:`.population`), interventions (:mod:`.interventions`), scenario
comparisons (:mod:`.scenarios`, :mod:`.endpoints`, :mod:`.comparison`), virtual trials
(:mod:`.trials`) and synthetic cohorts (:mod:`.synthetic`, configured by
:mod:`.cohort_config`). This layer sits above :mod:`progression.simulate` and below the
command line; it knows nothing of a particular disease: ALS defaults (drug library, variability,
endpoint names) come from :mod:`progression.als`.
"""

from .comparison import Comparison
from .endpoints import Endpoints
from .interventions import PK, Intervention, flatten, to_switches
from .population import Variability, VirtualPopulation, default_variability, states_at
from .scenarios import compare
from .trials import Dropout, Enrolment, PowerCurve, VirtualTrial

__all__ = [
    "Comparison", "Endpoints", "PK", "Intervention", "flatten", "to_switches", "Variability",
    "VirtualPopulation", "default_variability", "states_at", "compare", "Dropout", "Enrolment",
    "PowerCurve", "VirtualTrial",
]
