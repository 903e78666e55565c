"""Bad command-line arguments and output paths: one clear error naming the option or path,
exit 2 (1 where the input was valid but the computation failed), no traceback, nothing
written or deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent / "files" / "cli"
COMPARE = ROOT / "configs" / "scenarios" / "anti_inflammatory.toml"
CLINIC = ROOT / "configs" / "cohorts" / "als_clinic.toml"
FIT_CONFIG = ROOT / "configs" / "als_synthetic_individual.toml"
DECAY = ROOT / "tests" / "models" / "decay.toml"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder as the current folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ numeric options


@pytest.mark.parametrize(("argv", "names"), [
    (["compare", COMPARE, "--n", "0"], ["--n", "expected a positive integer", "0"]),
    (["compare", COMPARE, "--n", "-5"], ["--n", "expected a positive integer", "-5"]),
    (["compare", COMPARE, "--draws", "-3"], ["--draws", "non-negative integer", "-3"]),
    (["compare", COMPARE, "--n", "many"], ["--n", "'many'"]),
    (["simulate", "d50", "--months", "12", "--step", "0"], ["--step", "positive number"]),
    (["simulate", "d50", "--months", "12", "--step", "-1"], ["--step", "positive number",
                                                             "-1"]),
    (["simulate", "d50"], ["--months", "--until", "found neither"]),
    (["simulate", "d50", "--months", "0"], ["--months", "positive number"]),
    (["simulate", "d50", "--months", "nan"], ["--months", "positive number", "nan"]),
    (["simulate", "d50", "--until", "inf"], ["--until", "positive number", "inf"]),
    (["simulate", "d50", "--months", "12", "--rtol", "0"], ["--rtol", "positive number"]),
    (["simulate", "d50", "--months", "12", "--atol=-1e-9"], ["--atol", "positive number"]),
    (["simulate", "d50", "--months", "12", "--step", "13"], ["--step", "at most", "13"]),
    (["simulate", "d50", "--months", "12", "--method", "Euler"], ["--method", "Euler"]),
    (["cohort", CLINIC, "--out", "c.csv", "--n", "0"], ["--n", "positive integer"]),
    (["cohort", CLINIC, "--out", "c.csv", "--seed", "-1"], ["--seed", "non-negative"]),
    (["fit", FIT_CONFIG, "--jobs", "0"], ["--jobs", "positive integer", "0"]),
    (["fit", FIT_CONFIG, "--jobs", "-2"], ["--jobs", "positive integer", "-2"]),
    (["describe", CLINIC, "--nfl-control", "-20"], ["--nfl-control", "positive number"]),
], ids=lambda v: " ".join(map(str, v)) if isinstance(v, list) else None)
def test_bad_numeric_option(cli, refused, unchanged, work, argv, names):
    with unchanged(work):
        refused(cli(*argv, *(["--out", "sim"] if argv[0] == "simulate" else [])), *names)


# --------------------------------------------------------------------- --set values


@pytest.mark.parametrize(("value", "names"), [
    ("-1", ["--set D50", "non-negative", "5 - 120", "-1"]),
    ("nan", ["--set D50", "finite", "5 - 120", "nan"]),
    ("inf", ["--set D50", "finite", "inf"]),
    ("abc", ["--set D50", "expected a number", "'abc'"]),
])
def test_bad_set_value(cli, refused, unchanged, work, value, names):
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--set", f"D50={value}", "--out",
                    "sim"), *names)


def test_set_outside_the_documented_range_warns_in_one_line(cli, work):
    res = cli("simulate", "d50", "--months", "12", "--set", "D50=500", "--out", "sim")
    assert res.code == 0, res.err
    lines = [li for li in res.err.splitlines() if "D50" in li]
    assert len(lines) == 1 and lines[0].startswith("warning: --set D50=500")
    assert "5 - 120" in lines[0] and ".py" not in lines[0]
    assert (work / "sim" / "simulation.csv").is_file()


# --------------------------------------------------------------------- output paths


def test_out_under_proc_is_one_error_naming_the_path(cli, refused, unchanged, work):
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--out", "/proc/nope/sim"),
                "/proc/nope/sim")


def test_out_is_the_current_folder(cli, refused, unchanged, work, monkeypatch):
    sub = work / "sub"
    sub.mkdir()
    (sub / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(sub)
    for extra in ([], ["--overwrite"]):
        with unchanged(work):
            refused(cli("simulate", "d50", "--months", "12", "--out", ".", *extra),
                    "current folder")


def test_out_is_an_empty_current_folder(cli, refused, unchanged, work, monkeypatch):
    (work / "empty").mkdir()
    monkeypatch.chdir(work / "empty")
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--out", "."), "current folder")


def test_out_is_a_users_folder(cli, refused, unchanged, work):
    (work / "mydir").mkdir()
    (work / "mydir" / "keep.txt").write_text("x\n")
    for extra in ([], ["--overwrite"]):
        with unchanged(work):
            refused(cli("simulate", "d50", "--months", "12", "--out", "mydir", *extra),
                    "mydir", "not written by progression")


def test_out_is_a_file(cli, refused, unchanged, work):
    (work / "some_file").write_text("x\n")
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--out", "some_file"), "some_file",
                "is a file")


def test_out_below_a_file(cli, refused, unchanged, work):
    (work / "some_file").write_text("x\n")
    with unchanged(work):
        refused(cli("fit", FIT_CONFIG, "--out", "some_file/fit"), "some_file", "not a folder")


def test_out_written_before_needs_overwrite(cli, refused, unchanged, work):
    assert cli("simulate", "d50", "--months", "12", "--out", "sim").code == 0
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--out", "sim"), "sim",
                "--overwrite")


def test_out_is_a_symbolic_link(cli, refused, unchanged, work):
    assert cli("simulate", "d50", "--months", "12", "--out", "sim").code == 0
    (work / "link").symlink_to(work / "sim")
    with unchanged(work):
        refused(cli("simulate", "d50", "--months", "12", "--out", "link", "--overwrite"),
                "link", "symbolic link")


def test_fit_out_holding_the_config_and_data(cli, refused, unchanged, work):
    text = FIT_CONFIG.read_text().replace("../data/synthetic/als_clinic_200.csv",
                                          "data/long.csv")
    (work / "cfg.toml").write_text(text)
    (work / "data").mkdir()
    shutil.copy(ROOT / "data" / "synthetic" / "als_clinic_200.csv", work / "data" / "long.csv")
    shutil.copy(ROOT / "data" / "synthetic" / "als_clinic_200.toml", work / "data" / "long.toml")
    with unchanged(work):
        refused(cli("fit", work / "cfg.toml", "--out", work, "--overwrite"), "input",
                "cfg.toml")
        refused(cli("fit", work / "cfg.toml", "--out", work / "data", "--overwrite"), "input",
                "long.csv")


def test_compare_out_is_the_fit_folder_it_reads(cli, refused, unchanged, work):
    fit = work / "fit"
    shutil.copytree(ROOT / "fits" / "als_synthetic_individual", fit,
                    ignore=shutil.ignore_patterns("figures"))
    (work / "fc.toml").write_text('[source]\nfit = "fit"\n\n[scenarios]\n"none" = []\n')
    with unchanged(work):
        refused(cli("compare", work / "fc.toml", "--out", "fit", "--overwrite"), "input",
                "fit")


def test_cohort_out_must_be_a_csv_name(cli, refused, unchanged, work):
    with unchanged(work):
        refused(cli("cohort", CLINIC, "--n", "3", "--out", "cohort.txt"), "cohort.txt",
                ".csv")


def test_cohort_sidecar_would_replace_the_config(cli, refused, unchanged, work):
    shutil.copy(CLINIC, work / "clinic.toml")
    with unchanged(work):
        refused(cli("cohort", work / "clinic.toml", "--n", "3", "--out", "clinic.csv",
                    "--overwrite"), "clinic.toml", "input")


def test_cohort_out_is_a_users_file(cli, refused, unchanged, work):
    (work / "visits.csv").write_text("subject,time\n1,0\n")
    with unchanged(work):
        refused(cli("cohort", CLINIC, "--n", "3", "--out", "visits.csv", "--overwrite"),
                "visits.csv", "not written by progression")


# ------------------------------------------------------------ failures and problem lists


def test_failed_simulation_writes_nothing_and_exits_1(cli, refused, unchanged, work):
    with unchanged(work):
        res = cli("simulate", HERE / "blowup.toml", "--until", "3", "--out", "sim")
    refused(res, "blowup", "simulation failed", "nothing written", code=1)
    assert not (work / "sim").exists()


def test_every_problem_is_printed_up_to_twenty(cli, refused, unchanged, work):
    lines = ["[fit]", 'model = "als_reduced"'] + [f"bogus{i} = 1" for i in range(1, 26)]
    (work / "many.toml").write_text("\n".join(lines) + "\n")
    with unchanged(work):
        res = cli("fit", work / "many.toml")
    refused(res, "many.toml", "fit.bogus1", "fit.bogus20", "... and ")
    assert "fit.bogus21'" not in res.err
    assert res.err.count("\n  - ") == 20


def test_a_single_hidden_problem_is_printed(capsys):
    from progression.cli import _print_error
    from progression.errors import DataError

    _print_error(DataError("long.csv: 1 problem(s) for the fit",
                           ["long.csv, row 3: value -1 <= 0 for a log-normal error model"]))
    err = capsys.readouterr().err
    assert err.startswith("error: long.csv: 1 problem(s) for the fit\n")
    assert "row 3: value -1 <= 0" in err
