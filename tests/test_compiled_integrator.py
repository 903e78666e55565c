"""The compiled per-subject Rodas4 (progression/simulate/_compiled.py and its numerics,
_rodas4_numba.py and _rodas4_loops.py) on hand-written kernels.

Kernels written here by hand follow the kernel contract (``name(t, y, p, out)``): logistic
growth (closed form for states, sensitivities and an event time), Robertson's stiff chemical
kinetics (against scipy's Radau at rtol 1e-11) and one-compartment oral pharmacokinetics
(Bateman function; a terminal event). Tolerances are stated per test. Also: failures come back
as a status and a code, and ``rodas_states`` gives the numpy version's states on real models.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.integrate import solve_ivp

compiled = pytest.importorskip("progression.simulate._compiled")
if not compiled.AVAILABLE:
    pytest.skip("numba is not installed", allow_module_level=True)

from numba import njit  # noqa: E402


@njit(cache=True)
def _zero(t, y, p, out):
    out[...] = 0.0


# logistic y' = r y (1 - y/K), p = (r, K, y0); observable 2y; event y - K/2 (rising)
@njit(cache=True)
def _log_rhs(t, y, p, out):
    out[0] = p[0] * y[0] * (1 - y[0] / p[1])


@njit(cache=True)
def _log_jac(t, y, p, out):
    out[0, 0] = p[0] * (1 - 2 * y[0] / p[1])


@njit(cache=True)
def _log_dfdp(t, y, p, out):
    out[0, 0] = y[0] * (1 - y[0] / p[1])
    out[0, 1] = p[0] * y[0] ** 2 / p[1] ** 2
    out[0, 2] = 0.0


@njit(cache=True)
def _log_init(t, y, p, out):
    out[0] = p[2]


@njit(cache=True)
def _log_dinit(t, y, p, out):
    out[0, 0] = 0.0
    out[0, 1] = 0.0
    out[0, 2] = 1.0


@njit(cache=True)
def _log_obs(t, y, p, out):
    out[0] = 2 * y[0]


@njit(cache=True)
def _log_dobs_dy(t, y, p, out):
    out[0, 0] = 2.0


@njit(cache=True)
def _log_event(t, y, p, out):
    out[0] = y[0] - 0.5 * p[1]


LOGISTIC = SimpleNamespace(rhs=_log_rhs, jac=_log_jac, dfdp=_log_dfdp, initial=_log_init,
                           dinitial_dp=_log_dinit, observe=_log_obs, dobs_dy=_log_dobs_dy,
                           dobs_dp=_zero, event_values=_log_event)


# Robertson: y1' = -k1 y1 + k3 y2 y3, y2' = k1 y1 - k3 y2 y3 - k2 y2^2, y3' = k2 y2^2
@njit(cache=True)
def _rob_rhs(t, y, p, out):
    out[0] = -p[0] * y[0] + p[2] * y[1] * y[2]
    out[1] = p[0] * y[0] - p[2] * y[1] * y[2] - p[1] * y[1] ** 2
    out[2] = p[1] * y[1] ** 2


@njit(cache=True)
def _rob_jac(t, y, p, out):
    out[0, 0] = -p[0]
    out[0, 1] = p[2] * y[2]
    out[0, 2] = p[2] * y[1]
    out[1, 0] = p[0]
    out[1, 1] = -p[2] * y[2] - 2 * p[1] * y[1]
    out[1, 2] = -p[2] * y[1]
    out[2, 0] = 0.0
    out[2, 1] = 2 * p[1] * y[1]
    out[2, 2] = 0.0


@njit(cache=True)
def _rob_dfdp(t, y, p, out):
    out[0, 0] = -y[0]
    out[0, 1] = 0.0
    out[0, 2] = y[1] * y[2]
    out[1, 0] = y[0]
    out[1, 1] = -y[1] ** 2
    out[1, 2] = -y[1] * y[2]
    out[2, 0] = 0.0
    out[2, 1] = y[1] ** 2
    out[2, 2] = 0.0


@njit(cache=True)
def _rob_init(t, y, p, out):
    out[0] = 1.0
    out[1] = 0.0
    out[2] = 0.0


@njit(cache=True)
def _no_events(t, y, p, out):
    pass


ROBERTSON = SimpleNamespace(rhs=_rob_rhs, jac=_rob_jac, dfdp=_rob_dfdp, initial=_rob_init,
                            dinitial_dp=_zero, observe=_no_events, dobs_dy=_zero,
                            dobs_dp=_zero, event_values=_no_events)


# one-compartment oral PK, p = (ka, ke, V, dose); conc = A_c / V; event conc - p[4] (falling)
@njit(cache=True)
def _pk_rhs(t, y, p, out):
    out[0] = -p[0] * y[0]
    out[1] = p[0] * y[0] - p[1] * y[1]


@njit(cache=True)
def _pk_jac(t, y, p, out):
    out[0, 0] = -p[0]
    out[0, 1] = 0.0
    out[1, 0] = p[0]
    out[1, 1] = -p[1]


@njit(cache=True)
def _pk_dfdp(t, y, p, out):
    out[...] = 0.0
    out[0, 0] = -y[0]
    out[1, 0] = y[0]
    out[1, 1] = -y[1]


@njit(cache=True)
def _pk_init(t, y, p, out):
    out[0] = p[3]
    out[1] = 0.0


@njit(cache=True)
def _pk_obs(t, y, p, out):
    out[0] = y[1] / p[2]


@njit(cache=True)
def _pk_event(t, y, p, out):
    out[0] = y[1] / p[2] - p[4]


PK = SimpleNamespace(rhs=_pk_rhs, jac=_pk_jac, dfdp=_pk_dfdp, initial=_pk_init,
                     dinitial_dp=_zero, observe=_pk_obs, dobs_dy=_zero, dobs_dp=_zero,
                     event_values=_pk_event)


def _segment(kern, t0, t1, y, S, p, times, sidx=(), ev_sign=(), ev_term=(), n_obs=0,
             rtol=1e-8, atol=1e-12, max_step=np.inf, max_steps=100_000, autonomous=True):
    y = np.array(y, dtype=float)
    n, T, k = y.size, times.size, len(sidx)
    out = {"Y": np.full((T, n), np.nan), "S": np.full((T, k, n), np.nan),
           "O": np.full((T, n_obs), np.nan), "DO": np.full((T, n_obs, k), np.nan),
           "ev_i": np.zeros(8, dtype=np.int64), "ev_t": np.zeros(8),
           "info_i": np.zeros(9, dtype=np.int64), "info_f": np.zeros(3),
           "fail_y": np.zeros((2, n))}
    S = np.array(S, dtype=float).reshape(k, n)
    compiled.segment(compiled.packed_kernels(kern), float(t0), float(t1), y, S,
                     np.asarray(p, dtype=float), np.asarray(sidx, dtype=np.int64),
                     np.ones(k), np.asarray(times, dtype=float), 0, out["Y"], out["S"],
                     out["O"], out["DO"], n_obs > 0, np.asarray(ev_sign, dtype=np.int64),
                     np.asarray(ev_term, dtype=np.bool_), len(ev_sign) > 0, out["ev_i"],
                     out["ev_t"], rtol, atol, max_step, max_steps, autonomous, out["info_i"],
                     out["info_f"], out["fail_y"])
    out["y"], out["S_end"] = y, S
    return out


def _logistic(times, p):
    r, K, y0 = p
    return K / (1 + (K / y0 - 1) * np.exp(-r * times))


def test_logistic_states_sensitivities_and_event_against_the_closed_form():
    p = np.array([0.8, 10.0, 0.1])
    times = np.linspace(0.0, 20.0, 21)
    out = _segment(LOGISTIC, 0.0, 20.0, [0.1], [[0.0], [0.0], [1.0]], p, times,
                   sidx=[0, 1, 2], ev_sign=[1], ev_term=[False], n_obs=1)
    assert out["info_i"][0] == 0 and out["info_i"][1] == 20     # t = 20 left to the caller
    exact = _logistic(times, p)
    np.testing.assert_allclose(out["Y"][:20, 0], exact[:20], rtol=1e-7)
    np.testing.assert_allclose(out["y"][0], exact[20], rtol=1e-7)
    np.testing.assert_allclose(out["O"][:20, 0], 2 * exact[:20], rtol=1e-7)
    for q in range(3):
        e = np.zeros(3)
        e[q] = 1e-6 * p[q]
        fd = (_logistic(times, p + e) - _logistic(times, p - e)) / (2 * e[q])
        scale = np.abs(fd).max()
        assert np.max(np.abs(out["S"][:20, q, 0] - fd[:20])) < 1e-6 * scale, q
        assert np.max(np.abs(out["DO"][:20, 0, q] - 2 * fd[:20])) < 2e-6 * scale, q
    # y = K/2 at t = ln(K/y0 - 1)/r
    assert out["info_i"][6] == 1
    assert abs(out["ev_t"][0] - np.log(p[1] / p[2] - 1) / p[0]) < 1e-7


def test_robertson_against_tight_radau_with_sensitivities():
    p = np.array([0.04, 3e7, 1e4])
    times = np.array([0.0, 0.4, 4.0, 40.0, 400.0, 4000.0, 40000.0])

    def f(t, y, k1, k2, k3):
        return [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
                k2 * y[1] ** 2]

    def radau(pp):
        sol = solve_ivp(f, (0, times[-1]), [1.0, 0.0, 0.0], method="Radau", t_eval=times,
                        rtol=1e-11, atol=1e-16, args=tuple(pp))
        return sol.y.T

    ref = radau(p)
    out = _segment(ROBERTSON, 0.0, times[-1], [1.0, 0.0, 0.0], np.zeros((3, 3)), p, times,
                   sidx=[0, 1, 2], rtol=1e-6, atol=1e-12)
    assert out["info_i"][0] == 0
    got = np.vstack([out["Y"][:-1], out["y"]])
    # rtol 1e-6: every state within 1e-5 relative (y2 ~ 1e-5..1e-10 relative to its size)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-14)
    # sensitivities against central differences of the Radau solution, at rtol 1e-9
    tight = _segment(ROBERTSON, 0.0, times[-1], [1.0, 0.0, 0.0], np.zeros((3, 3)), p, times,
                     sidx=[0, 1, 2], rtol=1e-9, atol=1e-15)
    S = np.concatenate([tight["S"][:-1], tight["S_end"][None]])
    for q in range(3):
        e = np.zeros(3)
        e[q] = 1e-4 * p[q]
        fd = (radau(p + e) - radau(p - e)) / (2 * e[q])
        for i in range(3):
            scale = np.abs(fd[:, i]).max()
            assert np.max(np.abs(S[:, q, i] - fd[:, i])) < 1e-5 * scale, (q, i)


def test_pk_terminal_event_ends_the_segment_and_leaves_later_outputs_empty():
    ka, ke, V, dose, threshold = 1.2, 0.15, 30.0, 100.0, 0.5
    p = np.array([ka, ke, V, dose, threshold])
    times = np.linspace(0.0, 48.0, 97)
    out = _segment(PK, 0.0, 48.0, [dose, 0.0], np.zeros((0, 2)), p, times, ev_sign=[-1],
                   ev_term=[True], n_obs=1)
    conc = dose * ka / (V * (ka - ke)) * (np.exp(-ke * times) - np.exp(-ka * times))
    assert out["info_i"][0] == 1 and out["info_i"][6] == 1
    # the falling crossing of the threshold, by bisection on the closed form
    lo, hi = 10.0, 48.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        c = dose * ka / (V * (ka - ke)) * (np.exp(-ke * mid) - np.exp(-ka * mid))
        lo, hi = (mid, hi) if c > threshold else (lo, mid)
    t_event = out["ev_t"][0]
    assert abs(t_event - lo) < 1e-6 and out["info_f"][0] == t_event
    before = times <= t_event
    np.testing.assert_allclose(out["O"][before, 0], conc[before], rtol=1e-6, atol=1e-12)
    assert np.all(np.isnan(out["O"][~before])) and np.all(np.isnan(out["Y"][~before]))


def test_failures_come_back_as_status_and_code():
    p = np.array([0.04, 3e7, 1e4])
    times = np.array([0.0, 40.0])
    out = _segment(ROBERTSON, 0.0, 40.0, [1.0, 0.0, 0.0], np.zeros((0, 3)), p, times,
                   max_steps=5)
    assert out["info_i"][0] == -1 and out["info_i"][7] == 1
    assert compiled.FAIL_REASONS[1].format(max_steps=5) == "more than 5 steps"
    out = _segment(ROBERTSON, 0.0, 40.0, [np.nan, 0.0, 0.0], np.zeros((0, 3)), p, times)
    assert out["info_i"][0] == -1 and out["info_i"][7] == 4
    # finite-time blow-up: y' = y (y - 1) from 2, y = 1/(1 - e^t/2), ends at t = ln 2
    out = _segment(LOGISTIC, 0.0, 2.0, [2.0], np.zeros((0, 1)), [-1.0, 1.0, 2.0],
                   np.array([0.0, 2.0]))
    assert out["info_i"][0] == -1 and out["info_i"][7] in (2, 3)
    assert abs(out["info_f"][1] - np.log(2.0)) < 1e-6


def test_rodas_states_compiled_equals_the_numpy_version(monkeypatch):
    import progression as pg
    from progression import _rodas

    times = np.linspace(0.0, 60.0, 13)
    for name in ("als_systemic", "als_reduced"):
        model = pg.load_model(name)
        if model.kernels is None:
            pytest.skip("no kernels")
        rng = np.random.default_rng(5)
        table = model.parameter_table(None, 6)
        for par in ("k0", "kA", "eD"):
            table[:, model.parameter_index(par)] *= np.exp(0.3 * rng.standard_normal(6))
        table = np.clip(table, model.bounds[:, 0], model.bounds[:, 1])
        monkeypatch.setattr(_rodas, "_COMPILED", True)
        a = _rodas.rodas_states(model, table, times, rtol=1e-8, atol=1e-10)
        one = _rodas.rodas_states(model, table[2:3], times, rtol=1e-8, atol=1e-10)
        failed = _rodas.rodas_states(model, table[:2], times, max_steps=5)
        monkeypatch.setattr(_rodas, "_COMPILED", False)
        b = _rodas.rodas_states(model, table, times, rtol=1e-8, atol=1e-10)
        failed_np = _rodas.rodas_states(model, table[:2], times, max_steps=5)
        # the same algorithm: equal to rounding (measured 6e-14)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(a[1], b[1])
        assert a[3]["steps"] == b[3]["steps"]
        np.testing.assert_array_equal(one[0][0], a[0][2])      # independent of the batch
        np.testing.assert_array_equal(failed[1], [-1, -1])
        assert [f[3] for f in failed[2]] == [f[3] for f in failed_np[2]]
        np.testing.assert_allclose(failed[2][0][0], failed_np[2][0][0], rtol=1e-8)


def test_block_lu_of_a_trailing_quadrature_state_solves_like_numpy():
    """Rodas4's LU skips states nothing depends on (a cumulative hazard: zero Jacobian
    column): the leading block is factorised, the trailing rows substituted; the solution is
    numpy's, with and without such states, pivoting included."""
    from progression.simulate._rodas4_numba import _dense_columns, _lu, _lu_solve

    rng = np.random.default_rng(7)
    for n, zero_cols in [(6, 0), (6, 1), (6, 2), (3, 3), (11, 1)]:
        J = rng.standard_normal((n, n)) * 3.0
        J[:, n - zero_cols:] = 0.0
        J[0, 0] = 0.0                  # a zero diagonal: pivoting needed
        assert _dense_columns(J) == n - zero_cols
        W = 4.0 * np.eye(n) - J
        b = rng.standard_normal(n)
        want = np.linalg.solve(W, b)
        E = W.copy()
        piv = np.empty(n, dtype=np.int64)
        nd = _dense_columns(J)
        assert _lu(E, piv, nd)
        x = b.copy()
        _lu_solve(E, piv, x, nd)
        np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)
    E = np.zeros((3, 3))
    assert not _lu(E, np.empty(3, dtype=np.int64), 3)    # singular: refused


@pytest.mark.parametrize("max_steps", [100_000, 40])
def test_all_subjects_in_one_compiled_call_equal_the_per_subject_loop(monkeypatch, max_steps):
    """Without switches after t0 or covariates, simulate runs every subject in one compiled
    Rodas4 call (_rodas_batch); it gives the per-subject loop's results to the bit: states,
    observables, sensitivities, located events (terminal death, clinical onset), statuses,
    messages (failures with max_steps=40 included) and work counters."""
    import progression as pg
    from progression.simulate import _compiled

    model = pg.load_model("als_systemic")
    rng = np.random.default_rng(3)
    table = model.parameter_table(None, 12)
    table *= np.exp(0.3 * rng.standard_normal(table.shape))
    table = np.clip(table, model.bounds[:, 0], model.bounds[:, 1])
    times = np.linspace(0.0, 45.0, 13)    # some patients die, some do not (death ~45 months)

    def run():
        return pg.simulate(model, table, times, sensitivities=["k0", "kA"],
                           max_steps=max_steps)

    calls = []
    original = _compiled._rodas_batch
    monkeypatch.setattr(_compiled, "_rodas_batch",
                        lambda *args, **kw: calls.append(1) or original(*args, **kw))
    fast = run()
    assert calls                                 # the one-call path ran
    monkeypatch.setattr(_compiled, "_rodas_batch", lambda *args, **kw: list(range(12)))
    loop = run()
    for name in ("states", "observables", "state_sensitivities", "observable_sensitivities",
                 "status"):
        assert np.array_equal(getattr(fast, name), getattr(loop, name), equal_nan=True), name
    assert fast.message == loop.message
    assert {e: [list(v) for v in lists] for e, lists in fast.events.items()} == \
        {e: [list(v) for v in lists] for e, lists in loop.events.items()}
    assert {k: fast.stats[k] for k in ("steps", "nfev", "njev", "nlu")} == \
        {k: loop.stats[k] for k in ("steps", "nfev", "njev", "nlu")}
    if max_steps == 40:
        assert (fast.status == -1).any() and "more than 40 steps" in " ".join(fast.message)
    else:
        assert (fast.status == 1).any() and (fast.status == 0).any()
        assert np.isfinite(fast.event_time("clinical_onset")).any()
