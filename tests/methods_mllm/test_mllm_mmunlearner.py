"""MMUnlearner: the saliency mask follows its formula and the ascent only moves masked (salient) weights."""

import copy

import torch

from methods.mllm import mmunlearner


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_mask_covers_linear_weights_of_the_three_modules(micro_model, micro_task):
    method = mmunlearner.MMUnlearner()
    mask = method.compute_mask(copy.deepcopy(micro_model), micro_task)
    names = set(mask)
    assert any("vision_tower" in n for n in names) and any("language_model" in n for n in names)
    assert any("multi_modal_projector" in n for n in names)
    assert not any("embed" in n or "norm" in n or n.startswith("lm_head") for n in names)
    fraction = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert 0.0 < fraction < 1.0  # a real selection, neither empty nor everything


def test_mask_is_the_fisher_ratio(micro_model, micro_task):
    """m = 1[(F_forget + eps) / (F_preserve + eps) >= 1] with per-sample squared gradients (vision tower case)."""
    model = copy.deepcopy(micro_model)
    method = mmunlearner.MMUnlearner()
    mask = method.compute_mask(model, micro_task)
    name = next(n for n in mask if "vision_tower" in n and n.endswith("weight"))
    forget = method.forget_rows(micro_task)
    visual_preserve, _ = method.preserve_rows(micro_task)
    f_forget = method.squared_gradients(model, micro_task, forget)[name] / len(forget)
    f_preserve = method.squared_gradients(model, micro_task, visual_preserve)[name] / len(visual_preserve)
    assert torch.equal(mask[name], (f_forget + 1e-15) / (f_preserve + 1e-15) >= 1.0)


def test_forget_steps_only_update_salient_weights_of_masked_tensors(micro_model, micro_task):
    """Default (official) mode, no retain steps: inside every masked tensor, only the salient entries move."""
    model = copy.deepcopy(micro_model)
    before = _params(model)
    method = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(steps=3, retain_weight=0.0, learning_rate=1e-2))
    method.run(model, micro_task)
    after = _params(model)
    moved_salient = 0
    for name, mask in method.mask.items():
        assert torch.equal(after[name][~mask], before[name][~mask]), f"{name}: a masked-out weight moved"
        moved_salient += int((after[name] != before[name])[mask].sum())
    assert moved_salient > 0
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])  # no mask entry: free, as official


def test_frozen_mode_updates_only_masked_parameters(micro_model, micro_task):
    """unmasked_weights="frozen", no retain steps: every weight outside the mask is bit-identical."""
    model = copy.deepcopy(micro_model)
    before = _params(model)
    config = mmunlearner.MMUnlearnerConfig(steps=3, retain_weight=0.0, learning_rate=1e-2, unmasked_weights="frozen")
    method = mmunlearner.MMUnlearner(config)
    method.run(model, micro_task)
    after = _params(model)
    moved_salient = 0
    for name, old in before.items():
        new = after[name]
        if name in method.mask:
            keep = ~method.mask[name]
            assert torch.equal(new[keep], old[keep]), f"{name}: a masked-out weight moved"
            moved_salient += int((new != old)[method.mask[name]].sum())
        else:
            assert torch.equal(new, old), f"{name}: a weight without a mask moved"
    assert moved_salient > 0


def test_paper_task_keeps_the_forget_peoples_text_in_the_language_preserve_set(micro_task):
    method = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(forget_modalities=("visual",)))
    visual, language = method.preserve_rows(micro_task)
    forget_text = {r.qa.qid for r in micro_task.forget if r.qa.modality == "text"}
    assert forget_text <= {r.qa.qid for r in language}
    assert not forget_text & {r.qa.qid for r in visual}
    assert all(r.qa.modality == "visual" for r in method.forget_rows(micro_task))
