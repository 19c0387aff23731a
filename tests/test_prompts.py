"""soar.prompts chat prompts (spec §2.1, §2.3, §2.4), checked against hand-written expected text."""
from __future__ import annotations

import os

import pytest

from soar.data.task import Pair, Task
from soar.execution.outcome import Failure, FailureKind
from soar.prompts import (
    COLOR_LEGEND,
    SYSTEM_PROMPT,
    fence,
    refinement_messages,
    sampling_messages,
)

TASK = Task(
    "tiny",
    (Pair([[1, 2], [3, 4]], [[4, 3], [2, 1]]), Pair([[5, 0, 5]], [[5, 0, 5]])),
    (Pair([[7, 0], [0, 7]], [[9, 9], [9, 8]]),),  # a known test output: must never be shown
)
EXAMPLE = Task("example", (Pair([[1]], [[2]]),), (Pair([[3]], [[4]]),))
EXAMPLE_CODE = "def transform(grid):\n    return [[v + 1 for v in row] for row in grid]\n"
PARENT = "def transform(grid):\n    return grid"

LEGEND = (
    "The number in the input grid can be mapped to the following colors: 0:Black; 1:Blue; 2:Red; 3:Green; "
    "4:Yellow; 5:Grey; 6:Pink; 7:Orange; 8:Purple; 9:Brown"
)

SAMPLING_HEAD = f"""\
You are an assistant that solves ARC-AGI tasks by writing Python code.
Your goal is to analyze the input-output grid pairs. Each output grid is obtained by applying a transformation \
rule to its input grid. Implement this rule as a Python function.
Only write the transformation in code.
Put your code in a ```python code block. It must define a function named `transform` that takes one argument, \
the input grid as `list[list[int]]`, and returns the transformed grid, also as `list[list[int]]`.
Your function should work in general, at least for all the given pairs and the test inputs.
{LEGEND}

"""

FEWSHOT_SECTION = """\
Here is an example of an ARC-AGI task with its Python solution:

# Task 1:
## Input 1 (grid shape: 1 by 1):
[[1]]

## Output 1 (grid shape: 1 by 1):
[[2]]

## Test Input 1 (grid shape: 1 by 1):
[[3]]

## Solution:
```python
def transform(grid):
    return [[v + 1 for v in row] for row in grid]
```

"""

TASK_SECTION = """\
# Task to solve:
## Input 1 (grid shape: 2 by 2):
[[1 2]
 [3 4]]

## Output 1 (grid shape: 2 by 2):
[[4 3]
 [2 1]]

## Input 2 (grid shape: 1 by 3):
[[5 0 5]]

## Output 2 (grid shape: 1 by 3):
[[5 0 5]]

## Test Input 1 (grid shape: 2 by 2):
[[7 0]
 [0 7]]"""

SOLVE = "Now, solve the following ARC-AGI task:\n\n"

REFINEMENT_HEAD = f"""\
You are an assistant that solves ARC-AGI tasks by repairing Python code.
Your goal is to analyze the input-output grid pairs. Each output grid is obtained by applying a transformation \
rule to its input grid. You are given a function `transform` that was meant to implement this rule but does not \
work on all inputs. Your role is to fix it.
Your solution should be:
- Accurate: it fixes the outputs of all the given inputs and also works on the test inputs.
- Comprehensive: it handles every input scenario.
- Well-structured: its code is clear, readable and efficient.
{LEGEND}

**Now, repair the following ARC-AGI task implementation:**

"""

PREVIOUS = """

Previous implementation:
```python
def transform(grid):
    return grid
```
"""


def user(messages: list[dict[str, str]]) -> str:
    return messages[1]["content"]


# ---------------------------------------------------------------------------------------------- sampling


def test_sampling_without_fewshot() -> None:
    assert user(sampling_messages(TASK)) == SAMPLING_HEAD + SOLVE + TASK_SECTION


def test_sampling_with_fewshot() -> None:
    expected = SAMPLING_HEAD + FEWSHOT_SECTION + SOLVE + TASK_SECTION
    assert user(sampling_messages(TASK, (EXAMPLE, EXAMPLE_CODE))) == expected


def test_fewshot_code_is_fenced_once_whatever_its_surrounding_newlines() -> None:
    a = user(sampling_messages(TASK, (EXAMPLE, EXAMPLE_CODE)))
    b = user(sampling_messages(TASK, (EXAMPLE, "\n\n" + EXAMPLE_CODE.strip() + "\n\n\n")))
    assert a == b


def test_training_targets_are_fenced_as_the_prompts_show_code() -> None:
    """One fence for prompts and training examples: a model trained on the targets answers as the prompts show."""
    from soar.hindsight import sample_example

    code = "\n\n    # indented first line\ndef transform(grid):\n    return grid  \n\n"
    assert fence(code) == "```python\n    # indented first line\ndef transform(grid):\n    return grid\n```"
    assert sample_example(EXAMPLE, {"code": code, "program_id": "p"}, relabelled=False).response == fence(code)
    assert f"## Solution:\n{fence(code)}" in user(sampling_messages(TASK, (EXAMPLE, code)))


def test_fewshot_of_the_task_itself_is_refused() -> None:
    with pytest.raises(ValueError, match=r"few-shot example is the task to solve itself \('tiny'\)"):
        sampling_messages(TASK, (TASK, EXAMPLE_CODE))


def test_shared_prefix_ends_where_the_task_starts() -> None:
    other = Task("other", (Pair([[1, 2], [3, 5]], [[0]]),), (Pair([[6]], None),))
    a = user(sampling_messages(TASK, (EXAMPLE, EXAMPLE_CODE)))
    b = user(sampling_messages(other, (EXAMPLE, EXAMPLE_CODE)))
    shared = SAMPLING_HEAD + FEWSHOT_SECTION + SOLVE + "# Task to solve:\n"
    assert a.startswith(shared) and b.startswith(shared)
    # The common prefix reaches the task section and stops inside it (here: where the first grids differ).
    common = os.path.commonprefix([a, b])
    assert common.startswith(shared) and len(common) < min(len(a), len(b))
    assert "## Solution:\n```python\n" + EXAMPLE_CODE.strip() + "\n```" in shared
    assert common[len(shared) :] == "## Input 1 (grid shape: 2 by 2):\n[[1 2]\n [3 "
    # The same holds for refinement: instructions and legend precede the task.
    ra = user(refinement_messages(TASK, PARENT, [((4, 3), (2, 1)), ((5, 0, 5),), ((7, 0), (0, 7))], [True, True]))
    rb = user(refinement_messages(other, PARENT, [((0,),), ((6,),)], [True]))
    assert os.path.commonprefix([ra, rb]).startswith(REFINEMENT_HEAD + "# Task to solve:\n")


# -------------------------------------------------------------------------------------------- refinement


def test_refinement_one_correct_one_wrong_grid() -> None:
    outputs = [((4, 3), (2, 1)), ((5, 5, 5), (0, 0, 0)), ((7, 0), (0, 7))]
    expected = (
        REFINEMENT_HEAD
        + TASK_SECTION
        + PREVIOUS
        + """\
This implementation of transform function correctly worked on 1/2 train input-output pairs.
Detailed results:
## Output 1 computed by `transform` is correct.

## Output 2 computed by `transform` is incorrect.
The execution gave the following results (grid shape: 2 by 3):
[[5 5 5]
 [0 0 0]]

## Output Test 1 computed by `transform` (we don't know if it is correct or not):
The execution gave the following results (grid shape: 2 by 2):
[[7 0]
 [0 7]]

The previous code gives incorrect output for: Output 2. Now, you need to fix the code to produce correct output \
for all inputs."""
    )
    assert user(refinement_messages(TASK, PARENT, outputs, [True, False])) == expected


def test_refinement_failures_show_their_text_and_no_stale_shape() -> None:
    # Output 1 is a wrong 3x1 grid, output 2 a failure: the failure must not inherit "3 by 1".
    outputs = [
        ((1,), (2,), (3,)),
        Failure(FailureKind.EXCEPTION, "ZeroDivisionError: division by zero"),
        Failure(FailureKind.TIMEOUT),
    ]
    expected = (
        REFINEMENT_HEAD
        + TASK_SECTION
        + PREVIOUS
        + """\
This implementation of transform function correctly worked on 0/2 train input-output pairs.
Detailed results:
## Output 1 computed by `transform` is incorrect.
The execution gave the following results (grid shape: 3 by 1):
[[1]
 [2]
 [3]]

## Output 2 computed by `transform` is incorrect.
The execution gave the following error:
exception: ZeroDivisionError: division by zero

## Output Test 1 computed by `transform` failed.
The execution gave the following error:
timeout

The previous code gives incorrect output for: Output 1, Output 2. Now, you need to fix the code to produce \
correct output for all inputs."""
    )
    assert user(refinement_messages(TASK, PARENT, outputs, [False, False])) == expected


MULTI = Task(
    "multi",
    (Pair([[1]], [[1, 1]]), Pair([[2]], [[2, 2]]), Pair([[3]], [[3, 3]])),
    (Pair([[4]], [[4, 4]]), Pair([[5, 6]], [[5, 5, 6, 6]])),
)


def test_refinement_multi_test_all_train_correct() -> None:
    outputs = [((1, 1),), ((2, 2),), ((3, 3),), ((4, 4),), Failure(FailureKind.INVALID_OUTPUT, "not a grid")]
    expected = f"""\
{REFINEMENT_HEAD}# Task to solve:
## Input 1 (grid shape: 1 by 1):
[[1]]

## Output 1 (grid shape: 1 by 2):
[[1 1]]

## Input 2 (grid shape: 1 by 1):
[[2]]

## Output 2 (grid shape: 1 by 2):
[[2 2]]

## Input 3 (grid shape: 1 by 1):
[[3]]

## Output 3 (grid shape: 1 by 2):
[[3 3]]

## Test Input 1 (grid shape: 1 by 1):
[[4]]

## Test Input 2 (grid shape: 1 by 2):
[[5 6]]{PREVIOUS}\
This implementation of transform function correctly worked on 3/3 train input-output pairs.
Detailed results:
## Output 1 computed by `transform` is correct.

## Output 2 computed by `transform` is correct.

## Output 3 computed by `transform` is correct.

## Output Test 1 computed by `transform` (we don't know if it is correct or not):
The execution gave the following results (grid shape: 1 by 2):
[[4 4]]

## Output Test 2 computed by `transform` failed.
The execution gave the following error:
invalid_output: not a grid

The previous code gives correct output for all train input-output pairs. Now, you need to make sure the code \
also produces correct output for the test inputs."""
    text = user(refinement_messages(MULTI, PARENT, outputs, [True, True, True]))
    assert text == expected
    assert "incorrect output for" not in text
    assert "[[5 5 6 6]]" not in text  # the known test output


def test_refinement_multi_test_wrong_middle_pair() -> None:
    outputs = [((1, 1),), ((0,),), ((3, 3),), ((4, 4),), ((5, 6),)]
    text = user(refinement_messages(MULTI, PARENT, outputs, [True, False, True]))
    assert "correctly worked on 2/3 train input-output pairs." in text
    assert (
        "## Output 2 computed by `transform` is incorrect.\n"
        "The execution gave the following results (grid shape: 1 by 1):\n[[0]]"
    ) in text
    assert "## Output Test 2 computed by `transform` (we don't know if it is correct or not):\n" in text
    assert text.endswith(
        "The previous code gives incorrect output for: Output 2. "
        "Now, you need to fix the code to produce correct output for all inputs."
    )


def test_refinement_too_large_output_is_not_displayed() -> None:
    big = tuple((1,) * 50 for _ in range(2))  # a side >= 50
    text = user(refinement_messages(TASK, PARENT, [((4, 3), (2, 1)), big, ((0,),)], [True, False]))
    assert (
        "## Output 2 computed by `transform` is incorrect.\n"
        "The execution gave the following results (grid shape: 2 by 50):\nOutput is too large to display"
    ) in text
    assert "[[1 1" not in text
    # 49 is still shown; list-of-list grids are accepted like canonical tuples.
    text = user(refinement_messages(TASK, PARENT, [[[4, 3], [2, 1]], [[1] * 49], [[0]]], [True, False]))
    assert "(grid shape: 1 by 49):\n[[1 1 1" in text


def test_refinement_argument_checks() -> None:
    ok = [((4, 3), (2, 1)), ((5, 0, 5),), ((7, 0), (0, 7))]
    with pytest.raises(ValueError, match=r"expected 3 outputs \(train then test\), got 2"):
        refinement_messages(TASK, PARENT, ok[:2], [True, True])  # test output missing
    with pytest.raises(ValueError, match="expected 2 train correctness flags, got 1"):
        refinement_messages(TASK, PARENT, ok, [True])
    with pytest.raises(ValueError, match="train output 2 is a failure but is flagged correct"):
        refinement_messages(TASK, PARENT, [ok[0], Failure(FailureKind.CRASH), ok[2]], [True, True])


# ------------------------------------------------------------------------------------------- both builders


def test_no_test_output_leaks() -> None:
    leak = "[[9 9]\n [9 8]]"  # TASK's test output
    example = Task("ex2", (Pair([[1]], [[2]]),), (Pair([[3]], [[8, 8, 8, 8]]),))
    texts = [
        user(sampling_messages(TASK)),
        user(sampling_messages(TASK, (example, EXAMPLE_CODE))),
        user(refinement_messages(TASK, PARENT, [((4, 3), (2, 1)), ((0,),), ((7, 0), (0, 7))], [True, False])),
    ]
    for text in texts:
        assert leak not in text and "9 8" not in text
        assert "Test Output" not in text
        assert "[[8 8 8 8]]" not in text  # nor the few-shot example's test output


def test_roles_and_system_prompt() -> None:
    sampling = sampling_messages(TASK, (EXAMPLE, EXAMPLE_CODE))
    refinement = refinement_messages(TASK, PARENT, [((4, 3), (2, 1)), ((0,),), ((7, 0), (0, 7))], [True, False])
    for messages in (sampling, refinement, sampling_messages(TASK)):
        assert [m["role"] for m in messages] == ["system", "user"]
        assert set(messages[0]) == set(messages[1]) == {"role", "content"}
        assert messages[0]["content"] == SYSTEM_PROMPT
        assert messages[1]["content"] == messages[1]["content"].strip()
    assert SYSTEM_PROMPT == (
        "You are an AI assistant specialized in solving Abstract Reasoning Corpus (ARC-AGI) tasks "
        "by reasoning and generating Python code."
    )
    assert COLOR_LEGEND == LEGEND
