"""SPM: One-dimensional Adapter to Rule Them All (Lyu et al., CVPR 2024). Catalog id: `lyu2023onedimensional`.

Follows Con6924/SPM@3dd762e, train_spm.py (training), src/models/spm.py (the adapter), src/configs/prompt.py (the
losses), src/engine/sampling.py (the anchors) and infer_spm.py (Facilitated Transport).

SPM leaves the UNet's weights alone and trains a rank-1 "membrane" beside every Linear / Conv2d layer of the UNet's
transformer blocks (proj_in, attention q/k/v/out, feed-forward, proj_out):

    W x  ->  W x + m * (alpha / r) * up(down(x))        r = 1; down: Kaiming-uniform, up: zeros (zero at init)

1. Wrap a private copy of the UNet with the adapters (strength m = 1 while training, 0 = the original model).
2. Each iteration: run k ~ U{1..S-1} guided DDIM steps (CFG 3, the adapted model) on a concept prompt c to get x_t,
   and pair it with t = T_N[floor(k N / S)] (the N-step schedule), as train_spm.py does.
3. Erasure (ESD-like negative guidance, the original model as teacher, n the neutral prompt):
       L_erase = || eps_adapted(x_t, c, t) - [eps(x_t, n, t) - g (eps(x_t, c, t) - eps(x_t, n, t))] ||^2
4. Latent Anchoring: `anchor_samples` random text embeddings a per x_t, drawn as in sampling.py (a unit Gaussian
   direction, accepted with probability 1 - cos(a, e_c), scaled to U[0.8, 1.2] x ||e_c||), must keep the original
   prediction:  L_LA = || eps_adapted(x_t, a, t) - eps(x_t, a, t) ||^2;  L = L_erase + lambda_LA L_LA.
5. AdamW on the adapters only, cosine-with-restarts learning rate with warm-up.
6. Facilitated Transport at inference: for a prompt p with embedding e_p and the erased concept e_c,
       m(p) = max( cos(flat(e_p), flat(e_c)),  |tokens(p) & tokens(c)| / |tokens(c)| )     (special tokens left out)
   and infer_spm.py multiplies every tensor of the adapter's state dict by m, both factors included, so the weight
   update is m^2 (alpha / r) up down. The same adapted UNet (strength of the user prompt) serves the unconditional
   and the conditional pass of classifier-free guidance.

The erased concept of step 6 is the concept's word (`concept_word`: "three"), as the official targets are bare
names ("snoopy"); a whole MiniCanvas prompt shares "a digit ... style" with every other prompt.

Why an EditedDiffusion subclass (`edits: sampler`) and not merged weights: the strength depends on the prompt, so
no single set of weights is the edited model. `SPMDiffusion.guided_noise` computes m from the embeddings it is given
(differentiable in them, as attacks need) and runs the adapted copy of the UNet at that strength per sample; its
`components` are the input ones (the base UNet, untouched). The token-overlap term needs the prompt's tokens: `encode`
remembers the score of every embedding it produced (keyed by its values), so `sample(prompts)` and
`sample_embeddings(encode(prompts))` agree; any other embedding (a soft prompt, another encoder) is scored by the
cosine term alone, the only part of Facilitated Transport an embedding carries.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import (
    DiffusionComponents,
    EditedDiffusion,
    EraseRequest,
    encode_prompts,
    frozen_copy,
    sample_cfg,
    tokenize,
)

# src/models/spm.py: SPMNetwork.DEFAULT_TARGET_REPLACE (the Linear / Conv2d layers inside these modules)
TARGET_MODULES = ("Transformer2DModel",)
ADAPTED_LAYERS = ("Linear", "Conv2d")


@dataclass
class SPMConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 (Con6924/SPM@3dd762e, configs/snoopy/config.yaml and
    prompt.yaml, train_spm.py, infer_spm.py); a testbed's adaptations are declared in methods/registry.yaml."""

    rank: int = 1  # config.yaml network.rank: the one-dimensional adapter
    alpha: float = 1.0  # config.yaml network.alpha (scale alpha / rank)
    iterations: int = 3000  # config.yaml train.iterations
    learning_rate: float = 1e-4  # config.yaml train.lr / unet_lr (AdamW8bit)
    weight_decay: float = 0.01  # bitsandbytes AdamW8bit default (no optimizer_args in the config)
    lr_warmup_steps: int = 500  # config.yaml lr_warmup_steps (cosine_with_restarts)
    lr_num_cycles: int = 3  # config.yaml lr_scheduler_num_cycles
    batch_size: int = 1  # prompt.yaml batch_size (one x_t per iteration)
    max_denoising_steps: int = 30  # config.yaml max_denoising_steps: S, the DDIM run that makes x_t
    sampling_guidance: float = 3.0  # train_spm.py: guidance_scale=3 while making x_t
    ddim_eta: float = 0.0  # train_util.diffusion: scheduler.step's default eta
    erase_guidance: float = 1.0  # prompt.yaml guidance_scale: g of the erasure target
    la_strength: float = 1000.0  # prompt.yaml la_strength: lambda_LA
    anchor_samples: int = 4  # prompt.yaml sampling_batch_size: anchors per x_t
    matching_metric: str = "clipcos_tokenuni"  # infer_spm.py default; "clipcos" / "tokenuni" use one term
    transport: bool = True  # Facilitated Transport (infer_spm.py without --spm_multiplier); False: m = 1 always

    def __post_init__(self):
        check_config(self, {"matching_metric": ("clipcos_tokenuni", "clipcos", "tokenuni")},
                     rank=">=1", alpha=">0", iterations=">=1", learning_rate="(0,1]", weight_decay="[0,1]",
                     lr_warmup_steps=">=0", lr_num_cycles=">=1", batch_size=">=1", max_denoising_steps=">=2",
                     sampling_guidance="[0,1e3]", ddim_eta="[0,1]", erase_guidance="[0,1e3]",
                     la_strength="[0,1e9]", anchor_samples=">=0")


# ----------------------------------------------------------------------------------------------------------
# The adapter (src/models/spm.py)
# ----------------------------------------------------------------------------------------------------------
class SPMLayer(nn.Module):
    """One rank-r membrane beside a Linear or Conv2d layer: (alpha / r) up(down(x)), `up` zero at initialisation."""

    def __init__(self, layer: nn.Module, rank: int, alpha: float):
        super().__init__()
        if isinstance(layer, nn.Linear):
            self.down = nn.Linear(layer.in_features, rank, bias=False)
            self.up = nn.Linear(rank, layer.out_features, bias=False)
        else:
            rank = min(rank, layer.in_channels, layer.out_channels)
            self.down = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, bias=False)
            self.up = nn.Conv2d(rank, layer.out_channels, 1, 1, bias=False)
        self.scale = alpha / rank
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # "same as microsoft's"
        nn.init.zeros_(self.up.weight)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x)) * self.scale


class SPMNetwork(nn.Module):
    """The adapters of a UNet, attached by forward hooks. `multiplier` is a float or one value per sample (B,): the
    strength m^2 of infer_spm.py's scaled state dict; 0 gives the original UNet exactly."""

    def __init__(self, unet, rank: int, alpha: float):
        super().__init__()
        self.layers = nn.ModuleDict()
        self.multiplier = 0.0
        self._handles = []
        for name, module in unet.named_modules():
            if module.__class__.__name__ not in TARGET_MODULES:
                continue
            for child_name, child in module.named_modules():
                if child.__class__.__name__ in ADAPTED_LAYERS:
                    key = f"{name}.{child_name}".replace(".", "_")
                    self.layers[key] = SPMLayer(child, rank, alpha).to(child.weight.device, child.weight.dtype)
                    self._handles.append(child.register_forward_hook(self._hook(key)))

    def _hook(self, key: str):
        def add_membrane(module, inputs, output):
            m = self.multiplier
            if isinstance(m, float) and m == 0.0:
                return output
            if torch.is_tensor(m):  # one strength per sample
                m = m.to(output.dtype).view(-1, *([1] * (output.dim() - 1)))
            return output + m * self.layers[key].delta(inputs[0])
        return add_membrane


def adapted_unet(unet, config: SPMConfig, seed: int):
    """(a private copy of `unet` carrying the adapters, the network)."""
    copy = frozen_copy(unet)
    torch.manual_seed(seed)  # Kaiming initialisation of the `down` factors
    network = SPMNetwork(copy, config.rank, config.alpha)
    return copy, network


# ----------------------------------------------------------------------------------------------------------
# Losses and anchors (src/configs/prompt.py, src/engine/sampling.py)
# ----------------------------------------------------------------------------------------------------------
def erase_target(eps_positive: torch.Tensor, eps_neutral: torch.Tensor, guidance: float) -> torch.Tensor:
    """PromptEmbedsPair._erase: neutral - g (positive - neutral)."""
    return eps_neutral - guidance * (eps_positive - eps_neutral)


def spm_loss(eps_target, eps_positive, eps_neutral, eps_anchor=None, eps_anchor_original=None,
             guidance: float = 1.0, la_strength: float = 1000.0) -> dict:
    """PromptEmbedsPair._erase_with_la: MSE to the erasure target + lambda_LA MSE(anchors, original anchors)."""
    erase = F.mse_loss(eps_target, erase_target(eps_positive, eps_neutral, guidance))
    if eps_anchor is None:
        return {"loss": erase, "erase": erase}
    anchoring = F.mse_loss(eps_anchor, eps_anchor_original)
    return {"loss": erase + la_strength * anchoring, "erase": erase, "anchoring": anchoring}


def sample_anchors(target: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """sampling.sample: `count` embeddings shaped like `target` (L, D): a uniform direction, accepted with
    probability 1 - cos(direction, target), scaled to U[0.8, 1.2] times the target's norm."""
    flat = target.reshape(-1)
    norm = flat.norm()
    samples = []
    while len(samples) < count:
        while True:
            noise = torch.randn(flat.shape, generator=generator, dtype=torch.float32).to(target)
            noise = noise / noise.norm()
            similarity = F.cosine_similarity(flat, noise, dim=0)
            if torch.rand((), generator=generator).item() < 1 - similarity.item():
                break
        scale = torch.rand((), generator=generator).item() * 0.4 + 0.8
        samples.append((scale * noise * norm).view_as(target))
    return torch.stack(samples)


# ----------------------------------------------------------------------------------------------------------
# Facilitated Transport (infer_spm.py: calculate_matching_score)
# ----------------------------------------------------------------------------------------------------------
def token_overlap(prompt_ids: Sequence[int], concept_ids: Sequence[int], special_ids) -> float:
    """|tokens(p) & tokens(c)| / |tokens(c)|, special tokens left out (infer_spm.py "tokenuni")."""
    concept = set(concept_ids) - set(special_ids)
    if not concept:
        return 0.0
    return len((set(prompt_ids) - set(special_ids)) & concept) / len(concept)


def transport_strength(prompt_embeds: torch.Tensor, concept_embeds: torch.Tensor,
                       token_scores: Optional[torch.Tensor] = None, metric: str = "clipcos_tokenuni") -> torch.Tensor:
    """m per prompt (B,): the maximum over the metric's terms, then over the erased prompts (K) of the SPM.

    `prompt_embeds` (B, L, D), `concept_embeds` (K, L, D), `token_scores` (B, K) or None (no tokens known)."""
    terms = []
    if "clipcos" in metric:
        terms.append(F.cosine_similarity(prompt_embeds.flatten(1)[:, None], concept_embeds.flatten(1)[None], dim=-1))
    if "tokenuni" in metric:
        shape = (len(prompt_embeds), len(concept_embeds))
        scores = token_scores if token_scores is not None else torch.zeros(shape)
        terms.append(scores.to(prompt_embeds.device, prompt_embeds.dtype).expand(shape))
    return torch.stack(terms).max(dim=0).values.max(dim=1).values


def _key(row: torch.Tensor) -> bytes:
    return hashlib.sha1(row.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).digest()


class SPMDiffusion(EditedDiffusion):
    """The base components, with the SPM-adapted UNet run at the Facilitated-Transport strength of each prompt."""

    def __init__(self, components: DiffusionComponents, unet, network: SPMNetwork, concepts: list,
                 config: SPMConfig, info: dict):
        super().__init__(components, info)
        self.unet, self.network, self.config, self.concepts = unet, network, config, list(concepts)
        self.concept_embeds = encode_prompts(components, self.concepts)
        tokenizer = components.tokenizer
        self.special_ids = set(tokenizer.all_special_ids)
        self.concept_ids = [ids.tolist() for ids in tokenize(tokenizer, self.concepts)]
        self._token_scores: dict = {}

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        embeds = super().encode(prompts)
        for row, ids in zip(embeds, tokenize(self.components.tokenizer, prompts)):
            scores = [token_overlap(ids.tolist(), c, self.special_ids) for c in self.concept_ids]
            self._token_scores[_key(row)] = torch.tensor(scores)
        return embeds

    def token_scores(self, text: torch.Tensor) -> torch.Tensor:
        """(B, K) token overlaps of embeddings `encode` produced; 0 for any other embedding."""
        zero = torch.zeros(len(self.concepts))
        return torch.stack([self._token_scores.get(_key(row), zero) for row in text])

    def strength(self, text: torch.Tensor) -> torch.Tensor:
        """The adapter's weight-update scale per prompt: m^2 (both factors scaled by m in infer_spm.py)."""
        if not self.config.transport:
            return torch.ones(len(text), device=text.device, dtype=text.dtype)
        m = transport_strength(text, self.concept_embeds.to(text), self.token_scores(text), self.config.matching_metric)
        return m * m

    def guided_noise(self, scheduler, sample, t, text, uncond, guidance_scale, step_index=0, state=None, unet=None):
        if unet is not None and unet is not self.components.unet:  # another network was asked for: plain CFG
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, unet)
        strength = self.strength(text)
        self.network.multiplier = torch.cat([strength, strength])  # the same adapted UNet for both passes
        try:
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state,
                                        self.unet)
        finally:
            self.network.multiplier = 0.0


# ----------------------------------------------------------------------------------------------------------
# Training (train_spm.py)
# ----------------------------------------------------------------------------------------------------------
def erase(components: DiffusionComponents, request: EraseRequest, config: SPMConfig, seed: int = 0) -> EditedDiffusion:
    """Train the rank-1 adapters with erasure + Latent Anchoring; return the Facilitated-Transport sampler."""
    from diffusers.optimization import get_cosine_with_hard_restarts_schedule_with_warmup

    from .diffusion import concept_word

    start = time.perf_counter()
    generator = make_generator(seed)

    # 1. The adapted copy of the UNet (strength 0 = the original model, the teacher) and its optimiser.
    unet, network = adapted_unet(components.unet, config, seed)
    params = list(network.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_cosine_with_hard_restarts_schedule_with_warmup(
        optimizer, config.lr_warmup_steps, config.iterations, config.lr_num_cycles)

    concept_emb = encode_prompts(components, request.forget_prompts)
    neutral_emb = encode_prompts(components, request.neutral_prompts)
    train_steps = components.scheduler.config.num_train_timesteps
    all_t = torch.arange(train_steps - 1, -1, -1)  # the N-step schedule T_N, descending
    sampling = dict(num_inference_steps=config.max_denoising_steps, guidance_scale=config.sampling_guidance,
                    eta=config.ddim_eta)

    def predict(x, t, emb, multiplier):
        network.multiplier = multiplier
        try:
            return unet(x, t, encoder_hidden_states=emb).sample
        finally:
            network.multiplier = 0.0

    losses = []
    for _ in range(config.iterations):
        index = torch.randint(len(request.forget_prompts), (config.batch_size,), generator=generator)
        k = int(torch.randint(1, config.max_denoising_steps, (1,), generator=generator))
        t = all_t[int(k * train_steps / config.max_denoising_steps)].to(components.device)

        # 2. x_t: k guided DDIM steps with the adapted model (train_spm.py: `with network: diffusion(...)`).
        network.multiplier = 1.0
        try:
            x_t = sample_cfg(components, [request.forget_prompts[i] for i in index.tolist()], generator, unet=unet,
                             stop_after_steps=k, **sampling)
        finally:
            network.multiplier = 0.0

        # 3. The original model's predictions for the concept (positive) and neutral prompts.
        with torch.no_grad():
            eps_positive = predict(x_t, t, concept_emb[index], 0.0)
            eps_neutral = predict(x_t, t, neutral_emb[index], 0.0)
        eps_target = predict(x_t, t, concept_emb[index], 1.0)

        # 4. Latent Anchoring on random embeddings around the concept's norm.
        eps_anchor = eps_anchor_original = None
        if config.anchor_samples > 0 and config.la_strength > 0:
            anchors = torch.cat([sample_anchors(concept_emb[i], config.anchor_samples, generator)
                                 for i in index.tolist()])
            x_rep = x_t.repeat_interleave(config.anchor_samples, dim=0)
            with torch.no_grad():
                eps_anchor_original = predict(x_rep, t, anchors, 0.0)
            eps_anchor = predict(x_rep, t, anchors, 1.0)

        # 5. One AdamW step on the adapters.
        loss = spm_loss(eps_target, eps_positive, eps_neutral, eps_anchor, eps_anchor_original,
                        config.erase_guidance, config.la_strength)
        optimizer.zero_grad(set_to_none=True)
        loss["loss"].backward()
        optimizer.step()
        schedule.step()
        losses.append(loss["loss"].item())

    # 6. The Facilitated-Transport sampler on the base components.
    network.requires_grad_(False)
    concept = concept_word(request)
    tail = losses[-20:]
    return SPMDiffusion(components, unet, network, [concept], config, info={
        "trainable_parameters": sum(p.numel() for p in params),
        "adapted_layers": len(network.layers),
        "erased_concept": concept,
        "final_loss": sum(tail) / max(1, len(tail)),
        "wall_time_s": time.perf_counter() - start,
    })
