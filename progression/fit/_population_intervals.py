"""Wald intervals of a population fit's parameters (the parameter table's "95 % CI").

The covariance step's matrix is on the scales the parameters were estimated on (``theta``:
the parameter's scale, ``log omega^2``, ``log`` residual SD, linear covariate coefficients),
so the interval is symmetric there and mapped back: a log-scale typical value or a variance
gets an asymmetric interval that stays positive, a logit-scale one stays inside its bounds.
This is the interval the recovery studies score (``benchmarks/population_recovery.py``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wald_intervals"]


def wald_intervals(pop, level: float = 0.95) -> dict:
    """Wald intervals of ``pop``'s population parameters, on their natural scales.

    Parameters
    ----------
    pop : PopulationPart
    level : float
        Coverage of each interval (0-1).

    Returns
    -------
    dict of str to (float, float)
        Keys: each typical value's parameter name, ``"omega^2 NAME"`` for a random effect's
        variance (1 x 1 Omega blocks; a variance inside a larger block has no row of its own
        in the covariance step and is left out), each residual parameter (``"OBS.a"``) and
        each covariate coefficient (``"P~COV"``). ``(nan, nan)`` where there is no standard
        error (no covariance step, a failed one, or a value held fixed).
    """
    from scipy.stats import norm

    from .transforms import from_internal

    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a coverage in (0, 1), found {level!r}")
    z = float(norm.ppf(0.5 + level / 2.0))
    names = tuple(pop.covariance_names or ())
    cov = None if pop.covariance is None else np.asarray(pop.covariance, dtype=float)
    x = pop.parameter_vector() if names else np.zeros(0)
    held = set(getattr(pop, "fixed_typical", ()) or ())

    def exp(v):
        # a huge SE (a nearly unidentified variance) gives an infinite upper end, not an error
        with np.errstate(over="ignore"):
            return float(np.exp(v))

    out = {}
    for i, name in enumerate(names):
        var = math.nan if cov is None else float(cov[i, i])
        se = math.sqrt(var) if math.isfinite(var) and var > 0.0 else math.nan
        lo, hi = x[i] - z * se, x[i] + z * se
        kind, _, rest = name.partition(" ")
        if kind == "theta":
            if rest in held:
                lo = hi = math.nan
            sc = np.array([pop.scales[rest]])
            b_lo, b_hi = pop.bounds[rest]
            ends = from_internal(np.array([lo, hi]), np.repeat(sc, 2),
                                 np.full(2, b_lo), np.full(2, b_hi))
            out[rest] = (float(ends[0]), float(ends[1]))
        elif kind == "coef":
            out[rest] = (float(lo), float(hi))
        elif name.startswith("log omega^2 "):
            out["omega^2 " + name[len("log omega^2 "):]] = (exp(lo), exp(hi))
        elif kind == "log" and rest in pop.sigma:
            out[rest] = (exp(lo), exp(hi))
    return out
