"""SAeUron: Interpretable Concept Unlearning in Diffusion Models with Sparse Autoencoders (Cywiński & Deja, ICML 2025).
Catalog id: `cywinski2025saeuron`.

Follows cywinski/SAeUron@1a4302a, SAE/sae.py (TopK SAE), SAE/trainer.py (its training), SAE/unlearning_utils.py
(`compute_feature_importance`, `get_percentile_threshold`), utils/hooks.py (`SAEMaskedUnlearningHook`) and
scripts/gather_sae_acts_ca_prompts_cls.py, scripts/sample_unlearning_cls_distr.py.

SAeUron changes no weight. A sparse autoencoder learns the activations a of one UNet transformer block
(`hookpoint`, each spatial position a vector of the block's channels), and the concept is removed at sampling time
by scaling the SAE features that are specific to it:

1. Gather: sample the base model on prompts of every concept (classifier-free guided DDIM) and record the block's
   output for the conditional half at every denoising step, one vector per spatial position.
2. Train a TopK SAE on them: z = TopK_k(ReLU(W_enc (a - b_dec) + b_enc)), a_hat = W_dec^T z + b_dec, unit-norm
   decoder rows, b_dec initialised at the geometric median; loss FVU = |a - a_hat|^2 / |a - mean a|^2
   (+ auxk_alpha AuxK on dead latents); BatchTopK (the top k x positions of a batch) while training, per-position
   TopK afterwards; Adam with a linear decay, the gradient parallel to the decoder rows removed.
3. Score the features per timestep t: mean_c(t) = mean over the concept's samples of the position-averaged
   latents; p_c = mean_c / sum(mean_c), p_o the same for all other concepts' samples together;
   score = p_c - p_o. Selected features: score > the `percentile` quantile of the scores.
4. Ablate at inference (a forward hook on the block, both CFG halves, every step): encode each position; where a
   selected feature fires above its average over all concepts (gate), multiply it by `multiplier` x mean_c(t)
   (its mean activation on the concept); decode and put back the SAE's reconstruction error (`preserve_error`),
   so positions where no selected feature fires keep their activations exactly. (`ablate_uncond=False` edits the
   conditional half only and `noise_range < 1` ablates only at the noisiest steps: measurement knobs, official
   values by default.)

The official "concepts" are UnlearnCanvas' 20 object classes (or 50 styles) with their prompt files. The card only
sees the erase request, so its concepts are the forget prompts (one concept, the one to erase) and each other prompt
of the request (preserve and anchor prompts: one concept each); declared in the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, concept_word


@dataclass
class SAeUronConfig:
    hookpoint: str = "up_blocks.1.attentions.1"  # README 5.3: object unlearning hooks unet.up_blocks.1.attentions.1
    expansion_factor: int = 16  # README 3: --expansion_factor 16
    k: int = 32  # README 3: --k 32
    batch_topk: bool = True  # README 3: --batch_topk True (training only; load_sae sets it False for inference)
    auxk_alpha: float = 0.03125  # README 3: --auxk_alpha 0.03125
    dead_feature_threshold: int = 10_000_000  # README 3: --dead_feature_threshold 10_000_000 (positions)
    learning_rate: float = 4e-4  # README 3: --lr 4e-4 (linear schedule, no warm-up)
    batch_size: int = 4096  # README 3: --effective_batch_size 4096 (activation vectors per step)
    epochs: int = 5  # README 3: --num_epochs 5 for up.1.1
    samples_per_prompt: int = 1  # gather_sae_acts_ca_prompts_cls.py: one sample per prompt of each class file
    num_inference_steps: int = 100  # gather_sae_acts_ca_prompts_cls.py / sample_unlearning_cls_distr.py: steps=100
    guidance_scale: float = 9.0  # the same scripts: guidance_scale=9.0
    percentile: float = 99.999  # README 5.2 (style); objects: per-class sweep over 99.99 / 99.995 / 99.999
    multiplier: float = -1.0  # README 5.2 (style); objects: per-class sweep over -1 ... -30
    preserve_error: bool = True  # sample_unlearning_cls_distr.py: preserve_error=True
    ablate_uncond: bool = True  # hooks.py: the hook edits both classifier-free guidance halves
    noise_range: float = 1.0  # hooks.py ablates at every step: t >= (1 - noise_range) x num_train_timesteps

    def __post_init__(self):
        check_config(self, expansion_factor=">=1", k=">=1", auxk_alpha=">=0", dead_feature_threshold=">=1",
                     learning_rate="(0,1]", batch_size=">=1", epochs=">=1", samples_per_prompt=">=1",
                     num_inference_steps=">=1", guidance_scale="[0,1e3]", percentile="[0,100]",
                     multiplier="[-1e3,1e3]", noise_range="[0,1]")


# ----------------------------------------------------------------------------------------------------------
# The sparse autoencoder (SAE/sae.py)
# ----------------------------------------------------------------------------------------------------------
class TopKSAE(nn.Module):
    """Sae: encoder Linear(d_in, n) with zero bias, W_dec (n, d_in) initialised from the encoder and unit-norm rows,
    b_dec subtracted before encoding and added after decoding."""

    def __init__(self, d_in: int, expansion_factor: int, k: int, generator: torch.Generator):
        super().__init__()
        self.d_in, self.num_latents, self.k = d_in, d_in * expansion_factor, k
        self.encoder = nn.Linear(d_in, self.num_latents)
        bound = 1 / d_in ** 0.5  # nn.Linear's default initialisation, drawn from the card's generator
        with torch.no_grad():
            self.encoder.weight.uniform_(-bound, bound, generator=generator)
            self.encoder.bias.zero_()
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.set_decoder_norm_to_unit_norm()

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.encoder(x - self.b_dec))

    def latents(self, x: torch.Tensor, batch_topk: bool = False, k: int | None = None) -> torch.Tensor:
        """Dense (N, n) latents of positions x (N, d_in): per-position TopK, or BatchTopK (k x N over the batch)."""
        pre = self.pre_acts(x)
        k = min(k or self.k, self.num_latents)
        if batch_topk:
            flat = pre.flatten()
            values, index = flat.topk(k * len(pre), sorted=False)
            return torch.zeros_like(flat).scatter(-1, index, values).view_as(pre)
        values, index = pre.topk(k, sorted=False)
        return torch.zeros_like(pre).scatter(-1, index, values)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.latents(x))

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True) + torch.finfo(self.W_dec.dtype).eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        parallel = (self.W_dec.grad * self.W_dec.data).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data


def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """SAE/utils.py: Weiszfeld iterations from the mean (b_dec's initialisation)."""
    guess = points.mean(0)
    for _ in range(max_iter):
        previous = guess
        weights = 1 / (points - guess).norm(dim=1).clamp_min(1e-12)
        guess = (weights[:, None] * points).sum(0) / weights.sum()
        if (guess - previous).norm() < tol:
            break
    return guess


def sae_losses(sae: TopKSAE, x: torch.Tensor, batch_topk: bool, dead_mask: torch.Tensor | None = None) -> dict:
    """Sae.forward's training terms: FVU, and AuxK (the top d_in/2 dead latents predict the residual)."""
    pre = sae.pre_acts(x)
    latents = sae.latents(x, batch_topk)
    recon = sae.decode(latents)
    error = recon - x
    total_variance = (x - x.mean(0)).pow(2).sum()
    fvu = error.pow(2).sum() / total_variance
    auxk = x.new_zeros(())
    if dead_mask is not None and (dead := int(dead_mask.sum())) > 0:
        k_aux = x.shape[-1] // 2
        scale = min(dead / k_aux, 1.0)
        k_aux = min(k_aux, dead)
        values, index = torch.where(dead_mask[None], pre, -torch.inf).topk(k_aux, sorted=False)
        e_hat = sae.decode(torch.zeros_like(pre).scatter(-1, index, values))
        auxk = scale * (e_hat - error).pow(2).sum() / total_variance  # sae.py: e = sae_out - x
    return {"fvu": fvu, "auxk": auxk, "fired": latents.detach() > 0}


def train_sae(activations: torch.Tensor, config: SAeUronConfig, generator: torch.Generator) -> tuple:
    """SaeTrainer.fit on (N, d_in) activation vectors: (the SAE, the last FVUs)."""
    sae = TopKSAE(activations.shape[1], config.expansion_factor, config.k, generator).to(activations)
    sae.b_dec.data = geometric_median(activations)
    lr = config.learning_rate
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    batch = min(config.batch_size, len(activations))
    per_epoch = max(1, len(activations) // batch)
    total = per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long, device=activations.device)
    fvus = []
    for _ in range(config.epochs):
        order = torch.randperm(len(activations), generator=generator).to(activations.device)
        for step in range(per_epoch):
            x = activations[order[step * batch:(step + 1) * batch]]
            sae.set_decoder_norm_to_unit_norm()
            dead = since_fired > config.dead_feature_threshold if config.auxk_alpha > 0 else None
            out = sae_losses(sae, x, config.batch_topk, dead)
            loss = out["fvu"] + config.auxk_alpha * out["auxk"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            optimizer.step()
            schedule.step()
            since_fired += len(x)
            since_fired[out["fired"].any(0)] = 0
            fvus.append(out["fvu"].item())
    sae.set_decoder_norm_to_unit_norm()
    sae.requires_grad_(False)
    return sae, fvus


# ----------------------------------------------------------------------------------------------------------
# Feature selection (SAE/unlearning_utils.py, utils/hooks.py)
# ----------------------------------------------------------------------------------------------------------
def feature_importance(concept_latents: dict, target, timestep: int, epsilon: float = 1e-8) -> torch.Tensor:
    """compute_feature_importance: p_target - p_others, each the mean latent vector (samples, then other concepts
    pooled) normalised to sum 1. `concept_latents[c]` is (samples, timesteps, num_latents)."""
    mean_x = concept_latents[target][:, timestep].float().mean(0)
    others = [c for c in concept_latents if c != target]
    if not others:
        return mean_x
    mean_o = torch.cat([concept_latents[c][:, timestep].float() for c in others]).mean(0)
    return mean_x / (mean_x.sum() + epsilon) - mean_o / (mean_o.sum() + epsilon)


def select_features(concept_latents: dict, target, timestep: int, percentile: float, multiplier: float) -> dict:
    """SAEMaskedUnlearningHook.__init__ for one timestep: the selected features (score > percentile quantile),
    their scaling (multiplier x mean activation on the concept) and their gate (mean activation over concepts)."""
    scores = feature_importance(concept_latents, target, timestep)
    threshold = torch.quantile(scores, percentile / 100.0)
    index = torch.where(scores > threshold)[0]
    scaling = concept_latents[target][:, timestep, index].float().mean(0) * multiplier
    gate = torch.stack([concept_latents[c][:, timestep, index].float().mean(0) for c in concept_latents]).mean(0)
    return {"index": index, "scaling": scaling, "gate": gate}


def ablate(sae: TopKSAE, acts: torch.Tensor, selection: dict, preserve_error: bool = True) -> torch.Tensor:
    """SAEMaskedUnlearningHook.__call__ on positions (N, d_in): selected latents above their gate are multiplied by
    their scaling; the decoded result plus the SAE's own error on acts (`preserve_error`)."""
    latents = sae.latents(acts)
    recon = sae.decode(latents)
    index = selection["index"].to(acts.device)
    chosen = latents[:, index]
    mask = chosen > selection["gate"].to(acts)
    latents = latents.clone()
    latents[:, index] = torch.where(mask, chosen * selection["scaling"].to(acts), chosen)
    ablated = sae.decode(latents)
    # hooks.py adds (recon - acts); the reconstruction error is acts - recon (untouched positions stay acts)
    return acts + (ablated - recon) if preserve_error else ablated


def _positions(output: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) block output -> (B, H*W, C), as the hooks reshape it."""
    return output.permute(0, 2, 3, 1).reshape(len(output), -1, output.shape[1])


def _find_block(unet, hookpoint: str):
    name = hookpoint[len("unet."):] if hookpoint.startswith("unet.") else hookpoint
    try:
        return unet.get_submodule(name)
    except AttributeError as error:
        raise ValueError(f"SAeUronConfig.hookpoint {hookpoint!r} is not a module of the UNet") from error


def _first(output):
    return output[0] if isinstance(output, tuple) else output.sample if hasattr(output, "sample") else output


def _replace_first(output, value):
    if isinstance(output, tuple):
        return (value,) + tuple(output[1:])
    if hasattr(output, "sample"):
        output.sample = value
        return output
    return value


# ----------------------------------------------------------------------------------------------------------
# The sampler
# ----------------------------------------------------------------------------------------------------------
class SAeUronDiffusion(EditedDiffusion):
    """The base components; at every step the block's output goes through the SAE with the concept's features
    of the nearest gathered timestep ablated (both CFG halves)."""

    def __init__(self, components: DiffusionComponents, sae: TopKSAE, timesteps: torch.Tensor, selections: list,
                 config: SAeUronConfig, info: dict):
        super().__init__(components, info)
        self.sae, self.timesteps, self.selections, self.config = sae, timesteps, selections, config
        self.block = _find_block(components.unet, config.hookpoint)

    def selection_for(self, t) -> dict:
        t = float(torch.as_tensor(t).reshape(-1)[0])
        return self.selections[int((self.timesteps.float() - t).abs().argmin())]

    def guided_noise(self, scheduler, sample, t, text, uncond, guidance_scale, step_index=0, state=None, unet=None):
        if unet is not None and unet is not self.components.unet:  # another network was asked for: plain CFG
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, unet)
        train_steps = self.components.scheduler.config.num_train_timesteps
        if float(torch.as_tensor(t).reshape(-1)[0]) < (1 - self.config.noise_range) * train_steps:
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, None)
        selection = self.selection_for(t)

        def hook(module, inputs, output):
            value = _first(output)
            first = 0 if self.config.ablate_uncond else len(value) // 2  # the batch is [uncond, text]
            acts = _positions(value[first:])
            edited = ablate(self.sae, acts.reshape(-1, acts.shape[-1]).to(self.sae.W_dec.dtype), selection,
                            self.config.preserve_error).to(value.dtype)
            b, c, h, w = value[first:].shape
            edited = edited.view(b, h, w, c).permute(0, 3, 1, 2)
            return _replace_first(output, torch.cat([value[:first], edited]).contiguous())

        handle = self.block.register_forward_hook(hook)  # removed after this step: the base UNet is left as it was
        try:
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, None)
        finally:
            handle.remove()


# ----------------------------------------------------------------------------------------------------------
# Gathering activations (SAE/cache_activations_runner_unlearn_canvas.py, run_with_cache: conditional half)
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def gather_activations(components: DiffusionComponents, prompts: Sequence[str], config: SAeUronConfig,
                       generator: torch.Generator) -> tuple:
    """(acts (len(prompts), steps, H*W, C) of the block's conditional half, the sampler's timesteps)."""
    block = _find_block(components.unet, config.hookpoint)
    recorded = []

    def hook(module, inputs, output):
        recorded.append(_positions(_first(output).chunk(2)[1]).float())

    model = EditedDiffusion(components)
    chunks = []
    handle = block.register_forward_hook(hook)
    try:
        batch = max(1, components.max_batch)
        for start in range(0, len(prompts), batch):
            recorded.clear()
            model.sample(list(prompts[start:start + batch]), generator,
                         num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale)
            chunks.append(torch.stack(recorded, dim=1))  # (B, steps, H*W, C)
    finally:
        handle.remove()
    scheduler = components.fresh_scheduler()
    scheduler.set_timesteps(config.num_inference_steps)
    return torch.cat(chunks), scheduler.timesteps.clone()


@torch.no_grad()
def concept_latents(sae: TopKSAE, acts: torch.Tensor) -> torch.Tensor:
    """gather_sae_acts_ca_prompts_cls.py: per-position TopK latents averaged over positions, (B, steps, n)."""
    b, s, p, d = acts.shape
    return sae.latents(acts.reshape(-1, d)).view(b, s, p, -1).mean(2)


def erase(components: DiffusionComponents, request: EraseRequest, config: SAeUronConfig,
          seed: int = 0) -> EditedDiffusion:
    """Train the SAE on the block's activations, select the concept's features, return the ablating sampler."""
    start = time.perf_counter()
    generator = make_generator(seed)
    forget = list(dict.fromkeys(request.forget_prompts))
    others = [p for p in dict.fromkeys(list(request.preserve_prompts) + list(request.anchor_prompts))
              if p not in forget]

    # 1. The block's activations for every prompt (samples_per_prompt each), conditional half, every step.
    prompts = [p for p in forget + others for _ in range(config.samples_per_prompt)]
    acts, timesteps = gather_activations(components, prompts, config, generator)
    gathered = time.perf_counter() - start

    # 2. The TopK SAE on all positions of all steps.
    sae, fvus = train_sae(acts.reshape(-1, acts.shape[-1]), config, generator)

    # 3. Concepts: the forget prompts together, each other prompt alone; the features of each timestep.
    latents = concept_latents(sae, acts).cpu()
    n = config.samples_per_prompt
    groups = {"forget": latents[:len(forget) * n]}
    for i, prompt in enumerate(others):
        offset = (len(forget) + i) * n
        groups[prompt] = latents[offset:offset + n]
    selections = [select_features(groups, "forget", step, config.percentile, config.multiplier)
                  for step in range(len(timesteps))]

    # 4. The ablating sampler on the base components.
    tail = fvus[-10:]
    counts = [len(s["index"]) for s in selections]
    return SAeUronDiffusion(components, sae, timesteps, selections, config, info={
        "erased_concept": concept_word(request),
        "hookpoint": config.hookpoint,
        "sae_latents": sae.num_latents,
        "activation_vectors": acts.shape[0] * acts.shape[1] * acts.shape[2],
        "final_fvu": sum(tail) / max(1, len(tail)),
        "features_per_step": sum(counts) / max(1, len(counts)),
        "gather_time_s": gathered,
        "wall_time_s": time.perf_counter() - start,
    })
