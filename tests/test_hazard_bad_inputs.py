"""Bad input for hazards: ``[hazards.NAME]`` in model files, ``[survival]`` in fit configs,
survival data. Each gives one error naming the file and the key (or the subject)."""

from __future__ import annotations

import pytest

from progression.data.cohort import Cohort
from progression.errors import ConfigError, DataError, ModelError
from progression.fit import parse_fit_config
from progression.fit.design import designs_from_cohort
from progression.model.spec import parse_model

BASE = """
[model]
name = "toy"
time_unit = "month"
[parameters.k]
value = 0.1
bounds = [0.0, 1.0]
[parameters.h0]
value = 0.05
bounds = [0.001, 1.0]
[states.x]
initial = 1.0
[equations]
x = "-k * x"
[observables.score]
expression = "10 * x"
"""


def model_text(hazards: str) -> str:
    return BASE + hazards


def test_a_good_hazard_section_parses():
    spec = parse_model(model_text('[hazards.death]\nrate = "h0 * exp(0.1 * (10 - score))"\n'),
                       source="toy.toml")
    assert spec.hazard().name == "death"
    assert "Lambda_death" in spec.state_names and "z_death" in spec.parameter_names
    assert {"hazard_death", "cumhaz_death", "survival_death"} <= set(spec.observable_names)
    # the observable is inlined in the state equation
    assert dict(spec.equations)["Lambda_death"] == "h0 * exp(0.1 * (10 - 10 * x))"
    event = {e.name: e for e in spec.events}["death"]
    assert event.terminal and event.condition == "threshold_death - Lambda_death"


MODEL_CASES = [
    ("unknown name in the rate", '[hazards.death]\nrate = "h0 * exp(kk * x)"\n',
     ["[hazards.death] rate", "kk"]),
    ("missing rate", '[hazards.death]\nevent = "death"\n', ["[hazards.death]", "'rate'"]),
    ("zero constant rate", "[hazards.death]\nrate = 0\n", ["[hazards.death] rate", "> 0"]),
    ("negative constant rate", "[hazards.death]\nrate = -0.1\n",
     ["[hazards.death] rate", "-0.1"]),
    ("boolean rate", "[hazards.death]\nrate = true\n", ["[hazards.death] rate", "True"]),
    ("list rate", "[hazards.death]\nrate = [1, 2]\n", ["[hazards.death] rate", "[1, 2]"]),
    ("empty rate", '[hazards.death]\nrate = ""\n', ["[hazards.death] rate"]),
    ("syntax error in the rate", '[hazards.death]\nrate = "h0 *"\n', ["[hazards.death] rate"]),
    ("unknown key", '[hazards.death]\nrate = "h0"\nwhen = 3\n', ["[hazards.death]", "'when'"]),
    ("not a table", '[hazards]\ndeath = "h0"\n', ["[hazards.death]", "expected a table"]),
    ("bad event name", '[hazards.death]\nrate = "h0"\nevent = "the end"\n',
     ["[hazards.death] event", "the end"]),
    ("two hazards of one event",
     '[hazards.death]\nrate = "h0"\n[hazards.dying]\nrate = "h0"\nevent = "death"\n',
     ["[hazards.dying] event", "[hazards.death]"]),
    ("terminal not a boolean", '[hazards.death]\nrate = "h0"\nterminal = "yes"\n',
     ["[hazards.death] terminal", "'yes'"]),
    ("implicit state name already used",
     '[hazards.x]\nrate = "h0"\n[states.Lambda_x]\ninitial = 0.0\n',
     ["[hazards.x]", "Lambda_x", "reserved"]),
    ("implicit parameter name already used",
     '[hazards.death]\nrate = "h0"\n[parameters.z_death]\nvalue = 0.0\n',
     ["[hazards.death]", "z_death"]),
    ("hazard name clashes with an observable it adds",
     '[hazards.death]\nrate = "h0"\n[observables.survival_death]\nexpression = "x"\n',
     ["[hazards.death]", "survival_death"]),
    ("reserved hazard name", '[hazards.exp]\nrate = "h0"\n', ["[hazards.exp]", "reserved"]),
]


@pytest.mark.parametrize(("case", "hazards", "needles"), MODEL_CASES,
                         ids=[c[0] for c in MODEL_CASES])
def test_bad_hazard_sections_are_refused_by_file_and_key(case, hazards, needles):
    with pytest.raises(ModelError) as exc:
        parse_model(model_text(hazards), source="toy.toml")
    text = str(exc.value) + " ".join(getattr(exc.value, "problems", None) or [])
    assert "toy.toml" in text
    for needle in needles:
        assert needle in text, (needle, text)


# ------------------------------------------------------------------------------ [survival]

HAZARD = '[hazards.death]\nrate = "h0 * exp(0.1 * (10 - score))"\n'


def config_text(survival: str, estimator="individual") -> str:
    # the survival text first: a bare key must not fall into another table
    return f"""{survival}
[fit]
model = "toy.toml"
estimator = "{estimator}"
[data]
path = "toy.toml"
[error.score]
model = "additive"
a = 0.5
[parameters.k]
estimate = "subject"
value = 0.1
"""


def parse(tmp_path, survival, *, model=HAZARD, estimator="individual"):
    (tmp_path / "toy.toml").write_text(model_text(model))
    return parse_fit_config(config_text(survival, estimator), base_dir=tmp_path, name="toy",
                            source=str(tmp_path / "toy_fit.toml"))


def test_a_good_survival_table_parses(tmp_path):
    cfg = parse(tmp_path, '[survival]\nevents = ["death", "ventilation"]\nentry = "enrolment"')
    assert cfg.survival.hazard == "death" and cfg.survival.events == ("death", "ventilation")
    assert cfg.survival.cumulative == "cumhaz_death" and cfg.survival.entry == "enrolment"
    assert parse(tmp_path, "").survival is None


CONFIG_CASES = [
    ("unknown key", '[survival]\nentri = "first"', ["survival.entri", "entry"]),
    ("not a table", 'survival = "death"', ["'survival'", "expected a table"]),
    ("unknown hazard", '[survival]\nhazard = "deth"', ["survival.hazard", "deth", "death"]),
    ("hazard not a string", "[survival]\nhazard = 3", ["survival.hazard", "3"]),
    ("unknown event type", '[survival]\nevents = ["died later"]',
     ["survival.events", "died later"]),
    ("censored as the event", '[survival]\nevents = ["censored"]',
     ["survival.events", "censored"]),
    ("empty events", "[survival]\nevents = []", ["survival.events"]),
    ("events not strings", "[survival]\nevents = [1]", ["survival.events"]),
    ("unknown entry", '[survival]\nentry = "baseline"', ["survival.entry", "baseline"]),
    ("interval not a boolean", '[survival]\ninterval = "yes"', ["survival.interval", "'yes'"]),
    ("bootstrap with survival", '[survival]\n[estimator]\nuncertainty = ["bootstrap"]',
     ["estimator.uncertainty", "bootstrap", "events"]),
]


@pytest.mark.parametrize(("case", "survival", "needles"), CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_survival_keys_are_refused_by_file_and_key(tmp_path, case, survival, needles):
    with pytest.raises(ConfigError) as exc:
        parse(tmp_path, survival)
    text = str(exc.value) + " ".join(getattr(exc.value, "problems", None) or [])
    assert "toy_fit.toml" in text
    for needle in needles:
        assert needle in text, (needle, text)


def test_a_model_without_hazard_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"toy_fit.toml, key 'survival'.*no \[hazards"):
        parse(tmp_path, "[survival]", model="")


def test_a_hazard_event_that_is_no_data_event_type_needs_events(tmp_path):
    model = '[hazards.relapse]\nrate = "h0"\n'
    with pytest.raises(ConfigError, match=r"key 'survival.events'.*'relapse'"):
        parse(tmp_path, "[survival]", model=model)
    assert parse(tmp_path, '[survival]\nevents = ["death"]', model=model).survival.events == (
        "death",)


def test_population_estimators_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'survival'.*'focei'"):
        parse(tmp_path, "[survival]", estimator="focei")


# ------------------------------------------------------------------------------ data


def _cohort(events):
    obs = {"subject": ["P1", "P1", "P2", "P2"], "time": [1.0, 2.0, 0.0, 3.0],
           "observable": ["score"] * 4, "value": [9.0, 8.0, 10.0, 7.0]}
    return Cohort(obs, events=events, source="toy.csv")


def test_survival_data_problems_name_the_subject_or_key(tmp_path):
    cfg = parse(tmp_path, "[survival]")
    with pytest.raises(ConfigError, match=r"key 'survival'.*no events table"):
        designs_from_cohort(_cohort(None), cfg)
    only_censored = {"subject": ["P1"], "time": [4.0], "event": ["censored"]}
    with pytest.raises(ConfigError, match=r"key 'survival.events'.*'censored'"):
        designs_from_cohort(_cohort(only_censored), cfg)
    early = {"subject": ["P1", "P2"], "time": [0.5, 5.0], "event": ["death", "censored"]}
    with pytest.raises(DataError, match=r"toy.csv, subject 'P1'.*before the subject's entry"):
        designs_from_cohort(_cohort(early), cfg)
    good = {"subject": ["P1", "P2"], "time": [4.0, 5.0], "event": ["death", "censored"]}
    designs, _ = designs_from_cohort(_cohort(good), cfg)
    assert [d.survival.kind for d in designs] == [0, 1]
    assert [d.survival.entry for d in designs] == [1.0, 0.0]


def test_the_cli_exits_2_on_a_bad_survival_key(tmp_path, capsys):
    from progression.cli import main

    (tmp_path / "toy.toml").write_text(model_text(HAZARD))
    cfg = tmp_path / "toy_fit.toml"
    cfg.write_text(config_text('[survival]\nentry = "baseline"'))
    try:
        code = main(["fit", str(cfg)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "survival.entry" in err and "Traceback" not in err
