"""Multimodal-LLM unlearning cards, one readable file each (GA, GradDiff, KL, NPO, MMUnlearner, PO, SCRUB, RMU,
SafeEraser, MANU), and what they share: the log-probability primitives (`logprobs.py`), the losses built from them
(`losses.py`, `divergence.py`), warm-up schedules (`schedules.py`), where a model's blocks are (`layers.py`) and the
edited-model interface (`edited.py`).

A card's entry point is `unlearn(model, task, config, callback) -> info`: it edits a LlavaForConditionalGeneration
in place on a task's forget / retain questions (see methods/testbeds/miniprofiles/testbed.py: UnlearningTask).
"""
