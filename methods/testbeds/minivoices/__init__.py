"""MiniVoices: speaker unlearning in a keyword classifier trained on speech synthesised offline (espeak-ng and
flite); see testbed.py.

The package is split by concern (config, synth, data, model, training, metrics, testbed); its names are also
reachable from the package itself (`minivoices.build_data`), imported on first use so that reading the declaration
(testbed.yaml) never imports torch."""

import importlib

_SUBMODULES = ("config", "synth", "data", "model", "metrics", "training", "testbed")


def __getattr__(name: str):
    if name in _SUBMODULES:  # `from . import synth` asks the package first
        return importlib.import_module(f"{__name__}.{name}")
    for submodule in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{submodule}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
