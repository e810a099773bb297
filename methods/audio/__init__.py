"""Audio (speech) unlearning cards, one readable file each (fine-tuning, NegGrad+, SCRUB, Bad Teaching,
prune-and-regrow), and what they share: the edited-model interface (`edited.py`) and the unlearning task with its
batching and loss primitives (`task.py`).

A card's entry point is `unlearn(model, task, config, callback) -> info`: it edits an audio classifier (any
transformers `*ForAudioClassification` / `*ForSequenceClassification` model) in place on a task's forget / retain
utterances (see methods/testbeds/minivoices/testbed.py).
"""
