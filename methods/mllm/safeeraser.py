"""SafeEraser's Prompt Decouple (PD) loss (Chen et al., ACL 2025 Findings; catalog id `chen2025safeeraser`) on top of
a base unlearning objective (GA, GradDiff, KL or refusal PO).

Follows yuu250/SafeEraser@9e96612, forget.py (losses ga, gd, kl, idk and gapd, gdpd, klpd, idkpd), data_module.py
(`MMForgetDatasetQA`) and config/forget_lora.yaml.

Unlearning a harmful (image, question) pair tends to over-forget: the model also stops answering when only one half
of the prompt is harmful. SafeEraser decouples the prompt: its PD set pairs the forget question with a harmless image
(an image generated to be safe), targeted at the answer the model gave before unlearning, and adds the PD set's NLL
to the base objective:

    base      ga: -L_NLL(D_f)          gd: -L_NLL(D_f) + w_r L_NLL(D_r)        kl: -L_NLL(D_f) + KL_r
              po: L_NLL(D_f with refusals, together with D_r)
    SafeEraser:   base + w_pd * L_NLL(D_pd)

with the official weights w_pd = 0.5 (ga, gd) or 1 (kl, po) and w_r = 1 (gd), 0.5 (gd with PD). KL_r is
KL(p_before || p_theta) on the retain questions and po's NLL is one token mean over the refusal-targeted forget
questions and the retain questions (SafeEraser concatenates the two batches); KL_r is taken over every position of
the retain inputs, as in forget.py.

`pd_pairing` says which half of a forget prompt is kept. "image" (official): the forget question asked on a harmless
image, here another (retain) person's picture. "question": a harmless question asked on the forget image, here the
colour questions of the testbed (what SafeEraser's retain set holds: harmless questions about the forget images).
Either way the target is the model's own greedy answer before unlearning (SafeEraser's `sd_response` is the vanilla
model's reply). SafeEraser measures over-forgetting as the Safe Answer Refusal Rate on decoupled prompts; MiniProfiles
scores it as the accuracy of harmless questions on the forget images (`harmless_forget_acc`).

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the model for KL; build the PD set (decoupled prompts, answered greedily by the model before
     any update); for po, draw a refusal for each forget question;
  2. each step: a forget batch, a random retain batch (gd, kl, po) and a PD batch of the forget batch's size;
  3. loss = base + w_pd * NLL(PD batch);
  4. backward, clipping, AdamW step, warm-up then cosine decay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import ConfigError, check_config
from .ga import _cycle_batches
from .graddiff import GradDiffConfig, GradientDifference
from .logprobs import answer_token_logprobs, model_inputs
from .losses import answer_nll, kl_to_reference
from .po import ensure_vocabulary, refusal_targets
from .schedules import WarmupSchedule, check_schedule

BASES = ("ga", "gd", "kl", "po")
PAIRINGS = ("image", "question")
PD_WEIGHT = {"ga": 0.5, "gd": 0.5, "kl": 1.0, "po": 1.0}  # forget.py: gapd, gdpd 0.5; klpd, idkpd 1
RETAIN_WEIGHT = {(True, "gd"): 0.5, (False, "gd"): 1.0}  # forget.py: gdpd 0.5 * retain, gd 1 * retain; kl, po: 1


@dataclass
class SafeEraserConfig(GradDiffConfig):
    """Defaults are SafeEraser's (yuu250/SafeEraser@9e96612: config/forget_lora.yaml and forget.py); a testbed's
    adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-4  # lr: 1e-4
    weight_decay: float = 0.01  # weight_decay: 0.01
    lr_schedule: str = "cosine"  # lr_scheduler_type: cosine
    warmup_fraction: float = 0.06  # warmup_ratio: 0.06
    max_grad_norm: Optional[float] = 1.0  # max_grad_norm: 1.0
    epochs: int = 10  # num_epochs: 10
    forget_batch_size: int = 16  # batch_size 1 x gradient_accumulation_steps 16
    retain_batch_size: int = 16  # one retain item per forget item
    forget_modalities: tuple = ("visual",)  # SafeEraser's forget set: harmful images with their questions
    base: str = "ga"  # forget_loss: ga (config/forget_lora.yaml); one of ga, gd, kl, po ("idk" in forget.py)
    prompt_decouple: bool = True  # the "...pd" losses; False gives the base objective alone
    pd_weight: Optional[float] = None  # None: the official weight of the base (PD_WEIGHT)
    retain_weight: Optional[float] = None  # None: the official weight of the base (RETAIN_WEIGHT, else 1)
    pd_pairing: str = "image"  # the forget question on a harmless image (SDImage_path + sd_response)
    pd_max_new_tokens: int = 16  # length of the greedy answers that become PD targets

    def __post_init__(self):
        check_schedule(self, super().__post_init__)
        check_config(self, {"base": BASES, "pd_pairing": PAIRINGS}, pd_weight="[0,1e3]", pd_max_new_tokens=">=1")

    @property
    def pd_term_weight(self) -> float:
        if not self.prompt_decouple:
            return 0.0
        return PD_WEIGHT[self.base] if self.pd_weight is None else self.pd_weight

    @property
    def retain_term_weight(self) -> float:
        if self.retain_weight is not None:
            return self.retain_weight
        return RETAIN_WEIGHT.get((self.prompt_decouple, self.base), 1.0)


@torch.no_grad()
def greedy_targets(model, task, rows: list, max_new_tokens: int, batch_size: int = 64) -> list:
    """The rows with the model's own greedy answer (on the first training view) as the target, eos included."""
    eos = task.tokenizer.eos_token_id
    pad = task.tokenizer.pad_token_id if task.tokenizer.pad_token_id is not None else eos
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = task.prompt_batch(chunk)
        generated = model.generate(**model_inputs(batch), max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=pad, eos_token_id=eos)  # fmt: skip
        for row, tokens in zip(chunk, generated[:, batch["input_ids"].shape[1] :].tolist()):
            tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
            out.append(dataclasses.replace(row, answer_ids=tuple(tokens) + (eos,)))
    model.train(was_training)
    return out


def decoupled_prompts(task, pairing: str, forget_rows: list, generator: torch.Generator) -> list:
    """The PD prompts (targets not set yet): "image": each visual forget question asked on a random retain person's
    image; "question": the harmless questions about the forget images (`task.harmless`)."""
    if pairing == "question":
        if not task.harmless:
            raise ConfigError("SafeEraserConfig.pd_pairing='question' needs harmless questions on the forget images, "
                              "but the task has none; use pd_pairing='image'")
        return list(task.harmless)
    faces = sorted({row.qa.face for row in task.retain if row.qa.visual})
    visual = [row for row in forget_rows if row.qa.visual]
    if not faces or not visual:
        raise ConfigError("SafeEraserConfig.pd_pairing='image' needs visual forget questions and retain images; "
                          "include 'visual' in forget_modalities")
    picks = torch.randint(len(faces), (len(visual),), generator=generator).tolist()
    return [dataclasses.replace(row, qa=dataclasses.replace(row.qa, face=faces[i])) for row, i in zip(visual, picks)]


class SafeEraser(WarmupSchedule, GradientDifference):
    config_class = SafeEraserConfig

    @property
    def needs_reference(self) -> bool:
        return self.config.base == "kl"

    @property
    def uses_retain(self) -> bool:
        return self.config.base != "ga" and (self.config.base != "gd" or self.config.retain_term_weight != 0)

    # --- 1. the PD set and the forget targets --------------------------------------------------------------------
    def prepare(self, model, task) -> None:
        cfg = self.config
        if cfg.base == "po":
            self.added_tokens = ensure_vocabulary(model, task.tokenizer)
        super().prepare(model, task)
        self.task = task
        generator = torch.Generator().manual_seed(int(task.seed) + 3)
        self.pd_rows = []
        if cfg.pd_term_weight:
            prompts = decoupled_prompts(task, cfg.pd_pairing, super().forget_rows(task), generator)
            self.pd_rows = greedy_targets(model, task, prompts, cfg.pd_max_new_tokens)
            self.pd_batches = _cycle_batches(self.pd_rows, cfg.forget_batch_size, generator)
        self.pd_generator = generator

    def forget_rows(self, task) -> list:
        rows = super().forget_rows(task)
        if self.config.base == "po":  # SafeEraser's "idk": a random refusal as each forget question's target
            rows = refusal_targets(task, rows, torch.Generator().manual_seed(int(task.seed) + 1))
        return rows

    # --- 2-3. the loss ----------------------------------------------------------------------------------------------
    def base_loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        cfg = self.config
        if cfg.base == "po":  # one token mean over the refusal-targeted forget answers and the retain answers
            parts = [answer_token_logprobs(model, forget_batch), answer_token_logprobs(model, retain_batch)]
            return -sum(lp.sum() for lp, _ in parts) / sum(mask.sum() for _, mask in parts).clamp(min=1)
        loss = -answer_nll(model, forget_batch)
        if cfg.base == "gd" and self.uses_retain:
            loss = loss + cfg.retain_term_weight * answer_nll(model, retain_batch)
        elif cfg.base == "kl":
            # forget.py's kl: KL over every position of the retain inputs (as the KL card's kl_positions="all")
            logits = model(**model_inputs(retain_batch)).logits.float()
            with torch.no_grad():
                reference = self.reference(**model_inputs(retain_batch)).logits.float()
            loss = loss + cfg.retain_term_weight * kl_to_reference(logits, reference)
        return loss

    def pd_loss(self, model) -> torch.Tensor:
        """NLL of the model's pre-unlearning answers on a batch of decoupled prompts."""
        return answer_nll(model, self.task.batch(next(self.pd_batches), self.pd_generator))

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        loss = self.base_loss(model, forget_batch, retain_batch)
        if self.config.pd_term_weight:
            loss = loss + self.config.pd_term_weight * self.pd_loss(model)
        return loss

    def run(self, model, task, callback: Optional[Callable] = None) -> dict:
        self.added_tokens = 0
        info = super().run(model, task, callback)
        self.task = self.pd_batches = None
        return {**info, "pd_prompts": len(self.pd_rows), "added_tokens": self.added_tokens}


def unlearn(model, task, config: Optional[SafeEraserConfig] = None, callback: Optional[Callable] = None) -> dict:
    """SafeEraser (base objective + prompt-decouple loss); edits `model` in place and returns the run's info."""
    return SafeEraser(config).run(model, task, callback)
