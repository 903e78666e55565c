"""Interventions: what a treatment does to which parameter or state, when, and how strongly.

An :class:`Intervention` is a small immutable description of one treatment:

* **effects** on parameters (``scale``, ``add``, ``set`` one or more parameters) and/or on
  states (``jump``: impulses such as a Treg infusion ``R <- R + dR``);
* **timing**: ``start``/``stop``, a schedule of on-blocks (``every``/``duration``/``cycles``,
  e.g. low-dose IL-2 5 days every 28 days) or explicit ``doses`` (e.g. infusions at given
  months);
* **exposure**: on/off (``level`` while on, 0 otherwise), optionally ``fade``-ing (anti-drug
  antibodies), or driven by a one-compartment :class:`PK` model with an Emax/Hill
  exposure-response, so that dose and interval matter.

:func:`~progression.virtual.switches.to_switches` (re-exported here) compiles a list of
interventions (a combination) into :class:`~progression.simulate.Switch` objects against a
model, so the engine restarts the integration exactly at every change; this module only
describes treatments and their exposure over time. Effects compose: at exposure ``e`` a
``scale`` factor ``f`` acts as ``1 + (f - 1) e`` and an ``add`` increment ``a`` as ``a e``; the
factors of all active interventions multiply, the increments add (``p(t) = p_base *
prod(f_i) + sum(a_i)``), and a ``set`` overrides both while its intervention is on.

Continuous exposures (PK, fading) are discretised into piecewise-constant cells: each cell holds
the exact cell *mean* of the exposure (8-point Gauss-Legendre on the closed-form
concentration), so the integrated exposure is exact; cells are bisected until the exposure
varies by at most ``tol`` within a cell or the cell is ``min_cell`` long. The state error this
leaves is second order in the cell length; against the continuous exposure it is below 1e-3 of
the response for the library defaults (see ``tests/test_interventions.py``).

Times of an intervention are relative to the treatment origin (a scenario's start); pass
``offset=`` to :func:`to_switches` to place them on the model clock.

Named treatments with calibrated constants (the ALS drug library) are data:
:mod:`progression.als.library` builds them from ``progression/als/interventions.toml``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace

import numpy as np

from .._repr import changed_fields
from ..errors import ConfigError

__all__ = [
    "DAY", "WEEK", "HOUR", "MONTH_DAYS",
    "PK", "Intervention", "to_switches", "flatten",
]

#: Days per month (365.25 / 12): intervention times are in months, the time unit of the
#: models they were written for.
MONTH_DAYS = 30.4375
DAY = 1.0 / MONTH_DAYS
WEEK = 7.0 * DAY
HOUR = DAY / 24.0

_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_W = _GL_W / _GL_W.sum()


# ---------------------------------------------------------------------------------- PK model


@dataclass(frozen=True, kw_only=True)
class PK:
    """One-compartment pharmacokinetics with an Emax/Hill exposure-response.

    Concentration after doses ``D`` at times ``t_k`` (superposition of closed forms):

    * IV bolus (``absorption_half_life=None``): ``C = F D / V exp(-ke (t - t_k))``;
    * first-order absorption: ``C = F D ka / (V (ka - ke)) (exp(-ke tau) - exp(-ka tau))``.

    Exposure ``e(t) = emax C^h / (ec50^h + C^h)``: the fraction of the intervention's full
    effect (``e = 1`` is the effect written in the intervention).

    Parameters
    ----------
    dose : float
        Amount per administration (e.g. mg; any unit consistent with ``volume`` and ``ec50``).
    volume : float
        Volume of distribution (L).
    half_life : float
        Elimination half-life, in model time units (months; use ``DAY``, ``HOUR``).
    absorption_half_life : float, optional
        First-order absorption half-life; ``None`` for an IV bolus.
    bioavailability : float
    ec50 : float
        Concentration giving half the maximal exposure (dose unit / L).
    hill : float
    emax : float
        Maximal exposure (may exceed 1 for a normalised exposure).
    interval : float, optional
        Dosing interval inside each on-block (e.g. ``DAY`` for daily injections during a 5-day
        IL-2 block); one dose at the start of each block when ``None``.
    tol : float
        Largest change of the exposure within one piecewise-constant cell.
    min_cell, max_cell : float
        Shortest and longest cell (model time units).
    cutoff : float
        After the last dose, an exposure below ``cutoff * emax`` is set to exactly 0.
    """

    dose: float
    volume: float
    half_life: float
    absorption_half_life: float | None = None
    bioavailability: float = 1.0
    ec50: float = 1.0
    hill: float = 1.0
    emax: float = 1.0
    interval: float | None = None
    tol: float = 0.01
    min_cell: float = HOUR
    max_cell: float = 0.25
    cutoff: float = 1e-3

    def __post_init__(self):
        for name in ("dose", "volume", "half_life", "ec50", "hill", "bioavailability",
                     "min_cell", "max_cell", "tol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"PK.{name}: expected a positive number, found {value!r}")
        if self.absorption_half_life is not None and not self.absorption_half_life > 0:
            raise ConfigError(f"PK.absorption_half_life: expected a positive number or None, "
                              f"found {self.absorption_half_life!r}")
        if self.interval is not None and not self.interval > 0:
            raise ConfigError(f"PK.interval: expected a positive number or None, found "
                              f"{self.interval!r}")

    @property
    def ke(self) -> float:
        return math.log(2.0) / self.half_life

    @property
    def ka(self) -> float | None:
        h = self.absorption_half_life
        return None if h is None else math.log(2.0) / h

    def concentration(self, t, dose_times) -> np.ndarray:
        """Concentration at times ``t`` after doses at ``dose_times`` (closed form)."""
        t = np.asarray(t, dtype=float)
        tau = t[..., None] - np.asarray(dose_times, dtype=float)
        on = tau >= 0
        tau = np.where(on, tau, 0.0)
        amount = self.bioavailability * self.dose / self.volume
        ke, ka = self.ke, self.ka
        if ka is None:
            c = amount * np.exp(-ke * tau)
        elif abs(ka - ke) < 1e-9 * ke:
            c = amount * ke * tau * np.exp(-ke * tau)
        else:
            c = amount * ka / (ka - ke) * (np.exp(-ke * tau) - np.exp(-ka * tau))
        return np.where(on, c, 0.0).sum(axis=-1)

    def response(self, c) -> np.ndarray:
        """Emax/Hill exposure for concentrations ``c``."""
        c = np.maximum(np.asarray(c, dtype=float), 0.0)
        ch = c ** self.hill
        return self.emax * ch / (self.ec50 ** self.hill + ch)


# ------------------------------------------------------------------------------ intervention


def _mapping(value, what: str, label: str, parameter: str | None) -> dict:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if parameter is not None and isinstance(value, int | float | str):
        return {parameter: value}
    raise ConfigError(f"intervention {label!r}, {what}: expected a table name -> value"
                      + ("" if parameter else " (or give the parameter name first)")
                      + f", found {value!r}")


@dataclass(frozen=True)
class Intervention:
    """One treatment: effects on parameters and states, timing, exposure.

    ``Intervention("kA", scale=0.5, start=6)`` halves ``kA`` from 6 months after the treatment
    origin; ``Intervention(scale={"aD": 0.7, "aAA": 0.7}, add={"uIL2": 1.0}, ...)`` acts on
    several parameters. All options are keyword-only.

    Parameters
    ----------
    parameter : str, optional
        Shorthand: the parameter that scalar ``scale``/``add``/``set`` values refer to.
    scale, add, set : mapping of str to float, optional
        Effects at full exposure: factor, increment, or value (set: on/off exposures only).
    add_per : mapping of str to str, optional
        Increments of ``add`` given per unit of another model parameter: with
        ``add={"uIL2": -0.4}, add_per={"uIL2": "gIL2"}`` the increment is ``-0.4 / gIL2``,
        with each subject's own ``gIL2`` (the ``base`` table of `to_switches`, else the model
        default). A term ``gIL2 * uIL2`` then changes by exactly -0.4 whatever gIL2 is.
    jump : mapping of str to str, optional
        State impulses given as expressions of the states before the impulse, e.g.
        ``{"R": "R + 0.3", "phi": "(R*phi + 0.3*1.0)/(R + 0.3)"}``; applied at every dose
        time (``doses``), else at the start of every on-block.
    start : float
        Start, in model time units after the treatment origin.
    stop : float, optional
        End (exposure off, no more doses); runs to the end of the simulation when ``None``.
    every, duration : float, optional
        A schedule of on-blocks: ``duration`` long, every ``every``, from ``start``.
    cycles : int, optional
        Number of on-blocks (all up to ``stop`` or the horizon when ``None``).
    doses : sequence of float, optional
        Dose/impulse times after ``start`` (e.g. infusion months). With ``pk`` these are the
        PK dose times; without, the exposure is on from ``start`` to ``stop``.
    level : float
        Exposure while on (on/off exposures), e.g. a dose level relative to a reference.
    pk : PK, optional
        Drive the exposure by a one-compartment PK model and Emax/Hill response instead.
    fade : (float, float), optional
        ``(after, half_life)``: from ``after`` past ``start`` the exposure halves every
        ``half_life`` (e.g. anti-drug antibodies).
    label, mechanism, source : str
        Documentation: name, mechanism and model handle, trial source.
    """

    parameter: str | None = None
    _: KW_ONLY
    scale: Mapping = field(default_factory=dict)
    add: Mapping = field(default_factory=dict)
    set: Mapping = field(default_factory=dict)
    add_per: Mapping = field(default_factory=dict)
    jump: Mapping = field(default_factory=dict)
    start: float = 0.0
    stop: float | None = None
    every: float | None = None
    duration: float | None = None
    cycles: int | None = None
    doses: Sequence[float] | None = None
    level: float = 1.0
    pk: PK | None = None
    fade: tuple[float, float] | None = None
    label: str = ""
    mechanism: str = ""
    source: str = ""

    def __repr__(self) -> str:
        return changed_fields(self)

    def __post_init__(self):
        label = self.label or self.parameter or "intervention"
        setattr_ = object.__setattr__
        setattr_(self, "label", label)
        for name in ("scale", "add", "set"):
            values = _mapping(getattr(self, name), name, label, self.parameter)
            for key, v in values.items():
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ConfigError(f"intervention {label!r}, {name}.{key}: expected a "
                                      f"finite number, found {v!r}")
            setattr_(self, name, {k: float(v) for k, v in values.items()})
        jump = _mapping(self.jump, "jump", label, None)
        setattr_(self, "jump", {k: str(v) for k, v in jump.items()})
        per = _mapping(self.add_per, "add_per", label, None)
        for key, v in per.items():
            if key not in self.add:
                raise ConfigError(f"intervention {label!r}, add_per.{key}: expected a key of "
                                  f"'add' (the increment it divides), found none for {key!r}")
            if not isinstance(v, str) or not v:
                raise ConfigError(f"intervention {label!r}, add_per.{key}: expected a "
                                  f"parameter name, found {v!r}")
        setattr_(self, "add_per", dict(per))
        if self.parameter is not None and not (self.scale or self.add or self.set):
            raise ConfigError(f"intervention {label!r}: parameter {self.parameter!r} given "
                              f"without scale, add or set")

        def number(name, value, *, positive=False, allow_none=True):
            if value is None and allow_none:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or (positive and value <= 0):
                kind = "a positive number" if positive else "a finite number"
                raise ConfigError(f"intervention {label!r}, {name}: expected {kind}, found "
                                  f"{value!r}")
            return float(value)

        setattr_(self, "start", number("start", self.start, allow_none=False))
        setattr_(self, "stop", number("stop", self.stop))
        setattr_(self, "every", number("every", self.every, positive=True))
        setattr_(self, "duration", number("duration", self.duration, positive=True))
        setattr_(self, "level", number("level", self.level, allow_none=False))
        if self.level < 0:
            raise ConfigError(f"intervention {label!r}, level: expected an exposure >= 0, found "
                              f"{self.level:g}")
        if self.stop is not None and self.stop <= self.start:
            raise ConfigError(f"intervention {label!r}, stop: expected a time after start "
                              f"({self.start:g}), found {self.stop:g}")
        if self.cycles is not None and (not isinstance(self.cycles, int) or self.cycles < 1):
            raise ConfigError(f"intervention {label!r}, cycles: expected a positive integer, "
                              f"found {self.cycles!r}")
        if (self.every is None) != (self.duration is None) and self.pk is None:
            raise ConfigError(f"intervention {label!r}: 'every' and 'duration' go together "
                              f"(a schedule of on-blocks)")
        if self.every is not None and self.duration is not None and self.duration > self.every:
            raise ConfigError(f"intervention {label!r}, duration: expected at most 'every' "
                              f"({self.every:g}), found {self.duration:g}")
        if self.doses is not None:
            doses = tuple(number("doses", d) for d in self.doses)
            if any(d < 0 for d in doses) or list(doses) != sorted(doses):
                raise ConfigError(f"intervention {label!r}, doses: expected increasing times "
                                  f">= 0 after start, found {list(doses)}")
            setattr_(self, "doses", doses)
        if self.pk is not None and not isinstance(self.pk, PK):
            raise ConfigError(f"intervention {label!r}, pk: expected a PK object, found "
                              f"{type(self.pk).__name__}")
        if self.pk is not None and self.set:
            raise ConfigError(f"intervention {label!r}: 'set' needs an on/off exposure; use "
                              f"'add' or 'scale' with a PK-driven exposure")
        if self.fade is not None:
            if len(self.fade) != 2:
                raise ConfigError(f"intervention {label!r}, fade: expected (after, half_life)")
            after = number("fade[0]", self.fade[0])
            half = number("fade[1]", self.fade[1], positive=True)
            setattr_(self, "fade", (after, half))
        if self.fade is not None and self.set:
            raise ConfigError(f"intervention {label!r}: 'set' cannot fade; use 'add' or "
                              f"'scale'")

    # ---------------------------------------------------------------- derived quantities

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameters the intervention acts on."""
        return tuple(dict.fromkeys([*self.scale, *self.add, *self.set]))

    @property
    def continuous(self) -> bool:
        """The exposure varies continuously (PK or fading) and is discretised into cells."""
        return self.pk is not None or self.fade is not None

    def with_options(self, **changes) -> Intervention:
        """A copy with some options changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    def windows(self, until: float) -> list[tuple[float, float]]:
        """On-blocks ``(begin, end)`` beginning before ``until`` (times after the treatment
        origin); a block's end may lie beyond ``until``."""
        stop = min(self.stop if self.stop is not None else np.inf, until)
        if self.start >= stop:
            return []
        if self.every is None or self.doses is not None:
            return [(self.start, stop)]
        end = self.stop if self.stop is not None else np.inf
        out, k = [], 0
        while True:
            a = self.start + k * self.every
            if a >= stop or (self.cycles is not None and k >= self.cycles):
                break
            out.append((a, min(a + (self.duration or self.every), end)))
            k += 1
        return out

    def dose_times(self, until: float) -> np.ndarray:
        """Dose (PK) or impulse (jump) times up to ``until``."""
        stop = min(self.stop if self.stop is not None else np.inf, until)
        if self.doses is not None:
            t = self.start + np.asarray(self.doses, dtype=float)
            return t[t < stop]
        times = []
        for a, b in self.windows(until):
            if self.pk is not None and self.pk.interval is not None:
                n = int(math.ceil((b - a) / self.pk.interval - 1e-9))
                times += [a + j * self.pk.interval for j in range(max(n, 1))]
            else:
                times.append(a)
        return np.array(times, dtype=float)

    def exposure(self, t, until: float = np.inf) -> np.ndarray:
        """The exact (continuous) exposure at times ``t`` (fraction of the full effect)."""
        t = np.asarray(t, dtype=float)
        if self.pk is not None:
            doses = self.dose_times(until)
            e = self.pk.response(self.pk.concentration(t, doses)) if doses.size else 0.0 * t
        else:
            e = np.zeros_like(t)
            for a, b in self.windows(until):
                e = np.where((t >= a) & (t < b), self.level, e)
        if self.fade is not None:
            after, half = self.fade
            e = e * np.exp2(-np.maximum(t - self.start - after, 0.0) / half)
        return e

    def profile(self, until: float) -> tuple[np.ndarray, np.ndarray]:
        """Piecewise-constant exposure: ``(edges, values)``, value ``values[i]`` from
        ``edges[i]`` until the next edge (the last value holds to ``until``)."""
        if not np.isfinite(until):
            raise ConfigError(f"intervention {self.label!r}: a finite horizon is needed")
        if not self.continuous:
            edges, values = [], []
            for a, b in self.windows(until):
                edges += [a, b]
                values += [self.level, 0.0]
            return _tidy(np.array(edges), np.array(values), until)
        return self._cells(until)

    def _cells(self, until: float):
        pk = self.pk
        tol = pk.tol if pk else 0.01
        min_cell = pk.min_cell if pk else DAY
        max_cell = pk.max_cell if pk else 0.25
        doses = self.dose_times(until) if pk else np.array([])
        breaks = {self.start, until}
        if pk is not None:
            breaks |= {float(d) for d in doses}
            if self.stop is not None:
                breaks.add(self.stop)
        else:
            for a, b in self.windows(until):
                breaks |= {a, b}
        if self.fade is not None:
            breaks.add(self.start + self.fade[0])
        breaks = sorted(b for b in breaks if self.start <= b <= until)
        cells = []
        stack = [(a, b) for a, b in zip(breaks[:-1], breaks[1:], strict=True) if b > a]
        stack.reverse()
        probe = np.linspace(0.0, 1.0, 9)
        while stack:
            a, b = stack.pop()
            if b - a > max_cell:
                n = int(math.ceil((b - a) / max_cell))
                pts = np.linspace(a, b, n + 1)
                stack.extend(reversed(list(zip(pts[:-1], pts[1:], strict=True))))
                continue
            e = self.exposure(a + (b - a) * probe, until)
            if np.ptp(e) > tol and (b - a) > 2 * min_cell:
                mid = 0.5 * (a + b)
                stack.extend([(mid, b), (a, mid)])
                continue
            mean = float(np.dot(_GL_W, self.exposure(a + 0.5 * (b - a) * (_GL_X + 1), until)))
            cells.append((a, mean))
        edges = np.array([c[0] for c in cells] + [until])
        values = np.array([c[1] for c in cells] + [0.0])
        if pk is not None:
            last = doses.max() if doses.size else self.start
            small = (edges >= last) & (np.abs(values) < pk.cutoff * abs(pk.emax))
            values[small] = 0.0
        return _tidy(edges, values, until)

    def describe(self) -> str:
        """One paragraph: label, effects, timing, exposure, mechanism and source."""
        effects = ([f"{k} x{v:g}" for k, v in self.scale.items()]
                   + [f"{k} {v:+g}" + (f"/{self.add_per[k]}" if k in self.add_per else "")
                      for k, v in self.add.items()]
                   + [f"{k} = {v:g}" for k, v in self.set.items()]
                   + [f"{k} <- {v}" for k, v in self.jump.items()])
        timing = f"from {_t(self.start)}"
        if self.stop is not None:
            timing += f" to {_t(self.stop)}"
        if self.every is not None:
            block = f"{_t(self.duration)} " if self.duration is not None else "doses "
            timing += f", {block}every {_t(self.every)}"
            if self.cycles:
                timing += f" x{self.cycles}"
        if self.pk is not None and self.pk.interval is not None:
            timing += f" (doses every {_t(self.pk.interval)})"
        if self.doses is not None:
            timing += f", doses at +{', +'.join(_t(d) for d in self.doses)}"
        exposure = "PK/Emax" if self.pk else f"on/off (level {self.level:g})"
        if self.fade:
            exposure += f", fading after {_t(self.fade[0])} (half-life {_t(self.fade[1])})"
        text = f"{self.label}: {'; '.join(effects) or 'no effect'}; {timing}; {exposure}."
        if self.mechanism:
            text += f" Mechanism: {self.mechanism}."
        if self.source:
            text += f" Source: {self.source}."
        return text


def _t(x: float) -> str:
    """A time in months, shown in days when shorter than a month."""
    if x == 0:
        return "0"
    if abs(x) < 1.0:
        return f"{x * MONTH_DAYS:.3g} d"
    return f"{x:.3g} mo"


def _tidy(edges: np.ndarray, values: np.ndarray, until: float):
    """Drop repeated values and edges at or after ``until``, except switch-offs after it
    (so that a block running past ``until`` still ends if the simulation goes on)."""
    keep = (edges < until) | ((edges > until) & (values == 0.0))
    edges, values = edges[keep], values[keep]
    if edges.size == 0:
        return edges, values
    order = np.argsort(edges, kind="stable")
    edges, values = edges[order], values[order]
    # Later entries at the same time win (a block ending where the next one begins).
    last = np.r_[edges[1:] != edges[:-1], True]
    edges, values = edges[last], values[last]
    change = np.r_[True, values[1:] != values[:-1]]
    return edges[change], values[change]


def flatten(interventions) -> list[Intervention]:
    """A list of interventions from an intervention, ``None`` or nested sequences."""
    if interventions is None:
        return []
    if isinstance(interventions, Intervention):
        return [interventions]
    out = []
    if isinstance(interventions, str | bytes) or not isinstance(interventions, Iterable):
        raise ConfigError(f"interventions: expected Intervention objects, found "
                          f"{type(interventions).__name__}")
    for item in interventions:
        out += flatten(item)
    return out


# to_switches is part of this module's interface (``from .interventions import to_switches``);
# it lives in .switches, which imports Intervention from here, so it is imported last
from .switches import to_switches  # noqa: E402
