"""Former location of :mod:`progression.virtual.synthetic` (kept so that old imports keep
working). Synthetic cohorts simulate a model, so they live above :mod:`progression.simulate`
in :mod:`progression.virtual`; :mod:`progression.data` is data only.

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from ..virtual import synthetic as _moved

sys.modules[__name__] = _moved
