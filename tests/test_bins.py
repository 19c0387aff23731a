"""Accuracy bins (soar.scoring.bins): boundaries at the archive's float32 precision, max / max_zero with the test
outputs, the bin of an archive row."""
import numpy as np
import pytest

from soar.scoring.bins import PARENT_BINS, accuracy_bin, row_bin


@pytest.mark.parametrize("acc, with_test_right, with_test_wrong, without_test", [
    (0.0, "zero", "zero", "zero"),
    (0.34, "low", "low", "low"),
    (0.3400001, "medium", "medium", "medium"),
    (0.97, "medium", "medium", "medium"),
    (0.98, "max", "max_zero", "max"),
    (1.0, "max", "max_zero", "max"),
    (1e-9, "low", "low", "low"),
    (1 / 3, "low", "low", "low"),
    (2 / 3, "medium", "medium", "medium"),
])
def test_accuracy_bin_boundaries(acc, with_test_right, with_test_wrong, without_test):
    assert accuracy_bin(acc, True, use_test=True) == with_test_right
    assert accuracy_bin(acc, False, use_test=True) == with_test_wrong
    assert accuracy_bin(acc, None, use_test=False) == without_test
    assert accuracy_bin(acc, True, use_test=False) == without_test  # the test result is ignored without use_test


def test_accuracy_bin_at_archive_float32_precision():
    # train_acc is stored as float32; float32(0.34) is slightly above 0.34 but is still "low".
    assert float(np.float32(0.34)) > 0.34
    assert accuracy_bin(float(np.float32(0.34)), None, use_test=False) == "low"
    assert accuracy_bin(np.float32(0.98), False, use_test=True) == "max_zero"
    assert accuracy_bin(np.float32(49 / 50), None, use_test=False) == "max"


def test_accuracy_bin_rejects_bad_input():
    with pytest.raises(ValueError, match="test_correct"):
        accuracy_bin(1.0, None, use_test=True)
    assert accuracy_bin(0.5, None, use_test=True) == "medium"  # below the top bin the test result is not needed
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="train_acc"):
            accuracy_bin(bad, None, use_test=False)


def test_row_bin_reads_the_test_flags_only_with_use_test():
    row = {"train_acc": np.float32(1.0), "correct_test_input": [True, False]}
    assert row_bin(row, use_test=True) == "max_zero" and row_bin({**row, "correct_test_input": [True]}, True) == "max"
    assert row_bin({"train_acc": 1.0}, use_test=False) == "max"  # no flags needed
    assert row_bin({**row, "correct_test_input": []}, use_test=True) == "max_zero"  # no test flag: not solved
    assert "max" not in PARENT_BINS[True] and "max_zero" not in PARENT_BINS[False]
