"""Profile-likelihood intervals of a population fit's parameters (PsN's ``llp``, pyPESTO's
profiles) by refits with the parameter held.

A Wald interval (:mod:`progression.fit._population_intervals`) is symmetric on the scale the
parameter was estimated on; for a variance the data say little about (high shrinkage: eD's
in the shipped ALS fit, SE of log omega^2 ~0.6-1.6) the likelihood is far from quadratic
there and the Wald interval covers the truth too rarely (84-88 % in the recovery studies).
The profile interval is the set of values the likelihood-ratio test at ``1 - level`` does not
reject: ``OFV(v) - OFV_hat <= chi2_1(level)`` (3.84 at 95 %), ``OFV(v)`` the objective of a
refit of everything else with the parameter held at ``v``.

Each end is found by refits on the estimation scale (log for a variance or a residual SD, the
parameter's own scale for a typical value), starting at the Wald end, then by the secant rule
on the signed root ``sqrt(OFV(v) - OFV_hat)``, nearly linear in the parameter, until the
objective is within ``tolerance`` of the threshold or the refits run out; the end is then
interpolated between the refits that bracket the threshold. Refits start at the fit's
estimates with the same seed (for SAEM: the same chains' random numbers as far as they go;
its importance-sampling OFV has a Monte Carlo SE, reported, of ~0.2-0.7 on the ALS fit, which
is the precision of each end's objective). Every refit of a population fit is the estimator
the config names, with the config's options; the covariance steps of the refits are skipped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, FitError
from ._population_profile_result import PopulationProfile, markdown_table, slug  # noqa: F401

__all__ = ["PopulationProfile", "held_prior_m2logp", "profile_fitted", "profile_names",
           "profile_population", "with_parameter_held"]

#: The estimators whose fits can be profiled (refits with a parameter held).
PROFILED_ESTIMATORS = ("focei", "foce", "fo", "laplace", "saem")


@dataclass(frozen=True)
class _Target:
    """What is held, where it lives in the config, and its estimation scale."""

    kind: str          # "typical", "omega", "sigma"
    name: str          # the parameter (typical, omega) or the error parameter (sigma)
    scale: str         # estimation scale: "log", "linear", "logit", "log10"
    lower: float
    upper: float


def profile_population(config, parameter: str, *, fit=None, data=None, level: float = 0.95,
                       values=None, max_refits: int = 6, tolerance: float = 0.15,
                       executor=None, progress: bool = False) -> PopulationProfile:
    """Profile-likelihood interval of one population parameter, by refits with it held.

    Parameters
    ----------
    config : FitConfig, str or Path
        The population fit's config (``[fit] estimator`` one of ``focei``, ``foce``, ``fo``,
        ``laplace``, ``saem``).
    parameter : str
        ``NAME`` (typical value of a population parameter), ``"omega^2 NAME"`` (variance of
        a random effect in its own 1 x 1 block of Omega) or ``"OBS.a"`` / ``.b`` /
        ``.sigma`` (an estimated residual parameter): the keys of the parameter table and of
        ``PopulationPart`` intervals.
    fit : FitResult, optional
        The fit of ``config`` (e.g. ``load_fit("fits/NAME")``); fitted here when omitted.
    data : Cohort or list of Design, optional
        The data (default: the config's ``[data]``; without a data file, ``fit.designs``).
    level : float
        Coverage of the interval (0-1).
    values : sequence of float, optional
        Instead of searching the interval's ends: refit at these held values (natural scale)
        and return their ``delta_ofv`` (e.g. the likelihood-ratio test at a known truth);
        ``interval`` is then read off those refits as far as they bracket the threshold.
    max_refits : int
        Most refits per end of the interval (at least 2).
    tolerance : float
        An end is accepted when its refit's OFV is this close to the threshold.
    executor : concurrent.futures.Executor, optional
        Where each refit runs its chunks of subjects (as in :func:`progression.fit.fit`).
    progress : bool
        Print one line per refit on stderr.

    Returns
    -------
    PopulationProfile

    Raises
    ------
    ConfigError
        Not a population estimator; an unknown parameter name, a fixed one, a variance in a
        larger block of Omega, or a typical value with covariate effects but no random effect
        (holding it would drop the effects); ``max_refits`` below 2 or ``level`` outside (0, 1).
    FitError
        The fit at the estimate has no OFV.
    """
    from .config import FitConfig, read_fit_config
    from .estimate import fit as run_fit

    cfg = config if isinstance(config, FitConfig) else read_fit_config(
        config, check_data=data is None)
    _check_call(cfg, level, max_refits)
    _target(cfg, parameter)
    if fit is None:
        fit = run_fit(cfg, data=data, executor=executor)
    else:
        _check_same_fit(cfg, fit, data)
    return profile_fitted(cfg, parameter, fit.population, _designs(cfg, fit, data),
                          level=level, values=values, max_refits=max_refits,
                          tolerance=tolerance, executor=executor, progress=progress)


def _check_same_fit(cfg, fit, data) -> None:
    """Refuse a fit made from another config text or data file than the refits would use:
    its OFV would not be their reference."""
    from .estimate import data_sha256

    prov = getattr(fit, "provenance", None) or {}
    text = prov.get("config_text")
    if text is not None and cfg.text and _settings(text) != _settings(cfg.text):
        raise ConfigError(f"{cfg.source}: the fit was made from another text of this config "
                          f"(its provenance keeps the text it was fitted with); expected the "
                          f"same settings as the fit, found changed ones: refit it first")
    fingerprint = prov.get("model_fingerprint")
    spec = getattr(getattr(cfg, "model", None), "spec", None)
    if fingerprint and getattr(spec, "fingerprint", "") and spec.fingerprint != fingerprint:
        raise ConfigError(f"{cfg.source}: the model ({cfg.model_ref}) changed since the fit "
                          f"was made; expected the fitted model: refit it first")
    path, sha = cfg.data.get("path"), prov.get("data_sha256")
    if data is None and path and sha and prov.get("data_sha256_of") == "the data file":
        try:
            now = data_sha256(path)
        except OSError:
            return          # read_data names the missing file when the refits start
        if now != sha:
            raise ConfigError(f"{path}: the data file changed since the fit was made "
                              f"(SHA-256 {now[:12]}, fitted {sha[:12]}); expected the fitted "
                              f"data: refit it first")


def _settings(text: str):
    """A config's settings without its comments and layout (None when it does not parse)."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _check_call(cfg, level, max_refits) -> None:
    check_profilable(cfg)
    if not 0.0 < level < 1.0:
        raise ConfigError(f"profile_population(level=...): expected a coverage in (0, 1), "
                          f"found {level!r}")
    if int(max_refits) < 2:
        raise ConfigError(f"profile_population(max_refits=...): expected at least 2, found "
                          f"{max_refits!r}")


def check_profilable(cfg) -> None:
    """A config whose fit can be profiled: a population estimator."""
    if cfg.estimator not in PROFILED_ESTIMATORS:
        raise ConfigError(f"{cfg.source}, key 'fit.estimator': a profile likelihood needs a "
                          f"population fit; expected one of {', '.join(PROFILED_ESTIMATORS)}, "
                          f"found {cfg.estimator!r}")


def profile_names(cfg) -> tuple:
    """The parameters a fit of ``cfg`` profiles (``[estimator] profile_parameters``, else
    every typical value, variance in its own block and residual parameter it estimates).

    Raises
    ------
    ConfigError
        A name that cannot be profiled, naming the key ``estimator.profile_parameters``.
    """
    given = tuple(cfg.options.get("profile_parameters") or ())
    if cfg.estimator not in PROFILED_ESTIMATORS:
        if given:
            raise ConfigError(f"{cfg.source}, key 'estimator.profile_parameters': profiles of "
                              f"population parameters need a population fit (one of "
                              f"{', '.join(PROFILED_ESTIMATORS)}); fit.estimator is "
                              f"{cfg.estimator!r}, whose 'profile' covers every estimated "
                              f"parameter (estimator.profile_points)")
        return ()
    if not given:
        return tuple(_profilable(cfg))
    for name in given:
        try:
            _target(cfg, name)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"{cfg.source}: profile of",
                                               f"{cfg.source}, key "
                                               f"'estimator.profile_parameters': profile of",
                                               1)) from None
    return given


def profile_fitted(cfg, parameter: str, pop, designs, *, level: float = 0.95, values=None,
                   max_refits: int = 6, tolerance: float = 0.15, executor=None,
                   progress: bool = False) -> PopulationProfile:
    """:func:`profile_population` given the fit's population part and its designs (what
    :func:`progression.fit.fit` calls for ``uncertainty = ["profile"]``)."""
    import sys

    from scipy.stats import chi2, norm

    _check_call(cfg, level, max_refits)
    target = _target(cfg, parameter)
    if pop is None or not math.isfinite(float(pop.ofv)):
        raise FitError(f"{cfg.source}: profile of {parameter!r}: the fit has no population "
                       f"OFV to profile against")
    est = _estimate(pop, target)
    # with priors the fit is a posterior mode: profile the posterior objective (OFV plus the
    # priors' -2 log p), each refit carrying every prior, the held parameter's at its value
    posterior = _has_priors(cfg)
    ofv_hat = float(pop.ofv) + (float(getattr(pop, "prior_objective", 0.0) or 0.0)
                                if posterior else 0.0)
    crit = float(chi2.ppf(level, 1))
    z = float(norm.ppf(0.5 + level / 2.0))
    wald = _wald(pop, parameter, level)
    warm = _warm_start(cfg, pop)
    u_hat = _to_u(est, target)
    lo_u, hi_u = _u_limits(target)

    t0 = time.perf_counter()
    done: dict[float, float] = {}
    mc_se = [math.nan]

    def delta(u: float) -> float:
        u = float(np.clip(u, lo_u, hi_u))
        if u in done:
            return done[u]
        v = _from_u(u, target)
        ofv, se = _refit(_held(warm, target, v), designs, executor)
        ofv += held_prior_m2logp(cfg, target, v)
        mc_se.append(se)
        done[u] = ofv - ofv_hat
        if progress:
            print(f"profile {parameter} = {v:.6g}: OFV - OFV_hat {done[u]:+.3f}",
                  file=sys.stderr, flush=True)
        return done[u]

    if values is not None:
        for v in _checked_values(cfg, parameter, target, values):
            delta(_to_u(v, target))
        ends = [_read_end(done, u_hat, side, crit) for side in (-1, 1)]
    else:
        se_u = _se_u(pop, parameter, target, z, wald)
        ends = [_search_end(delta, done, u_hat, side, se_u, crit, z, tolerance,
                            int(max_refits), lo_u, hi_u) for side in (-1, 1)]
    us = np.array(sorted(done))
    vals = tuple(float(_from_u(u, target)) for u in us)
    deltas = tuple(float(done[u]) for u in us)
    interval = tuple(float(_from_u(u, target)) for u, _ in ends)
    open_ends = tuple(bool(o) for _, o in ends)
    se_finite = [s for s in mc_se if math.isfinite(s)]
    return PopulationProfile(
        parameter=parameter, estimate=float(est), ofv=ofv_hat, values=vals, delta_ofv=deltas,
        interval=interval, open_ends=open_ends, level=float(level), threshold=crit,
        wald=wald, ofv_mc_se=max(se_finite) if se_finite else math.nan,
        estimator=cfg.estimator, seconds=time.perf_counter() - t0, posterior=posterior)


def with_parameter_held(config, parameter: str, value: float):
    """``config`` with one population parameter held at ``value``: a refit of it is one point
    of the profile likelihood (and, at a known truth, the likelihood-ratio test there).

    Parameters
    ----------
    config : FitConfig
    parameter : str
        As :func:`profile_population` takes it (``NAME``, ``"omega^2 NAME"``, ``"OBS.a"``).
    value : float
        Natural scale.

    Returns
    -------
    FitConfig
        A typical value with a random effect gets ``value_fixed``, one without is fixed, a
        variance gets ``eta_fixed``, a residual parameter is fixed; starting values unchanged.
        The held parameter's own prior is dropped (a held value takes no prior: its
        ``-2 log p`` there is :func:`held_prior_m2logp`, a constant of the refit).
    """
    return _held(config, _target(config, parameter), float(value))


# ------------------------------------------------------------------------- the search

def _search_end(delta, done, u_hat, side, se_u, crit, z, tolerance, max_refits, lo_u, hi_u):
    """One end of the interval on the estimation scale: (u, open)."""
    limit = lo_u if side < 0 else hi_u
    root = math.sqrt(crit)
    u = u_hat + side * z * se_u
    u = min(max(u, lo_u), hi_u)
    below = (u_hat, 0.0)            # last point inside the interval (u, signed root)
    above = None                    # first point outside
    for _ in range(max_refits):
        d = delta(u)
        r = math.sqrt(max(d, 0.0)) if math.isfinite(d) else math.inf
        if math.isfinite(d) and abs(d - crit) <= tolerance:
            return u, False
        if r < root:
            below = (u, r)
        else:
            above = (u, r) if above is None or abs(u - u_hat) < abs(above[0] - u_hat) \
                else above
        if above is None:
            if u == limit:
                return u, True
            # still inside: extrapolate the signed root linearly from the estimate (at least
            # double the step, as the profile of a poorly determined variance flattens)
            slope = below[1] / abs(below[0] - u_hat) if below[0] != u_hat else 0.0
            step = abs(u - u_hat)
            new = step * 2.0 if slope <= 0.0 else max(root / slope, step * 1.25)
            u = min(max(u_hat + side * min(new, step * 4.0), lo_u), hi_u)
        elif not math.isfinite(above[1]):
            u = 0.5 * (below[0] + above[0])           # a failed refit: bisect
        else:
            # secant on the signed root between the bracketing refits
            w = (root - below[1]) / (above[1] - below[1])
            u = below[0] + w * (above[0] - below[0])
        if any(abs(u - k) < 1e-9 for k in done):
            break
    return _read_end(done, u_hat, side, crit)


def _read_end(done, u_hat, side, crit):
    """The end read off the refits made: interpolated in the signed root between the last
    refit inside and the first outside; open when none is outside."""
    root = math.sqrt(crit)
    pts = sorted(((u, d) for u, d in done.items() if (u - u_hat) * side > 0),
                 key=lambda p: abs(p[0] - u_hat))
    inside = (u_hat, 0.0)
    for u, d in pts:
        if not math.isfinite(d):
            continue
        r = math.sqrt(max(d, 0.0))
        if r >= root:
            w = (root - inside[1]) / (r - inside[1]) if r > inside[1] else 1.0
            return inside[0] + w * (u - inside[0]), False
        inside = (u, r)
    # not reached: the interval extends at least to the farthest refit inside (a failed
    # refit beyond it says nothing about the likelihood there)
    return inside[0], True


# ----------------------------------------------------------------- the held parameter

def _profilable(cfg) -> list:
    """Every parameter of ``cfg`` a profile can hold, in the parameter table's order."""
    out = [p.name for p in cfg.parameters if p.kind == "model" and p.estimate == "population"
           and not p.value_fixed and (p.eta is not None or not p.covariates)]
    out += [f"omega^2 {p.name}" for p in cfg.parameters if p.kind == "model"
            and p.eta is not None and not p.eta_fixed and p.omega_block is None]
    out += [p.name for p in cfg.parameters if p.kind == "error" and p.estimated]
    return out


def _target(cfg, parameter: str) -> _Target:
    name = str(parameter).strip()
    known = {p.name: p for p in cfg.parameters}
    profilable = _profilable(cfg)
    where = f"{cfg.source}: profile of {name!r}"
    if name.startswith("omega^2 "):
        base = name[len("omega^2 "):].strip()
        p = known.get(base)
        if p is None or p.kind != "model" or p.eta is None:
            raise ConfigError(f"{where}: expected the variance of a random effect, one of "
                              f"{', '.join(profilable)}; {base!r} has no random effect")
        if p.eta_fixed:
            raise ConfigError(f"{where}: the variance is held (eta_fixed = true); nothing to "
                              f"profile")
        if p.omega_block is not None:
            raise ConfigError(f"{where}: the random effect is in an Omega block with "
                              f"{', '.join(q for q in p.omega_block.parameters if q != base)}; "
                              f"expected a variance in its own 1 x 1 block")
        return _Target("omega", base, "log", 0.0, math.inf)
    p = known.get(name)
    if p is None or (p.kind == "model" and p.estimate != "population") or \
            (p.kind == "error" and not p.estimated) or p.kind == "offset":
        raise ConfigError(f"{where}: expected a typical value, a variance ('omega^2 NAME') or "
                          f"a residual parameter the fit estimates, one of "
                          f"{', '.join(profilable) or '(none)'}; found {name!r}")
    if p.kind == "error":
        return _Target("sigma", name, "log", 0.0, math.inf)
    if p.value_fixed:
        raise ConfigError(f"{where}: the typical value is held (value_fixed = true); nothing "
                          f"to profile")
    if p.eta is None and p.covariates:
        raise ConfigError(f"{where}: a typical value with covariate effects and no random "
                          f"effect cannot be held (holding it fixes the parameter and drops "
                          f"the effects); give it a random effect or profile another")
    return _Target("typical", name, p.scale, p.lower, p.upper)


def _estimate(pop, t: _Target) -> float:
    if t.kind == "typical":
        return float(pop.fixed_effects[t.name])
    if t.kind == "omega":
        i = list(pop.omega_names).index(t.name)
        return float(np.asarray(pop.omega)[i, i])
    return float(pop.sigma[t.name])


def _checked_values(cfg, parameter: str, t: _Target, values) -> list:
    """The held values of ``values=`` as floats, each one a refit can hold exactly: finite,
    positive for a variance or residual parameter, inside a typical value's bounds (a value
    outside would be clipped to another one without a word)."""
    try:
        vals = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=float))]
    except (TypeError, ValueError):
        vals = None
    if not vals:
        raise ConfigError(f"{cfg.source}: profile of {parameter!r}: expected values= as one "
                          f"or more numbers, found {values!r}")
    lo, hi = _u_limits(t)
    for v in vals:
        inside = math.isfinite(v) and (v > 0 if t.kind != "typical" else True)
        if inside:
            u = _to_u(v, t)
            inside = math.isfinite(u) and lo <= u <= hi
        if not inside:
            what = ("a positive value (1e-6 to 1e6)" if t.kind != "typical" else
                    f"a value within its bounds [{t.lower:g}, {t.upper:g}]"
                    + (" (the ends excluded: logit scale)" if t.scale == "logit" else ""))
            raise ConfigError(f"{cfg.source}: profile of {parameter!r} at a given value: "
                              f"expected {what}, found {v!r}")
    return vals


def _to_u(v: float, t: _Target) -> float:
    from .transforms import to_internal

    if t.kind != "typical":
        return math.log(v) if v > 0 else -math.inf
    return float(to_internal(np.array([v]), np.array([t.scale]), np.array([t.lower]),
                             np.array([t.upper]))[0])


def _from_u(u: float, t: _Target) -> float:
    from .transforms import from_internal

    if t.kind != "typical":
        return math.exp(u)
    return float(from_internal(np.array([u]), np.array([t.scale]), np.array([t.lower]),
                               np.array([t.upper]))[0])


def _u_limits(t: _Target) -> tuple:
    """The search range on the estimation scale: a variance or SD within 1e-6-1e6 (a
    variance driven to zero is an open lower end), a typical value within its bounds."""
    from .transforms import internal_bounds

    if t.kind != "typical":
        return math.log(1e-6), math.log(1e6)
    lo, hi = internal_bounds(np.array([t.scale]), np.array([t.lower]), np.array([t.upper]))
    return float(max(lo[0], -1e6)), float(min(hi[0], 1e6))


def _wald(pop, parameter, level):
    from ._population_intervals import wald_intervals

    ci = wald_intervals(pop, level) if pop.covariance is not None else {}
    lo, hi = ci.get(parameter, (math.nan, math.nan))
    return float(lo), float(hi)


def _se_u(pop, parameter, t, z, wald) -> float:
    """The Wald SE on the estimation scale (the first step); 0.5 without one (a factor
    ~e^1 for a log-scale quantity)."""
    lo, hi = wald
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return 0.5
    try:
        se = (_to_u(hi, t) - _to_u(lo, t)) / (2.0 * z)
    except (ValueError, OverflowError):
        return 0.5
    return float(se) if math.isfinite(se) and se > 0 else 0.5


def _warm_start(cfg, pop):
    """The config with every estimated starting value at the fit's estimate."""
    out = []
    omega = np.asarray(pop.omega, dtype=float)
    names = list(pop.omega_names)
    for p in cfg.parameters:
        ch = {}
        if p.kind == "model" and p.estimate == "population" and not p.value_fixed \
                and p.name in pop.fixed_effects:
            ch["value"] = float(pop.fixed_effects[p.name])
        if p.kind == "model" and p.eta is not None and not p.eta_fixed \
                and p.omega_block is None and p.name in names:
            i = names.index(p.name)
            ch["eta"] = float(omega[i, i])
        if p.kind == "error" and p.estimated and p.name in pop.sigma:
            ch["value"] = float(pop.sigma[p.name])
        out.append(dataclasses.replace(p, **ch) if ch else p)
    return cfg.replace(parameters=tuple(out))


def _held(cfg, t: _Target, v: float):
    """``cfg`` with the target held at ``v`` (and without the held parameter's prior)."""
    out = []
    for p in cfg.parameters:
        if p.name == t.name:
            if t.kind == "omega":
                p = dataclasses.replace(p, eta=float(v), eta_fixed=True, eta_prior=())
            elif t.kind == "sigma":
                p = dataclasses.replace(p, value=float(v), estimate="fixed")
            elif p.eta is not None:
                p = dataclasses.replace(p, value=float(v), value_fixed=True, prior=())
            else:
                p = dataclasses.replace(p, value=float(v), estimate="fixed", prior=())
        out.append(p)
    return cfg.replace(parameters=tuple(out))


def _has_priors(cfg) -> bool:
    return any(getattr(p, "prior", ()) or getattr(p, "eta_prior", ()) for p in cfg.parameters)


def held_prior_m2logp(cfg, parameter, value: float) -> float:
    """The held parameter's prior ``-2 log p`` at ``value`` (constants left out, as the
    estimators' ``prior_objective``); 0 without one.

    Parameters
    ----------
    cfg : FitConfig
    parameter : str or _Target
        As :func:`profile_population` takes it.
    value : float
        Natural scale.
    """
    t = parameter if isinstance(parameter, _Target) else _target(cfg, parameter)
    p = next((q for q in cfg.parameters if q.name == t.name), None)
    if p is None:
        return 0.0
    if t.kind == "omega" and getattr(p, "eta_prior", ()):
        omega_p, nu = p.eta_prior
        return float((nu + 2.0) * math.log(value) + nu * omega_p / value)
    if t.kind == "typical" and getattr(p, "prior", ()):
        mean, sd = p.prior
        return float(((_to_u(value, t) - _to_u(mean, t)) / sd) ** 2)
    return 0.0


def _designs(cfg, fit, data):
    """The fitted data as designs: ``data``, else the config's data file (a reloaded fit's
    designs carry no covariates), else the fit's own."""
    from ..data import Cohort
    from .estimate import read_data
    from .problem import designs_from_cohort

    if data is None and cfg.data.get("path"):
        data = read_data(cfg)
    if data is None:
        return list(fit.designs)
    if isinstance(data, Cohort):
        return designs_from_cohort(data, cfg)[0]
    return list(data)


def _refit(cfg, designs, executor) -> tuple[float, float]:
    """(OFV, its Monte Carlo SE) of a fit of ``cfg``: the estimator's point estimate only
    (no covariance step, no extra pass of SAEM's chains); (inf, nan) when it failed."""
    import contextlib

    from ..errors import EstimationFailed
    from ..parallel import executor as make_executor
    from ._estimator_options import EstimatorOptions
    from .estimators import get_estimator
    from .estimators.base import EstimationProblem
    from .problem import Problem

    problem = Problem.from_config(cfg)
    problem.fix_grid_step(designs)
    opts = EstimatorOptions.coerce(cfg.options, f"{cfg.source}, [estimator]")
    est = get_estimator(cfg.estimator, f"{cfg.source}, key 'fit.estimator'")
    ctx = contextlib.nullcontext(executor) if executor is not None else make_executor(None,
                                                                                     None)
    with ctx as ex:
        ep = EstimationProblem(problem=problem, designs=list(designs), options=opts,
                               executor=ex, name=cfg.name, source=cfg.source,
                               covariance_passes=False)
        try:
            est.estimate(ep)
        except (EstimationFailed, FitError, FloatingPointError, np.linalg.LinAlgError):
            return math.inf, math.nan
    s = getattr(est, "_state", {})
    ofv = float(s.get("ofv", math.nan)) + _refit_prior_m2logp(s)
    se = float(getattr(s.get("saem"), "ofv_se", math.nan))
    return (ofv if math.isfinite(ofv) else math.inf), se


def _refit_prior_m2logp(s) -> float:
    """The priors' ``-2 log p`` at a refit's estimates (0 without priors): SAEM's result
    carries it, the FOCE family's outer prior evaluates it at the outer parameters."""
    if s.get("saem") is not None:
        return float(getattr(s["saem"], "prior_objective", 0.0) or 0.0)
    prior = s.get("prior")
    if prior is not None and not prior.empty and s.get("x") is not None:
        return float(prior.value_at(s["x"]))
    return 0.0
