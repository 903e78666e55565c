"""Compare anti-inflammatory strategies on a virtual ALS cohort (or, later, a saved fit).

    python examples/compare_anti_inflammatory.py                 # 200 virtual patients
    python examples/compare_anti_inflammatory.py --small         # 20 patients, quick
    python examples/compare_anti_inflammatory.py --fit fits/als_synthetic_individual --draws 20

Every scenario is one batched simulation over all subjects, from each subject's untreated state
12 (6-18) months after clinical onset (a fit: from each subject's data time 0). Writes CSV and
Markdown tables and PNG figures. The library treatments act on als_systemic's handles; with a
fit of another model (the shipped fits are of als_reduced) the scenarios whose handles that
model lacks are left out, with a note (configs/scenarios/fitted_cohort.toml compares
hypothetical treatments on als_reduced's own handles).
"""

import argparse

import progression.interventions as iv
from progression.scenarios import VirtualPopulation, compare


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20 subjects, 12 months")
    parser.add_argument("--fit", help="saved fit folder to use instead of a virtual cohort")
    parser.add_argument("--draws", type=int, default=0, help="parameter draws (fits only)")
    parser.add_argument("--out", default="out/examples/compare_anti_inflammatory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    if args.fit:
        from progression.fit import load_fit  # provided by the fitting layer

        source = load_fit(args.fit)
    else:
        source = VirtualPopulation.sample("als_systemic", 20 if args.small else 200, seed=1,
                                          delay=(6.0, 18.0))
    horizon = 12.0 if args.small else 18.0
    scenarios = {
        "no treatment": [],
        "tocilizumab (continued)": [iv.tocilizumab(continued=True)],
        "low-dose IL-2": [iv.ld_il2()],
        "Treg infusions + IL-2": [iv.treg_infusion()],
        "COYA 302": iv.coya302(),
        "masitinib": [iv.masitinib()],
        "fingolimod": [iv.fingolimod()],
        "IL-2 + tocilizumab": [iv.ld_il2(), iv.tocilizumab(continued=True)],
        "ceiling (no glial toxicity)": [iv.glial_block()],
    }
    if args.fit:
        scenarios = _supported(scenarios, source.model)
    comp = compare(source, scenarios, horizon=horizon, draws=args.draws, seed=1,
                   endpoints=None, progress=not args.quiet)
    comp.write(args.out, overwrite=True)   # the example's own folder: rerunning refreshes it
    slope = f"ALSFRS_R_slope_0-{min(12.0, horizon):g}m"
    print(f"{int(comp.valid.sum())} subjects, {horizon:g} months; ALSFRS-R slope "
          f"(points/month) and slowing vs no treatment:")
    for name in comp.scenarios:
        r = comp.row(name, slope)
        slowing = r.get("relative_slowing_pct", 0.0)
        print(f"  {name:<30} {r['mean']:+.2f}  ({slowing:+.1f}%)")
    print(f"wrote {args.out}")


def _supported(scenarios, model):
    """The scenarios whose interventions act only on ``model``'s parameters and states; the
    others are reported and left out (``compare`` would refuse them, naming each handle)."""
    kept = {}
    for name, ivs in scenarios.items():
        missing = sorted({p for i in ivs for p in i.parameters if p not in model.parameter_names}
                         | {s for i in ivs for s in i.jump if s not in model.state_names})
        if missing:
            print(f"  left out {name!r}: model {model.name!r} has no {', '.join(missing)}")
        else:
            kept[name] = ivs
    return kept


if __name__ == "__main__":
    main()
