"""One vote constant c (weight per program 1 + c * h, spec §6): `scoring.c` reaches the training data selection by
the vote (greedy_diverse_mv, TTT), from train.py and from the loop; unset, both use soar.scoring.vote.DEFAULT_C."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from hydra import compose, initialize_config_dir

from soar.archive import ProgramArchive, program_row
from soar.data import load_split
from soar.execution import Executor
from soar.hindsight import majority_vote_half
from soar.runs import SearchRun
from soar.scoring import score_program

ROOT = Path(__file__).resolve().parents[1]
TASK = load_split("arc_agi_1", "evaluation")["60c09cac"]  # the output is the input scaled 2x
SCALE = ("import numpy as np\n\ndef transform(grid):\n"
         "    return np.kron(np.array(grid), np.ones((2, 2), dtype=int)).tolist()\n")  # right: h = 1
TALL = ["def transform(grid):\n    return [r for r in grid for _ in range(2)]\n",
        "def transform(grid):\n    return [list(r) for r in grid for _ in (0, 1)]\n",
        "def transform(grid):\n    out = []\n    for r in grid:\n        out += [r, r]\n    return out\n"]  # h = 0


def rows(executor: Executor) -> list[dict]:
    """One right program (its own vote key, h = 1) and three wrong ones sharing another key (h = 0)."""
    codes = [SCALE, *TALL]
    outs = executor.run([(c, TASK.inputs) for c in codes])
    return [program_row(TASK, c, o, score_program(TASK, o), program_id=f"p{i}", kind="sample")
            for i, (c, o) in enumerate(zip(codes, outs))]


def compose_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_the_vote_half_weighs_train_accuracy_by_c() -> None:
    with Executor(workers=1, timeout_s=2.0) as executor:
        programs = rows(executor)
    assert [r["train_acc"] for r in programs] == [1.0, 0.0, 0.0, 0.0]

    def pick(c: float) -> str:
        (row,) = majority_vote_half(programs, 1, np.random.default_rng(0), c=c)
        return row["code"]

    assert pick(1000.0) == SCALE  # 1 + 1000 beats 3 x 1
    assert pick(1.0) in TALL  # 1 + 1 loses to 3 x 1


def test_train_and_the_loop_use_scoring_c(tmp_path: Path) -> None:
    """TTT data (greedy_diverse_mv, no ground truth) from one archive: with scoring.c=1 the three wrong programs
    outvote the right one; the loop hands its scoring.c to its train stages."""
    from soar.finetune.data import load_examples

    run = SearchRun(tmp_path / "search")
    run.start()
    with Executor(workers=1, timeout_s=2.0) as executor:
        ProgramArchive(run.archive).append(rows(executor))
    (run.path / ".hydra").mkdir()
    (run.path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"dataset": "arc_agi_1", "split": "evaluation", "path": None}}))
    for f in ("metrics.json", "tasks.json"):
        (run.path / f).write_text("{}")
    run.finish()
    data = ["logger=none", f"finetune.archives=[{run.path}]", "finetune.data.mode=sample",
            "finetune.data.sample_selection=greedy_diverse_mv", "finetune.data.per_task=2",
            "finetune.data.shuffle_pairs=false"]

    def responses(*overrides: str) -> list[str]:
        examples, _ = load_examples(compose_cfg("train", *data, *overrides))
        return [e.response for e in examples]

    assert any("np.kron" in r for r in responses())  # the default c = 1000: the right program wins the vote
    assert not any("np.kron" in r for r in responses("scoring.c=1"))

    from soar.loop import plan

    stages = plan(compose_cfg("loop", "scoring.c=1"), tmp_path / "loop", "x")
    assert {s.config["scoring"]["c"] for s in stages if "finetune" in s.config} == {1.0}  # the train stages
