"""Time-varying covariates: per-subject values turned into the compiled model's hidden rows.

A model file's ``[covariates.NAME]`` are carried in compiled code as hidden parameter rows after
the parameters (:attr:`~progression.model.spec.ModelSpec.hidden_names`): a level and, for
linear interpolation, a slope, the covariate being ``level + slope * t`` on each piece between
two recorded times. A :class:`CovariateSchedule` holds every subject's recorded values and gives
those rows at any time; the integrators restart at every recorded time (:attr:`breaks`), so the
stepper never crosses a change of a covariate or of its slope, and since the hidden rows are not
estimated, the forward sensitivities carry across each restart unchanged.

Values are given as one mapping for every subject, a sequence of mappings, one per subject, or
a Cohort (its time-varying covariates, else its numeric baseline covariates, per subject):
``{"WT": 80.0}`` (constant), ``{"WT": (times, values)}`` (recorded in model time units,
increasing). Before the first recorded time the first value holds, after the last the last;
between them ``"locf"`` keeps the last value until the next time and ``"linear"`` interpolates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import DataError, did_you_mean

__all__ = ["CovariateSchedule", "covariate_schedule", "n_covariate_subjects"]


def _is_cohort(x) -> bool:
    return (hasattr(x, "time_varying") and hasattr(x, "subjects")
            and not isinstance(x, Mapping))


def _from_cohort(model, cohort) -> tuple[list[dict], tuple[str, ...]]:
    """One mapping per cohort subject (in ``cohort.subjects`` order) for the model's covariates:
    time-varying rows as (times, values), else a numeric baseline covariate as a constant."""
    names = tuple(model.covariate_names)
    label = getattr(model, "name", "?")
    tv = cohort.time_varying
    subjects = tuple(str(s) for s in cohort.subjects)
    uses_times = any(str(n) in names for n in tv.get("name", ()))
    unit, model_unit = getattr(cohort, "time_unit", None), getattr(model, "time_unit", None)
    if uses_times and unit and model_unit and unit != model_unit:
        # Never rescale silently (as for doses): the cohort must be read in the model's unit.
        raise DataError(f"covariates: the cohort's times are in {unit}s but model {label!r} "
                        f"runs in {model_unit}s (read the cohort with to_unit={model_unit!r})")
    baseline = cohort.covariates
    out = []
    for s in subjects:
        given = {}
        rows = np.nonzero(np.asarray(tv.get("subject", ()), dtype=str) == s)[0]
        for name in names:
            mine = rows[np.asarray(tv["name"], dtype=str)[rows] == name] if rows.size else rows
            if mine.size:
                times = np.asarray(tv["time"], dtype=float)[mine]
                order = np.argsort(times, kind="stable")
                given[name] = (times[order], np.asarray(tv["value"], dtype=float)[mine][order])
            elif name in baseline.get(s, {}):
                value = baseline[s][name]
                if isinstance(value, str):
                    raise DataError(f"covariates: subject {s!r}, covariate {name!r}: expected a "
                                    f"number, found {value!r}")
                given[name] = value
        out.append(given)
    return out, subjects


def n_covariate_subjects(covariates) -> int | None:
    """Number of subjects a per-subject sequence of mappings (or a Cohort) names (None for
    one mapping)."""
    if _is_cohort(covariates):
        return len(covariates.subjects)
    if covariates is None or isinstance(covariates, Mapping):
        return None
    if isinstance(covariates, Sequence) and not isinstance(covariates, str | bytes):
        return len(covariates)
    return None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} {text[:40]}..."


def _series(value, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of one subject's covariate, validated; a constant has time -inf."""
    if isinstance(value, bool):
        raise DataError(f"{where}: expected a number or (times, values), found {value!r}")
    if np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: expected a number or (times, values), found "
                            f"{value!r}") from None
        if not np.isfinite(v):
            raise DataError(f"{where}: expected a finite number, found {v!r}")
        return np.array([-np.inf]), np.array([v])
    if isinstance(value, Mapping) or not isinstance(value, Sequence | np.ndarray) \
            or len(value) != 2:
        raise DataError(f"{where}: expected a number or a pair (times, values), found "
                        f"{_shown(value)}")
    try:
        times = np.atleast_1d(np.asarray(value[0], dtype=float))
        values = np.atleast_1d(np.asarray(value[1], dtype=float))
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected (times, values) as two sequences of numbers, "
                        f"found {value!r}") from None
    if times.ndim != 1 or values.ndim != 1 or times.size != values.size or times.size == 0:
        raise DataError(f"{where}: expected (times, values) of the same non-zero length, found "
                        f"{times.size} times and {values.size} values")
    for label, arr in (("times", times), ("values", values)):
        if not np.all(np.isfinite(arr)):
            k = int(np.argmax(~np.isfinite(arr)))
            raise DataError(f"{where}: expected finite {label}, found {arr[k]} at position {k}")
    steps = np.diff(times)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0))
        raise DataError(f"{where}: expected increasing times, found {times[k]:g} then "
                        f"{times[k + 1]:g}")
    return times, values


class CovariateSchedule:
    """Every subject's covariate values, as the hidden rows of a compiled model.

    Build one with :func:`covariate_schedule`.

    Attributes
    ----------
    names : tuple of str
        The model's covariates.
    hidden_names : tuple of str
        The hidden rows (after the parameters), as :attr:`CompiledModel.hidden_names`.
    n_subjects : int
    breaks : ndarray
        Every recorded time of any subject, sorted: where a value or a slope may change.
    """

    def __init__(self, model, series: dict, m: int):
        self.model = model
        self.names = tuple(model.covariate_names)
        self.hidden_names = tuple(model.hidden_names)
        self.n_subjects = m
        self._linear = {c.name: c.interpolation == "linear" for c in model.spec.covariates}
        # Per covariate: times and values (m, K), padded with +inf times and the last value.
        self._times, self._values, self._count = {}, {}, {}
        for name in self.names:
            K = max(len(t) for t, _ in series[name])
            times = np.full((m, K), np.inf)
            values = np.empty((m, K))
            count = np.empty(m, dtype=int)
            for i, (t, v) in enumerate(series[name]):
                times[i, :t.size], values[i, :t.size], values[i, t.size:] = t, v, v[-1]
                count[i] = t.size
            self._times[name], self._values[name], self._count[name] = times, values, count
        finite = [t[np.isfinite(t)] for t in self._times.values()]
        self.breaks = np.unique(np.concatenate(finite)) if finite else np.zeros(0)

    def subject_breaks(self, subjects=None) -> np.ndarray:
        """Each subject's own recorded times, sorted, padded with +inf: ``(m, B)``."""
        idx = np.arange(self.n_subjects) if subjects is None else np.asarray(subjects)
        rows = []
        for i in idx:
            own = [t[i][np.isfinite(t[i])] for t in self._times.values()]
            rows.append(np.unique(np.concatenate(own)) if own else np.zeros(0))
        width = max((r.size for r in rows), default=0)
        out = np.full((idx.size, max(width, 1)), np.inf)
        for k, r in enumerate(rows):
            out[k, :r.size] = r
        return out

    def hidden(self, t, subjects=None) -> np.ndarray:
        """The hidden rows at time ``t`` (scalar, or one time per subject), right-continuous:
        the values of the piece that starts at ``t``; shape ``(len(hidden_names), k)``."""
        idx = np.arange(self.n_subjects) if subjects is None else np.asarray(subjects)
        t = np.broadcast_to(np.asarray(t, dtype=float), idx.shape)
        rows = []
        for name in self.names:
            times, values = self._times[name][idx], self._values[name][idx]
            j = (times <= t[:, None]).sum(axis=1) - 1
            K = times.shape[1]
            lo = np.clip(j, 0, K - 1)
            v_lo = values[np.arange(idx.size), lo]
            if not self._linear[name]:
                rows.append(v_lo)
                continue
            inside = (j >= 0) & (j + 1 < self._count[name][idx])
            hi = np.clip(j + 1, 0, K - 1)
            t_lo = times[np.arange(idx.size), lo]
            t_hi = times[np.arange(idx.size), hi]
            v_hi = values[np.arange(idx.size), hi]
            with np.errstate(all="ignore"):
                slope = np.where(inside, (v_hi - v_lo) / (t_hi - t_lo), 0.0)
                level = np.where(inside, v_lo - slope * t_lo, v_lo)
            rows += [level, slope]
        return np.array(rows, dtype=float).reshape(len(self.hidden_names), idx.size)

    def extend(self, p, t, subjects=None) -> np.ndarray:
        """Parameters ``(P, k)`` with the hidden rows at ``t`` appended: ``(P + H, k)``."""
        return np.vstack([np.asarray(p, dtype=float), self.hidden(t, subjects)])

    def constants(self, subject: int, t: float) -> dict:
        """Each covariate's value for one subject at ``t``, as constants (``covariates=``)."""
        rows = dict(zip(self.hidden_names, self.hidden(t, [subject])[:, 0], strict=True))
        return {n: rows[n] + (rows[f"{n}.slope"] * t if self._linear[n] else 0.0)
                for n in self.names}


def covariate_schedule(model, covariates, m: int) -> CovariateSchedule | None:
    """Validate ``covariates=`` against a model and ``m`` subjects.

    Parameters
    ----------
    model : CompiledModel or PythonModel
    covariates : None, mapping, sequence of mappings, or Cohort
        ``{name: number | (times, values)}`` for every subject, or one such mapping per
        subject; covariates not given take the model file's ``value``. A Cohort gives, per
        subject in its order, its time-varying covariates of the model's names, else its
        numeric baseline covariates (its times must be in the model's unit).
    m : int
        Number of subjects simulated.

    Returns
    -------
    CovariateSchedule or None
        None for a model without covariates given none.

    Raises
    ------
    DataError
        Naming the covariate and subject: an unknown name, a required covariate not given, a
        wrong number of per-subject mappings, unsorted or non-finite times or values.
    """
    names = tuple(getattr(model, "covariate_names", ()))
    label = getattr(model, "name", "?")
    if not names:
        if covariates is None or (isinstance(covariates, Mapping) and not covariates):
            return None
        raise DataError(f"covariates: model {label!r} declares no covariates (add "
                        f"[covariates.NAME] tables to its model file)")
    ids = None
    if _is_cohort(covariates):
        covariates, ids = _from_cohort(model, covariates)
    if covariates is None:
        per_subject = [{}] * m
    elif isinstance(covariates, Mapping):
        per_subject = [covariates] * m
    elif isinstance(covariates, Sequence) and not isinstance(covariates, str | bytes):
        if len(covariates) != m:
            raise DataError(f"covariates: expected one mapping per subject ({m} subjects), "
                            f"found {len(covariates)}")
        per_subject = list(covariates)
    else:
        raise DataError(f"covariates: expected a mapping name -> value or (times, values), or "
                        f"one such mapping per subject, found {type(covariates).__name__}")
    defaults = {c.name: c.value for c in model.spec.covariates}
    series = {n: [] for n in names}
    one = isinstance(covariates, Mapping)
    for i, given in enumerate(per_subject):
        where = ("covariates" if one else f"covariates[{i}]" if ids is None
                 else f"covariates, subject {ids[i]!r}")
        if not isinstance(given, Mapping):
            raise DataError(f"{where}: expected a mapping name -> value or (times, values), "
                            f"found {type(given).__name__}")
        for key in given:
            if key not in names:
                raise DataError(f"{where}: model {label!r} has no covariate {key!r}"
                                f"{did_you_mean(str(key), names)} (covariates: "
                                f"{', '.join(names)})")
        for name in names:
            if name in given:
                series[name].append(_series(given[name], f"{where}[{name!r}]"))
            elif defaults[name] is not None:
                series[name].append((np.array([-np.inf]), np.array([defaults[name]])))
            else:
                who = i if ids is None else repr(ids[i])
                raise DataError(f"covariates: subject {who} has no value for covariate {name!r}, "
                                f"which model {label!r} requires (its file gives no default "
                                f"value)")
    return CovariateSchedule(model, series, m)
