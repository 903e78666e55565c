"""Shared machinery of the bad-input catalogue.

Every case runs the real ``progression`` command in-process (``progression.cli.main``) and
checks the promises of the README: exit status 2, one message that names the file and the
key/row/subject, no traceback, and nothing written or deleted in the folders involved.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files"


def snapshot(*folders) -> dict[str, str]:
    """Every file under ``folders`` (recursively, hidden ones included) with a content hash.

    Folders are included with a marker value so that an added or removed empty folder counts.
    """
    state = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            state[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
            continue
        if not folder.exists():
            state[str(folder)] = "<absent>"
            continue
        for root, dirs, files in os.walk(folder):
            for d in dirs:
                state[str(Path(root) / d)] = "<dir>"
            for f in files:
                p = Path(root) / f
                state[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(capsys, *argv) -> Outcome:
    """Run ``progression ARGV`` in-process; return exit status, stdout and stderr."""
    from progression.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors exit through SystemExit
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_refused(outcome: Outcome, *must_name: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, and an error that mentions every string in ``must_name``."""
    text = outcome.err + outcome.out
    assert outcome.code == code, f"exit {outcome.code}, expected {code}:\n{text}"
    assert "Traceback" not in text, text
    assert "error" in outcome.err.lower(), f"no error line on stderr:\n{text}"
    for name in must_name:
        assert name in text, f"{name!r} not named in:\n{text}"


@pytest.fixture
def cli(capsys):
    """``cli(*argv)`` runs the command in-process and returns an :class:`Outcome`."""
    return lambda *argv: run_cli(capsys, *argv)


@pytest.fixture
def unchanged():
    """``with unchanged(folder, ...):`` asserts nothing under the folders was written or deleted."""
    import contextlib

    @contextlib.contextmanager
    def check(*folders):
        before = snapshot(*folders)
        yield
        after = snapshot(*folders)
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        assert not (added or removed or changed), (
            f"added {added}, removed {removed}, changed {changed}")

    return check


@pytest.fixture
def refused():
    """``refused(outcome, *names, code=2)``: the :func:`assert_refused` check as a fixture."""
    return assert_refused
