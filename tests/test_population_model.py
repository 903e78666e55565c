"""The population model: covariate effects on typical values, Omega's parametrisation and the
PopulationPart draw API (parameter vector, copies with other parameters, typical and
individual values), each against closed forms or finite differences."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from progression.fit._io_result import _clean
from progression.fit.parts import PopulationPart
from progression.fit.population._model import (
    CovariateEffect,
    OmegaBlock,
    OmegaModel,
    TypicalModel,
    level_key,
)


def _part(**changes):
    base = dict(
        fixed_effects={"ka": 1.59, "CL": 2.75, "V": 31.8}, fixed_effects_se={},
        omega_names=("ka", "CL"), omega=np.diag([0.4, 0.07]), sigma={"conc.a": 0.69},
        ebes=np.zeros((2, 2)), shrinkage={},
        covariance_names=("theta ka", "theta CL", "theta V", "log omega^2 ka",
                          "log omega^2 CL", "log conc.a"),
        scales={"ka": "log", "CL": "log", "V": "logit"},
        bounds={"ka": (0.05, 100.0), "CL": (0.1, math.inf), "V": (1.0, 500.0)},
        omega_blocks=({"parameters": ["ka"], "fixed": False},
                      {"parameters": ["CL"], "fixed": False}))
    base.update(changes)
    return PopulationPart(**base)


def test_draw_api_diagonal_no_covariates():
    part = _part()
    x = part.parameter_vector()
    u = (31.8 - 1.0) / 499.0
    np.testing.assert_allclose(x, [math.log(1.59), math.log(2.75), math.log(u / (1 - u)),
                                   math.log(0.4), math.log(0.07), math.log(0.69)], rtol=1e-12)
    moved = part.with_parameters(x + 0.1)
    assert moved.fixed_effects["ka"] == pytest.approx(1.59 * math.exp(0.1))
    assert moved.sigma["conc.a"] == pytest.approx(0.69 * math.exp(0.1))
    np.testing.assert_allclose(np.diag(moved.omega), np.array([0.4, 0.07]) * math.exp(0.1))
    np.testing.assert_allclose(moved.parameter_vector(), x + 0.1, rtol=1e-12)
    assert part.fixed_effects["ka"] == 1.59            # the original is unchanged
    tv = part.typical_values(n=3)
    assert set(tv) == {"ka", "CL", "V"} and tv["V"].shape == (3,)
    np.testing.assert_allclose(tv["V"], 31.8, rtol=1e-12)
    ind = part.individual_values(np.array([[0.1, 0.2], [0.0, 0.0]]))
    np.testing.assert_allclose(ind["ka"], [1.59 * math.exp(0.1), 1.59])
    np.testing.assert_allclose(ind["CL"], [2.75 * math.exp(0.2), 2.75])
    np.testing.assert_allclose(ind["V"], 31.8)
    assert part.covariate_names == ()
    with pytest.raises(ValueError, match="expected 6 parameters"):
        part.with_parameters(x[:3])
    with pytest.raises(ValueError, match="expected eta with 2 columns"):
        part.individual_values(np.zeros((2, 3)))


def test_draw_api_json_round_trip_and_old_files():
    part = _part()
    back = PopulationPart.from_dict(json.loads(json.dumps(_clean(dataclasses.asdict(part)),
                                                          allow_nan=False)))
    assert back.bounds["CL"] == (0.1, math.inf)
    np.testing.assert_array_equal(back.parameter_vector(), part.parameter_vector())
    # a format-2 file written before the fields existed loads; the API says what it lacks
    doc = _clean(dataclasses.asdict(part))
    for k in ("scales", "bounds", "covariate_effects", "coefficients", "coefficients_se",
              "omega_blocks", "omega_offdiag_se", "condition_number"):
        doc.pop(k)
    old = PopulationPart.from_dict(doc)
    assert old.scales == {} and math.isnan(old.condition_number)
    with pytest.raises(ValueError, match="not stored"):
        old.individual_values(np.zeros((1, 2)))


def test_covariate_factors_closed_form():
    x = np.array([1.0, 2.0, 4.0])
    for effect, c, ref, want in (
            ("power", 0.75, 2.0, (x / 2.0) ** 0.75),
            ("exponential", 0.3, 2.0, np.exp(0.3 * (x - 2.0))),
            ("linear", 0.1, 2.0, 1 + 0.1 * (x - 2.0))):
        e = CovariateEffect("CL", "WT", effect, ref, values=(c,))
        F, dF = e.factor(x, np.array([c]))
        np.testing.assert_allclose(F, want, rtol=1e-14)
        h = 1e-6
        fd = (e.factor(x, np.array([c + h]))[0] - e.factor(x, np.array([c - h]))[0]) / (2 * h)
        np.testing.assert_allclose(dF[:, 0], fd, rtol=1e-8)
    cat = CovariateEffect("V", "APGR", "categorical", 0, values=(0.2,)).with_levels([1, "2"])
    assert cat.levels == ("1", "2") and cat.values == (0.2, 0.2)
    assert cat.names == ("V~APGR=1", "V~APGR=2")
    F, dF = cat.factor(np.array([0.0, 1.0, 2.0, 1.0]), np.array([0.5, -0.25]))
    np.testing.assert_allclose(F, [1.0, 1.5, 0.75, 1.5])
    np.testing.assert_array_equal(dF, [[0, 0], [1, 0], [0, 1], [1, 0]])
    assert level_key(1.0) == "1" and level_key(" M ") == "M" and level_key(2.5) == "2.5"


@pytest.mark.parametrize("scale", ["log", "linear", "logit", "log10"])
def test_typical_model_derivatives(scale):
    """mu = g^-1(TV * prod F): d mu / d theta and d mu / d coefficients against central
    differences, on every scale."""
    effects = [CovariateEffect("CL", "WT", "power", 70.0, values=(0.75,)),
               CovariateEffect("CL", "AGE", "linear", 50.0, values=(-0.01,)),
               CovariateEffect("V", "WT", "exponential", 70.0, values=(0.01,)),
               CovariateEffect("V", "SEX", "categorical", "F", values=(0.2,)).with_levels(
                   ["M"])]
    lo, hi = (0.01, 0.01), (100.0, 1000.0)
    tm = TypicalModel(("CL", "V"), [scale, scale], lo, hi, effects)
    cov = {"WT": np.array([50.0, 70.0, 90.0]), "AGE": np.array([30.0, 50.0, 60.0]),
           "SEX": np.array(["F", "M", "M"], dtype=object)}
    from progression.fit.transforms import to_internal

    theta_x = to_internal(np.array([3.0, 40.0]), tm.scale, tm.lower, tm.upper)
    coef = tm.initial_coefficients()
    assert tm.coefficient_names == ("CL~WT", "CL~AGE", "V~WT", "V~SEX=M")
    mu, dth, dco = tm.mu(theta_x, coef, cov, 3)
    nat, _, _ = tm.natural(theta_x, coef, cov, 3)
    np.testing.assert_allclose(nat[:, 0], 3.0 * (cov["WT"] / 70) ** 0.75
                               * (1 - 0.01 * (cov["AGE"] - 50)), rtol=1e-12)
    np.testing.assert_allclose(nat[:, 1], 40.0 * np.exp(0.01 * (cov["WT"] - 70))
                               * np.array([1.0, 1.2, 1.2]), rtol=1e-12)
    h = 1e-6
    for d in range(2):
        up, dn = theta_x.copy(), theta_x.copy()
        up[d] += h
        dn[d] -= h
        fd = (tm.mu(up, coef, cov, 3)[0] - tm.mu(dn, coef, cov, 3)[0]) / (2 * h)
        np.testing.assert_allclose(dth[:, d], fd[:, d], rtol=1e-6, atol=1e-9)
        assert np.all(fd[:, 1 - d] == 0)
    for k in range(coef.size):
        up, dn = coef.copy(), coef.copy()
        up[k] += h
        dn[k] -= h
        fd = (tm.mu(theta_x, up, cov, 3)[0] - tm.mu(theta_x, dn, cov, 3)[0]) / (2 * h)
        np.testing.assert_allclose(dco[..., k], fd, rtol=1e-6, atol=1e-9)


def test_omega_model_cholesky_and_jacobian():
    names = ("ka", "CL", "V", "Q")
    om = OmegaModel.from_blocks(names, [0.4, 0.1, 0.2, 0.3],
                                [OmegaBlock(("CL", "V"), (0.05,))], fixed_etas=("Q",))
    assert [b.tolist() for b in om.blocks] == [[0], [1, 2], [3]]
    assert om.fixed == [False, False, True]
    assert om.parameter_names() == ("log omega^2 ka", "log L CL", "L V,CL", "log L V")
    p = om.pack(om.initial)
    np.testing.assert_allclose(om.unpack(p), om.initial, rtol=1e-14, atol=1e-16)
    omega, _ = om.unpack_jac(p + 0.1)
    assert np.all(np.linalg.eigvalsh(omega) > 0) and omega[3, 3] == 0.3
    p = p + 0.1
    _, J = om.unpack_jac(p)
    h = 1e-6
    for j in range(p.size):
        up, dn = p.copy(), p.copy()
        up[j] += h
        dn[j] -= h
        np.testing.assert_allclose(J[j], (om.unpack(up) - om.unpack(dn)) / (2 * h),
                                   rtol=1e-6, atol=1e-10)
    # a diagonal Omega keeps the log-variance parameters of the diagonal fits
    diag = OmegaModel.diagonal(("a", "b"), [0.5, 0.2])
    np.testing.assert_allclose(diag.pack(np.diag([0.5, 0.2])), np.log([0.5, 0.2]))
    assert diag.is_diagonal and not om.is_diagonal


def test_draw_api_with_block_and_covariates():
    eff = CovariateEffect("CL", "WT", "power", 70.0, values=(0.75,), estimated=(True,))
    part = _part(
        omega=np.array([[0.4, 0.05], [0.05, 0.07]]),
        omega_blocks=({"parameters": ["ka", "CL"], "fixed": False},),
        covariate_effects=(eff.as_dict(),), coefficients={"CL~WT": 0.8},
        covariance_names=("theta ka", "theta CL", "theta V", "log L ka", "L CL,ka",
                          "log L CL", "log conc.a", "coef CL~WT"))
    assert part.covariate_names == ("WT",)
    x = part.parameter_vector()
    L = np.linalg.cholesky(part.omega)
    np.testing.assert_allclose(x[3:6], [math.log(L[0, 0]), L[1, 0], math.log(L[1, 1])])
    assert x[-1] == 0.8
    back = part.with_parameters(x)
    np.testing.assert_allclose(back.omega, part.omega, rtol=1e-12)
    tv = part.typical_values({"WT": np.array([35.0, 70.0])})
    np.testing.assert_allclose(tv["CL"], 2.75 * np.array([0.5 ** 0.8, 1.0]), rtol=1e-12)
    ind = part.individual_values(np.array([[0.0, 0.1], [0.0, 0.0]]),
                                 {"WT": np.array([35.0, 70.0])})
    np.testing.assert_allclose(ind["CL"], tv["CL"] * np.exp([0.1, 0.0]), rtol=1e-12)
    with pytest.raises(ValueError, match="covariate 'WT'"):
        part.typical_values({"AGE": np.array([1.0])})
    moved = part.with_parameters(np.r_[x[:-1], 1.0])
    assert moved.coefficients["CL~WT"] == 1.0
