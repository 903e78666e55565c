"""The per-subject covariance step, computed for all subjects at once, equals the subject-by-
subject definition (covariance_from_info, wald, identifiability_flags) exactly, including the
singular and non-finite information matrices and the warnings' counts."""

from types import SimpleNamespace

import numpy as np

from progression.fit._uncertainty_steps import per_subject_covariance
from progression.fit.uncertainty import covariance_from_info, identifiability_flags, wald


def _case(m=120, D=3, seed=1):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, 5, D))
    info = A.transpose(0, 2, 1) @ A
    info[3] = np.nan                                        # a failed simulation
    info[5, :, 1] = info[5, 1, :] = 0.0                     # an undetermined parameter
    info[7] = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])    # rank one
    info[11] = np.linalg.inv(np.array([[1, 0.995, 0], [0.995, 1, 0], [0, 0, 1.0]])) * 1e-2
    problem = SimpleNamespace(names=["kA", "eD", "time_offset", "fixed"],
                              scale=np.array(["log", "log", "linear", "logit"]),
                              lower=np.array([0.005, 0.05, 0.0, 0.0]),
                              upper=np.array([0.09, 1.0, 60.0, 1.0]))
    cols = np.arange(D)
    theta = np.column_stack([rng.uniform(0.006, 0.08, m), rng.uniform(0.06, 0.9, m),
                             rng.uniform(1, 59, m), np.zeros(m)])
    theta[0, 0] = 0.09                                      # at its upper bound
    x = np.column_stack([np.log(theta[:, 0]), np.log(theta[:, 1]), theta[:, 2]])
    designs = [SimpleNamespace(id=f"S{i}") for i in range(m)]
    return problem, designs, theta, x, info, cols


def test_stacked_covariance_step_equals_the_per_subject_definition():
    problem, designs, theta, x, info, cols = _case()
    step = per_subject_covariance(problem, designs, theta, x, info, cols, 0.95)
    sc, lo, hi = problem.scale[cols], problem.lower[cols], problem.upper[cols]
    failed, pairs = 0, 0
    huge_count = np.zeros(cols.size, dtype=int)
    for i in range(theta.shape[0]):
        cov, msg = covariance_from_info(info[i], [problem.names[c] for c in cols])
        failed += bool(msg)
        np.testing.assert_array_equal(step.blocks[i][1], cov)
        np.testing.assert_array_equal(step.blocks[i][0], np.arange(3 * i, 3 * i + 3))
        se_x = np.sqrt(np.maximum(np.diag(cov), 0.0))
        se_x[~np.isfinite(np.diag(cov))] = np.nan
        se, a, b = wald(x[i], se_x, sc, lo, hi, 0.95)
        np.testing.assert_array_equal(step.se[i, cols], se)
        np.testing.assert_array_equal(step.interval[i, cols, 0], a)
        np.testing.assert_array_equal(step.interval[i, cols, 1], b)
        with np.errstate(invalid="ignore", divide="ignore"):
            huge, partners = identifiability_flags(x[i], se_x, cov / np.outer(se_x, se_x),
                                                   sc, lo, hi, 0.95)
        huge_count += huge
        pairs += sum(1 for j, ps in enumerate(partners) for k in ps if j < k)
    assert failed == 3 and pairs == 1
    assert np.all(np.isnan(step.se[3, cols]))
    text = "\n".join(step.warnings)
    assert "covariance step failed for 3/120 subjects (S3, S5, S7)" in text
    assert "kA and eD: |correlation| > 0.99 in 1/120 subjects" in text
    assert "kA: estimate at a bound in 1/120 subjects" in text
    for j, name in enumerate(("kA", "eD", "time_offset")):
        assert f"{name}: practically non-identifiable in {huge_count[j]}/120" in text
