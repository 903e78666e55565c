"""Malformed population settings in a run config (``estimate = "population"``, ``eta``,
``fit.estimator = "focei"``): ``progression fit CONFIG`` exits 2 with one message naming the
file and the key, no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "configs" / "theoph_population.toml").read_text()


def variant(tmp_path, old: str, new: str) -> Path:
    """The shipped Theoph population config with one change, data path made absolute."""
    assert old in BASE, old
    text = BASE.replace(old, new).replace('"../data/examples/theoph.csv"',
                                          repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace('folder = "../fits/theoph_population"',
                        f'folder = {str(tmp_path / "out")!r}')
    path = tmp_path / "pop.toml"
    path.write_text(text)
    return path


CASES = [
    # (id, old, new, strings the message must name)
    ("eta zero", "eta = 0.6", "eta = 0.0", ["parameters.ka.eta", "positive variance", "0"]),
    ("eta negative", "eta = 0.3", "eta = -0.3", ["parameters.CL.eta", "-0.3"]),
    ("eta not a number", "eta = 0.1", 'eta = "big"', ["parameters.V.eta", "number"]),
    ("eta on a fixed parameter", "[parameters.F_bio]\nestimate = \"fixed\"\nvalue = 1.0",
     "[parameters.F_bio]\nestimate = \"fixed\"\nvalue = 1.0\neta = 0.1",
     ["parameters.F_bio.eta", "population"]),
    ("subject parameter with focei", "[parameters.ka]\nestimate = \"population\"\n"
     "value = 1.5683             # exp(0.45) 1/h\nbounds = [0.05, 100.0]\nscale = \"log\"\n"
     "eta = 0.6",
     "[parameters.ka]\nestimate = \"subject\"\nvalue = 1.5683\nbounds = [0.05, 100.0]",
     ["parameters.ka.estimate", "focei", "subject"]),
    ("shared parameter with focei", "[parameters.tlag]\nestimate = \"fixed\"",
     "[parameters.tlag]\nestimate = \"shared\"\nbounds = [0.0, 1.0]",
     ["parameters.tlag.estimate", "shared", "population"]),
    ("per-subject residual error with focei", 'a = { value = 0.7, estimate = "population"',
     'a = { value = 0.7, estimate = "subject"', ["error.conc.a.estimate", "subject"]),
    ("population parameter with the individual estimator", 'estimator = "focei"',
     'estimator = "individual"', ["parameters.ka.estimate", "population", "individual"]),
    ("no random effect at all", "eta = 0.6", "", []),   # completed below
    ("measured error with focei", 'model = "additive"\na = { value = 0.7, estimate = '
     '"population", bounds = [0.01, 10.0] }   # mg/L', 'model = "measured"',
     ["error.conc.model", "measured"]),
    ("unknown estimator", 'estimator = "focei"', 'estimator = "focie"',
     ["fit.estimator", "focei"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_population_config_refused(cli, refused, unchanged, tmp_path, case):
    name, old, new, names = case
    if name == "no random effect at all":
        path = variant(tmp_path, "eta = 0.6", "")
        text = path.read_text().replace("eta = 0.3", "").replace("eta = 0.1", "")
        path.write_text(text)
        names = ["parameters", "random effect", "focei"]
    else:
        path = variant(tmp_path, old, new)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), *names)


def test_the_base_population_config_reads(tmp_path):
    """Control: the variants above differ from a config that validates."""
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(variant(tmp_path, "eta = 0.6", "eta = 0.6"))
    assert cfg.estimator == "focei"
    assert [p.eta for p in cfg.parameters if p.eta is not None] == [0.6, 0.3, 0.1]


@pytest.mark.parametrize(("old", "new", "keys"), [
    ('estimator = "focei"', 'estimator = "foci"', ["fit.estimator"]),
    ('scale = "log"\neta = 0.6', 'scale = "logg"\neta = 0.6', ["parameters.ka.scale"]),
], ids=["estimator misspelt", "scale misspelt"])
def test_a_refused_key_is_reported_once_not_with_its_consequences(cli, refused, tmp_path,
                                                                  old, new, keys):
    """A misspelt estimator used to bring four more problems ("estimate = "population" needs
    a population estimator ... found fit.estimator = None", one per population parameter);
    a misspelt scale on the only random effect's parameter, "needs at least one parameter
    with a random effect". Each is now the one problem it is."""
    path = variant(tmp_path, old, new)
    if "logg" in new:                       # ka then carries the only random effect
        path.write_text(path.read_text().replace("eta = 0.3", "").replace("eta = 0.1", ""))
    out = cli("fit", path)
    refused(out, str(path), *keys)
    assert out.err.count(f"{path}, key '") == len(keys), out.err
    assert "found fit.estimator = None" not in out.err
    assert "needs at least one parameter" not in out.err
