"""MiniVoices as a testbed: speaker unlearning in a keyword classifier, as UnSLU-Bench ("Alexa, can you forget
me?", catalog id `koudounas2025alexa`) and MU-Bench's speech track define it.

Twenty synthetic speakers (synth.py) say the ten digits at five speeds and three pitches; four speakers are never
trained on (the test set: new voices), and a tiny `WhisperForAudioClassification` learns the keyword from the other
sixteen. A forget request names speakers whose every utterance must be forgotten; each request has its own oracle,
the same recipe retrained from the same initialisation without them. Forget requests are drawn after training (the
base model heard every trainable speaker), so one base model serves several random requests.

`--model` takes a real audio-classification checkpoint (folder or hub id; fine-tuned on the data with its own feature
extractor, base and oracles alike), a folder of recordings laid out as `<speaker>/<keyword>/*.wav` (used instead of
the synthesised speech), or both joined by a comma.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ...audio.edited import EditedAudioClassifier
from ...audio.task import AudioUnlearningTask
from ...core.cache import cache_root, cached, config_hash
from ...core.seeding import resolve_device, seed_everything
from .. import Evaluation, ForgetRequest, Testbed, UsageError
from . import synth
from .config import MiniVoicesConfig, config_for
from .data import (LAYOUT, Corpus, FolderError, VoiceData, build_data, choose_unseen, folder_corpus, forget_splits,
                   synthesised_corpus)
from .metrics import accuracy, losses, per_speaker_accuracy, predict, simple_mia
from .model import (build_feature_extractor, build_tiny_classifier, describe, extract_features, fresh_like,
                    input_name, load_checkpoint, load_pretrained, save_checkpoint, sha256_of_checkpoint)
from .training import CACHE_MARKER, TrainSettings, train_classifier

HEADLINE = ("forget_acc", "retain_acc", "test_acc", "mia")
SPEAKER_ID = re.compile(r"^[\w.-]+$")


@dataclasses.dataclass(frozen=True)
class ModelArgument:
    """What --model named: a checkpoint (folder or hub id), a folder of recordings, or both."""

    checkpoint: Optional[str] = None
    recordings: Optional[Path] = None


def parse_model_argument(model: Optional[str]) -> ModelArgument:
    """`--model` as one or two comma-separated parts, each a checkpoint folder (it has config.json), a recordings
    folder (<speaker>/<keyword>/*.wav) or a hub id (owner/name); anything else is a usage error."""
    if model is None:
        return ModelArgument()
    checkpoint, recordings = None, None
    parts = [part.strip() for part in str(model).split(",")]
    if len(parts) > 2 or not all(parts):
        raise UsageError(f"--model {model!r}: give a checkpoint, a recordings folder ({LAYOUT}), or both joined by "
                         "one comma")
    for part in parts:
        path = Path(part)
        if path.is_dir() and (path / "config.json").is_file():
            kind = "checkpoint"
        elif path.is_dir() and any(path.glob("*/*/*.wav")):
            kind = "recordings"
        elif path.exists():
            raise UsageError(f"--model {part!r} is neither a checkpoint folder (config.json) nor a recordings folder "
                             f"({LAYOUT})")
        elif not path.is_absolute() and re.fullmatch(r"[\w.-]+/[\w.-]+", part):
            kind = "checkpoint"  # a hub id
        else:
            raise UsageError(f"--model {part!r} does not exist and is not a hub id (owner/name)")
        if kind == "checkpoint":
            if checkpoint is not None:
                raise UsageError(f"--model {model!r} names two checkpoints; give one checkpoint and one recordings folder")
            checkpoint = part
        else:
            if recordings is not None:
                raise UsageError(f"--model {model!r} names two recordings folders; give one")
            recordings = path
    return ModelArgument(checkpoint, recordings)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class MiniVoicesTestbed(Testbed):
    """Data, features, base model and evaluation of the testbed; oracles are trained (and cached) on demand."""

    def __init__(self, cfg: MiniVoicesConfig, data: VoiceData, feature_extractor, features: torch.Tensor,
                 model_dir: Path, source: str, settings: TrainSettings, new_model: Callable, device, log):
        self.config = cfg
        self.data = data
        self.feature_extractor = feature_extractor
        self.input_name = input_name(feature_extractor)
        self.features = features
        self.labels = torch.from_numpy(data.labels)
        self.model_dir = Path(model_dir)
        self.source = source  # "tiny" or the checkpoint (folder or hub id)
        self.settings = settings
        self.new_model = new_model  # seed -> a freshly initialised model (the base's starting point)
        self.device = device
        self.log = log
        self.model_info = json.loads((self.model_dir / CACHE_MARKER).read_text())
        self.model = load_checkpoint(self.model_dir, device)
        self.checkpoint_sha256 = sha256_of_checkpoint(self.model_dir)
        self.speaker_of = [u.speaker for u in data.utterances]
        self._base_logits = None

    # --- loading ---------------------------------------------------------------------------------------------------
    @classmethod
    def check_arguments(cls, scale, forget, anchor, model) -> None:
        super().check_arguments(scale, forget, anchor, model)
        if anchor is not None:
            raise UsageError("--anchor does not apply to MiniVoices: it forgets speakers")
        if forget is not None:
            speakers = [s.strip() for s in str(forget).split(",")]
            bad = [s for s in speakers if not SPEAKER_ID.match(s)]
            if bad or not speakers:
                raise UsageError(f"--forget {forget!r}: give speaker ids separated by commas (e.g. spk05,spk12)")
            if len(set(speakers)) != len(speakers):
                raise UsageError(f"--forget {forget!r} names a speaker twice")
        argument = parse_model_argument(model)
        if forget is not None and argument.recordings is None:  # the synthesised speakers are known up front
            cfg = config_for(scale)
            roster = synth.roster(cfg.n_speakers)
            unseen = choose_unseen(Corpus([], [], cfg.keywords, {s.id: s.description for s in roster},
                                          {s.id: s.group for s in roster}, "synthesised"), cfg.n_unseen, cfg.seed)
            trainable = [s.id for s in roster if s.id not in unseen]
            for speaker in (s.strip() for s in str(forget).split(",")):
                if speaker not in trainable:
                    why = "is never trained on (a test speaker)" if speaker in unseen else "is not a speaker"
                    raise UsageError(f"--forget: {speaker} {why}; choose from {', '.join(trainable)}")

    @classmethod
    def own_model(cls, model: Optional[str]) -> bool:
        """Only a recordings folder keeps the testbed's tiny model (and so its adaptations of the cards' configs)."""
        return parse_model_argument(model).checkpoint is None

    @classmethod
    def load(cls, scale: str = "ci", device="cpu", model: Optional[str] = None, log: Callable[[str], None] = print,
             **overrides) -> "MiniVoicesTestbed":
        """Load (synthesising and training on first use) the testbed at a scale ('ci' or 'full'); `overrides`
        replace config fields (the contract tests use tiny sizes)."""
        cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
        torch.set_num_threads(cfg.num_threads)
        seed_everything(cfg.seed)
        device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        argument = parse_model_argument(model)
        try:
            corpus = folder_corpus(argument.recordings, cfg) if argument.recordings else synthesised_corpus(cfg, log)
        except (synth.SynthesiserMissing, FolderError) as error:
            raise UsageError(str(error)) from None
        data = build_data(cfg, corpus)
        fingerprint = hashlib.sha256(data.clips.tobytes() + data.labels.tobytes()).hexdigest()[:16]
        if argument.checkpoint is None:
            feature_extractor, source = build_feature_extractor(cfg), "tiny"
            settings = TrainSettings(cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.weight_decay,
                                     cfg.warmup_fraction, cfg.seed, cfg.freq_shift, cfg.freq_mask, cfg.time_mask)
            new_model = lambda seed: build_tiny_classifier(cfg, data.keywords, seed)  # noqa: E731
            key = {**cfg.model_key(), "data": fingerprint, "train_device": device.type}
        else:
            try:
                pretrained, feature_extractor = load_pretrained(argument.checkpoint, data.keywords)
            except (OSError, ValueError, KeyError) as error:
                raise UsageError(f"cannot load an audio classifier from --model {argument.checkpoint!r}: "
                                 f"{_first_line(error)}") from None
            source = argument.checkpoint
            settings = TrainSettings(cfg.pretrained_epochs, cfg.pretrained_batch_size, cfg.pretrained_learning_rate,
                                     cfg.weight_decay, cfg.warmup_fraction, cfg.seed)

            def new_model(seed, _source=argument.checkpoint, _keywords=data.keywords):
                with torch.random.fork_rng():  # the replaced head is initialised from the seed
                    torch.manual_seed(seed)
                    return load_pretrained(_source, _keywords)[0]

            del pretrained
            key = {"source": source, "data": fingerprint, "settings": dataclasses.asdict(settings),
                   "train_device": device.type}
        features = extract_features(feature_extractor, data.clips, cfg.sampling_rate)
        model_dir = cache_root() / "minivoices" / config_hash(key)
        if not (model_dir / CACHE_MARKER).exists():
            log(f"[minivoices] training the base model ({cfg.scale} scale, {source}) on "
                f"{len(data.trainable)} speakers; once per machine")
        rows = torch.from_numpy(data.indices(data.trainable))
        builder = _trainer(new_model, feature_extractor, features, torch.from_numpy(data.labels), settings, device,
                           log, {"cache_key": key, "speakers": list(data.trainable)})
        cached(model_dir, lambda tmp: builder(tmp, rows), CACHE_MARKER)
        return cls(cfg, data, feature_extractor, features, model_dir, source, settings, new_model, device, log)

    @property
    def uses_own_model(self) -> bool:
        return self.source == "tiny"

    @property
    def config_record(self) -> dict:
        return {**dataclasses.asdict(self.config), "data_source": self.data.source}

    # --- data -------------------------------------------------------------------------------------------------------
    def rows(self, speakers: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.data.indices(speakers))

    def unlearning_task(self, forget: Sequence[str], seed: int) -> AudioUnlearningTask:
        forget_rows, retain_rows = self.rows(forget), self.rows(self.data.retain_speakers(forget))
        return AudioUnlearningTask(
            forget_inputs=self.features[forget_rows], forget_labels=self.labels[forget_rows],
            retain_inputs=self.features[retain_rows], retain_labels=self.labels[retain_rows],
            input_name=self.input_name, num_labels=len(self.data.keywords),
            new_model=lambda s: fresh_like(self.model, s).to(self.device), seed=seed, device=self.device)

    def requests(self, seed: int, forget=None, anchor=None) -> list:
        named = [s.strip() for s in forget.split(",")] if forget else None
        if named:
            unknown = [s for s in named if s not in self.data.trainable]
            if unknown:
                unseen = [s for s in unknown if s in self.data.unseen]
                why = (f"{', '.join(unseen)} never trained on (a test speaker)" if unseen
                       else f"no speaker {', '.join(unknown)}")
                raise UsageError(f"--forget: {why}; choose from {', '.join(self.data.trainable)}")
            if len(named) >= len(self.data.trainable):
                raise UsageError("--forget names every trained speaker; leave at least one to retain")
        splits = forget_splits(self.data, seed, self.config.n_splits, self.config.forget_speakers, named)
        return [ForgetRequest(label=", ".join(speakers), payload=tuple(speakers),
                              describe={"forget_speakers": list(speakers)}, index=k)
                for k, speakers in enumerate(splits)]

    # --- evaluation ---------------------------------------------------------------------------------------------------
    def all_logits(self, model) -> torch.Tensor:
        return predict(model, self.input_name, self.features, self.config.eval_batch_size)

    def score(self, logits: torch.Tensor, forget: Sequence[str]) -> dict:
        """The headline metrics and the details of one model's logits on every utterance, for one request."""
        forget_rows, retain_rows = self.rows(forget), self.rows(self.data.retain_speakers(forget))
        test_rows = self.rows(self.data.unseen)
        labels = self.labels
        forget_losses = losses(logits[forget_rows], labels[forget_rows])
        test_losses = losses(logits[test_rows], labels[test_rows])
        metrics = {
            "forget_acc": accuracy(logits[forget_rows], labels[forget_rows]),
            "retain_acc": accuracy(logits[retain_rows], labels[retain_rows]),
            "test_acc": accuracy(logits[test_rows], labels[test_rows]),
            "mia": simple_mia(forget_losses, test_losses, self.config.mia_folds),
        }
        speakers = list(forget) + list(self.data.unseen)
        rows = self.rows(speakers)
        details = {"per_speaker": per_speaker_accuracy(logits[rows], labels[rows], [self.speaker_of[i] for i in rows]),
                   "forget_loss": float(np.mean(forget_losses)), "test_loss": float(np.mean(test_losses))}
        return {"metrics": metrics, "details": details}

    def quick(self, model, forget: Sequence[str]) -> dict:
        """Forget and test accuracy (the trade-off curve along a card's run)."""
        forget_rows, test_rows = self.rows(forget), self.rows(self.data.unseen)
        out = {}
        for key, rows in (("forget_acc", forget_rows), ("test_acc", test_rows)):
            logits = predict(model, self.input_name, self.features[rows], self.config.eval_batch_size)
            out[key] = accuracy(logits, self.labels[rows])
        return out

    # --- oracle --------------------------------------------------------------------------------------------------------
    def oracle_dir(self, forget: Sequence[str]) -> Path:
        return self.model_dir.parent / (self.model_dir.name + "-oracle-" + config_hash(sorted(forget)))

    def oracle(self, forget: Sequence[str]):
        """The retrain oracle (same recipe and initialisation, forget speakers removed), cached; (model, folder)."""
        directory = self.oracle_dir(forget)
        if not (directory / CACHE_MARKER).exists():
            self.log(f"[minivoices] training the retrain oracle without {', '.join(forget)}")
        retain = self.data.retain_speakers(forget)
        builder = _trainer(self.new_model, self.feature_extractor, self.features, self.labels, self.settings,
                           self.device, self.log, {"forget_speakers": list(forget), "speakers": list(retain)})
        cached(directory, lambda tmp: builder(tmp, self.rows(retain)), CACHE_MARKER)
        return load_checkpoint(directory, self.device), directory

    def oracle_logits(self, forget: Sequence[str]) -> tuple:
        """The oracle's logits on every utterance, cached beside its weights; (logits, folder)."""
        from safetensors.torch import load_file, save_file

        directory = self.oracle_dir(forget)
        path = directory / "logits.safetensors"
        if not path.exists():
            model, directory = self.oracle(forget)
            save_file({"logits": self.all_logits(model).contiguous()}, str(path))
        return load_file(str(path))["logits"], directory

    # --- the protocol ---------------------------------------------------------------------------------------------------
    def unlearn(self, card, config, request: ForgetRequest, seed: int) -> EditedAudioClassifier:
        """An audio card edits a copy of the base model in place: `unlearn(model, task, config, callback)`. The
        callback records forget and test accuracy after each of the card's epochs (not counted in its time)."""
        forget = request.payload
        edited = copy.deepcopy(self.model)
        task = self.unlearning_task(forget, seed=seed * 1000 + request.index)
        curve = [{"step": 0, **self.quick(edited, forget)}]

        def record_curve(step, current):
            curve.append({"step": int(step), **self.quick(current, forget)})

        info = card.load_entry()(edited, task, config, record_curve)
        edited.eval().requires_grad_(False)
        info = {**info, "curve": curve, "method_s": info["unlearn_time_s"]}
        return EditedAudioClassifier(edited, self.feature_extractor, info)

    def references(self, request: ForgetRequest, seed: int) -> dict:
        forget = request.payload
        if self._base_logits is None:
            self._base_logits = self.all_logits(self.model)
        oracle_logits, oracle_dir = self.oracle_logits(forget)
        oracle = self.score(oracle_logits, forget)
        base = self.score(self._base_logits, forget)
        return {
            "base": Evaluation({**base["metrics"], **gaps(base["metrics"], oracle["metrics"])}, base["details"]),
            "oracle": Evaluation({**oracle["metrics"], "forget_gap": 0.0, "mia_gap": 0.0},
                                 {**oracle["details"], "sha256": sha256_of_checkpoint(oracle_dir)}),
        }

    def evaluate(self, edited: EditedAudioClassifier, request: ForgetRequest, seed: int, references: dict) -> Evaluation:
        logits = self.all_logits(edited.model)
        scored = self.score(logits, request.payload)
        metrics = {**scored["metrics"], **gaps(scored["metrics"], references["oracle"].metrics)}
        details = {**scored["details"], "curve": edited.info.get("curve", []),
                   "unlearn": {k: v for k, v in edited.info.items() if k not in ("loss_history", "curve", "method_s")},
                   "loss_history": edited.info.get("loss_history", [])}
        return Evaluation(metrics, details, {"logits": logits})

    def details_record(self, runs: list) -> dict:
        """Per request: the edited model's, the base model's and the oracle's metrics and per-speaker accuracy."""
        requests = []
        for run in runs:
            base, oracle = run.references["base"], run.references["oracle"]
            requests.append({
                "forget_speakers": list(run.request.payload),
                "metrics": run.evaluation.metrics, "base": base.metrics, "oracle": oracle.metrics,
                "per_speaker": {"edited": run.evaluation.details["per_speaker"],
                                "base": base.details["per_speaker"], "oracle": oracle.details["per_speaker"]},
                "oracle_sha256": oracle.details["sha256"],
                "curve": run.evaluation.details["curve"],
                "unlearn": run.evaluation.details["unlearn"],
                "loss_history": run.evaluation.details["loss_history"],
            })
        unseen = set(self.data.unseen)
        return {
            "requests": requests,
            "speakers": {s: {"description": d, "role": "unseen (test)" if s in unseen else "trained"}
                         for s, d in self.data.speakers.items()},
            "keywords": list(self.data.keywords),
            "utterances": {"trained": int(len(self.rows(self.data.trainable))),
                           "unseen": int(len(self.rows(self.data.unseen)))},
            "checkpoint": {"source": self.source if self.source == "tiny" or not Path(self.source).is_absolute()
                           else Path(self.source).name,
                           "model": describe(self.model), "sha256": self.checkpoint_sha256,
                           "train_seconds": self.model_info.get("train_seconds")},
        }

    @classmethod
    def details_markdown(cls, record: dict) -> str:
        details = record["details"]
        lines = ["**Per forget request** (forget accuracy / MIA: after the card, base model, retrain oracle)", "",
                 "| forget speakers | forget acc | base | oracle | MIA | base | oracle | test acc | base |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for item in details["requests"]:
            m, b, o = item["metrics"], item["base"], item["oracle"]
            lines.append(f"| {', '.join(item['forget_speakers'])} | {m['forget_acc']:.3f} | {b['forget_acc']:.3f} | "
                         f"{o['forget_acc']:.3f} | {m['mia']:.3f} | {b['mia']:.3f} | {o['mia']:.3f} | "
                         f"{m['test_acc']:.3f} | {b['test_acc']:.3f} |")
        unseen = [s for s, v in details["speakers"].items() if v["role"].startswith("unseen")]
        forgotten = sorted({s for item in details["requests"] for s in item["forget_speakers"]})
        lines += ["", "**Speakers** (forgotten in this run, and the unseen test speakers)", "",
                  "| speaker | voice | role |", "|---|---|---|"]
        for speaker in forgotten + unseen:
            info = details["speakers"][speaker]
            role = "forgotten" if speaker in forgotten else info["role"]
            lines.append(f"| {speaker} | {info['description']} | {role} |")
        checkpoint = details["checkpoint"]
        lines += ["", f"Base model: {checkpoint['model']} ({checkpoint['source']}), sha256 "
                      f"`{checkpoint['sha256'][:16]}...`; {details['utterances']['trained']} training utterances of "
                      f"{len(details['speakers']) - len(unseen)} speakers, {details['utterances']['unseen']} test "
                      f"utterances of {len(unseen)} unseen speakers."]
        return "\n".join(lines)

    def figure(self, record: dict, runs: list, path: Path) -> Path:
        plot_tradeoff(record, runs, path)
        return path

    def media(self, record: dict, runs: list, out: Path) -> list:
        """A few forget and retain utterances of the first request as WAV files beside metrics.json, each captioned
        with what the base model, the edited model and the oracle hear."""
        run = runs[0]
        forget = run.request.payload
        edited = run.evaluation.private["logits"]
        base = self._base_logits if self._base_logits is not None else self.all_logits(self.model)
        oracle, _ = self.oracle_logits(forget)
        keywords = self.data.keywords
        entries = []
        for role, speakers in (("forget", forget), ("retain", self.data.retain_speakers(forget))):
            rows = self.rows(speakers[:1]).tolist()
            step = max(1, len(rows) // max(1, self.config.media_examples))
            for k, row in enumerate(rows[::step][: self.config.media_examples]):
                name = f"{role}-{k + 1}.wav"
                synth.write_wav(Path(out) / name, self.data.clips[row], self.data.sampling_rate)
                utterance = self.data.utterances[row]

                def heard(logits):
                    p = torch.softmax(logits[row], -1)
                    return f"'{keywords[int(p.argmax())]}' (p {float(p.max()):.2f})"

                entries.append({"file": name, "kind": "audio", "caption": (
                    f"{'Forget' if role == 'forget' else 'Retain'} speaker {utterance.speaker} "
                    f"({self.data.speakers[utterance.speaker]}) says '{utterance.keyword}' ({utterance.variant}). "
                    f"Base model hears {heard(base)}; after {record['card']} {heard(edited)}; "
                    f"retrain oracle {heard(oracle)}.")})
        return entries

    def model_tensors(self) -> dict:
        return dict(self.model.state_dict())

    def base_model(self) -> EditedAudioClassifier:
        return EditedAudioClassifier(self.model, self.feature_extractor, {})

    # --- the edited-weights cache ----------------------------------------------------------------------------------------
    def edited_tensors(self, edited: EditedAudioClassifier) -> dict:
        return {name: tensor.detach().cpu().contiguous() for name, tensor in edited.model.state_dict().items()}

    def restore_edited(self, tensors: dict, info: dict, request: ForgetRequest) -> EditedAudioClassifier:
        model = copy.deepcopy(self.model)
        model.load_state_dict(tensors)
        return EditedAudioClassifier(model.eval().requires_grad_(False), self.feature_extractor, info)


def gaps(metrics: dict, oracle: dict) -> dict:
    """The forget-side distance to the retrain oracle on one request."""
    return {"forget_gap": abs(metrics["forget_acc"] - oracle["forget_acc"]), "mia_gap": abs(metrics["mia"] - oracle["mia"])}


def _trainer(new_model, feature_extractor, features, labels, settings, device, log, extra: dict):
    """A cache builder: train a fresh model (seeded) on `rows` and save it with its feature extractor."""

    def build(tmp: Path, rows: torch.Tensor) -> None:
        model = new_model(settings.seed).to(device)
        info = train_classifier(model, input_name(feature_extractor), features[rows], labels[rows], settings, log)
        save_checkpoint(model, feature_extractor, tmp)
        (tmp / CACHE_MARKER).write_text(json.dumps({**extra, "n_train": int(len(rows)), **info}, indent=2))

    return build


def plot_tradeoff(record: dict, runs: list, path: Path) -> None:
    """Forget-speaker accuracy against test accuracy (unseen speakers) along each request's run, with the base
    model and each request's retrain oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 4.4))
    colors = plt.cm.tab10.colors
    for k, run in enumerate(runs):
        curve = run.evaluation.details["curve"]
        xs, ys = [p["forget_acc"] for p in curve], [p["test_acc"] for p in curve]
        label = ", ".join(run.request.payload)
        ax.plot(xs, ys, "-", color=colors[k % 10], alpha=0.8, lw=1.2, label=f"forget {label}: {record['card']}")
        ax.plot(xs[-1:], ys[-1:], "o", color=colors[k % 10], ms=7)
        oracle = run.references["oracle"].metrics
        ax.plot([oracle["forget_acc"]], [oracle["test_acc"]], "^", color=colors[k % 10], ms=9, mec="black",
                label=f"forget {label}: retrain oracle")
        if k == 0:
            base = run.references["base"].metrics
            ax.plot([base["forget_acc"]], [base["test_acc"]], "*", color="black", ms=13, label="base model")
    chance = 1.0 / max(1, len(record["details"]["keywords"]))
    ax.axvline(chance, color="grey", ls=":", lw=1)
    ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("accuracy on the forget speakers (the oracle's is the target)")
    ax.set_ylabel("test accuracy (unseen speakers, higher is better)")
    ax.set_title(f"MiniVoices ({record['scale']}): {record['card']}, seed {record['seed']}")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def load_minivoices(scale: str = "ci", device="cpu", model: Optional[str] = None,
                    log: Callable[[str], None] = print, **overrides) -> MiniVoicesTestbed:
    """`MiniVoicesTestbed.load` (kept as a function for notebooks and benchmarks)."""
    return MiniVoicesTestbed.load(scale, device, model, log, **overrides)

