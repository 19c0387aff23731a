"""Few-shot examples from earlier generations (paper App. D.5): verified solutions of earlier training-split
searches come first in the pool, evaluation-split searches are refused, and the loop hands iteration i > 0 the main
searches before it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from soar.archive import ProgramArchive, program_row
from soar.data import load_split
from soar.execution import Executor
from soar.loop import plan
from soar.runs import SearchRun
from soar.scoring import score_program
from soar.search.fewshot import FewshotPool
from soar.search.run import check_config

SHIPPED = ROOT / "examples" / "fewshot_arc_agi_1.jsonl"
SPLIT = load_split("arc_agi_1", "training")
FLIP = "def transform(grid):\n    return grid[::-1]\n"            # solves 68b16354
MIRROR = "def transform(grid):\n    return [r[::-1] for r in grid]\n"  # solves 67a3c6ac
IDENTITY = "def transform(grid):\n    return grid\n"


def search_dir(path: Path, split: str, programs: list[tuple[str, str, bool]], executor: Executor) -> Path:
    """A finished search run dir on arc_agi_1/`split`: (task id, code, archived as solved) rows, each really
    executed; `solved=True` on a wrong program forges the archived verdict (an archive scored by an older judge)."""
    tasks = load_split("arc_agi_1", split)
    rows = []
    for k, (tid, code, forged) in enumerate(programs):
        task = tasks[tid]
        outputs = executor.run([(code, task.inputs)])[0]
        score = score_program(task, outputs)
        row = program_row(task, code, outputs, score, program_id=f"0/{tid}/s{k:06d}", kind="sample")
        if forged:
            row.update(train_acc=1.0, correct_test_input=[True] * len(task.test))
        rows.append(row)
    run = SearchRun(path)
    run.start()
    ProgramArchive(run.archive).append(rows)
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "arc_agi_1", "split": split,
                                                                          "path": None}}))
    (path / "metrics.json").write_text("{}")
    (path / "tasks.json").write_text("{}")
    run.finish()
    return path


def test_earlier_solutions_come_first_verified_by_the_executor(tmp_path: Path, executor: Executor) -> None:
    archive = search_dir(tmp_path / "iter0", "training", [
        ("68b16354", IDENTITY, True),   # archived as solved, wrong when run: never shown
        ("67a3c6ac", IDENTITY, False),  # not solved
        ("68b16354", FLIP, False),
        ("67a3c6ac", MIRROR, False),
        ("68b16354", FLIP + "\n", False),  # a second solution of a task already in the pool
    ], executor)
    shipped = FewshotPool.build(SHIPPED, [], executor).examples
    pool = FewshotPool.build(SHIPPED, [archive], executor).examples
    assert [(t.id, code) for t, code in pool[:2]] == [("68b16354", FLIP), ("67a3c6ac", MIRROR)]
    assert pool[2:] == shipped and "68b16354" not in {t.id for t, _ in shipped}
    assert FewshotPool.build(SHIPPED, [archive], executor).pick(0, "68b16354")[0].id == "67a3c6ac"

    # a search on a split without ground truth never shows that split's tasks
    assert FewshotPool.build(SHIPPED, [archive], executor, exclude={"68b16354"}).examples[0][0].id == "67a3c6ac"

    # a resumed run starts with its own solutions so far (scored by this run: the forged row is not one), in order
    resumed = FewshotPool(shipped[:1])
    resumed.add_solved(ProgramArchive(archive / "programs.parquet").read().to_pylist()[1:], SPLIT)
    assert [(t.id, code) for t, code in resumed.examples[1:]] == [("68b16354", FLIP), ("67a3c6ac", MIRROR)]


def search_config(archives: list[str] | str) -> DictConfig:
    value = archives if isinstance(archives, str) else json.dumps(archives)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("search", overrides=["model=replay", f"search.fewshot_archives={value}"])


def test_only_finished_training_split_searches_give_examples(tmp_path: Path, executor: Executor) -> None:
    evaluation = search_dir(tmp_path / "eval", "evaluation", [("00576224", IDENTITY, False)], executor)
    with pytest.raises(ValueError, match=r"search.fewshot_archives: .*eval searched arc_agi_1/evaluation"):
        FewshotPool.build(SHIPPED, [evaluation], executor)
    with pytest.raises(ValueError, match=r"search.fewshot_archives: .*searched arc_agi_1/evaluation"):
        check_config(search_config([str(evaluation)]))
    (tmp_path / "running" / "programs.parquet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"search.fewshot_archives: .*running is not a finished search"):
        check_config(search_config([str(tmp_path / "running")]))
    training = search_dir(tmp_path / "train", "training", [("68b16354", FLIP, False)], executor)
    check_config(search_config([str(training)]))
    with pytest.raises(ValueError, match="search.fewshot_archives=.*must be a list"):
        check_config(search_config(str(training)))  # one dir, not a list


def loop_searches(tmp_path: Path, *overrides: str) -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("loop", overrides=["iterations=3", "heldout.split=evaluation", *overrides])
    loop = tmp_path / "loop"
    return {str(s.run_dir.relative_to(loop)): [str(Path(d).relative_to(loop)) for d in
                                               s.config["search"]["fewshot_archives"]]
            for s in plan(cfg, loop, "x") if s.job == "search"}


def test_the_loop_gives_each_iteration_the_searches_before_it(tmp_path: Path) -> None:
    assert loop_searches(tmp_path) == {
        "iter0/search": [], "iter0/heldout": [],
        "iter1/search": ["iter0/search"], "iter1/heldout": ["iter0/search"],
        "iter2/search": ["iter1/search", "iter0/search"], "iter2/heldout": ["iter1/search", "iter0/search"],
    }
    # test-time training searches the evaluation split: its programs were chosen without ground truth
    assert all(v == [] for v in loop_searches(tmp_path, "data.split=evaluation", "ttt=true").values())


def test_fewshot_finetuned_false_searches_finetuned_models_without_examples(tmp_path: Path) -> None:
    """loop.fewshot_finetuned=false: a search whose sampler is a finetuned model uses the no-few-shot prompt it was
    trained on; the base model's searches (iteration 0, or models.sample=base) keep their examples."""
    def use_fewshot(*overrides: str) -> dict[str, bool]:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("loop", overrides=["iterations=3", "heldout.split=evaluation", *overrides])
        loop = tmp_path / "loop"
        return {str(s.run_dir.relative_to(loop)): s.config["search"]["use_fewshot"]
                for s in plan(cfg, loop, "x") if s.job == "search"}

    assert all(use_fewshot().values())  # the paper: few-shot prompting stays on for finetuned models
    assert use_fewshot("fewshot_finetuned=false") == {
        "iter0/search": True, "iter0/heldout": True, "iter1/search": False, "iter1/heldout": False,
        "iter2/search": False, "iter2/heldout": False}
    assert all(use_fewshot("fewshot_finetuned=false", "models.sample=base").values())
