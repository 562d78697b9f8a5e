"""The import graph of ``src/sojourn`` against the layers and rules of docs/architecture.md.

Every module is parsed with ``ast`` (nothing is imported): imports at module level, in
functions and under ``TYPE_CHECKING`` all count, and so does ``importlib.import_module``
with a literal name. Each subpackage (``sojourn.sim``, ...) and each top-level module
(``sojourn.stats``, ...) is one node. Checked: no cycle between nodes, no import from a
higher layer, third-party packages only from their lowest layer up, nothing but the CLI
imports ``sojourn._cli``, every module declares ``__all__`` and another package imports
only what it declares.

A rule that is broken today is listed in ``KNOWN`` with why and what fixes it: the
ordinary tests skip exactly those imports, and one strict xfail test per entry fails as
soon as the import is gone, so that the entry is deleted and the rule holds from then on.

The last test imports every module in a fresh interpreter and checks that importing
changed no process-wide state (Optuna's verbosity, matplotlib's backend, the warnings
filters, logging, numpy's error handling).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sojourn"

#: The layers, lowest first; a node may import its own layer and the layers below it.
#: A new subpackage or top-level module goes in one (and in docs/architecture.md).
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("base", frozenset({"sojourn", "sojourn._errors", "sojourn._io", "sojourn._progress", "sojourn._interrupt",
                       "sojourn.result", "sojourn._cache", "sojourn._numba"})),
    ("maths", frozenset({"sojourn.distributions", "sojourn.disciplines", "sojourn.stats", "sojourn.steady",
                        "sojourn.analytic"})),
    ("catalogue", frozenset({"sojourn.catalogue"})),
    ("perf", frozenset({"sojourn.perf"})),
    ("scenario", frozenset({"sojourn.scenario", "sojourn.whatif"})),
    ("sim", frozenset({"sojourn.sim"})),
    ("fast", frozenset({"sojourn.fast"})),
    ("request", frozenset({"sojourn.request"})),
    ("evaluate", frozenset({"sojourn.evaluate"})),
    ("study", frozenset({"sojourn.study"})),
    ("cli", frozenset({"sojourn._cli", "sojourn.cli"})),
]

#: Third-party packages kept above the simulation core: the lowest layer that may import each.
THIRD_PARTY_FLOOR = {
    "optuna": "study",
    "sqlalchemy": "study",
    "matplotlib": "study",
    "plotly": "study",  # the report's interactive plot
    "joblib": "evaluate",  # replications in parallel are the caller's business, not the simulator's
}

#: Imports that break a rule today: (importer node, imported node or package) -> why, and the fix.
KNOWN: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, e.g. "sojourn.sim.fleet"
    target: str  # the imported module (or, for `from m import name`, m.name when that is a module)
    names: tuple[str, ...]  # for `from m import a, b`: ("a", "b"); else ()
    line: int
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{self.importer} line {self.line}{' (in a function)' if self.lazy else ''}: {self.target}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules(src: Path = SRC) -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        out[module_name(path, src)] = (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return out


def _walk(node: ast.AST, lazy: bool = False):
    """(node, inside a function) for every node under ``node``."""
    for child in ast.iter_child_nodes(node):
        inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield child, inner
        yield from _walk(child, inner)


def imports_of(mod: str, path: Path, tree: ast.Module, known_modules: set[str]) -> list[Import]:
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node, lazy in _walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(mod, a.name, (), node.lineno, lazy) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(a.name for a in node.names)
            subs = [n for n in names if f"{target}.{n}" in known_modules]
            out += [Import(mod, f"{target}.{n}", (), node.lineno, lazy) for n in subs]
            rest = tuple(n for n in names if n not in subs)
            if rest or not subs:
                out.append(Import(mod, target, rest, node.lineno, lazy))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            out.append(Import(mod, node.args[0].value, (), node.lineno, lazy))
    return out


def all_imports(src: Path = SRC) -> list[Import]:
    mods = modules(src)
    return [imp for mod, (path, tree) in mods.items() for imp in imports_of(mod, path, tree, set(mods))]


def node_of(name: str) -> str:
    """The graph node of a module: its subpackage, or itself for a top-level module; a third-party
    module's top-level package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return parts[0]
    return ".".join(parts[:2])


def layer_of(node: str) -> int | None:
    for i, (_, members) in enumerate(LAYERS):
        if node in members:
            return i
    return None


def layer_index(name: str) -> int:
    return [n for n, _ in LAYERS].index(name)


def package_edges(imports: list[Import], skip_known: bool = True) -> dict[tuple[str, str], list[Import]]:
    """(importer node, imported node) -> the imports behind the edge, between sojourn's nodes."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        a, b = node_of(imp.importer), node_of(imp.target)
        if not imp.target.startswith(PACKAGE) or a == b or (skip_known and (a, b) in KNOWN):
            continue
        edges[a, b].append(imp)
    return edges


def find_cycle(edges) -> list[str] | None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def upward_imports(imports: list[Import], skip_known: bool = True) -> list[str]:
    bad = []
    for (a, b), imps in sorted(package_edges(imports, skip_known).items()):
        la, lb = layer_of(a), layer_of(b)
        if la is not None and lb is not None and lb > la:
            bad += [f"{i.where()} (layer {LAYERS[la][0]} imports layer {LAYERS[lb][0]})" for i in imps]
    return bad


def third_party_breaches(imports: list[Import], skip_known: bool = True) -> list[str]:
    bad = []
    for imp in imports:
        a, pkg = node_of(imp.importer), node_of(imp.target)
        if pkg not in THIRD_PARTY_FLOOR or (skip_known and (a, pkg) in KNOWN):
            continue
        la = layer_of(a)
        if la is not None and la < layer_index(THIRD_PARTY_FLOOR[pkg]):
            bad.append(f"{imp.where()} (allowed from layer {THIRD_PARTY_FLOOR[pkg]} up; {a} is in {LAYERS[la][0]})")
    return bad


def declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and target.id == "__all__" and node.value is not None:
            return list(ast.literal_eval(node.value))
    return None


def bound_names(tree: ast.Module) -> set[str]:
    """Names bound at a module's top level (in ``if``, ``try`` and ``with`` blocks too, not in classes or functions)."""
    out: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo += getattr(node, field, [])
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
        else:
            out |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return out


# --- the graph -------------------------------------------------------------------------------------


def test_every_node_has_a_layer():
    nodes = {node_of(m) for m in modules()}
    missing = sorted(n for n in nodes if layer_of(n) is None)
    assert not missing, f"put {missing} in a layer of LAYERS here and in docs/architecture.md"


def test_no_cycle_between_packages():
    cycle = find_cycle(package_edges(all_imports()))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_no_import_from_a_higher_layer():
    bad = upward_imports(all_imports())
    assert not bad, "upward imports (docs/architecture.md):\n" + "\n".join(bad)


def test_third_party_packages_stay_above_the_simulation_core():
    bad = third_party_breaches(all_imports())
    assert not bad, "\n".join(bad)


def test_only_the_cli_imports_the_cli_modules():
    bad = [i.where() for i in all_imports()
           if node_of(i.target) == "sojourn._cli" and node_of(i.importer) not in ("sojourn._cli", "sojourn.cli")]
    assert not bad, "sojourn._cli is the CLI's own: " + "; ".join(bad)


@pytest.mark.parametrize("edge", [
    pytest.param(edge, id=f"{edge[0]}->{edge[1]}", marks=pytest.mark.xfail(strict=True, reason=why))
    for edge, why in KNOWN.items()
])
def test_known_violation_is_gone(edge):
    """One per KNOWN entry: passes (so fails, strict) once the import is gone; then delete the entry."""
    imports = all_imports()
    found = [i.where() for i in imports if (node_of(i.importer), node_of(i.target)) == edge]
    assert not found, "still there: " + "; ".join(found)


def test_no_cycle_at_all():
    """The issue's 'done when': no cycle even counting the KNOWN imports."""
    cycle = find_cycle(package_edges(all_imports(), skip_known=False))
    assert cycle is None, " -> ".join(cycle)


# --- public names ----------------------------------------------------------------------------------


def test_every_module_declares_all_and_binds_it():
    bad = []
    for mod, (_path, tree) in modules().items():
        names = declared_all(tree)
        if names is None:
            bad.append(f"{mod}: no literal __all__")
            continue
        unbound = sorted(set(names) - bound_names(tree))
        if unbound:
            bad.append(f"{mod}: __all__ names {unbound}, not defined there")
        if len(set(names)) != len(names):
            bad.append(f"{mod}: __all__ repeats a name")
    assert not bad, "\n".join(bad)


def test_other_packages_import_only_declared_names():
    mods = modules()
    bad = []
    for imp in all_imports():
        if not imp.names or imp.target not in mods or node_of(imp.importer) == node_of(imp.target):
            continue
        if (node_of(imp.importer), node_of(imp.target)) in KNOWN:
            continue
        public = set(declared_all(mods[imp.target][1]) or ())
        hidden = [n for n in imp.names if n not in public and n != "*"]
        if hidden:
            bad.append(f"{imp.where()} imports {hidden}: not in its __all__ (add them, or keep them private)")
    assert not bad, "\n".join(bad)


# --- import side effects ---------------------------------------------------------------------------

_PROBE = r"""
import importlib, json, logging, sys, warnings
src, third_party, ours = json.loads(sys.argv[1])
sys.path.insert(0, src)  # the tree the test parsed
for name in third_party:  # their own import-time effects are not ours
    try:
        importlib.import_module(name)
    except ImportError:
        pass
import numpy as np

def state():
    out = {"warnings": [repr(f) for f in warnings.filters], "numpy_err": np.geterr(),
           "root_logger": [logging.root.level, [repr(h) for h in logging.root.handlers]]}
    try:
        import optuna
        out["optuna_verbosity"] = optuna.logging.get_verbosity()
    except ImportError:
        pass
    if "matplotlib" in sys.modules:  # the backend as set, without resolving it
        out["matplotlib_backend"] = str(dict.__getitem__(sys.modules["matplotlib"].rcParams, "backend"))
    out["loggers"] = {k: [v.level, len(v.handlers), v.propagate] for k, v in sorted(logging.root.manager.loggerDict.items())
                      if isinstance(v, logging.Logger) and (v.level or v.handlers or not v.propagate)}
    return out

before = state()
for name in ours:
    importlib.import_module(name)
after = state()
print(json.dumps({"before": before, "after": after}))
"""


def test_importing_every_module_changes_no_process_state():
    mods = modules()
    third_party = sorted({
        name
        for imp in all_imports() if not imp.lazy and not imp.target.startswith(PACKAGE) and imp.target != "__future__"
        for name in [imp.target] + [f"{imp.target}.{n}" for n in imp.names]
    } | {"matplotlib"})
    probe = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([str(SRC), third_party, sorted(mods)])],
                           capture_output=True, text=True, timeout=300, cwd=SRC.parent)
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    before, after = got["before"], got["after"]
    assert "optuna_verbosity" in before
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"importing sojourn changed process state: {changed}"


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from sojourn.study.plot import plot_hardware

    before = dict.__getitem__(matplotlib.rcParams, "backend")
    rows = [{"gpu": "h100-sxm", "nodes": 2, "tp": 1, "rent_usd_per_hour": 9.0, "own_usd_per_hour": 6.0}]
    assert plot_hardware(rows, tmp_path / "hw.png", 0.01).read_bytes()[:4] == b"\x89PNG"
    assert dict.__getitem__(matplotlib.rcParams, "backend") == before


#: The longest a function may be (lines from ``def`` to its last line, docstring included).
MAX_FUNCTION_LINES = 80
#: Functions allowed to be longer, and why: "<file under src/sojourn>: <qualified name>".
LONG_FUNCTIONS = {
    "fast/_priority_kernel.py: _kernel": "the numba kernel: one loop the JIT compiles whole",
    "fast/fluid.py: priority_runs_reference": "the kernel's plain-Python reference, kept line for line beside it",
    "sim/engine.py: Engine.fire": "the engine's hot loop, ~85 lines: both phases of a plan applied on locals; "
                                  "each further call per step costs ~1% of benchmarks/sim_speed.py",
}
#: Long functions allowed only until they are split (remove each entry as it is: a stale one fails).
BEING_SPLIT: dict[str, str] = {}


def function_lengths(src: Path = SRC) -> dict[str, int]:
    """Every function's and method's length in lines, by "<file>: <qualified name>" (the longest of a name)."""
    out: dict[str, int] = {}
    root = src / PACKAGE

    def visit(node: ast.AST, where: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    key = f"{where}: {qual}"
                    out[key] = max(out.get(key, 0), child.end_lineno - child.lineno + 1)
                visit(child, where, qual + ".")
            else:
                visit(child, where, prefix)

    for path, tree in modules(src).values():
        visit(tree, path.relative_to(root).as_posix(), "")
    return out


def test_no_function_is_longer_than_80_lines():
    lengths = function_lengths()
    allowed = LONG_FUNCTIONS | BEING_SPLIT
    too_long = sorted(f"{k} ({n} lines)" for k, n in lengths.items() if n > MAX_FUNCTION_LINES and k not in allowed)
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {too_long}"
    stale = sorted(f"{k} ({lengths.get(k, 'gone')})" for k in allowed if lengths.get(k, 0) <= MAX_FUNCTION_LINES)
    assert not stale, f"allowed to be long but no longer over {MAX_FUNCTION_LINES} lines (remove them): {stale}"


def test_loading_a_study_leaves_optunas_verbosity_to_the_caller(tmp_path):
    """Only the CLI quiets Optuna's per-trial lines, for its own process; a notebook keeps its setting."""
    import optuna

    from _recovery import slow_study
    from sojourn.study import StudyRunner, load_study

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        path = slow_study(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "verbosity")
        StudyRunner(load_study(path)).load(create=True)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def test_the_cli_offers_exactly_the_schemas_fidelities():
    """`simulate --fidelity` offers the one list of tiers (``result.FIDELITIES``, which the schema re-exports)."""
    import argparse

    from sojourn.cli import build_parser
    from sojourn.scenario import FIDELITIES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fidelity = next(a for a in sub.choices["simulate"]._actions if "--fidelity" in a.option_strings)
    assert list(fidelity.choices) == list(FIDELITIES)
