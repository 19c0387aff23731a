"""The LightningModule (loss on response tokens, AdamW + warm-up/cosine, adapter-only checkpoints) and the
LightningDataModule (length-grouped micro-batches, sharded over ranks)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch.utils.data import DataLoader

from soar.finetune.batches import Collator, EpochProgress, LengthGroupedBatches, StepTokens, TokenDataset
from soar.finetune.data import IGNORE, Tokenized

OPTIMIZERS = ("adamw", "adamw_8bit")
# configs whose logits are not just lm_head(hidden): those models take the plain (full-logits) path
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def cosine_with_warmup(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over the first ceil(ratio * total) steps, then cosine decay to 0."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class LoraModule(pl.LightningModule):
    """Wraps a PEFT causal LM. Only trainable (adapter) weights go into checkpoints.

    The loss of a micro-batch is the summed cross-entropy over its response tokens divided by the number of
    response tokens in its whole optimizer step (`step_tokens`, see data.StepTokens), so one optimizer step
    minimises the mean token loss over its effective batch. Logits are computed only at labelled positions
    (the response is a small part of each sequence: prompts are long), which skips most of the lm_head work.
    """

    def __init__(self, model: Any, optim: Any, on_step: Callable[[dict[str, Any]], None] | None = None,
                 progress: EpochProgress | None = None) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.on_step = on_step
        self.progress = progress or EpochProgress()  # shared with the data loader (mid-epoch resume)
        self.strict_loading = False  # checkpoints hold the adapter only
        self.history: list[dict[str, Any]] = []   # one row per optimizer step (restored on resume)
        self.real_tokens = 0                       # non-pad tokens trained on by this process (this run)
        self.train_seconds = 0.0
        self._reset_step()
        cfg = getattr(getattr(model, "get_base_model", lambda: model)(), "config", None)
        self.selective = not any(getattr(cfg, k, None) for k in _LOGIT_TRANSFORMS)

    def _reset_step(self) -> None:
        self._step_loss = torch.zeros(())
        self._step_labels = 0
        self._step_real = torch.zeros((), dtype=torch.long)
        self._step_t0 = time.perf_counter()

    # -- loss ------------------------------------------------------------------------------------------------
    def summed_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(sum of token cross-entropies over the labelled positions, their number).

        No attention mask is passed: batches are right-padded and attention is causal, so a real token never
        attends to a pad (pads come after it) and positions are 0..len-1 as without padding; only pad positions
        get meaningless outputs, and they carry no label. Without a mask SDPA takes its fused causal kernel
        (with a padding mask it was ~45% slower on CPU)."""
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE
        n = int(keep.sum())
        if self.selective:
            base = self.model.get_base_model()
            hidden = base.get_decoder()(input_ids=batch["input_ids"], use_cache=False).last_hidden_state
            logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        else:
            logits = self.model(input_ids=batch["input_ids"], use_cache=False).logits[:, :-1][keep]
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum"), n

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, n = self.summed_loss(batch)
        step_tokens = int(batch["step_tokens"]) if "step_tokens" in batch else n
        if self._step_labels == 0 and self._step_loss.device != loss_sum.device:
            self._step_loss = self._step_loss.to(loss_sum.device)
            self._step_real = self._step_real.to(loss_sum.device)
        self._step_loss += loss_sum.detach()
        self._step_labels += n
        self._step_real += batch["attention_mask"].sum()
        self.progress.done += 1
        # Lightning divides by accumulate_grad_batches; undo that so the step's gradient is the token mean
        return loss_sum / max(step_tokens, 1) * self.trainer.accumulate_grad_batches

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Once per optimizer step, after all its micro-batches: record and report the step."""
        seconds = time.perf_counter() - self._step_t0
        real = int(self._step_real)
        loss = float(self._step_loss) / max(self._step_labels, 1)
        self.real_tokens += real
        self.train_seconds += seconds
        row = {"step": self.trainer.global_step + 1, "epoch": self.current_epoch, "loss": loss,
               "lr": optimizer.param_groups[0]["lr"], "tokens_per_s": real / max(seconds, 1e-9),
               "tokens": real, "label_tokens": self._step_labels}
        self.history.append(row)
        self.log("loss", loss, prog_bar=True, logger=False)
        if self.on_step is not None and self.trainer.is_global_zero:
            self.on_step(row)
        self._reset_step()

    def on_train_epoch_start(self) -> None:
        self._step_t0 = time.perf_counter()

    @property
    def epoch_losses(self) -> list[float]:
        """Token-mean loss of every epoch, from the step rows (an epoch resumed mid-way counts all its steps)."""
        epochs: dict[int, list[float]] = {}
        for r in self.history:
            loss, labels = epochs.setdefault(r["epoch"], [0.0, 0])
            epochs[r["epoch"]] = [loss + r["loss"] * r["label_tokens"], labels + r["label_tokens"]]
        return [loss / max(labels, 1) for _, (loss, labels) in sorted(epochs.items())]

    # -- optimisation ------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        params = [p for p in self.model.parameters() if p.requires_grad]
        kwargs: dict[str, Any] = {"lr": float(self.optim.lr), "weight_decay": float(self.optim.weight_decay),
                  "betas": tuple(self.optim.betas), "eps": float(self.optim.eps)}
        if self.optim.name == "adamw_8bit":
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, **kwargs)
        else:
            optimizer = torch.optim.AdamW(params, **kwargs)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = cosine_with_warmup(total, float(self.optim.warmup_ratio))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoints: adapter weights + our history only -------------------------------------------------------
    def _trainable(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._trainable()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["soar"] = {"history": self.history, "progress": self.progress.state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        missing = self._trainable() - set(checkpoint["state_dict"])
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} adapter weight(s), e.g. {sorted(missing)[0]}: "
                             "it was written with another LoRA configuration")
        state = checkpoint.get("soar", {})
        self.history = list(state.get("history", []))
        if "progress" in state:
            self.progress.restore(state["progress"])


class ChatDataModule(pl.LightningDataModule):
    """Length-grouped micro-batches; each rank takes its share (ranks are only known once fit has started)."""

    def __init__(self, data: Tokenized, pad_id: int, micro_batch_size: int, accumulate: int,
                 group_size: int | None, seed: int, progress: EpochProgress | None = None) -> None:
        super().__init__()
        self.data, self.pad_id = data, pad_id
        self.micro_batch_size, self.accumulate = micro_batch_size, accumulate
        self.group_size, self.seed = group_size, seed
        self.progress = progress or EpochProgress()

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        batches = LengthGroupedBatches(self.data.lengths, self.micro_batch_size, group_size=self.group_size,
                                       seed=self.seed, rank=rank, world_size=world)
        n_labels = [sum(1 for y in labels if y != IGNORE) for labels in self.data.labels]
        return DataLoader(TokenDataset(self.data), collate_fn=Collator(self.pad_id), num_workers=0,
                          batch_sampler=StepTokens(batches, n_labels, self.accumulate, self.progress))
