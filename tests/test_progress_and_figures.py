"""Progress bars, the process executor, and figures a modeller can read.

Figures are checked through matplotlib's objects (labels, tick texts, legend and axes boxes,
plotted data), not pixels.
"""

import io
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import progression as pg
import progression.interventions as iv
from progression.parallel import (
    InProcess,
    IterationLog,
    ProcessPool,
    Progress,
    executor,
    report,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FIT = ROOT / "fits" / "als_synthetic_individual"


# ============================================================================ progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_to_a_log_writes_whole_lines_at_a_bounded_rate():
    log = io.StringIO()
    with Progress("fit demo", 1000, stream=log) as bar:
        for done in range(1, 1001):
            bar.update(done)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 2 <= len(lines) <= 11, lines            # one per tenth (and the end), not 1000
    assert lines[-1].startswith("fit demo: 1000/1000 subjects (100%)")
    assert all(line.startswith("fit demo: ") for line in lines)


def test_progress_in_a_log_writes_a_heartbeat_while_nothing_finishes():
    log = io.StringIO()
    bar = Progress("profiles demo", 10, stream=log, log_seconds=0.2)
    deadline = time.monotonic() + 5.0
    while "0/10" not in log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("profiles demo: 0/10 subjects (0%)"), lines


def test_quiet_progress_writes_nothing_and_starts_no_thread():
    log, term = io.StringIO(), Terminal()
    before = threading.active_count()
    for stream in (log, term):
        bar = Progress("fit demo", 5, stream=stream, enabled=False)
        assert threading.active_count() == before
        bar.update(3)
        bar.partial(1.5)
        bar.close()
    assert log.getvalue() == "" and term.getvalue() == ""


def test_progress_on_a_terminal_redraws_one_line_and_counts_partial_work():
    term = Terminal()
    bar = Progress("fit demo", 200, stream=term)
    bar.update(100)
    bar.partial(50)                                 # half of the running items' subjects
    assert bar.shown == 150
    bar.partial(500)                                # never above the total
    assert bar.shown == 200
    bar.update(200)
    bar.close()
    text = term.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and "\r" in text
    assert "200/200" in text.split("\r")[-1]


def _reporting_item(k, sleep):
    report(1)
    time.sleep(sleep)
    report(2)
    return k * k, os.getpid(), os.environ.get("OPENBLAS_NUM_THREADS")


def test_in_process_map_passes_partial_reports_and_keeps_order():
    seen = []
    done = []
    out = InProcess().map_items(_reporting_item, [(k, 0.0) for k in range(3)],
                          progress=lambda n, r: done.append(n), partial=seen.append)
    assert [r[0] for r in out] == [0, 1, 4]
    assert done == [1, 2, 3]
    assert seen[:2] == [1, 2] and seen[-1] == 0     # partial units drop as items finish


def test_process_pool_reports_partial_work_runs_blas_single_threaded_and_keeps_order():
    seen = []
    pool = ProcessPool(2)                            # whatever the CPUs of the test machine
    try:
        out = pool.map_items(_reporting_item, [(k, 1.0) for k in range(3)], partial=seen.append)
    finally:
        pool.close()
    assert [r[0] for r in out] == [0, 1, 4]
    assert {r[1] for r in out} != {os.getpid()}, "items ran in worker processes"
    assert {r[2] for r in out} == {"1"}, "workers limit BLAS threads"
    assert any(v > 0 for v in seen), "a running item's report reached the parent"


def test_process_pool_runs_a_single_item_in_process_without_starting_workers():
    pool = ProcessPool(2)
    try:
        with pytest.warns(UserWarning, match="one chunk .* ran in this process"):
            (out,) = pool.map_items(_reporting_item, [(3, 0.0)])
        assert out[0] == 9 and out[1] == os.getpid()
        assert pool._pool is None
    finally:
        pool.close()


def test_fit_progress_in_a_log_and_quiet(tmp_path, capsys):
    """The fit command's progress: whole lines on a non-terminal stderr; nothing with
    --quiet (same results either way)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _fit_support import config_text, run_cli, simulate_cohort

    cohort, _ = simulate_cohort(1, seed=3, visits=np.arange(0.0, 13.0, 3.0))
    pg.write_cohort(cohort, tmp_path / "data.csv", format="long")
    (tmp_path / "demo.toml").write_text(config_text("data.csv",
                                                    extra="[output]\nfigures = false\n"))
    code, _ = run_cli(str(tmp_path / "demo.toml"), "--out", str(tmp_path / "a"))
    err = capsys.readouterr().err
    assert code == 0
    progress = [line for line in err.splitlines() if line.startswith("fit ")]
    assert progress and "1/1 subjects (100%)" in progress[-1]
    assert "\r" not in err
    code, _ = run_cli(str(tmp_path / "demo.toml"), "--out", str(tmp_path / "b"), "--quiet")
    err = capsys.readouterr().err
    assert code == 0
    assert not [line for line in err.splitlines() if "subjects (" in line]


def test_iteration_log_writes_throttled_lines_and_the_last_one():
    """One line per outer iteration at most every `seconds` (the first always), the last
    iteration's on close; nothing when disabled."""
    out = io.StringIO()
    log = IterationLog("fit demo (laplace)", stream=out, seconds=3600.0)
    for k in range(1, 6):
        log.update(k, 100.0 - k, 2 * k)
    log.close()
    lines = out.getvalue().splitlines()
    assert lines == ["fit demo (laplace): iteration 1, OFV 99.0000, 2 evaluations, "
                     "0 min 00 s elapsed",
                     "fit demo (laplace): iteration 5, OFV 95.0000, 10 evaluations, "
                     "0 min 00 s elapsed"]
    every = io.StringIO()
    log = IterationLog("x", stream=every, seconds=0.0)
    for k in range(3):
        log.update(k, 1.0, k)
    log.close()
    assert len(every.getvalue().splitlines()) == 3
    quiet = io.StringIO()
    log = IterationLog("x", enabled=False, stream=quiet, seconds=0.0)
    log.update(1, 1.0, 1)
    log.close()
    assert quiet.getvalue() == ""


def test_population_fit_progress_lines(tmp_path, capsys):
    """`progression fit` of a FOCE-family config: iteration lines on stderr, none with
    --quiet."""
    from progression.cli import main

    text = (ROOT / "configs" / "theoph_population.toml").read_text().replace(
        '"../data/examples/theoph.csv"', repr(str(ROOT / "data/examples/theoph.csv")))
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    assert main(["fit", str(cfg), "--out", str(tmp_path / "a"), "--no-figures"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("fit theoph_population (focei)")]
    assert lines and "OFV 116.80" in lines[-1] and int(lines[-1].split()[4][:-1]) > 5
    assert main(["fit", str(cfg), "--out", str(tmp_path / "b"), "--no-figures",
                 "--quiet"]) == 0
    assert "iteration" not in capsys.readouterr().err


def test_saem_fit_progress_lines(tmp_path, capsys):
    """`progression fit` of a SAEM config: the first iteration's line (phase and the most
    exploration iterations), the importance sampling's and the sandwich pass's lines on
    stderr; none with --quiet."""
    from progression.cli import main

    text = (ROOT / "configs" / "theoph_population_saem.toml").read_text().replace(
        '"../data/examples/theoph.csv"', repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace("is_samples = 1000\n", "").replace(
        "[estimator]\n", '[estimator]\nsaem_covariance = "sandwich"\nsaem_exploration = 40\n'
        "saem_smoothing = 40\nis_samples = 100\n", 1)
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    assert main(["fit", str(cfg), "--out", str(tmp_path / "a"), "--no-figures"]) == 0
    label = "fit theoph_population_saem (saem): "
    lines = [ln[len(label):] for ln in capsys.readouterr().err.splitlines()
             if ln.startswith(label)]
    assert lines[0].startswith("iteration 1 (exploration, at most 40), 0 min ")
    assert any(ln.startswith("iteration 80: importance sampling (100 draws per subject)")
               for ln in lines), lines
    assert lines[-1].startswith("covariance step: the sandwich's pass of the chains"), lines
    assert main(["fit", str(cfg), "--out", str(tmp_path / "b"), "--no-figures",
                 "--quiet"]) == 0
    assert label not in capsys.readouterr().err


# ============================================================================ figure helpers


def _pyplot():
    from progression.plots import _pyplot as get

    return get()


def _labelled_ticks(ax, which, draw=True):
    """Tick labels with text, at ticks inside the axis range, after drawing."""
    if draw:
        ax.figure.canvas.draw()
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs(),
                                         strict=True)
            if t.get_text() and lo <= v <= hi]


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _legends(fig):
    out = list(fig.legends)
    for sub in getattr(fig, "subfigs", []):
        out += _legends(sub)
    return out + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _assert_legends_clear_of_axes(fig):
    """Every legend lies outside every visible axes (it covers no curve) and in the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = _legends(fig)
    assert legends, "a legend is drawn"
    page = fig.bbox
    for leg in legends:
        box = leg.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1, "legend inside the figure"
        assert box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1
        for ax in fig.axes:
            if ax.get_visible():
                assert not _boxes_overlap(box, ax.get_window_extent(renderer)), \
                    f"legend covers the panel {ax.get_title()!r}"


@pytest.mark.parametrize("lo, hi", [(27.5, 46.0), (160.0, 165.5), (0.3, 60.0), (40.0, 150.0),
                                    (1e-3, 1e6), (1.1, 12.0), (120.0, 330.0)])
def test_log_axes_have_at_least_three_tick_labels_whatever_the_range(lo, hi):
    from progression.fit.report import _log_axis

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 2.4))
    try:
        ax.plot([0.0, 1.0], [lo, hi])
        _log_axis(ax, "y")
        labels = _labelled_ticks(ax, "y")
        assert len(labels) >= 3, labels
        assert len(labels) <= 8, labels                       # and not a crowd of them
        assert all("10^" not in s and "times" not in s for s in labels)
        assert ax.get_yscale() == "log"
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def fit_figures():
    """The shipped fit's figures as objects (the report's saver captures them)."""
    from progression.fit import load_fit
    from progression.fit import report as rep

    result = load_fit(SHIPPED_FIT)
    figs = {}
    plt = _pyplot()

    def keep(fig, path, plt_):
        fig.canvas.draw()
        figs[Path(path).name] = fig
        return path

    original = rep._save
    rep._save = keep
    try:
        plt_ = _pyplot()
        rep._individual_fits(result, Path("/nonexistent"), plt_)
        rep._observed_vs_predicted(result, Path("/nonexistent"), plt_)
        rep._residuals(result, Path("/nonexistent"), plt_)
        rep._parameters(result, Path("/nonexistent"), plt_)
    finally:
        rep._save = original
    yield result, figs
    plt.close("all")


def test_fit_panels_on_log_scales_have_tick_labels_and_units(fit_figures):
    result, figs = fit_figures
    for obs, unit in (("NfL", "pg/mL"), ("CRP", "mg/L")):
        fig = figs[f"fits_{obs}.png"]
        assert f"({unit})" in fig.get_supylabel()
        assert "months" in fig.get_supxlabel()
        panels = [ax for ax in fig.axes if ax.axison]
        assert len(panels) == min(16, result.n_subjects)
        for ax in panels:
            assert ax.get_yscale() == "log"
            assert len(_labelled_ticks(ax, "y", draw=False)) >= 3, ax.get_title()
    assert "(points (0-48))" in figs["fits_ALSFRS_R.png"].get_supylabel()


def test_every_fit_figure_axis_is_labelled_with_units(fit_figures):
    _, figs = fit_figures
    for name in ("observed_vs_predicted.png", "residuals.png", "parameters.png"):
        for ax in figs[name].axes:
            if not ax.axison:
                continue
            assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())
            for which in ("x", "y"):
                if (ax.get_xscale() if which == "x" else ax.get_yscale()) == "log":
                    assert len(_labelled_ticks(ax, which, draw=False)) >= 3, (name,
                                                                              ax.get_title())
    ovp = figs["observed_vs_predicted.png"].axes
    assert [ax.get_ylabel() for ax in ovp] == ["observed (points (0-48))", "observed (pg/mL)",
                                               "observed (mg/L)"]
    params = [ax for ax in figs["parameters.png"].axes if ax.axison]
    assert {ax.get_ylabel() for ax in params} == {"subjects"}
    xlabels = {ax.get_xlabel() for ax in params}
    assert {"kA (1/month)", "time_offset (months)"} <= xlabels


# ============================================================================ simulations


def test_plotting_a_model_without_events_emits_no_warning(tmp_path):
    from progression.plots import plot_simulation

    plt = _pyplot()
    sim = pg.simulate("d50", None, np.linspace(0.0, 12.0, 25))
    assert not sim.events
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_simulation(sim)
        fig.savefig(tmp_path / "d50.png", dpi=50)
    assert not fig.legends and all(ax.get_legend() is None for ax in fig.axes)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "ALSFRS_R (points (0-48))" and ax.get_xlabel() == "time (months)"
    plt.close(fig)


def test_event_legend_of_a_simulation_sits_outside_the_panels():
    from progression.plots import plot_simulation

    plt = _pyplot()
    sim = pg.simulate("als_systemic", None, np.linspace(0.0, 120.0, 121))
    assert np.isfinite(sim.event_time("death")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_simulation(sim)
    _assert_legends_clear_of_axes(fig)
    assert any("death" in t.get_text() for leg in fig.legends for t in leg.get_texts())
    plt.close(fig)


# ============================================================================ scenarios


ARMS = {
    "no treatment": [],
    "low-dose IL-2 (MIROCALS)": [iv.ld_il2()],
    "low-dose IL-2 1 MIU (IMODALS, 3 cycles)": [iv.ld_il2(dose_miu=1.0, cycles=3)],
    "tocilizumab (continued)": [iv.tocilizumab(continued=True)],
    "masitinib": [iv.masitinib()],
    "fingolimod": [iv.fingolimod()],
    "IL-2 + tocilizumab": [iv.ld_il2(), iv.tocilizumab(continued=True)],
    "half glial toxicity from 3 months": [iv.Intervention("kA", scale=0.5, start=3.0)],
}


@pytest.fixture(scope="module")
def comparison():
    from progression.scenarios import VirtualPopulation, compare

    pop = VirtualPopulation.sample("als_systemic", 6, seed=2, delay=(6.0, 18.0))
    return compare(pop, ARMS, horizon=6.0, step=0.25)


def test_plotting_grid_contains_every_switch_time_and_a_time_just_before(comparison):
    from progression.interventions import to_switches
    from progression.model import load_model

    model = load_model("als_systemic")
    name = "low-dose IL-2 (MIROCALS)"
    switches = sorted({s.time for s in to_switches(model, ARMS[name], until=6.0)})
    inside = [t for t in switches if 0 < t < 6.0]
    assert len(inside) >= 8                        # 5 days on, every 28 days
    fine = comparison.plot_series[name]["times"]
    for t in inside:
        assert np.any(fine == t), t
        before = fine[fine < t]
        assert before.size and t - before.max() < 1e-4, t
    # ... and the figure draws on it
    plt = _pyplot()
    fig = comparison.plot_trajectories()
    drawn = [line.get_xdata() for ax in fig.axes for line in ax.get_lines()
             if len(line.get_xdata()) == fine.size]
    assert drawn and np.array_equal(drawn[0], fine)
    plt.close(fig)


def test_endpoints_and_tables_stay_on_the_output_step(comparison):
    tau = comparison.times
    assert np.allclose(np.diff(tau[tau < 6.0 - 1e-9]), 0.25)
    for scen, obs in comparison.trajectories.items():
        for Y in obs.values():
            assert Y.shape[1] == tau.size
        j = int(np.argmin(np.abs(tau - 6.0)))
        got = comparison.subject_endpoints[scen]["ALSFRS_R_change_6m"]
        want = obs["ALSFRS_R"][:, j] - comparison.baseline["ALSFRS_R"]
        ok = comparison.valid
        np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-12)
    rows = comparison.trajectory_rows()
    assert len(rows) == len(comparison.trajectories) * len(
        next(iter(comparison.trajectories.values()))) * tau.size


def test_trajectory_figure_limits_arms_per_panel_and_keeps_legends_off_the_curves(comparison):
    from progression.scenarios import ARMS_PER_PANEL

    plt = _pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = comparison.plot_trajectories()
    n_obs = len(next(iter(comparison.trajectories.values())))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == n_obs * 2                   # 7 arms + reference -> 2 columns
    for ax in panels:
        medians = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        assert 2 <= len(medians) <= ARMS_PER_PANEL + 1
        assert ax.get_ylabel() or ax.get_subplotspec().colspan.start == 0
    labelled = [ax for ax in panels if ax.get_ylabel()]
    assert any("(pg/mL)" in ax.get_ylabel() for ax in labelled)
    _assert_legends_clear_of_axes(fig)
    names = {t.get_text().replace("\n", " ") for leg in _legends(fig) for t in leg.get_texts()}
    assert set(ARMS) <= names
    plt.close(fig)


def test_endpoint_figure_shows_every_scenario_name_in_full(comparison):
    plt = _pyplot()
    fig = comparison.plot_endpoints()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    first = fig.axes[0]
    shown = [t.get_text().replace("\n", " ") for t in first.get_yticklabels()]
    assert shown == list(ARMS)                        # full names, none cut, none ellipsed
    assert len(set(shown)) == len(shown)
    for t in first.get_yticklabels():
        box = t.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, "label inside the image"
    for ax in fig.axes:
        if ax.get_visible():
            assert ax.get_xlabel() and ax.get_title()
    plt.close(fig)


def test_survival_figure_legends_do_not_cover_the_curves(comparison):
    plt = _pyplot()
    fig = comparison.plot_survival()
    _assert_legends_clear_of_axes(fig)
    for ax in fig.axes:
        assert ax.get_ylabel() or ax.get_subplotspec().colspan.start == 0
    plt.close(fig)


def test_power_curve_legend_is_outside_the_axes():
    from progression.trials import PowerCurve, TrialResults, VirtualTrial

    trial = VirtualTrial({"placebo": [], "IL-2": [iv.ld_il2()]}, follow_up=3.0)
    rows = [{"comparison": "IL-2 vs placebo", "reject": p < 0.05, "estimate": 0.1,
             "relative_effect": 0.2} for p in (0.01, 0.2, 0.03, 0.5)]
    results = [TrialResults("slope", n, rows, 0.05, 100, 0.5) for n in (20, 40)]
    plt = _pyplot()
    fig = PowerCurve(trial, results).plot()
    _assert_legends_clear_of_axes(fig)
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() == "patients per arm"
    plt.close(fig)


def test_compare_and_trials_show_progress_in_logs_and_stay_quiet_otherwise(capsys):
    from progression.scenarios import VirtualPopulation, compare
    from progression.trials import VirtualTrial

    pop = VirtualPopulation.sample("als_systemic", 3, seed=4, delay=(6.0, 12.0))
    arms = {"no treatment": [], "IL-2": [iv.ld_il2()]}
    loud = compare(pop, arms, horizon=2.0, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "compare als_systemic: 2/2 scenarios (100%)" in err.splitlines()[-1]
    quiet = compare(pop, arms, horizon=2.0)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(loud.trajectories["IL-2"]["ALSFRS_R"],
                                  quiet.trajectories["IL-2"]["ALSFRS_R"])
    trial = VirtualTrial(arms, follow_up=2.0)
    trial.simulate_pool(12, seed=1, chunk=6, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "trial pool: 12/12 patients (100%)" in err.splitlines()[-1]
    trial.simulate_pool(12, seed=1, chunk=6)
    assert capsys.readouterr().err == ""


def test_more_jobs_than_usable_cpus_are_not_started_and_a_busy_machine_is_named(monkeypatch):
    import progression.parallel as par

    monkeypatch.setattr(par, "_other_load", lambda: 0.2)
    monkeypatch.setattr(par, "usable_cpus", lambda: 1)
    with pytest.warns(UserWarning, match="--jobs 2: this process may use 1 CPU"):
        with executor(jobs=2) as ex:
            assert isinstance(ex, InProcess)
    monkeypatch.setattr(par, "usable_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="running 2 worker processes"):
        with executor(jobs=3) as ex:
            assert isinstance(ex, ProcessPool) and ex.workers == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with executor(jobs=2) as ex:
            assert isinstance(ex, ProcessPool) and ex.workers == 2
    monkeypatch.setattr(par, "_other_load", lambda: 1.4)
    with pytest.warns(UserWarning, match=r"busy \(about 1.4 CPUs in use by other work, of 2\)"):
        with executor(jobs=2) as ex:
            assert isinstance(ex, ProcessPool) and ex.workers == 2
