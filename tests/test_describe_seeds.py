"""`progression describe CONFIG --seeds K`: a cohort preset over seeds (issue 13).

Each seed's statistics must equal a plain `describe` of the cohort drawn with that seed; the
spread and the pass counts are recomputed here from those values.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from progression.als.describe import describe_cohort
from progression.als.describe_seeds import describe_config, format_seeds
from progression.als.synthetic import synthetic_cohort
from progression.cli import main
from progression.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"


@pytest.fixture(scope="module")
def desc():
    return describe_config(CLINIC, seeds=[3, 8], n=80)


def test_each_seed_is_a_plain_describe(desc):
    assert desc.seeds == (3, 8) and desc.n == 80 and desc.setting == "clinic"
    for i, seed in enumerate(desc.seeds):
        cohort, _ = synthetic_cohort(CLINIC, n=80, seed=seed)
        rows = {r.statistic: r for r in describe_cohort(cohort, setting="clinic")}
        for s in desc.statistics:
            r = rows[s.statistic]
            np.testing.assert_equal(s.values[i], r.value)
            assert s.ok[i] == r.ok and s.range == r.range and s.target == r.target


def test_spread_and_passes(desc):
    for s in desc.statistics:
        v = np.array(s.values)
        fin = v[np.isfinite(v)]
        if fin.size:
            assert s.spread == (fin.min(), np.median(fin), fin.max())
        assert s.passes == sum(o is True for o in s.ok) <= s.checked <= 2
    sm = desc.summary()
    assert sm["every_seed"] + sm["some_seeds"] + sm["no_seed"] == sm["checked"]
    text = format_seeds(desc)
    assert "seed 3" in text and f"{sm['every_seed']} of {sm['checked']}" in text
    md = format_seeds(desc, "markdown", per_seed=False)
    assert md.count("\n| ") == len(desc.statistics) + 1


def test_executor_gives_the_same_numbers(desc):
    with ThreadPoolExecutor(2) as ex:
        again = describe_config(CLINIC, seeds=[3, 8], n=80, executor=ex)
    for a, b in zip(desc.statistics, again.statistics, strict=True):
        np.testing.assert_array_equal(a.values, b.values)


def test_default_seeds_follow_the_config_seed():
    d = describe_config(CLINIC, seeds=1, n=30)
    assert d.seeds == (20250611,)


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 0}, "seeds: expected at least 1 seed"),
    ({"seeds": [1, 1]}, "seeds: expected distinct non-negative seeds"),
    ({"seeds": True}, "seeds: expected a number of seeds"),
    ({"seeds": 2, "n": 0}, "n: expected a positive number of patients"),
    ({"seeds": 2, "setting": "ward"}, "setting: expected 'auto', 'clinic' or 'trial'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        describe_config(CLINIC, **kwargs)


def test_cli(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["describe", str(CLINIC), "--seeds", "2", "--n", "40", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "40 patients x 2 seeds" in text and "in range in every seed" in text
    doc = json.loads(out.read_text())
    assert doc["seeds"] == [20250611, 20250612] and doc["statistics"]
    assert main(["describe", str(CLINIC), "--seeds", "2", "--n", "40", "--json",
                 str(out)]) == 2                                  # needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    for argv, message in [
        (["describe", str(CLINIC), "--n", "5"], "--n: only with --seeds"),
        (["describe", str(tmp_path / "none.toml"), "--seeds", "2"], "found no such file"),
        (["describe", str(CLINIC), "--seeds", "2", "--format", "long"],
         "--format: not with --seeds"),
        (["describe", str(CLINIC), "--seeds", "2", "--json", str(tmp_path / "x.txt")],
         "expected a .json file name"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
