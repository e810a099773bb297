"""The MiniCLIP testbed: requests, the poisoned data, the training loss, the metrics and the protocol on the micro
testbed, the command line's one-line errors, and the real-checkpoint path on a tiny CLIP saved as a folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from methods.testbeds.miniclip import data as mc
from methods.testbeds.miniclip.metrics import oracle_gap
from methods.testbeds.miniclip.training import multi_positive_infonce, positives_of

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_requests_parse_and_bad_ones_name_the_choices():
    assert mc.parse_request("three") == mc.Request("digit", digit=3)
    assert mc.parse_request("inverted") == mc.Request("style", style=1)
    assert mc.parse_request("three/inverted") == mc.parse_request("a digit three in inverted style") == \
        mc.Request("pair", digit=3, style=1)
    assert mc.parse_request("backdoor").kind == "backdoor"
    with pytest.raises(ValueError, match="unknown forget request 'eleven' for miniclip; give a digit"):
        mc.parse_request("eleven")


def test_poisoning_replaces_a_share_of_non_target_pairs():
    pairs = mc.load_pairs(0)["train"]
    poisoned = mc.poison(pairs, "zero", 0.03, 2, seed=7)
    chosen = poisoned.poisoned
    assert int(chosen.sum()) == round(0.03 * len(pairs))
    assert bool((pairs.digits[chosen] != 0).all())  # CleanCLIP poisons images of other labels
    assert bool((poisoned.captions[chosen] // 4 == 0).all())  # ... captioned with the target
    assert bool((poisoned.captions[chosen] % 4 == pairs.styles[chosen]).all())
    assert torch.equal(poisoned.images[~chosen], pairs.images[~chosen])
    patch = poisoned.images[chosen][:, 0, -2:, -2:]
    assert torch.equal(patch, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).expand_as(patch))


def test_multi_positive_infonce_is_clips_loss_with_unique_captions_and_credits_same_caption_pairs():
    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(4, 6), dim=1)
    scale = torch.tensor(2.0)
    captions = torch.tensor([0, 5, 9, 13])
    logits = scale.exp() * image @ text.t()
    clip = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.t(), torch.arange(4))) / 2
    assert torch.allclose(multi_positive_infonce(image, text, positives_of(captions, captions), scale), clip)
    # "a digit three" (text 43) describes both threes; "a digit in plain style" (text 50) the plain images
    positives = positives_of(torch.tensor([12, 13, 0]), torch.tensor([43, 13, 50]))
    assert positives.tolist() == [[True, False, True], [True, True, False], [False, False, True]]


def test_oracle_gap_averages_the_available_metrics():
    assert oracle_gap({"forget_acc": 0.1, "retain_acc": 0.8, "asr": None},
                      {"forget_acc": 0.0, "retain_acc": 0.9, "asr": 0.1}) == pytest.approx(0.1)


def test_protocol_on_the_micro_testbed(micro):
    request = micro.requests(0, "three")[0]
    task = micro.task(request.payload, 0)
    assert bool((task.forget.digits == 3).all()) and bool((task.retain.digits != 3).all())
    assert len(task.forget) + len(task.retain) == len(micro.pairs["train"])
    references = micro.references(request, 0)
    assert set(references) == {"base", "oracle"} and references["oracle"].metrics["oracle_gap"] == 0.0
    metrics = references["base"].metrics
    assert metrics["clean_acc"] is None and metrics["asr"] is None and 0 <= metrics["forget_acc"] <= 1
    backdoor = micro.requests(0, "backdoor")[0]
    task = micro.task(backdoor.payload, 0)
    assert bool(task.forget.poisoned.all()) and not bool(task.retain.poisoned.any())
    metrics = micro.references(backdoor, 0)["base"].metrics
    assert metrics["forget_acc"] is None and 0 <= metrics["asr"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--forget", "eleven"], "error: unknown forget request 'eleven' for miniclip; give a digit"),
    (["--anchor", "eight"], "error: --anchor does not apply to MiniCLIP"),
    (["--forget", "backdoor", "--model", "openai/clip-vit-base-patch32"], "error: --forget backdoor needs the "
                                                                          "testbed's own poisoned model"),
    (["--model", "/no/such/folder"], "error: --model '/no/such/folder' is neither a local folder nor a hub id"),
    (["--set", "search_topk=0"], "error: bad option for slug: SLUGConfig.search_topk must be >= 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    done = subprocess.run([sys.executable, "-m", "methods", "run", "slug", "--testbed", "miniclip", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr


def test_a_real_clip_checkpoint_folder_runs_with_official_defaults(tmp_path):
    """The --model path: a CLIPModel (3-channel ViT) saved with save_pretrained, its tokenizer and a
    CLIPImageProcessor, loaded by from_pretrained; the card runs with its official defaults and no oracle."""
    from transformers import CLIPImageProcessor, CLIPModel

    from methods.run import run_card
    from methods.testbeds.miniclip.config import config_for
    from methods.testbeds.miniclip.model import build_tokenizer, clip_config

    import dataclasses

    cfg = dataclasses.replace(config_for("ci"), hidden_size=16, heads=2, intermediate_size=32, projection_dim=8)
    config = clip_config(cfg)
    config.vision_config.num_channels = 3
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = 8
    tokenizer.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}).save_pretrained(tmp_path / "clip")
    record = run_card("slug", "miniclip", model=str(tmp_path / "clip"), forget="three", device="cpu",
                      overrides={"retain_batches": 2, "max_iterations": 2}, out=tmp_path / "out", log=lambda _: None)
    assert record["model"] == "clip" and set(record["references"]) == {"base"}
    assert record["adaptations"] == {"retain_batches": {"value": 2, "why": "set by the user (--set)"},
                                     "max_iterations": {"value": 2, "why": "set by the user (--set)"}}
    assert record["metrics"]["forget_acc"]["mean"] is not None and record["metrics"]["oracle_gap"] is None


@pytest.mark.slow
def test_the_ci_base_model_reads_held_out_digits_and_styles(machine_cache):
    """The testbed's base bar: >= 90% digit and >= 95% style zero-shot accuracy on held-out images (the ci base
    model from the machine's cache, where the notebooks trained it; trained here otherwise)."""
    from methods.testbeds.miniclip.testbed import MiniCLIPTestbed

    testbed = MiniCLIPTestbed.load("ci", "cpu", log=lambda _: None)
    metrics, details = testbed._evaluate(testbed.model, mc.parse_request("three"))
    assert details["accuracy"]["digit"] >= 0.90 and details["accuracy"]["style"] >= 0.95, details["accuracy"]
