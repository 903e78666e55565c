"""Results of virtual trials: replicate rows, power with Wilson intervals, power curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._repr import brief
from ..stats.summary import wilson_interval
from ._tables import _quiet, _write_csv

if TYPE_CHECKING:
    from .trials import VirtualTrial

__all__ = ["TrialResults", "PowerCurve", "PowerUncertainty"]


@dataclass
class TrialResults:
    """Replicate analyses of one design (one row per replicate and comparison)."""

    endpoint: str
    n_per_arm: int
    rows: list
    alpha: float
    pool_size: int
    eligible_fraction: float
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        reps = len(self.rows) // max(len(self.comparisons()), 1)
        power = ", ".join(f"{c} {self.power(c):.2f}" for c in self.comparisons())
        return brief(self, f"endpoint {self.endpoint!r}", f"{self.n_per_arm} per arm",
                     f"{reps} replicates", f"power: {power}" if power else "")

    def comparisons(self) -> list[str]:
        return list(dict.fromkeys(r["comparison"] for r in self.rows))

    def power(self, comparison: str | None = None) -> float:
        """Fraction of replicates rejecting (first comparison by default)."""
        comparison = comparison or self.comparisons()[0]
        rej = [r["reject"] for r in self.rows if r["comparison"] == comparison]
        return float(np.mean(rej)) if rej else float("nan")

    def summary(self) -> list[dict]:
        out = []
        for comp in self.comparisons():
            rows = [r for r in self.rows if r["comparison"] == comp]
            rej = np.array([r["reject"] for r in rows], float)
            est = np.array([r["estimate"] for r in rows], float)
            rel = np.array([r.get("relative_effect", np.nan) for r in rows], float)
            lo, hi = _wilson(rej.sum(), rej.size)
            with _quiet():
                # plain floats: the rows print and serialise as numbers, not np.float64(...)
                row = {"comparison": comp, "endpoint": self.endpoint,
                       "n_per_arm": self.n_per_arm, "reps": rej.size,
                       "power": float(rej.mean()), "power_ci_low": lo, "power_ci_high": hi,
                       "mean_estimate": float(np.nanmean(est)),
                       "sd_estimate": float(np.nanstd(est)),
                       "median_relative_effect": float(np.nanmedian(rel))}
                if self.endpoint == "survival":
                    row["median_hr_logrank"] = float(np.nanmedian([r["hr_logrank"]
                                                                   for r in rows]))
                    row["median_hr_exponential"] = float(np.nanmedian([r["hr_exponential"]
                                                                       for r in rows]))
            out.append(row)
        return out


def _wilson(k: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval of the power (scipy's binomtest; z = 1.95996..., not 1.96)."""
    return wilson_interval(k, n)


@dataclass
class PowerUncertainty:
    """Power at a population fit's estimates and under its parameter uncertainty
    (:meth:`VirtualTrial.power_uncertainty`).

    Attributes
    ----------
    at_estimates : TrialResults
        Replicates at the estimates (between-patient variability, noise, dropout).
    draws : list of TrialResults
        The same design and seeds under each draw of the population parameters.
    population : ndarray (D, K)
        The drawn population parameters (estimation scales, ``covariance_names`` order).
    undetermined : list of str
        Population parameters held at the estimate (no covariance for them).
    notes : list of str
    """

    at_estimates: TrialResults
    draws: list
    population: np.ndarray
    undetermined: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        first = self.at_estimates
        comparison = first.comparisons()[0] if first.rows else None
        parts = [f"{first.n_per_arm} per arm"]
        if comparison is not None:
            with _quiet():
                assurance = float(np.nanmean(self.power(comparison)))
            parts += [repr(comparison), f"power at the estimates {first.power(comparison):.2f}",
                      f"assurance {assurance:.2f} over {len(self.draws)} draws"]
        return brief(self, *parts)

    def power(self, comparison: str | None = None) -> np.ndarray:
        """(D,) power under each parameter draw."""
        return np.array([r.power(comparison) for r in self.draws])

    def summary(self) -> list[dict]:
        """Per comparison: power at the estimates (Wilson 95% interval: Monte Carlo error of
        the replicates), the assurance (mean power over the draws) and the 2.5th, 50th and
        97.5th percentiles of the power over the draws."""
        out = []
        for row in self.at_estimates.summary():
            p = self.power(row["comparison"])
            with _quiet():
                lo, med, hi = np.nanpercentile(p, [2.5, 50, 97.5])
            out.append({"comparison": row["comparison"], "endpoint": row["endpoint"],
                        "n_per_arm": row["n_per_arm"], "reps": row["reps"],
                        "power_at_estimates": row["power"],
                        "power_ci_low": row["power_ci_low"],
                        "power_ci_high": row["power_ci_high"], "draws": int(p.size),
                        "assurance": float(np.nanmean(p)), "power_draws_p2.5": float(lo),
                        "power_draws_median": float(med), "power_draws_p97.5": float(hi)})
        return out

    def to_markdown(self) -> str:
        lines = ["| comparison | n per arm | replicates | power at the estimates (95% CI) | "
                 "draws | assurance | power over draws (2.5-97.5%) |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for r in self.summary():
            lines.append(f"| {r['comparison']} | {r['n_per_arm']} | {r['reps']} | "
                         f"{r['power_at_estimates']:.2f} ({r['power_ci_low']:.2f}-"
                         f"{r['power_ci_high']:.2f}) | {r['draws']} | {r['assurance']:.2f} | "
                         f"{r['power_draws_p2.5']:.2f}-{r['power_draws_p97.5']:.2f} |")
        lines += ["", "Power at the estimates: between-patient variability, measurement noise "
                  "and dropout at the fitted population parameters. Assurance: the power "
                  "averaged over draws of the population parameters from the covariance "
                  "step (parameter uncertainty)."]
        if self.notes:
            lines += ["", "Notes:", *[f"* {n}" for n in dict.fromkeys(self.notes)]]
        return "\n".join(lines) + "\n"


class PowerCurve:
    """Power against sample size per arm, with Wilson 95% intervals."""

    def __init__(self, trial: VirtualTrial, results: list[TrialResults]):
        self.trial = trial
        self.results = results

    def __repr__(self) -> str:
        first = self.results[0] if self.results else None
        if first is None or not first.rows:
            return brief(self, f"sample sizes {self.sample_sizes}")
        comparison = first.comparisons()[0]
        power = " / ".join(f"{p:.2f}" for p in self.power(comparison))
        sizes = " / ".join(str(n) for n in self.sample_sizes)
        return brief(self, f"endpoint {first.endpoint!r}", repr(comparison),
                     f"power {power} at {sizes} per arm")

    @property
    def sample_sizes(self) -> list[int]:
        return [r.n_per_arm for r in self.results]

    def table(self) -> list[dict]:
        return [row for r in self.results for row in r.summary()]

    def power(self, comparison: str | None = None) -> np.ndarray:
        return np.array([r.power(comparison) for r in self.results])

    def to_markdown(self) -> str:
        t = self.trial
        first = self.results[0]
        arms = "; ".join(f"**{k}**: " + (", ".join(iv.label for iv in v) or "no intervention")
                         for k, v in t.arms.items())
        lines = [f"# Virtual trial power: {t.model.name}", "",
                 f"Arms: {arms}. Primary endpoint: {t.endpoint} (alpha {t.alpha:g}, "
                 f"two-sided); follow-up {t.follow_up:g} months, visits every "
                 f"{t.visit_every:g}; ALSFRS-R noise SD {t.noise_sd:g}; dropout "
                 f"{t.dropout.rate:g}/month (informative {t.dropout.informative:g}); "
                 f"enrolment: duration {t.enrolment.duration}, ΔFS {t.enrolment.dfs}, "
                 f"ALSFRS-R >= {t.enrolment.alsfrs_min}. Pool of {first.pool_size} eligible "
                 f"patients ({100 * first.eligible_fraction:.0f}% of candidates eligible)."
                 + (f" Candidates: {t.population.description}."
                    if getattr(t, "population", None) is not None else ""), "",
                 "| comparison | n per arm | replicates | power (95% CI) | mean estimate | "
                 "median relative effect |", "|---|---:|---:|---:|---:|---:|"]
        for r in self.table():
            lines.append(f"| {r['comparison']} | {r['n_per_arm']} | {r['reps']} | "
                         f"{r['power']:.2f} ({r['power_ci_low']:.2f}-{r['power_ci_high']:.2f})"
                         f" | {r['mean_estimate']:.3g} | {r['median_relative_effect']:.2f} |")
        lines += ["", "Estimate: difference in mean ALSFRS-R slope (points/month) or change "
                  "(points), treated minus control; log hazard ratio for survival. Relative "
                  "effect: slowing fraction, or 1 - HR."]
        notes = [n for r in self.results for n in r.notes]
        if notes:
            lines += ["", "Notes:", *[f"* {n}" for n in dict.fromkeys(notes)]]
        return "\n".join(lines) + "\n"

    def plot(self):
        """Power against patients per arm with Wilson 95% intervals; see
        :func:`progression.plots.trials.plot_power`."""
        from ..plots.trials import plot_power

        return plot_power(self)

    def write(self, folder, *, overwrite: bool = False, inputs=()) -> Path:
        """Write ``power.csv``, ``power.md`` and ``power.png`` (atomically).

        An existing folder is replaced only with ``overwrite=True`` and only if progression
        wrote it (``.progression`` marker); a folder that is or contains one of ``inputs`` is
        refused with an :class:`~progression.errors.OutputError`.
        """
        from .._io import atomic_directory
        from ..plots import _pyplot

        folder = Path(folder)
        with atomic_directory(folder, overwrite=overwrite, inputs=inputs,
                              what="power-curve folder") as tmp:
            _write_csv(tmp / "power.csv", self.table())
            (tmp / "power.md").write_text(self.to_markdown())
            fig = self.plot()
            fig.savefig(tmp / "power.png", dpi=110)
            _pyplot().close(fig)
        return folder
