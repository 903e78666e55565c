"""Bad calibration configs: one ConfigError naming the file and the key; the CLI exits 2 without
a traceback and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from progression.als.calibration import load_calibration_config
from progression.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"

GOOD = f"""
[calibration]
preset = "{CLINIC}"
n = 50
seeds = [1]
targets = ["decline_sd", "mortality_12m"]

[parameters."factors.pace.sd"]
bounds = [0.3, 1.3]
"""


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "cal.toml"
    path.write_text(text)
    return path


def test_the_good_config_parses(tmp_path):
    cfg = load_calibration_config(_write(tmp_path, GOOD))
    assert [t.name for t in cfg.targets] == ["decline_sd", "mortality_12m"]
    assert cfg.parameters[0].path == "factors.pace.sd" and cfg.seeds == (1,)
    assert cfg.targets[1].value == pytest.approx(0.341) and cfg.targets[1].uncertainty > 0


@pytest.mark.parametrize(("edit", "names"), [
    (lambda t: t + "\n[extra]\nx = 1\n", ["extra", "unknown key"]),
    (lambda t: t.replace("n = 50", "n = 50\nsize = 3"), ["calibration.size", "unknown key"]),
    (lambda t: t.replace('"factors.pace.sd"', '"parameters.k9.sd"'),
     ["parameters.k9.sd", "unknown parameter"]),
    (lambda t: t.replace('"factors.pace.sd"', '"cohort.n"'), ["cohort.n", "unknown parameter"]),
    (lambda t: t.replace('"factors.pace.sd"', '"nosuch.thing"'),
     ["nosuch.thing", "unknown parameter"]),
    (lambda t: t.replace('"factors.pace.sd"', '"observables.CRP.residual"'),
     ["observables.CRP.residual", "not a number"]),
    (lambda t: t.replace('"mortality_12m"', '"mortality_13m"'),
     ["calibration.targets", "unknown target 'mortality_13m'"]),
    (lambda t: t.replace('targets = ["decline_sd", "mortality_12m"]', "targets = []"),
     ["calibration.targets", "non-empty list"]),
    (lambda t: t.replace("[0.3, 1.3]", "[1.3, 0.3]"), ["bounds", "low < high"]),
    (lambda t: t.replace("[0.3, 1.3]", "[0.3]"), ["bounds", "[low, high]"]),
    (lambda t: t.replace("[0.3, 1.3]", '["a", 1.3]'), ["bounds", "[low, high]"]),
    (lambda t: t.replace("bounds = [0.3, 1.3]", "bounds = [0.3, 1.3]\nstart = 2.0"),
     ["start", "within bounds"]),
    (lambda t: t.replace("bounds = [0.3, 1.3]", "bounds = [0.3, 1.3]\nstep = 2.0"),
     ["step", "unknown key"]),
    (lambda t: t.replace("seeds = [1]", "seeds = [-1]"), ["calibration.seeds"]),
    (lambda t: t.replace("n = 50", "n = 5"), ["calibration.n", ">= 10"]),
    (lambda t: t + '\n[optimiser]\nmethod = "bfgs"\n', ["optimiser.method", "bfgs"]),
    (lambda t: t + "\n[optimiser]\ndiff_step = 0.9\n", ["optimiser.diff_step"]),
    (lambda t: t + "\n[optimiser]\nmax_evaluations = 0\n", ["optimiser.max_evaluations"]),
    (lambda t: t + "\n[optimiser]\nstarts = 0\n", ["optimiser.starts", "1 to 50", "found 0"]),
    (lambda t: t + '\n[optimiser]\nstarts = "many"\n', ["optimiser.starts", "'many'"]),
    (lambda t: t + "\n[uncertainty]\nseeds = 3\n", ["uncertainty.seeds"]),
    (lambda t: t + "\n[targets.nfl_hr]\nvalue = 3\n", ["targets.nfl_hr", "not in calibration"]),
    (lambda t: t + "\n[targets.decline_sd]\nuncertainty = 0\n",
     ["targets.decline_sd.uncertainty", "positive"]),
    (lambda t: t + "\n[targets.decline_sd]\nvalu = 0.6\n", ["targets.decline_sd.valu"]),
    (lambda t: t.replace(str(CLINIC), "nowhere.toml"), ["calibration.preset", "nowhere.toml"]),
    (lambda t: t.replace('"factors.pace.sd"', '"parameters.Tmax.typical"').replace(
        "[0.3, 1.3]", "[0.3, 1.9]\nstart = 1.8"), ["parameters", "Tmax", "1.8"]),
], ids=lambda v: None if callable(v) else v[0])
def test_bad_config_names_the_file_and_key(tmp_path, edit, names):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as info:
        load_calibration_config(path)
    text = str(info.value)
    assert str(path) in text, text
    for name in names:
        assert name in text, f"{name!r} not in: {text}"


def test_cli_exits_2_without_traceback_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from progression.cli import main

    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, GOOD.replace('"mortality_12m"', '"mortality_13m"'))
    code = main(["calibrate", str(path), "--out", "out"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "mortality_13m" in err and "cal.toml" in err
    assert not (tmp_path / "out").exists()
    # an existing folder progression did not write is refused before any simulation
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code = main(["calibrate", str(_write(tmp_path, GOOD)), "--out", "mine"])
    err = capsys.readouterr().err
    assert code == 2 and "not written by progression" in err and "Traceback" not in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
