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


def config(tmp_path, *, estimator="individual", k="subject", x0="fixed", extra=""):
    shutil.copy(MODELS / "decay.toml", tmp_path / "decay.toml")
    text = f"""
[fit]
model = "decay.toml"
estimator = "{estimator}"
[data]
path = "decay.toml"
[error.log_x]
model = "additive"
a = {A}
[parameters.k]
estimate = "{k}"
value = 0.3
[parameters.x0]
estimate = "{x0}"
value = 2.0
bounds = [0.1, 10.0]
[solver]
rtol = 1e-10
atol = 1e-12
outputs = "exact"
sensitivities = "forward"
[estimator]
ftol = 1e-12
xtol = 1e-12
{extra}"""
    return parse_fit_config(text, base_dir=tmp_path, name=f"decay_{estimator}",
                            source=str(tmp_path / f"decay_{estimator}.toml"))


def estimation_problem(cfg, data):
    problem = Problem.from_config(cfg)
    problem.fix_grid_step(data)
    return EstimationProblem(problem=problem, designs=data, options=cfg.options,
                             executor=InProcess(), name=cfg.name, source=cfg.source)
