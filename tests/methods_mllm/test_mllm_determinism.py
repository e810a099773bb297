"""Same seed -> same data, splits and unlearned weights; different seeds differ."""

import copy

import numpy as np
import torch

from methods.registry import load_registry
from methods.testbeds import miniprofiles as mp

FAST = {"steps": 3, "forget_batch_size": 8, "retain_batch_size": 8}


def test_data_is_deterministic(micro_config):
    a, b = mp.build_data(micro_config), mp.build_data(micro_config)
    assert a.base_items == b.base_items and a.profile_train_items == b.profile_train_items
    assert a.eval_items == b.eval_items
    assert np.array_equal(a.images, b.images)
    c = mp.build_data(micro_config.__class__(**{**micro_config.__dict__, "seed": 1}))
    assert c.people != a.people


def test_forget_splits_depend_on_the_seed_only(micro_bundle):
    _, data, _ = micro_bundle
    assert mp.forget_splits(data, 5) == mp.forget_splits(data, 5)
    assert mp.forget_splits(data, 5) != mp.forget_splits(data, 6)
    for split in mp.forget_splits(data, 5):
        assert len(split) == 2 and set(split) <= set(data.fictitious_ids)


def test_different_task_seed_different_weights(micro_model, micro_task):
    card = load_registry().card("graddiff")
    config = card.build_config("miniprofiles", **FAST)
    weights = []
    for seed in (0, 1):
        model = copy.deepcopy(micro_model)
        task = copy.copy(micro_task)
        task.seed = seed
        card.load_entry()(model, task, config)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert not torch.equal(weights[0], weights[1])
