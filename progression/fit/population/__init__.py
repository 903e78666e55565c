"""Population (nonlinear mixed-effects) estimation core: model-agnostic numerics.

The structural model enters only through an *individual model*: a picklable object with
``predict(phi (R, D), index (R,)) -> (f (R, n), G (R, n, D))`` (and optionally
``predict_hessian``), evaluated for a batch of subjects at once; see
:class:`IndividualModel`. On top of it:

- :func:`conditional_modes`: eta-hat of all subjects in lockstep (damped Gauss-Newton,
  per-subject status, warm starts);
- :func:`subject_objectives` / :func:`objective`: NONMEM's FO, FOCE, FOCE-I and Laplace
  objectives (``-2 log L`` without ``N log 2 pi``), per subject and in total;
- :func:`population_gradient` (``fo``, ``foce``, ``focei``, ``laplace``; :func:`focei_gradient`
  for FOCE-I): the exact gradient of the objective with respect to mu, Omega and the residual
  SDs, censored values included (implicit-function rule, model derivatives at fixed eta);
- :func:`r_matrix_diagnosis`: NONMEM-style words when the covariance step's R is not positive
  definite;
- :func:`residual_diagnostics`, :func:`eta_shrinkage`, :func:`epsilon_shrinkage`,
  :func:`cv_percent`: PRED, IPRED, IWRES, CWRES, shrinkage and CV %;
- :func:`npde`: NPDE and pd from simulations of the design;
- :func:`vpc`: VPC and prediction-corrected VPC with the fraction below a limit;
  :func:`survival_vpc`: the Kaplan-Meier VPC of a joint fit's time-to-event data;
- :func:`write_ext` / :func:`read_ext`: NONMEM-style ``.ext`` tables;
- :class:`ProblemModel`: the individual model of a fit config (its likelihood ``Problem`` and
  designs: doses, covariates, conditions), used by the ``focei`` estimator.

Typical individual parameters ``mu`` (N, D), with covariate effects, are computed by the
caller from theta; ``phi_i = mu_i + eta_i`` on the random-effect columns (log scale for
log-normal parameters). Residual variance ``V = a^2 + b^2 f^2`` (:class:`Residual`).
"""

from ._adapter import ProblemModel
from ._core import IndividualModel, PopulationData, Residual
from ._diagnostics import (
    Residuals,
    cv_percent,
    cwres,
    epsilon_shrinkage,
    eta_shrinkage,
    residual_diagnostics,
)
from ._ext import FINAL, SE, UNAVAILABLE, ExtTable, ext_columns, read_ext, write_ext
from ._gradient import FoceiGradient, focei_gradient, population_gradient, r_matrix_diagnosis
from ._inner import (
    CONVERGED,
    FAILED,
    MAX_ITER,
    STALLED,
    InnerOptions,
    InnerResult,
    conditional_modes,
)
from ._npde import DECORRELATIONS, NPDEResult, npde
from ._objective import (
    HESSIAN_NOT_PD,
    METHODS,
    ObjectiveResult,
    linearised_ofv,
    objective,
    subject_objectives,
)
from ._prior import PopulationPrior
from ._saem import SaemOptions, SaemResult, saem
from ._vpc import VPCResult, prediction_correct, vpc, vpc_bins
from ._vpc_survival import SurvivalVPC, survival_vpc

__all__ = [
    "CONVERGED",
    "DECORRELATIONS",
    "FAILED",
    "FINAL",
    "HESSIAN_NOT_PD",
    "MAX_ITER",
    "METHODS",
    "SE",
    "STALLED",
    "VPCResult",
    "UNAVAILABLE",
    "ExtTable",
    "FoceiGradient",
    "IndividualModel",
    "InnerOptions",
    "InnerResult",
    "NPDEResult",
    "ObjectiveResult",
    "PopulationData",
    "ProblemModel",
    "Residual",
    "Residuals",
    "PopulationPrior",
    "SaemOptions",
    "SaemResult",
    "SurvivalVPC",
    "conditional_modes",
    "cv_percent",
    "cwres",
    "epsilon_shrinkage",
    "eta_shrinkage",
    "ext_columns",
    "focei_gradient",
    "linearised_ofv",
    "npde",
    "objective",
    "population_gradient",
    "prediction_correct",
    "r_matrix_diagnosis",
    "read_ext",
    "residual_diagnostics",
    "saem",
    "subject_objectives",
    "survival_vpc",
    "vpc",
    "vpc_bins",
    "write_ext",
]
