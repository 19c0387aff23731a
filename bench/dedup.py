"""How many training examples code dedup removes, measured on real archives (finished search run dirs): the hindsight
data of `python train.py` built from the same archives with `finetune.data.dedup_code` = false, exact and normalised
(near-duplicates: soar.hindsight.near_duplicates), everything else as configured (`--set key=value` overrides the
train config, e.g. finetune.data.mode=sample).

Run: .venv/bin/python bench/dedup.py RUN_DIR [RUN_DIR ...] [--set finetune.data.refine_relabel=true ...]
Per setting: programs, programs that pass the filters, sampling candidates removed as duplicates, examples by kind,
and distinct responses. The last line is `RESULT dedup programs=N kept=K exact_removed=a normalised_removed=b ...`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from soar.finetune.data import load_examples
from soar.hindsight.near_duplicates import normalised_code

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished search run dirs")
    parser.add_argument("--set", nargs="*", action="extend", default=[], help="train config overrides")
    args = parser.parse_args()
    archives = ",".join(str(r.resolve()) for r in args.runs)
    result = {}
    print(f"{'dedup_code':>10} | {'programs':>8} | {'kept':>6} | {'removed':>7} | {'sample ex':>9} | "
          f"{'refine ex':>9} | {'distinct responses (exact / normalised)':>40}")
    for dedup in ("false", "exact", "normalised"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[f"finetune.archives=[{archives}]", f"finetune.data.dedup_code={dedup}",
                                              "logger=none", *args.set])
        examples, stats = load_examples(cfg)
        f, ex = stats["filters"], stats["examples"]
        removed = stats["sample"]["code_duplicates"]
        responses = [e.response for e in examples]
        near = len({normalised_code(r.removeprefix("```python\n").removesuffix("\n```")) for r in responses})
        print(f"{dedup:>10} | {f['programs']:>8} | {f['kept']:>6} | {removed:>7} | {ex['sample']:>9} | "
              f"{ex['refine']:>9} | {len(set(responses)):>19} / {near:<18}")
        result.update(programs=f["programs"], kept=f["kept"], **{f"{dedup}_removed": removed,
                                                                  f"{dedup}_examples": ex["total"]})
    print("RESULT dedup " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
