"""Where a virtual trial's candidates come from, their hazard scores, arm sizes and seed
helpers (moved unchanged from :mod:`progression.virtual.trials`)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


class _Candidates:
    """Candidates of a trial drawn from a population: new patients of a population fit
    (``sampler``), or rows of a fixed parameter table resampled with replacement."""

    def __init__(self, model, description, sampler=None, table=None):
        self.model, self.description = model, description
        self.sampler, self.table = sampler, table

    def sample(self, k: int, rng) -> np.ndarray:
        """(k, P) parameter rows."""
        if self.sampler is not None:
            return self.sampler.values(self.sampler.draw_patients(k, rng))[0]
        return self.table[rng.integers(0, self.table.shape[0], k)]


def _candidate_source(population, variability):
    """The trial's candidates from ``population`` (None: the variability's)."""
    from .population import VirtualPopulation

    if population is None:
        return None
    if variability is not None:
        raise ConfigError("population and variability: give one (the population's "
                          "between-subject variability replaces the variability)")
    if isinstance(population, VirtualPopulation):
        if population.sampler is not None:
            return _Candidates(population.model, population.description.replace(
                f"{population.n_subjects} new patients", "new patients", 1),
                sampler=population.sampler)
        what = population.description or f"{population.n_subjects} virtual subjects"
        return _Candidates(population.model, f"resampled from: {what}",
                           table=np.asarray(population.subject_parameters, dtype=float))
    if hasattr(population, "population_sampler"):
        sampler = population.population_sampler()      # FitError without a population part
        return _Candidates(population.model, f"new patients drawn from the population fit "
                           f"'{sampler.fit_name}'", sampler=sampler)
    raise ConfigError(f"population: expected a population fit or a VirtualPopulation, found "
                      f"{type(population).__name__}")


def _hazard_scores(model, table: np.ndarray, rng) -> None:
    """Draw each candidate's survival score ``z_NAME`` ~ N(0, 1) for every ``[hazards.NAME]``
    of the model that the candidate source leaves at one value (in place).

    A hazard's event fires when the cumulative hazard reaches the patient's Exp(1) threshold
    set by ``z_NAME``; left at its default (0, the median) every patient would die at the
    same cumulative hazard. The draw belongs to the patient, so every arm sees the same one
    (common random numbers). A source that varies ``z_NAME`` itself is left alone.
    """
    spec = getattr(model, "spec", None)
    for hazard in getattr(spec, "hazards", ()):
        j = model.parameter_names.index(hazard.score)
        col = table[:, j]
        if col.size and np.all(col == col[0]):
            table[:, j] = rng.standard_normal(col.size)


def _arm_sizes(n_per_arm, k: int) -> list[int]:
    """Patients per arm from one number or one per arm (positive integers)."""
    sizes = [n_per_arm] * k if np.ndim(n_per_arm) == 0 else list(n_per_arm)
    if len(sizes) != k or any(isinstance(x, bool) or int(x) != x or x < 1 for x in sizes):
        raise ConfigError(f"patients per arm: expected a positive integer or one per arm "
                          f"({k} arms), found {n_per_arm!r}")
    return [int(x) for x in sizes]


def _entropy(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed.entropy
    if isinstance(seed, tuple):
        return list(seed)
    return seed


def _child(seed, k: int):
    base = _entropy(seed)
    base = list(base) if isinstance(base, list) else [0 if base is None else int(base)]
    return tuple(base + [k])


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
