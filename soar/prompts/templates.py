"""Chat prompts for sampling and refinement (spec §2.1, §2.3, §2.4).

Every request is [system, user]; the system message is the same for sampling, refinement and training.
Everything shared between prompts (instructions, colour legend, few-shot example) comes before the task,
so an engine with prefix caching reuses it across tasks.

Decisions where the spec is silent or the reference code is buggy (§13.5):
- A failed prediction shows its failure text ("kind: message") and no shape label (the reference code
  reuses the previous pair's stale shape there).
- The parent's outputs always carry their own shape; a grid with a side >= 50 keeps its shape line but
  its cells are replaced by "Output is too large to display".
- If every train pair is correct, the closing lines say so and ask to make sure the code also works on
  the test inputs, instead of listing an empty "incorrect output for:".
- A failed test output is shown as a failure (it is certainly wrong), not as "we don't know".
- A few-shot example of the task itself is refused (it would hand the model the answer).
- Blocks inside "Detailed results" are blank-line separated, like the task section.
"""
from __future__ import annotations

from collections.abc import Sequence

from soar.data.task import Task
from soar.execution.outcome import Failure, Output
from soar.prompts.grids import format_grid, format_task

Messages = list[dict[str, str]]

SYSTEM_PROMPT = (
    "You are an AI assistant specialized in solving Abstract Reasoning Corpus (ARC-AGI) tasks "
    "by reasoning and generating Python code."
)

COLOR_LEGEND = (
    "The number in the input grid can be mapped to the following colors: 0:Black; 1:Blue; 2:Red; "
    "3:Green; 4:Yellow; 5:Grey; 6:Pink; 7:Orange; 8:Purple; 9:Brown"
)

TOO_LARGE_SIDE = 50  # a predicted grid with a side this long or longer is not displayed

_GOAL = (
    "Your goal is to analyze the input-output grid pairs. Each output grid is obtained by applying "
    "a transformation rule to its input grid."
)

_SAMPLING_INSTRUCTIONS = f"""\
You are an assistant that solves ARC-AGI tasks by writing Python code.
{_GOAL} Implement this rule as a Python function.
Only write the transformation in code.
Put your code in a ```python code block. It must define a function named `transform` that takes one \
argument, the input grid as `list[list[int]]`, and returns the transformed grid, also as `list[list[int]]`.
Your function should work in general, at least for all the given pairs and the test inputs.
{COLOR_LEGEND}"""

_REFINEMENT_INSTRUCTIONS = f"""\
You are an assistant that solves ARC-AGI tasks by repairing Python code.
{_GOAL} You are given a function `transform` that was meant to implement this rule but does not work \
on all inputs. Your role is to fix it.
Your solution should be:
- Accurate: it fixes the outputs of all the given inputs and also works on the test inputs.
- Comprehensive: it handles every input scenario.
- Well-structured: its code is clear, readable and efficient.
{COLOR_LEGEND}"""


def fence(code: str) -> str:
    """Code in a python fence as every prompt shows it and every training example answers it (soar.hindsight)."""
    body = code.lstrip("\n").rstrip()  # keep the first line's indentation, drop blank edges
    return f"```python\n{body}\n```"


def _task_to_solve(task: Task) -> str:
    return f"# Task to solve:\n{format_task(task)}"


def sampling_messages(task: Task, fewshot: tuple[Task, str] | None = None) -> Messages:
    """Spec §2.3: instructions, legend, at most one few-shot example (task + its program), then the task.

    No test output is shown, neither of the task nor of the example.
    """
    parts = [_SAMPLING_INSTRUCTIONS]
    if fewshot is not None:
        example, solution = fewshot
        if example.id == task.id:
            raise ValueError(f"few-shot example is the task to solve itself ({task.id!r})")
        parts.append(
            "Here is an example of an ARC-AGI task with its Python solution:\n\n"
            f"# Task 1:\n{format_task(example)}\n\n## Solution:\n{fence(solution)}"
        )
    parts.append(f"Now, solve the following ARC-AGI task:\n\n{_task_to_solve(task)}")
    return _chat("\n\n".join(parts))


def _result(output: Output) -> str:
    """What the parent program gave on one input: its grid under its own shape, or its failure text."""
    if isinstance(output, Failure):
        return f"The execution gave the following error:\n{output}"
    rows, cols = len(output), (len(output[0]) if len(output) else 0)
    body = "Output is too large to display" if max(rows, cols) >= TOO_LARGE_SIDE else format_grid(output)
    return f"The execution gave the following results (grid shape: {rows} by {cols}):\n{body}"


def refinement_messages(
    task: Task, code: str, outputs: Sequence[Output], correct_train: Sequence[bool]
) -> Messages:
    """Spec §2.4: instructions, legend, the task (no test outputs), then the parent program and its results.

    `outputs` are the parent's outputs on task.inputs (train, then test); `correct_train[i]` says whether
    train output i matches. Expected outputs are not restated: they are in the task section.
    """
    n_train, n_test = len(task.train), len(task.test)
    if len(outputs) != n_train + n_test:
        raise ValueError(f"expected {n_train + n_test} outputs (train then test), got {len(outputs)}")
    if len(correct_train) != n_train:
        raise ValueError(f"expected {n_train} train correctness flags, got {len(correct_train)}")

    results: list[str] = []
    wrong: list[str] = []
    for i, (output, ok) in enumerate(zip(outputs[:n_train], correct_train), 1):
        if ok:
            if isinstance(output, Failure):
                raise ValueError(f"train output {i} is a failure but is flagged correct")
            results.append(f"## Output {i} computed by `transform` is correct.")
        else:
            wrong.append(f"Output {i}")
            results.append(f"## Output {i} computed by `transform` is incorrect.\n{_result(output)}")
    for j, output in enumerate(outputs[n_train:], 1):
        if isinstance(output, Failure):
            results.append(f"## Output Test {j} computed by `transform` failed.\n{_result(output)}")
        else:
            results.append(
                f"## Output Test {j} computed by `transform` (we don't know if it is correct or not):\n"
                f"{_result(output)}"
            )

    k = n_train - len(wrong)
    if wrong:
        closing = (
            f"The previous code gives incorrect output for: {', '.join(wrong)}. "
            "Now, you need to fix the code to produce correct output for all inputs."
        )
    else:
        closing = (
            "The previous code gives correct output for all train input-output pairs. "
            "Now, you need to make sure the code also produces correct output for the test inputs."
        )
    previous = (
        f"Previous implementation:\n{fence(code)}\n"
        f"This implementation of transform function correctly worked on {k}/{n_train} train input-output pairs.\n"
        "Detailed results:\n" + "\n\n".join(results)
    )
    user = "\n\n".join(
        [
            _REFINEMENT_INSTRUCTIONS,
            f"**Now, repair the following ARC-AGI task implementation:**\n\n{_task_to_solve(task)}",
            previous,
            closing,
        ]
    )
    return _chat(user)


def _chat(user: str) -> Messages:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user.strip()}]
