"""Population design evaluation (`evaluate_design`, `progression design`): the expected FO
Fisher information against an independent computation written here.

Each reference builds every subject's normal approximation itself (closed-form predictions,
their derivatives by central differences or by hand, ``V = G Omega G' + Sigma``) and the
block-diagonal information from the textbook formula (fixed effects ``dE' V^-1 dE``,
variances ``1/2 tr(V^-1 dV_j V^-1 dV_k)``); the package's numbers come through the config,
the ODE solver and the forward sensitivities.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.cli import main
from progression.errors import ConfigError
from progression.fit import DesignEvaluation, evaluate_design, read_fit_config

sys.path.insert(0, str(Path(__file__).parent))
from _population_support import pheno  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THEOPH = ROOT / "configs" / "theoph_population.toml"
PHENO = ROOT / "configs" / "pheno_population.toml"
#: ODE solution and sensitivities of the package against closed forms and differences here
RTOL = 1e-6          # measured: both cases agree within 1e-9


def _block_fim(dE, g_list, omega_diag, sigma_blocks, dV_fixed=None):
    """Textbook FO information from per-subject pieces: (fixed-effect block, variance block),
    or with ``dV_fixed`` (per subject, the list of dV/d(each fixed effect)) the full matrix.

    dE : list of (n_i, P) derivatives of the mean; g_list : list of (n_i, E) derivatives in
    eta; sigma_blocks : list (per subject) of lists of (diagonal of the residual variance
    contribution Sigma_k, its derivative in log SD_k)."""
    P = dE[0].shape[1]
    E = omega_diag.size
    S = len(sigma_blocks[0])
    K = P + E + S
    F = np.zeros((K, K))
    for i, (de, g, sig) in enumerate(zip(dE, g_list, sigma_blocks, strict=True)):
        V = g @ np.diag(omega_diag) @ g.T + np.diag(sum(s for s, _ in sig))
        Vi = np.linalg.inv(V)
        F[:P, :P] += de.T @ Vi @ de
        dV = list(dV_fixed[i]) if dV_fixed is not None else [None] * P
        dV += [omega_diag[j] * np.outer(g[:, j], g[:, j]) for j in range(E)]
        dV += [np.diag(d) for _, d in sig]
        for j in range(K):
            for k in range(K):
                if dV[j] is not None and dV[k] is not None:
                    F[j, k] += 0.5 * np.trace(Vi @ dV[j] @ Vi @ dV[k])
    if dV_fixed is not None:
        return F
    return F[:P, :P], F[P:, P:]


#: Theoph config's values: log ka, CL, V; omega^2; additive SD
THEOPH_THETA = np.log([1.5683, 2.7183, 31.5])
THEOPH_OMEGA = np.array([0.6, 0.3, 0.1])
THEOPH_A = 0.7
THEOPH_NAMES = ["ka", "CL", "V", "omega^2 ka", "omega^2 CL", "omega^2 V", "conc.a"]


def _conc(p, t, dose):
    """The one-compartment oral model in closed form (F = 1), p = log(ka, CL, V)."""
    ka, cl, v = np.exp(p)
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def _conc_jac(p, t, dose, h=1e-6):
    return np.column_stack([(_conc(p + h * e, t, dose) - _conc(p - h * e, t, dose)) / (2 * h)
                            for e in np.eye(3)])


#: pheno config's values: CL, V per kg; the low-Apgar coefficient on V; omega^2; proportional SD
PHENO_THETA = np.array([0.00469307, 1.00916])
PHENO_C = 0.1
PHENO_OMEGA = np.array([0.0309626, 0.031128])
PHENO_B = 0.114396


def _pheno_at_config():
    """(ADVAN1 model, data, log(CL_i, V_i) (N, 2), low-Apgar indicator (N,)) at the config's
    values: CL_i = CL WGT, V_i = V WGT (1 + c low)."""
    model, data, wgt, apgr = pheno()
    low = (apgr <= 4).astype(float)
    mu = np.column_stack([np.log(PHENO_THETA[0] * wgt),
                          np.log(PHENO_THETA[1] * wgt * (1 + PHENO_C * low))])
    return model, data, mu, low


def _theoph_subjects():
    with open(ROOT / "data" / "examples" / "theoph.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for i in dict.fromkeys(r["ID"] for r in rows):
        mine = [r for r in rows if r["ID"] == i]
        dose = float(next(r["AMT"] for r in mine if r["EVID"] == "1"))
        t = np.array([float(r["TIME"]) for r in mine if r["EVID"] == "0"])
        out.append((dose, t))
    return out


def test_theoph_information_matches_closed_form():
    """pk_oral on Theoph's 12 subjects at the config's values: typical values, variances and
    the additive SD against the closed-form one-compartment model (derivatives by central
    differences), to RTOL."""
    ev = evaluate_design(THEOPH)
    theta, omega, a = THEOPH_THETA, THEOPH_OMEGA, THEOPH_A
    dE, gs, sig = [], [], []
    for dose, t in _theoph_subjects():
        G = _conc_jac(theta, t, dose)
        dE.append(G)
        gs.append(G)
        sig.append([(np.full(t.size, a * a), np.full(t.size, 2 * a * a))])
    I_fix, I_var = _block_fim(dE, gs, omega, sig)
    se_x = np.sqrt(np.diag(np.linalg.inv(I_fix)))
    se_v = np.sqrt(np.diag(np.linalg.inv(I_var)))
    want = dict(zip(THEOPH_NAMES,
                    np.concatenate([np.exp(theta) * se_x, omega * se_v[:3], [a * se_v[3]]]),
                    strict=True))
    got = dict(zip(ev.names, ev.se, strict=True))
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=RTOL), k
    assert ev.n_subjects == 12 and ev.observations == {"conc": 132}
    assert ev.notes == ()


def test_pheno_covariates_and_proportional_error():
    """Phenobarbital (59 neonates, repeated IV doses): WGT power effects (fixed), the APGR
    categorical effect on V (estimated) and a proportional residual, against the
    independent ADVAN1 model of the test support (analytic sensitivities), to RTOL."""
    ev = evaluate_design(PHENO)
    model, data, mu, low = _pheno_at_config()
    th, c, omega, b = PHENO_THETA, PHENO_C, PHENO_OMEGA, PHENO_B
    f, G = model.predict(mu, np.arange(len(low)))
    dE, gs, sig = [], [], []
    for i in range(len(low)):
        m = data.mask[i]
        g = G[i][m]
        dE.append(np.column_stack([g[:, 0], g[:, 1], g[:, 1] * low[i] / (1 + c * low[i])]))
        gs.append(g)
        fi = f[i][m]
        sig.append([((b * fi) ** 2, 2 * (b * fi) ** 2)])
    I_fix, I_var = _block_fim(dE, gs, omega, sig)
    se_x = np.sqrt(np.diag(np.linalg.inv(I_fix)))
    se_v = np.sqrt(np.diag(np.linalg.inv(I_var)))
    want = {"CL": th[0] * se_x[0], "V": th[1] * se_x[1], "V~APGR=low": se_x[2],
            "omega^2 CL": omega[0] * se_v[0], "omega^2 V": omega[1] * se_v[1],
            "conc.b": b * se_v[2]}
    got = dict(zip(ev.names, ev.se, strict=True))
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=RTOL), k
    # the information is the design's: the data's values play no part
    assert ev.observations == {"conc": int(data.mask.sum())}


def test_scaling_and_subjects_needed():
    ev = evaluate_design(THEOPH)
    big = evaluate_design(THEOPH, n_subjects=48)
    np.testing.assert_allclose(big.se, ev.se / 2.0, rtol=1e-12)
    np.testing.assert_allclose(big.fim, ev.fim * 4.0, rtol=1e-12)
    assert big.n_subjects == 48 and big.observations == {"conc": 528}
    need = ev.subjects_for(10.0)
    for name, r in zip(ev.names, ev.rse, strict=True):
        n = need[name]
        # the smallest whole number of subjects whose predicted RSE is at most 10 %
        assert ev.scaled(n).rse[ev.names.index(name)] <= 10.0 + 1e-9
        if n > 1:
            assert ev.scaled(n - 1).rse[ev.names.index(name)] > 10.0
        assert n == math.ceil(12 * (r / 10.0) ** 2)
    assert ev.d_criterion > 0 and big.d_criterion == pytest.approx(4 * ev.d_criterion)


def test_at_a_fit_uses_its_estimates():
    """At a fit's estimates the typical-value SEs of Theoph agree with the fit's own
    (FOCE-I sandwich of the data) within 25 %: the design's prediction is of the same size."""
    from progression.fit import fit

    res = fit(THEOPH)
    ev = evaluate_design(THEOPH, fit=res)
    pop = res.population
    assert ev.values[ev.names.index("ka")] == pytest.approx(pop.fixed_effects["ka"])
    assert ev.values[ev.names.index("omega^2 CL")] == pytest.approx(
        pop.omega[list(pop.omega_names).index("CL")][list(pop.omega_names).index("CL")])
    se_fit = dict(zip(pop.covariance_names, np.sqrt(np.diag(pop.covariance)), strict=True))
    for k in ("ka", "CL", "V"):
        se_log = ev.se[ev.names.index(k)] / ev.values[ev.names.index(k)]
        assert se_log == pytest.approx(se_fit[f"theta {k}"], rel=0.25), k
    assert "theoph_population" in ev.at


@pytest.mark.slow      # ~40 s with a cold numba cache (the ALS model's compile)
def test_als_shipped_design_sees_little_of_ed_variance():
    """The shipped ALS design at the shipped fit's estimates: every parameter informed, the
    pace's typical value to a few %, omega^2 eD's RSE above 50 % (issue 11's eD target)."""
    ev = evaluate_design(ROOT / "configs" / "als_synthetic_population.toml",
                         fit=ROOT / "fits" / "als_synthetic_population")
    rse = dict(zip(ev.names, ev.rse, strict=True))
    assert all(np.isfinite(ev.se))
    assert rse["k0"] < 10 and rse["nfl_scale"] < 10
    assert rse["omega^2 eD"] > 50
    assert ev.observations["Treg_pct"] > 100
    assert any("censored" in n for n in ev.notes) and any("Student-t" in n for n in ev.notes)


def test_cli_design_prints_the_table(capsys):
    assert main(["design", str(THEOPH), "--subjects", "24", "--target-rse", "20"]) == 0
    out = capsys.readouterr().out
    ev = evaluate_design(THEOPH, n_subjects=24)
    assert "24 subjects (conc 264 values)" in out
    row = next(line for line in out.splitlines() if line.startswith("omega^2 ka"))
    se, rse, need = row.split()[3:6]
    k = ev.names.index("omega^2 ka")
    assert float(se) == pytest.approx(ev.se[k], rel=5e-3)     # printed to 3 digits
    assert float(rse) == pytest.approx(ev.rse[k], abs=0.05)
    assert int(need) == ev.subjects_for(20)["omega^2 ka"]
    assert "D-criterion" in out and "block-diagonal (PFIM/PopED reduced)" in out
    assert main(["design", str(THEOPH), "--fim", "full"]) == 0
    out = capsys.readouterr().out
    full = evaluate_design(THEOPH, form="full")
    assert "full (PopED full)" in out
    row = next(line for line in out.splitlines() if line.startswith("ka "))
    assert float(row.split()[2]) == pytest.approx(full.se[full.names.index("ka")], rel=5e-3)


def test_cli_design_with_another_data_file(tmp_path, capsys):
    """--data: a planned design (the first 6 Theoph subjects, placeholder values) in the
    config's format; its sidecar beside it."""
    src = ROOT / "data" / "examples" / "theoph.csv"
    rows = src.read_text().splitlines()
    keep = [rows[0]] + [r for r in rows[1:] if int(r.split(",")[0]) <= 6]
    keep = [r if r.split(",")[4] != "0" else ",".join(r.split(",")[:3] + ["1.0"]
                                                         + r.split(",")[4:]) for r in keep]
    planned = tmp_path / "planned.csv"
    planned.write_text("\n".join(keep) + "\n")
    (tmp_path / "planned.toml").write_text(
        (ROOT / "data" / "examples" / "theoph.toml").read_text())
    assert main(["design", str(THEOPH), "--data", str(planned)]) == 0
    out = capsys.readouterr().out
    assert "6 subjects (conc 66 values)" in out


# ----------------------------------------------------------------------- bad inputs


def test_bad_inputs_api():
    with pytest.raises(ConfigError, match="theoph_individual.toml: a design evaluation needs "
                                          "a population model"):
        evaluate_design(ROOT / "configs" / "theoph_individual.toml")
    for n in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_subjects a positive whole number"):
            evaluate_design(THEOPH, n_subjects=n)
    ev = evaluate_design(THEOPH)
    with pytest.raises(ConfigError, match="expected a positive RSE"):
        ev.subjects_for(0)
    with pytest.raises(ConfigError, match="fit has no typical value 'ka'"):
        evaluate_design(THEOPH, fit=ROOT / "fits" / "als_synthetic_population")
    with pytest.raises(ConfigError, match="expected a population fit"):
        evaluate_design(THEOPH, fit=ROOT / "fits" / "als_synthetic_individual")
    assert isinstance(ev, DesignEvaluation)
    # a fit whose population model lacks one of the config's random effects
    import types

    pop = types.SimpleNamespace(fixed_effects={"ka": 1.5, "CL": 2.7, "V": 31.0},
                                omega_names=("ka", "CL"), omega=np.diag([0.4, 0.07]),
                                sigma={"conc.a": 0.7}, coefficients={})
    with pytest.raises(ConfigError, match="the fit has no random effect 'V' \\(fitted: ka, "
                                          "CL\\); expected a fit of this config"):
        evaluate_design(THEOPH, fit=types.SimpleNamespace(population=pop, name="partial"))


@pytest.mark.parametrize("argv, message", [
    (["--subjects", "0"], "--subjects: expected a positive number of subjects, found 0"),
    (["--target-rse", "-5"], "--target-rse: expected a positive RSE in %, found -5"),
    (["--fit", "nowhere"], "nowhere: --fit: no fit.json"),
    (["--data", "missing.csv"], "missing.csv: --data: no such file"),
])
def test_bad_inputs_cli(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["design", str(THEOPH), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_refuses_a_config_without_random_effects(capsys):
    assert main(["design", str(ROOT / "configs" / "theoph_individual.toml")]) == 2
    assert "needs a population model with at least one random effect" in \
        capsys.readouterr().err


def test_config_values_are_read_once():
    # a FitConfig is taken as it is (no file read): the same numbers
    cfg = read_fit_config(THEOPH)
    np.testing.assert_array_equal(evaluate_design(cfg).se, evaluate_design(THEOPH).se)


@pytest.mark.parametrize("text, message", [
    ("ID,TIME,AMT,EVID,MDV,CMT,WT,DOSE\n1,0,320,1,1,1,79.6,4.02\n1,1,.,0,0,.,79.6,4.02\n",
     "columns.DV: the sidecar names column 'DV', but "),
    ("ID,TIME,AMT,DV,EVID,MDV,CMT,WT,DOSE\n1,0,320,.,1,1,1,79.6,4.02\n"
     "1,-1,.,5,0,0,.,79.6,4.02\n",
     "planned.csv, row 3, column 'TIME', subject '1': expected a time >= 0"),
])
def test_cli_bad_planned_design_file(text, message, tmp_path, capsys):
    """--data: a planned design with a missing column or a negative time is one error naming
    the file, row and subject (exit 2)."""
    (tmp_path / "planned.csv").write_text(text)
    (tmp_path / "planned.toml").write_text(
        (ROOT / "data" / "examples" / "theoph.toml").read_text())
    assert main(["design", str(THEOPH), "--data", str(tmp_path / "planned.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_full_form_matches_the_textbook_formula():
    """form="full": the covariance's dependence on the typical values included. Theoph
    (additive residual: through G only) against second derivatives of the closed form by
    nested central differences, pheno (proportional residual and the APGR coefficient)
    against central differences of the test support's analytic sensitivities; to 1e-5
    (the package's dG is a central difference too)."""
    ev = evaluate_design(THEOPH, form="full")
    assert ev.form == "full"
    theta, omega, a = THEOPH_THETA, THEOPH_OMEGA, THEOPH_A
    dE, gs, sig, dVf = [], [], [], []
    for dose, t in _theoph_subjects():
        G = _conc_jac(theta, t, dose, h=1e-5)
        h = 1e-4
        dG = [(_conc_jac(theta + h * e, t, dose, h=1e-5) - _conc_jac(theta - h * e, t, dose,
                                                                   h=1e-5)) / (2 * h)
              for e in np.eye(3)]
        dE.append(G)
        gs.append(G)
        sig.append([(np.full(t.size, a * a), np.full(t.size, 2 * a * a))])
        dVf.append([d @ np.diag(omega) @ G.T + G @ np.diag(omega) @ d.T for d in dG])
    F = _block_fim(dE, gs, omega, sig, dV_fixed=dVf)
    se = np.sqrt(np.diag(np.linalg.inv(F)))
    scale = np.concatenate([np.exp(theta), omega, [a]])
    want = dict(zip(THEOPH_NAMES, scale * se, strict=True))
    for k, v in want.items():
        assert ev.se[ev.names.index(k)] == pytest.approx(v, rel=1e-5), k

    ev = evaluate_design(PHENO, form="full")
    model, data, mu, low = _pheno_at_config()
    th, c, omega, b = PHENO_THETA, PHENO_C, PHENO_OMEGA, PHENO_B
    idx = np.arange(len(low))
    f, G = model.predict(mu, idx)
    h = 1e-5
    dG = [(model.predict(mu + h * e, idx)[1] - model.predict(mu - h * e, idx)[1]) / (2 * h)
          for e in np.eye(2)]
    dE, gs, sig, dVf = [], [], [], []
    for i in range(len(low)):
        m = data.mask[i]
        g, fi = G[i][m], f[i][m]
        dmu_dc = low[i] / (1 + c * low[i])
        dE.append(np.column_stack([g[:, 0], g[:, 1], g[:, 1] * dmu_dc]))
        gs.append(g)
        sig.append([((b * fi) ** 2, 2 * (b * fi) ** 2)])
        dV_mu = [dG[d][i][m] @ np.diag(omega) @ g.T + g @ np.diag(omega) @ dG[d][i][m].T
                 + np.diag(2 * b * b * fi * g[:, d]) for d in range(2)]
        dVf.append([dV_mu[0], dV_mu[1], dmu_dc * dV_mu[1]])
    F = _block_fim(dE, gs, omega, sig, dV_fixed=dVf)
    se = np.sqrt(np.diag(np.linalg.inv(F)))
    want = {"CL": th[0] * se[0], "V": th[1] * se[1], "V~APGR=low": se[2],
            "omega^2 CL": omega[0] * se[3], "omega^2 V": omega[1] * se[4], "conc.b": b * se[5]}
    for k, v in want.items():
        assert ev.se[ev.names.index(k)] == pytest.approx(v, rel=1e-5), k
    # the two forms differ (the full form's fixed-effect SEs are smaller here)
    red = evaluate_design(PHENO)
    assert ev.se[ev.names.index("V~APGR=low")] < 0.95 * red.se[red.names.index("V~APGR=low")]
    with pytest.raises(ConfigError, match="expected form one of reduced, full, found 'diag'"):
        evaluate_design(PHENO, form="diag")


# ------------------------------------------------------------- optimal sampling times

IV_CONFIG = """
[fit]
name = "iv_design"
model = "pk_iv_bolus"
estimator = "focei"

[data]
path = "iv.csv"
time_unit = "hour"

[error.conc]
model = "additive"
a = { value = 0.1, estimate = "population" }

[parameters.CL]
estimate = "population"
value = 5.0
scale = "log"
eta = 1e-6

[parameters.V]
estimate = "population"
value = 50.0
scale = "log"
eta = 1e-6

[parameters.dose]
estimate = "fixed"
value = 100.0

[output]
folder = "fits/iv_design"
"""


@pytest.fixture()
def iv_config(tmp_path):
    """One-compartment IV bolus, 20 subjects sampled twice, random effects negligible
    (omega^2 1e-6): the typical values' information is that of the exponential decay
    100/V exp(-CL/V t) with additive error."""
    rows = ["subject,time,observable,value"]
    rows += [f"S{i:02d},{t},conc,1.0" for i in range(20) for t in (1.0, 5.0)]
    (tmp_path / "iv.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "design_iv.toml"
    path.write_text(IV_CONFIG)
    return path


def test_optimal_two_samples_of_an_exponential_decay(iv_config):
    """Known truth: the D-optimal two-point design of A exp(-k t) with additive error on
    [0, 48] samples at 0 and 1/k (= V/CL = 10 h), whatever the parametrisation; Ds for CL and
    V from (1, 5) finds it within 0.01 h."""
    from progression.fit import optimize_sampling

    opt = optimize_sampling(iv_config, observable="conc", times=[1.0, 5.0], window=(0.0, 48.0),
                            parameters=["CL", "V"])
    assert opt.times[0] == pytest.approx(0.0, abs=1e-6)
    assert opt.times[1] == pytest.approx(10.0, abs=0.01)
    assert opt.value < opt.value_start
    assert opt.criterion == "Ds (CL, V)"
    # the optimum against its neighbours: moving either time only loses information
    for t in ([0.0, 9.5], [0.0, 10.5], [0.5, 10.0]):
        worse = optimize_sampling(iv_config, observable="conc", times=t, window=(0.0, 48.0),
                                  parameters=["CL", "V"], max_evaluations=1)
        assert worse.value_start > opt.value
    se = dict(zip(opt.after.names, opt.after.se, strict=True))
    se0 = dict(zip(opt.before.names, opt.before.se, strict=True))
    assert se["CL"] < se0["CL"] and se["V"] < se0["V"]


def test_schedule_replaces_one_observable_and_keeps_the_rest():
    from progression.fit._design_optimization import _schedule
    from progression.fit.design import Design

    d = Design(id="a", time=np.array([0.0, 1.0, 2.0, 3.0]), obs=np.array([0, 1, 0, 1]),
               value=np.array([5.0, 6.0, 7.0, 8.0]), cens=np.array([0, 1, 0, 0]),
               limit=np.array([np.nan, 6.0, np.nan, np.nan]),
               condition=np.array(["x", "y", "x", "y"], dtype=object))
    (out,) = _schedule([d], 0, [2.5, 0.5, 4.0], {"a": "x"})
    np.testing.assert_array_equal(out.time, [0.5, 1.0, 2.5, 3.0, 4.0])
    np.testing.assert_array_equal(out.obs, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(out.value[[1, 3]], [6.0, 8.0])      # observable 1 kept
    np.testing.assert_array_equal(out.cens, [0, 1, 0, 0, 0])
    assert list(out.condition) == ["x", "y", "x", "y", "x"]
    # within the follow-up (last recorded time 3): the sample at 4 is not taken
    (out,) = _schedule([d], 0, [2.5, 0.5, 4.0], {"a": "x"}, within_follow_up=True)
    np.testing.assert_array_equal(out.time, [0.5, 1.0, 2.5, 3.0])
    np.testing.assert_array_equal(out.obs, [0, 1, 0, 1])


def test_cli_optimize_prints_the_schedule(iv_config, capsys):
    assert main(["design", str(iv_config), "--optimize", "conc", "--times", "1,5",
                 "--window", "0,48", "--for", "CL", "--for", "V"]) == 0
    out = capsys.readouterr().out
    assert "Ds (CL, V)-optimal" in out
    best = next(line for line in out.splitlines() if line.strip().startswith("best:"))
    t = [float(x) for x in best.split(":")[1].split(",")]
    assert t[0] == pytest.approx(0.0, abs=1e-3) and t[1] == pytest.approx(10.0, abs=0.01)


def test_bad_inputs_optimize_api(iv_config):
    from progression.fit import optimize_sampling

    good = dict(observable="conc", times=[1.0, 5.0], window=(0.0, 48.0))
    cases = [
        (dict(observable="CRP"), "observable=...\\): expected one of conc, found 'CRP'"),
        (dict(window=(5.0, 5.0)), "expected finite low < high, found \\(5, 5\\)"),
        (dict(window="late"), "expected \\(low, high\\), found 'late'"),
        (dict(times=[]), "expected at least one finite sampling time"),
        (dict(times=[1.0, np.nan]), "expected at least one finite sampling time"),
        (dict(times=[1.0, 60.0]), "expected times inside the window \\[0, 48\\], found 60"),
        (dict(parameters=["Q"]), "design_iv.toml: optimize_sampling\\(parameters=...\\): "
                                 "unknown parameter 'Q'"),
        (dict(grid=2), "expected at least 3 candidate times, found 2"),
        (dict(max_evaluations=0), "expected a positive number, found 0"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            optimize_sampling(iv_config, **{**good, **change})


@pytest.mark.parametrize("argv, message", [
    (["--optimize", "conc"], "expected --times T1,T2,... (the starting schedule) and --window "
                             "LOW,HIGH (where the times may go); found neither"),
    (["--optimize", "conc", "--times", "1,5"], "found only --times"),
    (["--times", "1,5"], "--times, --window, --for and --within-follow-up go with --optimize"),
    (["--within-follow-up"], "go with --optimize OBS"),
    (["--optimize", "conc", "--times", "1,x", "--window", "0,48"],
     "--times: expected comma-separated numbers, found '1,x'"),
    (["--optimize", "conc", "--times", "1,5", "--window", "0,24,48"],
     "--window: expected LOW,HIGH, found '0,24,48'"),
    (["--optimize", "conc", "--times", "1,5", "--window", "0,48", "--for", "omega CL,V"],
     "unknown parameter 'omega CL,V'"),
])
def test_bad_inputs_optimize_cli(argv, message, iv_config, capsys):
    assert main(["design", str(iv_config), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
