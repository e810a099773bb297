"""Small helpers on torch modules that every modality uses."""

from __future__ import annotations

import copy


def frozen_copy(module):
    """A deep copy with gradients off in eval mode: a frozen reference model, or the copy a card edits."""
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    clone.eval()
    return clone


def state_fingerprint(module) -> dict:
    """Parameter name -> detached clone; used to check which weights a card changed."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}
