"""The one-way layering of the package, as an import contract checked on every module.

Every module under ``progression/`` is parsed (``ast``; nothing is imported) and each of its
imports of ``progression`` is resolved to a module -- relative imports included, and names
taken from the package root resolved through its lazy table ``_LAZY`` -- then checked
against the layers below. Imports inside functions (deferred) obey the same rules as imports
at module level: a lower layer never imports a higher one, not even lazily.

Layers (a module may import its own layer and those listed for it)::

    base      errors, options, _io, parallel, _omp (thread       -> base only
              rules), the package root
    stats     small statistics helpers (leaf)                    -> base
    plots     every figure (leaf): figure functions take any     -> base, stats
              object with the right attributes, so plots never
              imports fit, virtual or als, at import time or later
    data      Cohort, readers, validation (data only)            -> base, leaves
    model     ModelSpec, expressions, compiled models            -> base, leaves, and
                                                                    data._units (unit table)
    simulate  integrators, doses, switches (``simulate.py`` or   -> base, leaves, model, data
              the ``simulate/`` package; dosing, _gridsens (+ _gridsens_numba),
              _rodas)
    fit       likelihood, estimators, FitResult, reports         -> base, leaves, data, model,
                                                                    simulate
    virtual   populations, interventions, scenarios, trials,     -> everything below
              generic steps of synthetic cohorts
    als       ALS content (drug library, targets, presets, the   -> everything below
              ALS synthetic-cohort generator)
    cli       cli, _cli_*, _compare_config                       -> everything

So: model < simulate < fit < virtual < als < cli, with data beside model (data imports
neither model nor anything above it; model uses only data's unit table), and stats and plots
leaves that anything may use. Old module paths kept after the re-layout (``progression.
scenarios``, ``trials``, ``interventions``, ``_survival``, ``_mpl``, ``data.synthetic``,
``dosing``, ``virtual.synthetic``) are aliases: each may import only the module it stands
for, wherever it sits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "progression"

#: Top-level component of a module name -> layer.
LAYER_OF = {
    "<root>": "base", "errors": "base", "options": "base", "_io": "base", "parallel": "base",
    "_omp": "base", "_repr": "base",
    "stats": "stats",
    "plots": "plots",
    "data": "data",
    "model": "model",
    "simulate": "simulate", "dosing": "simulate", "_gridsens": "simulate",
    "_gridsens_numba": "simulate", "_rodas": "simulate",
    "fit": "fit",
    "virtual": "virtual",
    "als": "als",
    "cli": "cli", "_cli_fit": "cli", "_cli_compare": "cli", "_cli_cohort": "cli",
    "_cli_profile": "cli", "_cli_design": "cli", "_compare_config": "cli", "_cli_calibrate": "cli",
    "_figure_process": "cli",
}

_BELOW_FIT = {"base", "stats", "plots", "data", "model", "simulate"}
#: Layer -> layers its modules may import (besides their own).
MAY_IMPORT = {
    "base": set(),
    "stats": {"base"},
    "plots": {"base", "stats"},
    "data": {"base", "stats", "plots"},
    "model": {"base", "stats", "plots"},
    "simulate": {"base", "stats", "plots", "model", "data"},
    "fit": _BELOW_FIT,
    "virtual": _BELOW_FIT | {"fit"},
    "als": _BELOW_FIT | {"fit", "virtual"},
    "cli": _BELOW_FIT | {"fit", "virtual", "als"},
}

#: Single modules a layer may use although their layer is out of bounds, with the reason.
EXCEPTIONS = {
    ("model", "progression.data._units"): "the table of time units, shared by model files "
                                          "and data readers",
}

#: Old module paths kept as aliases of moved modules -> the module(s) each may import.
ALIASES = {
    "progression.scenarios": None,            # re-exports several virtual modules, see below
    "progression.trials": "progression.virtual.trials",
    "progression.interventions": ("progression.virtual.interventions",
                                  "progression.als.library"),
    "progression._survival": "progression.stats.survival",
    "progression._mpl": "progression.plots._mpl",
    "progression.data.synthetic": "progression.als.synthetic",
    "progression.virtual.synthetic": "progression.als.synthetic",
    "progression.dosing": "progression.simulate._dosing",
    "progression.data.describe": "progression.als.describe",
}
#: ``progression.scenarios`` re-exports compare and its parts from these.
_SCENARIO_PARTS = ("progression.virtual", "progression.plots.scenarios",
                   "progression.als.defaults")


# ------------------------------------------------------------------------------- parsing


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def lazy_table(package: Path = PACKAGE) -> dict[str, str]:
    """Name -> absolute module from the root package's ``_LAZY`` table (parsed, not run)."""
    tree = ast.parse((package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY"
                                                for t in node.targets):
            table = ast.literal_eval(node.value)
            return {name: package.name + module for module, names in table.items()
                    for name in names}
    return {}


def imports_of(path: Path, package: Path = PACKAGE, modules: set | None = None,
               lazy: dict | None = None) -> list[tuple[str, int, bool]]:
    """``(target module, line, deferred)`` for every import of the package in ``path``.

    ``from X import name`` targets ``X.name`` when that is a module of the package (a
    submodule import), else ``X``; names imported from the package root go through ``lazy``.
    """
    name = module_name(path, package)
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    root = package.name
    modules = modules or set()
    lazy = lazy or {}
    found = []

    def visit(node, deferred):
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                           | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        found.append((alias.name, child.lineno, inner))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = here[: len(here) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == root or target.startswith(root + "."):
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        if sub in modules:
                            found.append((sub, child.lineno, inner))
                        elif target == root and alias.name in lazy:
                            found.append((lazy[alias.name], child.lineno, inner))
                        else:
                            found.append((target, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def module_graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int, bool]]]:
    """Every module of the package -> its imports of the package."""
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, package) for p in files}
    lazy = lazy_table(package)
    return {module_name(p, package): imports_of(p, package, modules, lazy) for p in files}


# ------------------------------------------------------------------------------- checking


def layer(module: str) -> str | None:
    parts = module.split(".")
    return LAYER_OF.get(parts[1] if len(parts) > 1 else "<root>")


def violations(graph: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    """Every import that breaks the contract, as ``module:line -> target (why)``."""
    out = []
    for module, targets in sorted(graph.items()):
        if module in ALIASES:
            allowed = ALIASES[module]
            for target, line, _ in targets:
                if allowed is None:
                    ok = any(target == p or target.startswith(p + ".") for p in _SCENARIO_PARTS)
                else:
                    ok = target in ((allowed,) if isinstance(allowed, str) else allowed)
                if not ok:
                    out.append(f"{module}:{line} -> {target} (an alias may import only the "
                               f"module it stands for)")
            continue
        own = layer(module)
        if own is None:
            out.append(f"{module}: not assigned to a layer (add it to LAYER_OF)")
            continue
        for named, line, deferred in targets:
            # an import of an alias is an import of what it stands for
            stands_for = ALIASES.get(named, named) or _SCENARIO_PARTS
            for target in (stands_for,) if isinstance(stands_for, str) else stands_for:
                other = layer(target)
                if other is None or other == own or other in MAY_IMPORT[own]:
                    continue
                if (own, target) in EXCEPTIONS:
                    continue
                when = "inside a function" if deferred else "at import time"
                out.append(f"{module}:{line} -> {named} ({own} may not import {other}, "
                           f"{when})")
    return out


# ---------------------------------------------------------------------------------- tests


def test_the_package_keeps_the_layering():
    graph = module_graph()
    assert len(graph) > 50            # the parser found the package
    problems = violations(graph)
    assert not problems, "import contract broken:\n" + "\n".join(problems)


def test_every_layer_is_present():
    present = {layer(m) for m in module_graph()}
    assert set(MAY_IMPORT) <= present | {"als"}, set(MAY_IMPORT) - present


def test_the_checker_catches_forbidden_imports():
    """A synthetic module graph: one allowed import of each kind, then one forbidden import
    per rule, each reported with its line."""
    good = {
        "progression.model.spec": [("progression.errors", 1, False),
                                   ("progression.data._units", 2, False)],
        "progression.simulate._api": [("progression.model", 3, False)],
        "progression.simulate": [("progression.options", 4, False)],     # simulate.py as well
        "progression.fit.problem": [("progression.simulate", 5, True)],
        "progression.virtual.trials": [("progression.fit", 6, False),
                                       ("progression.plots", 7, True)],
        "progression.als.library": [("progression.virtual.interventions", 8, False)],
        "progression.cli": [("progression.als", 9, True)],
        "progression.plots.scenarios": [("progression.stats", 10, False)],
        "progression.data.readers": [("progression.stats.survival", 11, False)],
        "progression.trials": [("progression.virtual.trials", 12, False)],
    }
    assert violations(good) == []
    bad = {
        "progression.simulate._api": [("progression.fit.problem", 20, True)],
        "progression.simulate": [("progression.virtual", 21, False)],
        "progression.model.spec": [("progression.simulate", 22, False)],
        "progression.model.other": [("progression.data.cohort", 23, False)],
        "progression.data.readers": [("progression.model", 24, True)],
        "progression.fit.result": [("progression.virtual.scenarios", 25, False)],
        "progression.virtual.population": [("progression.als", 26, True)],
        "progression.plots.fits": [("progression.fit", 27, True)],
        "progression.stats.survival": [("progression.plots", 28, False)],
        "progression.errors": [("progression.model", 29, False)],
        "progression.data.synthetic": [("progression.simulate", 30, False)],
        "progression.newthing": [],
        "progression.fit.estimate": [("progression.interventions", 31, True)],
    }
    got = violations(bad)
    # one report per forbidden import; the alias stands for two modules, both above fit
    assert len(got) == len(bad) + 1, "\n".join(got)
    for module, targets in bad.items():
        line = f":{targets[0][1]} " if targets else ":"
        assert any(p.startswith(module + line) for p in got), (module, got)


def test_the_parser_resolves_relative_lazy_and_submodule_imports(tmp_path):
    """Files on disk in a fake package: relative imports at two levels, a submodule imported
    by ``from X import sub``, a name from the root resolved through ``_LAZY``, deferred
    imports flagged -- and a forbidden one reported."""
    pkg = tmp_path / "progression"
    (pkg / "model").mkdir(parents=True)
    (pkg / "fit").mkdir()
    (pkg / "__init__.py").write_text('_LAZY = {".fit": ("fit", "FitResult")}\n')
    (pkg / "errors.py").write_text("")
    (pkg / "fit" / "__init__.py").write_text("")
    (pkg / "fit" / "result.py").write_text("")
    (pkg / "model" / "__init__.py").write_text("from ..errors import ModelError\n")
    (pkg / "model" / "spec.py").write_text(
        "from . import __name__ as _n\n"
        "from ..fit import result\n"
        "def later():\n"
        "    from progression import FitResult\n")
    graph = module_graph(pkg)
    assert graph["progression.model"] == [("progression.errors", 1, False)]
    assert graph["progression.model.spec"] == [
        ("progression.model", 1, False), ("progression.fit.result", 2, False),
        ("progression.fit", 4, True)]
    got = violations(graph)
    assert got == [
        "progression.model.spec:2 -> progression.fit.result (model may not import fit, at "
        "import time)",
        "progression.model.spec:4 -> progression.fit (model may not import fit, inside a "
        "function)"]


@pytest.mark.parametrize("layout", ["module", "package"])
def test_simulate_as_a_module_or_a_package(tmp_path, layout):
    pkg = tmp_path / "progression"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fit").mkdir()
    (pkg / "fit" / "__init__.py").write_text("")
    body = "from .fit import x\n" if layout == "module" else "from ..fit import x\n"
    if layout == "module":
        (pkg / "simulate.py").write_text(body)
        name = "progression.simulate"
    else:
        (pkg / "simulate").mkdir()
        (pkg / "simulate" / "__init__.py").write_text("")
        (pkg / "simulate" / "_api.py").write_text(body)
        name = "progression.simulate._api"
    got = violations(module_graph(pkg))
    assert got == [f"{name}:1 -> progression.fit (simulate may not import fit, at import "
                   "time)"]


def test_disease_content_is_looked_up_by_name_not_imported():
    """The virtual layer reaches ALS defaults only through the providers named in
    ``progression.virtual.content.PROVIDERS`` (imported by name at run time); each names a
    module of a content package above it, and no virtual module imports one statically.

    An old path under ``virtual/`` kept as an alias of a module that moved to ``als``
    (``progression.virtual.synthetic``) is not a virtual module: it is the module it stands
    for, may import only that (``ALIASES``), and a virtual module importing it imports ``als``
    (``violations`` reports it, as checked below)."""
    from progression.virtual import content

    assert content.PROVIDERS
    for name in content.PROVIDERS:
        assert layer(name) == "als", name
    graph = module_graph()
    for module, targets in graph.items():
        if layer(module) == "virtual" and module not in ALIASES:
            assert not [t for t, _, _ in targets if layer(t) == "als"], module
    moved_up = [a for a, target in ALIASES.items()
                if layer(a) == "virtual" and isinstance(target, str) and layer(target) == "als"]
    for alias in moved_up:
        got = violations({"progression.virtual.scenarios": [(alias, 1, True)]})
        assert got == [f"progression.virtual.scenarios:1 -> {alias} (virtual may not import "
                       f"als, inside a function)"], got
