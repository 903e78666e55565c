"""NONMEM ``.ext`` tables: write/read round trip and a NONMEM-format sample.

The sample below is laid out as NONMEM 7 writes ``.ext`` files (title line, header with names
in 13 columns, ``%13d`` iteration, `` %12.5E`` values, the objective with 17 significant digits
in 22 columns, 1.00000E+10 for fixed SEs); the layout was taken from the NONMEM output fixture
``8.ext`` in the test suite of metrumresearchgroup/bbr
(tests/testthat/test-param-estimates-batch.R). The numbers are made up.
"""

# ruff: noqa: E501  (the sample keeps NONMEM's long lines verbatim)

from __future__ import annotations

import numpy as np
import pytest

from progression.errors import FitError
from progression.fit.population import FINAL, SE, ExtTable, ext_columns, read_ext, write_ext

SAMPLE = """\
TABLE NO.     1: First Order Conditional Estimation with Interaction: Goal Function=MINIMUM VALUE OF OBJECTIVE FUNCTION: Problem=1 Subproblem=0 Superproblem1=0 Iteration1=0 Superproblem2=0 Iteration2=0
 ITERATION    THETA1       THETA2       THETA3       SIGMA(1,1)   OMEGA(1,1)   OMEGA(2,1)   OMEGA(2,2)   OBJ
            0  2.00000E+00  3.00000E+00 -1.00000E-01  1.00000E+00  5.00000E-02  0.00000E+00  2.00000E-01    15294.002144233427
            5  4.24454E+00  2.01268E+01 -6.04580E-03  1.00000E+00  8.69929E-02  1.20000E-02  8.29972E-01    3740.5412530895987
  -1000000000  2.31034E+00  5.49596E+01 -8.05722E-02  1.00000E+00  9.64407E-02  1.10000E-02  1.53571E-01    2636.8457703290751
  -1000000001  8.61470E-02  3.32914E+00  5.55149E-02  1.00000E+10  2.00146E-02  1.00000E+10  2.67330E-02    0.0000000000000000
  -1000000006  0.00000E+00  0.00000E+00  0.00000E+00  1.00000E+00  0.00000E+00  1.00000E+00  0.00000E+00    0.0000000000000000
"""


def test_reads_a_nonmem_format_sample(tmp_path):
    path = tmp_path / "run8.ext"
    path.write_text(SAMPLE)
    (table,) = read_ext(path)
    assert table.method == "First Order Conditional Estimation with Interaction"
    assert table.columns == ext_columns(3, 1, 2)
    assert table.iterations.tolist() == [0, 5, FINAL, SE, -1000000006]
    theta, sigma, omega, obj = table.estimates()
    np.testing.assert_array_equal(theta, [2.31034, 54.9596, -0.0805722])
    np.testing.assert_array_equal(sigma, [[1.0]])
    np.testing.assert_array_equal(omega, [[0.0964407, 0.011], [0.011, 0.153571]])
    assert obj == 2636.8457703290751
    assert table.row(SE)["SIGMA(1,1)"] == 1e10 and table.row(SE)["THETA2"] == 3.32914
    its, rows = table.history()
    assert its.tolist() == [0, 5] and rows[:, -1].tolist() == [15294.002144233427,
                                                              3740.5412530895987]


def test_write_matches_the_nonmem_layout_and_reads_back(tmp_path):
    history = [(0, ([2.0, 3.0, -0.1], [1.0], [[0.05, 0.0], [0.0, 0.2]], 15294.002144233427)),
               (5, ([4.24454, 20.1268, -0.0060458], [1.0], [[0.0869929, 0.012],
                                                           [0.012, 0.829972]],
                    3740.5412530895987))]
    final = ([2.31034, 54.9596, -0.0805722], [1.0], [[0.0964407, 0.011], [0.011, 0.153571]],
             2636.8457703290751)
    se = ([0.086147, 3.32914, 0.0555149], [np.nan], [[0.0200146, np.nan],
                                                     [np.nan, 0.026733]])
    table = ExtTable.from_estimates("First Order Conditional Estimation with Interaction",
                                    history, final, se)
    path = write_ext(tmp_path / "out.ext", table)
    # byte-for-byte the NONMEM layout of the sample (all lines but the fixed-flag row)
    assert path.read_text().splitlines() == SAMPLE.splitlines()[:6]
    (back,) = read_ext(path)
    np.testing.assert_array_equal(back.values, table.values)
    np.testing.assert_array_equal(back.iterations, table.iterations)


def test_full_precision_round_trip_of_the_objective_and_several_tables(tmp_path):
    rng = np.random.default_rng(0)
    final = (rng.normal(size=4), np.diag([0.04, 0.5]), np.array([[0.3, 0.1], [0.1, 0.2]]),
             -1234.5678901234567)
    t1 = ExtTable.from_estimates("Stochastic Approximation Expectation-Maximization",
                                 [(k, final) for k in range(3)], final, number=1)
    t2 = ExtTable.from_estimates("Importance Sampling", [], final, number=2)
    tables = read_ext(write_ext(tmp_path / "two.ext", [t1, t2]))
    assert [t.number for t in tables] == [1, 2]
    assert tables[1].method == "Importance Sampling"
    theta, sigma, omega, obj = tables[0].estimates()
    assert obj == final[3]  # 17 significant digits round-trip a double
    np.testing.assert_allclose(theta, final[0], rtol=1e-5)  # %12.5E keeps 6 digits
    np.testing.assert_array_equal(sigma, final[1])
    assert tables[0].columns[4:7] == ["SIGMA(1,1)", "SIGMA(2,1)", "SIGMA(2,2)"]


@pytest.mark.parametrize("text,match", [
    ("", "expected at least one 'TABLE NO.'"),
    (" ITERATION THETA1 OBJ\n", "line 1: expected a 'TABLE NO.' title line"),
    ("TABLE NO.     1: FO\n THETA1 OBJ\n", "line 2: expected the header starting with ITERATION"),
    ("TABLE NO.     1: FO\n ITERATION THETA1 OBJ\n 0 1.0\n", "line 3: expected 3 values"),
    ("TABLE NO.     1: FO\n ITERATION THETA1 OBJ\n 0 1.0 abc\n", "line 3: expected numbers"),
])
def test_bad_files_are_refused_by_line(tmp_path, text, match):
    path = tmp_path / "bad.ext"
    path.write_text(text)
    with pytest.raises(FitError, match=match) as err:
        read_ext(path)
    assert "bad.ext" in str(err.value)
    with pytest.raises(FitError, match="cannot read"):
        read_ext(tmp_path / "missing.ext")


def test_row_of_a_missing_iteration_is_refused():
    table = ExtTable.from_estimates("FO", [], ([1.0], [1.0], [1.0], 1.0))
    with pytest.raises(FitError, match="expected a row for iteration -1000000001"):
        table.row(SE)
    with pytest.raises(FitError, match="OMEGA: expected a square matrix"):
        ExtTable.from_estimates("FO", [], ([1.0], [1.0], np.ones((2, 3)), 1.0))


def test_the_fit_ext_header_names_the_estimator():
    """A saem fit's .ext table says SAEM, a focei fit's FOCE-I (NONMEM's method names)."""
    from types import SimpleNamespace

    import numpy as np

    from progression.fit.population._outputs import EXT_METHODS, ext_table

    for method in ("focei", "saem"):
        pop = SimpleNamespace(
            method=method, fixed_effects={"ka": 1.5}, sigma={"conc.a": 0.7},
            omega=np.array([[0.4]]), omega_names=("ka",), history=None, ofv=116.8,
            fixed_effects_se={"ka": 0.1}, sigma_se={"conc.a": 0.05}, omega_se={"ka": 0.1})
        table = ext_table(SimpleNamespace(population=pop))
        assert table.method == EXT_METHODS[method]
