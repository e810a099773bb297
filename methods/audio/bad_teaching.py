"""Bad Teaching: unlearning with an incompetent and a competent teacher (Chundawat et al., 2023, catalog id
`chundawat2022bad`); a baseline of UnSLU-Bench (`koudounas2025alexa`).

Follows vikram2000b/bad-teaching-unlearning@f1aa988, unlearn.py (`UnlearnerLoss`, `unlearning_step`,
`blindspot_unlearner`) and CIFARSuper20_Rocket_Unlearn.ipynb (the run's settings). The student starts as the
trained model. Its teachers: the trained model itself (competent) and a randomly initialised model of the same
architecture (incompetent). Forget utterances (l = 1) and a random 30% of the retain utterances (l = 0) are mixed
in one shuffled loader, and the student minimises

    KL( l * softmax(u(x) / T) + (1 - l) * softmax(c(x) / T)  ||  softmax(s(x) / T) )

(torch's `kl_div` with its default element-wise mean) where u is the incompetent and c the competent teacher: it
copies random predictions on the forget speakers and the original ones elsewhere. UnSLU-Bench's audio port replaces
u by the competent teacher's logits for transformers models (unlearners.py, line `unlearn_teacher_logits = ... if
type == "cnn" else full_trained_teacher(x).logits`), which would make the forget term a no-op; the card keeps the
paper's random teacher.

Steps:
  1. the competent teacher (a frozen copy) and the incompetent one (a fresh random model, frozen);
  2. the unlearning set: every forget utterance (l = 1) and a random `retain_fraction` of the retain utterances (0);
  3. `epochs` passes over it in shuffled batches: the mixed-teacher KL above, backward, Adam step;
  4. report the loss history and the time (the testbed's callback runs after each epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.models import frozen_copy
from .task import AudioUnlearningTask, RunClock


@dataclass
class BadTeachingConfig:
    """Defaults: vikram2000b/bad-teaching-unlearning@f1aa988, CIFARSuper20_Rocket_Unlearn.ipynb (cells 6 and 15)."""

    learning_rate: float = 1e-4  # torch.optim.Adam(student_model.parameters(), lr = 0.0001)
    epochs: int = 1  # blindspot_unlearner(..., epochs = 1)
    batch_size: int = 256  # batch_size = 256
    temperature: float = 1.0  # KL_temperature = 1
    retain_fraction: float = 0.3  # retain_train_subset = random.sample(retain_train, int(0.3 * len(retain_train)))

    def __post_init__(self):
        check_config(self, learning_rate="(0,1]", epochs=">=1", batch_size=">=1", temperature="(0,100]",
                     retain_fraction="(0,1]")


def bad_teaching_loss(student_logits: torch.Tensor, forget_mask: torch.Tensor, competent_logits: torch.Tensor,
                      incompetent_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official UnlearnerLoss: KL(mixed teacher || student), `kl_div`'s default element-wise mean."""
    mask = forget_mask.float().unsqueeze(1)
    teacher = mask * F.softmax(incompetent_logits / temperature, dim=1) \
        + (1 - mask) * F.softmax(competent_logits / temperature, dim=1)
    # kl_div's "mean" (the official default): the sum over every element divided by their number
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1), teacher, reduction="sum") / teacher.numel()


def unlearn(model, task: AudioUnlearningTask, config: Optional[BadTeachingConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """Bad Teaching on `model` (the student) in place; returns the run's info."""
    cfg = config or BadTeachingConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1. the two teachers
    competent = frozen_copy(model)
    incompetent = task.new_model(task.seed).eval().requires_grad_(False)
    # 2. the unlearning set: forget rows (l = 1) and a random share of the retain rows (l = 0)
    n_retain = task.size("retain")
    kept = torch.randperm(n_retain, generator=generator)[: int(cfg.retain_fraction * n_retain)]
    inputs = torch.cat([task.forget_inputs, task.retain_inputs[kept]])
    is_forget = torch.cat([torch.ones(task.size("forget"), dtype=torch.long), torch.zeros(len(kept), dtype=torch.long)])
    model.requires_grad_(True).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        # 3. one pass over the mixed set
        order = torch.randperm(len(is_forget), generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            batch = inputs[rows]
            with torch.no_grad():
                competent_logits = task.logits(competent, batch)
                incompetent_logits = task.logits(incompetent, batch)
            loss = bad_teaching_loss(task.logits(model, batch), is_forget[rows].to(task.device), competent_logits,
                                     incompetent_logits, cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
        clock.report(epoch, model)
    # 4. hand the model back frozen
    model.eval().requires_grad_(False)
    return {"loss_history": history, "steps": len(history), "unlearning_set": int(len(is_forget)),
            "unlearn_time_s": clock.seconds()}
