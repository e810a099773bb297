"""MiniCanvas as a testbed: a miniature of UnlearnCanvas that needs no download and trains on CPU in a few minutes.

UnlearnCanvas (Zhang et al., 2024) fine-tunes Stable Diffusion on 60 painting styles x 20 objects and judges
generations with a ViT that has a style head and an object head. MiniCanvas keeps that structure at toy size:

- objects: the 10 digits of `sklearn.datasets.load_digits` at their native 8x8; styles: 4 deterministic renderings;
- prompts: "a digit three in inverted style" from a 22-word vocabulary (word-level `PreTrainedTokenizerFast`);
- model: a tiny `CLIPTextModel` + `UNet2DConditionModel` trained from scratch with DDPM (text encoder jointly),
  sampled with DDIM (trailing spacing, eta 1, 10 steps, CFG 2): with the default DDIM setup (leading spacing,
  eta 0) or many steps this tiny epsilon-model collapses styles;
- judge: a small CNN with a digit head and a style head, trained on the real train split;
- metrics: UA / IRA / CRA as in UnlearnCanvas and a Fréchet distance on judge features (metrics.py).

A run erases one concept; the base model and the edited model are sampled on the same prompts with the same noise.
Trained weights are cached as safetensors under `$MMU_ATLAS_CACHE/minicanvas/<config hash>/` (default cache root
`~/.cache/mmu-atlas`), so a machine trains once. With `model` (a Stable Diffusion 1.x folder or hub id) the same
cards run on real components with their official defaults; the judge does not apply there, so such a run gives
samples only.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ...core.cache import cache_root, cached, config_hash, sha256_file
from ...core.seeding import make_generator, resolve_device, seed_everything
from ...t2i.diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, SamplingSettings
from .. import Evaluation, ForgetRequest, Testbed, UsageError
from .config import MiniCanvasConfig, config_for
from .data import images_for_prompts, load_data
from .metrics import evaluation_prompts, score
from .model import (SD_RETAIN_PROMPTS, Judge, ModelLoadError, build_models, build_schedulers, decode_latents,
                    load_stable_diffusion, text_encoder_config, unet_config, NOISE_SCHEDULER_CONFIG)
from .prompts import DIGITS, STYLES, VOCAB, build_erase_request, build_tokenizer, concept_axis, default_anchor
from .training import train_base_model, train_judge

CACHE_MARKER = "config.json"  # the file a finished cache build writes last
DEFAULT_CONCEPT = "three"
EVAL_SEED_OFFSET = 10_000  # evaluation noise is drawn from seed + 10000, apart from the card's own randomness
GRID_SAMPLES = 4  # samples per row of the before / after figure
GRID_RETAIN_ROWS = 4


class MiniCanvasTestbed(Testbed):
    """Base components, judge, data and metric code of the testbed (or real Stable Diffusion components)."""

    def __init__(self, config: MiniCanvasConfig, components: DiffusionComponents, judge: Optional[Judge],
                 data: Optional[dict], model_info: dict, judge_info: dict, source: str = "tiny"):
        self.config = config
        self.components = components
        self.judge = judge
        self.data = data
        self.model_info = model_info
        self.judge_info = judge_info
        self.source = source
        self._real_features = None
        self._pre_attack = {}  # (id(edited), request, noise seed) -> (edited, pre-attack ASR), see _pre_attack_rate

    # -- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def check_arguments(cls, scale, forget, anchor, model) -> None:
        super().check_arguments(scale, forget, anchor, model)
        if model is not None:
            if forget is None or not forget.strip():
                raise UsageError("--forget must name the concept to erase from Stable Diffusion (free text, e.g. "
                                 "\"Van Gogh\")")
            looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None
            if not Path(model).is_dir() and (not looks_like_hub_id or Path(model).is_absolute()):
                raise UsageError(f"--model {model!r} is neither a local directory nor a hub id (owner/name)")
            return
        try:
            concept = forget or DEFAULT_CONCEPT
            concept_axis(concept)
            if anchor is not None and (concept_axis(anchor) != concept_axis(concept) or anchor == concept):
                raise ValueError(f"--anchor {anchor!r} must be another concept of the same axis as {concept!r}")
        except ValueError as error:
            raise UsageError(str(error)) from None

    @classmethod
    def load(cls, scale: str = "ci", device="cpu", model: Optional[str] = None, log: Callable[[str], None] = print,
             **overrides) -> "MiniCanvasTestbed":
        """The testbed at a scale ('ci' or 'full'), trained on first use; or Stable Diffusion when `model` is set."""
        cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
        device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if model is not None:
            try:
                components = load_stable_diffusion(model, device)
            except ModelLoadError as error:
                raise UsageError(str(error)) from None
            return cls(cfg, components, None, None, {}, {}, source=model)
        from safetensors.torch import load_file

        torch.set_num_threads(cfg.num_threads)
        data = load_data(cfg.split_seed)
        root = cache_root() / "minicanvas"
        model_dir = cached(root / config_hash(cfg.model_key()), _save_base_model(cfg, data, log), CACHE_MARKER, log)
        judge_dir = cached(root / ("judge-" + config_hash(cfg.judge_key())), _save_judge(cfg, data, log), CACHE_MARKER,
                           log)

        model_info = json.loads((model_dir / "config.json").read_text())
        text_encoder, unet = build_models(model_info["text_encoder_config"], model_info["unet_config"])
        unet.load_state_dict(load_file(str(model_dir / "unet.safetensors")))
        text_encoder.load_state_dict(load_file(str(model_dir / "text_encoder.safetensors")))
        unet.to(device).eval().requires_grad_(False)
        text_encoder.to(device).eval().requires_grad_(False)
        _, ddim = build_schedulers()

        judge = Judge()
        judge.load_state_dict(load_file(str(judge_dir / "judge.safetensors")))
        judge.eval().requires_grad_(False)
        judge_info = json.loads((judge_dir / "config.json").read_text())
        judge_info["sha256"] = sha256_file(judge_dir / "judge.safetensors")

        components = DiffusionComponents(
            unet=unet,
            text_encoder=text_encoder,
            tokenizer=build_tokenizer(),
            scheduler=ddim,
            sample_shape=(1, 8, 8),
            sampling=SamplingSettings(cfg.sample_steps, cfg.guidance_scale, cfg.eta),
            device=device,
        )
        return cls(cfg, components, judge, data, model_info, judge_info)

    @property
    def uses_own_model(self) -> bool:
        return self.source == "tiny"

    @property
    def device(self):
        return self.components.device

    @property
    def config_record(self) -> dict:
        return dataclasses.asdict(self.config) if self.uses_own_model else {"model": _model_name(self.source)}

    # -- requests ----------------------------------------------------------------------------------------------
    def requests(self, seed: int, forget: Optional[str] = None, anchor: Optional[str] = None) -> list:
        if not self.uses_own_model:
            # Stable Diffusion: "" as ESD's neutral prompt (paper), UCE / CA anchor "" unless given, SLD the text
            request = EraseRequest([forget], [""], [anchor or ""], list(SD_RETAIN_PROMPTS), forget)
            return [ForgetRequest(forget, request, {"forget": forget, "anchor": anchor or ""})]
        concept = forget or DEFAULT_CONCEPT
        anchor = anchor or default_anchor(concept)
        request = build_erase_request(concept, anchor)
        # real training images of every prompt of the request (retain prompts: none of the concept), for the cards
        # that train on images; cards that need none ignore them
        prompts = request.forget_prompts + request.anchor_prompts + request.preserve_prompts
        request.images = images_for_prompts(self.data["train"], prompts, concept)
        return [ForgetRequest(concept, request, {"forget": concept, "anchor": anchor, "axis": concept_axis(concept)})]

    # -- the protocol ------------------------------------------------------------------------------------------
    def unlearn(self, card, config, request: ForgetRequest, seed: int) -> EditedDiffusion:
        """A T2I card: `erase(components, request, config, seed)` returns an EditedDiffusion."""
        return card.load_entry()(self.components, request.payload, config, seed=seed)

    def base_model(self) -> EditedDiffusion:
        return EditedDiffusion(self.components)

    def references(self, request: ForgetRequest, seed: int) -> dict:
        return {"base": self.evaluate(self.base_model(), request, seed)}

    def evaluate(self, edited: EditedDiffusion, request: ForgetRequest, seed: int, references=None) -> Evaluation:
        generator = make_generator(EVAL_SEED_OFFSET + seed)
        if not self.uses_own_model:  # Stable Diffusion: samples of the concept and two retain prompts, no judge
            prompts = [request.payload.concept_prompt] + list(SD_RETAIN_PROMPTS)
            grid = [p for p in prompts for _ in range(2)]
            images = decode_latents(self.components, edited.sample(grid, generator))
            return Evaluation({}, {"prompts": prompts}, {"images": images, "rows": prompts})
        prompts, digit_labels, style_labels = evaluation_prompts(self.config.samples_per_prompt)
        start = time.perf_counter()
        images = edited.sample(prompts, generator).float().cpu().clamp(-1, 1)
        sampling_time = time.perf_counter() - start
        metrics, details = score(self.judge, images, digit_labels, style_labels, request.describe["forget"],
                                 self.real_features())
        details.update(sampling_time_s=sampling_time, n_samples=len(prompts))
        return Evaluation(metrics, details, {"images": images, "prompts": prompts})

    # -- attacks -----------------------------------------------------------------------------------------------
    def score_attack(self, result, edited: EditedDiffusion, request: ForgetRequest, seed: int) -> list:
        """Pre- and post-attack ASR as UnlearnDiffAtk reports them, on `attack_seeds` sampling seeds: one
        (post-attack Evaluation, {"pre_attack": Evaluation}) pair per seed. Pre-attack samples come from the
        concept's forget prompts, post-attack ones from the attack's prompts (or embeddings), both cycled to
        `attack_samples` and drawn with the same noise; a sample succeeds when the judge reads the erased concept."""
        if not self.uses_own_model:
            raise UsageError("attacks are scored by the MiniCanvas judge: run the matrix on the testbed's own model")
        n, concept = self.config.attack_samples, request.describe["forget"]
        scored = []
        for k in range(self.config.attack_seeds):
            noise_seed = EVAL_SEED_OFFSET + seed + k
            pre = self._pre_attack_rate(edited, request, noise_seed)
            if result.prompts is not None:
                images = edited.sample(_cycled(result.prompts, n), make_generator(noise_seed))
            else:
                rows = torch.arange(n) % len(result.embeddings)
                images = edited.sample_embeddings(result.embeddings[rows].to(self.device), make_generator(noise_seed))
            post = self.concept_rate(images, concept)
            scored.append((Evaluation({"ASR": post, "queries": result.queries}),
                           {"pre_attack": Evaluation({"ASR": pre})}))
        return scored

    def _pre_attack_rate(self, edited: EditedDiffusion, request: ForgetRequest, noise_seed: int) -> float:
        """The pre-attack ASR of a target, computed once per process (every attack on it shares it)."""
        memo = self._pre_attack
        key = (id(edited), request.label, noise_seed)
        if key not in memo or memo[key][0] is not edited:
            prompts = _cycled(request.payload.forget_prompts, self.config.attack_samples)
            images = edited.sample(prompts, make_generator(noise_seed))
            memo[key] = (edited, self.concept_rate(images, request.describe["forget"]))
        return memo[key][1]

    def concept_rate(self, images: torch.Tensor, concept: str) -> float:
        """Share of `images` the judge reads as `concept` (its digit head for a digit, its style head for a style)."""
        digits, styles, _ = self.judge.predict(images.float().cpu().clamp(-1, 1))
        if concept_axis(concept) == "object":
            return float((digits == DIGITS.index(concept)).float().mean())
        return float((styles == STYLES.index(concept)).float().mean())

    def real_features(self) -> torch.Tensor:
        if self._real_features is None:
            self._real_features = self.judge.predict(self.data["test"].images)[2]
        return self._real_features

    def details_record(self, runs: list) -> dict:
        run = runs[0]
        if not self.uses_own_model:
            return {"card": run.edited.info, "prompts": run.evaluation.details["prompts"]}
        return {
            "after": run.evaluation.details,
            "base": run.references["base"].details,
            "card": run.edited.info,
            "base_model": {"train_time_s": self.model_info.get("train_time_s"),
                           "final_loss": self.model_info.get("final_loss")},
            "judge": {"object_accuracy": self.judge_info["object_accuracy"],
                      "style_accuracy": self.judge_info["style_accuracy"], "sha256": self.judge_info["sha256"]},
        }

    @classmethod
    def details_markdown(cls, record: dict) -> str:
        details = record["details"]
        if "after" not in details:
            return "A real model: samples only (the MiniCanvas judge does not apply)."
        after, base = details["after"], details["base"]
        lines = ["| concept | base model | after |", "|---|---|---|"]
        for axis in ("per_digit_accuracy", "per_style_accuracy"):
            for concept, value in after[axis].items():
                lines.append(f"| {concept} | {base[axis][concept]:.3f} | {value:.3f} |")
        judge = details["judge"]
        return ("Judge accuracy per concept (the prompted digit for digits, the prompted style for styles):\n\n"
                + "\n".join(lines) + f"\n\nJudge held-out accuracy: object {judge['object_accuracy']:.3f}, style "
                f"{judge['style_accuracy']:.3f} (sha256 `{judge['sha256'][:16]}...`).")

    # -- the figure --------------------------------------------------------------------------------------------
    def grid(self, runs: list) -> tuple:
        """(row labels, images before, images after): 4 samples for each forget prompt and a few retained ones."""
        run = runs[0]
        before, after = run.references["base"].private["images"], run.evaluation.private["images"]
        if not self.uses_own_model:
            rows = run.evaluation.private["rows"]
            return rows, before, after
        n = self.config.samples_per_prompt
        prompts = run.evaluation.private["prompts"][::n]
        forget = request_word(run.request)
        forget_rows = [i for i, p in enumerate(prompts) if f" {forget} " in f" {p} "]
        retain_rows = [i for i in range(len(prompts)) if i not in forget_rows]
        retain_rows = retain_rows[:: len(retain_rows) // GRID_RETAIN_ROWS][:GRID_RETAIN_ROWS]
        rows = forget_rows + retain_rows
        pick = lambda images: torch.cat([images[r * n : r * n + GRID_SAMPLES] for r in rows])  # noqa: E731
        return [prompts[r] for r in rows], pick(before), pick(after)

    def figure(self, record: dict, runs: list, path: Path) -> Path:
        import matplotlib.pyplot as plt

        labels, before, after = self.grid(runs)
        title = f"{record['card']}: forget {request_word(runs[0].request)!r}"
        fig = plot_sample_grid(labels, before, after, title)
        fig.savefig(path, dpi=120, metadata={"Software": None})
        plt.close(fig)
        return path

    def model_tensors(self) -> dict:
        return {f"{name}.{key}": value for name, module in self.components.trainable_modules().items()
                for key, value in module.state_dict().items()}

    # -- the edited-weights cache ------------------------------------------------------------------------------
    def edited_tensors(self, edited: EditedDiffusion) -> dict:
        return {f"{name}.{key}": tensor.detach().cpu().contiguous()
                for name, module in edited.changed_modules(self.components).items()
                for key, tensor in module.state_dict().items()}

    def restore_edited(self, tensors: dict, info: dict, request: ForgetRequest) -> EditedDiffusion:
        from ...core.models import frozen_copy

        modules = {}
        for name, module in self.components.trainable_modules().items():
            prefix = name + "."
            state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            if state:
                module = frozen_copy(module)
                module.load_state_dict(state)
            modules[name] = module
        return EditedDiffusion(dataclasses.replace(self.components, **modules), info)


def _cycled(prompts: list, n: int) -> list:
    """`n` prompts taking `prompts` in turn."""
    return [prompts[i % len(prompts)] for i in range(n)]


def request_word(request: ForgetRequest) -> str:
    return request.describe["forget"]


def _model_name(source: str) -> str:
    """A checkpoint's name for the results file: a hub id as it is, a local folder by its last component."""
    return source if not Path(source).is_absolute() else Path(source).name


def plot_sample_grid(labels: list, before: torch.Tensor, after: torch.Tensor, title: str = ""):
    """Before | after figure: one row per prompt, the same noise on both sides."""
    import matplotlib.pyplot as plt

    rows = len(labels)
    per_row = len(before) // rows
    fig, axes = plt.subplots(rows, 2, figsize=(2 * max(2.0, 0.9 * per_row), 0.9 * rows + 0.8), squeeze=False)
    for column, (name, images) in enumerate((("before", before), ("after", after))):
        for row in range(rows):
            chunk = images[row * per_row : (row + 1) * per_row]
            strip = torch.cat([img.permute(1, 2, 0) for img in chunk], dim=1)  # H x (per_row W) x C
            strip = ((strip + 1) / 2).clamp(0, 1).numpy()
            ax = axes[row, column]
            ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(labels[row].replace("a digit ", ""), rotation=0, ha="right", va="center", fontsize=8)
            if row == 0:
                ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------
# The cache: train once per machine, then load
# ----------------------------------------------------------------------------------------------------------
def _save_base_model(cfg: MiniCanvasConfig, data: dict, log) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        log(f"[minicanvas] training the base model ({cfg.scale} scale); this happens once per machine")
        trained = train_base_model(cfg, data, log)
        save_file({k: v.contiguous() for k, v in trained["unet"].items()}, str(directory / "unet.safetensors"))
        save_file(
            {k: v.contiguous() for k, v in trained["text_encoder"].items()}, str(directory / "text_encoder.safetensors")
        )
        meta = {
            "testbed_config": dataclasses.asdict(cfg),
            "unet_config": unet_config(cfg),
            "text_encoder_config": text_encoder_config(cfg),
            "vocab": list(VOCAB),
            "noise_scheduler_config": NOISE_SCHEDULER_CONFIG,
            "train_time_s": trained["train_time_s"],
            "final_loss": trained["final_loss"],
        }
        (directory / "config.json").write_text(json.dumps(meta, indent=2, default=list))

    return build


def _save_judge(cfg: MiniCanvasConfig, data: dict, log) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        trained = train_judge(cfg, data, log)
        save_file({k: v.contiguous() for k, v in trained.pop("state").items()}, str(directory / "judge.safetensors"))
        (directory / "config.json").write_text(json.dumps({"judge_config": cfg.judge_key(), **trained}, indent=2))

    return build


def load_minicanvas(scale: str = "ci", device="cpu", log: Callable[[str], None] = print,
                    **overrides) -> MiniCanvasTestbed:
    """`MiniCanvasTestbed.load` for the testbed's own model (kept as a function for tests and benchmarks)."""
    return MiniCanvasTestbed.load(scale, device, None, log, **overrides)
