"""Malformed population models in a run config: covariate effects
(``[parameters.NAME.covariates.COV]``), Omega blocks (``[omega]``), fixed variances
(``eta_fixed``), and data that do not fit them. ``progression fit CONFIG`` exits 2 with one
message naming the file and the key (or the data file, the subject and the covariate), no
traceback, nothing written."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THEOPH = (ROOT / "configs" / "theoph_population.toml").read_text()
PHENO = (ROOT / "configs" / "pheno_population.toml").read_text()
WEIGHT = '''
[parameters.CL.covariates.weight]
effect = "power"
reference = 70.0
value = 0.75
'''
APGR = '''[parameters.V.covariates.APGR]
effect = "categorical"     # V = TVV * (1 + c) for a low Apgar score
reference = "normal"
groups = { low = [1, 2, 3, 4], normal = [5, 6, 7, 8, 9, 10] }
value = 0.1'''


def theoph(tmp_path, old: str, new: str, extra: str = "") -> Path:
    """The shipped Theoph population config with one change (and text appended)."""
    assert old in THEOPH, old
    text = THEOPH.replace(old, new).replace('"../data/examples/theoph.csv"',
                                            repr(str(ROOT / "data/examples/theoph.csv")))
    text = text.replace('folder = "../fits/theoph_population"',
                        f'folder = {str(tmp_path / "out")!r}')
    path = tmp_path / "pop.toml"
    path.write_text(text + extra)
    return path


def pheno(tmp_path, old: str, new: str, data: Path | None = None) -> Path:
    """The shipped pheno config with one change (and optionally other data)."""
    assert old in PHENO, old
    data = data or ROOT / "data/examples/pheno.csv"
    text = PHENO.replace(old, new).replace('"../data/examples/pheno.csv"', repr(str(data)))
    text = text.replace('folder = "../fits/pheno_population"',
                        f'folder = {str(tmp_path / "out")!r}')
    path = tmp_path / "pheno_pop.toml"
    path.write_text(text)
    return path


def pheno_data(tmp_path, subject: str, column: int, value: str) -> Path:
    """pheno.csv (and its sidecar) with one subject's column set to ``value``."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "pheno.toml").write_text((ROOT / "data/examples/pheno.toml").read_text())
    lines = (ROOT / "data/examples/pheno.csv").read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[0] == subject:
            cells[column] = value
        out.append(",".join(cells))
    (folder / "pheno.csv").write_text("\n".join(out) + "\n")
    return folder / "pheno.csv"


CL_KEY = "parameters.CL.covariates.weight"
THEOPH_CASES = [
    # (id, extra text appended to the Theoph config, strings the message must name)
    ("unknown covariate", WEIGHT.replace("weight", "height"),
     ["parameters.CL.covariates.height", "'height'", "'weight'"]),
    ("unknown effect", WEIGHT.replace('"power"', '"sigmoid"'),
     [f"{CL_KEY}.effect", "sigmoid", "power", "categorical"]),
    ("missing reference", WEIGHT.replace("reference = 70.0\n", ""),
     [f"{CL_KEY}.reference", "required"]),
    ("power reference not positive", WEIGHT.replace("70.0", "0.0"),
     [f"{CL_KEY}.reference", "positive"]),
    ("reference not a number", WEIGHT.replace("70.0", '"heavy"'),
     [f"{CL_KEY}.reference", "'median'", "'heavy'"]),
    ("reference a boolean", WEIGHT.replace("70.0", 'true'),
     [f"{CL_KEY}.reference", "number"]),
    ("unknown key in a covariate table", WEIGHT + "slope = 1.0\n",
     [f"{CL_KEY}.slope", "unknown key"]),
    ("estimate not a boolean", WEIGHT + 'estimate = "fixed"\n',
     [f"{CL_KEY}.estimate", "true", "false"]),
    ("fixed coefficient without value", WEIGHT.replace("value = 0.75\n", "estimate = false\n"),
     [f"{CL_KEY}.value", "fixed coefficient"]),
    ("coefficient outside its bounds", WEIGHT + "bounds = [0.0, 0.5]\n",
     [f"{CL_KEY}.value", "0.75", "[0, 0.5]"]),
    ("groups on a continuous effect", WEIGHT + "groups = { light = [50] }\n",
     [f"{CL_KEY}.groups", "power"]),
    ("levels on a continuous effect", WEIGHT + "levels = [1]\n",
     [f"{CL_KEY}.levels", "power"]),
    ("covariates on a fixed parameter", "\n[parameters.F_bio.covariates.weight]\n"
     "effect = \"power\"\nreference = 70.0\n",
     ["parameters.F_bio.covariates", "population", "fixed"]),
    ("covariates not a table", "", []),    # completed below
    ("block naming a parameter without eta", '\n[omega]\nblocks = [["CL", "F_bio"]]\n',
     ["omega.blocks[0]", "F_bio", "random effect"]),
    ("block naming an unknown parameter", '\n[omega]\nblocks = [["CL", "Vd"]]\n',
     ["omega.blocks[0]", "'Vd'", "V"]),
    ("block of one", '\n[omega]\nblocks = [["CL"]]\n', ["omega.blocks[0]", "at least two"]),
    ("duplicate block membership", '\n[omega]\nblocks = [["CL", "V"], ["V", "ka"]]\n',
     ["omega.blocks[1]", "'V'", "already in omega.blocks[0]"]),
    ("non-PD initial block", '\n[omega]\nblocks = [{ parameters = ["CL", "V"], '
     'covariances = [0.5] }]\n', ["omega.blocks[0].covariances", "positive definite"]),
    ("wrong number of covariances", '\n[omega]\nblocks = [{ parameters = ["ka", "CL", "V"], '
     'covariances = [0.01] }]\n', ["omega.blocks[0].covariances", "expected 3", "(CL,ka)"]),
    ("block fixed not a boolean", '\n[omega]\nblocks = [{ parameters = ["CL", "V"], '
     'fixed = "yes" }]\n', ["omega.blocks[0].fixed", "true or false"]),
    ("unknown key in a block", '\n[omega]\nblocks = [{ parameters = ["CL", "V"], '
     'correlation = 0.1 }]\n', ["omega.blocks[0].correlation", "unknown key"]),
    ("unknown key in omega", '\n[omega]\nblock = [["CL", "V"]]\n',
     ["omega.block", "unknown key", "blocks"]),
    ("full and blocks", '\n[omega]\nfull = true\nblocks = [["CL", "V"]]\n',
     ["omega.full", "not both"]),
    ("full not a boolean", '\n[omega]\nfull = 1\n', ["omega.full", "true or false"]),
]


@pytest.mark.parametrize("case", THEOPH_CASES, ids=[c[0] for c in THEOPH_CASES])
def test_bad_population_model_refused(cli, refused, unchanged, tmp_path, case):
    name, extra, names = case
    if name == "covariates not a table":
        path = theoph(tmp_path, "eta = 0.3", "eta = 0.3\ncovariates = 1.5")
        names = ["parameters.CL.covariates", "table"]
    else:
        path = theoph(tmp_path, "eta = 0.6", "eta = 0.6", extra)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), *names)


RANDOM_EFFECT_CASES = [
    ("eta_fixed without eta", "[parameters.F_bio]\nestimate = \"fixed\"\nvalue = 1.0",
     "[parameters.F_bio]\nestimate = \"fixed\"\nvalue = 1.0\neta_fixed = true",
     ["parameters.F_bio.eta_fixed", "eta = <variance>"], ""),
    ("eta_fixed not a boolean", "eta = 0.6", "eta = 0.6\neta_fixed = 1",
     ["parameters.ka.eta_fixed", "true or false"], ""),
    ("eta_fixed inside a block", "eta = 0.3", "eta = 0.3\neta_fixed = true",
     ["parameters.CL.eta_fixed", "omega.blocks[0]", "fixed = true"],
     '\n[omega]\nblocks = [["CL", "V"]]\n'),
    ("eta on a fixed parameter", "[parameters.tlag]\nestimate = \"fixed\"",
     "[parameters.tlag]\nestimate = \"fixed\"\neta = 0.1", ["parameters.tlag.eta",
                                                            "population"], ""),
    ("omega with the individual estimator", 'estimator = "focei"',
     'estimator = "individual"', ["omega", "population estimator"],
     '\n[omega]\nblocks = [["CL", "V"]]\n'),
    ("linear covariate effect with saem", 'estimator = "focei"', 'estimator = "saem"',
     [f"{CL_KEY}", "saem", "linear"], WEIGHT.replace('"power"', '"linear"').replace(
         "0.75", "0.01")),
]


@pytest.mark.parametrize("case", RANDOM_EFFECT_CASES, ids=[c[0] for c in RANDOM_EFFECT_CASES])
def test_bad_random_effects_refused(cli, refused, unchanged, tmp_path, case):
    name, old, new, names, extra = case
    path = theoph(tmp_path, old, new, extra)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path), *names)


V_KEY = "parameters.V.covariates.APGR"
PHENO_CASES = [
    # (id, old, new, strings the message must name)
    ("group not in the data", "normal = [5, 6, 7, 8, 9, 10] }",
     "normal = [5, 6, 7, 8, 9, 10], none = [11] }", [f"{V_KEY}.groups", "'none'", "'low'"]),
    ("reference category not in the data", 'reference = "normal"\ngroups = { low = [1, 2, 3, '
     '4], normal = [5, 6, 7, 8, 9, 10] }', 'reference = "none"\ngroups = { low = [1, 2, 3, 4, '
     '5, 6, 7, 8, 9, 10], none = [11] }', [f"{V_KEY}.reference", "'none'", "'low'"]),
    ("reference not a group", 'reference = "normal"', 'reference = "high"',
     [f"{V_KEY}.reference", "high", "normal"]),
    ("listed level not in the data", 'reference = "normal"\ngroups = { low = [1, 2, 3, 4], '
     'normal = [5, 6, 7, 8, 9, 10] }', 'reference = 7\nlevels = [1, 2, 3, 4, 5, 6, 8, 9, 10, '
     '11]', [f"{V_KEY}.levels", "'11'", "'10'"]),
    ("value in no group", "normal = [5, 6, 7, 8, 9, 10] }", "normal = [5, 6, 7, 8, 9] }",
     ["pheno.csv", "subject", "APGR", "10.0", "groups"]),
    ("value in two groups", "normal = [5, 6, 7, 8, 9, 10] }", "normal = [4, 5, 6, 7, 8, 9, "
     "10] }", [f"{V_KEY}.groups", "'low'", "'normal'"]),
    ("level table naming an unknown level", "value = 0.1\n\n[parameters.dose]",
     "value = { high = 0.1 }\n\n[parameters.dose]",
     [f"{V_KEY}.value.high", "low"]),
]


@pytest.mark.parametrize("case", PHENO_CASES, ids=[c[0] for c in PHENO_CASES])
def test_bad_categorical_effects_refused(cli, refused, unchanged, tmp_path, case):
    name, old, new, names = case
    assert APGR in PHENO
    path = pheno(tmp_path, old, new)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(path) if name != "value in no group" else "pheno.csv", *names)


def test_missing_covariate_names_the_subject(cli, refused, unchanged, tmp_path):
    data = pheno_data(tmp_path, "5", 3, ".")
    path = pheno(tmp_path, "value = 0.1", "value = 0.1", data)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(data), "subject '5'", "covariate 'WGT'", "missing",
            "parameters.CL.covariates.WGT")


def test_non_positive_covariate_with_a_power_effect(cli, refused, unchanged, tmp_path):
    data = pheno_data(tmp_path, "7", 3, "0")
    path = pheno(tmp_path, "value = 0.1", "value = 0.1", data)
    with unchanged(tmp_path):
        out = cli("fit", path)
    refused(out, str(data), "subject '7'", "'WGT' = 0", "power", "> 0")


def test_the_base_configs_read(tmp_path):
    """Control: the variants above differ from configs that validate (and data that fit)."""
    from progression.fit.config import read_fit_config
    from progression.fit.estimate import read_data
    from progression.fit.problem import designs_from_cohort

    cfg = read_fit_config(theoph(tmp_path, "eta = 0.6", "eta = 0.6",
                                 WEIGHT + '\n[omega]\nblocks = [["CL", "V"]]\n'))
    assert cfg.parameter("CL").covariates[0].covariate == "weight"
    designs_from_cohort(read_data(cfg), cfg)
    cfg = read_fit_config(pheno(tmp_path, "value = 0.1", "value = 0.1",
                                pheno_data(tmp_path, "5", 3, "1.4")))
    designs, _ = designs_from_cohort(read_data(cfg), cfg)
    assert len(designs) == 59
