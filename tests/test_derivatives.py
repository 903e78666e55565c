"""Exact derivatives of every library model against central finite differences."""

import numpy as np
import pytest

import progression as pg

LIBRARY = pg.available_models()
FD_TOL = 1e-5  # relative (to the largest entry) agreement of analytic and central differences


def _random_point(model, rng, m=4):
    """Parameters log-uniform inside bounds (where positive); states from a short simulation."""
    lo, hi = model.bounds[:, 0], model.bounds[:, 1]
    # Unbounded parameters (the implicit dose inputs of [dosing]) are sampled near the default.
    lo = np.where(np.isfinite(lo), lo, model.defaults - 1.0)
    hi = np.where(np.isfinite(hi), hi, model.defaults + 1.0)
    positive = lo > 0
    u = rng.uniform(size=(m, model.n_parameters))
    table = np.where(positive, np.exp(np.log(np.where(positive, lo, 1)) + u * (
        np.log(np.where(positive, hi, 2)) - np.log(np.where(positive, lo, 1)))), lo + u * (hi - lo))
    # Perturb the defaults instead of sampling wildly: FD checks need smooth, moderate points.
    table = 0.5 * table + 0.5 * model.defaults[None, :]
    p = table.T
    y = model.initial(0.0, None, p)
    y = y * (1 + 0.3 * rng.uniform(size=y.shape)) + 0.1 * rng.uniform(size=y.shape)
    return 3.7, y, p


def _central(f, x, i, h):
    up, down = x.copy(), x.copy()
    up[i] += h[i]
    down[i] -= h[i]
    return (f(up) - f(down)) / (2 * h[i][None])


@pytest.mark.parametrize("name", LIBRARY)
def test_jacobian_and_parameter_derivatives_match_finite_differences(name):
    model = pg.load_model(name)
    rng = np.random.default_rng(7)
    t, y, p = _random_point(model, rng)
    hy = 1e-6 * np.maximum(1.0, np.abs(y))
    hp = 1e-6 * np.maximum(1e-3, np.abs(p))
    J = model.jac(t, y, p)
    for j in range(model.n_states):
        fd = _central(lambda yy: model.rhs(t, yy, p), y, j, hy)
        scale = max(1.0, np.abs(J).max())
        np.testing.assert_allclose(J[:, j, :], fd, atol=FD_TOL * scale, err_msg=f"d rhs/d y{j}")
    dfdp = model.dfdp(t, y, p)
    dh_dp = model.dobs_dp(t, y, p)
    dh_dy = model.dobs_dy(t, y, p)
    for q in range(model.n_parameters):
        fd = _central(lambda pp: model.rhs(t, y, pp), p, q, hp)
        scale = max(1.0, np.abs(dfdp[:, q]).max())
        np.testing.assert_allclose(dfdp[:, q, :], fd, atol=FD_TOL * scale,
                                   err_msg=f"d rhs / d {model.parameter_names[q]}")
        fd = _central(lambda pp: model.observe(t, y, pp), p, q, hp)
        scale = max(1.0, np.abs(dh_dp[:, q]).max())
        np.testing.assert_allclose(dh_dp[:, q, :], fd, atol=FD_TOL * scale,
                                   err_msg=f"d observables / d {model.parameter_names[q]}")
    for j in range(model.n_states):
        fd = _central(lambda yy: model.observe(t, yy, p), y, j, hy)
        scale = max(1.0, np.abs(dh_dy[:, j]).max())
        np.testing.assert_allclose(dh_dy[:, j, :], fd, atol=FD_TOL * scale)


@pytest.mark.parametrize(("name", "params", "until"), [
    ("als_reduced", ["k0", "kA", "Tmax", "eD", "Nth", "Ndeath"], 40.0),
    # the largest model: ~35 s (twice with the numpy backend's rerun); in the slow suite,
    # its kernels stay checked against the numpy functions in test_model_kernels
    pytest.param("als_systemic", ["k0", "kA", "phimax", "eD", "wR", "Nth"], 40.0,
                 marks=pytest.mark.slow),
    ("d50", ["D50", "dx"], 60.0),
    ("pk_oral", ["ka", "CL", "V", "F_bio", "dose"], 24.0),
])
def test_forward_sensitivities_match_finite_differences_of_simulations(name, params, until):
    model = pg.load_model(name)
    times = np.linspace(0, until, 9)
    tight = {"rtol": 1e-10, "atol": 1e-12}
    sim = pg.simulate(model, None, times, sensitivities=params, **tight)
    base = dict(zip(model.parameter_names, model.defaults, strict=True))
    for name_q in params:
        h = 1e-3 * abs(base[name_q])  # central differences: O(h^2) truncation, little noise
        up = pg.simulate(model, {name_q: base[name_q] + h}, times, **tight)
        down = pg.simulate(model, {name_q: base[name_q] - h}, times, **tight)
        for out in model.observable_names:
            fd = (up[out] - down[out]) / (2 * h)
            analytic = sim.sensitivity(out, name_q)
            scale = max(1e-8, np.nanmax(np.abs(fd)))
            # the differences' integration noise, rtol |out| / h: where the true derivative is 0
            # (NfL does not depend on Nth; the hazard state's error control does move the
            # steps) the differences are this noise alone (measured up to 7 times rtol |out| / 2h:
            # 8e-6 at NfL ~ 100, 5.6e-6 at CRP ~ 3 in als_systemic; since the steep reversibility
            # gate of issue 13, hill exponent 10, up to 1.7e-5 of d CRP / d Nth, whose exact
            # value is 0, alternating in sign: hence 100, not 50)
            noise = 100 * tight["rtol"] * np.nanmax(np.abs(sim[out])) / (2 * h)
            np.testing.assert_allclose(analytic, fd, atol=1e-4 * scale + noise, rtol=0,
                                       err_msg=f"d {out} / d {name_q}")
