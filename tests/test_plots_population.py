"""Population-fit figures: each builds from small arrays, saves a PNG and draws its inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtri

from progression.fit.population import vpc
from progression.plots.population import (
    plot_dv_vs_pred,
    plot_individual_fits,
    plot_qq,
    plot_residuals,
    plot_traces,
    plot_vpc,
)

ROOT = Path(__file__).resolve().parents[1]
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dv_vs_pred_and_ipred(tmp_path):
    dv = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])  # NaN: padding
    pred = np.array([[1.5, 2.5, 9.0], [2.0, 3.0, 4.0]])
    ipred = dv + 0.1
    fig = plot_dv_vs_pred(dv, pred, ipred, name="ALSFRS-R", unit="points",
                          path=tmp_path / "gof.png")
    assert _png(tmp_path / "gof.png") and len(fig.axes) == 2
    a, b = fig.axes
    np.testing.assert_array_equal(a.collections[0].get_offsets(),
                                  np.c_[[1.5, 2.5, 2.0, 3.0, 4.0], [1, 2, 3, 4, 5.0]])
    np.testing.assert_array_equal(b.collections[0].get_offsets()[:, 0],
                                  [1.1, 2.1, 3.1, 4.1, 5.1])
    x, y = a.lines[0].get_data()  # identity line
    assert list(x) == list(y)
    assert a.get_xlabel() == "PRED of ALSFRS-R (points)"
    assert b.get_ylabel() == "observed ALSFRS-R (points)"
    logfig = plot_dv_vs_pred([1.0, -1.0, 10.0], [2.0, 1.0, 8.0], log=True)
    assert logfig.axes[0].get_xscale() == "log"
    assert logfig.axes[0].collections[0].get_offsets().shape == (2, 2)  # -1 left out


def test_dv_vs_pred_log_axes_read_plainly():
    """Log axes within one decade label their ticks as plain numbers (not 4 x 10^0), a wide
    range its decades (0.1, 1, 10); a long unit goes on a second line, and the titles and
    labels stay inside the figure."""
    rng = np.random.default_rng(1)
    pred = 5.3 + 0.2 * rng.standard_normal(200)
    dv = pred * np.exp(0.15 * rng.standard_normal(200))
    fig = plot_dv_vs_pred(dv, pred, dv, log=True, name="Treg_pct", unit="% of CD4+ T cells")
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.yaxis.get_ticklabels(minor=True) if t.get_text()]
    assert ticks and all(float(t) == float(f"{float(t):g}") for t in ticks), ticks
    assert ax.get_ylabel() == "observed Treg_pct\n(% of CD4+ T cells)"
    for a in fig.axes:
        for text in (a.title, a.xaxis.label, a.yaxis.label):
            box = text.get_window_extent()
            assert box.y0 >= 0 and box.y1 <= fig.bbox.height and box.x0 >= 0, text.get_text()
    wide = plot_dv_vs_pred([0.05, 2.0, 30.0], [0.04, 2.5, 20.0], log=True, name="CRP",
                           unit="mg/L")
    wide.canvas.draw()
    labels = {t.get_text() for t in wide.axes[0].xaxis.get_ticklabels() if t.get_text()}
    assert {"0.1", "1", "10"} <= labels, labels
    assert wide.axes[0].get_xlabel() == "PRED of CRP (mg/L)"


def test_censored_values_drawn_open_at_the_limit(tmp_path):
    """Censored values (DV = the limit) are a second, open-marker scatter named in the legend;
    in the individual fits a second marker line; the residual figure says how many have none."""
    dv = np.array([[8.0, 4.0, 1.0], [9.0, 1.0, np.nan]])
    cens = np.array([[0, 0, 1], [0, 1, np.nan]])
    pred = np.array([[7.0, 5.0, 0.5], [8.0, 0.7, np.nan]])
    fig = plot_dv_vs_pred(dv, pred, pred, cens=cens, path=tmp_path / "c.png")
    a = fig.axes[0]
    np.testing.assert_array_equal(a.collections[0].get_offsets(), np.c_[[7.0, 5, 8], [8.0, 4, 9]])
    np.testing.assert_array_equal(a.collections[1].get_offsets(), np.c_[[0.5, 0.7], [1.0, 1]])
    assert a.collections[1].get_facecolors().size == 0  # open markers
    assert any("censored (2), drawn at the limit" in t.get_text()
               for t in fig.legends[0].get_texts())
    t = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, np.nan]])
    fig = plot_individual_fits(t, dv, pred, cens=cens, path=tmp_path / "i.png")
    x, y = fig.axes[0].lines[1].get_data()
    assert list(x) == [2.0] and list(y) == [1.0]
    assert fig.axes[0].lines[1].get_markerfacecolor() == "none"
    assert "censored, at the limit" in [t.get_text() for t in fig.legends[0].get_texts()]
    fig = plot_residuals([0.5, np.nan], [0.0, 1.0], [1.0, 2.0], n_censored=1)
    assert fig.legends[0].get_texts()[0].get_text() == \
        "CWRES (1 censored values have none: not drawn)"
    assert _png(tmp_path / "c.png") and _png(tmp_path / "i.png")


def test_residuals_against_time_and_pred(tmp_path):
    res, t, p = [0.5, -1.0, np.nan, 2.5], [0.0, 1.0, 2.0, 3.0], [10.0, 9.0, 8.0, 7.0]
    fig = plot_residuals(res, t, p, time_unit="month", path=tmp_path / "r.png")
    assert _png(tmp_path / "r.png")
    a, b = fig.axes
    np.testing.assert_array_equal(a.collections[0].get_offsets(),
                                  np.c_[[0.0, 1.0, 3.0], [0.5, -1.0, 2.5]])
    np.testing.assert_array_equal(b.collections[0].get_offsets()[:, 0], [10.0, 9.0, 7.0])
    assert a.get_xlabel() == "time (months)"
    assert sorted(line.get_ydata()[0] for line in a.lines) == [-1.96, 0.0, 1.96]


def test_qq_points_are_normal_quantiles_against_sorted_values(tmp_path):
    v = np.array([0.3, -1.2, 2.0, np.nan, 0.0])
    fig = plot_qq({"CWRES": v, "NPDE": [1.0, -1.0]}, path=tmp_path / "qq.png")
    assert _png(tmp_path / "qq.png") and len(fig.axes) == 2
    x, y = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(x, ndtri((np.arange(1, 5) - 0.5) / 4))
    np.testing.assert_array_equal(y, [-1.2, 0.0, 0.3, 2.0])
    assert fig.axes[1].get_ylabel() == "NPDE quantiles"


def test_vpc_figure_draws_the_percentiles_and_bands(tmp_path):
    rng = np.random.default_rng(0)
    t = np.repeat([0.0, 1.0, 2.0], 20)
    y = 10 - 3 * t + rng.normal(size=t.size)
    sims = 10 - 3 * t + rng.normal(size=(50, t.size))
    v = vpc(t, y, sims, edges=[-0.5, 0.5, 1.5, 2.5], lloq=5.0)
    fig = plot_vpc(v, name="score", unit="points", time_unit="month",
                   path=tmp_path / "vpc.png")
    assert _png(tmp_path / "vpc.png") and len(fig.axes) == 2  # main + BLQ panel
    main, blq = fig.axes
    observed = [ln for ln in main.lines if ln.get_label().startswith("observed")]
    assert len(observed) == 3
    for k, ln in enumerate(observed):
        np.testing.assert_array_equal(ln.get_xdata(), v.x)
        np.testing.assert_array_equal(ln.get_ydata(), v.observed[:, k])
    # each band is a polygon through (x, hi) and (x, lo)
    band = main.collections[0].get_paths()[0].vertices
    ok = np.isfinite(v.sim_lo[:, 0])
    for x, lo, hi in zip(v.x[ok], v.sim_lo[ok, 0], v.sim_hi[ok, 0], strict=True):
        assert any(np.allclose(p, (x, lo)) for p in band)
        assert any(np.allclose(p, (x, hi)) for p in band)
    np.testing.assert_array_equal(blq.lines[0].get_ydata(), v.blq_observed)
    assert blq.get_xlabel() == "time (months)"
    assert main.get_ylabel() == "score (points)"
    nocens = plot_vpc(vpc(t, y, sims, n_bins=3, pred=10 - 3 * t + 5))
    assert len(nocens.axes) == 1
    assert nocens.axes[0].get_title().startswith("Prediction-corrected VPC")
    # a prediction-corrected VPC with a long unit: the y label stays inside the figure
    pc = plot_vpc(vpc(t, y, sims, n_bins=3, pred=10 - 3 * t + 5), name="log Treg_pct",
                  unit="% of CD4+ T cells")
    pc.canvas.draw()
    box = pc.axes[0].yaxis.label.get_window_extent()
    assert box.y0 >= 0 and box.y1 <= pc.bbox.height and box.x0 >= 0
    assert pc.axes[0].get_ylabel() == "prediction-corrected\nlog Treg_pct (% of CD4+ T cells)"
    # with end events the legend says what the simulations lost, per bin
    ended = np.zeros(sims.shape, dtype=bool)
    ended[:, t == 2.0] = rng.random((50, 20)) < 0.4
    v = vpc(t, y, np.where(ended, np.nan, sims), edges=[-0.5, 0.5, 1.5, 2.5], ended=ended)
    fig = plot_vpc(v, end_events=("death",))
    text = [x.get_text().replace("\n", " ") for x in fig.legends[0].get_texts()]
    lo, hi = 100 * v.sim_ended.min(), 100 * v.sim_ended.max()
    assert (f"simulated values after the simulated patient's death left out: "
            f"{lo:.0f}-{hi:.0f} % per bin") in text
    # a long event name is wrapped: the legend stays inside the figure
    fig = plot_vpc(v, end_events=("respiratory_failure",))
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_traces_by_iteration(tmp_path):
    tr = {"theta1": [1.0, 2.0, 1.5], "omega(1,1)": [0.5, 0.4, 0.3]}
    fig = plot_traces(tr, ofv=[10.0, 8.0, 7.5], smoothing_start=1, path=tmp_path / "t.png")
    assert _png(tmp_path / "t.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["theta1", "omega(1,1)", "OFV"]
    np.testing.assert_array_equal(fig.axes[2].lines[0].get_ydata(), [10.0, 8.0, 7.5])
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [0, 1, 2])


def test_traces_with_an_objective_known_at_the_end_only(tmp_path):
    # SAEM: the importance-sampling OFV exists at the last iteration only; a line through one
    # point draws nothing, so the value is marked and labelled
    ofv = [np.nan] * 9 + [2490.78]
    fig = plot_traces({"theta1": np.linspace(1.0, 2.0, 10)}, ofv=ofv,
                      iterations=np.arange(10), path=tmp_path / "t.png")
    ax = fig.axes[1]
    assert ax.get_title() == "OFV"
    (marker,) = ax.lines
    assert marker.get_marker() == "o"
    np.testing.assert_array_equal(marker.get_xdata(), [9])
    np.testing.assert_array_equal(marker.get_ydata(), [2490.78])
    assert [t.get_text() for t in ax.texts] == ["2490.78"]


def test_individual_fits_per_subject(tmp_path):
    time = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, np.nan]])  # unsorted; NaN: padding
    dv = np.array([[5.0, 3.0, 4.0], [1.0, 2.0, np.nan]])
    ipred, pred = dv + 0.5, dv - 0.5
    fig = plot_individual_fits(time, dv, ipred, pred, ids=["A", "B"], time_unit="month",
                               name="score", unit="points", path=tmp_path / "ind.png")
    assert _png(tmp_path / "ind.png")
    a, b = [ax for ax in fig.axes if ax.get_visible()]
    assert (a.get_title(), b.get_title()) == ("A", "B")
    obs, ip, pr = a.lines
    np.testing.assert_array_equal(obs.get_xdata(), [2.0, 0.0, 1.0])
    np.testing.assert_array_equal(obs.get_ydata(), [5.0, 3.0, 4.0])
    np.testing.assert_array_equal(ip.get_xdata(), [0.0, 1.0, 2.0])  # drawn in time order
    np.testing.assert_array_equal(ip.get_ydata(), [3.5, 4.5, 5.5])
    np.testing.assert_array_equal(pr.get_ydata(), [2.5, 3.5, 4.5])
    np.testing.assert_array_equal(b.lines[0].get_xdata(), [0.0, 1.0])
    assert a.get_xlabel() == "time (months)" and a.get_ylabel() == "score (points)"
    # per-subject lists and no PRED
    fig = plot_individual_fits([[0.0, 1.0]], [[1.0, 2.0]], [[1.1, 2.1]])
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_title() == "subject 0"


def test_importing_the_module_does_not_import_matplotlib():
    code = ("import sys, progression.plots.population; "
            "print(any(m.startswith('matplotlib') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_bootstrap_figure():
    """One histogram per parameter with the estimate (solid), the percentile interval's ends
    (dashed) and the Wald interval's (dotted) at their values; failed replicates left out."""
    from progression.fit._population_bootstrap import PopulationBootstrap
    from progression.plots.population import plot_bootstrap

    rng = np.random.default_rng(3)
    samples = np.c_[rng.normal(2.0, 0.2, 50), rng.lognormal(-1.0, 0.3, 50)]
    samples[4] = np.nan
    boot = PopulationBootstrap(names=("CL", "omega^2 CL"), estimates=np.array([2.0, 0.37]),
                               samples=samples, converged=np.ones(50, bool), seed=1,
                               level=0.95, estimator="focei")
    wald = {"CL": (1.6, 2.4), "omega^2 CL": (0.2, 0.7)}
    fig = plot_bootstrap(boot, wald=wald)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["CL", "omega^2 CL"]
    ci = boot.intervals()
    for ax, name, est in zip(axes, boot.names, boot.estimates, strict=True):
        xs = {ln.get_linestyle(): [] for ln in ax.lines}
        for ln in ax.lines:
            xs[ln.get_linestyle()].append(ln.get_xdata()[0])
        assert xs["-"] == [est]
        np.testing.assert_allclose(xs["--"], ci[name])
        np.testing.assert_allclose(xs[":"], wald[name])
        assert sum(p.get_height() for p in ax.patches) == 49       # the NaN row left out
    assert "49 of 50 replicates" in fig._suptitle.get_text()
