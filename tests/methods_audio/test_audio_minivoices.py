"""MiniVoices: the synthesisers and their missing-program message, WAV parsing, the speaker split, UnSLU-Bench's
membership inference, the argument checks, and the two `--model` paths (a folder of recordings, a real wav2vec2
checkpoint) on the smoke sizes."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
import torch

from methods.registry import load_registry
from methods.run import plan_run, run_card
from methods.testbeds import UsageError
from methods.testbeds.minivoices import synth
from methods.testbeds.minivoices.config import config_for
from methods.testbeds.minivoices.data import Corpus, choose_unseen, jobs_for
from methods.testbeds.minivoices.metrics import simple_mia
from methods.testbeds.minivoices.testbed import MiniVoicesTestbed, parse_model_argument

SMOKE = dict(load_registry().testbed("minivoices").smoke)
QUIET = dict(log=lambda _: None)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMU_ATLAS_CACHE", str(tmp_path_factory.getbasetemp() / "minivoices-cache"))


def wav_bytes(samples: np.ndarray, rate: int, placeholder: bool = False) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((samples * 32767).astype("<i2").tobytes())
    blob = bytearray(buffer.getvalue())
    if placeholder:  # espeak-ng --stdout writes 0x7ffff... lengths: it cannot seek back
        blob[4:8] = struct.pack("<I", 0x7FFFF024)
        blob[40:44] = struct.pack("<I", 0x7FFFF000)
    return bytes(blob)


def test_parse_wav_reads_to_the_end_despite_a_placeholder_length():
    samples = np.sin(np.linspace(0, 20, 2205)).astype(np.float32) * 0.5
    for placeholder in (False, True):
        parsed, rate = synth.parse_wav(wav_bytes(samples, 22050, placeholder))
        assert rate == 22050 and len(parsed) == 2205
        assert np.allclose(parsed, samples, atol=1e-4)
    assert len(synth.resample(parsed, 22050, 16000)) == 1600


def test_a_missing_synthesiser_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(synth.SynthesiserMissing) as error:
        synth.require(["espeak-ng"])
    message = str(error.value)
    assert "\n" not in message and "espeak-ng" in message and "make audio-deps" in message
    with pytest.raises(UsageError, match="not installed; install it with `make audio-deps`"):
        MiniVoicesTestbed.load("ci", "cpu", **QUIET, **SMOKE)


def test_synthesised_speakers_say_the_keywords():
    speaker = synth.ROSTER[4]  # an espeak-ng voice
    audio = synth.synthesise(speaker, "seven", 1.0, 0)
    slow = synth.synthesise(speaker, "seven", 0.8, 0)
    assert 0.2 < len(audio) / 16000 < 1.0 and len(slow) > len(audio)
    assert abs(float(np.abs(audio).max()) - 0.9) < 1e-3
    recorded = synth.synthesise(synth.ROSTER[3], "seven", 1.0, 1)  # flite slt, one pitch step up
    assert 0.2 < len(recorded) / 16000 < 1.0


def test_unseen_speakers_are_native_voices_and_jobs_cover_every_variant():
    cfg = config_for("ci")
    utterances, jobs = jobs_for(cfg)
    assert len(jobs) == cfg.n_speakers * len(cfg.keywords) * len(cfg.speeds) * len(cfg.pitch_shifts) == 1800
    speakers = synth.roster(cfg.n_speakers)
    corpus = Corpus([], [], cfg.keywords, {s.id: s.description for s in speakers}, {s.id: s.group for s in speakers},
                    "synthesised")
    unseen = choose_unseen(corpus, cfg.n_unseen, cfg.seed)
    assert len(unseen) == 4 and all(corpus.groups[s] == "native" for s in unseen)
    assert unseen == choose_unseen(corpus, cfg.n_unseen, cfg.seed)
    assert {s.group for s in speakers} == {"recorded", "native", "accented"}


def test_simple_mia_is_chance_on_alike_losses_and_high_on_separable_ones():
    rng = np.random.default_rng(0)
    alike = simple_mia(rng.exponential(0.5, 300), rng.exponential(0.5, 300))
    assert 0.4 < alike < 0.6
    separable = simple_mia(rng.uniform(0, 0.5, 300), rng.uniform(2, 4, 300))
    assert separable > 0.95
    assert simple_mia(np.arange(50.0), np.arange(80.0)) == simple_mia(np.arange(50.0), np.arange(80.0))


@pytest.mark.parametrize("arguments,message", [
    (dict(anchor="spk01"), "--anchor does not apply to MiniVoices"),
    (dict(forget="spk01;spk02"), "give speaker ids separated by commas"),
    (dict(forget="spk01,spk01"), "names a speaker twice"),
    (dict(model="/no/such/folder"), "does not exist and is not a hub id"),
    (dict(scale="huge"), "unknown scale 'huge'"),
    (dict(forget="spk99"), "--forget: spk99 is not a speaker; choose from spk01, spk02"),
    (dict(forget="spk01,spk10"), "--forget: spk10 is never trained on"),
])
def test_bad_arguments_are_one_line_before_anything_loads(arguments, message):
    with pytest.raises(UsageError, match=message):
        plan_run("finetune", "minivoices", **arguments)


def test_model_argument_names_a_checkpoint_a_recordings_folder_or_both(tmp_path):
    checkpoint, recordings = tmp_path / "ckpt", tmp_path / "wavs"
    (checkpoint).mkdir()
    (checkpoint / "config.json").write_text("{}")
    (recordings / "alice" / "yes").mkdir(parents=True)
    (recordings / "alice" / "yes" / "1.wav").write_bytes(wav_bytes(np.zeros(100, np.float32), 16000))
    assert parse_model_argument(str(checkpoint)).checkpoint == str(checkpoint)
    assert parse_model_argument(str(recordings)).recordings == recordings
    both = parse_model_argument(f"{recordings},{checkpoint}")
    assert both.checkpoint == str(checkpoint) and both.recordings == recordings
    assert parse_model_argument("superb/wav2vec2-base-superb-ks").checkpoint == "superb/wav2vec2-base-superb-ks"
    with pytest.raises(UsageError, match="names two checkpoints"):
        parse_model_argument(f"{checkpoint},{checkpoint}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="neither a checkpoint folder"):
        parse_model_argument(str(tmp_path / "empty"))
    assert MiniVoicesTestbed.own_model(str(recordings)) and not MiniVoicesTestbed.own_model(str(checkpoint))


def test_forgetting_an_unseen_speaker_is_refused():
    testbed = MiniVoicesTestbed.load("ci", "cpu", **QUIET, **SMOKE)
    with pytest.raises(UsageError, match="never trained on"):
        testbed.requests(0, forget=testbed.data.unseen[0])
    requests = testbed.requests(0, forget=testbed.data.trainable[0])
    assert [r.payload for r in requests] == [(testbed.data.trainable[0],)]


def write_recordings(root, speakers=("ann", "bob", "cid", "dee", "eve"), words=("yes", "no")):
    """A folder of recordings as a user would have them (here spoken by espeak-ng voices at 22.05 kHz)."""
    voices = ["en-us+m1", "en-gb+f2", "en-gb-scotland+m3", "en-029+f4", "en-us-nyc+m5"]
    for speaker, voice in zip(speakers, voices):
        for word in words:
            folder = root / speaker / word
            folder.mkdir(parents=True)
            for k, speed in enumerate((140, 180)):
                import subprocess

                blob = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", word],
                                      capture_output=True, check=True).stdout
                samples, rate = synth.parse_wav(blob)
                (folder / f"take{k}.wav").write_bytes(wav_bytes(samples, rate))
    return root


def test_a_folder_of_recordings_replaces_the_synthesised_speech(tmp_path):
    folder = write_recordings(tmp_path / "recordings")
    out = tmp_path / "out"
    record = run_card("finetune", "minivoices", model=str(folder), seed=0, device="cpu", out=out,
                      overrides={"epochs": 1}, testbed_overrides={**SMOKE, "n_unseen": 1, "n_splits": 1}, **QUIET)
    assert record["testbed_config"]["data_source"] == "recordings" and record["model"] == "recordings"
    assert record["details"]["keywords"] == ["no", "yes"]
    assert set(record["details"]["speakers"]) == {"ann", "bob", "cid", "dee", "eve"}
    # recordings keep the testbed's tiny model, so the card's MiniVoices adaptations apply; the user's --set wins
    registered = load_registry().card("finetune").on("minivoices").adaptations
    assert record["adaptations"]["epochs"] == {"value": 1, "why": "set by the user (--set)"}
    assert record["adaptations"]["learning_rate"]["value"] == registered["learning_rate"].value
    assert all((out / item["file"]).stat().st_size > 1000 for item in record["media"])


def test_a_real_wav2vec2_checkpoint_is_fine_tuned_and_unlearned(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, classifier_proj_size=8, num_labels=12,
                            vocab_size=8, do_stable_layer_norm=True, feat_extract_norm="layer")
    torch.manual_seed(0)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(str(tmp_path / "kws"), safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(tmp_path / "kws"))
    record = run_card("scrub_audio", "minivoices", model=str(tmp_path / "kws"), seed=0, device="cpu", write=False,
                      overrides={"epochs": 1, "msteps": 1},
                      testbed_overrides={**SMOKE, "pretrained_epochs": 1, "n_splits": 1}, **QUIET)
    assert record["model"] == "kws" and record["details"]["checkpoint"]["model"].startswith(
        "Wav2Vec2ForSequenceClassification")
    assert record["adaptations"] == {"epochs": {"value": 1, "why": "set by the user (--set)"},
                                     "msteps": {"value": 1, "why": "set by the user (--set)"}}
    assert 0.0 <= record["metrics"]["test_acc"]["mean"] <= 1.0
