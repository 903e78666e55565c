"""Survival from clinical onset of a cohort: the Kaplan-Meier estimand registries publish.

Published survival from onset (medians of 20-48 months, > 10 % alive at 10 years) is the
Kaplan-Meier over the *patients in the data* (diagnosed, enrolled), time counted from onset,
without delayed entry: a patient who dies before diagnosis is never a case. The Kaplan-Meier
with delayed entry at enrolment estimates another quantity: the survival of everyone with
onset, deaths before diagnosis included, and only when the diagnostic delay is independent of
survival (fast progressors are diagnosed sooner in ENCALS data and in the presets, which
biases it low; ``tests/test_survival_estimands.py`` shows both effects on a simulated truth).

:func:`onset_survival` gives both from one cohort; ``describe`` and
``benchmarks/als_calibration_table.py`` use it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from progression.stats.survival import kaplan_meier

from ..data.cohort import Cohort

__all__ = ["OnsetSurvival", "onset_survival"]


class OnsetSurvival(NamedTuple):
    """Kaplan-Meier survival from onset of the patients with a known onset.

    Attributes
    ----------
    times, survival : ndarray (k,)
        Event times (months since onset) and the survival just after each.
    exit : ndarray (m,)
        Each patient's exit time since onset (death or censoring), months.
    entry : ndarray (m,)
        Each patient's entry time since onset (enrolment), months; used only when
        ``delayed_entry``.
    died : ndarray of bool (m,)
        Death (or tracheostomy / permanent ventilation) at ``exit``.
    """

    times: np.ndarray
    survival: np.ndarray
    exit: np.ndarray
    entry: np.ndarray
    died: np.ndarray


def onset_survival(cohort: Cohort, *, delayed_entry: bool = False,
                   exits: dict | None = None) -> OnsetSurvival | None:
    """Kaplan-Meier survival from clinical onset over the cohort's patients.

    Parameters
    ----------
    cohort : Cohort
        Times in months relative to the time origin (enrolment); ``onset_time`` covariate
        (months, <= 0). Patients without a numeric ``onset_time`` are left out.
    delayed_entry : bool
        False (default, the published estimand): every patient is at risk from onset.
        True: a patient enters the risk set at enrolment (left truncation at -onset_time).
    exits : dict, optional
        subject -> (exit time, died, dropped out) as from ``describe._exit`` (computed when
        not given).

    Returns
    -------
    OnsetSurvival or None
        None when no patient has a numeric ``onset_time``.
    """
    from .describe import _exit

    if exits is None:
        exits = _exit(cohort)
    cov = cohort.covariates
    ent, ext, evt = [], [], []
    for s in cohort.subjects:
        o = cov.get(s, {}).get("onset_time")
        if not isinstance(o, float):
            continue
        t, died, _ = exits[s]
        ent.append(-o)
        ext.append(t - o)
        evt.append(bool(died))
    if not ent:
        return None
    ent_a, ext_a, evt_a = np.array(ent), np.array(ext), np.array(evt, dtype=bool)
    ts, S = kaplan_meier(ext_a, evt_a, ent_a if delayed_entry else None)
    return OnsetSurvival(np.asarray(ts), np.asarray(S), ext_a, ent_a, evt_a)
