"""Failures in fits are visible: a fit in which every subject fails is refused (EstimationFailed,
CLI exit 1, no fit folder, no RuntimeWarning); a partly failed fit is written and says how many
failed and who; ``[fit] max_failed_share`` is honoured; data times before the model's t = 0
are counted and reported."""

import json
import warnings

import numpy as np
import pytest

import progression as pg
from progression.errors import EstimationFailed
from progression.fit import Design, fit, parse_fit_config

BLOWUP = """[model]
name = "blowup"
time_unit = "day"
[parameters.k]
value = 3.0
bounds = [2.0, 5.0]
[states.x]
initial = 1
[equations]
x = "k * x**2"
[observables.y]
expression = "x"
"""

# x = 1 - k t: predictions become negative after t = 1/k, outside the log-normal error model
DECLINE = """[model]
name = "linear_decline"
time_unit = "month"
[parameters.k]
value = 0.3
bounds = [0.1, 0.5]
[states.x]
initial = 1
[equations]
x = "-k"
[observables.y]
expression = "x"
"""


def _blowup_files(tmp_path):
    """Every k in [2, 5] blows up (at t = 1/k <= 0.5) before the data end at t = 1.2."""
    (tmp_path / "blowup.toml").write_text(BLOWUP)
    rows = ["subject,time,observable,value"]
    for s in range(4):
        for t in np.linspace(0.0, 1.2, 7):
            rows.append(f"S{s + 1},{t:g},y,{1.0 / (1.0 - 0.5 * t):.4f}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\nmodel = "blowup.toml"\n[data]\npath = "data.csv"\n'
                   '[error.y]\nmodel = "proportional"\nb = 0.05\n'
                   '[parameters.k]\nestimate = "subject"\n[estimator]\nstarts = 2\n'
                   '[solver]\nmax_steps = 3000\n[output]\nfolder = "out"\n')
    return cfg


def test_a_fit_where_every_subject_fails_exits_1_and_writes_nothing(tmp_path, capsys):
    from progression.cli import main

    cfg = _blowup_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code = main(["fit", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert str(cfg) in err and "no subject has a finite objective" in err
    for sid in ("S1", "S2", "S3", "S4"):
        assert f"subject '{sid}': the simulation failed at the starting point" in err
    assert "integration failed" in err                  # the solver's own reason
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "out").exists()


def test_the_python_entry_raises_estimation_failed(tmp_path):
    cfg = _blowup_files(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(EstimationFailed) as info:
            fit(cfg)
    assert info.value.exit_status == 1
    assert len(info.value.problems) == 4
    assert all("simulation failed" in p for p in info.value.problems)


def _decline(tmp_path, covariates, share=None):
    """Subjects observed at t = 0..1 whose model time is t + c; a large c fails."""
    (tmp_path / "decline.toml").write_text(DECLINE)
    extra = f"max_failed_share = {share}\n" if share is not None else ""
    text = (f'[fit]\nmodel = "decline.toml"\n{extra}[error.y]\nmodel = "lognormal"\n'
            'sigma = 0.1\n[parameters.k]\nestimate = "subject"\n'
            '[parameters.time_offset]\ncovariate = "c"\nfactor = 1.0\n')
    cfg = parse_fit_config(text, base_dir=tmp_path, name="decline", check_data=False)
    t = np.linspace(0.0, 1.0, 6)
    rng = np.random.default_rng(0)
    designs = []
    for i, c in enumerate(covariates):
        y = np.clip(1 - 0.3 * np.maximum(t + c, 0.0), 0.01, None) * np.exp(
            0.05 * rng.standard_normal(6))
        designs.append(Design(f"S{i + 1}", t, np.zeros(6, int), y, np.zeros(6, int),
                              np.full(6, np.nan), float(c)))
    return cfg, designs


def test_a_partly_failed_fit_is_written_and_says_who_failed(tmp_path):
    cfg, designs = _decline(tmp_path, [0, 0, 0, 10])
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no RuntimeWarning, no other warning
        result = fit(cfg, data=designs)
        result.save(tmp_path / "fit")
    assert result.failed_subjects == ["S4"] and result.n_failed == 1
    assert "prediction outside the error model's domain" in result.failures[3]
    assert result.converged.tolist() == [True, True, True, False]
    # -2 log L over the subjects with a finite objective, and says so
    assert np.isfinite(result.objective)
    assert result.objective == pytest.approx(np.sum(result.subject_objective[:3]))
    text = result.summary()
    assert "FAILED: 1/4 subjects" in text and "S4:" in text
    assert "over the 3 subjects with a finite objective" in text
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "## Failed subjects" in report and "**1 of 4 subjects failed**" in report
    assert "- `S4`: the simulation failed" in report
    doc = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert doc["failures"][3] and not any(doc["failures"][:3])
    again = pg.load_fit(tmp_path / "fit")
    assert again.failed_subjects == ["S4"]
    rows = (tmp_path / "fit" / "subjects.csv").read_text().splitlines()
    assert rows[4].startswith("S4,0,") and "the simulation failed" in rows[4]


def test_max_failed_share_is_honoured(tmp_path):
    cfg, designs = _decline(tmp_path, [0, 0, 10, 10], share=0.5)
    result = fit(cfg, data=designs)                  # 2/4 = 0.5 failed: allowed
    assert result.n_failed == 2
    cfg, designs = _decline(tmp_path, [0, 0, 10, 10], share=0.4)
    with pytest.raises(EstimationFailed, match=r"max_failed_share = 0.4 .*\(2/4\)") as info:
        fit(cfg, data=designs)
    assert [p.split("'")[1] for p in info.value.problems] == ["S3", "S4"]
    cfg, designs = _decline(tmp_path, [0, 0, 0, 10], share=0.0)
    with pytest.raises(EstimationFailed, match="subject 'S4'"):
        fit(cfg, data=designs)


def test_data_before_the_model_time_origin_are_counted_and_reported(tmp_path):
    # subject S2's model times are t - 0.5: its first three values (t = 0, 0.2, 0.4) lie
    # before the model's t = 0 and are evaluated there
    cfg, designs = _decline(tmp_path, [0.0, -0.5, 0.2])
    result = fit(cfg, data=designs)
    assert result.before_zero.tolist() == [0, 3, 0]
    assert result.counters["solves_before_zero"] >= 1
    assert any("model times before 0 at the estimates: 3 data value(s) of 1/3 subjects (S2)"
               in w for w in result.warnings)
    assert "model times before 0: at the estimates 3 data value(s)" in result.summary()
    result.save(tmp_path / "fit", figures=False)
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "## Model times before 0" in report and "`S2`" in report
    rows = [r.split(",") for r in (tmp_path / "fit" / "subjects.csv").read_text().splitlines()]
    col = rows[0].index("n_before_model_t0")
    assert [r[col] for r in rows[1:]] == ["0", "3", "0"]
