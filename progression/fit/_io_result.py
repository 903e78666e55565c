"""Saving and loading fits: the fit folder and its ``fit.json`` format versions.

A saved fit is a folder written atomically (all files appear together, or none):

==================  ===========================================================================
``fit.json``        estimates, standard errors, intervals (with method), covariance blocks on
                    the estimation scale, objective, AIC/BIC, per-subject convergence, counts,
                    timings, warnings, and everything to reproduce the fit: config text, model
                    file text, SHA-256 of the data, package versions, seeds
``subjects.csv``    one row per subject: status, objective, estimate/SE/interval per parameter
``data.csv``        the fitted observations with model time, prediction and normalised residual,
                    each value's experimental condition and measured SD (empty: none)
``doses.csv``       the subjects' dose records (data time), when the data had any
``covariates.csv``  the model's covariates per subject (data time; a baseline value at 0)
``report.md``       a readable summary with the figures
``figures/*.png``   individual fits with data, observed vs predicted, residuals vs time and vs
                    prediction, parameter distributions, profiles (when computed)
``fit.ext``         population fits: NONMEM-style ``.ext`` table (outer iterations, final
                    estimates, SEs; :func:`~progression.fit.population.read_ext` reads it)
==================  ===========================================================================

A population fit's ``data.csv`` has the extra columns PRED, IPRED, IWRES, CWRES and NPDE and
its ``figures/`` the goodness-of-fit, VPC and convergence figures
(:mod:`progression.fit.population._outputs`).

``fit.json`` formats (key ``format``):

* ``progression-fit/2`` (written now): the keys of version 1, plus ``estimator`` (the
  registry name), ``interval_methods`` (interval key -> method in words), ``joint_covariance``
  (one covariance block over every subject), ``method`` (optimiser and Jacobian),
  ``diagnostic_warnings`` (how many of ``warnings`` come from the estimation rather than the
  uncertainty step) and ``population`` (null until population estimators fill it). Added
  later within version 2 (files without them load as before: no inputs): ``inputs``
  (``dose_records`` per subject, ``conditions`` as ``[conditions.NAME]`` tables, the input
  ``files`` written), with ``doses.csv``, ``covariates.csv`` and the ``condition``/``sd``
  columns of ``data.csv``, so a loaded fit evaluates and simulates its subjects with their
  doses, covariates and conditions.
* ``progression-fit/1`` (before the estimator registry): read with ``kind`` as the estimator,
  the standard method names, a joint covariance for ``kind = "pooled"``.

A newer format (a fit saved by a later progression) is refused with a
:class:`~progression.errors.FitError` naming the file, the version found and the versions this
one reads.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ..errors import FitError
from ..simulate._dosing import Dose
from .config import Condition, FitParameter
from .parts import (
    INTERVAL_METHODS,
    BootstrapDraws,
    Diagnostics,
    Estimates,
    IndividualPart,
    PopulationPart,
    Predictions,
    Profiles,
    Uncertainty,
    Work,
)
from .problem import Design
from .result import FORMAT, READABLE, FitResult

__all__ = ["save_fit", "fit_document", "load_fit"]


# ============================================================================ saving


def save_fit(result: FitResult, folder, *, figures=True, overwrite=False, inputs=None) -> Path:
    """Write ``result``'s fit folder atomically (see :meth:`FitResult.save`)."""
    from .._io import atomic_directory
    from .report import write_figures, write_report

    folder = Path(folder)
    if inputs is None:
        prov = result.provenance or {}
        inputs = [prov.get("config_path"), prov.get("data_path"), prov.get("model_ref")]
        inputs = [p for p in inputs if isinstance(p, str) and p and Path(p).exists()]
    with atomic_directory(folder, overwrite=overwrite, inputs=inputs,
                          what="fit folder") as tmp:
        (tmp / "fit.json").write_text(json.dumps(fit_document(result), indent=1,
                                                 allow_nan=False) + "\n")
        pop = _population_outputs(result)
        _write_subjects(result, tmp / "subjects.csv")
        _write_data(result, tmp / "data.csv", pop)
        _write_inputs(result, tmp)
        if result.population is not None:
            from .population._outputs import write_fit_ext

            write_fit_ext(result, tmp / "fit.ext")
        figs = write_figures(result, tmp / "figures", population=pop) if figures else []
        write_report(result, tmp / "report.md", figs, population=pop)
    return folder


def _population_outputs(result: FitResult):
    """A population fit's per-observation diagnostics (PRED ... NPDE, simulations, VPC), or
    None for other fits; a failure to compute them is reported (in report.md), not raised,
    so that the fit itself is still written."""
    if result.population is None or not result.designs:
        return None
    from ..errors import ProgressionError
    from .population._outputs import population_outputs

    try:
        return population_outputs(result)
    except ProgressionError as exc:
        return str(exc)


def fit_document(r: FitResult) -> dict:
    """The ``fit.json`` content of a fit (JSON-safe: NaN and inf as null)."""
    spec = getattr(r.model, "spec", None)
    unc, diag = r.individual.uncertainty, r.individual.diagnostics
    return _clean({
        "format": FORMAT,
        "name": r.name,
        "kind": r.kind,
        "estimator": r.kind,
        "method": diag.method,
        "model": {"name": r.model.name, "text": getattr(spec, "text", "") or "",
                  "source": getattr(spec, "source", ""),
                  "fingerprint": getattr(spec, "fingerprint", "")},
        "subjects": list(r.subject_ids),
        "parameters": [dataclasses.asdict(p) for p in r.parameters],
        "observables": list(r.observables),
        "error_models": list(r.error_models),
        "solver": r.solver,
        "confidence": r.confidence,
        "objective": r.objective, "aic": r.aic, "bic": r.bic,
        "n_estimated": r.n_estimated, "n_observations": int(r.n_obs.sum()),
        "estimates": {"theta": r.theta, "se": r.se},
        "intervals": r.intervals,
        "interval_methods": unc.methods,
        "open_intervals": r.open_intervals,
        "joint_covariance": unc.joint,
        "estimation_scale": {"x_cols": r.x_cols, "x_rows": [list(map(int, x))
                                                           for x in r.x_rows],
                             "x_hat": r.x_hat,
                             "blocks": [{"entries": idx, "covariance": cov}
                                        for idx, cov in r.blocks]},
        "subject_objective": r.subject_objective, "n_obs": r.n_obs,
        "converged": r.converged, "messages": r.messages, "nfev": r.nfev,
        "failures": r.failures,
        "before_zero": r.before_zero,
        "starts_objective": r.starts_objective, "best_start": r.best_start,
        "profiles": r.profiles, "bootstrap": r.bootstrap,
        "warnings": r.warnings, "diagnostic_warnings": len(diag.warnings),
        "counters": r.counters, "timings": r.timings,
        "population": None if r.population is None else dataclasses.asdict(r.population),
        "inputs": _inputs_document(r),
        "provenance": r.provenance,
    })


def _write_subjects(r: FitResult, path: Path) -> None:
    est = [(q, p) for q, p in enumerate(r.parameters) if p.estimated]
    header = ["subject", "converged", "objective", "n_obs", "nfev", "best_start",
              "time_offset_model", "n_before_model_t0"]
    for _, p in est:
        header += [p.name, f"{p.name}_se"]
        for method in r.intervals:
            header += [f"{p.name}_{method}_lo", f"{p.name}_{method}_hi"]
    header.append("message")
    offsets = r.time_offsets
    bz = r.before_zero
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, sid in enumerate(r.subject_ids):
            row = [sid, int(r.converged[i]), _fmt(r.subject_objective[i]), int(r.n_obs[i]),
                   int(r.nfev[i]), int(r.best_start[i]) + 1, _fmt(offsets[i]), int(bz[i])]
            for q, _ in est:
                row += [_fmt(r.theta[i, q]), _fmt(r.se[i, q])]
                for ci in r.intervals.values():
                    row += [_fmt(ci[i, q, 0]), _fmt(ci[i, q, 1])]
            row.append(r.failures[i] or r.messages[i])
            w.writerow(row)


def _write_data(r: FitResult, path: Path, pop=None) -> None:
    """data.csv; a population fit's diagnostics (``pop``, a PopulationOutputs) add the columns
    PRED, IPRED, IWRES, CWRES and NPDE."""
    res = r.residuals().residuals if r.designs else []
    offsets = r.time_offsets
    extra = ()
    if pop is not None and not isinstance(pop, str):
        from .population._outputs import DATA_COLUMNS as extra
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "time", "model_time", "observable", "value", "cens", "limit",
                    "offset_covariate", "prediction", "residual", "condition", "sd",
                    *extra])
        for i, d in enumerate(r.designs):
            cols = [pop.column(c, i, d.n) for c in extra]
            for j in range(d.n):
                w.writerow([d.id, _fmt(d.time[j]), _fmt(d.time[j] + offsets[i]),
                            r.observables[d.obs[j]], _fmt(d.value[j]), int(d.cens[j]),
                            _fmt(d.limit[j]), _fmt(d.offset_covariate),
                            _fmt(r.predictions[i][j]), _fmt(res[i][j]),
                            "" if d.condition is None else str(d.condition[j]),
                            "" if d.sd is None else _fmt(d.sd[j]),
                            *(_cell(name, c[j]) for name, c in zip(extra, cols, strict=True))])


#: Columns of ``doses.csv`` (the fields of :class:`progression.Dose`, data time).
_DOSE_COLUMNS = ("time", "amount", "target", "rate", "duration", "addl", "ii", "ss", "evid")


def _dose_dict(dose) -> dict:
    return {k: getattr(dose, k) for k in _DOSE_COLUMNS}


def _inputs_document(r: FitResult) -> dict:
    """The ``inputs`` entry of ``fit.json``: what rebuilds the designs' inputs on load."""
    files = []
    if any(d.doses for d in r.designs):
        files.append("doses.csv")
    if any(d.covariates for d in r.designs):
        files.append("covariates.csv")
    return {
        "dose_records": [bool(d.dose_records) for d in r.designs],
        "conditions": [{"name": c.name, "parameters": [list(p) for p in c.parameters],
                        "doses": [_dose_dict(x) for x in c.doses],
                        "description": c.description}
                       for c in getattr(r, "conditions", ()) or ()],
        "files": files,
        # each subject's time-to-event record ([survival]): kind, time, lower, entry
        **({"survival": [None if d.survival is None else
                         [int(d.survival.kind), _json_float(d.survival.time),
                          _json_float(d.survival.lower), _json_float(d.survival.entry)]
                         for d in r.designs]}
           if any(getattr(d, "survival", None) is not None for d in r.designs) else {}),
        **({"survival_spec": dataclasses.asdict(r.survival)}
           if getattr(r, "survival", None) is not None else {}),
    }


def _json_float(x: float):
    """A float for JSON (NaN as None)."""
    return None if not np.isfinite(x) else float(x)


def _write_inputs(r: FitResult, folder: Path) -> None:
    """``doses.csv`` and ``covariates.csv`` (only when some subject has doses / covariates)."""
    if any(d.doses for d in r.designs):
        with (folder / "doses.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", *_DOSE_COLUMNS])
            for d in r.designs:
                for x in d.doses:
                    w.writerow([d.id] + [_fmt(v) if isinstance(v, float | np.floating)
                                         else ("" if v is None else str(v))
                                         for v in _dose_dict(x).values()])
    if any(d.covariates for d in r.designs):
        with (folder / "covariates.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", "covariate", "time", "value"])
            for d in r.designs:
                for name, times, values in d.covariates:
                    for t, v in zip(times, values, strict=True):
                        w.writerow([d.id, name, _fmt(t), _fmt(v)])


def _fmt(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return "" if not math.isfinite(x) else repr(x)


def _cell(column: str, x) -> str:
    """A population diagnostics cell: the CENS flag as an integer (0, 1, -1), numbers as
    :func:`_fmt`."""
    if column == "CENS" and x is not None and math.isfinite(float(x)):
        return str(int(x))
    return _fmt(x)


def _clean(obj):
    """JSON-safe: arrays to lists, NaN/inf to null, tuples to lists, numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ============================================================================ loading


def _arr(x, dtype=float):
    return np.array(x, dtype=dtype) if x is not None else None


def _read_document(folder: Path) -> tuple[Path, dict]:
    path = folder / "fit.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise FitError(f"{folder}: not a saved fit (cannot read fit.json: "
                       f"{exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise FitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FitError(f"{path}: expected a JSON object with key 'format', found a "
                       f"{type(doc).__name__}")
    found = doc.get("format")
    if found not in READABLE:
        expected = " or ".join(repr(f) for f in READABLE)
        if isinstance(found, str) and found.startswith("progression-fit/"):
            raise FitError(f"{path}: fit format version {found!r} is not one this progression "
                           f"reads (expected {expected}); it was written by another "
                           "(newer?) progression: load it with that version, or fit again")
        raise FitError(f"{path}: not a progression fit: key 'format' is {found!r}, expected "
                       f"{expected}")
    return path, doc


def load_fit(folder) -> FitResult:
    """Restore a saved fit of any readable format version (see the module docstring)."""
    from ..model import compile_model, parse_model
    from .estimators.base import normalised_residuals

    folder = Path(folder)
    path, doc = _read_document(folder)
    legacy = doc["format"] == "progression-fit/1"
    text = doc["model"]["text"]
    if not text:
        raise FitError(f"{path}: the model text is missing (a Python model cannot be restored "
                       "from a saved fit)")
    model = compile_model(parse_model(text, source=doc["model"]["source"] or str(path)))
    params = []
    for p in doc["parameters"]:
        p = dict(p)
        for key in ("lower", "upper"):
            if p[key] is None:
                p[key] = -math.inf if key == "lower" else math.inf
        params.append(FitParameter(**p))
    subjects = tuple(doc["subjects"])
    observables = tuple(doc["observables"])
    m = len(subjects)
    solver = dict(doc["solver"])
    if solver.get("max_step") is None:
        solver["max_step"] = math.inf
    rows = _read_designs(folder / "data.csv", subjects, observables)
    values = [np.array([np.nan])] * m
    designs = []
    inputs = doc.get("inputs") or {}
    conditions = []
    for j, c in enumerate(inputs.get("conditions") or ()):
        try:
            conditions.append(_condition(c))
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"{path}: key 'inputs.conditions[{j}]': expected a table with name, "
                           f"parameters ([name, value] pairs), doses and description, found "
                           f"{json.dumps(c)[:120]} ({type(exc).__name__}: {exc})") from None
    conditions = tuple(conditions)
    if rows:
        values = [d.pop("prediction") for d in rows]
        doses = _read_doses(folder / "doses.csv", subjects, path, inputs)
        covariates = _read_covariates(folder / "covariates.csv", subjects, path, inputs)
        records = inputs.get("dose_records") or [False] * m
        survival = inputs.get("survival") or [None] * m
        designs = [Design(**d, doses=doses[d["id"]], dose_records=bool(records[i]),
                          covariates=covariates[d["id"]], survival=_survival_record(survival[i]))
                   for i, d in enumerate(rows)]
    est, scale = doc["estimates"], doc["estimation_scale"]
    theta = _arr(est["theta"])
    estimates = Estimates(theta=theta, x_hat=_arr(scale["x_hat"]),
                          x_cols=np.array(scale["x_cols"], dtype=int),
                          x_rows=[np.array(r, dtype=int) for r in scale["x_rows"]])
    intervals = {k: _arr(v) for k, v in doc["intervals"].items()}
    # version 1 did not name the methods or say whether the covariance was joint: its two
    # estimators were individual (one block per subject) and pooled (one joint block)
    methods = doc.get("interval_methods") or {k: INTERVAL_METHODS.get(k, k) for k in intervals}
    joint = doc["kind"] == "pooled" if legacy else bool(doc.get("joint_covariance"))
    profiles = doc.get("profiles")
    if profiles:
        profiles = Profiles(cols=np.array(profiles["cols"], dtype=int),
                            values=_arr(profiles["values"]), m2ll=_arr(profiles["m2ll"]),
                            joint=bool(profiles.get("pooled", False)))
    boot = doc.get("bootstrap")
    if boot:
        boot = BootstrapDraws(cols=_arr(boot["cols"], int), estimates=_arr(boot["estimates"]))
    warns = list(doc["warnings"])
    n_diag = int(doc.get("diagnostic_warnings", len(warns)))
    uncertainty = Uncertainty(
        se=_arr(est["se"]), intervals=intervals, methods=dict(methods),
        open_intervals={k: np.array(v, dtype=bool) for k, v in doc["open_intervals"].items()},
        blocks=[(np.array(b["entries"], dtype=int),
                 _arr(b["covariance"]).reshape(len(b["entries"]), len(b["entries"])))
                for b in scale["blocks"]],
        joint=joint, profiles=profiles or None, bootstrap=boot or None,
        warnings=tuple(warns[n_diag:]))
    diagnostics = Diagnostics(
        subject_objective=_arr(doc["subject_objective"]),
        n_obs=np.array(doc["n_obs"], dtype=int), converged=np.array(doc["converged"], bool),
        messages=tuple(doc["messages"]), failures=tuple(doc.get("failures") or [""] * m),
        nfev=np.array(doc["nfev"], dtype=int), starts_objective=_arr(doc["starts_objective"]),
        best_start=np.array(doc["best_start"], dtype=int),
        before_zero=np.array(doc.get("before_zero") or [0] * m, dtype=int),
        numbers_from=doc["provenance"].get("numbers_from", ""),
        method=doc.get("method", ""), work=Work.from_dict(doc.get("counters") or {}),
        warnings=tuple(warns[:n_diag]))
    population = doc.get("population")
    if population is not None:
        population = PopulationPart.from_dict(population)
    result = FitResult(
        name=doc["name"], kind=doc.get("estimator", doc["kind"]), model=model,
        subject_ids=subjects, parameters=tuple(params), observables=observables,
        error_models=tuple(doc["error_models"]), solver=solver,
        confidence=float(doc["confidence"]), designs=designs,
        model_predictions=Predictions(values, []),
        individual=IndividualPart(estimates, uncertainty, diagnostics),
        population=population, timings=doc["timings"], provenance=doc["provenance"],
        **({"conditions": conditions} if conditions else {}),
        **({"survival": _survival_spec(inputs["survival_spec"])}
           if inputs.get("survival_spec") else {}))
    # the residuals are recomputed from the data and predictions, as the fit computed them
    res = normalised_residuals(result.problem, designs, theta, values) if designs else []
    return dataclasses.replace(result, model_predictions=Predictions(values, res))


def _read_designs(path: Path, subjects, observables):
    if not path.is_file():
        return []
    rows: dict[str, list] = {s: [] for s in subjects}
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows[r["subject"]].append(r)

    def num(x):
        return float(x) if x != "" else np.nan

    out = []
    for s in subjects:
        rs = rows[s]
        out.append({
            "id": s,
            "time": np.array([num(r["time"]) for r in rs]),
            "obs": np.array([observables.index(r["observable"]) for r in rs], dtype=int),
            "value": np.array([num(r["value"]) for r in rs]),
            "cens": np.array([int(r["cens"]) for r in rs], dtype=int),
            "limit": np.array([num(r["limit"]) for r in rs]),
            "offset_covariate": num(rs[0]["offset_covariate"]) if rs else 0.0,
            "prediction": np.array([num(r["prediction"]) for r in rs]),
            # columns added within format 2: absent in older files (no condition, no SD)
            "condition": _column(rs, "condition", str, lambda a: (a != "").any()),
            "sd": _column(rs, "sd", num, lambda a: np.isfinite(a).any()),
        })
    return out


def _column(rs, key, convert, present):
    """A data.csv column as an array, or None when absent or empty (as the fit had it)."""
    if not rs or key not in rs[0]:
        return None
    a = np.array([convert(r[key]) for r in rs])
    return a if present(a) else None


def _condition(c: dict) -> Condition:
    return Condition(str(c["name"]), tuple((str(k), float(v)) for k, v in c["parameters"]),
                     tuple(_dose(x) for x in c["doses"]), str(c.get("description", "")))


def _target(x):
    """A dose target as written: a compartment number, a state name, or the default."""
    if x is None or x == "":
        return None
    if isinstance(x, int) or (isinstance(x, str) and x.lstrip("-").isdigit()):
        return int(x)
    return str(x)


def _dose(x: dict) -> Dose:
    return Dose(time=float(x["time"]), amount=float(x["amount"]), target=_target(x["target"]),
                rate=float(x["rate"]), duration=float(x["duration"]),
                addl=int(float(x["addl"])), ii=float(x["ii"]), ss=int(float(x["ss"])),
                evid=int(float(x["evid"])))


def _required(path: Path, fit_json: Path, inputs: dict) -> bool:
    """Whether an input file exists; one that fit.json lists but is missing is an error."""
    if path.is_file():
        return True
    if path.name in (inputs.get("files") or ()):
        raise FitError(f"{path}: missing, but {fit_json} says the fit had {path.stem} (the "
                       "saved fit is incomplete; save it again)")
    return False


def _rows(path: Path, columns, subjects, fit_json: Path):
    """The rows of an input file with their row numbers; a missing column or a subject the
    fit does not have is a FitError naming the file (and row)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise FitError(f"{path}: expected columns {', '.join(columns)}, found "
                           f"{', '.join(reader.fieldnames or ()) or 'none'} (missing "
                           f"{', '.join(missing)})")
        for n, r in enumerate(reader, start=2):
            if r["subject"] not in subjects:
                raise FitError(f"{path}, row {n}: subject {r['subject']!r} is not one of the "
                               f"fit's subjects ({fit_json})")
            yield n, r


def _convert(path: Path, n: int, r: dict, make):
    """``make(r)``; a value that is not a number is a FitError naming file, row and column."""
    try:
        return make(r)
    except ValueError:
        bad = [k for k, v in r.items() if k not in ("subject", "covariate", "target")
               and not _is_number(v)]
        raise FitError(f"{path}, row {n}: expected a number in column "
                       f"{', '.join(repr(k) for k in bad) or '?'}, found "
                       f"{', '.join(repr(r[k]) for k in bad) or '?'}") from None


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _read_doses(path: Path, subjects, fit_json: Path, inputs: dict) -> dict:
    out: dict[str, list] = {s: [] for s in subjects}
    if _required(path, fit_json, inputs):
        for n, r in _rows(path, ("subject", *_DOSE_COLUMNS), out, fit_json):
            out[r["subject"]].append(_convert(path, n, r, _dose))
    return {s: tuple(v) for s, v in out.items()}


def _read_covariates(path: Path, subjects, fit_json: Path, inputs: dict) -> dict:
    out: dict[str, dict] = {s: {} for s in subjects}
    if _required(path, fit_json, inputs):
        for n, r in _rows(path, ("subject", "covariate", "time", "value"), out, fit_json):
            tv = _convert(path, n, r, lambda r: (float(r["time"]), float(r["value"])))
            t, v = out[r["subject"]].setdefault(r["covariate"], ([], []))
            t.append(tv[0])
            v.append(tv[1])
    # the file keeps each design's order of covariates (insertion order of the dict)
    return {s: tuple((name, np.array(t), np.array(v)) for name, (t, v) in d.items())
            for s, d in out.items()}


def _survival_record(entry):
    """A design's survival record from ``inputs.survival`` of fit.json (None: none)."""
    if entry is None:
        return None
    from ._survival_likelihood import SurvivalRecord

    kind, time, lower, start = entry
    return SurvivalRecord(int(kind), float(time),
                          float("nan") if lower is None else float(lower),
                          float("nan") if start is None else float(start))


def _survival_spec(doc):
    """The fit's ``[survival]`` spec from ``inputs.survival_spec`` of fit.json."""
    from ._survival_likelihood import SurvivalSpec

    doc = dict(doc)
    doc["events"] = tuple(doc.get("events", ()))
    return SurvivalSpec(**doc)
