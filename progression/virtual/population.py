"""Virtual populations: between-subject variability around a model, and virtual subjects.

:class:`Variability` draws parameter tables around a model's defaults; a
:class:`VirtualPopulation` is a model, a parameter table and each subject's time offset (model
time at the subject's data time 0), with the same attributes as a fit so that
:func:`~progression.virtual.scenarios.compare` treats both alike. :func:`states_at` gives each
subject's untreated state at its own time (the starting point of every scenario and trial arm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._repr import brief, clip
from ..errors import ConfigError, ProgressionError
from ..model import load_model
from ..options import SolverOptions
from ..simulate import simulate
from .content import default_model, defaults_for

__all__ = ["Variability", "default_variability", "VirtualPopulation", "states_at",
           "is_autonomous", "population_defaults", "CONTENT"]


class _Content:
    """The default of an argument that the model's disease content supplies."""

    def __repr__(self) -> str:
        return "<from the model's content>"


#: Default of ``anchor`` and ``delay``: taken from the model's disease content.
CONTENT = _Content()


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


def default_variability(model) -> Variability:
    """The variability of the model's disease content (for an ALS model the §5 virtual
    cohort, see :mod:`progression.als.defaults`) restricted to the model's parameters, else
    log-SD 0.3 on every parameter with a positive default."""
    names = set(model.parameter_names)
    v = defaults_for(model).get("variability")
    if v is not None and v.names() & names:
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
    ``subject_parameters``, ``time_offsets``) so :func:`compare` treats both alike. A
    population sampled around a model (:meth:`sample`, :meth:`typical`) has no parameter
    uncertainty; one drawn from a population fit (:meth:`from_fit`) has: the fit's
    population parameters drawn from its covariance step, the same patients in every draw
    (:meth:`parameter_draws`).

    Attributes
    ----------
    model : CompiledModel
    subject_parameters : ndarray, shape (m, P)
    time_offsets : ndarray, shape (m,)
        Model time at each subject's data time 0 (e.g. enrolment).
    subject_ids : tuple of str
    description : str
    sampler : PopulationSampler or None
        The population fit the subjects were drawn from (:meth:`from_fit`).
    patients : NewPatients or None
        Their random numbers (random effects, covariate rows) under ``sampler``.
    clock : tuple or None
        ``(anchor, delays (m,), max_time, simulate options)`` when data time 0 is an anchor
        event plus a delay (:meth:`from_fit` with ``anchor``); None: the offsets are given.
    """

    model: object
    subject_parameters: np.ndarray
    time_offsets: np.ndarray
    subject_ids: tuple = ()
    description: str = ""
    sampler: object = field(default=None, repr=False)
    patients: object = field(default=None, repr=False)
    clock: tuple | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        model = getattr(self.model, "name", self.model)
        return brief(self, repr(model), f"{len(self.subject_ids)} subjects",
                     clip(self.description) if self.description else "",
                     "with parameter uncertainty" if self.sampler is not None else "")

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
                                 tuple(np.asarray(self.subject_ids)[index]), self.description,
                                 self.sampler,
                                 None if self.patients is None else self.patients.subset(index),
                                 None if self.clock is None else
                                 (self.clock[0], np.asarray(self.clock[1])[index],
                                  *self.clock[2:]))

    def parameter_draws(self, n: int, rng=None):
        """Parameter uncertainty of a population drawn from a fit (:meth:`from_fit`): ``n``
        draws of the fit's population parameters from its covariance step, each applied to
        the same subjects (their random effects and covariates: common random numbers).

        With an ``anchor`` clock (:meth:`from_fit`), each draw's time offsets are its
        patients' anchor event times plus their delays (NaN, and left out by
        :func:`compare`, where the anchor does not happen or the patient dies first).

        Returns
        -------
        ParameterDraws or None
            ``parameters`` (n, m, P) and ``offsets`` (n, m); None when the population has no
            parameter uncertainty (not drawn from a fit).
        """
        if self.sampler is None or self.patients is None:
            return None
        d = self.sampler.parameter_draws(self.patients, n, rng)
        if self.clock is not None:
            anchor, delays, max_time, options = self.clock
            m = self.n_subjects
            when = _anchor_times(self.model, d.parameters.reshape(n * m, -1), anchor,
                                 np.tile(delays, n), max_time=max_time, **options)
            d.offsets = when.reshape(n, m)
            lost = int(np.sum(~np.isfinite(when)))
            d.notes.append(f"time offsets of every draw: {anchor or 'model time'} + each "
                           "patient's delay under the drawn parameters"
                           + (f"; {lost} of {n * m} patient draws without that time (no "
                              f"{anchor} by {max_time:g}, or dead first) are left out"
                              if lost else ""))
        return d

    @classmethod
    def from_fit(cls, fit, n: int = 500, *, seed=0, covariates=None, anchor=CONTENT,
                 delay=0.0, max_time: float = 240.0, solver=None,
                 min_offset: float = 0.0) -> VirtualPopulation:
        """``n`` new virtual patients drawn from a population fit.

        Each patient takes one subject's covariates from the covariate table (the fitted
        subjects' by default, resampled jointly per subject so that their correlations
        survive) and random effects ``eta ~ N(0, Omega)``; its parameters are the typical
        values with the covariate effects plus ``eta`` on each parameter's estimation scale
        (:meth:`~progression.fit.parts.PopulationPart.individual_values`). Quantities outside
        the population model keep the fit's values (fixed values, or the resampled fitted
        subject's own estimate), except the survival score ``z_NAME`` of each of the model's
        ``[hazards.NAME]`` that the fit holds: drawn N(0, 1) per patient (its own Exp(1)
        threshold; held at the fit's value every patient would die at the median).

        Time offsets (model time at each patient's data time 0), by default the fit's clock:
        drawn from the population model when ``time_offset`` is one of its parameters, else
        the resampled fitted subject's; patients with an offset below ``min_offset`` are
        drawn again. A fit whose offset is anchored at an event (``[parameters.time_offset]
        anchor``) has each patient's own event time under its drawn parameters as the clock,
        plus ``factor * covariate`` of the fitted subject its covariates come from (the event
        searched up to the offset's upper bound; patients without it drawn again), and
        :meth:`parameter_draws` recomputes it under every draw. With ``anchor`` (an event, or
        None for model time), data time 0 is instead ``anchor + delay`` under each
        patient's own parameters, as in :meth:`sample`; patients whose anchor does not
        happen by ``max_time``, or who die before data time 0, are drawn again.

        Between-subject variability is the spread of these patients at the estimates;
        parameter uncertainty (:meth:`parameter_draws`, ``compare(..., draws=K)``) draws the
        population parameters from the covariance step and evaluates the same patients under
        each draw.

        Parameters
        ----------
        fit : FitResult
            A population fit (``focei``, ``foce``, ``fo``, ``laplace``, ``saem``).
        n : int
            Number of patients (> 0).
        seed : int or numpy Generator
        covariates : mapping of str to array (k,), optional
            A covariate table to resample from instead of the fitted subjects'.
        anchor : str or None, optional
            Not given: the fit's clock. An event name, or None (model time): data time 0 at
            ``anchor + delay``.
        delay : float or (float, float)
            Time after the anchor (a pair: uniform per patient); with ``anchor`` only.
        max_time : float
            With ``anchor``: patients whose anchor does not happen by then are drawn again.
        solver : SolverOptions or mapping, optional
            How the anchor simulations are integrated.
        min_offset : float
            Smallest allowed time offset of the fit's clock (model time units).

        Raises
        ------
        ConfigError
            ``n`` is not a positive integer, ``covariates`` is malformed, or ``anchor`` is
            not an event of the model.
        FitError
            ``fit`` has no population part, or a covariate of its population model has no
            values.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"n: expected a positive integer (patients to draw from the "
                              f"population fit), found {n!r}")
        if not hasattr(fit, "population_sampler"):
            raise ConfigError(f"fit: expected a FitResult with a population part, found "
                              f"{type(fit).__name__}")
        sampler = fit.population_sampler(covariates)
        model = load_model(fit.model)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        clock = None
        if anchor is not CONTENT:
            if anchor is not None and anchor not in {e.name for e in model.events}:
                raise ConfigError(f"anchor: model {model.name!r} has no event {anchor!r} "
                                  f"(events: {', '.join(e.name for e in model.events) or 'none'}"
                                  "; or None for model time)")
            options = SolverOptions.coerce(solver).simulate_kwargs()
            delays = _draw_delay(delay, int(n), rng)
            clock = (anchor, delays, float(max_time), options)

        # A fit whose offset is anchored at an event (``[parameters.time_offset] anchor``):
        # its clock is each patient's own event time, T(theta) + factor * covariate, with the
        # covariate of the fitted subject the patient's covariates come from; a new
        # patient's T follows its own drawn parameters, not the fitted subject's.
        fit_anchor = None
        if anchor is CONTENT:
            off = fit.parameters[fit.parameter_names.index("time_offset")]
            if getattr(off, "anchor", None) is not None:
                fit_anchor = off.anchor
                anchor = off.anchor
                max_time = float(off.upper)
                options = SolverOptions.coerce(solver).simulate_kwargs()
                clock = (anchor, None, max_time, options)

        def fit_delays(subjects):
            cov = (sampler.offset_covariate[subjects] if sampler.offset_covariate is not None
                   else np.zeros(len(subjects)))
            return sampler.offset_factor * np.asarray(cov, dtype=float)

        def anchored(table, delays):
            return _anchor_times(model, table, anchor, delays, max_time=max_time, **clock[3])

        patients = sampler.draw_patients(int(n), rng)
        table, offsets = sampler.values(patients)
        if fit_anchor is not None:
            clock = (anchor, fit_delays(patients.subjects), max_time, clock[3])
        if clock is not None:
            offsets = anchored(table, clock[1])
        redrawn = 0
        for _ in range(100):
            bad = ~(offsets >= min_offset) if clock is None else ~np.isfinite(offsets)
            if not bad.any():
                break
            redrawn += int(bad.sum())
            fresh = sampler.draw_patients(int(bad.sum()), rng)
            patients = patients.replaced(bad, fresh)
            new_table, new_offsets = sampler.values(fresh)
            table[bad] = new_table
            if fit_anchor is not None:
                clock[1][bad] = fit_delays(fresh.subjects)
            offsets[bad] = new_offsets if clock is None else anchored(new_table,
                                                                      clock[1][bad])
        else:
            raise ProgressionError(f"VirtualPopulation.from_fit: could not draw {n} patients "
                                   f"with a usable time offset from fit '{sampler.fit_name}' "
                                   f"({redrawn} draws rejected)")
        pop = sampler.population
        if clock is None:
            when = (f"; {redrawn} draws with a time offset below {min_offset:g} drawn again"
                    if redrawn else "")
        elif fit_anchor is not None:
            when = (f"; the fit's clock: each patient's own {fit_anchor} under its drawn "
                    f"parameters, at the data time its fitted subject's offset covariate "
                    f"gives"
                    + (f" ({redrawn} draws without it by {max_time:g} drawn again)"
                       if redrawn else ""))
        else:
            when = (f"; data time 0 = {anchor or 'model time'} + {delay}"
                    + (f" ({redrawn} draws without it drawn again)" if redrawn else ""))
        desc = (f"{n} new patients drawn from the population fit '{sampler.fit_name}' "
                f"({pop.method or 'population'}: random effects on "
                f"{', '.join(pop.omega_names) or 'nothing'}"
                + (f"; covariates {', '.join(pop.covariate_names)} from "
                   f"{sampler.covariates_from}" if pop.covariate_names else "")
                + when + ")")
        return cls(model, table, offsets, (), desc, sampler, patients, clock)

    @classmethod
    def typical(cls, model=None, *, anchor=CONTENT, delay=CONTENT,
                solver=None) -> VirtualPopulation:
        """One subject with the default parameters, data time 0 at ``anchor + delay``.

        Parameters
        ----------
        model : str or model, optional
            Default: the content's default model (``als_systemic``).
        anchor : str or None, optional
            Event defining the data clock; ``None``: model time 0. By default the anchor of
            the model's disease content (:func:`population_defaults`; ALS:
            ``"clinical_onset"``), model time 0 for a model without content.
        delay : float, optional
            Time after the anchor; by default the content's (ALS: 12 months), 0 without.
        solver : SolverOptions or mapping, optional
            How the anchor simulation is integrated.
        """
        model = load_model(model or default_model())
        anchor, delay = _resolve_anchor(model, anchor, delay)
        table = model.parameter_table(None)
        options = SolverOptions.coerce(solver).simulate_kwargs()
        offset = _anchor_times(model, table, anchor, np.array([delay]), **options)[0]
        if not np.isfinite(offset):
            raise ProgressionError(f"VirtualPopulation.typical: event {anchor!r} does not "
                                   f"happen for the default parameters of {model.name!r}")
        return cls(model, table, np.array([offset]), ("typical",),
                   f"typical patient of {model.name}, data time 0 = {anchor or 'model time'} "
                   f"+ {delay:g}")

    @classmethod
    def sample(cls, model=None, n: int = 100, *, seed=0,
               variability: Variability | None = None, anchor=CONTENT, delay=CONTENT,
               max_time: float = 240.0, solver=None) -> VirtualPopulation:
        """Sample ``n`` virtual subjects alive at their data time 0.

        Parameters
        ----------
        model : str or model, optional
            Default: the content's default model (``als_systemic``).
        n : int
        seed : int or numpy Generator
        variability : Variability, optional
            :func:`default_variability` by default (§5 cohort for an ALS model).
        anchor : str or None, optional
            Event defining the data clock: data time 0 is ``anchor + delay``; ``None`` puts it
            at model time ``delay``. By default the anchor of the model's disease content
            (:func:`population_defaults`; ALS: ``"clinical_onset"``); a model without disease
            content has no default event, so its default is model time 0 (give ``anchor=``
            to use one of its events).
        delay : float or (float, float), optional
            Time after the anchor (a pair: uniform between them per subject). By default the
            content's (ALS: 12 months), 0 for a model without content.
        max_time : float
            Subjects whose anchor does not happen by then, or who die before data time 0, are
            replaced by new draws.
        solver : SolverOptions or mapping, optional
            How the screening simulations are integrated.
        """
        model = load_model(model or default_model())
        anchor, delay = _resolve_anchor(model, anchor, delay)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        variability = variability or default_variability(model)
        options = SolverOptions.coerce(solver).simulate_kwargs()
        tables, offsets = [], []
        have = 0
        for _ in range(50):
            k = int(math.ceil((n - have) * 1.3)) + 4
            table = variability.sample(model, k, rng)
            d = _draw_delay(delay, k, rng)
            when = _anchor_times(model, table, anchor, d, max_time=max_time, **options)
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


def population_defaults(model) -> dict:
    """``{"anchor": event or None, "delay": float}``: where the data clock of a virtual
    population starts by default.

    From the ``"population"`` defaults of the model's disease content
    (:func:`progression.virtual.content.defaults_for`; ALS: 12 months after
    ``clinical_onset``). A model without disease content has no event that means "the data
    start here", so its default is model time 0 (anchor ``None``, delay 0).
    """
    found = defaults_for(model).get("population", {})
    return {"anchor": found.get("anchor"), "delay": float(found.get("delay", 0.0))}


def _resolve_anchor(model, anchor, delay):
    if anchor is CONTENT or delay is CONTENT:
        found = population_defaults(model)
        anchor = found["anchor"] if anchor is CONTENT else anchor
        delay = found["delay"] if delay is CONTENT else delay
    return anchor, delay


def _draw_delay(delay, k, rng) -> np.ndarray:
    if np.ndim(delay) == 0:
        return np.full(k, float(delay))
    lo, hi = (float(x) for x in delay)
    if hi < lo:
        raise ProgressionError(f"delay: expected (low, high), found {delay}")
    return rng.uniform(lo, hi, k)


def _terminal_names(model) -> list[str]:
    return [e.name for e in model.events if e.terminal]


def _anchor_times(model, table, anchor, delay, *, max_time=240.0, **options) -> np.ndarray:
    """Model time of ``anchor + delay`` per subject; NaN if the anchor does not happen by
    ``max_time`` or a terminal event comes first. ``options``: passed to :func:`simulate`."""
    sim = simulate(model, table, [0.0, max_time], **options)
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


