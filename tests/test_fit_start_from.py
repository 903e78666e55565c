"""Starting values from an earlier population fit: ``[fit] start_from``, ``progression fit
--start-from`` and :func:`progression.fit.start_from`.

A FOCE-I fit of R's Theoph with a weight effect on CL and a (CL, V) Omega block is the earlier
fit; a Laplace config (the same model, another estimator) started from it must carry its
typical values, Omega diagonal and block covariance, the covariate coefficient and the
residual SD as starting values (compared with the saved fit's numbers, exact), keep what the
config holds fixed; a fit restarted from its own estimates stops at once, and a chain
(FOCE-I, then Laplace from its estimates) reaches the optimum the config's own starts reach.
Bad inputs are in tests/bad_inputs/test_bad_start_from.py. Measured (2026-12-03): Laplace
from the config's starts 19 iterations, from its own estimates 1, from FOCE-I's 18; OFV
118.5036 each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError
from progression.fit import fit, parse_fit_config, read_fit_config, start_from

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import theoph_weight_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"
EXTRA = theoph_weight_block()


def _text(estimator: str = "focei", start: str | None = None, extra: str = EXTRA) -> str:
    text = THEOPH.read_text().replace('"../data/examples/theoph.csv"',
                                      repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace('estimator = "focei"', f'estimator = "{estimator}"', 1)
    if start is not None:
        text = text.replace("[fit]\n", f"[fit]\nstart_from = {start!r}\n", 1)
    return text + extra


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """The earlier fit (FOCE-I), saved."""
    folder = tmp_path_factory.mktemp("start") / "focei"
    res = fit(parse_fit_config(_text(), source="focei.toml", base_dir=THEOPH.parent))
    res.save(folder, figures=False)
    return folder, res


def test_config_start_from_carries_every_estimate(earlier, tmp_path):
    folder, res = earlier
    pop = res.population
    cfg_path = tmp_path / "laplace.toml"
    cfg_path.write_text(_text("laplace", start=str(folder)))
    cfg = read_fit_config(cfg_path)
    for name in ("ka", "CL", "V"):
        p = cfg.parameter(name)
        assert p.value == pop.fixed_effects[name]
        i = pop.omega_names.index(name)
        assert p.eta == pop.omega[i, i]
    assert cfg.parameter("conc.a").value == pop.sigma["conc.a"]
    cl, v = cfg.parameter("CL"), cfg.parameter("V")
    i, j = pop.omega_names.index("CL"), pop.omega_names.index("V")
    assert cl.omega_block.covariances == (pop.omega[j, i],) != (0.0,)
    assert cl.omega_block == v.omega_block
    assert cl.covariates[0].values == (pop.coefficients["CL~weight"],)
    assert v.covariates[0].values == (1.0,)          # held by the config
    assert cfg.parameter("F_bio").value == 1.0 and cfg.parameter("F_bio").estimate == "fixed"


def test_refit_from_its_own_estimates_stops_at_once(earlier):
    """The plain Theoph config (diagonal Omega), Laplace: restarted from its own saved
    estimates it is at the optimum (a few iterations, the same OFV); started from FOCE-I's
    it reaches the same optimum as from the config's starts."""
    _, res = earlier
    plain = parse_fit_config(_text(extra=""), source="focei.toml", base_dir=THEOPH.parent)
    base = parse_fit_config(_text("laplace", extra=""), source="laplace.toml",
                            base_dir=THEOPH.parent)
    cold = fit(base)
    again = fit(start_from(base, cold))
    assert again.population.ofv == pytest.approx(cold.population.ofv, abs=1e-4)
    assert again.population.iterations <= 3 < cold.population.iterations
    chained = fit(start_from(base, fit(plain)))
    assert chained.population.ofv == pytest.approx(cold.population.ofv, abs=0.01)
    for name in ("ka", "CL", "V"):
        assert chained.population.fixed_effects[name] == pytest.approx(
            cold.population.fixed_effects[name], rel=2e-3)
    # a FitResult works as the source too (here the fixture's, with its covariate and block)
    cfg = start_from(parse_fit_config(_text("laplace"), source="l.toml",
                                      base_dir=THEOPH.parent), res)
    assert cfg.parameter("ka").value == res.population.fixed_effects["ka"]


def test_cli_start_from_flag(earlier, tmp_path, capsys):
    from progression.cli import main

    folder, res = earlier
    cfg = tmp_path / "laplace.toml"
    cfg.write_text(_text("laplace"))
    assert main(["fit", str(cfg), "--start-from", str(folder), "--out", str(tmp_path / "o"),
                 "--no-figures"]) == 0
    assert "laplace fit" in capsys.readouterr().out
    assert pg.load_fit(tmp_path / "o").population.method == "laplace"


def test_start_from_refuses_what_does_not_fit(earlier, tmp_path):
    folder, res = earlier
    base = parse_fit_config(_text("laplace"), source="laplace.toml", base_dir=THEOPH.parent)
    # a per-subject fit
    ind = fit(parse_fit_config(
        (ROOT / "configs" / "theoph_individual.toml").read_text().replace(
            '"../data/examples/theoph.csv"', repr(str(ROOT / "data/examples/theoph.csv"))),
        source="ind.toml", base_dir=THEOPH.parent))
    with pytest.raises(ConfigError, match="expected a population fit"):
        start_from(base, ind)
    # an estimate outside the config's bounds
    text = _text("laplace").replace("value = 1.5683", "value = 1.0", 1)
    tight = parse_fit_config(text.replace("bounds = [0.05, 100.0]", "bounds = [0.05, 1.2]", 1),
                             source="tight.toml", base_dir=THEOPH.parent)
    assert tight.parameter("ka").upper == 1.2
    with pytest.raises(ConfigError, match=r"ka = 1\.\d+ is outside the config's bounds"):
        start_from(tight, folder)
    with pytest.raises(ConfigError, match="expected a fit folder"):
        start_from(base, tmp_path / "nowhere")
    assert np.isfinite(res.population.ofv)
