"""Forget-Me-Not: the loss is one L2 norm of the cross-attention probabilities on the concept's tokens."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import fmn
from methods.t2i.diffusion import cross_attention_modules, encode_prompts, frozen_copy
from methods.testbeds import minicanvas


def _tokens(tokenizer, prompt, mask):
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    return [tokenizer.convert_ids_to_tokens(i) for i, keep in zip(ids, mask) if keep]


def test_concept_positions_are_the_differing_tokens_and_the_end_of_text():
    tokenizer = minicanvas.build_tokenizer()
    prompt = "a digit three in plain style"
    assert _tokens(tokenizer, prompt, fmn.concept_positions(tokenizer, prompt, "a digit eight in plain style", True)) \
        == ["three", "<eos>"]
    # Stable Diffusion's empty anchor: every word of the concept
    assert _tokens(tokenizer, "a digit three", fmn.concept_positions(tokenizer, "a digit three", "", False)) \
        == ["a", "digit", "three"]


def test_the_recorded_loss_is_the_norm_of_the_attention_probabilities(components):
    unet = frozen_copy(components.unet)
    _, attention = cross_attention_modules(unet)[0]
    stock = attention.processor
    hidden = torch.randn(2, 16, attention.to_q.in_features, generator=torch.Generator().manual_seed(0))
    context = encode_prompts(components, ["a digit three in plain style", "a digit three"])
    tokens = context.shape[1]  # the tokenizer's padded length
    positions = torch.zeros(2, tokens, dtype=torch.bool)
    positions[0, 3], positions[1, 3], positions[1, 4] = True, True, True
    with torch.no_grad():
        expected_out = attention(hidden, encoder_hidden_states=context)
        recorder = fmn.AttentionRecorder()
        attention.set_processor(recorder)
        recorder.positions, recorder.selected = positions, []
        out = attention(hidden, encoder_hidden_states=context)
    # independently: per head, softmax(Q K^T * scale), restricted to each sample's concept positions
    heads = attention.heads
    q = attention.to_q(hidden).view(2, 16, heads, -1).transpose(1, 2)
    k = attention.to_k(context).view(2, tokens, heads, -1).transpose(1, 2)
    probs = torch.softmax(q @ k.transpose(-1, -2) * attention.scale, dim=-1)  # (batch, heads, pixels, tokens)
    expected = torch.cat([probs[b][:, :, positions[b]].flatten() for b in range(2)]).norm()
    assert torch.allclose(recorder.loss(), expected, rtol=1e-5)
    assert torch.allclose(out, expected_out, atol=1e-5)  # the recording processor computes the same attention
    attention.set_processor(stock)


def _concept_attention(components, unet, request) -> float:
    recorder = fmn.AttentionRecorder()
    modules = cross_attention_modules(unet)
    stock = [m.processor for _, m in modules]
    for _, m in modules:
        m.set_processor(recorder)
    positions = torch.stack([fmn.concept_positions(components.tokenizer, f, a, True)
                             for f, a in zip(request.forget_prompts, request.anchor_prompts)])
    recorder.positions, recorder.selected = positions, []
    x_t = torch.randn(len(positions), 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        unet(x_t, torch.full((len(x_t),), 300), encoder_hidden_states=encode_prompts(components, request.forget_prompts))
    for (_, m), processor in zip(modules, stock):
        m.set_processor(processor)
    return float(recorder.loss())


def test_re_steering_lowers_the_attention_on_the_concept_and_trains_only_cross_attention(components, request_three):
    config = dataclasses.replace(load_registry().card("fmn").build_config("minicanvas"), train_steps=30,
                                 num_images=10, batch_size=5, learning_rate=1e-2)
    edited = fmn.erase(components, request_three, config, seed=0)
    assert edited.info["concept_tokens"] == 2 * len(request_three.forget_prompts)  # the digit word + <eos> each
    base = dict(components.unet.named_parameters())
    changed = [n for n, p in edited.components.unet.named_parameters() if not torch.equal(p, base[n])]
    assert changed and all("attn2" in n for n in changed)  # only_optimize_ca on MiniCanvas
    assert not any(isinstance(m.processor, fmn.AttentionRecorder)
                   for _, m in cross_attention_modules(edited.components.unet))  # stock processors restored
    assert _concept_attention(components, edited.components.unet, request_three) < \
        0.8 * _concept_attention(components, components.unet, request_three)
