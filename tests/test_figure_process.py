"""The helper process that draws `progression simulate`'s figure (progression._figure_process)."""

import sys

import numpy as np
import pytest

from progression import load_model, simulate
from progression._figure_process import FigureProcess, _draw
from progression.errors import ProgressionError

SAVEFIG = {"dpi": 60, "pil_kwargs": {"compress_level": 1}}


@pytest.fixture(scope="module")
def sim():
    model = load_model("als_reduced", backend="numpy")
    return simulate(model, None, np.linspace(0.0, 24.0, 49))


def test_helper_draws_the_same_png_as_in_process(sim, tmp_path):
    with FigureProcess() as figure:
        assert figure._proc is not None            # a helper started
        figure.draw(sim, tmp_path / "helper.png", **SAVEFIG)
    _draw(sim, str(tmp_path / "here.png"), SAVEFIG)
    helper = (tmp_path / "helper.png").read_bytes()
    assert len(helper) > 5_000
    assert helper == (tmp_path / "here.png").read_bytes()


def test_leaving_without_drawing_stops_the_helper_and_writes_nothing(tmp_path):
    with FigureProcess() as figure:
        proc = figure._proc
    assert proc.returncode is not None                # stopped, not left running
    assert list(tmp_path.iterdir()) == []


def test_an_error_before_drawing_stops_the_helper():
    with pytest.raises(RuntimeError, match="solver"), FigureProcess() as figure:
        proc = figure._proc
        raise RuntimeError("solver failed")
    assert proc.returncode is not None


def test_a_failed_figure_names_the_file(sim, tmp_path):
    path = tmp_path / "missing_folder" / "fig.png"
    with pytest.raises(ProgressionError, match="fig.png: the figure could not be drawn"):
        with FigureProcess() as figure:
            figure.draw(sim, path, **SAVEFIG)
    assert not path.exists()


def test_without_a_usable_interpreter_the_figure_is_drawn_here(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no_such_python"))
    with FigureProcess() as figure:
        assert figure._proc is None
        figure.draw(sim, tmp_path / "fig.png", **SAVEFIG)
    assert (tmp_path / "fig.png").stat().st_size > 5_000


def test_an_interrupt_while_the_helper_draws_stops_it(sim, tmp_path, monkeypatch):
    import subprocess

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    figure = FigureProcess()
    proc = figure._proc
    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        figure.draw(sim, tmp_path / "fig.png", **SAVEFIG)
    assert proc.returncode is not None                # killed before the error went on
    assert not (tmp_path / "fig.png").exists()
