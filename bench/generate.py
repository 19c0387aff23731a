"""Generation speed: the vLLM engine against the transformers (HF) engine, and how much of the raw generation rate
the search loop keeps once programs are executed, scored and archived.

The prompts: the real sampling prompts (`sampling_messages` with round 0's few-shot example from the pool of
examples/fewshot_arc_agi_1.jsonl) of the `--tasks` ARC-AGI-1 training tasks with the shortest prompts, `--n`
completions each, temperature 1.0, min_p 0.05, `--max-tokens` new tokens at most, on the embedded
SmolLM2-135M-Instruct (conf/model/smollm2_135m.yaml gives the vLLM settings; its dtype `auto`, resolved by
soar.hardware for this machine, is used by both engines), each answer prefilled with `--answer-prefix` and stopped at
the end of its code (`--stop-at-code`; defaults: the search=tiny settings) in both engines alike.

(1) vllm: every prompt in one `generate` call. Engine start-up and one short warm-up call are not timed.
(2) hf: transformers `generate`, one prompt at a time with its n samples as one batch (HFEngine). It is ~10x
    slower, so it runs on the first `--hf-prompts` prompts only; tokens/s is a rate, so the two compare.
    One short warm-up call is not timed. Tokens are counted up to and including EOS in both engines.
(3) search loop: `run_sampling` with the same vLLM engine (in `Metered`), a real `Executor` (isolated, 1 s
    timeout) and `Evaluator` writing to a temporary `ProgramArchive`, `--rounds` rounds of n per task.
    pipeline_efficiency = (programs archived / wall time of the loop, final drain included)
                        / (completions / seconds spent inside `generate`).

Targets (CPU): vllm_vs_hf >= 8, pipeline_efficiency >= 0.85 (execution hides behind generation).
Run: .venv/bin/python bench/generate.py [--tasks 4 --n 16 --max-tokens 256 --hf-prompts 1 --rounds 2 --stop-at-code 1]
The last line is `RESULT generate vllm_tok_s=<x> hf_tok_s=<y> vllm_vs_hf=<x/y> pipeline_efficiency=<0..1> dtype=<d>
stop_at_code=<0|1> answer_prefix=<json string> hardware="<device, model name and CPU features>"`.
"""
from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from soar.archive import ProgramArchive
from soar.data import Task, load_split, select_tasks
from soar.engines import Sampling, build_engine
from soar.engines.base import Engine, Metered, StopRule
from soar.execution import Executor
from soar.hardware import detect
from soar.prompts import prompt_length, sampling_messages
from soar.search.answers import AnswerFormat
from soar.search.fewshot import FewshotPool
from soar.search.pipeline import Evaluator
from soar.search.sample import run_sampling
from soar.search.state import SearchState

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "conf" / "model" / "smollm2_135m.yaml"
TINY = OmegaConf.load(ROOT / "conf" / "search" / "tiny.yaml")
FEWSHOT = ROOT / "examples" / "fewshot_arc_agi_1.jsonl"
Row = tuple[str, int, int, int, float]  # label, prompts, completions, tokens, seconds


def timed_generate(engine: Engine, label: str, prompts: list[list[int]], n: int, max_tokens: int,
                   stop: StopRule | None) -> Row:
    """One untimed warm-up call on a short prompt, then all `prompts` in one timed call."""
    engine.generate([engine.encode([{"role": "user", "content": "Say hello."}])], 2, 8)
    start = time.perf_counter()
    out = engine.generate(prompts, n, max_tokens, stop=stop)
    seconds = time.perf_counter() - start
    return label, len(prompts), sum(map(len, out)), sum(c.n_tokens for cs in out for c in cs), seconds


def search_loop(engine: Metered, executor: Executor, tasks: dict[str, Task], fewshot: FewshotPool,
                args: argparse.Namespace) -> tuple[int, float, float]:
    """Programs archived by the real sampling loop, its wall time including the final drain, and the seconds the
    evaluator thread was busy executing, scoring and archiving."""
    cfg: DictConfig = OmegaConf.create({"iteration": 0, "search": {
        "stop_at_code": bool(args.stop_at_code), "answer_prefix": args.answer_prefix,
        "sample": {"n": args.n, "budget": args.rounds * args.n, "max_tokens": args.max_tokens, "early_stop": 10**9}}})
    state = SearchState()
    with tempfile.TemporaryDirectory(prefix="soar-bench-") as tmp:
        archive = ProgramArchive(Path(tmp) / "programs.parquet")
        evaluator = Evaluator(executor, tasks, archive, iteration=0, model=engine.name)
        evaluator.listeners.append(lambda kind, rows: state.update(rows))
        start = time.perf_counter()
        try:
            run_sampling(cfg, tasks, engine, evaluator, state, fewshot)
            evaluator.drain()
            wall = time.perf_counter() - start
        finally:
            evaluator.close()
        return len(archive), wall, evaluator.busy_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=4, help="ARC-AGI-1 training tasks (shortest prompts)")
    parser.add_argument("--n", type=int, default=16, help="completions per prompt")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--hf-prompts", type=int, default=1, help="prompts run through the hf engine")
    parser.add_argument("--rounds", type=int, default=2, help="sampling rounds of the search loop")
    parser.add_argument("--stop-at-code", type=int, choices=(0, 1), default=int(TINY.stop_at_code),
                        help="end answers at the end of their code (search.stop_at_code)")
    parser.add_argument("--answer-prefix", default=TINY.answer_prefix or "",
                        help="prefilled start of every answer (search.answer_prefix; '' for none)")
    args = parser.parse_args()
    answers = AnswerFormat(args.answer_prefix, bool(args.stop_at_code))

    tasks = {t.id: t for t in select_tasks(load_split("arc_agi_1", "training"), limit=args.tasks,
                                                 length=prompt_length)}
    model = OmegaConf.load(MODEL)
    sampling = Sampling(temperature=1.0, min_p=0.05, seed=0)
    with Executor(timeout_s=1.0) as executor:
        fewshot = FewshotPool.build(FEWSHOT, [], executor)
        engine = Metered(build_engine(OmegaConf.merge(model, {"engine": "vllm"}), sampling))
        try:
            prompts = [answers.prompt(engine, sampling_messages(t, fewshot.pick(0, t.id))) for t in tasks.values()]
            vllm = timed_generate(engine.engine, "vllm", prompts, args.n, args.max_tokens, answers.stop)  # not metered
            archived, wall, busy = search_loop(engine, executor, tasks, fewshot, args)
        finally:
            engine.close()
            gc.collect()  # vLLM shuts its engine process down now, not after the RESULT line
    hf_engine = build_engine(OmegaConf.merge(model, {"engine": "hf"}), sampling)
    hf = timed_generate(hf_engine, f"hf ({hf_engine.dtype}, first {args.hf_prompts} prompt(s))",
                        prompts[: args.hf_prompts], args.n, args.max_tokens, answers.stop)
    hf_engine.close()

    loop: Row = ("vllm inside the search loop", args.rounds * len(tasks), engine.completions, engine.tokens,
                 engine.seconds)
    print(f"\nprompt lengths {[len(p) for p in prompts]} tokens; n={args.n}, max_tokens={args.max_tokens}, "
          f"temperature={sampling.temperature}, min_p={sampling.min_p}")
    print(f"{'engine':40s} {'prompts':>7s} {'completions':>11s} {'tokens':>7s} {'seconds':>8s} {'tokens/s':>9s}")
    for label, n_prompts, completions, tokens, seconds in (vllm, hf, loop):
        print(f"{label:40s} {n_prompts:7d} {completions:11d} {tokens:7d} {seconds:8.1f} {tokens / seconds:9.1f}")
    vllm_tok_s, hf_tok_s = vllm[3] / vllm[4], hf[3] / hf[4]
    raw, end_to_end = engine.completions / engine.seconds, archived / wall
    print(f"search loop: {archived} programs archived in {wall:.1f} s wall = {end_to_end:.2f} programs/s; "
          f"raw generation {engine.completions} completions in {engine.seconds:.1f} s = {raw:.2f} programs/s; "
          f"evaluator busy {busy:.2f} s")
    print(f"RESULT generate vllm_tok_s={vllm_tok_s:.1f} hf_tok_s={hf_tok_s:.1f} vllm_vs_hf={vllm_tok_s / hf_tok_s:.2f} "
          f"pipeline_efficiency={end_to_end / raw:.3f} dtype={engine.dtype} stop_at_code={args.stop_at_code} "
          f'answer_prefix={json.dumps(args.answer_prefix)} hardware="{detect()}"', flush=True)


if __name__ == "__main__":
    main()
