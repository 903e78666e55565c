"""The expected Fisher information of a population design without linearisation: Monte Carlo
over data sets, MCMC over the random effects.

FO's information (:mod:`._design_evaluation`) linearises each subject's model in its random
effects at eta = 0. Where a random effect acts nonlinearly and is seen through few values
(eD on the ALS model: 1.8-2.2x the empirical SE of its log variance,
``benchmarks/results/population_recovery_model_treg_all_20261202_design.md``), that
approximation is poor. The exact expected information is ``E_y[I_obs(theta; y)]``: the
average over data sets drawn from the design at the parameters of the observed information.
Each data set's observed information comes from Louis' formula with MCMC over the random
effects given the data (SAEM's kernels with the parameters held,
:func:`~.population._saem_score.score_pass`), as in Riviere, Ueckert & Mentre (2016,
Biostatistics 17:737, "An MCMC method for the evaluation of the Fisher information matrix
for non-linear mixed effect models"). The data sets are simulated with the fit's own
residual model (Student t included) and censored at the design's limits (the M3 likelihood
in the chains), so censoring costs information here, unlike in FO. A joint config
(``[survival]``) also draws each subject's event time by the model's hazard, so the hazard's
parameters are informed (FO leaves the event times out).

Why hand-written: no Python library computes a population FIM; PFIM 6 (R) has the MCMC
method through Stan.
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from ..errors import ConfigError, FitError

__all__ = ["ITERATIONS", "BURN_IN", "CHAINS", "mcmc_information"]

#: Iterations of each data set's MCMC pass (after the burn-in), its burn-in (kernel
#: adaptation), and chains per subject: Louis' terms to Monte Carlo noise well below the
#: spread between data sets on the ALS design (200 patients: ~35 s per data set).
ITERATIONS = 200
BURN_IN = 50
CHAINS = 4


def mcmc_information(cfg, designs, at, *, replicates: int, seed: int, fim_names,
                     source: str) -> dict:
    """Louis' information averaged over ``replicates`` data sets simulated on ``designs``.

    Parameters
    ----------
    cfg : FitConfig
        The population config (with a ``[survival]`` table each data set also draws event
        times: :func:`_joint_replicate`).
    designs : list of Design
        The design (its values are replaced by the simulated ones).
    at : callable
        ``at(problem, s, est) -> (theta_x (D,), omega (E, E), sd (S,), coef (C,))``: the
        parameters, in the estimator set-up's layout.
    replicates : int
        Data sets.
    seed : int
        Seed of the simulations and chains.
    fim_names : sequence of str
        The FO layout's parameter names (``theta NAME``, ``coef NAME``, Omega's parameters,
        ``log OBS.a``): the order of the returned information.
    source : str
        The config file, for messages.

    Returns
    -------
    dict
        ``fim`` (K, K) the mean information in ``fim_names`` order, ``fims`` (R, K, K) each
        data set's, ``censored`` (R,) the simulated values censored per data set,
        ``events`` (R,) the events per data set (None without ``[survival]``),
        ``prediction_path`` (str) how the chains solved the model.
    """
    from .population._outputs import simulate_designs
    from .population._vpc import vpc_limits

    joint = cfg.survival is not None
    base = _chains_setup(cfg, designs)
    problem, s, est = base["problem"], base["s"], base["est"]
    theta_x, omega, sd, coef = at(problem, s, est)
    residual = est._residual(problem, s, sd)
    mu = est._mu(s, theta_x, coef)[0]
    data = s["data"]
    rng = np.random.default_rng([int(seed), 29])
    sims = None if joint else simulate_designs(s["model"], data, mu, omega, residual,
                                               s["eta_pos"], int(replicates), int(seed),
                                               source=source)
    lower, upper = vpc_limits(data), _upper_limits(data)
    fims, censored, events, words = [], [], [], ""
    for r in range(int(replicates)):
        if joint:
            # new event times, and no values after them: one set-up per data set
            sim_designs, n_cens, n_events = _joint_replicate(
                problem, designs, s, mu, omega, residual, (lower, upper), rng, source)
            setup = _chains_setup(cfg, sim_designs)
            sim = setup["s"]["data"]
            events.append(n_events)
        else:
            setup = base
            y, cens, limit = _censor(sims[r], lower, upper)
            cens = np.where(data.mask, cens, 0).astype(np.int8)
            sim = dataclasses.replace(data, y=np.where(data.mask, y, 0.0), cens=cens,
                                      limit=np.where(data.mask, limit, np.nan))
            n_cens = int(np.sum(cens != 0))
        censored.append(n_cens)
        info, words = _information_of(setup, sim, at, fim_names, int(seed) + 7919 * (r + 1))
        fims.append(info)
    fims = np.array(fims)
    return dict(fim=fims.mean(axis=0), fims=fims, censored=np.array(censored),
                events=np.array(events) if joint else None, prediction_path=words)


def _chains_setup(cfg, designs) -> dict:
    """SAEM's set-up of ``cfg`` on ``designs``: problem, set-up dict, estimator and the
    covariate design of the chains."""
    from ..parallel import executor as make_executor
    from ._estimator_options import EstimatorOptions
    from .estimators._population_layout import _covariate_design
    from .estimators.base import EstimationProblem
    from .estimators.saem import SAEM
    from .problem import Problem

    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    est = SAEM()
    with make_executor(None, None) as ex:
        ep = EstimationProblem(problem=problem, designs=designs,
                               options=EstimatorOptions.coerce(cfg.options,
                                                               f"{cfg.source}, [estimator]"),
                               executor=ex, name=cfg.name, source=cfg.source)
        try:
            s = est._setup_saem(ep)
            cov_x, cov_mask, cov_fixed, coef_map = _covariate_design(ep, s)
        except ConfigError as exc:
            raise ConfigError(f"design evaluation with method = \"mcmc\" (SAEM's chains): "
                              f"{exc}") from None
    s["coef_map"] = coef_map
    return dict(problem=problem, s=s, est=est, cov_x=cov_x, cov_mask=cov_mask,
                cov_fixed=cov_fixed)


def _information_of(setup, data, at, fim_names, seed: int):
    """Louis' information of one simulated data set (``data`` on ``setup``'s subjects) in
    ``fim_names`` order, and how the chains predicted."""
    from .population._saem_score import score_pass

    problem, s, est = setup["problem"], setup["s"], setup["est"]
    theta_x, omega, sd, coef = at(problem, s, est)
    D, E = s["pop_cols"].size, s["eta_pos"].size
    om_model = s["omega_model"]
    P, S = om_model.n_parameters, len(s["err"])
    residual = est._residual(problem, s, sd)
    beta = np.zeros((len(s["typical"].coefficient_names), D))
    for j, (col, e, kind) in s["coef_map"].items():
        beta[col - 1, s["eta_pos"][e]] = coef[j] if kind == "linear" else math.log1p(coef[j])
    if setup["cov_fixed"] is not None:          # held coefficients (estimate = false)
        cf = setup["cov_fixed"]
        beta[:, s["eta_pos"]] = np.where(np.isfinite(cf), cf, beta[:, s["eta_pos"]])
    pattern = np.zeros((E, E), dtype=bool)
    fixed = np.zeros(E, dtype=bool)
    for idx, fx in zip(om_model.blocks, om_model.fixed, strict=True):
        pattern[np.ix_(idx, idx)] = True
        fixed[idx] = fx
    x_at = np.concatenate([theta_x, om_model.pack(omega), np.log(sd), coef[s["coef_free"]]])
    if "kernel" not in setup:
        setup["kernel"] = est._kernel_model(s, x_at, D, E, omega, residual, seed)
    kernel, words = setup["kernel"]
    sp = score_pass(kernel, data, theta_x, omega, residual, beta=beta,
                    eta_columns=s["eta_pos"], covariates=setup["cov_x"],
                    covariate_mask=setup["cov_mask"], omega_structure=pattern,
                    omega_fixed=fixed, residual_fixed=s["residual_fixed"],
                    estimate_columns=s["no_eta"], n_iter=ITERATIONS, burn_in=BURN_IN,
                    n_chains=CHAINS, seed=seed, mu_fixed=s["x_fixed"][s["eta_pos"]],
                    covariate_fixed=setup["cov_fixed"])
    return _layout(s, problem, est, fim_names, omega, beta, D, P, S)(sp), words


def _censor(y, lower, upper):
    """Simulated values (core scale) censored at the design's limits (NaN: none): the values
    with censored ones at their limit, the flags (1 below, -1 above) and the limits."""
    with np.errstate(invalid="ignore"):
        cens = np.where(y < lower, 1, np.where(y > upper, -1, 0)).astype(np.int8)
    limit = np.where(cens == 1, lower, np.where(cens == -1, upper, np.nan))
    return np.where(cens != 0, limit, y), cens, limit


def _joint_replicate(problem, designs, s, mu, omega, residual, limits, rng, source):
    """One data set of a joint design: each subject's random effects, its event time by the
    ``[survival]`` hazard (the model's own Exp(1) threshold, :class:`~.population.
    _vpc_events.EndEvents`), drawn again while the event comes before the subject's entry
    (enrolled alive); values (residual noise, censoring at the design's limits) only before
    the event; the event recorded if it comes by the subject's end of follow-up
    (:func:`_follow_up`), right-censored there otherwise.

    Returns (designs, censored values, events)."""
    from types import SimpleNamespace

    from ._survival_likelihood import record_for
    from .population._outputs import _values
    from .population._vpc_events import EndEvents

    spec = problem.survival
    hazard = problem.model.spec.hazard(spec.hazard)
    end = EndEvents(problem, designs, [hazard.event], alone=True)
    model = s["model"]
    eta_pos = s["eta_pos"]
    N = len(designs)
    L = np.linalg.cholesky(np.atleast_2d(omega))
    follow = _follow_up(designs)
    entry = np.array([_entry(spec, d) for d in designs])
    phi = mu.copy()
    T = np.full(N, -np.inf)
    f = None
    todo = np.arange(N)
    for _ in range(50):
        phi[todo] = mu[todo]
        phi[np.ix_(todo, eta_pos)] += rng.standard_normal((todo.size, eta_pos.size)) @ L.T
        fr = _values(model, phi[todo], todo)
        f = fr if f is None else f
        f[todo] = fr
        T[todo] = end.event_times(model.thetas(phi[todo]), todo, rng, float(follow.max()))
        ok = np.array([np.all(np.isfinite(f[i, :designs[i].n])) for i in range(N)])
        todo = np.flatnonzero(~ok | ~(T > entry))
        if todo.size == 0:
            break
    else:
        raise FitError(f"{source}: design evaluation (mcmc): subject '{designs[todo[0]].id}' "
                       "was not event-free at its entry (or its model failed) in 50 draws of "
                       "its random effects; expected a design whose subjects survive to entry")
    out, n_cens, n_events = [], 0, 0
    for i, d in enumerate(designs):
        n = d.n
        k = np.asarray(d.obs, dtype=int)
        fi = f[i, :n]
        sd = np.sqrt(residual.variance(fi, k))
        df = getattr(model, "residual_df", None)
        nu = (np.full(n, np.inf) if df is None
              else np.asarray(df, dtype=float)[np.minimum(k, len(df) - 1)])
        eps = np.where(np.isfinite(nu), rng.standard_t(np.where(np.isfinite(nu), nu, 1.0)),
                       rng.standard_normal(n))
        y, cens, limit = _censor(fi + sd * eps, limits[0][i, :n], limits[1][i, :n])
        logs = np.asarray(model.log_scale, dtype=bool)[k]
        value = np.where(logs, np.exp(y), y)
        limit = np.where(logs, np.exp(limit), limit)
        keep = np.asarray(d.time, dtype=float) < T[i]
        happened = T[i] <= follow[i]
        when = T[i] if happened else follow[i]
        rec = record_for(spec, SimpleNamespace(time=when, type=spec.events[0] if happened
                                               else "censored"),
                         float(np.min(d.time)), np.asarray(d.time)[keep])
        n_cens += int(np.sum(cens[keep] != 0))
        n_events += int(happened)
        out.append(dataclasses.replace(
            d, time=np.asarray(d.time)[keep], obs=k[keep], value=value[keep],
            cens=cens[keep], limit=limit[keep],
            condition=None if d.condition is None else np.asarray(d.condition)[keep],
            sd=None if d.sd is None else np.asarray(d.sd)[keep], survival=rec))
    return out, n_cens, n_events


def _follow_up(designs) -> np.ndarray:
    """Each subject's end of follow-up in data time: a right-censored record's time; for a
    subject whose record is an event the study's end (the latest record or observation time of
    any subject: its own follow-up would have gone on had it not died); else its last
    observation."""
    from ._survival_likelihood import RIGHT

    end = max(max((d.survival.time for d in designs if d.survival is not None), default=0.0),
              max(float(np.max(d.time)) for d in designs))
    return np.array([float(np.max(d.time)) if d.survival is None
                     else d.survival.time if d.survival.kind == RIGHT else end
                     for d in designs])


def _entry(spec, design) -> float:
    """The data time from which a subject of the design is known event-free."""
    rec = design.survival
    if rec is not None and np.isfinite(rec.entry):
        return float(rec.entry)
    return {"first": float(np.min(design.time)), "enrolment": 0.0,
            "none": -np.inf}[spec.entry]


def _upper_limits(data) -> np.ndarray:
    """The limit above which a value of each row's observable is censored (core scale): the
    median of that observable's upper limits in the design; NaN (never) without any."""
    out = np.full(data.y.shape, np.nan)
    above = data.mask & (data.cens == -1)
    for k in np.unique(data.observable[above]):
        out[data.observable == k] = float(np.median(data.limit[above & (data.observable == k)]))
    return out


def _layout(s, problem, est, fim_names, omega, beta, D, P, S):
    """A function from a score pass to its information in ``fim_names`` order: the core's
    parameters mapped to focei's layout (:func:`_to_focei_layout`), then the FO layout's
    subset (the free parameters)."""
    from .estimators._population_layout import _to_focei_layout

    focei_names = list(est._covariance_names(problem, s))
    # a parameter of the [survival] table only is not in the chains' problem: no information
    here = [j for j, n in enumerate(fim_names) if n in focei_names]
    rows = [focei_names.index(fim_names[j]) for j in here]
    K = len(fim_names)

    def info(sp):
        res = types.SimpleNamespace(parameter_names=sp.names, omega=omega, beta=beta)
        T = _to_focei_layout(s, res, D, P, S)
        if T is None:
            raise FitError("design evaluation (mcmc): the chains' information misses a "
                           "parameter of the population model")
        Tf = T[rows]
        if Tf.shape[0] != Tf.shape[1]:
            raise FitError(f"design evaluation (mcmc): {Tf.shape[1]} parameters in the chains, "
                           f"{Tf.shape[0]} in the design's layout")
        # psi_fo = Tf psi_core (a reparametrisation): I_fo = Tf^-T I_core Tf^-1
        Ti = np.linalg.inv(Tf)
        F = Ti.T @ np.asarray(sp.fisher, dtype=float) @ Ti
        out = np.zeros((K, K))
        out[np.ix_(here, here)] = 0.5 * (F + F.T)
        return out

    return info
