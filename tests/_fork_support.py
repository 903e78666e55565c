"""Run a check in a forked child and report whether it passed (the fork-safety tests).

GNU OpenMP is not fork-safe: numba terminates a forked child that starts a parallel region
after its parent did. The tests fork after the parent used numba's threads and ask the child
to compute; a child that is terminated, raises or computes other numbers reports a failure.
"""

from __future__ import annotations

import os


def in_forked_child(check) -> bytes:
    """Fork, run ``check()`` (returns bool) in the child and return its one-byte report:
    ``b"\\x00"`` passed, ``b"\\x01"`` returned False, ``b"\\x03"`` raised, ``b""`` the child
    died before reporting (e.g. terminated by OpenMP)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                              # the child: report and leave
        code = 3
        try:
            code = 0 if check() else 1
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    got = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    return got
