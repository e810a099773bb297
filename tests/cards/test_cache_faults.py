"""A corrupt cache heals itself: each cached file kind truncated in turn, the next load rebuilds what was broken.

Also: temporary folders of killed builds are removed, and an unwritable cache folder is one clear error."""

from __future__ import annotations

import os
import time

import pytest

from methods.__main__ import main
from methods.core import cache
from methods.registry import load_registry
from methods.testbeds import testbed_class

REGISTRY = load_registry()
QUIET = dict(log=lambda _: None)


def load(name: str, log=lambda _: None):
    spec = REGISTRY.testbed(name)
    return testbed_class(spec).load("ci", "cpu", None, log, **spec.smoke)


def folders(root, testbed: str) -> list:
    return sorted(path for path in (root / testbed).iterdir() if path.is_dir() and ".tmp" not in path.name)


@pytest.mark.parametrize("testbed, kinds", [
    ("minicanvas", ["unet.safetensors", "text_encoder.safetensors", "judge.safetensors", "config.json"]),
    ("miniprofiles", ["model.safetensors", "testbed.json", "config.json", "tokenizer.json"]),
])
def test_truncated_files_are_rebuilt(testbed, kinds, private_cache):
    load(testbed)
    for kind in kinds:
        victims = [folder / kind for folder in folders(private_cache, testbed) if (folder / kind).is_file()]
        assert victims, f"no cached {kind}"
        for victim in victims:
            victim.write_bytes(victim.read_bytes()[: max(1, victim.stat().st_size // 2)])
        messages = []
        loaded = load(testbed, messages.append)
        assert any(f"{kind} has" in message and "rebuilding it" in message for message in messages), messages
        assert all(cache.problem(folder, "config.json" if testbed == "minicanvas" else "testbed.json") is None
                   for folder in folders(private_cache, testbed))
        assert loaded.model_tensors()


def test_a_broken_manifest_or_a_missing_file_is_rebuilt(tmp_path):
    calls = []

    def build(directory):
        calls.append(directory)
        (directory / "weights.bin").write_bytes(b"x" * 100)
        (directory / "config.json").write_text("{}")

    target = tmp_path / "entry"
    cache.cached(target, build, "config.json", **QUIET)
    (target / cache.MANIFEST).write_text("not json")
    cache.cached(target, build, "config.json", **QUIET)
    (target / "weights.bin").unlink()
    cache.cached(target, build, "config.json", **QUIET)
    (target / "weights.bin").write_bytes(b"y" * 100)  # same size, other content
    cache.cached(target, build, "config.json", **QUIET)
    assert len(calls) == 4 and (target / "weights.bin").read_bytes() == b"x" * 100
    cache.cached(target, build, "config.json", **QUIET)
    assert len(calls) == 4, "a sound entry is not rebuilt"


def test_leftovers_of_killed_builds_are_removed(tmp_path):
    stale = tmp_path / "entry.tmpabc123"
    stale.mkdir(parents=True)
    old = time.time() - 2 * cache.STALE_TMP_S
    os.utime(stale, (old, old))
    fresh = tmp_path / "entry.tmpdef456"
    fresh.mkdir()
    cache.cached(tmp_path / "entry", lambda d: (d / "m.json").write_text("{}"), "m.json", **QUIET)
    assert not stale.exists() and fresh.exists(), "an old temporary folder goes, a recent one may be a live build"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setenv("MMU_ATLAS_CACHE", str(locked / "cache"))
    assert main(["run", "uce"]) == 2
    err = capsys.readouterr().err
    assert "is not writable" in err and "set MMU_ATLAS_CACHE to a writable folder" in err and "Traceback" not in err


def test_a_cache_under_a_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MMU_ATLAS_CACHE", str(blocker / "cache"))
    assert main(["run", "uce", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable" in err[0] and "set MMU_ATLAS_CACHE to a writable folder" in err[0], err
