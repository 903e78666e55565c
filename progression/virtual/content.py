"""Disease content for the generic virtual layer, looked up by model.

The virtual layer knows no disease: where a caller does not give the variability of a virtual
population, the endpoints of a comparison or the functional score of a virtual trial, it asks
the content packages listed in :data:`PROVIDERS` whether they have defaults for the model.
Providers are imported by name on first use, so this layer never imports them (they sit above
it and import it); :mod:`progression.als.defaults` is the one shipped.

A provider module has ``defaults_for(model) -> dict`` (empty when the model is not its
disease; else any of ``"variability"``, ``"endpoints"``, ``"trial"``, ``"population"``
(``{"anchor": event, "delay": time}``: where a virtual population's data clock starts)) and
``default_model() -> str``.
"""

from __future__ import annotations

import importlib

__all__ = ["PROVIDERS", "defaults_for", "default_model"]

#: Modules asked in order; the first with defaults for a model wins.
PROVIDERS = ["progression.als.defaults"]


def _providers():
    return [importlib.import_module(name) for name in PROVIDERS]


def defaults_for(model) -> dict:
    """Defaults of the first provider that knows ``model`` (``{}`` when none does)."""
    for provider in _providers():
        found = provider.defaults_for(model)
        if found:
            return found
    return {}


def default_model():
    """The model used when a virtual population or trial is made without one."""
    for provider in _providers():
        name = provider.default_model()
        if name:
            return name
    return None
