"""The fit config's problem collector and the value checks the section readers share.

:class:`_Check` collects every problem of a config (each naming the file and the key) so that
:func:`progression.fit.config.parse_fit_config` reports them all at once; the helpers here
check a value (bounds, a value against its bounds and estimation scale) and describe what was
found. Private: :mod:`progression.fit.config` is the public entry.
"""

from __future__ import annotations

import math

from ..errors import did_you_mean


class _Check:
    """Collects problems, each naming the file and the key."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        self.keys: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}, key '{key}': {message}")
        self.keys.append(key)

    def failed(self, prefix: str) -> bool:
        """Whether a problem was found at ``prefix`` or below it (``"parameters"`` covers
        ``parameters.ka.scale``): checks that depend on those keys then say nothing, since
        their message would only repeat the first one's consequence."""
        return any(k == prefix or k.startswith(prefix + ".") for k in self.keys)

    def unknown(self, prefix: str, table: dict, allowed) -> None:
        for key in table:
            if key not in allowed:
                hint = did_you_mean(key, list(allowed))
                where = f"{prefix}.{key}" if prefix else key
                self.add(where, f"unknown key (expected one of {', '.join(allowed)}){hint}")

    def table(self, key: str, value, default=None) -> dict:
        if value is None:
            return {} if default is None else default
        if not isinstance(value, dict):
            self.add(key, f"expected a table, found {_found(value)}")
            return {}
        return value

    def string(self, key: str, value, choices=None, required=False) -> str | None:
        if value is None:
            if required:
                self.add(key, "is required")
            return None
        if not isinstance(value, str):
            self.add(key, f"expected a string, found {_found(value)}")
            return None
        if choices is not None and value not in choices:
            hint = did_you_mean(value, list(choices))
            self.add(key, f"expected one of {', '.join(repr(c) for c in choices)}, found "
                          f"{value!r}{hint}")
            return None
        return value

    def number(self, key: str, value, *, positive=False, unit_interval=False,
               allow_inf=False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(key, f"expected a number, found {_found(value)}")
            return None
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            self.add(key, f"expected a finite number, found {value}")
            return None
        if positive and value <= 0:
            self.add(key, f"expected a positive number, found {value:g}")
            return None
        if unit_interval and not 0 < value < 1:
            self.add(key, f"expected a number between 0 and 1, found {value:g}")
            return None
        return value

    def integer(self, key: str, value, minimum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(key, f"expected an integer, found {_found(value)}")
            return None
        if value < minimum:
            self.add(key, f"expected an integer >= {minimum}, found {value}")
            return None
        return value


def _found(value) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return f"{type(value).__name__} ({value!r})"

def _default_scale(lo: float, fallback: str) -> str:
    return "log" if lo > 0 else fallback


def _bounds(chk: _Check, key: str, value) -> tuple[float, float] | None:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in value)):
        chk.add(key, f"expected [lower, upper] (two numbers), found {_found(value)}")
        return None
    lo, hi = float(value[0]), float(value[1])
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        chk.add(key, f"expected lower < upper, found [{lo:g}, {hi:g}]")
        return None
    return lo, hi

def _check_value_bounds_scale(chk, key, value, bounds, scale, estimated, check_value=True):
    lo, hi = bounds
    if check_value and not lo <= value <= hi:
        chk.add(f"{key}.value", f"expected a value within bounds [{lo:g}, {hi:g}], found "
                                f"{value:g}")
    if scale in ("log", "log10"):
        if lo < 0:
            chk.add(f"{key}.scale", f"{scale} scale needs a lower bound >= 0, found {lo:g}")
        elif estimated and value <= 0:
            chk.add(f"{key}.value", f"{scale} scale needs a positive starting value, found "
                                    f"{value:g}")
    if scale == "logit":
        if not (math.isfinite(lo) and math.isfinite(hi)):
            chk.add(f"{key}.scale", "logit scale needs finite bounds")
        elif estimated and not lo < value < hi:
            chk.add(f"{key}.value", f"logit scale needs a starting value strictly inside "
                                    f"({lo:g}, {hi:g}), found {value:g}")
