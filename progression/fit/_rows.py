"""Row bookkeeping of the batched likelihood evaluations, vectorised (split from
:mod:`progression.fit._paths` and :mod:`progression.fit.problem` for size): distinct keys and
rows, the grid path's span groups, per-row sums and pieces. Each gives the numbers of the
plain numpy code it replaces (tests/test_fit_individual_speed_paths.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPAN_GROUP_COST", "span_groups", "unique_keys", "unique_rows", "sum_rows",
           "pieces"]


#: Cost of one more group of :func:`span_groups` (a solve and a sensitivity pass: Python
#: and thread start-up), in row-nodes (one row integrated over one grid node, ~4 us).
SPAN_GROUP_COST = 400


def span_groups(last_node):
    """Rows (indices into ``last_node`` (m,)) in up to three groups of similar extent, each to
    be integrated on the grid up to its largest ``last_node + 1``: the split of the rows
    sorted by extent that minimises the row-nodes integrated plus :data:`SPAN_GROUP_COST`
    per group. A row's nodes are the same on any grid that covers them (per-subject steps),
    so the grouping changes the cost, not the numbers."""
    m = last_node.size
    order = np.argsort(last_node, kind="stable")
    need = last_node[order].astype(float) + 2.0            # nodes of each row, sorted
    best, cuts = m * need[-1] + SPAN_GROUP_COST, ()
    if m >= 8:
        i = np.arange(1, m)
        # two groups: [0, i) and [i, m)
        two = i * need[i - 1] + (m - i) * need[-1] + 2 * SPAN_GROUP_COST
        a = int(np.argmin(two))
        if two[a] < best:
            best, cuts = float(two[a]), (int(i[a]),)
        # three groups: [0, i), [i, j), [j, m)
        ii, jj = np.meshgrid(i, i, indexing="ij")
        ok = ii < jj
        three = np.where(ok, ii * need[ii - 1] + (jj - ii) * need[jj - 1]
                         + (m - jj) * need[-1] + 3 * SPAN_GROUP_COST, np.inf)
        b = int(np.argmin(three))
        if three.flat[b] < best:
            cuts = (int(ii.flat[b]), int(jj.flat[b]))
    return [np.sort(g) for g in np.split(order, cuts)]


def unique_keys(key, size):
    """``np.unique(key, return_inverse=True)`` for integer keys in ``[0, size)``, by a mark
    table (the keys of an evaluation's (row, node) pairs: a few thousand below ~10^5; a sort
    costs several times more). Falls back to ``np.unique`` for a sparse key range."""
    key = np.asarray(key, dtype=np.int64)
    if key.size == 0 or size > 16 * key.size + 4096:
        return np.unique(key, return_inverse=True)
    mark = np.zeros(size, dtype=bool)
    mark[key] = True
    uk = np.flatnonzero(mark)
    rank = np.empty(size, dtype=np.int64)
    rank[uk] = np.arange(uk.size)
    return uk, rank[key]


def unique_rows(table, last_node):
    """Rows of ``table`` (R, P) with their ``last_node`` (R,) that are distinct, in order of
    first appearance, and for each row the position of its copy among them; ``(arange(R),
    None)`` when every row is distinct (nothing to expand)."""
    R = table.shape[0]
    if R < 2:
        return np.arange(R), None
    key = np.ascontiguousarray(np.column_stack([table, np.asarray(last_node, dtype=float)]))
    # rows equal bit for bit (a dict of their bytes: ~20x faster than np.unique(axis=0) on a
    # few hundred rows; bitwise equality never merges rows that could integrate differently)
    seen: dict = {}
    inv = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in key], dtype=int)
    if len(seen) == R:
        return np.arange(R), None
    first = np.full(len(seen), R, dtype=int)
    np.minimum.at(first, inv, np.arange(R))
    return first, inv


def sum_rows(values, rows, R):
    """``out[r] = sum of values[i] with rows[i] == r`` (out (R, ...)), added in the order of
    the values as ``np.add.at`` does (the same numbers). With the values row after row
    (``rows`` non-decreasing, Problem.evaluate's layout) the k-th value of every row is added
    at once, k = 0, 1, ...: ~1/4 of np.add.at's cost at 200 rows of 39 values."""
    out = np.zeros((R,) + values.shape[1:])
    if rows.size == 0:
        return out
    if not np.all(rows[1:] >= rows[:-1]):
        np.add.at(out, rows, values)
        return out
    n_r = np.bincount(rows, minlength=R)
    first = np.cumsum(n_r) - n_r
    same = bool(np.all(n_r == n_r[0]))
    for k in range(int(n_r.max())):
        if same:
            out += values[first + k]
        else:
            live = np.nonzero(n_r > k)[0]
            out[live] += values[first[live] + k]
    return out


def pieces(values, counts):
    """``np.split(values, np.cumsum(counts)[:-1])``, the same views, by slicing (~1/3 of the
    cost at 200 rows)."""
    if len(counts) == 0:
        return np.split(values, [])
    ends = np.cumsum(counts).tolist()
    return [values[e - c:e] for e, c in zip(ends, np.asarray(counts).tolist(), strict=True)]
