"""The population model of a fit config: covariate effects on typical values and the
structure of Omega, with the derivatives the outer gradient needs.

Typical values with covariate effects
-------------------------------------
Each population parameter ``P`` has a typical value ``TV`` (natural scale, at the reference
covariate values) and effects ``F_k(cov_k; c_k)`` that multiply it: the subject's typical
value is ``TV_i = TV * prod_k F_k`` and its estimation-scale value ``mu_i = g^-1(TV_i)``
(``g^-1`` = log, log10, logit or identity: the parameter's scale). The effects:

==============  ==========================================  ===============================
effect          F (covariate x, reference r, coefficient c)  note
==============  ==========================================  ===============================
``power``       ``(x / r)^c``                                x > 0, r > 0
``exponential`` ``exp(c (x - r))``
``linear``      ``1 + c (x - r)``                            must stay > 0 on a log scale
``categorical`` ``1 + c_l`` for level ``l``, 1 for ``r``     NONMEM's ``V*(1+THETA)``
==============  ==========================================  ===============================

On a log scale power and exponential effects are linear in ``mu``: ``mu = log TV + c log(x/r)``
(``+ c (x - r)``), the usual ``CL = TVCL*(WT/70)**THETA`` and ``exp(THETA*(AGE-50))``.

Covariate values are per subject and time-constant (the subject's baseline value: its
covariate column, or the first value of time-varying rows). The reference of a continuous
effect is a number, or ``"median"`` / ``"mean"`` of the subjects' values (computed when the fit
starts and saved with it). Time-varying covariate effects belong in the model file (the
covariate in ``[covariates]``, the effect in its expressions, the coefficient a population
parameter without a random effect).

Omega
-----
The etas are grouped in blocks (a parameter not named in a block is a 1 x 1 block). A block is
estimated through an unconstrained parametrisation that keeps it positive definite: a 1 x 1
block by its log variance (as before blocks existed, so that diagonal fits keep their
parameters), a larger block by its Cholesky factor ``L`` (``Omega = L L'``) with the log of
the diagonal of ``L`` and the lower off-diagonal entries free (row by row). A fixed block
keeps its initial values and has no parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..transforms import _codes, dtheta_dx, from_internal, to_internal

__all__ = ["EFFECTS", "CENTRES", "CovariateEffect", "OmegaBlock", "OmegaModel", "TypicalModel",
           "level_key"]

#: Covariate effect kinds, as the config names them.
EFFECTS = ("power", "exponential", "linear", "categorical")
#: References of continuous effects computed from the data (over subjects, one value each).
CENTRES = ("median", "mean")


def level_key(value) -> str:
    """The category a covariate value stands for, as text: numbers without a trailing
    ``.0`` (``1.0`` and ``1`` are the same level), strings stripped."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        if math.isfinite(v) and v == int(v):
            return str(int(v))
        return f"{v:g}"
    return str(value).strip()


@dataclass(frozen=True)
class CovariateEffect:
    """One covariate effect on one population parameter's typical value.

    Attributes
    ----------
    parameter : str
        The population parameter.
    covariate : str
        The subject covariate (a baseline value per subject).
    effect : {"power", "exponential", "linear", "categorical"}
    reference : float or str
        The centring value (power, exponential, linear; ``"median"`` or ``"mean"`` until
        :meth:`centred` resolves it from the subjects' values) or the reference category (its
        :func:`level_key`).
    levels : tuple of str
        Categorical: the non-reference categories, one coefficient each (empty before they are
        resolved from the data).
    groups : tuple of (str, tuple of str)
        Categorical, optional: categories made of covariate values (``("low", ("1", "2",
        "3", "4"))``); the levels and the reference are then group names.
    values : tuple of float
        Coefficients (starting values, or the estimates); a categorical effect given one value
        before its levels are known repeats it for every level.
    estimated : tuple of bool
        Per coefficient: estimated (True) or fixed.
    lower, upper : tuple of float
        Per coefficient: bounds.
    """

    parameter: str
    covariate: str
    effect: str
    reference: float | str
    levels: tuple = ()
    values: tuple = (0.0,)
    estimated: tuple = (True,)
    lower: tuple = (-math.inf,)
    upper: tuple = (math.inf,)
    groups: tuple = ()

    def __post_init__(self):
        for k in ("levels", "values", "estimated", "lower", "upper"):
            v = getattr(self, k)
            object.__setattr__(self, k, tuple(v) if isinstance(v, list | tuple) else (v,))
        object.__setattr__(self, "groups", tuple(
            (str(g), tuple(level_key(v) for v in members)) for g, members in self.groups))
        if self.effect == "categorical":
            object.__setattr__(self, "reference", level_key(self.reference))
            object.__setattr__(self, "levels", tuple(level_key(v) for v in self.levels))
        elif not (isinstance(self.reference, str) and self.reference in CENTRES):
            object.__setattr__(self, "reference", float(self.reference))
        object.__setattr__(self, "lower", tuple(-math.inf if v is None else float(v)
                                                for v in self.lower))
        object.__setattr__(self, "upper", tuple(math.inf if v is None else float(v)
                                                for v in self.upper))

    @property
    def n_coefficients(self) -> int:
        return len(self.levels) if self.effect == "categorical" else 1

    @property
    def names(self) -> tuple:
        """Coefficient names: ``P~COV`` (continuous), ``P~COV=LEVEL`` (categorical)."""
        if self.effect == "categorical":
            return tuple(f"{self.parameter}~{self.covariate}={lv}" for lv in self.levels)
        return (f"{self.parameter}~{self.covariate}",)

    def with_levels(self, levels) -> CovariateEffect:
        """A categorical effect with its levels resolved (one value, estimate flag and bound
        per level, repeated from a single given one)."""
        levels = tuple(level_key(v) for v in levels)
        k = len(levels)

        def per(v):
            return tuple(v) * k if len(v) == 1 else tuple(v)

        return CovariateEffect(self.parameter, self.covariate, self.effect, self.reference,
                               levels, per(self.values), per(self.estimated), per(self.lower),
                               per(self.upper), self.groups)

    def category(self, value) -> str | None:
        """The category of a covariate value: its :func:`level_key`, or the group it belongs
        to when ``groups`` are given (None when in no group)."""
        key = level_key(value)
        if not self.groups:
            return key
        for g, members in self.groups:
            if key in members:
                return g
        return None

    def centred(self, values) -> CovariateEffect:
        """A continuous effect whose ``"median"`` / ``"mean"`` reference is computed from the
        subjects' covariate values (one per subject); other effects unchanged."""
        import dataclasses

        if not (isinstance(self.reference, str) and self.reference in CENTRES):
            return self
        x = np.asarray(values, dtype=float)
        ref = float(np.median(x) if self.reference == "median" else np.mean(x))
        return dataclasses.replace(self, reference=ref)

    def with_values(self, values) -> CovariateEffect:
        import dataclasses

        return dataclasses.replace(self, values=tuple(float(v) for v in values))

    def factor(self, x, coef) -> tuple[np.ndarray, np.ndarray]:
        """The multiplicative factor and its coefficient derivatives.

        Parameters
        ----------
        x : array (n,)
            Covariate values (floats; categorical: level keys or values).
        coef : array (k,)

        Returns
        -------
        F : ndarray (n,)
        dF : ndarray (n, k)
            dF/dc.
        """
        coef = np.asarray(coef, dtype=float)
        if self.effect == "categorical":
            keys = np.array([self.category(v) for v in np.atleast_1d(x)], dtype=object)
            onehot = np.stack([keys == lv for lv in self.levels], axis=1).astype(float) \
                if self.levels else np.zeros((keys.size, 0))
            return 1.0 + onehot @ coef, onehot
        x = np.asarray(x, dtype=float)
        r = self.reference
        c = coef[0]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.effect == "power":
                lr = np.log(x / r)
                F = np.exp(c * lr)
                return F, (F * lr)[:, None]
            if self.effect == "exponential":
                F = np.exp(c * (x - r))
                return F, (F * (x - r))[:, None]
        # linear
        return 1.0 + c * (x - r), (x - r)[:, None]

    def as_dict(self) -> dict:
        return {"parameter": self.parameter, "covariate": self.covariate,
                "effect": self.effect, "reference": self.reference,
                "levels": list(self.levels), "values": list(self.values),
                "estimated": list(self.estimated), "lower": list(self.lower),
                "upper": list(self.upper),
                "groups": [[g, list(m)] for g, m in self.groups]}

    @classmethod
    def from_dict(cls, d) -> CovariateEffect:
        if isinstance(d, CovariateEffect):
            return d
        return cls(**{k: d[k] for k in ("parameter", "covariate", "effect", "reference",
                                         "levels", "values", "estimated", "lower", "upper",
                                         "groups")
                      if k in d})


class TypicalModel:
    """Typical values ``mu`` (N, D) on the estimation scale from theta and covariates.

    Parameters
    ----------
    names : sequence of str (D,)
        The population parameters.
    scale, lower, upper : arrays (D,)
        Their estimation scales and bounds.
    effects : sequence of CovariateEffect
        Categorical ones with their levels resolved.
    """

    def __init__(self, names, scale, lower, upper, effects=()):
        self.names = tuple(names)
        # integer scale codes, so that they broadcast over (n, D) arrays
        self.scale = _codes(np.asarray(scale))
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.effects = tuple(effects)
        self.param_of = np.array([self.names.index(e.parameter) for e in self.effects],
                                 dtype=int)
        sizes = [e.n_coefficients for e in self.effects]
        self.slices = []
        start = 0
        for k in sizes:
            self.slices.append(slice(start, start + k))
            start += k
        self.n_coefficients = start

    @property
    def coefficient_names(self) -> tuple:
        return tuple(n for e in self.effects for n in e.names)

    @property
    def covariate_names(self) -> tuple:
        out = []
        for e in self.effects:
            if e.covariate not in out:
                out.append(e.covariate)
        return tuple(out)

    def initial_coefficients(self) -> np.ndarray:
        return np.array([v for e in self.effects for v in e.values], dtype=float)

    def natural(self, theta_x, coef, covariates, n=None):
        """Natural-scale typical values (n, D), the factor product (n, D) and dF/dc."""
        theta_x = np.asarray(theta_x, dtype=float)
        coef = np.asarray(coef, dtype=float)
        if n is None:
            n = len(next(iter(covariates.values()))) if covariates else 1
        tv = from_internal(theta_x, self.scale, self.lower, self.upper)
        F = np.ones((n, len(self.names)))
        dF = np.zeros((n, len(self.names), self.n_coefficients))
        parts = []
        for e, d, sl in zip(self.effects, self.param_of, self.slices, strict=True):
            if covariates is None or e.covariate not in covariates:
                raise KeyError(e.covariate)
            f, df = e.factor(covariates[e.covariate], coef[sl])
            parts.append((d, sl, f, df))
            F[:, d] *= f
        for d, sl, f, df in parts:
            # d(prod)/dc = prod / f * df (f != 0 where the product is finite and positive)
            with np.errstate(divide="ignore", invalid="ignore"):
                dF[:, d, sl] = (F[:, d] / f)[:, None] * df
        return tv[None, :] * F, F, dF

    def mu(self, theta_x, coef, covariates, n):
        """Typical values on the estimation scale and their derivatives.

        Parameters
        ----------
        theta_x : array (D,)
            Typical values at the reference covariates, estimation scale.
        coef : array (C,)
        covariates : mapping of str to array (n,)
        n : int

        Returns
        -------
        mu : ndarray (n, D)
            NaN where a subject's typical value leaves the scale's domain (a linear effect
            below 0 on a log scale, outside the bounds on a logit scale).
        dmu_dtheta : ndarray (n, D)
            d mu_id / d theta_x,d (each typical value depends on its own theta only).
        dmu_dcoef : ndarray (n, D, C)
        """
        theta_x = np.asarray(theta_x, dtype=float)
        if not self.effects:
            return (np.tile(theta_x, (n, 1)), np.ones((n, theta_x.size)),
                    np.zeros((n, theta_x.size, 0)))
        tvi, F, dF = self.natural(theta_x, coef, covariates, n)
        with np.errstate(all="ignore"):
            mu = to_internal(tvi, np.broadcast_to(self.scale, tvi.shape),
                             np.broadcast_to(self.lower, tvi.shape),
                             np.broadcast_to(self.upper, tvi.shape))
            # chain rule through the natural scale: d mu = d TV_i / (d TV_i / d mu)
            dmu = dtheta_dx(mu, np.broadcast_to(self.scale, mu.shape),
                            np.broadcast_to(self.lower, mu.shape),
                            np.broadcast_to(self.upper, mu.shape))
            dtv = dtheta_dx(theta_x, self.scale, self.lower, self.upper)
            tv = from_internal(theta_x, self.scale, self.lower, self.upper)
            dmu_dtheta = F * dtv[None, :] / dmu
            dmu_dcoef = tv[None, :, None] * dF / dmu[..., None]
        bad = ~np.isfinite(mu) | ~np.isfinite(dmu_dtheta)
        mu[bad] = np.nan
        return mu, dmu_dtheta, dmu_dcoef


@dataclass(frozen=True)
class OmegaBlock:
    """A block of Omega as the config gives it.

    Attributes
    ----------
    parameters : tuple of str
        The parameters whose etas share the block (their variances are their ``eta``).
    covariances : tuple of float
        Initial off-diagonal covariances, lower triangle row by row (for ``A, B, C``:
        ``(B,A), (C,A), (C,B)``, NONMEM's ``$OMEGA BLOCK`` order without the diagonal); empty
        for zeros.
    fixed : bool
        The whole block is fixed at its initial values.
    """

    parameters: tuple
    covariances: tuple = ()
    fixed: bool = False

    def __post_init__(self):
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "covariances", tuple(float(v) for v in self.covariances))

    @classmethod
    def from_dict(cls, d) -> OmegaBlock:
        if isinstance(d, OmegaBlock):
            return d
        return cls(tuple(d["parameters"]), tuple(d.get("covariances", ())),
                   bool(d.get("fixed", False)))


@dataclass
class OmegaModel:
    """Omega (E, E) from its free parameters and back.

    Parameters
    ----------
    names : sequence of str (E,)
        The etas, in Omega's order.
    blocks : list of int arrays
        Positions in ``names`` of each block's members (every eta in exactly one block).
    fixed : list of bool
        Per block.
    initial : ndarray (E, E)
        Starting Omega (the values of fixed blocks).
    """

    names: tuple
    blocks: list
    fixed: list
    initial: np.ndarray
    _layout: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.names = tuple(self.names)
        self.blocks = [np.asarray(b, dtype=int) for b in self.blocks]
        self.initial = np.asarray(self.initial, dtype=float)
        # per free parameter: (block index, row, column) within the block
        self._layout = []
        for b, (idx, fx) in enumerate(zip(self.blocks, self.fixed, strict=True)):
            if fx:
                continue
            k = idx.size
            for r in range(k):
                for c in range(r + 1):
                    self._layout.append((b, r, c))

    @classmethod
    def diagonal(cls, names, variances) -> OmegaModel:
        v = np.asarray(variances, dtype=float)
        return cls(tuple(names), [np.array([e]) for e in range(v.size)], [False] * v.size,
                   np.diag(v))

    @classmethod
    def from_blocks(cls, names, variances, blocks=(), fixed_etas=()) -> OmegaModel:
        """From the config: ``blocks`` (OmegaBlock) and etas fixed alone (``eta_fixed``)."""
        names = tuple(names)
        E = len(names)
        om = np.diag(np.asarray(variances, dtype=float))
        seen: set = set()
        idx_blocks, fixed = [], []
        for blk in blocks:
            blk = OmegaBlock.from_dict(blk)
            idx = np.array([names.index(p) for p in blk.parameters], dtype=int)
            k = 0
            for r in range(1, idx.size):
                for c in range(r):
                    if k < len(blk.covariances):
                        om[idx[r], idx[c]] = om[idx[c], idx[r]] = blk.covariances[k]
                    k += 1
            idx_blocks.append(idx)
            fixed.append(bool(blk.fixed))
            seen.update(idx.tolist())
        fixed_etas = set(fixed_etas)
        out_blocks, out_fixed = [], []
        # blocks in eta order of their first member, so diagonal fits keep their order
        singles = [(np.array([e]), names[e] in fixed_etas) for e in range(E) if e not in seen]
        allb = sorted([*zip(idx_blocks, fixed, strict=True), *singles],
                      key=lambda t: int(t[0].min()))
        for idx, fx in allb:
            out_blocks.append(idx)
            out_fixed.append(fx)
        return cls(names, out_blocks, out_fixed, om)

    @property
    def n_parameters(self) -> int:
        return len(self._layout)

    @property
    def is_diagonal(self) -> bool:
        return all(b.size == 1 for b in self.blocks)

    def parameter_names(self) -> tuple:
        """``log omega^2 NAME`` (1 x 1 block), ``log L NAME`` (Cholesky diagonal) and
        ``L ROW,COL`` (Cholesky off-diagonal)."""
        out = []
        for b, r, c in self._layout:
            idx = self.blocks[b]
            if idx.size == 1:
                out.append(f"log omega^2 {self.names[idx[0]]}")
            elif r == c:
                out.append(f"log L {self.names[idx[r]]}")
            else:
                out.append(f"L {self.names[idx[r]]},{self.names[idx[c]]}")
        return tuple(out)

    def pack(self, omega) -> np.ndarray:
        """Free parameters of ``omega`` (raises LinAlgError when a block is not PD)."""
        omega = np.asarray(omega, dtype=float)
        chol = {}
        out = []
        for b, r, c in self._layout:
            idx = self.blocks[b]
            if idx.size == 1:
                out.append(math.log(omega[idx[0], idx[0]]))
                continue
            if b not in chol:
                chol[b] = np.linalg.cholesky(omega[np.ix_(idx, idx)])
            L = chol[b]
            out.append(math.log(L[r, c]) if r == c else L[r, c])
        return np.array(out, dtype=float)

    def unpack(self, p) -> np.ndarray:
        """Omega (E, E) from the free parameters."""
        return self.unpack_jac(p)[0]

    def unpack_jac(self, p) -> tuple[np.ndarray, np.ndarray]:
        """Omega (E, E) and dOmega/dp (P, E, E) (symmetric matrices)."""
        p = np.asarray(p, dtype=float)
        om = self.initial.copy()
        E = om.shape[0]
        J = np.zeros((p.size, E, E))
        Ls = {}
        for j, (b, r, c) in enumerate(self._layout):
            idx = self.blocks[b]
            if idx.size == 1:
                continue
            L = Ls.setdefault(b, np.zeros((idx.size, idx.size)))
            L[r, c] = math.exp(p[j]) if r == c else p[j]
        for j, (b, r, c) in enumerate(self._layout):
            idx = self.blocks[b]
            if idx.size == 1:
                v = math.exp(p[j])
                om[idx[0], idx[0]] = v
                J[j, idx[0], idx[0]] = v
                continue
            L = Ls[b]
            Eij = np.zeros_like(L)
            Eij[r, c] = L[r, c] if r == c else 1.0     # dL/dp (log diagonal)
            dB = Eij @ L.T + L @ Eij.T
            J[j][np.ix_(idx, idx)] = dB
        for b, L in Ls.items():
            idx = self.blocks[b]
            om[np.ix_(idx, idx)] = L @ L.T
        return om, J

    def block_specs(self) -> list:
        """The blocks as saved with a fit: ``{"parameters": [...], "fixed": bool}``."""
        return [{"parameters": [self.names[e] for e in idx], "fixed": bool(fx)}
                for idx, fx in zip(self.blocks, self.fixed, strict=True)]
