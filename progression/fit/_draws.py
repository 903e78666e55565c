"""Parameter sets drawn from a fit's uncertainty (:meth:`FitResult.parameter_draws`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import OFFSET
from .transforms import from_internal

__all__ = ["ParameterDraws", "parameter_draws"]


@dataclass
class ParameterDraws:
    """Parameter sets drawn from a fit's uncertainty (:meth:`FitResult.parameter_draws`).

    Attributes
    ----------
    parameters : ndarray (n, m, P)
        Full model parameter rows per draw and subject.
    offsets : ndarray (n, m)
        Time offsets per draw and subject (drawn with the parameters).
    handling : list of str
        Per subject: how its covariance was handled ("" when it was used as it is).
    singular : list of str
        Subjects whose covariance was singular.
    notes : list of str
        What was done, in words (for reports).
    undetermined : list of str
        The quantities (``name[subject]``) held at the estimate because the data do not
        determine them.
    """

    parameters: np.ndarray
    offsets: np.ndarray
    handling: list
    singular: list
    notes: list
    undetermined: list = field(default_factory=list)


def _few(items, n=5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def parameter_draws(fit, n: int, rng=None) -> ParameterDraws:
    """Draws of ``fit`` (a FitResult); see :meth:`FitResult.parameter_draws`."""
    from .uncertainty import gaussian_draws

    rng = np.random.default_rng(rng)
    m, Q = fit.theta.shape
    th = np.repeat(fit.theta[None], n, axis=0)
    handling: dict[int, list[str]] = {}
    undetermined, totals = [], {"redrawn": 0, "unresolved": 0, "draws": 0}
    for idx, cov in fit.blocks:
        idx = np.asarray(idx, dtype=int)
        if idx.size == 0:
            continue
        cols = fit.x_cols[idx]
        sc = np.array([fit.parameters[c].scale for c in cols])
        lo = np.array([fit.parameters[c].lower for c in cols])
        hi = np.array([fit.parameters[c].upper for c in cols])
        xs, info = gaussian_draws(fit.x_hat[idx], cov, sc, lo, hi, n, rng,
                                  confidence=fit.confidence)
        rows = sorted({int(r) for k in idx for r in fit.x_rows[k]})
        notes = []
        if info["undetermined"]:
            names = [fit.parameter_names[cols[k]] for k in info["undetermined"]]
            undetermined += [fit.entry_name(idx[k]) for k in info["undetermined"]]
            notes.append("singular covariance: " + ", ".join(dict.fromkeys(names))
                         + " not determined by the data, held at the estimate")
        if info["at_bound"]:
            names = [fit.parameter_names[cols[k]] for k in info["at_bound"]]
            notes.append("estimate at a bound: " + ", ".join(dict.fromkeys(names))
                         + " held there (one-sided uncertainty), the others drawn given "
                           "it")
        if info["held"]:
            notes.append(f"{info['held']} direction(s) wider than the bounds held at "
                         "the estimate")
        if info["negative"]:
            notes.append(f"covariance not positive semi-definite: {info['negative']} "
                         "negative eigenvalue(s) set to 0")
        for r in rows:
            handling.setdefault(r, []).extend(notes)
        totals["redrawn"] += info["redrawn"]
        totals["unresolved"] += info["unresolved"]
        totals["draws"] += n
        for col_k, k in enumerate(idx):
            c = fit.x_cols[k]
            p = fit.parameters[c]
            vals = from_internal(xs[:, col_k], p.scale, p.lower, p.upper)
            th[:, fit.x_rows[k], c] = vals[:, None]
    P = fit.model.n_parameters
    q = fit.parameter_names.index(OFFSET)
    cov_term = (np.array([d.offset_covariate for d in fit.designs])
                if fit.designs else 0.0)
    offsets = th[:, :, q] + fit.parameters[q].factor * cov_term
    per_subject = ["; ".join(dict.fromkeys(handling.get(i, []))) for i in range(m)]
    notes = []
    singular = [fit.subject_ids[i] for i in range(m) if "singular" in per_subject[i]]
    held = [fit.subject_ids[i] for i in range(m) if "direction(s)" in per_subject[i]]
    bound = [fit.subject_ids[i] for i in range(m) if "at a bound" in per_subject[i]]
    negative = [fit.subject_ids[i] for i in range(m) if "negative" in per_subject[i]]
    if singular:
        notes.append(f"singular covariance in {len(singular)}/{m} subjects "
                     f"({_few(singular)}): the quantities the data do not determine are "
                     "held at the estimate in every draw")
    if bound:
        notes.append(f"estimates at a bound in {len(bound)}/{m} subjects ({_few(bound)}): "
                     "their uncertainty is one-sided, which a normal distribution does not "
                     "describe; they are held at the bound and the other quantities are "
                     "drawn from their distribution given them")
    if held:
        notes.append(f"near-singular covariance in {len(held)}/{m} subjects "
                     f"({_few(held)}): directions whose {100 * fit.confidence:g}% "
                     "interval is wider than the bounds are held at the estimate")
    if negative:
        notes.append(f"covariance not positive semi-definite in {len(negative)}/{m} "
                     f"subjects ({_few(negative)}): regularised to the nearest positive "
                     "semi-definite matrix")
    if totals["redrawn"]:
        notes.append(f"{totals['redrawn']} of {totals['draws']} subject draws fell outside "
                     "the bounds and were drawn again (normal truncated to the bounds on "
                     "the estimation scale; nothing clipped)"
                     + (f"; {totals['unresolved']} still outside after 100 tries were set "
                        "to the estimate" if totals["unresolved"] else ""))
    return ParameterDraws(parameters=th[:, :, :P], offsets=offsets,
                          handling=per_subject, singular=singular, notes=notes,
                          undetermined=undetermined)
