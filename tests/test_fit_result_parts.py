"""FitResult built from parts: the same attributes whatever the estimator, the population part
as a placeholder, fit.json format versions (format 2 written; format 1 — every fit saved before
the estimator registry, e.g. the shipped fit — still read; an unknown version refused by name).
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit import (
    FitResult,
    IndividualPart,
    PopulationPart,
    Predictions,
    fit,
    load_fit,
)
from progression.fit.result import FORMAT, READABLE

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import config, decay_data  # noqa: E402

SHIPPED = Path(__file__).parent.parent / "fits" / "als_synthetic_individual"
#: The shipped fit as written in format 1 (commit 40886a4, before FitResult was built from
#: parts), kept without its figures so that format-1 loading stays tested after fits/ moves on.
FORMAT_1 = Path(__file__).parent / "data" / "fit_format1_als"
#: -2 log L of the shipped fit (fits/als_synthetic_individual/fit.json, format 1)
SHIPPED_M2LL = 11917.456281630664


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parts")
    data = decay_data(k_true=(0.7, 0.7, 0.7), x0=(1.5, 2.5, 4.0), seed=3)
    indiv = fit(config(tmp, extra='uncertainty = ["covariance", "bootstrap"]\n'
                                   "bootstrap_samples = 8\n"), data=data)
    pooled = fit(config(tmp, estimator="pooled", k="shared", x0="subject",
                        extra='uncertainty = ["covariance", "profile"]\nprofile_points = 6\n'),
                 data=data)
    return {"individual": indiv, "pooled": pooled}


#: Every attribute existing users read, whatever the estimator.
ATTRIBUTES = ("name", "kind", "model", "subject_ids", "parameters", "observables",
              "error_models", "solver", "theta", "se", "intervals", "x_cols", "x_rows", "x_hat",
              "blocks", "subject_objective", "n_obs", "converged", "messages", "nfev",
              "starts_objective", "best_start", "failures", "before_zero", "designs",
              "predictions", "open_intervals", "profiles", "bootstrap", "warnings",
              "counters", "timings", "provenance", "confidence", "objective", "aic", "bic",
              "n_estimated", "n_subjects", "failed_subjects", "time_offsets",
              "subject_parameters", "interval_methods", "individual", "population")


@pytest.mark.parametrize("kind", ["individual", "pooled"])
def test_same_attributes_whatever_the_estimator(fits, kind):
    res = fits[kind]
    assert isinstance(res, FitResult) and res.kind == kind
    for name in ATTRIBUTES:
        getattr(res, name)
    assert isinstance(res.individual, IndividualPart)
    assert res.population is None                 # no population estimator yet
    assert isinstance(res.model_predictions, Predictions)
    # the flat attributes are views of the parts, not copies
    assert res.theta is res.individual.estimates.theta
    assert res.se is res.individual.uncertainty.se
    assert res.subject_objective is res.individual.diagnostics.subject_objective
    assert res.predictions is res.model_predictions.values
    assert res.warnings == (list(res.individual.diagnostics.warnings)
                            + list(res.individual.uncertainty.warnings))
    assert res.objective == pytest.approx(float(np.sum(res.subject_objective)), rel=1e-15)
    resid, pred = res.residuals()
    for i, d in enumerate(res.designs):
        np.testing.assert_allclose(resid[i], (d.value - pred[i]) / 0.05, rtol=1e-10)
    # every interval method is named
    assert set(res.interval_methods) == set(res.intervals)
    assert res.interval_methods["covariance"].startswith("observed information")
    assert res.individual.diagnostics.numbers_from == res.provenance["numbers_from"]
    assert res.counters["simulations"] > 0
    with pytest.raises(AttributeError):
        res.theta = res.theta                      # a view: set through the parts


def test_pooled_covariance_is_joint_and_named_by_entry(fits):
    names, cov = fits["pooled"].covariance()
    assert names == ("k", "x0[S1]", "x0[S2]", "x0[S3]") and cov.shape == (4, 4)
    names, cov = fits["individual"].covariance("S2")
    assert names == ("k",) and cov.shape == (1, 1)
    assert fits["pooled"].interval_methods["profile"] == "profile likelihood"
    assert fits["individual"].interval_methods["bootstrap"].startswith("parametric bootstrap")


@pytest.mark.parametrize("kind", ["individual", "pooled"])
def test_saved_fit_has_a_format_version_and_loads_back_part_by_part(fits, kind, tmp_path):
    res = fits[kind]
    res.save(tmp_path / "fit", figures=False)
    doc = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert doc["format"] == FORMAT == "progression-fit/2"
    assert doc["estimator"] == kind and doc["population"] is None
    assert doc["interval_methods"] == res.interval_methods
    back = load_fit(tmp_path / "fit")
    assert back.kind == kind and back.population is None
    a, b = res.individual, back.individual
    np.testing.assert_array_equal(a.estimates.theta, b.estimates.theta)
    np.testing.assert_array_equal(a.estimates.x_hat, b.estimates.x_hat)
    np.testing.assert_array_equal(a.uncertainty.se, b.uncertainty.se)
    assert a.uncertainty.joint == b.uncertainty.joint == (kind == "pooled")
    assert a.uncertainty.methods == b.uncertainty.methods
    assert a.uncertainty.warnings == b.uncertainty.warnings
    assert a.diagnostics.warnings == b.diagnostics.warnings
    assert a.diagnostics.method == b.diagnostics.method
    for k in res.intervals:
        np.testing.assert_array_equal(res.intervals[k], back.intervals[k])
    np.testing.assert_array_equal(res.subject_objective, back.subject_objective)
    for i in range(res.n_subjects):
        np.testing.assert_array_equal(res.predictions[i], back.predictions[i])
        np.testing.assert_allclose(res.residuals().residuals[i], back.residuals().residuals[i],
                                   rtol=1e-12)
    assert back.covariance()[0] == res.covariance()[0]
    assert back.counters == res.counters == doc["counters"]
    assert back.individual.diagnostics.work == res.individual.diagnostics.work


def test_a_population_part_is_saved_and_loaded_when_there_is_one(fits, tmp_path):
    """The placeholder's fields round-trip, so a population estimator only has to fill it."""
    import dataclasses

    pop = PopulationPart(fixed_effects={"k": 0.7}, fixed_effects_se={"k": 0.01},
                         omega_names=("k",), omega=np.array([[0.04]]), sigma={"log_x.a": 0.05},
                         ebes=np.array([[0.1], [-0.2], [0.05]]), shrinkage={"k": 0.3})
    res = dataclasses.replace(fits["pooled"], population=pop)
    res.save(tmp_path / "fit", figures=False)
    back = load_fit(tmp_path / "fit").population
    assert back.fixed_effects == {"k": 0.7} and back.shrinkage == {"k": 0.3}
    assert back.omega_names == ("k",)
    np.testing.assert_array_equal(back.omega, pop.omega)
    np.testing.assert_array_equal(back.ebes, pop.ebes)


def test_the_shipped_format_1_fit_still_loads():
    assert json.loads((FORMAT_1 / "fit.json").read_text())["format"] == "progression-fit/1"
    res = load_fit(FORMAT_1)
    assert res.objective == pytest.approx(SHIPPED_M2LL, rel=1e-12)
    assert res.kind == "individual" and res.n_subjects == 200 and res.n_estimated == 1000
    assert not res.individual.uncertainty.joint
    assert len(res.blocks) == 200
    assert res.interval_methods == {"covariance": res.interval_methods["covariance"]}
    assert res.population is None
    doc = json.loads((FORMAT_1 / "fit.json").read_text())
    assert res.warnings == doc["warnings"]
    assert res.counters == doc["counters"]
    assert res.individual.diagnostics.work.simulations == doc["counters"]["simulations"]
    assert "individual" in res.summary()
    draws = res.parameter_draws(3, rng=1)
    assert draws.parameters.shape == (3, 200, res.model.n_parameters)


def test_a_format_1_pooled_fit_reads_as_a_joint_covariance(fits, tmp_path):
    """Format 1 had no 'joint_covariance' key: its 'kind' said it."""
    res = fits["pooled"]
    res.save(tmp_path / "fit", figures=False)
    path = tmp_path / "fit" / "fit.json"
    doc = json.loads(path.read_text())
    for key in ("estimator", "method", "interval_methods", "joint_covariance",
                "diagnostic_warnings", "population"):
        del doc[key]
    doc["format"] = "progression-fit/1"
    path.write_text(json.dumps(doc))
    back = load_fit(tmp_path / "fit")
    assert back.kind == "pooled" and back.individual.uncertainty.joint
    assert back.covariance()[0] == res.covariance()[0]
    assert back.warnings == res.warnings
    assert set(back.interval_methods) == set(res.intervals)


@pytest.mark.parametrize("found", ["progression-fit/3", "progression-fit/99"])
def test_a_fit_of_an_unknown_format_version_is_refused_by_name(tmp_path, found):
    folder = tmp_path / "fit"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("figures"))
    doc = json.loads((folder / "fit.json").read_text())
    doc["format"] = found
    (folder / "fit.json").write_text(json.dumps(doc))
    with pytest.raises(FitError) as err:
        load_fit(folder)
    msg = str(err.value)
    assert str(folder / "fit.json") in msg and repr(found) in msg
    for version in READABLE:
        assert repr(version) in msg


def test_a_json_file_that_is_not_a_fit_is_refused(tmp_path):
    (tmp_path / "fit.json").write_text(json.dumps({"format": "something/1"}))
    with pytest.raises(FitError, match=r"fit.json: not a progression fit: key 'format' is "
                                       r"'something/1', expected 'progression-fit/1' or "
                                       r"'progression-fit/2'"):
        load_fit(tmp_path)
    (tmp_path / "fit.json").write_text("[1, 2]")
    with pytest.raises(FitError, match="expected a JSON object"):
        load_fit(tmp_path)


def test_the_shipped_fit_is_format_2_and_loads():
    doc = json.loads((SHIPPED / "fit.json").read_text())
    assert doc["format"] == "progression-fit/2"
    res = load_fit(SHIPPED)
    assert res.objective == pytest.approx(doc["objective"], rel=1e-12)
    assert res.kind == "individual" and res.n_subjects == 200 and res.population is None
