"""One executor contract: every ``executor=`` takes a plain ``concurrent.futures.Executor``.

The same virtual trial (pool of 30 eligible patients in chunks of 10, then 16 replicate trials
of 10 per arm) gives bit-identical numbers in this process, through a ``ThreadPoolExecutor``, a
``ProcessPoolExecutor(2)`` and progression's own executors (in-process, local processes):
chunks carry their own seeds, so how they are spread over workers cannot change a number.
Before the contract, progression's executors had ``map(fn, items)`` calling ``fn(*item)`` and
``simulate_pool(executor=<progression executor>)`` failed with a TypeError.
(``pg.compare`` fans its scenarios out the same way: tests/test_solver_options_virtual.py.)
"""

import concurrent.futures as cf

import numpy as np
import pytest

import progression.interventions as iv
from progression.errors import ConfigError
from progression.parallel import InProcess, ProcessPool, check_executor, executor, map_items
from progression.trials import VirtualTrial


def _square_plus(k, c):
    return k * k + c


@pytest.fixture(scope="module")
def small():
    trial = VirtualTrial({"placebo": [], "IL-2": [iv.ld_il2()]}, follow_up=3.0)
    pool = trial.simulate_pool(30, seed=1, chunk=10)
    res = trial.run(10, reps=16, pool=pool, seed=4)
    return trial, pool, res


def _same(trial, pool, res, ex):
    fanned = trial.simulate_pool(30, seed=1, chunk=10, executor=ex)
    np.testing.assert_array_equal(pool.function, fanned.function)
    np.testing.assert_array_equal(pool.death, fanned.death)
    np.testing.assert_array_equal(pool.screening_score, fanned.screening_score)
    got = trial.run(10, reps=16, pool=pool, seed=4, executor=ex)
    assert [r["p"] for r in got.rows] == [r["p"] for r in res.rows]
    assert [r["estimate"] for r in got.rows] == [r["estimate"] for r in res.rows]


@pytest.mark.parametrize("make", [
    lambda: cf.ThreadPoolExecutor(3),
    lambda: cf.ProcessPoolExecutor(2),
    InProcess,
    lambda: ProcessPool(2),
], ids=["threads", "processes", "progression-in-process", "progression-processes"])
def test_virtual_trial_gives_identical_numbers_whatever_the_executor(small, make):
    trial, pool, res = small
    with make() as ex:
        assert isinstance(ex, cf.Executor)
        _same(trial, pool, res, ex)


def test_the_executor_context_manager_yields_standard_executors(small):
    trial, pool, res = small
    with executor(jobs=2) as ex:              # in-process on a one-CPU machine, else processes
        assert isinstance(ex, cf.Executor)
        _same(trial, pool, res, ex)
        assert ex.submit(_square_plus, 3, c=1).result() == 10
        assert list(ex.map(_square_plus, [1, 2, 3], [0, 0, 1])) == [1, 4, 10]


@pytest.mark.parametrize("make", [lambda: cf.ThreadPoolExecutor(2), InProcess,
                                  lambda: ProcessPool(2)])
def test_standard_submit_and_map(make):
    with make() as ex:
        assert ex.submit(_square_plus, 4, 1).result() == 17
        assert list(ex.map(_square_plus, range(5), [1] * 5)) == [1, 2, 5, 10, 17]
        assert list(ex.map(_square_plus, [2], [0])) == [4]           # one call: no pool
        with pytest.raises(TypeError):
            ex.submit(_square_plus, 1).result()                      # error in the future


def test_map_items_keeps_order_and_reports_with_any_executor():
    items = [(k, 0) for k in range(6)]
    for make in (lambda: None, lambda: cf.ThreadPoolExecutor(3), InProcess):
        ex = make()
        done = []
        try:
            out = map_items(ex, _square_plus, items, progress=lambda n, r, d=done: d.append(n))
        finally:
            if ex is not None:
                ex.shutdown()
        assert out == [0, 1, 4, 9, 16, 25]
        assert done == [1, 2, 3, 4, 5, 6]


def test_something_that_is_not_an_executor_is_refused_by_name(small):
    trial, pool, _ = small
    with pytest.raises(ConfigError, match=r"executor: expected a concurrent.futures.Executor"
                                          r".*found int 4"):
        trial.simulate_pool(30, seed=1, chunk=10, executor=4)
    with pytest.raises(ConfigError, match=r"found type <class .map.>"):
        trial.run(10, reps=2, pool=pool, executor=map)
    with pytest.raises(ConfigError, match="executor: expected"):
        map_items("threads", _square_plus, [(1, 1)])
    assert check_executor(None) is None


def test_dask_local_cluster_gives_the_same_trial_numbers(small):
    """Two Dask workers started by the test: through progression's Dask executor and through
    the client's own ``get_executor()`` (a plain concurrent.futures.Executor)."""
    distributed = pytest.importorskip("distributed")
    trial, pool, res = small
    with executor(scheduler="local", jobs=2) as ex:
        assert isinstance(ex, cf.Executor) and ex.name == "dask"
        _same(trial, pool, res, ex)
        assert map_items(ex, _square_plus, [(k, 1) for k in range(4)]) == [1, 2, 5, 10]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        _same(trial, pool, res, client.get_executor())
