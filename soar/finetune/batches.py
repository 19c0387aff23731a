"""Micro-batches for the finetune: token datasets, padding, length-grouped and step-tagged batch orders.

Batching: length grouping, not packing. Micro-batches hold examples of similar length, right-padded to their own
longest (a few % padding on ARC data instead of ~30-40% when padding to the longest example), with no attention
mask needed (see module.LoraModule.summed_loss). Packing would need per-example (block-diagonal) attention, which
only flash-attention varlen kernels do efficiently; SDPA on CPU would need a dense mask, the slow path.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from soar.finetune.data import IGNORE, Tokenized


class TokenDataset(torch.utils.data.Dataset):
    """Item i -> (input ids, labels); item (i, step_tokens) -> (input ids, labels, step_tokens) (see StepTokens)."""

    def __init__(self, data: Tokenized) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.input_ids)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple:
        if isinstance(key, tuple):
            i, step_tokens = key
            return self.data.input_ids[i], self.data.labels[i], step_tokens
        return self.data.input_ids[key], self.data.labels[key]


class Collator:
    """Right-pads a batch to its own longest example (pad id, label -100, attention mask 0)."""

    def __init__(self, pad_id: int, pad_to: int | None = None) -> None:
        self.pad_id = pad_id
        self.pad_to = pad_to  # fixed length (the benchmark's padded baseline); None = the batch max

    def __call__(self, items: Sequence[tuple]) -> dict[str, torch.Tensor]:
        width = self.pad_to or max(len(item[0]) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (x, y, *_) in enumerate(items):
            ids[row, : len(x)] = torch.tensor(x)
            labels[row, : len(y)] = torch.tensor(y)
            mask[row, : len(x)] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if len(items[0]) == 3:
            batch["step_tokens"] = torch.tensor(items[0][2], dtype=torch.long)
        return batch


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Micro-batches of similar-length examples, in random order; a new seeded arrangement each epoch.

    Per epoch: shuffle all examples (seed + epoch), cut them into windows of `batch_size * group_size`, sort
    each window by length, cut it into micro-batches, then shuffle the micro-batches. `group_size=None` sorts
    the whole set at once (least padding; ties still broken at random). Every example appears exactly once per
    epoch over all ranks. With several ranks, rank r takes micro-batches r, r+W, ...; the epoch is cut to a
    multiple of W micro-batches by repeating the first ones, so ranks step together.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, group_size: int | None = 64, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size={group_size}: must be >= 1 or null")
        self.lengths = list(lengths)
        self.batch_size, self.group_size, self.seed = batch_size, group_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All micro-batches of `epoch` over all ranks, in training order."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window = len(order) if self.group_size is None else self.batch_size * self.group_size
        batches: list[list[int]] = []
        for start in range(0, len(order), max(window, 1)):
            chunk = sorted(order[start:start + window], key=self.lengths.__getitem__)  # stable: ties stay shuffled
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        if self.world_size > 1 and batches:
            short = -len(batches) % self.world_size
            batches += batches[:short]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.rank::self.world_size]

    def __len__(self) -> int:
        n = math.ceil(len(self.lengths) / self.batch_size) if self.group_size is None else sum(
            math.ceil(min(self.batch_size * self.group_size, len(self.lengths) - s) / self.batch_size)
            for s in range(0, len(self.lengths), self.batch_size * self.group_size))
        return math.ceil(n / self.world_size)


class RandomBatches(LengthGroupedBatches):
    """The unbucketed baseline: random order, consecutive examples batched (what a plain shuffled DataLoader does)."""

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


@dataclass
class EpochProgress:
    """Where training stands in the epoch's (seeded) micro-batch order. The module counts micro-batches and saves
    this in its checkpoints; after a resume the next epoch iterator starts at the saved position. (Restored with
    the module, not as Lightning loader state, which Lightning does not restore once the loader was built early,
    as it is to count the steps of the LR schedule; the iterator's body runs at the first batch, after any
    restore.)"""

    epoch: int = 0
    done: int = 0   # micro-batches of `epoch` trained on (this rank)
    total: int = 0  # micro-batches in `epoch` (this rank)
    resume: tuple[int, int] | None = None  # (epoch, micro-batches to skip) for the next iterator

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "done": self.done, "total": self.total}

    def restore(self, state: dict[str, int]) -> None:
        finished = state["done"] >= state["total"]
        self.resume = (state["epoch"] + 1, 0) if finished else (state["epoch"], state["done"])


class StepTokens(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Tags every index of a micro-batch with the number of labelled tokens in its optimizer step.

    An optimizer step accumulates `accumulate` consecutive micro-batches (the last step of an epoch may have fewer,
    as in Lightning). Dividing each micro-batch's summed token loss by that count makes the step's gradient the
    mean over all response tokens of the step, whatever the micro-batch sizes and lengths (the token-weighted
    objective of HF Trainer >= 4.46, which TRL's SFTTrainer used by SOAR relies on)."""

    def __init__(self, batches: LengthGroupedBatches, n_labels: Sequence[int], accumulate: int,
                 progress: EpochProgress | None = None) -> None:
        self.batches, self.n_labels, self.accumulate = batches, list(n_labels), accumulate
        self.progress = progress or EpochProgress()
        self.sampler = batches  # Lightning calls dataloader.batch_sampler.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        skip = 0
        if self.progress.resume is not None:  # a resumed run: the saved epoch, minus what it had trained on
            (epoch, skip), self.progress.resume = self.progress.resume, None
            self.batches.set_epoch(epoch)
        mine = list(self.batches)
        tagged = []
        for start in range(0, len(mine), self.accumulate):
            step = mine[start:start + self.accumulate]
            total = sum(self.n_labels[i] for b in step for i in b)
            tagged += [[(i, total) for i in b] for b in step]
        self.progress.epoch, self.progress.done, self.progress.total = self.batches.epoch, skip, len(tagged)
        yield from tagged[skip:]


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int], pad_to: int | None = None) -> float:
    """Fraction of the padded token slots that are padding."""
    real = sum(lengths[i] for b in batches for i in b)
    slots = sum(len(b) * (pad_to or max(lengths[i] for i in b)) for b in batches)
    return 1.0 - real / slots if slots else 0.0
