import os
import tempfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

# The suite compiles into its own cache folder (inherited by the CLI subprocesses it starts), so
# that a test run neither reads stale entries from nor writes into the user's ~/.cache.
_CACHE = tempfile.TemporaryDirectory(prefix="progression-test-cache-")
os.environ["PROGRESSION_CACHE_DIR"] = _CACHE.name

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS
