"""Near-duplicate programs: one key for programs that differ only in comments, docstrings, formatting or the names
of what they define (soar's cheap stand-in for SOAR's CodeRankEmbed dedup, spec §7.3).

    normalised_code(code) == normalised_code(other)   # the same program up to those differences

The key is the code parsed and written back by `ast` (comments and formatting gone) with every string statement
dropped (docstrings) and every name the program binds (arguments, assigned names, loop and comprehension targets,
functions and classes it defines, except `transform`) renamed in order of first appearance. Free names (builtins,
imported modules), attributes and keyword names are kept. Code (stripped) that does not parse keys as itself.
"""
from __future__ import annotations

import ast

ENTRY = "transform"


class _Bound(ast.NodeVisitor):
    """The names a program binds."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.names.add(node.arg)

    def _define(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.names.add(node.name)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define


class _Rename(ast.NodeTransformer):
    """Renames bound names to v0, v1, ... in order of first appearance and drops string statements."""

    def __init__(self, bound: set[str]) -> None:
        self.bound = bound - {ENTRY}
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name not in self.bound:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg)
        node.annotation = None  # type hints do not change the program
        return node

    def _define(self, node: ast.AST) -> ast.AST:
        node.name = self._new(node.name)  # type: ignore[attr-defined]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define

    def visit_Global(self, node: ast.Global) -> ast.Global:
        node.names = [self._new(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global  # type: ignore[assignment]

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None  # a docstring or a string used as a comment
        return self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if getattr(node, "body", None) == [] and not isinstance(node, ast.Module):  # emptied by a dropped docstring
            node.body = [ast.Pass()]  # type: ignore[attr-defined]
        return node


def normalised_code(code: str) -> str:
    """The program's near-duplicate key (see the module doc)."""
    code = code.strip()
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return code
    bound = _Bound()
    bound.visit(tree)
    try:
        return ast.unparse(_Rename(bound.names).visit(tree))
    except RecursionError:
        return code
