"""Laplace's exact gradient on the joint ALS fit: the two routes to its third derivatives.

The Laplace objective's gradient needs ``tr(M^-1 d3f/deta2 dphi)``. Before 2026-12-03 a
model with ``predict_hessian`` (every :class:`~progression.fit.population.ProblemModel`) had
it by central differences of its second derivatives (``2 D`` calls of ``predict_hessian``,
each itself ``2 D`` perturbed solves of every row); now by second differences of G along the
eigenvectors of ``M^-1`` (``2 E`` predictions), unless the model says its second derivatives
are exact (``exact_hessian``). Both are timed in the same run on the shipped joint ALS fit's
data and estimates (200 patients, 7 parameters, 5 random effects, [survival] as residual rows,
CRP with its t(3) residual), the conditional modes solved once and shared; the script prints
both times, their ratio and the largest relative difference of the two gradients, and appends
a row to ``benchmarks/results/laplace_gradient.md``.

    python benchmarks/laplace_gradient.py [--fit fits/als_synthetic_joint] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from progression.fit import load_fit
from progression.fit.population import Residual, conditional_modes
from progression.fit.population._adapter import ProblemModel
from progression.fit.population._gradient import population_gradient
from progression.fit.population._outputs import _layout, _model

HERE = Path(__file__).resolve().parent


class _ExactHessian(ProblemModel):
    """The same model marked as having exact second derivatives: the previous route."""

    exact_hessian = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default=str(HERE.parent / "fits" / "als_synthetic_joint"))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    res = load_fit(args.fit)
    _, mu, cols, residual = _model(res)
    pop_cols = _layout(res)[0]
    models = {name: cls(res.problem, res.designs, pop_cols, survival_residuals=True)
              for name, cls in (("eigenvector differences of G (now)", ProblemModel),
                                ("differences of second derivatives (before)",
                                 _ExactHessian))}
    model = next(iter(models.values()))
    data = model.data()
    extra = res.problem.survival is not None
    joint = Residual(residual.a + ((1.0,) if extra else ()),
                     residual.b + ((0.0,) if extra else ()),
                     residual.df + ((np.inf,) if extra else ()))
    omega = np.asarray(res.population.omega, dtype=float)
    t = time.perf_counter()
    inner = conditional_modes(model, data, mu, omega, joint, eta_columns=cols,
                              eta0=np.asarray(res.population.ebes, dtype=float))
    t_inner = time.perf_counter() - t
    times, grads = {}, {}
    for name, m in models.items():
        best = np.inf
        for _ in range(args.repeats):
            t = time.perf_counter()
            gr = population_gradient("laplace", m, data, mu, omega, joint, eta_columns=cols,
                                     inner=inner)
            best = min(best, time.perf_counter() - t)
        times[name] = best
        grads[name] = np.concatenate([gr.d_mu.sum(axis=0), gr.d_omega.ravel(), gr.d_a,
                                      gr.d_b])
    (new, t_new), (old, t_old) = times.items()
    g_new, g_old = grads[new], grads[old]
    scale = np.maximum(np.abs(g_old), 1e-3 * np.abs(g_old).max())
    diff = float(np.max(np.abs(g_new - g_old) / scale))
    print(f"{len(res.designs)} subjects, {len(pop_cols)} parameters, {len(cols)} random "
          f"effects; conditional modes {t_inner:.1f} s (shared)")
    print(f"  {old}: {t_old:.1f} s")
    print(f"  {new}: {t_new:.1f} s")
    print(f"  ratio {t_old / t_new:.1f}x; largest relative difference of the gradients "
          f"{diff:.2e}")
    out = HERE / "results" / "laplace_gradient.md"
    if not out.exists():
        out.write_text("# Laplace gradient: third derivatives, two routes\n\n"
                       "`python benchmarks/laplace_gradient.py` (same run, same modes)\n\n"
                       "| date (UTC) | fit | subjects | before (s) | now (s) | ratio | "
                       "largest rel. difference |\n|---|---|---:|---:|---:|---:|---:|\n")
    with out.open("a") as fh:
        fh.write(f"| {datetime.now(UTC):%Y-%m-%d %H:%M} | {Path(args.fit).name} | "
                 f"{len(res.designs)} | {t_old:.1f} | {t_new:.1f} | {t_old / t_new:.1f} | "
                 f"{diff:.2e} |\n")
    print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
