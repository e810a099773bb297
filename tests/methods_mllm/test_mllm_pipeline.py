"""run_miniprofiles end to end on the micro testbed; bad input; a saved LLaVA checkpoint as `model`.

The ci-scale runs with the quality bar are `@pytest.mark.slow` (they train the real testbed: minutes).
"""

import json

import pytest
from mllm_micro import MICRO

from methods.mllm import MLLM_METHODS, method_config, run_miniprofiles
from methods.testbeds import miniprofiles as mp

FAST = {"steps": 3, "forget_batch_size": 8, "retain_batch_size": 8}


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(method="sgd"), "method"),
        (dict(method="ga", scale="huge"), "scale"),
        (dict(method="ga", seed=-1), "seed"),
        (dict(method="ga", seed="0"), "seed"),
        (dict(method="ga", device="tpu"), "device"),
        (dict(method="ga", model=""), "model"),
        (dict(method="npo", config_overrides={"betta": 0.1}), "betta"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs, argument, tmp_path):
    with pytest.raises(ValueError) as error:
        run_miniprofiles(out_dir=tmp_path, **kwargs)
    message = str(error.value)
    assert argument in message and "\n" not in message


def test_bad_method_config_values():
    with pytest.raises(ValueError, match="log_ratio"):
        MLLM_METHODS["npo"][1](None, None, method_config("npo", {"log_ratio": "token"}))
    with pytest.raises(ValueError, match="scale"):
        mp.config_for("medium")


def test_pipeline_writes_metrics_and_is_reproducible(tmp_path, micro_cache):
    runs = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        metrics = run_miniprofiles("graddiff", seed=0, scale="ci", out_dir=out, device="cpu", config_overrides=FAST,
                                   testbed_overrides={**MICRO, "n_splits": 1}, log=lambda _: None)  # fmt: skip
        on_disk = json.loads((out / "metrics.json").read_text())
        assert (out / "tradeoff.png").stat().st_size > 1000
        assert on_disk["forget_acc"] == metrics["forget_acc"]
        runs.append(on_disk)
    first, second = runs
    for key in ("forget_acc", "retain_acc", "real_world_acc", "utility_acc", "forget_paraphrase_acc", "headline_std",
                "forget_quality_gap", "oracle_gap", "config", "seed", "versions", "checkpoint"):  # fmt: skip
        assert key in first
    assert len(first["splits"]) == 1 and len(first["checkpoint"]["sha256"]) == 64
    assert set(first["table"]) == set(mp.SPLITS)
    for key in ("forget_acc", "retain_acc", "real_world_acc", "utility_acc", "table", "oracle_gap"):
        assert first[key] == second[key], key
    assert [s["curve"] for s in first["splits"]] == [s["curve"] for s in second["splits"]]


def test_a_saved_llava_checkpoint_runs_through_from_pretrained(tmp_path, micro_cache):
    """`model=<dir>` takes the LlavaForConditionalGeneration.from_pretrained + AutoProcessor path (LLaVA prompts)."""
    testbed = mp.load_miniprofiles("ci", "cpu", log=lambda _: None, **MICRO)  # its cache dir is a saved checkpoint
    overrides = {**MICRO, "n_splits": 1, "pretrained_epochs": 1}
    metrics = run_miniprofiles("ga", seed=0, scale="ci", out_dir=tmp_path, model=str(testbed.model_dir),
                               device="cpu", config_overrides=FAST, testbed_overrides=overrides,
                               log=lambda _: None)  # fmt: skip
    assert metrics["checkpoint"]["source"] == str(testbed.model_dir)
    assert metrics["config"]["learning_rate"] == metrics["config"]["pretrained_learning_rate"]
    assert 0.0 <= metrics["forget_acc"] <= 1.0
