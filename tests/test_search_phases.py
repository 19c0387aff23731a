"""The sampling and refinement loops with a scripted engine (answers chosen by the test), the real executor and a
real archive: early stop, prompts too long for the context, lineage, h of failing children, resume after a killed
run."""
from __future__ import annotations

import shutil
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf
from scripted import ScriptedEngine

from soar.archive import ProgramArchive
from soar.data import load_split
from soar.execution import Executor
from soar.search.fewshot import FewshotPool
from soar.search.pipeline import Evaluator
from soar.search.refine import run_refinement
from soar.search.sample import run_sampling
from soar.search.state import SearchState

ROTATE = "```python\ndef transform(grid):\n    return [row[::-1] for row in grid[::-1]]\n```"
IDENTITY = "Here it is:\n```python\ndef transform(grid):\n    return grid\n```"  # SOAR's filters reject it as a parent
FLIP = "```python\ndef transform(grid):\n    return grid[::-1]\n```"  # wrong on both tasks, passes the filters
SPLIT = load_split("arc_agi_1", "training")
TASKS = {t: SPLIT[t] for t in ("6150a2bd", "d631b094")}


def config(**search: object) -> OmegaConf:
    """search=tiny with `search` merged in; the scripted answers are whole answers, so no answer prefix unless given."""
    base = OmegaConf.load(ROOT / "conf" / "search" / "tiny.yaml")
    return OmegaConf.create({"seed": 0, "iteration": 0,
                             "search": OmegaConf.merge(base, {"answer_prefix": None}, search)})


def sample(cfg, engine, executor, archive: ProgramArchive, state: SearchState, tasks=TASKS) -> int:
    evaluator = Evaluator(executor, tasks, archive, iteration=0, model="scripted")
    evaluator.listeners.append(lambda kind, rows: state.update(rows))
    fewshot = FewshotPool([(SPLIT["3c9b0459"], "def transform(grid):\n    return grid\n")])
    try:
        skipped = run_sampling(cfg, tasks, engine, evaluator, state, fewshot)
        evaluator.drain()
    finally:
        evaluator.close()
    return skipped


def refine(cfg, engine, executor, archive: ProgramArchive, state: SearchState, tasks=TASKS) -> int:
    """The refinement phase on what `archive` holds (a resumed run when it already has refined programs)."""
    evaluator = Evaluator(executor, tasks, archive, iteration=0, model="scripted")
    evaluator.listeners.append(lambda kind, rows: state.update(rows))
    try:
        skipped = run_refinement(cfg, tasks, archive.read().to_pylist(), engine, evaluator, state, use_test=True)
        evaluator.drain()
    finally:
        evaluator.close()
    return skipped


def test_sampling_fills_the_budget_with_extracted_programs(tmp_path: Path, executor: Executor) -> None:
    cfg = config(sample={"budget": 6, "n": 4})
    archive, state = ProgramArchive(tmp_path / "a"), SearchState()
    assert sample(cfg, ScriptedEngine(lambda _: IDENTITY), executor, archive, state) == 0
    rows = archive.read().to_pylist()
    assert sorted(r["program_id"] for r in rows if r["task_id"] == "6150a2bd") == [
        f"0/6150a2bd/s{i:06d}" for i in range(6)]  # 4 + the 2 left of the budget
    assert all(r["code"] == "def transform(grid):\n    return grid" and r["text"] == IDENTITY for r in rows)
    assert {r["kind"] for r in rows} == {"sample"}


def test_few_shot_example_precedes_the_task(tmp_path: Path, executor: Executor) -> None:
    engine = ScriptedEngine(lambda _: IDENTITY)
    sample(config(sample={"budget": 4, "n": 4}), engine, executor, ProgramArchive(tmp_path / "a"), SearchState())
    assert len(engine.prompts) == 2
    for prompt in engine.prompts:
        assert prompt.index("## Solution:") < prompt.index("# Task to solve:")


def test_answers_continue_the_answer_prefix(tmp_path: Path, executor: Executor) -> None:
    """search.answer_prefix: the prompt ends with it, the model writes the rest, the archive keeps the whole answer
    (what hindsight trains on), and stop at code cuts at the fence that closes the prefixed block."""
    prefix = "```python\ndef transform(grid"
    cfg = config(answer_prefix=prefix, sample={"budget": 4, "n": 4}, refine={"budget": 2, "n": 2})
    rest = "):\n    return grid[::-1]\n```\nThen a second try:\n```python\ndef transform(grid):\n    return 0\n```"
    engine = ScriptedEngine(lambda _: rest)
    archive, state = ProgramArchive(tmp_path / "a"), SearchState()
    sample(cfg, engine, executor, archive, state)
    refine(cfg, engine, executor, archive, state)
    rows = archive.read().to_pylist()
    assert {r["kind"] for r in rows} == {"sample", "refine"}
    assert all(p.endswith(prefix) for p in engine.prompts)
    first = prefix + "):\n    return grid[::-1]\n```"
    assert all(r["text"] == first and r["code"] == "def transform(grid):\n    return grid[::-1]" for r in rows)
    assert all(r["valid"] for r in rows)


def test_early_stop_after_enough_train_perfect_programs(tmp_path: Path, executor: Executor) -> None:
    cfg = config(sample={"budget": 40, "n": 4, "early_stop": 4})
    archive, state = ProgramArchive(tmp_path / "a"), SearchState()
    sample(cfg, ScriptedEngine(lambda p: ROTATE if "[[3 3 8]" in p else IDENTITY), executor, archive, state)
    # 6150a2bd is solved by ROTATE from round 0 on: it stops once that round is evaluated, and generation
    # runs at most 2 rounds ahead of evaluation; d631b094 is never solved and uses its whole budget
    assert state.programs[("6150a2bd", "sample")] <= 3 * 4
    assert state.perfect[("6150a2bd", "sample")] >= 4
    assert state.programs[("d631b094", "sample")] == 40


def test_prompts_longer_than_the_context_are_skipped_and_counted(tmp_path: Path, executor: Executor) -> None:
    engine = ScriptedEngine(lambda _: IDENTITY, max_model_len=500)
    archive = ProgramArchive(tmp_path / "a")
    assert sample(config(), engine, executor, archive, SearchState()) == 2
    assert engine.prompts == [] and len(archive) == 0


def test_sampling_resumes_after_a_killed_run(tmp_path: Path, executor: Executor) -> None:
    cfg = config(sample={"budget": 12, "n": 4})
    archive = ProgramArchive(tmp_path / "a")
    sample(cfg, ScriptedEngine(lambda _: IDENTITY), executor, archive, SearchState())
    parts = archive.parts()
    for part in parts[1:]:  # killed after the first round was archived
        part.unlink()
    state = SearchState()
    state.update(ProgramArchive(tmp_path / "a").read().to_pylist())
    engine = ScriptedEngine(lambda _: IDENTITY)
    sample(cfg, engine, executor, ProgramArchive(tmp_path / "a"), state)
    ids = ProgramArchive(tmp_path / "a").read(["program_id"]).column("program_id").to_pylist()
    assert len(ids) == len(set(ids)) == 24
    assert len(engine.prompts) == 4  # only the two missing rounds were generated again


def test_refinement_children_keep_their_parent(tmp_path: Path, executor: Executor) -> None:
    cfg = config(sample={"budget": 4, "n": 4}, refine={"budget": 6, "n": 2, "islands": 2})
    archive, state = ProgramArchive(tmp_path / "a"), SearchState()
    sample(cfg, ScriptedEngine(lambda _: FLIP), executor, archive, state)
    engine = ScriptedEngine(lambda p: ROTATE if "Previous implementation" in p else FLIP)
    refine(cfg, engine, executor, archive, state)
    rows = archive.read().to_pylist()
    samples = {r["program_id"] for r in rows if r["kind"] == "sample"}
    children = [r for r in rows if r["kind"] == "refine"]
    assert len(children) == 2 * 6  # both tasks have sampled parents that pass the filters (flip)
    assert all(c["parent_id"] in samples or c["parent_id"] in {k["program_id"] for k in children} for c in children)
    assert {c["program_id"].split("/")[2][:2] for c in children} == {"r0", "r1"}  # islands
    parents = ("return grid[::-1]", "return [row[::-1] for row in grid[::-1]]")  # a sample's or a child's code
    assert all(any(f"def transform(grid):\n    {code}" in p for code in parents) for p in engine.prompts)
    assert any(c["train_acc"] == 1.0 for c in children if c["task_id"] == "6150a2bd")


# d631b094: the output is one row of the input's coloured cells (4 train pairs; the test input has 5 cells)
FIRST_CELL = "```python\ndef transform(grid):\n    return [[v for r in grid for v in r if v][:1]]\n```"  # h = 0.25
PARTIAL = ("```python\ndef transform(grid):\n    cells = [v for r in grid for v in r if v]\n"
           "    if len(cells) == 5:\n        raise ValueError('the test input')\n"
           "    return [cells] if len(cells) < 4 else [[0]]\n```")  # right on 3 of 4 train pairs, crashes on test


def test_a_child_that_crashes_on_the_test_input_keeps_its_train_accuracy(tmp_path: Path, executor: Executor) -> None:
    """Finding 3: h = mean of the train-pair flags (errors count per input), not 0 for any failure. Greedy picks
    the partly failing child (h = 0.75) over the sampled parents (h = 0.25) in the next round."""
    tasks = {"d631b094": SPLIT["d631b094"]}
    cfg = config(sample={"budget": 4, "n": 4}, refine={"budget": 4, "n": 2, "selector": "greedy"})
    archive, state = ProgramArchive(tmp_path / "a"), SearchState()
    sample(cfg, ScriptedEngine(lambda _: FIRST_CELL), executor, archive, state, tasks)
    refine(cfg, ScriptedEngine(lambda p: ROTATE if "raise ValueError" in p else PARTIAL), executor, archive, state,
           tasks)
    children = [r for r in archive.read().to_pylist() if r["kind"] == "refine"]
    first, second = children[:2], children[2:]
    assert all(c["train_acc"] == 0.75 and not c["valid"] and "the test input" in c["error"] for c in first)
    assert {c["parent_id"] for c in second} == {first[0]["program_id"]}
    arms = {a.program_id: a for a in state.pools[("d631b094", 0)].arms}
    assert arms[first[0]["program_id"]].train_acc == 0.75 and arms[first[0]["program_id"]].n_refined == 2


def mutate(prompt: str) -> str:
    """A deterministic child of the prompt's parent: one of a few behaviours, tagged so that lineages differ (the
    salt "3" gives both tasks train-perfect children)."""
    h = zlib.crc32(("3" + prompt).encode())
    body = ["return grid[::-1]", "return [row[::-1] for row in grid[::-1]]", "return [[v for r in grid for v in r if v]]",
            "return [[v for r in grid for v in r if v][:1]]", "raise ValueError('no')"][h % 5]
    return f"```python\ndef transform(grid):\n    tag = {h % 1000}\n    {body}\n```"


def lineage(archive: ProgramArchive) -> list[tuple]:
    return [(r["program_id"], r["parent_id"], r["code"]) for r in archive.read().to_pylist()]


def pool_counts(state: SearchState) -> dict:
    return {key: [(a.program_id, a.train_acc, a.bin, a.n_refined) for a in pool.arms] for key, pool in state.pools.items()}


@pytest.mark.parametrize("lag, early_stop, count_visits", [(1, 100, True), (2, 100, True), (1, 3, True),
                                                            (1, 100, False)])
def test_a_resumed_refinement_continues_exactly_as_an_uninterrupted_one(tmp_path: Path, executor: Executor, lag: int,
                                                                        early_stop: int, count_visits: bool) -> None:
    """Findings 4 and 5: N counts completions (n = 2 per pick; none with count_visits=false, SOAR's code) and a run
    killed after k rounds and resumed writes the same programs (ids, parents, code) and ends with the same pools and
    counts as one never killed."""
    cfg = config(sample={"budget": 4, "n": 4}, refine={"budget": 16, "n": 2, "islands": 2, "lag": lag,
                                                       "early_stop": early_stop, "count_visits": count_visits})
    first = {"6150a2bd": FLIP, "d631b094": FIRST_CELL}
    sampler = ScriptedEngine(lambda p: first["6150a2bd" if "[[3 3 8]" in p or "[[5 5 2]" in p else "d631b094"])
    whole, state = ProgramArchive(tmp_path / "whole"), SearchState()
    sample(cfg, sampler, executor, whole, state)
    refine(cfg, ScriptedEngine(mutate), executor, whole, state)
    rows = whole.read().to_pylist()
    children = [r for r in rows if r["kind"] == "refine"]
    assert {r["task_id"] for r in children if r["train_acc"] == 1.0} == set(TASKS)
    assert len(children) == 32 if early_stop == 100 else 8 < len(children) < 32  # early stop: one task stops
    assert len({r["parent_id"] for r in children}) > 6  # children became parents: the pools evolved
    for (task, island), pool in state.pools.items():  # N = completions generated from the arm (Fig. 11)
        born = Counter(r["parent_id"] for r in children if r["task_id"] == task and f"/r{island}-" in r["program_id"])
        assert {a.program_id: a.n_refined for a in pool.arms if a.n_refined} == (dict(born) if count_visits else {})
    for k in range(1, len(whole.parts()) - 1):  # killed after k refinement rounds were archived
        killed = tmp_path / f"killed{k}"
        shutil.copytree(whole.path, killed)
        for part in ProgramArchive(killed).parts()[1 + k:]:
            part.unlink()
        resumed, again = ProgramArchive(killed), SearchState()
        again.update(resumed.read().to_pylist())
        left = len(rows) - len(resumed)
        engine = ScriptedEngine(mutate)
        refine(cfg, engine, executor, resumed, again)
        assert lineage(resumed) == lineage(whole), k
        assert pool_counts(again) == pool_counts(state), k
        assert len(engine.prompts) == left // 2  # only the missing rounds were generated, n = 2 per prompt


@pytest.mark.parametrize("key, value", [("lag", 0), ("lag", -1), ("lag", 1.5), ("lag", True), ("lag", "1"),
                                        ("count_visits", 1), ("count_visits", "yes")])
def test_bad_refine_settings_are_refused_naming_the_key(tmp_path: Path, executor: Executor, key: str,
                                                        value: object) -> None:
    with pytest.raises(ValueError, match=f"search.refine.{key}="):
        refine(config(refine={key: value}), ScriptedEngine(lambda _: FLIP), executor, ProgramArchive(tmp_path / "a"),
               SearchState())


def test_other_weights_refine_after_the_sampling_engine_is_closed(tmp_path: Path, monkeypatch) -> None:
    """search.refine.model (Table 4): sampling on model.path, then that engine is closed and the refinement
    weights are loaded with the same engine settings."""
    import soar.search.llm as llm
    from soar.tracking import NullTracker

    events: list[str] = []

    class Recorded(ScriptedEngine):
        def __init__(self, path: str) -> None:
            super().__init__(lambda _: FLIP if path == "base-dir" else ROTATE)
            self.path = path
            events.append(f"open {path}")

        def close(self) -> None:
            events.append(f"close {self.path}")

    def build(model, sampling):
        assert model.engine == "hf" and model.lora is None
        return Recorded(model.path)

    monkeypatch.setattr(llm, "build_engine", build)
    base = OmegaConf.load(ROOT / "conf" / "execution" / "default.yaml")
    cfg = OmegaConf.merge(config(sample={"budget": 4, "n": 2}, refine={"budget": 2, "n": 2, "model": "refiner-dir"}),
                          {"data": {"split": "training"}, "model": {"name": "m", "engine": "hf", "path": "base-dir",
                                                                    "lora": None},
                           "execution": OmegaConf.merge(base, {"workers": 1, "timeout_s": 0.5})})
    archive = ProgramArchive(tmp_path / "a")
    out = llm.run_llm(cfg, SPLIT, TASKS, archive, NullTracker())
    assert events == ["open base-dir", "close base-dir", "open refiner-dir", "close refiner-dir"]
    rows = archive.read().to_pylist()
    assert {r["code"] for r in rows if r["kind"] == "sample"} == {"def transform(grid):\n    return grid[::-1]"}
    assert {r["code"] for r in rows if r["kind"] == "refine"} == {
        "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]"}
    assert out["n_programs_generated"] == 2 * 4 + 2 * 2  # both engines counted


@pytest.mark.parametrize("use_fewshot", [True, False])
def test_use_fewshot_false_gives_every_sampling_prompt_no_example(tmp_path: Path, monkeypatch,
                                                                 use_fewshot: bool) -> None:
    """search.use_fewshot=false (SOAR's --use_fewshot_example): no shipped example, and a solution the run finds
    (ROTATE solves 6150a2bd) does not join a pool either; true shows one example in every sampling prompt."""
    import soar.search.llm as llm
    from soar.tracking import NullTracker

    engine = ScriptedEngine(lambda _: ROTATE)
    monkeypatch.setattr(llm, "build_engine", lambda model, sampling: engine)
    base = OmegaConf.load(ROOT / "conf" / "execution" / "default.yaml")
    cfg = OmegaConf.merge(config(sample={"budget": 4, "n": 2}, refine={"budget": 0}, use_fewshot=use_fewshot),
                          {"data": {"split": "training"}, "model": {"name": "m", "engine": "hf", "path": "m"},
                           "execution": OmegaConf.merge(base, {"workers": 1, "timeout_s": 0.5})})
    llm.run_llm(cfg, SPLIT, TASKS, ProgramArchive(tmp_path / "a"), NullTracker())
    shown = [p.count("Here is an example of an ARC-AGI task") for p in engine.prompts]
    assert len(shown) == 2 * 2 and shown == [int(use_fewshot)] * 4


def test_the_live_line_shows_rate_running_eta_and_solved(capsys: pytest.CaptureFixture) -> None:
    """What a user watches during a generate call: it changes with every engine step, not only between rounds."""
    from soar.search.progress import PhaseProgress

    state = SearchState()
    with PhaseProgress("sample", total=32, initial=0, max_tokens=100, state=state, n_tasks=2, interval=0) as bar:
        bar.start_call(16)
        bar.generating(0, 0)
        assert "ETA ?" in bar.bar.postfix  # nothing generated yet: no rate to go by
        bar.generating(160, 0)
        assert "16 running" in bar.bar.postfix and "solved 0/2 (train 0)" in bar.bar.postfix
        bar.generating(800, 8)  # 8 finished at 100 tokens each, 8 still running
        assert bar.bar.n == 8 and "8 running" in bar.bar.postfix and "ETA ?" not in bar.bar.postfix
        state.update([{"task_id": "t", "kind": "sample", "train_acc": 1.0, "correct_test_input": [True]}])
        bar.generating(1600, 16)
        bar.round_done(kept=12, generated=16)  # 4 completions were over the budget
        assert bar.bar.n == 12 and "running" not in bar.bar.postfix and "solved 1/2 (train 1)" in bar.bar.postfix
    err = capsys.readouterr().err
    assert "sample 12/32 programs" in err and "tok/s" in err
