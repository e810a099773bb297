"""MiniProfiles as a testbed: loading (fine-tuning on first use), forget splits, running an MLLM card, scoring it
against the vanilla model and the retain-only oracle, and the forget / retain trade-off figure.

MLLMU-Bench (catalog id `liu2024protecting`) fine-tunes LLaVA on 500 fictitious profiles and 153 real celebrities,
unlearns a 5-15% forget split and scores four sets (Forget, Test = forget people with new images and paraphrased
questions, Retain, Real Celebrity) by multiple choice, generation (ROUGE) and cloze. MiniProfiles keeps that structure
at toy size (see data.py). Forget splits are drawn after fine-tuning (the vanilla model saw every profile, as in
MLLMU-Bench), so one vanilla model serves several random splits; each split has its own retain-only oracle.

`MiniProfilesTestbed.load(model="llava-hf/llava-1.5-7b-hf")` (or a local path) runs the same data, fine-tuning and
evaluation on a real LLaVA checkpoint instead of the tiny model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ...core.cache import cache_root, cached, config_hash
from ...core.seeding import resolve_device, seed_everything
from ...mllm.edited import EditedMLLM
from .. import Evaluation, ForgetRequest, Testbed, UsageError
from .config import MiniProfilesConfig, config_for
from .data import REFUSALS, build_data, forget_splits
from .metrics import evaluate_items, headline, summarise
from .model import Encoded, Encoder, _dtype_for, build_processor, load_checkpoint, sha256_of_checkpoint
from .training import CACHE_MARKER, FinetuneSettings, ProfileTrainer

HEADLINE = ("forget_acc", "forget_paraphrase_acc", "retain_acc", "real_world_acc", "utility_acc",
            "harmless_forget_acc")
FORGET_SPLITS = ("forget", "forget_paraphrase")


@dataclass
class UnlearningTask:
    """What an MLLM unlearning card receives: encoded forget / retain training questions and a batcher.

    `forget` holds every trained profile question of the forget people (both modalities; cards pick the
    modalities they unlearn), `retain` those of the retain people. `batch(rows, generator)` collates rows into
    model inputs on the right device, with a random training view for visual rows.

    For cards beyond the MLLMU-Bench baselines: `harmless` holds harmless questions about the forget people's images
    (never trained before; SafeEraser's prompt-decouple set is built from them) and `refusals` the refusal answers
    that refusal-training cards (PO) train the forget questions towards; `with_answers` re-targets rows.
    """

    forget: list
    retain: list
    encoder: Encoder
    train_views: tuple
    seed: int
    harmless: list = dataclasses.field(default_factory=list)
    refusals: tuple = ()

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    def batch(self, rows: Sequence[Encoded], generator: Optional[torch.Generator] = None) -> dict:
        return self.encoder.batch(rows, train_views=self.train_views, generator=generator)

    def prompt_batch(self, rows: Sequence[Encoded]) -> dict:
        """Left-padded prompts without answers (for `model.generate`), on each visual row's first training view."""
        return self.encoder.batch(rows, targets=[()] * len(rows), train_views=self.train_views, left_pad=True)

    def with_answers(self, rows: Sequence[Encoded], answers: Sequence[str]) -> list:
        """The rows with new answer texts as training targets (tokenized like every other answer)."""
        return self.encoder.with_answers(rows, answers)


def forget_quality_gap(table: dict, oracle_table: dict) -> float:
    """Mean |method - oracle| over every forget-side metric (forget and forget-paraphrase, visual and text)."""
    gaps = []
    for split in FORGET_SPLITS:
        for modality in ("visual", "text"):
            for metric, value in table[split][modality].items():
                reference = oracle_table[split][modality][metric]
                if not (math.isnan(value) or math.isnan(reference)):
                    gaps.append(abs(value - reference))
    return float(np.mean(gaps))


class MiniProfilesTestbed(Testbed):
    """Data, processor, vanilla model and evaluation of the testbed; oracles are trained (and cached) on demand."""

    def __init__(self, cfg, data, encoder, trainer, model_dir, max_new_tokens, eval_batch_size, log):
        self.config = cfg
        self.data = data
        self.encoder = encoder
        self.processor = encoder.processor
        self.device = encoder.device
        self.trainer = trainer
        self.source = trainer.source  # "tiny" or the checkpoint path / hub id
        self.max_new_tokens = max_new_tokens
        self.eval_batch_size = eval_batch_size
        self.log = log
        self.model_dir = Path(model_dir)
        self.model_info = json.loads((self.model_dir / CACHE_MARKER).read_text())
        self.model = load_checkpoint(self.model_dir, self.device, self._dtype())
        self.model.requires_grad_(False)
        self.checkpoint_sha256 = sha256_of_checkpoint(self.model_dir)
        self.eval_rows = encoder.encode(data.eval_items)
        self.harmless_rows = encoder.encode(data.harmless_items)
        self._base_records = None

    # --- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def check_arguments(cls, scale, forget, anchor, model) -> None:
        super().check_arguments(scale, forget, anchor, model)
        if forget is not None or anchor is not None:
            raise UsageError("--forget/--anchor do not apply to MiniProfiles: it unlearns random splits of 10% of "
                             "the people, drawn from --seed")
        if model is not None:
            check_model_argument(model)

    @classmethod
    def load(cls, scale: str = "ci", device="cpu", model: Optional[str] = None, log: Callable[[str], None] = print,
             **overrides) -> "MiniProfilesTestbed":
        """Load (fine-tuning on first use) the testbed at a scale ('ci' or 'full').

        `model=None` builds the tiny LLaVA; a LLaVA checkpoint directory or hub id is loaded with
        `LlavaForConditionalGeneration.from_pretrained` + `AutoProcessor` and fine-tuned on the profiles
        (MLLMU-Bench's vanilla-model recipe), cached the same way. `overrides` replace config fields (tests use
        tiny sizes)."""
        cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
        torch.set_num_threads(cfg.num_threads)
        seed_everything(cfg.seed)
        device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        data = build_data(cfg)
        if model is None:
            processor, source = build_processor(cfg), "tiny"
            settings = FinetuneSettings(cfg.base_epochs, cfg.epochs, cfg.batch_size, cfg.learning_rate,
                                        cfg.warmup_fraction, cfg.check_every, cfg.stop_at_em, cfg.seed)  # fmt: skip
            max_new_tokens, eval_batch_size = cfg.max_new_tokens, cfg.eval_batch_size
            key = {**cfg.model_key(), "train_device": device.type}
        else:
            from transformers import AutoProcessor

            try:
                processor = AutoProcessor.from_pretrained(str(model))
            except (OSError, ValueError) as error:  # missing path, no network for a hub id, not a LLaVA folder
                raise UsageError(f"cannot load a LLaVA processor from --model {model!r}: {_first_line(error)}") from None
            source = str(model)
            settings = FinetuneSettings(cfg.pretrained_epochs, cfg.pretrained_epochs, cfg.pretrained_batch_size,
                                        cfg.pretrained_learning_rate, 0.0, cfg.pretrained_epochs, cfg.stop_at_em,
                                        cfg.seed)  # fmt: skip
            max_new_tokens, eval_batch_size = cfg.pretrained_max_new_tokens, 8
            key = {"source": source, "data": cfg.data_key(), "settings": dataclasses.asdict(settings),
                   "train_device": device.type}  # fmt: skip
        encoder = Encoder(processor, data.images, device, prompt_style="plain" if model is None else "llava")
        model_dir = cache_root() / "miniprofiles" / config_hash(key)
        trainer = ProfileTrainer(cfg, data, encoder, source, settings, model_dir.parent / (model_dir.name + "-base"),
                                 log)
        if not (model_dir / CACHE_MARKER).exists():
            log(f"[miniprofiles] fine-tuning the vanilla model ({cfg.scale} scale, {source}); once per machine")
        items = data.profile_items(data.fictitious_ids)
        model_dir = cached(model_dir, trainer.build(items, {"cache_key": key}), CACHE_MARKER, log)
        return cls(cfg, data, encoder, trainer, model_dir, max_new_tokens, eval_batch_size, log)

    def _dtype(self):
        return _dtype_for(self.source, self.device)

    @property
    def uses_own_model(self) -> bool:
        return self.source == "tiny"

    @property
    def config_record(self) -> dict:
        return dataclasses.asdict(self.config)

    # --- data ---------------------------------------------------------------------------------------------------
    def forget_splits(self, seed: int, n_splits: Optional[int] = None) -> list:
        return forget_splits(self.data, seed, n_splits)

    def unlearning_task(self, forget_ids: Sequence[str], seed: int) -> UnlearningTask:
        retain_ids = [pid for pid in self.data.fictitious_ids if pid not in set(forget_ids)]
        return UnlearningTask(
            forget=self.encoder.encode(self.data.profile_items(forget_ids)),
            retain=self.encoder.encode(self.data.profile_items(retain_ids)),
            encoder=self.encoder,
            train_views=self.data.train_views,
            seed=seed,
            harmless=self.encoder.encode(self.data.harmless_training_items(forget_ids)),
            refusals=REFUSALS,
        )

    def requests(self, seed: int, forget=None, anchor=None) -> list:
        return [ForgetRequest(label=", ".join(ids), payload=list(ids), describe={"forget_ids": list(ids)}, index=k)
                for k, ids in enumerate(self.forget_splits(seed))]

    # --- evaluation ---------------------------------------------------------------------------------------------
    def evaluate_records(self, model) -> dict:
        """Per-question records of the evaluation questions, then (in a pass of their own, so that the first pass
        batches exactly as it always has) of the harmless questions."""
        return {**self._records(model, self.eval_rows), **self._records(model, self.harmless_rows)}

    def _records(self, model, rows) -> dict:
        return evaluate_items(model, self.encoder, rows, self.eval_batch_size, self.max_new_tokens) if rows else {}

    def summarise(self, records: dict, forget_ids: Sequence[str]) -> dict:
        """{"table": split x modality x metric, "headline": pooled accuracies} for one forget split."""
        table = summarise(records, self.data, forget_ids)
        return {"table": table, "headline": headline(table)}

    def quick_eval(self, model, forget_ids: Sequence[str], retain_sample: int = 12) -> dict:
        """MC accuracy on the forget and (a fixed sample of) retain profile questions: the trade-off curve."""
        forget = set(forget_ids)
        retain = set([pid for pid in self.data.fictitious_ids if pid not in forget][:retain_sample])
        rows = [r for r in self.eval_rows if r.qa.kind == "qa" and r.qa.pid in forget | retain]
        records = evaluate_items(model, self.encoder, rows, self.eval_batch_size, self.max_new_tokens, generate=False)
        forget_mc = [records[r.qa.qid]["mc"] for r in rows if r.qa.pid in forget]
        retain_mc = [records[r.qa.qid]["mc"] for r in rows if r.qa.pid in retain]
        return {"forget_acc": float(np.mean(forget_mc)), "retain_acc": float(np.mean(retain_mc))}

    def cached_records(self, model, directory: Path) -> dict:
        """Evaluation records of a cached (never modified) model, stored next to its weights: the evaluation
        questions' file and, apart, the harmless questions' (older caches keep their first file as it was)."""
        records = {}
        keys = {"eval": self.eval_key(), "harmless-eval": {**self.eval_key(), "harmless_questions": 1}}
        for prefix, rows in (("eval", self.eval_rows), ("harmless-eval", self.harmless_rows)):
            path = Path(directory) / f"{prefix}-{config_hash(keys[prefix])}.json"
            if path.exists():
                try:
                    records.update(json.loads(path.read_text()))
                    continue
                except (OSError, ValueError):  # a corrupt record file (a killed write): computed again below
                    self.log(f"[cache] {path.name} of {Path(directory).name} is unreadable; evaluating again")
            part = self._records(model, rows)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(part))
            os.replace(tmp, path)
            records.update(part)
        return records

    def eval_key(self) -> dict:
        return {**self.config.eval_key(), "max_new_tokens": self.max_new_tokens, "source": self.source}

    # --- oracle -------------------------------------------------------------------------------------------------
    def oracle_dir(self, forget_ids: Sequence[str]) -> Path:
        return self.model_dir.parent / (self.model_dir.name + "-oracle-" + config_hash(sorted(forget_ids)))

    def oracle(self, forget_ids: Sequence[str]):
        """The retain-only retrain (same recipe and initialisation, forget people removed), cached; (model, dir)."""
        directory = self.oracle_dir(forget_ids)
        if not (directory / CACHE_MARKER).exists():
            self.log(f"[miniprofiles] training the retain-only oracle without {', '.join(forget_ids)}")
        retain_ids = [pid for pid in self.data.fictitious_ids if pid not in set(forget_ids)]
        items = self.data.profile_items(retain_ids)
        directory = cached(directory, self.trainer.build(items, {"forget_ids": list(forget_ids)}), CACHE_MARKER,
                           self.log)
        model = load_checkpoint(directory, self.device, self._dtype())
        return model.requires_grad_(False), directory

    # --- the protocol -------------------------------------------------------------------------------------------
    def unlearn(self, card, config, request: ForgetRequest, seed: int) -> EditedMLLM:
        """An MLLM card edits a copy of the vanilla model in place: `unlearn(model, task, config, callback)`. The
        callback records the forget / retain trade-off curve every tenth of the run (not counted in its time)."""
        forget_ids = request.payload
        edited = copy.deepcopy(self.model)
        task = self.unlearning_task(forget_ids, seed=seed * 1000 + request.index)
        curve = [{"step": 0, **self.quick_eval(edited, forget_ids)}]
        steps = getattr(config, "steps", None) or 10
        curve_every = max(1, steps // 10)

        def record_curve(step, current):
            if step % curve_every == 0 or step == steps:
                curve.append({"step": step, **self.quick_eval(current, forget_ids)})

        info = card.load_entry()(edited, task, config, record_curve)
        info = {**info, "curve": curve, "method_s": info["unlearn_time_s"]}
        return EditedMLLM(edited, self.processor, info)

    def references(self, request: ForgetRequest, seed: int) -> dict:
        forget_ids = request.payload
        if self._base_records is None:
            self._base_records = self.cached_records(self.model, self.model_dir)
        base = self.summarise(self._base_records, forget_ids)
        oracle_model, oracle_dir = self.oracle(forget_ids)
        oracle = self.summarise(self.cached_records(oracle_model, oracle_dir), forget_ids)
        oracle_quick = self.quick_eval(oracle_model, forget_ids)
        del oracle_model
        return {
            "base": Evaluation(dict(base["headline"]), {"table": base["table"]}),
            "oracle": Evaluation({**oracle["headline"], "forget_quality_gap": 0.0},
                                 {"table": oracle["table"], "sha256": sha256_of_checkpoint(oracle_dir)},
                                 {"quick": oracle_quick}),
        }

    def evaluate(self, edited: EditedMLLM, request: ForgetRequest, seed: int, references: dict) -> Evaluation:
        result = self.summarise(self.evaluate_records(edited.model), request.payload)
        gap = forget_quality_gap(result["table"], references["oracle"].details["table"])
        details = {"table": result["table"], "curve": edited.info["curve"],
                   "unlearn": {k: v for k, v in edited.info.items() if k not in ("loss_history", "curve", "method_s")},
                   "loss_history": edited.info.get("loss_history", [])}
        return Evaluation({**result["headline"], "forget_quality_gap": gap}, details)

    def details_record(self, runs: list) -> dict:
        """Per split: the edited model's, the vanilla model's and the oracle's tables; the curve; the losses."""
        splits = []
        for run in runs:
            base, oracle = run.references["base"], run.references["oracle"]
            splits.append({
                "forget_ids": run.request.payload,
                "table": run.evaluation.details["table"],
                "base_table": base.details["table"],
                "oracle_table": oracle.details["table"],
                "oracle_sha256": oracle.details["sha256"],
                "oracle_quick": oracle.private["quick"],
                "curve": run.evaluation.details["curve"],
                "unlearn": run.evaluation.details["unlearn"],
                "loss_history": run.evaluation.details["loss_history"],
            })  # fmt: skip
        return {
            "splits": splits,
            "table": pool_tables([s["table"] for s in splits]),
            "base_table": pool_tables([s["base_table"] for s in splits]),
            "oracle_table": pool_tables([s["oracle_table"] for s in splits]),
            "checkpoint": {"source": self.source if self.source == "tiny" else Path(self.source).name,
                           "sha256": self.checkpoint_sha256,
                           "vanilla_memorised_em": self.model_info.get("memorised_em")},
        }

    @classmethod
    def details_markdown(cls, record: dict) -> str:
        details = record["details"]
        return ("**After unlearning** (mean ± std over splits)\n\n" + table_markdown(details["table"])
                + "\n\n**Retrain oracle**\n\n" + table_markdown(details["oracle_table"])
                + f"\n\nVanilla checkpoint sha256 `{details['checkpoint']['sha256'][:16]}...`; MC accuracy is "
                "likelihood-scored over the options; generation exact match and ROUGE-L; cloze: the answer appears.")

    def figure(self, record: dict, runs: list, path: Path) -> Path:
        plot_tradeoff(record, runs, self.config.mc_options, path)
        return path

    def model_tensors(self) -> dict:
        return dict(self.model.state_dict())

    # --- the edited-weights cache -------------------------------------------------------------------------------
    def edited_tensors(self, edited: EditedMLLM) -> dict:
        return {name: tensor.detach().cpu().contiguous() for name, tensor in edited.model.state_dict().items()}

    def restore_edited(self, tensors: dict, info: dict, request: ForgetRequest) -> EditedMLLM:
        model = copy.deepcopy(self.model)
        embedding = next(name for name, p in model.named_parameters() if p is model.get_input_embeddings().weight)
        if tensors[embedding].shape[0] != model.get_input_embeddings().num_embeddings:  # a card added tokens (PO)
            model.resize_token_embeddings(tensors[embedding].shape[0], mean_resizing=False)
        model.load_state_dict(tensors)
        return EditedMLLM(model.requires_grad_(False).eval(), self.processor, info)


def check_model_argument(model: str) -> None:
    """A --model for LLaVA: an existing local folder, or a hub id (owner/name); anything else is a usage error."""
    import re

    path = Path(model)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--model {model!r} is a file; give a LLaVA checkpoint folder or a hub id (owner/name)")
        return
    if path.is_absolute() or re.fullmatch(r"[\w.-]+/[\w.-]+", model) is None:
        raise UsageError(f"--model {model!r} is neither a local folder nor a hub id (owner/name)")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _mean_std(values) -> dict:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def pool_tables(tables: list) -> dict:
    """split -> modality -> metric -> {mean, std} over forget splits."""
    first = tables[0]
    return {split: {modality: {metric: _mean_std([t[split][modality][metric] for t in tables])
                               for metric in first[split][modality]}
                    for modality in first[split]}
            for split in first}  # fmt: skip


def _pm(stat: dict) -> str:
    if stat is None or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def table_markdown(table: dict) -> str:
    """A pooled table (split x question type x metric, mean ± std) as Markdown."""
    metric_names = list(next(iter(next(iter(table.values())).values())))
    lines = ["| split | questions | " + " | ".join(metric_names) + " |", "|---" * (len(metric_names) + 2) + "|"]
    for split, modalities in table.items():
        for modality in ("visual", "text"):
            row = modalities[modality]
            if all(row[m]["mean"] is None for m in metric_names):
                continue
            lines.append(f"| {split} | {modality} | " + " | ".join(_pm(row[m]) for m in metric_names) + " |")
    return "\n".join(lines)


def plot_tradeoff(record: dict, runs: list, mc_options: int, path: Path) -> None:
    """Forget vs retain MC accuracy along each split's unlearning run, with the vanilla model and the oracles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    colors = plt.cm.tab10.colors
    for k, run in enumerate(runs):
        curve = run.evaluation.details["curve"]
        xs, ys = [p["forget_acc"] for p in curve], [p["retain_acc"] for p in curve]
        ax.plot(xs, ys, "-", color=colors[k % 10], alpha=0.8, lw=1.2, label=f"split {k}: {record['card']} run")
        ax.plot(xs[-1:], ys[-1:], "o", color=colors[k % 10], ms=7)
        oracle = run.references["oracle"].private["quick"]
        ax.plot([oracle["forget_acc"]], [oracle["retain_acc"]], "^", color=colors[k % 10], ms=9, mec="black",
                label=f"split {k}: retrain oracle")  # fmt: skip
        if k == 0:
            ax.plot([xs[0]], [ys[0]], "*", color="black", ms=13, label="fine-tuned (vanilla)")
    chance = 1.0 / mc_options
    ax.axvline(chance, color="grey", ls=":", lw=1)
    ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("forget accuracy (MC, lower is better)")
    ax.set_ylabel("retain accuracy (MC, higher is better)")
    ax.set_title(f"MiniProfiles ({record['scale']}): {record['card']}, seed {record['seed']}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def load_miniprofiles(scale: str = "ci", device="cpu", model: Optional[str] = None,
                      log: Callable[[str], None] = print, **overrides) -> MiniProfilesTestbed:  # fmt: skip
    """`MiniProfilesTestbed.load` (kept as a function for notebooks and benchmarks)."""
    return MiniProfilesTestbed.load(scale, device, model, log, **overrides)
