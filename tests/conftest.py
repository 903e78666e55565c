import os
import tempfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

# The suite compiles into its own cache folder (inherited by the CLI subprocesses it starts), so
# that a test run neither reads stale entries from nor writes into the user's ~/.cache. Under
# pytest-xdist the controller makes the folder before it starts its workers, and every worker
# takes the controller's (PROGRESSION_TEST_CACHE_DIR in the inherited environment): each model is
# then compiled once per run, not once per worker (the cache is safe under concurrent processes).
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("PROGRESSION_TEST_CACHE_DIR"):
    _CACHE_DIR = os.environ["PROGRESSION_TEST_CACHE_DIR"]
else:
    _CACHE = tempfile.TemporaryDirectory(prefix="progression-test-cache-")
    _CACHE_DIR = os.environ["PROGRESSION_TEST_CACHE_DIR"] = _CACHE.name
os.environ["PROGRESSION_CACHE_DIR"] = _CACHE_DIR

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS
