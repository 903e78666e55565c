"""Subjects' data prepared for fitting: :class:`Design` and :func:`designs_from_cohort`.

A design holds one subject's observations (times, observable index, values, censoring and
limits), its time-offset covariate, its dose records, the model's covariates from the data,
each value's experimental condition and measured SD. :func:`designs_from_cohort` builds them
from a :class:`~progression.data.Cohort` and a fit config, checking the data against the
model and the config (every problem named with its file, subject and row).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from .config import OFFSET, FitConfig
from .errormodels import split_kind

__all__ = ["Design", "designs_from_cohort"]


@dataclass(frozen=True)
class Design:
    """One subject's data prepared for fitting.

    Attributes
    ----------
    id : str
    time : ndarray (n,)
        Data times (e.g. months since enrolment).
    obs : ndarray of int (n,)
        Index of each value's observable in :attr:`Problem.observables
        <progression.fit.problem.Problem.observables>`.
    value, limit : ndarray (n,)
    cens : ndarray of int (n,)
        0 observed, 1 below ``limit``, -1 above ``limit``.
    offset_covariate : float
        Value of the time-offset covariate (0 without one).
    doses : tuple of progression.dosing.Dose
        The subject's dose records, times in data time (shifted to model time with the
        subject's time offset, like the observations); ``subject`` is ignored.
    dose_records : bool
        The data set gives doses as records: the model's record-free dose parameter
        (``[dosing] dose_parameter``) is 0 for this subject, as in ``simulate(..., doses=...)``.
    covariates : tuple of (str, ndarray, ndarray)
        Covariates the model declares: ``(name, times, values)`` with times in data time (a
        baseline covariate is one value at time 0).
    condition : ndarray of str (n,) or None
        Experimental condition of each value (``""``: none); see
        :class:`~progression.fit.problem.Problem`.
    sd : ndarray (n,) or None
        Known standard deviation of each value (the ``"measured"`` error model; NaN where not
        given).
    baseline : tuple of (str, float or str)
        The subject's values of the covariates the population model uses (covariate effects
        on typical values): its baseline covariate, or the earliest value of time-varying
        rows; categories as given (numbers or text).
    survival : SurvivalRecord or None
        The subject's time-to-event datum when the config has a ``[survival]`` table and the
        data an event row for the subject (:mod:`progression.fit._survival_likelihood`).
    """

    id: str
    time: np.ndarray
    obs: np.ndarray
    value: np.ndarray
    cens: np.ndarray
    limit: np.ndarray
    offset_covariate: float = 0.0
    doses: tuple = ()
    dose_records: bool = False
    covariates: tuple = ()
    condition: np.ndarray | None = None
    sd: np.ndarray | None = None
    baseline: tuple = ()
    survival: object = None

    @property
    def n(self) -> int:
        return self.time.shape[0]

    def with_values(self, value: np.ndarray) -> Design:
        """The same design with other values (e.g. a bootstrap replicate)."""
        return dataclasses.replace(self, value=np.asarray(value, float))

    def replace(self, **changes) -> Design:
        """A copy with some fields changed (doses, covariates, conditions are kept)."""
        return dataclasses.replace(self, **changes)


def designs_from_cohort(cohort, config: FitConfig) -> tuple[list[Design], list[str]]:
    """Turn a Cohort into one Design per subject for the observables the config fits.

    Each design carries the subject's dose records (times in data time, shifted to model time
    with the subject's offset at evaluation), the model's covariates from the data
    (time-varying ones as ``(times, values)``, baseline ones as one value at time 0), each
    value's experimental condition and its measured SD (data column ``sd``).

    Returns the designs and notes (observables ignored, subjects without data).

    Raises
    ------
    ConfigError
        An observable with an error model has no data at all; an estimated time offset or
        record-free dose parameter with dose records.
    DataError
        Log-normal values <= 0, a missing time-offset covariate, a dose record whose
        compartment the model does not declare (or a model without dosing compartments),
        a dose before model time 0, a value without SD under the ``measured`` error model.
    """
    observables = tuple(config.errors)
    notes: list[str] = []
    present = set(cohort.observables)
    missing = [o for o in observables if o not in present]
    if missing:
        raise ConfigError(f"{config.source}, key 'error.{missing[0]}': the data "
                          f"({cohort.source or 'cohort'}) have no observations of "
                          + ", ".join(f"'{o}'" for o in missing) + "; they have "
                          + ", ".join(f"'{o}'" for o in sorted(present)))
    ignored = sorted(present - set(observables))
    if ignored:
        notes.append("observables without an error model are not fitted: "
                     + ", ".join(ignored))
    dose_records = bool(len(cohort.doses.get("time", ())))
    if dose_records:
        _check_dosing(cohort, config)
    model_covariates = tuple(getattr(config.model, "covariate_names", ()) or ())
    unused_tv = sorted(set(map(str, cohort.time_varying.get("name", ()))) - set(model_covariates))
    if unused_tv:
        notes.append("time-varying covariates the model does not declare are not used: "
                     + ", ".join(unused_tv) + f" (model '{config.model.name}' covariates: "
                     + (", ".join(model_covariates) or "none") + ")")
    if model_covariates and config.parameter(OFFSET).estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported for model '{config.model.name}', which has "
                          f"covariates ({', '.join(model_covariates)}): the offset's derivative "
                          "would be wrong where a covariate changes; fix the offset")
    _check_covariate_columns(cohort, config)
    survival = getattr(config, "survival", None)
    if len(cohort.events.get("time", ())) and survival is None:
        notes.append("death/ventilation events are not part of the likelihood (longitudinal "
                     "observations only; a [survival] table adds them)")
    if survival is not None:
        _check_survival_data(cohort, config)
    offset = config.parameter(OFFSET)
    subjects = cohort.subjects
    if config.data.get("subjects"):
        wanted = config.data["subjects"]
        unknown = [s for s in wanted if s not in cohort]
        if unknown:
            raise ConfigError(f"{config.source}, key 'data.subjects': no subject "
                              + ", ".join(f"'{s}'" for s in unknown) + " in the data")
        subjects = tuple(wanted)
    problems = []
    designs = []
    # a Student-t kind ("lognormal:t(3)") has its base model's scale and checks
    lognormal = {o for o, e in config.errors.items() if split_kind(e)[0] == "lognormal"}
    measured = {o for o, e in config.errors.items() if e == "measured"}
    for sid in subjects:
        sub = cohort.subject(sid)
        parts = []
        for i, obs in enumerate(observables):
            if obs not in sub.series:
                continue
            s = sub.series[obs]
            if obs in lognormal:
                vals = np.where(s.cens != 0, s.limit, s.value)
                bad = ~(vals > 0)
                for t, x in zip(s.time[bad], vals[bad], strict=True):
                    problems.append(f"{cohort.place(sid, obs, t)}, observable '{obs}', time "
                                    f"{t:g}: the log-normal error model needs values > 0, "
                                    f"found {x:g} (fit '{obs}' with an additive or combined "
                                    "error model, or correct the value)")
            sd = getattr(s, "sd", None)
            sd = np.full(s.time.shape, np.nan) if sd is None else np.asarray(sd, float)
            if obs in measured:
                for t in s.time[~(sd > 0)]:
                    problems.append(f"{cohort.place(sid, obs, t, column='sd')}, observable "
                                    f"'{obs}', time {t:g}: the measured error model needs the "
                                    "value's SD (data column 'sd', > 0), found none")
            cond = getattr(s, "condition", None)
            cond = np.full(s.time.shape, "", dtype=object) if cond is None else \
                np.asarray(cond, dtype=object)
            parts.append((s.time, np.full(s.time.shape, i), s.value, s.cens, s.limit, sd,
                          cond))
        if not parts:
            notes.append(f"subject '{sid}' has no observations of the fitted observables; "
                         "left out")
            continue
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        order = np.lexsort((cols[1], cols[0]))
        cov_value = 0.0
        if offset.covariate:
            value = sub.covariates.get(offset.covariate)
            if not isinstance(value, float | int) or not np.isfinite(value):
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': the time offset "
                                f"is tied to covariate '{offset.covariate}', which is "
                                f"{'missing' if value is None else repr(value)}")
            else:
                cov_value = float(value)
        doses = _subject_doses(cohort, sid, sub, config, problems) if dose_records else ()
        if doses and not offset.estimated:
            shift = offset.value + offset.factor * cov_value
            early = [x for x in doses if x.time + shift < 0]
            if early:
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}', dose at time "
                                f"{early[0].time:g}: with the time offset {shift:g} it falls "
                                f"at model time {early[0].time + shift:g}, before the model's "
                                "t = 0 (expected a dose at model time >= 0)")
        sd = cols[5][order].astype(float)
        condition = cols[6][order].astype(str)
        covariates = _subject_covariates(cohort, sid, sub, config, problems)
        baseline = _population_covariates(cohort, sid, sub, config, problems)
        record = None
        if survival is not None:
            from ._survival_likelihood import record_for

            record = record_for(survival, cohort.event(sid), float(cols[0].min()), cols[0])
            if record is not None and record.time < (record.entry if np.isfinite(
                    record.entry) else -np.inf):
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': event "
                                f"'{cohort.event(sid).type}' at time {record.time:g} is "
                                f"before the subject's entry at {record.entry:g} ({config.source}"
                                f", key 'survival.entry' = '{survival.entry}'); expected an "
                                "event or censoring time at or after the entry")
        designs.append(Design(str(sid), cols[0][order].astype(float),
                              cols[1][order].astype(int), cols[2][order].astype(float),
                              cols[3][order].astype(int), cols[4][order].astype(float),
                              cov_value, doses=doses, dose_records=dose_records,
                              covariates=covariates,
                              condition=condition if (condition != "").any() else None,
                              sd=sd if np.isfinite(sd).any() else None, baseline=baseline,
                              survival=record))
    if survival is not None:
        recs = [d.survival for d in designs if d.survival is not None]
        from ._survival_likelihood import KIND_NAMES

        counts = {name: sum(r.kind == k for r in recs) for k, name in KIND_NAMES.items()}
        notes.append(f"time-to-event part ([survival], hazard '{survival.hazard}', events "
                     f"{', '.join(survival.events)}, entry '{survival.entry}'): "
                     f"{len(recs)} of {len(designs)} subjects with a record ("
                     + ", ".join(f"{n} {name}" for name, n in counts.items()) + ")")
    _check_conditions(cohort, config, designs, subjects, notes, problems)
    _check_categories(cohort, config, designs, problems)
    if problems:
        # The summary line carries the first problem itself, so that it informs on its own.
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{cohort.source or 'cohort'}: {len(problems)} problems for the fit, "
                        f"the first: {problems[0]}", problems)
    if not designs:
        raise DataError(f"{cohort.source or 'cohort'}: no subject has observations of "
                        + ", ".join(observables))
    return designs, notes


def _check_survival_data(cohort, config: FitConfig) -> None:
    """A ``[survival]`` table needs event rows, and at least one of the event types it counts
    (a ConfigError naming the key and what the data have)."""
    ev = cohort.events
    kinds = sorted({str(e) for e in ev.get("event", ())})
    if not kinds:
        raise ConfigError(f"{config.source}, key 'survival': the data "
                          f"({cohort.source or 'cohort'}) have no events table (subject, time, "
                          "event; the sidecar's 'events' key); expected one for a survival fit")
    wanted = config.survival.events
    if not set(wanted) & set(kinds):
        raise ConfigError(f"{config.source}, key 'survival.events': none of "
                          + ", ".join(f"'{e}'" for e in wanted) + " in the data's events ("
                          + ", ".join(f"'{k}'" for k in kinds) + ")")


def _check_dosing(cohort, config: FitConfig) -> None:
    """Dose records need a model with dosing compartments, a fixed time offset and a fixed
    record-free dose parameter."""
    model = config.model
    spec = getattr(model, "spec", None)
    n = len(cohort.doses["time"])
    if not getattr(spec, "dosing", ()):
        first = str(cohort.doses["subject"][0])
        raise DataError(f"{cohort.source or 'cohort'}, subject '{first}': the data hold {n} dose "
                        f"records, but model '{model.name}' declares no dosing compartments "
                        "(add a [dosing.STATE] table to the model file, or fit a model that "
                        "has one)")
    offset = config.parameter(OFFSET)
    if offset.estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported with dose records ({n} in "
                          f"{cohort.source or 'the data'}): its derivative would be wrong "
                          "when doses move with the offset; fix the offset (estimate = "
                          "\"fixed\") or fit data without doses")
    if spec.dose_parameter is not None and config.parameter(spec.dose_parameter).estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{spec.dose_parameter}': the "
                          f"record-free dose parameter of model '{model.name}' is 0 when the "
                          f"data give dose records ({n} in {cohort.source or 'the data'}); "
                          "expected it fixed")


def _subject_doses(cohort, sid, sub, config: FitConfig, problems: list) -> tuple:
    """One subject's dose records as a tuple of Dose (data time), each checked against the
    model's dosing compartments (a bad one is added to ``problems``)."""
    from ..dosing import Dose, dose_table
    from ..errors import ProgressionError

    d = sub.doses
    out = []
    for j in range(len(d["time"])):
        amount = float(d["amount"][j])
        amount = 0.0 if not np.isfinite(amount) else amount
        reset = bool(d["reset"][j])
        target = str(d["target"][j]).strip() or None
        rate = float(d["rate"][j]) if np.isfinite(d["rate"][j]) else 0.0
        duration = float(d["duration"][j]) if np.isfinite(d["duration"][j]) else 0.0
        # A steady-state record (SS = 1) and its interval; older cohorts have no such columns.
        ss = int(d["ss"][j]) if "ss" in d else 0
        ii = float(d["ii"][j]) if "ii" in d and np.isfinite(d["ii"][j]) else 0.0
        dose = Dose(float(d["time"][j]), amount, target=target, rate=rate,
                    duration=duration, ss=ss, ii=ii,
                    evid=(4 if amount > 0 else 3) if reset else 1)
        try:
            dose_table(config.model, [dose])
        except ProgressionError as exc:
            text = str(exc).split(": ", 1)[-1]
            # the data column the simulator's message is about (the amount when none)
            field_ = next((f for f in ("target", "rate", "duration", "ss", "ii")
                           if f"field '{f}'" in str(exc)), None)
            place = (cohort.dose_place(sid, j, field_ or "amount")
                     if hasattr(cohort, "dose_place") else
                     f"{cohort.source or 'cohort'}, subject '{sid}'")
            problems.append(f"{place}, dose at time {dose.time:g}"
                            + (f", compartment {target!r}" if field_ else "") + f": {text}")
            continue
        out.append(dose)
    return tuple(out)


def _check_conditions(cohort, config: FitConfig, designs, subjects, notes, problems) -> None:
    """Every condition in the data is defined in the config; defined but unused ones are
    noted (and warned about); an estimated offset is refused with condition doses."""
    import warnings

    defined = {c.name: c for c in getattr(config, "conditions", ()) or ()}
    used: set = set()
    for d in designs:
        if d.condition is None:
            continue
        for name in np.unique(d.condition).tolist():
            if not name:
                continue
            used.add(name)
            if name not in defined:
                t = float(d.time[d.condition == name][0])
                o = tuple(config.errors)[int(d.obs[d.condition == name][0])]
                hint = did_you_mean(name, list(defined))
                problems.append(f"{cohort.place(d.id, o, t, column='condition')}: condition "
                                f"'{name}' is not defined in {config.source} (expected a "
                                f"[conditions.{name}] table; defined: "
                                f"{', '.join(defined) or 'none'}){hint}")
    unused = [n for n in defined if n not in used]
    if unused:
        text = (f"{config.source}: condition" + ("s " if len(unused) > 1 else " ")
                + ", ".join(f"'{n}' (key 'conditions.{n}')" for n in unused)
                + f" not used by any value in {cohort.source or 'the data'} (data column "
                "'condition')")
        notes.append(text)
        warnings.warn(text, UserWarning, stacklevel=3)
    offset = config.parameter(OFFSET)
    dosed = [n for n in used if n in defined and defined[n].doses]
    if dosed and offset.estimated:
        raise ConfigError(f"{config.source}, key 'parameters.{OFFSET}': an estimated time "
                          f"offset is not supported with condition doses (conditions "
                          f"{', '.join(sorted(dosed))}): its derivative would be wrong; fix "
                          "the offset")


def _subject_covariates(cohort, sid, sub, config: FitConfig, problems: list) -> tuple:
    """The model's covariates for one subject: ``(name, times, values)`` from the data's
    time-varying covariates (data time), else its numeric baseline value (one value at time
    0); a covariate the model requires (no default ``value``) and the data lack is added to
    ``problems``."""
    spec = getattr(config.model, "spec", None)
    out = []
    for cov in getattr(spec, "covariates", ()) or ():
        name = cov.name
        if name in sub.time_varying:
            t, v = sub.time_varying[name]
            order = np.argsort(t, kind="stable")
            out.append((name, np.asarray(t, float)[order], np.asarray(v, float)[order]))
            continue
        value = sub.covariates.get(name)
        if isinstance(value, float | int) and np.isfinite(value):
            out.append((name, np.zeros(1), np.array([float(value)])))
        elif value is not None:
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': covariate '{name}' "
                            f"of model '{config.model.name}' must be a number, found {value!r}")
        elif cov.value is None:
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': model "
                            f"'{config.model.name}' needs covariate '{name}' (it has no "
                            "default value), but the data give none (a baseline covariate "
                            f"column or time-varying rows named '{name}')")
    return tuple(out)


def _effects(config: FitConfig) -> list:
    """Every covariate effect of the population model, with its config key."""
    return [(f"parameters.{p.name}.covariates.{e.covariate}", e)
            for p in config.parameters for e in getattr(p, "covariates", ()) or ()]


def _check_covariate_columns(cohort, config: FitConfig) -> None:
    """Every covariate of a covariate effect is in the data (a baseline column or
    time-varying rows); otherwise a ConfigError naming the key and the covariates there are."""
    effects = _effects(config)
    if not effects:
        return
    have = set()
    for sid in cohort.subjects:
        sub = cohort.subject(sid)
        have.update(str(k) for k in sub.covariates)
        have.update(str(k) for k in sub.time_varying)
    for key, e in effects:
        if e.covariate not in have:
            hint = did_you_mean(e.covariate, sorted(have))
            raise ConfigError(f"{config.source}, key '{key}': the data "
                              f"({cohort.source or 'cohort'}) have no covariate "
                              f"'{e.covariate}'; they have "
                              + (", ".join(f"'{c}'" for c in sorted(have)) or "none") + hint)


def _population_covariates(cohort, sid, sub, config: FitConfig, problems: list) -> tuple:
    """One subject's values of the covariates of the population model: the baseline value,
    else the earliest time-varying value (covariate effects are time-constant); a missing or
    unusable value is added to ``problems`` naming the subject and the covariate."""
    effects = _effects(config)
    out: dict = {}
    for key, e in effects:
        if e.covariate in out:
            value = out[e.covariate]
        else:
            value = sub.covariates.get(e.covariate)
            if value is None and e.covariate in sub.time_varying:
                t, v = sub.time_varying[e.covariate]
                if len(t):
                    value = np.asarray(v)[int(np.argmin(np.asarray(t, float)))]
            if isinstance(value, np.generic):
                value = value.item()
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': covariate "
                                f"'{e.covariate}' (used by {config.source}, key '{key}') is "
                                "missing; expected a value for every subject")
                continue
            out[e.covariate] = value
        if e.effect == "categorical":
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': covariate "
                            f"'{e.covariate}' must be a number for the {e.effect} effect of "
                            f"{config.source}, key '{key}', found {value!r}")
        elif e.effect == "power" and value <= 0:
            problems.append(f"{cohort.source or 'cohort'}, subject '{sid}': covariate "
                            f"'{e.covariate}' = {value:g}, but the power effect of "
                            f"{config.source}, key '{key}' needs values > 0")
    return tuple(out.items())


def _check_categories(cohort, config: FitConfig, designs, problems: list) -> None:
    """Categorical effects: the reference and every listed level occur in the data (a
    ConfigError naming the key); every subject's category is the reference or a level (a
    problem naming the subject)."""
    for key, e in _effects(config):
        if e.effect != "categorical":
            continue
        seen = {}
        for d in designs:
            value = dict(d.baseline).get(e.covariate)
            if value is None:
                continue
            cat = e.category(value)
            if cat is None:
                problems.append(f"{cohort.source or 'cohort'}, subject '{d.id}': covariate "
                                f"'{e.covariate}' = {value!r} is in none of the groups of "
                                f"{config.source}, key '{key}.groups' ("
                                + ", ".join(g for g, _ in e.groups) + ")")
                continue
            seen.setdefault(cat, d.id)
            if e.levels and cat != e.reference and cat not in e.levels:
                problems.append(f"{cohort.source or 'cohort'}, subject '{d.id}': covariate "
                                f"'{e.covariate}' is {cat!r}, which is neither the reference "
                                f"({e.reference!r}) nor a level of {config.source}, key "
                                f"'{key}.levels' ({', '.join(e.levels)})")
        if problems or not seen:
            continue
        found = ", ".join(repr(c) for c in sorted(seen))
        if e.reference not in seen:
            raise ConfigError(f"{config.source}, key '{key}.reference': no subject has the "
                              f"reference category {e.reference!r} of covariate "
                              f"'{e.covariate}'; the data have {found}")
        for lv in e.levels:
            if lv not in seen:
                where = "groups" if e.groups else "levels"
                raise ConfigError(f"{config.source}, key '{key}.{where}': no subject has "
                                  f"category {lv!r} of covariate '{e.covariate}'; the data "
                                  f"have {found}")
