"""Malformed ``[solver]`` tables of a scenario config (``progression compare CONFIG``): exit 2,
one message naming the file and the key ``solver.<key>``, no traceback, nothing written; and
the Python API refuses bad ``solver=`` values the same way."""

import pytest

from progression.errors import ConfigError

# The working scenario config of test_bad_configs.py; each case changes only [solver].
COMPARE = {
    "source": 'model = "als_reduced"\nn = 5\nseed = 1',
    "compare": "horizon = 12",
    "scenarios": '"no treatment" = []\n"half kA" = [{ scale = { kA = 0.5 } }]',
}


def compare_text(**sections) -> str:
    return "\n".join(f"[{name}]\n{body}\n" for name, body in {**COMPARE, **sections}.items()
                     if body is not None)

CASES = [
    # (id, [solver] body, strings the message must name)
    ("unknown key", 'methd = "BDF"', ["solver.methd", "did you mean 'method'"]),
    ("fit-only key", 'sensitivities = "forward"', ["solver.sensitivities", "allowed"]),
    ("unknown method", 'method = "RK99"', ["solver.method", "RK99", "LSODA"]),
    ("negative rtol", "rtol = -1e-6", ["solver.rtol", "positive", "-1e-06"]),
    ("zero atol", "atol = 0", ["solver.atol", "positive"]),
    ("rtol as text", 'rtol = "tight"', ["solver.rtol", "'tight'"]),
    ("nan max_step", "max_step = nan", ["solver.max_step", "nan"]),
    ("too few max_steps", "max_steps = 3", ["solver.max_steps", ">= 10", "3"]),
    ("fractional max_steps", "max_steps = 1e4", ["solver.max_steps", "integer"]),
    ("not a table", None, ["solver", "expected a table"]),
]


@pytest.mark.parametrize("body, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_solver_table_is_refused(cli, refused, unchanged, tmp_path, body, names):
    cfg = tmp_path / "scenarios.toml"
    text = compare_text(solver=body) if body is not None else \
        'solver = "BDF"\n' + compare_text()
    cfg.write_text(text)
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out")
    refused(outcome, str(cfg), *names)
    assert not (tmp_path / "out").exists()


def test_solver_and_compare_integration_keys_together_are_refused(cli, refused, unchanged,
                                                                 tmp_path):
    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text(compare='horizon = 12\nrtol = 1e-8', solver='method = "BDF"'))
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out")
    refused(outcome, str(cfg), "compare.rtol", "[solver]")


def test_a_good_solver_table_reaches_compare(tmp_path):
    """Control: the same file with a valid [solver] table is read into SolverOptions."""
    from progression import SolverOptions
    from progression._compare_config import read_compare_config

    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text(solver='method = "BDF"\nrtol = 1e-8\nmax_steps = 20000'))
    got = read_compare_config(cfg).options["solver"]
    assert got == SolverOptions(method="BDF", rtol=1e-8, max_steps=20000)


@pytest.mark.parametrize("solver, names", [
    ({"methd": "BDF"}, ["methd"]),
    ({"rtol": 0}, ["rtol", "positive"]),
    ("BDF", ["solver", "str"]),
])
def test_python_api_refuses_bad_solver_values(solver, names):
    import progression as pg

    pop = pg.VirtualPopulation.typical("als_reduced")
    with pytest.raises(ConfigError) as info:
        pg.compare(pop, {"none": []}, horizon=1.0, solver=solver)
    for name in names:
        assert name in str(info.value)
    with pytest.raises(ConfigError) as info:
        pg.VirtualTrial({"a": [], "b": []}, model="als_reduced", solver=solver)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("argv, names", [
    (["--jobs", "0"], ["--jobs", "positive integer", "0"]),
    (["--jobs", "two"], ["--jobs", "two"]),
])
def test_bad_jobs_for_compare_is_refused(cli, refused, unchanged, tmp_path, argv, names):
    cfg = tmp_path / "scenarios.toml"
    cfg.write_text(compare_text())
    with unchanged(tmp_path):
        outcome = cli("compare", cfg, "--out", tmp_path / "out", *argv)
    refused(outcome, *names)
    assert not (tmp_path / "out").exists()
