"""Optimal sampling times of a population design (PopED's and PFIM's design optimisation).

A schedule of K sampling times for one observable is given to every subject of a design
(replacing that observable's rows; the other observables, doses and covariates stay) and
moved inside a time window to optimise the expected information of
:func:`~progression.fit.evaluate_design`: the D-criterion ``-log det FIM`` over every
estimated population parameter, or the Ds-criterion ``log det Cov_SS`` over the parameters of
interest ``S`` (their generalised variance, the others treated as nuisance). Both criteria are
invariant to the parameters' scales (a design-independent Jacobian only adds a constant), so
the estimation-scale information is used as it is.

The optimiser is coordinate exchange over a grid of candidate times, then a bounded scalar
refinement of each time (:func:`_coordinate_exchange`): derivative-free, because a
finite-difference gradient would difference ODE solutions at their tolerance. Why
hand-written: no Python library optimises population designs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["SamplingOptimum", "optimize_sampling"]


@dataclass(frozen=True)
class SamplingOptimum:
    """An optimised sampling schedule and the information before and after.

    Attributes
    ----------
    observable : str
    start, times : ndarray (K,)
        The schedule given and the optimised one (sorted; data time units).
    window : tuple of float
    criterion : str
        ``"D"`` or ``"Ds (NAME, ...)"``.
    value_start, value : float
        The criterion (smaller is better) at ``start`` and at ``times``.
    before, after : DesignEvaluation
    evaluations : int
        Designs evaluated by the optimiser.
    """

    observable: str
    start: np.ndarray
    times: np.ndarray
    window: tuple
    criterion: str
    value_start: float
    value: float
    before: object
    after: object
    evaluations: int

    def table(self) -> str:
        """The standard errors before and after as a text table."""
        head = f"{'parameter':<22} {'RSE % before':>13} {'RSE % after':>12} {'SE ratio':>9}"
        lines = [head, "-" * len(head)]
        for k, name in enumerate(self.after.names):
            b, a = self.before.rse[k], self.after.rse[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = self.after.se[k] / self.before.se[k]
            lines.append(f"{name:<22} {b:>13.1f} {a:>12.1f} {ratio:>9.3f}")
        return "\n".join(lines)


def _schedule(designs, k_obs: int, times, condition_of, within_follow_up: bool = False):
    """The designs with observable ``k_obs`` sampled at ``times`` (every subject; with
    ``within_follow_up`` only the times up to the subject's last recorded time)."""
    out = []
    t_all = np.sort(np.asarray(times, dtype=float))
    for d in designs:
        keep = np.asarray(d.obs) != k_obs
        t_new = t_all[t_all <= np.max(d.time)] if within_follow_up else t_all
        time = np.concatenate([np.asarray(d.time, dtype=float)[keep], t_new])
        order = np.argsort(time, kind="stable")

        def joined(a, fill, dtype=float, keep=keep, order=order, m=t_new.size):
            return np.concatenate([np.asarray(a, dtype=dtype)[keep],
                                   np.full(m, fill, dtype=dtype)])[order]

        changes = dict(time=time[order], obs=joined(d.obs, k_obs, int),
                       value=joined(d.value, 1.0), cens=joined(d.cens, 0, int),
                       limit=joined(d.limit, np.nan))
        if d.condition is not None:
            changes["condition"] = joined(d.condition, condition_of.get(d.id, ""), object)
        if d.sd is not None:
            changes["sd"] = joined(d.sd, np.nan)
        out.append(d.replace(**changes))
    return out


def _criterion(ev, parameters) -> float:
    """-log det FIM (D) or log det of the parameters' covariance (Ds); inf when singular."""
    from ._design_evaluation import _inverse_where_informed

    fim = ev.fim
    if parameters is None:
        sign, logdet = np.linalg.slogdet(fim)
        return -logdet if sign > 0 else math.inf
    # the parameters of interest need information; a nuisance parameter the design does not
    # inform (a variance of a parameter this observable does not see) is left out
    cov = _inverse_where_informed(fim)
    sub = cov[np.ix_(parameters, parameters)]
    if not np.all(np.isfinite(sub)):
        return math.inf
    sign, logdet = np.linalg.slogdet(sub)
    return logdet if sign > 0 else math.inf


def _fim_index(ev, names, where: str) -> list:
    """Positions in ``ev.fim_names`` of the natural-scale ``names``."""
    out = []
    for name in names:
        if name not in ev.names:
            raise ConfigError(f"{where}(parameters=...): unknown parameter {name!r}; "
                              f"expected one of {', '.join(ev.names)}")
        if name.startswith("omega^2 "):
            key = f"log {name}"
        elif name.startswith("omega "):
            raise ConfigError(f"{where}(parameters=...): {name!r} is a covariance; "
                              "expected a typical value, a variance or a residual parameter")
        elif "~" in name:
            key = f"coef {name}"
        elif name in ev.fim_names or f"theta {name}" in ev.fim_names:
            key = f"theta {name}" if f"theta {name}" in ev.fim_names else name
        else:
            key = f"log {name}"
        if key not in ev.fim_names:
            raise ConfigError(f"{where}(parameters=...): {name!r} is not estimated "
                              "on its own scale (a block of Omega?); expected a typical value, "
                              "a variance of its own or a residual parameter")
        out.append(ev.fim_names.index(key))
    return out


def optimize_sampling(config, *, observable: str, times, window, fit=None, data=None,
                      parameters=None, form: str = "reduced", grid: int = 41,
                      max_evaluations: int = 5000,
                      within_follow_up: bool = False) -> SamplingOptimum:
    """Sampling times of one observable that maximise a design's expected information.

    Parameters
    ----------
    config : FitConfig, str or Path
        A population fit config (as :func:`~progression.fit.evaluate_design` takes).
    observable : str
        The observable whose sampling times are optimised (one of the config's).
    times : sequence of float
        The starting schedule: K sampling times in data time units, given to every subject.
    window : (float, float)
        Where the times may go (data time units, low < high).
    fit, data, form
        As :func:`~progression.fit.evaluate_design`.
    parameters : sequence of str, optional
        Ds-optimality for these (names as in ``DesignEvaluation.names``: ``NAME``,
        ``omega^2 NAME``, ``OBS.a``, ``NAME~COV``); default all (D-optimality).
    grid : int
        Candidate times per coordinate-exchange step (equally spaced in the window).
    max_evaluations : int
        Most designs the optimiser evaluates.
    within_follow_up : bool
        Sample each subject only up to its last recorded time in the design (its dropout,
        death or end of study); default every subject at every time.

    Returns
    -------
    SamplingOptimum

    Raises
    ------
    ConfigError
        An unknown observable or parameter, an empty schedule, times outside the window, a
        window that is not (low, high) with low < high, the measured error model.
    """
    from ._design_evaluation import designs_of, evaluate_design, loaded_fit
    from .config import FitConfig, read_fit_config

    cfg = config if isinstance(config, FitConfig) else read_fit_config(
        config, check_data=data is None)
    where = f"{cfg.source}: optimize_sampling"
    observables = list(cfg.errors)
    if observable not in observables:
        raise ConfigError(f"{where}(observable=...): expected one of "
                          f"{', '.join(observables)}, found {observable!r}")
    if str(cfg.errors[observable]).startswith("measured"):
        raise ConfigError(f"{where}: observable {observable!r} has the measured error model "
                          "(a known SD per value); a planned sample has none")
    try:
        lo, hi = (float(w) for w in window)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}(window=...): expected (low, high), found {window!r}") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{where}(window=...): expected finite low < high, found "
                          f"({lo:g}, {hi:g})")
    start = np.asarray(times, dtype=float).ravel()
    if start.size == 0 or not np.all(np.isfinite(start)):
        raise ConfigError(f"{where}(times=...): expected at least one finite sampling time, "
                          f"found {list(start)}")
    if np.any((start < lo) | (start > hi)):
        raise ConfigError(f"{where}(times=...): expected times inside the window "
                          f"[{lo:g}, {hi:g}], found {start[(start < lo) | (start > hi)][0]:g}")
    if int(grid) < 3:
        raise ConfigError(f"{where}(grid=...): expected at least 3 candidate times, found "
                          f"{grid!r}")
    if int(max_evaluations) < 1:
        raise ConfigError(f"{where}(max_evaluations=...): expected a positive number, found "
                          f"{max_evaluations!r}")
    base = designs_of(cfg, data)
    fit = loaded_fit(fit)          # a fit folder is read once, not at every evaluation
    k_obs = observables.index(observable)
    conditions = {d.id: next((c for c, o in zip(d.condition, d.obs, strict=True)
                              if o == k_obs), "") for d in base if d.condition is not None}

    def evaluate(t):
        return evaluate_design(cfg, fit=fit, form=form,
                               data=_schedule(base, k_obs, t, conditions, within_follow_up))

    before = evaluate(start)
    index = None if parameters is None else _fim_index(before, list(parameters), where)
    count = [0]

    def objective(t):
        count[0] += 1
        try:
            return _criterion(evaluate(t), index)
        except Exception:          # a schedule the model cannot be solved at: worst value
            return math.inf

    best = _coordinate_exchange(objective, start, lo, hi, grid, int(max_evaluations))
    after = evaluate(best)
    label = "D" if parameters is None else f"Ds ({', '.join(parameters)})"
    return SamplingOptimum(observable, np.sort(start), best, (lo, hi), label,
                           _criterion(before, index), _criterion(after, index), before, after,
                           count[0])


def _coordinate_exchange(objective, start, lo, hi, grid: int, budget: int):
    """Minimise ``objective`` over times in [lo, hi]: sweeps of coordinate exchange (each
    time moved to the best of ``grid`` equally spaced candidates, the others held), then each
    time refined by a bounded scalar search within one grid step; a move is kept only when it
    improves. PopED's line search works the same way; scipy's bounded Powell returned points
    worse than its start here (its line search settles in a local minimum along the line)."""
    from scipy.optimize import minimize_scalar

    t = np.array(start, dtype=float)
    f = objective(t)
    candidates = np.linspace(lo, hi, grid)
    step = (hi - lo) / (grid - 1)
    used = 1
    for _ in range(10):
        moved = False
        for k in range(t.size):
            for c in candidates:
                if used >= budget:
                    return np.sort(t)
                trial = t.copy()
                trial[k] = c
                v = objective(trial)
                used += 1
                if v < f - 1e-12:
                    t, f, moved = trial, v, True
        if not moved:
            break
    for k in range(t.size):
        if used >= budget:
            break
        a, b = max(lo, t[k] - step), min(hi, t[k] + step)

        def along(x, k=k):
            trial = t.copy()
            trial[k] = x
            return objective(trial)

        r = minimize_scalar(along, bounds=(a, b), method="bounded",
                            options={"xatol": 1e-6 * (hi - lo), "maxiter": 60})
        used += int(r.nfev)
        if r.fun < f:
            t[k], f = float(r.x), float(r.fun)
    return np.sort(t)
