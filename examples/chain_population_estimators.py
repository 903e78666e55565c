"""Chain population estimators on R's Theoph with a Student-t residual: SAEM, then Laplace
started from SAEM's estimates, both OFVs on one scale.

SAEM is robust from rough starts and reports the exact -2 log L by importance sampling;
Laplace, started where SAEM ended (``start_from``), adds its own covariance step. With a
heavy-tailed residual its objective overstates -2 log L, so ``importance_ofv`` evaluates the
exact one at its estimates as well. Run from the repository root (about a minute):

    python examples/chain_population_estimators.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from progression.fit import fit, parse_fit_config, start_from

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "theoph_population_saem.toml"


def config(estimator: str):
    """The shipped SAEM config with a t(4) residual, for ``estimator``."""
    text = CONFIG.read_text().replace('model = "additive"\n',
                                      'model = "additive"\ndistribution = "t"\ndf = 4\n', 1)
    cfg = parse_fit_config(text, source=CONFIG.name, base_dir=CONFIG.parent)
    return dataclasses.replace(cfg, estimator=estimator)


def main() -> None:
    saem = fit(config("saem"))
    laplace_cfg = start_from(config("laplace"), saem)
    laplace_cfg = laplace_cfg.replace(options={**laplace_cfg.options, "importance_ofv": True})
    laplace = fit(laplace_cfg)
    s, lp = saem.population, laplace.population
    print(f"{'':<12}{'SAEM':>12}{'Laplace':>12}")
    for name in s.fixed_effects:
        print(f"{name:<12}{s.fixed_effects[name]:>12.4g}{lp.fixed_effects[name]:>12.4g}")
    for i, name in enumerate(s.omega_names):
        print(f"{'omega^2 ' + name:<12}{s.omega[i, i]:>12.4g}{lp.omega[i, i]:>12.4g}")
    for name in s.sigma:
        print(f"{name:<12}{s.sigma[name]:>12.4g}{lp.sigma[name]:>12.4g}")
    print(f"{'OFV':<12}{s.ofv:>12.2f}{lp.ofv:>12.2f}   (SAEM: importance sampling; "
          f"Laplace: its approximation)")
    print(f"{'OFV (IS)':<12}{s.ofv:>12.2f}{lp.ofv_importance:>12.2f}   (both the exact -2 log L "
          f"by importance sampling; Laplace's MC SE {lp.ofv_importance_se:.2f})")
    print(f"Laplace: {lp.iterations} outer iterations from SAEM's estimates")


if __name__ == "__main__":
    main()
