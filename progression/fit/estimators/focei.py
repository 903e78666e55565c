"""The ``focei`` estimator: population fit by first-order conditional estimation with
interaction (NONMEM's FOCE-I), ``[fit] estimator = "focei"``.

Population model: each ``estimate = "population"`` parameter has a typical value theta on its
estimation scale (log, log10, logit, linear), optionally covariate effects on it
(``[parameters.NAME.covariates.COV]``: power, exponential, linear, categorical, centred on a
reference; see :mod:`progression.fit.population._model`) and, with ``eta = <variance>``, a
random effect ``phi_i = mu_i + eta_i``, ``eta ~ N(0, Omega)``. Omega is diagonal, or has
blocks of correlated random effects (``[omega] blocks``, ``full = true``) and fixed
variances or blocks (``eta_fixed``, a block's ``fixed``). Error models additive, proportional,
combined (``V = a^2 + b^2 f^2``) and log-normal (additive on log data and predictions); every
estimated error parameter is one population value. Censored values (M3) are accepted.

Outer problem: ``scipy.optimize.minimize`` (L-BFGS-B, bounds from the parameters' bounds) over
(theta on the estimation scale, Omega's free parameters: log variances of 1 x 1 blocks and the
log-Cholesky factors of larger ones, log residual SDs, free covariate coefficients) with the
exact gradient of :func:`~progression.fit.population.focei_gradient` chained to them
(``d mu_i / d theta``, ``d mu_i / d c`` analytic; ``dOFV/dp = sum_kl Gamma_kl
dOmega_kl/dp``); the conditional modes (inner problems, all subjects in lockstep) are
warm-started from the previous outer evaluation's modes moved to first order by the
implicit-function rule (:class:`~progression.fit.population._gradient.EtaPredictor`). The
outer variables are scaled by one factor so that L-BFGS-B's first step (the whole gradient
when every variable is bounded) has length :data:`FIRST_STEP`. The individual model
is :class:`~progression.fit.population._adapter.ProblemModel` (the fit's Problem: doses,
covariates, conditions; exact outputs and forward sensitivities at rtol 1e-10), evaluated
through the cached :class:`~progression.fit.population._fastexact.FastExactModel` where it
applies (same numbers, checked when it is built). Estimation and covariance step run with one
OpenBLAS thread (:mod:`~progression.fit.population._threads`).

Objective: the OFV in NONMEM's convention (``-2 log L`` without ``N log 2 pi``) and ``-2 log L``
with the constant (the fit's ``objective``, per subject in ``subject_objective``).

Covariance step: the sandwich ``R^-1 S R^-1`` (NONMEM's default) with R the Hessian of the OFV
by central differences of the exact gradient and S the sum of the per-subject gradient outer
products; R^-1 alone (times 2) when S is singular; a failed step (R not positive definite)
is a warning, not an error.

Results: the per-subject estimates are the individual parameters at the conditional modes
(EBEs), so predictions, ``compare`` and ``simulate`` work on them; the population numbers
(theta, Omega, sigma, their SEs, EBEs, shrinkage, CV %, OFV, and the outer iterations in
``history`` for the fit folder's ``fit.ext``) are in the
:class:`~progression.fit.parts.PopulationPart`.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from scipy.optimize import minimize

from ...errors import ConfigError, FitError
from ...parallel import IterationLog
from ..parts import Diagnostics, Estimates, PopulationPart, Uncertainty
from ..population import FAILED, InnerOptions, focei_gradient, r_matrix_diagnosis
from ..population._adapter import ProblemModel, residual_df
from ..population._core import Residual
from ..population._diagnostics import eta_shrinkage
from ..population._fastexact import fast_model
from ..population._gradient import collapsed_variances
from ..population._model import OmegaModel, TypicalModel
from ..population._threads import single_blas_thread
from ..transforms import dtheta_dx, from_internal, internal_bounds, to_internal
from ._focei_words import (  # noqa: F401  (re-exported: callers read them here)
    COVARIANCE_METHOD,
    COVARIANCE_METHOD_R,
    COVARIANCE_METHOD_R_ONLY,
    COVARIANCE_SKIPPED,
    SUBJECT_METHOD,
    boundary_words,
)
from ._importance import importance_ofv
from ._population_layout import (  # noqa: F401 - _covariate_model re-exported for tests
    _covariate_model,
    population_layout,
    subject_uncertainty,
)
from ._prior_terms import OuterPrior
from .base import EstimationProblem, Estimator, PointEstimate

__all__ = ["FOCEI", "COVARIANCE_METHOD", "population_layout"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Log-variance bounds of Omega's diagonal (variances 1e-8 .. 1e4 on the estimation scale).
_LOG_OMEGA_BOUNDS = (math.log(1e-8), math.log(1e4))
_HESSIAN_STEP = 1e-4


class _Skipped(Exception):
    """The covariance step is not wanted (``EstimationProblem.covariance_step`` False)."""
#: Curvature of the wall the outer objective shows where the model cannot be evaluated.
_WALL = 1e4
#: Inner (conditional mode) settings: the ODE solutions carry ~1e-10 relative error, so the
#: core's default step tolerance (1e-10) is below their noise and the damping escalates for
#: nothing; 1e-7 moves the OFV by < 1e-6 and its gradient by ~1e-5 on Theoph. Ties within
#: 1e-10 (relative) are accepted for the same reason: with the default 1e-13 the slowest Theoph
#: subject rejected steps on ODE noise until its damping ran out (22 iterations instead of the
#: closed form's 11; predict calls per warm inner solve 23 -> 12, OFV equal to 3e-12).
#: Length (in the outer variables) of L-BFGS-B's first step (see FOCEI.estimate).
FIRST_STEP = 0.5
#: L-BFGS-B's relative decrease test. The OFV carries the inner problems' noise (~1e-9 on
#: Theoph: modes to 1e-7, ODE at rtol 1e-10), so 1e-12 (~1e-10 absolute) kept the optimiser
#: taking 5-6 evaluations at the optimum on noise; 1e-10 (~1e-8 absolute) stops there.
OUTER_FTOL = 1e-10
INNER = InnerOptions(xtol=1e-7, lambda_max=1e3, stall_xtol=1e-5, ftol_slack=1e-10)


class FOCEI(Estimator):
    """Population fit by FOCE-I (``[fit] estimator = "focei"``); see the module docstring."""

    name = "focei"
    #: The objective's method (subclasses: ``"foce"``, ``"fo"``, ``"laplace"``).
    method = "focei"
    description = ("population fit: first-order conditional estimation with interaction "
                   "(NONMEM's FOCE-I), covariate effects, diagonal/block/full Omega")

    #: Evaluate the model through :class:`~progression.fit.population._fastexact.
    #: FastExactModel` where it applies (same numbers, without the per-call Python of
    #: Problem.evaluate); False: always the general path.
    fast_path = True
    #: With ``[survival]``, the time-to-event residuals join the core's data as
    #: pseudo-observations (False: SAEM, which adds ``-2 log p(T | phi)`` to its chains itself).
    survival_residuals = True

    def __init__(self):
        self._state: dict = {}

    # ------------------------------------------------------------------ pieces

    def _setup(self, ep: EstimationProblem):
        problem, designs = ep.problem, ep.designs
        pop_cols, eta_pos, err = population_layout(problem)
        if eta_pos.size == 0:
            raise ConfigError(f"{ep.source}: fit.estimator = \"{self.name}\" needs at least "
                              "one population parameter with a random effect (eta = "
                              "<variance>)")
        self._check_censoring(ep, designs)
        # [survival]: the time-to-event residuals join the data as pseudo-observations of one
        # more observable (unit SD), so that every objective, its exact gradient and the
        # covariance step carry -2 log p(T | eta) (see ProblemModel)
        model = ProblemModel(problem, designs, pop_cols,
                             survival_residuals=self.survival_residuals)
        data = model.data(ep.source)
        params = problem.parameters
        names = [params[q].name for q in pop_cols]
        sc, lo, hi = (problem.scale[pop_cols], problem.lower[pop_cols],
                      problem.upper[pop_cols])
        th0 = to_internal(problem.values[pop_cols], sc, lo, hi)
        blo, bhi = internal_bounds(sc, lo, hi)
        # the covariate model: effects (categorical levels resolved from the data) and each
        # subject's covariate values
        covariates, effects = _covariate_model(ep, [params[q] for q in pop_cols])
        typical = TypicalModel(names, [params[q].scale for q in pop_cols], lo, hi, effects)
        coef0 = typical.initial_coefficients()
        coef_free = np.array([f for e in effects for f in e.estimated], dtype=bool)
        coef_lo = np.array([b for e in effects for b in e.lower], dtype=float)
        coef_hi = np.array([b for e in effects for b in e.upper], dtype=float)
        # Omega: blocks from the config, fixed variances, the rest diagonal
        eta_names = [names[j] for j in eta_pos]
        blocks = list({id(params[pop_cols[j]].omega_block): params[pop_cols[j]].omega_block
                       for j in eta_pos if params[pop_cols[j]].omega_block is not None
                       }.values())
        omega = OmegaModel.from_blocks(
            eta_names, [params[pop_cols[j]].eta for j in eta_pos], blocks,
            fixed_etas=[names[j] for j in eta_pos if params[pop_cols[j]].eta_fixed])
        om0 = omega.pack(omega.initial)
        om_lo, om_hi = [], []
        for nm in omega.parameter_names():
            # variances 1e-8 .. 1e4; a Cholesky diagonal is a standard deviation
            f = 1.0 if nm.startswith("log omega^2") else 0.5
            unb = nm.startswith("L ")
            om_lo.append(-np.inf if unb else f * _LOG_OMEGA_BOUNDS[0])
            om_hi.append(np.inf if unb else f * _LOG_OMEGA_BOUNDS[1])
        sd0 = np.log([problem.values[q] for q, _, _ in err])
        elo = [math.log(problem.lower[q]) if problem.lower[q] > 0 else -np.inf
               for q, _, _ in err]
        ehi = [math.log(problem.upper[q]) if np.isfinite(problem.upper[q]) else np.inf
               for q, _, _ in err]
        x0 = np.concatenate([th0, om0, sd0, coef0[coef_free]])
        bounds = list(zip(
            np.concatenate([blo, om_lo, elo, coef_lo[coef_free]]),
            np.concatenate([bhi, om_hi, ehi, coef_hi[coef_free]]), strict=True))
        bounds = [(None if not np.isfinite(a) else float(a),
                   None if not np.isfinite(b) else float(b)) for a, b in bounds]
        # typical values held at their config value (value_fixed, NONMEM's THETA FIX): equal
        # bounds hold them in the outer optimisation; the covariance step leaves them out
        x_fixed = np.zeros(x0.size, dtype=bool)
        for d, q in enumerate(pop_cols):
            if getattr(params[q], "value_fixed", False):
                x_fixed[d] = True
                bounds[d] = (float(th0[d]), float(th0[d]))
        s = dict(model=model, data=data, pop_cols=pop_cols, eta_pos=eta_pos, err=err,
                 survival_constant=model.survival_constant(),
                 x0=x0, bounds=bounds, eta=None, typical=typical, covariates=covariates,
                 omega_model=omega, coef0=coef0, coef_free=coef_free, x_fixed=x_fixed)
        s["prior"] = OuterPrior(problem, s)       # priors: -2 log p added to the objective
        return s

    def _check_censoring(self, ep: EstimationProblem, designs) -> None:
        """Censored values are accepted: :func:`focei_gradient` differentiates the M3 terms
        (an estimator without an M3 likelihood, ``fo``, overrides this to refuse them)."""
        return None

    def _core_gradient(self, model, data, mu, omega, residual, *, eta_columns, eta0,
                       inner_options):
        """The objective and its gradient from the population core (a
        :class:`~progression.fit.population.FoceiGradient`); subclasses (``foce``, ``fo``,
        ``laplace``) override it with their own objective."""
        return focei_gradient(model, data, mu, omega, residual, eta_columns=eta_columns,
                              eta0=eta0, inner_options=inner_options)

    def _split(self, s, x):
        """Outer ``x`` -> theta_x (D,), Omega (E, E), dOmega/dp (P, E, E), residual SDs (S,)
        and every covariate coefficient (C,), fixed ones at their values.

        Layout of x: typical values on their estimation scales (D), Omega's free parameters
        (P; log variances of 1 x 1 blocks, log-Cholesky of larger ones), log residual SDs
        (S), free covariate coefficients. Without blocks, fixed variances and covariates it
        is (theta, log Omega diagonal, log SDs), as before they existed.
        """
        D = s["pop_cols"].size
        P = s["omega_model"].n_parameters
        S = len(s["err"])
        omega, J = s["omega_model"].unpack_jac(x[D:D + P])
        coef = s["coef0"].copy()
        coef[s["coef_free"]] = x[D + P + S:]
        return x[:D], omega, J, np.exp(x[D + P:D + P + S]), coef

    def _unpack(self, s, x):
        """theta_x, Omega's diagonal and the residual SDs at outer ``x``."""
        theta_x, omega, _, sd, _ = self._split(s, x)
        return theta_x, np.diag(omega).copy(), sd

    def _mu(self, s, theta_x, coef):
        """Typical values of every subject (N, D) and their derivatives."""
        return s["typical"].mu(theta_x, coef, s["covariates"], s["data"].n_subjects)

    def _residual(self, problem, s, sd):
        vals = problem.values.copy()
        for (q, _, _), v in zip(s["err"], sd, strict=True):
            vals[q] = v
        K = len(problem.observables)
        a = [vals[i] if i >= 0 else 0.0 for i in problem.a_index[:K]]
        b = [vals[i] if i >= 0 else 0.0 for i in problem.b_index[:K]]
        df = [float(v) for v in residual_df(problem)[:K]]
        if problem.survival is not None:
            # the survival pseudo-observable: unit additive SD, held
            a.append(1.0)
            b.append(0.0)
            df.append(np.inf)
        return Residual(tuple(a), tuple(b), tuple(df))

    def _gradient(self, problem, s, x, warm=True):
        """FOCE-I objective and gradient at outer ``x``: (ofv, grad, per-subject grads, gr);
        ``(inf, 0, None, None)`` where a typical value leaves its scale's domain."""
        theta_x, omega, J_om, sd, coef = self._split(s, x)
        N = s["data"].n_subjects
        mu, dmu_dth, dmu_dc = self._mu(s, theta_x, coef)
        if not np.all(np.isfinite(mu)):
            return np.inf, np.zeros_like(x), None, None
        residual = self._residual(problem, s, sd)
        eta0 = s["eta"] if warm else None
        ref = s.get("eta_ref")
        predictor = getattr(ref, "predictor", None)
        if warm and predictor is not None:
            # the modes at the last point moved to first order (implicit-function rule): a
            # start that the inner solver leaves after one or two evaluations for a short
            # outer step (the objective does not depend on the start)
            eta0 = predictor(mu, omega, residual)
        try:
            gr = self._core_gradient(s["model"], s["data"], mu, omega, residual,
                                     eta_columns=s["eta_pos"], eta0=eta0, inner_options=INNER)
        except (FitError, np.linalg.LinAlgError):
            # Omega not positive definite to working precision (a Cholesky factor underflow),
            # or conditional modes that cannot be computed (non-finite curvature far out)
            return np.inf, np.zeros_like(x), None, None
        constant = s.get("survival_constant")
        if constant is not None and np.any(constant):
            # the exact events' residuals sqrt(C - 2 log h) carry C each: the OFV is -2 log L
            gr.ofv_i = gr.ofv_i - constant
        # chain rule: mu (per subject) -> theta and coefficients; Omega -> its parameters
        # (Gamma symmetric: dOFV = sum_kl Gamma_kl dOmega_kl)
        per = [gr.d_mu * dmu_dth, np.einsum("nkl,pkl->np", gr.d_omega_i, J_om)]
        ks = [(k, which) for _, k, which in s["err"]]
        per.append(np.column_stack([(gr.d_a_i[:, k] if w == "a" else gr.d_b_i[:, k]) * v
                                    for (k, w), v in zip(ks, sd, strict=True)])
                   if ks else np.zeros((N, 0)))
        per.append(np.einsum("nd,ndc->nc", gr.d_mu, dmu_dc)[:, s["coef_free"]])
        gi = np.concatenate(per, axis=1)
        return gr.ofv, gi.sum(axis=0), gi, gr

    # ------------------------------------------------------------------ estimation

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        # small matrices only: OpenBLAS's threads cost more than they save (see _threads)
        with single_blas_thread():
            return self._estimate(ep)

    def _estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem = ep.problem
        s = self._setup(ep)
        if self.fast_path:
            # the cached exact-path evaluator where it gives the general path's numbers
            s["model"] = fast_model(s["model"])
        self._state = s
        path = {"ofv": [], "n": 0, "last": (None, np.nan)}
        # the outer iterations (for the .ext table): iteration 0 is the start
        history: list[tuple[np.ndarray, float]] = []

        def fg(x):
            ofv, g, gi, gr = self._gradient(problem, s, x)
            path["n"] += 1
            path["eval"] = (x.copy(), (ofv, g, gi, gr))
            ofv, g = s["prior"].add(x, ofv, g)    # MAP: the data's OFV plus -2 log p
            if not np.isfinite(ofv):
                if path.get("ok") is None:
                    return 1e300, np.zeros_like(x)
                # outside the region where the model can be evaluated (a typical value out of
                # its scale's domain, a failed subject): a steep wall above the last finite
                # point, so that the line search backtracks instead of stopping (L-BFGS-B's
                # first step is the whole gradient, which can reach a corner of the bounds)
                xo, fo, go = path["ok"]
                d = x - xo
                slope = float(go @ d)
                return (fo + 1.0 + abs(slope) + _WALL * float(d @ d),
                        np.sign(slope) * go + 2.0 * _WALL * d)
            s["eta"] = gr.inner.eta
            s["eta_ref"] = gr
            path["ofv"].append(ofv)
            path["last"] = (x.copy(), ofv)
            path["ok"] = (x.copy(), ofv, np.array(g, dtype=float))
            if not history:
                history.append((x.copy(), ofv))
            return ofv, g

        log = IterationLog(f"fit {ep.name} ({self.name})", enabled=ep.progress)

        def iteration(xk):
            # L-BFGS-B's line search ends on the accepted point, so its OFV is the last one
            # evaluated; otherwise it is evaluated here (once per iteration, rare)
            lx, lo = path["last"]
            ofv = lo if lx is not None and np.array_equal(lx, xk) else fg(xk)[0]
            history.append((np.array(xk, dtype=float), float(ofv)))
            log.update(len(history) - 1, ofv, path["n"])

        # L-BFGS-B's first step is the whole gradient when every variable has two bounds
        # (lbfgsb.f: stp = 1 for a boxed problem), on Theoph a step of ~10 in the log
        # variances that lands at OFV 3e6 with stiff inner problems, and two backtracks. The
        # outer variables are scaled by one factor, y = lam x, so that this first step has
        # length FIRST_STEP in x; afterwards L-BFGS-B's updates make it scale-free.
        x0 = np.asarray(s["x0"], dtype=float)
        ofv0, g0 = fg(x0)
        gnorm = float(np.linalg.norm(g0)) if np.all(np.isfinite(g0)) else 0.0
        lam = math.sqrt(gnorm / FIRST_STEP) if gnorm > FIRST_STEP else 1.0
        y0 = x0 * lam

        def fg_y(y):
            if np.array_equal(y, y0):
                return ofv0, g0 / lam
            ofv, g = fg(y / lam)
            return ofv, g / lam

        def iteration_y(yk):
            iteration(yk / lam)

        bounds_y = [(None if a is None else a * lam, None if b is None else b * lam)
                    for a, b in s["bounds"]]
        max_fev = max(int(ep.options.max_nfev), 500)
        res = minimize(fg_y, y0, jac=True, method="L-BFGS-B", bounds=bounds_y,
                       callback=iteration_y,
                       options={"maxfun": max_fev, "maxiter": max_fev, "ftol": OUTER_FTOL,
                                "gtol": 1e-6 / lam, "maxcor": 20})
        log.close()
        x = res.x / lam
        last = path.get("eval")
        if last is not None and np.array_equal(last[0], x):
            ofv, g, gi, gr = last[1]          # the optimiser's last evaluation is at x
        else:
            ofv, g, gi, gr = self._gradient(problem, s, x)
        s.update(x=x, ofv=ofv, gi=gi, gr=gr, res=res, nfev=path["n"], path=path["ofv"],
                 history=history)
        ep.counters.simulations += path["n"]
        if ep.options.importance_ofv:
            s["ofv_is"], s["ofv_is_se"] = importance_ofv(self, ep, s, x, INNER)
        return self._point(ep, s)

    def _point(self, ep, s) -> PointEstimate:
        problem, designs = ep.problem, ep.designs
        m = len(designs)
        gr, x, res = s["gr"], s["x"], s["res"]
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        theta_x, _, _, sd, coef = self._split(s, x)
        eta = np.where(np.isfinite(gr.inner.eta), gr.inner.eta, 0.0)
        phi = self._mu(s, theta_x, coef)[0]
        phi[:, eta_pos] += eta
        theta = np.repeat(problem.values[None], m, axis=0)
        theta[:, pop_cols] = from_internal(phi, problem.scale[pop_cols],
                                           problem.lower[pop_cols], problem.upper[pop_cols])
        for (q, _, _), v in zip(s["err"], sd, strict=True):
            theta[:, q] = v
        exact = problem.exact_path()
        ev = exact.evaluate(designs, np.arange(m), theta, np.zeros(0, dtype=int),
                            want_jac=False, want_predictions=True)
        n_obs = np.array([d.n for d in designs], dtype=int)
        log_terms = np.array([2.0 * np.sum(np.log(d.value[s["model"].log_scale[d.obs]]))
                              for d in designs])
        subj = gr.ofv_i + n_obs * _LOG_2PI + log_terms
        ok = bool(res.success)
        failed = gr.status == FAILED
        why = [ev.messages[i] or "the simulation failed" for i in range(m)]
        failures = tuple(f"the conditional mode could not be found: {why[i]}" if failed[i]
                         else "" for i in range(m))
        msg = str(res.message)
        # per subject: its individual parameters (estimation scale) at the EBEs and the
        # residual error parameters, so that every per-subject view works on them
        err_cols = np.array([q for q, _, _ in s["err"]], dtype=int)
        x_err = to_internal(sd, problem.scale[err_cols], problem.lower[err_cols],
                            problem.upper[err_cols]) if err_cols.size else np.zeros(0)
        cols_i = np.concatenate([pop_cols, err_cols]).astype(int)
        x_cols = np.tile(cols_i, m)
        x_hat = np.concatenate([np.r_[phi[i], x_err] for i in range(m)])
        x_rows = [np.array([i]) for i in range(m) for _ in cols_i]
        diag = Diagnostics(
            subject_objective=subj, n_obs=n_obs, converged=np.full(m, ok),
            messages=(msg,) * m,
            failures=tuple(f or ("" if ok else f"the population fit did not converge: {msg}")
                           for f in failures),
            nfev=np.full(m, s["nfev"]), starts_objective=subj[:, None].copy(),
            best_start=np.zeros(m, dtype=int),
            before_zero=np.asarray(ev.before_zero if ev.before_zero is not None
                                   else np.zeros(m), dtype=int),
            numbers_from="exact outputs, forward sensitivities (rtol 1e-10) for the FOCE-I "
                         "objective and its gradient",
            method=("FOCE-I (NONMEM's objective), scipy L-BFGS-B on the exact gradient "
                    "(implicit-function rule), conditional modes in lockstep with warm "
                    "starts"))
        if problem.survival is not None:
            diag = dataclasses.replace(diag, method=diag.method + (
                "; [survival]: -2 log p(T | eta) as residuals sqrt(2 (Lambda(T) - "
                "Lambda(T0))) and, for an event, sqrt(C - 2 log h(T)), with their exact "
                "Hessian over eta (C removed from the OFV)"))
        s["theta"] = theta
        return PointEstimate(
            estimates=Estimates(theta=theta, x_hat=x_hat, x_cols=x_cols, x_rows=x_rows),
            diagnostics=diag, predictions=list(ev.predictions),
            information=np.zeros((m, 0, 0)), path_objective=np.array([float(subj.sum())]))

    # ------------------------------------------------------------------ covariance

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        with single_blas_thread():
            return self._uncertainty(ep, point)

    def _uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        problem = ep.problem
        s = self._state
        t = time.perf_counter()
        x = s["x"]
        K = x.size
        warnings = []
        cov = np.full((K, K), np.nan)
        method = COVARIANCE_METHOD if ep.covariance_step else COVARIANCE_SKIPPED
        # held typical values (value_fixed) are not parameters of the covariance step: R and
        # S over the free ones, zero (co)variance for the held ones
        fixed = s.get("x_fixed", np.zeros(K, dtype=bool))
        free = np.flatnonzero(~fixed)
        try:
            if not ep.covariance_step:
                raise _Skipped
            Rm = np.zeros((K, K))
            eta = s["eta"]
            ref = s["eta_ref"] = s.get("gr")
            for k in free:
                cols = []
                for sign in (1.0, -1.0):
                    xs = x.copy()
                    xs[k] += sign * _HESSIAN_STEP
                    s["eta"], s["eta_ref"] = eta, ref
                    ofv, g = s["prior"].add(xs, *self._gradient(problem, s, xs)[:2])
                    if not np.isfinite(ofv):
                        raise np.linalg.LinAlgError("the objective is not finite near the "
                                                    "estimates")
                    cols.append(g)
                Rm[:, k] = (cols[0] - cols[1]) / (2.0 * _HESSIAN_STEP)
            s["eta"], s["eta_ref"] = eta, ref
            Rm = Rm[np.ix_(free, free)]
            Rm = 0.5 * (Rm + Rm.T)
            all_names = self._covariance_names(problem, s)
            gone = collapsed_variances(Rm, tuple(all_names[k] for k in free), x[free])
            if gone.size:
                # variances gone to zero, where the OFV is flat in their log: held there, the
                # others' covariance conditional on them (what refitting without those etas
                # gives), said in a warning and without an SE of their own
                s["collapsed"] = tuple(all_names[free[k]] for k in gone)
                warnings.append(
                    "covariance step: " + ", ".join(
                        f"{all_names[free[k]][len('log '):]} = {math.exp(x[free[k]]):.2g}"
                        for k in gone)
                    + " went to zero (R is flat in it): held there, the other standard "
                      "errors are conditional on it; refit without that random effect to "
                      "confirm")
                keep = np.setdiff1d(np.arange(free.size), gone)
                free, Rm = free[keep], Rm[np.ix_(keep, keep)]
            ev = np.linalg.eigvalsh(Rm)
            s["R"] = Rm
            # NONMEM-style words: which directions fail and the parameters they load on;
            # "algorithmically singular" too (an eigenvalue within 1e-10 of the largest:
            # a parameter the data cannot inform gives an exactly zero row, whose
            # eigenvalue lands on either side of 0 by rounding)
            why = r_matrix_diagnosis(Rm, tuple(all_names[k] for k in free))
            if why or ev.min() <= 0:
                why = "; ".join(w for w in (why, boundary_words(problem, s, self._split(s, x)[1]))
                                if w)
                raise np.linalg.LinAlgError(
                    why or f"R is not positive definite (smallest eigenvalue {ev.min():.3g})")
            Rinv = np.linalg.inv(Rm)
            gi = s["gi"][:, free]
            S = gi.T @ gi
            if s.get("covariance_matrix") == "r" or not s["prior"].empty:
                # asked for (SAEM's "linearization"), or a posterior: the information alone
                cf = 2.0 * Rinv
                method = COVARIANCE_METHOD_R_ONLY
            elif np.linalg.matrix_rank(S) == free.size:
                cf = Rinv @ S @ Rinv
            else:
                cf = 2.0 * Rinv
                method = COVARIANCE_METHOD_R
                warnings.append("covariance step: S is singular; the covariance is 2 R^-1")
            cov = np.zeros((K, K))
            cov[np.ix_(free, free)] = cf
            s["R"], s["S"] = Rm, S
        except _Skipped:
            pass
        except np.linalg.LinAlgError as exc:
            warnings.append(f"covariance step failed: {exc}; no standard errors")
        cov = 0.5 * (cov + cov.T)
        s["cov"], s["cov_method"] = cov, method
        ep.timings["covariance"] = time.perf_counter() - t
        est = point.estimates
        m, Q = est.theta.shape
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        D, E = pop_cols.size, eta_pos.size
        P, S = s["omega_model"].n_parameters, len(s["err"])
        omega = self._split(s, x)[1]
        # per subject: the conditional covariance of its EBE, (Omega^-1 + sum F g g')^-1 (the
        # FOCE-I matrix M; inner.info is 2 sum F g g'), for the parameters with a random
        # effect; the population covariance for the others
        info = s["gr"].inner.info
        Oinv = np.linalg.inv(omega)
        cond = np.full((m, E, E), np.nan)
        for i in range(m):
            try:
                cond[i] = np.linalg.inv(Oinv + 0.5 * info[i])
            except np.linalg.LinAlgError:
                pass
        se, ci, blocks = subject_uncertainty(problem, est, cov, D, P, S, eta_pos, cond,
                                             ep.confidence)
        self._population(ep, point, cov)
        s["population"], s["cov_method"] = s["prior"].annotate(s["population"], problem, x,
                                                               s["cov_method"])
        return Uncertainty(se=se, intervals={"covariance": ci},
                           methods={"covariance": SUBJECT_METHOD},
                           open_intervals={"covariance": np.zeros((m, Q, 2), dtype=bool)},
                           blocks=blocks, joint=False, warnings=tuple(warnings))

    def _population(self, ep, point, cov):
        problem = ep.problem
        s = self._state
        pop_cols, eta_pos, err = s["pop_cols"], s["eta_pos"], s["err"]
        om_model, typical = s["omega_model"], s["typical"]
        D, E = pop_cols.size, eta_pos.size
        P, S = om_model.n_parameters, len(err)
        theta_x, omega, J_om, sd, coef = self._split(s, s["x"])
        w2 = np.diag(omega).copy()
        names = problem.names
        sc, lo, hi = (problem.scale[pop_cols], problem.lower[pop_cols],
                      problem.upper[pop_cols])
        typ = from_internal(theta_x, sc, lo, hi)
        dth = dtheta_dx(theta_x, sc, lo, hi)
        sx = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
        eta = s["gr"].inner.eta
        shrink = eta_shrinkage(eta, omega) if eta.shape[0] > 1 else np.full(E, np.nan)
        cv = {}
        for e, j in enumerate(eta_pos):
            q = pop_cols[j]
            cv[names[q]] = (100.0 * math.sqrt(math.expm1(w2[e])) if problem.scale[q] == 1
                            else float("nan"))
        # Omega's elements: standard errors by the delta method through its parametrisation
        # (fixed elements: none)
        C_om = cov[D:D + P, D:D + P]
        om_var = np.einsum("pkl,pq,qkl->kl", J_om, C_om, J_om)
        fixed_eta = np.zeros(E, dtype=bool)
        for idx, fx in zip(om_model.blocks, om_model.fixed, strict=True):
            fixed_eta[idx] = fx
        # a variance held at zero by the covariance step (collapsed_variances) has no SE
        gone = np.array([f"log omega^2 {names[pop_cols[j]]}" in s.get("collapsed", ())
                         for j in eta_pos], dtype=bool)
        fixed_eta = fixed_eta | gone
        om_se = np.where(np.outer(fixed_eta, fixed_eta) | (om_var < 0), np.nan,
                         np.sqrt(np.abs(om_var)))
        eta_names = [names[pop_cols[j]] for j in eta_pos]
        offdiag_se, corr_se = {}, {}
        for idx, fx in zip(om_model.blocks, om_model.fixed, strict=True):
            for r in range(1, idx.size):
                for c in range(r):
                    a, b = idx[r], idx[c]
                    key = f"{eta_names[a]},{eta_names[b]}"
                    offdiag_se[key] = float(om_se[a, b])
                    # correlation rho = w_ab / sqrt(w_aa w_bb), delta method
                    rho = omega[a, b] / math.sqrt(omega[a, a] * omega[b, b])
                    drho = (J_om[:, a, b] / math.sqrt(omega[a, a] * omega[b, b])
                            - 0.5 * rho * (J_om[:, a, a] / omega[a, a]
                                           + J_om[:, b, b] / omega[b, b]))
                    v = float(drho @ C_om @ drho)
                    corr_se[key] = math.sqrt(v) if v >= 0 and not fx else float("nan")
        # covariate coefficients (fixed ones without SE)
        free = s["coef_free"]
        coef_se = np.full(coef.size, np.nan)
        coef_se[free] = sx[D + P + S:]
        coef_names = typical.coefficient_names
        effects = []
        for e, sl in zip(typical.effects, typical.slices, strict=True):
            effects.append(e.with_values(coef[sl]).as_dict())
        # the outer iterations in natural units: theta, residual SDs, Omega diagonal, OFV
        hist, extra = [], []
        low = np.tril_indices(E, -1)
        for it, (hx, hofv) in enumerate(s.get("history") or ()):
            ht, hom, _, hsd, hco = self._split(s, hx)
            hist.append(np.r_[it, from_internal(ht, sc, lo, hi), hsd, np.diag(hom), hofv])
            extra.append(np.r_[hco, hom[low]])
        m2ll = float(point.path_objective[0])
        # held typical values (value_fixed) are not estimated parameters
        n_par = int(s["x"].size - np.count_nonzero(s.get("x_fixed", ())))
        n_obs = int(sum(d.n for d in ep.designs))
        res = s["res"]
        from ..population._outputs import correlation_condition_number

        Rm = s.get("R")
        r_cond = (float(np.linalg.cond(Rm)) if Rm is not None and np.all(np.isfinite(Rm))
                  else float("nan"))
        part = PopulationPart(
            fixed_effects={names[q]: float(typ[j]) for j, q in enumerate(pop_cols)},
            fixed_effects_se={names[q]: float(sx[j] * dth[j]) for j, q in enumerate(pop_cols)},
            omega_names=tuple(eta_names),
            omega=omega,
            sigma={names[q]: float(v) for (q, _, _), v in zip(err, sd, strict=True)},
            ebes=np.asarray(eta, dtype=float),
            shrinkage={k: float(shrink[e]) for e, k in enumerate(eta_names)},
            omega_se={k: float(om_se[e, e]) for e, k in enumerate(eta_names)},
            sigma_se={names[q]: float(sx[D + P + k] * v) for k, ((q, _, _), v)
                      in enumerate(zip(err, sd, strict=True))},
            cv_percent=cv, ofv=float(s["ofv"]), m2ll=m2ll,
            ofv_importance=float(s.get("ofv_is", math.nan)),
            ofv_importance_se=float(s.get("ofv_is_se", math.nan)),
            aic=m2ll + 2 * n_par, bic=m2ll + n_par * math.log(max(n_obs, 1)),
            n_parameters=n_par, iterations=int(res.nit), evaluations=int(s["nfev"]),
            converged=bool(res.success), method=self.name, covariance_method=s["cov_method"],
            covariance=cov, covariance_names=self._covariance_names(problem, s),
            history=np.array(hist, dtype=float) if hist else None,
            scales={names[q]: str(problem.parameters[q].scale) for q in pop_cols},
            bounds={names[q]: (float(problem.lower[q]), float(problem.upper[q]))
                    for q in pop_cols},
            covariate_effects=tuple(effects),
            coefficients={n: float(v) for n, v in zip(coef_names, coef, strict=True)},
            coefficients_se={n: float(v) for n, v in zip(coef_names, coef_se, strict=True)},
            omega_blocks=tuple(om_model.block_specs()),
            omega_offdiag_se=offdiag_se,
            omega_correlation_se=corr_se,
            condition_number=correlation_condition_number(cov),
            r_condition_number=r_cond,
            subject_covariates={c: np.asarray(v).tolist()
                                for c, v in s["covariates"].items()},
            history_extra=np.array(extra, dtype=float) if extra else None,
            fixed_typical=tuple(names[q] for d, q in enumerate(pop_cols)
                                if s.get("x_fixed") is not None and s["x_fixed"][d]))
        s["population"] = part

    def _covariance_names(self, problem, s) -> tuple:
        """Names of the outer parameters x, in order (``PopulationPart.covariance_names``)."""
        names = problem.names
        coef_names = s["typical"].coefficient_names
        return tuple([f"theta {names[q]}" for q in s["pop_cols"]]
                     + list(s["omega_model"].parameter_names())
                     + [f"log {names[q]}" for q, _, _ in s["err"]]
                     + [f"coef {n}" for n, f in zip(coef_names, s["coef_free"], strict=True)
                        if f])

    def __call__(self, ep: EstimationProblem):
        out = super().__call__(ep)
        return dataclasses.replace(out, population=self._state["population"])

    def __getstate__(self):
        # the state of a running fit is not part of the estimator
        return {}

    def __setstate__(self, state):
        self._state = {}
