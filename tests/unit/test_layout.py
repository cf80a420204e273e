"""The house's rules, read from the code's own imports (function-level ones included) and sizes:
serving loads no training code, the configuration imports nothing of ragops, components never
import the flows, no modules import each other in a loop, and none is over 400 lines or holds a
function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOTS = ("components", "flows")


def _module(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def _imports(project_root: Path) -> dict[str, set[str]]:
    modules = {_module(p, project_root): p for top in ROOTS for p in (project_root / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from package import module` names a module too
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules}
        graph[name] = found - {name}
    return graph


@pytest.fixture(scope="module")
def graph(project_root) -> dict[str, set[str]]:
    return _imports(project_root)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_serving_loads_no_training_code(graph):
    for entry in ("components.serving.app", "components.registry.loading", "components.registry.pyfunc"):
        training = sorted(m for m in _reachable(graph, entry) if m.startswith("components.training"))
        assert not training, f"{entry} reaches training code: {training}"


def test_config_and_settings_import_nothing_of_ours_and_components_no_flows(graph):
    def own(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    outside = {m: sorted(t for t in targets if not own(t, "components.config")) for m, targets in graph.items()
               if own(m, "components.config")}
    assert graph["components.config.sections"] and not any(outside.values()), outside
    assert graph["components.settings"] == set()
    upward = sorted((m, t) for m, targets in graph.items() if m.startswith("components") for t in targets
                    if t.startswith("flows"))
    assert not upward, upward


def test_no_modules_import_each_other_in_a_loop(graph):
    for module in graph:
        assert module not in _reachable(graph, module), f"{module} imports itself through others"


def test_versions_registered_before_the_layout_still_find_their_classes():
    """Their stored model code imports `components.bundle` and `components.pyfunc_models`."""
    from components import bundle, pyfunc_models
    from components.registry import pyfunc

    assert bundle.BundleModel is pyfunc.BundleModel
    assert (pyfunc_models.RouterPyfunc, pyfunc_models.GeneratorPyfunc) == (pyfunc.RouterPyfunc, pyfunc.GeneratorPyfunc)


def test_no_module_over_400_lines_and_no_function_over_60(project_root):
    """Split by what it does once it grows past these (flows/ and components/)."""
    long_modules, long_functions = [], []
    for top in ROOTS:
        for path in sorted((project_root / top).rglob("*.py")):
            source = path.read_text()
            if len(source.splitlines()) > 400:
                long_modules.append(f"{path.relative_to(project_root)} {len(source.splitlines())}")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long_functions.append(f"{path.relative_to(project_root)}:{node.name} "
                                          f"{node.end_lineno - node.lineno + 1}")
    assert not long_modules and not long_functions, (long_modules, long_functions)
