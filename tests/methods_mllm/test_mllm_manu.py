"""MANU: the importance functions and the combined score on hand-made activations, the global top-k rule, and the
pruning itself (rows of the selected neurons zeroed, nothing else touched, no training)."""

import copy
import math

import pytest
import torch

from methods.mllm import manu
from methods.mllm.layers import language_layers, vision_layers


def test_importance_functions_by_hand():
    a = torch.tensor([[1.0, -2.0], [3.0, 0.05], [-1.0, 0.0]])
    stats = manu.importance(a, freq_threshold=0.1)
    assert stats["abs"].tolist() == pytest.approx([5 / 3, 2.05 / 3])
    assert stats["freq"].tolist() == pytest.approx([1.0, 1 / 3])
    assert stats["rms"].tolist() == pytest.approx([math.sqrt(11 / 3), math.sqrt((4 + 0.0025) / 3)])
    mean0 = 1.0
    unbiased = ((1 - mean0) ** 2 + (3 - mean0) ** 2 + (-1 - mean0) ** 2) / 2  # torch.std: n - 1
    assert stats["var"][0].item() == pytest.approx(math.sqrt(unbiased))
    assert manu.importance(torch.tensor([[5e3], [-5e3]]), clamp=1e3)["abs"].item() == pytest.approx(1e3)  # clamped


def test_combined_score_is_the_weighted_sum_of_ratios_minus_one():
    forget = {"abs": torch.tensor([2.0]), "freq": torch.tensor([1.0]), "var": torch.tensor([3.0]),
              "rms": torch.tensor([4.0])}  # fmt: skip
    retain = {"abs": torch.tensor([1.0]), "freq": torch.tensor([0.5]), "var": torch.tensor([1.0]),
              "rms": torch.tensor([8.0])}  # fmt: skip
    eps = 1e-5
    expected = 2 * (2 / (1 + eps) - 1) + 0 * (1 / (0.5 + eps) - 1) + 2 * (3 / (1 + eps) - 1) + 2 * (4 / (8 + eps) - 1)
    score = manu.combined_score(forget, retain, (2.0, 0.0, 2.0, 2.0), eps)
    assert score.item() == pytest.approx(expected, rel=1e-6)


def test_top_k_mask_is_one_global_threshold_with_ties():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([3.0, 0.0, 4.0, -1.0])}
    # 7 neurons, 30% -> k = int(2.1) = 2: threshold 4 (the 2nd largest) -> 5 and 4 pruned
    mask = manu.top_k_mask(scores, 30.0)
    assert mask["a"].tolist() == [True, False, False] and mask["b"].tolist() == [False, False, True, False]
    # 50% -> k = 3: threshold 3, and both 3s are pruned (ties at the threshold)
    mask = manu.top_k_mask(scores, 50.0)
    assert mask["a"].tolist() == [True, False, True] and mask["b"].tolist() == [True, False, True, False]
    assert not any(m.any() for m in manu.top_k_mask(scores, 10.0).values())  # k = 0: nothing


def test_prune_rows_zeroes_the_selected_neurons_outputs():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 4)
    mask = torch.tensor([False, True, False, True])
    before = copy.deepcopy(linear)
    manu.prune_rows(linear, mask)
    x = torch.randn(5, 3)
    out = linear(x)
    assert torch.all(out[:, mask] == 0) and torch.allclose(out[:, ~mask], before(x)[:, ~mask])
    assert torch.equal(linear.weight[~mask], before.weight[~mask]) and torch.equal(linear.bias[~mask], before.bias[~mask])


def test_manu_prunes_only_mlp_rows_of_the_last_layers_without_training(micro_model, micro_task):
    model = copy.deepcopy(micro_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = manu.MANU(manu.MANUConfig(prune_percent=20.0))
    info = method.run(model, micro_task)
    assert info["pruned_by_modality"]["visual"] > 0 and info["pruned_by_modality"]["text"] > 0
    mlp_names = set()
    for modality, layers in (("visual", vision_layers(model)), ("text", language_layers(model))):
        for i in method.pruned_layers(model, modality):
            for name in manu.MODULES[modality]:
                linear = getattr(layers[i].mlp, name)
                zero_rows = (linear.weight == 0).all(1)
                assert int(zero_rows.sum()) == info["pruned_neurons"][f"{modality}.layer{i}.{name}"]
                mlp_names |= {n for n, p in model.named_parameters() if p is linear.weight or p is linear.bias}
    for name, p in model.named_parameters():
        if name not in mlp_names:
            assert torch.equal(p, before[name]), f"{name} changed"


def test_pooled_scores_prune_the_same_neurons_in_every_pruned_layer(micro_config, micro_bundle, micro_task):
    import dataclasses

    from methods.testbeds import miniprofiles as mp

    _, _, encoder = micro_bundle
    model = mp.build_tiny_llava(dataclasses.replace(micro_config, text_layers=2), encoder.tokenizer, 0)
    method = manu.MANU(manu.MANUConfig(prune_percent=10.0, forget_modalities=("text",)))
    method.run(model.eval().requires_grad_(False), micro_task)
    layers = language_layers(model)
    rows = [(layers[i].mlp.gate_proj.weight == 0).all(1) for i in method.pruned_layers(model, "text")]
    assert len(rows) == 2 and torch.equal(rows[0], rows[1]) and rows[0].any()
