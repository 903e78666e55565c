"""Scenario-comparison configs (TOML) -> a source, scenarios and compare options.

A config has these tables::

    [source]                  # a virtual population ...
    model = "als_systemic"
    n = 200
    seed = 1
    anchor = "clinical_onset" # data time 0 = anchor event + delay (default: the model's
                              # disease content; ALS: clinical_onset, 12 months)
    delay = [6, 18]           # months (a pair: uniform per subject)
    # fit = "../fits/als_synthetic_individual"   # ... or a saved fit folder instead
    #                              # (relative to the config): its subjects, or
    # patients = "new"             # (a population fit) n new patients drawn from the
                                   # fitted population (n, seed as above; their time
                                   # offsets: the fit's, or anchor + delay when given)

    [source.variability]      # optional; default: the §5 virtual cohort
    log_sd = { k0 = 0.3 }
    normal_sd = { Ndeath = 0.05 }
    shared = [{ parameters = ["k0", "kA"], log_mean = -0.2, log_sd = 0.7 }]

    [compare]                 # optional: start, horizon, step, draws, seed, reference
    [solver]                  # optional: method, rtol, atol, max_step, max_steps
                              # (progression.SolverOptions, used by every integration)
    [endpoints]               # optional: times, slope_window, threshold, markers, event, share

    [scenarios]               # name = list of interventions
    "no treatment" = []
    "ld-IL-2" = ["ld_il2"]                                   # a library name
    "stronger masitinib" = [{ name = "masitinib", strength = 1.5 }]   # with options
    "custom" = [{ scale = { kA = 0.5 }, start = "3 months", label = "half kA" }]

Times may be numbers (months) or strings with a unit: ``"5 days"``, ``"4 weeks"``, ``"6 h"``.
Every problem is collected and raised as one :class:`ConfigError` naming the file and key.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .als.library import LIBRARY, library
from .errors import ConfigError, ProgressionError, did_you_mean
from .virtual.interventions import DAY, HOUR, PK, WEEK, Intervention

__all__ = ["CompareConfig", "read_compare_config", "run_compare_config"]

_TIME_KEYS = {"start", "stop", "every", "duration", "doses", "fade", "fade_after",
              "fade_half_life", "half_life", "absorption_half_life", "interval", "min_cell",
              "max_cell"}
#: Time keys that are durations (> 0), checked here so the message shows the value as written.
_POSITIVE_TIMES = {"every", "duration", "half_life", "absorption_half_life", "interval",
                   "min_cell", "max_cell", "fade_half_life"}
_UNITS = {"h": HOUR, "hour": HOUR, "hours": HOUR, "d": DAY, "day": DAY, "days": DAY,
          "w": WEEK, "week": WEEK, "weeks": WEEK, "m": 1.0, "month": 1.0, "months": 1.0,
          "y": 12.0, "year": 12.0, "years": 12.0}
_TIME = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*([a-zA-Z]+)\s*$")

_SECTIONS = {"source", "compare", "endpoints", "scenarios", "solver"}
#: Keys of the [solver] table: the SolverOptions fields that integration uses
#: (``sensitivities`` concerns fits only).
_SOLVER_KEYS = ("method", "rtol", "atol", "max_step", "max_steps")
_SOURCE_KEYS = {"model", "n", "seed", "anchor", "delay", "fit", "variability", "max_time",
                "patients"}
#: ``[source] patients``: the fit's own subjects, or new ones drawn from its population model.
_PATIENTS = ("fitted", "new")
_COMPARE_KEYS = {"start", "horizon", "step", "draws", "seed", "reference", "observables",
                 "method", "rtol", "atol"}
_ENDPOINT_KEYS = {"function", "times", "slope_window", "threshold", "event", "markers", "share"}
_INTERVENTION_KEYS = {f for f in Intervention.__dataclass_fields__ if not f.startswith("_")}


@dataclass
class CompareConfig:
    """A parsed scenario config."""

    path: Path
    source: object
    scenarios: dict
    options: dict = field(default_factory=dict)
    endpoints: object = None


class _Problems:
    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, key: str, what: str) -> None:
        self.items.append(f"{self.path}, key '{key}': {what}")

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0] if len(self.items) == 1 else \
                f"{self.path}: {len(self.items)} problems"
            raise ConfigError(first, self.items)


def _time(value, key: str, problems: _Problems):
    if isinstance(value, list):
        return [_time(v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, bool):
        problems.add(key, f"expected a time, found {value!r}")
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            problems.add(key, f"expected a finite time, found {value!r}")
            return None
        return float(value)
    if isinstance(value, str):
        m = _TIME.match(value)
        if m and m.group(2).lower() in _UNITS:
            return float(m.group(1)) * _UNITS[m.group(2).lower()]
        problems.add(key, f"expected a time in months or '<number> <unit>' (units: h, days, "
                          f"weeks, months, years), found {value!r}")
        return None
    problems.add(key, f"expected a time, found {value!r}")
    return None


def _number(table, name, key, problems, *, integer=False, positive=False, default=None,
            minimum=None):
    if name not in table:
        return default
    v = table[name]
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    ok = ok and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (positive and v <= 0) or (minimum is not None and v < minimum):
        if positive:
            kind = "a positive " + ("integer" if integer else "number")
        elif minimum is not None:
            kind = ("an integer" if integer else "a number") + f" >= {minimum:g}"
        else:
            kind = "an integer" if integer else "a finite number"
        problems.add(f"{key}.{name}", f"expected {kind}, found {v!r}")
        return default
    return v


def _unknown(table: dict, allowed: set, key: str, problems: _Problems) -> None:
    for name in table:
        if name not in allowed:
            hint = did_you_mean(name, sorted(allowed))
            problems.add(f"{key}.{name}" if key else name,
                         f"unknown key{hint} (allowed: {', '.join(sorted(allowed))})")


def read_compare_config(path, *, n: int | None = None) -> CompareConfig:
    """Read and validate a scenario config; build its source and interventions.

    Parameters
    ----------
    path : str or Path
    n : int, optional
        Override the virtual population size (``source.n``).
    """
    from .model import load_model
    from .virtual.endpoints import Endpoints
    from .virtual.population import Variability, VirtualPopulation, population_defaults

    path = Path(path)
    problems = _Problems(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _unknown(doc, _SECTIONS, "", problems)
    for section in ("source", "scenarios"):
        if section not in doc:
            problems.add(section, "missing table")
    for section in _SECTIONS:
        if section in doc and not isinstance(doc[section], dict):
            problems.add(section, "expected a table")
            doc.pop(section)
    problems.raise_if_any()

    # ------------------------------------------------------------------ source
    src = doc["source"]
    _unknown(src, _SOURCE_KEYS, "source", problems)
    model = None
    fitted = None
    model_name = src.get("model", "als_systemic")
    if "fit" not in src:
        if not isinstance(model_name, str):
            problems.add("source.model", f"expected a model name or file, found {model_name!r}")
        else:
            try:
                model = load_model(model_name if not model_name.endswith(".toml") else
                                   _resolve(model_name, path))
            except ProgressionError as exc:
                problems.add("source.model", str(exc).splitlines()[0])
    else:
        # the fit's model is what scenarios and endpoints are checked against
        try:
            fitted = _load_fit(src["fit"], path)
            model = fitted.model
        except ConfigError as exc:
            problems.items.append(str(exc).splitlines()[0])
    patients = src.get("patients", "fitted")
    if patients not in _PATIENTS:
        problems.add("source.patients", f"expected one of {', '.join(map(repr, _PATIENTS))} "
                                        f"(\"new\": patients drawn from a population fit), "
                                        f"found {patients!r}")
        patients = "fitted"
    elif "patients" in src and "fit" not in src:
        problems.add("source.patients", "needs source.fit (a saved population fit to draw "
                                        "patients from)")
    elif patients == "new" and fitted is not None and fitted.population is None:
        problems.add("source.patients", f"\"new\" draws patients from a population fit, but "
                                        f"the fit '{fitted.name}' ({src['fit']}) has none "
                                        f"(estimator {fitted.kind}); use a population "
                                        "estimator (focei, foce, fo, laplace, saem) or "
                                        "patients = \"fitted\"")
    variability = None
    if "variability" in src:
        variability = _variability(src["variability"], problems, Variability)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"--n: expected a positive integer (virtual population size), "
                          f"found {n!r}")
    size = n if n is not None else _number(src, "n", "source", problems, integer=True,
                                           positive=True, default=100)
    seed = _number(src, "seed", "source", problems, integer=True, default=0, minimum=0)
    # Where the data clock starts when the config is silent: the model's disease content says
    # (ALS: 12 months after clinical onset); a model without content starts at model time 0.
    clock = population_defaults(model) if model is not None else {"anchor": None,
                                                                   "delay": 0.0}
    anchor = src.get("anchor", clock["anchor"])
    if anchor in ("", "none", None):
        anchor = None
    elif not isinstance(anchor, str):
        problems.add("source.anchor", f"expected an event name or \"none\", found {anchor!r}")
        anchor = None
    elif model is not None and anchor not in {e.name for e in model.events}:
        events = [e.name for e in model.events]
        problems.add("source.anchor", f"model {model.name!r} has no event {anchor!r}"
                                      f"{did_you_mean(anchor, events)} (events: "
                                      f"{', '.join(events) or 'none'}; or \"none\")")
    delay = src.get("delay", clock["delay"])
    delay = _time(delay, "source.delay", problems)
    if isinstance(delay, list) and len(delay) != 2:
        problems.add("source.delay", f"expected a time or a pair [low, high], found {delay}")
    # ---------------------------------------------------------------- scenarios
    scenarios = {}
    table = doc["scenarios"]
    if not table:
        problems.add("scenarios", "expected at least one scenario")
    for name, items in table.items():
        key = f'scenarios."{name}"'
        if not isinstance(items, list):
            problems.add(key, f"expected a list of interventions, found {items!r}")
            continue
        ivs = []
        for i, item in enumerate(items):
            ivs += _intervention(item, f"{key}[{i}]", problems)
        scenarios[name] = ivs
    # ------------------------------------------------------------------ options
    options = {}
    comp = doc.get("compare", {})
    _unknown(comp, _COMPARE_KEYS, "compare", problems)
    for k in ("start", "horizon", "step"):
        if k in comp:
            v = _time(comp[k], f"compare.{k}", problems)
            if isinstance(v, list):
                problems.add(f"compare.{k}", f"expected one time, found {comp[k]!r}")
            elif v is not None and k != "start" and v <= 0:
                what = "follow-up" if k == "horizon" else "output spacing"
                problems.add(f"compare.{k}", f"expected a positive time ({what} after the "
                                             f"start), found {comp[k]!r}")
            elif v is not None:
                options[k] = v
    if options.get("step", 0.0) > options.get("horizon", 18.0):
        problems.add("compare.step", f"expected at most the horizon "
                                     f"({options.get('horizon', 18.0):g} months), found "
                                     f"{comp['step']!r}")
    for k in ("draws", "seed"):
        v = _number(comp, k, "compare", problems, integer=True, minimum=0)
        if v is not None:
            options[k] = v
    for k in ("rtol", "atol"):
        v = _number(comp, k, "compare", problems, positive=True)
        if v is not None:
            options[k] = v
    for k in ("reference", "method"):
        if k in comp:
            if not isinstance(comp[k], str):
                problems.add(f"compare.{k}", f"expected a string, found {comp[k]!r}")
            else:
                options[k] = comp[k]
    if "method" in options:
        from .simulate import METHODS

        if options["method"] not in METHODS:
            problems.add("compare.method", f"unknown method {options['method']!r}"
                                           f"{did_you_mean(options['method'], METHODS)} "
                                           f"(methods: {', '.join(sorted(METHODS))})")
    if "solver" in doc:
        solver = _solver(doc["solver"], problems)
        clash = [k for k in ("method", "rtol", "atol") if k in comp]
        if clash:
            problems.add(f"compare.{clash[0]}", "integration options go in [solver] when it is "
                                                "given (found them in both [compare] and "
                                                "[solver])")
        elif solver is not None:
            options["solver"] = solver
    if "reference" in options and options["reference"] not in scenarios:
        problems.add("compare.reference", f"no scenario {options['reference']!r}"
                                          f"{did_you_mean(options['reference'], scenarios)} "
                                          f"(scenarios: {', '.join(scenarios)})")
    if "observables" in comp:
        obs = comp["observables"]
        if not isinstance(obs, list) or not all(isinstance(o, str) for o in obs) or not obs:
            problems.add("compare.observables", f"expected a non-empty array of observable "
                                                f"names, found {obs!r}")
        else:
            _known(obs, model, "compare.observables", problems)
            options["observables"] = list(obs)
    endpoints = None
    ep = doc.get("endpoints", {})
    _unknown(ep, _ENDPOINT_KEYS, "endpoints", problems)
    if ep:
        kw = {}
        for k in ("function", "event", "share"):
            if k in ep:
                if not isinstance(ep[k], str):
                    problems.add(f"endpoints.{k}", f"expected a name, found {ep[k]!r}")
                    continue
                kw[k] = ep[k]
                if k == "event":
                    if model is not None and ep[k] not in {e.name for e in model.events}:
                        events = [e.name for e in model.events]
                        problems.add("endpoints.event", f"model {model.name!r} has no event "
                                                        f"{ep[k]!r}{did_you_mean(ep[k], events)}"
                                                        f" (events: {', '.join(events)})")
                else:
                    _known([ep[k]], model, f"endpoints.{k}", problems)
        if "markers" in ep:
            mk = ep["markers"]
            if not isinstance(mk, list) or not all(isinstance(o, str) for o in mk):
                problems.add("endpoints.markers", f"expected an array of observable names, "
                                                  f"found {mk!r}")
            else:
                _known(mk, model, "endpoints.markers", problems)
                kw["markers"] = tuple(mk)
        horizon = options.get("horizon", 18.0)
        if "times" in ep:
            times = _time(ep["times"], "endpoints.times", problems)
            if not isinstance(times, list) or not times:
                problems.add("endpoints.times", f"expected an array of times, found "
                                                f"{ep['times']!r}")
            elif None not in times:
                bad = [t for t in times if not 0 < t <= horizon]
                if bad:
                    problems.add("endpoints.times", f"expected times in (0, horizon = "
                                                    f"{horizon:g}] months, found {ep['times']!r}")
                else:
                    kw["times"] = tuple(times)
        if "slope_window" in ep:
            w = _time(ep["slope_window"], "endpoints.slope_window", problems)
            if not isinstance(w, list) or len(w) != 2:
                problems.add("endpoints.slope_window", f"expected [start, end], found "
                                                       f"{ep['slope_window']!r}")
            elif None not in w and not 0 <= w[0] < w[1]:
                problems.add("endpoints.slope_window", f"expected 0 <= start < end, found "
                                                       f"{ep['slope_window']!r}")
            elif None not in w:
                kw["slope_window"] = tuple(w)
        thr = _number(ep, "threshold", "endpoints", problems)
        if thr is not None:
            kw["threshold"] = float(thr)
        endpoints = Endpoints(**kw)
    if model is not None:
        from .virtual.interventions import to_switches

        for name, ivs in scenarios.items():
            try:
                to_switches(model, ivs, until=1.0)
            except ProgressionError as exc:
                for p in exc.problems:
                    problems.add(f'scenarios."{name}"', p)
        if variability is not None:
            for pname in sorted(variability.names()):
                if pname not in model.parameter_names:
                    problems.add("source.variability", f"model {model.name!r} has no parameter "
                                                       f"{pname!r}")
    problems.raise_if_any()

    # ------------------------------------------------------------ build source
    if "fit" in src and patients == "new":
        from .virtual.population import VirtualPopulation as _VP

        # the fit's clock unless the config sets one (anchor/delay: as for a sampled
        # population, under each new patient's own parameters)
        clock = ({"anchor": anchor, "delay": delay} if "anchor" in src or "delay" in src
                 else {})
        try:
            source = _VP.from_fit(fitted, size, seed=seed, **clock)
        except ProgressionError as exc:
            raise ConfigError(f"{path}, key 'source.patients': {exc}") from None
    elif "fit" in src:
        source = fitted
    else:
        try:
            source = VirtualPopulation.sample(model, size, seed=seed, variability=variability,
                                              anchor=anchor, delay=delay)
        except ProgressionError as exc:
            raise ConfigError(f"{path}, key 'source': {exc}") from None
    return CompareConfig(path, source, scenarios, options, endpoints)


def _known(names, model, key: str, problems: _Problems) -> None:
    """Every name is an observable or state of the model (with a did-you-mean hint)."""
    if model is None:
        return
    known = list(model.observable_names) + list(model.state_names)
    for name in names:
        if name not in known:
            problems.add(key, f"model {model.name!r} has no observable or state {name!r}"
                              f"{did_you_mean(name, known)}")


def _resolve(value: str, config: Path) -> Path:
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    return config.parent / p


def _load_fit(value, config: Path):
    if not isinstance(value, str):
        raise ConfigError(f"{config}, key 'source.fit': expected a folder path, found {value!r}")
    folder = _resolve(value, config)
    if not folder.exists():
        raise ConfigError(f"{config}, key 'source.fit': no saved fit at {value!r}")
    from .fit import load_fit

    try:
        return load_fit(folder)
    except ProgressionError as exc:
        raise ConfigError(f"{config}, key 'source.fit': {exc}") from None


def _solver(table: dict, problems: _Problems):
    """The [solver] table as :class:`~progression.SolverOptions` (None after a problem)."""
    from .options import SolverOptions

    _unknown(table, set(_SOLVER_KEYS), "solver", problems)
    ok = True
    for key, value in table.items():
        if key not in _SOLVER_KEYS:
            ok = False
            continue
        try:
            SolverOptions(**{key: value})         # one key at a time: each problem named
        except ConfigError as exc:
            ok = False
            what = str(exc).removeprefix("solver options: ").removeprefix(f"{key}: ")
            problems.add(f"solver.{key}", what)
    return SolverOptions(**table) if ok else None


def _variability(table, problems: _Problems, cls):
    key = "source.variability"
    if not isinstance(table, dict):
        problems.add(key, "expected a table")
        return None
    _unknown(table, {"log_sd", "normal_sd", "shared", "clip"}, key, problems)
    kw = {}
    for name in ("log_sd", "normal_sd"):
        sub = table.get(name, {})
        if not isinstance(sub, dict) or not all(isinstance(v, int | float) and v >= 0
                                                for v in sub.values()):
            problems.add(f"{key}.{name}", f"expected a table parameter -> SD >= 0, found "
                                          f"{sub!r}")
        else:
            kw[name] = {k: float(v) for k, v in sub.items()}
    shared = []
    for i, item in enumerate(table.get("shared", [])):
        k = f"{key}.shared[{i}]"
        if not isinstance(item, dict) or set(item) - {"parameters", "log_mean", "log_sd"} \
                or "parameters" not in item:
            problems.add(k, "expected { parameters = [...], log_mean = x, log_sd = y }")
            continue
        shared.append((tuple(item["parameters"]), float(item.get("log_mean", 0.0)),
                       float(item.get("log_sd", 0.0))))
    kw["shared"] = tuple(shared)
    if "clip" in table:
        kw["clip"] = bool(table["clip"])
    return cls(**kw)


def _intervention(item, key: str, problems: _Problems) -> list[Intervention]:
    """One config entry -> interventions (a library entry may be a combination)."""
    if isinstance(item, str):
        if item not in LIBRARY:
            hint = did_you_mean(item, LIBRARY)
            problems.add(key, f"unknown intervention {item!r}{hint} (library: "
                              f"{', '.join(LIBRARY)})")
            return []
        return library(item)
    if not isinstance(item, dict):
        problems.add(key, f"expected a library name or a table, found {item!r}")
        return []
    options = {}
    for k, v in item.items():
        if k in _TIME_KEYS:
            given = v
            v = _time(v, f"{key}.{k}", problems)
            if k in _POSITIVE_TIMES and isinstance(v, float) and v <= 0:
                problems.add(f"{key}.{k}", f"expected a positive time, found {given!r}")
                v = None
            if k in ("doses", "fade") and v is not None:
                v = tuple(v) if isinstance(v, list) else v
        options[k] = v
    if any(v is None and k in _TIME_KEYS for k, v in options.items()):
        return []
    try:
        if "name" in options:
            name = options.pop("name")
            if name not in LIBRARY:
                hint = did_you_mean(str(name), LIBRARY)
                problems.add(f"{key}.name", f"unknown intervention {name!r}{hint} (library: "
                                            f"{', '.join(LIBRARY)})")
                return []
            return library(name, **options)
        unknown = set(options) - _INTERVENTION_KEYS
        if unknown:
            k = sorted(unknown)[0]
            hint = did_you_mean(k, sorted(_INTERVENTION_KEYS))
            problems.add(f"{key}.{k}", f"unknown key{hint} (give 'name' for a library "
                                       f"intervention)")
            return []
        if "pk" in options:
            pk = options["pk"]
            if not isinstance(pk, dict):
                problems.add(f"{key}.pk", "expected a table of PK options")
                return []
            pk = dict(pk)
            for k in list(pk):
                if k in _TIME_KEYS:
                    pk[k] = _time(pk[k], f"{key}.pk.{k}", problems)
            options["pk"] = PK(**pk)
        if "cycles" in options and isinstance(options["cycles"], float) \
                and options["cycles"].is_integer():
            options["cycles"] = int(options["cycles"])
        return [Intervention(**options)]
    except ConfigError as exc:
        problems.add(key, str(exc))
    except TypeError as exc:
        problems.add(key, f"bad options: {exc}")
    return []


def run_compare_config(path, out=None, *, n: int | None = None, draws: int | None = None,
                       figures: bool = True, progress: bool = False, executor=None):
    """Read a scenario config, run :func:`~progression.scenarios.compare`, write ``out``.

    ``executor``: any ``concurrent.futures.Executor`` the scenarios fan out through.

    Returns the :class:`~progression.scenarios.Comparison`.
    """
    from .virtual.scenarios import compare

    if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int)
                              or draws < 0):
        raise ConfigError(f"--draws: expected an integer >= 0 (parameter draws), found "
                          f"{draws!r}")
    cfg = read_compare_config(path, n=n)
    options = dict(cfg.options)
    if draws is not None:
        options["draws"] = draws
    comp = compare(cfg.source, cfg.scenarios, endpoints=cfg.endpoints, progress=progress,
                   executor=executor, **options)
    if out is not None:
        comp.write(out, figures=figures)
    return comp
