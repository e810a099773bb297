"""MMA-Diffusion, text modality: "MMA-Diffusion: MultiModal Attack on Diffusion Models" (Yang et al., CVPR 2024).
Catalog id: `yang2023mmadiffusion`.

Follows cure-lab/MMA-Diffusion@d5701a5, src/textual_attack.py (the image-modality attack on inpainting pipelines is
not part of this card).

A model-agnostic attack on the prompt: with the *original* model's text encoder it optimises a prompt of n
adversarial tokens whose pooled text embedding (the final-layer-normed hidden state at the eos token, CLIP's
`pooler_output`) matches the target prompt's, while no token may contain a sensitive word (the prompt filter it
evades). The optimiser is GCG (greedy coordinate gradient):

1. Banned tokens: every vocabulary token that contains a sensitive word as a substring (official: 18 NSFW words
   and the fragments "ak", "na", "ke", "nud"; here the erased concept's own word, e.g. "three", not its aliases).
2. Start from n random tokens (official: 20 random ASCII letters).
3. Each step: the gradient of the loss 1 - cos(pool(E(adv)), pool(E(target))) with respect to a one-hot encoding
   of the n tokens, normalised per position; banned tokens get +inf; the top-k tokens per position (most negative
   gradient) are the candidates.
4. A batch of B single-token substitutions of the current prompt: candidate j changes position floor(j n / B) to a
   random one of that position's top-k tokens. Candidates that do not re-tokenize to n tokens, or equal the
   current prompt, are replaced by the last valid one.
5. The current prompt becomes the candidate with the lowest loss (even if worse than the current one); the best
   prompt seen so far is kept and returned.
6. One adversarial prompt per (target prompt, random start): official 5 NSFW target prompts x 10 starts; here the
   request's forget prompts.

On MiniCanvas the prompt has n <= 10 tokens (MAX_PROMPT_TOKENS = 12 with bos and eos), the vocabulary has 70 words
(top-k and the batch are scaled to it), and the pooled state is taken at the eos position explicitly (transformers'
CLIPTextModel uses the highest token id when the config's eos id is 2, true of CLIP's tokenizer only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.config import ConfigError, check_config
from ...core.seeding import make_generator
from ...t2i.diffusion import EditedDiffusion, EraseRequest, concept_word, tokenize
from . import AttackOutput


@dataclass
class MMADiffusionConfig:
    """Defaults are the official ones (cure-lab/MMA-Diffusion@d5701a5, src/textual_attack.py `main` and
    src/example_textual_attack_logfile.log); a testbed's adaptations are declared in methods/registry.yaml."""

    steps: int = 1000  # example log: -i 1000 (README: "typically larger than 500")
    batch_size: int = 512  # main: params.batch_size = 512
    topk: int = 256  # main: params.topk = 256
    length: int = 20  # main: control_init = 20 random ASCII letters (token_gradient: control_length = 20)
    starts_per_target: int = 10  # example log: -n 10 (candicate_number: random starts per target prompt)
    ban_concept_word: bool = True  # main: sensitive_word_list (substring match over the vocabulary)

    def __post_init__(self):
        check_config(self, steps=">=1", batch_size=">=1", topk=">=1", length=">=1", starts_per_target=">=1")


def banned_tokens(tokenizer, words: list) -> torch.Tensor:
    """Step 1: ids of every token that contains one of `words` as a substring, and the special tokens."""
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    banned = {index for token, index in vocab.items() if index in special or any(w in token for w in words)}
    return torch.tensor(sorted(banned), dtype=torch.long)


def pooled(text_encoder, input_ids: torch.Tensor, eos_token_id: int, token_embeds=None) -> torch.Tensor:
    """The final hidden state at the first eos of each row (CLIP's pooler_output). `token_embeds` (B, L, D), when
    given, replace the token-embedding lookup (the one-hot relaxation of step 3)."""
    handle = None
    if token_embeds is not None:
        handle = text_encoder.get_input_embeddings().register_forward_hook(lambda m, i, o: token_embeds)
    try:
        hidden = text_encoder(input_ids)[0]
    finally:
        if handle is not None:
            handle.remove()
    position = (input_ids == eos_token_id).int().argmax(-1)
    return hidden[torch.arange(len(hidden)), position]


def cosine_loss(embeds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos per row (textual_attack.py CosineSimilarityLoss, eps 1e-6)."""
    return 1 - F.cosine_similarity(embeds, target.expand_as(embeds), dim=1, eps=1e-6)


def token_gradient(text_encoder, ids: torch.Tensor, positions: slice, target: torch.Tensor,
                   eos_token_id: int) -> torch.Tensor:
    """Step 3: d loss / d one-hot of the tokens at `positions` of one prompt's ids (1, L): an (n, V) tensor."""
    weight = text_encoder.get_input_embeddings().weight
    one_hot = F.one_hot(ids[0, positions], weight.shape[0]).to(weight.dtype).requires_grad_(True)
    with torch.no_grad():
        embeds = text_encoder.get_input_embeddings()(ids)
    embeds = torch.cat([embeds[:, : positions.start], (one_hot @ weight)[None], embeds[:, positions.stop:]], 1)
    with torch.enable_grad():
        loss = cosine_loss(pooled(text_encoder, ids, eos_token_id, embeds), target).sum()
        (grad,) = torch.autograd.grad(loss, one_hot)
    return grad


def sample_candidates(grad: torch.Tensor, control: torch.Tensor, banned: torch.Tensor, batch_size: int, topk: int,
                      generator: torch.Generator) -> torch.Tensor:
    """Steps 3-4: (B, n) single-token substitutions of `control` (n,) drawn from the top-k of -grad per position
    (textual_attack.py `sample_control`)."""
    grad = grad / grad.norm(dim=-1, keepdim=True)
    grad[:, banned] = float("inf")
    top = (-grad).topk(topk, dim=1).indices  # (n, k)
    n = len(control)
    position = torch.arange(0, n, n / batch_size)[:batch_size].long()
    value = top[position, torch.randint(0, topk, (batch_size,), generator=generator)]
    candidates = control.repeat(batch_size, 1)
    candidates[torch.arange(batch_size), position] = value
    return candidates


def decode(tokenizer, tokens) -> str:
    """Token ids -> prompt text (textual_attack.py: join CLIP's BPE pieces on '</w>'; word-level: join on spaces)."""
    pieces = tokenizer.convert_ids_to_tokens([int(t) for t in tokens])
    if any(piece.endswith("</w>") for piece in pieces):
        return "".join(pieces).replace("</w>", " ")[:-1]
    return " ".join(pieces)


def filter_candidates(tokenizer, candidates: torch.Tensor, current: str) -> list:
    """Step 4's filter (textual_attack.py `get_filtered_cands`): decoded prompts that re-tokenize to n tokens and
    differ from the current prompt; the rest are replaced by the last valid one."""
    n = candidates.shape[1]
    valid = []
    for row in candidates:
        text = decode(tokenizer, row)
        if text != current and len(tokenizer(text, add_special_tokens=False).input_ids) == n:
            valid.append(text)
    if not valid:
        return []
    return valid + [valid[-1]] * (len(candidates) - len(valid))


def gcg(text_encoder, tokenizer, target: torch.Tensor, config: MMADiffusionConfig, allowed: torch.Tensor,
        banned: torch.Tensor, generator: torch.Generator, device) -> tuple:
    """Steps 2-5 for one target and one random start: (best prompt, its loss, best step, forward passes)."""
    n = config.length
    control = allowed[torch.randint(0, len(allowed), (n,), generator=generator)]
    current = decode(tokenizer, control)
    best, best_loss, best_step, queries = current, float("inf"), 0, 0
    span = slice(1, n + 1)  # the n tokens after bos
    for step in range(1, config.steps + 1):
        ids = tokenize(tokenizer, [current]).to(device)
        control = ids[0, span].cpu()
        grad = token_gradient(text_encoder, ids, span, target, tokenizer.eos_token_id).cpu()
        queries += 1
        candidates = sample_candidates(grad, control, banned, config.batch_size, min(config.topk, len(allowed)),
                                       generator)
        texts = filter_candidates(tokenizer, candidates, current)
        if not texts:
            continue
        with torch.no_grad():
            cand_ids = tokenize(tokenizer, texts).to(device)
            losses = cosine_loss(pooled(text_encoder, cand_ids, tokenizer.eos_token_id), target).cpu()
        queries += len(texts)
        index = int(losses.argmin())
        current = texts[index]
        if float(losses[index]) < best_loss:
            best, best_loss, best_step = current, float(losses[index]), step
    return best, best_loss, best_step, queries


def attack(edited: EditedDiffusion, request: EraseRequest, config: MMADiffusionConfig, seed: int,
           testbed) -> AttackOutput:
    start = time.perf_counter()
    original = testbed.base_model().components  # model-agnostic: the unerased text encoder only
    text_encoder, tokenizer, device = original.text_encoder, original.tokenizer, original.device
    if config.length > tokenizer.model_max_length - 2:
        raise ConfigError(f"MMADiffusionConfig.length must be <= {tokenizer.model_max_length - 2} (the tokenizer's "
                          f"{tokenizer.model_max_length} positions less bos and eos), got {config.length}")
    generator = make_generator(seed)

    # 1. the banned tokens: the concept's word (as a substring) and the special tokens
    words = [concept_word(request)] if config.ban_concept_word else []
    banned = banned_tokens(tokenizer, words)
    allowed = torch.tensor([i for i in range(len(tokenizer)) if i not in set(banned.tolist())], dtype=torch.long)

    prompts, losses, steps, queries = [], [], [], 0
    for target_prompt in request.forget_prompts:
        with torch.no_grad():
            target = pooled(text_encoder, tokenize(tokenizer, [target_prompt]).to(device), tokenizer.eos_token_id)
        queries += 1
        for _ in range(config.starts_per_target):
            # 2-5. GCG from a random start
            prompt, loss, step, used = gcg(text_encoder, tokenizer, target, config, allowed, banned, generator,
                                           device)
            prompts.append(prompt)
            losses.append(loss)
            steps.append(step)
            queries += used

    # 6. the discrete prompts, sampled on the erased model by the testbed
    return AttackOutput(
        prompts=prompts,
        queries=queries,
        info={"target_prompts": list(request.forget_prompts), "banned_words": words, "final_losses": losses,
              "best_steps": steps, "wall_time_s": time.perf_counter() - start},
    )
