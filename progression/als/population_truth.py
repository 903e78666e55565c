"""The generating population parameters of a synthetic ALS cohort, on a population fit's scale.

A cohort config (``configs/cohorts/als_clinic.toml``) draws each patient's ``k0, kA, Tmax,
eD`` as ``typical * exp(effects . covariates + loading * pace + sd * z)``, redrawn outside the
model's bounds (see :func:`progression.virtual.synthesis.draw_parameters`). A population fit of
``als_reduced`` with log-normal random effects and no covariate model estimates, for each
parameter ``p``, the typical value ``exp(E[log p])`` and the variance ``Var(log p)`` of the
**marginal** distribution (covariates and the shared pace factor included); with the
covariate model of the config, the **conditional** variance (pace factor and individual term
only). :func:`generating_population` computes both by Monte Carlo from the config's own
drawing code (truncation included; no ODE solve), and :func:`sample_population` the same
statistics of the patients actually in a cohort's truth file.

The onset shift of the fit configs (``[parameters.time_offset]`` with ``covariate =
"onset_time"``, ``factor = -1``: its per-patient value is the model time of the reported
symptom onset) has no parameter in the cohort config: it is the model's clinical onset,
``onset_model_time`` of the truth file, a function of the patient's parameters (almost
exactly ``~ 1 / k0``: corr(log onset, log k0) = -0.998 in ``als_clinic_200``). Its typical
value and variance are therefore those of ``log onset_model_time`` over the enrolled patients
(:func:`sample_population`; a larger cohort from the same config gives the population value).

Numbers for ``configs/cohorts/als_clinic_v1.toml``, the generator of the shipped data
(``generating_population``, 400,000 draws, seed 0; ``sample_population`` of
``data/synthetic/als_clinic_200_truth.csv``)::

    parameter    typical (marginal)   Var(log) marginal  conditional | sample of 200:
                                                                       typical  Var(log)
    k0           0.00942              0.388              0.373         0.00950  0.408
    kA           0.0333               0.368              0.355         0.0324   0.383
    Tmax         0.876                0.00644            0.00644       0.881    0.00619
    eD           0.341                0.0901             0.0901        0.339    0.0881
    onset shift  -                    -                  -             6.59     0.360
    corr(log k0, log kA) marginal 0.789, conditional 0.781; sample 0.790

The truncation at the model's bounds (k0 in [0.002, 0.03], kA in [0.005, 0.09], Tmax <= 1)
shrinks Var(log k0) from 0.3^2 + 0.6^2 + covariates = 0.469 to 0.388.
(regenerate with ``python -m progression.als.population_truth``).

Reparametrised fits (``configs/models/als_reduced_pace.toml``: ``kA = k0 * glial_ratio``, k0
the pace) take their truth from :func:`truth_on_fit_scale`, which also derives quantities of
:data:`DERIVED` from each draw: ``glial_ratio = kA / k0`` has typical value 3.54 and
Var(log) 0.160 (the shared pace factor cancels: 0.3^2 + 0.3^2 = 0.18 before truncation); the
pace k0 keeps k0's truth (at the reference covariates 0.00898, conditional Var(log) 0.372).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

import numpy as np

from ..virtual.synthesis import draw_parameters
from .cohort_config import PopulationConfig, _as_config
from .synthetic import draw_covariates

#: Fit parameters that carry a synthetic cohort's per-patient observation offset exactly (the
#: observable they multiply, and nothing else): CRP = Q0 C^hQ; NfL = nfl_scale (nfl_bg +
#: kappa_nfl lam N) in configs/models/als_reduced_pace.toml; Treg_pct = fT0 (T / Tmax)^rhoT.
OFFSET_PARAMETERS = {"Q0": "CRP", "nfl_scale": "NfL", "fT0": "Treg_pct"}

__all__ = ["PopulationTruth", "generating_population", "sample_population",
           "truth_on_fit_scale", "DERIVED", "OFFSET_PARAMETERS", "main", "onset_shift_of_fit",
           "target_table"]

#: Columns of the truth file that a population fit of als_reduced estimates (log scale).
FITTED = ("k0", "kA", "Tmax", "eD")
#: Quantities of a reparametrised fit that are functions of the generator's parameters
#: (``configs/models/als_reduced_pace.toml``: ``kA = k0 * glial_ratio``, so ``k0`` is the
#: pace of the disease and ``glial_ratio`` the glial-to-autonomous split of the hazard).
DERIVED = {"glial_ratio": lambda v: v["kA"] / v["k0"]}
#: The truth-file column of the onset shift's per-patient value.
ONSET = "onset_model_time"


@dataclass(frozen=True)
class PopulationTruth:
    """Population parameters on the log scale of each parameter.

    Attributes
    ----------
    names : tuple of str
        Parameter names (``FITTED``, plus ``"time_offset"`` from a truth file).
    typical : dict of str to float
        ``exp(E[log p])``: the typical value (median of a log-normal) on the natural scale.
    omega : ndarray (P, P)
        Marginal covariance of ``log p`` (covariates and shared factors included).
    omega_conditional : ndarray (P, P) or None
        Covariance of ``log p`` given the covariate terms (residual of the least-squares
        regression of ``log p`` on them); None for a truth file.
    n : int
        Draws or patients behind the numbers.
    """

    names: tuple[str, ...]
    typical: dict
    omega: np.ndarray
    omega_conditional: np.ndarray | None
    n: int

    def variance(self, name: str, conditional: bool = False) -> float:
        """Var(log ``name``), marginal or conditional on the covariates."""
        k = self.names.index(name)
        om = self.omega_conditional if conditional else self.omega
        if om is None:
            raise ValueError(f"no conditional variance for {name!r} (from a truth file)")
        return float(om[k, k])

    def correlation(self, a: str, b: str, conditional: bool = False) -> float:
        """Correlation of ``log a`` and ``log b``."""
        om = self.omega_conditional if conditional else self.omega
        i, j = self.names.index(a), self.names.index(b)
        return float(om[i, j] / math.sqrt(om[i, i] * om[j, j]))


def _covariate_terms(cfg: PopulationConfig, rng: np.random.Generator, m: int) -> dict:
    """The covariate terms exactly as the generator draws them (same code, same order of
    random numbers), so the parameters that follow have the generator's law."""
    return draw_covariates(cfg, rng, m)[4]


def generating_population(config, *, n_draws: int = 400_000, seed: int = 0,
                          names=FITTED) -> PopulationTruth:
    """Typical values and Omega (marginal and given the covariates) of the log parameters
    that a cohort config draws, by Monte Carlo with the generator's own drawing code.

    Parameters
    ----------
    config : PopulationConfig, dict or path
        The cohort config (e.g. ``configs/cohorts/als_clinic.toml``).
    n_draws : int
        Monte Carlo draws (400,000: SE of a variance ~0.2 %).
    seed : int
        Seed of the draws.
    names : sequence of str
        Varied parameters to report (log scale; each must be varied by the config).

    Returns
    -------
    PopulationTruth
        Before enrolment selection (patients who die before diagnosis are screen failures in
        the cohort; :func:`sample_population` shows the enrolled ones).
    """
    cfg = _as_config(config)
    rng = np.random.default_rng(seed)
    terms = _covariate_terms(cfg, rng, n_draws)
    _, varied = draw_parameters(cfg.parameters, cfg.factors, cfg.fixed, terms, rng, n_draws)
    missing = [n for n in names if n not in varied]
    if missing:
        raise ValueError(f"{cfg.source}: parameter {missing[0]!r} is not varied by the config "
                         f"(varied: {', '.join(varied)})")
    L = np.log(np.column_stack([varied[n] for n in names]))
    X = np.column_stack([np.ones(n_draws)] + [terms[k] for k in sorted(terms)])
    beta, *_ = np.linalg.lstsq(X, L, rcond=None)
    R = L - X @ beta
    typical = {n: float(np.exp(L[:, k].mean())) for k, n in enumerate(names)}
    return PopulationTruth(tuple(names), typical, np.cov(L.T), np.cov(R.T), n_draws)


def truth_on_fit_scale(config, parameters, *, n_draws: int = 200_000,
                       seed: int = 1) -> tuple[dict, dict]:
    """Typical value and Omega diagonal of each fitted quantity on the scale the fit gives it.

    By Monte Carlo with the generator's own drawing code (truncation included). For a
    parameter with covariate effects in the fit, the value at the reference covariates (the
    intercept of the least-squares regression of its estimation-scale value on the
    generator's covariate terms: onset age 60, limb onset, no C9orf72) and the variance left
    after them (conditional Omega); otherwise the mean and variance of the estimation-scale
    value (marginal). Quantities of :data:`DERIVED` (``glial_ratio = kA / k0``) are computed
    from each draw's parameters.

    Parameters
    ----------
    config : PopulationConfig, dict or path
        The cohort config.
    parameters : sequence of FitParameter
        The fit's population parameters to report (model parameters the cohort varies, or
        names in :data:`DERIVED`); their ``scale``, bounds and ``covariates`` are used.
    n_draws, seed : int

    Returns
    -------
    typical : dict of str to float
        Natural scale.
    omega : dict of str to float
        Variance on the estimation scale (0 for a quantity the cohort does not vary).

    Raises
    ------
    ValueError
        A parameter that the cohort config neither varies nor derives.
    """
    from ..fit.transforms import from_internal, to_internal

    cfg = _as_config(config)
    rng = np.random.default_rng(seed)
    terms = _covariate_terms(cfg, rng, n_draws)
    _, varied = draw_parameters(cfg.parameters, cfg.factors, cfg.fixed, terms, rng, n_draws)
    X = np.column_stack([np.ones(n_draws)] + [terms[k] for k in sorted(terms)])
    typ, om = {}, {}
    for q in parameters:
        if q.name in varied:
            v = np.asarray(varied[q.name], dtype=float)
        elif q.name in DERIVED:
            v = np.asarray(DERIVED[q.name](varied), dtype=float)
        else:
            raise ValueError(f"{cfg.source}: parameter {q.name!r} is neither varied by the "
                             f"config (varied: {', '.join(varied)}) nor derived "
                             f"({', '.join(DERIVED)})")
        x = to_internal(v, q.scale, q.lower, q.upper)
        if q.covariates:
            beta, *_ = np.linalg.lstsq(X, x, rcond=None)
            centre, var = beta[0], float(np.var(x - X @ beta))
        else:
            centre, var = float(np.mean(x)), float(np.var(x))
        typ[q.name] = float(from_internal(np.array([centre]), q.scale, q.lower, q.upper)[0])
        om[q.name] = var
    return typ, om


def sample_population(truth_csv: str | os.PathLike, names=FITTED,
                      onset: bool = True) -> PopulationTruth:
    """The same statistics over the patients of a cohort's truth file (their true values),
    with the onset shift (``onset_model_time``) as ``"time_offset"`` when ``onset``."""
    with open(truth_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = list(names) + ([ONSET] if onset else [])
    L = np.log(np.array([[float(r[c]) for c in cols] for r in rows]))
    out = tuple(names) + (("time_offset",) if onset else ())
    typical = {n: float(np.exp(L[:, k].mean())) for k, n in enumerate(out)}
    return PopulationTruth(out, typical, np.cov(L.T), None, len(rows))


def _fit_problem(fit):
    """The exact-path Problem of a fit (its model, parameters and solver)."""
    from ..fit.problem import Problem

    return Problem(fit.model, tuple(fit.observables), tuple(fit.error_models),
                   tuple(fit.parameters), dict(fit.solver)).exact_path()


def onset_shift_of_fit(fit, *, n: int = 4000, seed: int = 0) -> dict:
    """The onset shift of a population fit whose time offset is anchored at an event.

    With ``[parameters.time_offset] anchor`` the onset shift (the model time of the anchor
    event, ``T``) is no parameter of the fit but a function of the others, so it is derived:

    - ``typical``: ``T`` at the typical values (at the reference covariates), on the exact
      path; ``se`` by the delta method, ``d log T / d x`` (the implicit-function derivatives
      of :mod:`progression.fit._anchor`, ``x`` the estimation-scale typical values) with the
      covariance step's covariance of ``x``; NaN without a covariance step;
    - ``gmean`` and ``variance``: ``exp(E[log T])`` and ``Var(log T)`` over ``n`` patients
      drawn from the fitted population (random effects from Omega, covariates resampled
      from the fitted subjects: :meth:`FitResult.population_sampler`), each patient's ``T``
      under its own parameters; patients without the event in the window are left out
      (``lost``).

    Parameters
    ----------
    fit : FitResult
        A population fit with an anchored time offset.
    n : int
        Patients drawn for the population statistics.
    seed : int

    Returns
    -------
    dict
        ``typical``, ``se``, ``rse`` (%), ``gmean``, ``variance``, ``n``, ``lost``.

    Raises
    ------
    ValueError
        The fit has no population part or its offset is not anchored.
    """
    from ..fit._anchor import anchor_times

    names = list(fit.parameter_names)
    off = fit.parameters[names.index("time_offset")]
    if getattr(off, "anchor", None) is None or fit.population is None:
        raise ValueError(f"fit '{fit.name}': the onset shift is derived only for a population "
                         "fit whose time offset is anchored ([parameters.time_offset] anchor)")
    pop = fit.population
    problem = _fit_problem(fit)
    P = problem.P
    row = np.array(fit.theta[0], dtype=float)
    model_pop = [k for k in pop.fixed_effects if names.index(k) < P]
    for k in model_pop:
        row[names.index(k)] = pop.fixed_effects[k]
    res = anchor_times(problem, row[None, :P], model_pop)
    T = float(res.T[0])
    se = float("nan")
    cov = None if pop.covariance is None else np.asarray(pop.covariance, dtype=float)
    if cov is not None and cov.size and np.all(np.isfinite(cov)):
        cn = list(pop.covariance_names)
        g = np.zeros(len(cn))
        cols = np.array([names.index(k) for k in model_pop])
        dx = problem.dtheta_dx(row[None, :], cols)[0]         # d theta / d x
        for j, k in enumerate(model_pop):
            if f"theta {k}" in cn:
                g[cn.index(f"theta {k}")] = res.dT[0, j] * dx[j] / T   # d log T / d x
        se = T * math.sqrt(max(float(g @ cov @ g), 0.0))
    sampler = fit.population_sampler()
    rng = np.random.default_rng(seed)
    table, _ = sampler.values(sampler.draw_patients(int(n), rng))
    Ts = anchor_times(problem, table, ()).T
    ok = np.isfinite(Ts) & (Ts > 0)
    L = np.log(Ts[ok])
    return {"typical": T, "se": se, "rse": 100.0 * se / T, "gmean": float(np.exp(L.mean())),
            "variance": float(np.var(L, ddof=1)), "n": int(ok.sum()),
            "lost": int((~ok).sum())}


def _per_subject_summary(folder, names) -> dict:
    """Geometric mean and Var(log) across subjects, median RSE % and the count of subjects
    without a standard error, per parameter of a per-subject fit's ``subjects.csv``."""
    with open(os.path.join(folder, "subjects.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for k in names:
        if k not in rows[0]:
            continue
        v = np.array([float(r[k]) for r in rows])
        se = np.array([float(r[f"{k}_se"]) if r[f"{k}_se"] not in ("", "nan") else np.nan
                       for r in rows])
        rse = 100 * se / v
        L = np.log(v[v > 0])
        out[k] = {"gmean": float(np.exp(L.mean())), "variance": float(np.var(L, ddof=1)),
                  "median_rse": float(np.nanmedian(rse)) if np.isfinite(rse).any()
                  else float("nan"), "no_se": int(np.sum(~np.isfinite(rse)))}
    return out


def target_table(fit_folder, *, cohort_config=None, truth_csv=None, individual=None,
                 n_onset: int = 4000, seed: int = 0) -> tuple[str, dict]:
    """The issue-11 targets of a shipped ALS population fit against the generating truth.

    Per target quantity (the pace ``k0`` at the reference covariates, ``eD``, the onset
    shift): estimate, truth, relative error, RSE %, Omega diagonal (estimate, truth,
    relative error) and pass/fail (typical value within 10 % with RSE < 25 %, Omega
    diagonal within 30 %); then the per-subject fit beside it (``individual``: its folder):
    geometric mean and Var(log) across its subjects' estimates, median RSE %, subjects
    without a standard error.

    Truth: :func:`truth_on_fit_scale` of the cohort config (k0 at the reference covariates
    with the conditional variance; eD marginal); the onset shift's typical value is ``T`` of
    the fit's model at the generator's typical values at the reference covariates (k0,
    ``glial_ratio = kA/k0``, Tmax, eD), its spread ``Var(log onset_model_time)`` of the
    cohort's patients (the population fit's: over patients drawn from it,
    :func:`onset_shift_of_fit`).

    Returns
    -------
    markdown : str
    numbers : dict
        Per quantity: ``estimate``, ``truth``, ``rel``, ``rse``, ``omega``, ``omega_truth``,
        ``omega_rel``, ``passed``.
    """
    from dataclasses import replace

    from ..fit import load_fit

    here = os.path.dirname(__file__)
    root = os.path.abspath(os.path.join(here, "..", ".."))
    cohort_config = cohort_config or os.path.join(root, "configs", "cohorts",
                                                  "als_clinic_v1.toml")
    truth_csv = truth_csv or os.path.join(root, "data", "synthetic", "als_clinic_200_truth.csv")
    fit = load_fit(fit_folder)
    pop = fit.population
    by = {q.name: q for q in fit.parameters}
    held = [replace(by[k], scale="log") for k in ("glial_ratio", "Tmax")]
    typ, om = truth_on_fit_scale(cohort_config, [by["k0"], by["eD"], *held],
                                 n_draws=200_000, seed=1)
    sample = sample_population(truth_csv)
    onset = onset_shift_of_fit(fit, n=n_onset, seed=seed)
    # the onset shift's typical truth: T of the fit's model at the generator's typical values
    problem = _fit_problem(fit)
    from ..fit._anchor import anchor_times

    row = np.array(fit.theta[0], dtype=float)
    for k in ("k0", "eD", "glial_ratio", "Tmax"):
        row[list(fit.parameter_names).index(k)] = typ[k]
    T_true = float(anchor_times(problem, row[None, :problem.P]).T[0])
    names = list(pop.omega_names)
    omega = np.asarray(pop.omega, dtype=float)
    truths = {k: (typ[k], om[k]) for k in ("k0", "eD")}      # (typical, Omega)
    # the cohort's per-patient observation offsets (log-normal factors exp(subject_sd * z) on
    # an observable), where the fit gives the parameter that multiplies that observable a
    # random effect with an estimated variance: typical truth the model's own value (the
    # offset has median 1), Omega truth subject_sd^2
    specs = {o.name: o for o in _as_config(cohort_config).observables}
    for k, obs in OFFSET_PARAMETERS.items():
        omega_se = pop.omega_se.get(k) if k in names else None
        if obs in specs and omega_se is not None and np.isfinite(omega_se):
            truths[k] = (float(fit.model.defaults[fit.model.parameter_index(k)]),
                         specs[obs].subject_sd ** 2)
    numbers = {}
    for k, (truth, omega_truth) in truths.items():
        est = float(pop.fixed_effects[k])
        se = pop.fixed_effects_se.get(k)
        se = float("nan") if se is None else float(se)
        numbers[k] = {"estimate": est, "truth": truth, "rse": 100 * se / est,
                      "omega": float(omega[names.index(k), names.index(k)]),
                      "omega_truth": omega_truth}
    numbers["onset shift"] = {"estimate": onset["typical"], "truth": T_true,
                              "rse": onset["rse"], "omega": onset["variance"],
                              "omega_truth": sample.variance("time_offset"),
                              "gmean": onset["gmean"],
                              "gmean_truth": sample.typical["time_offset"]}
    for v in numbers.values():
        v["rel"] = v["estimate"] / v["truth"] - 1
        v["omega_rel"] = v["omega"] / v["omega_truth"] - 1
        v["passed"] = bool(abs(v["rel"]) < 0.10 and v["rse"] < 25.0
                           and abs(v["omega_rel"]) < 0.30)
    lines = ["| quantity | truth | estimate | rel. error | RSE % | Omega truth | Omega "
             "estimate | Omega rel. error | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    label = {"k0": "k0 (pace, reference covariates)", "eD": "eD",
             "onset shift": "onset shift (derived, months)",
             **{k: f"{k} ({obs} offset)" for k, obs in OFFSET_PARAMETERS.items()}}
    for k, v in numbers.items():
        lines.append(f"| {label[k]} | {v['truth']:.4g} | {v['estimate']:.4g} | "
                     f"{100 * v['rel']:+.1f} % | {v['rse']:.1f} | {v['omega_truth']:.3g} | "
                     f"{v['omega']:.3g} | {100 * v['omega_rel']:+.1f} % | "
                     f"{'pass' if v['passed'] else 'FAIL'} |")
    o = numbers["onset shift"]
    lines += ["", f"Onset shift across patients drawn from the fitted population "
                  f"({onset['n']} drawn, {onset['lost']} without onset by the window's end): "
                  f"geometric mean {o['gmean']:.3g} months (the cohort's patients: "
                  f"{o['gmean_truth']:.3g}), Var(log) {o['omega']:.3g} "
                  f"({o['omega_truth']:.3g}). Held: glial_ratio {by['glial_ratio'].value:g} "
                  f"(generator {typ['glial_ratio']:.3g}), Tmax {by['Tmax'].value:g} "
                  f"(generator {typ['Tmax']:.3g})."]
    if individual is not None:
        ind = _per_subject_summary(individual, ("k0", "kA", "eD", "Tmax", "time_offset"))
        gen = generating_population(cohort_config, n_draws=200_000, seed=1)
        lines += ["", "| quantity | truth (marginal) | per-subject fit: geometric mean | "
                      "Var(log) across subjects (truth) | median RSE % | no SE | population "
                      "fit: estimate | RSE % | Omega |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        rows = {"k0": ("k0", gen.typical["k0"], gen.variance("k0")),
                "eD": ("eD", gen.typical["eD"], gen.variance("eD")),
                "onset shift": ("time_offset", sample.typical["time_offset"],
                                sample.variance("time_offset"))}
        for k, (col, t, tv) in rows.items():
            s_ = ind.get(col)
            v = numbers[k]
            if s_ is None:
                continue
            lines.append(f"| {k} | {t:.4g} | {s_['gmean']:.4g} | {s_['variance']:.3g} "
                         f"({tv:.3g}) | {s_['median_rse']:.3g} | {s_['no_se']} | "
                         f"{v['estimate']:.4g} | {v['rse']:.1f} | {v['omega']:.3g} |")
    return "\n".join(lines) + "\n", numbers


def main() -> None:  # pragma: no cover - prints the table of the module docstring
    here = os.path.dirname(__file__)
    root = os.path.abspath(os.path.join(here, "..", ".."))
    cohort = os.path.join(root, "configs", "cohorts", "als_clinic_v1.toml")
    gen = generating_population(cohort)
    smp = sample_population(os.path.join(root, "data", "synthetic",
                                         "als_clinic_200_truth.csv"))
    print("parameter    typical  Var(log) marg  cond | sample typical  Var(log)")
    for n in FITTED:
        print(f"{n:<12} {gen.typical[n]:.3g}  {gen.variance(n):.3g}  "
              f"{gen.variance(n, True):.3g} | {smp.typical[n]:.3g}  {smp.variance(n):.3g}")
    print(f"onset shift  -  -  - | {smp.typical['time_offset']:.3g}  "
          f"{smp.variance('time_offset'):.3g}")
    print(f"corr(log k0, log kA): marginal {gen.correlation('k0', 'kA'):.3f}, conditional "
          f"{gen.correlation('k0', 'kA', True):.3f}; sample {smp.correlation('k0', 'kA'):.3f}")
    from ..fit.config import FitParameter

    ratio = FitParameter("glial_ratio", "model", "population", 3.5, 0.3, 30.0, "log")
    typ, om = truth_on_fit_scale(cohort, [ratio], n_draws=400_000, seed=0)
    print(f"glial_ratio = kA/k0: typical {typ['glial_ratio']:.3g}, Var(log) "
          f"{om['glial_ratio']:.3g}")


if __name__ == "__main__":  # pragma: no cover
    import sys

    if len(sys.argv) > 1:
        # python -m progression.als.population_truth FIT_FOLDER [INDIVIDUAL_FOLDER]
        text, _ = target_table(sys.argv[1], individual=sys.argv[2] if len(sys.argv) > 2
                               else None)
        print(text)
    else:
        main()
