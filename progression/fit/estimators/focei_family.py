"""The ``foce``, ``fo`` and ``laplace`` estimators: NONMEM's other classical objectives on the
``focei`` estimator's machinery (``[fit] estimator = "foce"``, ``"fo"`` or ``"laplace"``).

Each is the :class:`~.focei.FOCEI` estimator (same population model in the config, same outer
optimiser, covariance step, EBEs, result parts) with another objective and its exact gradient
from :func:`~progression.fit.population._gradient.population_gradient`:

- ``foce``: first-order conditional estimation without interaction: the residual variance is
  held at its eta = 0 value in the conditional modes and in the linearisation (NONMEM's
  ``METHOD=1`` without ``INTER``). Appropriate for additive error (where it equals FOCE-I);
  with proportional or combined error prefer ``focei``.
- ``fo``: first order, the model linearised at eta = 0 (NONMEM's ``METHOD=0``). The fastest
  (no inner problem) and the most biased when the random effects enter nonlinearly; the
  reported EBEs are the FOCE-I conditional modes at the FO estimates (NONMEM's POSTHOC), and
  censored values are refused (FO has no M3 form).
- ``laplace``: the Laplace approximation of the integral over eta with the exact Hessian of
  the conditional objective (NONMEM's ``METHOD=1 LAPLACE INTER``). Second derivatives of the
  model (central differences of its forward sensitivities at the fixed conditional mode), and
  for the gradient third derivatives (differences of those): about ``4 D^2`` extra batched
  model evaluations per outer evaluation; use it when the data are sparse or heavily
  censored, where the FOCE-I information matrix is a poor stand-in for the curvature.

Censored values (M3, below or above a limit, ``cens``/``limit`` data columns) are supported by
``focei``, ``foce`` and ``laplace``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...errors import ConfigError
from ..population._gradient import population_gradient
from ..population._inner import conditional_modes
from .base import EstimationProblem
from .focei import FOCEI

__all__ = ["FOCE", "FO", "Laplace"]


class _Family(FOCEI):
    """A FOCEI estimator whose objective is :func:`population_gradient` of ``method``."""

    #: NONMEM's name of the method, in the diagnostics' and covariance step's words.
    label = "FOCE-I"

    def _relabel(self, text: str) -> str:
        return text.replace("FOCE-I", self.label) if isinstance(text, str) else text

    def _point(self, ep, s):
        point = super()._point(ep, s)
        d = point.diagnostics
        return dataclasses.replace(point, diagnostics=dataclasses.replace(
            d, method=self._relabel(d.method), numbers_from=self._relabel(d.numbers_from)))

    def _population(self, ep, point, cov):
        # the covariance step's R is the Hessian of this method's OFV
        self._state["cov_method"] = self._relabel(self._state["cov_method"])
        return super()._population(ep, point, cov)

    def _check_censoring(self, ep: EstimationProblem, designs) -> None:
        # the M3 terms are differentiated by population_gradient
        return None

    def _core_gradient(self, model, data, mu, omega, residual, *, eta_columns, eta0,
                       inner_options):
        return population_gradient(self.method, model, data, mu, omega, residual,
                                   eta_columns=eta_columns, eta0=eta0,
                                   inner_options=inner_options)


class FOCE(_Family):
    """Population fit by FOCE without interaction (``[fit] estimator = "foce"``)."""

    name = "foce"
    method = "foce"
    label = "FOCE"
    description = ("population fit: first-order conditional estimation without interaction "
                   "(NONMEM's FOCE), exact gradient; censored values by M3")


class FO(_Family):
    """Population fit by first-order estimation (``[fit] estimator = "fo"``)."""

    name = "fo"
    method = "fo"
    label = "FO"
    description = ("population fit: first-order estimation, the model linearised at eta = 0 "
                   "(NONMEM's FO), exact gradient; no censored values")

    def _core_gradient(self, model, data, mu, omega, residual, *, eta_columns, eta0,
                       inner_options):
        # the last evaluation is at the estimates when _point runs (see _point)
        self._last = (model, data, mu, omega, residual, eta_columns, inner_options)
        return super()._core_gradient(model, data, mu, omega, residual,
                                      eta_columns=eta_columns, eta0=eta0,
                                      inner_options=inner_options)

    def _point(self, ep, s):
        # FO itself has no conditional modes; the EBEs (and so IPRED, the per-subject
        # estimates and shrinkage) are the FOCE-I modes at the FO estimates, NONMEM's POSTHOC
        model, data, mu, omega, residual, cols, opts = self._last
        s["gr"].inner = conditional_modes(model, data, mu, omega, residual, eta_columns=cols,
                                          interaction=True, options=opts)
        point = super()._point(ep, s)
        return dataclasses.replace(point, diagnostics=dataclasses.replace(
            point.diagnostics,
            method=("FO (NONMEM's objective, the model linearised at eta = 0), scipy L-BFGS-B "
                    "on its exact gradient; EBEs: the FOCE-I conditional modes at the "
                    "estimates (POSTHOC)")))

    def _check_censoring(self, ep: EstimationProblem, designs) -> None:
        bad = [d.id for d in designs if np.any(np.asarray(d.cens) != 0)]
        if bad:
            n = sum(int(np.count_nonzero(np.asarray(d.cens))) for d in designs)
            raise ConfigError(f"{ep.source}: fit.estimator = \"fo\": expected no censored "
                              f"values (FO has no M3 likelihood), found {n} (first in subject "
                              f"'{bad[0]}'); use \"focei\" or \"laplace\"")


class Laplace(_Family):
    """Population fit by the Laplace approximation (``[fit] estimator = "laplace"``)."""

    name = "laplace"
    method = "laplace"
    label = "Laplace"
    description = ("population fit: Laplace approximation with the exact Hessian over eta "
                   "(NONMEM's LAPLACE INTER), exact gradient; censored values by M3")
