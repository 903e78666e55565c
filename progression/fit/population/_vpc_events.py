"""End events in the VPC's simulations: observations end where a patient's event comes.

A cohort followed until death has no observations after death, and a clinic cohort enrols
only patients alive at their first visit. A VPC that simulates new random effects on the
patients' designs and ignores both compares the observed survivors with simulated patients
of whom many would have died before the time of the observation (on the synthetic ALS cohort
a third of the simulated ALSFRS-R values lay below the lowest score a living patient had).
With ``[estimator] vpc_end_events = ["death"]`` each simulated patient

- gets its own draw of every hazard's score ``z_NAME ~ N(0, 1)`` (the Exp(1) threshold of
  ``[hazards.NAME]``, as synthetic cohorts and virtual trials draw it) and is simulated to its
  terminal events under its own parameters (and its own anchored clock);
- is drawn again (random effects and scores) while its first event comes before its first
  observation: patients are simulated conditional on being event-free at entry, as the
  cohort was enrolled;
- has no simulated value at and after its event (:class:`EndedDraws.ended`); the VPC's
  percentiles and fractions below a limit count the simulated values that exist.

Event times come from :func:`progression.simulate` on the fit's model (the compiled stiff
integrator, one batch per 2,000 rows), so threshold events and hazard events alike are
handled the way the model defines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError

__all__ = ["EndEvents", "EndedDraws", "check_end_events", "end_events_problem"]

#: Rows per simulate() call: bounds the memory of the (rows, times, outputs) arrays.
_CHUNK = 2000
#: Draws of a simulated patient until it is event-free at its first observation.
MAX_ENTRY_DRAWS = 50


def end_events_problem(model, events) -> str | None:
    """What is wrong with ``events`` as end events of ``model`` (None: each one is a terminal
    event of the model or the event of one of its hazards); the config reader and
    :func:`check_end_events` share this rule."""
    allowed = [e.name for e in model.events if e.terminal]
    allowed += [h.event for h in getattr(model.spec, "hazards", ()) if h.event not in allowed]
    known = {e.name for e in model.events}
    bad = [n for n in events if n not in allowed]
    if not bad:
        return None
    what = ("not a terminal event or a hazard's" if all(n in known for n in bad)
            else "not one of its events")
    have = ", ".join(allowed) or "it has none"
    return (f"expected terminal events of model '{model.name}' or its hazards' events "
            f"({have}); {', '.join(map(repr, bad))} is {what}")


def check_end_events(model, events, where: str = "estimator.vpc_end_events") -> tuple:
    """``events`` as a tuple of the model's terminal event names.

    Raises
    ------
    ConfigError
        A name that is not an event of the model, or an event that is not terminal (named,
        with the terminal events the model has).
    """
    names = tuple(events or ())
    problem = end_events_problem(model, names)
    if problem:
        raise ConfigError(f"key '{where}': {problem}")
    return names


@dataclass(frozen=True)
class EndedDraws:
    """What the terminal events did to K x N simulated patients.

    Attributes
    ----------
    ended : ndarray of bool (rows, n)
        Observations a simulated patient does not have: at or after its first end event (and
        padding beyond the subject's design).
    alive_at_entry : ndarray of bool (rows,)
        Event-free at the subject's first observation.
    """

    ended: np.ndarray
    alive_at_entry: np.ndarray


class EndEvents:
    """The end events of a population fit's simulations (see the module docstring).

    Parameters
    ----------
    problem : Problem
        The fit's problem (model, parameter rows, time offset and anchor).
    designs : sequence of SubjectDesign
        The subjects' designs (observation times, offset covariate).
    events : sequence of str
        Events of the model that end a patient's observations: terminal events, or the
        events of its hazards (:func:`end_events_problem`).
    alone : bool
        The events' own times, as if no other event ended the trajectory: any event of the
        model is taken, and the simulations run through terminal events (the Kaplan-Meier
        VPC of a joint fit times its hazard's event alone, :mod:`._vpc_survival`). Also
        when one of ``events`` is not terminal: a hazard's event that is not terminal (a
        joint fit's own death mechanism beside the model's) must not be hidden by a
        terminal event not listed.
    """

    def __init__(self, problem, designs, events, *, alone: bool = False):
        self.problem = problem
        self.designs = list(designs)
        self.alone = bool(alone)
        if alone:
            known = [e.name for e in problem.model.events]
            bad = [n for n in events if n not in known]
            if bad:
                raise ConfigError(f"expected events of model '{problem.model.name}' "
                                  f"({', '.join(known) or 'it has none'}); {bad[0]!r} is "
                                  f"not one of them")
            self.events = tuple(events)
        else:
            self.events = check_end_events(problem.model, events)
            terminal = {e.name for e in problem.model.events if e.terminal}
            self.alone = any(n not in terminal for n in self.events)
        model = problem.model
        # the Exp(1) threshold of every hazard is drawn per simulated patient
        self.scores = tuple(h.score for h in getattr(model.spec, "hazards", ())
                            if h.score in model.parameter_names)

    def draw(self, theta: np.ndarray, index: np.ndarray, rng: np.random.Generator
             ) -> EndedDraws:
        """End events of simulated patients with parameter rows ``theta`` (R, Q) of subjects
        ``index`` (R,); scores ``z`` drawn from ``rng``."""
        t_event, t_model, _ = self._event_times(theta, index, rng)
        with np.errstate(invalid="ignore"):
            ended = ~(t_model < t_event[:, None])
        entry = np.nanmin(np.where(np.isfinite(t_model), t_model, np.inf), axis=1)
        return EndedDraws(ended=ended, alive_at_entry=t_event > entry)

    def event_times(self, theta: np.ndarray, index: np.ndarray, rng: np.random.Generator,
                    horizon: float) -> np.ndarray:
        """Data time (R,) of the first end event of simulated patients with parameter rows
        ``theta`` (R, Q) of subjects ``index`` (R,) (scores ``z`` drawn from ``rng``), looked
        for up to data time ``horizon``; inf where none happens by then."""
        t_event, _, offset = self._event_times(theta, index, rng, horizon)
        return t_event - offset

    def _event_times(self, theta, index, rng, horizon=None):
        """The first end event's model time (R,) (inf: none), the model times of the
        subjects' observations (R, n) (NaN in padding) and each row's time offset (R,) (model
        time = data time + offset); simulated up to the last observation, or to data time
        ``horizon`` when later."""
        from ...simulate import simulate

        p = self.problem
        theta = np.array(theta, dtype=float, copy=True)
        index = np.asarray(index, dtype=int)
        R = theta.shape[0]
        for name in self.scores:
            theta[:, p.model.parameter_names.index(name)] = rng.standard_normal(R)
        full = p.with_anchor_values([self.designs[i] for i in index], theta)
        cov = np.array([self.designs[i].offset_covariate for i in index], dtype=float)
        offset = full[:, p.offset_index] + p.offset_factor * cov
        n = max(d.n for d in self.designs)
        t_model = np.full((R, n), np.nan)
        for r, i in enumerate(index):
            d = self.designs[i]
            t_model[r, :d.n] = np.asarray(d.time, dtype=float) + offset[r]
        t_event = np.full(R, np.inf)
        last = float(np.nanmax(t_model))
        if horizon is not None:
            last = max(last, float(np.max(horizon + offset)))
        horizon = last + 1.0
        names = p.model.parameter_names
        for lo in range(0, R, _CHUNK):
            rows = slice(lo, min(R, lo + _CHUNK))
            params = {q: full[rows, j] for j, q in enumerate(names)}
            # event times only: the default method (compiled per-subject integrator) at the
            # fit's tolerances, whatever method the fit's predictions use
            sim = simulate(p.model, params, np.array([0.0, max(horizon, 1.0)]),
                           rtol=float(p.solver.get("rtol", 1e-6)),
                           atol=float(p.solver.get("atol", 1e-9)),
                           terminal_events=not self.alone)
            for e in self.events:
                te = np.asarray(sim.event_time(e), dtype=float).ravel()
                t_event[rows] = np.fmin(t_event[rows], np.where(np.isfinite(te), te, np.inf))
        return t_event, t_model, offset
