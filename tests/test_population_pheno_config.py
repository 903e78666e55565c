"""NONMEM's phenobarbital example from a run config: ``progression fit
configs/pheno_population.toml`` (pk_iv_bolus ODE, 589 dose records, CL and V proportional to
birth weight as power effects with the exponent fixed at 1, a categorical Apgar effect on V,
proportional error) reaches NONMEM 7's FOCE-I optimum (pharmpy's pheno_real.ext, see
data/examples/pheno.md): OFV 586.27605628, THETA 0.00469555, 0.984258, 0.158920, OMEGA
0.0293508, 0.0279060, SIGMA 0.0132410; standard errors (``$COVARIANCE``, the sandwich) 2.10036e-4,
2.68952e-2, 8.37623e-2.

Measured (2026-11-30): OFV 586.2760567 (NONMEM 586.2760563), THETA within 0.02 %, OMEGA
within 0.01 %, the sandwich SEs of the THETAs within 1 % of NONMEM's; about 140 s (the ODE
solves at rtol 1e-10 dominate), so the CLI run is marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pheno_population.toml"
NM = {"ofv": 586.27605628188053, "theta": [4.69555e-03, 9.84258e-01, 1.58920e-01],
      "omega": [2.93508e-02, 2.79060e-02], "sigma": 1.32410e-02,
      "se": [2.10036e-04, 2.68952e-02, 8.37623e-02]}


@pytest.mark.slow
def test_cli_pheno_fit_reaches_nonmem(tmp_path, capsys):
    from progression.cli import main
    from progression.fit import load_fit
    from progression.fit.population import read_ext

    out = tmp_path / "fit"
    assert main(["fit", str(CONFIG), "--out", str(out), "--no-figures"]) == 0
    doc = json.loads((out / "fit.json").read_text())
    pop = doc["population"]
    assert pop["ofv"] == pytest.approx(NM["ofv"], abs=0.01)
    theta = [pop["fixed_effects"]["CL"], pop["fixed_effects"]["V"],
             pop["coefficients"]["V~APGR=low"]]
    np.testing.assert_allclose(theta, NM["theta"], rtol=0.01)
    np.testing.assert_allclose(np.diag(pop["omega"]), NM["omega"], rtol=0.01)
    assert pop["sigma"]["conc.b"] ** 2 == pytest.approx(NM["sigma"], rel=0.01)
    se = [pop["fixed_effects_se"]["CL"], pop["fixed_effects_se"]["V"],
          pop["coefficients_se"]["V~APGR=low"]]
    np.testing.assert_allclose(se, NM["se"], rtol=0.05)
    # the fixed exponents are reported without a standard error and not estimated
    assert pop["coefficients"]["CL~WGT"] == 1.0 and pop["coefficients_se"]["CL~WGT"] is None
    assert "coef V~APGR=low" in pop["covariance_names"]
    assert pop["n_parameters"] == 6
    assert pop["subject_covariates"]["WGT"][0] == 1.4
    # report: the coefficient and the correlations of the estimates
    report = (out / "report.md").read_text()
    assert "V~APGR=low (categorical effect on V, reference normal)" in report
    assert "| CL~WGT (power effect on CL, reference 1) | 1 | fixed |" in report
    assert "### Correlations of the estimates" in report
    assert "condition number of R" in report
    # fit.ext: THETA = CL, V, then the coefficients (CL~WGT, V~WGT, V~APGR=low)
    ext = read_ext(out / "fit.ext")[0]
    t, s, o, obj = ext.estimates()
    np.testing.assert_allclose(t, [theta[0], theta[1], 1.0, 1.0, theta[2]], rtol=1e-5)
    assert obj == pytest.approx(pop["ofv"], abs=1e-6)
    se_row = ext.row(-1000000001)
    assert se_row["THETA3"] == 1e10 and se_row["THETA5"] == pytest.approx(se[2], rel=1e-4)
    # PRED uses the covariate effects: the typical prediction of a heavy and a light subject
    # differ (data.csv PRED column is dose / (TVV * WGT) right after the first dose)
    back = load_fit(out)
    part = back.population
    tv = part.typical_values({"WGT": np.array([1.0, 2.0]), "APGR": np.array([7, 3])})
    np.testing.assert_allclose(tv["CL"], theta[0] * np.array([1.0, 2.0]), rtol=1e-9)
    np.testing.assert_allclose(tv["V"], theta[1] * np.array([1.0, 2.0 * (1 + theta[2])]),
                               rtol=1e-9)
    np.testing.assert_allclose(part.with_parameters(part.parameter_vector()).omega,
                               part.omega, rtol=1e-12)
    # the EBE-based individual values are the per-subject estimates
    ind = part.individual_values(part.ebes, part.subject_covariates)
    np.testing.assert_allclose(ind["CL"], back.theta[:, back.parameter_names.index("CL")],
                               rtol=1e-9)
