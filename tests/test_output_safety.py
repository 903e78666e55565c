"""Nothing a user has is lost: every command and every Python ``save``/``write`` that writes
output refuses to replace what it did not write, what it reads, or (without ``--overwrite``)
what it wrote before; writes are atomic; interrupts leave nothing; permissions follow umask."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression import _io
from progression.cli import main
from progression.errors import OutputError

sys.path.insert(0, str(Path(__file__).parent))
from _fit_support import config_text, simulate_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(__file__).parent / "models"
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"
SHIPPED_FIT = ROOT / "fits" / "als_synthetic_individual"

COMPARE = """[source]
model = "als_reduced"
n = 4
seed = 1

[compare]
horizon = 6.0
step = 1.0

[scenarios]
"none" = []
"slower" = [{ scale = { kA = 0.5 } }]
"""


def snapshot(*folders) -> dict[str, str]:
    """Every file and folder under ``folders`` (hidden ones included) with its content."""
    state = {}
    for folder in map(Path, folders):
        if folder.is_file():
            state[str(folder)] = folder.read_bytes()
            continue
        for root, dirs, files in os.walk(folder):
            state.update({str(Path(root) / d): b"<dir>" for d in dirs})
            state.update({str(Path(root) / f): (Path(root) / f).read_bytes() for f in files})
    return state


@dataclass
class Outcome:
    code: int
    out: str
    err: str


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fit_project(tmp_path_factory):
    """A fit config and its data file in one folder (as a user keeps them)."""
    folder = tmp_path_factory.mktemp("fitproject")
    cohort, _ = simulate_cohort(2, seed=3, visits=np.arange(0.0, 13.0, 3.0))
    pg.write_cohort(cohort, folder / "data.csv", format="long")
    (folder / "demo.toml").write_text(config_text("data.csv", free=("kA",))
                                      + '\n[estimator]\nuncertainty = []\n')
    return folder


@pytest.fixture
def compare_project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cmp.toml").write_text(COMPARE)
    return folder


def user_folder(path: Path) -> Path:
    """A folder holding a user's file (no marker)."""
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("precious\n")
    return path


def user_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious\n")
    return path


def assert_refused_unchanged(tmp_path, argv, *names, code=2):
    before = snapshot(tmp_path)
    outcome = main_outcome(argv)
    after = snapshot(tmp_path)
    assert outcome.code == code, outcome
    assert "Traceback" not in outcome.err and outcome.err.startswith("error: "), outcome.err
    for name in names:
        assert name in outcome.err, (name, outcome.err)
    assert before == after, (sorted(set(after) ^ set(before)),
                             [k for k in before if after.get(k) != before[k]])
    return outcome


_capsys = None


@pytest.fixture(autouse=True)
def _keep_capsys(capsys):
    """Every test of this module captures output; ``main_outcome`` reads it."""
    global _capsys
    _capsys = capsys
    yield
    _capsys = None


def main_outcome(argv) -> Outcome:
    """Run ``progression ARGV`` in-process; return exit status, stdout and stderr."""
    code = main([str(a) for a in argv])
    captured = _capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


# ------------------------------------------------ every writing subcommand, three targets


def _simulate(tmp_path, out):
    model = tmp_path / "models" / "decay.toml"
    if not model.exists():
        model.parent.mkdir(parents=True)
        shutil.copy(MODELS / "decay.toml", model)
    return ["simulate", model, "--until", "3", "--out", out]


def _fit(fit_project, out):
    return ["fit", fit_project / "demo.toml", "--quiet", "--no-figures", "--out", out]


def test_simulate_refuses_the_folder_holding_its_model_file(tmp_path):
    argv = _simulate(tmp_path, tmp_path / "models")
    assert_refused_unchanged(tmp_path, argv, "models", "input")
    assert_refused_unchanged(tmp_path, [*argv, "--overwrite"], "input")


def test_simulate_refuses_a_users_folder_and_a_file(tmp_path):
    user_folder(tmp_path / "mine")
    user_file(tmp_path / "notes.txt")
    for target, name in ((tmp_path / "mine", "not written by progression"),
                         (tmp_path / "notes.txt", "is a file")):
        for extra in ([], ["--overwrite"]):
            assert_refused_unchanged(tmp_path, _simulate(tmp_path, target) + extra,
                                     str(target), name)


def test_fit_refuses_before_fitting(fit_project, tmp_path):
    # (a) the folder holding the config and data file; (b) a user's folder; (c) a file
    for extra in ([], ["--overwrite"]):
        assert_refused_unchanged(fit_project, _fit(fit_project, fit_project) + extra,
                                 "input")
    user_folder(tmp_path / "mine")
    user_file(tmp_path / "f.txt")
    for target in (tmp_path / "mine", tmp_path / "f.txt"):
        for extra in ([], ["--overwrite"]):
            assert_refused_unchanged(tmp_path, _fit(fit_project, target) + extra, str(target))


def test_fit_writes_a_marked_folder_and_replaces_it_only_with_overwrite(fit_project, tmp_path):
    out = tmp_path / "fit"
    first = main_outcome(_fit(fit_project, out))
    assert first.code == 0, first.err
    marker = json.loads((out / ".progression").read_text())
    assert marker["written_by"] == "progression" and marker["what"] == "fit folder"
    assert_refused_unchanged(tmp_path, _fit(fit_project, out), "--overwrite", str(out))
    (out / "stale.txt").write_text("from an earlier run")
    again = main_outcome([*_fit(fit_project, out), "--overwrite"])
    assert again.code == 0, again.err
    assert (out / "fit.json").is_file() and not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cohort_refuses_its_config_a_users_file_and_a_folder(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    config = project / "clinic.toml"
    shutil.copy(CLINIC, config)
    # (a) --out clinic.csv would write its sidecar clinic.toml over the config it reads
    for extra in ([], ["--overwrite"]):
        assert_refused_unchanged(tmp_path, ["cohort", config, "--n", "3", "--out",
                                            project / "clinic.csv", *extra], "clinic.toml",
                                 "input")
    # (b) a user's file under the cohort's name, or under one of its side files' names
    user_file(project / "mine.csv")
    user_file(project / "other_truth.csv")
    for out in (project / "mine.csv", project / "other.csv"):
        for extra in ([], ["--overwrite"]):
            assert_refused_unchanged(tmp_path, ["cohort", config, "--n", "3", "--out", out,
                                                *extra], "not written by progression")
    # (c) a folder where the file would go
    (project / "dir.csv").mkdir()
    assert_refused_unchanged(tmp_path, ["cohort", config, "--n", "3", "--out",
                                        project / "dir.csv", "--overwrite"], "is a folder")


def test_cohort_replaces_its_own_files_only_with_overwrite(tmp_path):
    out = tmp_path / "c" / "c.csv"
    assert main_outcome(["cohort", CLINIC, "--n", "3", "--seed", "1", "--out", out]).code == 0
    first = (out.with_name("c_truth.csv")).read_text()
    assert_refused_unchanged(tmp_path, ["cohort", CLINIC, "--n", "3", "--out", out],
                             "--overwrite")
    res = main_outcome(["cohort", CLINIC, "--n", "4", "--seed", "2", "--out", out,
                        "--overwrite"])
    assert res.code == 0, res.err
    assert out.with_name("c_truth.csv").read_text() != first
    assert len(pg.read_cohort(out)) == 4
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_compare_refuses_its_config_folder_a_users_folder_and_a_file(compare_project,
                                                                     tmp_path):
    config = compare_project / "cmp.toml"
    user_folder(tmp_path / "mine")
    user_file(tmp_path / "f.md")
    for target, name in ((compare_project, "input"),
                         (tmp_path / "mine", "not written by progression"),
                         (tmp_path / "f.md", "is a file")):
        for extra in ([], ["--overwrite"]):
            assert_refused_unchanged(tmp_path, ["compare", config, "--no-figures", "--out",
                                                target, *extra], name)


def test_compare_refuses_the_fit_folder_it_reads(tmp_path):
    fit = tmp_path / "fit"
    shutil.copytree(SHIPPED_FIT, fit, ignore=shutil.ignore_patterns("figures"))
    config = tmp_path / "fc.toml"
    config.write_text('[source]\nfit = "fit"\n\n[scenarios]\n"none" = []\n')
    for extra in ([], ["--overwrite"]):      # the fit folder carries the marker: still refused
        assert_refused_unchanged(tmp_path, ["compare", config, "--out", fit, *extra],
                                 "input")


def test_compare_replaces_its_own_folder_only_with_overwrite(compare_project, tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", compare_project / "cmp.toml", "--no-figures", "--out", out]
    assert main_outcome(argv).code == 0
    assert (out / ".progression").is_file() and (out / "summary.md").is_file()
    assert_refused_unchanged(tmp_path, argv, "--overwrite")
    res = main_outcome([*argv, "--overwrite"])
    assert res.code == 0, res.err


def test_simulate_overwrite_replaces_only_a_marked_folder(tmp_path):
    out = tmp_path / "sim"
    assert main_outcome(_simulate(tmp_path, out)).code == 0
    csv_before = (out / "simulation.csv").read_text()
    assert_refused_unchanged(tmp_path, _simulate(tmp_path, out), "--overwrite", str(out))
    res = main_outcome(_simulate(tmp_path, out)[:-2] + ["--until", "4", "--out", out,
                                                        "--overwrite"])
    assert res.code == 0, res.err
    assert (out / "simulation.csv").read_text() != csv_before
    # an empty folder (nothing to lose) counts as new
    (tmp_path / "empty").mkdir()
    assert main_outcome(_simulate(tmp_path, tmp_path / "empty")).code == 0


# ---------------------------------------------------------------- Python save and write


def _python_folder_writers(tmp_path):
    """(name, write(folder, overwrite)) for every Python method that writes a folder."""
    from progression import interventions as iv
    from progression.scenarios import compare
    from progression.trials import VirtualTrial

    fit = pg.load_fit(SHIPPED_FIT)
    pop = pg.VirtualPopulation.sample(pg.load_model("als_reduced"), 3, seed=1)
    comp = compare(pop, {"none": [], "slower": [iv.Intervention(scale={"kA": 0.5})]},
                   horizon=3.0, step=1.0)
    curve = VirtualTrial({"placebo": [], "IL-2": [iv.ld_il2()]},
                         follow_up=3.0).power([4], reps=2, seed=1, pool_size=10)
    return [
        ("FitResult.save", lambda f, **kw: fit.save(f, figures=False, **kw)),
        ("Comparison.write", lambda f, **kw: comp.write(f, figures=False, **kw)),
        ("PowerCurve.write", lambda f, **kw: curve.write(f, **kw)),
    ]


def test_python_folder_writers_follow_the_same_rules(tmp_path):
    for name, write in _python_folder_writers(tmp_path):
        base = tmp_path / name
        out = base / "out"
        write(out)
        assert _io.has_marker(out), name
        with pytest.raises(OutputError, match="overwrite"):
            write(out)
        write(out, overwrite=True)
        mine = user_folder(base / "mine")
        shutil.copy(SHIPPED_FIT / "fit.json", mine / "input.json")
        before = snapshot(base)
        for kw in ({}, {"overwrite": True}):
            with pytest.raises(OutputError, match="not written by progression"):
                write(mine, **kw)
            with pytest.raises(OutputError, match="is a file"):
                write(mine / "keep.txt", **kw)
            with pytest.raises(OutputError, match="input"):
                write(out, inputs=[out / ".progression"], **kw)
        assert snapshot(base) == before, name


def test_fit_save_refuses_the_folder_of_its_data(tmp_path, fit_project):
    fit = pg.load_fit(SHIPPED_FIT)
    fit.provenance = dict(fit.provenance, data_path=str(fit_project / "data.csv"))
    before = snapshot(fit_project)
    with pytest.raises(OutputError, match="data.csv"):
        fit.save(fit_project, figures=False, overwrite=True)
    assert snapshot(fit_project) == before


def test_python_cohort_writers_follow_the_same_rules(tmp_path):
    from progression.data.synthetic import synthetic_cohort, write_synthetic

    cohort, truth = synthetic_cohort(CLINIC, n=3, seed=1)
    out = tmp_path / "c.csv"
    files = write_synthetic(cohort, truth, out)
    assert {f.name for f in files} >= {"c.csv", "c.toml", "c_truth.csv"}
    with pytest.raises(OutputError, match="overwrite"):
        write_synthetic(cohort, truth, out)
    with pytest.raises(OutputError, match="overwrite"):
        pg.write_cohort(cohort, out)
    with pytest.raises(OutputError, match="overwrite"):
        truth.write(out.with_name("c_truth.csv"))
    write_synthetic(cohort, truth, out, overwrite=True)
    pg.write_cohort(cohort, out, overwrite=True)
    truth.write(out.with_name("c_truth.csv"), overwrite=True)
    user_file(tmp_path / "u.csv")
    user_file(tmp_path / "t.csv")
    before = snapshot(tmp_path)
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(OutputError, match="not written by progression"):
            pg.write_cohort(cohort, tmp_path / "u.csv", **kw)
        with pytest.raises(OutputError, match="not written by progression"):
            truth.write(tmp_path / "t.csv", **kw)
        with pytest.raises(OutputError, match="input"):
            pg.write_cohort(cohort, tmp_path / "new.csv", inputs=[tmp_path / "new.toml"],
                            **kw)
        with pytest.raises(OutputError, match="input"):      # refused before mkdir
            write_synthetic(cohort, truth, tmp_path / "sub" / "n.csv",
                            inputs=[tmp_path / "sub" / "n_truth.csv"], **kw)
    assert snapshot(tmp_path) == before


def test_overwrite_removes_side_tables_the_new_cohort_does_not_have(tmp_path):
    from progression.data.synthetic import synthetic_cohort, write_synthetic

    cohort, truth = synthetic_cohort(CLINIC, n=3, seed=1)
    out = tmp_path / "c.csv"
    write_synthetic(cohort, truth, out)
    # an earlier write of this cohort had a doses table (progression's name, beside its sidecar)
    (tmp_path / "c_doses.csv").write_text("subject,time,amount,target,rate,duration,reset\n")
    write_synthetic(cohort, truth, out, overwrite=True)
    assert not (tmp_path / "c_doses.csv").exists()
    assert pg.read_cohort(out) == cohort


# ------------------------------------------------------------ temporaries and permissions


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temporary(parent: Path, folder: str, name: str, *, pid: int, age: float) -> Path:
    tmp = parent / folder
    tmp.mkdir()
    (tmp / "half.csv").write_text("1,2\n")
    then = time.time() - age
    (tmp / _io.MARKER).write_text(json.dumps({
        "written_by": "progression", "name": name, "time": then, "pid": pid,
        "host": __import__("socket").gethostname()}))
    os.utime(tmp, (then, then))
    return tmp


def test_stale_temporaries_are_cleaned_on_the_next_write(tmp_path):
    dead, age = _dead_pid(), time.time() - _io.process_start_time() + 60
    stale = _temporary(tmp_path, ".sim.k9x2ab7q", "sim", pid=dead, age=age)
    stale_old = _temporary(tmp_path, ".other.old-1a2b3c4d", "other", pid=dead, age=age)
    alive = _temporary(tmp_path, ".sim.alive123", "sim", pid=os.getppid(), age=age)
    young = _temporary(tmp_path, ".sim.young123", "sim", pid=dead, age=0.0)
    unmarked = tmp_path / ".sim.nomarker"
    unmarked.mkdir()
    output = _temporary(tmp_path, ".hidden", ".hidden", pid=dead, age=age)  # a real output
    foreign = _temporary(tmp_path, ".cache", "sim", pid=dead, age=age)      # not .sim.*
    assert main_outcome(_simulate(tmp_path, tmp_path / "sim")).code == 0
    assert not stale.exists() and not stale_old.exists()
    for kept in (alive, young, unmarked, output, foreign):
        assert kept.exists(), kept


def _sigint_as_python_sets_it():
    """Python's own SIGINT handler. A process started in the background by a shell without
    job control inherits SIGINT ignored (POSIX), and Python then leaves it ignored: a test
    that sends SIGINT must set the handler a foreground run has."""
    return signal.signal(signal.SIGINT, signal.default_int_handler)


def _child_with_default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # the child's Python installs its handler


def test_interrupt_while_writing_removes_the_temporary(tmp_path, monkeypatch):
    # the figure is the last thing written (by a helper process the command waits for)
    from progression._figure_process import FigureProcess

    previous = _sigint_as_python_sets_it()
    try:
        _interrupt_while_writing(tmp_path, monkeypatch, FigureProcess)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_while_writing(tmp_path, monkeypatch, figure_process):
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        def interrupted(*args, signum=signum, **kwargs):
            os.kill(os.getpid(), signum)
            time.sleep(5)          # the handler raises before this ends
            raise AssertionError("the signal was not delivered")

        monkeypatch.setattr(figure_process, "draw", interrupted)
        argv = _simulate(tmp_path, tmp_path / "sim")
        before = snapshot(tmp_path)
        res = main_outcome(argv)
        assert res.code == code, res
        assert res.err.strip() == "interrupted, nothing written"
        assert snapshot(tmp_path) == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # handler restored


def test_interrupt_reaches_a_command_started_with_the_signal_blocked(tmp_path, monkeypatch):
    """A process that inherited SIGTERM blocked (from a test runner or a scheduler) is still
    interrupted cleanly: the command unblocks it while it runs and restores the mask after."""
    from progression._figure_process import FigureProcess

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("the signal was not delivered")

    monkeypatch.setattr(FigureProcess, "draw", interrupted)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        res = main_outcome(_simulate(tmp_path, tmp_path / "sim"))
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert res.code == 143, res
    assert res.err.strip() == "interrupted, nothing written"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_fit_exits_cleanly(tmp_path, signum, code):
    """A real ``progression fit`` in a subprocess, signalled once it reports progress."""
    cohort, _ = simulate_cohort(12, seed=5, visits=np.arange(0.0, 19.0, 1.0))
    pg.write_cohort(cohort, tmp_path / "data.csv")
    (tmp_path / "slow.toml").write_text(config_text("data.csv", free=("kA", "eD"))
                                        + "\n[estimator]\nstarts = 20\n")
    out = tmp_path / "fits"
    proc = subprocess.Popen([sys.executable, "-m", "progression.cli", "fit",
                             str(tmp_path / "slow.toml"), "--out", str(out / "slow")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            preexec_fn=_child_with_default_sigint)
    # the first byte of progress on stderr: main() runs and its handlers are set
    ready, _, _ = select.select([proc.stderr], [], [], 120)
    first = os.read(proc.stderr.fileno(), 1) if ready else b""
    assert first and proc.poll() is None, "the fit showed no progress, or ended too soon"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    err = (first + err).decode()
    assert proc.returncode == code, err
    assert "interrupted, nothing written" in err and "Traceback" not in err, err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_folders_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        out = tmp_path / "deep" / "sim"
        assert main_outcome(_simulate(tmp_path, out)).code == 0
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((tmp_path / "deep").stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((out / "simulation.csv").stat().st_mode & 0o777) == 0o666 & ~mask


def test_oserror_while_writing_is_one_error(tmp_path, monkeypatch):
    from progression._figure_process import FigureProcess

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(FigureProcess, "draw", full)
    argv = _simulate(tmp_path, tmp_path / "sim")
    before = snapshot(tmp_path)
    res = main_outcome(argv)
    assert res.code == 2 and "No space left on device" in res.err and "Traceback" not in res.err
    assert snapshot(tmp_path) == before
