"""Fidelity tests of the audio cards: each card's defining computation, checked against the formula of its official
code written out here (not through the card's own helpers), on a micro classifier and hand-made tensors."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from methods.audio import bad_teaching, cfk, finetune, neggrad_plus, prune_regrow, scrub
from methods.core.config import ConfigError

from conftest import micro_model


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    shifted = x - x.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -log_softmax(logits)[torch.arange(len(labels)), labels].mean()


# --- fine-tuning: AdamW descent on the retain set only ---------------------------------------------------------------

def test_finetune_is_adamw_on_the_retain_cross_entropy_and_never_reads_the_forget_set(model, task):
    expected = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(expected.parameters(), lr=1e-2, weight_decay=0.01)
    loss = cross_entropy(expected(input_features=task.retain_inputs).logits, task.retain_labels)
    loss.backward()
    optimizer.step()
    task.forget_inputs = torch.full_like(task.forget_inputs, float("nan"))  # any use of the forget set would show
    info = finetune.unlearn(model, task, finetune.FinetuneConfig(learning_rate=1e-2, epochs=1, batch_size=20))
    assert info["steps"] == 1
    for (name, got), want in zip(model.named_parameters(), expected.parameters()):
        assert torch.allclose(got, want, atol=1e-6), name
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_finetune_defaults_are_unslu_benchs():
    config = finetune.FinetuneConfig()
    assert (config.learning_rate, config.epochs, config.batch_size) == (5e-5, 1, 8)
    with pytest.raises(ConfigError, match="FinetuneConfig.batch_size must be >= 1, got 0"):
        finetune.FinetuneConfig(batch_size=0)


# --- NegGrad+: alpha (CE_r + lambda/2 ||theta - theta_0||^2) - (1 - alpha) CE_f ---------------------------------------------

def test_neggrad_plus_loss_is_the_official_weighted_difference():
    generator = torch.Generator().manual_seed(0)
    retain_logits, forget_logits = torch.randn(4, 3, generator=generator), torch.randn(2, 3, generator=generator)
    retain_labels, forget_labels = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 0])
    distance = torch.tensor(3.0)
    got = neggrad_plus.neggrad_plus_loss(retain_logits, retain_labels, forget_logits, forget_labels, distance, 0.95, 0.1)
    want = 0.95 * (cross_entropy(retain_logits, retain_labels) + 0.1 / 2 * 3.0) \
        - 0.05 * cross_entropy(forget_logits, forget_labels)
    assert torch.allclose(got, want)


def test_neggrad_plus_first_step_is_sgd_on_that_loss(model, task):
    cfg = neggrad_plus.NegGradPlusConfig(epochs=1, retain_batch_size=20, forget_batch_size=6, learning_rate=0.1)
    expected = copy.deepcopy(model)
    # at the first step theta = theta_0: the L2 term is zero and so is its gradient
    loss = cfg.alpha * cross_entropy(expected(input_features=task.retain_inputs).logits, task.retain_labels) \
        - (1 - cfg.alpha) * cross_entropy(expected(input_features=task.forget_inputs).logits, task.forget_labels)
    grads = torch.autograd.grad(loss, list(expected.parameters()))
    info = neggrad_plus.unlearn(model, task, cfg)
    assert info["steps"] == 1
    for (name, got), start, grad in zip(model.named_parameters(), expected.parameters(), grads):
        assert torch.allclose(got, start - 0.1 * grad, atol=1e-6), name


def test_neggrad_plus_l2_term_pulls_back_to_the_start(model):
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        model.out.bias.add_(torch.tensor([1.0, -2.0, 0.5]))
    assert math.isclose(float(neggrad_plus.squared_distance(model, start).detach()), 1 + 4 + 0.25, rel_tol=1e-6)


# --- SCRUB: DistillKL, the max / min steps and the step-decayed learning rate ----------------------------------------

def test_distill_kl_is_repdistillers_formula():
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    T = 2.0
    p_t = log_softmax(teacher / T).exp()
    want = (p_t * (log_softmax(teacher / T) - log_softmax(student / T))).sum() * T**2 / 5
    assert torch.allclose(scrub.distill_kl(student, teacher, T), want, atol=1e-6)
    assert float(scrub.distill_kl(teacher, teacher, T)) == pytest.approx(0.0, abs=1e-6)


def test_scrub_learning_rate_follows_adjust_learning_rate():
    cfg = scrub.SCRUBConfig()
    rates = [scrub.learning_rate_at(epoch, cfg) for epoch in range(1, 11)]
    assert rates == pytest.approx([5e-4] * 5 + [5e-5] * 3 + [5e-6] + [5e-7])


def test_scrub_max_steps_move_the_student_away_from_the_teacher_on_the_forget_set(model, task):
    teacher = copy.deepcopy(model)
    # only max-steps: one epoch, no retain term
    cfg = scrub.SCRUBConfig(epochs=1, msteps=1, gamma=0.0, alpha=0.0, learning_rate=1e-2, weight_decay=0.0,
                            forget_batch_size=6, retain_batch_size=20)
    scrub.unlearn(model, task, cfg)
    with torch.no_grad():
        after = scrub.distill_kl(model(input_features=task.forget_inputs).logits,
                                 teacher(input_features=task.forget_inputs).logits, cfg.temperature)
    assert after > 1e-4  # the KL was 0 before (student == teacher); the max-step raised it


def test_scrub_min_steps_alone_are_adam_on_gamma_ce_plus_alpha_kl(model, task):
    cfg = scrub.SCRUBConfig(epochs=1, msteps=0, learning_rate=1e-2, retain_batch_size=20)
    expected = copy.deepcopy(model)
    optimizer = torch.optim.Adam(expected.parameters(), lr=1e-2, weight_decay=cfg.weight_decay)
    logits = expected(input_features=task.retain_inputs).logits
    # student == teacher at the first step: the KL term is 0 with a zero gradient
    (cfg.gamma * cross_entropy(logits, task.retain_labels)).backward()
    optimizer.step()
    scrub.unlearn(model, task, cfg)
    for (name, got), want in zip(model.named_parameters(), expected.parameters()):
        assert torch.allclose(got, want, atol=1e-6), name


# --- Bad Teaching: KL(mixed teacher || student), element-wise mean -----------------------------------------------------

def test_bad_teaching_loss_is_the_official_unlearner_loss():
    generator = torch.Generator().manual_seed(2)
    student, competent, incompetent = (torch.randn(4, 3, generator=generator) for _ in range(3))
    mask = torch.tensor([1, 0, 0, 1])
    T = 1.5
    target = torch.where(mask[:, None].bool(), log_softmax(incompetent / T).exp(), log_softmax(competent / T).exp())
    want = (target * (target.log() - log_softmax(student / T))).sum() / target.numel()  # kl_div's default "mean"
    got = bad_teaching.bad_teaching_loss(student, mask, competent, incompetent, T)
    assert torch.allclose(got, want, atol=1e-6)


def test_bad_teaching_uses_every_forget_row_and_the_retain_fraction(model, task):
    info = bad_teaching.unlearn(model, task, bad_teaching.BadTeachingConfig(retain_fraction=0.5, batch_size=4))
    assert info["unlearning_set"] == 6 + 10
    assert info["steps"] == math.ceil(16 / 4)


# --- prune and regrow: the similarity curve, the knee, global L1 pruning and regrowth ----------------------------------

def test_similarity_curve_and_post_optimal_knee_by_hand():
    vector = torch.tensor([4.0, -1.0, 3.0, 2.0])
    fractions, similarity = prune_regrow.similarity_curve(vector, grid=5)
    norm = math.sqrt(16 + 1 + 9 + 4)
    # zero the smallest |w| first: -1, then 2, then 3, then 4
    want = [1.0, (16 + 9 + 4) / (norm * math.sqrt(29)), (16 + 9) / (norm * 5), 16 / (norm * 4), 0.0]
    assert fractions.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert similarity.tolist() == pytest.approx(want)
    distances = [math.hypot(f, s) for f, s in zip(fractions.tolist(), want)]  # "orth": farthest from (0, 0)
    assert prune_regrow.choose_fraction(fractions, similarity, "orth") == pytest.approx(
        fractions[distances.index(max(distances))])
    near = [math.hypot(f - 1, s - 1) for f, s in zip(fractions.tolist(), want)]  # "opt": nearest to (1, 1)
    assert prune_regrow.choose_fraction(fractions, similarity, "opt") == pytest.approx(
        fractions[near.index(min(near))])


def test_prune_and_regrow_replaces_exactly_the_smallest_weights_by_a_fresh_model(model, task):
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fresh = dict(task.new_model(task.seed).named_parameters())
    info = prune_regrow.unlearn(model, task, prune_regrow.PruneRegrowConfig(epochs=0, grid=11))
    fraction = info["pruned_fraction"]
    magnitudes = torch.cat([p.abs().flatten() for p in before.values()])
    n_pruned = round(fraction * magnitudes.numel())  # torch's L1Unstructured: round(amount * n) entries
    threshold = torch.sort(magnitudes).values[n_pruned - 1] if n_pruned else -1.0
    assert 0 < fraction < 1 and info["regrown"] == n_pruned
    for name, param in model.named_parameters():
        pruned = before[name].abs() <= threshold
        assert torch.equal(param[pruned], fresh[name].detach()[pruned]), name
        assert torch.equal(param[~pruned], before[name][~pruned]), name


def test_prune_regrow_repair_trains_on_the_retain_set_only(model, task):
    task.forget_inputs = torch.full_like(task.forget_inputs, float("nan"))
    prune_regrow.unlearn(model, task, prune_regrow.PruneRegrowConfig(epochs=2, batch_size=8, grid=11))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_prune_regrow_defaults_are_the_official_ones():
    config = prune_regrow.PruneRegrowConfig()
    assert (config.selection, config.grid, config.learning_rate, config.momentum, config.epochs, config.batch_size) \
        == ("orth", 101, 0.01, 0.9, 5, 256)
    with pytest.raises(ConfigError, match="selection must be one of 'orth', 'opt'"):
        prune_regrow.PruneRegrowConfig(selection="best")


def test_cards_are_deterministic_for_a_seed(task):
    for module in (finetune, neggrad_plus, scrub, bad_teaching, prune_regrow, cfk):
        first, second = micro_model(0), micro_model(0)
        module.unlearn(first, task)
        module.unlearn(second, task)
        for a, b in zip(first.parameters(), second.parameters()):
            assert torch.equal(a, b), module.__name__


# --- CF-k: only the last k children (and the last encoder layers) move -------------------------------------------------

def test_cfk_trains_only_the_last_child_with_adamw_on_the_retain_set(model, task):


    expected = copy.deepcopy(model)
    head = list(expected.out.parameters())
    optimizer = torch.optim.AdamW(head, lr=1e-2, weight_decay=0.01)
    cross_entropy(expected(input_features=task.retain_inputs).logits, task.retain_labels).backward()
    optimizer.step()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    info = cfk.unlearn(model, task, cfk.CFkConfig(learning_rate=1e-2, batch_size=20))
    assert info["trained_parameters"] == sum(p.numel() for p in head)
    for (name, got), want in zip(model.named_parameters(), expected.parameters()):
        if name.startswith("out."):
            assert torch.allclose(got, want, atol=1e-6) and not torch.equal(got, before[name]), name
        else:
            assert torch.equal(got, before[name]), f"{name} is frozen in CF-1"


def test_cfk_encoder_layers_are_found_in_a_real_transformers_classifier():

    from methods.testbeds.minivoices.config import config_for
    from methods.testbeds.minivoices.model import build_tiny_classifier

    whisper = build_tiny_classifier(config_for("ci"), ["a", "b"], seed=0)
    assert len(cfk.encoder_layers(whisper)) == config_for("ci").layers
    trainable = cfk.trainable_part(whisper, k=1, n_encoder_layers=1)
    names = {name for name, p in whisper.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("classifier.", "encoder.layers.1.")) for n in names)
    assert sum(p.numel() for p in trainable) == sum(p.numel() for n, p in whisper.named_parameters() if n in names)
    with pytest.raises(ValueError, match="encoder has 2 layers"):
        cfk.trainable_part(whisper, k=1, n_encoder_layers=3)
