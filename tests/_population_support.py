"""Test models and independent reference computations for the population core.

The references deliberately share no code with ``progression.fit.population``: predictions are
plain closed forms per subject, derivatives are central finite differences of those, conditional
modes come from ``scipy.optimize``, and the objectives are the textbook formulas (Wang 2007).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import norm

TIMES = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])


def _onecmt(t, dose, lka, lcl, lv):
    """Closed form one-compartment oral concentration (complex-safe)."""
    ka, cl, v = np.exp(lka), np.exp(lcl), np.exp(lv)
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


class OneCmtOral:
    """Individual model: one-compartment oral, phi = log(ka, CL, V), analytic G.

    Subjects have their own sampling times (padded) and doses.
    """

    def __init__(self, times, doses):
        n = max(len(t) for t in times)
        self.t = np.zeros((len(times), n))
        for i, t in enumerate(times):
            self.t[i, :len(t)] = t
            self.t[i, len(t):] = 1.0  # padding: any finite time
        self.dose = np.asarray(doses, dtype=float)

    def _fg(self, phi, index):
        t = self.t[index]
        dose = self.dose[index][:, None]
        ka = np.exp(phi[:, 0])[:, None]
        cl = np.exp(phi[:, 1])[:, None]
        v = np.exp(phi[:, 2])[:, None]
        k = cl / v
        e1, e2 = np.exp(-k * t), np.exp(-ka * t)
        A = dose * ka / (v * (ka - k))
        f = A * (e1 - e2)
        df_dka = f * (1.0 / ka - 1.0 / (ka - k)) + A * t * e2
        df_dk = f / (ka - k) - A * t * e1
        G = np.stack([ka * df_dka, k * df_dk, -f - k * df_dk], axis=-1)
        return f, G

    def predict(self, phi, index):
        return self._fg(np.asarray(phi), np.asarray(index))


class OneCmtOralHess(OneCmtOral):
    """The same model with second derivatives by complex step on G (exact to rounding)."""

    #: exact second derivatives: Laplace's gradient differences them for its third ones
    exact_hessian = True

    def predict_hessian(self, phi, index):
        phi = np.asarray(phi, dtype=float)
        h = 1e-30
        out = []
        for c in range(phi.shape[1]):
            z = phi.astype(complex)
            z[:, c] += 1j * h
            _, G = self._fg(z, np.asarray(index))
            out.append(G.imag / h)
        return np.stack(out, axis=-1)


class LinearModel:
    """f_ij = phi_0 + phi_1 t_ij (a linear mixed model when eta enters phi)."""

    def __init__(self, times):
        n = max(len(t) for t in times)
        self.t = np.zeros((len(times), n))
        for i, t in enumerate(times):
            self.t[i, :len(t)] = t

    def predict(self, phi, index):
        t = self.t[np.asarray(index)]
        f = phi[:, :1] + phi[:, 1:2] * t
        G = np.stack([np.ones_like(t), t], axis=-1)
        return f, G


def simulate_onecmt(n_subjects, seed, omega, a=0.3, b=0.1, theta=(0.4, 1.0, 3.45),
                    drop=True):
    """Simulate subjects (times, doses, ys) from the one-compartment model."""
    rng = np.random.default_rng(seed)
    times, doses, ys = [], [], []
    L = np.linalg.cholesky(omega)
    for i in range(n_subjects):
        t = TIMES.copy()
        if drop and i % 3 == 1:
            t = t[:-2]  # unequal numbers of observations exercise the padding
        eta = L @ rng.standard_normal(3)
        dose = 320.0 * (1.0 + 0.1 * (i % 4))
        f = _onecmt(t, dose, *(np.asarray(theta) + eta))
        sd = np.sqrt(a * a + b * b * f * f)
        times.append(t)
        doses.append(dose)
        ys.append(f + sd * rng.standard_normal(t.size))
    return times, doses, ys


# --- independent references -------------------------------------------------------------


class RefSubject:
    """One subject's reference computations (scalar closed form, finite differences).

    Parameters
    ----------
    fun : callable
        ``fun(eta) -> f`` (n,), the subject's predictions as a function of eta alone.
    y : ndarray (n,)
    a, b : float
        Residual SDs, ``V = a^2 + b^2 f^2``.
    omega : ndarray (E, E)
    cens, limit : ndarray (n,), optional
        M3 censoring (1 below, -1 above).
    """

    def __init__(self, fun, y, a, b, omega, cens=None, limit=None):
        self.fun, self.y, self.a, self.b = fun, np.asarray(y, float), a, b
        self.omega = np.atleast_2d(omega)
        self.oinv = np.linalg.inv(self.omega)
        self.E = self.omega.shape[0]
        self.cens = np.zeros(self.y.size, int) if cens is None else np.asarray(cens)
        self.limit = limit

    def var(self, f):
        return self.a ** 2 + self.b ** 2 * f ** 2

    def data_terms(self, eta, V=None):
        f = self.fun(eta)
        V = self.var(f) if V is None else V
        o = self.cens == 0
        out = np.sum((self.y[o] - f[o]) ** 2 / V[o] + np.log(V[o]))
        c = ~o
        if c.any():
            z = np.where(self.cens[c] == 1, self.limit[c] - f[c], f[c] - self.limit[c])
            out += np.sum(-2.0 * norm.logcdf(z / np.sqrt(V[c])))
        return out

    def L(self, eta, V=None):
        eta = np.atleast_1d(eta)
        return self.data_terms(eta, V) + eta @ self.oinv @ eta

    def jac(self, eta, h=1e-6):
        """df/deta (n, E) by central differences."""
        eta = np.atleast_1d(np.asarray(eta, float))
        cols = []
        for k in range(self.E):
            e = np.zeros(self.E)
            e[k] = h
            cols.append((self.fun(eta + e) - self.fun(eta - e)) / (2 * h))
        return np.stack(cols, axis=1)

    def mode(self, V=None, x0=None):
        """eta-hat by BFGS with central-difference gradients, tight tolerance."""
        def grad(x, V, h=1e-7):
            g = np.zeros_like(x)
            for k in range(x.size):
                e = np.zeros_like(x)
                e[k] = h
                g[k] = (self.L(x + e, V) - self.L(x - e, V)) / (2 * h)
            return g
        x0 = np.zeros(self.E) if x0 is None else x0
        res = minimize(self.L, x0, args=(V,), jac=grad, method="BFGS",
                       options={"gtol": 1e-9, "maxiter": 1000})
        return res.x

    def fo(self):
        f0 = self.fun(np.zeros(self.E))
        g = self.jac(np.zeros(self.E))
        C = g @ self.omega @ g.T + np.diag(self.var(f0))
        r = self.y - f0
        return np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r)

    def foce(self):
        """Wang (2007) FOCE (V at eta = 0) and the equivalent Hessian form."""
        V0 = self.var(self.fun(np.zeros(self.E)))
        eh = self.mode(V=V0)
        f = self.fun(eh)
        g = self.jac(eh)
        C = g @ self.omega @ g.T + np.diag(V0)
        r = self.y - f + g @ eh
        wang = np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r)
        hform = (self.L(eh, V0) + np.linalg.slogdet(self.omega)[1]
                 + np.linalg.slogdet(self.oinv + g.T @ (g / V0[:, None]))[1])
        return wang, hform, eh

    def focei(self):
        eh = self.mode()
        f = self.fun(eh)
        g = self.jac(eh)
        V = self.var(f)
        h = (2 * self.b ** 2 * f)[:, None] * g
        o = self.cens == 0
        M = self.oinv + g[o].T @ (g[o] / V[o, None]) + 0.5 * h[o].T @ (h[o] / V[o, None] ** 2)
        c = ~o
        if c.any():
            # Fisher information of the censoring indicator, z differentiated numerically
            s = np.where(self.cens == 1, 1.0, -1.0)

            def zfun(e):
                ff = self.fun(e)
                return s * (self.limit - ff) / np.sqrt(self.var(ff))
            z = zfun(eh)
            dz = np.stack([(zfun(eh + d) - zfun(eh - d)) / 2e-6
                           for d in np.eye(self.E) * 1e-6], axis=1)
            wgt = norm.pdf(z) ** 2 / (norm.cdf(z) * norm.sf(z))
            M = M + (dz[c].T * wgt[c]) @ dz[c]
        return self.L(eh) + np.linalg.slogdet(self.omega)[1] + np.linalg.slogdet(M)[1], eh


# --- R's Theoph as in the nmw control streams (NONMEM 7.4.1 runs) ----------------------------


class TheoNM:
    """The nmw control streams' $PRED: phi = log(KA, V, K), DOSE = 320 for every subject."""

    def __init__(self, times):
        n = max(len(t) for t in times)
        self.t = np.zeros((len(times), n))
        for i, t in enumerate(times):
            self.t[i, :len(t)] = t

    def predict(self, phi, index):
        t = self.t[np.asarray(index)]
        ka, v, k = (np.exp(phi[:, j])[:, None] for j in range(3))
        e1, e2 = np.exp(-k * t), np.exp(-ka * t)
        A = 320.0 / v * ka / (ka - k)
        f = A * (e1 - e2)
        dka = f * (1.0 / ka - 1.0 / (ka - k)) + A * t * e2
        dk = f / (ka - k) - A * t * e1
        return f, np.stack([ka * dka, -f, k * dk], axis=-1)


def theoph_nonmem():
    """(TheoNM model, PopulationData) of the 132 Theoph concentrations, subjects 1..12."""
    import csv
    from pathlib import Path

    from progression.fit.population import PopulationData

    path = Path(__file__).parents[1] / "data" / "examples" / "theoph.csv"
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["EVID"] == "0"]
    ids = list(dict.fromkeys(r["ID"] for r in rows))
    times = [np.array([float(r["TIME"]) for r in rows if r["ID"] == i]) for i in ids]
    ys = [np.array([float(r["DV"]) for r in rows if r["ID"] == i]) for i in ids]
    assert ids == [str(i) for i in range(1, 13)] and sum(len(y) for y in ys) == 132
    return TheoNM(times), PopulationData.from_subjects(ys)


# --- Phenobarbital in neonates (NONMEM's classic "pheno"; repeated IV doses, WGT and APGR) ----


class PhenoIV:
    """One-compartment IV bolus with repeated doses: phi = log(CL, V).

    f_j = sum over earlier dose records d of AMT_d / V exp(-CL/V (t_j - t_d)), the NONMEM
    ADVAN1 TRANS2 prediction with S1 = V (a dose record before an observation at the same
    time counts). Vectorised over (subject, observation, dose).
    """

    def __init__(self, subjects):
        N = len(subjects)
        n = max(len(s["obs"]) for s in subjects)
        m = max(len(s["doses"]) for s in subjects)
        self.tau = np.zeros((N, n, m))
        self.amt = np.zeros((N, n, m))
        for i, s in enumerate(subjects):
            for j, (ko, t, _) in enumerate(s["obs"]):
                for d, (kd, td, amt) in enumerate(s["doses"]):
                    if kd < ko and td <= t:
                        self.tau[i, j, d] = t - td
                        self.amt[i, j, d] = amt

    def predict(self, phi, index):
        index = np.asarray(index)
        cl = np.exp(phi[:, 0])[:, None, None]
        v = np.exp(phi[:, 1])[:, None, None]
        k = cl / v
        tau, amt = self.tau[index], self.amt[index]
        c = amt / v * np.exp(-k * tau)
        G = np.stack([(-c * k * tau).sum(-1), (c * (k * tau - 1.0)).sum(-1)], axis=-1)
        return c.sum(-1), G


def pheno():
    """(PhenoIV model, PopulationData, weights (N,), Apgar scores (N,)) from tests/data."""
    from pathlib import Path

    from progression.fit.population import PopulationData

    rows = np.loadtxt(Path(__file__).parent / "data" / "pheno.dta", skiprows=1)
    subjects = []
    for i in dict.fromkeys(rows[:, 0].astype(int)):
        r = rows[rows[:, 0] == i]
        doses = [(k, t, amt) for k, (t, amt) in enumerate(r[:, 1:3]) if amt > 0]
        obs = [(k, t, dv) for k, (t, amt, dv) in enumerate(r[:, [1, 2, 5]]) if amt == 0]
        subjects.append(dict(doses=doses, obs=obs, wgt=r[0, 3], apgr=r[0, 4]))
    ys = [np.array([o[2] for o in s["obs"]]) for s in subjects]
    return (PhenoIV(subjects), PopulationData.from_subjects(ys),
            np.array([s["wgt"] for s in subjects]), np.array([s["apgr"] for s in subjects]))


# --- the exact gradients against central differences -----------------------------------


def fd_check(method, model, data, mu, omega, res, cols=None, rtol=1e-5, H=1e-5,
             tight=None):
    """Compare population_gradient with central differences of the objective; returns the
    gradient and the largest relative error found."""
    from progression.fit.population import InnerOptions, subject_objectives
    from progression.fit.population._gradient import population_gradient

    TIGHT = tight or InnerOptions(xtol=1e-12)
    gr = population_gradient(method, model, data, mu, omega, res, eta_columns=cols,
                             inner_options=TIGHT)
    assert np.all(gr.status == 0), gr.status
    ref = subject_objectives(method, model, data, mu, omega, res, eta_columns=cols,
                             inner_options=TIGHT)
    np.testing.assert_allclose(gr.ofv_i, ref.ofv_i, rtol=1e-10)
    worst = 0.0

    def ofv(mu=mu, om=omega, res=res):
        return subject_objectives(method, model, data, mu, om, res, eta_columns=cols,
                                  eta0=gr.eta, inner_options=TIGHT).ofv_i

    def close(got, fd):
        nonlocal worst
        scale = np.abs(fd).max()
        worst = max(worst, float(np.max(np.abs(got - fd)) / scale))
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=rtol * scale)

    N, D = mu.shape
    fd = np.zeros((N, D))
    for d in range(D):
        up, dn = mu.copy(), mu.copy()
        up[:, d] += H
        dn[:, d] -= H
        fd[:, d] = (ofv(mu=up) - ofv(mu=dn)) / (2 * H)
    close(gr.d_mu, fd)
    E = omega.shape[0]
    for k in range(E):
        for m in range(k, E):
            P = np.zeros((E, E))
            P[k, m] = P[m, k] = H
            fd_i = (ofv(om=omega + P) - ofv(om=omega - P)) / (2 * H)
            scale = 1.0 if k == m else 2.0
            close(gr.d_omega_i[:, k, m] * scale, fd_i)
            assert gr.d_omega[k, m] * scale == pytest.approx(fd_i.sum(), rel=rtol,
                                                             abs=rtol * np.abs(fd_i).sum())

    def mk(name, values):
        # keeps the other fields (the Student-t degrees of freedom)
        return dataclasses.replace(res, **{name: tuple(values)})

    for k in range(len(res.a)):
        for name in ("a", "b"):
            vals = np.array(getattr(res, name))
            if vals[k] == 0.0:
                continue
            up, dn = vals.copy(), vals.copy()
            up[k] += H
            dn[k] -= H
            fd_i = (ofv(res=mk(name, up)) - ofv(res=mk(name, dn))) / (2 * H)
            close((gr.d_a_i if name == "a" else gr.d_b_i)[:, k], fd_i)
            total = (gr.d_a if name == "a" else gr.d_b)[k]
            assert total == pytest.approx(fd_i.sum(), rel=rtol)
    return gr, worst


def laplace_and_quadrature(ref):
    """Test-side Laplace (-2 log of the Laplace approximation) and the exact -2 log integral."""
    om = ref.omega[0, 0]
    opt = minimize_scalar(lambda e: ref.L(np.array([e])), bracket=(-1.0, 0.0, 1.0),
                          tol=1e-12)
    eh = opt.x
    Lh = ref.L(np.array([eh]))
    h = 1e-4
    d2 = (-ref.L(np.array([eh + 2 * h])) + 16 * ref.L(np.array([eh + h])) - 30 * Lh
          + 16 * ref.L(np.array([eh - h])) - ref.L(np.array([eh - 2 * h]))) / (12 * h * h)
    lap = Lh + np.log(om) + np.log(d2 / 2.0)
    sd = np.sqrt(2.0 / d2)
    integral, _ = quad(lambda e: np.exp(-(ref.L(np.array([e])) - Lh) / 2.0),
                       eh - 12 * sd, eh + 12 * sd, epsabs=0.0, epsrel=1e-12, limit=200)
    exact = Lh + np.log(2 * np.pi * om) - 2.0 * np.log(integral)
    return lap, exact, eh


def exact_covariances(m2ll, ys, p, h=1e-4):
    """Exact model-based ``R^-1`` and sandwich ``R^-1 S R^-1`` covariances at ``p`` (on
    ``-log L``) from an exact marginal ``m2ll(ys, p)`` (-2 log L of a list of subjects): R by
    central second differences, each subject's score by central differences of its own term,
    ``S = N/(N-1) sum_i (s_i - mean)(s_i - mean)'``."""
    p = np.asarray(p, dtype=float)
    K, N = p.size, len(ys)
    E = np.eye(K) * h
    R = np.array([[(m2ll(ys, p + E[i] + E[j]) - m2ll(ys, p + E[i] - E[j])
                    - m2ll(ys, p - E[i] + E[j]) + m2ll(ys, p - E[i] - E[j])) / (8 * h * h)
                   for j in range(K)] for i in range(K)])
    s = np.array([[(m2ll([y], p + E[k]) - m2ll([y], p - E[k])) / (4 * h) for k in range(K)]
                  for y in ys])
    s = s - s.mean(axis=0)
    Ri = np.linalg.inv(R)
    return Ri, Ri @ (s.T @ s * N / (N - 1)) @ Ri


def theoph_weight_block(block: tuple[str, str] = ("CL", "V")) -> str:
    """TOML appended to ``configs/theoph_population.toml``: a power effect of weight on CL
    (estimated, reference 70 kg) and on V (held at 1), and an Omega block of ``block``."""
    a, b = block
    return f'''
[parameters.CL.covariates.weight]
effect = "power"
reference = 70
value = 0.75

[parameters.V.covariates.weight]
effect = "power"
reference = 70
value = 1.0
estimate = false

[omega]
blocks = [{{ parameters = ["{a}", "{b}"], covariances = [0.0] }}]
'''
