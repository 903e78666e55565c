"""SAEM's M-step for typical values without a random effect (Monolix's "parameters without
variability").

With no random effect, a typical value has no sufficient statistic: the complete-data
likelihood depends on it through the model. It is estimated here by **optimisation in the
M-step**, not by the small-variance trick (an eta whose variance is annealed towards 0, which
freezes the parameter as the variance shrinks): each SAEM iteration takes one Fisher-scoring
step on the complete-data log-likelihood ``l_c(theta_f) = sum_i log p(y_i, phi_i; theta_f)``
at the chains' current draws, and the step is applied with the SAEM step size ``gamma_k``
(1 in exploration, ``1 / (k - K1)^alpha`` in smoothing):

    theta_f <- theta_f + gamma_k * I_c^-1 * score_c

This is a Robbins-Monro scheme for the root of ``E[score_c | y] = 0``, which by Fisher's
identity is the score of the observed likelihood: the maximum-likelihood equation (Delyon,
Lavielle & Moulines 1999 allow any M-step that increases the stochastic approximation of the
complete likelihood; Kuhn & Lavielle 2005 treat non-exponential-family parameters this way).
The score and the expected information of the Gaussian data term (variance ``V(f)``,
censored values imputed by the chains, so complete-data Gaussian terms) use ``J = df/dtheta_f``
by forward differences of the model at the chains' fixed individual parameters (the only
finite differences: of the model, never of a nested optimisation):

    score = sum_rn J_rn [r/V + (r^2/V^2 - 1/V) V'/2],   I_c = sum_rn J_rn J_rn' (1/V + V'^2/(2 V^2))

with ``r = y - f`` and ``V' = dV/df`` (0 for additive and log-normal errors), averaged over
each subject's chains. Student-t residuals enter as SAEM's Gaussian scale mixture: given the
latent precision weight ``w`` of a value (drawn in the simulation step) the complete data are
Gaussian with variance ``V / w``, so (with ``r`` the rescaled ``sqrt(w) (y - f)`` that
:func:`~._saem_chains.complete_data` returns) the mean's terms take ``sqrt(w) r / V`` and
``w / V``; the ``V'`` terms are unchanged. Steps are capped at ``max_step`` per component
on the estimation scale (a far start) and halved when the new typical values make a
subject's prediction fail.

A **survival term** (a joint model, ``[survival]``: the chains carry ``s_r = -2 log p(T_i |
phi_r)``) adds its score ``-ds/dtheta_f / 2``, by the same forward differences (the chains'
evaluation returns ``s`` with the predictions), and its observed information ``d2 s /
dtheta_f^2 / 2`` by central second differences with the larger step ``h_curvature`` (the
exact path's solver noise, ~1e-8 relative, would swamp a 1e-4 step squared), projected onto
the positive semi-definite matrices; where that leaves a direction without curvature, the
outer product of the rows' survival scores (the BHHH form) is added. The information only
scales the step (the root, the zero of the expected complete-data score, is the same), but a
scale far too small sends the typical values of a steep hazard to their bounds in capped
steps (a first joint ALS fit with the outer product alone: h0 and alpha1 at their bounds
within 20 iterations).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FixedEffectStep"]


class FixedEffectStep:
    """Fisher-scoring M-step of the typical values without a random effect.

    Parameters
    ----------
    columns : int array (F,)
        The parameters (columns of ``phi``) without a random effect that are estimated.
    lower, upper : arrays (F,)
        Bounds on the estimation scale (``-inf``/``inf`` for none).
    h : float
        Forward-difference step on the estimation scale.
    h_curvature : float
        Step of the central second differences of a survival term (module docstring).
    max_step : float
        Largest change of one typical value per iteration, estimation scale.
    """

    def __init__(self, columns, lower=None, upper=None, h: float = 1e-4,
                 max_step: float = 0.5, h_curvature: float = 1e-2):
        self.columns = np.asarray(columns, dtype=int)
        F = self.columns.size
        self.lower = np.full(F, -np.inf) if lower is None else np.asarray(lower, float)
        self.upper = np.full(F, np.inf) if upper is None else np.asarray(upper, float)
        self.h = float(h)
        self.h_curvature = float(h_curvature)
        self.max_step = float(max_step)

    def score_information(self, chains, phi, f, ysim, residual, n_chains, weights=None,
                          extra=None):
        """Score (F,) and expected information (F, F) of the complete-data log-likelihood
        at the chains' draws, per subject averaged over its chains.

        Parameters
        ----------
        chains : _Chains
            The chains' data (rows of every chain) and the model.
        phi : ndarray (R, D)
            The chains' individual parameters.
        f : ndarray (R, n)
            Their predictions.
        ysim : ndarray (R, n)
            The data with censored values imputed.
        residual : Residual
        n_chains : int
        weights : ndarray (R, n), optional
            Latent precision weights of Student-t residuals (1, or None: all normal).
        extra : ndarray (R,), optional
            The chains' survival terms ``-2 log p(T_i | phi_r)`` at ``phi`` (a joint model;
            None: none).

        Returns
        -------
        score : ndarray (F,)
        info : ndarray (F, F)
        per_subject : ndarray (R, F)
            Each row's score (for the information of the estimates).
        """
        d = chains.d
        F = self.columns.size
        R, n = f.shape
        J = np.zeros((R, n, F))
        ok = np.all(np.isfinite(np.where(d.mask, f, 0.0)), axis=1)
        # the survival term's score per row: -(ds/dtheta_f) / 2
        g_s = np.zeros((R, F))
        if extra is not None:
            ok &= np.isfinite(extra)
        for j, c in enumerate(self.columns):
            ph = phi.copy()
            ph[:, c] += self.h
            _, fj = chains.evaluate(ph, residual)
            with np.errstate(all="ignore"):
                J[:, :, j] = (fj - f) / self.h
                if extra is not None:
                    g_s[:, j] = -0.5 * (chains.last_extra - extra) / self.h
            ok &= np.all(np.isfinite(np.where(d.mask, J[:, :, j], 0.0)), axis=1)
            ok &= np.isfinite(g_s[:, j])
        g_s = np.where(ok[:, None], g_s, 0.0)
        m = d.mask & ok[:, None]
        with np.errstate(all="ignore"):
            fz = np.where(m, f, 0.0)
            V = np.where(m, residual.variance(fz, d.observable), 1.0)
            b2 = np.asarray(residual.b, dtype=float)[d.observable] ** 2
            dV = np.where(m, 2.0 * b2 * fz, 0.0)
            r = np.where(m, ysim - fz, 0.0)
            w = np.ones_like(r) if weights is None else np.where(m, weights, 1.0)
            w_s = np.where(m, np.sqrt(w) * r / V + 0.5 * (r * r / V ** 2 - 1.0 / V) * dV, 0.0)
            w_i = np.where(m, w / V + 0.5 * dV ** 2 / V ** 2, 0.0)
        J = np.where(m[:, :, None], J, 0.0)
        per = np.einsum("rnf,rn->rf", J, w_s) + g_s
        score = per.sum(axis=0) / n_chains
        info = np.einsum("rnf,rn,rng->fg", J, w_i, J) / n_chains
        if extra is not None:
            info = info + self._survival_information(chains, phi, extra, ok, g_s) / n_chains
        return score, info, per

    def _survival_information(self, chains, phi, extra, ok, g_s):
        """Observed information (F, F) of the survival term summed over the rows ``ok``:
        central second differences of ``s / 2`` (module docstring), positive semi-definite,
        with the rows' score outer product added where it has no curvature."""
        F, hc = self.columns.size, self.h_curvature

        def s_at(*steps):
            ph = phi.copy()
            for j, sign in steps:
                ph[:, self.columns[j]] += sign * hc
            chains.evaluate(ph)
            return chains.last_extra.copy()

        up = [s_at((j, 1)) for j in range(F)]
        H = np.zeros((phi.shape[0], F, F))
        with np.errstate(all="ignore"):
            for j in range(F):
                H[:, j, j] = 0.5 * (up[j] - 2.0 * extra + s_at((j, -1))) / hc ** 2
                for k in range(j):
                    H[:, j, k] = H[:, k, j] = 0.5 * (s_at((j, 1), (k, 1)) - up[j] - up[k]
                                                     + extra) / hc ** 2
        good = ok & np.all(np.isfinite(H), axis=(1, 2))
        Hs = H[good].sum(axis=0)
        w, V = np.linalg.eigh(0.5 * (Hs + Hs.T))
        info = (V * np.maximum(w, 0.0)) @ V.T
        if w.min() <= 1e-10 * max(abs(w).max(), 1e-300):
            info = info + g_s[good].T @ g_s[good]
        return info

    def step(self, theta, score, info, gamma):
        """The new typical values (F,): ``theta + gamma * info^-1 score``, capped and within
        the bounds."""
        F = theta.size
        try:
            delta = np.linalg.solve(info + 1e-10 * np.trace(info) / F * np.eye(F), score)
        except np.linalg.LinAlgError:
            delta = np.zeros(F)
        delta = np.clip(np.nan_to_num(delta), -self.max_step, self.max_step)
        return np.clip(theta + gamma * delta, self.lower, self.upper)
