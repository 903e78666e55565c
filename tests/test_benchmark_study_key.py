"""The recovery studies' resume key (benchmarks/population_recovery.py): fast, default suite."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import population_recovery as pr  # noqa: E402

BASE = '[estimator]\nname = "saem"\nsaem_chains = 4\n'


def test_key_ignores_vpc_end_events_and_its_comment():
    with_vpc = BASE + '# why the VPC ends at death\n# (two lines)\nvpc_end_events = ["death"]\n'
    assert pr._estimation_text(with_vpc) == BASE
    assert pr._key(with_vpc, {}, 200)[0] == pr._key(BASE, {}, 200)[0]
    assert pr._key(with_vpc, {}, 200)[1] != pr._key(BASE, {}, 200)[1]   # the text's own SHA


def test_key_follows_every_estimation_setting():
    changed = BASE.replace("saem_chains = 4", "saem_chains = 8")
    assert pr._key(changed, {}, 200)[0] != pr._key(BASE, {}, 200)[0]
    assert pr._key(BASE, {"is_samples": 300}, 200)[0] != pr._key(BASE, {}, 200)[0]
    assert pr._key(BASE, {}, 100)[0] != pr._key(BASE, {}, 200)[0]


def test_shipped_config_keeps_the_key_of_its_text_before_vpc_end_events():
    """The treg_all study's replicates (recorded before 70fc698) stay under the current key."""
    text = (ROOT / "configs" / "als_synthetic_population.toml").read_text()
    stripped = pr._estimation_text(text)
    assert "vpc_end_events" not in stripped
    assert "saem_chains = 4" in stripped and len(text.splitlines()) - len(
        stripped.splitlines()) == 8
