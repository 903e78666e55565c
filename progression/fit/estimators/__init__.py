"""Estimators: one interface for every estimation method, chosen by name from a registry.

``[fit] estimator = "individual"`` (or ``"pooled"``) in a run config picks an entry of
:data:`ESTIMATORS`, as ``method=`` picks one of scipy's methods::

    ESTIMATORS = {"individual": Individual, "pooled": Pooled}

Every estimator is called the same way, with one :class:`~.base.EstimationProblem` (the
likelihood ``Problem``, the subjects' designs, the ``[estimator]`` options, an executor,
progress, counters), and returns one :class:`~progression.fit.parts.EstimatorOutput` of typed
parts: :class:`~progression.fit.parts.Estimates`, :class:`~progression.fit.parts.Uncertainty`
(every interval method named), :class:`~progression.fit.parts.Diagnostics`,
:class:`~progression.fit.parts.Predictions` (and a
:class:`~progression.fit.parts.PopulationPart` for population estimators). Whatever depends on
the method lives in its estimator; :func:`progression.fit.fit` and
:class:`~progression.fit.result.FitResult` never ask which one ran.

A config with nothing estimated is evaluated by :class:`progression.fit.fixed.FixedEvaluation`
(an estimator of the same interface, not in the registry: a config cannot name it).

How to add an estimator
-----------------------
1. Write a subclass of :class:`~.base.Estimator` in a new module of this package, with a
   ``name`` (the config's word) and a one-line ``description``, and its two steps:

   * ``estimate(ep) -> PointEstimate``: optimise; return the
     :class:`~progression.fit.parts.Estimates` (``theta`` per subject on the natural scale;
     the estimation-scale vector ``x_hat`` with ``x_cols``/``x_rows`` saying which quantity and
     which subjects each entry sets), the :class:`~progression.fit.parts.Diagnostics` (objective
     per subject, convergence, failures, starts, ``numbers_from``, ``method``), predictions, the
     information at the estimates and the objective on the optimiser's path. Evaluate the
     likelihood only through ``ep.problem.evaluate(...)`` (many rows in one stacked solve) or
     :func:`progression.fit.optimize.run_tasks`; fan subjects out with
     ``progression.parallel.map_items(ep.executor, ...)`` and cut the work independently of
     the executor, so the numbers do not depend on it. Add work to ``ep.counters``.
   * ``uncertainty(ep, point) -> Uncertainty``: standard errors, intervals keyed by method
     with ``methods`` naming each (``INTERVAL_METHODS``, or a new key and its words), the
     covariance ``blocks`` of ``x_hat`` entries, warnings; honour
     ``ep.uncertainty_methods``; record seconds in ``ep.timings``.

   Calling the estimator runs both, checks ``[fit] max_failed_share`` between them and
   assembles the output (override ``__call__`` to fill ``population``).
2. Register it: add ``"name": Class`` to :data:`ESTIMATORS` below.
3. ``[fit] estimator`` is checked against this registry, so a config accepts the name at
   once; ``fit.config.ESTIMATORS`` (the shipped names, for documentation) should list it too
   (``tests/test_estimators.py`` checks that they agree).
4. Test it on a problem with a known answer (a closed form, or a simulated truth), and that a
   saved fit of it loads back (``FitResult.save`` / ``load_fit``).
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import EstimationProblem, Estimator, PointEstimate
from .focei import FOCEI
from .focei_family import FO, FOCE, Laplace
from .individual import Individual
from .pooled import Pooled
from .saem import SAEM

__all__ = ["ESTIMATORS", "get_estimator", "Estimator", "EstimationProblem", "PointEstimate",
           "Individual", "Pooled", "FOCEI", "FOCE", "FO", "Laplace", "SAEM"]

#: Registered estimators: config name -> Estimator class.
ESTIMATORS: dict[str, type[Estimator]] = {
    "individual": Individual,
    "pooled": Pooled,
    "focei": FOCEI,
    "foce": FOCE,
    "fo": FO,
    "laplace": Laplace,
    "saem": SAEM,
}


def get_estimator(name: str, where: str = "fit.estimator") -> Estimator:
    """A new instance of the estimator registered as ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`ESTIMATORS`.
    where : str
        The config file and key named in the error.

    Raises
    ------
    ConfigError
        ``name`` is not registered; the message lists the registered names.
    """
    try:
        cls = ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: unknown estimator {name!r}; expected one of "
                          f"{', '.join(repr(k) for k in ESTIMATORS)}") from None
    return cls()
