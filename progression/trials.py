"""Former location of :mod:`progression.virtual.trials` (kept so that old imports keep working).

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from .virtual import trials as _moved

sys.modules[__name__] = _moved
