"""Priors on population parameters: SAEM by maximum a posteriori (MAP), NONMEM's ``$PRIOR
NWPRI`` and Monolix's MAP estimation of the population parameters.

A design that barely informs a parameter (a variance seen through one sparse marker, a
typical value a small study cannot place) is stabilised by prior knowledge rather than by
holding the parameter (Gisleskog, Karlsson & Beal 2002, *J Pharmacokinet Pharmacodyn*
29:473). Two kinds, on the estimation scale of the parameter:

* a typical value ``mu`` (the intercept of a parameter with a random effect, or a parameter
  without one): normal, ``-2 log p = (mu - m)^2 / s^2``;
* a variance ``omega^2`` (a random effect outside an Omega block): inverse-Wishart with ``nu``
  degrees of freedom and scale ``nu * omega_p`` (NONMEM's ``$OMEGAP`` value and ``$OMEGAPD``
  degrees of freedom); for one variance this is the inverse gamma
  ``-2 log p = (nu + 2) log omega^2 + nu omega_p / omega^2``, with mode
  ``nu omega_p / (nu + 2)`` and mean ``nu omega_p / (nu - 2)`` (``nu > 2``): ``nu`` is how many
  subjects' worth of information the prior carries.

Both are conjugate to SAEM's complete-data likelihood, so the M-step stays in closed form
(Dempster, Laird & Rubin 1977, sec. 4.6: EM with a prior maximises the posterior): the
variance of random effect ``e`` is ``(N S_e + nu omega_p) / (N + nu + 2)`` with ``S_e`` the
unpenalised statistic, and the prior of a typical value adds ``1 / s^2`` and ``m / s^2`` to the
generalised least squares of the intercepts (or to the Fisher-scoring step of a parameter
without a random effect). The information of the estimates adds the prior's curvature,
``1 / s^2`` for a typical value and ``nu omega_p / (2 omega^2)`` for a log variance, so the
standard errors are those of the posterior's normal approximation. The objective reported as
OFV stays the data's ``-2 log L``, so that OFV, AIC and BIC compare across fits with and
without priors; the prior's ``-2 log p`` (constants left out) is reported beside it, and the
``.ext`` table's OBJ is their sum, the objective minimised (NONMEM adds the prior's penalty to
its objective: Gisleskog et al. 2002).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FitError

__all__ = ["PopulationPrior"]


@dataclass(frozen=True)
class PopulationPrior:
    """Priors of SAEM's population parameters (frozen, picklable).

    Parameters
    ----------
    mean : ndarray (D,)
        Prior mean of each typical value on its estimation scale; NaN for none.
    sd : ndarray (D,)
        Prior SD on the estimation scale; ``inf`` for none.
    omega : ndarray (E,)
        Prior value ``omega_p`` of each random effect's variance; NaN for none.
    df : ndarray (E,)
        Its degrees of freedom ``nu``; 0 for none.
    """

    mean: np.ndarray
    sd: np.ndarray
    omega: np.ndarray
    df: np.ndarray

    def __post_init__(self):
        for name in ("mean", "sd", "omega", "df"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float).ravel())
        if self.mean.shape != self.sd.shape or self.omega.shape != self.df.shape:
            raise FitError(f"prior: expected mean and sd of one length and omega and df of "
                           f"another, found {self.mean.size}, {self.sd.size}, "
                           f"{self.omega.size}, {self.df.size}")
        on = np.isfinite(self.mean)
        if np.any(on & ~(self.sd > 0)) or np.any(np.isfinite(self.sd) & ~on):
            raise FitError(f"prior: expected a positive SD with every mean, found mean "
                           f"{self.mean.tolist()}, sd {self.sd.tolist()}")
        wn = np.isfinite(self.omega)
        if np.any(wn & ~((self.omega > 0) & (self.df > 0))) or np.any((self.df != 0) & ~wn):
            raise FitError(f"prior: expected a positive variance and positive degrees of "
                           f"freedom together, found omega {self.omega.tolist()}, df "
                           f"{self.df.tolist()}")

    @classmethod
    def none(cls, D: int, E: int) -> PopulationPrior:
        """No prior on any of ``D`` typical values and ``E`` variances."""
        return cls(np.full(D, np.nan), np.full(D, np.inf), np.full(E, np.nan), np.zeros(E))

    @property
    def on_mean(self) -> np.ndarray:
        """(D,) bool: typical values with a prior."""
        return np.isfinite(self.mean)

    @property
    def on_omega(self) -> np.ndarray:
        """(E,) bool: variances with a prior."""
        return self.df > 0

    @property
    def empty(self) -> bool:
        return not (self.on_mean.any() or self.on_omega.any())

    def m2logp(self, mu, omega_diag) -> float:
        """``-2 log p`` of typical values ``mu`` (D,) and variances ``omega_diag`` (E,),
        without constants."""
        mu = np.asarray(mu, dtype=float)
        w = np.asarray(omega_diag, dtype=float)
        m, o = self.on_mean, self.on_omega
        val = np.sum(((mu[m] - self.mean[m]) / self.sd[m]) ** 2)
        nu = self.df[o]
        return float(val + np.sum((nu + 2.0) * np.log(w[o]) + nu * self.omega[o] / w[o]))

    def omega_step(self, unpenalised, n_subjects: int) -> np.ndarray:
        """The M-step's variances (E,) from the unpenalised ones (the posterior mode of each
        variance given the statistics; the others unchanged)."""
        w = np.array(unpenalised, dtype=float)
        o = self.on_omega
        nu = self.df[o]
        w[o] = (n_subjects * w[o] + nu * self.omega[o]) / (n_subjects + nu + 2.0)
        return w

    def mean_terms(self, columns):
        """``(precision, precision * mean)`` of the typical values ``columns``: what the prior
        adds to the normal equations (0 where there is none)."""
        c = np.asarray(columns, dtype=int)
        prec = np.where(self.on_mean[c], 1.0 / self.sd[c] ** 2, 0.0)
        return prec, np.where(self.on_mean[c], prec * np.nan_to_num(self.mean[c]), 0.0)

    def information(self, names, mu, omega_diag, eta_columns) -> np.ndarray:
        """The prior's curvature ``-d2 log p`` in SAEM's information coordinates.

        Parameters
        ----------
        names : sequence of str
            The information's parameters (``mu[e]``, ``log omega2[e]``, ``theta[d]``, and
            others the prior does not touch).
        mu : ndarray (D,)
            Typical values (estimation scale).
        omega_diag : ndarray (E,)
            Variances.
        eta_columns : ndarray (E,)
            The parameter of each random effect.

        Returns
        -------
        ndarray (K, K)
        """
        K = len(names)
        out = np.zeros((K, K))
        cols = np.asarray(eta_columns, dtype=int)
        w = np.asarray(omega_diag, dtype=float)
        for k, nm in enumerate(names):
            if nm.startswith("mu[") or nm.startswith("theta["):
                i = int(nm[nm.index("[") + 1:-1])
                d = cols[i] if nm.startswith("mu[") else i
                if self.on_mean[d]:
                    out[k, k] = 1.0 / self.sd[d] ** 2
            elif nm.startswith("log omega2["):
                e = int(nm[len("log omega2["):-1])
                if self.on_omega[e]:
                    out[k, k] = 0.5 * self.df[e] * self.omega[e] / w[e]
        return out
