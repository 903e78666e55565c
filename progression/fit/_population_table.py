"""The population parameter table as data: one row per typical value, random-effect
variance and covariance, residual parameter and covariate coefficient, with standard error,
RSE %, Wald interval, CV % and shrinkage. :meth:`PopulationPart.table
<progression.fit.parts.PopulationPart.table>` returns it; ``report.md`` prints it.
"""

from __future__ import annotations

import math

__all__ = ["population_table"]

_NAN = float("nan")


def population_table(pop, level: float = 0.95) -> list[dict]:
    """Rows of the population parameter table of ``pop`` (a :class:`PopulationPart`).

    Each row: ``parameter`` (the name in ``covariance_names`` without its scale prefix:
    ``"CL"``, ``"omega^2 CL"``, ``"omega CL,V"``, ``"conc.a"``, ``"CL~WT"``), ``kind``
    (``"typical value"``, ``"variance"``, ``"covariance"``, ``"residual"``,
    ``"coefficient"``), ``label`` (the report's words), ``estimate`` (natural scale;
    variances on the estimation scale), ``se``, ``rse_percent``, ``ci_low``, ``ci_high``
    (Wald interval at ``level`` on the estimation scale, mapped back; NaN where none),
    ``cv_percent`` and ``shrinkage_percent`` (variances; NaN otherwise), ``fixed``.
    """
    ci = pop.intervals(level)

    def row(parameter, kind, label, v, se, *, fixed=False, key=None, cv=_NAN, sh=_NAN):
        v, se = float(v), float(se)
        lo, hi = ci.get(key, (_NAN, _NAN)) if key is not None else (_NAN, _NAN)
        return {"parameter": parameter, "kind": kind, "label": label, "estimate": v,
                "se": _NAN if fixed else se,
                "rse_percent": _NAN if fixed or not v else 100.0 * se / abs(v),
                "ci_low": _NAN if fixed else float(lo), "ci_high": _NAN if fixed else float(hi),
                "cv_percent": float(cv), "shrinkage_percent": float(sh), "fixed": bool(fixed)}

    rows = []
    effects_on = {e.get("parameter") for e in (getattr(pop, "covariate_effects", ()) or ())}
    fixed_typical = set(getattr(pop, "fixed_typical", ()) or ())
    for k, v in pop.fixed_effects.items():
        at_ref = " at the reference covariates" if k in effects_on else ""
        rows.append(row(k, "typical value", f"{k} (typical value{at_ref})", v,
                        pop.fixed_effects_se.get(k, _NAN), fixed=k in fixed_typical, key=k))
    fixed_eta = {k for b in (getattr(pop, "omega_blocks", ()) or ()) if b.get("fixed")
                 for k in b["parameters"]}
    for e, k in enumerate(pop.omega_names):
        rows.append(row(f"omega^2 {k}", "variance", f"omega^2 {k} (variance)",
                        pop.omega[e, e], pop.omega_se.get(k, _NAN), fixed=k in fixed_eta,
                        key=f"omega^2 {k}", cv=pop.cv_percent.get(k, _NAN),
                        sh=100 * pop.shrinkage.get(k, _NAN)))
    names = list(pop.omega_names)
    offdiag_se = getattr(pop, "omega_offdiag_se", {}) or {}
    for r in range(1, len(names)):
        for c in range(r):
            v = float(pop.omega[r, c])
            key = f"{names[r]},{names[c]}"
            if v == 0.0 and key not in offdiag_se:
                continue
            corr = v / math.sqrt(pop.omega[r, r] * pop.omega[c, c])
            cse = (getattr(pop, "omega_correlation_se", {}) or {}).get(key, _NAN)
            label = (f"omega {key} (covariance; correlation {corr:.3f}"
                     + (f", SE {cse:.3g}" if math.isfinite(cse) else "") + ")")
            rows.append(row(f"omega {key}", "covariance", label, v, offdiag_se.get(key, _NAN),
                            fixed=names[r] in fixed_eta))
    for k, v in pop.sigma.items():
        rows.append(row(k, "residual", f"{k} (residual SD)", v, pop.sigma_se.get(k, _NAN),
                        key=k))
    effects = {n: e for e in (getattr(pop, "covariate_effects", ()) or ())
               for n in effect_names(e)}
    for k, v in (getattr(pop, "coefficients", {}) or {}).items():
        e = effects.get(k, {})
        rows.append(row(k, "coefficient", f"{k} ({effect_words(e)})", v,
                        pop.coefficients_se.get(k, _NAN),
                        fixed=not coefficient_estimated(e, k), key=k))
    return rows


def effect_names(e: dict) -> list:
    """The coefficient names of one covariate effect (``CL~WT``; ``V~SEX=F`` per level)."""
    if e.get("effect") == "categorical":
        return [f"{e['parameter']}~{e['covariate']}={lv}" for lv in e.get("levels", ())]
    return [f"{e['parameter']}~{e['covariate']}"]


def coefficient_estimated(e: dict, name: str) -> bool:
    """Whether the coefficient ``name`` of effect ``e`` was estimated (not held)."""
    if not e:
        return True
    flags = list(e.get("estimated", [True]))
    names = effect_names(e)
    k = names.index(name) if name in names else 0
    return bool(flags[k] if k < len(flags) else flags[0])


def effect_words(e: dict) -> str:
    """``exponential effect on CL, reference 70``."""
    if not e:
        return "covariate coefficient"
    if e.get("effect") == "categorical":
        return f"categorical effect on {e['parameter']}, reference {e['reference']}"
    return f"{e['effect']} effect on {e['parameter']}, reference {e['reference']:g}"
