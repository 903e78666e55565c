"""ALS defaults of the generic virtual layer, read from ``defaults.toml``.

:func:`defaults_for` is what :func:`progression.virtual.content.defaults_for` asks: for an ALS
model (a built-in ALS model, or any model with an ``ALSFRS_R`` observable) it returns the
between-subject variability of the §5 virtual cohort, the data clock of virtual populations
(12 months after clinical onset), the scenario endpoints and the ALSFRS-R scale of virtual
trials; for any other model nothing.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from ..errors import ConfigError
from ..virtual.population import Variability

__all__ = ["defaults_for", "default_model", "applies_to", "ALS_VARIABILITY", "FILE"]

FILE = "defaults.toml"


@cache
def _document() -> dict:
    text = resources.files(__package__).joinpath(FILE).read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"progression/als/{FILE}: not valid TOML: {exc}") from None


def _variability(table: dict) -> Variability:
    return Variability(
        log_sd=dict(table.get("log_sd", {})),
        normal_sd=dict(table.get("normal_sd", {})),
        shared=tuple((tuple(s["parameters"]), float(s["log_mean"]), float(s["log_sd"]))
                     for s in table.get("shared", ())))


#: The virtual cohort of als-biology.md §5 [D] (``[variability]`` of ``defaults.toml``).
ALS_VARIABILITY = _variability(_document()["variability"])


def applies_to(model) -> bool:
    """Whether ``model`` is an ALS model: a built-in ALS model by name, or a model with an
    ALS observable (``[applies]`` of ``defaults.toml``)."""
    applies = _document()["applies"]
    if getattr(model, "name", None) in applies["models"]:
        return True
    names = set(getattr(model, "observable_names", ()))
    return bool(names & set(applies["observables"]))


def default_model() -> str:
    """The model used when none is given (``als_systemic``)."""
    return _document()["applies"]["default_model"]


def defaults_for(model) -> dict:
    """``{"variability": Variability, "endpoints": {...}, "trial": {...}, "population":
    {"anchor": ..., "delay": ...}}`` for an ALS model, ``{}`` for any other."""
    if not applies_to(model):
        return {}
    doc = _document()
    endpoints = dict(doc["endpoints"])
    for key in ("times", "slope_window", "markers"):
        endpoints[key] = tuple(endpoints[key])
    return {"variability": ALS_VARIABILITY, "endpoints": endpoints, "trial": dict(doc["trial"]),
            "population": dict(doc["population"])}
