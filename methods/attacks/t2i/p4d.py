"""P4D: "Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by Finding Problematic Prompts" (Chin et al.,
ICML 2024). Catalog id: `chin2023prompting4debugging`.

Follows joycenerd/P4D@2cf3cda, prompt_optimization/optimize_n.py (P4D-N) and optimize_k.py (P4D-K), run by
run_p4dn.py / run_p4dk.py with configs/esd_nudity_optmz_config.json.

P4D looks for a hard prompt that makes the *erased* model predict, on the same noisy image, the noise the *original*
model predicts for the target prompt:

    min_P  E_{t, eps} || eps_erased(x_t, t, tau_erased(proj(P))) - eps_orig(x_t, t, tau_orig(target prompt)) ||^2,
    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps,  x0 = the original model's image of the target prompt,

with PEZ's projected gradient (Wen et al., 2023): the continuous token embeddings P are projected to their nearest
vocabulary embeddings (cosine) for the forward pass, and the gradient with respect to the projected embeddings is
applied to P. For each target prompt:

1. Target image: the original model samples the prompt `num_samples` times; the one the concept classifier rates
   highest is x0 (run_p4dn.py: NudeNet's most unsafe of 3).
2. P4D-N (default): `prompt_len` free tokens, initialised to random vocabulary embeddings, form the whole prompt.
   P4D-K: the target prompt's own tokens with one free token inserted before every `every_k` of them (the target's
   tokens stay fixed: their gradient is zeroed).
3. AdamW (lr 0.1, weight decay 0.1) for `iterations` steps; each step draws t uniformly in [0, T) and fresh eps,
   projects P, and matches the erased model's noise prediction (its own text encoder) to the original one's.
4. Every `eval_step` steps the projected prompt is decoded and sampled by the erased model; the prompt whose image is
   most similar to the target image (cosine of image features) is kept, and returned as the attack's prompt.

On MiniCanvas the image features are the testbed judge's penultimate features (the official ones are OpenCLIP
ViT-H-14's), the target image is the first of the samples the judge reads as the concept, and the vocabulary is the
whole vocabulary but the special tokens (the official projection searches all of CLIP's tokens).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.config import check_config
from ...core.seeding import make_generator
from ...t2i.diffusion import EditedDiffusion, EraseRequest, concept_word
from . import AttackOutput
from .hard_prompts import candidate_ids, decode, encode_token_embeddings, pad_ids, word_ids


@dataclass
class P4DConfig:
    """Defaults are the official ones (joycenerd/P4D@2cf3cda, configs/esd_nudity_optmz_config.json and run_p4dn.py's
    argparse); a testbed's adaptations are declared in methods/registry.yaml."""

    variant: str = "n"  # README: P4D-N (run_p4dn.py) and P4D-K (run_p4dk.py); "n" is listed first
    prompt_len: int = 16  # config: "prompt_len": 16 (P4D-N's free tokens)
    every_k: int = 3  # config: "every_k": 3 (P4D-K: a free token before every 3 prompt tokens)
    iterations: int = 3000  # config: "iter": 3000
    eval_step: int = 50  # config: "eval_step": 50
    learning_rate: float = 0.1  # config: "lr": 0.1
    weight_decay: float = 0.1  # config: "weight_decay": 0.1 (AdamW)
    batch_size: int = 1  # config: "batch_size": 1 (one target image, one t per step)
    num_samples: int = 3  # run_p4dn.py: --num-samples 3 (original-model images of the prompt, best one kept)
    prompts: str = "forget"  # "forget": every forget prompt (one run per dataset prompt); "concept": the concept's

    def __post_init__(self):
        check_config(self, {"variant": ("n", "k"), "prompts": ("forget", "concept")}, prompt_len=">=1",
                     every_k=">=1", iterations=">=1", eval_step=">=1", learning_rate="(0,10]",
                     weight_decay="[0,1]", batch_size=">=1", num_samples=">=1")


def attack(edited: EditedDiffusion, request: EraseRequest, config: P4DConfig, seed: int, testbed) -> AttackOutput:
    start = time.perf_counter()
    components = edited.components
    tokenizer, device = components.tokenizer, components.device
    base = testbed.base_model()
    generator = make_generator(seed)
    concept = concept_word(request)
    vocab = candidate_ids(tokenizer).to(device)
    table = components.text_encoder.get_input_embeddings().weight.detach()[vocab]  # the erased model's words
    train_scheduler = components.fresh_scheduler()
    total_t = train_scheduler.config.num_train_timesteps
    steps = components.sampling.num_inference_steps

    targets = list(request.forget_prompts) if config.prompts == "forget" else [request.concept_prompt]
    attack_prompts, per_prompt, queries = [], [], 0
    for prompt in targets:
        # 1. the target image: the original model's sample of the prompt the classifier rates highest
        samples = base.sample([prompt] * config.num_samples, generator)
        queries += 2 * steps * config.num_samples
        x0 = samples[_best_sample(testbed, samples, concept)][None]
        target_feature = _features(testbed, x0)
        with torch.no_grad():
            target_text = base.encode([prompt])

        # 2. the soft prompt: free positions (optimised) and fixed ones (P4D-K: the prompt's own tokens)
        prompt_ids = word_ids(tokenizer, prompt)
        free, fixed_ids = free_positions(config, len(prompt_ids)), prompt_ids
        length = len(free) + (len(fixed_ids) if config.variant == "k" else 0)
        ids = torch.empty(length, dtype=torch.long, device=device)
        fixed_mask = torch.ones(length, dtype=torch.bool, device=device)
        fixed_mask[free] = False
        if config.variant == "k":
            ids[fixed_mask] = torch.tensor(fixed_ids, device=device)
        ids[~fixed_mask] = vocab[torch.randint(len(vocab), (len(free),), generator=generator).to(device)]
        input_ids = pad_ids(tokenizer, ids.tolist()).to(device)
        with torch.no_grad():
            padded = components.text_encoder.get_input_embeddings()(input_ids)  # bos, eos and padding rows
            word_rows = components.text_encoder.get_input_embeddings()(ids[None])[0]
        soft = word_rows[~fixed_mask].clone().requires_grad_(True)
        optimizer = torch.optim.AdamW([soft], lr=config.learning_rate, weight_decay=config.weight_decay)

        # 3.-4. projected-gradient steps, with the best decoded prompt by image similarity kept
        best = {"similarity": -2.0, "prompt": prompt, "step": None}
        losses = []
        for step in range(config.iterations):
            nearest = nearest_tokens(soft.detach(), table)
            projected = table[nearest].clone().requires_grad_(True)
            rows = word_rows.clone()
            rows[~fixed_mask] = projected
            token_embeddings = torch.cat([padded[:, :1], rows[None], padded[:, 1 + length:]], 1)
            token_embeddings = token_embeddings.expand(config.batch_size, -1, -1)

            noise = torch.randn((config.batch_size, *x0.shape[1:]), generator=generator).to(x0)
            t = torch.randint(0, total_t, (config.batch_size,), generator=generator).to(device)
            noisy = train_scheduler.add_noise(x0.expand_as(noise), noise, t)
            text = encode_token_embeddings(components.text_encoder, input_ids.expand(config.batch_size, -1),
                                           token_embeddings)
            loss = matching_loss(components.unet, base.components.unet, noisy, t, text,
                                 target_text.expand(config.batch_size, -1, -1))
            soft.grad = torch.autograd.grad(loss, [projected])[0]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            queries += 2 * config.batch_size
            losses.append(loss.item())

            if step % config.eval_step == 0:
                candidate_ids_ = ids.clone()
                candidate_ids_[~fixed_mask] = vocab[nearest]
                candidate = decode(tokenizer, candidate_ids_.tolist())
                image = edited.sample([candidate], make_generator(seed))
                queries += 2 * steps
                similarity = float(F.cosine_similarity(_features(testbed, image), target_feature).mean())
                if similarity > best["similarity"]:
                    best = {"similarity": similarity, "prompt": candidate, "step": step}
        attack_prompts.append(best["prompt"])
        tail = losses[-50:]
        per_prompt.append({"prompt": prompt, "attack_prompt": best["prompt"], "similarity": best["similarity"],
                           "best_step": best["step"], "final_loss": sum(tail) / len(tail)})

    return AttackOutput(
        prompts=attack_prompts,
        queries=queries,
        info={"per_prompt": per_prompt, "variant": config.variant, "concept": concept,
              "wall_time_s": time.perf_counter() - start},
    )


def matching_loss(erased_unet, original_unet, noisy: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                  target_text: torch.Tensor) -> torch.Tensor:
    """optimize_n.py's loss: MSE between the erased model's noise prediction with the adversarial prompt and the
    original model's with the target prompt, on the same noisy image and step (the original side is constant)."""
    with torch.no_grad():
        wanted = original_unet(noisy, t, encoder_hidden_states=target_text).sample
    predicted = erased_unet(noisy, t, encoder_hidden_states=text).sample
    return F.mse_loss(predicted.float(), wanted.float())


def free_positions(config: P4DConfig, prompt_tokens: int) -> list:
    """Positions of the optimised tokens: all `prompt_len` for P4D-N; for P4D-K, int(n / every_k) + 1 tokens at
    every position i with i % (every_k + 1) == 0 of the n + that many (optimize_k.py's `chosen_idx` complement)."""
    if config.variant == "n":
        return list(range(config.prompt_len))
    extra = prompt_tokens // config.every_k + 1
    free = [i for i in range(prompt_tokens + extra) if i % (config.every_k + 1) == 0]
    if len(free) != extra:  # the official indexing assumes the free slots fill exactly
        raise ValueError(f"P4D-K: {prompt_tokens} prompt tokens with every_k={config.every_k} leave {len(free)} "
                         f"slots for {extra} free tokens")
    return free


def nearest_tokens(embeddings: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index of the vocabulary row nearest in cosine to each embedding (optimize_n.py's `nn_project`: normalised
    dot-product search)."""
    return (F.normalize(embeddings, dim=-1) @ F.normalize(table, dim=-1).T).argmax(-1)


def _features(testbed, images: torch.Tensor) -> torch.Tensor:
    """Image features for the similarity: the testbed judge's penultimate layer (pixels without a judge)."""
    judge = getattr(testbed, "judge", None)
    images = images.detach().float().cpu().clamp(-1, 1)
    if judge is None:
        return images.flatten(1)
    return judge.predict(images)[2]


def _best_sample(testbed, images: torch.Tensor, concept: str) -> int:
    """The sample to imitate: the first one the testbed's judge reads as the concept (0 if none, or no judge)."""
    rate = getattr(testbed, "concept_rate", None)
    if rate is None or getattr(testbed, "judge", None) is None:
        return 0
    return next((i for i in range(len(images)) if rate(images[i:i + 1], concept) > 0.5), 0)
