"""The time-to-event VPC of a joint population fit: Kaplan-Meier of the data against the
Kaplan-Meier curves of cohorts simulated from the fitted population.

Each of K replicates draws every subject anew from the fitted population (random effects
around its own typical values, the hazard's Exp(1) threshold through its score ``z``, the
event time from :class:`~._vpc_events.EndEvents` on the fit's model), drawn again (up to
:data:`~._vpc_events.MAX_ENTRY_DRAWS` times) while its event comes before its entry (the
subject was enrolled alive), and censored where the data censor it: at its own censoring time
when the data right-censor it, else at the cohort's last record time (administrative: when
follow-up would have ended for a subject who died is not in the data). The replicate's
Kaplan-Meier curve uses the subjects' entry times (delayed entry), like the data's. On a grid
of :data:`GRID` times over the follow-up the VPC holds the data's survival and the simulated
2.5th, 50th and 97.5th percentiles, and at :data:`N_TIMES` of them (evenly spaced) it counts
the times where the data lie outside that band. An interval-censored record enters the data's
curve at its upper end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...stats.survival import kaplan_meier
from .._survival_likelihood import RIGHT
from ._vpc_events import MAX_ENTRY_DRAWS, EndEvents

__all__ = ["SurvivalVPC", "survival_vpc", "survival_vpc_lines", "N_TIMES", "GRID"]

#: Times at which the curves are compared (evenly over the follow-up), and the finer grid
#: they are held on (for the figure: every GRID / N_TIMES-th point is compared).
N_TIMES = 20
GRID = 100


@dataclass(frozen=True)
class SurvivalVPC:
    """Kaplan-Meier VPC of a joint fit's time-to-event data.

    Attributes
    ----------
    event : str
        The data's event types the fit counts as its hazard's event (``[survival] events``).
    times : ndarray (GRID,)
        Data times (the model's time unit).
    observed : ndarray (GRID,)
        The data's Kaplan-Meier survival at ``times``.
    lower, median, upper : ndarray (GRID,)
        Percentiles 2.5, 50 and 97.5 of the simulated cohorts' survival at ``times``.
    n_sim : int
    km_time, km_survival : ndarray (k + 1,)
        The data's Kaplan-Meier step function (:func:`progression.stats.survival.
        kaplan_meier`).
    """

    event: str
    times: np.ndarray
    observed: np.ndarray
    lower: np.ndarray
    median: np.ndarray
    upper: np.ndarray
    n_sim: int
    km_time: np.ndarray
    km_survival: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        """Indices of the :data:`N_TIMES` compared times among ``times``."""
        step = max(1, self.times.size // N_TIMES)
        return np.arange(step - 1, self.times.size, step)

    @property
    def misses(self) -> int:
        """Compared times where the data's survival lies outside the simulated 95 % band."""
        k = self.scored
        return int(np.sum((self.observed[k] < self.lower[k])
                          | (self.observed[k] > self.upper[k])))


def _step(t_km, s_km, times):
    """A Kaplan-Meier step function (``t_km[0] = 0``) at ``times``."""
    return s_km[np.searchsorted(t_km, times, side="right") - 1]


def _records(designs):
    """The subjects with a record (int array), and their records' exit times, event flags
    and entries (0 for none)."""
    have = np.array([i for i, d in enumerate(designs)
                     if getattr(d, "survival", None) is not None], dtype=int)
    recs = [designs[i].survival for i in have]
    time = np.array([r.time for r in recs], dtype=float)
    event = np.array([r.kind != RIGHT for r in recs], dtype=bool)
    entry = np.array([r.entry if np.isfinite(r.entry) else 0.0 for r in recs], dtype=float)
    return have, time, event, entry


def survival_vpc(model, mu, omega, eta_columns, n_sim: int, seed: int
                 ) -> SurvivalVPC | None:
    """The Kaplan-Meier VPC of a joint fit (module docstring).

    Parameters
    ----------
    model : ProblemModel
        The fit's individual model; its problem has a ``[survival]`` part (the VPC times
        its hazard's event, whether terminal or not, through the model's other events).
    mu : ndarray (N, D)
        Each subject's typical values on the estimation scale.
    omega : ndarray (E, E)
    eta_columns : int array (E,)
    n_sim, seed : int

    Returns
    -------
    SurvivalVPC or None
        Over the subjects with a time-to-event record (None when no subject has one: a
        subject without an events-table row adds nothing to the survival likelihood either).
    """
    problem = model.problem
    spec = problem.survival
    hazard = next(h for h in problem.model.spec.hazards if h.name == spec.hazard)
    # the hazard's event alone: another terminal event of the model (a competing death
    # mechanism the fit does not use) must not hide it
    end = EndEvents(problem, model.designs, (hazard.event,), alone=True)
    have, time, event, entry = _records(model.designs)
    if not have.size:
        return None
    N = time.size
    follow_up = float(time.max())
    # where a simulated subject's event would be seen: its own censoring, else the end
    censor = np.where(event, follow_up, time)
    rng = np.random.default_rng([seed, 3])
    L = np.linalg.cholesky(np.atleast_2d(np.asarray(omega, dtype=float)))
    E = len(eta_columns)
    index = np.tile(have, n_sim)                  # the subjects' rows of the designs
    phi = np.repeat(mu[have][None], n_sim, axis=0).reshape(n_sim * N, -1).copy()
    row_entry = np.tile(entry, n_sim)

    def draw(rows):
        phi[rows] = mu[index[rows]]
        phi[np.ix_(rows, eta_columns)] += rng.standard_normal((rows.size, E)) @ L.T
        return end.event_times(model.thetas(phi[rows]), index[rows], rng, follow_up)

    rows = np.arange(index.size)
    t_sim = draw(rows)
    for _ in range(MAX_ENTRY_DRAWS):
        dead = np.flatnonzero(t_sim <= row_entry)
        if dead.size == 0:
            break
        t_sim[dead] = draw(dead)
    times = np.linspace(0.0, follow_up, GRID + 1)[1:]
    t_km, s_km = kaplan_meier(time, event, entry)
    curves = np.empty((n_sim, times.size))
    for k in range(n_sim):
        ts = t_sim[k * N:(k + 1) * N]
        seen = ts <= censor
        tk, sk = kaplan_meier(np.where(seen, ts, censor), seen, entry)
        curves[k] = _step(tk, sk, times)
    lo, med, hi = np.percentile(curves, [2.5, 50.0, 97.5], axis=0)
    return SurvivalVPC(event=" or ".join(spec.events), times=times,
                       observed=_step(t_km, s_km, times), lower=lo, median=med, upper=hi,
                       n_sim=int(n_sim), km_time=t_km, km_survival=s_km)


def survival_vpc_lines(svpc: SurvivalVPC | None) -> list[str]:
    """Markdown lines for ``report.md`` (``[]`` without a survival VPC)."""
    if svpc is None:
        return []
    return [f"Kaplan-Meier VPC of {svpc.event} ({svpc.n_sim} simulated cohorts, "
            f"{svpc.scored.size} times over the follow-up): the data's survival lies outside "
            f"the simulated 95 % band at {svpc.misses} of {svpc.scored.size} times "
            f"(figure `vpc_survival.png`).", ""]
