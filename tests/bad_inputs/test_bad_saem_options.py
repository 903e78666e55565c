"""``[estimator]`` SAEM options (``saem_exploration``, ``saem_smoothing``, ``saem_chains``,
``is_samples``) malformed: ``progression fit CONFIG`` exits 2 with one message naming the file
and the key, no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the shipped config without its own SAEM settings (each test sets one)
BASE = "\n".join(line for line in
                 (ROOT / "configs" / "theoph_population_saem.toml").read_text().splitlines()
                 if not line.startswith(("saem_", "is_samples"))) + "\n"


@pytest.mark.parametrize("key, value, found", [
    ("saem_exploration", "0", "0"), ("saem_smoothing", '"long"', "long"),
    ("saem_chains", "-1", "-1"), ("saem_chains", "1.5", "1.5"), ("is_samples", "10", "10"),
    ("is_samples", "true", "boolean")],
    ids=["no exploration", "smoothing a string", "negative chains", "fractional chains",
         "too few IS draws", "IS draws a boolean"])
def test_bad_saem_option_refused(cli, refused, unchanged, tmp_path, key, value, found):
    text = (BASE.replace('"../data/examples/theoph.csv"',
                         repr(str(ROOT / "data/examples/theoph.csv")))
            .replace('folder = "../fits/theoph_population_saem"',
                     f'folder = {str(tmp_path / "out")!r}')
            .replace("[estimator]\n", f"[estimator]\n{key} = {value}\n"))
    path = tmp_path / "pop.toml"
    path.write_text(text)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), f"estimator.{key}", "integer", found)


def _config_with(tmp_path, line: str) -> Path:
    text = (BASE.replace('"../data/examples/theoph.csv"',
                         repr(str(ROOT / "data/examples/theoph.csv")))
            .replace('folder = "../fits/theoph_population_saem"',
                     f'folder = {str(tmp_path / "out")!r}')
            .replace("[estimator]\n", f"[estimator]\n{line}\n"))
    path = tmp_path / "pop.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("line, found", [
    ('saem_covariance = "louis"', "louis"), ("saem_covariance = 1", "1"),
    ('saem_exploration = "automatic"', "automatic")],
    ids=["unknown covariance method", "covariance method a number", "exploration misspelt"])
def test_bad_saem_choice_refused(cli, refused, unchanged, tmp_path, line, found):
    path = _config_with(tmp_path, line)
    key = line.split(" = ")[0]
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), f"estimator.{key}", found)


def test_auto_iterations_and_covariance_choice_read(tmp_path):
    from progression.fit import EstimatorOptions
    from progression.fit.config import read_fit_config
    from progression.fit.estimators.saem import covariance_choice, saem_options

    path = _config_with(tmp_path, 'saem_exploration = "auto"\nsaem_smoothing = "auto"\n'
                                  'saem_covariance = "focei"')
    opts = EstimatorOptions.coerce(read_fit_config(path).options)
    assert (opts.saem_exploration, opts.saem_smoothing) == ("auto", "auto")
    so = saem_options(opts)
    assert so.auto_k2 and so.k2 > 0 and so.k1 == 300
    assert covariance_choice(opts) == "focei"
    # numbers keep their meaning: exactly that many smoothing iterations
    path = _config_with(tmp_path, "saem_smoothing = 50")
    opts = EstimatorOptions.coerce(read_fit_config(path).options)
    assert saem_options(opts).k2 == 50 and not saem_options(opts).auto_k2
    assert covariance_choice(opts) == "sa"
