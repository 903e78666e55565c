"""simulate() and solve_states() split large batches automatically; the split changes nothing
beyond the integrator's tolerance, and subjects, events, statuses and messages keep their order.

The chunk sizes are module constants (``CHUNK``, ``CHUNK_ABOVE`` in progression.simulate._api,
``SMALL_BATCH`` in ._stacked): the tests lower them so that small cohorts are cut into many
chunks.
"""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

import progression as pg
from progression.errors import ProgressionError
from progression.options import SolverOptions

api = importlib.import_module("progression.simulate._api")
stacked = importlib.import_module("progression.simulate._stacked")

TIMES = np.linspace(0.0, 120.0, 25)


def _cohort(m, seed=0, failing=()):
    """m als_reduced patients, every parameter log-normal (SD of log 0.3) within its bounds;
    the rows in ``failing`` get k0 = -5 (the integration blows up: status -1)."""
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(seed)
    table = model.parameter_table(None, m)
    table *= np.exp(0.3 * rng.standard_normal(table.shape))
    table = np.clip(table, model.bounds[:, 0], model.bounds[:, 1])
    table[list(failing), model.parameter_index("k0")] = -5.0
    return model, table


def _same_subjects(a, b, rtol, events_atol):
    """Equal per subject: values to ``rtol`` of each observable's/state's largest value,
    statuses exactly, messages with their numbers (event times) masked, event times to
    ``events_atol``."""
    np.testing.assert_array_equal(a.status, b.status)

    def words(text):
        return re.sub(r"[-+]?\d+\.?\d*(e[-+]?\d+)?", "#", text)

    assert [words(x) for x in a.message] == [words(x) for x in b.message]
    for x, y in ((a.observables, b.observables), (a.states, b.states)):
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        scale = np.nanmax(np.abs(y), axis=(0, 2), keepdims=True) + 1e-300
        assert np.nanmax(np.abs(x - y) / scale) <= rtol
    assert a.events.keys() == b.events.keys()
    for name in a.events:
        for ea, eb in zip(a.events[name], b.events[name], strict=True):
            assert np.shape(ea) == np.shape(eb)
            np.testing.assert_allclose(ea, eb, rtol=0, atol=events_atol)


def test_chunk_size_rule():
    assert api._chunk_size(1) == 1
    assert api._chunk_size(api.CHUNK_ABOVE) == api.CHUNK_ABOVE          # stays whole
    assert api._chunk_size(api.CHUNK_ABOVE + 1) == -(-(api.CHUNK_ABOVE + 1) // 2)
    assert api._chunk_size(10_000) == 1000                            # 10 equal chunks
    assert api._chunk_size(2_500) == 834                              # 3 chunks, not 1000+1000+500
    assert api._chunk_size(10_000, compiled=True) == stacked.SMALL_BATCH
    assert api._chunk_size(3, compiled=True) == 3


def test_default_path_chunked_equals_unchunked_on_2500_patients(monkeypatch):
    """No method chosen: every chunk goes through the compiled per-subject Rodas4 (when the
    model has kernels: chunks of 7, results independent of the split, 1e-9) or the stacked
    LSODA (numpy backend: chunks of 250, within the tolerance's reach, 1e-4); subjects,
    events and statuses keep their order."""
    model, table = _cohort(2500, seed=1)
    compiled = api._compiled_path(model)
    monkeypatch.setattr(stacked, "SMALL_BATCH", 2500)      # the whole batch on the same path
    whole = pg.simulate(model, table, TIMES, batch_size=2500)
    size = 7 if compiled else 250
    monkeypatch.setattr(stacked, "SMALL_BATCH", size)
    monkeypatch.setattr(api, "CHUNK", size)
    monkeypatch.setattr(api, "CHUNK_ABOVE", size)
    assert api._chunk_size(2500, compiled) == size
    chunked = pg.simulate(model, table, TIMES)
    assert chunked.stats["method"] == whole.stats["method"]
    assert (chunked.status == 1).sum() > 100       # many terminal events (deaths) to compare
    _same_subjects(chunked, whole, rtol=1e-9 if compiled else 1e-4,
                   events_atol=1e-9 if compiled else 1e-3)


def test_stacked_chunks_equal_one_stacked_solve_within_tolerance(monkeypatch):
    """LSODA chosen: one stacked solve of 400 patients against chunks of 40 (a stacked
    system's shared steps move results by what the tolerance allows: rtol 1e-11 here)."""
    model, table = _cohort(400, seed=2)
    opts = dict(method="LSODA", rtol=1e-11, atol=1e-13)
    whole = pg.simulate(model, table, TIMES, batch_size=400, **opts)
    monkeypatch.setattr(api, "CHUNK", 40)
    monkeypatch.setattr(api, "CHUNK_ABOVE", 60)
    calls = []
    real = api._solve_batch
    monkeypatch.setattr(api, "_solve_batch",
                        lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    chunked = pg.simulate(model, table, TIMES, **opts)
    assert calls == [40] * 10
    _same_subjects(chunked, whole, rtol=1e-9, events_atol=1e-7)
    # solve_states chunks the same way
    real_odeint = api._odeint_states
    monkeypatch.setattr(api, "_odeint_states",
                        lambda *a, **k: calls.append(len(a[1])) or real_odeint(*a, **k))
    calls.clear()
    X, status, message, _ = api.solve_states(model, table, TIMES, **opts)
    assert calls == [40] * 10
    Xw, status_w, message_w, _ = api.solve_states(model, table[:40], TIMES, **opts)
    np.testing.assert_allclose(X[:40], Xw, rtol=1e-8, atol=1e-12)
    assert X.shape == (400, model.n_states, TIMES.size) and (status == 0).all()


def test_failures_events_and_messages_keep_their_subjects_across_chunks(monkeypatch):
    """Failing subjects (status -1, message naming the subject by its index in the whole
    batch) in different chunks, deaths and onsets in between: same per subject as unchunked."""
    model, table = _cohort(90, seed=3, failing=(5, 61))
    opts = dict(method="LSODA", max_steps=2000)
    whole = pg.simulate(model, table, TIMES, batch_size=90, **opts)
    monkeypatch.setattr(api, "CHUNK", 20)
    monkeypatch.setattr(api, "CHUNK_ABOVE", 20)
    chunked = pg.simulate(model, table, TIMES, **opts)
    assert list(np.nonzero(chunked.status == -1)[0]) == [5, 61]
    assert "subject 61" in chunked.message[61]
    _same_subjects(chunked, whole, rtol=1e-4, events_atol=1e-3)


@pytest.mark.parametrize("kwargs, compiled", [
    ({}, True), ({"method": "LSODA"}, False), ({"solver": {"rtol": 1e-6}}, True),
    ({"solver": {"method": "LSODA"}}, False), ({"solver": SolverOptions()}, True),
    ({"method": "auto"}, True)])
def test_which_path_runs(kwargs, compiled):
    """The default method ("auto", also SolverOptions()'s) runs the compiled per-subject
    Rodas4 when the model has kernels; a scipy name runs that stacked integrator; stats say
    which ran, and automatic chunking follows the path."""
    model, table = _cohort(3)
    sim = pg.simulate(model, table, TIMES, **kwargs)
    has_kernels = api._compiled_path(model)
    assert (sim.stats["method"] == "Rodas4 (compiled)") is (compiled and has_kernels)
    if not (compiled and has_kernels):
        assert sim.stats["method"] == "LSODA"


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_batch_size_is_refused_by_name(bad):
    model, table = _cohort(3)
    with pytest.raises(ProgressionError, match=r"batch_size: expected a positive integer"):
        pg.simulate(model, table, TIMES, batch_size=bad)
