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
