"""The ``.ext`` tables of a population fit (NONMEM's layout, :mod:`._ext`): the estimation
method's table (iterations, final estimates, standard errors) and, with ``importance_ofv``,
the importance-sampling evaluation's. Split from :mod:`._outputs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._ext import FINAL, ExtTable, write_ext

__all__ = ["EXT_METHODS", "FOCEI_METHOD", "IMPORTANCE_METHOD", "ext_table", "ext_tables",
           "write_fit_ext"]

#: The method name NONMEM writes in the ``.ext`` title line.
FOCEI_METHOD = "First Order Conditional Estimation with Interaction"
#: The .ext header's method text for each population estimator, as NONMEM names its methods.
EXT_METHODS = {"focei": FOCEI_METHOD,
               "foce": "First Order Conditional Estimation",
               "fo": "First Order",
               "laplace": "Laplacian Conditional Estimation with Interaction",
               "saem": "Stochastic Approximation Expectation-Maximization"}
#: NONMEM's method name of an importance-sampling evaluation at fixed estimates
#: (``$EST METHOD=IMP EONLY=1``): the second ``.ext`` table of ``importance_ofv = true``.
IMPORTANCE_METHOD = "Objective Function Evaluation by Importance Sampling (No Prior)"


def ext_table(result) -> ExtTable:
    """The fit's ``.ext`` table: THETA = typical values (natural scale) then covariate
    coefficients, SIGMA = residual variances (SD squared, diagonal), OMEGA = Omega (estimation
    scale, with the covariances of its blocks); one row per outer iteration (from
    ``population.history`` and ``history_extra``; a fit without ``history_extra`` shows the
    final coefficients and covariances in its iteration rows), the final estimates and the
    standard errors (fixed elements: NONMEM's 1.0E+10)."""
    pop = result.population
    theta = np.array(list(pop.fixed_effects.values()), dtype=float)
    coefs = dict(getattr(pop, "coefficients", {}) or {})
    coef = np.array(list(coefs.values()), dtype=float)
    sd = np.array(list(pop.sigma.values()), dtype=float)
    om = np.asarray(pop.omega, dtype=float)
    D, S, E, C = theta.size, sd.size, om.shape[0], coef.size
    low = np.tril_indices(E, -1)
    history = []
    h = None if pop.history is None else np.asarray(pop.history, dtype=float)
    hx = getattr(pop, "history_extra", None)
    hx = None if hx is None else np.asarray(hx, dtype=float)
    if h is not None and h.size:
        for k, row in enumerate(h):
            o = np.diag(row[1 + D + S:1 + D + S + E])
            c = coef
            if hx is not None and k < len(hx):
                c = hx[k, :C]
                o[low] = hx[k, C:]
                o[low[::-1]] = hx[k, C:]
            history.append((int(row[0]), (np.r_[row[1:1 + D], c], row[1 + D:1 + D + S] ** 2,
                                          o, row[-1])))
    held = set(getattr(pop, "fixed_typical", ()) or ())       # NONMEM: 1E+10 for FIX
    t_se = np.array([np.nan if k in held else pop.fixed_effects_se.get(k, np.nan)
                     for k in pop.fixed_effects]
                    + [pop.coefficients_se.get(k, np.nan) for k in coefs])
    # SE of a variance sd^2 from the SE of sd: 2 sd SE(sd) (delta method)
    s_se = np.array([2.0 * v * pop.sigma_se.get(k, np.nan) for k, v in pop.sigma.items()])
    o_se = np.full((E, E), np.nan)
    names = list(pop.omega_names)
    off = getattr(pop, "omega_offdiag_se", {}) or {}
    for e, k in enumerate(names):
        o_se[e, e] = pop.omega_se.get(k, np.nan)
        for c in range(e):
            o_se[e, c] = o_se[c, e] = off.get(f"{k},{names[c]}", np.nan)
    method = EXT_METHODS.get(getattr(pop, "method", "focei"), FOCEI_METHOD)
    # with priors OBJ is the objective minimised, -2 log L plus the priors' penalty, as
    # NONMEM's $PRIOR adds it (the iterations' OBJ of the FOCE family is that sum already)
    obj = pop.ofv + float(getattr(pop, "prior_objective", 0.0) or 0.0)
    return ExtTable.from_estimates(method, history, (np.r_[theta, coef], sd ** 2, om, obj),
                                   se=(t_se, s_se, o_se))


def ext_tables(result) -> list[ExtTable]:
    """The fit's ``.ext`` tables: :func:`ext_table`, then, when the fit has an
    importance-sampling OFV at its estimates (``importance_ofv = true`` with the FOCE family),
    a second table as NONMEM writes for ``$EST METHOD=IMP EONLY=1``: the same estimates, OBJ
    the importance-sampling -2 log L, no standard errors (none are estimated there)."""
    first = ext_table(result)
    pop = result.population
    ofv_is = float(getattr(pop, "ofv_importance", float("nan")))
    if not np.isfinite(ofv_is) or getattr(pop, "method", "") == "saem":
        return [first]
    final = first.row(FINAL)
    values = np.array([[*list(final.values())[:-1], ofv_is]])
    second = ExtTable(IMPORTANCE_METHOD, list(first.columns),
                      np.array([FINAL], dtype=np.int64), values, number=2)
    return [first, second]


def write_fit_ext(result, path) -> Path:
    """Write :func:`ext_tables` to ``path`` (``fit.ext`` in the fit folder)."""
    return write_ext(path, ext_tables(result))
