"""The whole registry: erasure methods on MiniCanvas and MLLM methods on MiniProfiles, one name space."""

import dataclasses

import pytest

from minicanvas_dummies import REPO_ROOT
from methods.__main__ import main
from methods.registry import ALL_METHODS, MLLM_REGISTRY, TESTBED_OF


def test_all_nine_cards_are_registered_with_their_testbed():
    assert list(ALL_METHODS) == ["esd", "uce", "ca", "sld", "ga", "graddiff", "kl", "npo", "mmunlearner"]
    assert {TESTBED_OF[name] for name in MLLM_REGISTRY} == {"miniprofiles"}


@pytest.mark.parametrize("name", list(MLLM_REGISTRY))
def test_mllm_cards_name_their_catalog_entry_and_notebook(name):
    spec = MLLM_REGISTRY[name]
    assert dataclasses.is_dataclass(spec.config_class) and callable(spec.unlearn)
    assert (REPO_ROOT / "catalog" / "papers" / f"{spec.catalog_id}.yaml").exists()
    assert (REPO_ROOT / "notebooks" / f"{name}.ipynb").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "npo", "--testbed", "minicanvas"], "npo runs on the miniprofiles testbed"),
        (["run", "esd", "--testbed", "miniprofiles"], "esd runs on the minicanvas testbed"),
        (["run", "ga", "--forget", "three"], "--forget/--anchor do not apply to MiniProfiles"),
        (["run", "kl", "--scale", "huge"], "unknown scale 'huge'"),
        (["run", "graddiff", "--set", "nonsense=1"], "unknown option 'nonsense' for graddiff"),
    ],
)
def test_cli_rejects_bad_miniprofiles_input_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_list_shows_every_card(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ALL_METHODS:
        assert name in out
