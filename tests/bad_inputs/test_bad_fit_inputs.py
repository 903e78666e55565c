"""A saved fit's input files (``doses.csv``, ``covariates.csv``, ``fit.json`` ``inputs``) that
cannot be read, named in a comparison config (``[source] fit``): exit 2, one message naming
the config, the key, the file (and row, column) and what is wrong; nothing written."""

import dataclasses
import json
from pathlib import Path

import pytest

import progression as pg
from progression.fit import read_fit_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def theoph_folder(tmp_path_factory):
    """Theoph (3 subjects, dose records) saved once; each case edits a copy."""
    cfg = read_fit_config(ROOT / "configs" / "theoph_individual.toml")
    cfg = dataclasses.replace(cfg, data={**cfg.data, "subjects": ["1", "2", "3"]})
    folder = tmp_path_factory.mktemp("theoph") / "fit"
    pg.fit(cfg).save(folder, figures=False)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_doses(old, new):
    def edit(folder):
        path = folder / "doses.csv"
        path.write_text(path.read_text().replace(old, new, 1))
    return edit


def _drop_doses(folder):
    (folder / "doses.csv").unlink()


def _bad_condition(folder):
    path = folder / "fit.json"
    doc = json.loads(path.read_text())
    doc["inputs"]["conditions"] = [{"name": "fed", "parameters": "F_bio"}]
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(("edit", "names"), [
    (_drop_doses, ["doses.csv", "missing", "fit.json"]),
    (_edit_doses("\n2,0.0,", "\n99,0.0,"), ["doses.csv", "row 3", "subject '99'"]),
    (_edit_doses("318.56", "lots"), ["doses.csv", "row 3", "'amount'", "'lots'"]),
    (_edit_doses("subject,time,amount", "subject,time,amt"), ["doses.csv", "missing amount"]),
    (_bad_condition, ["fit.json", "inputs.conditions[0]", '"parameters": "F_bio"']),
], ids=["missing doses.csv", "foreign subject", "amount not a number", "column renamed",
        "malformed condition"])
def test_an_unreadable_input_file_is_refused_by_name(cli, refused, unchanged, tmp_path,
                                                     theoph_folder, edit, names):
    folder = _copy(theoph_folder, tmp_path / "fit")
    edit(folder)
    cfg = tmp_path / "compare.toml"
    cfg.write_text('[source]\nfit = "fit"\n\n[compare]\nhorizon = 6\n\n'
                   '[scenarios]\n"no treatment" = []\n')
    with unchanged(tmp_path):
        out = cli("compare", cfg, "--out", tmp_path / "out", "--no-figures")
    refused(out, str(cfg), "source.fit", *names)
