"""Clinical endpoints of a scenario simulation: change from baseline, slopes, time to event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._tables import _quiet
from .content import defaults_for

__all__ = ["Endpoints", "AUTO"]


class _Auto:
    """Marks an endpoint option left to the model's disease content (see :meth:`resolved`)."""

    def __repr__(self) -> str:
        return "AUTO"

    def __reduce__(self):
        return "AUTO"


#: An option not given: taken from the model's disease content when resolved
#: (:func:`progression.virtual.content.defaults_for`; for an ALS model
#: ``progression/als/defaults.toml``), else from :data:`GENERIC`.
AUTO = _Auto()

#: Defaults for a model without disease content (``function`` and ``threshold`` must then
#: be given; ``times`` and ``slope_window`` follow the horizon).
GENERIC = {"event": "", "markers": (), "share": None}


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """Which endpoints :func:`compare` computes (times in months after the start).

    Options left at ``AUTO`` come from the model's disease content when the endpoints are
    :meth:`resolved` against a model (an ALS model: ALSFRS-R change at 6/12/18 months, its
    slope over 0-12 months, time to ALSFRS-R <= 24, death, NfL and CRP, inflammatory share;
    ``progression/als/defaults.toml``).

    Parameters
    ----------
    function : str
        Functional score observable (ALSFRS-R).
    times : sequence of float
        Times of the change-from-baseline endpoints.
    slope_window : (float, float)
        Window of the least-squares slope of ``function``.
    threshold : float
        Time to ``function`` falling to this value.
    event : str
        Survival event (death or permanent ventilation).
    markers : sequence of str
        Biomarkers reported as % change from baseline at ``times``.
    share : str, optional
        Observable averaged over ``slope_window`` (share of the hazard due to inflammation).
    """

    function: str = AUTO
    times: Sequence[float] = AUTO
    slope_window: tuple[float, float] = AUTO
    threshold: float = AUTO
    event: str = AUTO
    markers: Sequence[str] = AUTO
    share: str | None = AUTO

    def with_defaults(self, model, horizon: float) -> Endpoints:
        """Options left at ``AUTO`` filled from the model's disease content, else generic
        ones (times: the horizon; slope window: 0 to the horizon; no event, markers or share).

        Raises
        ------
        ConfigError
            ``function`` or ``threshold`` not given for a model without disease content.
        """
        given = {k: getattr(self, k) for k in self.__dataclass_fields__}
        missing = [k for k, v in given.items() if v is AUTO]
        if not missing:
            return self
        content = defaults_for(model).get("endpoints", {})
        generic = {**GENERIC, "times": (float(horizon),), "slope_window": (0.0, float(horizon))}
        for key in missing:
            if key in content:
                given[key] = content[key]
            elif key in generic:
                given[key] = generic[key]
            else:
                raise ConfigError(f"endpoints.{key}: model {model.name!r} has no disease "
                                  f"content with a default {key}; give it (e.g. "
                                  f"Endpoints({key}=...))")
        return Endpoints(**given)

    def resolved(self, model, horizon: float) -> Endpoints:
        """Options left at ``AUTO`` filled (:meth:`with_defaults`); then drop what the model
        lacks or what lies beyond the horizon."""
        self = self.with_defaults(model, horizon)
        obs = set(model.observable_names) | set(model.state_names)
        if self.function not in obs:
            raise ConfigError(f"endpoints.function: model {model.name!r} has no observable "
                              f"{self.function!r}")
        events = {e.name for e in model.events}
        a, b = self.slope_window
        if not 0 <= a < b:
            raise ConfigError(f"endpoints.slope_window: expected 0 <= start < end, found "
                              f"{self.slope_window}")
        return Endpoints(
            function=self.function,
            times=tuple(float(t) for t in self.times if 0 < t <= horizon + 1e-9),
            slope_window=(a, min(b, horizon)),
            threshold=float(self.threshold),
            event=self.event if self.event in events else "",
            markers=tuple(mk for mk in self.markers if mk in obs),
            share=self.share if self.share in obs else None,
        )

    def columns(self) -> list[str]:
        f = self.function
        cols = [f"{f}_change_{t:g}m" for t in self.times]
        a, b = self.slope_window
        cols.append(f"{f}_slope_{a:g}-{b:g}m")
        cols += [f"time_to_{f}_le_{self.threshold:g}", f"{f}_le_{self.threshold:g}_reached"]
        if self.event:
            cols += [f"time_to_{self.event}", f"{self.event}_observed"]
        cols += [f"{mk}_change_pct_{t:g}m" for mk in self.markers for t in self.times]
        if self.share:
            cols.append(f"{self.share}_mean_{a:g}-{b:g}m")
        return cols

    def time_to_event_pairs(self) -> list[tuple[str, str]]:
        f = self.function
        pairs = [(f"time_to_{f}_le_{self.threshold:g}", f"{f}_le_{self.threshold:g}_reached")]
        if self.event:
            pairs.append((f"time_to_{self.event}", f"{self.event}_observed"))
        return pairs


def _endpoint_values(ep: Endpoints, tau, sim, baseline: dict, valid) -> dict:
    """Per-subject endpoints from a scenario simulation (rows of ``sim``)."""
    horizon = float(tau[-1])
    F = np.array(sim[ep.function], dtype=float)
    F[~valid] = np.nan
    out = {}
    f0 = baseline[ep.function]
    for t in ep.times:
        j = int(np.argmin(np.abs(tau - t)))
        out[f"{ep.function}_change_{t:g}m"] = F[:, j] - f0
    a, b = ep.slope_window
    win = (tau >= a - 1e-9) & (tau <= b + 1e-9)
    x = tau[win]
    Y = F[:, win]
    ok = np.isfinite(Y)
    n = ok.sum(axis=1)
    xm = np.where(ok, x[None], 0.0).sum(1) / np.maximum(n, 1)
    ym = np.where(ok, Y, 0.0).sum(1) / np.maximum(n, 1)
    dx = np.where(ok, x[None] - xm[:, None], 0.0)
    dy = np.where(ok, Y - ym[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (dx * dy).sum(1) / (dx * dx).sum(1)
    out[f"{ep.function}_slope_{a:g}-{b:g}m"] = np.where(n >= 3, slope, np.nan)
    # time to threshold (linear interpolation on the output grid), censored at death/horizon
    thr = ep.threshold
    below = F <= thr
    reached = below.any(axis=1)
    k = np.argmax(below, axis=1)
    t_hit = np.full(F.shape[0], np.nan)
    for i in np.nonzero(reached)[0]:
        j = k[i]
        if j == 0:
            t_hit[i] = tau[0]
        else:
            f1, f2 = F[i, j - 1], F[i, j]
            w = (f1 - thr) / (f1 - f2) if f1 != f2 else 1.0
            t_hit[i] = tau[j - 1] + w * (tau[j] - tau[j - 1])
    last_alive = np.where(np.isfinite(F), tau[None], -np.inf).max(axis=1)
    death = np.asarray(sim.event_time(ep.event), float) if ep.event else np.full(F.shape[0],
                                                                                  np.nan)
    censor = np.where(np.isfinite(death), death, np.minimum(last_alive, horizon))
    out[f"time_to_{ep.function}_le_{thr:g}"] = np.where(reached, t_hit, censor)
    out[f"{ep.function}_le_{thr:g}_reached"] = reached.astype(float)
    if ep.event:
        died = np.isfinite(death) & (death <= horizon)
        out[f"time_to_{ep.event}"] = np.where(died, death, horizon)
        out[f"{ep.event}_observed"] = died.astype(float)
    for mk in ep.markers:
        M = np.array(sim[mk], dtype=float)
        M[~valid] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            for t in ep.times:
                j = int(np.argmin(np.abs(tau - t)))
                out[f"{mk}_change_pct_{t:g}m"] = 100.0 * (M[:, j] / baseline[mk] - 1.0)
    if ep.share:
        S = np.array(sim[ep.share], dtype=float)
        S[~valid] = np.nan
        with _quiet():
            out[f"{ep.share}_mean_{a:g}-{b:g}m"] = np.nanmean(
                np.where(win[None], S, np.nan), axis=1) if S[:, win].size else np.nan
    for key in out:
        out[key] = np.where(valid, out[key], np.nan)
    return out
