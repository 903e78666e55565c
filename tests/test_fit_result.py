"""FitResult: saving (atomic, reproducible), loading, sampling, pickling, the CLI."""

import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import FitError
from progression.fit import FitResult, fit, load_fit, read_fit_config

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import config_text, run_cli, simulate_cohort  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A config file and its data file, as a user has them."""
    folder = tmp_path_factory.mktemp("project")
    cohort, truth = simulate_cohort(3, seed=31, visits=np.arange(0.0, 13.0, 2.0),
                                    crp_limit=2.0)
    pg.write_cohort(cohort, folder / "data.csv", format="long")
    extra = ("\n[estimator]\nstarts = 2\nseed = 5\nuncertainty = [\"profile\"]\n"
             "profile_points = 4\n[output]\nfolder = \"fits/demo\"\n")
    (folder / "demo.toml").write_text(config_text("data.csv") + extra)
    return folder, truth


@pytest.fixture(scope="module")
def result(project):
    folder, _ = project
    return fit(read_fit_config(folder / "demo.toml"))


def test_fit_result_interface_for_interventions(result):
    m, P = 3, result.model.n_parameters
    assert result.model.name == "als_reduced"
    assert isinstance(result.subject_ids, tuple) and len(result.subject_ids) == m
    params = result.subject_parameters
    assert params.shape == (m, P)
    j = result.model.parameter_index("kA")
    np.testing.assert_array_equal(params[:, j], result.estimates("kA"))
    k0 = result.model.parameter_index("k0")
    assert np.all(params[:, k0] == result.model.defaults[k0])          # fixed at its value
    assert result.time_offsets.shape == (m,)
    np.testing.assert_array_equal(result.time_offsets, result.estimates("time_offset"))
    draws = result.sample_parameters(200, np.random.default_rng(0))
    assert draws.shape == (200, m, P)
    assert np.all(draws[:, :, k0] == params[:, k0])
    lo, hi = result.model.bounds[j]
    assert np.all((draws[:, :, j] >= lo) & (draws[:, :, j] <= hi))
    # the spread matches the standard errors (log scale: sd of log draws ~ se / estimate)
    sd = np.std(np.log(draws[:, :, j]), axis=0)
    np.testing.assert_allclose(sd, result.standard_errors("kA") / result.estimates("kA"),
                               rtol=0.25)
    names, corr = result.correlation("P002")
    assert names == ("kA", "eD", "time_offset")
    np.testing.assert_allclose(np.diag(corr), 1.0)
    p2, off = result.sample_parameters(5, 1, with_offsets=True)
    assert off.shape == (5, m)
    again = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(again.theta, result.theta)
    assert again.model.name == "als_reduced"


def test_result_reports_objective_criteria_counts_and_timings(result):
    assert np.isfinite(result.objective)
    assert result.aic == pytest.approx(result.objective + 2 * 9)
    assert result.bic == pytest.approx(result.objective + 9 * np.log(result.n_obs.sum()))
    assert result.converged.all() and len(result.messages) == 3
    assert result.counters["simulations"] > 0 and result.counters["subject_solves"] > 0
    assert {"data", "estimation", "covariance", "profile", "total"} <= set(result.timings)
    assert set(result.intervals) == {"covariance", "profile"}
    assert "kA" in result.summary()


def test_save_writes_everything_needed_to_reproduce(project, result, tmp_path):
    folder, _ = project
    out = result.save(tmp_path / "fit")
    names = {p.name for p in out.iterdir()}
    assert {"fit.json", "subjects.csv", "data.csv", "report.md", "figures"} <= names
    figs = {p.name for p in (out / "figures").iterdir()}
    assert {"fits_ALSFRS_R.png", "fits_NfL.png", "fits_CRP.png", "observed_vs_predicted.png",
            "residuals.png", "parameters.png", "profiles.png"} <= figs
    doc = json.loads((out / "fit.json").read_text())
    prov = doc["provenance"]
    assert prov["config_text"] == (folder / "demo.toml").read_text()
    assert "[parameters.kA]" in prov["model_text"]
    sha = hashlib.sha256((folder / "data.csv").read_bytes()).hexdigest()
    assert prov["data_sha256"] == sha
    assert {"progression", "numpy", "scipy", "lmfit", "python"} <= set(prov["versions"])
    assert prov["seed"] == 5
    report = (out / "report.md").read_text()
    assert "-2 log L" in report and "figures/residuals.png" in report
    header = (out / "subjects.csv").read_text().splitlines()[0]
    assert "kA_covariance_lo" in header and "kA_profile_hi" in header
    assert not list(tmp_path.glob(".fit.*"))            # no temporary folders left


def test_load_fit_restores_a_result_that_simulates(result, tmp_path):
    result.save(tmp_path / "fit", figures=False)
    back = load_fit(tmp_path / "fit")
    assert isinstance(back, FitResult)
    np.testing.assert_array_equal(back.theta, result.theta)
    np.testing.assert_allclose(back.se, result.se, equal_nan=True)
    np.testing.assert_array_equal(back.time_offsets, result.time_offsets)
    assert back.objective == pytest.approx(result.objective)
    assert back.warnings == result.warnings
    assert back.subject_ids == result.subject_ids
    np.testing.assert_array_equal(back.intervals["profile"], result.intervals["profile"])
    sim = back.simulate(np.linspace(0, 40, 5))
    assert sim.observables.shape[0] == 3
    np.testing.assert_allclose(back.sample_parameters(3, 7), result.sample_parameters(3, 7))
    # the restored data and predictions give the same residuals
    for a, b in zip(back.residuals().residuals, result.residuals().residuals, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, equal_nan=True)


def test_failure_while_saving_leaves_nothing(result, tmp_path, monkeypatch):
    from progression.fit import report  # `import progression.fit.report` would meet pg.fit()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_figures", boom)
    with pytest.raises(RuntimeError):
        result.save(tmp_path / "fit")
    assert list(tmp_path.iterdir()) == []


def test_load_fit_refuses_a_folder_that_is_not_a_fit(tmp_path):
    with pytest.raises(FitError, match="not a saved fit"):
        load_fit(tmp_path)


def test_cli_fit_writes_the_folder_named_in_the_config(project, capsys):
    folder, _ = project
    status, err = run_cli(str(folder / "demo.toml"), "--quiet", "--no-figures")
    assert status == 0, err
    out = capsys.readouterr().out
    assert "-2 log L" in out and "wrote" in out
    assert (folder / "fits" / "demo" / "fit.json").is_file()


def test_cli_out_overrides_and_jobs_must_be_positive(project, tmp_path, capsys):
    folder, _ = project
    status, err = run_cli(str(folder / "demo.toml"), "--jobs", "0", "--out", str(tmp_path / "x"))
    assert status == 2 and "--jobs" in err and not (tmp_path / "x").exists()
    status, err = run_cli(str(folder / "nope.toml"))
    assert status == 2 and "nope.toml" in err


def test_individual_fit_figures_show_subjects_with_values(result, monkeypatch):
    """A sparse observable's figure shows only the subjects that have values of it, and its
    title says how many have some; the other observables keep every subject."""
    import dataclasses
    import importlib

    report = importlib.import_module("progression.fit.report")
    crp = result.observables.index("CRP")
    designs = list(result.designs)
    for i in (0, 2):                      # subjects 0 and 2 lose their CRP values
        d = designs[i]
        keep = d.obs != crp
        designs[i] = d.replace(time=d.time[keep], obs=d.obs[keep], value=d.value[keep],
                               cens=d.cens[keep], limit=d.limit[keep])
    sparse = dataclasses.replace(result, designs=designs)
    seen = {}

    def record(fig, path, plt):
        seen[path.name] = (fig._suptitle.get_text(),
                           [ax.get_title() for ax in fig.axes if ax.axison])
        plt.close(fig)
        return path

    monkeypatch.setattr(report, "_save", record)
    import matplotlib.pyplot as plt

    report._individual_fits(sparse, Path("/nonexistent"), plt)
    title, panels = seen["fits_CRP.png"]
    assert panels == [designs[1].id]
    assert "with CRP values (1 of 3 have some)" in title
    assert seen["fits_ALSFRS_R.png"][1] == [d.id for d in designs]
    assert "have some" not in seen["fits_ALSFRS_R.png"][0]
