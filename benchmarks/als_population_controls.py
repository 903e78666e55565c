"""Controls for the ALS population fit (configs/als_synthetic_population.toml): what the data
identify, and why the fit holds glial_ratio and Tmax.

Each control fits a variant of the shipped config to a variant of the synthetic clinic cohort
and prints typical values and Omega diagonal against the generator's truth (on the fit's
scales, k0 (the pace) at the reference covariates with the conditional Omega; the onset shift
against the cohort's own ``onset_model_time``):

- ``shipped``: the shipped config and data (the reported onset as ``onset_gap`` rows);
- ``at_truth``: the same, started at the truth (typical values and Omega diagonal);
- ``ratio_1.5``, ``ratio_8``: glial_ratio = kA/k0 estimated (a population parameter without
  random effect: SAEM's Fisher-scoring M-step), started at 1.5 and 8 (truth 3.54);
- ``tmax_free``: Tmax estimated (random-effect variance fixed at 0.01; truth 0.876, 0.0065);
- ``no_offsets``: a cohort without the per-patient NfL and CRP offsets (``subject_sd = 0``),
  fitted without random effects on kappa_nfl and Q0 (fixed at the model's 6000 and 1.0);
- ``clean``: no offsets, no informative dropout, a normal CRP residual instead of t(3).

    python benchmarks/als_population_controls.py [--controls shipped,ratio_1.5] [--n 200]
        [--exploration 150] [--smoothing 100] [--seed 2026]

Each 200-patient control with 150 + 100 iterations takes 1-6 min on the shared 2-core machine;
results in benchmarks/results/als_population_controls.md.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "als_synthetic_population.toml"
COHORT = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"   # drew the shipped data
TRUTH_CSV = ROOT / "data" / "synthetic" / "als_clinic_200_truth.csv"
SHOWN = ("k0", "glial_ratio", "Tmax", "eD", "time_offset")
#: generating values to start ``at_truth`` from (population_truth; onset from the cohort)
START = {"k0": (0.00898, 0.372), "eD": (0.341, 0.09), "time_offset": (6.59, 0.36)}


def _block(text: str, name: str) -> tuple[int, int]:
    i = text.index(f"[parameters.{name}]")
    j = text.find("\n\n", i)
    return i, len(text) if j < 0 else j


def _set(text: str, name: str, value, eta=None) -> str:
    i, j = _block(text, name)
    blk = re.sub(r"\nvalue = [^\n]*", f"\nvalue = {value}", text[i:j], count=1)
    if eta is not None:
        blk = re.sub(r"\neta = [^\n]*", f"\neta = {eta}", blk, count=1)
    return text[:i] + blk + text[j:]


def _fixed(text: str, name: str, value) -> str:
    i, j = _block(text, name)
    return text[:i] + f'[parameters.{name}]\nestimate = "fixed"\nvalue = {value}' + text[j:]


def _population(text: str, name: str, value, bounds: str, extra: str = "") -> str:
    """A held parameter of the config made a population parameter (log scale); one the
    config does not list (held at the model's value) is added before [parameters.eD]."""
    if f"[parameters.{name}]" not in text:
        text = text.replace("[parameters.eD]", f"[parameters.{name}]\n\n[parameters.eD]", 1)
    i, j = _block(text, name)
    return text[:i] + (f'[parameters.{name}]\nestimate = "population"\nvalue = {value}\n'
                       f'bounds = {bounds}\nscale = "log"\n{extra}') + text[j:]


def _cohort(tmp: Path, label: str, edits) -> Path:
    """A variant of the clinic cohort (same seed), with its onset rows; returns the data."""
    from progression.als.onset_rows import add_onset_rows
    from progression.cli import main as cli

    text = COHORT.read_text()
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"{COHORT}: expected {old!r} to edit")
        text = text.replace(old, new)
    cfg = tmp / f"{label}.toml"
    cfg.write_text(text)
    out = tmp / label / "c200.csv"
    if cli(["cohort", str(cfg), "--out", str(out), "--n", "200"]) != 0:
        raise SystemExit(f"cohort {label} failed")
    add_onset_rows(out, tmp / label / "c200_onset.csv")
    return tmp / label / "c200_onset.csv"


NO_OFFSETS = [("subject_sd = 0.3\n", "subject_sd = 0.0\n"),
              ("subject_sd = 0.8\n", "subject_sd = 0.0\n")]
CLEAN = NO_OFFSETS + [("rate = 0.003 ", "rate = 0.0 "), ("per_point = 0.05", "per_point = 0.0"),
                      ("per_slope = 0.3 ", "per_slope = 0.0 "),
                      ('residual = "t"\n', 'residual = "normal"\n')]


def _config(tmp: Path, control: str) -> tuple[str, Path | None]:
    """The fit config text of a control and its data (None: the shipped data)."""
    text = CONFIG.read_text().replace('"../', f'"{ROOT}/')
    text = text.replace('saem_covariance = "focei"', 'saem_covariance = "sa"')
    data = None
    if control == "at_truth":
        for name, (value, eta) in START.items():
            text = _set(text, name, value, eta)
    elif control.startswith("ratio_"):
        text = _population(text, "glial_ratio", float(control[6:]), "[0.3, 30.0]")
    elif control == "tmax_free":
        text = _population(text, "Tmax", 0.9, "[0.4, 1.0]", "eta = 0.01\neta_fixed = true\n")
    elif control in ("no_offsets", "clean"):
        data = _cohort(tmp, control, NO_OFFSETS if control == "no_offsets" else CLEAN)
        text = _fixed(_fixed(text, "Q0", 1.0), "kappa_nfl", 6000.0)
    elif control != "shipped":
        raise SystemExit(f"unknown control {control!r}")
    return text, data


def _truth(data: Path | None):
    sys.path.insert(0, str(ROOT / "tests"))
    import test_population_als as T  # the generator's truth on the fit's scales

    from progression.als.population_truth import sample_population

    typ, om = T._generating_on_fit_scale()
    truth_csv = TRUTH_CSV if data is None else data.parent / "c200_truth.csv"
    smp = sample_population(truth_csv)
    typ["time_offset"], om["time_offset"] = smp.typical["time_offset"], \
        smp.variance("time_offset")
    return typ, om


def run(control: str, n: int, k1: int, k2: int, seed: int) -> None:
    import progression as pg
    from progression.fit.config import parse_fit_config

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        text, data = _config(tmp, control)
        cfg = parse_fit_config(text, source=f"{control}.toml", base_dir=CONFIG.parent)
        cfg = cfg.replace(options={**cfg.options, "saem_exploration": k1,
                                   "saem_smoothing": k2, "is_samples": 300, "seed": seed})
        cohort = pg.read_cohort(data if data is not None else cfg.data["path"]
                                if Path(cfg.data["path"]).is_absolute()
                                else CONFIG.parent / cfg.data["path"])
        if n < len(cohort.subjects):
            cohort = cohort.select(cohort.subjects[:n])
        t0 = time.perf_counter()
        pop = pg.fit(cfg, data=cohort).population
        typ, om = _truth(data)
    names = list(pop.omega_names)
    O = np.asarray(pop.omega, dtype=float)
    print(f"\n{control}: {n} patients, {k1} + {k2} iterations, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"  {'':12s} {'typical':>9s} {'truth':>9s} {'error':>7s}  {'omega2':>7s} "
          f"{'truth':>7s} {'error':>7s}")
    for p in SHOWN:
        if p not in pop.fixed_effects:
            print(f"  {p:12s} {'held':>9s} {typ[p]:9.4g}")
            continue
        v = pop.fixed_effects[p]
        o = O[names.index(p), names.index(p)] if p in names else math.nan
        print(f"  {p:12s} {v:9.4g} {typ[p]:9.4g} {100 * (v / typ[p] - 1):+6.0f}%  "
              f"{o:7.4f} {om[p]:7.4f} {100 * (o / om[p] - 1):+6.0f}%")
    i, j = names.index("k0"), names.index("time_offset")
    print(f"  corr k0-time_offset {O[i, j] / math.sqrt(O[i, i] * O[j, j]):+.4f}")
    print(f"  OFV {pop.ofv:.2f} (importance sampling, NONMEM convention)")
    se = {k: v for k, v in (pop.fixed_effects_se or {}).items()
          if k in SHOWN and v is not None and np.isfinite(v)}
    print("  standard errors:", se if se else "none (the covariance step failed)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--controls", default="shipped,at_truth,ratio_1.5,ratio_8,tmax_free")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--exploration", type=int, default=150)
    ap.add_argument("--smoothing", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args(argv)
    for c in a.controls.split(","):
        run(c.strip(), a.n, a.exploration, a.smoothing, a.seed)


if __name__ == "__main__":
    main()
