"""MiniProfiles' configuration: everything that determines the testbed, with a preset per scale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MiniProfilesConfig:
    """Everything that determines the testbed; hashes of its parts key the caches."""

    scale: str = "ci"
    seed: int = 0  # data and vanilla-model seed (run seeds pick forget splits, they do not retrain the testbed)
    num_threads: int = 1  # fixed: CPU results are bit-reproducible only at a fixed count, and 1 thread is the
    # fastest on a shared 2-core box (2 threads were 2-10x slower when another job was running)
    # data: 40 fictitious people, 6 views, 80/60 utility faces (measured with a throwaway prototype)
    n_people: int = 40
    n_celebrities: int = 20  # 20 rather than 10 lift paraphrase transfer (MC) from ~0.4 to ~0.8 (measured)
    n_world_facts: int = 20
    n_utility_train: int = 80
    n_utility_test: int = 60
    n_views: int = 6  # view 0 clean, views 1..n-2 training augmentations, view n-1 held out
    image_size: int = 32
    # evaluation
    mc_options: int = 8  # MLLMU-Bench asks 4 lettered options; 8 likelihood-scored options put chance at 0.125
    max_new_tokens: int = 4  # answers are at most 2 words here
    eval_batch_size: int = 256
    forget_fraction: float = 0.1  # MLLMU-Bench forget 5/10/15%
    n_splits: int = 3  # random forget splits per run (mean +- std)
    # tiny model: CLIP 2x64, projector to 128, Llama 2x128
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate_size: int = 128
    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 256
    # training: AdamW 2e-3, batch 32, warmup + cosine, stop at EM >= 0.99 (measured). Two stages,
    # as in MLLMU-Bench: a base model learns the real-world stand-in (celebrities, world facts, colours), then the
    # vanilla model (and each oracle) is the base fine-tuned on the fictitious (retain) profiles, with a replay
    # of base data so that the small model keeps its real-world knowledge.
    base_epochs: int = 80  # upper bounds: early stopping ends training once the set is memorised
    epochs: int = 80
    replay_fraction: float = 0.25  # share of the base data mixed into each fine-tuning epoch
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_fraction: float = 0.05
    check_every: int = 5  # epochs between memorisation checks
    stop_at_em: float = 0.99
    # training a real LLaVA checkpoint instead, both stages (MLLMU-Bench vanilla model: lr 2e-5, 5 epochs; batch 4)
    pretrained_epochs: int = 5
    pretrained_batch_size: int = 4
    pretrained_learning_rate: float = 2e-5
    pretrained_max_new_tokens: int = 16

    def data_key(self) -> dict:
        keys = ("seed", "n_people", "n_celebrities", "n_world_facts", "n_utility_train", "n_utility_test",
                "n_views", "image_size", "mc_options")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def model_key(self) -> dict:
        """Fields that change the trained vanilla model (and the data it sees)."""
        skip = {"scale", "max_new_tokens", "eval_batch_size", "forget_fraction", "n_splits", "mc_options"}
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and not k.startswith("pretrained")}
        return {"testbed": "miniprofiles-v4", **fields}

    def eval_key(self) -> dict:
        return {"mc_options": self.mc_options, "max_new_tokens": self.max_new_tokens, "data": self.data_key()}


SCALES = {
    # ci: the sizes above
    "ci": MiniProfilesConfig(),
    # full: 2.5x the people, a wider vision tower and language model, longer training, 5 splits
    "full": MiniProfilesConfig(
        scale="full", n_people=100, n_celebrities=40, n_utility_train=160, n_utility_test=100, n_splits=5,
        vision_hidden_size=96, vision_layers=3, vision_intermediate_size=192, text_hidden_size=192,
        text_layers=3, text_intermediate_size=384, base_epochs=120, epochs=120,
    ),
}


def config_for(scale: str) -> MiniProfilesConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]
