"""A population fit's diagnostics with censored values (M3 data, ``cens`` 1 below ``limit``).

- NPDE with censoring (Nguyen, Comets, Mentré 2012): over 400 subjects x 5 observations of a
  random-intercept model with a closed form (~30 % below the limit), NPDE including the censored
  rows have mean within 0.1 of 0 and SD within 0.1 of 1 when the simulations come from the
  true model; ignoring the censoring (the limit taken as the value) misses by more than 0.25.
- The fit folder of a FOCE-I fit of 12 subjects simulated from pk_iv_bolus on Theoph's
  sampling times (truth CL 3, V 30, omega^2 0.1 and 0.05, additive SD 0.2, seed 11) with the
  values below 5 mg/L censored: data.csv's DV is the limit and CENS the flag on censored rows,
  IWRES and CWRES are empty there and finite elsewhere, NPDE is finite on every row, PRED and
  IPRED everywhere.
- The VPC's fraction below the limit per bin equals a direct computation from the simulated
  replicates written here (observed fraction exactly, the 90 % interval of the simulated
  fractions to 1e-12).
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit.population import PopulationData, npde

sys.path.insert(0, str(Path(__file__).parent))
from test_population_outputs import CONFIG, NAMES, TRUTH, _config  # noqa: E402

LIMIT = 5.0


def _random_intercept(rng, size, n=5):
    """y_ij = 2 - 0.3 t_j + eta_i + eps_ij, eta ~ N(0, 0.5^2), eps ~ N(0, 0.3^2)."""
    t = np.arange(n)
    return 2.0 - 0.3 * t + rng.normal(0.0, 0.5, size + (1,)) + rng.normal(0.0, 0.3, size + (n,))


def test_npde_with_censoring_is_standard_normal():
    rng = np.random.default_rng(1)
    N, K, lim = 400, 300, 1.0
    y = _random_intercept(rng, (N,))
    sims = _random_intercept(rng, (K, N))
    cens = (y < lim).astype(np.int8)
    assert 0.25 < cens.mean() < 0.35  # measured 0.30
    data = PopulationData.from_subjects(list(np.where(cens == 1, lim, y)), cens=list(cens),
                                        limits=list(np.full(y.shape, lim)))
    r = npde(data, sims, seed=2)
    v = r.npde[data.mask]
    assert np.isfinite(v).all() and v.size == 2000
    assert abs(v.mean()) < 0.1 and abs(v.std(ddof=1) - 1.0) < 0.1
    # the pd of a censored value lies within [0, P(Y < limit)] of its simulations
    p_lim = np.mean(sims < lim, axis=0)
    c = cens == 1
    assert np.all(r.pd[c] <= np.maximum(p_lim[c], 0.5 / K) + 1e-12)
    # reproducible with the seed, other draws with another
    np.testing.assert_array_equal(npde(data, sims, seed=2).npde, r.npde)
    assert not np.array_equal(npde(data, sims, seed=3).npde[c], r.npde[c])
    # ignoring the censoring (the limit as the value) is visibly biased: the test can fail
    naive = npde(PopulationData.from_subjects(list(np.where(c, lim, y))), sims).npde
    assert abs(np.mean(naive)) > 0.25  # measured 0.31


def test_npde_without_censoring_unchanged():
    """No censored value: nothing is drawn, the result does not depend on the seed."""
    rng = np.random.default_rng(4)
    y = _random_intercept(rng, (30,))
    sims = _random_intercept(rng, (50, 30))
    data = PopulationData.from_subjects(list(y))
    np.testing.assert_array_equal(npde(data, sims, seed=1).npde, npde(data, sims, seed=9).npde)


def _censored_designs(cfg, n=12, seed=11):
    from progression.fit.config import read_fit_config
    from progression.fit.estimate import read_data
    from progression.fit.population._adapter import ProblemModel
    from progression.fit.problem import Problem, designs_from_cohort

    base = read_fit_config(CONFIG)
    designs, _ = designs_from_cohort(read_data(base), base)
    problem = Problem.from_config(cfg)
    many = [designs[i % len(designs)].replace(id=f"sim{i}", doses=(), dose_records=False)
            for i in range(n)]
    problem.fix_grid_step(many)
    cols = np.array([problem.names.index(k) for k in NAMES])
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((n, 2)) * np.sqrt(TRUTH["omega"])
    f, _ = ProblemModel(problem, many, cols).predict(TRUTH["theta"] + eta, np.arange(n))
    out = []
    for i, d in enumerate(many):
        y = f[i, :d.n] + TRUTH["a"] * rng.standard_normal(d.n)
        c = (y < LIMIT).astype(int)
        out.append(d.replace(value=np.where(c == 1, LIMIT, y), cens=c,
                             limit=np.where(c == 1, LIMIT, np.nan)))
    return out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from progression.fit import fit

    cfg = _config()
    designs = _censored_designs(cfg)
    result = fit(cfg, data=designs)
    folder = tmp_path_factory.mktemp("popcens") / "fit"
    result.save(folder)
    return result, folder


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_data_csv_marks_censored_rows(fitted):
    result, folder = fitted
    rows = _rows(folder / "data.csv")
    cens = np.array([int(r["cens"]) for r in rows])
    assert 0.2 < cens.mean() < 0.4  # measured 0.31 (41 of 132)
    for r in rows:
        assert r["CENS"] in ("0", "1", "-1")  # an integer flag, as NONMEM tables write it
        flag = int(r["CENS"])
        assert flag == int(r["cens"])
        for c in ("DV", "PRED", "IPRED", "NPDE"):
            assert np.isfinite(float(r[c])), (c, r)
        if flag:
            assert float(r["DV"]) == LIMIT
            assert r["IWRES"] == "" and r["CWRES"] == ""
        else:
            assert float(r["DV"]) == pytest.approx(float(r["value"]), rel=1e-15)
            assert np.isfinite(float(r["IWRES"])) and np.isfinite(float(r["CWRES"]))
    nd = np.array([float(r["NPDE"]) for r in rows])
    # 132 values of one data set: a loose check that the censored rows are not off-scale
    assert abs(nd.mean()) < 0.35 and abs(nd.std(ddof=1) - 1.0) < 0.35
    report = (folder / "report.md").read_text()
    assert "vpc.png" in report
    n_cens = int((cens != 0).sum())
    assert (f"**Censored values:** {n_cens} of {len(rows)} ({n_cens} below a limit, 0 above; "
            "M3 likelihood)") in report


def test_vpc_fraction_below_limit_direct(fitted):
    from progression.fit.population._outputs import BLQ_CI, population_outputs

    result, _ = fitted
    out = population_outputs(result)
    v = out.vpcs["conc"]
    assert v.blq_observed is not None and v.blq_ci == BLQ_CI == 0.90
    m = out.data.mask
    t, c = out.time[m], out.data.cens[m]
    sims = out.sims[:, m]
    b = np.clip(np.searchsorted(v.edges, t, side="right") - 1, 0, len(v.edges) - 2)
    for k in range(len(v.edges) - 1):
        inb = b == k
        assert v.blq_observed[k] == pytest.approx(np.mean(c[inb] == 1), abs=0)
        frac = np.mean(sims[:, inb] < LIMIT, axis=1)
        np.testing.assert_allclose(v.blq_sim[k], np.percentile(frac, [5, 50, 95]),
                                   rtol=0, atol=1e-12)
    # the last bins hold the late, mostly censored values; the first none. At 24 h the model
    # predicts ~0.65 mg/L, far below the limit: every simulated value there is censored
    assert v.blq_observed[0] == 0 and v.blq_observed[-1] > 0.5
    assert v.blq_sim[-1, 1] == 1.0 and v.blq_sim[0, 2] == 0.0


def test_simulations_predict_censored_rows(fitted):
    """The simulations' predictions of censored rows are the model's (not read off the M3
    residual): the cheap prediction path equals ProblemModel.predict on every row."""
    from progression.fit.population._outputs import _model, _predict

    result, _ = fitted
    model, mu, eta_cols, _ = _model(result)
    phi = mu.copy()
    phi[:, eta_cols] += np.asarray(result.population.ebes)
    idx = np.arange(len(result.designs))
    want = model.predict(phi, idx)[0]
    got = _predict(model, phi, idx)
    data = model.data("test")
    assert np.sum(data.cens[data.mask] == 1) > 20
    np.testing.assert_allclose(got[data.mask], np.asarray(want)[data.mask], rtol=1e-8,
                               atol=1e-10)


def test_figures_with_censored_values(fitted):
    _, folder = fitted
    figs = folder / "figures"
    for f in ("gof_dv_vs_pred.png", "gof_cwres.png", "gof_qq.png", "vpc.png",
              "individual_fits_population.png"):
        assert (figs / f).stat().st_size > 10_000, f


def test_censoring_report_lines(fitted):
    from progression.fit.population._outputs import censoring_report_lines, population_outputs

    result, _ = fitted
    out = population_outputs(result)
    text = "\n".join(censoring_report_lines(out))
    n = int(np.sum(out.data.cens[out.data.mask] == 1))
    assert f"**Censored values:** {n} of 132 ({n} below a limit, 0 above" in text
    v = out.vpcs["conc"]
    assert f"VPC of conc: observed fraction below the limit per bin {v.blq_observed[0]:.2f}" \
        in text and "90 % intervals" in text
    # nothing censored: nothing said
    plain = dataclasses.replace(out, cens=np.where(out.data.mask, 0.0, np.nan))
    assert censoring_report_lines(plain) == []


def test_pipeline_npde_standard_normal_at_the_truth(fitted):
    """Through the fit folder's own pipeline (simulate_designs of pk_iv_bolus, then npde with
    the censoring): 20 data sets simulated at the truth and censored below 5 mg/L (~33 %),
    each against 200 simulations at the truth: NPDE of all 2,640 values, censored included,
    have mean within 0.1 of 0 and SD within 0.1 of 1."""
    from progression.fit.population import Residual
    from progression.fit.population._outputs import _model, simulate_designs

    result, _ = fitted
    model, _, eta_cols, _ = _model(result)
    base = model.data("test")
    N = base.y.shape[0]
    mu = np.tile(TRUTH["theta"], (N, 1))
    om = np.diag(TRUTH["omega"])
    res = Residual((TRUTH["a"],), (0.0,))
    sims = simulate_designs(model, base, mu, om, res, eta_cols, 200, 1)
    obs = simulate_designs(model, base, mu, om, res, eta_cols, 20, 2)
    values, censored = [], []
    for r in range(20):
        y = obs[r]
        c = np.where(base.mask & (y < LIMIT), 1, 0)
        data = PopulationData.from_subjects(
            [np.where(c[i], LIMIT, y[i])[base.mask[i]] for i in range(N)],
            cens=[c[i][base.mask[i]] for i in range(N)],
            limits=[np.full(int(base.mask[i].sum()), LIMIT) for i in range(N)])
        v = npde(data, sims, seed=r).npde[data.mask]
        values.append(v)
        censored.append(c[base.mask])
    v, c = np.concatenate(values), np.concatenate(censored)
    assert np.isfinite(v).all() and v.size == 2640
    assert 0.25 < c.mean() < 0.4
    assert abs(v.mean()) < 0.1 and abs(v.std(ddof=1) - 1.0) < 0.1


def test_vpc_limits_fill_rows_without_a_limit():
    """Rows without a limit take the subject's own limit of that observable, else the
    observable's median; an observable without censored values has none."""
    from progression.fit.population._outputs import vpc_limits

    data = PopulationData.from_subjects(
        [[1.0, 0.0, 2.0, 3.0], [2.0, 4.0], [5.0, 0.0, 6.0]],
        cens=[[0, 1, 0, 0], [0, 0], [0, 1, 0]],
        limits=[[np.nan, 0.5, np.nan, np.nan], [np.nan, np.nan], [np.nan, 0.3, np.nan]],
        observables=[[0, 0, 1, 0], [0, 1], [0, 0, 1]])
    lim = vpc_limits(data)
    np.testing.assert_array_equal(lim[0], [0.5, 0.5, np.nan, 0.5])
    np.testing.assert_array_equal(lim[1, :2], [0.4, np.nan])
    np.testing.assert_array_equal(lim[2, :3], [0.3, 0.3, np.nan])
    assert np.isnan(lim[1:, 3]).all()  # padding
