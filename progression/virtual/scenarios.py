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
  :meth:`progression.fit.FitResult.parameter_draws`; a population fit's own subjects: each
  one's conditional covariance; new patients of a population fit, ``population=N`` or
  :meth:`VirtualPopulation.from_fit`: the population parameters from the covariance step,
  the same patients in every draw) or ``source.sample_parameters``; each
  draw gives a population mean (trajectory, endpoint, difference vs the reference), and the
  2.5th-97.5th percentiles over draws bound it. A :class:`VirtualPopulation` has none. The
  table says which subjects' covariances were singular and how that was handled, and flags
  (with the reason) an interval that does not contain its point value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, ProgressionError
from ..model import load_model
from ..options import SolverOptions
from ..parallel import Progress, check_executor
from ..plots.scenarios import PLOT_BAND
from ..simulate import simulate
from ._tables import _quiet
from .comparison import Comparison, _summaries
from .endpoints import Endpoints, _endpoint_values
from .interventions import Intervention, flatten, to_switches
from .population import (
    Variability,
    VirtualPopulation,
    default_variability,
    is_autonomous,
    states_at,
)

__all__ = [
    "Variability", "default_variability", "VirtualPopulation",
    "Endpoints", "Comparison", "compare", "states_at", "is_autonomous",
]

REFERENCE = "no treatment"


def _scenario_job(job):
    """One scenario, as a picklable job for ``executor.map``: the light result only (arrays,
    no model), so that results travel back from worker processes cheaply."""
    model, table, starts, y0, interventions, tau, autonomous, options = job
    sim = _simulate_scenario(model, table, starts, y0, interventions, tau,
                             autonomous=autonomous, options=options)
    if isinstance(sim, _Stitched):
        return sim
    return _Stitched(sim.state_names, sim.observable_names, sim.states, sim.observables,
                     {name: sim.event_time(name) for name in sim.events}, sim.status,
                     dict(getattr(sim, "units", {}) or {}))


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


def compare(source, scenarios: Mapping, *, start: float = 0.0, horizon: float = 18.0,
            step: float = 0.25, endpoints: Endpoints | None = None, draws: int = 0,
            seed=0, reference: str | None = None, observables: Sequence[str] | None = None,
            method: str = "LSODA", rtol: float = 1e-6, atol: float = 1e-9,
            max_step: float = np.inf, progress: bool = False, solver=None,
            executor=None, population: int | None = None) -> Comparison:
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
        Passed to :func:`simulate` when ``solver`` is not given (kept for old calls).
    progress : bool
        A progress bar (scenarios done) on stderr: rewritten in place on a terminal, whole
        lines in a log.
    solver : SolverOptions or mapping, optional
        How every integration of the comparison is done (the states at the start and every
        scenario); overrides ``method``, ``rtol``, ``atol`` and ``max_step``.
    executor : concurrent.futures.Executor, optional
        Scenarios are integrated through ``executor.map`` (threads, processes, a Dask
        ``client.get_executor()``, :func:`progression.parallel.executor`); each scenario is
        one batched solve from the same starting states, so the numbers do not depend on it.
    population : int, optional
        With a population fit as ``source``: compare on this many *new* patients drawn from
        the fitted population (:meth:`VirtualPopulation.from_fit`: Omega, the covariate
        distribution of the fitted subjects) instead of the fitted subjects; ``draws`` then
        draws the population parameters from the covariance step, the same patients in
        every draw. The patients come from ``seed`` (before the draws).

    Returns
    -------
    Comparison
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if population is not None:
        if isinstance(population, bool) or not isinstance(population, int | np.integer) \
                or population < 1:
            raise ConfigError(f"population: expected a positive integer (new patients to "
                              f"draw from the population fit), found {population!r}")
        # new patients from the fitted population (errors name the argument)
        source = VirtualPopulation.from_fit(source, population, seed=rng)
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
    notes = _input_notes(source)
    if getattr(source, "sampler", None) is not None:
        notes[:0] = [source.description, *source.sampler.data_notes]

    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 0:
        raise ConfigError(f"draws: expected an integer >= 0, found {draws!r}")
    sampler = getattr(source, "sample_parameters", None)
    drawer = getattr(source, "parameter_draws", None)
    draw_table, draw_offsets = None, None
    draw_handling, draw_notes = [], []
    if draws:
        d = drawer(draws, rng) if drawer is not None else None
        if d is not None:
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
    early = np.nonzero(~(starts >= 0))[0]
    if early.size:
        # a drawn offset that puts the start before the model's t = 0 (or that is undefined:
        # an anchor event that does not happen under the drawn parameters): left out
        full[early] = np.nan
        starts[early] = 0.0
        draw_notes.append(f"{early.size} subject draw(s) whose drawn time offset put the start "
                          "before the model's t = 0 (or is undefined) are left out")

    solver = SolverOptions.coerce(solver, method=method, rtol=rtol, atol=atol,
                                  max_step=max_step)
    check_executor(executor)
    options = solver.simulate_kwargs()
    if getattr(source, "survival", None) is not None and getattr(source, "designs", None):
        # a joint fit's own subjects: each one's survival score from the survival its data
        # record, not the held median (progression.fit._survival_scores)
        from ..fit._survival_scores import conditioned_scores

        full, note = conditioned_scores(source, full, starts - start,
                                        np.tile(np.arange(m), 1 + draws), rng, **options)
        notes.append(note)
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
    bar = Progress(f"compare {model.name}", len(scen), unit="scenarios", enabled=progress)
    # the reference first: it fixes `valid`, which the figure summaries below need
    order = sorted(scen, key=lambda n: n != reference)
    # figures: also at every switch and just before it (no sawtooth from the output step);
    # endpoints, tables and CSV files: on tau
    grids = {name: _plot_times(tau, model, scen[name], horizon, table) for name in order}
    jobs = [(model, full, starts, y0, scen[name], grids[name], autonomous, options)
            for name in order]
    # builtin map is lazy, so the progress bar advances as scenarios finish in-process too
    solved = (executor.map if executor is not None else map)(_scenario_job, jobs)
    for done, (name, sim_fine) in enumerate(zip(order, solved, strict=True), start=1):
        fine = grids[name]
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
    notes.append(f"{ep.function} and biomarker endpoints are among subjects alive at that "
                 "time; time-to-event endpoints are censored at the horizon")
    comp.summary = _summaries(comp)
    return comp


def _input_notes(source) -> list[str]:
    """What a comparison leaves out of a fit's data: scenarios are simulated from each
    subject's fitted parameters and the model alone, not with the dose records, covariates
    over time or experimental conditions the fit's likelihood used; said in the summary."""
    designs = getattr(source, "designs", None) or ()
    what = {"dose records": sum(1 for d in designs if getattr(d, "doses", ())),
            "covariates": sum(1 for d in designs if getattr(d, "covariates", ())),
            "experimental conditions": sum(1 for d in designs
                                           if getattr(d, "condition", None) is not None)}
    found = [f"{k} ({n} subject{'s' if n != 1 else ''})" for k, n in what.items() if n]
    if not found:
        return []
    return ["the fit's data carry " + ", ".join(found) + ": the scenario simulations start "
            "from the fitted parameters without the data's dose records, covariates and "
            "conditions (the model's own dose parameter and covariate defaults apply); "
            "FitResult.simulate(times) simulates the subjects with their doses and "
            "covariates"]


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


# ------------------------------------------------------- figure series (drawn by progression.plots)

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
