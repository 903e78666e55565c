"""The grid path's compiled Rodas4 states over numba's threads
(:func:`progression.simulate._rodas4_loops.grid_states`: the serial ``_grid`` or the threaded
``_grid_par``, the same per-subject function ``_grid_row``): the same numbers as the serial
loop to the last digit (states, status, failures and counters), with covariate breaks and
failing subjects; a fit on the grid path gives identical estimates either way; and the rules
that keep a call serial (few rows, ``PARALLEL`` off, a worker process of
progression.parallel)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression import _rodas

loops = importlib.import_module("progression.simulate._rodas4_loops")
if not loops.AVAILABLE:
    pytest.skip("numba is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import config_text, simulate_cohort  # noqa: E402
from _fork_support import in_forked_child  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_whatever_the_load(monkeypatch):
    """The comparisons need the threads however busy the machine is (progression._omp counts
    only idle CPUs: see test_busy_cpus_are_not_counted)."""
    from progression import _omp

    monkeypatch.setattr(_omp, "BUSY_CHECK", False)


def _both(monkeypatch, call):
    """``call()`` with the threaded grid forced (from one row) and with the serial one."""
    monkeypatch.setattr(loops, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(loops, "PARALLEL", True)
    if loops.grid_threads() < 2:
        pytest.skip("one numba thread: nothing to compare")
    threaded = call()
    monkeypatch.setattr(loops, "PARALLEL", False)
    return threaded, call()


def _table(model, m, seed=5):
    rng = np.random.default_rng(seed)
    table = model.parameter_table(None, m)
    for par in ("k0", "kA", "eD"):
        table[:, model.parameter_index(par)] *= np.exp(0.3 * rng.standard_normal(m))
    return np.clip(table, model.bounds[:, 0], model.bounds[:, 1])


def test_threaded_grid_states_equal_the_serial_loop(monkeypatch):
    """als_reduced (a cumulative hazard: the block LU), 37 subjects (an odd count: the
    threads' shares differ), one with a NaN parameter (fails at the start), and a second batch
    with max_steps 20 (some fail in the loop): every array equal, not merely close."""
    model = pg.load_model("als_reduced")
    if model.kernels is None:
        pytest.skip("no kernels")
    table = _table(model, 37)
    table[7, model.parameter_index("kA")] = np.nan
    times = np.arange(0.0, 60.5, 0.5)

    def call():
        return (_rodas.rodas_states(model, table, times, rtol=1e-6, atol=1e-9),
                _rodas.rodas_states(model, table, times, max_steps=20))

    threaded, serial = _both(monkeypatch, call)
    for a, b in zip(threaded, serial, strict=True):
        np.testing.assert_array_equal(a[0], b[0])            # states, NaN where failed
        np.testing.assert_array_equal(a[1], b[1])
        assert a[3] == b[3]                                  # steps, nfev, njev, nlu
        for fa, fb in zip(a[2], b[2], strict=True):
            assert (fa is None) == (fb is None)
            if fa is not None:
                assert fa[0] == fb[0] and fa[3] == fb[3]
                np.testing.assert_array_equal(fa[1], fb[1])
                np.testing.assert_array_equal(fa[2], fb[2])
    assert threaded[0][1][7] == -1 and (threaded[0][1] == 0).sum() == 36
    assert (threaded[1][1] == -1).any()


def test_threaded_grid_with_covariate_breaks_equals_the_serial_loop(monkeypatch):
    """Subjects whose hidden parameter rows (a body weight, LOCF) change at their own times
    (their steps end there): tests/test_covariates.py's one-compartment model."""
    from test_covariates import WEIGHT_MODEL

    from progression.model import parse_model
    from progression.simulate._covariates import covariate_schedule

    model = pg.compile_model(parse_model(WEIGHT_MODEL, "w.toml"))
    if model.kernels is None:
        pytest.skip("no kernels")
    m = 20
    table = model.parameter_table({"CL_ref": np.linspace(3.0, 7.0, m)})
    times = np.linspace(0.0, 12.0, 25)
    sched = covariate_schedule(model, [{"WT": ([0.0, 1.0 + 0.4 * i], [70.0, 60.0 + i])}
                                       for i in range(m)], m)

    def call():
        return _rodas.rodas_states(model, table, times, rtol=1e-8, atol=1e-10,
                                   covariates=sched)

    threaded, serial = _both(monkeypatch, call)
    np.testing.assert_array_equal(threaded[0], serial[0])
    np.testing.assert_array_equal(threaded[1], 0)
    assert threaded[3] == serial[3]


def test_a_grid_path_fit_is_identical_with_threads(monkeypatch):
    """The individual fit (batched Levenberg-Marquardt on the grid path, exact-path polish)
    of 20 patients: the same estimates and objective to the last digit."""
    from progression.fit import fit, parse_fit_config

    cohort, _ = simulate_cohort(20, seed=4)
    cfg = parse_fit_config(config_text(), check_data=False)

    def call():
        res = fit(cfg, data=cohort)
        return np.column_stack([res.estimates(n) for n in ("kA", "eD", "time_offset")]), \
            res.subject_objective

    threaded, serial = _both(monkeypatch, call)
    np.testing.assert_array_equal(threaded[0], serial[0])
    np.testing.assert_array_equal(threaded[1], serial[1])


def test_calls_stay_serial_when_threads_cannot_help(monkeypatch):
    """Below PARALLEL_ROWS, with PARALLEL off, in a worker process of progression.parallel
    or in a process started with OMP_NUM_THREADS=1 (a Dask worker) the serial loop runs."""
    from progression import _omp

    used = []
    monkeypatch.setattr(loops, "_grid_q", lambda *a: used.append("serial"))
    monkeypatch.setattr(loops, "_grid_par_q", lambda *a: used.append("threads"))
    monkeypatch.setattr(loops, "PARALLEL", True)
    monkeypatch.setattr(_omp, "IN_WORKER", False)
    monkeypatch.setattr(_omp, "STARTED_SINGLE", False)
    big, small = np.zeros((loops.PARALLEL_ROWS, 3)), np.zeros((loops.PARALLEL_ROWS - 1, 3))
    loops.grid_states(None, small)
    assert used == ["serial"]
    if loops.grid_threads() > 1:
        loops.grid_states(None, big)
        assert used[-1] == "threads"
    for flag in ("IN_WORKER", "STARTED_SINGLE"):
        monkeypatch.setattr(_omp, flag, True)
        assert loops.grid_threads() == 1
        loops.grid_states(None, big)
        assert used[-1] == "serial"
        monkeypatch.setattr(_omp, flag, False)
    monkeypatch.setattr(loops, "PARALLEL", False)
    assert loops.grid_threads() == 1


# ------------------------------------------------------------------ grid sensitivities

def _both_gs(monkeypatch, call):
    """``call()`` with the grid sensitivities' threaded kernels forced (from one subject) and
    with the serial ones (the compiled path both times)."""
    from progression import _gridsens as gs

    monkeypatch.setattr(gs, "COMPILED", True)
    monkeypatch.setattr(gs, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(gs, "PARALLEL", True)
    if not gs._threads(1):
        pytest.skip("one numba thread: nothing to compare")
    threaded = call()
    monkeypatch.setattr(gs, "PARALLEL", False)
    return threaded, call()


def test_threaded_step_rule_equals_the_serial_kernel_with_poor_pivots(monkeypatch):
    """The trapezoidal recurrence solved for S directly (every optimiser step), 40 subjects,
    some with a zero leading pivot at a node (LAPACK takes the step, the kernel resumes) and
    one with a NaN Jacobian: S equal to the last digit, stiff steps the same."""
    from test_gridsens_compiled import _jacobians

    from progression import _gridsens as gs

    rng = np.random.default_rng(11)
    n, k, m = 3, 2, 40
    grid = np.arange(0.0, 10.01, 0.5)
    J, F, S0 = _jacobians(rng, n, k, m, grid.size, 0.0)
    P = np.eye(n)[[1, 2, 0]]
    for s, j in ((0, 3), (0, 11), (17, 7), (39, grid.size - 1)):
        J[:, :, s, j] = (np.eye(n) - P) / 0.25      # h/2 = 0.25: I - h/2 J = P
    J[1, 1, 21, 9] = np.nan
    threaded, serial = _both_gs(monkeypatch, lambda: gs._trapezoid(grid, J, F, S0, maps=False))
    np.testing.assert_array_equal(threaded[0], serial[0])
    np.testing.assert_array_equal(threaded[3], serial[3])
    assert np.isnan(serial[0][10:, 21]).all() and np.isfinite(serial[0][:, 0]).all()


@pytest.mark.parametrize("rate", [3.0, 60.0])
def test_threaded_stiffness_bound_equals_the_serial_kernel(monkeypatch, rate):
    """The power bound of every node of 40 subjects, with and without the early stop at a
    limit: the same bounds to the last digit, hence the same stiff steps."""
    from test_gridsens_compiled import _jacobians

    from progression import _gridsens as gs

    rng = np.random.default_rng(7)
    grid = np.arange(0.0, 30.0, 0.5)
    J, _, _ = _jacobians(rng, 5, 1, 40, grid.size, rate)
    mi, gi = np.nonzero(np.ones((40, grid.size), dtype=bool))
    for limit in (np.zeros(mi.size), np.full(mi.size, 10.0)):
        serial, threaded = np.empty(mi.size), np.empty(mi.size)
        gs._power_bound_kernel(J, mi, gi, gs._SQUARINGS, limit, serial)
        gs._power_bound_par(J, mi, gi, gs._SQUARINGS, limit, threaded)
        np.testing.assert_array_equal(threaded, serial)
    threaded, serial = _both_gs(monkeypatch, lambda: gs._stiff_steps(grid, J))
    np.testing.assert_array_equal(threaded, serial)
    assert serial.any() or rate < 10


def test_threaded_grid_sensitivities_equal_the_serial_ones_on_als_reduced(monkeypatch):
    """The whole rule (fine and coarse grid, Richardson, error estimate) for 40 subjects; the
    threaded path's Jacobians come from the model's per-point kernel (_jac_points_par), the
    serial path's from its batch Jacobian."""
    from progression._gridsens import grid_sensitivities

    model = pg.load_model("als_reduced")
    table = _table(model, 40, seed=3)
    grid = np.arange(0.0, 50.01, 0.5)
    states = _rodas.rodas_states(model, table, grid)[0]
    cols = [model.parameter_index(c) for c in ("kA", "eD")]
    for richardson in (False, True):
        threaded, serial = _both_gs(monkeypatch, lambda r=richardson: grid_sensitivities(
            model, grid, states, table, cols, richardson=r))
        np.testing.assert_array_equal(threaded, serial)


def test_threaded_error_estimate_and_gershgorin_bound_equal_the_serial_kernels():
    """The per-subject error estimate (nodes up to each subject's last, a NaN subject) and the
    Gershgorin bound (a NaN entry): the same numbers from both kernels."""
    from progression import _gridsens as gs

    rng = np.random.default_rng(2)
    m, G, n, k = 40, 31, 4, 3
    S = rng.standard_normal((m, G, n, k))
    C = S[:, ::2] + 1e-4 * rng.standard_normal((m, (G + 1) // 2, n, k))
    S[5, 7, 1, 2] = np.nan
    last = rng.integers(0, G, m).astype(np.int64)
    serial, threaded = np.empty(m), np.empty(m)
    gs._estimate_kernel(S, C, last, serial)
    gs._estimate_par(S, C, last, threaded)
    np.testing.assert_array_equal(threaded, serial)
    assert np.isnan(serial[5]) == (last[5] >= 7) and np.isfinite(serial[6])
    J = rng.standard_normal((n, n, m, G))
    J[2, 1, 9, 4] = np.nan
    serial, threaded = np.empty((m, G)), np.empty((m, G))
    gs._gershgorin_kernel(J, serial)
    gs._gershgorin_par(J, threaded)
    np.testing.assert_array_equal(threaded, serial)
    assert np.isnan(serial[9, 4]) and np.isfinite(serial[9, 3])


_FIT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
from _fit_support import config_text, simulate_cohort
from progression.fit import fit, parse_fit_config
cohort, _ = simulate_cohort(20, seed=4)
res = fit(parse_fit_config(config_text(), check_data=False), data=cohort)
print(json.dumps({{"est": np.column_stack([res.estimates(n) for n in
                                         ("kA", "eD", "time_offset")]).tolist(),
                  "m2ll": res.subject_objective.tolist()}}))
"""


def test_the_numpy_backend_gives_the_same_fit():
    """The fit of test_a_grid_path_fit_is_identical_with_threads in a fresh process with
    ``PROGRESSION_BACKEND=numpy`` (numpy model functions, the vectorised numpy Rodas4 and
    grid sensitivities, no threads) against this process's (numba, threads): estimates within
    1e-6 relative (measured 3e-8: both polish on the exact path to ftol 1e-10) and -2 log L
    within 1e-4 (measured 1.7e-6)."""
    import json
    import subprocess

    code = _FIT_SCRIPT.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PROGRESSION_BACKEND="numpy"), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    numpy_fit = json.loads(out.stdout.strip().splitlines()[-1])
    from progression.fit import fit, parse_fit_config

    cohort, _ = simulate_cohort(20, seed=4)
    res = fit(parse_fit_config(config_text(), check_data=False), data=cohort)
    est = np.column_stack([res.estimates(n) for n in ("kA", "eD", "time_offset")])
    np.testing.assert_allclose(est, numpy_fit["est"], rtol=1e-6)
    np.testing.assert_allclose(res.subject_objective, numpy_fit["m2ll"], rtol=0, atol=1e-4)


def test_a_forked_child_runs_the_serial_kernels():
    """GNU OpenMP is not fork-safe (numba terminates a forked child that starts a parallel
    region after its parent did): after the parent used the threads, a forked child gets one
    thread from progression._omp.threads() and its grid fit runs (and gives the parent's
    numbers)."""
    from progression import _omp

    if _omp.threads() < 2:
        pytest.skip("one numba thread: nothing to protect")
    model = pg.load_model("als_reduced")
    table = _table(model, 20)
    times = np.arange(0.0, 40.5, 0.5)
    parent = _rodas.rodas_states(model, table, times)[0]      # threads started here
    got = in_forked_child(lambda: _omp.threads() == 1 and np.array_equal(
        _rodas.rodas_states(model, table, times)[0], parent, equal_nan=True))
    assert got == bytes([0]), got


def test_busy_cpus_are_not_counted(monkeypatch):
    """progression._omp.threads() leaves out the CPUs other runnable tasks occupy (a thread
    descheduled for another process would hold the others at the region's end): all busy ->
    1 (the serial kernels), none -> numba's count (up to the CPUs), unknown -> not checked;
    ``using`` sets numba's count for a block and restores it. The count of this process's
    own running threads is left out (the caller is one)."""
    import numba

    from progression import _omp

    monkeypatch.setattr(_omp, "BUSY_CHECK", True)
    full = _omp.threads()
    monkeypatch.setattr(_omp, "BUSY_CHECK", False)
    assert _omp.threads() >= full
    free = _omp.threads()
    monkeypatch.setattr(_omp, "BUSY_CHECK", True)
    for busy, expected in ((0, free), (None, free), (64, 1), (max(0, free - 2), min(free, 2))):
        monkeypatch.setattr(_omp, "_other_runnable", lambda b=busy: b)
        monkeypatch.setattr(_omp, "_LAST", [-1e9, None])       # no remembered look
        if busy is not None and busy < 64:
            expected = max(1, min(free, len(os.sched_getaffinity(0)) - busy))
        assert _omp.threads() == expected, (busy, expected)
    monkeypatch.undo()
    own = _omp._other_runnable()
    assert own is None or own >= 0
    before = numba.get_num_threads()
    with _omp.using(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_a_dask_cluster_started_here_leaves_this_process_its_threads(monkeypatch):
    """Dask's LocalCluster writes OMP_NUM_THREADS=1 into the environment of the process that
    starts it (for its workers); progression's kernels in that process keep their threads
    (they read the variable once, as the process started)."""
    import numba

    from progression import _omp

    monkeypatch.setattr(_omp, "BUSY_CHECK", False)
    monkeypatch.setattr(_omp, "STARTED_SINGLE", False)
    monkeypatch.setattr(_omp, "IN_WORKER", False)
    before = _omp.threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")     # what LocalCluster leaves behind
    assert _omp.threads() == before == min(numba.get_num_threads(), _cpus())


def test_a_process_started_with_one_omp_thread_and_a_pool_worker_run_serially():
    """A process started with OMP_NUM_THREADS=1 (a Dask worker) and a worker of
    progression.parallel's process pool both use one thread."""
    import multiprocessing
    import subprocess
    from concurrent.futures import ProcessPoolExecutor

    from progression import parallel

    code = "from progression import _omp; print(_omp.STARTED_SINGLE, _omp.threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.split() == ["True", "1"], out.stderr
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=parallel._worker_init,
                             initargs=(None,)) as pool:
        assert pool.submit(_worker_threads).result() == (True, 1)


def _worker_threads():
    from progression import _omp

    return _omp.IN_WORKER, _omp.threads()


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
