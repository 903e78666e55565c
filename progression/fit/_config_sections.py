"""Readers of the fit config's tables, one per section.

Each reader takes the problem collector (:class:`~progression.fit._config_checks._Check`) and
the parsed TOML document, adds every problem it finds to the collector and returns what the
section gives: ``[fit]``, ``[data]``, ``[error.OBSERVABLE]``, ``[parameters.NAME]`` (with the
roles of a population model, random effects and ``[parameters.NAME.covariates.COV]`` covariate
effects, read by :mod:`._config_population`), ``[omega]`` (blocks of Omega, also there),
``[estimator]``, ``[solver]``, ``[output]``; ``[conditions.NAME]`` and ``[survival]`` (the
time-to-event part of the likelihood) are read by :mod:`._config_conditions`.
:func:`progression.fit.config.parse_fit_config` calls them in that order
(so problems are always listed in that order) and builds the
:class:`~progression.fit.config.FitConfig`. Private: :mod:`progression.fit.config` is the
public entry.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import ProgressionError, did_you_mean
from ._config_checks import _bounds, _Check, _check_value_bounds_scale, _default_scale, _found
from ._config_population import anchored_offset, check_anchor_event, covariate_effects
from ._config_prior import parameter_priors
from .config import (
    _ESTIMATOR_DEFAULTS,
    _OUTPUT_DEFAULTS,
    _SOLVER_DEFAULTS,
    DATA_FORMATS,
    MAX_FAILED_SHARE,
    OFFSET,
    OPTIMIZERS,
    OUTPUT_MODES,
    POPULATION_ESTIMATORS,
    REFINE_MODES,
    ROLES,
    SENSITIVITY_MODES,
    UNCERTAINTY,
    FitParameter,
)
from .errormodels import DISTRIBUTIONS, ERROR_MODELS, T_MODELS, error_kind
from .transforms import SCALES

_FIT_KEYS = ("name", "description", "model", "estimator", "max_failed_share", "start_from")
_DATA_KEYS = ("path", "format", "mapping", "time_unit", "sidecar", "subjects")
_PARAM_KEYS = ("estimate", "value", "bounds", "scale")
_MODEL_PARAM_KEYS = (*_PARAM_KEYS, "eta", "eta_fixed", "value_fixed", "covariates", "prior",
                     "eta_prior")
#: Default bounds of a categorical coefficient c: the category's typical value TV (1 + c)
#: stays positive.
_OFFSET_KEYS = (*_MODEL_PARAM_KEYS, "covariate", "factor", "anchor")
_ERROR_PARAM_KEYS = _PARAM_KEYS


def fit_table(chk: _Check, doc: dict, name, base_dir: Path):
    """``[fit]``: name, description, estimator, failed share and the model (loaded).

    Returns
    -------
    tuple
        ``(fit_name, description, estimator, max_failed_share, model, model_ref)``.
    """
    fit = chk.table("fit", doc.get("fit"))
    if "fit" not in doc:
        chk.add("fit", "the [fit] table is required (with at least 'model')")
    chk.unknown("fit", fit, _FIT_KEYS)
    fit_name = chk.string("fit.name", fit.get("name")) or name or "fit"
    if fit_name and any(c in fit_name for c in "/\\") or fit_name in (".", ".."):
        chk.add("fit.name", f"expected a plain name (used as folder name), found {fit_name!r}")
    description = chk.string("fit.description", fit.get("description")) or ""
    # the registry itself (imported here: it imports the config module), so that registering an
    # estimator is all it takes for a config to name it
    from .estimators import ESTIMATORS as registry

    estimator = chk.string("fit.estimator", fit.get("estimator", "individual"), tuple(registry))
    max_failed_share = MAX_FAILED_SHARE
    if "max_failed_share" in fit:
        v = chk.number("fit.max_failed_share", fit["max_failed_share"])
        if v is not None and not 0.0 <= v <= 1.0:
            chk.add("fit.max_failed_share", f"expected a share between 0 and 1, found {v:g}")
        elif v is not None:
            max_failed_share = v
    model_text = chk.string("fit.model", fit.get("model"), required="fit" in doc)
    model = None
    model_ref = ""
    if model_text:
        model_ref = model_text
        if model_text.endswith(".toml") or "/" in model_text or "\\" in model_text:
            model_path = Path(os.path.normpath(base_dir / model_text))
            model_ref = str(model_path)
            if not model_path.is_file():
                chk.add("fit.model", f"model file {model_path} does not exist")
                model_ref = ""
        if model_ref:
            from ..model import load_model

            try:
                model = load_model(model_ref)
            except ProgressionError as exc:
                chk.add("fit.model", f"cannot load the model: {exc}")
    return fit_name, description, estimator, max_failed_share, model, model_ref


def start_table(chk: _Check, doc: dict, base_dir: Path, parameters: tuple) -> tuple:
    """``[fit] start_from``: the folder of an earlier population fit (relative to the config)
    whose estimates become the starting values (:func:`progression.fit._start.start_values`);
    returns the parameters, changed or not."""
    fit = doc.get("fit") if isinstance(doc.get("fit"), dict) else {}
    if "start_from" not in fit or not parameters:
        return parameters
    text = chk.string("fit.start_from", fit["start_from"])
    if not text:
        return parameters
    from ..errors import ProgressionError
    from ._start import start_values
    from .result import load_fit

    folder = Path(os.path.normpath(base_dir / text))
    if not (folder / "fit.json").is_file():
        chk.add("fit.start_from", f"expected the folder of a saved fit (with fit.json), "
                                  f"found {'no such folder' if not folder.exists() else 'none'}"
                                  f" at {folder}")
        return parameters
    try:
        return start_values(parameters, load_fit(folder), where=str(folder))[0]
    except ProgressionError as exc:
        chk.add("fit.start_from", str(exc))
        return parameters


def data_table(chk: _Check, doc: dict, base_dir: Path, check_data: bool) -> dict:
    """``[data]``: the data file (resolved), format, mapping, time unit, sidecar, subjects."""
    data = chk.table("data", doc.get("data"))
    if "data" not in doc and check_data:
        chk.add("data", "the [data] table is required (with at least 'path')")
    chk.unknown("data", data, _DATA_KEYS)
    data_out: dict = {"path": None, "format": None, "mapping": None, "time_unit": None,
                      "sidecar": None, "subjects": None}
    dpath = chk.string("data.path", data.get("path"), required="data" in doc and check_data)
    if dpath:
        resolved = Path(os.path.normpath(base_dir / dpath))
        if check_data and not resolved.exists():
            chk.add("data.path", f"data file {resolved} does not exist")
        data_out["path"] = resolved
    data_out["format"] = chk.string("data.format", data.get("format"), DATA_FORMATS)
    if "mapping" in data:
        data_out["mapping"] = chk.table("data.mapping", data["mapping"]) or None
    data_out["time_unit"] = chk.string("data.time_unit", data.get("time_unit"))
    if data_out["time_unit"] is not None:
        from ..data._units import _ALIASES, canonical_time_unit

        if canonical_time_unit(data_out["time_unit"]) is None:
            names = sorted(set(_ALIASES.values()))
            chk.add("data.time_unit", f"unknown time unit {data_out['time_unit']!r}"
                                      f"{did_you_mean(data_out['time_unit'], _ALIASES)} "
                                      f"(units: {', '.join(names)})")
            data_out["time_unit"] = None
    if "sidecar" in data:
        sc = data["sidecar"]
        if isinstance(sc, bool):
            data_out["sidecar"] = sc
        elif isinstance(sc, str):
            data_out["sidecar"] = base_dir / sc
        else:
            chk.add("data.sidecar", f"expected a path or false, found {_found(sc)}")
    if "subjects" in data:
        subj = data["subjects"]
        if not isinstance(subj, list) or not subj or not all(isinstance(s, str | int)
                                                            and not isinstance(s, bool)
                                                            for s in subj):
            chk.add("data.subjects", f"expected a non-empty array of subject identifiers, "
                                     f"found {_found(subj)}")
        else:
            data_out["subjects"] = tuple(str(s) for s in subj)
    return data_out


def error_tables(chk: _Check, doc: dict, model) -> tuple[dict, list]:
    """``[error.OBSERVABLE]``: observable -> error model name, and the error parameters."""
    errors_doc = chk.table("error", doc.get("error"))
    errors: dict[str, str] = {}
    error_params: list[FitParameter] = []
    if not errors_doc and "error" not in doc:
        chk.add("error", "expected at least one [error.OBSERVABLE] table (the observables to "
                         "fit and their error models)")
    model_obs = tuple(model.observable_names) if model is not None else None
    for obs, spec in errors_doc.items():
        key = f"error.{obs}"
        if model_obs is not None and obs not in model_obs:
            hint = did_you_mean(obs, model_obs)
            chk.add(key, f"model '{model.name}' has no observable '{obs}' (observables: "
                         f"{', '.join(model_obs)}){hint}")
        if not isinstance(spec, dict):
            chk.add(key, f"expected a table with 'model' and its parameters, found "
                         f"{_found(spec)}")
            continue
        kind = chk.string(f"{key}.model", spec.get("model"), tuple(ERROR_MODELS), required=True)
        if kind is None:
            continue
        names = ERROR_MODELS[kind]
        chk.unknown(key, spec, ("model", "distribution", "df", *names))
        errors[obs] = _distribution(chk, doc, key, kind, spec)
        for pname in names:
            pkey = f"{key}.{pname}"
            if pname not in spec:
                chk.add(pkey, f"the {kind} error model needs '{pname}' (a number, or a table "
                              f"with value, estimate, bounds, scale)")
                continue
            p = _error_parameter(chk, pkey, obs, pname, spec[pname])
            if p is not None:
                error_params.append(p)
    return errors, error_params


#: Estimators whose likelihood takes a Student-t residual. Laplace's objective is the exact
#: conditional likelihood (its Hessian the t's own); FOCE-I's uses the expected information
#: of a normal residual, FOCE and FO the normal's linearisation (NONMEM's definitions), so
#: they keep to normal residuals.
T_ESTIMATORS = ("individual", "pooled", "saem", "laplace")


def _distribution(chk: _Check, doc: dict, key: str, kind: str, spec: dict) -> str:
    """``distribution`` and ``df`` of ``[error.OBS]``: the error model's kind string
    (:func:`~progression.fit.errormodels.error_kind`: ``kind``, or ``"kind:t(df)"``)."""
    dist = chk.string(f"{key}.distribution", spec.get("distribution", "normal"),
                      DISTRIBUTIONS)
    if dist is None:
        return kind
    if dist == "normal":
        if "df" in spec:
            chk.add(f"{key}.df", f"degrees of freedom belong to distribution = \"t\"; "
                                 f"expected no df with distribution = \"normal\", found "
                                 f"df = {spec['df']!r}")
        return kind
    if kind not in T_MODELS:
        chk.add(f"{key}.distribution", f"a Student-t residual needs an error model with a "
                                       f"scale ({', '.join(T_MODELS)}); found model = "
                                       f"{kind!r}")
        return kind
    if "df" not in spec:
        chk.add(f"{key}.df", "distribution = \"t\" needs its degrees of freedom (a number > 0, "
                             "e.g. df = 3; held fixed)")
        return kind
    df = chk.number(f"{key}.df", spec["df"], positive=True)
    if df is None:
        return kind
    if df > 1e6:
        chk.add(f"{key}.df", f"expected degrees of freedom <= 1e6 (use distribution = "
                             f"\"normal\" for a normal residual), found {df:g}")
        return kind
    fit = doc.get("fit") if isinstance(doc.get("fit"), dict) else {}
    est_name = fit.get("estimator", "individual")
    if isinstance(est_name, str) and est_name not in T_ESTIMATORS:
        chk.add(f"{key}.distribution", f"a Student-t residual is not available with "
                                       f"fit.estimator = {est_name!r} (its objective is "
                                       f"the normal's linearisation); expected one of "
                                       f"{', '.join(repr(e) for e in T_ESTIMATORS)}")
    est = doc.get("estimator") if isinstance(doc.get("estimator"), dict) else {}
    if est.get("saem_covariance") in ("focei", "linearization"):
        chk.add(f"{key}.distribution", f"a Student-t residual is not available with "
                                       f"estimator.saem_covariance = "
                                       f"\"{est['saem_covariance']}\" (FOCE-I's objective "
                                       f"linearises a normal residual); expected \"sa\" or "
                                       f"\"sandwich\"")
    wanted = est.get("uncertainty", ())
    wanted = [wanted] if isinstance(wanted, str) else wanted     # one method as a string
    if isinstance(wanted, list | tuple) and "bootstrap" in wanted and \
            est_name in ("individual", "pooled"):
        chk.add(f"{key}.distribution", "a Student-t residual is not available with "
                                       "estimator.uncertainty 'bootstrap' (the parametric "
                                       "bootstrap draws normal residuals); expected "
                                       "'covariance' or 'profile'")
    return error_kind(kind, "t", df)


def parameter_tables(chk: _Check, doc: dict, model, estimator, errors: dict,
                     error_params: list) -> tuple:
    """``[parameters.NAME]``: every model parameter (model order), the time offset, then the
    error parameters; roles checked against the estimator."""
    params_doc = chk.table("parameters", doc.get("parameters"))
    model_params: list[FitParameter] = []
    offset = FitParameter(OFFSET, "offset", "fixed", 0.0, -math.inf, math.inf, "linear")
    if model is not None:
        names = tuple(model.parameter_names)
        for pname in params_doc:
            if pname != OFFSET and pname not in names:
                hint = did_you_mean(pname, (*names, OFFSET))
                chk.add(f"parameters.{pname}", f"model '{model.name}' has no parameter "
                                               f"'{pname}'{hint}")
        for j, pname in enumerate(names):
            lo, hi = (float(b) for b in model.bounds[j])
            spec = params_doc.get(pname)
            if spec is None:
                model_params.append(FitParameter(pname, "model", "fixed",
                                                 float(model.defaults[j]), lo, hi,
                                                 _default_scale(lo, "linear")))
                continue
            p = _parameter(chk, f"parameters.{pname}", pname, "model", spec,
                           float(model.defaults[j]), (lo, hi))
            if p is not None:
                model_params.append(p)
    if OFFSET in params_doc:
        p = _parameter(chk, f"parameters.{OFFSET}", OFFSET, "offset", params_doc[OFFSET], 0.0,
                       None)
        if p is not None:
            offset = p
        if p is not None and p.anchor is not None and model is not None:
            check_anchor_event(chk, f"parameters.{OFFSET}.anchor", p.anchor, model)

    parameters = tuple(model_params) + (offset,) + tuple(error_params)
    # nothing estimated is allowed: the fit evaluates -2 log L at the given values (fixed.py)
    if estimator == "individual":
        for p in parameters:
            if p.estimate == "shared":
                chk.add(_key_of(p), "estimate = \"shared\" needs fit.estimator = \"pooled\" "
                                    "(an individual fit estimates each subject separately)")
    _check_population(chk, estimator, parameters, errors)
    return parameters


#: Estimators that take ``[estimator] importance_ofv`` (SAEM's OFV is the importance-sampling
#: one already).
IMPORTANCE_ESTIMATORS = ("focei", "foce", "fo", "laplace")


def _importance_ofv(chk: _Check, doc: dict, value, options: dict) -> None:
    """``importance_ofv``: true or false, for the FOCE family."""
    key = "estimator.importance_ofv"
    if not isinstance(value, bool):
        chk.add(key, f"expected true or false, found {_found(value)}")
        return
    fit = doc.get("fit") if isinstance(doc.get("fit"), dict) else {}
    name = fit.get("estimator", "individual")
    if value and name not in IMPORTANCE_ESTIMATORS:
        why = (" (SAEM's OFV is the importance-sampling one already)" if name == "saem"
               else " (no random effects to integrate over)")
        chk.add(key, f"the importance-sampling OFV is for fit.estimator = "
                     f"{', '.join(repr(e) for e in IMPORTANCE_ESTIMATORS)}, found {name!r}"
                     f"{why}")
        return
    options["importance_ofv"] = value


def estimator_table(chk: _Check, doc: dict, max_failed_share: float, model=None) -> dict:
    """``[estimator]``: the estimator options, with ``max_failed_share`` from ``[fit]``."""
    est = chk.table("estimator", doc.get("estimator"))
    chk.unknown("estimator", est, tuple(_ESTIMATOR_DEFAULTS))
    options = dict(_ESTIMATOR_DEFAULTS)
    for key in ("starts", "max_nfev", "batch_size"):
        if key in est:
            options[key] = chk.integer(f"estimator.{key}", est[key], 1)
    if "seed" in est:
        options["seed"] = chk.integer("estimator.seed", est["seed"], 0)
    if "profile_points" in est:
        options["profile_points"] = chk.integer("estimator.profile_points",
                                                est["profile_points"], 4)
    if "bootstrap_samples" in est:
        options["bootstrap_samples"] = chk.integer("estimator.bootstrap_samples",
                                                   est["bootstrap_samples"], 2)
    if "bootstrap_stratify" in est:
        # a covariate name; checked against the subjects' covariates when the fit starts
        strat = chk.string("estimator.bootstrap_stratify", est["bootstrap_stratify"])
        if strat is not None:
            options["bootstrap_stratify"] = strat
    if "npde_samples" in est:
        # NPDE decorrelate each subject's observations with the simulated covariance, which
        # needs more replicates than observations; 10 is a floor, not a recommendation
        options["npde_samples"] = chk.integer("estimator.npde_samples", est["npde_samples"],
                                              10)
    # saem: iterations, chains (0 = automatic) and importance-sampling draws; 100 draws are
    # a floor below which the MC SE of the OFV is of the order of one unit
    for key, least in (("saem_exploration", 1), ("saem_smoothing", 1), ("saem_chains", 0),
                       ("is_samples", 100)):
        if key in est:
            if key in ("saem_exploration", "saem_smoothing") and est[key] == "auto":
                # exploration: the drift rule alone (at most 300); smoothing: ended when the
                # estimates and their SEs settle (at most 500)
                options[key] = "auto"
                continue
            options[key] = chk.integer(f"estimator.{key}", est[key], least)
    if "importance_ofv" in est:
        _importance_ofv(chk, doc, est["importance_ofv"], options)
    if "saem_covariance" in est:
        options["saem_covariance"] = chk.string("estimator.saem_covariance",
                                                est["saem_covariance"],
                                                ("sa", "sandwich", "focei", "linearization"))
    for key in ("ftol", "xtol", "gtol"):
        if key in est:
            options[key] = chk.number(f"estimator.{key}", est[key], positive=True)
    if "optimizer" in est:
        options["optimizer"] = chk.string("estimator.optimizer", est["optimizer"], OPTIMIZERS)
    if "confidence" in est:
        options["confidence"] = chk.number("estimator.confidence", est["confidence"],
                                           unit_interval=True)
    if "spread" in est:
        sp = est["spread"]
        if isinstance(sp, str):
            options["spread"] = chk.string("estimator.spread", sp, ("bounds",))
        else:
            options["spread"] = chk.number("estimator.spread", sp, positive=True)
    if "uncertainty" in est:
        unc = est["uncertainty"]
        if isinstance(unc, str):
            unc = [unc]
        if not isinstance(unc, list):
            chk.add("estimator.uncertainty", f"expected an array of methods ("
                                             f"{', '.join(UNCERTAINTY)}), found {_found(unc)}")
        else:
            good = []
            for u in unc:
                if chk.string("estimator.uncertainty", u, UNCERTAINTY) is not None:
                    good.append(u)
            options["uncertainty"] = ["covariance"] + [u for u in UNCERTAINTY[1:] if u in good]
    options["uncertainty"] = tuple(options["uncertainty"] or ("covariance",))
    if "profile_parameters" in est:
        # the names are checked against the population model when the fit starts
        # (progression.fit._population_profile.profile_names)
        names = est["profile_parameters"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip()
                                                  for n in names):
            chk.add("estimator.profile_parameters", f"expected an array of parameter names "
                                                    f"(\"NAME\", \"omega^2 NAME\", \"OBS.a\"), "
                                                    f"found {_found(names)}")
        else:
            options["profile_parameters"] = tuple(dict.fromkeys(n.strip() for n in names))
    options["profile_parameters"] = tuple(options["profile_parameters"])
    if "vpc_end_events" in est:
        # terminal events of the model that end a simulated patient's observations in the
        # population VPC (progression.fit.population._vpc_events)
        names = est["vpc_end_events"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list):
            chk.add("estimator.vpc_end_events", f"expected an array of the model's terminal "
                                                f"event names, found {_found(names)}")
        elif not all(isinstance(n, str) for n in names):
            odd = next(n for n in names if not isinstance(n, str))
            chk.add("estimator.vpc_end_events", f"expected an array of the model's terminal "
                                                f"event names, found {_found(odd)} in it")
        elif model is not None:
            from .population._vpc_events import end_events_problem

            problem = end_events_problem(model, names)
            if problem:
                chk.add("estimator.vpc_end_events", problem)
            else:
                options["vpc_end_events"] = tuple(dict.fromkeys(names))
    options["vpc_end_events"] = tuple(options["vpc_end_events"])
    options["max_failed_share"] = max_failed_share
    return options


def solver_table(chk: _Check, doc: dict) -> dict:
    """``[solver]``: integration method, tolerances, step limits and the output path."""
    sol = chk.table("solver", doc.get("solver"))
    chk.unknown("solver", sol, tuple(_SOLVER_DEFAULTS))
    solver = dict(_SOLVER_DEFAULTS)
    if "method" in sol:
        from ..simulate import METHODS

        solver["method"] = chk.string("solver.method", sol["method"], tuple(METHODS))
    for key in ("rtol", "atol"):
        if key in sol:
            solver[key] = chk.number(f"solver.{key}", sol[key], positive=True)
    if "grid_step" in sol:
        if isinstance(sol["grid_step"], str):
            solver["grid_step"] = chk.string("solver.grid_step", sol["grid_step"], ("auto",))
        else:
            solver["grid_step"] = chk.number("solver.grid_step", sol["grid_step"],
                                             positive=True)
    if "max_step" in sol:
        solver["max_step"] = chk.number("solver.max_step", sol["max_step"], positive=True,
                                        allow_inf=True)
    if "max_steps" in sol:
        solver["max_steps"] = chk.integer("solver.max_steps", sol["max_steps"], 10)
    if "outputs" in sol:
        solver["outputs"] = chk.string("solver.outputs", sol["outputs"], OUTPUT_MODES)
    if "sensitivities" in sol:
        solver["sensitivities"] = chk.string("solver.sensitivities", sol["sensitivities"],
                                             SENSITIVITY_MODES)
    if "refine" in sol:
        solver["refine"] = chk.string("solver.refine", sol["refine"], REFINE_MODES)
    if "grid_error" in sol:
        # bound on a row's grid interpolation error in -2 log L above which the row is
        # evaluated on the exact path (inf: no error control)
        solver["grid_error"] = chk.number("solver.grid_error", sol["grid_error"],
                                          positive=True, allow_inf=True)
    if "per_subject_steps" in sol:
        if isinstance(sol["per_subject_steps"], bool):
            solver["per_subject_steps"] = sol["per_subject_steps"]
        else:
            chk.add("solver.per_subject_steps",
                    f"expected true or false, found {_found(sol['per_subject_steps'])}")
    return solver


def output_table(chk: _Check, doc: dict, base_dir: Path) -> dict:
    """``[output]``: the output folder (resolved, or None) and ``figures``."""
    out = chk.table("output", doc.get("output"))
    chk.unknown("output", out, tuple(_OUTPUT_DEFAULTS))
    output = dict(_OUTPUT_DEFAULTS)
    if "folder" in out:
        folder = chk.string("output.folder", out["folder"])
        output["folder"] = Path(os.path.normpath(base_dir / folder)) if folder else None
    if "figures" in out:
        if isinstance(out["figures"], bool):
            output["figures"] = out["figures"]
        else:
            chk.add("output.figures", f"expected true or false, found {_found(out['figures'])}")
    return output


def _check_population(chk: _Check, estimator, parameters, errors) -> None:
    """Roles of a population model: ``estimate = "population"`` only with a population
    estimator, which in turn takes no per-subject or shared model parameters."""
    if estimator is None and chk.failed("fit.estimator"):
        return                     # refused by name already; "found None" would only repeat it
    population = estimator in POPULATION_ESTIMATORS
    if not population:
        for p in parameters:
            if p.estimate == "population":
                chk.add(f"{_key_of(p)}.estimate",
                        f"estimate = \"population\" needs a population estimator (fit.estimator "
                        f"= {' or '.join(repr(e) for e in POPULATION_ESTIMATORS)}), found "
                        f"fit.estimator = {estimator!r}")
        return
    for p in parameters:
        if p.kind == "error":
            if p.estimate == "subject":
                chk.add(f"{_key_of(p)}.estimate",
                        f"fit.estimator = {estimator!r} estimates one residual error for the "
                        "population: expected estimate = \"population\" (or \"shared\") or "
                        "\"fixed\", found \"subject\"")
        elif p.estimate in ("subject", "shared"):
            chk.add(f"{_key_of(p)}.estimate",
                    f"fit.estimator = {estimator!r} fits a population model: expected estimate = "
                    f"\"population\" (a typical value, with 'eta' for a random effect) or "
                    f"\"fixed\", found {p.estimate!r}")
    if not any(p.eta is not None for p in parameters) and not chk.failed("parameters"):
        chk.add("parameters", f"fit.estimator = {estimator!r} needs at least one parameter "
                              "with estimate = \"population\" and a random effect (eta = "
                              "<variance>)")
    for obs, kind in errors.items():
        if kind == "measured":
            chk.add(f"error.{obs}.model", f"fit.estimator = {estimator!r} supports additive, "
                                          "proportional, combined and lognormal error "
                                          "models, found \"measured\"")


def _key_of(p: FitParameter) -> str:
    if p.kind == "error":
        return f"error.{p.observable}.{p.key}"
    return f"parameters.{p.name}"


def _parameter(chk: _Check, key: str, name: str, kind: str, spec, default: float,
               default_bounds) -> FitParameter | None:
    if not isinstance(spec, dict):
        chk.add(key, f"expected a table (estimate, value, bounds, scale), found {_found(spec)}")
        return None
    n_before = len(chk.problems)
    chk.unknown(key, spec, _OFFSET_KEYS if kind == "offset" else _MODEL_PARAM_KEYS)
    if kind == "offset" and "anchor" in spec:
        return anchored_offset(chk, key, name, spec, n_before)
    estimate = chk.string(f"{key}.estimate", spec.get("estimate", "fixed"), ROLES)
    eta = None
    if "eta" in spec:
        # the variance of the random effect on the estimation scale (Omega diagonal)
        eta = chk.number(f"{key}.eta", spec["eta"])
        if eta is not None and eta <= 0:
            chk.add(f"{key}.eta", f"expected a positive variance (the random effect's "
                                  f"Omega diagonal element), found {eta:g}; omit 'eta' for "
                                  "no random effect")
        elif eta is not None and estimate is not None and estimate != "population":
            chk.add(f"{key}.eta", f"a random effect needs estimate = \"population\", found "
                                  f"estimate = {estimate!r}")
    eta_fixed = False
    if "eta_fixed" in spec:
        if not isinstance(spec["eta_fixed"], bool):
            chk.add(f"{key}.eta_fixed", f"expected true or false, found "
                                        f"{_found(spec['eta_fixed'])}")
        elif "eta" not in spec:
            chk.add(f"{key}.eta_fixed", "a fixed random-effect variance needs its value: "
                                        "expected 'eta = <variance>' too")
        else:
            eta_fixed = spec["eta_fixed"]
    value_fixed = False
    if "value_fixed" in spec:
        # a typical value held while its random effect is estimated (THETA FIX)
        if not isinstance(spec["value_fixed"], bool):
            chk.add(f"{key}.value_fixed", f"expected true or false, found "
                                          f"{_found(spec['value_fixed'])}")
        elif spec["value_fixed"] and estimate is not None and estimate != "population":
            chk.add(f"{key}.value_fixed", f"a held typical value needs estimate = "
                                          f"\"population\", found estimate = {estimate!r}")
        elif spec["value_fixed"] and "eta" not in spec:
            chk.add(f"{key}.value_fixed", "a held typical value without a random effect is "
                                          "a fixed parameter: expected 'eta = <variance>' "
                                          "too, or estimate = \"fixed\" instead")
        elif spec["value_fixed"] and "value" not in spec:
            chk.add(f"{key}.value_fixed", "the held typical value needs its value: expected "
                                          "'value = <typical value>' too")
        else:
            value_fixed = spec["value_fixed"]
    covariates = ()
    if "covariates" in spec:
        if estimate is not None and estimate != "population":
            chk.add(f"{key}.covariates", f"covariate effects act on a typical value: expected "
                                         f"estimate = \"population\", found estimate = "
                                         f"{estimate!r}")
        else:
            covariates = covariate_effects(chk, f"{key}.covariates", name,
                                            spec["covariates"])
    value = default
    if "value" in spec:
        v = chk.number(f"{key}.value", spec["value"])
        value = v if v is not None else default
    elif kind == "offset" and estimate in ("subject", "shared"):
        chk.add(f"{key}.value", "the time offset needs a starting value")
    bounds = default_bounds
    if "bounds" in spec:
        bounds = _bounds(chk, f"{key}.bounds", spec["bounds"])
    elif default_bounds is None:
        bounds = (-math.inf, math.inf)
        if estimate in ("subject", "shared"):
            chk.add(f"{key}.bounds", "an estimated time offset needs bounds [lower, upper]")
            bounds = None
    covariate, factor = None, 1.0
    if kind == "offset":
        if "covariate" in spec:
            covariate = chk.string(f"{key}.covariate", spec["covariate"])
        if "factor" in spec:
            f = chk.number(f"{key}.factor", spec["factor"])
            factor = f if f is not None else 1.0
            if covariate is None and "covariate" not in spec:
                chk.add(f"{key}.factor", "a factor needs a covariate")
    scale = "linear"
    if bounds is not None:
        scale = _default_scale(bounds[0], "linear")
    if "scale" in spec:
        scale = chk.string(f"{key}.scale", spec["scale"], SCALES) or scale
    if kind == "model" and default_bounds is not None and default_bounds[0] >= 0:
        # the model documents a non-negative parameter (a rate, a hazard): never below 0
        doc = f"model documents {name} in [{default_bounds[0]:g}, {default_bounds[1]:g}]"
        if bounds is not None and bounds[0] < 0:
            chk.add(f"{key}.bounds", f"{doc}, so it cannot be negative; expected a lower "
                                     f"bound >= 0, found {bounds[0]:g}")
            bounds = None
        if "value" in spec and value < 0:
            chk.add(f"{key}.value", f"{doc}, so it cannot be negative; found {value:g}")
    if bounds is not None and estimate is not None:
        # a fixed value may leave the model's plausible range, not bounds the config states
        check_value = estimate != "fixed" or "bounds" in spec
        _check_value_bounds_scale(chk, key, value, bounds, scale, estimate != "fixed",
                                  check_value and ("value" in spec or kind != "offset"))
    prior, eta_prior = parameter_priors(chk, key, spec, estimate=estimate,
                                        value_fixed=value_fixed, eta_fixed=eta_fixed,
                                        bounds=bounds, scale=scale)
    if len(chk.problems) > n_before or estimate is None or bounds is None:
        return None
    return FitParameter(name, kind, estimate, value, bounds[0], bounds[1], scale,
                        covariate=covariate, factor=factor, eta=eta, eta_fixed=eta_fixed,
                        covariates=covariates, value_fixed=value_fixed, prior=prior,
                        eta_prior=eta_prior)


def _error_parameter(chk: _Check, key: str, obs: str, pname: str, spec) -> FitParameter | None:
    name = f"{obs}.{pname}"
    if not isinstance(spec, dict):
        v = chk.number(key, spec, positive=True)
        if v is None:
            return None
        return FitParameter(name, "error", "fixed", v, 0.0, math.inf, "log", observable=obs,
                            key=pname)
    n_before = len(chk.problems)
    chk.unknown(key, spec, _ERROR_PARAM_KEYS)
    estimate = chk.string(f"{key}.estimate", spec.get("estimate", "fixed"), ROLES)
    if "value" not in spec:
        chk.add(f"{key}.value", "is required (the value, or the starting value if estimated)")
        return None
    value = chk.number(f"{key}.value", spec["value"], positive=True)
    if value is None:
        return None
    bounds = (value / 1000.0, value * 1000.0)
    if "bounds" in spec:
        bounds = _bounds(chk, f"{key}.bounds", spec["bounds"])
    scale = chk.string(f"{key}.scale", spec.get("scale", "log"), SCALES) or "log"
    if bounds is not None:
        if bounds[0] < 0:
            chk.add(f"{key}.bounds", f"error parameters are positive; expected a lower bound "
                                     f">= 0, found {bounds[0]:g}")
        _check_value_bounds_scale(chk, key, value, bounds, scale, estimate != "fixed")
    if len(chk.problems) > n_before or estimate is None or bounds is None:
        return None
    return FitParameter(name, "error", estimate, value, bounds[0], bounds[1], scale,
                        observable=obs, key=pname)
