"""MiniCanvas: a miniature UnlearnCanvas (text-to-image concept erasure on 8x8 digits x 4 styles); see testbed.py.

The package is split by concern (prompts, data, config, model, training, metrics, testbed); its names are also
reachable from the package itself (`minicanvas.build_erase_request`), imported on first use so that reading the
declaration (testbed.yaml) never imports torch."""

import importlib

_SUBMODULES = ("prompts", "data", "config", "model", "training", "metrics", "testbed")


def __getattr__(name: str):
    for submodule in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{submodule}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
