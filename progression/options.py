"""Small immutable option objects shared by every layer.

:class:`SolverOptions` is the one description of how ODEs are integrated: ``simulate``,
fitting, ``compare`` and :class:`~progression.VirtualTrial` all take it (``solver=``), so a
user who asks for BDF at 1e-8 gets BDF at 1e-8 everywhere, not only where a keyword happened
to be threaded through.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .errors import ConfigError

__all__ = ["SolverOptions", "SOLVER_METHODS", "SENSITIVITY_MODES"]

#: Integration methods ``simulate`` accepts (the keys of :data:`progression.simulate.METHODS`,
#: repeated here so that options validate without importing scipy; a test keeps them equal).
SOLVER_METHODS = ("auto", "Rodas4", "LSODA", "BDF", "Radau", "RK45", "RK23", "DOP853")
#: How a fit obtains derivatives of the outputs: sensitivity equations solved on the output
#: grid after the states (``"grid"``), or carried by the integrator (``"forward"``).
SENSITIVITY_MODES = ("grid", "forward")


@dataclass(frozen=True, kw_only=True)
class SolverOptions:
    """How to integrate: method, tolerances, step limits and sensitivity mode.

    Parameters
    ----------
    method : str
        One of :data:`SOLVER_METHODS`. Default ``"auto"``: the compiled per-subject Rodas4
        when the model has compiled kernels (numba backend), else the stacked LSODA (stiff-safe,
        switches automatically); ``"Rodas4"`` the per-subject Rodas4 by name; the scipy
        names a stacked batch through that scipy integrator.
    rtol, atol : float
        Relative and absolute local error tolerances (> 0).
    max_step : float
        Largest step in model time units (``inf``: no limit).
    max_steps : int
        Steps per solve before giving up with a failure status (>= 10).
    sensitivities : {"grid", "forward"}
        Fits only: how output sensitivities are computed (see :mod:`progression.fit.problem`).

    Examples
    --------
    >>> tight = SolverOptions(method="BDF", rtol=1e-8, atol=1e-10)
    >>> tight.replace(rtol=1e-6).rtol
    1e-06
    """

    method: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_step: float = math.inf
    max_steps: int = 100_000
    sensitivities: str = "grid"

    def __post_init__(self):
        problems = []
        if self.method not in SOLVER_METHODS:
            problems.append(f"method: expected one of {', '.join(SOLVER_METHODS)}, found "
                            f"{self.method!r}")
        for key in ("rtol", "atol", "max_step"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or math.isnan(value) or value <= 0:
                problems.append(f"{key}: expected a positive number, found {value!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) \
                or self.max_steps < 10:
            problems.append(f"max_steps: expected an integer >= 10, found {self.max_steps!r}")
        if self.sensitivities not in SENSITIVITY_MODES:
            problems.append(f"sensitivities: expected one of {', '.join(SENSITIVITY_MODES)}, "
                            f"found {self.sensitivities!r}")
        if problems:
            raise ConfigError("solver options: " + "; ".join(problems))

    def replace(self, **changes) -> SolverOptions:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        """All fields as a plain dict (for ``fit.json`` and reports)."""
        return asdict(self)

    def simulate_kwargs(self) -> dict:
        """The keyword arguments :func:`progression.simulate` takes for these options."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol,
                "max_step": self.max_step, "max_steps": self.max_steps}

    @classmethod
    def coerce(cls, value, **defaults) -> SolverOptions:
        """``None`` -> the defaults (``defaults`` override the class defaults); a
        ``SolverOptions`` as is; a mapping of field names -> validated options."""
        if value is None:
            return cls(**defaults)
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError(f"solver options: unknown key(s) {', '.join(unknown)}; "
                                  f"expected some of {', '.join(cls.__dataclass_fields__)}")
            return cls(**{**defaults, **value})
        raise ConfigError(f"solver: expected SolverOptions or a mapping, found "
                          f"{type(value).__name__}")
