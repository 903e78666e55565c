"""Saved fits keep their inputs: dose records, covariates, conditions and measured SDs.

A fit folder stores each subject's doses (``doses.csv``), covariates (``covariates.csv``), each
value's condition and SD (``data.csv``) and the config's conditions (``fit.json`` ``inputs``);
:func:`load_fit` rebuilds them, so the objective re-evaluated through the loaded problem at the
loaded estimates equals the saved -2 log L (to 1e-10 relative; the exact path at rtol 1e-10
reproduces itself to ~1e-11) and the residuals are identical. Four fits, each a few subjects:
theophylline (pk_oral, dose records), a 3-condition turnover model (condition overrides and a
condition's dose), a measured-SD data set and a weight covariate that changes over time.

Also: :func:`designs_sha256` sees the inputs, the figures' curves go through the fit's
predictions at the data times (with the subjects' own doses), and ``compare`` says what it does
with a dosed fit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import FitError
from progression.fit import load_fit, parse_fit_config, read_fit_config
from progression.fit.estimate import designs_sha256, read_data
from progression.fit.problem import designs_from_cohort
from progression.fit.report import subject_curves, write_figures

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from test_fit_conditions import CONDITIONS, FIT, ONE, _condition_cohort, _data  # noqa: E402
from test_fit_measured_sd import CONFIG as SD_CONFIG  # noqa: E402
from test_fit_measured_sd import _cohort as sd_cohort  # noqa: E402

RTOL = 1e-10


def theoph_fit():
    cfg = read_fit_config(ROOT / "configs" / "theoph_individual.toml")
    cfg = dataclasses.replace(cfg, data={**cfg.data, "subjects": ["1", "2", "3"]})
    return pg.fit(cfg)


def conditions_fit(tmp_path):
    (tmp_path / "one.toml").write_text(ONE)
    cfg = parse_fit_config(FIT.format(model=tmp_path / "one.toml", errors="[error.y]\n"
                                      "model = \"additive\"\na = 0.1", extra="")
                           + CONDITIONS, check_data=False, source="one.toml")
    return pg.fit(cfg, data=_condition_cohort(_data(n=2)))


def measured_sd_fit():
    cfg = parse_fit_config(SD_CONFIG.format(estimate="subject"), check_data=False)
    return pg.fit(cfg, data=sd_cohort())


BOLUS = """
[fit]
name = "bolus_wt"
model = "{model}"
[data]
path = "{data}"
subjects = ["1", "2", "3"]
[error.conc]
model = "proportional"
b = {{ value = 0.2, estimate = "subject", bounds = [0.01, 1.0] }}
[parameters.CL_pop]
estimate = "subject"
value = 3.0
bounds = [0.1, 100.0]
[parameters.V_pop]
value = 50.0
[solver]
# the reported objective comes from the polish's last evaluation, whose rows shared stacked
# solves with other companions: at the default exact-path rtol 1e-10 this fit re-evaluates
# to 3e-10 relative (its total 9.5 is a sum of terms of +-26); at 1e-12 far below 1e-10
rtol = 1e-12
atol = 1e-14
[output]
figures = false
"""


def covariate_designs():
    """Three subjects of tests/data/nonmem_bolus.csv, their weight rising by 20% at 24 h (a
    covariate that changes over time), and the config."""
    cfg = parse_fit_config(BOLUS.format(model=(HERE / "models" / "pk_iv_bolus_wt.toml")
                                        .as_posix(),
                                        data=(HERE / "data" / "nonmem_bolus.csv").as_posix()))
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    out = []
    for d in designs:
        (name, _, wt), = d.covariates
        out.append(d.replace(covariates=((name, np.array([0.0, 24.0]),
                                          np.array([wt[0], 1.2 * wt[0]])),)))
    return cfg, out


def covariate_fit():
    cfg, designs = covariate_designs()
    return pg.fit(cfg, data=designs)


def _roundtrip(result, folder):
    result.save(folder, figures=False)
    return load_fit(folder)


def _evaluate(r):
    return r.reported_problem.evaluate(r.designs, np.arange(r.n_subjects), r.theta,
                                       r.reported_problem.subject_cols, want_info=True,
                                       want_predictions=True)


def _check_same_objective(result, back, rtol=RTOL):
    """The loaded problem evaluates the loaded estimates to the saved -2 log L (``rtol``);
    the same evaluation of the fit in memory and of the loaded fit agree bit for bit
    (nothing of the likelihood is lost on the way); residuals and predictions are the fit's."""
    ev = _evaluate(back)
    np.testing.assert_allclose(ev.m2ll.sum(), result.objective, rtol=rtol)
    mem = _evaluate(result)
    np.testing.assert_array_equal(ev.m2ll, mem.m2ll)
    np.testing.assert_array_equal(ev.info, mem.info)
    np.testing.assert_allclose(back.objective, result.objective, rtol=1e-15)
    for f_new, f_fit in zip(ev.predictions, result.predictions, strict=True):
        np.testing.assert_allclose(f_new, f_fit, rtol=1e-8, atol=1e-12)
    a, b = result.residuals(), back.residuals()
    for x, y in zip(a.residuals, b.residuals, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.predictions, b.predictions, strict=True):
        np.testing.assert_array_equal(x, y)


def _same_designs(a, b):
    for d, e in zip(a, b, strict=True):
        assert d.doses == e.doses and d.dose_records == e.dose_records
        assert len(d.covariates) == len(e.covariates)
        for (n1, t1, v1), (n2, t2, v2) in zip(d.covariates, e.covariates, strict=True):
            assert n1 == n2
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(v1, v2)
        for key in ("condition", "sd"):
            x, y = getattr(d, key), getattr(e, key)
            assert (x is None) == (y is None), key
            if x is not None:
                np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def theoph():
    return theoph_fit()


def test_dosed_fit_keeps_its_doses(theoph, tmp_path):
    back = _roundtrip(theoph, tmp_path / "fit")
    assert (tmp_path / "fit" / "doses.csv").is_file()
    assert all(len(d.doses) == 1 and d.dose_records for d in back.designs)
    _same_designs(theoph.designs, back.designs)
    _check_same_objective(theoph, back)
    # without the doses (as load_fit rebuilt designs before) the model predicts 100 mg's
    # default dose parameter at 0 for dose-record subjects: the objective would be far off
    bare = [d.replace(doses=(), dose_records=False) for d in back.designs]
    ev = back.reported_problem.evaluate(bare, np.arange(3), back.theta, np.array([], int),
                                        want_jac=False)
    assert abs(ev.m2ll.sum() - theoph.objective) > 10.0


def test_conditioned_fit_keeps_its_conditions(tmp_path):
    result = conditions_fit(tmp_path)
    back = _roundtrip(result, tmp_path / "fit")
    assert [c.name for c in back.conditions] == ["low", "high", "pulse"]
    assert back.conditions == result.conditions          # overrides and the pulse's dose
    assert back.problem.conditions == result.conditions
    _same_designs(result.designs, back.designs)
    _check_same_objective(result, back)


def test_measured_sd_fit_keeps_its_sds(tmp_path):
    result = measured_sd_fit()
    back = _roundtrip(result, tmp_path / "fit")
    assert all(d.sd is not None for d in back.designs)
    _same_designs(result.designs, back.designs)
    _check_same_objective(result, back)


def test_time_varying_covariate_is_kept(tmp_path):
    result = covariate_fit()
    back = _roundtrip(result, tmp_path / "fit")
    rows = list(csv.DictReader((tmp_path / "fit" / "covariates.csv").open()))
    assert len(rows) == 6 and {r["covariate"] for r in rows} == {"WT"}
    _same_designs(result.designs, back.designs)
    _check_same_objective(result, back)


def test_a_file_without_inputs_loads_as_before(tmp_path):
    """A progression-fit/2 folder written before the inputs were saved (no ``inputs`` key, no
    condition/sd columns) loads with designs without inputs, as it always did."""
    result = measured_sd_fit()
    # the SD-free version of this fit: an additive error, no inputs at all
    cfg = parse_fit_config(SD_CONFIG.format(estimate="subject").replace(
        'model = "measured"', 'model = "additive"\na = { value = 0.1, estimate = "subject" }'),
        check_data=False)
    result = pg.fit(cfg, data=sd_cohort())
    folder = tmp_path / "fit"
    result.save(folder, figures=False)
    doc = json.loads((folder / "fit.json").read_text())
    assert doc["inputs"] == {"dose_records": [False] * 3, "conditions": [], "files": []}
    del doc["inputs"]
    (folder / "fit.json").write_text(json.dumps(doc))
    rows = list(csv.DictReader((folder / "data.csv").open()))
    with (folder / "data.csv").open("w", newline="") as fh:
        keep = [k for k in rows[0] if k not in ("condition", "sd")]
        w = csv.DictWriter(fh, keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    back = load_fit(folder)
    assert back.conditions == () and all(
        not d.doses and not d.covariates and d.condition is None and d.sd is None
        for d in back.designs)
    np.testing.assert_array_equal(back.theta, result.theta)
    _check_same_objective(result, back)


def test_missing_or_foreign_dose_file_is_refused(theoph, tmp_path):
    folder = tmp_path / "fit"
    theoph.save(folder, figures=False)
    spare = tmp_path / "doses.csv"
    shutil.move(folder / "doses.csv", spare)
    with pytest.raises(FitError, match=r"doses\.csv: missing, but .*fit\.json says"):
        load_fit(folder)
    text = spare.read_text().replace("\n2,", "\n99,")
    (folder / "doses.csv").write_text(text)
    with pytest.raises(FitError, match=r"doses\.csv, row 3: subject '99' is not one of"):
        load_fit(folder)


def test_designs_sha256_sees_the_inputs(theoph):
    designs = theoph.designs
    base = designs_sha256(designs)
    assert designs_sha256(list(designs)) == base
    d0 = designs[0]
    x = d0.doses[0]
    changed = {
        "amount": dataclasses.replace(d0, doses=(dataclasses.replace(x, amount=x.amount * 2),)),
        "dose time": dataclasses.replace(d0, doses=(dataclasses.replace(x, time=0.5),)),
        "no doses": d0.replace(doses=()),
        "dose records": d0.replace(dose_records=False),
        "covariate": d0.replace(covariates=(("WT", np.zeros(1), np.array([70.0])),)),
        "condition": d0.replace(condition=np.full(d0.n, "fed")),
        "sd": d0.replace(sd=np.ones(d0.n)),
    }
    hashes = {k: designs_sha256([d, *designs[1:]]) for k, d in changed.items()}
    assert base not in hashes.values()
    assert len(set(hashes.values())) == len(hashes)
    # data without inputs hash as before the inputs were hashed
    plain = [d.replace(doses=(), dose_records=False) for d in designs]
    import hashlib

    h = hashlib.sha256()
    for d in plain:
        h.update(d.id.encode())
        for a in (d.time, d.obs, d.value, d.cens, d.limit):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        h.update(np.float64(d.offset_covariate).tobytes())
    assert designs_sha256(plain) == h.hexdigest()


def test_figure_curves_pass_through_the_predictions(theoph, tmp_path):
    """The individual-fit figure draws, at the data times, the fit's own predictions (with
    the subjects' doses: Theoph peaks near 8-10 mg/L, the model's default 100 mg dose would
    give ~3); the figures are written."""
    curves = subject_curves(theoph)
    assert len(curves) == 3
    for i, d in enumerate(theoph.designs):
        (key,) = curves[i]
        t, f = curves[i][key]
        at = np.searchsorted(t, d.time)
        np.testing.assert_array_equal(t[at], d.time)
        np.testing.assert_allclose(f[at], theoph.predictions[i], rtol=1e-8, atol=1e-10)
        assert f.size >= 400 and 6.0 < np.nanmax(f) < 12.0
    files = write_figures(theoph, tmp_path / "figs")
    assert {f.name for f in files} >= {"fits_conc.png", "observed_vs_predicted.png"}


def test_figure_curves_per_condition(tmp_path):
    """One curve per condition, each through its condition's predictions at the data times."""
    result = conditions_fit(tmp_path)
    curves = subject_curves(result)
    for i, d in enumerate(result.designs):
        assert sorted(c for _, c in curves[i]) == ["high", "low", "pulse"]
        for (_, c), (t, f) in curves[i].items():
            sel = d.condition == c
            at = np.searchsorted(t, d.time[sel])
            np.testing.assert_allclose(f[at], result.predictions[i][sel], rtol=1e-8,
                                       atol=1e-10)


def test_compare_on_a_loaded_dosed_fit_says_the_doses_are_not_used(theoph, tmp_path):
    back = _roundtrip(theoph, tmp_path / "fit")
    comp = pg.compare(back, {"double CL": []}, horizon=24.0, step=1.0,
                      endpoints=pg.Endpoints(function="conc", threshold=1.0, markers=()))
    text = " ".join(comp.notes)
    assert "dose records (3 subjects)" in text and "without the data's dose records" in text
    assert "without the data's dose records" in comp.to_markdown()


def test_config_accepts_a_newly_registered_estimator(tmp_path, monkeypatch):
    """``[fit] estimator`` is checked against the registry itself: registering a name is all
    it takes (no second list to edit); an unregistered name is still refused by key."""
    from _decay_support import config as decay_config

    from progression.errors import ConfigError
    from progression.fit.estimators import ESTIMATORS, Individual

    with pytest.raises(ConfigError, match=r"fit\.estimator.*found 'my_method'"):
        decay_config(tmp_path, estimator="my_method")
    monkeypatch.setitem(ESTIMATORS, "my_method", Individual)
    assert decay_config(tmp_path, estimator="my_method").estimator == "my_method"


def test_fit_result_simulate_applies_the_subjects_doses_and_covariates(theoph):
    """``FitResult.simulate`` gives each subject its own dose records and covariates (model
    time), so at the data times it reproduces the fit's predictions (both at tight tolerances:
    measured 5e-11 and 6e-11 relative)."""
    for r in (theoph, covariate_fit()):
        t = np.unique(np.concatenate([d.time for d in r.designs]))
        sim = r.simulate(t, rtol=1e-11, atol=1e-13)
        for i, d in enumerate(r.designs):
            f = np.asarray(sim["conc"][i])[np.searchsorted(t, d.time)]
            np.testing.assert_allclose(f, r.predictions[i], rtol=1e-8, atol=1e-12)
    # the doses can still be replaced (here: none at all, so the record-free dose applies)
    t = np.array([1.0, 2.0])
    assert not np.allclose(theoph.simulate(t, doses=[])["conc"], theoph.simulate(t)["conc"])


def test_a_subject_seen_once_gets_a_curve_over_a_tenth_of_the_longest_follow_up(theoph):
    """A single-visit subject's panel spanned 5e-8 h; it now shows a tenth of the longest
    follow-up (its dose's rise included)."""
    d0, d1, d2 = theoph.designs
    once = d2.replace(time=d2.time[3:4], obs=d2.obs[3:4], value=d2.value[3:4],
                      cens=d2.cens[3:4], limit=d2.limit[3:4])
    curves = subject_curves(dataclasses.replace(theoph, designs=[d0, d1, once]))
    (t, f), = curves[2].values()
    longest = max(float(np.max(d.time)) for d in (d0, d1))
    assert t[0] == 0.0 and t[-1] >= 0.1 * longest - 1e-12
    assert np.nanmax(f) > 4.0                                # the dose is there


def test_report_names_the_inputs(theoph, tmp_path):
    theoph.save(tmp_path / "fit", figures=False)
    text = (tmp_path / "fit" / "report.md").read_text()
    assert "- inputs: 3 dose records of 3 subjects (`doses.csv`)" in text
    result = covariate_fit()
    result.save(tmp_path / "cov", figures=False)
    text = (tmp_path / "cov" / "report.md").read_text()
    assert "covariates WT (WT changing over time) (`covariates.csv`)" in text
