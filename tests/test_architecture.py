"""The shape of the code: stage packages, imports that flow one way, one registry, one record.

These read the source (no imports of torch), so they run in a second and name the line at fault.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from koin_hf.models.registry import FAMILIES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "koin_hf"

# The stages from the bottom up. A module may import its own stage and the stages below it,
# never one above: data flows one way (see docs/ARCHITECTURE.md).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "koin_hf.errors",
            "koin_hf.version",
            "koin_hf.flags",
            "koin_hf.run_record",
            "koin_hf.runtime",
            "koin_hf.folder_lock",
        ),
    ),
    ("hub", ("koin_hf.hub",)),
    ("synthetic", ("koin_hf.synthetic",)),
    ("data", ("koin_hf.data", "koin_hf.dataset_script")),
    ("faces", ("koin_hf.faces",)),
    ("models", ("koin_hf.models",)),
    ("evaluation", ("koin_hf.evaluation",)),
    ("deploy", ("koin_hf.deploy",)),
    ("training", ("koin_hf.training",)),
    ("interface", ("koin_hf.cli", "koin_hf.commands", "koin_hf")),
]


def _module_files() -> dict[str, Path]:
    """Module name -> file, with dataset_script/ under the name the wheel gives it."""
    files = {}
    roots = [(PACKAGE, "koin_hf"), (REPO / "dataset_script", "koin_hf.dataset_script")]
    for root, prefix in roots:
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = path
    return files


MODULES = _module_files()


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(koin_hf module, line) for every import in the file, inside functions too."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


def _graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, {})
        for target, line in _imported(module, path):
            # `import koin_hf.x.y` also runs koin_hf/__init__ and koin_hf/x/__init__, which hold
            # no imports (checked below); the edge that matters is to the module named.
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != module:
                edges.setdefault(target, line)
    return graph


def _stage(module: str) -> int:
    best, best_length = None, -1
    for index, (_name, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} belongs to no stage: add it to STAGES"
    return best


def test_no_import_cycles_counting_imports_inside_functions():
    graph = _graph()
    visiting, done = [], set()

    def visit(module: str) -> None:
        visiting.append(module)
        for target in graph[module]:
            if target in visiting:
                cycle = [*visiting[visiting.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in done:
                visit(target)
        visiting.pop()
        done.add(module)

    for module in graph:
        if module not in done:
            visit(module)


def test_imports_flow_down_the_stages():
    wrong = [
        f"{module} ({MODULES[module].relative_to(REPO)}:{line}) imports {target}, "
        f"a later stage ({STAGES[_stage(target)][0]} above {STAGES[_stage(module)][0]})"
        for module, edges in _graph().items()
        for target, line in edges.items()
        if _stage(target) > _stage(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_reexports_outside_the_public_api():
    """Stage packages' __init__ files hold a docstring only; importers name the owning module."""
    offenders = []
    for module, path in MODULES.items():
        if path.name != "__init__.py" or module == "koin_hf":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree)):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"re-exports in {offenders}: import from the module that owns the name"


def test_public_api_names_one_function_per_stage_and_imports_nothing_heavy():
    import subprocess
    import sys

    import koin_hf

    for name in ("prepare", "load", "train", "evaluate", "predict", "push_model", "push_dataset"):
        function = getattr(koin_hf, name)
        assert callable(function) and function.__doc__, name
    code = "import sys, koin_hf; print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_stage_package_ships_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    assert packages <= declared, f"add to pyproject.toml packages: {sorted(packages - declared)}"


def _string_comparisons(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                elements = (
                    operand.elts
                    if isinstance(operand, (ast.Tuple, ast.List, ast.Set))
                    else [operand]
                )
                for element in elements:
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        yield element.value, node.lineno


def test_only_the_registry_branches_on_a_family_name():
    registry = MODULES["koin_hf.models.registry"]
    branches = [
        f"{path.relative_to(REPO)}:{line} compares with the family name {name!r}"
        for path in MODULES.values()
        if path != registry
        for name, line in _string_comparisons(ast.parse(path.read_text(encoding="utf-8")))
        if name in FAMILIES
    ]
    assert not branches, "ask the registry instead:\n" + "\n".join(branches)


def test_the_run_record_file_is_opened_only_by_run_record():
    """Every reader and writer goes through `RunRecord`, so the fields are named in one place."""
    opened = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for module, path in MODULES.items()
        if module != "koin_hf.run_record"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Div)
        and isinstance(node.right, ast.Constant)
        and node.right.value == "koin_training.json"
    ]
    assert not opened, f"use koin_hf.run_record.RunRecord instead: {opened}"


def test_imports_shown_in_the_docs_resolve():
    """A moved module must not leave the README or docs/ telling users to import the old path."""
    import importlib

    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for line in document.read_text(encoding="utf-8").splitlines():
            statement = line.strip()
            if not statement.startswith(("from koin_hf", "import koin_hf")):
                continue
            tree = ast.parse(statement.split("#")[0].strip())
            node = tree.body[0]
            try:
                if isinstance(node, ast.ImportFrom):
                    module = importlib.import_module(node.module)
                    missing = [a.name for a in node.names if not hasattr(module, a.name)]
                    if missing and not all(f"{node.module}.{n}" in MODULES for n in missing):
                        broken.append(f"{document.name}: {statement} (no {', '.join(missing)})")
                else:
                    for alias in node.names:
                        importlib.import_module(alias.name)
            except ImportError as err:
                broken.append(f"{document.name}: {statement} ({err})")
    assert not broken, "\n".join(broken)
