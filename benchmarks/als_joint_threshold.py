"""A joint longitudinal + survival population fit (SAEM) of the shipped synthetic ALS cohort.

The shipped cohort's patients die when their motor-neuron pool N falls to their own
respiratory-failure threshold (``configs/cohorts/als_clinic_v1.toml``: ``death_threshold =
1``, Ndeath ~ N(0.42, 0.06) truncated to [0.15, 0.45] per patient). Integrated over a normal
threshold N_d ~ N(mu, sd^2), that death time has the survival function S(t) = Phi((N(t) - mu)
/ sd) (N falls), i.e. the hazard

    h(t) = -d log S / dt = (lam N / sd) phi(z) / Phi(z),   z = (N - mu) / sd,

which the pace model states as ``[hazards.respiratory]`` (its own non-terminal event,
parameter ``Ndeath_sd``; ``erfc`` gives Phi). This script fits the shipped joint config
``configs/als_synthetic_joint.toml`` (the longitudinal config plus ``[survival] hazard =
"respiratory"``: the data's ``death`` events, delayed entry at enrolment; mu = ``Ndeath`` and
``Ndeath_sd`` population constants without random effects) into a temporary folder. The
model's calibrated death hazard ([hazards.death], ALSFRS-R-driven) is not the data's
mechanism: a joint fit with it sends its scale h0 and slope alpha1 to their bounds (an ever
steeper hazard: the likelihood of threshold deaths grows without bound as it sharpens).

Reports the estimates beside the shipped (longitudinal only) fit's and the truth: the
generator's values on the fit's scales (``benchmarks/als_ed_controls.py`` TRUTH) and the 200
patients' own Ndeath (mean and SD from ``data/synthetic/als_clinic_200_truth.csv``).

    python benchmarks/als_joint_threshold.py [--out benchmarks/results/als_joint_threshold]

Takes ~8 min on the 2-core machine (550 SAEM iterations, 4 chains per patient).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from als_ed_controls import TRUTH  # noqa: E402

CONFIG = ROOT / "configs" / "als_synthetic_joint.toml"
SHIPPED = ROOT / "fits" / "als_synthetic_population"
TRUTH_FILE = ROOT / "data" / "synthetic" / "als_clinic_200_truth.csv"

def joint_config(folder: Path, *, figures: bool = False):
    """The shipped joint config, writing into ``folder`` (figures off unless asked)."""
    from progression.fit import parse_fit_config

    text = CONFIG.read_text()
    for old, new in (('folder = "../fits/als_synthetic_joint"', f'folder = "{folder}"'),
                     ("figures = true", f"figures = {'true' if figures else 'false'}")):
        if old not in text:
            raise SystemExit(f"expected {old!r} in {CONFIG}")
        text = text.replace(old, new, 1)
    return parse_fit_config(text, base_dir=CONFIG.parent, name=CONFIG.stem, source=str(CONFIG))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "als_joint_threshold"))
    args = ap.parse_args(argv)
    import progression as pg
    from progression.fit import fit

    with tempfile.TemporaryDirectory() as tmp:
        cfg = joint_config(Path(tmp) / "fit")
        t = time.perf_counter()
        res = fit(cfg)
        wall = time.perf_counter() - t
    shipped = pg.load_fit(SHIPPED).population
    pop = res.population
    rows = list(csv.DictReader(TRUTH_FILE.open()))
    nd = np.array([float(r["Ndeath"]) for r in rows])
    lines = [f"# Joint ALS population fit with a threshold death hazard "
             f"({datetime.now(UTC).isoformat(timespec='minutes')})", "",
             "`python benchmarks/als_joint_threshold.py` (module docstring); "
             f"{wall:.0f} s, {pop.iterations} iterations; OFV {pop.ofv:.4f} (joint: not "
             f"comparable with the longitudinal fit's {shipped.ofv:.4f}).", "",
             "| quantity | truth | shipped fit (longitudinal) | joint fit | joint error |",
             "|---|---:|---:|---:|---:|"]

    def row(label, truth, a, b):
        err = f"{100 * (b / truth - 1):+.1f} %" if truth else ""
        lines.append(f"| {label} | {truth:.4g} | {a} | {b:.4g} | {err} |")

    for name, (tv, om) in TRUTH.items():
        a = shipped.fixed_effects[name]
        row(f"{name} typical", tv, f"{a:.4g} ({100 * (a / tv - 1):+.1f} %)",
            pop.fixed_effects[name])
        i, j = shipped.omega_names.index(name), pop.omega_names.index(name)
        a = shipped.omega[i, i]
        row(f"omega^2 {name}", om, f"{a:.4g} ({100 * (a / om - 1):+.1f} %)", pop.omega[j, j])
    row("Ndeath (mean of the 200 patients)", float(nd.mean()), "(not fitted)",
        pop.fixed_effects["Ndeath"])
    row("Ndeath_sd (SD of the 200 patients)", float(nd.std(ddof=1)), "(not fitted)",
        pop.fixed_effects["Ndeath_sd"])
    for name in ("Ndeath", "Ndeath_sd"):
        rse = 100 * pop.fixed_effects_se[name] / pop.fixed_effects[name]
        lines.append(f"\n{name}: RSE {rse:.1f} %")
    sig = ", ".join(f"{k} {v:.4g}" for k, v in pop.sigma.items())
    lines.append(f"\nResidual SDs (joint): {sig}.")
    # the fitted death model against the data's survival (Kaplan-Meier VPC, 100 cohorts)
    from progression.fit import population_outputs
    from progression.fit.population._vpc_survival import survival_vpc_lines
    from progression.plots.population import plot_survival_vpc

    out = population_outputs(res, 100, 1)
    figure = Path(args.out).with_name(Path(args.out).name + "_km.png")
    plot_survival_vpc(out.survival_vpc, time_unit="month", path=figure)
    lines.append("\n" + survival_vpc_lines(out.survival_vpc)[0].replace(
        "`vpc_survival.png`", f"`{figure.name}`"))
    from progression.fit.population._outputs import vpc_report_lines

    lines.append("\nLongitudinal VPCs, simulated patients ending at the fitted threshold:")
    lines += [f"- {line}" for line in vpc_report_lines(out) if line.startswith("VPC of")]
    text = "\n".join(lines) + "\n"
    Path(args.out).with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
