"""Former location of :mod:`progression.als.synthetic` (kept so that old imports keep
working). Synthetic cohorts simulate a model, so they live above :mod:`progression.simulate`:
the ALS generator in :mod:`progression.als`, its generic steps in
:mod:`progression.virtual.synthesis`; :mod:`progression.data` is data only.

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from ..als import synthetic as _moved

sys.modules[__name__] = _moved
