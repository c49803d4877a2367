"""The package's layout is its architecture: each layer imports only itself and the layers below it, and
no module imports itself back through another (checked over every import, function-level ones included).

    faces (cli, pipeline, dsir)  ->  stages  ->  run  ->  selection  ->  estimators  ->  featurizer
        ->  runtime  ->  storage  ->  base (config, columns, randomness, version)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dsir_spark"

# Lowest first. A module belongs to the first layer whose prefix it matches.
LAYERS = [
    ("base", ("dsir_spark.version", "dsir_spark.config", "dsir_spark.columns", "dsir_spark.randomness")),
    ("storage", ("dsir_spark.storage",)),
    ("runtime", ("dsir_spark.runtime",)),
    ("featurizer", ("dsir_spark.featurizer",)),
    ("estimators", ("dsir_spark.estimators",)),
    ("selection", ("dsir_spark.selection",)),
    ("run", ("dsir_spark.run",)),
    ("stages", ("dsir_spark.stages",)),
    ("faces", ("dsir_spark.cli", "dsir_spark.pipeline", "dsir_spark.dsir", "dsir_spark.terminal", "dsir_spark")),
]
ALGORITHMS = ("featurizer", "estimators", "selection")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from a.b import c`` counts a.b.c where c is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != "dsir_spark"}


def layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: place it")


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_imports_point_down():
    upward = [f"{source} ({LAYERS[layer(source)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
              for source, targets in graph().items() for target in sorted(targets) if layer(target) > layer(source)]
    assert upward == []


def test_the_algorithms_import_neither_the_stages_nor_the_faces():
    names = [name for name, _ in LAYERS]
    above = {names.index("run"), names.index("stages"), names.index("faces")}
    wrong = [(source, target) for source, targets in graph().items() if LAYERS[layer(source)][0] in ALGORITHMS
             for target in targets if layer(target) in above]
    assert wrong == []


def test_no_import_cycle():
    edges = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*trail[trail.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_check_sees_a_real_upward_import(tmp_path):
    # The check itself: an import of a stage from the featurizer would be reported.
    fake = tmp_path / "fake.py"
    fake.write_text("from dsir_spark.stages.count import run_count\n")
    found = imports(fake, set(modules()))
    assert "dsir_spark.stages.count" in found
    assert layer("dsir_spark.stages.count") > layer("dsir_spark.featurizer.counts")
