"""The fit folder of a population (focei) fit: data.csv's PRED, IPRED, IWRES, CWRES and NPDE
columns, ``fit.ext``, the population figures and report, and save/load round trips.

The fit is a quick FOCE-I fit of 8 subjects simulated from pk_oral on Theoph's dosing and
sampling design (known theta, diagonal Omega, additive SD; seed 5), started at the truth.
Reference values are recomputed in the tests from the core functions and, for the simulated
replicates behind NPDE, by an independent draw written here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from progression.errors import ConfigError
from progression.fit.config import parse_fit_config, read_fit_config
from progression.fit.estimate import read_data
from progression.fit.estimators.focei import population_layout
from progression.fit.population import (
    FINAL,
    SE,
    Residual,
    npde,
    read_ext,
    residual_diagnostics,
)
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._outputs import (
    DATA_COLUMNS,
    correlation_condition_number,
    population_outputs,
    simulate_designs,
)
from progression.fit.problem import Problem, designs_from_cohort

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "theoph_population.toml"
TRUTH = {"theta": np.log([3.0, 30.0]), "omega": np.array([0.1, 0.05]), "a": 0.2}
N_SIM = 40
NAMES = ("CL", "V")
# pk_iv_bolus (one state, closed form conc = dose/V exp(-CL/V t)): a FOCE-I fit of 8 subjects
# takes ~5 s; started at the truth
TEXT = """
[fit]
name = "iv_population"
model = "pk_iv_bolus"
estimator = "focei"

[data]
path = "../data/examples/theoph.csv"

[error.conc]
model = "additive"
a = { value = 0.2, estimate = "population", bounds = [0.01, 10.0] }

[parameters.CL]
estimate = "population"
value = 3.0
bounds = [0.1, 100.0]
scale = "log"
eta = 0.1

[parameters.V]
estimate = "population"
value = 30.0
bounds = [1.0, 500.0]
scale = "log"
eta = 0.05

[parameters.dose]
estimate = "fixed"
value = 320.0

[estimator]
npde_samples = 40
seed = 3
"""


def _config(text_changes=()):
    text = TEXT
    for old, new in text_changes:
        assert old in text
        text = text.replace(old, new)
    return parse_fit_config(text, source=str(CONFIG), base_dir=CONFIG.parent)


def _simulated(cfg):
    """8 subjects on Theoph's sampling times (no doses: the bolus is the model's), simulated
    from TRUTH with seed 5."""
    designs, _ = designs_from_cohort(read_data(read_fit_config(CONFIG)),
                                     read_fit_config(CONFIG))
    problem = Problem.from_config(cfg)
    many = [designs[i].replace(id=f"sim{i}", doses=(), dose_records=False) for i in range(8)]
    problem.fix_grid_step(many)
    cols = np.array([problem.names.index(k) for k in NAMES])
    rng = np.random.default_rng(5)
    eta = rng.standard_normal((8, 2)) * np.sqrt(TRUTH["omega"])
    f, _ = ProblemModel(problem, many, cols).predict(TRUTH["theta"] + eta, np.arange(8))
    return [d.with_values(f[i, :d.n] + TRUTH["a"] * rng.standard_normal(d.n))
            for i, d in enumerate(many)]


@pytest.fixture(scope="module")
def fitted():
    """(config, FitResult) of the quick FOCE-I fit of 8 simulated subjects."""
    from progression.fit import fit

    cfg = _config()
    return cfg, fit(cfg, data=_simulated(cfg))


@pytest.fixture(scope="module")
def folder(fitted, tmp_path_factory):
    out = tmp_path_factory.mktemp("popfit") / "fit"
    fitted[1].save(out)
    return out


def _data_csv(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _num(x):
    return float(x) if x != "" else np.nan


def _reference(result):
    """The core's residual diagnostics recomputed here from the population part."""
    problem = result.problem
    pop = result.population
    cols, eta_pos, _ = population_layout(problem)
    model = ProblemModel(problem, result.designs, cols)
    mu = np.tile(np.log([pop.fixed_effects[k] for k in NAMES]),
                 (len(result.designs), 1))
    res = Residual((pop.sigma["conc.a"],), (0.0,))
    data = model.data()
    return model, data, mu, res, eta_pos, residual_diagnostics(
        model, data, mu, pop.omega, res, pop.ebes, eta_columns=eta_pos)


def test_data_csv_columns_equal_core_values(fitted, folder):
    """PRED, IPRED, IWRES, CWRES in data.csv equal the core's residual_diagnostics at the saved
    typical values, Omega, sigma and EBEs (to the 17 digits written); NPDE equal npde() of
    simulations drawn independently here with the fit's seed."""
    _, result = fitted
    rows = _data_csv(folder / "data.csv")
    for c in DATA_COLUMNS:
        assert c in rows[0], c
    model, data, mu, res, eta_pos, ref = _reference(result)
    got = {c: np.full(data.y.shape, np.nan) for c in DATA_COLUMNS}
    pos = {s: 0 for s in result.subject_ids}
    for r in rows:
        i = result.subject_ids.index(r["subject"])
        for c in DATA_COLUMNS:
            got[c][i, pos[r["subject"]]] = _num(r[c])
        pos[r["subject"]] += 1
    for c, want in (("PRED", ref.pred), ("IPRED", ref.ipred), ("IWRES", ref.iwres),
                    ("CWRES", ref.cwres)):
        np.testing.assert_allclose(got[c], want, rtol=1e-12, atol=1e-12, err_msg=c)
    # PRED at t = 0 is the bolus over the typical V; the IPRED differ from PRED by the EBEs
    np.testing.assert_allclose(got["PRED"][:, 0], 320.0 / result.population.fixed_effects["V"],
                               rtol=1e-7)
    assert np.nanmax(np.abs(got["IPRED"] - got["PRED"])) > 0.1
    # NPDE: the K simulated replicates written out independently: eta = L z, z ~ N(0, I) in
    # the order (replicate, subject), predictions, then residual noise in one draw
    rng = np.random.default_rng(3)
    N = len(result.designs)
    L = np.linalg.cholesky(result.population.omega)
    phi = np.repeat(mu[None], N_SIM, axis=0).reshape(N_SIM * N, 2)
    phi[:, eta_pos] += rng.standard_normal((N_SIM * N, 2)) @ L.T
    f = model.predict(phi, np.tile(np.arange(N), N_SIM))[0].reshape(N_SIM, N, -1)
    sims = f + res.a[0] * rng.standard_normal(f.shape)
    want = npde(data, np.where(data.mask[None], sims, np.nan)).npde
    np.testing.assert_allclose(got["NPDE"], want, rtol=1e-9, atol=1e-9)
    assert np.isfinite(got["NPDE"][data.mask]).all()
    # the old columns are unchanged: prediction = IPRED (the per-subject estimates are EBEs)
    pred = np.array([_num(r["prediction"]) for r in rows])
    np.testing.assert_allclose(pred, got["IPRED"][data.mask], rtol=1e-7, atol=1e-9)


def test_npde_reproducible_with_seed(fitted):
    """Same seed, same simulations and NPDE; another seed, other values."""
    _, result = fitted
    a = population_outputs(result, n_sim=30, seed=7)
    b = population_outputs(result, n_sim=30, seed=7)
    c = population_outputs(result, n_sim=30, seed=8)
    np.testing.assert_array_equal(a.npde, b.npde)
    np.testing.assert_array_equal(a.sims, b.sims)
    assert not np.allclose(a.npde[np.isfinite(a.npde)], c.npde[np.isfinite(c.npde)])
    # the simulated replicates have the model's spread: at t = 0 (conc = dose / V) their SD
    # across replicates is about sqrt((dose/V)^2 omega_V + a^2) (delta method; 30 replicates,
    # within 35 %)
    pop = result.population
    c0 = 320.0 / pop.fixed_effects["V"]
    want = np.sqrt(c0 ** 2 * pop.omega[1, 1] + pop.sigma["conc.a"] ** 2)
    sd = np.nanstd(a.sims[:, :, 0], axis=0, ddof=1)
    np.testing.assert_allclose(sd, want, rtol=0.35)


def test_simulated_noise_matches_residual_model():
    """simulate_designs with Omega ~ 0: the replicates scatter around f with SD sqrt(a^2 +
    b^2 f^2) (combined error), 4000 replicates, within 5%."""
    from progression.fit.population import PopulationData

    class Const:
        def predict(self, phi, index):
            f = np.exp(phi[:, :1]) * np.array([[1.0, 2.0, 4.0]])
            return f, np.repeat(f[..., None], phi.shape[1], axis=-1)

    data = PopulationData.from_subjects([np.ones(3), np.ones(2)])
    mu = np.zeros((2, 1))
    s = simulate_designs(Const(), data, mu, np.array([[1e-12]]), Residual((0.5,), (0.2,)),
                         np.array([0]), 4000, seed=1)
    assert s.shape == (4000, 2, 3) and np.isnan(s[:, 1, 2]).all()
    f = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(s[:, 0].mean(axis=0), f, atol=0.05)
    np.testing.assert_allclose(s[:, 0].std(axis=0), np.sqrt(0.25 + 0.04 * f ** 2), rtol=0.05)


def test_simulated_noise_of_a_student_t_observable_is_t():
    """A model whose ``residual_df`` says t(3): its residual draws are scale * t(3) (quantiles
    of 20,000 draws against scipy.stats.t within 3 %), the normal observable's stay normal."""
    from scipy import stats

    from progression.fit.population import PopulationData

    class Const:
        residual_df = np.array([3.0, np.inf])

        def predict(self, phi, index):
            f = np.exp(phi[:, :1]) * np.array([[1.0, 2.0]])
            return f, np.repeat(f[..., None], phi.shape[1], axis=-1)

    data = PopulationData.from_subjects([np.ones(2)], observables=[np.array([0, 1])])
    s = simulate_designs(Const(), data, np.zeros((1, 1)), np.array([[1e-12]]),
                         Residual((0.4, 0.4), (0.0, 0.0)), np.array([0]), 20000, seed=3)
    q = np.array([0.75, 0.9, 0.975])
    r_t = (s[:, 0, 0] - 1.0) / 0.4
    r_n = (s[:, 0, 1] - 2.0) / 0.4
    np.testing.assert_allclose(np.quantile(r_t, q), stats.t.ppf(q, 3), rtol=0.03)
    np.testing.assert_allclose(np.quantile(r_n, q), stats.norm.ppf(q), rtol=0.03)


def test_ext_reads_back_to_estimates(fitted, folder):
    """fit.ext: the final row is the saved typical values, residual variance, Omega and OFV;
    the SE row the saved SEs; one row per outer iteration, OFV decreasing to the final one."""
    _, result = fitted
    pop = result.population
    (table,) = read_ext(folder / "fit.ext")
    assert table.method == "First Order Conditional Estimation with Interaction"
    theta, sigma, omega, obj = table.estimates(FINAL)
    # written as %12.5E: 6 significant digits
    np.testing.assert_allclose(theta, [pop.fixed_effects[k] for k in NAMES], rtol=1e-5)
    np.testing.assert_allclose(sigma, [[pop.sigma["conc.a"] ** 2]], rtol=1e-5)
    np.testing.assert_allclose(omega, pop.omega, rtol=1e-5)
    assert obj == pytest.approx(pop.ofv, abs=1e-9)
    t_se, s_se, o_se, _ = table.estimates(SE)
    np.testing.assert_allclose(t_se, [pop.fixed_effects_se[k] for k in NAMES], rtol=1e-5)
    np.testing.assert_allclose(s_se[0, 0], 2 * pop.sigma["conc.a"] * pop.sigma_se["conc.a"],
                               rtol=1e-5)
    np.testing.assert_allclose(np.diag(o_se), [pop.omega_se[k] for k in NAMES], rtol=1e-5)
    it, rows = table.history()
    assert it[0] == 0 and np.all(np.diff(it) == 1) and len(it) == pop.history.shape[0]
    ofv = rows[:, -1]
    # decreasing, up to the inner problems' tolerance (warm-started conditional modes move the
    # OFV by ~1e-7 near the optimum; with the predictions of ProblemModel.predict_hessian and
    # inner ties accepted within 1e-10 (commit 03b59b0) the last row rose by 2.4e-6)
    assert np.all(np.diff(ofv) <= 1e-5)
    assert ofv[0] - ofv[-1] > 1.0
    assert ofv[-1] == pytest.approx(pop.ofv, abs=1e-4)
    # iteration 0 is the start: the config's values
    np.testing.assert_allclose(rows[0, :2], [3.0, 30.0], rtol=1e-5)
    # SIGMA(1,1) is the starting SD squared; OMEGA's lower triangle is the starting diagonal
    np.testing.assert_allclose(rows[0, 2:-1], [0.2 ** 2, 0.1, 0, 0.05], rtol=1e-5, atol=0)


def test_figures_and_report(fitted, folder):
    """The population figures exist and report.md links them, with OFV, AIC, BIC, the
    condition number and shrinkage."""
    _, result = fitted
    names = {p.name for p in (folder / "figures").glob("*.png")}
    for f in ("gof_dv_vs_pred.png", "gof_cwres.png", "gof_qq.png", "vpc.png",
              "ofv_by_iteration.png", "individual_fits_population.png"):
        assert f in names, f
        assert (folder / "figures" / f).stat().st_size > 5000
        assert f"(figures/{f})" in (folder / "report.md").read_text()
    report = (folder / "report.md").read_text()
    pop = result.population
    assert "## Population diagnostics" in report
    cond = correlation_condition_number(pop.covariance)
    assert f"| {pop.ofv:.4f} | {pop.aic:.4f} | {pop.bic:.4f} | {cond:.4g} |" in report
    assert "epsilon shrinkage" in report and "NPDE" in report
    # every PRED is positive here: nothing is left out of the pcVPC
    assert "leaves out the observations" not in report


def test_condition_number_against_eigenvalues():
    """Condition number of the correlation matrix of a covariance, against a hand-made
    correlation matrix with known eigenvalues 1 -/+ r (2 x 2)."""
    sd = np.array([2.0, 0.1])
    r = 0.9
    cov = np.outer(sd, sd) * np.array([[1, r], [r, 1]])
    assert correlation_condition_number(cov) == pytest.approx((1 + r) / (1 - r), rel=1e-12)
    assert np.isnan(correlation_condition_number(np.full((2, 2), np.nan)))
    assert np.isnan(correlation_condition_number(None))


def test_load_fit_same_predictions_and_outputs(fitted, folder, tmp_path):
    """load_fit on the folder: identical predictions and population part; saving the loaded
    fit again writes the same data.csv (diagnostics recomputed, same seed) and fit.ext."""
    from progression.fit import load_fit

    _, result = fitted
    back = load_fit(folder)
    for a, b in zip(back.predictions, result.predictions, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(back.population.history, result.population.history)
    times = np.linspace(0.0, 24.0, 7)
    np.testing.assert_array_equal(back.simulate(times).observables,
                                  result.simulate(times).observables)
    again = tmp_path / "again"
    back.save(again, figures=False)
    assert (again / "data.csv").read_text() == (folder / "data.csv").read_text()
    assert (again / "fit.ext").read_text() == (folder / "fit.ext").read_text()


def test_individual_fit_unaffected(tmp_path):
    """A non-population fit's folder: no fit.ext, no population columns or figures."""
    from progression.fit import fit

    cfg = _config((('estimator = "focei"', 'estimator = "individual"'),
                   ("eta = 0.1", ""), ("eta = 0.05", ""),
                   ('a = { value = 0.2, estimate = "population"',
                    'a = { value = 0.2, estimate = "subject"'))
                  + tuple(('estimate = "population"\nvalue = ' + v,
                           'estimate = "subject"\nvalue = ' + v) for v in ("3.0", "30.0")))
    res = fit(cfg, data=_simulated(_config())[:3])
    assert res.population is None
    res.save(tmp_path / "ind", figures=False)
    assert not (tmp_path / "ind" / "fit.ext").exists()
    header = (tmp_path / "ind" / "data.csv").read_text().splitlines()[0].split(",")
    assert not set(DATA_COLUMNS) & set(header)
    assert "Population diagnostics" not in (tmp_path / "ind" / "report.md").read_text()


@pytest.mark.parametrize("bad, found", [(5, "5"), ("many", "a string"), (2.5, "2.5")])
def test_npde_samples_bad_values(bad, found):
    """[estimator] npde_samples must be an integer >= 10; the message names the key."""
    text = CONFIG.read_text() + f"\n[estimator]\nnpde_samples = {json.dumps(bad)}\n"
    with pytest.raises(ConfigError, match=r"estimator\.npde_samples.*expected an integer"):
        parse_fit_config(text, source=str(CONFIG), base_dir=CONFIG.parent)


def test_npde_samples_reaches_options():
    from progression.fit._estimator_options import EstimatorOptions

    cfg = _config()
    assert cfg.options["npde_samples"] == N_SIM
    assert EstimatorOptions.coerce(cfg.options).npde_samples == N_SIM
    assert EstimatorOptions().npde_samples == 200


def test_population_part_history_round_trip(fitted):
    """The history (outer iterations) survives fit.json."""
    from progression.fit._io_result import _clean
    from progression.fit.parts import PopulationPart

    pop = fitted[1].population
    back = PopulationPart.from_dict(json.loads(json.dumps(_clean(dataclasses.asdict(pop)),
                                                          allow_nan=False)))
    np.testing.assert_array_equal(back.history, pop.history)
    assert pop.history.shape[1] == 2 + 2 + 1 + 2


@pytest.mark.slow
def test_theoph_fit_folder(tmp_path):
    """The Theoph FOCE-I fit folder (~2.5 min): fit.ext's final OBJ is nlmixr2's optimum
    (116.8036, within 0.1), CWRES and NPDE have mean ~0 and SD ~1 over the 132 observations
    (measured: CWRES -0.066 (1.002), NPDE 0.078 (0.948) with seed 0), the correlation
    matrix's condition number is moderate (measured 89), every figure is written."""
    from progression.fit import fit

    cfg = read_fit_config(CONFIG)
    res = fit(cfg)
    out = tmp_path / "theoph"
    res.save(out)
    (table,) = read_ext(out / "fit.ext")
    assert table.estimates(FINAL)[3] == pytest.approx(116.8036, abs=0.1)
    rows = _data_csv(out / "data.csv")
    assert len(rows) == 132
    for c in ("CWRES", "NPDE"):
        v = np.array([_num(r[c]) for r in rows])
        assert np.isfinite(v).all(), c
        assert abs(v.mean()) < 0.2 and 0.8 < v.std(ddof=1) < 1.2, (c, v.mean(), v.std())
    assert 1.0 < correlation_condition_number(res.population.covariance) < 1000.0
    # the screen `progression fit configs/theoph_population.toml` prints (measured: OFV
    # 116.8034, ka 1.5902 RSE 20 %, CL 2.7515 7.35 %, V 31.809 4.3 %, 15 lines)
    from progression.fit._population_summary import population_summary

    text = population_summary(res)
    assert len(text.splitlines()) <= 21 and "OFV 116.80" in text
    assert all(f"\n  {k} " in text for k in ("ka", "CL", "V", "conc.a"))
    report = (out / "report.md").read_text()
    # a purely additive error: the pcVPC corrects additively (0342061), so the 12 pre-dose
    # samples (PRED = 0), which the ratio correction had to leave out, are kept
    assert "leaves out" not in report
    for f in ("gof_dv_vs_pred.png", "gof_cwres.png", "gof_qq.png", "vpc.png",
              "ofv_by_iteration.png", "individual_fits_population.png"):
        assert f"(figures/{f})" in report and (out / "figures" / f).is_file()


def test_cli_population_summary(fitted):
    """The screen `progression fit` prints for a population fit: typical values with RSE
    (100 SE / estimate) and 95 % CI, Omega's variance, RSE, CI, CV % and shrinkage, residual
    SD, OFV; a block
    Omega adds the correlations; at most 21 lines."""
    from progression.fit._population_summary import population_summary

    _, result = fitted
    pop = result.population
    text = population_summary(result)
    lines = text.splitlines()
    assert len(lines) <= 21 and max(map(len, lines)) <= 110
    assert f"OFV {pop.ofv:.4f}" in text
    ci = pop.intervals(0.95)        # Wald, estimation scale (tests/test_population_intervals.py)
    for k, v in pop.fixed_effects.items():
        rse = 100 * pop.fixed_effects_se[k] / v
        row = next(x for x in lines if x.split()[:1] == [k] and f"{v:.5g}" in x)
        assert row.split()[1:] == [f"{v:.5g}", f"{rse:.3g}", f"{ci[k][0]:.4g}", "-",
                                   f"{ci[k][1]:.4g}"]
    for e, k in enumerate(pop.omega_names):
        var = pop.omega[e, e]
        lo, hi = ci[f"omega^2 {k}"]
        assert lo < var < hi
        row = next(x for x in lines if x.split()[:2] == [k, f"{var:.4g}"])
        assert row.split()[2:] == [f"{100 * pop.omega_se[k] / var:.3g}", f"{lo:.4g}", "-",
                                   f"{hi:.4g}", f"{pop.cv_percent[k]:.3g}",
                                   f"{100 * pop.shrinkage[k]:.3g}"]
    assert any(x.split()[:2] == ["conc.a", f"{pop.sigma['conc.a']:.5g}"] for x in lines)
    assert "correlations" not in text
    om = np.array(pop.omega, dtype=float)
    om[0, 1] = om[1, 0] = 0.5 * np.sqrt(om[0, 0] * om[1, 1])
    block = dataclasses.replace(result, population=dataclasses.replace(pop, omega=om))
    assert "correlations of the random effects (Omega blocks): CL-V 0.500" in \
        population_summary(block)


def test_vpc_of_additive_error_is_corrected_additively(fitted):
    """conc has a purely additive error model: its pcVPC adds PRED_bin - PRED (the ratio form
    would divide by PRED, which nears 0 at the floor of a bounded score such as ALSFRS-R)."""
    from progression.fit.population._vpc import _assign

    _, result = fitted
    out = population_outputs(result, n_sim=N_SIM, seed=3)
    v = out.vpcs["conc"]
    ok = np.isfinite(out.dv)
    t, y, pred = out.time[ok], out.dv[ok], out.pred[ok]
    b = _assign(t, v.edges)
    ref = np.array([np.median(pred[b == k]) for k in b])
    np.testing.assert_allclose(v.obs_value, y + ref - pred, rtol=1e-12, atol=1e-12)
    ratio = y * ref / pred
    assert np.max(np.abs(v.obs_value - ratio)) > 1e-3    # the two forms differ on these data
    assert out.vpc_left_out.get("conc", 0) == 0          # PRED <= 0 is no reason to drop a value


def test_parameters_figure_of_a_population_fit(fitted, monkeypatch):
    """parameters.png of a population fit: the empirical Bayes estimates of the parameters
    that vary between subjects (not the residual SD, equal in all), each with its typical
    value as the dashed line."""
    import importlib

    import matplotlib.pyplot as plt

    report = importlib.import_module("progression.fit.report")
    res = fitted[1]
    seen = {}

    def record(fig, path, plt):
        axes = [ax for ax in fig.axes if ax.axison]
        seen["titles"] = [ax.get_title() for ax in axes]
        seen["dashed"] = [ax.lines[0].get_xdata()[0] for ax in axes]
        seen["suptitle"] = fig._suptitle.get_text()
        plt.close(fig)
        return path

    monkeypatch.setattr(report, "_save", record)
    report._parameters(res, Path("/nonexistent"), plt)
    pop = res.population
    varying = [p.name for p in res.parameters if p.estimated and p.name in pop.omega_names]
    assert seen["titles"] == varying and varying
    assert not any(name in seen["titles"] for name in pop.sigma)
    np.testing.assert_allclose(seen["dashed"], [pop.fixed_effects[k] for k in varying],
                               rtol=1e-12)
    assert "dashed: typical value" in seen["suptitle"]
