"""Priors in the FOCE family (``focei``, ``foce``, ``fo``, ``laplace``): NONMEM's ``$PRIOR
NWPRI`` with those methods. The outer optimiser minimises the objective plus the priors'
``-2 log p`` on its own parameters ``x`` (see :mod:`progression.fit.population._prior` for the
two kinds):

* a typical value ``x_d`` (estimation scale): ``(x_d - m)^2 / s^2``;
* the log variance ``u`` of a random effect of its own (Omega's ``log omega^2 NAME``):
  ``(nu + 2) u + nu omega_p exp(-u)``, the inverse-Wishart of one variance in ``u``.

Both have closed-form gradients, so the outer gradient stays exact; R, the Hessian of the
objective by central differences of that gradient, then holds the priors' curvature, and the
covariance is ``2 R^-1`` (the posterior's normal approximation). The reported OFV, AIC and
BIC stay the data's; ``PopulationPart.prior_objective`` is the priors' term at the estimates;
the outer iterations' OFV (``history``, the ``.ext`` rows) is the objective minimised, data and
priors.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..transforms import to_internal
from ._focei_words import COVARIANCE_METHOD_POSTERIOR, COVARIANCE_SKIPPED

__all__ = ["OuterPrior"]


class OuterPrior:
    """The priors of a FOCE-family fit on its outer parameters (picklable).

    Parameters
    ----------
    problem : Problem
        The fit's problem (its population parameters carry ``prior`` and ``eta_prior``).
    s : dict
        The estimator's set-up (``pop_cols``, ``eta_pos``, ``omega_model``).
    """

    def __init__(self, problem, s):
        params = problem.parameters
        pop_cols = s["pop_cols"]
        D = pop_cols.size
        self.mean_at, self.mean, self.sd = [], [], []
        for d, q in enumerate(pop_cols):
            p = getattr(params[q], "prior", ())
            if p:
                self.mean_at.append(d)
                self.mean.append(float(to_internal(np.array([p[0]]), problem.scale[[q]],
                                                   problem.lower[[q]],
                                                   problem.upper[[q]])[0]))
                self.sd.append(float(p[1]))
        om_names = s["omega_model"].parameter_names()
        self.var_at, self.value, self.df = [], [], []
        for j in s["eta_pos"]:
            p = params[pop_cols[j]]
            prior = getattr(p, "eta_prior", ())
            if prior:
                # the config refuses a variance prior inside a block or on a fixed variance,
                # so the variance is its own log omega^2 parameter
                self.var_at.append(D + om_names.index(f"log omega^2 {p.name}"))
                self.value.append(float(prior[0]))
                self.df.append(float(prior[1]))
        self.mean_at, self.var_at = (np.array(v, dtype=int) for v in (self.mean_at,
                                                                        self.var_at))
        self.mean, self.sd, self.value, self.df = (
            np.array(v, dtype=float) for v in (self.mean, self.sd, self.value, self.df))

    @property
    def empty(self) -> bool:
        return self.mean_at.size == 0 and self.var_at.size == 0

    def value_at(self, x) -> float:
        """``-2 log p`` at outer ``x`` (constants left out)."""
        x = np.asarray(x, dtype=float)
        u = x[self.var_at]
        return float(np.sum(((x[self.mean_at] - self.mean) / self.sd) ** 2)
                     + np.sum((self.df + 2.0) * u + self.df * self.value * np.exp(-u)))

    def gradient(self, x) -> np.ndarray:
        """Its gradient in ``x`` (zeros where no prior acts)."""
        x = np.asarray(x, dtype=float)
        g = np.zeros(x.size)
        g[self.mean_at] = 2.0 * (x[self.mean_at] - self.mean) / self.sd ** 2
        g[self.var_at] = (self.df + 2.0) - self.df * self.value * np.exp(-x[self.var_at])
        return g

    def add(self, x, ofv, g):
        """``(ofv + -2 log p, g + its gradient)``: the outer optimiser's objective."""
        if self.empty:
            return ofv, g
        return ofv + self.value_at(x), g + self.gradient(x)

    def annotate(self, part, problem, x, method: str):
        """The population part with the priors (table, ``prior_objective``) and the
        covariance step's words saying that R holds them; ``(part, method)``."""
        if self.empty:
            return part, method
        table = {}
        for p in problem.parameters:
            if getattr(p, "prior", ()) and p.estimate == "population":
                table[p.name] = {"value": float(p.prior[0]), "sd": float(p.prior[1])}
            if getattr(p, "eta_prior", ()) and p.estimate == "population":
                table[f"omega^2 {p.name}"] = {"value": float(p.eta_prior[0]),
                                              "df": float(p.eta_prior[1])}
        method = method if method == COVARIANCE_SKIPPED else COVARIANCE_METHOD_POSTERIOR
        return dataclasses.replace(part, priors=table, prior_objective=self.value_at(x),
                                   covariance_method=method), method
