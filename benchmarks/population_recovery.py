"""Recovery of the shipped ALS population design from replicate synthetic clinic cohorts.

Each replicate draws a cohort of virtual ALS patients from the generator of the shipped data,
``configs/cohorts/als_clinic_v1.toml`` (visit schedule, missed visits, informative dropout,
CRP assay floor, Treg % at some visits; the replicate's own seed), adds what the fit config's
data need (one ``onset_gap = 0`` row per patient at its reported onset when the config has an
``[error.onset_gap]`` section, as :mod:`progression.als.onset_rows` does for the shipped
file) and fits it with the shipped population config
``configs/als_synthetic_population.toml`` (or ``--config``), estimator options as there
unless ``--option`` overrides them. The fit is compared with the generating population on
the fit's scales:

- population parameters that the generator varies or derives (the pace ``k0`` at the
  reference covariates with its conditional Omega, ``eD``, ``glial_ratio`` = kA/k0 if
  estimated): :func:`progression.als.population_truth.truth_on_fit_scale` (Monte Carlo of the
  generator's own draws, before enrolment selection);
- ``Q0``, ``nfl_scale`` (or ``kappa_nfl``, the shipped config's until 2026-12-02) and
  ``fT0`` if it has a random effect (they carry the per-patient CRP, NfL and Treg % offsets
  of the generator's observation model): typical value the model's default, Omega the
  offset's variance (``subject_sd^2``; exact for Q0, nfl_scale and fT0, approximate for
  kappa_nfl because the NfL offset also multiplies the background ``nfl_bg``);
- a population ``time_offset`` with a random effect (the onset shift): mean and variance of
  ``log onset_model_time`` over the replicate's own patients (it has no generating parameter);
- covariate coefficients of the pace: the generator's effects (categorical ``exp(b) - 1``;
  the age effect acts on onset age in the generator, on enrolment age in the fit:
  approximate).

Per replicate, one JSON line is appended to ``<out>.jsonl`` (estimates, SEs, truth, relative
errors, whether each 95 % Wald interval covers the truth, seconds; or the error of a failed
fit), so an interrupted study keeps its replicates and a re-run with the same config, options
and ``n`` skips the seeds already done. Wald intervals are on the estimation scale: the
typical value's scale (``theta NAME`` of the covariance step), ``log omega^2`` (delta method
from the variance's SE) and the coefficient itself. ``<out>.md`` summarises: per parameter the
median relative error, median absolute relative error and coverage, failures, seconds per fit.

Run (two worker processes, one numba thread each, low priority; resumable)::

    nice -n 10 python benchmarks/population_recovery.py --replicates 50 --workers 2 \\
        --out benchmarks/results/population_recovery_pace
    python benchmarks/population_recovery.py --summary \\
        --out benchmarks/results/population_recovery_pace
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from progression.als import population_truth

__all__ = ["read_config", "truth_for_config", "simulate_replicate", "fit_replicate", "score",
           "run_replicate", "summarise", "markdown", "run", "run_study", "load_lines"]

ROOT = Path(__file__).resolve().parents[1]
FIT_CONFIG = ROOT / "configs" / "als_synthetic_population.toml"
COHORT_CONFIG = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"
RESULTS = ROOT / "benchmarks" / "results" / "population_recovery_pace"

#: Fit parameters that carry an observable's per-patient offset in the generator:
#: (observable of the cohort config, exact?): the package's exact ones, and kappa_nfl (the
#: shipped config's until 2026-12-02; the offset also multiplies the background nfl_bg).
OFFSET_PARAMETERS = {**{k: (obs, True) for k, obs in population_truth.OFFSET_PARAMETERS.items()},
                     "kappa_nfl": ("NfL", False)}
#: The fit's categorical levels and the generator's effect names.
GENERATOR_EFFECT = {"age": "age", "site_of_onset=bulbar": "bulbar", "c9orf72=1": "c9orf72"}
#: The issue's acceptance figures.
TARGETS = {"typical_median_rel_error": 0.05, "omega_median_rel_error": 0.20,
           "coverage": (0.90, 0.98)}
LEVEL = 0.95


def read_config(path=FIT_CONFIG, options: dict | None = None, text: str | None = None):
    """The fit config, with ``[estimator]`` options overridden by ``options``. ``text``: the
    config's TOML as read at the start of the study (relative paths from ``path``'s folder),
    so that every replicate is fitted with the same config even if the file changes."""
    from progression.fit.config import parse_fit_config, read_fit_config

    path = Path(path)
    if text is None:
        cfg = read_fit_config(path, check_data=False)
    else:
        cfg = parse_fit_config(text, source=str(path), base_dir=path.parent,
                               check_data=False)
    if options:
        cfg = cfg.replace(options={**cfg.options, **options})
    return cfg


def _population_parameters(cfg) -> list:
    return [p for p in cfg.parameters if p.estimate == "population" and p.kind != "error"]


def truth_for_config(cfg, cohort_config=COHORT_CONFIG, n_draws: int = 200_000) -> dict:
    """Replicate-independent truths of ``cfg``'s population parameters.

    Returns
    -------
    dict
        ``typical`` and ``omega`` (natural-scale typical values; variances on the estimation
        scale; Omega only for parameters with a random effect), ``coefficients``,
        ``approximate`` (names whose truth is approximate) and ``per_replicate`` (names whose
        truth comes from each replicate's patients: the onset shift).
    """
    from progression.als.cohort_config import _as_config
    from progression.als.population_truth import DERIVED, truth_on_fit_scale
    from progression.model import load_model

    gen = _as_config(cohort_config)
    varied = {p.name for p in gen.parameters} | set(DERIVED)
    pars = _population_parameters(cfg)
    direct = [p for p in pars if p.name in varied]
    typ, om = truth_on_fit_scale(gen, direct, n_draws=n_draws, seed=1) if direct else ({}, {})
    out = {"typical": {}, "omega": {}, "coefficients": {}, "approximate": [],
           "per_replicate": []}
    model = cfg.model if hasattr(cfg.model, "parameter_table") else load_model(cfg.model)
    defaults = dict(zip(model.parameter_names, np.asarray(model.parameter_table())[0],
                        strict=True))
    for p in pars:
        if p.name in typ:
            out["typical"][p.name] = typ[p.name]
            if p.eta is not None:
                out["omega"][p.name] = om[p.name]
        elif p.name in OFFSET_PARAMETERS:
            obs, exact = OFFSET_PARAMETERS[p.name]
            out["typical"][p.name] = float(defaults[p.name])
            if p.eta is not None:
                sd = {o.name: o.subject_sd for o in gen.observables}[obs]
                out["omega"][p.name] = float(sd) ** 2
            if not exact:
                out["approximate"].append(p.name)
        elif p.kind == "offset" and p.eta is not None:
            out["per_replicate"].append(p.name)
        for eff in p.covariates:
            for label, coef in _coefficient_truths(p.name, eff, gen).items():
                out["coefficients"][label] = coef
                if label.endswith("~age"):
                    out["approximate"].append(label)
    return out


def _coefficient_truths(name: str, eff, gen) -> dict:
    """The generator's covariate effect on ``name`` in the fit's coefficient labels
    (``NAME~COV`` for continuous effects, ``NAME~COV=LEVEL`` for categorical ones)."""
    spec = {p.name: p for p in gen.parameters}.get(name)
    effects = dict(spec.effects) if spec is not None else {}
    found = {}
    for fit_label, gen_name in GENERATOR_EFFECT.items():
        cov, _, level = fit_label.partition("=")
        if cov != eff.covariate or gen_name not in effects:
            continue
        if eff.effect == "exponential" and not level:
            found[f"{name}~{cov}"] = float(effects[gen_name])
        elif eff.effect == "categorical" and level:
            found[f"{name}~{fit_label}"] = math.expm1(float(effects[gen_name]))
    return found


def simulate_replicate(n: int, seed: int, cfg, cohort_config=COHORT_CONFIG):
    """(Cohort with what ``cfg``'s data need, per-replicate truths, generator notes, the
    patients' true model times of clinical onset by subject)."""
    from progression.als.synthetic import synthetic_cohort

    cohort, truth = synthetic_cohort(Path(cohort_config), n=int(n), seed=int(seed))
    if "onset_gap" in cfg.errors:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from population import with_onset_rows

        cohort = with_onset_rows(cohort)
    per = {}
    for p in _population_parameters(cfg):
        if p.kind == "offset" and p.eta is not None:
            x = np.log(np.asarray(truth["onset_model_time"], dtype=float))
            per[p.name] = {"typical": float(math.exp(x.mean())), "omega": float(x.var())}
    onset = dict(zip(truth.subjects, np.asarray(truth["onset_model_time"], dtype=float),
                     strict=True))
    return cohort, per, list(cohort.notes), onset


def fit_replicate(cohort, cfg):
    """Fit ``cfg`` to ``cohort`` in memory; (FitResult, seconds)."""
    from progression.fit.estimate import fit

    t = time.perf_counter()
    res = fit(cfg, data=cohort)
    return res, time.perf_counter() - t


def _wald(est_x: float, true_x: float, se_x: float, z: float):
    if not (np.isfinite(se_x) and se_x > 0 and np.isfinite(est_x)):
        return None
    return bool(abs(est_x - true_x) <= z * se_x)


def score(pop, truth: dict, level: float = LEVEL) -> dict:
    """Estimates, SEs, relative errors and Wald coverage of one population fit.

    ``truth``: ``typical``, ``omega``, ``coefficients`` as :func:`truth_for_config` (merged
    with the replicate's own onset-shift truth)."""
    from scipy.stats import norm

    from progression.fit.transforms import to_internal

    z = float(norm.ppf(0.5 + level / 2))
    names = list(pop.covariance_names or ())
    cov = None if pop.covariance is None else np.asarray(pop.covariance, dtype=float)

    def se_of(label):
        if cov is None or label not in names:
            return math.nan
        v = cov[names.index(label), names.index(label)]
        return math.sqrt(v) if np.isfinite(v) and v >= 0 else math.nan

    out = {"typical": {}, "omega": {}, "coefficients": {}}
    # typical values held at their config value (value_fixed): SE 0, scored as held
    fixed_typical = set(getattr(pop, "fixed_typical", ()) or ())
    for p, t in truth["typical"].items():
        e = float(pop.fixed_effects[p])
        lo, hi = pop.bounds[p]
        sc = pop.scales[p]
        ex, tx = (float(to_internal(np.array([v]), sc, lo, hi)[0]) for v in (e, t))
        se = se_of(f"theta {p}")
        held = p in fixed_typical
        out["typical"][p] = {"estimate": e, "truth": t, "rel_error": e / t - 1.0,
                             "se_scale": se, "held": held,
                             "covered": None if held else _wald(ex, tx, se, z)}
    om_names = list(pop.omega_names)
    om = np.asarray(pop.omega, dtype=float)
    held = {q for b in (getattr(pop, "omega_blocks", None) or ()) if b.get("fixed")
            for q in b["parameters"]}
    for p, t in truth["omega"].items():
        k = om_names.index(p)
        e = float(om[k, k])
        se_nat = float(pop.omega_se.get(p, math.nan))
        se = se_nat / e if e > 0 else math.nan       # delta method: SE of log omega^2
        out["omega"][p] = {"estimate": e, "truth": t, "rel_error": e / t - 1.0,
                           "se": se_nat, "covered": (None if p in held else _wald(
                               math.log(e), math.log(t), se, z)), "held": p in held}
    coefs = dict(getattr(pop, "coefficients", {}) or {})
    for label, t in truth.get("coefficients", {}).items():
        if label not in coefs:
            continue
        e = float(coefs[label])
        se = se_of(f"coef {label}")
        out["coefficients"][label] = {"estimate": e, "truth": t, "abs_error": e - t,
                                      "se": se, "covered": _wald(e, t, se, z)}
    return out


def onset_shift(res, onset: dict) -> dict | None:
    """An anchored (or estimated) onset shift against the patients' true model times of
    clinical onset: each subject's fitted ``time_offset + onset_time`` (the fit's model time of
    the reported onset; ``T_i`` itself for an anchored shift) vs ``onset_model_time``."""
    try:
        t_fit = np.asarray(res.time_offsets, dtype=float)
        cov = np.array([d.offset_covariate for d in res.designs], dtype=float)
        q = res.parameter_names.index("time_offset")
        t_fit = t_fit - res.parameters[q].factor * cov
    except (ValueError, AttributeError, TypeError):
        return None
    true = np.array([onset[s] for s in res.subject_ids], dtype=float)
    ok = np.isfinite(t_fit) & (t_fit > 0)
    rel = t_fit[ok] / true[ok] - 1.0
    lf, lt = np.log(t_fit[ok]), np.log(true[ok])
    return {"subjects": int(ok.sum()), "median_rel_error": float(np.median(rel)),
            "median_abs_rel_error": float(np.median(np.abs(rel))),
            "typical_rel_error": float(np.exp(lf.mean() - lt.mean()) - 1.0),
            "var_log_rel_error": float(lf.var() / lt.var() - 1.0)}


def run_replicate(seed: int, n: int, config_path: str, options: dict, static: dict,
                  text: str | None = None) -> dict:
    """Simulate, fit and score one replicate; one JSON-able line (``error`` on failure)."""
    line = {"seed": int(seed), "n": int(n), "key": static["key"],
            "started": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "load": os.getloadavg()[0]}
    try:
        cfg = read_config(config_path, options, text)
        t = time.perf_counter()
        cohort, per, notes, onset = simulate_replicate(n, seed, cfg)
        line["simulation_seconds"] = time.perf_counter() - t
        line["observations"] = int(len(cohort.observations()["time"]))
        truth = {"typical": dict(static["typical"]), "omega": dict(static["omega"]),
                 "coefficients": dict(static["coefficients"])}
        for p, v in per.items():
            truth["typical"][p] = v["typical"]
            truth["omega"][p] = v["omega"]
        res, secs = fit_replicate(cohort, cfg)
        pop = res.population
        line["seconds"] = secs
        line["score"] = score(pop, truth)
        line["sigma"] = {k: float(v) for k, v in pop.sigma.items()}
        line["onset_shift"] = onset_shift(res, onset)
        line["ofv"] = float(pop.ofv)
        line["converged"] = bool(pop.converged)
        line["iterations"] = int(pop.iterations)
        line["covariance_ok"] = bool(pop.covariance is not None
                                     and np.all(np.isfinite(np.diag(pop.covariance))))
        line["warnings"] = [str(w) for w in (getattr(res, "warnings", None) or [])][:5]
    except Exception as exc:  # a failed fit is a result of the study: recorded, not raised
        line["error"] = f"{type(exc).__name__}: {exc}"
        line["traceback"] = traceback.format_exc()[-2000:]
    line["finished"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return line


def load_lines(path: Path, key: str | None = None) -> list[dict]:
    """The replicate lines of ``path`` (only those of ``key`` when given); a torn last line
    (interrupted write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        try:
            d = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if key is None or d.get("key") == key:
            out.append(d)
    return out


def summarise(lines: list[dict]) -> dict:
    """Medians over the successful replicates, coverage per parameter, failures."""
    ok = [x for x in lines if "error" not in x]
    s: dict = {"replicates": len(lines), "succeeded": len(ok),
               "failed": [{"seed": x["seed"], "error": x["error"]} for x in lines
                          if "error" in x],
               "typical": {}, "omega": {}, "coefficients": {}}
    if not ok:
        return s
    for part in ("typical", "omega"):
        for p in ok[0]["score"][part]:
            r = np.array([x["score"][part][p]["rel_error"] for x in ok])
            c = [x["score"][part][p]["covered"] for x in ok
                 if x["score"][part][p]["covered"] is not None]
            s[part][p] = {"median_rel_error": float(np.median(r)),
                          "median_abs_rel_error": float(np.median(np.abs(r))),
                          "truth_median": float(np.median(
                              [x["score"][part][p]["truth"] for x in ok])),
                          "covered": int(sum(c)), "with_se": len(c),
                          "held": int(sum(bool(x["score"][part][p].get("held"))
                                          for x in ok))}
    for label in ok[0]["score"]["coefficients"]:
        v = [x["score"]["coefficients"][label] for x in ok
             if label in x["score"]["coefficients"]]
        c = [d["covered"] for d in v if d["covered"] is not None]
        s["coefficients"][label] = {
            "truth": v[0]["truth"], "median_estimate": float(np.median([d["estimate"]
                                                                        for d in v])),
            "median_abs_error": float(np.median([abs(d["abs_error"]) for d in v])),
            "covered": int(sum(c)), "with_se": len(c)}
    on = [x["onset_shift"] for x in ok if x.get("onset_shift")]
    if on:
        s["onset_shift"] = {k: float(np.median([d[k] for d in on]))
                            for k in ("median_rel_error", "median_abs_rel_error",
                                      "typical_rel_error", "var_log_rel_error")}
        s["onset_shift"]["replicates"] = len(on)
    profile = profile_coverage(ok)
    if profile:
        s["profile"] = profile
    secs = np.array([x["seconds"] for x in ok])
    s["seconds_per_fit"] = {"median": float(np.median(secs)), "min": float(secs.min()),
                            "max": float(secs.max())}
    s["with_covariance"] = int(sum(x.get("covariance_ok", False) for x in ok))
    s["first"] = min(x["started"] for x in lines)
    s["last"] = max(x["finished"] for x in lines)
    return s


def profile_coverage(lines: list[dict], level: float = LEVEL) -> dict:
    """Coverage of the profile-likelihood interval per parameter, from the lines' ``lr``
    records (a refit with the parameter held at its truth, ``population_recovery_model.py
    --lr``): the interval at ``level`` covers the truth exactly when ``OFV(truth) - OFV_hat``
    is at most the chi-square(1) quantile."""
    from scipy.stats import chi2

    crit = float(chi2.ppf(level, 1))
    out: dict = {}
    for x in lines:
        for name, r in (x.get("lr") or {}).items():
            d = out.setdefault(name, {"threshold": crit, "scored": 0, "covered": 0,
                                      "failed": 0, "negative": 0, "deltas": []})
            if "delta_ofv" not in r or not math.isfinite(r["delta_ofv"]):
                d["failed"] += 1
                continue
            d["scored"] += 1
            d["covered"] += int(r["delta_ofv"] <= crit)
            d["negative"] += int(r["delta_ofv"] < 0)
            d["deltas"].append(float(r["delta_ofv"]))
    for d in out.values():
        d["deltas"].sort()
        d["median"] = float(np.median(d["deltas"])) if d["deltas"] else math.nan
    return out


def profile_lines(s: dict) -> list[str]:
    """The summary page's table of profile-likelihood coverage (empty without ``lr``)."""
    if not s.get("profile"):
        return []
    out = ["", "Profile-likelihood intervals (each replicate refitted with the parameter held "
           "at its truth, everything else estimated; the 95 % interval covers the truth when "
           "OFV(truth) - OFV_hat <= 3.84; both OFVs by importance sampling, so small "
           "negative statistics are its Monte Carlo noise):", "",
           "| parameter | profile coverage | median statistic | below zero | above 3.84 | "
           "failed refits |", "|---|---:|---:|---:|---:|---:|"]
    for name, d in s["profile"].items():
        n = d["scored"]
        cov = f"{d['covered']}/{n} = {d['covered'] / n:.0%}" if n else "n/a"
        high = ", ".join(f"{v:.2f}" for v in d["deltas"] if v > d["threshold"]) or "none"
        out.append(f"| {name} | {cov} | {d['median']:.2f} | {d['negative']} | {high} | "
                   f"{d['failed']} |")
    return out


def markdown(meta: dict, s: dict) -> str:
    """The summary page of one study (one config, options and n)."""
    lines = [f"# Population recovery: {meta['title']}", "",
             f"Command: `{meta['command']}`. Config `{meta['config']}` (SHA-256 "
             f"{meta['config_sha'][:12]}), generator `{meta['cohort_config']}`, "
             f"{meta['n']} patients per replicate, seeds from {meta['seed0']}; estimator "
             f"option overrides {json.dumps(meta['options'])}. Results: `{meta['jsonl']}` "
             f"(one line per replicate).", ""]
    if not s.get("succeeded"):
        lines.append(f"No replicate finished yet ({s.get('replicates', 0)} recorded, "
                     f"{len(s.get('failed', []))} failed).")
        return "\n".join(lines) + "\n"
    lines += [f"Replicates: {s['succeeded']} fitted, {len(s['failed'])} failed "
              f"({s['first']} to {s['last']}); covariance step with finite SEs in "
              f"{s['with_covariance']} of {s['succeeded']}. Seconds per fit: median "
              f"{s['seconds_per_fit']['median']:.0f} (min {s['seconds_per_fit']['min']:.0f}, "
              f"max {s['seconds_per_fit']['max']:.0f}) on 2 cores shared with other jobs.", "",
              "| parameter | truth (median over replicates) | median rel. error | "
              "median abs rel. error | 95 % Wald coverage |", "|---|---:|---:|---:|---:|"]

    def cov(d):
        return "n/a (no SEs)" if not d["with_se"] else (
            f"{d['covered']}/{d['with_se']} = {d['covered'] / d['with_se']:.0%}")

    approx = set(meta.get("approximate", ()))
    for part, what in (("typical", "typical value"), ("omega", "omega^2")):
        for p, d in s[part].items():
            mark = " (approx. truth)" if p in approx else ""
            if d.get("held"):
                mark += (" (held, not estimated)" if d["held"] == s["succeeded"]
                         else f" (held in {d['held']} of {s['succeeded']})")
            lines.append(f"| {p} {what}{mark} | {d['truth_median']:.4g} | "
                         f"{d['median_rel_error']:+.1%} | {d['median_abs_rel_error']:.1%} | "
                         f"{cov(d)} |")
    if s["coefficients"]:
        lines += ["", "| covariate coefficient | truth | median estimate | median abs error | "
                  "95 % Wald coverage |", "|---|---:|---:|---:|---:|"]
        for label, d in s["coefficients"].items():
            mark = " (approx. truth)" if label in approx else ""
            lines.append(f"| {label}{mark} | {d['truth']:.4g} | {d['median_estimate']:.4g} | "
                         f"{d['median_abs_error']:.3g} | {cov(d)} |")
    lines += profile_lines(s)
    if s.get("onset_shift"):
        d = s["onset_shift"]
        lines += ["", f"Onset shift (each patient's fitted model time of its reported onset "
                      f"vs its true onset_model_time; medians over {d['replicates']} "
                      f"replicates): per-patient median relative error "
                      f"{d['median_rel_error']:+.1%}, median absolute "
                      f"{d['median_abs_rel_error']:.1%}; "
                      f"geometric mean {d['typical_rel_error']:+.1%}, variance of the logs "
                      f"{d['var_log_rel_error']:+.1%}."]
    if s["failed"]:
        lines += ["", "Failed fits: " + "; ".join(f"seed {f['seed']}: {f['error'][:160]}"
                                                  for f in s["failed"])]
    lines += ["", f"Issue 11 targets (>= 50 replicates): typical values median relative error "
                  f"<= {TARGETS['typical_median_rel_error']:.0%}, Omega diagonal <= "
                  f"{TARGETS['omega_median_rel_error']:.0%}, 95 % intervals covering the truth "
                  f"in {TARGETS['coverage'][0]:.0%}-{TARGETS['coverage'][1]:.0%} of replicates.",
              "", "Truths: " + meta["truth_note"]]
    notes = [NOTES["kappa_nfl"]] if "kappa_nfl" in approx else []
    lines += ["", "Notes:", ""] + [f"- {n}" for n in (*notes, NOTES["misspecified"])]
    return "\n".join(lines) + "\n"


#: What the measured misses are, printed under the table: the kappa_nfl note when the study's
#: config puts the NfL offset on kappa_nfl (the shipped config until 2026-12-02), and what
#: the fit model lacks of the generator.
NOTES = {
    "kappa_nfl": "kappa_nfl's Omega truth (the NfL offset's variance 0.3^2 = 0.09) is "
    "approximate: the generator's offset multiplies NfL = nfl_bg + kappa_nfl lam N "
    "including the background 15 pg/mL, a share f = 15/NfL of the value (median 0.17 in a "
    "replicate: NfL median 90 pg/mL), so the random effect on kappa_nfl that reproduces it "
    "has a log-variance larger by ~1/(1 - f)^2 = 1.44-1.60, i.e. 0.13-0.14: the fitted "
    "+43-57 % are that, not an estimator error.",
    "misspecified": "What the fit model lacks of the generator: Tmax varies between patients "
    "(CV 8 %) but is held at 0.9, kA = glial_ratio k0 for every patient while the generator "
    "gives k0 and kA individual terms (log-SD 0.4 of kA/k0), and dropout depends on each "
    "patient's course; eD, seen only through CRP and Treg % (about one value per patient), "
    "is where unmodelled between-patient variation of those courses lands.",
}

TRUTH_NOTE = ("typical values and Omega of parameters the generator varies: "
              "progression.als.population_truth.truth_on_fit_scale (at the reference "
              "covariates, conditional Omega, before enrolment selection); Q0 / nfl_scale: the "
              "model default and the CRP / NfL per-patient offset variance; an onset shift "
              "with a random effect: log onset_model_time of the replicate's patients; "
              "coefficients: the generator's effects (categorical exp(b) - 1).")


# ------------------------------------------------------------------ alternative truths
# The pace parametrisation gives every patient kA = glial_ratio * k0, while the generator
# draws log k0 and log kA with a shared pace factor (SD 0.6) AND individual terms (SD 0.3
# each): the fitted pace of a patient is a compromise between its k0 and kA / glial_ratio, so
# Var(log k0) is not the only candidate truth of its Omega. The study's summary also shows
# the errors against (a) the replicate's enrolled patients (their own typical values and
# conditional variances: no selection or sampling error in the truth) and (b) the "pace" =
# mean of log k0 and log(kA / glial_ratio) (equal weights: the individual terms then add
# 0.3^2 / 2 instead of 0.3^2), in the population and in the enrolled patients.


def pace_log(k0, kA, ratio: float) -> np.ndarray:
    """The reference pace on the log scale: mean of ``log k0`` and ``log(kA / ratio)``."""
    return 0.5 * (np.log(np.asarray(k0, dtype=float))
                  + np.log(np.asarray(kA, dtype=float) / ratio))


def _glial_ratio(cfg) -> float:
    return float(next(p.value for p in cfg.parameters if p.name == "glial_ratio"))


def population_pace_truth(cfg, cohort_config=COHORT_CONFIG, n_draws: int = 200_000,
                          seed: int = 1) -> tuple[float, float]:
    """(typical value, conditional variance) of the reference pace before enrolment, by Monte
    Carlo with the generator's own draws (the same draws as ``truth_on_fit_scale`` with the
    same seed)."""
    from progression.als.cohort_config import _as_config
    from progression.als.synthetic import draw_covariates
    from progression.virtual.synthesis import draw_parameters

    gen = _as_config(cohort_config)
    rng = np.random.default_rng(seed)
    terms = draw_covariates(gen, rng, n_draws)[4]
    _, varied = draw_parameters(gen.parameters, gen.factors, gen.fixed, terms, rng, n_draws)
    y = pace_log(varied["k0"], varied["kA"], _glial_ratio(cfg))
    X = np.column_stack([np.ones(n_draws)] + [terms[k] for k in sorted(terms)])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.exp(beta[0])), float(np.var(y - X @ beta))


def _design(cohort, effects) -> np.ndarray:
    """(m, 1 + K) regression design of the fit's covariate model on a cohort's covariates."""
    cols = [np.ones(len(cohort.subjects))]
    for eff in effects:
        v = np.asarray(cohort.covariate(eff.covariate))
        if eff.effect == "categorical":
            lab = np.array([f"{x:g}" if isinstance(x, (float, int, np.number)) else str(x)
                            for x in v])
            groups = dict(eff.groups) if eff.groups else {
                g: (g,) for g in sorted(set(lab))}
            ref = str(eff.reference)
            for g, members in groups.items():
                if g != ref and ref not in members:
                    cols.append(np.isin(lab, [str(m) for m in members]).astype(float))
        else:
            cols.append(np.asarray(v, dtype=float) - float(eff.reference))
    return np.column_stack(cols)


def sample_truths(seed: int, n: int, cfg) -> dict:
    """The replicate's enrolled patients' own typical values and (conditional) variances on
    the fit's log scale, for the population parameters the generator varies, and the pace."""
    from progression.als.synthetic import synthetic_cohort

    cohort, truth = synthetic_cohort(COHORT_CONFIG, n=int(n), seed=int(seed))
    varied = set(truth.columns)
    out = {}
    for p in _population_parameters(cfg):
        if p.name not in varied or p.scale != "log":
            continue
        X = _design(cohort, p.covariates)
        y = np.log(np.asarray(truth[p.name], dtype=float))
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        out[p.name] = {"typical": float(np.exp(beta[0])), "omega": float(np.var(y - X @ beta))}
        if p.name == "k0":
            y = pace_log(truth["k0"], truth["kA"], _glial_ratio(cfg))
            beta, *_ = np.linalg.lstsq(X, y, rcond=None)
            out["pace"] = {"typical": float(np.exp(beta[0])),
                           "omega": float(np.var(y - X @ beta))}
    return out


def alternative_table(lines: list[dict], cfg, cache: Path | None, n: int) -> list[str]:
    """Markdown rows: the errors of k0 and the other generator-varied parameters against the
    enrolled patients' own values and, for k0, against the reference pace (``cache``: JSON of
    the per-seed sample truths, reused)."""
    ok = sorted((x for x in lines if "error" not in x), key=lambda x: x["seed"])
    if not ok or "k0" not in ok[0]["score"]["typical"]:
        return []
    done = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    for x in ok:
        if str(x["seed"]) not in done:
            done[str(x["seed"])] = sample_truths(x["seed"], n, cfg)
    if cache is not None:
        cache.write_text(json.dumps(done, indent=1))
    pop_pace = population_pace_truth(cfg)
    rows = ["| quantity | truth | median of truth | median rel. error | median abs rel. error "
            "| 95 % coverage |", "|---|---|---:|---:|---:|---:|"]
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + LEVEL / 2))
    for part, what in (("typical", "typical value"), ("omega", "omega^2")):
        for p in ("k0", "eD"):
            if p not in ok[0]["score"][part]:
                continue
            cases = [(f"{p} {what}", "enrolled patients", p, None)]
            if p == "k0":
                cases += [(f"k0 {what}", "pace, population", None, pop_pace),
                          (f"k0 {what}", "pace, enrolled patients", "pace", None)]
            for label, kind, key, fixed in cases:
                rel, cov, tv = [], [], []
                for x in ok:
                    d = x["score"][part][p]
                    k = 0 if part == "typical" else 1
                    t = fixed[k] if fixed is not None else done[str(x["seed"])][key][part]
                    tv.append(t)
                    rel.append(d["estimate"] / t - 1.0)
                    if part == "typical":
                        se = d.get("se_scale", math.nan)
                        c = _wald(math.log(d["estimate"]), math.log(t), se, z)
                    else:
                        se = d["se"] / d["estimate"]
                        c = _wald(math.log(d["estimate"]), math.log(t), se, z)
                    if c is not None:
                        cov.append(c)
                r = np.array(rel)
                rows.append(f"| {label} | {kind} | {np.median(tv):.4g} | "
                            f"{np.median(r):+.1%} | {np.median(np.abs(r)):.1%} | "
                            f"{sum(cov)}/{len(cov)} |")
    return rows


def _path(out, suffix: str) -> Path:
    """``out`` + suffix (appended: ``out`` may itself contain dots)."""
    return Path(str(out) + suffix)


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# Config keys that shape the fit folder's diagnostics, not the estimates: a study resumes
# across edits of them (the treg_all study's first 27 replicates predate vpc_end_events).
OUTPUT_ONLY_KEYS = ("vpc_end_events",)


def _estimation_text(text: str) -> str:
    """The config text without its output-only keys and the comment block just above each."""
    lines = text.splitlines(keepends=True)
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if line.split("=")[0].strip() in OUTPUT_ONLY_KEYS:
            keep[i] = False
            j = i - 1
            while j >= 0 and lines[j].lstrip().startswith("#"):
                keep[j] = False
                j -= 1
    return "".join(line for line, k in zip(lines, keep, strict=True) if k)


def _key(text: str, options: dict, n: int) -> tuple[str, str]:
    """(study key, SHA-256 of the whole text): the key hashes the estimation-relevant text."""
    sha = hashlib.sha256(text.encode()).hexdigest()
    estimation_sha = hashlib.sha256(_estimation_text(text).encode()).hexdigest()
    blob = json.dumps({"config": estimation_sha, "options": options, "n": n}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16], sha


def _message(line: dict) -> str:
    """One replicate's progress line: its error, or its typical-value errors and SEs."""
    if "error" in line:
        return line["error"][:200]
    return (f"fit {line['seconds']:.0f} s, typical-value errors "
            + ", ".join(f"{p} {v['rel_error']:+.1%}"
                        for p, v in line["score"]["typical"].items())
            + f", SEs {'yes' if line['covariance_ok'] else 'no'}")


def run_study(replicate, args: tuple, *, replicates: int, seed0: int, key: str, meta: dict,
              out: Path | None, workers: int = 1, markdown_of=None,
              verbose: bool = True) -> tuple[dict, dict]:
    """The resumable replicate loop of the recovery studies.

    Parameters
    ----------
    replicate : callable
        ``replicate(seed, *args) -> dict``, one JSON-able line per replicate (``error`` on
        failure, else ``score``, ``seconds``, ``covariance_ok``), with ``"key": key``. A
        module-level function: with ``workers > 1`` it runs in spawned worker processes.
    args : tuple
        The replicate's other arguments (picklable).
    replicates, seed0 : int
        Seeds ``seed0 .. seed0 + replicates - 1``.
    key : str
        The study's key: lines of ``<out>.jsonl`` with another key (another config, options,
        ``n`` or truth) are not reused.
    meta : dict
        Written to ``<out>.meta.json`` and passed to ``markdown_of``.
    out : Path or None
        Results path without suffix; None: nothing written and nothing resumed.
    workers : int
        Worker processes (spawned; one numba thread each).
    markdown_of : callable, optional
        ``markdown_of(meta, summary) -> str`` for ``<out>.md`` (default :func:`markdown`).

    Returns
    -------
    (meta, summary) : the summary of every line of the study, old and new.
    """
    markdown_of = markdown_of or markdown
    jsonl = _path(out, ".jsonl") if out is not None else None
    done = load_lines(jsonl, key) if jsonl is not None else []
    have = {d["seed"] for d in done}
    seeds = [seed0 + r for r in range(replicates) if seed0 + r not in have]
    lines = list(done)

    def record(line):
        lines.append(line)
        if jsonl is not None:
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            with open(jsonl, "a") as fh:          # one write per line: a torn line is skipped
                fh.write(json.dumps(line) + "\n")
            _path(out, ".md").write_text(markdown_of(meta, summarise(lines)))
            _path(out, ".meta.json").write_text(json.dumps(meta, indent=1))
        if verbose:
            print(f"seed {line['seed']}: {_message(line)} [{len(lines)} of {replicates}]",
                  flush=True)

    if workers <= 1:
        for seed in seeds:
            record(replicate(seed, *args))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        # one numba thread per worker process: the workers share the machine's cores
        os.environ["NUMBA_NUM_THREADS"] = "1"
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(replicate, s, *args) for s in seeds]
            for f in cf.as_completed(futs):
                record(f.result())
    return meta, summarise(lines)


def run(replicates: int, n: int = 200, seed0: int = 1000, config=FIT_CONFIG,
        options: dict | None = None, out: Path | None = RESULTS, workers: int = 1,
        title: str = "shipped design", verbose: bool = True) -> tuple[dict, dict]:
    """Run (or resume) a study; returns (meta, summary). With ``out=None`` nothing is
    written and nothing resumed."""
    options = dict(options or {})
    config = Path(config).resolve()
    text = config.read_text()
    key, sha = _key(text, options, n)
    cfg = read_config(config, options, text)
    static = truth_for_config(cfg)
    static["key"] = key
    meta = {"title": title, "command": shlex.join(["python", *sys.argv]) if out else "run()",
            "config": _rel(config), "config_sha": sha, "cohort_config": str(
                COHORT_CONFIG.relative_to(ROOT)), "n": n, "seed0": seed0,
            "options": options, "key": key, "approximate": static["approximate"],
            "truth_note": TRUTH_NOTE, "config_text": text,
            "jsonl": _rel(_path(out, ".jsonl")) if out else "-"}
    # run_replicate looked up here, not bound at import: tests replace it
    return run_study(run_replicate, (n, str(config), options, static, text),
                     replicates=replicates, seed0=seed0, key=key, meta=meta, out=out,
                     workers=workers, verbose=verbose)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--n", type=int, default=200, help="patients per replicate")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the first replicate")
    ap.add_argument("--config", default=str(FIT_CONFIG), help="fit config")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="[estimator] option override, e.g. saem_smoothing=100")
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--title", default="shipped design")
    ap.add_argument("--out", default=str(RESULTS), help="results path without suffix")
    ap.add_argument("--summary", action="store_true",
                    help="rewrite and print the summary of the recorded replicates")
    ap.add_argument("--alternative", action="store_true",
                    help="with --summary: add the errors against the enrolled patients' own "
                         "values and the reference pace (re-simulates each replicate's cohort)")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    if a.summary:
        meta = json.loads(_path(out, ".meta.json").read_text())
        lines = load_lines(_path(out, ".jsonl"), meta["key"])
        text = markdown(meta, summarise(lines))
        if a.alternative:
            cfg = read_config(ROOT / meta["config"], meta["options"], meta["config_text"])
            rows = alternative_table(lines, cfg, _path(out, ".sample.json"), meta["n"])
            text += ("\n## Against other truths\n\nThe same estimates against the replicate's "
                     "enrolled patients' own values (typical value and variance of the log "
                     "given the fit's covariates; no selection or sampling error in the truth) "
                     "and, for the pace k0, against the reference pace (mean of log k0 and "
                     "log(kA / glial_ratio)): the fit holds kA = glial_ratio k0 for every "
                     "patient, the generator has individual terms on both.\n\n"
                     + "\n".join(rows) + "\n")
        _path(out, ".md").write_text(text)
        print(text)
        return 0
    options = {}
    for kv in a.option:
        k, _, v = kv.partition("=")
        options[k] = int(v) if v.lstrip("-").isdigit() else v
    meta, s = run(a.replicates, a.n, a.seed, a.config, options, out, a.workers, a.title)
    print(markdown(meta, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
