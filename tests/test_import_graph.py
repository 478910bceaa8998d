"""The package's import graph, read from the source (AST), not by importing anything.

Every ``import``/``from ... import`` of a ``t2ibench`` module counts, at module level and inside
functions alike: a lazy import delays *when* a dependency is loaded, not *whether* the module
depends on it, so a cycle closed by a function-level import is still a cycle between layers.
``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else at ``pkg``.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "t2ibench"
# The core must not know the toy world: it is a profile above the core, registered through the
# same doors a third party uses.
CORE = ("t2ibench.pipeline", "t2ibench.analysis", "t2ibench.encoders", "t2ibench.metrics")
CORE_MODULES = ("t2ibench.results",)
TOY = "t2ibench.toy"


def _module_files() -> dict[str, Path]:
    """Module name -> file, walking the package as the interpreter sees it from a checkout."""
    out: dict[str, Path] = {}
    for folder, dirs, files in os.walk(ROOT / PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d.isidentifier())
        rel = Path(folder).relative_to(ROOT)
        if not (Path(folder) / "__init__.py").is_file():
            dirs[:] = []
            continue
        for name in files:
            if name.endswith(".py") and name[:-3].isidentifier():
                parts = rel.parts if name == "__init__.py" else (*rel.parts, name[:-3])
                out[".".join(parts)] = Path(folder) / name
    return out


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str) -> Iterator[tuple[str, int, bool]]:
    """``(target module, line, at module level)`` for each t2ibench import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name)
                    if target:
                        yield target, child.lineno, top
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    target = _resolve(f"{base}.{alias.name}")  # else the prefix: base
                    if target:
                        yield target, child.lineno, top
            inner = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            yield from visit(child, inner)

    yield from visit(tree, True)


def _graph() -> dict[str, dict[str, tuple[int, bool]]]:
    graph: dict[str, dict[str, tuple[int, bool]]] = {m: {} for m in MODULES}
    for module in MODULES:
        for target, line, top in _imports(module):
            if target != module:
                graph[module].setdefault(target, (line, top))
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, dict[str, tuple[int, bool]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _describe(component: list[str]) -> str:
    members = set(component)
    edges = [
        f"{a} -> {b} (line {line}{'' if top else ', in a function'})"
        for a in component
        for b, (line, top) in sorted(GRAPH[a].items())
        if b in members
    ]
    return "cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(edges)


def test_the_walk_sees_the_whole_package():
    # Guards the test itself: an empty or partial walk would pass everything below.
    for name in (
        "t2ibench",
        "t2ibench.cli",
        "t2ibench.pipeline.run",
        "t2ibench.encoders.vgg",
        "t2ibench.models.loading",
        "t2ibench.toy.world",
        "t2ibench.adapters.training",
    ):
        assert name in MODULES, name
    assert "t2ibench.pipeline.run" in GRAPH["t2ibench.cli.run"] or any(
        t.startswith("t2ibench.pipeline") for t in GRAPH["t2ibench.cli.run"]
    )


def test_find_cycles_reports_a_cycle_closed_by_a_lazy_import():
    fake = {"a": {"b": (1, True)}, "b": {"c": (3, True)}, "c": {"a": (9, False)}, "d": {}}
    assert _cycles(fake) == [["a", "b", "c"]]


def test_core_does_not_import_toy():
    core = [m for m in MODULES if m.startswith(tuple(f"{p}." for p in CORE)) or m in CORE]
    core += [m for m in CORE_MODULES if m in MODULES]
    bad = [
        f"{m} -> {t} (line {line})"
        for m in sorted(core)
        for t, (line, _) in sorted(GRAPH[m].items())
        if t == TOY or t.startswith(TOY + ".")
    ]
    assert not bad, "the core imports the toy world:\n  " + "\n  ".join(bad)


def test_no_module_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(_describe(c) for c in cycles)


def _unit(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: ``t2ibench.pipeline.run`` ->
    ``pipeline``; the package's own ``__init__`` is ``t2ibench``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_cycles_between_subpackages():
    # A layer may use those below it, never the other way round, even through different modules
    # (e.g. pipeline -> toy and toy -> pipeline form no module cycle but tie the layers together).
    units: dict[str, dict[str, tuple[int, bool]]] = {}
    witness: dict[tuple[str, str], str] = {}
    for module, targets in GRAPH.items():
        units.setdefault(_unit(module), {})
        for target, (line, top) in targets.items():
            a, b = _unit(module), _unit(target)
            if a != b and b != PACKAGE:
                units[a].setdefault(b, (line, top))
                witness.setdefault((a, b), f"{module} -> {target} (line {line})")
    units = {u: {t: e for t, e in ts.items() if t in units} for u, ts in units.items()}
    cycles = _cycles(units)
    lines = [
        f"{' <-> '.join(c)}: " + "; ".join(w for (a, b), w in witness.items() if {a, b} <= set(c))
        for c in cycles
    ]
    assert not cycles, "subpackages import each other:\n  " + "\n  ".join(lines)


def test_encoders_do_not_import_the_layers_above():
    upper = ("t2ibench.metrics", "t2ibench.analysis", "t2ibench.pipeline", "t2ibench.results")
    bad = [
        f"{m} -> {t}"
        for m in MODULES
        if m.startswith("t2ibench.encoders")
        for t in GRAPH[m]
        if t.startswith(upper)
    ]
    assert not bad, bad


# Issue 18: one evaluation engine. Turning images and prompts into metric inputs — encoding them
# (``encode_images_cached`` / ``encode_texts_cached`` / an encoder's ``encode_images`` /
# ``encode_texts``), building an ``EvalContext`` or calling an input provider — happens in
# ``t2ibench.evaluation`` only; the encoders package implements those calls and
# ``t2ibench.metrics`` defines the types. Everything else asks the engine.
ENGINE = "t2ibench.evaluation"
_INPUT_BUILDING_NAMES = {"encode_images_cached", "encode_texts_cached", "EvalContext"}
_INPUT_BUILDING_CALLS = {"encode_images", "encode_texts", "provide"}
_MAY_BUILD_INPUTS = {
    # times an encoder on one blank image to plan a run's cost; computes no metric
    "t2ibench.pipeline.plan": "encoder throughput",
    # the toy world's validity study probes the encoders themselves (not a results metric)
    "t2ibench.toy.validity.counterfactual": "encoder probe study",
}


def _registers_input_providers(tree: ast.AST) -> bool:
    """A module that registers input providers is one of the engine's doors (a provider is called
    by the engine with its ``EvalContext``): the judges, a plug-in's own input kind."""
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_input_provider"
        for node in ast.walk(tree)
    )


def _builds_inputs(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    if _registers_input_providers(tree) and not module.startswith(ENGINE):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            found += [f"imports {a.name} (line {node.lineno})" for a in node.names
                      if a.name in _INPUT_BUILDING_NAMES]  # fmt: skip
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in _INPUT_BUILDING_CALLS:
                found.append(f"calls .{node.func.attr}() (line {node.lineno})")
    return found


def test_nothing_outside_the_engine_builds_metric_inputs():
    allowed = (f"{ENGINE}.", "t2ibench.encoders.")
    bad = [
        f"{m}: {what}"
        for m in sorted(MODULES)
        if not m.startswith(allowed) and m != ENGINE and m not in _MAY_BUILD_INPUTS
        and m not in ("t2ibench.metrics", "t2ibench.metrics.inputs", "t2ibench.encoders")
        for what in _builds_inputs(m)
    ]  # fmt: skip
    assert not bad, "metric inputs built outside t2ibench.evaluation:\n  " + "\n  ".join(bad)
    # the check sees what it looks for: the engine's providers do build inputs
    assert _builds_inputs("t2ibench.evaluation.providers")
    for module in _MAY_BUILD_INPUTS:  # an allowance that is no longer used goes
        assert _builds_inputs(module), module


def test_registering_the_trainers_imports_no_method_library():
    """Every CLI command imports ``t2ibench.adapters`` (the trainer registry) before it checks its
    options; lycoris imports bitsandbytes and peft on the way, ~6 s of CPU per process. The
    trainers import their method libraries where they compute, so a refused ``--device`` or a
    ``--help`` costs torch's import only."""
    import subprocess
    import sys

    code = (
        "import sys, t2ibench.adapters, t2ibench.cli; "
        "print(sorted(m for m in ('lycoris', 'bitsandbytes', 'peft') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
