"""``[estimator] saem_covariance``: the choice ``"sandwich"`` is read, anything else near it
(a misspelling, another case, a table) is refused by ``progression fit CONFIG`` with exit 2
and one message naming the file, the key, the value found and the accepted choices; nothing
written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = "\n".join(line for line in
                 (ROOT / "configs" / "theoph_population_saem.toml").read_text().splitlines()
                 if not line.startswith(("saem_", "is_samples"))) + "\n"


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
    ('saem_covariance = "sandwhich"', "sandwhich"), ('saem_covariance = "robust"', "robust"),
    ('saem_covariance = "linearisation"', "linearisation")],
    ids=["misspelt", "another word", "British spelling of linearization"])
def test_bad_sandwich_choice_refused(cli, refused, unchanged, tmp_path, line, found):
    path = _config_with(tmp_path, line)
    with unchanged(tmp_path):
        out = cli("fit", path)
    # the accepted choices are named, the new one among them
    refused(out, str(path), "estimator.saem_covariance", found, "sandwich", "focei",
            "linearization")


def test_sandwich_choice_as_a_list_refused(cli, refused, unchanged, tmp_path):
    path = _config_with(tmp_path, 'saem_covariance = ["sandwich"]')
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "estimator.saem_covariance", "expected a string", "array")


def test_sandwich_choice_read(tmp_path):
    from progression.fit import EstimatorOptions
    from progression.fit.config import read_fit_config
    from progression.fit.estimators.saem import covariance_choice

    path = _config_with(tmp_path, 'saem_covariance = "sandwich"')
    opts = EstimatorOptions.coerce(read_fit_config(path).options)
    assert covariance_choice(opts) == "sandwich"
