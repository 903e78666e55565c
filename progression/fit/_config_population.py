"""Readers of the population-model parts of a fit config: the covariate effects of a
parameter (``[parameters.NAME.covariates.COV]``) and ``[omega]`` (blocks, full Omega, fixed
blocks). Called by :mod:`progression.fit._config_sections`; problems go to the same collector,
so they are listed with every other problem of the config.
"""

from __future__ import annotations

import math

from ..errors import did_you_mean
from ._config_checks import _bounds, _Check, _found
from .config import POPULATION_ESTIMATORS, STRUCTURED_ESTIMATORS, FitParameter

__all__ = ["covariate_effects", "omega_table"]

_COVARIATE_KEYS = ("effect", "reference", "value", "estimate", "bounds", "levels", "groups")
_OMEGA_KEYS = ("blocks", "full")
_BLOCK_KEYS = ("parameters", "covariances", "fixed")
_CATEGORICAL_BOUNDS = (-0.999, math.inf)


def covariate_effects(chk: _Check, key: str, pname: str, table) -> tuple:
    """``[parameters.NAME.covariates.COV]`` tables -> CovariateEffect objects."""
    from .population._model import EFFECTS, CovariateEffect, level_key

    table = chk.table(key, table)
    out = []
    for cov, spec in table.items():
        ck = f"{key}.{cov}"
        if not isinstance(spec, dict):
            chk.add(ck, f"expected a table (effect, reference, value, estimate, bounds), found "
                        f"{_found(spec)}")
            continue
        n_before = len(chk.problems)
        chk.unknown(ck, spec, _COVARIATE_KEYS)
        effect = chk.string(f"{ck}.effect", spec.get("effect"), EFFECTS, required=True)
        if effect is None:
            continue
        categorical = effect == "categorical"
        ref = spec.get("reference")
        if "reference" not in spec:
            chk.add(f"{ck}.reference", "is required: " + (
                "the reference category (its typical value is the parameter's value)"
                if categorical else "the covariate value the effect is centred on (where "
                                    "the typical value is the parameter's value)"))
        elif categorical:
            if isinstance(ref, bool) or not isinstance(ref, str | int | float):
                chk.add(f"{ck}.reference", f"expected a category (a string or a number), "
                                           f"found {_found(ref)}")
        elif isinstance(ref, str):
            from .population._model import CENTRES

            ref = chk.string(f"{ck}.reference", ref, CENTRES)
        else:
            ref = chk.number(f"{ck}.reference", ref)
            if ref is not None and effect == "power" and ref <= 0:
                chk.add(f"{ck}.reference", f"a power effect (cov/reference)^c needs a positive "
                                           f"reference, found {ref:g}")
        estimated = spec.get("estimate", True)
        if not isinstance(estimated, bool):
            chk.add(f"{ck}.estimate", f"expected true (estimated) or false (fixed), found "
                                      f"{_found(estimated)}")
            estimated = True
        lo, hi = _CATEGORICAL_BOUNDS if categorical else (-math.inf, math.inf)
        if "bounds" in spec:
            b = _bounds(chk, f"{ck}.bounds", spec["bounds"])
            if b is not None:
                lo, hi = b
        groups = ()
        if "groups" in spec:
            if not categorical:
                chk.add(f"{ck}.groups", f"groups make categories of a categorical effect; "
                                        f"found effect = {effect!r}")
            g = spec["groups"]
            if not isinstance(g, dict) or not g or not all(
                    isinstance(v, list) and v and all(
                        isinstance(x, str | int | float) and not isinstance(x, bool)
                        for x in v) for v in g.values()):
                chk.add(f"{ck}.groups", f"expected a table of category name -> array of "
                                        f"covariate values, found {_found(g)}")
            else:
                groups = tuple((str(k), tuple(v)) for k, v in g.items())
                seen: dict = {}
                for gname, members in groups:
                    for x in members:
                        k = level_key(x)
                        if k in seen:
                            chk.add(f"{ck}.groups", f"value {x!r} is in groups '{seen[k]}' and "
                                                    f"'{gname}' (expected one group per value)")
                        seen[k] = gname
                if "reference" in spec and level_key(ref) not in dict(groups):
                    chk.add(f"{ck}.reference", f"expected one of the groups "
                                               f"({', '.join(dict(groups))}), found {ref!r}")
        levels: tuple = ()
        if "levels" in spec:
            lv = spec["levels"]
            if not categorical:
                chk.add(f"{ck}.levels", f"levels name the categories of a categorical effect; "
                                        f"found effect = {effect!r}")
            elif not isinstance(lv, list) or not lv or not all(
                    isinstance(x, str | int | float) and not isinstance(x, bool) for x in lv):
                chk.add(f"{ck}.levels", f"expected a non-empty array of categories (the "
                                        f"non-reference ones), found {_found(lv)}")
            else:
                levels = tuple(level_key(x) for x in lv)
                if "reference" in spec and level_key(ref) in levels:
                    chk.add(f"{ck}.levels", f"the reference category {ref!r} gets no "
                                            "coefficient: expected only the other categories")
                if len(set(levels)) != len(levels):
                    chk.add(f"{ck}.levels", f"expected distinct categories, found {lv}")
        elif categorical and groups:
            levels = tuple(g for g, _ in groups if "reference" not in spec
                           or g != level_key(ref))
        values: tuple = (0.0,)
        if "value" in spec:
            v = spec["value"]
            if categorical and isinstance(v, dict):
                if not levels:
                    levels = tuple(level_key(k) for k in v)
                vals = []
                for k in v:
                    if level_key(k) not in levels:
                        chk.add(f"{ck}.value.{k}", f"expected one of the levels "
                                                   f"({', '.join(levels)}), found {k!r}")
                for lv_ in levels:
                    x = next((x for k, x in v.items() if level_key(k) == lv_), 0.0)
                    x = chk.number(f"{ck}.value.{lv_}", x)
                    vals.append(0.0 if x is None else x)
                values = tuple(vals)
            else:
                x = chk.number(f"{ck}.value", v)
                values = (0.0 if x is None else x,)
        elif not estimated:
            chk.add(f"{ck}.value", "a fixed coefficient (estimate = false) needs its value")
        for x in values:
            if not lo <= x <= hi:
                chk.add(f"{ck}.value", f"expected a value within bounds [{lo:g}, {hi:g}], "
                                       f"found {x:g}")
                break
        if len(chk.problems) > n_before:
            continue
        eff = CovariateEffect(pname, str(cov), effect, ref, levels, values, (estimated,),
                              (lo,), (hi,), groups)
        if levels:
            eff = eff.with_levels(levels)
            if len(values) == len(levels):
                eff = eff.with_values(values)
        out.append(eff)
    return tuple(out)


def omega_table(chk: _Check, doc: dict, parameters: tuple, estimator) -> tuple:
    """``[omega]``: blocks of correlated random effects (``blocks``, ``full``); returns the
    parameters with their ``omega_block`` set. Also checks that covariate effects, blocks
    and fixed variances are used with an estimator that takes them."""
    import dataclasses

    import numpy as np

    from .population._model import OmegaBlock

    om = chk.table("omega", doc.get("omega"))
    chk.unknown("omega", om, _OMEGA_KEYS)
    structured = estimator in STRUCTURED_ESTIMATORS
    if estimator in POPULATION_ESTIMATORS and not structured:
        for p in parameters:
            if p.covariates:
                chk.add(f"parameters.{p.name}.covariates.{p.covariates[0].covariate}",
                        f"covariate effects are not "
                        f"supported by fit.estimator = {estimator!r} yet (expected one of "
                        f"{', '.join(STRUCTURED_ESTIMATORS)})")
            if p.eta_fixed:
                chk.add(f"parameters.{p.name}.eta_fixed", f"fixed random-effect variances "
                        f"are not supported by fit.estimator = {estimator!r} yet (expected one "
                        f"of {', '.join(STRUCTURED_ESTIMATORS)})")
        if om:
            chk.add("omega", f"Omega blocks are not supported by fit.estimator = "
                             f"{estimator!r} yet (expected one of "
                             f"{', '.join(STRUCTURED_ESTIMATORS)})")
            return parameters
    if not om:
        return parameters
    if estimator is None and chk.failed("fit.estimator"):
        return parameters          # refused by name already
    if estimator not in POPULATION_ESTIMATORS:
        chk.add("omega", f"an [omega] table needs a population estimator (fit.estimator = "
                         f"{' or '.join(repr(e) for e in STRUCTURED_ESTIMATORS)}), found "
                         f"fit.estimator = {estimator!r}")
        return parameters
    by_name = {p.name: p for p in parameters}
    with_eta = [p.name for p in parameters if p.eta is not None]
    raw = []
    if "full" in om:
        if not isinstance(om["full"], bool):
            chk.add("omega.full", f"expected true or false, found {_found(om['full'])}")
        elif om["full"]:
            if "blocks" in om:
                chk.add("omega.full", "give either full = true (one block of every random "
                                      "effect) or blocks, not both")
            elif len(with_eta) < 2:
                chk.add("omega.full", f"a full Omega needs at least two random effects, found "
                                      f"{len(with_eta)}")
            else:
                raw.append(("omega.full", {"parameters": with_eta}))
    if "blocks" in om:
        b = om["blocks"]
        if not isinstance(b, list) or not b:
            chk.add("omega.blocks", f"expected a non-empty array of blocks (arrays of parameter "
                                    f"names, or tables with parameters, covariances, fixed), "
                                    f"found {_found(b)}")
        else:
            for i, blk in enumerate(b):
                raw.append((f"omega.blocks[{i}]",
                            {"parameters": blk} if isinstance(blk, list) else blk))
    out = dict()
    member_of: dict = {}
    for bk, spec in raw:
        if not isinstance(spec, dict):
            chk.add(bk, f"expected an array of parameter names or a table (parameters, "
                        f"covariances, fixed), found {_found(spec)}")
            continue
        chk.unknown(bk, spec, _BLOCK_KEYS)
        n_before = len(chk.problems)
        names = spec.get("parameters")
        pk = bk if bk.endswith("]") and "parameters" not in spec else f"{bk}.parameters"
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            chk.add(pk, f"expected an array of parameter names, found {_found(names)}")
            continue
        if len(names) < 2:
            chk.add(pk, f"a block correlates at least two random effects, found {names}")
        for x in names:
            if x not in by_name:
                chk.add(pk, f"no parameter '{x}'{did_you_mean(x, list(by_name))}")
            elif by_name[x].eta is None:
                chk.add(pk, f"parameters.{x} has no random effect (expected 'eta = "
                            f"<variance>' in [parameters.{x}])")
            elif x in member_of:
                chk.add(pk, f"parameter '{x}' is already in {member_of[x]} (each random "
                            "effect belongs to one block)")
            elif by_name[x].eta_fixed:
                chk.add(f"parameters.{x}.eta_fixed", f"'{x}' is in {bk}: fix the block "
                                                     f"({bk}.fixed = true) instead")
            member_of.setdefault(x, bk)
        if len(set(names)) != len(names):
            chk.add(pk, f"expected distinct parameters, found {names}")
        k = len(names)
        cov = spec.get("covariances", [])
        if not isinstance(cov, list) or not all(isinstance(x, int | float)
                                                and not isinstance(x, bool) for x in cov):
            chk.add(f"{bk}.covariances", f"expected an array of numbers, found {_found(cov)}")
            cov = []
        elif cov and len(cov) != k * (k - 1) // 2:
            chk.add(f"{bk}.covariances", f"expected {k * (k - 1) // 2} covariances (the lower "
                                         f"triangle without the diagonal, row by row: "
                                         + ", ".join(f"({names[r]},{names[c]})"
                                                     for r in range(1, k) for c in range(r))
                                         + f"), found {len(cov)}")
            cov = []
        fixed = spec.get("fixed", False)
        if not isinstance(fixed, bool):
            chk.add(f"{bk}.fixed", f"expected true or false, found {_found(fixed)}")
        if len(chk.problems) > n_before:
            continue
        blk = OmegaBlock(tuple(names), tuple(float(x) for x in cov), bool(fixed))
        m = np.diag([by_name[x].eta for x in names])
        j = 0
        for r in range(1, k):
            for c in range(r):
                if cov:
                    m[r, c] = m[c, r] = cov[j]
                j += 1
        if np.linalg.eigvalsh(m).min() <= 0:
            chk.add(f"{bk}.covariances", f"the initial block is not positive definite "
                                         f"(variances from 'eta', covariances given): "
                                         f"{m.tolist()}; expected |cov(A,B)| < sqrt(var A var B)")
            continue
        for x in names:
            out[x] = blk
    if not out:
        return parameters
    return tuple(dataclasses.replace(p, omega_block=out[p.name]) if p.name in out else p
                 for p in parameters)


#: Keys an anchored time offset does not take: its value per subject is the model time of
#: the anchor event, not a parameter (see FitParameter.anchor).
_NOT_WITH_ANCHOR = ("estimate", "value", "eta", "eta_fixed", "covariates", "scale")


def anchored_offset(chk: _Check, key: str, name: str, spec: dict,
                     n_before: int) -> FitParameter | None:
    """``[parameters.time_offset]`` with ``anchor = "EVENT"``: the offset's value per subject
    is the model time of EVENT under the subject's parameters (FitParameter.anchor); the
    event's existence is checked against the model in :func:`parameter_tables`."""
    anchor = spec["anchor"]
    if not isinstance(anchor, str) or not anchor.strip():
        chk.add(f"{key}.anchor", f"expected the name of an event of the model (a string), "
                                 f"found {_found(anchor)}")
        anchor = None
    for k in _NOT_WITH_ANCHOR:
        if k in spec:
            chk.add(f"{key}.{k}", f"an anchored time offset (anchor = {spec['anchor']!r}) is "
                                  f"not a parameter: its value per subject is the model time "
                                  f"of the event under the subject's own parameters, so "
                                  f"'{k}' does not apply; remove it (or remove 'anchor' for an "
                                  "estimated offset)")
    bounds = None
    if "bounds" not in spec:
        chk.add(f"{key}.bounds", "an anchored time offset needs bounds [lower, upper]: the "
                                 "window of model time in which the anchor event is searched "
                                 "(a subject whose event falls outside it is a failed "
                                 "evaluation)")
    else:
        bounds = _bounds(chk, f"{key}.bounds", spec["bounds"])
        if bounds is not None and not (bounds[0] >= 0 and math.isfinite(bounds[1])):
            chk.add(f"{key}.bounds", f"expected 0 <= lower < upper < inf for the window of "
                                     f"model time searched for the anchor event, found "
                                     f"[{bounds[0]:g}, {bounds[1]:g}]")
            bounds = None
    covariate, factor = None, 1.0
    if "covariate" in spec:
        covariate = chk.string(f"{key}.covariate", spec["covariate"])
    if "factor" in spec:
        f = chk.number(f"{key}.factor", spec["factor"])
        factor = f if f is not None else 1.0
        if "covariate" not in spec:
            chk.add(f"{key}.factor", "a factor needs a covariate")
    if len(chk.problems) > n_before or anchor is None or bounds is None:
        return None
    return FitParameter(name, "offset", "fixed", 0.0, bounds[0], bounds[1], "linear",
                        covariate=covariate, factor=factor, anchor=anchor)


def check_anchor_event(chk: _Check, key: str, anchor: str, model) -> None:
    """The anchor of a time offset must be an event of the model, and the model must have no
    covariates (the offset's derivative would be wrong where a covariate changes)."""
    events = tuple(e.name for e in getattr(model, "events", ()))
    if anchor not in events:
        chk.add(key, f"model '{model.name}' has no event '{anchor}'"
                     f"{did_you_mean(anchor, events)} (events: {', '.join(events) or 'none'})")
    elif getattr(model, "covariate_names", ()):
        chk.add(key, f"an anchored time offset is not supported for model '{model.name}', "
                     f"which has covariates ({', '.join(model.covariate_names)}): the offset's "
                     "derivative would be wrong where a covariate changes")
