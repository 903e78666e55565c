"""Column-metadata files other tools write: Monolix projects (``.mlxtran``) as sidecars.

The reference is the same data read through progression's own TOML sidecar: R's Theoph data
(``data/examples/theoph.csv``, NONMEM-style) rewritten here the way Monolix's demo project
keeps it (tab-separated, dose and observations on separate lines, ``.`` for missing), with a
project file like the one MonolixSuite writes. Both must give the same cohort.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import progression as pg
from progression.data import _sidecars
from progression.errors import DataError

REPO = Path(__file__).parents[1]
THEOPH = REPO / "data" / "examples" / "theoph.csv"

# The <DATAFILE> section as MonolixSuite 2018R1+ writes it, followed by the rest of a
# project that the reader must skip (model code, estimation settings, tasks).
PROJECT = """\
<DATAFILE>

[FILEINFO]
file = 'theophylline_data.txt'
delimiter = tab
header = {ID, AMT, TIME, CONC, WEIGHT, SEX, NOTE}

[CONTENT]
ID = {use=identifier}
TIME = {use=time}
AMT = {use=amount}  ; mg, Dose (mg/kg) x Wt
CONC = {use=observation, name=conc, type=continuous}
WEIGHT = {use=covariate, type=continuous}
SEX = {use=covariate,
       type=categorical}

<MODEL>

[INDIVIDUAL]
input = {ka_pop, omega_ka, V_pop, omega_V, Cl_pop, omega_Cl}

DEFINITION:
ka = {distribution=logNormal, typical=ka_pop, sd=omega_ka}
V = {distribution=logNormal, typical=V_pop, sd=omega_V}
Cl = {distribution=logNormal, typical=Cl_pop, sd=omega_Cl}

[LONGITUDINAL]
input = {a, b}
file = 'lib:oral1_1cpt_kaVCl.txt'

DEFINITION:
conc = {distribution=normal, prediction=Cc, errorModel=combined1(a, b)}

<FIT>
data = conc
model = conc

<PARAMETER>
Cl_pop = {value=0.1, method=MLE}
V_pop = {value=1, method=MLE}
ka_pop = {value=1, method=MLE}

<MONOLIX>

[TASKS]
populationParameters()
individualParameters(method = {conditionalMean, conditionalMode })

[SETTINGS]
GLOBAL:
exportpath = 'theophylline_project'
"""


def _monolix_theoph(folder: Path) -> Path:
    """theoph.csv rewritten the Monolix way; returns the project file."""
    with open(THEOPH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = ["ID\tAMT\tTIME\tCONC\tWEIGHT\tSEX\tNOTE"]
    for r in rows:
        amt = r["AMT"] if r["EVID"] == "1" else "."
        conc = r["DV"] if r["EVID"] == "0" else "."
        # SEX is not in Theoph: a made-up categorical column shows the type is read; NOTE is
        # a column [CONTENT] leaves out, which Monolix does not use either.
        sex = "M" if int(r["ID"]) % 2 else "F"
        lines.append(f"{r['ID']}\t{amt}\t{r['TIME']}\t{conc}\t{r['WT']}\t{sex}\tx")
    (folder / "theophylline_data.txt").write_text("\n".join(lines) + "\n")
    project = folder / "theophylline_project.mlxtran"
    project.write_text(PROJECT)
    return project


def test_monolix_project_reads_like_the_toml_sidecar(tmp_path):
    project = _monolix_theoph(tmp_path)
    mlx = pg.read_cohort(project, time_unit="hour", to_unit="hour", time_origin="dose")
    ref = pg.read_cohort(THEOPH, to_unit="hour")
    assert mlx.subjects == ref.subjects
    a, b = mlx.observations(), ref.observations()
    assert len(a["value"]) == 132
    for key in ("subject", "time", "value", "observable"):
        np.testing.assert_array_equal(a[key], b[key])
    for key in ("subject", "time", "amount"):
        np.testing.assert_array_equal(mlx.doses[key], ref.doses[key])
    # No ADMINISTRATION column: NONMEM's and Monolix's default, administration/CMT 1.
    assert set(mlx.doses["target"]) == {"1"}
    assert mlx.covariates["1"] == {"WEIGHT": 79.6, "SEX": "M"}
    assert mlx.covariates["2"]["SEX"] == "F"
    # The column [CONTENT] leaves out is not read (Monolix does not use it either).
    assert "NOTE" not in mlx.covariate_names
    assert any("theophylline_project.mlxtran" in n for n in mlx.notes)


def test_project_as_sidecar_of_the_data_file(tmp_path):
    project = _monolix_theoph(tmp_path)
    direct = pg.read_cohort(project, time_unit="hour")
    beside = pg.read_cohort(tmp_path / "theophylline_data.txt", sidecar=project,
                            time_unit="hour")
    np.testing.assert_array_equal(direct.observations()["value"],
                                  beside.observations()["value"])


def test_every_use_maps_to_a_nonmem_role(tmp_path):
    """Observation types, administrations, infusions, regressors, censoring, EVID/MDV."""
    (tmp_path / "pkpd.csv").write_text(
        "ID,TIME,EVID,MDV,AMT,ADM,TINF,Y,YTYPE,CENS,LIM,CONC_REG,SITE\n"
        "1,0,1,1,100,1,2,.,.,0,.,0,3\n"
        "1,1,0,0,.,.,.,4.5,1,0,.,0,3\n"
        "1,1,0,0,.,.,.,12,2,0,.,0.5,3\n"
        "1,4,0,0,.,.,.,0.1,1,1,0.1,0.8,3\n"
        "1,6,0,1,.,.,.,.,1,0,.,0.8,3\n"
        "1,8,1,1,50,2,.,.,.,0,.,0.8,3\n"
        "1,9,0,0,.,.,.,2.0,1,0,.,0.8,3\n")
    project = tmp_path / "pkpd.mlxtran"
    project.write_text(
        "<DATAFILE>\n[FILEINFO]\nfile = 'pkpd.csv'\ndelimiter = comma\n"
        "header = {ID, TIME, EVID, MDV, AMT, ADM, TINF, Y, YTYPE, CENS, LIM, CONC_REG, SITE}\n"
        "\n[CONTENT]\n"
        "ID = {use=identifier}\nTIME = {use=time}\nEVID = {use=eventidentifier}\n"
        "MDV = {use=missingdependentvariable}\nAMT = {use=amount}\n"
        "ADM = {use=administration}\nTINF = {use=infusiontime}\n"
        "Y = {use=observation, name={Cc, E}, yname={'1', '2'},\n"
        "     type={continuous, continuous}}\n"
        "YTYPE = {use=observationtype}\nCENS = {use=censored}\nLIM = {use=limit}\n"
        "CONC_REG = {use=regressor}\nSITE = {use=ignore}\n")
    doc = _sidecars.read_monolix(project, problems := [], tmp_path / "pkpd.csv")
    assert problems == []
    assert doc["columns"] == {"ID": "id", "TIME": "time", "EVID": "evid", "MDV": "mdv",
                              "AMT": "amount", "ADM": "compartment", "TINF": "duration",
                              "Y": "dv", "YTYPE": "dvid", "CENS": "cens", "LIM": "limit",
                              "CONC_REG": "tv_covariate", "SITE": "ignore"}
    assert doc["dvid"] == {"1": "Cc", "2": "E"}
    assert doc["delimiter"] == "comma" and doc["format"] == "nonmem"

    c = pg.read_cohort(project, time_unit="hour", to_unit="hour")
    cc, e = c.subject("1")["Cc"], c.subject("1")["E"]
    np.testing.assert_array_equal(cc.time, [1, 4, 9])
    np.testing.assert_array_equal(cc.cens, [0, 1, 0])
    assert cc.limit[1] == pytest.approx(0.1)
    np.testing.assert_array_equal(e.value, [12.0])
    d = c.doses
    np.testing.assert_array_equal(d["amount"], [100.0, 50.0])
    np.testing.assert_array_equal(d["target"], ["1", "2"])
    assert d["duration"][0] == 2.0 and np.isnan(d["duration"][1])
    tv = c.time_varying
    assert set(tv["name"]) == {"CONC_REG"}
    np.testing.assert_array_equal(tv["value"], [0.0, 0.5, 0.8])
    assert "SITE" not in c.covariate_names
    assert any("MDV 1" in n for n in c.notes)


def test_whitespace_delimited_project(tmp_path):
    (tmp_path / "d.dat").write_text("ID TIME AMT DV\n1 0 10 .\n1 1 . 3.2\n1 2 . 2.1\n")
    (tmp_path / "d.mlxtran").write_text(
        "<DATAFILE>\n[FILEINFO]\nfile='d.dat'\ndelimiter=space\nheader={ID,TIME,AMT,DV}\n"
        "[CONTENT]\nID={use=identifier}\nTIME={use=time}\nAMT={use=amount}\n"
        "DV={use=observation,name=Cc,type=continuous}\n")
    c = pg.read_cohort(tmp_path / "d.mlxtran", time_unit="hour", to_unit="hour")
    np.testing.assert_array_equal(c.subject("1")["Cc"].value, [3.2, 2.1])


@pytest.mark.parametrize("text, expected", [
    ("{use=identifier}", {"use": "identifier"}),
    ("{a, 'b c', d}", ["a", "b c", "d"]),
    ("{use=observation, name={y1, y2}, yname={'1', '2'}}",
     {"use": "observation", "name": ["y1", "y2"], "yname": ["1", "2"]}),
    ("'data/x.csv'", "data/x.csv"),
    ("comma", "comma"),
    ("{}", []),
])
def test_value_syntax(text, expected):
    assert _sidecars._Value(text).parse() == expected


@pytest.mark.parametrize("text", ["{use=identifier", "{a b=c}", "{a, b=c}", "'open", "{a,,b}"])
def test_value_syntax_errors(text):
    with pytest.raises(ValueError):
        _sidecars._Value(text).parse()


def test_fit_config_reads_a_monolix_project(tmp_path):
    """``[data] path`` may name the project: the fit reads its data file with its roles."""
    from progression.fit.config import read_fit_config
    from progression.fit.estimate import read_data

    project = _monolix_theoph(tmp_path)
    cfg = tmp_path / "fit.toml"
    cfg.write_text(
        '[fit]\nmodel = "pk_oral"\n[data]\npath = "theophylline_project.mlxtran"\n'
        'time_unit = "hour"\n[error.conc]\nmodel = "additive"\n'
        'a = { value = 0.5, estimate = "subject", bounds = [0.01, 10.0] }\n'
        '[parameters.ka]\nestimate = "subject"\n')
    config = read_fit_config(cfg)
    cohort = read_data(config)
    assert len(cohort) == 12 and cohort.n_observations == 132
    assert str(project.name) in " ".join(cohort.notes)


def test_missing_project_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="Monolix project file not found"):
        pg.read_cohort(tmp_path / "nothing.mlxtran")


# ------------------------------------------------------------------ pharmpy's .datainfo


def _pharmpy_column(name, type, unit="1", scale="ratio", descriptor=None, datatype="float64"):
    """One column as ``DataInfo.to_json`` writes it (every key present)."""
    return {"name": name, "type": type, "scale": scale, "continuous": scale == "ratio",
            "categories": None, "unit": unit, "datatype": datatype, "drop": False,
            "descriptor": descriptor}


def _pharmpy_theoph(folder: Path) -> Path:
    """theoph.csv with the datainfo pharmpy writes beside it (no TOML sidecar)."""
    import json

    data = folder / "theo.csv"
    data.write_text(THEOPH.read_text())
    columns = [
        _pharmpy_column("ID", "id", scale="nominal", descriptor="subject identifier",
                        datatype="int32"),
        _pharmpy_column("TIME", "idv", unit="h"),
        _pharmpy_column("AMT", "dose", unit="mg"),
        _pharmpy_column("DV", "dv", unit="mg/l", descriptor="plasma concentration"),
        _pharmpy_column("EVID", "event", scale="nominal"),
        _pharmpy_column("MDV", "mdv", scale="nominal"),
        _pharmpy_column("CMT", "compartment", scale="nominal"),
        _pharmpy_column("WT", "covariate", unit="kg", descriptor="body weight"),
        {**_pharmpy_column("DOSE", "covariate", unit="mg/kg"), "drop": True},
    ]
    (folder / "theo.datainfo").write_text(json.dumps(
        {"columns": columns, "path": "theo.csv", "separator": ","}))
    return data


def test_pharmpy_datainfo_found_beside_the_data(tmp_path):
    data = _pharmpy_theoph(tmp_path)
    c = pg.read_cohort(data, to_unit="hour")
    ref = pg.read_cohort(THEOPH, to_unit="hour")
    a, b = c.observations(), ref.observations()
    for key in ("subject", "time", "value"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(c.doses["amount"], ref.doses["amount"])
    assert set(a["observable"]) == {"DV"}            # pharmpy does not name observables
    assert c.units == {"DV": "mg/l"}
    assert c.time_unit == "hour"                      # from the idv column's unit "h"
    assert c.covariates["1"] == {"WT": 79.6}          # DOSE has drop: true
    assert any("theo.datainfo" in n for n in c.notes)
    assert not any("time unit not stated" in n for n in c.notes)


def test_toml_sidecar_wins_over_datainfo(tmp_path):
    data = _pharmpy_theoph(tmp_path)
    (tmp_path / "theo.toml").write_text((THEOPH.with_suffix(".toml")).read_text())
    c = pg.read_cohort(data, to_unit="hour")
    assert set(c.observations()["observable"]) == {"conc"}
    explicit = pg.read_cohort(data, sidecar=tmp_path / "theo.datainfo", to_unit="hour")
    assert set(explicit.observations()["observable"]) == {"DV"}


def test_datainfo_types_map_to_roles(tmp_path):
    import json

    (tmp_path / "d.dat").write_text("ID TIME AMT ADM DV BLQ LLOQ X\n1 0 10 2 . 0 . 5\n"
                                    "1 1 . . 3.2 0 0.1 5\n1 2 . . 0.1 1 0.1 5\n")
    (tmp_path / "d.datainfo").write_text(json.dumps({"columns": [
        {"name": "ID", "type": "id"}, {"name": "TIME", "type": "idv", "unit": "min"},
        {"name": "AMT", "type": "dose"}, {"name": "ADM", "type": "admid"},
        {"name": "DV", "type": "dv"}, {"name": "BLQ", "type": "blqdv"},
        {"name": "LLOQ", "type": "lloq"}], "separator": "\\s+"}))
    doc = _sidecars.read_datainfo(tmp_path / "d.datainfo", problems := [], tmp_path / "d.dat")
    assert problems == []
    assert doc["columns"] == {"ID": "id", "TIME": "time", "AMT": "amount",
                              "ADM": "compartment", "DV": "dv", "BLQ": "cens",
                              "LLOQ": "limit", "X": "ignore"}
    assert doc["delimiter"] == "whitespace" and doc["time_unit"] == "minute"
    c = pg.read_cohort(tmp_path / "d.dat", to_unit="minute")
    o = c.subject("1")["DV"]
    np.testing.assert_array_equal(o.cens, [0, 1])
    assert c.doses["target"][0] == "2"
