"""The reported symptom onset of a synthetic ALS cohort as one observation per patient.

In the cohort generator (:mod:`progression.als.synthetic`) a patient's clinical onset is the
model's ``clinical_onset`` event (predicted ALSFRS-R falls to 47), and the covariate
``onset_time`` (months relative to enrolment) is exactly where it happens. A population fit
whose time offset is ``value_i - onset_time_i`` with its own random effect does not know that:
the offset's eta can move the onset anywhere, and the data no longer tie the onset time to the
disease pace (k0). This module writes a copy of the cohort with one extra row per patient,
observable ``onset_gap`` (als_reduced: ``frs - 47``) = 0 at time ``onset_time``, so every
estimator takes the reported onset as ordinary data (an additive error of its own in the fit
config, a "recall" error).

    python -m progression.als.onset_rows data/synthetic/als_clinic_200.csv \\
        data/synthetic/als_clinic_200_onset.csv

The covariates and events files of the input are referenced by the new sidecar (not copied).
"""

from __future__ import annotations

import argparse
import csv
import os
import tomllib
from pathlib import Path

from ..errors import DataError

__all__ = ["add_onset_rows", "main"]

#: The als_reduced observable that is 0 at clinical onset.
OBSERVABLE = "onset_gap"


def add_onset_rows(cohort_csv: str | os.PathLike, out_csv: str | os.PathLike, *,
                   observable: str = OBSERVABLE, covariate: str = "onset_time") -> int:
    """Write ``out_csv`` (+ its ``.toml`` sidecar): the long-format cohort ``cohort_csv`` with
    one row ``subject, <onset time>, observable, 0, 0,`` per subject.

    Parameters
    ----------
    cohort_csv : path
        Long-format cohort (``subject,time,observable,value,cens,limit``) with a TOML sidecar
        naming its covariates file (which must have ``covariate`` for every subject).
    out_csv : path
        Output file; its sidecar is ``out_csv`` with suffix ``.toml``.
    observable, covariate : str
        Name of the observable written (0 at onset) and of the covariate giving the onset time
        (months, same clock as the data's ``time``).

    Returns
    -------
    int
        Number of rows added (one per subject).
    """
    src, out = Path(cohort_csv), Path(out_csv)
    side = src.with_suffix(".toml")
    if not side.exists():
        raise DataError(f"{src}: no sidecar {side.name} (the covariates file is named there)")
    meta = tomllib.loads(side.read_text())
    if "covariates" not in meta:
        raise DataError(f"{side}: key 'covariates' missing (expected the covariates file)")
    cov_path = (side.parent / meta["covariates"]).resolve()
    with open(cov_path, newline="") as fh:
        cov = {r["subject"]: r for r in csv.DictReader(fh)}
    with open(src, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        rows = list(reader)
    subjects = list(dict.fromkeys(r["subject"] for r in rows))
    added = []
    for s in subjects:
        if s not in cov or cov[s].get(covariate, "") == "":
            raise DataError(f"{cov_path}: subject {s!r} has no {covariate!r} value")
        added.append({"subject": s, "time": cov[s][covariate], "observable": observable,
                      "value": "0", "cens": "0", "limit": ""})
    # the onset row first within each subject (times are sorted: onset_time <= 0)
    by = {s: [] for s in subjects}
    for r in added + rows:
        by[r["subject"]].append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for s in subjects:
            for r in by[s]:
                w.writerow({k: r.get(k, "") for k in fields})
    # sidecar: the input's, covariates and events referenced relative to the new folder
    lines = [f"# Sidecar of {out.name}, written by progression.als.onset_rows from {src.name}",
             f"# ({src.name} plus one {observable} = 0 row per subject at {covariate})"]
    for key, val in meta.items():
        if isinstance(val, dict):
            continue
        if key in ("covariates", "events"):
            val = os.path.relpath((side.parent / val).resolve(), out.parent.resolve())
        if key != "allow_negative_time":
            lines.append(f'{key} = "{val}"')
    # the onset rows are before enrolment (the time origin): negative times are intended
    lines.append("allow_negative_time = true")
    units = dict(meta.get("units", {}))
    units[observable] = "points"
    lines.append("")
    lines.append("[units]")
    lines += [f'{k} = "{v}"' for k, v in units.items()]
    out.with_suffix(".toml").write_text("\n".join(lines) + "\n")
    return len(added)


def main(argv=None) -> None:  # pragma: no cover - thin CLI
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohort_csv")
    ap.add_argument("out_csv")
    a = ap.parse_args(argv)
    n = add_onset_rows(a.cohort_csv, a.out_csv)
    print(f"{a.out_csv}: {n} {OBSERVABLE} rows added")


if __name__ == "__main__":  # pragma: no cover
    main()
