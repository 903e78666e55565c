"""Time units and the few concentration units the readers convert (private)."""

from __future__ import annotations

__all__ = [
    "DAYS_PER",
    "DAYS_PER_MONTH",
    "SECONDS_PER",
    "canonical_time_unit",
    "time_factor",
    "concentration_factor",
]

#: Mean Gregorian month (365.25 / 12 days), the PRO-ACT convention for day offsets.
DAYS_PER_MONTH = 30.4375

#: Length of each canonical time unit in seconds: whole numbers, so that the ratio of two
#: units is correctly rounded (60 for minute -> second, where a ratio of day fractions gives
#: 60.00000000000001).
SECONDS_PER = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 604800.0,
    "month": DAYS_PER_MONTH * 86400.0,
    "year": 365.25 * 86400.0,
}

#: Length of each canonical time unit in days (the canonical names, shortest first).
DAYS_PER = {u: s / 86400.0 for u, s in SECONDS_PER.items()}

_ALIASES = {
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "d": "day", "day": "day", "days": "day",
    "w": "week", "wk": "week", "wks": "week", "week": "week", "weeks": "week",
    "mo": "month", "mon": "month", "month": "month", "months": "month",
    "y": "year", "yr": "year", "yrs": "year", "year": "year", "years": "year",
}


def canonical_time_unit(unit: str) -> str | None:
    """The canonical name (a key of `DAYS_PER`: ``"second"``, ``"minute"``, ``"hour"``,
    ``"day"``, ``"week"``, ``"month"``, ``"year"``) or None.

    One list for model files (``[model] time_unit``), data files and fit configs."""
    return _ALIASES.get(str(unit).strip().lower())


def time_factor(from_unit: str, to_unit: str) -> float:
    """Multiply a time in ``from_unit`` by this to express it in ``to_unit`` (canonical names)."""
    if from_unit == to_unit:
        return 1.0
    return SECONDS_PER[from_unit] / SECONDS_PER[to_unit]


# Factors into the target unit; keys are lower-cased with blanks removed, micro as "u".
_CONCENTRATION = {
    "mg/l": {"mg/l": 1.0, "mg/dl": 10.0, "ug/ml": 1.0, "g/l": 1000.0, "ug/l": 1e-3,
             "ng/ml": 1e-3, "nmol/l": None},
    "pg/ml": {"pg/ml": 1.0, "ng/l": 1.0, "ng/ml": 1000.0, "pg/l": 1e-3, "fg/ml": 1e-3},
}


def _unit_key(unit: str) -> str:
    return unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")


def concentration_factor(from_unit: str, to_unit: str) -> float | None:
    """Factor converting ``from_unit`` into ``to_unit``, or None when unknown.

    Only the conversions the default PRO-ACT lab map needs are known (mg/dL -> mg/L for CRP,
    ng/mL -> pg/mL for NfL, ...); equal units always convert with factor 1.
    """
    a, b = _unit_key(from_unit), _unit_key(to_unit)
    if a == b:
        return 1.0
    return _CONCENTRATION.get(b, {}).get(a)
