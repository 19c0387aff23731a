"""Turn an LLM answer into the program to run (spec §2.5). Never raises: it runs on millions of answers.

Decisions where the spec is silent:
- Fences: an opening fence is ``` plus an info string on one line; its first word must be python, py,
  python3 or empty (any case). Blocks in other languages are consumed and ignored, so they cannot
  shift the pairing of later fences. A block closes at ``` ending a line (so ``` inside a string on
  a code line does not close it), just before a line starting with ``` (a forgotten closing fence
  before the next opening one), or at the end of the text (an answer cut off before its closing fence).
- No python block at all but "def transform(" in the text (small models often omit fences): keep the
  lines that look like code - runs starting at a column-0 def/class/import/decorator line, continued
  by blank, indented, comment or closing-bracket lines - and treat them as the block.
- Kept at top level: def functions, classes (helper classes are common) and imports; everything else
  (constants, prints, test calls, `if __name__ == ...`) is dropped, as are functions named
  test_transform / check_transform.
- "import numpy as np" is added when the code uses `np.` and has no such top-level import; it goes
  after any `from __future__` imports.
"""
from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)(?:```[ \t]*(?=\n|\Z)|(?=^```)|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3"}
_CODE_START = re.compile(r"(?:def |class |import |from \S+ import |@)")
_CONTINUATION = re.compile(r"[#)\]}]")
_USES_NP = re.compile(r"\bnp\.")
_IMPORTS_NP = re.compile(r"^import numpy as np\b", re.MULTILINE)
_DROPPED_FUNCTIONS = {"test_transform", "check_transform"}


def extract_code(text: str) -> str:
    """The normalised program of an answer, or "" when it holds none."""
    try:
        block = _pick_block(_clean(text))
        return _add_numpy_import(_keep_definitions(block)) if block else ""
    except Exception:  # e.g. RecursionError on pathological input: treat as no code
        return ""


def code_end(text: str) -> int | None:
    """Where the answer's first complete program ends: just after the fence that closes its first python block
    defining `transform` (a line starting with ``` closes it, as in extraction); None while there is none.
    The stop rule of `search.stop_at_code`: an answer cut there extracts to that block's program, where the whole
    answer extracts to its last such block (they differ when a later block redefines transform)."""
    for m in _FENCE.finditer(text):
        tag, body = m.group(1), m.group(2)
        if (tag.split() or [""])[0].lower() not in _PYTHON_TAGS or "def transform(" not in body:
            continue
        if m.end() > m.end(2):  # closed by its own fence
            return m.end()
        if m.end() < len(text):  # closed by the next fence line (its closing fence was forgotten)
            return m.end() + 3
        return None  # still open: the text ends inside it
    return None


def _clean(text: str) -> str:
    if not isinstance(text, str):
        return ""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")


def _pick_block(text: str) -> str:
    blocks = [body for tag, body in _FENCE.findall(text) if (tag.split() or [""])[0].lower() in _PYTHON_TAGS]
    if not blocks:
        return _unfenced_code(text) if "def transform(" in text else ""
    with_transform = [b for b in blocks if "def transform(" in b]
    return textwrap.dedent((with_transform or blocks)[-1]).strip()


def _unfenced_code(text: str) -> str:
    kept: list[str] = []
    inside = False
    for line in text.split("\n"):
        if _CODE_START.match(line):
            inside = True
        elif line and not line[0].isspace() and not _CONTINUATION.match(line):
            inside = False
        if inside:
            kept.append(line)
    return "\n".join(kept).strip()


def _keep_definitions(code: str) -> str:
    """Top-level defs, classes and imports, re-emitted by ast.unparse; the code unchanged if it does not parse."""
    try:
        tree = ast.parse(code)
        tree.body = [
            node
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef))
            or (isinstance(node, ast.FunctionDef) and node.name not in _DROPPED_FUNCTIONS)
        ]
        return ast.unparse(tree)
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
        return code


def _add_numpy_import(code: str) -> str:
    if not _USES_NP.search(code) or _IMPORTS_NP.search(code):
        return code
    lines = code.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith("from __future__"):
        i += 1
    return "\n".join(lines[:i] + ["import numpy as np"] + lines[i:])
