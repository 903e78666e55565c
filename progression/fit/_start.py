"""Starting values from a previous population fit (``[fit] start_from``, ``--start-from``).

The modeller's chain of estimators: SAEM first (robust from poor starts), then Laplace or
FOCE-I from its estimates for their objective, covariance step or a residual model SAEM
does not have; or a refit after a config change from the last estimates (NONMEM's ``$MSFI``,
Monolix's "use the last estimates"). :func:`start_values` copies, by name, a saved
population fit's typical values, Omega (diagonal and the covariances of the config's
blocks), covariate coefficients and residual error parameters into a config's starting
values. What the config holds fixed stays as the config says; what the earlier fit does not
have keeps the config's value; a value outside the config's bounds is refused (the bounds
are the modeller's, so the mismatch is theirs to settle).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ProgressionError

__all__ = ["start_from", "start_values"]


def _inside(v: float, lo: float, hi: float) -> bool:
    return lo < v < hi or (lo == v == hi)


def start_values(parameters: tuple, result, *, where: str = "start_from"):
    """``parameters`` (FitParameter tuple) with starting values from ``result``'s population part.

    Parameters
    ----------
    parameters : tuple of FitParameter
        A config's parameters.
    result : FitResult
        A saved or fresh population fit (``result.population`` set).
    where : str
        How the caller names the source (file and key) in messages.

    Returns
    -------
    (tuple of FitParameter, list of str)
        The parameters and the names whose starting values were taken.

    Raises
    ------
    ConfigError
        ``result`` is not a population fit, shares no estimated quantity with the config, or
        gives a value outside a parameter's bounds (named with the value and the bounds).
    """
    pop = getattr(result, "population", None)
    if pop is None:
        raise ConfigError(f"{where}: expected a population fit (focei, foce, fo, laplace or "
                          f"saem), found a {getattr(result, 'kind', 'per-subject')} fit")
    omega = np.asarray(pop.omega, dtype=float)
    eta_index = {n: i for i, n in enumerate(pop.omega_names)}
    effects = {(e["parameter"], e["covariate"], e["effect"]): e
               for e in (dict(e) for e in pop.covariate_effects)}
    taken, problems, blocks = [], [], {}
    out = []
    for p in parameters:
        changes = {}
        if p.kind == "error" and p.estimate != "fixed" and p.name in pop.sigma:
            changes["value"] = float(pop.sigma[p.name])
        elif p.estimate == "population":
            if not getattr(p, "value_fixed", False) and p.name in pop.fixed_effects:
                changes["value"] = float(pop.fixed_effects[p.name])
            if p.eta is not None and not p.eta_fixed and p.name in eta_index:
                i = eta_index[p.name]
                changes["eta"] = float(omega[i, i])
            covs = tuple(_effect_start(e, effects) for e in p.covariates)
            if covs != tuple(p.covariates):
                changes["covariates"] = covs
            if p.omega_block is not None and not p.omega_block.fixed:
                blocks[p.omega_block.parameters] = p.omega_block
        v = changes.get("value")
        if v is not None and not _inside(v, p.lower, p.upper):
            problems.append(f"{p.name} = {v:.6g} is outside the config's bounds "
                            f"[{p.lower:g}, {p.upper:g}]")
            continue
        if changes:
            taken.append(p.name)
            p = dataclasses.replace(p, **changes)
        out.append(p)
    if problems:
        raise ConfigError(f"{where}: the earlier fit's estimates do not fit this config: "
                          + "; ".join(problems))
    if not taken:
        raise ConfigError(f"{where}: the earlier fit ({pop.method}) estimates none of this "
                          f"config's population parameters (it has "
                          f"{', '.join(pop.fixed_effects) or 'none'})")
    # Omega blocks: the earlier fit's covariances between the block's members, where it has
    # both (lower triangle, row by row: OmegaBlock's order)
    new_blocks = {}
    for members, block in blocks.items():
        if not all(m in eta_index for m in members):
            continue
        idx = [eta_index[m] for m in members]
        cov = tuple(float(omega[idx[r], idx[c]]) for r in range(len(idx)) for c in range(r))
        new_blocks[members] = dataclasses.replace(block, covariances=cov)
    if new_blocks:
        out = [dataclasses.replace(p, omega_block=new_blocks[p.omega_block.parameters])
               if p.omega_block is not None and p.omega_block.parameters in new_blocks else p
               for p in out]
    return tuple(out), taken


def _effect_start(e, effects: dict):
    """A covariate effect with the earlier fit's coefficients as its starting values (fixed
    coefficients and effects the earlier fit does not have unchanged)."""
    r = effects.get((e.parameter, e.covariate, e.effect))
    if r is None:
        return e
    got = [float(v) for v in r.get("values", ())]
    if e.effect != "categorical":
        if not got or not all(e.estimated) or not math.isfinite(got[0]):
            return e
        return dataclasses.replace(e, values=(got[0],))
    by_level = dict(zip((str(v) for v in r.get("levels", ())), got, strict=False))
    if e.levels:
        values = tuple(by_level.get(lv, v) if est else v for lv, v, est
                       in zip(e.levels, e.values, e.estimated, strict=True))
        return dataclasses.replace(e, values=values)
    if len(e.estimated) == 1 and e.estimated[0] and got:
        # levels resolved from the data at fit time, in the order the earlier fit had them
        return dataclasses.replace(e, values=tuple(got))
    return e


def start_from(config, source):
    """``config`` (a :class:`~progression.fit.FitConfig`) starting at a population fit's
    estimates.

    Parameters
    ----------
    config : FitConfig
    source : FitResult or path
        A population fit, or the folder of a saved one.

    Returns
    -------
    FitConfig
        A copy whose parameters start at the fit's estimates (:func:`start_values`).

    Raises
    ------
    ConfigError
        The folder is not a saved fit, or its estimates do not fit the config.
    """
    where = "start_from"
    if isinstance(source, str | Path):
        from .result import load_fit

        where = f"start from {source}"
        if not (Path(source) / "fit.json").is_file():
            raise ConfigError(f"{where}: expected a fit folder (with fit.json), found "
                              f"{'no such folder' if not Path(source).exists() else 'none'}")
        try:
            source = load_fit(source)
        except ProgressionError as exc:
            raise ConfigError(f"{where}: the fit cannot be read: {exc}") from None
    params, _ = start_values(config.parameters, source, where=where)
    return config.replace(parameters=params)
