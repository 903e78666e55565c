"""The result of a population parameter's profile likelihood (:class:`PopulationProfile`)
and its Markdown table; the refits that produce it are in
:mod:`progression.fit._population_profile`."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["PopulationProfile", "markdown_table", "slug"]


@dataclass(frozen=True)
class PopulationProfile:
    """The profile likelihood of one population parameter.

    Attributes
    ----------
    parameter : str
        ``NAME`` (a typical value), ``"omega^2 NAME"`` (a random effect's variance) or
        ``"OBS.a"`` (``.b``, ``.sigma``: a residual parameter), as in the parameter table.
    estimate : float
        The fit's value (natural scale).
    ofv : float
        The fit's OFV, the reference of ``delta_ofv``.
    values : tuple of float
        The held values refitted, ascending (natural scale).
    delta_ofv : tuple of float
        ``OFV(value) - ofv`` of each refit (NaN for a refit that failed).
    interval : (float, float)
        The profile-likelihood interval; an end not reached within the bounds or the refits
        is the farthest value whose refit stayed below the threshold (the estimate if none),
        flagged in ``open_ends``.
    open_ends : (bool, bool)
        True where the threshold was not reached (the interval extends beyond that end).
    level : float
    threshold : float
        ``chi2_1(level)``: 3.84 at 95 %.
    wald : (float, float)
        The fit's Wald interval at the same level (NaN without standard errors).
    ofv_mc_se : float
        SAEM: the largest Monte Carlo SE of the refits' importance-sampling OFVs (NaN for the
        deterministic objectives of FOCE-I, FOCE, FO and Laplace).
    estimator : str
    seconds : float
        Wall time of the refits.
    posterior : bool
        The fit has priors (a posterior mode): ``ofv`` and each refit's objective are the
        data's ``-2 log L`` plus the priors' ``-2 log p`` (the held parameter's at its held
        value), so the profile is the posterior's and its interval a highest-posterior
        profile interval rather than a likelihood-ratio one.
    """

    parameter: str
    estimate: float
    ofv: float
    values: tuple
    delta_ofv: tuple
    interval: tuple
    open_ends: tuple
    level: float
    threshold: float
    wald: tuple
    ofv_mc_se: float
    estimator: str
    seconds: float
    posterior: bool = False

    @property
    def refits(self) -> int:
        """Refits run."""
        return len(self.values)

    def covers(self, value: float) -> bool:
        """True when ``value`` lies inside the interval (an open end extends to infinity)."""
        lo, hi = self.interval
        lo_ok = self.open_ends[0] or value >= lo
        hi_ok = self.open_ends[1] or value <= hi
        return bool(lo_ok and hi_ok)

    def delta_at(self, value: float) -> float:
        """``OFV(value) - OFV_hat`` of a refitted ``value``: the likelihood-ratio statistic.

        Raises
        ------
        ValueError
            ``value`` was not refitted (give it in ``values=``).
        """
        for v, d in zip(self.values, self.delta_ofv, strict=True):
            if math.isclose(v, value, rel_tol=1e-9, abs_tol=0.0):
                return float(d)
        raise ValueError(f"{self.parameter} = {value!r} was not refitted; refitted: "
                         f"{', '.join(f'{v:.6g}' for v in self.values)}")

    def p_value(self, value: float) -> float:
        """The likelihood-ratio test's p-value at a refitted ``value``,
        ``P(chi2_1 > OFV(value) - OFV_hat)``: 1 where the importance sampling's Monte Carlo
        noise made the statistic negative, NaN for a failed refit."""
        from scipy.stats import chi2

        d = self.delta_at(value)
        return float(chi2.sf(max(d, 0.0), 1)) if math.isfinite(d) else math.nan

    def table(self) -> str:
        """The refits as text: value, OFV - OFV_hat, one line each."""
        objective = "OFV + priors' -2 log p" if self.posterior else "OFV"
        lines = [f"{self.parameter}: estimate {self.estimate:.6g}, {objective} "
                 f"{self.ofv:.3f}; {100 * self.level:g} % profile "
                 f"{'posterior ' if self.posterior else ''}interval {_fmt_end(self, 0)} to "
                 f"{_fmt_end(self, 1)} (Wald {self.wald[0]:.4g} to {self.wald[1]:.4g}); "
                 f"threshold {self.threshold:.3f}"]
        lines += [f"  {v:12.6g}  {d:+9.3f}" for v, d in zip(self.values, self.delta_ofv,
                                                            strict=True)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationProfile:
        """From :meth:`to_dict` or ``fit.json`` (null numbers back to NaN)."""
        def num(v):
            return math.nan if v is None else float(v)

        out = {}
        for f in dataclasses.fields(cls):
            if f.name not in d and f.default is not dataclasses.MISSING:
                continue            # written before the field existed
            v = d[f.name]
            if f.name in ("values", "delta_ofv", "interval", "wald"):
                v = tuple(num(x) for x in v)
            elif f.name == "open_ends":
                v = tuple(bool(x) for x in v)
            elif f.name in ("estimate", "ofv", "level", "threshold", "ofv_mc_se", "seconds"):
                v = num(v)
            elif f.name == "posterior":
                v = bool(v)
            out[f.name] = v
        return cls(**out)

    def plot(self, ax=None):
        """``OFV - OFV_hat`` against the held value, the threshold and both intervals.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5.5, 4.0))
        else:
            fig = ax.figure
        v, d = np.asarray(self.values), np.asarray(self.delta_ofv)
        ok = np.isfinite(d)
        ax.plot(np.r_[v[ok], self.estimate], np.r_[d[ok], 0.0], "o", color="C0",
                label="refits (parameter held)")
        order = np.argsort(np.r_[v[ok], self.estimate])
        ax.plot(np.r_[v[ok], self.estimate][order], np.r_[d[ok], 0.0][order], "-",
                color="C0", lw=1)
        ax.axhline(self.threshold, color="k", ls="--", lw=1,
                   label=f"chi2_1({self.level:g}) = {self.threshold:.2f}")
        ax.axvspan(*self.interval, color="C0", alpha=0.12, label="profile interval")
        if all(map(math.isfinite, self.wald)):
            ax.axvline(self.wald[0], color="C3", ls=":", lw=1, label="Wald interval")
            ax.axvline(self.wald[1], color="C3", ls=":", lw=1)
        if self.parameter.startswith("omega^2") or (v > 0).all():
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())     # labelled minor ticks collide
        ax.set_xlabel(self.parameter)
        what = "objective (OFV + priors)" if self.posterior else "OFV"
        ax.set_ylabel(f"{what} - {what} at the estimate")
        ax.set_title(f"profile {'posterior' if self.posterior else 'likelihood'} of "
                     f"{self.parameter} ({self.estimator})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def markdown_table(profiles) -> list:
    """The profiles as Markdown table lines: parameter, estimate, profile and Wald intervals
    (``<`` / ``>``: an open end), refits, MC SE of the refits' OFVs, seconds."""
    lvl = f"{100 * profiles[0].level:g} %"
    rows = [f"| parameter | estimate | {lvl} profile interval | {lvl} Wald interval | refits "
            f"| OFV MC SE | seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    for p in profiles:
        lo = ("< " if p.open_ends[0] else "") + f"{p.interval[0]:.4g}"
        hi = ("> " if p.open_ends[1] else "") + f"{p.interval[1]:.4g}"
        mc = f"{p.ofv_mc_se:.2f}" if math.isfinite(p.ofv_mc_se) else "-"
        rows.append(f"| {p.parameter} | {p.estimate:.4g} | {lo} to {hi} | {p.wald[0]:.4g} to "
                    f"{p.wald[1]:.4g} | {p.refits} | {mc} | {p.seconds:.0f} |")
    return rows


def slug(name: str) -> str:
    """A file-name form of a parameter name (``omega^2 eD`` -> ``omega_2_eD``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _fmt_end(p: PopulationProfile, k: int) -> str:
    s = f"{p.interval[k]:.4g}"
    return (("<" if k == 0 else ">") + s) if p.open_ends[k] else s
