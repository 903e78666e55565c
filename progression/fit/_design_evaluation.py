"""Population design evaluation: the expected Fisher information of a study design (PFIM's
and PopED's calculation) and the standard errors it predicts, before any data are collected.

A design is the data file of a population fit config without its values: the subjects'
observation times, observables, doses and covariates. At given population parameters (the
config's starting values, or a fit's estimates) each subject's model is linearised in its
random effects at eta = 0 (first order, FO), so that its data are normal with

    E[y_i] = f_i(mu_i),   V_i = G_i Omega G_i' + diag(a_k^2 + b_k^2 f_i^2),

``mu_i`` the subject's typical values (covariate effects included), ``G_i = df_i/deta`` the
exact forward sensitivities of the fit's own model and ``a_k``, ``b_k`` the residual SDs of
each value's observable (log-normal observables: on the log scale). The information is the
Fisher information of that normal, summed over subjects, ``sum_i dE'/dpsi_j V_i^-1
dE/dpsi_k + 1/2 tr(V_i^-1 dV_i/dpsi_j V_i^-1 dV_i/dpsi_k)``. By default in its block-diagonal
form (PFIM's default, PopED's "reduced" FIM): ``V`` taken not to depend on the typical values,
so no cross terms (Nyberg et al. 2012, J Pharmacokinet Pharmacodyn 39:147, found the reduced
form's SEs closer to the empirical ones than the full form's); ``form="full"`` keeps that
dependence (through ``G`` and a proportional residual; ``dG`` by central differences of the
exact sensitivities).

Why hand-written: no Python library computes a population FIM; PopED and PFIM are R only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, FitError

__all__ = ["DesignEvaluation", "evaluate_design", "FORMS", "METHODS"]

#: Forms of the FO information: name -> in words.
FORMS = {"reduced": "block-diagonal (PFIM/PopED reduced)",
         "full": "full (PopED full)"}

#: Methods: name -> in words.
METHODS = {"fo": "first order (linearised at eta = 0)",
           "mcmc": "exact expected information (simulated data sets, MCMC over eta)"}


@dataclass(frozen=True)
class DesignEvaluation:
    """Expected information of a population design and the standard errors it predicts.

    Attributes
    ----------
    names : tuple of str
        Population parameters on the natural scale: ``NAME`` (typical value), ``omega^2
        NAME``, ``omega A,B`` (a covariance of a block of Omega), ``OBS.a`` / ``OBS.b`` /
        ``OBS.sigma`` (residual SDs), ``NAME~COV`` (covariate coefficient).
    values : ndarray (K,)
        Their values (where the information is evaluated).
    se : ndarray (K,)
        Predicted standard errors on the natural scale (delta method); inf where the design
        carries no information about the parameter.
    fim : ndarray (K', K')
        The information of the estimation-scale parameters ``fim_names`` (typical values on
        their scales, Omega's parametrisation, log residual SDs, coefficients).
    fim_names : tuple of str
    n_subjects : int
        Subjects in the design (the information is for this many).
    observations : dict of str to int
        Values per observable in the design.
    at : str
        Where the parameters come from (``"config values"`` or the fit's folder).
    source : str
        The config file.
    notes : tuple of str
        What the calculation left out (censoring, survival, priors, a Student-t residual).
    form : str
        ``"reduced"`` or ``"full"`` (:data:`FORMS`; ``"full"`` with ``method="mcmc"``).
    method : str
        ``"fo"`` or ``"mcmc"`` (:data:`METHODS`).
    se_mc : ndarray (K,) or None
        ``method="mcmc"``: the Monte Carlo error of each predicted SE (jackknife over the
        data sets; NaN with fewer than 3); None with ``"fo"``.
    """

    names: tuple
    values: np.ndarray
    se: np.ndarray
    fim: np.ndarray
    fim_names: tuple
    n_subjects: int
    observations: dict
    at: str = "config values"
    source: str = ""
    notes: tuple = field(default_factory=tuple)
    form: str = "reduced"
    method: str = "fo"
    se_mc: np.ndarray | None = None

    @property
    def rse(self) -> np.ndarray:
        """Predicted relative standard errors, % (K,) (NaN where the value is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * self.se / np.abs(self.values)

    @property
    def d_criterion(self) -> float:
        """PopED's D-criterion ``det(FIM)^(1/K')`` (larger is better; 0 when a parameter is
        not informed)."""
        sign, logdet = np.linalg.slogdet(self.fim)
        return float(math.exp(logdet / self.fim.shape[0])) if sign > 0 else 0.0

    def scaled(self, n_subjects: int) -> DesignEvaluation:
        """The same design replicated to ``n_subjects`` subjects (the same mix of patients,
        visits and covariates): information x n / N, standard errors x sqrt(N / n)."""
        n = _positive_int(n_subjects, "n_subjects")
        f = self.n_subjects / n
        return dataclasses.replace(
            self, se=self.se * math.sqrt(f), fim=self.fim / f, n_subjects=n,
            observations={k: v / f for k, v in self.observations.items()},
            se_mc=None if self.se_mc is None else self.se_mc * math.sqrt(f))

    def subjects_for(self, rse: float) -> dict:
        """Subjects needed (this design's mix replicated) for each parameter's predicted RSE
        to fall to ``rse`` %: ``N (RSE / rse)^2``, rounded up; None where not informed."""
        if not (isinstance(rse, (int, float)) and math.isfinite(rse) and rse > 0):
            raise ConfigError(f"subjects_for(rse=...): expected a positive RSE in %, found "
                              f"{rse!r}")
        out = {}
        for name, r in zip(self.names, self.rse, strict=True):
            out[name] = (int(math.ceil(self.n_subjects * (r / rse) ** 2))
                         if np.isfinite(r) else None)
        return out

    def table(self, target_rse: float | None = None) -> str:
        """The predicted standard errors as a text table (optionally the subjects needed for
        ``target_rse`` %)."""
        need = self.subjects_for(target_rse) if target_rse is not None else None
        mc = self.se_mc
        head = (f"{'parameter':<22} {'value':>11} {'SE':>11} {'RSE %':>8}"
                + (f" {'SE MC error':>12}" if mc is not None else ""))
        if need is not None:
            head += f" {'subjects for ' + format(target_rse, 'g') + ' %':>20}"
        lines = [head, "-" * len(head)]
        for k, name in enumerate(self.names):
            r = self.rse[k]
            row = (f"{name:<22} {self.values[k]:>11.4g} "
                   + (f"{self.se[k]:>11.3g} {r:>8.1f}" if np.isfinite(self.se[k])
                      else f"{'not informed':>20}"))
            if mc is not None:
                row += f" {mc[k]:>12.2g}" if np.isfinite(mc[k]) else f" {'-':>12}"
            if need is not None:
                row += f" {need[name] if need[name] is not None else '-':>20}"
            lines.append(row)
        return "\n".join(lines)


def _positive_int(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"design evaluation: expected {what} a positive whole number, "
                          f"found {n!r}")
    return int(n)


def evaluate_design(config, *, fit=None, data=None, n_subjects: int | None = None,
                    form: str = "reduced", method: str = "fo", replicates: int = 4,
                    seed: int = 1) -> DesignEvaluation:
    """Predicted standard errors of a population design (by default FO, block-diagonal
    Fisher information; ``method="mcmc"`` without linearisation).

    Parameters
    ----------
    config : FitConfig, str or Path
        A population fit config (at least one random effect): its model, error models,
        population model and data file (the design; its values only set which rows exist).
    fit : FitResult or str or Path, optional
        Evaluate at this fit's population estimates instead of the config's values (a fit
        of the same config; a folder is loaded with :func:`~progression.load_fit`).
    data : Cohort or list of Design, optional
        The design instead of the config's data file.
    n_subjects : int, optional
        Report for this many subjects (the design's mix replicated): :meth:`DesignEvaluation.
        scaled`.
    form : {"reduced", "full"}
        ``"reduced"`` (block-diagonal: PFIM's default, PopED's ``fim.calc.type = 1``) or
        ``"full"`` (the covariance's dependence on the typical values included, through the
        sensitivities and a proportional residual; PopED's ``fim.calc.type = 0``). FO only.
    method : {"fo", "mcmc"}
        ``"fo"``: the information of the model linearised at eta = 0 (seconds). ``"mcmc"``:
        the exact expected information, Louis' observed information averaged over
        ``replicates`` data sets simulated on the design, MCMC over the random effects
        (:mod:`._design_mcmc`; about 35 s per data set of 200 ALS patients); for random
        effects that act nonlinearly and are seen through few values, where FO is poor.
    replicates : int
        Data sets of ``method="mcmc"`` (their spread gives :attr:`DesignEvaluation.se_mc`,
        the Monte Carlo error of the predicted SEs, from 3 on).
    seed : int
        Seed of ``method="mcmc"``'s simulations and chains.

    Returns
    -------
    DesignEvaluation

    Raises
    ------
    ConfigError
        No random effect in the config; a fit of another population model; ``n_subjects``
        not a positive whole number; an unknown ``form``.
    FitError
        The model cannot be solved at the parameters for some subject (named).
    """
    from ..parallel import executor as make_executor
    from ._estimator_options import EstimatorOptions
    from .config import FitConfig, read_fit_config
    from .estimators.base import EstimationProblem
    from .estimators.focei import FOCEI
    from .problem import Problem

    cfg = config if isinstance(config, FitConfig) else read_fit_config(
        config, check_data=data is None)
    if n_subjects is not None:
        _positive_int(n_subjects, "n_subjects")
    if form not in FORMS:
        raise ConfigError(f"design evaluation: expected form one of {', '.join(FORMS)}, "
                          f"found {form!r}")
    if method not in METHODS:
        raise ConfigError(f"design evaluation: expected method one of {', '.join(METHODS)}, "
                          f"found {method!r}")
    if method == "mcmc":
        _positive_int(replicates, "replicates")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"design evaluation: expected seed a whole number >= 0, found "
                              f"{seed!r}")
    if not any(p.kind == "model" and p.estimate == "population" and p.eta is not None
               for p in cfg.parameters):
        raise ConfigError(f"{cfg.source}: a design evaluation needs a population model with at "
                          "least one random effect (a parameter with estimate = \"population\" "
                          "and eta = <variance>); found none")
    pop = _population_of(fit)
    designs = designs_of(cfg, data)
    # the values play no part (predictions and sensitivities are the model's): a planned
    # design's file may carry any placeholder, so the observed ones become 1 (positive, for a
    # log-normal observable); a censored value keeps its limit
    designs = [dataclasses.replace(d, value=np.where(np.asarray(d.cens) == 0, 1.0,
                                                     np.asarray(d.value, dtype=float)))
               for d in designs]
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    est = FOCEI()
    est.survival_residuals = False      # the longitudinal data only (see notes)
    with make_executor(None, None) as ex:
        ep = EstimationProblem(problem=problem, designs=designs,
                               options=EstimatorOptions.coerce(cfg.options,
                                                               f"{cfg.source}, [estimator]"),
                               executor=ex, name=cfg.name, source=cfg.source)
        s = est._setup(ep)
    theta_x, omega, J_om, sd, coef = est._split(s, s["x0"])
    if pop is not None:
        theta_x, omega, sd, coef = _at_fit(pop, problem, s, cfg.source)
        J_om = s["omega_model"].unpack_jac(s["omega_model"].pack(omega))[1]
    out = _information(problem, s, est, designs, theta_x, omega, J_om, sd, coef, cfg.source,
                       form)
    notes = _notes(cfg, problem, s)
    if method == "mcmc":
        # FO ran first all the same: it gives the layout, the names and the counts, and
        # checks that every subject solves at the typical values, in seconds before minutes
        out, notes = _mcmc(cfg, designs, out, problem, s, theta_x, omega, J_om, sd, coef,
                           replicates, seed)
        form = "full"
    at = "config values" if pop is None else _fit_label(fit)
    ev = DesignEvaluation(**out, n_subjects=len(designs), at=at, source=cfg.source,
                          notes=tuple(notes), form=form, method=method)
    return ev.scaled(n_subjects) if n_subjects is not None else ev


def designs_of(cfg, data) -> list:
    """The design: ``data`` (a Cohort or a list of Design), else the config's data file."""
    from ..data import Cohort
    from .estimate import read_data
    from .problem import designs_from_cohort

    if data is None:
        return designs_from_cohort(read_data(cfg), cfg)[0]
    if isinstance(data, Cohort):
        return designs_from_cohort(data, cfg)[0]
    return list(data)


def loaded_fit(fit):
    """``fit`` as an object with ``population`` (a fit folder is loaded); None stays None."""
    if fit is None or hasattr(fit, "population"):
        return fit
    from .result import load_fit

    return load_fit(fit)


def _population_of(fit):
    if fit is None:
        return None
    fit = loaded_fit(fit)
    if fit.population is None:
        raise ConfigError(f"design evaluation: expected a population fit, found a "
                          f"{getattr(fit, 'kind', 'non-population')} fit without population "
                          "estimates")
    return fit.population


def _fit_label(fit) -> str:
    return (f"the estimates in {fit}" if not hasattr(fit, "population")
            else f"the estimates of fit '{fit.name}'")


def _at_fit(pop, problem, s, source):
    """The fit's estimates in the set-up's layout: theta_x (D,), Omega (E, E), residual SDs
    (S,), coefficients (C,)."""
    from .transforms import to_internal

    tm = s["typical"]
    names = problem.names

    def need(mapping, key, what):
        if key not in mapping:
            raise ConfigError(f"{source}: the fit has no {what} '{key}' (fitted: "
                              f"{', '.join(map(str, mapping)) or 'none'}); expected a fit of "
                              "this config's population model")
        return mapping[key]

    nat = np.array([need(pop.fixed_effects, k, "typical value") for k in tm.names], dtype=float)
    theta_x = to_internal(nat, tm.scale, tm.lower, tm.upper)
    fitted = list(pop.omega_names)
    for k in s["omega_model"].names:
        need(dict.fromkeys(fitted), k, "random effect")
    idx = [fitted.index(k) for k in s["omega_model"].names]
    omega = np.asarray(pop.omega, dtype=float)[np.ix_(idx, idx)]
    sd = np.array([need(pop.sigma, names[q], "residual parameter") for q, _, _ in s["err"]],
                  dtype=float)
    coef = np.array([pop.coefficients.get(c, v)
                     for c, v in zip(tm.coefficient_names, s["coef0"], strict=True)], dtype=float)
    return theta_x, omega, sd, coef


def _information(problem, s, est, designs, theta_x, omega, J_om, sd, coef, source,
                 kind) -> dict:
    """The FO information (``kind`` "reduced" or "full") and the natural-scale SEs (module
    docstring)."""

    data, model = s["data"], s["model"]
    N = data.n_subjects
    mu, dmu_dth, dmu_dc = est._mu(s, theta_x, coef)
    if not np.all(np.isfinite(mu)):
        raise FitError(f"{source}: a subject's typical value leaves its scale's domain at "
                       "these parameters (covariate effects); expected finite typical values")
    f, G = model.predict(mu, np.arange(N))
    bad = np.flatnonzero(~np.all(np.isfinite(np.where(data.mask, f, 0.0)), axis=1))
    if bad.size:
        raise FitError(f"{source}: the model could not be solved for subject "
                       f"'{designs[bad[0]].id}' at these parameters ({bad.size} subjects "
                       "failed); expected a solvable model at the typical values")
    residual = est._residual(problem, s, sd)
    a = np.asarray(residual.a, dtype=float)
    b = np.asarray(residual.b, dtype=float)
    df = np.asarray(residual.df if residual.df else (np.inf,) * a.size, dtype=float)
    # a Student-t residual counts as the normal with the same information about location:
    # variance x (nu + 3) / (nu + 1) (the t's location information is (nu+1)/((nu+3) s^2))
    t_factor = np.ones_like(df)
    t = np.isfinite(df)
    t_factor[t] = (df[t] + 3.0) / (df[t] + 1.0)
    eta_pos = s["eta_pos"]
    free_th = np.flatnonzero(~s["x_fixed"][:theta_x.size])
    coef_free = np.flatnonzero(s["coef_free"])
    om_free = J_om.shape[0]
    err = s["err"]
    n_fixed = free_th.size + coef_free.size
    K = n_fixed + om_free + len(err)
    dG = _sensitivity_derivatives(model, mu, G, N) if kind == "full" else None
    fim = np.zeros((K, K))
    for i in range(N):
        m = data.mask[i]
        k = data.observable[i][m]
        fi = f[i][m]
        Gi = G[i][m]
        res_a2 = (a[k] ** 2) * t_factor[k]
        res_b2 = (b[k] ** 2) * t_factor[k] * fi ** 2
        g = Gi[:, eta_pos]
        V = g @ omega @ g.T + np.diag(res_a2 + res_b2)
        # d E[y] / d (free typical values, free coefficients)
        dE = np.concatenate([Gi[:, free_th] * dmu_dth[i, free_th],
                             np.einsum("nd,dc->nc", Gi, dmu_dc[i])[:, coef_free]], axis=1)
        L = np.linalg.cholesky(V)
        W = np.linalg.solve(L, dE)
        fim[:n_fixed, :n_fixed] += W.T @ W
        Vi = np.linalg.inv(V)
        # dV / d (each parameter); the reduced form leaves the typical values' out
        dV = [None] * n_fixed
        if dG is not None:
            # the full form: V moves with the typical values through G and f (dG by central
            # differences of the exact sensitivities)
            dV_mu = []
            for d in range(mu.shape[1]):
                dg = dG[d, i][m][:, eta_pos]
                dV_mu.append(dg @ omega @ g.T + g @ omega @ dg.T
                             + np.diag(2.0 * (b[k] ** 2) * t_factor[k] * fi * Gi[:, d]))
            dV = ([dmu_dth[i, d] * dV_mu[d] for d in free_th]
                  + [sum(dmu_dc[i, d, c] * dV_mu[d] for d in range(mu.shape[1]))
                     for c in coef_free])
        dV += [g @ J_om[p] @ g.T for p in range(om_free)]
        for _, kk, which in err:
            rows = (k == kk).astype(float)
            dV.append(np.diag(2.0 * rows * (res_a2 if which == "a" else res_b2)))
        A = [None if d is None else Vi @ d for d in dV]
        for j in range(K):
            for jj in range(j, K):
                if A[j] is not None and A[jj] is not None:
                    fim[j, jj] += 0.5 * float(np.sum(A[j] * A[jj].T))
                    if jj != j:
                        fim[jj, j] = fim[j, jj]
    names = problem.names
    tm = s["typical"]
    om_names = s["omega_model"].parameter_names()
    fim_names = ([f"theta {tm.names[d]}" for d in free_th]
                 + [f"coef {tm.coefficient_names[c]}" for c in coef_free]
                 + list(om_names) + [f"log {names[q]}" for q, _, _ in err])
    nat_names, nat_values, se = _natural_se(problem, s, fim, theta_x, omega, J_om, sd, coef)
    return dict(names=tuple(nat_names), values=np.array(nat_values), se=se, fim=fim,
                fim_names=tuple(fim_names), observations=_counts(problem, data))


def _natural_se(problem, s, fim, theta_x, omega, J_om, sd, coef):
    """Names, values and SEs (delta method) of the population parameters on the natural
    scale from the information ``fim`` on the FO layout (typical values, coefficients,
    Omega's elements, residual SDs)."""
    from .transforms import dtheta_dx, from_internal

    tm = s["typical"]
    names = problem.names
    err = s["err"]
    free_th = np.flatnonzero(~s["x_fixed"][:theta_x.size])
    coef_free = np.flatnonzero(s["coef_free"])
    om_free = J_om.shape[0]
    n_fixed = free_th.size + coef_free.size
    cov = _inverse_where_informed(fim)
    nat_names, nat_values, rows = [], [], []
    K = fim.shape[0]
    dth = dtheta_dx(theta_x, tm.scale, tm.lower, tm.upper)
    th_nat = from_internal(theta_x, tm.scale, tm.lower, tm.upper)
    for j, d in enumerate(free_th):
        r = np.zeros(K)
        r[j] = dth[d]
        nat_names.append(tm.names[d])
        nat_values.append(float(th_nat[d]))
        rows.append(r)
    for j, c in enumerate(coef_free):
        r = np.zeros(K)
        r[free_th.size + j] = 1.0
        nat_names.append(tm.coefficient_names[c])
        nat_values.append(float(coef[c]))
        rows.append(r)
    en = s["omega_model"].names
    for e1 in range(omega.shape[0]):
        for e2 in range(e1 + 1):
            jac = J_om[:, e1, e2]
            if not np.any(jac):
                continue          # fixed, or outside every block
            r = np.zeros(K)
            r[n_fixed:n_fixed + om_free] = jac
            nat_names.append(f"omega^2 {en[e1]}" if e1 == e2 else f"omega {en[e2]},{en[e1]}")
            nat_values.append(float(omega[e1, e2]))
            rows.append(r)
    for j, (q, _, _) in enumerate(err):
        r = np.zeros(K)
        r[n_fixed + om_free + j] = sd[j]
        nat_names.append(names[q])
        nat_values.append(float(sd[j]))
        rows.append(r)
    A = np.array(rows)
    informed = np.isfinite(np.diag(cov))
    se = np.full(A.shape[0], np.inf)
    for r in range(A.shape[0]):
        used = A[r] != 0
        if np.all(informed[used]):
            sub = np.ix_(used, used)
            se[r] = math.sqrt(max(float(A[r, used] @ cov[sub] @ A[r, used]), 0.0))
    return nat_names, nat_values, se


def _mcmc(cfg, designs, out, problem, s, theta_x, omega, J_om, sd, coef, replicates, seed):
    """``method="mcmc"``: the FO result's information and SEs replaced by the MCMC
    information's (:mod:`._design_mcmc`), the Monte Carlo error of the SEs by the jackknife
    over the data sets; the notes of that calculation."""
    from ._design_mcmc import mcmc_information

    tm = s["typical"]
    en = list(s["omega_model"].names)
    err_names = [problem.names[q] for q, _, _ in s["err"]]

    def at(problem2, s2, est2):
        # the same parameters by name (the chains' problem has no [survival] table)
        tm2 = s2["typical"]
        th = np.array([theta_x[tm.names.index(n)] for n in tm2.names])
        idx = [en.index(n) for n in s2["omega_model"].names]
        sd2 = np.array([sd[err_names.index(problem2.names[q])] for q, _, _ in s2["err"]])
        cf = np.array([coef[list(tm.coefficient_names).index(c)]
                       for c in tm2.coefficient_names], dtype=float)
        return th, omega[np.ix_(idx, idx)], sd2, cf

    mc = mcmc_information(cfg, designs, at, replicates=replicates, seed=seed,
                          fim_names=out["fim_names"], source=cfg.source)
    fim = mc["fim"]
    _, _, se = _natural_se(problem, s, fim, theta_x, omega, J_om, sd, coef)
    R = mc["fims"].shape[0]
    se_mc = np.full(se.shape, np.nan)
    if R >= 3:
        loo = np.array([_natural_se(problem, s, (fim * R - mc["fims"][r]) / (R - 1), theta_x,
                                    omega, J_om, sd, coef)[2] for r in range(R)])
        with np.errstate(invalid="ignore"):
            se_mc = np.sqrt((R - 1) / R * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    out = dict(out, fim=fim, se=se, se_mc=se_mc)
    notes = [f"exact information (no linearisation): Louis' observed information averaged "
             f"over {R} data set{'s' if R != 1 else ''} simulated on the design, MCMC over "
             f"the random effects "
             f"({mc['prediction_path'].split(' in the SAEM')[0]})"]
    n_cens = int(np.sum(s["data"].cens[s["data"].mask] != 0))
    if np.any(mc["censored"]) or n_cens:
        notes.append(f"simulated values beyond the design's censoring limits censored (M3): "
                     f"{np.mean(mc['censored']):.0f} values per data set")
    d = np.diag(fim)
    ok = d > 1e-10 * max(float(d.max()), 1e-300)
    if np.any(d < 0) or (ok.any() and np.linalg.eigvalsh(fim[np.ix_(ok, ok)]).min() <= 0):
        notes.append(f"the mean information over {R} data sets is not positive definite "
                     "(Monte Carlo noise along a weakly informed direction): its SEs are not "
                     "reliable; raise replicates (--replicates)")
    if mc["events"] is not None:
        notes.append(f"[survival]: event times drawn by the hazard, values only before them, "
                     f"enrolled event-free; {np.mean(mc['events']):.0f} events per data set")
    return out, notes + _prior_note(cfg)


def _sensitivity_derivatives(model, mu, G, N, h: float = 1e-4):
    """dG/dmu_d (D, N, n, D) by central differences of the exact sensitivities."""
    D = mu.shape[1]
    out = np.empty((D,) + G.shape)
    for d in range(D):
        e = np.zeros(D)
        e[d] = h
        Gp = model.predict(mu + e, np.arange(N))[1]
        Gm = model.predict(mu - e, np.arange(N))[1]
        out[d] = (Gp - Gm) / (2.0 * h)
    return out


def _inverse_where_informed(fim):
    """The inverse of the information on the parameters the design informs; NaN rows and
    columns for the others (a zero row: no value depends on the parameter)."""
    d = np.diag(fim)
    ok = d > 1e-10 * max(float(d.max()), 1e-300)
    cov = np.full(fim.shape, np.nan)
    sub = np.ix_(ok, ok)
    try:
        cov[sub] = np.linalg.inv(fim[sub])
    except np.linalg.LinAlgError:
        cov[sub] = np.linalg.pinv(fim[sub])
    bad = np.diag(cov) <= 0
    cov[bad, :] = np.nan
    cov[:, bad] = np.nan
    return cov


def _counts(problem, data) -> dict:
    obs = data.observable[data.mask]
    names = list(problem.observables)
    return {names[k]: int(np.sum(obs == k)) for k in range(len(names)) if np.any(obs == k)}


def _notes(cfg, problem, s) -> list:
    out = []
    n_cens = int(np.sum(s["data"].cens[s["data"].mask] != 0))
    if n_cens:
        out.append(f"{n_cens} censored values counted as observed (their information is "
                   "overstated)")
    if problem.survival is not None:
        out.append("[survival]: the event times are left out (the longitudinal data only)")
    out += _prior_note(cfg)
    if any(":t(" in str(e) for e in problem.error_models):
        out.append("a Student-t residual counts as the normal with the same information about "
                   "location (variance x (nu + 3) / (nu + 1))")
    return out


def _prior_note(cfg) -> list:
    if any(getattr(p, "prior", ()) or getattr(p, "eta_prior", ()) for p in cfg.parameters):
        return ["priors are left out (the information of the data alone)"]
    return []
