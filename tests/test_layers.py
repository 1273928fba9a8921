"""The package's layers: imports go downward only, no circles, the library never imports the CLI,
and no code outside `strategies/` and `tasks/` compares a strategy's or a task's name.

Walks the source with `ast` (imports inside functions count too), so it cannot be fooled by lazy imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "nlptransfer"
RECIPES = Path(__file__).parent.parent / "recipes"

LAYERS = [  # top first: a module may import modules of its own layer (no circle) or of any layer below
    ("cli", ["nlptransfer.cli", "nlptransfer.run", "nlptransfer.predict", "nlptransfer.push", "nlptransfer.compare",
             "nlptransfer.curve", "nlptransfer.sweep", "nlptransfer.export", "nlptransfer.ensemble",
             "nlptransfer.continual", "nlptransfer.distill", "nlptransfer.__main__", "nlptransfer.active.__main__"]),
    ("api", ["nlptransfer.api", "nlptransfer", "nlptransfer.active"]),  # active: rounds of runs through the API
    ("workflows", ["nlptransfer.pipeline", "nlptransfer.adapt", "nlptransfer.predictor", "nlptransfer.tuning",
                   "nlptransfer.runtimes", "nlptransfer.ensembles", "nlptransfer.stages", "nlptransfer.distillation"]),
    ("hub", ["nlptransfer.hub"]),
    ("config", ["nlptransfer.config"]),
    ("parts", ["nlptransfer.tasks", "nlptransfer.strategies"]),
    ("machinery", ["nlptransfer.engine", "nlptransfer.outputs"]),
    ("core", ["nlptransfer.data", "nlptransfer.models", "nlptransfer.catalog", "nlptransfer.metrics",
              "nlptransfer.pooling", "nlptransfer.combiners"]),
    ("base", ["nlptransfer.options", "nlptransfer.option_values", "nlptransfer.errors", "nlptransfer.metric_modules",
              "nlptransfer.modeling_nlptransfer",
              "nlptransfer.outputs.files"]),  # atomic writes (stdlib only): data/arrow.py writes its tables with them
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    """The layer's rank, 0 for the top; the longest matching prefix decides (`nlptransfer` alone is the API)."""
    best = max(((prefix, rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".") and prefix != "nlptransfer"),
               key=lambda item: len(item[0]), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules `name` imports (`from . import x` counts as importing the module x)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= submodules or ({target} & known)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & known
    return found - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_imports_go_downward_only():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in graph().items() for target in targets
              if layer_of(target) < layer_of(module) and not module.startswith(target + ".")]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = graph()
    # a package's __init__ re-exporting its own modules is not a circle with them
    edges = {m: {t for t in targets if not t.startswith(m + ".") and not m.startswith(t + ".")}
             for m, targets in edges.items()}
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_the_library_never_imports_the_cli():
    cli = LAYERS[0][1]
    offenders = [f"{module} imports {target}" for module, targets in graph().items() if layer_of(module) > 0
                 for target in targets if any(target == p or target.startswith(p + ".") for p in cli)]
    assert not offenders, "\n".join(offenders)


NAMES = r"(full|frozen|lora|gradual|bitfit|ia3|classification|multilabel|token-classification)"
COMPARISON = re.compile(rf"""(strategy|task)\s*(==|!=|\bin\b|\bnot in\b)\s*["'(\[{{]|["']{NAMES}["']\s*(==|!=)""")


@pytest.mark.parametrize("folder", [PACKAGE, RECIPES], ids=["nlptransfer", "recipes"])
def test_no_strategy_or_task_name_is_compared_outside_their_folders(folder):
    own = (PACKAGE / "strategies", PACKAGE / "tasks")
    found = [f"{path.relative_to(folder.parent)}:{number}: {line.strip()}"
             for path in folder.rglob("*.py") if not path.is_relative_to(own[0]) and not path.is_relative_to(own[1])
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if COMPARISON.search(line)]
    assert not found, "\n".join(found)


def test_the_name_check_finds_a_comparison():
    assert COMPARISON.search('if cfg.strategy == "lora":') and COMPARISON.search("if cfg.task in ('a', 'b'):")
    assert not COMPARISON.search("strategy = strategies.get(cfg.strategy)")


def test_the_shared_import_graph_finds_no_circle():
    """The workplace's own import-graph tool (../shared/tools, beside the checkout) counts a package's __init__ as a
    module of its own, so it also sees circles through re-exports (strategies -> strategies.frozen -> tasks ->
    tasks.multitask -> strategies), which the walk above leaves out."""
    import subprocess
    import sys

    tool = PACKAGE.parent.parent / "shared" / "tools" / "import_graph.py"
    if not tool.is_file():
        pytest.skip("../shared/tools/import_graph.py is not beside this checkout")
    done = subprocess.run([sys.executable, str(tool), str(PACKAGE.parent)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and " 0 circles" in done.stdout, done.stdout[-2000:]
