"""The layers import one way: `commands` → `projections` → `escrow` (docs/architecture.md).

Every import statement of every module counts, including those inside functions, so a lazy
import cannot slip a cycle back in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("escrow", "projections", "commands")  # each may import only the layers before it


def _imported(path: Path) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def _against_the_flow(layer: str) -> list[str]:
    allowed = LAYERS[: LAYERS.index(layer) + 1]
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, name in _imported(path):
            top = name.split(".")[0]
            if top in LAYERS and top not in allowed:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_flow_from_commands_to_projections_to_escrow(layer: str) -> None:
    assert _against_the_flow(layer) == []


def test_the_check_sees_an_import_against_the_flow(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from escrow.commands.api import Escrow\n    import escrow.projections.base\n"
    )
    assert _imported(module) == [(2, "escrow.commands.api"), (3, "escrow.projections.base")]


def test_no_module_imports_relatively() -> None:
    """Relative imports would hide a layer's name from the check above."""
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []
