"""Design evaluation without linearisation (``evaluate_design(..., method="mcmc")``).

Known truth: a random-intercept model whose log values are linear in the random effect,
``log C_ij = log(dose / V) - eta_i + eps_ij`` (IV bolus sampled within 3 s of the dose, so
the elimination term is below 3e-4), has the exact Fisher information of a normal with
covariance ``omega^2 11' + sigma^2 I``, computed here independently. The MCMC information is
Louis' observed information of simulated data sets, so it matches that exact information up
to Monte Carlo error, which the jackknife over the data sets states.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from progression.cli import main as cli_main  # noqa: E402
from progression.errors import ConfigError  # noqa: E402
from progression.fit import evaluate_design  # noqa: E402

N_SUBJECTS = 100
TIMES = (0.0, 0.001, 0.002, 0.003)          # hours: CL/V t <= 3e-4
V, OMEGA2, SIGMA = 50.0, 0.09, 0.2

CONFIG = f"""
[fit]
name = "random_intercept"
model = "pk_iv_bolus"
estimator = "saem"

[data]
path = "intercept.csv"
time_unit = "hour"

[error.conc]
model = "lognormal"
sigma = {{ value = {SIGMA}, estimate = "population" }}

[parameters.V]
estimate = "population"
value = {V}
scale = "log"
eta = {OMEGA2}

[parameters.CL]
estimate = "fixed"
value = 5.0

[parameters.dose]
estimate = "fixed"
value = 100.0

[output]
folder = "fits/random_intercept"
"""


def _write(tmp_path, censor_at=None):
    rows = ["subject,time,observable,value,cens,limit"]
    for i in range(N_SUBJECTS):
        for k, t in enumerate(TIMES):
            # a planned design: placeholder values; with censor_at, one censored value per
            # subject gives the observable's limit
            if censor_at is not None and i == 0 and k == 0:
                rows.append(f"S{i:03d},{t},conc,{censor_at},1,{censor_at}")
            else:
                rows.append(f"S{i:03d},{t},conc,1.0,0,")
    (tmp_path / "intercept.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "design_intercept.toml"
    path.write_text(CONFIG)
    return path


def _exact_se():
    """Exact SEs of (V, omega^2 V, sigma) for N subjects x n values: y_i ~ N(c - theta 1,
    omega^2 11' + sigma^2 I), theta = log V."""
    n = len(TIMES)
    one = np.ones(n)
    Sig = OMEGA2 * np.outer(one, one) + SIGMA ** 2 * np.eye(n)
    Si = np.linalg.inv(Sig)
    dS = [np.outer(one, one), 2.0 * SIGMA * np.eye(n)]       # d/d omega^2, d/d sigma
    info = np.zeros((3, 3))
    info[0, 0] = one @ Si @ one
    for a in range(2):
        for b in range(2):
            info[1 + a, 1 + b] = 0.5 * np.trace(Si @ dS[a] @ Si @ dS[b])
    cov = np.linalg.inv(N_SUBJECTS * info)
    return {"V": V * math.sqrt(cov[0, 0]), "omega^2 V": math.sqrt(cov[1, 1]),
            "conc.sigma": math.sqrt(cov[2, 2])}


@pytest.fixture(scope="module")
def intercept(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("intercept"))


@pytest.fixture(scope="module")
def mcmc_evaluation(intercept):
    return evaluate_design(intercept, method="mcmc", replicates=4, seed=3)


def test_mcmc_information_matches_the_exact_information(intercept, mcmc_evaluation):
    """The linear random-intercept model: FO is exact (to 1e-6), and the MCMC information
    agrees with the exact one within 4 of its stated Monte Carlo errors and 10 % (measured
    with seeds 3 and 4: within 0.1 % (V), 1.1-3.3 % (omega^2), 0.9-1.9 % (sigma), each
    within 1.1 of its Monte Carlo errors of 0.1-3.2 %)."""
    exact = _exact_se()
    fo = evaluate_design(intercept)
    got_fo = dict(zip(fo.names, fo.se, strict=True))
    for name, se in exact.items():
        assert got_fo[name] == pytest.approx(se, rel=1e-3), name
    ev = mcmc_evaluation
    assert ev.method == "mcmc" and ev.form == "full"
    got = dict(zip(ev.names, ev.se, strict=True))
    err = dict(zip(ev.names, ev.se_mc, strict=True))
    for name, se in exact.items():
        rel = got[name] / se - 1.0
        assert np.isfinite(err[name]) and err[name] > 0, name
        assert abs(got[name] - se) <= 4.0 * err[name] + 1e-12, (name, rel, err[name] / se)
        assert abs(rel) < 0.10, (name, rel)


def test_mcmc_evaluation_is_reproducible_and_scales(intercept, mcmc_evaluation):
    one = [evaluate_design(intercept, method="mcmc", replicates=1, seed=8) for _ in range(2)]
    np.testing.assert_array_equal(one[0].se, one[1].se)
    assert np.all(np.isnan(one[0].se_mc))          # no Monte Carlo error from one data set
    assert not np.array_equal(one[0].se, mcmc_evaluation.se)
    bigger = mcmc_evaluation.scaled(4 * N_SUBJECTS)
    np.testing.assert_allclose(bigger.se, mcmc_evaluation.se / 2.0, rtol=1e-12)
    np.testing.assert_allclose(bigger.se_mc, mcmc_evaluation.se_mc / 2.0, rtol=1e-12)
    assert "SE MC error" in mcmc_evaluation.table()


def test_simulated_values_below_the_design_limit_are_censored(tmp_path):
    """The limit at the typical log value (log(dose / V)): the simulated values are symmetric
    about it, so half of them are censored (binomial SD 1.6 % of 400 x 2 data sets); the
    censored information is smaller than the uncensored."""
    limit = 100.0 / V
    path = _write(tmp_path, censor_at=limit)
    ev = evaluate_design(path, method="mcmc", replicates=2, seed=5)
    note = next(n for n in ev.notes if "censored (M3)" in n)
    per_set = float(note.rsplit(": ", 1)[1].split()[0])
    assert per_set / (N_SUBJECTS * len(TIMES)) == pytest.approx(0.5, abs=0.06)
    exact = _exact_se()
    got = dict(zip(ev.names, ev.se, strict=True))
    assert got["V"] > 1.1 * exact["V"]


def test_cli_mcmc(intercept, capsys):
    assert cli_main(["design", str(intercept), "--method", "mcmc", "--replicates", "3",
                     "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "exact (MCMC over the random effects" in out
    assert "SE MC error" in out and "omega^2 V" in out


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="exact"), "expected method one of fo, mcmc, found 'exact'"),
    (dict(method="mcmc", replicates=0), "expected replicates a positive whole number, found 0"),
    (dict(method="mcmc", replicates=2.5), "expected replicates a positive whole number"),
    (dict(method="mcmc", seed=-1), "expected seed a whole number >= 0, found -1"),
])
def test_bad_inputs_api(intercept, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        evaluate_design(intercept, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--replicates", "3"], "--replicates and --seed go with --method mcmc"),
    (["--method", "mcmc", "--fim", "full"], "--method mcmc computes the exact"),
    (["--method", "mcmc", "--replicates", "0"], "expected replicates a positive whole number"),
    (["--method", "mcmc", "--optimize", "conc", "--times", "0,1", "--window", "0,2"],
     "--method mcmc is for evaluating one design"),
])
def test_bad_inputs_cli(intercept, argv, message, capsys):
    assert cli_main(["design", str(intercept), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------ joint designs ([survival])

JOINT_N = 120
FOLLOW_UP = 8.0
H0, G = 0.05, 0.1


def _joint_config(tmp_path, h0=H0):
    from test_population_survival import toy_saem_config

    return toy_saem_config(tmp_path, eta_h0="", h0=h0)


def _joint_design():
    """A planned design: marker at 0.5-4.5 months, follow-up to month 8 (right-censored)."""
    from test_population_survival import TIMES

    from progression.fit import Design
    from progression.fit._survival_likelihood import RIGHT, SurvivalRecord

    return [Design(f"S{i + 1}", TIMES, np.zeros(TIMES.size, int), np.ones(TIMES.size),
                   np.zeros(TIMES.size, int), np.full(TIMES.size, np.nan),
                   survival=SurvivalRecord(RIGHT, FOLLOW_UP, entry=float(TIMES[0])))
            for i in range(JOINT_N)]


def test_joint_design_information_of_the_hazard_is_exact(tmp_path):
    """Known truth: the hazard h0 exp(g t) with only h0 estimated (no random effect, not in
    the marker) has, per subject entered at t0 and followed to C, the expected information
    about log h0 of P(event in (t0, C] | alive at t0) = 1 - exp(-(Lambda(C) - Lambda(t0)))
    (E Lambda(T ^ C) = P(event)), and none shared with the marker's parameters. FO leaves the
    event times out ("not informed"); the MCMC information simulates them (measured with
    seeds 2 and 3: -0.4 % and +1.1 %, Monte Carlo errors 0.9 % and 1.7 %; 52 and 56 events
    per data set against 53.9 expected)."""
    cfg = _joint_config(tmp_path)
    designs = _joint_design()
    fo = evaluate_design(cfg, data=designs)
    assert not np.isfinite(dict(zip(fo.names, fo.se, strict=True))["h0"])
    ev = evaluate_design(cfg, data=designs, method="mcmc", replicates=4, seed=2)
    got = dict(zip(ev.names, ev.se, strict=True))
    err = dict(zip(ev.names, ev.se_mc, strict=True))
    lam = H0 * (math.expm1(G * FOLLOW_UP) - math.expm1(G * 0.5)) / G
    p_event = 1.0 - math.exp(-lam)
    exact = H0 / math.sqrt(JOINT_N * p_event)
    rel = got["h0"] / exact - 1.0
    assert abs(rel) < 0.10 and abs(got["h0"] - exact) <= 4 * err["h0"], (rel, err["h0"] / exact)
    note = next(n for n in ev.notes if n.startswith("[survival]"))
    per_set = float(note.rsplit("; ", 1)[1].split()[0])
    # events per data set: binomial(120, p), SD ~5.5 / sqrt(4)
    assert per_set == pytest.approx(JOINT_N * p_event, abs=9.0)
    # the marker's parameters are still informed, as without the survival part
    assert np.isfinite(got["k"]) and np.isfinite(got["omega^2 k"])


def test_joint_design_whose_subjects_cannot_survive_to_entry(tmp_path):
    """Entry at month 40 under a hazard whose cumulative value there is ~540: no draw of a
    subject is event-free at entry; one error naming the subject."""
    from progression.errors import FitError

    cfg = _joint_config(tmp_path, h0=1.0)
    designs = [d.__class__(d.id, d.time + 40.0, d.obs, d.value, d.cens, d.limit,
                           survival=d.survival.__class__(d.survival.kind, 48.0, entry=40.5))
               for d in _joint_design()[:3]]
    with pytest.raises(FitError, match=r"subject 'S1' was not event-free at its entry"):
        evaluate_design(cfg, data=designs, method="mcmc", replicates=1)


def test_pheno_design_with_held_exponents_and_doses():
    """NONMEM's pheno design (59 neonates, 589 doses, weight exponents held at 1): the exact
    information runs with the held coefficients out of it, on the dosed RK4 path, and its SEs
    at the config's values lie within 25 % of NONMEM's covariance step at its optimum
    (measured with 3 data sets: CL +0.5 %, V +11 %, APGR -7 %)."""
    root = Path(__file__).resolve().parents[1]
    ev = evaluate_design(root / "configs" / "pheno_population.toml", method="mcmc",
                         replicates=3, seed=1)
    se = dict(zip(ev.names, ev.se, strict=True))
    assert "CL~WGT" not in se and "V~WGT" not in se
    for name, nonmem in (("CL", 2.10036e-4), ("V", 2.68952e-2), ("V~APGR=low", 8.37623e-2)):
        assert se[name] == pytest.approx(nonmem, rel=0.25), name
    if ev.notes and any("RK4" in n for n in ev.notes):
        assert any("dose and covariate events" in n for n in ev.notes)


def test_an_indefinite_mean_information_is_said(intercept, monkeypatch):
    """Monte Carlo noise can leave the mean information indefinite along a weakly informed
    direction: the evaluation says so instead of reporting its SEs silently."""
    import importlib

    dm = importlib.import_module("progression.fit._design_mcmc")

    def indefinite(cfg, designs, at, *, replicates, seed, fim_names, source):
        # positive diagonal, one negative eigenvalue (omega^2 with the residual SD)
        fim = np.array([[400.0, 0.0, 0.0], [0.0, 1.0, 30.0], [0.0, 30.0, 300.0]])
        return dict(fim=fim, fims=np.array([fim] * 3), censored=np.zeros(3, int),
                    events=None, prediction_path="test")

    monkeypatch.setattr(dm, "mcmc_information", indefinite)
    ev = evaluate_design(intercept, method="mcmc", replicates=3)
    assert any("not positive definite" in n and "--replicates" in n for n in ev.notes)
    se = dict(zip(ev.names, ev.se, strict=True))
    assert np.isfinite(se["V"]) and not np.all(np.isfinite(ev.se))


@pytest.mark.slow      # ~4 min: 4 data sets of 200 ALS patients
def test_als_shipped_design_exact_information():
    """The shipped ALS design at the shipped fit: the exact information informs every
    parameter, agrees with FO for the pace (RSE within 1 point) and puts omega^2 eD's RSE
    below FO's (measured 46.7 % against 75 %) but above 30 % (issue 11's eD target)."""
    root = Path(__file__).resolve().parents[1]
    cfg = root / "configs" / "als_synthetic_population.toml"
    fit = root / "fits" / "als_synthetic_population"
    fo = evaluate_design(cfg, fit=fit)
    ev = evaluate_design(cfg, fit=fit, method="mcmc", replicates=4, seed=1)
    rse_fo = dict(zip(fo.names, fo.rse, strict=True))
    rse = dict(zip(ev.names, ev.rse, strict=True))
    assert all(np.isfinite(ev.se))
    assert abs(rse["k0"] - rse_fo["k0"]) < 1.0
    assert 30.0 < rse["omega^2 eD"] < rse_fo["omega^2 eD"]
    assert any("censored (M3)" in n for n in ev.notes)
