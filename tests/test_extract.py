"""soar.prompts.extract_code on realistic, messy LLM answers (spec §2.5)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from soar.prompts import code_end, extract_code

FENCE = "```"


def test_prose_several_blocks_and_test_block_after_solution() -> None:
    answer = f"""Looking at the examples, each output mirrors the input horizontally.

First, a quick look at the data:
{FENCE}python
grid = [[1, 2], [3, 4]]
print(grid)
{FENCE}

Here is my solution:

{FENCE}python
import numpy as np

BACKGROUND = 0  # module-level constant: dropped


def mirror(row):
    # helper: kept (comments are lost)
    return row[::-1]


def transform(grid: list[list[int]]) -> list[list[int]]:
    \"\"\"Mirror every row.\"\"\"
    return [mirror(r) for r in grid]


print(transform([[1, 2]]))
if __name__ == "__main__":
    assert transform([[1, 2]]) == [[2, 1]]
{FENCE}

You can check it with:

{FENCE}python
def test_transform():
    assert transform([[1, 2]]) == [[2, 1]]

test_transform()
{FENCE}
"""
    assert extract_code(answer) == (
        "import numpy as np\n\n"
        "def mirror(row):\n    return row[::-1]\n\n"
        "def transform(grid: list[list[int]]) -> list[list[int]]:\n"
        '    """Mirror every row."""\n'
        "    return [mirror(r) for r in grid]"
    )


def test_last_block_with_transform_wins() -> None:
    answer = (
        f"{FENCE}python\ndef transform(grid):\n    return grid\n{FENCE}\n"
        "Wait, that is wrong. Corrected:\n"
        f"{FENCE}python\ndef transform(grid):\n    return grid[::-1]\n{FENCE}\n"
        f"Usage:\n{FENCE}python\nprint(transform([[1], [2]]))\n{FENCE}\n"
    )
    assert extract_code(answer) == "def transform(grid):\n    return grid[::-1]"


def test_without_transform_the_last_block_is_kept() -> None:
    answer = f"{FENCE}python\ndef solve(g):\n    return g\n{FENCE}\n{FENCE}python\ndef f(g):\n    return g\n{FENCE}"
    assert extract_code(answer) == "def f(g):\n    return g"


def test_missing_numpy_import_added() -> None:
    answer = f"{FENCE}python\ndef transform(grid):\n    a = np.array(grid)\n    return np.flipud(a).tolist()\n{FENCE}"
    code = extract_code(answer)
    assert code.startswith("import numpy as np\ndef transform(grid):")
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["transform"]([[1], [2]]) == [[2], [1]]


def test_numpy_import_not_duplicated_and_not_triggered_by_inp() -> None:
    with_import = f"{FENCE}python\nimport numpy as np\ndef transform(g):\n    return np.array(g).tolist()\n{FENCE}"
    assert extract_code(with_import).count("import numpy as np") == 1
    inp_only = f"{FENCE}python\ndef transform(inp):\n    return inp.copy()\n{FENCE}"
    assert "numpy" not in extract_code(inp_only)


def test_numpy_import_goes_after_future_import() -> None:
    answer = f"{FENCE}python\nfrom __future__ import annotations\ndef transform(g):\n    return np.array(g).tolist()\n{FENCE}"
    code = extract_code(answer)
    assert code.split("\n")[:2] == ["from __future__ import annotations", "import numpy as np"]
    compile(code, "<answer>", "exec")


def test_helper_classes_and_imports_kept_async_and_statements_dropped() -> None:
    answer = f"""{FENCE}python
from collections import Counter
import itertools as it

class Box:
    def __init__(self, cells):
        self.cells = cells

SIZE = 3
async def fetch():
    return None

def transform(grid):
    return grid

def check_transform():
    return transform([[1]]) == [[1]]

for row in [[1]]:
    print(row)
check_transform()
{FENCE}"""
    tree = ast.parse(extract_code(answer))
    kinds = [(type(n).__name__, getattr(n, "name", None)) for n in tree.body]
    assert kinds == [("ImportFrom", None), ("Import", None), ("ClassDef", "Box"), ("FunctionDef", "transform")]


def test_syntax_error_block_kept_raw() -> None:
    body = "def transform(grid)\n    # missing colon\n    return grid\n\nprint('x')"
    assert extract_code(f"Here:\n{FENCE}python\n{body}\n{FENCE}\nDone.") == body


def test_no_block_and_no_transform_gives_empty() -> None:
    assert extract_code("I believe the rule is to recolour every 5 to 2.") == ""
    assert extract_code("") == ""
    assert extract_code(f"{FENCE}json\n[[1, 2]]\n{FENCE}") == ""


def test_unfenced_code_recovered() -> None:
    answer = """The rule recolours blue cells.

import numpy as np

def helper(x):
    return 2 if x == 1 else x

Now the main function:

def transform(grid):
    out = [[helper(v) for v in row]
           for row in grid]
    return out

This works for all examples.
print(transform([[1]]))
"""
    assert extract_code(answer) == (
        "import numpy as np\n\ndef helper(x):\n    return 2 if x == 1 else x\n\n"
        "def transform(grid):\n    out = [[helper(v) for v in row] for row in grid]\n    return out"
    )


def test_crlf_and_bom() -> None:
    answer = f"\ufeffSolution:\r\n{FENCE}python\r\ndef transform(grid):\r\n    return grid\r\n{FENCE}\r\nThanks\r\n"
    assert extract_code(answer) == "def transform(grid):\n    return grid"
    assert extract_code(answer.replace("\r\n", "\r")) == "def transform(grid):\n    return grid"


def test_nested_backticks_in_strings() -> None:
    answer = f"""{FENCE}python
def transform(grid):
    fence = "{FENCE}"
    doc = '{FENCE}python'  # looks like a fence but sits inside a line
    return [row[:] for row in grid] if fence and doc else grid
{FENCE}"""
    code = extract_code(answer)
    assert "fence = '```'" in code and "doc = '```python'" in code
    assert code.endswith("else grid")


def test_fence_variants() -> None:
    expected = "def transform(g):\n    return g"
    for opening in ["```py", "```Python", "```python3", "```", "``` python "]:
        assert extract_code(f"x\n{opening}\ndef transform(g):\n    return g\n```\n") == expected, opening
    # a closing fence glued to the last code line, an unterminated block (cut-off answer)
    assert extract_code(f"{FENCE}python\ndef transform(g):\n    return g{FENCE}") == expected
    assert extract_code(f"{FENCE}python\ndef transform(g):\n    return g\n") == expected
    # indented fence (inside a markdown list)
    assert extract_code(f"1. Code:\n   {FENCE}python\n   def transform(g):\n       return g\n   {FENCE}") == expected


def test_other_language_blocks_do_not_break_pairing() -> None:
    answer = (
        f"Install:\n{FENCE}bash\npip install numpy\n{FENCE}\nOutput:\n{FENCE}text\n[[1]]\n{FENCE}\n"
        f"{FENCE}python\ndef transform(g):\n    return g\n{FENCE}\n"
    )
    assert extract_code(answer) == "def transform(g):\n    return g"


def test_forgotten_closing_fence_before_next_block() -> None:
    answer = f"{FENCE}python\ndef transform(g):\n    return g\n{FENCE}python\ndef transform(g):\n    return g[::-1]\n{FENCE}"
    assert extract_code(answer) == "def transform(g):\n    return g[::-1]"


def test_unicode_kept() -> None:
    answer = f"Voilà — la solution :\n{FENCE}python\ndef transform(grid):\n    \"\"\"Grille → miroir 🪞\"\"\"\n    return grid\n{FENCE}"
    assert '"""Grille → miroir 🪞"""' in extract_code(answer)


NESTED = "x = " + "[" * 300 + "]" * 300 + "\ndef transform(g):\n    return g"  # too deep for Python's parser


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, ""),  # not text: no code
        (123, ""),
        ("```python\n" + "(" * 5000 + "\n```", "(" * 5000),  # does not parse: the block as written
        (f"```python\n{NESTED}\n```", NESTED),  # the parser gives up: nothing dropped
        ("```python\ndef transform(g):\n    return g\x00\n```", "def transform(g):\n    return g\x00"),  # null byte
        ("``" * 1000, ""),  # no fence ever opens
        ("```python\n```", ""),  # an empty block
    ],
)
def test_pathological_answers_give_the_block_as_written_or_nothing(answer: object, expected: str) -> None:
    """extract_code never raises (it runs on millions of answers): on input the parser cannot read, it returns the
    block unchanged, and "" when there is no code."""
    assert extract_code(answer) == expected  # type: ignore[arg-type]


# -- stop at code (search.stop_at_code): where generation ends, and what that changes ---------------------------------
REAL_ANSWERS = [json.loads(line) for line in (Path(__file__).parent / "data" / "smollm2_answers.jsonl").open()]


@pytest.mark.parametrize("answer", REAL_ANSWERS, ids=[a["why"] for a in REAL_ANSWERS])
def test_stop_at_code_on_real_smollm2_answers(answer: dict) -> None:
    """Real answers of the embedded model (search=tiny, stop off), each program read and checked by hand: cut at
    code_end, the answer extracts to its first transform block; whole, to its last."""
    text, stop_at = answer["text"], answer["stop_at"]
    assert code_end(text) == stop_at
    assert extract_code(text) == answer["program_full"]
    if stop_at is not None:
        assert text[:stop_at].endswith(FENCE) and "def transform(" in text[:stop_at]
        assert extract_code(text[:stop_at]) == answer["program_stop"]
        assert code_end(text[:stop_at]) == stop_at  # the cut text is complete as it is: generation ends there


def test_stop_at_code_keeps_the_first_transform_block_where_extraction_keeps_the_last() -> None:
    first = f"{FENCE}python\ndef transform(grid):\n    return grid\n{FENCE}"
    answer = f"Sure:\n{first}\nOr shorter:\n{FENCE}python\ndef transform(grid):\n    return grid[::-1]\n{FENCE}\n"
    end = code_end(answer)
    assert answer[:end].endswith(first)
    assert extract_code(answer[:end]) == "def transform(grid):\n    return grid"
    assert extract_code(answer) == "def transform(grid):\n    return grid[::-1]"


def test_stop_at_code_skips_blocks_without_transform_and_other_languages() -> None:
    answer = (f"{FENCE}\n[[1, 2]]\n{FENCE}\n{FENCE}bash\npip install numpy\n{FENCE}\n"
              f"{FENCE}python\ndef helper(x):\n    return x\n{FENCE}\n"
              f"{FENCE}python\ndef transform(grid):\n    return helper(grid)\n{FENCE}\nThat's all.")
    assert answer[: code_end(answer)].endswith(f"return helper(grid)\n{FENCE}")


def test_stop_at_code_while_the_answer_streams_in() -> None:
    """Generation checks the text so far: an open block, a half-written fence or a fence in a string goes on."""
    start = f"{FENCE}python\ndef transform(grid):\n    s = 'x{FENCE}y'\n    return grid\n"
    assert code_end(start) is None
    assert code_end(start + "``") is None
    assert code_end(start + FENCE) == len(start) + 3
    # a forgotten closing fence: the next opening fence line ends the block, and the cut leaves a closed block
    forgot = start + f"{FENCE}python\ndef transform(grid):\n    return 1\n"
    assert code_end(forgot) == len(start) + 3
    assert extract_code(forgot[: code_end(forgot)]) == extract_code(start + FENCE)
    # code without fences never stops early: it runs to EOS or max_tokens as before
    assert code_end("def transform(grid):\n    return grid\n\nprint(transform([[1]]))\n") is None
