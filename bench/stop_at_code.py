"""What stopping an answer early would change, measured on real answers: the `text` column of search runs made with
`search.stop_at_code=false`.

For every answer, and for each stop rule below, the answer is cut where the rule would have ended generation, its
program re-extracted (`extract_code`) and, when it differs from the archived one, executed on the task (the real
sandboxed executor). A cap of C tokens keeps the first C tokens of the answer (re-tokenised with the run's model
tokenizer: what `max_tokens=C` would have produced from the same draws), then applies stop-at-code.

Rules: `as generated` (the run's own max_tokens, no stop), `stop at code` (search.stop_at_code: the fence closing the
first python block that defines transform), and `stop at code + max_tokens C` for C in --caps.
It also sorts the answers that never close such a block (no code at all, an open block cut at max_tokens, code
without fences, ...) and reports how much of the closed answers' text comes after their code.

Run: .venv/bin/python bench/stop_at_code.py RUN_DIR [RUN_DIR ...] [--caps 128,192,256,320]
The last line is `RESULT stop_at_code answers=N closed=K tokens_full=x tokens_stop=y saved=z changed=M ...`.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from soar.archive import ProgramArchive
from soar.data import Task, load_split
from soar.execution import Executor
from soar.prompts import code_end, extract_code
from soar.runs import SearchRun
from soar.scoring import score_program
from soar.weights import resolve_model

_OPEN_FENCE = re.compile(r"^```", re.MULTILINE)


def run_config(run_dir: Path) -> tuple[dict[str, Task], str, int]:
    """The run's tasks, model path and sampling max_tokens."""
    run = SearchRun(run_dir)
    cfg, searched = run.config(), run.split()
    if cfg is None or searched is None:
        raise SystemExit(f"{run_dir}: no composed config (.hydra/config.yaml or stage.yaml): not a search run dir")
    dataset, split, path = searched
    return load_split(dataset, split, path), str(cfg.model.path), int(cfg.search.sample.max_tokens)


def never_closed_kind(text: str, n_tokens: int, max_tokens: int) -> str:
    """Why an answer has no closed transform block."""
    ended = "cut at max_tokens" if n_tokens >= max_tokens - 2 else "ended"
    if "def transform(" not in text:
        return f"no transform at all, {ended}" if not _OPEN_FENCE.search(text) else f"fences without transform, {ended}"
    if not _OPEN_FENCE.search(text):
        return f"transform without fences, {ended}"
    return f"transform block left open, {ended}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--caps", default="128,192,256,320", help="max_tokens values to simulate")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]

    answers: list[dict[str, Any]] = []
    tokenizer = None
    for run_dir in args.run_dirs:
        split, model_path, max_tokens = run_config(run_dir)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(resolve_model(model_path))
        for r in ProgramArchive(run_dir / "programs.parquet").read().to_pylist():
            ids = tokenizer(r["text"], add_special_tokens=False).input_ids
            answers.append({**r, "task": split[r["task_id"]], "ids": ids, "max_tokens": max_tokens})

    def cut(a: dict[str, Any], cap: int | None, stop: bool) -> tuple[str, int]:
        text, n = a["text"], len(a["ids"])
        if cap is not None and n > cap:
            text, n = tokenizer.decode(a["ids"][:cap]), cap
        end = code_end(text) if stop else None
        if end is not None and end < len(text):
            text = text[:end]
            n = len(tokenizer(text, add_special_tokens=False).input_ids)
        return text, n

    rules: list[tuple[str, int | None, bool]] = [("as generated", None, False), ("stop at code", None, True)]
    rules += [(f"stop at code + max_tokens {c}", c, True) for c in caps]
    variants = {name: [cut(a, cap, stop) for a in answers] for name, cap, stop in rules}
    codes = {name: [extract_code(t) for t, _ in v] for name, v in variants.items()}

    # execute every (task, code) that differs from the archived program once
    todo = sorted({(a["task_id"], c) for cs in codes.values() for a, c in zip(answers, cs) if c != a["code"]})
    tasks = {a["task_id"]: a["task"] for a in answers}
    with Executor() as ex:
        outputs = ex.run([(code, tasks[tid].inputs) for tid, code in todo])
    scored = {key: score_program(tasks[key[0]], outs) for key, outs in zip(todo, outputs)}

    def score(a: dict[str, Any], code: str) -> tuple[bool, float]:
        if code == a["code"]:
            return a["valid"], a["train_acc"]
        s = scored[(a["task_id"], code)]
        return s.valid, s.train_acc

    n = len(answers)
    for a in answers:
        a["end"] = code_end(a["text"])
        a["kind"] = None if a["end"] is not None else never_closed_kind(a["text"], len(a["ids"]), a["max_tokens"])
    closed = [a for a in answers if a["end"] is not None]
    print(f"{n} answers from {len(args.run_dirs)} run(s), {len(tasks)} tasks; tokens re-counted with the model's "
          "tokenizer")
    print(f"closed a python block defining transform: {len(closed)} ({100 * len(closed) / n:.0f}%)")
    after = sum(len(a["text"]) - a["end"] for a in closed)
    print(f"  text after that block: {100 * after / max(sum(len(a['text']) for a in closed), 1):.0f}% of their "
          "characters")
    kinds = Counter(a["kind"] for a in answers if a["kind"] is not None)
    print(f"never closed one: {n - len(closed)}")
    for kind, k in kinds.most_common():
        valid = sum(a["valid"] for a in answers if a["kind"] == kind)
        print(f"  {k:4d}  {kind}  ({valid} valid programs)")

    print(f"\n{'rule':34s} {'tokens/answer':>13s} {'saved':>6s} {'changed':>8s} {'valid':>6s} {'mean train acc':>14s} "
          f"{'tasks train-solved':>18s}")
    base_tokens = sum(t for _, t in variants["as generated"])
    summary = {}
    for name, _, _ in rules:
        tokens = sum(t for _, t in variants[name])
        results = [score(a, c) for a, c in zip(answers, codes[name])]
        changed = sum(c != a["code"] for a, c in zip(answers, codes[name]))
        valid = sum(v for v, _ in results)
        solved = len({a["task_id"] for a, (_, h) in zip(answers, results) if h == 1.0})
        mean_acc = sum(h for _, h in results) / n
        summary[name] = (tokens / n, 1 - tokens / base_tokens, changed, valid)
        print(f"{name:34s} {tokens / n:13.1f} {100 * (1 - tokens / base_tokens):5.0f}% {changed:8d} {valid:6d} "
              f"{100 * mean_acc:13.1f}% {solved:18d}")
    full, stop = summary["as generated"], summary["stop at code"]
    print(f"RESULT stop_at_code answers={n} closed={len(closed)} tokens_full={full[0]:.1f} tokens_stop={stop[0]:.1f} "
          f"saved={stop[1]:.3f} changed={stop[2]} valid_full={full[3]} valid_stop={stop[3]}", flush=True)


if __name__ == "__main__":
    main()
