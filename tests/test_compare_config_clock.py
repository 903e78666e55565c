"""A scenario config without [source] anchor/delay starts the data clock where the model's
disease content says (ALS: 12 months after clinical onset); a model without disease content
starts at model time 0."""

from pathlib import Path

import numpy as np

from progression._compare_config import read_compare_config

MODELS = Path(__file__).parent / "models"


def _config(tmp_path, source: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[source]\n{source}\nn = 5\nseed = 3\n\n[scenarios]\n"none" = []\n'
                    '"half k" = [{ scale = { k = 0.5 }, label = "half k" }]\n'
                    if "decay" in source else
                    f'[source]\n{source}\nn = 5\nseed = 3\n\n[scenarios]\n"none" = []\n')
    return path


def test_model_without_disease_content_starts_at_model_time_zero(tmp_path):
    cfg = read_compare_config(_config(tmp_path, f'model = "{MODELS / "decay.toml"}"'))
    np.testing.assert_array_equal(cfg.source.time_offsets, 0.0)


def test_model_without_content_can_name_its_own_event(tmp_path):
    cfg = read_compare_config(_config(
        tmp_path, f'model = "{MODELS / "decay.toml"}"\nanchor = "half"\ndelay = 1.0'))
    # the half-life of x0 exp(-k t) is ln 2 / k for each subject's own k, plus the delay
    k = cfg.source.subject_parameters[:, cfg.source.model.parameter_index("k")]
    assert np.ptp(k) > 0                                   # subjects do differ
    np.testing.assert_allclose(cfg.source.time_offsets, np.log(2) / k + 1.0, rtol=1e-6)


def test_als_default_is_clinical_onset_plus_twelve_months(tmp_path):
    silent = read_compare_config(_config(tmp_path, 'model = "als_reduced"'))
    explicit = read_compare_config(_config(
        tmp_path, 'model = "als_reduced"\nanchor = "clinical_onset"\ndelay = 12.0'))
    np.testing.assert_array_equal(silent.source.time_offsets, explicit.source.time_offsets)
    assert np.all(silent.source.time_offsets > 12.0)
