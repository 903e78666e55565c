"""The synthetic-cohort generator split by layer, and where a virtual population's clock starts.

* ``progression.virtual.synthesis``: generic steps (parameter draws, grid interpolation,
  measurement error, visits, dropout from a hazard), checked against closed forms;
* ``progression.als.synthetic``: the ALS generator, which refuses a model that is not an ALS
  model by name; the old paths are the same module;
* ``VirtualPopulation``: anchor and delay from the model's disease content (ALS:
  ``clinical_onset`` + 12 months), model time 0 for a model without content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError
from progression.virtual.cohort_config import FactorSpec, ObservableSpec, ParameterSpec
from progression.virtual.population import (
    CONTENT,
    VirtualPopulation,
    _anchor_times,
    population_defaults,
)
from progression.virtual.synthesis import (
    draw_parameters,
    dropout_times,
    interpolate,
    measure,
    nominal_visits,
    planned_visits,
    visit_times,
)

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "models"
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"


# ------------------------------------------------------------------------------ old paths


def test_old_paths_are_the_als_generator():
    import progression.als.synthetic as als
    import progression.data.synthetic as old_data
    import progression.virtual.synthetic as old_virtual

    assert old_data is als and old_virtual is als
    assert pg.synthetic_cohort is als.synthetic_cohort
    assert pg.PopulationConfig is als.PopulationConfig
    assert pg.load_population_config is als.load_population_config
    assert pg.read_truth is als.read_truth and pg.write_synthetic is als.write_synthetic


# ------------------------------------------------------------------- ALS generator refuses


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_als_generator_refuses_a_model_without_als_content(tmp_path):
    path = _write(tmp_path, f'[cohort]\nmodel = "{MODELS / "decay.toml"}"\n')
    with pytest.raises(ConfigError) as err:
        pg.synthetic_cohort(path, n=5)
    text = str(err.value) + "\n".join(getattr(err.value, "problems", None) or [])
    assert str(path) in text and "key 'cohort.model'" in text
    assert "no 'clinical_onset' event" in text and "no 'death' event" in text
    assert "no ALSFRS_R observable" in text and "ALS model" in text


def test_score_error_model_needs_its_range(tmp_path):
    path = _write(tmp_path, "[observables.ALSFRS_R]\nresidual_sd = 2.0\n"
                            '[observables.NfL]\nerror = "score"\n')
    with pytest.raises(ConfigError, match=r"key 'observables\.NfL\.range': expected the "
                                          r"score's \[low, high\]"):
        pg.load_population_config(path)
    path = _write(tmp_path, "[observables.ALSFRS_R]\nresidual_sd = 2.0\n"
                            "[observables.NfL]\nrange = [0, 10]\n")
    with pytest.raises(ConfigError, match=r"key 'observables\.NfL\.range': applies to error "
                                          r"\"score\" only, found error \"lognormal\""):
        pg.load_population_config(path)
    path = _write(tmp_path, "[observables.ALSFRS_R]\nresidual_sd = 2.0\n"
                            '[observables.NfL]\nerror = "score"\nrange = [0, 10]\n')
    cfg = pg.load_population_config(path)
    nfl = next(ob for ob in cfg.observables if ob.name == "NfL")
    assert nfl.error == "score" and nfl.score_range == (0.0, 10.0)
    als = next(ob for ob in cfg.observables if ob.name == "ALSFRS_R")
    assert als.error == "alsfrs" and als.score_range == (0.0, 48.0)


def test_default_observable_is_the_alsfrs_score():
    cfg = pg.PopulationConfig.from_dict({"cohort": {"n": 3}})
    (ob,) = cfg.observables
    assert (ob.name, ob.error, ob.score_range, ob.residual_sd) == ("ALSFRS_R", "alsfrs",
                                                                   (0.0, 48.0), 2.0)


# ------------------------------------------------------------------------- generic steps


def test_interpolate_reproduces_a_quadratic():
    """Catmull-Rom uses central-difference slopes, exact for a quadratic: the interpolant
    reproduces one to rounding at any time inside the grid."""
    step = 0.5
    grid = np.arange(0.0, 20.0 + step / 2, step)
    coef = np.array([[1.0, -0.3, 0.02], [4.0, 0.5, -0.01]])
    Y = coef[:, :1] + coef[:, 1:2] * grid + coef[:, 2:] * grid ** 2
    X = np.array([[0.7, 3.14159, 11.0, 18.9], [0.0, 5.25, 9.99, 19.4]])
    exact = coef[:, :1] + coef[:, 1:2] * X + coef[:, 2:] * X ** 2
    assert np.max(np.abs(interpolate(Y, step, X) - exact)) < 1e-12


def test_dropout_from_a_constant_hazard_is_exponential():
    """Constant hazard lam: cumulative hazard lam t (the trapezoid rule is exact), so the
    dropout time is e / lam exactly; none when e exceeds lam * the grid's end."""
    u = np.arange(0.0, 10.0 + 0.125, 0.25)
    lam = np.array([0.2, 0.5, 1.0, 0.05])
    e = np.array([0.37, 1.9, 0.001, 0.9])
    got = dropout_times(u, np.repeat(lam[:, None], u.size, axis=1), e)
    expected = np.maximum(e / lam, 0.01)
    expected[3] = np.inf                       # 0.9 > 0.05 * 10
    assert np.allclose(got[:3], expected[:3], rtol=1e-12, atol=0)
    assert got[2] == 0.01 and np.isinf(got[3])


def test_dropout_from_a_linear_hazard():
    """Hazard b t: H(t) = b t^2 / 2 (trapezoid exact at grid nodes; linear in between), so a
    draw equal to H at a node gives that node."""
    u = np.arange(0.0, 6.0 + 0.05, 0.1)
    b = 0.8
    nodes = np.array([1.0, 2.5, 4.2])
    got = dropout_times(u, np.repeat((b * u)[None, :], 3, axis=0), b * nodes ** 2 / 2)
    assert np.allclose(got, nodes, rtol=0, atol=1e-12)


def test_measure_error_models():
    f = np.array([[47.6, 12.2, -3.0, 60.0], [0.4, 1.0, 2.0, 3.0]])
    zero = np.zeros(2)
    noeps = np.zeros_like(f)
    score = ObservableSpec("S", "S", "score", score_range=(0.0, 48.0))
    value, cens, limit = measure(score, f, zero, noeps)
    assert value[0].tolist() == [48.0, 12.0, 0.0, 48.0] and not cens.any()
    assert np.isnan(limit).all()
    logn = ObservableSpec("C", "C", "lognormal", subject_sd=0.5, residual_sd=0.2, floor=0.5,
                          decimals=3)
    eta, eps = np.array([0.0, 1.0]), np.full(f.shape, -1.0)
    value, cens, limit = measure(logn, np.abs(f), eta, eps)
    raw = np.abs(f) * np.exp(0.5 * eta[:, None] - 0.2)
    expected = np.round(raw, 3)
    below = expected < 0.5
    assert (cens == below).all() and np.allclose(limit[below], 0.5)
    assert np.array_equal(value, np.where(below, 0.5, expected))
    normal = ObservableSpec("N", "N", "normal", subject_sd=1.0, residual_sd=2.0, decimals=1)
    value, _, _ = measure(normal, f, eta, eps)
    assert np.array_equal(value, np.round(f + eta[:, None] - 2.0, 1))


def test_visit_schedule():
    nominal = nominal_visits(3.0, None, 12.0)
    assert nominal.tolist() == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert nominal_visits(None, (0.0, 1.0, 6.0), 99.0).tolist() == [0.0, 1.0, 6.0]
    z = np.array([[5.0, -20.0, 0.0, 0.0, 0.0], [0.0, 0.1234, -0.6, 0.3, 0.0]])
    w = visit_times(nominal, 1.0, z)
    assert w[0].tolist() == [0.0, 0.25, 6.0, 9.0, 12.0]     # baseline 0, gap >= 0.25
    assert w[1].tolist() == [0.0, 3.12, 5.4, 9.3, 12.0]      # rounded to 0.01
    u_missed = np.array([[0.0, 0.9, 0.1, 0.9, 0.9], [0.0, 0.0, 0.9, 0.9, 0.9]])
    scheduled, missed, end = planned_visits(nominal, w, np.array([7.0, 12.5]), u_missed, 0.5)
    assert scheduled.tolist() == [[True, True, True, False, False], [True] * 5]
    assert missed.tolist() == [[False, False, True, False, False],
                               [False, True, False, False, False]]
    assert end.tolist() == [7.0, 12.5]


def test_draw_parameters_closed_form_and_statistics():
    rng = np.random.default_rng(3)
    m = 40000
    terms = {"x": np.where(np.arange(m) % 2 == 0, 1.0, 0.0)}
    params = (ParameterSpec("a", 2.0, 0.3, "log", (("x", 0.5),)),
              ParameterSpec("b", 1.0, 0.0, "log"),
              ParameterSpec("c", 5.0, 0.4, "normal", bounds=(4.0, 6.0)))
    factors = (FactorSpec("pace", 0.6, (("a", 1.0), ("b", 1.0))),)
    drawn, varied = draw_parameters(params, factors, (("k", 0.7),), terms, rng, m)
    assert set(drawn) == {"a", "b", "c", "k"} and set(varied) == {"a", "b", "c"}
    assert np.all(drawn["k"] == 0.7)
    # b has no own SD: log b is the shared factor alone; log a = log 2 + 0.5 x + f + 0.3 z
    f = np.log(drawn["b"])
    rest = np.log(drawn["a"]) - np.log(2.0) - 0.5 * terms["x"] - f
    se = 0.3 / np.sqrt(m)
    assert abs(rest.mean()) < 5 * se and abs(rest.std() - 0.3) < 0.01
    assert abs(f.std() - 0.6) < 0.01
    # c: truncated to its bounds by redrawing, so none sits on a bound
    assert drawn["c"].min() > 4.0 and drawn["c"].max() < 6.0


# ------------------------------------------------------------- virtual population anchor


def test_als_population_is_anchored_by_its_content():
    model = pg.load_model("als_reduced")
    assert population_defaults(model) == {"anchor": "clinical_onset", "delay": 12.0}
    default = VirtualPopulation.typical("als_reduced")
    explicit = VirtualPopulation.typical("als_reduced", anchor="clinical_onset", delay=12.0)
    assert default.time_offsets[0] == explicit.time_offsets[0]
    onset = _anchor_times(model, model.parameter_table(None), "clinical_onset",
                          np.array([0.0]))[0]
    assert default.time_offsets[0] == pytest.approx(onset + 12.0, abs=1e-9)
    assert "clinical_onset + 12" in default.description


# typical() screens to model time 240, where x0 exp(-k t) ~ 1e-52 is below the solver's atol
# and may come out slightly negative: log_x is then NaN there (not at the times tested)
@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_model_without_content_starts_at_model_time_zero():
    model = pg.load_model(MODELS / "decay.toml")
    assert population_defaults(model) == {"anchor": None, "delay": 0.0}
    pop = VirtualPopulation.typical(model)
    assert pop.time_offsets.tolist() == [0.0]
    pop = VirtualPopulation.sample(model, 20, seed=1, max_time=20.0)
    assert pop.n_subjects == 20 and np.all(pop.time_offsets == 0.0)
    # an anchor of its own: the half-life event of x0 exp(-k t) is ln 2 / k
    k = model.defaults[model.parameter_index("k")]
    tight = {"rtol": 1e-10, "atol": 1e-12}
    pop = VirtualPopulation.typical(model, anchor="half", delay=1.0, solver=tight)
    assert pop.time_offsets[0] == pytest.approx(np.log(2) / k + 1.0, rel=1e-8)
    pop = VirtualPopulation.sample(model, 30, seed=2, anchor="half", max_time=20.0,
                                   solver=tight)
    ks = pop.subject_parameters[:, model.parameter_index("k")]
    assert np.allclose(pop.time_offsets, np.log(2) / ks, rtol=1e-8, atol=0)
    with pytest.raises(ConfigError, match="has no event 'clinical_onset'"):
        VirtualPopulation.typical(model, anchor="clinical_onset")
    assert repr(CONTENT) == "<from the model's content>"


# ---------------------------------------------------------- a cohort of any model, end to end


def test_simulate_cohort_of_a_model_without_disease_content():
    """Logistic growth x(t) = K / (1 + (K/x0 - 1) exp(-r t)) with a terminal event at K/2:
    noiseless observations equal the closed form at each subject's own times (r varies), and
    follow-up stops at the event, t = ln(K/x0 - 1) / r, recorded in the truth."""
    from progression.virtual.synthesis import simulate_cohort

    model = pg.load_model(MODELS / "logistic.toml")
    frac = ObservableSpec("fraction", "fraction", "normal", decimals=8)
    noisy = ObservableSpec("frac_noisy", "fraction", "lognormal", residual_sd=0.1,
                           probability=0.5)
    cohort, truth = simulate_cohort(
        model, 40, observables=[frac, noisy], parameters=[ParameterSpec("r", 0.8, 0.3)],
        seed=4, interval=0.5, follow_up=(2.0, 8.0), jitter=0.1,
        solver={"rtol": 1e-10, "atol": 1e-12})
    assert len(cohort) == 40 and truth.parameter_names == ("r",)
    assert np.all(truth["time_offset"] == 0.0) and cohort.time_unit == "day"
    r = dict(zip(truth.subjects, truth["r"], strict=True))
    K, x0 = 10.0, 0.5
    t_half = {s: np.log(K / x0 - 1) / r[s] for s in truth.subjects}
    obs = cohort.observations()
    exact = []
    for s, t, name, v in zip(obs["subject"], obs["time"], obs["observable"], obs["value"],
                             strict=True):
        assert t <= t_half[s] + 1e-9, (s, t, t_half[s])
        if name == "fraction":
            exact.append(abs(v - 1 / (1 + (K / x0 - 1) * np.exp(-r[s] * t))))
    assert max(exact) < 1e-7
    ended = np.isfinite(truth["end_model_time"])
    assert ended.any() and not ended.all()
    got = truth["end_model_time"][ended]
    want = np.array([t_half[s] for s, e in zip(truth.subjects, ended, strict=True) if e])
    assert np.allclose(got, want, rtol=1e-7)
    n_noisy = int(np.sum(np.asarray(obs["observable"]) == "frac_noisy"))
    n_exact = int(np.sum(np.asarray(obs["observable"]) == "fraction"))
    assert 0.3 * n_exact < n_noisy < 0.8 * n_exact     # baseline always, later visits 1 in 2


def test_simulate_cohort_anchored_on_an_event_and_reproducible():
    """Decay anchored at its half-life event: log x at data time t is log(x0 / 2) - k t."""
    from progression.virtual.synthesis import simulate_cohort

    model = pg.load_model(MODELS / "decay.toml")
    ob = ObservableSpec("log_x", "log_x", "normal", decimals=9)
    kwargs = dict(observables=[ob], parameters=[ParameterSpec("k", 0.5, 0.2)],
                  fixed=[("x0", 3.0)], schedule=(0.0, 1.0, 2.5), anchor="half", seed=9,
                  max_time=30.0,
                  solver={"rtol": 1e-10, "atol": 1e-12})
    cohort, truth = simulate_cohort(model, 12, **kwargs)
    k = dict(zip(truth.subjects, truth["k"], strict=True))
    assert np.allclose(truth["time_offset"], np.log(2) / truth["k"], rtol=1e-8)
    assert np.all(truth["x0"] == 3.0)
    obs = cohort.observations()
    err = [abs(v - (np.log(1.5) - k[s] * t)) for s, t, v in
           zip(obs["subject"], obs["time"], obs["value"], strict=True)]
    assert len(err) == 36 and max(err) < 1e-7
    again, truth2 = simulate_cohort(model, 12, **kwargs)
    assert again == cohort and np.array_equal(truth2["k"], truth["k"])


@pytest.mark.parametrize(("change", "message"), [
    ({"observables": [ObservableSpec("y", "nope")]}, "model has no observable 'nope'"),
    ({"parameters": [ParameterSpec("kk", 1.0)]}, "model has no parameter 'kk'"),
    ({"parameters": [ParameterSpec("k", 0.5, 0.1, effects=(("age", 0.1),))]},
     "covariate effects need a disease generator"),
    ({"interval": 1.0}, "found both"),
    ({"schedule": None}, "found neither"),
    ({"n": 0}, "expected a positive number of subjects"),
])
def test_simulate_cohort_refuses_bad_input(change, message):
    from progression.virtual.synthesis import simulate_cohort

    kwargs = {"n": 3, "observables": [ObservableSpec("log_x", "log_x", "normal")],
              "schedule": (0.0, 1.0)}
    kwargs.update(change)
    with pytest.raises(ConfigError, match=message) as err:
        simulate_cohort(MODELS / "decay.toml", **kwargs)
    assert "simulate_cohort (model 'decay')" in str(err.value)
