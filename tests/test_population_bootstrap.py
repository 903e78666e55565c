"""The case bootstrap of population fits (``[estimator] uncertainty = ["covariance",
"bootstrap"]``, :mod:`progression.fit._population_bootstrap`).

Known truth: a random-intercept model ``y_ij = b_i + e_ij`` (b_i ~ N(10, 1), e ~ N(0, 0.5²),
40 subjects x 4 values) fitted by FOCE-I (exact here: the model is linear in eta). Its
typical value is the mean of the subject means, so the case bootstrap's SE of it is known
in closed form from the data, ``sqrt(sum_i (m_i - m)^2) / N``, and the covariance step's is
``sqrt((omega^2 + sigma^2 / n) / N)``; both are checked. Measured (2026-12-03, 40 replicates
in 2.4 s): bootstrap SE 0.1668 against 0.1662 (closed form) and 0.1662 (covariance step);
the bootstrap SE of omega^2 0.182 against the covariance step's 0.229.

The rest: replicates reproducible with the seed and independent of the executor; each drawn
subject a new subject; the estimates named as the parameter table names them (held typical
values and fixed variances left out); SAEM with a Student-t residual (refused for the
parametric bootstrap of per-subject fits, which draws normal residuals) bootstrapped;
saved and reloaded with the fit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.fit import Design, fit, parse_fit_config
from progression.fit._population_bootstrap import (
    PopulationBootstrap,
    bootstrap_fitted,
    natural_parameters,
    resample,
)

ROOT = Path(__file__).resolve().parents[1]
LEVEL_MODEL = """
[model]
name = "level"
time_unit = "month"
[parameters.b0]
value = 10.0
bounds = [-100.0, 100.0]
[states.x]
initial = "b0"
[equations]
x = "0 * x"
[observables.y]
expression = "x"
"""
TIMES = np.array([1.0, 2.0, 3.0, 4.0])
N = 40


def _level_config(tmp_path: Path, samples: int = 40, seed: int = 4):
    (tmp_path / "level.toml").write_text(LEVEL_MODEL)
    text = f"""
[fit]
model = "level.toml"
estimator = "focei"
[data]
path = "level.toml"
[error.y]
model = "additive"
a = {{ value = 0.4, estimate = "population", bounds = [0.01, 5.0] }}
[parameters.b0]
estimate = "population"
value = 9.0
bounds = [-100.0, 100.0]
scale = "linear"
eta = 0.5
[estimator]
uncertainty = ["covariance", "bootstrap"]
bootstrap_samples = {samples}
seed = {seed}
"""
    return parse_fit_config(text, base_dir=tmp_path, name="level",
                            source=str(tmp_path / "level_fit.toml"), check_data=False)


def _level_data(seed: int = 12) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(N):
        y = 10.0 + rng.standard_normal() + 0.5 * rng.standard_normal(TIMES.size)
        out.append(Design(f"P{i + 1}", TIMES, np.zeros(TIMES.size, int), y,
                          np.zeros(TIMES.size, int), np.full(TIMES.size, np.nan)))
    return out


@pytest.fixture(scope="module")
def level(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("level")
    data = _level_data()
    return tmp, data, fit(_level_config(tmp), data=data)


def test_bootstrap_se_of_a_mean_matches_the_closed_form(level):
    """The typical value of the random-intercept model is the mean of the subject means: the
    bootstrap SE within 25 % of the data's closed form (40 replicates: Monte Carlo SD of an
    SE ~11 %; measured 0.4 %) and of the covariance step's SE; the percentile interval holds
    the estimate; omega^2's bootstrap SE within 40 % of the covariance step's (measured
    21 % below)."""
    _, data, res = level
    pop = res.population
    boot = pop.bootstrap_result()
    assert boot.names == ("b0", "omega^2 b0", "y.a")
    assert boot.samples.shape == (40, 3) and boot.n_failed == 0
    means = np.array([d.value.mean() for d in data])
    closed = math.sqrt(np.sum((means - means.mean()) ** 2)) / N
    assert pop.fixed_effects["b0"] == pytest.approx(means.mean(), abs=1e-6)
    se = boot.standard_errors()
    assert se["b0"] == pytest.approx(closed, rel=0.25)
    assert se["b0"] == pytest.approx(pop.fixed_effects_se["b0"], rel=0.25)
    lo, hi = boot.intervals()["b0"]
    assert lo < pop.fixed_effects["b0"] < hi
    var_se = pop.omega_se["b0"]
    assert se["omega^2 b0"] == pytest.approx(var_se, rel=0.4)
    # the intervals at another level are nested inside
    lo90, hi90 = boot.intervals(0.90)["b0"]
    assert lo <= lo90 < hi90 <= hi


@pytest.mark.filterwarnings("ignore:--jobs 2. the machine is busy")
def test_bootstrap_is_reproducible_and_executor_independent(level):
    """The same seed gives the same replicates in this process and on two worker
    processes; another seed gives others."""
    from progression.parallel import executor

    tmp, data, res = level
    cfg = _level_config(tmp, samples=4)
    first = bootstrap_fitted(cfg, res.population, data, samples=4, seed=4)
    np.testing.assert_array_equal(first.samples, res.population.bootstrap_result()
                                  .samples[:4])
    with executor(jobs=2) as ex:
        pooled = bootstrap_fitted(cfg, res.population, data, samples=4, seed=4, executor=ex)
    np.testing.assert_array_equal(pooled.samples, first.samples)
    other = bootstrap_fitted(cfg, res.population, data, samples=4, seed=5)
    assert not np.allclose(other.samples, first.samples)


def test_resample_draws_new_subjects_with_replacement():
    data = _level_data()
    a = resample(data, np.random.default_rng(1))
    b = resample(data, np.random.default_rng(1))
    assert [d.id for d in a] == [d.id for d in b]
    assert len(a) == N and len({d.id for d in a}) == N            # each drawn one is new
    origin = [d.id.split("#")[0] for d in a]
    assert len(set(origin)) < N                                    # with replacement
    src = {d.id: d for d in data}
    for d in a:
        np.testing.assert_array_equal(d.value, src[d.id.split("#")[0]].value)


def test_names_leave_out_held_parameters():
    """The shipped ALS fit: fT0's typical value is held and its variance fixed: neither is
    bootstrapped; the covariate coefficients and residual parameters are."""
    pop = pg.load_fit(ROOT / "fits" / "als_synthetic_population").population
    got = natural_parameters(pop)
    assert "fT0" not in got and "omega^2 fT0" not in got
    assert {"k0", "eD", "omega^2 eD", "k0~age", "CRP.sigma"} <= set(got)
    assert got["omega^2 eD"] == pytest.approx(float(pop.omega[1, 1]))


def test_saved_and_reloaded(level, tmp_path):
    _, _, res = level
    res.save(tmp_path / "fit")
    assert (tmp_path / "fit" / "figures" / "bootstrap.png").stat().st_size > 1000
    back = pg.load_fit(tmp_path / "fit").population.bootstrap_result()
    boot = res.population.bootstrap_result()
    np.testing.assert_array_equal(back.samples, boot.samples)
    assert back.intervals() == boot.intervals()
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "## Bootstrap" in report and "40 of 40 replicates estimated" in report
    assert isinstance(PopulationBootstrap.from_dict(boot.to_dict()), PopulationBootstrap)


def test_saem_with_student_t_residual_is_bootstrapped(tmp_path, capsys):
    """`progression fit` of SAEM with a t(4) residual and the bootstrap (3 short
    replicates): exit 0, every replicate estimated, the replicates differ, the screen lists
    the percentile intervals."""
    from progression.cli import main

    text = (ROOT / "configs" / "theoph_population_saem.toml").read_text()
    text = text.replace('"../data/examples/theoph.csv"',
                        repr(str(ROOT / "data" / "examples" / "theoph.csv")))
    text = text.replace('[error.conc]\nmodel = "additive"\n',
                        '[error.conc]\nmodel = "additive"\ndistribution = "t"\ndf = 4\n', 1)
    text = text.replace("is_samples = 1000\n", "").replace(
        "[estimator]\n", '[estimator]\nuncertainty = ["covariance", "bootstrap"]\n'
        "bootstrap_samples = 3\nsaem_exploration = 60\nsaem_smoothing = 40\n"
        "is_samples = 100\n", 1)
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    assert main(["fit", str(cfg), "--out", str(tmp_path / "fit"), "--no-figures",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "bootstrap: 3 of 3 replicates estimated" in out
    boot = pg.load_fit(tmp_path / "fit").population.bootstrap_result()
    assert boot.estimator == "saem" and boot.n_failed == 0
    assert len({tuple(r) for r in boot.samples}) == 3


def test_block_omega_and_covariate_coefficients_bootstrapped():
    """Theoph with a weight effect on CL and a (CL, V) Omega block, 3 replicates: the block's
    variances and covariance, the coefficient and the residual SD are bootstrapped (each
    replicate starts from the fit's estimates, block and coefficient included) and differ
    between replicates."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fit_start_from import THEOPH, _text

    text = _text() + "\n[estimator]\nuncertainty = [\"covariance\", \"bootstrap\"]\n" \
        "bootstrap_samples = 3\nseed = 2\n"
    res = fit(parse_fit_config(text, source="block.toml", base_dir=THEOPH.parent))
    boot = res.population.bootstrap_result()
    assert {"ka", "CL", "V", "CL~weight", "omega^2 ka", "omega^2 CL", "omega^2 V",
            "omega V,CL", "conc.a"} == set(boot.names)
    assert boot.n_failed == 0
    j = boot.names.index("omega V,CL")
    assert boot.estimates[j] == pytest.approx(float(res.population.omega[2, 1]))
    assert len(set(boot.samples[:, j])) == 3


def test_cli_bootstrap_flag(tmp_path, capsys):
    """``progression fit CONFIG --bootstrap 3``: the population fit's report has the
    bootstrap table with 3 replicates, the config itself asked for none."""
    from progression.cli import main

    text = (ROOT / "configs" / "theoph_population.toml").read_text().replace(
        '"../data/examples/theoph.csv"', repr(str(ROOT / "data" / "examples" / "theoph.csv")))
    assert "bootstrap" not in text
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    assert main(["fit", str(cfg), "--bootstrap", "3", "--out", str(tmp_path / "fit"),
                 "--no-figures", "--quiet"]) == 0
    assert "bootstrap: 3 of 3 replicates estimated" in capsys.readouterr().out
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "3 of 3 replicates estimated" in report


def test_parameter_uncertainty_draws_the_replicates(level):
    """A fit with a bootstrap: the population sampler's parameter draws are its replicates
    (each draw one replicate's estimates, in the covariance-step layout), said in the notes;
    without the bootstrap they come from the covariance step."""
    import dataclasses

    _, _, res = level
    sampler = res.population_sampler()
    xs, undetermined, notes = sampler.population_draws(200, rng=1)
    boot = res.population.bootstrap_result()
    assert "40 bootstrap replicates" in notes[0] and not undetermined
    names = list(res.population.covariance_names)
    assert names == ["theta b0", "log omega^2 b0", "log y.a"]
    reps = np.c_[boot.samples[:, 0], np.log(boot.samples[:, 1]), np.log(boot.samples[:, 2])]
    for x in xs:
        assert np.min(np.max(np.abs(reps - x), axis=1)) < 1e-12     # one of the replicates
    assert len({tuple(x) for x in xs}) > 20
    plain = dataclasses.replace(res, population=dataclasses.replace(res.population,
                                                                    bootstrap={}))
    xs2, _, notes2 = plain.population_sampler().population_draws(200, rng=1)
    assert "covariance step" in notes2[0]
    assert np.min(np.max(np.abs(reps[:, None, :] - xs2[None]), axis=2)) > 1e-9


def test_failed_replicates_are_counted_and_left_out(level, monkeypatch):
    """A replicate whose estimation raises (a FitError: the estimator could not evaluate the
    model) is a row of NaN, counted in ``n_failed``, left out of the intervals, SEs and
    medians, and the report says how many were estimated."""
    import importlib

    from progression.errors import FitError
    from progression.fit._population_bootstrap import bootstrap_lines

    estimators = importlib.import_module("progression.fit.estimators")
    tmp, data, res = level
    real = estimators.get_estimator
    calls = {"n": 0}

    def flaky(name, where=""):
        est = real(name, where)
        calls["n"] += 1
        if calls["n"] % 2 == 0:                 # every second replicate fails

            def boom(ep):
                raise FitError("the model could not be evaluated")

            return boom
        return est

    monkeypatch.setattr(estimators, "get_estimator", flaky)
    boot = bootstrap_fitted(_level_config(tmp, samples=6), res.population, data, samples=6,
                            seed=4)
    assert boot.n_failed == 3
    assert np.all(np.isnan(boot.samples[1::2])) and np.all(np.isfinite(boot.samples[0::2]))
    ok = boot.samples[0::2]
    assert boot.standard_errors()["b0"] == pytest.approx(ok[:, 0].std(ddof=1))
    assert boot.medians()["b0"] == pytest.approx(np.median(ok[:, 0]))
    text = "\n".join(bootstrap_lines(boot, res.population))
    assert "3 of 6 replicates estimated" in text
    # fewer than two estimated: no interval, NaN rather than a number from one replicate
    one = PopulationBootstrap(names=boot.names, estimates=boot.estimates,
                              samples=np.vstack([ok[:1], np.full((3, 3), np.nan)]),
                              converged=np.ones(4, bool), seed=4, level=0.95,
                              estimator="focei")
    assert all(math.isnan(v) for lo_hi in one.intervals().values() for v in lo_hi)


def test_stratified_resampling_keeps_each_stratum_size(level):
    """``bootstrap_stratify``: every replicate draws as many subjects from each value of the
    covariate as the data have, each from its own stratum (PsN's -stratify_on); the report
    says so; a subject without the covariate is refused naming the key and the subject."""
    from progression.errors import ConfigError
    from progression.fit._population_bootstrap import bootstrap_lines, strata_of

    tmp, data, res = level
    sexes = ["F" if i < 10 else "M" for i in range(N)]
    marked = [d.replace(baseline=(("sex", s),)) for d, s in zip(data, sexes, strict=True)]
    strata = strata_of(_level_config(tmp), marked, "sex")
    assert strata == sexes
    by_id = dict(zip((d.id for d in data), sexes, strict=True))
    for seed in range(5):
        drawn = resample(marked, np.random.default_rng(seed), strata)
        got = [by_id[d.id.split("#")[0]] for d in drawn]
        assert got.count("F") == 10 and got.count("M") == 30
        assert len({d.id for d in drawn}) == N
    boot = bootstrap_fitted(_level_config(tmp, samples=3), res.population, marked, samples=3,
                            seed=4, stratify="sex")
    assert boot.stratify == "sex" and boot.n_failed == 0
    assert PopulationBootstrap.from_dict(boot.to_dict()).stratify == "sex"
    assert "within each value of sex" in "\n".join(bootstrap_lines(boot, res.population))
    with pytest.raises(ConfigError, match=r"estimator\.bootstrap_stratify.*subject 'P1'.*"
                                          r"covariates: none"):
        strata_of(_level_config(tmp), data, "sex")
