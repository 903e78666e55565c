"""Scenario comparison: the same subjects under different interventions, on clinical endpoints.

:func:`compare` takes a *source* of subjects -- a fit (any object with ``model``,
``subject_ids``, ``subject_parameters`` ``(m, P)``, ``time_offsets`` ``(m,)`` and optionally
``sample_parameters(n, rng) -> (n, m, P)``) or a :class:`VirtualPopulation` -- and a dict of
scenarios ``name -> list of Intervention``, and returns a :class:`Comparison` with per-subject
and summary endpoint tables, trajectory bands, Kaplan-Meier curves, figures and files.

How it is simulated. Treatment starts at ``start`` (data time: months after each subject's data
time 0, i.e. model time ``time_offsets + start``). One untreated batched simulation gives every
subject's state at its own start; each scenario is then ONE batched :func:`simulate` call over
all subjects (and all parameter draws) on the treatment clock ``tau = t - start_i``, starting
from those states, with the interventions compiled once into shared switch times. This is exact
for autonomous models (no explicit ``t`` in the right-hand side, as for the ALS models); for a
model that uses ``t`` the subjects are simulated in groups sharing a start time on the model
clock instead.

Uncertainty, kept apart:

* **between-subject variability** (BSV): the spread of the subjects' own (point-estimate)
  trajectories and endpoints, 5th-95th percentiles;
* **parameter uncertainty**: ``draws`` parameter sets (with their time offsets) from
  ``source.parameter_draws`` (a fit: drawn on the estimation scale from a regularised
  covariance, inside the bounds without clipping, see
  :meth:`progression.fit.FitResult.parameter_draws`) or ``source.sample_parameters``; each
  draw gives a population mean (trajectory, endpoint, difference vs the reference), and the
  2.5th-97.5th percentiles over draws bound it. A :class:`VirtualPopulation` has none. The
  table says which subjects' covariances were singular and how that was handled, and flags
  (with the reason) an interval that does not contain its point value.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._survival import exponential_hazard_ratio, kaplan_meier, km_median, rmst
from .errors import ConfigError, ProgressionError
from .interventions import Intervention, flatten, to_switches
from .model import load_model
from .simulate import simulate

__all__ = [
    "Variability", "ALS_VARIABILITY", "default_variability", "VirtualPopulation",
    "Endpoints", "Comparison", "compare", "states_at", "is_autonomous",
]

REFERENCE = "no treatment"

#: Arms (besides the reference) drawn in one panel of the trajectory and survival figures;
#: more scenarios are split over columns of panels, each with the reference in black.
ARMS_PER_PANEL = 5

#: Between-subject band kept for the figures (percentiles).
PLOT_BAND = (5, 95)


# ------------------------------------------------------------------------ virtual populations


@dataclass(frozen=True, kw_only=True)
class Variability:
    """Between-subject variability around a model's default parameters.

    Parameters
    ----------
    log_sd : mapping of str to float
        Independent log-normal variability: ``p = default * exp(sd * z)``.
    normal_sd : mapping of str to float
        Independent additive normal variability: ``p = default + sd * z``.
    shared : sequence of (sequence of str, float, float)
        Common factors: ``(parameters, log_mean, log_sd)`` draws one factor
        ``exp(log_mean + log_sd z)`` per subject multiplying all listed parameters (e.g. a
        disease time-scale factor on ``k0`` and ``kA``).
    clip : bool
        Clip every parameter to the model's bounds.
    """

    log_sd: Mapping = field(default_factory=dict)
    normal_sd: Mapping = field(default_factory=dict)
    shared: Sequence = ()
    clip: bool = True

    def names(self) -> set:
        return {*self.log_sd, *self.normal_sd, *(n for names, _, _ in self.shared for n in names)}

    def check(self, model) -> None:
        for name in sorted(self.names()):
            model.parameter_index(name)

    def sample(self, model, n: int, rng, base=None) -> np.ndarray:
        """A ``(n, P)`` parameter table around ``base`` (default: the model defaults)."""
        self.check(model)
        table = np.repeat(np.asarray(model.defaults if base is None else base, float)[None],
                          n, axis=0)
        for names, mean, sd in self.shared:
            factor = np.exp(mean + sd * rng.standard_normal(n))
            for name in names:
                table[:, model.parameter_index(name)] *= factor
        for name, sd in self.log_sd.items():
            table[:, model.parameter_index(name)] *= np.exp(sd * rng.standard_normal(n))
        for name, sd in self.normal_sd.items():
            table[:, model.parameter_index(name)] += sd * rng.standard_normal(n)
        if self.clip:
            table = np.clip(table, model.bounds[:, 0], model.bounds[:, 1])
        return table


#: The virtual cohort of als-biology.md §5 [D]: a disease time-scale factor
#: theta ~ LN(-0.2, 0.7^2) on k0 and kA, log-SD 0.3 on k0, kA, eD and phimax, and N_death with
#: SD 0.05; clipped to the parameter ranges.
ALS_VARIABILITY = Variability(
    log_sd={"k0": 0.3, "kA": 0.3, "eD": 0.3, "phimax": 0.3},
    normal_sd={"Ndeath": 0.05},
    shared=((("k0", "kA"), -0.2, 0.7),),
)


def default_variability(model) -> Variability:
    """:data:`ALS_VARIABILITY` restricted to the model's parameters, else log-SD 0.3 on every
    parameter with a positive default."""
    names = set(model.parameter_names)
    v = ALS_VARIABILITY
    if v.names() & names:
        return Variability(
            log_sd={k: s for k, s in v.log_sd.items() if k in names},
            normal_sd={k: s for k, s in v.normal_sd.items() if k in names},
            shared=tuple((tuple(n for n in ns if n in names), m, s) for ns, m, s in v.shared
                         if any(n in names for n in ns)))
    return Variability(log_sd={n: 0.3 for n, d in zip(model.parameter_names, model.defaults,
                                                       strict=True) if d > 0})


@dataclass(frozen=True)
class VirtualPopulation:
    """A population of virtual subjects: model, parameter table and time offsets.

    It offers the same attributes as a fit (``model``, ``subject_ids``,
    ``subject_parameters``, ``time_offsets``) so :func:`compare` treats both alike; it has no
    parameter uncertainty.

    Attributes
    ----------
    model : CompiledModel
    subject_parameters : ndarray, shape (m, P)
    time_offsets : ndarray, shape (m,)
        Model time at each subject's data time 0 (e.g. enrolment).
    subject_ids : tuple of str
    description : str
    """

    model: object
    subject_parameters: np.ndarray
    time_offsets: np.ndarray
    subject_ids: tuple = ()
    description: str = ""

    def __post_init__(self):
        model = load_model(self.model)
        table = model.parameter_table(self.subject_parameters)
        offsets = np.broadcast_to(np.asarray(self.time_offsets, float), (table.shape[0],))
        ids = tuple(str(s) for s in self.subject_ids) or tuple(
            f"V{i + 1:04d}" for i in range(table.shape[0]))
        if len(ids) != table.shape[0]:
            raise ProgressionError(f"VirtualPopulation: {len(ids)} subject ids for "
                                   f"{table.shape[0]} parameter rows")
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "subject_parameters", table)
        object.__setattr__(self, "time_offsets", offsets.copy())
        object.__setattr__(self, "subject_ids", ids)

    @property
    def n_subjects(self) -> int:
        return self.subject_parameters.shape[0]

    def subset(self, index) -> VirtualPopulation:
        index = np.asarray(index)
        return VirtualPopulation(self.model, self.subject_parameters[index],
                                 self.time_offsets[index],
                                 tuple(np.asarray(self.subject_ids)[index]), self.description)

    @classmethod
    def typical(cls, model="als_systemic", *, anchor: str | None = "clinical_onset",
                delay: float = 12.0) -> VirtualPopulation:
        """One subject with the default parameters, data time 0 at ``anchor + delay``."""
        model = load_model(model)
        table = model.parameter_table(None)
        offset = _anchor_times(model, table, anchor, np.array([delay]))[0]
        if not np.isfinite(offset):
            raise ProgressionError(f"VirtualPopulation.typical: event {anchor!r} does not "
                                   f"happen for the default parameters of {model.name!r}")
        return cls(model, table, np.array([offset]), ("typical",),
                   f"typical patient of {model.name}, data time 0 = {anchor or 'model time'} "
                   f"+ {delay:g}")

    @classmethod
    def sample(cls, model="als_systemic", n: int = 100, *, seed=0,
               variability: Variability | None = None, anchor: str | None = "clinical_onset",
               delay=12.0, max_time: float = 240.0) -> VirtualPopulation:
        """Sample ``n`` virtual subjects alive at their data time 0.

        Parameters
        ----------
        model : str or model
        n : int
        seed : int or numpy Generator
        variability : Variability, optional
            :func:`default_variability` by default (§5 cohort for the ALS models).
        anchor : str or None
            Event defining the data clock (``"clinical_onset"``): data time 0 is
            ``anchor + delay``; ``None`` puts it at model time ``delay``.
        delay : float or (float, float)
            Months after the anchor (a pair: uniform between them per subject).
        max_time : float
            Subjects whose anchor does not happen by then, or who die before data time 0, are
            replaced by new draws.
        """
        model = load_model(model)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        variability = variability or default_variability(model)
        tables, offsets = [], []
        have = 0
        for _ in range(50):
            k = int(math.ceil((n - have) * 1.3)) + 4
            table = variability.sample(model, k, rng)
            d = _draw_delay(delay, k, rng)
            when = _anchor_times(model, table, anchor, d, max_time=max_time)
            ok = np.isfinite(when)
            tables.append(table[ok])
            offsets.append(when[ok])
            have += int(ok.sum())
            if have >= n:
                break
        else:
            raise ProgressionError(f"VirtualPopulation.sample: could not find {n} subjects alive "
                                   f"at their data time 0 (found {have})")
        table = np.concatenate(tables)[:n]
        offs = np.concatenate(offsets)[:n]
        desc = (f"{n} virtual subjects of {model.name}, data time 0 = "
                f"{anchor or 'model time'} + {delay}")
        return cls(model, table, offs, (), desc)


def _draw_delay(delay, k, rng) -> np.ndarray:
    if np.ndim(delay) == 0:
        return np.full(k, float(delay))
    lo, hi = (float(x) for x in delay)
    if hi < lo:
        raise ProgressionError(f"delay: expected (low, high), found {delay}")
    return rng.uniform(lo, hi, k)


def _terminal_names(model) -> list[str]:
    return [e.name for e in model.events if e.terminal]


def _anchor_times(model, table, anchor, delay, *, max_time=240.0) -> np.ndarray:
    """Model time of ``anchor + delay`` per subject; NaN if the anchor does not happen by
    ``max_time`` or a terminal event comes first."""
    sim = simulate(model, table, [0.0, max_time])
    if anchor is None:
        when = np.asarray(delay, float) + 0.0 * table[:, 0]
    else:
        if anchor not in sim.events:
            raise ConfigError(f"anchor: model {model.name!r} has no event {anchor!r} (events: "
                              f"{', '.join(sim.events) or 'none'})")
        when = sim.event_time(anchor) + delay
    end = np.full(table.shape[0], np.inf)
    for name in _terminal_names(model):
        t = sim.event_time(name)
        end = np.where(np.isfinite(t), np.minimum(end, t), end)
    bad = ~np.isfinite(when) | (when >= end) | (when > max_time) | (when < 0) | ~sim.success
    return np.where(bad, np.nan, when)


# ------------------------------------------------------------------------------ simulation


def is_autonomous(model) -> bool:
    """True when the model's right-hand side and observables do not use ``t`` explicitly."""
    sym = getattr(model, "symbolic", None)
    if sym is None:
        return False
    exprs = [*sym.rhs, *sym.observables, *sym.events]
    return not any(sym.t in getattr(e, "free_symbols", ()) for e in exprs)


def states_at(model, table, when, *, chunk: int = 256, **options):
    """Untreated states of each subject at its own model time ``when[i]``.

    One batched simulation per chunk of ``chunk`` subjects (outputs at the chunk's distinct
    times).

    Returns
    -------
    y : ndarray, shape (m, n_states)
        NaN where the subject had died (terminal event) or failed.
    observables : ndarray, shape (m, n_observables)
    events : dict of str to ndarray
        First time of each event per subject (model time; NaN if none by ``when``).
    """
    model = load_model(model)
    table = np.atleast_2d(table)
    when = np.asarray(when, float)
    m = table.shape[0]
    y = np.full((m, model.n_states), np.nan)
    obs = np.full((m, len(model.observable_names)), np.nan)
    events = {e.name: np.full(m, np.nan) for e in model.events}
    for lo in range(0, m, chunk):
        idx = np.arange(lo, min(m, lo + chunk))
        times = np.unique(when[idx])
        sim = simulate(model, table[idx], times, **options)
        j = np.searchsorted(times, when[idx])
        y[idx] = sim.states[np.arange(idx.size), :, j]
        obs[idx] = sim.observables[np.arange(idx.size), :, j]
        for name in events:
            t = sim.event_time(name)
            events[name][idx] = np.where(t <= when[idx], t, np.nan)
        y[idx[~sim.success]] = np.nan
    return y, obs, events


def _simulate_scenario(model, table, starts, y0, interventions, tau, *, autonomous, options):
    """One scenario for a batch of subjects on the treatment clock ``tau``.

    Subjects with non-finite ``y0`` (dead before their start) are simulated from the model's
    initial state and must be masked by the caller.
    """
    horizon = float(tau[-1])
    alive = np.all(np.isfinite(y0), axis=1)
    if autonomous:
        y_init = y0.copy()
        if not alive.all():
            y_init[~alive] = model.initial(0.0, None, table[~alive].T).T
        switches = to_switches(model, interventions, until=horizon, base=table)
        initial = {name: y_init[:, i] for i, name in enumerate(model.state_names)}
        return simulate(model, table, tau, initial=initial, switches=switches, **options)
    # Non-autonomous model: groups of subjects sharing a start, on the model clock.
    parts, order = [], []
    for s in np.unique(starts):
        idx = np.nonzero(starts == s)[0]
        switches = to_switches(model, interventions, until=horizon, offset=float(s),
                               base=table[idx])
        parts.append(simulate(model, table[idx], s + tau, switches=switches, **options))
        order.append(idx)
    return _stitch(parts, order, table.shape[0], tau)


class _Stitched:
    """What the endpoint code needs from a simulation, assembled from groups."""

    def __init__(self, names, obs_names, states, observables, events, status, units):
        self.state_names, self.observable_names = names, obs_names
        self.states, self.observables = states, observables
        self.events, self.status, self.units = events, status, units

    def __getitem__(self, name):
        if name in self.observable_names:
            return self.observables[:, self.observable_names.index(name)]
        return self.states[:, self.state_names.index(name)]

    def event_time(self, name):
        return self.events[name]


def _stitch(parts, order, m, tau):
    first = parts[0]
    states = np.full((m, *first.states.shape[1:2], tau.size), np.nan)
    obs = np.full((m, *first.observables.shape[1:2], tau.size), np.nan)
    events = {name: np.full(m, np.nan) for name in first.events}
    status = np.zeros(m, int)
    for sim, idx in zip(parts, order, strict=True):
        states[idx], obs[idx], status[idx] = sim.states, sim.observables, sim.status
        start = sim.times[0]
        for name in events:
            events[name][idx] = sim.event_time(name) - start
    return _Stitched(first.state_names, first.observable_names, states, obs, events, status,
                     first.units)


# -------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """Which endpoints :func:`compare` computes (times in months after the start).

    Parameters
    ----------
    function : str
        Functional score observable (ALSFRS-R).
    times : sequence of float
        Times of the change-from-baseline endpoints.
    slope_window : (float, float)
        Window of the least-squares slope of ``function``.
    threshold : float
        Time to ``function`` falling to this value.
    event : str
        Survival event (death or permanent ventilation).
    markers : sequence of str
        Biomarkers reported as % change from baseline at ``times``.
    share : str, optional
        Observable averaged over ``slope_window`` (share of the hazard due to inflammation).
    """

    function: str = "ALSFRS_R"
    times: Sequence[float] = (6.0, 12.0, 18.0)
    slope_window: tuple[float, float] = (0.0, 12.0)
    threshold: float = 24.0
    event: str = "death"
    markers: Sequence[str] = ("NfL", "CRP")
    share: str | None = "inflammatory_share"

    def resolved(self, model, horizon: float) -> Endpoints:
        """Drop what the model lacks or what lies beyond the horizon."""
        obs = set(model.observable_names) | set(model.state_names)
        if self.function not in obs:
            raise ConfigError(f"endpoints.function: model {model.name!r} has no observable "
                              f"{self.function!r}")
        events = {e.name for e in model.events}
        a, b = self.slope_window
        if not 0 <= a < b:
            raise ConfigError(f"endpoints.slope_window: expected 0 <= start < end, found "
                              f"{self.slope_window}")
        return Endpoints(
            function=self.function,
            times=tuple(float(t) for t in self.times if 0 < t <= horizon + 1e-9),
            slope_window=(a, min(b, horizon)),
            threshold=float(self.threshold),
            event=self.event if self.event in events else "",
            markers=tuple(mk for mk in self.markers if mk in obs),
            share=self.share if self.share in obs else None,
        )

    def columns(self) -> list[str]:
        f = self.function
        cols = [f"{f}_change_{t:g}m" for t in self.times]
        a, b = self.slope_window
        cols.append(f"{f}_slope_{a:g}-{b:g}m")
        cols += [f"time_to_{f}_le_{self.threshold:g}", f"{f}_le_{self.threshold:g}_reached"]
        if self.event:
            cols += [f"time_to_{self.event}", f"{self.event}_observed"]
        cols += [f"{mk}_change_pct_{t:g}m" for mk in self.markers for t in self.times]
        if self.share:
            cols.append(f"{self.share}_mean_{a:g}-{b:g}m")
        return cols

    def time_to_event_pairs(self) -> list[tuple[str, str]]:
        f = self.function
        pairs = [(f"time_to_{f}_le_{self.threshold:g}", f"{f}_le_{self.threshold:g}_reached")]
        if self.event:
            pairs.append((f"time_to_{self.event}", f"{self.event}_observed"))
        return pairs


def _endpoint_values(ep: Endpoints, tau, sim, baseline: dict, valid) -> dict:
    """Per-subject endpoints from a scenario simulation (rows of ``sim``)."""
    horizon = float(tau[-1])
    F = np.array(sim[ep.function], dtype=float)
    F[~valid] = np.nan
    out = {}
    f0 = baseline[ep.function]
    for t in ep.times:
        j = int(np.argmin(np.abs(tau - t)))
        out[f"{ep.function}_change_{t:g}m"] = F[:, j] - f0
    a, b = ep.slope_window
    win = (tau >= a - 1e-9) & (tau <= b + 1e-9)
    x = tau[win]
    Y = F[:, win]
    ok = np.isfinite(Y)
    n = ok.sum(axis=1)
    xm = np.where(ok, x[None], 0.0).sum(1) / np.maximum(n, 1)
    ym = np.where(ok, Y, 0.0).sum(1) / np.maximum(n, 1)
    dx = np.where(ok, x[None] - xm[:, None], 0.0)
    dy = np.where(ok, Y - ym[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (dx * dy).sum(1) / (dx * dx).sum(1)
    out[f"{ep.function}_slope_{a:g}-{b:g}m"] = np.where(n >= 3, slope, np.nan)
    # time to threshold (linear interpolation on the output grid), censored at death/horizon
    thr = ep.threshold
    below = F <= thr
    reached = below.any(axis=1)
    k = np.argmax(below, axis=1)
    t_hit = np.full(F.shape[0], np.nan)
    for i in np.nonzero(reached)[0]:
        j = k[i]
        if j == 0:
            t_hit[i] = tau[0]
        else:
            f1, f2 = F[i, j - 1], F[i, j]
            w = (f1 - thr) / (f1 - f2) if f1 != f2 else 1.0
            t_hit[i] = tau[j - 1] + w * (tau[j] - tau[j - 1])
    last_alive = np.where(np.isfinite(F), tau[None], -np.inf).max(axis=1)
    death = np.asarray(sim.event_time(ep.event), float) if ep.event else np.full(F.shape[0],
                                                                                  np.nan)
    censor = np.where(np.isfinite(death), death, np.minimum(last_alive, horizon))
    out[f"time_to_{ep.function}_le_{thr:g}"] = np.where(reached, t_hit, censor)
    out[f"{ep.function}_le_{thr:g}_reached"] = reached.astype(float)
    if ep.event:
        died = np.isfinite(death) & (death <= horizon)
        out[f"time_to_{ep.event}"] = np.where(died, death, horizon)
        out[f"{ep.event}_observed"] = died.astype(float)
    for mk in ep.markers:
        M = np.array(sim[mk], dtype=float)
        M[~valid] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            for t in ep.times:
                j = int(np.argmin(np.abs(tau - t)))
                out[f"{mk}_change_pct_{t:g}m"] = 100.0 * (M[:, j] / baseline[mk] - 1.0)
    if ep.share:
        S = np.array(sim[ep.share], dtype=float)
        S[~valid] = np.nan
        with _quiet():
            out[f"{ep.share}_mean_{a:g}-{b:g}m"] = np.nanmean(
                np.where(win[None], S, np.nan), axis=1) if S[:, win].size else np.nan
    for key in out:
        out[key] = np.where(valid, out[key], np.nan)
    return out


# --------------------------------------------------------------------------------- compare


@dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes
    ----------
    model : str
    scenarios : dict of str to list of Intervention
    reference : str
        The no-treatment scenario differences are taken against.
    subject_ids : list of str
    times : ndarray
        Output times, months after the start.
    endpoints : Endpoints
    subject_endpoints : dict
        scenario -> column -> ``(m,)`` per-subject values (point estimates).
    draw_endpoints : dict
        scenario -> column -> ``(n_draws, m)`` (empty without parameter uncertainty).
    trajectories : dict
        scenario -> observable -> ``(m, T)`` point-estimate trajectories (NaN after death).
    draw_means : dict
        scenario -> observable -> ``(n_draws, T)`` population mean per draw.
    baseline : dict
        observable -> ``(m,)`` untreated value at the start.
    valid : ndarray of bool
        Subjects alive at their start (others are excluded).
    draw_handling : list of str
        Per subject: how its parameter draws were made when its covariance was singular or
        regularised ("" otherwise, or without draws).
    draw_notes : list of str
        How the parameter draws were made (singular covariances, redrawn draws).
    summary : list of dict
        One row per scenario and endpoint (see :meth:`summary_rows`).
    units : dict
    notes : list of str
    plot_series : dict
        What the trajectory figure draws: scenario -> ``{"times": (T_s,), observable:
        (3, T_s) band low, median, band high among included subjects, and with parameter
        draws observable + "@draws": (2, T_s) 95% interval of the population mean}``, on
        ``times`` plus every switch time of the scenario and a time just before each (so
        pulsed treatments show their on/off corners). Empty: the figure uses ``times``.
    """

    model: str
    scenarios: dict
    reference: str
    subject_ids: list
    times: np.ndarray
    endpoints: Endpoints
    subject_endpoints: dict
    draw_endpoints: dict
    trajectories: dict
    draw_means: dict
    baseline: dict
    valid: np.ndarray
    start: float = 0.0
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    draw_handling: list = field(default_factory=list)
    draw_notes: list = field(default_factory=list)
    plot_series: dict = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        for cols in self.draw_endpoints.values():
            for v in cols.values():
                return v.shape[0]
        return 0

    def endpoint(self, scenario: str, name: str) -> np.ndarray:
        """Per-subject values of one endpoint in one scenario, ``(m,)``."""
        try:
            return self.subject_endpoints[scenario][name]
        except KeyError:
            raise KeyError(f"no endpoint {name!r} in scenario {scenario!r}; endpoints: "
                           f"{', '.join(self.endpoints.columns())}") from None

    def row(self, scenario: str, name: str) -> dict:
        """The summary row of one scenario and endpoint."""
        for r in self.summary:
            if r["scenario"] == scenario and r["endpoint"] == name:
                return r
        raise KeyError(f"no summary row for {scenario!r}, {name!r}")

    # ----------------------------------------------------------------- tables and files

    def subject_rows(self) -> list[dict]:
        rows = []
        cols = self.endpoints.columns()
        for scen, values in self.subject_endpoints.items():
            for i, sid in enumerate(self.subject_ids):
                row = {"scenario": scen, "subject": sid, "included": int(self.valid[i])}
                for name in (self.endpoints.function, *self.endpoints.markers):
                    row[f"baseline_{name}"] = self.baseline[name][i]
                row.update({c: values[c][i] for c in cols})
                if self.n_draws:
                    row["parameter_draws"] = (self.draw_handling[i] if self.draw_handling
                                              else "") or "covariance as estimated"
                rows.append(row)
        return rows

    def trajectory_rows(self) -> list[dict]:
        rows = []
        for scen, obs in self.trajectories.items():
            for name, Y in obs.items():
                with np.errstate(all="ignore"), _quiet():
                    q = np.nanpercentile(Y[self.valid], [5, 25, 50, 75, 95], axis=0)
                    alive = np.isfinite(Y[self.valid]).sum(0)
                dm = self.draw_means.get(scen, {}).get(name)
                for j, t in enumerate(self.times):
                    row = {"scenario": scen, "observable": name, "time": t,
                           "n_alive": int(alive[j]), "p05": q[0, j], "p25": q[1, j],
                           "median": q[2, j], "p75": q[3, j], "p95": q[4, j]}
                    if dm is not None:
                        with _quiet():
                            lo, mid, hi = np.nanpercentile(dm[:, j], [2.5, 50, 97.5])
                        row.update(mean_draw_median=mid, mean_ci_low=lo, mean_ci_high=hi)
                    rows.append(row)
        return rows

    def survival_rows(self) -> list[dict]:
        rows = []
        for time_col, obs_col in self.endpoints.time_to_event_pairs():
            for scen, values in self.subject_endpoints.items():
                t, s = kaplan_meier(values[time_col][self.valid],
                                    values[obs_col][self.valid] > 0)
                rows += [{"endpoint": time_col, "scenario": scen, "time": a, "survival": b}
                         for a, b in zip(t, s, strict=True)]
        return rows

    def to_markdown(self) -> str:
        """Summary tables in Markdown (key endpoints, then time-to-event endpoints)."""
        ep = self.endpoints
        lines = [f"# Scenario comparison: {self.model}", ""]
        n_ok = int(self.valid.sum())
        lines.append(f"{n_ok} subjects (of {len(self.valid)}) alive at the start "
                     f"(data time {self.start:g} months); times are months after the start. "
                     f"Reference scenario: **{self.reference}**. Values: mean (5th-95th "
                     f"percentile between subjects)"
                     + (f"; [95% interval of the population mean over {self.n_draws} "
                        f"parameter draws]" if self.n_draws else "") + ".")
        lines.append("")
        key = [c for c in ep.columns() if not c.startswith("time_to_")
               and not c.endswith(("_reached", "_observed"))]
        for name in key:
            lines.append(f"### {name}")
            lines.append("")
            lines.append("| scenario | mean (5-95%) | median | difference vs reference |")
            lines.append("|---|---:|---:|---:|")
            for scen in self.subject_endpoints:
                r = self.row(scen, name)
                cell = f"{_fmt(r['mean'])} ({_fmt(r['p05'])} to {_fmt(r['p95'])})"
                if "mean_ci_low" in r:
                    cell += f" [{_fmt(r['mean_ci_low'])}, {_fmt(r['mean_ci_high'])}]"
                    cell += _DAGGER if r.get("mean_ci_excludes_point") else ""
                diff = _fmt(r["diff_mean"])
                if "diff_ci_low" in r:
                    diff += f" [{_fmt(r['diff_ci_low'])}, {_fmt(r['diff_ci_high'])}]"
                    diff += _DAGGER if r.get("diff_ci_excludes_point") else ""
                if "relative_slowing_pct" in r:
                    diff += f"; slowing {_fmt(r['relative_slowing_pct'])}%"
                lines.append(f"| {scen} | {cell} | {_fmt(r['median'])} | {diff} |")
            lines.append("")
        for time_col, _ in ep.time_to_event_pairs():
            lines.append(f"### {time_col} (Kaplan-Meier, censored at {self.times[-1]:g} "
                         f"months)")
            lines.append("")
            lines.append("| scenario | events | KM median | RMST | HR vs reference "
                         "(exponential) |")
            lines.append("|---|---:|---:|---:|---:|")
            for scen in self.subject_endpoints:
                r = self.row(scen, time_col)
                rm = _fmt(r["rmst"])
                if "rmst_ci_low" in r:
                    rm += f" [{_fmt(r['rmst_ci_low'])}, {_fmt(r['rmst_ci_high'])}]"
                    rm += _DAGGER if r.get("rmst_ci_excludes_point") else ""
                lines.append(f"| {scen} | {r['events']}/{r['n']} | {_fmt(r['km_median'])} | "
                             f"{rm} | {_fmt(r['hr_vs_reference'])} |")
            lines.append("")
        if self.n_draws:
            lines += self._draws_markdown()
        lines.append("## Scenarios")
        lines.append("")
        for scen, ivs in self.scenarios.items():
            lines.append(f"* **{scen}**: " + ("; ".join(iv.describe() for iv in ivs)
                                              if ivs else "no intervention"))
        if self.notes:
            lines += ["", "## Notes", ""] + [f"* {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _draws_markdown(self) -> list[str]:
        """The "Parameter draws" section: how draws were made, which subjects' covariances
        were singular, and why an interval may not contain its point value."""
        lines = ["## Parameter draws", "",
                 f"Intervals in brackets are the 2.5th-97.5th percentiles, over {self.n_draws} "
                 "draws of every subject's parameters (and time offset) from the fit's "
                 "uncertainty, of the population mean; the value before them is the mean over "
                 "subjects at their point estimates. Draws are made on the estimation scale "
                 "(log, logit) from the covariance of the estimates and stay inside the "
                 "bounds without clipping.", ""]
        lines += [f"* {n}" for n in self.draw_notes]
        flagged = [i for i, h in enumerate(self.draw_handling) if h]
        if flagged:
            lines += ["", f"Subjects whose covariance was singular or regularised "
                          f"({len(flagged)} of {len(self.subject_ids)}; column "
                          "`parameter_draws` of `endpoints_subjects.csv`):", "",
                      "| subject | how its draws were made |", "|---|---|"]
            lines += [f"| {self.subject_ids[i]} | {self.draw_handling[i]} |"
                      for i in flagged[:20]]
            if len(flagged) > 20:
                lines.append(f"| ... | {len(flagged) - 20} more in endpoints_subjects.csv |")
        n_out = sum(1 for r in self.summary for k in r if k.endswith("_excludes_point")
                    and r[k])
        if n_out:
            lines += ["", f"{_DAGGER.strip()} {n_out} interval(s) do not contain their point "
                          "value. The point value is the endpoint at each subject's estimate; "
                          "the interval is over the mean of the endpoint across draws. Where "
                          "an endpoint is nonlinear in the parameters and the estimates are "
                          "uncertain (wide, or near a bound, where draws are truncated to the "
                          "inside), the mean of the endpoint over draws differs from "
                          "the endpoint at the estimate (the mean of f(theta) is not f(mean "
                          "theta)), and averaging over many subjects narrows the interval "
                          "around that shifted value. Read such an interval as the spread of "
                          "the population mean under parameter uncertainty, not as an "
                          "interval around the point value."]
        return lines + [""]

    def write(self, folder, *, figures: bool = True, overwrite: bool = False,
              inputs=()) -> Path:
        """Write CSV and Markdown tables and PNG figures to ``folder`` (atomically).

        Files: ``endpoints_subjects.csv``, ``endpoints_summary.csv``, ``trajectories.csv``,
        ``survival.csv``, ``summary.md``, and ``trajectories.png``, ``endpoints.png``,
        ``survival.png``.

        An existing folder is replaced only with ``overwrite=True`` and only if progression
        wrote it (``.progression`` marker); a folder that is or contains one of ``inputs``
        (the config, a fit folder read) is refused with an
        :class:`~progression.errors.OutputError`.
        """
        from ._io import atomic_directory

        folder = Path(folder)
        with atomic_directory(folder, overwrite=overwrite, inputs=inputs,
                              what="comparison folder") as tmp:
            _write_csv(tmp / "endpoints_subjects.csv", self.subject_rows())
            _write_csv(tmp / "endpoints_summary.csv", self.summary)
            _write_csv(tmp / "trajectories.csv", self.trajectory_rows())
            _write_csv(tmp / "survival.csv", self.survival_rows())
            (tmp / "summary.md").write_text(self.to_markdown())
            if figures:
                plt = _pyplot()
                for name, fig in (("trajectories.png", self.plot_trajectories()),
                                  ("endpoints.png", self.plot_endpoints()),
                                  ("survival.png", self.plot_survival())):
                    fig.savefig(tmp / name, dpi=110)
                    plt.close(fig)
        return folder

    # ----------------------------------------------------------------------- figures

    def plot_trajectories(self, names=None, *, band=PLOT_BAND):
        """Median trajectory per scenario with a between-subject band and, with parameter
        draws, the 95% interval of the population mean (dashed).

        One row of panels per observable. With more than ``ARMS_PER_PANEL`` scenarios besides
        the reference they are split over columns, each column with the reference (black)
        and its own legend under it; panels of a row share their y range. Curves include
        each scenario's switch times (see ``plot_series``).
        """
        from .plots import axis_label

        plt = _pyplot()
        first = next(iter(self.trajectories.values()))
        names = list(names or first)
        groups = _arm_groups(list(self.trajectories), self.reference)
        if len(groups) == 1:
            ncols = min(3, len(names))
            nrows = math.ceil(len(names) / ncols)
            fig = plt.figure(figsize=(4.6 * ncols, 3.3 * nrows + 0.25 * len(groups[0]) + 0.8),
                             layout="constrained")
            panels = [(fig, fig.subplots(nrows, ncols, squeeze=False).ravel(), groups[0])]
        else:
            fig = plt.figure(figsize=(4.3 * len(groups), 2.5 * len(names) + 1.6),
                             layout="constrained")
            subs = fig.subfigures(1, len(groups), wspace=0.02)
            panels = [(sf, sf.subplots(len(names), 1, sharex=True, squeeze=False).ravel(), g)
                      for sf, g in zip(subs, groups, strict=True)]
        for col, (where, axes, group) in enumerate(panels):
            colors = {self.reference: "black", **_arm_colors(group)}
            handles = {}
            for ax, name in zip(axes, names, strict=False):
                for scen in [self.reference, *group]:
                    t, lo, med, hi, dm = self._series(scen, name, band)
                    c = colors[scen]
                    (line,) = ax.plot(t, med, color=c, lw=1.9 if scen == self.reference
                                      else 1.4)
                    if scen == self.reference or len(group) <= 2:
                        # more bands than that overlap into a smear; the CSV has them all
                        ax.fill_between(t, lo, hi, color=c, alpha=0.12, lw=0)
                    if dm is not None:
                        ax.plot(t, dm[0], color=c, lw=0.8, ls="--")
                        ax.plot(t, dm[1], color=c, lw=0.8, ls="--")
                    handles.setdefault(scen, line)
                ax.set_title(name, fontsize=10)
                if len(groups) == 1 or name == names[-1]:
                    ax.set_xlabel("months after treatment start", fontsize=9)
                if len(groups) == 1 or col == 0:
                    ax.set_ylabel(axis_label(name, self.units.get(name, "")), fontsize=9)
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=8)
            for ax in list(axes)[len(names):]:
                ax.set_visible(False)
            _column_legend(where, handles, 1 + max(map(len, groups)),
                           1 if len(groups) > 1 else 2)
        if len(groups) > 1:
            _same_ylim([[p[1][r] for p in panels] for r in range(len(names))])
        extra = "; dashed: 95% interval of the mean over parameter draws" if self.n_draws else ""
        whose = (f" of {self.reference!r} (all arms: trajectories.csv)"
                 if max(map(len, groups)) > 2 else "")
        fig.suptitle(f"{self.model}: median among survivors; shaded: {band[0]}-{band[1]}% "
                     f"between-subject band{whose}{extra}", fontsize=10)
        return fig

    def _series(self, scen, name, band):
        """Times, band low, median, band high and draw interval (or None) for one curve."""
        series = self.plot_series.get(scen, {}) if tuple(band) == tuple(PLOT_BAND) else {}
        if name in series:
            lo, med, hi = series[name]
            return series["times"], lo, med, hi, series.get(f"{name}@draws")
        Y = self.trajectories[scen][name][self.valid]
        with _quiet():
            lo, med, hi = np.nanpercentile(Y, [band[0], 50, band[1]], axis=0)
        dm = self.draw_means.get(scen, {}).get(name)
        if dm is not None:
            with _quiet():
                dm = np.nanpercentile(dm, [2.5, 97.5], axis=0)
        return self.times, lo, med, hi, dm

    def plot_endpoints(self, names=None):
        """Box plots of per-subject endpoints per scenario.

        Horizontal boxes, one row per scenario with its full name on the left (wrapped, never
        cut), panels sharing the scenario axis; the dotted line is the reference median.
        """
        plt = _pyplot()
        ep = self.endpoints
        if names is None:
            names = [f"{ep.function}_change_{t:g}m" for t in ep.times[-1:]]
            a, b = ep.slope_window
            names.append(f"{ep.function}_slope_{a:g}-{b:g}m")
            names += [f"{mk}_change_pct_{t:g}m" for mk in ep.markers for t in ep.times[-1:]]
            if ep.share:
                names.append(f"{ep.share}_mean_{a:g}-{b:g}m")
        scen = list(self.subject_endpoints)
        ncols = min(3, len(names))
        nrows = math.ceil(len(names) / ncols)
        height = 0.32 * len(scen) + 1.1
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 2.6, height * nrows + 0.4),
                                 squeeze=False, sharey=True, layout="constrained")
        colors = dict(zip(scen, _colors(len(scen)), strict=True))
        colors[self.reference] = (0.35, 0.35, 0.35, 1.0)
        pos = np.arange(len(scen), 0, -1)             # first scenario at the top
        for ax, name in zip(axes.flat, names, strict=False):
            data = []
            for s in scen:
                v = self.subject_endpoints[s][name][self.valid]
                data.append(v[np.isfinite(v)])
            parts = ax.boxplot(data, positions=pos, patch_artist=True, showfliers=False,
                               widths=0.6, **_horizontal())
            for patch, s in zip(parts["boxes"], scen, strict=True):
                patch.set_facecolor(colors[s])
                patch.set_alpha(0.5)
            for med in parts["medians"]:
                med.set_color("black")
            ref = data[scen.index(self.reference)]
            if ref.size:
                ax.axvline(np.median(ref), color="black", ls=":", lw=1.0)
            ax.set_yticks(pos, [_wrap(s, 36) for s in scen], fontsize=8)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel(_endpoint_unit(name, ep), fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(alpha=0.3, axis="x")
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{self.model}: per-subject endpoints (boxes: quartiles, whiskers: "
                     f"1.5 IQR, dotted: median of {self.reference!r})", fontsize=10)
        return fig

    def plot_survival(self):
        """Kaplan-Meier curves per scenario for each time-to-event endpoint.

        Rows: endpoints; columns: groups of at most ``ARMS_PER_PANEL`` scenarios with the
        reference (black); legends under the panels.
        """
        plt = _pyplot()
        pairs = self.endpoints.time_to_event_pairs()
        groups = _arm_groups(list(self.subject_endpoints), self.reference)
        fig = plt.figure(figsize=(4.4 * len(groups) if len(groups) > 1 else 5.2 * len(pairs),
                                  (3.0 * len(pairs) if len(groups) > 1 else 3.6)
                                  + 0.2 * (len(groups[0]) + 1) + 0.6),
                         layout="constrained")
        subs = fig.subfigures(1, len(groups), wspace=0.02) if len(groups) > 1 else [fig]
        for col, (where, group) in enumerate(zip(subs, groups, strict=True)):
            axes = (where.subplots(len(pairs), 1, sharex=True, squeeze=False).ravel()
                    if len(groups) > 1 else where.subplots(1, len(pairs), squeeze=False).ravel())
            colors = {self.reference: "black", **_arm_colors(group)}
            handles = {}
            for ax, (time_col, obs_col) in zip(axes, pairs, strict=True):
                for scen in [self.reference, *group]:
                    values = self.subject_endpoints[scen]
                    t, s = kaplan_meier(values[time_col][self.valid],
                                        values[obs_col][self.valid] > 0)
                    (line,) = ax.step(np.r_[t, self.times[-1]], np.r_[s, s[-1]], where="post",
                                      color=colors[scen],
                                      lw=1.8 if scen == self.reference else 1.3)
                    handles.setdefault(scen, line)
                ax.set_ylim(-0.02, 1.02)
                if len(groups) == 1 or time_col == pairs[-1][0]:
                    ax.set_xlabel("months after treatment start", fontsize=9)
                if len(groups) == 1 or col == 0:
                    ax.set_ylabel("fraction event-free", fontsize=9)
                ax.set_title(time_col.replace("time_to_", "time to ").replace("_le_", " ≤ "),
                             fontsize=9)
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=8)
            _column_legend(where, handles, 1 + max(map(len, groups)),
                           1 if len(groups) > 1 else 2)
        fig.suptitle(f"{self.model}: Kaplan-Meier estimates (censored at the horizon)",
                     fontsize=10)
        return fig


def _summaries(comp: Comparison) -> list[dict]:
    ep = comp.endpoints
    ref = comp.reference
    valid = comp.valid
    rows = []
    tte = dict(ep.time_to_event_pairs())
    slope_col = f"{ep.function}_slope_{ep.slope_window[0]:g}-{ep.slope_window[1]:g}m"
    horizon = float(comp.times[-1])
    for scen, values in comp.subject_endpoints.items():
        draws = comp.draw_endpoints.get(scen, {})
        ref_draws = comp.draw_endpoints.get(ref, {})
        for name in ep.columns():
            if name.endswith(("_reached", "_observed")):
                continue
            v = values[name][valid]
            r = {"scenario": scen, "endpoint": name}
            if name in tte:
                obs = values[tte[name]][valid] > 0
                ok = np.isfinite(v)
                r.update(n=int(ok.sum()), events=int(obs[ok].sum()),
                         km_median=km_median(v[ok], obs[ok]), rmst=rmst(v[ok], obs[ok], horizon))
                rv = comp.subject_endpoints[ref][name][valid]
                ro = comp.subject_endpoints[ref][tte[name]][valid] > 0
                both = np.r_[v[ok], rv[np.isfinite(rv)]]
                both_obs = np.r_[obs[ok], ro[np.isfinite(rv)]]
                grp = np.r_[np.ones(ok.sum(), bool), np.zeros(np.isfinite(rv).sum(), bool)]
                r["hr_vs_reference"] = (exponential_hazard_ratio(both, both_obs, grp)
                                        if scen != ref else 1.0)
                if draws:
                    dv, do = draws[name], draws[tte[name]]
                    per = [rmst(dv[d][np.isfinite(dv[d])], do[d][np.isfinite(dv[d])] > 0,
                                horizon) for d in range(dv.shape[0])]
                    r["rmst_ci_low"], r["rmst_ci_high"] = _ci(per)
                    r["rmst_ci_excludes_point"] = _excludes(r["rmst"], r["rmst_ci_low"],
                                                            r["rmst_ci_high"])
            else:
                with _quiet():
                    r.update(n=int(np.isfinite(v).sum()), mean=np.nanmean(v), sd=np.nanstd(v),
                             median=np.nanmedian(v), p05=np.nanpercentile(v, 5),
                             p95=np.nanpercentile(v, 95))
                rv = comp.subject_endpoints[ref][name][valid]
                with _quiet():
                    r["diff_mean"] = np.nanmean(v - rv)
                if name == slope_col and scen != ref:
                    with _quiet():
                        r["relative_slowing_pct"] = 100.0 * (1.0 - np.nanmean(v) / np.nanmean(rv))
                if draws:
                    with _quiet():
                        means = np.nanmean(draws[name], axis=1)
                        diffs = np.nanmean(draws[name] - ref_draws[name], axis=1)
                    r["mean_ci_low"], r["mean_ci_high"] = _ci(means)
                    r["diff_ci_low"], r["diff_ci_high"] = _ci(diffs)
                    r["mean_ci_excludes_point"] = _excludes(r["mean"], r["mean_ci_low"],
                                                            r["mean_ci_high"])
                    r["diff_ci_excludes_point"] = _excludes(r["diff_mean"], r["diff_ci_low"],
                                                            r["diff_ci_high"])
            rows.append(r)
    return rows


def compare(source, scenarios: Mapping, *, start: float = 0.0, horizon: float = 18.0,
            step: float = 0.25, endpoints: Endpoints | None = None, draws: int = 0,
            seed=0, reference: str | None = None, observables: Sequence[str] | None = None,
            method: str = "LSODA", rtol: float = 1e-6, atol: float = 1e-9,
            max_step: float = np.inf, progress: bool = False) -> Comparison:
    """Compare intervention scenarios on the same subjects.

    Parameters
    ----------
    source : fit-like or VirtualPopulation
        Needs ``model``, ``subject_parameters`` ``(m, P)``, ``time_offsets`` ``(m,)``
        (model time at each subject's data time 0), optionally ``subject_ids`` and
        ``sample_parameters(n, rng) -> (n, m, P)`` (parameter uncertainty).
    scenarios : mapping of str to list of Intervention
        Scenario name -> interventions (a combination). A ``"no treatment"`` scenario (empty
        list) is added first when no scenario is empty.
    start : float
        Treatment start, months after each subject's data time 0.
    horizon : float
        Months of follow-up after the start.
    step : float
        Output spacing (months).
    endpoints : Endpoints, optional
    draws : int
        Parameter draws from ``source.sample_parameters`` (0: none).
    seed : int or Generator
    reference : str, optional
        Scenario differences are taken against (default: the first empty scenario).
    observables : sequence of str, optional
        Trajectories kept (default: the endpoint observables plus ``Treg_pct`` when present).
    method, rtol, atol, max_step
        Passed to :func:`simulate`.
    progress : bool
        A progress bar (scenarios done) on stderr: rewritten in place on a terminal, whole
        lines in a log.

    Returns
    -------
    Comparison
    """
    model = load_model(source.model)
    table = model.parameter_table(np.asarray(source.subject_parameters, dtype=float))
    m = table.shape[0]
    offsets = np.broadcast_to(np.asarray(source.time_offsets, dtype=float), (m,)).copy()
    ids = [str(s) for s in (getattr(source, "subject_ids", None) or range(1, m + 1))]
    if not (np.isfinite(horizon) and horizon > 0 and step > 0):
        raise ConfigError(f"horizon/step: expected positive numbers, found {horizon}, {step}")
    scen = _normalise_scenarios(scenarios, model)
    if reference is None:
        reference = next(name for name, ivs in scen.items() if not ivs)
    elif reference not in scen:
        raise ConfigError(f"reference: no scenario {reference!r} (scenarios: "
                          f"{', '.join(scen)})")
    ep = (endpoints or Endpoints()).resolved(model, horizon)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    notes = []

    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 0:
        raise ConfigError(f"draws: expected an integer >= 0, found {draws!r}")
    sampler = getattr(source, "sample_parameters", None)
    drawer = getattr(source, "parameter_draws", None)
    draw_table, draw_offsets = None, None
    draw_handling, draw_notes = [], []
    if draws:
        if drawer is not None:
            d = drawer(draws, rng)
            sample, draw_offsets = np.asarray(d.parameters, float), np.asarray(d.offsets, float)
            draw_handling, draw_notes = list(d.handling), list(d.notes)
        elif sampler is not None:
            sample = np.asarray(sampler(draws, rng), dtype=float)
        else:
            notes.append("the source has no parameter uncertainty (no sample_parameters): "
                         "bands show between-subject variability only")
            draws = 0
        if draws:
            if sample.shape != (draws, m, model.n_parameters):
                raise ProgressionError(f"source.sample_parameters({draws}): expected shape "
                                       f"{(draws, m, model.n_parameters)}, found {sample.shape}")
            draw_table = sample.reshape(draws * m, -1)
    full = table if draw_table is None else np.vstack([table, draw_table])
    starts = np.tile(offsets + start, 1 + draws)
    if draw_offsets is not None:
        starts[m:] = draw_offsets.reshape(-1) + start
    if np.any(starts[:m] < 0):
        raise ConfigError(f"start: model time offsets + start must be >= 0 (biological onset); "
                          f"found {starts[:m].min():g}")
    early = np.nonzero(starts < 0)[0]
    if early.size:
        # a drawn offset that puts the start before the model's t = 0: that draw is left out
        full[early] = np.nan
        starts[early] = 0.0
        draw_notes.append(f"{early.size} subject draw(s) whose drawn time offset put the start "
                          "before the model's t = 0 are left out")

    options = dict(method=method, rtol=rtol, atol=atol, max_step=max_step)
    y0, obs0, _ = states_at(model, full, starts, **options)
    alive = np.all(np.isfinite(y0), axis=1)
    baseline_all = {name: obs0[:, model.observable_names.index(name)]
                    if name in model.observable_names else y0[:, model.state_names.index(name)]
                    for name in (ep.function, *ep.markers)}
    valid = alive[:m]
    if not valid.all():
        notes.append(f"{int((~valid).sum())} subject(s) had died before the start and are "
                     f"excluded: {', '.join(np.asarray(ids)[~valid][:10])}")
    tau = np.unique(np.r_[np.arange(0.0, horizon - 1e-9, step), horizon, ep.times,
                          ep.slope_window])
    keep = list(observables or dict.fromkeys(
        [ep.function, *ep.markers, *(["Treg_pct"] if "Treg_pct" in model.observable_names
                                     else []), *([ep.share] if ep.share else [])]))
    for name in keep:
        if name not in model.observable_names and name not in model.state_names:
            raise ConfigError(f"observables: model {model.name!r} has no observable {name!r}")
    autonomous = is_autonomous(model)
    subject_endpoints, draw_endpoints, trajectories, draw_means = {}, {}, {}, {}
    units, plot_series = {}, {}
    from .parallel import Progress

    bar = Progress(f"compare {model.name}", len(scen), unit="scenarios", enabled=progress)
    # the reference first: it fixes `valid`, which the figure summaries below need
    for done, name in enumerate(sorted(scen, key=lambda n: n != reference), start=1):
        ivs = scen[name]
        # figures: also at every switch and just before it (no sawtooth from the output step);
        # endpoints, tables and CSV files: on tau
        fine = _plot_times(tau, model, ivs, horizon, table)
        sim_fine = _simulate_scenario(model, full, starts, y0, ivs, fine,
                                      autonomous=autonomous, options=options)
        sim = _AtTimes(sim_fine, np.searchsorted(fine, tau))
        failed = np.asarray(sim.status) < 0
        if failed.any():
            notes.append(f"scenario {name!r}: {int(failed.sum())} simulation(s) failed and are "
                         f"excluded")
        ok = alive & ~failed
        if name == reference:
            valid = valid & ok[:m]
        values = _endpoint_values(ep, tau, sim, baseline_all, ok)
        subject_endpoints[name] = {k: v[:m] for k, v in values.items()}
        trajectories[name] = {}
        for obs in keep:
            Y = np.array(sim[obs], dtype=float)
            Y[~ok] = np.nan
            trajectories[name][obs] = Y[:m]
            if draws:
                with _quiet():
                    draw_means.setdefault(name, {})[obs] = np.nanmean(
                        Y[m:].reshape(draws, m, -1), axis=1)
        if draws:
            draw_endpoints[name] = {k: v[m:].reshape(draws, m) for k, v in values.items()}
        units = dict(getattr(sim, "units", {}) or {})
        plot_series[name] = _plot_series(sim_fine, fine, keep, ok, valid, m, draws)
        bar.update(done)
    bar.close()
    subject_endpoints, draw_endpoints, trajectories, draw_means, plot_series = (
        {k: d[k] for k in scen if k in d}
        for d in (subject_endpoints, draw_endpoints, trajectories, draw_means, plot_series))
    flagged = sum(1 for h in draw_handling if h)
    if flagged:
        notes.append(f"parameter draws: the covariance of {flagged}/{m} subjects was singular or "
                     "regularised (held at the estimate where the data do not determine it); "
                     "see 'Parameter draws' in summary.md")
    comp = Comparison(model=model.name, scenarios=scen, reference=reference, subject_ids=ids,
                      times=tau, endpoints=ep, subject_endpoints=subject_endpoints,
                      draw_endpoints=draw_endpoints, trajectories=trajectories,
                      draw_means=draw_means,
                      baseline={k: v[:m] for k, v in baseline_all.items()}, valid=valid,
                      start=start, units=units, notes=notes, draw_handling=draw_handling,
                      draw_notes=draw_notes, plot_series=plot_series)
    if not autonomous:
        notes.append("model uses t explicitly: subjects simulated in groups sharing a start "
                     "time on the model clock")
    notes.append("ALSFRS-R and biomarker endpoints are among subjects alive at that time; "
                 "time-to-event endpoints are censored at the horizon")
    comp.summary = _summaries(comp)
    return comp


def _normalise_scenarios(scenarios: Mapping, model) -> dict:
    if not isinstance(scenarios, Mapping) or not scenarios:
        raise ConfigError("scenarios: expected a non-empty mapping name -> list of "
                          "interventions")
    out = {}
    for name, ivs in scenarios.items():
        items = flatten(ivs)
        for iv in items:
            if not isinstance(iv, Intervention):
                raise ConfigError(f"scenario {name!r}: expected Intervention objects")
        to_switches(model, items, until=1.0)       # name checks, early
        out[str(name)] = items
    if not any(not v for v in out.values()):
        out = {REFERENCE: [], **out}
    return out


# ---------------------------------------------------------------------------------- helpers


class _quiet:
    """Silence numpy's warnings about all-NaN slices and empty means."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        self._err = np.seterr(all="ignore")
        return self

    def __exit__(self, *exc):
        np.seterr(**self._err)
        return self._ctx.__exit__(*exc)


#: Marks an interval over parameter draws that does not contain its point value (explained
#: in the "Parameter draws" section of summary.md).
_DAGGER = " †"


def _excludes(point, lo, hi) -> bool:
    """True when a finite interval [lo, hi] does not contain a finite point value."""
    vals = np.array([point, lo, hi], dtype=float)
    if not np.all(np.isfinite(vals)):
        return False
    tol = 1e-9 * max(1.0, float(np.abs(vals).max()))
    return bool(point < lo - tol or point > hi + tol)


def _ci(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, int | np.integer):
        return str(x)
    x = float(x)
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([_cell(r.get(c, "")) for c in cols])


def _cell(v):
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return v


def _pyplot():
    from .plots import _pyplot as get

    return get()


# ------------------------------------------------------------------------ figure helpers

def _plot_times(tau, model, interventions, horizon: float, table) -> np.ndarray:
    """``tau`` plus each switch time of the scenario in (0, horizon) and a time just before it.

    Outputs at a switch time show the state after the switch, the time just before shows it
    before, so pulses and infusions are drawn with their corners instead of as a sawtooth of
    the output step.
    """
    if not interventions:
        return tau
    switches = to_switches(model, interventions, until=horizon, base=table)
    t = np.unique([float(sw.time) for sw in switches])
    t = t[(t > 0) & (t < horizon)]
    if t.size == 0:
        return tau
    before = t - 1e-6 * max(horizon, 1.0)
    return np.unique(np.r_[tau, t, before[before > 0]])


class _AtTimes:
    """A simulation seen at a subset of its output times (``index`` into them)."""

    def __init__(self, sim, index):
        self._sim, self._index = sim, np.asarray(index)

    def __getitem__(self, name):
        return np.asarray(self._sim[name])[..., self._index]

    def __getattr__(self, name):
        return getattr(self._sim, name)


def _plot_series(sim, times, names, ok, valid, m: int, draws: int) -> dict:
    """Median and band among included subjects (and draw-mean intervals) for the figures."""
    series = {"times": np.asarray(times, dtype=float)}
    include = np.asarray(valid, bool) & np.asarray(ok[:m], bool)
    for name in names:
        Y = np.array(sim[name], dtype=float)
        Y[~ok] = np.nan
        with _quiet():
            series[name] = np.nanpercentile(Y[:m][include], [PLOT_BAND[0], 50, PLOT_BAND[1]],
                                            axis=0)
            if draws:
                means = np.nanmean(Y[m:].reshape(draws, m, -1), axis=1)
                series[f"{name}@draws"] = np.nanpercentile(means, [2.5, 97.5], axis=0)
    return series


def _arm_groups(names, reference, per_panel: int = ARMS_PER_PANEL) -> list[list[str]]:
    """Scenarios other than the reference, split into near-equal groups of <= per_panel."""
    arms = [n for n in names if n != reference]
    if not arms:
        return [[]]
    k = math.ceil(len(arms) / per_panel)
    cuts = np.linspace(0, len(arms), k + 1).round().astype(int)
    return [arms[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _horizontal() -> dict:
    """Keyword for horizontal box plots (``orientation`` since matplotlib 3.10)."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _column_legend(where, handles: dict, rows: int, ncols: int) -> None:
    """Legend under a column of panels, padded to ``rows`` entries so columns line up."""
    from matplotlib.lines import Line2D

    lines, labels = list(handles.values()), [_wrap(n, 44) for n in handles]
    while len(lines) < rows:
        lines.append(Line2D([], [], alpha=0.0))
        labels.append(" ")
    where.legend(lines, labels, loc="outside lower center", ncols=ncols, fontsize=8,
                 frameon=False)


def _arm_colors(group) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(group)}


def _wrap(name: str, width: int = 34) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(name, width)) or name


def _same_ylim(rows) -> None:
    """Give the axes of each row (a list of axes) the same y range."""
    for row in rows:
        lims = np.array([ax.get_ylim() for ax in row])
        for ax in row:
            ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _endpoint_unit(name: str, ep: Endpoints) -> str:
    if "_pct_" in name:
        return "% change from baseline"
    if "_slope_" in name:
        return "points/month"
    if name.startswith(f"{ep.function}_change"):
        return "points from baseline"
    if name.startswith("time_to_"):
        return "months"
    return "fraction"
