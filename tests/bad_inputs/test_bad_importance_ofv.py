"""``[estimator] importance_ofv`` malformed or asked of an estimator that does not take it:
``progression fit CONFIG`` exits 2 with one message naming the file and the key, no
traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, name: str, line: str, estimator: str | None = None) -> Path:
    stem = name.removesuffix(".toml")
    text = (ROOT / "configs" / name).read_text()
    text = text.replace('"../data/examples/theoph.csv"',
                        repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace(f'folder = "../fits/{stem}"', f'folder = {str(tmp_path / "out")!r}')
    if estimator is not None:
        text = text.replace('estimator = "focei"', f'estimator = "{estimator}"', 1)
    if "[estimator]\n" in text:
        text = text.replace("[estimator]\n", f"[estimator]\n{line}\n", 1)
    else:
        text += f"\n[estimator]\n{line}\n"
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, line, estimator, found", [
    ("theoph_population.toml", 'importance_ofv = "yes"', None, "'yes'"),
    ("theoph_population.toml", "importance_ofv = 1", None, "1"),
    ("theoph_population_saem.toml", "importance_ofv = true", None, "'saem'"),
    ("theoph_individual.toml", "importance_ofv = true", None, "'individual'"),
], ids=["a string", "a number", "saem", "individual"])
def test_bad_importance_ofv_refused(cli, refused, unchanged, tmp_path, name, line, estimator,
                                   found):
    path = _config(tmp_path, name, line, estimator)
    with unchanged(tmp_path / "out"):
        out = cli("fit", path)
    refused(out, str(path), "estimator.importance_ofv", found)

