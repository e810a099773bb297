"""SCRUB and RMU as CLEAR runs them, against their formulas written out here on the model's raw outputs."""

import copy
import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from methods.core.config import ConfigError
from methods.core.models import frozen_copy
from methods.mllm import rmu, scrub
from methods.mllm.logprobs import model_inputs
from methods.testbeds import miniprofiles as mp


def _perturbed(model, scale=0.3, seed=0):
    other = frozen_copy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * p.std().nan_to_num(0.0) * torch.randn(p.shape, generator=generator))
    return other


def _kl_by_hand(student_logits, teacher_logits):
    """sum_v p_s (log p_s - log p_t) at every position, averaged over every position of the batch."""
    log_s = torch.log_softmax(student_logits.float(), -1)
    log_t = torch.log_softmax(teacher_logits.float(), -1)
    per_position = (log_s.exp() * (log_s - log_t)).sum(-1)
    return per_position.mean()


# --- SCRUB -----------------------------------------------------------------------------------------------------------
def test_scrub_loss_is_minus_beta_kl_forget_plus_kl_retain_plus_nll(micro_model, micro_task):
    student = micro_model
    method = scrub.SCRUB(scrub.SCRUBConfig(forget_weight=0.7))
    method.reference = _perturbed(student)
    forget = micro_task.batch(micro_task.forget[:5], None)
    retain = micro_task.batch(micro_task.retain[:4], None)
    logits = {name: (student(**model_inputs(b)).logits, method.reference(**model_inputs(b)).logits)
              for name, b in (("f", forget), ("r", retain))}  # fmt: skip
    nll = student(**model_inputs(retain), labels=retain["labels"]).loss
    expected = -0.7 * _kl_by_hand(*logits["f"]) + _kl_by_hand(*logits["r"]) + nll
    assert method.loss(student, forget, retain).item() == pytest.approx(expected.item(), rel=1e-4)


def test_scrub_at_the_teacher_is_the_retain_nll_and_answer_positions_are_selectable(micro_model, micro_task):
    method = scrub.SCRUB(scrub.SCRUBConfig(kl_positions="answer"))
    method.reference = frozen_copy(micro_model)
    forget = micro_task.batch(micro_task.forget[:5], None)
    retain = micro_task.batch(micro_task.retain[:4], None)
    nll = micro_model(**model_inputs(retain), labels=retain["labels"]).loss
    assert method.loss(micro_model, forget, retain).item() == pytest.approx(nll.item(), abs=1e-5)
    other = _perturbed(micro_model)
    mask = forget["labels"][:, 1:] != -100
    student = micro_model(**model_inputs(forget)).logits[:, :-1][mask]
    teacher = other(**model_inputs(forget)).logits[:, :-1][mask]
    method.reference = other
    assert method.forget_loss(micro_model, forget).item() == pytest.approx(-_kl_by_hand(student, teacher).item(),
                                                                           rel=1e-4)


# --- RMU -------------------------------------------------------------------------------------------------------------
def test_rmu_forget_term_is_clears_broadcast_mse():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 3, 4, generator=generator)
    control = rmu.control_tensor(3, 4, 5.0, generator)
    assert control.shape == (3, 1, 4) and control.min() >= 0
    assert torch.linalg.vector_norm(control).item() == pytest.approx(5.0, rel=1e-6)
    by_hand = 0.0
    for j in range(3):  # every control row against every sequence's position-mean
        for i in range(2):
            for k in range(4):
                by_hand += (hidden[i, :, k].mean() - control[j, 0, k]) ** 2
    by_hand /= 3 * 2 * 4
    assert rmu.forget_term(hidden, control).item() == pytest.approx(by_hand.item(), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mse_loss warns about the broadcast CLEAR relies on
        assert rmu.forget_term(hidden, control).item() == pytest.approx(
            F.mse_loss(hidden.mean(dim=1), control).item(), rel=1e-6)


@pytest.fixture
def two_layer_model(micro_config, micro_bundle):
    _, _, encoder = micro_bundle
    config = dataclasses.replace(micro_config, text_layers=2)
    return mp.build_tiny_llava(config, encoder.tokenizer, seed=0).eval().requires_grad_(False)


def test_rmu_reads_the_output_of_decoder_layer_l(two_layer_model, micro_task):
    method = rmu.RMU(rmu.RMUConfig(layer=0))
    batch = micro_task.batch(micro_task.forget[:4], None)
    hidden = method.hidden(two_layer_model, batch)
    states = two_layer_model(**model_inputs(batch), output_hidden_states=True).hidden_states
    assert torch.allclose(hidden, states[1], atol=1e-6)  # states[0]: embeddings, states[1]: after layer 0


def test_rmu_loss_is_beta_forget_plus_retain_mse(two_layer_model, micro_task):
    model = copy.deepcopy(two_layer_model)
    method = rmu.RMU(rmu.RMUConfig(layer=0, forget_weight=2.0, steering_coeff=7.0))
    method.prepare(model, micro_task)
    method.reference = _perturbed(model)
    forget = micro_task.batch(micro_task.forget[:4], None)
    retain = micro_task.batch(micro_task.retain[:3], None)
    loss = method.loss(model, forget, retain)
    states = lambda m, b: m(**model_inputs(b), output_hidden_states=True).hidden_states[1]  # noqa: E731
    control = method.control
    assert control.shape == (4, 1, model.config.text_config.hidden_size)
    assert torch.linalg.vector_norm(control).item() == pytest.approx(7.0, rel=1e-5)
    h_f = states(model, forget)
    expected_forget = ((h_f.mean(1)[None] - control) ** 2).mean()
    expected_retain = ((states(model, retain) - states(method.reference, retain)) ** 2).mean()
    assert loss.item() == pytest.approx((2.0 * expected_forget + expected_retain).item(), rel=1e-5)


def test_rmu_rejects_a_layer_the_model_does_not_have(micro_model, micro_task):
    with pytest.raises(ConfigError, match=r"RMUConfig.layer is 7 but the language model has 1 decoder layers"):
        rmu.RMU(rmu.RMUConfig()).prepare(copy.deepcopy(micro_model), micro_task)


def test_a_config_error_found_once_the_model_is_loaded_is_one_cli_line(monkeypatch, capsys):
    """RMU's layer can only be checked against the loaded model: the CLI still prints one line and exits with 2."""
    import methods.run
    from methods.__main__ import main

    def fail(*_args, **_kwargs):
        raise ConfigError("RMUConfig.layer is 9 but the language model has 2 decoder layers; use --set layer=<0..1>")

    monkeypatch.setattr(methods.run, "execute", fail)
    assert main(["run", "rmu", "--set", "layer=9"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: RMUConfig.layer is 9 but the language model has 2 decoder layers; use --set layer=<0..1>"]
