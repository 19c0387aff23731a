"""Accuracy bins of a program (spec §4.1, §8.2): REX draws its starting parents from them and hindsight balances
refinement data over them.

Decisions:
- The bins compare train accuracy at float32 precision, the archive's: float32(0.34) stays in "low".
- With known test outputs (`use_test`) a train-perfect program is "max" when right on the test inputs, else
  "max_zero"; without, it is "max" whatever its test outputs. PARENT_BINS leaves "max" out with `use_test`: a
  program that already solves the task is never a parent.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

BINS = ("zero", "low", "medium", "max_zero", "max")
PARENT_BINS = {True: ("zero", "low", "medium", "max_zero"), False: ("zero", "low", "medium", "max")}

_LOW_MAX, _TOP_MIN = np.float32(0.34), np.float32(0.98)


def accuracy_bin(train_acc: float, test_correct: bool | None, use_test: bool) -> str:
    """The accuracy bin of a program: "zero" (a = 0), "low" (0 < a <= 0.34), "medium" (0.34 < a < 0.98), and for
    a >= 0.98 "max" / "max_zero" (test correct / not) with `use_test`, else "max" without looking at the test."""
    a = np.float32(train_acc)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"train_acc={train_acc!r}: must be in [0, 1]")
    if a == 0.0:
        return "zero"
    if a <= _LOW_MAX:
        return "low"
    if a < _TOP_MIN:
        return "medium"
    if not use_test:
        return "max"
    if test_correct is None:
        raise ValueError("use_test=True needs test_correct (the test outputs must be known)")
    return "max" if test_correct else "max_zero"


def row_bin(row: Mapping[str, Any], use_test: bool) -> str:
    """The accuracy bin of an archive row (reads `correct_test_input` only with `use_test`)."""
    if not use_test:
        return accuracy_bin(row["train_acc"], None, False)
    flags = row.get("correct_test_input")
    return accuracy_bin(row["train_acc"], None if flags is None else len(flags) > 0 and all(flags), True)
