"""Published ALS trials as calibration data: virtual trials built like the real ones.

:file:`trials.toml` (package data, beside the intervention library) describes each published
trial -- eligibility, arms and their sizes, treatment, duration, visits, analysis -- and its
published outcomes, each with its uncertainty, source and the range that reproduces the
published *pattern* (tocilizumab's CRP drop without clinical change; MIROCALS' modest,
non-significant effect, larger at low neurofilament; IMODALS' Treg rise; masitinib's effect
confined to slower progressors; riluzole's HR ~0.80 and 2-3 months).

* :func:`published_trial` builds a :class:`~progression.virtual.trials.VirtualTrial` from an
  entry;
* :func:`check_published` simulates it and returns one :class:`Check` per published outcome,
  the simulated value next to the published one with pass/fail;
* :func:`format_checks` prints them (``progression trial NAME``).

Outcome kinds (``kind`` in the TOML; pool = the trial's eligible virtual patients, each
simulated under every arm):

``marker_change``
    Mean over the pool's patients alive at the times ``at`` of ``100 (mean_t M(t)/M(0) - 1)``
    in ``arm``, minus the same in ``versus`` (percentage points); ``versus`` equal to ``arm``
    gives the arm's own change.
``score_difference``
    Mean ALSFRS-R of ``arm`` minus ``versus`` (default: the control arm) at time ``at``, over
    patients alive at ``at`` under both arms (points; noiseless).
``slowing``
    ``1 - mean decline(arm) / mean decline(versus)`` from randomisation to ``at`` (declines
    ``F(0) - F(at)``), over patients alive under both arms.
``hazard_ratio``
    Log-rank (O/E) hazard ratio of death/ventilation, ``arm`` vs ``versus``, censored at
    ``horizon`` (default: follow-up): the pool's patients once under each arm.
``median_gain``
    Median time to death under ``arm`` minus under ``versus`` (months; NaN when half the pool
    is alive at the end of follow-up).
``rejection_rate``
    Share of replicate trials at the published arm sizes (randomisation, ALSFRS-R noise,
    dropout, deaths) whose test ``test`` rejects at alpha 0.05: ``"change"`` (Welch t-test of
    the ALSFRS-R change to ``at``), ``"survival"`` (log-rank to ``horizon``) or
    ``"marker_change"`` (Welch t-test of the marker's mean % change at ``at``, with log-normal
    measurement noise of CV ``noise_cv``).

Every kind takes an optional ``subgroup``: by ``"dfs"`` (ΔFS at screening) or a marker's
baseline value, ``below``/``at_least`` a value or ``quantile_below``/``quantile_at_least`` of
the pool.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
from scipy import stats

from ..errors import ConfigError, did_you_mean
from ..stats.survival import logrank
from ..virtual._trial_sources import _child, _entropy
from ..virtual.interventions import DAY, WEEK
from ..virtual.trials import Dropout, Enrolment, TrialPool, VirtualTrial
from .library import LIBRARY, library

__all__ = ["FILE", "PublishedTrial", "Outcome", "Check", "published_trials", "published_trial",
           "published_spec", "check_published", "format_checks", "KINDS"]

#: The trial file (package data).
FILE = "trials.toml"

KINDS = ("marker_change", "score_difference", "slowing", "hazard_ratio", "median_gain",
         "rejection_rate")
TESTS = ("change", "survival", "marker_change")

_UNITS = {"day": DAY, "days": DAY, "week": WEEK, "weeks": WEEK, "month": 1.0, "months": 1.0}
_TRIAL_KEYS = {"title", "design", "source", "model", "follow_up", "visit_every", "visits",
               "noise_sd", "dropout", "markers", "pool", "enrolment", "arms", "outcomes"}
_OUTCOME_KEYS = {"name", "statistic", "kind", "arm", "versus", "at", "horizon", "marker",
                 "subgroup", "test", "noise_cv", "published", "uncertainty", "source", "range",
                 "basis", "value", "interval"}
_SUBGROUP_RULES = ("below", "at_least", "quantile_below", "quantile_at_least")


# ----------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Outcome:
    """One published result of a trial and the range its simulated value must fall in."""

    name: str
    statistic: str
    kind: str
    published: str
    range: tuple[float, float]
    arm: str
    versus: str
    at: tuple[float, ...] = ()
    horizon: float | None = None
    marker: str | None = None
    subgroup: dict = field(default_factory=dict)
    test: str | None = None
    noise_cv: float = 0.0
    uncertainty: str = ""
    source: str = ""
    basis: str = ""
    value: float | None = None
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class PublishedTrial:
    """A published trial as data: design, arms (sizes, interventions) and outcomes."""

    name: str
    title: str
    design: str
    source: str
    model: str
    follow_up: float
    visit_every: float
    visits: tuple[float, ...] | None
    noise_sd: float
    dropout: Dropout
    markers: tuple[str, ...]
    pool: int
    enrolment: Enrolment
    arms: dict                 # arm name -> (n, list of Intervention)
    outcomes: tuple[Outcome, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Patients randomised per arm, control first."""
        return tuple(n for n, _ in self.arms.values())


@dataclass(frozen=True)
class Check:
    """A published outcome next to its simulated value."""

    trial: str
    outcome: str
    statistic: str
    published: str
    uncertainty: str
    simulated: float
    range: tuple[float, float]
    passed: bool
    source: str
    basis: str
    detail: str = ""
    value: float | None = None
    interval: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return {"trial": self.trial, "outcome": self.outcome, "statistic": self.statistic,
                "published": self.published, "published_value": self.value,
                "published_interval": None if self.interval is None else list(self.interval),
                "uncertainty": self.uncertainty,
                "simulated": self.simulated, "range": list(self.range),
                "passed": self.passed, "source": self.source, "basis": self.basis,
                "detail": self.detail}


def _time(value, where: str) -> float:
    """Months from a number or a string like '16 weeks', '640 days'."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a time (months or '16 weeks'), found {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: expected a non-negative time, found {value!r}")
        return float(value)
    if isinstance(value, str):
        parts = value.split()
        if len(parts) == 2 and parts[1] in _UNITS:
            try:
                number = float(parts[0])
            except ValueError:
                number = float("nan")
            if math.isfinite(number) and number >= 0:
                return number * _UNITS[parts[1]]
    raise ConfigError(f"{where}: expected a time (months, or a number with days/weeks/"
                      f"months like '16 weeks'), found {value!r}")


def _times(value, where: str) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: expected at least one time, found []")
    return tuple(_time(v, f"{where}[{i}]" if isinstance(value, list) else where)
                 for i, v in enumerate(items))


def _unknown(table: Mapping, allowed: set, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)} "
                              f"(expected: {', '.join(sorted(allowed))})")


def _number(table, key, where, default=None, *, positive=False, integer=False):
    value = table.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and positive:
        ok = value > 0
    elif ok:
        ok = value >= 0
    if not ok:
        what = "a positive " if positive else "a non-negative "
        what += "integer" if integer else "number"
        raise ConfigError(f"{where}.{key}: expected {what}, found {value!r}")
    return int(value) if integer else float(value)


def _text(table, key, where, default=None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected text, found {value!r}")
    return value


def _interventions(items, where: str) -> list:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of library names or tables, found "
                          f"{items!r}")
    out = []
    for i, item in enumerate(items):
        key = f"{where}[{i}]"
        if isinstance(item, str):
            name, options = item, {}
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = item["name"]
            options = {k: v for k, v in item.items() if k != "name"}
        else:
            raise ConfigError(f"{key}: expected a library name or a table with 'name', "
                              f"found {item!r}")
        if name not in LIBRARY:
            raise ConfigError(f"{key}: unknown intervention {name!r}"
                              f"{did_you_mean(name, LIBRARY)} (library: {', '.join(LIBRARY)})")
        try:
            out.extend(library(name, **options))
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return out


def _outcome(doc: Mapping, where: str, arms: Sequence[str], markers: Sequence[str],
             follow_up: float) -> Outcome:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a table, found {doc!r}")
    _unknown(doc, _OUTCOME_KEYS, where)
    for key in ("name", "statistic", "kind", "published", "range"):
        if key not in doc:
            raise ConfigError(f"{where}: missing key {key!r}")
    kind = _text(doc, "kind", where)
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: expected one of {', '.join(KINDS)}, found {kind!r}"
                          f"{did_you_mean(kind, KINDS)}")
    rng = doc["range"]
    if (not isinstance(rng, list) or len(rng) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in rng)
            or not rng[0] <= rng[1]):
        raise ConfigError(f"{where}.range: expected [low, high] with low <= high, found {rng!r}")
    arm = _text(doc, "arm", where, arms[1])
    versus = _text(doc, "versus", where, arms[0])
    for key, value in (("arm", arm), ("versus", versus)):
        if value not in arms:
            raise ConfigError(f"{where}.{key}: no arm {value!r}{did_you_mean(value, arms)} "
                              f"(arms: {', '.join(arms)})")
    at = _times(doc["at"], f"{where}.at") if "at" in doc else ()
    horizon = _time(doc["horizon"], f"{where}.horizon") if "horizon" in doc else None
    for t in (*at, *(() if horizon is None else (horizon,))):
        if t > follow_up + 1e-9:
            raise ConfigError(f"{where}: time {t:g} months is after the trial's follow_up "
                              f"({follow_up:g} months)")
    marker = doc.get("marker")
    test = doc.get("test")
    if kind in ("marker_change",) or test == "marker_change":
        if not isinstance(marker, str) or marker not in markers:
            raise ConfigError(f"{where}.marker: expected one of the trial's markers "
                              f"({', '.join(markers) or 'none'}), found {marker!r}")
    if kind in ("marker_change", "score_difference", "slowing") and not at:
        raise ConfigError(f"{where}: kind {kind!r} needs 'at' (time after randomisation)")
    if kind == "rejection_rate":
        if test not in TESTS:
            raise ConfigError(f"{where}.test: expected one of {', '.join(TESTS)}, found "
                              f"{test!r}")
        if test in ("change", "marker_change") and not at:
            raise ConfigError(f"{where}: test {test!r} needs 'at'")
    elif test is not None:
        raise ConfigError(f"{where}.test: only for kind 'rejection_rate'")
    subgroup = doc.get("subgroup", {})
    if not isinstance(subgroup, Mapping):
        raise ConfigError(f"{where}.subgroup: expected a table, found {subgroup!r}")
    if subgroup:
        _unknown(subgroup, {"by", *_SUBGROUP_RULES}, f"{where}.subgroup")
        by = subgroup.get("by")
        if by != "dfs" and by not in markers:
            raise ConfigError(f"{where}.subgroup.by: expected 'dfs' or one of the trial's "
                              f"markers ({', '.join(markers) or 'none'}), found {by!r}")
        rules = [k for k in _SUBGROUP_RULES if k in subgroup]
        if len(rules) != 1:
            raise ConfigError(f"{where}.subgroup: expected exactly one of "
                              f"{', '.join(_SUBGROUP_RULES)}, found {rules or 'none'}")
        value = _number(subgroup, rules[0], f"{where}.subgroup")
        if rules[0].startswith("quantile") and not 0 < value < 1:
            raise ConfigError(f"{where}.subgroup.{rules[0]}: expected a quantile in (0, 1), "
                              f"found {value!r}")
    noise_cv = _number(doc, "noise_cv", where, 0.0)
    value = doc.get("value")
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                              or not math.isfinite(value)):
        raise ConfigError(f"{where}.value: expected a number (the published value), found "
                          f"{value!r}")
    interval = doc.get("interval")
    if interval is not None:
        if (not isinstance(interval, list) or len(interval) != 2 or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in interval)
                or not interval[0] <= interval[1]):
            raise ConfigError(f"{where}.interval: expected the published [low, high] with "
                              f"low <= high, found {interval!r}")
        interval = (float(interval[0]), float(interval[1]))
    return Outcome(name=_text(doc, "name", where), statistic=_text(doc, "statistic", where),
                   kind=kind, published=str(doc["published"]),
                   range=(float(rng[0]), float(rng[1])), arm=arm, versus=versus, at=at,
                   horizon=horizon, marker=marker, subgroup=dict(subgroup), test=test,
                   noise_cv=noise_cv, uncertainty=_text(doc, "uncertainty", where, ""),
                   source=_text(doc, "source", where, ""), basis=_text(doc, "basis", where, ""),
                   value=None if value is None else float(value), interval=interval)


def parse_trial(name: str, doc: Mapping, source: str) -> PublishedTrial:
    """One ``[NAME]`` table of a trials file -> :class:`PublishedTrial` (ConfigError naming
    ``source`` and the key on bad input)."""
    where = f"{source} [{name}]"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a table, found {doc!r}")
    _unknown(doc, _TRIAL_KEYS, where)
    for key in ("title", "follow_up", "arms", "outcomes"):
        if key not in doc:
            raise ConfigError(f"{where}: missing key {key!r}")
    follow_up = _time(doc["follow_up"], f"{where}.follow_up")
    if follow_up <= 0:
        raise ConfigError(f"{where}.follow_up: expected a positive time, found "
                          f"{doc['follow_up']!r}")
    visits = None
    if "visits" in doc:
        if "visit_every" in doc:
            raise ConfigError(f"{where}: give visits or visit_every, not both")
        visits = _times(doc["visits"], f"{where}.visits")
    visit_every = _number(doc, "visit_every", where, 1.0, positive=True)
    markers = doc.get("markers", [])
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        raise ConfigError(f"{where}.markers: expected a list of observable names, found "
                          f"{markers!r}")
    dropout = doc.get("dropout", {"rate": 0.0})
    if not isinstance(dropout, Mapping):
        raise ConfigError(f"{where}.dropout: expected a table, found {dropout!r}")
    _unknown(dropout, {"rate", "informative"}, f"{where}.dropout")
    dropout = Dropout(rate=_number(dropout, "rate", f"{where}.dropout", 0.0),
                      informative=float(dropout.get("informative", 0.0)))
    enr = doc.get("enrolment", {})
    if not isinstance(enr, Mapping):
        raise ConfigError(f"{where}.enrolment: expected a table, found {enr!r}")
    _unknown(enr, {"duration", "dfs", "alsfrs_min"}, f"{where}.enrolment")
    try:
        pairs = {}
        for key in ("duration", "dfs"):
            if key in enr:
                v = enr[key]
                if (not isinstance(v, list) or len(v) != 2 or not all(
                        isinstance(x, int | float) and not isinstance(x, bool) for x in v)):
                    raise ConfigError(f"expected [low, high], found {v!r}")
                pairs[key] = (float(v[0]), float(v[1]))
        enrolment = Enrolment(**pairs, alsfrs_min=(None if "alsfrs_min" not in enr else
                                                   _number(enr, "alsfrs_min", where)))
    except ConfigError as exc:
        raise ConfigError(f"{where}.enrolment: {exc}") from None
    arms_doc = doc["arms"]
    if not isinstance(arms_doc, Mapping) or len(arms_doc) < 2:
        raise ConfigError(f"{where}.arms: expected at least two arm tables (control first), "
                          f"found {arms_doc!r}")
    arms = {}
    for arm, table in arms_doc.items():
        key = f"{where}.arms.{arm}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{key}: expected a table with n and interventions, found "
                              f"{table!r}")
        _unknown(table, {"n", "interventions"}, key)
        if "n" not in table:
            raise ConfigError(f"{key}: missing key 'n' (patients randomised to the arm)")
        arms[str(arm)] = (_number(table, "n", key, positive=True, integer=True),
                          _interventions(table.get("interventions", []),
                                         f"{key}.interventions"))
    outcomes = doc["outcomes"]
    if not isinstance(outcomes, list) or not outcomes:
        raise ConfigError(f"{where}.outcomes: expected one or more [[{name}.outcomes]] tables")
    parsed = tuple(_outcome(o, f"{where}.outcomes[{i}]", list(arms), markers, follow_up)
                   for i, o in enumerate(outcomes))
    if visits is not None:
        grid = np.asarray(visits, dtype=float)
    else:
        k = int(math.floor(follow_up / visit_every + 1e-9))
        grid = np.arange(k + 1) * visit_every
        grid = grid if grid[-1] >= follow_up - 1e-9 else np.r_[grid, follow_up]
    for i, o in enumerate(parsed):
        for t in o.at:
            if np.min(np.abs(grid - t)) > 1e-6:
                raise ConfigError(f"{where}.outcomes[{i}].at: {t:.4g} months is not a visit "
                                  f"of the trial (visits: "
                                  f"{', '.join(f'{x:.4g}' for x in grid)})")
    names = [o.name for o in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.outcomes: duplicate outcome names in {names}")
    return PublishedTrial(
        name=name, title=_text(doc, "title", where), design=_text(doc, "design", where, ""),
        source=_text(doc, "source", where, ""), model=_text(doc, "model", where,
                                                             "als_systemic"),
        follow_up=follow_up, visit_every=visit_every, visits=visits,
        noise_sd=_number(doc, "noise_sd", where, 2.0), dropout=dropout,
        markers=tuple(markers), pool=_number(doc, "pool", where, 400, positive=True,
                                             integer=True),
        enrolment=enrolment, arms=arms, outcomes=parsed)


def load_trials(path=None) -> dict[str, PublishedTrial]:
    """Every trial of a trials file (default: the package's ``trials.toml``)."""
    if path is None:
        text = resources.files(__package__).joinpath(FILE).read_text(encoding="utf-8")
        source = f"progression/als/{FILE}"
    else:
        from pathlib import Path

        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the trials file ({exc.strerror})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return {name: parse_trial(name, entry, source) for name, entry in doc.items()}


@cache
def published_trials() -> dict[str, PublishedTrial]:
    """The package's published trials, name -> :class:`PublishedTrial`."""
    return load_trials()


def published_spec(name: str) -> PublishedTrial:
    """The :class:`PublishedTrial` called ``name`` (ConfigError naming the known ones)."""
    trials = published_trials()
    if name not in trials:
        raise ConfigError(f"unknown published trial {name!r}{did_you_mean(name, trials)} "
                          f"(trials: {', '.join(trials)})")
    return trials[name]


def published_trial(name, **options) -> VirtualTrial:
    """A :class:`VirtualTrial` built like the published trial ``name`` (or a
    :class:`PublishedTrial`); ``options`` override VirtualTrial arguments (e.g. ``model=``,
    ``solver=``, ``population=``)."""
    spec = name if isinstance(name, PublishedTrial) else published_spec(name)
    kwargs = dict(model=spec.model, enrolment=spec.enrolment, follow_up=spec.follow_up,
                  visit_every=spec.visit_every, dropout=spec.dropout, noise_sd=spec.noise_sd,
                  markers=spec.markers, visit_times=spec.visits,
                  endpoint="survival" if any(o.kind in ("hazard_ratio", "median_gain")
                                             for o in spec.outcomes) else "change")
    kwargs.update(options)
    if kwargs.get("population") is not None:
        kwargs.pop("model", None)
    return VirtualTrial({arm: ivs for arm, (_, ivs) in spec.arms.items()}, **kwargs)


# ------------------------------------------------------------------------------ analysis


def _visit(trial: VirtualTrial, t: float, where: str) -> int:
    v = trial.visits
    j = int(np.argmin(np.abs(v - t)))
    if abs(v[j] - t) > 1e-6:
        raise ConfigError(f"{where}: time {t:g} months is not a visit of the trial (visits: "
                          f"{', '.join(f'{x:.3g}' for x in v)})")
    return j


def _subgroup(outcome: Outcome, pool: TrialPool, where: str) -> np.ndarray:
    """(n,) bool: the pool's patients in the outcome's subgroup (all when none)."""
    sg = outcome.subgroup
    if not sg:
        return np.ones(pool.size, bool)
    by = sg["by"]
    x = pool.dfs if by == "dfs" else pool.markers[by][0, :, 0]
    if "below" in sg:
        return x < sg["below"]
    if "at_least" in sg:
        return x >= sg["at_least"]
    q = sg.get("quantile_below", sg.get("quantile_at_least"))
    cut = np.nanquantile(x, q)
    return x < cut if "quantile_below" in sg else x >= cut


def _marker_change(M: np.ndarray, cols: list[int]) -> np.ndarray:
    """(n,) mean % change of a marker at the visit columns from baseline (NaN where
    missing)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = M[:, cols] / M[:, :1]
        ok = np.isfinite(rel)
        count = ok.sum(axis=1)
        mean = np.where(ok, rel, 0.0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count > 0, 100.0 * (mean - 1.0), np.nan)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _hr(d_ctl, d_trt, horizon) -> float:
    time = np.minimum(np.r_[d_ctl, d_trt], horizon)
    observed = np.r_[d_ctl, d_trt] <= horizon
    group = np.r_[np.zeros(d_ctl.size, bool), np.ones(d_trt.size, bool)]
    if observed.sum() == 0:
        return float("nan")
    return float(logrank(time, observed, group)["hr_oe"])


def _effect(outcome: Outcome, trial: VirtualTrial, pool: TrialPool, where: str) -> tuple:
    """(value, detail) of a pool-level outcome."""
    arms = list(pool.arms)
    a, b = arms.index(outcome.arm), arms.index(outcome.versus)
    keep = _subgroup(outcome, pool, where)
    detail = f"{int(keep.sum())} of {pool.size} pool patients"
    if outcome.kind == "marker_change":
        cols = [_visit(trial, t, where) for t in outcome.at]
        M = pool.markers[outcome.marker][:, keep]
        va = _nanmean(_marker_change(M[a], cols))
        if outcome.arm == outcome.versus:
            return va, detail
        vb = _nanmean(_marker_change(M[b], cols))
        return float(va - vb), detail + f"; {outcome.arm} {va:+.1f}%, {outcome.versus} " \
                                        f"{vb:+.1f}%"
    if outcome.kind in ("score_difference", "slowing"):
        j = _visit(trial, outcome.at[0], where)
        F = pool.function[:, keep]
        both = np.isfinite(F[a, :, j]) & np.isfinite(F[b, :, j])
        if not both.any():
            return float("nan"), detail + "; nobody alive at the time under both arms"
        if outcome.kind == "score_difference":
            return float(np.mean(F[a, both, j] - F[b, both, j])), detail
        da = np.mean(F[a, both, 0] - F[a, both, j])
        db = np.mean(F[b, both, 0] - F[b, both, j])
        return float(1.0 - da / db) if db != 0 else float("nan"), \
            detail + f"; decline {da:.2f} vs {db:.2f} points"
    D = pool.death[:, keep]
    if outcome.kind == "hazard_ratio":
        horizon = trial.follow_up if outcome.horizon is None else outcome.horizon
        ev = int((D[a] <= horizon).sum() + (D[b] <= horizon).sum())
        return _hr(D[b], D[a], horizon), detail + f"; {ev} deaths in both arms"
    # median_gain
    ma, mb = np.median(D[a]), np.median(D[b])
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return float("nan"), detail + "; half the pool alive at the end of follow-up"
    return float(ma - mb), detail + f"; median {mb:.1f} -> {ma:.1f} months from " \
                                    f"randomisation"


def _rejection_rate(outcome: Outcome, trial: VirtualTrial, pool: TrialPool,
                    sizes: Sequence[int], reps: int, seed, where: str) -> tuple:
    arms = list(pool.arms)
    a, b = arms.index(outcome.arm), arms.index(outcome.versus)
    keep_pool = _subgroup(outcome, pool, where)
    rng = np.random.default_rng(_entropy(seed))
    rejected, done = 0, 0
    for _ in range(reps):
        data = trial.realise(pool, list(sizes), rng)
        in_sub = keep_pool[data.index]
        trt = (data.arm == a) & in_sub
        ctl = (data.arm == b) & in_sub
        if outcome.test == "survival":
            horizon = trial.follow_up if outcome.horizon is None else outcome.horizon
            sel = trt | ctl
            time = np.minimum(data.death[sel], horizon)
            observed = data.death[sel] <= horizon
            if observed.sum() == 0:
                continue
            p = logrank(time, observed, trt[sel])["p"]
        else:
            cols = [_visit(trial, t, where) for t in outcome.at]
            if outcome.test == "change":
                value = data.score[:, cols[-1]] - data.score[:, 0]
            else:
                M = pool.markers[outcome.marker][data.arm, data.index]      # (n, V)
                M = M * np.exp(outcome.noise_cv * rng.standard_normal(M.shape))
                M = np.where(np.isfinite(data.score), M, np.nan)            # seen visits
                value = _marker_change(M, cols)
            x, y = value[trt], value[ctl]
            x, y = x[np.isfinite(x)], y[np.isfinite(y)]
            if x.size < 2 or y.size < 2:
                continue
            p = stats.ttest_ind(x, y, equal_var=False).pvalue
        done += 1
        rejected += bool(np.isfinite(p) and p < trial.alpha)
    if done == 0:
        return float("nan"), f"no analysable replicate of {reps}"
    return rejected / done, (f"{rejected} of {done} replicate trials at "
                             f"{'/'.join(str(s) for s in sizes)} per arm")


def check_published(name, *, pool_size: int | None = None, reps: int = 100, seed=0,
                    pool: TrialPool | None = None, executor=None, progress: bool = False,
                    **options) -> list[Check]:
    """Simulate a published trial and compare each published outcome with its simulation.

    Parameters
    ----------
    name : str or PublishedTrial
    pool_size : int, optional
        Eligible virtual patients simulated under every arm (default: the trial's ``pool``).
    reps : int
        Replicate trials for ``rejection_rate`` outcomes.
    seed : int
        Seeds the pool (child 1) and the replicates (child 2 + outcome number).
    pool : TrialPool, optional
        A pool simulated before with the same trial (then ``pool_size`` is ignored).
    executor, progress
        As :meth:`VirtualTrial.simulate_pool`.
    options
        VirtualTrial overrides (:func:`published_trial`).

    Returns
    -------
    list of Check
        One per published outcome, in the file's order.
    """
    spec = name if isinstance(name, PublishedTrial) else published_spec(name)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps: expected a positive integer, found {reps!r}")
    trial = published_trial(spec, **options)
    if pool is None:
        size = spec.pool if pool_size is None else pool_size
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2:
            raise ConfigError(f"pool_size: expected an integer >= 2, found {size!r}")
        pool = trial.simulate_pool(int(size), seed=_child(seed, 1), executor=executor,
                                   progress=progress)
    checks = []
    for k, outcome in enumerate(spec.outcomes):
        where = f"trial {spec.name!r} outcome {outcome.name!r}"
        if outcome.kind == "rejection_rate":
            value, detail = _rejection_rate(outcome, trial, pool, spec.sizes, reps,
                                            _child(seed, 2 + k), where)
        else:
            value, detail = _effect(outcome, trial, pool, where)
        lo, hi = outcome.range
        passed = bool(np.isfinite(value) and lo <= value <= hi)
        checks.append(Check(spec.name, outcome.name, outcome.statistic, outcome.published,
                            outcome.uncertainty, float(value), outcome.range, passed,
                            outcome.source, outcome.basis, detail, outcome.value,
                            outcome.interval))
    return checks


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def format_checks(checks: Sequence[Check], table: str = "text", *, title: str = "") -> str:
    """The checks as a text or Markdown table (published, simulated, accepted range, pass)."""
    head = ("trial", "outcome", "published", "simulated", "accepted", "pass")
    rows = [(c.trial, c.statistic, c.published, _fmt(c.simulated),
             f"{_fmt(c.range[0])} to {_fmt(c.range[1])}", "yes" if c.passed else "NO")
            for c in checks]
    n_pass = sum(c.passed for c in checks)
    foot = f"{n_pass} of {len(checks)} published outcomes reproduced"
    if table == "markdown":
        lines = ([f"**{title}**", ""] if title else []) + [
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + ["", foot]) + "\n"
    if table != "text":
        raise ConfigError(f"table: expected 'text' or 'markdown', found {table!r}")
    lines = [title] if title else []
    for c, r in zip(checks, rows, strict=True):
        lines.append(f"  [{'pass' if c.passed else 'MISS'}] {c.trial}: {c.statistic}")
        lines.append(f"         published {c.published}; simulated {r[3]} "
                     f"(accepted {r[4]}); {c.detail}")
    return "\n".join(lines + [foot]) + "\n"
