"""On-disk cache of compiled models: the generated numpy source, so sympy runs once per model.

Deriving a model's Jacobian and parameter derivatives with sympy and generating code takes
seconds for the ALS models, and importing sympy alone about one second; the generated source is
a few hundred kilobytes of plain Python. It is kept per user, in

1. ``$PROGRESSION_CACHE_DIR`` if set, else
2. ``$XDG_CACHE_HOME/progression`` if ``XDG_CACHE_HOME`` is set, else
3. ``~/.cache/progression``,

under ``models/<key>/<entry>.json``. The key hashes the model's normalised content
(:attr:`ModelSpec.fingerprint`: not its file name, comments or formatting), the package
version, the code generator's name, sympy's version and the backend (for numba also its
generator's name and numba's version), so a change to any of them compiles afresh. With the
numba backend an entry also has a generated module ``<entry>_numba.py`` beside it (written from
the entry's checksummed record, rewritten whenever it differs from it) and numba's own cache of
its machine code in ``__pycache__``, so a later process neither runs sympy nor compiles.
``PROGRESSION_NO_CACHE=1`` (or ``cache=False`` in :func:`~progression.compile_model`) disables
it.

Entries are written atomically (a temporary file in the same folder, then :func:`os.replace`),
so processes compiling the same model at once each write a whole entry and readers never see a
partial one. An entry that cannot be read, does not parse, fails its checksum, belongs to another
user or does not define the expected functions is ignored and rebuilt; the cache never makes a
load fail. Entries hold Python source that is executed when loaded, and numba's ``__pycache__``
holds machine code that numba runs: like any file under your home folder, the cache folder must
be writable by you only (a numba folder owned by someone else is not used). A damaged numba
cache file is a miss: the function is compiled and its cache written anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["BACKEND", "FORMAT", "ModelCache", "cache_folder", "stats", "write_atomic"]

#: Layout version of an entry.
FORMAT = 1
#: Name of the code generator; change it whenever ``_codegen`` writes different code.
BACKEND = "numpy-cse-1"

#: Counters for tests and benchmarks: hits, misses, writes, and sympy compilations.
stats = {"hits": 0, "misses": 0, "writes": 0, "compiled": 0}

_FALSE = {"", "0", "false", "no", "off"}


def cache_folder(cache=None) -> Path | None:
    """The cache folder in use, or None when caching is off.

    Parameters
    ----------
    cache : None, bool, str or path
        None or True: the environment decides (see the module docs); False: off; a path: that
        folder.
    """
    if cache is False:
        return None
    if cache not in (None, True):
        return Path(cache)
    if os.environ.get("PROGRESSION_NO_CACHE", "").strip().lower() not in _FALSE:
        return None
    if os.environ.get("PROGRESSION_CACHE_DIR"):
        return Path(os.environ["PROGRESSION_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "progression"
    return Path.home() / ".cache" / "progression"


def _package_version(package: str, filename: str, pattern: str) -> str:
    """An installed package's version without importing it: its ``__version__`` when it is
    imported already, else the first group of ``pattern`` in the package's file ``filename``,
    else the package metadata (which costs more than everything else a cached load does),
    else ``"unknown"``."""
    import importlib.util
    import re
    import sys

    version = getattr(sys.modules.get(package), "__version__", None)
    if version is None:
        try:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin:
                text = (Path(spec.origin).parent / filename).read_text(encoding="utf-8")
                found = re.search(pattern, text)
                version = found.group(1) if found else None
        except (OSError, ValueError, ImportError):
            version = None
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies
            version = "unknown"
    return version


_SYMPY_VERSION: str | None = None


def _sympy_version() -> str:
    """sympy's version, without importing sympy (its printer decides the generated code):
    read from ``sympy/release.py`` (one small file)."""
    global _SYMPY_VERSION
    if _SYMPY_VERSION is None:
        _SYMPY_VERSION = _package_version("sympy", "release.py",
                                          r"__version__\s*=\s*['\"]([^'\"]+)['\"]")
    return _SYMPY_VERSION


def _backend_parts(backend: str) -> list:
    """What, besides the numpy key, decides a backend's code: its generator and its version."""
    if backend == "numba":
        from ._codegen_numba import GENERATOR

        return ["numba", GENERATOR, _numba_version()]
    return [backend]


_NUMBA_VERSION: str | None = None


def _numba_version() -> str:
    """numba's version, without importing numba (imported only when compiled code runs):
    read from ``numba/_version.py`` (versioneer's record)."""
    global _NUMBA_VERSION
    if _NUMBA_VERSION is None:
        _NUMBA_VERSION = _package_version("numba", "_version.py", r'"version":\s*"([^"]+)"')
    return _NUMBA_VERSION


def _checksum(payload: dict) -> str:
    body = {k: v for k, v in payload.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()



def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` through a temporary file in the same folder and
    :func:`os.replace` (readers never see a partial file); False when it cannot be written."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
        return True
    except (OSError, ValueError):
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class ModelCache:
    """The entries of one model in the disk cache.

    Parameters
    ----------
    folder : path
        The cache folder (see :func:`cache_folder`).
    fingerprint : str
        The model's content hash (:attr:`ModelSpec.fingerprint`).
    backend : {"numba", "numpy"} or None
        The backend whose code the entries hold (part of the key); None: the default one.
    """

    def __init__(self, folder, fingerprint: str, backend: str | None = None):
        from .. import __version__

        if backend is None:  # the backend compile_model would use now
            from .compiled import resolve_backend

            backend = resolve_backend()
        parts = [FORMAT, __version__, BACKEND, _sympy_version(), fingerprint]
        if backend != "numpy":
            parts += _backend_parts(backend)
        self.backend = backend
        self.key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
        self.folder = Path(folder) / "models" / self.key

    @classmethod
    def for_spec(cls, spec, cache=None, backend: str | None = None) -> ModelCache | None:
        """The cache of ``spec``'s entries for ``backend`` (None: the default backend, see
        :func:`~progression.model.compiled.resolve_backend`), or None when caching is off."""
        folder = cache_folder(cache)
        return None if folder is None else cls(folder, spec.fingerprint, backend)

    def path(self, entry: str) -> Path:
        return self.folder / f"{entry}.json"

    def module_path(self, entry: str) -> Path:
        """Where the generated numba module of ``entry`` lives (numba caches its machine code
        in ``__pycache__`` beside it)."""
        return self.folder / f"{entry}_numba.py"

    def load(self, entry: str) -> dict | None:
        """The stored payload of ``entry``, or None if absent or unusable (never raises)."""
        path = self.path(entry)
        try:
            if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
                return None  # someone else's file: its code is not executed here
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError, MemoryError):
            stats["misses"] += 1
            return None
        if (not isinstance(payload, dict) or payload.get("format") != FORMAT
                or payload.get("key") != self.key or payload.get("entry") != entry
                or payload.get("checksum") != _checksum(payload)
                or not isinstance(payload.get("sources"), dict)):
            stats["misses"] += 1
            return None
        stats["hits"] += 1
        return payload

    def store(self, entry: str, sources: dict, extra: dict | None = None) -> None:
        """Write ``entry`` atomically; a cache that cannot be written is skipped silently."""
        payload = {"format": FORMAT, "key": self.key, "entry": entry, "sources": sources,
                   "extra": extra or {}}
        payload["checksum"] = _checksum(payload)
        try:
            text = json.dumps(payload)
        except ValueError:
            return
        if write_atomic(self.path(entry), text):
            stats["writes"] += 1
