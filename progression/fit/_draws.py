"""Parameter sets drawn from a fit's uncertainty (:meth:`FitResult.parameter_draws`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import OFFSET
from .transforms import from_internal

__all__ = ["ParameterDraws", "parameter_draws", "NewPatients", "PopulationSampler", "omega_factor"]


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
    population : ndarray (n, K) or None
        Draws of a population sampler (:meth:`PopulationSampler.parameter_draws`): the drawn
        population parameters on their estimation scales
        (:attr:`PopulationPart.covariance_names` order); None otherwise.
    """

    parameters: np.ndarray
    offsets: np.ndarray
    handling: list
    singular: list
    notes: list
    undetermined: list = field(default_factory=list)
    population: np.ndarray | None = None


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


# ---------------------------------------------------------------------------------------------
# New patients from a population fit


@dataclass(frozen=True)
class NewPatients:
    """The random numbers that make new virtual patients of a population fit.

    Kept apart from the parameter values so that the same patients can be evaluated under
    other population parameters (common random numbers: every parameter-uncertainty draw
    sees the same patients).

    Attributes
    ----------
    z : ndarray (n, E)
        Standard normal numbers; a patient's random effects are ``L z`` with ``L`` the
        lower Cholesky factor of Omega (``omega_names`` order).
    rows : int ndarray (n,)
        Row of the covariate table each patient carries (its covariates, resampled jointly).
    subjects : int ndarray (n,)
        Fitted subject whose values of the quantities outside the population model (and whose
        time offset, when the offset has no random effect) the patient carries; equal to
        ``rows`` when the covariates are the fitted subjects' own.
    scores : ndarray (n, H) or None
        Each patient's survival scores ``z_NAME`` ~ N(0, 1), one per hazard of the model
        that the fit holds (:attr:`PopulationSampler.hazard_scores`): its own Exp(1)
        thresholds, so that its hazard events are draws, not every patient's median.
    """

    z: np.ndarray
    rows: np.ndarray
    subjects: np.ndarray
    scores: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.rows.size)

    def subset(self, index) -> NewPatients:
        index = np.asarray(index)
        return NewPatients(self.z[index], self.rows[index], self.subjects[index],
                           None if self.scores is None else self.scores[index])

    def replaced(self, bad, fresh: NewPatients) -> NewPatients:
        """These patients with the rows ``bad`` (bool mask) taken from ``fresh``."""
        def put(a, b):
            a = a.copy()
            a[bad] = b
            return a

        return NewPatients(put(self.z, fresh.z), put(self.rows, fresh.rows),
                           put(self.subjects, fresh.subjects),
                           None if self.scores is None else put(self.scores, fresh.scores))


def _side_stream(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng`` without drawing from it, so that adding
    draws (the survival scores) leaves every existing draw of ``rng`` as it was."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(seq, np.random.SeedSequence):
        return np.random.default_rng(seq.spawn(1)[0])
    return np.random.default_rng(rng.integers(2**63))


@dataclass(frozen=True)
class PopulationSampler:
    """Draws new virtual patients from a population fit (:meth:`FitResult.population_sampler`).

    A patient ``k`` is a row ``r_k`` of the covariate table (the fitted subjects' covariates
    by default, so that their joint distribution and correlations are kept) and random
    effects ``eta_k = L z_k`` (``Omega = L L'``); its parameters are
    :meth:`PopulationPart.individual_values` (typical values with the covariate effects on
    the estimation scale, plus ``eta``, transformed back). Quantities outside the population
    model keep the fit's values (those of the fitted subject ``s_k``: the fixed value, or
    that subject's own estimate), but for the hazards' survival scores the fit holds
    (:attr:`hazard_scores`, drawn per patient from a side stream of the patients'
    generator). The time offset is the population model's when it has one (``time_offset``
    with ``estimate = "population"``), else the fitted subject's.

    Parameter uncertainty (:meth:`parameter_draws`): population parameters ``x ~ N(x_hat,
    C)`` on their estimation scales (``C`` the covariance step's matrix,
    :attr:`PopulationPart.covariance`), drawn by
    :func:`~progression.fit.uncertainty.gaussian_draws` (typical values inside their bounds,
    undetermined entries held), or, for a fit with a bootstrap, its replicates drawn with
    replacement; the *same* patients (same ``z`` and rows) evaluated under each draw.

    Attributes
    ----------
    population : PopulationPart
    names : tuple of str
        The fit's quantities (columns of ``base``).
    base : ndarray (m, Q)
        The fitted subjects' values of every fit quantity (natural scale).
    n_model : int
        Model parameters (the first ``n_model`` columns of ``base``).
    offset_factor : float
    offset_covariate : ndarray (m,)
        ``time offset = time_offset + offset_factor * offset_covariate`` per fitted subject.
    covariates : dict of str to ndarray (k,)
        The covariate table patients are resampled from (one row per subject).
    covariates_from : str
        Where the table comes from, in words.
    fit_name : str
    data_notes : tuple of str
        What of the fitted data new patients do not carry (dose records, covariates over
        time, conditions), in words.
    hazard_scores : tuple of str
        The survival scores ``z_NAME`` of the model's hazards that the fit holds: drawn
        N(0, 1) per new patient (a fitted subject's own held value, the median threshold, is
        no patient's).
    """

    population: object
    names: tuple
    base: np.ndarray
    n_model: int
    offset_factor: float = 1.0
    offset_covariate: np.ndarray | None = None
    covariates: dict = field(default_factory=dict)
    covariates_from: str = ""
    fit_name: str = ""
    data_notes: tuple = ()
    hazard_scores: tuple = ()

    @classmethod
    def from_fit(cls, fit, covariates=None) -> PopulationSampler:
        """The sampler of a population fit.

        Parameters
        ----------
        fit : FitResult
            With a population part (``focei``, ``foce``, ``fo``, ``laplace``, ``saem``).
        covariates : mapping of str to array (k,), optional
            A covariate table to resample patients from (one row per subject, every column
            the same length); default: the fitted subjects' covariates.

        Raises
        ------
        FitError
            The fit has no population part, or a covariate of the population model has no
            values (not in the fitted data, nor in ``covariates``).
        """
        from ..errors import FitError

        pop = fit.population
        if pop is None:
            raise FitError(f"fit '{fit.name}' ({fit.kind} estimator) has no population part: "
                           "new patients can only be drawn from a population fit (estimator "
                           "focei, foce, fo, laplace or saem); its own subjects are the "
                           "default source")
        try:
            pop._typical_model()
        except ValueError as exc:
            raise FitError(f"fit '{fit.name}': {exc}") from None
        m = fit.n_subjects
        need = tuple(pop.covariate_names)
        if covariates is None:
            table = _fitted_covariates(fit, need)
            where = f"the {m} fitted subjects (resampled jointly per subject)"
        else:
            table = _given_covariates(fit.name, covariates, need)
            k = next(iter(table.values())).size if table else 0
            where = f"the given covariate table ({k} rows, resampled jointly per row)"
        q = fit.parameter_names.index(OFFSET)
        cov = (np.array([d.offset_covariate for d in fit.designs], dtype=float)
               if fit.designs else np.zeros(m))
        spec = getattr(fit.model, "spec", None)
        held = {p.name for p in fit.parameters if p.estimate == "fixed"}
        scores = tuple(h.score for h in getattr(spec, "hazards", ()) or ()
                       if h.score in held)
        return cls(population=pop, names=tuple(fit.parameter_names),
                   base=np.array(fit.theta, dtype=float), n_model=int(fit.model.n_parameters),
                   offset_factor=float(fit.parameters[q].factor), offset_covariate=cov,
                   covariates=table, covariates_from=where if need else "",
                   fit_name=str(fit.name), data_notes=_data_notes(fit),
                   hazard_scores=scores)

    # ------------------------------------------------------------------ patients

    @property
    def n_eta(self) -> int:
        return len(self.population.omega_names)

    @property
    def n_rows(self) -> int:
        """Rows of the covariate table."""
        if self.covariates:
            return int(next(iter(self.covariates.values())).size)
        return int(self.base.shape[0])

    @property
    def joint(self) -> bool:
        """Covariates and the other values come from the same fitted subject."""
        return self.n_rows == self.base.shape[0] and not self.covariates_from.startswith(
            "the given")

    def draw_patients(self, n: int, rng=None) -> NewPatients:
        """``n`` new patients' random numbers (``z``, covariate rows, fitted subjects)."""
        rng = np.random.default_rng(rng)
        z = rng.standard_normal((n, self.n_eta))
        rows = rng.integers(0, self.n_rows, n)
        subjects = rows.copy() if self.joint else rng.integers(0, self.base.shape[0], n)
        scores = (_side_stream(rng).standard_normal((n, len(self.hazard_scores)))
                  if self.hazard_scores else None)
        return NewPatients(z, rows, subjects, scores)

    def values(self, patients: NewPatients, population=None) -> tuple[np.ndarray, np.ndarray]:
        """The patients' model parameters and time offsets under ``population`` (default: the
        fit's estimates).

        Returns
        -------
        parameters : ndarray (n, P)
            Model parameter rows (model order).
        offsets : ndarray (n,)
            Model time at each patient's data time 0.
        """
        pop = self.population if population is None else population
        eta = patients.z @ omega_factor(pop.omega).T
        cov = ({k: v[patients.rows] for k, v in self.covariates.items()}
               if pop.covariate_names else None)
        vals = pop.individual_values(eta, cov)
        th = self.base[patients.subjects].copy()
        for name, v in vals.items():
            th[:, self.names.index(name)] = v
        if patients.scores is not None:
            for k, name in enumerate(self.hazard_scores):
                th[:, self.names.index(name)] = patients.scores[:, k]
        q = self.names.index(OFFSET)
        off_cov = (self.offset_covariate[patients.subjects]
                   if self.offset_covariate is not None else 0.0)
        offsets = th[:, q] + self.offset_factor * off_cov
        return th[:, :self.n_model], offsets

    def population_draws(self, n: int, rng=None) -> tuple[np.ndarray, list, list]:
        """``n`` draws of the population parameters from the covariance step, or from the
        bootstrap replicates when the fit has them (drawn with replacement).

        ``x ~ N(x_hat, C)`` on the estimation scales (:attr:`PopulationPart.covariance`,
        ``covariance_names`` order) by :func:`~progression.fit.uncertainty.gaussian_draws`:
        typical values inside their bounds (truncated, nothing clipped), entries without a
        covariance (a failed or missing covariance step) held at the estimate.

        Returns
        -------
        xs : ndarray (n, K)
            The drawn parameter vectors.
        undetermined : list of str
            Entries held at the estimate.
        notes : list of str
            What was done, in words.
        """
        from .uncertainty import gaussian_draws

        rng = np.random.default_rng(rng)
        pop = self.population
        boot = pop.bootstrap_result() if getattr(pop, "bootstrap", None) else None
        if boot is not None and boot.samples.shape[0] - boot.n_failed >= 2:
            return self._bootstrap_draws(boot, n, rng)
        x_hat = pop.parameter_vector()
        K = x_hat.size
        cov = (np.full((K, K), np.nan) if pop.covariance is None
               else np.asarray(pop.covariance, dtype=float))
        scale, lo, hi = [], [], []
        for name in pop.covariance_names:
            kind, _, rest = name.partition(" ")
            if kind == "theta":
                b = pop.bounds.get(rest, (-np.inf, np.inf))
                scale.append(pop.scales[rest])
                lo.append(-np.inf if b[0] is None else b[0])
                hi.append(np.inf if b[1] is None else b[1])
            else:
                scale.append("linear")
                lo.append(-np.inf)
                hi.append(np.inf)
        xs, info = gaussian_draws(x_hat, cov, scale, lo, hi, n, rng)
        names = list(pop.covariance_names)
        how = pop.covariance_method or "its covariance"
        notes = [f"parameter uncertainty of the population fit '{self.fit_name}': population "
                 f"parameters drawn from the covariance step ({how}) on their estimation "
                 "scales"]
        undetermined = [names[k] for k in info["undetermined"]]
        if undetermined:
            notes.append(("no covariance step (or it failed): " if len(undetermined) == K
                          else "undetermined in the covariance step: ")
                         + _few(undetermined) + " held at the estimate in every draw")
        if info["at_bound"]:
            notes.append("estimates at a bound held there: "
                         + _few(names[k] for k in info["at_bound"]))
        if info["negative"]:
            notes.append(f"covariance not positive semi-definite: {info['negative']} negative "
                         "eigenvalue(s) set to 0")
        if info["held"]:
            notes.append(f"{info['held']} direction(s) wider than the bounds held at the "
                         "estimate")
        if info["redrawn"]:
            notes.append(f"{info['redrawn']} of {n} draws fell outside the bounds of a typical "
                         "value and were drawn again (truncated normal, nothing clipped)")
        return xs, undetermined, notes

    def _bootstrap_draws(self, boot, n: int, rng) -> tuple[np.ndarray, list, list]:
        """``n`` population parameter vectors drawn with replacement from the fit's bootstrap
        replicates (no normal approximation; what the bootstrap did not vary, such as a
        held value, stays at the estimate)."""
        import dataclasses

        pop = self.population
        names = list(pop.omega_names)
        rows = []
        for r in boot.samples[np.all(np.isfinite(boot.samples), axis=1)]:
            got = dict(zip(boot.names, r.tolist(), strict=True))
            omega = np.array(pop.omega, dtype=float)
            for k, v in got.items():
                if k.startswith("omega^2 "):
                    i = names.index(k[len("omega^2 "):])
                    omega[i, i] = v
                elif k.startswith("omega "):
                    a, b = (names.index(x) for x in k[len("omega "):].split(","))
                    omega[a, b] = omega[b, a] = v
            rows.append(dataclasses.replace(
                pop, omega=omega,
                fixed_effects={k: got.get(k, v) for k, v in pop.fixed_effects.items()},
                sigma={k: got.get(k, v) for k, v in pop.sigma.items()},
                coefficients={k: got.get(k, v) for k, v in pop.coefficients.items()},
            ).parameter_vector())
        xs = np.array(rows)[rng.integers(0, len(rows), size=int(n))]
        notes = [f"parameter uncertainty of the population fit '{self.fit_name}': population "
                 f"parameters drawn with replacement from its {len(rows)} bootstrap "
                 "replicates (subjects resampled and refitted; no normal approximation)"]
        return xs, [], notes

    def with_population(self, x) -> PopulationSampler:
        """The same sampler with the population parameters ``x`` (K,) (a draw of
        :meth:`population_draws`)."""
        import dataclasses

        return dataclasses.replace(self, population=self.population.with_parameters(x))

    def parameter_draws(self, patients: NewPatients, n: int, rng=None) -> ParameterDraws:
        """Parameter uncertainty of the population parameters, the same patients in every
        draw (:meth:`population_draws`, then :meth:`values` of ``patients`` under each).

        Returns
        -------
        ParameterDraws
            ``parameters`` (n, patients, P), ``offsets`` (n, patients) and ``population``
            (n, K), the drawn population parameters.
        """
        xs, undetermined, notes = self.population_draws(n, rng)
        pop = self.population
        pars = np.empty((n, patients.n, self.n_model))
        offs = np.empty((n, patients.n))
        for d in range(n):
            pars[d], offs[d] = self.values(patients, pop.with_parameters(xs[d]))
        notes[0] += (f", the same {patients.n} patients (random effects and covariates) in "
                     "every draw")
        return ParameterDraws(parameters=pars, offsets=offs, handling=[""] * patients.n,
                              singular=[], notes=notes, undetermined=undetermined,
                              population=xs)


def _data_notes(fit) -> tuple:
    designs = fit.designs or ()
    what = {"dose records": sum(1 for d in designs if getattr(d, "doses", ())),
            "covariates over time": sum(1 for d in designs if getattr(d, "covariates", ())),
            "experimental conditions": sum(1 for d in designs
                                           if getattr(d, "condition", None) is not None)}
    found = [f"{k} ({n} subject{'s' if n != 1 else ''})" for k, n in what.items() if n]
    if not found:
        return ()
    covs = fit.population.covariate_names if fit.population is not None else ()
    return (f"the data of fit '{fit.name}' carry " + ", ".join(found) + ": new patients are "
            "simulated from their parameters and the model alone (the model's own dose "
            "parameter and covariate defaults apply)"
            + (f"; their covariates ({', '.join(covs)}) enter through the population "
               "model's covariate effects" if covs else ""),)


def omega_factor(omega) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L' = Omega`` (E, E).

    Cholesky, so that a patient's first random effect depends on its first normal number
    only whatever Omega is (common random numbers across parameter draws); a positive
    semi-definite Omega that is singular (a variance fixed at 0, perfectly correlated
    effects) is factored with its negative eigenvalues set to 0 and a relative jitter of
    1e-12 on the diagonal.
    """
    om = np.atleast_2d(np.asarray(omega, dtype=float))
    om = 0.5 * (om + om.T)
    if om.size == 0:
        return np.zeros((0, 0))
    try:
        return np.linalg.cholesky(om)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(om)
        psd = (V * np.maximum(w, 0.0)) @ V.T
        jitter = 1e-12 * max(float(np.max(np.diag(psd))), 1e-300)
        L = np.linalg.cholesky(psd + jitter * np.eye(om.shape[0]))
        # a zero variance stays exactly zero
        L[np.diag(om) <= 0] = 0.0
        return L


def _fitted_covariates(fit, need) -> dict:
    """The fitted subjects' values of the population model's covariates (``Design.baseline``:
    the subject's covariate column, or the earliest value of time-varying rows; else the first
    value of the model covariates the design carries), name -> (m,)."""
    from ..errors import FitError

    if not need:
        return {}
    m = fit.n_subjects
    stored = getattr(fit.population, "subject_covariates", None) or {}
    out = {}
    for name in need:
        if name in stored:
            v = np.asarray(stored[name], dtype=object)
            if v.size == m:
                out[name] = _as_column(v)
                continue
        vals = []
        for i, d in enumerate(fit.designs):
            found = None
            for attr in ("baseline", "subject_covariates"):
                table = dict(getattr(d, attr, None) or ())
                if name in table:
                    found = table[name]
                    break
            if found is None:
                for cname, _t, v in getattr(d, "covariates", ()) or ():
                    if cname == name and np.size(v):
                        found = np.asarray(v).ravel()[0]
                        break
            if found is None:
                raise FitError(f"fit '{fit.name}': the population model uses covariate "
                               f"'{name}' (covariates: {', '.join(need)}), but subject "
                               f"'{fit.subject_ids[i]}' has no value of it in the fitted "
                               "data (in Python: give covariates={...}, a table to draw "
                               "patients from)")
            vals.append(found)
        if len(vals) != m:
            raise FitError(f"fit '{fit.name}': covariate '{name}' of the population model: "
                           f"expected values for the {m} fitted subjects, found {len(vals)} "
                           "(the fit was saved without its data); give covariates={...}")
        out[name] = _as_column(np.asarray(vals, dtype=object))
    return out


def _given_covariates(fit_name, covariates, need) -> dict:
    from collections.abc import Mapping

    from ..errors import ConfigError

    if not isinstance(covariates, Mapping):
        raise ConfigError(f"covariates: expected a mapping covariate name -> values (one per "
                          f"subject), found {type(covariates).__name__}")
    missing = [c for c in need if c not in covariates]
    if missing:
        raise ConfigError(f"covariates: the population model of fit '{fit_name}' uses "
                          f"{', '.join(need)}; expected '{missing[0]}', found "
                          + (", ".join(map(str, covariates)) or "none"))
    out = {c: _as_column(np.atleast_1d(np.asarray(covariates[c], dtype=object)))
           for c in need}
    sizes = {c: v.size for c, v in out.items()}
    if len(set(sizes.values())) > 1 or 0 in sizes.values():
        raise ConfigError("covariates: expected columns of one non-zero length (one value per "
                          "subject), found lengths " + ", ".join(f"{c} {k}" for c, k
                                                                 in sizes.items()))
    return out


def _as_column(v) -> np.ndarray:
    """Numbers as floats, anything else (categories) as objects."""
    try:
        return np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return np.asarray(v, dtype=object)
