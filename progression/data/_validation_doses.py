"""Checks on dose records (amounts, targets, rates, durations, steady state, EVID/MDV).

Split from :mod:`progression.data.validation` (moved unchanged) and re-exported there; the
conventions of that module hold: each ``check_*`` function appends messages to ``problems``,
naming the place and saying what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .validation import Origin, where

__all__ = ["check_doses", "check_evid_mdv"]


def check_doses(
    subjects: Sequence[str],
    amounts: Sequence[float],
    targets: Sequence[str],
    rates: Sequence[float],
    durations: Sequence[float],
    resets: Sequence[bool],
    origins: Sequence[Origin],
    problems: list[str],
    ss: Sequence[float | None] | None = None,
    ii: Sequence[float | None] | None = None,
) -> None:
    """A dose needs a finite amount and a target; rate and duration are not negative (except
    NONMEM's RATE codes -1 and -2).

    A steady-state record (``ss`` 1: the states at its time are the periodic steady state of
    the dose given every ``ii``, NONMEM's SS = 1) needs a dose amount > 0 and an interval
    ``ii`` > 0 within which an infusion of known duration ends; ``ss`` 2 (NONMEM's
    superposition onto the current state) is refused, the simulator has no such mode. An
    ``ii`` given on any record is a number >= 0.
    """
    n = len(subjects)
    ss = [None] * n if ss is None else ss
    ii = [None] * n if ii is None else ii
    for s, a, tg, r, d, z, o, q, i in zip(subjects, amounts, targets, rates, durations,
                                           resets, origins, ss, ii, strict=True):
        reset_only = bool(z) and (a is None or not np.isfinite(a) or a == 0) and not tg
        _check_steady_state(s, a, r, d, q, i, reset_only, o, problems)
        if reset_only:
            continue
        if a is None or not np.isfinite(a):
            problems.append(f"{where(o, 'amount', s)}: expected a dose amount, found "
                            f"{'an empty cell' if a is None else a}")
        if not str(tg).strip():
            problems.append(f"{where(o, 'target', s)}: expected a dose target (compartment "
                            "or model input), found an empty cell")
        for col, x in (("rate", r), ("duration", d)):
            # RATE -1 / -2: NONMEM's rate / duration from the model (checked against it when
            # simulated).
            if (x is not None and np.isfinite(x) and x < 0
                    and not (col == "rate" and x in (-1.0, -2.0))):
                codes = " (or -1 / -2: rate / duration from the model)" if col == "rate" else ""
                problems.append(f"{where(o, col, s)}: expected a {col} >= 0{codes}, found "
                                f"{x:g}")


def _check_steady_state(s, a, r, d, q, i, reset_only, o, problems: list[str]) -> None:
    """The ``ss`` / ``ii`` cells of one dose record (see :func:`check_doses`)."""
    if i is not None and not (np.isfinite(i) and i >= 0):
        problems.append(f"{where(o, 'ii', s)}: expected an interdose interval >= 0 (II), "
                        f"found {i:g}")
        i = None
    if q is None or q != q or q == 0:
        return
    if q == 2:
        problems.append(f"{where(o, 'ss', s)}: SS = 2 (a steady state added onto the current "
                        "state) is not supported by the simulator; expected SS 0 or 1, "
                        "found 2")
        return
    if q != 1:
        problems.append(f"{where(o, 'ss', s)}: expected SS 0 (no steady state) or 1 (steady "
                        f"state), found {q:g}")
        return
    if reset_only:
        problems.append(f"{where(o, 'ss', s)}: a reset without a dose (EVID 3) cannot be a "
                        "steady state; expected SS 0 on it, found SS 1")
        return
    if a is not None and np.isfinite(a) and a <= 0:
        problems.append(f"{where(o, 'amount', s)}: SS = 1 needs a dose amount > 0 (a "
                        "constant-infusion steady state, AMT 0 with RATE > 0, is not "
                        f"supported), found AMT {a:g}")
        return
    if i is None or i <= 0:
        problems.append(f"{where(o, 'ii', s)}: SS = 1 needs an interdose interval II > 0, "
                        f"found {'none' if i is None else format(i, 'g')}")
        return
    # The duration of an infusion is known here unless the model gives it (RATE -1 / -2,
    # checked when simulated).
    dur = d if d is not None and np.isfinite(d) and d > 0 else (
        a / r if r is not None and np.isfinite(r) and r > 0 and a is not None
        and np.isfinite(a) else None)
    if dur is not None and dur > i:
        problems.append(f"{where(o, 'ii', s)}: SS = 1 needs the infusion (duration "
                        f"{dur:g}) to end within the interdose interval, found II {i:g}")


def check_evid_mdv(
    subjects: Sequence[str],
    evid: Sequence[float | None],
    mdv: Sequence[float | None],
    amt: Sequence[float | None],
    dv: Sequence[float | None],
    origins: Sequence[Origin],
    problems: list[str],
    *,
    has_mdv: bool,
) -> None:
    """NONMEM record consistency.

    EVID 0 rows must not carry a dose amount and, unless MDV = 1, need a DV; dose rows
    (EVID 1, 4) need an AMT; rows with EVID 1-4 cannot have MDV = 0 (they are not
    observations).
    """
    for s, e, m, a, y, o in zip(subjects, evid, mdv, amt, dv, origins, strict=True):
        if e is None:
            continue
        if e == 0:
            if a is not None and a != 0:
                problems.append(
                    f"{where(o, 'amount', s)}: expected no dose amount on an observation "
                    f"row (EVID 0), found AMT {a:g}; use EVID 1 for a dose"
                )
            if m != 1 and y is None:
                problems.append(
                    f"{where(o, 'value', s)}: expected a DV on an observation row (EVID 0, "
                    "MDV 0), found none; set MDV 1 if the value is missing"
                )
        else:
            if has_mdv and m == 0:
                problems.append(
                    f"{where(o, 'mdv', s)}: expected MDV 1 on a non-observation row "
                    f"(EVID {e:g}), found MDV 0"
                )
            if e in (1, 4) and (a is None or not np.isfinite(a)):
                problems.append(
                    f"{where(o, 'amount', s)}: expected a dose amount (AMT) on a dose row "
                    f"(EVID {e:g}), found none"
                )
