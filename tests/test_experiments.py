"""The paper's experiments (conf/experiment/): every arm of every sweep composes at paper scale and plans the stages
its table needs; the CPU preset shrinks each one; each experiment runs end to end with the CPU preset (iteration 0
replayed, a tiny random-weight model through the transformers engine, real finetunes, real searches)."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from soar.loop import Stage, plan

CONF = ROOT / "conf"
EXPERIMENTS = ["fig2_iterations", "table2_sampling_data", "table3_refine_data", "table4_sample_refine_models",
               "table5_all_train", "ttt"]  # the paper's tables and figure; cpu_learning is soar's own
PAPER_MODELS = {"qwen2_5_coder_7b", "qwen2_5_coder_14b", "qwen2_5_coder_32b", "qwen2_5_72b", "mistral_large"}


def load(*overrides: str) -> DictConfig:
    """The loop's config as its job sees it, plus `sweep`: the experiment's hydra.sweeper.params."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("loop", overrides=list(overrides), return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.sweep = params
    return cfg


def arms(cfg: DictConfig) -> list[list[str]]:
    """The jobs of `-m`: the cartesian product of the experiment's hydra.sweeper.params."""
    params = cfg.sweep or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.key_or_group}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [list(job) for job in itertools.product(*axes)]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Looks like a finished search run dir (what base_search / extra_archives need)."""
    d = tmp_path / "base"
    (d / "programs.parquet").mkdir(parents=True)
    (d / "metrics.json").write_text("{}")
    (d / "tasks.json").write_text("{}")
    return d


def stages(cfg: DictConfig, loop_dir: Path) -> dict[str, Stage]:
    return {str(s.run_dir.relative_to(loop_dir)): s for s in plan(cfg, loop_dir, "test")}


def test_every_experiment_is_listed() -> None:
    assert sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")) == sorted([*EXPERIMENTS, "cpu_learning"])


def test_cpu_learning_trains_on_its_tasks_only_and_follows_held_out_ones(archive: Path, tmp_path: Path) -> None:
    """Three seeds sharing iteration 0; 12 training tasks searched and trained on (pooled), 6 evaluation tasks
    searched every iteration and never trained on; the embedded model at CPU scale with soar's data options."""
    cfg = load("experiment=cpu_learning", f"base_search={archive}")
    assert arms(cfg) == [["seed=0"], ["seed=1"], ["seed=2"]]
    assert (cfg.model.name, cfg.finetune.name, cfg.data.split, cfg.data.limit) == (
        "smollm2_135m", "cpu_tiny", "training", 12)
    assert (cfg.finetune.data.refine_relabel, cfg.finetune.data.dedup_code) == (True, "normalised")
    loop = tmp_path / "loop"
    planned = stages(cfg, loop)
    assert list(planned) == ["iter0/heldout", "iter0/train_both", "iter1/search", "iter1/heldout",
                             "iter1/train_both", "iter2/search", "iter2/heldout"]
    for i in range(3):
        held = planned[f"iter{i}/heldout"].config["data"]
        assert (held["split"], held["limit"]) == ("evaluation", 6)
    for i in range(2):
        archives = planned[f"iter{i}/train_both"].config["finetune"]["archives"]
        assert archives == [str(loop / f"iter{j}" / "search") for j in range(i + 1)]  # pooled, never held out


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_arm_composes_at_paper_scale(experiment: str, archive: Path, tmp_path: Path) -> None:
    for arm in arms(load(f"experiment={experiment}")) or [[]]:
        cfg = load(f"experiment={experiment}", f"base_search={archive}", *arm)
        assert cfg.name == experiment and cfg.model.name in PAPER_MODELS
        assert cfg.search.sample.budget == 3000 and cfg.finetune.lora.r == 256 and cfg.data.name == "arc_agi_1"
        assert cfg.finetune.data.refine_relabel is False  # the paper's refinement data: fully correct children only
        planned = plan(cfg, tmp_path / "loop", "x")
        assert planned and all(s.config["logger"]["group"] == experiment for s in planned)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_cpu_preset_shrinks_every_experiment(experiment: str, archive: Path) -> None:
    paper = load(f"experiment={experiment}", f"base_search={archive}")
    cpu = load(f"experiment={experiment}", f"base_search={archive}", "preset=cpu")
    assert (cpu.model.name, cpu.search.name, cpu.finetune.name, cpu.data.limit, cpu.iterations) == (
        "smollm2_135m", "tiny", "cpu_tiny", 6, 2)
    for key in ("name", "models", "ttt", "pool_archives", "final_search", "heldout", "data.split"):  # the design
        assert OmegaConf.select(cpu, key) == OmegaConf.select(paper, key), key
    assert cpu.search.refine.budget == (0 if experiment == "table2_sampling_data" else 8)
    assert arms(cpu) == arms(paper)
    assert cpu.finetune.data.refine_relabel is True  # soar's extension: a 135M model rarely writes a correct child
    assert (paper.finetune.data.dedup_code, cpu.finetune.data.dedup_code) == (False, "normalised")


def test_table2_finetunes_on_sampling_data_and_only_samples(tmp_path: Path) -> None:
    cfg = load("experiment=table2_sampling_data")
    assert [a for [a] in arms(cfg)] == [f"finetune.data.sample_selection={s}"
                                         for s in ("correct", "uniform", "greedy", "greedy_diverse")]
    assert (cfg.search.name, cfg.search.sample.budget, cfg.search.refine.budget) == ("sample3k", 3000, 0)
    s = stages(load("experiment=table2_sampling_data", "finetune.data.sample_selection=uniform"), tmp_path)
    assert list(s) == ["iter0/search", "iter0/train_sample", "iter1/search"]
    train = s["iter0/train_sample"].config["finetune"]
    assert train["data"]["mode"] == "sample" and train["data"]["sample_selection"] == "uniform"
    assert train["base_model"] == s["iter0/train_sample"].config["model"]["path"] == "Qwen/Qwen2.5-Coder-14B-Instruct"
    search = s["iter1/search"].config
    assert search["model"]["path"] == str(tmp_path / "iter0" / "train_sample" / "merged")
    assert search["search"]["refine"]["budget"] == 0 and search["search"]["refine"]["model"] is None


def test_table3_refines_with_the_model_finetuned_on_refinement_data(tmp_path: Path) -> None:
    s = stages(load("experiment=table3_refine_data", "finetune.data.refine_selection=uniform"), tmp_path)
    assert list(s) == ["iter0/search", "iter0/train_refine", "iter1/search"]
    assert s["iter0/train_refine"].config["finetune"]["data"]["refine_selection"] == "uniform"
    search = s["iter1/search"].config
    assert search["model"]["path"] == "Qwen/Qwen2.5-Coder-14B-Instruct"  # the base model samples
    assert search["search"]["refine"]["model"] == str(tmp_path / "iter0" / "train_refine" / "merged")


def test_table4_arms_pick_the_sampling_and_refining_models(tmp_path: Path) -> None:
    jobs = arms(load("experiment=table4_sample_refine_models"))
    assert len(jobs) == 8
    base = "Qwen/Qwen2.5-Coder-14B-Instruct"
    for [arm] in jobs:
        cfg = load("experiment=table4_sample_refine_models", arm)
        s = stages(cfg, tmp_path)
        merged = {m: str(tmp_path / "iter0" / f"train_{m}" / "merged") for m in ("sample", "refine", "both")}
        want = {p: base if cfg.models[p] == "base" else merged[cfg.models[p]] for p in ("sample", "refine")}
        search = s["iter1/search"].config
        refine = search["search"]["refine"]["model"] or search["model"]["path"]
        assert (search["model"]["path"], refine) == (want["sample"], want["refine"]), arm
        trained = sorted(k.split("_")[1] for k in s if "train_" in k)
        assert trained == sorted({cfg.models[p] for p in ("sample", "refine")} - {"base"}), arm
        for k in s:
            if "train_" in k:
                assert s[k].config["finetune"]["data"]["mode"] == k.split("_")[1]


def test_fig2_pools_every_iteration_into_each_finetune(tmp_path: Path) -> None:
    s = stages(load("experiment=fig2_iterations"), tmp_path)
    assert [k for k in s if "search" in k] == [f"iter{i}/search" for i in range(4)]
    assert [len(s[f"iter{i}/train_both"].config["finetune"]["archives"]) for i in range(3)] == [1, 2, 3]
    assert s["iter3/search"].config["model"]["path"] == str(tmp_path / "iter2" / "train_both" / "merged")


def test_table5_needs_an_archive_and_evaluates_on_arc_test(tmp_path: Path, archive: Path) -> None:
    with pytest.raises(ValueError, match=r"^base_search is required by experiment=table5_all_train: give it"):
        plan(load("experiment=table5_all_train"), tmp_path, "x")
    other = tmp_path / "other_loop"
    for i in range(2):  # another model's loop: both its searches join the data
        (other / f"iter{i}" / "search" / "programs.parquet").mkdir(parents=True)
        (other / f"iter{i}" / "search" / "metrics.json").write_text("{}")
        (other / f"iter{i}" / "search" / "tasks.json").write_text("{}")
    s = stages(load("experiment=table5_all_train", f"base_search={archive}", f"extra_archives=[{other}]"), tmp_path)
    assert list(s) == ["iter0/heldout", "iter0/train_both", "iter1/heldout"]
    assert s["iter0/train_both"].config["finetune"]["archives"] == [
        str(tmp_path / "iter0" / "search"), str(other / "iter0" / "search"), str(other / "iter1" / "search")]
    assert all(s[k].config["data"]["split"] == "evaluation" for k in ("iter0/heldout", "iter1/heldout"))


def test_ttt_never_trains_on_ground_truth(tmp_path: Path) -> None:
    s = stages(load("experiment=ttt"), tmp_path)
    assert list(s) == ["iter0/search", "iter0/train_sample", "iter1/search", "iter1/train_sample", "iter2/search"]
    data = s["iter1/train_sample"].config["finetune"]["data"]
    assert (data["use_test"], data["mode"], data["sample_selection"]) == (False, "sample", "greedy_diverse_mv")
    assert all(st.config["data"]["split"] == "evaluation" for st in s.values())


def test_bad_loop_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="models.refine='fine'"):
        plan(load("models.refine=fine"), tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="extra_archives: /nowhere"):
        plan(load("extra_archives=[/nowhere]"), tmp_path, "x")


# -- end to end with the CPU preset ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random-weight Llama with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from soar.weights import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("embedded:smollm2-135m-instruct"))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def replay_search(run_dir: Path, *overrides: str) -> Path:
    proc = subprocess.run([sys.executable, "search.py", f"hydra.run.dir={run_dir}", "model=replay", "data=arc_agi_1",
                           "logger=none", "execution.timeout_s=0.5", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def base_searches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Iteration 0 of every smoke run, replayed with lineage (sampled parents, correct refined children) so that
    every finetune data mode has examples: the shipped training-task programs, and generic programs (identity,
    flips, rotation, transpose) on the 6 smallest evaluation tasks for TTT."""
    from soar.data import load_split, select_tasks
    from soar.prompts import prompt_length

    root = tmp_path_factory.mktemp("base")
    identity, flip = "def transform(grid):\n    return grid\n", "def transform(grid):\n    return grid[::-1]\n"
    rotate = "def transform(grid):\n    return [r[::-1] for r in grid[::-1]]\n"
    transpose = "def transform(grid):\n    return [list(c) for c in zip(*grid)]\n"
    shipped = [json.loads(line) for line in (ROOT / "examples" / "replay_demo.jsonl").read_text().splitlines()]
    training = [{"program_id": f"s{i}", "task_id": p["task_id"], "code": p["code"], "kind": "sample"}
                for i, p in enumerate(shipped)]
    training += [{"program_id": f"p-{t}", "task_id": t, "code": parent, "kind": "sample"}
                 for t, parent in (("6150a2bd", flip), ("74dd1130", identity))]
    training += [{"program_id": f"c-{t}", "task_id": t, "code": child, "kind": "refine", "parent_id": f"p-{t}"}
                 for t, child in (("6150a2bd", rotate), ("74dd1130", transpose))]
    tasks = select_tasks(load_split("arc_agi_1", "evaluation"), None, 6, prompt_length)
    evaluation = [{"task_id": t.id, "code": c} for t in tasks for c in (identity, flip, rotate, transpose)]
    files = {}
    for name, rows in (("training", training), ("evaluation", evaluation)):
        files[name] = root / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"training": replay_search(root / "training", f"model.programs={files['training']}"),
            "evaluation": replay_search(root / "evaluation", "data.split=evaluation",
                                        f"model.programs={files['evaluation']}")}


SMOKE_ARMS = {"table4_sample_refine_models": ["models={sample:sample,refine:refine}"]}  # two models, both used


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_the_cpu_preset(experiment: str, tiny_model: Path,
                                                   base_searches: dict[str, Path], tmp_path: Path) -> None:
    base = base_searches["evaluation" if experiment == "ttt" else "training"]
    loop_dir = tmp_path / "loop"
    cmd = [sys.executable, "-m", "soar.loop", f"experiment={experiment}", "preset=cpu", *SMOKE_ARMS.get(experiment, []),
           f"hydra.run.dir={loop_dir}", f"base_search={base}", "model.engine=hf", f"model.path={tiny_model}",
           "model.dtype=float32", "data.limit=3", "search.sample.budget=2", "search.sample.n=2",
           "search.sample.max_tokens=8", "search.refine.budget=2", "search.refine.n=2", "search.refine.max_tokens=8",
           "finetune.max_examples=4", "finetune.max_seq_len=4096", "execution.timeout_s=0.5", "logger=none"]
    if experiment == "table2_sampling_data":
        cmd.remove("search.refine.budget=2")  # Sample-3k: keep the experiment's refine budget of 0
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = plan(load(*cmd[3:]), loop_dir, "x")
    for stage in planned:
        assert stage.done, stage.run_dir
        used = yaml.safe_load((stage.run_dir / ".hydra" / "config.yaml").read_text())  # what the stage ran on
        assert used["iteration"] == stage.config["iteration"] and used["loop"]["name"] == experiment
        if stage.job == "search":
            assert used["model"]["path"] == stage.config["model"]["path"]
            assert used["search"]["refine"]["model"] == stage.config["search"]["refine"]["model"]
        else:
            assert used["finetune"]["data"] == stage.config["finetune"]["data"]
    summary = json.loads((loop_dir / "summary.json").read_text())
    assert summary and (loop_dir / "learning.png").exists()


@pytest.mark.slow
def test_an_experiment_sweep_under_submitit_logs_one_wandb_group(tiny_model: Path, base_searches: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """`-m` over an experiment's axis with hydra/launcher=local: one loop per job in its own dir, every W&B run of
    every job in the experiment's group, runs named by their arm, no shared ids."""
    from wandb_records import run_contents

    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "soar.loop", "-m", "experiment=table2_sampling_data", "preset=cpu",
         "hydra/launcher=local", f"hydra.sweep.dir={sweep}", "finetune.data.sample_selection=uniform,greedy",
         f"base_search={base_searches['training']}", "model.engine=hf", f"model.path={tiny_model}",
         "model.dtype=float32", "data.limit=2", "search.sample.budget=2", "search.sample.n=2",
         "search.sample.max_tokens=8", "finetune.max_examples=2", "finetune.max_seq_len=4096",
         "execution.timeout_s=0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {}
    for job, arm in ((0, "uniform"), (1, "greedy")):
        for stage in (".", "iter0/train_sample", "iter1/search"):
            (offline,) = (sweep / str(job) / stage / "wandb").glob("offline-run-*")
            runs[job, stage] = run = run_contents(offline)
            assert run["run"].run_group == "table2_sampling_data" and run["exit_code"] == 0
            assert f"finetune.data.sample_selection={arm}" in run["run"].display_name
        assert runs[job, "iter0/train_sample"]["config"]["finetune"]["data"]["sample_selection"] == arm
        assert [r["iteration"] for r in runs[job, "."]["history"] if "search/vote_pass2" in r] == [0, 1]
    assert len({r["run"].run_id for r in runs.values()}) == len(runs)


@pytest.mark.slow
def test_a_finetune_learns_from_archives_of_several_splits(base_searches: dict[str, Path]) -> None:
    """All-train archives next to test-time ones (spec §10): each archive is relabelled against its own split."""
    from soar.finetune.data import load_examples

    archives = f"finetune.archives=[{base_searches['training']},{base_searches['evaluation']}]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["data=arc_agi_1", "logger=none", "finetune.data.mode=sample", archives])
    examples, stats = load_examples(cfg)
    evaluation = {json.loads(line)["task_id"] for line in
                  (base_searches["evaluation"].parent / "evaluation.jsonl").read_text().splitlines()}
    ids = {e.task_id for e in examples}
    assert ids & evaluation and ids - evaluation and stats["rows_unknown_task"] == 0
