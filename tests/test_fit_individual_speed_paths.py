"""The bookkeeping behind benchmarks/fit_individual.py's speed (issue 12) changes no number.

Checks, each against the plain computation it replaces:

* ``_rows.unique_keys`` against ``np.unique(..., return_inverse=True)`` (dense and sparse
  keys) and ``_rows.unique_rows`` (distinct rows in order of first appearance, bit for bit);
* ``_rows.span_groups``: a partition of the rows, never costlier than one group (in its
  cost model), contiguous in extent;
* the grid path with rows of very different spans (integrated in span groups, the states
  read from the distinct rows) gives every row exactly the residuals, Jacobian and
  information it gets evaluated alone, whose grid ends at its own last value;
* ``_rows.sum_rows`` against ``np.add.at`` (equal and unequal row lengths, empty rows) and
  ``_rows.pieces`` against ``np.split``.
"""

import importlib

import numpy as np
import pytest

from progression.fit import Design, Problem, parse_fit_config

_rows = importlib.import_module("progression.fit._rows")


@pytest.mark.parametrize("size, high", [(500, 2000), (50, 10**7)])
def test_unique_keys_equal_numpy_unique(size, high):
    key = np.random.default_rng(3).integers(0, high, size)
    uk, inv = _rows.unique_keys(key, high)
    ref_uk, ref_inv = np.unique(key, return_inverse=True)
    np.testing.assert_array_equal(uk, ref_uk)
    np.testing.assert_array_equal(inv, ref_inv)
    np.testing.assert_array_equal(uk[inv], key)


def test_unique_rows_first_appearance_and_bitwise_equality():
    table = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [3.0, 4.0 + 1e-15], [1.0, 2.0]])
    last = np.array([5, 5, 5, 5, 6])
    first, inv = _rows.unique_rows(table, last)
    # row 3 differs in the last bit and row 4 in its last node: both distinct
    np.testing.assert_array_equal(first, [0, 1, 3, 4])
    np.testing.assert_array_equal(inv, [0, 1, 0, 2, 3])
    np.testing.assert_array_equal(table[first][inv], table)
    rows, none = _rows.unique_rows(table[:2], last[:2])
    assert none is None and rows.tolist() == [0, 1]


def test_span_groups_partition_and_cost():
    rng = np.random.default_rng(5)
    last = np.concatenate([rng.integers(90, 110, 150), rng.integers(120, 130, 20)])
    groups = _rows.span_groups(last)
    assert 1 < len(groups) <= 3
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(last.size))
    cost = sum(g.size * (last[g].max() + 2) for g in groups) \
        + _rows.SPAN_GROUP_COST * len(groups)
    assert cost < last.size * (last.max() + 2) + _rows.SPAN_GROUP_COST
    # contiguous in extent: a group's rows all need fewer nodes than the next group's
    for a, b in zip(groups[:-1], groups[1:], strict=True):
        assert last[a].max() <= last[b].min()
    assert len(_rows.span_groups(np.array([100, 100, 100]))) == 1


CONFIG = """
[fit]
name = "spans"
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
[parameters.time_offset]
estimate = "subject"
value = 24.0
bounds = [0.0, 60.0]
[solver]
rtol = 1e-6
atol = 1e-9
grid_step = 0.5
"""


def test_grid_path_rows_equal_alone_and_in_span_groups():
    """24 subjects whose offsets spread the grid's extent over 25-85 months (three span
    groups), two of them with equal parameters (one distinct row): each row's evaluation
    equals, bit for bit, the row evaluated alone (one group, its own extent)."""
    problem = Problem.from_config(parse_fit_config(CONFIG, check_data=False))
    rng = np.random.default_rng(11)
    m = 24
    t = np.arange(0.0, 25.0, 4.0)
    designs = [Design(f"S{i}", np.tile(t, 2), np.repeat([0, 1], t.size),
                      np.concatenate([40 - t + rng.normal(0, 1, t.size),
                                      np.exp(4 + 0.01 * t)]),
                      np.zeros(2 * t.size, dtype=int), np.full(2 * t.size, np.nan))
               for i in range(m)]
    theta = np.tile(problem.values, (m, 1))
    cols = problem.subject_cols
    for name, values in (("kA", rng.uniform(0.02, 0.05, m)), ("eD", rng.uniform(0.2, 0.5, m)),
                         ("time_offset", np.concatenate([rng.uniform(1, 10, 12),
                                                         rng.uniform(50, 60, 12)]))):
        theta[:, problem.names.index(name)] = values
    theta[5] = theta[3]                                  # a duplicate row
    rows = np.arange(m)
    groups = _rows.span_groups(np.floor((theta[:, problem.names.index("time_offset")]
                                           + t[-1]) / 0.5).astype(int) + 1)
    assert len(groups) > 1
    together = problem.evaluate(designs, rows, theta, cols, want_info=True, accurate=False)
    for i in range(m):
        alone = problem.evaluate(designs, rows[i:i + 1], theta[i:i + 1], cols, want_info=True,
                                 accurate=False)
        np.testing.assert_array_equal(together.residuals[i], alone.residuals[0])
        np.testing.assert_array_equal(together.jacobians[i], alone.jacobians[0])
        np.testing.assert_array_equal(together.info[i], alone.info[0])
        assert together.m2ll[i] == alone.m2ll[0]


@pytest.mark.parametrize("counts", [[3, 3, 3, 3], [2, 0, 5, 1, 0, 4], [0, 0]])
def test_sum_rows_equals_add_at(counts):
    counts = np.array(counts)
    rr = np.repeat(np.arange(counts.size), counts)
    outer = np.random.default_rng(2).standard_normal((rr.size, 3, 3))
    ref = np.zeros((counts.size, 3, 3))
    np.add.at(ref, rr, outer)
    np.testing.assert_array_equal(_rows.sum_rows(outer, rr, counts.size), ref)
    # values not row after row: np.add.at itself
    perm = np.random.default_rng(4).permutation(rr.size)
    np.testing.assert_array_equal(_rows.sum_rows(outer[perm], rr[perm], counts.size),
                                  ref if rr.size < 2 else _add_at(outer[perm], rr[perm],
                                                                  counts.size))


def _add_at(outer, rr, R):
    out = np.zeros((R,) + outer.shape[1:])
    np.add.at(out, rr, outer)
    return out


@pytest.mark.parametrize("counts", [[3, 0, 2], [4], []])
def test_pieces_equal_np_split(counts):
    values = np.arange(float(sum(counts)) * 2).reshape(-1, 2)
    ref = np.split(values, np.cumsum(counts)[:-1].astype(int))
    got = _rows.pieces(values, np.array(counts, dtype=int))
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)
