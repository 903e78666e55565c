"""``prior`` and ``eta_prior`` of ``[parameters.NAME]``: priors of a population parameter's
typical value and of its random effect's variance (maximum a posteriori by SAEM and the FOCE
family; :mod:`progression.fit.population._prior` for the definitions)::

    [parameters.eD]
    estimate = "population"
    value = 0.3
    scale = "log"
    eta = 0.1
    prior = { value = 0.3, sd = 0.5 }       # typical value: normal on the estimation scale
    eta_prior = { value = 0.16, df = 20 }   # variance: inverse-Wishart, NONMEM's $OMEGAP(D)

``prior.value`` is on the parameter's natural scale (like ``value``), ``prior.sd`` on its
estimation scale (``scale``: log units for ``"log"``); ``eta_prior.value`` is a variance on
the estimation scale (like ``eta``), ``eta_prior.df`` its degrees of freedom (how many
subjects' worth of information the prior carries).
"""

from __future__ import annotations

import math

__all__ = ["PRIOR_ESTIMATORS", "check_priors", "parameter_priors", "refuse_priors"]

#: Estimators that take priors: SAEM's M-step and the FOCE family's outer objective then give
#: the posterior mode.
PRIOR_ESTIMATORS = ("saem", "focei", "foce", "fo", "laplace")


def _found(v) -> str:
    return f"{type(v).__name__} {v!r}"


def parameter_priors(chk, key: str, spec: dict, *, estimate, value_fixed: bool,
                     eta_fixed: bool, bounds, scale) -> tuple[tuple, tuple]:
    """``(prior, eta_prior)`` of one parameter table: ``(value, sd)`` and ``(value, df)``,
    ``()`` where absent; problems go to ``chk`` naming the key."""
    prior = eta_prior = ()
    k = f"{key}.prior"
    pair = _pair(chk, k, spec, "prior", {"value": "the prior mean of the typical value "
                                                 "(natural scale)",
                                         "sd": "the prior SD on the estimation scale"})
    if pair is not None:
        value, sd = pair
        if estimate is not None and estimate != "population":
            chk.add(k, f"a prior belongs to a population parameter: expected estimate = "
                       f"\"population\", found estimate = {estimate!r}")
        elif value_fixed:
            chk.add(k, "the typical value is held (value_fixed = true); expected no prior on "
                       "it")
        elif sd is not None and sd <= 0:
            chk.add(f"{k}.sd", f"expected a positive SD, found {sd:g}")
        elif value is not None and bounds is not None and not _inside(value, bounds, scale):
            chk.add(f"{k}.value", f"expected a prior mean inside the bounds "
                                  f"[{bounds[0]:g}, {bounds[1]:g}]"
                                  + (" (strictly, on a log or logit scale)"
                                     if scale != "linear" else "") + f", found {value:g}")
        elif value is not None and sd is not None:
            prior = (value, sd)
    k = f"{key}.eta_prior"
    pair = _pair(chk, k, spec, "eta_prior", {"value": "the prior variance (estimation scale)",
                                             "df": "its degrees of freedom"})
    if pair is not None:
        value, df = pair
        if "eta" not in spec:
            chk.add(k, "a variance prior needs a random effect: expected 'eta = <variance>' "
                       "too")
        elif eta_fixed:
            chk.add(k, "the variance is fixed (eta_fixed = true); expected no prior on it")
        elif value is not None and value <= 0:
            chk.add(f"{k}.value", f"expected a positive variance, found {value:g}")
        elif df is not None and df <= 0:
            chk.add(f"{k}.df", f"expected positive degrees of freedom, found {df:g}")
        elif value is not None and df is not None:
            eta_prior = (value, df)
    return prior, eta_prior


def _pair(chk, k, spec, name, fields: dict):
    """The two numbers of table ``spec[name]`` (None for one that is missing or not a
    number; None for both when the table is absent or not a table)."""
    if name not in spec:
        return None
    table = spec[name]
    if not isinstance(table, dict):
        inner = ", ".join(f"{f} = <{w.split(' (')[0].removeprefix('the ')}>"
                          for f, w in fields.items())
        chk.add(k, f"expected a table {{ {inner} }}, found {_found(table)}")
        return None
    chk.unknown(k, table, tuple(fields))
    return tuple(_required(chk, k, table, f, w) for f, w in fields.items())


def _required(chk, key, table, name, what):
    if name not in table:
        chk.add(key, f"expected '{name}' ({what}), found none")
        return None
    v = table[name]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        chk.add(f"{key}.{name}", f"expected a finite number ({what}), found {_found(v)}")
        return None
    return float(v)


def _inside(value, bounds, scale) -> bool:
    lo, hi = bounds
    if scale == "linear":
        return lo <= value <= hi
    return lo < value < hi and (scale == "logit" or value > 0)


def check_priors(chk, doc: dict, parameters, estimator) -> None:
    """Priors need an estimator that takes them, a variance prior a random effect outside an
    Omega block, and with SAEM its own covariance (the others do not carry the prior)."""
    with_prior = [p for p in parameters if getattr(p, "prior", ()) or
                  getattr(p, "eta_prior", ())]
    if not with_prior:
        return
    first = with_prior[0]
    which = "prior" if first.prior else "eta_prior"
    key = f"parameters.{first.name}.{which}"
    if estimator not in PRIOR_ESTIMATORS:
        names = " or ".join(f'"{e}"' for e in PRIOR_ESTIMATORS)
        chk.add(key, f'priors are taken by a population estimator, fit.estimator = {names} '
                     f'(the posterior mode), found fit.estimator = "{estimator}"')
        return
    for p in with_prior:
        if p.eta_prior and p.omega_block is not None:
            chk.add(f"parameters.{p.name}.eta_prior",
                    f"a variance prior acts on a random effect of its own; "
                    f"'{p.name}' is in the Omega block ({', '.join(p.omega_block.parameters)})")
    est = doc.get("estimator") if isinstance(doc.get("estimator"), dict) else {}
    choice = est.get("saem_covariance", "sa")
    if estimator == "saem" and choice != "sa":
        chk.add("estimator.saem_covariance",
                f"with priors ({key}) the covariance step is SAEM's own information plus "
                f"the prior's curvature: expected \"sa\", found {choice!r}")


def refuse_priors(source, parameters, estimator: str) -> None:
    """At the start of a fit (a config changed in Python after reading): an estimator that
    does not take priors refuses a parameter with one, naming the key."""
    from ..errors import ConfigError

    if estimator in PRIOR_ESTIMATORS:
        return
    for p in parameters:
        for key in ("prior", "eta_prior"):
            if getattr(p, key, ()):
                names = " or ".join(f'"{e}"' for e in PRIOR_ESTIMATORS)
                raise ConfigError(f'{source}: parameters.{p.name}.{key}: priors are taken by '
                                  f'a population estimator, fit.estimator = {names}; found '
                                  f'"{estimator}"')
