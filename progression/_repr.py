"""One-line representations of the objects users hold in scripts and notebooks.

Fits, comparisons, populations and trials carry arrays over every subject; the repr that
``dataclass`` writes printed all of them (a population fit of 200 patients: 50,000
characters, a comparison: 97,000), so a REPL or notebook cell drowned in numbers. These say
what the object is and how big; the numbers have their own methods (``summary()``,
``to_markdown()``, ``parameter_table()``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["brief", "changed_fields", "clip", "names"]


def brief(obj, *parts: str) -> str:
    """``TypeName(part, part, ...)`` of the non-empty ``parts``."""
    return f"{type(obj).__name__}({', '.join(p for p in parts if p)})"


def names(values, limit: int = 6) -> str:
    """``['a', 'b', ...]`` of at most ``limit`` names, with how many more."""
    values = [str(v) for v in values]
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... {len(values) - limit} more" if len(values) > limit else ""
    return f"[{shown}{more}]"


def clip(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut to ``limit`` characters with an ellipsis."""
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def _empty(value) -> bool:
    return isinstance(value, list | tuple | dict) and not value


def changed_fields(obj) -> str:
    """A dataclass as ``TypeName(field=value, ...)`` of the fields that differ from their
    defaults (a configuration object reads as the call that made it)."""
    parts = []
    for f in dataclasses.fields(obj):
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            parts.append(f"{f.name}={value!r}")
            continue
        if _empty(value) and _empty(default):      # [] read back from JSON for ()
            continue
        try:
            same = bool(value == default)
        except (TypeError, ValueError):        # arrays: compare what they print as
            same = repr(value) == repr(default)
        if not same:
            parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"
