"""``progression.fit(..., executor=...)`` takes any ``concurrent.futures.Executor``.

The same fit (six subjects of the closed-form decay problem in chunks of two, with profiles,
so both the estimation and an uncertainty step fan out) gives the same numbers in this process,
through a ``ThreadPoolExecutor``, progression's own process executor, and a local Dask cluster
started here (two worker processes, reached through ``client.get_executor()``): chunks are cut
the same way whatever runs them.
"""

import concurrent.futures as cf
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.errors import ConfigError
from progression.fit import fit
from progression.parallel import ProcessPool

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import config, decay_data  # noqa: E402

K_TRUE = (0.5, 1.3, 0.8, 0.3, 0.9, 1.1)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("executor")
    cfg = config(tmp, extra='batch_size = 2\nuncertainty = ["covariance", "profile"]\n'
                              "profile_points = 6\n")
    data = decay_data(k_true=K_TRUE, x0=(2.0,) * 6, seed=5)
    return cfg, data, fit(cfg, data=data)


def _same(a, b):
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-10, atol=0)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-10, atol=0)
    np.testing.assert_allclose(b.subject_objective, a.subject_objective, rtol=1e-10, atol=0)
    np.testing.assert_allclose(b.intervals["profile"], a.intervals["profile"], rtol=1e-10)
    for i in range(a.n_subjects):
        np.testing.assert_allclose(b.predictions[i], a.predictions[i], rtol=1e-10, atol=1e-14)
    assert b.counters["subject_solves"] == a.counters["subject_solves"]


@pytest.mark.parametrize("make", [lambda: cf.ThreadPoolExecutor(2), lambda: ProcessPool(2)],
                         ids=["threads", "progression-processes"])
def test_any_executor_gives_the_in_process_numbers(case, make):
    cfg, data, ref = case
    with make() as ex:
        got = fit(cfg, data=data, executor=ex)
        # the caller's executor is used, not shut down
        assert ex.submit(abs, -3).result() == 3
    _same(ref, got)
    assert got.provenance["executor"] in ("ThreadPoolExecutor", "processes")
    assert got.provenance["workers"] == 2


def test_a_local_dask_cluster_gives_the_in_process_numbers(case):
    """Two Dask worker processes started by the test, through ``client.get_executor()``."""
    distributed = pytest.importorskip("distributed")
    cfg, data, ref = case
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ex = client.get_executor()
        assert isinstance(ex, cf.Executor)
        got = fit(cfg, data=data, executor=ex)
    _same(ref, got)
    assert got.provenance["executor"] == "ClientExecutor"


def test_executor_must_be_an_executor_and_replaces_jobs_and_scheduler(case):
    cfg, data, _ = case
    with pytest.raises(ConfigError, match=r"fit\(executor=\.\.\.\): expected a concurrent"
                                          r"\.futures\.Executor .*found int 4"):
        fit(cfg, data=data, executor=4)
    with cf.ThreadPoolExecutor(1) as ex:
        with pytest.raises(ConfigError, match=r"executor= replaces jobs= and scheduler=; "
                                              r"found executor= together with jobs="):
            fit(cfg, data=data, executor=ex, jobs=2)
        with pytest.raises(ConfigError, match="together with scheduler="):
            fit(cfg, data=data, executor=ex, scheduler="local")
