"""Per-measurement noise SD: a data column ``sd`` and the ``measured`` error model.

The likelihood must be the Gaussian one with each value's own SD, exactly: -2 log L is
compared with the hand-computed sum to 1e-10, the residual Jacobian with central differences,
and the readers round-trip the column (long CSV, NONMEM with a sidecar role).
"""

import numpy as np
import pytest

import progression as pg
from progression.data import read_cohort, write_cohort
from progression.errors import DataError
from progression.fit import Problem, parse_fit_config
from progression.fit.problem import designs_from_cohort

TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0])

CONFIG = """
[fit]
name = "measured"
model = "pk_iv_bolus"
[data]
path = "data.csv"
[error.conc]
model = "measured"
[parameters.CL]
estimate = "{estimate}"
value = 4.0
bounds = [0.1, 100.0]
[parameters.V]
value = 40.0
[solver]
outputs = "exact"
rtol = 1e-11
atol = 1e-13
[output]
figures = false
"""


def _cohort(sd_missing_at=None, source="sd.csv"):
    rng = np.random.default_rng(2)
    subj, t, obs, val, sd = [], [], [], [], []
    for i in range(3):
        conc = 100.0 / 40.0 * np.exp(-4.0 / 40.0 * TIMES)
        s = 0.05 + 0.1 * conc * (1 + i)                  # each value its own SD
        subj += [f"S{i + 1}"] * TIMES.size
        t += list(TIMES)
        obs += ["conc"] * TIMES.size
        val += list(conc + s * rng.standard_normal(TIMES.size))
        sd += list(s)
    if sd_missing_at is not None:
        sd[sd_missing_at] = np.nan
    return pg.Cohort({"subject": subj, "time": t, "observable": obs, "value": val, "sd": sd},
                     time_unit="hour", source=source)


def _problem(estimate="fixed"):
    cfg = parse_fit_config(CONFIG.format(estimate=estimate), check_data=False)
    return cfg, Problem.from_config(cfg)


def test_minus_2_log_l_is_the_gaussian_sum():
    cohort = _cohort()
    cfg, problem = _problem("subject")
    designs, _ = designs_from_cohort(cohort, cfg)
    theta = np.repeat(problem.values[None], 3, axis=0)
    theta[:, problem.names.index("CL")] = [3.5, 4.0, 4.5]
    ev = problem.evaluate(designs, np.arange(3), theta, problem.subject_cols, want_jac=False,
                          want_predictions=True)
    obs = cohort.observations()
    for r in range(3):
        m = obs["subject"] == f"S{r + 1}"
        y, sd = obs["value"][m], obs["sd"][m]
        f = ev.predictions[r]
        # the predictions are the closed form
        np.testing.assert_allclose(f, 2.5 * np.exp(-theta[r, problem.names.index("CL")] / 40.0
                                                   * TIMES), rtol=1e-8)
        hand = np.sum((y - f) ** 2 / sd**2 + np.log(2 * np.pi * sd**2))
        np.testing.assert_allclose(ev.m2ll[r], hand, rtol=1e-10)
        # no sigma residual: the SDs are data, not parameters
        assert ev.residuals[r].size == TIMES.size
        np.testing.assert_allclose(ev.residuals[r], (y - f) / sd, rtol=1e-12)


def test_jacobian_against_central_differences():
    cohort = _cohort()
    cfg, problem = _problem("subject")
    designs, _ = designs_from_cohort(cohort, cfg)
    q = problem.names.index("CL")
    theta = np.repeat(problem.values[None], 3, axis=0)
    ev = problem.evaluate(designs, np.arange(3), theta, problem.subject_cols)
    h = 1e-5
    res = []
    for sign in (1, -1):
        th = theta.copy()
        th[:, q] = theta[:, q] * np.exp(sign * h)      # CL is on the log scale
        res.append(problem.evaluate(designs, np.arange(3), th, problem.subject_cols,
                                    want_jac=False).residuals)
    for r in range(3):
        fd = (res[0][r] - res[1][r]) / (2 * h)
        np.testing.assert_allclose(ev.jacobians[r][:, 0], fd, rtol=1e-6, atol=1e-8)


def test_fit_through_a_csv_file_and_config(tmp_path):
    cohort = _cohort()
    write_cohort(cohort, tmp_path / "data.csv", format="long")
    assert "sd" in (tmp_path / "data.csv").read_text().splitlines()[0]
    (tmp_path / "fit.toml").write_text(CONFIG.format(estimate="subject"))
    result = pg.fit(tmp_path / "fit.toml")
    # at the estimates, -2 log L is the Gaussian sum with the data's SDs
    obs = read_cohort(tmp_path / "data.csv", to_unit="hour").observations()
    total = 0.0
    for i in range(3):
        m = obs["subject"] == f"S{i + 1}"
        CL = float(result.theta[i, result.parameter_names.index("CL")])
        f = 2.5 * np.exp(-CL / 40.0 * TIMES)
        total += np.sum((obs["value"][m] - f) ** 2 / obs["sd"][m] ** 2
                        + np.log(2 * np.pi * obs["sd"][m] ** 2))
    np.testing.assert_allclose(result.objective, total, rtol=1e-8)


@pytest.mark.parametrize("fmt", ["long", "nonmem"])
def test_the_sd_column_round_trips(tmp_path, fmt):
    cohort = _cohort(sd_missing_at=4)
    write_cohort(cohort, tmp_path / "c.csv", format=fmt)
    back = read_cohort(tmp_path / "c.csv", to_unit="hour")
    np.testing.assert_array_equal(back.observations()["sd"], cohort.observations()["sd"])
    assert np.isnan(back.subject("S1")["conc"].sd[4])


def test_a_value_without_sd_is_refused_naming_file_row_and_subject(tmp_path):
    write_cohort(_cohort(sd_missing_at=9), tmp_path / "data.csv", format="long")
    cohort = read_cohort(tmp_path / "data.csv", to_unit="hour")
    cfg, _ = _problem()
    with pytest.raises(DataError) as info:
        designs_from_cohort(cohort, cfg)
    text = str(info.value)
    for name in ("data.csv", "row 11", "'sd'", "subject 'S2'", "measured"):
        assert name in text, f"{name!r} not in {text}"


def test_a_negative_sd_is_refused_by_the_reader(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("subject,time,observable,value,sd\nS1,0,conc,1.0,0.1\nS1,1,conc,0.9,-0.2\n")
    with pytest.raises(DataError) as info:
        read_cohort(path)
    text = str(info.value)
    for name in ("bad.csv", "row 3", "'sd'", "subject 'S1'", "-0.2"):
        assert name in text, f"{name!r} not in {text}"
