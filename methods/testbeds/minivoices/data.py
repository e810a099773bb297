"""MiniVoices' data: every speaker saying every keyword at several speeds and pitches, placed in fixed-length clips.

- `synthesised_corpus(cfg)`: the utterances of the first `n_speakers` of synth.ROSTER, synthesised once per machine
  and cached as safetensors (keyed by the corpus config and the synthesisers' versions);
- `folder_corpus(path, cfg)`: a user's recordings instead, laid out as `<folder>/<speaker>/<keyword>/*.wav`;
- `build_data(...)`: the clips (each utterance at a seeded random offset in a `clip_seconds` clip, with seeded white
  noise at `noise_snr_db`), the labels, and the split of speakers: `n_unseen` speakers are never trained on (the test
  set: new voices saying the same keywords); the others are trained on and can be asked to be forgotten;
- `forget_splits(...)`: the forget requests of a run, `forget_speakers` trainable speakers each, drawn from the seed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...core.cache import cache_root, cached, config_hash
from . import synth
from .config import MiniVoicesConfig

CORPUS_MARKER = "corpus.json"


@dataclass(frozen=True)
class Utterance:
    uid: str  # "spk03/seven/speed0.9-pitch+1" or the recording's path relative to the folder
    speaker: str
    keyword: str
    label: int
    variant: str  # "speed 0.9, pitch +1", or the file name


@dataclass
class Corpus:
    """Utterances and their audio (trimmed, 16 kHz) before they are placed in clips."""

    utterances: list
    audio: list  # float32 arrays
    keywords: tuple  # label names, label = index
    speakers: dict  # speaker id -> description
    groups: dict  # speaker id -> "recorded", "native" or "accented" (synth.Speaker.group)
    source: str  # "synthesised" or the folder's name


@dataclass
class VoiceData:
    utterances: list
    clips: np.ndarray  # [N, clip_samples] float32: what the feature extractor sees
    labels: np.ndarray  # [N] int64
    keywords: tuple
    speakers: dict  # speaker id -> description
    trainable: tuple  # speakers trained on (forget requests draw from them)
    unseen: tuple  # speakers never trained on: the test set
    source: str
    sampling_rate: int = 16000
    _by_speaker: dict = field(default_factory=dict, repr=False)

    def indices(self, speakers: Sequence[str]) -> np.ndarray:
        """Row indices of every utterance of these speakers, in corpus order."""
        if not self._by_speaker:
            for index, utterance in enumerate(self.utterances):
                self._by_speaker.setdefault(utterance.speaker, []).append(index)
        rows = [i for speaker in speakers for i in self._by_speaker.get(speaker, [])]
        return np.array(sorted(rows), dtype=np.int64)

    def retain_speakers(self, forget: Sequence[str]) -> tuple:
        return tuple(s for s in self.trainable if s not in set(forget))


# --- the synthesised corpus -------------------------------------------------------------------------------------------

def jobs_for(cfg: MiniVoicesConfig) -> tuple:
    """(utterances, synthesis jobs) of the config, in a fixed order: speaker, keyword, speed, pitch."""
    utterances, jobs = [], []
    for speaker in synth.roster(cfg.n_speakers):
        for label, keyword in enumerate(cfg.keywords):
            for speed in cfg.speeds:
                for shift in cfg.pitch_shifts:
                    variant = f"speed {speed:g}, pitch {shift:+d}"
                    uid = f"{speaker.id}/{keyword}/speed{speed:g}-pitch{shift:+d}"
                    utterances.append(Utterance(uid, speaker.id, keyword, label, variant))
                    jobs.append((speaker, keyword, speed, shift))
    return utterances, jobs


def synthesised_corpus(cfg: MiniVoicesConfig, log=print) -> Corpus:
    """Synthesise (once per machine; cached as safetensors) every utterance of the config."""
    from safetensors.numpy import load_file, save_file

    speakers = synth.roster(cfg.n_speakers)
    engines = sorted({speaker.engine for speaker in speakers})
    synth.require(engines)
    key = {**cfg.corpus_key(), "roster": [dataclasses.astuple(s) for s in speakers],
           "synthesisers": synth.versions(engines)}
    directory = cache_root() / "minivoices" / f"corpus-{config_hash(key)}"
    utterances, jobs = jobs_for(cfg)

    def build(tmp: Path) -> None:
        import time

        log(f"[minivoices] synthesising {len(jobs)} utterances of {len(speakers)} speakers with "
            f"{' and '.join(engines)} (once per machine)")
        start = time.perf_counter()
        audio = synth.synthesise_all(jobs, cfg.sampling_rate)
        lengths = np.array([len(a) for a in audio], dtype=np.int64)
        save_file({"samples": np.concatenate(audio).astype(np.float32), "lengths": lengths},
                  str(tmp / "audio.safetensors"))
        (tmp / CORPUS_MARKER).write_text(json.dumps({"key": key, "n": len(audio),
                                                     "seconds": round(time.perf_counter() - start, 2)}, indent=2))

    cached(directory, build, CORPUS_MARKER)
    tensors = load_file(str(directory / "audio.safetensors"))
    ends = np.cumsum(tensors["lengths"])
    audio = [tensors["samples"][end - length:end] for end, length in zip(ends, tensors["lengths"])]
    if len(audio) != len(utterances):
        raise RuntimeError(f"{directory}: the cached corpus holds {len(audio)} utterances, expected "
                           f"{len(utterances)}; delete the folder to synthesise it again")
    return Corpus(utterances, audio, tuple(cfg.keywords), {s.id: s.description for s in speakers},
                  {s.id: s.group for s in speakers}, "synthesised")


# --- a folder of recordings -------------------------------------------------------------------------------------------

class FolderError(ValueError):
    """A recordings folder MiniVoices cannot use; one line naming the problem and the expected layout."""


LAYOUT = "<folder>/<speaker>/<keyword>/*.wav"


def folder_corpus(path: Path, cfg: MiniVoicesConfig) -> Corpus:
    """Recordings laid out as `<folder>/<speaker>/<keyword>/*.wav` (16-bit PCM WAV, any rate; resampled to 16 kHz
    and trimmed like the synthesised speech)."""
    root = Path(path)
    files = sorted(p for p in root.glob("*/*/*.wav") if p.is_file())
    if not files:
        raise FolderError(f"--model {root.name}: no WAV files found; lay recordings out as {LAYOUT}")
    speakers = sorted({p.parent.parent.name for p in files})
    keywords = tuple(sorted({p.parent.name for p in files}))
    if len(speakers) < cfg.n_unseen + cfg.forget_speakers + 1:
        raise FolderError(f"--model {root.name}: {len(speakers)} speakers; MiniVoices needs at least "
                          f"{cfg.n_unseen + cfg.forget_speakers + 1} (n_unseen={cfg.n_unseen} unseen test speakers, "
                          f"forget_speakers={cfg.forget_speakers} to forget and at least one to retain)")
    if len(keywords) < 2:
        raise FolderError(f"--model {root.name}: one keyword folder ({keywords[0]!r}); a classifier needs two or more")
    utterances, audio = [], []
    for file in files:
        speaker, keyword = file.parent.parent.name, file.parent.name
        try:
            samples = synth.read_wav(file, cfg.sampling_rate)
        except (ValueError, OSError) as error:
            raise FolderError(f"--model {root.name}: {file.relative_to(root)} is not a 16-bit PCM WAV file "
                              f"({error})") from None
        samples = synth.trim(samples, cfg.sampling_rate)
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        audio.append((samples * (0.9 / peak)).astype(np.float32) if peak > 0 else samples)
        utterances.append(Utterance(file.relative_to(root).as_posix(), speaker, keyword, keywords.index(keyword),
                                    file.name))
    return Corpus(utterances, audio, keywords, {s: f"recorded speaker {s}" for s in speakers},
                  {s: "recorded" for s in speakers}, root.name)


# --- clips and splits ---------------------------------------------------------------------------------------------------

def place(audio: np.ndarray, clip_samples: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The utterance at a random offset in a silent clip (centre-cropped if longer), plus white noise at `snr_db`
    below the utterance's power."""
    clip = np.zeros(clip_samples, dtype=np.float32)
    if len(audio) >= clip_samples:
        start = (len(audio) - clip_samples) // 2
        clip[:] = audio[start:start + clip_samples]
        power = float(np.mean(audio ** 2))
    else:
        offset = int(rng.integers(0, clip_samples - len(audio) + 1))
        clip[offset:offset + len(audio)] = audio
        power = float(np.mean(audio ** 2)) if len(audio) else 0.0
    noise = rng.standard_normal(clip_samples).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr_db / 10)))
    return clip + noise


def choose_unseen(corpus: Corpus, n_unseen: int, seed: int) -> tuple:
    """The test speakers, drawn from the data seed among the native English voices when there are enough of them
    (every recorded and accented voice then stays trainable: forgetting one removes a voice nothing else resembles),
    else among every speaker (a folder of recordings)."""
    if n_unseen >= len(corpus.speakers):
        raise ValueError(f"n_unseen={n_unseen} leaves no speaker to train on ({len(corpus.speakers)} speakers)")
    native = [s for s in corpus.speakers if corpus.groups[s] == "native"]
    pool = native if len(native) > n_unseen else list(corpus.speakers)
    rng = np.random.default_rng(seed)
    return tuple(sorted(str(s) for s in rng.choice(pool, n_unseen, replace=False)))


def build_data(cfg: MiniVoicesConfig, corpus: Corpus) -> VoiceData:
    """Clips, labels and the speaker split of a corpus (deterministic in the data seed)."""
    clips = np.stack([place(audio, cfg.clip_samples, cfg.noise_snr_db, np.random.default_rng([cfg.seed, index]))
                      for index, audio in enumerate(corpus.audio)])
    labels = np.array([u.label for u in corpus.utterances], dtype=np.int64)
    unseen = choose_unseen(corpus, cfg.n_unseen, cfg.seed)
    trainable = tuple(s for s in corpus.speakers if s not in unseen)
    return VoiceData(list(corpus.utterances), clips, labels, corpus.keywords, dict(corpus.speakers), trainable, unseen,
                     corpus.source, cfg.sampling_rate)


def forget_splits(data: VoiceData, seed: int, n_splits: int, forget_speakers: int,
                  forget: Optional[Sequence[str]] = None) -> list:
    """The forget requests of a run: the speakers named by `forget`, or `n_splits` random sets of `forget_speakers`
    trainable speakers drawn from `seed` (sorted within a set)."""
    if forget:
        return [tuple(sorted(forget))]
    rng = np.random.default_rng([seed, 7])
    return [tuple(sorted(str(s) for s in rng.choice(data.trainable, forget_speakers, replace=False)))
            for _ in range(n_splits)]
