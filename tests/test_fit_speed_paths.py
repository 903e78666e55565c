"""The grid and exact paths evaluate the model functions once per (row, time) point
(``progression.fit._paths.plain_outputs``), and take the observables' explicit time derivative
by differences only when the generated ``observe`` reads ``t``.

Checks: the grouping of values into points; the offset derivative of a model whose observable
reads ``t`` (``log(x) + 0.1 t``) differs from that of the same model without the term by
exactly the term's derivative, ``-0.1 / a`` in the residuals (additive error ``a``), on the grid
and the exact path; and values that share a time get the states of one point."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from progression.fit import Design, Problem, parse_fit_config

sys.path.insert(0, str(Path(__file__).parent))
from _decay_support import MODELS, A, config_text  # noqa: E402

_paths = importlib.import_module("progression.fit._paths")


def test_points_group_values_by_row_and_time():
    rng = np.random.default_rng(1)
    rr = np.repeat(np.arange(5), 12)
    tm = np.round(rng.uniform(0, 3, rr.size), 1)              # many repeated times
    first, point = _paths._points(rr, tm)
    np.testing.assert_array_equal(rr[first][point], rr)
    np.testing.assert_array_equal(tm[first][point], tm)
    pairs = set(zip(rr.tolist(), tm.tolist(), strict=True))
    assert first.size == len(pairs)
    empty = _paths._points(np.zeros(0, dtype=int), np.zeros(0))
    assert empty[0].size == 0 and empty[1].size == 0


def _problem(tmp_path, observable, outputs):
    """The decay fit with its observable replaced and the time offset estimated."""
    text = (MODELS / "decay.toml").read_text()
    (tmp_path / "decay.toml").write_text(
        text.replace('expression = "log(x)"', f'expression = "{observable}"'))
    cfg = parse_fit_config(
        config_text(sections='[parameters.time_offset]\nestimate = "subject"\n'
                             'value = 0.5\nbounds = [0.0, 3.0]\n',
                    solver=f'[solver]\nrtol = 1e-10\natol = 1e-12\noutputs = "{outputs}"\n'
                           'grid_step = 0.05\n'),
        base_dir=tmp_path, name="decay_timed", source=str(tmp_path / "decay_timed.toml"))
    return Problem.from_config(cfg)


@pytest.mark.parametrize("outputs", ["grid", "exact"])
def test_the_offset_derivative_includes_an_observable_that_reads_time(tmp_path, outputs):
    t = np.linspace(0.0, 2.0, 9)
    # two observables' worth of values at the same times: one point per time
    design = Design("S1", np.concatenate([t, t]), np.zeros(2 * t.size, dtype=int),
                    np.linspace(0.5, -0.5, 2 * t.size), np.zeros(2 * t.size, dtype=int),
                    np.full(2 * t.size, np.nan))
    out = {}
    for label, obs in (("plain", "log(x)"), ("timed", "log(x) + 0.1 * t")):
        sub = tmp_path / label
        sub.mkdir()
        prob = _problem(sub, obs, outputs)
        cols = prob.subject_cols
        theta = np.tile(prob.values, (1, 1))
        ev = prob.evaluate([design], np.array([0]), theta, cols, want_info=True)
        j = list(cols).index(prob.names.index("time_offset"))
        out[label] = (ev.residuals[0], ev.jacobians[0][:, j], prob, theta)
    r0, d0, _, theta = out["plain"]
    r1, d1, prob, _ = out["timed"]
    tm = design.time + theta[0, prob.names.index("time_offset")]
    np.testing.assert_allclose(r0 - r1, 0.1 * tm / A, rtol=1e-9, atol=1e-9)
    # d r / d offset = -(d f / d offset) / a: the t term adds -0.1 / a (difference quotient)
    np.testing.assert_allclose(d1 - d0, -0.1 / A, rtol=1e-6)
    # values at one time (the two copies) share one point's states: equal predictions
    np.testing.assert_allclose(r0[:t.size] - design.value[:t.size] / A,
                               r0[t.size:] - design.value[t.size:] / A, rtol=0, atol=1e-12)
