"""Benchmark: the shipped per-subject fit, this checkout against a baseline checkout (issue 12).

Runs ``progression fit`` on the same config (a copy whose data path is absolute and whose
output folder is a temporary one) twice in fresh processes, once with the baseline code on
``PYTHONPATH`` (a ``git worktree`` of the baseline commit) and once with this checkout, and
compares

* time: CPU seconds (user + system of the child process) and wall seconds end to end, as a
  user runs it (figures included when the config asks for them), and the fit's own
  ``timings`` from ``fit.json`` (estimation, covariance);
* estimates: every subject's parameter vector (``fit.json`` ``estimates.theta``), standard
  errors and objective, relative differences (target: identical to 1e-6).

Issue 12's target: the shipped fit at least 1.5x faster with identical estimates to 1e-6.
Results go to ``benchmarks/results/fit_speed.json`` and ``.md``.

Run (the baseline checkout first)::

    git worktree add /tmp/base905 905a896
    python benchmarks/fit_speed.py --base /tmp/base905 \
        [--config configs/als_synthetic_individual.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
RUN = "import sys; from progression.cli import main; sys.exit(main(sys.argv[1:]))"


def config_copy(config: Path, workdir: Path, label: str,
                model: Path | None = None) -> tuple[Path, Path]:
    """The config with its data path made absolute, its output folder in workdir and, with
    ``model``, its ``[fit] model`` replaced by that model file (absolute path) and its
    ``[parameters.NAME]`` tables of parameters that model does not have left out
    (:func:`foreign_parameters`)."""
    text = config.read_text()
    out = workdir / f"fit_{label}"
    if model is not None:
        text, count = re.subn(r'(?m)^(model\s*=\s*)"([^"]+)"',
                              lambda m: f'{m.group(1)}"{model.resolve()}"', text, count=1)
        if count != 1:
            raise SystemExit(f"{config}: no 'model = \"...\"' line to point at {model}")
        for name in foreign_parameters(text, model):
            text = re.sub(rf'(?ms)^\[parameters\.{re.escape(name)}\]\s*$.*?(?=^\[|\Z)', "",
                          text)

    def data_path(match):
        return f'{match.group(1)}"{(config.parent / match.group(2)).resolve()}"'

    text = re.sub(r'(?m)^(path\s*=\s*)"([^"]+)"', data_path, text)
    text = re.sub(r'(?m)^(folder\s*=\s*)"([^"]+)"', lambda m: f'{m.group(1)}"{out}"', text)
    path = workdir / f"{config.stem}_{label}.toml"
    path.write_text(text)
    return path, out


def foreign_parameters(config_text: str, model: Path) -> list[str]:
    """``[parameters.NAME]`` tables of a config whose NAME the model file does not define
    (the time offset aside): a config pinned for a later model (e.g. issue 13's second
    calibration pins the new hazard scale ``h0`` of ``als_reduced``) fitted with the
    baseline's model file, which has no such parameter."""
    defined = set(re.findall(r'(?m)^\[parameters\.([A-Za-z_]\w*)\]', model.read_text()))
    named = re.findall(r'(?m)^\[parameters\.([A-Za-z_]\w*)\]', config_text)
    return [name for name in named if name not in defined and name != "time_offset"]


def run(code_root: Path, config: Path, out: Path, backend: str | None = None) -> dict:
    """One fit in a fresh process with code_root first on PYTHONPATH (run from the output's
    folder: with ``-c`` the current directory comes first on sys.path); ``backend`` sets
    ``PROGRESSION_BACKEND``."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    env.pop("PROGRESSION_BACKEND", None)
    if backend:
        env["PROGRESSION_BACKEND"] = backend
    where = subprocess.run([sys.executable, "-c",
                            "import progression; print(progression.__file__)"],
                           env=env, cwd=out.parent, capture_output=True, text=True,
                           check=True).stdout.strip()
    if not where.startswith(str(code_root)):
        raise SystemExit(f"{code_root}: progression imported from {where}, not from there")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUN, "fit", str(config), "--out", str(out),
                           "--overwrite", "--quiet"], env=env, cwd=out.parent,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"fit with {code_root} failed:\n{proc.stderr[-3000:]}")
    fit = json.loads((out / "fit.json").read_text())
    return {"code": str(code_root), "backend": backend or "default", "imported_from": where,
            "wall_seconds": wall,
            "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "timings": fit.get("timings", {}), "counters": fit.get("counters", {}),
            "fit": fit}


def model_file(choice: str, config: Path, base: Path, workdir: Path) -> tuple[Path | None, str]:
    """The model file both runs use, and a sentence saying which model that is.

    ``choice`` "base": the baseline commit's library file of the config's model (the same
    model text on both sides, one the baseline can read, so that differences measure the
    code); "current": this checkout's library file (the baseline must be able to read it);
    "config": each run reads its own library (differences then include model changes).
    """
    name = re.search(r'(?m)^model\s*=\s*"([^"]+)"', config.read_text()).group(1)
    if choice == "config":
        return None, (f"each run its own library's `{name}` (model changes since the "
                      "baseline are in the differences)")
    root = base if choice == "base" else ROOT
    source = root / "progression" / "model" / "library" / f"{name}.toml"
    if not source.is_file():
        raise SystemExit(f"--model {choice}: no library file {source}")
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    target = workdir / f"{name}_{choice}_{commit}.toml"
    target.write_text(source.read_text())
    return target, (f"both runs the same model file: `{name}` as in the "
                    f"{'baseline' if choice == 'base' else 'current'} commit {commit} "
                    f"(copied to {target})")


def compare(base: dict, new: dict) -> dict:
    """Largest relative differences of estimates, SEs and objectives, subject by subject."""
    def rel(a, b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        both_nan = np.isnan(a) & np.isnan(b)
        with np.errstate(all="ignore"):
            r = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
        r = np.where(both_nan, 0.0, r)
        return np.where(np.isnan(r), np.inf, r)

    fb, fn = base["fit"], new["fit"]

    def names_of(fit):
        return [p["name"] if isinstance(p, dict) else str(p) for p in fit.get("parameters") or []]

    # columns by parameter name: a model that gained parameters since the baseline (e.g. a
    # hazard section) is compared on the parameters both runs have
    nb, nn = names_of(fb), names_of(fn)
    tb = np.asarray(fb["estimates"]["theta"], dtype=float)
    tn = np.asarray(fn["estimates"]["theta"], dtype=float)
    if nb and nn and (nb != nn or tb.shape != tn.shape):
        common = [q for q in nb if q in nn]
        jb = [nb.index(q) for q in common]
        jn = [nn.index(q) for q in common]
    else:
        common, jb, jn = nb, list(range(tb.shape[1])), list(range(tn.shape[1]))
    theta = rel(tn[:, jn], tb[:, jb])
    se_b = np.asarray(fb["estimates"]["se"], dtype=float)[:, jb]
    se_n = np.asarray(fn["estimates"]["se"], dtype=float)[:, jn]
    se_nan = np.isnan(se_b) != np.isnan(se_n)      # an SE in one run, none in the other
    se = np.where(se_nan, 0.0, rel(se_n, se_b))
    obj = rel(fn["subject_objective"], fb["subject_objective"])
    names = common
    per_param = {}
    for j in range(theta.shape[1]):
        if np.any(theta[:, j] > 0):
            per_param[names[j] if j < len(names) else str(j)] = float(theta[:, j].max())
    ob, on = np.asarray(fb["subject_objective"]), np.asarray(fn["subject_objective"])
    above = [{"subject": fb["subjects"][s], "parameter": names[int(np.argmax(theta[s]))],
              "relative_difference": float(theta[s].max()),
              "objective_difference": float(on[s] - ob[s])}
             for s in np.nonzero(theta.max(axis=1) > 1e-6)[0]]
    return {
        "above_1e-6": above,
        "subjects": int(theta.shape[0]),
        "max_rel_estimate": float(theta.max()),
        "subjects_estimate_above_1e-6": int(np.sum(theta.max(axis=1) > 1e-6)),
        "median_rel_estimate_of_free": float(np.median(theta[theta > 0])) if np.any(theta > 0)
        else 0.0,
        "max_rel_estimate_by_parameter": per_param,
        "max_rel_se": float(se.max()),
        "median_rel_se": float(np.median(se[np.isfinite(se_b) & np.isfinite(se_n)]))
        if np.any(np.isfinite(se_b) & np.isfinite(se_n)) else 0.0,
        "se_defined_in_one_run_only": int(se_nan.sum()),
        "max_rel_subject_objective": float(obj.max()),
        "subjects_objective_above_1e-6": int(np.sum(obj > 1e-6)),
        "objective": {"base": fb["objective"], "new": fn["objective"]},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("/tmp/base905"),
                        help="checkout of the baseline commit (git worktree add DIR COMMIT)")
    parser.add_argument("--config", type=Path,
                        default=ROOT / "configs" / "als_synthetic_individual.toml")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/progression_fit_speed"))
    parser.add_argument("--model", choices=("base", "current", "config"), default="base",
                        help="which model text both runs fit: the baseline commit's library "
                             "file of the config's model (default: the same model on both "
                             "sides, so differences measure the code), this checkout's, or "
                             "each run its own library's (differences then include model "
                             "changes)")
    parser.add_argument("--no-numpy-run", action="store_true",
                        help="skip the third run (this checkout with PROGRESSION_BACKEND=numpy, "
                             "which tells rounding in compiled code from other changes)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base_commit = subprocess.run(["git", "-C", str(args.base), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
    new_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    model, model_text = model_file(args.model, args.config.resolve(), args.base.resolve(),
                                   args.workdir)
    if model is not None:
        foreign = foreign_parameters(args.config.resolve().read_text(), model)
        if foreign:
            model_text += ("; the config's tables of parameters that model does not have left "
                           "out: " + ", ".join(f"`{name}`" for name in foreign))
    print(f"model: {model_text}")
    load_start = os.getloadavg()
    runs = {}
    plan = [("base", args.base.resolve(), None), ("new", ROOT, None)]
    if not args.no_numpy_run:
        plan.append(("new_numpy", ROOT, "numpy"))
    for label, root, backend in plan:
        cfg, out = config_copy(args.config.resolve(), args.workdir, label, model)
        runs[label] = run(root, cfg, out, backend)
        r = runs[label]
        print(f"{label:4s} ({root}): CPU {r['cpu_seconds']:7.2f} s, wall {r['wall_seconds']:7.2f}"
              f" s, estimation {r['timings'].get('estimation', float('nan')):7.2f} s",
              flush=True)
    load_end = os.getloadavg()
    diff = compare(runs["base"], runs["new"])
    diff_numpy = compare(runs["base"], runs["new_numpy"]) if "new_numpy" in runs else None
    speed_cpu = runs["base"]["cpu_seconds"] / runs["new"]["cpu_seconds"]
    speed_wall = runs["base"]["wall_seconds"] / runs["new"]["wall_seconds"]
    est_b = runs["base"]["timings"].get("estimation", np.nan)
    est_n = runs["new"]["timings"].get("estimation", np.nan)
    speed_est = est_b / est_n
    same = diff["max_rel_estimate"] <= 1e-6
    print(f"speed-up: CPU {speed_cpu:.2f}x, wall {speed_wall:.2f}x, estimation step "
          f"{speed_est:.2f}x (target 1.5x: {'met' if speed_cpu >= 1.5 else 'NOT met'})")
    print(f"estimates: max relative difference {diff['max_rel_estimate']:.1e} "
          f"({diff['subjects_estimate_above_1e-6']} of {diff['subjects']} subjects above 1e-6; "
          f"target 1e-6: {'met' if same else 'NOT met'}); SEs {diff['max_rel_se']:.1e} "
          f"({diff['se_defined_in_one_run_only']} in one run only); "
          f"subject objectives {diff['max_rel_subject_objective']:.1e}")

    record = {
        "benchmark": "fit_speed",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "config": str(args.config), "model": model_text, "base_commit": base_commit,
        "new_commit": new_commit,
        "load_average": {"start": load_start, "end": load_end},
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                    "cpu": platform.processor() or platform.machine()},
        "runs": {k: {key: v for key, v in r.items() if key != "fit"} for k, r in runs.items()},
        "speed_up": {"cpu": speed_cpu, "wall": speed_wall, "estimation": speed_est},
        "differences": diff,
        "differences_numpy_backend": diff_numpy,
        "targets": {"1.5x faster (CPU, end to end)": speed_cpu >= 1.5,
                    "estimates identical to 1e-6": same},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit_speed.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    b, n = runs["base"], runs["new"]
    worst = sorted(diff["max_rel_estimate_by_parameter"].items(), key=lambda kv: -kv[1])[:5]
    md = [
        "# fit_speed",
        "",
        f"The shipped per-subject fit (`{args.config.name}`: 200 patients, als_reduced, 5 free "
        f"parameters each, 3 starts, covariance step, figures) run end to end by "
        f"`progression fit` in a fresh process, baseline commit {base_commit} against "
        f"{new_commit}, one after the other in the same session. Measured {record['date']} "
        f"on {os.cpu_count()} shared cores (load average {load_start[0]:.2f} at the start, "
        f"{load_end[0]:.2f} at the end).",
        f"Command: `{record['command']}`.",
        "",
        f"Model: {model_text}.",
        "",
        "| code | CPU s (end to end) | wall s | estimation s (fit.json) | covariance s |",
        "|---|---:|---:|---:|---:|",
        f"| baseline {base_commit} | {b['cpu_seconds']:.1f} | {b['wall_seconds']:.1f} | "
        f"{b['timings'].get('estimation', float('nan')):.1f} | "
        f"{b['timings'].get('covariance', float('nan')):.2f} |",
        f"| {new_commit} | {n['cpu_seconds']:.1f} | {n['wall_seconds']:.1f} | "
        f"{n['timings'].get('estimation', float('nan')):.1f} | "
        f"{n['timings'].get('covariance', float('nan')):.2f} |",
        "",
        f"**Speed-up: {speed_cpu:.2f}x CPU end to end** ({speed_wall:.2f}x wall, "
        f"{speed_est:.2f}x on the estimation step); target 1.5x: "
        f"{'met' if speed_cpu >= 1.5 else 'NOT met'}.",
        "",
        f"Estimates: largest relative difference of any subject's parameter "
        f"{diff['max_rel_estimate']:.1e} ({diff['subjects_estimate_above_1e-6']} of "
        f"{diff['subjects']} subjects above 1e-6; target identical to 1e-6: "
        f"{'met' if same else 'NOT met'}); largest per parameter: "
        + ", ".join(f"{k} {v:.1e}" for k, v in worst)
        + f". Standard errors (where both runs have one): largest relative difference "
        f"{diff['max_rel_se']:.1e}, median {diff['median_rel_se']:.1e}; "
        f"{diff['se_defined_in_one_run_only']} defined in one run only (near-singular "
        "information); subject objectives "
        f"{diff['max_rel_subject_objective']:.1e} ({diff['subjects_objective_above_1e-6']} "
        f"above 1e-6); total objective {diff['objective']['base']:.6f} (baseline) vs "
        f"{diff['objective']['new']:.6f}.",
        "",
    ]
    if diff["above_1e-6"]:
        md += ["Subjects whose estimates moved by more than 1e-6 (relative) and their "
               "objective change:", ""]
        md += [f"- {a['subject']}: {a['parameter']} {a['relative_difference']:.1e}, "
               f"-2 log L {a['objective_difference']:+.1e}" for a in diff["above_1e-6"]]
        md.append("")
    if diff_numpy is not None:
        r = runs["new_numpy"]
        md += [f"Same checkout with `PROGRESSION_BACKEND=numpy` (no compiled code): CPU "
               f"{r['cpu_seconds']:.1f} s ({b['cpu_seconds'] / r['cpu_seconds']:.2f}x the "
               f"baseline); estimates against the baseline: largest relative difference "
               f"{diff_numpy['max_rel_estimate']:.1e} "
               f"({diff_numpy['subjects_estimate_above_1e-6']} subjects above 1e-6), "
               f"subject objectives {diff_numpy['max_rel_subject_objective']:.1e}.", ""]
    (RESULTS / "fit_speed.md").write_text("\n".join(md))
    print(f"wrote {RESULTS / 'fit_speed.json'} and .md")


if __name__ == "__main__":
    main()
