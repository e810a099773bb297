"""Fine-tuning the testbed's models: the base model (the real-world stand-in), the vanilla model (the base fine-tuned on
every profile) and the retain-only oracles, each trained once per machine and cached as safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...core.cache import cached
from ...core.seeding import seed_everything
from ...mllm.logprobs import answer_token_logprobs, model_inputs
from .data import QA
from .model import Encoded, Encoder, _dtype_for, _pretrained_dtype, build_tiny_llava, load_checkpoint

CACHE_MARKER = "testbed.json"  # the file a finished cache build writes last


@dataclass(frozen=True)
class FinetuneSettings:
    base_epochs: int
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_fraction: float
    check_every: int
    stop_at_em: float
    seed: int


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@torch.no_grad()
def teacher_forced_em(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int = 256) -> float:
    """Share of rows whose every answer token (eos included) is the argmax: greedy-decoding EM without decoding."""
    was_training = model.training
    model.eval()
    hits = []
    for start in range(0, len(rows), batch_size):
        batch = encoder.batch(rows[start : start + batch_size])
        logits = model(**model_inputs(batch)).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        correct = (logits.argmax(-1) == labels) | ~mask
        hits += correct.all(-1).tolist()
    model.train(was_training)
    return float(np.mean(hits))


def finetune(
    model,
    encoder: Encoder,
    rows: Sequence[Encoded],
    check_rows: Sequence[Encoded],
    settings: FinetuneSettings,
    train_views: Sequence[int],
    log: Callable[[str], None] = print,
    replay_rows: Sequence[Encoded] = (),
    replay_fraction: float = 0.0,
) -> dict:
    """AdamW + warmup/cosine on the answer tokens; stops early once `check_rows` are memorised (EM >= stop_at_em).

    Each epoch also replays a fresh random `replay_fraction` of `replay_rows` (earlier knowledge to keep).
    """
    generator = torch.Generator().manual_seed(settings.seed)
    model.requires_grad_(True)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    n_replay = round(replay_fraction * len(replay_rows))
    steps_per_epoch = math.ceil((len(rows) + n_replay) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, int(settings.warmup_fraction * total), total)
    )
    model.train()
    start_time, epoch, em, loss = time.perf_counter(), 0, 0.0, torch.tensor(float("nan"))
    for epoch in range(1, settings.epochs + 1):
        replay = [replay_rows[i] for i in torch.randperm(len(replay_rows), generator=generator)[:n_replay].tolist()]
        epoch_rows = list(rows) + replay
        order = torch.randperm(len(epoch_rows), generator=generator).tolist()
        for start in range(0, len(epoch_rows), settings.batch_size):
            chunk = [epoch_rows[i] for i in order[start : start + settings.batch_size]]
            batch = encoder.batch(chunk, train_views=train_views, generator=generator)
            logprobs, mask = answer_token_logprobs(model, batch)
            loss = -logprobs.sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
        if epoch % settings.check_every == 0 or epoch == settings.epochs:
            em = teacher_forced_em(model, encoder, check_rows)
            log(f"[miniprofiles]   epoch {epoch:3d}  loss {loss.item():.4f}  memorised EM {em:.3f}")
            if em >= settings.stop_at_em:
                break
    model.eval().requires_grad_(False)
    return {"epochs": epoch, "train_time_s": time.perf_counter() - start_time, "final_loss": float(loss.item()),
            "memorised_em": em}  # fmt: skip


class ProfileTrainer:
    """Trains (and caches) the base model, then fine-tunes it on profiles: the vanilla model and the oracles.

    Stage 0, the base model: the starting model (seeded random tiny LLaVA, or a pretrained checkpoint) trained on
    `data.base_items`, the stand-in for what a pretrained LLaVA already knows. Stage 1: the base fine-tuned on
    profile questions plus a replay of base data, as MLLMU-Bench fine-tunes LLaVA on its fictitious profiles.
    """

    def __init__(self, cfg, data, encoder, source, settings, base_dir, log):
        self.config, self.data, self.encoder = cfg, data, encoder
        self.source, self.settings, self.base_dir, self.log = source, settings, Path(base_dir), log

    def initial_model(self):
        if self.source == "tiny":
            return build_tiny_llava(self.config, self.encoder.tokenizer, self.config.seed).to(self.encoder.device)
        return load_checkpoint(self.source, self.encoder.device, dtype=_pretrained_dtype(self.encoder.device))

    def _rows(self, items: Sequence[QA]) -> tuple:
        """Encoded rows and the memorisation check (profile and world questions, clean view)."""
        rows = self.encoder.encode(items)
        check = [r for r in rows if r.qa.kind in ("qa", "world")]
        check = [dataclasses.replace(r, qa=dataclasses.replace(r.qa, view=0)) if r.qa.visual else r for r in check]
        return rows, check

    def base_model(self):
        """Stage 0, trained once per machine and cached."""
        if not (self.base_dir / "testbed.json").exists():
            self.log(f"[miniprofiles] training the base model ({self.config.scale} scale, {self.source}); once")
        directory = cached(self.base_dir, self._builder(self._train_base, {"stage": "base"}), CACHE_MARKER,
                           self.log)
        return load_checkpoint(directory, self.encoder.device, _dtype_for(self.source, self.encoder.device))

    def _train_base(self):
        seed_everything(self.config.seed)
        model = self.initial_model()
        rows, check = self._rows(self.data.base_items)
        base_settings = dataclasses.replace(self.settings, epochs=self.settings.base_epochs)
        return model, finetune(model, self.encoder, rows, check, base_settings, self.data.train_views, self.log)

    def train(self, items: Sequence[QA]):
        """Stage 1: the base model fine-tuned on profile questions (with replay); returns (model, info)."""
        model = self.base_model()
        seed_everything(self.config.seed)
        rows, check = self._rows(items)
        replay = self.encoder.encode(self.data.base_items)
        info = finetune(model, self.encoder, rows, check, self.settings, self.data.train_views, self.log,
                        replay_rows=replay, replay_fraction=self.config.replay_fraction)  # fmt: skip
        return model, info

    def build(self, items: Sequence[QA], info: dict) -> Callable[[Path], None]:
        """A cache builder for a stage-1 model (vanilla or oracle) trained on `items`."""
        return self._builder(lambda: self.train(items), info)

    def _builder(self, train: Callable, info: dict) -> Callable[[Path], None]:
        def build(directory: Path) -> None:
            model, trained = train()
            model.save_pretrained(str(directory), safe_serialization=True)
            self.encoder.processor.save_pretrained(str(directory))
            meta = {**info, **trained, "testbed_config": dataclasses.asdict(self.config), "source": self.source}
            (directory / "testbed.json").write_text(json.dumps(meta, indent=2, default=list))

        return build
