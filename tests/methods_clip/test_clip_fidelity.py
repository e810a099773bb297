"""Fidelity tests of the CLIP cards: each card's defining computation checked against its formula on hand-made
inputs, independently of the implementation's own helpers where possible."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from methods.clip import cleanclip, cliperase, negmerge, slug, taskvector, zsclip_synthetic
from methods.clip.edited import contrastive_loss, same_caption


# --- the shared contrastive loss -------------------------------------------------------------------------------------

def test_contrastive_loss_is_clips_loss_with_unique_captions():
    torch.manual_seed(0)
    logits = torch.randn(5, 5) * 3
    target = torch.arange(5)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    assert torch.allclose(contrastive_loss(logits), expected)
    assert torch.allclose(contrastive_loss(logits, same_caption(torch.tensor([0, 1, 2, 3, 4]))), expected)


def test_same_caption_pairs_share_the_target_mass():
    logits = torch.tensor([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    per_pair = contrastive_loss(logits, same_caption(torch.tensor([7, 7, 1])), reduction="none")
    # rows 0 and 1: target (1/2, 1/2, 0) on logits (2, 2, 0) -> -log(e^2 / (2 e^2 + 1))
    row = -math.log(math.exp(2) / (2 * math.exp(2) + 1))
    assert per_pair[0].item() == pytest.approx(row, rel=1e-5) and per_pair[1].item() == pytest.approx(row, rel=1e-5)


# --- task vectors ------------------------------------------------------------------------------------------------------

def test_task_vector_negation_is_theta_minus_lambda_tau():
    model = torch.nn.Linear(3, 2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tau = {"weight": torch.full((2, 3), 0.5), "bias": torch.tensor([1.0, -2.0])}
    taskvector.apply_vector(model, {n: -v for n, v in tau.items()}, 0.3, before)
    for name, p in model.named_parameters():
        assert torch.allclose(p, before[name] - 0.3 * tau[name])


def test_coefficient_rule_lowest_forget_accuracy_with_control_kept():
    """The paper's rule on a hand-made curve: coef 0.6 forgets most among coefficients keeping >= 95% control."""

    class FakeTask:
        retain = [0] * 10

        def __init__(self):
            self.calls = 0

    curve = {0.0: (0.9, 1.0), 0.2: (0.5, 0.99), 0.4: (0.3, 0.97), 0.6: (0.1, 0.951), 0.8: (0.0, 0.90)}
    model = torch.nn.Linear(1, 1, bias=False)
    negated = {"weight": torch.ones(1, 1)}
    state = {"coef": 0.0}

    def fake_accuracy(_model, images, labels, **_):
        coef = round(float(_model.weight.detach()) - base, 1)
        return curve[coef][0] if images == "forget" else curve[coef][1]

    base = float(model.weight.detach())
    task = FakeTask()
    task.forget = type("S", (), {"images": "forget"})()
    task.forget_labels = None
    task.zero_shot_accuracy = fake_accuracy
    original = taskvector.control_subset
    taskvector.control_subset = lambda *_: ("control", None)
    try:
        coef, _ = taskvector.choose_coefficient(model, task, negated, sorted(curve), 0.95, 10, 0)
    finally:
        taskvector.control_subset = original
    assert coef == 0.6 and state["coef"] == 0.0


# --- NegMerge ----------------------------------------------------------------------------------------------------------

def test_negmerge_keeps_the_mean_where_all_signs_agree():
    tau_1 = {"w": torch.tensor([1.0, -2.0, 3.0, 0.0, 2.0])}
    tau_2 = {"w": torch.tensor([2.0, -1.0, -1.0, 1.0, 4.0])}
    tau_3 = {"w": torch.tensor([3.0, -3.0, 2.0, 1.0, -1.0])}
    merged = negmerge.sign_consensus_merge([tau_1, tau_2, tau_3])["w"]
    assert torch.equal(merged, torch.tensor([2.0, -2.0, 0.0, 0.0, 0.0]))


# --- SLUG ---------------------------------------------------------------------------------------------------------------

def test_slug_pareto_front_keeps_undominated_layers():
    # (alignment, importance): lower alignment and higher importance dominate
    points = [(0.1, 1.0), (0.2, 2.0), (0.3, 0.5), (0.05, 0.2), (0.2, 1.5), (0.25, 1.2)]
    # (0.3, 0.5) is beaten by (0.1, 1.0); (0.25, 1.2) by (0.2, 1.5); (0.2, 1.5) only ties (0.2, 2.0) on alignment
    assert slug.pareto_front(points) == [0, 1, 3, 4]


def test_slug_candidates_and_whole_layer_groups():
    assert slug.excluded("text_model.embeddings.token_embedding.weight")
    assert slug.excluded("vision_model.encoder.layers.0.self_attn.q_proj.bias") and slug.excluded("logit_scale")
    assert not slug.excluded("text_model.encoder.layers.0.mlp.fc1.weight")
    names = {f"text_model.encoder.layers.0.self_attn.{p}_proj.weight" for p in "qkv"}
    group = slug.layer_group("text_model.encoder.layers.0.self_attn.v_proj.weight", names)
    assert sorted(group) == sorted(names)
    front = {"language": [("text_model.encoder.layers.0.mlp.fc2.weight", 0.1, 1.0),
                          ("text_model.encoder.layers.1.self_attn.k_proj.weight", 0.2, 2.0),
                          ("text_projection.weight", 0.05, 0.5)], "vision": []}
    assert slug.choose_layer(front, "deepest_text") == "text_model.encoder.layers.1.self_attn.k_proj.weight"


def test_slug_forget_gradient_is_the_gradient_of_the_cosine():
    """calc_grad.py: the forget loss is -(1 - cos) (the negated cosine-embedding loss), so g_f = grad of mean cos."""
    image = torch.randn(4, 3, requires_grad=True)
    text = torch.randn(4, 3)
    official = -torch.nn.CosineEmbeddingLoss()(image, text, torch.ones(4))
    grad_official, = torch.autograd.grad(official, image)
    mean_cos = F.cosine_similarity(image, text, dim=1).mean()
    grad_cos, = torch.autograd.grad(mean_cos, image)
    assert torch.allclose(grad_official, grad_cos, atol=1e-6)


# --- CLIPErase ----------------------------------------------------------------------------------------------------------

def test_cliperase_loss_is_the_weighted_sum_of_its_modules():
    torch.manual_seed(1)
    logits, original = torch.randn(4, 4) * 2, torch.randn(4, 4) * 2
    is_forget = torch.tensor([True, True, False, False])
    config = cliperase.CLIPEraseConfig(lambda_forget=0.5, lambda_retain=2.0, lambda_consistency=3.0)
    total, forget, retain, consistency = cliperase.cliperase_loss(logits, original, torch.eye(4, dtype=torch.bool),
                                                                  is_forget, config)
    target = torch.arange(4)
    per = (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.t(), target, reduction="none")) / 2
    p, q = F.softmax(original, 1), F.softmax(logits, 1)
    pt, qt = F.softmax(original.t(), 1), F.softmax(logits.t(), 1)
    kl = ((p * (p.log() - q.log())).sum(1)[2:].mean() + (pt * (pt.log() - qt.log())).sum(1)[2:].mean())
    assert forget.item() == pytest.approx(-per[:2].mean().item(), rel=1e-5)
    assert retain.item() == pytest.approx(per[2:].mean().item(), rel=1e-5)
    assert consistency.item() == pytest.approx(kl.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.5 * forget.item() + 2.0 * retain.item() + 3.0 * kl.item(), rel=1e-5)


# --- zero-shot class unlearning with synthetic samples ----------------------------------------------------------------

class LinearCLIP(torch.nn.Module):
    """A stand-in exposing CLIPModel's feature methods: linear image and text maps."""

    def __init__(self):
        super().__init__()
        self.image = torch.nn.Linear(4, 3, bias=False)
        self.text = torch.nn.Embedding(5, 3)

    def get_image_features(self, pixel_values):
        return self.image(pixel_values.flatten(1))

    def get_text_features(self, input_ids, attention_mask=None):
        return self.text(input_ids).mean(dim=1)


def test_lipschitz_loss_matches_its_formula():
    torch.manual_seed(0)
    model = LinearCLIP()
    images = torch.rand(3, 1, 2, 2) * 2 - 1
    tokens = {"input_ids": torch.tensor([[1, 2], [1, 2], [1, 2]])}
    loss = zsclip_synthetic.lipschitz_loss_joint(model, tokens, images, 0.3, 2, -1.0, 1.0,
                                                 torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    f_text, f_image = model.get_text_features(**tokens), model.get_image_features(images)
    expected = 0.0
    for _ in range(2):
        noisy = (images + torch.randn(images.shape, generator=generator) * 0.3).clamp(-1, 1)
        f_noisy = model.get_image_features(noisy)
        for i in range(3):
            numerator = (f_text[i] - f_noisy[i]).norm() + (f_image[i] - f_noisy[i]).norm()
            expected += float((numerator / (2 * (images[i] - noisy[i]).norm())).detach())
    assert loss.item() == pytest.approx(expected / (2 * 2), rel=1e-5)


def test_zsclip_updates_only_the_top_k_parameters_by_mean_absolute_gradient():
    model = torch.nn.Module()
    model.vision_model = torch.nn.Module()
    model.vision_model.a = torch.nn.Parameter(torch.zeros(2))
    model.vision_model.b = torch.nn.Parameter(torch.zeros(4))
    model.text_model = torch.nn.Module()
    model.text_model.encoder = torch.nn.Module()
    model.text_model.encoder.c = torch.nn.Parameter(torch.zeros(3))
    model.vision_model.a.grad = torch.tensor([1.0, 1.0])  # mean |g| 1.0
    model.vision_model.b.grad = torch.tensor([4.0, 0.0, 0.0, 0.0])  # mean |g| 1.0 -> tie broken by name
    model.text_model.encoder.c.grad = torch.tensor([3.0, 0.0, 0.0])
    model.vision_model.b.grad = torch.tensor([8.0, 0.0, 0.0, 0.0])  # mean |g| 2.0
    assert zsclip_synthetic.important_mask(model, 1, 1) == {"vision_model.b", "text_model.encoder.c"}


# --- CleanCLIP ----------------------------------------------------------------------------------------------------------

def test_cleanclip_loss_is_crossmodal_plus_inmodal():
    """src/train.py get_loss (--inmodal) with unique captions: CLIP's loss on (image, text) plus the mean of the
    image / augmented-image and text / augmented-text cross-entropies."""
    torch.manual_seed(2)
    image, text, image_aug, text_aug = (F.normalize(torch.randn(4, 3), dim=1) for _ in range(4))
    scale = torch.tensor(10.0)
    loss, crossmodal, inmodal = cleanclip.cleanclip_loss(image, text, image_aug, text_aug, scale,
                                                         torch.eye(4, dtype=torch.bool), 1.0, 1.0)
    target = torch.arange(4)
    logits = scale * image @ text.t()
    expected_cross = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    expected_in = (F.cross_entropy(scale * image @ image_aug.t(), target)
                   + F.cross_entropy(scale * text @ text_aug.t(), target)) / 2
    assert crossmodal.item() == pytest.approx(expected_cross.item(), rel=1e-5)
    assert inmodal.item() == pytest.approx(expected_in.item(), rel=1e-5)
    assert loss.item() == pytest.approx((expected_cross + expected_in).item(), rel=1e-5)


def test_eda_keeps_the_words_of_the_caption():
    import random

    rng = random.Random(0)
    caption = "a digit three in inverted style"
    for _ in range(20):
        augmented = eda_words = cleanclip.eda(caption, 0.1, rng).split()
        assert set(eda_words) <= set(caption.split()) and augmented
