"""The FOCE family's covariance step in words (``PopulationPart.covariance_method`` and the
per-subject ``interval_methods["covariance"]``)."""

from ..population._rmatrix import boundary_correlations

__all__ = ["COVARIANCE_METHOD", "COVARIANCE_METHOD_R", "COVARIANCE_METHOD_R_ONLY",
           "COVARIANCE_METHOD_POSTERIOR", "COVARIANCE_SKIPPED", "SUBJECT_METHOD",
           "boundary_words"]

#: The covariance step, in words (``interval_methods["covariance"]``).
COVARIANCE_METHOD = ("sandwich R^-1 S R^-1 (R: Hessian of the FOCE-I OFV by central "
                     "differences of its exact gradient; S: sum of per-subject gradient "
                     "products), Wald interval on the estimation scale")
COVARIANCE_METHOD_R = ("2 R^-1 (R: Hessian of the FOCE-I OFV by central differences of its "
                       "exact gradient; S was singular), Wald interval on the estimation scale")
#: 2 R^-1 when asked for (NONMEM's ``MATRIX=R``), in words.
COVARIANCE_METHOD_R_ONLY = ("2 R^-1 (R: Hessian of the FOCE-I OFV by central differences of "
                            "its exact gradient), Wald interval on the estimation scale")
#: The per-subject intervals, in words (``interval_methods["covariance"]``).
SUBJECT_METHOD = ("per subject: conditional covariance of the empirical Bayes estimate, "
                  "(Omega^-1 + sum_j F_j g_j g_j')^-1 (FOCE-I), for parameters with a random "
                  "effect; the population covariance step for the others (see the population "
                  "part); Wald interval on the estimation scale")
#: With priors (``prior``, ``eta_prior``), in words: the posterior's normal approximation.
COVARIANCE_METHOD_POSTERIOR = ("2 R^-1 (R: Hessian of the objective plus the priors' -2 log p, "
                               "by central differences of its exact gradient: the posterior's "
                               "curvature), Wald interval on the estimation scale")
#: The covariance step when the problem asks for none (a bootstrap replicate).
COVARIANCE_SKIPPED = "none (covariance step skipped: a bootstrap replicate)"


def boundary_words(problem, state: dict, omega) -> str:
    """:func:`~progression.fit.population._rmatrix.boundary_correlations` of an estimator's
    Omega (E, E), its random effects named from the state's ``pop_cols`` and ``eta_pos``
    (FOCE family and SAEM alike); "" when no correlation is at +-1."""
    names = [problem.names[state["pop_cols"][j]] for j in state["eta_pos"]]
    return boundary_correlations(omega, names)
