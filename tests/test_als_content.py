"""ALS content as data (progression/als): the intervention library read from TOML, the
defaults the generic virtual layer takes for an ALS model and only for an ALS model, and the
published-statistics targets of ``describe``."""

import math

import numpy as np
import pytest

import progression as pg
from progression.als import defaults as als_defaults
from progression.als.library import LIBRARY, evaluate, library
from progression.errors import ConfigError
from progression.virtual.content import defaults_for
from progression.virtual.endpoints import Endpoints
from progression.virtual.interventions import DAY, HOUR, WEEK, to_switches
from progression.virtual.population import Variability, default_variability

LOGISTIC = """
[model]
name = "growth"
time_unit = "month"
[parameters.r]
value = 0.3
bounds = [0.01, 2.0]
[parameters.kA]
value = 0.5
bounds = [0.0, 5.0]
[states.x]
initial = 0.1
[equations]
x = "r * x * (1 - x) - kA * 0.0"
[observables.score]
expression = "10 * (1 - x)"
"""


@pytest.fixture(scope="module")
def als():
    return pg.load_model("als_systemic")


@pytest.fixture(scope="module")
def growth(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "growth.toml"
    path.write_text(LOGISTIC)
    return pg.load_model(path)


# ---------------------------------------------------------------------- the library


def test_library_entries_match_their_documented_constants(als):
    """Numbers of the TOML file reach the interventions as the factories wrote them."""
    (tcz,) = library("tocilizumab")
    assert tcz.doses == (0.0, 4 * WEEK, 8 * WEEK)
    assert tcz.pk.dose == 8.0 * 70.0 and tcz.pk.half_life == 13 * DAY
    assert tcz.pk.emax == 0.82 and tcz.add == {"eps_IL6R": 1.0}   # 0.70 before issue 13
    (cont,) = library("tocilizumab", continued=True)
    assert cont.doses is None and cont.every == 4 * WEEK
    (il2,) = library("ld_il2", dose_miu=1.0)
    assert il2.level == pytest.approx((1.0 / 2.0) / (2.0 / 3.0))    # Emax in dose, ED50 1 MIU
    assert il2.every == 28 * DAY and il2.duration == 5 * DAY and il2.label.endswith("1 MIU")
    (il2pk,) = library("ld_il2", pk=True)
    assert il2pk.level == 1.0 and il2pk.pk.interval == DAY
    assert il2pk.pk.half_life == 1.5 * HOUR and il2pk.pk.absorption_half_life == 5 * HOUR
    # PK normalised so that 2 MIU/day gives mean block exposure 1
    t = np.linspace(0.0, 5 * DAY, 4001)
    mean = np.mean(il2pk.pk.response(il2pk.pk.concentration(t, np.arange(5) * DAY)))
    assert mean == pytest.approx(1.0, rel=2e-3)
    (treg,) = library("treg_infusion", dose=0.5, il2_level=0.0)
    assert treg.jump == {"R": "R + 0.5", "phi": "(R*phi + 0.5*1.0)/(R + 0.5)"}
    assert treg.add == {}
    il2_part, abatacept = library("coya302", strength=0.5)
    assert il2_part.label == "COYA 302: IL-2" and il2_part.add == {"uIL2": 0.5}
    assert abatacept.scale == {"eEP": 0.5 ** 0.5}
    assert library("np001")[0].stop == 6.0
    assert library("glial_block", strength=0.4)[0].scale == {"kA": 0.6, "kE": 0.6}
    assert library("anakinra")[0].fade == (6.0, 3.0)
    for name, factory in LIBRARY.items():
        assert factory.__name__ == name and "strength" in factory.__signature__.parameters


def test_fingolimod_acts_against_the_subjects_own_gil2(als):
    """Treg production x(1 + gIL2 uIL2) falls by the documented factor 0.6 whatever each
    subject's fitted gIL2 (the latent bug assumed gIL2 = 2)."""
    (fingo,) = library("fingolimod")
    assert fingo.add_per == {"uIL2": "gIL2"}
    base = np.repeat(als.defaults[None], 3, axis=0)
    j, u = als.parameter_index("gIL2"), als.parameter_index("uIL2")
    base[:, j] = [0.5, 2.0, 7.0]
    (on, *_) = to_switches(als, fingo, until=12.0, base=base)
    new_u = base[:, u] + on.add["uIL2"]
    factor = (1 + base[:, j] * new_u) / (1 + base[:, j] * base[:, u])
    np.testing.assert_allclose(factor, 0.6, rtol=1e-12)


def test_expressions_are_arithmetic_only():
    assert evaluate("2 * x ** 2 - max(0.0, 1 - y)", {"x": 3.0, "y": 0.5}, "t") == 17.5
    assert evaluate("3 weeks", {}, "t") == 3 * WEEK
    assert evaluate("none", {}, "t") is None
    for bad, match in [("__import__('os')", "not allowed"), ("x.real", "not allowed"),
                       ("zz + 1", "unknown name 'zz'"), ("1 +", "not an expression")]:
        with pytest.raises(ConfigError, match=match):
            evaluate(bad, {"x": 1.0}, "somewhere")


def test_a_factory_refuses_unknown_options_like_a_function():
    with pytest.raises(TypeError, match="unexpected keyword argument 'dose'"):
        LIBRARY["masitinib"](dose=3)
    with pytest.raises(ConfigError, match="unknown option 'dose'"):
        library("masitinib", dose=3)


# ------------------------------------------------------------------------ defaults


def test_als_defaults_apply_to_als_models_only(als, growth):
    assert als_defaults.applies_to(als)
    assert not als_defaults.applies_to(growth)
    assert defaults_for(growth) == {}
    v = default_variability(als)
    assert v == Variability(log_sd={"k0": 0.3, "kA": 0.3, "eD": 0.3, "phimax": 0.3},
                            # N0 (the functional mapping) since the third issue-13
                            # recalibration: progression/als/defaults.toml [variability]
                            normal_sd={"Ndeath": 0.05, "z_death": 1.0, "Nth": 0.05,
                                       "N0": 0.04},
                            shared=((("k0", "kA", "kE"), 0.3, 0.9),))
    # a non-ALS model sharing a parameter name (kA) no longer gets the ALS cohort
    assert default_variability(growth) == Variability(log_sd={"r": 0.3, "kA": 0.3})


def test_endpoints_resolve_from_the_model_content(als, growth):
    ep = Endpoints().resolved(als, 18.0)
    assert ep == Endpoints(function="ALSFRS_R", times=(6.0, 12.0, 18.0),
                           slope_window=(0.0, 12.0), threshold=24.0, event="death",
                           markers=("NfL", "CRP"), share="inflammatory_share")
    with pytest.raises(ConfigError, match="endpoints.function: model 'growth'"):
        Endpoints().resolved(growth, 12.0)
    with pytest.raises(ConfigError, match="endpoints.threshold"):
        Endpoints(function="score").resolved(growth, 12.0)
    generic = Endpoints(function="score", threshold=5.0).resolved(growth, 12.0)
    assert generic.times == (12.0,) and generic.slope_window == (0.0, 12.0)
    assert generic.event == "" and generic.markers == () and generic.share is None


def test_compare_on_a_model_without_disease_content(growth):
    pop = pg.VirtualPopulation(growth, growth.parameter_table({"r": [0.2, 0.4]}), [0.0, 0.0])
    comp = pg.compare(pop, {"faster": [pg.Intervention("r", scale=2.0)]}, horizon=12.0,
                      endpoints=Endpoints(function="score", threshold=5.0))
    # logistic growth: score = 10 (1 - x), x = 1 / (1 + 9 exp(-r t))
    x = 1.0 / (1.0 + 9.0 * np.exp(-np.array([0.4, 0.8]) * 12.0))
    got = comp.endpoint("faster", "score_change_12m")
    np.testing.assert_allclose(got, 10 * (1 - x) - 9.0, rtol=1e-4)


def test_trial_defaults_come_from_the_content(als, growth):
    trial = pg.VirtualTrial({"a": [], "b": [pg.Intervention("kA", scale=0.5)]})
    assert trial.model.name == "als_systemic"
    assert (trial.function, trial.event, trial.onset, trial.max_score) == (
        "ALSFRS_R", "death", "clinical_onset", 48.0)
    with pytest.raises(ConfigError, match="function: model 'growth'"):
        pg.VirtualTrial({"a": [], "b": []}, model=growth)


def test_scenario_configs_still_read_with_the_same_numbers():
    from pathlib import Path

    from progression._compare_config import read_compare_config

    root = Path(__file__).resolve().parents[1]
    cfg = read_compare_config(root / "configs/scenarios/anti_inflammatory.toml", n=3)
    for name, ivs in cfg.scenarios.items():
        for iv in ivs:
            assert iv.label and math.isfinite(iv.start), name
    assert cfg.scenarios  # every library name in the shipped config resolved


# ------------------------------------------------------------------------- targets


def test_describe_targets_are_read_per_setting():
    from progression.als.describe import _target, _targets

    targets = _targets()
    assert _target(targets, "decline_mean", "clinic")["range"] == (0.79, 0.99)
    assert _target(targets, "decline_mean", "trial")["range"] == (0.9, 1.1)
    assert _target(targets, "near_flat", "trial")["range"] is None
    assert _target(targets, "decline_sd", "trial")["target"] == "0.65 (trial-eligible)"
    for key in targets:
        if key == "attrition":
            continue
        for setting in ("clinic", "trial"):
            spec = _target(targets, key, setting)
            assert spec["statistic"] and spec["source"], (key, setting)
            rng = spec["range"]
            assert rng is None or rng[0] < rng[1], (key, setting)
    broken = {"x": {"statistic": "s", "clinic": {"target": "t"}}}
    with pytest.raises(ConfigError, match=r"targets.toml, \[x\]: missing key 'source'"):
        _target(broken, "x", "clinic")


def test_describe_reports_a_statistic_against_its_toml_range(monkeypatch):
    """Changing a range in the targets changes the verdict (the rows come from the file)."""
    import progression.als.describe as d

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    cohort = pg.read_cohort(root / "data" / "synthetic" / "als_clinic_200.csv")
    rows = {r.statistic: r for r in d.describe_cohort(cohort, setting="clinic")}
    male = rows["male (share)"]
    assert male.range == (0.55, 0.65)
    narrowed = {**d._targets(), "male": {**d._targets()["male"],
                                         "range": [male.value + 0.01, 1.0]}}
    monkeypatch.setattr(d, "_targets", lambda: narrowed)
    again = {r.statistic: r for r in d.describe_cohort(cohort, setting="clinic")}
    assert again["male (share)"].value == male.value and again["male (share)"].ok is False
