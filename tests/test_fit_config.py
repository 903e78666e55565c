"""Fit configs: a catalogue of broken configs, each answered by one clear error, nothing written."""

import sys

import pytest

import progression as pg
from progression.errors import ConfigError
from progression.fit import parse_fit_config, read_fit_config

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _fit_support import config_text, run_cli, simulate_cohort  # noqa: E402

GOOD = config_text() + '\n[output]\nfolder = "out/fit"\n'


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fitdata")
    cohort, _ = simulate_cohort(2, seed=5, visits=[0.0, 3.0, 6.0])
    pg.write_cohort(cohort, folder / "data.csv", format="long")
    return folder


def test_good_config_reads(data_dir):
    (data_dir / "good.toml").write_text(GOOD)
    cfg = read_fit_config(data_dir / "good.toml")
    assert cfg.name == "good" and cfg.estimator == "individual"
    assert [p.name for p in cfg.parameters if p.estimated] == ["kA", "eD", "time_offset"]
    kA = cfg.parameter("kA")
    assert kA.scale == "log" and (kA.lower, kA.upper) == (0.005, 0.09)
    assert cfg.errors == {"ALSFRS_R": "additive", "NfL": "lognormal", "CRP": "lognormal"}
    assert cfg.output_folder == data_dir / "out/fit"


def _replace(old, new):
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# (case, config text, substrings the error must contain)
BROKEN = [
    ("toml syntax", GOOD + "\n[solver\n", ["not valid TOML"]),
    ("unknown table", GOOD + "\n[fitt]\nx = 1\n", ["key 'fitt'", "unknown key"]),
    ("unknown key with hint", _replace('model = "als_reduced"',
                                       'model = "als_reduced"\nmodle = 1'),
     ["key 'fit.modle'", "did you mean 'model'"]),
    ("unknown model", _replace('"als_reduced"', '"als_reducd"'),
     ["key 'fit.model'", "als_reduced"]),
    ("missing model file", _replace('"als_reduced"', '"models/none.toml"'),
     ["key 'fit.model'", "does not exist"]),
    ("unknown estimator", _replace('estimator = "individual"', 'estimator = "bayesian"'),
     ["key 'fit.estimator'", "'individual', 'pooled'"]),
    ("missing data file", _replace('path = "data.csv"', 'path = "nowhere.csv"'),
     ["key 'data.path'", "does not exist"]),
    ("bad data format", _replace('path = "data.csv"', 'path = "data.csv"\nformat = "excel"'),
     ["key 'data.format'", "'long'"]),
    ("unknown error model", _replace('model = "additive"', 'model = "poisson"'),
     ["key 'error.ALSFRS_R.model'", "'additive'"]),
    ("observable not in model", _replace("[error.CRP]", "[error.CRPP]"),
     ["key 'error.CRPP'", "did you mean 'CRP'"]),
    ("error parameter missing", _replace('model = "additive"', 'model = "combined"'),
     ["key 'error.ALSFRS_R.b'", "needs 'b'"]),
    ("error parameter wrong type", _replace("a = 1.0", 'a = "big"'),
     ["key 'error.ALSFRS_R.a'", "expected a number"]),
    ("error parameter not positive", _replace("a = 1.0", "a = -1.0"),
     ["key 'error.ALSFRS_R.a'", "positive"]),
    ("parameter not in model", _replace("[parameters.kA]", "[parameters.kAA]"),
     ["key 'parameters.kAA'", "did you mean 'kA'"]),
    ("unknown role", _replace('[parameters.eD]\nestimate = "subject"',
                              '[parameters.eD]\nestimate = "free"'),
     ["key 'parameters.eD.estimate'", "'subject', 'shared', 'fixed'"]),
    ("reversed bounds", _replace('[parameters.eD]\nestimate = "subject"',
                                 '[parameters.eD]\nestimate = "subject"\nbounds = [1.0, 0.1]'),
     ["key 'parameters.eD.bounds'", "lower < upper"]),
    ("value outside bounds", _replace("value = 24.0", "value = 99.0"),
     ["key 'parameters.time_offset.value'", "within bounds"]),
    ("log scale below zero", _replace("bounds = [0.0, 60.0]",
                                      'bounds = [-5.0, 60.0]\nscale = "log"'),
     ["key 'parameters.time_offset.scale'", "lower bound >= 0"]),
    ("covariate not a name", _replace("bounds = [0.0, 60.0]",
                                      "bounds = [0.0, 60.0]\ncovariate = 3"),
     ["key 'parameters.time_offset.covariate'", "expected a string"]),
    ("logit needs finite bounds", _replace('[parameters.eD]\nestimate = "subject"',
                                           '[parameters.eD]\nestimate = "subject"\n'
                                           'bounds = [0.0, 1e400]\nscale = "logit"'),
     ["key 'parameters.eD.scale'", "finite bounds"]),
    ("shared with individual", _replace('[parameters.eD]\nestimate = "subject"',
                                        '[parameters.eD]\nestimate = "shared"'),
     ["key 'parameters.eD'", "pooled"]),
    ("offset without bounds", _replace("bounds = [0.0, 60.0]", ""),
     ["key 'parameters.time_offset.bounds'", "needs bounds"]),
    ("bad estimator options", GOOD + "\n[estimator]\nstarts = 0\nseed = 1.5\n"
                                     "uncertainty = [\"jackknife\"]\n",
     ["key 'estimator.starts'", "key 'estimator.seed'", "key 'estimator.uncertainty'"]),
    ("bad solver options", _replace("grid_step = 0.5", 'grid_step = 0.5\nmethod = "Euler"\n'
                                                       "rtol = -1e-6"),
     ["key 'solver.method'", "'LSODA'", "key 'solver.rtol'", "positive"]),
    ("unknown sensitivity mode and optimizer",
     _replace("grid_step = 0.5", 'grid_step = 0.5\nsensitivities = "adjoint"\n'
                                 '[estimator]\noptimizer = "nelder"'),
     ["key 'solver.sensitivities'", "'grid', 'forward'", "key 'estimator.optimizer'",
      "'batched', 'lmfit'"]),
    ("boolean where a number is expected", _replace("grid_step = 0.5", "grid_step = true"),
     ["key 'solver.grid_step'", "a boolean"]),
    ("output figures not a boolean", _replace('folder = "out/fit"',
                                              'folder = "out/fit"\nfigures = "yes"'),
     ["key 'output.figures'", "true or false"]),
    ("no error models", config_text(errors="") + '\n[output]\nfolder = "out/fit"\n',
     ["key 'error'", "at least one [error.OBSERVABLE]"]),
]


@pytest.mark.parametrize("case,text,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_gives_one_clear_error_and_writes_nothing(data_dir, case, text,
                                                                expected):
    path = data_dir / f"broken_{case.replace(' ', '_')}.toml"
    path.write_text(text)
    before = sorted(p.name for p in data_dir.rglob("*"))
    with pytest.raises(ConfigError) as info:
        read_fit_config(path)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{case}: {part!r} not in {message!r}"
    for problem in info.value.problems:
        assert str(path) in problem, problem          # every problem names the file
    status, printed = run_cli(str(path))
    assert status == 2 and printed == message
    assert sorted(p.name for p in data_dir.rglob("*")) == before   # nothing written


def test_catalogue_has_at_least_15_cases():
    assert len(BROKEN) >= 15


def test_every_problem_is_listed_in_one_error(data_dir):
    text = (_replace('estimator = "individual"', 'estimator = "bayesian"')
            .replace("[parameters.kA]", "[parameters.kAA]")
            .replace("a = 1.0", 'a = "x"'))
    with pytest.raises(ConfigError) as info:
        parse_fit_config(text, source="x.toml", base_dir=data_dir)
    assert len(info.value.problems) == 3
    assert all(p.startswith("x.toml, key '") for p in info.value.problems)


def test_data_mismatch_found_at_fit_time_writes_nothing(data_dir):
    cohort, _ = simulate_cohort(2, seed=5, visits=[0.0, 3.0])
    only_alsfrs = cohort.observations()
    keep = only_alsfrs["observable"] == "ALSFRS_R"
    pg.write_cohort(pg.Cohort({k: v[keep] for k, v in only_alsfrs.items()}),
                    data_dir / "alsfrs_only.csv", format="long")
    path = data_dir / "mismatch.toml"
    path.write_text(GOOD.replace("data.csv", "alsfrs_only.csv").replace("out/fit", "out/mm"))
    status, message = run_cli(str(path))
    assert status == 2
    assert "key 'error.NfL'" in message and "no observations" in message
    assert not (data_dir / "out" / "mm").exists()


def test_time_offset_tied_to_a_missing_covariate_is_a_data_error(data_dir):
    path = data_dir / "cov.toml"
    path.write_text(GOOD.replace("bounds = [0.0, 60.0]",
                                 'bounds = [0.0, 60.0]\ncovariate = "onset_time"\n'
                                 "factor = -1.0").replace("out/fit", "out/cov"))
    status, message = run_cli(str(path))
    assert status == 2 and "covariate 'onset_time'" in message
    assert not (data_dir / "out" / "cov").exists()
