"""One plotting package: every figure (scenario comparisons, power curves, cohort spaghetti)
goes through progression.plots and its one backend set-up, which keeps a backend the user
chose and picks Agg only when none was chosen and there is no display."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys
import matplotlib
if sys.argv[1] != "none":
    matplotlib.use(sys.argv[1])
import progression as pg
from progression.virtual.trial_results import PowerCurve, TrialResults

cohort = pg.read_cohort(sys.argv[2])
ax = cohort.plot_spaghetti("ALSFRS_R", subjects=cohort.subjects[:5])
assert ax.get_title() == "ALSFRS_R: 5 subjects", ax.get_title()
pop = pg.VirtualPopulation.sample("als_reduced", 2, seed=1)
comp = pg.compare(pop, {"half kA": [pg.Intervention("kA", scale=0.5)]}, horizon=3.0)
figs = [comp.plot_trajectories(), comp.plot_endpoints(), comp.plot_survival()]
trial = pg.VirtualTrial({"a": [], "b": [pg.Intervention("kA", scale=0.5)]}, model="als_reduced")
rows = [{"comparison": "b vs a", "reject": True, "estimate": 0.1, "relative_effect": 0.2}]
figs.append(PowerCurve(trial, [TrialResults("slope", 10, rows, 0.05, 20, 0.5)]).plot())
assert all(f.axes for f in figs)
print(matplotlib.get_backend().lower())
"""


@pytest.mark.parametrize("chosen,env,expected", [
    ("ps", {}, "ps"),
    ("none", {"MPLBACKEND": "svg"}, "svg"),
    ("none", {}, "agg"),
])
def test_every_figure_keeps_the_users_backend(chosen, env, expected, tmp_path):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    clean["MPLCONFIGDIR"] = str(tmp_path)
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, chosen,
                          str(ROOT / "data" / "synthetic" / "als_clinic_200.csv")],
                         capture_output=True, text=True, env=clean, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected, out.stdout


def test_importing_the_plotting_package_does_not_import_matplotlib():
    code = ("import sys, progression.plots, progression.plots.scenarios, "
            "progression.plots.trials, progression.plots.cohort; "
            "print(any(m.startswith('matplotlib') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
