"""MMUnlearner (Huo et al., ACL 2025 Findings; catalog id `huo2025mmunlearner`): geometry-constrained gradient
ascent through a weight-saliency mask.

Follows Z1zs/MMUnlearner@fa77c66: data_process/MLLMU_gen_mask.py with data_process/SFRon.py (the mask) and
baselines/MLLMU_manifold.py (the update), as the README command runs them (`--grad_mask_path language_mask.pt`,
batch 4, lr 1e-5, 1 epoch).

1. Saliency. For every weight of the masked modules, a diagonal Fisher estimate (the squared gradient of the answer
   NLL, summed over batches of `fisher_batch_size` = 4 and divided by the number of batches, as the official loaders
   do, with the model in train mode) on the forget set and on a preserve set, and

       s = (F_forget + 1e-15) / (F_preserve + 1e-15),      m = 1[s >= threshold],   threshold = 1

   The language model is scored against the retain visual questions plus the text-only questions whose knowledge
   must stay; the vision tower and projector against the retain visual questions. Only linear-like weights (names
   containing proj / fc / linear / mlp / qkv) keep a mask entry. The README command uses the language mask
   (`mask_modules=("language_model",)`, the default); the vision and "both" masks are config values.
2. Update. Masked gradient ascent on the forget questions, interleaved with ordinary descent on retain questions:
   one forget step every `forget_every` retain steps (official: |retain batches| // |forget batches|). Per forget
   step the loss is -forget_alpha * L_NLL(D_f), the gradient clipped at 1.0 and then multiplied by m; per retain
   step L_NLL(D_r), clipped. The learning-rate schedule is linear over (|forget batches| + |retain batches|) x
   epochs updates but stepped once per epoch (`scheduler_step="epoch"`), so it is constant over the README's single
   epoch; `"step"` decays it at every step instead.

What the official code does that this card does not, and why:
- On LLaVA the official script wraps the model in LoRA (r=16) before training, so the mask's parameter names (from
  the unwrapped model) match none of the trainable LoRA parameters and the mask is never applied there: the
  official LLaVA run is plain masked-free ascent on LoRA adapters. The card applies the mask to the weights it names
  (full fine-tuning), which is what the paper describes and what the official Qwen2-VL path does.
- Weights outside the mask (norms, embeddings, the LM head, the patch embedding) get the full ascent gradient, as in
  the official code (`unmasked_weights="free"`); `"frozen"` restricts the ascent to salient weights only.
- The official code shares one AdamW between forget and retain steps, so masked-out weights still move during a
  forget step through the momentum of the retain steps; here forget steps get their own AdamW, so the mask is exact.
- The paper forgets an entity's *visual* pattern (forget set = visual questions; the language preserve set includes
  the forget people's text-only questions): `forget_modalities=("visual",)`, the default. MiniProfiles scores
  MLLMU-Bench's task (forget the whole profile), a testbed adaptation declared in the registry.

Steps of `MMUnlearner.run`:
  1. pick the forget questions and the two preserve sets;
  2. squared gradients -> Fisher diagonals -> saliency mask per weight;
  3. interleave: masked forget (ascent) steps and retain (descent) steps, each clipped, each with its AdamW;
  4. report the mask sparsity, losses and time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import check_config
from .ga import _cycle_batches
from .graddiff import GradDiffConfig, GradientDifference
from .losses import answer_nll



@dataclass
class MMUnlearnerConfig(GradDiffConfig):
    """Defaults are the official ones (Z1zs/MMUnlearner@fa77c66: README command, `MLLMU_manifold.py` and the mask
    scripts); a testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-5  # README: 1 epoch at lr 1e-5, batch 4
    steps: Optional[int] = None  # retain (descent) steps; None: `epochs` passes over the retain set
    forget_every: Optional[int] = None  # a forget step every n retain steps; None: |retain batches| // |forget batches|
    forget_alpha: float = 1.0  # weight of the ascent loss [official code default]
    retain_weight: float = 1.0  # 0 turns the retain steps off
    mask_threshold: float = 1.0  # [official mask scripts: threshold=1]
    mask_modules: tuple = ("language_model",)  # the README command's language mask; add the vision modules for "both"
    vision_modules: tuple = ("vision_tower", "multi_modal_projector")  # scored against the visual preserve set
    linear_name_keys: tuple = ("proj", "fc", "linear", "mlp", "qkv")  # [official code: masked weight names]
    fisher_batch_size: int = 4  # [official MLLMU_gen_mask.py: DataLoader batch_size=4]
    max_grad_norm: Optional[float] = 1.0  # [official MLLMU_manifold.py: clip_grad_norm_(..., max_norm=1.0)]
    scheduler_step: str = "epoch"  # [official: lr_scheduler.step() once per epoch] or "step"
    unmasked_weights: str = "free"  # "free" [official code] or "frozen" [the paper's description]

    def __post_init__(self):
        super().__post_init__()
        check_config(self, {"unmasked_weights": ("frozen", "free"), "scheduler_step": ("epoch", "step")},
                     forget_every=">=1", forget_alpha="[0,1e3]",
                     mask_threshold="[0,1e15]", fisher_batch_size=">=1")

    def total_steps(self, n_retain: int) -> int:
        """Retain steps: `steps`, or `epochs` passes over `n_retain` questions in batches of `retain_batch_size`."""
        return self.steps if self.steps is not None else self.epochs * math.ceil(n_retain / self.retain_batch_size)


class MMUnlearner(GradientDifference):
    config_class = MMUnlearnerConfig

    def __init__(self, config: Optional[MMUnlearnerConfig] = None):
        super().__init__(config)
        self.mask = {}

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        return -self.config.forget_alpha * answer_nll(model, forget_batch)

    # --- 1-2. saliency mask -----------------------------------------------------------------------------------
    def preserve_rows(self, task) -> tuple:
        """(visual preserve, language preserve): retain visual questions; plus the text-only questions to keep."""
        visual = [row for row in task.retain if row.qa.modality == "visual"]
        text = [row for row in task.retain if row.qa.modality == "text"]
        if "text" not in self.config.forget_modalities:  # the paper's task: keep the forget people's text facts
            text += [row for row in task.forget if row.qa.modality == "text"]
        return visual, visual + text

    def is_masked(self, name: str) -> bool:
        in_module = any(module in name for module in self.config.mask_modules)
        return in_module and any(key in name for key in self.config.linear_name_keys)

    def fisher(self, model, task, rows: list, generator: torch.Generator) -> dict:
        """Diagonal Fisher of the answer NLL: squared batch gradients summed over shuffled batches of
        `fisher_batch_size`, divided by the number of batches (SFRon.py `prepare_weight_saliency_mask`)."""
        totals = {name: torch.zeros_like(p) for name, p in model.named_parameters() if self.is_masked(name)}
        size = self.config.fisher_batch_size
        order = torch.randperm(len(rows), generator=generator).tolist()  # the official loaders shuffle
        batches = [[rows[i] for i in order[start : start + size]] for start in range(0, len(rows), size)]
        for rows_of_batch in batches:
            batch = task.batch(rows_of_batch, None)  # clean view: a deterministic estimate
            model.zero_grad(set_to_none=True)
            answer_nll(model, batch).backward()
            for name, p in model.named_parameters():
                if name in totals and p.grad is not None:
                    totals[name] += p.grad.detach() ** 2
        model.zero_grad(set_to_none=True)
        return {name: total / max(1, len(batches)) for name, total in totals.items()}

    def compute_mask(self, model, task) -> dict:
        """name -> bool tensor (True = salient, may be updated by the ascent)."""
        cfg = self.config
        generator = torch.Generator().manual_seed(int(task.seed))
        forget = self.forget_rows(task)
        visual_preserve, language_preserve = self.preserve_rows(task)
        model.requires_grad_(True)
        model.train()  # as the official estimate (the tiny LLaVA has no dropout, so this changes nothing here)
        fisher_forget = self.fisher(model, task, forget, generator)
        vision = any(any(module in name for module in cfg.vision_modules) for name in fisher_forget)
        fisher_vision = self.fisher(model, task, visual_preserve, generator) if vision else {}
        fisher_language = self.fisher(model, task, language_preserve, generator)
        mask = {}
        for name, f_forget in fisher_forget.items():
            is_vision = any(module in name for module in cfg.vision_modules)
            f_preserve = fisher_vision[name] if is_vision else fisher_language[name]
            mask[name] = (f_forget + 1e-15) / (f_preserve + 1e-15) >= cfg.mask_threshold
        model.eval()
        return mask

    # --- 3. interleaved masked ascent and retain descent --------------------------------------------------------
    def apply_mask(self, model) -> None:
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            if name in self.mask:
                p.grad.mul_(self.mask[name])
            elif self.config.unmasked_weights == "frozen":
                p.grad.zero_()

    def optimizers(self, params, total_steps: int, n_forget: int, n_retain: int) -> tuple:
        """(forget AdamW, its schedule, retain AdamW, its schedule) and how often the schedules step.

        "step": linear decay over the run, stepped at every step. "epoch" (official): linear over (forget batches +
        retain batches) x epochs updates, stepped once per epoch of |retain batches| steps."""
        cfg = self.config
        if cfg.scheduler_step == "step":
            length = total_steps
            self.schedule_every = 1
        else:
            self.schedule_every = math.ceil(n_retain / cfg.retain_batch_size)
            epochs = math.ceil(total_steps / self.schedule_every)
            length = (math.ceil(n_forget / cfg.forget_batch_size) + self.schedule_every) * epochs
        forget_optimizer, forget_schedule = self.make_optimizer(params, length)
        retain_optimizer, retain_schedule = self.make_optimizer(params, length)
        return forget_optimizer, forget_schedule, retain_optimizer, retain_schedule

    def run(self, model, task, callback: Optional[Callable] = None) -> dict:
        cfg = self.config
        start = time.perf_counter()
        # 1-2. saliency mask from the model before unlearning
        self.mask = self.compute_mask(model, task)
        mask_time = time.perf_counter() - start
        generator = torch.Generator().manual_seed(int(task.seed))
        forget_rows = self.forget_rows(task)
        forget_batches = _cycle_batches(forget_rows, cfg.forget_batch_size, generator)
        retain_batches = _cycle_batches(task.retain, cfg.retain_batch_size, generator)
        total_steps = cfg.total_steps(len(task.retain))
        forget_every = cfg.forget_every or max(1, math.ceil(len(task.retain) / cfg.retain_batch_size)
                                               // math.ceil(len(forget_rows) / cfg.forget_batch_size))
        model.requires_grad_(True)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        forget_optimizer, forget_schedule, retain_optimizer, retain_schedule = self.optimizers(
            params, total_steps, len(forget_rows), len(task.retain))
        history, callback_time = [], 0.0
        for step in range(1, total_steps + 1):
            # 3a. a masked ascent step every `forget_every` iterations (official: `iter % forget_freq == 0`)
            if (step - 1) % forget_every == 0:
                loss = self.forget_loss(model, task.batch(next(forget_batches), generator))
                forget_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)  # clip, then mask (official order)
                self.apply_mask(model)
                forget_optimizer.step()
                history.append(float(loss.detach()))
            # 3b. an ordinary descent step on retain questions
            if self.uses_retain:
                loss = cfg.retain_weight * self.retain_loss(model, task.batch(next(retain_batches), generator))
                retain_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                retain_optimizer.step()
            # 3c. the learning-rate schedules: every step, or once per epoch (official)
            if step % self.schedule_every == 0:
                forget_schedule.step()
                if self.uses_retain:
                    retain_schedule.step()
            if callback is not None:
                tick = time.perf_counter()
                callback(step, model)
                callback_time += time.perf_counter() - tick
        # 4. report
        model.eval()
        model.requires_grad_(False)
        salient = sum(int(m.sum()) for m in self.mask.values())
        total = sum(m.numel() for m in self.mask.values())
        return {"loss_history": history, "steps": total_steps, "forget_every": forget_every, "mask_time_s": mask_time,
                "mask_fraction": salient / max(1, total), "masked_tensors": len(self.mask),
                "unlearn_time_s": time.perf_counter() - start - callback_time}  # fmt: skip


def unlearn(model, task, config: Optional[MMUnlearnerConfig] = None, callback: Optional[Callable] = None) -> dict:
    """MMUnlearner; edits `model` in place and returns the run's info (mask sparsity included)."""
    return MMUnlearner(config).run(model, task, callback)
