"""Choosing the backend (numba or numpy), the numpy fallback without numba, numba's disk cache.

Every test compiles into its own cache folder (``PROGRESSION_CACHE_DIR``) and clears the
in-memory cache of compiled models, so it sees what a new process would.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.errors import ConfigError
from progression.model import _cache, _kernels, compiled

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PROGRESSION_CACHE_DIR", str(folder))
    monkeypatch.delenv("PROGRESSION_NO_CACHE", raising=False)
    monkeypatch.delenv("PROGRESSION_BACKEND", raising=False)
    monkeypatch.setattr(compiled, "_CACHE", {})
    return folder


def spec(name="pk_oral"):
    return pg.model.library.library_spec(name)


def evaluate(model, seed=0):
    """Every core function at random states (some negative) and parameters."""
    rng = np.random.default_rng(seed)
    m = 5
    y = rng.normal(1.0, 0.8, (model.n_states, m))
    p = model.defaults[:, None] * rng.uniform(0.5, 1.5, (model.n_parameters, m))
    with np.errstate(all="ignore"):
        return {name: getattr(model, name)(0.7, None if name in ("initial", "dinitial_dp")
                                           else y, p) for name in compiled._CORE}


def assert_same(a, b, rtol=1e-12):
    """Equal to ``rtol`` relative to the larger of the entry's magnitude and its largest over
    the subjects (the backends differ by ulps of exp/tanh/pow, which a difference of nearly
    equal terms amplifies; see tests/test_model_kernels.py)."""
    for name in compiled._CORE:
        got, want = a[name], b[name]
        assert got.shape == want.shape, name
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        if not want.size:
            continue
        finite = np.isfinite(want)
        assert np.array_equal(got[~finite], want[~finite], equal_nan=True), name
        magnitude = np.where(finite, np.abs(want), 0.0)
        scale = np.maximum(magnitude, magnitude.max(axis=-1, keepdims=True))
        err = np.where(finite, np.abs(got - want), 0.0) / np.where(scale > 0, scale, 1.0)
        assert err.max() <= rtol, (name, err.max())


def test_default_backend_is_numba_and_the_environment_or_argument_chooses():
    default = pg.compile_model(spec())
    assert default.backend == "numba" and default.kernels is not None
    assert isinstance(default.rhs, _kernels.BatchFunction)
    numpy_model = pg.compile_model(spec(), backend="numpy")
    assert numpy_model.backend == "numpy" and numpy_model.kernels is None
    assert numpy_model is not default  # the in-memory cache keys on the backend too
    assert not isinstance(numpy_model.rhs, _kernels.BatchFunction)
    assert_same(evaluate(default), evaluate(numpy_model))


def test_environment_variable_chooses_and_the_argument_wins(monkeypatch):
    monkeypatch.setenv("PROGRESSION_BACKEND", "numpy")
    assert pg.compile_model(spec()).backend == "numpy"
    assert pg.compile_model(spec(), backend="numba").backend == "numba"
    monkeypatch.setenv("PROGRESSION_BACKEND", " NUMBA ")
    assert pg.compile_model(spec()).backend == "numba"
    assert pg.load_model("pk_oral").backend == "numba"


def test_an_unknown_backend_is_one_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"backend=.*expected one of 'numba', 'numpy', "
                                          r"found 'cuda'"):
        pg.compile_model(spec(), backend="cuda")
    monkeypatch.setenv("PROGRESSION_BACKEND", "jax")
    with pytest.raises(ConfigError, match=r"PROGRESSION_BACKEND: expected one of 'numba', "
                                          r"'numpy', found 'jax'"):
        pg.compile_model(spec())


def test_disk_cache_keys_differ_by_backend(cache_dir):
    fingerprint = spec().fingerprint
    keys = {b: _cache.ModelCache(cache_dir, fingerprint, b).key for b in ("numpy", "numba")}
    assert keys["numpy"] != keys["numba"]
    for backend in ("numpy", "numba"):
        evaluate(pg.compile_model(spec(), backend=backend))
    folders = {p.parent.name for p in cache_dir.glob("models/*/core.json")}
    assert folders == set(keys.values())
    assert (cache_dir / "models" / keys["numba"] / "core_numba.py").is_file()  # first use
    assert not (cache_dir / "models" / keys["numpy"] / "core_numba.py").exists()


@pytest.mark.parametrize("name", ["pk_oral", "als_reduced"])
def test_without_numba_everything_falls_back_to_numpy(monkeypatch, name):
    reference = evaluate(pg.compile_model(spec(name), backend="numba"))
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    monkeypatch.setattr(_kernels, "_NUMBA", None)
    monkeypatch.setattr(compiled, "_CACHE", {})
    with pytest.raises(ImportError):
        import numba  # noqa: F401
    for backend in (None, "numba"):
        compiled._CACHE.clear()
        model = pg.compile_model(spec(name), cache=False, backend=backend)
        assert model.backend == "numpy" and model.kernels is None
        assert not isinstance(model.rhs, _kernels.BatchFunction)
        assert_same(evaluate(model), reference)
    sim = pg.simulate(model, times=np.linspace(0, 10, 5))
    assert np.isfinite(sim.states).all()


def test_disk_cache_off_still_compiles_with_numba(cache_dir):
    model = pg.compile_model(spec(), cache=False)
    assert model.backend == "numba" and model.kernels is not None
    assert_same(evaluate(model), evaluate(pg.compile_model(spec(), backend="numpy")))
    assert not list(cache_dir.glob("models/*/core_numba.py"))


def test_a_model_that_numba_cannot_compile_falls_back_function_by_function():
    from numba.core.errors import TypingError

    model = pg.compile_model(spec())

    def broken(*args):
        raise TypingError("no implementation")

    rhs = _kernels.BatchFunction("rhs", broken, (model.n_states,), "y", model.rhs.fallback)
    y, p = np.ones((model.n_states, 2)), np.repeat(model.defaults[:, None], 2, axis=1)
    with pytest.warns(RuntimeWarning, match="numba could not compile the model function 'rhs'"):
        got = rhs(0.0, y, p)
    np.testing.assert_array_equal(got, model.rhs.fallback(0.0, y, p))

    def failing(*args):
        raise ZeroDivisionError("not a compile error")

    other = _kernels.BatchFunction("rhs", failing, (model.n_states,), "y", model.rhs.fallback)
    with pytest.raises(ZeroDivisionError):
        other(0.0, y, p)


def test_pickle_round_trip_of_a_numba_model():
    model = pg.compile_model(spec("als_reduced"))
    data = pickle.dumps(model)
    assert pickle.loads(data) is model  # same process: the compiled model in memory
    reference = evaluate(model)
    compiled._CACHE.clear()
    again = pickle.loads(data)
    assert again is not model and again.backend == "numba" and again.kernels is not None
    assert_same(evaluate(again), reference)
    numpy_model = pg.compile_model(spec("als_reduced"), backend="numpy")
    assert pickle.loads(pickle.dumps(numpy_model)).backend == "numpy"


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import progression as pg
    from progression.model import _cache, compiled
    model = pg.load_model(sys.argv[1])
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 0.5, (model.n_states, 3))
    p = np.repeat(model.defaults[:, None], 3, axis=1)
    values = {}
    with np.errstate(all="ignore"):
        for name in compiled._CORE:
            f = getattr(model, name)
            values[name] = f(0.5, None if name in ("initial", "dinitial_dp") else y, p).tolist()
    hits = misses = 0
    for name in compiled._CORE:
        stats = getattr(model, name).batch.stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    print(json.dumps({"sympy": "sympy" in sys.modules, "compiled": _cache.stats["compiled"],
                      "backend": model.backend, "numba_hits": hits, "numba_misses": misses,
                      "values": values}))
""")


def run(name, cache_dir):
    env = {**os.environ, "PROGRESSION_CACHE_DIR": str(cache_dir)}
    env.pop("PROGRESSION_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, name], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_second_process_loads_without_sympy_and_with_numbas_cache(cache_dir):
    first = run("pk_oral", cache_dir)
    assert first["backend"] == "numba" and first["compiled"] == 1
    assert first["numba_misses"] == len(compiled._CORE) and first["numba_hits"] == 0
    second = run("pk_oral", cache_dir)
    assert second["sympy"] is False and second["compiled"] == 0
    assert second["numba_hits"] == len(compiled._CORE) and second["numba_misses"] == 0
    assert second["values"] == first["values"]  # bit-identical

    # A damaged module file is rewritten from the entry's checksummed record (no sympy);
    # numba's cache of the old file no longer matches its time stamp: compiled afresh.
    (module,) = cache_dir.glob("models/*/core_numba.py")
    record = module.read_text()
    module.write_text("def _batch_rhs(:\n garbage")
    third = run("pk_oral", cache_dir)
    assert module.read_text() == record
    assert third["compiled"] == 0 and third["sympy"] is False
    assert third["values"] == first["values"]
    assert run("pk_oral", cache_dir)["numba_misses"] == 0

    # Damaged numba cache files (index and data) are misses: compiled and written anew.
    for path in module.parent.glob("__pycache__/*"):
        path.write_bytes(os.urandom(64))
    fourth = run("pk_oral", cache_dir)
    assert fourth["values"] == first["values"] and fourth["numba_misses"] > 0
    fifth = run("pk_oral", cache_dir)
    assert fifth["numba_misses"] == 0 and fifth["numba_hits"] == len(compiled._CORE)


def test_someone_elses_module_folder_is_not_used(cache_dir, monkeypatch):
    """numba runs the machine code it finds beside the module: a folder owned by another user
    is neither read nor written; the module runs from its source, uncached."""
    model = pg.compile_model(spec())
    reference = evaluate(model)
    file_backed = model.kernels.rhs.py_func.__code__.co_filename
    assert file_backed.endswith("core_numba.py")
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    compiled._CACHE.clear()
    other = pg.compile_model(spec())
    assert other.kernels.rhs.py_func.__code__.co_filename.startswith("<progression generated")
    assert_same(evaluate(other), reference)


def test_numba_is_loaded_on_first_use_only():
    """Loading a model neither imports its numba module nor compiles: commands that only
    describe a model do not pay for numba."""
    model = pg.compile_model(spec("als_reduced"), cache=False)
    assert model.backend == "numba" and model._core_module._module is None
    assert all(getattr(model, name).batch is None for name in compiled._CORE)
    y = np.ones((model.n_states, 2))
    p = np.repeat(model.defaults[:, None], 2, axis=1)
    model.rhs(0.0, y, p)
    assert model._core_module._module is not None and model.rhs.batch is not None
    assert model.kernels is not None


def test_a_numba_that_cannot_be_loaded_gives_the_numpy_code_and_says_so(monkeypatch):
    reference = evaluate(pg.compile_model(spec("als_reduced"), backend="numpy"))

    def broken(self, entry, source):
        raise ImportError("numba is broken here")

    monkeypatch.setattr(compiled.CompiledModel, "_numba_module", broken)
    model = pg.compile_model(spec("als_reduced"), cache=False)
    assert model.backend == "numba"  # installed, not yet loaded
    with pytest.warns(RuntimeWarning, match="cannot be loaded.*numba is broken here"):
        got = evaluate(model)
    assert_same(got, reference)
    assert model.backend == "numpy" and model.kernels is None
    assert model.sensitivity_kernel([0]) is None
