"""The ``focei`` estimator: population fit by first-order conditional estimation with
interaction (NONMEM's FOCE-I), ``[fit] estimator = "focei"``.

Population model (this first version): each ``estimate = "population"`` parameter has a
typical value theta on its estimation scale (log, log10, logit, linear) and, with ``eta =
<variance>``, a random effect ``phi_i = theta + eta_i``, ``eta ~ N(0, Omega)`` with **Omega
diagonal** (full and block Omega are the next step); no covariate effects on the typical
values yet. Error models additive, proportional, combined (``V = a^2 + b^2 f^2``) and
log-normal (additive on log data and predictions); every estimated error parameter is one
population value.

Outer problem: ``scipy.optimize.minimize`` (L-BFGS-B, bounds from the parameters' bounds) over
(theta on the estimation scale, log Omega diagonal, log residual SDs) with the exact gradient of
:func:`~progression.fit.population.focei_gradient`; the conditional modes (inner problems, all
subjects in lockstep) are warm-started from the previous outer evaluation. The individual model
is :class:`~progression.fit.population._adapter.ProblemModel` (the fit's Problem: doses,
covariates, conditions; exact outputs and forward sensitivities at rtol 1e-10).

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

from ...errors import ConfigError
from ..parts import Diagnostics, Estimates, PopulationPart, Uncertainty
from ..population import FAILED, InnerOptions, focei_gradient
from ..population._adapter import ProblemModel
from ..population._core import Residual
from ..population._diagnostics import eta_shrinkage
from ..transforms import dtheta_dx, from_internal, internal_bounds, to_internal
from .base import EstimationProblem, Estimator, PointEstimate

__all__ = ["FOCEI", "COVARIANCE_METHOD", "population_layout"]

_LOG_2PI = math.log(2.0 * math.pi)
#: The covariance step, in words (``interval_methods["covariance"]``).
COVARIANCE_METHOD = ("sandwich R^-1 S R^-1 (R: Hessian of the FOCE-I OFV by central "
                     "differences of its exact gradient; S: sum of per-subject gradient "
                     "products), Wald interval on the estimation scale")
COVARIANCE_METHOD_R = ("2 R^-1 (R: Hessian of the FOCE-I OFV by central differences of its "
                       "exact gradient; S was singular), Wald interval on the estimation scale")
#: The per-subject intervals, in words (``interval_methods["covariance"]``).
SUBJECT_METHOD = ("per subject: conditional covariance of the empirical Bayes estimate, "
                  "(Omega^-1 + sum_j F_j g_j g_j')^-1 (FOCE-I), for parameters with a random "
                  "effect; the population covariance step for the others (see the population "
                  "part); Wald interval on the estimation scale")
#: Log-variance bounds of Omega's diagonal (variances 1e-8 .. 1e4 on the estimation scale).
_LOG_OMEGA_BOUNDS = (math.log(1e-8), math.log(1e4))
_HESSIAN_STEP = 1e-4
#: Inner (conditional mode) settings: the ODE solutions carry ~1e-10 relative error, so the
#: core's default step tolerance (1e-10) is below their noise and the damping escalates for
#: nothing; 1e-7 moves the OFV by < 1e-6 and its gradient by ~1e-5 on Theoph.
INNER = InnerOptions(xtol=1e-7, lambda_max=1e3, stall_xtol=1e-5)


def population_layout(problem):
    """The population model of a problem.

    Returns
    -------
    pop_cols : int ndarray (D,)
        Model quantities with ``estimate = "population"``.
    eta_pos : int ndarray (E,)
        Positions in ``pop_cols`` of those with a random effect.
    err : list of (int, int, str)
        Estimated error parameters: (column, observable index, ``"a"`` or ``"b"``).
    """
    params = problem.parameters
    pop_cols = np.array([q for q, p in enumerate(params)
                         if p.kind != "error" and p.estimate == "population"], dtype=int)
    eta_pos = np.array([j for j, q in enumerate(pop_cols) if params[q].eta is not None],
                       dtype=int)
    err = []
    for k in range(len(problem.observables)):
        for which, idx in (("a", problem.a_index[k]), ("b", problem.b_index[k])):
            if idx >= 0 and params[idx].estimated:
                err.append((int(idx), k, which))
    return pop_cols, eta_pos, err


class FOCEI(Estimator):
    """Population fit by FOCE-I (``[fit] estimator = "focei"``); see the module docstring."""

    name = "focei"
    #: The objective's method (subclasses: ``"foce"``, ``"fo"``, ``"laplace"``).
    method = "focei"
    description = ("population fit: first-order conditional estimation with interaction "
                   "(NONMEM's FOCE-I), diagonal Omega")

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
        model = ProblemModel(problem, designs, pop_cols)
        data = model.data(ep.source)
        sc, lo, hi = (problem.scale[pop_cols], problem.lower[pop_cols],
                      problem.upper[pop_cols])
        th0 = to_internal(problem.values[pop_cols], sc, lo, hi)
        blo, bhi = internal_bounds(sc, lo, hi)
        om0 = np.log([problem.parameters[pop_cols[j]].eta for j in eta_pos])
        sd0 = np.log([problem.values[q] for q, _, _ in err])
        elo = [math.log(problem.lower[q]) if problem.lower[q] > 0 else -np.inf
               for q, _, _ in err]
        ehi = [math.log(problem.upper[q]) if np.isfinite(problem.upper[q]) else np.inf
               for q, _, _ in err]
        x0 = np.concatenate([th0, om0, sd0])
        bounds = list(zip(
            np.concatenate([blo, np.full(eta_pos.size, _LOG_OMEGA_BOUNDS[0]), elo]),
            np.concatenate([bhi, np.full(eta_pos.size, _LOG_OMEGA_BOUNDS[1]), ehi]),
            strict=True))
        bounds = [(None if not np.isfinite(a) else float(a),
                   None if not np.isfinite(b) else float(b)) for a, b in bounds]
        return dict(model=model, data=data, pop_cols=pop_cols, eta_pos=eta_pos, err=err,
                    x0=x0, bounds=bounds, eta=None)

    def _check_censoring(self, ep: EstimationProblem, designs) -> None:
        """Refuse censored values while the objective's gradient does not handle them (a
        subclass whose core supports the M3 terms overrides this)."""
        bad = [d.id for d in designs if np.any(np.asarray(d.cens) != 0)]
        if bad:
            raise ConfigError(f"{ep.source}: fit.estimator = \"{self.name}\": censored values "
                              f"are not supported yet (subject '{bad[0]}' has some)")

    def _core_gradient(self, model, data, mu, omega, residual, *, eta_columns, eta0,
                       inner_options):
        """The objective and its gradient from the population core (a
        :class:`~progression.fit.population.FoceiGradient`); subclasses (``foce``, ``fo``,
        ``laplace``) override it with their own objective."""
        return focei_gradient(model, data, mu, omega, residual, eta_columns=eta_columns,
                              eta0=eta0, inner_options=inner_options)

    def _unpack(self, s, x):
        D, E = s["pop_cols"].size, s["eta_pos"].size
        theta_x, w2, sd = x[:D], np.exp(x[D:D + E]), np.exp(x[D + E:])
        return theta_x, w2, sd

    def _residual(self, problem, s, sd):
        vals = problem.values.copy()
        for (q, _, _), v in zip(s["err"], sd, strict=True):
            vals[q] = v
        a = [vals[i] if i >= 0 else 0.0 for i in problem.a_index]
        b = [vals[i] if i >= 0 else 0.0 for i in problem.b_index]
        return Residual(tuple(a), tuple(b))

    def _gradient(self, problem, s, x, warm=True):
        """FOCE-I objective and gradient at outer ``x``: (ofv, grad, per-subject grads, gr)."""
        theta_x, w2, sd = self._unpack(s, x)
        N = s["data"].n_subjects
        gr = self._core_gradient(s["model"], s["data"], np.tile(theta_x, (N, 1)), np.diag(w2),
                                 self._residual(problem, s, sd), eta_columns=s["eta_pos"],
                                 eta0=s["eta"] if warm else None, inner_options=INNER)
        per = [gr.d_mu, np.einsum("nee->ne", gr.d_omega_i) * w2]
        ks = [(k, which) for _, k, which in s["err"]]
        per.append(np.column_stack([(gr.d_a_i[:, k] if w == "a" else gr.d_b_i[:, k]) * v
                                    for (k, w), v in zip(ks, sd, strict=True)])
                   if ks else np.zeros((N, 0)))
        gi = np.concatenate(per, axis=1)
        return gr.ofv, gi.sum(axis=0), gi, gr

    # ------------------------------------------------------------------ estimation

    def estimate(self, ep: EstimationProblem) -> PointEstimate:
        problem = ep.problem
        s = self._setup(ep)
        self._state = s
        path = {"ofv": [], "n": 0, "last": (None, np.nan)}
        # the outer iterations (for the .ext table): iteration 0 is the start
        history: list[tuple[np.ndarray, float]] = []

        def fg(x):
            ofv, g, _, gr = self._gradient(problem, s, x)
            path["n"] += 1
            if not np.isfinite(ofv):
                return 1e300, np.zeros_like(x)
            s["eta"] = gr.inner.eta
            path["ofv"].append(ofv)
            path["last"] = (x.copy(), ofv)
            if not history:
                history.append((x.copy(), ofv))
            return ofv, g

        def iteration(xk):
            # L-BFGS-B's line search ends on the accepted point, so its OFV is the last one
            # evaluated; otherwise it is evaluated here (once per iteration, rare)
            lx, lo = path["last"]
            ofv = lo if lx is not None and np.array_equal(lx, xk) else fg(xk)[0]
            history.append((np.array(xk, dtype=float), float(ofv)))

        max_fev = max(int(ep.options.max_nfev), 500)
        res = minimize(fg, s["x0"], jac=True, method="L-BFGS-B", bounds=s["bounds"],
                       callback=iteration,
                       options={"maxfun": max_fev, "maxiter": max_fev, "ftol": 1e-12,
                                "gtol": 1e-6, "maxcor": 20})
        x = res.x
        ofv, g, gi, gr = self._gradient(problem, s, x)
        s.update(x=x, ofv=ofv, gi=gi, gr=gr, res=res, nfev=path["n"], path=path["ofv"],
                 history=history)
        ep.counters.simulations += path["n"]
        return self._point(ep, s)

    def _point(self, ep, s) -> PointEstimate:
        problem, designs = ep.problem, ep.designs
        m = len(designs)
        gr, x, res = s["gr"], s["x"], s["res"]
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        theta_x, w2, sd = self._unpack(s, x)
        eta = np.where(np.isfinite(gr.inner.eta), gr.inner.eta, 0.0)
        phi = np.tile(theta_x, (m, 1))
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
        s["theta"] = theta
        return PointEstimate(
            estimates=Estimates(theta=theta, x_hat=x_hat, x_cols=x_cols, x_rows=x_rows),
            diagnostics=diag, predictions=list(ev.predictions),
            information=np.zeros((m, 0, 0)), path_objective=np.array([float(subj.sum())]))

    # ------------------------------------------------------------------ covariance

    def uncertainty(self, ep: EstimationProblem, point: PointEstimate) -> Uncertainty:
        problem = ep.problem
        s = self._state
        t = time.perf_counter()
        x = s["x"]
        K = x.size
        warnings = [f"uncertainty method {u!r} is not available for fit.estimator = "
                    f"\"{self.name}\" yet (the covariance step is computed)"
                    for u in ep.uncertainty_methods if u != "covariance"]
        cov = np.full((K, K), np.nan)
        method = COVARIANCE_METHOD
        try:
            Rm = np.zeros((K, K))
            eta = s["eta"]
            for k in range(K):
                cols = []
                for sign in (1.0, -1.0):
                    xs = x.copy()
                    xs[k] += sign * _HESSIAN_STEP
                    s["eta"] = eta
                    ofv, g, _, _ = self._gradient(problem, s, xs)
                    if not np.isfinite(ofv):
                        raise np.linalg.LinAlgError("the objective is not finite near the "
                                                    "estimates")
                    cols.append(g)
                Rm[:, k] = (cols[0] - cols[1]) / (2.0 * _HESSIAN_STEP)
            s["eta"] = eta
            Rm = 0.5 * (Rm + Rm.T)
            ev = np.linalg.eigvalsh(Rm)
            if ev.min() <= 0:
                raise np.linalg.LinAlgError(
                    f"R is not positive definite (smallest eigenvalue {ev.min():.3g})")
            Rinv = np.linalg.inv(Rm)
            S = s["gi"].T @ s["gi"]
            if np.linalg.matrix_rank(S) == K:
                cov = Rinv @ S @ Rinv
            else:
                cov = 2.0 * Rinv
                method = COVARIANCE_METHOD_R
                warnings.append("covariance step: S is singular; the covariance is 2 R^-1")
            s["R"], s["S"] = Rm, S
        except np.linalg.LinAlgError as exc:
            warnings.append(f"covariance step failed: {exc}; no standard errors")
        cov = 0.5 * (cov + cov.T)
        s["cov"], s["cov_method"] = cov, method
        ep.timings["covariance"] = time.perf_counter() - t
        est = point.estimates
        m, Q = est.theta.shape
        pop_cols, eta_pos = s["pop_cols"], s["eta_pos"]
        D, E = pop_cols.size, eta_pos.size
        theta_x, w2, sd = self._unpack(s, x)
        # population covariance of (theta, residual error parameters on their own scales)
        keep = np.r_[np.arange(D), np.arange(D + E, K)]
        cols_i = est.x_cols[:keep.size]
        J = np.ones(keep.size)
        for j in range(D, keep.size):        # d x / d log sd = sd / (d sd / d x)
            q = cols_i[j]
            J[j] = est.theta[0, q] / dtheta_dx(est.x_hat[j:j + 1], problem.scale[q:q + 1],
                                               problem.lower[q:q + 1],
                                               problem.upper[q:q + 1])[0]
        pop_block = cov[np.ix_(keep, keep)] * np.outer(J, J)
        # per subject: the conditional covariance of its EBE, (Omega^-1 + sum F g g')^-1 (the
        # FOCE-I matrix M; inner.info is 2 sum F g g'), for the parameters with a random
        # effect; the population covariance for the others
        info = s["gr"].inner.info
        Oinv = np.diag(1.0 / w2)
        se = np.full((m, Q), np.nan)
        ci = np.full((m, Q, 2), np.nan)
        z = _z(ep.confidence)
        blocks = []
        K_i = keep.size
        for i in range(m):
            b = pop_block.copy()
            try:
                C = np.linalg.inv(Oinv + 0.5 * info[i])
            except np.linalg.LinAlgError:
                C = np.full((E, E), np.nan)
            b[np.ix_(eta_pos, np.arange(K_i))] = 0.0
            b[np.ix_(np.arange(K_i), eta_pos)] = 0.0
            b[np.ix_(eta_pos, eta_pos)] = C
            entries = np.arange(i * K_i, (i + 1) * K_i)
            blocks.append((entries, b))
            for j, k in enumerate(entries):
                q = est.x_cols[k]
                sc, lo, hi = (problem.scale[q:q + 1], problem.lower[q:q + 1],
                              problem.upper[q:q + 1])
                xv = est.x_hat[k:k + 1]
                sx = math.sqrt(b[j, j]) if b[j, j] >= 0 else np.nan
                se[i, q] = sx * dtheta_dx(xv, sc, lo, hi)[0]
                ci[i, q] = from_internal(np.array([xv[0] - z * sx, xv[0] + z * sx]), sc[0],
                                         lo[0], hi[0])
        self._population(ep, point, cov)
        return Uncertainty(se=se, intervals={"covariance": ci},
                           methods={"covariance": SUBJECT_METHOD},
                           open_intervals={"covariance": np.zeros((m, Q, 2), dtype=bool)},
                           blocks=blocks, joint=False, warnings=tuple(warnings))

    def _population(self, ep, point, cov):
        problem = ep.problem
        s = self._state
        pop_cols, eta_pos, err = s["pop_cols"], s["eta_pos"], s["err"]
        D, E = pop_cols.size, eta_pos.size
        theta_x, w2, sd = self._unpack(s, s["x"])
        names = problem.names
        sc, lo, hi = (problem.scale[pop_cols], problem.lower[pop_cols],
                      problem.upper[pop_cols])
        typ = from_internal(theta_x, sc, lo, hi)
        dth = dtheta_dx(theta_x, sc, lo, hi)
        sx = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
        eta = s["gr"].inner.eta
        shrink = eta_shrinkage(eta, np.diag(w2)) if eta.shape[0] > 1 else np.full(E, np.nan)
        cv = {}
        for e, j in enumerate(eta_pos):
            q = pop_cols[j]
            cv[names[q]] = (100.0 * math.sqrt(math.expm1(w2[e])) if problem.scale[q] == 1
                            else float("nan"))
        # the outer iterations in natural units: theta, residual SDs, Omega diagonal, OFV
        hist = []
        for it, (hx, hofv) in enumerate(s.get("history") or ()):
            ht, hw2, hsd = self._unpack(s, hx)
            hist.append(np.r_[it, from_internal(ht, sc, lo, hi), hsd, hw2, hofv])
        m2ll = float(point.path_objective[0])
        n_par = int(D + E + len(err))
        n_obs = int(sum(d.n for d in ep.designs))
        res = s["res"]
        part = PopulationPart(
            fixed_effects={names[q]: float(typ[j]) for j, q in enumerate(pop_cols)},
            fixed_effects_se={names[q]: float(sx[j] * dth[j]) for j, q in enumerate(pop_cols)},
            omega_names=tuple(names[pop_cols[j]] for j in eta_pos),
            omega=np.diag(w2),
            sigma={names[q]: float(v) for (q, _, _), v in zip(err, sd, strict=True)},
            ebes=np.asarray(eta, dtype=float),
            shrinkage={names[pop_cols[j]]: float(shrink[e]) for e, j in enumerate(eta_pos)},
            omega_se={names[pop_cols[j]]: float(sx[D + e] * w2[e]) for e, j
                      in enumerate(eta_pos)},
            sigma_se={names[q]: float(sx[D + E + k] * v) for k, ((q, _, _), v)
                      in enumerate(zip(err, sd, strict=True))},
            cv_percent=cv, ofv=float(s["ofv"]), m2ll=m2ll,
            aic=m2ll + 2 * n_par, bic=m2ll + n_par * math.log(max(n_obs, 1)),
            n_parameters=n_par, iterations=int(res.nit), evaluations=int(s["nfev"]),
            converged=bool(res.success), method=self.name, covariance_method=s["cov_method"],
            covariance=cov, covariance_names=tuple(
                [f"theta {names[q]}" for q in pop_cols]
                + [f"log omega^2 {names[pop_cols[j]]}" for j in eta_pos]
                + [f"log {names[q]}" for q, _, _ in err]),
            history=np.array(hist, dtype=float) if hist else None,
            scales={names[q]: str(problem.parameters[q].scale) for q in pop_cols},
            bounds={names[q]: (float(problem.lower[q]), float(problem.upper[q]))
                    for q in pop_cols},
            omega_blocks=tuple({"parameters": [names[pop_cols[j]]], "fixed": False}
                               for j in eta_pos))
        s["population"] = part

    def __call__(self, ep: EstimationProblem):
        out = super().__call__(ep)
        return dataclasses.replace(out, population=self._state["population"])

    def __getstate__(self):
        # the state of a running fit is not part of the estimator
        return {}

    def __setstate__(self, state):
        self._state = {}


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))
