"""The import rules of the docs' Architecture page (docs/architecture.md), read from the source: imports point one way.

Inside ``pdrl`` layer by layer; across the repository, ``bench/`` (every benchmark) may import ``pdrl``, and
``pdrl`` never imports ``bench``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pdrl"
BENCH = PACKAGE.parent / "bench"
GROUND = {"distributed", "errors"}
EVERYTHING = {
    "distributed", "errors", "contracts", "metrics", "probe_solvers", "losses", "nets", "heads", "data", "tasks",
    "checkpointing", "wandb_setup", "hardware", "terminal", "callbacks", "fit",
}  # fmt: skip
ALLOWED = {
    "__init__": set(),
    "distributed": set(),
    "errors": set(),
    "contracts": set(),
    "metrics": set(),
    "probe_solvers": GROUND,
    "wandb_setup": set(),
    "hardware": set(),
    "terminal": set(),
    "checkpointing": {"errors"},
    "losses": GROUND,
    "nets": GROUND,
    "data": GROUND,
    "heads": GROUND | {"losses", "nets"},
    "tasks": GROUND | {"losses", "heads", "nets", "metrics", "data", "hardware"},
    "callbacks": GROUND | {"contracts", "metrics", "probe_solvers", "wandb_setup", "checkpointing", "tasks"},
    "fit": EVERYTHING - {"fit"},
}


def imported_layers(path: Path) -> set[str]:
    """The top-level ``pdrl`` modules or folders that ``path`` imports (relative imports resolved)."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(module[: len(module) - node.level]) if node.level else ""
            target = ".".join(part for part in (base, node.module or "") if part)
            names = [f"{target}.{alias.name}" for alias in node.names] if target == "pdrl" else [target]
        else:
            continue
        layers.update(name.split(".")[1] for name in names if name.startswith("pdrl."))
    return layers


def imported_packages(path: Path) -> set[str]:
    """The top-level packages that ``path`` imports by absolute name (``bench``, ``pdrl``, ``torch``...)."""
    packages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    layer = layer_of(path)
    assert layer in ALLOWED, f"{layer} is not in docs/architecture.md's layer map: add it there and here"
    wrong = imported_layers(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"pdrl/{path.relative_to(PACKAGE)} ({layer}) imports {sorted(wrong)}, against the README's rules"


def test_the_checker_sees_module_and_package_imports() -> None:
    assert "errors" in imported_layers(PACKAGE / "losses" / "variational.py")  # from pdrl.errors import ...
    assert "distributed" in imported_layers(PACKAGE / "data" / "word_vectors.py")  # from pdrl import distributed


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_pdrl_never_imports_bench(path: Path) -> None:
    assert "bench" not in imported_packages(path), f"pdrl/{path.relative_to(PACKAGE)} imports bench: pdrl never does"


def test_bench_imports_pdrl_and_the_checker_sees_it() -> None:
    assert {"bench", "pdrl"} <= imported_packages(BENCH / "mi" / "mi.py")  # from bench.mi.mi_engines, pdrl.data
    assert "pdrl" in imported_packages(BENCH / "retrieval_synthetic.py")  # a single-file script
