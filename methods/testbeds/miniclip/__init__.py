"""MiniCLIP: a tiny CLIP trained contrastively on MiniCanvas images and captions (class, pair and backdoor
forgetting); see testbed.py.

The package is split by concern (config, data, model, training, metrics, testbed); its names are also reachable from
the package itself (`miniclip.build_tokenizer`), imported on first use so that reading the declaration
(testbed.yaml) never imports torch."""

import importlib

_SUBMODULES = ("config", "data", "model", "training", "metrics", "testbed")


def __getattr__(name: str):
    for submodule in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{submodule}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
