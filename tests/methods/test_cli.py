"""CLI: the registry is listed; bad input gives one clear error line and exit code 2, never a traceback."""

import subprocess
import sys

import pytest

from minicanvas_dummies import REPO_ROOT
from methods.__main__ import main
from methods.registry import load_registry


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "methods", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_list_shows_every_registered_card_in_registry_order(capsys):
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == list(load_registry().cards)


def test_list_of_one_testbed(capsys):
    assert main(["list", "--testbed", "miniprofiles"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == [card.name for card in load_registry().cards_on("miniprofiles")]


def test_unknown_method_in_a_subprocess():
    """The real entry point (`python -m methods`): one line on stderr, exit code 2, no traceback."""
    completed = _run("run", "dreambooth", "--forget", "three")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: unknown card 'dreambooth'; choose one of: {', '.join(load_registry().cards)}"]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "uce", "--forget", "three", "--anchor", "plain"], "anchor 'plain' must be another concept"),
        (["run", "uce", "--seed", "-3"], "seed must be in"),
        (["run", "uce", "--seed", "abc"], "seed must be an integer"),
        (["run", "uce", "--scale", "huge"], "unknown scale 'huge'"),
        (["run", "uce", "--testbed", "unlearncanvas"], "unknown testbed"),
        (["run", "uce", "--forget", "dog"], "unknown concept 'dog'"),
        (["run", "uce", "--device", "tpu"], "unknown device"),
        (["run", "esd", "--set", "nonsense=1"], "unknown option 'nonsense'"),
        (["run", "esd", "--set", "iterations=0"], "ESDConfig.iterations must be >= 1, got 0"),
        (["run", "esd", "--set", "iterations=-5"], "iterations must be >= 1"),
        (["run", "esd", "--set", "learning_rate=-1"], "learning_rate must be in (0, 1]"),
        (["run", "esd", "--set", "learning_rate=abc"], "learning_rate must be float"),
        (["run", "uce", "--set", "erase_scale=1e308"], "erase_scale must be in [0, 10000]"),
        (["run", "sld", "--set", "num_inference_steps=0"], "num_inference_steps must be >= 1"),
        (["run", "ca", "--set", "train_steps=-1"], "train_steps must be >= 1"),
        (["run", "npo", "--set", "beta=-1.0"], "beta must be in (0, 1000]"),
        (["run", "ga", "--set", "lr_schedule='cosine'"], "lr_schedule must be one of 'linear', 'constant'"),
        (["run", "ga", "--set", "forget_modalities=('audio',)"], "forget_modalities must be one of"),
        (["run", "npo", "--testbed", "minicanvas"], "npo runs on miniprofiles, not 'minicanvas'"),
        (["run", "esd", "--testbed", "miniprofiles"], "esd runs on minicanvas, not 'miniprofiles'"),
        (["run", "ga", "--forget", "three"], "--forget/--anchor do not apply to MiniProfiles"),
        (["run", "kl", "--scale", "huge"], "unknown scale 'huge'"),
        (["run", "ga", "--model", "/nonexistent/llava"], "neither a local folder nor a hub id"),
        (["run", "uce", "--set", "lamb=1", "--set", "lamb=2"], "--set lamb is given twice"),
        (["run", "uce", "--out", "README.md"], "is a file"),
        (["run", "uce", "--out", "README.md/sub"], "lies under the file"),
        (["list", "--testbed", "nowhere"], "unknown testbed 'nowhere'"),
        (["run", "esd", "--set", "variant='z'"], "variant"),
        (["run", "sld", "--set", "sld_guidance_scale='big'"], "sld_guidance_scale"),
        (["run"], "the following arguments are required"),
        (["run", "uce", "--model", "/nonexistent/sd-model", "--forget", "cat"], "neither a local directory nor a hub id"),
        ([], "missing command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("parameters, message", [
    (dict(seed="abc"), "seed must be an integer in [0, 2**32), got 'abc'"),
    (dict(seed=-1), "seed must be an integer in [0, 2**32), got -1"),
    (dict(scale="huge"), "unknown scale 'huge'"),
    (dict(forget="dog"), "unknown concept 'dog'"),
    (dict(out_dir="README.md"), "is a file"),
])
def test_notebook_parameters_are_checked_like_the_command_line(parameters, message, tmp_path):
    """A notebook's run cell stops with one line (IPython shows `_render_traceback_`), before anything runs."""
    from methods.notebook import ParameterError, card_run

    results = REPO_ROOT / "results" / "minicanvas" / "uce" / "metrics.json"
    before = results.read_bytes() if results.exists() else None
    with pytest.raises(ParameterError) as error:
        card_run("uce", testbed="minicanvas", **parameters)
    assert message in str(error.value)
    assert error.value._render_traceback_() == [f"error: {error.value}"]
    assert (results.read_bytes() if results.exists() else None) == before, "nothing was written"
