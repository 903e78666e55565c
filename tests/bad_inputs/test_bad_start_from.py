"""``[fit] start_from`` and ``progression fit --start-from``: a folder that is not a saved fit,
a per-subject fit, estimates outside the config's bounds, a value that is not a string: exit
2, one message naming the file and the key (or the folder), no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = repr(str(ROOT / "data/examples/theoph.csv"))


def _config(tmp_path, start_line: str, name: str = "theoph_population.toml",
            change: tuple = ()) -> Path:
    text = (ROOT / "configs" / name).read_text().replace('"../data/examples/theoph.csv"', DATA)
    stem = name.removesuffix(".toml")
    text = text.replace(f'folder = "../fits/{stem}"', f'folder = {str(tmp_path / "out")!r}')
    for old, new in change:
        text = text.replace(old, new, 1)
    if start_line:
        text = text.replace("[fit]\n", f"[fit]\n{start_line}\n", 1)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved FOCE-I fit and a saved per-subject fit of Theoph."""
    from progression.fit import fit, parse_fit_config

    root = tmp_path_factory.mktemp("fits")
    for name, sub in (("theoph_population.toml", "pop"), ("theoph_individual.toml", "ind")):
        text = (ROOT / "configs" / name).read_text().replace('"../data/examples/theoph.csv"',
                                                             DATA)
        fit(parse_fit_config(text, source=name, base_dir=ROOT / "configs")).save(
            root / sub, figures=False)
    return root


@pytest.mark.parametrize("line, found", [
    ("start_from = 3", "3"),
    ('start_from = "no/such/fit"', "no such folder"),
], ids=["not a string", "no such folder"])
def test_bad_start_from_key(cli, refused, unchanged, tmp_path, line, found):
    path = _config(tmp_path, line)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "fit.start_from", found)


def test_start_from_a_folder_without_a_fit(cli, refused, unchanged, tmp_path):
    (tmp_path / "empty").mkdir()
    path = _config(tmp_path, 'start_from = "empty"')
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "fit.start_from", "fit.json")


def test_start_from_a_per_subject_fit(cli, refused, unchanged, tmp_path, saved):
    path = _config(tmp_path, f"start_from = {str(saved / 'ind')!r}")
    with unchanged(tmp_path, saved):
        out = cli("fit", path)
    refused(out, str(path), "fit.start_from", "expected a population fit")


def test_start_from_estimates_outside_the_bounds(cli, refused, unchanged, tmp_path, saved):
    path = _config(tmp_path, f"start_from = {str(saved / 'pop')!r}",
                   change=(("value = 1.5683", "value = 1.0"),
                           ("bounds = [0.05, 100.0]", "bounds = [0.05, 1.2]")))
    with unchanged(tmp_path, saved):
        out = cli("fit", path)
    refused(out, str(path), "fit.start_from", "ka = ", "outside the config's bounds")


@pytest.mark.parametrize("which, found", [("nowhere", "no such folder"),
                                          ("ind", "expected a population fit")])
def test_bad_start_from_flag(cli, refused, unchanged, tmp_path, saved, which, found):
    path = _config(tmp_path, "")
    folder = saved / which
    with unchanged(tmp_path, saved):
        out = cli("fit", path, "--start-from", folder)
    refused(out, str(folder), found)
