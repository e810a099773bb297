"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023). Catalog id: `gandikota2023erasing`.

Follows rohitgandikota/erasing@a2189e9, train-scripts/train-esd.py (the paper-era code); the new diffusers code
(rohitgandikota/erasing@25613d2, esd_sd.py) is available through `sample_with="frozen"` and
`timestep_pairing="equal"`.

ESD fine-tunes the UNet so that its prediction for a concept prompt c equals the frozen model's prediction steered
*away* from c (negative guidance):

    eps_theta(x_t, c, t)  <-  eps_*(x_t, n, t) - eta * [eps_*(x_t, c, t) - eps_*(x_t, n, t)]

with n the unconditional prompt in the paper, and a plain MSE with no timestep weighting. Parameters trained:

- ESD-x (`variant="x"`): only cross-attention (`attn2`: to_q, to_k, to_v, to_out); for styles and specific concepts.
- ESD-u (`variant="u"`): every UNet parameter except cross-attention (paper-era `noxattn`, which also leaves out
  the time embedding and the output conv); for global concepts (nudity, whole object classes).
- `variant="x-strict"`: only `attn2.to_k` / `attn2.to_v` (the new code's `esd-x-strict`).

x_t is not a noised training image: it comes from partially running the sampler on c (CFG `start_guidance`), with
the model being trained (paper-era, `sample_with="trained"`) or the frozen one (new code, `"frozen"`). How the UNet
timestep t is paired with x_t (`timestep_pairing`), for S sampler steps and N training timesteps:

- "paper-era": draw t_enc ~ U{0..S-1}; run the sampler through its step of index t_enc - 1 (the ldm DDIM sampler's
  `till_T`), i.e. min(S, S - t_enc + 1) steps; draw t ~ U[round(N t_enc / S), round(N (t_enc + 1) / S)). The
  latent stops one to two sampler steps below t's noise level (fully denoised for t_enc <= 1).
- "equal" (new code, `run_till_timestep`): stop after k ~ U{0..S-1} steps and predict at scheduler.timesteps[k], the
  latent's own noise level (never fully denoised).

`negative_guidance` is the paper's eta with the neutral prediction as base (paper-era); the new code's
`negative_guidance=2` with the conditional prediction as base is the same target as eta=1.

On MiniCanvas the neutral prompt n is the prompt with the concept removed ("a digit in inverted style" for "a digit
three in inverted style") instead of "", a deviation declared in the registry: with "" the whole prompt, style
included, is pushed away and cross-domain accuracy collapses. For a bare concept prompt n is "" as in the paper.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import (
    DiffusionComponents,
    EraseRequest,
    EditedDiffusion,
    finetuned_model,
    encode_prompts,
    frozen_copy,
    is_cross_attention,
    sample_cfg,
    timesteps_for,
)


@dataclass
class ESDConfig:
    """Defaults are the official paper-era ones for Stable Diffusion 1.x (rohitgandikota/erasing@a2189e9,
    train-scripts/train-esd.py); a testbed's adaptations are declared in methods/registry.yaml."""

    variant: str = "x"  # paper: ESD-x for styles / specific concepts, ESD-u for nudity and object classes
    negative_guidance: float = 1.0  # paper eta=1 (paper-era code `negative_guidance`); new code's 2 is the same
    iterations: int = 1000  # paper-era code (new diffusers code: 200)
    learning_rate: float = 1e-5  # paper-era code, Adam (new code: 5e-5)
    batch_size: int = 1  # paper-era code
    ddim_steps: int = 50  # paper-era code: x_t comes from a partial 50-step DDIM run
    start_guidance: float = 3.0  # paper-era code: CFG scale while generating x_t
    ddim_eta: float = 0.0  # paper-era code: DDIM eta 0 while generating x_t
    sample_with: str = "trained"  # x_t from the model being trained (paper-era code) or "frozen" (new code)
    timestep_pairing: str = "paper-era"  # how t is drawn for x_t: "paper-era" (train-esd.py) or "equal" (esd_sd.py)

    def __post_init__(self):
        check_config(self, {"variant": ("x", "u", "x-strict"), "sample_with": ("trained", "frozen"),
                            "timestep_pairing": ("paper-era", "equal")},
                     iterations=">=1", batch_size=">=1", ddim_steps=">=1", learning_rate="(0,1]",
                     negative_guidance="[0,1e3]", start_guidance="[0,1e3]", ddim_eta="[0,1]")


def trainable_parameter_names(unet, variant: str) -> list:
    """Names of the parameters ESD updates for a variant ("x" or "u")."""
    names = [name for name, _ in unet.named_parameters()]
    if variant == "x":
        return [n for n in names if is_cross_attention(n)]
    if variant == "x-strict":
        # new official code's `esd-x-strict`: only the cross-attention key and value projections
        return [n for n in names if is_cross_attention(n) and (".to_k." in n or ".to_v." in n)]
    if variant == "u":
        # paper-era `noxattn`: everything but cross-attention, the time embedding and the output layer
        excluded = ("time_embedding", "conv_norm_out", "conv_out")
        return [n for n in names if not is_cross_attention(n) and not n.startswith(excluded)]
    raise ValueError(f"unknown ESD variant {variant!r}; use 'x', 'u' or 'x-strict'")


def pair_timesteps(pairing: str, steps: int, timesteps: torch.Tensor, num_train_timesteps: int, shape: tuple,
                   generator: torch.Generator) -> tuple:
    """(sampler steps that make x_t, UNet timestep t) for every element of `shape`, for a sampler of `steps` steps
    (`timesteps`, its schedule) and the `pairing` "paper-era" or "equal" (see `timestep_pairing` above)."""
    draws = torch.randint(steps, shape, generator=generator)
    if pairing == "equal":
        return draws, timesteps[draws]
    # paper-era: t_enc = draws; the ldm sampler runs through its step of index t_enc - 1, and t is drawn in the bin
    # [round(N t_enc / S), round(N (t_enc + 1) / S)) (train-esd.py: og_num, og_num_lim)
    stops = torch.clamp(steps - draws + 1, max=steps)
    low = torch.round(draws.double() * num_train_timesteps / steps).long()
    high = torch.round((draws.double() + 1) * num_train_timesteps / steps).long()
    return stops, low + (torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low)).long()


def erase(components: DiffusionComponents, request: EraseRequest, config: ESDConfig, seed: int = 0) -> EditedDiffusion:
    """Fine-tune a copy of the UNet with the ESD objective; the input components are left untouched."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Frozen original model (the teacher) and a trainable copy restricted to the variant's parameters.
    teacher = frozen_copy(components.unet)
    student = frozen_copy(components.unet)
    trainable = set(trainable_parameter_names(student, config.variant))
    params = [p for name, p in student.named_parameters() if name in trainable]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)

    # 2. Encode the concept prompts and their neutral counterparts once (the text encoder is not trained).
    concept_emb = encode_prompts(components, request.forget_prompts)
    neutral_emb = encode_prompts(components, request.neutral_prompts)
    timesteps = timesteps_for(components, config.ddim_steps)

    # 3. For every iteration and batch element: the concept prompt, the sampler steps that make x_t and the UNet
    #    timestep t paired with it (see `timestep_pairing` in the module docstring).
    shape = (config.iterations, config.batch_size)
    prompt_index = torch.randint(len(request.forget_prompts), shape, generator=generator)
    stop_steps, unet_t = pair_timesteps(config.timestep_pairing, config.ddim_steps, timesteps,
                                        components.scheduler.config.num_train_timesteps, shape, generator)
    sampling = dict(num_inference_steps=config.ddim_steps, guidance_scale=config.start_guidance, eta=config.ddim_eta)
    if config.sample_with == "frozen":
        # x_t does not depend on the student: draw all of them up front, in large batches
        all_prompts = [request.forget_prompts[i] for i in prompt_index.flatten().tolist()]
        all_x_t = sample_cfg(components, all_prompts, generator, unet=teacher, stop_after_steps=stop_steps.flatten(), **sampling)
        all_x_t = all_x_t.view(config.iterations, config.batch_size, *all_x_t.shape[1:])

    losses = []
    for iteration in range(config.iterations):
        index, k = prompt_index[iteration], stop_steps[iteration]
        t = unet_t[iteration].to(components.device)

        # 4. x_t: k guided DDIM steps on the concept prompt, with the model being trained (paper-era code) or the
        #    frozen model (new code).
        if config.sample_with == "frozen":
            x_t = all_x_t[iteration]
        else:
            prompts = [request.forget_prompts[i] for i in index.tolist()]
            x_t = sample_cfg(components, prompts, generator, unet=student, stop_after_steps=k, **sampling)

        # 5. Target: the frozen model's prediction, negatively guided away from the concept.
        with torch.no_grad():
            eps_neutral = teacher(x_t, t, encoder_hidden_states=neutral_emb[index]).sample
            eps_concept = teacher(x_t, t, encoder_hidden_states=concept_emb[index]).sample
            target = eps_neutral - config.negative_guidance * (eps_concept - eps_neutral)

        # 6. Regress the trainable model's concept prediction onto the target (plain MSE, no weighting).
        prediction = student(x_t, t, encoder_hidden_states=concept_emb[index]).sample
        loss = F.mse_loss(prediction, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    # 7. Return the edited model; it samples like the base model.
    return finetuned_model(components, student, params, losses, start)
