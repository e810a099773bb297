"""MiniVoices' metrics, as UnSLU-Bench (koudounasalkis/UnSLU-BENCH@cf1ad18, unlearning_evaluation.py) computes them:

- accuracy on the forget speakers' training utterances, on the retain speakers' and on the unseen speakers' (test);
- the membership-inference score `simple_mia`: per-utterance cross-entropy losses of the forget utterances
  (members, 1) and of the unseen speakers' utterances (non-members, 0), the larger set subsampled to the smaller
  with a seed-42 shuffle, and a logistic regression on the loss alone scored by 10 stratified shuffle splits
  (test size 0.1, random_state 0; at least 2 test samples on tiny sets); the score is its mean accuracy. 0.5 means the forget speakers look no more
  "seen" than new voices; the oracle, which never heard them, sits near it;
- the distance to the retrain oracle on the forget side: |forget accuracy - oracle's| and |MIA - oracle's| per
  forget request.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def predict(model, name: str, features: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits (on CPU) of every row of `features`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.cat([model(**{name: features[i:i + batch_size].to(device)}).logits.float().cpu()
                     for i in range(0, len(features), batch_size)])
    model.train(was_training)
    return out


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else float("nan")


def losses(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-utterance cross-entropy (UnSLU-Bench's compute_losses_binary)."""
    return F.cross_entropy(logits, labels, reduction="none").numpy().astype(np.float64)


def simple_mia(forget_losses: np.ndarray, unseen_losses: np.ndarray, folds: int = 10, seed: int = 42) -> float:
    """UnSLU-Bench's cal_mia + simple_mia: balance the two sets by subsampling the larger one, shuffle, and score a
    logistic regression on the loss by `folds` stratified shuffle splits; the mean accuracy."""
    from sklearn import linear_model, model_selection

    rng = np.random.RandomState(seed)  # UnSLU-Bench: set_seed(42), then np.random.shuffle
    forget_losses, unseen_losses = np.array(forget_losses, dtype=np.float64), np.array(unseen_losses, dtype=np.float64)
    if len(forget_losses) > len(unseen_losses):
        rng.shuffle(forget_losses)
        forget_losses = forget_losses[: len(unseen_losses)]
    elif len(forget_losses) < len(unseen_losses):
        rng.shuffle(unseen_losses)
        unseen_losses = unseen_losses[: len(forget_losses)]
    samples = np.concatenate((unseen_losses, forget_losses)).reshape((-1, 1))
    members = np.array([0] * len(unseen_losses) + [1] * len(forget_losses))
    order = np.arange(len(samples))
    rng.shuffle(order)
    samples, members = samples[order], members[order]
    if len(samples) < 4:
        return float("nan")
    # UnSLU-Bench's splitter holds out 10%; tiny sets (a folder of a few recordings) keep at least 2 test samples
    splitter = model_selection.StratifiedShuffleSplit(n_splits=folds, test_size=max(0.1, 2 / len(samples)),
                                                      random_state=0)
    scores = model_selection.cross_val_score(linear_model.LogisticRegression(), samples, members, cv=splitter,
                                             scoring="accuracy")
    return float(scores.mean())


def per_speaker_accuracy(logits: torch.Tensor, labels: torch.Tensor, speakers: list) -> dict:
    """speaker id -> accuracy over that speaker's rows (`speakers[i]` is row i's speaker)."""
    correct = (logits.argmax(-1) == labels).numpy()
    out = {}
    for speaker in sorted(set(speakers)):
        mask = np.array([s == speaker for s in speakers])
        out[speaker] = float(correct[mask].mean())
    return out
