"""CLI: the registry is listed; bad input gives one clear error line and exit code 2, never a traceback."""

import subprocess
import sys

import pytest

from minicanvas_dummies import REPO_ROOT
from methods.__main__ import main


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "methods", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_list_shows_the_four_erasure_methods_first(capsys):
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names[:4] == ["esd", "uce", "ca", "sld"]


def test_unknown_method_in_a_subprocess():
    """The real entry point (`python -m methods`): one line on stderr, exit code 2, no traceback."""
    completed = _run("run", "dreambooth", "--forget", "three")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: unknown method 'dreambooth'; choose one of: esd, uce, ca, sld, ga, graddiff, kl, npo, mmunlearner"]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "esd", "--forget", "dog"], "unknown concept 'dog'"),
        (["run", "uce", "--forget", "three", "--anchor", "plain"], "anchor 'plain' must be another concept"),
        (["run", "uce", "--seed", "-3"], "seed must be in"),
        (["run", "uce", "--seed", "abc"], "seed must be an integer"),
        (["run", "uce", "--scale", "huge"], "unknown scale 'huge'"),
        (["run", "uce", "--testbed", "unlearncanvas"], "unknown testbed"),
        (["run", "uce", "--device", "tpu"], "unknown device"),
        (["run", "esd", "--set", "nonsense=1"], "unknown option 'nonsense'"),
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
