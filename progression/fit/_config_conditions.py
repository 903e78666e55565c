"""Readers of the fit config's ``[conditions.NAME]`` and ``[survival]`` tables.

Same contract as :mod:`._config_sections` (take the problem collector and the parsed TOML,
add every problem, return what the table gives); kept apart because these two tables
describe the experiment (what was given to whom, which events count) rather than the fit.
"""

from __future__ import annotations

from ..errors import ProgressionError, did_you_mean
from ._config_checks import _Check, _found
from .config import OFFSET, Condition

_CONDITION_KEYS = ("description", "parameters", "doses")
_CONDITION_DOSE_KEYS = ("time", "amount", "target", "rate", "duration", "addl", "ii")


def condition_tables(chk: _Check, table, model, parameters) -> tuple:
    """``[conditions.NAME]`` tables -> Condition objects (problems go to ``chk``)."""
    table = chk.table("conditions", table)
    out = []
    for name, spec in table.items():
        key = f"conditions.{name}"
        if not isinstance(spec, dict):
            chk.add(key, f"expected a table (parameters, doses, description), found "
                         f"{_found(spec)}")
            continue
        chk.unknown(key, spec, _CONDITION_KEYS)
        description = chk.string(f"{key}.description", spec.get("description")) or ""
        overrides = []
        params = chk.table(f"{key}.parameters", spec.get("parameters"))
        names = tuple(model.parameter_names) if model is not None else None
        for pname, value in params.items():
            pkey = f"{key}.parameters.{pname}"
            if names is not None and pname not in names:
                hint = did_you_mean(pname, names)
                what = ("the time offset and error parameters cannot be overridden; "
                        if pname == OFFSET or "." in pname else "")
                chk.add(pkey, f"{what}model '{model.name}' has no parameter '{pname}'{hint}")
                continue
            v = chk.number(pkey, value)
            if v is not None:
                overrides.append((pname, v))
        doses = []
        raw = spec.get("doses", [])
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            chk.add(f"{key}.doses", f"expected an array of tables (time, amount, target, rate, "
                                    f"duration, addl, ii), found {_found(raw)}")
            raw = []
        for j, rec in enumerate(raw):
            dkey = f"{key}.doses[{j}]"
            dose = _condition_dose(chk, dkey, rec, model)
            if dose is not None:
                doses.append(dose)
        out.append(Condition(str(name), tuple(overrides), tuple(doses), description))
    return tuple(out)


def _condition_dose(chk: _Check, key: str, rec, model):
    from ..dosing import Dose, dose_table

    if not isinstance(rec, dict):
        chk.add(key, f"expected a table (time, amount, target, ...), found {_found(rec)}")
        return None
    n_before = len(chk.problems)
    chk.unknown(key, rec, _CONDITION_DOSE_KEYS)
    if "time" not in rec:
        chk.add(f"{key}.time", "is required")
    if "amount" not in rec:
        chk.add(f"{key}.amount", "is required")
    values = {}
    for k in ("time", "amount", "rate", "duration", "ii"):
        if k in rec:
            values[k] = chk.number(f"{key}.{k}", rec[k])
    if "addl" in rec:
        values["addl"] = chk.integer(f"{key}.addl", rec["addl"], 0)
    target = rec.get("target")
    if target is not None and (isinstance(target, bool)
                               or not isinstance(target, str | int)):
        chk.add(f"{key}.target", f"expected a compartment name or number, found "
                                 f"{_found(target)}")
    if len(chk.problems) > n_before:
        return None
    dose = Dose(values["time"], values["amount"], target=target,
                rate=values.get("rate", 0.0), duration=values.get("duration", 0.0),
                addl=values.get("addl", 0), ii=values.get("ii", 0.0))
    if model is not None:
        try:
            dose_table(model, [dose])
        except ProgressionError as exc:
            chk.add(key, str(exc).replace("doses[0], subject 0, ", ""))
            return None
    return dose


_SURVIVAL_KEYS = ("hazard", "events", "entry", "interval")
#: Estimators that take the time-to-event part of the likelihood.
SURVIVAL_ESTIMATORS = ("individual", "pooled", "saem", "laplace")


def survival_table(chk: _Check, doc: dict, model, estimator):
    """``[survival]``: the time-to-event part of the likelihood (a joint model).

    Keys: ``hazard`` (the model's ``[hazards.NAME]``; default its only one), ``events`` (event
    types of the data counted as the event: ``death``, ``tracheostomy``, ``ventilation``;
    default the hazard's ``event``), ``entry`` (``"first"`` observation, ``"enrolment"`` = data
    time 0, or ``"none"``: at risk since model time 0; default ``"first"``), ``interval``
    (true: an event lies between the subject's last observation before it and its recorded
    time; default false). Returns a
    :class:`~progression.fit._survival_likelihood.SurvivalSpec` or None without the table.
    """
    from ..data.validation import EVENT_TYPES
    from ._survival_likelihood import ENTRIES, SurvivalSpec

    if "survival" not in doc:
        return None
    table = chk.table("survival", doc.get("survival"))
    if not isinstance(doc.get("survival"), dict):
        return None
    chk.unknown("survival", table, _SURVIVAL_KEYS)
    ok = True
    if estimator is not None and estimator not in SURVIVAL_ESTIMATORS:
        chk.add("survival", f"the time-to-event likelihood is available with the estimators "
                            f"{', '.join(SURVIVAL_ESTIMATORS)}, not '{estimator}'"
                            + (": FOCE-I and FOCE see a time-to-event term through its "
                               "Gauss-Newton curvature, half the exact one for a frailty, "
                               "which biases the hazard's variance (and FO linearises at "
                               "eta = 0); NONMEM fits such data with LAPLACE: use 'laplace' "
                               "or 'saem'"
                               if estimator in ("focei", "foce", "fo") else ""))
        ok = False
    est = doc.get("estimator") if isinstance(doc.get("estimator"), dict) else {}
    wanted = est.get("uncertainty", ())
    if (wanted == "bootstrap" or isinstance(wanted, list) and "bootstrap" in wanted):
        chk.add("estimator.uncertainty", "'bootstrap' is not available with [survival] (the "
                                         "replicates would redraw the longitudinal data but "
                                         "not the events); use 'covariance' or 'profile'")
        ok = False
    hazards = tuple(getattr(getattr(model, "spec", None), "hazards", ()) or ())
    names = tuple(h.name for h in hazards)
    hazard = None
    if model is not None and not hazards:
        chk.add("survival", f"model '{model.name}' has no [hazards.NAME] section; a survival "
                            "fit needs the hazard of the event (see the model file docs)")
        ok = False
    name = chk.string("survival.hazard", table.get("hazard"))
    if "hazard" in table and name is None:
        ok = False
    elif name is not None and hazards and name not in names:
        chk.add("survival.hazard", f"model '{model.name}' has no hazard '{name}' (hazards: "
                                   f"{', '.join(names)}){did_you_mean(name, list(names))}")
        ok = False
    elif hazards:
        if name is None and len(hazards) > 1:
            chk.add("survival.hazard", f"model '{model.name}' has {len(hazards)} hazards "
                                       f"({', '.join(names)}); expected one named here")
            ok = False
        else:
            hazard = hazards[names.index(name)] if name is not None else hazards[0]
    kinds = tuple(e for e in EVENT_TYPES if e != "censored")
    raw = table.get("events")
    if raw is None:
        events = (hazard.event,) if hazard is not None else ()
        if hazard is not None and hazard.event not in kinds:
            chk.add("survival.events", f"the hazard's event '{hazard.event}' is not an event "
                                       f"type of the data ({', '.join(kinds)}); expected "
                                       "'events' naming which of those it is")
            ok = False
    else:
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
            chk.add("survival.events", f"expected a list of event types ({', '.join(kinds)}), "
                                       f"found {_found(table.get('events'))}")
            ok = False
            events = ()
        else:
            events = tuple(raw)
            for e in events:
                if e not in kinds:
                    chk.add("survival.events", f"expected event types among "
                                               f"{', '.join(kinds)}, found {e!r}"
                                               f"{did_you_mean(e, list(kinds))}")
                    ok = False
    entry = chk.string("survival.entry", table.get("entry", "first"), ENTRIES)
    interval = table.get("interval", False)
    if not isinstance(interval, bool):
        chk.add("survival.interval", f"expected true or false, found {_found(interval)}")
        ok = False
    if not ok or entry is None or hazard is None:
        return None
    return SurvivalSpec(hazard.name, events, entry, interval, hazard.cumulative_observable,
                        hazard.hazard_observable)
