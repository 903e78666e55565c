"""Malformed event-anchored time offsets (``[parameters.time_offset] anchor``): exit 2, one
message naming the file and the key, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "synthetic" / "als_clinic_200.csv"
FIT = {
    "fit": 'model = "als_reduced"',
    "data": f'path = "{DATA.as_posix()}"',
    "error.ALSFRS_R": 'model = "additive"\na = 2.0',
    "parameters.kA": 'estimate = "subject"',
    "output": 'folder = "out"',
}


def fit_text(**sections) -> str:
    return "\n".join(f"[{name}]\n{body}\n" for name, body in {**FIT, **sections}.items())

GOOD = 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\ncovariate = "onset_time"\nfactor = -1.0'


def test_the_anchored_config_is_valid():
    """Control: the cases below differ from this valid anchored offset in one key each."""
    from progression.fit import parse_fit_config

    cfg = parse_fit_config(fit_text(**{"parameters.time_offset": GOOD}), name="ok")
    off = [p for p in cfg.parameters if p.name == "time_offset"][0]
    assert off.anchor == "clinical_onset" and off.estimate == "fixed"
    assert (off.lower, off.upper, off.factor, off.covariate) == (0.0, 240.0, -1.0,
                                                                 "onset_time")


CASES = [
    ("unknown event", 'anchor = "onset"\nbounds = [0.0, 240.0]',
     ["parameters.time_offset.anchor", "onset", "clinical_onset"]),
    ("anchor not a string", "anchor = 3\nbounds = [0.0, 240.0]",
     ["parameters.time_offset.anchor", "3"]),
    ("empty anchor", 'anchor = ""\nbounds = [0.0, 240.0]', ["parameters.time_offset.anchor"]),
    ("anchor with estimate", 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\n'
                             'estimate = "population"',
     ["parameters.time_offset.estimate", "anchored"]),
    ("anchor with value", 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\nvalue = 6.0',
     ["parameters.time_offset.value", "anchored"]),
    ("anchor with eta", 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\neta = 0.3',
     ["parameters.time_offset.eta"]),
    ("anchor with scale", 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\nscale = "log"',
     ["parameters.time_offset.scale"]),
    ("anchor without bounds", 'anchor = "clinical_onset"',
     ["parameters.time_offset.bounds", "window"]),
    ("anchor window below 0", 'anchor = "clinical_onset"\nbounds = [-5.0, 240.0]',
     ["parameters.time_offset.bounds", "-5"]),
    ("anchor window unbounded", 'anchor = "clinical_onset"\nbounds = [0.0, inf]',
     ["parameters.time_offset.bounds"]),
    ("anchor factor without covariate", 'anchor = "clinical_onset"\nbounds = [0.0, 240.0]\n'
                                        "factor = -1.0",
     ["parameters.time_offset.factor", "covariate"]),
    ("misspelt anchor key", 'ancor = "clinical_onset"\nbounds = [0.0, 240.0]',
     ["parameters.time_offset.ancor", "anchor"]),
]


@pytest.mark.parametrize("body, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_anchor_is_refused(cli, refused, unchanged, tmp_path, monkeypatch, body, names):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "run.toml"
    cfg.write_text(fit_text(**{"parameters.time_offset": body}))
    with unchanged(tmp_path):
        outcome = cli("fit", cfg, "--quiet")
    refused(outcome, str(cfg), *names)
    assert not (tmp_path / "out").exists() and not (tmp_path / "fits").exists()
