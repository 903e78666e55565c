"""Interventions compiled into engine switches, checked against the model.

:func:`to_switches` turns a combination of :class:`~progression.virtual.interventions.
Intervention` objects into :class:`~progression.simulate.Switch` objects at every change of
any exposure (and every dose of a state jump), after checking every name against the model
and refusing effects that would make a documented non-negative parameter negative. Effects
compose: at exposure ``e`` a ``scale`` factor ``f`` acts as ``1 + (f - 1) e`` and an ``add``
increment ``a`` as ``a e``; the factors of all active interventions multiply, the increments
add (``p(t) = p_base * prod(f_i) + sum(a_i)``), and a ``set`` overrides both while its
intervention is on.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ProgressionError, did_you_mean
from ..simulate import Switch
from .interventions import Intervention, flatten

__all__ = ["to_switches"]


def _max_exposure(iv: Intervention) -> float:
    """The largest exposure an intervention reaches (its effects are written at exposure 1)."""
    return float(iv.pk.emax) if iv.pk is not None else float(iv.level)


def _sign_problems(model, iv: Intervention, name: str) -> list[str]:
    """Refuse effects that make a parameter negative where the model documents it as
    non-negative (lower end of its range >= 0): a negative hazard or rate is not a treatment.

    A negative factor always flips the sign and is refused. A ``set`` or ``add`` giving a
    negative value (at the model default) is refused where the range starts above 0 (a rate, a
    hazard) and accepted where it starts at exactly 0 (an exposure indicator such as ``uIL2``,
    which the fingolimod library entry lowers on purpose to reduce Treg production).
    """
    j = model.parameter_index(name)
    lo, hi = (float(b) for b in model.bounds[j])
    if lo < 0:
        return []
    what = (f"model {model.name!r} documents {name} in [{lo:g}, {hi:g}], so it cannot be "
            "negative")
    e = _max_exposure(iv)
    out, soft = [], []
    if name in iv.scale:
        f = iv.scale[name]
        eff = 1.0 + (f - 1.0) * e
        if f < 0 or eff < 0:
            at = "" if e == 1.0 else f" (at exposure {e:g}: factor {eff:g})"
            out.append(f"intervention {iv.label!r}, scale.{name}: a factor of {f:g}{at} makes "
                       f"{name} negative; {what}; expected a factor >= 0")
    if name in iv.set and iv.set[name] < 0:
        soft.append(f"intervention {iv.label!r}, set.{name}: {iv.set[name]:g} is negative; "
                    f"{what}")
    if name in iv.add:
        base = float(model.defaults[j])
        inc = iv.add[name] / _per(model, iv, name, None)
        if base + inc * e < 0:
            soft.append(f"intervention {iv.label!r}, add.{name}: {inc * e:+g} makes "
                        f"{name} negative at its default {base:g}; {what}")
    return out + soft if lo > 0 else out


def _check_against(model, interventions: list[Intervention]) -> None:
    problems = []
    for iv in interventions:
        bad_per = [p for p in iv.add_per.values() if p not in model.parameter_names]
        for p in bad_per:
            problems.append(f"intervention {iv.label!r}, add_per: model {model.name!r} has no "
                            f"parameter {p!r}{did_you_mean(p, model.parameter_names)}")
        if bad_per:
            continue
        for name in iv.parameters:
            if name not in model.parameter_names:
                hint = did_you_mean(name, model.parameter_names)
                problems.append(f"intervention {iv.label!r}: model {model.name!r} has no "
                                f"parameter {name!r}{hint}")
            else:
                problems += _sign_problems(model, iv, name)
        for name in iv.jump:
            if name not in model.state_names:
                hint = did_you_mean(name, model.state_names)
                problems.append(f"intervention {iv.label!r}, jump: model {model.name!r} has "
                                f"no state {name!r}{hint}")
        if iv.jump and all(name in model.state_names for name in iv.jump):
            try:
                model.jump(iv.jump, where=f"intervention {iv.label!r}, jump")
            except ProgressionError as exc:
                problems.append(str(exc).splitlines()[0])
    if problems:
        raise ConfigError(problems[0], problems)


def to_switches(model, interventions, *, until: float, offset: float = 0.0, base=None,
                subjects=None) -> list[Switch]:
    """Compile interventions (a combination) into engine switches.

    Parameters
    ----------
    model : CompiledModel or PythonModel
        The model (for name checks; pass a loaded model).
    interventions : Intervention or sequence of Intervention
    until : float
        Horizon after the treatment origin: the end of the simulation. Changes are emitted
        before it (none at it, so the last outputs are not altered); an on-block running past
        it still gets its switch-off; continuous exposures are discretised up to it.
    offset : float
        Model time of the treatment origin (all switch times are shifted by it).
    base : array_like, shape (m, P) or (P,), optional
        Base parameter table of the subjects. Needed only where a parameter returns from a
        ``set`` or a zero factor to its base value; the model defaults otherwise.
    subjects : array_like, optional
        Restrict the switches to these subjects (``Switch.subjects``).

    Returns
    -------
    list of Switch
        Sorted by time; parameter changes at a time come before state jumps at that time.
    """
    ivs = flatten(interventions)
    _check_against(model, ivs)
    if not ivs:
        return []
    profiles = [iv.profile(until) for iv in ivs]
    times = sorted({float(t) for edges, _ in profiles for t in edges}
                   | {float(t) for iv in ivs if iv.jump for t in iv.dose_times(until)})
    names = list(dict.fromkeys(n for iv in ivs for n in iv.parameters))
    state = {n: (1.0, 0.0, None) for n in names}     # factor F, increment G, set value S
    base_table = None if base is None else np.atleast_2d(np.asarray(base, dtype=float))
    switches = []
    for t in times:
        values = [_value_at(edges, vals, t) for edges, vals in profiles]
        scale, add, set_ = {}, {}, {}
        for name in names:
            F, G, S = 1.0, 0.0, None
            for iv, e in zip(ivs, values, strict=True):
                if e == 0.0:
                    continue
                if name in iv.set:
                    S = iv.set[name]
                if name in iv.scale:
                    F *= 1.0 + (iv.scale[name] - 1.0) * e
                if name in iv.add:
                    G = G + iv.add[name] / _per(model, iv, name, base_table) * e
            F_old, G_old, S_old = state[name]
            if S is not None:
                if S != S_old:
                    set_[name] = S
            elif S_old is not None or F_old == 0.0:
                j = model.parameter_index(name)
                b = base_table[:, j] if base_table is not None else model.defaults[j]
                v = np.asarray(b * F + G, dtype=float)
                set_[name] = float(v.ravel()[0]) if v.size == 1 else v
            else:
                r = F / F_old
                c = G - G_old * r
                if r != 1.0:
                    scale[name] = r
                if np.any(np.asarray(c) != 0.0):
                    # per-subject increments (add_per) stay an array, one value per subject
                    add[name] = float(np.ravel(c)[0]) if np.size(c) == 1 else c
            state[name] = (F, G, S)
        if scale or add or set_:
            switches.append(Switch(offset + t, scale=scale, add=add, set=set_,
                                   subjects=subjects))
        for iv in ivs:
            if iv.jump and np.any(iv.dose_times(until) == t):
                switches.append(Switch(offset + t, jump=dict(iv.jump), subjects=subjects))
    return switches


def _per(model, iv: Intervention, name: str, base_table):
    """The divisor of ``iv.add[name]``: 1, or the ``add_per`` parameter of each subject (from
    ``base_table`` (m, P) when given, else the model default)."""
    other = iv.add_per.get(name)
    if other is None:
        return 1.0
    j = model.parameter_index(other)
    if base_table is None:
        return float(model.defaults[j])
    v = np.asarray(base_table[:, j], dtype=float)
    return float(v[0]) if v.size == 1 else v


def _value_at(edges: np.ndarray, values: np.ndarray, t: float) -> float:
    k = np.searchsorted(edges, t, side="right") - 1
    return 0.0 if k < 0 else float(values[k])
