"""Virtual trials: enrol virtual patients, randomise, follow up with dropout, analyse, power.

A :class:`VirtualTrial` describes a parallel-group trial on a mechanistic model:

1. **Population**: candidates are sampled around the model defaults (:class:`Variability`,
   §5 cohort for ALS), or drawn from a fitted population (``population=``: a population fit
   or :meth:`VirtualPopulation.from_fit`, new patients from Omega and the fitted subjects'
   covariates; a plain :class:`VirtualPopulation` is resampled); each is screened at a
   random disease duration (months since clinical onset, uniform in
   ``Enrolment.duration``) with a noisy ALSFRS-R.
2. **Enrolment criteria**: ΔFS = (48 - ALSFRS-R)/duration range, disease duration, minimum
   ALSFRS-R, alive at screening.
3. **Potential outcomes**: every eligible patient of a *pool* is simulated under every arm
   (one batched :func:`~progression.simulate.simulate` call per arm on the treatment clock,
   from the patient's state at randomisation). A trial replicate then draws patients from the
   pool, randomises them to arms and reads each one's outcome under its own arm; measurement
   noise, dropout and the analysis are redrawn per replicate. Replicates are therefore cheap
   and power curves need no new integration.
4. **Follow-up**: visits every ``visit_every`` months to ``follow_up``; ALSFRS-R observed as
   ``clip(round(F + N(0, noise_sd^2)), 0, 48)``; dropout hazard ``rate`` per month, optionally
   informative (``exp(informative * decline / 10)``); death (the model's terminal event) ends
   visits.
   Death of a model with a ``[hazards.NAME]`` event is random through each patient's
   survival score ``z_NAME`` ~ N(0, 1), drawn at screening when the candidate source does not
   vary it (the same draw under every arm).
5. **Analysis as trials do it**: ``"slope"`` -- per-patient least-squares ALSFRS-R slopes,
   Welch t-test treatment vs control (two-stage slope analysis); ``"change"`` -- change from
   baseline at the last scheduled visit among completers, Welch t-test; ``"survival"`` --
   log-rank test with the log-rank (O/E) and exponential (events per person-time) hazard
   ratios.

Everything is seeded (``numpy.random.SeedSequence``); pool chunks and replicate batches can fan
out through any ``concurrent.futures`` executor (results do not depend on the executor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .._repr import brief, clip, names
from ..errors import ConfigError, ProgressionError
from ..model import load_model
from ..options import SolverOptions
from ..parallel import Progress, check_executor
from ..simulate import simulate
from ..stats.survival import exponential_hazard_ratio, logrank
from ._trial_sources import (
    _arm_sizes,
    _candidate_source,
    _Candidates,
    _child,
    _entropy,
    _hazard_scores,
    _split,
)
from .content import default_model, defaults_for
from .interventions import flatten, to_switches
from .population import (
    Variability,
    _anchor_times,
    default_variability,
    is_autonomous,
    states_at,
)
from .trial_results import PowerCurve, PowerUncertainty, TrialResults

__all__ = ["Enrolment", "Dropout", "VirtualTrial", "TrialPool", "TrialData", "TrialResults",
           "PowerCurve", "PowerUncertainty"]

ENDPOINTS = ("slope", "change", "survival")


@dataclass(frozen=True, kw_only=True)
class Enrolment:
    """Eligibility at screening (= randomisation).

    Parameters
    ----------
    duration : (float, float)
        Months since clinical onset at screening; each candidate is screened at a uniform
        random duration in this range (MIROCALS: symptom duration <= 24 months).
    dfs : (float, float), optional
        Allowed ΔFS = (48 - ALSFRS-R)/duration, points/month (masitinib: < 1.1).
    alsfrs_min : float, optional
        Minimum ALSFRS-R at screening.
    """

    duration: tuple[float, float] = (6.0, 24.0)
    dfs: tuple[float, float] | None = None
    alsfrs_min: float | None = None

    def __post_init__(self):
        lo, hi = self.duration
        if not 0 < lo <= hi:
            raise ConfigError(f"enrolment.duration: expected 0 < low <= high, found "
                              f"{self.duration}")
        if self.dfs is not None and not self.dfs[0] <= self.dfs[1]:
            raise ConfigError(f"enrolment.dfs: expected low <= high, found {self.dfs}")


@dataclass(frozen=True, kw_only=True)
class Dropout:
    """Withdrawal other than death.

    Parameters
    ----------
    rate : float
        Dropout hazard per month (0.025: 14% / 26% / 36% by 6 / 12 / 18 months; with the
        model's deaths close to the 19% / 36% / 56% trial attrition of van Eijk 2024/25 [S]).
    informative : float
        Log hazard ratio per 10 ALSFRS-R points lost since baseline (informative dropout).
    """

    rate: float = 0.025
    informative: float = 0.0


@dataclass
class TrialPool:
    """Eligible virtual patients with their outcome under every arm (potential outcomes).

    Attributes
    ----------
    arms : tuple of str
    visits : ndarray, shape (V,)
        Visit times after randomisation (months), 0 first.
    function : ndarray, shape (arms, n, V)
        Noiseless ALSFRS-R at the visits (NaN after death).
    death : ndarray, shape (arms, n)
        Death/ventilation time after randomisation (inf if none within follow-up).
    screening_score, dfs, duration : ndarray, shape (n,)
        Observed ALSFRS-R at screening, ΔFS and disease duration.
    parameters : ndarray, shape (n, P)
    candidates, eligible : int
        Candidates screened, and how many of them were eligible (the pool keeps the first
        ``n``).
    markers : dict of str to ndarray, shape (arms, n, V)
        Noiseless values of the trial's ``markers`` observables at the visits (NaN after
        death); empty when the trial records none.
    """

    arms: tuple
    visits: np.ndarray
    function: np.ndarray
    death: np.ndarray
    screening_score: np.ndarray
    dfs: np.ndarray
    duration: np.ndarray
    parameters: np.ndarray
    candidates: int = 0
    eligible: int = 0
    markers: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        v = np.asarray(self.visits, float)
        return brief(self, f"arms {names(self.arms)}", f"{self.size} patients",
                     f"{v.size} visits to {v[-1]:g}" if v.size else "",
                     f"{self.candidates} candidates screened" if self.candidates else "")

    @property
    def size(self) -> int:
        return self.function.shape[1]

    @property
    def eligible_fraction(self) -> float:
        return self.eligible / self.candidates if self.candidates else float("nan")

    @staticmethod
    def concatenate(parts: Sequence[TrialPool]) -> TrialPool:
        first = parts[0]
        return TrialPool(first.arms, first.visits,
                         np.concatenate([p.function for p in parts], axis=1),
                         np.concatenate([p.death for p in parts], axis=1),
                         np.concatenate([p.screening_score for p in parts]),
                         np.concatenate([p.dfs for p in parts]),
                         np.concatenate([p.duration for p in parts]),
                         np.concatenate([p.parameters for p in parts]),
                         sum(p.candidates for p in parts), sum(p.eligible for p in parts),
                         {k: np.concatenate([p.markers[k] for p in parts], axis=1)
                          for k in first.markers})


@dataclass
class TrialData:
    """One realised trial: arm per patient, observed scores, death and dropout."""

    arms: tuple
    arm: np.ndarray            # (n,) arm index
    visits: np.ndarray         # (V,)
    score: np.ndarray          # (n, V) observed functional score, NaN where missed
    death: np.ndarray          # (n,) time after randomisation, inf if none by follow-up
    dropout: np.ndarray        # (n,) dropout time, inf if none
    follow_up: float = 0.0
    function: str = "score"    # column name of the score in rows()
    index: np.ndarray | None = None   # (n,) pool row of each patient (None: not from a pool)

    def rows(self) -> list[dict]:
        out = []
        for i in range(self.arm.size):
            for j, t in enumerate(self.visits):
                if np.isfinite(self.score[i, j]):
                    out.append({"patient": i + 1, "arm": self.arms[self.arm[i]], "month": t,
                                self.function: self.score[i, j]})
        return out


class VirtualTrial:
    """A virtual parallel-group trial on a mechanistic model.

    Parameters
    ----------
    arms : mapping of str to list of Intervention
        Arm name -> interventions from randomisation; the first arm is the control.
    model : str or model
    variability : Variability, optional
        Between-patient variability of the candidates (:func:`default_variability`).
    enrolment : Enrolment
    follow_up : float
        Months from randomisation.
    visit_every : float
        Months between visits.
    dropout : Dropout
    noise_sd : float
        ALSFRS-R measurement SD (points; §4.1: 1.5-2.5).
    endpoint : {"slope", "change", "survival"}
        Primary analysis.
    alpha : float
        Two-sided significance level.
    vital_status : bool
        Survival follow-up continues after dropout (vital status known), as in most trials.
    function, event, onset : str, optional
        Observable of the functional score, survival event, clinical-onset event.
    max_score : float, optional
        Largest value of the functional score (observed scores are clipped to it; ΔFS is
        measured from it).
        Options not given come from the model's disease content (an ALS model: ALSFRS_R,
        death, clinical_onset, 48; ``progression/als/defaults.toml``); for a model without
        one they must be given.
    solver : SolverOptions or mapping, optional
        How every integration of the trial (screening, states at randomisation, every arm)
        is done; LSODA at rtol 1e-6 by default.
    markers : sequence of str
        Further observables recorded (noiseless) at every visit under every arm, in
        ``TrialPool.markers`` (e.g. ``("CRP", "NfL", "Treg_pct")``: a pharmacodynamic endpoint,
        a baseline biomarker for subgroups).
    visit_times : sequence of float, optional
        Explicit visit times after randomisation (months, increasing, from 0, the last one
        at most ``follow_up``) instead of every ``visit_every`` months (e.g. IMODALS' days
        1, 8, 29, 36, 57, 64, 85); ``follow_up`` stays the end of follow-up for survival.
    population : FitResult or VirtualPopulation, optional
        Where candidates come from instead of ``variability``: a population fit (or a
        :meth:`VirtualPopulation.from_fit` population) gives new patients drawn from the
        fitted population (Omega, covariate effects, the fitted subjects' covariates
        resampled jointly); another :class:`VirtualPopulation` is resampled with
        replacement. The trial's own clock applies: candidates are screened at a disease
        duration since ``onset`` (``enrolment.duration``), not at the population's time
        offsets. The model is the population's.
    """

    def __init__(self, arms: Mapping, *, model=None,
                 variability: Variability | None = None, enrolment: Enrolment | None = None,
                 follow_up: float = 12.0, visit_every: float = 1.0,
                 dropout: Dropout | None = None, noise_sd: float = 2.0,
                 endpoint: str = "slope", alpha: float = 0.05, vital_status: bool = True,
                 function: str | None = None, event: str | None = None,
                 onset: str | None = None, max_score: float | None = None, solver=None,
                 population=None, markers: Sequence[str] = (),
                 visit_times: Sequence[float] | None = None):
        self.population = _candidate_source(population, variability)
        if self.population is not None:
            own = load_model(self.population.model)
            if model is not None and load_model(model).name != own.name:
                raise ConfigError(f"model: the population is of model {own.name!r}, found "
                                  f"model={load_model(model).name!r}")
            model = own
        self.model = load_model(model or default_model())
        self.solver = SolverOptions.coerce(solver)
        if not isinstance(arms, Mapping) or len(arms) < 2:
            raise ConfigError("arms: expected at least two arms (control first)")
        self.arms = {str(k): flatten(v) for k, v in arms.items()}
        for name, ivs in self.arms.items():
            try:
                to_switches(self.model, ivs, until=1.0)
            except ProgressionError as exc:
                raise ConfigError(f"arm {name!r}: {exc}") from None
        if endpoint not in ENDPOINTS:
            raise ConfigError(f"endpoint: expected one of {', '.join(ENDPOINTS)}, found "
                              f"{endpoint!r}")
        if not (follow_up > 0 and visit_every > 0):
            raise ConfigError("follow_up and visit_every must be positive")
        self.variability = variability or default_variability(self.model)
        self.enrolment = enrolment or Enrolment()
        self.follow_up = float(follow_up)
        self.visit_every = float(visit_every)
        self.dropout = dropout or Dropout()
        self.noise_sd = float(noise_sd)
        self.endpoint = endpoint
        self.alpha = float(alpha)
        self.vital_status = bool(vital_status)
        content = defaults_for(self.model).get("trial", {})
        given = {"function": function, "event": event, "onset": onset, "max_score": max_score}
        for key, value in given.items():
            if value is None:
                if key not in content:
                    raise ConfigError(f"{key}: model {self.model.name!r} has no disease "
                                      f"content with a default {key}; give {key}=...")
                given[key] = content[key]
        function, event, onset = given["function"], given["event"], given["onset"]
        self.function, self.event, self.onset = function, event, onset
        self.max_score = float(given["max_score"])
        names = {e.name for e in self.model.events}
        for what, name in (("event", event), ("onset", onset)):
            if name not in names:
                raise ConfigError(f"{what}: model {self.model.name!r} has no event {name!r}")
        if function not in self.model.observable_names:
            raise ConfigError(f"function: model {self.model.name!r} has no observable "
                              f"{function!r}")
        if isinstance(markers, str):
            markers = (markers,)
        self.markers = tuple(str(m) for m in markers)
        for m in self.markers:
            if m not in self.model.observable_names:
                raise ConfigError(f"markers: model {self.model.name!r} has no observable "
                                  f"{m!r} (observables: "
                                  f"{', '.join(self.model.observable_names)})")
        self.visit_times = None
        if visit_times is not None:
            v = np.asarray(visit_times, dtype=float)
            if (v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or v[0] != 0.0
                    or np.any(np.diff(v) <= 0) or v[-1] > self.follow_up + 1e-9):
                raise ConfigError(f"visit_times: expected increasing times from 0 to at most "
                                  f"follow_up = {self.follow_up:g} months, found "
                                  f"{list(visit_times)}")
            self.visit_times = v

    @property
    def visits(self) -> np.ndarray:
        if self.visit_times is not None:
            return self.visit_times.copy()
        n = int(math.floor(self.follow_up / self.visit_every + 1e-9))
        v = np.arange(n + 1) * self.visit_every
        return v if v[-1] >= self.follow_up - 1e-9 else np.r_[v, self.follow_up]

    # ---------------------------------------------------------------------- the pool

    def __repr__(self) -> str:
        source = (f"candidates: {clip(self.population.description)}"
                  if self.population is not None else "")
        return brief(self, f"arms {names(self.arms)}", f"model {self.model.name!r}",
                     f"endpoint {self.endpoint!r}", f"follow-up {self.follow_up:g}",
                     f"visits every {self.visit_every:g}", source)

    def simulate_pool(self, size: int, *, seed=0, executor=None, chunk: int = 250,
                      progress: bool = False) -> TrialPool:
        """Screen candidates until ``size`` patients are eligible; simulate every arm.

        Chunks of ``chunk`` eligible patients are independent (own seeds) and go through
        ``executor.map`` when given: any ``concurrent.futures.Executor`` (threads, processes,
        a Dask ``client.get_executor()``, :func:`progression.parallel.executor`); the numbers
        do not depend on it. ``progress``: a progress bar (patients) on stderr.
        """
        check_executor(executor)
        if size < 1:
            raise ConfigError(f"pool size: expected a positive number, found {size}")
        sizes = [min(chunk, size - lo) for lo in range(0, size, chunk)]
        seeds = np.random.SeedSequence(_entropy(seed)).spawn(len(sizes))
        jobs = [(self, n, s) for n, s in zip(sizes, seeds, strict=True)]
        mapper = executor.map if executor is not None else map
        parts = []
        with Progress("trial pool", size, unit="patients", enabled=progress) as bar:
            for part in mapper(_pool_chunk, jobs):
                parts.append(part)
                bar.update(bar.done + part.size)
        return TrialPool.concatenate(parts)

    def _screen(self, n: int, rng) -> tuple:
        model = self.model
        enr = self.enrolment
        options = self.solver.simulate_kwargs()
        f_index = model.observable_names.index(self.function)
        tables, when, scores, dfs, durations = [], [], [], [], []
        candidates, found, have = 0, 0, 0
        for _ in range(200):
            k = max(16, int(math.ceil((n - have) * 2.0)))
            table = (self.variability.sample(model, k, rng) if self.population is None
                     else self.population.sample(k, rng))
            _hazard_scores(model, table, rng)
            duration = rng.uniform(*enr.duration, k)
            t_screen = _anchor_times(model, table, self.onset, duration, **options)
            candidates += k
            ok = np.isfinite(t_screen)
            if not ok.any():
                continue
            y, obs, _ = states_at(model, table[ok], t_screen[ok], **options)
            alive = np.all(np.isfinite(y), axis=1)
            F = obs[:, f_index]
            score = np.clip(np.round(F + self.noise_sd * rng.standard_normal(F.size)), 0,
                            self.max_score)
            d = duration[ok]
            dfs_i = (self.max_score - score) / d
            elig = alive.copy()
            if enr.dfs is not None:
                elig &= (dfs_i >= enr.dfs[0]) & (dfs_i <= enr.dfs[1])
            if enr.alsfrs_min is not None:
                elig &= score >= enr.alsfrs_min
            found += int(elig.sum())
            idx = np.nonzero(elig)[0][: n - have]
            tables.append(table[ok][idx])
            when.append(t_screen[ok][idx])
            scores.append(score[idx])
            dfs.append(dfs_i[idx])
            durations.append(d[idx])
            have += idx.size
            if have >= n:
                break
        else:
            raise ProgressionError(f"enrolment: found only {have} eligible patients of "
                                   f"{candidates} candidates; relax the criteria")
        cat = np.concatenate
        return (cat(tables), cat(when), cat(scores), cat(dfs), cat(durations),
                (candidates, found))

    def _outcomes(self, table, when) -> tuple[np.ndarray, np.ndarray, dict]:
        model = self.model
        visits = self.visits
        nv = visits.size
        # death is followed to follow_up even when the last visit is earlier
        grid = visits if visits[-1] >= self.follow_up - 1e-9 else np.r_[visits,
                                                                           self.follow_up]
        options = self.solver.simulate_kwargs()
        y0, _, _ = states_at(model, table, when, **options)
        initial = {name: y0[:, i] for i, name in enumerate(model.state_names)}
        names = (self.function, *getattr(self, "markers", ()))
        results = {}
        out_all, D_all = [], []
        autonomous = is_autonomous(model)
        for name, ivs in self.arms.items():
            key = next((k for k, v in results.items() if self.arms[k] == ivs), None)
            if key is not None:
                out, death = results[key]
            else:
                if autonomous:
                    sw = to_switches(model, ivs, until=self.follow_up, base=table)
                    sim = simulate(model, table, grid, initial=initial, switches=sw,
                                   **options)
                    death = sim.event_time(self.event)
                    out = [sim[k][:, :nv] for k in names]
                else:
                    out = [np.full((table.shape[0], nv), np.nan) for _ in names]
                    death = np.full(table.shape[0], np.nan)
                    for s in np.unique(when):
                        idx = np.nonzero(when == s)[0]
                        sw = to_switches(model, ivs, until=self.follow_up, offset=s,
                                         base=table[idx])
                        sim = simulate(model, table[idx], s + grid, switches=sw, **options)
                        for arr, k in zip(out, names, strict=True):
                            arr[idx] = sim[k][:, :nv]
                        death[idx] = sim.event_time(self.event) - s
                death = np.where(np.isfinite(death), death, np.inf)
                results[name] = (out, death)
            out_all.append(out)
            D_all.append(death)
        F = np.stack([o[0] for o in out_all])
        markers = {k: np.stack([o[j + 1] for o in out_all])
                   for j, k in enumerate(names[1:])}
        return F, np.stack(D_all), markers

    # ---------------------------------------------------------------- realise, analyse

    def realise(self, pool: TrialPool, n_per_arm, rng) -> TrialData:
        """One trial: sample patients from the pool, randomise, add noise and dropout.

        ``n_per_arm``: patients per arm, one number, or one per arm (unequal allocation,
        e.g. ``(8, 16)`` for a 2:1 trial). ``TrialData.index`` keeps each patient's pool row
        (for markers and subgroups).
        """
        k = len(pool.arms)
        sizes = _arm_sizes(n_per_arm, k)
        n = int(sum(sizes))
        replace = n > pool.size
        idx = rng.choice(pool.size, size=n, replace=replace)
        arm = rng.permutation(np.repeat(np.arange(k), sizes))
        F = pool.function[arm, idx]                       # (n, V)
        death = pool.death[arm, idx]
        visits = pool.visits
        score = np.clip(np.round(F + self.noise_sd * rng.standard_normal(F.shape)), 0,
                        self.max_score)
        # dropout: piecewise-constant hazard between visits, informative on decline
        dropout = np.full(n, np.inf)
        if self.dropout.rate > 0:
            base = F[:, :1]
            decline = np.nan_to_num(base - F, nan=0.0)
            h = self.dropout.rate * np.exp(self.dropout.informative * decline / 10.0)
            u = rng.random((n, visits.size - 1))
            dt = np.diff(visits)
            drop = u < 1.0 - np.exp(-h[:, :-1] * dt[None])
            first = np.where(drop.any(axis=1), np.argmax(drop, axis=1), -1)
            when = visits[:-1][first] + rng.random(n) * dt[first]
            dropout = np.where(first >= 0, when, np.inf)
        seen = (visits[None] <= np.minimum(dropout, death)[:, None]) & np.isfinite(score)
        score = np.where(seen, score, np.nan)
        return TrialData(pool.arms, arm, visits, score, death, dropout, self.follow_up,
                         self.function, idx)

    def analyse(self, data: TrialData) -> list[dict]:
        """Primary analysis: one dict per treatment arm vs control (``estimate``, ``se``,
        ``p``, ``reject``, and endpoint-specific extras)."""
        out = []
        for a in range(1, len(data.arms)):
            ctl, trt = data.arm == 0, data.arm == a
            if self.endpoint == "survival":
                r = self._analyse_survival(data, ctl, trt)
            else:
                r = self._analyse_score(data, ctl, trt)
            r["comparison"] = f"{data.arms[a]} vs {data.arms[0]}"
            r["reject"] = bool(np.isfinite(r["p"]) and r["p"] < self.alpha)
            out.append(r)
        return out

    def _analyse_score(self, data: TrialData, ctl, trt) -> dict:
        x = data.visits
        Y = data.score
        if self.endpoint == "slope":
            ok = np.isfinite(Y)
            n = ok.sum(1)
            xm = np.where(ok, x[None], 0).sum(1) / np.maximum(n, 1)
            ym = np.where(ok, Y, 0).sum(1) / np.maximum(n, 1)
            dx = np.where(ok, x[None] - xm[:, None], 0.0)
            dy = np.where(ok, Y - ym[:, None], 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                value = np.where(n >= 2, (dx * dy).sum(1) / (dx * dx).sum(1), np.nan)
        else:
            value = Y[:, -1] - Y[:, 0]
        a, b = value[trt], value[ctl]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 2 or b.size < 2:
            return {"estimate": np.nan, "se": np.nan, "p": np.nan, "n_treated": int(a.size),
                    "n_control": int(b.size), "relative_effect": np.nan}
        res = stats.ttest_ind(a, b, equal_var=False)
        est = a.mean() - b.mean()
        se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        rel = 1.0 - a.mean() / b.mean() if b.mean() != 0 else np.nan
        return {"estimate": float(est), "se": float(se), "p": float(res.pvalue),
                "n_treated": int(a.size), "n_control": int(b.size),
                "relative_effect": float(rel)}

    def _analyse_survival(self, data: TrialData, ctl, trt) -> dict:
        end = data.follow_up
        censor = np.full(data.arm.size, end) if self.vital_status else np.minimum(
            data.dropout, end)
        time = np.minimum(data.death, censor)
        observed = data.death <= censor
        keep = ctl | trt
        lr = logrank(time[keep], observed[keep], trt[keep])
        hr_exp = exponential_hazard_ratio(time[keep], observed[keep], trt[keep])
        est = math.log(lr["hr_oe"]) if lr["hr_oe"] > 0 else np.nan
        return {"estimate": est, "se": np.nan, "p": lr["p"], "hr_logrank": lr["hr_oe"],
                "hr_exponential": hr_exp, "events_treated": int(observed[trt].sum()),
                "events_control": int(observed[ctl].sum()), "n_treated": int(trt.sum()),
                "n_control": int(ctl.sum()), "relative_effect": 1.0 - lr["hr_oe"]}

    # ------------------------------------------------------------------- replicates

    def run(self, n_per_arm: int, *, reps: int = 1, seed=0, pool: TrialPool | None = None,
            pool_size: int | None = None, executor=None, progress: bool = False) -> TrialResults:
        """``reps`` replicate trials with ``n_per_arm`` patients per arm.

        The pool (default size ``max(400, 3 * n_per_arm * arms)``) is simulated first unless
        given; replicates draw patients from it. ``executor``: any
        ``concurrent.futures.Executor`` (as in :meth:`simulate_pool`). ``progress``: progress
        bars on stderr.
        """
        check_executor(executor)
        n_arms = len(self.arms)
        if pool is None:
            size = pool_size or max(400, 3 * n_per_arm * n_arms)
            pool = self.simulate_pool(size, seed=_child(seed, 1), executor=executor,
                                      progress=progress)
        ss = np.random.SeedSequence(_entropy(_child(seed, 2)))
        batches = _split(reps, math.ceil(reps / 25))     # same batches with or without executor
        seeds = ss.spawn(len(batches))
        jobs = [(self, pool, n_per_arm, b, s) for b, s in zip(batches, seeds, strict=True)]
        mapper = executor.map if executor is not None else map
        rows = []
        with Progress(f"trials {n_per_arm}/arm", reps, unit="replicates",
                      enabled=progress) as bar:
            for part, b in zip(mapper(_run_batch, jobs), batches, strict=True):
                rows += part
                bar.update(bar.done + b)
        notes = []
        if n_per_arm * n_arms > pool.size:
            notes.append(f"pool of {pool.size} smaller than a trial ({n_per_arm * n_arms}): "
                         f"patients drawn with replacement")
        return TrialResults(self.endpoint, n_per_arm, rows, self.alpha, pool.size,
                            pool.eligible_fraction, notes)

    def power_uncertainty(self, n_per_arm: int, *, draws: int = 20, reps: int = 100,
                          seed=0, pool_size: int | None = None, executor=None,
                          progress: bool = False) -> PowerUncertainty:
        """Power of one design at a population fit's estimates and under its parameter
        uncertainty, kept apart.

        At the estimates: :meth:`run` (between-patient variability, measurement noise,
        dropout and death; the power's Wilson interval is Monte Carlo error only). Under
        parameter uncertainty: ``draws`` sets of population parameters from the fit's
        covariance step (:meth:`PopulationSampler.population_draws`); for each, a pool of new
        patients and ``reps`` replicates with the same seeds as at the estimates (common
        random numbers: the patients' normal numbers, screening and noise are the same, only
        the population parameters differ), giving one power per draw. The mean over draws is
        the assurance (probability of success averaged over what the data leave uncertain).

        Needs candidates from a population fit (``population=`` a fit, or
        :meth:`VirtualPopulation.from_fit`).

        Returns
        -------
        PowerUncertainty
        """
        import copy

        sampler = getattr(self.population, "sampler", None)
        if sampler is None:
            raise ConfigError("power_uncertainty: needs candidates drawn from a population fit "
                              "(VirtualTrial(..., population=fit)); this trial's candidates "
                              "have no parameter uncertainty")
        if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
            raise ConfigError(f"draws: expected a positive integer, found {draws!r}")
        at = self.run(n_per_arm, reps=reps, seed=seed, pool_size=pool_size,
                      executor=executor, progress=progress)
        xs, undetermined, notes = sampler.population_draws(
            int(draws), np.random.default_rng(_entropy(_child(seed, 3))))
        results = []
        with Progress("trial parameter draws", int(draws), unit="draws",
                      enabled=progress) as bar:
            for k in range(int(draws)):
                trial = copy.copy(self)
                trial.population = _Candidates(self.population.model,
                                               self.population.description,
                                               sampler=sampler.with_population(xs[k]))
                results.append(trial.run(n_per_arm, reps=reps, seed=seed,
                                         pool_size=pool_size, executor=executor))
                bar.update(k + 1)
        notes = [*notes, f"each of the {draws} draws: a pool of new patients and {reps} "
                 "replicates with the seeds of the run at the estimates (common random "
                 "numbers)"]
        return PowerUncertainty(at, results, xs, undetermined, notes)

    def power(self, sample_sizes: Sequence[int], *, reps: int = 200, seed=0,
              pool: TrialPool | None = None, pool_size: int | None = None,
              executor=None, progress: bool = False) -> PowerCurve:
        """Power (rejection rate over ``reps`` replicates) for each sample size per arm.

        ``progress``: progress bars (pool, then each sample size) on stderr.
        """
        sizes = sorted(int(n) for n in sample_sizes)
        if not sizes or sizes[0] < 2:
            raise ConfigError(f"sample_sizes: expected sizes >= 2, found {sample_sizes}")
        if pool is None:
            size = pool_size or max(400, 2 * sizes[-1] * len(self.arms))
            pool = self.simulate_pool(size, seed=_child(seed, 1), executor=executor,
                                      progress=progress)
        results = [self.run(n, reps=reps, seed=_child(seed, 10 + i), pool=pool,
                            executor=executor, progress=progress)
                   for i, n in enumerate(sizes)]
        return PowerCurve(self, results)


def _pool_chunk(job) -> TrialPool:
    trial, n, seed = job
    rng = np.random.default_rng(seed)
    table, when, score, dfs, duration, (candidates, found) = trial._screen(n, rng)
    F, death, markers = trial._outcomes(table, when)
    return TrialPool(tuple(trial.arms), trial.visits, F, death, score, dfs, duration, table,
                     candidates, found, markers)


def _run_batch(job) -> list[dict]:
    trial, pool, n_per_arm, reps, seed = job
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(reps):
        data = trial.realise(pool, n_per_arm, rng)
        rows.extend(trial.analyse(data))
    return rows
