"""Speech synthesised offline with Debian's `espeak-ng` and `flite`: the speakers of MiniVoices and their utterances.

A speaker is a synthesiser voice with its own pitch and speaking rate: the four CMU ARCTIC voices of `flite` (kal,
awb, rms, slt: four recorded people), espeak-ng voices with English accents (American, British, Scottish, RP,
Lancaster, West Midlands, Caribbean, New York) and espeak-ng voices of other languages (Spanish, Italian, Polish,
Dutch, Swedish, Czech, Finnish, Turkish) that read the English keywords with their own spelling rules, like a
strong foreign accent; each with its own voice variant, pitch and rate. Each speaker says every keyword at several
speeds and pitches around its own. Both programs run as subprocesses
(`--stdout` / `-o /dev/stdout`), two at a time; their WAV output is read with the standard library and resampled to
16 kHz with scipy (no torchaudio).

A missing synthesiser is one line saying how to install it (`make audio-deps`, or `apt-get install espeak-ng flite`).
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

INSTALL_HINT = "install it with `make audio-deps` (or `sudo apt-get install -y espeak-ng flite`)"


class SynthesiserMissing(RuntimeError):
    """A synthesiser program is not installed; the message is one line with the fix."""


@dataclass(frozen=True)
class Speaker:
    id: str
    engine: str  # "espeak-ng" or "flite"
    voice: str  # espeak-ng "language+variant", or a flite voice name
    pitch: float  # espeak-ng -p (0-99), or flite's mean F0 in Hz
    rate: float  # espeak-ng -s (words per minute), or flite's duration stretch at speed 1
    group: str  # "recorded" (a flite voice: a recorded person), "native" (an English espeak-ng accent) or
    # "accented" (an espeak-ng voice of another language reading the English words with its own spelling rules)

    @property
    def description(self) -> str:
        if self.engine == "flite":
            return f"flite {self.voice} (a CMU ARCTIC speaker), F0 {self.pitch:g} Hz"
        language, _, variant = self.voice.partition("+")
        kind = "English accent" if self.group == "native" else "reading English with the spelling rules of"
        return f"espeak-ng, {kind} {language}, variant {variant}, pitch {self.pitch:g}, {self.rate:g} wpm"


# The roster, in the order speakers are taken (`n_speakers` first): the four flite voices (CMU ARCTIC recordings of
# four people), then English espeak-ng accents and voices of other languages that read the English keywords with
# their own letter-to-sound rules (a strong foreign accent), varied in variant, pitch and rate so that no two sound
# alike. The first 20 hold 4 recorded, 10 native and 6 accented speakers; all 24 hold 4, 12 and 8.
ROSTER = (
    Speaker("spk01", "flite", "kal", 105, 1.0, "recorded"),
    Speaker("spk02", "flite", "awb", 110, 1.0, "recorded"),
    Speaker("spk03", "flite", "rms", 100, 1.0, "recorded"),
    Speaker("spk04", "flite", "slt", 175, 1.0, "recorded"),
    Speaker("spk05", "espeak-ng", "en-us+m1", 40, 165, "native"),
    Speaker("spk06", "espeak-ng", "en-us+f2", 65, 175, "native"),
    Speaker("spk07", "espeak-ng", "en-gb+m3", 35, 160, "native"),
    Speaker("spk08", "espeak-ng", "en-gb+f1", 70, 150, "native"),
    Speaker("spk09", "espeak-ng", "en-gb-scotland+m4", 45, 155, "native"),
    Speaker("spk10", "espeak-ng", "en-gb-scotland+f3", 60, 170, "native"),
    Speaker("spk11", "espeak-ng", "en-gb-x-rp+m2", 50, 170, "native"),
    Speaker("spk12", "espeak-ng", "en-gb-x-rp+f4", 75, 160, "native"),
    Speaker("spk13", "espeak-ng", "en-gb-x-gbclan+m5", 30, 150, "native"),
    Speaker("spk14", "espeak-ng", "en-029+f5", 68, 155, "native"),
    Speaker("spk15", "espeak-ng", "es+m3", 42, 160, "accented"),
    Speaker("spk16", "espeak-ng", "it+f2", 66, 165, "accented"),
    Speaker("spk17", "espeak-ng", "pl+m5", 38, 150, "accented"),
    Speaker("spk18", "espeak-ng", "nl+f4", 72, 170, "accented"),
    Speaker("spk19", "espeak-ng", "sv+m2", 48, 175, "accented"),
    Speaker("spk20", "espeak-ng", "cs+f1", 62, 158, "accented"),
    Speaker("spk21", "espeak-ng", "en-gb-x-gbcwmd+m6", 55, 180, "native"),
    Speaker("spk22", "espeak-ng", "en-us-nyc+f1", 72, 170, "native"),
    Speaker("spk23", "espeak-ng", "fi+m6", 52, 165, "accented"),
    Speaker("spk24", "espeak-ng", "tr+f3", 64, 155, "accented"),
)

ESPEAK_PITCH_STEP = 8  # -p units per pitch step
FLITE_PITCH_STEP = 0.08  # relative F0 change per pitch step


def roster(n_speakers: int) -> tuple:
    if not 2 <= n_speakers <= len(ROSTER):
        raise ValueError(f"n_speakers must be in [2, {len(ROSTER)}], got {n_speakers}")
    return ROSTER[:n_speakers]


def require(engines: Sequence[str]) -> None:
    """Raise SynthesiserMissing (one line with the fix) unless every program in `engines` is on the PATH."""
    for engine in sorted(set(engines)):
        if shutil.which(engine) is None:
            raise SynthesiserMissing(f"the speech synthesiser `{engine}` is not installed; {INSTALL_HINT}")


def versions(engines: Sequence[str]) -> dict:
    """The synthesisers' version lines (they key the audio cache: another version may say words differently)."""
    out = {}
    for engine in sorted(set(engines)):
        result = subprocess.run([engine, "--version"], capture_output=True, text=True, timeout=30)
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if "version" in line.lower()
                 or "text-to-speech" in line]
        out[engine] = lines[0].split("Data at:")[0].strip() if lines else ""
    return out


def command(speaker: Speaker, word: str, speed: float, pitch_shift: int) -> list:
    """The synthesiser command line that says `word` at `speed` x the speaker's rate, `pitch_shift` steps away."""
    if speaker.engine == "espeak-ng":
        pitch = int(min(99, max(0, round(speaker.pitch + ESPEAK_PITCH_STEP * pitch_shift))))
        rate = int(round(speaker.rate * speed))
        return ["espeak-ng", "-v", speaker.voice, "-p", str(pitch), "-s", str(rate), "--stdout", word]
    f0 = speaker.pitch * (1.0 + FLITE_PITCH_STEP * pitch_shift)
    stretch = speaker.rate / speed
    return ["flite", "-voice", speaker.voice, "-t", word, "-o", "/dev/stdout",
            "--setf", f"duration_stretch={stretch:.4f}", "--setf", f"int_f0_target_mean={f0:.2f}"]


def parse_wav(blob: bytes) -> tuple:
    """(mono float32 samples in [-1, 1], sample rate) of 16-bit PCM WAV bytes. espeak-ng's --stdout header carries a
    placeholder length, so the data chunk is read to the end rather than by its declared size."""
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    position, rate, channels, width = 12, None, 1, 2
    while position + 8 <= len(blob):
        chunk, size = blob[position:position + 4], struct.unpack("<I", blob[position + 4:position + 8])[0]
        body = position + 8
        if chunk == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", blob[body:body + 16])
            width = bits // 8
        elif chunk == b"data":
            if rate is None or width != 2:
                raise ValueError("expected 16-bit PCM with a fmt chunk before the data")
            data = blob[body:] if body + size > len(blob) else blob[body:body + size]
            data = data[: len(data) // (2 * channels) * 2 * channels]
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
            return samples.reshape(-1, channels).mean(axis=1), rate
        position = body + size + (size & 1)
    raise ValueError("no data chunk")


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def trim(samples: np.ndarray, rate: int, threshold: float = 0.02, frame_ms: float = 10.0) -> np.ndarray:
    """Cut leading and trailing silence: frames whose peak is below `threshold` x the clip's peak."""
    frame = max(1, int(rate * frame_ms / 1000))
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0.0:
        return samples
    n = len(samples) // frame
    loud = np.abs(samples[: n * frame]).reshape(n, frame).max(axis=1) >= threshold * peak
    if not loud.any():
        return samples
    first, last = int(np.argmax(loud)), int(n - np.argmax(loud[::-1]))
    return samples[first * frame: last * frame]


def synthesise(speaker: Speaker, word: str, speed: float, pitch_shift: int, rate: int = 16000) -> np.ndarray:
    """One utterance: trimmed, peak-normalised to 0.9, at `rate` Hz."""
    require([speaker.engine])
    result = subprocess.run(command(speaker, word, speed, pitch_shift), capture_output=True, timeout=60)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{speaker.engine} failed for {speaker.voice!r} saying {word!r}: "
                           f"{message[0] if message else 'no output'}")
    samples, source_rate = parse_wav(result.stdout)
    samples = trim(resample(samples, source_rate, rate), rate)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    return (samples * (0.9 / peak)).astype(np.float32) if peak > 0 else samples


def synthesise_all(jobs: Sequence[tuple], rate: int = 16000, workers: int = 2) -> list:
    """`synthesise(*job, rate=rate)` for every (speaker, word, speed, pitch_shift) job, in order, `workers` at once
    (each job is an independent subprocess, so the result does not depend on the scheduling)."""
    require([job[0].engine for job in jobs])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: synthesise(*job, rate=rate), jobs))


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """16-bit PCM mono WAV (for the card pages' audio players)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return Path(path)


def read_wav(path: Path, rate: int = 16000) -> np.ndarray:
    """A WAV file (16-bit PCM, any rate, mono or stereo) as float32 at `rate` Hz."""
    samples, source_rate = parse_wav(Path(path).read_bytes())
    return resample(samples, source_rate, rate)
