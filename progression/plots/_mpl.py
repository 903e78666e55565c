"""pyplot without overriding the user's matplotlib backend (private; used by every figure).

A backend the user chose (``matplotlib.use("ps")``, ``MPLBACKEND``, a matplotlibrc, or
pyplot already imported) is kept. Only when none was chosen and there is no display is Agg
selected, so that writing figures on a headless machine never tries to open a window.
"""

from __future__ import annotations

import os

__all__ = ["pyplot", "backend_chosen", "has_display"]


def has_display() -> bool:
    """An X11 or Wayland display is available (macOS and Windows always have one)."""
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def backend_chosen() -> bool:
    """Whether matplotlib's backend is already decided (by the user or by pyplot)."""
    import matplotlib

    rc = matplotlib.rcParams
    get = getattr(rc, "_get_backend_or_none", None)
    if get is not None:
        return get() is not None
    # older matplotlib: the unresolved backend is a sentinel object in the raw dict
    from matplotlib import rcsetup

    return dict.__getitem__(rc, "backend") is not getattr(rcsetup, "_auto_backend_sentinel",
                                                           None)


def pyplot():
    """``matplotlib.pyplot``, with Agg chosen only if no backend was and there is no display."""
    import matplotlib

    if not backend_chosen() and not has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
