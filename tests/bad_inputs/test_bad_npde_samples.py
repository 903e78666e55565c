"""``[estimator] npde_samples`` (replicates behind a population fit's NPDE and VPC) malformed:
``progression fit CONFIG`` exits 2 with one message naming the file and the key, no traceback,
nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "configs" / "theoph_population.toml").read_text()


@pytest.mark.parametrize("value, found", [("5", "5"), ('"many"', "many"), ("2.5", "2.5"),
                                          ("true", "boolean")],
                         ids=["too few", "a string", "not an integer", "a boolean"])
def test_bad_npde_samples_refused(cli, refused, unchanged, tmp_path, value, found):
    text = (BASE.replace('"../data/examples/theoph.csv"',
                         repr(str(ROOT / "data/examples/theoph.csv")))
            .replace('folder = "../fits/theoph_population"',
                     f'folder = {str(tmp_path / "out")!r}'))
    path = tmp_path / "pop.toml"
    path.write_text(text + f"\n[estimator]\nnpde_samples = {value}\n")
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "estimator.npde_samples", "integer", found)
