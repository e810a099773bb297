"""MiniCanvas: a miniature UnlearnCanvas (text-to-image concept erasure on 8x8 digits x 4 styles); see testbed.py.

The package is split by concern (prompts, data, config, model, training, metrics, testbed); its names are also
reachable from the package itself (`minicanvas.build_erase_request`), imported on first use so that reading the
declaration (testbed.yaml) never imports torch."""

from .. import lazy_exports

__getattr__ = lazy_exports(__name__, ("prompts", "data", "config", "model", "training", "metrics", "testbed"))
