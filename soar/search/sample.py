"""Sampling phase: independent programs from the sampling prompt, `n` completions per prompt, every active task in
one engine call per round; a task stops at its budget or after `early_stop` train-perfect programs."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from soar.data import Task
from soar.engines.base import Engine
from soar.prompts import extract_code, sampling_messages
from soar.search.fewshot import FewshotPool
from soar.search.pipeline import Evaluator
from soar.search.state import SearchState


def run_sampling(
    cfg: DictConfig, tasks: dict[str, Task], engine: Engine, evaluator: Evaluator, state: SearchState,
    fewshot: FewshotPool,
) -> int:
    """Sample until every task is done; resumes from the counts in `state`. Returns the prompts skipped for length."""
    s = cfg.search.sample
    done = {t: state.programs[(t, "sample")] for t in tasks}
    skipped: set[str] = set()
    round_index = min(done.values(), default=0) // s.n
    with tqdm(total=s.budget * len(tasks), initial=sum(done.values()), desc="sample", unit="prog") as bar:
        while active := [t for t in tasks if done[t] < s.budget and t not in skipped
                         and state.perfect[(t, "sample")] < s.early_stop]:
            prompts = {}
            for t in active:
                ids = engine.encode(sampling_messages(tasks[t], fewshot.pick(round_index, t)))
                if len(ids) + s.max_tokens > engine.max_model_len:
                    skipped.add(t)  # a longer prompt would not leave room for the answer
                else:
                    prompts[t] = ids
            if not prompts:
                break
            completions = engine.generate(list(prompts.values()), s.n, s.max_tokens)
            programs = []
            for t, cs in zip(prompts, completions):
                for c in cs[: s.budget - done[t]]:
                    programs.append({"task_id": t, "program_id": f"{cfg.iteration}/{t}/s{done[t]:06d}",
                                     "code": extract_code(c.text), "text": c.text})
                    done[t] += 1
            evaluator.submit("sample", programs)
            bar.update(len(programs))
            bar.set_postfix(train_solved=len(state.train_solved))
            round_index += 1
    return len(skipped)
