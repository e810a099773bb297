"""AdvUnlearn: Defensive Unlearning with Adversarial Training for Robust Concept Erasure in Diffusion Models (Zhang
et al., NeurIPS 2024). Catalog id: `zhang2024defensive`.

Follows OPTML-Group/AdvUnlearn@9d23124, train-scripts/AdvUnlearn.py (the training loop), train-scripts/utils/
attack_util.py (`soft_prompt_attack`, `init_adv`, prefix insertion), train-scripts/utils/get_loss.py
(`get_train_loss_retain`, retain_train="reg") and train-scripts/utils/util.py (`param_choices`, text_encoder_full).

ESD erases a concept by fine-tuning the UNet, but a prompt (or soft prompt) found by an attack brings the concept
back. AdvUnlearn trains the *text encoder* E_theta (the UNet eps stays frozen) with adversarial training, a bi-level
problem:

    min_theta  l_u(theta, c + delta*) + gamma l_r(theta),     delta* = argmin_delta l_atk(theta, delta)

- l_u is ESD's loss (eta the negative guidance, e_o the frozen model with the original encoder E_o, n the neutral
  prompt, x_t a partial DDIM sample of the concept prompt c):

      l_u = || eps(x_t, E_theta(c + delta), t) - [e_o(x_t, n, t) - eta (e_o(x_t, c, t) - e_o(x_t, n, t))] ||^2

- the attack's loss, minimised over one soft token delta in word-embedding space, prepended to the prompt's words:

      l_atk(delta) = || eps(x_t, E_theta(c + delta), t) - e_o(x_t, c, t) ||^2

  i.e. the embedding that makes the erased model predict what the original model predicts for the concept;
- the retain loss on a batch of prompts c_r that do not show the concept (official: COCO object prompts filtered
  against the concept; here the request's `preserve_prompts`), at x^r_t sampled from c_r:

      l_r = || eps(x^r_t, E_theta(c_r), t) - e_o(x^r_t, E_o(c_r), t) ||^2

Algorithm (one concept prompt per iteration, as the official code):
  1. A trainable copy of the text encoder: every encoder layer and the final layer norm (`text_encoder_full`,
     component "all"); the token and position embeddings and the UNet stay frozen.
  2. For each iteration i:
     a. every `adv_prompt_update_step` iterations, draw a concept prompt c; after `warmup_iter` iterations also run
        the attack: start delta from a random vocabulary row (`attack_init="random"`, the README's command) or from
        the last round's delta ("latest"), then `attack_step` Adam steps (lr `attack_lr`) on l_atk, each on a fresh
        (x_t, t) pair, with the text encoder frozen. As in the official loop the attack's gradient is never zeroed
        (Adam sees the running sum of the step gradients), "fast_at" takes the sign of it, and the delta used for
        training is the one the last step evaluated (the official code assembles the prompt before the step);
     b. draw t_enc ~ U{0..S-1} and t in its bin (ESD's paper-era pairing, `esd.pair_timesteps`), x_t from the
        concept prompt and x^r_t from `retain_batch` retain prompts (CFG `start_guidance`, frozen UNet and original
        encoder: x_t does not depend on theta), both stopped at the same step;
     c. one Adam step (lr `learning_rate`) on l_u + `retain_loss_w` l_r; before the warm-up ends l_u uses the clean
        prompt c (delta = nothing).
  3. Return the components with the edited text encoder (the UNet is the input's own).

The retain prompts are drawn without replacement and the pool is refilled when fewer than `retain_batch` are left
(the official `PromptDataset`). On MiniCanvas the neutral prompt n is the concept prompt with the concept removed
(as the ESD card does, a deviation declared in the registry); "" for a bare concept prompt and on Stable Diffusion.
The soft token is inserted after the start token and the sequence shifts right by one, dropping its last (padding)
row; the official split drops the first end-of-text row instead, the same row on CLIP, whose padding is end-of-text.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attacks.t2i.hard_prompts import encode_token_embeddings
from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import (
    DiffusionComponents,
    EditedDiffusion,
    EraseRequest,
    encode_prompts,
    frozen_copy,
    sample_cfg,
    timesteps_for,
    tokenize,
)
from .esd import pair_timesteps


@dataclass
class AdvUnlearnConfig:
    """Defaults are the official ones for Stable Diffusion 1.4: the README's training command where it sets a flag,
    else the argparse defaults of OPTML-Group/AdvUnlearn@9d23124, train-scripts/AdvUnlearn.py; a testbed's
    adaptations are declared in methods/registry.yaml."""

    iterations: int = 1000  # argparse --iterations
    learning_rate: float = 1e-5  # argparse --lr, Adam on the text encoder
    negative_guidance: float = 1.0  # argparse --negative_guidance (ESD's eta)
    start_guidance: float = 3.0  # argparse --start_guidance: CFG scale while generating x_t
    ddim_steps: int = 50  # argparse --ddim_steps: x_t from a partial 50-step DDIM run
    ddim_eta: float = 0.0  # AdvUnlearn.py: ddim_eta = 0
    retain_batch: int = 5  # argparse --retain_batch
    retain_loss_w: float = 0.3  # README command --retain_loss_w 0.3 (argparse default 1.0)
    adv_prompt_num: int = 1  # argparse --adv_prompt_num: soft tokens in the prefix
    attack_step: int = 30  # README command / argparse --attack_step
    attack_lr: float = 1e-3  # argparse --attack_lr (the function's signature says 1e-2; argparse overrides it)
    attack_method: str = "pgd"  # argparse --attack_method: Adam on the soft token ("fast_at": on its gradient's sign)
    attack_init: str = "random"  # README command --attack_init random (argparse default "latest")
    warmup_iter: int = 200  # argparse --warmup_iter: iterations without attack
    adv_prompt_update_step: int = 1  # argparse --adv_prompt_update_step: a new attack every iteration

    def __post_init__(self):
        check_config(self, {"attack_method": ("pgd", "fast_at"), "attack_init": ("random", "latest")},
                     iterations=">=1", learning_rate="(0,1]", negative_guidance="[0,1e3]", start_guidance="[0,1e3]",
                     ddim_steps=">=1", ddim_eta="[0,1]", retain_batch=">=1", retain_loss_w="[0,1e3]",
                     adv_prompt_num=">=1", attack_step=">=1", attack_lr="(0,10]", warmup_iter=">=0",
                     adv_prompt_update_step=">=1")


def trainable_parameter_names(text_encoder) -> list:
    """`text_encoder_full` (component "all"): every encoder layer and the final layer norm, not the embeddings."""
    # transformers >= 5 names them without the `text_model.` prefix of the official code's version
    return [name for name, _ in text_encoder.named_parameters()
            if name.removeprefix("text_model.").startswith(("encoder.", "final_layer_norm."))]


def with_prefix(input_ids: torch.Tensor, rows: torch.Tensor, prefix: torch.Tensor, prefix_id: int) -> tuple:
    """(input ids, token rows) of the prompt with `prefix` (B, k, D) inserted after the start token; the sequence
    shifts right by k and keeps its length (the last k rows, padding, are dropped). The ids only give the length and
    the pooled position (the UNet reads the hidden states); the official code puts end-of-text ids there."""
    k, length = prefix.shape[1], input_ids.shape[1]
    ids = torch.cat([input_ids[:, :1], torch.full_like(input_ids[:, :k], prefix_id), input_ids[:, 1:]], dim=1)
    embeds = torch.cat([rows[:, :1], prefix.to(rows.dtype), rows[:, 1:]], dim=1)
    return ids[:, :length], embeds[:, :length]


def soft_prompt_attack(text_encoder, unet, input_ids: torch.Tensor, prefix: torch.Tensor, x_t: torch.Tensor,
                       t: torch.Tensor, target: torch.Tensor, config: AdvUnlearnConfig, prefix_id: int) -> tuple:
    """The inner problem: `config.attack_step` Adam steps on the soft prefix `prefix` (1, k, D), step s on
    l_atk = ||eps(x_t[s], E(c + prefix), t[s]) - target[s]||^2 (target = the original model's concept prediction).

    Returns (the prefix the last step evaluated, the attack losses). The gradient is never zeroed (as the official
    loop); the text encoder is not updated."""
    prefix = prefix.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([prefix], lr=config.attack_lr)
    rows = text_encoder.get_input_embeddings()(input_ids).detach()
    losses, used = [], prefix.detach().clone()
    for step in range(config.attack_step):
        ids, embeds = with_prefix(input_ids, rows, prefix, prefix_id)
        cond = encode_token_embeddings(text_encoder, ids, embeds)
        prediction = unet(x_t[step : step + 1], t[step : step + 1], encoder_hidden_states=cond).sample
        loss = F.mse_loss(prediction, target[step : step + 1])
        loss.backward()
        used = prefix.detach().clone()
        if config.attack_method == "fast_at":
            prefix.grad.sign_()
        optimizer.step()
        losses.append(loss.item())
    return used, losses


def unlearn_target(unet, x_t, t, neutral_emb, concept_emb, negative_guidance: float) -> torch.Tensor:
    """ESD's target: the frozen model's prediction negatively guided away from the concept."""
    with torch.no_grad():
        eps_neutral = unet(x_t, t, encoder_hidden_states=neutral_emb).sample
        eps_concept = unet(x_t, t, encoder_hidden_states=concept_emb).sample
    return eps_neutral - negative_guidance * (eps_concept - eps_neutral)


def outer_loss(unet, x_t, t, cond, target, retain_x_t, retain_cond, retain_target, retain_loss_w: float):
    """l_u + gamma l_r: the trainable encoder's conditions `cond` (concept, possibly with the adversarial prefix)
    and `retain_cond` against the ESD target and the original model's retain predictions."""
    prediction = unet(x_t, t.expand(len(x_t)), encoder_hidden_states=cond).sample
    retain_prediction = unet(retain_x_t, t.expand(len(retain_x_t)), encoder_hidden_states=retain_cond).sample
    return F.mse_loss(prediction, target) + retain_loss_w * F.mse_loss(retain_prediction, retain_target)


class RetainPool:
    """Retain prompts drawn without replacement; refilled when fewer than a batch are left (`PromptDataset`)."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator, self.unseen = n, generator, []

    def draw(self, batch: int) -> torch.Tensor:
        if len(self.unseen) < min(batch, self.n):
            self.unseen = torch.randperm(self.n, generator=self.generator).tolist()
        taken, self.unseen = self.unseen[:batch], self.unseen[batch:]
        return torch.tensor(taken, dtype=torch.long)


def erase(components: DiffusionComponents, request: EraseRequest, config: AdvUnlearnConfig,
          seed: int = 0) -> EditedDiffusion:
    """Adversarially train a copy of the text encoder; the input components are left untouched."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)
    if not request.preserve_prompts:
        raise ValueError("AdvUnlearn needs retain prompts (the request's preserve_prompts)")
    unet, device = components.unet, components.device

    # 1. Trainable copy of the text encoder (encoder layers + final layer norm); UNet and original encoder frozen.
    encoder = frozen_copy(components.text_encoder)
    names = set(trainable_parameter_names(encoder))
    params = [p for name, p in encoder.named_parameters() if name in names]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)

    # Fixed inputs: the concept prompts' ids, their original-encoder embeddings and the neutral ones; the retain ones.
    forget_ids = tokenize(components.tokenizer, request.forget_prompts).to(device)
    concept_emb = encode_prompts(components, request.forget_prompts)
    neutral_emb = encode_prompts(components, request.neutral_prompts)
    retain_prompts = list(request.preserve_prompts)
    retain_ids = tokenize(components.tokenizer, retain_prompts).to(device)
    retain_emb = encode_prompts(components, retain_prompts)
    token_table = encoder.get_input_embeddings().weight.detach()
    prefix_id = components.tokenizer.eos_token_id
    timesteps = timesteps_for(components, config.ddim_steps)
    num_train = components.scheduler.config.num_train_timesteps
    sampling = dict(num_inference_steps=config.ddim_steps, guidance_scale=config.start_guidance, eta=config.ddim_eta)
    pool = RetainPool(len(retain_prompts), generator)

    losses, attack_losses, word, prefix = [], [], 0, None
    for iteration in range(config.iterations):
        attacking = iteration >= config.warmup_iter
        # 2a. A concept prompt (and, after the warm-up, a new adversarial prefix) every `adv_prompt_update_step`.
        if iteration % config.adv_prompt_update_step == 0:
            word = int(torch.randint(len(request.forget_prompts), (1,), generator=generator))
            if attacking:
                if prefix is None or config.attack_init == "random":
                    rows = torch.randint(len(token_table), (1, config.adv_prompt_num), generator=generator)
                    prefix = token_table[rows.to(device)]
                stops, t_attack = pair_timesteps("paper-era", config.ddim_steps, timesteps, num_train,
                                                  (config.attack_step,), generator)
                x_attack = sample_cfg(components, [request.forget_prompts[word]] * config.attack_step, generator,
                                      stop_after_steps=stops, **sampling)
                t_attack = t_attack.to(device)
                with torch.no_grad():
                    target = unet(x_attack, t_attack,
                                  encoder_hidden_states=concept_emb[word : word + 1].expand(config.attack_step, -1, -1)
                                  ).sample
                encoder.eval()
                prefix, round_losses = soft_prompt_attack(encoder, unet, forget_ids[word : word + 1], prefix,
                                                          x_attack, t_attack, target, config, prefix_id)
                attack_losses.append(round_losses)

        # 2b. One (x_t, t) pair for the concept prompt and the retain batch, stopped at the same sampler step.
        index = pool.draw(config.retain_batch)
        stop, t = pair_timesteps("paper-era", config.ddim_steps, timesteps, num_train, (1,), generator)
        both = sample_cfg(components, [request.forget_prompts[word]] + [retain_prompts[i] for i in index.tolist()],
                          generator, stop_after_steps=stop.expand(1 + len(index)), **sampling)
        x_t, retain_x_t, t = both[:1], both[1:], t.to(device)
        target = unlearn_target(unet, x_t, t, neutral_emb[word : word + 1], concept_emb[word : word + 1],
                                config.negative_guidance)
        with torch.no_grad():
            retain_target = unet(retain_x_t, t.expand(len(index)), encoder_hidden_states=retain_emb[index]).sample

        # 2c. One step on l_u (clean prompt during the warm-up, adversarial prefix after) + gamma l_r. A warm-up
        #     that does not end on an update step keeps the clean prompt until the first attack round (the official
        #     loop would fail there: it has no adversarial prompt yet).
        encoder.train()
        for p in params:
            p.requires_grad_(True)
        if attacking and prefix is not None:
            input_ids = forget_ids[word : word + 1]
            ids, embeds = with_prefix(input_ids, encoder.get_input_embeddings()(input_ids), prefix, prefix_id)
            cond = encode_token_embeddings(encoder, ids, embeds)
        else:
            cond = encoder(forget_ids[word : word + 1])[0]
        retain_cond = encoder(retain_ids[index])[0]
        loss = outer_loss(unet, x_t, t, cond, target, retain_x_t, retain_cond, retain_target, config.retain_loss_w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        for p in params:
            p.requires_grad_(False)

    # 3. The edited model: the original UNet with the adversarially trained text encoder.
    encoder.eval().requires_grad_(False)
    tail = losses[-20:]
    return EditedDiffusion(
        dataclasses.replace(components, text_encoder=encoder),
        info={
            "trainable_parameters": sum(p.numel() for p in params),
            "final_loss": sum(tail) / max(1, len(tail)),
            "attack_rounds": len(attack_losses),
            "attack_loss_first_last": [attack_losses[-1][0], attack_losses[-1][-1]] if attack_losses else None,
            "wall_time_s": time.perf_counter() - start,
        },
    )
