"""Malformed run configs (``progression fit CONFIG``) and scenario-comparison configs
(``progression compare CONFIG --out DIR``): exit 2, one message naming the file and the key,
no traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "synthetic" / "als_clinic_200.csv"

# ----------------------------------------------------------------------------- compare configs

COMPARE = {
    "source": 'model = "als_reduced"\nn = 5\nseed = 1',
    "compare": "horizon = 12",
    "endpoints": "",
    "scenarios": '"no treatment" = []\n"half kA" = [{ scale = { kA = 0.5 } }]',
}


def compare_text(**sections) -> str:
    parts = []
    for name, body in {**COMPARE, **sections}.items():
        if body is not None:
            parts.append(f"[{name}]\n{body}\n")
    return "\n".join(parts)


def test_the_base_compare_config_runs(cli, tmp_path):
    """Control: the configs below differ from this working one in one key each."""
    cfg = tmp_path / "ok.toml"
    cfg.write_text(compare_text())
    out = cli("compare", cfg, "--out", tmp_path / "out", "--no-figures")
    assert out.code == 0, out.err
    assert (tmp_path / "out" / "summary.md").exists()


CASES = [
    # (id, section overrides, strings the message must name)
    ("negative horizon", {"compare": "horizon = -6"}, ["compare.horizon", "-6"]),
    ("zero horizon", {"compare": "horizon = 0"}, ["compare.horizon"]),
    ("horizon nan", {"compare": "horizon = nan"}, ["compare.horizon", "finite"]),
    ("horizon with a bad unit", {"compare": 'horizon = "12 fortnights"'},
     ["compare.horizon", "fortnights"]),
    ("zero step", {"compare": "horizon = 12\nstep = 0"}, ["compare.step"]),
    ("negative step", {"compare": "horizon = 12\nstep = -0.25"}, ["compare.step"]),
    ("step beyond the horizon", {"compare": "horizon = 12\nstep = 24"}, ["compare.step"]),
    ("negative draws", {"compare": "horizon = 12\ndraws = -3"}, ["compare.draws", "-3"]),
    ("fractional draws", {"compare": "horizon = 12\ndraws = 2.5"}, ["compare.draws"]),
    ("negative seed", {"source": 'model = "als_reduced"\nn = 5\nseed = -1'}, ["source.seed"]),
    ("zero n", {"source": 'model = "als_reduced"\nn = 0'}, ["source.n"]),
    ("negative n", {"source": 'model = "als_reduced"\nn = -5'}, ["source.n", "-5"]),
    ("unknown compare key", {"compare": "horizn = 12"}, ["compare.horizn", "horizon"]),
    ("unknown section", {"comparison": "horizon = 12"}, ["comparison", "unknown key"]),
    ("unknown model", {"source": 'model = "als_reducd"\nn = 5'}, ["source.model"]),
    ("unknown anchor event", {"source": 'model = "als_reduced"\nn = 5\nanchor = "onset"'},
     ["source.anchor", "onset"]),
    ("unknown method", {"compare": 'horizon = 12\nmethod = "RK99"'}, ["compare.method"]),
    ("unknown reference", {"compare": 'horizon = 12\nreference = "no treatmnt"'},
     ["compare.reference", "did you mean 'no treatment'"]),
    ("unknown intervention", {"scenarios": '"IL-2" = ["ld_il3"]'},
     ['scenarios."IL-2"', "ld_il3", "did you mean 'ld_il2'"]),
    ("unknown intervention by name", {"scenarios": '"IL-2" = [{ name = "ld_il3" }]'},
     ["name", "did you mean 'ld_il2'"]),
    ("negative factor on a hazard", {"scenarios": '"x" = [{ scale = { kA = -1.0 } }]'},
     ['scenarios."x"', "scale.kA", "negative"]),
    ("negative set on a rate", {"scenarios": '"x" = [{ set = { kA = -0.1 } }]'},
     ['scenarios."x"', "set.kA", "negative"]),
    ("add making a rate negative", {"scenarios": '"x" = [{ add = { kA = -1.0 } }]'},
     ['scenarios."x"', "add.kA", "negative"]),
    ("factor negative at a high level",
     {"scenarios": '"x" = [{ scale = { kA = 0.5 }, level = 3.0 }]'},
     ['scenarios."x"', "scale.kA", "exposure 3"]),
    ("negative level", {"scenarios": '"x" = [{ scale = { kA = 0.5 }, level = -1.0 }]'},
     ['scenarios."x"', "level"]),
    ("unknown parameter", {"scenarios": '"x" = [{ scale = { kZ = 0.5 } }]'},
     ['scenarios."x"', "kZ"]),
    ("start after stop", {"scenarios": '"x" = [{ scale = { kA = 0.5 }, start = 6, stop = 3 }]'},
     ['scenarios."x"', "stop"]),
    ("negative duration",
     {"scenarios": '"x" = [{ set = { uIL2 = 1.0 }, every = "28 days", duration = "-5 days" }]'},
     ['scenarios."x"', "duration"]),
    ("zero period", {"scenarios": '"x" = [{ set = { uIL2 = 1.0 }, every = 0, duration = 0.1 }]'},
     ['scenarios."x"', "every"]),
    ("nan start", {"scenarios": '"x" = [{ scale = { kA = 0.5 }, start = nan }]'},
     ['scenarios."x"', "start"]),
    ("unknown intervention key",
     {"scenarios": '"x" = [{ scale = { kA = 0.5 }, strat = 2 }]'},
     ['scenarios."x"[0].strat', "did you mean 'start'"]),
    ("scenario not a list", {"scenarios": '"x" = "ld_il2"'}, ['scenarios."x"', "list"]),
    ("endpoint time beyond the horizon", {"endpoints": "times = [6, 24]"},
     ["endpoints.times", "horizon"]),
    ("negative endpoint time", {"endpoints": "times = [-6, 6]"}, ["endpoints.times"]),
    ("reversed slope window", {"endpoints": "slope_window = [12, 0]"},
     ["endpoints.slope_window"]),
    ("unknown marker", {"endpoints": 'markers = ["NfLL"]'},
     ["endpoints.markers", "NfLL", "did you mean 'NfL'"]),
    ("unknown endpoint event", {"endpoints": 'event = "deth"'},
     ["endpoints.event", "did you mean 'death'"]),
    ("unknown endpoint function", {"endpoints": 'function = "ALSFRS"'},
     ["endpoints.function", "ALSFRS"]),
    ("unknown observable", {"compare": 'horizon = 12\nobservables = ["CRPP"]'},
     ["compare.observables", "CRPP"]),
    ("missing scenarios", {"scenarios": None}, ["scenarios", "missing"]),
]


@pytest.mark.parametrize("overrides, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_compare_config_is_refused(cli, refused, unchanged, tmp_path, overrides, names):
    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text(**overrides))
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out")
    refused(outcome, str(cfg), *names)
    assert not (tmp_path / "out").exists()


def test_compare_config_that_is_not_toml_is_refused(cli, refused, unchanged, tmp_path):
    cfg = tmp_path / "scenarios.toml"
    cfg.write_text("[source\nmodel = 'als_reduced'\n")
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out")
    refused(outcome, str(cfg), "TOML")


def test_compare_config_with_a_missing_fit_is_refused(cli, refused, unchanged, tmp_path):
    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text(source='fit = "no_such_fit"'))
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out")
    refused(outcome, str(cfg), "source.fit", "no_such_fit")


def test_python_api_refuses_bad_n_and_draws_naming_the_option(tmp_path):
    from progression._compare_config import run_compare_config
    from progression.errors import ConfigError

    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text())
    with pytest.raises(ConfigError, match="--n: expected a positive integer"):
        run_compare_config(cfg, n=0)
    with pytest.raises(ConfigError, match="--draws: expected an integer >= 0"):
        run_compare_config(cfg, draws=-3)


# --------------------------------------------------------------------------------- run configs

FIT = {
    "fit": 'model = "als_reduced"',
    "data": f'path = "{DATA.as_posix()}"',
    "error.ALSFRS_R": 'model = "additive"\na = 2.0',
    "parameters.kA": 'estimate = "subject"',
    "output": 'folder = "out"',
}


def fit_text(**sections) -> str:
    parts = []
    for name, body in {**FIT, **sections}.items():
        if body is not None:
            parts.append(f"[{name}]\n{body}\n")
    return "\n".join(parts)


def test_the_base_run_config_is_valid():
    """Control: the run configs below differ from this valid one in one key each."""
    from progression.fit import parse_fit_config

    cfg = parse_fit_config(fit_text(), name="ok")
    assert cfg.options["max_failed_share"] == 0.5


FIT_CASES = [
    ("max_failed_share above 1", {"fit": 'model = "als_reduced"\nmax_failed_share = 1.5'},
     ["fit.max_failed_share", "1.5"]),
    ("negative max_failed_share", {"fit": 'model = "als_reduced"\nmax_failed_share = -0.1'},
     ["fit.max_failed_share"]),
    ("max_failed_share not a number",
     {"fit": 'model = "als_reduced"\nmax_failed_share = "half"'}, ["fit.max_failed_share"]),
    ("unknown fit key", {"fit": 'model = "als_reduced"\nestimater = "pooled"'},
     ["fit.estimater", "did you mean 'estimator'"]),
    ("unknown section", {"fitting": "starts = 2"}, ["fitting"]),
    ("unknown parameter", {"parameters.kZ": 'estimate = "subject"'},
     ["parameters.kZ"]),
    ("negative lower bound of a rate", {"parameters.kA": 'estimate = "subject"\n'
                                                        "bounds = [-1.0, 0.1]"},
     ["parameters.kA.bounds", "cannot be negative"]),
    ("negative fixed rate", {"parameters.eD": 'estimate = "fixed"\nvalue = -0.2'},
     ["parameters.eD.value", "cannot be negative"]),
    ("nan start value", {"parameters.kA": 'estimate = "subject"\nvalue = nan'},
     ["parameters.kA.value", "finite"]),
    ("reversed bounds", {"parameters.kA": 'estimate = "subject"\nbounds = [0.09, 0.005]'},
     ["parameters.kA.bounds"]),
    ("unknown role", {"parameters.kA": 'estimate = "per subject"'},
     ["parameters.kA.estimate"]),
    ("unknown observable", {"error.ALSFRSR": 'model = "additive"\na = 2.0'},
     ["error.ALSFRSR", "did you mean 'ALSFRS_R'"]),
    ("unknown error model", {"error.ALSFRS_R": 'model = "additve"\na = 2.0'},
     ["error.ALSFRS_R.model", "did you mean 'additive'"]),
    ("negative error sd", {"error.ALSFRS_R": 'model = "additive"\na = -2.0'},
     ["error.ALSFRS_R.a"]),
    ("zero starts", {"estimator": "starts = 0"}, ["estimator.starts"]),
    ("negative starts", {"estimator": "starts = -2"}, ["estimator.starts", "-2"]),
    ("negative seed", {"estimator": "seed = -1"}, ["estimator.seed"]),
    ("unknown estimator key", {"estimator": "start = 3"},
     ["estimator.start", "did you mean 'starts'"]),
    ("confidence above 1", {"estimator": "confidence = 1.5"}, ["estimator.confidence"]),
    ("unknown uncertainty method", {"estimator": 'uncertainty = ["bootstrapp"]'},
     ["estimator.uncertainty", "did you mean 'bootstrap'"]),
    ("negative rtol", {"solver": "rtol = -1e-6"}, ["solver.rtol"]),
    ("zero grid step", {"solver": "grid_step = 0"}, ["solver.grid_step"]),
    ("unknown solver method", {"solver": 'method = "RK99"'}, ["solver.method"]),
    ("missing data file", {"data": 'path = "no_such.csv"'}, ["data.path", "no_such.csv"]),
    ("unknown data time unit",
     {"data": f'path = "{DATA.as_posix()}"\ntime_unit = "fortnight"'},
     ["data.time_unit", "fortnight"]),
    ("empty subject list", {"data": f'path = "{DATA.as_posix()}"\nsubjects = []'},
     ["data.subjects"]),
    ("estimated offset without bounds",
     {"parameters.time_offset": 'estimate = "subject"\nvalue = 10.0'},
     ["parameters.time_offset.bounds"]),
]


@pytest.mark.parametrize("overrides, names", [c[1:] for c in FIT_CASES],
                         ids=[c[0] for c in FIT_CASES])
def test_bad_run_config_is_refused(cli, refused, unchanged, tmp_path, monkeypatch, overrides,
                                   names):
    monkeypatch.chdir(tmp_path)           # a default fits/NAME folder would land here
    cfg = tmp_path / "run.toml"
    cfg.write_text(fit_text(**overrides))
    with unchanged(tmp_path):
        outcome = cli("fit", cfg, "--quiet")
    refused(outcome, str(cfg), *names)
    assert not (tmp_path / "out").exists() and not (tmp_path / "fits").exists()
