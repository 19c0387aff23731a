"""Dependencies point down: every soar module imports only from its own layer or the layers below it (README,
Layout). Lazy imports inside functions count too; `if TYPE_CHECKING:` imports are left out (they run nothing)."""
from __future__ import annotations

import ast
from pathlib import Path

SOAR = Path(__file__).resolve().parents[1] / "soar"
# Bottom first; the units of one layer do not import each other.
LAYERS = [
    {"io", "hardware"},
    {"weights", "tracking"},
    {"data"},
    {"execution"},
    {"prompts"},
    {"scoring"},
    {"archive"},
    {"runs"},
    {"engines"},
    {"hindsight"},
    {"report"},
    {"search"},
    {"finetune"},
    {"loop"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit(module: str) -> str:
    """soar.<unit>[.rest] -> <unit>."""
    return module.split(".")[1]


def imports(tree: ast.AST) -> list[str]:
    """The soar modules a file imports, outside `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("soar."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("soar."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in SOAR.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert units == set(LEVEL), "add the new unit to LAYERS (and to the README's layer order)"


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = []
    for file in sorted(SOAR.rglob("*.py")):
        rel = file.relative_to(SOAR.parent).with_suffix("")
        if len(rel.parts) < 2 or rel.parts[1] == "__init__":
            continue
        own = rel.parts[1]
        for module in imports(ast.parse(file.read_text(encoding="utf-8"))):
            if LEVEL[unit(module)] > LEVEL[own]:
                upward.append(f"{rel}: imports {module}")
            elif LEVEL[unit(module)] == LEVEL[own] and unit(module) != own:
                upward.append(f"{rel}: imports {module} from its own layer")
    assert not upward, "\n".join(upward)
