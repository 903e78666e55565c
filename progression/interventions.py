"""Former location of :mod:`progression.virtual.interventions` (kept so that old imports
keep working).

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from .virtual import interventions as _moved

sys.modules[__name__] = _moved
