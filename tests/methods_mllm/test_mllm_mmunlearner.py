"""MMUnlearner: the saliency mask follows its formula and the ascent only moves masked (salient) weights."""

import copy

import torch

from methods.mllm import mmunlearner


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


BOTH = ("language_model", "vision_tower", "multi_modal_projector")


def test_the_default_mask_is_the_readme_commands_language_mask(micro_model, micro_task):
    mask = mmunlearner.MMUnlearner().compute_mask(copy.deepcopy(micro_model), micro_task)
    assert mask and all("language_model" in name for name in mask)
    both = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(mask_modules=BOTH))
    names = set(both.compute_mask(copy.deepcopy(micro_model), micro_task))
    assert any("vision_tower" in n for n in names) and any("language_model" in n for n in names)
    assert any("multi_modal_projector" in n for n in names)
    assert not any("embed" in n or "norm" in n or n.startswith("lm_head") for n in names)


def _official_fisher(model, task, rows, names, generator, batch_size=4):
    """SFRon.py `prepare_weight_saliency_mask`: over a shuffled loader of batch 4, the squared batch gradient of the
    NLL summed and divided by the number of batches."""
    from methods.mllm.losses import answer_nll

    order = torch.randperm(len(rows), generator=generator).tolist()
    batches = [[rows[i] for i in order[k : k + batch_size]] for k in range(0, len(rows), batch_size)]
    total = {name: 0.0 for name in names}
    parameters = dict(model.named_parameters())
    for batch_rows in batches:
        model.zero_grad(set_to_none=True)
        answer_nll(model, task.batch(batch_rows, None)).backward()
        for name in names:
            total[name] = total[name] + parameters[name].grad.detach() ** 2 / len(batches)
    model.zero_grad(set_to_none=True)
    return total


def test_fidelity_mask_is_the_official_fisher_ratio(micro_model, micro_task):
    """m = 1[(F_forget + 1e-15) / (F_preserve + 1e-15) >= 1], Fisher over shuffled batches of 4 (MLLMU_gen_mask.py):
    the vision tower against the retain visual questions, the language model against them plus the text ones."""
    model = copy.deepcopy(micro_model).requires_grad_(True)
    method = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(mask_modules=BOTH))
    mask = method.compute_mask(copy.deepcopy(micro_model), micro_task)
    vision = next(n for n in mask if "vision_tower" in n and n.endswith("weight"))
    language = next(n for n in mask if "language_model" in n and "mlp" in n and n.endswith("weight"))
    generator = torch.Generator().manual_seed(int(micro_task.seed))
    forget = method.forget_rows(micro_task)
    visual_preserve, language_preserve = method.preserve_rows(micro_task)
    f_forget = _official_fisher(model, micro_task, forget, [vision, language], generator)
    f_vision = _official_fisher(model, micro_task, visual_preserve, [vision], generator)
    f_language = _official_fisher(model, micro_task, language_preserve, [language], generator)
    assert torch.equal(mask[vision], (f_forget[vision] + 1e-15) / (f_vision[vision] + 1e-15) >= 1.0)
    assert torch.equal(mask[language], (f_forget[language] + 1e-15) / (f_language[language] + 1e-15) >= 1.0)
    fraction = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert 0.0 < fraction < 1.0  # a real selection, neither empty nor everything


def test_the_official_schedule_is_constant_over_one_epoch(micro_model, micro_task):
    """`lr_scheduler.step()` once per epoch (MLLMU_manifold.py): within the first epoch every step uses the base lr."""
    method = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(learning_rate=1e-3))
    params = list(copy.deepcopy(micro_model).parameters())
    forget_opt, forget_schedule, retain_opt, retain_schedule = method.optimizers(params, 10, 8, 40)
    assert method.schedule_every == 10  # 40 retain questions in batches of 4
    assert forget_schedule.get_last_lr() == [1e-3] and retain_schedule.get_last_lr() == [1e-3]
    stepwise = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(learning_rate=1e-3, scheduler_step="step"))
    stepwise.optimizers(params, 10, 8, 40)
    assert stepwise.schedule_every == 1


def test_forget_steps_only_update_salient_weights_of_masked_tensors(micro_model, micro_task):
    """Default (official) mode, no retain steps: inside every masked tensor, only the salient entries move."""
    model = copy.deepcopy(micro_model)
    before = _params(model)
    method = mmunlearner.MMUnlearner(mmunlearner.MMUnlearnerConfig(steps=3, retain_weight=0.0, learning_rate=1e-2,
                                                                   mask_modules=BOTH))
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
    config = mmunlearner.MMUnlearnerConfig(steps=3, retain_weight=0.0, learning_rate=1e-2, unmasked_weights="frozen",
                                           mask_modules=BOTH)
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
