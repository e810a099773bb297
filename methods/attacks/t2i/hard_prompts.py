"""What the discrete (hard-prompt) attacks share: the words they may choose from, prompts built from word ids, and
the text encoder run on *given* token embeddings (a relaxed one-hot times the embedding matrix for UnlearnDiffAtk, a
projected soft prompt for P4D) so that the loss is differentiable in them.

Only code that is identical across these cards lives here; each card's optimisation stays in its own file.
"""

from __future__ import annotations

from typing import Sequence

import torch


def candidate_ids(tokenizer) -> torch.Tensor:
    """Every token id of the vocabulary but the special ones (bos, eos, pad, unk): the words an attack may use."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


def word_ids(tokenizer, prompt: str) -> list:
    """The prompt's token ids without bos / eos / padding."""
    return tokenizer(prompt, add_special_tokens=False).input_ids


def pad_ids(tokenizer, ids: Sequence[int]) -> torch.Tensor:
    """(1, L) input ids: bos + ids + eos, padded to the tokenizer's max length as `diffusion.tokenize` does; a
    prompt that does not fit is a ValueError (it would be truncated, and the attack's words lost)."""
    length = tokenizer.model_max_length
    ids = [tokenizer.bos_token_id, *[int(i) for i in ids], tokenizer.eos_token_id]
    if len(ids) > length:
        raise ValueError(f"{len(ids)} tokens do not fit the tokenizer's {length} (with bos and eos)")
    return torch.tensor([ids + [tokenizer.pad_token_id] * (length - len(ids))], dtype=torch.long)


def decode(tokenizer, ids: Sequence[int]) -> str:
    """The prompt text of word ids (word-level tokenizers: the words joined by spaces)."""
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()


def encode_token_embeddings(text_encoder, input_ids: torch.Tensor, token_embeddings: torch.Tensor) -> torch.Tensor:
    """Last hidden states (B, L, D) of `text_encoder` when its input token embeddings are `token_embeddings`
    (B, L, E) instead of the rows of `input_ids` (which still give the sequence length and the pooled position).

    The token-embedding layer's output is replaced by a forward hook, so the encoder's own forward (position
    embeddings, causal mask, final norm) runs unchanged and gradients reach `token_embeddings`."""
    layer = text_encoder.get_input_embeddings()
    handle = layer.register_forward_hook(lambda module, args, output: token_embeddings.to(output.dtype))
    try:
        return text_encoder(input_ids.to(token_embeddings.device))[0]
    finally:
        handle.remove()
