"""RMU: Representation Misdirection for Unlearning (Li et al., ICML 2024, the WMDP paper; catalog id `li2024wmdp`)
as CLEAR adapts it to multimodal LLMs (`dontsov2024clear`).

Follows somvy/multimodal_unlearning@bb14c96, mm/trainer.py (`MMTrainerForgetting.compute_loss`, loss "rmu";
`forward_with_cache` in mm/trainer_utils.py) and config/mm/forget.yaml.

RMU works on the hidden states h_l of one decoder layer l of the language model (the layer's output, at every
position of the sequence, image tokens included). On forget inputs it steers them towards a fixed random direction
of large norm; on retain inputs it holds them to those of the frozen model before unlearning:

    c = c_coef * u / ||u||,      u ~ U[0, 1)^(B0 x 1 x H), drawn once, at the first step (B0 = that batch's size)
    L_f = mean over (j, i, k) of ( mean_t h_l(x_i)[t, k] - c[j, 0, k] )^2        (x_i in D_f)
    L_r = mean over (i, t, k) of ( h_l(x_i)[t, k] - h_l^frozen(x_i)[t, k] )^2     (x_i in D_r)
    min_theta  beta * L_f + L_r,        l = 7, c_coef = 300, beta = 1

CLEAR averages each forget sequence's hidden states over its positions and compares them with the (B0, 1, H) control
tensor; `mse_loss` broadcasts the two to (B0, B, H), so every sequence is pulled towards every row of c (in effect,
towards their mean). The WMDP recipe instead compares every position with one control vector of norm c_coef, weights
the retain term by alpha (hundreds) and trains only layers l-2..l; CLEAR keeps beta = 1 on the forget term, weight 1
on the retain term, and trains the whole language model.

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the model before unlearning; check that layer l exists;
  2. each step: a forget batch and a random retain batch, the layer-l hidden states of both (and of the frozen model
     on the retain batch) from forward hooks; the control tensor is drawn (seeded) at the first step;
  3. loss = beta * L_f + L_r;
  4. backward, clipping, AdamW step, warm-up then linear decay (CLEAR: one epoch of five).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import ConfigError, check_config
from .graddiff import GradDiffConfig, GradientDifference
from .layers import Capture, language_layers
from .logprobs import model_inputs
from .schedules import WarmupSchedule, check_schedule


@dataclass
class RMUConfig(GradDiffConfig):
    """Defaults are CLEAR's (somvy/multimodal_unlearning@bb14c96: mm/trainer.py, config/mm/forget.yaml and
    mm/forget.py's TrainingArguments); a testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-5  # lr: 1e-5
    weight_decay: float = 0.01  # weight_decay: 0.01
    lr_schedule: str = "linear"  # the Trainer's default scheduler
    warmup_fraction: float = 0.2  # warmup_steps = one epoch's steps, of num_epochs 5
    max_grad_norm: Optional[float] = 1.0  # the Trainer's default (max_grad_norm is commented out in forget.py)
    epochs: int = 5  # num_epochs: 5
    forget_batch_size: int = 8  # batch_size 2 x gradient_accumulation_steps 4
    retain_batch_size: int = 8  # one retain item per forget item
    forget_modalities: tuple = ("visual", "text")  # forget10+tofu: the people's image and text questions
    forget_weight: float = 1.0  # beta: loss_beta 1.0
    retain_weight: float = 1.0  # weight of L_r (1 in compute_loss)
    layer: int = 7  # language_model.model.layers[7]
    steering_coeff: float = 300.0  # rand_vec / torch.norm(rand_vec) * 300

    def __post_init__(self):
        check_schedule(self, super().__post_init__)
        check_config(self, layer=">=0", steering_coeff=">0")


def control_tensor(batch_size: int, hidden_size: int, coeff: float, generator: torch.Generator) -> torch.Tensor:
    """c = coeff * u / ||u|| with u ~ U[0, 1)^(batch_size x 1 x hidden_size) (one norm over the whole tensor)."""
    u = torch.rand(batch_size, 1, hidden_size, generator=generator)
    return u / torch.norm(u) * coeff


def forget_term(hidden: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """L_f: the position-mean of each sequence's (B, T, H) hidden states against every row of the (B0, 1, H)
    control tensor, `F.mse_loss(hidden.mean(1), control)` with its broadcasting written out."""
    return ((hidden.mean(dim=1).unsqueeze(0) - control) ** 2).mean()


class RMU(WarmupSchedule, GradientDifference):
    config_class = RMUConfig
    needs_reference = True

    def __init__(self, config: Optional[RMUConfig] = None):
        super().__init__(config)
        self.control = None

    @property
    def uses_retain(self) -> bool:
        return True

    def prepare(self, model, task) -> None:
        """Step 1: the frozen model, the layer check and the seeded generator of the control tensor."""
        layers = len(language_layers(model))
        if self.config.layer >= layers:
            raise ConfigError(f"RMUConfig.layer is {self.config.layer} but the language model has {layers} decoder "
                              f"layers; use --set layer=<0..{layers - 1}>")
        super().prepare(model, task)
        self.control = None
        self.generator = torch.Generator().manual_seed(int(task.seed) + 2)

    def hidden(self, model, batch: dict) -> torch.Tensor:
        """The (B, T, H) output of decoder layer l on a batch."""
        with Capture({"h": language_layers(model)[self.config.layer]}) as seen:
            model(**model_inputs(batch))
        return seen["h"][0]

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        hidden = self.hidden(model, forget_batch)
        if self.control is None:  # CLEAR draws it once, shaped like the first forget batch
            self.control = control_tensor(hidden.shape[0], hidden.shape[-1], self.config.steering_coeff,
                                          self.generator).to(hidden.device, hidden.dtype)  # fmt: skip
        return forget_term(hidden, self.control)

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        hidden = self.hidden(model, retain_batch)
        with torch.no_grad():
            frozen = self.hidden(self.reference, retain_batch)
        return torch.nn.functional.mse_loss(hidden, frozen)


def unlearn(model, task, config: Optional[RMUConfig] = None, callback: Optional[Callable] = None) -> dict:
    """RMU as CLEAR runs it; edits `model` in place and returns the run's info."""
    return RMU(config).run(model, task, callback)
