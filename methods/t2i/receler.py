"""Receler: Reliable Concept Erasing of Text-to-Image Diffusion Models via Lightweight Erasers (Huang et al., ECCV
2024). Catalog id: `huang2023receler`.

Follows jasper0314-huang/Receler@3ccedc9, train_receler.py (training), receler/erasers/utils.py and
receler/erasers/diffusers_erasers.py (the eraser), receler/concept_reg.py (the concept mask).

Receler leaves the UNet's weights alone and adds a lightweight eraser E after the cross-attention of every transformer
block; only the erasers train:

    x  <-  x + CA(x) + E(CA(x)),      E(h) = up(GELU(down(h))),   down: dim -> r,  up: r -> dim, zero at init

1. Attach an eraser to every cross-attention layer (`attn2`) of a private copy of the UNet (forward hooks); with the
   erasers off the copy is the original model (the frozen teacher eps_*).
2. Each iteration: draw t_enc ~ U{0..S-1}, run the DDIM sampler with the *erased* model on the concept prompt c (CFG
   `start_guidance`, eta 0) through its step t_enc - 1 to get x_t, and draw t ~ U[round(N t_enc / S),
   round(N (t_enc + 1) / S)) (the paper-era ESD pairing of train-esd.py).
3. With the erasers off: eps_0 = eps_*(x_t, n, t) and eps_p = eps_*(x_t, c, t); the latter pass records the
   cross-attention probabilities A_l (heads x pixels x tokens) of every layer.
4. Concept mask M: the probabilities on c's concept tokens, averaged over tokens and heads, then over the layers at
   the mask resolution (16x16 on SD 1.x); min-max normalised per sample; M = [M_norm >= tau] (tau 0.1); resized
   (nearest) to every layer's resolution.
5. Adversarial prompting: learnable soft tokens delta (16, uniform [0, 1) at init, kept across iterations) are put
   after c's concept tokens, [c; delta]; `advrs_iters` Adam steps (lr 0.1, weight decay 0.1) on delta minimise
       L_adv = || eps_E(x_t, [c; delta], t) - eps_p ||^2
   i.e. look for a prompt under which the erased model still produces the concept.
6. Erasure loss (ESD, eta = `negative_guidance`) on the adversarial prompt, from the last inner forward pass:
       L_erase = || eps_E(x_t, [c; delta], t) - [eps_0 - eta (eps_p - eps_0)] ||^2
7. Concept-localised regulariser on the eraser outputs e_l (pixels x dim) of that pass, outside the mask:
       L_reg = mean_l  sum_{b,p} (1 - M_l[b,p]) mean_d e_l[b,p,d]^2 / (sum_{b,p} (1 - M_l[b,p]) + 1e-9)
   L = L_erase + lambda L_reg (lambda 0.1); one Adam step (lr 3e-4) on the erasers.
8. The edited model: the copy with the erasers on, for both classifier-free guidance passes (`RecelerDiffusion`).

Two notes on the official code. (a) train_receler.py writes the soft tokens into the prompt embedding with
`emb_n[:, advrs_indices, :].data = advrs_prompt_embs[...].data`; indexing with an index tensor returns a copy, so the
assignment is lost and the erased model is trained on the plain concept embedding (the soft tokens are updated from
the gradient at the padding positions, which they never occupy). The card follows the paper (the erasure loss on
[c; delta]); `advrs_iters=0` gives the non-adversarial variant (the official loop would then never take an erasure
step). (b) The official soft tokens overwrite the end-of-text and padding positions after a bare concept word (77
tokens); here they are inserted after the concept tokens and the context grows to L + n tokens (cross-attention takes
any length), since MiniCanvas prompts fill their 8 positions ("a digit three in inverted style").

Why an EditedDiffusion subclass (`edits: sampler`): the erasers are modules that the UNet's state dict does not hold.
The returned model's `components.unet` is the private copy with its erasers on, so attacks that differentiate through
`components.unet` attack the erased model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import (
    DiffusionComponents,
    EditedDiffusion,
    EraseRequest,
    cross_attention_modules,
    differing_span,
    encode_prompts,
    explicit_attention,
    frozen_copy,
    sample_cfg,
    timesteps_for,
)
from .esd import pair_timesteps


@dataclass
class RecelerConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 (jasper0314-huang/Receler@3ccedc9, train_receler.py
    argparse defaults and README); a testbed's adaptations are declared in methods/registry.yaml."""

    rank: int = 128  # --eraser_rank
    iterations: int = 500  # --iterations
    learning_rate: float = 3e-4  # --lr (Adam on the erasers)
    negative_guidance: float = 1.0  # --negative_guidance: eta of the ESD target
    start_guidance: float = 3.0  # --start_guidance: CFG while sampling x_t
    ddim_steps: int = 50  # --ddim_steps: S of the partial sampling run
    ddim_eta: float = 0.0  # train_receler.py: ddim_eta = 0
    concept_reg_weight: float = 0.1  # --concept_reg_weight: lambda
    mask_threshold: float = 0.1  # --mask_thres: tau
    mask_resolution: int = 16  # concept_reg.get_mask: only the 16x16 cross-attention maps ("following MasaCtrl")
    advrs_iters: int = 50  # --advrs_iters: inner Adam steps on the soft tokens per iteration (0: no adversary)
    num_advrs_prompts: int = 16  # --num_advrs_prompts: soft tokens
    advrs_learning_rate: float = 0.1  # train_receler.py: Adam(lr=0.1, weight_decay=0.1) on the soft tokens
    advrs_weight_decay: float = 0.1  # idem
    batch_size: int = 1  # train_receler.py: one x_t per iteration

    def __post_init__(self):
        check_config(self, rank=">=1", iterations=">=1", learning_rate="(0,1]", negative_guidance="[0,1e3]",
                     start_guidance="[0,1e3]", ddim_steps=">=1", ddim_eta="[0,1]", concept_reg_weight="[0,1e6]",
                     mask_threshold="[0,1]", mask_resolution=">=1", advrs_iters=">=0", num_advrs_prompts=">=1",
                     advrs_learning_rate="(0,10]", advrs_weight_decay="[0,10]", batch_size=">=1")


# ----------------------------------------------------------------------------------------------------------
# The erasers (receler/erasers/utils.py: AdapterEraser; diffusers_erasers.py: AttentionWithEraser)
# ----------------------------------------------------------------------------------------------------------
class AdapterEraser(nn.Module):
    """up(GELU(down(h))): Linear(dim, r) -> GELU -> Linear(r, dim), `up` (weight and bias) zero at init."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(hidden_states)))


class AttentionMapRecorder:
    """Wraps an attention layer's processor: while `network.record_maps` is set, the probabilities are computed
    explicitly and, averaged over heads and the concept tokens (`network.token_weights`, (B, L)), kept per layer
    as (B, pixels); otherwise the original processor runs (the official CrossAttention returns the map too)."""

    def __init__(self, network: "RecelerNetwork", name: str, original):
        self.network, self.name, self.original = network, name, original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if not self.network.record_maps:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        return explicit_attention(attn, hidden_states, encoder_hidden_states, observe=self._keep)

    def _keep(self, probs: torch.Tensor) -> None:
        weights = self.network.token_weights.to(probs)  # (batch, tokens): 1 / |concept tokens| on them
        per_head = probs.view(len(weights), -1, *probs.shape[1:])  # (batch, heads, pixels, tokens)
        self.network.maps[self.name] = (per_head * weights[:, None, None, :]).sum(-1).mean(1).detach()


class RecelerNetwork(nn.Module):
    """The erasers of a UNet, one per cross-attention layer, attached by forward hooks: attn2(x) + E(attn2(x)).

    `enabled` False gives the original UNet exactly; `capture` keeps every eraser output (for the regulariser);
    `record_maps` makes the attention processors keep the concept tokens' maps."""

    def __init__(self, unet, rank: int):
        super().__init__()
        self.erasers = nn.ModuleDict()
        self.enabled, self.capture, self.record_maps = True, False, False
        self.outputs, self.maps, self.token_weights = {}, {}, None
        self._handles = []
        for name, attention in cross_attention_modules(unet):
            key = name.replace(".", "_")
            linear = attention.to_out[0]
            self.erasers[key] = AdapterEraser(linear.out_features, rank).to(linear.weight.device, linear.weight.dtype)
            self._handles.append(attention.register_forward_hook(self._hook(key)))
            attention.set_processor(AttentionMapRecorder(self, key, attention.processor))

    def _hook(self, key: str):
        def add_eraser(module, inputs, output):
            if not self.enabled:
                return output
            erased = self.erasers[key](output)
            if self.capture:
                self.outputs[key] = erased
            return output + erased
        return add_eraser


def erased_unet(unet, rank: int, seed: int):
    """(a private copy of `unet` carrying the erasers, the network); the erasers start disabled."""
    copy = frozen_copy(unet)
    torch.manual_seed(seed)  # nn.Linear's default initialisation of the `down` layers
    network = RecelerNetwork(copy, rank)
    network.enabled = False
    return copy, network


# ----------------------------------------------------------------------------------------------------------
# The concept mask and the regulariser (receler/concept_reg.py, train_receler.py)
# ----------------------------------------------------------------------------------------------------------
def concept_mask(maps: dict, threshold: float, resolution: int) -> dict:
    """get_mask: `maps` name -> (B, pixels) attention on the concept tokens (heads averaged). The layers at the
    available resolution closest to `resolution` are averaged, min-max normalised per sample, thresholded
    (>= threshold -> 1), and resized (nearest) to every layer's resolution: name -> (B, pixels) in {0, 1}."""
    sizes = {name: int(round(math.sqrt(m.shape[-1]))) for name, m in maps.items()}
    chosen = min(set(sizes.values()), key=lambda r: (abs(r - resolution), -r))
    average = torch.stack([m for name, m in maps.items() if sizes[name] == chosen]).mean(0)
    low = average.min(dim=-1, keepdim=True).values
    high = average.max(dim=-1, keepdim=True).values
    normalised = (average - low) / (high - low)
    mask = (normalised >= threshold).float().view(-1, 1, chosen, chosen)
    resized = {r: F.interpolate(mask, size=(r, r), mode="nearest").flatten(1) for r in set(sizes.values())}
    return {name: resized[size] for name, size in sizes.items()}


def concept_regulariser(outputs: dict, masks: dict) -> torch.Tensor:
    """Mean over layers of sum_{b,p} (1 - M)[b,p] mean_d e[b,p,d]^2 / (sum (1 - M) + 1e-9); e: (B, pixels, dim)."""
    terms = []
    for name, out in outputs.items():
        outside = 1.0 - masks[name].to(out)  # (B, pixels)
        terms.append(((out * outside[..., None]) ** 2).mean(-1).sum() / (outside.sum() + 1e-9))
    return torch.stack(terms).mean()


def esd_target(eps_neutral: torch.Tensor, eps_concept: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    """e_0 - eta (e_p - e_0)."""
    return eps_neutral - negative_guidance * (eps_concept - eps_neutral)


def concept_span(tokenizer, forget_prompt: str, neutral_prompt: str) -> tuple:
    """(start, end) token positions of the concept in `forget_prompt`: what is left after removing the ids it shares
    with `neutral_prompt` at the start and at the end (positions 1..len(word) for a bare word vs "", as the
    official `word_indices`)."""
    start, end = differing_span(tokenizer, forget_prompt, neutral_prompt)
    return start, min(max(end, start + 1), tokenizer.model_max_length)


def with_soft_tokens(embeddings: torch.Tensor, spans: Sequence[tuple], soft: torch.Tensor) -> torch.Tensor:
    """[c; delta]: the soft tokens (n, D) inserted after each prompt's concept tokens; (B, L, D) -> (B, L + n, D)."""
    rows = [torch.cat([emb[:end], soft, emb[end:]]) for emb, (_, end) in zip(embeddings, spans)]
    return torch.stack(rows)


def soft_token_attack_step(predict, soft: torch.Tensor, optimizer, eps_concept: torch.Tensor):
    """One inner step: L_adv = ||eps_E(x_t, [c; delta]) - eps_p||^2, Adam on delta only; returns (eps_E, L_adv)."""
    prediction = predict(soft)
    loss = F.mse_loss(prediction, eps_concept)
    soft.grad, = torch.autograd.grad(loss, [soft], retain_graph=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return prediction, loss


# ----------------------------------------------------------------------------------------------------------
# The edited model
# ----------------------------------------------------------------------------------------------------------
class RecelerDiffusion(EditedDiffusion):
    """The copy of the UNet with its erasers on (both classifier-free guidance passes)."""

    def __init__(self, components: DiffusionComponents, network: RecelerNetwork, config: RecelerConfig, info: dict):
        super().__init__(components, info)
        self.network, self.config = network, config

    def guided_noise(self, scheduler, sample, t, text, uncond, guidance_scale, step_index=0, state=None, unet=None):
        if unet is not None and unet is not self.components.unet:  # another network was asked for: plain CFG
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, unet)
        self.network.enabled = True
        return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, None)


# ----------------------------------------------------------------------------------------------------------
# Training (train_receler.py)
# ----------------------------------------------------------------------------------------------------------
def erase(components: DiffusionComponents, request: EraseRequest, config: RecelerConfig,
          seed: int = 0) -> EditedDiffusion:
    """Train the erasers with the ESD loss on adversarial prompts plus the concept-localised regulariser."""
    start = time.perf_counter()
    generator = make_generator(seed)

    # 1. The erased copy of the UNet (erasers off = the frozen original model) and the optimiser of the erasers.
    unet, network = erased_unet(components.unet, config.rank, seed)
    params = list(network.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)

    concept_emb = encode_prompts(components, request.forget_prompts)
    neutral_emb = encode_prompts(components, request.neutral_prompts)
    spans = [concept_span(components.tokenizer, f, n) for f, n in zip(request.forget_prompts, request.neutral_prompts)]
    token_weights = torch.zeros(concept_emb.shape[:2], device=components.device)
    for row, (first, end) in enumerate(spans):
        token_weights[row, first:end] = 1.0 / (end - first)

    # the soft tokens of the adversary (one set for the concept, uniform [0, 1) as torch.rand in the official code)
    soft = torch.rand((config.num_advrs_prompts, concept_emb.shape[-1]), generator=generator).to(concept_emb)
    soft = nn.Parameter(soft)
    soft_optimizer = torch.optim.Adam([soft], lr=config.advrs_learning_rate, weight_decay=config.advrs_weight_decay)
    sampling = dict(num_inference_steps=config.ddim_steps, guidance_scale=config.start_guidance, eta=config.ddim_eta)
    timesteps = timesteps_for(components, config.ddim_steps)
    train_steps = components.scheduler.config.num_train_timesteps

    losses, erase_losses, reg_losses, adv_losses, coverage = [], [], [], [], []
    for _ in range(config.iterations):
        index = torch.randint(len(request.forget_prompts), (config.batch_size,), generator=generator)
        rows = index.tolist()
        stop, t = pair_timesteps("paper-era", config.ddim_steps, timesteps, train_steps, (1,), generator)
        t = t.to(components.device)

        # 2. x_t: guided DDIM with the erased model (the official sampler runs the model with its erasers).
        network.enabled = True
        x_t = sample_cfg(components, [request.forget_prompts[i] for i in rows], generator, unet=unet,
                         stop_after_steps=stop, **sampling)

        # 3. The original model (erasers off) on the neutral and the concept prompt; the latter records the maps.
        network.enabled = False
        with torch.no_grad():
            eps_neutral = unet(x_t, t, encoder_hidden_states=neutral_emb[index]).sample
            network.record_maps, network.token_weights, network.maps = True, token_weights[index], {}
            try:
                eps_concept = unet(x_t, t, encoder_hidden_states=concept_emb[index]).sample
            finally:
                network.record_maps = False

        # 4. The concept mask from the concept tokens' cross-attention.
        masks = concept_mask(network.maps, config.mask_threshold, config.mask_resolution)
        coverage.append(float(torch.stack([m.mean() for m in masks.values()]).mean()))

        # 5-6. Inner Adam steps on the soft tokens; the last forward pass also gives the erasure loss.
        network.enabled, network.capture = True, True
        try:
            batch_spans = [spans[i] for i in rows]

            def predict(tokens):
                network.outputs = {}
                return unet(x_t, t, encoder_hidden_states=with_soft_tokens(concept_emb[index], batch_spans,
                                                                           tokens)).sample

            if config.advrs_iters == 0:
                network.outputs = {}
                eps_erased = unet(x_t, t, encoder_hidden_states=concept_emb[index]).sample
            for _inner in range(config.advrs_iters):
                eps_erased, adv_loss = soft_token_attack_step(predict, soft, soft_optimizer, eps_concept)
            if config.advrs_iters:
                adv_losses.append(adv_loss.item())

            # 7. ESD loss + the concept-localised regulariser on the erasers' outputs of that pass.
            erase_loss = F.mse_loss(eps_erased, esd_target(eps_neutral, eps_concept, config.negative_guidance))
            reg_loss = concept_regulariser(network.outputs, masks)
            loss = erase_loss + config.concept_reg_weight * reg_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            soft.grad = None  # the erasure loss reaches the soft tokens too; only L_adv moves them
        finally:
            network.capture, network.outputs = False, {}
        losses.append(loss.item())
        erase_losses.append(erase_loss.item())
        reg_losses.append(reg_loss.item())

    # 8. The erased model: the copy with its erasers on.
    network.requires_grad_(False)
    network.enabled = True

    def tail(values):
        values = values[-20:]
        return sum(values) / len(values) if values else None

    return RecelerDiffusion(components.with_unet(unet), network, config, info={
        "trainable_parameters": sum(p.numel() for p in params),
        "erasers": len(network.erasers),
        "final_loss": tail(losses),
        "final_erase_loss": tail(erase_losses),
        "final_regulariser": tail(reg_losses),
        "final_adversarial_loss": tail(adv_losses),
        "mask_coverage": sum(coverage) / len(coverage),
        "soft_token_norm": float(soft.detach().norm(dim=-1).mean()),
        "wall_time_s": time.perf_counter() - start,
    })
