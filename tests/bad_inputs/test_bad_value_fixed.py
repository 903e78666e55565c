"""``[parameters.NAME] value_fixed`` (a typical value held while its random effect is
estimated) malformed: ``progression fit CONFIG`` exits 2 with one message naming the file and
the key, expected vs found, no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "configs" / "theoph_population_saem.toml").read_text()
V_BLOCK = ('[parameters.V]\nestimate = "population"\nvalue = 31.500             # exp(3.45) L\n'
           'bounds = [1.0, 500.0]\nscale = "log"\neta = 0.1\n')


def _config(tmp_path, block: str) -> Path:
    assert V_BLOCK in BASE
    text = (BASE.replace('"../data/examples/theoph.csv"',
                         repr(str(ROOT / "data/examples/theoph.csv")))
            .replace('folder = "../fits/theoph_population_saem"',
                     f'folder = {str(tmp_path / "out")!r}')
            .replace(V_BLOCK, block))
    path = tmp_path / "pop.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("block, words", [
    (V_BLOCK + "value_fixed = 1\n", ("expected true or false", "1")),
    (V_BLOCK + 'value_fixed = "yes"\n', ("expected true or false", "yes")),
    (V_BLOCK.replace("eta = 0.1\n", "") + "value_fixed = true\n",
     ("without a random effect", "eta = <variance>")),
    (V_BLOCK.replace("value = 31.500             # exp(3.45) L\n", "")
     + "value_fixed = true\n", ("needs its value", "value = <typical value>")),
    (V_BLOCK.replace('estimate = "population"', 'estimate = "subject"').replace(
        "eta = 0.1\n", "") + "value_fixed = true\n", ("estimate = \"population\"",
                                                       "subject"))],
    ids=["number", "string", "no random effect", "no value", "not a population parameter"])
def test_bad_value_fixed_refused(cli, refused, unchanged, tmp_path, block, words):
    path = _config(tmp_path, block)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "parameters.V.value_fixed", *words)


def test_value_fixed_read(tmp_path):
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(_config(tmp_path, V_BLOCK + "value_fixed = true\n"))
    assert cfg.parameter("V").value_fixed and not cfg.parameter("CL").value_fixed
