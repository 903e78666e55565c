"""The case bootstrap of a population fit (``[estimator] uncertainty = ["covariance",
"bootstrap"]``, ``bootstrap_samples``) asked with malformed settings: ``progression fit
CONFIG`` exits 2 with one message naming the file and the key, no traceback, nothing
written; the parametric bootstrap of per-subject fits keeps its refusal of a Student-t
residual."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the same config helper as the importance_ofv checks: the shipped Theoph config, its data and
# output folder in tmp_path, lines added to [estimator]
from test_bad_importance_ofv import _config  # noqa: E402

BOOT = 'uncertainty = ["covariance", "bootstrap"]\n'


@pytest.mark.parametrize("name, lines, key, found", [
    ("theoph_population.toml", BOOT + "bootstrap_samples = 1", "estimator.bootstrap_samples",
     "1"),
    ("theoph_population.toml", BOOT + "bootstrap_samples = 2.5",
     "estimator.bootstrap_samples", "2.5"),
    ("theoph_population.toml", BOOT + 'bootstrap_samples = "many"',
     "estimator.bootstrap_samples", "many"),
    ("theoph_population_saem.toml", 'uncertainty = ["covariance", "bootstrapping"]',
     "estimator.uncertainty", "bootstrapping"),
    ("theoph_population.toml", "uncertainty = 3", "estimator.uncertainty", "3"),
    ("theoph_population.toml", BOOT + "bootstrap_stratify = 3",
     "estimator.bootstrap_stratify", "3"),
    ("theoph_population.toml", BOOT + 'bootstrap_stratify = "sex"',
     "estimator.bootstrap_stratify", "subject '1'"),
], ids=["one replicate", "a fraction", "a string", "misspelt method", "not a list",
        "stratify not a string", "stratify on a covariate the subjects lack"])
def test_bad_bootstrap_settings_refused(cli, refused, unchanged, tmp_path, name, lines, key,
                                        found):
    path = _config(tmp_path, name, lines)
    with unchanged(tmp_path / "out"):
        out = cli("fit", path)
    refused(out, str(path), key, found)


def test_t_residual_with_the_parametric_bootstrap_as_a_string_refused(cli, refused,
                                                                    unchanged, tmp_path):
    """``uncertainty = "bootstrap"`` (one method as a string) of a per-subject fit with a
    Student-t residual: refused like the array form (the parametric bootstrap draws normal
    residuals); it slipped through before 2026-12-03."""
    path = _config(tmp_path, "theoph_individual.toml", "")
    text = path.read_text().replace('uncertainty = ["covariance"]', 'uncertainty = "bootstrap"')
    text = text.replace('[error.conc]\nmodel = "additive"\n',
                        '[error.conc]\nmodel = "additive"\ndistribution = "t"\ndf = 3\n', 1)
    path.write_text(text)
    assert 'uncertainty = "bootstrap"' in text and 'distribution = "t"' in text
    with unchanged(tmp_path / "out"):
        out = cli("fit", path)
    refused(out, str(path), "error.conc.distribution", "bootstrap")


@pytest.mark.parametrize("value, found", [("1", "1"), ("0", "0"), ("-3", "-3")],
                         ids=["one", "zero", "negative"])
def test_bad_bootstrap_flag_refused(cli, refused, unchanged, tmp_path, value, found):
    path = _config(tmp_path, "theoph_population.toml", "")
    with unchanged(tmp_path / "out"):
        out = cli("fit", path, "--bootstrap", value)
    refused(out, "--bootstrap", "at least 2", found)


def test_bootstrap_flag_not_a_number(cli, unchanged, tmp_path):
    path = _config(tmp_path, "theoph_population.toml", "")
    with unchanged(tmp_path / "out"):
        out = cli("fit", path, "--bootstrap", "many")
    assert out.code == 2 and "--bootstrap" in out.err and "Traceback" not in out.err


def test_bootstrap_flag_on_a_per_subject_t_fit_refused(cli, refused, unchanged, tmp_path):
    """``--bootstrap`` adds the parametric bootstrap to a per-subject fit: with a Student-t
    residual it is refused at the start of the fit, as the config key is."""
    path = _config(tmp_path, "theoph_individual.toml", "")
    text = path.read_text().replace('[error.conc]\nmodel = "additive"\n',
                                    '[error.conc]\nmodel = "additive"\ndistribution = "t"\n'
                                    'df = 3\n', 1)
    path.write_text(text)
    with unchanged(tmp_path / "out"):
        out = cli("fit", path, "--bootstrap", "5")
    refused(out, str(path), "estimator.uncertainty", "Student-t")
