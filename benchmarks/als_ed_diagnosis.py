"""Which generator feature does eD's random effect absorb in the ALS population fit?

Regenerates the shipped cohort's per-patient draws exactly (``configs/cohorts/
als_clinic_v1.toml``, its seed, 200 patients; checked against ``data/synthetic/
als_clinic_200_truth.csv``), including what the truth file does not keep: the per-patient
observation offsets of NfL, CRP and Treg % (``subject_sd`` times a standard normal) and the
informative-dropout time. Then regresses a population fit's empirical Bayes estimate of
log eD (``subjects.csv`` of the fit folder) on the true log eD, log Tmax, log kA/k0, log k0
and the three offsets (ordinary least squares, all regressors together; t = estimate / SE),
prints the sensitivity of each observable to log eD along the typical patient's course
(``--sensitivity``), which converts an unmodelled offset into the eD variance that would
carry it, and (``--against FIT2``) where two fits of the same data differ in likelihood: the
per-patient -2 log L of FIT2 minus that of ``--fit`` (``objective`` of ``subjects.csv``, by
importance sampling) regressed on the squared deviations of the same features, e.g. FIT2
with omega^2 eD held at the truth against the free fit: which patients want the large eD
variance.

    python benchmarks/als_ed_diagnosis.py [--fit fits/als_synthetic_population] [--sensitivity]
        [--against FIT2]

Seconds (the cohort is re-simulated: ~1 s). Results: benchmarks/results/als_ed_diagnosis.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COHORT = ROOT / "configs" / "cohorts" / "als_clinic_v1.toml"
TRUTH = ROOT / "data" / "synthetic" / "als_clinic_200_truth.csv"
DATA = ROOT / "data" / "synthetic" / "als_clinic_200.csv"
PACE_MODEL = ROOT / "configs" / "models" / "als_reduced_pace.toml"
OFFSETS = ("NfL", "CRP", "Treg_pct")


def generator_draws() -> dict:
    """Per enrolled patient (the truth file's order): the generator's parameters, the
    observation offsets on the log scale (``subject_sd * eta``) and the dropout time.

    Returns
    -------
    dict of str to ndarray (200,)
        ``k0, kA, Tmax, eD`` (the generator's values), ``offset_NfL``, ``offset_CRP``,
        ``offset_Treg_pct`` (log scale), ``dropout`` (months after enrolment; inf = none).

    Raises
    ------
    SystemExit
        When the regenerated patients are not the truth file's (the generator changed).
    """
    import progression.als.synthetic as S
    from progression.als.cohort_config import _as_config

    cfg = _as_config(str(COHORT))
    sd = {ob.name: ob.subject_sd for ob in cfg.observables}
    kept_out = {}
    assemble = S._assemble

    def capture(cfg_, model, kept, n, seed, n_screened, reasons):
        kept_out["kept"] = kept
        return assemble(cfg_, model, kept, n, seed, n_screened, reasons)

    S._assemble = capture
    try:
        S.synthetic_cohort(COHORT, n=200)
    finally:
        S._assemble = assemble
    out = {k: [] for k in ("k0", "kA", "Tmax", "eD", "dropout",
                           *(f"offset_{o}" for o in OFFSETS))}
    for draws, batch, take in kept_out["kept"]:
        for i in take:
            for p in ("k0", "kA", "Tmax", "eD"):
                out[p].append(float(draws.params[p][i]))
            for o in OFFSETS:
                out[f"offset_{o}"].append(sd[o] * float(draws.eta[o][i]))
            out["dropout"].append(float(batch.data["dropout"][i]))
    out = {k: np.asarray(v) for k, v in out.items()}
    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for p in ("k0", "kA", "Tmax", "eD"):
        if not np.allclose(out[p], [float(r[p]) for r in rows], rtol=1e-12):
            raise SystemExit(f"regenerated {p} differs from {TRUTH}: the generator changed")
    out["subject"] = np.array([r["subject"] for r in rows])
    return out


def n_values(observable: str, subjects) -> np.ndarray:
    """Number of values of ``observable`` per subject in the shipped data."""
    count = dict.fromkeys(subjects, 0)
    with open(DATA, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["observable"] == observable:
                count[r["subject"]] += 1
    return np.array([count[s] for s in subjects])


def regression(fit_folder: Path, g: dict, parameter: str = "eD") -> str:
    """OLS of log(EBE of ``parameter``) on the generator's per-patient features."""
    with open(fit_folder / "subjects.csv", newline="") as fh:
        sub = {r["subject"]: r for r in csv.DictReader(fh)}
    y = np.log([float(sub[s][parameter]) for s in g["subject"]])
    X = {"log eD (truth)": np.log(g["eD"]), "log Tmax": np.log(g["Tmax"]),
         "log kA/k0": np.log(g["kA"] / g["k0"]), "log k0 (truth)": np.log(g["k0"]),
         "Treg % offset": g["offset_Treg_pct"], "CRP offset": g["offset_CRP"],
         "NfL offset": g["offset_NfL"],
         "dropped out": np.isfinite(g["dropout"]).astype(float)}
    names = list(X)
    A = np.column_stack([np.ones_like(y)] + [X[k] - X[k].mean() for k in names])
    b, *_ = np.linalg.lstsq(A, y, rcond=None)
    r = y - A @ b
    s2 = r @ r / (len(y) - A.shape[1])
    se = np.sqrt(np.diag(s2 * np.linalg.inv(A.T @ A)))
    R2 = 1 - r @ r / np.sum((y - y.mean()) ** 2)
    lines = [f"log {parameter} (EBE, {fit_folder}) on the generator's per-patient features, "
             f"n = {len(y)}, R^2 {R2:.3f}; Var(log EBE) {y.var():.4f}",
             "",
             "| regressor | SD | corr with EBE | coefficient (SE) | t | b^2 Var(x) |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, bb, ss in zip(names, b[1:], se[1:], strict=True):
        x = X[k]
        lines.append(f"| {k} | {x.std():.3f} | {np.corrcoef(x, y)[0, 1]:+.3f} | "
                     f"{bb:+.3f} ({ss:.3f}) | {bb / ss:+.1f} | {bb ** 2 * x.var():.4f} |")
    nt = n_values("Treg_pct", g["subject"])
    lines.append("")
    for lab, sel in (("with >= 1 Treg % value", nt > 0), ("without Treg % values", nt == 0)):
        c = [np.corrcoef(X[k][sel], y[sel])[0, 1] for k in ("Treg % offset", "log eD (truth)")]
        lines.append(f"- {lab}: {int(sel.sum())} patients, corr(EBE, Treg % offset) "
                     f"{c[0]:+.3f}, corr(EBE, true eD) {c[1]:+.3f}")
    lines.append(f"- Treg % values per patient: {np.bincount(nt).tolist()} (0, 1, 2, ...)")
    return "\n".join(lines)


def _objectives(folder: Path, subjects) -> np.ndarray:
    with open(folder / "subjects.csv", newline="") as fh:
        sub = {r["subject"]: float(r["objective"]) for r in csv.DictReader(fh)}
    return np.array([sub[s] for s in subjects])


def likelihood_difference(fit: Path, other: Path, g: dict) -> str:
    """Per-patient -2 log L of ``other`` minus ``fit`` on the squared centred features (OLS)."""
    d = _objectives(other, g["subject"]) - _objectives(fit, g["subject"])

    def c2(x):
        return (x - x.mean()) ** 2

    X = {"(log eD - mean)^2": c2(np.log(g["eD"])), "(log Tmax - mean)^2": c2(np.log(g["Tmax"])),
         "(log kA/k0 - mean)^2": c2(np.log(g["kA"] / g["k0"])),
         "Treg % offset^2": g["offset_Treg_pct"] ** 2, "CRP offset^2": g["offset_CRP"] ** 2,
         "NfL offset^2": g["offset_NfL"] ** 2,
         "dropped out": np.isfinite(g["dropout"]).astype(float),
         "Treg % values": n_values("Treg_pct", g["subject"]).astype(float),
         "CRP values": n_values("CRP", g["subject"]).astype(float)}
    names = list(X)
    A = np.column_stack([np.ones_like(d)] + [X[k] - X[k].mean() for k in names])
    b, *_ = np.linalg.lstsq(A, d, rcond=None)
    r = d - A @ b
    se = np.sqrt(np.diag(r @ r / (len(d) - A.shape[1]) * np.linalg.inv(A.T @ A)))
    top = np.argsort(d)[::-1][:10]
    lines = [f"-2 log L per patient, {other} minus {fit}: total {d.sum():+.2f}, "
             f"R^2 {1 - r @ r / np.sum((d - d.mean()) ** 2):.3f}",
             "", "| regressor | coefficient (SE) | t |", "|---|---:|---:|"]
    for k, bb, ss in zip(names, b[1:], se[1:], strict=True):
        lines.append(f"| {k} | {bb:+.3f} ({ss:.3f}) | {bb / ss:+.1f} |")
    lines += ["", f"largest 10 differences (sum {d[top].sum():+.2f}): "
              + ", ".join(f"{g['subject'][i]} {d[i]:+.2f} (Treg off {g['offset_Treg_pct'][i]:+.2f},"
                          f" eD {g['eD'][i]:.3f})" for i in top)]
    return "\n".join(lines)


def sensitivity() -> str:
    """d log(observable) / d log eD of the typical patient (k0 0.0095, glial_ratio 3.52,
    Tmax 0.9, eD 0.34; central difference of +-5 % in eD, LSODA) at months since its
    clinical onset."""
    import progression as pg

    t = np.linspace(0.0, 200.0, 4001)
    base = {"wsp": 0.095, "k0": 0.0095, "glial_ratio": 3.52, "Tmax": 0.9}
    h = 0.05
    ps = [dict(base, eD=0.34 * np.exp(s)) for s in (-h, 0.0, h)]
    sim = pg.simulate(str(PACE_MODEL), ps, t, terminal_events=False, rtol=1e-9, atol=1e-12)
    on = sim.event_time("clinical_onset")
    lines = ["| months after clinical onset | Treg % | CRP | NfL | ALSFRS-R (log) |",
             "|---:|---:|---:|---:|---:|"]
    for dt in (0.0, 6.0, 11.0, 24.0, 36.0):
        cells = []
        for k in ("Treg_pct", "CRP", "NfL", "ALSFRS_R"):
            v = [np.interp(on[i] + dt, t, sim[k][i]) for i in range(3)]
            cells.append(f"{(np.log(v[2]) - np.log(v[0])) / (2 * h):+.3f}")
        lines.append(f"| {dt:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=Path, default=ROOT / "fits" / "als_synthetic_population")
    ap.add_argument("--parameter", default="eD")
    ap.add_argument("--sensitivity", action="store_true")
    ap.add_argument("--against", type=Path, default=None)
    a = ap.parse_args(argv)
    g = generator_draws()
    print(regression(a.fit, g, a.parameter))
    if a.against is not None:
        print()
        print(likelihood_difference(a.fit, a.against, g))
    if a.sensitivity:
        print()
        print(sensitivity())


if __name__ == "__main__":
    main()
