"""Benchmark: time per patient from 1 to 10,000 patients of als_systemic (issue 12).

Per-patient CPU time at 1, 10, 100, 1,000 and 10,000 virtual patients (60 months, 13 output
times, rtol 1e-6, atol 1e-9), in the same run, for

* **progression**: ``pg.simulate(model, table, times)`` exactly as a user calls it (defaults:
  no method chosen, automatic chunking, terminal events), the model loaded beforehand and one
  warm-up call made (numba compiles once per machine, cached on disk);
* **plain loop**: the per-patient loop a user writes from the biology reference: its Appendix A
  right-hand side in pure Python (``reference_rhs`` of ``simulate_batch.py``) and
  ``solve_ivp(method="LSODA", max_step=0.5)`` as the reference's own code does; at 1,000 and
  10,000 patients it is timed on a subsample and scaled (its cost per patient is constant);
* **compiled reference**: a per-patient Rodas4 (Hairer & Wanner's 6-stage L-stable Rosenbrock
  method, order 4(3), the coefficients of their ``rodas.f``) written here in numba, with the
  right-hand side and its exact Jacobian written out by hand from Appendix A (checked against
  ``reference_rhs`` and central differences at start-up); steps end exactly at the output
  times; no package code is used.

Accuracy: ALSFRS-R at the 13 times against a tight per-patient Radau (``rtol=1e-11``) on a
subsample, for each of the three (progression run with ``terminal_events=False`` there, so that
trajectories past death compare like for like). Results go to
``benchmarks/results/simulate_scaling.json`` and ``.md``.

Targets (issue 12): at 1 patient at least 5x faster than the plain loop; at 1,000 and 10,000
patients within 1.5x of the compiled reference.

Run: ``python benchmarks/simulate_scaling.py [--sizes 1,10,100,1000,10000] [--loop-sample 100]
[--accuracy-sample 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).parent))
from simulate_batch import (  # noqa: E402  (the benchmark next door)
    TIMES,
    loop,
    reference_alsfrs,
    reference_rhs,
    virtual_patients,
)

import progression as pg  # noqa: E402

RESULTS = Path(__file__).parent / "results"

# ------------------------------------------------------------------ the compiled reference

#: Parameters of Appendix A, in the order of the compiled functions' parameter vector.
NAMES = ("phimax", "KA", "k0", "kA", "kE", "pB", "nD", "KD", "sigD", "deltaD", "aD", "aC",
         "KC", "aAA", "wE", "wR", "dA", "bD", "dB", "deltaP", "eD", "eL", "sP", "deltaE",
         "eEP", "sE", "deltaR", "gIL2", "kRC", "kphi", "gphi", "dphi", "deltaC", "w0", "wP",
         "wE_c", "wA", "sC", "deltaQ", "Q0", "hQ")
(PHIMAX, KA, K0, KAA, KE, PB, ND, KD, SIGD, DELTAD, AD, AC, KC, AAA, WE, WR, DA, BD, DB,
 DELTAP, ED, EL, SP, DELTAE, EEP, SE, DELTAR, GIL2, KRC, KPHI, GPHI, DPHI, DELTAC, W0, WP,
 WE_C, WA, SC, DELTAQ, Q0, HQ) = range(len(NAMES))
N_STATES = 10


@numba.njit(cache=True)
def nb_rhs(y, p, out):
    """Appendix A (uIL2 = 0), as reference_rhs."""
    N, D, A, B, P, E, R, phi, C, Q = y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7], y[8], y[9]
    Ap = max(A, 0.0)
    Bp = max(B, 0.0)
    rest = max(1.0 - Ap - Bp, 0.0)
    Phi = R * phi
    Phi0 = p[PHIMAX]
    sat = Ap / (p[KA] + Ap)
    lam = (p[K0] + (p[KAA] + p[KE] * E) * sat) / (1.0 + p[PB] * Bp)
    H = D ** p[ND] / (p[KD] ** p[ND] + D ** p[ND]) if D > 0 else 0.0
    out[0] = -lam * N
    out[1] = p[SIGD] * lam * N - p[DELTAD] * D
    out[2] = ((p[AD] * H + p[AC] * C / (p[KC] + C) + p[AAA] * Ap) * rest + p[WE] * E * Bp
              - p[WR] * Phi * Ap - p[DA] * Ap)
    out[3] = p[BD] * H * rest + p[WR] * Phi * Ap - p[WE] * E * Bp - p[DB] * Bp
    out[4] = p[DELTAP] * ((1 + p[ED] * D + p[EL]) * (1 + p[SP] * Phi0) / (1 + p[SP] * Phi) - P)
    out[5] = p[DELTAE] * ((1 + p[EEP] * (P - 1)) * (1 + p[SE] * Phi0) / (1 + p[SE] * Phi) - E)
    out[6] = p[DELTAR] - p[DELTAR] * R * (1 + p[KRC] * C) / (1 + p[KRC])
    out[7] = p[KPHI] * (min(1.0, p[PHIMAX] * (1 + p[DPHI]) / (1 + p[DPHI] * C)) - phi)
    out[8] = p[DELTAC] * ((p[W0] + p[WP] * P + p[WE_C] * E + p[WA] * Ap) * (1 + p[SC] * Phi0)
                          / (1 + p[SC] * Phi) - C)
    out[9] = p[DELTAQ] * (p[Q0] * max(C, 0.0) ** p[HQ] - Q)


@numba.njit(cache=True)
def nb_jac(y, p, J):
    """d nb_rhs / dy, by hand (one-sided where max/min switch)."""
    N, D, A, B, P, E, R, phi, C = y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7], y[8]
    J[:, :] = 0.0
    iA = 1.0 if A > 0 else 0.0
    iB = 1.0 if B > 0 else 0.0
    Ap, Bp = max(A, 0.0), max(B, 0.0)
    ir = 1.0 if 1.0 - Ap - Bp > 0 else 0.0
    rest = max(1.0 - Ap - Bp, 0.0)
    drA, drB = -iA * ir, -iB * ir
    Phi = R * phi
    Phi0 = p[PHIMAX]
    sat = Ap / (p[KA] + Ap)
    dsat = iA * p[KA] / (p[KA] + Ap) ** 2
    den = 1.0 + p[PB] * Bp
    num = p[K0] + (p[KAA] + p[KE] * E) * sat
    lam = num / den
    lA = (p[KAA] + p[KE] * E) * dsat / den
    lE = p[KE] * sat / den
    lB = -num * p[PB] * iB / den ** 2
    if D > 0:
        Dn, Kn = D ** p[ND], p[KD] ** p[ND]
        H = Dn / (Kn + Dn)
        dH = p[ND] * D ** (p[ND] - 1.0) * Kn / (Kn + Dn) ** 2
    else:
        H, dH = 0.0, 0.0
    # N
    J[0, 0] = -lam
    J[0, 2] = -N * lA
    J[0, 3] = -N * lB
    J[0, 5] = -N * lE
    # D
    J[1, 0] = p[SIGD] * lam
    J[1, 1] = -p[DELTAD]
    J[1, 2] = p[SIGD] * N * lA
    J[1, 3] = p[SIGD] * N * lB
    J[1, 5] = p[SIGD] * N * lE
    # A
    G = p[AD] * H + p[AC] * C / (p[KC] + C) + p[AAA] * Ap
    J[2, 1] = p[AD] * dH * rest
    J[2, 2] = p[AAA] * iA * rest + G * drA - p[WR] * Phi * iA - p[DA] * iA
    J[2, 3] = G * drB + p[WE] * E * iB
    J[2, 5] = p[WE] * Bp
    J[2, 6] = -p[WR] * phi * Ap
    J[2, 7] = -p[WR] * R * Ap
    J[2, 8] = p[AC] * p[KC] / (p[KC] + C) ** 2 * rest
    # B
    J[3, 1] = p[BD] * dH * rest
    J[3, 2] = p[BD] * H * drA + p[WR] * Phi * iA
    J[3, 3] = p[BD] * H * drB - p[WE] * E * iB - p[DB] * iB
    J[3, 5] = -p[WE] * Bp
    J[3, 6] = p[WR] * phi * Ap
    J[3, 7] = p[WR] * R * Ap
    # P
    dP = 1.0 + p[SP] * Phi
    X4 = (1 + p[ED] * D + p[EL]) * (1 + p[SP] * Phi0)
    J[4, 1] = p[DELTAP] * p[ED] * (1 + p[SP] * Phi0) / dP
    J[4, 4] = -p[DELTAP]
    J[4, 6] = -p[DELTAP] * X4 * p[SP] * phi / dP ** 2
    J[4, 7] = -p[DELTAP] * X4 * p[SP] * R / dP ** 2
    # E
    dE = 1.0 + p[SE] * Phi
    X5 = (1 + p[EEP] * (P - 1)) * (1 + p[SE] * Phi0)
    J[5, 4] = p[DELTAE] * p[EEP] * (1 + p[SE] * Phi0) / dE
    J[5, 5] = -p[DELTAE]
    J[5, 6] = -p[DELTAE] * X5 * p[SE] * phi / dE ** 2
    J[5, 7] = -p[DELTAE] * X5 * p[SE] * R / dE ** 2
    # R
    J[6, 6] = -p[DELTAR] * (1 + p[KRC] * C) / (1 + p[KRC])
    J[6, 8] = -p[DELTAR] * R * p[KRC] / (1 + p[KRC])
    # phi
    v = p[PHIMAX] * (1 + p[DPHI]) / (1 + p[DPHI] * C)
    if v < 1.0:
        J[7, 8] = -p[KPHI] * p[PHIMAX] * (1 + p[DPHI]) * p[DPHI] / (1 + p[DPHI] * C) ** 2
    J[7, 7] = -p[KPHI]
    # C
    dC = 1.0 + p[SC] * Phi
    X8 = (p[W0] + p[WP] * P + p[WE_C] * E + p[WA] * Ap) * (1 + p[SC] * Phi0)
    J[8, 2] = p[DELTAC] * p[WA] * iA * (1 + p[SC] * Phi0) / dC
    J[8, 4] = p[DELTAC] * p[WP] * (1 + p[SC] * Phi0) / dC
    J[8, 5] = p[DELTAC] * p[WE_C] * (1 + p[SC] * Phi0) / dC
    J[8, 6] = -p[DELTAC] * X8 * p[SC] * phi / dC ** 2
    J[8, 7] = -p[DELTAC] * X8 * p[SC] * R / dC ** 2
    J[8, 8] = -p[DELTAC]
    # Q
    if C > 0:
        J[9, 8] = p[DELTAQ] * p[Q0] * p[HQ] * C ** (p[HQ] - 1.0)
    J[9, 9] = -p[DELTAQ]


# Rodas4 (Hairer & Wanner, Solving ODEs II, IV.7; rodas.f, coefficients of METH = 1, in the
# transformed form of their code): stage-value weights A, stage couplings C (divided by h),
# and gamma.
GAMMA = 0.25
RA = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
               [1.544, 0.0, 0.0, 0.0, 0.0],
               [0.9466785280815826, 0.2557011698983284, 0.0, 0.0, 0.0],
               [3.314825187068521, 2.896124015972201, 0.9986419139977817, 0.0, 0.0],
               [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950,
                0.0]])
RC = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
               [-5.6688, 0.0, 0.0, 0.0, 0.0],
               [-2.430093356833875, -0.2063599157091915, 0.0, 0.0, 0.0],
               [-0.1073529058151375, -9.594562251023355, -20.47028614809616, 0.0, 0.0],
               [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160,
                0.0],
               [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
                -6.058818238834054]])


@numba.njit(cache=True)
def _lu(E, piv):
    """LU with partial pivoting in place; False if singular."""
    n = E.shape[0]
    for k in range(n):
        r = k
        big = abs(E[k, k])
        for i in range(k + 1, n):
            if abs(E[i, k]) > big:
                big, r = abs(E[i, k]), i
        if big == 0.0 or big != big:
            return False
        piv[k] = r
        if r != k:
            for j in range(n):
                E[k, j], E[r, j] = E[r, j], E[k, j]
        inv = 1.0 / E[k, k]
        for i in range(k + 1, n):
            E[i, k] *= inv
            f = E[i, k]
            for j in range(k + 1, n):
                E[i, j] -= f * E[k, j]
    return True


@numba.njit(cache=True)
def _lu_solve(E, piv, b):
    n = E.shape[0]
    for k in range(n):
        r = piv[k]
        if r != k:
            b[k], b[r] = b[r], b[k]
    for i in range(n):
        for j in range(i):
            b[i] -= E[i, j] * b[j]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            b[i] -= E[i, j] * b[j]
        b[i] /= E[i, i]


@numba.njit(cache=True)
def rodas4_patient(y0, p, times, rtol, atol, out, max_steps=100_000):
    """One patient from times[0]; states at every output time into out (n, T).
    Returns the number of steps (negative on failure)."""
    n = y0.size
    T = times.size
    y = y0.copy()
    f = np.empty(n)
    J = np.empty((n, n))
    E = np.empty((n, n))
    piv = np.empty(n, np.int64)
    K = np.empty((6, n))
    yi = np.empty(n)
    fi = np.empty(n)
    ynew = np.empty(n)
    for i in range(n):
        out[i, 0] = y[i]
    t = times[0]
    nb_rhs(y, p, f)
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d0 += (y[i] / sc) ** 2
        d1 += (f[i] / sc) ** 2
    d0, d1 = np.sqrt(d0 / n), np.sqrt(d1 / n)
    h = 0.01 * d0 / d1 if d0 > 1e-5 and d1 > 1e-5 else 1e-6
    nxt = 1
    steps = 0
    rejected = False
    while nxt < T:
        if steps >= max_steps:
            return -steps
        hit = t + h >= times[nxt]
        hh = times[nxt] - t if hit else h
        nb_jac(y, p, J)
        for i in range(n):
            for j in range(n):
                E[i, j] = -J[i, j]
            E[i, i] += 1.0 / (GAMMA * hh)
        if not _lu(E, piv):
            return -steps - 1
        for i in range(n):
            K[0, i] = f[i]
        _lu_solve(E, piv, K[0])
        for s in range(1, 6):
            if s <= 4:
                for i in range(n):
                    acc = y[i]
                    for j in range(s):
                        acc += RA[s, j] * K[j, i]
                    yi[i] = acc
            else:
                for i in range(n):
                    yi[i] += K[4, i]
            nb_rhs(yi, p, fi)
            for i in range(n):
                acc = fi[i]
                for j in range(s):
                    acc += (RC[s, j] / hh) * K[j, i]
                K[s, i] = acc
            _lu_solve(E, piv, K[s])
        err = 0.0
        for i in range(n):
            ynew[i] = yi[i] + K[5, i]
            sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
            err += (K[5, i] / sc) ** 2
        err = np.sqrt(err / n)
        steps += 1
        if not np.isfinite(err):
            err = 1e10
        fac = 0.9 * err ** -0.25 if err > 0 else 6.0
        fac = min(6.0, max(0.2, fac))
        if err <= 1.0:
            t = times[nxt] if hit else t + hh
            for i in range(n):
                y[i] = ynew[i]
            nb_rhs(y, p, f)
            if hit:
                for i in range(n):
                    out[i, nxt] = y[i]
                nxt += 1
            if rejected:
                fac = min(fac, 1.0)
            h = hh * fac if not hit or hh * fac > h else h
            rejected = False
        else:
            h = hh * fac
            rejected = True
    return steps


@numba.njit(cache=True)
def compiled_cohort(Y0, Pm, times, rtol, atol, out):
    """Every patient in turn: Y0 (m, n), Pm (m, len(NAMES)) -> out (m, n, T)."""
    steps = 0
    for s in range(Y0.shape[0]):
        steps += rodas4_patient(Y0[s], Pm[s], times, rtol, atol, out[s])
    return steps


def compiled_inputs(model, table):
    """Initial states and parameter vectors in NAMES order from a model parameter table."""
    idx = [model.parameter_names.index(name) for name in NAMES]
    Pm = np.ascontiguousarray(table[:, idx])
    Y0 = np.zeros((len(table), N_STATES))
    Y0[:, [0, 4, 5, 6, 8]] = 1.0
    Y0[:, 7] = Pm[:, PHIMAX]
    Y0[:, 9] = Pm[:, Q0]
    return Y0, Pm


def check_compiled(model, table):
    """The hand-written rhs equals reference_rhs; the Jacobian equals central differences."""
    Y0, Pm = compiled_inputs(model, table[:5])
    out = np.empty((5, N_STATES, TIMES.size))
    compiled_cohort(Y0, Pm, TIMES, 1e-8, 1e-10, out)
    rng = np.random.default_rng(0)
    worst_f = worst_j = 0.0
    for s in range(5):
        p = dict(zip(model.parameter_names, table[s], strict=True))
        for j in (3, 8, 12):
            y = out[s, :, j] * (1 + 0.01 * rng.standard_normal(N_STATES))
            f = np.empty(N_STATES)
            nb_rhs(y, Pm[s], f)
            ref = np.array(reference_rhs(0.0, y, p))
            worst_f = max(worst_f, np.abs(f - ref).max() / np.abs(ref).max())
            J = np.empty((N_STATES, N_STATES))
            nb_jac(y, Pm[s], J)
            fd = np.empty_like(J)
            for q in range(N_STATES):
                e = 1e-6 * max(abs(y[q]), 1e-3)
                a, b = np.empty(N_STATES), np.empty(N_STATES)
                yp, ym = y.copy(), y.copy()
                yp[q] += e
                ym[q] -= e
                nb_rhs(yp, Pm[s], a)
                nb_rhs(ym, Pm[s], b)
                fd[:, q] = (a - b) / (2 * e)
            worst_j = max(worst_j, np.abs(J - fd).max() / np.abs(fd).max())
    assert worst_f < 1e-12, worst_f
    assert worst_j < 1e-6, worst_j
    return worst_f, worst_j


# ------------------------------------------------------------------ timing


def cpu(func, reps=1):
    """CPU seconds of one call (the median of ``reps`` calls) and its last result."""
    times = []
    for _ in range(reps):
        start = time.process_time()
        result = func()
        times.append(time.process_time() - start)
    return float(np.median(times)), result


def alsfrs_progression(model, sim):
    """ALSFRS-R (observable 0) from progression's states, no terminal-event mask."""
    values = np.empty((sim.n_subjects, TIMES.size))
    for j in range(TIMES.size):
        values[:, j] = model.observe(TIMES[j], sim.states[:, :, j].T, sim.parameters.T)[0]
    return values


def alsfrs_compiled(model, table, states):
    return np.array([reference_alsfrs(states[s, 0], dict(zip(model.parameter_names, table[s],
                                                              strict=True)))
                     for s in range(len(table))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000,10000")
    parser.add_argument("--loop-sample", type=int, default=100,
                        help="patients the plain loop is timed on at larger sizes (scaled)")
    parser.add_argument("--accuracy-sample", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_start = os.getloadavg()
    opts = {"rtol": 1e-6, "atol": 1e-9}

    model = pg.load_model("als_systemic")
    table = virtual_patients(model, max(sizes))
    print(f"als_systemic, 0-60 months, 13 output times, rtol 1e-6; load average "
          f"{load_start[0]:.2f}")

    # one-time costs, reported apart: numba compilation (or loading its cache)
    start = time.perf_counter()
    pg.simulate(model, table[:2], TIMES)
    pg.simulate(model, table[:2], TIMES, batch_size=2, method="LSODA")
    warm_ours = time.perf_counter() - start
    start = time.perf_counter()
    err_f, err_j = check_compiled(model, table)
    warm_ref = time.perf_counter() - start
    print(f"warm-up: progression {warm_ours:.2f} s, compiled reference {warm_ref:.2f} s "
          f"(rhs vs reference_rhs {err_f:.1e}, Jacobian vs central differences {err_j:.1e})")

    rows = []
    for m in sizes:
        sub = table[:m]
        reps = 7 if m <= 10 else (3 if m <= 100 else 1)
        t_ours, sim = cpu(lambda sub=sub: pg.simulate(model, sub, TIMES, **opts), reps)
        Y0, Pm = compiled_inputs(model, sub)
        out = np.empty((m, N_STATES, TIMES.size))
        t_ref, steps = cpu(lambda Y0=Y0, Pm=Pm, out=out: compiled_cohort(
            Y0, Pm, TIMES, opts["rtol"], opts["atol"], out), reps)
        k = m if m <= args.loop_sample else args.loop_sample
        k_rep = max(1, min(5, 10 // max(k, 1))) if m == 1 else 1
        t_loop, _ = cpu(lambda k=k: loop(model, table[:k], method="LSODA", max_step=0.5,
                                         **opts), k_rep)
        t_loop *= m / k
        row = {"patients": m,
               "progression_ms": 1e3 * t_ours / m, "loop_ms": 1e3 * t_loop / m,
               "compiled_ms": 1e3 * t_ref / m,
               "loop_timed_on": k, "progression_method": sim.stats["method"],
               "compiled_steps_per_patient": steps / m,
               "loop_over_progression": t_loop / t_ours,
               "progression_over_compiled": t_ours / t_ref}
        rows.append(row)
        print(f"{m:6d} patients: progression {row['progression_ms']:8.3f} ms/patient "
              f"({sim.stats['method']}), plain loop {row['loop_ms']:7.3f}"
              f"{'' if k == m else f' (timed on {k}, scaled)'}, compiled reference "
              f"{row['compiled_ms']:6.3f}  ->  loop/progression "
              f"{row['loop_over_progression']:6.1f}x"
              f", progression/compiled {row['progression_over_compiled']:5.2f}x", flush=True)

    a = min(args.accuracy_sample, max(sizes))
    acc = table[:a]
    truth = loop(model, acc, method="Radau", rtol=1e-11, atol=1e-13)
    ours = alsfrs_progression(model, pg.simulate(model, acc, TIMES, terminal_events=False,
                                                 **opts))
    base = loop(model, acc, method="LSODA", max_step=0.5, **opts)
    Y0, Pm = compiled_inputs(model, acc)
    out = np.empty((a, N_STATES, TIMES.size))
    compiled_cohort(Y0, Pm, TIMES, opts["rtol"], opts["atol"], out)
    ref = alsfrs_compiled(model, acc, out)
    err = {"progression": float(np.nanmax(np.abs(ours - truth))),
           "loop_lsoda": float(np.nanmax(np.abs(base - truth))),
           "compiled_reference": float(np.nanmax(np.abs(ref - truth)))}
    print(f"max |ALSFRS-R error| vs Radau rtol 1e-11 on {a} patients: progression "
          f"{err['progression']:.1e}, plain loop {err['loop_lsoda']:.1e}, compiled reference "
          f"{err['compiled_reference']:.1e} points")

    by = {r["patients"]: r for r in rows}
    targets = {}
    if 1 in by:
        targets["1 patient: plain loop / progression >= 5"] = by[1]["loop_over_progression"] >= 5
    for m in (1000, 10000):
        if m in by:
            targets[f"{m} patients: progression / compiled <= 1.5"] = \
                by[m]["progression_over_compiled"] <= 1.5
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")

    load_end = os.getloadavg()
    record = {
        "benchmark": "simulate_scaling",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "load_average": {"start": load_start, "end": load_end},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "numba": numba.__version__,
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count()},
        "settings": {"model": "als_systemic", "months": 60, "outputs": int(TIMES.size),
                     **opts, "loop": "solve_ivp LSODA, max_step 0.5, Python right-hand side",
                     "time": "CPU seconds (time.process_time), median of repeated calls at "
                             "<= 100 patients"},
        "warm_up_seconds": {"progression": warm_ours, "compiled_reference": warm_ref},
        "rows": rows,
        "max_abs_alsfrs_error": err, "accuracy_sample": a,
        "targets": targets,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulate_scaling.json").write_text(json.dumps(record, indent=2) + "\n")
    md = [
        "# simulate_scaling",
        "",
        f"Per-patient CPU time, `als_systemic` (every parameter log-normal, SD of log 0.3), "
        f"0-60 months, 13 output times, rtol 1e-6, atol 1e-9. Measured {record['date']} on "
        f"{os.cpu_count()} shared cores (load average {load_start[0]:.2f} at the start, "
        f"{load_end[0]:.2f} at the end; Python {record['machine']['python']}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}).",
        f"Command: `{record['command']}`.",
        "",
        "| patients | `pg.simulate` (as a user calls it) | plain `solve_ivp` LSODA loop, "
        "Python RHS | compiled reference (numba Rodas4, one patient at a time) | loop / "
        "progression | progression / compiled |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        scaled = "" if r["loop_timed_on"] == r["patients"] else \
            f" (timed on {r['loop_timed_on']}, scaled)"
        md.append(f"| {r['patients']:,} | {r['progression_ms']:.3f} ms | {r['loop_ms']:.2f} ms"
                  f"{scaled} | {r['compiled_ms']:.3f} ms | {r['loop_over_progression']:.1f}x | "
                  f"{r['progression_over_compiled']:.2f}x |")
    md += [
        "",
        "Path `pg.simulate` took: " + ", ".join(
            f"{r['patients']:,}: {r['progression_method']}" for r in rows) + ".",
        "",
        f"Accuracy, max |ALSFRS-R error| against per-patient Radau (rtol 1e-11) on {a} "
        f"patients: progression {err['progression']:.1e}, plain loop {err['loop_lsoda']:.1e}, "
        f"compiled reference {err['compiled_reference']:.1e} points.",
        "",
        "Targets (issue 12): " + "; ".join(f"{k}: {'met' if v else 'NOT met'}"
                                           for k, v in targets.items()) + ".",
        "",
        f"One-time costs, not in the table: first calls {warm_ours:.2f} s for progression "
        f"(numba code loaded from the on-disk cache, or compiled on a cold cache) and "
        f"{warm_ref:.2f} s for the compiled reference (same). The plain loop uses "
        "`max_step=0.5` as the reference's own code does; progression and the compiled "
        "reference have no step limit.",
        "",
    ]
    (RESULTS / "simulate_scaling.md").write_text("\n".join(md))
    print(f"wrote {RESULTS / 'simulate_scaling.json'} and .md")


if __name__ == "__main__":
    main()
