"""``[estimator] vpc_end_events`` (terminal events that end simulated patients' observations in
a population fit's VPC) malformed: ``progression fit CONFIG`` exits 2 with one message naming
the file and the key, what was expected (the model's terminal events) and what was found, no
traceback, nothing written. The ALS population config's model has the terminal event
``death`` and the non-terminal ``clinical_onset``."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "configs" / "als_synthetic_population.toml").read_text()


def _config(tmp_path, line: str) -> Path:
    assert "[estimator]\n" in BASE and "vpc_end_events" in BASE
    text = (BASE.replace('"../data/synthetic/als_clinic_200.csv"',
                         repr(str(ROOT / "data/synthetic/als_clinic_200.csv")))
            .replace('"models/als_reduced_pace.toml"',
                     repr(str(ROOT / "configs/models/als_reduced_pace.toml")))
            .replace('folder = "../fits/als_synthetic_population"',
                     f'folder = {str(tmp_path / "out")!r}'))
    lines = [ln for ln in text.splitlines() if not ln.startswith("vpc_end_events")]
    text = "\n".join(lines).replace("[estimator]\n", f"[estimator]\n{line}\n")
    path = tmp_path / "pop.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("line, words", [
    ('vpc_end_events = ["dead"]', ("terminal events of model", "death", "'dead'")),
    ('vpc_end_events = ["clinical_onset"]', ("terminal events of model", "'clinical_onset'")),
    ("vpc_end_events = 3", ("expected an array", "3")),
    ('vpc_end_events = ["death", 1]', ("expected an array", "1"))],
    ids=["unknown event", "not terminal", "a number", "a number in the array"])
def test_bad_vpc_end_events_refused(cli, refused, unchanged, tmp_path, line, words):
    path = _config(tmp_path, line)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "estimator.vpc_end_events", *words)


def test_vpc_end_events_read(tmp_path):
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(_config(tmp_path, 'vpc_end_events = "death"'))
    assert cfg.options["vpc_end_events"] == ("death",)
    cfg = read_fit_config(_config(tmp_path, ""))
    assert cfg.options["vpc_end_events"] == ()
