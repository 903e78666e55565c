"""Survival scores of a joint fit's own subjects, conditioned on the survival their data record.

A model's ``[hazards.NAME]`` fires its event when the cumulative hazard ``Lambda(t)`` (from
model time 0) reaches the subject's threshold ``E ~ Exp(1)``, set by the score parameter
``z_NAME`` through ``E = -log Phi(-z)`` (:class:`progression.model.spec.Hazard`). A fit holds
``z_NAME`` at 0, so that simulated forward from its estimates every fitted subject would die at
its hazard's median, whatever the data say about it. For a fit with ``[survival]`` the data
do say: given the subject's parameters (each row: the estimates, or a parameter draw), the
threshold is

=====================  ==========================================================
record                 threshold ``E``
=====================  ==========================================================
event at ``T``         ``Lambda(T)`` exactly (the event happened there)
censored at ``T``      ``Lambda(T) + Exp(1)`` (the memoryless excess beyond ``T``)
event in ``(L, R]``    ``Lambda(L) + X``, ``X ~ Exp(1)`` truncated to ``(0, Lambda(R) - Lambda(L))``
no record              ``Lambda(t_last) + Exp(1)`` (alive at its last observation)
=====================  ==========================================================

so that the untreated simulation of a subject dies when its data say it died, and a treatment
moves that death by moving ``Lambda``. The random parts (Exp(1) excess, the truncated draw)
belong to the subject: every parameter draw of the same subject reuses them (common random
numbers), and they come from a stream spawned off the caller's generator so that nothing else
it draws changes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from ._survival_likelihood import EXACT, INTERVAL, RIGHT

__all__ = ["conditioned_scores", "score_of_threshold"]

#: Bounds of a hazard's score parameter (progression.model._sections): z in [-8, 8].
Z_BOUND = 8.0


def score_of_threshold(E) -> np.ndarray:
    """The score ``z`` with threshold ``-log Phi(-z) = E`` (``E >= 0``), clipped to the score
    parameter's bounds [-8, 8]: ``z = -Phi^-1(exp(-E))``."""
    E = np.asarray(E, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        z = -ndtri(np.exp(-np.maximum(E, 0.0)))
    return np.clip(z, -Z_BOUND, Z_BOUND)


def _needed_times(fit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per fitted subject: the record kind (-1 without one), the data time at which Lambda
    sets the threshold's lower end, and the upper end of an interval (NaN otherwise)."""
    m = len(fit.designs)
    kind = np.full(m, -1, dtype=int)
    low = np.full(m, np.nan)
    high = np.full(m, np.nan)
    for i, d in enumerate(fit.designs):
        rec = getattr(d, "survival", None)
        if rec is None:
            t = np.asarray(d.time, dtype=float)
            low[i] = float(t.max()) if t.size else 0.0
            continue
        kind[i] = rec.kind
        if rec.kind == INTERVAL:
            low[i], high[i] = rec.lower, rec.time
        else:
            low[i] = rec.time
    return kind, low, high


def conditioned_scores(fit, table, offsets, subject, rng, **options):
    """Set each row's score ``z_NAME`` of the fit's ``[survival]`` hazard from its subject's
    recorded survival (see the module docstring).

    Parameters
    ----------
    fit : FitResult
        A fit with ``[survival]`` (``fit.survival``) and its subjects' designs.
    table : ndarray (R, P)
        Model parameter rows (model order): the subjects' estimates and any parameter draws.
    offsets : ndarray (R,)
        Model time of each row's data time 0 (months).
    subject : int ndarray (R,)
        The fitted subject (index into ``fit.designs``) of each row.
    rng : numpy.random.Generator
        Parent generator; one child stream is spawned from it.
    **options
        Solver options for :func:`progression.simulate` (those of the caller's simulations,
        so that the threshold lies on the trajectory the caller simulates).

    Returns
    -------
    table : ndarray (R, P)
        A copy with the score column set (rows whose simulation failed or whose time falls
        before the model's t = 0 keep their score).
    note : str
        One line for the caller's summary: what was conditioned on what.
    """
    from ..simulate import simulate
    from ._draws import _side_stream

    model = fit.model
    name = fit.survival.hazard
    hazard = next(h for h in model.spec.hazards if h.name == name)
    table = np.array(table, dtype=float, copy=True)
    offsets = np.asarray(offsets, dtype=float)
    subject = np.asarray(subject, dtype=int)
    kind, low, high = _needed_times(fit)
    m = kind.size
    # the subject's own random parts, drawn once for all of its rows
    stream = _side_stream(rng)
    excess = stream.standard_exponential(m)
    uniform = stream.random(m)

    t_low = low[subject] + offsets
    t_high = np.where(np.isnan(high[subject]), t_low, high[subject] + offsets)
    ok = np.isfinite(t_low) & (t_low >= 0) & np.all(np.isfinite(table), axis=1)
    lam_low = np.full(table.shape[0], np.nan)
    lam_high = np.full(table.shape[0], np.nan)
    rows = np.nonzero(ok)[0]
    if rows.size:
        # Lambda along the untreated trajectory without the terminal events (the score being
        # set is what decides the death event, and the likelihood reads Lambda without them)
        times = np.unique(np.r_[t_low[rows], t_high[rows]])
        sim = simulate(model, table[rows], times, terminal_events=False, **options)
        state = np.asarray(sim.states)[:, model.state_names.index(hazard.state), :]
        r = np.arange(rows.size)
        lam_low[rows] = state[r, np.searchsorted(times, t_low[rows])]
        lam_high[rows] = state[r, np.searchsorted(times, t_high[rows])]
        bad = ~np.asarray(sim.success, dtype=bool)
        lam_low[rows[bad]] = np.nan
    k = kind[subject]
    width = np.maximum(lam_high - lam_low, 0.0)
    # inverse CDF of Exp(1) truncated to (0, width)
    truncated = -np.log1p(-uniform[subject] * -np.expm1(-width))
    E = np.where(k == EXACT, lam_low,
                 np.where(k == INTERVAL, lam_low + truncated, lam_low + excess[subject]))
    j = model.parameter_index(hazard.score)
    done = np.isfinite(E)
    table[done, j] = score_of_threshold(E[done])

    present = np.unique(subject)
    labels = {EXACT: "died", RIGHT: "censored", INTERVAL: "interval-censored",
              -1: "without a record"}
    what = ", ".join(f"{int(np.sum(kind[present] == c))} {label}"
                     for c, label in labels.items() if np.any(kind[present] == c))
    note = (f"survival scores {hazard.score} of the fit's own subjects conditioned on their "
            f"recorded survival ([survival] hazard {name!r}; {what}): untreated, each dies "
            f"when its data say it did, a censored one after its censoring time")
    left = np.unique(subject[~done]).size
    if left:
        note += (f"; {left} subject(s) kept the held score in some rows (their simulation "
                 f"failed, or the row's time lies before the model's t = 0)")
    return table, note
