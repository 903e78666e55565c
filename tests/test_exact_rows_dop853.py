"""The exact path's evaluations without sensitivities in the individual fit's polish (its chord
steps) by the compiled per-subject DOP853, rows over numba's threads
(progression.fit._paths._rows_by_dop853, progression.simulate._dop853_rows): the outputs of
the stacked LSODA it replaces to their tolerance (both against a reference at rtol 1e-12), the
same numbers on one thread and on two, a row it cannot finish handed to the stacked LSODA, and
the numpy backend and the other callers untouched."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import progression as pg
from progression.fit import Problem, parse_fit_config

paths = importlib.import_module("progression.fit._paths")
rows = importlib.import_module("progression.simulate._dop853_rows")

CONFIG = """
[fit]
name = "exact_rows"
model = "als_reduced"
[error.ALSFRS_R]
model = "additive"
a = 1.0
[error.NfL]
model = "lognormal"
sigma = 0.15
[parameters.kA]
estimate = "subject"
[parameters.eD]
estimate = "subject"
"""


def _problem(rtol, backend=None):
    problem = Problem.from_config(parse_fit_config(CONFIG, check_data=False))
    if backend is not None:
        problem.model = pg.compile_model(pg.model.library.library_spec("als_reduced"),
                                         backend=backend)
    problem.solver.update(rtol=rtol, atol=rtol * 1e-2, outputs="exact")
    return problem


def _values(problem, R=20, seed=4):
    """R rows (kA, eD spread), each with values at its own jittered visit times."""
    model = problem.model
    rng = np.random.default_rng(seed)
    table = np.tile(model.defaults, (R, 1))
    for name in ("kA", "eD"):
        table[:, model.parameter_index(name)] *= np.exp(0.3 * rng.standard_normal(R))
    rr, tm, oi = [], [], []
    for r in range(R):
        t = rng.uniform(15.0, 30.0) + np.arange(0.0, 25.0, 3.0)
        for k in (0, 1):
            rr.append(np.full(t.size, r))
            tm.append(t)
            oi.append(np.full(t.size, k))
    return table, np.concatenate(rr), np.concatenate(tm), np.concatenate(oi)


def _outputs(problem, table, rr, tm, oi, dop853=True):
    old = paths.EXACT_ROWS_DOP853
    paths.EXACT_ROWS_DOP853 = dop853
    try:
        with paths.exact_rows_by_dop853():          # as in the individual fit's polish
            return paths.plain_outputs(problem, table, rr, tm, oi, [])
    finally:
        paths.EXACT_ROWS_DOP853 = old


@pytest.fixture(scope="module")
def case():
    pytest.importorskip("numba")
    problem = _problem(1e-10)
    if problem.model.kernels is None:
        pytest.skip("numba backend not in use")
    values = _values(problem)
    return problem, values


def test_dop853_rows_give_the_stacked_lsoda_outputs_to_the_tolerance(case):
    problem, (table, rr, tm, oi) = case
    used = []
    original = paths._rows_by_dop853

    def spy(*args):
        done = original(*args)
        used.append(done)
        return done

    paths._rows_by_dop853 = spy
    try:
        f, _, dfdtau, status, messages, err = _outputs(problem, table, rr, tm, oi)
    finally:
        paths._rows_by_dop853 = original
    assert used and used[0] is not None and used[0].all()       # every row by DOP853
    assert np.all(status == 0) and set(messages) == {"ok"}
    f_lsoda = _outputs(problem, table, rr, tm, oi, dop853=False)[0]
    ref = _outputs(_problem(1e-12), table, rr, tm, oi, dop853=False)[0]
    # rtol 1e-10 on the states: the outputs to ~1e-8 (the ALSFRS-R's steep softplus and the
    # log of NfL amplify state errors ~10-100x)
    scale = np.abs(ref) + 1e-3
    assert np.max(np.abs(f - ref) / scale) < 1e-7
    assert np.max(np.abs(f_lsoda - ref) / scale) < 1e-7
    assert not np.array_equal(f, f_lsoda)          # the two integrators really ran
    assert np.all(np.isfinite(dfdtau)) and np.all(err == 0)


def test_dop853_rows_are_the_same_on_one_thread_and_two(case, monkeypatch):
    import numba

    from progression import _omp

    if numba.get_num_threads() < 2:
        pytest.skip("one numba thread")
    problem, (table, rr, tm, oi) = case
    monkeypatch.setattr(_omp, "BUSY_CHECK", False)       # two threads even on a busy machine
    assert rows.row_threads(table.shape[0]) >= 2
    threaded = _outputs(problem, table, rr, tm, oi)[0]
    monkeypatch.setattr(rows, "PARALLEL", False)
    assert rows.row_threads(table.shape[0]) == 1
    serial = _outputs(problem, table, rr, tm, oi)[0]
    np.testing.assert_array_equal(threaded, serial)


def test_a_row_dop853_cannot_finish_goes_to_the_stacked_lsoda(case, monkeypatch):
    """Rows reported stiff or failed (code != 0) are integrated by the stacked LSODA: their
    outputs are that path's, the others DOP853's."""
    from progression.simulate._dop853_numba import STIFF

    problem, (table, rr, tm, oi) = case
    original = rows.row_states

    def some_stiff(*args):
        states, code = original(*args)
        code[[2, 5]] = [STIFF, -1]
        states[[2, 5]] = np.nan
        return states, code

    monkeypatch.setattr(rows, "row_states", some_stiff)
    f, _, _, status, _, _ = _outputs(problem, table, rr, tm, oi)
    monkeypatch.setattr(rows, "row_states", original)
    f_dop = _outputs(problem, table, rr, tm, oi)[0]
    f_lsoda = _outputs(problem, table, rr, tm, oi, dop853=False)[0]
    assert np.all(status == 0) and np.all(np.isfinite(f))
    handed = np.isin(rr, [2, 5])
    np.testing.assert_array_equal(f[~handed], f_dop[~handed])
    np.testing.assert_allclose(f[handed], f_lsoda[handed], rtol=1e-7)


def test_numpy_backend_other_methods_and_other_callers_keep_the_stacked_path():
    """Without numba kernels, with a method other than "auto", at a tolerance where "auto"
    takes Rodas4, and outside the polish (population estimators, reports): no DOP853 rows."""
    problem = _problem(1e-10, backend="numpy")
    assert problem.model.kernels is None
    table, rr, tm, oi = _values(problem, R=4)
    options = paths.solver_options(problem, [])
    y = np.full((problem.model.n_states, tm.size), np.nan)

    def by_dop853(model, opts):
        return paths._rows_by_dop853(model, table, rr, tm, opts, y, np.zeros(4, int),
                                     [""] * 4)

    with paths.exact_rows_by_dop853():
        assert by_dop853(problem.model, options) is None
        f, _, _, status, _, _ = paths.plain_outputs(problem, table, rr, tm, oi, [])
    assert np.all(status == 0) and np.all(np.isfinite(f))
    compiled = _problem(1e-10)
    if compiled.model.kernels is not None:
        with paths.exact_rows_by_dop853():
            assert by_dop853(compiled.model, options) is not None
            for method, rtol in (("LSODA", 1e-10), ("auto", 1e-6)):
                assert by_dop853(compiled.model, dict(options, method=method,
                                                      rtol=rtol)) is None
        assert by_dop853(compiled.model, options) is None          # outside the polish
