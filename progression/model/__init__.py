"""What a model is: safe expression parsing, model specs, compilation, the built-in library."""

from .compiled import CompiledModel, Jump, PythonModel, compile_model
from .library import available_models, load_model
from .spec import (
    Covariate,
    Event,
    ModelSpec,
    Observable,
    Parameter,
    State,
    parse_model,
    read_model_file,
)

__all__ = [
    "CompiledModel",
    "Covariate",
    "Event",
    "Jump",
    "ModelSpec",
    "Observable",
    "Parameter",
    "PythonModel",
    "State",
    "available_models",
    "compile_model",
    "load_model",
    "parse_model",
    "read_model_file",
]
