"""Former location of :mod:`progression.als.describe` (kept so that old imports keep working).
Describing a cohort against published ALS statistics is ALS content, so it lives in
:mod:`progression.als` with its targets (``progression/als/targets.toml``).

The module object is the new one (same functions, same private names).
"""

import sys

from ..als import describe as _moved

sys.modules[__name__] = _moved
