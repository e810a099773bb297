"""What every text-to-image card shares: the components bundle, the erase request, prompt encoding, classifier-free
guided DDIM sampling and the edited-model interface.

Only code that is truly identical across T2I cards lives here; each card's own logic stays in its file. The helpers
work on diffusers / transformers components, so the same code runs on the MiniCanvas testbed (a tiny 8x8 pixel-space
model) and on Stable Diffusion 1.x (64x64 latents, decoded by the VAE by the caller).

The edited-model interface (`EditedDiffusion`) is what a T2I card returns and what attacks reach into: the prompt
encoder (`encode`), the guided noise prediction for one denoising step (`guided_noise`, differentiable in the
embeddings), and the sampler (`sample`, `sample_embeddings`). A card that changes no weights (SLD) subclasses it and
overrides `guided_noise`; the sampler is the same loop for every card.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from ..core.models import frozen_copy, state_fingerprint  # noqa: F401  (re-exported for the cards)


@dataclass
class SamplingSettings:
    """How images are drawn from a model (classifier-free guided DDIM)."""

    num_inference_steps: int
    guidance_scale: float
    eta: float


@dataclass
class DiffusionComponents:
    """The diffusers / transformers pieces a card works on.

    `scheduler` is a DDIMScheduler used for sampling and for `add_noise`; `sample_shape` is the (C, H, W) of the
    model space (pixels on MiniCanvas, VAE latents on Stable Diffusion); `vae` is only set for latent models.
    """

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    sample_shape: tuple
    sampling: SamplingSettings
    vae: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_batch: int = 2048  # samples per UNet call when drawing many images (small for Stable Diffusion)

    def with_unet(self, unet) -> "DiffusionComponents":
        """The same components with another UNet (an edited copy)."""
        return dataclasses.replace(self, unet=unet)

    def fresh_scheduler(self):
        """A private scheduler copy: `set_timesteps` mutates state, so every loop gets its own."""
        return type(self.scheduler).from_config(self.scheduler.config)

    def trainable_modules(self) -> dict:
        """The modules a card may edit, by name (what the edited-weights cache stores)."""
        return {"unet": self.unet, "text_encoder": self.text_encoder}


@dataclass
class EraseRequest:
    """What to erase, expressed as prompts, so that cards do not need to know the testbed.

    - forget_prompts: prompts that express the concept (ESD/CA train on them, UCE edits their tokens).
    - neutral_prompts: the same prompts with the concept removed (ESD's "unconditional" reference).
    - anchor_prompts: what each forget prompt should turn into (UCE guide, CA anchor).
    - preserve_prompts: prompts whose outputs must not change (UCE preserve set).
    - concept_prompt: one text naming the concept (SLD's safety concept).
    - images: real images of some of these prompts (prompt -> (N, *sample_shape) tensor in the model space, pixels
      on MiniCanvas), for the cards that train on images (SalUn, EraseDiff, Scissorhands, FMN, SafeGen, task
      vectors). The images of a preserve prompt never show the forget concept. A card that needs images of a
      prompt missing here samples them from the base model (`training.prompt_images`), as the official code does
      when it has no dataset (and as it always does on Stable Diffusion).
    The three first lists are parallel: forget_prompts[i] pairs with neutral_prompts[i] and anchor_prompts[i].
    """

    forget_prompts: list
    neutral_prompts: list
    anchor_prompts: list
    preserve_prompts: list = field(default_factory=list)
    concept_prompt: str = ""
    images: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        n = len(self.forget_prompts)
        if n == 0 or len(self.neutral_prompts) != n or len(self.anchor_prompts) != n:
            raise ValueError("forget_prompts, neutral_prompts and anchor_prompts must be non-empty and parallel")


# ----------------------------------------------------------------------------------------------------------
# Prompts and parameters
# ----------------------------------------------------------------------------------------------------------
def concept_word(request) -> str:
    """The erased concept's word: the word of the concept prompt that every forget prompt has and no neutral or
    anchor prompt has ("three" for "a digit three", "plain" for "a digit in plain style"); the whole concept prompt
    for a free-text concept (Stable Diffusion)."""
    others = [prompt.split() for prompt in list(request.neutral_prompts) + list(request.anchor_prompts)]
    for word in request.concept_prompt.split():
        if all(word in prompt.split() for prompt in request.forget_prompts) and not any(word in o for o in others):
            return word
    return request.concept_prompt


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Pad to the tokenizer's max length, as Stable Diffusion does (77 for CLIP, 8 on MiniCanvas)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_prompts(components: DiffusionComponents, prompts: Sequence[str]) -> torch.Tensor:
    """Text-encoder last hidden states (B, L, D) for a list of prompts, without attention mask (as SD 1.x)."""
    input_ids = tokenize(components.tokenizer, prompts).to(components.device)
    return components.text_encoder(input_ids)[0]


def differing_span(tokenizer, prompt: str, other_prompt: str) -> tuple:
    """(start, end) token positions of `prompt` (unpadded ids) left after removing what it shares with
    `other_prompt` at the start and at the end: the concept's tokens for "a digit three in plain style" against
    "a digit in plain style", or 1..len(word) for a bare word against ""."""
    ids = tokenizer(prompt, truncation=True).input_ids
    other = tokenizer(other_prompt, truncation=True).input_ids
    prefix = 0
    while prefix < min(len(ids), len(other)) and ids[prefix] == other[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(ids), len(other)) - prefix and ids[-1 - suffix] == other[-1 - suffix]:
        suffix += 1
    return prefix, len(ids) - suffix


def is_cross_attention(param_name: str) -> bool:
    """diffusers names cross-attention `attn2` (self-attention is `attn1`)."""
    return "attn2" in param_name


def cross_attention_modules(unet) -> list:
    """(name, Attention module) for every cross-attention layer of the UNet."""
    return [(name, module) for name, module in unet.named_modules() if name.endswith("attn2")]


def explicit_attention(attn, hidden_states, encoder_hidden_states=None, observe=None, key_delta=None,
                       value_delta=None) -> torch.Tensor:
    """diffusers' plain attention processor with the probabilities computed explicitly, so that a card can read them:
    `observe(probs)` gets them as (batch * heads, pixels, tokens), batch-major. `key_delta` / `value_delta` (d_out,
    d_in) are added to the key / value projections' weights (a LoRA's update). Returns the layer's output."""
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key, value = attn.to_k(context), attn.to_v(context)
    if key_delta is not None:
        key = key + context @ key_delta.T
    if value_delta is not None:
        value = value + context @ value_delta.T
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))
    probs = attn.get_attention_scores(query, attn.head_to_batch_dim(key), None)
    if observe is not None:
        observe(probs)
    out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, attn.head_to_batch_dim(value)))))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


def initial_noise(components: DiffusionComponents, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Start noise drawn on CPU (reproducible on any device), scaled by the scheduler's init sigma."""
    noise = torch.randn((batch_size, *components.sample_shape), generator=generator, dtype=torch.float32)
    noise = noise.to(device=components.device, dtype=components.unet.dtype)
    return noise * components.scheduler.init_noise_sigma


def timesteps_for(components: DiffusionComponents, num_inference_steps: int) -> torch.Tensor:
    """The sampling timesteps for a number of DDIM steps (used to know where a partial sample sits)."""
    scheduler = components.fresh_scheduler()
    scheduler.set_timesteps(num_inference_steps)
    return scheduler.timesteps.clone()


# ----------------------------------------------------------------------------------------------------------
# The edited-model interface and its sampler (classifier-free guided DDIM)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EditedDiffusion:
    """A text-to-image model as a card leaves it: its components (edited weights or the original ones), the guided
    noise prediction, the prompt encoder and the sampler. `info` holds the card's own figures (loss, time, ...)."""

    components: DiffusionComponents
    info: dict = field(default_factory=dict)

    # -- the pieces an attack reaches into ----------------------------------------------------------------
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompt embeddings (B, L, D) from the (possibly edited) text encoder."""
        return encode_prompts(self.components, prompts)

    def guidance_state(self, sample: torch.Tensor) -> Any:
        """State carried across denoising steps by `guided_noise` (none for plain classifier-free guidance)."""
        return None

    def guided_noise(self, scheduler, sample: torch.Tensor, t, text: torch.Tensor, uncond: torch.Tensor,
                     guidance_scale: float, step_index: int = 0, state: Any = None, unet=None):
        """One step's classifier-free guided noise prediction: eps_0 + s (eps_c - eps_0); returns (eps, state).

        Differentiable in `text` when called outside `torch.no_grad` (the sampler calls it under no_grad)."""
        unet = unet if unet is not None else self.components.unet
        model_input = scheduler.scale_model_input(torch.cat([sample, sample]), t)
        eps_uncond, eps_text = unet(model_input, t, encoder_hidden_states=torch.cat([uncond, text])).sample.chunk(2)
        return eps_uncond + guidance_scale * (eps_text - eps_uncond), state

    # -- sampling -----------------------------------------------------------------------------------------
    def sample(self, prompts: Sequence[str], generator: torch.Generator, **settings) -> torch.Tensor:
        """Samples (model space: pixels or latents) for prompts; `settings` as in `sample_embeddings`."""
        return self.sample_embeddings(None, generator, prompts=list(prompts), **settings)

    def sample_embeddings(
        self,
        text: Optional[torch.Tensor],
        generator: torch.Generator,
        *,
        prompts: Optional[list] = None,
        num_inference_steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        eta: Optional[float] = None,
        stop_after_steps=None,
        negative_prompt: str = "",
        unet=None,
    ) -> torch.Tensor:
        """Guided DDIM from prompt embeddings `text` (B, L, D), or from `prompts` (encoded chunk by chunk).

        `stop_after_steps` (an int, or one int per sample) returns partially denoised samples: a sample stopped
        after k scheduler steps sits at noise level `scheduler.timesteps[k]` (ESD's x_t). More samples than
        `components.max_batch` are drawn in chunks that share one generator (deterministic for a given max_batch).
        """
        components = self.components
        steps = num_inference_steps or components.sampling.num_inference_steps
        cfg = components.sampling.guidance_scale if guidance_scale is None else guidance_scale
        eta = components.sampling.eta if eta is None else eta
        total = len(prompts) if prompts is not None else len(text)
        stops = None
        if stop_after_steps is not None:
            stops = torch.as_tensor(stop_after_steps, dtype=torch.long).expand(total)

        outputs = []
        for start in range(0, total, components.max_batch):
            end = min(total, start + components.max_batch)
            scheduler = components.fresh_scheduler()
            scheduler.set_timesteps(steps, device=components.device)
            chunk_text = self.encode(prompts[start:end]) if prompts is not None else text[start:end]
            uncond = self.encode([negative_prompt]).expand_as(chunk_text)
            sample = initial_noise(components, end - start, generator)
            state = self.guidance_state(sample)
            for step_index, t in enumerate(scheduler.timesteps):
                # samples whose stopping step is reached are left as they are
                active = slice(None) if stops is None else (stops[start:end] > step_index).nonzero()[:, 0]
                if stops is not None and len(active) == 0:
                    break
                current = sample[active]
                with torch.no_grad():
                    eps, state = self.guided_noise(scheduler, current, t, chunk_text[active], uncond[active], cfg,
                                                   step_index, state, unet)
                updated = scheduler.step(eps, t, current, eta=eta, generator=generator).prev_sample
                if stops is None:
                    sample = updated
                else:
                    sample = sample.clone()
                    sample[active] = updated
            outputs.append(sample)
        return torch.cat(outputs)

    # -- what the edited-weights cache stores ---------------------------------------------------------------
    def changed_modules(self, base: DiffusionComponents) -> dict:
        """name -> module for every trainable module that is not the base model's own object."""
        return {name: module for name, module in self.components.trainable_modules().items()
                if module is not base.trainable_modules()[name]}


def sample_cfg(components: DiffusionComponents, prompts: Sequence[str], generator: torch.Generator, *, unet=None,
               **settings) -> torch.Tensor:
    """Guided DDIM sampling of `components` (or of another UNet on the same components, e.g. a frozen teacher)."""
    return EditedDiffusion(components).sample_embeddings(None, generator, prompts=list(prompts), unet=unet, **settings)


def finetuned_model(components: DiffusionComponents, unet, params, losses: list, start: float) -> EditedDiffusion:
    """The result of a card that fine-tuned `unet`: frozen again, sampling like the base model, with its figures."""
    unet.requires_grad_(False)
    tail = losses[-20:]
    return EditedDiffusion(
        components.with_unet(unet),
        info={
            "trainable_parameters": sum(p.numel() for p in params),
            "final_loss": sum(tail) / max(1, len(tail)),
            "wall_time_s": time.perf_counter() - start,
        },
    )
