"""Small statistics helpers: survival (Kaplan-Meier, log-rank, RMST) and intervals.

scipy first: the log-rank test, Wilson intervals and Spearman correlations come from
:mod:`scipy.stats`; what is written by hand (delayed-entry Kaplan-Meier, a vectorised
log-rank over many replicates) says why where it is. Importing this package is cheap;
:mod:`progression.stats.survival` imports scipy.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["quiet"]


class quiet:
    """Context manager silencing numpy's warnings about all-NaN slices and empty means.

    Summaries over subjects alive at a time are routinely empty for some scenario or draw;
    NaN is the right answer there and the warning is noise.
    """

    def __enter__(self):
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        self._err = np.seterr(all="ignore")
        return self

    def __exit__(self, *exc):
        np.seterr(**self._err)
        return self._ctx.__exit__(*exc)
