"""Built-in models, shipped as TOML package data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ...errors import ModelError, did_you_mean
from ..compiled import CompiledModel, PythonModel, compile_model
from ..spec import ModelSpec, parse_model, read_model_file

__all__ = ["available_models", "load_model", "library_spec", "library_text"]


def available_models() -> list[str]:
    """Names of the built-in models."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def library_spec(name: str) -> ModelSpec:
    """The spec of a built-in model, by name."""
    return parse_model(library_text(name), source=f"{name}.toml (built-in)")


def library_text(name: str) -> str:
    """The TOML text of a built-in model, by name."""
    names = available_models()
    if name not in names:
        hint = did_you_mean(name, names)
        raise ModelError(f"no built-in model {name!r} (available: {', '.join(names)}){hint}")
    return resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")


def load_model(model, *, cache=None, backend: str | None = None) -> CompiledModel | PythonModel:
    """Return a ready-to-simulate model.

    Parameters
    ----------
    model : str, path, ModelSpec, CompiledModel or PythonModel
        A built-in name (``"als_systemic"``), a path to a model file (``*.toml``), a parsed
        spec, or an already compiled model (returned as it is, whatever ``backend`` says).
    cache : None, bool or path, optional
        The disk cache of generated code (see :func:`~progression.compile_model`).
    backend : {"numba", "numpy"} or None, optional
        The code a name, file or spec is compiled to (see :func:`~progression.compile_model`;
        None: numba when installed unless ``PROGRESSION_BACKEND`` says otherwise).
    """
    if isinstance(model, CompiledModel | PythonModel):
        return model
    if isinstance(model, ModelSpec):
        return compile_model(model, cache=cache, backend=backend)
    if isinstance(model, Path) or (isinstance(model, str) and
                                   (model.endswith(".toml") or "/" in model)):
        return compile_model(read_model_file(model), cache=cache, backend=backend)
    if isinstance(model, str):
        return compile_model(library_spec(model), cache=cache, backend=backend)
    raise ModelError(f"expected a model name, a model file or a model object, found "
                     f"{type(model).__name__}")
