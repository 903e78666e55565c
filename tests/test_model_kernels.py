"""The numba backend: per-subject kernels and batch functions equal the numpy functions.

Both backends evaluate the same sympy expressions after the same common-subexpression
elimination; they may differ by the last bits of numpy's vectorised ``exp``/``tanh``/``pow``
against the C library's (a few ulp), which a difference of nearly equal terms (two sigmoids in
an observable's derivative) amplifies. So agreement is required to 1e-12 relative to the larger
of the entry's magnitude and its largest magnitude over the subjects of the batch; the measured
worst case on these models is 2.5e-14. A wrong index, sign, branch or helper gives O(1)
differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import progression as pg
from progression.model import _codegen_numba, _kernels, compiled
from progression.model._expressions import NUMPY_IMPLEMENTATIONS

pytest.importorskip("numba")

# als_systemic (the largest model; its compile alone ~55 s of the default run) in the slow
# suite: the generator is the same for every model, als_reduced and pk_oral stay here
MODELS = (pytest.param("als_systemic", marks=pytest.mark.slow), "als_reduced", "pk_oral")
RTOL = 1e-12
P_ONLY = ("initial", "dinitial_dp")


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """The same model compiled with both backends."""
    spec = pg.model.library.library_spec(request.param)
    numba_model = pg.compile_model(spec, backend="numba")
    numpy_model = pg.compile_model(spec, backend="numpy")
    assert numba_model.backend == "numba" and numpy_model.backend == "numpy"
    assert numba_model.kernels is not None and numpy_model.kernels is None
    return numba_model, numpy_model


def inputs(model, m, seed):
    """Times, states and parameters where Max/Min/Heaviside/where switch branches.

    States are negative, exactly zero or positive (Max(0, y) and its Heaviside derivative take
    all three branches, 0.5 at zero); parameters are spread 0.3-2x around the defaults (moving
    the thresholds of Min and where across the states).
    """
    rng = np.random.default_rng(seed)
    n, Q = model.n_states, model.n_parameters + len(model.hidden_names)
    sign = rng.choice([-1.0, 0.0, 1.0], (n, m), p=[0.25, 0.15, 0.6])
    y = rng.lognormal(0.0, 1.0, (n, m)) * sign
    p = model.defaults[:, None] * rng.uniform(0.3, 2.0, (Q, m))
    t = rng.uniform(0.0, 50.0, m)
    return t, y, p


def assert_close(got, want, what):
    assert got.shape == want.shape, what
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{what}: NaN/inf pattern differs"
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    if not want.size:
        return
    assert np.array_equal(got[~finite], want[~finite], equal_nan=True), what
    magnitude = np.where(finite, np.abs(want), 0.0)
    # An entry that cancels to ~0 (a sum of terms of size 1) is compared with the largest entry
    # of its subject: 7e-15 vs 1.4e-14 from summation order is not a disagreement.
    per_subject = magnitude.max(axis=tuple(range(magnitude.ndim - 1)), keepdims=True)
    scale = np.maximum(np.maximum(magnitude, magnitude.max(axis=-1, keepdims=True)), per_subject)
    err = np.where(finite, np.abs(got - want), 0.0)
    worst = float(np.max(err / np.where(scale > 0, scale, 1.0)))
    assert worst <= RTOL, f"{what}: relative difference {worst:.3g}"


@pytest.mark.parametrize("m", [1, 3, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_functions_equal_the_numpy_functions(pair, m, seed):
    fast, ref = pair
    t, y, p = inputs(fast, m, seed)
    with np.errstate(all="ignore"):
        for name in compiled._CORE:
            yy = None if name in P_ONLY else y
            for tt in (t, float(t[0])):  # a time per subject, or one for all
                want = getattr(ref, name)(tt, yy, p)
                got = getattr(fast, name)(tt, yy, p)
                assert isinstance(getattr(fast, name), _kernels.BatchFunction)
                assert not getattr(fast, name)._failed  # numba ran, not the numpy fallback
                assert_close(got, want, f"{fast.name} {name} m={m}")


def test_inputs_reach_every_branch(pair):
    """The random inputs above do switch branches (else the comparison proves little)."""
    fast, _ = pair
    _, y, _ = inputs(fast, 50, 0)
    assert ((y < 0).any(axis=1) & (y == 0).any(axis=1) & (y > 0).any(axis=1)).all()


@pytest.mark.parametrize("seed", [0, 3])
def test_kernels_equal_the_numpy_functions_subject_by_subject(pair, seed):
    fast, ref = pair
    K = fast.kernels
    m = 50
    t, y, p = inputs(fast, m, seed)
    assert (K.n_states, K.n_params) == (fast.n_states, p.shape[0])
    assert (K.n_observables, K.n_events) == (len(fast.observable_names), len(fast.events))
    with np.errstate(all="ignore"):
        for name in compiled._CORE:
            want = getattr(ref, name)(t, None if name in P_ONLY else y, p)
            got = np.empty_like(want)
            out = np.empty(want.shape[:-1])
            for i in range(m):
                out.fill(12345.0)  # the kernel must overwrite every entry, zeros included
                getattr(K, name)(float(t[i]), np.ascontiguousarray(y[:, i]),
                                 np.ascontiguousarray(p[:, i]), out)
                got[..., i] = out
            assert_close(got, want, f"{fast.name} kernel {name}")


def test_kernels_are_callable_from_compiled_code(pair):
    import numba

    fast, ref = pair
    K = fast.kernels

    @numba.njit
    def euler(f, y, p, h, steps):
        out = np.empty_like(y)
        for i in range(steps):
            f(i * h, y, p, out)
            y = y + h * out
        return y

    y0 = fast.initial(0.0, None, fast.defaults[:, None])[:, 0]
    p = np.ascontiguousarray(fast.defaults)
    got = euler(K.rhs, y0.copy(), p, 0.01, 20)
    y = y0.copy()
    for i in range(20):
        y = y + 0.01 * ref.rhs(i * 0.01, y[:, None], p[:, None])[:, 0]
    np.testing.assert_allclose(got, y, rtol=1e-12, atol=1e-14 * np.abs(y).max())


def test_batch_functions_broadcast_like_the_numpy_ones(pair):
    fast, ref = pair
    t, y, p = inputs(fast, 4, 5)
    y = np.abs(y) + 0.1
    shared = p[:, :1]  # one parameter column for every subject
    with np.errstate(all="ignore"):
        for name in ("rhs", "jac", "observe"):
            want = getattr(ref, name)(t, y, np.repeat(shared, 4, axis=1))
            assert_close(getattr(fast, name)(t, y, shared), want, name)
            # Fortran-ordered and strided views are taken as numpy takes them
            strided = np.repeat(p, 2, axis=1)[:, ::2]
            assert not strided.flags.c_contiguous
            assert_close(getattr(fast, name)(t, np.asfortranarray(y), strided),
                         getattr(ref, name)(t, y, p), name)


HELPER_POINTS = np.array([-1e308, -800.0, -40.0, -1.5, -1e-12, -0.0, 0.0, 1e-12, 0.3, 2.0,
                          40.0, 800.0, 1e308, np.inf, -np.inf, np.nan])


@pytest.fixture(scope="module")
def helpers():
    """The numba helpers alone, compiled from the text every generated module contains."""
    return _codegen_numba.load_module(_codegen_numba.module_source({}), "_test_helpers")


def test_numba_helpers_match_the_numpy_ones(helpers):
    x = HELPER_POINTS
    with np.errstate(all="ignore"):
        for name in ("softplus", "sigmoid"):
            want = NUMPY_IMPLEMENTATIONS[name](x)
            got = np.array([getattr(helpers, name)(v) for v in x])
            np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, err_msg=name)
        for K, n in [(1.0, 2.0), (0.7, 3.5), (2.0, 1.0)]:
            want = NUMPY_IMPLEMENTATIONS["hill"](x, K, n)
            got = np.array([helpers.hill(v, K, n) for v in x])
            np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, err_msg="hill")
        for a in x:
            for b in (0.0, 1.0, -2.0, np.nan):
                for ours, theirs in ((helpers._maximum, np.maximum), (helpers._minimum,
                                                                       np.minimum)):
                    assert np.array_equal(ours(a, b), theirs(a, b), equal_nan=True), (a, b)
            assert np.array_equal(helpers._heaviside(a), np.heaviside(a, 0.5), equal_nan=True)
    assert helpers.softplus(0.0) == math.log(2.0)
    assert helpers.softplus(800.0) == 800.0 and helpers.softplus(-800.0) == 0.0


def test_kernels_and_batch_functions_refuse_to_pickle(pair):
    import pickle

    fast, _ = pair
    with pytest.raises(TypeError, match="pickle the model"):
        pickle.dumps(fast.kernels)
    with pytest.raises(TypeError, match="pickle the model"):
        pickle.dumps(fast.rhs)


def test_sensitivity_dfdp_columns_and_jump_functions_equal_the_numpy_ones(pair):
    fast, ref = pair
    n, m = fast.n_states, 50
    t, y, p = inputs(fast, m, 7)
    cols = [0, 2, fast.n_parameters - 1]
    k = len(cols)
    rng = np.random.default_rng(8)
    Y = np.vstack([y, rng.normal(0.0, 1.0, (k * n, m))])
    Pa = np.vstack([p, rng.uniform(0.5, 2.0, (k, m))])
    state = fast.state_names[-1]
    jump = {state: f"{state} * 0.5 + 0.25", fast.state_names[0]: f"max({state}, 0.1)"}
    with np.errstate(all="ignore"):
        want = ref.sensitivity_rhs(cols)(t, Y, Pa)
        assert_close(fast.sensitivity_rhs(cols)(t, Y, Pa), want, "sensitivity_rhs")
        assert isinstance(fast.sensitivity_rhs(cols), _kernels.BatchFunction)
        assert not fast.sensitivity_rhs(cols)._failed
        kernel = fast.sensitivity_kernel(cols)
        assert ref.sensitivity_kernel(cols) is None
        got = np.empty_like(want)
        out = np.empty(Y.shape[0])
        for i in range(m):
            out.fill(np.nan)
            kernel(float(t[i]), np.ascontiguousarray(Y[:, i]), np.ascontiguousarray(Pa[:, i]),
                   out)
            got[:, i] = out
        assert_close(got, want, "sensitivity kernel")
        assert_close(fast.dfdp_columns(cols)(t, y, p), ref.dfdp_columns(cols)(t, y, p),
                     "dfdp_columns")
        a, b = fast.jump(jump), ref.jump(jump)
        for part in ("apply", "dy", "dp"):
            assert_close(getattr(a, part)(t, y, p), getattr(b, part)(t, y, p), f"jump {part}")


BIG_CONSTANTS = """
[model]
name = "big"
time_unit = "month"
[parameters.k]
value = 0.5
bounds = [0.0, 2.0]
[states.F]
initial = 1.0
[equations]
F = "-k * F * 3**60 / 10**30 + 10**25 / 7 * 1e-24 - F / 3"
[observables.o]
expression = "F * 2**70"
"""


def test_constants_beyond_int64_compile_and_equal_the_numpy_code():
    """Integer and rational constants numba cannot type as int64 are written as the floats
    Python computes for the numpy code (else numba refuses the function)."""
    spec = pg.parse_model(BIG_CONSTANTS, "big.toml")
    fast = pg.compile_model(spec, backend="numba", cache=False)
    ref = pg.compile_model(spec, backend="numpy", cache=False)
    y = np.array([[0.5, 2.0, -1.0]])
    p = np.array([[0.5, 1.0, 1.5]])
    for name in ("rhs", "jac", "dfdp", "observe", "dobs_dy"):
        assert_close(getattr(fast, name)(0.0, y, p), getattr(ref, name)(0.0, y, p), name)
        assert not getattr(fast, name)._failed, name


def test_fused_rhs_jac_kernel_equals_the_numpy_rhs_and_jacobian(pair):
    """rhs_jac (one elimination for both, used by compiled Rodas4 after every step) gives
    the numpy rhs and jac subject by subject, every entry overwritten."""
    fast, ref = pair
    K = fast.kernels
    m = 30
    t, y, p = inputs(fast, m, 4)
    n = fast.n_states
    with np.errstate(all="ignore"):
        want_f = ref.rhs(t, y, p)
        want_J = ref.jac(t, y, p)
        got_f, got_J = np.empty_like(want_f), np.empty_like(want_J)
        f, J = np.empty(n), np.empty((n, n))
        for i in range(m):
            f.fill(12345.0)
            J.fill(12345.0)
            K.rhs_jac(float(t[i]), np.ascontiguousarray(y[:, i]),
                      np.ascontiguousarray(p[:, i]), f, J)
            got_f[:, i], got_J[..., i] = f, J
    assert_close(got_f, want_f, f"{fast.name} rhs_jac: rhs")
    assert_close(got_J, want_J, f"{fast.name} rhs_jac: jac")


def test_shared_exponential_helpers_equal_softplus_and_sigmoid(helpers):
    """_softplus_e / _sigmoid_e with e = exp(-|x|) are softplus (to the bit) and sigmoid (to
    rounding: absolute 1e-16 on values in [0, 1], where the tanh form 0.5 (1 + tanh(x/2))
    loses the tail below ~1e-17 to 0, e.g. at x = -40), NaN and infinities included."""
    x = HELPER_POINTS
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        soft = np.array([helpers._softplus_e(v, w) for v, w in zip(x, e, strict=True)])
        sig = np.array([helpers._sigmoid_e(v, w) for v, w in zip(x, e, strict=True)])
        assert np.array_equal(soft, np.array([helpers.softplus(v) for v in x]), equal_nan=True)
        np.testing.assert_allclose(sig, NUMPY_IMPLEMENTATIONS["sigmoid"](x), rtol=4e-16,
                                   atol=1e-16)


def test_softplus_and_sigmoid_of_one_argument_share_one_exponential():
    """The generated code computes exp(-|u|) once for softplus(u) and sigmoid(u) (als_systemic:
    the hazard's ALSFRS-R level and slope) and keeps the numpy function's values."""
    import sympy as sp

    from progression.model._symbolic import sigmoid, softplus

    x, a = sp.symbols("x a")
    exprs = [softplus(x / a) + sigmoid(x / a) * x, sigmoid(2 * x)]
    text = _codegen_numba.function_source("f", exprs, (2,), sp.Symbol("t"), [x], [a])
    # once in the kernel and once in the batch loop, for the pair only (not sigmoid(2 x))
    assert text.count("math.exp(-abs(") == 2
    assert "_softplus_e(" in text and "_sigmoid_e(" in text and "sigmoid(2*" in text
    module = _codegen_numba.load_module(_codegen_numba.module_source({"f": text}), "_test_f")
    for xv, av in [(0.3, 0.1), (-2.0, 0.5), (0.0, 1.0), (40.0, 0.05)]:
        out = np.empty(2)
        module.f(0.0, np.array([xv]), np.array([av]), out)
        u = xv / av
        want = [NUMPY_IMPLEMENTATIONS["softplus"](u) + NUMPY_IMPLEMENTATIONS["sigmoid"](u) * xv,
                NUMPY_IMPLEMENTATIONS["sigmoid"](2 * xv)]
        np.testing.assert_allclose(out, want, rtol=1e-15, atol=1e-300)
    source = pg.compile_model(pg.model.library.library_spec("als_systemic"),
                              backend="numba").sources["numba"]
    rhs = source[source.index("def rhs(t, y, p, out)"):source.index("def _batch_rhs(")]
    assert "_softplus_e(" in rhs and "_sigmoid_e(" in rhs


def test_pow_with_a_run_time_exponent_equals_numpy_power(helpers):
    """_pow(x, n) (a parameter as exponent: a Hill coefficient, its n - 1) takes products,
    sqrt or a division for n = 2, 1, 1/2, -1 and pow otherwise: numpy's power to 1 ulp, the
    same NaN/inf pattern and the sign of zero; the generated code calls it for symbolic
    exponents only (numeric ones stay ``**``, which LLVM expands itself). The reference is
    numpy's power with an array of exponents (the C library's pow, as the numpy code of a
    model calls it; a scalar 0.5 would take numpy's own sqrt path)."""
    import sympy as sp

    x = HELPER_POINTS
    with np.errstate(all="ignore"):
        for n in (2.0, 1.0, 0.5, -1.0, 3.5, 0.0, -2.0, np.nan, np.inf):
            want = np.power(x, np.full(x.shape, n))
            got = np.array([helpers._pow(v, n) for v in x])
            assert np.array_equal(np.isnan(got), np.isnan(want)), n
            np.testing.assert_allclose(got, want, rtol=2.3e-16, atol=0, err_msg=str(n))
            assert np.array_equal(np.signbit(got), np.signbit(want)), n
        # the fast paths on random points: pow's result to 1 ulp
        v = np.random.default_rng(3).lognormal(0.0, 3.0, 1000)
        for n in (2.0, 1.0, 0.5, -1.0):
            got = np.array([helpers._pow(a, n) for a in v])
            np.testing.assert_allclose(got, np.power(v, np.full(v.shape, n)), rtol=2.3e-16,
                                       atol=0)
    assert helpers.hill(0.5, 0.5, 2.0) == 0.5 and helpers.hill(-1.0, 0.5, 2.0) == 0.0
    y, a, b = sp.symbols("y a b")
    text = _codegen_numba.function_source("g", [y**a, y**2 * b**-1, sp.sqrt(y) * a],
                                          (3,), sp.Symbol("t"), [y], [a, b])
    assert "_pow(_y0, _p0)" in text and "_pow(_y0, 2" not in text
    module = _codegen_numba.load_module(_codegen_numba.module_source({"g": text}), "_test_g")
    out = np.empty(3)
    module.g(0.0, np.array([1.7]), np.array([2.0, 0.3]), out)
    np.testing.assert_allclose(out, [1.7**2.0, 1.7**2 / 0.3, math.sqrt(1.7) * 2.0],
                               rtol=2.3e-16)
