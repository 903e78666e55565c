"""A cohort preset against the published ALS statistics over several seeds.

``describe`` of one synthetic cohort says whether *that* draw meets each target; a claim such
as "19 of 20 in range" then depends on the seed. :func:`describe_config` draws the cohort of a
population config (``configs/cohorts/*.toml``) once per seed, describes each draw
(:func:`progression.als.describe.describe_cohort`) and reports, per statistic, the value in
every seed, its spread (min / median / max) and in how many seeds it is in range (k of n).

    progression describe configs/cohorts/als_clinic.toml --seeds 5 [--n 1000]

Seeds are the config's seed + 0, 1, ..., n - 1 unless given; cohorts of different seeds are
independent and may go through any ``concurrent.futures`` executor (same numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..parallel import Progress, check_executor

__all__ = ["SeedStatistic", "SeedsDescription", "describe_config", "format_seeds"]


@dataclass(frozen=True)
class SeedStatistic:
    """One statistic over seeds.

    Attributes
    ----------
    statistic, target, source : str
    range : (float, float) or None
        Accepted interval (None: reported, not checked).
    values : tuple of float
        The statistic in each seed (NaN where not computable), in seed order.
    ok : tuple of (bool or None)
        In range per seed (None: not checked or not computable).
    """

    statistic: str
    target: str
    range: tuple[float, float] | None
    source: str
    values: tuple[float, ...]
    ok: tuple

    @property
    def checked(self) -> int:
        """Seeds in which the statistic was computed and checked."""
        return sum(o is not None for o in self.ok)

    @property
    def passes(self) -> int:
        """Seeds in which it is in range."""
        return sum(o is True for o in self.ok)

    @property
    def spread(self) -> tuple[float, float, float]:
        """(min, median, max) over the seeds where it was computed (NaN if none)."""
        v = np.array([x for x in self.values if math.isfinite(x)], dtype=float)
        if not v.size:
            return (math.nan, math.nan, math.nan)
        return (float(v.min()), float(np.median(v)), float(v.max()))

    @property
    def always(self) -> bool | None:
        """In range in every seed (None when never checked)."""
        return None if self.checked == 0 else self.passes == len(self.values)

    def as_dict(self) -> dict:
        lo, med, hi = self.spread
        return {"statistic": self.statistic, "target": self.target,
                "range": None if self.range is None else list(self.range),
                "source": self.source, "values": list(self.values),
                "ok": list(self.ok), "min": lo, "median": med, "max": hi,
                "passes": self.passes, "checked": self.checked}


@dataclass
class SeedsDescription:
    """Every statistic of a cohort preset over seeds (:func:`describe_config`)."""

    config: str
    setting: str
    n: int
    seeds: tuple[int, ...]
    statistics: list[SeedStatistic]
    values: list[dict] = field(default_factory=list)     # per seed: key -> value

    def summary(self) -> dict:
        """Counts: statistics checked, in range in every seed, in range in some seeds."""
        checked = [s for s in self.statistics if s.checked]
        return {"checked": len(checked),
                "every_seed": sum(s.passes == len(self.seeds) for s in checked),
                "some_seeds": sum(0 < s.passes < len(self.seeds) for s in checked),
                "no_seed": sum(s.passes == 0 for s in checked),
                "per_seed": [sum(s.ok[i] is True for s in checked)
                             for i in range(len(self.seeds))]}

    def as_dict(self) -> dict:
        return {"config": self.config, "setting": self.setting, "n": self.n,
                "seeds": list(self.seeds), "summary": self.summary(),
                "statistics": [s.as_dict() for s in self.statistics],
                "values_by_key": self.values}


def _one_seed(job):
    """Draw and describe one cohort: (rows, values by key) -- top level so it pickles."""
    from .describe import describe_cohort
    from .synthetic import synthetic_cohort

    config, n, seed, setting, nfl_control = job
    cohort, _ = synthetic_cohort(config, n=n, seed=seed)
    rows = describe_cohort(cohort, setting=setting, nfl_control=nfl_control)
    try:        # the statistics by their targets.toml key, where describe offers them
        from .describe import cohort_statistics
    except ImportError:
        values = {}
    else:
        values = dict(cohort_statistics(cohort, setting=setting, nfl_control=nfl_control))
    return [tuple(r) for r in rows], values


def describe_config(config, *, seeds: int | Sequence[int] = 5, n: int | None = None,
                    setting: str = "auto", nfl_control: float = 20.0, executor=None,
                    progress: bool = False) -> SeedsDescription:
    """Draw a population config's cohort over several seeds and describe every draw.

    Parameters
    ----------
    config : str, path or PopulationConfig
        A cohort preset such as ``configs/cohorts/als_clinic.toml``.
    seeds : int or sequence of int
        Number of seeds (the config's seed + 0, 1, ...), or the seeds themselves.
    n : int, optional
        Patients per cohort (default: the config's).
    setting : {"auto", "clinic", "trial"}
        Targets that apply (``"auto"``: the config's ``setting``).
    nfl_control : float
        Control serum NfL (pg/mL) for the fold statistic.
    executor : concurrent.futures.Executor, optional
        Seeds in parallel (same numbers).
    progress : bool
        Progress bar (seeds) on stderr.

    Returns
    -------
    SeedsDescription
    """
    from .cohort_config import _as_config

    check_executor(executor)
    cfg = _as_config(config)
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds: expected a number of seeds or a list of seeds, found "
                          f"{seeds!r}")
    if isinstance(seeds, int | np.integer):
        if seeds < 1:
            raise ConfigError(f"seeds: expected at least 1 seed, found {seeds}")
        seed_list = tuple(int(cfg.seed) + i for i in range(int(seeds)))
    else:
        seed_list = tuple(int(s) for s in seeds)
        if not seed_list or any(s < 0 for s in seed_list) or len(set(seed_list)) != len(
                seed_list):
            raise ConfigError(f"seeds: expected distinct non-negative seeds, found "
                              f"{list(seeds)}")
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise ConfigError(f"n: expected a positive number of patients, found {n!r}")
    if setting not in ("auto", "clinic", "trial"):
        raise ConfigError(f"setting: expected 'auto', 'clinic' or 'trial', found {setting!r}")
    use = cfg.setting if setting == "auto" else setting
    jobs = [(cfg, n, s, use, nfl_control) for s in seed_list]
    mapper = executor.map if executor is not None else map
    per_seed = []
    with Progress("describe seeds", len(jobs), unit="seeds", enabled=progress) as bar:
        for k, result in enumerate(mapper(_one_seed, jobs)):
            per_seed.append(result)
            bar.update(k + 1)
    # statistics in first-seen order; a statistic missing in a seed counts as not computed
    order: dict[str, tuple] = {}
    for rows, _ in per_seed:
        for r in rows:
            order.setdefault(r[0], r)
    stats = []
    for label, first in order.items():
        values, oks = [], []
        for rows, _ in per_seed:
            match = next((r for r in rows if r[0] == label), None)
            values.append(math.nan if match is None else float(match[1]))
            oks.append(None if match is None else match[5])
        stats.append(SeedStatistic(label, first[2], first[3], first[4], tuple(values),
                                   tuple(oks)))
    return SeedsDescription(cfg.source, use, cfg.n if n is None else int(n), seed_list,
                            stats, [v for _, v in per_seed])


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a >= 1000:
        return f"{x:.0f}"
    if a >= 100:
        return f"{x:.4g}"
    return f"{x:.3g}"


def format_seeds(desc: SeedsDescription, table: str = "text", *, per_seed: bool = True) -> str:
    """Each statistic: target, accepted range, min / median / max over seeds, passes k of n
    (and the value per seed with ``per_seed``)."""
    k = len(desc.seeds)
    head = ["statistic", "target", "range", "min", "median", "max", f"in range (of {k})"]
    if per_seed:
        head += [f"seed {s}" for s in desc.seeds]
    rows = []
    for s in desc.statistics:
        lo, med, hi = s.spread
        rng = "not checked" if s.range is None else f"{_fmt(s.range[0])}-{_fmt(s.range[1])}"
        passes = "-" if s.checked == 0 else f"{s.passes}/{k}" + (
            "" if s.checked == k else f" ({s.checked} computed)")
        row = [s.statistic, s.target, rng, _fmt(lo), _fmt(med), _fmt(hi), passes]
        if per_seed:
            row += [_fmt(v) + ("" if o is not False else " *") for v, o in
                    zip(s.values, s.ok, strict=True)]
        rows.append(row)
    sm = desc.summary()
    foot = (f"{sm['every_seed']} of {sm['checked']} statistics in range in every seed, "
            f"{sm['some_seeds']} in some, {sm['no_seed']} in none; per seed: "
            + ", ".join(f"{p}/{sm['checked']}" for p in sm["per_seed"])
            + (" (* out of range)" if per_seed else ""))
    title = (f"{desc.config}: {desc.n} patients x {k} seeds "
             f"({', '.join(str(s) for s in desc.seeds)}), {desc.setting} targets")
    if table == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + ["", foot]) + "\n"
    if table != "text":
        raise ConfigError(f"table: expected 'text' or 'markdown', found {table!r}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    widths[0] = min(widths[0], 60)
    widths[1] = min(widths[1], 28)

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = c if len(c) <= widths[i] else c[: widths[i] - 1] + "…"
            out.append(c.ljust(widths[i]) if i < 3 else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([title, line(head), *(line(r) for r in rows), foot]) + "\n"
