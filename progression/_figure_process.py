"""Draw a command's figure in a helper process, so that importing matplotlib overlaps the work.

``progression simulate`` spends most of its run time importing libraries: ~0.5 s for
scipy.integrate (with the solve, ~0.85 s from start to the CSV) and ~0.6 s for matplotlib, then
~0.6 s drawing (measured 2026-12-01 on this 2-core machine). Imports are single-threaded Python
under the GIL, so a thread cannot overlap them; a second process can: it starts with the
command, imports matplotlib while the command imports scipy and solves, then receives the
result and draws. A new interpreter rather than ``os.fork``, because the parent has numpy's
BLAS threads running and forking a threaded process can deadlock the child.

When the helper cannot start (no usable ``sys.executable``) the figure is drawn in-process.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from .errors import ProgressionError

__all__ = ["FigureProcess"]


def _draw(sim, path: str, savefig: dict) -> None:
    from .plots import plot_simulation

    plot_simulation(sim, pyplot=False).savefig(path, **savefig)


class FigureProcess:
    """A helper process that draws one :func:`~progression.plots.plot_simulation` figure.

    Start it as early as possible, as a context manager; :meth:`draw` hands it the simulation
    and waits for the file. Leaving the ``with`` block without drawing stops the helper (it
    writes nothing).

    Examples
    --------
    >>> with FigureProcess() as figure:              # doctest: +SKIP
    ...     sim = simulate(model, None, times)       # meanwhile the helper imports matplotlib
    ...     figure.draw(sim, "out/trajectories.png", dpi=110)
    """

    def __init__(self):
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "progression._figure_process"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, ValueError):
            self._proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def draw(self, sim, path, **savefig) -> None:
        """Draw ``sim`` into ``path`` (``savefig`` keywords: ``dpi``, ``pil_kwargs``, ...).

        Raises
        ------
        ProgressionError
            The helper failed; the message names the file and the helper's last error line.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            _draw(sim, str(path), savefig)
            return
        try:
            _, err = proc.communicate(pickle.dumps((sim, str(path), savefig),
                                                   protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            # interrupted while the helper draws: stop it before the caller removes the
            # folder it writes into, so that no file appears there afterwards
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0 or not Path(path).is_file():
            lines = err.decode(errors="replace").strip().splitlines()
            raise ProgressionError(f"{path}: the figure could not be drawn "
                                   f"({lines[-1] if lines else f'exit {proc.returncode}'})")

    def close(self) -> None:
        """Stop the helper if it has not drawn: it has written nothing (it writes only after
        receiving a simulation), so it is killed rather than waited for."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()


def main() -> int:
    # the slow part, done while the parent works: matplotlib's figure and Agg canvas
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    from . import plots  # noqa: F401

    data = sys.stdin.buffer.read()
    if not data:            # the command ended without a figure
        return 0
    sim, path, savefig = pickle.loads(data)
    _draw(sim, path, savefig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
