"""The on-disk cache of compiled models: a second load runs no sympy and gives identical results.

Every test points the cache at its own temporary folder (``PROGRESSION_CACHE_DIR``), so the
suite never writes to the user's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.model import _cache, compiled


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh cache folder and an empty in-memory cache for every test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(folder))
    monkeypatch.delenv("PROGRESSION_NO_CACHE", raising=False)
    monkeypatch.setattr(compiled, "_CACHE", {})
    return folder


def fresh(spec, **kwargs):
    """Compile ``spec`` as a new process would (nothing in memory)."""
    compiled._CACHE.clear()
    return pg.compile_model(spec, **kwargs)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("models/*/*.json"))


def evaluate(model, seed=0):
    """Every core function on random states and parameters near the defaults."""
    rng = np.random.default_rng(seed)
    m = 4
    y = np.abs(rng.normal(1.0, 0.3, (model.n_states, m)))
    p = model.defaults[:, None] * rng.uniform(0.8, 1.2, (model.n_parameters, m))
    return {name: getattr(model, name)(0.7, y, p) for name in compiled._CORE}


SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    import progression as pg
    from progression.model import _cache
    model = pg.load_model(sys.argv[1])
    sim = pg.simulate(model, times=np.linspace(0, 24, 49), sensitivities=True)
    np.save(sys.argv[2], np.concatenate([sim.states.ravel(), sim.observables.ravel(),
                                         sim.state_sensitivities.ravel()]))
    print("sympy" in sys.modules, _cache.stats["compiled"], _cache.stats["hits"])
""")


def _simulate_in_subprocess(name, out, env):
    run = subprocess.run([sys.executable, "-c", SCRIPT, name, str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    sympy_loaded, compiled_count, hits = run.stdout.split()
    return sympy_loaded == "True", int(compiled_count), int(hits)


def test_second_process_loads_from_cache_without_sympy_and_simulates_identically(cache_dir,
                                                                                  tmp_path):
    env = {**os.environ, "PROGRESSION_CACHE_DIR": str(cache_dir)}
    first = _simulate_in_subprocess("d50", tmp_path / "first.npy", env)
    assert first == (True, 1, 0)
    assert entries(cache_dir)
    second = _simulate_in_subprocess("d50", tmp_path / "second.npy", env)
    assert second[0] is False, "the second load imported sympy"
    assert second[1] == 0 and second[2] >= 1
    a, b = np.load(tmp_path / "first.npy"), np.load(tmp_path / "second.npy")
    assert np.array_equal(a, b, equal_nan=True)  # bit-identical


def test_cached_functions_equal_freshly_generated_ones(cache_dir):
    spec = pg.model.library.library_spec("als_reduced")
    built = fresh(spec)
    assert _cache.stats["compiled"] >= 1
    before = _cache.stats["compiled"]
    loaded = fresh(spec)
    assert loaded is not built and _cache.stats["compiled"] == before
    assert "_symbolic" not in loaded.__dict__  # nothing symbolic was needed
    a, b = evaluate(built), evaluate(loaded)
    for name in compiled._CORE:
        assert np.array_equal(a[name], b[name], equal_nan=True), name
    assert np.array_equal(built.jacobian_sparsity, loaded.jacobian_sparsity)
    assert loaded.sources["jac"] == built.sources["jac"]


def test_sensitivity_and_jump_functions_are_cached_too(cache_dir):
    spec = pg.model.library.library_spec("d50")
    model = fresh(spec)
    cols = [0, 1]
    n = model.n_states
    Y = np.vstack([np.full((n, 3), 0.4), np.full((2 * n, 3), 0.1)])
    Pa = np.vstack([model.defaults[:, None].repeat(3, 1), np.ones((2, 3))])
    g1 = model.sensitivity_rhs(cols)(1.0, Y, Pa)
    d1 = model.dfdp_columns(cols)(1.0, Y[:n], Pa[:-2])
    state = model.state_names[0]
    j1 = model.jump({state: f"{state} * 0.5"}).apply(0.0, Y[:n], Pa[:-2])
    count = _cache.stats["compiled"]
    again = fresh(spec)
    g2 = again.sensitivity_rhs(cols)(1.0, Y, Pa)
    d2 = again.dfdp_columns(cols)(1.0, Y[:n], Pa[:-2])
    j2 = again.jump({state: f"{state} * 0.5"}).apply(0.0, Y[:n], Pa[:-2])
    assert "_symbolic" not in again.__dict__
    assert _cache.stats["compiled"] == count
    assert np.array_equal(g1, g2) and np.array_equal(d1, d2) and np.array_equal(j1, j2)
    assert np.allclose(j2, 0.5 * Y[:n])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "checksum", "bad source",
                                    "wrong function", "empty", "folder"])
def test_a_damaged_entry_is_ignored_and_rebuilt(cache_dir, damage):
    spec = pg.model.library.library_spec("d50")
    reference = evaluate(fresh(spec))
    (entry,) = entries(cache_dir)
    text = entry.read_text()
    payload = json.loads(text)
    if damage == "truncate":
        entry.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(512))
    elif damage == "checksum":
        payload["sources"]["rhs"] = payload["sources"]["rhs"].replace("_out", "_o")
        entry.write_text(json.dumps(payload))
    elif damage in ("bad source", "wrong function"):
        new = ("def rhs(t, y, p):\n    return (" if damage == "bad source"
               else "def other(t, y, p):\n    return 0\n")
        payload["sources"]["rhs"] = new
        payload["checksum"] = _cache._checksum(payload)
        entry.write_text(json.dumps(payload))
    elif damage == "empty":
        entry.write_text("")
    else:
        entry.unlink()
        entry.mkdir()
    compiled_before = _cache.stats["compiled"]
    model = fresh(spec)
    assert _cache.stats["compiled"] == compiled_before + 1  # rebuilt with sympy
    got = evaluate(model)
    for name in compiled._CORE:
        assert np.array_equal(got[name], reference[name], equal_nan=True), name
    if damage != "folder":  # a folder in the way cannot be replaced by a file: skipped
        assert fresh(spec) is not None and _cache.ModelCache.for_spec(spec).load("core")


def test_cache_can_be_switched_off(cache_dir, monkeypatch):
    spec = pg.model.library.library_spec("d50")
    fresh(spec, cache=False)
    assert not cache_dir.exists()
    monkeypatch.setenv("PROGRESSION_NO_CACHE", "1")
    fresh(spec)
    assert not cache_dir.exists()
    monkeypatch.setenv("PROGRESSION_NO_CACHE", "0")
    fresh(spec)
    assert entries(cache_dir)


def test_an_unwritable_cache_never_fails_a_load(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(blocker / "cache"))
    model = fresh(pg.model.library.library_spec("d50"))
    assert model.rhs(0.0, np.ones((1, 2)), model.defaults[:, None].repeat(2, 1)).shape == (1, 2)
    assert blocker.read_text() == "x"


def test_key_follows_content_version_and_backend(monkeypatch):
    spec = pg.model.library.library_spec("d50")
    same = pg.parse_model(spec.text.replace("[model]", "# a comment\n[model]"), "other.toml")
    changed = pg.parse_model(spec.text.replace("[model]", "[model]", 1)
                             .replace('time_unit = "month"', 'time_unit = "week"'), "x.toml")
    key = _cache.ModelCache("/c", spec.fingerprint).key
    assert _cache.ModelCache("/c", same.fingerprint).key == key
    assert _cache.ModelCache("/c", changed.fingerprint).key != key
    monkeypatch.setattr(pg, "__version__", "99.0")
    assert _cache.ModelCache("/c", spec.fingerprint).key != key
    monkeypatch.setattr(pg, "__version__", pg.__version__)
    monkeypatch.setattr(_cache, "BACKEND", "other-printer")
    assert _cache.ModelCache("/c", spec.fingerprint).key != key


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PROGRESSION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.cache_folder() == tmp_path / "xdg" / "progression"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _cache.cache_folder() == tmp_path / "home" / ".cache" / "progression"
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(tmp_path / "mine"))
    assert _cache.cache_folder() == tmp_path / "mine"
    assert _cache.cache_folder(False) is None
    assert _cache.cache_folder(tmp_path / "arg") == tmp_path / "arg"


CONCURRENT = textwrap.dedent("""
    import sys, numpy as np
    import progression as pg
    model = pg.load_model(sys.argv[1])
    y = np.full((model.n_states, 3), 0.5)
    p = np.repeat(model.defaults[:, None], 3, axis=1)
    print(float(model.rhs(0.0, y, p).sum()).hex())
""")


def test_processes_compiling_the_same_model_at_once_all_succeed(cache_dir):
    env = {**os.environ, "PROGRESSION_CACHE_DIR": str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, "pk_oral"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1
    # One whole entry, no temporary files left behind.
    folder = next(cache_dir.glob("models/*"))
    # (with the numba backend, the compiled module and numba's own cache beside the entry)
    assert sorted(f.name for f in folder.iterdir()) in (
        ["core.json"], ["__pycache__", "core.json", "core_numba.py"])
    assert not [f for f in folder.rglob("*") if f.name.endswith(".tmp")]
    assert _cache.ModelCache.for_spec(pg.model.library.library_spec("pk_oral")).load("core")


def test_sympy_version_is_read_without_importing_sympy():
    import sympy

    _cache._SYMPY_VERSION = None
    assert _cache._sympy_version() == sympy.__version__
