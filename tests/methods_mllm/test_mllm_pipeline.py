"""MiniProfiles end to end through the generic runner on the micro testbed; a saved LLaVA checkpoint as `model`."""

import json

from mllm_micro import MICRO

from methods.run import run_card
from methods.testbeds import miniprofiles as mp

FAST = {"steps": 3, "forget_batch_size": 8, "retain_batch_size": 8}


def test_run_writes_schema_v1_results_with_every_split(tmp_path, micro_cache):
    record = run_card("graddiff", "miniprofiles", seed=0, device="cpu", overrides=FAST, out=tmp_path,
                      testbed_overrides={**MICRO, "n_splits": 2}, log=lambda _: None)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000
    assert set(record["references"]) == {"base", "oracle"}
    assert record["metrics"]["forget_acc"]["n"] == 2 and record["metrics"]["forget_acc"]["std"] is not None
    assert record["references"]["oracle"]["forget_quality_gap"]["mean"] == 0.0
    details = record["details"]
    assert len(details["splits"]) == 2 and len(details["checkpoint"]["sha256"]) == 64
    assert set(details["table"]) == set(mp.SPLITS)
    assert [len(s["curve"]) for s in details["splits"]] == [4, 4]  # step 0 and every step of 3
    assert record["adaptations"]["steps"] == {"value": 3, "why": "set by the user (--set)"}
    assert record["adaptations"]["learning_rate"]["value"] == 1e-3  # the testbed's adaptation, with its reason


def test_a_saved_llava_checkpoint_runs_through_from_pretrained(tmp_path, micro_cache):
    """`model=<dir>` takes the LlavaForConditionalGeneration.from_pretrained + AutoProcessor path (LLaVA prompts),
    with the card's official defaults: the testbed's adaptations are for its own tiny model."""
    testbed = mp.load_miniprofiles("ci", "cpu", log=lambda _: None, **MICRO)  # its cache dir is a saved checkpoint
    record = run_card("ga", "miniprofiles", seed=0, device="cpu", model=str(testbed.model_dir), overrides=FAST,
                      write=False, testbed_overrides={**MICRO, "n_splits": 1, "pretrained_epochs": 1},
                      log=lambda _: None)
    assert record["model"] == testbed.model_dir.name  # a local path is recorded by its name only
    assert record["details"]["checkpoint"]["source"] == testbed.model_dir.name
    assert record["config"]["learning_rate"] == record["config_defaults"]["learning_rate"] == 2e-5
    assert set(record["adaptations"]) == set(FAST)
    assert record["metrics"]["forget_acc"]["mean"] is not None
