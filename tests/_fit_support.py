"""Synthetic cohorts for the fitting tests, simulated here with pg.simulate (not the shipped
synthetic data)."""

from __future__ import annotations

import numpy as np

import progression as pg

NOISE = {"ALSFRS_R": 1.0, "NfL": 0.15, "CRP": 0.2}


def simulate_cohort(n, *, seed=1, vary=("kA", "eD"), sd=0.3, visits=None,
                    offset_range=(20.0, 30.0), noise=None, crp_limit=None, jitter=0.2):
    """A cohort of ``n`` virtual als_reduced patients observed from enrolment.

    Parameters in ``vary`` are log-normal around the model defaults (SD ``sd`` of the log);
    the time offset (model time of enrolment) is uniform on ``offset_range``. ALSFRS-R gets
    additive noise, NfL and CRP log-normal noise; CRP below ``crp_limit`` is left-censored.

    Returns
    -------
    cohort : Cohort
    truth : dict of str to ndarray
        Per subject: each varied parameter and ``time_offset``.
    """
    noise = dict(NOISE, **(noise or {}))
    visits = np.arange(0.0, 19.0, 1.0) if visits is None else np.asarray(visits, float)
    model = pg.load_model("als_reduced")
    rng = np.random.default_rng(seed)
    table = model.parameter_table(None, n)
    for name in vary:
        j = model.parameter_index(name)
        table[:, j] *= np.exp(sd * rng.standard_normal(n))
    table = np.clip(table, model.bounds[:, 0] * 1.02, model.bounds[:, 1] * 0.98)
    offsets = rng.uniform(*offset_range, n)
    cols = {k: [] for k in ("subject", "time", "observable", "value", "cens", "limit")}
    for i in range(n):
        t = np.sort(np.clip(visits + jitter * rng.uniform(-1, 1, visits.size), 0, None))
        t[0] = 0.0
        sim = pg.simulate(model, table[i:i + 1], offsets[i] + t, rtol=1e-9, atol=1e-11,
                          terminal_events=False)
        for obs in ("ALSFRS_R", "NfL", "CRP"):
            f = sim[obs][0]
            eps = rng.standard_normal(f.size)
            if obs == "ALSFRS_R":
                y = np.clip(f + noise[obs] * eps, 0.0, 48.0)
            else:
                y = f * np.exp(noise[obs] * eps)
            cens = np.zeros(f.size, dtype=int)
            limit = np.full(f.size, np.nan)
            if obs == "CRP" and crp_limit is not None:
                below = y < crp_limit
                cens[below] = 1
                limit[below] = crp_limit
                y = np.where(below, crp_limit, y)
            cols["subject"] += [f"P{i + 1:03d}"] * f.size
            cols["time"] += list(t)
            cols["observable"] += [obs] * f.size
            cols["value"] += list(y)
            cols["cens"] += list(cens)
            cols["limit"] += list(limit)
    cohort = pg.Cohort(cols, time_unit="month", source="simulated in the test")
    truth = {name: table[:, model.parameter_index(name)] for name in vary}
    truth["time_offset"] = offsets
    return cohort, truth


def config_text(data_path="data.csv", *, free=("kA", "eD"), offset="subject", extra="",
                noise=None, errors=None):
    """A fit config for the simulated cohorts (error parameters fixed at the truth)."""
    noise = dict(NOISE, **(noise or {}))
    lines = ["[fit]", 'model = "als_reduced"', 'estimator = "individual"', "",
             "[data]", f'path = "{data_path}"', ""]
    if errors is None:
        lines += ["[error.ALSFRS_R]", 'model = "additive"', f"a = {noise['ALSFRS_R']}", "",
                  "[error.NfL]", 'model = "lognormal"', f"sigma = {noise['NfL']}", "",
                  "[error.CRP]", 'model = "lognormal"', f"sigma = {noise['CRP']}", ""]
    else:
        lines += [errors, ""]
    for name in free:
        lines += [f"[parameters.{name}]", 'estimate = "subject"', ""]
    if offset:
        lines += ["[parameters.time_offset]", f'estimate = "{offset}"', "value = 24.0",
                  "bounds = [0.0, 60.0]", ""]
    lines += ["[solver]", "grid_step = 0.5", ""]
    return "\n".join(lines) + "\n" + extra


def run_cli(*argv):
    """The `progression fit` subcommand as cli.main runs it: errors -> one message, exit 2."""
    import argparse

    from progression._cli_fit import register
    from progression.errors import ProgressionError

    parser = argparse.ArgumentParser(prog="progression")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fit", *argv])
    try:
        return args.func(args), ""
    except ProgressionError as exc:
        return 2, str(exc)


def estimated_error_tables(crp_sigma: str) -> str:
    """[error.*] tables with per-subject error parameters: ALSFRS-R combined with ``a`` free,
    NfL log-normal fixed, CRP log-normal with ``sigma`` given as ``crp_sigma``."""
    return f"""[error.ALSFRS_R]
model = "combined"
a = {{ value = 1.0, estimate = "subject" }}
b = 0.02
[error.NfL]
model = "lognormal"
sigma = 0.15
[error.CRP]
model = "lognormal"
sigma = {crp_sigma}"""
