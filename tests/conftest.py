import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS
