"""MiniCLIP as a testbed: a tiny CLIP that needs no download and trains on CPU in about a minute per model.

The catalog's CLIP unlearning papers evaluate on ImageNet-style zero-shot classification (forget one class, keep the
rest), on image-caption associations (CLIPErase), and on backdoor removal (CleanCLIP). MiniCLIP keeps that structure
at toy size:

- data: the MiniCanvas images (`load_digits` at 8x8, four styles) with their captions ("a digit three in inverted
  style", 40 captions) and the attribute-dropout texts "a digit three" / "a digit in inverted style", which are the
  zero-shot class prompts of the digit and style axes;
- model: a `transformers.CLIPModel` built from configs (ViT patches of 2x2 pixels on the single-channel images, the
  MiniCanvas word-level tokenizer with CLIP's end-of-text convention), trained from scratch with a multi-positive
  InfoNCE (training.py);
- requests (`--forget`): a digit or a style (class forgetting), one caption as `three/inverted` (pair forgetting, the
  association of a caption with its images as CLIPErase defines it), or `backdoor` (a model trained on pairs poisoned
  with a 2x2 trigger patch and the target caption "a digit zero ...", to be cleaned as CleanCLIP does);
- references: the model the card starts from (the base model; the poisoned model for the backdoor) and an oracle
  retrained with the same recipe without the forget pairs (for the backdoor: the model trained on clean data);
- metrics (metrics.py): zero-shot forget / retain accuracy on held-out images on the request's axis, the other
  axis' accuracy, the gap to the oracle; clean accuracy and attack success rate for the backdoor.

Models are cached as safetensors under `$MMU_ATLAS_CACHE/miniclip/<config hash>/` (oracles and the poisoned model
beside the base model), so a machine trains each once. With `model` (a CLIP checkpoint folder or hub id, e.g.
openai/clip-vit-base-patch32) the same cards run on the real model with ImageNet-style class prompts (images go
through its image processor); no oracle can be retrained there, and the backdoor task needs the testbed's own
poisoned model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Callable, Optional

import torch

from ...clip.edited import CLIPTask, EditedCLIP
from ...core.cache import cache_root, cached, config_hash
from ...core.seeding import resolve_device
from .. import Evaluation, ForgetRequest, Testbed, UsageError
from ..minicanvas.prompts import DIGITS
from .config import MiniCLIPConfig, config_for
from .data import BACKDOOR, CAPTIONS, PairSet, Request, load_pairs, parse_request, poison
from .metrics import GAP, METRICS, evaluate_model, oracle_gap
from .model import (AXES, Encoder, ModelLoadError, build_model, build_tokenizer, check_model_argument, class_names,
                    clip_config, load_real_clip, max_text_length, real_templates, sha256_of, tiny_templates,
                    zero_shot_head)
from .training import train_clip

CACHE_MARKER = "config.json"  # the file a finished cache build writes last
DEFAULT_FORGET = "three"


class MiniCLIPTestbed(Testbed):
    """The base (and, on demand, poisoned and oracle) models, the data and the metric code of the testbed."""

    def __init__(self, cfg: MiniCLIPConfig, model, encoder: Encoder, pairs: dict, model_dir: Optional[Path],
                 source: str, log: Callable[[str], None]):
        self.config = cfg
        self.model = model.eval().requires_grad_(False)
        self.encoder = encoder
        self.pairs = pairs
        self.model_dir = model_dir
        self.source = source
        self.log = log
        self.model_info = json.loads((model_dir / CACHE_MARKER).read_text()) if model_dir is not None else {}
        self._poisoned = None
        self._heads = {}

    # -- arguments and loading ---------------------------------------------------------------------------------
    @classmethod
    def check_arguments(cls, scale, forget, anchor, model) -> None:
        super().check_arguments(scale, forget, anchor, model)
        if anchor is not None:
            raise UsageError("--anchor does not apply to MiniCLIP: its cards need no anchor concept")
        try:
            request = parse_request(forget or DEFAULT_FORGET)
            if model is not None:
                check_model_argument(model)
        except (ValueError, ModelLoadError) as error:
            raise UsageError(str(error)) from None
        if model is not None and request.kind == BACKDOOR:
            raise UsageError("--forget backdoor needs the testbed's own poisoned model; drop --model or forget a "
                             "digit, a style or a caption")

    @classmethod
    def load(cls, scale: str = "ci", device="cpu", model: Optional[str] = None, log: Callable[[str], None] = print,
             **overrides) -> "MiniCLIPTestbed":
        """The testbed at a scale ('ci' or 'full'), trained on first use; or a real CLIP when `model` is set."""
        cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
        device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        torch.set_num_threads(cfg.num_threads)
        pairs = load_pairs(cfg.split_seed)
        if model is not None:
            try:
                clip, tokenizer, image_processor = load_real_clip(model, device)
            except ModelLoadError as error:
                raise UsageError(str(error)) from None
            encoder = Encoder(tokenizer, device, image_processor, max_text_length(tokenizer))
            return cls(cfg, clip, encoder, pairs, None, str(model), log)
        root = cache_root() / "miniclip"
        model_dir = root / config_hash(cfg.model_key())
        if not (model_dir / CACHE_MARKER).exists():
            log(f"[miniclip] training the base model ({cfg.scale} scale); this happens once per machine")
        model_dir = cached(model_dir, _trainer(cfg, pairs["train"], log, "base", {}), CACHE_MARKER)
        return cls(cfg, _load_tiny(cfg, model_dir, device), Encoder(build_tokenizer(), device), pairs, model_dir,
                   "tiny", log)

    @property
    def uses_own_model(self) -> bool:
        return self.source == "tiny"

    @property
    def device(self):
        return self.encoder.device

    @property
    def config_record(self) -> dict:
        if self.uses_own_model:
            return dataclasses.asdict(self.config)
        return {"model": self.source if not Path(self.source).is_absolute() else Path(self.source).name}

    # -- the models: base, poisoned, oracles ---------------------------------------------------------------------
    def poisoned(self):
        """The backdoored model (trained once on the poisoned pairs) and its cache folder."""
        if self._poisoned is None:
            directory = self.model_dir.parent / ("poisoned-" + config_hash(self.config.poison_key()))
            if not (directory / CACHE_MARKER).exists():
                self.log(f"[miniclip] training the poisoned model (trigger -> {self.config.backdoor_target!r})")
            directory = cached(directory, _trainer(self.config, self.poisoned_pairs(), self.log, "poisoned",
                                                   {"poison": self.config.poison_key()}), CACHE_MARKER)
            self._poisoned = (_load_tiny(self.config, directory, self.device), directory)
        return self._poisoned

    def poisoned_pairs(self) -> PairSet:
        cfg = self.config
        return poison(self.pairs["train"], cfg.backdoor_target, cfg.poison_fraction, cfg.patch_pixels, cfg.seed + 7)

    def start_model(self, request: Request):
        """The model a card edits for a request: the poisoned model for the backdoor, else the base model."""
        return self.poisoned()[0] if request.kind == BACKDOOR else self.model

    def oracle(self, request: Request):
        """The retrain oracle (same recipe without the forget pairs; for the backdoor the clean base model), cached;
        (model, folder), or (None, None) on a real checkpoint."""
        if not self.uses_own_model:
            return None, None
        if request.kind == BACKDOOR:
            return self.model, self.model_dir
        directory = self.model_dir.parent / (self.model_dir.name + "-oracle-" + request.label.replace("/", "-"))
        if not (directory / CACHE_MARKER).exists():
            self.log(f"[miniclip] training the oracle without {request.label!r}")
        train = self.pairs["train"]
        retain = train.subset(~request.forget_mask(train.digits, train.styles))
        directory = cached(directory, _trainer(self.config, retain, self.log, f"oracle ({request.label})",
                                               {"forget": request.label}), CACHE_MARKER)
        return _load_tiny(self.config, directory, self.device), directory

    # -- requests ------------------------------------------------------------------------------------------------
    def requests(self, seed: int, forget: Optional[str] = None, anchor: Optional[str] = None) -> list:
        request = parse_request(forget or DEFAULT_FORGET)
        return [ForgetRequest(request.label, request, {"forget": request.label, "kind": request.kind,
                                                        "axis": request.axis})]

    def heads(self, model) -> dict:
        templates = tiny_templates if self.uses_own_model else real_templates
        with torch.no_grad():
            return {axis: zero_shot_head(model, self.encoder, templates(axis)) for axis in AXES}

    def task(self, request: Request, seed: int) -> CLIPTask:
        """The request as a CLIP card sees it: forget / retain training pairs and the axis' class prompts."""
        if request.kind == BACKDOOR:
            train = self.poisoned_pairs()
            forget_mask = train.poisoned
        else:
            train = self.pairs["train"]
            forget_mask = request.forget_mask(train.digits, train.styles)
        forget, retain = train.subset(forget_mask), train.subset(~forget_mask)
        axis = request.axis
        label_of = {"digit": lambda p: p.captions // 4, "style": lambda p: p.captions % 4, "caption": lambda p: p.captions}
        captions = CAPTIONS if self.uses_own_model else tuple(prompts[0] for prompts in real_templates("caption"))
        if request.kind == "digit":
            forget_classes = (request.digit,)
        elif request.kind == "style":
            forget_classes = (request.style,)
        elif request.kind == "pair":
            forget_classes = (request.digit * 4 + request.style,)
        else:
            forget_classes = ()
        templates = (tiny_templates if self.uses_own_model else real_templates)(axis)
        return CLIPTask(kind=request.kind, forget=forget, retain=retain, forget_labels=label_of[axis](forget),
                        retain_labels=label_of[axis](retain), caption_texts=captions, classes=class_names(axis),
                        templates=templates, forget_classes=forget_classes, encoder=self.encoder, seed=seed,
                        extra={"backdoor_target": DIGITS.index(self.config.backdoor_target)})

    # -- the protocol ------------------------------------------------------------------------------------------
    def unlearn(self, card, config, request: ForgetRequest, seed: int) -> EditedCLIP:
        """A CLIP card edits a copy of the start model in place: `unlearn(model, task, config, seed)`."""
        import time

        model = copy.deepcopy(self.start_model(request.payload)).requires_grad_(True)
        task = self.task(request.payload, seed)
        start = time.perf_counter()
        info = card.load_entry()(model, task, config, seed=seed)
        info = {**info, "method_s": time.perf_counter() - start}
        return EditedCLIP(model.eval().requires_grad_(False), self.encoder, info)

    def base_model(self) -> EditedCLIP:
        return EditedCLIP(self.model, self.encoder, {})

    def _evaluate(self, model, request: Request) -> tuple:
        cfg = self.config
        return evaluate_model(model, self.encoder, self.heads(model), self.pairs["test"], request, cfg.eval_batch_size,
                              DIGITS.index(cfg.backdoor_target), cfg.patch_pixels)

    def references(self, request: ForgetRequest, seed: int) -> dict:
        out = {}
        metrics, details = self._evaluate(self.start_model(request.payload), request.payload)
        out["base"] = Evaluation(metrics, details)
        oracle, directory = self.oracle(request.payload)
        if oracle is not None:
            metrics, details = self._evaluate(oracle, request.payload)
            out["oracle"] = Evaluation({**metrics, GAP: 0.0},
                                       {**details, "sha256": sha256_of(directory / "model.safetensors")})
        if "base" in out and "oracle" in out:
            out["base"].metrics[GAP] = oracle_gap(out["base"].metrics, out["oracle"].metrics)
        return out

    def evaluate(self, edited: EditedCLIP, request: ForgetRequest, seed: int, references=None) -> Evaluation:
        metrics, details = self._evaluate(edited.model, request.payload)
        oracle = (references or {}).get("oracle")
        metrics[GAP] = oracle_gap(metrics, oracle.metrics) if oracle is not None else None
        return Evaluation(metrics, details)

    def details_record(self, runs: list) -> dict:
        run = runs[0]
        record = {"after": run.evaluation.details, "base": run.references["base"].details,
                  "card": {k: v for k, v in run.edited.info.items() if k != "method_s"}}
        if "oracle" in run.references:
            record["oracle"] = run.references["oracle"].details
        if self.uses_own_model:
            record["base_model"] = {"train_time_s": self.model_info.get("train_time_s"),
                                    "final_loss": self.model_info.get("final_loss"),
                                    "sha256": sha256_of(self.model_dir / "model.safetensors")}
        return record

    @classmethod
    def details_markdown(cls, record: dict) -> str:
        details = record["details"]
        rows = ["| axis | start model | after | oracle |", "|---|---|---|---|"]
        for axis in AXES:
            cells = [details[key]["accuracy"].get(axis) if key in details else None for key in ("base", "after", "oracle")]
            rows.append(f"| {axis} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
        return ("Zero-shot accuracy on every held-out image, per axis (digit 10-way, style 4-way, caption 40-way):\n\n"
                + "\n".join(rows))

    def figure(self, record: dict, runs: list, path: Path) -> Path:
        plot_confusions(record, runs[0], path)
        return path

    def model_tensors(self) -> dict:
        tensors = {f"base.{k}": v for k, v in self.model.state_dict().items()}
        if self.uses_own_model:
            tensors.update({f"poisoned.{k}": v for k, v in self.poisoned()[0].state_dict().items()})
        return tensors

    # -- the edited-weights cache ----------------------------------------------------------------------------------
    def edited_tensors(self, edited: EditedCLIP) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in edited.model.state_dict().items()}

    def restore_edited(self, tensors: dict, info: dict, request: ForgetRequest) -> EditedCLIP:
        model = copy.deepcopy(self.start_model(request.payload))
        model.load_state_dict(tensors)
        return EditedCLIP(model.eval().requires_grad_(False), self.encoder, info)


def plot_confusions(record: dict, run, path: Path) -> None:
    """Zero-shot confusion on the request's axis: the start model, the edited model and the oracle side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("start model", run.references["base"].details), (record["card"], run.evaluation.details)]
    if "oracle" in run.references:
        panels.append(("oracle", run.references["oracle"].details))
    axis = run.evaluation.details["confusion"]["axis"]
    names = class_names(axis)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 4.0), squeeze=False)
    for ax, (title, details) in zip(axes[0], panels):
        ax.imshow(details["confusion"]["matrix"], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        if len(names) <= 10:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true" + (" (triggered images)" if run.evaluation.details["confusion"]["triggered"] else ""),
                          fontsize=8)
    request = run.request.describe["forget"]
    fig.suptitle(f"MiniCLIP {record['scale']}: {record['card']}, forget {request!r} — zero-shot {axis} confusion",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _trainer(cfg: MiniCLIPConfig, pairs: PairSet, log, name: str, meta: dict) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        trained = train_clip(cfg, pairs, log, name)
        save_file({k: v.contiguous() for k, v in trained.pop("state").items()}, str(directory / "model.safetensors"))
        (directory / CACHE_MARKER).write_text(json.dumps(
            {"testbed_config": dataclasses.asdict(cfg), "clip_config": clip_config(cfg).to_dict(), "model": name,
             **meta, **trained}, indent=2, default=str))

    return build


def _load_tiny(cfg: MiniCLIPConfig, directory: Path, device):
    from safetensors.torch import load_file

    model = build_model(cfg)
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model.to(device).eval().requires_grad_(False)


def load_miniclip(scale: str = "ci", device="cpu", model: Optional[str] = None, log: Callable[[str], None] = print,
                  **overrides) -> MiniCLIPTestbed:
    """`MiniCLIPTestbed.load` (kept as a function for notebooks and benchmarks)."""
    return MiniCLIPTestbed.load(scale, device, model, log, **overrides)
