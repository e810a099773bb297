"""MiniCanvas' configuration: everything that determines the trained testbed (its hash keys the cache), with a
preset per scale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MiniCanvasConfig:
    """Everything that determines the trained testbed; its hash keys the cache."""

    scale: str = "ci"
    seed: int = 0  # base-model and judge training seed (run seeds do not retrain the testbed)
    split_seed: int = 0
    num_threads: int = 1  # fixed torch thread count: results are only bit-reproducible at a fixed count
    # text encoder: hidden 64, 2 layers, 4 heads, ffn 128
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 128
    # UNet: channels (16, 32), cross-attention only at 4x4; diffusers' attention_head_dim is the head *count*
    block_out_channels: tuple = (16, 32)
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    # DDPM training
    train_steps: int = 1500  # 1000 before the aliases (measured with aliases: 1000 steps at p_alias 0.3 gave IRA 0.67)
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    p_drop_all: float = 0.1  # "" -> unconditional branch for CFG
    p_drop_object: float = 0.1  # "a digit in S style"
    p_drop_style: float = 0.1  # "a digit three"
    p_alias: float = 0.15  # each concept word of a caption is replaced by one of its aliases (prompts.ALIASES);
    # measured: 0.15 x 1500 steps gives base IRA 0.988 and every alias of three/seven drawn as its digit 0.93-1.0
    p_filler: float = 0.1  # a filler word in front of a caption (prompts.FILLERS)
    # sampler (see module docstring for why these values)
    sample_steps: int = 10
    guidance_scale: float = 2.0
    eta: float = 1.0
    # judge
    judge_epochs: int = 15
    judge_noise_std: float = 0.1
    # evaluation
    samples_per_prompt: int = 20
    # attacks: pre- and post-attack ASR over this many sampling seeds, this many samples per seed each
    attack_seeds: int = 3
    attack_samples: int = 40

    def model_key(self) -> dict:
        """Fields that change the trained diffusion model (and the data it sees)."""
        skip = {"scale", "judge_epochs", "judge_noise_std", "samples_per_prompt", "sample_steps", "guidance_scale", "eta",
                "attack_seeds", "attack_samples"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def judge_key(self) -> dict:
        keys = ("seed", "split_seed", "num_threads", "judge_epochs", "judge_noise_std")
        return {k: getattr(self, k) for k in keys}


SCALES = {
    # ci: ~2-5 min training on CPU, 20 samples per prompt = 800 per evaluation
    "ci": MiniCanvasConfig(),
    # full: 4x the UNet (reference-quality run in the note), longer training, 50 samples per prompt
    "full": MiniCanvasConfig(
        scale="full", block_out_channels=(32, 64), train_steps=1500, samples_per_prompt=50
    ),
}


def config_for(scale: str) -> MiniCanvasConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]
