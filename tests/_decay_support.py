"""A closed-form fitting problem for the estimator tests: first-order decay observed as log x.

``tests/models/decay.toml``: x(t) = x0 exp(-k t); log x = log x0 - k t with additive error
``A`` at times ``T``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from progression.fit import Design, EstimationProblem, Problem, parse_fit_config
from progression.parallel import InProcess

MODELS = Path(__file__).parent / "models"
A = 0.05
T = np.linspace(0.0, 4.0, 12)


def decay_data(k_true=(0.5, 1.3, 0.8), x0=(2.0, 2.0, 2.0), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, (k, x) in enumerate(zip(k_true, x0, strict=True)):
        y = np.log(x) - k * T + A * rng.standard_normal(T.size)
        out.append(Design(f"S{i + 1}", T, np.zeros(T.size, int), y, np.zeros(T.size, int),
                          np.full(T.size, np.nan)))
    return out


#: The decay configs' [solver]: exact outputs with forward sensitivities at rtol 1e-10.
SOLVER = """[solver]
rtol = 1e-10
atol = 1e-12
outputs = "exact"
sensitivities = "forward"
"""
#: The decay configs' [estimator] options (before ``extra``).
OPTIONS = "ftol = 1e-12\nxtol = 1e-12\n"


def config_text(*, estimator="individual", k="subject", x0="fixed", extra="", k_value=0.3,
                k_lines="", a=A, sections="", solver=SOLVER, options=OPTIONS) -> str:
    """The TOML of a decay fit: ``[parameters.k]`` estimated as ``k`` from ``k_value`` (plus
    ``k_lines``), ``[parameters.x0]`` as ``x0`` from 2.0 (None: no section, the model's
    value), additive error ``a`` (a number or an inline table), then ``sections`` (more
    tables, e.g. ``[parameters.time_offset]``), ``solver`` and ``[estimator]`` with
    ``options`` and ``extra`` lines."""
    x0_section = "" if x0 is None else f"""[parameters.x0]
estimate = "{x0}"
value = 2.0
bounds = [0.1, 10.0]
"""
    return f"""
[fit]
model = "decay.toml"
estimator = "{estimator}"
[data]
path = "decay.toml"
[error.log_x]
model = "additive"
a = {a}
[parameters.k]
estimate = "{k}"
value = {k_value}
{k_lines}{x0_section}{sections}{solver}[estimator]
{options}{extra}"""


def config(tmp_path, *, name=None, **text):
    """The parsed decay fit config (:func:`config_text`'s keywords), ``decay.toml`` copied
    into ``tmp_path``; ``name`` defaults to ``decay_<estimator>``."""
    shutil.copy(MODELS / "decay.toml", tmp_path / "decay.toml")
    name = name or f"decay_{text.get('estimator', 'individual')}"
    return parse_fit_config(config_text(**text), base_dir=tmp_path, name=name,
                            source=str(tmp_path / f"{name}.toml"))


def estimation_problem(cfg, data):
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(data)
    return EstimationProblem(problem=problem, designs=data, options=cfg.options,
                             executor=InProcess(), name=cfg.name, source=cfg.source)
