"""Former location of :mod:`progression.als.synthetic` (kept so that old imports keep
working). The synthetic-cohort generator is ALS by nature (onset, diagnosis, enrolment on
ALSFRS-R and ΔFS, dropout driven by the ALSFRS-R loss), so it lives in :mod:`progression.als`;
its generic steps are :mod:`progression.virtual.synthesis`.

The module object is the new one (same classes, same private names, same pickles).
"""

import sys

from ..als import synthetic as _moved

sys.modules[__name__] = _moved
