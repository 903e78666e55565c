"""Former location of interventions and the ALS drug library (kept so that old imports keep
working): generic interventions are in :mod:`progression.virtual.interventions`, the library
(read from ``progression/als/interventions.toml``) in :mod:`progression.als.library`.
"""

from .als.library import *  # noqa: F403
from .als.library import __all__ as _library_names
from .virtual.interventions import *  # noqa: F403
from .virtual.interventions import __all__ as _generic_names

__all__ = [*_generic_names, *_library_names]
