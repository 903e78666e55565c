"""``[parameters.NAME] prior`` and ``eta_prior`` (SAEM's priors) malformed or where they do not
belong: ``progression fit CONFIG`` exits 2 with one message naming the file and the key,
expected vs found, no traceback, nothing written."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_value_fixed import V_BLOCK, _config  # noqa: E402

GOOD_PRIOR = "prior = { value = 30.0, sd = 0.2 }\n"
GOOD_ETA = "eta_prior = { value = 0.05, df = 10 }\n"


@pytest.mark.parametrize("block, key, words", [
    (V_BLOCK + "prior = 30.0\n", "parameters.V.prior", ("expected a table", "float 30.0")),
    (V_BLOCK + "prior = { value = 30.0 }\n", "parameters.V.prior", ("expected 'sd'",)),
    (V_BLOCK + "prior = { sd = 0.2 }\n", "parameters.V.prior", ("expected 'value'",)),
    (V_BLOCK + "prior = { value = 30.0, sd = 0.0 }\n", "parameters.V.prior.sd",
     ("expected a positive SD", "found 0")),
    (V_BLOCK + 'prior = { value = "thirty", sd = 0.2 }\n', "parameters.V.prior.value",
     ("expected a finite number", "thirty")),
    (V_BLOCK + "prior = { value = 900.0, sd = 0.2 }\n", "parameters.V.prior.value",
     ("inside the bounds [1, 500]", "found 900")),
    (V_BLOCK + "prior = { value = 30.0, sd = 0.2, mean = 3 }\n", "parameters.V.prior",
     ("mean",)),
    (V_BLOCK + "value_fixed = true\n" + GOOD_PRIOR, "parameters.V.prior",
     ("value_fixed = true", "no prior")),
    (V_BLOCK + "eta_prior = 0.05\n", "parameters.V.eta_prior", ("expected a table",)),
    (V_BLOCK + "eta_prior = { value = 0.05 }\n", "parameters.V.eta_prior",
     ("expected 'df'",)),
    (V_BLOCK + "eta_prior = { value = -0.05, df = 10 }\n", "parameters.V.eta_prior.value",
     ("expected a positive variance", "-0.05")),
    (V_BLOCK + "eta_prior = { value = 0.05, df = 0 }\n", "parameters.V.eta_prior.df",
     ("expected positive degrees of freedom", "found 0")),
    (V_BLOCK.replace("eta = 0.1\n", "") + GOOD_ETA, "parameters.V.eta_prior",
     ("needs a random effect", "eta = <variance>")),
    (V_BLOCK + "eta_fixed = true\n" + GOOD_ETA, "parameters.V.eta_prior",
     ("eta_fixed = true", "no prior")),
    (V_BLOCK.replace('estimate = "population"', 'estimate = "fixed"').replace(
        "eta = 0.1\n", "") + GOOD_PRIOR, "parameters.V.prior",
     ("estimate = \"population\"", "fixed")),
], ids=["number", "no sd", "no value", "zero sd", "string value", "outside bounds",
        "unknown key", "held typical value", "eta_prior number", "no df",
        "negative variance", "zero df", "no random effect", "fixed variance",
        "fixed parameter"])
def test_bad_prior_refused(cli, refused, unchanged, tmp_path, block, key, words):
    path = _config(tmp_path, block)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), key, *words)


@pytest.mark.parametrize("choice", ["sandwich", "focei", "linearization"])
def test_prior_refuses_other_saem_covariance_steps(cli, refused, unchanged, tmp_path, choice):
    path = _config(tmp_path, V_BLOCK + GOOD_ETA)
    path.write_text(path.read_text().replace("[estimator]\n",
                                             f'[estimator]\nsaem_covariance = "{choice}"\n'))
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "estimator.saem_covariance", 'expected "sa"', choice)


def test_eta_prior_in_an_omega_block_refused(cli, refused, unchanged, tmp_path):
    path = _config(tmp_path, V_BLOCK + GOOD_ETA)
    path.write_text(path.read_text() + '\n[omega]\nblocks = [{ parameters = ["CL", "V"] }]\n')
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), "parameters.V.eta_prior", "in the Omega block", "CL, V")


def test_priors_read(tmp_path):
    from progression.fit.config import read_fit_config

    cfg = read_fit_config(_config(tmp_path, V_BLOCK + GOOD_PRIOR + GOOD_ETA))
    assert cfg.parameter("V").prior == (30.0, 0.2)
    assert cfg.parameter("V").eta_prior == (0.05, 10.0)
    assert cfg.parameter("CL").prior == () and cfg.parameter("CL").eta_prior == ()
