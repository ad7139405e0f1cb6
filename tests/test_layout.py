"""The layers import one way: `commands` → `projections` → `escrow` (docs/architecture.md).

Every import statement of every module counts, including those inside functions, so a lazy
import cannot slip a cycle back in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("escrow", "projections", "commands")  # each may import only the layers before it
# The one import root: the repository's commands/ and projections/ are escrow.commands and
# escrow.projections (symbolic links inside escrow/ here, subpackages in the installed wheel).
ROOTED = {"escrow.commands": "commands", "escrow.projections": "projections"}


def _imported(path: Path) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def _layer_of(name: str) -> str | None:
    """The layer a module name belongs to (None: not ours)."""
    for prefix, layer in ROOTED.items():
        if name == prefix or name.startswith(prefix + "."):
            return layer
    top = name.split(".")[0]
    return top if top in LAYERS else None


def _modules(layer: str) -> list[Path]:
    """The layer's own files, not those seen again through escrow/'s links to the others."""
    links = [ROOT / "escrow" / name for name in ("commands", "projections")]
    return sorted(
        path
        for path in (ROOT / layer).rglob("*.py")
        if not any(path.is_relative_to(link) for link in links)
    )


def _against_the_flow(layer: str) -> list[str]:
    allowed = LAYERS[: LAYERS.index(layer) + 1]
    found = []
    for path in _modules(layer):
        for line, name in _imported(path):
            if name.split(".")[0] in ("commands", "projections"):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}: use escrow.{name}")
            elif (into := _layer_of(name)) is not None and into not in allowed:
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
    assert [_layer_of(n) for _, n in _imported(module)] == ["commands", "projections"]
    assert _layer_of("escrow.order") == "escrow" and _layer_of("psycopg") is None


def test_no_module_imports_relatively() -> None:
    """Relative imports would hide a layer's name from the check above."""
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for layer in LAYERS
        for path in _modules(layer)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []
