"""Dose records (NONMEM conventions) and their translation into the simulator's switches.

A model file declares its dosing compartments in ``[dosing.STATE]`` tables (optional NONMEM
``cmt`` number, ``bioavailability`` and ``lag`` parameter names). Parsing then adds two implicit
parameters per compartment: ``rate_STATE``, entering the state's equation as
``+ F * rate_STATE``, and ``amt_STATE``, the amount of a bolus. A dose record becomes
:class:`~progression.simulate.Switch` es:

* a **bolus** of amount ``AMT`` at time ``t``: at ``t + lag`` the switch sets ``amt_STATE`` to
  the per-subject amounts and jumps ``STATE -> STATE + F * amt_STATE``. One compiled jump serves
  every amount (no recompilation per distinct amount), and forward sensitivities are carried
  across it, with respect to ``F`` too;
* a zero-order **infusion** (``RATE`` > 0, or ``DUR`` > 0): ``rate_STATE`` is raised by
  ``AMT / D`` at ``t + lag`` and lowered again at ``t + lag + D``, ``D = DUR`` or ``AMT / RATE``.
  ``F`` scales the rate, the duration stays ``D`` (NONMEM instead lengthens the infusion when
  ``F`` scales a dose given with ``RATE``; with ``DUR`` both agree). Overlapping infusions add;
* an infusion of **modelled rate or duration** (NONMEM's ``RATE = -1`` / ``-2``, into a
  compartment whose ``[dosing]`` table names a ``rate`` / ``duration`` parameter ``R`` / ``D``),
  with NONMEM's rules: ``RATE = -1`` delivers ``F * AMT`` at the rate ``R`` (so ``F``
  lengthens it: it lasts ``F * AMT / R``), ``RATE = -2`` delivers ``F * AMT`` over ``D`` (rate
  ``F * AMT / D``). Their inputs are implicit parameters too: ``nrate_STATE`` counts the
  running ``RATE = -1`` infusions (the equation gains ``nrate_STATE * R``) and ``damt_STATE``
  sums the amounts of the running ``RATE = -2`` ones (``+ F * damt_STATE / D``), so the
  derivatives of the rate with respect to ``R``, ``D`` and ``F`` are the model's own. The end
  time ``t_e`` moves with the parameters (``dt_e/dD = 1``; ``dt_e/dR = -F AMT / R^2`` and
  ``dt_e/dF = AMT / R``): at ``t_e`` the sensitivities gain ``(f(t_e-) - f(t_e+)) dt_e/dp``,
  the same rule as a lag's (``time_dp`` of the end switch);
* **additional doses** ``ADDL`` every ``II`` are expanded to records;
* **reset** (``EVID`` 3, and 4 = reset then dose): every state returns to its initial
  expression and running infusions stop;
* **steady state** (``SS = 1``): the states at the dose time are reset to the periodic steady
  state of the same dose given every ``II`` (then the dose itself is given). That state is the
  fixed point ``y = Phi(y)`` of the map ``Phi`` taking the state just before a dose over one
  interval; it is found by Newton's method with a finite-difference Jacobian of ``Phi``
  (each ``Phi`` a simulation of the subject over one interval). For the linear PK models
  ``Phi`` is affine, so one Newton step is exact up to the integration error and the second
  confirms it; nonlinear models converge as Newton does, and a failure is an error naming the
  record.

Lag times are read from each subject's parameters (so they can be fitted with the
derivative-free paths too). Sensitivities with respect to a lag move the dose switches:
``S += (G_y f(before) - f(after)) dtime/dlag`` at each lagged switch. Sensitivities are carried
across every dose (bioavailability included, through the jump and the infusion term; a
modelled rate or duration through its input term and its moving end) and through the steady
state (``dy*/dp`` from the fixed point). The steady state uses the subject's
base parameters (not those changed by earlier switches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ProgressionError

__all__ = ["Dose", "dose_table", "dose_switches"]

_COLUMNS = ("subject", "time", "amount", "target", "rate", "duration", "addl", "ii", "ss",
            "evid", "reset")
_ALIASES = {"amt": "amount", "cmt": "target", "dur": "duration", "id": "subject",
            "tlag": None}


@dataclass(frozen=True)
class Dose:
    """One dose record (NONMEM conventions).

    Parameters
    ----------
    time : float
        Dose time in model time units (before the lag).
    amount : float
        ``AMT``, >= 0 (0 with ``evid=3``).
    target : str or int, optional
        ``CMT``: the dosing compartment's state name or its number in the model file's
        ``[dosing]``; default the compartment with the lowest number (else the first declared).
    rate, duration : float
        Zero-order infusion given by its rate or its duration (0: a bolus); not both unless
        they agree (``amount / rate == duration``). ``rate = -1`` / ``-2``: the rate /
        duration is the target compartment's ``rate`` / ``duration`` parameter (NONMEM).
    addl : int
        Number of additional doses, every ``ii``.
    ii : float
        Interdose interval of ``addl`` and ``ss``.
    ss : int
        1: the states at ``time`` are the periodic steady state of this dose every ``ii``.
    evid : int
        1 dose, 3 reset, 4 reset and dose.
    subject : int or str
        Index of the subject in the simulated batch (a subject id with a ``Cohort``).
    """

    time: float
    amount: float = 0.0
    target: str | int | None = None
    rate: float = 0.0
    duration: float = 0.0
    addl: int = 0
    ii: float = 0.0
    ss: int = 0
    evid: int = 1
    subject: int | str = 0


# ------------------------------------------------------------------------- reading records

def _rows_from(doses, model_name: str):
    """Records as a list of (label, dict) from a list of Dose, a dict of columns or a Cohort.

    Returns the rows and, for a Cohort, its subject ids (the batch order)."""
    subjects = None
    if hasattr(doses, "doses") and hasattr(doses, "subjects") and not isinstance(doses, Mapping):
        subjects = tuple(str(s) for s in doses.subjects)
        doses = doses.doses
    if isinstance(doses, Dose):
        doses = [doses]
    if isinstance(doses, Mapping):
        cols = {}
        for key, value in doses.items():
            name = _ALIASES.get(str(key).lower(), str(key).lower())
            if name not in _COLUMNS:
                raise ProgressionError(f"doses: unknown column {key!r} (expected some of "
                                       f"{', '.join(_COLUMNS)})")
            cols[name] = np.atleast_1d(np.asarray(value, dtype=object))
        if "time" not in cols:
            raise ProgressionError("doses: the column 'time' is required")
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ProgressionError(f"doses: columns of different lengths {lengths}")
        d = lengths["time"]
        rows = [(f"doses row {i}", {k: v[i] for k, v in cols.items()}) for i in range(d)]
    elif isinstance(doses, Sequence) and not isinstance(doses, str | bytes):
        rows = []
        for i, rec in enumerate(doses):
            if not isinstance(rec, Dose):
                raise ProgressionError(f"doses[{i}]: expected a pg.Dose, found "
                                       f"{type(rec).__name__}")
            rows.append((f"doses[{i}]", dict(rec.__dict__)))
    else:
        raise ProgressionError(f"doses (model {model_name!r}): expected a list of pg.Dose, a "
                               f"dict of columns or a Cohort, found {type(doses).__name__}")
    return rows, subjects


def _missing(x) -> bool:
    if x is None:
        return True
    try:
        return bool(np.isnan(float(x)))
    except (TypeError, ValueError):
        return False


def _number(row, key, label, default=0.0):
    x = row.get(key, default)
    if _missing(x) and key != "time":
        return default
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ProgressionError(f"{label}, field '{key}': expected a number, found {x!r}") from None
    if not np.isfinite(v):
        raise ProgressionError(f"{label}, field '{key}': expected a finite number, found {x!r}")
    return v


def dose_table(model, doses, m: int | None = None) -> tuple[list[dict], int]:
    """Validate dose records against a model: one dict per record, and the number of subjects.

    Parameters
    ----------
    model : CompiledModel
        A model whose file has a ``[dosing]`` section.
    doses : list of Dose, dict of columns, or Cohort
        Columns ``subject, time, amount, target, rate, duration, addl, ii, ss, evid, reset``
        (NONMEM's ``ID, AMT, CMT, DUR`` are accepted too); missing ones take their defaults.
    m : int, optional
        Number of subjects simulated (subject indices must be below it).

    Returns
    -------
    records : list of dict
        Keys ``label, subject, time, amount, state, rate, duration, addl, ii, ss, reset, dose``.
    n_subjects : int
        Subjects the records need (``len(cohort.subjects)`` for a Cohort).

    Raises
    ------
    ProgressionError
        For the first bad record, naming its row, subject and field.
    """
    spec = getattr(model, "spec", None)
    name = getattr(model, "name", "?")
    comps = tuple(getattr(spec, "dosing", ()) or ())
    if not comps:
        raise ProgressionError(f"doses: model {name!r} declares no dosing compartments (add a "
                               f"[dosing.STATE] table to its model file)")
    by_name = {c.state: c for c in comps}
    by_cmt = {c.cmt: c for c in comps if c.cmt is not None}
    default = by_cmt[min(by_cmt)] if by_cmt else comps[0]
    unit = getattr(doses, "time_unit", None)
    if (hasattr(doses, "subjects") and isinstance(unit, str) and spec.time_unit
            and unit != spec.time_unit):
        # A Cohort's times are in its own unit (months by default): refuse, never rescale
        # silently.
        raise ProgressionError(f"doses: the cohort's times are in {unit}s but model {name!r} "
                               f"runs in {spec.time_unit}s (read the cohort with "
                               f"to_unit={spec.time_unit!r})")
    rows, ids = _rows_from(doses, name)
    n_subjects = len(ids) if ids is not None else 0
    out = []
    for label, row in rows:
        subj = row.get("subject", 0)
        if ids is not None:
            if str(subj) not in ids:
                raise ProgressionError(f"{label}, field 'subject': no subject {subj!r} in the "
                                       f"cohort")
            index = ids.index(str(subj))
        else:
            try:
                index = int(subj)
                ok = float(subj) == index and index >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ProgressionError(f"{label}, field 'subject': expected a subject index "
                                       f">= 0 (pass the Cohort itself for subject ids), found "
                                       f"{subj!r}")
            if m is not None and m > 1 and index >= m:
                raise ProgressionError(f"{label}, field 'subject': expected an index below the "
                                       f"{m} subjects simulated, found {index}")
            n_subjects = max(n_subjects, index + 1)
        label = f"{label}, subject {subj!r}"
        time = _number(row, "time", label)
        evid = row.get("evid", 1)
        evid = 1 if _missing(evid) else evid
        reset = row.get("reset", False)
        reset = False if _missing(reset) else bool(reset)
        if evid not in (1, 3, 4):
            raise ProgressionError(f"{label}, field 'evid': expected 1 (dose), 3 (reset) or 4 "
                                   f"(reset and dose), found {evid!r}")
        amount = _number(row, "amount", label)
        if amount < 0:
            raise ProgressionError(f"{label}, field 'amount': expected an amount >= 0, found "
                                   f"{amount:g}")
        reset = reset or evid in (3, 4)
        dose = evid != 3 and amount > 0
        if reset and evid == 1 and amount == 0:
            dose = False
        target = row.get("target")
        if _missing(target):
            comp = default
        else:
            key = target
            if isinstance(key, str) and key.strip().isdigit():
                key = int(key.strip())
            if isinstance(key, float | np.floating) and float(key).is_integer():
                key = int(key)
            if isinstance(key, int | np.integer) and not isinstance(key, bool):
                comp = by_cmt.get(int(key))
                choices = ", ".join(f"{c.cmt} = {c.state}" for c in comps if c.cmt is not None)
            else:
                comp = by_name.get(str(key))
                choices = ", ".join(by_name)
            if comp is None:
                raise ProgressionError(f"{label}, field 'target': model {name!r} has no dosing "
                                       f"compartment {target!r} (expected one of "
                                       f"{choices or 'none'})")
        rate = _number(row, "rate", label)
        duration = _number(row, "duration", label)
        if reset and not dose and rate in (-1.0, -2.0):
            rate = 0.0          # a reset alone gives no infusion: its RATE code is moot
        mode = _modelled_mode(rate, duration, amount, dose, comp, name, label)
        if mode:
            rate = duration = 0.0
        if rate < 0:
            raise ProgressionError(f"{label}, field 'rate': expected a rate >= 0 (0 for a "
                                   f"bolus), or NONMEM's RATE = -1 or -2 (rate or duration "
                                   f"from the model), found {rate:g}")
        if duration < 0:
            raise ProgressionError(f"{label}, field 'duration': expected a duration >= 0, found "
                                   f"{duration:g}")
        if rate > 0 and dose is False and amount == 0:
            raise ProgressionError(f"{label}, field 'rate': an infusion rate needs an amount "
                                   f"> 0 (its duration is amount / rate), found amount 0")
        if rate > 0 and duration > 0 and abs(amount / rate - duration) > 1e-9 * duration:
            raise ProgressionError(f"{label}, field 'duration': rate {rate:g} and duration "
                                   f"{duration:g} disagree (amount / rate = "
                                   f"{amount / rate:g}); give one of them")
        if rate > 0:
            duration = amount / rate
        addl = _number(row, "addl", label)
        if addl < 0 or not float(addl).is_integer():
            raise ProgressionError(f"{label}, field 'addl': expected a whole number >= 0, found "
                                   f"{addl:g}")
        ii = _number(row, "ii", label)
        if addl > 0 and ii <= 0:
            raise ProgressionError(f"{label}, field 'ii': ADDL = {int(addl)} needs an interdose "
                                   f"interval > 0, found {ii:g}")
        ss = _number(row, "ss", label)
        if ss not in (0, 1):
            raise ProgressionError(f"{label}, field 'ss': expected 0 or 1 (SS = 2 is not "
                                   f"supported), found {ss:g}")
        if ss == 1 and ii <= 0:
            raise ProgressionError(f"{label}, field 'ii': SS = 1 needs an interdose interval "
                                   f"> 0, found {ii:g}")
        if ss == 1 and duration > ii:
            raise ProgressionError(f"{label}, field 'duration': SS = 1 needs the infusion "
                                   f"({duration:g}) to end within the interval II = {ii:g}")
        out.append({"label": label, "subject": index, "time": time, "amount": amount,
                    "state": comp.state, "rate": amount / duration if duration > 0 else 0.0,
                    "duration": duration, "addl": int(addl), "ii": ii, "ss": int(ss),
                    "reset": reset, "dose": dose, "mode": mode})
    return out, max(n_subjects, 1)


def _modelled_mode(rate, duration, amount, dose, comp, name, label) -> int:
    """0, or NONMEM's RATE = -1 (rate from the model) / -2 (duration from the model), checked
    against the compartment's ``[dosing]`` keys ``rate`` / ``duration``."""
    if rate not in (-1.0, -2.0):
        return 0
    key, param = (("rate", comp.rate_parameter) if rate == -1.0
                  else ("duration", comp.duration_parameter))
    what = "rate" if rate == -1.0 else "duration"
    if param is None:
        raise ProgressionError(f"{label}, field 'rate': RATE = {rate:g} takes the infusion's "
                               f"{what} from the model, but model {name!r} names no {what} "
                               f"parameter for compartment {comp.state!r} (NONMEM's modelled "
                               f"rate/duration, RATE = -1 or -2, needs [dosing.{comp.state}] "
                               f"{key} = \"PARAMETER\")")
    if duration != 0:
        raise ProgressionError(f"{label}, field 'duration': RATE = {rate:g} takes the "
                               f"infusion's {what} from parameter {param!r}; expected no "
                               f"duration, found {duration:g}")
    if not dose and amount == 0:
        raise ProgressionError(f"{label}, field 'amount': RATE = {rate:g} (an infusion of "
                               f"modelled {what}) needs an amount > 0, found 0")
    return int(rate)


# ---------------------------------------------------------------------------- switches

def _parameter(model, table, i, name):
    return float(table[i, model.parameter_index(name)])


def _infusion_length(model, rec, comp, table):
    """Duration of a record's infusion, what its start adds to its input parameter (the rate
    per unit of ``F`` for ``rate_STATE``, 1 for ``nrate_STATE``, the amount for
    ``damt_STATE``) and the derivatives of the duration with respect to parameters
    (``{name: d duration / d name}``), at the subject's parameters.

    NONMEM's rules: ``RATE = -1`` delivers ``F * AMT`` at the modelled rate ``R``, so it lasts
    ``F * AMT / R`` (``F`` lengthens it); ``RATE = -2`` delivers ``F * AMT`` over the modelled
    duration ``D``. A rate or duration given in the record keeps its duration ``D`` and ``F``
    scales its rate.
    """
    i = rec["subject"]
    if rec["mode"] == 0:
        return rec["duration"], rec["rate"], {}
    param = comp.rate_parameter if rec["mode"] == -1 else comp.duration_parameter
    value = _parameter(model, table, i, param)
    if not np.isfinite(value) or value <= 0:
        what = "rate" if rec["mode"] == -1 else "duration"
        raise ProgressionError(f"{rec['label']}: RATE = {rec['mode']} takes the infusion's "
                               f"{what} from parameter {param!r}, which must be a finite "
                               f"number > 0, found {value:g}")
    if rec["mode"] == -2:
        return value, rec["amount"], {param: 1.0}
    F = _parameter(model, table, i, comp.bioavailability) if comp.bioavailability else 1.0
    duration = F * rec["amount"] / value
    dp = {param: -duration / value}
    if comp.bioavailability:
        dp[comp.bioavailability] = dp.get(comp.bioavailability, 0.0) + rec["amount"] / value
    return duration, 1.0, dp


def _events(model, records, table):
    """Per-record timed actions: (time, order, kind, subject, payload).

    ``payload`` is ``(parameter, value, time_dp, infusion)`` for an infusion's start or end
    (``infusion`` pairs them), ``(compartment, amount, time_dp)`` for a bolus and ``None`` for
    a reset; ``time_dp`` maps parameters to the derivative of the action's time (1 for a lag,
    the duration's derivatives at an infusion's end)."""
    comps = {c.state: c for c in model.spec.dosing}
    actions = []
    infusion = 0
    for rec in records:
        i = rec["subject"]
        if rec["reset"]:
            actions.append((rec["time"], 0, "reset", i, None))
        if not rec["dose"]:
            continue
        comp = comps[rec["state"]]
        lag = 0.0
        at = {}
        if comp.lag is not None:
            lag = _parameter(model, table, i, comp.lag)
            if not np.isfinite(lag) or lag < 0:
                raise ProgressionError(f"{rec['label']}: lag parameter {comp.lag!r} must be a "
                                       f"finite number >= 0, found {lag:g}")
            at = {comp.lag: 1.0}
        duration, rate, ddur = _infusion_length(model, rec, comp, table)
        target = {0: comp.rate, -1: comp.running, -2: comp.infusing}[rec["mode"]]
        until = dict(at)
        for q, v in ddur.items():
            until[q] = until.get(q, 0.0) + v
        for k in range(rec["addl"] + 1):
            t = rec["time"] + k * rec["ii"] + lag
            if duration > 0:
                infusion += 1
                actions.append((t, 2, "rate", i, (target, rate, at, infusion)))
                actions.append((t + duration, 1, "rate", i, (target, -rate, until, infusion)))
            else:
                actions.append((t, 3, "bolus", i, (comp, rec["amount"], at)))
    return actions


def _stop_infusions_at_resets(actions):
    """A reset stops running infusions: drop the ends that come after the first reset that
    follows their start (the reset sets the input to 0 itself; NONMEM's EVID 3/4)."""
    resets = {}
    for t, _, kind, i, _ in actions:
        if kind == "reset":
            resets.setdefault(i, []).append(t)
    if not resets:
        return actions
    cut = {}
    for t, _, kind, i, payload in actions:
        if kind == "rate" and payload[1] > 0:
            later = [r for r in resets.get(i, []) if r > t]
            cut[payload[3]] = min(later) if later else None
    # An end at the reset's own time goes too: the reset (first at its time) zeroes the input.
    return [a for a in actions
            if not (a[2] == "rate" and a[4][1] < 0 and cut[a[4][3]] is not None
                    and cut[a[4][3]] <= a[0])]


def _grouped(actions):
    """Actions grouped into switches: one per time, order, kind, target and set of
    time-moving parameters, with per-subject values. A subject appears once per switch
    unless its actions there move alike; otherwise it gets a second switch (the moves of
    two infusions ending together at different rates of change are carried apart)."""
    groups: dict = {}
    for t, order, kind, i, payload in actions:
        target = (payload[0] if kind == "rate" else payload[0].state if kind == "bolus"
                  else None)
        moves = payload[2] if payload is not None else {}
        key = (t, order, kind, target, tuple(sorted(moves)))
        parts = groups.setdefault(key, [])
        for part in parts:
            if i not in part or part[i][1] == moves:
                break
        else:
            part = {}
            parts.append(part)
        value = payload[1] if payload is not None else 0.0
        part[i] = (part[i][0] + value if i in part else value, moves)
    return groups


def dose_switches(model, records, table, m_total):
    """Switches giving the records' doses, resets and infusions to ``m_total`` subjects.

    Actions at one time are grouped into one switch per kind and compartment, with per-subject
    values, so a cohort with shared dose times costs a few switches, not one per subject.
    Order at one time: resets, infusion ends, infusion starts, boluses.
    """
    from ._switches import Switch

    spec = model.spec
    actions = _stop_infusions_at_resets(_events(model, records, table))
    groups = _grouped(actions)
    inputs = [c.rate for c in spec.dosing]
    inputs += [c.running for c in spec.dosing if c.rate_parameter]
    inputs += [c.infusing for c in spec.dosing if c.duration_parameter]
    initial = {s.name: str(s.initial) for s in spec.states}
    switches = []
    for key in sorted(groups, key=lambda k: (k[0], k[1])):
        t, _, kind, target, moved = key
        for part in groups[key]:
            mask = np.zeros(m_total, dtype=bool)
            values = np.zeros(m_total)
            time_dp = {q: np.zeros(m_total) for q in moved}
            for i, (value, moves) in part.items():
                mask[i] = True
                values[i] = value
                for q, v in moves.items():
                    time_dp[q][i] = v
            if kind == "reset":
                switches.append(Switch(t, set={r: 0.0 for r in inputs}, jump=initial,
                                       subjects=mask))
            elif kind == "rate":
                switches.append(Switch(t, add={target: values}, subjects=mask,
                                       time_dp=time_dp))
            else:
                comp = next(c for c in spec.dosing if c.state == target)
                gain = f"{comp.bioavailability} * " if comp.bioavailability else ""
                switches.append(Switch(t, set={comp.amount: values},
                                       jump={target: f"{target} + {gain}{comp.amount}"},
                                       subjects=mask, time_dp=time_dp))
    return switches


def steady_states(model, records, table, run, rtol: float, atol: float, sens_index=()):
    """Per SS = 1 record, the periodic steady state just before its dose (see module doc).

    ``run(row, t0, initial, recs, t_end, sens, subject)`` simulates one subject (parameter row
    ``row``, number ``subject`` in the batch) from ``t0`` with states ``initial`` (held fixed:
    no sensitivity) and dose records ``recs`` and returns the states at ``t_end`` (and, with
    ``sens``, their sensitivities ``(n, k)``).
    Returns a list of (time, subject, state vector, derivatives or None): with sensitivity
    parameters, ``y* = Phi(y*, p)`` gives ``dy*/dp = (I - Phi_y)^-1 Phi_p``, ``Phi_y`` by
    differences at ``y*``, ``Phi_p`` from the sensitivities of one interval.
    """
    out = []
    for rec in records:
        if not rec["ss"]:
            continue
        one = dict(rec, ss=0, addl=0, reset=False, subject=0)
        t, ii = rec["time"], rec["ii"]
        row = table[rec["subject"]]
        scale = max(rec["amount"], 1e-12)

        def phi(y, one=one, t=t, ii=ii, row=row, sens=False, subject=rec["subject"]):
            return run(row, t, y, [one], t + ii, sens, subject)

        def jacobian(y, f, scale=scale, phi=phi):
            h = 1e-3 * np.maximum(np.abs(y), scale)
            J = np.empty((y.size, y.size))
            for j in range(y.size):
                e = y.copy()
                e[j] += h[j]
                J[:, j] = (phi(e) - f) / h[j]
            return J

        y = np.zeros(model.n_states)
        converged = False
        for _ in range(25):
            f = phi(y)
            r = f - y
            J = jacobian(y, f)
            try:
                step = np.linalg.solve(J - np.eye(y.size), -r)
            except np.linalg.LinAlgError:
                break
            y = y + step
            if not np.all(np.isfinite(y)):
                break
            if np.max(np.abs(step)) <= 10 * rtol * max(np.max(np.abs(y)), scale) + atol:
                converged = True
                break
        if not converged:
            raise ProgressionError(f"{rec['label']}, field 'ss': the periodic steady state "
                                   f"under dosing every II = {ii:g} was not found (Newton on "
                                   f"one interval did not converge; is the system stable?)")
        dy = None
        if len(sens_index):
            f, dphi = phi(y, sens=True)
            dy = (np.linalg.solve(np.eye(y.size) - jacobian(y, f), dphi), list(sens_index))
        out.append((t, rec["subject"], y, dy))
    return out


def expand_doses(model, doses, table, sens_names, t0, covariates=None, **solver):
    """What :func:`progression.simulate.simulate` does with ``doses=``.

    Returns the parameter table (one row per subject the records need, the model's
    ``dose_parameter`` set to 0) and the switches that give the doses. ``covariates`` (as
    ``simulate`` takes them) enter the steady state of an SS = 1 record at their values at
    the dose time, held constant over the interval.
    """
    from ._api import simulate
    from ._covariates import covariate_schedule
    from ._switches import Switch

    m = table.shape[0]
    records, n = dose_table(model, doses, m)
    if m == 1 and n > 1:
        table = np.repeat(table, n, axis=0)
    elif n > m:
        raise ProgressionError(f"doses: the records name {n} subjects, but {m} parameter sets "
                               f"were given")
    table = table.copy()
    spec = model.spec
    if spec.dose_parameter is not None:
        table[:, model.parameter_index(spec.dose_parameter)] = 0.0
    comps = {c.state: c for c in spec.dosing}
    for rec in records:
        if rec["time"] < t0:
            raise ProgressionError(f"{rec['label']}, field 'time': expected a time >= t0 = "
                                   f"{t0:g}, found {rec['time']:g}")
        if rec["mode"] and rec["dose"]:
            # Checks the modelled rate/duration now, and the steady-state interval below.
            duration = _infusion_length(model, rec, comps[rec["state"]], table)[0]
            if rec["ss"] and duration > rec["ii"]:
                raise ProgressionError(f"{rec['label']}, field 'ss': SS = 1 needs the infusion "
                                       f"({duration:g}, RATE = {rec['mode']} at the subject's "
                                       f"parameters) to end within the interval II = "
                                       f"{rec['ii']:g}")

    schedule = None

    def run(row, start, y, recs, end, sens=False, subject=0):
        nonlocal schedule
        constants = None
        if getattr(model, "covariate_names", ()):
            if schedule is None:
                schedule = covariate_schedule(model, covariates, table.shape[0])
            constants = schedule.constants(subject, start)
        sim = simulate(model, row[None, :], [end], t0=start, covariates=constants,
                       initial={s: float(v) for s, v in zip(model.state_names, y, strict=True)},
                       doses=recs_to_columns(recs), terminal_events=False,
                       sensitivities=list(sens_names) if sens else None, **solver)
        if sim.status[0] < 0:
            raise ProgressionError(f"doses: a steady-state interval failed to solve "
                                   f"({sim.message[0]})")
        if sens:
            return sim.states[0, :, -1], sim.state_sensitivities[0, :, :, -1]
        return sim.states[0, :, -1]

    states = steady_states(model, records, table, run, solver["rtol"], solver["atol"],
                           sens_index=[model.parameter_index(s) for s in sens_names])
    for rec in records:
        if rec["ss"]:
            rec["reset"] = True          # SS = 1 replaces whatever came before
    switches = dose_switches(model, records, table, table.shape[0])
    # The steady state is set right after the reset switch of its time (resets come first).
    for t, i, y, dy in states:
        mask = np.zeros(table.shape[0], dtype=bool)
        mask[i] = True
        dp = {}
        if dy is not None:
            # Full (m, P) rows; the simulator picks its sensitivity columns.
            for j, s in enumerate(model.state_names):
                full = np.zeros((table.shape[0], model.n_parameters))
                full[i, dy[1]] = dy[0][j]
                dp[s] = full
        initial = {s.name: str(s.initial) for s in spec.states}
        k = next(j for j, sw in enumerate(switches)
                 if sw.time == t and sw.subjects[i] and dict(sw.jump) == initial)
        switches.insert(k + 1, Switch(t, states={s: float(v) for s, v in
                                                 zip(model.state_names, y, strict=True)},
                                      states_dp=dp, subjects=mask))
    return table, switches


def recs_to_columns(recs):
    """Validated records back to columns (for the one-interval runs of the steady state)."""
    return {"subject": [0 for _ in recs], "time": [r["time"] for r in recs],
            "amount": [r["amount"] for r in recs], "target": [r["state"] for r in recs],
            "duration": [r["duration"] for r in recs],
            "rate": [float(r.get("mode", 0)) for r in recs]}
