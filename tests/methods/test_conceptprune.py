"""ConceptPrune: WANDA scores |W| * ||X||, per-row top-k target neurons that beat the base prompts, zeroed in ff.net.2."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import conceptprune


def test_skilled_neurons_follow_the_wanda_rule():
    weight = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.1, 0.2, -4.0, 1.0]])
    target = torch.tensor([1.0, 1.0, 1.0, 0.1])
    base = torch.tensor([2.0, 0.5, 0.1, 0.1])
    mask = conceptprune.skilled_mask(weight, target, base, 0.5)  # k = 2 per row
    # by hand: target scores row 0 = [1, 2, .5, .3] -> top-2 {1, 0}; beats base only at column 1 (2 > 1)
    #          row 1 = [.1, .2, 4, .1] -> top-2 {2, 1}; base [.2, .1, .4, .1] -> both beat it
    assert mask.tolist() == [[False, True, False, False], [False, True, True, False]]
    assert torch.equal(conceptprune.wanda_scores(weight, target), weight.abs() * target)


def test_column_norms_accumulate_unit_rows():
    norms = conceptprune.ColumnNorms()
    hook = norms.hook("layer")
    rows = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    hook(None, (rows[None],))
    norms.restart()
    hook(None, (rows[None],))
    # each row normalised: [.6, .8], [0, 1]; two runs at step 0
    assert torch.allclose(norms.norms(0, "layer"), torch.tensor([2 * 0.36, 2 * (0.64 + 1.0)]).sqrt())


def test_only_feed_forward_output_weights_are_zeroed(components, request_three):
    config = dataclasses.replace(load_registry().card("conceptprune").build_config("minicanvas"), skill_ratio=0.2,
                                 num_inference_steps=3, timesteps=3)
    edited = conceptprune.erase(components, request_three, config, seed=0)
    base = dict(components.unet.named_parameters())
    changed = {n: p for n, p in edited.components.unet.named_parameters() if not torch.equal(p, base[n])}
    assert changed and all(n.endswith("ff.net.2.weight") for n in changed)
    zeroed = sum(int(((p == 0) & (base[n] != 0)).sum()) for n, p in changed.items())
    assert zeroed == edited.info["pruned_weights"] > 0
    assert all(torch.equal(p[p != 0], base[n][p != 0]) for n, p in changed.items())  # nothing else moves
