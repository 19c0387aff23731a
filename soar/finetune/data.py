"""What the model trains on: search archives -> hindsight chat examples -> token ids with response-only labels
(batched by soar.finetune.batches).

Archives -> examples (`load_examples`): each archive is relabelled against the split its search searched, and
`finetune.data.use_test` is decided per archive: `auto` (default) uses the tasks' ground-truth test outputs only
for an archive of a training split (soar.runs.ground_truth_allowed, the search's own rule), `false` never, `true`
always, with a WARNING naming every archive of another split (an evaluation split's test outputs then choose the
training data). Archives that differ in use_test are built apart and their examples and statistics put together.

Tokenisation mirrors inference: the prompt is the chat template applied to the messages with the generation
prompt (what vLLM sees), tokenised on its own; the target is the assistant response followed by the template's
end-of-turn marker, as tokenised right after the prompt. Labels are -100 over the prompt (system, user and the
assistant header) and equal the input ids over the response and end-of-turn marker, which the model must learn in
order to stop. Whatever the template puts after the end-of-turn token (e.g. Qwen's "\n") is not used. An example
longer than `max_seq_len` is dropped and counted, never truncated.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
IGNORE = -100


class ChatLike(Protocol):
    @property
    def messages(self) -> list[dict[str, str]]: ...
    @property
    def response(self) -> str: ...


@dataclass
class ChatExample:
    """A finetuning example as stored in examples.jsonl (hindsight's Example has the same fields)."""

    messages: list[dict[str, str]]
    response: str
    task_id: str = ""
    kind: str = ""
    program_id: str = ""


def write_examples(path: Path, examples: Sequence[ChatLike]) -> None:
    """One JSON object per line; written to a temp file and renamed, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for ex in examples:
            row = {k: getattr(ex, k, "") for k in ("task_id", "kind", "program_id")}
            row |= {"messages": list(ex.messages), "response": ex.response}
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def read_examples(path: Path) -> list[ChatExample]:
    with path.open() as f:
        return [ChatExample(**json.loads(line)) for line in f if line.strip()]


@dataclass
class Tokenized:
    input_ids: list[list[int]]
    labels: list[list[int]]
    kept: list[int]                 # index in the input sequence of each kept example
    n_dropped: int                  # longer than max_seq_len
    dropped_lengths: list[int] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def _special_strings(tokenizer: Any) -> list[str]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials = {t.content for t in added.values() if getattr(t, "special", False)}
    specials |= set(getattr(tokenizer, "all_special_tokens", []) or [])
    return sorted((s for s in specials if s), key=len, reverse=True)


def split_chat(tokenizer: Any, messages: Sequence[dict[str, str]], response: str) -> tuple[str, str]:
    """(prompt text, target text): target = response + the end-of-turn marker that closes it.

    The prompt text is the template with the generation prompt plus anything the template inserts between the
    assistant header and the content; the end-of-turn marker is the template's text after the response up to and
    including its first special token (the whole tail if it has none)."""
    msgs = list(messages)
    if msgs and msgs[-1].get("role") == "assistant":
        raise ValueError("example messages must not contain the assistant turn; it is `response`")
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": response}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("chat template: the conversation with the response does not start with the generation prompt")
    rest = full[len(prompt):]
    at = rest.find(response)
    if at < 0:
        raise ValueError("chat template: the rendered assistant turn does not contain the response verbatim")
    prompt += rest[:at]
    tail = rest[at + len(response):]
    hits = [(tail.find(s), -len(s)) for s in _special_strings(tokenizer) if s in tail]
    end = len(tail)
    if hits:  # through the first special token (the longest one if several start there)
        start, minus_len = min(hits)
        end = start - minus_len
    return prompt, response + tail[:end]


def tokenize_examples(tokenizer: Any, examples: Sequence[ChatLike], max_seq_len: int) -> Tokenized:
    """Tokenise every example; labels -100 over the prompt; drop (and count) examples over max_seq_len tokens."""
    pairs = [split_chat(tokenizer, ex.messages, ex.response) for ex in examples]
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    if not examples:
        return Tokenized([], [], [], 0)
    enc_p = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    enc_f = tokenizer([p + t for p, t in zip(prompts, targets)], add_special_tokens=False)["input_ids"]
    out = Tokenized([], [], [], 0)
    for i, (p, f) in enumerate(zip(enc_p, enc_f)):
        if list(f[:len(p)]) == list(p):
            t = f[len(p):]  # the response as tokenised in context (no spurious sentencepiece prefix space)
        else:  # a token merged across the boundary: keep the prompt as at inference, tokenise the target alone
            t = tokenizer(targets[i], add_special_tokens=False)["input_ids"]
        n = len(p) + len(t)
        if n > max_seq_len:
            out.n_dropped += 1
            out.dropped_lengths.append(n)
            continue
        out.input_ids.append(list(p) + list(t))
        out.labels.append([IGNORE] * len(p) + list(t))
        out.kept.append(i)
    return out


# -- archives -> hindsight examples --------------------------------------------------------------------------------
Split = tuple[str, str, str | None]  # (dataset, split, path) as load_split takes them


def archive_splits(cfg: DictConfig) -> dict[str, Split]:
    """Each archive's (dataset, split, path): its search's own, else `cfg.data` (run dirs without a config)."""
    from soar.runs import SearchRun

    default = (cfg.data.dataset, cfg.data.split, cfg.data.path)
    return {str(d): SearchRun(Path(d)).split() or default for d in dict.fromkeys(map(str, cfg.finetune.archives))}


def archive_use_test(use_test: Any, splits: dict[str, Split]) -> dict[str, bool]:
    """finetune.data.use_test resolved per archive (see the module doc); forcing it on a split that is not a
    training split logs a WARNING naming the archive and the split."""
    from soar.runs import ground_truth_allowed

    resolved = {}
    for d, (dataset, split, _) in splits.items():
        allowed = ground_truth_allowed(split)
        if use_test is True and not allowed:
            log.warning("finetune.data.use_test=true: the training data of archive %s is chosen with the "
                        "ground-truth test outputs of %s/%s, which is not a training split (finetune.data."
                        "use_test=auto leaves them out)", d, dataset, split)
        resolved[d] = allowed if use_test == "auto" else bool(use_test)
    return resolved


def archive_tasks(splits: dict[str, Split]) -> dict[str, Any]:
    """The tasks of every archive's own split, together: archives of several splits (e.g. all-train archives next
    to test-time ones) relabel against the right tasks. A task id with different contents in two splits is an
    error."""
    from soar.data import load_split

    tasks: dict[str, Any] = {}
    for data in dict.fromkeys(splits.values()):
        for tid, task in load_split(*data).items():
            if tasks.setdefault(tid, task) != task:
                raise ValueError(f"finetune.archives: task {tid} differs between the archives' splits ({data})")
    return tasks


def load_examples(cfg: DictConfig) -> tuple[list[Any], dict[str, Any]]:
    """Examples from the configured archives via soar.hindsight.build_examples, one build per use_test value; the
    statistics say which archive used the test outputs (`archives`)."""
    import pyarrow as pa

    from soar.archive import ProgramArchive
    from soar.hindsight import HINDSIGHT_COLUMNS, build_examples
    from soar.runs import SearchRun
    from soar.scoring import DEFAULT_C

    splits = archive_splits(cfg)
    use_test = archive_use_test(cfg.finetune.data.use_test, splits)
    tasks = archive_tasks(splits)
    data: dict[str, Any] = OmegaConf.to_container(cfg.finetune.data, resolve=True)  # type: ignore[assignment]
    vote_c = float(OmegaConf.select(cfg, "scoring.c", default=DEFAULT_C))  # a stage.yaml of an older loop has none
    builds = []
    for value in dict.fromkeys(use_test.values()):
        tables = [ProgramArchive(SearchRun(Path(d)).archive).read(HINDSIGHT_COLUMNS)
                  for d, u in use_test.items() if u == value]
        table = pa.concat_tables(tables, promote_options="default")
        builds.append(build_examples(table, tasks, {**data, "use_test": value}, seed=cfg.seed, vote_c=vote_c))
    examples = [e for exs, _ in builds for e in exs]
    stats = builds[0][1] if len(builds) == 1 else merged_stats([s for _, s in builds], examples)
    stats["archives"] = [{"path": d, "split": "/".join(map(str, splits[d][:2])), "use_test": u}
                         for d, u in use_test.items()]
    return examples, stats


def merged_stats(parts: list[dict[str, Any]], examples: Sequence[ChatLike]) -> dict[str, Any]:
    """The statistics of several hindsight builds as one: counts summed, per-task spreads combined exactly
    (their mean is examples / tasks), response lengths recomputed, `config.use_test` = "per archive"."""
    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in a | b}
        return a + b if isinstance(a, (int, float)) and not isinstance(a, bool) else a

    out = functools.reduce(add, parts)
    out["config"] = {**parts[0]["config"], "use_test": "per archive"}
    for kind in out["per_task"]:
        spreads = [p["per_task"][kind] for p in parts if p["tasks"]]
        out["per_task"][kind] = _spread([]) if not spreads else {
            "min": min(s["min"] for s in spreads), "mean": out["examples"][kind] / out["tasks"],
            "max": max(s["max"] for s in spreads)}
    by_kind = {"sample": [e for e in examples if getattr(e, "kind", "") == "sample"],
               "refine": [e for e in examples if getattr(e, "kind", "") == "refine"], "all": list(examples)}
    out["response_chars"] = {k: _spread([len(e.response) for e in exs]) for k, exs in by_kind.items()}
    return out


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values else {
        "min": 0, "mean": 0.0, "max": 0}
