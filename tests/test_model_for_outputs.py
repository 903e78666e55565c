"""CompiledModel.for_outputs: the states the named observables do not need (als_reduced's
cumulative hazard Lambda_death for ALSFRS-R, NfL, CRP) held at their initial values, their
equations left out of the compiled kernels; the kept states' functions and trajectories are
the full model's (to rounding, and to the integrator's tolerance), on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import progression as pg
from progression.errors import ModelError
from progression.simulate import solve_states

FITTED = ["ALSFRS_R", "NfL", "CRP"]


def _model(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    model = pg.compile_model(pg.model.library.library_spec("als_reduced"), backend=backend)
    if model.backend != backend:
        pytest.skip(f"{backend} backend not available")
    return model


def _points(model, m=30, seed=2):
    rng = np.random.default_rng(seed)
    y = np.abs(rng.normal(0.5, 0.4, (model.n_states, m)))
    p = model.defaults[:, None] * rng.uniform(0.5, 1.5, (model.n_parameters, m))
    return y, p


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_hazard_state_is_held_for_observables_that_do_not_read_it(backend):
    model = _model(backend)
    view = model.for_outputs(FITTED)
    lam = model.state_index("Lambda_death")
    assert view is not model and view.frozen_states == (lam,)
    assert model.for_outputs(list(reversed(FITTED))) is view             # one view per set
    assert model.for_outputs(["survival_death"]) is model                # it reads Lambda
    assert model.for_outputs(["cumhaz_death", "NfL"]) is model
    with pytest.raises(ModelError, match="no observable 'nfl'"):
        model.for_outputs(["nfl"])
    y, p = _points(model)
    keep = np.arange(model.n_states) != lam
    for name in ("rhs", "jac"):
        full, held = getattr(model, name)(0.0, y, p), getattr(view, name)(0.0, y, p)
        np.testing.assert_allclose(held[keep], full[keep], rtol=1e-13, atol=1e-300)
        assert np.all(held[lam] == 0.0)
        assert np.any(full[lam] != 0.0)
    cols = [model.parameter_index("kA"), model.parameter_index("eD")]
    d_full, d_held = model.dfdp_columns(cols)(0.0, y, p), view.dfdp_columns(cols)(0.0, y, p)
    np.testing.assert_array_equal(d_held[keep], d_full[keep])
    assert np.all(d_held[lam] == 0.0)
    # everything else is the model's
    assert view.observable_names == model.observable_names and view.n_states == model.n_states
    np.testing.assert_array_equal(view.observe(0.0, y, p), model.observe(0.0, y, p))


def test_the_compiled_kernels_of_the_view_skip_the_held_equations():
    model = _model("numba")
    view = model.for_outputs(FITTED)
    lam = model.state_index("Lambda_death")
    y, p = _points(model, m=5)
    for s in range(5):
        ys, ps = np.ascontiguousarray(y[:, s]), np.ascontiguousarray(p[:, s])
        f, J = np.empty(model.n_states), np.empty((model.n_states,) * 2)
        view.kernels.rhs_jac(0.0, ys, ps, f, J)
        f2 = np.empty(model.n_states)
        view.kernels.rhs(0.0, ys, ps, f2)
        np.testing.assert_allclose(f, view.rhs(0.0, y[:, s:s + 1], p[:, s:s + 1])[:, 0],
                                   rtol=1e-14)
        np.testing.assert_allclose(f2, f, rtol=1e-14)
        np.testing.assert_allclose(J, model.jac(0.0, y[:, s:s + 1], p[:, s:s + 1])[:, :, 0]
                                   * (np.arange(model.n_states) != lam)[:, None],
                                   rtol=1e-13, atol=1e-300)
        assert f[lam] == 0.0 and not J[lam].any()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_kept_states_follow_the_full_model_to_the_tolerance(backend):
    """Per-subject Rodas4 (compiled with numba, vectorised numpy otherwise) at rtol 1e-8: the
    kept states within 1e-6 relative of a tight (rtol 1e-11) solve of the full model, the
    held state at its initial value 0."""
    model = _model(backend)
    view = model.for_outputs(FITTED)
    lam = model.state_index("Lambda_death")
    table = np.tile(model.defaults, (4, 1))
    table[:, model.parameter_index("kA")] *= [0.6, 0.9, 1.2, 1.5]
    times = np.linspace(0.0, 60.0, 31)
    X, status, _, _ = solve_states(view, table, times, rtol=1e-8, atol=1e-10,
                                   per_subject=True)
    ref = pg.simulate(model, table, times, rtol=1e-11, atol=1e-13, method="LSODA",
                      terminal_events=False).states
    assert np.all(np.asarray(status) == 0)
    keep = np.arange(model.n_states) != lam
    scale = np.abs(ref[:, keep]).max(axis=2, keepdims=True)
    assert np.max(np.abs(X[:, keep] - ref[:, keep]) / scale) < 1e-6
    assert np.all(X[:, lam] == 0.0) and np.all(ref[:, lam, -1] > 0)


def test_a_model_without_such_states_is_its_own_view():
    model = pg.load_model("pk_oral")
    assert model.for_outputs(model.observable_names) is model


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_grid_sensitivities_run_on_the_kept_states_only(backend):
    """progression._gridsens with a view: the rule on the kept states (J's zero block of the
    held state left out) gives the whole held system's sensitivities (the same view with its
    held states not declared) to rounding, the held state's its initial ones (0), NaN
    patterns alike; and both agree with forward sensitivities of the full model to the grid
    path's accuracy (the 0.5-month grid's)."""
    from progression._gridsens import grid_sensitivities

    model = _model(backend)
    view = model.for_outputs(FITTED)

    class Undeclared:
        frozen_states = ()

        def __getattr__(self, name):
            return getattr(view, name)

    table = np.tile(model.defaults, (3, 1))
    table[:, model.parameter_index("eD")] *= [0.7, 1.0, 1.4]
    grid = np.arange(0.0, 40.5, 0.5)
    X = solve_states(view, table, grid, rtol=1e-8, atol=1e-10, per_subject=True)[0]
    cols = [model.parameter_index("kA"), model.parameter_index("eD")]
    kept = grid_sensitivities(view, grid, X, table, cols)
    whole = grid_sensitivities(Undeclared(), grid, X, table, cols)
    assert kept.shape == whole.shape == (3, model.n_states, 2, grid.size)
    np.testing.assert_allclose(kept, whole, rtol=1e-12, atol=1e-14)
    lam = model.state_index("Lambda_death")
    assert np.all(kept[:, lam] == 0.0)
    exact = pg.simulate(model, table, grid, rtol=1e-10, atol=1e-12, method="LSODA",
                        sensitivities=["kA", "eD"], terminal_events=False)
    keep = np.arange(model.n_states) != lam
    ref = exact.state_sensitivities[:, keep]
    scale = np.abs(ref).max(axis=3, keepdims=True) + 1e-12
    # the trapezoidal rule on a 0.5-month grid (no fallback here): measured 3.1e-3 of each
    # sensitivity's largest value; a wrong block or sign gives O(1)
    assert np.max(np.abs(kept[:, keep] - ref) / scale) < 1e-2


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_forward_fallback_of_grid_sensitivities_takes_the_full_model(backend):
    """Subjects whose grid estimate exceeds the tolerance get forward sensitivities from
    simulate(), which takes models, not views: with tol = 0 every subject goes there; the
    kept states' sensitivities are the full model's (1e-6 of each one's largest value), the
    held state's its initial ones (0)."""
    from progression._gridsens import grid_sensitivities

    model = _model(backend)
    view = model.for_outputs(FITTED)
    lam = model.state_index("Lambda_death")
    table = np.tile(model.defaults, (2, 1))
    table[:, model.parameter_index("eD")] *= [0.8, 1.3]
    grid = np.arange(0.0, 30.5, 0.5)
    X = solve_states(view, table, grid, rtol=1e-8, atol=1e-10, per_subject=True)[0]
    cols = [model.parameter_index("kA"), model.parameter_index("eD")]
    report = {}
    out = grid_sensitivities(view, grid, X, table, cols, tol=0.0, report=report,
                             solver={"rtol": 1e-10, "atol": 1e-12})
    np.testing.assert_array_equal(report["fallback"], [0, 1])
    ref = pg.simulate(model, table, grid, rtol=1e-10, atol=1e-12, sensitivities=["kA", "eD"],
                      terminal_events=False, events=False).state_sensitivities
    keep = np.arange(model.n_states) != lam
    scale = np.abs(ref[:, keep]).max(axis=3, keepdims=True) + 1e-12
    assert np.max(np.abs(out[:, keep] - ref[:, keep]) / scale) < 1e-6
    assert np.all(out[:, lam] == 0.0) and np.any(ref[:, lam] != 0.0)


def _clinic_subset(tmp_path, n):
    """configs/als_synthetic_individual.toml's data cut to its first ``n`` patients (the
    long file and the files its sidecar names), and that config pointing there."""
    import csv
    import shutil
    from pathlib import Path

    from progression.fit import read_fit_config

    root = Path(__file__).resolve().parents[1]
    data = root / "data" / "synthetic"
    keep = None
    for name in ("als_clinic_200.csv", "als_clinic_200_covariates.csv",
                 "als_clinic_200_events.csv"):
        with open(data / name, newline="") as src:
            rows = list(csv.reader(src))
        if keep is None:
            keep = list(dict.fromkeys(r[0] for r in rows[1:]))[:n]
        with open(tmp_path / name, "w", newline="") as dst:
            csv.writer(dst).writerows([rows[0]] + [r for r in rows[1:] if r[0] in keep])
    shutil.copy(data / "als_clinic_200.toml", tmp_path / "als_clinic_200.toml")
    text = (root / "configs" / "als_synthetic_individual.toml").read_text()
    text = text.replace('"../data/synthetic/als_clinic_200.csv"',
                        repr(str(tmp_path / "als_clinic_200.csv")).replace("'", '"'))
    config = tmp_path / "config.toml"
    config.write_text(text)
    return read_fit_config(config)


def test_a_per_subject_fit_whose_grid_sensitivities_fall_back_runs(tmp_path, monkeypatch):
    """The shipped configs/als_synthetic_individual.toml on three of its patients, with the
    grid sensitivities' tolerance at 0 so that every grid evaluation takes the forward
    fallback with the held-state view (the shipped fit failed there: simulate() refused the
    view, REDUCED_STATES_GRID on): the fit runs, and its estimates are those of the full model
    to 1e-3 (the polish on the exact path ends both at the optimum; these patients' k0 and
    offset trade off along a flat valley, so tighter would test the valley, not the path)."""
    import importlib

    from progression.fit import fit

    gs = importlib.import_module("progression._gridsens")
    paths = importlib.import_module("progression.fit._paths")
    cfg = _clinic_subset(tmp_path, 3)
    calls = []
    forward = gs._forward

    def counted(model, *args):
        calls.append(model)
        return forward(model, *args)

    monkeypatch.setattr(gs, "_forward", counted)
    monkeypatch.setitem(gs.grid_sensitivities.__kwdefaults__, "tol", 0.0)
    monkeypatch.setattr(paths, "REDUCED_STATES_GRID", True)        # the view on the grid path
    res = fit(cfg, jobs=1)
    assert calls and all(getattr(m, "frozen_states", ()) for m in calls)
    monkeypatch.setattr(paths, "REDUCED_STATES_GRID", False)
    monkeypatch.setattr(paths, "REDUCED_STATES", False)
    full = fit(cfg, jobs=1)
    for name in ("kA", "eD"):
        np.testing.assert_allclose(res.estimates(name), full.estimates(name), rtol=1e-3)
