"""Saved fit folders that cannot be read, named in a comparison config (``[source] fit``):
exit 2, one message naming the config, the key, the fit.json file and what is wrong (for a
fit.json of another format version: the version found and the versions this one reads),
nothing written."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "fits" / "als_synthetic_individual"


def compare_config(tmp_path, fit_folder) -> Path:
    cfg = tmp_path / "compare.toml"
    cfg.write_text(f'[source]\nfit = "{fit_folder.name}"\n\n[compare]\nhorizon = 6\n\n'
                   '[scenarios]\n"no treatment" = []\n')
    return cfg


def saved_fit(tmp_path, edit) -> Path:
    folder = tmp_path / "fit"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("figures"))
    path = folder / "fit.json"
    path.write_text(edit(path.read_text()))
    return folder


def _format(version):
    def edit(text):
        doc = json.loads(text)
        doc["format"] = version
        return json.dumps(doc)
    return edit


@pytest.mark.parametrize(("edit", "names"), [
    (_format("progression-fit/7"), ["'progression-fit/7'", "'progression-fit/1'",
                                    "'progression-fit/2'", "format version"]),
    (_format(None), ["not a progression fit", "None"]),
    (_format("nonmem-fit/1"), ["not a progression fit", "'nonmem-fit/1'"]),
    (lambda text: text[: len(text) // 2], ["not valid JSON"]),
    (lambda text: "[]", ["expected a JSON object"]),
], ids=["future version", "no version", "another format", "truncated", "not an object"])
def test_an_unreadable_fit_folder_is_refused_by_name(cli, refused, unchanged, tmp_path, edit,
                                                     names):
    folder = saved_fit(tmp_path, edit)
    cfg = compare_config(tmp_path, folder)
    with unchanged(tmp_path):
        out = cli("compare", cfg, "--out", tmp_path / "out", "--no-figures")
    refused(out, str(cfg), "source.fit", str(folder / "fit.json"), *names)
