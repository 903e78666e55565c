"""Controls for eD in the ALS population fit: which of the generator's features the fit does
not model drive eD's typical value down and its omega^2 up.

Each control regenerates the shipped cohort (``configs/cohorts/als_clinic_v1.toml``, its own
seed, 200 patients) with some of the generator's features switched off, fits it with the
config ``configs/als_synthetic_population.toml`` as it was before the CRP t residual
(``--config``; default: the committed config with ``[error.CRP]`` set back to a log-normal
residual, or with ``tfit`` the t(3) one) with a short SAEM run, and prints typical values and
omega^2 against the generator's truth (eD 0.341 / 0.0901; k0 at the reference covariates
0.00898 / 0.372) and the importance-sampling OFV. Features (joined with ``+`` in a label):

- ``normcrp``: CRP's visit residual normal (scale 0.4) instead of Student t(3): the t draws
  are replaced after every other draw, so patients, visits and offsets stay the same;
- ``tmax0``: no between-patient spread of Tmax (sd 0 at 0.9, the fit's held value);
- ``ind0``: k0 and kA without their individual terms (only the shared pace), the fit's
  glial_ratio set to the generator's 0.033 / 0.0091;
- ``treg0``: no per-patient Treg % offset; ``nodrop``: no informative dropout;
- ``nodelay``: the diagnostic delay independent of the patient's early decline
  (``[diagnosis] rate_exponent`` 0 instead of 0.5: in the generator faster progressors are
  diagnosed sooner, so the reported onset, a covariate of the fit, carries information on the
  patient's pace that the fit's likelihood ignores), with the shipped cohort's delay
  distribution (geometric mean 11.1 months, log-SD 0.75); the same patients and delay draws;
- ``tregall``: Treg % measured at every visit (the design of a research biomarker cohort; the
  shipped data have ~1 value per patient); visits and every other value stay the same;
- ``edfix``: (fit) omega^2 eD fixed at the truth 0.0901, typical eD started at 0.341;
- ``tfit``: (fit) CRP with the Student t(3) residual; ``base``: nothing changed;
- ``tmaxre``: (fit) a random effect on Tmax with the generator's variance held (log scale,
  0.0064; typical value estimated from 0.876). (fT0's random effect for the Treg % offset, the
  former ``ft0re``, is in the shipped config since 2026-12-01.)

With ``--vpc K`` each control also scores the prediction-corrected VPC of ALSFRS-R (K
simulations of the design, the fit's own bins): how many of the bins' observed 5th, 50th and
95th percentiles lie outside the simulated 95 % bands.

``tmax0`` and ``ind0`` change the random stream (different patients); the others keep it.

    python benchmarks/als_ed_controls.py base edfix normcrp+tmax0+ind0+treg0+nodrop
        [--exploration 120] [--smoothing 80] [--seed 2026] [--cohort-seed N] [--is 200]
        [--vpc 100]

Each control takes 2-7 min on the shared 2-core machine; results (2026-12-01) in
benchmarks/results/als_population_controls.md, section "eD: controls".
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "als_synthetic_population.toml"
COHORT = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"
#: generator's values on the fit's scales (progression.als.population_truth): typical, omega^2
TRUTH = {"k0": (0.00898, 0.372), "eD": (0.341, 0.0901), "Q0": (1.0, 0.64),
         "nfl_scale": (1.0, 0.09)}
FEATURES = ("base", "normcrp", "tmax0", "ind0", "treg0", "nodrop", "nodelay", "edfix", "tfit",
            "tmaxre", "tregall")


def _rep(text: str, old: str, new: str, count: int = 1) -> str:
    if old not in text:
        raise SystemExit(f"expected {old!r} to edit")
    return text.replace(old, new, count)


def _texts(features: set) -> tuple[str, str]:
    """(cohort config text, fit config text) of a control."""
    coh = COHORT.read_text()
    cfg = CONFIG.read_text().replace('"../', f'"{ROOT}/')
    # the committed config has CRP's t(3) residual: the controls fit log-normal unless tfit
    cfg = re.sub(r'\[error\.CRP\]\nmodel = "lognormal"\ndistribution = "t"\ndf = 3\n',
                 '[error.CRP]\nmodel = "lognormal"\n', cfg)
    if "tfit" in features:
        cfg = _rep(cfg, '[error.CRP]\nmodel = "lognormal"\n',
                   '[error.CRP]\nmodel = "lognormal"\ndistribution = "t"\ndf = 3\n')
    if "tmax0" in features:
        coh = _rep(coh, "typical = 0.9\nsd = 0.1", "typical = 0.9\nsd = 0.0")
    if "ind0" in features:
        coh = _rep(coh, "sd = 0.3\neffects", "sd = 0.0\neffects", 2)
        cfg = _rep(cfg, "value = 3.52", f"value = {0.033 / 0.0091:.5f}")
    if "treg0" in features:
        coh = _rep(coh, "subject_sd = 0.1\nresidual_sd = 0.1",
                   "subject_sd = 0.0\nresidual_sd = 0.1")
    if "tregall" in features:
        coh = _rep(coh, "baseline = 0.5\nprobability = 0.1", "baseline = 1.0\nprobability = 1.0")
    if "nodrop" in features:
        coh = _rep(coh, "rate = 0.003 ", "rate = 0.0 ")
    if "nodelay" in features:
        # the shipped cohort's delays: median 10.7, geometric mean 11.1 months, log-SD 0.75
        coh = _rep(coh, "rate_exponent = 0.5        #", "rate_exponent = 0.0        #")
        coh = _rep(coh, "delay_median = 6.3 ", "delay_median = 11.1")
        coh = _rep(coh, "delay_sd_log = 0.6 ", "delay_sd_log = 0.75")
    if "edfix" in features:
        cfg = _rep(cfg, 'value = 0.34\nbounds = [0.01, 5.0]\nscale = "log"\neta = 0.09',
                   'value = 0.341\nbounds = [0.01, 5.0]\nscale = "log"\neta = 0.0901\n'
                   'eta_fixed = true')
    if "tmaxre" in features:
        cfg = _rep(cfg, "[parameters.eD]", '[parameters.Tmax]\nestimate = "population"\n'
                   'value = 0.876\nbounds = [0.4, 1.0]\nscale = "log"\neta = 0.0064\n'
                   'eta_fixed = true\n\n[parameters.eD]')
    return coh, cfg


def vpc_misses(res, n_sim: int, observable: str = "ALSFRS_R") -> str:
    """The fit's prediction-corrected VPC of one observable, scored: per percentile, the bins
    whose observed value lies outside the simulated band."""
    from progression.fit.population._outputs import population_outputs

    v = population_outputs(res, n_sim=n_sim).vpcs[observable]
    out = (v.observed < v.sim_lo) | (v.observed > v.sim_hi)
    parts = [f"{p:g}th {int(out[:, j].sum())}/{len(v.x)}" for j, p in enumerate(v.percentiles)]
    return f"  VPC of {observable} ({n_sim} simulations): observed outside the band: " + \
        ", ".join(parts)


def run(label: str, k1: int, k2: int, seed: int, cohort_seed, is_samples: int,
        n_vpc: int = 0) -> str:
    import progression as pg
    import progression.als.synthetic as S
    from progression.fit.config import parse_fit_config

    features = set(label.split("+")) - {"base"}
    unknown = features - set(FEATURES)
    if unknown:
        raise SystemExit(f"unknown feature(s) {sorted(unknown)} (expected {FEATURES})")
    coh, cfg_text = _texts(features)
    draw = S._draw

    def patched(cfg, model, rng, m):
        d = draw(cfg, model, rng, m)
        if "normcrp" in features:
            # after every other draw: the same patients, only CRP's residual changes
            d.eps["CRP"] = np.random.default_rng(12345 + m).standard_normal(d.eps["CRP"].shape)
        return d

    S._draw = patched
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cohort.toml"
            path.write_text(coh)
            cohort, truth = S.synthetic_cohort(path, n=200, seed=cohort_seed)
    finally:
        S._draw = draw
    cfg = parse_fit_config(cfg_text, source=f"{label}.toml", base_dir=CONFIG.parent)
    cfg = cfg.replace(options={**cfg.options, "saem_exploration": k1, "saem_smoothing": k2,
                               "is_samples": is_samples, "seed": seed})
    t0 = time.perf_counter()
    res = pg.fit(cfg, data=cohort)
    pop = res.population
    names = list(pop.omega_names)
    O = np.asarray(pop.omega, dtype=float)
    eD = np.log(np.asarray(truth["eD"], dtype=float))
    lines = [f"{label} (SAEM seed {seed}, cohort seed {cohort_seed or 'config'}, {k1} + {k2} "
             f"iterations, {time.perf_counter() - t0:.0f} s; the enrolled patients' eD: "
             f"typical {math.exp(eD.mean()):.3f}, Var(log) {eD.var():.4f})"]
    for p, (tv, to) in TRUTH.items():
        v = pop.fixed_effects[p]
        o = O[names.index(p), names.index(p)]
        lines.append(f"  {p:10s} {v:9.4g} ({100 * (v / tv - 1):+.1f} %)  omega^2 {o:.4f} "
                     f"({100 * (o / to - 1):+.0f} %)")
    th = np.asarray(res.theta, dtype=float)[0]
    lines.append("  residual: " + ", ".join(f"{p.name} {th[i]:.4f}"
                                            for i, p in enumerate(res.parameters)
                                            if p.kind == "error"))
    lines.append(f"  OFV {pop.ofv:.2f} (importance sampling, NONMEM convention)")
    if n_vpc:
        lines.append(vpc_misses(res, n_vpc))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("controls", nargs="+", help="labels: features joined with '+'")
    ap.add_argument("--exploration", type=int, default=120)
    ap.add_argument("--smoothing", type=int, default=80)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--cohort-seed", type=int, default=None)
    ap.add_argument("--is", dest="is_samples", type=int, default=200)
    ap.add_argument("--vpc", type=int, default=0, metavar="K",
                    help="score the ALSFRS-R pcVPC with K simulations (0: no VPC)")
    a = ap.parse_args(argv)
    for label in a.controls:
        print(run(label, a.exploration, a.smoothing, a.seed, a.cohort_seed, a.is_samples,
                  a.vpc), flush=True)


if __name__ == "__main__":
    main()
