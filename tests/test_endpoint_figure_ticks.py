"""The endpoint figure's x tick labels stay readable when scenarios barely differ.

One subject per scenario (a typical patient) whose endpoints differ by ~1e-3 of their size made
matplotlib place nine 7-digit labels (-13.3000, -13.2975, ...) over a 0.02-point span, and they
overlapped (examples/anti_il6_dose_response.py, typical patient). ``plot_endpoints`` now keeps
at least 2 % of the largest |value| as span and at most ~5 plain labels. The check: every pair
of neighbouring x tick labels inside a panel is apart on the drawn image; the same figure drawn
without the fix (``_readable_x`` a no-op) fails it, so the test can fail.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import progression.plots.scenarios as ps
from progression.plots import _pyplot


def _comp(values):
    """A minimal comparison: one subject per scenario, the endpoints given per scenario."""
    ep = SimpleNamespace(function="ALSFRS_R", times=(12.0,), slope_window=(0.0, 12.0),
                         markers=("NfL",), share="inflammatory_share")
    names = ["ALSFRS_R_change_12m", "ALSFRS_R_slope_0-12m", "NfL_change_pct_12m",
             "inflammatory_share_mean_0-12m"]
    subject = {s: {n: np.array([v[i]]) for i, n in enumerate(names)}
               for s, v in values.items()}
    return SimpleNamespace(endpoints=ep, subject_endpoints=subject, valid=np.array([True]),
                           reference="no treatment", model="als_systemic")


COMP = {"no treatment": (-13.3000, -1.1098, -9.545, 0.33405),
        "1 mg/kg every 4 weeks": (-13.2825, -1.1082, -9.677, 0.33312),
        "4 mg/kg every 4 weeks": (-13.2826, -1.1082, -9.678, 0.33312),
        "8 mg/kg every 4 weeks": (-13.2826, -1.1082, -9.678, 0.33313)}


def _labels(fig):
    """Per visible panel: (title, x tick labels shown, neighbouring pairs that overlap)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        lo, hi = sorted(ax.get_xlim())
        labels = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
                  if lo <= x <= hi and t.get_text()]
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        overlaps = sum(a.x1 > b.x0 for a, b in zip(boxes[:-1], boxes[1:], strict=True))
        out.append((ax.get_title(), len(labels), overlaps))
    return out


def _readable(fig):
    return all(n <= 6 and overlaps == 0 for _, n, overlaps in _labels(fig))


def test_near_equal_endpoints_keep_readable_x_labels():
    plt = _pyplot()
    fig = ps.plot_endpoints(_comp(COMP))
    assert _readable(fig), _labels(fig)
    for ax in fig.axes[:1]:
        lo, hi = ax.get_xlim()
        assert hi - lo >= 0.02 * 13.3 * (1 - 1e-9)     # at least 2 % of the largest |value|
        assert lo <= -13.3 and hi >= -13.2825          # the data stay inside
    plt.close(fig)


def test_the_check_fails_without_the_fix(monkeypatch):
    plt = _pyplot()
    monkeypatch.setattr(ps, "_readable_x", lambda ax: None)
    fig = ps.plot_endpoints(_comp(COMP))
    report = _labels(fig)
    assert any(overlaps for _, _, overlaps in report), report
    plt.close(fig)


def test_wide_endpoints_are_left_as_they_are():
    plt = _pyplot()
    wide = {"no treatment": (-20.0, -1.5, -10.0, 0.35), "drug": (-5.0, -0.4, -40.0, 0.10)}
    fig = ps.plot_endpoints(_comp(wide))
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo < -20.0 and -5.0 < hi < 0.0            # matplotlib's own margins, not widened
    assert _readable(fig), _labels(fig)
    plt.close(fig)
