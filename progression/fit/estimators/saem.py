"""The ``saem`` estimator: population fit by stochastic approximation EM (Monolix's SAEM),
``[fit] estimator = "saem"``, from the same configs as ``focei``.

Population model: as :mod:`~.focei` (``estimate = "population"`` parameters with typical value
theta on their estimation scale, ``eta = <variance>`` for a random effect, Omega diagonal;
additive, proportional, combined or log-normal error). SAEM additionally needs a random effect
on **every** population parameter (the core holds parameters without one at their initial
values: Monolix's separate gradient step for them is not implemented) and every error
parameter of an observable estimated.

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

Standard errors: SAEM's own (linearisation or stochastic approximation of the Fisher
information) are not implemented in the core; the covariance step is FOCE-I's sandwich
``R^-1 S R^-1`` evaluated **at the SAEM estimates** (one FOCE-I gradient per parameter and
side; the FOCE-I gradient there is small but not zero, so this is an approximation, stated in
the method). Per subject, the covariance of the individual parameters with a random effect is
the conditional covariance of eta from the chains.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ...errors import ConfigError
from ..population import SaemOptions, saem
from ..population._adapter import ProblemModel, unit_error_problem
from .base import EstimationProblem, PointEstimate
from .focei import FOCEI

__all__ = ["SAEM", "COVARIANCE_METHOD", "SUBJECT_METHOD"]

_LOG_2PI = math.log(2.0 * math.pi)
#: The population covariance step, in words.
COVARIANCE_METHOD = ("FOCE-I sandwich R^-1 S R^-1 at the SAEM estimates (R: Hessian of the "
                     "FOCE-I OFV by central differences of its exact gradient; S: sum of "
                     "per-subject FOCE-I gradient products; SAEM's own standard errors are not "
                     "implemented), Wald interval on the estimation scale")
#: The per-subject intervals, in words.
SUBJECT_METHOD = ("per subject: conditional covariance of eta from the SAEM chains (smoothing "
                  "phase), for parameters with a random effect; the population covariance "
                  "step for the others (see the population part); Wald interval on the "
                  "estimation scale")


def saem_options(options) -> SaemOptions:
    """The :class:`SaemOptions` of an :class:`~progression.fit.EstimatorOptions`."""
    return SaemOptions(k1=int(options.saem_exploration), k2=int(options.saem_smoothing),
                       n_chains=int(options.saem_chains) or None,
                       is_samples=int(options.is_samples))


class SAEM(FOCEI):
    """Population fit by SAEM (``[fit] estimator = "saem"``); see the module docstring."""

    name = "saem"
    description = ("population fit: stochastic approximation EM (Monolix's SAEM), diagonal "
                   "Omega, OFV by importance sampling")

    def _setup_saem(self, ep: EstimationProblem):
        problem = ep.problem
        try:
            s = self._setup(ep)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace('"focei"', '"saem"')) from None
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        missing = [problem.names[q] for j, q in enumerate(pop_cols) if j not in set(eta_pos)]
        if missing:
            raise ConfigError(f"{ep.source}: fit.estimator = \"saem\" needs a random effect "
                              f"(eta = <variance>) on every population parameter; "
                              f"parameters.{missing[0]} has none")
        est = {q for q, _, _ in s["err"]}
        fixed = [problem.names[i] for k in range(len(problem.observables))
                 for i in (problem.a_index[k], problem.b_index[k])
                 if i >= 0 and i not in est]
        if fixed:
            raise ConfigError(f"{ep.source}: fit.estimator = \"saem\" estimates every error "
                              f"parameter; {fixed[0]} is fixed (estimate it, or use focei)")
        return s

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem = ep.problem
        s = self._setup_saem(ep)
        self._state = s
        D, E = s["pop_cols"].size, s["eta_pos"].size
        x0 = s["x0"]
        opt = saem_options(ep.options)
        seed = int(ep.options.seed)
        t = time.perf_counter()
        res = saem(_Predictions(s["model"]), s["data"], x0[:D], np.diag(np.exp(x0[D:D + E])),
                   self._residual(problem, s, np.exp(x0[D + E:])),
                   eta_columns=s["eta_pos"], options=opt, seed=seed)
        ep.timings["saem"] = time.perf_counter() - t
        sd = np.array([(res.residual.a if which == "a" else res.residual.b)[k]
                       for _, k, which in s["err"]], dtype=float)
        x = np.concatenate([res.mu, np.log(np.diag(res.omega)), np.log(sd)])
        # the FOCE-I objective and gradient at the SAEM estimates: for the covariance step
        # (and the conditional modes as a warm start of its inner problems)
        ofv_focei, _, gi, gr = self._gradient(problem, s, x, warm=False)
        s["eta"] = gr.inner.eta
        # the per-subject estimates are at the conditional means; their conditional
        # covariance from the chains enters focei's per-subject block as
        # (Omega^-1 + info / 2)^-1 = eta_cov, i.e. info = 2 (eta_cov^-1 - Omega^-1)
        Oinv = np.linalg.inv(res.omega)
        info = np.array([2.0 * (np.linalg.inv(c) - Oinv) for c in res.eta_cov])
        inner = dataclasses.replace(gr.inner, eta=np.asarray(res.eta_mean, dtype=float),
                                    info=info)
        converged = bool(np.isfinite(res.ofv))
        message = (f"SAEM: {res.n_iter} iterations ({res.k1} exploration, "
                   f"{res.n_iter - res.k1} smoothing), {res.stop_reason}; {res.n_chains} "
                   f"chains per subject, seed {seed}; OFV by importance sampling "
                   f"{res.ofv:.3f} +- {res.ofv_se:.3f} (MC SE)")
        s.update(x=x, ofv=float(res.ofv), gi=gi, gr=dataclasses.replace(gr, inner=inner),
                 res=_Outcome(converged, message, res.n_iter), nfev=res.n_iter,
                 path=[], history=[], saem=res, ofv_focei=float(ofv_focei))
        ep.counters.simulations += res.n_iter
        point = self._point(ep, s)
        # the objective is the importance-sampling -2 log L (all constants), per subject
        designs = ep.designs
        n_obs = np.array([d.n for d in designs], dtype=int)
        log_terms = np.array([2.0 * np.sum(np.log(d.value[s["model"].log_scale[d.obs]]))
                              for d in designs])
        subj = np.asarray(res.ofv_i, dtype=float) + n_obs * _LOG_2PI + log_terms
        diag = dataclasses.replace(
            point.diagnostics, subject_objective=subj, starts_objective=subj[:, None].copy(),
            numbers_from="exact outputs (rtol 1e-8) in the SAEM chains and the "
                         "importance sampling; forward sensitivities for the FOCE-I "
                         "covariance step at the SAEM estimates",
            method=(f"SAEM (Monolix manner: MCMC kernels, exploration with annealing, "
                    f"smoothing with decreasing step), seed {seed}; -2 log L by importance "
                    f"sampling ({opt.is_samples} draws per subject, MC SE "
                    f"{res.ofv_se:.3f}); {res.n_iter} iterations, {res.stop_reason}"))
        return dataclasses.replace(point, diagnostics=diag,
                                   path_objective=np.array([float(subj.sum())]))

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate):
        unc = super().uncertainty(ep, point)
        s = self._state
        res = s["saem"]
        warnings = tuple(w.replace('"focei"', '"saem"') for w in unc.warnings)
        warnings += (f"SAEM standard errors: {COVARIANCE_METHOD}",)
        unc = dataclasses.replace(unc, methods={"covariance": SUBJECT_METHOD},
                                  warnings=warnings)
        # the population part: SAEM's numbers where they differ from focei's
        pop = s["population"]
        hist = self._trace(ep, s, res)
        s["population"] = dataclasses.replace(
            pop, method="saem", iterations=int(res.n_iter), evaluations=int(res.n_iter),
            converged=bool(np.isfinite(res.ofv)),
            covariance_method=(COVARIANCE_METHOD if "failed" not in " ".join(warnings)
                               else pop.covariance_method),
            history=hist)
        return unc

    def _trace(self, ep, s, res):
        """SAEM's iterations as ``PopulationPart.history`` rows: iteration, typical values
        (natural scale), residual SDs, Omega diagonal, OFV (NaN but on the last row)."""
        from ..transforms import from_internal

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

    def predict(self, phi, index):
        m = self.model
        phi = np.atleast_2d(np.asarray(phi, dtype=float))
        index = np.asarray(index, dtype=int)
        ev = self.problem.evaluate(m.designs, index, m.thetas(phi), self.none,
                                   want_jac=False)
        f = np.zeros((phi.shape[0], m.n))
        for r, i in enumerate(index):
            d = m.designs[i]
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
