"""Former location of :mod:`progression.plots._mpl` (kept so that old imports keep working).

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from .plots import _mpl as _moved

sys.modules[__name__] = _moved
