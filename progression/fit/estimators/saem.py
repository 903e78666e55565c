"""The ``saem`` estimator: population fit by stochastic approximation EM (Monolix's SAEM),
``[fit] estimator = "saem"``, from the same configs as ``focei``.

Population model: as :mod:`~.focei` (``estimate = "population"`` parameters with typical value
theta on their estimation scale, ``eta = <variance>`` for a random effect; additive,
proportional, combined or log-normal error; censored values, which SAEM imputes (M3)). The
population model layer (:mod:`progression.fit.population._model`) is taken where SAEM's
closed-form M-step applies: covariate effects linear on the estimation scale (``power``,
``exponential``, ``categorical`` on a log-scale parameter: regression of the individual
parameters' statistics, generalised least squares with the current Omega), Omega diagonal,
block-diagonal or full (the blocks of the unconstrained estimate), fixed blocks. Population
parameters **without** a random effect (no ``eta``) are estimated too, by a Fisher-scoring
step on the complete-data log-likelihood in each M-step (Monolix's "parameters without
variability" by optimisation; :mod:`progression.fit.population._saem_fixed`); SAEM's own
information does not cover them (``saem_covariance = "focei"`` gives their SEs). Refused with
a ConfigError naming the key: a ``linear`` effect or one on a parameter not on the log scale,
a fixed coefficient, a covariate effect on a parameter without a random effect (use focei);
and every error parameter of an observable estimated.

Estimation: :func:`progression.fit.population.saem` on the problem's
:class:`~progression.fit.population._adapter.ProblemModel` (the same individual model, data and
starting values as ``focei``, built by :class:`~.focei.FOCEI`'s own set-up, imported, not
copied), seeded by ``[estimator] seed``, with ``[estimator] saem_exploration`` (most
exploration iterations, K1), ``saem_smoothing`` (K2), ``saem_chains`` (chains per subject,
0 = automatic) and ``is_samples`` (importance-sampling draws per subject).

Results: the per-subject estimates are the individual parameters at the **conditional means**
of eta (SAEM's EBEs, from the chains over the smoothing phase); the objective is the
importance-sampling ``-2 log L`` (its Monte Carlo SE in the diagnostics and the population
part); the population part holds theta, Omega, sigma, the conditional means, shrinkage, CV %,
OFV, AIC, BIC and the SAEM traces (``history``, one row per iteration; OFV NaN except the last
row, the importance-sampling OFV).

Standard errors: SAEM's own (default, ``[estimator] saem_covariance = "sa"`` when the
option exists): the observed Fisher information by stochastic approximation of Louis'
formula over the smoothing phase (Monolix's "stochastic approximation"; see
:mod:`progression.fit.population._saem`), inverted, on the estimation scales of focei's
``covariance_names``; no model derivative and no extra model evaluation. When that
information is not positive definite (Monte Carlo noise in Louis' difference of two nearly
equal terms along a weakly determined variance, see :func:`_fallback_size`), the estimator
falls back to Louis' information at the final estimates by one longer pass of the chains
with the parameters held (:mod:`progression.fit.population._saem_score`, 400 iterations, at
least 4 chains per subject), says so in the warnings and names it as the population part's
``covariance_method`` (:data:`COVARIANCE_METHOD_FALLBACK`); only when that pass is not
positive definite either is the step reported as failed. ``"focei"``: FOCE-I's
sandwich ``R^-1 S R^-1`` evaluated **at the SAEM estimates** (one FOCE-I gradient per
parameter and side, forward sensitivities: costly on ODE models; the FOCE-I gradient there is
small but not zero, so this is an approximation, stated in the method). ``"sandwich"``: the
robust ``R^-1 S R^-1`` at the SAEM estimates (:mod:`progression.fit.population._saem_score`:
one more pass of the chains with the parameters held, as many chains as the fit and as
many iterations as its smoothing phase within 40-200, Louis' information ``R`` and the
per-subject conditional mean scores behind ``S``; no model derivative; costs about a third
of a SAEM run; when its ``R`` is not positive definite, the same longer pass as above gives
the sandwich): the Wald intervals stay calibrated when the residual distribution or the
random-effect model is misspecified, where the model-based ``"sa"`` intervals are too
narrow (benchmarks/results/saem_se_calibration.md); Student-t residuals enter it as SAEM's
Gaussian scale mixture (tests/test_saem_se_student.py). ``"linearization"``: Monolix's
"linearization" counterpart, the model linearised around each subject's conditional mode (the
FOCE-I objective) at the SAEM estimates: the OFV by linearisation is reported beside the
importance-sampling one, and the covariance is ``2 R^-1`` with R the Hessian of that OFV
(NONMEM's ``MATRIX=R``: the observed information of the linearised likelihood; Monolix inverts
the expected information of the same Gaussian approximation, which agrees with it at the
optimum of a well-specified model). Per subject, the
covariance of the individual parameters with a random effect is the conditional covariance of
eta from the chains.

Iterations: ``saem_exploration`` is the most exploration iterations (exploration ends earlier
when the parameter trajectories stop drifting, after at least 100); ``saem_smoothing`` a
number is exactly that many smoothing iterations, ``"auto"`` (or 0) ends the smoothing phase
when the estimates drift by less than 0.1 SE between windows of 50 iterations and the SEs are
stable (at most 500). The iterations run and why each phase ended are in the diagnostics'
``method`` and the population part.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ...errors import ConfigError, FitError
from ...parallel import IterationLog
from ..parts import Uncertainty
from ..population import Residual, SaemOptions, saem
from ..population._adapter import ProblemModel, unit_error_problem
from ..population._prior import PopulationPrior
from ..population._saem_information import inverse_pd
from ..population._saem_model import RK4Predictions, applicable
from ..population._saem_score import score_pass
from ..transforms import from_internal, to_internal
from ._focei_words import boundary_words
from ._population_layout import (  # noqa: F401  (benchmarks read them here)
    _covariate_design,
    _to_focei_layout,
    subject_uncertainty,
)
from ._saem_covariance import (  # noqa: F401  (re-exported: tests and callers read them here)
    COVARIANCE_METHOD,
    COVARIANCE_METHOD_FALLBACK,
    COVARIANCE_METHOD_FOCEI,
    COVARIANCE_METHOD_LINEARIZATION,
    COVARIANCE_METHOD_SANDWICH,
    COVARIANCE_METHOD_SCORES,
    FALLBACK_DRAWS,
    FALLBACK_ITERATIONS,
    PASS_ITERATIONS,
    SUBJECT_METHOD,
    _failure_message,
    _fallback_message,
    _fallback_size,
    _pass_iterations,
)
from .base import EstimationProblem, PointEstimate
from .focei import FOCEI

__all__ = ["SAEM", "COVARIANCE_METHOD", "COVARIANCE_METHOD_FALLBACK", "COVARIANCE_METHOD_FOCEI",
           "COVARIANCE_METHOD_LINEARIZATION", "COVARIANCE_METHOD_SANDWICH",
           "COVARIANCE_METHOD_SCORES", "SUBJECT_METHOD", "saem_options"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Covariance choices computed from the FOCE-I objective at the SAEM estimates.
_LINEARISED = ("focei", "linearization")
#: Most smoothing iterations of ``saem_smoothing = "auto"``.
AUTO_K2_MAX = 500


def _is_auto(value) -> bool:
    return (isinstance(value, str) and value.strip().lower() == "auto") or value == 0


def saem_options(options) -> SaemOptions:
    """The :class:`SaemOptions` of an :class:`~progression.fit.EstimatorOptions`.

    ``saem_exploration``: most exploration iterations (``"auto"`` or 0: the core's default,
    300), ended earlier by the drift rule. ``saem_smoothing``: exactly that many smoothing
    iterations, or ``"auto"`` (0): the automatic end of smoothing, at most
    :data:`AUTO_K2_MAX`.
    """
    k1 = options.saem_exploration
    k2 = options.saem_smoothing
    auto_k2 = _is_auto(k2)
    return SaemOptions(k1=SaemOptions.k1 if _is_auto(k1) else int(k1),
                       k2=AUTO_K2_MAX if auto_k2 else int(k2), auto_k2=auto_k2,
                       n_chains=int(options.saem_chains) or None,
                       is_samples=int(options.is_samples))


def _phase_lines(log: IterationLog, opt):
    """SAEM's ``progress`` callback: ``iteration k (exploration, at most K1)`` or ``iteration
    k (smoothing j of K2)`` at most every 10 s, and a line when the importance sampling
    starts."""
    def progress(k: int, phase: str) -> None:
        if phase == "importance sampling":
            log.say(f"iteration {k}: importance sampling ({opt.is_samples} draws per subject)")
        elif phase == "exploration":
            log.report(f"iteration {k} (exploration, at most {opt.k1})")
        else:
            log.report(f"iteration {k} (smoothing)")
    return progress


def _information_condition(fisher) -> float:
    """Condition number of SAEM's information (the Hessian of -log L in SAEM's estimation
    parameters: the report's "condition number of R"); NaN when there is none."""
    if fisher is None or not np.all(np.isfinite(fisher)):
        return float("nan")
    f = np.asarray(fisher, dtype=float)
    held = np.all(f == 0.0, axis=0)
    return float(np.linalg.cond(f[np.ix_(~held, ~held)])) if f.size else float("nan")


def covariance_choice(options) -> str:
    """``"sa"`` (SAEM's own, default), ``"sandwich"`` (robust, at the SAEM estimates),
    ``"focei"`` (FOCE-I sandwich at the SAEM estimates) or ``"linearization"`` (``2 R^-1`` of
    the FOCE-I OFV there), from ``saem_covariance`` when the options have it."""
    return str(getattr(options, "saem_covariance", "sa") or "sa")


class SAEM(FOCEI):
    """Population fit by SAEM (``[fit] estimator = "saem"``); see the module docstring."""

    name = "saem"
    description = ("population fit: stochastic approximation EM (Monolix's SAEM), diagonal "
                   "Omega, OFV by importance sampling")
    # the chains add the survival term -2 log p(T | phi) themselves (predict_extra)
    survival_residuals = False

    def _setup_saem(self, ep: EstimationProblem):
        problem = ep.problem
        try:
            s = self._setup(ep)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace('"focei"', '"saem"')) from None
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        # population parameters without a random effect: estimated by the core's
        # Fisher-scoring M-step (covariate effects on them have no closed-form M-step)
        s["no_eta"] = np.array([j for j in range(pop_cols.size) if j not in set(eta_pos)],
                               dtype=int)
        for e in s["typical"].effects:
            j = s["typical"].names.index(e.parameter)
            if j in set(s["no_eta"].tolist()):
                raise ConfigError(f"{ep.source}: parameters.{e.parameter}.covariates."
                                  f"{e.covariate}: fit.estimator = \"saem\" takes covariate "
                                  f"effects on parameters with a random effect only; "
                                  f"parameters.{e.parameter} has none (add 'eta = <variance>' "
                                  f"or use focei)")
        if problem.survival is not None:
            if covariance_choice(ep.options) in _LINEARISED:
                raise ConfigError(f"{ep.source}: estimator.saem_covariance = "
                                  f"\"{covariance_choice(ep.options)}\" is not available with "
                                  f"[survival] (SAEM's chains carry the time-to-event "
                                  f"term, not its FOCE-I objective; fit with "
                                  f"estimator = \"laplace\" for a joint objective by "
                                  f"approximation); expected \"sa\"")
        censored = [d.id for d in ep.designs if np.any(np.asarray(d.cens) != 0)]
        if censored and not s["data"].has_censoring:
            raise ConfigError(f"{ep.source}: fit.estimator = \"saem\": censored values are "
                              f"not supported by this version of the population adapter "
                              f"(subject '{censored[0]}' has some)")
        est = {q for q, _, _ in s["err"]}
        # fixed error parameters are held by the core (residual_fixed); a combined error
        # model with one SD fixed and the other estimated has no closed-form M-step there
        K = len(problem.observables)
        fix = [np.array([i >= 0 and i not in est for i in idx], dtype=bool)
               for idx in (problem.a_index[:K], problem.b_index[:K])]
        for k in range(K):
            ia, ib = problem.a_index[k], problem.b_index[k]
            if ia >= 0 and ib >= 0 and fix[0][k] != fix[1][k]:
                one = problem.names[ia if fix[0][k] else ib]
                raise ConfigError(f"{ep.source}: fit.estimator = \"saem\": error model of "
                                  f"{problem.observables[k]!r} is combined with {one} fixed "
                                  f"and the other SD estimated; expected both fixed or both "
                                  f"estimated (or use focei)")
        s["residual_fixed"] = (fix[0], fix[1])
        return s

    def _residual(self, problem, s, sd):
        # the data observables only: with [survival] the problem's slots end with the two
        # pseudo-observables (cumulative hazard, hazard), which have no residual model
        K = len(problem.observables)
        vals = problem.values.copy()
        for (q, _, _), v in zip(s["err"], sd, strict=True):
            vals[q] = v
        a = [vals[i] if i >= 0 else 0.0 for i in problem.a_index[:K]]
        b = [vals[i] if i >= 0 else 0.0 for i in problem.b_index[:K]]
        return Residual(tuple(a), tuple(b))

    def _check_censoring(self, ep: EstimationProblem, designs) -> None:
        # SAEM imputes censored values (M3 likelihood): accepted here, and _setup_saem
        # checks that the adapter passed their flags and limits to the core
        return None

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem = ep.problem
        s = self._setup_saem(ep)
        self._state = s
        D, E = s["pop_cols"].size, s["eta_pos"].size
        x0 = s["x0"]
        opt = saem_options(ep.options)
        seed = int(ep.options.seed)
        choice = covariance_choice(ep.options)
        om_model = s["omega_model"]
        P, S = om_model.n_parameters, len(s["err"])
        omega0 = om_model.initial
        cov_x, cov_mask, cov_fixed, coef_map = _covariate_design(ep, s)
        t = time.perf_counter()
        residual0 = self._residual(problem, s, np.exp(x0[D + P:D + P + S]))
        kernel_model, numbers = self._kernel_model(s, x0, D, E, omega0, residual0, seed)
        ep.timings["saem model"] = time.perf_counter() - t
        pattern = np.zeros((E, E), dtype=bool)
        fixed = np.zeros(E, dtype=bool)
        for idx, fx in zip(om_model.blocks, om_model.fixed, strict=True):
            pattern[np.ix_(idx, idx)] = True
            fixed[idx] = fx
        t = time.perf_counter()
        # correlated blocks of Omega: the chains also move along the correlations
        opt = dataclasses.replace(opt, omega_walk=bool(np.any(pattern & ~np.eye(E, dtype=bool))))
        no_eta = s["no_eta"]
        lo = np.array([-np.inf if b[0] is None else b[0] for b in s["bounds"][:D]])
        hi = np.array([np.inf if b[1] is None else b[1] for b in s["bounds"][:D]])
        log = IterationLog(f"fit {ep.name} (saem)", enabled=ep.progress)
        prior = s["saem_prior"] = _prior_of(problem, s)
        res = saem(kernel_model, s["data"], x0[:D], omega0, residual0,
                   eta_columns=s["eta_pos"], covariates=cov_x, covariate_mask=cov_mask,
                   omega_structure=pattern, omega_fixed=fixed,
                   residual_fixed=s["residual_fixed"], estimate_columns=no_eta,
                   estimate_bounds=(lo[no_eta], hi[no_eta]), options=opt, seed=seed,
                   mu_fixed=s["x_fixed"][s["eta_pos"]], progress=_phase_lines(log, opt),
                   prior=prior, covariate_fixed=cov_fixed)
        log.close()
        ep.timings["saem"] = time.perf_counter() - t

        def run_pass(n_iter, n_chains, pass_seed):
            # Louis' information and the per-subject scores at the final estimates, by MCMC
            # with the parameters held (one more pass of the chains)
            sp = score_pass(kernel_model, s["data"], res.mu, res.omega, res.residual,
                            beta=res.beta, eta_columns=s["eta_pos"], covariates=cov_x,
                            covariate_mask=cov_mask, omega_structure=pattern,
                            omega_fixed=fixed, residual_fixed=s["residual_fixed"],
                            estimate_columns=no_eta, eta_mean=res.eta_mean,
                            eta_cov=res.eta_cov, n_chains=n_chains, n_iter=n_iter,
                            seed=pass_seed, mu_fixed=s["x_fixed"][s["eta_pos"]],
                            covariate_fixed=cov_fixed)
            if tuple(sp.names) != tuple(res.parameter_names):
                raise FitError(f"SAEM score pass: its parameters {sp.names} differ from the "
                               f"fit's {res.parameter_names}")
            return sp

        s["fallback"] = None
        if choice == "sandwich" and ep.covariance_passes:
            # the robust covariance (one more pass of the chains at the final estimates)
            log.say("covariance step: the sandwich's pass of the chains at the estimates")
            t = time.perf_counter()
            sp = run_pass(_pass_iterations(res.n_iter - res.k1), res.n_chains, seed + 7919)
            res = dataclasses.replace(res, fisher=sp.fisher,
                                      covariance=sp.covariance("sandwich"))
            s["score_pass"] = sp
            ep.timings["score pass"] = time.perf_counter() - t
        if choice in ("sa", "sandwich") and ep.covariance_passes and \
                res.fisher is not None and not np.all(np.isfinite(res.covariance)):
            # the information is not positive definite: Monte Carlo noise in Louis'
            # difference of two large terms (see _fallback_size); one longer pass with more
            # chains at the final estimates, the same kind of covariance
            t = time.perf_counter()
            n_iter, n_chains = _fallback_size(res.n_chains, s["data"].n_subjects)
            log.say(f"covariance step: SAEM's information is not positive definite, a "
                    f"longer pass at the estimates ({n_iter} iterations x {n_chains} chains)")
            first = float(np.linalg.eigvalsh(res.fisher).min())
            sp = run_pass(n_iter, n_chains, seed + 15881)
            kind = "sandwich" if choice == "sandwich" else "model"
            # with priors (only with "sa") the information adds the prior's curvature
            prior_info = prior.information(sp.names, res.mu, np.diag(res.omega),
                                           s["eta_pos"])
            cov = (sp.covariance(kind) if prior.empty
                   else inverse_pd(np.asarray(sp.fisher, dtype=float) + prior_info))
            ok = bool(np.all(np.isfinite(cov)))
            if not ok and choice == "sa":
                # last resort, the outer-product (BHHH) information S of the same pass: a
                # sum of per-subject score products, positive definite whenever the scores
                # span every direction (39 of 39 ALS study replicates, 96 % coverage,
                # benchmarks/results/population_recovery_model_chains4_se.md), with no
                # difference of two large Monte Carlo terms in it
                cov = inverse_pd(np.asarray(sp.meat, dtype=float) + prior_info)
                ok = bool(np.all(np.isfinite(cov)))
                kind = "scores" if ok else kind
            s["fallback"] = {"first": first, "iterations": n_iter, "chains": n_chains,
                             "kind": kind, "ok": ok,
                             "smallest": float(np.linalg.eigvalsh(sp.fisher).min())}
            if ok:
                info = (sp.meat if kind == "scores" else sp.fisher) + prior_info
                res = dataclasses.replace(res, fisher=info, covariance=cov)
                s["score_pass"] = sp
            ep.timings["covariance fallback"] = time.perf_counter() - t
        sd = np.array([(res.residual.a if which == "a" else res.residual.b)[k]
                       for _, k, which in s["err"]], dtype=float)
        coef = s["coef0"].copy()
        for j, (col, e, kind) in coef_map.items():
            b = res.beta[col - 1, e]
            coef[j] = b if kind == "linear" else math.expm1(b)
        x = np.concatenate([res.mu, om_model.pack(res.omega), np.log(sd),
                            coef[s["coef_free"]]])
        s["coef_map"] = coef_map
        # the per-subject estimates are at the conditional means; their conditional
        # covariance from the chains enters focei's per-subject block as
        # (Omega^-1 + info / 2)^-1 = eta_cov, i.e. info = 2 (eta_cov^-1 - Omega^-1)
        Oinv = np.linalg.inv(res.omega)
        info = np.array([2.0 * (_pinv(c) - Oinv) for c in res.eta_cov])
        N = s["data"].n_subjects
        if choice in _LINEARISED:
            # the FOCE-I objective and gradient at the SAEM estimates: for the sandwich (and
            # the conditional modes as a warm start of its inner problems)
            ofv_focei, _, gi, gr = self._gradient(problem, s, x, warm=False)
            s["eta"] = gr.inner.eta
            gr = dataclasses.replace(gr, inner=dataclasses.replace(
                gr.inner, eta=np.asarray(res.eta_mean, dtype=float), info=info))
        else:
            ofv_focei, gi = float("nan"), None
            gr = _Stand_in(inner=_Inner(eta=np.asarray(res.eta_mean, dtype=float), info=info),
                           ofv_i=np.asarray(res.ofv_i, dtype=float),
                           status=np.zeros(N, dtype=int))
        converged = bool(np.isfinite(res.ofv))
        message = (f"SAEM: {res.n_iter} iterations ({res.k1} exploration, "
                   f"{res.n_iter - res.k1} smoothing); exploration: {res.stop_reason}; "
                   f"smoothing: {res.smoothing_reason}; {res.n_chains} chains per subject, "
                   f"seed {seed}; OFV by importance sampling {res.ofv:.3f} +- "
                   f"{res.ofv_se:.3f} (MC SE)")
        if choice in _LINEARISED:
            message += f"; OFV by linearisation (FOCE-I) {ofv_focei:.4f}"
        s.update(x=x, ofv=float(res.ofv), gi=gi, gr=gr,
                 res=_Outcome(converged, message, res.n_iter), nfev=res.n_iter,
                 path=[], history=[], saem=res, ofv_focei=float(ofv_focei), choice=choice)
        ep.counters.simulations += res.n_iter
        point = self._point(ep, s)
        # the objective is the importance-sampling -2 log L (all constants), per subject
        designs = ep.designs
        n_obs = np.array([d.n for d in designs], dtype=int)
        log_terms = np.array([2.0 * np.sum(np.log(d.value[s["model"].log_scale[d.obs]]))
                              for d in designs])
        subj = np.asarray(res.ofv_i, dtype=float) + n_obs * _LOG_2PI + log_terms
        if choice in _LINEARISED:
            numbers += "; forward sensitivities for the FOCE-I covariance step"
        diag = dataclasses.replace(
            point.diagnostics, subject_objective=subj, starts_objective=subj[:, None].copy(),
            numbers_from=numbers,
            method=(f"SAEM (Monolix manner: MCMC kernels, exploration with annealing, "
                    f"smoothing with decreasing step), seed {seed}; -2 log L by importance "
                    f"sampling ({opt.is_samples} draws per subject, MC SE "
                    f"{res.ofv_se:.3f}); {res.n_iter} iterations ({res.k1} exploration: "
                    f"{res.stop_reason}; {res.n_iter - res.k1} smoothing: "
                    f"{res.smoothing_reason})"
                    + (f"; OFV by linearisation (FOCE-I objective at the SAEM estimates) "
                       f"{ofv_focei:.4f}" if choice in _LINEARISED else "")))
        return dataclasses.replace(point, diagnostics=diag,
                                   path_objective=np.array([float(subj.sum())]))

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate):
        s = self._state
        res = s["saem"]
        if s["choice"] in _LINEARISED:
            s["covariance_matrix"] = "r" if s["choice"] == "linearization" else "sandwich"
            unc = super().uncertainty(ep, point)
            method = (COVARIANCE_METHOD_FOCEI if s["choice"] == "focei"
                      else COVARIANCE_METHOD_LINEARIZATION)
        else:
            method = (COVARIANCE_METHOD_SANDWICH if s["choice"] == "sandwich"
                      else COVARIANCE_METHOD)
            fb = s.get("fallback")
            if fb is not None and fb["ok"] and fb["kind"] == "model":
                method = COVARIANCE_METHOD_FALLBACK
            elif fb is not None and fb["ok"] and fb["kind"] == "scores":
                method = COVARIANCE_METHOD_SCORES
            unc = self._sa_uncertainty(ep, point, res, method)
        warnings = tuple(w.replace('"focei"', '"saem"') for w in unc.warnings)
        # the method is the population part's covariance_method (screen, report.md), not a
        # warning; the warnings are what went wrong (a fallback, a failed step)
        failed = "failed" in " ".join(warnings)
        unc = dataclasses.replace(unc, methods={"covariance": SUBJECT_METHOD},
                                  warnings=warnings)
        # the population part: SAEM's numbers where they differ from focei's
        pop = s["population"]
        hist = self._trace(ep, s, res)
        s["population"] = dataclasses.replace(
            pop, method="saem", iterations=int(res.n_iter), evaluations=int(res.n_iter),
            converged=bool(np.isfinite(res.ofv)),
            covariance_method=method if not failed else pop.covariance_method,
            history=hist, ofv_linearised=float(s["ofv_focei"]),
            priors=_prior_table(ep.problem, s), prior_objective=float(res.prior_objective),
            r_condition_number=(_information_condition(res.fisher) if s["choice"] not in
                                _LINEARISED else pop.r_condition_number))
        return unc

    def _sa_uncertainty(self, ep, point, res, method=COVARIANCE_METHOD):
        """Uncertainty from the SAEM core's stochastic-approximation information: the
        population covariance in focei's ``covariance_names`` order, and per subject the
        conditional covariance of eta from the chains."""

        problem = ep.problem
        s = self._state
        t = time.perf_counter()
        pop_cols, eta_pos, err = s["pop_cols"], s["eta_pos"], s["err"]
        D = pop_cols.size
        om_model = s["omega_model"]
        P, S = om_model.n_parameters, len(err)
        K = s["x"].size
        cov = np.full((K, K), np.nan)
        warnings = []
        T = None
        if res.covariance is not None:
            T = _to_focei_layout(s, res, D, P, S)
        if T is None:
            warnings.append("covariance step failed: the SAEM run computed no Fisher "
                            "information for these parameters; no standard errors")
        elif not np.all(np.isfinite(res.covariance)):
            warnings.append(_failure_message(s["choice"], s.get("fallback"), res))
        else:
            cov = T @ res.covariance @ T.T
            cov = 0.5 * (cov + cov.T)
            fb = s.get("fallback")
            if fb is not None:
                warnings.append(_fallback_message(s["choice"], fb))
        if warnings:
            # an Omega correlation gone to +-1 makes the information indefinite whatever the
            # Monte Carlo noise: say so beside the fallback or failure
            boundary = boundary_words(problem, s, res.omega)
            if boundary:
                warnings[-1] += "; " + boundary
        s["cov"], s["cov_method"] = cov, method
        ep.timings["covariance"] = time.perf_counter() - t
        est = point.estimates
        m, Q = est.theta.shape
        # per subject: the conditional covariance of eta from the chains
        se, ci, blocks = subject_uncertainty(problem, est, cov, D, P, S, eta_pos,
                                             res.eta_cov, ep.confidence)
        self._population(ep, point, cov)
        return Uncertainty(se=se, intervals={"covariance": ci},
                           methods={"covariance": SUBJECT_METHOD},
                           open_intervals={"covariance": np.zeros((m, Q, 2), dtype=bool)},
                           blocks=blocks, joint=False, warnings=tuple(warnings))

    def _kernel_model(self, s, x0, D, E, omega0, residual0, seed):
        """The predictions the chains and the importance sampling use, and their
        description: fixed-step RK4 (compiled per row with kernels, else numpy lockstep) when
        every design is a plain unit and the calibrated step reproduces the exact path to 0.01
        residual SD at draws from the initial population; the exact path (rtol 1e-8, no
        sensitivities) otherwise."""
        exact = _Predictions(s["model"])
        words = "exact outputs (rtol 1e-8, no sensitivities)"
        model = s["model"]
        survival = model.problem.survival is not None
        tail = (" in the SAEM chains and the importance sampling" + (
            ", with the [survival] term -2 log p(T | phi) (the cumulative hazard and the "
            "hazard at the record times, from the same integration) added to the chains' "
            "data term and to the importance sampling; in Louis' information the survival "
            "term enters through the parameters without a random effect (its score and "
            "curvature), given phi it does not depend on the others"
            if survival else ""))
        if not applicable(model.problem, getattr(model, "eval_designs", model.designs)):
            return exact, words + tail
        data = s["data"]
        N = data.n_subjects
        rng = np.random.default_rng([seed, 7])
        phi = np.tile(x0[:D], (N, 1))
        phi[:, s["eta_pos"]] += rng.standard_normal((N, E)) @ np.linalg.cholesky(omega0).T
        index = np.arange(N)
        f0, _ = exact.predict(np.tile(x0[:D], (N, 1)), index)
        sd = np.sqrt(residual0.variance(np.where(data.mask, np.nan_to_num(f0), 0.0),
                                        data.observable))
        sd = np.where(data.mask & (sd > 0), sd, 1.0)
        fast = RK4Predictions(model)
        unit = " residual SD" + (" (survival term: log-likelihood units)" if survival else "")
        if fast.calibrate(exact.predict_extra if survival else exact.predict, phi, index, sd):
            return fast, (f"{fast.method} (step {fast.h:.3g} model time units, "
                          f"calibrated: largest difference from the exact path "
                          f"{fast.max_error:.2g}{unit} at draws from the initial "
                          f"population)" + tail)
        return exact, (words + tail + f" (the RK4 path missed 0.01{unit}: "
                       f"{fast.max_error:.2g})")

    def _trace(self, ep, s, res):
        """SAEM's iterations as ``PopulationPart.history`` rows: iteration, typical values
        (natural scale), residual SDs, Omega diagonal, OFV (NaN but on the last row)."""

        problem = ep.problem
        pop_cols = s["pop_cols"]
        typ = from_internal(res.trace_mu, problem.scale[pop_cols], problem.lower[pop_cols],
                            problem.upper[pop_cols])
        sds = np.column_stack([(res.trace_a if which == "a" else res.trace_b)[:, k]
                               for _, k, which in s["err"]]) if s["err"] else \
            np.zeros((res.n_iter, 0))
        om = np.einsum("tee->te", res.trace_omega)
        ofv = np.full(res.n_iter, np.nan)
        ofv[-1] = res.ofv
        return np.column_stack([np.arange(1, res.n_iter + 1), typ, sds, om, ofv])


class _Predictions:
    """The fit's individual model for SAEM: predictions only (SAEM's kernels never use the
    derivatives, which cost 2-3 times the solve) at rtol 1e-8 (the chains' acceptance ratios
    need no more; FOCE-I's 1e-10 is for its differentiated gradient)."""

    def __init__(self, model: ProblemModel):
        self.model = model
        self.problem = unit_error_problem(model.problem, rtol=1e-8, atol=1e-11)
        self.none = np.zeros(0, dtype=int)

    @property
    def extra_m2ll(self) -> bool:
        """True with ``[survival]`` (SAEM then calls :meth:`predict_extra`)."""
        return self.problem.survival is not None

    def predict_extra(self, phi, index):
        """:meth:`predict` and ``-2 log p(T_i | phi)`` of the time-to-event records (R,)
        (NaN where failed)."""
        return self.predict(phi, index, _extra=True)

    def predict(self, phi, index, _extra=False):
        m = self.model
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        # censored values are evaluated at their limits (the adapter's evaluation designs),
        # so that every prediction is read off a residual
        designs = getattr(m, "eval_designs", m.designs)
        ev = self.problem.evaluate(designs, index, m.thetas(phi), self.none, want_jac=False)
        f, G = self._read(ev, designs, phi, index)
        if _extra:
            s = (np.zeros(phi.shape[0]) if ev.survival_m2ll is None
                 else np.asarray(ev.survival_m2ll, dtype=float))
            return f, G, s
        return f, G

    def _read(self, ev, designs, phi, index):
        m = self.model
        f = np.zeros((phi.shape[0], m.n))
        for r, i in enumerate(index):
            d = designs[i]
            if ev.failed[r]:
                f[r] = np.nan
                continue
            y = np.asarray(d.value, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(m.log_scale[d.obs], np.log(y), y)
            f[r, :d.n] = y - ev.residuals[r][:d.n]
        # the core checks the shape of G; SAEM does not read it
        return f, np.zeros((phi.shape[0], m.n, phi.shape[1]))

    def __call__(self, phi, index):
        return self.predict(phi, index)


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What focei's assembly reads of an optimiser result (``success``, ``message``,
    ``nit``)."""

    success: bool
    message: str
    nit: int


@dataclasses.dataclass(frozen=True)
class _Inner:
    """What focei's assembly reads of the inner problems: the EBEs (here the conditional
    means) and the per-subject information behind their conditional covariance."""

    eta: np.ndarray
    info: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Stand_in:
    """What focei's assembly reads of a FOCE-I gradient result, from SAEM's own numbers
    (per-subject importance-sampling OFV, every subject evaluated)."""

    inner: _Inner
    ofv_i: np.ndarray
    status: np.ndarray


def _prior_of(problem, s) -> PopulationPrior:
    """The config's priors (``prior``, ``eta_prior`` of the population parameters) on
    SAEM's estimation scales: typical values in ``pop_cols`` order, variances in
    ``eta_pos`` order."""
    params = problem.parameters
    pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
    D, E = pop_cols.size, eta_pos.size
    mean, sd = np.full(D, np.nan), np.full(D, np.inf)
    omega, df = np.full(E, np.nan), np.zeros(E)
    for d, q in enumerate(pop_cols):
        p = getattr(params[q], "prior", ())
        if p:
            mean[d] = float(to_internal(np.array([p[0]]), problem.scale[[q]],
                                        problem.lower[[q]], problem.upper[[q]])[0])
            sd[d] = p[1]
    for e, j in enumerate(eta_pos):
        p = getattr(params[pop_cols[j]], "eta_prior", ())
        if p:
            omega[e], df[e] = p
    return PopulationPrior(mean, sd, omega, df)


def _prior_table(problem, s) -> dict:
    """``PopulationPart.priors``: ``{NAME: {"value", "sd"}}`` for a typical value and
    ``{"omega^2 NAME": {"value", "df"}}`` for a variance."""
    params = problem.parameters
    out = {}
    for q in s["pop_cols"]:
        p = params[q]
        if getattr(p, "prior", ()):
            out[p.name] = {"value": float(p.prior[0]), "sd": float(p.prior[1])}
        if getattr(p, "eta_prior", ()):
            out[f"omega^2 {p.name}"] = {"value": float(p.eta_prior[0]),
                                        "df": float(p.eta_prior[1])}
    return out


def _pinv(c):
    """Inverse of a conditional covariance (pseudo-inverse when a chain never moved)."""
    try:
        return np.linalg.inv(c)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(c)
