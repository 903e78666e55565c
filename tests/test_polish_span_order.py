"""The exact path's groups without sensitivities (:func:`progression.fit._paths.plain_outputs`,
``outputs = "exact"``): a batch of more than :data:`~progression.fit._paths.EXACT_GROUP_VALUES`
rows is split into groups of rows with similar last output times
(:func:`~progression.fit._paths._span_order`); every row's outputs must still land on that row.

Checked against the closed form of first-order decay (tests/_decay_support.py: log x = log x0 -
k t), with rows whose spans are out of order and groups of two rows."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import config  # noqa: E402

from progression.fit import Design, Problem, _paths  # noqa: E402

#: Per row: k, x0 and the last observation time (spans out of order, two equal): in groups
#: of two the order is [3, 1], [5, 2], [4, 0], no group in row order.
ROWS = [(0.5, 2.0, 4.0), (1.3, 1.5, 1.0), (0.8, 3.0, 2.5), (0.2, 0.7, 0.5), (1.0, 1.2, 3.0),
        (0.6, 1.0, 1.0)]


def test_span_order_sorts_rows_by_last_time_ties_in_row_order():
    rr = np.array([0, 0, 1, 2, 2, 3, 4])
    tm = np.array([0.0, 4.0, 1.0, 0.5, 2.5, 1.0, 3.0])
    np.testing.assert_array_equal(_paths._span_order(5, rr, tm), [1, 3, 2, 4, 0])


@pytest.mark.parametrize("group, dop853", [(2, False), (100, False), (2, True)])
def test_exact_outputs_in_span_groups_match_the_closed_form(tmp_path, monkeypatch, group,
                                                            dop853):
    """Groups of 2 (three groups, rows reordered: the order is checked first) and of 100
    (one group, row order): each row's predictions equal log x0 - k t to 1e-8, and -2 log L
    its closed form. The groups are the stacked LSODA's (``EXACT_ROWS_DOP853`` off); with it
    on (the default with numba kernels) the rows go through the compiled DOP853, one by one,
    to the same closed form."""
    monkeypatch.setattr(_paths, "EXACT_GROUP_VALUES", group)
    monkeypatch.setattr(_paths, "EXACT_ROWS_DOP853", dop853)
    prob = Problem.from_config(config(tmp_path, x0="subject"))
    cols = prob.subject_cols
    names = [prob.names[c] for c in cols]
    rng = np.random.default_rng(3)
    designs, truth = [], []
    for i, (k, x0, last) in enumerate(ROWS):
        t = np.linspace(0.0, last, 7)
        f = np.log(x0) - k * t
        y = f + 0.05 * rng.standard_normal(t.size)
        designs.append(Design(f"S{i + 1}", t, np.zeros(t.size, int), y, np.zeros(t.size, int),
                              np.full(t.size, np.nan)))
        truth.append(f)
    theta = np.tile(prob.values, (len(ROWS), 1))
    for j, n in enumerate(names):
        theta[:, cols[j]] = [dict(k=k, x0=x0)[n] for k, x0, _ in ROWS]
    with _paths.exact_rows_by_dop853():         # as in the individual fit's polish
        ev = prob.evaluate(designs, np.arange(len(ROWS)), theta, cols, want_jac=False,
                           want_predictions=True)
    if group == 2:
        rr = np.repeat(np.arange(len(ROWS)), 7)
        tm = np.concatenate([d.time for d in designs])
        np.testing.assert_array_equal(_paths._span_order(len(ROWS), rr, tm), [3, 1, 5, 2, 4, 0])
    a = 0.05
    for i, (d, f) in enumerate(zip(designs, truth, strict=True)):
        np.testing.assert_allclose(ev.predictions[i], f, rtol=1e-8, atol=1e-9)
        r = (d.value - f) / a
        m2ll = float(r @ r) + d.value.size * (2.0 * np.log(a) + np.log(2.0 * np.pi))
        assert abs(ev.m2ll[i] - m2ll) < 1e-6 * max(1.0, abs(m2ll)), (i, ev.m2ll[i], m2ll)
    assert not ev.failed.any()
