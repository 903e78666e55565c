"""Write ``data/examples/steady_state.csv``: 40 simulated patients on oral doses every 12 h,
the first dose of each a steady-state record (NONMEM ``SS = 1``, ``II = 12``) followed by two
more doses (``ADDL = 2``), for ``configs/steady_state_population_saem.toml``.

The values come from ``progression.simulate`` (the library's ``pk_oral``: first-order
absorption with bioavailability 0.8 and a lag of 0.4 h, one compartment), whose steady state
is found by Newton's method on one dosing interval, at log-normal ka, CL and V (typical
1.2 1/h, 4 L/h, 40 L; Omega 0.09, 0.09, 0.04) with an additive error of SD 0.2 mg/L; seed 9.
Each patient is sampled at a trough (11.9 h) and around the first and the last dose. The
truth is in ``data/examples/steady_state.md``. Run from the repository root (seconds):

    python examples/make_steady_state_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import progression as pg
from progression.data._csvio import write_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "examples" / "steady_state.csv"

TYPICAL = {"ka": 1.2, "CL": 4.0, "V": 40.0}
OMEGA = {"ka": 0.09, "CL": 0.09, "V": 0.04}
SIGMA = 0.2
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 11.9, 24.5, 26.0, 30.0, 35.0])


def simulate_patients(n: int = 40, seed: int = 9):
    """Rows ``(ID, TIME, DV, AMT, EVID, MDV, CMT, SS, II, ADDL)`` of ``n`` patients."""
    rng = np.random.default_rng(seed)
    model = pg.load_model("pk_oral")
    rows = []
    for i in range(1, n + 1):
        p = dict(zip(model.parameter_names, model.defaults, strict=True))
        p.update(F_bio=0.8, tlag=0.4)
        for name, typical in TYPICAL.items():
            p[name] = typical * np.exp(np.sqrt(OMEGA[name]) * rng.standard_normal())
        doses = {"subject": [0] * 3, "time": [0.0, 12.0, 24.0], "amount": [300.0] * 3,
                 "target": ["A_gut"] * 3, "ss": [1, 0, 0], "ii": [12.0, 0.0, 0.0]}
        sim = pg.simulate(model, [p[k] for k in model.parameter_names], TIMES, doses=doses)
        y = sim["conc"][0] + SIGMA * rng.standard_normal(TIMES.size)
        rows.append((i, 0, ".", 300, 1, 1, 1, 1, 12, 2))
        rows += [(i, f"{t:g}", f"{v:.4f}", ".", 0, 0, ".", 0, 0, 0)
                 for t, v in zip(TIMES, y, strict=True)]
    return rows


def main() -> None:
    write_table(OUT, ("ID", "TIME", "DV", "AMT", "EVID", "MDV", "CMT", "SS", "II", "ADDL"),
                simulate_patients())
    print("wrote", OUT)


if __name__ == "__main__":
    main()
