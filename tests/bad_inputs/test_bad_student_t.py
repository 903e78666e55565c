"""``[error.OBS] distribution`` / ``df`` (Student-t residuals) malformed or asked of an
estimator that cannot take them: ``progression fit CONFIG`` exits 2 with one message naming
the file and the key, no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, name: str, error_lines: str, extra: str = "") -> Path:
    stem = name.removesuffix(".toml")
    text = (ROOT / "configs" / name).read_text()
    text = text.replace('"../data/examples/theoph.csv"',
                        repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace(f'folder = "../fits/{stem}"', f'folder = {str(tmp_path / "out")!r}')
    text = text.replace('[error.conc]\nmodel = "additive"\n',
                        f'[error.conc]\nmodel = "additive"\n{error_lines}', 1)
    if extra:
        text = text.replace("[estimator]\n", f"[estimator]\n{extra}\n", 1)
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("lines, key, found", [
    ('distribution = "t"\ndf = 0\n', "error.conc.df", "0"),
    ('distribution = "t"\ndf = -2.5\n', "error.conc.df", "-2.5"),
    ('distribution = "t"\ndf = "three"\n', "error.conc.df", "three"),
    ('distribution = "t"\n', "error.conc.df", "needs its degrees of freedom"),
    ('distribution = "normal"\ndf = 3\n', "error.conc.df", "distribution = \"normal\""),
    ('df = 3\n', "error.conc.df", "df = 3"),
    ('distribution = "cauchy"\n', "error.conc.distribution", "cauchy"),
    ('distribution = "T"\ndf = 3\n', "error.conc.distribution", "'T'"),
], ids=["df zero", "df negative", "df a string", "df missing", "df with normal",
        "df without distribution", "unknown distribution", "distribution upper case"])
def test_bad_distribution_refused(cli, refused, unchanged, tmp_path, lines, key, found):
    path = _config(tmp_path, "theoph_individual.toml", lines)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), key, found)


@pytest.mark.parametrize("name, extra, found", [
    ("theoph_population.toml", "", "focei"),
    ("theoph_population_saem.toml", 'saem_covariance = "focei"', "saem_covariance"),
    ("theoph_population_saem.toml", 'saem_covariance = "linearization"', "linearization"),
    ("theoph_individual.toml", 'uncertainty = ["covariance", "bootstrap"]', "bootstrap"),
], ids=["focei estimator", "saem with the focei covariance step",
        "saem with the linearization", "parametric bootstrap"])
def test_t_with_unsupported_estimator_refused(cli, refused, unchanged, tmp_path, name, extra,
                                              found):
    text_extra = extra
    if name == "theoph_individual.toml" and extra.startswith("uncertainty"):
        # the shipped config has its own uncertainty line: replace it
        path = _config(tmp_path, name, 'distribution = "t"\ndf = 3\n')
        path.write_text(path.read_text().replace('uncertainty = ["covariance"]', extra))
    else:
        path = _config(tmp_path, name, 'distribution = "t"\ndf = 3\n', text_extra)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "error.conc.distribution", found)


def test_t_with_measured_error_refused(cli, refused, unchanged, tmp_path):
    path = _config(tmp_path, "theoph_individual.toml", "")
    text = path.read_text().replace(
        '[error.conc]\nmodel = "additive"\n',
        '[error.conc]\nmodel = "measured"\ndistribution = "t"\ndf = 3\n', 1)
    # the measured model has no 'a': drop the additive SD line of the shipped config
    text = "\n".join(line for line in text.splitlines() if not line.startswith("a = {")) + "\n"
    path.write_text(text)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "error.conc.distribution", "measured")
