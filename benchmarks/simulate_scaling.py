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
  times; no package code is used. Two variants: the **same model** ``pg.simulate``
  integrates (11 states: Appendix A plus the death hazard's cumulative hazard of
  ``[hazards.death]``, with its terminal event at each patient's Exp(1) threshold; its
  right-hand side checked against the package model's), and **Appendix A only** (10 states,
  no death: what the issue's first table compared before the hazard existed).

Accuracy: ALSFRS-R at the 13 times against a tight per-patient Radau (``rtol=1e-11``) on a
subsample, for each of the three (progression run with ``terminal_events=False`` there, so that
trajectories past death compare like for like). Results go to
``benchmarks/results/simulate_scaling.json`` and ``.md``.

Targets (issue 12): at 1 patient at least 5x faster than the plain loop; at 1,000 and 10,000
patients within 1.5x of the compiled reference of the model ``pg.simulate`` integrates (11
states). The 10-state column is kept for the record, not as a target: it times a cheaper model
(no death hazard, no terminal event), so its ratio measures the model's extra state as much as
the integrator.

Run: ``python benchmarks/simulate_scaling.py [--sizes 1,10,100,1000,10000] [--loop-sample 100]
[--accuracy-sample 30]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy
import scipy.special
from scipy.integrate import solve_ivp

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
#: als_systemic as the hand-written references reproduce it (11 states), frozen beside the
#: benchmarks (see the file's header): the library model gained a state and terms in issue 13.
MODEL_FILE = str(Path(__file__).resolve().parent / "models" / "als_systemic_issue12.toml")

# ------------------------------------------------------------------ the compiled reference

#: Parameters of Appendix A, in the order of the compiled functions' parameter vector.
NAMES = ("phimax", "KA", "k0", "kA", "kE", "pB", "nD", "KD", "sigD", "deltaD", "aD", "aC",
         "KC", "aAA", "wE", "wR", "dA", "bD", "dB", "deltaP", "eD", "eL", "sP", "deltaE",
         "eEP", "sE", "deltaR", "gIL2", "kRC", "kphi", "gphi", "dphi", "deltaC", "w0", "wP",
         "wE_c", "wA", "sC", "deltaQ", "Q0", "hQ",
         # the death hazard of the 11-state reference (ignored by the 10-state one)
         "N0", "Nth", "wsp", "hb", "h0", "alpha1", "alpha2", "z_death")
(PHIMAX, KA, K0, KAA, KE, PB, ND, KD, SIGD, DELTAD, AD, AC, KC, AAA, WE, WR, DA, BD, DB,
 DELTAP, ED, EL, SP, DELTAE, EEP, SE, DELTAR, GIL2, KRC, KPHI, GPHI, DPHI, DELTAC, W0, WP,
 WE_C, WA, SC, DELTAQ, Q0, HQ, N0, NTH, WSP, HB, H0, ALPHA1, ALPHA2, Z_DEATH) = \
    range(len(NAMES))
#: Per-patient constants the 11-state reference computes once (appended to the vector):
#: ALSFRS-R of the intact pool (the hazard's reference level) and the Exp(1) threshold.
FRS_MAX, THRESHOLD = len(NAMES), len(NAMES) + 1
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


# ------------------------------------------------------------------ the 11-state reference
# The model pg.simulate integrates since issue 13: Appendix A plus the death hazard of
# [hazards.death] (als_systemic.toml) as a cumulative-hazard state Lambda,
#   Lambda' = hb + h0 expm1(alpha1 (F(N) at N = 1 - F(N)) + alpha2 max(0, -dF/dt)),
#   F(N) = 48 (softplus_w(N - N0) - softplus_w(N - Nth)) / (Nth - N0),
#   dF/dt = F'(N) N' = -48 (sigmoid((N - N0)/w) - sigmoid((N - Nth)/w)) / (Nth - N0) lam N,
# and the terminal event Lambda = -log(1 - Phi(z_death)) (the patient's Exp(1) threshold).


@numba.njit(cache=True, inline="always")
def _sp(x):
    """softplus(x) = log(1 + exp(x)), overflow-free."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True, inline="always")
def _sig(x):
    """1 / (1 + exp(-x)), overflow-free."""
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@numba.njit(cache=True)
def nb_rhs11(y, p, out):
    """Appendix A (nb_rhs) and the death hazard's cumulative hazard (state 10)."""
    nb_rhs(y, p, out)
    N, A, B, E = y[0], max(y[2], 0.0), max(y[3], 0.0), y[5]
    w = p[WSP]
    lam = (p[K0] + (p[KAA] + p[KE] * E) * A / (p[KA] + A)) / (1.0 + p[PB] * B)
    x0, x1 = (N - p[N0]) / w, (N - p[NTH]) / w
    c = 48.0 / (p[NTH] - p[N0])
    F = c * w * (_sp(x0) - _sp(x1))
    dF = -c * (_sig(x0) - _sig(x1)) * lam * N
    out[10] = p[HB] + p[H0] * math.expm1(p[ALPHA1] * (p[FRS_MAX] - F)
                                         + p[ALPHA2] * max(-dF, 0.0))


@numba.njit(cache=True)
def nb_jac11(y, p, J):
    """d nb_rhs11 / dy: nb_jac and the hazard's row (its column is zero)."""
    n = 11
    nb_jac(y[:10], p, J[:10, :10])
    for i in range(n):
        J[i, 10] = 0.0
        J[10, i] = 0.0
    N, A, B, E = y[0], y[2], y[3], y[5]
    iA = 1.0 if A > 0 else 0.0
    iB = 1.0 if B > 0 else 0.0
    Ap, Bp = max(A, 0.0), max(B, 0.0)
    w = p[WSP]
    sat = Ap / (p[KA] + Ap)
    den = 1.0 + p[PB] * Bp
    num = p[K0] + (p[KAA] + p[KE] * E) * sat
    lam = num / den
    lA = (p[KAA] + p[KE] * E) * iA * p[KA] / (p[KA] + Ap) ** 2 / den
    lE = p[KE] * sat / den
    lB = -num * p[PB] * iB / den ** 2
    x0, x1 = (N - p[N0]) / w, (N - p[NTH]) / w
    c = 48.0 / (p[NTH] - p[N0])
    s0, s1 = _sig(x0), _sig(x1)
    G = c * (s0 - s1)                                   # dF/dN
    dG = c * (s0 * (1 - s0) - s1 * (1 - s1)) / w        # d2F/dN2
    F = c * w * (_sp(x0) - _sp(x1))
    dF = -G * lam * N
    slope = -dF > 0
    u = p[ALPHA1] * (p[FRS_MAX] - F) + p[ALPHA2] * max(-dF, 0.0)
    scale = p[H0] * math.exp(u)
    dslope = p[ALPHA2] if slope else 0.0                # d u / d(-dF)
    J[10, 0] = scale * (-p[ALPHA1] * G + dslope * (dG * lam * N + G * lam))
    J[10, 2] = scale * dslope * G * N * lA
    J[10, 3] = scale * dslope * G * N * lB
    J[10, 5] = scale * dslope * G * N * lE


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
def _hermite_root(t0, h, a0, d0, a1, d1, level):
    """Where the cubic Hermite through (t0, a0, slope d0) and (t0 + h, a1, slope d1) meets
    ``level`` (a0 < level <= a1): Illinois search to 1e-10 of the step."""
    lo, hi = 0.0, 1.0
    glo, ghi = a0 - level, a1 - level
    side = 0
    for _ in range(100):
        s = lo - glo * (hi - lo) / (ghi - glo) if ghi != glo else 0.5 * (lo + hi)
        s = min(max(s, lo), hi)
        v = ((2 * s**3 - 3 * s**2 + 1) * a0 + (s**3 - 2 * s**2 + s) * h * d0
             + (-2 * s**3 + 3 * s**2) * a1 + (s**3 - s**2) * h * d1) - level
        if v == 0.0:
            return t0 + s * h
        if (v > 0) == (ghi > 0):
            hi, ghi = s, v
            if side == 1:
                glo *= 0.5
            side = 1
        else:
            lo, glo = s, v
            if side == -1:
                ghi *= 0.5
            side = -1
        if hi - lo <= 1e-10:
            break
    return t0 + 0.5 * (lo + hi) * h


@numba.njit(cache=True)
def rodas4_patient(y0, p, times, rtol, atol, out, hazard=False, terminal=False,
                   max_steps=100_000):
    """One patient from times[0]; states at every output time into out (n, T).

    ``hazard``: the 11-state model (nb_rhs11, nb_jac11; y0 with 11 entries, p with the
    per-patient constants FRS_MAX and THRESHOLD appended); ``terminal``: stop where Lambda
    reaches the threshold (located on the step's cubic Hermite), the outputs after it NaN.
    Returns (steps, negative on failure; death time, inf when none).
    """
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
    if hazard:
        nb_rhs11(y, p, f)
    else:
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
            return -steps, np.inf
        hit = t + h >= times[nxt]
        hh = times[nxt] - t if hit else h
        if hazard:
            nb_jac11(y, p, J)
        else:
            nb_jac(y, p, J)
        for i in range(n):
            for j in range(n):
                E[i, j] = -J[i, j]
            E[i, i] += 1.0 / (GAMMA * hh)
        if not _lu(E, piv):
            return -steps - 1, np.inf
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
            if hazard:
                nb_rhs11(yi, p, fi)
            else:
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
            if hazard:
                nb_rhs11(ynew, p, fi)
            else:
                nb_rhs(ynew, p, fi)
            if terminal and ynew[10] >= p[THRESHOLD] > y[10]:
                # death inside the step: outputs from here on stay NaN
                t_death = _hermite_root(t, hh, y[10], f[10], ynew[10], fi[10], p[THRESHOLD])
                for j in range(nxt, T):
                    for i in range(n):
                        out[i, j] = np.nan
                return steps, t_death
            t = times[nxt] if hit else t + hh
            for i in range(n):
                y[i] = ynew[i]
                f[i] = fi[i]
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
    return steps, np.inf


@numba.njit(cache=True)
def compiled_cohort(Y0, Pm, times, rtol, atol, out, hazard=False, terminal=False):
    """Every patient in turn: Y0 (m, n), Pm (m, len(NAMES) + 2) -> out (m, n, T); the
    total number of steps."""
    steps = 0
    for s in range(Y0.shape[0]):
        steps += rodas4_patient(Y0[s], Pm[s], times, rtol, atol, out[s], hazard,
                                terminal)[0]
    return steps


def compiled_inputs(model, table, hazard=False):
    """Initial states and parameter vectors in NAMES order (then FRS_MAX, THRESHOLD) from a
    model parameter table; 11 states with ``hazard``."""
    idx = [model.parameter_names.index(name) for name in NAMES]
    Pm = np.zeros((len(table), len(NAMES) + 2))
    Pm[:, :len(NAMES)] = table[:, idx]
    w = Pm[:, WSP]
    sp = lambda x: w * np.logaddexp(0.0, x / w)  # noqa: E731
    Pm[:, FRS_MAX] = 48.0 * (sp(1 - Pm[:, N0]) - sp(1 - Pm[:, NTH])) / (Pm[:, NTH] - Pm[:, N0])
    Pm[:, THRESHOLD] = -scipy.special.log_ndtr(-Pm[:, Z_DEATH])   # -log(1 - Phi(z))
    Y0 = np.zeros((len(table), N_STATES + (1 if hazard else 0)))
    Y0[:, [0, 4, 5, 6, 8]] = 1.0
    Y0[:, 7] = Pm[:, PHIMAX]
    Y0[:, 9] = Pm[:, Q0]
    return Y0, Pm


def check_compiled(model, table):
    """The hand-written right-hand sides equal reference_rhs (10 states) and the package
    model's own (11 states, the same model text); the Jacobians equal central differences.
    Returns the worst relative errors (rhs 10, Jacobian 10, rhs 11, Jacobian 11)."""
    worst = []
    for hazard in (False, True):
        Y0, Pm = compiled_inputs(model, table[:5], hazard)
        n = Y0.shape[1]
        out = np.empty((5, n, TIMES.size))
        compiled_cohort(Y0, Pm, TIMES, 1e-8, 1e-10, out, hazard, False)
        rhs, jac = (nb_rhs11, nb_jac11) if hazard else (nb_rhs, nb_jac)
        rng = np.random.default_rng(0)
        worst_f = worst_j = 0.0
        for s in range(5):
            p = dict(zip(model.parameter_names, table[s], strict=True))
            for j in (3, 8, 12):
                y = out[s, :, j] * (1 + 0.01 * rng.standard_normal(n))
                f = np.empty(n)
                rhs(y, Pm[s], f)
                if hazard:
                    ref = model.rhs(0.0, y[:, None], table[s][:, None])[:, 0]
                else:
                    ref = np.array(reference_rhs(0.0, y, p))
                worst_f = max(worst_f, np.abs(f - ref).max() / np.abs(ref).max())
                J = np.empty((n, n))
                jac(y, Pm[s], J)
                fd = np.empty_like(J)
                for q in range(n):
                    e = 1e-6 * max(abs(y[q]), 1e-3)
                    a, b = np.empty(n), np.empty(n)
                    yp, ym = y.copy(), y.copy()
                    yp[q] += e
                    ym[q] -= e
                    rhs(yp, Pm[s], a)
                    rhs(ym, Pm[s], b)
                    fd[:, q] = (a - b) / (2 * e)
                worst_j = max(worst_j, np.abs(J - fd).max() / np.abs(fd).max())
        assert worst_f < 1e-12, (hazard, worst_f)
        assert worst_j < 1e-6, (hazard, worst_j)
        worst += [worst_f, worst_j]
    return tuple(worst)


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


def death_times_radau(model, table):
    """Death times (Lambda reaching each patient's threshold), per patient, from Radau at
    rtol 1e-11 on the package model's right-hand side and Jacobian; NaN when alive at 60."""
    names = model.state_names
    k = names.index("Lambda_death")
    z = table[:, model.parameter_names.index("z_death")]
    out = np.full(len(table), np.nan)
    for s, row in enumerate(table):
        p = row[:, None]
        y0 = model.initial(0.0, None, p)[:, 0]
        level = -scipy.special.log_ndtr(-z[s])

        def event(t, y, level=level):
            return y[k] - level

        event.terminal = True
        sol = solve_ivp(lambda t, y, p=p: model.rhs(t, y[:, None], p)[:, 0],
                        (0.0, TIMES[-1]), y0, method="Radau", rtol=1e-11, atol=1e-13,
                        jac=lambda t, y, p=p: model.jac(t, y[:, None], p)[:, :, 0],
                        events=event)
        if sol.t_events[0].size:
            out[s] = sol.t_events[0][0]
    return out


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

    model = pg.load_model(MODEL_FILE)
    table = virtual_patients(model, max(sizes))
    print(f"als_systemic, 0-60 months, 13 output times, rtol 1e-6; load average "
          f"{load_start[0]:.2f}")

    # one-time costs, reported apart: numba compilation (or loading its cache)
    start = time.perf_counter()
    pg.simulate(model, table[:2], TIMES)
    pg.simulate(model, table[:2], TIMES, batch_size=2, method="LSODA")
    warm_ours = time.perf_counter() - start
    start = time.perf_counter()
    err_f, err_j, err_f11, err_j11 = check_compiled(model, table)
    warm_ref = time.perf_counter() - start
    print(f"warm-up: progression {warm_ours:.2f} s, compiled references {warm_ref:.2f} s "
          f"(rhs vs reference_rhs {err_f:.1e}, Jacobian vs central differences {err_j:.1e}; "
          f"11 states: rhs vs the package model's {err_f11:.1e}, Jacobian {err_j11:.1e})")

    rows = []
    for m in sizes:
        sub = table[:m]
        # median of repeated calls: one call at a large size can catch another process's
        # burst on a shared machine
        reps = 7 if m <= 10 else 3
        t_ours, sim = cpu(lambda sub=sub: pg.simulate(model, sub, TIMES, **opts), reps)
        Y0, Pm = compiled_inputs(model, sub)
        out = np.empty((m, N_STATES, TIMES.size))
        t_ref, steps = cpu(lambda Y0=Y0, Pm=Pm, out=out: compiled_cohort(
            Y0, Pm, TIMES, opts["rtol"], opts["atol"], out), reps)
        # the same model as pg.simulate integrates: 11 states, the terminal death event
        Y0, Pm = compiled_inputs(model, sub, hazard=True)
        out = np.empty((m, N_STATES + 1, TIMES.size))
        t_ref11, steps11 = cpu(lambda Y0=Y0, Pm=Pm, out=out: compiled_cohort(
            Y0, Pm, TIMES, opts["rtol"], opts["atol"], out, True, True), reps)
        k = m if m <= args.loop_sample else args.loop_sample
        k_rep = max(1, min(5, 10 // max(k, 1))) if m == 1 else 1
        t_loop, _ = cpu(lambda k=k: loop(model, table[:k], method="LSODA", max_step=0.5,
                                         **opts), k_rep)
        t_loop *= m / k
        row = {"patients": m,
               "progression_ms": 1e3 * t_ours / m, "loop_ms": 1e3 * t_loop / m,
               "compiled_ms": 1e3 * t_ref / m, "compiled11_ms": 1e3 * t_ref11 / m,
               "loop_timed_on": k, "progression_method": sim.stats["method"],
               "progression_steps_per_patient": sim.stats["steps"] / m,
               "compiled_steps_per_patient": steps / m,
               "compiled11_steps_per_patient": steps11 / m,
               "loop_over_progression": t_loop / t_ours,
               "progression_over_compiled": t_ours / t_ref,
               "progression_over_compiled11": t_ours / t_ref11}
        rows.append(row)
        print(f"{m:6d} patients: progression {row['progression_ms']:8.3f} ms/patient "
              f"({sim.stats['method']}), plain loop {row['loop_ms']:7.3f}"
              f"{'' if k == m else f' (timed on {k}, scaled)'}, compiled reference "
              f"{row['compiled_ms']:6.3f} (10 states), {row['compiled11_ms']:6.3f} (11)  ->  "
              f"loop/progression {row['loop_over_progression']:6.1f}x"
              f", progression/compiled {row['progression_over_compiled']:5.2f}x (10 states), "
              f"{row['progression_over_compiled11']:5.2f}x (11)", flush=True)

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
    Y0, Pm = compiled_inputs(model, acc, hazard=True)
    out = np.empty((a, N_STATES + 1, TIMES.size))
    compiled_cohort(Y0, Pm, TIMES, opts["rtol"], opts["atol"], out, True, False)
    ref11 = alsfrs_compiled(model, acc, out)
    err = {"progression": float(np.nanmax(np.abs(ours - truth))),
           "loop_lsoda": float(np.nanmax(np.abs(base - truth))),
           "compiled_reference": float(np.nanmax(np.abs(ref - truth))),
           "compiled_reference_11": float(np.nanmax(np.abs(ref11 - truth)))}
    # death times (the terminal event of the 11-state model) against Radau at rtol 1e-11 on
    # the package model's own right-hand side and Jacobian
    death_truth = death_times_radau(model, acc)
    death_ours = pg.simulate(model, acc, TIMES, **opts).event_time("death")
    death_ref = np.array([rodas4_patient(Y0[s], Pm[s], TIMES, opts["rtol"], opts["atol"],
                                         out[s], True, True)[1] for s in range(a)])
    death_ref[~np.isfinite(death_ref)] = np.nan
    both = np.isfinite(death_truth)
    err["death_time_months"] = {
        "progression": float(np.nanmax(np.abs(death_ours - death_truth)[both])),
        "compiled_reference_11": float(np.nanmax(np.abs(death_ref - death_truth)[both])),
        "patients_dying": int(both.sum()),
        "same_patients_die": bool(np.array_equal(np.isfinite(death_ours), both)
                                  and np.array_equal(np.isfinite(death_ref), both))}
    print(f"max |ALSFRS-R error| vs Radau rtol 1e-11 on {a} patients: progression "
          f"{err['progression']:.1e}, plain loop {err['loop_lsoda']:.1e}, compiled reference "
          f"{err['compiled_reference']:.1e} (10 states), {err['compiled_reference_11']:.1e} "
          f"(11) points; death time ({both.sum()} deaths by 60 months): progression "
          f"{err['death_time_months']['progression']:.1e}, compiled reference (11) "
          f"{err['death_time_months']['compiled_reference_11']:.1e} months")

    by = {r["patients"]: r for r in rows}
    targets = {}
    if 1 in by:
        targets["1 patient: plain loop / progression >= 5"] = by[1]["loop_over_progression"] >= 5
    for m in (1000, 10000):
        if m in by:
            targets[f"{m} patients: progression / compiled (same model, 11 states) <= 1.5"] = \
                by[m]["progression_over_compiled11"] <= 1.5
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
                     "time": "CPU seconds (time.process_time), median of 7 calls at <= 10 "
                             "patients, of 3 above (the plain loop: one call)"},
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
        "Python RHS | compiled reference, same model (11 states: Appendix A + death hazard, "
        "terminal event) | compiled reference, Appendix A only (10 states) | loop / "
        "progression | progression / compiled (11 states) | progression / compiled "
        "(10 states) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        scaled = "" if r["loop_timed_on"] == r["patients"] else \
            f" (timed on {r['loop_timed_on']}, scaled)"
        md.append(f"| {r['patients']:,} | {r['progression_ms']:.3f} ms | {r['loop_ms']:.2f} ms"
                  f"{scaled} | {r['compiled11_ms']:.3f} ms | {r['compiled_ms']:.3f} ms | "
                  f"{r['loop_over_progression']:.1f}x | {r['progression_over_compiled11']:.2f}x"
                  f" | {r['progression_over_compiled']:.2f}x |")
    md += [
        "",
        "Path `pg.simulate` took: " + ", ".join(
            f"{r['patients']:,}: {r['progression_method']}" for r in rows) + ".",
        "",
        f"Accuracy, max |ALSFRS-R error| against per-patient Radau (rtol 1e-11) on {a} "
        f"patients: progression {err['progression']:.1e}, plain loop {err['loop_lsoda']:.1e}, "
        f"compiled reference {err['compiled_reference_11']:.1e} (11 states), "
        f"{err['compiled_reference']:.1e} (10 states) points. Death time against Radau "
        f"(rtol 1e-11, the package model's right-hand side; "
        f"{err['death_time_months']['patients_dying']} of {a} die by 60 months, the same "
        f"patients in every run: {err['death_time_months']['same_patients_die']}): "
        f"progression {err['death_time_months']['progression']:.1e}, compiled reference "
        f"{err['death_time_months']['compiled_reference_11']:.1e} months.",
        "",
        "Steps per patient at the largest size: progression "
        f"{rows[-1]['progression_steps_per_patient']:.1f}, compiled reference "
        f"{rows[-1]['compiled11_steps_per_patient']:.1f} (11 states), "
        f"{rows[-1]['compiled_steps_per_patient']:.1f} (10 states). The 11-state reference "
        "is the model `pg.simulate` integrates here (als_systemic frozen at its 11-state "
        "version, benchmarks/models/als_systemic_issue12.toml; the library model gained a state "
        "in issue 13's second recalibration): Appendix A plus "
        "`[hazards.death]`'s cumulative hazard, checked against the package model's "
        "right-hand side at start-up, its per-patient constants (the hazard's reference level "
        "F(1) and the Exp(1) threshold) computed once per patient, the death event located on "
        "the step's cubic Hermite; the 10-state one integrates Appendix A only (no death), "
        "the comparison of the issue's first table.",
        "",
        "Targets (issue 12), against the compiled reference of the model `pg.simulate` "
        "integrates (the 10-state column times a cheaper model, kept for the record): "
        + "; ".join(f"{k}: {'met' if v else 'NOT met'}"
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
