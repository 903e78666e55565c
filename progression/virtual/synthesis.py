"""Generic machinery of synthetic cohorts: draw, evaluate, observe, record.

A synthetic cohort is a set of virtual patients simulated with a model and observed like real
data. What is the same for any model is here; what makes a cohort a cohort of one disease
(its covariates, onset and diagnosis, enrolment criteria, the clinical score that drives
dropout) belongs to the disease content (for ALS :mod:`progression.als.synthetic`, which uses
every function below):

* :func:`draw_parameters` -- between-subject variability: each varied parameter is
  ``typical * exp(covariate effects + shared factors + sd z)`` (or additive for
  ``scale = "normal"``), redrawn when outside its bounds;
* :func:`interpolate` -- a simulation on a common grid evaluated at each subject's own times
  (cubic Catmull-Rom);
* :func:`measure` -- measurement error per observable (normal, log-normal, a rounded bounded
  score; per-subject offsets, normal or Student-t residuals, assay floors that left-censor);
* :func:`nominal_visits`, :func:`visit_times`, :func:`planned_visits` -- a visit schedule
  with jitter, missed visits and administrative end of follow-up;
* :func:`dropout_times` -- informative dropout from any per-subject hazard on a time grid;
* :class:`Truth`, :func:`read_truth`, :func:`write_synthetic` -- the truth table beside the
  cohort file;
* :func:`draw_hazard_scores` -- the hazard route to event times: each ``[hazards.NAME]`` of
  the model has a per-patient standard-normal score ``z_NAME`` whose Exp(1) threshold the
  cumulative hazard must reach (:class:`progression.model.spec.Hazard`); drawing the scores
  makes event times random draws from the hazard, not a function of the state;
* :func:`simulate_cohort` -- all of the above for any model: draw, anchor the data clock (by
  the model's content or a given event, else model time 0), observe at jittered visits until
  the end of follow-up or a terminal event; with a hazard model, an events table (the
  hazard's event or censoring per subject).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.cohort import Cohort
from ..errors import ConfigError, DataError, ProgressionError
from .cohort_config import FactorSpec, ObservableSpec, ParameterSpec

__all__ = [
    "Truth",
    "read_truth",
    "truth_path",
    "write_synthetic",
    "draw_parameters",
    "interpolate",
    "measure",
    "nominal_visits",
    "visit_times",
    "planned_visits",
    "dropout_times",
    "draw_hazard_scores",
    "simulate_cohort",
]

# ================================================================================= truth


@dataclass(frozen=True)
class Truth:
    """What generated a synthetic cohort, one row per subject.

    Attributes
    ----------
    model : str
        The model simulated.
    parameter_names : tuple of str
        Parameters whose values are in the table (the varied ones and fixed overrides).
    columns : dict of str to ndarray
        ``subject``, each parameter, ``time_offset`` (the subject's data time 0 on the model
        clock: model time = ``time_offset`` + cohort time), then what the generator records
        (e.g. covariates and event times on the model clock).
    """

    model: str
    parameter_names: tuple[str, ...]
    columns: dict[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.columns["subject"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.columns["subject"])

    def parameters(self) -> dict[str, np.ndarray]:
        """Parameter name -> per-subject values, ready for :func:`progression.simulate`."""
        return {p: self.columns[p] for p in self.parameter_names}

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the truth table as CSV (one row per subject), atomically.

        An existing file is replaced only with ``overwrite=True`` and only if progression
        wrote it (a truth-table header, or a file of a cohort progression wrote).
        """
        from .._io import atomic_files, is_progression_truth_file
        from ..data._csvio import write_table

        path = Path(path)
        names = list(self.columns)
        with atomic_files(path, overwrite=overwrite, ours=is_progression_truth_file,
                          what="truth table") as tmp:
            write_table(tmp / path.name, names,
                        zip(*(self.columns[c].tolist() for c in names), strict=True))
        return path


def read_truth(path: str | os.PathLike) -> Truth:
    """Read a truth table written by :func:`write_synthetic`.

    The parameter columns are those between ``subject`` and ``time_offset``; the model name
    is not stored in the table (``Truth.model`` is then ``""``).
    """
    from ..data._csvio import parse_number, read_table

    problems: list[str] = []
    table = read_table(Path(path), problems)
    if table is None or problems:
        raise DataError(f"{path}: cannot read the truth table", problems or None)
    header = list(table.header)
    if "subject" not in header or "time_offset" not in header:
        raise DataError(f"{path}: expected columns 'subject' and 'time_offset', found "
                        + ", ".join(f"'{h}'" for h in header))
    cols: dict[str, np.ndarray] = {}
    for h in header:
        raw = table.column(h)
        if h == "subject":
            cols[h] = np.array(raw, dtype=str)
            continue
        parsed = [parse_number(x) for x in raw]
        if all(status != "bad" for _, status in parsed):
            cols[h] = np.array([np.nan if x is None else x for x, _ in parsed], dtype=float)
        else:
            cols[h] = np.array(raw, dtype=object)
    params = tuple(header[header.index("subject") + 1: header.index("time_offset")])
    return Truth("", params, cols)


# ============================================================================= drawing


def draw_parameters(parameters: Sequence[ParameterSpec], factors: Sequence[FactorSpec],
                    fixed: Sequence[tuple[str, float]], terms: Mapping[str, np.ndarray],
                    rng: np.random.Generator, m: int
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw ``m`` subjects' parameters.

    Parameters
    ----------
    parameters, factors : sequences of ParameterSpec, FactorSpec
        The varied parameters and the shared random effects loading on them.
    fixed : sequence of (str, float)
        Parameters set to one value for everyone.
    terms : mapping of str to ndarray (m,)
        The covariate terms the parameters' ``effects`` refer to.
    rng : numpy Generator
        Used in a fixed order: one normal per factor, then per parameter (redraws after).

    Returns
    -------
    (params, varied)
        ``params``: every fixed and varied parameter -> (m,) values; ``varied``: the varied
        ones only. Draws outside a parameter's bounds are redrawn up to 50 times, then
        clipped.
    """
    shared = {p.name: np.zeros(m) for p in parameters}
    for f in factors:
        z = f.sd * rng.standard_normal(m)
        for pname, loading in f.loadings:
            shared[pname] += loading * z
    varied: dict[str, np.ndarray] = {}
    for p in parameters:
        known = shared[p.name] + sum((beta * terms[t] for t, beta in p.effects), np.zeros(m))

        def value(z, p=p, known=known):
            if p.scale == "log":
                return p.typical * np.exp(known + p.sd * z)
            return p.typical + known + p.sd * z

        z = rng.standard_normal(m)
        x = value(z)
        lo, hi = p.bounds
        for _ in range(50):
            bad = (x < lo) | (x > hi)
            if not bad.any():
                break
            z[bad] = rng.standard_normal(int(bad.sum()))
            x = value(z)
        varied[p.name] = np.clip(x, lo, hi)
    params = {name: np.full(m, value) for name, value in fixed}
    params.update(varied)
    return params, varied


# ========================================================================== observation


def interpolate(Y: np.ndarray, step: float, X: np.ndarray) -> np.ndarray:
    """Evaluate grid values ``Y`` (m, T) at per-subject times ``X`` (m, K) (Catmull-Rom)."""
    m, T = Y.shape
    u = np.clip(X / step, 0.0, T - 1.0)
    j = np.clip(np.floor(u).astype(np.int64), 1, T - 3)
    s = u - j
    p0 = np.take_along_axis(Y, j - 1, axis=1)
    p1 = np.take_along_axis(Y, j, axis=1)
    p2 = np.take_along_axis(Y, j + 1, axis=1)
    p3 = np.take_along_axis(Y, j + 2, axis=1)
    return p1 + 0.5 * s * (p2 - p0 + s * (2 * p0 - 5 * p1 + 4 * p2 - p3
                                          + s * (3 * (p1 - p2) + p3 - p0)))



def measure(ob: ObservableSpec, f: np.ndarray, eta: np.ndarray, eps: np.ndarray):
    """Observed values, censoring flags and limits for true values ``f`` (m, V).

    ``eta`` (m,) are the subjects' standard-normal offsets and ``eps`` (m, V) the visits'
    residual draws. A score (``ob.score_range`` set) is ``round(f + eta + eps)`` clipped to
    its range; otherwise ``"normal"`` adds, any other error model (``"lognormal"``) adds on
    the log scale, values are rounded to ``ob.decimals`` and values below ``ob.floor`` are
    left-censored at it.
    """
    cens = np.zeros(f.shape, dtype=np.int8)
    limit = np.full(f.shape, np.nan)
    if ob.score_range is not None:
        lo, hi = ob.score_range
        value = np.clip(np.round(f + ob.subject_sd * eta[:, None] + ob.residual_sd * eps),
                        lo, hi)
        return value, cens, limit
    if ob.error == "normal":
        value = f + ob.subject_sd * eta[:, None] + ob.residual_sd * eps
    else:
        value = np.exp(np.log(np.maximum(f, 1e-300)) + ob.subject_sd * eta[:, None]
                       + ob.residual_sd * eps)
    value = np.round(value, ob.decimals)
    if ob.floor is not None:
        below = value < ob.floor
        cens[below] = 1
        limit[below] = ob.floor
        value = np.where(below, ob.floor, value)
    return value, cens, limit


# =============================================================================== visits


def nominal_visits(interval: float | None, schedule: Sequence[float] | None,
                   last: float) -> np.ndarray:
    """Nominal visit times from 0: ``schedule`` as given, else every ``interval`` up to
    ``last``."""
    if schedule is not None:
        return np.array(schedule, dtype=float)
    k = int(np.floor(last / interval + 1e-9))
    return np.arange(k + 1) * interval


def visit_times(nominal: np.ndarray, jitter: float, z: np.ndarray, *, min_gap: float = 0.25,
                decimals: int = 2) -> np.ndarray:
    """Actual visit times (m, V): nominal + ``jitter * z`` with the baseline at 0, each visit
    at least ``min_gap`` after the one before, rounded to ``decimals``."""
    w = nominal[None, :] + jitter * z
    w[:, 0] = 0.0
    for k in range(1, w.shape[1]):
        w[:, k] = np.maximum(w[:, k], w[:, k - 1] + min_gap)
    return np.round(w, decimals)


def planned_visits(nominal: np.ndarray, w: np.ndarray, planned_end: np.ndarray,
                   u_missed: np.ndarray, missed: float, *, decimals: int = 2):
    """Which visits are scheduled and missed, and when follow-up ends administratively.

    Returns
    -------
    (scheduled, missed, study_end)
        Boolean (m, V) arrays (the baseline is always scheduled and never missed) and the
        planned end per subject (at least the last scheduled visit, rounded).
    """
    scheduled = nominal[None, :] <= planned_end[:, None] + 1e-9
    scheduled[:, 0] = True
    gone = u_missed < missed
    gone[:, 0] = False
    last_visit = np.max(np.where(scheduled, w, 0.0), axis=1)
    return scheduled, gone, np.round(np.maximum(planned_end, last_visit), decimals)


def dropout_times(u: np.ndarray, hazard: np.ndarray, e: np.ndarray, *,
                  earliest: float = 0.01) -> np.ndarray:
    """Dropout times from a hazard on an even grid: the first ``t`` where the cumulative
    hazard (trapezoid rule) reaches the subject's unit-exponential draw ``e``.

    Parameters
    ----------
    u : ndarray (K,)
        Even time grid from 0 (spacing ``u[1] - u[0]``).
    hazard : ndarray (m, K)
        Hazard per subject at the grid times.
    e : ndarray (m,)
        Unit-exponential draws.

    Returns
    -------
    ndarray (m,)
        Linear interpolation of the crossing inside its grid cell; ``inf`` when the cumulative
        hazard stays below ``e`` on the grid; never before ``earliest``.
    """
    m = hazard.shape[0]
    h = u[1] - u[0]
    H = np.concatenate([np.zeros((m, 1)),
                        np.cumsum(0.5 * (hazard[:, 1:] + hazard[:, :-1]) * h, axis=1)], axis=1)
    E = e[:, None]
    cross = H >= E
    has = cross.any(axis=1)
    k = np.argmax(cross, axis=1)
    k0 = np.maximum(k - 1, 0)
    H0 = np.take_along_axis(H, k0[:, None], 1)[:, 0]
    H1 = np.take_along_axis(H, k[:, None], 1)[:, 0]
    frac = np.where(H1 > H0, (e - H0) / np.where(H1 > H0, H1 - H0, 1), 0.0)
    dropout = np.where(has, u[k0] + frac * h, np.inf)
    return np.maximum(dropout, earliest)


# ================================================================================ writing


def draw_hazard_scores(model, table: np.ndarray, rng, *, keep=()) -> list[str]:
    """Draw every hazard's survival score ``z_NAME ~ N(0, 1)`` into ``table`` (in place).

    A model's ``[hazards.NAME]`` event happens when the cumulative hazard reaches
    ``-log(0.5 erfc(z_NAME / sqrt 2))``, which is Exp(1) for a standard-normal score: the
    event time then has survival function ``exp(-Lambda(t))`` given the trajectory (the
    hazard route; models without a hazard keep their deterministic threshold events).
    Log-normal frailty on the hazard is variability on its parameters (e.g. ``h0``), drawn
    like any other.

    Parameters
    ----------
    model : CompiledModel
    table : ndarray (m, P)
        Parameter rows, changed in place.
    rng : numpy Generator
    keep : collection of str
        Scores not to draw (e.g. fixed by the caller).

    Returns
    -------
    list of str
        The parameters drawn (empty for a model without hazards).
    """
    spec = getattr(model, "spec", None)
    drawn = []
    for h in getattr(spec, "hazards", ()) or ():
        if h.score in keep:
            continue
        table[:, model.parameter_index(h.score)] = rng.standard_normal(table.shape[0])
        drawn.append(h.score)
    return drawn


def truth_path(path: str | os.PathLike) -> Path:
    """Where the truth table of a cohort file goes: ``<stem>_truth.csv`` beside it."""
    path = Path(path)
    return path.with_name(path.with_suffix("").name + "_truth.csv")


def write_synthetic(cohort: Cohort, truth: Truth, path: str | os.PathLike,
                    format: str = "long", *, overwrite: bool = False, inputs=()) -> list[Path]:
    """Write a synthetic cohort (via :func:`write_cohort`) and its truth table beside it.

    All files are written to a temporary folder beside ``path`` first and moved into place
    only when every file is complete, so a failure leaves no half-written cohort. Existing
    files are replaced only with ``overwrite=True`` and only if progression wrote them (they
    sit beside a sidecar progression wrote); ``inputs`` (the population config) are never
    replaced.

    Returns
    -------
    list of Path
        Every file written (the cohort file first, the truth table last).

    Raises
    ------
    OutputError
        When writing would replace a file that must be kept.
    """
    from .._io import atomic_files, cohort_files, is_progression_cohort_file
    from ..data.readers import write_cohort

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ProgressionError(f"{path}: expected a .csv file name for the cohort")
    with atomic_files(path, overwrite=overwrite, inputs=inputs, what="cohort file",
                      ours=is_progression_cohort_file, stale=cohort_files(path)[2:6],
                      expected=[path.with_suffix(".toml"), truth_path(path)]) as tmp:
        written = write_cohort(cohort, tmp / path.name, format=format)
        written.append(truth.write(tmp / truth_path(path).name))
    return [path.parent / f.name for f in written]


# ======================================================================= any model, end to end


def simulate_cohort(model, n: int, *, observables: Sequence[ObservableSpec],
                    parameters: Sequence[ParameterSpec] = (),
                    factors: Sequence[FactorSpec] = (),
                    fixed: Sequence[tuple[str, float]] = (), seed: int = 0,
                    interval: float | None = None, schedule: Sequence[float] | None = None,
                    follow_up: tuple[float, float] | None = None, jitter: float = 0.0,
                    missed: float = 0.0, anchor=None, delay: float = 0.0,
                    max_time: float | None = None, id_prefix: str = "S",
                    time_unit: str | None = None, solver=None) -> tuple[Cohort, Truth]:
    """A synthetic cohort of any model whose observation model is given.

    Each subject's parameters are drawn (:func:`draw_parameters`; covariate effects are not
    available here), data time 0 is ``anchor + delay`` on the model clock (``anchor``: an
    event of the model, or ``None`` for model time 0; pass
    :data:`progression.virtual.population.CONTENT` for the model's disease-content default),
    and the observables are measured (:func:`measure`) at jittered visits
    (:func:`visit_times`) until a planned end of follow-up drawn uniformly in ``follow_up``
    or the subject's first terminal event, whichever comes first. Model values are simulated
    at each subject's own visit times (no interpolation). Subjects whose anchor does not
    happen by ``max_time`` or who reach a terminal event before data time 0 are redrawn.
    For a model with ``[hazards.NAME]`` sections, every survival score ``z_NAME`` the caller
    neither varies nor fixes is drawn N(0, 1) (:func:`draw_hazard_scores`, from a random
    stream of its own), so event times are draws from the hazard, and the cohort gets an
    events table: per subject the hazard's event at its time if it happened before the end of
    follow-up, else ``censored`` at the end of follow-up (for hazards whose event is an event
    type of the data: death, tracheostomy, ventilation).

    Parameters
    ----------
    model : str, path or model
    n : int
    observables : sequence of ObservableSpec
        What is measured, with which error (``ob.model`` names the model observable).
    parameters, factors, fixed
        Between-subject variability (:func:`draw_parameters`); every other parameter keeps
        its model default.
    interval, schedule : optional
        Regular visits every ``interval`` up to the end of follow-up, or a list of visit
        times from 0 (exactly one).
    follow_up : (float, float), optional
        Planned follow-up, uniform per subject (default: the last scheduled visit).
    jitter, missed : float
        SD of the visit-time jitter (visits stay 0.25 apart, rounded to 0.01) and probability
        that a later visit is missed.
    max_time : float, optional
        Model time by which the anchor must happen (default: ``delay`` plus 100 times the
        follow-up).
    time_unit : str, optional
        Of the cohort (default: the model's).
    solver : SolverOptions or mapping, optional

    Returns
    -------
    (Cohort, Truth)
        Times since data time 0; the truth has each subject's parameters, ``time_offset`` and
        ``end_model_time`` (first terminal event on the model clock, NaN if none before the
        end of follow-up), and each drawn survival score.

    Raises
    ------
    ConfigError
        An unknown parameter or observable, both or neither of ``interval`` and
        ``schedule``, covariate effects, ``n < 1``.
    """
    from ..model import load_model
    from ..options import SolverOptions
    from ..simulate import simulate
    from .population import _anchor_times, _resolve_anchor

    model = load_model(model)
    where = f"simulate_cohort (model {model.name!r})"
    if int(n) < 1:
        raise ConfigError(f"{where}: n: expected a positive number of subjects, found {n}")
    if (interval is None) == (schedule is None):
        raise ConfigError(f"{where}: expected one of interval= (regular visits) or schedule= "
                          f"(visit times), found {'both' if interval is not None else 'neither'}")
    problems = []
    for p in parameters:
        if p.name not in model.parameter_names:
            problems.append(f"{where}: parameters: model has no parameter {p.name!r}")
        if p.effects:
            problems.append(f"{where}: parameters.{p.name}: covariate effects need a disease "
                            f"generator that draws covariates; found {dict(p.effects)}")
    for name, _ in fixed:
        if name not in model.parameter_names:
            problems.append(f"{where}: fixed: model has no parameter {name!r}")
    for ob in observables:
        if ob.model not in model.observable_names:
            problems.append(f"{where}: observables.{ob.name}: model has no observable "
                            f"{ob.model!r} (observables: {', '.join(model.observable_names)})")
    if problems:
        raise ConfigError(problems[0], problems if len(problems) > 1 else None)
    anchor, delay = _resolve_anchor(model, anchor, delay)
    n = int(n)
    rng = np.random.default_rng(seed)
    options = SolverOptions.coerce(solver).simulate_kwargs()
    last = float(schedule[-1]) if schedule is not None else None
    lo, hi = follow_up if follow_up is not None else (last or 0.0, last or 0.0)
    if follow_up is None and interval is not None:
        raise ConfigError(f"{where}: follow_up: expected (low, high) with regular visits")
    nominal = nominal_visits(interval, schedule, hi)
    max_time = float(delay) + 100.0 * max(hi, 1.0) if max_time is None else float(max_time)

    # Subjects: draw, keep those alive with their anchor by max_time. Survival scores come
    # from their own stream, so adding a hazard to a model changes no other draw.
    rng_z = np.random.default_rng([int(seed) if not isinstance(seed, np.random.Generator)
                                   else 0, 0x5EED])
    given = {p.name for p in parameters} | {name for name, _ in fixed}
    scores: list[str] = []
    tables, offsets, have = [], [], 0
    for _ in range(50):
        m = int(math.ceil((n - have) * 1.3)) + 4
        drawn, _ = draw_parameters(parameters, factors, fixed, {}, rng, m)
        table = model.parameter_table(None).repeat(m, axis=0)
        for name, values in drawn.items():
            table[:, model.parameter_index(name)] = values
        scores = draw_hazard_scores(model, table, rng_z, keep=given)
        when = _anchor_times(model, table, anchor, np.full(m, float(delay)),
                             max_time=max_time, **options)
        ok = np.isfinite(when)
        tables.append(table[ok])
        offsets.append(when[ok])
        have += int(ok.sum())
        if have >= n:
            break
    else:
        raise ProgressionError(f"{where}: found only {have} of {n} subjects whose anchor "
                               f"{anchor!r} happens by model time {max_time:g}")
    table = np.concatenate(tables)[:n]
    offset = np.concatenate(offsets)[:n]

    # Visits and observation draws, in a fixed order.
    V = nominal.size
    w = visit_times(nominal, jitter, rng.standard_normal((n, V)))
    planned_end = lo + (hi - lo) * rng.random(n)
    scheduled, gone, study_end = planned_visits(nominal, w, planned_end, rng.random((n, V)),
                                                missed)
    eta = {ob.name: rng.standard_normal(n) for ob in observables}
    eps = {ob.name: (rng.standard_t(ob.df, (n, V)) if ob.residual == "t"
                     else rng.standard_normal((n, V))) for ob in observables}
    u_meas = {ob.name: rng.random((n, V)) for ob in observables}

    # Model values at each subject's own visit times (chunks keep the output grid small).
    index = {name: j for j, name in enumerate(model.observable_names)}
    truev = {ob.name: np.full((n, V), np.nan) for ob in observables}
    end = np.full(n, np.nan)
    terminal = [e.name for e in model.events if e.terminal]
    for start in range(0, n, 64):
        idx = np.arange(start, min(n, start + 64))
        absolute = offset[idx, None] + w[idx]
        times = np.unique(absolute)
        sim = simulate(model, table[idx], times, **options)
        cols = np.searchsorted(times, absolute)
        rows = np.arange(idx.size)[:, None]
        for ob in observables:
            truev[ob.name][idx] = sim.observables[:, index[ob.model], :][rows, cols]
        for name in terminal:
            t = sim.event_time(name)
            end[idx] = np.fmin(end[idx], t)
    exit_time = np.where(np.isnan(end), study_end, np.minimum(end - offset, study_end))
    keep = scheduled & ~gone & (w <= exit_time[:, None] + 1e-12)
    keep[:, 0] = True

    width = len(str(n))
    ids = [f"{id_prefix}{i + 1:0{width}d}" for i in range(n)]
    obs = {k: [] for k in ("subject", "time", "observable", "value", "cens", "limit")}
    for ob in observables:
        value, cens, limit = measure(ob, truev[ob.name], eta[ob.name], eps[ob.name])
        p = np.full(V, ob.probability)
        p[0] = ob.baseline
        sel = keep & (u_meas[ob.name] < p[None, :]) & np.isfinite(value)
        for i, k in zip(*np.nonzero(sel), strict=True):
            obs["subject"].append(ids[i])
            obs["time"].append(float(w[i, k]))
            obs["observable"].append(ob.name)
            obs["value"].append(float(value[i, k]))
            obs["cens"].append(int(cens[i, k]))
            obs["limit"].append(float(limit[i, k]))
    n_end = int(np.sum(np.isfinite(end) & (end - offset <= study_end)))
    notes = [f"synthetic cohort: model {model.name!r}, seed {seed}, data time 0 = "
             f"{anchor or 'model time'} + {delay:g}",
             f"follow-up ended by a terminal event in {n_end} of {n} subjects"]
    events = _hazard_events(model, ids, end, offset, study_end, exit_time)
    if events is not None:
        # only subjects with data (a cohort refuses events of subjects without any)
        seen = set(obs["subject"])
        events = {k: [v for v, sid in zip(col, events["subject"], strict=True) if sid in seen]
                  for k, col in events.items()}
    cohort = Cohort(obs, time_unit=time_unit or getattr(model, "time_unit", "month"),
                    time_origin=anchor or "model time 0", notes=notes, events=events)
    names = [name for name, _ in fixed] + [p.name for p in parameters] + scores
    cols = {"subject": np.array(ids, dtype=str)}
    for name in names:
        cols[name] = table[:, model.parameter_index(name)].copy()
    cols["time_offset"] = offset
    cols["end_model_time"] = np.where(np.isfinite(end) & (end - offset <= study_end), end,
                                      np.nan)
    return cohort, Truth(model.name, tuple(names), cols)


def _hazard_events(model, ids, end, offset, study_end, exit_time):
    """The events table of a cohort of a hazard model (None without one): the first hazard
    whose event is an event type of the data, at the subject's terminal event if that ends
    its follow-up, else censored at the end of follow-up (times rounded up to 0.01, like
    visits)."""
    from ..data.validation import EVENT_TYPES

    spec = getattr(model, "spec", None)
    kinds = [h.event for h in getattr(spec, "hazards", ()) or ()
             if h.event in EVENT_TYPES and h.event != "censored"]
    if not kinds:
        return None
    died = np.isfinite(end) & (end - offset <= study_end)
    time = np.where(died, end - offset, exit_time)
    time = np.ceil(np.maximum(time, 0.0) * 100.0) / 100.0
    return {"subject": list(ids), "time": time.tolist(),
            "event": [kinds[0] if d else "censored" for d in died]}
