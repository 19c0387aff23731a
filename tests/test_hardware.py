"""The one `auto` dtype decision (engines and finetune) on faked machines, its warning and its errors."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from soar.hardware import DTYPES, Hardware, choose_dtype, detect

SAPPHIRE_RAPIDS = Hardware("cpu", "Intel Xeon Platinum 8480+", ("avx2", "avx512", "avx512_bf16", "amx"))
GENOA = Hardware("cpu", "AMD EPYC 9R14", ("avx2", "avx512", "avx512_bf16"))
AMX_ONLY = Hardware("cpu", "a CPU with AMX tiles", ("avx2", "amx"))
SKYLAKE = Hardware("cpu", "Intel Xeon Gold 6148", ("avx2", "avx512"))  # AVX-512 without its bf16 extension
ROME = Hardware("cpu", "AMD EPYC 7B12", ("avx2",))
H200 = Hardware("cuda", "NVIDIA H200", ("bf16",))
V100 = Hardware("cuda", "Tesla V100-SXM2-32GB", ())


@pytest.mark.parametrize(("hardware", "dtype"), [
    (SAPPHIRE_RAPIDS, "bfloat16"), (GENOA, "bfloat16"), (AMX_ONLY, "bfloat16"),
    (SKYLAKE, "float32"), (ROME, "float32"), (H200, "bfloat16"), (V100, "float16"),
])
def test_auto_is_bf16_only_where_it_is_native(hardware: Hardware, dtype: str) -> None:
    assert choose_dtype("auto", hardware) == dtype


def test_auto_logs_the_choice_and_the_features_it_saw(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="soar.hardware"):
        choose_dtype("auto", ROME)
    assert "model.dtype=auto -> float32 on CPU AMD EPYC 7B12 (avx2)" in caplog.text


def test_bf16_forced_on_a_cpu_without_it_warns_what_to_set(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="soar.hardware"):
        assert choose_dtype("bfloat16", ROME) == "bfloat16"  # the user's choice stands
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "10x slower" in record.message and "model.dtype=auto" in record.message and "model.dtype=float32" in record.message
    caplog.clear()
    for ok in (GENOA, H200):  # native: nothing to warn about
        choose_dtype("bfloat16", ok)
    choose_dtype("float32", ROME)
    assert not caplog.records


def test_an_unknown_dtype_names_the_key_and_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"model.dtype='fp8': allowed: auto, bfloat16, float16, float32"):
        choose_dtype("fp8", H200)
    with pytest.raises(ValueError, match=r"finetune.trainer.precision='bf16'"):
        choose_dtype("bf16", H200, "finetune.trainer.precision")


def test_detect_describes_this_machine() -> None:
    import torch

    here = detect()
    assert here.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_dtype("auto", here) in DTYPES[1:]
    cpu = detect(False)
    assert cpu.device == "cpu" and cpu.name and set(cpu.features) <= {"avx2", "avx512", "avx512_bf16", "amx"}
    assert cpu.native_bf16 == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert cpu.name in str(cpu)


def test_search_rejects_an_unknown_dtype_before_any_work(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "search.py", f"hydra.run.dir={tmp_path}", "logger=none", "model.dtype=fp8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "model.dtype='fp8': allowed: auto, bfloat16, float16, float32" in proc.stderr
    assert not (tmp_path / "programs.parquet").exists()
