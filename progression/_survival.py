"""Former location of :mod:`progression.stats.survival` (kept so that old imports keep working).

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from .stats import survival as _moved

sys.modules[__name__] = _moved
