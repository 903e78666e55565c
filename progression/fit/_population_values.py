"""Population parameters of a saved fit as numbers: the estimation-scale vector, typical and
individual values with covariate effects.

The public entry points are the methods of :class:`~progression.fit.parts.PopulationPart`
(``parameter_vector``, ``with_parameters``, ``typical_values``, ``individual_values``); this
module holds their implementation so that the dataclass stays a readable record.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .transforms import from_internal, to_internal


def typical_model(part):
    """The fit's :class:`~progression.fit.population._model.TypicalModel` (names, scales,
    bounds, covariate effects at their estimates)."""
    from .population._model import CovariateEffect, TypicalModel

    names = tuple(part.fixed_effects)
    missing = [k for k in names if k not in part.scales]
    if missing:
        raise ValueError(f"population part: the estimation scale of '{missing[0]}' is not "
                         "stored (a fit saved before scales were kept); refit it")
    lo = [(-np.inf if part.bounds.get(k, (None,))[0] is None else part.bounds[k][0])
          for k in names]
    hi = [(np.inf if part.bounds.get(k, (None, None))[1] is None else part.bounds[k][1])
          for k in names]
    effects = []
    for d in part.covariate_effects:
        e = CovariateEffect.from_dict(d)
        effects.append(e.with_values([part.coefficients.get(n, v)
                                      for n, v in zip(e.names, e.values, strict=True)]))
    return TypicalModel(names, np.array([part.scales[k] for k in names]), lo, hi, effects)


def omega_model(part):
    """The fit's :class:`~progression.fit.population._model.OmegaModel` (diagonal or blocks)."""
    from .population._model import OmegaModel

    names = tuple(part.omega_names)
    if not part.omega_blocks:
        return OmegaModel.diagonal(names, np.diag(np.asarray(part.omega, dtype=float)))
    blocks = [np.array([names.index(p) for p in b["parameters"]], dtype=int)
              for b in part.omega_blocks]
    return OmegaModel(names, blocks, [bool(b.get("fixed", False)) for b in part.omega_blocks],
                      np.asarray(part.omega, dtype=float))


def parameter_vector(part) -> np.ndarray:
    """See :meth:`PopulationPart.parameter_vector`."""
    tm = typical_model(part)
    om = omega_model(part)
    om_vals = dict(zip(om.parameter_names(), om.pack(part.omega), strict=True))
    out = []
    for name in part.covariance_names:
        kind, _, rest = name.partition(" ")
        if kind == "theta":
            d = tm.names.index(rest)
            out.append(float(to_internal(np.array([part.fixed_effects[rest]]),
                                         tm.scale[d:d + 1], tm.lower[d:d + 1],
                                         tm.upper[d:d + 1])[0]))
        elif kind == "coef":
            out.append(float(part.coefficients[rest]))
        elif name in om_vals:
            out.append(float(om_vals[name]))
        elif kind == "log" and rest in part.sigma:
            out.append(math.log(part.sigma[rest]))
        else:
            raise ValueError(f"population part: unknown parameter name {name!r}")
    return np.array(out, dtype=float)


def with_parameters(part, x):
    """See :meth:`PopulationPart.with_parameters`."""
    x = np.asarray(x, dtype=float).ravel()
    names = tuple(part.covariance_names)
    if x.size != len(names):
        raise ValueError(f"population part: expected {len(names)} parameters "
                         f"({', '.join(names)}), found {x.size}")
    tm = typical_model(part)
    om = omega_model(part)
    om_names = om.parameter_names()
    om_p = om.pack(part.omega)
    fixed = dict(part.fixed_effects)
    sigma = dict(part.sigma)
    coefs = dict(part.coefficients)
    for name, v in zip(names, x, strict=True):
        kind, _, rest = name.partition(" ")
        if kind == "theta":
            d = tm.names.index(rest)
            fixed[rest] = float(from_internal(np.array([v]), tm.scale[d:d + 1],
                                              tm.lower[d:d + 1], tm.upper[d:d + 1])[0])
        elif kind == "coef":
            coefs[rest] = float(v)
        elif name in om_names:
            om_p[om_names.index(name)] = v
        elif kind == "log" and rest in sigma:
            sigma[rest] = math.exp(v)
        else:
            raise ValueError(f"population part: unknown parameter name {name!r}")
    return dataclasses.replace(part, fixed_effects=fixed, sigma=sigma, coefficients=coefs,
                               omega=om.unpack(om_p))


def _covariates(part, covariates, n):
    need = part.covariate_names
    if not need:
        return None, n
    if covariates is None:
        raise ValueError("population part: the typical values depend on covariates "
                         + ", ".join(need) + "; expected their values")
    missing = [c for c in need if c not in covariates]
    if missing:
        raise ValueError(f"population part: expected covariate '{missing[0]}' (the "
                         f"population model uses {', '.join(need)}), found "
                         + (", ".join(map(str, covariates)) or "none"))
    cov = {c: np.atleast_1d(np.asarray(covariates[c])) for c in need}
    sizes = {v.shape[0] for v in cov.values()}
    if len(sizes) != 1:
        raise ValueError(f"population part: covariates of different lengths {sorted(sizes)}")
    return cov, sizes.pop()


def typical_internal(part, covariates, n):
    """``(typical model, mu (n, P))``: the typical values on the estimation scale with the
    covariate effects of ``covariates`` (n subjects)."""
    tm = typical_model(part)
    cov, n = _covariates(part, covariates, n)
    theta_x = to_internal(np.array([part.fixed_effects[k] for k in tm.names]), tm.scale,
                          tm.lower, tm.upper)
    coef = np.array([part.coefficients.get(c, 0.0) for c in tm.coefficient_names])
    mu, _, _ = tm.mu(theta_x, coef, cov, n)
    return tm, mu


def _natural(tm, phi) -> dict:
    nat = from_internal(phi, np.broadcast_to(tm.scale, phi.shape),
                        np.broadcast_to(tm.lower, phi.shape),
                        np.broadcast_to(tm.upper, phi.shape))
    return {k: nat[:, d] for d, k in enumerate(tm.names)}


def typical_values(part, covariates=None, n: int = 1) -> dict:
    """See :meth:`PopulationPart.typical_values`."""
    tm, mu = typical_internal(part, covariates, n)
    return _natural(tm, mu)


def individual_values(part, eta, covariates=None) -> dict:
    """See :meth:`PopulationPart.individual_values`."""
    eta = np.atleast_2d(np.asarray(eta, dtype=float))
    if eta.shape[1] != len(part.omega_names):
        raise ValueError(f"population part: expected eta with {len(part.omega_names)} "
                         f"columns ({', '.join(part.omega_names)}), found {eta.shape[1]}")
    tm, mu = typical_internal(part, covariates, eta.shape[0])
    if mu.shape[0] != eta.shape[0]:
        raise ValueError(f"population part: expected {mu.shape[0]} rows of eta (one per "
                         f"subject of the covariates), found {eta.shape[0]}")
    phi = mu.copy()
    for e, k in enumerate(part.omega_names):
        phi[:, tm.names.index(k)] += eta[:, e]
    return _natural(tm, phi)
