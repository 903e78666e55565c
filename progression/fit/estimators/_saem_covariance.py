"""SAEM's covariance step in words, and the sizes and messages of its fallbacks.

Split from :mod:`.saem` (the estimator): the method texts that reports and
``covariance_method`` carry, the score pass's size, and why and how the covariance step falls
back when SAEM's own information is not positive definite.
"""

from __future__ import annotations

import math

import numpy as np

#: The population covariance step, in words.
COVARIANCE_METHOD_FOCEI = ("FOCE-I sandwich R^-1 S R^-1 at the SAEM estimates (R: Hessian of "
                           "the FOCE-I OFV by central differences of its exact gradient; S: "
                           "sum of per-subject FOCE-I gradient products), Wald interval on "
                           "the estimation scale")
#: The linearisation covariance step, in words.
COVARIANCE_METHOD_LINEARIZATION = ("linearization: 2 R^-1 at the SAEM estimates (R: Hessian of "
                                   "the FOCE-I OFV, the model linearised around each subject's "
                                   "conditional mode, by central differences of its exact "
                                   "gradient), Wald interval on the estimation scale")
#: SAEM's own covariance step, in words.
COVARIANCE_METHOD = ("SAEM stochastic approximation of the observed Fisher information "
                     "(Louis' formula, conditional expectations over the smoothing phase's "
                     "chains; Monolix's 'stochastic approximation'), inverted; Wald interval "
                     "on the estimation scale")
#: The robust covariance step, in words.
COVARIANCE_METHOD_SANDWICH = ("robust sandwich R^-1 S R^-1 at the SAEM estimates (R: Louis' "
                              "observed information, S: sum of the per-subject score products, "
                              "each the conditional expectation of the complete-data score, "
                              "both by MCMC with the parameters held, Monte Carlo noise "
                              "removed by batch means), Wald interval on the estimation scale")
#: The fallback when SAEM's own information is not positive definite, in words.
COVARIANCE_METHOD_FALLBACK = ("Louis' observed Fisher information at the SAEM estimates by "
                              "MCMC with the parameters held (a longer pass with more chains; "
                              "the stochastic approximation over the smoothing phase was not "
                              "positive definite), inverted; Wald interval on the estimation "
                              "scale")
#: The last fallback (Louis' information indefinite in the longer pass too), in words.
COVARIANCE_METHOD_SCORES = ("inverse of the summed per-subject score products S at the SAEM "
                            "estimates (NONMEM's MATRIX=S; each score the conditional "
                            "expectation of the complete-data score by MCMC with the "
                            "parameters held; Louis' information was not positive definite "
                            "in the SA nor in a longer pass), Wald interval on the "
                            "estimation scale")
#: The per-subject intervals, in words.
SUBJECT_METHOD = ("per subject: conditional covariance of eta from the SAEM chains (smoothing "
                  "phase), for parameters with a random effect; the population covariance "
                  "step for the others (see the population part); Wald interval on the "
                  "estimation scale")


#: Fewest and most iterations of the sandwich's score pass (after its burn-in).
PASS_ITERATIONS = (40, 200)


def _pass_iterations(k2: int) -> int:
    """Iterations of the score pass: as many as the smoothing phase had, within
    :data:`PASS_ITERATIONS` (at least 4 batches for the batch-means noise estimate; beyond
    200 the Monte Carlo part of ``S`` is a small fraction of the sampling part)."""
    return int(min(max(int(k2), PASS_ITERATIONS[0]), PASS_ITERATIONS[1]))


#: The fallback pass: iterations after its burn-in, and fewest draws per subject
#: (iterations x chains).
FALLBACK_ITERATIONS = 400
FALLBACK_DRAWS = 1600


def _fallback_size(n_chains: int, n_subjects: int) -> tuple[int, int]:
    """(iterations, chains per subject) of the fallback pass when the information is not
    positive definite.

    Why the information fails: Louis' formula is a difference,
    ``I = E[-d2 l_c | y] - Var(d l_c | y)`` summed over subjects, and for a weakly
    determined parameter (a variance whose random effect the data barely see: high
    shrinkage, the conditional distribution close to the prior) both terms are nearly equal
    (about 1/2 per subject for a log variance) while their difference is small (``N/2`` of
    complete information against a few units observed). Each subject's conditional
    variance is estimated from a finite number of correlated draws: where the conditional
    distribution of eta is the prior, the per-draw term ``h = d2 l_c + (d l_c)^2`` of a log
    variance is ``(z^4 - 4 z^2 + 1) / 4`` (z standard normal: mean 0, variance 2), so the
    sum over ``N`` subjects of ``M`` independent draws each has Monte Carlo SD
    ``sqrt(2 N / M)``: 0.5 for the ALS study's 200 patients at 1600 draws, against an
    information of 0.4-1 along its flattest direction (log omega^2 eD with the Treg %
    residual SD and Q0's variance; benchmarks/results/population_recovery_model_chains4_se.md).
    More draws per subject at the final estimates (no moving parameters, no decreasing
    step) shrink it; at least :data:`FALLBACK_DRAWS` draws per subject (the fit's chains,
    more when needed), :data:`FALLBACK_ITERATIONS` iterations: enough where the flat
    direction carries a few units of information per 40 subjects
    (benchmarks/results/saem_se_fallback.md: positive definite in 40 of 40, SEs within
    0.90-1.35 of the exact ones), not always on the ALS study (at the estimates of 4
    replicates whose SA information was not positive definite, 400 x 4 draws: 2 of 4, at
    ~2 minutes each).
    """
    del n_subjects                          # the draws per subject set the noise
    chains = max(int(n_chains), int(math.ceil(FALLBACK_DRAWS / FALLBACK_ITERATIONS)))
    return FALLBACK_ITERATIONS, chains


def _fallback_message(choice: str, fb: dict) -> str:
    """The warning of a successful fallback."""
    first = ("stochastic-approximation Fisher information" if choice == "sa"
             else "score pass's Louis information")
    return (f"covariance step: the {first} was not positive definite (smallest eigenvalue "
            f"{fb['first']:.3g}); standard errors from a longer score pass at the SAEM "
            f"estimates ({fb['iterations']} iterations, {fb['chains']} chains per subject, "
            f"{_FALLBACK_KIND[fb['kind']]}; smallest eigenvalue of its Louis information "
            f"{fb['smallest']:.3g})")


_FALLBACK_KIND = {"model": "Louis model-based R^-1", "sandwich": "sandwich R^-1 S R^-1",
                  "scores": "S^-1 of the per-subject score products, its Louis information "
                            "not positive definite either"}


def _failure_message(choice: str, fb: dict | None, res) -> str:
    """The warning when there are no standard errors (the first information, and the
    fallback pass, not positive definite)."""
    first = ("stochastic-approximation Fisher information" if choice == "sa"
             else "score pass's Louis information")
    ev = fb["first"] if fb is not None else float(np.linalg.eigvalsh(res.fisher).min())
    msg = (f"covariance step failed: the {first} is not positive definite (smallest "
           f"eigenvalue {ev:.3g})")
    if fb is not None:
        msg += (f"; the longer score pass at the SAEM estimates ({fb['iterations']} "
                f"iterations, {fb['chains']} chains per subject) was not either (smallest "
                f"eigenvalue {fb['smallest']:.3g}: a direction the data barely determine)")
    return msg + "; no standard errors"
