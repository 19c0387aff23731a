"""Sampling phase: independent programs from the sampling prompt, `n` completions per prompt, every active task in
one engine call per round; a task stops at its budget or after `early_stop` train-perfect programs."""
from __future__ import annotations

from omegaconf import DictConfig

from soar.data import Task
from soar.engines.base import Engine
from soar.prompts import extract_code, sampling_messages
from soar.search.answers import AnswerFormat
from soar.search.cost import token_columns
from soar.search.fewshot import FewshotPool
from soar.search.pipeline import Evaluator
from soar.search.progress import PhaseProgress
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
    answers = AnswerFormat.of(cfg.search)
    with PhaseProgress("sample", s.budget * len(tasks), sum(done.values()), s.max_tokens, state, len(tasks)) as bar:
        while active := [t for t in tasks if done[t] < s.budget and t not in skipped
                         and state.perfect[(t, "sample")] < s.early_stop]:
            prompts = {}
            for t in active:
                ids = answers.prompt(engine, sampling_messages(tasks[t], fewshot.pick(round_index, t)))
                if len(ids) + s.max_tokens > engine.max_model_len:
                    skipped.add(t)  # a longer prompt would not leave room for the answer
                else:
                    prompts[t] = ids
            if not prompts:
                break
            bar.start_call(len(prompts) * s.n)
            completions = engine.generate(list(prompts.values()), s.n, s.max_tokens, stop=answers.stop,
                                          on_progress=bar.generating)
            programs = []
            for t, cs in zip(prompts, completions):
                for c in cs[: s.budget - done[t]]:
                    text = answers.text(c)
                    programs.append({"task_id": t, "program_id": f"{cfg.iteration}/{t}/s{done[t]:06d}",
                                     "code": extract_code(text), "text": text, **token_columns(c)})
                    done[t] += 1
            evaluator.submit("sample", programs)
            bar.round_done(len(programs), len(prompts) * s.n)
            round_index += 1
    return len(skipped)
