"""Writing output safely: all files appear together or none do, and nothing else is lost.

Rules shared by every command and every Python ``save``/``write`` method:

* A new folder is written into a hidden temporary folder beside it (``.NAME.xxxxxxxx``) and
  moved into place only when complete, so a failure or an interrupt leaves nothing behind.
* Every folder progression writes carries a marker file, ``.progression`` (a small JSON
  document: what wrote it, the version, when). An existing folder with the marker is replaced
  only when asked (``overwrite=True``, ``--overwrite`` on the command line).
* A folder without the marker, the current folder, a file or a symbolic link is never replaced
  or deleted, with or without ``overwrite``. An empty folder counts as new (nothing can be lost).
* An output that equals or contains one of the run's inputs (config, data, model, a fit folder
  being read) is refused.
* Hidden temporaries left by a killed process are removed on the next write to the same
  parent, but only those carrying the marker, older than the current process and whose
  writing process is gone.
* Folders get the permissions of the user's umask (``mkdtemp`` alone would make them 0700).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import OutputError

__all__ = ["MARKER", "atomic_directory", "atomic_files", "check_output_folder",
           "check_output_files", "clean_stale_temporaries", "committed", "has_marker",
           "process_start_time", "user_umask"]

MARKER = ".progression"
_OVERWRITE_HINT = "--overwrite (overwrite=True in Python)"

#: Paths moved into place by this process (the CLI reports them when interrupted afterwards).
committed: list[Path] = []


# ----------------------------------------------------------------------------- process facts


def process_start_time() -> float:
    """Start of the current process in seconds since the epoch (Linux: from ``/proc``)."""
    global _START
    if _START is None:
        _START = _read_start_time()
    return _START


_START: float | None = None
_IMPORTED = time.time()


def _read_start_time() -> float:
    try:
        stat = Path("/proc/self/stat").read_text()
        # the command name (field 2) may hold spaces: count fields after its closing ')'
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def user_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)   # no way to read it without setting it: restore at once
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True        # exists but belongs to someone else
    return True


# ---------------------------------------------------------------------------------- markers


def _marker_doc(name: str, what: str) -> dict:
    from . import __version__

    return {"written_by": "progression", "what": what, "version": __version__,
            "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "time": time.time(), "pid": os.getpid(), "host": socket.gethostname()}


def _read_marker(folder: Path) -> dict | None:
    try:
        doc = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("written_by") == "progression" else None


def has_marker(folder) -> bool:
    """Whether ``folder`` carries progression's marker file (so progression wrote it)."""
    return _read_marker(Path(folder)) is not None


# ------------------------------------------------------------------------------------ checks


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _check_inputs(path: Path, inputs: Iterable, what: str) -> None:
    target = _resolved(path)
    for item in inputs or ():
        if item is None:
            continue
        src = _resolved(Path(item))
        if src == target or target in src.parents:
            kind = "is" if src == target else "contains"
            raise OutputError(f"{path}: the {what} {kind} the input {item}; writing it would "
                              "replace what this run reads. Choose another output path")


def _refuse_cwd(path: Path, what: str) -> None:
    target = _resolved(path)
    cwd = _resolved(Path.cwd())
    if target == cwd or target in cwd.parents:
        raise OutputError(f"{path}: the {what} is the current folder (or contains it); "
                          "progression writes a new folder and never replaces the one you "
                          "are in. Choose a new folder name")


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write into."""
    ancestor = _resolved(path).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{path}: cannot write the {what}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write the {what}: no permission to create files "
                          f"in {ancestor}")


def check_output_folder(path, *, overwrite: bool = False, inputs: Iterable = (),
                        what: str = "output folder") -> Path:
    """Refuse an output folder that cannot be written without losing something.

    Parameters
    ----------
    path : path
        The folder to be written.
    overwrite : bool
        Allow replacing an existing folder that carries progression's marker.
    inputs : iterable of path
        Files or folders the run reads; the output may neither be nor contain one.
    what : str
        How the folder is named in messages.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        The path is a file or link, a folder progression did not write, the current folder,
        holds an input, or exists without ``overwrite``.
    """
    path = Path(path)
    _check_inputs(path, inputs, what)
    if path.is_symlink():
        raise OutputError(f"{path}: the {what} is a symbolic link; progression does not "
                          "replace links. Choose a new folder name")
    if not path.exists():
        _check_creatable(path, what)
        return path
    if not path.is_dir():
        raise OutputError(f"{path}: exists and is a file, not a folder; progression never "
                          f"replaces a file with a {what}. Choose a new folder name")
    _refuse_cwd(path, what)
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the existing folder ({exc.strerror})") from None
    if empty:
        return path
    if not has_marker(path):
        raise OutputError(f"{path}: exists and was not written by progression (no {MARKER} "
                          f"marker), so it is never replaced, even with --overwrite. Choose a "
                          "new folder name, or move its content away")
    if not overwrite:
        raise OutputError(f"{path}: exists (written by progression earlier); pass "
                          f"{_OVERWRITE_HINT} to replace it")
    return path


# ------------------------------------------------------------------------ stale temporaries


def clean_stale_temporaries(parent) -> list[Path]:
    """Remove hidden temporaries that a killed progression process left in ``parent``.

    Only folders named ``.NAME.*`` whose marker names ``NAME``, that are older than the current
    process, and whose writing process no longer runs on this host are removed. Returns them.
    """
    parent = Path(parent)
    removed = []
    start = process_start_time()
    host = socket.gethostname()
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        doc = _read_marker(entry)
        if doc is None or not isinstance(doc.get("name"), str):
            continue
        if not entry.name.startswith(f".{doc['name']}.") or entry.name == doc["name"]:
            continue
        try:
            when = max(float(doc.get("time", 0.0)), entry.stat().st_mtime)
        except (OSError, TypeError, ValueError):
            continue
        if when >= start:
            continue
        pid = doc.get("pid")
        if doc.get("host") == host and isinstance(pid, int) and pid != os.getpid() \
                and _pid_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


# ------------------------------------------------------------------------------- temporaries


def _make_temporary(path: Path, what: str) -> Path:
    """A hidden marked temporary folder beside ``path``, with the umask's permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
    try:
        os.chmod(tmp, 0o777 & ~user_umask())
        (tmp / MARKER).write_text(json.dumps(_marker_doc(path.name, what), indent=1) + "\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
    return tmp


def _oserror(path: Path, what: str, exc: OSError) -> OutputError:
    name = exc.filename if exc.filename else path
    return OutputError(f"{path}: cannot write the {what}: {name}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_directory(path, *, overwrite: bool = False, inputs: Iterable = (),
                     what: str = "output folder"):
    """Yield a temporary folder beside ``path``; move it into place only if the block succeeds.

    Parameters
    ----------
    path : path
        The folder to write.
    overwrite : bool
        Replace an existing folder written by progression (it carries the marker). Folders
        without the marker, files and links are refused whatever this says.
    inputs : iterable of path
        Files or folders the run reads; an output that is or contains one is refused.
    what : str
        How the folder is named in messages ("fit folder", ...).

    Yields
    ------
    Path
        The temporary folder to write into (it already holds the marker file).

    Raises
    ------
    OutputError
        See :func:`check_output_folder`; also when the folder cannot be created or moved.

    Notes
    -----
    A failure (or Ctrl-C / SIGTERM) inside the block removes the temporary folder, so nothing
    half-written is left. An existing folder is replaced only after the new one is complete.
    """
    path = Path(path)
    check_output_folder(path, overwrite=overwrite, inputs=inputs, what=what)
    with _temporary(path, what) as tmp:
        yield tmp
        # checked again: the folder may have appeared while the block ran
        check_output_folder(path, overwrite=overwrite, inputs=inputs, what=what)
        _move_into_place(tmp, path, what)
    committed.append(path)


@contextlib.contextmanager
def _temporary(path: Path, what: str):
    """A temporary folder beside ``path`` that any failure removes (an OSError becomes one
    :class:`OutputError` naming ``path``)."""
    tmp = _make_temporary(path, what)
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _oserror(path, what, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, path: Path, what: str) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    if not any(path.iterdir()):
        os.replace(tmp, path)       # rename(2) may replace an empty folder
        return
    # the old folder goes aside under a marked hidden name (cleaned later if we are killed)
    old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------ files


def check_output_files(targets: Iterable, *, overwrite: bool = False, inputs: Iterable = (),
                       ours: Callable[[Path], bool] = lambda p: False,
                       what: str = "output file") -> None:
    """Refuse to write files over anything that cannot be replaced safely.

    An existing target is replaced only with ``overwrite`` and when ``ours(target)`` says
    progression wrote it; a folder, a link or an input file is never replaced.
    """
    inputs = [_resolved(Path(i)) for i in inputs or () if i is not None]
    for target in targets:
        target = Path(target)
        if _resolved(target) in inputs:
            raise OutputError(f"{target}: the {what} is an input of this run; writing it would "
                              "replace what the run reads. Choose another file name")
        if target.is_symlink():
            raise OutputError(f"{target}: the {what} is a symbolic link; progression does not "
                              "replace links. Choose another file name")
        if not target.exists():
            _check_creatable(target, what)
            continue
        if target.is_dir():
            raise OutputError(f"{target}: exists and is a folder; progression never replaces "
                              f"a folder with a {what}. Choose another file name")
        if not ours(target):
            raise OutputError(f"{target}: exists and was not written by progression, so it is "
                              "never replaced, even with --overwrite. Choose another file name")
        if not overwrite:
            raise OutputError(f"{target}: exists (written by progression earlier); pass "
                              f"{_OVERWRITE_HINT} to replace it")


@contextlib.contextmanager
def atomic_files(path, *, overwrite: bool = False, inputs: Iterable = (),
                 ours: Callable[[Path], bool] = lambda p: False, what: str = "output file",
                 stale: Iterable = (), expected: Iterable = ()):
    """Yield a temporary folder; move every file written into it beside ``path`` at the end.

    Each file ``tmp/NAME`` goes to ``path.parent/NAME``. ``path`` and the ``expected`` files
    are checked with :func:`check_output_files` before anything is written, and every file
    written is checked again before the first one is moved, so a refusal writes nothing.
    ``stale`` lists files of an earlier write that the new one does not produce; with
    ``overwrite`` those that ``ours`` recognises are removed so no outdated side file remains.
    """
    path = Path(path)
    check_output_files([path, *expected], overwrite=overwrite, inputs=inputs, ours=ours,
                       what=what)
    with _temporary(path, what) as tmp:
        yield tmp
        files = sorted(p for p in tmp.iterdir() if p.name != MARKER)
        targets = [path.parent / f.name for f in files]
        check_output_files(targets, overwrite=overwrite, inputs=inputs, ours=ours, what=what)
        leftovers = [Path(s) for s in stale if Path(s) not in targets]
        leftovers = [s for s in leftovers if s.is_file() and not s.is_symlink() and ours(s)]
        for f, target in zip(files, targets, strict=True):
            os.replace(f, target)
        if overwrite:
            for s in leftovers:
                s.unlink(missing_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    committed.extend(targets)


# --------------------------------------------------------------------------- cohort files

#: Side files written next to a cohort file ``<stem>.csv`` (see ``write_cohort``) and the
#: truth table of a synthetic cohort.
COHORT_SUFFIXES = (".csv", ".toml", "_covariates.csv", "_events.csv", "_doses.csv",
                   "_time_varying.csv", "_truth.csv")


def cohort_files(path) -> list[Path]:
    """Every file a cohort written to ``path`` (``<stem>.csv``) may have beside it."""
    path = Path(path)
    stem = path.with_suffix("").name
    return [path.parent / f"{stem}{s}" for s in COHORT_SUFFIXES]


def is_progression_cohort_file(path) -> bool:
    """Whether ``path`` belongs to a cohort progression wrote.

    It must be named like a cohort file or side table of some ``<stem>`` and a sidecar
    ``<stem>.toml`` written by progression (its first line says so) must sit beside it.
    """
    path = Path(path)
    for suffix in COHORT_SUFFIXES:
        if not path.name.endswith(suffix) or path.name == suffix:
            continue
        sidecar = path.with_name(path.name[: -len(suffix)] + ".toml")
        try:
            with sidecar.open(encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
        except OSError:
            continue
        if first.startswith("# Sidecar of") and "written by progression" in first:
            return True
    return False


def is_progression_truth_file(path) -> bool:
    """Whether ``path`` is a truth table progression wrote (header ``subject,...,time_offset``)
    or belongs to a cohort it wrote."""
    if is_progression_cohort_file(path):
        return True
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline().strip().split(",")
    except OSError:
        return False
    return bool(header) and header[0] == "subject" and "time_offset" in header
